"""Team queues from task rows alone: each task carries its contract's team (which never changes).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 18:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('team', sa.String(length=80), nullable=True))
        batch_op.create_index('ix_tasks_team', ['status', 'team', 'due_at'], unique=False)
    op.execute("UPDATE tasks SET team = (SELECT instances.team FROM instances WHERE instances.id = tasks.instance_id)")


def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_team')
        batch_op.drop_column('team')
