"""Queues and task pages through the test client: start, claim, complete, reassign, stale and double submits."""

from __future__ import annotations

import re

from sqlalchemy import select

from models import TaskRow
from workflows.services import accounts, instances

from .flow import Flow, approve, quote
from .web import form_fields


def _task_id(rt, spec_id: str) -> int:
    with rt.read() as s:
        return s.scalar(select(TaskRow.id).where(TaskRow.spec_id == spec_id, TaskRow.status == "open")
                        .order_by(TaskRow.id.desc()))


def _version(page: str) -> int:
    return int(re.search(r'name="version" value="(\d+)"', page).group(1))


def test_rep_starts_a_quote_and_lands_on_the_claimed_task(login, rt):
    rep = login("rep1")
    page = rep.text("/start")
    response = rep.post("/start/quote_to_cash", {}, page="/start")
    assert response.status_code == 302
    task_id = _task_id(rt, "prepare_quote")
    assert response.headers["Location"] == f"/tasks/{task_id}"
    page = rep.text(f"/tasks/{task_id}")
    assert 'name="f.customer_name"' in page and 'name="f.line_items.0.product"' in page
    assert "王小明" in page  # held by the starter
    mine = rep.text("/tasks?scope=mine")
    assert f'data-task-id="{task_id}"' in mine
    assert "<h1>" in page


def test_complete_with_errors_keeps_what_was_typed(login, rt):
    Flow(rt)
    rep = login("rep1")
    task_id = _task_id(rt, "prepare_quote")
    page = rep.text(f"/tasks/{task_id}")
    data = form_fields(quote())
    data["f.line_items.0.quantity"] = "two"
    data["f.customer_name"] = "保留的客户名 Kept Customer"
    response = rep.post(f"/tasks/{task_id}/complete", dict(data, version=_version(page)), page=f"/tasks/{task_id}")
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'value="two"' in body and "保留的客户名 Kept Customer" in body
    assert "field-error" in body
    assert _task_id(rt, "prepare_quote") == task_id  # still open


def test_complete_moves_the_contract_to_the_supervisor(login, rt):
    Flow(rt)
    rep = login("rep1")
    task_id = _task_id(rt, "prepare_quote")
    page = rep.text(f"/tasks/{task_id}")
    response = rep.post(f"/tasks/{task_id}/complete", dict(form_fields(quote()), version=_version(page)),
                        page=f"/tasks/{task_id}")
    assert response.status_code == 302
    sup = login("sup1")
    queue = sup.text("/tasks?scope=roles")
    review = _task_id(rt, "supervisor_review")
    assert f'data-task-id="{review}"' in queue
    assert "East China Machinery" in queue


def test_double_submit_is_refused_and_says_who_did_it(login, rt):
    Flow(rt)
    rep = login("rep1")
    task_id = _task_id(rt, "prepare_quote")
    page = rep.text(f"/tasks/{task_id}")
    data = dict(form_fields(quote()), version=_version(page))
    first = rep.post(f"/tasks/{task_id}/complete", data, page=f"/tasks/{task_id}")
    assert first.status_code == 302
    second = rep.post(f"/tasks/{task_id}/complete", data, page=f"/tasks/{task_id}")
    body = second.get_data(as_text=True)
    assert second.status_code == 409
    assert "已由 rep1 完成" in body  # the service's message, in the page's language
    assert "East China Machinery" in body  # what was typed is still on the page


def test_stale_submit_after_parallel_review(login, rt):
    """Legal and finance review in parallel; finance's page was opened before legal completed."""
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote(total_price="300000.00", customer_risk="high"))
    for spec in ("supervisor_review", "manager_review", "director_review"):
        if spec in flow.open_specs():
            role = spec.split("_")[0]
            flow.act(spec, {"supervisor": "sup1", "manager": "mgr1", "director": "dir1"}[role], approve(role))
    open_specs = flow.open_specs()
    assert {"legal_review", "finance_review"} <= open_specs, open_specs
    fin = login("fin1")
    finance_task = _task_id(rt, "finance_review")
    page = fin.text(f"/tasks/{finance_task}")
    flow.act("legal_review", "legal1", {"legal_decision": "approve"})
    typed = {"f.finance_decision": "approve", "f.finance_comment": "财务意见保留", "version": _version(page)}
    response = fin.post(f"/tasks/{finance_task}/complete", typed, page=f"/tasks/{finance_task}")
    body = response.get_data(as_text=True)
    assert response.status_code == 409, body[:2000]
    assert "合同已被他人推进" in body and "财务意见保留" in body
    assert _task_id(rt, "finance_review") == finance_task


def test_claim_unclaim_and_someone_elses_claim(login, rt):
    Flow(rt).act("prepare_quote", "rep1", quote())
    accounts.create_user(rt, "sup2", "lvyue-demo", ["supervisor"], team="east")
    task_id = _task_id(rt, "supervisor_review")
    sup = login("sup1")
    assert sup.post(f"/tasks/{task_id}/claim", page=f"/tasks/{task_id}").status_code == 302
    other = login("sup2")
    page = other.text(f"/tasks/{task_id}")
    assert 'data-action="claim"' not in page and 'data-action="complete"' not in page
    response = other.post(f"/tasks/{task_id}/complete", {"f.supervisor_decision": "approve", "version": _version(page)},
                          page=f"/tasks/{task_id}")
    assert response.status_code == 409 and "已被 sup1 认领" in response.get_data(as_text=True)
    assert other.post(f"/tasks/{task_id}/claim", page=f"/tasks/{task_id}").status_code == 409
    assert sup.post(f"/tasks/{task_id}/unclaim", page=f"/tasks/{task_id}").status_code == 302
    assert other.post(f"/tasks/{task_id}/claim", page=f"/tasks/{task_id}").status_code == 302


def test_reassign_needs_a_reason_and_a_user_of_the_role(login, rt):
    Flow(rt).act("prepare_quote", "rep1", quote())
    accounts.create_user(rt, "sup2", "lvyue-demo", ["supervisor"], team="east", display_name="Second Supervisor")
    task_id = _task_id(rt, "supervisor_review")
    sup = login("sup1")
    sup.post(f"/tasks/{task_id}/claim", page=f"/tasks/{task_id}")
    page = sup.text(f"/tasks/{task_id}")
    assert '<option value="sup2">' in page
    missing = sup.post(f"/tasks/{task_id}/reassign", {"to": "sup2", "reason": " "}, page=f"/tasks/{task_id}")
    assert missing.status_code == 422
    wrong = sup.post(f"/tasks/{task_id}/reassign", {"to": "rep2", "reason": "休假"}, page=f"/tasks/{task_id}")
    assert wrong.status_code == 422 and "rep2 没有角色「supervisor」" in wrong.get_data(as_text=True)
    ok = sup.post(f"/tasks/{task_id}/reassign", {"to": "sup2", "reason": "休假 on leave"}, page=f"/tasks/{task_id}")
    assert ok.status_code == 302
    page = login("sup2").text("/tasks?scope=mine")
    assert f'data-task-id="{task_id}"' in page
    history = sup.text(f"/tasks/{task_id}")
    assert "休假 on leave" in history


def test_outside_the_role_nothing_is_shown_or_done(login, rt):
    Flow(rt).act("prepare_quote", "rep1", quote())
    task_id = _task_id(rt, "supervisor_review")
    legal = login("legal1")
    assert legal.get(f"/tasks/{task_id}").status_code == 403
    response = legal.post(f"/tasks/{task_id}/complete", {"f.supervisor_decision": "approve"}, page="/tasks")
    assert response.status_code == 403
    assert legal.post(f"/tasks/{task_id}/claim", page="/tasks").status_code == 403
    assert legal.get("/tasks?scope=team").status_code == 403
    assert _task_id(rt, "supervisor_review") == task_id


def test_team_queue_shows_holders_and_overdue_first(login, rt, clock):
    from datetime import timedelta

    first = Flow(rt)
    first.act("prepare_quote", "rep1", quote())
    clock.advance(timedelta(days=10))  # the first review is now overdue
    Flow(rt, starter="rep2").act("prepare_quote", "rep2", quote(customer_name="西部电子 West Electronics"))
    sup = login("sup1")
    older = _task_id(rt, "supervisor_review")
    sup.post(f"/tasks/{first.task('supervisor_review').id}/claim", page="/tasks")
    page = sup.text("/tasks?scope=team")
    rows = re.findall(r'data-task-id="(\d+)"', page)
    assert rows[0] == str(first.task("supervisor_review").id)
    assert "badge-overdue" in page and "张伟" in page
    assert older
    director = login("dir1").text("/tasks?scope=team")
    assert "West Electronics" in director


def test_queue_filters_and_pagination(login, rt):
    for _ in range(23):
        Flow(rt)
    rep = login("rep1")
    first = rep.text("/tasks?scope=roles")
    assert len(re.findall(r'data-task-id="', first)) == 20 and 'rel="next"' in first
    second = rep.text("/tasks?scope=roles&page=2")
    assert len(re.findall(r'data-task-id="', second)) == 3
    assert rep.get("/tasks?scope=roles&amount_min=abc").status_code == 422
    assert rep.get("/tasks?scope=roles&due=someday").status_code == 422
    assert rep.get("/tasks?scope=nope").status_code == 404
    filtered = rep.text("/tasks?scope=roles&stage=delivery")
    assert "data-task-id" not in filtered


def test_contract_page_shows_data_and_history_to_those_involved(login, rt):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    key = flow.view().business_key
    page = login("rep1").text(f"/contracts/{key}")
    assert "East China Machinery" in page and "CNC lathe" in page
    assert login("sup1").get(f"/contracts/{key}").status_code == 200
    assert login("legal1").get(f"/contracts/{key}").status_code == 403
    assert login("audit1").get(f"/contracts/{key}").status_code == 200
    assert login("rep1").get("/contracts/Q-1999-00001").status_code == 404


def test_complaint_start_form_validates_and_links_the_contract(login, rt):
    flow = Flow(rt)
    flow.to_collection()  # delivered: after-sales may read it and take complaints about it
    key = flow.view().business_key
    svc = login("svc1")
    page = svc.text("/start")
    assert 'data-action="start-complaint"' in page and 'name="f.complaint_summary"' in page
    form = {"f.contract_key": "Q-1999-99999", "f.customer_name": "华东机械", "f.complaint_summary": "设备异响",
            "f.severity": "high"}
    bad = svc.post("/start/complaint", form, page="/start")
    body = bad.get_data(as_text=True)
    assert bad.status_code == 422 and "Q-1999-99999" in body and "设备异响" in body
    good = svc.post("/start/complaint", dict(form, **{"f.contract_key": key}), page="/start")
    assert good.status_code == 302
    complaint = instances.get_instance(rt, "C-2026-00001")
    assert complaint.process_key == "complaint"
    page = svc.text(f"/contracts/{key}")
    assert "C-2026-00001" in page  # listed as related on the contract
    link = re.search(r'href="(/start\?process=complaint[^"#]*)', page).group(1).replace("&amp;", "&")
    assert f'value="{key}"' in svc.text(link)  # the complaint form comes pre-filled with the contract


def test_a_rep_cannot_start_what_their_roles_do_not_allow(login):
    legal = login("legal1")
    assert 'data-action="start-quote_to_cash"' not in legal.text("/start")
    assert legal.post("/start/quote_to_cash", {}, page="/start").status_code == 403


def test_contract_list_shows_each_user_their_own(login, rt):
    mine = Flow(rt)
    Flow(rt, starter="rep2")
    key = mine.view().business_key
    rep1 = login("rep1").text("/contracts")
    assert f'data-contract="{key}"' in rep1 and rep1.count("data-contract=") == 1
    assert login("dir1").text("/contracts").count("data-contract=") == 2
    assert login("audit1").text(f"/contracts?q={key}").count("data-contract=") == 1
    assert login("legal1").text("/contracts").count("data-contract=") == 0


def test_starting_a_quote_claims_it_for_the_starter_and_tells_nobody_else(login, rt):
    from workflows.services import notifications

    rep = login("rep1")
    rep.post("/start/quote_to_cash", {}, page="/start")
    rep2 = accounts.get_user(rt, "rep2")
    assert notifications.unread_count(rt, rep2.id) == 0
    with rt.read() as s:
        from models import AuditEvent

        actions = list(s.scalars(select(AuditEvent.action).where(AuditEvent.instance_id.is_not(None))
                                 .order_by(AuditEvent.id)))
    assert actions == ["start", "claim"]


def test_a_sent_back_quote_goes_back_to_the_rep_who_wrote_it(login, rt):
    from workflows.services import notifications

    flow = Flow(rt, starter="rep2")
    flow.act("prepare_quote", "rep2", quote())
    rep1 = accounts.get_user(rt, "rep1")
    before = notifications.unread_count(rt, rep1.id)
    flow.act("supervisor_review", "sup1", {"supervisor_decision": "send_back", "supervisor_comment": "单价再核对"})
    rework = flow.task("prepare_quote")
    assert rework.assignee == "rep2"  # not back in the queue where rep1 could take it
    rep2 = accounts.get_user(rt, "rep2")
    latest = notifications.inbox(rt, rep2.id).items[0]
    assert (latest.kind, latest.task_id, latest.params["by"]) == ("task_reassigned", rework.id, "sup1")
    assert notifications.unread_count(rt, rep1.id) == before  # the other rep is not told
    page = login("rep2").text(f"/tasks/{rework.id}")
    assert "单价再核对" in page and "退回修改" in page
    assert "退回原办理人" in page  # the routing is in the history


def test_contract_page_shows_the_stage_and_the_collection_rate(login, rt, clock):
    from datetime import timedelta

    from workflows.services import timers

    flow = Flow(rt)
    flow.to_collection()
    clock.advance(timedelta(days=30))  # past the first installment's due date
    timers.fire_due_timers(rt)
    flow.act("record_payment", "fin1", {"amount_received": "7200.00", "received_on": "2026-12-15",
                                        "payment_reference": "BANK-1"})
    page = login("fin1").text(f"/contracts/{flow.view().business_key}")
    assert re.search(r'<li class="current" aria-current="step">回款</li>', page)
    assert 'data-collected' in page and 'value="7200.00"' in page and "(30%)" in page
