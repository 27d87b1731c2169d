"""Who last did a step of a contract, found from the newest task row instead of a scan of its history.

A send-back hands the step to the person who did it before; on a contract with a long history the scan of
every earlier row made each completion slower (bench/engine_bench.py, step 5000).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 22:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index('ix_tasks_last_done', ['instance_id', 'spec_id', 'completed_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_last_done')
