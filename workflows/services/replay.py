"""Replay against history: run a changed process over the recorded inputs of the latest version's recent
instances and tell how many would take a different path, which ones, and which steps would be skipped or added.

The inputs come from the audit trail alone (indexed by instance): the start event's data, each completion's
form (per user task, in the order given) and the timers that fired. No stored workflow is loaded. Each instance
is simulated in memory (``workflows.studio.simulate``) with, at every wait, the earliest recorded action the new
process can take; a user task with no recorded input left stops it there ("would wait at ..."). Instances whose
history was rewound (withdraw, return to an earlier step) or moved between versions cannot be replayed
faithfully and are counted apart, with the reason.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import AuditEvent, Deployment, DeploymentFile, Draft, Instance, TaskRow

from ..bilingual import name_in
from ..clock import FrozenClock
from ..engine.package import PackageError, ProcessPackage, build_package
from ..forms import FormInvalid, validate_submission
from ..runtime import Runtime
from ..studio.simulate import Ready, Recorded, default_script_engine, simulate, strict, strict_start
from .accounts import ROLE_CODES
from .deployments import package_for
from .errors import DeployRefused, InvalidInput, NotFound

DEFAULT_LIMIT = 120
MAX_LIMIT = 1000
TIMER_ACTIONS = ("timer", "escalation")
REWINDS = {"withdraw": "the history has a withdraw", "return_to_step": "the history has a return to an earlier step",
           "amend": "the history has an amendment"}
RELEVANT = ("start", "complete", *TIMER_ACTIONS, *REWINDS)
MIGRATED = "the instance was moved from another version"
NO_START = "the start of the instance was not recorded"


@dataclass
class History:
    """What the audit trail recorded of one instance, as replay and recorded tests need it."""

    instance_id: int
    start: dict[str, Any] | None = None
    start_deployment_id: int | None = None
    started_at: datetime | None = None
    events: list[tuple[str, str, dict[str, Any] | None, datetime | None]] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)  # user task spec ids completed, in order
    problem: str | None = None  # why it cannot be replayed


def _aware(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def load_histories(s: Session, instance_ids: list[int]) -> dict[int, History]:
    """The recorded inputs of these instances: one indexed query over their audit events (instance, id)."""
    found = {i: History(i) for i in instance_ids}
    if not instance_ids:
        return found
    rows = s.execute(select(AuditEvent.instance_id, AuditEvent.action, AuditEvent.spec_id, AuditEvent.at,
                            AuditEvent.data)
                     .where(AuditEvent.instance_id.in_(instance_ids))
                     .where(AuditEvent.action.in_(RELEVANT) | AuditEvent.action.like("migrat%"))
                     .order_by(AuditEvent.instance_id, AuditEvent.id))
    for instance_id, action, spec_id, at, data in rows:
        h = found[instance_id]
        data = data or {}
        at = _aware(at)
        if action == "start":
            h.start = dict(data.get("data") or {})
            h.start_deployment_id = data.get("deployment_id")
            h.started_at = at
        elif action == "complete" and spec_id:
            h.events.append(("task", spec_id, dict(data.get("form") or {}), at))
            h.completed.append(spec_id)
        elif action in TIMER_ACTIONS and spec_id:
            h.events.append(("timer", spec_id, None, at))
        elif action in REWINDS:
            h.problem = h.problem or REWINDS[action]
        elif action.startswith("migrat"):
            h.problem = h.problem or MIGRATED
    for h in found.values():
        if h.problem is None and h.start is None:
            h.problem = NO_START
    return found


# --- the report ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InstanceDiff:
    business_key: str
    customer: str | None
    amount: str | None
    status: str
    old_path: list[str]  # user task spec ids completed, then the end event or "waiting: ..." entries
    new_path: list[str]
    divergence: str  # the first difference, in words
    skipped: list[str]
    added: list[str]


@dataclass(frozen=True)
class TaskCount:
    spec_id: str
    name: str
    skipped: int  # instances that reached it before and would not now
    added: int  # instances that would reach it now and did not before


@dataclass
class ReplayReport:
    process_key: str
    base_version: int
    limit: int
    looked_at: int  # instances of the base version considered
    replayed: int
    same: int
    different: list[InstanceDiff]
    tasks: list[TaskCount]
    not_replayable: int
    reasons: dict[str, int]
    form_mismatches: dict[str, int]  # user task -> instances whose recorded input no longer fits its form
    summary_en: str
    summary_zh: str
    seconds: float
    names: dict[str, str] = field(default_factory=dict)  # spec id -> name (old and new package)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def page(self, page: int, per_page: int = 20) -> tuple[list[InstanceDiff], int]:
        """One page of the differing instances and the number of pages."""
        pages = max(1, -(-len(self.different) // per_page))
        page = min(max(1, page), pages)
        return self.different[(page - 1) * per_page:page * per_page], pages


def replay(rt: Runtime, process_key: str, files: dict[str, bytes], limit: int = DEFAULT_LIMIT) -> ReplayReport:
    """Replay the last ``limit`` instances (newest first) of the latest deployed version through ``files``."""
    started = time.perf_counter()
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"replay between 1 and {MAX_LIMIT} instances", {"limit": f"at most {MAX_LIMIT}"})
    try:
        new = build_package(files, known_roles=ROLE_CODES, process_key=process_key)
    except PackageError as err:
        raise DeployRefused(f"the changed process does not build ({len(err.problems)} problem(s)); "
                            "fix them before replaying", err.problems) from err
    with rt.read() as s:
        dep = s.execute(select(Deployment.id, Deployment.version).where(Deployment.process_key == process_key)
                        .order_by(Deployment.version.desc()).limit(1)).first()
        if dep is None:
            raise NotFound(f"process '{process_key}' is not deployed")
        rows = s.execute(select(Instance.id, Instance.business_key, Instance.customer_name, Instance.amount,
                                Instance.status, Instance.end_event)
                         .where(Instance.deployment_id == dep.id).order_by(Instance.id.desc()).limit(limit)).all()
        ids = [r.id for r in rows]
        histories = load_histories(s, ids)
        waiting: dict[int, list[str]] = {}
        if ids:
            for instance_id, spec_id in s.execute(select(TaskRow.instance_id, TaskRow.spec_id)
                                                  .where(TaskRow.instance_id.in_(ids), TaskRow.status == "open")
                                                  .order_by(TaskRow.id)):
                waiting.setdefault(instance_id, []).append(spec_id)
    old = package_for(rt, dep.id)
    names = {**old.node_names, **new.node_names}
    clock = FrozenClock(datetime(2000, 1, 1, tzinfo=UTC))
    engine = default_script_engine(clock)
    reasons: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    added: Counter[str] = Counter()
    mismatched: Counter[str] = Counter()
    different: list[InstanceDiff] = []
    replayed = same = 0
    for row in rows:
        h = histories[row.id]
        if h.problem is None and h.start_deployment_id not in (None, dep.id):
            h.problem = MIGRATED
        if h.problem is not None:
            reasons[h.problem] += 1
            continue
        replayed += 1
        misfits: set[str] = set()
        clean = _lenient(old, misfits)
        start = _start_data(old, new, h.start or {})
        clock.set(h.started_at or clock.now())
        sim = simulate(new, start, Recorded(h.events), clean=clean, clock=clock, script_engine=engine)
        for spec in misfits:
            mismatched[spec] += 1
        completed = row.status == "completed"
        old_seq = h.completed + ([row.end_event] if completed and row.end_event else
                                 [f"waiting: {w}" for w in waiting.get(row.id, [])])
        new_seq = sim.path + ([sim.end_event] if sim.end_event and not sim.waiting_at else
                              [f"waiting: {w}" for w in sim.waiting_at])
        if sim.error is None and old_seq == new_seq:
            same += 1
            continue
        old_reached = set(h.completed) | set(waiting.get(row.id, []) if not completed else [])
        new_reached = set(sim.path) | set(sim.waiting_at)
        # where a running instance would wait now is no added step: it has not got that far yet; a finished
        # one that would wait needs a step it never had
        new_needed = set(sim.path) | (set(sim.waiting_at) if completed else set())
        tasks = set(old.main.user_tasks) | set(new.main.user_tasks)
        gone = sorted(t for t in old_reached - new_reached if t in tasks)
        came = sorted(t for t in new_needed - old_reached if t in tasks)
        skipped.update(gone)
        added.update(came)
        different.append(InstanceDiff(
            row.business_key, row.customer_name, _money(row.amount), row.status, old_seq, new_seq,
            _divergence(old_seq, new_seq, sim.error, h, names), gone, came))
    counts = sorted((TaskCount(t, names.get(t, t), skipped[t], added[t]) for t in set(skipped) | set(added)),
                    key=lambda c: (-(c.skipped + c.added), c.spec_id))
    report = ReplayReport(process_key, dep.version, limit, len(rows), replayed, same, different, counts,
                          sum(reasons.values()), dict(reasons), dict(mismatched), "", "", 0.0, names)
    report.summary_en, report.summary_zh = summaries(report)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _lenient(old: ProcessPackage, misfits: set[str]):
    """Recorded input through the new form as a completion would; input the new form refuses (a field added or
    renamed) is used as the old form cleaned it, and the task counted as a form mismatch."""

    def clean(package: ProcessPackage, task: Ready, data: dict[str, Any]) -> dict[str, Any]:
        try:
            return strict(package, task, data)
        except (FormInvalid, KeyError):
            misfits.add(task.spec_id)
        info = next((p.user_tasks[task.spec_id] for p in old.processes.values() if task.spec_id in p.user_tasks),
                    None)
        if info is not None and info.form in old.forms:
            try:
                return validate_submission(old.forms[info.form], data, old.validator(info.form))
            except FormInvalid:
                pass
        return data

    return clean


def _start_data(old: ProcessPackage, new: ProcessPackage, data: dict[str, Any]) -> dict[str, Any]:
    """Start data as the start form cleans it (the new one, else the old one, else as recorded)."""
    for package in (new, old):
        if package.main.start_form in package.forms:
            try:
                return strict_start(package, data)
            except FormInvalid:
                continue
    return dict(data)


def _divergence(old_seq: list[str], new_seq: list[str], error: str | None, h: History,
                names: dict[str, str]) -> str:
    """The first difference in words: a step skipped, a step added, where it would wait or end instead."""
    def spec(entry: str | None) -> str | None:
        return entry.removeprefix("waiting: ") if entry is not None else None

    def name(entry: str | None) -> str:
        return names.get(spec(entry) or "", spec(entry) or "")

    olds, news = [spec(e) for e in old_seq], [spec(e) for e in new_seq]
    for i in range(max(len(old_seq), len(new_seq))):
        o = old_seq[i] if i < len(old_seq) else None
        n = new_seq[i] if i < len(new_seq) else None
        if o == n:
            continue
        if n is None:
            return f"would stop after '{name(new_seq[-1])}'" if new_seq else "would not start"
        if o is None:
            return f"would go on to '{name(n)}'"
        if spec(n) in olds[i + 1:]:
            return f"'{name(o)}' would be skipped"
        if spec(o) in news[i + 1:]:
            return f"'{name(n)}' would be added before '{name(o)}'"
        if spec(n) == spec(o):  # the same task, waited for here and completed there (or the other way round)
            return f"would wait at '{name(n)}'" if n.startswith("waiting: ") else f"would go on past '{name(n)}'"
        if n.startswith("waiting: ") and spec(n) not in h.completed:
            return f"would wait at '{name(n)}', which this instance never had"
        return f"'{name(n)}' instead of '{name(o)}'"
    if error:
        return f"the changed process fails: {error}"
    return "the order of the steps differs"


def summaries(report: ReplayReport) -> tuple[str, str]:
    """One sentence in English and one in Chinese, e.g. "Manager review would be skipped on 37 of the last 120
    instances"."""
    n = report.replayed
    lost = ""
    lost_zh = ""
    if report.not_replayable:
        lost = f" ({report.not_replayable} could not be replayed)"
        lost_zh = f"（另有 {report.not_replayable} 个无法重放）"
    if n == 0:
        return (f"No instance of version {report.base_version} could be replayed{lost}",
                f"版本 {report.base_version} 没有可重放的实例{lost_zh}")
    if not report.different:
        return (f"All of the last {n} instances would take the same path{lost}",
                f"最近 {n} 个实例的路径均不变{lost_zh}")
    parts_en, parts_zh = [], []
    for c in report.tasks[:3]:
        en, zh = name_in(c.name, "en"), name_in(c.name, "zh-CN")
        if c.skipped:
            parts_en.append(f"{en} would be skipped on {c.skipped}")
            parts_zh.append(f"{c.skipped} 个将跳过「{zh}」")
        if c.added:
            parts_en.append(f"{en} would be added on {c.added}")
            parts_zh.append(f"{c.added} 个将新增「{zh}」")
    d = len(report.different)
    if parts_en:
        parts_en[0] += f" of the last {n} instances"
        return ("; ".join(parts_en) + f" ({d} take a different path){lost}",
                f"最近 {n} 个实例中，" + "；".join(parts_zh) + f"（共 {d} 个路径不同）{lost_zh}")
    return (f"{d} of the last {n} instances would take a different path{lost}",
            f"最近 {n} 个实例中有 {d} 个路径不同{lost_zh}")


def files_as_bytes(files: Any) -> dict[str, bytes]:
    """``{"name": "text"}`` from a request → the files a package is built from; anything else is refused."""
    if not isinstance(files, dict) or not files:
        raise InvalidInput("send the files as {\"files\": {\"name\": \"text\"}}", {"files": "required"})
    out = {}
    for name, text in files.items():
        if not isinstance(name, str) or not isinstance(text, str):
            raise InvalidInput("send the files as {\"files\": {\"name\": \"text\"}}", {"files": "text only"})
        out[name] = text.encode("utf-8")
    return out


@dataclass(frozen=True)
class Target:
    """The files studio runs work on: the saved draft if there is one, else the latest version."""

    files: dict[str, bytes]
    draft: bool
    version: int | None  # the latest version (the draft's files are not a version yet)


def draft_or_latest(rt: Runtime, process_key: str) -> Target:
    with rt.read() as s:
        draft = s.get(Draft, process_key)
        dep = s.execute(select(Deployment.id, Deployment.version).where(Deployment.process_key == process_key)
                        .order_by(Deployment.version.desc()).limit(1)).first()
        if draft is not None:
            files = json.loads(draft.files or "{}")
            return Target({k: v.encode("utf-8") for k, v in files.items() if isinstance(v, str)}, True,
                          dep.version if dep else None)
        if dep is None:
            raise NotFound(f"process '{process_key}' is not deployed")
        files = {f.filename: f.content for f in s.scalars(select(DeploymentFile)
                                                          .where(DeploymentFile.deployment_id == dep.id))}
        return Target(files, False, dep.version)
