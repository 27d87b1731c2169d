"""Compliance in headless Chromium: find a contract by customer, open it, see the path taken drawn on the
BPMN diagram and the event log, export the dossier PDF and read it; then the heatmap and the integrity check."""

from __future__ import annotations

import io

from playwright.sync_api import expect
from pypdf import PdfReader

from ..flow import Flow, approve, quote

CUSTOMER = "华东精密机械有限公司"


def _contract(rt):
    flow = Flow(rt, data={})
    flow.act("prepare_quote", "rep1", quote(customer_name=CUSTOMER))
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    other = Flow(rt, data={})
    other.act("prepare_quote", "rep2", quote(customer_name="Northwind Trading"))
    return flow


def test_compliance_answers_who_approved_and_on_what_data(rt, page_as, shot, tmp_path):
    flow = _contract(rt)
    key = flow.view().business_key
    page = page_as("audit1")
    page.get_by_role("link", name="合规审计").click()
    page.locator("input[name=customer]").fill("精密")
    page.locator("form[data-explorer] button[type=submit]").click()
    rows = page.locator("tr[data-contract]")
    expect(rows).to_have_count(1)
    rows.first.get_by_role("link", name=key).click()

    expect(page.locator("[data-chain=ok]")).to_be_visible()
    canvas = page.locator("#path-diagram.bpmn-ready")
    expect(canvas).to_be_visible()
    expect(page.locator("#path-diagram .djs-element.path-done[data-element-id=supervisor_review]")).to_have_count(1)
    expect(page.locator("#path-diagram .djs-element.path-current[data-element-id=draft_contract]")).to_have_count(1)
    assert page.locator("#path-diagram .djs-connection.path-flow").count() >= 3
    assert page.locator("#path-diagram .diagram-badge").count() >= 2
    decisions = page.locator("[data-decisions] tbody tr")
    expect(decisions).to_have_count(2)
    expect(decisions.nth(1)).to_contain_text("主管审核")
    expect(decisions.nth(1)).to_contain_text("supervisor_decision")
    assert page.locator("[data-events] tbody tr").count() >= 4
    shot(page, "compliance-instance")

    with page.expect_download() as info:
        page.locator("[data-export=pdf]").click()
    target = tmp_path / "dossier.pdf"
    info.value.save_as(target)
    # pypdf reads fpdf2's Identity-H CJK font a byte at a time: every character comes with a NUL (poppler's
    # pdftotext reads it cleanly); dropping the NULs leaves the text as a reader would copy it
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(target.read_bytes())).pages).replace("\x00", "")
    for needle in (key, CUSTOMER, "主管审核", "sup1"):
        assert needle in text, needle

    page.get_by_role("link", name="合同卡在哪里").click()
    expect(page.locator("#heat-diagram.bpmn-ready")).to_be_visible()
    assert page.locator("#heat-diagram .djs-shape[class*=heat-]").count() >= 3
    shot(page, "compliance-heatmap")

    page.get_by_role("link", name="完整性校验").click()
    page.locator("[data-action=verify]").click()
    expect(page.locator("[data-verify-result=ok]")).to_be_visible()
