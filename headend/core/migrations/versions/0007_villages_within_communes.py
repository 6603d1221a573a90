"""Villages are keyed within their commune and nodes carry their commune (two communes made
from one template both have a "thon-1"); a node can be revoked

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_NODE_COLUMNS = ("id, commune_id, village_id, key, seq, online, session, last_seen_ms, fw, "
                 "playing, telemetry, revoked_ms")


def _villages(name: str) -> None:
    op.create_table(
        name,
        sa.Column('commune_id', sa.String(length=64), nullable=False),
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(['commune_id'], ['communes.id']),
        sa.PrimaryKeyConstraint('commune_id', 'id'),
    )


def _nodes(name: str) -> None:
    op.create_table(
        name,
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('commune_id', sa.String(length=64), nullable=False),
        sa.Column('village_id', sa.String(length=64), nullable=False),
        sa.Column('key', sa.String(length=128), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('online', sa.Boolean(), nullable=False),
        sa.Column('session', sa.BigInteger(), nullable=False),
        sa.Column('last_seen_ms', sa.BigInteger(), nullable=True),
        sa.Column('fw', sa.String(length=32), nullable=True),
        sa.Column('playing', sa.String(length=64), nullable=True),
        sa.Column('telemetry', sa.Text(), nullable=True),
        sa.Column('revoked_ms', sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(['commune_id'], ['communes.id'], name='fk_nodes_commune'),
        sa.ForeignKeyConstraint(['commune_id', 'village_id'],
                                ['villages.commune_id', 'villages.id'], name='fk_nodes_village'),
        sa.PrimaryKeyConstraint('id'),
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        # SQLite cannot change a primary key in place: new tables, the rows copied, the old
        # ones dropped (open_db runs migrations with foreign keys off, then checks them all).
        _villages('villages_0007')
        op.execute("INSERT INTO villages_0007 (commune_id, id, name) "
                   "SELECT commune_id, id, name FROM villages")
        _nodes('nodes_0007')
        op.execute(f"INSERT INTO nodes_0007 ({_NODE_COLUMNS}) "
                   "SELECT n.id, v.commune_id, n.village_id, n.key, n.seq, n.online, n.session, "
                   "n.last_seen_ms, n.fw, n.playing, n.telemetry, NULL "
                   "FROM nodes n JOIN villages v ON v.id = n.village_id")
        op.drop_table('nodes')
        op.drop_table('villages')
        op.rename_table('villages_0007', 'villages')
        op.rename_table('nodes_0007', 'nodes')
    else:
        # PostgreSQL (default constraint names): altered in place.
        op.add_column('nodes', sa.Column('commune_id', sa.String(length=64), nullable=True))
        op.add_column('nodes', sa.Column('revoked_ms', sa.BigInteger(), nullable=True))
        op.execute("UPDATE nodes SET commune_id = villages.commune_id FROM villages "
                   "WHERE villages.id = nodes.village_id")
        op.alter_column('nodes', 'commune_id', nullable=False)
        op.drop_constraint('nodes_village_id_fkey', 'nodes', type_='foreignkey')
        op.drop_index('ix_nodes_village_id', table_name='nodes')
        op.drop_index('ix_villages_commune_id', table_name='villages')
        op.drop_constraint('villages_pkey', 'villages', type_='primary')
        op.create_primary_key('villages_pkey', 'villages', ['commune_id', 'id'])
        op.create_foreign_key('fk_nodes_commune', 'nodes', 'communes', ['commune_id'], ['id'])
        op.create_foreign_key('fk_nodes_village', 'nodes', 'villages',
                              ['commune_id', 'village_id'], ['commune_id', 'id'])
    op.create_index('ix_nodes_commune_village', 'nodes', ['commune_id', 'village_id'])


def downgrade() -> None:
    raise NotImplementedError("villages of two communes may share an id now; no way back")
