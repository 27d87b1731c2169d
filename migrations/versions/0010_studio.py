"""Process owners' studio: the shared draft of each process and its saved process tests.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('studio_drafts',
    sa.Column('process_key', sa.String(length=120), nullable=False),
    sa.Column('files', sa.Text(), nullable=False),
    sa.Column('base_deployment_id', sa.Integer(), nullable=True),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('updated_by_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', models.base.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['base_deployment_id'], ['deployments.id'],
                            name=op.f('fk_studio_drafts_base_deployment_id_deployments')),
    sa.ForeignKeyConstraint(['updated_by_id'], ['users.id'], name=op.f('fk_studio_drafts_updated_by_id_users')),
    sa.PrimaryKeyConstraint('process_key', name=op.f('pk_studio_drafts'))
    )
    op.create_table('process_tests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('process_key', sa.String(length=120), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('case', sa.Text(), nullable=False),
    sa.Column('updated_by_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', models.base.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['updated_by_id'], ['users.id'], name=op.f('fk_process_tests_updated_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_process_tests')),
    sa.UniqueConstraint('process_key', 'name', name=op.f('uq_process_tests_process_key'))
    )
    with op.batch_alter_table('process_tests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_process_tests_process_key'), ['process_key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('process_tests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_process_tests_process_key'))
    op.drop_table('process_tests')
    op.drop_table('studio_drafts')
