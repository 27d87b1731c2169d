"""Keeps finished history out of the live task tree, so that a step costs the same at pass 5 and 5,000.

SpiffWorkflow 3.2 keeps every completed task in the workflow's tree: a send-back loop stalls after
about 333 passes (the task iterator stops at depth 1000) and each step gets slower with history. After
every ``do_engine_steps()`` we re-root the tree on its *spine*: every unfinished task with its subtree,
each one's parent, the split task that an unfinished structured join looks up, and the root. Each kept
task is relinked to its nearest kept ancestor; the rest leaves the engine and is returned so that the
caller can append it to the history table (the audit trail and the path are built on that table).

This touches internals of SpiffWorkflow 3.2 (``Task._parent/_children``, ``Workflow.tasks`` order,
``task_tree``, ``last_task``, ``BpmnWorkflow.subprocesses``, ``event_manager.tasks``, ``Join.split_task``);
the version is pinned and ``tests/test_compaction.py`` fails on an upgrade that breaks it. Compact only
between steps, never from inside a task callback.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.mixins.unstructured_join import UnstructuredJoin
from SpiffWorkflow.specs.Join import Join
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

_FINISHED = TaskState.COMPLETED | TaskState.CANCELLED


@dataclass(frozen=True)
class DroppedTask:
    """A finished task that left the live tree: one row of the instance's path."""

    task_id: str
    spec_id: str
    spec_type: str
    name: str | None
    lane: str | None
    state: str
    finished_at: datetime


def _is_finished(task: Task) -> bool:
    return task.has_state(_FINISHED)


def _earlier_arrivals(tasks: dict[UUID, Task]) -> set[UUID]:
    """An unstructured join (parallel, inclusive) that waits counts the earlier arrivals of its spec, which it
    cancelled when the next one came: with three inputs the third would otherwise never find the first. Keep,
    per waiting join and input, the newest cancelled arrival and the input task it came from (one is enough:
    the join asks only whether each input has arrived, and a join parked for good must not pile them up)."""
    waiting = {id(t.task_spec) for t in tasks.values()
               if isinstance(t.task_spec, UnstructuredJoin) and t.state == TaskState.WAITING}
    if not waiting:
        return set()
    newest: dict[tuple[int, str], Task] = {}
    for task in tasks.values():
        if task.state != TaskState.CANCELLED or id(task.task_spec) not in waiting or task._parent not in tasks:
            continue
        key = (id(task.task_spec), tasks[task._parent].task_spec.name)
        if key not in newest or task.last_state_change >= newest[key].last_state_change:
            newest[key] = task
    return {i for t in newest.values() for i in (t.id, t._parent)}


def _spine(workflow) -> set[UUID]:
    keep: set[UUID] = {workflow.task_tree.id}
    tasks = workflow.tasks
    keep.update(_earlier_arrivals(tasks))
    for task in tasks.values():
        if _is_finished(task):
            continue
        keep.add(task.id)
        if task._parent is not None:
            keep.add(task._parent)
        spec = task.task_spec
        if isinstance(spec, Join) and spec.split_task is not None:
            split = task.find_ancestor(spec.split_task)
            if split is not None:
                keep.add(split.id)
                # a structured join reads the split's children (main task, boundary events)
                keep.update(split._children)
    # everything below an unfinished task stays with it
    stack = [tasks[t] for t in list(keep) if t in tasks and not _is_finished(tasks[t])]
    while stack:
        task = stack.pop()
        for child_id in task._children:
            if child_id not in keep and child_id in tasks:
                keep.add(child_id)
                stack.append(tasks[child_id])
    return keep


def compact_workflow(workflow) -> list[DroppedTask]:
    """Re-root one (sub)workflow's task tree on its spine; return the tasks that left it."""
    tasks = workflow.tasks
    root = workflow.task_tree
    keep = _spine(workflow)
    if len(keep) == len(tasks):
        return []

    def nearest_kept(task_id: UUID | None) -> UUID | None:
        while task_id is not None and task_id not in keep:
            task_id = tasks[task_id]._parent
        return task_id

    # preorder walk of the old tree gives a parents-first order for the new one
    order: list[UUID] = []
    stack = [root.id]
    while stack:
        task_id = stack.pop()
        order.append(task_id)
        stack.extend(reversed([c for c in tasks[task_id]._children if c in tasks]))

    new_parent = {tid: nearest_kept(tasks[tid]._parent) for tid in order if tid in keep and tid != root.id}
    children: dict[UUID, list[UUID]] = {tid: [] for tid in order if tid in keep}
    for tid in order:
        if tid in new_parent:
            children[new_parent[tid]].append(tid)

    dropped = [tasks[tid] for tid in order if tid not in keep]
    new_tasks = {}
    for tid in order:
        if tid in keep:
            task = tasks[tid]
            task._parent = new_parent.get(tid)
            task._children = children[tid]
            new_tasks[tid] = task
    # orphans (not reachable from the root) cannot exist in a consistent tree; keep them rather than lose them
    for tid, task in tasks.items():
        if tid not in new_tasks and tid in keep:
            new_tasks[tid] = task
    workflow.tasks = new_tasks

    if workflow.last_task is not None and workflow.last_task.id not in new_tasks:
        workflow.last_task = None
    return [_describe(task) for task in dropped]


def compact(workflow: BpmnWorkflow) -> list[DroppedTask]:
    """Compact the top workflow, drop finished subprocesses and stale event registrations."""
    dropped = compact_workflow(workflow)
    live = set(workflow.tasks)
    for task_id in list(workflow.subprocesses):
        if task_id not in live:
            parent_task_gone = True
            # a subprocess may hang off a task of another (live) subprocess
            for sp in workflow.subprocesses.values():
                if task_id in sp.tasks:
                    parent_task_gone = _is_finished(sp.tasks[task_id])
                    break
            if parent_task_gone:
                del workflow.subprocesses[task_id]
    manager = workflow.event_manager
    for task_id in list(manager.tasks):
        task = manager.tasks[task_id]
        owner = task.workflow
        if task_id not in owner.tasks or (owner is not workflow and owner.parent_task_id not in _all_ids(workflow)):
            del manager.tasks[task_id]
    return dropped


def _all_ids(workflow: BpmnWorkflow) -> set[UUID]:
    ids = set(workflow.tasks)
    for sp in workflow.subprocesses.values():
        ids.update(sp.tasks)
    return ids


def _describe(task: Task) -> DroppedTask:
    spec = task.task_spec
    return DroppedTask(
        task_id=str(task.id),
        spec_id=getattr(spec, "bpmn_id", None) or spec.name,
        spec_type=type(spec).__name__,
        name=getattr(spec, "bpmn_name", None),
        lane=getattr(spec, "lane", None),
        state=TaskState.get_name(task.state),
        finished_at=datetime.fromtimestamp(task.last_state_change, UTC),
    )
