"""Communes, villages and nodes: the commune files in schedules/ and their provisioning
into the database with each node's secrets."""
