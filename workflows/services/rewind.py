"""Withdraw (撤回) and return to an earlier step (驳回到指定节点).

Withdraw: whoever completed a step pulls it back while nothing else has happened on the contract since
(no task completed, no timer fired); the step opens again for them, with the data they submitted.
Return: whoever may complete an open task sends the contract back to any user task already passed on
its path that leads to this task, with a required comment; the chosen step opens again for its role (or
straight for whoever did it last, as after a send-back) and the process flows forward along the BPMN.

Which steps may be reopened is the process owner's call, in the BPMN: a user task with the property
``returnable="false"`` never is, and once a task named in the process property ``returnBarriers`` is
completed, it and every step before it are closed (``customer_signature``: a signed contract is not
reopened). The engine half is ``engine/rewind.py``; both actions lock in the order every task action
follows (instance, task, audit chain) and are audited with the tasks they cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from SpiffWorkflow.exceptions import SpiffWorkflowException
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from models import AuditEvent, Instance, TaskRow, User

from ..clock import using_clock
from ..engine import rewind as engine_rewind
from ..engine import runner
from ..engine.package import ProcessPackage
from ..engine.sandbox import SandboxViolation
from ..runtime import Runtime
from . import audit, countersign
from . import statements as sql
from .accounts import UserView
from .deployments import package_for
from .errors import Conflict, InvalidInput, NotFound, PermissionDenied, ProcessError
from .progress import LiveInstance, describe_engine_error, has_timers, load_workflow, persist_step
from .tasks import _check_may_act, _check_version, _lock_instance_of, _require_open

MAX_COMMENT = 1000

# the steps already passed on a contract: one row per user task, with who did it last (ix_tasks_last_done)
_PASSED = (select(TaskRow.spec_id, func.min(TaskRow.id), func.max(TaskRow.completed_at))
           .where(TaskRow.instance_id == bindparam("instance_id"), TaskRow.status == "completed")
           .group_by(TaskRow.spec_id))
_DONE_BY = (select(TaskRow.spec_id, User.display_name).join(User, User.id == TaskRow.completed_by_id)
            .where(TaskRow.instance_id == bindparam("instance_id"), TaskRow.status == "completed")
            .order_by(TaskRow.completed_at, TaskRow.id))
# what may happen on a contract after a completion while it can still be withdrawn: nobody acted on it, only
# hands changed (a claim of the next step, a reminder, a substitute taking over). Anything else closes the way back.
_QUIET = ("claim", "unclaim", "reassign", "remind", "viewed", "return", "substitute", "substitute_end")
_COMPLETE_EVENT = (select(AuditEvent.id).where(AuditEvent.instance_id == bindparam("instance_id"),
                                               AuditEvent.task_id == bindparam("task_id"),
                                               AuditEvent.action == "complete")
                   .order_by(AuditEvent.id.desc()).limit(1))
_ACTED_SINCE = (select(AuditEvent.action, AuditEvent.actor, AuditEvent.spec_id)
                .where(AuditEvent.instance_id == bindparam("instance_id"), AuditEvent.id > bindparam("after"),
                       AuditEvent.action.not_in(_QUIET))
                .order_by(AuditEvent.id).limit(1))


@dataclass(frozen=True)
class Target:
    """A step already passed on the contract, and whether the task at hand may send the contract back to it.
    ``reason`` (when not offered): ``closed`` (``by`` names the completed barrier), ``not_returnable``,
    ``beside`` (it does not lead to this task: another branch) or ``subprocess``."""

    spec_id: str
    name: str
    offered: bool
    reason: str | None = None
    by: str | None = None
    last_by: str | None = None
    last_at: datetime | None = None


@dataclass(frozen=True)
class WithdrawState:
    allowed: bool
    reason: str | None = None  # why not, in English (the page says it in the user's language)


@dataclass(frozen=True)
class Moved:
    instance_id: int
    business_key: str
    instance_version: int
    new_task_ids: list[int]
    cancelled_task_ids: list[int]


def _closed_by(s: Session, package: ProcessPackage, process_key: str, instance_id: int,
               passed: dict[str, tuple[int, datetime]], spec_id: str) -> str | None:
    """The completed barrier that closes ``spec_id`` (it, or a step before it), if any."""
    for barrier in package.processes[process_key].return_barriers:
        if barrier in passed and (barrier == spec_id or engine_rewind.reaches(package.spec, spec_id, barrier)):
            return barrier
    return None


def _passed(s: Session, instance_id: int) -> dict[str, tuple[int, datetime]]:
    """spec id -> (the first row that did it, when it was last done)."""
    rows = s.connection().execute(_PASSED, {"instance_id": instance_id}).all()
    return {r[0]: (r[1], r[2]) for r in rows}


def return_targets(rt: Runtime, task_id: int, user: UserView) -> list[Target]:
    """For an open task this user may complete: every step passed on its contract, first done first, each
    offered or with the reason it is not. Empty when the user may not act on the task. Reads rows and the
    parsed diagram only (no workflow is loaded)."""
    with rt.read() as s:
        row = s.connection().execute(sql.TASK_AND_INSTANCE, {"task_id": task_id}).first()
        if row is None or row.status != "open":
            return []
        try:
            _check_may_act(s, rt, row, row.deployment_id, user, row.team)
        except (Conflict, PermissionDenied):
            return []
        package = package_for(rt, row.deployment_id)
        passed = _passed(s, row.instance_id)
        names = package.node_names
        last_by = dict(s.connection().execute(_DONE_BY, {"instance_id": row.instance_id}).all())  # the latest wins
        out = []
        for spec_id, (_, last_at) in sorted(passed.items(), key=lambda kv: kv[1][0]):
            if spec_id == row.spec_id:
                continue
            offered, reason, by = _judge(s, package, row, passed, spec_id)
            out.append(Target(spec_id, names.get(spec_id, spec_id), offered, reason, by, last_by.get(spec_id),
                              last_at))
        return out


def _judge(s: Session, package: ProcessPackage, row, passed, spec_id: str) -> tuple[bool, str | None, str | None]:
    process = package.processes[row.process_key]
    info = process.user_tasks.get(spec_id)
    if info is None or engine_rewind.user_task_spec(package.spec, spec_id) is None:
        return False, "subprocess", None
    if not info.returnable:
        return False, "not_returnable", None
    barrier = _closed_by(s, package, row.process_key, row.instance_id, passed, spec_id)
    if barrier is not None:
        return False, "closed", package.node_names.get(barrier, barrier)
    if not engine_rewind.reaches(package.spec, spec_id, row.spec_id):
        return False, "beside", None
    return True, None, None


_REFUSALS = {
    "subprocess": "'{target}' is not a step of the main process",
    "not_returnable": "'{target}' cannot be reopened (the process marks it so)",
    "closed": "'{target}' is closed: '{by}' has been completed",
    "beside": "'{target}' is on another branch and does not lead to '{task}'",
}


def return_to(rt: Runtime, task_id: int, user: UserView, target: str, comment: str,
              expected_version: int | None = None) -> Moved:
    """Send the contract of the open task ``task_id`` back to the passed step ``target``."""
    comment = (comment or "").strip()
    if not comment:
        raise InvalidInput("a comment is required", {"comment": "say what must be done again and why"})
    if len(comment) > MAX_COMMENT:
        raise InvalidInput("the comment is too long", {"comment": f"at most {MAX_COMMENT} characters"})
    now = rt.clock.now()
    with rt.write() as s:
        row = _locked_row(rt, s, task_id)
        _require_open(s, row)
        _check_may_act(s, rt, row, row.deployment_id, user, row.team)
        _check_version(row, row.version, expected_version)
        package = package_for(rt, row.deployment_id)
        passed = _passed(s, row.instance_id)
        names = package.node_names
        target_name = names.get(target, target)
        if target not in passed or target == row.spec_id:
            raise InvalidInput("not a step to return to",
                               {"target": f"'{target_name}' has not been done on this contract before this task"})
        offered, reason, by = _judge(s, package, row, passed, target)
        if not offered:
            raise Conflict(_REFUSALS[reason].format(target=target_name, by=by, task=row.name))
        moved, inst, workflow = _move(rt, s, row, package, target, user, now, data_from=row.task_uuid)
        audit.record(s, now, "return_to_step", actor_id=user.id, actor=user.username, role=row.role,
                     instance_id=row.instance_id, task_id=row.id, spec_id=row.spec_id,
                     data={"to": target, "to_name": target_name, "comment": comment,
                           "cancelled": moved.cancelled_task_ids, "opened": moved.new_task_ids})
        _record_cancels(s, now, row.instance_id, moved, skip=row.id)
    rt.keep_workflow(inst.id, inst.version, workflow)
    return moved


def withdraw_state(rt: Runtime, task_id: int, user: UserView) -> WithdrawState:
    """May this user withdraw the completed task ``task_id`` now? (For the page; the action checks again.)"""
    with rt.read() as s:
        row = s.connection().execute(sql.TASK_AND_INSTANCE, {"task_id": task_id}).first()
        if row is None or row.status != "completed" or row.completed_by_id != user.id:
            return WithdrawState(False)
        try:
            _check_withdraw(s, rt, row)
        except Conflict as err:
            return WithdrawState(False, err.message)
    return WithdrawState(True)


def _check_withdraw(s: Session, rt: Runtime, row) -> ProcessPackage:
    status = s.scalar(select(Instance.status).where(Instance.id == row.instance_id))
    if status != "running":
        raise Conflict(f"the contract is {status}; '{row.name}' can no longer be withdrawn")
    package = package_for(rt, row.deployment_id)
    conn = s.connection()
    completed = conn.scalar(_COMPLETE_EVENT, {"instance_id": row.instance_id, "task_id": row.id})
    since = conn.execute(_ACTED_SINCE, {"instance_id": row.instance_id, "after": completed or 0}).first()
    if completed is None:
        raise Conflict(f"'{row.name}' can no longer be withdrawn: its completion is not on record")
    if since is not None:
        what = package.node_names.get(since.spec_id, since.spec_id)
        if since.action == "complete":
            raise Conflict(f"'{row.name}' can no longer be withdrawn: {since.actor} has since completed '{what}'")
        if since.action in ("timer", "escalation"):
            raise Conflict(f"'{row.name}' can no longer be withdrawn: the timer '{what}' has fired since")
        raise Conflict(f"'{row.name}' can no longer be withdrawn: {since.actor} has since acted on the contract "
                       f"({since.action})")
    info = package.processes[row.process_key].user_tasks.get(row.spec_id)
    if info is None or not info.returnable:
        raise Conflict(f"'{row.name}' cannot be reopened (the process marks it so)")
    barrier = _closed_by(s, package, row.process_key, row.instance_id, _passed(s, row.instance_id), row.spec_id)
    if barrier is not None:
        raise Conflict(_REFUSALS["closed"].format(target=row.name, by=package.node_names.get(barrier, barrier)))
    return package


def withdraw(rt: Runtime, task_id: int, user: UserView, expected_version: int | None = None) -> Moved:
    """Pull back the step ``task_id`` this user completed: it opens again, held by them, with their data."""
    now = rt.clock.now()
    with rt.write() as s:
        row = _locked_row(rt, s, task_id)
        if row.status != "completed":
            raise Conflict(f"'{row.name}' is not completed, so there is nothing to withdraw")
        if row.completed_by_id != user.id:
            raise PermissionDenied(f"only whoever completed '{row.name}' may withdraw it")
        _check_version(row, row.version, expected_version)
        package = _check_withdraw(s, rt, row)
        moved, inst, workflow = _move(rt, s, row, package, row.spec_id, user, now, data_from=None)
        mine = [i for i in moved.new_task_ids
                if s.scalar(select(TaskRow.spec_id).where(TaskRow.id == i)) == row.spec_id]
        if mine:  # the step is theirs again at once, whatever the routing of a re-made task would have done
            s.execute(update(TaskRow).where(TaskRow.id.in_(mine))
                      .values(assignee_id=user.id, claimed_at=now, on_behalf_of_id=None))
            for task_id in mine:
                audit.record(s, now, "claim", actor_id=user.id, actor=user.username, role=row.role,
                             instance_id=row.instance_id, task_id=task_id, spec_id=row.spec_id)
        audit.record(s, now, "withdraw", actor_id=user.id, actor=user.username, role=row.role,
                     instance_id=row.instance_id, task_id=row.id, spec_id=row.spec_id,
                     data={"cancelled": moved.cancelled_task_ids, "opened": moved.new_task_ids})
        _record_cancels(s, now, row.instance_id, moved)
    rt.keep_workflow(inst.id, inst.version, workflow)
    return moved


def _locked_row(rt: Runtime, s: Session, task_id: int):
    _lock_instance_of(rt, s, task_id)
    row = s.connection().execute(sql.TASK_AND_INSTANCE, {"task_id": task_id}).first()
    if row is None:
        raise NotFound(f"no task #{task_id}")
    return row


def _move(rt: Runtime, s: Session, row, package: ProcessPackage, target: str, user: UserView, now: datetime,
          data_from: str | None, extra_data: dict[str, Any] | None = None) -> tuple[Moved, LiveInstance, Any]:
    """Rewind the contract's workflow to ``target`` and persist it. The new token carries the data of the
    open task ``data_from`` (return: what the returner saw), else of the open task the rewind cancels that
    changed last (withdraw: what the withdrawer submitted, as the next step received it)."""
    inst = LiveInstance.of_task_row(row)
    workflow = load_workflow(rt, inst, package, s)
    had_timers = has_timers(workflow)
    try:
        with using_clock(rt.clock):
            _, cancel, _ = engine_rewind.plan(workflow, target)
            data = _data_for(workflow, cancel, data_from) | (extra_data or {})
            engine_rewind.rewind(workflow, target, data)
            stepped = runner.step(workflow)
    except engine_rewind.RewindRefused as err:
        raise Conflict(str(err)) from None
    except (SpiffWorkflowException, SandboxViolation) as err:
        raise ProcessError(describe_engine_error(err)) from err
    outcome = persist_step(rt, s, inst, package, workflow, stepped, now, had_timers, actor=user)
    countersign.close_for_cancelled(s, rt, now, [i for i, _ in outcome.cancelled], user)
    key = s.scalar(select(Instance.business_key).where(Instance.id == inst.id))
    return Moved(inst.id, key, outcome.version, outcome.new_task_ids, [i for i, _ in outcome.cancelled]), inst, workflow


def _data_for(workflow, cancel, data_from: str | None) -> dict[str, Any]:
    from uuid import UUID

    if data_from is not None:
        task = workflow.tasks.get(UUID(data_from))
        if task is not None:
            return dict(task.data)
    with_data = [t for t in cancel if t.data]
    if with_data:
        return dict(max(with_data, key=lambda t: t.last_state_change).data)
    return dict(runner.current_data(workflow))


def _record_cancels(s: Session, now: datetime, instance_id: int, moved: Moved, skip: int | None = None) -> None:
    for task_id in moved.cancelled_task_ids:
        if task_id != skip:
            spec_id = s.scalar(select(TaskRow.spec_id).where(TaskRow.id == task_id))
            audit.record(s, now, "cancel", instance_id=instance_id, task_id=task_id, spec_id=spec_id)


_LATEST_OF_USER = (select(TaskRow.id, TaskRow.name).where(
    TaskRow.instance_id == bindparam("instance_id"), TaskRow.status == "completed",
    TaskRow.completed_by_id == bindparam("user_id")).order_by(TaskRow.completed_at.desc(), TaskRow.id.desc()).limit(1))


def withdrawable(rt: Runtime, instance_id: int, user: UserView) -> tuple[int, str] | None:
    """For the contract page: (task id, name) of the step this user completed last on the contract, if they may
    still withdraw it."""
    with rt.read() as s:
        mine = s.connection().execute(_LATEST_OF_USER, {"instance_id": instance_id, "user_id": user.id}).first()
    if mine is None or not withdraw_state(rt, mine.id, user).allowed:
        return None
    return mine.id, mine.name
