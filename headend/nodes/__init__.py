"""The headend's side of the nodes: its Mosquitto, the MQTT gateway that signs commands and
ingests what nodes report, health alarms, remote operations, OTA and emergencies."""
