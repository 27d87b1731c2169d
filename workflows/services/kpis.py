"""The numbers a sales organisation is run by, answered in SQL from the records and task rows (never from
stored workflows): 回款率, overdue amounts by age and the overdue contracts, the pipeline by stage, approval
turnaround, cycle time per stage, SLA breaches, complaints and satisfaction; for a period, per rep and team.

Definitions (the dashboard shows them too):
- **回款率 (collection rate)** of a period = what has been collected of the installments that fell due in the
  period (up to today), divided by their amount. Payments are applied to the oldest open installment first.
- **Overdue** = the unpaid part of an installment whose due date has passed; its age counts from the due date.
- **Approval turnaround** = from a review task's opening to its completion, for reviews completed in the period.
- **Cycle time of a stage** = per contract, from the first task of the stage opening to the last one of the
  stage completing; contracts whose stage ended in the period.
- **SLA breach** = a task completed after its due time in the period, or open now and past its due time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session, aliased

from models import Complaint, Contract, Customer, Installment, Instance, TaskRow, User

from ..runtime import Runtime
from .accounts import UserView
from .errors import InvalidInput, PermissionDenied
from .paging import Page
from .records import OWED_STATUSES, STILL_OWED_STATUSES

ZERO = Decimal("0.00")
AGE_BUCKETS = ((1, 30), (31, 60), (61, 90), (91, None))
STAGES = ("quote", "approval", "contract", "delivery", "collection", "after_sales")
ALL_VIEW_ROLES = frozenset({"director", "finance", "compliance", "admin"})
TEAM_VIEW_ROLES = frozenset({"supervisor", "manager"})
DASHBOARD_ROLES = ALL_VIEW_ROLES | TEAM_VIEW_ROLES | {"sales_rep"}
OVERDUE_PER_PAGE = 20


@dataclass(frozen=True)
class Period:
    kind: str  # month | quarter | year | custom
    start: date  # first day
    end: date  # last day (inclusive)

    @property
    def label(self) -> str:
        if self.kind == "quarter":
            return f"{self.start.year} Q{(self.start.month - 1) // 3 + 1}"
        if self.kind == "month":
            return f"{self.start:%Y-%m}"
        if self.kind == "year":
            return str(self.start.year)
        return f"{self.start} – {self.end}"


def period_of(kind: str | None, today: date, start: str | None = None, end: str | None = None,
              offset: int = 0) -> Period:
    """This month/quarter/year (``offset`` -1 is the one before), or ``start``..``end`` for a custom range."""
    kind = kind or "quarter"
    if kind == "custom":
        try:
            first, last = date.fromisoformat(start or ""), date.fromisoformat(end or "")
        except ValueError:
            raise InvalidInput("invalid period", {"period": "give a start and an end date (YYYY-MM-DD)"}) from None
        if first.year < 1970 or last.year > 2999:
            raise InvalidInput("invalid period", {"period": "dates from 1970 to 2999"})
        if last < first or (last - first).days > 3660:
            raise InvalidInput("invalid period", {"period": "the end must be after the start, at most ten years"})
        return Period("custom", first, last)
    months = {"month": 1, "quarter": 3, "year": 12}.get(kind)
    if months is None:
        raise InvalidInput("invalid period", {"period": "month, quarter, year or custom"})
    index = (today.year * 12 + today.month - 1) // months * months + offset * months
    first = date(index // 12, index % 12 + 1, 1)
    after = (index + months)
    last = date(after // 12, after % 12 + 1, 1) - timedelta(days=1)
    return Period(kind, first, last)


@dataclass(frozen=True)
class Scope:
    """Whose numbers: a team (``None`` = all teams) and/or one rep."""

    team: str | None
    rep_id: int | None
    fixed: bool  # the viewer may not widen it (a rep sees their own numbers)
    team_fixed: bool = False  # a supervisor or manager sees their own team


def scope_for(user: UserView, team: str | None = None, rep_id: int | None = None) -> Scope:
    if not user.roles & DASHBOARD_ROLES:
        raise PermissionDenied("the dashboard is for sales, finance and compliance roles")
    if user.roles & ALL_VIEW_ROLES:
        return Scope(team or None, rep_id, False)
    if user.roles & TEAM_VIEW_ROLES:
        return Scope(user.team, rep_id, False, team_fixed=True)
    return Scope(user.team, user.id, True, team_fixed=True)


@dataclass
class Rate:
    key: str  # rep display name or team
    due: Decimal = ZERO
    collected: Decimal = ZERO

    @property
    def rate(self) -> float | None:
        return float(self.collected / self.due) if self.due else None


@dataclass
class OverdueRow:
    business_key: str
    contract_no: str
    customer: str | None
    rep: str | None
    team: str | None
    overdue: Decimal
    oldest_due: date
    days: int


@dataclass
class Dashboard:
    period: Period
    today: date
    scope: Scope
    collection_total: Rate
    collection_by_rep: list[Rate]
    collection_by_team: list[Rate]
    overdue_by_age: list[tuple[str, Decimal, int]]  # bucket label, amount, installments
    overdue_total: Decimal
    pipeline: list[tuple[str, int, Decimal]]  # stage, contracts, amount
    turnaround: list[tuple[str, int, float]]  # review task (its bilingual name), reviews, mean hours
    cycle_time: list[tuple[str, int, float]]  # stage, contracts, mean days
    sla: list[tuple[str, int, int, int]]  # stage, tasks with a due time, late completions, open overdue
    complaints: list[tuple[str, int]]  # severity, complaints opened in the period
    satisfaction: tuple[int, float | None]  # surveys in the period, mean score
    complaints_by_rep: list[tuple[str, int]]
    reps: list[tuple[int, str]] = field(default_factory=list)  # the filter's choices
    teams: list[str] = field(default_factory=list)


def _bounds(rt: Runtime, period: Period) -> tuple[datetime, datetime]:
    tz = ZoneInfo(rt.business_tz)
    return (datetime.combine(period.start, time(), tz), datetime.combine(period.end + timedelta(days=1), time(), tz))


def business_today(rt: Runtime) -> date:
    return rt.clock.now().astimezone(ZoneInfo(rt.business_tz)).date()


def _scoped(q, scope: Scope, team_col, rep_col):
    if scope.team is not None:
        q = q.where(team_col == scope.team)
    if scope.rep_id is not None:
        q = q.where(rep_col == scope.rep_id)
    return q


def _seconds(s: Session, start, end):
    """``end - start`` in seconds, in SQL, on either backend."""
    if s.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def collection(s: Session, scope: Scope, period: Period, today: date) -> tuple[Rate, list[Rate], list[Rate]]:
    last = min(period.end, today)
    q = select(Contract.rep_id, User.display_name, Contract.team, func.sum(Installment.amount),
               func.sum(Installment.paid)).join(Contract, Contract.id == Installment.contract_id) \
        .outerjoin(User, User.id == Contract.rep_id) \
        .where(Installment.due_date >= period.start, Installment.due_date <= last, Contract.status.in_(OWED_STATUSES)) \
        .group_by(Contract.rep_id, User.display_name, Contract.team)
    rows = s.execute(_scoped(q, scope, Contract.team, Contract.rep_id)).all()
    total, reps, teams = Rate("total"), {}, {}
    for _rep_id, name, team, due, paid in rows:
        due, paid = Decimal(due or 0), Decimal(paid or 0)
        for bucket, key in ((reps, name or "—"), (teams, team or "—")):
            rate = bucket.setdefault(key, Rate(key))
            rate.due += due
            rate.collected += paid
        total.due += due
        total.collected += paid
    order = lambda r: (-(r.rate if r.rate is not None else -1), r.key)  # noqa: E731
    return total, sorted(reps.values(), key=order), sorted(teams.values(), key=order)


def _overdue_filter(today: date):
    return and_(Installment.due_date < today, Installment.paid < Installment.amount,
                Contract.status.in_(STILL_OWED_STATUSES))


def overdue_by_age(s: Session, scope: Scope, today: date) -> tuple[list[tuple[str, Decimal, int]], Decimal]:
    buckets = []
    for low, high in AGE_BUCKETS:
        newest = today - timedelta(days=low)
        cond = [Installment.due_date <= newest]
        if high is not None:
            cond.append(Installment.due_date >= today - timedelta(days=high))
        buckets.append(and_(*cond))
    label = case(*[(cond, i) for i, cond in enumerate(buckets)], else_=len(buckets) - 1)
    q = select(label, func.sum(Installment.amount - Installment.paid), func.count()) \
        .join(Contract, Contract.id == Installment.contract_id).where(_overdue_filter(today)).group_by(label)
    found = {int(i): (Decimal(amount or 0), n) for i, amount, n in s.execute(_scoped(q, scope, Contract.team,
                                                                                        Contract.rep_id))}
    out = []
    for i, (low, high) in enumerate(AGE_BUCKETS):
        amount, n = found.get(i, (ZERO, 0))
        out.append((f"{low}–{high}" if high else f">{low - 1}", amount, n))
    return out, sum((a for _, a, _ in out), ZERO)


def overdue_contracts(rt: Runtime, user: UserView, page: int = 1, team: str | None = None,
                      rep_id: int | None = None) -> Page[OverdueRow]:
    """Which contracts are overdue and whose: most overdue amount first."""
    scope = scope_for(user, team, rep_id)
    today = business_today(rt)
    with rt.read() as s:
        base = _scoped(select(Contract.id).join(Installment, Installment.contract_id == Contract.id)
                       .where(_overdue_filter(today)), scope, Contract.team, Contract.rep_id)
        total = s.scalar(select(func.count(func.distinct(base.subquery().c.id))))
        overdue = func.sum(Installment.amount - Installment.paid)
        q = select(Contract.business_key, Contract.contract_no, Customer.name, User.display_name, Contract.team,
                   overdue, func.min(Installment.due_date)) \
            .join(Installment, Installment.contract_id == Contract.id) \
            .outerjoin(Customer, Customer.id == Contract.customer_id).outerjoin(User, User.id == Contract.rep_id) \
            .where(_overdue_filter(today)) \
            .group_by(Contract.id, Contract.business_key, Contract.contract_no, Customer.name, User.display_name,
                      Contract.team) \
            .order_by(overdue.desc(), Contract.id).offset((page - 1) * OVERDUE_PER_PAGE).limit(OVERDUE_PER_PAGE)
        rows = s.execute(_scoped(q, scope, Contract.team, Contract.rep_id)).all()
    items = [OverdueRow(key, no, customer, rep, team_, Decimal(amount), oldest, (today - oldest).days)
             for key, no, customer, rep, team_, amount, oldest in rows]
    return Page(items, total or 0, page, OVERDUE_PER_PAGE)


def _instance_rep():
    return func.coalesce(Contract.rep_id, Instance.started_by_id)


def pipeline(s: Session, scope: Scope) -> list[tuple[str, int, Decimal]]:
    q = select(Instance.stage, func.count(), func.sum(Instance.amount)) \
        .outerjoin(Contract, Contract.instance_id == Instance.id) \
        .where(Instance.process_key == "quote_to_cash", Instance.status == "running").group_by(Instance.stage)
    found = {stage: (n, Decimal(amount or 0)) for stage, n, amount in
             s.execute(_scoped(q, scope, Instance.team, _instance_rep()))}
    ordered = [st for st in STAGES if st in found] + sorted(st for st in found if st not in STAGES and st)
    return [(st, *found[st]) for st in ordered] + ([("—", *found[None])] if None in found else [])


LIFECYCLE_PROCESSES = ("quote_to_cash", "complaint")  # the stages of a contract, after-sales included


def _task_scope(q, scope: Scope, contract_steps: bool = True):
    """``contract_steps``: only steps of a contract's lifecycle (cycle time, turnaround), not ownership
    requests, whose director decision is tagged with the quote stage; their deadlines still count as SLAs."""
    if contract_steps:
        q = q.where(TaskRow.process_key.in_(LIFECYCLE_PROCESSES))
    if scope.team is not None:
        q = q.where(TaskRow.team == scope.team)
    if scope.rep_id is not None:
        q = q.join(Instance, Instance.id == TaskRow.instance_id) \
            .outerjoin(Contract, Contract.instance_id == TaskRow.instance_id).where(_instance_rep() == scope.rep_id)
    return q


def turnaround(s: Session, scope: Scope, start: datetime, end: datetime) -> list[tuple[str, int, float]]:
    secs = _seconds(s, TaskRow.created_at, TaskRow.completed_at)
    q = select(func.min(TaskRow.name), func.count(), func.avg(secs)).where(
        TaskRow.stage == "approval", TaskRow.status == "completed", TaskRow.completed_at >= start,
        TaskRow.completed_at < end).group_by(TaskRow.spec_id).order_by(TaskRow.spec_id)
    return [(spec, n, float(avg or 0) / 3600) for spec, n, avg in s.execute(_task_scope(q, scope))]


def cycle_time(s: Session, scope: Scope, start: datetime, end: datetime) -> list[tuple[str, int, float]]:
    done = aliased(TaskRow)
    per = _task_scope(select(TaskRow.instance_id, TaskRow.stage, func.min(TaskRow.created_at).label("opened"),
                             func.max(TaskRow.completed_at).label("closed"),
                             func.sum(case((TaskRow.status == "open", 1), else_=0)).label("still_open"))
                      .where(TaskRow.stage.isnot(None), TaskRow.status != "cancelled",
                             TaskRow.instance_id.in_(select(done.instance_id).where(  # contracts active in the period
                                 done.completed_at >= start, done.completed_at < end))), scope) \
        .group_by(TaskRow.instance_id, TaskRow.stage).subquery()
    q = select(per.c.stage, func.count(), func.avg(_seconds(s, per.c.opened, per.c.closed))) \
        .where(per.c.still_open == 0, per.c.closed >= start, per.c.closed < end).group_by(per.c.stage)
    found = {stage: (n, float(avg or 0) / 86400) for stage, n, avg in s.execute(q)}
    return [(st, *found[st]) for st in STAGES if st in found]


def sla(s: Session, scope: Scope, start: datetime, end: datetime, now: datetime) -> list[tuple[str, int, int, int]]:
    done_in = and_(TaskRow.status == "completed", TaskRow.completed_at >= start, TaskRow.completed_at < end)
    late = and_(done_in, TaskRow.completed_at > TaskRow.due_at)
    open_late = and_(TaskRow.status == "open", TaskRow.due_at < now)
    q = select(TaskRow.stage, func.sum(case((done_in, 1), else_=0)), func.sum(case((late, 1), else_=0)),
               func.sum(case((open_late, 1), else_=0))) \
        .where(TaskRow.due_at.isnot(None), or_(done_in, TaskRow.status == "open")).group_by(TaskRow.stage)
    found = {stage: (int(a or 0), int(b or 0), int(c or 0))
             for stage, a, b, c in s.execute(_task_scope(q, scope, contract_steps=False))}
    return [(st, *found[st]) for st in STAGES if st in found]


def complaints(s: Session, scope: Scope, start: datetime, end: datetime):
    def scoped(q, *joins):
        q = q.select_from(Complaint).outerjoin(Contract, Contract.business_key == Complaint.contract_key)
        for target, on in joins:
            q = q.join(target, on)
        return _scoped(q, scope, Contract.team, Contract.rep_id)

    by_severity = dict(s.execute(scoped(select(Complaint.severity, func.count()).where(
        Complaint.opened_at >= start, Complaint.opened_at < end).group_by(Complaint.severity))).all())
    severities = [(sev, by_severity.get(sev, 0)) for sev in ("low", "medium", "high")]
    n, mean = s.execute(scoped(select(func.count(Complaint.satisfaction), func.avg(Complaint.satisfaction)).where(
        Complaint.closed_at >= start, Complaint.closed_at < end, Complaint.satisfaction.isnot(None)))).one()
    by_rep = s.execute(scoped(select(User.display_name, func.count())
                              .where(Complaint.opened_at >= start, Complaint.opened_at < end)
                              .group_by(User.display_name).order_by(func.count().desc(), User.display_name)
                              .limit(10), (User, User.id == Contract.rep_id))).all()
    return severities, (int(n or 0), float(mean) if mean is not None else None), [(a, b) for a, b in by_rep]


def dashboard(rt: Runtime, user: UserView, period: Period, team: str | None = None,
              rep_id: int | None = None) -> Dashboard:
    scope = scope_for(user, team, rep_id)
    today = business_today(rt)
    start, end = _bounds(rt, period)
    with rt.read() as s:
        total, by_rep, by_team = collection(s, scope, period, today)
        ages, overdue_total = overdue_by_age(s, scope, today)
        severities, satisfaction, by_rep_complaints = complaints(s, scope, start, end)
        reps_q = select(User.id, User.display_name).join(Contract, Contract.rep_id == User.id).distinct()
        if scope.team is not None:
            reps_q = reps_q.where(Contract.team == scope.team)
        teams = sorted(t for t in s.scalars(select(Contract.team).distinct()) if t)
        board = Dashboard(
            period=period, today=today, scope=scope, collection_total=total, collection_by_rep=by_rep,
            collection_by_team=by_team, overdue_by_age=ages, overdue_total=overdue_total,
            pipeline=pipeline(s, scope), turnaround=turnaround(s, scope, start, end),
            cycle_time=cycle_time(s, scope, start, end), sla=sla(s, scope, start, end, rt.clock.now()),
            complaints=severities, satisfaction=satisfaction, complaints_by_rep=by_rep_complaints,
            reps=sorted(s.execute(reps_q).all(), key=lambda r: r[1]), teams=teams)
    return board

