"""The inbox page: kind-specific texts, links to the task, pagination, unread counts, marking read."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from models import Notification
from workflows.services import accounts, notifications, tasks, timers

from .flow import Flow, quote

ROW = re.compile(r'data-notification-id="(\d+)"')


def _english(rt, *usernames: str) -> None:
    for name in usernames:
        accounts.set_language(rt, accounts.get_user(rt, name).id, "en")


def _ids(page: str) -> list[int]:
    return [int(i) for i in ROW.findall(page)]


def test_a_new_task_shows_in_the_inbox_with_a_link_and_an_unread_count(login, rt):
    _english(rt, "rep2")
    flow = Flow(rt, data={"customer_name": "华东机械 <East China>"})
    task = flow.task("prepare_quote")
    rep2 = login("rep2")
    page = rep2.text("/inbox")
    assert f"New task Prepare quote on {flow.started.business_key} for the role Sales rep." in page
    assert f'href="/tasks/{task.id}"' in page
    assert "华东机械 &lt;East China&gt;" in page, "customer names are escaped"
    assert 'data-count="inbox">1<' in page, "the unread count in the navigation"
    assert 'data-kind="task_arrived"' in page and "notification-unread" in page
    # the starter caused the task: nothing for rep1
    rep1 = login("rep1")
    assert _ids(rep1.text("/inbox")) == []
    assert 'data-count="inbox"' not in rep1.text("/tasks")


def test_reassignment_and_escalation_texts(login, rt, clock):
    _english(rt, "rep2", "mgr1")
    flow = Flow(rt)
    task = flow.task("prepare_quote")
    tasks.reassign(rt, task.id, flow.user("sup1"), "rep2", "rep1 is travelling")
    page = login("rep2").text("/inbox")
    assert f"sup1 handed you Prepare quote on {flow.started.business_key}." in page
    assert "Reason: rep1 is travelling" in page

    flow.act("prepare_quote", "rep2", quote())
    flow.act("supervisor_review", "sup1", {"supervisor_decision": "approve"})
    flow.through_contract()
    flow.through_delivery()
    clock.set(datetime(2026, 12, 23, 0, 0, tzinfo=UTC))
    timers.fire_due_timers(rt)
    escalation = flow.task("overdue_escalation")
    page = login("mgr1").text("/inbox")
    assert (f"Escalation: Overdue escalation on {flow.started.business_key} is overdue and now needs the role "
            "Sales manager.") in page
    assert f'href="/tasks/{escalation.id}"' in page


def test_chinese_is_the_default_language_of_the_inbox(login, rt):
    flow = Flow(rt)
    page = login("rep2").text("/inbox")
    assert "编制报价" in page and flow.started.business_key in page  # the Chinese half of the task name


def test_pages_and_the_unread_filter(login, rt, clock):
    _english(rt, "rep2")
    for _ in range(23):
        Flow(rt)
        clock.advance(minutes=1)
    rep2 = login("rep2")
    first = rep2.text("/inbox")
    assert len(_ids(first)) == 20 and "(23)" in first
    assert 'href="/inbox?page=2"' in first
    second = rep2.text("/inbox?page=2")
    assert len(_ids(second)) == 3
    assert not set(_ids(first)) & set(_ids(second))
    assert _ids(first) == sorted(_ids(first), reverse=True), "newest first"

    target = _ids(first)[0]
    response = rep2.post("/inbox/read", {"id": str(target), "next": "/inbox?show=unread"}, page="/inbox")
    assert response.status_code == 302 and response.headers["Location"] == "/inbox?show=unread"
    unread = rep2.text("/inbox?show=unread")
    assert target not in _ids(unread) and "(22)" in unread
    assert 'data-count="inbox">22<' in unread
    assert target in _ids(rep2.text("/inbox"))

    response = rep2.post("/inbox/read", {}, page="/inbox")
    assert response.status_code == 302 and response.headers["Location"] == "/inbox"
    page = rep2.text("/inbox?show=unread")
    assert _ids(page) == [] and "No unread notifications." in page
    assert 'data-count="inbox"' not in page
    assert notifications.unread_count(rt, accounts.get_user(rt, "rep2").id) == 0


def test_a_user_cannot_mark_someone_elses_notifications(login, rt):
    Flow(rt)
    rep2 = accounts.get_user(rt, "rep2")
    [theirs] = [i.id for i in notifications.inbox(rt, rep2.id).items]
    sup = login("sup1")
    assert sup.post("/inbox/read", {"id": str(theirs)}, page="/inbox").status_code == 302
    assert sup.post("/inbox/read", {}, page="/inbox").status_code == 302
    with rt.read() as s:
        assert s.scalar(select(Notification.read_at).where(Notification.id == theirs)) is None
    assert sup.post("/inbox/read", {"id": "1; drop"}, page="/inbox").status_code == 400


def test_marking_read_needs_the_csrf_token_and_a_safe_next(login, rt):
    Flow(rt)
    rep2 = login("rep2")
    assert rep2.client.post("/inbox/read", data={}).status_code == 400
    assert notifications.unread_count(rt, accounts.get_user(rt, "rep2").id) == 1
    response = rep2.post("/inbox/read", {"next": "https://evil.example/"}, page="/inbox")
    assert response.headers["Location"] == "/inbox"


def test_signed_out_visitors_are_sent_to_the_login(client):
    response = client.get("/inbox")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert client.post("/inbox/read").status_code in (302, 400)


@pytest.mark.parametrize("username", [name for name, *_ in accounts.DEMO_USERS])
def test_every_user_has_an_inbox(login, username):
    web = login(username)
    assert web.get("/inbox").status_code == 200
    assert web.post("/inbox/read", {}, page="/inbox").status_code == 302
