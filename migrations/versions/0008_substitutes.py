"""Substitutes (委托): who stands in for whom, and tasks held on behalf of another user.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 03:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('substitutions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('substitute_id', sa.Integer(), nullable=False),
    sa.Column('starts_at', models.base.UTCDateTime(), nullable=False),
    sa.Column('ends_at', models.base.UTCDateTime(), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('cancelled_at', models.base.UTCDateTime(), nullable=True),
    sa.Column('opened_at', models.base.UTCDateTime(), nullable=True),
    sa.Column('closed_at', models.base.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_substitutions_created_by_id_users')),
    sa.ForeignKeyConstraint(['substitute_id'], ['users.id'], name=op.f('fk_substitutions_substitute_id_users')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_substitutions_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_substitutions'))
    )
    with op.batch_alter_table('substitutions', schema=None) as batch_op:
        batch_op.create_index('ix_substitutions_live', ['closed_at', 'starts_at'], unique=False)
        batch_op.create_index('ix_substitutions_substitute', ['substitute_id', 'ends_at'], unique=False)
        batch_op.create_index('ix_substitutions_user', ['user_id', 'ends_at'], unique=False)

    if op.get_bind().dialect.name == 'sqlite':
        # SQLite adds a column with its reference in place; a batch foreign key would copy the whole table
        op.execute('ALTER TABLE tasks ADD COLUMN on_behalf_of_id INTEGER '
                   'CONSTRAINT fk_tasks_on_behalf_of_id_users REFERENCES users (id)')
    else:
        op.add_column('tasks', sa.Column('on_behalf_of_id', sa.Integer(), nullable=True))
        op.create_foreign_key(op.f('fk_tasks_on_behalf_of_id_users'), 'tasks', 'users', ['on_behalf_of_id'], ['id'])
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index('ix_tasks_on_behalf', ['status', 'on_behalf_of_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_on_behalf')
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ALTER TABLE tasks DROP COLUMN on_behalf_of_id')  # SQLite 3.35+; drops its reference with it
    else:
        op.drop_constraint(op.f('fk_tasks_on_behalf_of_id_users'), 'tasks', type_='foreignkey')
        op.drop_column('tasks', 'on_behalf_of_id')

    with op.batch_alter_table('substitutions', schema=None) as batch_op:
        batch_op.drop_index('ix_substitutions_user')
        batch_op.drop_index('ix_substitutions_substitute')
        batch_op.drop_index('ix_substitutions_live')

    op.drop_table('substitutions')
