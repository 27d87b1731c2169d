"""Process tests: cases saved next to a process ("given these inputs, the path and the end must be these"),
run in the studio against the draft and before every deploy.

A case is JSON: ``{"start": {...}, "steps": [{"task": "<user task id>", "data": {...}} | {"timer": "<id>"}, ...],
"expect": {"path": ["<user task id>", ...], "end": "<end event id>"}}``. Steps are taken strictly in order, each
input checked against its task's form as a completion checks it. ``"end": null`` expects the process still to
wait; without ``"end"`` the end is not checked. A case can be recorded from a real instance's audit trail.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from models import Instance, ProcessTest, User

from ..engine.package import MAX_JSON_DEPTH, PackageError, ProcessPackage, _json_depth, build_package
from ..forms import FormInvalid
from ..runtime import Runtime
from ..studio.simulate import SimResult, Steps, simulate, strict_start
from . import audit
from .accounts import ROLE_CODES, UserView
from .errors import InvalidInput, NotFound
from .paging import Page
from .replay import Target, draft_or_latest, load_histories

MAX_CASE_CHARS = 200_000
MAX_NAME = 200
MAX_TESTS = 500  # per process: deploy runs them all


# --- the case format ----------------------------------------------------------------------------------------

def parse_case(value: Any) -> dict[str, Any]:
    """A case from JSON text or a dict, checked for shape (not against a package: the draft may change);
    ``InvalidInput`` with the field ``case`` saying what is wrong."""
    if isinstance(value, str):
        if len(value) > MAX_CASE_CHARS:
            raise InvalidInput("the test case is too long", {"case": f"at most {MAX_CASE_CHARS} characters"})
        try:
            value = json.loads(value)
        except RecursionError:
            value = None  # deeper than the parser goes: refused by the depth check below
        except ValueError as err:
            raise InvalidInput("the test case is not valid JSON",
                               {"case": f"not valid JSON: {getattr(err, 'msg', err)} (line "
                                        f"{getattr(err, 'lineno', 1)}, column {getattr(err, 'colno', 1)})"}
                               ) from None
        if value is None or _json_depth(value) > MAX_JSON_DEPTH:
            raise InvalidInput("the test case is nested too deeply",
                               {"case": f"at most {MAX_JSON_DEPTH} levels of lists and objects"})

    def bad(message: str) -> InvalidInput:
        return InvalidInput("the test case has errors", {"case": message})

    if not isinstance(value, dict):
        raise bad("a test case is an object with 'start', 'steps' and 'expect'")
    extra = sorted(set(value) - {"start", "steps", "expect"})
    if extra:
        raise bad(f"unknown key '{extra[0]}' (a case has 'start', 'steps' and 'expect')")
    start = value.get("start", {})
    if not isinstance(start, dict):
        raise bad("'start' must be an object of start data")
    steps = value.get("steps", [])
    if not isinstance(steps, list):
        raise bad("'steps' must be a list")
    for i, step in enumerate(steps, 1):
        if not isinstance(step, dict) or not (("task" in step) ^ ("timer" in step)):
            raise bad(f"step {i} must be {{\"task\": id, \"data\": {{...}}}} or {{\"timer\": id}}")
        extra = sorted(set(step) - {"task", "data", "timer"})
        if extra or ("timer" in step and "data" in step):
            raise bad(f"step {i} has an unknown key '{(extra or ['data'])[0]}'")
        ident = step.get("task", step.get("timer"))
        if not isinstance(ident, str) or not ident:
            raise bad(f"step {i}: the task or timer id must be text")
        if "data" in step and not isinstance(step["data"], dict):
            raise bad(f"step {i}: 'data' must be an object of form fields")
    expect = value.get("expect")
    if not isinstance(expect, dict) or "path" not in expect:
        raise bad("'expect' must be an object with 'path' (and optionally 'end')")
    extra = sorted(set(expect) - {"path", "end"})
    if extra:
        raise bad(f"'expect' has an unknown key '{extra[0]}'")
    if not isinstance(expect["path"], list) or not all(isinstance(p, str) for p in expect["path"]):
        raise bad("'expect.path' must be a list of user task ids")
    if "end" in expect and expect["end"] is not None and not isinstance(expect["end"], str):
        raise bad("'expect.end' must be an end event id or null")
    return {"start": start, "steps": steps, "expect": expect}


# --- running ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CaseResult:
    name: str
    passed: bool
    reason: str | None  # why it failed, in words
    path: list[str] = field(default_factory=list)
    end_event: str | None = None
    waiting_at: list[str] = field(default_factory=list)


def run_case(package: ProcessPackage, name: str, case: dict[str, Any]) -> CaseResult:
    names = package.node_names

    def called(spec: str | None) -> str:
        return names.get(spec or "", spec or "")

    def fail(reason: str, sim: SimResult | None = None) -> CaseResult:
        return CaseResult(name, False, reason, list(sim.path) if sim else [], sim.end_event if sim else None,
                          list(sim.waiting_at) if sim else [])

    tasks = {spec for p in package.processes.values() for spec in p.user_tasks}
    for i, step in enumerate(case["steps"], 1):
        if "task" in step and step["task"] not in tasks:
            return fail(f"step {i} names '{step['task']}', which is not a user task of this process")
    try:
        start = _start_data(package, case["start"])
    except InvalidInput as err:
        fields = "; ".join(f"{k}: {v}" for k, v in err.errors.items())
        return fail(f"the start data does not fit the start form ({fields})")
    source = Steps(case["steps"])
    sim = simulate(package, start, source)
    if sim.error:
        return fail(sim.error, sim)
    if source.diverged is None and source.left:  # it stopped (ended, or waits for nothing) with steps left
        source.diverged = (source.left[0], [], [])
    if source.diverged is not None:
        step, ready, timers = source.diverged
        wanted = step.get("task") or step.get("timer")
        if ready:
            more = f" (and {len(ready) - 1} other task(s))" if len(ready) > 1 else ""
            return fail(f"expected '{called(wanted)}' next, the process is at '{ready[0].name}'{more}", sim)
        if timers:
            return fail(f"expected '{called(wanted)}' next, the process waits for the timer '{timers[0].name}'", sim)
        if sim.end_event:
            return fail(f"expected '{called(wanted)}' next, the process ended at '{called(sim.end_event)}'", sim)
        return fail(f"expected '{called(wanted)}' next, the process waits for nothing it can be given", sim)
    expect = case["expect"]
    if sim.path != expect["path"]:
        i = next((i for i, (a, b) in enumerate(zip(sim.path, expect["path"], strict=False)) if a != b),
                 min(len(sim.path), len(expect["path"])))
        if i < len(expect["path"]) and i < len(sim.path):
            return fail(f"step {i + 1} of the path: expected '{called(expect['path'][i])}', "
                        f"the process went to '{called(sim.path[i])}'", sim)
        if i < len(expect["path"]):
            return fail(f"expected '{called(expect['path'][i])}' after step {i}, the path ended there", sim)
        return fail(f"the path went on to '{called(sim.path[i])}' after the {i} step(s) expected", sim)
    if "end" in expect and expect["end"] != sim.end_event:
        if expect["end"] is None:
            return fail(f"expected the process to wait, it ended at '{called(sim.end_event)}'", sim)
        if sim.end_event is None:
            where = (sim.waiting_at + sim.timers_waiting)[:1]
            if not where:
                return fail(f"expected the end '{called(expect['end'])}', the process stopped without ending", sim)
            return fail(f"expected the end '{called(expect['end'])}', the process waits at '{called(where[0])}'", sim)
        return fail(f"expected the end '{called(expect['end'])}', the process ended at '{called(sim.end_event)}'",
                    sim)
    return CaseResult(name, True, None, list(sim.path), sim.end_event, list(sim.waiting_at))


def _start_data(package: ProcessPackage, data: dict[str, Any]) -> dict[str, Any]:
    """Start data as ``instances.start_instance`` takes it (through the start form, if the process has one)."""
    try:
        return strict_start(package, data)
    except FormInvalid as err:
        raise InvalidInput("the start form has errors", err.errors) from err


_results: dict[tuple[str, str], CaseResult] = {}  # (package hash, name + case hash) -> result: a pure function
_MAX_CACHED = 5000


def _key(package: ProcessPackage, name: str, case: dict[str, Any]) -> tuple[str, str]:
    blob = json.dumps([name, case], sort_keys=True, default=str).encode()
    return package.content_hash, hashlib.sha256(blob).hexdigest()


def run_cases(rt: Runtime, package: ProcessPackage, cases: list[tuple[str, dict[str, Any]]]) -> list[CaseResult]:
    """Run each (name, case) against ``package``; the results are kept (they depend on nothing else) so the
    test list shows the last run."""
    results = []
    for name, case in cases:
        result = run_case(package, name, case)
        if len(_results) >= _MAX_CACHED:
            _results.clear()
        _results[_key(package, name, case)] = result
        results.append(result)
    return results


def last_result(package: ProcessPackage | None, name: str, case: dict[str, Any]) -> CaseResult | None:
    return None if package is None else _results.get(_key(package, name, case))


def _saved(rt: Runtime, process_key: str) -> list[tuple[str, dict[str, Any]]]:
    with rt.read() as s:
        rows = s.execute(select(ProcessTest.name, ProcessTest.case).where(ProcessTest.process_key == process_key)
                         .order_by(ProcessTest.name)).all()
    return [(name, json.loads(case)) for name, case in rows]


def failures_for_deploy(rt: Runtime, process_key: str, package: ProcessPackage) -> list[str]:
    """Every saved test of the process that fails on ``package``, as "test 'name': reason" (empty: deploy on)."""
    return [f"test '{r.name}': {r.reason}" for r in run_cases(rt, package, _saved(rt, process_key)) if not r.passed]


@dataclass(frozen=True)
class RunReport:
    on_draft: bool
    version: int | None
    results: list[CaseResult]
    problems: list[str]  # why the draft does not build (then nothing ran)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.passed)


def target_package(rt: Runtime, process_key: str) -> tuple[Target, ProcessPackage | None, list[str]]:
    """The draft (else the latest version), built; with the problems if it does not build."""
    target = draft_or_latest(rt, process_key)
    try:
        return target, build_package(target.files, known_roles=ROLE_CODES, process_key=process_key), []
    except PackageError as err:
        return target, None, [str(p) for p in err.problems]


def run_saved(rt: Runtime, process_key: str) -> RunReport:
    """Run every saved test of the process against its draft, or the latest version if there is no draft."""
    target, package, problems = target_package(rt, process_key)
    if package is None:
        return RunReport(target.draft, target.version, [], problems)
    return RunReport(target.draft, target.version, run_cases(rt, package, _saved(rt, process_key)), [])


# --- saving -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TestView:
    id: int
    process_key: str
    name: str
    case: dict[str, Any]
    case_text: str
    updated_by: str | None
    updated_at: datetime


def list_tests(rt: Runtime, process_key: str, page: int = 1, per_page: int = 20) -> Page[TestView]:
    page, per_page = max(1, page), min(max(1, per_page), 100)
    with rt.read() as s:
        total = s.scalar(select(func.count()).select_from(ProcessTest)
                         .where(ProcessTest.process_key == process_key)) or 0
        rows = s.execute(select(ProcessTest, User.username).outerjoin(User, User.id == ProcessTest.updated_by_id)
                         .where(ProcessTest.process_key == process_key).order_by(ProcessTest.name, ProcessTest.id)
                         .offset((page - 1) * per_page).limit(per_page)).all()
    return Page([_view(t, who) for t, who in rows], total, page, per_page)


def _view(t: ProcessTest, who: str | None) -> TestView:
    case = json.loads(t.case)
    return TestView(t.id, t.process_key, t.name, case, json.dumps(case, ensure_ascii=False, indent=2), who,
                    t.updated_at)


def save_test(rt: Runtime, actor: UserView, process_key: str, name: str, case: Any, replace: bool = False) -> int:
    """Save a case under ``name`` (unique per process); ``replace`` overwrites the test of that name."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("the test needs a name", {"name": "this field is required"})
    if len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise InvalidInput("the test name is not valid", {"name": f"at most {MAX_NAME} characters, one line"})
    parsed = parse_case(case)
    text = json.dumps(parsed, ensure_ascii=False, sort_keys=True)
    if len(text) > MAX_CASE_CHARS:
        raise InvalidInput("the test case is too long", {"case": f"at most {MAX_CASE_CHARS} characters"})
    now = rt.clock.now()
    with rt.write() as s:
        found = s.scalar(select(ProcessTest).where(ProcessTest.process_key == process_key,
                                                   ProcessTest.name == name))
        if found is not None and not replace:
            raise InvalidInput(f"a test named '{name}' already exists",
                               {"name": "this name is taken; choose another or tick 'replace'"})
        if found is None:
            count = s.scalar(select(func.count()).select_from(ProcessTest)
                             .where(ProcessTest.process_key == process_key)) or 0
            if count >= MAX_TESTS:
                raise InvalidInput(f"a process has at most {MAX_TESTS} tests", {"name": "delete a test first"})
            found = ProcessTest(process_key=process_key, name=name, case=text)
            s.add(found)
        found.case, found.updated_by_id, found.updated_at = text, actor.id, now
        s.flush()
        audit.record(s, now, "process_test_saved", actor_id=actor.id, actor=actor.username,
                     data={"process_key": process_key, "test_id": found.id, "name": name})
        return found.id


def delete_test(rt: Runtime, actor: UserView, process_key: str, test_id: int) -> str:
    """Delete a test; returns its name. ``NotFound`` if the process has no such test."""
    now = rt.clock.now()
    with rt.write() as s:
        found = s.scalar(select(ProcessTest).where(ProcessTest.id == test_id, ProcessTest.process_key == process_key))
        if found is None:
            raise NotFound(f"no test #{test_id} of '{process_key}'")
        name = found.name
        s.delete(found)
        audit.record(s, now, "process_test_deleted", actor_id=actor.id, actor=actor.username,
                     data={"process_key": process_key, "test_id": test_id, "name": name})
    return name


def case_from_instance(rt: Runtime, process_key: str, business_key: str) -> dict[str, Any]:
    """A case from what an instance really did: its start data, each completion's input and each timer that fired,
    in order; the expectation is its actual path (and its end, or that it still waits)."""
    business_key = (business_key or "").strip()
    if not business_key:
        raise InvalidInput("name the instance to record", {"business_key": "this field is required"})
    with rt.read() as s:
        inst = s.execute(select(Instance.id, Instance.process_key, Instance.status, Instance.end_event)
                         .where(Instance.business_key == business_key)).first()
        if inst is None or inst.process_key != process_key:
            raise InvalidInput(f"no instance '{business_key}' of this process",
                               {"business_key": f"no instance '{business_key}' of '{process_key}'"})
        history = load_histories(s, [inst.id])[inst.id]
    if history.problem is not None:
        raise InvalidInput(f"'{business_key}' cannot be recorded: {history.problem}",
                           {"business_key": history.problem})
    steps: list[dict[str, Any]] = [{"task": spec, "data": data or {}} if kind == "task" else {"timer": spec}
                                   for kind, spec, data, _ in history.events]
    expect: dict[str, Any] = {"path": list(history.completed)}
    expect["end"] = inst.end_event if inst.status == "completed" else None
    return {"start": history.start or {}, "steps": steps, "expect": expect}


def record_from_instance(rt: Runtime, actor: UserView, process_key: str, business_key: str,
                         name: str | None = None) -> int:
    """Save the case of a real instance (``case_from_instance``) as a test, named after it unless named."""
    case = case_from_instance(rt, process_key, business_key)
    return save_test(rt, actor, process_key, (name or "").strip() or f"{business_key.strip()}", case)
