"""The studio's own part: processes and versions with their instance counts, the shared draft (stale saves refused),
checks and form preview over HTTP, deploy (checks and comment first; running instances stay), rollback, and
upload/download for desktop modelers."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import pytest

from models import AuditEvent, Deployment, Draft, Instance
from workflows.services import deployments, studio
from workflows.services.errors import Conflict, DeployRefused, InvalidInput, NotFound

from .flow import Flow, approve, quote

ROOT = Path(__file__).resolve().parents[1]
KEY = "quote_to_cash"


def latest_text(rt) -> dict[str, str]:
    return studio.draft(rt, KEY).files


def raise_manager_limit(files: dict[str, str], new: str = "200000") -> dict[str, str]:
    """The DMN rule that asks the manager above an amount, with another amount."""
    dmn = files["approval_matrix.dmn"]
    limits = re.findall(r"<inputEntry id=\"InputEntry_\d+_amount\">\s*<text>&gt; (\d+)</text>", dmn)
    assert limits, "the approval matrix has no amount limit"
    changed = dmn.replace(f"&gt; {min(limits, key=int)}</text>", f"&gt; {new}</text>", 1)
    assert changed != dmn
    return {**files, "approval_matrix.dmn": changed}


def without_lane_role(files: dict[str, str]) -> dict[str, str]:
    bpmn = files["quote_to_cash.bpmn"]
    changed = bpmn.replace('<spiffworkflow:property name="role" value="legal" />', "", 1)
    assert changed != bpmn
    return {**files, "quote_to_cash.bpmn": changed}


# --- service ---------------------------------------------------------------------------------------------------


def test_processes_and_versions_count_instances_per_version(rt, users):
    before = Flow(rt)
    files = raise_manager_limit(latest_text(rt))
    deployments.deploy_files(rt, {k: v.encode() for k, v in files.items()}, users["owner1"], "raise limit")
    Flow(rt)
    Flow(rt)
    summary = {p.process_key: p for p in studio.processes(rt).items}
    assert summary[KEY].latest_version == 2 and summary[KEY].running == 3
    page = studio.versions(rt, KEY)
    assert [(v.version, v.running, v.total) for v in page.items] == [(2, 2, 2), (1, 1, 1)]
    assert page.items[0].deployed_by == "owner1" and page.items[0].comment == "raise limit"
    assert before.id
    with pytest.raises(NotFound):
        studio.versions(rt, "no_such_process")


def test_draft_starts_from_the_latest_version_and_refuses_stale_saves(rt, users):
    owner = users["owner1"]
    first = studio.draft(rt, KEY)
    assert first.revision == 0 and "quote_to_cash.bpmn" in first.files
    changed = raise_manager_limit(first.files)
    assert studio.save_draft(rt, owner, KEY, changed, 0) == 1
    # a second page opened before the save still says revision 0
    with pytest.raises(Conflict, match="reload"):
        studio.save_draft(rt, owner, KEY, first.files, 0)
    assert studio.save_draft(rt, owner, KEY, changed, 1) == 2
    with pytest.raises(Conflict, match="owner1 saved this draft"):
        studio.save_draft(rt, owner, KEY, first.files, 1)
    saved = studio.draft(rt, KEY)
    assert saved.revision == 2 and saved.files == changed and saved.updated_by == "owner1"
    assert saved.base_version == 1


@pytest.mark.parametrize("files, field", [
    ({}, "files"),
    ({"../etc/passwd.bpmn": "x"}, "../etc/passwd.bpmn"),
    ({"a.exe": "x", "p.bpmn": "<x/>"}, "a.exe"),
    ({"p.bpmn": 5}, "p.bpmn"),
    ({"p.bpmn": "a\x00b"}, "p.bpmn"),
    ({"form.schema.json": "{}"}, "files"),
    ({"p.bpmn": "x" * (2 * 1024 * 1024 + 1)}, "p.bpmn"),
    ("not a dict", "files"),
])
def test_a_draft_with_bad_files_is_refused_and_nothing_is_saved(rt, users, files, field):
    with pytest.raises(InvalidInput) as caught:
        studio.save_draft(rt, users["owner1"], KEY, files, 0)
    assert field in caught.value.errors
    with rt.read() as s:
        assert s.get(Draft, KEY) is None


def test_deploy_needs_a_comment_and_a_saved_change(rt, users):
    owner = users["owner1"]
    with pytest.raises(InvalidInput, match="nothing to deploy"):
        studio.deploy_draft(rt, owner, KEY, 0, "why")
    studio.save_draft(rt, owner, KEY, raise_manager_limit(latest_text(rt)), 0)
    with pytest.raises(InvalidInput, match="say what changed"):
        studio.deploy_draft(rt, owner, KEY, 1, "   ")
    with pytest.raises(Conflict):
        studio.deploy_draft(rt, owner, KEY, 5, "why")


def test_deploy_refuses_a_draft_with_errors_and_keeps_it(rt, users):
    owner = users["owner1"]
    studio.save_draft(rt, owner, KEY, without_lane_role(latest_text(rt)), 0)
    with pytest.raises(DeployRefused) as caught:
        studio.deploy_draft(rt, owner, KEY, 1, "legal lane without role")
    errors = [p for p in caught.value.problems if p.severity == "error"]
    assert errors and any(p.element_id == "Lane_legal" for p in errors)
    with rt.read() as s:
        assert s.query(Deployment).filter_by(process_key=KEY).count() == 1
        assert s.get(Draft, KEY).revision == 1


def test_deploy_makes_a_version_new_quotes_follow_while_a_running_one_keeps_its_own(rt, users):
    owner = users["owner1"]
    old = Flow(rt)  # 75,000: between the shipped manager limit (50,000) and the raised one
    studio.save_draft(rt, owner, KEY, raise_manager_limit(latest_text(rt), "200000"), 0)
    result = studio.deploy_draft(rt, owner, KEY, 1, "raise the manager limit to 200,000")
    assert result.created and result.version == 2
    with rt.read() as s:
        assert s.get(Draft, KEY) is None  # the next edit starts from what is deployed
        deploy = s.query(AuditEvent).filter_by(action="deploy", deployment_id=result.deployment_id).one()
        assert deploy.data["comment"] == "raise the manager limit to 200,000"
    new = Flow(rt)
    with rt.read() as s:
        assert s.get(Instance, old.id).deployment_id != s.get(Instance, new.id).deployment_id
    for flow in (old, new):
        flow.act("prepare_quote", "rep1", quote("75000.00", quantity=1))
        flow.act("supervisor_review", "sup1", approve("supervisor"))
    assert old.open_specs() == {"manager_review"}
    assert "manager_review" not in new.open_specs() and new.data()["need_manager"] is False


def test_rollback_deploys_the_old_files_as_a_new_version(rt, users):
    owner = users["owner1"]
    original = deployments.latest_deployment_id(rt, KEY)
    deployments.deploy_files(rt, {k: v.encode() for k, v in raise_manager_limit(latest_text(rt)).items()}, owner, "v2")
    with pytest.raises(InvalidInput, match="already the latest"):
        studio.rollback(rt, owner, KEY, 2, "nothing")
    result = studio.rollback(rt, owner, KEY, 1, "the new limit was too generous")
    assert result.version == 3
    with rt.read() as s:
        v1, v3 = s.get(Deployment, original), s.get(Deployment, result.deployment_id)
        assert v1.content_hash == v3.content_hash
        assert v3.comment == "rollback to version 1: the new limit was too generous"
        assert s.query(AuditEvent).filter_by(action="rollback", deployment_id=v3.id).one().data["to_version"] == 1
    with pytest.raises(NotFound):
        studio.rollback(rt, owner, KEY, 9, "no such version")


def test_upload_merges_files_into_the_draft_and_checks_them(rt, users):
    owner = users["owner1"]
    dmn = raise_manager_limit(latest_text(rt))["approval_matrix.dmn"].encode()
    revision, problems = studio.upload(rt, owner, KEY, [("approval_matrix.dmn", dmn)], 0)
    assert revision == 1 and not studio.errors_of(problems)
    assert studio.draft(rt, KEY).files["approval_matrix.dmn"] == dmn.decode()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("bpmn/quote_to_cash.bpmn", without_lane_role(latest_text(rt))["quote_to_cash.bpmn"])
    revision, problems = studio.upload(rt, owner, KEY, [("package.zip", archive.getvalue())], 1)
    assert revision == 2 and any(p.element_id == "Lane_legal" for p in studio.errors_of(problems))


@pytest.mark.parametrize("uploads, field", [
    ([("evil.html", b"<script>")], "evil.html"),
    ([("a.bpmn", b"\xff\xfe\x00bad")], "a.bpmn"),
    ([("x.zip", b"not a zip")], "x.zip"),
    ([], "files"),
])
def test_bad_uploads_are_refused_and_the_draft_is_untouched(rt, users, uploads, field):
    with pytest.raises(InvalidInput) as caught:
        studio.upload(rt, users["owner1"], KEY, uploads, 0)
    assert field in caught.value.errors
    assert studio.draft(rt, KEY).revision == 0


def test_stale_upload_is_refused(rt, users):
    studio.save_draft(rt, users["owner1"], KEY, latest_text(rt), 0)
    with pytest.raises(Conflict):
        studio.upload(rt, users["owner1"], KEY, [("approval_matrix.dmn", b"<x/>")], 0)


# --- web ---------------------------------------------------------------------------------------------------------


def post_json(web, path: str, body: dict, page: str = f"/studio/{KEY}/edit"):
    return web.client.post(path, data=json.dumps(body), content_type="application/json",
                           headers={"X-CSRFToken": web.csrf(page)})


def test_pages_list_processes_versions_and_the_editor(login, rt):
    owner = login("owner1")
    index = owner.text("/studio")
    assert f"/studio/{KEY}" in index and "complaint" in index
    page = owner.text(f"/studio/{KEY}")
    assert 'data-version="1"' in page and "打开编辑器" in page  # owner1 reads Chinese
    editor = owner.text(f"/studio/{KEY}/edit")
    assert "approval_matrix.dmn" in editor


def test_save_check_and_preview_over_http(login, rt):
    owner = login("owner1")
    files = latest_text(rt)
    saved = post_json(owner, f"/studio/{KEY}/draft", {"revision": 0, "files": raise_manager_limit(files)})
    assert saved.status_code == 200 and saved.json == {"revision": 1}
    stale = post_json(owner, f"/studio/{KEY}/draft", {"revision": 0, "files": files})
    assert stale.status_code == 409 and "重新加载编辑器" in stale.json["error"]
    bad = post_json(owner, f"/studio/{KEY}/draft", {"revision": "1", "files": files})
    assert bad.status_code == 400
    checked = post_json(owner, f"/studio/{KEY}/check", {"files": without_lane_role(files)})
    assert checked.status_code == 200 and checked.json["errors"] >= 1
    assert any(p["element_id"] == "Lane_legal" and p["severity"] == "error" for p in checked.json["problems"])
    fine = post_json(owner, f"/studio/{KEY}/check", {"files": files})
    assert fine.json["errors"] == 0
    schema = {"type": "object", "title": "Site visit", "required": ["visited_on"],
              "properties": {"visited_on": {"type": "string", "format": "date", "title": "Visited on / 拜访日期"}}}
    shown = post_json(owner, f"/studio/{KEY}/preview", {"schema": json.dumps(schema), "uischema": ""})
    assert shown.status_code == 200 and 'type="date"' in shown.json["html"] and "Visited on" in shown.json["html"]
    broken = post_json(owner, f"/studio/{KEY}/preview", {"schema": '{"type": "array"}', "uischema": ""})
    assert broken.status_code == 400 and "object" in broken.json["error"]
    no_csrf = owner.client.post(f"/studio/{KEY}/check", data=json.dumps({"files": files}),
                                content_type="application/json")
    assert no_csrf.status_code == 400


def test_deploy_over_http_refuses_with_the_problems_then_deploys(login, rt):
    owner = login("owner1")
    files = latest_text(rt)
    post_json(owner, f"/studio/{KEY}/draft", {"revision": 0, "files": without_lane_role(files)})
    refused = owner.post(f"/studio/{KEY}/deploy", {"revision": "1", "comment": "try"}, page=f"/studio/{KEY}/edit")
    assert refused.status_code == 422 and "Lane_legal" in refused.get_data(as_text=True)
    post_json(owner, f"/studio/{KEY}/draft", {"revision": 1, "files": raise_manager_limit(files)})
    done = owner.post(f"/studio/{KEY}/deploy", {"revision": "2", "comment": "raise the limit"},
                      page=f"/studio/{KEY}/edit")
    assert done.status_code == 302 and done.headers["Location"].endswith(f"/studio/{KEY}")
    assert "版本 2 已部署" in owner.text(f"/studio/{KEY}")


def test_download_a_version_and_the_draft_as_zip(login, rt):
    owner = login("owner1")
    response = owner.get(f"/studio/{KEY}/versions/1/download")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(response.data)).namelist()
    assert "quote_to_cash.bpmn" in names and "approval_matrix.dmn" in names and "prepare_quote.schema.json" in names
    assert owner.get(f"/studio/{KEY}/versions/7/download").status_code == 404
    draft = owner.get(f"/studio/{KEY}/draft/download")
    assert draft.status_code == 200 and set(zipfile.ZipFile(io.BytesIO(draft.data)).namelist()) == set(names)


def test_upload_over_http(login, rt):
    owner = login("owner1")
    dmn = raise_manager_limit(latest_text(rt))["approval_matrix.dmn"].encode()
    response = owner.post(f"/studio/{KEY}/upload", {"revision": "0", "files": (io.BytesIO(dmn), "approval_matrix.dmn")},
                          page=f"/studio/{KEY}", content_type="multipart/form-data")
    assert response.status_code == 302
    assert "检查未发现错误" in owner.text(f"/studio/{KEY}")
    assert studio.draft(rt, KEY).revision == 1


def test_non_owners_get_403(login):
    for name in ("rep1", "sup1", "admin", "audit1"):
        web = login(name)
        assert web.get("/studio").status_code == 403
        assert web.get(f"/studio/{KEY}/edit").status_code == 403


def test_every_message_the_studio_raises_reads_in_chinese():
    from webapp.messages import localize_message

    from .service_messages import ERRORS, raised_messages, untranslated

    errors = (*ERRORS, "DeployRefused")
    for module in ("workflows/services/studio.py", "webapp/views/studio.py"):
        assert raised_messages(module, errors)
        assert untranslated(module, errors) == [], module
    reason = "expected 'Manager review / 经理审批' next, the process is at 'Director review / 总监审批'"
    assert localize_message(f"test 'big quote': {reason}", "zh-CN") == (
        "测试「big quote」：下一步应为「经理审批」，但流程停在「总监审批」")


def test_a_draft_started_on_an_older_version_is_not_deployed_over_a_newer_one(rt, users, login):
    owner = users["owner1"]
    studio.save_draft(rt, owner, KEY, without_lane_role(latest_text(rt)), 0)
    studio.discard_draft(rt, owner, KEY)
    studio.save_draft(rt, owner, KEY, {**latest_text(rt)}, 0)  # a harmless draft on version 1
    newer = raise_manager_limit({k: v.decode() for k, v in deployments.collect_files(
        ROOT / "bpmn" / "quote_to_cash.bpmn").items()})
    deployments.deploy_files(rt, {k: v.encode() for k, v in newer.items()}, owner, "v2 from the command line")
    with pytest.raises(Conflict, match="version 2 was deployed after this draft was started from version 1"):
        studio.deploy_draft(rt, owner, KEY, 1, "would undo v2")
    with rt.read() as s:
        assert s.query(Deployment).filter_by(process_key=KEY).count() == 2
    assert "此草稿基于版本 1" in login("owner1").text(f"/studio/{KEY}")


def test_rollback_needs_a_comment_and_passes_the_saved_process_tests(rt, users):
    from workflows.services import process_tests

    owner = users["owner1"]
    deployments.deploy_files(rt, {k: v.encode() for k, v in raise_manager_limit(latest_text(rt)).items()}, owner,
                             "v2: manager from 200,000")
    with pytest.raises(InvalidInput, match="say what changed"):
        studio.rollback(rt, owner, KEY, 1, " ")
    # a test that only the raised limit passes: 75,000 goes from the supervisor straight to the contract
    case = {"steps": [{"task": "prepare_quote", "data": quote("75000.00", quantity=1)},
                      {"task": "supervisor_review", "data": approve("supervisor")}],
            "expect": {"path": ["prepare_quote", "supervisor_review", "draft_contract"]}}
    process_tests.save_test(rt, owner, KEY, "75,000 needs no manager", case)
    with pytest.raises(DeployRefused, match="process test") as caught:
        studio.rollback(rt, owner, KEY, 1, "back to 50,000")
    assert "75,000 needs no manager" in caught.value.problems[0].message
    with rt.read() as s:
        assert s.query(Deployment).filter_by(process_key=KEY).count() == 2


def test_odd_input_gets_a_clear_answer_never_a_500(login, rt, users):
    owner = login("owner1")
    deep = '{"files": ' + "[" * 3000 + "]" * 3000 + "}"  # deeper than the JSON parser goes
    for path in ("check", "draft", "preview", "replay"):
        response = owner.client.post(f"/studio/{KEY}/{path}", data=deep, content_type="application/json",
                                     headers={"X-CSRFToken": owner.csrf(f"/studio/{KEY}/edit")})
        assert response.status_code == 400, (path, response.status_code)
    rows_with_groups = {"type": "object", "properties": {"rows": {"type": "array", "items": {
        "type": "object", "properties": {"g": {"type": "object", "properties": {"x": {"type": "string"}}}}}}}}
    shown = post_json(owner, f"/studio/{KEY}/preview", {"schema": rows_with_groups})
    assert shown.status_code == 400 and "rows/g" in shown.json["error"]
    # the same shape in a task's form is an error of the check, so no contract ever meets a page that cannot draw
    files = latest_text(rt)
    prepare = json.loads(files["prepare_quote.schema.json"])
    prepare["properties"]["extra_rows"] = rows_with_groups["properties"]["rows"]
    problems = studio.check({**files, "prepare_quote.schema.json": json.dumps(prepare)}, KEY)
    assert any("extra_rows/g" in p.message for p in studio.errors_of(problems))
    for query in ("diff?from=%C2%B2", "migrate?to=%C2%B2"):
        assert owner.get(f"/studio/{KEY}/{query}").status_code in (404, 422), query


def test_upload_of_a_diagram_under_another_name_replaces_the_drafts(rt, users):
    files = latest_text(rt)
    renamed = [("Quote_to_cash_v2.bpmn", raise_manager_limit(files)["quote_to_cash.bpmn"].encode())]
    revision, problems = studio.upload(rt, users["owner1"], KEY, renamed, 0)
    assert not studio.errors_of(problems)
    assert [n for n in studio.draft(rt, KEY).files if n.endswith(".bpmn")] == ["Quote_to_cash_v2.bpmn"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a/approval_matrix.dmn", "<one/>")
        z.writestr("b/approval_matrix.dmn", "<two/>")
    with pytest.raises(InvalidInput) as caught:
        studio.upload(rt, users["owner1"], KEY, [("p.zip", archive.getvalue())], revision)
    assert "approval_matrix.dmn" in caught.value.errors
    # names `lvyue deploy` accepts are editable here too
    odd_name = {**files, "经理 审核.schema.json": "{}"}
    assert studio.save_draft(rt, users["owner1"], KEY, odd_name, revision) == revision + 1
