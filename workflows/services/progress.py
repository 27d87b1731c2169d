"""Persists what one engine step did: live state, task rows, timer rows, path rows, business columns.

Start, complete and timer firing all end here, inside their own transaction, so the rows that queues
and the worker read always agree with the stored workflow. This is the hot path of every click, so it
speaks SQLAlchemy Core: a handful of statements, each row written once, no ORM unit of work. The
instance row is updated last with ``WHERE version = :read_version``; a lost race raises ``RaceLost``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from models import Instance, Step, TaskRow, Timer

from ..engine import runner
from ..engine.compaction import DroppedTask
from ..engine.package import ProcessPackage
from ..runtime import Runtime
from .errors import ProcessError, RaceLost


@dataclass
class LiveInstance:
    """What the services need to know of an instance row while they step its workflow."""

    id: int
    version: int
    process_key: str
    deployment_id: int
    stage: str | None = None
    customer_name: str | None = None
    amount: Decimal | None = None


@dataclass
class StepOutcome:
    version: int
    status: str
    new_task_ids: list[int] = field(default_factory=list)
    cancelled: list[tuple[int, str]] = field(default_factory=list)  # (task row id, spec id)
    fired_timers: list[tuple[str, str, datetime]] = field(default_factory=list)  # (spec id, kind, due)


def has_timers(workflow: BpmnWorkflow) -> bool:
    return bool(workflow.event_manager.tasks)


def persist_step(rt: Runtime, s: Session, inst: LiveInstance, package: ProcessPackage, workflow: BpmnWorkflow,
                 dropped: list[DroppedTask], now: datetime, had_timers: bool) -> StepOutcome:
    ready = {str(t.id): t for t in runner.ready_user_tasks(workflow)}
    open_rows = s.execute(select(TaskRow.id, TaskRow.task_uuid, TaskRow.spec_id, TaskRow.stage)
                          .where(TaskRow.instance_id == inst.id, TaskRow.status == "open")).all()
    completed = workflow.is_completed()
    outcome = StepOutcome(version=inst.version + 1, status="completed" if completed else "running")
    stale = [(r.id, r.spec_id) for r in open_rows if r.task_uuid not in ready]
    if stale:
        s.execute(update(TaskRow).where(TaskRow.id.in_([i for i, _ in stale]))
                  .values(status="cancelled", completed_at=now))
        outcome.cancelled = stale
    known = {r.task_uuid for r in open_rows}
    new_rows = [_task_row(rt, inst, package, task_id, task, now) for task_id, task in ready.items()
                if task_id not in known]
    if new_rows:
        outcome.new_task_ids = list(s.scalars(insert(TaskRow).returning(TaskRow.id, sort_by_parameter_order=True),
                                              new_rows))

    waiting = runner.waiting_timers(workflow)
    if had_timers or waiting:
        _sync_timers(s, inst, workflow, dropped, waiting, now, outcome)

    if dropped:
        s.execute(insert(Step), [dict(instance_id=inst.id, task_uuid=d.task_id, spec_id=d.spec_id,
                                      spec_type=d.spec_type, name=d.name, state=d.state,
                                      finished_at=d.finished_at) for d in dropped])

    values: dict[str, Any] = dict(state=rt.codec.dumps(workflow), version=outcome.version, updated_at=now,
                                  status=outcome.status)
    data = runner.current_data(workflow)
    customer = _text(data.get("customer_name"))
    if customer and customer != inst.customer_name:
        values["customer_name"] = customer
    amount = _money(data.get("amount"))
    if amount is not None and amount != inst.amount:
        values["amount"] = amount
    if completed:
        ends = [d for d in dropped if d.spec_type.endswith("EndEvent")]
        values.update(completed_at=now, stage="done")
        if ends:
            values["end_event"] = max(ends, key=lambda d: d.finished_at).spec_id
    else:
        stages = [row["stage"] for row in new_rows if row["stage"]]
        stages += [r.stage for r in open_rows if r.task_uuid in ready and r.stage]
        if stages and stages[0] != inst.stage:
            values["stage"] = stages[0]
    result = s.execute(update(Instance).where(Instance.id == inst.id, Instance.version == inst.version)
                       .values(**values))
    if result.rowcount != 1:
        raise RaceLost("someone else changed this contract at the same moment; reload and try again")
    inst.version = outcome.version
    return outcome


def _task_row(rt: Runtime, inst: LiveInstance, package: ProcessPackage, task_id: str, task, now: datetime) -> dict:
    spec = task.task_spec
    try:
        info = package.user_task(spec._wf_spec.name, spec.bpmn_id)
    except KeyError:
        raise ProcessError(f"user task '{spec.bpmn_id}' is not described by the deployment") from None
    try:
        due = runner.due_at(task, info.due_in, info.due_date, now, rt.business_tz)
    except Exception as err:  # noqa: BLE001 - a broken due-date expression must not stop the process
        raise ProcessError(f"the due date of '{info.name}' could not be computed: {err}") from err
    return dict(instance_id=inst.id, task_uuid=task_id, process_key=inst.process_key, spec_id=info.spec_id,
                name=info.name, lane=info.lane, role=info.role, form=info.form, stage=info.stage, status="open",
                created_at=now, due_at=due)


def _sync_timers(s: Session, inst: LiveInstance, workflow: BpmnWorkflow, dropped: list[DroppedTask],
                 waiting: list[runner.WaitingTimer], now: datetime, outcome: StepOutcome) -> None:
    waiting_ids = {t.task_id for t in waiting}
    rows = s.execute(select(Timer.id, Timer.task_uuid, Timer.spec_id, Timer.kind, Timer.due_at)
                     .where(Timer.instance_id == inst.id, Timer.status == "waiting")).all()
    dropped_state = {d.task_id: d.state for d in dropped}
    fired, cancelled = [], []
    for row in rows:
        if row.task_uuid in waiting_ids:
            continue
        live = workflow.tasks.get(UUID(row.task_uuid))
        state = TaskState.get_name(live.state) if live is not None else dropped_state.get(row.task_uuid)
        if state == "COMPLETED":
            fired.append(row.id)
            outcome.fired_timers.append((row.spec_id, row.kind, row.due_at))
        else:
            cancelled.append(row.id)
    if fired:
        s.execute(update(Timer).where(Timer.id.in_(fired)).values(status="fired", fired_at=now))
    if cancelled:
        s.execute(update(Timer).where(Timer.id.in_(cancelled)).values(status="cancelled"))
    have = {row.task_uuid for row in rows}
    new = [dict(instance_id=inst.id, task_uuid=t.task_id, spec_id=t.spec_id, kind=t.kind, due_at=t.due_at,
                status="waiting", attempts=0) for t in waiting if t.task_id not in have]
    if new:
        s.execute(insert(Timer), new)


def load_workflow(rt: Runtime, inst: LiveInstance, package: ProcessPackage, s: Session) -> BpmnWorkflow:
    """The live workflow of ``inst``: the cached object if it is of this version, else deserialized."""
    from .deployments import script_engine_for

    workflow = rt.take_workflow(inst.id, inst.version)
    if workflow is None:
        state = s.scalar(select(Instance.state).where(Instance.id == inst.id))
        workflow = rt.codec.loads(state, package.spec, package.subprocess_specs, script_engine_for(rt))
    return workflow


def describe_engine_error(err: BaseException) -> str:
    """A one-line account of a run-time failure in the process definition, for the person who acted."""
    text = str(getattr(err, "error_msg", None) or err).strip()
    parts = [text.splitlines()[0] if text else type(err).__name__]
    spec = getattr(err, "task_spec", None)
    if spec is not None:
        parts.append(f"at '{getattr(spec, 'bpmn_name', None) or spec.name}' ({getattr(spec, 'bpmn_id', spec.name)})")
    cause = getattr(err, "exception", None) or err.__cause__
    if cause is not None and str(cause) and str(cause) not in parts[0]:
        parts.append(f"cause: {cause}")
    return " ".join(parts)


def _text(value) -> str | None:
    return value[:200] if isinstance(value, str) and value else None


def _money(value) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return None
