"""Races on one instance: many people submitting the same task, two reviewers finishing parallel tasks,
two timer workers. Real threads on the real database (SQLite file or PostgreSQL)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, text

from models import AuditEvent, Instance, TaskRow, Timer
from workflows.engine import runner
from workflows.services import accounts, tasks, timers
from workflows.services.errors import Conflict

from .flow import Flow, approve, quote

THREADS = 20
JOIN_TIMEOUT = 120


class Gate:
    """Forces the worst interleaving of concurrent completions on PostgreSQL.

    Every thread that gets as far as running the engine waits until all the others have too (so all
    computed their step from the same instance version); then one of them persists and commits while
    the others wait, and only then do the others persist what they computed from their now stale view.
    A service that serializes actions on one instance (a row lock) keeps the others from ever reaching
    the engine: the gate sees them blocked on a lock and lets the holder go on. On SQLite this
    interleaving cannot happen (``BEGIN IMMEDIATE`` serializes write transactions): no gate there.
    """

    def __init__(self, rt, parties: int) -> None:
        self.rt = rt
        self.parties = parties
        self.cond = threading.Condition()
        self.arrived = 0
        self.passed = 0
        self.first_done = threading.Event()
        self.local = threading.local()

    def _blocked_on_locks(self) -> int:
        with self.rt.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND wait_event_type = 'Lock'")).scalar()

    def _wait_for_the_others(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with self.cond:
                missing = self.parties - self.arrived
                if missing <= 0:
                    return
                self.cond.wait(0.02)
            if self._blocked_on_locks() >= missing:
                return

    def install(self, monkeypatch) -> None:
        real = runner.step

        def step(workflow, *args, **kwargs):
            dropped = real(workflow, *args, **kwargs)
            if not getattr(self.local, "gated", False):
                self.local.gated = True
                with self.cond:
                    self.arrived += 1
                    self.cond.notify_all()
                self._wait_for_the_others()
                with self.cond:
                    self.passed += 1
                    first = self.passed == 1
                if not first:
                    self.first_done.wait(timeout=30)
            return dropped

        monkeypatch.setattr(runner, "step", step)

    def wrap(self, work: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            try:
                return work()
            finally:
                self.first_done.set()
        return run


def race(workers: list[Callable[[], Any]]) -> list[tuple[str, Any]]:
    """Run the callables in threads released together; ('ok', result) or ('error', exception) each."""
    barrier = threading.Barrier(len(workers))
    results: list[tuple[str, Any] | None] = [None] * len(workers)

    def run(i: int, work: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=JOIN_TIMEOUT)
            results[i] = ("ok", work())
        except BaseException as err:  # noqa: BLE001 - the test inspects every outcome
            results[i] = ("error", err)

    threads = [threading.Thread(target=run, args=(i, w), daemon=True) for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def count(rt, model, *where) -> int:
    with rt.read() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


@pytest.mark.parametrize("same_user", [False, True], ids=["twenty supervisors", "one supervisor twenty times"])
def test_twenty_submits_of_one_review_one_wins(rt, same_user, monkeypatch):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    task = flow.task("supervisor_review")
    version = flow.view().version
    if same_user:
        users = [flow.user("sup1")] * THREADS
    else:
        users = [accounts.create_user(rt, f"race_sup{i:02d}", "race-password", ["supervisor"]) for i in range(THREADS)]
    data = approve("supervisor")
    gate = Gate(rt, THREADS)
    if rt.postgres:
        gate.install(monkeypatch)
    results = race([gate.wrap(lambda u=u: tasks.complete(rt, task.id, u, dict(data))) for u in users])
    monkeypatch.undo()

    wins = [value for kind, value in results if kind == "ok"]
    errors = [value for kind, value in results if kind == "error"]
    assert len(wins) == 1, errors
    assert all(isinstance(e, Conflict) for e in errors), [repr(e) for e in errors if not isinstance(e, Conflict)]
    assert len(errors) == THREADS - 1

    winner = wins[0]
    assert winner.task_id == task.id and winner.instance_status == "running"
    with rt.read() as s:
        completes = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "complete",
                                                            AuditEvent.task_id == task.id)))
        row = s.get(TaskRow, task.id)
        inst = s.get(Instance, flow.id)
    assert len(completes) == 1
    assert row.status == "completed" and row.completed_by_id == completes[0].actor_id
    assert inst.version == winner.instance_version > version
    view = flow.view()
    assert view.path.count("supervisor_review") == 1
    assert view.path.count("approval_matrix_task") == 1
    assert flow.open_specs() == {"draft_contract"}
    assert count(rt, TaskRow, TaskRow.instance_id == flow.id, TaskRow.spec_id == "draft_contract") == 1
    # the instance goes on normally afterwards
    flow.act("draft_contract", "rep1", {"contract_no": "HT-RACE", "contract_terms": "x",
                                        "payment_plan": [{"amount": "24000.00", "due_date": "2026-12-15"}],
                                        "sign_by": "2026-12-01"})
    assert flow.open_specs() == {"legal_contract_check"}


def test_parallel_reviews_finished_at_the_same_moment_both_count(rt, monkeypatch):
    """On PostgreSQL the gate makes the second reviewer's step stale if nothing serializes the two: at
    commit 390cc75 that ended in an IntegrityError on ``uq_tasks_task_uuid`` (the stale step re-inserted
    the other, already completed review as a new open task) instead of a retry."""
    flows = []
    for _ in range(2):
        flow = Flow(rt)
        flow.act("prepare_quote", "rep1", quote("150000.00"))  # 300,000: manager, legal and finance
        flow.act("supervisor_review", "sup1", approve("supervisor"))
        flow.act("manager_review", "mgr1", approve("manager"))
        assert flow.open_specs() == {"legal_review", "finance_review"}
        flows.append(flow)
    # the threads start in the other order in the second round
    for round_no, (flow, first) in enumerate(zip(flows, ("legal", "finance"), strict=True)):
        open_now = flow.open()
        legal, finance = open_now["legal_review"], open_now["finance_review"]
        gate = Gate(rt, 2)
        if rt.postgres:
            gate.install(monkeypatch)
        legal1, fin1 = flow.user("legal1"), flow.user("fin1")
        work = {
            "legal": lambda t=legal.id, u=legal1: tasks.complete(rt, t, u, approve("legal")),
            "finance": lambda t=finance.id, u=fin1: tasks.complete(rt, t, u, approve("finance")),
        }
        order = [first] + [k for k in work if k != first]
        results = race([gate.wrap(work[k]) for k in order])
        monkeypatch.undo()
        assert [kind for kind, _ in results] == ["ok", "ok"], (round_no, results)
        assert flow.open_specs() == {"draft_contract"}, round_no
        data = flow.data()
        assert (data["legal_decision"], data["finance_decision"], data["send_back"]) == ("approve", "approve", None)
        view = flow.view()
        assert view.path.count("legal_review") == 1 and view.path.count("finance_review") == 1
        assert view.path.count("join_reviews") == 1
        assert count(rt, AuditEvent, AuditEvent.instance_id == flow.id, AuditEvent.action == "complete",
                     AuditEvent.task_id.in_([legal.id, finance.id])) == 2
        assert count(rt, TaskRow, TaskRow.instance_id == flow.id, TaskRow.spec_id.in_(
            ["legal_review", "finance_review"])) == 2


def test_two_timer_workers_fire_a_due_timer_once(rt, clock):
    flow = Flow(rt)
    flow.to_collection()
    due_dates = [datetime(2026, 12, 14, 16, 0, 1, tzinfo=UTC), datetime(2027, 1, 14, 16, 0, 1, tzinfo=UTC)]
    for n, when in enumerate(due_dates, start=1):
        clock.set(when)
        reports = race([lambda i=i: timers.fire_due_timers(rt, worker=f"w{i}") for i in range(2)])
        assert [kind for kind, _ in reports] == ["ok", "ok"], reports
        assert sum(r.fired for _, r in reports) == 1, reports
        assert sum(r.errors for _, r in reports) == 0
        assert count(rt, AuditEvent, AuditEvent.instance_id == flow.id, AuditEvent.action == "timer") == n
        assert count(rt, Timer, Timer.instance_id == flow.id, Timer.spec_id == "wait_installment_due",
                     Timer.status == "fired") == n
        assert count(rt, TaskRow, TaskRow.instance_id == flow.id, TaskRow.spec_id == "record_payment",
                     TaskRow.status == "open") == 1
        assert timers.fire_due_timers(rt).fired == 0
        amount = "7200.00" if n == 1 else "16800.00"
        flow.act("record_payment", "fin1", {"amount_received": amount, "received_on": when.date().isoformat(),
                                            "payment_reference": f"BANK-{n}"})
    assert flow.view().status == "completed"
