"""Reminders (催办) in the browser: the starter clicks Remind on the contract page, the holder of the task
finds the reminder in the inbox, the history records it — in Chinese, and again in English once the
interval has passed."""

from __future__ import annotations

from playwright.sync_api import expect

from ..flow import Flow, quote
from .test_lifecycle_e2e import switch_language


def test_the_starter_reminds_the_supervisor_in_both_languages(rt, clock, page_as, shot):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    review = flow.task("supervisor_review")
    key = flow.started.business_key

    rep = page_as("rep1")
    rep.goto(f"/contracts/{key}")
    row = rep.locator(f'tr[data-task-id="{review.id}"]')
    expect(row.locator('button[data-action="remind"]')).to_have_text("催办")
    row.locator('input[name="message"]').fill("客户在等报价")
    row.locator('button[data-action="remind"]').click()
    expect(rep.locator(".flash-ok")).to_have_text("已向 sup1 发送催办。")
    expect(rep.locator(".history-remind").first).to_contain_text("催办了")
    expect(rep.locator(".history-remind").first).to_contain_text("→ sup1: 客户在等报价")
    expect(row.locator("[data-next-remind]")).to_contain_text("下次可催办")
    expect(row.locator('button[data-action="remind"]')).to_have_count(0)
    shot(rep, "remind-contract")

    sup = page_as("sup1")
    sup.goto("/inbox")
    note = sup.locator('tr[data-kind="remind"]').first
    expect(note).to_contain_text(f"rep1 催办合同 {key} 的任务 主管审核。")
    expect(note).to_contain_text("留言：客户在等报价")
    shot(sup, "remind-inbox")

    # four hours on, in English
    clock.advance(hours=4)
    rep.reload()
    switch_language(rep, "en")
    row = rep.locator(f'tr[data-task-id="{review.id}"]')
    expect(row.locator('button[data-action="remind"]')).to_have_text("Remind")
    row.locator('input[name="message"]').fill("still waiting")
    row.locator('button[data-action="remind"]').click()
    expect(rep.locator(".flash-ok")).to_have_text("Reminder sent to sup1.")
    expect(rep.locator(".history-remind").first).to_contain_text("sent a reminder about")
    expect(rep.locator(".history-remind").first).to_contain_text("→ sup1: still waiting")
    shot(rep, "remind-contract")

    switch_language(sup, "en")
    sup.goto("/inbox")
    expect(sup.locator('tr[data-kind="remind"]').first).to_contain_text("rep1 reminds you of Supervisor review on")
    expect(sup.locator('tr[data-kind="remind"]').first).to_contain_text("Message: still waiting")
