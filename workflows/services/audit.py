"""Writes audit events inside the caller's transaction, so an action and its record commit together."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from ..engine.codec import StateCodec
from .statements import INSERT_AUDIT

_codec = StateCodec()


def record(s: Session, at: datetime, action: str, *, actor_id: int | None = None, actor: str = "system",
           role: str | None = None, instance_id: int | None = None, deployment_id: int | None = None,
           task_id: int | None = None, spec_id: str | None = None, data: dict[str, Any] | None = None) -> None:
    s.connection().execute(INSERT_AUDIT, dict(at=at, action=action, actor_id=actor_id, actor=actor, role=role,
                                              instance_id=instance_id, deployment_id=deployment_id, task_id=task_id,
                                              spec_id=spec_id, data=_codec.to_json_value(data or {})))


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The keys whose values differ, with old and new values (``record`` makes them JSON-safe)."""
    diff = {}
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old != new:
            diff[key] = {"old": old, "new": new}
    return diff
