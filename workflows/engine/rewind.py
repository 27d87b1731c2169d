"""Moves a live workflow back to a user task it already passed: the engine half of withdraw (撤回) and
return-to-step (驳回到指定节点).

SpiffWorkflow's own ``reset_from_task_id`` needs the earlier task in the live tree, and compaction has
moved finished tasks out of it (``compaction.py``). So instead of resetting the tree we move the token:
every unfinished task that lies downstream of the target in the diagram is cancelled, and a new READY
task of the target is hung under the root, carrying the data given. The engine then flows forward from
there along the BPMN, exactly as after any completion.

Tokens on branches that do not pass through the target (a parallel branch beside it) stay. A parallel
join downstream of the target must still get a token on each of its inputs: an arrival that is already
waiting there from another branch is kept; an input whose branch already went through the join is given a
new arrival carrying the current data, as if that branch had just finished again. Joins with more than one
such input, targets inside subprocesses and inclusive joins are refused with the reason.
"""

from __future__ import annotations

import copy
from typing import Any

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.mixins.inclusive_gateway import InclusiveGateway
from SpiffWorkflow.bpmn.specs.mixins.parallel_gateway import ParallelGateway
from SpiffWorkflow.bpmn.specs.mixins.unstructured_join import UnstructuredJoin
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState


class RewindRefused(Exception):
    """The workflow cannot be moved back to this task; the message says why, for the person who asked."""


def user_task_spec(process_spec, bpmn_id: str):
    """The user task ``bpmn_id`` of a parsed process (``package.spec`` or ``workflow.spec``), or None."""
    for spec in process_spec.task_specs.values():
        if getattr(spec, "bpmn_id", None) == bpmn_id and getattr(spec, "manual", False):
            return spec
    return None


def entry_spec(spec):
    """The spec a new token starts at: the user task, or the split that also arms its boundary events."""
    if len(spec.inputs) == 1 and type(spec.inputs[0]).__name__ == "BoundaryEventSplit":
        return spec.inputs[0]
    return spec


def _loop_edges(spec) -> set[tuple[str, str]]:
    """The flows that close a loop (a send-back, the next installment): the edges a depth-first walk from the
    process start finds going back to a node still on its path. Computed once per parsed process."""
    process = spec._wf_spec
    cached = process.__dict__.get("_lvyue_loop_edges")
    if cached is not None:
        return cached
    back: set[tuple[str, str]] = set()
    on_path: set[str] = set()
    done: set[str] = set()
    roots = [process.start] + [s for s in process.task_specs.values() if not s.inputs and s is not process.start]
    for root in roots:
        if root.name in done:
            continue
        stack = [(root, iter(root.outputs))]
        on_path.add(root.name)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                on_path.discard(node.name)
                done.add(node.name)
            elif child.name in on_path:
                back.add((node.name, child.name))
            elif child.name not in done:
                on_path.add(child.name)
                stack.append((child, iter(child.outputs)))
    process.__dict__["_lvyue_loop_edges"] = back
    return back


def downstream(spec) -> frozenset[str]:
    """Names of every spec ahead of ``spec`` in the diagram (``spec`` included), not following the flows that
    close a loop: what lies ahead of a step is what comes after it on this pass, not the whole loop again
    (from a legal review, the finance review beside it is not ahead, though a send-back could lead there)."""
    cache = spec._wf_spec.__dict__.setdefault("_lvyue_ahead", {})  # parsed specs are immutable and cached
    found = cache.get(spec.name)
    if found is not None:
        return found
    loops = _loop_edges(spec)
    seen: set[str] = set()
    stack = [spec]
    while stack:
        current = stack.pop()
        if current.name in seen:
            continue
        seen.add(current.name)
        stack.extend(o for o in current.outputs if (current.name, o.name) not in loops)
    cache[spec.name] = frozenset(seen)
    return cache[spec.name]


def reaches(process_spec, target_bpmn_id: str, bpmn_id: str) -> bool:
    """Does the diagram lead from the user task ``target_bpmn_id`` to the element ``bpmn_id``?"""
    target = user_task_spec(process_spec, target_bpmn_id)
    if target is None:
        return False
    names = downstream(entry_spec(target))
    return any(getattr(s, "bpmn_id", None) == bpmn_id for s in process_spec.task_specs.values() if s.name in names)


_LIVE = TaskState.READY | TaskState.WAITING | TaskState.STARTED | TaskState.ERROR


def _live(workflow: BpmnWorkflow) -> list[Task]:
    """The tokens: tasks that are running or waiting. Predicted tasks (FUTURE, LIKELY, MAYBE) are only the
    engine's guess of what follows a token; they go with it."""
    return [t for t in workflow.tasks.values() if t.has_state(_LIVE)]


def plan(workflow: BpmnWorkflow, bpmn_id: str) -> tuple[Any, list[Task], list[tuple[Any, Any]]]:
    """What a rewind to ``bpmn_id`` would do: (the entry spec, the tasks it cancels, the join arrivals it
    adds as (input spec, join spec)). Raises ``RewindRefused`` when the move is not possible."""
    target = user_task_spec(workflow.spec, bpmn_id)
    if target is None:
        raise RewindRefused(f"'{bpmn_id}' is not a user task of the main process")
    entry = entry_spec(target)
    ahead = downstream(entry)
    live = _live(workflow)
    keep: set = set()
    arrivals: list[tuple[Any, Any]] = []
    for spec in workflow.spec.task_specs.values():
        if spec.name not in ahead or len(spec.inputs) < 2:
            continue
        if isinstance(spec, InclusiveGateway):
            raise RewindRefused(f"the way from '{target.bpmn_name or bpmn_id}' passes an inclusive join "
                                f"('{spec.bpmn_name or spec.bpmn_id}'), which cannot be re-entered")
        if not isinstance(spec, ParallelGateway):
            continue  # an exclusive merge takes any one token
        missing = []
        for source in spec.inputs:
            if source.name in ahead:
                continue  # the new token may come this way
            waiting = [t for t in live if t.task_spec is spec and t.parent is not None
                       and t.parent.task_spec is source]
            if waiting:
                keep.update(t.id for t in waiting)
                continue
            if any(t.task_spec.name not in ahead and source.name in downstream(t.task_spec) for t in live):
                continue  # that branch is still running and will arrive by itself
            missing.append(source)
        if len(missing) > 1:
            raise RewindRefused(f"'{target.bpmn_name or bpmn_id}' lies in one of several parallel branches that "
                                f"were already joined at '{spec.bpmn_name or spec.bpmn_id}'")
        arrivals.extend((source, spec) for source in missing)
    cancel = [t for t in live if t.task_spec.name in ahead and t.id not in keep]
    return entry, cancel, arrivals


def _stale_arrivals(workflow: BpmnWorkflow, ahead: set[str]) -> list[Task]:
    """Arrivals at a join ahead that came from a branch being redone. A parallel join counts an arrival by its
    completed input task, cancelled or not, so these must leave the tree, not merely be cancelled."""
    return [t for t in workflow.tasks.values()
            if isinstance(t.task_spec, UnstructuredJoin) and t.task_spec.name in ahead and t.parent is not None
            and t.parent.task_spec.name in ahead and t.has_state(TaskState.FINISHED_MASK | _LIVE)
            and not t.has_state(TaskState.COMPLETED)]


def rewind(workflow: BpmnWorkflow, bpmn_id: str, data: dict[str, Any]) -> Task:
    """Move the workflow back to the user task ``bpmn_id`` with ``data``; returns the new READY task (or the
    boundary split that will make it). Run the engine (``runner.step``) afterwards."""
    entry, cancel, arrivals = plan(workflow, bpmn_id)
    cancelled = set()
    for task in sorted(cancel, key=_depth):  # parents first: cancelling one drops its unfinished children
        if task.id in cancelled or task.id not in workflow.tasks:
            continue
        task.cancel()
        cancelled.update(_subtree(task))
    for task in _stale_arrivals(workflow, downstream(entry)):
        if task.id in workflow.tasks:
            workflow._remove_task(task.id)
    root = workflow.task_tree
    for source, join in arrivals:
        carrier = Task(workflow, source, parent=root, state=TaskState.COMPLETED)
        carrier.data = copy.deepcopy(data)
        arrival = Task(workflow, join, parent=carrier, state=TaskState.WAITING)
        arrival.data = copy.deepcopy(data)
    token = Task(workflow, entry, parent=root, state=TaskState.FUTURE)
    token.data = copy.deepcopy(data)
    entry._predict(token, mask=TaskState.FUTURE | TaskState.PREDICTED_MASK)  # the children its completion updates
    token._ready()
    return token


def _depth(task: Task) -> int:
    depth, current = 0, task
    while current.parent is not None:
        depth, current = depth + 1, current.parent
    return depth


def _subtree(task: Task) -> set:
    ids, stack = set(), [task]
    while stack:
        current = stack.pop()
        ids.add(current.id)
        stack.extend(current.children)
    return ids
