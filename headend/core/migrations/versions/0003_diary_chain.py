"""diary hash chain, programme items, commune terrain

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_ASRUN_COLUMNS = (
    sa.Column('commune_id', sa.String(length=64), nullable=True),
    sa.Column('chain_seq', sa.BigInteger(), nullable=True),
    sa.Column('hash', sa.String(length=64), nullable=True),
    sa.Column('corrects_id', sa.Integer(), nullable=True),
    sa.Column('operator', sa.String(length=100), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
)


def upgrade() -> None:
    op.add_column('communes', sa.Column('terrain', sa.String(length=16), nullable=False,
                                        server_default='mountainous'))
    with op.batch_alter_table('asrun') as batch:
        batch.alter_column('rid', existing_type=sa.BigInteger(), nullable=True)
        for col in _ASRUN_COLUMNS:
            batch.add_column(col)
        batch.create_unique_constraint('uq_asrun_commune_seq', ['commune_id', 'chain_seq'])
    op.create_index('ix_asrun_commune_start', 'asrun', ['commune_id', 'start_ms'])
    op.create_table(
        'diary_heads',
        sa.Column('commune_id', sa.String(length=64), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('commune_id'),
    )
    op.create_table(
        'programme',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('commune_id', sa.String(length=64), nullable=False),
        sa.Column('occurrence', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=24), nullable=False),
        sa.Column('priority', sa.Integer(), nullable=False),
        sa.Column('language', sa.String(length=16), nullable=False),
        sa.Column('title', sa.String(length=300), nullable=False),
        sa.Column('summary', sa.Text(), nullable=False),
        sa.Column('source', sa.String(length=300), nullable=False),
        sa.Column('start_ms', sa.BigInteger(), nullable=False),
        sa.Column('end_ms', sa.BigInteger(), nullable=False),
        sa.Column('villages', sa.Text(), nullable=False),
        sa.Column('operator', sa.String(length=100), nullable=False),
        sa.Column('approver', sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('commune_id', 'occurrence', name='uq_programme_occ'),
    )
    op.create_index('ix_programme_commune_start', 'programme', ['commune_id', 'start_ms'])
    _chain_existing()


def _chain_existing() -> None:
    """Entries stored before the chain existed join it in the order they were stored."""
    from headend.diary import chain
    conn = op.get_bind()
    communes = dict(conn.execute(sa.text(
        "SELECT nodes.id, villages.commune_id FROM nodes "
        "JOIN villages ON villages.id = nodes.village_id")).all())
    rows = conn.execute(sa.text("SELECT * FROM asrun ORDER BY id")).mappings().all()
    heads: dict[str, tuple[int, str]] = {}
    for row in rows:
        entry = dict(row)
        entry['commune_id'] = communes.get(entry['node_id'])
        if entry['commune_id'] is None:
            continue
        seq, prev = heads.get(entry['commune_id'], (0, chain.GENESIS))
        entry['chain_seq'] = seq + 1
        entry['hash'] = chain.entry_hash(prev, entry)
        heads[entry['commune_id']] = (seq + 1, entry['hash'])
        conn.execute(sa.text("UPDATE asrun SET commune_id = :c, chain_seq = :s, hash = :h "
                             "WHERE id = :id"),
                     {"c": entry['commune_id'], "s": seq + 1, "h": entry['hash'],
                      "id": entry['id']})
    for cid, (seq, h) in heads.items():
        conn.execute(sa.text("INSERT INTO diary_heads (commune_id, seq, hash) "
                             "VALUES (:c, :s, :h)"), {"c": cid, "s": seq, "h": h})


def downgrade() -> None:
    op.drop_index('ix_programme_commune_start', 'programme')
    op.drop_table('programme')
    op.drop_table('diary_heads')
    op.drop_index('ix_asrun_commune_start', 'asrun')
    with op.batch_alter_table('asrun') as batch:
        batch.drop_constraint('uq_asrun_commune_seq', type_='unique')
        for col in _ASRUN_COLUMNS:
            batch.drop_column(col.name)
        batch.alter_column('rid', existing_type=sa.BigInteger(), nullable=False)
    op.drop_column('communes', 'terrain')
