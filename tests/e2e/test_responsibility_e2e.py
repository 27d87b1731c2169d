"""The responsibility table (职责分工表) in the browser: a manager opens it from the contract page, reads who holds
the open task in Chinese and in English, prints it (the button is bound by a static script, CSP allows no inline
one) and the print layout leaves out the navigation and the buttons."""

from __future__ import annotations

from playwright.sync_api import expect

from workflows.services import tasks

from ..flow import Flow, approve, quote
from .test_lifecycle_e2e import switch_language


def test_the_manager_reads_who_holds_each_open_task_and_prints_it(rt, clock, page_as, shot):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote("30000.00"))  # 60,000: the manager must approve after the supervisor
    clock.advance(hours=30)
    flow.act("supervisor_review", "sup1", approve("supervisor"))  # a day and more late
    review = tasks.claim(rt, flow.task("manager_review").id, flow.user("mgr1"))
    key = flow.started.business_key

    mgr = page_as("mgr1")
    mgr.goto(f"/contracts/{key}")
    link = mgr.locator('a[data-action="responsibilities"]')
    expect(link).to_have_text("职责分工表")
    link.click()
    mgr.wait_for_url(f"**/contracts/{key}/responsibilities")
    expect(mgr.locator("h1")).to_contain_text("职责分工表")

    open_row = mgr.locator(f'tbody[data-section="open"] tr[data-task-id="{review.id}"]')
    expect(open_row.locator('[data-col="step"]')).to_have_text("经理审批")
    expect(open_row.locator('[data-col="owner"]')).to_have_text("刘洋 Liu Yang")
    expect(open_row.locator('[data-col="status"]')).to_have_text("办理中")
    done = mgr.locator('tbody[data-section="done"]')
    expect(done.locator('tr[data-spec="prepare_quote"] [data-col="owner"]')).to_have_text("王小明 Wang Xiaoming")
    expect(done.locator('tr[data-spec="supervisor_review"] [data-col="status"]')).to_have_text("逾期完成")
    coming = mgr.locator('tbody[data-section="to_come"]')
    expect(coming.locator('tr[data-spec="draft_contract"] [data-col="owner"]')).to_have_text("王小明 Wang Xiaoming")
    expect(coming.locator('tr[data-spec="draft_contract"] [data-col="due"]')).to_have_text("开启后3天内")
    expect(coming.locator('tr[data-spec="legal_review"] [data-col="status"]')).to_have_text("可能跳过")
    expect(coming.locator('tr[data-spec="legal_review"] [data-col="owner"]')).to_have_text("任一法务")
    shot(mgr, "responsibilities")

    switch_language(mgr, "en")
    expect(mgr.locator("h1")).to_contain_text("Responsibility table")
    expect(open_row.locator('[data-col="step"]')).to_have_text("Manager review")
    expect(open_row.locator('[data-col="owner"]')).to_have_text("刘洋 Liu Yang")
    expect(open_row.locator('[data-col="status"]')).to_have_text("Open")
    expect(done.locator('tr[data-spec="supervisor_review"] [data-col="status"]')).to_have_text("Done late")
    expect(coming.locator('tr[data-spec="draft_contract"] [data-col="due"]')).to_have_text("within 3 days of opening")
    sign = coming.locator('tr[data-spec="sign_company"] [data-col="owner"]')
    expect(sign).to_have_text("any Sales manager team east")
    shot(mgr, "responsibilities")

    # the Print button calls window.print() from print.js (stubbed here: headless Chromium has no print dialog)
    mgr.evaluate("() => { window.print = () => { window.__printed = (window.__printed || 0) + 1; }; }")
    mgr.locator('button[data-action="print"]').click()
    assert mgr.evaluate("window.__printed") == 1

    nav, button = mgr.locator("nav.mainnav"), mgr.locator('button[data-action="print"]')
    assert nav.evaluate("e => getComputedStyle(e).display") != "none"
    mgr.emulate_media(media="print")
    for hidden in (nav, mgr.locator("header.topbar"), button, mgr.locator("footer.footer")):
        assert hidden.evaluate("e => getComputedStyle(e).display") == "none"
    table = mgr.locator('table[data-table="responsibilities"]')
    expect(table).to_be_visible()
    expect(open_row.locator('[data-col="owner"]')).to_be_visible()
    # A4 is 210 mm wide; with the page margins of the print style about 190 mm (718 CSS pixels) are left
    mgr.set_viewport_size({"width": 718, "height": 1000})
    assert table.evaluate("e => e.scrollWidth <= document.documentElement.clientWidth")
    assert table.evaluate("e => e.getBoundingClientRect().right <= document.documentElement.clientWidth")
    mgr.emulate_media(media="screen")
    assert nav.evaluate("e => getComputedStyle(e).display") != "none"
