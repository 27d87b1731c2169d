"""Attachments in the browser: the rep records a deal the customer confirmed by e-mail (item 8) on the signature
form, where a file over the size limit, a file of a forbidden type and a file whose name is a path are refused
next to the field while everything typed stays; the accepted PDF is previewed on the contract page, with its
SHA-256, and the history; the acceptance certificate is a photo shown inline; finance, who has no part in the
contract, is refused the file."""

from __future__ import annotations

import hashlib
import re

from playwright.sync_api import expect

from workflows.demo import sample_pdf
from workflows.forms import parse_reference

from ..flow import Flow, quote
from ..test_attachments import LIMIT_MB, at_signature, png
from .test_lifecycle_e2e import attach, choose, field, submit, switch_language

ORDER_PDF = sample_pdf("Purchase order PO 4711", "We confirm the order of contract HT-2026-001")
_FORBIDDEN = re.compile(r"status of 403")


def _fill_signature(page) -> None:
    choose(page, "deal_confirmation", "written_confirmation")
    field(page, "customer_signatory").fill("采购部 王敏")
    field(page, "customer_signed_on").fill("2026-11-26")
    field(page, "confirmation_reference").fill("PO 4711，2026-11-26 邮件")


def _refused(page, message: str) -> None:
    expect(page.locator("[data-problem]")).to_contain_text("有文件未被接受，任务未完成")
    expect(page.locator('[id="f.customer_evidence-error"]')).to_contain_text(message)
    expect(field(page, "customer_signatory")).to_have_value("采购部 王敏")  # what was typed stays
    expect(field(page, "confirmation_reference")).to_have_value("PO 4711，2026-11-26 邮件")
    expect(page.locator("input[type=radio][value=written_confirmation]")).to_be_checked()


def test_written_confirmation_refusals_preview_and_access(rt, page_as, shot, monkeypatch, browser_errors):
    monkeypatch.setenv("LVYUE_ATTACHMENTS_MAX_MB", LIMIT_MB)  # 10 KB, so a "large" file is quick to send
    flow = at_signature(rt)
    key = flow.view().business_key
    task = flow.task("customer_signature")

    rep = page_as("rep1")
    rep.goto(f"/tasks/{task.id}")
    expect(rep.locator(".file-limits")).to_contain_text("可上传：PDF, PNG, JPEG, EML；最大 10 KB。")
    _fill_signature(rep)
    attach(rep, "customer_evidence", "扫描件.pdf", ORDER_PDF + b"%" * 20_000)
    submit(rep)
    _refused(rep, "文件超过此处允许的最大大小 10 KB")
    shot(rep, "attachments-too-large")

    attach(rep, "customer_evidence", "order.pdf", b"<html><script>alert(1)</script></html>", mime="text/html")
    submit(rep)
    _refused(rep, "此处不接受这种文件；可上传：PDF, PNG, JPEG, EML")

    # a browser sends only a file's own name; a forged request from the same session may send a path
    forged = rep.request.post(f"/tasks/{task.id}/complete", multipart={
        "csrf_token": rep.locator('input[name="csrf_token"]').first.get_attribute("value"),
        "version": str(task.instance_version), "f.deal_confirmation": "written_confirmation",
        "f.customer_signatory": "采购部 王敏", "f.customer_signed_on": "2026-11-26", "f.confirmation_reference": "PO",
        "upload.customer_evidence": {"name": "../../../etc/cron.d/evil.pdf", "mimeType": "application/pdf",
                                     "buffer": ORDER_PDF}})
    assert forged.status == 422 and "文件名不能包含文件夹路径" in forged.text(), forged.text()[:2000]
    assert flow.open_specs() == {"customer_signature"}

    attach(rep, "customer_evidence", "PO 4711 确认邮件.pdf", ORDER_PDF)
    submit(rep)
    expect(rep.locator(".flash-ok")).to_be_visible()
    reference = flow.data()["customer_evidence"]
    digest = hashlib.sha256(ORDER_PDF).hexdigest()
    assert parse_reference(reference).sha256 == digest and parse_reference(reference).name == "PO 4711 确认邮件.pdf"

    rep.goto(f"/contracts/{key}")
    expect(rep.locator("[data-confirmation]")).to_have_text("客户书面确认（邮件、采购订单） · PO 4711，2026-11-26 邮件")
    item = rep.locator(f'[data-attachment="{digest}"]')
    expect(item.locator("[data-file-link]")).to_have_text("PO 4711 确认邮件.pdf")
    expect(item).to_contain_text(digest)
    expect(rep.locator(".history-attach").first).to_contain_text("上传了文件至")
    expect(rep.locator(".history-attach").first).to_contain_text("PO 4711 确认邮件.pdf")
    with rep.expect_response(lambda r: r.url.endswith(f"/attachments/{key}/{digest}")) as preview:
        item.locator("summary").click()  # the preview opens: the PDF loads in its frame, from this site only
    assert preview.value.status == 200 and preview.value.headers["content-type"] == "application/pdf"
    fetched = rep.request.get(f"/attachments/{key}/{digest}")  # the same session's bytes: the file as uploaded
    assert fetched.status == 200 and fetched.body() == ORDER_PDF
    assert fetched.headers["content-disposition"].startswith("inline;")
    expect(item.locator('iframe[data-file-preview="pdf"]')).to_be_visible()
    shot(rep, "attachments-contract")
    rep.goto(f"/contracts/{key}")  # the preview closed again: a click must not wait on the PDF viewer's frame
    switch_language(rep, "en")
    expect(rep.locator("[data-confirmation]")).to_contain_text(
        "Customer's written confirmation (e-mail, purchase order)")
    expect(rep.locator(".history-attach").first).to_contain_text("attached a file to")
    shot(rep, "attachments-contract")

    # the signed file is what legal files next: it is on the filing task's page, in its preview frame
    legal = page_as("legal1")
    legal.goto(f"/tasks/{flow.task('file_contract').id}")
    expect(legal.locator(f'[data-attachment="{digest}"] [data-file-link]')).to_have_text("PO 4711 确认邮件.pdf")
    expect(legal.locator(".instructions")).to_contain_text("客户以书面确认代替签署（PO 4711，2026-11-26 邮件）")

    # finance has no part in the contract: the link is refused
    fin = page_as("fin1")
    answer = fin.goto(f"/attachments/{key}/{digest}")
    assert answer is not None and answer.status == 403
    expect(fin.locator("main, body").first).to_contain_text("fin1 与 " + key + " 无关")
    refused = [e for e in browser_errors if _FORBIDDEN.search(e)]
    assert len(refused) <= 1, browser_errors  # the browser logs the refused page as a console error
    for e in refused:
        browser_errors.remove(e)


def test_an_acceptance_certificate_photo_is_shown_on_the_form_after_a_refused_note(rt, page_as, shot):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    flow.act("supervisor_review", "sup1", {"supervisor_decision": "approve"})
    flow.through_contract()
    flow.act("execute_delivery", "dlv1", {"delivered_on": "2026-12-10"})
    task = flow.task("customer_acceptance")
    photo = png(40, 30)

    rep = page_as("rep1")
    rep.goto(f"/tasks/{task.id}")
    choose(rep, "acceptance", "rejected")  # a rejection needs a note: left out, the form comes back
    attach(rep, "acceptance_certificate", "验收单.png", photo, mime="image/png")
    submit(rep)
    expect(rep.locator('[id="f.acceptance_note-error"]')).to_be_visible()
    # the photo was kept: the form shows it inline and does not ask for it again
    current = rep.locator('[data-file-field="acceptance_certificate"]')
    expect(current.locator("[data-file-current]")).to_contain_text("验收单.png")
    expect(current.locator("[data-sha256]")).to_have_attribute("data-sha256", hashlib.sha256(photo).hexdigest())
    image = current.locator('img[data-file-preview="image"]')
    expect(image).to_be_visible()
    rep.wait_for_function("img => img.complete && img.naturalWidth === 40", arg=image.element_handle())
    shot(rep, "attachments-certificate")
    choose(rep, "acceptance", "accepted")
    submit(rep)
    expect(rep.locator(".flash-ok")).to_be_visible()
    assert parse_reference(flow.data()["acceptance_certificate"]).name == "验收单.png"
