"""One row per user task and per waiting timer, so that queues and the timer worker are plain SQL."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class TaskRow(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    task_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    process_key: Mapped[str] = mapped_column(String(120))
    spec_id: Mapped[str] = mapped_column(String(120))
    name: Mapped[str] = mapped_column(String(200))
    lane: Mapped[str | None] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(40))
    form: Mapped[str] = mapped_column(String(200))
    stage: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | completed | cancelled
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    due_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    completed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    team: Mapped[str | None] = mapped_column(String(80))  # the contract's team (never changes): team queues
    # set while a substitute holds the task for this away user (models/substitutes.py); kept once completed
    on_behalf_of_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    __table_args__ = (
        Index("ix_tasks_queue", "status", "role", "due_at"),
        Index("ix_tasks_team", "status", "team", "due_at"),
        Index("ix_tasks_assignee", "assignee_id", "status", "due_at"),
        Index("ix_tasks_instance", "instance_id", "status"),
        Index("ix_tasks_four_eyes", "instance_id", "spec_id", "completed_by_id"),
        # who last did this step of this contract (a send-back goes back to them): the newest row, not a scan
        Index("ix_tasks_last_done", "instance_id", "spec_id", "completed_at", "id"),
        Index("ix_tasks_on_behalf", "status", "on_behalf_of_id"),  # open tasks held for an away user (the sweep)
        Index("ix_tasks_completed", "completed_at"),  # the dashboard's periods (services/kpis.py)
    )


class Timer(Base):
    __tablename__ = "timers"

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    task_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    spec_id: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(20))  # timer | escalation (a boundary timer)
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20), default="waiting")  # waiting | fired | cancelled | error
    fired_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_timers_due", "status", "due_at"), Index("ix_timers_instance", "instance_id"))
