"""The whole quote-to-cash lifecycle through the service layer, on a real database and a moved clock."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from models import AuditEvent, Step, Timer
from workflows.runtime import Runtime
from workflows.services import timers

from .conftest import FAST_HASH
from .flow import Flow, approve, quote


def _actions(rt, instance_id):
    with rt.read() as s:
        return list(s.scalars(select(AuditEvent.action).where(AuditEvent.instance_id == instance_id)
                              .order_by(AuditEvent.id)))


def test_small_quote_from_quote_to_last_payment(rt, clock):
    flow = Flow(rt, data={"customer_name": "华东机械 East China Machinery"})
    assert flow.open_specs() == {"prepare_quote"}
    flow.act("prepare_quote", "rep1", quote())
    assert flow.data()["amount"] == Decimal("24000.00")
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    # below every limit of the approval matrix: straight to the contract
    assert flow.open_specs() == {"draft_contract"}
    flow.through_contract()
    flow.through_delivery()
    assert flow.open_specs() == set(), "collection waits on the first installment's timer"
    with rt.read() as s:
        waiting = list(s.scalars(select(Timer).where(Timer.instance_id == flow.id, Timer.status == "waiting")))
    assert [(t.spec_id, t.due_at) for t in waiting] == [
        ("wait_installment_due", datetime(2026, 12, 14, 16, 0, tzinfo=UTC))]  # 00:00 in Shanghai

    assert timers.fire_due_timers(rt).fired == 0
    clock.set(datetime(2026, 12, 14, 16, 0, 1, tzinfo=UTC))
    assert timers.fire_due_timers(rt).fired == 1
    assert timers.fire_due_timers(rt).fired == 0, "a timer fires once"
    payment = flow.task("record_payment")
    assert payment.role == "finance"
    assert payment.due_at == datetime(2026, 12, 21, 16, 0, tzinfo=UTC)  # due + 7 days
    flow.act("record_payment", "fin1", {"amount_received": "7200.00", "received_on": "2026-12-15",
                                        "payment_reference": "BANK-1"})
    clock.set(datetime(2027, 1, 14, 16, 0, 1, tzinfo=UTC))
    assert timers.fire_due_timers(rt).fired == 1
    flow.act("record_payment", "fin1", {"amount_received": "16800.00", "received_on": "2027-01-15",
                                        "payment_reference": "BANK-2"})
    view = flow.view()
    assert view.status == "completed"
    assert view.end_event == "end_fulfilled"
    assert flow.data()["paid_total"] == Decimal("24000.00")
    assert view.path[0] == "start_quote"
    for spec in ("prepare_quote", "compute_totals", "supervisor_review", "approval_matrix_task", "draft_contract",
                 "file_contract", "customer_acceptance", "record_payment", "end_fulfilled"):
        assert spec in view.path
    actions = _actions(rt, flow.id)
    assert actions[0] == "start"
    assert actions.count("complete") == 12
    assert actions.count("timer") == 2


def test_send_back_loops_to_the_rep_with_the_comment(rt):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    flow.act("supervisor_review", "sup1", {"supervisor_decision": "send_back",
                                           "supervisor_comment": "折扣请再确认 recheck the discount"})
    assert flow.open_specs() == {"prepare_quote"}
    assert flow.data()["send_back"] == {"role": "supervisor", "comment": "折扣请再确认 recheck the discount"}
    flow.act("prepare_quote", "rep1", quote(discount_pct=2))
    assert flow.data()["send_back"] is None
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    assert flow.open_specs() == {"draft_contract"}
    path = flow.view().path
    assert path.count("prepare_quote") == 2 and path.count("supervisor_review") == 2


def test_rejection_ends_the_quote(rt):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    flow.act("supervisor_review", "sup1", {"supervisor_decision": "reject", "supervisor_comment": "no margin"})
    view = flow.view()
    assert view.status == "completed" and view.end_event == "end_rejected"
    assert view.open_tasks == []


def test_manager_level_above_fifty_thousand(rt):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote("30000.00"))  # 60,000
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    assert flow.open_specs() == {"manager_review"}
    data = flow.data()
    assert (data["need_manager"], data["need_director"], data["need_legal"], data["need_finance"]) == (
        True, False, False, False)
    flow.act("manager_review", "mgr1", {"manager_decision": "reject", "manager_comment": "price too low"})
    assert flow.view().end_event == "end_rejected"


def test_parallel_legal_and_finance_review_above_two_hundred_thousand(rt):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote("150000.00"))  # 300,000
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    flow.act("manager_review", "mgr1", approve("manager"))
    assert flow.open_specs() == {"legal_review", "finance_review"}
    flow.act("finance_review", "fin1", {"finance_decision": "send_back", "finance_comment": "付款条件太松"})
    assert flow.open_specs() == {"legal_review"}, "the join waits for legal"
    flow.act("legal_review", "legal1", approve("legal"))
    assert flow.open_specs() == {"prepare_quote"}
    assert flow.data()["send_back"]["role"] == "finance"
    # second pass: both approve, in the other order
    flow.act("prepare_quote", "rep1", quote("150000.00"))
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    flow.act("manager_review", "mgr1", approve("manager"))
    assert flow.open_specs() == {"legal_review", "finance_review"}
    flow.act("legal_review", "legal1", approve("legal"))
    assert flow.open_specs() == {"finance_review"}
    flow.act("finance_review", "fin1", approve("finance"))
    assert flow.open_specs() == {"draft_contract"}


def test_director_level_above_a_million(rt):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote("800000.00"))  # 1,600,000
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    flow.act("manager_review", "mgr1", approve("manager"))
    assert flow.open_specs() == {"director_review"}
    flow.act("director_review", "dir1", approve("director"))
    assert flow.open_specs() == {"legal_review", "finance_review"}
    flow.act("legal_review", "legal1", {"legal_decision": "reject", "legal_comment": "liability clause"})
    flow.act("finance_review", "fin1", approve("finance"))
    assert flow.view().end_event == "end_rejected"


@pytest.fixture(params=["cached", "cold"])
def any_rt(request, rt, db_url, clock):
    """The runtime with its workflow cache, or a second one without (every step loads the stored state)."""
    if request.param == "cached":
        yield rt
        return
    cold = Runtime(db_url, clock=clock, cache_size=0, password_method=FAST_HASH)
    yield cold
    cold.dispose()


def test_overdue_installment_escalates_to_the_manager(any_rt, clock):
    rt = any_rt
    flow = Flow(rt)
    flow.to_collection()
    clock.set(datetime(2026, 12, 15, 1, 0, tzinfo=UTC))
    assert timers.fire_due_timers(rt).fired == 1
    flow.act("record_payment", "fin1", {"amount_received": "7200.00", "received_on": "2026-12-15",
                                        "payment_reference": "BANK-1"})
    clock.set(datetime(2027, 1, 15, 1, 0, tzinfo=UTC))
    assert timers.fire_due_timers(rt).fired == 1
    assert flow.open_specs() == {"record_payment"}
    clock.set(datetime(2027, 1, 22, 16, 0, 1, tzinfo=UTC))  # seven days past due
    report = timers.fire_due_timers(rt)
    assert report.fired == 1
    assert flow.open_specs() == {"record_payment", "overdue_escalation"}
    assert flow.task("overdue_escalation").role == "manager"
    assert "escalation" in _actions(rt, flow.id)
    flow.act("overdue_escalation", "mgr1", {"escalation_action": "Called the CFO", "next_contact_on": "2027-01-25"})
    flow.act("record_payment", "fin1", {"amount_received": "16800.00", "received_on": "2027-01-24",
                                        "payment_reference": "BANK-2"})
    view = flow.view()
    assert view.status == "completed"
    assert "overdue_escalation" in view.path
    with rt.read() as s:
        assert s.scalar(select(func.count()).select_from(Timer).where(Timer.instance_id == flow.id,
                                                                      Timer.status == "fired")) == 3


def test_paying_on_time_cancels_the_escalation_timer(rt, clock):
    flow = Flow(rt)
    flow.to_collection(plan=[{"amount": "24000.00", "due_date": "2026-12-15"}])
    clock.set(datetime(2026, 12, 15, 1, 0, tzinfo=UTC))
    timers.fire_due_timers(rt)
    flow.act("record_payment", "fin1", {"amount_received": "24000.00", "received_on": "2026-12-15",
                                        "payment_reference": "BANK-1"})
    assert flow.view().status == "completed"
    with rt.read() as s:
        statuses = dict(s.execute(select(Timer.spec_id, Timer.status).where(Timer.instance_id == flow.id)).all())
    assert statuses == {"wait_installment_due": "fired", "payment_overdue": "cancelled"}
    clock.set(datetime(2027, 3, 1, tzinfo=UTC))
    assert timers.fire_due_timers(rt).fired == 0


def test_contract_send_back_and_rejected_delivery_loop(rt):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    flow.act("draft_contract", "rep1", {"contract_no": "HT-1", "contract_terms": "x",
                                        "payment_plan": [{"amount": "24000.00", "due_date": "2026-12-15"}],
                                        "sign_by": "2026-12-01"})
    flow.act("legal_contract_check", "legal1", {"contract_check_decision": "send_back",
                                                "contract_check_comment": "add a penalty clause"})
    assert flow.open_specs() == {"draft_contract"}
    assert flow.data()["contract_send_back"] == "add a penalty clause"
    flow.through_contract(plan=[{"amount": "24000.00", "due_date": "2026-12-15"}])
    flow.act("execute_delivery", "dlv1", {"delivered_on": "2026-12-10"})
    flow.act("customer_acceptance", "rep1", flow.accepted(acceptance="rejected", acceptance_note="scratches"))
    assert flow.open_specs() == {"execute_delivery"}


def test_complaint_with_survey(rt):
    contract = Flow(rt)
    contract.to_collection()
    complaint = Flow(rt, "complaint", starter="svc1", data={
        "contract_key": contract.started.business_key, "customer_name": "华东机械",
        "complaint_summary": "设备异响 Noise from the spindle", "severity": "medium"})
    assert complaint.started.business_key.startswith("C-")
    complaint.act("accept_complaint", "svc1", {"acceptance_decision": "accept", "category": "quality"})
    complaint.act("investigate", "svc1", {"root_cause": "bearing", "findings": "worn bearing"})
    complaint.act("resolve", "svc1", {"resolution": "replaced bearing", "resolved_on": "2026-11-30",
                                      "compensation": "500.00"})
    complaint.act("feedback_to_customer", "svc1", {"feedback_summary": "customer satisfied", "customer_reached": True})
    assert complaint.task("satisfaction_survey").role == "sales_rep"
    complaint.act("satisfaction_survey", "rep1", {"satisfaction": 4})
    view = complaint.view()
    assert view.status == "completed"
    assert [s for s in view.path if s in {"accept_complaint", "investigate", "resolve", "feedback_to_customer",
                                          "satisfaction_survey"}] == [
        "accept_complaint", "investigate", "resolve", "feedback_to_customer", "satisfaction_survey"]


def test_steps_table_grows_but_live_state_stays_small(rt):
    flow = Flow(rt)
    sizes = []
    for _ in range(30):
        flow.act("prepare_quote", "rep1", quote())
        flow.act("supervisor_review", "sup1", {"supervisor_decision": "send_back", "supervisor_comment": "again"})
        from models import Instance

        with rt.read() as s:
            sizes.append(len(s.get(Instance, flow.id).state))
    with rt.read() as s:
        steps = s.scalar(select(func.count()).select_from(Step).where(Step.instance_id == flow.id))
    assert steps > 30 * 5
    assert max(sizes[5:]) - min(sizes[5:]) < 200, sizes


def test_a_late_escalation_does_not_relabel_a_fulfilled_contract(rt, clock):
    """The escalation branch may end after the last payment; the instance still ended as fulfilled."""
    flow = Flow(rt)
    flow.to_collection(plan=[{"amount": "24000.00", "due_date": "2026-12-15"}])
    clock.set(datetime(2026, 12, 23, 0, 0, tzinfo=UTC))  # due and overdue at once: both timers fire
    assert timers.fire_due_timers(rt).fired == 2
    flow.act("record_payment", "fin1", {"amount_received": "24000.00", "received_on": "2026-12-23",
                                        "payment_reference": "BANK-1"})
    assert flow.view().status == "running", "the escalation task is still open"
    flow.act("overdue_escalation", "mgr1", {"escalation_action": "paid meanwhile", "next_contact_on": "2026-12-24"})
    view = flow.view()
    assert view.status == "completed"
    assert view.end_event == "end_fulfilled"
    assert {"end_fulfilled", "end_escalation_handled"} <= set(view.path)


def test_the_data_of_a_contract_waiting_for_a_payment_date_is_all_there(rt):
    """While collection waits on an installment timer, a join gateway also waits and holds no data: the
    contract's data must come from the timer's branch, not from the empty gateway."""
    flow = Flow(rt)
    flow.to_collection()
    assert not flow.open_specs()  # only timers wait
    data = flow.data()
    assert data["customer_name"] == "华东机械 East China Machinery"
    assert len(data["payment_plan"]) == 2
