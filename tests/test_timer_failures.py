"""The timer worker meets a process that fails: whatever the failure, it is recorded against the timer (one
attempt, the reason, a ``timer_error`` event) and the other timers fire; and a failure is never recorded on a
timer that a completion or another worker fired or cancelled in the meantime."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, select, update

from models import AuditEvent, Instance, Timer
from workflows.engine import sandbox
from workflows.services import timers

from .test_hostile_bpmn import waiting_on_timers

CALM = {"calm": "doubled = quantity * 2"}


def timer_of(rt, instance_id: int) -> Timer:
    with rt.read() as s:
        return s.scalar(select(Timer).where(Timer.instance_id == instance_id))


def timer_errors(rt) -> list[AuditEvent]:
    with rt.read() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == "timer_error")))


def statuses(rt, ids: list[int]) -> list[str]:
    with rt.read() as s:
        return [s.get(Instance, i).status for i in ids]


@pytest.mark.timeout(120)
def test_an_unexpected_error_while_firing_is_recorded_and_the_pass_goes_on(rt, clock, monkeypatch):
    ids = waiting_on_timers(rt, CALM, ["calm"] * 3)["calm"]
    real = timers.runner.fire_timers
    calls = []

    def fire_timers(workflow):
        calls.append(workflow)
        if len(calls) == 1:
            raise RuntimeError("boom")  # not an engine error: a bug, a broken cache, anything
        return real(workflow)

    monkeypatch.setattr(timers.runner, "fire_timers", fire_timers)
    clock.set(clock.now() + timedelta(days=2))
    report = timers.fire_due_timers(rt)
    assert (report.errors, report.instances, report.fired) == (1, 2, 2)
    (failed,) = [i for i in ids if timer_of(rt, i).status == "waiting"]
    row = timer_of(rt, failed)
    assert (row.attempts, row.last_error) == (1, "unexpected error: boom")
    assert [(e.instance_id, e.data) for e in timer_errors(rt)] == [
        (failed, {"error": "unexpected error: boom", "attempts": 1})]
    assert sorted(statuses(rt, ids)) == ["completed", "completed", "running"]

    # the next pass fires it: the failed attempt left its instance as it was
    report = timers.fire_due_timers(rt)
    assert (report.errors, report.instances, report.fired) == (0, 1, 1)
    assert statuses(rt, ids) == ["completed"] * 3


@pytest.mark.timeout(120)
def test_a_save_that_fails_in_the_worker_is_recorded(rt, clock, monkeypatch):
    # the sandbox's data check switched off: the save itself refuses (ProcessError), which used to escape the pass
    monkeypatch.setattr(sandbox, "_check_data", lambda *args, **kwargs: None)
    ids = waiting_on_timers(rt, {"ranged": "s = range(3)\ndoubled = 1", **CALM}, ["ranged", "calm"])
    clock.set(clock.now() + timedelta(days=2))
    report = timers.fire_due_timers(rt)
    assert (report.errors, report.instances, report.fired) == (1, 1, 1)
    row = timer_of(rt, ids["ranged"][0])
    assert (row.status, row.attempts) == ("waiting", 1)
    assert row.last_error.startswith("the contract's data cannot be saved (Object of type range is not JSON")
    assert statuses(rt, ids["ranged"] + ids["calm"]) == ["running", "completed"]


@pytest.mark.timeout(120)
def test_the_fifth_failure_marks_the_timer_as_error(rt, clock):
    ids = waiting_on_timers(rt, {"ranged": "s = range(3)\ndoubled = 1"}, ["ranged"])["ranged"]
    clock.set(clock.now() + timedelta(days=2))
    for _ in range(timers.MAX_ATTEMPTS + 1):
        timers.fire_due_timers(rt)
    row = timer_of(rt, ids[0])
    assert (row.status, row.attempts) == ("error", timers.MAX_ATTEMPTS)
    assert [e.data["attempts"] for e in timer_errors(rt)] == list(range(1, timers.MAX_ATTEMPTS + 1))


@pytest.mark.timeout(120)
def test_a_failure_is_not_recorded_on_a_timer_another_worker_fired_meanwhile(rt, clock, monkeypatch):
    ids = waiting_on_timers(rt, CALM, ["calm"])["calm"]
    real_fire, real_record = timers.runner.fire_timers, timers.record_timer_failure
    failing = [True]

    def fire_timers(workflow):
        if failing[0]:
            raise RuntimeError("a passing failure")
        return real_fire(workflow)

    def record_timer_failure(rt_, timer_id, failure, now, worker="worker"):
        # between the failed attempt and its record, another worker fires the timer (the failure has passed)
        failing[0] = False
        assert timers.fire_due_timers(rt_, worker="other").fired == 1
        return real_record(rt_, timer_id, failure, now, worker)

    monkeypatch.setattr(timers.runner, "fire_timers", fire_timers)
    monkeypatch.setattr(timers, "record_timer_failure", record_timer_failure)
    clock.set(clock.now() + timedelta(days=2))
    report = timers.fire_due_timers(rt)
    assert report.errors == 1  # this worker's attempt failed ...
    row = timer_of(rt, ids[0])
    assert (row.status, row.attempts, row.last_error) == ("fired", 0, None)  # ... but the row is the other's
    assert timer_errors(rt) == []
    assert statuses(rt, ids) == ["completed"]
    with rt.read() as s:
        actors = list(s.scalars(select(AuditEvent.actor).where(AuditEvent.action == "timer")))
    assert actors == ["other"]


@pytest.mark.parametrize("status", ["fired", "cancelled", "error"])
def test_recording_a_failure_leaves_a_timer_that_is_no_longer_waiting_alone(rt, clock, status):
    ids = waiting_on_timers(rt, CALM, ["calm"])["calm"]
    timer_id = timer_of(rt, ids[0]).id
    with rt.write() as s:
        s.execute(update(Timer).where(Timer.id == timer_id).values(status=status))
    assert timers.record_timer_failure(rt, timer_id, "late", clock.now()) is False
    row = timer_of(rt, ids[0])
    assert (row.status, row.attempts, row.last_error) == (status, 0, None)
    assert timer_errors(rt) == []
    assert timers.record_timer_failure(rt, 10**9, "no such timer", clock.now()) is False

    with rt.write() as s:
        s.execute(update(Timer).where(Timer.id == timer_id).values(status="waiting"))
    assert timers.record_timer_failure(rt, timer_id, "now it counts", clock.now()) is True
    row = timer_of(rt, ids[0])
    assert (row.status, row.attempts, row.last_error) == ("waiting", 1, "now it counts")
    assert [e.data for e in timer_errors(rt)] == [{"error": "now it counts", "attempts": 1}]


def test_recording_a_failure_locks_the_instance_before_the_timer(rt, clock):
    if not rt.postgres:
        pytest.skip("row locks are PostgreSQL's; SQLite serializes every writer")
    ids = waiting_on_timers(rt, CALM, ["calm"])["calm"]
    timer_id = timer_of(rt, ids[0]).id
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(" ".join(statement.split()))

    event.listen(rt.engine, "before_cursor_execute", seen)
    try:
        assert timers.record_timer_failure(rt, timer_id, "boom", clock.now()) is True
    finally:
        event.remove(rt.engine, "before_cursor_execute", seen)
    locks = [s for s in statements if " FOR " in s]
    assert "FROM instances" in locks[0] and locks[0].endswith("FOR NO KEY UPDATE"), locks
    assert "FROM timers" in locks[1] and locks[1].endswith("FOR UPDATE"), locks
    audit_at = next(i for i, s in enumerate(statements) if "audit" in s)
    assert statements.index(locks[1]) < audit_at, statements
