"""Substitutes (委托/代理) through the service layer and the web pages: tasks held by an away user go to their
substitute marked "on behalf of" and come back when the range ends (under the controllable clock and the
worker's sweep); send-backs to an away author go to the substitute; four eyes binds the substitute; the
standing-in never opens a role's queue, another task or someone else's range; the rules of a range; the pages
in both languages, with CSRF and the history."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from models import AuditEvent, Notification, OutboxEmail, Substitution, TaskRow, User
from workflows.services import accounts, substitutes, task_detail, tasks
from workflows.services.errors import Conflict, FourEyesViolation, InvalidInput, NotFound, PermissionDenied

from .flow import Flow, approve, quote
from .service_messages import raised_messages, untranslated

ROOT = Path(__file__).resolve().parents[1]
TODAY = date(2026, 11, 23)  # the test clock starts at 10:00 in Shanghai on this day
TOMORROW = TODAY + timedelta(days=1)
MIDNIGHT = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # 00:00 of the 24th in Shanghai


def _user(rt, name: str):
    return accounts.get_user(rt, name)


def _set_user(rt, username: str, **values) -> None:
    with rt.write() as s:
        s.execute(update(User).where(User.username == username).values(**values))


def _held_review(rt, holder: str = "sup1", total: str = "12000.00") -> tuple[Flow, tasks.TaskItem]:
    """An east contract prepared by rep1 whose supervisor review ``holder`` has claimed."""
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote(total))
    review = tasks.claim(rt, flow.task("supervisor_review").id, _user(rt, holder))
    return flow, review


def _events(rt, instance_id: int, *actions: str) -> list[AuditEvent]:
    with rt.read() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.instance_id == instance_id,
                                                       AuditEvent.action.in_(actions)).order_by(AuditEvent.id)))


def _notes(rt, username: str, kind: str) -> list[Notification]:
    with rt.read() as s:
        return list(s.scalars(select(Notification).join(User, User.id == Notification.user_id)
                              .where(User.username == username, Notification.kind == kind)
                              .order_by(Notification.id)))


def _away(rt, who: str, substitute: str, first: date = TODAY, last: date = TODAY, reason: str = "年假"):
    return substitutes.create(rt, _user(rt, who), substitute, first, last, reason)


# --- handing over and back -------------------------------------------------------------------------------


def test_the_substitute_acts_while_the_range_is_open_and_not_after(rt, clock):
    first, a = _held_review(rt)
    second, b = _held_review(rt)
    rep2 = _user(rt, "rep2")  # no supervisor role: acts on what they hold, as its holder
    away = _away(rt, "sup1", "rep2", TOMORROW, TOMORROW, "出差")
    assert away.state(clock.now()) == "upcoming" and away.starts_at == MIDNIGHT
    assert away.ends_at == MIDNIGHT + timedelta(days=1)

    # before the range: nothing moved, the substitute may not act
    assert not substitutes.apply_due(rt).changed
    with pytest.raises(Conflict, match="is claimed by sup1"):
        tasks.complete(rt, a.id, rep2, approve("supervisor"))
    assert tasks.get_task(rt, a.id).assignee == "sup1"

    clock.set(MIDNIGHT)  # the range opens: the worker's sweep hands over
    report = substitutes.apply_due(rt)
    assert (report.opened, report.handed_over) == (1, 2)
    mine = tasks.list_tasks(rt, rep2, "mine")
    assert {t.id: (t.assignee, t.on_behalf_of) for t in mine.items} == {a.id: ("rep2", "sup1"),
                                                                         b.id: ("rep2", "sup1")}
    assert tasks.list_tasks(rt, _user(rt, "sup1"), "mine").total == 0
    assert not substitutes.apply_due(rt).changed  # a second sweep has nothing to do

    clock.advance(hours=3)
    done = tasks.complete(rt, a.id, rep2, approve("supervisor"))
    assert done.new_task_ids  # the contract moved on: rep2 approved on behalf of sup1
    [complete] = _events(rt, first.id, "complete")[-1:]
    assert (complete.actor, complete.spec_id) == ("rep2", "supervisor_review")

    clock.set(MIDNIGHT + timedelta(days=1))  # the range ends
    report = substitutes.apply_due(rt)
    assert (report.handed_back, report.closed) == (1, 1)
    item = tasks.get_task(rt, b.id)
    assert (item.assignee, item.on_behalf_of) == ("sup1", None)
    with pytest.raises(Conflict, match="is claimed by sup1"):
        tasks.complete(rt, b.id, rep2, approve("supervisor"))
    tasks.complete(rt, b.id, _user(rt, "sup1"), approve("supervisor"))

    # the record of contract B: handed over, handed back; the completed one keeps whom it was done for
    over, back = _events(rt, second.id, "substitute", "substitute_end")
    assert (over.action, over.actor, over.task_id) == ("substitute", "system", b.id)
    assert over.data["from"] == "sup1" and over.data["to"] == "rep2" and over.data["on_behalf_of"] == "sup1"
    assert over.data["reason"] == "出差" and over.data["until"].startswith("2026-11-24T16:00")
    assert (back.action, back.data["from"], back.data["to"]) == ("substitute_end", "rep2", "sup1")
    with rt.read() as s:
        assert s.scalar(select(TaskRow.on_behalf_of_id).where(TaskRow.id == a.id)) == _user(rt, "sup1").id
        closed = s.get(Substitution, away.id)
        assert closed.opened_at == MIDNIGHT and closed.closed_at == MIDNIGHT + timedelta(days=1)
    assert [n.task_id for n in _notes(rt, "rep2", "substitute")] == [a.id, b.id]
    assert [n.task_id for n in _notes(rt, "sup1", "substitute_end")] == [b.id]
    assert _notes(rt, "rep2", "substitute")[0].params["by"] == "sup1"


def test_the_substitute_may_not_act_after_the_range_even_before_the_sweep(rt, clock):
    """The worker hands tasks back within a second of a range's end; until it has, the substitute still holds
    them but may no longer act on them: the range decides, not the sweep."""
    _, a = _held_review(rt)
    rep2 = _user(rt, "rep2")
    _away(rt, "sup1", "rep2", TOMORROW, TOMORROW, "出差")
    clock.set(MIDNIGHT)
    substitutes.apply_due(rt)
    assert tasks.get_task(rt, a.id).assignee == "rep2"
    clock.set(MIDNIGHT + timedelta(days=1))  # ended; no sweep yet
    assert tasks.get_task(rt, a.id).assignee == "rep2"
    with pytest.raises(PermissionDenied,
                       match="rep2 held 'Supervisor review / 主管审核' for sup1, who is no longer away"):
        tasks.complete(rt, a.id, rep2, approve("supervisor"))
    assert tasks.get_task(rt, a.id).status == "open"
    substitutes.apply_due(rt)
    tasks.complete(rt, a.id, _user(rt, "sup1"), approve("supervisor"))


def test_after_the_range_the_substitute_may_not_pass_the_task_on_either(rt, clock):
    _, a = _held_review(rt)
    _, b = _held_review(rt)
    rep2 = _user(rt, "rep2")
    _away(rt, "sup1", "rep2", TOMORROW, TOMORROW, "出差")
    clock.set(MIDNIGHT)
    substitutes.apply_due(rt)
    clock.set(MIDNIGHT + timedelta(days=1))  # ended; the sweep has not run yet
    with pytest.raises(PermissionDenied, match="who is no longer away"):
        tasks.reassign(rt, a.id, rep2, "sup1", "passing it on")
    with pytest.raises(PermissionDenied, match="who is no longer away"):
        tasks.unclaim(rt, b.id, rep2)
    assert [tasks.get_task(rt, t.id).on_behalf_of for t in (a, b)] == ["sup1", "sup1"]
    substitutes.apply_due(rt)
    assert [tasks.get_task(rt, t.id).assignee for t in (a, b)] == ["sup1", "sup1"]


def test_a_task_is_not_reassigned_to_someone_away(rt):
    accounts.create_user(rt, "sup2", "password-1", ["supervisor"], team="east")
    _, a = _held_review(rt)
    _away(rt, "sup2", "mgr1")
    with pytest.raises(InvalidInput) as err:
        tasks.reassign(rt, a.id, _user(rt, "sup1"), "sup2", "sup2 knows the customer")
    assert err.value.errors == {"to": "sup2 is away; mgr1 stands in for them"}
    assert tasks.get_task(rt, a.id).assignee == "sup1"


def test_far_off_days_are_refused_with_a_reason(rt):
    for first, last in ((date(1, 1, 1), TODAY), (TODAY, date(9999, 12, 31))):
        with pytest.raises(InvalidInput) as err:
            _away(rt, "sup1", "rep2", first, last)
        assert "give a date between 1900 and 2999" in err.value.errors.values()


def test_a_range_that_starts_today_hands_over_when_saved(rt, clock):
    _set_user(rt, "rep2", email="li.na@example.com")
    flow, review = _held_review(rt)
    away = _away(rt, "sup1", "rep2")
    assert away.state(clock.now()) == "active" and away.starts_at == clock.now()  # today: from now
    assert away.ends_at == MIDNIGHT and away.held == 1
    item = tasks.get_task(rt, review.id)
    assert (item.assignee, item.on_behalf_of) == ("rep2", "sup1")
    [event] = _events(rt, flow.id, "substitute")
    assert (event.actor, event.actor_id) == ("sup1", _user(rt, "sup1").id)  # saved by sup1 themselves
    with rt.read() as s:
        mail = s.scalars(select(OutboxEmail).where(OutboxEmail.to_addr == "li.na@example.com")
                         .order_by(OutboxEmail.id)).all()[-1]
    assert mail.subject == f"【履约】您代理 sup1：主管审核（{flow.started.business_key}）"
    assert "事由：年假" in mail.body

    clock.set(MIDNIGHT)
    assert substitutes.apply_due(rt).handed_back == 1
    assert tasks.get_task(rt, review.id).assignee == "sup1"


def test_unclaimed_tasks_stay_in_the_role_queue(rt):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    review = flow.task("supervisor_review")
    _away(rt, "sup1", "rep2")
    substitutes.apply_due(rt)
    item = tasks.get_task(rt, review.id)
    assert (item.assignee, item.on_behalf_of) == (None, None)
    rep2 = _user(rt, "rep2")
    assert review.id not in {t.id for t in tasks.list_tasks(rt, rep2, "roles").items}
    with pytest.raises(PermissionDenied, match="role 'supervisor'"):
        tasks.claim(rt, review.id, rep2)


def test_a_send_back_to_an_away_author_goes_to_the_substitute(rt, clock):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    _away(rt, "rep1", "rep2")
    flow.act("supervisor_review", "sup1", {"supervisor_decision": "send_back", "supervisor_comment": "折扣"})
    again = flow.task("prepare_quote")
    assert (again.assignee, again.on_behalf_of) == ("rep2", "rep1")
    returned, over = _events(rt, flow.id, "return", "substitute")
    assert returned.data == {"assignee_id": _user(rt, "rep2").id}
    assert (over.task_id, over.data["to"], over.data["on_behalf_of"]) == (again.id, "rep2", "rep1")
    [note] = _notes(rt, "rep2", "substitute")
    assert note.task_id == again.id and note.params["by"] == "rep1"
    assert _notes(rt, "rep2", "task_reassigned") == []  # told once, as the substitute

    clock.set(MIDNIGHT)
    substitutes.apply_due(rt)
    assert tasks.get_task(rt, again.id).assignee == "rep1"
    flow.act("prepare_quote", "rep1", quote(discount_pct=2))


def test_cancelling_brings_the_tasks_back_at_once(rt, clock):
    flow, review = _held_review(rt)
    away = _away(rt, "sup1", "mgr1", TODAY, TOMORROW)
    assert tasks.get_task(rt, review.id).assignee == "mgr1"
    clock.advance(hours=1)
    cancelled = substitutes.cancel(rt, _user(rt, "sup1"), away.id)
    assert cancelled.state(clock.now()) == "cancelled" and cancelled.closed_at == clock.now()
    assert tasks.get_task(rt, review.id).assignee == "sup1"
    [back] = _events(rt, flow.id, "substitute_end")
    assert back.actor == "sup1"
    assert _notes(rt, "sup1", "substitute_end") == []  # one's own click needs no notice
    with pytest.raises(Conflict, match="already over"):
        substitutes.cancel(rt, _user(rt, "sup1"), away.id)
    assert not substitutes.apply_due(rt).changed

    # a range that has not started is just closed; its days are free again
    later = _away(rt, "sup1", "mgr1", TOMORROW, TOMORROW)
    substitutes.cancel(rt, _user(rt, "sup1"), later.id)
    _away(rt, "sup1", "rep2", TOMORROW, TOMORROW)
    assert tasks.get_task(rt, review.id).assignee == "sup1"


def test_what_the_substitute_passes_on_stays_where_it_went(rt, clock):
    accounts.create_user(rt, "sup2", "password-1", ["supervisor"], team="east")
    _, kept = _held_review(rt)
    _, passed = _held_review(rt)
    _, released = _held_review(rt)
    _away(rt, "sup1", "mgr1")
    mgr1 = _user(rt, "mgr1")
    tasks.reassign(rt, passed.id, mgr1, "sup2", "sup2 knows this customer")
    tasks.unclaim(rt, released.id, mgr1)
    # the mark goes with the hand-over itself (claim, release, reassign), not with the next sweep
    assert (tasks.get_task(rt, passed.id).assignee, tasks.get_task(rt, passed.id).on_behalf_of) == ("sup2", None)
    assert tasks.get_task(rt, released.id).on_behalf_of is None
    assert substitutes.apply_due(rt).unmarked == 0
    clock.set(MIDNIGHT)
    assert substitutes.apply_due(rt).handed_back == 1
    assert [tasks.get_task(rt, t.id).assignee for t in (kept, passed, released)] == ["sup1", "sup2", None]


def test_an_account_closed_while_away_hands_back_to_the_role_queue(rt, clock):
    _, review = _held_review(rt)
    _away(rt, "sup1", "mgr1")
    _set_user(rt, "sup1", active=False)
    clock.set(MIDNIGHT)
    substitutes.apply_due(rt)
    item = tasks.get_task(rt, review.id)
    assert (item.assignee, item.on_behalf_of, item.claimed_at) == (None, None, None)


def test_two_sweeps_at_once_hand_each_task_over_once(rt, clock):
    held = [_held_review(rt)[1] for _ in range(3)]
    _away(rt, "sup1", "rep2", TOMORROW, TOMORROW)
    clock.set(MIDNIGHT)
    start = threading.Barrier(3)
    reports: list = []

    def sweep() -> None:
        start.wait()
        reports.append(substitutes.apply_due(rt))

    threads = [threading.Thread(target=sweep) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.handed_over for r in reports) == 3
    with rt.read() as s:
        events = s.scalars(select(AuditEvent.task_id).where(AuditEvent.action == "substitute")).all()
    assert sorted(events) == sorted(t.id for t in held)


def test_the_worker_pass_runs_the_sweep(rt, clock):
    from workflows import config
    from workflows.cli import _worker_pass

    _, review = _held_review(rt)
    _away(rt, "sup1", "rep2", TOMORROW, TOMORROW)
    clock.set(MIDNIGHT + timedelta(seconds=1))
    _worker_pass(rt, config.SmtpSettings(host=None), "test-worker")
    assert tasks.get_task(rt, review.id).assignee == "rep2"


def test_a_failing_sweep_does_not_stop_the_worker(rt, monkeypatch, caplog):
    from workflows import config
    from workflows.cli import _worker_pass

    def away(*args, **kwargs):
        raise ConnectionError("the database is away")

    monkeypatch.setattr(substitutes, "apply_due", away)
    report, _ = _worker_pass(rt, config.SmtpSettings(host=None), "test-worker")
    assert report is not None  # the timers had their turn
    assert "handing tasks to or back from substitutes failed" in caplog.text


# --- four eyes and role checks ---------------------------------------------------------------------------


def test_four_eyes_binds_the_substitute(rt):
    """rep1 prepared the quote and stands in for sup1: the review is rep1's to hold, not to approve."""
    accounts.create_user(rt, "sup2", "password-1", ["supervisor"], team="east")
    flow, review = _held_review(rt)
    _away(rt, "sup1", "rep1")
    rep1 = _user(rt, "rep1")
    assert tasks.get_task(rt, review.id).assignee == "rep1"
    with pytest.raises(FourEyesViolation, match="rep1 completed 'Prepare quote"):
        tasks.complete(rt, review.id, rep1, approve("supervisor"))
    detail = task_detail.task_detail(rt, review.id, rep1)  # it stays visible, with the reason
    assert detail.may_complete and detail.four_eyes_conflict.startswith("Prepare quote")
    assert not detail.may_override
    # the holder may hand it on, by the normal rules: to someone of the role and team, four eyes checked
    with pytest.raises(InvalidInput, match="wrong role"):
        tasks.reassign(rt, review.id, rep1, "rep2", "not mine to approve")
    tasks.reassign(rt, review.id, rep1, "sup2", "I prepared it")
    tasks.complete(rt, review.id, _user(rt, "sup2"), approve("supervisor"))
    assert "supervisor_review" not in flow.open_specs()


def test_what_the_substitute_did_counts_as_theirs(rt):
    """mgr1 approves the supervisor review on sup1's behalf: the manager review is then not mgr1's to give."""
    flow, review = _held_review(rt, total="30000.00")  # 60,000: the manager reviews too
    _away(rt, "sup1", "mgr1")
    mgr1 = _user(rt, "mgr1")
    tasks.complete(rt, review.id, mgr1, approve("supervisor"))
    manager = flow.task("manager_review")
    with pytest.raises(FourEyesViolation, match="mgr1 completed 'Supervisor review"):
        tasks.complete(rt, manager.id, mgr1, approve("manager"))


def test_standing_in_opens_nothing_else(rt, clock):
    """The substitute acts on the tasks handed to them and on nothing else of the away user's roles."""
    _, held = _held_review(rt)
    other = Flow(rt)
    other.act("prepare_quote", "rep1", quote())
    unclaimed = other.task("supervisor_review")
    away = _away(rt, "sup1", "rep2")
    rep2 = _user(rt, "rep2")
    assert rep2.roles == {"sales_rep"}  # no role came with it
    with pytest.raises(PermissionDenied):
        tasks.claim(rt, unclaimed.id, rep2)
    with pytest.raises(PermissionDenied):
        tasks.complete(rt, unclaimed.id, rep2, approve("supervisor"))
    with pytest.raises(PermissionDenied):
        tasks.list_tasks(rt, rep2, "team")
    with pytest.raises(PermissionDenied):
        task_detail.require_visible(rt, unclaimed.id, rep2)
    with pytest.raises(InvalidInput, match="wrong role"):
        tasks.reassign(rt, held.id, rep2, "rep1", "hand it to a rep")
    with pytest.raises(PermissionDenied):  # reminders and the absences list are for supervisors
        substitutes.who_is_away(rt, rep2)
    # nobody ends, or reads the number of, another person's range
    for name in ("rep2", "mgr1", "admin"):
        with pytest.raises(NotFound):
            substitutes.cancel(rt, _user(rt, name), away.id)
    # the substitute cannot pass the held tasks on by going away themselves (no chains)
    with pytest.raises(InvalidInput) as chained:
        _away(rt, "rep2", "rep1")
    assert chained.value.errors == {"first_day": "you stand in for someone else on some of these days"}
    clock.set(MIDNIGHT)
    substitutes.apply_due(rt)
    with pytest.raises(Conflict):
        tasks.complete(rt, held.id, rep2, approve("supervisor"))


# --- the rules of a range --------------------------------------------------------------------------------


def test_the_rules_of_a_range(rt, clock):
    accounts.create_user(rt, "gone", "password-1", ["supervisor"], team="east")
    _set_user(rt, "gone", active=False)
    accounts.add_user(rt, None, "bot", None, ["supervisor"], team="east", service_account=True)

    def refused(who: str, substitute: str, first=TODAY, last=TODAY, reason="") -> dict[str, str]:
        with pytest.raises(InvalidInput) as err:
            _away(rt, who, substitute, first, last, reason)
        return err.value.errors

    assert refused("sup1", "sup1") == {"substitute": "you cannot stand in for yourself"}
    for nobody in ("gone", "bot", "nobody"):
        assert refused("sup1", nobody) == {"substitute": "no such active person"}
    assert refused("sup1", " ") == {"substitute": "choose a substitute"}
    assert refused("sup1", "mgr1", TOMORROW, TODAY) == {"last_day": "must not be before the first day"}
    assert refused("sup1", "mgr1", TODAY - timedelta(days=3), TODAY - timedelta(days=1)) == {
        "last_day": "this day is over"}
    assert refused("sup1", "mgr1", TODAY, TODAY + timedelta(days=366)) == {"last_day": "at most 366 days"}
    assert refused("sup1", "mgr1", reason="x" * 201) == {"reason": "at most 200 characters"}
    with pytest.raises(InvalidInput) as missing:
        substitutes.create(rt, _user(rt, "sup1"), "mgr1", None, None)
    assert set(missing.value.errors) == {"first_day", "last_day"}

    _away(rt, "sup1", "mgr1", TOMORROW, TOMORROW + timedelta(days=2))
    assert refused("sup1", "rep2", TODAY, TOMORROW) == {"first_day": "you are already away on some of these days"}
    assert refused("rep2", "sup1", TOMORROW + timedelta(days=2), TOMORROW + timedelta(days=5)) == {
        "substitute": "is away on some of these days too"}
    assert refused("mgr1", "rep2", TOMORROW, TOMORROW) == {
        "first_day": "you stand in for someone else on some of these days"}
    # the day after, and someone else standing in for the same colleague's neighbours, are fine
    _away(rt, "sup1", "rep2", TOMORROW + timedelta(days=3), TOMORROW + timedelta(days=3))
    _away(rt, "rep1", "mgr1", TOMORROW, TOMORROW, " 培训 ")
    assert [r.reason for r in substitutes.my_ranges(rt, _user(rt, "rep1")).items] == ["培训"]
    with rt.read() as s:
        assert s.scalar(select(AuditEvent).where(AuditEvent.action == "away_set").limit(1)).chain == "system"


def test_who_is_away_is_for_the_team_above(rt, clock):
    accounts.create_user(rt, "rep_west", "password-1", ["sales_rep"], team="west")
    accounts.create_user(rt, "sup_west", "password-1", ["supervisor"], team="west")
    _held_review(rt)
    _away(rt, "sup1", "mgr1")
    _away(rt, "rep2", "rep1", TOMORROW, TOMORROW)
    _away(rt, "rep_west", "sup_west")
    _away(rt, "legal1", "dir1", TOMORROW, TOMORROW)
    seen = {name: [r.user for r in substitutes.who_is_away(rt, _user(rt, name)).items]
            for name in ("sup1", "mgr1", "dir1", "sup_west")}
    assert seen["mgr1"] == ["sup1", "rep2"] and seen["sup1"] == ["sup1", "rep2"]
    assert seen["sup_west"] == ["rep_west"]
    assert seen["dir1"] == ["sup1", "rep_west", "rep2", "legal1"]  # the soonest first
    page = substitutes.who_is_away(rt, _user(rt, "dir1"), page=2, per_page=3)
    assert (page.total, page.pages, [r.user for r in page.items]) == (4, 2, ["legal1"])
    first = substitutes.who_is_away(rt, _user(rt, "mgr1")).items[0]
    assert (first.substitute, first.held, first.state(clock.now())) == ("mgr1", 1, "active")
    for name in ("rep1", "legal1", "audit1", "admin", "owner1"):
        with pytest.raises(PermissionDenied):
            substitutes.who_is_away(rt, _user(rt, name))
    clock.set(MIDNIGHT + timedelta(days=1))
    assert substitutes.who_is_away(rt, _user(rt, "dir1")).total == 0  # ended ranges are not "away"


def test_every_refusal_of_the_substitutes_service_reads_in_chinese():
    from webapp.messages import localize_message

    assert len(raised_messages("workflows/services/substitutes.py")) >= 14
    assert untranslated("workflows/services/substitutes.py") == []
    assert localize_message("is away on some of these days too", "zh-CN") == "在其中某些日子也不在岗"


# --- the web pages ---------------------------------------------------------------------------------------


def _ranges(rt, username: str) -> list[Substitution]:
    with rt.read() as s:
        return list(s.scalars(select(Substitution).join(User, User.id == Substitution.user_id)
                              .where(User.username == username).order_by(Substitution.id)))


def test_the_away_page_in_both_languages(rt, clock, login):
    flow, review = _held_review(rt)
    sup = login("sup1")
    page = sup.text("/me/away")
    assert "外出与代理人" in page and "尚未认领的任务仍留在角色队列" in page  # the help says what moves
    assert 'value="2026-11-23"' in page and '<option value="rep2"' in page and '<option value="sup1"' not in page
    assert 'href="/me/away"' in page and 'href="/away"' in page  # the navigation, and the team's list

    # without the form's CSRF token nothing is saved
    form = {"substitute": "rep2", "first_day": "2026-11-23", "last_day": "2026-11-23", "reason": "年假"}
    assert sup.client.post("/me/away", data=form).status_code == 400
    assert _ranges(rt, "sup1") == []

    refused = sup.post("/me/away", dict(form, substitute="sup1", last_day="2026-13-01"), page="/me/away")
    assert refused.status_code == 422
    text = refused.get_data(as_text=True)
    assert "外出代理未保存" in text and "请填写日期，例如 2026-11-29" in text and 'value="年假"' in text
    refused = sup.post("/me/away", dict(form, substitute="sup1"), page="/me/away")
    assert refused.status_code == 422 and "不能指定自己为代理人" in refused.get_data(as_text=True)
    assert _ranges(rt, "sup1") == []

    saved = sup.post("/me/away", form, page="/me/away")
    assert saved.status_code == 302 and saved.headers["Location"].endswith("/me/away")
    page = sup.text("/me/away")
    assert "已保存：您外出期间由 rep2 代办您的任务。" in page and "外出中" in page and "我已返回" in page
    assert tasks.get_task(rt, review.id).assignee == "rep2"

    rep2 = login("rep2")
    queue = rep2.text("/tasks")
    assert f'data-task-id="{review.id}"' in queue and "代 sup1 办理" in queue
    task_page = rep2.text(f"/tasks/{review.id}")
    assert "代 sup1 办理" in task_page and 'data-action="complete"' in task_page
    assert "转交代理人" in task_page and "sup1 → rep2 · 代 sup1 办理 · 至 2026年11月23日: 年假" in task_page
    assert "您代理的同事" in rep2.text("/me/away") and 'href="/away"' not in rep2.text("/me/away")
    inbox = rep2.text("/inbox")
    assert f"sup1 外出：由您代其办理合同 {flow.started.business_key} 的任务 主管审核。" in inbox
    assert "原因：年假" in inbox

    # in English; then sup1 is back early
    rep2.post("/language", {"lang": "en"})
    task_page = rep2.text(f"/tasks/{review.id}")
    assert "on behalf of sup1" in task_page and "handed to a substitute" in task_page
    assert "through Nov 23, 2026: 年假" in task_page
    assert "sup1 is away: you hold Supervisor review on" in rep2.text("/inbox")
    [away] = _ranges(rt, "sup1")
    clock.advance(minutes=30)
    back = sup.post(f"/me/away/{away.id}/cancel", {}, page="/me/away")
    assert back.status_code == 302
    assert "已取消。代理人代办的任务已交还给您。" in sup.text("/me/away")
    assert tasks.get_task(rt, review.id).assignee == "sup1"
    rep2.text(f"/tasks/{review.id}", status=403)  # not rep2's any more, nor of rep2's role
    task_page = sup.text(f"/tasks/{review.id}")
    assert "由代理人交还" in task_page and "rep2 → sup1 · 代 sup1 办理至此结束" in task_page
    assert "代 sup1 办理</small>" not in sup.text("/tasks")


def test_only_the_owner_ends_a_range(rt, login):
    """The role test of ``away.cancel`` (tests/test_web_roles.py): everybody else hears 404, whoever they are."""
    away = _away(rt, "rep2", "rep1", TOMORROW, TOMORROW)
    for name, *_ in accounts.DEMO_USERS:
        if name == "rep2":
            continue
        answer = login(name).post(f"/me/away/{away.id}/cancel", {}, page="/me/away")
        assert answer.status_code == 404, name
        assert "rep2" not in answer.get_data(as_text=True) and "rep1" not in answer.get_data(as_text=True)
    assert _ranges(rt, "rep2")[0].cancelled_at is None
    owner = login("rep2")
    assert owner.client.post(f"/me/away/{away.id}/cancel").status_code == 400  # no CSRF token
    assert owner.post(f"/me/away/{away.id}/cancel", {}, page="/me/away").status_code == 302
    assert _ranges(rt, "rep2")[0].cancelled_at is not None
    again = owner.post(f"/me/away/{away.id}/cancel", {}, page="/me/away")
    assert again.status_code == 409 and "该外出代理已结束" in again.get_data(as_text=True)


def test_the_supervisors_see_who_is_away(rt, login):
    _held_review(rt)
    _away(rt, "sup1", "mgr1", reason="出差")
    _away(rt, "rep2", "rep1", TOMORROW, TOMORROW)
    page = login("mgr1").text("/away")
    assert "谁不在岗" in page and 'data-user="sup1"' in page and 'data-user="rep2"' in page
    assert "外出中" in page and "即将开始" in page and "出差" in page
    assert 'href="/me/away"' in page
    assert login("rep1").get("/away").status_code == 403
    accounts.create_user(rt, "sup_west", accounts.DEMO_PASSWORD, ["supervisor"], team="west")
    assert "本团队目前无人外出。" in login("sup_west").text("/away")


def test_a_range_is_always_the_posters_own(rt, login):
    """No form field names whose range it is: extra fields are ignored, the range is the signed-in user's."""
    _, review = _held_review(rt)
    rep2 = login("rep2")
    answer = rep2.post("/me/away", {"substitute": "rep1", "first_day": "2026-11-23", "last_day": "2026-11-23",
                                    "user": "sup1", "user_id": str(_user(rt, "sup1").id)}, page="/me/away")
    assert answer.status_code == 302
    assert [r.user_id for r in _ranges(rt, "rep2")] == [_user(rt, "rep2").id] and _ranges(rt, "sup1") == []
    assert tasks.get_task(rt, review.id).assignee == "sup1"
