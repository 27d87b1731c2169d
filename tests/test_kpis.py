"""The dashboard's numbers (services/kpis.py) against a small world whose every number is computed by hand below:
five contracts of three reps in two teams with installments due in 2026 Q3 and Q4 and payments on time, late,
partial and over an installment; five quotes going through approval in December with reviews of known length;
four complaints. Every step runs through the service layer under the test clock, timers fire through the worker
service a second after they fall due, and the dashboard is read on 2026-12-20 at 12:00 in Shanghai. The same
assertions run on SQLite and on PostgreSQL, so both give identical numbers.

Times below are Shanghai times (the business time zone).

Contracts (all quoted, approved, signed and delivered on 07-01 10:00; the supervisor alone approves them):
  C1 rep1  Alpha    15,000  #1 10,000 due 10-15 (paid 10-15 in full)   #2 5,000 due 11-20 (2,000 paid 11-20)
  C2 rep1  Beta     20,000  #1  8,000 due 08-01 (nothing paid)         #2 12,000 due 2027-01-31
  C3 rep2  Gamma    30,000  #1  6,000 due 10-10 (paid 10-20, late)     #2 9,000 due 11-19 (4,000 paid 11-24)
                            #3 15,000 due 12-31
  C4 rep_w Epsilon  10,000  #1 10,000 due 10-01 (4,000 paid 10-05)
  C5 rep2  Delta     5,000  #1  5,000 due 11-10 (paid 11-10 in full: the contract is fulfilled)
Quotes in December:
  Q-A rep1  24,000  submitted 12-01 12:00, supervisor approves 18:00 (6 h); draft_contract open since 18:00
  Q-B rep2   8,000  submitted 12-02 10:00, sent back 12-03 16:00 (30 h: late), resubmitted 12-04 10:00 (7,500),
                    rejected 22:00 (12 h)
  Q-C rep_w 60,000  submitted 12-10 10:00, supervisor (west) 14:00 (4 h), manager (west) 12-11 20:00 (30 h: late);
                    draft_contract open since 12-11 20:00
  Q-D rep1   3,000  submitted 12-18 10:00; supervisor_review open (due 12-19 10:00)
  Q-E rep2          started 12-19 10:00; prepare_quote open (due 12-21 10:00)
Complaints (started by svc1):
  K4 on C2 high,   opened and closed 09-10 10:00, satisfaction 1 (Q3)
  K1 on C1 high,   opened 11-02 10:00, closed 11-06 10:00, satisfaction 4
  K2 on C3 medium, opened 12-05 10:00, declined 11:00, closed 12-06 10:00, satisfaction 2
  K3 on C4 low,    opened 12-15 10:00, open (accept_complaint due 12-16 10:00)
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from models import TaskRow
from webapp.messages import localize_message
from workflows.services import accounts, kpis, timers
from workflows.services.errors import InvalidInput, PermissionDenied

from .conftest import seeded_runtime
from .flow import Flow, approve

SH = ZoneInfo("Asia/Shanghai")
TODAY = date(2026, 12, 20)
Q4 = kpis.Period("quarter", date(2026, 10, 1), date(2026, 12, 31))
Q3 = kpis.Period("quarter", date(2026, 7, 1), date(2026, 9, 30))
D = Decimal


def sh(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=SH)


NOW = sh(12, 20, 12)
REP1, REP2, REP_W = "王小明 Wang Xiaoming", "李娜 Li Na", "周西 Zhou Xi"
SUPERVISOR_REVIEW, MANAGER_REVIEW = "Supervisor review / 主管审核", "Manager review / 经理审批"


class World:
    def __init__(self, rt) -> None:
        self.rt = rt
        self.clock = rt.clock
        self.flows: dict[str, Flow] = {}

    def at(self, when: datetime) -> None:
        assert when >= self.clock.now(), "the world's clock only moves forward"
        self.clock.set(when)

    def fire(self, due: datetime, expected: int) -> None:
        """The worker a second after ``due``: exactly ``expected`` timers fire."""
        self.at(due + timedelta(seconds=1))
        report = timers.fire_due_timers(self.rt)
        assert (report.fired, report.errors) == (expected, 0), (due, report)

    def contract(self, key: str, rep: str, sup: str, mgr: str, customer: str, amount: str,
                 plan: list[tuple[str, str]]) -> Flow:
        flow = Flow(self.rt, starter=rep)
        flow.act("prepare_quote", rep, {
            "customer_name": customer, "customer_risk": "low", "discount_pct": 0, "payment_terms": "by plan",
            "delivery_date": "2026-07-20", "line_items": [{"product": "Machine", "quantity": 1, "unit_price": amount}]})
        flow.act("supervisor_review", sup, approve("supervisor"))
        flow.act("draft_contract", rep, {"contract_no": f"HT-{key}", "contract_terms": "Standard terms",
                                         "sign_by": "2026-07-10",
                                         "payment_plan": [{"amount": a, "due_date": d} for a, d in plan]})
        flow.act("legal_contract_check", "legal1", {"contract_check_decision": "approve"})
        flow.act("sign_company", mgr, {"company_signatory": "经理", "company_signed_on": "2026-07-01"})
        flow.act("customer_signature", rep, flow.signed(rep, customer_signed_on="2026-07-01"))
        flow.act("file_contract", "legal1", {"filing_no": f"BA-{key}", "filed_on": "2026-07-01"})
        flow.act("execute_delivery", "dlv1", {"delivered_on": "2026-07-01"})
        flow.act("customer_acceptance", rep, flow.accepted(rep))
        flow.act("service_onboarding", "svc1", {"service_contact": "吴芳", "warranty_until": "2027-07-01"})
        assert flow.open_specs() == set(), "collection waits for the first installment"
        self.flows[key] = flow
        return flow

    def quote(self, key: str, rep: str, customer: str = "", quantity: int = 0, price: str = "12000.00") -> Flow:
        """Start a quote; with a quantity, the rep submits it at once."""
        flow = Flow(self.rt, starter=rep)
        if quantity:
            flow.act("prepare_quote", rep, self.quote_data(customer, quantity, price))
        self.flows[key] = flow
        return flow

    @staticmethod
    def quote_data(customer: str, quantity: int, price: str = "12000.00") -> dict:
        return {"customer_name": customer, "customer_risk": "low", "discount_pct": 0, "payment_terms": "30/70",
                "delivery_date": "2027-02-01",
                "line_items": [{"product": "CNC lathe", "quantity": quantity, "unit_price": price}]}

    def pay(self, key: str, amount: str, when: datetime) -> None:
        self.at(when)
        self.flows[key].act("record_payment", "fin1", {"amount_received": amount,
                                                       "received_on": when.date().isoformat(),
                                                       "payment_reference": f"BANK-{key}-{when:%m%d}"})

    def escalation_done(self, key: str, manager: str, when: datetime) -> None:
        self.at(when)
        self.flows[key].act("overdue_escalation", manager, {"escalation_action": "called the customer",
                                                            "next_contact_on": when.date().isoformat()})

    def complaint(self, key: str, contract: str, severity: str, when: datetime) -> Flow:
        self.at(when)
        customer = self.flows[contract].data()["customer_name"]
        flow = Flow(self.rt, "complaint", starter="svc1", data={
            "contract_key": self.flows[contract].started.business_key, "customer_name": customer,
            "complaint_summary": "noise", "severity": severity})
        self.flows[key] = flow
        return flow


def build(rt) -> World:
    w = World(rt)
    w.clock.set(sh(7, 1, 9))  # the world begins before the template's clock
    accounts.create_user(rt, "rep_w", "password-1", ["sales_rep"], display_name=REP_W, team="west")
    accounts.create_user(rt, "sup_w", "password-1", ["supervisor"], display_name="西主管 West Supervisor", team="west")
    accounts.create_user(rt, "mgr_w", "password-1", ["manager"], display_name="西经理 West Manager", team="west")

    w.at(sh(7, 1, 10))
    w.contract("C1", "rep1", "sup1", "mgr1", "Alpha 甲公司", "15000.00", [("10000.00", "2026-10-15"),
                                                                       ("5000.00", "2026-11-20")])
    w.contract("C2", "rep1", "sup1", "mgr1", "Beta 乙公司", "20000.00", [("8000.00", "2026-08-01"),
                                                                      ("12000.00", "2027-01-31")])
    w.contract("C3", "rep2", "sup1", "mgr1", "Gamma 丙公司", "30000.00", [("6000.00", "2026-10-10"),
                                                                       ("9000.00", "2026-11-19"),
                                                                       ("15000.00", "2026-12-31")])
    w.contract("C4", "rep_w", "sup_w", "mgr_w", "Epsilon 戊公司", "10000.00", [("10000.00", "2026-10-01")])
    w.contract("C5", "rep2", "sup1", "mgr1", "Delta 丁公司", "5000.00", [("5000.00", "2026-11-10")])

    w.fire(sh(8, 1), 1)  # C2: record_payment #1 (due 08-08 00:00)
    w.fire(sh(8, 8), 1)  # C2: escalation (due 08-10 00:00:01)
    w.escalation_done("C2", "mgr1", sh(8, 9, 10))
    k4 = w.complaint("K4", "C2", "high", sh(9, 10, 10))  # Q3: all in one go
    k4.act("accept_complaint", "svc1", {"acceptance_decision": "accept", "category": "quality"})
    k4.act("investigate", "svc1", {"root_cause": "x", "findings": "y"})
    k4.act("resolve", "svc1", {"resolution": "z", "resolved_on": "2026-09-10"})
    k4.act("feedback_to_customer", "svc1", {"feedback_summary": "done", "customer_reached": True})
    k4.act("satisfaction_survey", "rep1", {"satisfaction": 1})

    w.fire(sh(10, 1), 1)  # C4: record_payment #1 (due 10-08 00:00)
    w.pay("C4", "4000.00", sh(10, 5, 10))  # partial: record_payment #2 at once (due 10-08 00:00)
    w.fire(sh(10, 8), 1)  # C4: escalation (due 10-10 00:00:01)
    w.escalation_done("C4", "mgr_w", sh(10, 9, 10))
    w.fire(sh(10, 10), 1)  # C3: record_payment #1 (due 10-17 00:00)
    w.fire(sh(10, 15), 1)  # C1: record_payment #1 (due 10-22 00:00)
    w.pay("C1", "10000.00", sh(10, 15, 10))
    w.fire(sh(10, 17), 1)  # C3: escalation #1 (due 10-19 00:00:01)
    w.escalation_done("C3", "mgr1", sh(10, 18, 10))
    w.pay("C3", "6000.00", sh(10, 20, 10))  # late: due 10-17

    k1 = w.complaint("K1", "C1", "high", sh(11, 2, 10))
    w.at(sh(11, 2, 12))
    k1.act("accept_complaint", "svc1", {"acceptance_decision": "accept", "category": "quality"})
    w.at(sh(11, 3, 10))
    k1.act("investigate", "svc1", {"root_cause": "bearing", "findings": "worn"})
    w.at(sh(11, 5, 10))
    k1.act("resolve", "svc1", {"resolution": "replaced", "resolved_on": "2026-11-05"})
    w.at(sh(11, 5, 12))
    k1.act("feedback_to_customer", "svc1", {"feedback_summary": "fixed", "customer_reached": True})
    w.at(sh(11, 6, 10))
    k1.act("satisfaction_survey", "rep1", {"satisfaction": 4})

    w.fire(sh(11, 10), 1)  # C5: record_payment (due 11-17 00:00)
    w.pay("C5", "5000.00", sh(11, 10, 10, 0, 1))  # in full, ten hours after it opened: C5 is fulfilled
    w.fire(sh(11, 19), 1)  # C3: record_payment #2 (due 11-26 00:00)
    w.fire(sh(11, 20), 1)  # C1: record_payment #2 (due 11-27 00:00)
    w.pay("C1", "2000.00", sh(11, 20, 10))  # partial: record_payment #3 (due 11-27 00:00)
    w.pay("C3", "4000.00", sh(11, 24, 10))  # partial: record_payment #3 (due 11-26 00:00)
    w.fire(sh(11, 26), 1)  # C3: escalation #2 (due 11-28 00:00:01), left open
    w.fire(sh(11, 27), 1)  # C1: escalation (due 11-29 00:00:01)
    w.escalation_done("C1", "mgr1", sh(12, 1, 9))  # late

    w.at(sh(12, 1, 10))
    qa = w.quote("Q-A", "rep1")
    w.at(sh(12, 1, 12))
    qa.act("prepare_quote", "rep1", w.quote_data("Alpha 甲公司", 2))  # 24,000
    w.at(sh(12, 1, 18))
    qa.act("supervisor_review", "sup1", approve("supervisor"))
    w.at(sh(12, 2, 10))
    qb = w.quote("Q-B", "rep2", "Zeta 己公司", 1, "8000.00")
    w.at(sh(12, 3, 16))
    qb.act("supervisor_review", "sup1", {"supervisor_decision": "send_back", "supervisor_comment": "too high"})
    w.at(sh(12, 4, 10))
    qb.act("prepare_quote", "rep2", w.quote_data("Zeta 己公司", 1, "7500.00"))
    w.at(sh(12, 4, 22))
    qb.act("supervisor_review", "sup1", {"supervisor_decision": "reject", "supervisor_comment": "no margin"})

    k2 = w.complaint("K2", "C3", "medium", sh(12, 5, 10))
    w.at(sh(12, 5, 11))
    k2.act("accept_complaint", "svc1", {"acceptance_decision": "decline", "category": "billing",
                                        "acceptance_comment": "not a defect"})
    w.at(sh(12, 5, 15))
    k2.act("feedback_to_customer", "svc1", {"feedback_summary": "explained", "customer_reached": True})
    w.at(sh(12, 6, 10))
    k2.act("satisfaction_survey", "rep2", {"satisfaction": 2})

    w.at(sh(12, 10, 10))
    qc = w.quote("Q-C", "rep_w", "Eta 庚公司", 5)  # 60,000: the manager reviews too
    w.at(sh(12, 10, 14))
    qc.act("supervisor_review", "sup_w", approve("supervisor"))
    w.at(sh(12, 11, 20))
    qc.act("manager_review", "mgr_w", approve("manager"))
    assert qc.open_specs() == {"draft_contract"}
    w.complaint("K3", "C4", "low", sh(12, 15, 10))
    w.at(sh(12, 18, 10))
    w.quote("Q-D", "rep1", "Theta 辛公司", 1, "3000.00")
    w.at(sh(12, 19, 10))
    w.quote("Q-E", "rep2")
    w.at(NOW)
    assert timers.fire_due_timers(rt).fired == 0
    return w


@pytest.fixture(scope="module")
def world(databases):
    with seeded_runtime(databases) as rt:
        yield build(rt)


def _user(rt, name: str):
    return accounts.get_user(rt, name)


def _rates(rates: list[kpis.Rate]) -> list[tuple[str, Decimal, Decimal, float | None]]:
    return [(r.key, r.due, r.collected, r.rate) for r in rates]


def _board(world, name: str, period: kpis.Period = Q4, **kw) -> kpis.Dashboard:
    world.clock.set(NOW)
    return kpis.dashboard(world.rt, _user(world.rt, name), period, **kw)


# --- the world is what the docstring says -------------------------------------------------------------------


def test_the_world_is_as_described(world):
    rt = world.rt
    assert world.flows["C5"].view().end_event == "end_fulfilled"
    assert world.flows["Q-B"].view().end_event == "end_rejected"
    with rt.read() as s:
        rows = s.execute(select(TaskRow.spec_id, TaskRow.status, TaskRow.created_at, TaskRow.due_at,
                                TaskRow.completed_at).where(TaskRow.instance_id == world.flows["C3"].id,
                                                            TaskRow.stage == "collection")
                         .order_by(TaskRow.id)).all()
    assert [tuple(r) for r in rows] == [
        ("record_payment", "completed", sh(10, 10, 0, 0, 1), sh(10, 17), sh(10, 20, 10)),
        ("overdue_escalation", "completed", sh(10, 17, 0, 0, 1), sh(10, 19, 0, 0, 1), sh(10, 18, 10)),
        ("record_payment", "completed", sh(11, 19, 0, 0, 1), sh(11, 26), sh(11, 24, 10)),
        ("record_payment", "open", sh(11, 24, 10), sh(11, 26), None),
        ("overdue_escalation", "open", sh(11, 26, 0, 0, 1), sh(11, 28, 0, 0, 1), None)]


# --- 回款率 -------------------------------------------------------------------------------------------------


def test_collection_rate_per_rep_team_and_total(world):
    board = _board(world, "dir1")
    assert board.today == TODAY and board.period == Q4
    # installments due 2026-10-01 … 2026-12-20 (today), what they have received so far:
    #   rep1:  C1 #1 10,000 (10,000) + C1 #2 5,000 (2,000)                       = 15,000 due, 12,000 → 0.8
    #   rep2:  C3 #1 6,000 (6,000) + C3 #2 9,000 (4,000) + C5 5,000 (5,000)      = 20,000 due, 15,000 → 0.75
    #          (C3 #3 falls due 12-31, after today: not yet counted)
    #   rep_w: C4 #1 10,000 (4,000)                                              = 10,000 due,  4,000 → 0.4
    #   C2 has nothing due in Q4 (#1 08-01 is Q3, #2 2027-01-31)
    #   total 45,000 due, 31,000 collected → 31/45; east 35,000 / 27,000 → 27/35; west 0.4
    assert (board.collection_total.due, board.collection_total.collected) == (D("45000.00"), D("31000.00"))
    assert board.collection_total.rate == pytest.approx(31 / 45)
    assert _rates(board.collection_by_rep) == [(REP1, D("15000.00"), D("12000.00"), 0.8),
                                               (REP2, D("20000.00"), D("15000.00"), 0.75),
                                               (REP_W, D("10000.00"), D("4000.00"), 0.4)]
    assert _rates(board.collection_by_team) == [("east", D("35000.00"), D("27000.00"), pytest.approx(27 / 35)),
                                                ("west", D("10000.00"), D("4000.00"), 0.4)]


def test_collection_rate_of_the_quarter_before_and_of_a_custom_range(world):
    # Q3: only C2 #1, 8,000 due 08-01, nothing received → 0.0
    q3 = _board(world, "dir1", kpis.period_of("quarter", TODAY, offset=-1))
    assert q3.period == Q3
    assert (q3.collection_total.due, q3.collection_total.collected, q3.collection_total.rate) == (
        D("8000.00"), D("0.00"), 0.0)
    assert _rates(q3.collection_by_rep) == [(REP1, D("8000.00"), D("0.00"), 0.0)]
    # November: C5 5,000 (5,000) + C3 #2 9,000 (4,000) + C1 #2 5,000 (2,000) = 19,000 due, 11,000 → 11/19
    november = _board(world, "dir1", kpis.period_of("custom", TODAY, "2026-11-01", "2026-11-30"))
    assert (november.collection_total.due, november.collection_total.collected) == (D("19000.00"), D("11000.00"))
    assert _rates(november.collection_by_rep) == [(REP2, D("14000.00"), D("9000.00"), pytest.approx(9 / 14)),
                                                  (REP1, D("5000.00"), D("2000.00"), 0.4)]
    # Q1 2027 has not begun: nothing due up to today, no rate (not 0)
    ahead = _board(world, "dir1", kpis.period_of("quarter", TODAY, offset=1))
    assert (ahead.collection_total.due, ahead.collection_total.rate, ahead.collection_by_rep) == (D("0.00"), None, [])


# --- overdue ------------------------------------------------------------------------------------------------


def test_overdue_by_age(world):
    board = _board(world, "dir1")
    # unpaid parts of installments due before today (12-20), by age in days since the due date:
    #   C1 #2  5,000 − 2,000 = 3,000, due 11-20 → 30 days  → 1–30  (the edge of the bucket)
    #   C3 #2  9,000 − 4,000 = 5,000, due 11-19 → 31 days  → 31–60 (the other side of it)
    #   C4 #1 10,000 − 4,000 = 6,000, due 10-01 → 80 days  → 61–90
    #   C2 #1  8,000 − 0     = 8,000, due 08-01 → 141 days → >90
    #   (C5 is fulfilled; C3 #3 and C2 #2 are not due yet)   total 22,000
    assert board.overdue_by_age == [("1–30", D("3000.00"), 1), ("31–60", D("5000.00"), 1),
                                    ("61–90", D("6000.00"), 1), (">90", D("8000.00"), 1)]
    assert board.overdue_total == D("22000.00")


def test_overdue_contracts_most_overdue_first_with_their_reps(world):
    world.clock.set(NOW)
    page = kpis.overdue_contracts(world.rt, _user(world.rt, "dir1"))
    keys = {k: f.started.business_key for k, f in world.flows.items()}
    assert (page.total, page.page, page.pages) == (4, 1, 1)
    assert [(r.business_key, r.contract_no, r.customer, r.rep, r.team, r.overdue, r.oldest_due, r.days)
            for r in page.items] == [
        (keys["C2"], "HT-C2", "Beta 乙公司", REP1, "east", D("8000.00"), date(2026, 8, 1), 141),
        (keys["C4"], "HT-C4", "Epsilon 戊公司", REP_W, "west", D("6000.00"), date(2026, 10, 1), 80),
        (keys["C3"], "HT-C3", "Gamma 丙公司", REP2, "east", D("5000.00"), date(2026, 11, 19), 31),
        (keys["C1"], "HT-C1", "Alpha 甲公司", REP1, "east", D("3000.00"), date(2026, 11, 20), 30)]
    assert kpis.overdue_contracts(world.rt, _user(world.rt, "dir1"), page=2).items == []


# --- pipeline, approvals, cycle time, SLA -------------------------------------------------------------------


def test_pipeline_by_stage(world):
    board = _board(world, "dir1")
    # running quote-to-cash contracts: Q-E quote (no amount yet); Q-D approval 3,000; Q-A 24,000 + Q-C 60,000 in
    # contract; C1 15,000 + C2 20,000 + C3 30,000 + C4 10,000 in collection. C5 (fulfilled) and Q-B (rejected) ended.
    assert board.pipeline == [("quote", 1, D("0.00")), ("approval", 1, D("3000.00")),
                              ("contract", 2, D("84000.00")), ("collection", 4, D("75000.00"))]


def test_approval_turnaround(world):
    board = _board(world, "dir1")
    # reviews completed in Q4, from opening to completion:
    #   supervisor_review: Q-A 6 h, Q-B 30 h and 12 h, Q-C 4 h → 4 reviews, 52 / 4 = 13 h
    #   manager_review:    Q-C 30 h (12-10 14:00 → 12-11 20:00)
    #   (the contracts' reviews of 07-01 are Q3's; Q-D's review is still open)
    assert board.turnaround == [(MANAGER_REVIEW, 1, pytest.approx(30.0)),
                                (SUPERVISOR_REVIEW, 4, pytest.approx(13.0))]
    q3 = _board(world, "dir1", Q3)
    # Q3: the five contracts' supervisor reviews, each done in the minute it opened (07-01 10:00)
    assert q3.turnaround == [(SUPERVISOR_REVIEW, 5, pytest.approx(0.0))]


def test_cycle_time_per_stage(world):
    board = _board(world, "dir1")
    # per contract, the first task of the stage opening → the last one completing, stages ended in Q4:
    #   quote:       Q-A 2 h (10:00 → 12:00), Q-B 48 h (12-02 10:00 → 12-04 10:00, the rework included),
    #                Q-C 0, Q-D 0                                            → 4, 50 h / 4 = 12.5 h = 25/48 d
    #   approval:    Q-A 6 h, Q-B 60 h (12-02 10:00 → 12-04 22:00), Q-C 34 h (12-10 10:00 → 12-11 20:00)
    #                                                                        → 3, 100 h / 3 = 25/18 d
    #   contract, delivery: ended on 07-01 (Q3) or still open (Q-A, Q-C)
    #   collection:  C5 10 h (11-10 00:00:01 → 10:00:01); C1–C4 still collecting → 1, 5/12 d
    #   after_sales: K1 4 d (11-02 10:00 → 11-06 10:00), K2 1 d → 2, 2.5 d (the contracts' onboarding was 07-01)
    assert [(stage, n) for stage, n, _ in board.cycle_time] == [("quote", 4), ("approval", 3), ("collection", 1),
                                                                 ("after_sales", 2)]
    assert [days for _, _, days in board.cycle_time] == [pytest.approx(25 / 48), pytest.approx(25 / 18),
                                                         pytest.approx(5 / 12), pytest.approx(2.5)]


def test_sla_breaches(world):
    board = _board(world, "dir1")
    # (stage, tasks with a due time completed in Q4, of them completed after it, open now and past it)
    #   quote:       Q-A, Q-B ×2, Q-C, Q-D prepared in time; Q-E open, due tomorrow          → 5, 0, 0
    #   approval:    Q-B's first review (30 h of 24) and Q-C's manager (30 h of 24) late;
    #                Q-D's review open since 12-18 10:00, due 12-19 10:00                       → 5, 2, 1
    #   contract:    none completed in Q4; Q-A's (due 12-04) and Q-C's (due 12-14) drafts open → 0, 0, 2
    #   collection:  completed: C4 payment 10-05, C4 escalation 10-09, C1 payments 10-15 and 11-20, C3 escalation
    #                10-18, C3 payment 10-20 (due 10-17: late), C5 payment 11-10, C3 payment 11-24, C1 escalation
    #                12-01 (due 11-29: late) → 9, 2; open past due: the payments of C2 (since 08-08), C4 (10-08),
    #                C3 (11-26), C1 (11-27) and C3's second escalation (11-28)                   → 9, 2, 5
    #   after_sales: K1's five and K2's three tasks in time; K3's acceptance open since 12-16 → 8, 0, 1
    assert board.sla == [("quote", 5, 0, 0), ("approval", 5, 2, 1), ("contract", 0, 0, 2),
                         ("collection", 9, 2, 5), ("after_sales", 8, 0, 1)]


def test_complaints_and_satisfaction(world):
    board = _board(world, "dir1")
    # opened in Q4: K1 high, K2 medium, K3 low (K4 was Q3); surveys of complaints closed in Q4: 4 and 2 → 3.0
    assert board.complaints == [("low", 1), ("medium", 1), ("high", 1)]
    assert board.satisfaction == (2, pytest.approx(3.0))
    assert sorted(board.complaints_by_rep) == sorted([(REP1, 1), (REP2, 1), (REP_W, 1)])
    assert board.complaints_by_rep == sorted(board.complaints_by_rep, key=lambda r: (-r[1], r[0]))
    q3 = _board(world, "dir1", Q3)
    assert (q3.complaints, q3.satisfaction, q3.complaints_by_rep) == (
        [("low", 0), ("medium", 0), ("high", 1)], (1, pytest.approx(1.0)), [(REP1, 1)])


# --- who sees what ------------------------------------------------------------------------------------------


def test_a_rep_sees_only_their_own_numbers_whatever_they_ask_for(world):
    rt = world.rt
    rep1, rep2 = _user(rt, "rep1"), _user(rt, "rep2")
    assert kpis.scope_for(rep1) == kpis.Scope("east", rep1.id, True, team_fixed=True)
    assert kpis.scope_for(rep1, team="west", rep_id=rep2.id) == kpis.Scope("east", rep1.id, True, team_fixed=True)
    board = _board(world, "rep1", team="west", rep_id=rep2.id)
    assert board.scope == kpis.Scope("east", rep1.id, True, team_fixed=True)
    # C1 only in Q4: 15,000 due, 12,000 collected
    assert _rates([board.collection_total]) == [("total", D("15000.00"), D("12000.00"), 0.8)]
    assert _rates(board.collection_by_rep) == [(REP1, D("15000.00"), D("12000.00"), 0.8)]
    # C1 #2 3,000 (30 days), C2 #1 8,000 (141 days)
    assert board.overdue_by_age == [("1–30", D("3000.00"), 1), ("31–60", D("0.00"), 0),
                                    ("61–90", D("0.00"), 0), (">90", D("8000.00"), 1)]
    assert board.overdue_total == D("11000.00")
    assert board.pipeline == [("approval", 1, D("3000.00")), ("contract", 1, D("24000.00")),
                              ("collection", 2, D("35000.00"))]
    assert board.turnaround == [(SUPERVISOR_REVIEW, 1, pytest.approx(6.0))]  # Q-A
    # quote: Q-A 2 h, Q-D 0 → 1 h = 1/24 d; approval: Q-A 6 h = 0.25 d; C1 and C2 still collecting
    assert [(st, n) for st, n, _ in board.cycle_time] == [("quote", 2), ("approval", 1)]
    assert [d for _, _, d in board.cycle_time] == [pytest.approx(1 / 24), pytest.approx(0.25)]
    # collection: C1's payments 10-15, 11-20 and its late escalation; open: C2's payment, C1's payment
    assert board.sla == [("quote", 2, 0, 0), ("approval", 1, 0, 1), ("contract", 0, 0, 1), ("collection", 3, 1, 2)]
    assert (board.complaints, board.satisfaction) == ([("low", 0), ("medium", 0), ("high", 1)],
                                                      (1, pytest.approx(4.0)))
    assert [r.business_key for r in kpis.overdue_contracts(rt, rep1, team="west", rep_id=rep2.id).items] == [
        world.flows["C2"].started.business_key, world.flows["C1"].started.business_key]


def test_a_supervisor_sees_the_team(world):
    rt = world.rt
    sup = _user(rt, "sup1")
    assert kpis.scope_for(sup, team="west") == kpis.Scope("east", None, False, team_fixed=True)
    board = _board(world, "sup1", team="west")  # another team is not theirs to ask for
    assert board.scope == kpis.Scope("east", None, False, team_fixed=True)
    # rep1 15,000 / 12,000 and rep2 20,000 / 15,000 → 35,000 / 27,000
    assert _rates([board.collection_total]) == [("total", D("35000.00"), D("27000.00"), pytest.approx(27 / 35))]
    assert [r.key for r in board.collection_by_rep] == [REP1, REP2]
    assert board.overdue_by_age == [("1–30", D("3000.00"), 1), ("31–60", D("5000.00"), 1),
                                    ("61–90", D("0.00"), 0), (">90", D("8000.00"), 1)]
    assert board.overdue_total == D("16000.00")
    assert board.pipeline == [("quote", 1, D("0.00")), ("approval", 1, D("3000.00")),
                              ("contract", 1, D("24000.00")), ("collection", 3, D("65000.00"))]
    # Q-A 6 h, Q-B 30 h and 12 h → 48 / 3 = 16 h
    assert board.turnaround == [(SUPERVISOR_REVIEW, 3, pytest.approx(16.0))]
    # quote: Q-A 2 h, Q-B 48 h, Q-D 0 → 50/3 h = 25/36 d; approval: Q-A 6 h, Q-B 60 h → 33 h = 1.375 d;
    # collection: C5 10 h; the complaints' tasks belong to no team
    assert [(st, n) for st, n, _ in board.cycle_time] == [("quote", 3), ("approval", 2), ("collection", 1)]
    assert [d for _, _, d in board.cycle_time] == [pytest.approx(25 / 36), pytest.approx(1.375),
                                                   pytest.approx(5 / 12)]
    assert board.sla == [("quote", 4, 0, 0), ("approval", 3, 1, 1), ("contract", 0, 0, 1), ("collection", 7, 2, 4)]
    assert (board.complaints, board.satisfaction) == ([("low", 0), ("medium", 1), ("high", 1)],
                                                      (2, pytest.approx(3.0)))
    assert [r.rep for r in kpis.overdue_contracts(rt, sup, team="west").items] == [REP1, REP2, REP1]
    # one rep of the team
    one = _board(world, "sup1", rep_id=_user(rt, "rep2").id)
    assert _rates([one.collection_total]) == [("total", D("20000.00"), D("15000.00"), 0.75)]
    assert board.reps == [(_user(rt, "rep2").id, REP2), (_user(rt, "rep1").id, REP1)]


def test_the_director_sees_everything_and_may_narrow_it(world):
    rt = world.rt
    director = _user(rt, "dir1")
    assert kpis.scope_for(director) == kpis.Scope(None, None, False)
    board = _board(world, "dir1")
    assert board.teams == ["east", "west"]
    assert sorted(board.reps) == sorted([(_user(rt, n).id, name) for n, name in
                                         (("rep1", REP1), ("rep2", REP2), ("rep_w", REP_W))])
    west = _board(world, "dir1", team="west")
    assert west.scope == kpis.Scope("west", None, False)
    assert _rates([west.collection_total]) == [("total", D("10000.00"), D("4000.00"), 0.4)]
    assert west.overdue_total == D("6000.00")
    assert west.pipeline == [("contract", 1, D("60000.00")), ("collection", 1, D("10000.00"))]
    # Q-C: supervisor 4 h, manager 30 h
    assert west.turnaround == [(MANAGER_REVIEW, 1, pytest.approx(30.0)),
                               (SUPERVISOR_REVIEW, 1, pytest.approx(4.0))]
    assert west.sla == [("quote", 1, 0, 0), ("approval", 2, 1, 0), ("contract", 0, 0, 1), ("collection", 2, 0, 1)]
    assert (west.complaints, west.satisfaction) == ([("low", 1), ("medium", 0), ("high", 0)], (0, None))
    rep2 = _board(world, "dir1", rep_id=_user(rt, "rep2").id)
    assert _rates(rep2.collection_by_rep) == [(REP2, D("20000.00"), D("15000.00"), 0.75)]
    for name in ("fin1", "audit1", "admin"):
        assert kpis.scope_for(_user(rt, name)) == kpis.Scope(None, None, False)
    assert kpis.scope_for(_user(rt, "mgr1"), team="west") == kpis.Scope("east", None, False, team_fixed=True)


@pytest.mark.parametrize("name", ["legal1", "dlv1", "svc1", "owner1"])
def test_roles_without_a_dashboard_are_refused(world, name):
    user = _user(world.rt, name)
    with pytest.raises(PermissionDenied) as refused:
        kpis.dashboard(world.rt, user, Q4)
    assert refused.value.message == "the dashboard is for sales, finance and compliance roles"
    with pytest.raises(PermissionDenied):
        kpis.overdue_contracts(world.rt, user)


# --- the business day, not the UTC one ----------------------------------------------------------------------


def test_periods_and_today_follow_the_business_time_zone(rt, clock):
    """Shanghai is UTC+8: 2026-09-30 23:30 and 2026-10-01 00:30 there are both on 2026-09-30 in UTC."""
    clock.set(sh(9, 30, 22, 30))
    late_q3 = Flow(rt)
    late_q3.act("prepare_quote", "rep1", World.quote_data("Kappa 壬公司", 1))
    clock.set(sh(9, 30, 23))
    early_q4 = Flow(rt, starter="rep2")
    early_q4.act("prepare_quote", "rep2", World.quote_data("Lambda 癸公司", 1))
    clock.set(sh(9, 30, 23, 30))
    late_q3.act("supervisor_review", "sup1", approve("supervisor"))  # 1 h, on the last evening of Q3
    clock.set(sh(10, 1, 0, 30))
    early_q4.act("supervisor_review", "sup1", approve("supervisor"))  # 1.5 h, half an hour into Q4
    director = accounts.get_user(rt, "dir1")
    assert kpis.dashboard(rt, director, Q3).turnaround == [(SUPERVISOR_REVIEW, 1, pytest.approx(1.0))]
    assert kpis.dashboard(rt, director, Q4).turnaround == [(SUPERVISOR_REVIEW, 1, pytest.approx(1.5))]

    late_q3.through_contract(plan=[{"amount": "12000.00", "due_date": "2026-12-19"}])
    late_q3.through_delivery()
    clock.set(sh(12, 19, 23, 30))  # still the 19th in Shanghai: due today, not overdue
    board = kpis.dashboard(rt, director, Q4)
    assert board.today == date(2026, 12, 19)
    assert (board.collection_total.due, board.collection_total.collected) == (D("12000.00"), D("0.00"))
    assert (board.overdue_total, kpis.overdue_contracts(rt, director).total) == (D("0.00"), 0)
    clock.set(sh(12, 20, 0, 30))  # the 20th in Shanghai (16:30 on the 19th in UTC): one day overdue
    board = kpis.dashboard(rt, director, Q4)
    assert board.today == TODAY
    assert board.overdue_by_age[0] == ("1–30", D("12000.00"), 1)
    assert [(r.contract_no, r.days) for r in kpis.overdue_contracts(rt, director).items] == [("HT-2026-001", 1)]


# --- periods ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "today", "offset", "expected", "label"), [
    ("month", date(2026, 12, 20), 0, (date(2026, 12, 1), date(2026, 12, 31)), "2026-12"),
    ("month", date(2026, 12, 20), 1, (date(2027, 1, 1), date(2027, 1, 31)), "2027-01"),
    ("month", date(2026, 3, 31), -1, (date(2026, 2, 1), date(2026, 2, 28)), "2026-02"),
    ("month", date(2028, 3, 1), -1, (date(2028, 2, 1), date(2028, 2, 29)), "2028-02"),
    ("month", date(2026, 1, 15), -13, (date(2024, 12, 1), date(2024, 12, 31)), "2024-12"),
    ("quarter", date(2026, 12, 20), 0, (date(2026, 10, 1), date(2026, 12, 31)), "2026 Q4"),
    ("quarter", date(2026, 10, 1), -1, (date(2026, 7, 1), date(2026, 9, 30)), "2026 Q3"),
    ("quarter", date(2026, 2, 10), -1, (date(2025, 10, 1), date(2025, 12, 31)), "2025 Q4"),
    ("quarter", date(2026, 12, 31), 1, (date(2027, 1, 1), date(2027, 3, 31)), "2027 Q1"),
    ("quarter", date(2026, 5, 5), -4, (date(2025, 4, 1), date(2025, 6, 30)), "2025 Q2"),
    ("year", date(2026, 12, 20), 0, (date(2026, 1, 1), date(2026, 12, 31)), "2026"),
    ("year", date(2026, 1, 1), -1, (date(2025, 1, 1), date(2025, 12, 31)), "2025"),
    (None, date(2026, 8, 8), 0, (date(2026, 7, 1), date(2026, 9, 30)), "2026 Q3"),
])
def test_period_of(kind, today, offset, expected, label):
    period = kpis.period_of(kind, today, offset=offset)
    assert (period.kind, (period.start, period.end), period.label) == (kind or "quarter", expected, label)


def test_a_custom_period():
    period = kpis.period_of("custom", TODAY, "2026-10-15", "2026-11-14")
    assert (period.kind, period.start, period.end, period.label) == (
        "custom", date(2026, 10, 15), date(2026, 11, 14), "2026-10-15 – 2026-11-14")
    one_day = kpis.period_of("custom", TODAY, "2026-12-20", "2026-12-20")
    assert (one_day.start, one_day.end) == (TODAY, TODAY)


@pytest.mark.parametrize(("kind", "start", "end", "message", "chinese"), [
    ("week", None, None, "month, quarter, year or custom", "请选择月、季度、年或自定义"),
    ("custom", None, None, "give a start and an end date (YYYY-MM-DD)", "请填写开始和结束日期（YYYY-MM-DD）"),
    ("custom", "2026-13-01", "2026-12-31", "give a start and an end date (YYYY-MM-DD)",
     "请填写开始和结束日期（YYYY-MM-DD）"),
    ("custom", "2026-10-01", "", "give a start and an end date (YYYY-MM-DD)", "请填写开始和结束日期（YYYY-MM-DD）"),
    ("custom", "2026-12-01", "2026-11-30", "the end must be after the start, at most ten years",
     "结束日期须晚于开始日期，跨度最多十年"),
    ("custom", "2016-01-01", "2026-12-31", "the end must be after the start, at most ten years",
     "结束日期须晚于开始日期，跨度最多十年"),
])
def test_invalid_periods_are_refused(kind, start, end, message, chinese):
    with pytest.raises(InvalidInput) as refused:
        kpis.period_of(kind, TODAY, start, end)
    assert (refused.value.message, refused.value.errors) == ("invalid period", {"period": message})
    assert localize_message(refused.value.message, "zh-CN") == "期间无效"
    assert localize_message(message, "zh-CN") == chinese
