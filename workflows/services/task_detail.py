"""Everything a task page shows, gathered in one call: the task, its form, instructions, the contract's
data and history, and which actions the viewer may take. It deserializes one workflow (this contract's);
queues never do."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from models import AuditEvent, Instance, TaskRow

from ..forms import to_form_values
from ..runtime import Runtime
from . import instances
from .accounts import UserView, in_team, supervises, users_with_role
from .deployments import package_for
from .errors import Conflict, NotFound, PermissionDenied
from .tasks import TaskItem, four_eyes_conflict, get_task

# decisions are never pre-filled from an earlier pass: an approver must choose again after a send-back
_NOT_PREFILLED_SUFFIXES = ("_decision",)


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    actor: str
    role: str | None
    action: str
    spec_id: str | None
    data: dict[str, Any]


@dataclass
class TaskDetail:
    task: TaskItem
    process_name: str
    schema: dict[str, Any]
    ui_schema: dict[str, Any]
    values: dict[str, Any]
    instructions: str | None
    data: dict[str, Any]
    history: list[HistoryEntry]
    history_total: int
    task_names: dict[str, str]
    may_claim: bool = False
    may_unclaim: bool = False
    may_complete: bool = False
    may_reassign: bool = False
    four_eyes_conflict: str | None = None  # a task this user completed here that rules them out of this one
    may_override: bool = False  # an administrator may complete anyway, with a reason
    candidates: list[UserView] = field(default_factory=list)


def may_view_task(user: UserView, item: TaskItem, team: str | None) -> bool:
    if item.assignee == user.username:
        return True
    if item.role in user.roles and in_team(user.team, item.role, team):
        return True
    return bool(user.roles & {"compliance", "admin"}) or supervises(user, team)


def _refuse_unless_visible(user: UserView, item: TaskItem, team: str | None, completed_by: int | None) -> None:
    if not may_view_task(user, item, team) and completed_by != user.id:
        raise PermissionDenied(f"task #{item.id} belongs to the role '{item.role}'")


def require_visible(rt: Runtime, task_id: int, user: UserView, unclaim: bool = False) -> None:
    """Before an action on a task (browser or API): NotFound if there is no such task, and to a user who may
    not even see it a plain refusal. The actions check the task's state first, so their conflicts would tell
    anyone guessing ids who holds a task, or who completed it and when."""
    item = get_task(rt, task_id)
    with rt.read() as s:
        team, completed_by = s.execute(select(TaskRow.team, TaskRow.completed_by_id)
                                       .where(TaskRow.id == task_id)).one()
    if unclaim and not may_view_task(user, item, team) and completed_by != user.id:
        # only the holder may give a task back, and the holder always sees it: everyone else hears the same
        raise Conflict(f"task #{item.id} is not claimed by {user.username}")  # not even its name
    _refuse_unless_visible(user, item, team, completed_by)


def recent_history(rt: Runtime, instance_id: int, limit: int = 50) -> tuple[list[HistoryEntry], int]:
    with rt.read() as s:
        rows = s.execute(select(AuditEvent.at, AuditEvent.actor, AuditEvent.role, AuditEvent.action,
                                AuditEvent.spec_id, AuditEvent.data)
                         .where(AuditEvent.instance_id == instance_id)
                         .order_by(AuditEvent.id.desc()).limit(limit)).all()
        total = s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.instance_id == instance_id))
    return [HistoryEntry(*r) for r in rows], total or 0


def task_detail(rt: Runtime, task_id: int, user: UserView) -> TaskDetail:
    item = get_task(rt, task_id)
    with rt.read() as s:
        team, completed_by, deployment_id = s.execute(
            select(TaskRow.team, TaskRow.completed_by_id, Instance.deployment_id)
            .join(Instance, Instance.id == TaskRow.instance_id).where(TaskRow.id == task_id)).one()
    _refuse_unless_visible(user, item, team, completed_by)
    package = package_for(rt, deployment_id)
    info = package.user_task(item.process_key, item.spec_id)
    schema = package.forms[item.form]
    ui_schema = package.forms.get(info.ui_form, {}) if info.ui_form else {}
    data = instances.instance_data(rt, item.instance_id)
    values = {k: v for k, v in to_form_values(data).items()
              if k in schema.get("properties", {}) and not k.endswith(_NOT_PREFILLED_SUFFIXES)}
    history, total = recent_history(rt, item.instance_id)
    names = package.node_names
    detail = TaskDetail(item, package.processes[item.process_key].name, schema, ui_schema, values, info.instructions,
                        data, history, total, names)
    is_open = item.status == "open"
    holder = item.assignee == user.username
    has_role = item.role in user.roles and in_team(user.team, item.role, team)
    detail.may_claim = is_open and item.assignee is None and has_role
    detail.may_unclaim = is_open and holder
    detail.may_complete = is_open and (holder or (item.assignee is None and has_role))
    if detail.may_complete:
        with rt.read() as s:
            detail.four_eyes_conflict = four_eyes_conflict(s, rt, item, deployment_id, user.id)
        detail.may_override = detail.four_eyes_conflict is not None and "admin" in user.roles
    detail.may_reassign = is_open and (holder or (item.assignee is None and has_role) or supervises(user, team))
    if detail.may_reassign:
        detail.candidates = [u for u in users_with_role(rt, item.role)
                             if u.username != item.assignee and in_team(u.team, item.role, team)]
    return detail


def form_schema(rt: Runtime, task_id: int) -> dict[str, Any]:
    """Just the task's form schema (for parsing a submission before the service validates it)."""
    with rt.read() as s:
        row = s.execute(select(TaskRow.form, Instance.deployment_id).join(Instance, Instance.id == TaskRow.instance_id)
                        .where(TaskRow.id == task_id)).first()
    if row is None:
        raise NotFound(f"no task #{task_id}")
    return package_for(rt, row.deployment_id).forms[row.form]
