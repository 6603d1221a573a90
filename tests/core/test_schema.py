"""The migrations build exactly the schema the models describe: a model change without its
migration (or a migration that drifts from the model) fails here, not on a commune's server."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from headend.core.db import open_db
from headend.core.models import Base


def test_migrations_build_the_models_schema(tmp_path: Path) -> None:
    engine = open_db(f"sqlite:///{tmp_path / 'loaxa.db'}")
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        engine.dispose()
