"""The manager's dashboard in the browser, in Chinese and in English: this quarter's 回款率 per rep, the overdue
contracts and whose they are, the charts, the period and rep filters."""

from __future__ import annotations

from playwright.sync_api import expect

from workflows.services import timers

from ..flow import Flow
from .test_lifecycle_e2e import switch_language


def test_a_manager_reads_collection_and_overdue_contracts_in_both_languages(rt, clock, page_as, shot):
    flow = Flow(rt)
    flow.to_collection()  # 7,200 due 2026-12-15 and 16,800 due 2027-01-15
    clock.advance(days=35)  # 2026-12-28: the first installment is 13 days overdue, escalated after 7
    timers.fire_due_timers(rt)
    flow.act("record_payment", "fin1", {"amount_received": "3000.00", "received_on": "2026-12-27",
                                        "payment_reference": "BANK-1"})
    assert flow.data()["installment_open"] == 4200  # the rest of the first installment stays open
    key = flow.started.business_key

    page = page_as("mgr1")
    page.goto("/dashboard")
    expect(page.locator("h1")).to_contain_text("看板")
    expect(page.locator("[data-period]")).to_contain_text("2026 Q4")
    expect(page.locator('[data-kpi="collection-rate"] .kpi-value')).to_have_text("41.7%")  # 3,000 of 7,200
    rep_row = page.locator('[data-table="collection-by-rep"] tr[data-rep="王小明 Wang Xiaoming"]')
    expect(rep_row.locator("[data-rate]")).to_have_text("41.7%")
    overdue = page.locator(f'[data-section="overdue"] tr[data-overdue="{key}"]')
    expect(overdue).to_contain_text("HT-2026-001")
    expect(overdue.locator("[data-rep]")).to_have_text("王小明 Wang Xiaoming")
    expect(overdue).to_contain_text("4,200.00")
    expect(page.locator('svg[data-chart="各阶段在途合同"] g[data-bar="回款"]')).to_have_count(1)
    expect(page.locator('svg[data-chart="逾期账龄（天）"] g[data-bar="1–30"] .chart-value')).to_contain_text("4,200.00")
    shot(page, "dashboard-zh")

    switch_language(page, "en")
    expect(page.locator("h1")).to_contain_text("Dashboard")
    expect(page.locator('[data-kpi="collection-rate"] .kpi-label')).to_have_text("Collection rate")
    expect(page.locator('[data-kpi="collection-rate"] .kpi-value')).to_have_text("41.7%")
    expect(page.locator('svg[data-chart="Pipeline by stage"] g[data-bar="Collection"]')).to_have_count(1)
    shot(page, "dashboard-en")

    # the previous quarter had nothing due; the full overdue list names the rep
    page.locator('select[data-filter="offset"]').select_option("-1")
    page.locator(".dashboard-filters button[type=submit]").click()
    expect(page.locator("[data-period]")).to_contain_text("2026 Q3")
    expect(page.locator('[data-kpi="collection-rate"] .kpi-value')).to_have_text("—")
    page.locator('[data-action="all-overdue"]').click()
    expect(page.locator("h1")).to_contain_text("Overdue contracts")
    expect(page.locator(f'tr[data-overdue="{key}"] [data-rep]')).to_have_text("王小明 Wang Xiaoming")

    # a rep sees only their own numbers: rep2 has none
    other = page_as("rep2")
    other.goto("/dashboard")
    expect(other.locator('[data-kpi="collection-rate"] .kpi-value')).to_have_text("—")
    expect(other.locator(f'tr[data-overdue="{key}"]')).to_have_count(0)


def test_the_contract_page_shows_its_records(rt, clock, page_as):
    flow = Flow(rt)
    flow.to_collection()
    clock.advance(days=35)
    timers.fire_due_timers(rt)
    flow.act("record_payment", "fin1", {"amount_received": "3000.00", "received_on": "2026-12-27",
                                        "payment_reference": "BANK-1"})
    page = page_as("mgr1")
    page.goto(f"/contracts/{flow.started.business_key}")
    records = page.locator('[data-section="records"]')
    expect(records.locator('tr[data-revision="1"] [data-status="approved"]')).to_have_text("已批准")
    expect(records.locator('tr[data-installment="1"]')).to_contain_text("3,000.00")
    expect(records.locator('tr[data-installment="1"] [data-overdue-days="13"]')).to_have_text("逾期 13 天")
    expect(records.locator('tr[data-installment="2"]')).to_contain_text("16,800.00")
    expect(records.locator('[data-table="payments"]')).to_contain_text("BANK-1")
