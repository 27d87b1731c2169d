"""Amending a signed contract (合同修订) from its page, in Chinese and in English."""

from __future__ import annotations

from playwright.sync_api import expect

from ..flow import Flow, approve, quote
from .test_lifecycle_e2e import switch_language


def test_the_rep_amends_a_signed_contract_in_both_languages(rt, page_as):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    flow.through_contract()
    key = flow.started.business_key

    page = page_as("rep1")
    page.goto(f"/contracts/{key}")
    panel = page.locator('[data-section="amend"]')
    expect(panel.locator("h2")).to_have_text("修订合同")
    panel.locator("#amend-reason").fill("   ")
    panel.locator("#amend-reason").evaluate("e => e.removeAttribute('required')")
    panel.locator('[data-action="amend"]').click()
    expect(page.locator("[data-amend-problem]")).to_contain_text("请填写原因")  # nothing happened
    assert flow.open_specs() == {"execute_delivery"}
    page.locator("#amend-reason").fill("客户追加一台车床")
    page.locator('[data-action="amend"]').click()
    expect(page.locator(".flash-ok")).to_contain_text("已发起合同修订")
    expect(page.locator('[data-section="records"] [data-status="in_review"]')).to_have_text("审核中")  # again
    expect(page.locator(".history-amend").first).to_contain_text("修订了合同")
    assert flow.open_specs() == {"prepare_quote"}
    expect(page.locator('[data-section="amend"]')).to_have_count(0)  # one amendment at a time
    expect(page.locator("[data-amend-closed]")).to_contain_text("修订正在进行")

    switch_language(page, "en")
    expect(page.locator("[data-amend-closed]")).to_contain_text("an amendment of this contract is under way")
    page.goto(f"/tasks/{flow.task('prepare_quote').id}")
    expect(page.locator(".instructions, .task-instructions").first).to_contain_text("客户追加一台车床")
