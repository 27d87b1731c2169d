"""Compaction keeps loops alive and flat; these shapes fail on plain SpiffWorkflow 3.2 before pass 400."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from SpiffWorkflow.util.task import TaskState

from workflows.clock import FrozenClock, install_clock_hook, using_clock
from workflows.engine import runner, sandbox
from workflows.engine.codec import StateCodec
from workflows.engine.compaction import compact

BPMN = Path(__file__).parent / "bpmn" / "loop_shapes.bpmn"


@pytest.fixture(scope="module")
def specs():
    parser = SpiffBpmnParser()
    parser.add_bpmn_file(str(BPMN))
    return parser.get_spec("loop_shapes"), parser.get_subprocess_specs("loop_shapes")


def _start(specs, clock, plain_engine=False):
    install_clock_hook()
    spec, subs = specs
    engine = PythonScriptEngine() if plain_engine else sandbox.make_script_engine(clock.now)
    wf = BpmnWorkflow(spec, subs, script_engine=engine)
    for task in wf.get_tasks(state=TaskState.READY):
        task.data["side_count"] = 0
    with using_clock(clock):
        wf.do_engine_steps()
    return wf


def _ready(wf, name):
    return [t for t in wf.get_tasks(state=TaskState.READY, manual=True) if t.task_spec.name == name]


def _pass(wf, clock, repeat=True, do_compact=True):
    (work,) = _ready(wf, "work")
    work.data["repeat"] = repeat
    work.data["passes"] = work.data.get("passes", 0) + 1
    with using_clock(clock):
        work.run()
        wf.do_engine_steps()
    return compact(wf) if do_compact else []


def _data_by_task(wf):
    return {str(t.id): dict(t.data) for t in wf.tasks.values()}


def _simple_loop():
    parser = SpiffBpmnParser()
    parser.add_bpmn_file(str(BPMN.parent / "simple_loop.bpmn"))
    wf = BpmnWorkflow(parser.get_spec("simple_loop"), parser.get_subprocess_specs("simple_loop"),
                      script_engine=PythonScriptEngine())
    wf.do_engine_steps()
    return wf


def _simple_passes(wf, n, do_compact):
    for i in range(n):
        ready = wf.get_tasks(state=TaskState.READY, manual=True)
        if not ready:
            return i
        ready[0].data["repeat"] = True
        ready[0].run()
        wf.do_engine_steps()
        if do_compact:
            compact(wf)
    return n


def test_plain_spiffworkflow_stalls_in_a_long_loop():
    """The trap we design around: without compaction a one-task loop stops offering its task (~333 passes)."""
    wf = _simple_loop()
    passes = _simple_passes(wf, 600, do_compact=False)
    assert passes < 600
    assert wf.is_completed(), "and SpiffWorkflow wrongly reports the workflow as completed"


def test_compaction_keeps_the_same_loop_going():
    wf = _simple_loop()
    assert _simple_passes(wf, 1000, do_compact=True) == 1000
    assert not wf.is_completed()
    assert len(wf.tasks) < 10


def test_compacted_loop_runs_2000_passes_flat_and_survives_save_and_load(specs):
    clock, codec = FrozenClock(), StateCodec()
    wf = _start(specs, clock)
    spec, subs = specs
    sizes, live = [], []
    dropped_total = 0
    for i in range(2000):
        dropped_total += len(_pass(wf, clock))
        live.append(len(wf.tasks))
        if i % 250 == 0:
            before = _data_by_task(wf)
            text = codec.dumps(wf)
            sizes.append(len(text))
            wf = codec.loads(text, spec, subs, wf.script_engine)
            assert _data_by_task(wf) == before  # parents-first order keeps every task's data
    assert max(live) == min(live[10:]) or max(live) - min(live) <= 4
    assert max(live) < 40
    assert max(sizes) < 1.2 * min(sizes) + 1000
    assert dropped_total > 2000 * 5
    assert _ready(wf, "work")[0].data["passes"] == 2000
    _pass(wf, clock, repeat=False)
    (beside,) = _ready(wf, "beside")
    with using_clock(clock):
        beside.run()
        wf.do_engine_steps()
    compact(wf)
    assert wf.is_completed()


def test_boundary_timer_fires_inside_a_compacted_loop(specs):
    clock = FrozenClock()
    wf = _start(specs, clock)
    for _ in range(300):
        timers = runner.waiting_timers(wf)
        assert [t.spec_id for t in timers] == ["late"]
        assert timers[0].due_at == clock.now() + timedelta(hours=1)
        clock.advance(hours=2)
        with using_clock(clock):
            runner.fire_timers(wf)
            runner.step(wf)
        (chase,) = _ready(wf, "chase")
        assert _ready(wf, "work"), "the non-interrupting timer leaves the work task open"
        with using_clock(clock):
            chase.run()
            runner.step(wf)
        _pass(wf, clock)
    assert len(wf.tasks) < 40


def test_timer_does_not_fire_before_its_time(specs):
    clock = FrozenClock()
    wf = _start(specs, clock)
    clock.advance(minutes=59)
    with using_clock(clock):
        runner.fire_timers(wf)
        runner.step(wf)
    assert not _ready(wf, "chase")
    clock.advance(minutes=2)
    with using_clock(clock):
        runner.fire_timers(wf)
        runner.step(wf)
    assert _ready(wf, "chase")


def test_a_three_way_parallel_join_fires_in_a_compacted_loop():
    """A parallel join cancels the earlier waiting arrival when the next one comes; with three inputs the third
    must still find the first. Compaction keeps a waiting join's earlier arrivals (it used to drop them, and the
    join waited forever). Every completion order, 300 passes, a save and load while two have arrived."""
    import itertools

    parser = SpiffBpmnParser()
    parser.add_bpmn_file(str(BPMN.parent / "three_way_join.bpmn"))
    spec, subs = parser.get_spec("three_way_join"), parser.get_subprocess_specs("three_way_join")
    codec = StateCodec()
    wf = BpmnWorkflow(spec, subs, script_engine=PythonScriptEngine())
    wf.do_engine_steps()
    compact(wf)
    orders = list(itertools.permutations("abc"))
    sizes = []
    for n in range(300):
        for i, name in enumerate(orders[n % len(orders)]):
            (task,) = [t for t in wf.get_tasks(state=TaskState.READY, manual=True) if t.task_spec.name == name]
            task.run()
            wf.do_engine_steps()
            compact(wf)
            if i == 1 and n % 50 == 0:
                wf = codec.loads(codec.dumps(wf), spec, subs, PythonScriptEngine())
            ready = sorted(t.task_spec.name for t in wf.get_tasks(state=TaskState.READY, manual=True))
            assert ready == (["z"] if i == 2 else sorted(set("abc") - set(orders[n % len(orders)][:i + 1]))), (n, i)
        (z,) = wf.get_tasks(state=TaskState.READY, manual=True)
        z.data["repeat"] = n < 299
        z.run()
        wf.do_engine_steps()
        compact(wf)
        sizes.append(len(wf.tasks))
    assert wf.is_completed()
    assert max(sizes[:-1]) <= sizes[0] + 2  # flat: no history kept
