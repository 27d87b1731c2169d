"""Added signers (加签): opinions asked of named users and approvers added after a reviewer.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 03:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('consultations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('asked_by_id', sa.Integer(), nullable=False),
    sa.Column('asked_of_id', sa.Integer(), nullable=False),
    sa.Column('question', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('answer', sa.Text(), nullable=True),
    sa.Column('agrees', sa.Boolean(), nullable=True),
    sa.Column('asked_at', models.base.UTCDateTime(), nullable=False),
    sa.Column('closed_at', models.base.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['asked_by_id'], ['users.id'], name=op.f('fk_consultations_asked_by_id_users')),
    sa.ForeignKeyConstraint(['asked_of_id'], ['users.id'], name=op.f('fk_consultations_asked_of_id_users')),
    sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], name=op.f('fk_consultations_instance_id_instances'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_consultations_task_id_tasks'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consultations'))
    )
    with op.batch_alter_table('consultations', schema=None) as batch_op:
        batch_op.create_index('ix_consultations_asked_of', ['asked_of_id', 'status', 'id'], unique=False)
        batch_op.create_index('ix_consultations_task', ['task_id', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('consultations', schema=None) as batch_op:
        batch_op.drop_index('ix_consultations_task')
        batch_op.drop_index('ix_consultations_asked_of')

    op.drop_table('consultations')
