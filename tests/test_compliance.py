"""Compliance reads through the service layer: the explorer, one contract's dossier, the four-eyes report
(with administrator overrides), the heatmap, the CSV exports and the log of who looked at what."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from models import AuditEvent, TaskRow
from workflows.services import accounts, compliance, tasks
from workflows.services.errors import FourEyesViolation, InvalidInput, PermissionDenied

from .flow import Flow, approve, quote

BIG = dict(total_price="30000.00", quantity=2)  # 60,000: the matrix asks the manager too


@pytest.fixture
def audit1(rt, users):
    return accounts.get_user(rt, "audit1")


def _flow(rt, customer="华东精密机械有限公司", **q):
    f = Flow(rt, data={})
    f.act("prepare_quote", "rep1", quote(customer_name=customer, **q))
    return f


def test_only_compliance_reads_these_views(rt, users):
    for name in ("rep1", "sup1", "dir1", "admin", "owner1"):
        user = accounts.get_user(rt, name)
        with pytest.raises(PermissionDenied):
            compliance.explore(rt, user, compliance.ExplorerFilter())
        with pytest.raises(PermissionDenied):
            compliance.four_eyes_report(rt, user)


def test_explorer_filters_and_counts(rt, audit1, clock):
    a = _flow(rt, "华东精密机械有限公司")
    a.act("supervisor_review", "sup1", approve("supervisor"))
    clock.advance(timedelta(days=3))
    b = _flow(rt, "Northwind Trading")
    f = compliance.ExplorerFilter
    everything = compliance.explore(rt, audit1, f())
    assert everything.page.total == 2 and everything.by_status == {"running": 2}
    found = compliance.explore(rt, audit1, f(customer="精密")).page
    assert [r.business_key for r in found.items] == [a.view().business_key]
    assert [r.business_key for r in compliance.explore(rt, audit1, f(actor="sup1")).page.items] == [
        a.view().business_key]
    assert compliance.explore(rt, audit1, f(role="supervisor")).page.total == 1
    assert compliance.explore(rt, audit1, f(key=b.view().business_key)).page.total == 1
    assert compliance.explore(rt, audit1, f(stage="contract")).page.total == 1
    today = clock.now().astimezone(__import__("zoneinfo").ZoneInfo(rt.business_tz)).date()
    recent = compliance.explore(rt, audit1, f(started_from=today, started_to=today)).page
    assert [r.customer_name for r in recent.items] == ["Northwind Trading"]
    assert compliance.explore(rt, audit1, f(status="completed")).page.total == 0
    with pytest.raises(InvalidInput):
        compliance.explore(rt, audit1, f(started_from=today, started_to=today - timedelta(days=1)))


def test_instance_page_shows_path_current_tasks_and_data_per_step(rt, audit1, clock):
    flow = _flow(rt)
    clock.advance(timedelta(hours=5))
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    key = flow.view().business_key
    page = compliance.instance_page(rt, audit1, key)
    d = page.dossier
    assert {"prepare_quote", "supervisor_review"} <= d.done
    assert d.current == {"draft_contract"}
    assert "Flow_merge_quote_to_prepare_quote" in d.flows
    assert not any(fid for fid in d.flows if "reject" in fid.lower())
    assert d.durations["supervisor_review"] == timedelta(hours=5)
    assert d.chain.ok and d.chain.events == page.events.total
    assert d.deployment_version == 1 and d.process_name
    assert [x.spec_id for x in d.decisions] == ["prepare_quote", "supervisor_review"]
    assert d.decisions[1].inputs == {"supervisor_decision": "approve"}
    starts = [e for e in page.events.items if e.action == "start"]
    completes = [e for e in page.events.items if e.action == "complete"]
    assert page.snapshots[starts[0].seq] == {}
    assert page.snapshots[completes[0].seq]["customer_name"] == "华东精密机械有限公司"
    assert page.snapshots[completes[1].seq]["supervisor_decision"] == "approve"
    assert d.data["customer_name"] == "华东精密机械有限公司"
    assert "quote_to_cash.bpmn" in page.deployment_files


def test_instance_page_reports_a_broken_chain(rt, audit1):
    flow = _flow(rt)
    with rt.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'sup1' WHERE instance_id = :i AND action = 'complete'"),
                     {"i": flow.id})
    chain = compliance.instance_page(rt, audit1, flow.view().business_key).dossier.chain
    assert not chain.ok and "altered" in chain.message


def test_four_eyes_report_is_empty_when_the_rules_held(rt, audit1):
    flow = _flow(rt, **BIG)
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    flow.act("manager_review", "mgr1", approve("manager"))
    assert compliance.four_eyes_report(rt, audit1).total == 0


def test_one_person_may_not_approve_at_two_levels(rt, users):
    dual = accounts.create_user(rt, "dual_boss", "pw-dual-boss-1", ["supervisor", "manager"], team="east")
    flow = _flow(rt, **BIG)
    tasks.complete(rt, flow.task("supervisor_review").id, dual, approve("supervisor"))
    with pytest.raises(FourEyesViolation) as exc:
        tasks.complete(rt, flow.task("manager_review").id, dual, approve("manager"))
    assert "Supervisor review" in exc.value.message


def test_four_eyes_report_finds_crafted_histories(rt, audit1, users):
    """Histories written behind the rules' back (as an old version or a direct SQL edit would leave them):
    the drafter approving, and one person approving at two levels."""
    drafted = _flow(rt)
    drafted.act("supervisor_review", "sup1", approve("supervisor"))
    two_levels = _flow(rt, "Northwind Trading", **BIG)
    two_levels.act("supervisor_review", "sup1", approve("supervisor"))
    two_levels.act("manager_review", "mgr1", approve("manager"))
    rep1, sup1 = accounts.get_user(rt, "rep1"), accounts.get_user(rt, "sup1")
    with rt.engine.begin() as conn:
        conn.execute(TaskRow.__table__.update().where(TaskRow.instance_id == drafted.id,
                                                      TaskRow.spec_id == "supervisor_review")
                     .values(completed_by_id=rep1.id))
        conn.execute(TaskRow.__table__.update().where(TaskRow.instance_id == two_levels.id,
                                                      TaskRow.spec_id == "manager_review")
                     .values(completed_by_id=sup1.id))
    report = compliance.four_eyes_report(rt, audit1)
    cases = {(c.business_key, c.actor, c.task, c.conflict, c.override_reason) for c in report.items}
    assert cases == {
        (drafted.view().business_key, "rep1", "Supervisor review / 主管审核", "Prepare quote / 编制报价", None),
        (two_levels.view().business_key, "sup1", "Manager review / 经理审批", "Supervisor review / 主管审核", None),
    }
    assert report.total == 2


def test_a_send_back_round_is_one_case_not_two(rt, audit1, users):
    flow = _flow(rt)
    flow.act("supervisor_review", "sup1", {"supervisor_decision": "send_back", "supervisor_comment": "redo"})
    flow.act("prepare_quote", "rep1", quote(discount_pct=1))
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    rep1 = accounts.get_user(rt, "rep1")
    with rt.engine.begin() as conn:
        conn.execute(TaskRow.__table__.update().where(TaskRow.instance_id == flow.id,
                                                      TaskRow.spec_id == "supervisor_review")
                     .values(completed_by_id=rep1.id))
    assert compliance.four_eyes_report(rt, audit1).total == 2  # two approvals, each once


def test_an_administrator_override_needs_a_reason_and_is_flagged(rt, audit1, users):
    boss = accounts.create_user(rt, "boss", "pw-boss-12345", ["sales_rep", "supervisor", "admin"], team="east")
    dual = accounts.create_user(rt, "dual_rep", "pw-dual-rep-1", ["sales_rep", "supervisor"], team="east")
    flow = Flow(rt, starter="boss", data={})
    flow.act("prepare_quote", "boss", quote(customer_name="boss 的客户"))
    review = flow.task("supervisor_review")
    with pytest.raises(FourEyesViolation):
        tasks.complete(rt, review.id, boss, approve("supervisor"))
    with pytest.raises(InvalidInput) as exc:
        tasks.complete(rt, review.id, boss, approve("supervisor"), override_reason="because")
    assert "override_reason" in exc.value.errors
    with pytest.raises(PermissionDenied):  # not an administrator: no override
        other = Flow(rt, starter="dual_rep", data={})
        other.act("prepare_quote", "dual_rep", quote(customer_name="dual_rep 的客户"))
        tasks.complete(rt, other.task("supervisor_review").id, dual, approve("supervisor"),
                       override_reason="the supervisor is on leave all month")
    tasks.complete(rt, review.id, boss, approve("supervisor"), override_reason="Sole supervisor on duty, CEO approved")
    assert flow.open_specs() == {"draft_contract"}
    with rt.read() as s:
        event = s.execute(select(AuditEvent.actor, AuditEvent.data).where(
            AuditEvent.instance_id == flow.id, AuditEvent.action == "four_eyes_override")).one()
    assert event.actor == "boss" and event.data == {"reason": "Sole supervisor on duty, CEO approved",
                                                    "conflict": "Prepare quote / 编制报价"}
    [case] = compliance.four_eyes_report(rt, audit1).items
    assert (case.actor, case.override_reason) == ("boss", "Sole supervisor on duty, CEO approved")


def test_heatmap_median_and_p90_per_task(rt, audit1, clock):
    waits = [1, 2, 3, 4, 10]  # hours at the supervisor
    for hours in waits:
        f = _flow(rt)
        clock.advance(timedelta(hours=hours))
        f.act("supervisor_review", "sup1", approve("supervisor"))
    open_one = _flow(rt)
    clock.advance(timedelta(hours=20))  # still waiting: counts up to now
    heat = compliance.heatmap(rt, audit1, "quote_to_cash")
    cell = next(c for c in heat.cells if c.spec_id == "supervisor_review")
    assert cell.count == 6 and cell.median == timedelta(hours=3.5) and cell.p90 == timedelta(hours=20)
    assert heat.instances == 6
    # the contracts approved early have waited longest for their draft: that is the hot spot
    assert heat.cells[0].spec_id == "draft_contract" and heat.cells[0].heat == 1.0
    assert [c.p90 for c in heat.cells] == sorted((c.p90 for c in heat.cells), reverse=True)
    assert cell.heat == pytest.approx(cell.p90 / heat.cells[0].p90)
    assert open_one.open_specs() == {"supervisor_review"}


def test_csv_exports(rt, audit1, clock):
    flow = _flow(rt)
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    key = flow.view().business_key
    rows = list(compliance.instance_events_csv(rt, audit1, key))
    with rt.read() as s:
        expected = s.scalars(select(AuditEvent.seq).where(AuditEvent.instance_id == flow.id)
                             .order_by(AuditEvent.seq)).all()
    assert [r[1] for r in rows] == expected
    assert all(r[3] == key for r in rows)
    today = clock.now().astimezone(__import__("zoneinfo").ZoneInfo(rt.business_tz)).date()
    period = list(compliance.period_events_csv(rt, audit1, today, today))
    assert len(period) > len(rows)  # the system chain (deploys, users) and the access chain too
    assert list(compliance.period_events_csv(rt, audit1, today + timedelta(days=1), today + timedelta(days=2))) == []
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    assert "华东精密机械有限公司" in buf.getvalue()


def test_every_compliance_read_is_itself_recorded(rt, audit1):
    flow = _flow(rt)
    key = flow.view().business_key
    compliance.explore(rt, audit1, compliance.ExplorerFilter(customer="华东"))
    compliance.instance_page(rt, audit1, key)
    list(compliance.instance_events_csv(rt, audit1, key))
    compliance.four_eyes_report(rt, audit1)
    log = compliance.access_log(rt, audit1)
    views = [(e.actor, e.view, e.details.get("business_key")) for e in log.items]
    assert views[:4] == [("audit1", "four_eyes", None), ("audit1", "events_csv", key), ("audit1", "instance", key),
                         ("audit1", "explorer", None)]
    assert log.items[3].details["filter"] == {"customer": "华东"}


def test_what_the_decision_table_set_is_recorded_with_the_step_that_caused_it(rt, audit1):
    flow = _flow(rt, total_price="150000.00", quantity=2)  # 300,000: manager, then legal and finance in parallel
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    flow.act("manager_review", "mgr1", approve("manager"))
    assert flow.open_specs() == {"legal_review", "finance_review"}
    flow.act("legal_review", "legal1", approve("legal"))
    page = compliance.instance_page(rt, audit1, flow.view().business_key)
    decisions = {x.spec_id: x for x in page.dossier.decisions}
    # the totals script ran after the quote; the approval matrix after the supervisor's approval
    assert decisions["prepare_quote"].effects["amount"]["new"] == "300000.00"
    matrix = {k: c["new"] for k, c in decisions["supervisor_review"].effects.items()}
    assert (matrix["need_manager"], matrix["need_director"], matrix["need_legal"], matrix["need_finance"]) == (
        True, False, True, True)
    # the legal branch waits at the join: its record holds no other branch's data, nothing undone
    assert not {k for k in decisions["legal_review"].effects if k.startswith(("finance", "legal"))}
    complete = [e for e in page.events.items if e.action == "complete"]
    after_review = page.snapshots[complete[1].seq]
    assert after_review["need_manager"] is True and after_review["customer_name"] == "华东精密机械有限公司"
    assert page.snapshots[complete[-1].seq]["legal_decision"] == "approve"
    # the second branch completes the join: what the consolidating script wrote is its effect (it copies the
    # legal decision out of review_results); the other branch's data merged at the join is not
    flow.act("finance_review", "fin1", approve("finance"))
    finance = {x.spec_id: x for x in compliance.instance_page(rt, audit1, flow.view().business_key)
               .dossier.decisions}["finance_review"]
    script_outputs = {"legal_decision", "finance_decision", "review_send_backs", "send_back"}
    assert set(finance.effects) <= script_outputs and finance.effects["legal_decision"]["new"] == "approve"
    assert "review_results" not in finance.effects


def test_heatmap_over_a_chosen_set_of_contracts(rt, audit1, clock):
    slow = _flow(rt, "Slow Customer Ltd")
    clock.advance(timedelta(hours=10))
    slow.act("supervisor_review", "sup1", approve("supervisor"))
    fast = _flow(rt, "Fast Customer Ltd")
    clock.advance(timedelta(hours=1))
    fast.act("supervisor_review", "sup1", approve("supervisor"))

    def supervisor_p90(**filters):
        heat = compliance.heatmap(rt, audit1, "quote_to_cash", f=compliance.ExplorerFilter(**filters))
        return heat.instances, next(c.p90 for c in heat.cells if c.spec_id == "supervisor_review")

    assert supervisor_p90(customer="Slow") == (1, timedelta(hours=10))
    assert supervisor_p90(customer="Fast") == (1, timedelta(hours=1))
    assert supervisor_p90()[0] == 2
