"""Substitutes (委托/代理) in the browser: a supervisor sets a time away and names a rep; the rep finds the
supervisor's reviews in their queue marked "on behalf of", may not approve the one they prepared (four eyes),
approves another; the manager sees who is away; when the range ends the worker's sweep gives back what is left
and the history says so — in Chinese, and in English."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.sync_api import expect

from workflows.services import accounts, substitutes, tasks

from ..flow import Flow, quote
from .test_lifecycle_e2e import choose, expect_done, submit, switch_language

MIDNIGHT = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # the end of the test clock's first day in Shanghai


def _history(page, action: str):
    """The newest entry of the contract's history for ``action`` (the one that carries the on-behalf line)."""
    return page.locator(f".history-{action}", has=page.locator("[data-on-behalf]")).first


def _review_held_by_sup1(rt, author: str) -> tasks.TaskItem:
    flow = Flow(rt, starter=author)
    flow.act("prepare_quote", author, quote(customer_name=f"{author} 的客户"))  # each rep quotes their own customer
    return tasks.claim(rt, flow.task("supervisor_review").id, accounts.get_user(rt, "sup1"))


def test_a_supervisor_away_and_the_rep_standing_in(rt, clock, page_as, shot):
    own = _review_held_by_sup1(rt, "rep1")  # rep1 prepared this one: four eyes
    other = _review_held_by_sup1(rt, "rep2")
    left = _review_held_by_sup1(rt, "rep2")

    sup = page_as("sup1")
    sup.locator('.mainnav a[href="/me/away"]').click()
    expect(sup.locator("h1")).to_have_text("外出与代理人")
    expect(sup.locator("[data-help]")).to_contain_text("尚未认领的任务仍留在角色队列")
    sup.locator("#substitute").select_option("rep1")
    expect(sup.locator("#first_day")).to_have_value("2026-11-23")
    sup.locator("#reason").fill("年假")
    sup.locator("[data-action=set-away]").click()
    expect(sup.locator(".flash-ok")).to_have_text("已保存：您外出期间由 rep1 代办您的任务。")
    row = sup.locator("[data-my-ranges] tbody tr").first
    expect(row.locator('[data-state="active"]')).to_have_text("外出中")
    expect(row).to_contain_text("年假")
    shot(sup, "away-mine")

    rep = page_as("rep1")
    rep.goto("/tasks")
    for task in (own, other, left):
        expect(rep.locator(f'tr[data-task-id="{task.id}"] [data-on-behalf]')).to_have_text("代 sup1 办理")
    shot(rep, "away-substitute-queue")

    rep.locator(f'tr[data-task-id="{own.id}"] a.task-link').click()
    expect(rep.locator(".task-meta [data-on-behalf]")).to_have_text("代 sup1 办理")
    expect(rep.locator("[data-four-eyes]")).to_contain_text("四眼原则")  # held, but not rep1's to approve
    handed = _history(rep, "substitute")
    expect(handed).to_contain_text("转交代理人")
    expect(handed).to_contain_text("sup1 → rep1 · 代 sup1 办理 · 至 2026年11月23日: 年假")

    rep.goto(f"/tasks/{other.id}")
    choose(rep, "supervisor_decision", "approve")
    submit(rep)
    expect_done(rep)

    mgr = page_as("mgr1")
    mgr.goto("/me/away")
    mgr.locator('.subnav a[href="/away"]').click()
    away_row = mgr.locator('[data-who-is-away] tr[data-user="sup1"]')
    expect(away_row).to_contain_text("外出中")
    expect(away_row).to_contain_text("rep1")
    expect(away_row.locator("td.num")).to_have_text("2")  # own and left; other was approved
    shot(mgr, "away-team")

    rep.goto("/inbox")
    expect(rep.locator('tr[data-kind="substitute"]').first).to_contain_text("sup1 外出：由您代其办理合同")

    switch_language(rep, "en")
    rep.goto("/tasks")
    expect(rep.locator(f'tr[data-task-id="{left.id}"] [data-on-behalf]')).to_have_text("on behalf of sup1")
    rep.goto(f"/tasks/{left.id}")
    expect(_history(rep, "substitute")).to_contain_text("handed to a substitute")
    expect(_history(rep, "substitute")).to_contain_text("on behalf of sup1 · through Nov 23, 2026")
    shot(rep, "away-substitute-task")

    # midnight: the range ends and the worker's sweep gives back what rep1 still holds
    clock.set(MIDNIGHT)
    report = substitutes.apply_due(rt)
    assert (report.handed_back, report.closed) == (2, 1)
    rep.goto("/tasks")
    expect(rep.locator(f'tr[data-task-id="{left.id}"]')).to_have_count(0)
    expect(rep.locator(f'tr[data-task-id="{own.id}"]')).to_have_count(0)

    sup.goto("/tasks")
    expect(sup.locator(f'tr[data-task-id="{left.id}"]')).to_be_visible()
    expect(sup.locator("[data-on-behalf]")).to_have_count(0)
    sup.goto(f"/tasks/{left.id}")
    back = _history(sup, "substitute_end")
    expect(back).to_contain_text("由代理人交还")
    expect(back).to_contain_text("rep1 → sup1 · 代 sup1 办理至此结束")
    sup.goto("/me/away")
    expect(sup.locator("[data-my-ranges] tbody tr").first.locator('[data-state="ended"]')).to_have_text("已结束")
    switch_language(sup, "en")
    sup.goto(f"/tasks/{left.id}")
    expect(_history(sup, "substitute_end")).to_contain_text("handed back from a substitute")
    shot(sup, "away-history")
