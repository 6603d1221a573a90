"""an emergency is sent once: the broadcast's idempotency key and its commands; commands by day

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idem_key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('commands', sa.Text(), nullable=False,
                                      server_default='[]'))
        batch_op.create_unique_constraint('uq_broadcasts_idem_key', ['idem_key'])
    with op.batch_alter_table('commands', schema=None) as batch_op:
        batch_op.create_index('ix_commands_issued_ms', ['issued_ms'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('commands', schema=None) as batch_op:
        batch_op.drop_index('ix_commands_issued_ms')
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.drop_constraint('uq_broadcasts_idem_key', type_='unique')
        batch_op.drop_column('commands')
        batch_op.drop_column('idem_key')
