"""Added signers (加签) in the browser: the supervisor asks legal for an opinion (asking the rep who prepared the
quote is refused by four eyes), cannot complete while it is pending, legal answers from "opinions asked of me",
the answer shows on the task and in the history; then the supervisor approves and adds a second supervisor,
who finds the task in their queue marked as added after the approval and completes it — in Chinese, and in
English. A drafter who is also a supervisor cannot be added to approve their own quote."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from workflows.services import accounts

from ..flow import Flow, quote
from .test_lifecycle_e2e import choose, switch_language

_FORBIDDEN = re.compile(r"status of 403")


def _expect_one_refusal(browser_errors: list[str]) -> None:
    """The browser logs a 403 answer as a console error: the one the test provoked is expected, no other."""
    refused = [e for e in browser_errors if _FORBIDDEN.search(e)]
    assert len(refused) == 1, browser_errors
    browser_errors.remove(refused[0])


def test_opinion_then_approver_after_in_both_languages(rt, page_as, shot, browser_errors):
    accounts.create_user(rt, "sup3", accounts.DEMO_PASSWORD, ["supervisor"], team="east",
                         display_name="钱进 Qian Jin")
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    review = flow.task("supervisor_review")
    key = flow.started.business_key

    sup = page_as("sup1")
    sup.goto(f"/tasks/{review.id}")
    panel = sup.locator("[data-signers]")
    expect(panel.locator("h2")).to_have_text("加签")
    panel.locator("[data-ask-panel] summary").click()
    panel.locator("#opinion-to").select_option("rep1")
    panel.locator("#opinion-question").fill("报价合理吗？")
    panel.locator('button[data-action="ask-opinions"]').click()
    expect(sup.locator("[data-problem]")).to_contain_text(
        "四眼原则：rep1 已在本合同中完成「编制报价」，不能就「主管审核」征询其意见")
    expect(sup.locator("#opinion-question")).to_have_value("报价合理吗？")  # what was typed is still there
    _expect_one_refusal(browser_errors)

    sup.locator("#opinion-to").select_option(["legal1"])
    sup.locator("#opinion-question").fill("违约金条款可以接受吗？")
    sup.locator('button[data-action="ask-opinions"]').click()
    expect(sup.locator(".flash-ok")).to_have_text("已向 legal1 征询意见，任务将等待他们的答复。")
    expect(sup.locator("[data-waiting]")).to_contain_text("正在等待 legal1 的意见")
    expect(sup.locator("[data-opinion-asked]").first).to_have_text("→ legal1: 违约金条款可以接受吗？")
    shot(sup, "countersign-asked")
    choose(sup, "supervisor_decision", "approve")
    sup.locator("[data-action=complete]").click()
    expect(sup.locator("[data-problem]")).to_contain_text("「主管审核」正在等待 legal1 的意见")
    assert flow.task("supervisor_review").status == "open"

    legal = page_as("legal1")
    expect(legal.locator('[data-count="opinions"]')).to_have_text("1")
    legal.locator('.mainnav a[href="/opinions"]').click()
    expect(legal.locator("h1")).to_contain_text("征询我的意见")
    row = legal.locator("tr[data-opinion-id]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(key)
    expect(row).to_contain_text("违约金条款可以接受吗？")
    shot(legal, "countersign-opinions")
    row.locator("a.task-link").click()
    expect(legal.locator(".summary")).to_contain_text("CNC lathe")  # the contract, to judge it by
    legal.locator('input[name="agrees"][value="disagree"]').check()
    legal.locator("#opinion-answer").fill("违约金过高，建议降至 5%")
    shot(legal, "countersign-answer")
    legal.locator('button[data-action="answer-opinion"]').click()
    expect(legal.locator(".flash-ok")).to_have_text("谢谢，您的意见已提交。")
    expect(legal.locator(".empty")).to_have_text("没有待您答复的征询。")
    expect(legal.locator('[data-count="opinions"]')).to_have_count(0)

    sup.goto(f"/tasks/{review.id}")
    expect(sup.locator('[data-signer] [data-answer]')).to_contain_text("不同意")
    expect(sup.locator('[data-signer] [data-answer]')).to_contain_text("违约金过高，建议降至 5%")
    expect(sup.locator("li:has([data-opinion-answered])").first).to_contain_text("答复了征询意见")
    expect(sup.locator("[data-opinion-answered]").first).to_have_text("不同意: 违约金过高，建议降至 5%")
    expect(sup.locator("[data-waiting]")).to_have_count(0)

    # approve, and add sup3 after
    sup.locator("[data-add-approver-panel] summary").click()
    sup.locator("#approver-after").select_option("sup3")
    sup.locator("#approver-comment").fill("已按法务意见核对，请复核")
    sup.locator('button[data-action="add-approver"]').click()
    expect(sup.locator(".flash-ok")).to_have_text("您已批准；任务已转给 钱进 Qian Jin，由其作出决定。")
    assert flow.task("supervisor_review").assignee == "sup3"

    other = page_as("sup3")
    other.goto("/tasks")
    other.locator(f'tr[data-task-id="{review.id}"] a.task-link').click()
    expect(other.locator("[data-added-after]")).to_contain_text("钱进 Qian Jin 由 张伟 Zhang Wei 在批准后加签")
    expect(other.locator("[data-added-after]")).to_contain_text("意见：已按法务意见核对，请复核")
    expect(other.locator("li:has([data-countersign])").first).to_contain_text("批准并加签")
    expect(other.locator("[data-countersign]").first).to_have_text("→ sup3")
    shot(other, "countersign-added")
    switch_language(other, "en")
    expect(other.locator("[data-added-after]")).to_contain_text("钱进 Qian Jin was added by 张伟 Zhang Wei after "
                                                                 "their approval")
    expect(other.locator("li:has([data-countersign])").first).to_contain_text("approved and added an approver to")
    expect(other.locator("li:has([data-opinion-answered])").first).to_contain_text("gave an opinion on")
    expect(other.locator("[data-signer][data-kind=opinion]")).to_contain_text("Disagrees")
    shot(other, "countersign-added")
    choose(other, "supervisor_decision", "approve")
    other.locator("[data-action=complete]").click()
    expect(other.locator(".flash-ok")).to_have_text("Done. The contract moved on.")
    assert "draft_contract" in flow.open_specs() and "supervisor_review" not in flow.open_specs()


def test_the_drafter_cannot_be_added_to_approve_their_own_quote(rt, page_as, browser_errors):
    accounts.create_user(rt, "both1", accounts.DEMO_PASSWORD, ["sales_rep", "supervisor"], team="east")
    flow = Flow(rt, starter="both1")
    flow.act("prepare_quote", "both1", quote())
    review = flow.task("supervisor_review")

    sup = page_as("sup1")
    sup.goto(f"/tasks/{review.id}")
    sup.locator("[data-add-approver-panel] summary").click()
    sup.locator("#approver-after").select_option("both1")  # has the role; four eyes answers on submit
    sup.locator('button[data-action="add-approver"]').click()
    expect(sup.locator("[data-problem]")).to_contain_text(
        "四眼原则：both1 已在本合同中完成「编制报价」，「主管审核」须由他人办理")
    _expect_one_refusal(browser_errors)
    assert flow.task("supervisor_review").assignee is None
    switch_language(sup, "en")
    sup.goto(f"/tasks/{review.id}")
    expect(sup.locator("[data-add-approver-panel] summary")).to_have_text("Approve and add an approver after me")
