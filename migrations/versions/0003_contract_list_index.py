"""Contract list: newest activity first without sorting the whole instances table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 18:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.create_index('ix_instances_updated', ['updated_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_index('ix_instances_updated')
