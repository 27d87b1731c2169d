"""Moving running instances of a process to a newer version, where that is safe; and the changes between versions.

An instance keeps the version it started on. A process owner may move it to a newer one: ``dry_run`` lists the
running instances of older versions, each with whether it can move and, if not, why in plain words; ``migrate``
moves the chosen ones, each checked again under its instance row lock, each move one ``migrate`` audit event.

The rule for "safe" is conservative. Our live task tree is compacted (finished tasks are in the ``steps``
table), so what must hold is about the tasks still in the tree:

- every task kept in the live tree (open, waiting, or a finished task the tree keeps as a parent or a join's
  split) names an element that exists in the new version with the same type;
- an open user task keeps its lane role and its form and UI form files (its name, instructions, due-date rule
  and post-script may change: they are the new version's to apply);
- a waiting event keeps its event definition (a changed timer is refused: its due time was computed from the
  old one), the events attached to an open task are the same, and any other task the instance waits at (a
  join) is unchanged apart from where it leads;
- a live subprocess is unchanged;
- every parallel or inclusive gateway where branches meet, ahead of a live task (in either version), has the same
  incoming flows in both: a branch added to or removed from a join the instance will reach would leave the join
  waiting for a branch that never comes (the split before it already ran on the old version).

The move attaches the new version's specs to the live tasks by id and plans again only what is still
predicted (the children not yet reached of the tasks the instance waits at), so that a step added after the
current task is taken. The live tasks themselves are not touched: their ids, data and timers stay, and the
task rows stay true (a new name is written to them). The result is checked (the same open tasks and timers,
a state that saves and loads with the new version) before the instance row moves to the new deployment with
its ``version`` bumped, so no cached workflow of the old version is used again. SpiffWorkflow's
``bpmn.util.diff`` aligns specs by id too but resets every READY and WAITING branch (new task ids, timers
computed again), which our task and timer rows cannot follow; this module keeps those tasks instead.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.specs.control import BoundaryEventSplit, _EndJoin
from SpiffWorkflow.bpmn.specs.event_definitions.timer import CycleTimerEventDefinition, TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.specs.mixins.unstructured_join import UnstructuredJoin
from SpiffWorkflow.exceptions import WorkflowException
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import func, select, update

from models import Deployment, Instance, TaskRow, Timer

from ..engine import runner
from ..engine.package import ProcessPackage
from ..runtime import Runtime
from ..studio.diff import PackageDiff, diff_files
from . import audit
from .accounts import UserView
from .deployments import package_for, script_engine_for
from .errors import InvalidInput, NotFound
from .paging import Page

MAX_PER_MIGRATION = 200
_LIVE = TaskState.READY | TaskState.WAITING | TaskState.STARTED
_PLANNED = TaskState.PREDICTED_MASK | TaskState.FUTURE
_IGNORED_KEYS = {"outputs", "bpmn_name", "description", "documentation", "lane", "name", "bpmn_id"}


@dataclass(frozen=True)
class Candidate:
    instance_id: int
    business_key: str
    customer_name: str | None
    from_deployment_id: int
    from_version: int
    instance_version: int  # the optimistic-lock column: a migration refuses an instance that changed since
    open_tasks: list[str]
    movable: bool
    reasons: list[str]


@dataclass(frozen=True)
class DryRun:
    process_key: str
    to_deployment_id: int
    to_version: int
    page: Page[Candidate]


@dataclass(frozen=True)
class Refusal:
    instance_id: int
    business_key: str | None
    reasons: list[str]


@dataclass(frozen=True)
class MigrationReport:
    to_version: int
    moved: list[tuple[int, str]]  # (instance id, business key)
    refused: list[Refusal]


# --- the changes between two versions ------------------------------------------------------------------------

@dataclass(frozen=True)
class VersionChanges:
    process_key: str
    versions: list[int]  # every deployed version, oldest first
    from_version: int
    to_version: int
    diff: PackageDiff
    bpmn_file: str  # the main BPMN file of the newer version (the diagrams)
    old_bpmn_file: str


def _versions(s, process_key: str) -> dict[int, int]:
    rows = s.execute(select(Deployment.version, Deployment.id).where(Deployment.process_key == process_key)
                     .order_by(Deployment.version)).all()
    return {v: i for v, i in rows}


def changes(rt: Runtime, process_key: str, from_version: int | None = None,
            to_version: int | None = None) -> VersionChanges:
    """The diff between two versions; by default the one before the latest against the latest."""
    with rt.read() as s:
        versions = _versions(s, process_key)
    if not versions:
        raise NotFound(f"process '{process_key}' is not deployed")
    ordered = sorted(versions)
    to_version = ordered[-1] if to_version is None else to_version
    if from_version is None:
        earlier = [v for v in ordered if v < to_version]
        from_version = earlier[-1] if earlier else to_version
    for v in (from_version, to_version):
        if v not in versions:
            raise NotFound(f"process '{process_key}' has no version {v}")
    old_pkg, new_pkg = package_for(rt, versions[from_version]), package_for(rt, versions[to_version])
    return VersionChanges(process_key, ordered, from_version, to_version, diff_files(old_pkg.files, new_pkg.files),
                          new_pkg.main_bpmn[0], old_pkg.main_bpmn[0])


def diagram_xml(rt: Runtime, process_key: str, version: int) -> bytes:
    """The main BPMN file of one version (what the diff page draws)."""
    with rt.read() as s:
        dep_id = _versions(s, process_key).get(version)
    if dep_id is None:
        raise NotFound(f"process '{process_key}' has no version {version}")
    return package_for(rt, dep_id).main_bpmn[1]


# --- the safety rule -----------------------------------------------------------------------------------------

class _Registry(threading.local):
    def __init__(self) -> None:
        self.registry = BpmnWorkflowSerializer.configure(SPIFF_CONFIG)


_local = _Registry()


def _as_dict(obj: Any) -> Any:
    return _local.registry.convert(obj)


def _label(spec) -> str:
    return getattr(spec, "bpmn_name", None) or getattr(spec, "bpmn_id", None) or spec.name


def _replanned(task) -> bool:
    """A predicted task below a task the instance waits at: the move drops it and plans again."""
    if not task.has_state(_PLANNED):
        return False
    parent = task.parent
    while parent is not None and parent.has_state(_PLANNED):
        parent = parent.parent
    return parent is not None and parent.has_state(_LIVE)


def _attached(spec) -> list[str]:
    """The boundary events attached to a task spec."""
    return sorted(o.name for i in spec.inputs if isinstance(i, BoundaryEventSplit) for o in i.outputs
                  if o is not spec)


def _definition(spec) -> Any:
    definition = getattr(spec, "event_definition", None)
    return None if definition is None else (type(definition).__name__, _as_dict(definition))


def _check_task(task, new_specs: dict, old_pkg: ProcessPackage, new_pkg: ProcessPackage) -> list[str]:
    spec = task.task_spec
    new = new_specs.get(spec.name)
    label = _label(spec)
    live = task.has_state(_LIVE)
    manual = getattr(spec, "manual", False)
    if new is None:
        if manual and task.state == TaskState.READY:
            return [f"open task '{label}' was removed"]
        if live and isinstance(spec, CatchingEvent):
            return [f"the event '{label}' it waits for was removed"]
        if live:
            return [f"'{label}', where it waits, was removed"]
        return [f"the step '{label}' that it still keeps in its state was removed"]
    if type(new) is not type(spec):
        return [f"'{label}' changed its type"]
    if isinstance(spec, BoundaryEventSplit) and sorted(o.name for o in spec.outputs) != sorted(
            o.name for o in new.outputs):
        return [f"the events attached to '{_label(spec.outputs[0]) if spec.outputs else label}' changed"]
    if not live:
        return []
    reasons = []
    if _attached(spec) != _attached(new):
        reasons.append(f"the events attached to '{label}' changed")
    if manual:
        process_id = spec._wf_spec.name
        try:
            old_info = old_pkg.user_task(process_id, spec.bpmn_id)
            new_info = new_pkg.user_task(new._wf_spec.name, new.bpmn_id)
        except KeyError:
            return reasons + [f"open task '{label}' is not described by the new version"]
        if (old_info.role, old_info.lane) != (new_info.role, new_info.lane):
            reasons.append(f"open task '{label}' changed its lane (role '{old_info.role}' -> '{new_info.role}')")
        if (old_info.form, old_info.ui_form) != (new_info.form, new_info.ui_form):
            reasons.append(f"open task '{label}' changed its form")
        elif old_pkg.forms.get(old_info.form) != new_pkg.forms.get(new_info.form) or (
                old_info.ui_form and old_pkg.forms.get(old_info.ui_form) != new_pkg.forms.get(new_info.ui_form)):
            reasons.append(f"the form of open task '{label}' changed")
        return reasons
    if isinstance(spec, CatchingEvent):
        if _definition(spec) != _definition(new):
            timer = isinstance(spec.event_definition, TimerEventDefinition)
            reasons.append(f"a timer of '{label}' changed" if timer else f"the event '{label}' waits for changed")
        return reasons
    old_d, new_d = _as_dict(spec), _as_dict(new)
    keys = sorted(k for k in set(old_d) | set(new_d) if k not in _IGNORED_KEYS and old_d.get(k) != new_d.get(k))
    if keys:
        reasons.append(f"'{label}', where it waits, changed ({', '.join(keys)})")
    return reasons


def assess(workflow: BpmnWorkflow, old_pkg: ProcessPackage, new_pkg: ProcessPackage) -> list[str]:
    """Why the instance whose live workflow this is cannot move from ``old_pkg`` to ``new_pkg`` (empty: it can)."""
    reasons: list[str] = []
    if workflow.spec.name != new_pkg.spec.name:
        return [f"the new version's process is '{new_pkg.spec.name}', not '{workflow.spec.name}'"]
    for task in workflow.tasks.values():
        if not _replanned(task):
            reasons += _check_task(task, new_pkg.spec.task_specs, old_pkg, new_pkg)
    reasons += _joins_ahead_changed(workflow, old_pkg, new_pkg)
    for sp in workflow.subprocesses.values():
        new_sub = new_pkg.subprocess_specs.get(sp.spec.name)
        if new_sub is None or _as_dict(sp.spec) != _as_dict(new_sub):
            reasons.append(f"the subprocess '{getattr(sp.spec, 'description', None) or sp.spec.name}' it is in "
                           "changed")
    return list(dict.fromkeys(reasons))


def _joins_ahead(specs: dict, starts: list[str]) -> dict[str, list[str]]:
    """The gateways where branches meet that the flows from ``starts`` reach: name -> sorted input names."""
    seen, todo, joins = set(starts), list(starts), {}
    while todo:
        spec = specs.get(todo.pop())
        if spec is None:
            continue
        if isinstance(spec, UnstructuredJoin) and not isinstance(spec, _EndJoin) and len(spec.inputs) > 1:
            joins[spec.name] = sorted(i.name for i in spec.inputs)
        for out in spec.outputs:
            if out.name not in seen:
                seen.add(out.name)
                todo.append(out.name)
    return joins


def _joins_ahead_changed(workflow: BpmnWorkflow, old_pkg: ProcessPackage, new_pkg: ProcessPackage) -> list[str]:
    starts = [t.task_spec.name for t in workflow.tasks.values() if t.has_state(_LIVE)]
    old_specs, new_specs = old_pkg.spec.task_specs, new_pkg.spec.task_specs
    ahead = {**_joins_ahead(old_specs, starts), **_joins_ahead(new_specs, starts)}
    reasons = []
    for name in sorted(ahead):
        old, new = old_specs.get(name), new_specs.get(name)
        if old is None or new is None or sorted(i.name for i in old.inputs) != sorted(i.name for i in new.inputs):
            label = _label(new if new is not None else old)
            reasons.append(f"the branches that meet at '{label}' ahead changed")
    return reasons


def _move(workflow: BpmnWorkflow, new_pkg: ProcessPackage) -> None:
    """Attach the new specs by id, then plan again below the tasks the instance waits at."""
    specs = new_pkg.spec.task_specs
    workflow.spec = new_pkg.spec
    workflow.subprocess_specs = new_pkg.subprocess_specs
    dropped = [t for t in workflow.tasks.values() if _replanned(t) and t.parent.has_state(_LIVE)]
    for task in dropped:
        if task.id in workflow.tasks:
            workflow._remove_task(task.id)
    for task in workflow.tasks.values():
        task.task_spec = specs[task.task_spec.name]
    for sp in workflow.subprocesses.values():
        new_sub = new_pkg.subprocess_specs[sp.spec.name]
        sp.spec = new_sub
        for task in sp.tasks.values():
            task.task_spec = new_sub.task_specs[task.task_spec.name]
    for task in list(workflow.tasks.values()):
        if not task.has_state(_LIVE) or task.children:
            continue  # a task with live children (a boundary split) keeps them as they are
        spec = task.task_spec
        if isinstance(spec, CatchingEvent) and isinstance(getattr(spec, "event_definition", None),
                                                          CycleTimerEventDefinition):
            continue
        task._sync_children(spec.outputs, TaskState.FUTURE)
        for child in task.children:
            child.task_spec._predict(child, mask=_PLANNED)


# --- dry run and migration -----------------------------------------------------------------------------------

def _target(s, process_key: str, to_deployment_id: int) -> int:
    dep = s.execute(select(Deployment.process_key, Deployment.version)
                    .where(Deployment.id == to_deployment_id)).first()
    if dep is None or dep.process_key != process_key:
        raise NotFound(f"process '{process_key}' has no deployment #{to_deployment_id}")
    return dep.version


def target_deployment(rt: Runtime, process_key: str, version: int | None = None) -> int:
    """The deployment id of a version of the process (the latest by default)."""
    with rt.read() as s:
        versions = _versions(s, process_key)
    if not versions:
        raise NotFound(f"process '{process_key}' is not deployed")
    version = max(versions) if version is None else version
    if version not in versions:
        raise NotFound(f"process '{process_key}' has no version {version}")
    return versions[version]


def _load(rt: Runtime, state: str, package: ProcessPackage) -> BpmnWorkflow:
    return rt.codec.loads(state, package.spec, package.subprocess_specs, script_engine_for(rt))


def dry_run(rt: Runtime, process_key: str, to_deployment_id: int, page: int = 1, per_page: int = 20) -> DryRun:
    """The running instances of older versions of the process, one page, each with whether it can move."""
    page, per_page = max(1, page), min(max(1, per_page), 100)
    with rt.read() as s:
        to_version = _target(s, process_key, to_deployment_id)
        where = (Instance.process_key == process_key, Instance.status == "running", Deployment.version < to_version)
        total = s.scalar(select(func.count()).select_from(Instance)
                         .join(Deployment, Deployment.id == Instance.deployment_id).where(*where)) or 0
        rows = s.execute(select(Instance.id, Instance.business_key, Instance.customer_name, Instance.deployment_id,
                                Deployment.version, Instance.version, Instance.state)
                         .join(Deployment, Deployment.id == Instance.deployment_id).where(*where)
                         .order_by(Instance.id).offset((page - 1) * per_page).limit(per_page)).all()
        ids = [r.id for r in rows]
        open_names: dict[int, list[str]] = {i: [] for i in ids}
        if ids:
            for iid, name in s.execute(select(TaskRow.instance_id, TaskRow.name).where(
                    TaskRow.instance_id.in_(ids), TaskRow.status == "open").order_by(TaskRow.id)):
                open_names[iid].append(name)
    new_pkg = package_for(rt, to_deployment_id)
    items = []
    for r in rows:
        old_pkg = package_for(rt, r.deployment_id)
        try:
            reasons = assess(_load(rt, r.state, old_pkg), old_pkg, new_pkg)
        except Exception as err:  # noqa: BLE001 - a state that does not load cannot move; say why
            reasons = [f"its stored state cannot be read: {type(err).__name__}"]
        items.append(Candidate(r.id, r.business_key, r.customer_name, r.deployment_id, r[4], r[5],
                               open_names[r.id], not reasons, reasons))
    return DryRun(process_key, to_deployment_id, to_version, Page(items, total, page, per_page))


def migrate(rt: Runtime, actor: UserView, process_key: str, to_deployment_id: int, instance_ids: list[int],
            versions: dict[int, int] | None = None) -> MigrationReport:
    """Move each instance that may move; each is checked again under its row lock, in its own transaction.

    ``versions``: the instance versions the dry run showed; an instance that changed since is refused."""
    ids = list(dict.fromkeys(instance_ids))
    if not ids:
        raise InvalidInput("choose the instances to move", {"instance_ids": "choose at least one instance"})
    if len(ids) > MAX_PER_MIGRATION:
        raise InvalidInput("too many instances at once",
                           {"instance_ids": f"at most {MAX_PER_MIGRATION} instances per migration"})
    with rt.read() as s:
        to_version = _target(s, process_key, to_deployment_id)
    moved, refused = [], []
    for instance_id in ids:
        expected = (versions or {}).get(instance_id)
        key, reasons = _migrate_one(rt, actor, process_key, to_deployment_id, to_version, instance_id, expected)
        if reasons:
            refused.append(Refusal(instance_id, key, reasons))
        else:
            moved.append((instance_id, key))
    return MigrationReport(to_version, moved, refused)


def _migrate_one(rt: Runtime, actor: UserView, process_key: str, to_deployment_id: int, to_version: int,
                 instance_id: int, expected: int | None) -> tuple[str | None, list[str]]:
    now = rt.clock.now()
    with rt.write() as s:
        if rt.postgres:  # the same lock every action on a contract takes first (services/tasks.py)
            s.execute(select(Instance.id).where(Instance.id == instance_id).with_for_update(key_share=True))
        row = s.execute(select(Instance.id, Instance.business_key, Instance.process_key, Instance.status,
                               Instance.deployment_id, Instance.version, Instance.state, Deployment.version)
                        .join(Deployment, Deployment.id == Instance.deployment_id)
                        .where(Instance.id == instance_id)).first()
        if row is None or row.process_key != process_key:
            return None, [f"no running instance #{instance_id} of this process"]
        key, from_version = row.business_key, row[7]
        if row.status != "running":
            return key, [f"it is {row.status}, not running"]
        if from_version >= to_version:
            return key, [f"it is on version {from_version} already, not older than {to_version}"]
        if expected is not None and row.version != expected:
            return key, ["it changed since the dry run; run the dry run again"]
        old_pkg, new_pkg = package_for(rt, row.deployment_id), package_for(rt, to_deployment_id)
        workflow = _load(rt, row.state, old_pkg)  # a fresh copy: a failed move must not spoil a cached one
        reasons = assess(workflow, old_pkg, new_pkg)
        if reasons:
            return key, reasons
        conn = s.connection()
        open_rows = s.execute(select(TaskRow.id, TaskRow.task_uuid, TaskRow.spec_id).where(
            TaskRow.instance_id == instance_id, TaskRow.status == "open")).all()
        timer_rows = set(s.scalars(select(Timer.task_uuid).where(Timer.instance_id == instance_id,
                                                                 Timer.status.in_(("waiting", "error")))))
        ready_before = {str(t.id) for t in runner.ready_user_tasks(workflow)}
        waiting_before = {t.task_id for t in runner.waiting_timers(workflow)}
        try:
            _move(workflow, new_pkg)
            state = rt.codec.dumps(workflow)
            _load(rt, state, new_pkg)
        except (WorkflowException, KeyError, ValueError, TypeError, AttributeError) as err:
            return key, [f"the new version cannot take over its state ({type(err).__name__}: {err})"]
        ready = {str(t.id): t for t in runner.ready_user_tasks(workflow)}
        waiting = {t.task_id for t in runner.waiting_timers(workflow)}
        if set(ready) != ready_before or set(ready) != {r.task_uuid for r in open_rows}:
            return key, ["its open tasks would not stay the same"]
        if waiting != waiting_before or not waiting <= timer_rows:
            return key, ["its waiting timers would not stay the same"]
        new_version = row.version + 1
        done = conn.execute(update(Instance).where(Instance.id == instance_id, Instance.version == row.version)
                            .values(deployment_id=to_deployment_id, state=state, version=new_version,
                                    updated_at=now))
        if done.rowcount != 1:
            return key, ["someone else changed it at the same moment; run the dry run again"]
        for r in open_rows:
            spec = ready[r.task_uuid].task_spec
            info = new_pkg.user_task(spec._wf_spec.name, spec.bpmn_id)
            conn.execute(update(TaskRow).where(TaskRow.id == r.id).values(name=info.name, lane=info.lane,
                                                                           stage=info.stage))
        audit.record(s, now, "migrate", actor_id=actor.id, actor=actor.username, instance_id=instance_id,
                     deployment_id=to_deployment_id,
                     data={"from_deployment_id": row.deployment_id, "to_deployment_id": to_deployment_id,
                           "from_version": from_version, "to_version": to_version})
    rt.keep_workflow(instance_id, new_version, workflow)
    return key, []
