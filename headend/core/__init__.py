"""The state every part shares: the state directory, the database and its migrations, the
tables, users and roles, the audit log, alarms, translations, and where shipped files are."""
