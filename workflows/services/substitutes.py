"""Substitutes (委托/代理): a user who will be away names a colleague to hold their tasks meanwhile.

While a range is open, the tasks the user holds are the substitute's, marked "on behalf of" the user
(``tasks.on_behalf_of_id``), and so is a task a send-back would hand to the user (``stand_in``, called by
``progress``). Unclaimed tasks of the user's roles stay in the role queue: they are nobody's yet. The
substitute gets no role: they act on a held task as its holder, under the same checks as anyone (four eyes
counts what they did themselves). When the range ends or is cancelled, what the substitute still holds on the
user's behalf goes back to the user; a task the substitute handed on (reassigned, released) stays where it is
and loses the mark.

Each move is one transaction in the order every task action follows: the contract's instance row, the task
row, then the audit chain head (``tasks._load_row``, ``audit.record``), and it checks again under those locks
that it is still due, so two workers, or a worker and a click, never move a task twice. ``apply_due`` is the
worker's step (``lvyue worker``, every pass): it reads the ranges not yet closed that have started and the open
tasks held on someone's behalf, both small index ranges, and mends whatever is not as the ranges say.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, exists, func, select, update
from sqlalchemy.orm import Session, aliased

from models import Instance, Substitution, TaskRow, User

from ..runtime import Runtime
from . import audit
from .accounts import SUPERVISORY_ROLES, UserView
from .errors import Conflict, InvalidInput, NotFound, PermissionDenied
from .notifications import _Batch
from .paging import Page
from .tasks import _load_row

MAX_REASON = 200
MAX_DAYS = 366

# the range of this user open at :now, if any (ix_substitutions_user); ranges of one user never overlap
_ACTIVE = (select(Substitution.id, Substitution.substitute_id, Substitution.ends_at, Substitution.reason)
           .where(Substitution.user_id == bindparam("user_id"), Substitution.ends_at > bindparam("now"),
                  Substitution.starts_at <= bindparam("now"), Substitution.cancelled_at.is_(None))
           .limit(1))
# the ranges the sweep looks at: started and not yet closed (ix_substitutions_live)
_LIVE = (select(Substitution.id, Substitution.user_id, Substitution.substitute_id, Substitution.ends_at,
                Substitution.cancelled_at, Substitution.opened_at)
         .where(Substitution.closed_at.is_(None), Substitution.starts_at <= bindparam("now"))
         .order_by(Substitution.id))
# open tasks held for somebody (ix_tasks_on_behalf)
_HELD_ON_BEHALF = (select(TaskRow.id, TaskRow.on_behalf_of_id, TaskRow.assignee_id)
                   .where(TaskRow.status == "open", TaskRow.on_behalf_of_id.is_not(None)).order_by(TaskRow.id))
_PERSON = select(User.id, User.username, User.display_name, User.email, User.language, User.active)


@dataclass(frozen=True)
class AwayRange:
    id: int
    user: str
    user_name: str
    substitute: str
    substitute_name: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_at: datetime
    cancelled_at: datetime | None
    opened_at: datetime | None
    closed_at: datetime | None
    held: int = 0  # open tasks the substitute holds on the user's behalf now

    def state(self, now: datetime) -> str:
        """cancelled | ended | active | upcoming"""
        if self.cancelled_at is not None:
            return "cancelled"
        if self.ends_at <= now:
            return "ended"
        return "active" if self.starts_at <= now else "upcoming"


@dataclass
class SweepReport:
    opened: int = 0  # ranges whose tasks were handed over
    closed: int = 0
    handed_over: int = 0  # tasks
    handed_back: int = 0
    unmarked: int = 0  # tasks the substitute passed on: no longer held on anyone's behalf

    @property
    def changed(self) -> bool:
        return bool(self.opened or self.closed or self.handed_over or self.handed_back or self.unmarked)


@dataclass(frozen=True)
class Person:
    username: str
    display_name: str
    team: str | None


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def day_start(day: date, tz: str) -> datetime:
    """Midnight starting ``day`` in the business time zone, in UTC."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def last_day(ends_at: datetime, tz: str) -> str:
    """The last day away (ISO date, business time zone) of a range ending at ``ends_at``, a midnight there."""
    return (_utc(ends_at).astimezone(ZoneInfo(tz)) - timedelta(seconds=1)).date().isoformat()


def stand_in(conn, user_id: int, now: datetime) -> int | None:
    """The substitute holding ``user_id``'s tasks at ``now``, if that user is away (for new tasks)."""
    found = conn.execute(_ACTIVE, {"user_id": user_id, "now": now}).first()
    return found.substitute_id if found is not None else None


# --- setting and cancelling a range ----------------------------------------------------------------------


def candidates(rt: Runtime, user: UserView) -> list[Person]:
    """Whom ``user`` may name: every active person (not a service account) but themselves."""
    with rt.read() as s:
        rows = s.execute(select(User.username, User.display_name, User.team)
                         .where(User.active.is_(True), User.service_account.is_(False), User.id != user.id)
                         .order_by(User.username)).all()
    return [Person(*r) for r in rows]


def _overlapping(column, user_id: int, starts_at: datetime, ends_at: datetime):
    return exists().where(column == user_id, Substitution.cancelled_at.is_(None),
                          Substitution.starts_at < ends_at, Substitution.ends_at > starts_at)


def create(rt: Runtime, user: UserView, substitute: str, first_day: date | None, last_day: date | None,
           reason: str = "") -> AwayRange:
    """``user`` is away from ``first_day`` to ``last_day`` (whole days in the business time zone, the last one
    included; a range that starts today starts now) and ``substitute`` holds their tasks meanwhile. Raises
    InvalidInput with per-field errors: no such active person, oneself, overlapping one's own range, the
    substitute away at the same time, or ``user`` standing in for someone else then (no chains)."""
    now = rt.clock.now()
    reason = " ".join((reason or "").split())
    substitute = (substitute or "").strip()
    errors: dict[str, str] = {}
    if not substitute:
        errors["substitute"] = "choose a substitute"
    if first_day is None:
        errors["first_day"] = "give the first day"
    if last_day is None:
        errors["last_day"] = "give the last day"
    if len(reason) > MAX_REASON:
        errors["reason"] = f"at most {MAX_REASON} characters"
    for field_name, day in (("first_day", first_day), ("last_day", last_day)):
        if day is not None and not 1900 <= day.year <= 2999:
            errors[field_name] = "give a date between 1900 and 2999"
    starts_at = ends_at = now
    if first_day is not None and last_day is not None and not errors.keys() & {"first_day", "last_day"}:
        starts_at = max(now, day_start(first_day, rt.business_tz))
        ends_at = day_start(last_day + timedelta(days=1), rt.business_tz)
        if last_day < first_day:
            errors["last_day"] = "must not be before the first day"
        elif ends_at <= now:
            errors["last_day"] = "this day is over"
        elif (last_day - first_day).days >= MAX_DAYS:
            errors["last_day"] = f"at most {MAX_DAYS} days"
    if errors:
        raise InvalidInput("the away range was not saved", errors)
    with rt.write() as s:
        target = s.execute(select(User.id, User.username).where(
            User.username == substitute, User.active.is_(True), User.service_account.is_(False))).first()
        if target is None:
            raise InvalidInput("the away range was not saved", {"substitute": "no such active person"})
        if target.id == user.id:
            raise InvalidInput("the away range was not saved", {"substitute": "you cannot stand in for yourself"})
        if rt.postgres:  # two ranges saved at once for these people wait for each other (SQLite: BEGIN IMMEDIATE)
            s.execute(select(User.id).where(User.id.in_(sorted({user.id, target.id}))).order_by(User.id)
                      .with_for_update(key_share=True)).all()
        if s.scalar(select(_overlapping(Substitution.user_id, user.id, starts_at, ends_at))):
            errors["first_day"] = "you are already away on some of these days"
        elif s.scalar(select(_overlapping(Substitution.substitute_id, user.id, starts_at, ends_at))):
            errors["first_day"] = "you stand in for someone else on some of these days"
        if s.scalar(select(_overlapping(Substitution.user_id, target.id, starts_at, ends_at))):
            errors["substitute"] = "is away on some of these days too"
        if errors:
            raise InvalidInput("the away range was not saved", errors)
        row = Substitution(user_id=user.id, substitute_id=target.id, starts_at=starts_at, ends_at=ends_at,
                           created_at=now, created_by_id=user.id, reason=reason)
        s.add(row)
        s.flush()
        range_id = row.id
        audit.record(s, now, "away_set", actor_id=user.id, actor=user.username,
                     data={"range": range_id, "substitute": target.username, "starts_at": starts_at,
                           "ends_at": ends_at, "reason": reason})
    if starts_at <= now:
        _open(rt, range_id, now, user)
    return get_range(rt, range_id)


def cancel(rt: Runtime, user: UserView, range_id: int) -> AwayRange:
    """``user`` ends their own range now (back early, or plans changed); what the substitute holds for them comes
    back at once. NotFound for a range of someone else (it does not say whose); Conflict when it is over."""
    now = rt.clock.now()
    with rt.write() as s:
        row = s.get(Substitution, range_id, with_for_update=rt.postgres or None)
        if row is None or row.user_id != user.id:
            raise NotFound(f"no away range #{range_id} of yours")
        if row.cancelled_at is not None or row.closed_at is not None or _utc(row.ends_at) <= now:
            raise Conflict("this away range is already over")
        row.cancelled_at = now
        audit.record(s, now, "away_cancel", actor_id=user.id, actor=user.username, data={"range": range_id})
    # what is held for the user comes back now (also a send-back given to the substitute before the sweep opened
    # the range), not at the worker's next pass
    with rt.read() as s:
        held = list(s.scalars(select(TaskRow.id).where(TaskRow.status == "open", TaskRow.on_behalf_of_id == user.id)
                              .order_by(TaskRow.id)))
    for task_id in held:
        _mend(rt, task_id, now, user)
    _close(rt, range_id, now)
    return get_range(rt, range_id)


# --- reading ---------------------------------------------------------------------------------------------


def _range_query():
    away, sub = aliased(User), aliased(User)
    held = (select(func.count()).select_from(TaskRow)
            .where(TaskRow.status == "open", TaskRow.on_behalf_of_id == Substitution.user_id,
                   TaskRow.assignee_id == Substitution.substitute_id).scalar_subquery())
    return (select(Substitution.id, away.username, away.display_name, sub.username, sub.display_name,
                   Substitution.starts_at, Substitution.ends_at, Substitution.reason, Substitution.created_at,
                   Substitution.cancelled_at, Substitution.opened_at, Substitution.closed_at, held)
            .join(away, away.id == Substitution.user_id).join(sub, sub.id == Substitution.substitute_id)), away


def get_range(rt: Runtime, range_id: int) -> AwayRange:
    query, _ = _range_query()
    with rt.read() as s:
        row = s.execute(query.where(Substitution.id == range_id)).first()
    if row is None:
        raise NotFound(f"no away range #{range_id}")
    return AwayRange(*row)


def my_ranges(rt: Runtime, user: UserView, page: int = 1, per_page: int = 20) -> Page[AwayRange]:
    """The user's own ranges, the latest first."""
    query, _ = _range_query()
    where = Substitution.user_id == user.id
    return _page(rt, query.where(where).order_by(Substitution.starts_at.desc(), Substitution.id.desc()),
                 select(func.count()).select_from(Substitution).where(where), page, per_page)


def standing_in_for(rt: Runtime, user: UserView) -> list[AwayRange]:
    """The current and coming ranges in which ``user`` is the substitute (at most 50, the soonest first)."""
    query, _ = _range_query()
    with rt.read() as s:
        rows = s.execute(query.where(Substitution.substitute_id == user.id, Substitution.cancelled_at.is_(None),
                                     Substitution.ends_at > rt.clock.now())
                         .order_by(Substitution.starts_at, Substitution.id).limit(50)).all()
    return [AwayRange(*r) for r in rows]


@dataclass(frozen=True)
class AwayPage:
    """What the "Away / substitute" page shows its user."""
    ranges: Page[AwayRange]  # their own
    covering: list[AwayRange]  # whom they stand in for, now or soon
    people: list[Person]  # whom they may name
    today: date  # in the business time zone
    now: datetime
    may_see_team: bool


def away_page(rt: Runtime, user: UserView, page: int = 1, per_page: int = 20) -> AwayPage:
    now = rt.clock.now()
    return AwayPage(my_ranges(rt, user, page, per_page), standing_in_for(rt, user), candidates(rt, user),
                    now.astimezone(ZoneInfo(rt.business_tz)).date(), now, may_see_who_is_away(user))


def may_see_who_is_away(user: UserView) -> bool:
    return bool(user.roles & SUPERVISORY_ROLES)


def who_is_away(rt: Runtime, user: UserView, page: int = 1, per_page: int = 20) -> Page[AwayRange]:
    """Current and coming absences for supervisors, managers and the director: of their own team's people
    (the director, and those of no team, see everybody's), the soonest first."""
    if not may_see_who_is_away(user):
        raise PermissionDenied("who is away is shown to supervisors, managers and the director")
    query, away = _range_query()
    where = [Substitution.cancelled_at.is_(None), Substitution.ends_at > rt.clock.now()]
    if "director" not in user.roles and user.team is not None:
        where.append(away.team == user.team)
    count = (select(func.count()).select_from(Substitution).join(away, away.id == Substitution.user_id)
             .where(*where))
    return _page(rt, query.where(*where).order_by(Substitution.starts_at, Substitution.id), count, page, per_page)


def _page(rt: Runtime, query, count, page: int, per_page: int) -> Page[AwayRange]:
    page, per_page = max(1, page), min(max(1, per_page), 200)
    with rt.read() as s:
        total = s.scalar(count) or 0
        rows = s.execute(query.offset((page - 1) * per_page).limit(per_page)).all()
    return Page([AwayRange(*r) for r in rows], total, page, per_page)


# --- moving tasks ----------------------------------------------------------------------------------------


def apply_due(rt: Runtime) -> SweepReport:
    """The worker's step: hand over the tasks of ranges that have started, hand back what is held for users
    whose range ended or was cancelled, unmark what a substitute passed on, and close the finished ranges.
    Safe to run at any time and from several workers at once; doing it twice changes nothing more."""
    now = rt.clock.now()
    report = SweepReport()
    with rt.read() as s:
        live = s.execute(_LIVE, {"now": now}).all()
        held = s.execute(_HELD_ON_BEHALF).all()
    active = {r.user_id: r for r in live if r.cancelled_at is None and _utc(r.ends_at) > now}
    for task in held:  # held for a user whose range is not open, or by someone who is not its substitute
        current = active.get(task.on_behalf_of_id)
        if current is None or current.substitute_id != task.assignee_id:
            outcome = _mend(rt, task.id, now, None)
            report.handed_back += outcome == "back"
            report.unmarked += outcome == "unmarked"
    for r in live:
        if active.get(r.user_id) is r:
            if r.opened_at is None:
                report.handed_over += _open(rt, r.id, now, None)
                report.opened += 1
        else:
            report.closed += _close(rt, r.id, now)
    return report


def _open(rt: Runtime, range_id: int, now: datetime, actor: UserView | None) -> int:
    """Hand every open task the away user holds to the substitute, then mark the range opened."""
    with rt.read() as s:
        sub = s.get(Substitution, range_id)
        task_ids = list(s.scalars(select(TaskRow.id).where(TaskRow.assignee_id == sub.user_id,
                                                           TaskRow.status == "open").order_by(TaskRow.id)))
    moved = sum(_hand_over(rt, task_id, range_id, now, actor) for task_id in task_ids)
    with rt.write() as s:
        s.execute(update(Substitution).where(Substitution.id == range_id, Substitution.opened_at.is_(None))
                  .values(opened_at=now))
    return moved


def _close(rt: Runtime, range_id: int, now: datetime) -> int:
    with rt.write() as s:
        done = s.execute(update(Substitution).where(Substitution.id == range_id, Substitution.closed_at.is_(None))
                         .values(closed_at=now))
        return done.rowcount


def _hand_over(rt: Runtime, task_id: int, range_id: int, now: datetime, actor: UserView | None) -> bool:
    with rt.write() as s:
        try:
            row = _load_row(rt, s, task_id)  # instance row, then task row; the audit head comes last
        except NotFound:
            return False
        sub = s.get(Substitution, range_id)
        still = (sub.cancelled_at is None and _utc(sub.starts_at) <= now < _utc(sub.ends_at))
        if row.status != "open" or row.assignee_id != sub.user_id or not still:
            return False
        row.assignee_id, row.on_behalf_of_id, row.claimed_at = sub.substitute_id, sub.user_id, now
        people = _people(s, sub.user_id, sub.substitute_id)
        away, holder = people[sub.user_id], people[sub.substitute_id]
        _record(s, now, "substitute", row, actor, {"from": away.username, "to": holder.username,
                                                   "on_behalf_of": away.username, "until": _utc(sub.ends_at),
                                                   "last_day": last_day(sub.ends_at, rt.business_tz),
                                                   "reason": sub.reason})
        _notify(s, rt, now, row, holder, "substitute", by=away.username, reason=sub.reason)
        return True


def _mend(rt: Runtime, task_id: int, now: datetime, actor: UserView | None) -> str | None:
    """A task held on someone's behalf whose range is not (or no longer) the one it was handed over in: back to
    that user ("back", or on to their current substitute) if a substitute of theirs still holds it, else just
    unmarked ("unmarked": the substitute passed it on). Checked again under the task's locks."""
    with rt.write() as s:
        try:
            row = _load_row(rt, s, task_id)
        except NotFound:
            return None
        user_id = row.on_behalf_of_id
        if row.status != "open" or user_id is None:
            return None
        current = s.execute(_ACTIVE, {"user_id": user_id, "now": now}).first()
        if current is not None and current.substitute_id == row.assignee_id:
            return None
        held_by_a_substitute = row.assignee_id is not None and s.scalar(select(exists().where(
            Substitution.user_id == user_id, Substitution.substitute_id == row.assignee_id)))
        if not held_by_a_substitute:
            row.on_behalf_of_id = None
            return "unmarked"
        people = _people(s, user_id, row.assignee_id, current.substitute_id if current is not None else None)
        away, previous = people[user_id], people[row.assignee_id]
        back_to = away.id if away.active else None  # an account closed meanwhile: to the role's queue
        row.assignee_id, row.on_behalf_of_id = back_to, None
        row.claimed_at = now if back_to is not None else None
        _record(s, now, "substitute_end", row, actor, {"from": previous.username,
                                                       "to": away.username if back_to is not None else None,
                                                       "on_behalf_of": away.username})
        if current is not None:  # away again, with another substitute
            holder = people[current.substitute_id]
            row.assignee_id, row.on_behalf_of_id = holder.id, user_id
            _record(s, now, "substitute", row, actor, {"from": away.username, "to": holder.username,
                                                       "on_behalf_of": away.username, "until": _utc(current.ends_at),
                                                       "last_day": last_day(current.ends_at, rt.business_tz),
                                                       "reason": current.reason})
            _notify(s, rt, now, row, holder, "substitute", by=away.username, reason=current.reason)
        elif back_to is not None and (actor is None or actor.id != back_to):
            _notify(s, rt, now, row, away, "substitute_end", by=previous.username, reason="")
        return "back"


def _people(s: Session, *ids: int | None) -> dict:
    wanted = sorted({i for i in ids if i is not None})
    return {p.id: p for p in s.execute(_PERSON.where(User.id.in_(wanted)))}


def _record(s: Session, now: datetime, action: str, row: TaskRow, actor: UserView | None, data: dict) -> None:
    audit.record(s, now, action, actor_id=actor.id if actor else None, actor=actor.username if actor else "system",
                 role=row.role, instance_id=row.instance_id, task_id=row.id, spec_id=row.spec_id, data=data)


def _notify(s: Session, rt: Runtime, now: datetime, row: TaskRow, person, kind: str, by: str, reason: str) -> None:
    if not person.active:
        return
    inst = s.execute(select(Instance.business_key, Instance.customer_name)
                     .where(Instance.id == row.instance_id)).one()
    batch = _Batch(now, rt.business_tz)
    batch.add(person, kind, task_id=row.id, name=row.name, role=row.role, due_at=row.due_at,
              instance_id=row.instance_id, business_key=inst.business_key, customer=inst.customer_name,
              by=by, reason=reason)
    batch.write(s.connection())


def record_stand_ins(s: Session, rt: Runtime, now: datetime, instance_id: int, made: list[tuple[int, dict]]) -> None:
    """For ``progress``: new tasks a send-back gave to the substitute of their away author (rows with
    ``on_behalf_of_id``): the event that says so, and the substitute's notification."""
    inst = s.execute(select(Instance.business_key, Instance.customer_name).where(Instance.id == instance_id)).one()
    batch = _Batch(now, rt.business_tz)
    for task_id, row in made:
        people = _people(s, row["on_behalf_of_id"], row["assignee_id"])
        away, holder = people[row["on_behalf_of_id"]], people[row["assignee_id"]]
        current = s.execute(_ACTIVE, {"user_id": away.id, "now": now}).first()
        until = _utc(current.ends_at) if current is not None else None
        reason = current.reason if current is not None else ""
        audit.record(s, now, "substitute", role=row["role"], instance_id=instance_id, task_id=task_id,
                     spec_id=row["spec_id"], data={
                         "from": away.username, "to": holder.username, "on_behalf_of": away.username, "until": until,
                         "last_day": last_day(until, rt.business_tz) if until else None, "reason": reason})
        if holder.active:
            batch.add(holder, "substitute", task_id=task_id, name=row["name"], role=row["role"],
                      due_at=row["due_at"], instance_id=instance_id, business_key=inst.business_key,
                      customer=inst.customer_name, by=away.username, reason=reason)
    batch.write(s.connection())
