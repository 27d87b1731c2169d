""""Why is this mine?" (为什么分给我？): the routing explanation of a task through the service layer and on the
task page — lane, role, team and why the viewer sees it; claims, releases, reassignments and other hand-overs;
and for approvals the row of the approval matrix that demanded the level, with the values it matched on. The
expected rows are computed here from bpmn/approval_matrix.dmn itself, with an evaluator of its own."""

from __future__ import annotations

import operator
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from workflows.services import accounts, audit, routing, tasks
from workflows.services.errors import PermissionDenied

from .flow import Flow, approve, quote

ROOT = Path(__file__).resolve().parents[1]
DMN = ROOT / "bpmn" / "approval_matrix.dmn"
DMN_NS = {"d": "https://www.omg.org/spec/DMN/20191111/MODEL/"}
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


# --- the approval matrix, read independently of the engine ---------------------------------------------

def _matrix() -> tuple[list[str], list[dict]]:
    table = ET.parse(DMN).getroot().find("d:decision/d:decisionTable", DMN_NS)
    assert table.get("hitPolicy") == "FIRST"  # _expected below takes the first matching row
    inputs = [i.findtext("d:inputExpression/d:text", namespaces=DMN_NS).strip()
              for i in table.findall("d:input", DMN_NS)]
    outputs = [o.get("name") for o in table.findall("d:output", DMN_NS)]
    rules = []
    for number, rule in enumerate(table.findall("d:rule", DMN_NS), start=1):
        cells = [e.findtext("d:text", namespaces=DMN_NS).strip() for e in rule.findall("d:inputEntry", DMN_NS)]
        outs = [e.findtext("d:text", namespaces=DMN_NS).strip() for e in rule.findall("d:outputEntry", DMN_NS)]
        assert set(outs) <= {"True", "False"}, outs
        rules.append({"row": number, "description": rule.findtext("d:description", namespaces=DMN_NS),
                      "cells": dict(zip(inputs, cells, strict=True)),
                      "outputs": {name: text == "True" for name, text in zip(outputs, outs, strict=True)}})
    return inputs, rules


def _cell_matches(cell: str, value) -> bool:
    if cell == "-":
        return True
    compared = re.fullmatch(r"(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?)", cell)
    if compared:
        return _OPS[compared.group(1)](Decimal(str(value)), Decimal(compared.group(2)))
    if len(cell) >= 2 and cell[0] == cell[-1] == '"':
        return value == cell[1:-1]
    if re.fullmatch(r"-?\d+(?:\.\d+)?", cell):
        return Decimal(str(value)) == Decimal(cell)
    raise AssertionError(f"this test cannot read the DMN cell {cell!r}")


def _expected(values: dict) -> dict:
    inputs, rules = _matrix()
    for rule in rules:
        if all(_cell_matches(rule["cells"][name], values[name]) for name in inputs):
            return rule
    raise AssertionError(f"no row of the matrix matches {values}")


def _amount(price: str, quantity: int, discount: int) -> Decimal:
    # compute_totals in quote_to_cash.bpmn: the subtotal less the discount, to the cent
    return (Decimal(quantity) * Decimal(price) * (100 - discount) / 100).quantize(Decimal("0.01"), ROUND_HALF_UP)


def _to_manager(rt, price: str, quantity: int = 1, discount: int = 0, risk: str = "low") -> tuple[Flow, dict]:
    """A quote prepared by rep1 and approved by sup1; returns the flow and what the matrix says of it."""
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote(price, quantity, discount_pct=discount, customer_risk=risk))
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    values = {"amount": _amount(price, quantity, discount), "discount_pct": discount, "customer_risk": risk}
    return flow, values


def _check_decision(dec: routing.Decision, values: dict, rule: dict, read: str, source: str) -> None:
    assert (dec.task_id, dec.decision_id, dec.hit_policy) == ("approval_matrix_task", "approval_matrix", "FIRST")
    assert dec.task_name == "Determine approvals / 确定审批层级"
    assert dec.decision_name == "Approval matrix / 审批矩阵"
    assert dec.error is None and dec.source == source
    assert (dec.row, dec.description) == (rule["row"], rule["description"])
    assert dec.rows_matched[0] == rule["row"]
    assert {i.expression: i.value for i in dec.inputs} == values
    assert {i.expression: i.entry or "-" for i in dec.inputs} == rule["cells"]
    assert {o.name: o.value for o in dec.outputs} == rule["outputs"]
    assert [o.name for o in dec.outputs if o.read] == [read]
    assert dec.agrees


# --- the service ---------------------------------------------------------------------------------------

# below, within and above the manager's amount band (a manager review below it comes from the discount)
MANAGER_CASES = [("30000.00", 8), ("120000.00", 0), ("600000.00", 0)]


def test_a_manager_review_names_the_matrix_row_for_three_amounts(rt):
    rows = []
    for price, discount in MANAGER_CASES:
        flow, values = _to_manager(rt, price, discount=discount)
        rule = _expected(values)
        assert rule["outputs"]["need_manager"], f"{values} needs no manager: choose other amounts"
        review = flow.task("manager_review")

        why = routing.explain(rt, review.id, flow.user("mgr1"))

        assert (why.spec_id, why.status, why.lane, why.role) == ("manager_review", "open", "Manager / 经理", "manager")
        assert (why.team, why.team_scoped, why.holder) == ("east", True, None)
        assert why.reasons == ("role", "supervisor")  # a manager of the east team, who also oversees it
        assert why.conditions == (routing.Condition("gw_need_manager", "Manager approval needed? / 需经理审批？",
                                                    "Needed / 需要", "need_manager"),)
        [dec] = why.decisions
        _check_decision(dec, values, rule, "need_manager", "engine")
        rows.append(dec.row)
    assert len(set(rows)) == 3, rows


def test_director_and_legal_reviews_name_the_row_that_demanded_them(rt):
    flow, values = _to_manager(rt, "1500000.00")
    rule = _expected(values)
    assert rule["outputs"]["need_director"] and rule["outputs"]["need_legal"]
    flow.act("manager_review", "mgr1", approve("manager"))

    why = routing.explain(rt, flow.task("director_review").id, flow.user("dir1"))
    assert why.lane == "Director / 总监" and not why.team_scoped
    assert why.reasons == ("role", "supervisor")
    # the way in: the director gateway only (the merge before it may be reached either way)
    assert [(c.gateway_id, c.expression) for c in why.conditions] == [("gw_need_director", "need_director")]
    _check_decision(why.decisions[0], values, rule, "need_director", "engine")

    flow.act("director_review", "dir1", approve("director"))
    why = routing.explain(rt, flow.task("legal_review").id, flow.user("legal1"))
    assert [(c.gateway_id, c.expression) for c in why.conditions] == [("gw_need_legal", "need_legal")]
    assert why.reasons == ("role",)
    _check_decision(why.decisions[0], values, rule, "need_legal", "engine")


def test_a_finished_review_keeps_the_row_it_was_routed_by_after_a_send_back(rt, clock):
    flow, first = _to_manager(rt, "600000.00")
    old = flow.task("manager_review")
    clock.advance(minutes=5)
    flow.act("manager_review", "mgr1", {"manager_decision": "send_back", "manager_comment": "价格过高"})

    # the quote goes straight back to the rep who prepared it: shown as a hand-over by the system
    redo = flow.task("prepare_quote")
    why = routing.explain(rt, redo.id, flow.user("rep1"))
    assert [(a.action, a.actor, a.to_user) for a in why.assignments] == [("return", "system", "rep1")]
    assert why.reasons == ("holder", "role") and why.holder == "rep1"

    clock.advance(minutes=5)
    flow.act("prepare_quote", "rep1", quote("120000.00", 1))
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    second = {"amount": Decimal("120000.00"), "discount_pct": 0, "customer_risk": "low"}
    assert _expected(first)["row"] != _expected(second)["row"]

    new = routing.explain(rt, flow.task("manager_review").id, flow.user("mgr1"))
    _check_decision(new.decisions[0], second, _expected(second), "need_manager", "engine")
    # the first review is done and its engine task gone: its values come back from the audit events
    done = routing.explain(rt, old.id, flow.user("mgr1"))
    assert done.status == "completed" and "completed" in done.reasons
    _check_decision(done.decisions[0], first, _expected(first), "need_manager", "history")


def test_the_history_bound_holds_with_a_clock_that_stands_still(rt):
    flow, first = _to_manager(rt, "600000.00")
    old = flow.task("manager_review")
    flow.act("manager_review", "mgr1", {"manager_decision": "send_back", "manager_comment": "价格过高"})
    flow.act("prepare_quote", "rep1", quote("120000.00", 1))
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    done = routing.explain(rt, old.id, flow.user("mgr1"))
    _check_decision(done.decisions[0], first, _expected(first), "need_manager", "history")


def test_an_unconditional_step_and_who_sees_it(rt):
    accounts.create_user(rt, "sup_west", "password-1", ["supervisor"], team="west")
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    review = flow.task("supervisor_review")

    why = routing.explain(rt, review.id, flow.user("sup1"))
    assert (why.lane, why.role, why.team, why.team_scoped) == ("Supervisor / 销售主管", "supervisor", "east", True)
    assert why.conditions == () and why.decisions == () and why.assignments == ()
    assert why.reasons == ("role", "supervisor")
    assert routing.explain(rt, review.id, flow.user("dir1")).reasons == ("supervisor",)
    assert routing.explain(rt, review.id, flow.user("audit1")).reasons == ("compliance",)
    assert routing.explain(rt, review.id, flow.user("admin")).reasons == ("admin",)
    for outsider in ("rep1", "rep2", "legal1", "owner1", "sup_west"):
        with pytest.raises(PermissionDenied):
            routing.explain(rt, review.id, flow.user(outsider))


def test_a_default_flow_is_explained_by_the_conditions_that_did_not_hold(rt):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())  # small: the matrix asks for nobody above the supervisor
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    flow.act("draft_contract", "rep1", {"contract_no": "HT-1", "contract_terms": "Standard terms",
                                        "payment_plan": [{"amount": "24000.00", "due_date": "2026-12-15"}],
                                        "sign_by": "2026-12-01"})
    flow.act("legal_contract_check", "legal1", {"contract_check_decision": "approve"})
    why = routing.explain(rt, flow.task("sign_company").id, flow.user("mgr1"))
    assert why.conditions == (routing.Condition("gw_contract_check", "Contract check result? / 审查结论？",
                                                "Approved / 通过", None, ("contract_check_decision == 'send_back'",)),)
    assert why.decisions == ()  # the condition reads a person's decision, not a decision table's


def test_every_hand_over_is_listed_with_its_people(rt, clock):
    accounts.create_user(rt, "sup2", "password-1", ["supervisor"], team="east")
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    review = flow.task("supervisor_review")
    sup1 = flow.user("sup1")
    tasks.claim(rt, review.id, sup1)
    clock.advance(minutes=1)
    tasks.unclaim(rt, review.id, sup1)
    clock.advance(minutes=1)
    tasks.claim(rt, review.id, sup1)
    clock.advance(minutes=1)
    tasks.reassign(rt, review.id, flow.user("dir1"), "sup2", "休假")
    # actions other features record (a substitute, say) are shown from their data, whatever their name
    with rt.write() as s:
        audit.record(s, clock.now(), "substitute", actor_id=None, actor="sup2", role="supervisor",
                     instance_id=flow.id, task_id=review.id, spec_id="supervisor_review",
                     data={"from": "sup2", "to": "sup1", "on_behalf_of": "sup2", "reason": "出差"})
        audit.record(s, clock.now(), "shadowed", actor="sup1", instance_id=flow.id, task_id=review.id,
                     spec_id="supervisor_review", data={"to": ["sup1", "sup2"]})
        audit.record(s, clock.now(), "remind", actor="rep1", instance_id=flow.id, task_id=review.id,
                     spec_id="supervisor_review", data={"to": ["sup2"], "message": "快"})

    why = routing.explain(rt, review.id, flow.user("sup2"))
    assert [(a.action, a.actor, a.from_user, a.to_user, a.on_behalf_of, a.reason) for a in why.assignments] == [
        ("claim", "sup1", None, None, None, None),
        ("unclaim", "sup1", None, None, None, None),
        ("claim", "sup1", None, None, None, None),
        ("reassign", "dir1", "sup1", "sup2", None, "休假"),
        ("substitute", "sup2", "sup2", "sup1", "sup2", "出差"),
        ("shadowed", "sup1", None, "sup1, sup2", None, None),
    ]
    assert [a.at for a in why.assignments][:4] == [clock.now() - timedelta(minutes=n) for n in (3, 2, 1, 0)]
    assert why.holder == "sup2" and why.reasons == ("holder", "role", "supervisor")


def test_a_table_that_cannot_be_evaluated_again_is_told_not_raised(rt):
    from workflows.services.deployments import latest_deployment_id, package_for, script_engine_for

    package = package_for(rt, latest_deployment_id(rt, "quote_to_cash"))
    graph = routing._graph(package, "quote_to_cash")
    spec = routing._brt_spec(package, "approval_matrix_task")
    dec = routing._evaluate(spec, graph, ("need_manager",), {"amount": "lots"}, "history", script_engine_for(rt))
    assert dec.error and dec.row is None


# --- the task page -------------------------------------------------------------------------------------

def test_the_panel_on_the_task_page_in_both_languages(rt, login):
    flow, values = _to_manager(rt, "120000.00")
    rule = _expected(values)
    review = flow.task("manager_review")
    english, chinese = (part.strip() for part in rule["description"].split("/", 1))

    mgr = login("mgr1")
    page = mgr.text(f"/tasks/{review.id}")
    assert "为什么分给我？" in page and "data-why" in page
    assert f'data-why-row="{rule["row"]}"' in page and f"第 {rule['row']} 行" in page and chinese in page
    assert "需经理审批？" in page and "<code>need_manager</code>" in page
    assert 'data-why-source="engine"' in page and "你拥有该角色「销售经理」（团队 east）。" in page

    mgr.post("/language", {"lang": "en"})
    page = mgr.text(f"/tasks/{review.id}")
    assert "Why is this mine?" in page and f"Row {rule['row']}" in page and english in page
    assert "Manager approval needed?" in page and "you have its role, Sales manager, in the team east." in page

    sup = login("sup1")  # the supervisor review before it: every contract passes it
    flow2 = Flow(rt)
    flow2.act("prepare_quote", "rep1", quote())
    assert "data-why-always" in sup.text(f"/tasks/{flow2.task('supervisor_review').id}")


def test_the_panel_loads_no_workflow_of_its_own(rt, login, monkeypatch):
    flow, _ = _to_manager(rt, "120000.00")
    review = flow.task("manager_review")
    mgr = login("mgr1")
    rt.workflows.clear()
    loads = []
    real = rt.codec.loads
    monkeypatch.setattr(rt.codec, "loads", lambda *a, **k: loads.append(1) or real(*a, **k))
    page = mgr.text(f"/tasks/{review.id}")
    assert 'data-why-source="engine"' in page
    assert len(loads) == 1  # the one the task page needs for its form and data
