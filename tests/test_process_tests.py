"""Process tests: the case format, running cases (pass, divergence, wrong fields, wrong end), saving and
deleting, the deploy gate, recording a case from a real instance, and running against the draft."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from models import AuditEvent, Draft
from workflows.services import process_tests, rewind
from workflows.services.deployments import latest_deployment_id, package_for
from workflows.services.errors import InvalidInput, NotFound

from .flow import Flow, approve, quote
from .service_messages import untranslated


def small_case(path_end=None) -> dict:
    return {"start": {}, "steps": [{"task": "prepare_quote", "data": quote("30000.00")},
                                   {"task": "supervisor_review", "data": approve("supervisor")},
                                   {"task": "manager_review", "data": approve("manager")}],
            "expect": {"path": ["prepare_quote", "supervisor_review", "manager_review"], "end": path_end}}


@pytest.fixture
def package(rt):
    return package_for(rt, latest_deployment_id(rt, "quote_to_cash"))


def raised_limit(rt) -> dict[str, str]:
    dep = package_for(rt, latest_deployment_id(rt, "quote_to_cash"))
    files = {k: v.decode() for k, v in dep.files.items()}
    files["approval_matrix.dmn"] = files["approval_matrix.dmn"].replace("&gt; 50000", "&gt; 100000")
    return files


def test_a_case_that_matches_passes(package) -> None:
    result = process_tests.run_case(package, "manager", process_tests.parse_case(small_case()))
    assert result.passed, result.reason
    assert result.waiting_at == ["draft_contract"]


def test_a_divergence_names_what_was_expected_and_where_the_process_is(package) -> None:
    case = small_case()
    case["steps"][0]["data"] = quote("20000.00")  # 40,000: no manager review
    result = process_tests.run_case(package, "t", process_tests.parse_case(case))
    assert not result.passed
    assert result.reason == "expected 'Manager review / 经理审批' next, the process is at 'Draft contract / 起草合同'"


def test_wrong_form_fields_fail_clearly(package) -> None:
    case = small_case()
    case["steps"][1]["data"] = {"supervisor_verdict": "ok"}
    result = process_tests.run_case(package, "t", process_tests.parse_case(case))
    assert not result.passed
    assert "does not fit its form" in result.reason and "supervisor_verdict" in result.reason


def test_a_wrong_path_or_end_fails(package) -> None:
    case = small_case()
    case["expect"]["path"] = ["prepare_quote", "supervisor_review", "director_review"]
    reason = process_tests.run_case(package, "t", process_tests.parse_case(case)).reason
    assert reason == ("step 3 of the path: expected 'Director review / 总监审批', the process went to "
                      "'Manager review / 经理审批'")
    reason = process_tests.run_case(package, "t", process_tests.parse_case(small_case("end_fulfilled"))).reason
    assert reason == ("expected the end 'Contract fulfilled / 合同履约完成', the process waits at "
                      "'Draft contract / 起草合同'")
    case = small_case()
    case["steps"].append({"task": "not_a_task", "data": {}})
    assert "not a user task" in process_tests.run_case(package, "t", process_tests.parse_case(case)).reason


@pytest.mark.parametrize(("text", "field"), [
    ("{", "not valid JSON"), ("[]", "an object"), ('{"steps": [], "expect": {"path": []}, "x": 1}', "unknown key 'x'"),
    ('{"steps": [{"task": "a", "timer": "b"}], "expect": {"path": []}}', "step 1 must be"),
    ('{"steps": [], "expect": {}}', "'expect' must be"), ('{"steps": [], "expect": {"path": [1]}}', "list of user"),
])
def test_malformed_cases_are_refused_with_a_reason(text: str, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        process_tests.parse_case(text)
    assert field in err.value.errors["case"]


def test_save_list_replace_and_delete(rt, users) -> None:
    owner = users["owner1"]
    first = process_tests.save_test(rt, owner, "quote_to_cash", "manager", json.dumps(small_case()))
    with pytest.raises(InvalidInput) as err:
        process_tests.save_test(rt, owner, "quote_to_cash", "manager", small_case())
    assert "already exists" in err.value.message
    assert process_tests.save_test(rt, owner, "quote_to_cash", "manager", small_case("end_rejected"),
                                   replace=True) == first
    for i in range(22):
        process_tests.save_test(rt, owner, "quote_to_cash", f"t{i:02d}", small_case())
    page = process_tests.list_tests(rt, "quote_to_cash", page=2, per_page=20)
    assert page.total == 23 and len(page.items) == 3 and page.pages == 2
    assert process_tests.list_tests(rt, "complaint").total == 0
    saved = next(t for t in process_tests.list_tests(rt, "quote_to_cash").items if t.id == first)
    assert saved.case["expect"]["end"] == "end_rejected" and saved.updated_by == "owner1"
    assert process_tests.delete_test(rt, owner, "quote_to_cash", first) == "manager"
    with pytest.raises(NotFound):
        process_tests.delete_test(rt, owner, "quote_to_cash", first)
    with pytest.raises(NotFound):  # a test of another process is not reachable through this one
        process_tests.delete_test(rt, owner, "complaint", page.items[0].id)
    with rt.read() as s:
        actions = list(s.scalars(select(AuditEvent.action).where(AuditEvent.action.like("process_test%"))))
    assert actions.count("process_test_saved") == 24 and actions.count("process_test_deleted") == 1


def test_deploy_gate_lists_exactly_the_failing_tests(rt, users, package) -> None:
    from workflows.engine.package import build_package

    owner = users["owner1"]
    process_tests.save_test(rt, owner, "quote_to_cash", "manager needed", small_case())
    small = {"start": {}, "steps": [{"task": "prepare_quote", "data": quote("20000.00")},
                                    {"task": "supervisor_review", "data": approve("supervisor")}],
             "expect": {"path": ["prepare_quote", "supervisor_review"], "end": None}}
    process_tests.save_test(rt, owner, "quote_to_cash", "small quote", small)
    assert process_tests.failures_for_deploy(rt, "quote_to_cash", package) == []
    changed = build_package({k: v.encode() for k, v in raised_limit(rt).items()}, process_key="quote_to_cash")
    assert process_tests.failures_for_deploy(rt, "quote_to_cash", changed) == [
        "test 'manager needed': expected 'Manager review / 经理审批' next, "
        "the process is at 'Draft contract / 起草合同'"]


def test_run_saved_uses_the_draft_when_there_is_one(rt, users, clock) -> None:
    process_tests.save_test(rt, users["owner1"], "quote_to_cash", "manager needed", small_case())
    report = process_tests.run_saved(rt, "quote_to_cash")
    assert not report.on_draft and report.failed == 0 and len(report.results) == 1
    with rt.write() as s:
        s.add(Draft(process_key="quote_to_cash", files=json.dumps(raised_limit(rt)), revision=1,
                    updated_at=clock.now()))
    report = process_tests.run_saved(rt, "quote_to_cash")
    assert report.on_draft and report.failed == 1
    target, package, _ = process_tests.target_package(rt, "quote_to_cash")
    assert process_tests.last_result(package, "manager needed", small_case()).passed is False
    with rt.write() as s:
        s.get(Draft, "quote_to_cash").files = json.dumps({"quote_to_cash.bpmn": "<broken"})
    report = process_tests.run_saved(rt, "quote_to_cash")
    assert report.results == [] and report.problems and "XML" in report.problems[0]


def test_record_from_a_real_instance_reproduces_its_path(rt, users, package) -> None:
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote("30000.00"))
    flow.act("supervisor_review", "sup1", {"supervisor_decision": "send_back", "supervisor_comment": "price"})
    flow.act("prepare_quote", "rep1", quote("26000.00"))
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    flow.act("manager_review", "mgr1", {"manager_decision": "reject", "manager_comment": "margin too low"})
    key = flow.view().business_key
    case = process_tests.case_from_instance(rt, "quote_to_cash", key)
    assert case["expect"] == {"path": ["prepare_quote", "supervisor_review", "prepare_quote", "supervisor_review",
                                       "manager_review"], "end": "end_rejected"}
    assert case["steps"][2]["data"]["line_items"][0]["unit_price"] == "26000.00"
    test_id = process_tests.record_from_instance(rt, users["owner1"], "quote_to_cash", key)
    saved = process_tests.list_tests(rt, "quote_to_cash").items
    assert [t.name for t in saved] == [key] and saved[0].id == test_id
    result = process_tests.run_case(package, key, saved[0].case)
    assert result.passed, result.reason
    with pytest.raises(InvalidInput):
        process_tests.case_from_instance(rt, "complaint", key)  # not an instance of that process


def test_a_withdrawn_history_cannot_be_recorded(rt, users) -> None:
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    with rt.read() as s:
        from models import TaskRow

        done = s.scalar(select(TaskRow.id).where(TaskRow.instance_id == flow.id, TaskRow.spec_id == "prepare_quote"))
    rewind.withdraw(rt, done, users["rep1"])
    with pytest.raises(InvalidInput) as err:
        process_tests.case_from_instance(rt, "quote_to_cash", flow.view().business_key)
    assert "withdraw" in err.value.message


def test_every_message_has_chinese() -> None:
    assert untranslated("workflows/services/process_tests.py") == []
    from webapp.messages import localize_message

    for message in ("expected 'Manager review / 经理审批' next, the process is at 'Draft contract / 起草合同'",
                    "the process did not finish within 500 steps; a loop in it may never end",
                    "the input for 'Prepare quote / 编制报价' does not fit its form (x: this field is required)",
                    "expected the end 'Contract fulfilled / 合同履约完成', "
                    "the process waits at 'Draft contract / 起草合同'"):
        assert localize_message(message, "zh-CN") != message


@pytest.mark.parametrize("text", ['{"start": ' + "[" * 5000 + "]" * 5000 + "}",
                                  '{"start": {"a": ' + "[" * 70 + "]" * 70 + "}}"])
def test_a_case_nested_too_deeply_is_refused_clearly(text):
    with pytest.raises(InvalidInput) as caught:
        process_tests.parse_case(text)
    assert "levels" in caught.value.errors["case"]
