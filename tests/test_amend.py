"""Contract amendments (合同修订): a signed contract reopens at the quote and goes through review, drafting and
signing again; the records follow; the rules of who and when hold."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from models import AuditEvent, Contract, Installment, Quote
from workflows.services import amend, consistency
from workflows.services.errors import Conflict, InvalidInput, PermissionDenied

from .flow import Flow, approve, quote
from .service_messages import untranslated


def _signed(rt) -> Flow:
    """A 24,000 contract signed and filed: delivery is open."""
    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote())
    f.act("supervisor_review", "sup1", approve("supervisor"))
    f.through_contract()
    assert f.open_specs() == {"execute_delivery"}
    return f


def _contract(rt, f: Flow) -> Contract:
    with rt.read() as s:
        return s.scalar(select(Contract).where(Contract.instance_id == f.id))


def test_an_amendment_goes_through_review_drafting_and_signing_again(rt):
    f = _signed(rt)
    key = f.started.business_key
    assert amend.amend_state(rt, f.id, f.user("rep1")).allowed
    assert not amend.amend_state(rt, f.id, f.user("dlv1")).allowed
    amend.amend(rt, key, f.user("rep1"), "customer adds a third lathe")
    task = f.task("prepare_quote")
    assert f.open_specs() == {"prepare_quote"} and task.assignee == "rep1"  # back to who prepared it
    data = f.data()
    assert (data["amendment_no"], data["amendment_reason"], data["customer_signed_on"]) == (
        1, "customer adds a third lathe", None)
    assert data["line_items"][0]["quantity"] == 2  # the quote as it was, to change
    row = _contract(rt, f)
    assert (row.status, row.amendments, row.signed_on) == ("amending", 1, None)
    with rt.read() as s:
        event = s.scalar(select(AuditEvent).where(AuditEvent.instance_id == f.id, AuditEvent.action == "amend"))
    assert event.actor == "rep1" and event.data["reason"] == "customer adds a third lathe"
    # a second amendment waits until this one is signed
    with pytest.raises(Conflict, match="an amendment of this contract is under way"):
        amend.amend(rt, key, f.user("sup1"), "and a discount")

    f.act("prepare_quote", "rep1", quote(quantity=3))  # 36,000: the decision table asks the manager too
    assert "supervisor_review" in f.open_specs()
    f.act("supervisor_review", "sup1", approve("supervisor"))
    for spec, who in (("manager_review", "mgr1"),):
        if spec in f.open_specs():
            f.act(spec, who, approve("manager"))
    with rt.read() as s:
        quotes = s.execute(select(Quote.revision, Quote.amount, Quote.status).where(Quote.instance_id == f.id)
                           .order_by(Quote.revision)).all()
    assert [tuple(q) for q in quotes] == [(1, Decimal("24000.00"), "revised"), (2, Decimal("36000.00"), "approved")]
    # the new plan must fit the new amount
    with pytest.raises(InvalidInput) as refused:
        f.act("draft_contract", "rep1", {"contract_no": "HT-2026-001-A1", "contract_terms": "Amended",
                                         "payment_plan": [{"amount": "24000.00", "due_date": "2026-12-15"}],
                                         "sign_by": "2026-12-01"})
    assert "payment_plan" in refused.value.errors
    f.through_contract(plan=[{"amount": "10800.00", "due_date": "2026-12-15"},
                             {"amount": "25200.00", "due_date": "2027-01-15"}])
    assert f.open_specs() == {"execute_delivery"}
    row = _contract(rt, f)
    assert (row.status, row.amount, row.amendments, row.contract_no) == (
        "signed", Decimal("36000.00"), 1, "HT-2026-001")
    with rt.read() as s:
        plan = s.execute(select(Installment.no, Installment.amount).where(Installment.contract_id == row.id)
                         .order_by(Installment.no)).all()
    assert [tuple(p) for p in plan] == [(1, Decimal("10800.00")), (2, Decimal("25200.00"))]
    # signed again: a second amendment is possible now, by a supervisor of the team too
    assert amend.amend_state(rt, f.id, f.user("sup1")).allowed
    assert consistency.check_instances(rt, [f.id]) == []  # the amendment counts as one move of the contract


def test_who_and_when_may_amend(rt):
    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote())
    key = f.started.business_key
    with pytest.raises(Conflict, match="is not done yet: before that, send the contract back"):
        amend.amend(rt, key, f.user("rep1"), "too early")
    f.act("supervisor_review", "sup1", approve("supervisor"))
    f.through_contract()
    with pytest.raises(PermissionDenied):
        amend.amend(rt, key, f.user("rep2"), "not mine")  # another rep of the team
    with pytest.raises(PermissionDenied):
        amend.amend(rt, key, f.user("dlv1"), "not mine")
    with pytest.raises(InvalidInput):
        amend.amend(rt, key, f.user("rep1"), "   ")
    version = f.view().version
    with pytest.raises(Conflict, match="has moved on"):
        amend.amend(rt, key, f.user("rep1"), "stale page", expected_version=version - 1)
    assert f.open_specs() == {"execute_delivery"} and f.view().version == version  # nothing happened
    f.through_delivery()
    state = amend.amend_state(rt, f.id, f.user("rep1"))
    assert not state.allowed and "can no longer be amended" in state.reason
    with pytest.raises(Conflict, match="Customer acceptance / 客户验收' is done"):
        amend.amend(rt, key, f.user("mgr1"), "too late")


def test_every_refusal_of_amend_reads_in_chinese():
    assert untranslated("workflows/services/amend.py") == []
