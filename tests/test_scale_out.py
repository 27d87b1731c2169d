"""Scale-out on one PostgreSQL database: two ``lvyue worker`` processes and a web app under gunicorn with two
worker processes, all real subprocesses, racing for the same timers, instances and tasks. Whatever the
interleaving, every timer fires once, every task is completed once (the others get 409) and the audit chains
verify. Skipped without PostgreSQL (SQLite has one writer at a time: nothing to share out)."""

from __future__ import annotations

import contextlib
import os
import random
import threading
from collections import Counter
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from models import AuditEvent, Instance, TaskRow, Timer
from workflows import config
from workflows.services import accounts, integrity, timers, tokens

from .flow import Flow, approve, quote
from .processes import DEADLINE, api, served_by, start_gunicorn, start_timer_worker, timers_held, wait_for

pytestmark = pytest.mark.skipif(not os.environ.get("LVYUE_TEST_DATABASE_URL"),
                                reason="several processes on one database: needs PostgreSQL "
                                       "(set LVYUE_TEST_DATABASE_URL)")

TZ = ZoneInfo(config.business_tz())


# --- data --------------------------------------------------------------------------------------------------

def today() -> date:
    return datetime.now(TZ).date()


def waiting_contracts(rt, n: int, due: date, templates: int = 5) -> None:
    """``n`` contracts waiting on their installment timer due at the start of ``due``: a few through the
    services, the rest copies of them with every row (the timer benchmark's copier)."""
    from bench.timer_bench import contracts_waiting_on_timers

    contracts_waiting_on_timers(rt, n, templates, due, "scale-out test")


def count(rt, model, *where) -> int:
    with rt.read() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def fired_per_instance(rt, action: str, spec_id: str) -> Counter[int]:
    with rt.read() as s:
        return Counter(s.scalars(select(AuditEvent.instance_id).where(AuditEvent.action == action,
                                                                       AuditEvent.spec_id == spec_id)))


def assert_audit_verifies(rt) -> None:
    report = integrity.verify_all(rt)
    assert report.ok, report.summary()


# --- two timer workers -----------------------------------------------------------------------------------

def test_two_timer_workers_fire_every_due_timer_exactly_once(rt, clock, processes):
    n = 300
    clock.set(datetime.now(TZ) - timedelta(days=30))  # the contracts were made a month ago ...
    waiting_contracts(rt, n, today() - timedelta(days=2))  # ... and their installments fell due two days ago
    due = (Timer.spec_id == "wait_installment_due", Timer.status == "waiting")
    assert count(rt, Timer, *due) == n and count(rt, Instance) == n

    with timers_held(rt.database_url) as wait_blocked:
        for name in ("timer-w1", "timer-w2"):
            start_timer_worker(processes, rt.database_url, name)
        wait_blocked(2)
    wait_for(f"{n} timers fired", lambda: count(rt, Timer, *due) == 0, processes)

    assert count(rt, Timer, Timer.spec_id == "wait_installment_due", Timer.status == "fired",
                 Timer.fired_at.is_not(None)) == n
    assert count(rt, Timer, Timer.status == "error") == 0
    fired = fired_per_instance(rt, "timer", "wait_installment_due")
    with rt.read() as s:
        assert set(fired) == set(s.scalars(select(Instance.id)))
    assert set(fired.values()) == {1}, "a timer fired twice"
    # what firing made happened once too: one payment to record per contract, none done twice
    assert count(rt, TaskRow, TaskRow.spec_id == "record_payment", TaskRow.status == "open") == n
    with rt.read() as s:
        split = dict(s.execute(select(AuditEvent.actor, func.count()).where(AuditEvent.action == "timer")
                               .group_by(AuditEvent.actor)).all())
    print(f"timers fired per worker: {split}")
    assert set(split) == {"timer-w1", "timer-w2"}, split  # both were waiting when the timers were released
    assert_audit_verifies(rt)
    for name, _ in processes.running:
        assert "Traceback" not in processes.log(name), processes.log(name)


# --- web workers and timer workers ---------------------------------------------------------------------

def test_two_web_workers_and_two_timer_workers_complete_each_task_once(rt, clock, processes, tmp_path):
    threads, n_review, n_payment, n_timers = 8, 6, 6, 100
    clock.set(datetime.now(TZ) - timedelta(days=40))
    first_due = today() - timedelta(days=25)

    # contracts collecting a payment whose overdue escalation (7 days after the due date) is due now: the timer
    # workers fire it while the web completes the payment on the same contract, or it is cancelled
    payments = []
    for _ in range(n_payment):
        flow = Flow(rt)
        flow.to_collection(plan=[{"amount": "7200.00", "due_date": first_due.isoformat()},
                                 {"amount": "16800.00", "due_date": (today() + timedelta(days=365)).isoformat()}])
        payments.append(flow)
    clock.set(datetime.now(TZ) - timedelta(days=24))
    assert timers.fire_due_timers(rt).fired == n_payment
    reviews = []
    for _ in range(n_review):
        flow = Flow(rt)
        flow.act("prepare_quote", "rep1", quote())
        reviews.append(flow)
    waiting_contracts(rt, n_timers, today() - timedelta(days=2))  # more work for the timer workers meanwhile

    work = [(f.task("supervisor_review").id, "supervisor", approve("supervisor")) for f in reviews]
    work += [(f.task("record_payment").id, "finance", {"amount_received": "7200.00", "received_on": today().isoformat(),
                                                      "payment_reference": f"BANK-{f.id}"}) for f in payments]
    bearer = {}
    for role in ("supervisor", "finance"):
        for i in range(3):
            account = accounts.create_service_account(rt, f"{role}-bot{i}", None, [role], actor=None)
            bearer[role, i] = tokens.issue_token(rt, account.id, "scale-out test", actor=None)

    access_log = tmp_path / "access.log"
    port = start_gunicorn(processes, rt.database_url, 2, access_log)

    def read() -> None:
        with contextlib.suppress(OSError):  # not listening yet
            api(port, bearer["finance", 0], "GET", "/tasks?scope=roles")

    def both_web_workers_answer() -> bool:  # concurrent reads until each of the two has answered one
        pool = [threading.Thread(target=read) for _ in range(4)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return access_log.exists() and len(served_by(access_log, "GET")) == 2

    wait_for("two gunicorn workers answering", both_web_workers_answer, processes)

    results: list[tuple[int, int, dict]] = []  # task id, status, body
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def complete_all(k: int) -> None:
        mine = random.Random(k).sample(work, len(work))  # every thread tries every task, each in its own order
        start.wait(DEADLINE)
        for task_id, role, data in mine:
            try:
                status, body = api(port, bearer[role, k % 3], "POST", f"/tasks/{task_id}/complete", {"data": data})
            except OSError as err:  # counted as neither a win nor a 409
                status, body = 0, {"raw": repr(err)}
            with lock:
                results.append((task_id, status, body))

    with timers_held(rt.database_url) as wait_blocked:
        for name in ("timer-w1", "timer-w2"):
            start_timer_worker(processes, rt.database_url, name)
        wait_blocked(2)
    pool = [threading.Thread(target=complete_all, args=(k,), daemon=True) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(DEADLINE)
    assert not any(t.is_alive() for t in pool), "an HTTP client hung"

    task_ids = [task_id for task_id, _, _ in work]
    assert len(results) == threads * len(work)
    wins = Counter(task_id for task_id, status, _ in results if status == 200)
    assert wins == Counter(task_ids), "a completion was lost or doubled"
    losers = [(status, body) for _, status, body in results if status != 200]
    assert len(losers) == (threads - 1) * len(work)
    assert all(status == 409 and body.get("error") == "conflict" for status, body in losers), \
        [(status, body) for status, body in losers if status != 409][:5]
    with rt.read() as s:
        completed = Counter(s.scalars(select(AuditEvent.task_id).where(AuditEvent.action == "complete",
                                                                       AuditEvent.task_id.in_(task_ids))))
    assert completed == Counter(task_ids)
    assert count(rt, TaskRow, TaskRow.id.in_(task_ids), TaskRow.status == "completed") == len(task_ids)
    for flow in reviews:  # the step after the approval was taken once
        assert count(rt, TaskRow, TaskRow.instance_id == flow.id, TaskRow.spec_id == "draft_contract") == 1

    # the timers: all fired once, or (an escalation whose payment was recorded first) cancelled
    wait_for("the due timers fired", lambda: count(rt, Timer, Timer.status == "waiting",
                                                   Timer.due_at <= datetime.now(TZ)) == 0, processes)
    assert count(rt, Timer, Timer.status == "error") == 0
    installments = fired_per_instance(rt, "timer", "wait_installment_due")
    assert len(installments) == n_timers + n_payment and set(installments.values()) == {1}
    escalations = fired_per_instance(rt, "escalation", "payment_overdue")
    outcomes = Counter()
    for flow in payments:
        with rt.read() as s:
            statuses = tuple(s.scalars(select(Timer.status).where(Timer.instance_id == flow.id,
                                                                  Timer.spec_id == "payment_overdue")))
        opened = count(rt, TaskRow, TaskRow.instance_id == flow.id, TaskRow.spec_id == "overdue_escalation")
        assert (statuses, escalations[flow.id], opened) in {(("fired",), 1, 1), (("cancelled",), 0, 0)}, \
            (flow.id, statuses, escalations[flow.id], opened)
        outcomes[statuses[0]] += 1
    print(f"escalations against payments recorded: {dict(outcomes)}; "
          f"completions per web worker: {dict(served_by(access_log, 'POST'))}")
    assert_audit_verifies(rt)
    for name, _ in processes.running:
        assert "Traceback" not in processes.log(name), processes.log(name)
