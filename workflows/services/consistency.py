"""Proves, on a live database, that every instance is coherent: its stored SpiffWorkflow state and its SQL rows
tell the same story, so no crash left an instance half-way through a step.

A step (start, completion, timer firing) writes the workflow state, the task rows, the timer rows, the path
(``steps``), the version and the audit events in one transaction. If that ever tore, it shows here as a
disagreement: the engine has a READY user task without an open task row (or the reverse), a waiting timer
without a waiting timer row, a completed task without its one ``complete`` event, a task both in the live
tree and in the path, or a version that counts more or fewer steps than the audit record. The audit hash
chains are verified too (``integrity.verify_all``).

Instances are read in batches of ids, each batch in one snapshot (so its rows agree with each other even while
the system runs), and deserialized one at a time: memory does not grow with the number of contracts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from SpiffWorkflow.util.task import TaskState
from sqlalchemy import func, select

from models import AuditEvent, Instance, Step, TaskRow, Timer

from ..engine import runner
from ..runtime import Runtime
from . import integrity
from .deployments import package_for, script_engine_for

FIRE_ACTIONS = ("timer", "escalation")
MOVE_ACTIONS = ("withdraw", "return_to_step", "migrate", "amend")  # rewind.py, migration.py, amend.py: one step each
PENDING_TIMER = ("waiting", "error")  # the engine still waits on both: 'error' only stops the worker retrying


@dataclass(frozen=True)
class Problem:
    instance_id: int | None
    business_key: str | None
    kind: str  # state | tasks | timers | audit | path | version | status | chain
    message: str

    def __str__(self) -> str:
        where = f"{self.business_key} (instance {self.instance_id})" if self.instance_id is not None else "audit"
        return f"{where}: [{self.kind}] {self.message}"


@dataclass
class ConsistencyReport:
    instances: int = 0
    problems: list[Problem] = field(default_factory=list)
    audit: integrity.VerifyReport | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def by_instance(self) -> dict[int | None, list[Problem]]:
        out: dict[int | None, list[Problem]] = defaultdict(list)
        for p in self.problems:
            out[p.instance_id].append(p)
        return dict(out)

    def summary(self) -> str:
        audit = f"; audit {self.audit.summary()}" if self.audit is not None else ""
        if self.ok:
            return f"consistent: {self.instances} instance(s) checked{audit}"
        bad = len({p.instance_id for p in self.problems if p.instance_id is not None})
        return (f"{len(self.problems)} problem(s) in {bad} of {self.instances} instance(s){audit}")


@dataclass
class _Rows:
    """What the SQL side says about one instance."""

    tasks: list[Any] = field(default_factory=list)
    timers: list[Any] = field(default_factory=list)
    steps: list[Any] = field(default_factory=list)
    completes: Counter[int] = field(default_factory=Counter)  # task id -> 'complete' events
    moves: int = 0  # withdraw and return-to-step events: each one engine step
    fire_events: list[Any] = field(default_factory=list)  # (spec_id, at, data)


def count_instances(rt: Runtime) -> int:
    with rt.read() as s:
        return s.scalar(select(func.count()).select_from(Instance)) or 0


def check_all(rt: Runtime, batch: int = 200, progress: Callable[[int], None] | None = None,
              audit: bool = True) -> ConsistencyReport:
    """Every instance, in batches of ``batch`` ids, then (``audit``) every audit chain and anchor."""
    report = ConsistencyReport()
    after = 0
    while True:
        with rt.read() as s:
            ids = list(s.scalars(select(Instance.id).where(Instance.id > after).order_by(Instance.id).limit(batch)))
        if not ids:
            break
        report.problems += _check_batch(rt, ids)
        report.instances += len(ids)
        after = ids[-1]
        if progress:
            progress(len(ids))
    if audit:
        report.audit = integrity.verify_all(rt)
        report.problems += [Problem(None, None, "chain", str(b)) for b in report.audit.breaks]
    return report


def check_instances(rt: Runtime, instance_ids: list[int]) -> list[Problem]:
    return _check_batch(rt, sorted(instance_ids))


def _check_batch(rt: Runtime, ids: list[int]) -> list[Problem]:
    problems: list[Problem] = []
    with rt.snapshot() as s:
        rows: dict[int, _Rows] = {i: _Rows() for i in ids}
        for r in s.execute(select(TaskRow.id, TaskRow.instance_id, TaskRow.task_uuid, TaskRow.spec_id,
                                  TaskRow.status).where(TaskRow.instance_id.in_(ids))):
            rows[r.instance_id].tasks.append(r)
        for r in s.execute(select(Timer.id, Timer.instance_id, Timer.task_uuid, Timer.spec_id, Timer.status,
                                  Timer.due_at, Timer.fired_at, Timer.attempts).where(Timer.instance_id.in_(ids))):
            rows[r.instance_id].timers.append(r)
        for r in s.execute(select(Step.instance_id, Step.task_uuid, Step.spec_id, Step.state)
                           .where(Step.instance_id.in_(ids))):
            rows[r.instance_id].steps.append(r)
        for r in s.execute(select(AuditEvent.instance_id, AuditEvent.action, AuditEvent.task_id, AuditEvent.spec_id,
                                  AuditEvent.at, AuditEvent.data)
                           .where(AuditEvent.instance_id.in_(ids),
                                  AuditEvent.action.in_(("complete", *MOVE_ACTIONS, *FIRE_ACTIONS)))):
            if r.action == "complete":
                rows[r.instance_id].completes[r.task_id] += 1
            elif r.action in MOVE_ACTIONS:
                rows[r.instance_id].moves += 1
            else:
                rows[r.instance_id].fire_events.append(r)
        instances = s.execute(select(Instance.id, Instance.business_key, Instance.deployment_id, Instance.status,
                                     Instance.version, Instance.state).where(Instance.id.in_(ids))
                              .order_by(Instance.id).execution_options(yield_per=20))
        for inst in instances:
            problems += check_one(rt, inst, rows[inst.id])
    return problems


def check_one(rt: Runtime, inst: Any, rows: _Rows) -> list[Problem]:
    """``inst``: a row with id, business_key, deployment_id, status, version and state."""
    found: list[Problem] = []

    def problem(kind: str, message: str) -> None:
        found.append(Problem(inst.id, inst.business_key, kind, message))

    try:
        package = package_for(rt, inst.deployment_id)
        workflow = rt.codec.loads(inst.state, package.spec, package.subprocess_specs, script_engine_for(rt))
    except Exception as err:  # noqa: BLE001 - an unreadable state is exactly what this reports
        problem("state", f"the stored workflow state cannot be loaded: {type(err).__name__}: {err}")
        return found

    live = _live_tasks(workflow)
    open_rows = {r.task_uuid: r for r in rows.tasks if r.status == "open"}
    ready = {str(t.id): t for t in runner.ready_user_tasks(workflow)}
    for uuid in sorted(set(ready) - set(open_rows)):
        problem("tasks", f"the engine has the user task '{ready[uuid].task_spec.bpmn_id}' READY ({uuid}) "
                         "but there is no open task row for it")
    for uuid in sorted(set(open_rows) - set(ready)):
        r = open_rows[uuid]
        state = TaskState.get_name(live[uuid].state) if uuid in live else "not in the live state"
        problem("tasks", f"task row #{r.id} ('{r.spec_id}') is open but its engine task is {state}")

    _check_timers(workflow, live, rows, problem)
    _check_completions(package, live, rows, problem)
    _check_path(live, rows, problem)

    completed = workflow.is_completed()
    if completed != (inst.status == "completed"):
        problem("status", f"the instance row says '{inst.status}' but the engine's workflow is "
                          f"{'completed' if completed else 'not completed'}")

    # start is one step, each completion and each withdraw or return one, each timer step one (its events share
    # the step's time); a timer step the engine did not fire moves the version without an event and counts an
    # attempt on a timer row
    completions, timer_steps = sum(rows.completes.values()), len({r.at for r in rows.fire_events})
    steps = 2 + completions + rows.moves + timer_steps
    unfired = sum(t.attempts for t in rows.timers)
    if not steps <= inst.version <= steps + unfired:
        expected = f"{steps} to {steps + unfired}" if unfired else str(steps)
        moved = f", {rows.moves} withdraw/return(s)" if rows.moves else ""
        problem("version", f"version {inst.version} does not fit the recorded steps (start, {completions} "
                           f"completion(s){moved}, {timer_steps} timer step(s)): expected {expected}")
    return found


def _live_tasks(workflow) -> dict[str, Any]:
    tasks = {str(t.id): t for t in workflow.tasks.values()}
    for sp in workflow.subprocesses.values():
        tasks.update({str(t.id): t for t in sp.tasks.values()})
    return tasks


def _check_timers(workflow, live: dict[str, Any], rows: _Rows, problem: Callable[[str, str], None]) -> None:
    waiting = {t.task_id: t for t in runner.waiting_timers(workflow)}
    pending = {r.task_uuid: r for r in rows.timers if r.status in PENDING_TIMER}
    for uuid in sorted(set(waiting) - set(pending)):
        problem("timers", f"the engine waits on the timer '{waiting[uuid].spec_id}' ({uuid}, due "
                          f"{waiting[uuid].due_at:%Y-%m-%d %H:%M}) but no timer row waits for it")
    for uuid in sorted(set(pending) - set(waiting)):
        r = pending[uuid]
        state = TaskState.get_name(live[uuid].state) if uuid in live else "not in the live state"
        problem("timers", f"timer row #{r.id} ('{r.spec_id}') is {r.status} but its engine task is {state}")
    for uuid in sorted(set(pending) & set(waiting)):
        if pending[uuid].due_at != waiting[uuid].due_at:
            problem("timers", f"timer row #{pending[uuid].id} is due {pending[uuid].due_at.isoformat()} but the "
                              f"engine's timer is due {waiting[uuid].due_at.isoformat()}")
    fired_rows: Counter[tuple[str, datetime]] = Counter()
    for r in rows.timers:
        if r.status == "fired":
            fired_rows[r.spec_id, r.due_at] += 1
            if r.fired_at is None:
                problem("timers", f"timer row #{r.id} ('{r.spec_id}') is fired but has no fired_at")
    events: Counter[tuple[str, datetime | None]] = Counter()
    for e in rows.fire_events:
        due = (e.data or {}).get("due_at")
        events[e.spec_id, datetime.fromisoformat(due) if isinstance(due, str) else None] += 1
    # a timer already due when the process reached it fires inside that step (a completion records no timer
    # event for it), so a fired row may lack an event; an event never lacks its row, and never comes twice
    for (spec_id, due), n in sorted(events.items(), key=str):
        if n > fired_rows.get((spec_id, due), 0):
            problem("audit", f"the timer '{spec_id}' due {due.isoformat() if due else '?'} has {n} firing event(s) "
                             f"but {fired_rows.get((spec_id, due), 0)} fired timer row(s): it fired twice")


def _check_completions(package, live: dict[str, Any], rows: _Rows, problem: Callable[[str, str], None]) -> None:
    in_path = {r.task_uuid: r.state for r in rows.steps}
    top_specs = package.spec.task_specs
    for r in rows.tasks:
        events = rows.completes.get(r.id, 0)
        if r.status == "completed" and events != 1:
            problem("audit", f"task row #{r.id} ('{r.spec_id}') is completed with {events} 'complete' audit "
                             "event(s), not exactly one")
        elif r.status != "completed" and events:
            problem("audit", f"task row #{r.id} ('{r.spec_id}') is {r.status} but has {events} 'complete' audit "
                             "event(s)")
        if r.status == "completed":
            state = TaskState.get_name(live[r.task_uuid].state) if r.task_uuid in live else in_path.get(r.task_uuid)
            # a finished subprocess leaves the live state whole, without path rows: only top-level tasks are known
            if state is None and r.spec_id not in top_specs:
                continue
            if state != "COMPLETED":
                problem("tasks", f"task row #{r.id} ('{r.spec_id}') is completed but its engine task is "
                                 f"{state or 'neither in the live state nor in the path'}")
    for task_id in set(rows.completes) - {r.id for r in rows.tasks}:
        problem("audit", f"a 'complete' audit event names task #{task_id}, which is no task of this instance")


def _check_path(live: dict[str, Any], rows: _Rows, problem: Callable[[str, str], None]) -> None:
    seen = Counter(r.task_uuid for r in rows.steps)
    for uuid, n in sorted(seen.items()):
        if n > 1:
            problem("path", f"the engine task {uuid} is in the path {n} times")
    for uuid in sorted(set(seen) & {str(u) for u in live}):
        problem("path", f"the engine task {uuid} ('{live[uuid].task_spec.bpmn_id or live[uuid].task_spec.name}') "
                        "is both in the live state and in the path")
