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
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Instance

from ..clock import using_clock
from ..engine import runner
from ..engine.compaction import DroppedTask
from ..engine.package import ProcessPackage
from ..runtime import Runtime
from . import audit, notifications, records
from . import statements as sql
from .accounts import UserView
from .errors import ProcessError, RaceLost

MAX_STATE_CHARS = 5_000_000
MAX_AMOUNT = 10**16  # instances.amount is NUMERIC(18, 2)


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
    team: str | None = None

    @classmethod
    def of_task_row(cls, row) -> LiveInstance:
        """From a row of ``statements.TASK_AND_INSTANCE`` (a task and its instance)."""
        return cls(row.instance_id, row.version, row.process_key, row.deployment_id, row.stage, row.customer_name,
                   row.amount, row.team)


@dataclass(frozen=True)
class HandTo:
    """The first new task of one of ``user``'s roles is theirs instead of the actor's: a new deal for an existing
    customer goes to its owner (``services/customers.py``). Recorded as a reassignment by the actor with ``reason``,
    and the new holder is told."""

    user: UserView
    reason: str


@dataclass
class StepOutcome:
    version: int
    status: str
    new_task_ids: list[int] = field(default_factory=list)
    cancelled: list[tuple[int, str]] = field(default_factory=list)  # (task row id, spec id)
    fired_timers: list[tuple[str, str, datetime]] = field(default_factory=list)  # (spec id, kind, due)


def read_live_instance(s: Session, condition, lock: bool = False) -> LiveInstance | None:
    """The columns of one instance row that a step needs, without the stored state (``load_workflow``
    reads that only when the cache misses). ``lock``: ``FOR UPDATE SKIP LOCKED`` (PostgreSQL workers)."""
    q = select(Instance.id, Instance.version, Instance.process_key, Instance.deployment_id, Instance.stage,
               Instance.customer_name, Instance.amount, Instance.team).where(condition)
    if lock:
        q = q.with_for_update(skip_locked=True)
    row = s.execute(q).first()
    return LiveInstance(*row) if row is not None else None


def has_timers(workflow: BpmnWorkflow) -> bool:
    return bool(workflow.event_manager.tasks)


def persist_step(rt: Runtime, s: Session, inst: LiveInstance, package: ProcessPackage, workflow: BpmnWorkflow,
                 stepped: runner.StepResult, now: datetime, had_timers: bool,
                 actor: UserView | None = None, claim_first: bool = False,
                 hand_to: HandTo | None = None) -> StepOutcome:
    """``actor``: the user whose action caused the step (not notified of the tasks it made); ``None`` for
    the timer worker. ``claim_first``: the first new task of one of the actor's roles is theirs at once,
    recorded as their claim (a rep who starts a quote prepares it; nobody else is told of it). ``hand_to``
    (with an actor): that first task goes to someone else instead, whatever ``claim_first`` says."""
    with using_clock(rt.clock):  # due dates and timer values read the runtime's clock too
        return _persist_step(rt, s, inst, package, workflow, stepped, now, had_timers, actor, claim_first, hand_to)


def _persist_step(rt: Runtime, s: Session, inst: LiveInstance, package: ProcessPackage, workflow: BpmnWorkflow,
                  stepped: runner.StepResult, now: datetime, had_timers: bool,
                  actor: UserView | None = None, claim_first: bool = False,
                  hand_to: HandTo | None = None) -> StepOutcome:
    conn = s.connection()
    actor_id = actor.id if actor is not None else None
    dropped = stepped.dropped
    ready = {str(t.id): t for t in runner.ready_user_tasks(workflow)}
    open_rows = conn.execute(sql.OPEN_TASKS, {"instance_id": inst.id}).all()
    completed = workflow.is_completed()
    outcome = StepOutcome(version=inst.version + 1, status="completed" if completed else "running")
    stale = [(r.id, r.spec_id) for r in open_rows if r.task_uuid not in ready]
    if stale:
        conn.execute(sql.CANCEL_TASKS, {"ids": [i for i, _ in stale], "now": now})
        outcome.cancelled = stale
    known = {r.task_uuid for r in open_rows}
    new_rows = [_task_row(rt, inst, package, task_id, task, now) for task_id, task in ready.items()
                if task_id not in known]
    claimed = handed = None
    if hand_to is not None and actor is not None:
        handed = next((row for row in new_rows if row["role"] in hand_to.user.roles), None)
        if handed is not None:
            from .substitutes import stand_in

            substitute = stand_in(conn, hand_to.user.id, now)  # the owner is away: their substitute holds it
            handed["assignee_id"], handed["claimed_at"] = substitute or hand_to.user.id, now
            handed["on_behalf_of_id"] = hand_to.user.id if substitute is not None else None
    elif claim_first and actor is not None:
        claimed = next((row for row in new_rows if row["role"] in actor.roles), None)
        if claimed is not None:
            claimed["assignee_id"], claimed["claimed_at"] = actor.id, now
    returned = _return_to_previous_holders(conn, inst, package, new_rows, now) if new_rows and actor_id else []
    if new_rows:
        outcome.new_task_ids = list(conn.scalars(sql.INSERT_TASKS, new_rows))

    waiting = runner.waiting_timers(workflow)
    if had_timers or waiting:
        _sync_timers(conn, inst, workflow, dropped, waiting, now, outcome)
    if stepped.fired_unrecorded:
        conn.execute(sql.INSERT_TIMERS, [dict(instance_id=inst.id, task_uuid=t.task_id, spec_id=t.spec_id,
                                              kind=t.kind, due_at=t.due_at, status="fired", fired_at=now, attempts=0)
                                         for t in stepped.fired_unrecorded])
        outcome.fired_timers.extend((t.spec_id, t.kind, t.due_at) for t in stepped.fired_unrecorded)

    if dropped:
        conn.execute(sql.INSERT_STEPS, [dict(instance_id=inst.id, task_uuid=d.task_id, spec_id=d.spec_id,
                                             spec_type=d.spec_type, name=d.name, state=d.state,
                                             finished_at=d.finished_at) for d in dropped])

    try:
        state = rt.codec.dumps(workflow)
    except (TypeError, ValueError, RecursionError, OverflowError) as err:
        # the sandbox refuses unsaveable task data after every script and expression: this is for what
        # reaches the data another way, so that no path answers with a crash instead of a reason
        raise ProcessError(f"the contract's data cannot be saved ({_first_line(err)}); a script or decision in the "
                           "process left a value that is not text, a number, an amount, a date, a list or a dict"
                           ) from err
    if len(state) > MAX_STATE_CHARS:
        raise ProcessError(f"the contract's data has grown to {len(state)} characters (at most {MAX_STATE_CHARS}); "
                           "a script in the process probably copies data in a loop")
    data = runner.current_data(workflow)
    stage, end_event = inst.stage, None
    if completed:
        stage = "done"
        end_event = _final_end_event(conn, inst, package)
    else:
        stages = [row["stage"] for row in new_rows if row["stage"]]
        stages += [r.stage for r in open_rows if r.task_uuid in ready and r.stage]
        stage = stages[0] if stages else stage
    amount = _money(data.get("amount"))
    if amount is not None and abs(amount) >= MAX_AMOUNT:
        raise ProcessError(f"the contract amount {amount} is larger than Lvyue can store (below {MAX_AMOUNT:,}); "
                           "check the quantities and prices")
    result = conn.execute(sql.UPDATE_INSTANCE, {
        "instance_id": inst.id, "read_version": inst.version, "state": state, "new_version": outcome.version,
        "now": now, "status": outcome.status, "stage": stage,
        "customer_name": _text(data.get("customer_name")) or inst.customer_name,
        "amount": amount if amount is not None else inst.amount,
        "completed_at": now if completed else None, "end_event": end_event})
    if result.rowcount != 1:
        raise RaceLost("someone else changed this contract at the same moment; reload and try again")
    records.project(s, instance_id=inst.id, process_key=inst.process_key, team=inst.team, data=data, now=now,
                    actor_id=actor_id, completed=completed, stage=stage,
                    outcome=package.main.outcomes.get(end_event) if end_event else None)
    if outcome.new_task_ids:
        made = list(zip(outcome.new_task_ids, new_rows, strict=True))
        # rows that already have a holder (claimed on start, returned to their author) are nobody else's news
        unheld = [task_id for task_id, row in made if row["assignee_id"] is None]
        if unheld:
            escalated = _escalated_task_ids(outcome, new_rows, ready)
            notifications.on_new_tasks(conn, unheld, now, actor_id=actor_id, escalated=escalated,
                                       business_tz=rt.business_tz)
        back = {id(row) for row in returned}
        pairs = [(task_id, row) for task_id, row in made
                 if (id(row) in back and not row["on_behalf_of_id"]) or row is handed]
        if pairs:
            notifications.on_returned(conn, pairs, inst.id, inst.customer_name, actor_id, now,
                                      business_tz=rt.business_tz)
        for task_id, row in made:  # assignments made here are on the record, like any other
            if row is claimed:
                audit.record(s, now, "claim", actor_id=actor.id, actor=actor.username, role=row["role"],
                             instance_id=inst.id, task_id=task_id, spec_id=row["spec_id"])
            elif row is handed:
                audit.record(s, now, "reassign", actor_id=actor.id, actor=actor.username, role=row["role"],
                             instance_id=inst.id, task_id=task_id, spec_id=row["spec_id"],
                             data={"from": None, "to": hand_to.user.username, "reason": hand_to.reason})
            elif id(row) in back:
                audit.record(s, now, "return", role=row["role"], instance_id=inst.id, task_id=task_id,
                             spec_id=row["spec_id"], data={"assignee_id": row["assignee_id"]})
        held_for = [(task_id, row) for task_id, row in made if row["on_behalf_of_id"]]
        if held_for:  # returned to an author who is away: their substitute holds it (services/substitutes.py)
            from .substitutes import record_stand_ins

            record_stand_ins(s, rt, now, inst.id, held_for)
    inst.version = outcome.version
    return outcome


def _return_to_previous_holders(conn, inst: LiveInstance, package: ProcessPackage, new_rows: list[dict],
                                now: datetime) -> list[dict]:
    """A task made again for a spec someone already completed on this contract (a send-back) goes straight
    to that person if they still hold the role, not back into the queue. Not for four-eyes tasks."""
    candidates = {row["spec_id"]: row for row in new_rows
                  if row["assignee_id"] is None and row["spec_id"] not in package.four_eyes_specs}
    if not candidates:
        return []
    from .substitutes import stand_in  # imported here: substitutes builds on tasks, which builds on this module

    returned = []
    for spec_id, row in candidates.items():
        user_id = conn.scalar(sql.PREVIOUS_HOLDER, {"instance_id": inst.id, "spec_id": spec_id})
        if user_id is not None:
            substitute = stand_in(conn, user_id, now)  # the author is away: their substitute holds it for them
            row["assignee_id"], row["claimed_at"] = substitute or user_id, now
            row["on_behalf_of_id"] = user_id if substitute is not None else None
            returned.append(row)
    return returned


def _escalated_task_ids(outcome: StepOutcome, new_rows: list[dict], ready: dict) -> list[int]:
    """The new tasks that an escalation (a boundary timer) fired in this step led to: those reached
    from the boundary event without passing another user task. A plain timer that fired in the same
    step (due and overdue at once) makes ordinary tasks, which stay ordinary."""
    boundaries = {spec_id for spec_id, kind, _ in outcome.fired_timers if kind == "escalation"}
    if not boundaries:
        return []
    return [task_id for task_id, row in zip(outcome.new_task_ids, new_rows, strict=True)
            if _follows_boundary(ready[row["task_uuid"]].task_spec, boundaries)]


def _follows_boundary(spec, boundaries: set[str]) -> bool:
    seen: set[int] = set()
    stack = list(spec.inputs)
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, BoundaryEvent) and (current.bpmn_id or current.name) in boundaries:
            return True
        if getattr(current, "manual", False):  # another user task: what follows it is its own step's work
            continue
        stack.extend(current.inputs)
    return False


def _final_end_event(conn, inst: LiveInstance, package: ProcessPackage) -> str | None:
    """The end event that tells how the instance ended: one the process marks with an ``outcome``
    property if it reached one (a late escalation branch must not label a fulfilled contract), else the
    last end event reached. The step rows of this step are already written."""
    reached = list(conn.scalars(sql.END_EVENTS_REACHED, {"instance_id": inst.id}))
    outcomes = package.processes[inst.process_key].outcomes
    marked = [spec_id for spec_id in reached if spec_id in outcomes]
    return (marked or reached or [None])[-1]


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
                created_at=now, due_at=due, assignee_id=None, claimed_at=None, team=inst.team, on_behalf_of_id=None)


def _sync_timers(conn, inst: LiveInstance, workflow: BpmnWorkflow, dropped: list[DroppedTask],
                 waiting: list[runner.WaitingTimer], now: datetime, outcome: StepOutcome) -> None:
    waiting_ids = {t.task_id for t in waiting}
    rows = conn.execute(sql.WAITING_TIMERS, {"instance_id": inst.id}).all()
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
        conn.execute(sql.SET_TIMERS_FIRED, {"ids": fired, "now": now})
    if cancelled:
        conn.execute(sql.SET_TIMERS_CANCELLED, {"ids": cancelled})
    have = {row.task_uuid for row in rows}
    new = [dict(instance_id=inst.id, task_uuid=t.task_id, spec_id=t.spec_id, kind=t.kind, due_at=t.due_at,
                status="waiting", attempts=0) for t in waiting if t.task_id not in have]
    if new:
        conn.execute(sql.INSERT_TIMERS, new)
        for row in new:
            workflow.tasks[UUID(row["task_uuid"])].internal_data[runner.TIMER_ROW_FLAG] = True


def load_workflow(rt: Runtime, inst: LiveInstance, package: ProcessPackage, s: Session) -> BpmnWorkflow:
    """The live workflow of ``inst``: the cached object if it is of this version, else deserialized."""
    from .deployments import script_engine_for

    workflow = rt.take_workflow(inst.id, inst.version)
    if workflow is None:
        state = s.connection().execute(sql.INSTANCE_STATE, {"instance_id": inst.id}).scalar_one()
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


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0][:200] if text else "") or type(err).__name__


def _text(value) -> str | None:
    return value[:200] if isinstance(value, str) and value else None


def _money(value) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return None
