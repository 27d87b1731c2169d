"""Guards on every task action: roles, claims, four eyes, form validation, stale and double submits,
start permissions and run-time failures of a process's own scripts. Each refusal must leave the
database exactly as it was."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from models import AuditEvent, Instance, Step, TaskRow, Timer
from workflows.services import accounts, deployments, instances, tasks, timers
from workflows.services.errors import (
    Conflict,
    FourEyesViolation,
    InvalidInput,
    NotFound,
    PermissionDenied,
    ProcessError,
)

from .flow import QUOTE, Flow, approve, quote

PASSWORD = "test-password-1"


def make_user(rt, username: str, *roles: str):
    return accounts.create_user(rt, username, PASSWORD, list(roles))


def snapshot(rt, instance_id: int) -> dict:
    """Everything a refused action must leave untouched."""
    with rt.read() as s:
        inst = s.get(Instance, instance_id)
        return {
            "version": inst.version,
            "status": inst.status,
            "stage": inst.stage,
            "state": hashlib.sha256(inst.state.encode()).hexdigest(),
            "tasks": [tuple(r) for r in s.execute(
                select(TaskRow.id, TaskRow.spec_id, TaskRow.status, TaskRow.assignee_id, TaskRow.claimed_at,
                       TaskRow.completed_by_id).where(TaskRow.instance_id == instance_id).order_by(TaskRow.id))],
            "timers": [tuple(r) for r in s.execute(
                select(Timer.id, Timer.status, Timer.attempts).where(Timer.instance_id == instance_id)
                .order_by(Timer.id))],
            "steps": s.scalar(select(func.count()).select_from(Step).where(Step.instance_id == instance_id)),
            "audit": s.scalar(select(func.count()).select_from(AuditEvent)),
            "instances": s.scalar(select(func.count()).select_from(Instance)),
        }


def audit_events(rt, action: str, task_id: int | None = None) -> list[AuditEvent]:
    with rt.read() as s:
        q = select(AuditEvent).where(AuditEvent.action == action)
        if task_id is not None:
            q = q.where(AuditEvent.task_id == task_id)
        return list(s.scalars(q.order_by(AuditEvent.id)))


def at_supervisor_review(rt, drafter: str = "rep1") -> Flow:
    flow = Flow(rt, starter=drafter)
    flow.act("prepare_quote", drafter, quote())
    assert flow.open_specs() == {"supervisor_review"}
    return flow


# --------------------------------------------------------------------------------------------------
# Roles and claims
# --------------------------------------------------------------------------------------------------


def test_sales_rep_may_not_complete_the_supervisor_review(rt):
    flow = at_supervisor_review(rt)
    task = flow.task("supervisor_review")
    before = snapshot(rt, flow.id)
    with pytest.raises(PermissionDenied) as exc:
        tasks.complete(rt, task.id, flow.user("rep1"), approve("supervisor"))
    assert type(exc.value) is PermissionDenied
    assert "'supervisor'" in exc.value.message and "rep1" in exc.value.message
    with pytest.raises(PermissionDenied):
        tasks.claim(rt, task.id, flow.user("rep1"))
    assert snapshot(rt, flow.id) == before


def test_legal_may_not_claim_a_finance_task(rt):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote(customer_risk="medium"))  # medium risk: finance only
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    task = flow.task("finance_review")
    assert task.role == "finance"
    before = snapshot(rt, flow.id)
    with pytest.raises(PermissionDenied) as exc:
        tasks.claim(rt, task.id, flow.user("legal1"))
    assert "'finance'" in exc.value.message and "legal1" in exc.value.message
    with pytest.raises(PermissionDenied):
        tasks.complete(rt, task.id, flow.user("legal1"), approve("finance"))
    assert snapshot(rt, flow.id) == before
    tasks.claim(rt, task.id, flow.user("fin1"))
    assert tasks.get_task(rt, task.id).assignee == "fin1"


def test_a_claimed_task_belongs_to_its_holder(rt):
    sup2 = make_user(rt, "sup2", "supervisor")
    flow = at_supervisor_review(rt)
    task = flow.task("supervisor_review")
    assert tasks.claim(rt, task.id, flow.user("sup1")).assignee == "sup1"
    before = snapshot(rt, flow.id)
    with pytest.raises(Conflict) as exc:
        tasks.complete(rt, task.id, sup2, approve("supervisor"))
    assert "claimed by sup1" in exc.value.message
    with pytest.raises(Conflict) as exc:
        tasks.claim(rt, task.id, sup2)
    assert "claimed by sup1" in exc.value.message
    with pytest.raises(Conflict) as exc:
        tasks.unclaim(rt, task.id, sup2)
    assert "not claimed by sup2" in exc.value.message
    assert snapshot(rt, flow.id) == before
    assert tasks.get_task(rt, task.id).assignee == "sup1"
    # the holder lets go; now sup2 may take it
    assert tasks.unclaim(rt, task.id, flow.user("sup1")).assignee is None
    assert tasks.claim(rt, task.id, sup2).assignee == "sup2"
    done = tasks.complete(rt, task.id, sup2, approve("supervisor"))
    assert done.instance_status == "running"
    assert flow.open_specs() == {"draft_contract"}
    with rt.read() as s:
        row = s.get(TaskRow, task.id)
    assert (row.status, row.completed_by_id) == ("completed", sup2.id)


def test_unclaim_of_an_unclaimed_task_is_a_conflict(rt):
    flow = at_supervisor_review(rt)
    task = flow.task("supervisor_review")
    before = snapshot(rt, flow.id)
    with pytest.raises(Conflict) as exc:
        tasks.unclaim(rt, task.id, flow.user("sup1"))
    assert "not claimed by sup1" in exc.value.message
    assert snapshot(rt, flow.id) == before


def test_claim_is_idempotent_for_the_holder(rt):
    flow = at_supervisor_review(rt)
    task = flow.task("supervisor_review")
    first = tasks.claim(rt, task.id, flow.user("sup1"))
    before = snapshot(rt, flow.id)
    second = tasks.claim(rt, task.id, flow.user("sup1"))
    assert first == second
    assert second.assignee == "sup1"
    assert snapshot(rt, flow.id) == before
    assert len(audit_events(rt, "claim", task.id)) == 1


def test_reassign_refuses_bad_targets_and_missing_reasons(rt):
    make_user(rt, "sup2", "supervisor")
    flow = at_supervisor_review(rt)
    task = flow.task("supervisor_review")
    tasks.claim(rt, task.id, flow.user("sup1"))
    before = snapshot(rt, flow.id)
    sup1 = flow.user("sup1")

    with pytest.raises(InvalidInput) as exc:
        tasks.reassign(rt, task.id, sup1, "rep2", "on leave")
    assert set(exc.value.errors) == {"to"}
    assert "rep2" in exc.value.errors["to"] and "'supervisor'" in exc.value.errors["to"]

    with pytest.raises(InvalidInput) as exc:
        tasks.reassign(rt, task.id, sup1, "nobody_here", "on leave")
    assert set(exc.value.errors) == {"to"}
    assert "nobody_here" in exc.value.errors["to"]

    for reason in ("", "   \t"):
        with pytest.raises(InvalidInput) as exc:
            tasks.reassign(rt, task.id, sup1, "sup2", reason)
        assert set(exc.value.errors) == {"reason"}

    # neither the holder nor a supervisory role: rep2 may not hand the review around
    with pytest.raises(PermissionDenied):
        tasks.reassign(rt, task.id, flow.user("rep2"), "sup2", "trying")
    with pytest.raises(NotFound):
        tasks.reassign(rt, 987654, sup1, "sup2", "no such task")
    assert snapshot(rt, flow.id) == before
    assert tasks.get_task(rt, task.id).assignee == "sup1"


def test_reassign_by_a_sales_rep_of_a_colleagues_task_is_refused(rt):
    flow = Flow(rt)
    task = flow.task("prepare_quote")
    tasks.claim(rt, task.id, flow.user("rep1"))
    before = snapshot(rt, flow.id)
    with pytest.raises(PermissionDenied) as exc:
        tasks.reassign(rt, task.id, flow.user("rep2"), "rep2", "I'll take it")
    assert "holder" in exc.value.message
    assert snapshot(rt, flow.id) == before


def test_holder_reassigns_with_an_audit_record(rt):
    sup2 = make_user(rt, "sup2", "supervisor")
    flow = at_supervisor_review(rt)
    task = flow.task("supervisor_review")
    tasks.claim(rt, task.id, flow.user("sup1"))
    item = tasks.reassign(rt, task.id, flow.user("sup1"), "sup2", "  on leave next week ")
    assert item.assignee == "sup2"
    events = audit_events(rt, "reassign", task.id)
    assert len(events) == 1
    event = events[0]
    assert event.actor == "sup1" and event.instance_id == flow.id and event.spec_id == "supervisor_review"
    assert event.data == {"from": "sup1", "to": "sup2", "reason": "on leave next week"}
    # sup1 lost the task with the reassignment; sup2 completes it
    with pytest.raises(Conflict):
        tasks.complete(rt, task.id, flow.user("sup1"), approve("supervisor"))
    tasks.complete(rt, task.id, sup2, approve("supervisor"))
    assert flow.open_specs() == {"draft_contract"}


# --------------------------------------------------------------------------------------------------
# Four eyes
# --------------------------------------------------------------------------------------------------


def test_four_eyes_the_drafter_may_not_review_the_quote(rt):
    dual = make_user(rt, "dual_sup", "sales_rep", "supervisor")
    flow = Flow(rt, starter="dual_sup")
    flow.act("prepare_quote", "dual_sup", quote())
    task = flow.task("supervisor_review")
    # the role check alone would let dual_sup see the review
    assert task.id in [t.id for t in tasks.list_tasks(rt, dual, "open").items]
    before = snapshot(rt, flow.id)
    with pytest.raises(FourEyesViolation) as exc:
        tasks.claim(rt, task.id, dual)
    assert "Prepare quote" in exc.value.message and "dual_sup" in exc.value.message
    with pytest.raises(FourEyesViolation) as exc:
        tasks.complete(rt, task.id, dual, approve("supervisor"))
    assert "Prepare quote" in exc.value.message
    # nor can a supervisor hand the review to the drafter
    with pytest.raises(FourEyesViolation) as exc:
        tasks.reassign(rt, task.id, flow.user("sup1"), "dual_sup", "please take over")
    assert "dual_sup" in exc.value.message
    assert snapshot(rt, flow.id) == before
    tasks.complete(rt, task.id, flow.user("sup1"), approve("supervisor"))
    assert flow.open_specs() == {"draft_contract"}


def test_four_eyes_survives_a_send_back_round(rt):
    """Whoever drafted in any round stays excluded, even if a colleague reworked the quote later."""
    make_user(rt, "dual_sup", "sales_rep", "supervisor")
    flow = Flow(rt, starter="dual_sup")
    flow.act("prepare_quote", "dual_sup", quote())
    flow.act("supervisor_review", "sup1", {"supervisor_decision": "send_back", "supervisor_comment": "redo"})
    # the rework comes back to dual_sup, who hands it to a colleague
    tasks.reassign(rt, flow.task("prepare_quote").id, flow.user("dual_sup"), "rep1", "on leave")
    flow.act("prepare_quote", "rep1", quote(discount_pct=1))
    task = flow.task("supervisor_review")
    with pytest.raises(FourEyesViolation):
        tasks.complete(rt, task.id, flow.user("dual_sup"), approve("supervisor"))


def test_four_eyes_the_contract_drafter_may_not_check_it(rt):
    dual = make_user(rt, "dual_legal", "sales_rep", "legal")
    flow = Flow(rt, starter="dual_legal")
    flow.act("prepare_quote", "dual_legal", quote())
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    flow.act("draft_contract", "dual_legal", {"contract_no": "HT-4E-1", "contract_terms": "Standard terms",
                                              "payment_plan": [{"amount": "24000.00", "due_date": "2026-12-15"}],
                                              "sign_by": "2026-12-01"})
    task = flow.task("legal_contract_check")
    before = snapshot(rt, flow.id)
    with pytest.raises(FourEyesViolation) as exc:
        tasks.claim(rt, task.id, dual)
    assert "Draft contract" in exc.value.message and "dual_legal" in exc.value.message
    with pytest.raises(FourEyesViolation):
        tasks.complete(rt, task.id, dual, {"contract_check_decision": "approve"})
    with pytest.raises(FourEyesViolation):
        tasks.reassign(rt, task.id, flow.user("legal1"), "dual_legal", "busy")
    assert snapshot(rt, flow.id) == before
    flow.act("legal_contract_check", "legal1", {"contract_check_decision": "approve"})
    assert flow.open_specs() == {"sign_company"}


# --------------------------------------------------------------------------------------------------
# Forms
# --------------------------------------------------------------------------------------------------


def _without(key):
    def change(data):
        del data[key]
    return change


def _set(key, value):
    def change(data):
        data[key] = value
    return change


def _item(key, value):
    def change(data):
        data["line_items"][0][key] = value
    return change


FORM_CASES = {
    "missing required field": (_without("payment_terms"), {"payment_terms": "required"}),
    "unknown field": (_set("po_number", "PO-1"), {"po_number": "not part of the form"}),
    "text for a number": (_set("discount_pct", "ten"), {"discount_pct": "must be a number"}),
    "fraction for a whole number": (_item("quantity", 1.5), {"line_items/0/quantity": "whole number"}),
    "text for a whole number": (_item("quantity", "2"), {"line_items/0/quantity": "whole number"}),
    "boolean for a whole number": (_item("quantity", True), {"line_items/0/quantity": "whole number"}),
    "number for money": (_item("unit_price", 12000), {"line_items/0/unit_price": "text"}),
    "malformed money": (_item("unit_price", "12,000.00"), {"line_items/0/unit_price": "amount such as"}),
    "negative money": (_item("unit_price", "-5.00"), {"line_items/0/unit_price": "wrong format"}),
    "non-ISO date": (_set("delivery_date", "31/12/2026"), {"delivery_date": "2026-12-31"}),
    "impossible date": (_set("delivery_date", "2026-02-30"), {"delivery_date": "2026-12-31"}),
    "unknown nested field": (_item("colour", "red"), {"line_items/0/colour": "not part of the form"}),
    "dunder in a line item": (_item("__class__", "x"), {"line_items/0/__class__": "reserved"}),
    "typename key": (_set("typename", "BpmnWorkflow"), {"typename": "reserved"}),
    "builtins key": (_set("__builtins__", {"open": 1}), {"__builtins__": "reserved"}),
    "empty line items": (_set("line_items", []), {"line_items": "at least 1"}),
    "discount above 100": (_set("discount_pct", 150), {"discount_pct": "at most 100"}),
    "unknown risk": (_set("customer_risk", "extreme"), {"customer_risk": "low, medium, high"}),
    "everything at once": (
        lambda d: (d.pop("customer_name"), d.update(discount_pct="ten", typename=1),
                   d["line_items"][0].update(quantity=1.5, unit_price=12000)),
        {"customer_name": "required", "discount_pct": "number", "typename": "reserved",
         "line_items/0/quantity": "whole number", "line_items/0/unit_price": "text"},
    ),
}


@pytest.mark.parametrize("case", list(FORM_CASES), ids=list(FORM_CASES))
def test_prepare_quote_form_errors_change_nothing(rt, case):
    change, expected = FORM_CASES[case]
    flow = Flow(rt)
    task = flow.task("prepare_quote")
    data = copy.deepcopy(QUOTE)
    change(data)
    before = snapshot(rt, flow.id)
    with pytest.raises(InvalidInput) as exc:
        tasks.complete(rt, task.id, flow.user("rep1"), data)
    assert set(exc.value.errors) == set(expected), exc.value.errors
    for path, fragment in expected.items():
        assert fragment in exc.value.errors[path], (path, exc.value.errors[path])
    assert "Prepare quote" in exc.value.message
    assert snapshot(rt, flow.id) == before
    assert flow.open_specs() == {"prepare_quote"}
    # nothing was lost: the corrected submission goes through on the same task
    done = tasks.complete(rt, task.id, flow.user("rep1"), quote())
    assert done.instance_version > before["version"]
    assert flow.open_specs() == {"supervisor_review"}


def test_form_data_must_be_an_object(rt):
    flow = Flow(rt)
    task = flow.task("prepare_quote")
    before = snapshot(rt, flow.id)
    for data in ([QUOTE], "customer_name=x", None):
        with pytest.raises(InvalidInput) as exc:
            tasks.complete(rt, task.id, flow.user("rep1"), data)
        assert set(exc.value.errors) == {""}
    assert snapshot(rt, flow.id) == before


@pytest.mark.parametrize("data, expected", [
    ({"supervisor_decision": "send_back"}, {"supervisor_comment": "required"}),
    ({"supervisor_decision": "send_back", "supervisor_comment": ""}, {"supervisor_comment": "at least 1"}),
    ({"supervisor_decision": "reject"}, {"supervisor_comment": "required"}),
    ({"supervisor_decision": "maybe"}, {"supervisor_decision": "approve, reject, send_back",
                                        "supervisor_comment": "required"}),
    ({}, {"supervisor_decision": "required"}),
])
def test_review_comment_rules(rt, data, expected):
    flow = at_supervisor_review(rt)
    task = flow.task("supervisor_review")
    before = snapshot(rt, flow.id)
    with pytest.raises(InvalidInput) as exc:
        tasks.complete(rt, task.id, flow.user("sup1"), data)
    assert set(exc.value.errors) == set(expected), exc.value.errors
    for field, fragment in expected.items():
        assert fragment in exc.value.errors[field]
    assert snapshot(rt, flow.id) == before
    tasks.complete(rt, task.id, flow.user("sup1"), dict(data, supervisor_decision="send_back",
                                                         supervisor_comment="please recheck"))
    assert flow.open_specs() == {"prepare_quote"}


# --------------------------------------------------------------------------------------------------
# Stale and double submits
# --------------------------------------------------------------------------------------------------


def test_completing_a_task_twice_is_a_conflict(rt):
    flow = at_supervisor_review(rt)
    task = flow.task("supervisor_review")
    tasks.complete(rt, task.id, flow.user("sup1"), approve("supervisor"))
    before = snapshot(rt, flow.id)
    with pytest.raises(Conflict) as exc:
        tasks.complete(rt, task.id, flow.user("sup1"), approve("supervisor"))
    assert "already completed" in exc.value.message and "sup1" in exc.value.message
    for action in (tasks.claim, tasks.unclaim):
        with pytest.raises(Conflict) as exc:
            action(rt, task.id, flow.user("sup1"))
        assert "already completed" in exc.value.message
    assert snapshot(rt, flow.id) == before
    assert len(audit_events(rt, "complete", task.id)) == 1
    assert flow.view().path.count("supervisor_review") == 1


def test_a_stale_expected_version_is_a_conflict(rt):
    flow = at_supervisor_review(rt)
    task = flow.task("supervisor_review")
    current = flow.view().version
    assert task.instance_version == current
    before = snapshot(rt, flow.id)
    with pytest.raises(Conflict) as exc:
        tasks.complete(rt, task.id, flow.user("sup1"), approve("supervisor"), expected_version=current - 1)
    assert f"now {current}" in exc.value.message
    assert snapshot(rt, flow.id) == before
    tasks.complete(rt, task.id, flow.user("sup1"), approve("supervisor"), expected_version=current)
    assert flow.open_specs() == {"draft_contract"}


def test_unknown_task_ids_are_not_found(rt):
    flow = Flow(rt)
    before = snapshot(rt, flow.id)
    rep1 = flow.user("rep1")
    for action in (lambda: tasks.complete(rt, 987654, rep1, quote()), lambda: tasks.claim(rt, 987654, rep1),
                   lambda: tasks.unclaim(rt, 987654, rep1), lambda: tasks.get_task(rt, 987654)):
        with pytest.raises(NotFound) as exc:
            action()
        assert "987654" in exc.value.message
    assert snapshot(rt, flow.id) == before


# --------------------------------------------------------------------------------------------------
# Processes deployed by the test: cancelled tasks and scripts that fail at run time
# --------------------------------------------------------------------------------------------------

SCRIPTED = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
    id="Defs_guarded" targetNamespace="http://lvyue.example/tests">
  <bpmn:process id="guarded" name="Guarded / 守卫" isExecutable="true">
    <bpmn:laneSet id="LaneSet_guarded">
      <bpmn:lane id="Lane_rep" name="Sales rep / 销售代表">
        <bpmn:extensionElements>
          <spiffworkflow:properties>
            <spiffworkflow:property name="role" value="sales_rep" />
          </spiffworkflow:properties>
        </bpmn:extensionElements>
        <bpmn:flowNodeRef>start</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>enter_divisor</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>deadline</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>divide</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>end_done</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>end_late</bpmn:flowNodeRef>
      </bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start" name="Start / 开始" />
    <bpmn:sequenceFlow id="f_start" sourceRef="start" targetRef="enter_divisor" />
    <bpmn:userTask id="enter_divisor" name="Enter divisor / 输入除数">
      <bpmn:extensionElements>
        <spiffworkflow:properties>
          <spiffworkflow:property name="formJsonSchemaFilename" value="enter_divisor.schema.json" />
        </spiffworkflow:properties>
        <spiffworkflow:postScript>POST_SCRIPT</spiffworkflow:postScript>
      </bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:boundaryEvent id="deadline" name="Deadline / 截止" attachedToRef="enter_divisor">
      <bpmn:timerEventDefinition id="deadline_timer">
        <bpmn:timeDate xsi:type="bpmn:tFormalExpression">'2026-11-25T00:00:00+00:00'</bpmn:timeDate>
      </bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:sequenceFlow id="f_late" sourceRef="deadline" targetRef="end_late" />
    <bpmn:endEvent id="end_late" name="Too late / 超时" />
    <bpmn:sequenceFlow id="f_divide" sourceRef="enter_divisor" targetRef="divide" />
    <bpmn:scriptTask id="divide" name="Divide / 除法">
      <bpmn:script>ratio = 100 / divisor</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f_end" sourceRef="divide" targetRef="end_done" />
    <bpmn:endEvent id="end_done" name="Done / 完成" />
  </bpmn:process>
</bpmn:definitions>
"""
DIVISOR_FORM = json.dumps({
    "$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Divisor", "type": "object",
    "properties": {"divisor": {"title": "Divisor", "type": "integer"}},
    "required": ["divisor"], "additionalProperties": False,
}).encode()


def deploy_guarded(rt, post_script: str = "checked = divisor"):
    result = deployments.deploy_files(rt, {"guarded.bpmn": SCRIPTED.replace("POST_SCRIPT", post_script).encode(),
                                           "enter_divisor.schema.json": DIVISOR_FORM})
    assert result.created and result.process_key == "guarded"
    return result


def test_completing_a_cancelled_task_is_a_conflict(rt, clock):
    deploy_guarded(rt)
    started = instances.start_instance(rt, "guarded", accounts.get_user(rt, "rep1"))
    (task_id,) = started.open_task_ids
    clock.set(datetime(2026, 11, 25, 0, 0, 1, tzinfo=UTC))
    assert timers.fire_due_timers(rt).fired == 1
    assert tasks.get_task(rt, task_id).status == "cancelled"
    assert [e.task_id for e in audit_events(rt, "cancel")] == [task_id]
    before = snapshot(rt, started.instance_id)
    with pytest.raises(Conflict) as exc:
        tasks.complete(rt, task_id, accounts.get_user(rt, "rep1"), {"divisor": 4})
    assert "no longer open" in exc.value.message and "cancelled" in exc.value.message
    with pytest.raises(Conflict):
        tasks.claim(rt, task_id, accounts.get_user(rt, "rep1"))
    assert snapshot(rt, started.instance_id) == before
    view = instances.get_instance(rt, started.instance_id)
    assert (view.status, view.end_event) == ("completed", "end_late")


@pytest.mark.parametrize("post_script, divisor, fragments", [
    ("checked = divisor", 0, ["division by zero", "Divide", "divide"]),
    ("checked = divisor + no_such_variable", 5, ["no_such_variable", "enter_divisor"]),
])
def test_a_script_failing_at_run_time_changes_nothing(rt, post_script, divisor, fragments):
    deploy_guarded(rt, post_script)
    rep1 = accounts.get_user(rt, "rep1")
    started = instances.start_instance(rt, "guarded", rep1)
    (task_id,) = started.open_task_ids
    before = snapshot(rt, started.instance_id)
    with pytest.raises(ProcessError) as exc:
        tasks.complete(rt, task_id, rep1, {"divisor": divisor})
    for fragment in fragments:
        assert fragment in exc.value.message, exc.value.message
    assert "Traceback" not in exc.value.message and "\n" not in exc.value.message
    assert snapshot(rt, started.instance_id) == before
    assert tasks.get_task(rt, task_id).status == "open"
    if "no_such_variable" in post_script:
        return
    # the task is still there and takes a good value
    tasks.complete(rt, task_id, rep1, {"divisor": 4})
    view = instances.get_instance(rt, started.instance_id)
    assert (view.status, view.end_event) == ("completed", "end_done")
    assert instances.instance_data(rt, started.instance_id)["ratio"] == 25


# --------------------------------------------------------------------------------------------------
# Starting instances
# --------------------------------------------------------------------------------------------------


def test_who_may_start_a_quote(rt):
    started = instances.start_instance(rt, "quote_to_cash", accounts.get_user(rt, "rep1"), {"customer_name": "X"})
    assert started.status == "running" and len(started.open_task_ids) == 1
    before = snapshot(rt, started.instance_id)
    for name in ("fin1", "sup1", "audit1"):
        with pytest.raises(PermissionDenied) as exc:
            instances.start_instance(rt, "quote_to_cash", accounts.get_user(rt, name), {"customer_name": "Y"})
        assert "sales_rep" in exc.value.message
    with pytest.raises(NotFound):
        instances.start_instance(rt, "no_such_process", accounts.get_user(rt, "rep1"), {})
    assert snapshot(rt, started.instance_id) == before


def test_quote_start_data_is_limited_to_the_customer_name(rt):
    rep1 = accounts.get_user(rt, "rep1")
    with pytest.raises(InvalidInput) as exc:
        instances.start_instance(rt, "quote_to_cash", rep1, {"customer_name": "X", "amount": "1.00"})
    assert set(exc.value.errors) == {"amount"}
    with pytest.raises(InvalidInput) as exc:
        instances.start_instance(rt, "quote_to_cash", rep1, {"customer_name": 42})
    assert set(exc.value.errors) == {"customer_name"}
    with rt.read() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 0


COMPLAINT = {"customer_name": "华东机械", "complaint_summary": "noise", "severity": "low"}


def test_complaint_start_needs_an_existing_contract(rt):
    svc1 = accounts.get_user(rt, "svc1")
    with pytest.raises(InvalidInput) as exc:
        instances.start_instance(rt, "complaint", svc1, dict(COMPLAINT, contract_key="Q-2026-99999"))
    assert set(exc.value.errors) == {"contract_key"}
    assert "Q-2026-99999" in exc.value.errors["contract_key"]
    with pytest.raises(InvalidInput) as exc:
        instances.start_instance(rt, "complaint", svc1, {"customer_name": "华东机械"})
    assert exc.value.errors == {"contract_key": "this field is required",
                                "complaint_summary": "this field is required",
                                "severity": "this field is required"}
    with pytest.raises(InvalidInput) as exc:
        instances.start_instance(rt, "complaint", svc1, dict(COMPLAINT, contract_key="Q-1", priority="high"))
    assert set(exc.value.errors) == {"priority"}
    with pytest.raises(PermissionDenied):
        instances.start_instance(rt, "complaint", accounts.get_user(rt, "rep1"), dict(COMPLAINT, contract_key="x"))
    with rt.read() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 0
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "start")) == 0
    contract = Flow(rt)
    with pytest.raises(InvalidInput) as exc:  # still a quote: nothing after-sales may see or complain about
        instances.start_instance(rt, "complaint", svc1, dict(COMPLAINT, contract_key=contract.started.business_key))
    assert exc.value.errors == {"contract_key": f"no contract with the key '{contract.started.business_key}'"}
    contract.to_collection()
    started = instances.start_instance(rt, "complaint", svc1,
                                       dict(COMPLAINT, contract_key=contract.started.business_key))
    assert started.status == "running"


def test_an_amount_beyond_what_the_database_stores_is_refused_cleanly(rt):
    flow = Flow(rt)
    huge = quote(total_price="9999999999999.99", quantity=1_000_000)
    with pytest.raises(ProcessError) as exc:
        flow.act("prepare_quote", "rep1", huge)
    assert "larger than Lvyue can store" in exc.value.message
    assert flow.open_specs() == {"prepare_quote"}  # nothing changed


def test_nul_characters_are_refused_by_the_form_check(rt):
    flow = Flow(rt)
    with pytest.raises(InvalidInput) as exc:
        flow.act("prepare_quote", "rep1", quote(customer_name="A\x00B"))
    assert exc.value.errors == {"customer_name": "must not contain control characters"}


def test_business_keys_given_by_integrations_are_url_safe(rt):
    rep1 = accounts.get_user(rt, "rep1")
    for bad in ("a/b", "x" * 121, "", "../etc", "空格 key"):
        with pytest.raises(InvalidInput) as exc:
            instances.start_instance(rt, "quote_to_cash", rep1, {}, business_key=bad)
        assert set(exc.value.errors) == {"business_key"}, bad
    assert instances.start_instance(rt, "quote_to_cash", rep1, {}, business_key="CRM-2026.001_a").business_key
