"""Withdraw (撤回) and return to an earlier step (驳回到指定节点) in the browser, in both languages: the rep pulls
back a quote before the supervisor acts; the manager sends the contract back to the supervisor with a comment,
sees which steps are closed and why, and the history records both."""

from __future__ import annotations

from playwright.sync_api import expect

from ..flow import Flow, approve, quote
from .test_lifecycle_e2e import switch_language


def _done(flow: Flow, spec_id: str) -> int:
    from sqlalchemy import select

    from models import TaskRow

    with flow.rt.read() as s:
        return s.scalar(select(TaskRow.id).where(TaskRow.instance_id == flow.id, TaskRow.spec_id == spec_id,
                                                 TaskRow.status == "completed").order_by(TaskRow.id.desc()))


def test_the_rep_withdraws_a_quote_before_review(rt, page_as, shot):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    rep = page_as("rep1")
    rep.goto(f"/tasks/{_done(flow, 'prepare_quote')}")
    panel = rep.locator("[data-withdraw-panel]")
    expect(panel).to_contain_text("撤回")
    shot(rep, "withdraw-panel")
    panel.locator('button[data-action="withdraw"]').click()
    expect(rep.locator(".flash-ok")).to_have_text("已撤回：此环节已为您重新打开。")
    expect(rep.locator("[data-holder]")).to_contain_text("王小明")
    expect(rep.locator(".history-withdraw").first).to_contain_text("撤回了")
    assert flow.open_specs() == {"prepare_quote"}

    # complete it again; in English the supervisor approves and the rep's page says why it is too late
    rep.locator('button[data-action="complete"]').click()
    expect(rep.locator(".flash-ok")).to_be_visible()
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    switch_language(rep, "en")
    rep.goto(f"/tasks/{_done(flow, 'prepare_quote')}")
    expect(rep.locator("[data-withdraw-refused]")).to_contain_text("can no longer be withdrawn: sup1 has since "
                                                                   "completed 'Supervisor review")
    expect(rep.locator('button[data-action="withdraw"]')).to_have_count(0)


def test_the_manager_returns_the_contract_to_the_supervisor(rt, page_as, shot):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote(total_price="150000.00"))
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    review = flow.task("manager_review")
    mgr = page_as("mgr1")
    mgr.goto(f"/tasks/{review.id}")
    panel = mgr.locator("[data-return-panel]")
    panel.locator("summary").click()
    expect(panel.locator('[data-target="prepare_quote"] input')).to_be_enabled()
    panel.locator('[data-target="supervisor_review"] input').check()
    # the browser asks for the required comment before anything is sent
    panel.locator('button[data-action="return"]').click()
    assert flow.open_specs() == {"manager_review"}
    panel.locator("textarea[name=comment]").fill("折扣超出政策，请主管复核")
    shot(mgr, "return-panel")
    panel.locator('button[data-action="return"]').click()
    expect(mgr.locator(".flash-ok")).to_have_text("已驳回：合同已回到所选环节。")
    history = mgr.locator(".history-return_to_step").first
    expect(history).to_contain_text("驳回合同，自")
    expect(history).to_contain_text("主管审核: 折扣超出政策，请主管复核")
    assert flow.open_specs() == {"supervisor_review"}

    sup = page_as("sup1")
    switch_language(sup, "en")
    sup.goto(f"/tasks/{flow.task('supervisor_review').id}")
    expect(sup.locator(".history-return_to_step").first).to_contain_text("returned the contract from")
    sup.locator('input[name="f.supervisor_decision"][value="approve"]').check()
    sup.locator('button[data-action="complete"]').click()
    expect(sup.locator(".flash-ok")).to_be_visible()
    assert flow.open_specs() == {"manager_review"}


def test_closed_steps_say_why_in_both_languages(rt, page_as, shot):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    flow.through_contract()
    delivery = flow.task("execute_delivery")
    dlv = page_as("dlv1")
    dlv.goto(f"/tasks/{delivery.id}")
    panel = dlv.locator("[data-return-panel]")
    panel.locator("summary").click()
    expect(panel.locator('[data-target="draft_contract"] input')).to_be_disabled()
    expect(panel.locator('[data-target="draft_contract"]')).to_contain_text("已关闭：「客户签署」已完成")
    expect(panel.locator('[data-target="file_contract"] input')).to_be_enabled()
    shot(dlv, "return-closed")
    switch_language(dlv, "en")
    dlv.goto(f"/tasks/{delivery.id}")
    dlv.locator("[data-return-panel] summary").click()
    expect(dlv.locator('[data-target="draft_contract"]')).to_contain_text(
        "Closed: 'Customer signature' has been completed, and the process does not reopen what came before it.")
