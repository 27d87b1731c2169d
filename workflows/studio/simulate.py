"""Runs a process package in memory, without a database: start data in, form inputs for each user task from a
source, out comes the path (user tasks completed, in order), the end event reached, or where it would wait.

A user task is completed exactly as ``services.tasks.complete`` does it: the input is checked and cleaned by
``forms.validate_submission`` against the task's form, applied by ``runner.run_user_task`` (top-level values
replaced) and the engine stepped by ``runner.step`` (which compacts). Timers are never fired on their own: a
process waiting only for a timer is reported as waiting there, unless the input source asks for that timer
(process tests name it as a step; replay fires the timers the history shows fired). Steps are bounded, so a
loop that never ends stops with a clear error.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

from .. import config
from ..clock import FrozenClock, install_clock_hook, using_clock
from ..engine import runner, sandbox
from ..engine.package import ProcessPackage
from ..engine.sandbox import SandboxViolation
from ..forms import FormInvalid, validate_submission

MAX_STEPS = 500
DEFAULT_START = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Shanghai: tests do not depend on today


@dataclass(frozen=True)
class Ready:
    """A user task the process waits for."""

    spec_id: str
    name: str
    form: str


@dataclass(frozen=True)
class Timer:
    """A timer event the process waits for."""

    spec_id: str
    name: str
    due_at: datetime


@dataclass(frozen=True)
class Choice:
    """What the input source does next: complete the user task ``spec_id`` with ``data``, or fire the timer
    ``spec_id``. ``at``: the simulated clock moves there first (never backwards)."""

    kind: str  # "task" | "timer"
    spec_id: str
    data: dict[str, Any] | None = None
    at: datetime | None = None


class Inputs(Protocol):
    def choose(self, ready: list[Ready], timers: list[Timer]) -> Choice | None:
        """The next action, or None to stop here (the process is then reported as waiting)."""
        ...


@dataclass
class SimResult:
    path: list[str] = field(default_factory=list)  # user task spec ids completed, in order
    end_event: str | None = None  # the end event that tells how it ended (None while it waits)
    waiting_at: list[str] = field(default_factory=list)  # ready user tasks nothing was given for
    error: str | None = None
    steps: int = 0
    timers_waiting: list[str] = field(default_factory=list)  # timer events it waits for (never fired on their own)
    fired: list[str] = field(default_factory=list)  # timers fired because the input source asked
    data: dict[str, Any] = field(default_factory=dict)  # the business data where it stopped

    @property
    def completed(self) -> bool:
        return self.end_event is not None and not self.waiting_at and self.error is None


def default_script_engine(clock: FrozenClock):
    """The sandboxed engine the app runs with, reading the simulated clock."""
    return sandbox.make_script_engine(clock.now, **config.script_limits())


Clean = Callable[[ProcessPackage, Ready, dict[str, Any]], dict[str, Any]]


def strict(package: ProcessPackage, task: Ready, data: dict[str, Any]) -> dict[str, Any]:
    """What a completion does to form input: checked against the task's form and cleaned (money as Decimal);
    ``FormInvalid`` if it does not fit."""
    return validate_submission(package.forms[task.form], data, package.validator(task.form))


def strict_start(package: ProcessPackage, data: dict[str, Any]) -> dict[str, Any]:
    """Start data as a start does it: through the start form, if the process has one; ``FormInvalid`` if it does
    not fit."""
    form = package.main.start_form
    if form and form in package.forms:
        return validate_submission(package.forms[form], data, package.validator(form))
    return dict(data)


def simulate(package: ProcessPackage, start: dict[str, Any], inputs: Inputs, *, clean: Clean = strict,
             clock: FrozenClock | None = None, script_engine: Any = None, max_steps: int = MAX_STEPS) -> SimResult:
    """Run ``package`` from ``start`` data, asking ``inputs`` what to do at every wait.

    ``clean`` turns each input into task data (by default exactly as a completion does; an input that does not
    fit its form stops the run with an error naming the fields). ``clock`` is moved by the choices' ``at`` (the
    script engine should read it: by default one is made that does)."""
    install_clock_hook()  # timers read the simulated clock
    clock = clock or FrozenClock(DEFAULT_START)
    engine = script_engine if script_engine is not None else default_script_engine(clock)
    result = SimResult()
    ended: list[str] = []
    try:
        with using_clock(clock):
            workflow = runner.new_workflow(package, engine, dict(start))
            _note_ends(runner.step(workflow), ended)
            while True:
                ready = [(t, _ready(package, t)) for t in runner.ready_user_tasks(workflow)]
                timers = _timers(package, workflow)
                if not ready and not timers:
                    break
                choice = inputs.choose([r for _, r in ready], timers)
                if choice is None:
                    break
                if result.steps >= max_steps:
                    result.error = (f"the process did not finish within {max_steps} steps; "
                                    "a loop in it may never end")
                    break
                result.steps += 1
                if choice.at is not None and choice.at > clock.now():
                    clock.set(choice.at)
                if choice.kind == "timer":
                    timer = next((t for t in timers if t.spec_id == choice.spec_id), None)
                    if timer is None:
                        result.error = f"the process does not wait for the timer '{choice.spec_id}'"
                        break
                    if timer.due_at >= clock.now():  # a timer fires once its time has passed
                        clock.set(timer.due_at + timedelta(seconds=1))
                    runner.fire_timers(workflow)
                    _note_ends(runner.step(workflow), ended)
                    result.fired.append(choice.spec_id)
                    continue
                task, info = next(((t, r) for t, r in ready if r.spec_id == choice.spec_id), (None, None))
                if task is None or info is None:
                    result.error = f"the process does not wait for '{choice.spec_id}'"
                    break
                try:
                    data = clean(package, info, choice.data or {})
                except FormInvalid as err:
                    fields = "; ".join(f"{k or 'form'}: {v}" for k, v in err.errors.items())
                    result.error = f"the input for '{info.name}' does not fit its form ({fields})"
                    break
                done, _ = runner.run_user_task(workflow, str(task.id), copy.deepcopy(data))
                _note_ends(runner.step(workflow, origin=done), ended)
                result.path.append(info.spec_id)
            result.waiting_at = [r.spec_id for _, r in ((t, _ready(package, t))
                                                        for t in runner.ready_user_tasks(workflow))]
            result.timers_waiting = [t.spec_id for t in _timers(package, workflow)]
            if workflow.is_completed():
                _note_live_ends(workflow, ended)
                outcomes = package.main.outcomes
                marked = [e for e in ended if e in outcomes]
                result.end_event = (marked or ended or [None])[-1]
            result.data = _plain(runner.current_data(workflow))
    except (SpiffWorkflowException, SandboxViolation) as err:
        from ..services.progress import describe_engine_error

        result.error = describe_engine_error(err)
    except runner.NotReady as err:
        result.error = f"task {err} is not ready"
    return result


def _ready(package: ProcessPackage, task: Task) -> Ready:
    spec = task.task_spec
    try:
        info = package.user_task(spec._wf_spec.name, spec.bpmn_id)
    except KeyError:
        return Ready(spec.bpmn_id, getattr(spec, "bpmn_name", None) or spec.bpmn_id, "")
    return Ready(info.spec_id, info.name, info.form)


def _timers(package: ProcessPackage, workflow) -> list[Timer]:
    names = package.node_names
    return [Timer(t.spec_id, names.get(t.spec_id, t.spec_id), t.due_at) for t in runner.waiting_timers(workflow)]


def _note_ends(stepped: runner.StepResult, ended: list[str]) -> None:
    for d in stepped.dropped:
        if d.spec_type.endswith("EndEvent") and d.state == "COMPLETED":
            ended.append(d.spec_id)


def _note_live_ends(workflow, ended: list[str]) -> None:
    for task in workflow.get_tasks(state=TaskState.COMPLETED):
        spec = task.task_spec
        if type(spec).__name__.endswith("EndEvent") and spec.bpmn_id and spec.bpmn_id not in ended:
            ended.append(spec.bpmn_id)


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    from ..engine.codec import StateCodec

    try:
        return StateCodec().to_json_value(dict(data))
    except (TypeError, ValueError):
        return {}


# --- two input sources --------------------------------------------------------------------------------------

class Steps:
    """A process test's steps, consumed strictly in order: ``{"task": id, "data": {...}}`` or ``{"timer": id}``.
    When the next step is not what the process waits for, ``diverged`` says what was expected and where the
    process is instead."""

    def __init__(self, steps: list[dict[str, Any]]) -> None:
        self.steps = steps
        self.index = 0
        self.diverged: tuple[dict[str, Any], list[Ready], list[Timer]] | None = None

    def choose(self, ready: list[Ready], timers: list[Timer]) -> Choice | None:
        if self.index >= len(self.steps):
            return None
        step = self.steps[self.index]
        if "timer" in step:
            if any(t.spec_id == step["timer"] for t in timers):
                self.index += 1
                return Choice("timer", step["timer"])
        elif any(r.spec_id == step.get("task") for r in ready):
            self.index += 1
            return Choice("task", step["task"], step.get("data") or {})
        self.diverged = (step, ready, timers)
        return None

    @property
    def left(self) -> list[dict[str, Any]]:
        return self.steps[self.index:]


class Recorded:
    """Recorded inputs (replay): a queue per user task and per timer, each entry with its place in the original
    history. At each wait the action that happened earliest among those the process can take now is taken, so
    the original order is kept where the new process agrees with it; a ready task with nothing left waits."""

    def __init__(self, events: list[tuple[str, str, dict[str, Any] | None, datetime | None]]) -> None:
        """``events``: (kind "task"|"timer", spec id, data, when), in the order they happened."""
        self.queues: dict[tuple[str, str], list[tuple[int, dict[str, Any] | None, datetime | None]]] = {}
        for seq, (kind, spec_id, data, at) in enumerate(events):
            self.queues.setdefault((kind, spec_id), []).append((seq, data, at))

    def choose(self, ready: list[Ready], timers: list[Timer]) -> Choice | None:
        best: tuple[int, Choice] | None = None
        for kind, spec_id in [("task", r.spec_id) for r in ready] + [("timer", t.spec_id) for t in timers]:
            queue = self.queues.get((kind, spec_id))
            if queue and (best is None or queue[0][0] < best[0]):
                seq, data, at = queue[0]
                best = (seq, Choice(kind, spec_id, data, at))
        if best is None:
            return None
        self.queues[(best[1].kind, best[1].spec_id)].pop(0)
        return best[1]
