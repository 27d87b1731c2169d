"""The responsibility table (职责分工表) of a contract: every step done, open and to come, with who did it, holds it
or will take it, its times and how it stands — driven through the real process with the service layer."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from workflows.services import accounts, contract_view, rewind, substitutes, tasks
from workflows.services.errors import NotFound, PermissionDenied
from workflows.services.responsibility import DueRule, responsibility_table

from .conftest import START
from .flow import Flow, approve, quote

NAMES = {name: display for name, display, *_ in accounts.DEMO_USERS}
TODAY = date(2026, 11, 23)  # START in Shanghai


def _table(rt, flow: Flow, viewer: str = "mgr1"):
    return responsibility_table(rt, flow.started.business_key, accounts.get_user(rt, viewer))


def _specs(rows) -> list[str]:
    return [r.spec_id for r in rows]


def _row(rows, spec_id: str):
    [found] = [r for r in rows if r.spec_id == spec_id]
    return found


def test_right_after_start_the_quote_is_the_reps_and_the_reviews_are_to_come(rt, clock):
    flow = Flow(rt)
    tasks.claim(rt, flow.task("prepare_quote").id, flow.user("rep1"))  # as the web start page does
    table = _table(rt, flow)

    assert table.done == [] and table.cancelled == 0
    [prepare] = table.open
    assert (prepare.spec_id, prepare.status, prepare.role) == ("prepare_quote", "open", "sales_rep")
    assert (prepare.person, prepare.person_username, prepare.on_behalf_of) == (NAMES["rep1"], "rep1", None)
    assert (prepare.opened_at, prepare.due_at, prepare.team) == (START, START + timedelta(days=2), "east")
    assert table.holders() == {"prepare_quote": NAMES["rep1"]}

    coming = table.to_come
    assert "prepare_quote" not in _specs(coming)
    assert len(set(_specs(coming))) == len(coming)  # each step once, though send-backs loop back to it
    # process order: the supervisor first, the approvals the amount may call for, then contract, delivery, money
    order = _specs(coming)
    assert order[0] == "supervisor_review"
    assert order.index("manager_review") < order.index("director_review") < order.index("draft_contract") \
        < order.index("legal_contract_check") < order.index("sign_company") < order.index("customer_signature") \
        < order.index("execute_delivery") < order.index("record_payment")
    supervisor = _row(coming, "supervisor_review")
    assert (supervisor.status, supervisor.role, supervisor.team, supervisor.person) == \
        ("to_come", "supervisor", "east", None)  # the role of the contract's team: no one person yet
    assert supervisor.due_rule == DueRule("within", (("days", 1),), "P1D")
    assert (supervisor.opened_at, supervisor.due_at, supervisor.completed_at) == (None, None, None)
    # the approval matrix decides these: only a conditional flow leads there
    for spec in ("manager_review", "director_review", "legal_review", "finance_review", "overdue_escalation"):
        assert _row(coming, spec).status == "may_skip", spec
    # the rep's later steps are expected of the rep who started the contract; others of their role (and team)
    draft = _row(coming, "draft_contract")
    assert (draft.status, draft.person, draft.person_username) == ("to_come", NAMES["rep1"], "rep1")
    assert draft.due_rule == DueRule("within", (("days", 3),), "P3D")
    legal = _row(coming, "legal_contract_check")
    assert (legal.person, legal.team) == (None, None)  # legal serves every team
    assert _row(coming, "customer_signature").due_rule == DueRule("by_date", (), "date_start(sign_by)")
    assert _row(coming, "sign_company").team == "east"  # managers are team-scoped


def test_after_the_approvals_done_rows_say_who_and_whether_on_time(rt, clock):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote("30000.00"))  # 60,000: the manager must approve too
    clock.advance(hours=30)  # the supervisor review was due after one day
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    late_at = clock.now()
    clock.advance(hours=2)
    flow.act("manager_review", "mgr1", approve("manager"))
    table = _table(rt, flow)

    assert _specs(table.done) == ["prepare_quote", "supervisor_review", "manager_review"]
    prepare, supervisor, manager = table.done
    assert (prepare.person, prepare.status, prepare.completed_at) == (NAMES["rep1"], "done_on_time", START)
    assert (supervisor.person, supervisor.person_username, supervisor.role) == (NAMES["sup1"], "sup1", "supervisor")
    assert (supervisor.opened_at, supervisor.due_at, supervisor.completed_at) == \
        (START, START + timedelta(days=1), late_at)
    assert supervisor.status == "done_late"
    assert (manager.person, manager.status) == (NAMES["mgr1"], "done_on_time")
    assert manager.due_at == late_at + timedelta(days=1) and manager.completed_at == late_at + timedelta(hours=2)

    [draft] = table.open
    assert (draft.spec_id, draft.status, draft.person, draft.role, draft.team) == \
        ("draft_contract", "open", None, "sales_rep", "east")  # unclaimed: in the east reps' queue
    assert draft.due_at == clock.now() + timedelta(days=3)
    coming = _specs(table.to_come)
    assert coming[:3] == ["legal_contract_check", "sign_company", "customer_signature"]
    assert not {"supervisor_review", "manager_review", "director_review", "legal_review"} & set(coming)

    clock.advance(days=4)  # nobody drafted the contract
    table = _table(rt, flow)
    assert table.open[0].status == "overdue"
    assert table.done[1].status == "done_late"  # the past does not change


def test_a_substitute_holds_the_task_on_behalf_of_the_away_holder(rt, clock):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    tasks.claim(rt, flow.task("supervisor_review").id, flow.user("sup1"))
    substitutes.create(rt, flow.user("sup1"), "mgr1", TODAY, TODAY, "年假")
    substitutes.apply_due(rt)
    [review] = _table(rt, flow).open
    assert (review.person, review.person_username, review.on_behalf_of) == (NAMES["mgr1"], "mgr1", NAMES["sup1"])

    tasks.complete(rt, review.task_id, flow.user("mgr1"), approve("supervisor"))
    done = _row(_table(rt, flow).done, "supervisor_review")
    assert (done.person, done.on_behalf_of) == (NAMES["mgr1"], NAMES["sup1"])


def test_collection_waits_on_its_timer_and_a_finished_contract_has_nothing_ahead(rt, clock):
    flow = Flow(rt)
    flow.to_collection()
    table = _table(rt, flow)
    assert table.open == []
    assert len(table.done) == 10 and all(r.person for r in table.done)
    # the installment timer waits: the payment comes; the escalation only if it is late
    assert [(r.spec_id, r.status) for r in table.to_come] == [("record_payment", "to_come"),
                                                            ("overdue_escalation", "may_skip")]
    assert _row(table.to_come, "record_payment").due_rule.kind == "by_date"

    rejected = Flow(rt)
    rejected.act("prepare_quote", "rep1", quote())
    rejected.act("supervisor_review", "sup1", {"supervisor_decision": "reject", "supervisor_comment": "no margin"})
    table = _table(rt, rejected)
    assert table.status == "completed" and table.end_event == "end_rejected"
    assert _specs(table.done) == ["prepare_quote", "supervisor_review"]
    assert table.open == [] and table.to_come == []


def test_cancelled_tasks_are_not_done_and_a_withdrawn_step_is_open_again(rt, clock):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    done = _row(_table(rt, flow).done, "prepare_quote")
    rewind.withdraw(rt, done.task_id, flow.user("rep1"))
    table = _table(rt, flow)
    assert table.cancelled == 1  # the supervisor review that had opened
    assert "supervisor_review" not in _specs(table.done) + _specs(table.open)
    [again] = table.open
    assert (again.spec_id, again.person) == ("prepare_quote", NAMES["rep1"])
    assert _specs(table.to_come)[0] == "supervisor_review"


def test_the_same_people_may_see_it_as_the_contract_page_and_get_the_same_refusals(rt, clock):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    key = flow.started.business_key
    for name in ("rep1", "sup1", "mgr1", "dir1", "audit1", "admin", "owner1"):
        assert responsibility_table(rt, key, flow.user(name)).business_key == key
    for name in ("rep2", "legal1", "fin1", "dlv1", "svc1"):
        user = flow.user(name)
        with pytest.raises(PermissionDenied) as page:
            contract_view.contract_view(rt, key, user)
        with pytest.raises(PermissionDenied) as table:
            responsibility_table(rt, key, user)
        assert table.value.message == page.value.message == f"{name} has no part in {key}"
    with pytest.raises(NotFound) as page:
        contract_view.contract_view(rt, "NO-SUCH", flow.user("mgr1"))
    with pytest.raises(NotFound) as table:
        responsibility_table(rt, "NO-SUCH", flow.user("mgr1"))
    assert table.value.message == page.value.message


def test_the_page_in_both_languages_and_the_link_from_the_contract(rt, clock, login):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    tasks.claim(rt, flow.task("supervisor_review").id, flow.user("sup1"))
    key = flow.started.business_key
    url = f"/contracts/{key}/responsibilities"

    mgr = login("mgr1")
    contract = mgr.text(f"/contracts/{key}")
    assert f'href="{url}"' in contract and "职责分工表" in contract
    page = mgr.text(url)
    assert "<h1>职责分工表 · " in page
    assert 'data-spec="supervisor_review" data-status="open"' in page and NAMES["sup1"] in page
    assert "开启后1天内" in page and "可能跳过" in page and "按流程中确定的日期" in page
    assert "/static/print.js" in page and 'data-action="print"' in page and "onclick" not in page

    mgr.post("/language", {"lang": "en", "next": url})
    page = mgr.text(url)
    assert "<h1>Responsibility table · " in page
    assert "within 1 day of opening" in page and "May be skipped" in page and "Done on time" in page

    assert login("rep2").get(url).status_code == 403
    assert login("rep2").get(f"/contracts/{key}").status_code == 403
    assert mgr.get("/contracts/NO-SUCH/responsibilities").status_code == 404


def test_a_few_indexed_queries_and_never_the_workflow_state(rt, clock):
    from sqlalchemy import event

    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    _table(rt, flow)  # the package is parsed once per deployment, then cached
    rep = accounts.get_user(rt, "rep1")
    statements: list[str] = []

    def _count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(rt.engine, "before_cursor_execute", _count)
    try:
        table = responsibility_table(rt, flow.started.business_key, rep)
    finally:
        event.remove(rt.engine, "before_cursor_execute", _count)
    assert table.open and table.to_come
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 4, reads  # the instance, its task rows, its timers, its rep (the starter: no more checks)
    assert not any("instances.state" in s for s in statements)  # the workflow is never loaded
