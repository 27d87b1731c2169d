""""Why is this mine?" (为什么分给我？) in the browser: the manager opens a review the approval matrix demanded,
unfolds the panel and reads the row that demanded it, with the amount it matched, and his own claim among the
hand-overs — in Chinese, then in English."""

from __future__ import annotations

from playwright.sync_api import expect

from ..test_routing import _expected, _to_manager
from .test_lifecycle_e2e import switch_language


def test_the_manager_reads_why_the_review_is_his_in_both_languages(rt, page_as, shot):
    flow, values = _to_manager(rt, "120000.00")
    rule = _expected(values)
    english, chinese = (part.strip() for part in rule["description"].split("/", 1))
    review = flow.task("manager_review")

    mgr = page_as("mgr1")
    mgr.goto(f"/tasks/{review.id}")
    mgr.locator('button[data-action="claim"]').click()
    why = mgr.locator("details[data-why]")
    expect(why.locator("summary")).to_have_text("为什么分给我？")
    expect(why.locator("[data-why-row]")).not_to_be_visible()  # folded until asked
    why.locator("summary").click()
    expect(why.locator("[data-why-lane]")).to_have_text("经理")
    expect(why.locator("[data-why-row]")).to_have_text(f"第 {rule['row']} 行：{chinese}")
    expect(why.locator('tr[data-input="amount"] [data-value]')).to_have_text("120,000")
    expect(why.locator('tr[data-input="amount"] [data-entry]')).to_have_text(rule["cells"]["amount"])
    expect(why.locator('tr[data-output="need_manager"][data-read]')).to_contain_text("经理审批")
    expect(why.locator('[data-reason="holder"]')).to_have_text("你是当前处理人。")
    expect(why.locator('[data-why-assignments] li[data-handover="claim"]')).to_contain_text("mgr1")
    shot(mgr, "why-manager-review")

    switch_language(mgr, "en")
    why = mgr.locator("details[data-why]")
    expect(why.locator("summary")).to_have_text("Why is this mine?")
    why.locator("summary").click()
    expect(why.locator("[data-why-lane]")).to_have_text("Manager")
    expect(why.locator("[data-why-row]")).to_have_text(f"Row {rule['row']}: {english}")
    expect(why.locator("[data-why-conditions]")).to_contain_text("Manager approval needed? → Needed")
    expect(why.locator('[data-why-source="engine"]')).to_have_text(
        "Values as the process held them when this task became ready.")
    expect(why.locator('[data-why-assignments] li[data-handover="claim"]')).to_contain_text("mgr1 claimed")
    shot(mgr, "why-manager-review")
