"""Why a task is where it is ("Why is this mine? / 为什么分给我？"): its lane and role, the team it belongs
to and why this viewer sees it, who claimed, released, reassigned or otherwise handed it on, and — for a
task reached through a decision table — the gateway conditions that led to it and the table row that
decided them, re-evaluated with SpiffWorkflow's DMN engine on the values the process had.

The conditions and decisions are found generically from the BPMN: walking back from the task through the
gateways right before it (up to a merge) gives the conditions of the flows taken; the business-rule tasks
upstream whose decision outputs those conditions read are the decisions. Their inputs come from the live
engine task while the task is open (the data it received when it became ready, exactly what the gateway
read); once the task is finished its engine task is gone, and the values are rebuilt from the contract's
audit events up to the task's creation (the start data, then every completion's changes and effects).
"""

from __future__ import annotations

import ast
import contextlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from lxml import etree
from SpiffWorkflow.dmn.specs.business_rule_task_mixin import BusinessRuleTaskMixin
from sqlalchemy import select

from models import AuditEvent, Instance, TaskRow, User

from ..engine.package import BPMN_NS, DMN_NAMESPACES, SPIFF_NS, ProcessPackage
from ..runtime import Runtime
from .accounts import TEAM_SCOPED_ROLES, UserView, in_team, supervises
from .deployments import package_for, script_engine_for
from .tasks import get_task

# audit actions that hand a task to someone or take it away; other helpers' actions (substitutes, added
# signers, withdraw/return) are shown generically: actor, time and the data's from/to/on_behalf_of/reason
ASSIGNMENT_ACTIONS = frozenset({"claim", "unclaim", "reassign", "return", "substitute", "substitute_end",
                                "countersign", "withdraw", "delegate"})
_NOT_ASSIGNMENTS = frozenset({"complete", "cancel", "remind", "four_eyes_override", "viewed", "timer",
                              "escalation", "timer_error", "withdraw", "return_to_step", "amend"})  # moves name steps
_GATEWAYS = frozenset({"exclusiveGateway", "inclusiveGateway", "parallelGateway", "eventBasedGateway",
                       "complexGateway"})


@dataclass(frozen=True)
class Assignment:
    """One change of hands of the task, from its audit events."""
    at: datetime
    action: str
    actor: str
    from_user: str | None = None
    to_user: str | None = None
    on_behalf_of: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Condition:
    """The condition of a flow taken into the task (or towards it through gateways)."""
    gateway_id: str
    gateway_name: str | None
    flow_name: str | None
    expression: str | None  # None for a default flow: taken because none of ``others`` held
    others: tuple[str, ...] = ()


@dataclass(frozen=True)
class InputValue:
    label: str
    expression: str | None
    value: Any
    entry: str | None  # the matched row's cell for this input; None for '-' (any value)


@dataclass(frozen=True)
class OutputValue:
    name: str
    label: str
    value: Any  # what the matched row gives
    recorded: Any  # what the process holds
    read: bool  # a condition on the way to the task reads it


@dataclass(frozen=True)
class Decision:
    """A decision table that routed the task, with the row that matched and the values it matched on."""
    task_id: str  # the business-rule task
    task_name: str | None
    decision_id: str
    decision_name: str | None
    hit_policy: str
    source: str  # "engine": the open task's data; "history": rebuilt from the audit events
    row: int | None = None  # 1-based, as the rows are numbered in the table
    rule_id: str | None = None
    description: str | None = None
    inputs: tuple[InputValue, ...] = ()
    outputs: tuple[OutputValue, ...] = ()
    rows_matched: tuple[int, ...] = ()  # every matching row (hit policy FIRST takes the first)
    agrees: bool = True  # the row's outputs are what the process recorded
    error: str | None = None  # the table could not be evaluated again


@dataclass(frozen=True)
class Routing:
    task_id: int
    spec_id: str
    task_name: str
    status: str
    lane: str | None
    role: str
    team: str | None
    team_scoped: bool  # the role works only on its own team's contracts
    holder: str | None
    holder_name: str | None
    claimed_at: datetime | None
    reasons: tuple[str, ...]  # why this viewer sees it: holder, role, supervisor, compliance, admin, completed
    assignments: tuple[Assignment, ...]
    conditions: tuple[Condition, ...]
    decisions: tuple[Decision, ...]


def explain(rt: Runtime, task_id: int, user: UserView) -> Routing:
    """The routing of one task as ``user`` may see it: refused exactly as the task page is (the same check)."""
    from .task_detail import require_visible

    require_visible(rt, task_id, user)
    item = get_task(rt, task_id)
    with rt.read() as s:
        row = s.execute(select(TaskRow.team, TaskRow.lane, TaskRow.created_at, TaskRow.completed_by_id,
                               TaskRow.task_uuid, Instance.deployment_id)
                        .join(Instance, Instance.id == TaskRow.instance_id).where(TaskRow.id == task_id)).one()
        events = s.execute(select(AuditEvent.id, AuditEvent.at, AuditEvent.action, AuditEvent.actor,
                                  AuditEvent.data)
                           .where(AuditEvent.instance_id == item.instance_id, AuditEvent.task_id == task_id)
                           .order_by(AuditEvent.id)).all()
        assignments = _assignments(s, events)
    package = package_for(rt, row.deployment_id)
    info = package.user_task(item.process_key, item.spec_id)
    graph = _graph(package, info.process_id)
    conditions = _conditions_into(graph, item.spec_id)
    decisions: tuple[Decision, ...] = ()
    wanted = _decisions_for(graph, package, item.spec_id, conditions)
    if wanted:
        if item.status == "open":
            data, source = _engine_data(rt, item.instance_id, row.task_uuid, package), "engine"
        else:
            data, source = None, "history"
        if data is None:
            ended = [e.id for e in events if e.action in ("complete", "cancel")]
            data, source = _history_data(rt, item.instance_id, row.created_at, ended[0] if ended else None), "history"
        engine = script_engine_for(rt)
        decisions = tuple(_evaluate(spec, graph, read, data, source, engine) for spec, read in wanted)
    reasons = _reasons(user, item, row.team, row.completed_by_id)
    return Routing(item.id, item.spec_id, item.name, item.status, info.lane or row.lane, item.role, row.team,
                   item.role in TEAM_SCOPED_ROLES, item.assignee, item.assignee_name, item.claimed_at, reasons,
                   assignments, conditions, decisions)


def _reasons(user: UserView, item, team: str | None, completed_by: int | None) -> tuple[str, ...]:
    reasons = []
    if item.assignee == user.username:
        reasons.append("holder")
    if item.role in user.roles and in_team(user.team, item.role, team):
        reasons.append("role")
    if supervises(user, team):
        reasons.append("supervisor")
    reasons += [r for r in ("compliance", "admin") if r in user.roles]
    if completed_by == user.id:
        reasons.append("completed")
    return tuple(reasons)


# --- assignment history --------------------------------------------------------------------------------

def _names(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or None
    return str(value)


def _assignments(s, events) -> tuple[Assignment, ...]:
    chosen = [e for e in events if e.action in ASSIGNMENT_ACTIONS or (
        e.action not in _NOT_ASSIGNMENTS and isinstance(e.data, dict)
        and any(k in e.data for k in ("from", "to", "on_behalf_of")))]
    ids = {e.data["assignee_id"] for e in chosen
           if isinstance(e.data, dict) and isinstance(e.data.get("assignee_id"), int)}
    usernames = dict(s.execute(select(User.id, User.username).where(User.id.in_(ids))).all()) if ids else {}
    out = []
    for e in chosen:
        data = e.data if isinstance(e.data, dict) else {}
        to = data.get("to")
        if to is None and "assignee_id" in data:  # a send-back gives the task straight to who did it before
            to = usernames.get(data["assignee_id"])
        out.append(Assignment(e.at, e.action, e.actor, _names(data.get("from")), _names(to),
                              _names(data.get("on_behalf_of")), _names(data.get("reason"))))
    return tuple(out)


# --- the BPMN graph ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Flow:
    id: str
    source: str
    target: str
    name: str | None
    condition: str | None


@dataclass
class _Graph:
    kinds: dict[str, str]  # node id -> BPMN element name (userTask, exclusiveGateway, ...)
    names: dict[str, str | None]
    incoming: dict[str, list[_Flow]]
    outgoing: dict[str, list[_Flow]]
    defaults: dict[str, str]  # gateway id -> its default flow id
    decisions: dict[str, str]  # business-rule task id -> called decision id
    decision_names: dict[str, str | None]  # decision id -> its name in the DMN


_GRAPHS: dict[tuple[str, str], _Graph] = {}


def _graph(package: ProcessPackage, process_id: str) -> _Graph:
    """The flow graph of one process of a package, parsed once per deployment content."""
    key = (package.content_hash, process_id)
    graph = _GRAPHS.get(key)
    if graph is None:
        if len(_GRAPHS) > 256:
            _GRAPHS.clear()
        graph = _GRAPHS[key] = _parse_graph(package, process_id)
    return graph


def _parse_graph(package: ProcessPackage, process_id: str) -> _Graph:
    graph = _Graph({}, {}, {}, {}, {}, {}, {})
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    for name, content in package.files.items():
        if name.endswith(".dmn"):
            root = etree.fromstring(content, parser)
            for ns in DMN_NAMESPACES:
                for el in root.iterfind(f"{{{ns}}}decision"):
                    graph.decision_names[el.get("id")] = el.get("name")
        if not name.endswith(".bpmn"):
            continue
        root = etree.fromstring(content, parser)
        for proc in root.iterfind(f"{{{BPMN_NS}}}process"):
            if proc.get("id") != process_id:
                continue
            for el in proc.iter(etree.Element):
                qname = etree.QName(el)
                node_id = el.get("id")
                if qname.namespace != BPMN_NS or node_id is None:
                    continue
                if qname.localname == "sequenceFlow":
                    cond = el.find(f"{{{BPMN_NS}}}conditionExpression")
                    text = (cond.text or "").strip() if cond is not None else ""
                    flow = _Flow(node_id, el.get("sourceRef"), el.get("targetRef"), el.get("name"), text or None)
                    graph.incoming.setdefault(flow.target, []).append(flow)
                    graph.outgoing.setdefault(flow.source, []).append(flow)
                    continue
                graph.kinds[node_id] = qname.localname
                graph.names[node_id] = el.get("name")
                if el.get("default"):
                    graph.defaults[node_id] = el.get("default")
                if qname.localname == "businessRuleTask":
                    called = el.find(f"{{{BPMN_NS}}}extensionElements/{{{SPIFF_NS}}}calledDecisionId")
                    if called is not None and called.text:
                        graph.decisions[node_id] = called.text.strip()
    return graph


def _conditions_into(graph: _Graph, node_id: str) -> tuple[Condition, ...]:
    """The conditions of the flows into ``node_id`` and on through the gateways just before it, as long as
    each node on the way has one way in (at a merge, which way was taken is not the BPMN's to tell)."""
    found: list[Condition] = []
    seen = {node_id}
    current = node_id
    while True:
        flows = graph.incoming.get(current, [])
        if len(flows) != 1:
            break
        flow = flows[0]
        source = flow.source
        if graph.kinds.get(source) not in _GATEWAYS or source in seen:
            break
        if flow.condition:
            found.append(Condition(source, graph.names.get(source), flow.name, flow.condition))
        elif graph.defaults.get(source) == flow.id:
            others = tuple(f.condition for f in graph.outgoing.get(source, []) if f.id != flow.id and f.condition)
            if others:
                found.append(Condition(source, graph.names.get(source), flow.name, None, others))
        seen.add(source)
        current = source
    return tuple(found)


def _read_names(conditions: tuple[Condition, ...]) -> list[str]:
    names: list[str] = []
    for c in conditions:
        for text in ([c.expression] if c.expression else list(c.others)):
            try:
                tree = ast.parse(text, mode="eval")
            except SyntaxError:
                continue
            names += [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id not in names]
    return names


def _brt_spec(package: ProcessPackage, bpmn_id: str):
    for spec in (package.spec, *package.subprocess_specs.values()):
        task_spec = spec.task_specs.get(bpmn_id)
        if isinstance(task_spec, BusinessRuleTaskMixin):
            return task_spec
    return None


def _outputs(task_spec) -> list[str]:
    return [o.name or o.label for o in task_spec.dmnEngine.decision_table.outputs]


def _decisions_for(graph: _Graph, package: ProcessPackage, node_id: str,
                   conditions: tuple[Condition, ...]) -> list[tuple[Any, tuple[str, ...]]]:
    """The business-rule tasks upstream of ``node_id`` nearest to it that decide a name the conditions read:
    (their task spec, the names of theirs read)."""
    names = _read_names(conditions)
    if not names:
        return []
    open_names = set(names)
    chosen: list[tuple[Any, tuple[str, ...]]] = []
    seen = {node_id}
    frontier = [node_id]
    while frontier and open_names:
        nxt = []
        for node in frontier:
            for flow in graph.incoming.get(node, []):
                source = flow.source
                if source in seen:
                    continue
                seen.add(source)
                nxt.append(source)
                if source in graph.decisions:
                    task_spec = _brt_spec(package, source)
                    if task_spec is None:
                        continue
                    read = tuple(n for n in names if n in open_names and n in _outputs(task_spec))
                    if read:
                        chosen.append((task_spec, read))
                        open_names -= set(read)
        frontier = nxt
    return chosen


# --- the values the decision was made on ---------------------------------------------------------------

def _engine_data(rt: Runtime, instance_id: int, task_uuid: str, package: ProcessPackage) -> dict | None:
    """The data the open engine task received when it became ready (the workflow the task page has just
    loaded is taken from the runtime's cache and put back)."""
    from .progress import load_workflow, read_live_instance

    with rt.read() as s:
        live = read_live_instance(s, Instance.id == instance_id)
        if live is None:
            return None
        workflow = load_workflow(rt, live, package, s)
    try:
        task = workflow.tasks.get(UUID(task_uuid))
        return dict(task.data) if task is not None else None
    finally:
        rt.keep_workflow(live.id, live.version, workflow)


def _history_data(rt: Runtime, instance_id: int, created_at: datetime, before_event: int | None) -> dict:
    """The data as it stood when the task was made, rebuilt from the start event and the completions up to
    then (not past the task's own completion: with a clock that stands still, times alone cannot tell)."""
    q = (select(AuditEvent.action, AuditEvent.data)
         .where(AuditEvent.instance_id == instance_id, AuditEvent.action.in_(("start", "complete")),
                AuditEvent.at <= created_at).order_by(AuditEvent.id))
    if before_event is not None:
        q = q.where(AuditEvent.id < before_event)
    state: dict[str, Any] = {}
    with rt.read() as s:
        for action, data in s.execute(q):
            data = data or {}
            if action == "start":
                state.update(data.get("data") or {})
            for part in ("changes", "effects"):
                for key, change in (data.get(part) or {}).items():
                    state[key] = change.get("new") if isinstance(change, dict) else change
    return state


def _typed(data: dict[str, Any], table) -> dict[str, Any]:
    """Audit events keep amounts as text: numbers again where the table declares a number input."""
    data = dict(data)
    for inp in table.inputs:
        name = (inp.expression or "").strip()
        if inp.typeRef in ("number", "integer", "long", "double") and isinstance(data.get(name), str):
            with contextlib.suppress(InvalidOperation):
                data[name] = Decimal(data[name])
    return data


def _evaluate(task_spec, graph: _Graph, read: tuple[str, ...], data: dict[str, Any], source: str,
              engine) -> Decision:
    bpmn_id = task_spec.bpmn_id
    called = graph.decisions[bpmn_id]
    table = task_spec.dmnEngine.decision_table
    base = dict(task_id=bpmn_id, task_name=graph.names.get(bpmn_id), decision_id=called,
                decision_name=graph.decision_names.get(called), hit_policy=table.hit_policy, source=source)
    context = SimpleNamespace(data=_typed(data, table) if source == "history" else dict(data),
                              workflow=SimpleNamespace(script_engine=engine, data_objects={}))
    try:
        matched = task_spec.dmnEngine.decide(context)
        values = [_value(engine, context, inp.expression) for inp in table.inputs]
        if not matched:
            return Decision(**base, inputs=tuple(InputValue(i.label or i.name, i.expression, v, None)
                                                 for i, v in zip(table.inputs, values, strict=True)),
                            agrees=False)
        rule = matched[0]
        outputs = rule.output_as_dict(context)
    except Exception as err:  # noqa: BLE001 - any failure to re-evaluate is told, never a broken page
        return Decision(**base, error=str(getattr(err, "error_msg", None) or err).splitlines()[0][:300])
    cells = {e.input.id: (e.lhs[0] if e.lhs else None) for e in rule.inputEntries}
    inputs = tuple(InputValue(i.label or i.name, i.expression, v, cells.get(i.id))
                   for i, v in zip(table.inputs, values, strict=True))
    outs = tuple(OutputValue(name, o.label or name, outputs.get(name), data.get(name), name in read)
                 for o in table.outputs for name in [o.name or o.label])
    agrees = all(o.value == o.recorded for o in outs if o.name in data)
    return Decision(**base, row=rule.row_number, rule_id=rule.id, description=rule.description or None,
                    inputs=inputs, outputs=outs, rows_matched=tuple(r.row_number for r in matched), agrees=agrees)


def _value(engine, context, expression: str | None) -> Any:
    if not expression:
        return None
    try:
        return engine.evaluate(context, expression)
    except Exception:  # noqa: BLE001 - a value missing from the data shows as missing
        return None
