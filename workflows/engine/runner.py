"""Drives a live workflow between wait states: start, run one user task, fire timers, read what waits.

Plain SpiffWorkflow plus two rules of ours: every step is followed by compaction, and a task is only
run when it is READY (``Task.run()`` does not check the state itself).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    CycleTimerEventDefinition,
    TimerEventDefinition,
)
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent
from SpiffWorkflow.bpmn.specs.mixins.script_task import ScriptEngineTask
from SpiffWorkflow.dmn.specs.business_rule_task_mixin import BusinessRuleTaskMixin
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

from .compaction import DroppedTask, compact
from .package import ProcessPackage


class NotReady(Exception):
    """The task is not READY (already done, cancelled, or not reached yet)."""


@dataclass(frozen=True)
class WaitingTimer:
    task_id: str
    spec_id: str
    kind: str  # "timer" or "escalation" (a boundary timer)
    due_at: datetime


def new_workflow(package: ProcessPackage, script_engine, data: dict[str, Any]) -> BpmnWorkflow:
    workflow = BpmnWorkflow(package.spec, package.subprocess_specs, script_engine=script_engine)
    for task in workflow.get_tasks(state=TaskState.READY):
        task.data.update(copy.deepcopy(data))
    return workflow


TIMER_ROW_FLAG = "lvyue_timer_row"  # internal data: this timer task has a row in the timers table


@dataclass
class StepResult:
    dropped: list[DroppedTask]
    fired_unrecorded: list[WaitingTimer]  # timers due on arrival: fired inside this step, never waited
    automated: dict[str, dict[str, Any]] | None = None  # with ``origin``: what scripts set after it


def step(workflow: BpmnWorkflow, origin: Task | None = None) -> StepResult:
    """Run the engine until it waits, then compact. ``origin`` is the task just completed: what scripts and
    decision tables then set is read before compaction drops the finished tasks in between."""
    workflow.do_engine_steps()
    automated = automated_changes(origin) if origin is not None else None
    fired = []
    for task in workflow.tasks.values():
        if task.state == TaskState.COMPLETED and not task.internal_data.get(TIMER_ROW_FLAG):
            timer = _as_timer(task)
            if timer is not None:
                task.internal_data[TIMER_ROW_FLAG] = True
                fired.append(timer)
    return StepResult(compact(workflow), fired, automated)


def run_user_task(workflow: BpmnWorkflow, task_id: str, data: dict[str, Any]) -> tuple[Task, dict[str, Any]]:
    """Apply the form data to a READY user task and complete it (its post-script runs).

    Returns the task and a copy of its data from before, so the caller can record what changed."""
    task = workflow.tasks.get(UUID(task_id))
    if task is None or task.state != TaskState.READY:
        raise NotReady(task_id)
    before = dict(task.data)
    # replace top-level values: SpiffWorkflow's deep merge would merge lists by position
    for key, value in data.items():
        task.data[key] = copy.deepcopy(value)
    task.run()
    return task, before


def fire_timers(workflow: BpmnWorkflow) -> None:
    workflow.refresh_timers()


def ready_user_tasks(workflow: BpmnWorkflow) -> list[Task]:
    return workflow.get_tasks(state=TaskState.READY, manual=True)


def _timer_due(task: Task) -> datetime | None:
    definition = task.task_spec.event_definition
    value = task._get_internal_data("event_value")
    if value is None and not isinstance(definition, CycleTimerEventDefinition) and task.state == TaskState.WAITING:
        definition.has_fired(task)  # computes and stores event_value
        value = task._get_internal_data("event_value")
    if value is None:
        return None
    if isinstance(value, dict):  # cycle timers keep {'cycles', 'next', 'duration'}
        value = value.get("next")
    return TimerEventDefinition.get_datetime(value) if isinstance(value, str) else None


def _as_timer(task: Task) -> WaitingTimer | None:
    spec = task.task_spec
    if not isinstance(spec, CatchingEvent) or not isinstance(getattr(spec, "event_definition", None),
                                                             TimerEventDefinition):
        return None
    due = _timer_due(task)
    if due is None:
        return None
    kind = "escalation" if isinstance(spec, BoundaryEvent) else "timer"
    return WaitingTimer(str(task.id), spec.bpmn_id or spec.name, kind, due)


def waiting_timers(workflow: BpmnWorkflow) -> list[WaitingTimer]:
    timers = []
    for task in list(workflow.event_manager.tasks.values()):
        if task.state == TaskState.WAITING:
            timer = _as_timer(task)
            if timer is not None:
                timers.append(timer)
    return timers


def current_data(workflow: BpmnWorkflow) -> dict[str, Any]:
    """The business data as it stands: from an open task, else from the finished workflow. Among open
    (ready or waiting) tasks the latest to change wins, but never one without data: a waiting join
    gateway holds none, and an escalation made before the last payment holds older data than the timer
    waiting for the next installment."""
    tasks = workflow.get_tasks(state=TaskState.READY | TaskState.WAITING)
    if tasks:
        return max(tasks, key=lambda t: (bool(t.data), t.last_state_change)).data
    if workflow.data:
        return workflow.data
    return workflow.last_task.data if workflow.last_task is not None else {}


def data_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The keys whose values differ, in key order, with old and new values: ``{key: {"old": .., "new": ..}}``."""
    diff = {}
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old != new:
            diff[key] = {"old": old, "new": new}
    return diff


def automated_changes(task: Task) -> dict[str, dict[str, Any]]:
    """What the script and decision-table tasks that ran after ``task`` on its own branch (until the process
    waited again) changed, as ``data_changes`` gives it. Each is compared with the data it received, so a
    parallel branch's input merged at a join is not credited to them."""
    ran = []
    stack = list(task.children)
    while stack:
        t = stack.pop()
        if t is None:  # an id whose task compaction already moved out of the live tree
            continue
        if (t.state == TaskState.COMPLETED and isinstance(t.task_spec, ScriptEngineTask | BusinessRuleTaskMixin)
                and t.parent is not None):
            ran.append(t)
        stack.extend(t.children)
    changed: dict[str, dict[str, Any]] = {}
    for t in sorted(ran, key=lambda t: t.last_state_change):
        for key, change in data_changes(t.parent.data, t.data).items():
            changed[key] = {"old": changed[key]["old"] if key in changed else change["old"], "new": change["new"]}
    return {k: changed[k] for k in sorted(changed) if changed[k]["old"] != changed[k]["new"]}


def to_datetime(value: Any, business_tz: str) -> datetime:
    """An ISO date/datetime string or object → aware UTC (a bare date means 00:00 in the business zone)."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime.combine(value, time(0), ZoneInfo(business_tz))
    elif isinstance(value, str):
        if len(value) == 10:
            dt = datetime.combine(date.fromisoformat(value), time(0), ZoneInfo(business_tz))
        else:
            dt = datetime.fromisoformat(value)
    else:
        raise ValueError(f"not a date or time: {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ZoneInfo(business_tz))
    return dt.astimezone(UTC)


def due_at(task: Task, due_in: str | None, due_date: str | None, now: datetime, business_tz: str) -> datetime | None:
    if due_date:
        value = task.workflow.script_engine.evaluate(task, due_date)
        return to_datetime(value, business_tz)
    if due_in:
        parsed = TimerEventDefinition.parse_iso_duration(due_in)
        return now + TimerEventDefinition.get_timedelta_from_start(parsed, start=now)
    return None
