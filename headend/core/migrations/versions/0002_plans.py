"""plans, alarms, emergency broadcasts, plan fields on as-run records

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

_ASRUN_COLUMNS = (
    sa.Column('item_id', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=24), nullable=True),
    sa.Column('priority', sa.Integer(), nullable=True),
    sa.Column('language', sa.String(length=16), nullable=True),
    sa.Column('planned_start_ms', sa.BigInteger(), nullable=True),
    sa.Column('planned_end_ms', sa.BigInteger(), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=True),
)


def upgrade() -> None:
    for col in _ASRUN_COLUMNS:
        op.add_column('asrun', col)
    op.create_index('ix_asrun_item_id', 'asrun', ['item_id'])
    op.create_table(
        'node_plans',
        sa.Column('node_id', sa.String(length=40), nullable=False),
        sa.Column('ver', sa.BigInteger(), nullable=False),
        sa.Column('issued_ms', sa.BigInteger(), nullable=False),
        sa.Column('from_ms', sa.BigInteger(), nullable=False),
        sa.Column('to_ms', sa.BigInteger(), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('items', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.String(length=300), nullable=True),
        sa.Column('updated_ms', sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(['node_id'], ['nodes.id']),
        sa.PrimaryKeyConstraint('node_id'),
    )
    op.create_table(
        'alarms',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('subject', sa.String(length=200), nullable=False),
        sa.Column('commune_id', sa.String(length=64), nullable=True),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('raised_ms', sa.BigInteger(), nullable=False),
        sa.Column('cleared_ms', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_alarms_kind', 'alarms', ['kind'])
    op.create_index('ix_alarms_cleared_ms', 'alarms', ['cleared_ms'])
    op.create_table(
        'broadcasts',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('commune_id', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('title', sa.String(length=300), nullable=False),
        sa.Column('text', sa.Text(), nullable=True),
        sa.Column('media', sa.String(length=200), nullable=False),
        sa.Column('villages', sa.Text(), nullable=False),
        sa.Column('sent_by', sa.String(length=100), nullable=False),
        sa.Column('sent_from', sa.String(length=200), nullable=False),
        sa.Column('sent_ms', sa.BigInteger(), nullable=False),
        sa.Column('nodes', sa.Integer(), nullable=False),
        sa.Column('started', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['commune_id'], ['communes.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_broadcasts_commune_id', 'broadcasts', ['commune_id'])


def downgrade() -> None:
    op.drop_index('ix_broadcasts_commune_id', 'broadcasts')
    op.drop_table('broadcasts')
    op.drop_index('ix_alarms_cleared_ms', 'alarms')
    op.drop_index('ix_alarms_kind', 'alarms')
    op.drop_table('alarms')
    op.drop_table('node_plans')
    op.drop_index('ix_asrun_item_id', 'asrun')
    with op.batch_alter_table('asrun') as batch:
        for col in _ASRUN_COLUMNS:
            batch.drop_column(col.name)
