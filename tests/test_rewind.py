"""Withdraw (撤回) and return to an earlier step (驳回到指定节点) through the service layer: who may, when not,
what opens and what is cancelled, inside a parallel branch, after a loop, across a boundary timer, and the
process owner's barriers; every move audited, and the contract still runs to its end afterwards."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from models import AuditEvent, TaskRow, Timer
from workflows.services import consistency, instances, rewind, tasks, timers
from workflows.services.errors import Conflict, InvalidInput, PermissionDenied

from .flow import Flow, approve, quote
from .service_messages import raised_messages, untranslated

BIG = dict(total_price="150000.00", quantity=2)  # 300,000: supervisor, manager, then legal and finance in parallel


def _events(rt, instance_id: int, action: str) -> list[AuditEvent]:
    with rt.read() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.instance_id == instance_id,
                                                       AuditEvent.action == action).order_by(AuditEvent.id)))


def _row(rt, task_id: int) -> TaskRow:
    with rt.read() as s:
        return s.get(TaskRow, task_id)


def _completed(rt, instance_id: int, spec_id: str) -> TaskRow:
    with rt.read() as s:
        return s.scalars(select(TaskRow).where(TaskRow.instance_id == instance_id, TaskRow.spec_id == spec_id,
                                               TaskRow.status == "completed").order_by(TaskRow.id.desc())).first()


def _to_parallel_reviews(rt) -> Flow:
    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote(**BIG))
    f.act("supervisor_review", "sup1", approve("supervisor"))
    f.act("manager_review", "mgr1", approve("manager"))
    assert f.open_specs() == {"legal_review", "finance_review"}
    return f


# --- the engine on shapes quote_to_cash does not have -----------------------------------------------------------

def _engine(name: str):
    from pathlib import Path

    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
    from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser

    from workflows.engine import runner

    parser = SpiffBpmnParser()
    parser.add_bpmn_file(str(Path(__file__).parent / "bpmn" / f"{name}.bpmn"))
    wf = BpmnWorkflow(parser.get_spec(name), parser.get_subprocess_specs(name), script_engine=PythonScriptEngine())
    runner.step(wf)
    return wf


def _ready_names(wf) -> list[str]:
    from SpiffWorkflow.util.task import TaskState

    return sorted(t.task_spec.name for t in wf.get_tasks(state=TaskState.READY, manual=True))


def _run(wf, name: str, **data) -> None:
    from SpiffWorkflow.util.task import TaskState

    from workflows.engine import runner

    (task,) = [t for t in wf.get_tasks(state=TaskState.READY, manual=True) if t.task_spec.name == name]
    task.data.update({"repeat": False, **data})
    task.run()
    runner.step(wf)


def test_engine_return_into_a_joined_branch_before_a_loop_back():
    """Two parallel branches, a join, then a step that may loop back before the split: the loop's predicted
    tasks are no running branch, so returning from after the join into one branch re-arrives the other."""
    from workflows.engine import rewind as engine
    from workflows.engine import runner

    wf = _engine("two_way_loop")
    _run(wf, "a")
    _run(wf, "b")
    assert _ready_names(wf) == ["z"]
    engine.rewind(wf, "a", {"repeat": False})
    runner.step(wf)
    assert _ready_names(wf) == ["a"]
    _run(wf, "a")
    assert _ready_names(wf) == ["z"]
    _run(wf, "z")
    assert wf.is_completed()


def test_engine_withdraw_in_a_three_way_join_waits_for_the_redone_branch():
    """a and b arrived at a three-way join, c runs; b is withdrawn: the join must wait for b again, not count its
    earlier (cancelled) arrival, and must still remember a's."""
    from workflows.engine import rewind as engine
    from workflows.engine import runner

    wf = _engine("three_way_join")
    _run(wf, "a")
    _run(wf, "b")
    engine.rewind(wf, "b", {})
    runner.step(wf)
    assert _ready_names(wf) == ["b", "c"]
    _run(wf, "c")
    assert _ready_names(wf) == ["b"]  # not z: b is being redone
    _run(wf, "b")
    assert _ready_names(wf) == ["z"]
    _run(wf, "z")
    assert wf.is_completed()


def test_engine_refuses_a_branch_of_a_three_way_join_that_already_fired():
    from workflows.engine import rewind as engine

    wf = _engine("three_way_join")
    for name in "abc":
        _run(wf, name)
    with pytest.raises(engine.RewindRefused, match="several parallel branches"):
        engine.rewind(wf, "a", {})
    assert _ready_names(wf) == ["z"]


# --- the process owner's settings ------------------------------------------------------------------------------

def test_return_settings_are_checked_at_deploy():
    from workflows.engine.package import PackageError, build_package
    from workflows.services import accounts

    from .test_deploy import real_set

    barrier = '<spiffworkflow:property name="returnBarriers" value="customer_signature,record_payment" />'
    with pytest.raises(PackageError, match="returnBarriers names 'no_such_task', which is not a user task"):
        build_package(real_set(quote_to_cash__bpmn=(barrier, barrier.replace("customer_signature", "no_such_task"))),
                      known_roles=accounts.ROLE_CODES)
    stage = '<spiffworkflow:property name="stage" value="contract" />'
    with pytest.raises(PackageError, match="property 'returnable' must be true or false, not 'maybe'"):
        build_package(real_set(quote_to_cash__bpmn=(stage, stage + '<spiffworkflow:property name="returnable" '
                                                           'value="maybe" />')), known_roles=accounts.ROLE_CODES)
    built = build_package(real_set(quote_to_cash__bpmn=(stage, stage + '<spiffworkflow:property name="returnable" '
                                                               'value="false" />')), known_roles=accounts.ROLE_CODES)
    closed = sorted(t.spec_id for t in built.main.user_tasks.values() if not t.returnable)
    # record_payment is never reopened (a recorded payment stays recorded); the edit closed one more step
    assert len(closed) == 2 and "record_payment" in closed and built.main.return_barriers == (
        "customer_signature", "record_payment")


def test_a_step_marked_not_returnable_is_never_reopened(rt):
    """A new version marks the supervisor review returnable="false": contracts started on it neither offer it as a
    return target nor let the supervisor withdraw it."""
    from workflows.services import deployments

    from .test_deploy import real_set

    rule = '<spiffworkflow:property name="fourEyesExclude" value="prepare_quote" />'
    deployments.deploy_files(rt, real_set(quote_to_cash__bpmn=(
        rule, rule + '<spiffworkflow:property name="returnable" value="false" />')), comment="lock supervisor review")
    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote(**BIG))
    f.act("supervisor_review", "sup1", approve("supervisor"))
    done = _completed(rt, f.id, "supervisor_review")
    state = rewind.withdraw_state(rt, done.id, f.user("sup1"))
    assert not state.allowed and state.reason.endswith("cannot be reopened (the process marks it so)")
    review = f.task("manager_review")
    targets = {t.spec_id: t for t in rewind.return_targets(rt, review.id, f.user("mgr1"))}
    assert targets["supervisor_review"].reason == "not_returnable" and targets["prepare_quote"].offered
    with pytest.raises(Conflict, match="cannot be reopened"):
        rewind.return_to(rt, review.id, f.user("mgr1"), "supervisor_review", "again")


# --- withdraw ------------------------------------------------------------------------------------------------

def test_withdraw_reopens_the_step_for_its_completer_with_their_data(rt):
    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote(total_price="12345.00", customer_name="撤回客户"))
    review = f.task("supervisor_review")
    done = _completed(rt, f.id, "prepare_quote")
    assert rewind.withdraw_state(rt, done.id, f.user("rep1")).allowed
    moved = rewind.withdraw(rt, done.id, f.user("rep1"))
    assert f.open_specs() == {"prepare_quote"}
    again = f.task("prepare_quote")
    assert again.assignee == "rep1"  # theirs at once
    assert _row(rt, review.id).status == "cancelled"
    assert moved.cancelled_task_ids == [review.id] and moved.new_task_ids == [again.id]
    data = instances.instance_data(rt, f.id)
    assert data["customer_name"] == "撤回客户" and str(data["line_items"][0]["unit_price"]) == "12345.00"
    [event] = _events(rt, f.id, "withdraw")
    assert event.actor == "rep1" and event.task_id == done.id
    assert event.data == {"cancelled": [review.id], "opened": [again.id]}
    assert [e.task_id for e in _events(rt, f.id, "cancel")] == [review.id]
    # the contract flows on as before
    f.act("prepare_quote", "rep1", quote())
    f.act("supervisor_review", "sup1", approve("supervisor"))
    assert "draft_contract" in f.open_specs()


def test_withdraw_is_refused_once_the_next_step_is_completed(rt):
    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote())
    f.act("supervisor_review", "sup1", approve("supervisor"))
    done = _completed(rt, f.id, "prepare_quote")
    state = rewind.withdraw_state(rt, done.id, f.user("rep1"))
    assert not state.allowed and "sup1 has since completed 'Supervisor review" in state.reason
    before = f.open_specs()
    with pytest.raises(Conflict, match="can no longer be withdrawn: sup1 has since completed"):
        rewind.withdraw(rt, done.id, f.user("rep1"))
    assert f.open_specs() == before
    assert _events(rt, f.id, "withdraw") == []


def test_only_the_completer_may_withdraw(rt):
    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote())
    done = _completed(rt, f.id, "prepare_quote")
    for other in ("rep2", "sup1", "admin"):
        assert not rewind.withdraw_state(rt, done.id, f.user(other)).allowed
        with pytest.raises(PermissionDenied):
            rewind.withdraw(rt, done.id, f.user(other))
    assert f.open_specs() == {"supervisor_review"}


def test_withdraw_of_an_open_task_or_with_a_stale_view_is_a_conflict(rt):
    f = Flow(rt)
    with pytest.raises(Conflict, match="not completed"):
        rewind.withdraw(rt, f.task("prepare_quote").id, f.user("rep1"))
    f.act("prepare_quote", "rep1", quote())
    done = _completed(rt, f.id, "prepare_quote")
    with pytest.raises(Conflict, match="changed since you opened"):
        rewind.withdraw(rt, done.id, f.user("rep1"), expected_version=1)
    version = f.view().version
    rewind.withdraw(rt, done.id, f.user("rep1"), expected_version=version)
    # a double submit of the same page changes nothing more
    with pytest.raises(Conflict, match="changed since you opened"):
        rewind.withdraw(rt, done.id, f.user("rep1"), expected_version=version)
    assert len(_events(rt, f.id, "withdraw")) == 1 and f.open_specs() == {"prepare_quote"}


def test_withdraw_inside_a_parallel_branch_keeps_the_other_branch(rt):
    f = _to_parallel_reviews(rt)
    finance = f.task("finance_review")
    f.act("legal_review", "legal1", approve("legal"))
    assert f.open_specs() == {"finance_review"}
    done = _completed(rt, f.id, "legal_review")
    rewind.withdraw(rt, done.id, f.user("legal1"))
    assert f.open_specs() == {"legal_review", "finance_review"}
    assert f.task("finance_review").id == finance.id  # untouched
    f.act("finance_review", "fin1", approve("finance"))
    assert f.open_specs() == {"legal_review"}  # the join waits for the reopened branch
    f.act("legal_review", "legal1", approve("legal"))
    assert f.open_specs() == {"draft_contract"}


# --- return to an earlier step -------------------------------------------------------------------------------

def test_return_to_the_rep_from_manager_review(rt):
    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote(**BIG))
    f.act("supervisor_review", "sup1", approve("supervisor"))
    review = f.task("manager_review")
    targets = {t.spec_id: t for t in rewind.return_targets(rt, review.id, f.user("mgr1"))}
    assert set(targets) == {"prepare_quote", "supervisor_review"}
    assert all(t.offered for t in targets.values())
    with pytest.raises(InvalidInput) as err:
        rewind.return_to(rt, review.id, f.user("mgr1"), "prepare_quote", "  ")
    assert "comment" in err.value.errors
    moved = rewind.return_to(rt, review.id, f.user("mgr1"), "prepare_quote", "价格需重新核算 / recheck prices")
    assert f.open_specs() == {"prepare_quote"}
    again = f.task("prepare_quote")
    assert again.assignee == "rep1"  # back to whoever did it, as after a send-back
    assert _row(rt, review.id).status == "cancelled"
    [event] = _events(rt, f.id, "return_to_step")
    assert event.actor == "mgr1" and event.task_id == review.id
    assert event.data["to"] == "prepare_quote" and event.data["comment"] == "价格需重新核算 / recheck prices"
    assert event.data["opened"] == moved.new_task_ids == [again.id]
    # "why is this mine" lists hands, not moves: the reopened step came back to rep1 by the send-back rule
    from workflows.services import routing

    assert [a.action for a in routing.explain(rt, review.id, f.user("mgr1")).assignments] == []
    assert [(a.action, a.to_user) for a in routing.explain(rt, again.id, f.user("rep1")).assignments] == [
        ("return", "rep1")]
    # forward along the BPMN from there: every approval again
    f.act("prepare_quote", "rep1", quote(**BIG))
    assert f.open_specs() == {"supervisor_review"}


def test_return_to_a_reviewer_opens_it_for_the_role(rt):
    """Approvals are four-eyes tasks: they go to the role's queue, not straight to a person."""
    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote(**BIG))
    f.act("supervisor_review", "sup1", approve("supervisor"))
    rewind.return_to(rt, f.task("manager_review").id, f.user("mgr1"), "supervisor_review", "please check discount")
    again = f.task("supervisor_review")
    assert again.assignee is None and again.role == "supervisor"


def test_only_who_may_complete_the_task_may_return_it(rt):
    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote(**BIG))
    f.act("supervisor_review", "sup1", approve("supervisor"))
    review = f.task("manager_review")
    for other in ("rep1", "sup1", "legal1", "audit1"):
        assert rewind.return_targets(rt, review.id, f.user(other)) == []
        with pytest.raises((PermissionDenied, Conflict)):
            rewind.return_to(rt, review.id, f.user(other), "prepare_quote", "not mine to return")
    assert f.open_specs() == {"manager_review"}
    tasks.claim(rt, review.id, f.user("mgr1"))
    with pytest.raises(Conflict, match="claimed by mgr1"):
        rewind.return_to(rt, review.id, f.user("dir1"), "prepare_quote", "director tries")


def test_return_refuses_a_step_not_passed(rt):
    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote())
    review = f.task("supervisor_review")
    for target in ("draft_contract", "supervisor_review", "nonsense"):
        with pytest.raises(InvalidInput):
            rewind.return_to(rt, review.id, f.user("sup1"), target, "why")
    assert f.open_specs() == {"supervisor_review"}


def test_return_to_a_step_inside_a_parallel_branch_while_the_other_runs(rt):
    f = _to_parallel_reviews(rt)
    f.act("legal_review", "legal1", approve("legal"))
    finance = f.task("finance_review")
    targets = {t.spec_id: t for t in rewind.return_targets(rt, finance.id, f.user("fin1"))}
    # the legal review is beside the finance review: returning there would not bring finance back
    assert not targets["legal_review"].offered and targets["legal_review"].reason == "beside"
    assert targets["manager_review"].offered and targets["prepare_quote"].offered
    with pytest.raises(Conflict, match="another branch"):
        rewind.return_to(rt, finance.id, f.user("fin1"), "legal_review", "legal again")
    assert f.open_specs() == {"finance_review"}


def test_return_into_a_parallel_branch_after_the_join(rt):
    """From the contract draft back to the legal review: the finance branch already went through the join, so
    its arrival is made again and the join waits only for the reopened legal review."""
    f = _to_parallel_reviews(rt)
    f.act("legal_review", "legal1", approve("legal"))
    f.act("finance_review", "fin1", approve("finance"))
    draft = f.task("draft_contract")
    targets = {t.spec_id: t for t in rewind.return_targets(rt, draft.id, f.user("rep1"))}
    assert targets["legal_review"].offered and targets["finance_review"].offered
    rewind.return_to(rt, draft.id, f.user("rep1"), "legal_review", "customer changed the liability clause")
    assert f.open_specs() == {"legal_review"}
    f.act("legal_review", "legal1", approve("legal"))
    assert f.open_specs() == {"draft_contract"}
    data = instances.instance_data(rt, f.id)
    assert data["finance_decision"] == "approve" and data["legal_decision"] == "approve"


def test_return_from_the_parallel_region_to_before_the_split_cancels_both_branches(rt):
    f = _to_parallel_reviews(rt)
    f.act("legal_review", "legal1", approve("legal"))
    finance = f.task("finance_review")
    rewind.return_to(rt, finance.id, f.user("fin1"), "prepare_quote", "payment terms unacceptable")
    assert f.open_specs() == {"prepare_quote"}
    with rt.read() as s:  # the legal arrival waiting at the join is gone too: a new pass starts clean
        assert s.scalar(select(TaskRow.status).where(TaskRow.id == finance.id)) == "cancelled"
    f.act("prepare_quote", "rep1", quote(**BIG))
    f.act("supervisor_review", "sup1", approve("supervisor"))
    f.act("manager_review", "mgr1", approve("manager"))
    assert f.open_specs() == {"legal_review", "finance_review"}
    f.act("finance_review", "fin1", approve("finance"))
    assert f.open_specs() == {"legal_review"}  # the join did not fire on the old legal arrival
    f.act("legal_review", "legal1", approve("legal"))
    assert f.open_specs() == {"draft_contract"}


def test_return_after_a_send_back_loop(rt):
    f = Flow(rt)
    for _ in range(3):  # three passes of the send-back loop
        f.act("prepare_quote", "rep1", quote())
        f.act("supervisor_review", "sup1", {"supervisor_decision": "send_back", "supervisor_comment": "again"})
    f.act("prepare_quote", "rep1", quote())
    f.act("supervisor_review", "sup1", approve("supervisor"))
    f.act("draft_contract", "rep1", {"contract_no": "HT-1", "contract_terms": "Standard terms",
                                     "payment_plan": [{"amount": "24000.00", "due_date": "2026-12-15"}],
                                     "sign_by": "2026-12-01"})
    check = f.task("legal_contract_check")
    targets = [t.spec_id for t in rewind.return_targets(rt, check.id, f.user("legal1"))]
    assert targets == ["prepare_quote", "supervisor_review", "draft_contract"]  # each once, first done first
    rewind.return_to(rt, check.id, f.user("legal1"), "supervisor_review", "discount above policy")
    assert f.open_specs() == {"supervisor_review"}
    f.act("supervisor_review", "sup1", approve("supervisor"))
    assert f.open_specs() == {"draft_contract"}


def test_steps_behind_the_signature_barrier_are_not_offered(rt):
    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote())
    f.act("supervisor_review", "sup1", approve("supervisor"))
    f.through_contract()
    delivery = f.task("execute_delivery")
    targets = {t.spec_id: t for t in rewind.return_targets(rt, delivery.id, f.user("dlv1"))}
    for closed in ("prepare_quote", "supervisor_review", "draft_contract", "legal_contract_check",
                   "sign_company", "customer_signature"):
        assert not targets[closed].offered and targets[closed].reason == "closed", closed
        assert targets[closed].by == "Customer signature / 客户签署"
    assert targets["file_contract"].offered
    with pytest.raises(Conflict, match="is closed: 'Customer signature / 客户签署' has been completed"):
        rewind.return_to(rt, delivery.id, f.user("dlv1"), "draft_contract", "reopen the contract")
    rewind.return_to(rt, delivery.id, f.user("dlv1"), "file_contract", "filing number wrong")
    assert f.open_specs() == {"file_contract"}
    filed = f.task("file_contract")
    assert filed.assignee == "legal1"
    # the signature itself cannot be withdrawn by the rep either
    signed = _completed(rt, f.id, "customer_signature")
    assert not rewind.withdraw_state(rt, signed.id, f.user("rep1")).allowed


def test_return_to_a_step_with_a_boundary_timer_arms_a_fresh_timer(rt, clock):
    """record_payment carries the non-interrupting overdue escalation: the manager handling the escalation sends
    the contract back to record the payment again; the open payment task and its timer are replaced, once.
    The shipped process marks record_payment returnable="false" (a recorded payment stays recorded), so this
    engine property is tested on a version of it without that mark."""
    from workflows.services import deployments

    from .test_deploy import real_set

    files = real_set(quote_to_cash__bpmn=('<spiffworkflow:property name="returnable" value="false" />', ''))
    files["quote_to_cash.bpmn"] = files["quote_to_cash.bpmn"].replace(b"customer_signature,record_payment",
                                                                      b"customer_signature")
    deployments.deploy_files(rt, files, comment="record_payment returnable and no barrier")
    f = Flow(rt)
    f.to_collection()
    clock.set(datetime(2026, 12, 15, 1, 0, tzinfo=UTC))
    assert timers.fire_due_timers(rt).fired == 1
    f.act("record_payment", "fin1", {"amount_received": "7200.00", "received_on": "2026-12-15",
                                     "payment_reference": "BANK-1"})
    clock.set(datetime(2027, 1, 15, 1, 0, tzinfo=UTC))
    assert timers.fire_due_timers(rt).fired == 1
    clock.set(datetime(2027, 1, 22, 16, 0, 1, tzinfo=UTC))
    assert timers.fire_due_timers(rt).fired == 1
    assert f.open_specs() == {"record_payment", "overdue_escalation"}
    payment, escalation = f.task("record_payment"), f.task("overdue_escalation")
    targets = {t.spec_id: t for t in rewind.return_targets(rt, escalation.id, f.user("mgr1"))}
    assert targets["record_payment"].offered
    assert not targets["service_onboarding"].offered and targets["service_onboarding"].reason == "beside"
    rewind.return_to(rt, escalation.id, f.user("mgr1"), "record_payment", "customer paid by another account")
    # a new payment task with a new escalation timer; the installment is still overdue, so it fires at once
    assert f.open_specs() == {"record_payment", "overdue_escalation"}
    assert f.task("record_payment").id != payment.id and _row(rt, payment.id).status == "cancelled"
    assert f.task("overdue_escalation").id != escalation.id and _row(rt, escalation.id).status == "cancelled"
    with rt.read() as s:
        overdue = s.execute(select(Timer.task_uuid, Timer.status).where(
            Timer.instance_id == f.id, Timer.spec_id == "payment_overdue").order_by(Timer.id)).all()
    # the first installment's escalation was cancelled by its payment; the second fired twice, on two timers
    assert [st for _, st in overdue] == ["cancelled", "fired", "fired"] and overdue[1][0] != overdue[2][0]
    f.act("overdue_escalation", "mgr1", {"escalation_action": "Called the CFO", "next_contact_on": "2027-01-25"})
    f.act("record_payment", "fin1", {"amount_received": "16800.00", "received_on": "2027-01-24",
                                     "payment_reference": "BANK-2"})
    assert f.view().status == "completed"
    assert consistency.check_instances(rt, [f.id]) == []


def test_moves_keep_the_records_consistent(rt):
    f = _to_parallel_reviews(rt)
    f.act("legal_review", "legal1", approve("legal"))
    f.act("finance_review", "fin1", approve("finance"))
    rewind.return_to(rt, f.task("draft_contract").id, f.user("rep1"), "finance_review", "bank changed")
    assert consistency.check_instances(rt, [f.id]) == []
    f.act("finance_review", "fin1", approve("finance"))
    rewind.withdraw(rt, _completed(rt, f.id, "finance_review").id, f.user("fin1"))
    assert consistency.check_instances(rt, [f.id]) == []
    f.act("finance_review", "fin1", approve("finance"))
    f.through_contract(plan=[{"amount": str(f.data()["amount"]), "due_date": "2026-12-15"}])  # the plan fits
    f.through_delivery()
    assert consistency.check_instances(rt, [f.id]) == []
    report = consistency.check_all(rt)
    assert report.problems == []


# --- the task page -------------------------------------------------------------------------------------------

def test_withdraw_from_the_task_page_in_both_languages(rt, login):
    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote())
    done = _completed(rt, f.id, "prepare_quote")
    rep = login("rep1")  # the demo users read Chinese
    key = f.view().business_key
    contract = rep.text(f"/contracts/{key}")  # the contract page points to it
    assert "「编制报价」由您完成，此后合同上尚无人办理：您仍可撤回。" in contract
    assert f'href="/tasks/{done.id}" data-action="open-withdraw"' in contract
    assert "data-withdrawable" not in login("sup1").text(f"/contracts/{key}")
    page = rep.text(f"/tasks/{done.id}")
    assert "撤回此环节" in page and f'action="/tasks/{done.id}/withdraw"' in page
    # without the form's CSRF token nothing happens
    assert rep.client.post(f"/tasks/{done.id}/withdraw", data={"version": f.view().version}).status_code == 400
    assert f.open_specs() == {"supervisor_review"}
    # a stale page (the contract moved since) is refused with the reason, nothing changes
    stale = rep.post(f"/tasks/{done.id}/withdraw", {"version": "1"}, page=f"/tasks/{done.id}")
    assert stale.status_code == 409 and "合同已被他人推进" in stale.get_data(as_text=True)
    sent = rep.post(f"/tasks/{done.id}/withdraw", {"version": f.view().version}, page=f"/tasks/{done.id}")
    again = f.task("prepare_quote")
    assert sent.status_code == 302 and sent.headers["Location"].endswith(f"/tasks/{again.id}")
    page = rep.text(f"/tasks/{again.id}")
    assert "已撤回：此环节已为您重新打开。" in page and "撤回了" in page
    # others see no button; once the supervisor acted, the rep sees why not
    f.act("prepare_quote", "rep1", quote())
    done = _completed(rt, f.id, "prepare_quote")
    assert "撤回此环节" not in login("sup1").text(f"/tasks/{done.id}")
    f.act("supervisor_review", "sup1", approve("supervisor"))
    rep.post("/language", {"lang": "en"})
    page = rep.text(f"/tasks/{done.id}")
    assert "Withdraw this step" not in page
    assert "can no longer be withdrawn: sup1 has since completed" in page
    assert "data-withdrawable" not in rep.text(f"/contracts/{key}")


def test_return_from_the_task_page_in_both_languages(rt, login):
    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote(**BIG))
    f.act("supervisor_review", "sup1", approve("supervisor"))
    review = f.task("manager_review")
    mgr = login("mgr1")
    page = mgr.text(f"/tasks/{review.id}")
    assert "驳回到指定环节" in page and 'value="prepare_quote"' in page and 'value="supervisor_review"' in page
    # no comment: the page again, the choice kept, nothing moved
    bare = mgr.post(f"/tasks/{review.id}/return", {"target": "prepare_quote", "comment": " ",
                                                   "version": review.instance_version}, page=f"/tasks/{review.id}")
    assert bare.status_code == 422 and "请说明需要重做什么以及原因" in bare.get_data(as_text=True)
    assert 'value="prepare_quote" checked' in bare.get_data(as_text=True)
    assert f.open_specs() == {"manager_review"}
    sent = mgr.post(f"/tasks/{review.id}/return", {"target": "prepare_quote", "comment": "单价需重新核算",
                                                   "version": review.instance_version}, page=f"/tasks/{review.id}")
    assert sent.status_code == 302 and sent.headers["Location"].endswith(f"/contracts/{f.view().business_key}")
    assert f.open_specs() == {"prepare_quote"}
    page = mgr.text(f"/contracts/{f.view().business_key}")
    assert "已驳回：合同已回到所选环节。" in page and "驳回合同，自" in page and "单价需重新核算" in page
    mgr.post("/language", {"lang": "en"})
    assert "returned the contract from" in mgr.text(f"/contracts/{f.view().business_key}")


def test_closed_steps_are_shown_with_the_reason(rt, login):
    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote())
    f.act("supervisor_review", "sup1", approve("supervisor"))
    f.through_contract()
    delivery = f.task("execute_delivery")
    dlv = login("dlv1")
    page = dlv.text(f"/tasks/{delivery.id}")
    assert 'data-not-offered="closed"' in page and "已关闭：「客户签署」已完成，流程不再重新打开此前的环节。" in page
    assert 'value="draft_contract" disabled' in page and 'value="file_contract" required' in page
    refused = dlv.post(f"/tasks/{delivery.id}/return", {"target": "draft_contract", "comment": "reopen",
                                                        "version": delivery.instance_version},
                       page=f"/tasks/{delivery.id}")
    assert refused.status_code == 409 and "「起草合同」已关闭：「客户签署」已完成" in refused.get_data(as_text=True)
    assert f.open_specs() == {"execute_delivery"}


def test_refusals_on_the_web(rt, login):
    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote())
    review = f.task("supervisor_review")
    done = _completed(rt, f.id, "prepare_quote")
    version = f.view().version
    for user in ("rep2", "sup1", "dir1", "admin"):
        denied = login(user).post(f"/tasks/{done.id}/withdraw", {"version": version})
        assert denied.status_code == 403, user
    for user in ("rep1", "mgr1", "legal1"):
        denied = login(user).post(f"/tasks/{review.id}/return", {"target": "prepare_quote", "comment": "x",
                                                                 "version": version})
        assert denied.status_code == 403, user
    assert login("rep1").post(f"/tasks/{review.id + 1000}/withdraw", {"version": version}).status_code == 404
    assert f.open_specs() == {"supervisor_review"}
    assert _events(rt, f.id, "withdraw") == [] and _events(rt, f.id, "return_to_step") == []


def _race(rt, withdraw_call, approve_call) -> dict[str, str]:
    import threading

    start = threading.Barrier(2)
    results: dict[str, str] = {}

    def run(name, call):
        start.wait()
        try:
            call()
            results[name] = "ok"
        except Conflict as err:
            results[name] = err.message

    threads = [threading.Thread(target=run, args=("withdraw", withdraw_call)),
               threading.Thread(target=run, args=("approve", approve_call))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_withdraw_racing_the_next_step_one_wins(rt):
    """The rep withdraws while the supervisor approves: the instance lock orders them, so either the approval
    stands and the withdraw is refused, or the withdraw stands and the approval finds its task cancelled."""
    for _ in range(6):
        f = Flow(rt)
        f.act("prepare_quote", "rep1", quote())
        done, review = _completed(rt, f.id, "prepare_quote"), f.task("supervisor_review")
        rep, sup = f.user("rep1"), f.user("sup1")
        results = _race(rt, lambda d=done.id, u=rep: rewind.withdraw(rt, d, u),
                        lambda r=review.id, u=sup: tasks.complete(rt, r, u, approve("supervisor")))
        assert sorted(v == "ok" for v in results.values()) == [False, True], results
        if results["withdraw"] == "ok":
            assert f.open_specs() == {"prepare_quote"} and _row(rt, review.id).status == "cancelled"
        else:
            assert "sup1 has since completed" in results["withdraw"]
            assert "draft_contract" in f.open_specs()
        assert consistency.check_instances(rt, [f.id]) == []


# --- with the other power tools --------------------------------------------------------------------------------

def test_withdraw_is_refused_after_a_return_or_an_added_signer(rt):
    """Nothing but changes of hands may happen after a completion that is to be withdrawn: a return to an earlier
    step, an approval with an approver added, an opinion asked all close the way back."""
    from workflows.services import accounts, countersign

    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote(**BIG))
    f.act("supervisor_review", "sup1", approve("supervisor"))
    rewind.return_to(rt, f.task("manager_review").id, f.user("mgr1"), "prepare_quote", "recheck")
    state = rewind.withdraw_state(rt, _completed(rt, f.id, "supervisor_review").id, f.user("sup1"))
    assert not state.allowed and state.reason.endswith("mgr1 has since acted on the contract (return_to_step)")
    with pytest.raises(Conflict, match="has since acted on the contract"):
        rewind.withdraw(rt, _completed(rt, f.id, "supervisor_review").id, f.user("sup1"))
    assert f.open_specs() == {"prepare_quote"}  # one token, not two

    accounts.create_user(rt, "sup3", accounts.DEMO_PASSWORD, ["supervisor"], team="east")
    g = Flow(rt)
    g.act("prepare_quote", "rep1", quote())
    review = g.task("supervisor_review")
    tasks.claim(rt, review.id, g.user("sup1"))  # a claim alone does not close it
    assert rewind.withdraw_state(rt, _completed(rt, g.id, "prepare_quote").id, g.user("rep1")).allowed
    countersign.approve_and_add_after(rt, review.id, g.user("sup1"), "sup3", approve("supervisor"))
    state = rewind.withdraw_state(rt, _completed(rt, g.id, "prepare_quote").id, g.user("rep1"))
    assert not state.allowed and state.reason.endswith("sup1 has since acted on the contract (countersign)")


def test_a_move_withdraws_the_opinions_the_cancelled_task_waited_for(rt):
    from workflows.services import countersign

    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote(**BIG))
    f.act("supervisor_review", "sup1", approve("supervisor"))
    review = f.task("manager_review")
    countersign.ask_opinions(rt, review.id, f.user("mgr1"), ["legal1"], "liability cap acceptable?")
    assert countersign.pending_for(rt, f.user("legal1")).total == 1
    rewind.return_to(rt, review.id, f.user("mgr1"), "prepare_quote", "customer changes the scope")
    assert countersign.pending_for(rt, f.user("legal1")).total == 0
    [withdrawn] = _events(rt, f.id, "opinion_withdrawn")
    assert withdrawn.actor == "mgr1" and withdrawn.data["of"] == "legal1" and withdrawn.data["because"] == "cancelled"
    assert consistency.check_instances(rt, [f.id]) == []


def test_a_reviewer_who_approved_and_added_someone_cannot_take_it_back(rt):
    from workflows.services import accounts, countersign
    from workflows.services.errors import FourEyesViolation

    accounts.create_user(rt, "sup3", accounts.DEMO_PASSWORD, ["supervisor"], team="east")
    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote())
    review = f.task("supervisor_review")
    countersign.approve_and_add_after(rt, review.id, f.user("sup1"), "sup3", approve("supervisor"))
    tasks.unclaim(rt, review.id, f.user("sup3"))  # back in the supervisors' queue
    with pytest.raises(FourEyesViolation, match="approved 'Supervisor review / 主管审核' and added an approver"):
        tasks.claim(rt, review.id, f.user("sup1"))
    assert rewind.return_targets(rt, review.id, f.user("sup1")) == []
    with pytest.raises(FourEyesViolation):
        rewind.return_to(rt, review.id, f.user("sup1"), "prepare_quote", "taking it back")
    with pytest.raises(FourEyesViolation):
        countersign.ask_opinions(rt, review.id, f.user("sup1"), ["legal1"], "what do you think?")
    assert f.open_specs() == {"supervisor_review"}
    f.act("supervisor_review", "sup3", approve("supervisor"))


def test_every_refusal_of_withdraw_and_return_reads_in_chinese():
    from webapp.messages import localize_message

    assert len(raised_messages("workflows/services/rewind.py")) >= 10
    assert untranslated("workflows/services/rewind.py") == []
    for template in rewind._REFUSALS.values():  # the reasons a step is not offered, raised by name
        message = template.format(target="Draft contract / 起草合同", by="Customer signature / 客户签署",
                                  task="Legal review / 法务审核")
        assert localize_message(message, "zh-CN") != message, message
