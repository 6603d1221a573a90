"""Alembic environment: the connection comes from headend.core.db
(config.attributes['connection'])."""

from alembic import context

from headend.core.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through headend.core.db.open_db")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
