"""The in-memory simulation of a process package: paths, ends, waits, the same data a real completion leaves,
form checks, timers only when asked, and the guard against endless loops."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflows import config
from workflows.engine.package import build_package
from workflows.services.deployments import collect_files
from workflows.studio.simulate import Recorded, Steps, simulate

from .flow import PLAN, Flow, approve, quote

REF = "data:application/pdf;name=a.pdf;size=10;sha256=" + "a" * 64 + ","


@pytest.fixture(scope="module")
def package():
    files = collect_files(Path(config.bpmn_dir()) / "quote_to_cash.bpmn")
    return build_package(files, process_key="quote_to_cash")


def contract_steps(plan=PLAN) -> list[dict]:
    return [{"task": "draft_contract", "data": {"contract_no": "HT-1", "contract_terms": "x", "payment_plan": plan,
                                                "sign_by": "2026-12-01"}},
            {"task": "legal_contract_check", "data": {"contract_check_decision": "approve"}},
            {"task": "sign_company", "data": {"company_signatory": "a", "company_signed_on": "2026-11-25"}},
            {"task": "customer_signature", "data": {"deal_confirmation": "signed_contract", "customer_signatory": "b",
                                                    "customer_signed_on": "2026-11-26", "customer_evidence": REF}},
            {"task": "file_contract", "data": {"filing_no": "BA-1", "filed_on": "2026-11-27"}},
            {"task": "execute_delivery", "data": {"delivered_on": "2026-12-10"}},
            {"task": "customer_acceptance", "data": {"acceptance": "accepted", "acceptance_certificate": REF}},
            {"task": "service_onboarding", "data": {"service_contact": "w", "warranty_until": "2027-12-10"}}]


def payment(amount: str, day: str) -> dict:
    return {"task": "record_payment", "data": {"amount_received": amount, "received_on": day,
                                               "payment_reference": "BANK-" + day}}


def test_a_small_quote_runs_to_the_installment_timer_and_waits_there(package) -> None:
    steps = [{"task": "prepare_quote", "data": quote()}, {"task": "supervisor_review", "data": approve("supervisor")},
             *contract_steps()]
    result = simulate(package, {}, Steps(steps))
    assert result.error is None
    assert result.path == [s["task"] for s in steps]
    assert result.end_event is None and result.waiting_at == []
    assert result.timers_waiting == ["wait_installment_due"]  # never fired on its own
    assert result.fired == []


def test_named_timers_fire_and_the_process_ends(package) -> None:
    plan = [{"amount": "24000.00", "due_date": "2026-12-15"}]
    steps = [{"task": "prepare_quote", "data": quote()}, {"task": "supervisor_review", "data": approve("supervisor")},
             *contract_steps(plan), {"timer": "wait_installment_due"}, payment("24000.00", "2026-12-15")]
    result = simulate(package, {}, Steps(steps))
    assert result.error is None, result.error
    assert result.fired == ["wait_installment_due"]
    assert result.path[-1] == "record_payment"
    assert result.end_event == "end_fulfilled" and result.completed


def test_a_rejection_ends_at_the_rejected_end(package) -> None:
    result = simulate(package, {}, Steps([{"task": "prepare_quote", "data": quote()},
                                          {"task": "supervisor_review",
                                           "data": {"supervisor_decision": "reject", "supervisor_comment": "no"}}]))
    assert result.error is None
    assert result.path == ["prepare_quote", "supervisor_review"]
    assert result.end_event == "end_rejected"


def test_a_ready_task_without_input_is_where_it_waits(package) -> None:
    source = Steps([{"task": "prepare_quote", "data": quote("30000.00")}])
    result = simulate(package, {}, source)
    assert result.waiting_at == ["supervisor_review"] and result.end_event is None
    assert result.data["amount"] == "60000.00"  # the script ran on the cleaned form data


def test_input_that_does_not_fit_the_form_stops_with_the_field(package) -> None:
    result = simulate(package, {}, Steps([{"task": "prepare_quote", "data": {**quote(), "bogus": 1}}]))
    assert result.path == []
    assert result.error is not None and "does not fit its form" in result.error and "bogus" in result.error


def test_an_endless_send_back_loop_is_stopped(package) -> None:
    class Forever:
        def choose(self, ready, timers):
            from workflows.studio.simulate import Choice

            spec = ready[0].spec_id
            data = quote() if spec == "prepare_quote" else {"supervisor_decision": "send_back",
                                                            "supervisor_comment": "again"}
            return Choice("task", spec, data)

    result = simulate(package, {}, Forever(), max_steps=30)
    assert result.error is not None and "30 steps" in result.error
    assert len(result.path) == 30


def test_recorded_inputs_keep_their_order_per_task(package) -> None:
    events = [("task", "prepare_quote", quote(), None),
              ("task", "supervisor_review", {"supervisor_decision": "send_back", "supervisor_comment": "price"}, None),
              ("task", "prepare_quote", quote("30000.00"), None),
              ("task", "supervisor_review", approve("supervisor"), None)]
    result = simulate(package, {}, Recorded(events))
    assert result.path == ["prepare_quote", "supervisor_review", "prepare_quote", "supervisor_review"]
    assert result.waiting_at == ["manager_review"]  # 60,000 needs a manager; nothing recorded for it


def test_simulated_completions_leave_the_data_a_real_completion_leaves(rt, package) -> None:
    """The same inputs through the service layer and through the simulation give the same business data
    (form values replaced, scripts and post-scripts run, the decision table's outputs)."""
    flow = Flow(rt)
    first = quote("30000.00", discount_pct=4)
    flow.act("prepare_quote", "rep1", first)
    flow.act("supervisor_review", "sup1", {"supervisor_decision": "send_back", "supervisor_comment": "price"})
    second = quote("31000.00", line_items=None)
    flow.act("prepare_quote", "rep1", second)
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    real = flow.data()
    result = simulate(package, {}, Steps([
        {"task": "prepare_quote", "data": first},
        {"task": "supervisor_review", "data": {"supervisor_decision": "send_back", "supervisor_comment": "price"}},
        {"task": "prepare_quote", "data": second}, {"task": "supervisor_review", "data": approve("supervisor")}]))
    assert result.waiting_at == ["manager_review"] == sorted(flow.open_specs())
    for key in ("amount", "subtotal", "discount_pct", "line_items", "send_back", "supervisor_decision", "need_manager",
                "need_director", "need_legal", "need_finance", "supervisor_comment"):
        assert result.data.get(key) == _plain(real.get(key)), key


def _plain(value):
    from workflows.engine.codec import StateCodec

    return StateCodec().to_json_value(value)
