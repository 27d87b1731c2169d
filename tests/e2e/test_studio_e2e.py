"""The studio editor in the browser (issue 4): a process owner raises the manager limit in the decision table,
replays the draft against history, checks and deploys it — new quotes follow the new limit, a quote started before
keeps the old one; adds a step to the contract stage with the BPMN palette and a new form; sees a problem marked on
the diagram and the deploy refused; the page in both languages; non-owners get 403.

Every edit goes through the editors' own UI (palette, context pad, decision-table cells, our side panel, the form
textarea); page.evaluate only reads what the page shows (a point of the diagram on the screen).
"""

from __future__ import annotations

import json

from playwright.sync_api import expect

from workflows.services import accounts, deployments, studio, tasks

from ..flow import Flow, approve, quote
from .test_lifecycle_e2e import switch_language

EDIT = "/studio/quote_to_cash/edit"
# the screen position of a point of the diagram (diagram coordinates, as in the BPMN's DI)
_SCREEN_POINT = """([x, y]) => {
  const layer = document.querySelector('[data-bpmn-canvas] .viewport');
  const point = layer.ownerSVGElement.createSVGPoint();
  point.x = x; point.y = y;
  const s = point.matrixTransform(layer.getScreenCTM());
  return [s.x, s.y];
}"""


def _open_editor(page) -> None:
    page.goto(EDIT)
    expect(page.locator("[data-bpmn-canvas][data-ready]")).to_be_visible()


def _find(page, text: str) -> None:
    """bpmn-js's own search (Ctrl+F on the canvas): selects the element and scrolls it into view."""
    page.locator("[data-bpmn-canvas] .djs-container").click(position={"x": 400, "y": 20})
    page.keyboard.press("Control+f")
    page.keyboard.type(text)
    expect(page.locator(".djs-search-results .djs-search-result").first).to_be_visible()
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")


def _save(page) -> None:
    page.locator("[data-action=save]").click()
    expect(page.locator("[data-dirty]")).to_be_hidden()
    expect(page.locator("[data-status]")).not_to_have_class("studio-status is-error")


def _check(page) -> None:
    page.locator("[data-action=check]").click()
    expect(page.locator("[data-problems-summary]")).not_to_be_empty()


def _at_approval(rt, amount_each: str, approve_manager: bool = False) -> Flow:
    """A quote of 2 × amount_each (no discount, low risk) through the supervisor's approval."""
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote(amount_each))
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    if approve_manager:
        flow.act("manager_review", "mgr1", approve("manager"))
    return flow


def test_owner_raises_the_manager_limit_replays_and_deploys(rt, page_as, shot):
    # history on version 1: two quotes of 80,000 went to manager review (limit 50,000), one of 150,000 too
    history = [_at_approval(rt, "40000.00", approve_manager=True) for _ in range(2)]
    big = _at_approval(rt, "75000.00", approve_manager=True)
    assert all("draft_contract" in f.open_specs() for f in [*history, big])
    before = Flow(rt)  # started before the deploy, on version 1

    page = page_as("owner1")
    _open_editor(page)
    page.locator("[data-tab='approval_matrix.dmn']").click()
    cell = page.locator("td[data-element-id='InputEntry_6_amount']")  # rule 6: amount > 50000 -> manager review
    expect(cell).to_have_text("> 50000")
    cell.click()
    page.keyboard.press("Control+a")
    page.keyboard.type("> 100000")
    page.locator("td[data-element-id='InputEntry_6_discount_pct']").click()
    expect(cell).to_have_text("> 100000")
    expect(page.locator("[data-dirty]")).to_be_visible()
    shot(page, "studio-dmn-edit")
    page.keyboard.press("Control+s")
    expect(page.locator("[data-dirty]")).to_be_hidden()
    saved = studio.draft(rt, "quote_to_cash")
    assert saved.revision == 1
    assert "&gt; 100000" in saved.files["approval_matrix.dmn"]
    assert "&gt; 50000" not in saved.files["approval_matrix.dmn"]

    # replay: the two 80,000 quotes would now skip manager review; the 150,000 one keeps it
    page.locator("[data-action=replay]").click()
    page.wait_for_url("**/studio/quote_to_cash/replay**")
    expect(page.locator("[data-count=different]")).to_have_text("2")
    manager_row = page.locator("tr[data-task=manager_review]")
    expect(manager_row).to_contain_text("经理审批")
    expect(manager_row.locator("td.num").first).to_have_text("2")
    shot(page, "studio-replay")

    _open_editor(page)
    _check(page)
    expect(page.locator("[data-problems] li[data-severity=error]")).to_have_count(0)
    page.locator("#deploy-comment").fill("Manager review from 100,000 (was 50,000)")
    page.locator("[data-action=deploy]").click()
    page.wait_for_url("**/studio/quote_to_cash")
    expect(page.locator(".flash").first).to_contain_text("2")
    old_id, new_id = (deployments.latest_deployment_id(rt, "quote_to_cash") - 1,
                      deployments.latest_deployment_id(rt, "quote_to_cash"))
    assert new_id > old_id

    # a quote of 80,000 started after the deploy skips manager review; the one started before still needs it
    after = _at_approval(rt, "40000.00")
    assert "manager_review" not in after.open_specs() and "draft_contract" in after.open_specs()
    before.act("prepare_quote", "rep1", quote("40000.00"))
    before.act("supervisor_review", "sup1", approve("supervisor"))
    assert before.open_specs() == {"manager_review"}
    assert before.view().deployment_version < after.view().deployment_version


def test_owner_adds_a_step_to_the_contract_stage(rt, page_as, shot):
    page = page_as("owner1")
    _open_editor(page)
    # drop a task from the palette on the flow from the contract check's gateway to the company signature,
    # in the legal lane (the flow's vertical segment at x=3801 runs through it)
    _find(page, "Contract check result")
    x, y = page.evaluate(_SCREEN_POINT, [3801, 800])
    page.locator(".djs-palette .entry[data-action='create.task']").click()
    page.mouse.move(x - 40, y - 40, steps=4)
    page.mouse.move(x, y, steps=6)
    page.mouse.down()
    page.mouse.up()
    expect(page.locator("[data-props] .prop-type")).to_have_text("Task")
    # a user task through the context pad's replace menu, named by typing on the shape
    page.locator(".djs-context-pad .entry[data-action='replace']").click()
    page.locator(".djs-popup [data-id='replace-with-user-task']").click()
    expect(page.locator("[data-props] .prop-type")).to_have_text("UserTask")
    new_id = page.locator("#prop-id").input_value()
    page.locator(f".djs-element[data-element-id='{new_id}']").dblclick()
    expect(page.locator(".djs-direct-editing-parent")).to_be_visible()
    page.keyboard.type("Final legal check / 法务终审")
    page.keyboard.press("Enter")
    expect(page.locator(".djs-direct-editing-parent")).to_be_hidden()
    # the owner finds the step by its new name (on a slow machine the edit's end may leave nothing selected)
    _find(page, "Final legal check")
    expect(page.locator("#prop-name")).to_have_value("Final legal check / 法务终审")

    # our side panel: id, a new form, stage and due date
    page.locator("#prop-id").fill("final_legal_check")
    page.locator("#prop-id").press("Tab")
    expect(page.locator("[data-props]")).to_have_attribute("data-element-id", "final_legal_check")
    page.locator("#prop-form").select_option("__new__")
    form_tab = page.locator("[data-tab='final_legal_check.schema.json']")
    expect(form_tab).to_have_attribute("aria-selected", "true")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Final legal check", "x-i18n": {"zh-CN": {"title": "法务终审"}},
        "type": "object", "required": ["final_check_note"], "additionalProperties": False,
        "properties": {"final_check_note": {"type": "string", "title": "Final check note",
                                            "x-i18n": {"zh-CN": {"title": "终审意见"}}}},
    }
    area = page.locator("[data-pane='final_legal_check.schema.json'] textarea.schema")
    area.fill(json.dumps(schema, ensure_ascii=False, indent=2)[:-3])  # not yet valid JSON
    expect(page.locator("[data-pane='final_legal_check.schema.json'] .json-status.is-error")).to_be_visible()
    area.fill(json.dumps(schema, ensure_ascii=False, indent=2))
    preview = page.locator("[data-preview='final_legal_check.schema.json']")
    expect(preview).to_contain_text("终审意见")
    shot(page, "studio-form-preview")

    page.locator("[data-tab='quote_to_cash.bpmn']").click()
    expect(page.locator("[data-props]")).to_have_attribute("data-element-id", "final_legal_check")
    page.locator("#prop-stage").select_option("contract")
    page.locator("#prop-dueKind").select_option("dueIn")
    page.locator("#prop-due").fill("P1D")
    page.locator("#prop-due").press("Tab")
    _check(page)
    expect(page.locator("[data-problems] li[data-severity=error]")).to_have_count(0)
    shot(page, "studio-new-step")
    page.locator("#deploy-comment").fill("Final legal check before the company signs")
    page.locator("[data-action=deploy]").click()
    page.wait_for_url("**/studio/quote_to_cash")

    # a new contract reaches the new step, in the legal role's queue
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    flow.act("draft_contract", "rep1", {"contract_no": "HT-2026-009", "contract_terms": "Standard terms",
                                        "payment_plan": [{"amount": "24000.00", "due_date": "2026-12-15"}],
                                        "sign_by": "2026-12-01"})
    flow.act("legal_contract_check", "legal1", {"contract_check_decision": "approve"})
    step = flow.task("final_legal_check")
    assert (step.role, step.stage, step.form) == ("legal", "contract", "final_legal_check.schema.json")
    assert step.due_at is not None
    queue = tasks.list_tasks(rt, accounts.get_user(rt, "legal1"), scope="roles")
    assert any(t.id == step.id for t in queue.items)
    flow.act("final_legal_check", "legal1", {"final_check_note": "OK"})
    assert flow.open_specs() == {"sign_company"}


def test_a_problem_is_marked_and_the_deploy_refused(rt, page_as):
    deployed = deployments.latest_deployment_id(rt, "quote_to_cash")
    page = page_as("owner1")
    _open_editor(page)
    x, y = page.evaluate(_SCREEN_POINT, [145, 830])  # the legal lane's header
    page.mouse.click(x, y)
    expect(page.locator("[data-props]")).to_have_attribute("data-element-id", "Lane_legal")
    expect(page.locator("#prop-role")).to_have_value("legal")
    page.locator("#prop-role").select_option("")
    expect(page.locator("[data-dirty]")).to_be_visible()
    _check(page)
    problem = page.locator("[data-problems] li[data-severity=error][data-element-id=Lane_legal]")
    expect(problem).to_contain_text("Legal / 法务")
    lane_class = page.locator(".djs-element[data-element-id=Lane_legal]").get_attribute("class") or ""
    assert "studio-problem-error" in lane_class
    page.locator("[data-tab='approval_matrix.dmn']").click()
    problem.locator("button").click()  # back to the diagram, the lane selected
    expect(page.locator("[data-tab='quote_to_cash.bpmn']")).to_have_attribute("aria-selected", "true")
    expect(page.locator("[data-props]")).to_have_attribute("data-element-id", "Lane_legal")

    page.locator("#deploy-comment").fill("Try without a role")
    page.locator("[data-action=deploy]").click()
    expect(page.locator("main > .flash-error")).to_be_visible()
    refused = page.locator("[data-problems] li[data-severity=error][data-element-id=Lane_legal]")
    expect(refused).to_be_visible()
    expect(page.locator("#deploy-comment")).to_have_value("Try without a role")
    expect(page.locator("[data-bpmn-canvas][data-ready]")).to_be_visible()
    assert "studio-problem-error" in (page.locator(".djs-element[data-element-id=Lane_legal]").get_attribute("class")
                                      or "")
    assert deployments.latest_deployment_id(rt, "quote_to_cash") == deployed


def test_the_editor_in_both_languages(rt, page_as, shot):
    page = page_as("owner1")
    _open_editor(page)
    expect(page.locator("[data-action=save]")).to_have_text("保存")
    expect(page.locator("[data-action=check]")).to_have_text("检查")
    expect(page.locator("[data-action=deploy]")).to_have_text("部署")
    expect(page.locator("[data-tab='approval_matrix.dmn'] .tab-kind")).to_have_text("决策表")
    expect(page.locator("[data-props]")).to_contain_text("属性")
    shot(page, "studio-editor")
    switch_language(page, "en")
    expect(page.locator("[data-bpmn-canvas][data-ready]")).to_be_visible()
    expect(page.locator("[data-action=save]")).to_have_text("Save")
    expect(page.locator("[data-tab='approval_matrix.dmn'] .tab-kind")).to_have_text("Decision table")
    shot(page, "studio-editor")


def test_non_owners_get_403(rt, page_as):
    for user, status in (("mgr1", 403), ("rep1", 403), ("owner1", 200)):
        # the browser's own session, without a page (a 403 page would log a console error)
        response = page_as(user).context.request.get(EDIT, max_redirects=0)
        assert response.status == status, user
