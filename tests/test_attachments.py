"""Attachments (附件): files in task forms, through the service layer, the web pages, the JSON API and both
storage backends (a local folder and a real S3-compatible server, moto, started here).

Refused uploads (too large, a type the field does not take, a name that is a path or hides control characters)
are refused with a message naming the field and keep nothing; a completion may only name files uploaded to its
own contract; the reference with the file's SHA-256 is in the task data and the audit events; a file is read
only by those who may see the contract; orders confirmed in writing (item 8) take the same path as signed ones.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from models import Attachment, AuditEvent
from webapp.formrender import localize_error
from webapp.messages import localize_message
from workflows import config, storage
from workflows.demo import sample_pdf
from workflows.forms import file_reference, parse_reference
from workflows.services import accounts, attachments, deployments, instances, tasks, tokens
from workflows.services.errors import Conflict, InvalidInput, NotFound, PermissionDenied

from .flow import PLAN, Flow, approve, quote
from .test_deploy import FORM, package
from .test_hostile_bpmn import refused

PDF = sample_pdf("Contract HT-2026-001", "Signed by both parties")
MAIL = (b"From: buyer@customer.example\r\nTo: rep1@lvyue.example\r\nDate: Thu, 26 Nov 2026 10:00:00 +0800\r\n"
        b"Subject: PO 4711 confirmed\r\nMessage-ID: <4711@customer.example>\r\n\r\nWe confirm order PO 4711.\r\n")


def png(width: int = 3, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xd0\x30\x30" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture
def store(rt, tmp_path) -> Iterator[storage.LocalStorage]:
    """A folder of this test's own, so what it keeps can be counted."""
    folder = storage.LocalStorage(tmp_path / "files")
    attachments.use_storage(rt, folder)
    yield folder
    attachments.use_storage(rt, None)


def blobs(folder: storage.LocalStorage) -> list[Path]:
    return sorted(p for p in folder.folder.rglob("*") if p.is_file()) if folder.folder.exists() else []


def rows(rt) -> list[Attachment]:
    with rt.read() as s:
        return list(s.scalars(select(Attachment).order_by(Attachment.id)))


def events(rt, instance_id: int, action: str) -> list[AuditEvent]:
    with rt.read() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.instance_id == instance_id,
                                                       AuditEvent.action == action).order_by(AuditEvent.id)))


def at_signature(rt) -> Flow:
    """A small contract (the supervisor alone approves it) waiting for the customer's signature (rep1's)."""
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    flow.act("draft_contract", "rep1", {"contract_no": "HT-2026-001", "contract_terms": "Standard terms",
                                        "payment_plan": PLAN, "sign_by": "2026-12-01"})
    flow.act("legal_contract_check", "legal1", {"contract_check_decision": "approve"})
    flow.act("sign_company", "mgr1", {"company_signatory": "刘洋", "company_signed_on": "2026-11-25"})
    assert flow.open_specs() == {"customer_signature"}
    return flow


def upload(rt, flow: Flow, name: str, content: bytes, spec: str = "customer_signature", user: str = "rep1",
           field: str | None = None) -> attachments.Attached:
    field = field or {"customer_signature": "customer_evidence", "customer_acceptance": "acceptance_certificate",
                      "accept_complaint": "evidence"}[spec]
    return attachments.attach(rt, flow.task(spec).id, flow.user(user), [attachments.Upload(field, name,
                                                                                          io.BytesIO(content))])


SIGNED = {"deal_confirmation": "signed_contract", "customer_signatory": "黄总 Mr Huang",
          "customer_signed_on": "2026-11-26"}


# --------------------------------------------------------------------------------------------- service layer


def test_a_signed_contract_is_kept_by_its_sha256_in_the_data_and_the_audit(rt, store, clock):
    flow = at_signature(rt)
    task = flow.task("customer_signature")
    done = upload(rt, flow, "合同 HT-2026-001（签字版）.pdf", PDF)
    assert done.errors == {}
    reference = done.references["customer_evidence"]
    digest = hashlib.sha256(PDF).hexdigest()
    assert parse_reference(reference) == attachments.FileRef(digest, "合同 HT-2026-001（签字版）.pdf", len(PDF),
                                                            "application/pdf")
    assert len(reference) < 300  # a reference, never the bytes
    [row] = rows(rt)
    assert (row.sha256, row.size, row.content_type, row.field, row.task_id, row.instance_id) == (
        digest, len(PDF), "application/pdf", "customer_evidence", task.id, flow.id)
    assert row.uploaded_by_id == flow.user("rep1").id and row.uploaded_at == clock.now()
    [blob] = blobs(store)
    assert blob.name == digest and blob.read_bytes() == PDF
    [attached] = events(rt, flow.id, "attach")
    assert attached.actor == "rep1" and attached.task_id == task.id
    assert attached.data == {"field": "customer_evidence", "name": "合同 HT-2026-001（签字版）.pdf", "size": len(PDF),
                             "content_type": "application/pdf", "sha256": digest, "reference": reference}

    flow.act("customer_signature", "rep1", dict(SIGNED, customer_evidence=reference))
    assert flow.open_specs() == {"file_contract"}
    assert flow.data()["customer_evidence"] == reference
    completed = events(rt, flow.id, "complete")[-1]
    assert completed.spec_id == "customer_signature"
    assert completed.data["form"]["customer_evidence"] == reference and digest in reference
    got = attachments.download(rt, flow.view().business_key, digest, flow.user("legal1"))
    assert (got.name, got.content_type, got.size, got.inline) == (row.name, "application/pdf", len(PDF), True)
    assert b"".join(got.chunks) == PDF


def test_the_same_bytes_are_stored_once_however_often_they_are_uploaded(rt, store):
    first, second = at_signature(rt), at_signature(rt)
    a = upload(rt, first, "signed.pdf", PDF).references["customer_evidence"]
    b = upload(rt, second, "copy of signed.pdf", PDF).references["customer_evidence"]
    again = upload(rt, first, "signed.pdf", PDF).references["customer_evidence"]
    assert a == again and parse_reference(a).sha256 == parse_reference(b).sha256
    assert len(blobs(store)) == 1
    assert [(r.instance_id, r.name) for r in rows(rt)] == [(first.id, "signed.pdf"), (second.id, "copy of signed.pdf"),
                                                           (first.id, "signed.pdf")]


def test_every_kind_the_signature_takes(rt, store):
    flow = at_signature(rt)
    for name, content, kind in (("scan.png", png(), "image/png"), ("photo.JPG", b"\xff\xd8\xff\xe0" + b"\0" * 64,
                                                                    "image/jpeg"),
                                ("confirmation.eml", MAIL, "message/rfc822"), ("signed.pdf", PDF, "application/pdf")):
        done = upload(rt, flow, name, content)
        assert done.errors == {}, (name, done.errors)
        assert parse_reference(done.references["customer_evidence"]).content_type == kind


LIMIT_MB = "0.01"  # 10,485 bytes


@pytest.mark.parametrize(("name", "content", "message"), [
    ("big.pdf", PDF + b"%" * 20_000, "the file is larger than 10 KB, the most this field takes"),
    ("page.pdf", b"<html><script>alert(1)</script></html>", "this kind of file is not accepted here; accepted: PDF, "
                                                             "PNG, JPEG, EML"),
    ("drawing.pdf", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
     "this kind of file is not accepted here"),
    ("setup.pdf", b"MZ\x90\x00" + b"\0" * 100, "this kind of file is not accepted here"),
    ("archive.pdf", b"PK\x03\x04" + b"\0" * 100, "this kind of file is not accepted here"),
    ("contract.png", PDF, "the file is a PDF but its name ends in '.png'; name it .pdf"),
    ("contract", PDF, "the file is a PDF but its name ends in '(nothing)'; name it .pdf"),
    ("empty.pdf", b"", "the file is empty"),
    ("../../etc/passwd.pdf", PDF, "the file name must be a plain name, without folders"),
    ("..\\..\\windows\\win.pdf", PDF, "the file name must be a plain name, without folders"),
    ("/etc/cron.d/x.pdf", PDF, "the file name must be a plain name, without folders"),
    ("C:\\Users\\x.pdf", PDF, "the file name must be a plain name, without folders"),
    ("..", PDF, "the file name must be a plain name, without folders"),
    ("a\x00b.pdf", PDF, "the file name contains control characters"),
    ("line\nbreak.pdf", PDF, "the file name contains control characters"),
    ("invoice\u202efdp.pdf", PDF, "the file name contains control characters"),
    ("in\u200bvoice.pdf", PDF, "the file name contains control characters"),
    ("in\u0085voice.pdf", PDF, "the file name contains control characters"),
    ("in\u061cvoice.pdf", PDF, "the file name contains control characters"),
    ("x" * 197 + ".pdf", PDF, "the file name is too long (at most 200 characters)"),
    ("", PDF, "the file has no name"),
], ids=["over the size limit", "html", "svg", "an executable", "a zip", "pdf named .png", "no extension", "empty",
        "traversal", "windows traversal", "absolute path", "drive path", "dot dot", "nul", "newline", "bidi override",
        "zero width space", "c1 control", "arabic letter mark", "long name", "no name"])
def test_refused_uploads_say_why_and_keep_nothing(rt, store, monkeypatch, name, content, message):
    monkeypatch.setenv("LVYUE_ATTACHMENTS_MAX_MB", LIMIT_MB)
    flow = at_signature(rt)
    done = upload(rt, flow, name, content)
    assert done.references == {}
    assert done.errors["customer_evidence"].startswith(message), done.errors
    assert rows(rt) == [] and blobs(store) == [] and events(rt, flow.id, "attach") == []
    assert re.search("[\u4e00-\u9fff]", localize_message(done.errors["customer_evidence"], "zh-CN"))  # in Chinese


def test_one_task_takes_at_most_so_many_uploads(rt, store):
    flow = at_signature(rt)
    for i in range(attachments.MAX_UPLOADS_PER_TASK - 1):  # flow.signed() in at_signature uploaded none yet
        assert upload(rt, flow, f"page-{i}.pdf", sample_pdf(f"page {i}")).references
    assert upload(rt, flow, "last.pdf", sample_pdf("last")).references
    with pytest.raises(InvalidInput) as err:
        upload(rt, flow, "one-too-many.pdf", sample_pdf("too many"))
    assert err.value.errors == {"customer_evidence": f"at most {attachments.MAX_UPLOADS_PER_TASK} files per task"}
    assert len(rows(rt)) == attachments.MAX_UPLOADS_PER_TASK


def test_start_forms_and_settings_are_checked(monkeypatch):
    from workflows import config
    from workflows.engine.package import PackageError, build_package

    files = deployments.collect_files(config.bpmn_dir() / "complaint.bpmn")  # the process with a start form
    start = json.loads(files["complaint_start.schema.json"])
    start["properties"]["scan"] = {"type": "string", "format": "data-url", "title": "Scan"}
    files["complaint_start.schema.json"] = json.dumps(start).encode()
    with pytest.raises(PackageError, match="a start form cannot have file fields"):
        build_package(files, known_roles=accounts.ROLE_CODES)
    for bad in ("inf", "nan", "-1", "0"):
        monkeypatch.setenv("LVYUE_ATTACHMENTS_MAX_MB", bad)
        with pytest.raises(ValueError, match="LVYUE_ATTACHMENTS_MAX_MB must be a positive number"):
            config.attachment_settings()


def test_a_field_takes_only_its_own_kinds(rt, store):
    flow = Flow(rt)
    flow.to_collection()  # through customer_acceptance: the certificate takes PDF and images, no e-mail
    complaint = Flow(rt, "complaint", starter="svc1", data={
        "contract_key": flow.view().business_key, "customer_name": "华东机械", "complaint_summary": "Noise",
        "severity": "medium"})
    assert upload(rt, complaint, "mail.eml", MAIL, spec="accept_complaint", user="svc1").errors == {}
    other = at_signature(rt)
    other.act("customer_signature", "rep1", other.signed())
    other.act("file_contract", "legal1", {"filing_no": "BA-1", "filed_on": "2026-11-27"})
    other.act("execute_delivery", "dlv1", {"delivered_on": "2026-12-10"})
    done = upload(rt, other, "mail.eml", MAIL, spec="customer_acceptance")
    assert done.errors == {"acceptance_certificate": "this kind of file is not accepted here; accepted: PDF, PNG, "
                                                     "JPEG"}
    wrong = attachments.attach(rt, other.task("customer_acceptance").id, other.user("rep1"),
                               [attachments.Upload("acceptance_note", "x.pdf", io.BytesIO(PDF))])
    assert wrong.errors == {"acceptance_note": "this field does not take files"}


def test_only_who_may_complete_the_task_uploads_into_it(rt, store):
    flow = at_signature(rt)
    task = flow.task("customer_signature")
    with pytest.raises(PermissionDenied):
        attachments.attach_file(rt, task.id, flow.user("sup1"), "customer_evidence", "x.pdf", PDF)
    tasks.claim(rt, task.id, flow.user("rep1"))
    with pytest.raises(Conflict, match="is claimed by rep1"):
        attachments.attach_file(rt, task.id, flow.user("rep2"), "customer_evidence", "x.pdf", PDF)
    flow.act("customer_signature", "rep1", flow.signed())
    with pytest.raises(Conflict, match="already completed"):
        attachments.attach_file(rt, task.id, flow.user("rep1"), "customer_evidence", "y.pdf", PDF)
    with pytest.raises(NotFound):
        attachments.attach_file(rt, 999_999, flow.user("rep1"), "customer_evidence", "y.pdf", PDF)
    assert len(rows(rt)) == 1  # the one flow.signed() uploaded


def test_a_file_is_evidence_of_its_own_task_and_field_only(rt, store):
    """After a rejected delivery the acceptance is asked for again: the rejection letter uploaded on the first
    pass, or the signed contract, is no acceptance certificate of the second."""
    flow = at_signature(rt)
    signed_ref = flow.signed()["customer_evidence"]
    flow.act("customer_signature", "rep1", dict(SIGNED, customer_evidence=signed_ref))
    flow.act("file_contract", "legal1", {"filing_no": "BA-0001", "filed_on": "2026-11-27"})
    flow.act("execute_delivery", "dlv1", {"delivered_on": "2026-12-10"})
    letter = upload(rt, flow, "rejection.pdf", sample_pdf("Rejected"), spec="customer_acceptance")
    letter_ref = letter.references["acceptance_certificate"]
    flow.act("customer_acceptance", "rep1", {"acceptance": "rejected", "acceptance_note": "damaged in transport",
                                             "acceptance_certificate": letter_ref})
    flow.act("execute_delivery", "dlv1", {"delivered_on": "2026-12-14"})
    again = flow.task("customer_acceptance")
    for old in (letter_ref, signed_ref):
        with pytest.raises(InvalidInput) as err:
            tasks.complete(rt, again.id, flow.user("rep1"), {"acceptance": "accepted", "acceptance_certificate": old})
        assert err.value.errors == {
            "acceptance_certificate": "no such file was uploaded with this field of this task; upload it with the form"}
    assert flow.open_specs() == {"customer_acceptance"}
    flow.act("customer_acceptance", "rep1", flow.accepted())


def test_a_completion_names_only_files_uploaded_to_its_own_contract(rt, store):
    flow, other = at_signature(rt), at_signature(rt)
    mine = upload(rt, flow, "signed.pdf", PDF).references["customer_evidence"]
    theirs = upload(rt, other, "their-secret.pdf", sample_pdf("Other customer")).references["customer_evidence"]
    ref = parse_reference(mine)
    made_up = file_reference("0" * 64, "signed.pdf", 10, "application/pdf")
    cases = {
        "another contract's file": (theirs, "no such file was uploaded with this field of this task"),
        "a file never uploaded": (made_up, "no such file was uploaded with this field of this task"),
        "a different name": (file_reference(ref.sha256, "other.pdf", ref.size, ref.content_type),
                             "no such file was uploaded with this field of this task"),
        "a forged type": (file_reference(ref.sha256, ref.name, ref.size, "image/png"),
                          "no such file was uploaded with this field of this task"),
        "the bytes themselves": ("data:application/pdf;base64,JVBERi0xLjQK", "must be a file uploaded with the form"),
        "text": ("signed.pdf", "must be a file uploaded with the form"),
    }
    version = flow.view().version
    for label, (value, message) in cases.items():
        with pytest.raises(InvalidInput) as refusal:
            flow.act("customer_signature", "rep1", dict(SIGNED, customer_evidence=value))
        assert refusal.value.errors == {"customer_evidence": refusal.value.errors["customer_evidence"]}, label
        assert refusal.value.errors["customer_evidence"].startswith(message), (label, refusal.value.errors)
        shown = localize_error(localize_message(refusal.value.errors["customer_evidence"], "zh-CN"), "zh-CN")
        assert re.search("[\u4e00-\u9fff]", shown), shown
    with pytest.raises(InvalidInput) as refusal:
        flow.act("customer_signature", "rep1", SIGNED)  # the evidence is required
    assert refusal.value.errors == {"customer_evidence": "this field is required"}
    assert flow.view().version == version and flow.open_specs() == {"customer_signature"}
    # the blob went missing from storage: refused until it is uploaded again
    (store.folder / ref.sha256[:2] / ref.sha256).unlink()
    with pytest.raises(InvalidInput, match="has errors") as refusal:
        flow.act("customer_signature", "rep1", dict(SIGNED, customer_evidence=mine))
    assert refusal.value.errors == {"customer_evidence": "the file is missing from the file storage; upload it again"}
    again = upload(rt, flow, "signed.pdf", PDF).references["customer_evidence"]
    assert again == mine
    flow.act("customer_signature", "rep1", dict(SIGNED, customer_evidence=mine))
    assert flow.open_specs() == {"file_contract"}


def test_a_tighter_limit_set_after_the_upload_still_holds_at_completion(rt, store, monkeypatch):
    flow = at_signature(rt)
    big = PDF + b"%" * 20_000
    reference = upload(rt, flow, "signed.pdf", big).references["customer_evidence"]
    monkeypatch.setenv("LVYUE_ATTACHMENTS_MAX_MB", LIMIT_MB)
    with pytest.raises(InvalidInput) as refusal:
        flow.act("customer_signature", "rep1", dict(SIGNED, customer_evidence=reference))
    assert refusal.value.errors == {"customer_evidence": "the file is larger than 10 KB, the most this field takes"}
    monkeypatch.setenv("LVYUE_ATTACHMENTS_TYPES", "png,jpeg")
    monkeypatch.delenv("LVYUE_ATTACHMENTS_MAX_MB")
    with pytest.raises(InvalidInput) as refusal:
        flow.act("customer_signature", "rep1", dict(SIGNED, customer_evidence=reference))
    assert refusal.value.errors == {"customer_evidence": "this kind of file is not accepted here; accepted: PNG, JPEG"}


def test_who_may_read_a_file_is_who_may_see_the_contract(rt, store):
    flow = at_signature(rt)
    flow.act("customer_signature", "rep1", flow.signed())
    key, digest = flow.view().business_key, parse_reference(flow.data()["customer_evidence"]).sha256
    accounts.create_user(rt, "rep_west", "password-1", ["sales_rep"], team="west")
    # legal1 files it now; rep2, a rep of the same team, may open the (completed) signature task it came with
    allowed = {"rep1", "rep2", "sup1", "mgr1", "dir1", "legal1", "audit1", "admin", "owner1"}
    for username in [name for name, *_ in accounts.DEMO_USERS] + ["rep_west"]:
        user = accounts.get_user(rt, username)
        if username in allowed:
            assert b"".join(attachments.download(rt, key, digest, user).chunks).startswith(b"%PDF-"), username
            with pytest.raises(PermissionDenied if username == "rep2" else NotFound):  # no file: no task of theirs
                attachments.download(rt, key, "f" * 64, user)
        else:
            for sha in (digest, "f" * 64, "../../etc/passwd"):  # refused alike, whether the file exists or not
                with pytest.raises(PermissionDenied):
                    attachments.download(rt, key, sha, user)
            assert attachments.of_contract(rt, key, user) == []
    listed = attachments.of_contract(rt, key, accounts.get_user(rt, "legal1"))
    assert [f.name for f in listed] == ["signed-contract.pdf"]
    assert attachments.of_contract(rt, key, accounts.get_user(rt, "rep2")) == []  # the contract's list: not theirs
    with pytest.raises(NotFound):
        attachments.download(rt, "Q-2099-99999", digest, accounts.get_user(rt, "admin"))


def test_a_deal_confirmed_in_writing_follows_the_same_path(rt, store):
    """Item 8: a purchase order instead of a signed contract; the reference is required, and then filing,
    delivery, acceptance and collection run as for a signed contract."""
    flow = at_signature(rt)
    order = upload(rt, flow, "PO-4711.eml", MAIL).references["customer_evidence"]
    written = {"deal_confirmation": "written_confirmation", "customer_signatory": "采购部 王敏",
               "customer_signed_on": "2026-11-26", "customer_evidence": order}
    with pytest.raises(InvalidInput) as refusal:
        flow.act("customer_signature", "rep1", written)
    assert refusal.value.errors == {"confirmation_reference": "this field is required"}
    flow.act("customer_signature", "rep1", dict(written, confirmation_reference="PO 4711, e-mail of 26 Nov 2026"))
    assert flow.data()["deal_confirmation"] == "written_confirmation"
    flow.act("file_contract", "legal1", {"filing_no": "BA-0001", "filed_on": "2026-11-27"})
    flow.through_delivery()
    assert flow.open_specs() == set() and flow.view().status == "running"  # collection waits on its timers
    assert [spec for spec in flow.view().path if spec in ("customer_signature", "file_contract", "execute_delivery",
                                                          "customer_acceptance")] == [
        "customer_signature", "file_contract", "execute_delivery", "customer_acceptance"]


# --------------------------------------------------------------------------------------------- deploy checks


@pytest.mark.parametrize(("node", "fragment"), [
    ({"type": "string", "format": "data-url", "x-attachment": {"accept": ["text/html"]}}, "'x-attachment.accept'"),
    ({"type": "string", "format": "data-url", "x-attachment": {"maxBytes": -1}}, "'x-attachment.maxBytes'"),
    ({"type": "string", "format": "data-url", "x-attachment": {"maxBytes": True}}, "'x-attachment.maxBytes'"),
    ({"type": "string", "format": "data-url", "x-attachment": {"path": "/etc"}}, "unknown keys: path"),
    ({"type": "string", "format": "data-url", "x-attachment": "pdf"}, "must be an object"),
    ({"type": "integer", "x-attachment": {}}, "belongs on a file field"),
    ({"type": "array", "items": {"type": "string", "format": "data-url"}}, "inside list rows are not supported"),
], ids=["html accepted", "negative size", "boolean size", "unknown key", "not an object", "not a file field",
        "files in a list"])
def test_bad_file_fields_are_refused_at_deploy(shared_rt, node, fragment):
    schema = dict(FORM, properties={"quantity": FORM["properties"]["quantity"], "scan": node})
    refused(shared_rt, package(fill__schema__json=json.dumps(schema).encode()), "fill.schema.json", fragment)


# --------------------------------------------------------------------------------------------- web pages


def page(response) -> str:
    return response.get_data(as_text=True)


def post_signature(web, flow: Flow, data: dict, files: dict | None = None):
    task = flow.task("customer_signature")
    form = {f"f.{k}": v for k, v in data.items()}
    form["version"] = str(task.instance_version)
    for field, (name, content) in (files or {}).items():
        form[f"upload.{field}"] = (io.BytesIO(content), name)
    return web.post(f"/tasks/{task.id}/complete", form, page=f"/tasks/{task.id}",
                    content_type="multipart/form-data")


def test_upload_through_the_task_form_then_preview_and_download(rt, store, login):
    flow = at_signature(rt)
    task = flow.task("customer_signature")
    rep = login("rep1")
    shown = rep.text(f"/tasks/{task.id}")
    assert 'enctype="multipart/form-data"' in shown and 'type="file"' in shown
    assert 'name="upload.customer_evidence"' in shown and 'accept="application/pdf,image/png' in shown
    assert "可上传：PDF, PNG, JPEG, EML；最大 20 MB。" in shown

    done = post_signature(rep, flow, SIGNED, {"customer_evidence": ("签字版 合同.pdf", PDF)})
    assert done.status_code == 302, page(done)[:2000]
    digest = hashlib.sha256(PDF).hexdigest()
    assert parse_reference(flow.data()["customer_evidence"]).sha256 == digest
    key = flow.view().business_key

    contract = rep.text(f"/contracts/{key}")
    assert "签字版 合同.pdf" in contract and digest in contract and "data-file-preview=\"pdf\"" in contract
    assert "确认方式" in contract and "签署合同" in contract  # the summary names how the deal was confirmed
    assert "上传了文件至" in contract  # the attach event in the history
    got = rep.get(f"/attachments/{key}/{digest}")
    assert got.status_code == 200 and got.data == PDF
    assert got.headers["Content-Type"] == "application/pdf"
    assert got.headers["Content-Disposition"] == ("inline; filename=\"___ __.pdf\"; "
                                                  "filename*=UTF-8''%E7%AD%BE%E5%AD%97%E7%89%88%20%E5%90%88%E5%90%8C.pdf")
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in got.headers["Cache-Control"]
    assert got.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in got.headers["Content-Security-Policy"]
    assert "script-src" not in got.headers["Content-Security-Policy"]  # default-src 'none': no script runs in it
    saved = rep.get(f"/attachments/{key}/{digest}?download=1")
    assert saved.headers["Content-Disposition"].startswith("attachment;") and saved.data == PDF
    # the page's own policy still forbids framing by others, and lets the preview come from this site only
    assert "frame-ancestors 'none'" in rep.get(f"/contracts/{key}").headers["Content-Security-Policy"]

    legal = login("legal1")
    filing = legal.text(f"/tasks/{flow.task('file_contract').id}")
    assert "签字版 合同.pdf" in filing and f"/attachments/{key}/{digest}" in filing  # legal sees what to file
    assert legal.get(f"/attachments/{key}/{digest}").status_code == 200
    assert login("fin1").get(f"/attachments/{key}/{digest}").status_code == 403
    assert login("dlv1").get(f"/attachments/{key}/{digest}").status_code == 403


def test_an_image_is_shown_inline_and_an_email_is_only_downloaded(rt, store, login):
    flow = at_signature(rt)
    rep = login("rep1")
    key = flow.view().business_key
    picture = upload(rt, flow, "scan.png", png()).references["customer_evidence"]
    mail = upload(rt, flow, "PO 4711.eml", MAIL).references["customer_evidence"]
    shown = rep.text(f"/tasks/{flow.task('customer_signature').id}")
    assert shown.count('data-file-preview="image"') == 1  # the contract's files panel: the image only
    image = rep.get(f"/attachments/{key}/{parse_reference(picture).sha256}")
    assert image.headers["Content-Type"] == "image/png" and image.headers["Content-Disposition"].startswith("inline;")
    eml = rep.get(f"/attachments/{key}/{parse_reference(mail).sha256}")
    assert eml.headers["Content-Type"] == "message/rfc822"
    assert eml.headers["Content-Disposition"] == "attachment; filename=\"PO 4711.eml\"; filename*=UTF-8''PO%204711.eml"


@pytest.mark.parametrize(("name", "content", "shown"), [
    ("big.pdf", PDF + b"%" * 20_000, "文件超过此处允许的最大大小 10 KB"),
    ("page.html.pdf", b"<html><body>hi</body></html>", "此处不接受这种文件；可上传：PDF, PNG, JPEG, EML"),
    ("../../../etc/passwd.pdf", PDF, "文件名不能包含文件夹路径"),
    ("evil\u202efdp.pdf", PDF, "文件名包含控制字符"),
], ids=["too large", "forbidden type", "path traversal", "bidi override"])
def test_refused_uploads_show_the_reason_on_the_form_and_keep_what_was_typed(rt, store, login, monkeypatch, name,
                                                                             content, shown):
    monkeypatch.setenv("LVYUE_ATTACHMENTS_MAX_MB", LIMIT_MB)
    flow = at_signature(rt)
    rep = login("rep1")
    before = flow.view().version
    answer = post_signature(rep, flow, SIGNED, {"customer_evidence": (name, content)})
    text = page(answer)
    assert answer.status_code == 422, text[:2000]
    assert shown in text and "有文件未被接受，任务未完成" in text
    assert 'value="黄总 Mr Huang"' in text  # what was typed stays
    assert rows(rt) == [] and blobs(store) == [] and flow.view().version == before


def test_a_refused_other_field_keeps_the_uploaded_file(rt, store, login):
    flow = at_signature(rt)
    rep = login("rep1")
    answer = post_signature(rep, flow, dict(SIGNED, deal_confirmation="written_confirmation"),
                            {"customer_evidence": ("po.pdf", PDF)})
    text = page(answer)
    assert answer.status_code == 422 and 'id="f.confirmation_reference-error"' in text  # a written confirmation's
    reference = file_reference(hashlib.sha256(PDF).hexdigest(), "po.pdf", len(PDF), "application/pdf")
    assert f'value="{reference}"' in text and "已上传：" in text  # the file is not asked for again
    again = post_signature(rep, flow, dict(SIGNED, deal_confirmation="written_confirmation",
                                           confirmation_reference="PO 4711", customer_evidence=reference))
    assert again.status_code == 302, page(again)[:2000]
    assert flow.data()["customer_evidence"] == reference and len(rows(rt)) == 1


def test_a_body_larger_than_any_upload_is_a_clear_413(rt, store, login, monkeypatch):
    monkeypatch.setenv("LVYUE_ATTACHMENTS_MAX_MB", LIMIT_MB)
    flow = at_signature(rt)
    rep = login("rep1")
    answer = post_signature(rep, flow, SIGNED, {"customer_evidence": ("huge.pdf", PDF + b"%" * 2_200_000)})
    assert answer.status_code == 413
    assert "上传的文件超过允许的大小（每个文件最大 10 KB）" in page(answer)
    assert rows(rt) == [] and flow.open_specs() == {"customer_signature"}
    # other forms keep the app's smaller limit
    assert rep.post("/inbox/read", {"x": "y" * 1_100_000}).status_code == 413


def test_forged_upload_fields_are_refused(rt, store, login):
    flow = at_signature(rt)
    rep = login("rep1")
    task = flow.task("customer_signature")
    for field in ("customer_signatory", "nope"):
        answer = rep.post(f"/tasks/{task.id}/complete", {"version": str(task.instance_version),
                                                         f"upload.{field}": (io.BytesIO(PDF), "x.pdf")},
                          page=f"/tasks/{task.id}", content_type="multipart/form-data")
        # rep1 reads Chinese: the refusal names the forged field in it
        assert answer.status_code == 422 and f"表单字段 &#39;upload.{field}&#39; 不是本表单的文件字段" in page(answer)
    assert rows(rt) == []


def test_a_form_drawn_in_spiffarena_renders_and_takes_files_within_its_limits(rt, store, login):
    """A plain SpiffArena file field ({"type": "string", "format": "data-url"}) and one narrowed by
    x-attachment (PNG only, at most 2 KB) on a process of its own."""
    schema = dict(FORM, properties={**FORM["properties"], "scan": {"title": "Scan", "type": "string",
                                                                   "format": "data-url"},
                                    "photo": {"title": "Photo", "type": "string", "format": "data-url",
                                              "x-attachment": {"accept": ["image/png"], "maxBytes": 2048}}},
                  required=["quantity", "scan"])
    deployments.deploy_files(rt, package(fill__schema__json=json.dumps(schema).encode()),
                             accounts.get_user(rt, "owner1"))
    started = instances.start_instance(rt, "mini", accounts.get_user(rt, "rep1"), {})
    [task] = tasks.open_tasks_of_instance(rt, started.instance_id)
    rep = login("rep1")
    shown = rep.text(f"/tasks/{task.id}")
    assert 'name="upload.scan"' in shown and 'name="upload.photo" accept="image/png,.png"' in shown

    def send(files: dict):
        form = {"f.quantity": "3", "version": str(task.instance_version)}
        form.update({f"upload.{k}": (io.BytesIO(v[1]), v[0]) for k, v in files.items()})
        return rep.post(f"/tasks/{task.id}/complete", form, page=f"/tasks/{task.id}",
                        content_type="multipart/form-data")

    refused_answer = send({"scan": ("a.pdf", PDF), "photo": ("big.png", png(400, 400) + b"\0" * 3000)})
    assert refused_answer.status_code == 422 and "文件超过此处允许的最大大小 2 KB" in page(refused_answer)
    refused_answer = send({"scan": ("a.pdf", PDF), "photo": ("a.pdf", PDF)})
    assert refused_answer.status_code == 422 and "可上传：PNG" in page(refused_answer)
    done = send({"scan": ("a.pdf", PDF), "photo": ("dot.png", png())})
    assert done.status_code == 302, page(done)[:2000]
    data = instances.instance_data(rt, started.instance_id)
    assert parse_reference(data["scan"]).name == "a.pdf" and parse_reference(data["photo"]).content_type == "image/png"


# --------------------------------------------------------------------------------------------- the JSON API


def test_the_api_refuses_a_reference_to_a_file_that_was_not_uploaded(rt, store, client):
    flow = at_signature(rt)
    bot = accounts.add_user(rt, None, "crm_bot", None, ["sales_rep"], team="east", service_account=True)
    token = tokens.issue_token(rt, bot.id, "crm", None)
    task = flow.task("customer_signature")
    headers = {"Authorization": f"Bearer {token}"}
    made_up = file_reference("a" * 64, "signed.pdf", 1234, "application/pdf")
    answer = client.post(f"/api/v1/tasks/{task.id}/complete", headers=headers,
                         json={"data": dict(SIGNED, customer_evidence=made_up)})
    assert answer.status_code == 422
    assert answer.get_json()["errors"] == {
        "customer_evidence": "no such file was uploaded with this field of this task; upload it with the form"}
    answer = client.post(f"/api/v1/tasks/{task.id}/complete", headers=headers,
                         json={"data": dict(SIGNED, customer_evidence="data:application/pdf;base64,JVBERi0K")})
    assert answer.status_code == 422
    assert answer.get_json()["errors"] == {"customer_evidence": "must be a file uploaded with the form"}
    shown = client.get(f"/api/v1/tasks/{task.id}", headers=headers).get_json()
    assert shown["form_schema"]["properties"]["customer_evidence"]["format"] == "data-url"
    # a file uploaded to the contract (by the browser, here by the service) completes it through the API
    reference = attachments.attach_file(rt, task.id, accounts.get_user(rt, "crm_bot"), "customer_evidence",
                                        "signed.pdf", PDF)
    answer = client.post(f"/api/v1/tasks/{task.id}/complete", headers=headers,
                         json={"data": dict(SIGNED, customer_evidence=reference)})
    assert answer.status_code == 200, answer.get_json()
    assert flow.data()["customer_evidence"] == reference


# --------------------------------------------------------------------------------------------- S3 storage


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory) -> Iterator[str]:
    """A real S3-compatible server (moto) on a free local port, for this module's tests."""
    port = _free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, "moto's S3 server did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def s3(rt, s3_endpoint, monkeypatch) -> Iterator[storage.S3Storage]:
    """The configured storage pointed at the S3 server (a bucket of this test's own), as an operator would."""
    bucket = f"lvyue-{os.urandom(4).hex()}"
    for name, value in (("BUCKET", bucket), ("ENDPOINT", s3_endpoint), ("REGION", "us-east-1"),
                        ("ACCESS_KEY", "test-key"), ("SECRET_KEY", "test-secret"), ("PREFIX", "lvyue/")):
        monkeypatch.setenv(f"LVYUE_ATTACHMENTS_S3_{name}", value)
    found = storage.from_settings()
    assert isinstance(found, storage.S3Storage) and attachments.storage_of(rt) is found
    found.client.create_bucket(Bucket=bucket)
    yield found


def _objects(s3: storage.S3Storage) -> list[str]:
    return [o["Key"] for o in s3.client.list_objects_v2(Bucket=s3.bucket).get("Contents", [])]


def test_s3_storage_keeps_each_file_once_under_its_hash(s3):
    digest = hashlib.sha256(PDF).hexdigest()
    assert not s3.exists(digest)
    s3.put(digest, io.BytesIO(PDF), "application/pdf")
    s3.put(digest, io.BytesIO(PDF), "application/pdf")
    assert s3.exists(digest) and _objects(s3) == [f"lvyue/{digest[:2]}/{digest}"]
    with s3.open(digest) as stream:
        assert stream.read() == PDF
    with pytest.raises(FileNotFoundError):
        s3.open("0" * 64)
    with pytest.raises(ValueError):
        s3.exists("../../x")


def test_upload_complete_and_download_with_s3_storage(rt, s3, login):
    flow = at_signature(rt)
    rep = login("rep1")
    done = post_signature(rep, flow, SIGNED, {"customer_evidence": ("signed.pdf", PDF)})
    assert done.status_code == 302, page(done)[:2000]
    other = at_signature(rt)
    assert post_signature(rep, other, SIGNED, {"customer_evidence": ("same.pdf", PDF)}).status_code == 302
    digest = hashlib.sha256(PDF).hexdigest()
    assert _objects(s3) == [f"lvyue/{digest[:2]}/{digest}"]  # two contracts, one object
    got = rep.get(f"/attachments/{flow.view().business_key}/{digest}")
    assert got.status_code == 200 and got.data == PDF and got.headers["Content-Type"] == "application/pdf"
    assert login("fin1").get(f"/attachments/{flow.view().business_key}/{digest}").status_code == 403
    s3.client.delete_object(Bucket=s3.bucket, Key=f"lvyue/{digest[:2]}/{digest}")
    assert rep.get(f"/attachments/{flow.view().business_key}/{digest}").status_code == 404


def test_the_settings_read_from_the_environment(monkeypatch, tmp_path):
    for name in ("MAX_MB", "TYPES", "DIR", "S3_BUCKET"):
        monkeypatch.delenv(f"LVYUE_ATTACHMENTS_{name}", raising=False)
    default = config.attachment_settings()
    assert default.max_bytes == 20 * 2**20 and default.s3_bucket is None
    assert default.types == ("application/pdf", "image/png", "image/jpeg", "message/rfc822")
    assert default.folder == config.PROJECT_ROOT / "instance" / "attachments"
    monkeypatch.setenv("LVYUE_ATTACHMENTS_TYPES", "pdf, PNG")
    monkeypatch.setenv("LVYUE_ATTACHMENTS_DIR", str(tmp_path))
    monkeypatch.setenv("LVYUE_ATTACHMENTS_MAX_MB", "1.5")
    assert config.attachment_settings().types == ("application/pdf", "image/png")
    assert config.attachment_settings().max_bytes == 1_572_864
    assert isinstance(storage.from_settings(), storage.LocalStorage)
    assert storage.from_settings().folder == tmp_path
    monkeypatch.setenv("LVYUE_ATTACHMENTS_TYPES", "exe")
    with pytest.raises(ValueError, match="LVYUE_ATTACHMENTS_TYPES: unknown type 'exe'"):
        config.attachment_settings()
    monkeypatch.setenv("LVYUE_ATTACHMENTS_TYPES", "pdf")
    monkeypatch.setenv("LVYUE_ATTACHMENTS_MAX_MB", "-1")
    with pytest.raises(ValueError, match="LVYUE_ATTACHMENTS_MAX_MB must be a positive number"):
        config.attachment_settings()


def test_counting_helpers_see_what_they_count(rt, store):
    """blobs() and rows() are what the refusal tests rely on: they do see a kept file."""
    flow = at_signature(rt)
    upload(rt, flow, "signed.pdf", PDF)
    assert len(blobs(store)) == 1 and len(rows(rt)) == 1
    with rt.read() as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "attach")) == 1


def test_the_command_line_uploads_a_file_into_the_form(rt, db_url, tmp_path):
    from click.testing import CliRunner

    from workflows.cli import main

    flow = at_signature(rt)
    task = flow.task("customer_signature")
    scan = tmp_path / "signed scan.png"
    scan.write_bytes(png())
    data = json.dumps(SIGNED)
    bad = CliRunner().invoke(main, ["--db", db_url, "complete", str(task.id), "--as", "rep1", "--data", data,
                                    "--file", f"customer_evidence={tmp_path / 'missing.pdf'}"])
    assert bad.exit_code != 0 and "cannot read" in bad.output
    wrong = tmp_path / "notes.pdf"
    wrong.write_bytes(b"just text")
    refused_run = CliRunner().invoke(main, ["--db", db_url, "complete", str(task.id), "--as", "rep1", "--data", data,
                                            "--file", f"customer_evidence={wrong}"])
    assert refused_run.exit_code == 1 and "customer_evidence: this kind of file is not accepted" in refused_run.output
    done = CliRunner().invoke(main, ["--db", db_url, "complete", str(task.id), "--as", "rep1", "--data", data,
                                     "--file", f"customer_evidence={scan}"])
    assert done.exit_code == 0, done.output
    assert parse_reference(flow.data()["customer_evidence"]).name == "signed scan.png"


def test_a_new_pass_asks_for_a_new_file(rt, store, login):
    """After a rejected delivery the acceptance comes round again: the rejection letter is not offered as the
    acceptance certificate (file fields are never pre-filled from an earlier pass)."""
    flow = at_signature(rt)
    flow.act("customer_signature", "rep1", flow.signed())
    flow.act("file_contract", "legal1", {"filing_no": "BA-1", "filed_on": "2026-11-27"})
    flow.act("execute_delivery", "dlv1", {"delivered_on": "2026-12-10"})
    flow.act("customer_acceptance", "rep1", flow.accepted(acceptance="rejected", acceptance_note="scratches"))
    flow.act("execute_delivery", "dlv1", {"delivered_on": "2026-12-12"})
    shown = login("rep1").text(f"/tasks/{flow.task('customer_acceptance').id}")
    assert 'name="f.acceptance_certificate" value=""' in shown and "data-file-current" not in shown
    assert ">scratches</textarea>" in shown  # other fields are pre-filled as before


def test_an_unreachable_object_storage_is_a_clear_503_that_keeps_what_was_typed(rt, login, monkeypatch):
    monkeypatch.setenv("LVYUE_ATTACHMENTS_S3_BUCKET", "lvyue-gone")
    monkeypatch.setenv("LVYUE_ATTACHMENTS_S3_ENDPOINT", f"http://127.0.0.1:{_free_port()}")  # nothing listens
    monkeypatch.setenv("LVYUE_ATTACHMENTS_S3_ACCESS_KEY", "k")
    monkeypatch.setenv("LVYUE_ATTACHMENTS_S3_SECRET_KEY", "s")
    monkeypatch.setenv("LVYUE_ATTACHMENTS_S3_REGION", "us-east-1")
    flow = at_signature(rt)
    answer = post_signature(login("rep1"), flow, SIGNED, {"customer_evidence": ("signed.pdf", PDF)})
    text = page(answer)
    assert answer.status_code == 503 and "无法连接文件存储，未保存任何内容，请稍后重试" in text
    assert 'value="黄总 Mr Huang"' in text and rows(rt) == [] and flow.open_specs() == {"customer_signature"}


def test_every_refusal_of_the_attachments_service_reads_in_chinese():
    from .service_messages import raised_messages, untranslated

    assert len(raised_messages("workflows/services/attachments.py")) >= 10
    assert untranslated("workflows/services/attachments.py") == []
