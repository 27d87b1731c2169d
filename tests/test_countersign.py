"""Added signers (加签) through the service layer and the web pages: opinions asked of colleagues (the task waits
for them, four eyes applies to whom one asks, answers and withdrawals are audited and notified) and approvers
added after a reviewer (their completion decides the path; they need the task's role and pass its four-eyes
rule). Nobody gets at a task they could not act on through either."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from models import AuditEvent, Consultation, Notification, OutboxEmail, TaskRow, User
from workflows.services import accounts, batch, countersign, tasks
from workflows.services.errors import Conflict, FourEyesViolation, InvalidInput, NotFound, PermissionDenied

from .flow import Flow, approve, quote
from .service_messages import raised_messages, untranslated

ROOT = Path(__file__).resolve().parents[1]


def _set_user(rt, username: str, **values) -> None:
    with rt.write() as s:
        s.execute(update(User).where(User.username == username).values(**values))


def _events(rt, instance_id: int, *actions: str) -> list[AuditEvent]:
    with rt.read() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.instance_id == instance_id,
                                                       AuditEvent.action.in_(actions)).order_by(AuditEvent.id)))


def _notified(rt, kind: str) -> list[tuple[str, dict]]:
    with rt.read() as s:
        return [(u, p) for u, p in s.execute(select(User.username, Notification.params)
                                             .join(Notification, Notification.user_id == User.id)
                                             .where(Notification.kind == kind).order_by(Notification.id))]


def _consultations(rt) -> int:
    with rt.read() as s:
        return s.scalar(select(func.count()).select_from(Consultation))


def _review(rt, starter: str = "rep1") -> tuple[Flow, tasks.TaskItem]:
    """An east contract prepared by ``starter``, its supervisor review open and unclaimed."""
    flow = Flow(rt, starter=starter)
    flow.act("prepare_quote", starter, quote(customer_name=f"华东机械 ({starter})"))  # each rep their own customer
    return flow, flow.task("supervisor_review")


@pytest.fixture
def sup3(rt):
    """A second supervisor of the east team: someone a reviewer can add after themselves."""
    accounts.create_user(rt, "sup3", accounts.DEMO_PASSWORD, ["supervisor"], team="east", email="sup3@example.com")
    return accounts.get_user(rt, "sup3")


@pytest.fixture
def both1(rt):
    """A sales rep who is also an east supervisor: may review others' quotes, never their own (four eyes)."""
    accounts.create_user(rt, "both1", accounts.DEMO_PASSWORD, ["sales_rep", "supervisor"], team="east")
    return accounts.get_user(rt, "both1")


# --- opinions: the service ------------------------------------------------------------------------------

def test_opinions_are_notified_block_the_completion_and_show_in_the_history(rt, clock, monkeypatch):
    monkeypatch.setenv("LVYUE_BASE_URL", "https://lvyue.example")
    _set_user(rt, "legal1", email="zhao.min@example.com")
    _set_user(rt, "fin1", email="sun.li@example.com", language="en")
    _set_user(rt, "sup1", email="zhang.wei@example.com")
    flow, review = _review(rt)
    sup1, legal1, fin1 = flow.user("sup1"), flow.user("legal1"), flow.user("fin1")
    key = flow.started.business_key

    asked = countersign.ask_opinions(rt, review.id, sup1, ["legal1", "fin1, legal1"], "  付款条件可以接受吗？ ")

    assert asked.asked == ["legal1", "fin1"] and len(asked.opinion_ids) == 2
    assert tasks.get_task(rt, review.id).assignee == "sup1"  # asking claims the unclaimed task for the asker
    [claim, event] = _events(rt, flow.id, "claim", "opinion_asked")
    assert (claim.action, claim.actor) == ("claim", "sup1")
    assert (event.actor, event.role, event.task_id, event.spec_id) == ("sup1", "supervisor", review.id,
                                                                       "supervisor_review")
    assert event.data == {"asked": ["legal1", "fin1"], "question": "付款条件可以接受吗？",
                          "opinions": asked.opinion_ids}
    notes = _notified(rt, "opinion_asked")
    assert [u for u, _ in notes] == ["legal1", "fin1"]
    assert notes[0][1]["by"] == "sup1" and notes[0][1]["opinion_id"] == asked.opinion_ids[0]
    with rt.read() as s:
        mails = {m.to_addr: m for m in s.scalars(select(OutboxEmail))}
    assert mails["zhao.min@example.com"].subject == f"【履约】sup1 征询您的意见：主管审核（{key}）"
    assert "问题：付款条件可以接受吗？" in mails["zhao.min@example.com"].body
    # the mail links to the question: one asked may not open the task itself
    assert f"打开：https://lvyue.example/opinions/{asked.opinion_ids[0]}" in mails["zhao.min@example.com"].body
    assert "/tasks/" not in mails["zhao.min@example.com"].body
    assert mails["sun.li@example.com"].subject == f"[Lvyue] sup1 asks your opinion: Supervisor review ({key})"

    # in the lists of those asked, not of anyone else
    mine = countersign.pending_for(rt, legal1)
    assert [o.id for o in mine.items] == [asked.opinion_ids[0]] and mine.total == 1
    assert (mine.items[0].business_key, mine.items[0].asked_by, mine.items[0].waiting) == (key, "sup1", True)
    assert countersign.waiting_count(rt, fin1.id) == 1
    assert countersign.pending_for(rt, sup1).total == 0

    with pytest.raises(Conflict, match="is waiting for opinions from legal1, fin1$"):
        flow.act("supervisor_review", "sup1", approve("supervisor"))
    countersign.answer_opinion(rt, asked.opinion_ids[0], legal1, True, "  条款无风险 ")
    with pytest.raises(Conflict, match="is waiting for opinions from fin1$"):
        flow.act("supervisor_review", "sup1", approve("supervisor"))
    countersign.withdraw_opinion(rt, asked.opinion_ids[1], sup1)
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    assert "supervisor_review" not in flow.open_specs()

    answered, withdrawn = _events(rt, flow.id, "opinion_answered", "opinion_withdrawn")
    assert (answered.actor, answered.role, answered.task_id) == ("legal1", None, review.id)
    assert answered.data == {"opinion": asked.opinion_ids[0], "asked_by": "sup1", "agrees": True,
                             "answer": "条款无风险"}
    assert (withdrawn.actor, withdrawn.data) == ("sup1", {"opinion": asked.opinion_ids[1], "of": "fin1"})
    assert [u for u, _ in _notified(rt, "opinion_answered")] == ["sup1"]
    assert [u for u, _ in _notified(rt, "opinion_withdrawn")] == ["fin1"]
    with rt.read() as s:
        answer_mail = s.scalar(select(OutboxEmail).where(OutboxEmail.to_addr == "zhang.wei@example.com",
                                                         OutboxEmail.subject.contains("已答复")))
    assert answer_mail.subject == f"【履约】legal1 已答复征询意见：主管审核（{key}）"
    assert "意见：同意。条款无风险" in answer_mail.body
    assert f"打开：https://lvyue.example/tasks/{review.id}" in answer_mail.body  # the asker opens the task
    assert countersign.pending_for(rt, legal1).total == 0
    assert [o.status for o in countersign.pending_for(rt, legal1, show="all").items] == ["answered"]
    assert [(x.kind, x.status, x.asked_of) for x in countersign.of_task(rt, review.id)] == [
        ("opinion", "answered", "legal1"), ("opinion", "withdrawn", "fin1")]


def test_the_drafter_is_refused_by_four_eyes_and_nothing_is_written(rt, both1):
    flow, review = _review(rt)
    sup1 = flow.user("sup1")
    for to in (["rep1"], ["legal1", "rep1"]):
        with pytest.raises(FourEyesViolation, match="four eyes: rep1 completed 'Prepare quote / 编制报价' on this "
                                                    "contract, so they cannot be asked for an opinion"):
            countersign.ask_opinions(rt, review.id, sup1, to, "ok?")
    assert _consultations(rt) == 0 and _events(rt, flow.id, "opinion_asked", "claim") == []
    assert tasks.get_task(rt, review.id).assignee is None
    # a drafter who holds the reviewer's role too may not ask about their own quote either
    own, own_review = _review(rt, starter="both1")
    with pytest.raises(FourEyesViolation):
        countersign.ask_opinions(rt, own_review.id, both1, ["legal1"], "ok?")


def test_who_may_ask(rt, sup3):
    flow, review = _review(rt)
    for name in ("rep2", "mgr1", "dir1", "legal1", "audit1", "admin"):  # mgr1, dir1 oversee but may not act
        with pytest.raises(PermissionDenied):
            countersign.ask_opinions(rt, review.id, flow.user(name), ["fin1"], "ok?")
    tasks.claim(rt, review.id, sup3)
    with pytest.raises(Conflict, match="is claimed by sup3"):
        countersign.ask_opinions(rt, review.id, flow.user("sup1"), ["fin1"], "ok?")
    with pytest.raises(NotFound):
        countersign.ask_opinions(rt, review.id + 1000, sup3, ["fin1"], "ok?")
    done = flow.open()["supervisor_review"]
    flow.act("supervisor_review", "sup3", approve("supervisor"))
    with pytest.raises(Conflict, match="already completed by sup3"):
        countersign.ask_opinions(rt, done.id, sup3, ["fin1"], "ok?")
    assert _consultations(rt) == 0


def test_whom_one_may_ask(rt):
    accounts.create_user(rt, "gone", "password-1", ["legal"])
    accounts.create_user(rt, "bot", "password-2", ["legal"])
    _set_user(rt, "gone", active=False)
    _set_user(rt, "bot", service_account=True)
    flow, review = _review(rt)
    sup1 = flow.user("sup1")
    cases = [([], "ok?", {"to": "choose at least one person"}),
             (["legal1"], "   ", {"question": "this field is required"}),
             (["legal1"], "x" * 1001, {"question": "at most 1000 characters"}),
             ([f"u{i}" for i in range(11)], "ok?", {"to": "at most 10 people at a time"}),
             (["nobody"], "ok?", {"to": "no active user 'nobody'"}),
             (["gone"], "ok?", {"to": "no active user 'gone'"}),
             (["bot"], "ok?", {"to": "no active user 'bot'"}),
             (["legal1", "sup1"], "ok?", {"to": "ask someone other than yourself"})]
    for to, question, errors in cases:
        with pytest.raises(InvalidInput) as refused:
            countersign.ask_opinions(rt, review.id, sup1, to, question)
        assert refused.value.errors == errors, (to, refused.value.errors)
    assert _consultations(rt) == 0
    countersign.ask_opinions(rt, review.id, sup1, ["legal1"], "ok?")
    with pytest.raises(InvalidInput) as again:
        countersign.ask_opinions(rt, review.id, sup1, ["fin1", "legal1"], "and now?")
    assert again.value.errors == {"to": "legal1 has not answered the earlier question yet"}
    assert _consultations(rt) == 1


def test_answers_and_withdrawals_are_checked(rt, clock):
    flow, review = _review(rt)
    sup1, legal1, fin1 = flow.user("sup1"), flow.user("legal1"), flow.user("fin1")
    first, second = countersign.ask_opinions(rt, review.id, sup1, ["legal1", "fin1"], "ok?").opinion_ids
    with pytest.raises(PermissionDenied, match=f"opinion #{first} was not asked of fin1"):
        countersign.answer_opinion(rt, first, fin1, True, "yes")
    with pytest.raises(PermissionDenied, match=f"opinion #{first} was not asked of sup1"):
        countersign.answer_opinion(rt, first, sup1, True, "yes")
    with pytest.raises(InvalidInput) as bad:
        countersign.answer_opinion(rt, first, legal1, None, " ")
    assert bad.value.errors == {"agrees": "choose agree or disagree", "answer": "this field is required"}
    with pytest.raises(InvalidInput):
        countersign.answer_opinion(rt, first, legal1, False, "x" * 2001)
    with pytest.raises(NotFound):
        countersign.answer_opinion(rt, second + 100, legal1, True, "yes")
    for stranger in ("legal1", "rep2", "mgr1"):  # the one asked cannot withdraw; others do not hold the task
        with pytest.raises(PermissionDenied, match="only the one who asked"):
            countersign.withdraw_opinion(rt, first, flow.user(stranger))

    done = countersign.answer_opinion(rt, first, legal1, False, "违约金条款过高")
    assert (done.status, done.agrees, done.answer, done.closed_at) == ("answered", False, "违约金条款过高", clock.now())
    with pytest.raises(Conflict, match=f"opinion #{first} was already answered"):
        countersign.answer_opinion(rt, first, legal1, True, "changed my mind")
    with pytest.raises(Conflict, match="already answered"):
        countersign.withdraw_opinion(rt, first, sup1)
    countersign.withdraw_opinion(rt, second, sup1)
    with pytest.raises(Conflict, match=f"opinion #{second} was already withdrawn"):
        countersign.answer_opinion(rt, second, fin1, True, "late")
    assert [e.action for e in _events(rt, flow.id, "opinion_answered", "opinion_withdrawn")] == [
        "opinion_answered", "opinion_withdrawn"]


def test_the_holder_after_a_reassignment_may_withdraw(rt, sup3):
    flow, review = _review(rt)
    [opinion] = countersign.ask_opinions(rt, review.id, flow.user("sup1"), ["legal1"], "ok?").opinion_ids
    tasks.reassign(rt, review.id, flow.user("sup1"), "sup3", "holiday")
    with pytest.raises(Conflict, match="waiting for opinions from legal1"):  # the new holder waits too
        flow.act("supervisor_review", "sup3", approve("supervisor"))
    countersign.withdraw_opinion(rt, opinion, sup3)
    flow.act("supervisor_review", "sup3", approve("supervisor"))


def test_an_opinion_on_a_task_that_closed_can_no_longer_be_answered(rt):
    flow, review = _review(rt)
    [opinion] = countersign.ask_opinions(rt, review.id, flow.user("sup1"), ["legal1"], "ok?").opinion_ids
    with rt.write() as s:  # as a cancellation (a boundary event, a return to an earlier step) leaves it
        s.execute(update(TaskRow).where(TaskRow.id == review.id).values(status="cancelled"))
    with pytest.raises(Conflict, match="is no longer open"):
        countersign.answer_opinion(rt, opinion, flow.user("legal1"), True, "yes")
    legal1 = flow.user("legal1")
    assert countersign.pending_for(rt, legal1).total == 0 and countersign.waiting_count(rt, legal1.id) == 0
    [closed] = countersign.pending_for(rt, legal1, show="all").items
    assert closed.status == "pending" and not closed.waiting


def test_an_opinion_giver_gets_no_power_over_the_task(rt):
    """legal1, asked about a supervisor review, may answer, and nothing more: not complete, claim or reassign
    it, and not complete it by the batch either."""
    flow, review = _review(rt)
    [opinion] = countersign.ask_opinions(rt, review.id, flow.user("sup1"), ["legal1"], "ok?").opinion_ids
    legal1 = flow.user("legal1")
    countersign.answer_opinion(rt, opinion, legal1, True, "fine")
    with pytest.raises((PermissionDenied, Conflict)):
        tasks.complete(rt, review.id, legal1, approve("supervisor"))
    with pytest.raises((PermissionDenied, Conflict)):
        tasks.claim(rt, review.id, legal1)
    with pytest.raises(PermissionDenied):
        tasks.reassign(rt, review.id, legal1, "legal1", "mine")
    assert [o.code for o in batch.approve_many(rt, [review.id], legal1)] == ["forbidden"]
    assert tasks.get_task(rt, review.id).status == "open"


def test_the_batch_approval_refuses_a_task_waiting_for_opinions(rt):
    waiting, ready = _review(rt), _review(rt)
    sup1 = accounts.get_user(rt, "sup1")
    countersign.ask_opinions(rt, waiting[1].id, sup1, ["legal1"], "ok?")
    out = batch.approve_many(rt, [waiting[1].id, ready[1].id], sup1)
    assert [o.code for o in out] == ["conflict", "approved"]
    assert out[0].message.endswith("is waiting for opinions from legal1")
    assert "supervisor_review" in waiting[0].open_specs() and "supervisor_review" not in ready[0].open_specs()


def _at_once(**actions) -> dict[str, object]:
    """Run the actions in threads started together; each one's result, or the refusal it got."""
    start = threading.Barrier(len(actions))
    outcomes: dict[str, object] = {}

    def run(name, fn):
        start.wait()
        try:
            outcomes[name] = fn()
        except (Conflict, PermissionDenied) as err:
            outcomes[name] = err

    threads = [threading.Thread(target=run, args=item) for item in actions.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_asking_and_completing_at_once_never_both_succeed(rt):
    """The holder's completion and a request for opinions on the same task at the same moment (two tabs): one
    of them is refused, whichever comes second; never a completed task with an opinion pending."""
    for _ in range(3):
        flow, review = _review(rt)
        sup1 = flow.user("sup1")
        tasks.claim(rt, review.id, sup1)
        outcomes = _at_once(
            ask=lambda task_id=review.id, user=sup1: countersign.ask_opinions(rt, task_id, user, ["legal1"], "ok?"),
            complete=lambda task_id=review.id, user=sup1: tasks.complete(rt, task_id, user, approve("supervisor")))
        failed = [k for k, v in outcomes.items() if isinstance(v, Exception)]
        assert len(failed) == 1, outcomes
        status = tasks.get_task(rt, review.id).status
        pending = [x for x in countersign.of_task(rt, review.id) if x.status == "pending"]
        assert (status, len(pending)) in (("completed", 0), ("open", 1)), (status, pending)


# --- an approver after (后加签): the service -----------------------------------------------------------------

def test_the_added_approver_holds_the_task_and_their_approval_moves_the_process_on(rt, clock, sup3):
    flow, review = _review(rt)
    sup1 = flow.user("sup1")
    added = countersign.approve_and_add_after(rt, review.id, sup1, "sup3",
                                              {"supervisor_decision": "approve", "supervisor_comment": "价格合理"},
                                              expected_version=review.instance_version)
    assert (added.to, added.business_key) == ("sup3", flow.started.business_key)
    item = tasks.get_task(rt, review.id)
    assert (item.status, item.assignee, item.role, item.claimed_at) == ("open", "sup3", "supervisor", clock.now())
    assert [t.id for t in tasks.list_tasks(rt, sup3, "mine").items] == [review.id]  # in their queue
    [event] = _events(rt, flow.id, "countersign")
    assert (event.actor, event.role, event.task_id) == ("sup1", "supervisor", review.id)
    assert event.data == {"form": {"supervisor_decision": "approve", "supervisor_comment": "价格合理"}, "to": "sup3"}
    [(who, params)] = _notified(rt, "approver_added")
    assert who == "sup3" and params["by"] == "sup1" and params["reason"] == "价格合理"
    with rt.read() as s:
        mail = s.scalar(select(OutboxEmail).where(OutboxEmail.to_addr == "sup3@example.com",
                                                  OutboxEmail.subject.contains("加签")))
    assert mail.subject.startswith("【履约】sup1 已批准并加签给您：主管审核")
    [signer] = countersign.of_task(rt, review.id)
    assert (signer.kind, signer.asked_by, signer.asked_of, signer.question) == ("approver_after", "sup1", "sup3",
                                                                                 "价格合理")
    assert "supervisor_decision" not in {k for k, v in flow.data().items() if v}  # the engine task is still open

    with pytest.raises(Conflict, match="claimed by sup3"):  # the reviewer no longer holds it
        flow.act("supervisor_review", "sup1", approve("supervisor"))
    done = flow.act("supervisor_review", "sup3", approve("supervisor"))
    assert done.new_task_ids and "draft_contract" in flow.open_specs()
    [complete] = [e for e in _events(rt, flow.id, "complete") if e.task_id == review.id]
    assert (complete.actor, complete.role) == ("sup3", "supervisor")


def test_a_reviewer_who_approved_and_added_someone_may_not_approve_the_next_level(rt, sup3):
    """Four eyes counts the reviewer's approval as theirs though the added approver completed the task: a
    supervisor who is also a manager may not then approve the same quote as its manager."""
    accounts.create_user(rt, "supmgr", accounts.DEMO_PASSWORD, ["supervisor", "manager"], team="east")
    supmgr = accounts.get_user(rt, "supmgr")
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote(total_price="150000.00"))
    review = flow.task("supervisor_review")
    countersign.approve_and_add_after(rt, review.id, supmgr, "sup3", approve("supervisor"),
                                      expected_version=review.instance_version)
    flow.act("supervisor_review", "sup3", approve("supervisor"))
    manager = flow.task("manager_review")
    with pytest.raises(FourEyesViolation, match="supmgr completed 'Supervisor review"):
        tasks.complete(rt, manager.id, supmgr, approve("manager"))
    flow.act("manager_review", "mgr1", approve("manager"))
    assert flow.open_specs() == {"legal_review", "finance_review"}


def test_the_added_approver_may_reject(rt, sup3):
    flow, review = _review(rt)
    countersign.approve_and_add_after(rt, review.id, flow.user("sup1"), "sup3", approve("supervisor"))
    flow.act("supervisor_review", "sup3", {"supervisor_decision": "reject", "supervisor_comment": "折扣过大"})
    assert flow.view().status == "completed" and flow.open_specs() == set()
    assert flow.data()["supervisor_decision"] == "reject"


def test_the_reviewer_cannot_take_the_decision_back(rt, sup3):
    """Once sup1 approved and added sup3, the decision is someone else's: not sup1's, even if sup3 gives the
    task back to the queue, and sup3 cannot hand it back to sup1 with another approval."""
    flow, review = _review(rt)
    sup1 = flow.user("sup1")
    countersign.approve_and_add_after(rt, review.id, sup1, "sup3", approve("supervisor"))
    with pytest.raises(InvalidInput) as back:
        countersign.approve_and_add_after(rt, review.id, sup3, "sup1", approve("supervisor"))
    assert back.value.errors == {"to": "sup1 already approved 'Supervisor review / 主管审核'"}
    tasks.unclaim(rt, review.id, sup3)
    with pytest.raises(FourEyesViolation, match="sup1 approved 'Supervisor review / 主管审核' and added an approver"):
        flow.act("supervisor_review", "sup1", approve("supervisor"))
    assert [o.code for o in batch.approve_many(rt, [review.id], sup1)] == ["four_eyes"]
    flow.act("supervisor_review", "sup3", approve("supervisor"))  # sup3, with the role, still can


def test_whom_one_may_add_after_oneself(rt, sup3, both1):
    accounts.create_user(rt, "sup_west", "password-1", ["supervisor"], team="west")
    accounts.create_user(rt, "sup_bot", "password-2", ["supervisor"], team="east")
    _set_user(rt, "sup_bot", service_account=True)
    flow, review = _review(rt, starter="both1")  # both1 prepared it: four eyes rules them out
    sup1 = flow.user("sup1")
    for to, errors in (("rep2", {"to": "rep2 does not have the role 'supervisor'"}),
                       ("legal1", {"to": "legal1 does not have the role 'supervisor'"}),
                       ("mgr1", {"to": "mgr1 does not have the role 'supervisor'"}),
                       ("sup_west", {"to": "sup_west is not in the team 'east'"}),
                       ("sup_bot", {"to": "no active user 'sup_bot'"}),
                       ("nobody", {"to": "no active user 'nobody'"}),
                       ("sup1", {"to": "add someone other than yourself"})):
        with pytest.raises(InvalidInput) as refused:
            countersign.approve_and_add_after(rt, review.id, sup1, to, approve("supervisor"))
        assert refused.value.errors == errors, to
    with pytest.raises(FourEyesViolation, match="four eyes: both1 completed 'Prepare quote / 编制报价'"):
        countersign.approve_and_add_after(rt, review.id, sup1, "both1", approve("supervisor"))
    assert _consultations(rt) == 0 and _events(rt, flow.id, "countersign") == []
    assert tasks.get_task(rt, review.id).assignee is None


def test_what_the_reviewer_must_bring(rt, sup3):
    flow, review = _review(rt)
    sup1 = flow.user("sup1")
    with pytest.raises(InvalidInput) as rejected:
        countersign.approve_and_add_after(rt, review.id, sup1, "sup3",
                                          {"supervisor_decision": "reject", "supervisor_comment": "no"})
    assert set(rejected.value.errors) == {"supervisor_decision"}
    with pytest.raises(InvalidInput) as invalid:
        countersign.approve_and_add_after(rt, review.id, sup1, "sup3", {"supervisor_decision": "maybe"})
    assert "supervisor_decision" in invalid.value.errors
    with pytest.raises(Conflict, match="this contract changed"):
        countersign.approve_and_add_after(rt, review.id, sup1, "sup3", approve("supervisor"),
                                          expected_version=review.instance_version - 1)
    with pytest.raises(PermissionDenied):  # the manager oversees the team but is no supervisor
        countersign.approve_and_add_after(rt, review.id, flow.user("mgr1"), "sup3", approve("supervisor"))
    countersign.ask_opinions(rt, review.id, sup1, ["legal1"], "ok?")
    with pytest.raises(Conflict, match="waiting for opinions from legal1"):
        countersign.approve_and_add_after(rt, review.id, sup1, "sup3", approve("supervisor"))
    # a task whose form is no approval (a rep's draft) takes no approver after
    other = Flow(rt)
    prepare = other.task("prepare_quote")
    accounts.create_user(rt, "rep9", "password-9", ["sales_rep"], team="east")
    with pytest.raises(InvalidInput, match="is not an approval"):
        countersign.approve_and_add_after(rt, prepare.id, flow.user("rep1"), "rep9", quote())
    assert _events(rt, flow.id, "countersign") == []


def test_every_refusal_of_the_countersign_service_reads_in_chinese():
    """Every message the service raises, and every per-field message, has a pattern in webapp/messages.py."""
    assert len(raised_messages("workflows/services/countersign.py")) > 25
    assert untranslated("workflows/services/countersign.py") == []


# --- the web pages ---------------------------------------------------------------------------------------

def _task_page(web, task_id: int, status: int = 200) -> str:
    return web.text(f"/tasks/{task_id}", status)


def test_ask_answer_and_complete_on_the_web_in_both_languages(rt, login):
    flow, review = _review(rt)
    key = flow.started.business_key
    sup = login("sup1")
    page = _task_page(sup, review.id)
    assert "征询意见" in page and f'action="/tasks/{review.id}/opinions"' in page
    assert '<option value="rep1"' in page  # everyone is listed; four eyes answers on submit

    # without the form's CSRF token nothing is asked
    assert sup.client.post(f"/tasks/{review.id}/opinions", data={"to": "legal1", "question": "?"}).status_code == 400
    # the drafter: refused by four eyes, in Chinese, with what was typed still there
    refused = sup.post(f"/tasks/{review.id}/opinions", {"to": "rep1", "question": "报价合理吗？"},
                       page=f"/tasks/{review.id}")
    assert refused.status_code == 403
    text = refused.get_data(as_text=True)
    assert "四眼原则：rep1 已在本合同中完成「编制报价」，不能就「主管审核」征询其意见" in text
    assert "报价合理吗？" in text
    empty = sup.post(f"/tasks/{review.id}/opinions", {"to": "legal1", "question": ""}, page=f"/tasks/{review.id}")
    assert empty.status_code == 422 and "此项必填" in empty.get_data(as_text=True)
    assert _consultations(rt) == 0

    sent = sup.post(f"/tasks/{review.id}/opinions", {"to": ["legal1", "fin1"], "question": "付款条件可以接受吗？"},
                    page=f"/tasks/{review.id}")
    assert sent.status_code == 302 and sent.headers["Location"].endswith(f"/tasks/{review.id}")
    page = _task_page(sup, review.id)
    assert "已向 legal1, fin1 征询意见，任务将等待他们的答复。" in page
    assert "正在等待 legal1, fin1 的意见" in page and "等待答复。" in page
    assert "征询意见：" in page and "→ legal1, fin1: 付款条件可以接受吗？" in page  # the history
    done = sup.post(f"/tasks/{review.id}/complete", {"f.supervisor_decision": "approve",
                                                     "version": str(review.instance_version)},
                    page=f"/tasks/{review.id}")
    assert done.status_code == 409 and "「主管审核」正在等待 legal1, fin1 的意见" in done.get_data(as_text=True)

    legal = login("legal1")
    assert legal.get(f"/tasks/{review.id}").status_code == 403  # being asked opens no task
    listed = legal.text("/opinions")
    [opinion, fin_opinion] = countersign.of_task(rt, review.id)
    assert f'href="/opinions/{opinion.id}"' in listed and key in listed and "付款条件可以接受吗？" in listed
    assert 'data-count="opinions">1<' in listed
    inbox = legal.text("/inbox")
    assert f"sup1 就合同 {key} 的任务 主管审核 征询您的意见。" in inbox and f'href="/opinions/{opinion.id}"' in inbox
    one = legal.text(f"/opinions/{opinion.id}")
    assert "华东机械" in one and "CNC lathe" in one and "提交意见" in one  # the contract, to judge it
    bad = legal.post(f"/opinions/{opinion.id}/answer", {"answer": "看过了"}, page=f"/opinions/{opinion.id}")
    assert bad.status_code == 422 and "请选择同意或不同意" in bad.get_data(as_text=True) and "看过了" in bad.get_data(
        as_text=True)
    ok = legal.post(f"/opinions/{opinion.id}/answer", {"agrees": "disagree", "answer": "违约金过高"},
                    page=f"/opinions/{opinion.id}")
    assert ok.status_code == 302 and ok.headers["Location"].endswith("/opinions")
    assert "谢谢，您的意见已提交。" in legal.text("/opinions")
    assert legal.post(f"/opinions/{opinion.id}/answer", {"agrees": "agree", "answer": "again"},
                      page="/opinions").status_code == 409
    assert login("fin1").post(f"/opinions/{opinion.id}/answer", {"agrees": "agree", "answer": "me"},
                              page="/opinions").status_code == 403

    page = _task_page(sup, review.id)
    assert "不同意" in page and "违约金过高" in page and "答复了征询意见：" in page
    assert f"legal1 已答复合同 {key} 的任务 主管审核 的征询：不同意。" in sup.text("/inbox")
    withdrawn = sup.post(f"/opinions/{fin_opinion.id}/withdraw", {}, page=f"/tasks/{review.id}")
    assert withdrawn.status_code == 302 and withdrawn.headers["Location"].endswith(f"/tasks/{review.id}")
    assert "已撤回对 孙丽 Sun Li 的征询。" in _task_page(sup, review.id)

    # in English
    sup.post("/language", {"lang": "en"})
    page = _task_page(sup, review.id)
    assert "asked for opinions on" in page and "gave an opinion on" in page and "Disagrees" in page
    assert "withdrew a question on" in page and "Added signers" in page
    done = sup.post(f"/tasks/{review.id}/complete", {"f.supervisor_decision": "approve",
                                                     "version": str(review.instance_version)},
                    page=f"/tasks/{review.id}")
    assert done.status_code == 302
    assert "supervisor_review" not in flow.open_specs()


def test_approve_and_add_on_the_web(rt, login, sup3):
    flow, review = _review(rt)
    sup = login("sup1")
    page = _task_page(sup, review.id)
    assert f'action="/tasks/{review.id}/add-approver"' in page and '<option value="sup3"' in page
    assert 'name="f.supervisor_decision" value="approve"' in page
    form = {"to": "sup3", "f.supervisor_decision": "approve", "f.supervisor_comment": "同意，请张三复核",
            "version": str(review.instance_version)}
    stale = sup.post(f"/tasks/{review.id}/add-approver", {**form, "version": "0"}, page=f"/tasks/{review.id}")
    assert stale.status_code == 409 and "同意，请张三复核" in stale.get_data(as_text=True)
    wrong = sup.post(f"/tasks/{review.id}/add-approver", {**form, "to": "legal1"}, page=f"/tasks/{review.id}")
    assert wrong.status_code == 422 and "legal1 没有角色「supervisor」" in wrong.get_data(as_text=True)
    added = sup.post(f"/tasks/{review.id}/add-approver", form, page=f"/tasks/{review.id}")
    assert added.status_code == 302 and added.headers["Location"].endswith("/tasks")
    assert tasks.get_task(rt, review.id).assignee == "sup3"

    other = login("sup3")
    queue = other.text("/tasks")
    assert f'href="/tasks/{review.id}"' in queue
    page = _task_page(other, review.id)
    assert "sup3 由 张伟 Zhang Wei 在批准后加签" in page
    assert "意见：同意，请张三复核" in page and "批准并加签：" in page and "→ sup3" in page
    # the reviewer may look, no longer act
    page = _task_page(sup, review.id)
    assert f'action="/tasks/{review.id}/add-approver"' not in page
    assert f'action="/tasks/{review.id}/opinions"' not in page
    assert f"sup1 已批准合同 {flow.started.business_key} 的任务 主管审核，并加签您在其后审批。" in other.text("/inbox")
    done = other.post(f"/tasks/{review.id}/complete", {"f.supervisor_decision": "approve",
                                                       "version": str(review.instance_version)},
                      page=f"/tasks/{review.id}")
    assert done.status_code == 302
    assert "draft_contract" in flow.open_specs()

    # compliance sees both decisions of the step: sup1's approval with the approver added, and sup3's
    record = login("audit1").text(f"/compliance/contracts/{flow.started.business_key}")
    assert "批准并加签" in record and "→ sup3" in record
    decisions = record[record.index("data-decisions"):record.index("</table>", record.index("data-decisions"))]
    assert decisions.count("主管审核") == 2 and "同意，请张三复核" in decisions


def test_the_panel_is_only_offered_to_who_may_act(rt, login, sup3):
    flow, review = _review(rt)
    for name in ("mgr1", "dir1", "audit1", "admin"):  # they may read the task
        page = _task_page(login(name), review.id)
        assert f'action="/tasks/{review.id}/opinions"' not in page, name
        assert f'action="/tasks/{review.id}/add-approver"' not in page, name
    # no add-after where nobody else has the role: mgr1's own review
    big = Flow(rt)
    big.act("prepare_quote", "rep1", quote("150000.00"))
    big.act("supervisor_review", "sup1", approve("supervisor"))
    manager = big.task("manager_review")
    page = _task_page(login("mgr1"), manager.id)
    assert f'action="/tasks/{manager.id}/opinions"' in page
    assert f'action="/tasks/{manager.id}/add-approver"' not in page


# the role test of each route (tests/test_web_roles.py sends its endpoints here): per demo user, on a fresh
# contract whose supervisor review is held by sup1, who asked legal1 for an opinion
ALL = [name for name, *_ in accounts.DEMO_USERS]


@pytest.fixture
def asked(rt, sup3):
    flow, review = _review(rt)
    [opinion] = countersign.ask_opinions(rt, review.id, flow.user("sup1"), ["legal1"], "ok?").opinion_ids
    return {"task": review.id, "opinion": opinion, "version": review.instance_version}


HELD = {"mgr1": 409, "dir1": 409, "audit1": 409, "admin": 409}  # may see the task, which sup1 holds
ROLE_CASES = {
    "signers.ask": ("POST", "/tasks/{task}/opinions", {"to": "fin1", "question": "ok?"}, {**HELD, "sup1": 302}),
    "signers.add_approver": ("POST", "/tasks/{task}/add-approver",
                             {"to": "sup3", "f.supervisor_decision": "approve", "version": "{version}"},
                             {**HELD, "sup1": 409}),  # sup1 too: legal1's opinion is pending
    "signers.index": ("GET", "/opinions", {}, dict.fromkeys(ALL, 200)),
    "signers.show": ("GET", "/opinions/{opinion}", {},
                     dict.fromkeys(("sup1", "mgr1", "dir1", "audit1", "admin", "legal1"), 200)),
    "signers.answer": ("POST", "/opinions/{opinion}/answer", {"agrees": "agree", "answer": "fine"}, {"legal1": 302}),
    "signers.withdraw": ("POST", "/opinions/{opinion}/withdraw", {}, {"sup1": 302}),
}


@pytest.mark.parametrize("endpoint", sorted(ROLE_CASES))
def test_route_by_role(endpoint, rt, login, asked):
    method, path, data, allowed = ROLE_CASES[endpoint]
    path = path.format(**asked)
    data = {k: v.format(**asked) for k, v in data.items()}
    # the refused users first: an allowed action changes the objects
    for username in sorted(ALL, key=lambda name: allowed.get(name, 403) < 400):
        web = login(username)
        response = web.get(path) if method == "GET" else web.post(path, data, page="/status")
        # those who may not even see the task hear so (403) before anything about the request
        expected = allowed.get(username, 403)
        assert response.status_code == expected, (endpoint, username, response.status_code,
                                                   response.get_data(as_text=True)[:300])
    assert login("sup1").get("/opinions/999999").status_code == 404
