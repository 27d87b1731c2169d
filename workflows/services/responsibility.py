"""The responsibility table (职责分工表) of one contract: every user task done, open and still to come, with
who did it, holds it or is expected to take it, when it opened, when it is due and how it stands.

Read from rows, never from the workflow state: the instance (by its unique business key), its task rows
(``ix_tasks_instance``) and its waiting timers (``ix_timers_instance``), plus the deployed package's parsed
diagram (``deployments.package_for``, cached per deployment).

- **done**: completed task rows, oldest completion first, with the completer, and on time when
  ``completed_at <= due_at`` (a task without a due time is on time). Cancelled rows (withdrawn, returned,
  ended by the process) were neither done nor are held: they are left out and only counted.
- **open**: open task rows, with the holder (or none: the role's queue) and whom a substitute holds it for.
- **to come**: the user tasks the diagram can still reach on this pass, walking forward from the open tasks and
  the waiting timers, not round the flows that close a loop (a send-back, the next installment: the same
  loop edges as ``engine/rewind.py``). Each is listed once, in process order. A task is *may be skipped* when
  every way to it passes a conditional flow: a flow with a condition out of an exclusive or inclusive gateway
  (the default flow counts as the expected way), a boundary event (it fires only if the task it is attached to
  takes too long) or an event-based gateway. Completed instances have neither open nor to-come rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent, EventBasedGateway
from SpiffWorkflow.bpmn.specs.mixins.exclusive_gateway import ExclusiveGateway
from SpiffWorkflow.bpmn.specs.mixins.inclusive_gateway import InclusiveGateway
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import SubWorkflowTask
from sqlalchemy import select
from sqlalchemy.orm import aliased, defer

from models import Instance, TaskRow, Timer, User, UserRole

from ..engine.package import ProcessPackage
from ..engine.rewind import _loop_edges
from ..runtime import Runtime
from .accounts import TEAM_SCOPED_ROLES, UserView
from .contract_view import may_view
from .deployments import package_for
from .errors import NotFound, PermissionDenied

# the statuses a row can have, in the words of the table's badges
DONE_ON_TIME, DONE_LATE, OPEN, OVERDUE, TO_COME, MAY_SKIP = (
    "done_on_time", "done_late", "open", "overdue", "to_come", "may_skip")
# the units of an ISO 8601 duration, as ``TimerEventDefinition.parse_iso_duration`` names them
_UNITS = ("years", "months", "weeks", "days", "hours", "minutes", "seconds")


@dataclass(frozen=True)
class DueRule:
    """When a task that has not opened yet will be due: ``within`` a duration of its opening (``dueIn``), as
    (unit, count) pairs such as (("days", 2),), or ``by_date`` (``dueDate``: a date the process sets)."""

    kind: str  # within | by_date
    parts: tuple[tuple[str, int], ...] = ()
    source: str = ""  # the property's text: P2D, date_start(sign_by)


@dataclass(frozen=True)
class ResponsibilityRow:
    section: str  # done | open | to_come
    status: str  # done_on_time | done_late | open | overdue | to_come | may_skip
    spec_id: str
    name: str  # the BPMN name, "English / 中文"
    role: str
    task_id: int | None = None
    person: str | None = None  # done: who completed it; open: who holds it; to come: the contract's rep
    person_username: str | None = None
    on_behalf_of: str | None = None  # the away user a substitute did or holds the task for
    team: str | None = None  # a team-scoped role's team (whose supervisors, managers or reps do it)
    opened_at: datetime | None = None
    due_at: datetime | None = None
    completed_at: datetime | None = None
    due_rule: DueRule | None = None  # to come only

    @property
    def unclaimed(self) -> bool:
        return self.section == "open" and self.person is None


@dataclass
class ResponsibilityTable:
    business_key: str
    process_key: str
    process_name: str
    status: str  # the instance's: running | completed | error
    stage: str | None
    customer_name: str | None
    amount: Decimal | None
    team: str | None
    started_by: str | None
    started_at: datetime
    end_event: str | None
    now: datetime
    done: list[ResponsibilityRow] = field(default_factory=list)
    open: list[ResponsibilityRow] = field(default_factory=list)
    to_come: list[ResponsibilityRow] = field(default_factory=list)
    cancelled: int = 0  # cancelled task rows, not shown
    task_names: dict[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> list[ResponsibilityRow]:
        return [*self.done, *self.open, *self.to_come]

    def holders(self) -> dict[str, str | None]:
        """Who holds each open task, by step id (None: unclaimed): the manager's question in one look."""
        return {r.spec_id: r.person for r in self.open}


def responsibility_table(rt: Runtime, key: str, user: UserView) -> ResponsibilityTable:
    """The responsibility table of the contract ``key``, for those who may see its page (same refusals)."""
    now = rt.clock.now()
    starter = aliased(User)
    assignee, completer, behalf = aliased(User), aliased(User), aliased(User)
    with rt.read() as s:
        found = s.execute(select(Instance, starter.display_name)
                          .outerjoin(starter, starter.id == Instance.started_by_id)
                          .where(Instance.business_key == key).options(defer(Instance.state))).first()
        if found is None:
            raise NotFound(f"no contract '{key}'")
        inst, starter_name = found
        if not may_view(rt, s, user, inst):
            raise PermissionDenied(f"{user.username} has no part in {key}")
        tasks = s.execute(
            select(TaskRow.id, TaskRow.spec_id, TaskRow.name, TaskRow.role, TaskRow.status, TaskRow.created_at,
                   TaskRow.due_at, TaskRow.completed_at, TaskRow.team,
                   assignee.display_name.label("assignee_name"), assignee.username.label("assignee"),
                   completer.display_name.label("completer_name"), completer.username.label("completer"),
                   behalf.display_name.label("behalf_name"))
            .outerjoin(assignee, assignee.id == TaskRow.assignee_id)
            .outerjoin(completer, completer.id == TaskRow.completed_by_id)
            .outerjoin(behalf, behalf.id == TaskRow.on_behalf_of_id)
            .where(TaskRow.instance_id == inst.id, TaskRow.status.in_(("open", "completed", "cancelled")))
            .order_by(TaskRow.id)).all()
        finished = inst.status == "completed"
        timers = [] if finished else s.execute(
            select(Timer.spec_id, Timer.kind).where(Timer.instance_id == inst.id, Timer.status == "waiting")
            .order_by(Timer.id)).all()
        rep = None if finished else _contract_rep(s, inst)
        table = ResponsibilityTable(inst.business_key, inst.process_key, "", inst.status, inst.stage,
                                    inst.customer_name, inst.amount, inst.team, starter_name, inst.started_at,
                                    inst.end_event, now)
        deployment_id, team = inst.deployment_id, inst.team
    package = package_for(rt, deployment_id)
    table.process_name = package.main.name
    table.task_names = package.node_names

    completed = sorted((t for t in tasks if t.status == "completed"),
                       key=lambda t: (t.completed_at or t.created_at, t.id))
    for t in completed:
        late = t.due_at is not None and t.completed_at is not None and t.completed_at > t.due_at
        table.done.append(ResponsibilityRow(
            "done", DONE_LATE if late else DONE_ON_TIME, t.spec_id, t.name, t.role, t.id,
            person=t.completer_name, person_username=t.completer, on_behalf_of=t.behalf_name,
            team=_team_of(t.role, t.team), opened_at=t.created_at, due_at=t.due_at, completed_at=t.completed_at))
    table.cancelled = sum(1 for t in tasks if t.status == "cancelled")
    if finished:
        return table

    open_rows = sorted((t for t in tasks if t.status == "open"), key=lambda t: (t.created_at, t.id))
    for t in open_rows:
        overdue = t.due_at is not None and t.due_at < now
        table.open.append(ResponsibilityRow(
            "open", OVERDUE if overdue else OPEN, t.spec_id, t.name, t.role, t.id,
            person=t.assignee_name, person_username=t.assignee, on_behalf_of=t.behalf_name,
            team=_team_of(t.role, t.team), opened_at=t.created_at, due_at=t.due_at))

    open_specs = {t.spec_id for t in open_rows}
    for spec, certain in to_come(package, sorted(open_specs), [(t.spec_id, t.kind) for t in timers]):
        info = package.user_task(spec._wf_spec.name, spec.bpmn_id)
        if info.spec_id in open_specs:
            continue
        owner, owner_username = (rep if rep is not None and info.role == "sales_rep" else (None, None))
        table.to_come.append(ResponsibilityRow(
            "to_come", TO_COME if certain else MAY_SKIP, info.spec_id, info.name, info.role,
            person=owner, person_username=owner_username, team=_team_of(info.role, team),
            due_rule=_due_rule(info.due_in, info.due_date)))
    return table


def _team_of(role: str, team: str | None) -> str | None:
    return team if role in TEAM_SCOPED_ROLES else None


def _contract_rep(s, inst: Instance) -> tuple[str, str] | None:
    """The contract's sales rep: who started it, if they are a rep; for a complaint about a contract (started by
    after-sales), the rep who started that contract. (display name, username), or None."""
    candidates = [inst.started_by_id]
    if inst.related_key:
        candidates.append(s.scalar(select(Instance.started_by_id).where(Instance.business_key == inst.related_key)))
    candidates = [c for c in candidates if c is not None]
    if not candidates:
        return None
    reps = {r.id: (r.display_name, r.username) for r in s.execute(
        select(User.id, User.display_name, User.username).join(UserRole, UserRole.user_id == User.id)
        .where(User.id.in_(candidates), UserRole.role_code == "sales_rep"))}
    return next((reps[c] for c in candidates if c in reps), None)


def _due_rule(due_in: str | None, due_date: str | None) -> DueRule | None:
    if due_date:
        return DueRule("by_date", source=due_date)
    if due_in:
        try:
            parsed = TimerEventDefinition.parse_iso_duration(due_in)
        except Exception:  # noqa: BLE001 - the package check refuses bad durations; an old deployment may not
            return DueRule("within", source=due_in)
        parts = [(unit, int(parsed.get(unit) or 0)) for unit in _UNITS]
        weeks = dict(parts).get("weeks", 0)
        parts = [(u, n + 7 * weeks if u == "days" else n) for u, n in parts if u != "weeks"]  # a week is 7 days
        return DueRule("within", tuple((u, n) for u, n in parts if n), due_in)
    return None


# --- the walk over the diagram ------------------------------------------------------------------------------

def _specs_by_id(package: ProcessPackage) -> dict[str, Any]:
    """Every task spec of the package's processes by its BPMN id (main process first), built once per package."""
    found = package.__dict__.get("_lvyue_specs_by_id")
    if found is None:
        found = {}
        for process in [package.spec, *package.subprocess_specs.values()]:
            for spec in process.task_specs.values():
                bpmn_id = getattr(spec, "bpmn_id", None)
                if bpmn_id:
                    found.setdefault(bpmn_id, spec)
        package.__dict__["_lvyue_specs_by_id"] = found
    return found


def _process_order(process) -> dict[str, int]:
    """Each spec's place in process order: a topological order of the diagram without the flows that close a
    loop (reverse post-order of a depth-first walk that takes the first flow first). Cached per parsed process."""
    cached = process.__dict__.get("_lvyue_process_order")
    if cached is not None:
        return cached
    start = process.start
    loops = _loop_edges(start)
    post: list[str] = []
    seen: set[str] = set()
    roots = [start] + [s for s in process.task_specs.values() if not s.inputs and s is not start]
    for root in roots:
        if root.name in seen:
            continue
        seen.add(root.name)
        stack = [(root, iter(reversed(root.outputs)))]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                post.append(node.name)
            elif child.name not in seen and (node.name, child.name) not in loops:
                seen.add(child.name)
                stack.append((child, iter(reversed(child.outputs))))
    order = {name: i for i, name in enumerate(reversed(post))}
    process.__dict__["_lvyue_process_order"] = order
    return order


def _conditional(spec, output) -> bool:
    """Does the flow from ``spec`` to ``output`` happen only on a condition?"""
    if isinstance(output, BoundaryEvent) or isinstance(spec, EventBasedGateway):
        return True
    if isinstance(spec, ExclusiveGateway | InclusiveGateway):
        return any(cond is not None and name == output.name for cond, name in spec.cond_task_specs)
    return False


def to_come(package: ProcessPackage, open_specs: list[str], timers: list[tuple[str, str]]) -> list[tuple[Any, bool]]:
    """The user task specs ahead of the open tasks ``open_specs`` and the waiting timers ``timers`` ((BPMN id,
    kind), kind ``escalation`` for a boundary timer), each once, in process order, with whether it is certain to
    come (False: may be skipped). The open tasks themselves are starting points, not results."""
    by_id = _specs_by_id(package)
    best: dict[tuple[str, str], bool] = {}  # (process, spec name) -> certain
    specs: dict[tuple[str, str], Any] = {}
    stack: list[tuple[Any, bool]] = []
    for spec_id in open_specs:
        spec = by_id.get(spec_id)
        if spec is not None:
            stack.extend(_outputs(spec, True))
    for spec_id, kind in timers:
        spec = by_id.get(spec_id)
        if spec is not None:
            certain = kind != "escalation" and not isinstance(spec, BoundaryEvent)
            stack.extend(_outputs(spec, certain))
    while stack:
        spec, certain = stack.pop()
        key = (spec._wf_spec.name, spec.name)
        if key in best and (best[key] or not certain):
            continue  # already reached at least as surely
        best[key], specs[key] = certain, spec
        stack.extend(_outputs(spec, certain))
        if isinstance(spec, SubWorkflowTask) and spec.spec in package.subprocess_specs:
            stack.append((package.subprocess_specs[spec.spec].start, certain))
    found = [(specs[k], c) for k, c in best.items()
             if getattr(specs[k], "manual", False) and getattr(specs[k], "bpmn_id", None)]
    main = package.spec.name

    def place(item: tuple[Any, bool]) -> tuple[int, int, str]:
        spec = item[0]
        return (0 if spec._wf_spec.name == main else 1, _process_order(spec._wf_spec).get(spec.name, 1 << 30),
                spec.name)

    known = {(p.process_id, t) for p in package.processes.values() for t in p.user_tasks}
    return [item for item in sorted(found, key=place) if (item[0]._wf_spec.name, item[0].bpmn_id) in known]


def _outputs(spec, certain: bool) -> list[tuple[Any, bool]]:
    """The flows out of ``spec`` that lead forward on this pass, each with whether it is still certain."""
    loops = _loop_edges(spec)
    return [(o, certain and not _conditional(spec, o)) for o in spec.outputs if (spec.name, o.name) not in loops]
