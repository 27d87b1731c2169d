"""Persists what one engine step did: live state, task rows, timer rows, path rows, business columns.

Start, complete and timer firing all end here, inside their own transaction, so the rows that queues
and the worker read always agree with the stored workflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.mixins.events.end_event import EndEvent
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Instance, Step, TaskRow, Timer

from ..engine import runner
from ..engine.compaction import DroppedTask
from ..engine.package import ProcessPackage
from ..runtime import Runtime
from .errors import ProcessError


@dataclass
class StepOutcome:
    new_tasks: list[TaskRow]
    cancelled_tasks: list[TaskRow]
    fired_timers: list[Timer]


def persist_step(rt: Runtime, s: Session, inst: Instance, package: ProcessPackage, workflow: BpmnWorkflow,
                 dropped: list[DroppedTask], now: datetime) -> StepOutcome:
    outcome = StepOutcome([], [], [])
    ready = {str(t.id): t for t in runner.ready_user_tasks(workflow)}
    open_rows = list(s.scalars(select(TaskRow).where(TaskRow.instance_id == inst.id, TaskRow.status == "open")))
    for row in open_rows:
        if row.task_uuid not in ready:
            row.status = "cancelled"
            row.completed_at = now
            outcome.cancelled_tasks.append(row)
    known = {row.task_uuid for row in open_rows}
    for task_id, task in ready.items():
        if task_id in known:
            continue
        spec = task.task_spec
        process_id = spec._wf_spec.name
        try:
            info = package.user_task(process_id, spec.bpmn_id)
        except KeyError:
            raise ProcessError(f"user task '{spec.bpmn_id}' is not described by the deployment") from None
        try:
            due = runner.due_at(task, info.due_in, info.due_date, now, rt.business_tz)
        except Exception as err:  # noqa: BLE001 - a broken due-date expression must not stop the process
            raise ProcessError(f"the due date of '{info.name}' could not be computed: {err}") from err
        row = TaskRow(instance_id=inst.id, task_uuid=task_id, process_key=inst.process_key, spec_id=info.spec_id,
                      name=info.name, lane=info.lane, role=info.role, form=info.form, stage=info.stage,
                      status="open", created_at=now, due_at=due)
        s.add(row)
        outcome.new_tasks.append(row)

    waiting = {t.task_id: t for t in runner.waiting_timers(workflow)}
    timer_rows = list(s.scalars(select(Timer).where(Timer.instance_id == inst.id, Timer.status == "waiting")))
    dropped_state = {d.task_id: d.state for d in dropped}
    for trow in timer_rows:
        if trow.task_uuid in waiting:
            continue
        live = workflow.tasks.get(UUID(trow.task_uuid))
        state = TaskState.get_name(live.state) if live is not None else dropped_state.get(trow.task_uuid)
        fired = state == "COMPLETED"
        trow.status = "fired" if fired else "cancelled"
        trow.fired_at = now if fired else None
        if fired:
            outcome.fired_timers.append(trow)
    have = {t.task_uuid for t in timer_rows}
    for task_id, timer in waiting.items():
        if task_id not in have:
            s.add(Timer(instance_id=inst.id, task_uuid=task_id, spec_id=timer.spec_id, kind=timer.kind,
                        due_at=timer.due_at, status="waiting", attempts=0))

    s.add_all(Step(instance_id=inst.id, task_uuid=d.task_id, spec_id=d.spec_id, spec_type=d.spec_type,
                   name=d.name, state=d.state, finished_at=d.finished_at) for d in dropped)

    data = runner.current_data(workflow)
    inst.customer_name = _text(data.get("customer_name")) or inst.customer_name
    inst.amount = _money(data.get("amount")) if data.get("amount") is not None else inst.amount
    if workflow.is_completed():
        inst.status = "completed"
        inst.completed_at = now
        ends = [d for d in dropped if d.spec_type == EndEvent.__name__ or d.spec_type.endswith("EndEvent")]
        if ends:
            inst.end_event = max(ends, key=lambda d: d.finished_at).spec_id
        inst.stage = "done"
    else:
        stages = [row.stage for row in outcome.new_tasks if row.stage]
        stages += [row.stage for row in open_rows if row.status == "open" and row.stage]
        inst.stage = stages[0] if stages else inst.stage
    inst.updated_at = now
    inst.state = rt.codec.dumps(workflow)
    return outcome


def _text(value) -> str | None:
    return value[:200] if isinstance(value, str) and value else None


def _money(value) -> Decimal | None:
    try:
        return Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return None


def load_workflow(rt: Runtime, inst: Instance, package: ProcessPackage) -> BpmnWorkflow:
    """The live workflow of ``inst``: the cached object if it is of this version, else deserialized."""
    from .deployments import script_engine_for

    workflow = rt.take_workflow(inst.id, inst.version)
    if workflow is None:
        workflow = rt.codec.loads(inst.state, package.spec, package.subprocess_specs, script_engine_for(rt))
    return workflow


def describe_engine_error(err: BaseException) -> str:
    """A one-line account of a run-time failure in the process definition, for the person who acted."""
    parts = [str(getattr(err, "error_msg", None) or err).strip().splitlines()[0] if str(err).strip()
             else type(err).__name__]
    spec = getattr(err, "task_spec", None)
    if spec is not None:
        parts.append(f"at '{getattr(spec, 'bpmn_name', None) or spec.name}' ({getattr(spec, 'bpmn_id', spec.name)})")
    cause = getattr(err, "exception", None) or err.__cause__
    if cause is not None and str(cause) and str(cause) not in parts[0]:
        parts.append(f"cause: {cause}")
    return " ".join(parts)
