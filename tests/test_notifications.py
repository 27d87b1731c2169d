"""In-app notifications and the outbox rows written with them, through the service layer."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import event, select, update

from models import Notification, OutboxEmail, User
from workflows.services import accounts, notifications, tasks, timers

from .flow import Flow, approve, quote


def _set_user(rt, username: str, **values) -> None:
    with rt.write() as s:
        s.execute(update(User).where(User.username == username).values(**values))


def _notes(rt, username: str | None = None) -> list[Notification]:
    with rt.read() as s:
        q = select(Notification).order_by(Notification.id)
        if username is not None:
            q = q.join(User, User.id == Notification.user_id).where(User.username == username)
        return list(s.scalars(q))


def _recipients(rt, task_id: int) -> dict[str, str]:
    with rt.read() as s:
        rows = s.execute(select(User.username, Notification.kind).join(User, User.id == Notification.user_id)
                         .where(Notification.task_id == task_id)).all()
    return dict(rows)


def _outbox(rt) -> list[OutboxEmail]:
    with rt.read() as s:
        return list(s.scalars(select(OutboxEmail).order_by(OutboxEmail.id)))


def _extra_users(rt) -> None:
    """sr1 holds both sales_rep and supervisor; sup2 is a second supervisor; an inactive supervisor and
    a service account with the role are never notified."""
    accounts.create_user(rt, "sr1", "password-1", ["sales_rep", "supervisor"], display_name="Sam Both")
    accounts.create_user(rt, "sup2", "password-2", ["supervisor"], display_name="Sue Second",
                         email="sue@example.com", language="en")
    accounts.create_user(rt, "sup_gone", "password-3", ["supervisor"], email="gone@example.com")
    accounts.create_user(rt, "bot", "password-4", ["supervisor", "sales_rep"], email="bot@example.com")
    _set_user(rt, "sup_gone", active=False)
    _set_user(rt, "bot", service_account=True)


def test_a_completed_task_notifies_every_holder_of_the_next_role_but_not_the_actor(rt, clock):
    _extra_users(rt)
    _set_user(rt, "sup1", email="zhang.wei@example.com")  # language stays zh-CN
    flow = Flow(rt, starter="rep1", data={"customer_name": "华东机械 East China Machinery"})
    prepare = flow.task("prepare_quote")
    # the start is a step too: the starter is not told of the task they just made
    assert _recipients(rt, prepare.id) == {"rep2": "task_arrived", "sr1": "task_arrived"}

    clock.advance(minutes=5)
    tasks.complete(rt, prepare.id, flow.user("sr1"), quote())
    review = flow.task("supervisor_review")
    assert _recipients(rt, review.id) == {"sup1": "task_arrived", "sup2": "task_arrived"}, "not sr1, who acted"

    note = next(n for n in _notes(rt, "sup1") if n.task_id == review.id)
    assert note.instance_id == flow.id
    assert note.created_at == clock.now()
    assert note.read_at is None
    assert note.params == {
        "task": review.name, "task_id": review.id, "business_key": flow.started.business_key,
        "customer": "华东机械 East China Machinery", "role": "supervisor",
        "due_at": review.due_at.isoformat() if review.due_at else None}

    # e-mails for the notified people with an address, in their language; none for sr1/rep2 (no address)
    mails = [m for m in _outbox(rt) if m.created_at == clock.now()]
    assert sorted(m.to_addr for m in mails) == ["sue@example.com", "zhang.wei@example.com"]
    zh = next(m for m in mails if m.to_addr == "zhang.wei@example.com")
    en = next(m for m in mails if m.to_addr == "sue@example.com")
    assert zh.subject == f"【履约】新任务：主管审核（{flow.started.business_key}）"
    assert "张伟 Zhang Wei，您好" in zh.body and "销售主管" in zh.body and "华东机械" in zh.body
    assert en.subject == f"[Lvyue] New task: Supervisor review ({flow.started.business_key})"
    assert "Hello Sue Second" in en.body and "Sales supervisor" in en.body
    assert (zh.status, zh.attempts, zh.next_attempt_at, zh.sent_at) == ("pending", 0, clock.now(), None)
    by_id = {n.id: n for n in _notes(rt)}
    assert by_id[zh.notification_id].user_id == flow.user("sup1").id
    assert by_id[en.notification_id].user_id == flow.user("sup2").id


def test_notifications_cost_a_few_statements_and_none_without_new_tasks(rt):
    statements: list[str] = []
    event.listen(rt.engine, "before_cursor_execute",
                 lambda conn, cursor, stmt, params, context, executemany: statements.append(stmt))
    now = datetime(2026, 11, 23, tzinfo=UTC)
    flow = Flow(rt)
    _set_user(rt, "sup1", email="zhang.wei@example.com")
    prepare = flow.task("prepare_quote").id
    with rt.write() as s:
        s.connection()
        statements.clear()
        assert notifications.on_new_tasks(s, [prepare], now) == 2  # rep1 and rep2
        assert len(statements) == 2, statements  # recipients, notifications (neither has an address)
        statements.clear()
        assert notifications.on_new_tasks(s, [], now) == 0
        assert statements == []
        s.rollback()
    flow.act("prepare_quote", "rep1", quote())
    review, rep1 = flow.task("supervisor_review").id, flow.user("rep1")
    with rt.write() as s:
        s.connection()
        statements.clear()
        # prepare_quote is held (completed by rep1) now: a task with a holder is nobody else's news
        assert notifications.on_new_tasks(s, [review, prepare], now, actor_id=rep1.id) == 1
        assert len(statements) == 3, "\n".join(s[:60] for s in statements)  # + the outbox, for sup1
        s.rollback()


def test_a_reassigned_task_notifies_the_new_holder(rt, clock):
    _set_user(rt, "rep2", email="li.na@example.com", language="en")
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    flow.act("supervisor_review", "sup1", {"supervisor_decision": "send_back", "supervisor_comment": "again"})
    task = flow.task("prepare_quote")
    assert task.assignee == "rep1"  # the send-back returned it to its author, who was told so:
    returned = [n for n in _notes(rt, "rep1") if n.kind == "task_reassigned"]
    assert [(n.task_id, n.params["by"]) for n in returned] == [(task.id, "sup1")]
    before = {n.id for n in _notes(rt, "rep2")}
    before_rep1 = {n.id for n in _notes(rt, "rep1")}
    clock.advance(hours=1)
    tasks.reassign(rt, task.id, flow.user("rep1"), "rep2", "  on leave tomorrow ")
    new = [n for n in _notes(rt, "rep2") if n.id not in before]
    assert [(n.kind, n.task_id, n.instance_id) for n in new] == [("task_reassigned", task.id, flow.id)]
    assert new[0].params["by"] == "rep1"
    assert new[0].params["reason"] == "on leave tomorrow"
    assert new[0].params["business_key"] == flow.started.business_key
    assert not [n for n in _notes(rt, "rep1") if n.kind == "task_reassigned" and n.id not in before_rep1]
    mail = _outbox(rt)[-1]
    assert (mail.to_addr, mail.notification_id) == ("li.na@example.com", new[0].id)
    assert mail.subject == f"[Lvyue] rep1 handed you a task: Prepare quote ({flow.started.business_key})"
    assert "Reason:   on leave tomorrow" in mail.body

    # a supervisor handing it back to rep1 notifies rep1, not rep2
    tasks.reassign(rt, task.id, flow.user("sup1"), "rep1", "back to you")
    assert [n.params["by"] for n in _notes(rt, "rep1")
            if n.kind == "task_reassigned" and n.id not in before_rep1] == ["sup1"]


def test_an_overdue_payment_notifies_the_managers_of_an_escalation(rt, clock):
    _set_user(rt, "mgr1", email="liu.yang@example.com", language="en")
    flow = Flow(rt)
    flow.to_collection()
    clock.set(datetime(2026, 12, 15, 1, 0, tzinfo=UTC))
    assert timers.fire_due_timers(rt).fired == 1
    payment = flow.task("record_payment")
    assert _recipients(rt, payment.id) == {"fin1": "task_arrived"}, "a plain timer makes ordinary work"
    flow.act("record_payment", "fin1", {"amount_received": "7200.00", "received_on": "2026-12-15",
                                        "payment_reference": "BANK-1"})
    clock.set(datetime(2027, 1, 15, 1, 0, tzinfo=UTC))
    assert timers.fire_due_timers(rt).fired == 1
    second = flow.task("record_payment")
    clock.advance(days=8)  # seven days past due: the boundary timer fires
    assert timers.fire_due_timers(rt).fired == 1
    escalation = flow.task("overdue_escalation")
    assert _recipients(rt, escalation.id) == {"mgr1": "escalation"}
    assert _recipients(rt, second.id) == {"fin1": "task_arrived"}, "the payment task was not notified again"
    mail = _outbox(rt)[-1]
    assert mail.to_addr == "liu.yang@example.com"
    assert mail.subject == f"[Lvyue] Escalation: Overdue escalation ({flow.started.business_key})"
    assert "escalated to the role Sales manager" in mail.body


def test_due_and_overdue_at_once_labels_only_the_escalated_task(rt, clock):
    flow = Flow(rt)
    flow.to_collection(plan=[{"amount": "24000.00", "due_date": "2026-12-15"}])
    clock.set(datetime(2026, 12, 23, 0, 0, tzinfo=UTC))
    assert timers.fire_due_timers(rt).fired == 2
    assert _recipients(rt, flow.task("record_payment").id) == {"fin1": "task_arrived"}
    assert _recipients(rt, flow.task("overdue_escalation").id) == {"mgr1": "escalation"}


def test_inbox_pages_newest_first_and_counts_unread(rt, clock):
    flows = []
    for _ in range(7):
        flows.append(Flow(rt, starter="rep1"))
        clock.advance(minutes=1)
    rep2 = accounts.get_user(rt, "rep2")
    assert notifications.unread_count(rt, rep2.id) == 7
    assert notifications.unread_count(rt, accounts.get_user(rt, "rep1").id) == 0

    first = notifications.inbox(rt, rep2.id, page=1, per_page=3)
    assert (first.total, first.pages, first.page, len(first.items)) == (7, 3, 1, 3)
    assert [i.instance_id for i in first.items] == [f.id for f in reversed(flows)][:3]
    last = notifications.inbox(rt, rep2.id, page=3, per_page=3)
    assert [i.instance_id for i in last.items] == [flows[0].id]
    assert all(i.kind == "task_arrived" and i.read_at is None and i.unread for i in first.items + last.items)
    item = first.items[0]
    assert item.params["business_key"] == flows[-1].started.business_key
    assert item.task_id == flows[-1].task("prepare_quote").id

    assert notifications.mark_read(rt, rep2.id, [item.id, last.items[0].id]) == 2
    assert notifications.mark_read(rt, rep2.id, [item.id]) == 0, "already read"
    assert notifications.unread_count(rt, rep2.id) == 5
    unread = notifications.inbox(rt, rep2.id, per_page=10, unread_only=True)
    assert unread.total == 5 and item.id not in {i.id for i in unread.items}
    everything = notifications.inbox(rt, rep2.id, per_page=10)
    assert everything.total == 7
    assert next(i for i in everything.items if i.id == item.id).read_at == clock.now()
    assert notifications.mark_read(rt, rep2.id, []) == 0, "an empty list marks nothing"
    assert notifications.unread_count(rt, rep2.id) == 5
    assert notifications.mark_read(rt, rep2.id) == 5
    assert notifications.unread_count(rt, rep2.id) == 0
    assert notifications.inbox(rt, rep2.id, page=99, per_page=3).items == []


def test_mark_read_only_marks_the_users_own_notifications(rt):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    rep2, sup1 = accounts.get_user(rt, "rep2"), accounts.get_user(rt, "sup1")
    theirs = [i.id for i in notifications.inbox(rt, rep2.id).items]
    assert theirs
    assert notifications.mark_read(rt, sup1.id, theirs) == 0
    assert notifications.unread_count(rt, rep2.id) == len(theirs)
    assert notifications.mark_read(rt, sup1.id) == 1  # all of sup1's: the review only
    assert notifications.unread_count(rt, sup1.id) == 0
    assert notifications.unread_count(rt, rep2.id) == len(theirs)


def test_render_falls_back_for_missing_values_and_localizes_names():
    params = {"task": "Record payment / 登记回款", "task_id": 9, "business_key": "Q-2026-00001", "customer": None,
              "role": "finance", "due_at": (datetime(2026, 12, 21, 16, 0, tzinfo=UTC)).isoformat()}
    subject, body = notifications.render("task_arrived", params, "zh-CN", "孙丽 Sun Li")
    assert subject == "【履约】新任务：登记回款（Q-2026-00001）"
    assert "客户：无" in body and "截止：2026-12-22 00:00" in body and "财务" in body
    subject, body = notifications.render("task_arrived", dict(params, due_at=None), "en", "Sun Li")
    assert subject == "[Lvyue] New task: Record payment (Q-2026-00001)"
    assert "Due:      -" in body and "Customer: -" in body
    assert notifications.task_name("Single name", "en") == "Single name"
    assert notifications.role_name("unknown_role", "zh-CN") == "unknown_role"
