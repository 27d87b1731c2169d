"""Business records written from the process (services/records.py): quotes and their revisions with totals in
Decimal, the contract made from the approved quote with its installments, payments applied oldest installment
first (partial payments and overpayments of an installment), complaints; and the refusals a submission gets
before the engine goes on (a payment plan that does not add up, installments out of order, a payment above
what is still open, another rep's customer), which save nothing and read in Chinese."""

from __future__ import annotations

import ast
import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from models import (
    AuditEvent,
    Complaint,
    Contract,
    Customer,
    Installment,
    OwnershipChange,
    Payment,
    Quote,
    TaskRow,
    User,
)
from webapp.messages import _PATTERNS, localize_message
from workflows.services import accounts, rewind, substitutes, timers
from workflows.services.errors import Conflict, InvalidInput

from .flow import PLAN, Flow, approve, quote
from .service_messages import raised_messages, untranslated
from .web import form_fields

ROOT = Path(__file__).resolve().parents[1]
DEC_15 = datetime(2026, 12, 14, 16, 0, 1, tzinfo=UTC)  # just after 2026-12-15 00:00 in Shanghai: installment 1 due
JAN_15 = datetime(2027, 1, 14, 16, 0, 1, tzinfo=UTC)  # just after 2027-01-15 00:00 in Shanghai: installment 2 due
CONTRACT = {"contract_no": "HT-2026-001", "contract_terms": "Standard terms", "sign_by": "2026-12-01"}


def _user_id(rt, username: str) -> int:
    with rt.read() as s:
        return s.scalar(select(User.id).where(User.username == username))


def _quotes(rt, instance_id: int) -> list[Quote]:
    with rt.read() as s:
        return list(s.scalars(select(Quote).where(Quote.instance_id == instance_id).order_by(Quote.revision)))


def _contract(rt, instance_id: int) -> Contract | None:
    with rt.read() as s:
        return s.scalar(select(Contract).where(Contract.instance_id == instance_id))


def _installments(rt, instance_id: int) -> list[tuple[int, Decimal, date, Decimal, date | None]]:
    with rt.read() as s:
        return [tuple(r) for r in s.execute(
            select(Installment.no, Installment.amount, Installment.due_date, Installment.paid, Installment.paid_on)
            .join(Contract, Contract.id == Installment.contract_id).where(Contract.instance_id == instance_id)
            .order_by(Installment.no))]


def _payments(rt, instance_id: int) -> list[tuple[int, int | None, Decimal, date, str | None]]:
    with rt.read() as s:
        return [tuple(r) for r in s.execute(
            select(Payment.seq, Payment.installment_no, Payment.amount, Payment.received_on, Payment.reference)
            .join(Contract, Contract.id == Payment.contract_id).where(Contract.instance_id == instance_id)
            .order_by(Payment.seq))]


def _assert_paid_consistent(rt, flow: Flow | None = None) -> None:
    """Every contract: paid == the sum of its payments == the sum of what its installments have received; and,
    for ``flow``, == the process's own paid_total."""
    with rt.read() as s:
        for contract in s.scalars(select(Contract)):
            payments = s.scalar(select(func.coalesce(func.sum(Payment.amount), 0))
                                .where(Payment.contract_id == contract.id))
            covered = s.scalar(select(func.coalesce(func.sum(Installment.paid), 0))
                               .where(Installment.contract_id == contract.id))
            assert contract.paid == Decimal(payments) == Decimal(covered), (contract.business_key, contract.paid,
                                                                            payments, covered)
    if flow is not None and "paid_total" in flow.data():
        assert _contract(rt, flow.id).paid == flow.data()["paid_total"]


def _pay(flow: Flow, amount: str, on: str, reference: str):
    return flow.act("record_payment", "fin1", {"amount_received": amount, "received_on": on,
                                               "payment_reference": reference})


def _nothing_saved(rt, flow: Flow, spec_id: str, task_id: int, version: int, events: int) -> None:
    assert flow.task(spec_id).id == task_id, "the same task is still open"
    assert flow.view().version == version, "the instance did not move"
    with rt.read() as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent)
                        .where(AuditEvent.instance_id == flow.id)) == events, "nothing was recorded"


def _events(rt, flow: Flow) -> int:
    with rt.read() as s:
        return s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.instance_id == flow.id))


# --- quotes -------------------------------------------------------------------------------------------------


def test_quote_totals_are_exact_decimals_computed_on_the_server(rt):
    flow = Flow(rt)
    lines = [{"product": "Spindle 主轴", "quantity": 3, "unit_price": "333.33"},
             {"product": "Bolt 螺栓", "quantity": 7, "unit_price": "0.03"},
             {"product": "Washer 垫圈", "quantity": 1, "unit_price": "0.10"}]
    flow.act("prepare_quote", "rep1", dict(quote(), line_items=lines, discount_pct=5))
    # 3 × 333.33 = 999.99; 7 × 0.03 = 0.21; 1 × 0.10 = 0.10 → subtotal 1,000.30
    # 1,000.30 × 95 / 100 = 950.285 → 950.29 (half up; binary floats give 950.2849999… → 950.28)
    assert round(1000.30 * 95 / 100, 2) == 950.28  # the float pitfall the Decimal arithmetic avoids
    [q] = _quotes(rt, flow.id)
    assert (q.revision, q.subtotal, q.discount_pct, q.amount, q.status) == (
        1, Decimal("1000.30"), Decimal("5.00"), Decimal("950.29"), "in_review")
    assert json.loads(q.lines) == [
        {"product": "Spindle 主轴", "quantity": 3, "unit_price": "333.33", "line_total": "999.99"},
        {"product": "Bolt 螺栓", "quantity": 7, "unit_price": "0.03", "line_total": "0.21"},
        {"product": "Washer 垫圈", "quantity": 1, "unit_price": "0.10", "line_total": "0.10"}]
    assert (q.rep_id, q.team, q.submitted_at, q.decided_at) == (_user_id(rt, "rep1"), "east", rt.clock.now(), None)
    assert flow.view().amount == Decimal("950.29")
    with rt.read() as s:
        customer = s.get(Customer, q.customer_id)
        assert (customer.name, customer.name_key, customer.owner_id, customer.team) == (
            "华东机械 East China Machinery", "华东机械 east china machinery", _user_id(rt, "rep1"), "east")
        changes = s.execute(select(OwnershipChange.from_owner_id, OwnershipChange.to_owner_id,
                                   OwnershipChange.reason).where(OwnershipChange.customer_id == customer.id)).all()
        assert [tuple(c) for c in changes] == [(None, _user_id(rt, "rep1"), "first_deal")]


def test_quote_with_a_fractional_discount(rt):
    flow = Flow(rt)
    lines = [{"product": "A", "quantity": 3, "unit_price": "333.33"},
             {"product": "B", "quantity": 7, "unit_price": "19.99"}]
    flow.act("prepare_quote", "rep1", dict(quote(), line_items=lines, discount_pct=7.5))
    # 999.99 + 139.93 = 1,139.92; × 92.5 / 100 = 1,054.426 → 1,054.43
    [q] = _quotes(rt, flow.id)
    assert (q.subtotal, q.discount_pct, q.amount) == (Decimal("1139.92"), Decimal("7.50"), Decimal("1054.43"))


def test_send_back_and_resubmission_make_revision_2_and_approval_marks_it(rt, clock):
    flow = Flow(rt)
    first = clock.now()
    flow.act("prepare_quote", "rep1", quote())
    clock.advance(hours=3)
    flow.act("supervisor_review", "sup1", {"supervisor_decision": "send_back",
                                           "supervisor_comment": "5% off for a repeat customer"})
    assert [(q.revision, q.status) for q in _quotes(rt, flow.id)] == [(1, "in_review")]  # waiting for the rework
    clock.advance(hours=1)
    second = clock.now()
    flow.act("prepare_quote", "rep1", quote(discount_pct=5))
    revisions = _quotes(rt, flow.id)
    assert [(q.revision, q.status, q.amount, q.discount_pct, q.submitted_at, q.decided_at) for q in revisions] == [
        (1, "revised", Decimal("24000.00"), Decimal("0.00"), first, None),
        (2, "in_review", Decimal("22800.00"), Decimal("5.00"), second, None)]
    clock.advance(hours=2)
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    assert flow.open_specs() == {"draft_contract"}
    assert [(q.revision, q.status, q.decided_at) for q in _quotes(rt, flow.id)] == [
        (1, "revised", None), (2, "approved", clock.now())]
    assert len({q.customer_id for q in revisions}) == 1


def test_rejection_marks_the_quote_rejected_and_makes_no_contract(rt, clock):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    clock.advance(hours=5)
    flow.act("supervisor_review", "sup1", {"supervisor_decision": "reject", "supervisor_comment": "no margin"})
    assert flow.view().end_event == "end_rejected"
    assert [(q.revision, q.status, q.decided_at) for q in _quotes(rt, flow.id)] == [(1, "rejected", clock.now())]
    assert _contract(rt, flow.id) is None


# --- the contract -------------------------------------------------------------------------------------------


def test_contract_from_the_approved_quote_and_its_status_from_drafted_to_fulfilled(rt, clock):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    assert _contract(rt, flow.id) is None, "no contract before it is drafted"
    flow.act("draft_contract", "rep1", dict(CONTRACT, payment_plan=PLAN))
    [approved] = _quotes(rt, flow.id)
    contract = _contract(rt, flow.id)
    assert (contract.business_key, contract.contract_no, contract.quote_id, contract.customer_id, contract.rep_id,
            contract.team, contract.amount, contract.paid, contract.status, contract.signed_on) == (
        flow.started.business_key, "HT-2026-001", approved.id, approved.customer_id, _user_id(rt, "rep1"), "east",
        Decimal("24000.00"), Decimal("0.00"), "drafted", None)
    assert _installments(rt, flow.id) == [
        (1, Decimal("7200.00"), date(2026, 12, 15), Decimal("0.00"), None),
        (2, Decimal("16800.00"), date(2027, 1, 15), Decimal("0.00"), None)]
    flow.act("legal_contract_check", "legal1", {"contract_check_decision": "approve"})
    flow.act("sign_company", "mgr1", {"company_signatory": "刘洋", "company_signed_on": "2026-11-25"})
    assert _contract(rt, flow.id).status == "drafted", "the company's signature alone does not make it signed"
    flow.act("customer_signature", "rep1", flow.signed())
    contract = _contract(rt, flow.id)
    assert (contract.status, contract.signed_on) == ("signed", date(2026, 11, 26))
    flow.act("file_contract", "legal1", {"filing_no": "BA-0001", "filed_on": "2026-11-27"})
    flow.act("execute_delivery", "dlv1", {"delivered_on": "2026-12-10"})
    flow.act("customer_acceptance", "rep1", flow.accepted(acceptance="rejected", acceptance_note="scratches"))
    assert _contract(rt, flow.id).status == "signed", "a rejected delivery is not delivered"
    flow.act("execute_delivery", "dlv1", {"delivered_on": "2026-12-12"})
    flow.act("customer_acceptance", "rep1", flow.accepted())
    assert _contract(rt, flow.id).status == "delivered"
    flow.act("service_onboarding", "svc1", {"service_contact": "吴芳", "warranty_until": "2027-12-10"})
    clock.set(DEC_15)
    assert timers.fire_due_timers(rt).fired == 1
    _pay(flow, "7200.00", "2026-12-15", "BANK-1")
    assert _contract(rt, flow.id).status == "delivered"
    clock.set(JAN_15)
    assert timers.fire_due_timers(rt).fired == 1
    _pay(flow, "16800.00", "2027-01-15", "BANK-2")
    assert flow.view().end_event == "end_fulfilled"
    contract = _contract(rt, flow.id)
    assert (contract.status, contract.paid, contract.updated_at) == ("fulfilled", Decimal("24000.00"), clock.now())
    assert _installments(rt, flow.id) == [
        (1, Decimal("7200.00"), date(2026, 12, 15), Decimal("7200.00"), date(2026, 12, 15)),
        (2, Decimal("16800.00"), date(2027, 1, 15), Decimal("16800.00"), date(2027, 1, 15))]
    _assert_paid_consistent(rt, flow)


def test_a_contract_sent_back_by_legal_keeps_one_row_with_the_new_plan(rt):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    flow.act("draft_contract", "rep1", dict(CONTRACT, payment_plan=PLAN))
    flow.act("legal_contract_check", "legal1", {"contract_check_decision": "send_back",
                                                "contract_check_comment": "one installment"})
    flow.act("draft_contract", "rep1", dict(CONTRACT, contract_no="HT-2026-001-B",
                                            payment_plan=[{"amount": "24000.00", "due_date": "2026-12-31"}]))
    with rt.read() as s:
        assert s.scalar(select(func.count()).select_from(Contract).where(Contract.instance_id == flow.id)) == 1
    assert _contract(rt, flow.id).contract_no == "HT-2026-001-B"
    assert _installments(rt, flow.id) == [(1, Decimal("24000.00"), date(2026, 12, 31), Decimal("0.00"), None)]


# --- refusals: the payment plan -----------------------------------------------------------------------------


def _at_draft_contract(rt) -> Flow:
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())  # 2 × 12,000.00 = 24,000.00
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    return flow


@pytest.mark.parametrize(("plan", "message"), [
    ([{"amount": "7200.00", "due_date": "2026-12-15"}, {"amount": "16000.00", "due_date": "2027-01-15"}],
     "the installments add up to 23,200.00 but the contract amount is 24,000.00 (short by 800.00)"),
    ([{"amount": "7200.00", "due_date": "2026-12-15"}, {"amount": "17000.50", "due_date": "2027-01-15"}],
     "the installments add up to 24,200.50 but the contract amount is 24,000.00 (over by 200.50)"),
    ([{"amount": "16800.00", "due_date": "2027-01-15"}, {"amount": "7200.00", "due_date": "2026-12-15"}],
     "the installments must be in order of their due dates"),
    ([{"amount": "0.00", "due_date": "2026-12-15"}, {"amount": "24000.00", "due_date": "2027-01-15"}],
     "every installment needs an amount above zero"),
], ids=["short", "over", "out-of-order", "zero"])
def test_a_payment_plan_that_does_not_fit_is_refused_and_nothing_is_saved(rt, plan, message):
    flow = _at_draft_contract(rt)
    task, version, events = flow.task("draft_contract"), flow.view().version, _events(rt, flow)
    with pytest.raises(InvalidInput) as refused:
        flow.act("draft_contract", "rep1", dict(CONTRACT, payment_plan=plan))
    assert refused.value.message == "the form 'Draft contract / 起草合同' has errors"
    assert refused.value.errors == {"payment_plan": message}
    _nothing_saved(rt, flow, "draft_contract", task.id, version, events)
    assert _contract(rt, flow.id) is None
    with rt.read() as s:
        assert s.scalar(select(func.count()).select_from(Installment)) == 0
    assert "payment_plan" not in flow.data() and "contract_no" not in flow.data()
    assert [q.status for q in _quotes(rt, flow.id)] == ["approved"]
    # and the same task then takes a plan that adds up
    flow.act("draft_contract", "rep1", dict(CONTRACT, payment_plan=PLAN))
    assert _contract(rt, flow.id).status == "drafted"


def test_the_task_page_keeps_the_refused_plan_and_says_why_in_chinese(rt, login):
    flow = _at_draft_contract(rt)
    task = flow.task("draft_contract")
    version = flow.view().version
    web = login("rep1")
    page = web.text(f"/tasks/{task.id}")
    typed = dict(CONTRACT, contract_no="HT-保留-7", payment_plan=[{"amount": "7200.00", "due_date": "2026-12-15"},
                                                                  {"amount": "16000.00", "due_date": "2027-01-15"}])
    version_on_page = int(re.search(r'name="version" value="(\d+)"', page).group(1))
    response = web.post(f"/tasks/{task.id}/complete", dict(form_fields(typed), version=version_on_page),
                        page=f"/tasks/{task.id}")
    body = response.get_data(as_text=True)
    assert response.status_code == 422, body[:2000]
    assert "各期金额合计 23,200.00，与合同金额 24,000.00 不符（少 800.00）" in body
    assert 'value="HT-保留-7"' in body and 'value="16000.00"' in body and 'value="2027-01-15"' in body
    assert "field-error" in body
    _nothing_saved(rt, flow, "draft_contract", task.id, version, _events(rt, flow))
    assert _contract(rt, flow.id) is None


# --- payments -----------------------------------------------------------------------------------------------


def test_partial_payments_and_an_overpaid_installment_apply_oldest_first(rt, clock):
    flow = Flow(rt)
    flow.to_collection()  # 24,000.00: 7,200.00 due 2026-12-15, 16,800.00 due 2027-01-15
    assert _contract(rt, flow.id).status == "delivered"
    clock.set(DEC_15)
    assert timers.fire_due_timers(rt).fired == 1
    first = flow.task("record_payment")
    data = flow.data()
    assert (data["installment_no"], data["installment_open"]) == (1, Decimal("7200.00"))

    _pay(flow, "3000.00", "2026-12-15", "BANK-1")  # 3,000.00 of 7,200.00
    assert _installments(rt, flow.id) == [
        (1, Decimal("7200.00"), date(2026, 12, 15), Decimal("3000.00"), None),
        (2, Decimal("16800.00"), date(2027, 1, 15), Decimal("0.00"), None)]
    assert _payments(rt, flow.id) == [(1, 1, Decimal("3000.00"), date(2026, 12, 15), "BANK-1")]
    assert _contract(rt, flow.id).paid == Decimal("3000.00")
    _assert_paid_consistent(rt, flow)
    again = flow.task("record_payment")  # the rest of installment 1 is waited for at once
    assert again.id != first.id
    data = flow.data()
    assert (data["installment_no"], data["installment_open"], data["paid_total"]) == (
        1, Decimal("4200.00"), Decimal("3000.00"))  # 7,200.00 − 3,000.00

    _pay(flow, "10000.00", "2026-12-16", "BANK-2")  # 4,200.00 closes installment 1, 5,800.00 goes to installment 2
    assert _installments(rt, flow.id) == [
        (1, Decimal("7200.00"), date(2026, 12, 15), Decimal("7200.00"), date(2026, 12, 16)),
        (2, Decimal("16800.00"), date(2027, 1, 15), Decimal("5800.00"), None)]
    assert _payments(rt, flow.id) == [(1, 1, Decimal("3000.00"), date(2026, 12, 15), "BANK-1"),
                                      (2, 1, Decimal("10000.00"), date(2026, 12, 16), "BANK-2")]
    assert _contract(rt, flow.id).paid == Decimal("13000.00")
    _assert_paid_consistent(rt, flow)
    assert flow.open_specs() == set(), "installment 2 is not due yet"
    data = flow.data()
    assert (data["installment_no"], data["installment_open"]) == (2, Decimal("11000.00"))  # 24,000 − 13,000

    clock.set(JAN_15)
    assert timers.fire_due_timers(rt).fired == 1
    task, version, events = flow.task("record_payment"), flow.view().version, _events(rt, flow)
    for amount, message in (
            ("11000.01", "the amount received (11,000.01) is more than what is still open on the contract "
                         "(11,000.00)"),
            ("30000.00", "the amount received (30,000.00) is more than what is still open on the contract "
                         "(11,000.00)"),
            ("0.00", "the amount received must be above zero")):
        with pytest.raises(InvalidInput) as refused:
            _pay(flow, amount, "2027-01-15", "BANK-X")
        assert refused.value.errors == {"amount_received": message}
        assert refused.value.message == "the form 'Record payment / 登记回款' has errors"
        _nothing_saved(rt, flow, "record_payment", task.id, version, events)
        assert len(_payments(rt, flow.id)) == 2 and _contract(rt, flow.id).paid == Decimal("13000.00")
        assert flow.data()["paid_total"] == Decimal("13000.00")

    _pay(flow, "11000.00", "2027-01-16", "BANK-3")
    assert flow.view().end_event == "end_fulfilled"
    assert _installments(rt, flow.id)[1] == (2, Decimal("16800.00"), date(2027, 1, 15), Decimal("16800.00"),
                                             date(2027, 1, 16))
    assert [p[:3] for p in _payments(rt, flow.id)] == [(1, 1, Decimal("3000.00")), (2, 1, Decimal("10000.00")),
                                                       (3, 2, Decimal("11000.00"))]
    contract = _contract(rt, flow.id)
    assert (contract.status, contract.paid) == ("fulfilled", Decimal("24000.00"))
    _assert_paid_consistent(rt, flow)


def test_one_payment_covering_every_installment_ends_collection(rt, clock):
    flow = Flow(rt)
    flow.to_collection()
    clock.set(DEC_15)
    timers.fire_due_timers(rt)
    _pay(flow, "24000.00", "2026-12-15", "BANK-ALL")
    assert flow.view().end_event == "end_fulfilled"
    assert _installments(rt, flow.id) == [
        (1, Decimal("7200.00"), date(2026, 12, 15), Decimal("7200.00"), date(2026, 12, 15)),
        (2, Decimal("16800.00"), date(2027, 1, 15), Decimal("16800.00"), date(2026, 12, 15))]
    assert _contract(rt, flow.id).status == "fulfilled"
    _assert_paid_consistent(rt, flow)


def test_a_recorded_payment_cannot_be_withdrawn(rt, clock):
    """Withdraw (撤回) reopens a step with the data after it, and apply_payment adds up: a withdrawn payment would
    be counted twice when recorded again. So record_payment is not returnable."""
    flow = Flow(rt)
    flow.to_collection()
    clock.set(DEC_15)
    timers.fire_due_timers(rt)
    recorded = flow.task("record_payment")
    _pay(flow, "3000.00", "2026-12-15", "BANK-1")
    version, events = flow.view().version, _events(rt, flow)
    assert rewind.withdraw_state(rt, recorded.id, accounts.get_user(rt, "fin1")).allowed is False
    with pytest.raises(Conflict) as refused:
        rewind.withdraw(rt, recorded.id, accounts.get_user(rt, "fin1"))
    assert refused.value.message == "'Record payment / 登记回款' cannot be reopened (the process marks it so)"
    assert (flow.view().version, _events(rt, flow)) == (version, events)
    assert (flow.data()["paid_total"], _contract(rt, flow.id).paid) == (Decimal("3000.00"), Decimal("3000.00"))
    _assert_paid_consistent(rt, flow)


def test_late_partial_payments_escalate_again_a_week_later_not_at_once(rt, clock):
    flow = Flow(rt)
    flow.to_collection()
    clock.set(datetime(2026, 12, 23, 1, 0, tzinfo=UTC))  # installment 1 due 12-15, overdue since 12-22 00:00
    assert timers.fire_due_timers(rt).fired == 2
    assert flow.open_specs() == {"record_payment", "overdue_escalation"}

    def escalations() -> list[str]:
        with rt.read() as s:
            return list(s.scalars(select(TaskRow.status).where(TaskRow.instance_id == flow.id,
                                                               TaskRow.spec_id == "overdue_escalation")
                                  .order_by(TaskRow.id)))

    _pay(flow, "1000.00", "2026-12-23", "BANK-1")
    _pay(flow, "1000.00", "2026-12-23", "BANK-2")
    assert escalations() == ["open"], "no second escalation for the same installment at once"
    assert flow.task("record_payment").due_at == datetime(2026, 12, 29, 16, 0, tzinfo=UTC)  # 12-30 00:00 Shanghai
    clock.set(datetime(2026, 12, 29, 15, 59, tzinfo=UTC))
    assert timers.fire_due_timers(rt).fired == 0
    clock.set(datetime(2026, 12, 29, 16, 0, 1, tzinfo=UTC))  # a week after the last partial payment
    assert timers.fire_due_timers(rt).fired == 1
    assert escalations() == ["open", "open"]
    assert flow.data()["installment_open"] == Decimal("5200.00")  # 7,200 − 2 × 1,000
    _assert_paid_consistent(rt, flow)


# --- customers: one owner -----------------------------------------------------------------------------------


def test_a_rep_may_not_quote_another_reps_customer(rt):
    Flow(rt).act("prepare_quote", "rep1", quote())  # rep1 owns 华东机械 East China Machinery now
    other = Flow(rt, starter="rep2")
    task, version, events = other.task("prepare_quote"), other.view().version, _events(rt, other)
    for name in ("华东机械 East China Machinery", "  华东机械   EAST china MACHINERY "):  # case and spaces folded
        with pytest.raises(InvalidInput) as refused:
            other.act("prepare_quote", "rep2", quote(customer_name=name))
        assert refused.value.errors == {"customer_name": (
            "the customer '华东机械 East China Machinery' belongs to 王小明 Wang Xiaoming; ask the director for it "
            "with an ownership request instead of quoting it")}
        _nothing_saved(rt, other, "prepare_quote", task.id, version, events)
    assert _quotes(rt, other.id) == []
    other.act("prepare_quote", "rep2", quote(customer_name="西部重工 Western Heavy"))
    assert [q.status for q in _quotes(rt, other.id)] == ["in_review"]
    again = Flow(rt)
    again.act("prepare_quote", "rep1", quote(customer_name="华东机械  east china machinery"))  # the owner may
    [q] = _quotes(rt, again.id)
    with rt.read() as s:
        assert s.scalar(select(func.count()).select_from(Customer)) == 2
        assert s.get(Customer, q.customer_id).name == "华东机械 East China Machinery"


def test_a_substitute_resubmits_the_away_reps_quote_for_their_customer(rt):
    """委托: a send-back to an away rep goes to their substitute, who completes it on the rep's behalf; the
    customer is the away rep's, so it is no 抢单. A third rep's customer stays refused."""
    accounts.create_user(rt, "rep3", "password-1", ["sales_rep"], display_name="赵六 Zhao Liu", team="east")
    Flow(rt, starter="rep3").act("prepare_quote", "rep3", quote(customer_name="南方电子 South Electronics"))
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    substitutes.create(rt, accounts.get_user(rt, "rep1"), "rep2", date(2026, 11, 23), date(2026, 11, 23), "年假")
    flow.act("supervisor_review", "sup1", {"supervisor_decision": "send_back", "supervisor_comment": "折扣"})
    held = flow.task("prepare_quote")
    assert (held.assignee, held.on_behalf_of) == ("rep2", "rep1")
    with pytest.raises(InvalidInput) as refused:
        flow.act("prepare_quote", "rep2", quote(customer_name="南方电子 South Electronics"))
    assert refused.value.errors == {"customer_name": (
        "the customer '南方电子 South Electronics' belongs to 赵六 Zhao Liu; ask the director for it with an "
        "ownership request instead of quoting it")}
    flow.act("prepare_quote", "rep2", quote(discount_pct=2))  # rep1's customer, on rep1's behalf
    assert [(q.revision, q.status) for q in _quotes(rt, flow.id)] == [(1, "revised"), (2, "in_review")]


# --- complaints ---------------------------------------------------------------------------------------------


def test_complaint_rows_follow_the_complaint_process(rt, clock):
    contract = Flow(rt)
    contract.to_collection()
    opened = clock.now()
    complaint = Flow(rt, "complaint", starter="svc1", data={
        "contract_key": contract.started.business_key, "customer_name": "华东机械 East China Machinery",
        "complaint_summary": "设备异响 Noise from the spindle", "severity": "high"})

    def row() -> Complaint:
        with rt.read() as s:
            return s.scalar(select(Complaint).where(Complaint.instance_id == complaint.id))

    first = row()
    with rt.read() as s:
        customer_id = s.scalar(select(Contract.customer_id).where(Contract.instance_id == contract.id))
    assert (first.contract_key, first.customer_id, first.severity, first.status, first.satisfaction,
            first.opened_at, first.closed_at) == (
        contract.started.business_key, customer_id, "high", "open", None, opened, None)
    complaint.act("accept_complaint", "svc1", {"acceptance_decision": "accept", "category": "quality"})
    complaint.act("investigate", "svc1", {"root_cause": "bearing", "findings": "worn bearing"})
    complaint.act("resolve", "svc1", {"resolution": "replaced bearing", "resolved_on": "2026-11-30"})
    complaint.act("feedback_to_customer", "svc1", {"feedback_summary": "fixed", "customer_reached": True})
    assert (row().status, row().satisfaction, row().closed_at) == ("open", None, None)
    clock.advance(days=2)
    complaint.act("satisfaction_survey", "rep1", {"satisfaction": 4})
    done = row()
    assert (done.severity, done.status, done.satisfaction, done.closed_at) == ("high", "closed", 4, clock.now())

    declined = Flow(rt, "complaint", starter="svc1", data={
        "contract_key": contract.started.business_key, "customer_name": "新客户 New Customer",
        "complaint_summary": "wants a discount", "severity": "low"})
    declined.act("accept_complaint", "svc1", {"acceptance_decision": "decline", "category": "billing",
                                              "acceptance_comment": "not a defect"})
    declined.act("feedback_to_customer", "svc1", {"feedback_summary": "explained", "customer_reached": True})
    clock.advance(hours=1)
    declined.act("satisfaction_survey", "rep1", {"satisfaction": 2})
    with rt.read() as s:
        # a complaint about a contract counts against the contract's customer, whatever name was typed: the early
        # warning must not flag another customer, nor a typed name become a customer of its own
        other = s.scalar(select(Complaint).where(Complaint.instance_id == declined.id))
        assert other.customer_id == customer_id
        assert s.scalar(select(func.count()).select_from(Customer).where(Customer.name == "新客户 New Customer")) == 0
    assert (other.severity, other.status, other.satisfaction, other.closed_at) == ("low", "declined", 2, clock.now())


# --- the refusals read in Chinese ---------------------------------------------------------------------------


def _returned_messages(module: str) -> list[str]:
    """The shapes of the strings the ``*_problem`` functions of ``module`` return (f-string parts become "1"; a
    conditional between two texts gives both)."""
    def shapes(node) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.JoinedStr):
            out = [""]
            for part in node.values:
                if isinstance(part, ast.Constant):
                    options = [part.value]
                elif isinstance(part.value, ast.IfExp) and all(
                        isinstance(b, ast.Constant) for b in (part.value.body, part.value.orelse)):
                    options = [part.value.body.value, part.value.orelse.value]
                else:
                    options = ["1"]
                out = [o + x for o in out for x in options]
            return out
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return [a + b for a in shapes(node.left) for b in shapes(node.right)]
        return []

    found = []
    for fn in ast.walk(ast.parse((ROOT / module).read_text())):
        if isinstance(fn, ast.FunctionDef) and fn.name.endswith("_problem"):
            for node in ast.walk(fn):
                if isinstance(node, ast.Return) and node.value is not None:
                    found += shapes(node.value)
    return found


def test_every_refusal_of_the_records_service_reads_in_chinese():
    assert raised_messages("workflows/services/records.py") == ["the form '1' has errors"]
    assert untranslated("workflows/services/records.py") == []
    shapes = _returned_messages("workflows/services/records.py")
    assert len(shapes) == 7, shapes  # six sentences, one of them short or over
    assert [s for s in shapes if not any(p.match(s) for p, _ in _PATTERNS)] == []
    expected = {
        "the installments add up to 23,200.00 but the contract amount is 24,000.00 (short by 800.00)":
            "各期金额合计 23,200.00，与合同金额 24,000.00 不符（少 800.00）",
        "the installments add up to 24,200.50 but the contract amount is 24,000.00 (over by 200.50)":
            "各期金额合计 24,200.50，与合同金额 24,000.00 不符（多 200.50）",
        "the installments must be in order of their due dates": "各期须按到期日先后排列",
        "every installment needs an amount above zero": "每一期的金额都须大于零",
        "the amount received (11,000.01) is more than what is still open on the contract (11,000.00)":
            "实收金额（11,000.01）超过合同尚未收取的金额（11,000.00）",
        "the amount received must be above zero": "实收金额须大于零",
        "the customer '华东机械 East China Machinery' belongs to 王小明 Wang Xiaoming; ask the director for it with an "
        "ownership request instead of quoting it":
            "客户「华东机械 East China Machinery」归属于 王小明 Wang Xiaoming；"
            "请通过客户归属申请向总监申请，不要直接报价",
        "the form 'Draft contract / 起草合同' has errors": "表单「起草合同」有错误",
    }
    for english, chinese in expected.items():
        assert localize_message(english, "zh-CN") == chinese
        assert localize_message(english, "en") == english


def test_backfill_gives_older_contracts_their_records_once(rt, clock):
    """Contracts that ran before the records existed (simulated by deleting their rows) get them from their
    process data: the rep who quoted owns the customer (not the supervisor whose step came last), the contract,
    its plan and payments; a second run changes nothing."""
    from sqlalchemy import delete

    from models import Complaint as ComplaintRow
    from models import Contract as ContractRow
    from models import Customer as CustomerRow
    from models import Installment as InstallmentRow
    from models import OwnershipChange, Payment
    from models import Quote as QuoteRow
    from workflows.services import records_backfill

    flow = Flow(rt)
    flow.to_collection()
    clock.set(DEC_15)
    timers.fire_due_timers(rt)
    _pay(flow, "3000.00", "2026-12-15", "BANK-1")
    with rt.write() as s:
        for model in (Payment, InstallmentRow, ContractRow, QuoteRow, ComplaintRow, OwnershipChange, CustomerRow):
            s.execute(delete(model))
    waiting = Flow(rt, starter="rep2")  # no quote submitted yet: nothing to record
    report = records_backfill.backfill(rt)
    assert (report.instances, report.filled) == (2, 1)
    with rt.read() as s:
        customer = s.scalar(select(CustomerRow))
        contract = s.scalar(select(ContractRow))
        assert customer.owner_id == _user_id(rt, "rep1") and contract.rep_id == _user_id(rt, "rep1")
        assert (contract.amount, contract.paid, contract.status) == (Decimal("24000.00"), Decimal("3000.00"),
                                                                     "delivered")
        assert s.scalar(select(func.count()).select_from(InstallmentRow)) == 2
        assert [q.status for q in s.scalars(select(QuoteRow))] == ["approved"]
    again = records_backfill.backfill(rt)
    assert (again.instances, again.filled) == (1, 0)  # only the waiting quote, still with nothing to record
    assert _quotes(rt, waiting.id) == []


def test_after_a_payment_no_step_before_it_is_reopened(rt, clock):
    """record_payment is a return barrier: once a payment is recorded, returning the contract to delivery would run
    init_collection again and wipe the process's payments, so neither finance nor a manager may do it."""
    flow = Flow(rt)
    flow.to_collection()
    clock.set(DEC_15)
    timers.fire_due_timers(rt)
    _pay(flow, "3000.00", "2026-12-15", "BANK-1")
    open_payment = flow.task("record_payment")
    targets = {t.spec_id: t for t in rewind.return_targets(rt, open_payment.id, accounts.get_user(rt, "fin1"))}
    assert not any(t.offered for t in targets.values()), targets
    assert targets["execute_delivery"].reason == "closed"
    with pytest.raises(Conflict, match="is closed"):
        rewind.return_to(rt, open_payment.id, accounts.get_user(rt, "fin1"), "execute_delivery", "redo it")
    assert (flow.data()["paid_total"], _contract(rt, flow.id).paid) == (Decimal("3000.00"), Decimal("3000.00"))
