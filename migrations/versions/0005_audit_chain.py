"""Tamper-evident audit: hash chains over audit events, chain heads and anchors.

Existing events are chained in id order (one chain per instance, ``system`` for the rest).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 19:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'audit_chains',
        sa.Column('chain', sa.String(length=40), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('head', sa.String(length=64), nullable=False),
        sa.Column('anchored_seq', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('chain', name=op.f('pk_audit_chains')),
    )
    op.create_table(
        'audit_anchors',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', UTCDateTime(), nullable=False),
        sa.Column('chains', sa.Integer(), nullable=False),
        sa.Column('prev_digest', sa.String(length=64), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_anchors')),
        sa.UniqueConstraint('digest', name=op.f('uq_audit_anchors_digest')),
        sa.UniqueConstraint('prev_digest', name=op.f('uq_audit_anchors_prev_digest')),
    )
    op.create_table(
        'audit_anchor_entries',
        sa.Column('anchor_id', sa.Integer(), nullable=False),
        sa.Column('chain', sa.String(length=40), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['anchor_id'], ['audit_anchors.id'], ondelete='CASCADE',
                                name=op.f('fk_audit_anchor_entries_anchor_id_audit_anchors')),
        sa.PrimaryKeyConstraint('anchor_id', 'chain', name=op.f('pk_audit_anchor_entries')),
    )
    op.create_index('ix_anchor_entries_chain', 'audit_anchor_entries', ['chain', 'seq'], unique=False)
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chain', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('seq', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('hash', sa.String(length=64), nullable=True))
    _chain_existing_events()
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        for column, type_ in (('chain', sa.String(length=40)), ('seq', sa.Integer()),
                              ('prev_hash', sa.String(length=64)), ('hash', sa.String(length=64))):
            batch_op.alter_column(column, existing_type=type_, nullable=False)
        batch_op.create_unique_constraint('uq_audit_events_chain_seq', ['chain', 'seq'])
        batch_op.create_index('ix_audit_actor', ['actor_id', 'at'], unique=False)


def _chain_existing_events() -> None:
    from workflows.services.audit import GENESIS, HASHED_COLUMNS, chain_of, link

    bind = op.get_bind()
    events = sa.table('audit_events', sa.column('id', sa.Integer), sa.column('at', UTCDateTime()),
                      sa.column('data', sa.JSON), sa.column('hash'),
                      *(sa.column(c) for c in HASHED_COLUMNS if c not in ('at', 'data')))
    chains = sa.table('audit_chains', sa.column('chain'), sa.column('seq'), sa.column('head'),
                      sa.column('anchored_seq'))
    heads: dict[str, tuple[int, str]] = {}
    updates = []
    rows = bind.execute(sa.select(events).order_by(events.c.id)).mappings()
    for row in rows:
        chain = chain_of(row['instance_id'])
        values = dict(row)
        heads[chain] = link(values, chain, heads.get(chain, (0, GENESIS)))
        updates.append({'b_id': row['id'], 'b_chain': chain, 'b_seq': values['seq'], 'b_prev': values['prev_hash'],
                        'b_hash': values['hash']})
    if updates:
        bind.execute(events.update().where(events.c.id == sa.bindparam('b_id'))
                     .values(chain=sa.bindparam('b_chain'), seq=sa.bindparam('b_seq'),
                             prev_hash=sa.bindparam('b_prev'), hash=sa.bindparam('b_hash')), updates)
    if heads:
        bind.execute(chains.insert(), [{'chain': c, 'seq': s, 'head': h, 'anchored_seq': 0}
                                       for c, (s, h) in heads.items()])


def downgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_actor')
        batch_op.drop_constraint('uq_audit_events_chain_seq', type_='unique')
        batch_op.drop_column('hash')
        batch_op.drop_column('prev_hash')
        batch_op.drop_column('seq')
        batch_op.drop_column('chain')
    op.drop_index('ix_anchor_entries_chain', table_name='audit_anchor_entries')
    op.drop_table('audit_anchor_entries')
    op.drop_table('audit_anchors')
    op.drop_table('audit_chains')
