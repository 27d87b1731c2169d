"""What compliance (合规审计) reads: the instance explorer, one instance's dossier and event log, the
four-eyes report, the heatmap of where contracts wait, and the log of who looked at what.

Every function here is read-only on the business tables and records the reader's access in the ``access``
audit chain, in the same transaction as the read.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import aliased

from models import AuditEvent, Deployment, Instance, Step, TaskRow, User

from ..runtime import Runtime
from . import audit, instances
from .accounts import UserView
from .deployments import package_for
from .dossier import ChainCheck, Decision, Dossier, DossierEvent
from .errors import InvalidInput, NotFound, PermissionDenied
from .integrity import VerifyReport, verify_all, verify_chain_in, verify_instance
from .paging import Page

COMPLIANCE_ROLES = frozenset({"compliance"})
EVENTS_PER_PAGE = 50
STATUSES = ("running", "completed", "error")


def require_compliance(user: UserView) -> None:
    if not user.roles & COMPLIANCE_ROLES:
        raise PermissionDenied(f"{user.username} is not in the compliance role")


def _log(rt: Runtime, user: UserView, what: str, **details: Any) -> None:
    """Record a read in a short write transaction of its own, so that the reads themselves hold no write lock."""
    with rt.write() as s:
        _access(s, rt, user, what, **details)


def _access(s, rt: Runtime, user: UserView, what: str, **details: Any) -> None:
    clean = {k: v for k, v in details.items() if v not in (None, "", [], {})}
    audit.record(s, rt.clock.now(), "viewed", actor_id=user.id, actor=user.username, role="compliance",
                 chain=audit.ACCESS_CHAIN, data={"view": what, **clean})


# --- explorer ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExplorerFilter:
    key: str | None = None
    customer: str | None = None
    status: str | None = None
    stage: str | None = None
    started_from: date | None = None
    started_to: date | None = None
    actor: str | None = None
    role: str | None = None
    process_key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in self.__dict__.items() if v}


@dataclass(frozen=True)
class ExplorerRow:
    business_key: str
    process_key: str
    deployment_version: int
    status: str
    stage: str | None
    customer_name: str | None
    amount: Any
    team: str | None
    started_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ExplorerResult:
    page: Page[ExplorerRow]
    by_status: dict[str, int]


def day_start(day: date, tz: str) -> datetime:
    return datetime.combine(day, time.min, ZoneInfo(tz))


def _check_dates(**days: date | None) -> None:
    for name, day in days.items():
        if day is not None and not 1900 <= day.year <= 2999:
            raise InvalidInput(f"{day.isoformat()} is out of range", {name: "give a date between 1900 and 2999"})


def _explorer_where(rt: Runtime, f: ExplorerFilter) -> list:
    where = []
    if f.key:
        where.append(Instance.business_key.contains(f.key, autoescape=True))
    if f.customer:
        where.append(Instance.customer_name.contains(f.customer, autoescape=True))
    if f.stage:
        where.append(Instance.stage == f.stage)
    if f.process_key:
        where.append(Instance.process_key == f.process_key)
    if f.started_from:
        where.append(Instance.started_at >= day_start(f.started_from, rt.business_tz))
    if f.started_to:
        where.append(Instance.started_at < day_start(f.started_to + timedelta(days=1), rt.business_tz))
    if f.actor or f.role:
        acted = [AuditEvent.instance_id.is_not(None)]
        if f.actor:  # by id: the (actor_id, at) index answers it
            acted.append(AuditEvent.actor_id == select(User.id).where(User.username == f.actor).scalar_subquery())
        if f.role:
            acted.append(AuditEvent.role == f.role)
        where.append(Instance.id.in_(select(AuditEvent.instance_id).where(*acted)))
    return where


def explore(rt: Runtime, user: UserView, f: ExplorerFilter, page: int = 1, per_page: int = 20) -> ExplorerResult:
    require_compliance(user)
    _check_dates(started_from=f.started_from, started_to=f.started_to)
    if f.started_from and f.started_to and f.started_from > f.started_to:
        raise InvalidInput("the date range is reversed", {"started_to": "must not be before the start date"})
    where = _explorer_where(rt, f)
    page, per_page = max(1, page), min(max(1, per_page), 100)
    with rt.read() as s:
        by_status = dict(s.execute(select(Instance.status, func.count()).where(*where).group_by(Instance.status)).all())
        status_where = [*where, Instance.status == f.status] if f.status else where
        total = by_status.get(f.status, 0) if f.status else sum(by_status.values())
        rows = s.execute(select(Instance.business_key, Instance.process_key, Deployment.version, Instance.status,
                                Instance.stage, Instance.customer_name, Instance.amount, Instance.team,
                                Instance.started_at, Instance.updated_at)
                         .join(Deployment, Deployment.id == Instance.deployment_id).where(*status_where)
                         .order_by(Instance.started_at.desc(), Instance.id.desc())
                         .offset((page - 1) * per_page).limit(per_page)).all()
        _log(rt, user, "explorer", filter=f.as_dict(), page=page)
    return ExplorerResult(Page([ExplorerRow(*r) for r in rows], total, page, per_page), by_status)


# --- one instance ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PathInfo:
    done: set[str]
    current: set[str]
    flows: set[str]
    durations: dict[str, timedelta]
    passes: dict[str, int]


def _instance(s, key: str) -> Instance:
    inst = s.scalar(select(Instance).where(Instance.business_key == key))
    if inst is None:
        raise NotFound(f"no contract '{key}'")
    return inst


def _path(s, rt: Runtime, inst: Instance, flows: dict[str, tuple[str, str]]) -> PathInfo:
    done = set(s.scalars(select(Step.spec_id).where(Step.instance_id == inst.id, Step.state == "COMPLETED")))
    now = rt.clock.now()
    durations: dict[str, timedelta] = {}
    passes: dict[str, int] = {}
    current: set[str] = set()
    for spec_id, status, created, completed in s.execute(
            select(TaskRow.spec_id, TaskRow.status, TaskRow.created_at, TaskRow.completed_at)
            .where(TaskRow.instance_id == inst.id)):
        durations[spec_id] = durations.get(spec_id, timedelta()) + ((completed or now) - created)
        passes[spec_id] = passes.get(spec_id, 0) + 1
        if status == "open":
            current.add(spec_id)
        elif status == "completed":
            done.add(spec_id)
    reached = done | current
    taken = {fid for fid, (src, tgt) in flows.items() if src in done and tgt in reached}
    return PathInfo(done - current, current, taken, durations, passes)


def _chain_check(rt: Runtime, inst: Instance) -> ChainCheck:
    with rt.snapshot() as snap:  # its own consistent view: the page's transaction reads heads and events apart
        report = verify_chain_in(snap, audit.chain_of(inst.id))
    message = "intact" if report.ok else "; ".join(b.message for b in report.breaks[:3])
    return ChainCheck(report.ok, report.events, message)


@dataclass(frozen=True)
class InstancePage:
    dossier: Dossier
    events: Page[DossierEvent]
    snapshots: dict[int, dict[str, Any]]  # seq of a start/complete event -> the entered data after it
    passes: dict[str, int]
    deployment_files: list[str]
    focus: list[str]  # where to look first on a diagram too wide to read whole: open tasks, else the end


def _events_query(instance_id: int):
    return (select(AuditEvent.seq, AuditEvent.at, AuditEvent.actor, AuditEvent.role, AuditEvent.action,
                   AuditEvent.spec_id, AuditEvent.data, AuditEvent.hash)
            .where(AuditEvent.chain == audit.chain_of(instance_id)))


def _event(row, names: dict[str, str]) -> DossierEvent:
    seq, at, actor, role, action, spec_id, data, h = row
    return DossierEvent(seq, at, actor, role, action, spec_id, names.get(spec_id) if spec_id else None, data or {}, h)


def _snapshots(s, instance_id: int) -> dict[int, dict[str, Any]]:
    """The data after each start and completion, rebuilt from the recorded changes: what people entered and
    what scripts and decision tables set before the process waited again."""
    state: dict[str, Any] = {}
    out = {}
    for seq, action, data in s.execute(select(AuditEvent.seq, AuditEvent.action, AuditEvent.data)
                                       .where(AuditEvent.chain == audit.chain_of(instance_id),
                                              AuditEvent.action.in_(("start", "complete")))
                                       .order_by(AuditEvent.seq)):
        data = data or {}
        if action == "start":
            state.update(data.get("data") or {})
        for part in ("changes", "effects"):  # what the person entered, then what the process set after it
            for k, change in (data.get(part) or {}).items():
                state[k] = change.get("new") if isinstance(change, dict) else change
        out[seq] = dict(state)
    return out


def _dossier(s, rt: Runtime, user: UserView, inst: Instance, package, events: list[DossierEvent],
             language: str) -> tuple[Dossier, PathInfo]:
    path = _path(s, rt, inst, package.sequence_flows)
    version = s.scalar(select(Deployment.version).where(Deployment.id == inst.deployment_id))
    starter = s.scalar(select(User.username).where(User.id == inst.started_by_id)) if inst.started_by_id else None
    decisions = [Decision(e.at, e.actor, e.role, e.step_name or e.spec_id or "", e.spec_id or "",
                          e.data.get("form") or {}, e.data.get("changes") or {}, e.data.get("effects") or {})
                 for e in events if e.action in ("complete", "countersign")]  # 后加签: an approval too
    dossier = Dossier(inst.business_key, inst.process_key, package.main.name, inst.deployment_id, version or 0,
                      inst.status, inst.stage, inst.customer_name, inst.amount, inst.team, starter, inst.started_at,
                      inst.completed_at, package.main_bpmn[1], path.done, path.current, path.flows, path.durations,
                      events, decisions, instances.instance_data(rt, inst.id), _chain_check(rt, inst),
                      rt.clock.now(), user.username, language, package.node_names)
    return dossier, path


def instance_page(rt: Runtime, user: UserView, key: str, page: int = 1, language: str = "en") -> InstancePage:
    require_compliance(user)
    with rt.read() as s:
        inst = _instance(s, key)
        package = package_for(rt, inst.deployment_id)
        total = s.scalar(select(func.count()).select_from(AuditEvent)
                         .where(AuditEvent.chain == audit.chain_of(inst.id))) or 0
        pages = max(1, -(-total // EVENTS_PER_PAGE))
        page = min(max(1, page), pages)
        rows = s.execute(_events_query(inst.id).order_by(AuditEvent.seq)
                         .offset((page - 1) * EVENTS_PER_PAGE).limit(EVENTS_PER_PAGE)).all()
        events = [_event(r, package.node_names) for r in rows]
        dossier, path = _dossier(s, rt, user, inst, package, events, language)
        shown = {e.seq for e in events}
        snapshots = {k: v for k, v in _snapshots(s, inst.id).items() if k in shown}
        focus = sorted(path.current) or [x for x in (inst.end_event, "start_" + inst.process_key) if x]
    _log(rt, user, "instance", business_key=key, page=page)
    return InstancePage(dossier, Page(events, total, page, EVENTS_PER_PAGE), snapshots, path.passes,
                        sorted(package.files), focus)


def full_dossier(rt: Runtime, user: UserView, key: str, language: str = "en") -> Dossier:
    """Everything about one instance, every event included: for the PDF."""
    require_compliance(user)
    with rt.read() as s:
        inst = _instance(s, key)
        package = package_for(rt, inst.deployment_id)
        events = [_event(r, package.node_names) for r in s.execute(_events_query(inst.id).order_by(AuditEvent.seq))]
        dossier, _ = _dossier(s, rt, user, inst, package, events, language)
    _log(rt, user, "dossier_pdf", business_key=key)
    return dossier


def deployment_file(rt: Runtime, user: UserView, key: str, filename: str) -> tuple[str, bytes]:
    """A file of the process version an instance runs on (its definition, as deployed)."""
    require_compliance(user)
    with rt.write() as s:
        inst = _instance(s, key)
        package = package_for(rt, inst.deployment_id)
        if filename not in package.files:
            raise NotFound(f"no file '{filename}' in this process version")
        _access(s, rt, user, "definition", business_key=key, file=filename)
    return filename, package.files[filename]


def diagram_xml(rt: Runtime, user: UserView, key: str) -> bytes:
    require_compliance(user)
    with rt.write() as s:
        inst = _instance(s, key)
        _access(s, rt, user, "diagram", business_key=key)
        deployment_id = inst.deployment_id
    return package_for(rt, deployment_id).main_bpmn[1]


# --- CSV exports (streamed) -----------------------------------------------------------------------------

CSV_COLUMNS = ("chain", "seq", "at", "business_key", "actor", "role", "action", "step", "data", "prev_hash", "hash")


def _csv_rows(rt: Runtime, where: list, order: list) -> Iterator[tuple]:
    import json

    with rt.read() as s:
        stream = s.execute(select(AuditEvent.chain, AuditEvent.seq, AuditEvent.at, Instance.business_key,
                                  AuditEvent.actor, AuditEvent.role, AuditEvent.action, AuditEvent.spec_id,
                                  AuditEvent.data, AuditEvent.prev_hash, AuditEvent.hash)
                           .outerjoin(Instance, Instance.id == AuditEvent.instance_id).where(*where).order_by(*order)
                           .execution_options(yield_per=1000))
        for r in stream:
            yield (r.chain, r.seq, audit.utc_text(r.at), r.business_key or "", r.actor, r.role or "", r.action,
                   r.spec_id or "", json.dumps(r.data, ensure_ascii=False, sort_keys=True), r.prev_hash, r.hash)


def instance_events_csv(rt: Runtime, user: UserView, key: str) -> Iterator[tuple]:
    require_compliance(user)
    with rt.write() as s:
        inst = _instance(s, key)
        _access(s, rt, user, "events_csv", business_key=key)
        chain = audit.chain_of(inst.id)
    return _csv_rows(rt, [AuditEvent.chain == chain], [AuditEvent.seq])


def period_events_csv(rt: Runtime, user: UserView, start: date, end: date) -> Iterator[tuple]:
    """All events from ``start`` to ``end`` (business days, inclusive), in time order, streamed."""
    require_compliance(user)
    _check_dates(start=start, end=end)
    if start > end:
        raise InvalidInput("the date range is reversed", {"to": "must not be before the start date"})
    _log(rt, user, "period_csv", start=start.isoformat(), end=end.isoformat())
    lo, hi = day_start(start, rt.business_tz), day_start(end + timedelta(days=1), rt.business_tz)
    return _csv_rows(rt, [AuditEvent.at >= lo, AuditEvent.at < hi], [AuditEvent.at, AuditEvent.id])


# --- four eyes ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FourEyesCase:
    business_key: str
    customer_name: str | None
    actor: str
    task: str  # the task that should have had other eyes
    conflict: str  # the task the same person completed before
    at: datetime
    override_reason: str | None  # set when an administrator overrode the rule


def _rules(rt: Runtime, s) -> dict[str, set[tuple[str, str]]]:
    """Per process: (task, excluded task) pairs, the union over every deployed version, so that an old
    version is judged by today's stricter rule too."""
    rules: dict[str, set[tuple[str, str]]] = {}
    for deployment_id, process_key in s.execute(select(Deployment.id, Deployment.process_key)):
        for proc in package_for(rt, deployment_id).processes.values():
            for spec_id, info in proc.user_tasks.items():
                rules.setdefault(process_key, set()).update((spec_id, x) for x in info.four_eyes_exclude)
    return rules


def four_eyes_report(rt: Runtime, user: UserView, page: int = 1, per_page: int = 20) -> Page[FourEyesCase]:
    """Every completed task whose completer had also completed a task it excludes on the same instance
    (drafted and approved, or approved at two levels), overrides included and flagged."""
    require_compliance(user)
    page, per_page = max(1, page), min(max(1, per_page), 100)
    approved, earlier, task = aliased(TaskRow), aliased(TaskRow), aliased(TaskRow)
    override = aliased(AuditEvent)
    with rt.read() as s:
        rules = _rules(rt, s)
        pairs = [and_(approved.process_key == pk, approved.spec_id == a, earlier.spec_id == b)
                 for pk, rs in rules.items() for a, b in sorted(rs)]
        _log(rt, user, "four_eyes", page=page)
        if not pairs:
            return Page([], 0, page, per_page)
        # one row per (task, excluded task): a drafter who reworked the quote twice is one case, not two
        cases = (select(approved.id.label("task_id"), earlier.name.label("conflict")).distinct()
                 .select_from(approved)
                 .join(earlier, and_(earlier.instance_id == approved.instance_id,
                                     earlier.completed_by_id == approved.completed_by_id,
                                     earlier.status == "completed", earlier.id != approved.id))
                 .where(approved.status == "completed", or_(*pairs))).subquery()
        total = s.scalar(select(func.count()).select_from(cases)) or 0
        rows = s.execute(select(Instance.business_key, Instance.customer_name, User.username, task.name,
                                cases.c.conflict, task.completed_at, override.data)
                         .select_from(cases).join(task, task.id == cases.c.task_id)
                         .join(Instance, Instance.id == task.instance_id)
                         .join(User, User.id == task.completed_by_id)
                         .outerjoin(override, and_(override.task_id == task.id,
                                                   override.action == "four_eyes_override"))
                         .order_by(task.completed_at.desc(), task.id.desc(), cases.c.conflict)
                         .offset((page - 1) * per_page).limit(per_page)).all()
    cases = [FourEyesCase(key, customer, actor, task, conflict, at, (data or {}).get("reason") if data else None)
             for key, customer, actor, task, conflict, at, data in rows]
    return Page(cases, total, page, per_page)


# --- heatmap ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HeatCell:
    spec_id: str
    name: str
    count: int
    median: timedelta
    p90: timedelta
    heat: float  # 0..1, the p90 relative to the slowest element


@dataclass(frozen=True)
class Heatmap:
    process_key: str
    deployment_id: int
    deployment_version: int
    instances: int
    cells: list[HeatCell]
    versions: list[tuple[int, int]]  # (deployment id, version) of this process, newest first


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-9 * len(ordered) // 10) - 1))]


def heatmap(rt: Runtime, user: UserView, process_key: str, deployment_id: int | None = None,
            f: ExplorerFilter | None = None) -> Heatmap:
    """Median and p90 time spent per user task over the instances of one process version that match the
    explorer's filters (open tasks count up to now): where contracts wait."""
    require_compliance(user)
    f = f or ExplorerFilter()
    _check_dates(started_from=f.started_from, started_to=f.started_to)
    with rt.read() as s:
        versions = s.execute(select(Deployment.id, Deployment.version).where(Deployment.process_key == process_key)
                             .order_by(Deployment.version.desc())).all()
        if not versions:
            raise NotFound(f"no process '{process_key}'")
        if deployment_id is None:
            deployment_id = versions[0][0]
        version = next((v for d, v in versions if d == deployment_id), None)
        if version is None:
            raise NotFound(f"no version #{deployment_id} of '{process_key}'")
        where = _explorer_where(rt, f)
        where.append(Instance.deployment_id == deployment_id)
        if f.status:
            where.append(Instance.status == f.status)
        now = rt.clock.now()
        spent: dict[str, list[float]] = {}
        for spec_id, created, completed in s.execute(
                select(TaskRow.spec_id, TaskRow.created_at, TaskRow.completed_at)
                .join(Instance, Instance.id == TaskRow.instance_id)
                .where(*where, TaskRow.status != "cancelled")):
            spent.setdefault(spec_id, []).append(((completed or now) - created).total_seconds())
        count = s.scalar(select(func.count()).select_from(Instance).where(*where)) or 0
        _log(rt, user, "heatmap", process_key=process_key, deployment_id=deployment_id, filter=f.as_dict())
    names = package_for(rt, deployment_id).node_names
    p90s = {k: _p90(v) for k, v in spent.items()}
    slowest = max(p90s.values(), default=0) or 1
    cells = sorted((HeatCell(k, names.get(k, k), len(v), timedelta(seconds=statistics.median(v)),
                             timedelta(seconds=p90s[k]), p90s[k] / slowest) for k, v in spent.items()),
                   key=lambda c: c.p90, reverse=True)
    return Heatmap(process_key, deployment_id, version, count, cells, [tuple(v) for v in versions])


# --- who looked at what ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AccessEntry:
    at: datetime
    actor: str
    view: str
    details: dict[str, Any]


def access_log(rt: Runtime, user: UserView, page: int = 1, per_page: int = 50) -> Page[AccessEntry]:
    require_compliance(user)
    page, per_page = max(1, page), min(max(1, per_page), 100)
    with rt.read() as s:
        where = AuditEvent.chain == audit.ACCESS_CHAIN
        total = s.scalar(select(func.count()).select_from(AuditEvent).where(where)) or 0
        rows = s.execute(select(AuditEvent.at, AuditEvent.actor, AuditEvent.data).where(where)
                         .order_by(AuditEvent.seq.desc()).offset((page - 1) * per_page).limit(per_page)).all()
        _log(rt, user, "access_log", page=page)
    entries = [AccessEntry(at, actor, (data or {}).get("view", ""),
                           {k: v for k, v in (data or {}).items() if k != "view"}) for at, actor, data in rows]
    return Page(entries, total, page, per_page)


def verify(rt: Runtime, user: UserView, business_key: str | None = None, digest: str | None = None) -> VerifyReport:
    """Check one contract's chain, or every chain and anchor, optionally against an anchor digest kept
    outside the database (the Integrity page; ``lvyue audit verify`` calls integrity directly)."""
    require_compliance(user)
    _log(rt, user, "verify", business_key=business_key, digest=digest)
    return verify_instance(rt, business_key) if business_key else verify_all(rt, digest=digest)


def version_xml(rt: Runtime, user: UserView, deployment_id: int) -> bytes:
    require_compliance(user)
    with rt.write() as s:
        if not 0 < deployment_id < 2**31 or s.get(Deployment, deployment_id) is None:
            raise NotFound(f"no process version #{deployment_id}")
        _access(s, rt, user, "diagram", deployment_id=deployment_id)
    return package_for(rt, deployment_id).main_bpmn[1]
