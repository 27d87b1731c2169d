"""Customers and ownership (客户归属) and the early warning (客户预警): who owns a customer and why, new customers by
the team's rule, a new deal for an existing customer going to its owner, ownership requests decided by the director
through the ``ownership_dispute`` process, and the flags computed from the records the processes write. Every
record here is made by driving the real processes (no business row is inserted by hand)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from models import AuditEvent, Customer, Instance, Notification, TaskRow
from webapp.messages import localize_message
from workflows import config
from workflows.services import accounts, customers, instances, tasks, timers
from workflows.services.errors import InvalidInput, NotFound, PermissionDenied

from .flow import Flow, approve, quote
from .service_messages import untranslated

ROOT = Path(__file__).resolve().parents[1]
EAST = "华东机械 East China Machinery"  # the customer of tests/flow.py's quote
WANG, LI = "王小明 Wang Xiaoming", "李娜 Li Na"  # rep1, rep2


def user(rt, name):
    return accounts.get_user(rt, name)


def customer_id(rt, name: str) -> int:
    with rt.read() as s:
        return s.scalar(select(Customer.id).where(Customer.name == name))


def history(rt, name: str) -> list[tuple]:
    with rt.read() as s:
        cid = s.scalar(select(Customer.id).where(Customer.name == name))
    return [(h.reason, h.from_name, h.to_name, h.actor_name, h.note)
            for h in customers.customer_page(rt, user(rt, "dir1"), cid).history]


def row(rt, viewer: str, name: str) -> customers.CustomerRow:
    (found,) = [r for r in customers.list_customers(rt, user(rt, viewer), q=name).page.items if r.name == name]
    return found


def owned_by_rep1(rt, name: str = EAST) -> Flow:
    """rep1's first deal with ``name``: a quote submitted makes rep1 its owner."""
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote(customer_name=name))
    return flow


# --- the process --------------------------------------------------------------------------------------------


def test_the_dispute_process_is_deployed_and_clean():
    from workflows.services.deployments import collect_files
    from workflows.studio.checks import check_files

    files = collect_files(ROOT / "bpmn" / "ownership_dispute.bpmn")
    assert {"decide_dispute.schema.json", "ownership_dispute_start.schema.json"} <= set(files)
    assert [str(p) for p in check_files(files, accounts.ROLE_CODES, process_key="ownership_dispute")] == []


# --- ownership from deals -----------------------------------------------------------------------------------


def test_a_quote_for_an_unknown_customer_makes_the_rep_its_owner(rt):
    owned_by_rep1(rt, "新客户 New Customer Ltd")
    found = row(rt, "rep1", "新客户 New Customer Ltd")
    assert (found.owner_username, found.owner_name, found.team) == ("rep1", WANG, "east")
    assert history(rt, "新客户 New Customer Ltd") == [("first_deal", None, WANG, WANG, None)]


def test_another_reps_quote_for_the_customer_is_refused_with_the_owner_named(rt):
    owned_by_rep1(rt)
    other = Flow(rt, starter="rep2")
    with pytest.raises(InvalidInput) as refused:
        other.act("prepare_quote", "rep2", quote(customer_name="华东机械  EAST China Machinery"))
    message = refused.value.errors["customer_name"]
    assert message == (f"the customer '{EAST}' belongs to {WANG}; ask the director for it with an ownership request "
                       "instead of quoting it")
    assert localize_message(message, "zh-CN") == \
        f"客户「{EAST}」归属于 {WANG}；请通过客户归属申请向总监申请，不要直接报价"
    assert other.open_specs() == {"prepare_quote"} and row(rt, "rep1", EAST).owner_username == "rep1"


def test_a_new_deal_for_an_existing_customer_goes_to_its_owner(rt):
    owned_by_rep1(rt)
    started = instances.start_instance(rt, "quote_to_cash", user(rt, "rep2"),
                                       {"customer_name": "华东机械  east CHINA machinery"}, claim_first=True)
    assert started.handed_to == WANG
    (task,) = tasks.open_tasks_of_instance(rt, started.instance_id)
    assert (task.spec_id, task.assignee) == ("prepare_quote", "rep1")
    with rt.read() as s:
        assert s.scalar(select(Instance.team).where(Instance.id == started.instance_id)) == "east"
        event = s.scalar(select(AuditEvent).where(AuditEvent.instance_id == started.instance_id,
                                                  AuditEvent.action == "reassign"))
        assert (event.actor, event.data["to"], event.data["reason"]) == ("rep2", "rep1", "customer owner / 客户归属")
        assert s.scalar(select(AuditEvent.id).where(AuditEvent.instance_id == started.instance_id,
                                                    AuditEvent.action == "claim")) is None
        told = {(n.user_id, n.kind) for n in s.scalars(select(Notification).where(
            Notification.task_id == task.id))}
    assert told == {(user(rt, "rep1").id, "task_reassigned")}  # nobody else hears of a task that has its holder
    tasks.complete(rt, task.id, user(rt, "rep1"), quote())  # the owner quotes it
    assert {t.spec_id for t in tasks.open_tasks_of_instance(rt, started.instance_id)} == {"supervisor_review"}


def test_a_new_deal_for_an_away_owner_goes_to_their_substitute(rt):
    """委托: the owner is away, so their substitute holds the handed deal on their behalf, quotes it for them, and
    the customer stays the owner's."""
    from workflows.services import substitutes

    owned_by_rep1(rt)
    today = rt.clock.now().astimezone(ZoneInfo(rt.business_tz)).date()
    substitutes.create(rt, user(rt, "rep1"), "rep2", today, today, "leave")
    started = instances.start_instance(rt, "quote_to_cash", user(rt, "rep2"),
                                       {"customer_name": "华东机械 East China Machinery"}, claim_first=True)
    (task,) = tasks.open_tasks_of_instance(rt, started.instance_id)
    assert (task.spec_id, task.assignee) == ("prepare_quote", "rep2")
    with rt.read() as s:
        assert s.scalar(select(TaskRow.on_behalf_of_id).where(TaskRow.id == task.id)) == user(rt, "rep1").id
    tasks.complete(rt, task.id, user(rt, "rep2"), quote(customer_name="华东机械 East China Machinery"))
    with rt.read() as s:
        assert s.scalar(select(Customer.owner_id)) == user(rt, "rep1").id


def test_a_deal_goes_to_an_owner_of_another_team_and_is_that_teams(rt):
    accounts.create_user(rt, "rep3", accounts.DEMO_PASSWORD, ["sales_rep"], display_name="West Rep", team="west")
    west = Flow(rt, starter="rep3")
    west.act("prepare_quote", "rep3", quote(customer_name="西部客户 West Customer"))
    started = instances.start_instance(rt, "quote_to_cash", user(rt, "rep1"),
                                       {"customer_name": "西部客户 West Customer"})
    (task,) = tasks.open_tasks_of_instance(rt, started.instance_id)
    assert (started.handed_to, task.assignee) == ("West Rep", "rep3")
    with rt.read() as s:
        assert s.scalar(select(Instance.team).where(Instance.id == started.instance_id)) == "west"


def test_the_owner_or_an_unknown_customer_starts_as_before(rt):
    owned_by_rep1(rt)
    mine = instances.start_instance(rt, "quote_to_cash", user(rt, "rep1"), {"customer_name": EAST}, claim_first=True)
    unknown = instances.start_instance(rt, "quote_to_cash", user(rt, "rep2"), {"customer_name": "Nobody Yet"},
                                       claim_first=True)
    assert mine.handed_to is None and unknown.handed_to is None
    assert [t.assignee for t in tasks.open_tasks_of_instance(rt, mine.instance_id)] == ["rep1"]
    assert [t.assignee for t in tasks.open_tasks_of_instance(rt, unknown.instance_id)] == ["rep2"]


# --- new customers by the team's rule -----------------------------------------------------------------------


def test_round_robin_over_the_teams_active_reps_in_id_order(rt):
    accounts.add_user(rt, None, "api_east", None, ["sales_rep"], team="east", service_account=True)  # not a person
    sup1 = user(rt, "sup1")
    owners = [customers.register_customer(rt, sup1, f"客户 {n}").owner_username for n in range(5)]
    assert owners == ["rep1", "rep2", "rep1", "rep2", "rep1"]
    assert history(rt, "客户 1") == [("round_robin", None, LI, "张伟 Zhang Wei", None)]
    (east,) = customers.team_rules(rt, sup1)
    assert (east.team, east.rule, east.explicit, east.last_assigned_name) == ("east", "round_robin", False, WANG)
    assert east.reps == [("rep1", WANG), ("rep2", LI)] and not east.may_edit


def test_the_rep_on_duty_gets_the_new_customers(rt):
    mgr1 = user(rt, "mgr1")
    rule = customers.set_rule(rt, mgr1, "east", "on_duty", "rep2")
    assert (rule.rule, rule.on_duty_username, rule.explicit, rule.may_edit) == ("on_duty", "rep2", True, True)
    made = [customers.register_customer(rt, user(rt, "dir1"), f"值班客户 {n}", team="east") for n in range(2)]
    assert [(m.owner_username, m.reason, m.team) for m in made] == [("rep2", "on_duty", "east")] * 2
    assert history(rt, "值班客户 0") == [("on_duty", None, LI, "陈静 Chen Jing", None)]
    customers.set_rule(rt, user(rt, "dir1"), "east", "round_robin")
    assert customers.register_customer(rt, user(rt, "sup1"), "轮流客户").owner_username == "rep1"
    with rt.read() as s:
        actions = list(s.scalars(select(AuditEvent.action).where(AuditEvent.action.in_(
            ("assignment_rule", "customer_registered"))).order_by(AuditEvent.id)))
    assert actions == ["assignment_rule", "customer_registered", "customer_registered", "assignment_rule",
                       "customer_registered"]


def test_an_on_duty_rep_who_left_the_team_stops_new_customers_with_a_clear_message(rt):
    customers.set_rule(rt, user(rt, "mgr1"), "east", "on_duty", "rep2")
    accounts.update_user(rt, user(rt, "rep2").id, ["sales_rep"], LI, "west", None, True, user(rt, "admin"))
    with pytest.raises(InvalidInput) as refused:
        customers.register_customer(rt, user(rt, "sup1"), "无人值班")
    assert refused.value.message == ("nobody on duty for the team 'east' is an active sales rep of it; its manager "
                                     "names the rep on duty")


def test_setting_a_rule_is_for_the_teams_managers_and_the_director(rt):
    accounts.create_user(rt, "mgr2", accounts.DEMO_PASSWORD, ["manager"], team="west")
    accounts.create_user(rt, "rep3", accounts.DEMO_PASSWORD, ["sales_rep"], team="west")
    for name in ("sup1", "rep1", "mgr2", "audit1"):
        with pytest.raises(PermissionDenied):
            customers.set_rule(rt, user(rt, name), "east", "round_robin")
    customers.set_rule(rt, user(rt, "mgr2"), "west", "on_duty", "rep3")
    with pytest.raises(InvalidInput) as bad:
        customers.set_rule(rt, user(rt, "mgr1"), "east", "lottery")
    assert bad.value.errors == {"rule": "must be one of: round_robin, on_duty"}
    with pytest.raises(InvalidInput) as bad:
        customers.set_rule(rt, user(rt, "mgr1"), "east", "on_duty", "rep3")
    assert bad.value.errors == {"on_duty": "rep3 is not an active sales rep of the team 'east'"}
    with pytest.raises(InvalidInput) as bad:
        customers.set_rule(rt, user(rt, "mgr1"), "east", "on_duty")
    assert bad.value.errors == {"on_duty": "choose the rep on duty"}
    with pytest.raises(NotFound):
        customers.set_rule(rt, user(rt, "dir1"), "north", "round_robin")
    assert [r.team for r in customers.team_rules(rt, user(rt, "dir1"))] == ["east", "west"]
    assert [r.team for r in customers.team_rules(rt, user(rt, "rep1"))] == ["east"]


def test_a_taken_name_is_refused_naming_its_owner(rt):
    owned_by_rep1(rt)
    with pytest.raises(InvalidInput) as refused:
        customers.register_customer(rt, user(rt, "sup1"), "  华东机械   east CHINA machinery ")
    assert refused.value.message == f"the customer '{EAST}' already exists and belongs to {WANG}"
    assert refused.value.errors == {"name": refused.value.message}
    assert localize_message(refused.value.message, "zh-CN") == f"客户「{EAST}」已存在，归属 {WANG}"
    assert history(rt, EAST) == [("first_deal", None, WANG, WANG, None)]


def test_who_may_register_and_for_which_team(rt):
    with pytest.raises(PermissionDenied):
        customers.register_customer(rt, user(rt, "rep1"), "Rep's own")
    with pytest.raises(PermissionDenied):
        customers.register_customer(rt, user(rt, "sup1"), "Elsewhere", team="west")
    with pytest.raises(InvalidInput) as bad:
        customers.register_customer(rt, user(rt, "dir1"), "No team")
    assert bad.value.errors == {"team": "choose the team the customer goes to"}
    with pytest.raises(InvalidInput) as bad:
        customers.register_customer(rt, user(rt, "dir1"), "Nobody there", team="north")
    assert bad.value.errors == {"team": "the team 'north' has no active sales rep"}
    with pytest.raises(InvalidInput) as bad:
        customers.register_customer(rt, user(rt, "sup1"), "   ")
    assert bad.value.errors == {"name": "enter the customer's name"}
    assert customers.register_customer(rt, user(rt, "mgr1"), "  Spaced   Name ").name == "Spaced Name"


# --- ownership requests (disputes) --------------------------------------------------------------------------


def decide(rt, key: str, decision: str, comment: str) -> None:
    inst = instances.get_instance(rt, key)
    (task,) = tasks.open_tasks_of_instance(rt, inst.id)
    assert (task.spec_id, task.role, task.stage) == ("decide_dispute", "director", "quote")
    tasks.complete(rt, task.id, user(rt, "dir1"), {"dispute_decision": decision, "dispute_comment": comment})


def test_a_request_transferred_by_the_director_moves_the_customer(rt):
    owned_by_rep1(rt)
    cid = customer_id(rt, EAST)
    started = customers.request_ownership(rt, user(rt, "rep2"), cid, "客户指定由我对接 The buyer asked for me")
    assert re.fullmatch(r"D-2026-\d{5}", started.business_key)
    data = instances.instance_data(rt, started.business_key)
    assert (data["customer_name"], data["current_owner"], data["requested_by"]) == (EAST, WANG, LI)
    page = customers.customer_page(rt, user(rt, "rep2"), cid)
    assert page.running_dispute == started.business_key and not page.may_request
    decide(rt, started.business_key, "transfer", "客户书面确认 confirmed in writing")
    view = instances.get_instance(rt, started.business_key)
    assert (view.status, view.end_event) == ("completed", "end_transferred")
    found = row(rt, "rep2", EAST)
    assert (found.owner_username, found.team, found.figures) == ("rep2", "east", True)
    assert history(rt, EAST) == [("first_deal", None, WANG, WANG, None),
                                 ("dispute", WANG, LI, "陈静 Chen Jing", "客户书面确认 confirmed in writing")]
    assert customers.customer_page(rt, user(rt, "rep1"), cid).history[-1].instance_key == started.business_key
    # the new owner quotes it; the former owner is refused now
    with pytest.raises(InvalidInput):
        Flow(rt).act("prepare_quote", "rep1", quote())
    Flow(rt, starter="rep2").act("prepare_quote", "rep2", quote())


def test_a_request_the_director_declines_changes_nothing(rt):
    owned_by_rep1(rt)
    cid = customer_id(rt, EAST)
    started = customers.request_ownership(rt, user(rt, "rep2"), cid, "I met them first")
    decide(rt, started.business_key, "keep", "rep1 has served them for years")
    assert instances.get_instance(rt, started.business_key).end_event == "end_kept"
    assert row(rt, "rep1", EAST).owner_username == "rep1"
    assert history(rt, EAST) == [("first_deal", None, WANG, WANG, None)]
    again = customers.request_ownership(rt, user(rt, "rep2"), cid, "new facts")  # decided: one may ask again
    assert again.business_key != started.business_key


def test_requests_that_are_refused(rt):
    owned_by_rep1(rt)
    cid = customer_id(rt, EAST)
    with pytest.raises(InvalidInput) as mine:
        customers.request_ownership(rt, user(rt, "rep1"), cid, "mine anyway")
    assert mine.value.message == f"the customer '{EAST}' is already yours"
    with pytest.raises(PermissionDenied):
        customers.request_ownership(rt, user(rt, "sup1"), cid, "for my rep")
    with pytest.raises(NotFound):
        customers.request_ownership(rt, user(rt, "rep2"), cid + 1000, "who?")
    with pytest.raises(InvalidInput) as blank:
        customers.request_ownership(rt, user(rt, "rep2"), cid, "   ")
    assert blank.value.errors == {"reason": "give a reason for the request"}
    first = customers.request_ownership(rt, user(rt, "rep2"), cid, "first")
    with pytest.raises(InvalidInput) as twice:
        customers.request_ownership(rt, user(rt, "rep2"), cid, "second")
    assert twice.value.message == (f"a request for the customer '{EAST}' is already waiting for the director's "
                                   f"decision ({first.business_key})")
    # started any other way (API, command line, the start page) the same checks hold, and the owner is read from
    # the records, never from the form
    with pytest.raises(InvalidInput) as unknown:
        instances.start_instance(rt, "ownership_dispute", user(rt, "rep2"),
                                 {"customer_name": "Nobody", "claim_reason": "x"})
    assert unknown.value.errors == {"customer_name": "no customer named 'Nobody'"}
    with pytest.raises(InvalidInput):
        instances.start_instance(rt, "ownership_dispute", user(rt, "rep2"),
                                 {"customer_name": EAST, "claim_reason": "x", "current_owner": "me"})
    with rt.read() as s:
        assert s.scalar(select(Instance.id).where(Instance.process_key == "ownership_dispute",
                                                  Instance.id != first.instance_id)) is None


# --- early warning ------------------------------------------------------------------------------------------


def flag_kinds(rt, viewer: str = "dir1", name: str = EAST) -> dict[str, str]:
    return {f.kind: f.reason for f in row(rt, viewer, name).flags}


def test_overdue_installments_flag_the_customer_in_business_time(rt, clock):
    flow = Flow(rt)
    flow.to_collection()  # 24,000: 7,200 due 2026-12-15, 16,800 due 2027-01-15
    assert flag_kinds(rt) == {}
    clock.set(datetime(2026, 12, 15, 15, 59, tzinfo=UTC))  # 23:59 on the 15th in Shanghai: due today, not late
    assert flag_kinds(rt) == {}
    clock.set(datetime(2026, 12, 15, 16, 1, tzinfo=UTC))  # 00:01 on the 16th in Shanghai
    assert flag_kinds(rt) == {"overdue": "7,200.00 overdue on 1 installment(s), the oldest due 2026-12-15"}
    found = row(rt, "rep1", EAST)
    assert (found.open_contracts, found.outstanding, found.overdue) == (1, Decimal("24000.00"), Decimal("7200.00"))
    assert timers.fire_due_timers(rt).fired == 1
    flow.act("record_payment", "fin1", {"amount_received": "5000.00", "received_on": "2026-12-16",
                                        "payment_reference": "BANK-1"})
    assert flag_kinds(rt) == {"overdue": "2,200.00 overdue on 1 installment(s), the oldest due 2026-12-15"}
    assert customers.flags_of(rt, [customer_id(rt, EAST)])[customer_id(rt, EAST)][0].params["amount"] == \
        Decimal("2200.00")
    flow.act("record_payment", "fin1", {"amount_received": "2200.00", "received_on": "2026-12-17",
                                        "payment_reference": "BANK-2"})
    assert flag_kinds(rt) == {}
    assert row(rt, "rep1", EAST).outstanding == Decimal("16800.00")


def test_complaints_above_the_threshold_flag_the_customer(rt, clock, monkeypatch):
    contract = Flow(rt)
    contract.to_collection()
    for n in range(2):
        Flow(rt, "complaint", starter="svc1", data={
            "contract_key": contract.started.business_key, "customer_name": EAST,
            "complaint_summary": f"问题 {n}", "severity": "medium"})
    assert flag_kinds(rt) == {"complaints": "2 complaints in the last 90 days (warning from 2)"}
    monkeypatch.setenv("LVYUE_WARN_COMPLAINTS", "3")
    assert config.warn_complaints() == 3 and "complaints" not in flag_kinds(rt)
    monkeypatch.delenv("LVYUE_WARN_COMPLAINTS")
    clock.advance(days=91)  # the complaints are older than 90 days now (the installments are late by then)
    assert "complaints" not in flag_kinds(rt)
    page = customers.customer_page(rt, user(rt, "rep1"), customer_id(rt, EAST))
    assert page.complaints_total == 2 and [c.status for c in page.complaints] == ["open", "open"]


def drafted(rt, total: str, quantity: int = 2, name: str = EAST) -> Flow:
    """A contract drafted for ``name`` now: quote, supervisor approval, draft (the contract record is made)."""
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote(total_price=total, quantity=quantity, customer_name=name))
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    amount = Decimal(total) * quantity
    flow.act("draft_contract", "rep1", {"contract_no": f"HT-{flow.id}", "contract_terms": "Standard terms",
                                        "payment_plan": [{"amount": f"{amount:.2f}", "due_date": "2027-12-31"}],
                                        "sign_by": "2027-12-01"})
    return flow


@pytest.mark.parametrize(("later", "flagged"), [("5000.00", True), ("6000.00", False)])
def test_falling_order_volume_flags_the_customer(rt, clock, later, flagged):
    drafted(rt, "12000.00")  # 24,000
    assert "falling" not in flag_kinds(rt), "no earlier window yet"
    clock.advance(days=100)
    drafted(rt, later)  # 10,000 (less than half of 24,000) or 12,000 (exactly half)
    kinds = flag_kinds(rt)
    if flagged:
        assert kinds["falling"] == ("orders of the last 90 days 10,000.00 against 24,000.00 in the 90 days before "
                                    "(-58%)")
    else:
        assert "falling" not in kinds
    clock.advance(days=100)  # no order in the last 90 days, one before: the orders stopped
    assert flag_kinds(rt)["falling"].startswith("orders of the last 90 days 0.00 against ")
    clock.advance(days=100)  # nothing in either window now
    assert "falling" not in flag_kinds(rt)


def test_flagged_customers_for_their_owners_and_managers(rt, clock):
    Flow(rt).to_collection()
    owned_by_rep1(rt, "没有预警 Quiet Co")
    clock.set(datetime(2026, 12, 20, 2, 0, tzinfo=UTC))
    for viewer, expected in (("rep1", [EAST]), ("rep2", []), ("sup1", [EAST]), ("mgr1", [EAST]), ("dir1", [EAST]),
                             ("audit1", [EAST]), ("admin", [EAST])):
        found = customers.flagged_customers(rt, user(rt, viewer))
        assert [r.name for r in found.page.items] == expected, viewer
        assert found.flagged_count == len(expected), viewer
    # a teammate sees who owns it, not its figures
    other = row(rt, "rep2", EAST)
    assert (other.owner_name, other.figures, other.outstanding, other.flags) == (WANG, False, None, [])
    assert customers.customer_page(rt, user(rt, "rep2"), customer_id(rt, EAST)).contracts is None
    mine = customers.list_customers(rt, user(rt, "rep1"), mine=True)
    assert sorted(r.name for r in mine.page.items) == sorted([EAST, "没有预警 Quiet Co"])
    assert customers.list_customers(rt, user(rt, "rep2"), mine=True).page.total == 0
    for outsider in ("legal1", "fin1", "owner1", "svc1"):
        with pytest.raises(PermissionDenied):
            customers.list_customers(rt, user(rt, outsider))


def test_the_customer_page_lists_contracts_with_what_is_owed(rt, clock):
    flow = Flow(rt)
    flow.to_collection()
    drafted(rt, "100.00", quantity=1)
    clock.set(datetime(2026, 12, 20, 2, 0, tzinfo=UTC))
    page = customers.customer_page(rt, user(rt, "sup1"), customer_id(rt, EAST))
    lines = {c.status: c for c in page.contracts.items}
    assert set(lines) == {"delivered", "drafted"}
    assert (lines["delivered"].outstanding, lines["delivered"].overdue) == (Decimal("24000.00"), Decimal("7200.00"))
    assert (lines["drafted"].outstanding, lines["drafted"].overdue) == (None, Decimal("0.00"))
    assert lines["delivered"].signed_on == date(2026, 11, 26)
    assert page.customer.open_contracts == 2 and page.may_request is False and page.may_quote is False


# --- messages -----------------------------------------------------------------------------------------------


def test_every_message_of_the_customer_service_reads_in_chinese():
    assert untranslated("workflows/services/customers.py") == []
    samples = {
        f"the customer '{EAST}' is already yours": f"客户「{EAST}」已归您所有",
        "a request for the customer 'ACME' is already waiting for the director's decision (D-2026-00001)":
            "客户「ACME」的归属申请正在等待总监裁决（D-2026-00001）",
        "only sales reps ask for a customer": "只有销售代表可以申请客户归属",
        # the sentences the service returns from its checks before raising them
        "the customer 'ACME' has no owner yet; quote it and it becomes yours":
            "客户「ACME」尚无归属；直接报价即归您所有",
        "the customer 'ACME' already exists and belongs to 王小明": "客户「ACME」已存在，归属 王小明",
        "enter the customer's name": "请填写客户名称",
        "must have at most 200 characters": "最多 200 个字符",
        "must not contain control characters": "不能包含控制字符",
        "choose the rep on duty": "请选择值班销售",
        "rep3 is not an active sales rep of the team 'east'": "rep3 不是团队「east」的在职销售代表",
        "must be one of: round_robin, on_duty": "必须是以下之一：round_robin, on_duty",
        "no customer named 'ACME'": "没有名为「ACME」的客户",
    }
    for english, chinese in samples.items():
        assert localize_message(english, "zh-CN") == chinese


# --- the web pages ------------------------------------------------------------------------------------------


def test_the_list_shows_owners_to_the_team_and_figures_to_whom_they_belong(rt, login, clock):
    Flow(rt).to_collection()
    clock.set(datetime(2026, 12, 20, 2, 0, tzinfo=UTC))
    page = login("rep1").text("/customers")
    assert EAST in page and WANG in page and "逾期" in page and "¥7,200.00" in page
    assert 'data-count="flagged">1<' in page and 'href="/customers"' in page  # the nav link and the badge
    other = login("rep2").text("/customers?q=east")
    assert EAST in other and WANG in other and "¥7,200.00" not in other
    assert login("rep2").text("/customers?flagged=1").count("data-customer=") == 0
    assert login("sup1").text("/customers?flagged=1").count("data-customer=") == 1
    assert login("legal1").get("/customers").status_code == 403
    assert 'href="/customers"' not in login("legal1").text("/tasks")


def test_register_a_customer_in_the_browser(rt, login):
    sup = login("sup1")
    response = sup.post("/customers", {"name": "浙江精工 Zhejiang Precision"}, page="/customers")
    assert response.status_code == 302
    page = sup.text(response.headers["Location"])
    assert "浙江精工 Zhejiang Precision" in page and WANG in page and "轮流分配" in page
    again = sup.post("/customers", {"name": "浙江精工 ZHEJIANG precision"}, page="/customers")
    assert again.status_code == 422
    assert f"客户「浙江精工 Zhejiang Precision」已存在，归属 {WANG}" in again.get_data(as_text=True)
    assert login("rep1").post("/customers", {"name": "x"}, page="/customers").status_code == 403
    director = login("dir1")
    missing = director.post("/customers", {"name": "总监登记"}, page="/customers")
    assert missing.status_code == 422 and "请选择客户所属团队" in missing.get_data(as_text=True)
    assert director.post("/customers", {"name": "总监登记", "team": "east"}, page="/customers").status_code == 302


def test_request_a_customer_in_the_browser_and_the_director_decides(rt, login):
    owned_by_rep1(rt)
    cid = customer_id(rt, EAST)
    rep2 = login("rep2")
    assert "data-request-form" in rep2.text(f"/customers/{cid}")
    blank = rep2.post(f"/customers/{cid}/request", {"reason": " "}, page=f"/customers/{cid}")
    assert blank.status_code == 422 and "请填写申请理由" in blank.get_data(as_text=True)
    response = rep2.post(f"/customers/{cid}/request", {"reason": "客户要求换人"}, page=f"/customers/{cid}")
    assert response.status_code == 302 and re.search(r"/contracts/D-2026-\d{5}$", response.headers["Location"])
    key = response.headers["Location"].rsplit("/", 1)[1]
    assert "客户归属争议" in rep2.text(response.headers["Location"])  # the request's own page
    assert key in rep2.text(f"/customers/{cid}") and "data-request-form" not in rep2.text(f"/customers/{cid}")
    own = login("rep1").post(f"/customers/{cid}/request", {"reason": "x"}, page=f"/customers/{cid}")
    assert own.status_code == 422 and f"客户「{EAST}」已归您所有" in own.get_data(as_text=True)
    director = login("dir1")
    (task,) = tasks.open_tasks_of_instance(rt, instances.get_instance(rt, key).id)
    page = director.text(f"/tasks/{task.id}")
    assert "客户要求换人" in page and WANG in page and LI in page and "转给申请人" in page
    decide(rt, key, "transfer", "同意")
    page = login("rep2").text(f"/customers/{cid}")
    assert "总监裁决" in page and "同意" in page and key in page
    assert row(rt, "rep2", EAST).owner_username == "rep2"


def test_the_rules_page(rt, login):
    manager = login("mgr1")
    assert "data-rule-form" in manager.text("/customers/rules")
    response = manager.post("/customers/rules", {"team": "east", "rule": "on_duty", "on_duty": "rep2"},
                            page="/customers/rules")
    assert response.status_code == 302
    page = login("rep1").text("/customers/rules")
    assert 'data-rule="on_duty"' in page and LI in page and "data-rule-form" not in page
    bad = manager.post("/customers/rules", {"team": "east", "rule": "on_duty", "on_duty": ""},
                       page="/customers/rules")
    assert bad.status_code == 422 and "请选择值班销售" in bad.get_data(as_text=True)
    assert login("sup1").post("/customers/rules", {"team": "east", "rule": "round_robin"},
                              page="/customers/rules").status_code == 403


def test_a_new_deal_started_in_the_browser_for_someone_elses_customer(rt, login):
    owned_by_rep1(rt)
    cid = customer_id(rt, EAST)
    rep2 = login("rep2")
    assert "New deal" not in rep2.text(f"/customers/{cid}") and "转给归属人" in rep2.text(f"/customers/{cid}")
    response = rep2.post("/start/quote_to_cash", {"customer_name": EAST}, page=f"/customers/{cid}")
    assert response.status_code == 302 and "/contracts/Q-" in response.headers["Location"]
    page = rep2.text(response.headers["Location"])
    assert f"客户 {EAST} 归属 {WANG}，报价已转给 {WANG}" in page
    key = response.headers["Location"].rsplit("/", 1)[1]
    assert [t.assignee for t in tasks.open_tasks_of_instance(rt, instances.get_instance(rt, key).id)] == ["rep1"]
    mine = login("rep1").post("/start/quote_to_cash", {"customer_name": EAST}, page=f"/customers/{cid}")
    assert "/tasks/" in mine.headers["Location"]  # the owner prepares it at once


def test_the_pages_in_english(rt, login, clock):
    Flow(rt).to_collection()
    clock.set(datetime(2026, 12, 20, 2, 0, tzinfo=UTC))
    accounts.set_language(rt, user(rt, "mgr1").id, "en")
    manager = login("mgr1")
    page = manager.text("/customers")
    assert "Customers" in page and "Overdue: ¥7,200.00 on 1 installments, the oldest due" in page
    detail = manager.text(f"/customers/{customer_id(rt, EAST)}")
    assert "Ownership history" in detail and "First deal" in detail
    assert "Round robin" in manager.text("/customers/rules")


def test_a_customer_that_does_not_exist(rt, login):
    assert login("rep1").get("/customers/999999").status_code == 404
    with pytest.raises(NotFound):
        customers.customer_page(rt, user(rt, "rep1"), 999999)


def test_the_pager_of_the_list(rt, login):
    sup1 = user(rt, "sup1")
    for n in range(23):
        customers.register_customer(rt, sup1, f"批量客户 {n:02d}")
    first = customers.list_customers(rt, sup1, per_page=20)
    assert (first.page.total, first.page.pages, len(first.page.items)) == (23, 2, 20)
    page = login("sup1").text("/customers?page=2")
    assert page.count("data-customer=") == 3 and "批量客户 22" in page
    assert timedelta(days=90) == customers.WINDOW


VIEWERS = {"rep1", "rep2", "sup1", "mgr1", "dir1", "audit1", "admin"}


def test_who_may_open_the_customer_pages(rt, login):
    """The role test of the customer routes (the authorization matrix checks every route and caller too)."""
    owned_by_rep1(rt)
    cid = customer_id(rt, EAST)
    for name, *_ in accounts.DEMO_USERS:
        web = login(name)
        expected = 200 if name in VIEWERS else 403
        for path in ("/customers", f"/customers/{cid}", "/customers/rules", "/customers?flagged=1&mine=1"):
            assert web.get(path).status_code == expected, (name, path)
        assert web.post("/customers", {"name": f"by {name}"}, page="/status").status_code == \
            (302 if name in {"sup1", "mgr1"} else 422 if name == "dir1" else 403), name
        assert web.post("/customers/rules", {"team": "east", "rule": "round_robin"}, page="/status").status_code == \
            (302 if name in {"mgr1", "dir1"} else 403), name
        assert web.post(f"/customers/{cid}/request", {"reason": "x"}, page="/status").status_code == \
            ({"rep1": 422, "rep2": 302}.get(name, 403)), name


def test_the_start_page_offers_the_request_with_the_same_checks(rt, login):
    from .web import form_fields

    owned_by_rep1(rt)
    rep2 = login("rep2")
    assert "客户归属争议" in rep2.text("/start")
    own = login("rep1").post("/start/ownership_dispute", form_fields({"customer_name": EAST, "claim_reason": "x"}),
                             page="/start")
    assert own.status_code == 422 and f"客户「{EAST}」已归您所有" in own.get_data(as_text=True)
    response = rep2.post("/start/ownership_dispute",
                         form_fields({"customer_name": "华东机械 EAST China Machinery", "claim_reason": "老客户介绍"}),
                         page="/start")
    assert response.status_code == 302 and "/contracts/D-" in response.headers["Location"]
    data = instances.instance_data(rt, response.headers["Location"].rsplit("/", 1)[1])
    assert (data["customer_name"], data["current_owner"], data["requested_by"]) == (EAST, WANG, LI)
