"""Substitutes (委托/代理): while a user is away, another user holds their tasks on their behalf."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class Substitution(Base):
    """One away range: from ``starts_at`` to ``ends_at`` the tasks held by ``user_id`` go to ``substitute_id``.

    ``opened_at`` / ``closed_at`` record when the tasks were handed over and handed back, so the worker's sweep
    touches only ranges that still need it (those not closed) and never hands the same tasks over twice."""

    __tablename__ = "substitutions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    substitute_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    created_at: Mapped[datetime]
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(String(200), default="")
    cancelled_at: Mapped[datetime | None]
    opened_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_substitutions_user", "user_id", "ends_at"),  # a user's ranges; is this user away now
        Index("ix_substitutions_substitute", "substitute_id", "ends_at"),  # whom a user stands in for
        Index("ix_substitutions_live", "closed_at", "starts_at"),  # the sweep: ranges not yet closed
    )
