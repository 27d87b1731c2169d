"""The dossier PDF (workflows/services/dossier_pdf.py) and the BPMN DI layout it draws (workflows/engine/diagram.py).

No database: the dossier is built by hand around the real quote_to_cash.bpmn. The PDF needs Debian's
fonts-noto-cjk (installed by scripts/ensure-browser.sh, which `make test` runs first).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pypdf import PdfReader

from workflows import config
from workflows.engine import diagram
from workflows.services import dossier_pdf
from workflows.services.dossier import ChainCheck, Decision, Dossier, DossierEvent
from workflows.services.errors import Unavailable

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
CUSTOMER = "华东精密机械有限公司"
STEPS = [
    ("prepare_quote", "Prepare quote / 编制报价", "rep1", "sales_rep"),
    ("supervisor_review", "Supervisor review / 主管审核", "sup1", "supervisor"),
    ("manager_review", "Manager review / 经理审批", "mgr1", "manager"),
]
NO_DI_BPMN = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="t">
  <bpmn:process id="p" isExecutable="true">
    <bpmn:startEvent id="s" />
    <bpmn:sequenceFlow id="f" sourceRef="s" targetRef="e" />
    <bpmn:endEvent id="e" />
  </bpmn:process>
</bpmn:definitions>
"""


def quote_to_cash() -> bytes:
    return (config.bpmn_dir() / "quote_to_cash.bpmn").read_bytes()


def make_dossier(events: int = 36, language: str = "en", bpmn_xml: bytes | None = None) -> Dossier:
    log = []
    for i in range(events):
        spec_id, step_name, actor, role = STEPS[i % len(STEPS)]
        items = [{"product": "数控机床 CNC-500", "quantity": 2}] * (i % 3)
        data = {"comment": "看起来不错 " * (i % 4), "line_items": items}
        log.append(
            DossierEvent(
                seq=i + 1,
                at=T0 + timedelta(hours=i),
                actor=actor,
                role=role,
                action=("start", "claim", "complete")[i % 3],
                spec_id=spec_id,
                step_name=step_name,
                data=data,
                hash=f"{i:04x}" + "c0ffee" * 10,
            )
        )
    decisions = [
        Decision(
            at=T0 + timedelta(hours=2),
            actor="rep1",
            role="sales_rep",
            step_name=STEPS[0][1],
            spec_id="prepare_quote",
            inputs={"customer_name": CUSTOMER, "discount_pct": 5, "line_items": [{"product": "数控机床"}]},
            changes={},
        ),
        Decision(
            at=T0 + timedelta(hours=26),
            actor="sup1",
            role="supervisor",
            step_name=STEPS[1][1],
            spec_id="supervisor_review",
            inputs={"supervisor_decision": "approve", "supervisor_comment": "同意，价格合理。"},
            changes={"supervisor_decision": {"old": None, "new": "approve"}},
        ),
    ]
    return Dossier(
        business_key="Q-2026-00042",
        process_key="quote_to_cash",
        process_name="Quote to cash / 报价到回款",
        deployment_id=7,
        deployment_version=3,
        status="running",
        stage="approval",
        customer_name=CUSTOMER,
        amount=Decimal("1234567.89"),
        team="East / 华东",
        started_by="rep1",
        started_at=T0,
        completed_at=None,
        bpmn_xml=quote_to_cash() if bpmn_xml is None else bpmn_xml,
        done={"start_quote", "merge_quote", "prepare_quote", "compute_totals", "supervisor_review", "gw_supervisor"},
        current={"approval_matrix_task"},
        flows={
            "Flow_start_quote_to_merge_quote",
            "Flow_merge_quote_to_prepare_quote",
            "Flow_prepare_quote_to_compute_totals",
            "Flow_compute_totals_to_supervisor_review",
            "Flow_supervisor_review_to_gw_supervisor",
            "Flow_gw_supervisor_to_approval_matrix_task",
        },
        durations={"prepare_quote": timedelta(days=2, hours=3), "supervisor_review": timedelta(hours=5)},
        events=log,
        decisions=decisions,
        data={"customer_name": CUSTOMER, "amount": Decimal("1234567.89"), "need_manager": True},
        chain=ChainCheck(ok=True, events=events, message="intact"),
        generated_at=T0 + timedelta(days=3),
        generated_by="audit1",
        language=language,
    )


def pdf_text(pdf: bytes) -> tuple[int, str]:
    reader = PdfReader(io.BytesIO(pdf))
    # pypdf reads fpdf2's CID-keyed (CFF) font encoding one byte at a time and puts a NUL before each
    # character; poppler's pdftotext reads the same file cleanly. Drop the NULs.
    return len(reader.pages), "\n".join(page.extract_text() for page in reader.pages).replace("\x00", "")


@pytest.mark.parametrize("language, page_label", [("en", "Page 1/"), ("zh", "第 1/")])
def test_dossier_pdf_renders_text_and_spans_pages(language, page_label):
    d = make_dossier(events=36, language=language)
    pdf = dossier_pdf.render_pdf(d)

    assert pdf.startswith(b"%PDF-")
    pages, text = pdf_text(pdf)
    assert pages > 1
    for expected in ("Q-2026-00042", CUSTOMER, "主管审核", "sup1", page_label, "¥1,234,567.89", "c0ffee"):
        assert expected in text, expected
    assert ("Audit chain intact: 36 events" if language == "en" else "审计链完整：共 36 条事件") in text
    assert ("Event log" if language == "en" else "事件日志") in text
    assert "2026-11-24 11:00:00" in text  # event 34 (UTC), on a later page than the first
    assert "2d 3h" in text  # the time spent in prepare_quote, beside it in the diagram


def test_broken_chain_is_reported():
    d = make_dossier(events=3)
    d.chain = ChainCheck(ok=False, events=3, message="event 2: hash does not match")
    _, text = pdf_text(dossier_pdf.render_pdf(d))
    assert "Audit chain broken: event 2: hash does not match" in text


def test_quote_to_cash_layout():
    layout = diagram.parse_layout(quote_to_cash())

    review = layout.shape("supervisor_review")
    assert review is not None
    assert (review.kind, review.category) == ("userTask", "task")
    assert review.name == "Supervisor review / 主管审核"
    assert review.w > 0 and review.h > 0
    kinds = {s.id: s.kind for s in layout.shapes}
    assert kinds["start_quote"] == "startEvent"
    assert kinds["compute_totals"] == "scriptTask"
    assert kinds["approval_matrix_task"] == "businessRuleTask"
    assert kinds["gw_supervisor"] == "exclusiveGateway"
    assert kinds["split_reviews"] == "parallelGateway"
    assert kinds["payment_overdue"] == "boundaryEvent"
    assert layout.shape("payment_overdue").event == "timer"
    assert not layout.shape("payment_overdue").interrupting
    assert {c.kind for c in layout.containers} == {"participant", "lane"}
    assert any(c.id == "Lane_supervisor" and c.name == "Supervisor / 销售主管" for c in layout.containers)
    assert layout.edges and all(len(e.waypoints) >= 2 for e in layout.edges)
    assert any(e.id == "Flow_compute_totals_to_supervisor_review" for e in layout.edges)
    box = layout.bounds()
    assert box is not None and box.w > 1000 and box.h > 500


def test_bpmn_without_di_gives_an_empty_layout_and_the_pdf_says_so():
    layout = diagram.parse_layout(NO_DI_BPMN)
    assert layout.empty and layout.bounds() is None

    pages, text = pdf_text(dossier_pdf.render_pdf(make_dossier(events=3, bpmn_xml=NO_DI_BPMN)))
    assert "Diagram unavailable: the BPMN file has no diagram (BPMN DI)" in text
    assert "Q-2026-00042" in text and "主管审核" in text


@pytest.mark.parametrize(
    "xml, message",
    [
        (b"<bpmn:definitions xmlns:bpmn='x'><unclosed>", "not well-formed XML"),
        (b"", "empty"),
        (b"<?xml version='1.0'?><html><body/></html>", "not a BPMN file"),
        (
            b"<?xml version='1.0'?><!DOCTYPE d [<!ENTITY e 'x'>]>"
            b"<definitions xmlns='http://www.omg.org/spec/BPMN/20100524/MODEL'>&e;</definitions>",
            "DTDs and entity declarations",
        ),
    ],
)
def test_malformed_xml_raises_value_error(xml, message):
    with pytest.raises(ValueError, match=message):
        diagram.parse_layout(xml)


def test_pdf_renders_without_the_diagram_when_the_bpmn_does_not_parse():
    _, text = pdf_text(dossier_pdf.render_pdf(make_dossier(events=3, bpmn_xml=b"<definitions><unclosed>")))
    assert "Diagram unavailable: not well-formed XML" in text
    assert CUSTOMER in text and "主管审核" in text


def test_missing_font_names_the_debian_package(monkeypatch):
    monkeypatch.setattr(dossier_pdf, "FONT_DIRS", ("/nonexistent/fonts",))
    with pytest.raises(Unavailable, match="fonts-noto-cjk"):
        dossier_pdf.render_pdf(make_dossier(events=1))


def test_formatting_helpers():
    assert dossier_pdf._money(Decimal("1234567.891")) == "¥1,234,567.89"
    assert dossier_pdf._money(Decimal("-5")) == "-¥5.00"
    assert dossier_pdf._duration(timedelta(days=2, hours=3, minutes=10)) == "2d 3h"
    assert dossier_pdf._duration(timedelta(hours=5, minutes=7)) == "5h 7m"
    assert dossier_pdf._duration(timedelta(seconds=30)) == "<1m"
    shanghai = timezone(timedelta(hours=8))
    assert dossier_pdf._utc(datetime(2026, 1, 2, 19, 4, 5, tzinfo=shanghai)) == "2026-01-02 11:04:05"
    assert dossier_pdf._utc(datetime(2026, 1, 2, 11, 4, 5)) == "2026-01-02 11:04:05"  # naive: taken as UTC
    assert dossier_pdf._cut("x" * 400, 300) == "x" * 299 + "…"
