"""Writes audit events inside the caller's transaction, so an action and its record commit together.

Each event is linked into its chain (see ``models.audit``): the chain's head row is locked on the first
event of a transaction, later events of the same transaction follow on from it in memory, and the new
head is written just before the commit.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, event, select, text, update
from sqlalchemy.orm import Session

from models import AuditChain

from ..engine.codec import StateCodec
from ..engine.runner import data_changes as changes  # noqa: F401 - the diff every audit event records
from .statements import INSERT_AUDIT

_codec = StateCodec()
GENESIS = "0" * 64
SYSTEM_CHAIN = "system"
ACCESS_CHAIN = "access"
_HEADS = "lvyue_audit_heads"

_LOCK_HEAD = select(AuditChain.seq, AuditChain.head).where(AuditChain.chain == bindparam("chain")).with_for_update()
_NEW_CHAIN = text("INSERT INTO audit_chains (chain, seq, head, anchored_seq) VALUES (:chain, 0, :head, 0) "
                  "ON CONFLICT (chain) DO NOTHING")
_WRITE_HEAD = (update(AuditChain).where(AuditChain.chain == bindparam("c"))
               .values(seq=bindparam("new_seq"), head=bindparam("new_head")))


def chain_of(instance_id: int | None) -> str:
    return f"i:{instance_id}" if instance_id is not None else SYSTEM_CHAIN


def record(s: Session, at: datetime, action: str, *, actor_id: int | None = None, actor: str = "system",
           role: str | None = None, instance_id: int | None = None, deployment_id: int | None = None,
           task_id: int | None = None, spec_id: str | None = None, data: dict[str, Any] | None = None,
           chain: str | None = None) -> None:
    chain = chain or chain_of(instance_id)
    heads: dict[str, tuple[int, str]] = s.info.setdefault(_HEADS, {})
    conn = s.connection()
    if chain not in heads:
        head = conn.execute(_LOCK_HEAD, {"chain": chain}).first()
        if head is None:
            conn.execute(_NEW_CHAIN, {"chain": chain, "head": GENESIS})
            head = conn.execute(_LOCK_HEAD, {"chain": chain}).one()
        heads[chain] = (head.seq, head.head)
    row = dict(at=at, action=action, actor_id=actor_id, actor=actor, role=role, instance_id=instance_id,
               deployment_id=deployment_id, task_id=task_id, spec_id=spec_id,
               data=_finite(_codec.to_json_value(data or {})))
    heads[chain] = link(row, chain, heads[chain])
    conn.execute(INSERT_AUDIT, row)


def link(row: dict[str, Any], chain: str, head: tuple[int, str]) -> tuple[int, str]:
    """Place the event ``row`` after ``head`` (seq, hash) of ``chain``: sets its chain, seq, prev_hash and
    hash, and returns the chain's new head. Whatever writes events (here, the migration, the benchmarks)
    links them this one way."""
    seq, prev = head
    row.update(chain=chain, seq=seq + 1, prev_hash=prev)
    row["hash"] = event_hash(row)
    return row["seq"], row["hash"]


@event.listens_for(Session, "before_commit")
def _write_heads(s: Session) -> None:
    heads = s.info.pop(_HEADS, None)
    if heads:
        s.connection().execute(_WRITE_HEAD, [{"c": c, "new_seq": seq, "new_head": h} for c, (seq, h) in heads.items()])


@event.listens_for(Session, "after_rollback")
def _forget_heads(s: Session) -> None:
    s.info.pop(_HEADS, None)


def event_hash(row: Any) -> str:
    """SHA-256 over the event's content, chain position and predecessor, in one canonical JSON form.

    ``row`` is a mapping or a result row with the event's columns; data read back from either database
    hashes the same as the data written (see ``_canonical``)."""
    get = row.__getitem__ if isinstance(row, dict) else row._mapping.__getitem__
    body = [get("chain"), get("seq"), get("prev_hash"), utc_text(get("at")), get("action"), get("actor_id"),
            get("actor"), get("role"), get("instance_id"), get("deployment_id"), get("task_id"), get("spec_id"),
            _canonical(get("data"))]
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


HASHED_COLUMNS = ("chain", "seq", "prev_hash", "at", "action", "actor_id", "actor", "role", "instance_id",
                  "deployment_id", "task_id", "spec_id", "data")


def utc_text(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_EXACT = 2**53  # beyond this, a float and the integer PostgreSQL's jsonb gives back for it differ


def _canonical(value: Any) -> Any:
    """Numbers as both databases give them back: an integral float as an int, and a number too large for a
    float to hold exactly as its normalized decimal text (jsonb returns ``1e23`` as ``100000000000000000000000``,
    which is not ``int(1e23)``)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        if abs(value) < _EXACT:
            return int(value)
        return {"$number": str(Decimal(repr(value)).normalize())}
    if isinstance(value, int) and abs(value) >= _EXACT:
        return {"$number": str(Decimal(value).normalize())}
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _finite(value: Any) -> Any:
    """NaN and infinities as text: JSON (and PostgreSQL's jsonb) has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
