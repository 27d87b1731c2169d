"""Batch approval (批量审批) in the browser: the supervisor ticks two reviews in the role queue, confirms
them (contract, customer, amount listed), and the results page shows both approved; the contract's
history marks the approval as part of a batch — in Chinese, then in English."""

from __future__ import annotations

from playwright.sync_api import expect

from ..flow import Flow, quote
from .test_lifecycle_e2e import switch_language


def test_the_supervisor_approves_two_reviews_at_once(rt, page_as, shot):
    flows = []
    for _ in range(3):
        flow = Flow(rt)
        flow.act("prepare_quote", "rep1", quote())
        flows.append(flow)
    chosen = [f.task("supervisor_review").id for f in flows[:2]]
    left = flows[2].task("supervisor_review").id

    sup = page_as("sup1")
    sup.goto("/tasks?scope=roles")
    for task_id in chosen:
        sup.locator(f'tr[data-task-id="{task_id}"] input[type="checkbox"]').check()
    expect(sup.locator('button[data-action="batch-approve"]')).to_have_text("批量通过")
    sup.locator('button[data-action="batch-approve"]').click()

    expect(sup.locator("h1")).to_have_text("批量审批：确认")
    for flow in flows[:2]:
        expect(sup.locator(".batch")).to_contain_text(flow.started.business_key)
    expect(sup.locator(f'tr[data-task-id="{left}"]')).to_have_count(0)
    expect(sup.locator('tr[data-outcome="ready"]')).to_have_count(2)
    sup.locator('textarea[name="comment"]').fill("同意，常规报价")
    shot(sup, "batch-confirm")
    sup.locator('button[data-action="batch-confirm"]').click()

    expect(sup.locator("h1")).to_have_text("批量审批：结果")
    expect(sup.locator('tr[data-outcome="approved"]')).to_have_count(2)
    expect(sup.locator("[data-summary]")).to_contain_text("已批准 2 个")
    shot(sup, "batch-results")
    assert all("supervisor_review" not in f.open_specs() for f in flows[:2])
    assert flows[2].task("supervisor_review").status == "open"

    sup.locator(f'tr[data-task-id="{chosen[0]}"] a[href^="/contracts/"]').click()
    expect(sup.locator(".history-complete [data-batch]").first).to_have_text("（批量审批，共 2 个任务）")

    switch_language(sup, "en")
    expect(sup.locator(".history-complete [data-batch]").first).to_have_text("in a batch approval of 2 tasks")
    sup.goto("/tasks?scope=roles")
    expect(sup.locator('button[data-action="batch-approve"]')).to_have_text("Approve selected")
    expect(sup.locator(f'tr[data-task-id="{left}"] input[type="checkbox"]')).to_have_count(1)
