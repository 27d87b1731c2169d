"""The studio's process tests page and replay, in the browser's terms: save (with clear errors), record from an
instance, run against the draft, delete, the editor's JSON replay with its CSRF header, the replay page."""

from __future__ import annotations

import json
import re

from models import Draft
from workflows.services import process_tests
from workflows.services.deployments import latest_deployment_id, package_for

from .flow import Flow, approve, quote

PAGE = "/studio/quote_to_cash/tests"


def case() -> dict:
    return {"start": {}, "steps": [{"task": "prepare_quote", "data": quote("30000.00")},
                                   {"task": "supervisor_review", "data": approve("supervisor")},
                                   {"task": "manager_review", "data": approve("manager")}],
            "expect": {"path": ["prepare_quote", "supervisor_review", "manager_review"], "end": None}}


def raised(rt) -> dict[str, str]:
    files = {k: v.decode() for k, v in package_for(rt, latest_deployment_id(rt, "quote_to_cash")).files.items()}
    files["approval_matrix.dmn"] = files["approval_matrix.dmn"].replace("&gt; 50000", "&gt; 100000")
    return files


def test_save_run_and_delete_a_test(login) -> None:
    web = login("owner1")
    assert "流程测试" in web.text(PAGE)
    bad = web.post(PAGE, {"name": "经理审批", "case": "{not json"}, page=PAGE)
    assert bad.status_code == 422
    body = bad.get_data(as_text=True)
    assert "不是有效的 JSON" in body and "{not json" in body  # what was typed stays
    wrong = web.post(PAGE, {"name": "经理审批", "case": json.dumps({"steps": []})}, page=PAGE)
    assert wrong.status_code == 422 and "expect 须为包含 path" in wrong.get_data(as_text=True)
    saved = web.post(PAGE, {"name": "经理审批", "case": json.dumps(case())}, page=PAGE)
    assert saved.status_code == 302
    page = web.text(PAGE)
    assert 'data-test="经理审批"' in page and "尚未运行" in page
    again = web.post(PAGE, {"name": "经理审批", "case": json.dumps(case())}, page=PAGE)
    assert again.status_code == 422 and "已有名为「经理审批」的测试" in again.get_data(as_text=True)
    assert web.post(PAGE + "/run", page=PAGE).status_code == 302
    page = web.text(PAGE)
    assert "全部 1 个测试通过" in page and "通过" in page
    test_id = re.search(r'/tests/(\d+)/delete', page).group(1)
    assert web.post(f"{PAGE}/{test_id}/delete", page=PAGE).status_code == 302
    page = web.text(PAGE)
    assert "已删除测试 经理审批" in page and 'data-test="经理审批"' not in page
    assert web.post(f"{PAGE}/{test_id}/delete", page=PAGE).status_code == 302
    assert "该测试已被删除" in web.text(PAGE)


def test_a_failing_test_on_the_draft_shows_why_in_chinese(rt, login, users, clock) -> None:
    process_tests.save_test(rt, users["owner1"], "quote_to_cash", "manager", case())
    with rt.write() as s:
        s.add(Draft(process_key="quote_to_cash", files=json.dumps(raised(rt)), revision=1, updated_at=clock.now()))
    web = login("owner1")
    assert web.post(PAGE + "/run", page=PAGE).status_code == 302
    page = web.text(PAGE)
    assert "已保存的草稿" in page and "1 个测试中有 1 个失败" in page
    assert "下一步应为「经理审批」，但流程停在「起草合同」" in page


def test_record_a_test_from_an_instance(rt, login) -> None:
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    flow.act("supervisor_review", "sup1", {"supervisor_decision": "reject", "supervisor_comment": "no"})
    key = flow.view().business_key
    web = login("owner1")
    missing = web.post(PAGE, {"action": "record", "business_key": "Q-NOPE"}, page=PAGE)
    assert missing.status_code == 422 and "本流程没有实例「Q-NOPE」" in missing.get_data(as_text=True)
    assert web.post(PAGE, {"action": "record", "business_key": key, "name": "驳回"}, page=PAGE).status_code == 302
    [saved] = process_tests.list_tests(rt, "quote_to_cash").items
    assert saved.name == "驳回" and saved.case["expect"]["end"] == "end_rejected"


def test_the_editor_replays_files_as_json(rt, login) -> None:
    for amount in ("30000.00", "40000.00"):  # 60,000 and 80,000: a manager before, none with the limit raised
        flow = Flow(rt)
        flow.act("prepare_quote", "rep1", quote(amount))
        flow.act("supervisor_review", "sup1", approve("supervisor"))
        flow.act("manager_review", "mgr1", approve("manager"))
    web = login("owner1")
    token = web.csrf(PAGE)
    response = web.client.post("/studio/quote_to_cash/replay", json={"files": raised(rt)},
                               headers={"X-CSRFToken": token})
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    report = response.get_json()
    assert report["replayed"] == 2 and len(report["different"]) == 2
    assert report["tasks"] == [{"spec_id": "manager_review", "name": "Manager review / 经理审批", "skipped": 2,
                                "added": 0}]
    assert report["summary"] == "最近 2 个实例中，2 个将跳过「经理审批」（共 2 个路径不同）"
    assert web.client.post("/studio/quote_to_cash/replay", json={"files": raised(rt)}).status_code == 400  # no token
    broken = web.client.post("/studio/quote_to_cash/replay", json={"files": {"quote_to_cash.bpmn": "<x"}},
                             headers={"X-CSRFToken": token})
    assert broken.status_code == 422 and broken.get_json()["problems"]
    assert "修改后的流程无法构建" in broken.get_json()["message"]
    bad = web.client.post("/studio/quote_to_cash/replay", json={"files": []}, headers={"X-CSRFToken": token})
    assert bad.status_code == 422


def test_the_replay_page_shows_the_draft_against_history(rt, login, clock) -> None:
    keys = []
    for amount in ("30000.00", "40000.00", "10000.00"):
        flow = Flow(rt)
        flow.act("prepare_quote", "rep1", quote(amount))
        flow.act("supervisor_review", "sup1", approve("supervisor"))
        if "manager_review" in flow.open_specs():
            flow.act("manager_review", "mgr1", approve("manager"))
        keys.append(flow.view().business_key)
    web = login("owner1")
    page = web.text("/studio/quote_to_cash/replay")
    assert "最近 3 个实例的路径均不变" in page  # no draft: the latest version over its own history
    with rt.write() as s:
        s.add(Draft(process_key="quote_to_cash", files=json.dumps(raised(rt)), revision=1, updated_at=clock.now()))
    page = web.text("/studio/quote_to_cash/replay")
    assert "最近 3 个实例中，2 个将跳过「经理审批」" in page
    assert '<svg class="replay-chart"' in page and 'data-task="manager_review"' in page
    assert f'data-contract="{keys[0]}"' in page and f'data-contract="{keys[2]}"' not in page
    assert "将跳过「经理审批」" in page


def test_only_process_owners_get_in(login) -> None:
    for path in (PAGE, "/studio/quote_to_cash/replay"):
        assert login("sup1").get(path).status_code == 403
        assert login("admin").get(path).status_code == 403
    assert login("owner1").get("/studio/no_such_process/tests").status_code == 404
