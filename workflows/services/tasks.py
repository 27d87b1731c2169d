"""Task queues and the four actions on a task: claim, unclaim, reassign and complete.

Who may act: a user holding the role of the task's lane, or the user it is assigned to. Four eyes: a
task's ``fourEyesExclude`` property names user tasks whose completers may not act on it (so the rule
lives in the BPMN, which process owners edit). Completion validates the form server-side, runs the
engine to its next wait state and commits rows, state and audit in one transaction; a lost race or a
stale view raises ``Conflict`` and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from SpiffWorkflow.exceptions import SpiffWorkflowException
from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.orm import Session, aliased

from models import Consultation, Instance, TaskRow, User

from ..clock import using_clock
from ..engine import runner
from ..engine.sandbox import SandboxViolation
from ..forms import FormInvalid, validate_submission
from ..runtime import Runtime
from . import audit, records
from . import statements as sql
from .accounts import SUPERVISORY_ROLES, TEAM_SCOPED_ROLES, UserView, in_team, supervises
from .deployments import package_for
from .errors import (
    Conflict,
    FourEyesViolation,
    InvalidInput,
    NotFound,
    PermissionDenied,
    ProcessError,
    RaceLost,
)
from .paging import Page
from .progress import LiveInstance, describe_engine_error, has_timers, load_workflow, persist_step


@dataclass(frozen=True)
class TaskItem:
    id: int
    instance_id: int
    business_key: str
    process_key: str
    spec_id: str
    name: str
    role: str
    stage: str | None
    status: str
    form: str
    customer_name: str | None
    amount: Decimal | None
    assignee: str | None
    created_at: datetime
    due_at: datetime | None
    instance_version: int
    claimed_at: datetime | None = None
    assignee_name: str | None = None
    on_behalf_of: str | None = None  # the away user a substitute holds this task for (services/substitutes.py)



def _item_query():
    assignee, on_behalf_of = aliased(User), aliased(User)
    cols = (TaskRow.id, TaskRow.instance_id, Instance.business_key, TaskRow.process_key, TaskRow.spec_id,
            TaskRow.name, TaskRow.role, TaskRow.stage, TaskRow.status, TaskRow.form, Instance.customer_name,
            Instance.amount, assignee.username, TaskRow.created_at, TaskRow.due_at, Instance.version,
            TaskRow.claimed_at, assignee.display_name, on_behalf_of.username)
    return select(*cols).join(Instance, Instance.id == TaskRow.instance_id).outerjoin(
        assignee, assignee.id == TaskRow.assignee_id).outerjoin(
        on_behalf_of, on_behalf_of.id == TaskRow.on_behalf_of_id)


# Built once and run on the session's Connection: building a select and the ORM's execution path cost
# more than the indexed lookups themselves (bench/web_bench.py, "its queries through the service layer").
ITEMS_BY_ID = _item_query().where(TaskRow.id.in_(bindparam("ids", expanding=True)))
ITEM_BY_ID = _item_query().where(TaskRow.id == bindparam("id"))
OPEN_ITEMS_OF_INSTANCE = (_item_query().where(TaskRow.instance_id == bindparam("instance_id"),
                                              TaskRow.status == "open").order_by(TaskRow.id))


SORTS = {
    "due": (TaskRow.due_at.is_(None), TaskRow.due_at, TaskRow.id),
    "created": (TaskRow.created_at, TaskRow.id),
    "-created": (TaskRow.created_at.desc(), TaskRow.id.desc()),
    "amount": (Instance.amount.is_(None), Instance.amount, TaskRow.id),
    "-amount": (Instance.amount.is_(None), Instance.amount.desc(), TaskRow.id),
    "customer": (Instance.customer_name, TaskRow.id),
}


@dataclass(frozen=True)
class QueueFilter:
    stage: str | None = None
    customer: str | None = None
    amount_min: Decimal | None = None
    amount_max: Decimal | None = None
    due: str | None = None  # overdue | today | week | none
    sort: str = "due"


def _scope_where(user: _Who, scope: str) -> list:
    """Conditions on task rows alone (each row carries its contract's team), so counts need no join."""
    where = [TaskRow.status == "open"]
    if scope == "mine":
        where.append(TaskRow.assignee_id == user.id)
    elif scope == "roles":
        where += [TaskRow.role.in_(sorted(user.roles)), TaskRow.assignee_id.is_(None), *_team_where(user)]
    elif scope == "open":
        where += [TaskRow.role.in_(sorted(user.roles)), *_team_where(user)]
    elif scope == "team":
        if not user.roles & SUPERVISORY_ROLES:
            raise PermissionDenied("the team queue is for supervisors, managers and the director")
        if "director" not in user.roles and user.team is not None:
            where.append(TaskRow.team == user.team)
    else:
        raise InvalidInput(f"unknown queue '{scope}'")
    return where


def _team_where(user: _Who) -> list:
    """Team-scoped roles see their own team's contracts (and those of no team) only."""
    scoped = sorted(user.roles & TEAM_SCOPED_ROLES)
    if not scoped or user.team is None:
        return []
    ours = or_(TaskRow.team == user.team, TaskRow.team.is_(None))
    if set(scoped) == user.roles:  # the usual case: no OR, so the queue stays an index range
        return [ours]
    return [or_(TaskRow.role.not_in(scoped), ours)]


def _filter_where(rt: Runtime, f: QueueFilter) -> list:
    where = []
    if f.stage:
        where.append(TaskRow.stage == f.stage)
    of_instance = []
    if f.customer:
        of_instance.append(Instance.customer_name.contains(f.customer, autoescape=True))
    if f.amount_min is not None:
        of_instance.append(Instance.amount >= f.amount_min)
    if f.amount_max is not None:
        of_instance.append(Instance.amount <= f.amount_max)
    if of_instance:
        where.append(TaskRow.instance_id.in_(select(Instance.id).where(*of_instance)))
    if f.due:
        now = rt.clock.now()
        if f.due == "overdue":
            where.append(TaskRow.due_at < now)
        elif f.due in ("today", "week"):
            end = _end_of_business_day(rt, now, 0 if f.due == "today" else 6)
            where += [TaskRow.due_at.is_not(None), TaskRow.due_at <= end]
        elif f.due == "none":
            where.append(TaskRow.due_at.is_(None))
        else:
            raise InvalidInput(f"unknown due filter '{f.due}'", {"due": "must be overdue, today, week or none"})
    if f.sort not in SORTS:
        raise InvalidInput(f"unknown sort '{f.sort}'", {"sort": "must be one of " + ", ".join(SORTS)})
    return where


def _end_of_business_day(rt: Runtime, now: datetime, days_ahead: int) -> datetime:
    local = now.astimezone(ZoneInfo(rt.business_tz))
    return (local + timedelta(days=days_ahead)).replace(hour=23, minute=59, second=59, microsecond=0)


def _count(s: Session, where: list) -> int:
    return s.connection().scalar(select(func.count()).select_from(TaskRow).where(and_(*where))) or 0


def list_tasks(rt: Runtime, user: UserView, scope: str = "mine", page: int = 1, per_page: int = 25,
               stage: str | None = None, customer: str | None = None,
               filters: QueueFilter | None = None) -> Page[TaskItem]:
    """``mine``: assigned to me; ``roles``: unclaimed tasks of my roles; ``open``: open tasks of my roles;
    ``team``: every open task of my team's contracts (supervisory roles; the director sees all).

    The page's task ids are chosen from the task rows first (joined to instances only to sort by amount
    or customer); only those rows are then joined for display, so a page costs the same on page 1 and
    page 100 and does not grow with the number of contracts behind the filter."""
    f = filters or QueueFilter(stage=stage, customer=customer)
    where = _scope_where(_Who.of(user), scope) + _filter_where(rt, f)
    page, per_page = max(1, page), min(max(1, per_page), 200)
    order = SORTS[f.sort]
    ids = select(TaskRow.id).where(and_(*where))
    if f.sort in ("amount", "-amount", "customer"):
        ids = ids.join(Instance, Instance.id == TaskRow.instance_id)
    ids = ids.order_by(*order).offset((page - 1) * per_page).limit(per_page)
    with rt.read() as s:
        total = _count(s, where)
        conn = s.connection()
        chosen = list(conn.scalars(ids))
        rows = conn.execute(ITEMS_BY_ID, {"ids": chosen}).all() if chosen else []
    by_id = {r[0]: r for r in rows}
    return Page([TaskItem(*by_id[i]) for i in chosen if i in by_id], total, page, per_page)


def queue_counts(rt: Runtime, user: UserView) -> dict[str, int]:
    """The numbers in the navigation (on every page): my tasks, my overdue ones, my roles' unclaimed
    queue and, for supervisory roles, the team. Separate counts: each one is an index range (one
    statement with OR and FILTER measured slower on both databases)."""
    who = _Who.of(user)
    params = {"uid": who.id, "team": who.team, "now": rt.clock.now()}
    names = ["mine", "mine_overdue", "roles"] + (["team"] if who.roles & SUPERVISORY_ROLES else [])
    with rt.read() as s:
        conn = s.connection()
        return {name: conn.scalar(_count_statement(name, who.roles, who.team is not None), params) or 0
                for name in names}


COUNT_SCOPES = {"mine": "mine", "mine_overdue": "mine", "roles": "roles", "team": "team"}


@lru_cache(maxsize=512)
def _count_statement(name: str, roles: frozenset[str], has_team: bool):
    """A navigation count for users with these roles, built once with the user, team and time as parameters."""
    where = _scope_where(_Who(bindparam("uid"), bindparam("team") if has_team else None, roles), COUNT_SCOPES[name])
    if name == "mine_overdue":
        where.append(TaskRow.due_at < bindparam("now"))
    return select(func.count()).select_from(TaskRow).where(and_(*where))


@dataclass(frozen=True)
class _Who:
    """What the queue conditions read of a user: values, or parameters for a statement built once."""
    id: Any
    team: Any  # None: no team
    roles: frozenset[str]

    @classmethod
    def of(cls, user: UserView) -> _Who:
        return cls(user.id, user.team or None, frozenset(user.roles))


def get_task(rt: Runtime, task_id: int) -> TaskItem:
    with rt.read() as s:
        row = s.connection().execute(ITEM_BY_ID, {"id": task_id}).first()
    if row is None:
        raise NotFound(f"no task #{task_id}")
    return TaskItem(*row)


# Every action on a task first locks its contract's instance row (PostgreSQL), then the task row, then the
# audit chain head: one order for all, so actions on one contract queue up instead of deadlocking (a claim
# holding the task row while a completion holding the instance waited for it, and each for the other). The
# task is read by a statement after the lock: one that waited for it sees what the previous holder committed.
# FOR NO KEY UPDATE: foreign-key checks of other writers (audit events, new rows of the contract) pass.
LOCK_INSTANCE_OF_TASK = (select(Instance.id).where(Instance.id == select(TaskRow.instance_id).where(
    TaskRow.id == bindparam("task_id")).scalar_subquery()).with_for_update(key_share=True))


def _lock_instance_of(rt: Runtime, s: Session, task_id: int) -> None:
    if rt.postgres:
        s.connection().execute(LOCK_INSTANCE_OF_TASK, {"task_id": task_id})


def _load_row(rt: Runtime, s: Session, task_id: int) -> TaskRow:
    _lock_instance_of(rt, s, task_id)
    row = s.get(TaskRow, task_id, with_for_update=rt.postgres or None)
    if row is None:
        raise NotFound(f"no task #{task_id}")
    return row


def _name(s: Session, user_id: int | None) -> str:
    if user_id is None:
        return "nobody"
    return s.scalar(select(User.username).where(User.id == user_id)) or f"user #{user_id}"


def _require_open(s: Session, row) -> None:
    if row.status == "completed":
        when = row.completed_at.strftime("%Y-%m-%d %H:%M UTC") if row.completed_at else "earlier"
        raise Conflict(f"'{row.name}' was already completed by {_name(s, row.completed_by_id)} ({when})")
    if row.status != "open":
        raise Conflict(f"'{row.name}' is no longer open (it was {row.status})")


def four_eyes_conflict(s: Session, rt: Runtime, row, deployment_id: int, user_id: int) -> str | None:
    """The name of a task this user completed on the instance that rules them out of ``row``, if any."""
    package = package_for(rt, deployment_id)
    info = package.user_task(row.process_key, row.spec_id)
    if not info.four_eyes_exclude:
        return None
    return s.connection().execute(sql.FOUR_EYES, {"instance_id": row.instance_id, "user_id": user_id,
                                                  "spec_ids": list(info.four_eyes_exclude)}).scalar()


def _check_four_eyes(s: Session, rt: Runtime, row, deployment_id: int, user_id: int, username: str) -> None:
    done = four_eyes_conflict(s, rt, row, deployment_id, user_id)
    if done is not None:
        raise FourEyesViolation(f"four eyes: {username} completed '{done}' on this contract, "
                                f"so someone else must do '{row.name}'")


MIN_OVERRIDE_REASON = 10


def _check_override(s: Session, rt: Runtime, row, deployment_id: int, user: UserView,
                    reason: str | None) -> str | None:
    """An administrator may override the four-eyes rule with a reason; returns the overridden conflict."""
    done = four_eyes_conflict(s, rt, row, deployment_id, user.id)
    if done is None:
        return None
    if "admin" not in user.roles:
        raise PermissionDenied("only an administrator may override the four-eyes rule")
    if len((reason or "").strip()) < MIN_OVERRIDE_REASON:
        raise InvalidInput("an override needs a reason",
                           {"override_reason": f"give the reason for the override (at least {MIN_OVERRIDE_REASON} "
                                               "characters); it is flagged in the four-eyes report"})
    return done


def _deployment_of(s: Session, instance_id: int) -> int:
    return s.scalar(select(Instance.deployment_id).where(Instance.id == instance_id))


def _check_may_act(s: Session, rt: Runtime, row, deployment_id: int, user: UserView, team: str | None,
                   four_eyes: bool = True, countersigned: bool = True) -> None:
    """``countersigned=False``: the caller checks the task's signers itself (a completion: countersign's
    ``refuse_completion`` reads them in one statement)."""
    if row.assignee_id is not None and row.assignee_id != user.id:
        raise Conflict(f"'{row.name}' is claimed by {_name(s, row.assignee_id)}")
    _check_stand_in(s, rt, row, user)
    if row.assignee_id != user.id and row.role not in user.roles:
        raise PermissionDenied(f"'{row.name}' is work for the role '{row.role}', which {user.username} does not have")
    if row.assignee_id != user.id and not in_team(user.team, row.role, team):
        raise PermissionDenied(f"'{row.name}' is work of the team '{team}', which {user.username} is not in")
    if four_eyes:
        _check_four_eyes(s, rt, row, deployment_id, user.id, user.username)
        if countersigned and s.connection().scalar(APPROVED_AND_ADDED, {"task_id": row.id,
                                                                         "user_id": user.id}) is not None:
            raise FourEyesViolation(f"four eyes: {user.username} approved '{row.name}' and added an approver after "
                                    "them, so someone else must complete it")


# a reviewer who approved a task and added an approver after themselves (加签, services/countersign.py) has decided
# it: they may not take it back, claim it again or send the contract back from it
APPROVED_AND_ADDED = (select(Consultation.id).where(Consultation.task_id == bindparam("task_id"),
                                                    Consultation.kind == "approver_after",
                                                    Consultation.status == "added",
                                                    Consultation.asked_by_id == bindparam("user_id")).limit(1))


def _check_stand_in(s: Session, rt: Runtime, row, user: UserView) -> None:
    """A substitute acts on a task held for an away user only while the away range is open: not in the moments
    before the worker's sweep hands the task back (services/substitutes.py)."""
    behalf = getattr(row, "on_behalf_of_id", None)
    if behalf is None or row.assignee_id != user.id:
        return
    from .substitutes import stand_in

    if stand_in(s.connection(), behalf, rt.clock.now()) != user.id:
        raise PermissionDenied(f"{user.username} held '{row.name}' for {_name(s, behalf)}, who is no longer away; "
                               "the task goes back to them")


def _check_version(row, version: int, expected_version: int | None) -> None:
    if expected_version is not None and version != expected_version:
        raise Conflict(f"this contract changed since you opened '{row.name}' (version {expected_version}, "
                       f"now {version}); check it and submit again")


def claim(rt: Runtime, task_id: int, user: UserView) -> TaskItem:
    now = rt.clock.now()
    with rt.write() as s:
        row = _load_row(rt, s, task_id)
        _require_open(s, row)
        if row.assignee_id == user.id:
            return get_task_in(s, task_id)
        _check_may_act(s, rt, row, _deployment_of(s, row.instance_id), user, row.team)
        row.assignee_id, row.claimed_at, row.on_behalf_of_id = user.id, now, None
        audit.record(s, now, "claim", actor_id=user.id, actor=user.username, role=row.role,
                     instance_id=row.instance_id, task_id=row.id, spec_id=row.spec_id)
        s.flush()
        return get_task_in(s, task_id)


def unclaim(rt: Runtime, task_id: int, user: UserView) -> TaskItem:
    now = rt.clock.now()
    with rt.write() as s:
        row = _load_row(rt, s, task_id)
        _require_open(s, row)
        if row.assignee_id != user.id:
            raise Conflict(f"'{row.name}' is not claimed by {user.username}")
        _check_stand_in(s, rt, row, user)
        row.assignee_id, row.claimed_at, row.on_behalf_of_id = None, None, None
        audit.record(s, now, "unclaim", actor_id=user.id, actor=user.username, role=row.role,
                     instance_id=row.instance_id, task_id=row.id, spec_id=row.spec_id)
        s.flush()
        return get_task_in(s, task_id)


def reassign(rt: Runtime, task_id: int, user: UserView, to_username: str, reason: str) -> TaskItem:
    """The holder (or a supervisor, manager or director) hands the task to another user of its role."""
    if not reason or not reason.strip():
        raise InvalidInput("a reason is required", {"reason": "this field is required"})
    now = rt.clock.now()
    with rt.write() as s:
        row = _load_row(rt, s, task_id)
        _require_open(s, row)
        team = row.team
        holder_or_boss = row.assignee_id == user.id or (
            row.assignee_id is None and row.role in user.roles and in_team(user.team, row.role, team)) or supervises(
            user, team)
        if not holder_or_boss:
            raise PermissionDenied(f"only the holder of '{row.name}' or a supervisor of its team may reassign it")
        if not supervises(user, team):
            _check_stand_in(s, rt, row, user)
        target = s.scalar(select(User).where(User.username == to_username, User.active.is_(True)))
        if target is None:
            raise InvalidInput("no such user", {"to": f"no active user '{to_username}'"})
        if row.role not in target.role_codes:
            raise InvalidInput("wrong role", {"to": f"{to_username} does not have the role '{row.role}'"})
        if not in_team(target.team, row.role, team):
            raise InvalidInput("wrong team", {"to": f"{to_username} is not in the team '{team}'"})
        from .substitutes import stand_in

        substitute = stand_in(s.connection(), target.id, now)
        if substitute is not None:
            raise InvalidInput("away", {"to": f"{to_username} is away; {_name(s, substitute)} stands in for them"})
        _check_four_eyes(s, rt, row, _deployment_of(s, row.instance_id), target.id, target.username)
        previous = _name(s, row.assignee_id)
        row.assignee_id, row.claimed_at, row.on_behalf_of_id = target.id, now, None
        audit.record(s, now, "reassign", actor_id=user.id, actor=user.username, role=row.role,
                     instance_id=row.instance_id, task_id=row.id, spec_id=row.spec_id,
                     data={"from": previous, "to": target.username, "reason": reason.strip()})
        s.flush()
        from .notifications import on_reassigned

        on_reassigned(s, row, target.id, user.username, reason.strip(), now, business_tz=rt.business_tz)
        return get_task_in(s, task_id)


@dataclass(frozen=True)
class Completion:
    task_id: int
    instance_id: int
    instance_version: int
    instance_status: str
    new_task_ids: list[int]


def complete(rt: Runtime, task_id: int, user: UserView, data: dict[str, Any],
             expected_version: int | None = None, override_reason: str | None = None,
             batch: dict[str, Any] | None = None) -> Completion:
    """Complete a task. A race with a completion of *another* task of the same instance (parallel
    reviews) is retried; a race for the same task ends in ``Conflict`` for all but the winner.
    ``override_reason`` is an administrator's reason to act despite the four-eyes rule (audited).
    ``batch``: this completion is one of a batch approval (``services/batch.py``); recorded in its audit event."""
    for attempt in range(3):
        try:
            return _complete_once(rt, task_id, user, data, expected_version, override_reason, batch)
        except RaceLost:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _complete_once(rt: Runtime, task_id: int, user: UserView, data: dict[str, Any],
                   expected_version: int | None, override_reason: str | None,
                   batch: dict[str, Any] | None = None) -> Completion:
    now = rt.clock.now()
    workflow = None
    with rt.write() as s:
        # on PostgreSQL the instance row stays locked until commit, so actions on one contract queue up
        # instead of redoing the engine step; then one read: the task and its instance
        _lock_instance_of(rt, s, task_id)
        conn = s.connection()
        row = conn.execute(sql.TASK_AND_INSTANCE, {"task_id": task_id}).first()
        if row is None:
            raise NotFound(f"no task #{task_id}")
        _require_open(s, row)
        if override_reason is None:
            _check_may_act(s, rt, row, row.deployment_id, user, row.team, countersigned=False)
            overridden = None
        else:
            _check_may_act(s, rt, row, row.deployment_id, user, row.team, four_eyes=False)
            overridden = _check_override(s, rt, row, row.deployment_id, user, override_reason)
        from .countersign import refuse_completion  # 加签: no completion while opinions are pending

        refuse_completion(s, row, user)
        _check_version(row, row.version, expected_version)
        package = package_for(rt, row.deployment_id)
        try:
            cleaned = validate_submission(package.forms[row.form], data, package.validator(row.form))
        except FormInvalid as err:
            raise InvalidInput(f"the form '{row.name}' has errors", err.errors) from err
        from .attachments import check_references  # files named in the data were uploaded to this contract

        check_references(s, rt, package.forms[row.form], cleaned, row.instance_id, row.name, task_id=row.id)
        inst = LiveInstance.of_task_row(row)
        workflow = load_workflow(rt, inst, package, s)
        had_timers = has_timers(workflow)
        try:
            with using_clock(rt.clock):
                task, before = runner.run_user_task(workflow, row.task_uuid, cleaned)
                after = dict(task.data)
                records.check_completion(s, row.process_key, row.role, cleaned, after, user.id, row.name,
                                         on_behalf_of_id=row.on_behalf_of_id, instance_id=row.instance_id)
                stepped = runner.step(workflow, origin=task)
        except runner.NotReady:
            raise Conflict(f"'{row.name}' is not ready any more; reload the contract") from None
        except (SpiffWorkflowException, SandboxViolation) as err:
            raise ProcessError(describe_engine_error(err)) from err
        done = conn.execute(sql.COMPLETE_TASK, {"task_id": row.id, "now": now, "user_id": user.id})
        if done.rowcount != 1:
            raise Conflict(f"'{row.name}' was completed by someone else a moment ago")
        outcome = persist_step(rt, s, inst, package, workflow, stepped, now, had_timers, actor=user)
        if overridden is not None:
            audit.record(s, now, "four_eyes_override", actor_id=user.id, actor=user.username, role=row.role,
                         instance_id=inst.id, task_id=row.id, spec_id=row.spec_id,
                         data={"reason": override_reason.strip(), "conflict": overridden})
        recorded = {"form": cleaned, "changes": audit.changes(before, after)}
        if stepped.automated:  # what scripts and decision tables set next
            recorded["effects"] = stepped.automated
        if batch is not None:
            recorded["batch"] = batch
        audit.record(s, now, "complete", actor_id=user.id, actor=user.username, role=row.role,
                     instance_id=inst.id, task_id=row.id, spec_id=row.spec_id, data=recorded)
        for cancelled_id, spec_id in outcome.cancelled:
            audit.record(s, now, "cancel", instance_id=inst.id, task_id=cancelled_id, spec_id=spec_id)
        result = Completion(row.id, inst.id, outcome.version, outcome.status, outcome.new_task_ids)
    rt.keep_workflow(result.instance_id, result.instance_version, workflow)
    return result


def get_task_in(s: Session, task_id: int) -> TaskItem:
    row = s.connection().execute(ITEM_BY_ID, {"id": task_id}).first()
    return TaskItem(*row)


def open_tasks_of_instance(rt: Runtime, instance_id: int) -> list[TaskItem]:
    with rt.read() as s:
        rows = s.connection().execute(OPEN_ITEMS_OF_INSTANCE, {"instance_id": instance_id}).all()
    return [TaskItem(*r) for r in rows]

