"""Opening the database: SQLite with WAL by default, schema kept by Alembic migrations."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import DatabaseError, OperationalError

MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseBroken(Exception):
    """The database file exists but cannot be used."""


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (web page, CLI) never block the writer
    cur.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def open_db(url: str, migrate: bool = True) -> Engine:
    """Engine for url, migrated to the newest schema (or checked to be current)."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        name = engine.url.database
        if migrate and name and name != ":memory:" and not os.path.exists(name):
            # Every node's key is in it: its owner's only, from the first byte (SQLite gives
            # its -wal and -shm files the database file's mode).
            with contextlib.suppress(OSError):  # a bad path is reported by the connect below
                os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        with engine.connect() as conn:
            sqlite = engine.dialect.name == "sqlite"
            if migrate and sqlite:
                # A migration that rebuilds a table others refer to (SQLite's only way to
                # change a key) needs foreign keys off; they are all checked before use.
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                conn.commit()
            migrated = False
            with conn.begin():
                if migrate:
                    before = MigrationContext.configure(conn).get_current_revision()
                    cfg = alembic_config()
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
                    migrated = MigrationContext.configure(conn).get_current_revision() != before
                elif "nodes" not in inspect(conn).get_table_names():
                    raise DatabaseBroken(f"{url}: no LoaXa tables")
            if migrate and sqlite:
                # The whole database is read: only after a migration ran.
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all() if migrated \
                    else []
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()
                if broken:
                    raise DatabaseBroken(f"{url}: rows refer to missing rows after migrating: "
                                         f"{broken[:5]}")
    except (DatabaseError, OperationalError) as e:
        engine.dispose()
        raise DatabaseBroken(f"cannot use database {url}: {e.orig}") from e
    return engine
