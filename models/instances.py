"""Process instances (live engine state plus business columns) and the path each one has taken."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Integer, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class Instance(Base):
    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    process_key: Mapped[str] = mapped_column(String(120))
    business_key: Mapped[str] = mapped_column(String(120), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="running")  # running | completed | error
    end_event: Mapped[str | None] = mapped_column(String(120))
    stage: Mapped[str | None] = mapped_column(String(40))
    customer_name: Mapped[str | None] = mapped_column(String(200), index=True)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    related_key: Mapped[str | None] = mapped_column(String(120), index=True)
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    team: Mapped[str | None] = mapped_column(String(80))  # the starter's team: whose supervisors see it
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(Text)  # the live (compacted) workflow, JSON
    error: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (Index("ix_instances_process_status", "process_key", "status"),
                      Index("ix_instances_team", "team", "status"),
                      Index("ix_instances_updated", "updated_at", "id"))


class Step(Base):
    """A finished engine task that left the live tree (append-only): the instance's path."""

    __tablename__ = "steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    task_uuid: Mapped[str] = mapped_column(String(36))
    spec_id: Mapped[str] = mapped_column(String(120))
    spec_type: Mapped[str] = mapped_column(String(60))
    name: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20))
    finished_at: Mapped[datetime]

    __table_args__ = (Index("ix_steps_instance", "instance_id", "id"),)
