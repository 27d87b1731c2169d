"""Added signers (加签) of a task: opinions asked of named users, and approvers added after a reviewer."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class Consultation(Base):
    """``opinion`` (征询意见, 前加签): ``asked_by`` asks ``asked_of`` a question; the task cannot be completed
    while it is ``pending`` (then ``answered`` or ``withdrawn``). ``approver_after`` (后加签): ``asked_by``
    approved and handed the task to ``asked_of``, who completes it; status ``added``, ``question`` holds the
    reviewer's comment."""

    __tablename__ = "consultations"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # opinion | approver_after
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    asked_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    asked_of_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    question: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))  # pending | answered | withdrawn | added
    answer: Mapped[str | None] = mapped_column(Text)
    agrees: Mapped[bool | None] = mapped_column(Boolean)
    asked_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]  # answered or withdrawn

    __table_args__ = (
        # a task's signers (its page, and the check before every completion)
        Index("ix_consultations_task", "task_id", "status"),
        # "opinions asked of me", newest first, and the count in the navigation
        Index("ix_consultations_asked_of", "asked_of_id", "status", "id"),
    )
