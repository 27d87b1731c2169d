"""Customers and their owners (客户归属), the teams' assignment rules, ownership requests, and the early warning
(客户预警) computed from the business records.

The rules (DOMAIN, "Customer ownership"): a customer who already dealt with a rep stays with that rep (the rep of
the first quote owns a new customer, and another rep's quote is refused: ``records.py``); a new deal for an existing
customer goes to its owner (``owner_for_new_deal``, used by ``instances.start_instance``); a customer registered
before any deal gets its owner from the team's rule, the rep on duty or round robin over the team's reps; a rep who
wants someone else's customer asks the director through the ``ownership_dispute`` process, whose decision
``records.py`` applies. Every change of owner is an ``OwnershipChange`` row, and who owns what is visible to the
whole sales team. The figures of a customer (contracts, amounts owed, early-warning flags) are for its owner, the
supervisors and managers of its team, the director, compliance and administrators.

Early warning, all in SQL over the records: an installment of a signed contract due before today (business time
zone) and not paid in full; at least ``LVYUE_WARN_COMPLAINTS`` (2) complaints opened in the last 90 days; contracts
of the last 90 days worth less than half of those of the 90 days before, when there were any then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, or_, select, type_coerce
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import AssignmentRule, Complaint, Contract, Customer, Installment, Instance, OwnershipChange, User, UserRole
from models.records import MONEY

from .. import config
from ..runtime import Runtime
from . import audit
from .accounts import UserView
from .errors import InvalidInput, NotFound, PermissionDenied
from .paging import Page
from .records import OWED_STATUSES, name_key

VIEW_ROLES = frozenset({"sales_rep", "supervisor", "manager", "director", "compliance", "admin"})
REGISTER_ROLES = frozenset({"supervisor", "manager", "director"})
ALL_FIGURES_ROLES = frozenset({"director", "compliance", "admin"})
RULES = ("round_robin", "on_duty")
OPEN_STATUSES = ("drafted", "signed", "amending", "delivered")  # a contract not yet fulfilled or cancelled
WINDOW = timedelta(days=90)
ZERO = Decimal("0.00")
MAX_REASON = 2000
PROCESS = "ownership_dispute"


# --- what the pages show -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    """One early-warning flag: ``kind`` is overdue, complaints or falling; ``params`` the numbers behind it."""

    kind: str
    params: dict[str, Any]

    @property
    def reason(self) -> str:
        p = self.params
        if self.kind == "overdue":
            return (f"{_fmt(p['amount'])} overdue on {p['installments']} installment(s), the oldest due "
                    f"{p['since'].isoformat()}")
        if self.kind == "complaints":
            return f"{p['count']} complaints in the last {p['days']} days (warning from {p['threshold']})"
        return (f"orders of the last {p['days']} days {_fmt(p['recent'])} against {_fmt(p['earlier'])} in the "
                f"{p['days']} days before ({p['change_pct']}%)")


@dataclass(frozen=True)
class CustomerRow:
    id: int
    name: str
    owner_id: int | None
    owner_username: str | None
    owner_name: str | None
    team: str | None
    created_at: datetime
    figures: bool  # may the viewer see the numbers below (else they are None / empty)
    open_contracts: int | None = None
    outstanding: Decimal | None = None
    overdue: Decimal | None = None
    flags: list[Flag] = field(default_factory=list)


@dataclass(frozen=True)
class CustomerList:
    page: Page[CustomerRow]
    flagged_count: int  # flagged customers the viewer is responsible for (their own, their team's, all)


@dataclass(frozen=True)
class HistoryRow:
    at: datetime
    reason: str  # first_deal | round_robin | on_duty | dispute
    from_name: str | None
    to_name: str | None
    actor_name: str | None
    instance_key: str | None
    note: str | None


@dataclass(frozen=True)
class ContractLine:
    business_key: str
    contract_no: str
    status: str
    amount: Decimal
    paid: Decimal
    outstanding: Decimal | None  # owed once signed
    overdue: Decimal
    signed_on: date | None
    created_at: datetime


@dataclass(frozen=True)
class ComplaintLine:
    business_key: str
    contract_key: str | None
    severity: str | None
    status: str
    opened_at: datetime
    satisfaction: int | None


@dataclass(frozen=True)
class CustomerPage:
    customer: CustomerRow
    history: list[HistoryRow]
    contracts: Page[ContractLine] | None  # None: not the viewer's to see
    complaints: list[ComplaintLine] | None
    complaints_total: int
    running_dispute: str | None  # business key of the ownership request waiting for the director
    may_request: bool
    may_quote: bool  # a sales rep: a new deal goes to the customer's owner (the rep themselves, or the owner)


@dataclass(frozen=True)
class TeamRule:
    team: str
    rule: str
    explicit: bool  # False: no rule was set, round robin applies
    on_duty_username: str | None
    on_duty_name: str | None
    last_assigned_name: str | None
    reps: list[tuple[str, str]]  # username, display name of the team's active sales reps, in id order
    may_edit: bool


@dataclass(frozen=True)
class Registered:
    id: int
    name: str
    owner_username: str
    owner_name: str
    team: str
    reason: str  # the rule that chose the owner


# --- who may see what --------------------------------------------------------------------------------------


def _require_viewer(user: UserView) -> None:
    if not user.roles & VIEW_ROLES:
        raise PermissionDenied("the customers are for the sales team, compliance and administrators")


def _sees_figures(user: UserView, owner_id: int | None, team: str | None) -> bool:
    if user.roles & ALL_FIGURES_ROLES or owner_id == user.id:
        return True
    return bool(user.roles & {"supervisor", "manager"}) and (user.team is None or user.team == team)


def _figure_scope(user: UserView):
    """The SQL twin of ``_sees_figures``: None when the viewer sees every customer's figures."""
    if user.roles & ALL_FIGURES_ROLES:
        return None
    if user.roles & {"supervisor", "manager"}:
        return None if user.team is None else or_(Customer.team == user.team, Customer.owner_id == user.id)
    return Customer.owner_id == user.id


def _today(rt: Runtime) -> date:
    return rt.clock.now().astimezone(ZoneInfo(rt.business_tz)).date()


# --- early warning ------------------------------------------------------------------------------------------


def _money_sum(expr):
    return type_coerce(func.coalesce(func.sum(expr), 0), MONEY)


def _aggregates(now: datetime, today: date):
    """Per customer: contract figures, overdue installments and recent complaints (three grouped subqueries)."""
    recent, earlier = now - WINDOW, now - 2 * WINDOW
    counted = Contract.status != "cancelled"
    in_earlier = and_(counted, Contract.created_at >= earlier, Contract.created_at < recent)
    contracts = (select(Contract.customer_id.label("customer_id"),
                        func.sum(case((Contract.status.in_(OPEN_STATUSES), 1), else_=0)).label("open_contracts"),
                        _money_sum(case((Contract.status.in_(OWED_STATUSES), Contract.amount - Contract.paid),
                                        else_=0)).label("outstanding"),
                        _money_sum(case((and_(counted, Contract.created_at >= recent), Contract.amount),
                                        else_=0)).label("recent_amount"),
                        _money_sum(case((in_earlier, Contract.amount), else_=0)).label("earlier_amount"),
                        func.sum(case((in_earlier, 1), else_=0)).label("earlier_contracts"))
                 .where(Contract.customer_id.is_not(None)).group_by(Contract.customer_id).subquery("cs"))
    overdue = (select(Contract.customer_id.label("customer_id"), func.count().label("overdue_installments"),
                      _money_sum(Installment.amount - Installment.paid).label("overdue_amount"),
                      func.min(Installment.due_date).label("overdue_since"))
               .join(Contract, Contract.id == Installment.contract_id)
               .where(Installment.due_date < today, Installment.paid < Installment.amount,
                      Contract.status.in_(OWED_STATUSES), Contract.customer_id.is_not(None))
               .group_by(Contract.customer_id).subquery("od"))
    complaints = (select(Complaint.customer_id.label("customer_id"), func.count().label("complaints"))
                  .where(Complaint.opened_at >= recent, Complaint.customer_id.is_not(None))
                  .group_by(Complaint.customer_id).subquery("cp"))
    return contracts, overdue, complaints


def _rows_query(now: datetime, today: date, threshold: int):
    """Customers with their owner and figures, and the SQL condition 'flagged'."""
    cs, od, cp = _aggregates(now, today)
    query = (select(Customer.id, Customer.name, Customer.owner_id, Customer.team, Customer.created_at,
                    User.username.label("owner_username"), User.display_name.label("owner_name"),
                    func.coalesce(cs.c.open_contracts, 0).label("open_contracts"),
                    type_coerce(func.coalesce(cs.c.outstanding, 0), MONEY).label("outstanding"),
                    type_coerce(func.coalesce(cs.c.recent_amount, 0), MONEY).label("recent_amount"),
                    type_coerce(func.coalesce(cs.c.earlier_amount, 0), MONEY).label("earlier_amount"),
                    func.coalesce(cs.c.earlier_contracts, 0).label("earlier_contracts"),
                    func.coalesce(od.c.overdue_installments, 0).label("overdue_installments"),
                    type_coerce(func.coalesce(od.c.overdue_amount, 0), MONEY).label("overdue_amount"),
                    od.c.overdue_since, func.coalesce(cp.c.complaints, 0).label("complaints"))
             .outerjoin(User, User.id == Customer.owner_id)
             .outerjoin(cs, cs.c.customer_id == Customer.id)
             .outerjoin(od, od.c.customer_id == Customer.id)
             .outerjoin(cp, cp.c.customer_id == Customer.id))
    flagged = or_(func.coalesce(od.c.overdue_installments, 0) > 0,
                  func.coalesce(cp.c.complaints, 0) >= threshold,
                  and_(func.coalesce(cs.c.earlier_contracts, 0) > 0,
                       func.coalesce(cs.c.recent_amount, 0) * 2 < func.coalesce(cs.c.earlier_amount, 0)))
    return query, flagged


def _flags(r, threshold: int) -> list[Flag]:
    """The flags of one row of ``_rows_query``, by the same tests as its SQL condition."""
    flags = []
    if r.overdue_installments > 0:
        flags.append(Flag("overdue", {"installments": int(r.overdue_installments),
                                      "amount": _money(r.overdue_amount), "since": r.overdue_since}))
    if r.complaints >= threshold:
        flags.append(Flag("complaints", {"count": int(r.complaints), "threshold": threshold,
                                         "days": WINDOW.days}))
    recent, earlier = _money(r.recent_amount), _money(r.earlier_amount)
    if r.earlier_contracts > 0 and recent * 2 < earlier:
        change = int(((recent - earlier) * 100 / earlier).to_integral_value()) if earlier else 0
        flags.append(Flag("falling", {"recent": recent, "earlier": earlier, "change_pct": change,
                                      "days": WINDOW.days}))
    return flags


def _row(r, user: UserView, threshold: int) -> CustomerRow:
    if not _sees_figures(user, r.owner_id, r.team):
        return CustomerRow(r.id, r.name, r.owner_id, r.owner_username, r.owner_name, r.team, r.created_at, False)
    return CustomerRow(r.id, r.name, r.owner_id, r.owner_username, r.owner_name, r.team, r.created_at, True,
                       int(r.open_contracts), _money(r.outstanding), _money(r.overdue_amount), _flags(r, threshold))


def flags_of(rt: Runtime, customer_ids: list[int]) -> dict[int, list[Flag]]:
    """The early-warning flags of these customers (those without a flag are left out)."""
    if not customer_ids:
        return {}
    threshold = config.warn_complaints()
    query, _ = _rows_query(rt.clock.now(), _today(rt), threshold)
    with rt.read() as s:
        rows = s.execute(query.where(Customer.id.in_(list(customer_ids)))).all()
    return {r.id: flags for r in rows if (flags := _flags(r, threshold))}


# --- lists and pages ----------------------------------------------------------------------------------------


def list_customers(rt: Runtime, user: UserView, page: int = 1, per_page: int = 20, q: str | None = None,
                   mine: bool = False, flagged: bool = False) -> CustomerList:
    """Every customer with its owner (the whole sales team sees who owns what), searched by name; ``mine``: the
    viewer's own; ``flagged``: the flagged customers the viewer answers for (a rep their own, a supervisor or
    manager the team's, the director, compliance and administrators all). Figures only where the viewer may see
    them."""
    _require_viewer(user)
    threshold = config.warn_complaints()
    query, flagged_sql = _rows_query(rt.clock.now(), _today(rt), threshold)
    scope = _figure_scope(user)
    flagged_where = [flagged_sql] + ([scope] if scope is not None else [])
    where = []
    if q and q.strip():
        where.append(Customer.name_key.contains(name_key(q), autoescape=True))
    if mine:
        where.append(Customer.owner_id == user.id)
    if flagged:
        where += flagged_where
    page, per_page = max(1, page), min(max(1, per_page), 100)
    with rt.read() as s:
        total = s.scalar(select(func.count()).select_from(query.where(*where).subquery())) or 0
        flagged_count = s.scalar(select(func.count()).select_from(query.where(*flagged_where).subquery())) or 0
        rows = s.execute(query.where(*where).order_by(Customer.name_key, Customer.id)
                         .offset((page - 1) * per_page).limit(per_page)).all()
    return CustomerList(Page([_row(r, user, threshold) for r in rows], total, page, per_page), flagged_count)


def flagged_customers(rt: Runtime, user: UserView, page: int = 1, per_page: int = 20) -> CustomerList:
    return list_customers(rt, user, page=page, per_page=per_page, flagged=True)


def customer_page(rt: Runtime, user: UserView, customer_id: int, page: int = 1, per_page: int = 20) -> CustomerPage:
    """A customer: owner and figures, the whole ownership history, its contracts (paginated) and its latest
    complaints, and whether the viewer may ask for it."""
    _require_viewer(user)
    threshold = config.warn_complaints()
    today = _today(rt)
    query, _ = _rows_query(rt.clock.now(), today, threshold)
    with rt.read() as s:
        r = s.execute(query.where(Customer.id == customer_id)).first()
        if r is None:
            raise NotFound(f"no customer #{customer_id}")
        customer = _row(r, user, threshold)
        history = _history(s, customer_id)
        running = _running_dispute(s, r.name)
        contracts = complaints = None
        complaints_total = 0
        if customer.figures:
            contracts = _contracts(s, customer_id, today, page, per_page)
            complaints_total = s.scalar(select(func.count()).select_from(Complaint)
                                        .where(Complaint.customer_id == customer_id)) or 0
            complaints = [ComplaintLine(*c) for c in s.execute(
                select(Instance.business_key, Complaint.contract_key, Complaint.severity, Complaint.status,
                       Complaint.opened_at, Complaint.satisfaction)
                .join(Instance, Instance.id == Complaint.instance_id)
                .where(Complaint.customer_id == customer_id)
                .order_by(Complaint.opened_at.desc(), Complaint.id.desc()).limit(10))]
    is_rep = "sales_rep" in user.roles
    may_request = is_rep and customer.owner_id not in (None, user.id) and running is None
    return CustomerPage(customer, history, contracts, complaints, complaints_total, running, may_request, is_rep)


def _history(s: Session, customer_id: int) -> list[HistoryRow]:
    from_user, to_user, actor = User.__table__.alias("f"), User.__table__.alias("t"), User.__table__.alias("a")
    rows = s.execute(
        select(OwnershipChange.at, OwnershipChange.reason, from_user.c.display_name, to_user.c.display_name,
               actor.c.display_name, Instance.business_key, OwnershipChange.note)
        .outerjoin(from_user, from_user.c.id == OwnershipChange.from_owner_id)
        .outerjoin(to_user, to_user.c.id == OwnershipChange.to_owner_id)
        .outerjoin(actor, actor.c.id == OwnershipChange.actor_id)
        .outerjoin(Instance, Instance.id == OwnershipChange.instance_id)
        .where(OwnershipChange.customer_id == customer_id).order_by(OwnershipChange.id)).all()
    return [HistoryRow(*row) for row in rows]


def _contracts(s: Session, customer_id: int, today: date, page: int, per_page: int) -> Page[ContractLine]:
    overdue = (select(Installment.contract_id, _money_sum(Installment.amount - Installment.paid).label("overdue"))
               .where(Installment.due_date < today, Installment.paid < Installment.amount)
               .group_by(Installment.contract_id).subquery("od"))
    where = Contract.customer_id == customer_id
    total = s.scalar(select(func.count()).select_from(Contract).where(where)) or 0
    page, per_page = max(1, page), min(max(1, per_page), 100)
    rows = s.execute(select(Contract.business_key, Contract.contract_no, Contract.status, Contract.amount,
                            Contract.paid, Contract.signed_on, Contract.created_at, overdue.c.overdue)
                     .outerjoin(overdue, overdue.c.contract_id == Contract.id).where(where)
                     .order_by(Contract.created_at.desc(), Contract.id.desc())
                     .offset((page - 1) * per_page).limit(per_page)).all()
    lines = []
    for r in rows:
        owed = r.status in OWED_STATUSES
        lines.append(ContractLine(r.business_key, r.contract_no, r.status, r.amount, r.paid,
                                  r.amount - r.paid if owed else None, _money(r.overdue) if owed else ZERO,
                                  r.signed_on, r.created_at))
    return Page(lines, total, page, per_page)


def _running_dispute(s: Session, customer: str) -> str | None:
    return s.scalar(select(Instance.business_key).where(Instance.process_key == PROCESS, Instance.status != "completed",
                                                        Instance.customer_name == customer)
                    .order_by(Instance.id).limit(1))


# --- new customers and the teams' rules ---------------------------------------------------------------------


def _team_reps(s: Session, team: str) -> list:
    return s.execute(select(User.id, User.username, User.display_name)
                     .join(UserRole, UserRole.user_id == User.id)
                     .where(UserRole.role_code == "sales_rep", User.team == team, User.active.is_(True),
                            User.service_account.is_(False)).order_by(User.id)).all()


def _teams(s: Session) -> list[str]:
    """Teams that have active sales reps or a rule."""
    with_reps = select(User.team).join(UserRole, UserRole.user_id == User.id).where(
        UserRole.role_code == "sales_rep", User.team.is_not(None), User.active.is_(True),
        User.service_account.is_(False))
    return sorted(set(s.scalars(with_reps)) | set(s.scalars(select(AssignmentRule.team))))


def _clean_name(name: Any) -> tuple[str | None, str | None]:
    if not isinstance(name, str) or not name.strip():
        return None, "enter the customer's name"
    name = " ".join(name.split())
    if len(name) > 200:
        return None, "must have at most 200 characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return None, "must not contain control characters"
    return name, None


def register_customer(rt: Runtime, user: UserView, name: str, team: str | None = None) -> Registered:
    """A customer before any deal, for a supervisor, manager or the director: its owner is chosen by the team's
    rule (the rep on duty, or round robin over the team's active reps in id order; round robin when the team has
    set no rule). A supervisor or manager registers for their own team; the director (or anyone without a team)
    names the team. A name that is taken is refused with its owner's name; a customer already known but without an
    owner (say from a complaint) gets one by the rule."""
    if not user.roles & REGISTER_ROLES:
        raise PermissionDenied("only supervisors, managers and the director register customers")
    cleaned, problem = _clean_name(name)
    if problem:
        raise InvalidInput("the new customer has errors", {"name": problem})
    team = (team or "").strip() or None
    if user.team is not None and team not in (None, user.team):
        raise PermissionDenied(f"{user.username} registers customers for the team '{user.team}' only")
    team = team or user.team
    if team is None:
        raise InvalidInput("the new customer has errors", {"team": "choose the team the customer goes to"})
    for attempt in range(3):
        try:
            return _register_once(rt, user, cleaned, team)
        except IntegrityError:  # a simultaneous registration of the same name or the team's first rule: again
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _register_once(rt: Runtime, user: UserView, name: str, team: str) -> Registered:
    now = rt.clock.now()
    with rt.write() as s:
        existing = s.execute(select(Customer, User.display_name).outerjoin(User, User.id == Customer.owner_id)
                             .where(Customer.name_key == name_key(name)).with_for_update(of=Customer)).first()
        if existing is not None and existing[0].owner_id is not None:
            message = f"the customer '{existing[0].name}' already exists and belongs to {existing[1]}"
            raise InvalidInput(message, {"name": message})
        owner, reason = _assign(s, team, user, now)
        if existing is None:
            customer = Customer(name=name, name_key=name_key(name), owner_id=owner.id, team=team, created_at=now)
            s.add(customer)
        else:
            customer = existing[0]
            customer.owner_id, customer.team = owner.id, team
        s.flush()
        s.add(OwnershipChange(customer_id=customer.id, from_owner_id=None, to_owner_id=owner.id, reason=reason,
                              instance_id=None, actor_id=user.id, at=now))
        audit.record(s, now, "customer_registered", actor_id=user.id, actor=user.username,
                     data={"customer_id": customer.id, "customer": customer.name, "team": team,
                           "owner": owner.username, "rule": reason})
        return Registered(customer.id, customer.name, owner.username, owner.display_name, team, reason)


def _assign(s: Session, team: str, user: UserView, now: datetime):
    """The owner of a new customer of ``team`` by its rule, and the rule's name; round robin moves on."""
    reps = _team_reps(s, team)
    if not reps:
        raise InvalidInput(f"the team '{team}' has no active sales rep to own a new customer",
                           {"team": f"the team '{team}' has no active sales rep"})
    rule = s.scalar(select(AssignmentRule).where(AssignmentRule.team == team).with_for_update())
    if rule is not None and rule.rule == "on_duty":
        chosen = next((r for r in reps if r.id == rule.on_duty_id), None)
        if chosen is None:
            raise InvalidInput(f"nobody on duty for the team '{team}' is an active sales rep of it; its manager "
                               "names the rep on duty")
        return chosen, "on_duty"
    last = rule.last_assigned_id if rule is not None else None
    chosen = next((r for r in reps if last is not None and r.id > last), reps[0])
    if rule is None:
        s.add(AssignmentRule(team=team, rule="round_robin", on_duty_id=None, last_assigned_id=chosen.id,
                             updated_by_id=None, updated_at=now))
    else:
        rule.last_assigned_id = chosen.id
    return chosen, "round_robin"


def _may_set_rule(user: UserView, team: str) -> bool:
    return "director" in user.roles or ("manager" in user.roles and user.team in (None, team))


def set_rule(rt: Runtime, user: UserView, team: str, rule: str, on_duty_username: str | None = None) -> TeamRule:
    """How the team's new customers get their owner; for a manager of the team and the director."""
    team = (team or "").strip()
    if not _may_set_rule(user, team):
        raise PermissionDenied(f"only a manager of the team '{team}' or the director sets its assignment rule")
    if rule not in RULES:
        raise InvalidInput("the assignment rule has errors", {"rule": "must be one of: " + ", ".join(RULES)})
    now = rt.clock.now()
    with rt.write() as s:
        if team not in _teams(s):
            raise NotFound(f"no team '{team}' with sales reps")
        on_duty = None
        if rule == "on_duty":
            on_duty = next((r for r in _team_reps(s, team) if r.username == (on_duty_username or "").strip()), None)
            if on_duty is None:
                problem = ("choose the rep on duty" if not (on_duty_username or "").strip() else
                           f"{on_duty_username.strip()} is not an active sales rep of the team '{team}'")
                raise InvalidInput("the assignment rule has errors", {"on_duty": problem})
        row = s.scalar(select(AssignmentRule).where(AssignmentRule.team == team).with_for_update())
        if row is None:
            row = AssignmentRule(team=team, last_assigned_id=None)
            s.add(row)
        row.rule, row.on_duty_id = rule, on_duty.id if on_duty is not None else None
        row.updated_by_id, row.updated_at = user.id, now
        audit.record(s, now, "assignment_rule", actor_id=user.id, actor=user.username,
                     data={"team": team, "rule": rule, "on_duty": on_duty.username if on_duty is not None else None})
    return next(r for r in team_rules(rt, user) if r.team == team)  # whoever may set a team's rule sees it


def _sees_team(user: UserView, team: str) -> bool:
    return bool(user.roles & ALL_FIGURES_ROLES) or user.team is None or user.team == team


def team_rules(rt: Runtime, user: UserView) -> list[TeamRule]:
    """The assignment rule of every team the viewer works in (all teams for the director, compliance,
    administrators and those without a team): the rule is transparent to the team it applies to."""
    _require_viewer(user)
    out = []
    with rt.read() as s:
        users = dict((r.id, (r.username, r.display_name)) for r in s.execute(
            select(User.id, User.username, User.display_name).where(
                User.id.in_(select(AssignmentRule.on_duty_id).union(select(AssignmentRule.last_assigned_id))))))
        rules = {r.team: r for r in s.scalars(select(AssignmentRule))}
        for team in _teams(s):
            if not _sees_team(user, team):
                continue
            row = rules.get(team)
            reps = [(r.username, r.display_name) for r in _team_reps(s, team)]
            on_duty = users.get(row.on_duty_id) if row is not None and row.on_duty_id else None
            last = users.get(row.last_assigned_id) if row is not None and row.last_assigned_id else None
            rule = row.rule if row is not None else "round_robin"
            explicit = row is not None and row.updated_by_id is not None
            out.append(TeamRule(team, rule, explicit, on_duty[0] if on_duty else None, on_duty[1] if on_duty else None,
                                last[1] if last else None, reps, _may_set_rule(user, team)))
    return out


# --- deals and disputes -------------------------------------------------------------------------------------


def owner_for_new_deal(s: Session, customer_name: str, user: UserView) -> UserView | None:
    """The owner a new deal with this customer goes to, when that is an active sales rep other than ``user``."""
    if not customer_name.strip():
        return None
    owner = s.scalar(select(User).join(Customer, Customer.owner_id == User.id)
                     .where(Customer.name_key == name_key(customer_name)))
    if owner is None or owner.id == user.id or not owner.active or owner.service_account \
            or "sales_rep" not in owner.role_codes:
        return None
    return UserView(owner.id, owner.username, owner.display_name, frozenset(owner.role_codes), owner.team,
                    owner.language)


def _dispute_problem(s: Session, user: UserView, customer: Customer) -> str | None:
    if customer.owner_id is None:
        return f"the customer '{customer.name}' has no owner yet; quote it and it becomes yours"
    if customer.owner_id == user.id:
        return f"the customer '{customer.name}' is already yours"
    running = _running_dispute(s, customer.name)
    if running is not None:
        return (f"a request for the customer '{customer.name}' is already waiting for the director's decision "
                f"({running})")
    return None


def dispute_start_data(s: Session, user: UserView, data: dict[str, Any]) -> dict[str, Any]:
    """Inside the start of an ``ownership_dispute`` (however it is started): the customer's row locked, the
    request checked, and the data the director reads added: the customer's registered name, its current owner and
    who asks (never taken from the form)."""
    name = data.get("customer_name")
    customer = s.scalar(select(Customer).where(Customer.name_key == name_key(name)).with_for_update()) \
        if isinstance(name, str) else None
    if customer is None:
        raise InvalidInput("the start form has errors", {"customer_name": f"no customer named '{name}'"})
    problem = _dispute_problem(s, user, customer)
    if problem:
        raise InvalidInput(problem, {"customer_name": problem})
    owner = s.get(User, customer.owner_id)
    return {**data, "customer_name": customer.name, "current_owner": owner.display_name,
            "requested_by": user.display_name}


def request_ownership(rt: Runtime, user: UserView, customer_id: int, reason: str):
    """A sales rep asks for another rep's customer: starts the ``ownership_dispute`` process, which the director
    decides. Refused for one's own or an unowned customer (quote it instead) and while a request for the customer
    is waiting. Returns the start result (``business_key`` of the request)."""
    from .instances import start_instance

    if "sales_rep" not in user.roles:
        raise PermissionDenied("only sales reps ask for a customer")
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("the ownership request has errors", {"reason": "give a reason for the request"})
    if len(reason) > MAX_REASON:
        raise InvalidInput("the ownership request has errors", {"reason": f"must have at most {MAX_REASON} characters"})
    with rt.read() as s:
        customer = s.get(Customer, customer_id)
        if customer is None:
            raise NotFound(f"no customer #{customer_id}")
        problem = _dispute_problem(s, user, customer)
        name = customer.name
    if problem:
        raise InvalidInput(problem)
    return start_instance(rt, PROCESS, user, {"customer_name": name, "claim_reason": reason})


# --- small helpers ------------------------------------------------------------------------------------------


def _money(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))


def _fmt(value: Decimal) -> str:
    return f"{value:,.2f}"
