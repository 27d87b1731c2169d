"""Audit events: one row for every action, with actor, time, task and the data that changed.

Events form hash chains: each instance has its own (``i:<id>``), actions outside an instance go to
``system`` and compliance reads to ``access``. An event's hash covers its content, its place in the chain
and the previous event's hash, so an altered, removed or reordered row no longer fits. ``audit_chains``
holds each chain's head (locked while an event is added, which orders concurrent writers), and anchors
fix the heads of all chains at a moment in one digest that can be copied out of the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    deployment_id: Mapped[int | None] = mapped_column(ForeignKey("deployments.id"))
    at: Mapped[datetime]
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor: Mapped[str] = mapped_column(String(80))  # username, or "system" / "worker"
    role: Mapped[str | None] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(40))
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    spec_id: Mapped[str | None] = mapped_column(String(120))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    chain: Mapped[str] = mapped_column(String(40))
    seq: Mapped[int] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_audit_instance", "instance_id", "id"), Index("ix_audit_at", "at"),
                      UniqueConstraint("chain", "seq", name="uq_audit_events_chain_seq"),
                      Index("ix_audit_actor", "actor_id", "at"))


class AuditChain(Base):
    __tablename__ = "audit_chains"

    chain: Mapped[str] = mapped_column(String(40), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    head: Mapped[str] = mapped_column(String(64))
    anchored_seq: Mapped[int] = mapped_column(Integer, default=0)


class AuditAnchor(Base):
    """A digest over the chain heads that moved since the previous anchor, chained to that anchor."""

    __tablename__ = "audit_anchors"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    chains: Mapped[int] = mapped_column(Integer)
    prev_digest: Mapped[str] = mapped_column(String(64), unique=True)  # one anchor follows each: no forks
    digest: Mapped[str] = mapped_column(String(64), unique=True)


class AuditAnchorEntry(Base):
    __tablename__ = "audit_anchor_entries"

    anchor_id: Mapped[int] = mapped_column(ForeignKey("audit_anchors.id", ondelete="CASCADE"), primary_key=True)
    chain: Mapped[str] = mapped_column(String(40), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_anchor_entries_chain", "chain", "seq"),)
