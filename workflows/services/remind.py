"""Reminders (催办): the starter of a contract, or a supervisor of its team, nudges whoever must act on a
stuck task — its holder, or, while nobody has claimed it, every active person of its role (in the
contract's team where the role is team-scoped).

A reminder is an in-app notification plus an e-mail through the outbox for those with an address, and an
audit event ``remind`` on the contract's chain. The audit events are also the reminder log: the last
``remind`` event of a task decides when the next one is allowed (one interval per task,
``config.remind_interval``). It is read after the contract's instance row and the task row are locked (the
order every task action follows, see ``tasks.LOCK_INSTANCE_OF_TASK``), so of two reminders at once the
second waits and then sees the first (SQLite writes are serialized by ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session

from models import AuditEvent, Instance, TaskRow, User, UserRole

from .. import config
from ..runtime import Runtime
from . import audit
from .accounts import TEAM_SCOPED_ROLES, UserView, in_team, supervises
from .errors import Conflict, InvalidInput, PermissionDenied
from .notifications import _Batch
from .tasks import _load_row, _require_open

MAX_MESSAGE = 200

# the last reminder of a task: a range of ix_audit_instance (one contract's events), newest first
_LAST_REMIND = (select(AuditEvent.at).where(AuditEvent.instance_id == bindparam("instance_id"),
                                            AuditEvent.task_id == bindparam("task_id"),
                                            AuditEvent.action == "remind")
                .order_by(AuditEvent.id.desc()).limit(1))
_LAST_REMINDS = (select(AuditEvent.task_id, func.max(AuditEvent.at))
                 .where(AuditEvent.instance_id == bindparam("instance_id"), AuditEvent.action == "remind")
                 .group_by(AuditEvent.task_id))
_PEOPLE = (select(User.id, User.username, User.display_name, User.email, User.language)
           .where(User.active.is_(True), User.service_account.is_(False)))


@dataclass(frozen=True)
class Reminder:
    task_id: int
    instance_id: int
    business_key: str
    recipients: list[str]  # usernames
    at: datetime
    next_at: datetime


@dataclass(frozen=True)
class RemindState:
    """What the contract page shows of one open task: may this user remind now, and when was it last."""
    allowed: bool  # this user may remind about the task at all
    last_at: datetime | None
    next_at: datetime | None  # set while the interval since the last reminder runs

    @property
    def possible(self) -> bool:
        return self.allowed and self.next_at is None


def may_remind(user: UserView, started_by_id: int | None, contract_team: str | None, role: str, held: bool,
               held_by_me: bool) -> str | None:
    """Why ``user`` may not remind about a task (None: they may). The starter and the supervisors of the
    contract's team (its manager, the director) may; nobody reminds about work that is their own to do."""
    if started_by_id != user.id and not supervises(user, contract_team):
        return "starter"
    if held_by_me or (not held and role in user.roles and in_team(user.team, role, contract_team)):
        return "own"
    return None


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _local(at: datetime, tz: str) -> str:
    return _utc(at).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def _recipients(s: Session, row: TaskRow, team: str | None, actor_id: int) -> list:
    """The holder of the task, or while unclaimed the people of its role (in the team where it is scoped)."""
    if row.assignee_id is not None:
        query = _PEOPLE.where(User.id == row.assignee_id)
    else:
        query = _PEOPLE.join(UserRole, UserRole.user_id == User.id).where(UserRole.role_code == row.role)
        if row.role in TEAM_SCOPED_ROLES and team is not None:
            query = query.where(or_(User.team.is_(None), User.team == team))
    return [p for p in s.execute(query.order_by(User.id)) if p.id != actor_id]


def remind(rt: Runtime, task_id: int, user: UserView, message: str = "") -> Reminder:
    """Send a reminder about the open task ``task_id``. Raises NotFound, PermissionDenied (not the starter
    nor a supervisor of the team; one's own task), Conflict (not open; too soon; nobody to remind) and
    InvalidInput (message too long)."""
    message = " ".join((message or "").split())
    if len(message) > MAX_MESSAGE:
        raise InvalidInput("the message is too long",
                           {"message": f"at most {MAX_MESSAGE} characters"})
    now = rt.clock.now()
    interval = config.remind_interval()
    with rt.write() as s:
        row = _load_row(rt, s, task_id)  # instance row, then task row; the audit head comes last
        inst = s.execute(select(Instance.started_by_id, Instance.team, Instance.business_key, Instance.customer_name)
                         .where(Instance.id == row.instance_id)).one()
        refused = may_remind(user, inst.started_by_id, row.team, row.role, row.assignee_id is not None,
                             row.assignee_id == user.id)
        if refused == "starter":
            raise PermissionDenied(f"only the starter of {inst.business_key} or a supervisor of its team may "
                                   f"send a reminder about '{row.name}'")
        _require_open(s, row)
        if refused == "own":
            raise PermissionDenied(f"'{row.name}' is yours to do; there is nobody to remind")
        last = s.scalar(_LAST_REMIND, {"instance_id": row.instance_id, "task_id": row.id})
        if last is not None and now < _utc(last) + interval:
            raise Conflict(f"a reminder about '{row.name}' was sent at {_local(last, rt.business_tz)}; "
                           f"the next one is possible from {_local(_utc(last) + interval, rt.business_tz)}")
        people = _recipients(s, row, row.team, user.id)
        if not people:
            raise Conflict(f"nobody can be reminded about '{row.name}'")
        audit.record(s, now, "remind", actor_id=user.id, actor=user.username, instance_id=row.instance_id,
                     task_id=row.id, spec_id=row.spec_id,
                     data={"to": [p.username for p in people], "message": message})
        batch = _Batch(now, rt.business_tz)
        for person in people:
            batch.add(person, "remind", task_id=row.id, name=row.name, role=row.role, due_at=row.due_at,
                      instance_id=row.instance_id, business_key=inst.business_key, customer=inst.customer_name,
                      by=user.username, reason=message)
        batch.write(s.connection())
        return Reminder(row.id, row.instance_id, inst.business_key, [p.username for p in people], now, now + interval)


def states(s: Session, rt: Runtime, user: UserView, instance_id: int, started_by_id: int | None,
           team: str | None, open_tasks: list) -> dict[int, RemindState]:
    """For the contract page: per open task (``TaskItem``s), may ``user`` remind and when. One query."""
    if not open_tasks:
        return {}
    last = {task_id: _utc(at) for task_id, at in s.execute(_LAST_REMINDS, {"instance_id": instance_id})}
    now, interval = rt.clock.now(), config.remind_interval()
    out = {}
    for t in open_tasks:
        allowed = may_remind(user, started_by_id, team, t.role, t.assignee is not None,
                             t.assignee == user.username) is None
        at = last.get(t.id)
        next_at = at + interval if at is not None and now < at + interval else None
        out[t.id] = RemindState(allowed, at, next_at)
    return out

