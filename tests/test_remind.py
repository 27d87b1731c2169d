"""Reminders (催办) through the service layer and the web pages: who may send one, to whom it goes
(in-app and e-mail), the interval per task under the controllable clock and under two clicks at once,
the audit event, and the contract page's button in both languages."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from models import AuditEvent, Notification, OutboxEmail, User
from workflows.services import accounts, remind, tasks
from workflows.services.errors import Conflict, InvalidInput, NotFound, PermissionDenied

from .flow import Flow, quote
from .service_messages import raised_messages, untranslated

ROOT = Path(__file__).resolve().parents[1]


def _set_user(rt, username: str, **values) -> None:
    with rt.write() as s:
        s.execute(update(User).where(User.username == username).values(**values))


def _reminded(rt, task_id: int) -> list[str]:
    with rt.read() as s:
        return list(s.scalars(select(User.username).join(Notification, Notification.user_id == User.id)
                              .where(Notification.task_id == task_id, Notification.kind == "remind")
                              .order_by(User.username)))


def _remind_events(rt, instance_id: int) -> list[AuditEvent]:
    with rt.read() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.instance_id == instance_id,
                                                       AuditEvent.action == "remind").order_by(AuditEvent.id)))


def _review(rt) -> tuple[Flow, tasks.TaskItem]:
    """An east contract started and prepared by rep1, its supervisor review open and unclaimed."""
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    return flow, flow.task("supervisor_review")


def test_the_starter_reminds_the_people_of_an_unclaimed_task(rt, clock):
    accounts.create_user(rt, "sup_west", "password-1", ["supervisor"], team="west", email="w@example.com")
    accounts.create_user(rt, "sup_any", "password-2", ["supervisor"], email="any@example.com", language="en")
    accounts.create_user(rt, "sup_gone", "password-3", ["supervisor"], team="east", email="gone@example.com")
    accounts.create_user(rt, "bot", "password-4", ["supervisor"], team="east", email="bot@example.com")
    _set_user(rt, "sup_gone", active=False)
    _set_user(rt, "bot", service_account=True)
    _set_user(rt, "sup1", email="zhang.wei@example.com")
    flow, review = _review(rt)
    clock.advance(minutes=10)

    sent = remind.remind(rt, review.id, flow.user("rep1"), "  客户在等   报价  ")

    # the team's supervisor and one of no team; not west's, not the inactive one, not the service account
    assert sent.recipients == ["sup1", "sup_any"]
    assert _reminded(rt, review.id) == ["sup1", "sup_any"]
    assert sent.at == clock.now() and sent.next_at == clock.now() + timedelta(minutes=240)
    with rt.read() as s:
        note = s.scalar(select(Notification).join(User, User.id == Notification.user_id)
                        .where(User.username == "sup1", Notification.kind == "remind"))
        mails = {m.to_addr: m for m in s.scalars(select(OutboxEmail).where(OutboxEmail.created_at == clock.now()))}
    assert note.instance_id == flow.id and note.read_at is None
    assert note.params["by"] == "rep1" and note.params["reason"] == "客户在等 报价"
    assert set(mails) == {"zhang.wei@example.com", "any@example.com"}
    assert mails["zhang.wei@example.com"].subject == f"【履约】rep1 催办：主管审核（{flow.started.business_key}）"
    assert "留言：客户在等 报价" in mails["zhang.wei@example.com"].body
    assert mails["any@example.com"].subject.startswith("[Lvyue] Reminder from rep1: Supervisor review")
    assert mails["zhang.wei@example.com"].notification_id == note.id

    [event] = _remind_events(rt, flow.id)
    assert (event.actor, event.task_id, event.spec_id) == ("rep1", review.id, "supervisor_review")
    assert event.data == {"to": ["sup1", "sup_any"], "message": "客户在等 报价"}


def test_a_claimed_task_reminds_its_holder_only(rt):
    accounts.create_user(rt, "sup3", "password-1", ["supervisor"], team="east")
    flow, review = _review(rt)
    tasks.claim(rt, review.id, flow.user("sup3"))
    assert remind.remind(rt, review.id, flow.user("rep1")).recipients == ["sup3"]
    assert _reminded(rt, review.id) == ["sup3"]


def test_one_reminder_per_interval_and_task(rt, clock, monkeypatch):
    flow, review = _review(rt)
    remind.remind(rt, review.id, flow.user("rep1"))
    with pytest.raises(Conflict) as refused:
        remind.remind(rt, review.id, flow.user("dir1"))  # per task, whoever sent the last one
    # 02:00 UTC is 10:00 in Shanghai; the next one four hours on
    assert "was sent at 2026-11-23 10:00" in refused.value.message
    assert refused.value.message.endswith("the next one is possible from 2026-11-23 14:00")
    clock.advance(minutes=239)
    with pytest.raises(Conflict):
        remind.remind(rt, review.id, flow.user("rep1"))
    clock.advance(minutes=1)
    remind.remind(rt, review.id, flow.user("mgr1"))

    monkeypatch.setenv("LVYUE_REMIND_INTERVAL_MINUTES", "30")
    clock.advance(minutes=29)
    with pytest.raises(Conflict):
        remind.remind(rt, review.id, flow.user("rep1"))
    clock.advance(minutes=1)
    remind.remind(rt, review.id, flow.user("rep1"))
    assert [e.actor for e in _remind_events(rt, flow.id)] == ["rep1", "mgr1", "rep1"]
    assert _reminded(rt, review.id) == ["sup1"] * 3


def test_the_interval_setting_must_be_positive(monkeypatch):
    from workflows import config

    monkeypatch.setenv("LVYUE_REMIND_INTERVAL_MINUTES", "0")
    with pytest.raises(ValueError):
        config.remind_interval()
    monkeypatch.setenv("LVYUE_REMIND_INTERVAL_MINUTES", "soon")
    with pytest.raises(ValueError):
        config.remind_interval()


def test_who_may_not_remind(rt):
    accounts.create_user(rt, "sup_west", "password-1", ["supervisor"], team="west")
    flow, review = _review(rt)
    prepare_done = next(iter(_done_tasks(rt, flow.id)))
    for name in ("rep2", "legal1", "fin1", "audit1", "admin", "owner1", "sup_west"):
        with pytest.raises(PermissionDenied, match="only the starter"):
            remind.remind(rt, review.id, flow.user(name))
    with pytest.raises(PermissionDenied, match="is yours to do"):  # sup1 could take up the review himself
        remind.remind(rt, review.id, flow.user("sup1"))
    with pytest.raises(NotFound):
        remind.remind(rt, review.id + 1000, flow.user("rep1"))
    with pytest.raises(Conflict, match="no longer open|already completed"):
        remind.remind(rt, prepare_done, flow.user("rep1"))
    with pytest.raises(InvalidInput):
        remind.remind(rt, review.id, flow.user("rep1"), "x" * (remind.MAX_MESSAGE + 1))
    assert _remind_events(rt, flow.id) == [] and _reminded(rt, review.id) == []


def test_nobody_reminds_about_their_own_task(rt):
    flow = Flow(rt)  # rep1's own quote: the starter is of its role and team
    prepare = flow.task("prepare_quote")
    with pytest.raises(PermissionDenied, match="is yours to do"):
        remind.remind(rt, prepare.id, flow.user("rep1"))
    flow.act("prepare_quote", "rep1", quote())
    review = flow.task("supervisor_review")
    tasks.claim(rt, review.id, flow.user("sup1"))
    with pytest.raises(PermissionDenied, match="is yours to do"):  # sup1 started nothing, but supervises: own
        remind.remind(rt, review.id, flow.user("sup1"))


def test_a_holder_who_left_cannot_be_reminded(rt):
    flow, review = _review(rt)
    tasks.claim(rt, review.id, flow.user("sup1"))
    _set_user(rt, "sup1", active=False)
    with pytest.raises(Conflict, match="nobody can be reminded"):
        remind.remind(rt, review.id, flow.user("rep1"))
    assert _remind_events(rt, flow.id) == []


def _done_tasks(rt, instance_id: int) -> list[int]:
    from models import TaskRow

    with rt.read() as s:
        return list(s.scalars(select(TaskRow.id).where(TaskRow.instance_id == instance_id,
                                                       TaskRow.status == "completed")))


def test_two_reminders_at_once_send_one(rt):
    """Two clicks at the same moment (the starter and the director): one reminder, one refusal."""
    flow, review = _review(rt)
    people = [flow.user("rep1"), flow.user("dir1")]
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def click(user) -> None:
        start.wait()
        try:
            outcomes.append(remind.remind(rt, review.id, user))
        except Conflict as err:
            outcomes.append(err)

    threads = [threading.Thread(target=click, args=(u,)) for u in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "Reminder"], outcomes
    assert len(_remind_events(rt, flow.id)) == 1
    assert _reminded(rt, review.id) == ["sup1"]


def test_every_refusal_of_the_remind_service_reads_in_chinese():
    assert len(raised_messages("workflows/services/remind.py")) >= 5
    assert untranslated("workflows/services/remind.py") == []


# --- the web pages ---------------------------------------------------------------------------------------


def _contract(web, key: str) -> str:
    return web.text(f"/contracts/{key}")


def test_the_button_shows_only_to_those_who_may_remind(rt, login):
    flow, review = _review(rt)
    key = flow.started.business_key
    action = f'action="/tasks/{review.id}/remind"'
    for name in ("rep1", "mgr1", "dir1"):
        assert action in _contract(login(name), key), name
    for name in ("sup1", "audit1", "admin", "owner1"):  # may see the contract, may not remind
        assert action not in _contract(login(name), key), name


def test_remind_from_the_contract_page_in_both_languages(rt, clock, login):
    flow, review = _review(rt)
    key = flow.started.business_key
    rep = login("rep1")  # the demo users read Chinese
    page = _contract(rep, key)
    assert "催办" in page and "留言（可选）" in page

    # without the form's CSRF token nothing is sent
    refused = rep.client.post(f"/tasks/{review.id}/remind", data={"message": "快"})
    assert refused.status_code == 400
    assert _reminded(rt, review.id) == []

    sent = rep.post(f"/tasks/{review.id}/remind", {"message": "客户催报价"}, page=f"/contracts/{key}")
    assert sent.status_code == 302 and sent.headers["Location"].endswith(f"/contracts/{key}")
    page = _contract(rep, key)
    assert "已向 sup1 发送催办。" in page
    assert "催办了" in page and "→ sup1: 客户催报价" in page  # the history
    assert "上次催办" in page and "下次可催办" in page and f'action="/tasks/{review.id}/remind"' not in page

    again = rep.post(f"/tasks/{review.id}/remind", {}, page=f"/contracts/{key}")
    assert again.status_code == 409
    assert "下次可催办时间：2026-11-23 14:00" in again.get_data(as_text=True)

    sup = login("sup1")
    inbox = sup.text("/inbox")
    assert f"rep1 催办合同 {key} 的任务 主管审核。" in inbox and "留言：客户催报价" in inbox

    # in English, four hours later
    clock.advance(hours=4)
    rep.post("/language", {"lang": "en"})
    page = _contract(rep, key)
    assert "Remind" in page and "Message (optional)" in page and "sent a reminder about" in page
    rep.post(f"/tasks/{review.id}/remind", {"message": "still waiting"}, page=f"/contracts/{key}")
    page = _contract(rep, key)
    assert "Reminder sent to sup1." in page and "Next reminder possible from" in page
    again = rep.post(f"/tasks/{review.id}/remind", {}, page=f"/contracts/{key}")
    assert again.status_code == 409 and "the next one is possible from 2026-11-23 18:00" in again.get_data(
        as_text=True)
    sup.post("/language", {"lang": "en"})
    assert "rep1 reminds you of Supervisor review on" in sup.text("/inbox")


def test_refusals_on_the_web(rt, login):
    flow, review = _review(rt)
    key = flow.started.business_key
    assert login("sup1").post(f"/tasks/{review.id}/remind", {}, page=f"/contracts/{key}").status_code == 403
    rep2 = login("rep2")
    denied = rep2.post(f"/tasks/{review.id}/remind", {})
    assert denied.status_code == 403
    assert f"只有 {key} 的发起人或本团队主管可以催办「主管审核」" in denied.get_data(as_text=True)
    assert rep2.post(f"/tasks/{review.id + 1000}/remind", {}).status_code == 404
    long = login("rep1").post(f"/tasks/{review.id}/remind", {"message": "x" * 201}, page=f"/contracts/{key}")
    assert long.status_code == 422
    assert _reminded(rt, review.id) == []
