"""Batch approval (批量审批): a reviewer approves several open review tasks of one kind at once.

Which tasks qualify: open tasks of one kind (one ``spec_id``) whose form is an approval form — a
``*_decision`` field offering ``approve`` that is the only required field, and an optional ``*_comment``
— so "approve" needs no other input. The batch applies that decision and one optional comment to each.

Nothing is bypassed: each task goes through ``tasks.complete`` on its own (validation, role and team,
four eyes, the contract's version as the reviewer saw it on the confirmation page, one audit event
``complete`` with ``data.batch`` marking the batch), each in its own transaction, so one refusal or lost
race is reported for that task and the others stand. A task the user may not even see is refused without
naming it (as the task page would).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import select

from models import Instance, TaskRow

from ..runtime import Runtime
from . import task_detail, tasks
from .accounts import UserView, in_team
from .deployments import package_for
from .errors import InvalidInput, NotFound, PermissionDenied, ServiceError

MAX_BATCH = 50
MAX_COMMENT = 2000


@dataclass(frozen=True)
class ApprovalForm:
    decision: str  # the field that takes "approve"
    comment: str | None  # the optional comment field


@dataclass(frozen=True)
class Outcome:
    """What became of one task of a batch (or, before it is sent, what would: ``code`` "ready")."""
    task_id: int
    code: str  # approved | ready | four_eyes | forbidden | conflict | invalid | not_found | process_error
    message: str | None = None  # why not, for the person who acted (English; the web layer localizes)
    item: tasks.TaskItem | None = None  # None when the user may not see the task

    @property
    def ok(self) -> bool:
        return self.code in ("approved", "ready")


@lru_cache(maxsize=256)
def _approval_form_of(schema_json: str) -> ApprovalForm | None:
    schema = json.loads(schema_json)
    props = schema.get("properties", {})
    decisions = [k for k in props if k.endswith("_decision")]
    if len(decisions) != 1 or set(schema.get("required", [])) - {decisions[0]}:
        return None
    options = props[decisions[0]].get("oneOf") or [{"const": v} for v in props[decisions[0]].get("enum", [])]
    if not any(o.get("const") == "approve" for o in options):
        return None
    comments = [k for k in props if k.endswith("_comment") and props[k].get("type") == "string"]
    others = set(props) - {decisions[0], *comments}
    if others or len(comments) > 1:
        return None
    return ApprovalForm(decisions[0], comments[0] if comments else None)


def approval_form(schema: dict[str, Any]) -> ApprovalForm | None:
    """The decision and comment fields if ``schema`` is an approval form a batch may fill, else None."""
    return _approval_form_of(json.dumps(schema, sort_keys=True))


def _deployments(rt: Runtime, task_ids: list[int]) -> dict[int, tuple[int, str | None]]:
    if not task_ids:
        return {}
    with rt.read() as s:
        rows = s.execute(select(TaskRow.id, Instance.deployment_id, TaskRow.team)
                         .join(Instance, Instance.id == TaskRow.instance_id).where(TaskRow.id.in_(task_ids))).all()
    return {r[0]: (r[1], r[2]) for r in rows}


def _form_of(rt: Runtime, item: tasks.TaskItem, deployment_id: int) -> ApprovalForm | None:
    return approval_form(package_for(rt, deployment_id).forms[item.form])


def selectable(rt: Runtime, user: UserView, items: list[tasks.TaskItem]) -> set[int]:
    """Of the queue's tasks, those to offer a checkbox: open approval tasks the user may complete."""
    candidates = [t for t in items if t.status == "open" and (
        t.assignee == user.username or (t.assignee is None and t.role in user.roles))]
    where = _deployments(rt, [t.id for t in candidates])
    out = set()
    for t in candidates:
        deployment_id, team = where.get(t.id, (None, None))
        if deployment_id is None or (t.assignee is None and not in_team(user.team, t.role, team)):
            continue
        if _form_of(rt, t, deployment_id) is not None:
            out.add(t.id)
    return out


def _clean_ids(task_ids: list[int]) -> list[int]:
    ids = list(dict.fromkeys(int(i) for i in task_ids))
    if not ids:
        raise InvalidInput("choose at least one task to approve", {"ids": "choose at least one task"})
    if len(ids) > MAX_BATCH:
        raise InvalidInput(f"a batch approves at most {MAX_BATCH} tasks ({len(ids)} chosen)",
                           {"ids": f"at most {MAX_BATCH} tasks"})
    return ids


def _check(rt: Runtime, task_id: int, user: UserView, kind: list[str]) -> tuple[Outcome | None, Any]:
    """A task's pre-checks: (refusal, None) or (None, (item, form)). ``kind`` holds the batch's spec_id."""
    try:
        task_detail.require_visible(rt, task_id, user)
        item = tasks.get_task(rt, task_id)
    except (NotFound, PermissionDenied) as err:
        return Outcome(task_id, err.code if err.code == "not_found" else "forbidden", err.message), None
    deployment_id, _ = _deployments(rt, [task_id])[task_id]
    form = _form_of(rt, item, deployment_id)
    if form is None:
        return Outcome(task_id, "invalid", f"'{item.name}' is not an approval a batch can give", item), None
    if not kind:
        kind.append(item.spec_id)
    elif item.spec_id != kind[0]:
        return Outcome(task_id, "invalid", f"'{item.name}' is not of the same kind as the other tasks", item), None
    return None, (item, form, deployment_id)


def preview(rt: Runtime, task_ids: list[int], user: UserView) -> list[Outcome]:
    """What approving these tasks would do, for the confirmation page: "ready" or why not (nothing changes)."""
    out: list[Outcome] = []
    kind: list[str] = []
    for task_id in _clean_ids(task_ids):
        refused, found = _check(rt, task_id, user, kind)
        if refused is not None:
            out.append(refused)
            continue
        item, _form, deployment_id = found
        problem = _may_act(rt, item, deployment_id, user)
        out.append(Outcome(task_id, "ready", None, item) if problem is None else problem)
    return out


def _may_act(rt: Runtime, item: tasks.TaskItem, deployment_id: int, user: UserView) -> Outcome | None:
    if item.status != "open":
        return Outcome(item.id, "conflict", f"'{item.name}' is no longer open (it was {item.status})", item)
    if item.assignee is not None and item.assignee != user.username:
        return Outcome(item.id, "conflict", f"'{item.name}' is claimed by {item.assignee}", item)
    if item.assignee is None and item.role not in user.roles:
        return Outcome(item.id, "forbidden", f"'{item.name}' is work for the role '{item.role}', which "
                                             f"{user.username} does not have", item)
    with rt.read() as s:
        done = tasks.four_eyes_conflict(s, rt, item, deployment_id, user.id)
    if done is not None:
        return Outcome(item.id, "four_eyes", f"four eyes: {user.username} completed '{done}' on this contract, "
                                             f"so someone else must do '{item.name}'", item)
    return None


def approve_many(rt: Runtime, task_ids: list[int], user: UserView, comment: str = "",
                 versions: dict[int, int] | None = None) -> list[Outcome]:
    """Approve each task through ``tasks.complete``, one transaction each; returns one Outcome per task in
    the order given. ``versions``: the contract version each task was confirmed at (a contract that moved
    on since is a conflict for that task). Raises InvalidInput only for the batch as a whole (empty, too
    large, comment too long); every other refusal is the outcome of its task."""
    ids = _clean_ids(task_ids)
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT:
        raise InvalidInput("the comment is too long", {"comment": f"at most {MAX_COMMENT} characters"})
    marker = {"id": uuid.uuid4().hex[:12], "size": len(ids)}
    out: list[Outcome] = []
    kind: list[str] = []
    for task_id in ids:
        refused, found = _check(rt, task_id, user, kind)
        if refused is not None:
            out.append(refused)
            continue
        item, form, _deployment = found
        data: dict[str, Any] = {form.decision: "approve"}
        if comment and form.comment:
            data[form.comment] = comment
        try:
            tasks.complete(rt, task_id, user, data, expected_version=(versions or {}).get(task_id), batch=marker)
        except ServiceError as err:
            out.append(Outcome(task_id, err.code, err.message, tasks.get_task(rt, task_id)))
            continue
        out.append(Outcome(task_id, "approved", None, tasks.get_task(rt, task_id)))
    return out


def amount_total(outcomes: list[Outcome]) -> Decimal:
    return sum((o.item.amount for o in outcomes if o.item is not None and o.item.amount is not None), Decimal(0))
