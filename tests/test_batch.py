"""Batch approval (批量审批): several review tasks of one kind approved at once, each still validated,
authorized (role, team, four eyes) and audited on its own through ``tasks.complete``; one refusal or lost
race does not undo the others. Service layer first, then the queue page, the confirmation and the results."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from models import AuditEvent, TaskRow
from workflows.services import accounts, batch, tasks
from workflows.services.errors import InvalidInput

from .flow import Flow, approve, quote
from .web import CSRF_RE


def _reviews(rt, n: int, starter: str = "rep1") -> list[Flow]:
    flows = []
    for _ in range(n):
        flow = Flow(rt, starter=starter)
        flow.act("prepare_quote", starter, quote(customer_name=f"华东机械 ({starter})"))  # each rep their own customer
        flows.append(flow)
    return flows


def _completions(rt, task_id: int) -> list[AuditEvent]:
    with rt.read() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.task_id == task_id,
                                                       AuditEvent.action == "complete")))


@pytest.fixture
def both1(rt):
    """A sales rep who is also a supervisor: may approve others' quotes, never their own (four eyes)."""
    accounts.create_user(rt, "both1", accounts.DEMO_PASSWORD, ["sales_rep", "supervisor"], team="east")
    return accounts.get_user(rt, "both1")


# --- the service ------------------------------------------------------------------------------------------

def test_a_mixed_batch_approves_the_others_and_audits_each_once(rt, both1):
    a, b, taken = _reviews(rt, 3)
    own = Flow(rt, starter="both1")
    own.act("prepare_quote", "both1", quote(customer_name="华东机械 (both1)"))
    reviews = [f.task("supervisor_review") for f in (a, own, b, taken)]
    ids = [r.id for r in reviews]
    versions = {r.id: r.instance_version for r in reviews}
    taken.act("supervisor_review", "sup1", approve("supervisor"))  # someone else got there first

    out = batch.approve_many(rt, ids, both1, "  looks fine  ", versions=versions)

    assert [o.task_id for o in out] == ids
    assert [o.code for o in out] == ["approved", "four_eyes", "approved", "conflict"]
    assert "four eyes" in out[1].message and "already completed by sup1" in out[3].message
    for flow in (a, b):
        assert "supervisor_review" not in flow.open_specs()
        assert flow.data()["supervisor_decision"] == "approve"
        assert flow.data()["supervisor_comment"] == "looks fine"
    assert own.task("supervisor_review").status == "open"  # refused: untouched
    events = {i: _completions(rt, i) for i in ids}
    assert len(events[ids[0]]) == len(events[ids[2]]) == 1
    assert events[ids[1]] == []
    assert [e.actor for e in events[ids[3]]] == ["sup1"] and "batch" not in events[ids[3]][0].data
    marks = [events[i][0].data["batch"] for i in (ids[0], ids[2])]
    assert marks[0] == marks[1] and marks[0]["size"] == 4
    assert events[ids[0]][0].actor == "both1" and events[ids[0]][0].data["form"] == {
        "supervisor_decision": "approve", "supervisor_comment": "looks fine"}


def test_a_role_the_user_lacks_is_refused_per_task(rt, users):
    flows = _reviews(rt, 2)
    ids = [f.task("supervisor_review").id for f in flows]
    for name in ("mgr1", "rep2", "legal1"):
        out = batch.approve_many(rt, ids, users[name], "")
        assert [o.code for o in out] == ["forbidden", "forbidden"], name
    assert all(f.task("supervisor_review").status == "open" for f in flows)
    assert all(_completions(rt, i) == [] for i in ids)
    # a supervisor of another team is not even told what the tasks are
    accounts.create_user(rt, "sup2", accounts.DEMO_PASSWORD, ["supervisor"], team="west")
    out = batch.approve_many(rt, ids, accounts.get_user(rt, "sup2"), "")
    assert [o.code for o in out] == ["forbidden", "forbidden"] and all(o.item is None for o in out)


def test_only_approval_tasks_of_one_kind_and_a_stale_version_is_a_conflict(rt, users):
    flow, other = _reviews(rt, 2)
    draft = Flow(rt)  # prepare_quote: no approval form
    out = batch.approve_many(rt, [draft.task("prepare_quote").id], users["rep1"], "")
    assert out[0].code == "invalid" and "not an approval" in out[0].message
    review = other.task("supervisor_review")
    out = batch.approve_many(rt, [review.id], users["sup1"], "", versions={review.id: review.instance_version - 1})
    assert out[0].code == "conflict" and other.task("supervisor_review").status == "open"
    out = batch.approve_many(rt, [flow.task("supervisor_review").id], users["sup1"], "")
    assert out[0].code == "approved"


def test_empty_oversized_and_long_comment_batches_are_clear_errors(rt, users):
    with pytest.raises(InvalidInput, match="at least one"):
        batch.approve_many(rt, [], users["sup1"], "")
    with pytest.raises(InvalidInput, match=f"at most {batch.MAX_BATCH} tasks"):
        batch.approve_many(rt, list(range(1, batch.MAX_BATCH + 2)), users["sup1"], "")
    with pytest.raises(InvalidInput, match="comment is too long"):
        batch.approve_many(rt, [1], users["sup1"], "x" * (batch.MAX_COMMENT + 1))
    assert batch.approve_many(rt, [999999], users["sup1"], "")[0].code == "not_found"


def test_approval_forms_are_recognized():
    assert batch.approval_form({"properties": {"x_decision": {"oneOf": [{"const": "approve"}]},
                                               "x_comment": {"type": "string"}}, "required": ["x_decision"]})
    assert batch.approval_form({"properties": {"x_decision": {"oneOf": [{"const": "approve"}]},
                                               "amount": {"type": "number"}}, "required": ["x_decision"]}) is None
    assert batch.approval_form({"properties": {"acceptance": {"enum": ["accepted"]}}}) is None


# --- the web ----------------------------------------------------------------------------------------------

def _ids_posted(html: str) -> list[str]:
    return re.findall(r'name="ids" value="(\d+)"', html)


def test_queue_offers_checkboxes_only_on_approval_tasks(rt, login):
    flows = _reviews(rt, 2)
    Flow(rt)  # rep1 holds a quote to prepare: no approval
    sup = login("sup1")
    page = sup.text("/tasks?scope=roles")
    assert sorted(re.findall(r'type="checkbox" name="ids" value="(\d+)"', page)) == sorted(
        str(f.task("supervisor_review").id) for f in flows)
    assert "批量通过" in page and 'form="batch-form"' in page
    rep = login("rep1")
    mine = rep.text("/tasks")
    assert 'name="ids"' not in mine and "批量通过" not in mine


def test_confirm_then_approve_in_both_languages_with_csrf(rt, login):
    a, b = _reviews(rt, 2)
    ids = [a.task("supervisor_review").id, b.task("supervisor_review").id]
    sup = login("sup1")
    confirm = sup.text(f"/tasks/batch?ids={ids[0]}&ids={ids[1]}")
    assert "批量审批：确认" in confirm and "华东机械" in confirm and a.started.business_key in confirm
    assert "批准 2 个任务" in confirm and sorted(_ids_posted(confirm)) == sorted(map(str, ids))
    form = {"ids": [str(i) for i in ids], "comment": "同意"}
    for i in ids:
        form[f"v.{i}"] = re.search(rf'name="v\.{i}" value="(\d+)"', confirm).group(1)

    refused = sup.client.post("/tasks/batch", data=form)  # no CSRF token: nothing happens
    assert refused.status_code == 400 and a.task("supervisor_review").status == "open"

    token = CSRF_RE.search(confirm).group(1)
    done = sup.client.post("/tasks/batch", data={**form, "csrf_token": token})
    html = done.get_data(as_text=True)
    assert done.status_code == 200 and "批量审批：结果" in html and html.count('data-outcome="approved"') == 2
    history = sup.text(f"/contracts/{a.started.business_key}")
    assert "（批量审批，共 2 个任务）" in history

    sup.post("/language", {"lang": "en"})
    again = sup.client.post("/tasks/batch", data={**form, "csrf_token": sup.csrf("/tasks")})
    text = again.get_data(as_text=True)
    assert again.status_code == 409 and "Batch approval: results" in text
    assert "already completed by sup1" in text and "someone else acted" in text
    assert "in a batch approval of 2 tasks" in sup.text(f"/contracts/{b.started.business_key}")


def test_the_web_cannot_bypass_the_role_or_four_eyes(rt, login, both1):
    own = Flow(rt, starter="both1")
    own.act("prepare_quote", "both1", quote(customer_name="华东机械 (both1)"))
    review = own.task("supervisor_review")
    web = login("both1")
    page = web.text(f"/tasks/batch?ids={review.id}")
    assert "四眼原则" in page and 'data-action="batch-confirm"' not in page
    answer = web.post("/tasks/batch", {"ids": str(review.id), "comment": ""})
    assert answer.status_code == 403 and "四眼原则" in answer.get_data(as_text=True)
    mgr = login("mgr1")
    answer = mgr.post("/tasks/batch", {"ids": str(review.id)})
    assert answer.status_code == 403
    assert own.task("supervisor_review").status == "open" and _completions(rt, review.id) == []
    with rt.read() as s:
        assert s.get(TaskRow, review.id).assignee_id is None


def test_an_empty_batch_goes_back_to_the_queue_with_a_message(rt, login):
    sup = login("sup1")
    answer = sup.client.get("/tasks/batch", follow_redirects=True)
    assert "请至少选择一个要批准的任务" in answer.get_data(as_text=True)
    assert tasks.list_tasks(rt, accounts.get_user(rt, "sup1"), "roles").total == 0
