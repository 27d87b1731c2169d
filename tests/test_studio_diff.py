"""The diff between two versions of a package: BPMN elements, DMN rules and cells, form fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workflows.services.deployments import collect_files
from workflows.studio.diff import diff_files

BPMN = Path(__file__).resolve().parents[1] / "bpmn" / "quote_to_cash.bpmn"


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return collect_files(BPMN)


def _edit(files: dict[str, bytes], name: str, old: str, new: str, count: int = 1) -> dict[str, bytes]:
    text = files[name].decode()
    assert text.count(old) >= 1, old
    changed = dict(files)
    changed[name] = text.replace(old, new, count).encode()
    return changed


def _by_id(diff):
    return {(c.file, c.element_id): c for c in diff.changes}


def test_the_same_files_have_no_changes(files):
    diff = diff_files(files, dict(files))
    assert diff.changes == [] and diff.empty


def test_a_changed_decision_cell_reads_as_a_sentence(files):
    new = _edit(files, "approval_matrix.dmn", "&gt; 50000<", "&gt; 100000<")
    [change] = diff_files(files, new).changes
    assert (change.kind, change.file, change.element_id, change.element_type) == (
        "changed", "approval_matrix.dmn", "Rule_6", "rule")
    assert change.name == "Amount over 50,000 / 金额超过 5 万"
    assert change.details == ["rule 6, input 'amount': '> 50000' -> '> 100000'"]


def test_decision_rules_added_and_removed_and_outputs(files):
    dmn = files["approval_matrix.dmn"].decode()
    start = dmn.index('<rule id="Rule_2">')
    end = dmn.index("</rule>", start) + len("</rule>")
    removed = dict(files, **{"approval_matrix.dmn": (dmn[:start] + dmn[end:]).encode()})
    changes = _by_id(diff_files(files, removed))
    assert changes[("approval_matrix.dmn", "Rule_2")].kind == "removed"
    assert changes[("approval_matrix.dmn", "Rule_3")].details == ["rule 3 is now rule 2"]
    added = diff_files(removed, files)
    rule = _by_id(added)[("approval_matrix.dmn", "Rule_2")]
    assert rule.kind == "added"
    assert rule.details == ["rule 2: when discount_pct > 20 then need_manager = True, need_director = True, "
                            "need_legal = True, need_finance = True"]
    relabel = _edit(files, "approval_matrix.dmn", 'label="Legal review / 法务审核" name="need_legal"',
                    'label="Legal / 法务" name="need_legal"')
    [output] = diff_files(files, relabel).changes
    assert (output.element_id, output.element_type, output.details) == (
        "Output_need_legal", "output", ["label: 'Legal review / 法务审核' -> 'Legal / 法务'"])


def test_bpmn_elements_changed_added_and_removed(files):
    new = _edit(files, "quote_to_cash.bpmn", 'name="Supervisor review / 主管审核"',
                'name="Supervisor check / 主管复核"')
    new = _edit(new, "quote_to_cash.bpmn", '<spiffworkflow:property name="dueIn" value="P1D" />',
                '<spiffworkflow:property name="dueIn" value="P3D" />')
    new = _edit(new, "quote_to_cash.bpmn", ">installment_due_at<", ">installment_due_at + timedelta(days=1)<")
    changes = _by_id(diff_files(files, new))
    review = changes[("quote_to_cash.bpmn", "supervisor_review")]
    assert (review.kind, review.element_type, review.name) == ("changed", "userTask", "Supervisor check / 主管复核")
    assert review.details == ["name: 'Supervisor review / 主管审核' -> 'Supervisor check / 主管复核'",
                              "property 'dueIn': 'P1D' -> 'P3D'"]
    timer = changes[("quote_to_cash.bpmn", "wait_installment_due")]
    assert timer.details == ["timer 'timeDate': 'installment_due_at' -> 'installment_due_at + timedelta(days=1)'"]

    text = files["quote_to_cash.bpmn"].decode()
    renamed = dict(files, **{"quote_to_cash.bpmn": text.replace('id="file_contract"', 'id="archive_contract"')
                             .replace('"file_contract"', '"archive_contract"')
                             .replace(">file_contract<", ">archive_contract<").encode()})
    changes = _by_id(diff_files(files, renamed))
    assert changes[("quote_to_cash.bpmn", "file_contract")].kind == "removed"
    added = changes[("quote_to_cash.bpmn", "archive_contract")]
    assert added.kind == "added" and added.name == "File contract / 合同归档"
    assert "form 'file_contract.schema.json'" in added.details
    flow = changes[("quote_to_cash.bpmn", "Flow_file_contract_to_merge_delivery")]
    assert flow.details == ["from: 'file_contract' -> 'archive_contract'"]
    lane = changes[("quote_to_cash.bpmn", "Lane_legal")]
    assert lane.details == ["now holds archive_contract", "no longer holds file_contract"]
    diff = diff_files(files, renamed)
    assert diff.markers("quote_to_cash.bpmn", "old")["file_contract"] == "removed"
    assert "file_contract" not in diff.markers("quote_to_cash.bpmn", "new")
    assert diff.markers("quote_to_cash.bpmn", "new")["archive_contract"] == "added"


def test_conditions_scripts_default_flows_and_instructions(files):
    text = files["quote_to_cash.bpmn"].decode()
    start = text.index('<bpmn:sequenceFlow id="Flow_gw_need_manager_to_manager_review"')
    condition = text[start:text.index("</bpmn:sequenceFlow>", start)]
    opening = condition.index(">", condition.index("<bpmn:conditionExpression")) + 1
    expr = condition[opening:condition.index("</bpmn:conditionExpression>")]
    new = _edit(files, "quote_to_cash.bpmn", condition, condition.replace(f">{expr}<", f">{expr} and amount &gt; 0<"))
    new = _edit(new, "quote_to_cash.bpmn", "Check the quote for completeness and pricing.", "Check it.")
    new = _edit(new, "quote_to_cash.bpmn", 'default="Flow_gw_supervisor_to_approval_matrix_task"',
                'default="Flow_gw_supervisor_to_merge_quote"')
    changes = _by_id(diff_files(files, new))
    assert changes[("quote_to_cash.bpmn", "Flow_gw_need_manager_to_manager_review")].details == [
        f"flow condition: '{expr.strip()}' -> '{expr.strip()} and amount > 0'"]
    assert changes[("quote_to_cash.bpmn", "supervisor_review")].details == ["instructions changed"]
    assert changes[("quote_to_cash.bpmn", "gw_supervisor")].details == [
        "default flow: 'Flow_gw_supervisor_to_approval_matrix_task' -> 'Flow_gw_supervisor_to_merge_quote'"]


def test_form_fields_added_removed_changed_and_required(files):
    schema = json.loads(files["file_contract.schema.json"])
    schema["properties"]["archive_box"] = {"type": "string", "title": "Archive box"}
    schema["required"] = [*schema.get("required", []), "archive_box"]
    del schema["properties"]["filed_on"]
    schema["properties"]["filing_no"]["maxLength"] = 32
    new = dict(files, **{"file_contract.schema.json": json.dumps(schema).encode()})
    changes = _by_id(diff_files(files, new))
    name = "file_contract.schema.json"
    assert changes[(name, "archive_box")].kind == "added"
    assert changes[(name, "archive_box")].details == ["type string", "required"]
    assert changes[(name, "filed_on")].kind == "removed"
    filing = changes[(name, "filing_no")]
    assert filing.details == ["setting 'maxLength': '64' -> '32'"]


def test_files_added_removed_and_unreadable(files):
    new = dict(files)
    del new["file_contract.schema.json"]
    new["notes.schema.json"] = b'{"type": "object", "properties": {"note": {"type": "string"}}}'
    new["approval_matrix.dmn"] = b"<definitions"
    changes = diff_files(files, new).changes
    assert ("removed", "file_contract.schema.json", None) in {(c.kind, c.file, c.element_id) for c in changes}
    assert ("added", "notes.schema.json", "note") in {(c.kind, c.file, c.element_id) for c in changes}
    [broken] = [c for c in changes if c.file == "approval_matrix.dmn"]
    assert broken.details[0].startswith("the file could not be read")
