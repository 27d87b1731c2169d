"""The compliance pages over HTTP: find a contract, read it on its diagram, export it, check the record,
read the four-eyes report and the heatmap; every page answers in both languages."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from sqlalchemy import text

from workflows.services import accounts, tasks

from .flow import Flow, approve, quote


@pytest.fixture
def contract(rt):
    flow = Flow(rt, data={})
    flow.act("prepare_quote", "rep1", quote(customer_name="华东精密机械有限公司"))
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    return flow


@pytest.fixture
def auditor(login, rt):
    accounts.set_language(rt, accounts.get_user(rt, "audit1").id, "en")
    return login("audit1")


def test_the_explorer_finds_a_contract_by_customer(auditor, contract):
    key = contract.view().business_key
    page = auditor.text("/compliance/?customer=精密")
    assert f'data-contract="{key}"' in page and f'href="/compliance/contracts/{key}"' in page
    assert 'data-status-count="running">Running 1<' in page or 'data-status-count="running">running 1<' in page
    assert 'data-contract="' not in auditor.text("/compliance/?customer=Nobody")
    bad = auditor.get("/compliance/?from=yesterday")
    assert bad.status_code == 422 and "is not a date" in bad.get_data(as_text=True)


def test_the_instance_page_shows_path_decisions_events_and_version(auditor, contract):
    key = contract.view().business_key
    page = auditor.text(f"/compliance/contracts/{key}")
    assert 'data-chain="ok"' in page
    state = json.loads(re.search(r'<script type="application/json" id="path-diagram-state">(.*?)</script>', page,
                                 re.S).group(1))
    assert {"prepare_quote", "supervisor_review"} <= set(state["done"]) and state["current"] == ["draft_contract"]
    assert "supervisor_review" in state["labels"]
    assert "华东精密机械有限公司" in page
    assert "supervisor_decision" in page and "Data after this step" in page
    assert f'href="/compliance/contracts/{key}/files/quote_to_cash.bpmn"' in page
    xml = auditor.get(f"/compliance/contracts/{key}/diagram.bpmn")
    assert xml.mimetype == "application/xml" and b'id="supervisor_review"' in xml.data
    assert auditor.get(f"/compliance/contracts/{key}/files/nope.bpmn").status_code == 404
    assert auditor.get("/compliance/contracts/NOPE-1").status_code == 404


def test_a_tampered_record_shows_on_the_page_and_in_verification(auditor, rt, contract):
    key = contract.view().business_key
    with rt.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'mgr1' WHERE instance_id = :i AND action = 'complete'"),
                     {"i": contract.id})
    assert 'data-chain="broken"' in auditor.text(f"/compliance/contracts/{key}")
    result = auditor.post("/compliance/integrity", {"key": key}, page="/compliance/integrity")
    body = result.get_data(as_text=True)
    assert result.status_code == 200 and 'data-verify-result="broken"' in body and 'data-break="altered"' in body
    everything = auditor.post("/compliance/integrity", {"key": ""}, page="/compliance/integrity")
    assert 'data-verify-result="broken"' in everything.get_data(as_text=True)


def test_verification_of_an_intact_record(auditor, contract):
    body = auditor.post("/compliance/integrity", {}, page="/compliance/integrity").get_data(as_text=True)
    assert 'data-verify-result="ok"' in body
    refused = auditor.client.post("/compliance/integrity", data={"key": ""})
    assert refused.status_code == 400, "CSRF token required"


def test_exports(auditor, contract):
    key = contract.view().business_key
    response = auditor.get(f"/compliance/contracts/{key}/events.csv")
    assert response.mimetype == "text/csv" and f"events-{key}.csv" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][:3] == ["chain", "seq", "at"] and [r[1] for r in rows[1:]] == [str(i) for i in range(1, len(rows))]
    assert any("华东精密机械有限公司" in r[8] for r in rows[1:])
    period = auditor.get("/compliance/events.csv?from=2000-01-01&to=2100-01-01")
    assert period.status_code == 200 and len(period.get_data(as_text=True).splitlines()) > len(rows)
    assert auditor.get("/compliance/events.csv?from=2000-01-01").status_code == 422
    assert auditor.get("/compliance/events.csv?from=2001-01-01&to=2000-01-01").status_code == 422
    pdf = auditor.get(f"/compliance/contracts/{key}/dossier.pdf")
    assert pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")


def test_four_eyes_page_lists_an_override(auditor, rt, login):
    boss = accounts.create_user(rt, "boss", "pw-boss-12345", ["sales_rep", "supervisor", "admin"], team="east")
    assert "No case" in auditor.text("/compliance/four-eyes")
    flow = Flow(rt, starter="boss", data={})
    flow.act("prepare_quote", "boss", quote())
    tasks.complete(rt, flow.task("supervisor_review").id, boss, approve("supervisor"),
                   override_reason="Only supervisor in the office this week")
    page = auditor.text("/compliance/four-eyes")
    assert "Only supervisor in the office this week" in page and 'class="flagged"' in page
    assert flow.view().business_key in page


def test_heatmap_page(auditor, contract):
    page = auditor.text("/compliance/heatmap")
    state = json.loads(re.search(r'id="heat-diagram-state">(.*?)</script>', page, re.S).group(1))
    assert set(state["heat"]) >= {"prepare_quote", "supervisor_review", "draft_contract"}
    assert 'data-spec="draft_contract"' in page
    assert auditor.get("/compliance/heatmap?process=nope").status_code == 404


def test_the_access_log_shows_who_looked(auditor, contract):
    key = contract.view().business_key
    auditor.text(f"/compliance/contracts/{key}")
    page = auditor.text("/compliance/access")
    assert f'href="/compliance/contracts/{key}"' in page and "instance" in page


def test_pages_in_chinese(login, contract):
    web = login("audit1")  # audit1 reads Chinese
    key = contract.view().business_key
    for path in ("/compliance/", f"/compliance/contracts/{key}", "/compliance/four-eyes", "/compliance/heatmap",
                 "/compliance/integrity", "/compliance/access"):
        page = web.text(path)
        assert "合规" in page, path
    assert "决策" in web.text(f"/compliance/contracts/{key}")


@pytest.mark.parametrize("path, status", [
    ("/compliance/?to=9999-12-31", 422),
    ("/compliance/?from=0001-01-01", 422),
    ("/compliance/events.csv?from=2026-01-01&to=9999-12-31", 422),
    ("/compliance/heatmap?to=9999-12-31", 422),
    ("/compliance/heatmap/diagram.bpmn?version=99999999999999999999", 404),
    ("/compliance/heatmap?version=99999999999999999999", 404),
    ("/compliance/heatmap/diagram.bpmn", 422),
])
def test_out_of_range_input_is_a_clear_answer(auditor, path, status):
    assert auditor.get(path).status_code == status


def test_diagram_reads_are_in_the_access_log(auditor, rt, contract):
    from sqlalchemy import func, select

    from models import AuditEvent
    from workflows.services import deployments

    def reads():
        with rt.read() as s:
            return s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.chain == "access",
                                                                               AuditEvent.action == "viewed"))

    before = reads()
    key = contract.view().business_key
    assert auditor.get(f"/compliance/contracts/{key}/diagram.bpmn").status_code == 200
    version = deployments.latest_deployment_id(rt, "quote_to_cash")
    assert auditor.get(f"/compliance/heatmap/diagram.bpmn?version={version}").status_code == 200
    assert reads() == before + 2


def test_verification_against_a_digest_kept_outside(auditor, rt, contract):
    from workflows.services import integrity

    kept = integrity.anchor(rt).digest
    ok = auditor.post("/compliance/integrity", {"digest": kept}, page="/compliance/integrity")
    assert 'data-verify-result="ok"' in ok.get_data(as_text=True)
    unknown = auditor.post("/compliance/integrity", {"digest": "ab" * 32}, page="/compliance/integrity")
    assert 'data-break="anchor"' in unknown.get_data(as_text=True)
