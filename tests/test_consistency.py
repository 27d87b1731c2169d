"""The consistency checker: a healthy database passes, and each kind of torn or tampered row is reported for
the instance it belongs to (so the crash harness, which relies on it, can fail)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, insert, select, update

from models import AuditEvent, Instance, Step, TaskRow, Timer
from workflows.cli import main
from workflows.services import audit, consistency, timers

from .flow import Flow, quote


@pytest.fixture
def contracts(rt, clock) -> dict[str, Flow]:
    """One contract waiting on a review, one collecting payments after its first installment timer fired (so it
    has completed tasks, fired and waiting timers and a path)."""
    review = Flow(rt)
    review.act("prepare_quote", "rep1", quote())
    paying = Flow(rt)
    paying.to_collection()
    clock.set(datetime(2026, 12, 15, tzinfo=UTC))  # the first installment (PLAN) is due, not yet overdue
    assert timers.fire_due_timers(rt).fired >= 1
    return {"review": review, "paying": paying}


def problems(rt) -> list[consistency.Problem]:
    report = consistency.check_all(rt, batch=1)
    assert report.instances == 2
    return report.problems


def kinds_of(rt, instance_id: int | None) -> set[str]:
    return {p.kind for p in problems(rt) if p.instance_id == instance_id}


def execute(rt, statement) -> None:
    with rt.write() as s:
        s.execute(statement)


def one(rt, query):
    with rt.read() as s:
        return s.execute(query).first()


def test_a_healthy_database_passes(rt, contracts):
    report = consistency.check_all(rt)
    assert report.ok, [str(p) for p in report.problems]
    assert report.instances == 2 and report.audit is not None and report.audit.ok
    with rt.read() as s:  # the fixture holds what the checks below tear apart
        assert s.scalar(select(Timer.id).where(Timer.status == "fired")) is not None
        assert s.scalar(select(Timer.id).where(Timer.status == "waiting")) is not None
        assert s.scalar(select(Step.id)) is not None


def test_an_open_task_without_its_row(rt, contracts):
    flow = contracts["review"]
    execute(rt, delete(TaskRow).where(TaskRow.id == flow.task("supervisor_review").id))
    found = [p for p in problems(rt) if p.instance_id == flow.id]
    assert [p.kind for p in found] == ["tasks"]
    assert "READY" in found[0].message and "no open task row" in found[0].message


def test_an_open_row_whose_task_was_completed(rt, contracts):
    flow = contracts["paying"]
    done = one(rt, select(TaskRow.id).where(TaskRow.instance_id == flow.id, TaskRow.spec_id == "file_contract"))
    execute(rt, update(TaskRow).where(TaskRow.id == done.id).values(status="open"))
    found = [p for p in problems(rt) if p.instance_id == flow.id]
    assert {p.kind for p in found} == {"tasks", "audit"}, found  # and its complete event now belongs to no completion
    assert any(f"task row #{done.id}" in p.message and "is open but its engine task is" in p.message for p in found)


def test_a_completed_row_without_its_audit_event(rt, contracts):
    flow = contracts["review"]
    task_id = flow.task("supervisor_review").id
    execute(rt, update(TaskRow).where(TaskRow.id == task_id).values(status="completed"))
    found = [p for p in problems(rt) if p.instance_id == flow.id]
    assert {p.kind for p in found} == {"tasks", "audit"}, found
    assert any("0 'complete' audit event(s), not exactly one" in p.message for p in found)


def test_a_completion_recorded_twice(rt, contracts):
    flow = contracts["review"]
    done = one(rt, select(TaskRow.id, TaskRow.spec_id).where(TaskRow.instance_id == flow.id,
                                                              TaskRow.status == "completed"))
    with rt.write() as s:  # linked into the chain properly: only the count gives it away
        audit.record(s, rt.clock.now(), "complete", actor="rep1", instance_id=flow.id, task_id=done.id,
                     spec_id=done.spec_id)
    found = [p for p in problems(rt) if p.instance_id == flow.id]
    assert any(p.kind == "audit" and "2 'complete' audit event(s)" in p.message for p in found), found
    assert any(p.kind == "version" for p in found), found  # two completions counted, one step taken


def test_a_waiting_timer_without_its_row(rt, contracts):
    flow = contracts["paying"]
    execute(rt, delete(Timer).where(Timer.instance_id == flow.id, Timer.status == "waiting"))
    found = [p for p in problems(rt) if p.instance_id == flow.id]
    assert found and {p.kind for p in found} == {"timers"}
    assert "no timer row waits for it" in found[0].message


def test_a_waiting_row_whose_timer_fired_and_a_wrong_due_time(rt, contracts):
    flow = contracts["paying"]
    fired = one(rt, select(Timer.id).where(Timer.instance_id == flow.id, Timer.status == "fired"))
    waiting = one(rt, select(Timer.id, Timer.due_at).where(Timer.instance_id == flow.id, Timer.status == "waiting"))
    execute(rt, update(Timer).where(Timer.id == fired.id).values(status="waiting"))
    execute(rt, update(Timer).where(Timer.id == waiting.id).values(due_at=waiting.due_at + timedelta(hours=1)))
    found = [str(p) for p in problems(rt) if p.instance_id == flow.id and p.kind == "timers"]
    assert any(f"timer row #{fired.id}" in m and "is waiting but its engine task is" in m for m in found), found
    assert any(f"timer row #{waiting.id} is due" in m for m in found), found


def test_a_timer_that_fired_twice(rt, contracts):
    flow = contracts["paying"]
    event = one(rt, select(AuditEvent.action, AuditEvent.spec_id, AuditEvent.data)
                .where(AuditEvent.instance_id == flow.id, AuditEvent.action == "timer"))
    with rt.write() as s:
        audit.record(s, rt.clock.now() + timedelta(seconds=1), "timer", actor="worker", instance_id=flow.id,
                     spec_id=event.spec_id, data=event.data)
    found = [p for p in problems(rt) if p.instance_id == flow.id]
    assert any(p.kind == "audit" and "fired twice" in p.message for p in found), found


def test_a_version_that_does_not_count_the_steps(rt, contracts):
    flow = contracts["review"]
    execute(rt, update(Instance).where(Instance.id == flow.id).values(version=Instance.version + 1))
    assert kinds_of(rt, flow.id) == {"version"}
    execute(rt, update(Instance).where(Instance.id == flow.id).values(version=Instance.version - 2))
    assert kinds_of(rt, flow.id) == {"version"}


def test_a_step_in_the_path_twice_or_still_live(rt, contracts):
    flow = contracts["paying"]
    step = one(rt, select(Step.task_uuid, Step.spec_id, Step.spec_type, Step.name, Step.state, Step.finished_at)
               .where(Step.instance_id == flow.id))
    execute(rt, insert(Step).values(instance_id=flow.id, **step._asdict()))
    found = [p.message for p in problems(rt) if p.instance_id == flow.id]
    assert found == [f"the engine task {step.task_uuid} is in the path 2 times"]

    live = flow.task("record_payment")
    with rt.read() as s:
        task_uuid = s.scalar(select(TaskRow.task_uuid).where(TaskRow.id == live.id))
    execute(rt, insert(Step).values(instance_id=flow.id, task_uuid=task_uuid, spec_id="record_payment",
                                    spec_type="UserTask", name=None, state="COMPLETED", finished_at=rt.clock.now()))
    found = [p.message for p in problems(rt) if p.instance_id == flow.id and p.kind == "path"]
    assert any("is both in the live state and in the path" in m for m in found), found


def test_an_unreadable_state_and_a_wrong_status(rt, contracts):
    review, paying = contracts["review"], contracts["paying"]
    execute(rt, update(Instance).where(Instance.id == review.id).values(state='{"tasks": '))
    execute(rt, update(Instance).where(Instance.id == paying.id).values(status="completed"))
    found = problems(rt)
    assert [p.kind for p in found if p.instance_id == review.id] == ["state"]
    assert [p.kind for p in found if p.instance_id == paying.id] == ["status"]


def test_tampered_audit_is_reported_as_a_chain_break(rt, contracts):
    flow = contracts["review"]
    execute(rt, update(AuditEvent).where(AuditEvent.instance_id == flow.id, AuditEvent.action == "start")
            .values(actor="mallory"))
    found = problems(rt)
    assert any(p.kind == "chain" and f"i:{flow.id}" in p.message and "altered" in p.message for p in found), found


def test_the_check_command(rt, contracts, db_url):
    clean = CliRunner().invoke(main, ["--db", db_url, "check"])
    assert clean.exit_code == 0, clean.output
    assert "consistent: 2 instance(s) checked" in clean.stdout
    flow = contracts["review"]
    execute(rt, delete(TaskRow).where(TaskRow.id == flow.task("supervisor_review").id))
    torn = CliRunner().invoke(main, ["--db", db_url, "check", "--batch", "1"])
    assert torn.exit_code == 1, torn.output
    assert f"PROBLEM {flow.started.business_key} (instance {flow.id}): [tasks]" in torn.stdout
    assert "1 problem(s) in 1 of 2 instance(s)" in torn.stdout

