"""The process owners' studio: the draft a process owner edits before deploying, and the process tests saved
next to a process (run in the studio and before every deploy)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class Draft(Base):
    """One shared draft per process: its files as JSON ``{filename: text}``; ``revision`` refuses stale saves."""

    __tablename__ = "studio_drafts"

    process_key: Mapped[str] = mapped_column(String(120), primary_key=True)
    files: Mapped[str] = mapped_column(Text)
    base_deployment_id: Mapped[int | None] = mapped_column(ForeignKey("deployments.id"))
    revision: Mapped[int] = mapped_column(Integer, default=1)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column()


class ProcessTest(Base):
    """A test case of a process: the inputs of each step and the path and outcome they must give (JSON)."""

    __tablename__ = "process_tests"
    __table_args__ = (UniqueConstraint("process_key", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    process_key: Mapped[str] = mapped_column(String(120), index=True)
    name: Mapped[str] = mapped_column(String(200))
    case: Mapped[str] = mapped_column(Text)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column()
