"""The JSON API under /api/v1: bearer tokens of service accounts (never the session cookie), the task
and contract endpoints with their JSON errors, the OpenAPI document, and ``lvyue create-token``."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy import func, select

from models import ApiToken, AuditEvent, TaskRow
from workflows.cli import main
from workflows.services import accounts, instances, tasks, tokens
from workflows.services.errors import InvalidInput, PermissionDenied

from .flow import Flow, approve, quote

API = "/api/v1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Api:
    """A test client that sends one bearer token with every request."""

    def __init__(self, client, token: str) -> None:
        self.client, self.token = client, token

    def get(self, path: str, **kw):
        return self.client.get(API + path, headers=bearer(self.token), **kw)

    def post(self, path: str, body=None, **kw):
        if body is not None:
            kw["json"] = body
        return self.client.post(API + path, headers=bearer(self.token), **kw)


def service_account(rt, username: str = "erp", roles=("sales_rep",)) -> tuple[accounts.UserRecord, str]:
    account = accounts.create_service_account(rt, username, f"{username} integration", list(roles), actor=None)
    return account, tokens.issue_token(rt, account.id, f"{username} sync", actor=None)


@pytest.fixture
def erp(rt):
    return service_account(rt)


@pytest.fixture
def api(client, erp) -> Api:
    return Api(client, erp[1])


def error_of(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:800])
    assert response.is_json, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert set(body) <= {"error", "message", "errors"} and body["message"], body
    if code:
        assert body["error"] == code, body
    return body


def audit_count(rt, action: str) -> int:
    with rt.read() as s:
        return s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action))


# --- tokens ----------------------------------------------------------------------------------------------

def test_token_format_only_its_hash_is_stored_and_issuing_is_audited(rt, erp):
    account, token = erp
    assert re.fullmatch(r"lvy_[A-Za-z0-9_-]{43}", token)
    with rt.read() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.user_id == account.id))
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in (row.token_hash, row.name)
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "token_issued"))
    assert event.actor == "system" and event.data["token_id"] == row.id and token not in str(event.data)
    assert tokens.user_for_token(rt, token).username == "erp"
    assert [t.name for t in tokens.list_tokens(rt, account.id)] == ["erp sync"]


def test_tokens_are_for_active_service_accounts_and_issued_by_admins(rt, users, erp):
    with pytest.raises(InvalidInput) as err:
        tokens.issue_token(rt, users["rep1"].id, "mine", users["admin"])
    assert "name" in err.value.errors
    with pytest.raises(PermissionDenied):
        tokens.issue_token(rt, erp[0].id, "x", users["sup1"])
    with pytest.raises(InvalidInput):
        tokens.issue_token(rt, erp[0].id, "   ", users["admin"])
    with pytest.raises(PermissionDenied):
        tokens.revoke_token(rt, tokens.list_tokens(rt, erp[0].id)[0].id, users["rep1"])


def test_last_used_is_written_at_most_once_a_minute(rt, erp, clock):
    account, token = erp

    def last_used():
        return tokens.list_tokens(rt, account.id)[0].last_used_at

    assert last_used() is None
    first = clock.now()
    tokens.user_for_token(rt, token)
    assert last_used() == first
    clock.advance(seconds=40)
    tokens.user_for_token(rt, token)
    assert last_used() == first
    clock.advance(seconds=25)
    tokens.user_for_token(rt, token)
    assert last_used() == first + timedelta(seconds=65)


# --- authentication --------------------------------------------------------------------------------------

def test_requests_without_a_valid_token_get_401(rt, client, users, erp):
    account, token = erp
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic ZXJwOnNlY3JldA=="},
                    bearer("lvy_" + "x" * 43), bearer("not-a-token"), bearer(token + "x")):
        response = client.get(API + "/tasks", headers=headers)
        error_of(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get(API + "/tasks", headers=bearer(token)).status_code == 200

    revoked_account, revoked = service_account(rt, "old")
    tokens.revoke_token(rt, tokens.list_tokens(rt, revoked_account.id)[0].id, users["admin"])
    error_of(client.get(API + "/tasks", headers=bearer(revoked)), 401, "unauthorized")
    assert audit_count(rt, "token_revoked") == 1

    accounts.update_user(rt, account.id, ["sales_rep"], "erp", None, None, False, users["admin"])
    error_of(client.get(API + "/tasks", headers=bearer(token)), 401, "unauthorized")
    error_of(client.post(API + "/instances", headers=bearer(token), json={"process_key": "quote_to_cash"}), 401)


def test_a_logged_in_browser_session_is_not_accepted(rt, login):
    """The API is exempt from CSRF only because it never looks at the session cookie."""
    web = login("rep1")
    assert web.get("/tasks").status_code == 200  # the session works for the pages
    error_of(web.get(API + "/tasks"), 401, "unauthorized")
    error_of(web.client.post(API + "/instances", json={"process_key": "quote_to_cash"}), 401, "unauthorized")
    with rt.read() as s:
        assert s.scalar(select(func.count()).select_from(TaskRow)) == 0


def test_api_responses_are_not_cached(api):
    assert api.get("/tasks").headers["Cache-Control"] == "no-store"


# --- the happy path --------------------------------------------------------------------------------------

def test_service_account_starts_a_quote_and_completes_prepare_quote(rt, api, client):
    started = api.post("/instances", {"process_key": "quote_to_cash", "data": {"customer_name": "华东机械"}})
    assert started.status_code == 201, started.get_json()
    body = started.get_json()
    key = body["business_key"]
    assert re.fullmatch(r"Q-\d{4}-\d{5}", key) and body["status"] == "running" and len(body["open_task_ids"]) == 1
    assert started.headers["Location"].endswith(f"{API}/instances/{key}")
    task_id = body["open_task_ids"][0]

    queue = api.get("/tasks?scope=roles").get_json()
    assert queue["total"] == 1 and queue["page"] == 1 and queue["pages"] == 1
    item = queue["items"][0]
    assert item["id"] == task_id and item["spec_id"] == "prepare_quote" and item["role"] == "sales_rep"
    assert item["business_key"] == key and item["assignee"] is None and item["customer_name"] == "华东机械"
    assert item["created_at"].startswith("2026-11-23T02:00:00") and item["created_at"].endswith("+00:00")

    detail = api.get(f"/tasks/{task_id}").get_json()
    assert detail["actions"]["claim"] and detail["actions"]["complete"]
    assert "line_items" in detail["form_schema"]["properties"]

    claimed = api.post(f"/tasks/{task_id}/claim")
    assert claimed.status_code == 200 and claimed.get_json()["assignee"] == "erp"
    mine = api.get("/tasks?scope=mine").get_json()
    assert [t["id"] for t in mine["items"]] == [task_id]

    done = api.post(f"/tasks/{task_id}/complete", {"data": quote(), "expected_version": item["instance_version"]})
    assert done.status_code == 200, done.get_json()
    result = done.get_json()
    assert result["task_id"] == task_id and result["instance_status"] == "running"
    assert result["instance_version"] > item["instance_version"] and len(result["new_task_ids"]) == 1

    contract = api.get(f"/instances/{key}").get_json()
    assert contract["business_key"] == key and contract["status"] == "running" and contract["stage"] == "approval"
    assert contract["amount"] == "24000.00" and contract["version"] == result["instance_version"]
    assert "prepare_quote" in contract["path"]
    assert [t["spec_id"] for t in contract["open_tasks"]] == ["supervisor_review"]
    assert contract["data"]["line_items"][0]["unit_price"] == "12000.00"
    assert isinstance(contract["data"]["line_items"][0]["quantity"], int)
    with rt.read() as s:
        completed = s.scalar(select(AuditEvent).where(AuditEvent.action == "complete"))
    assert completed.actor == "erp"


def test_queue_filters_and_paging(rt, api):
    for n, customer in enumerate(["Alpha 甲", "Beta 乙", "Gamma 丙"]):
        assert api.post("/instances", {"process_key": "quote_to_cash", "data": {"customer_name": customer}}
                        ).status_code == 201, n
    page = api.get("/tasks?scope=roles&per_page=2&sort=customer").get_json()
    assert page["total"] == 3 and page["pages"] == 2 and page["per_page"] == 2
    assert [t["customer_name"] for t in page["items"]] == ["Alpha 甲", "Beta 乙"]
    assert [t["customer_name"] for t in api.get("/tasks?scope=roles&per_page=2&page=2&sort=customer")
            .get_json()["items"]] == ["Gamma 丙"]
    assert api.get("/tasks?scope=roles&customer=Beta").get_json()["total"] == 1
    assert api.get("/tasks?scope=roles&stage=approval").get_json()["total"] == 0
    assert api.get("/tasks?scope=roles&due=overdue").get_json()["total"] == 0
    newest = api.get("/tasks?scope=roles&amount_min=&sort=-created").get_json()["items"]
    assert [t["customer_name"] for t in newest] == ["Gamma 丙", "Beta 乙", "Alpha 甲"]


# --- failures --------------------------------------------------------------------------------------------

def test_stale_expected_version_is_a_409_and_changes_nothing(rt, api):
    key = api.post("/instances", {"process_key": "quote_to_cash"}).get_json()["business_key"]
    task = api.get("/tasks?scope=roles").get_json()["items"][0]
    before = instances.get_instance(rt, key)
    stale = api.post(f"/tasks/{task['id']}/complete", {"data": quote(), "expected_version": before.version - 1})
    body = error_of(stale, 409, "conflict")
    assert "changed" in body["message"]
    after = instances.get_instance(rt, key)
    assert (after.version, after.open_tasks, after.path) == (before.version, before.open_tasks, before.path)
    assert tasks.get_task(rt, task["id"]).status == "open" and audit_count(rt, "complete") == 0


def test_validation_errors_are_422_with_the_field_path(rt, api):
    task_id = api.post("/instances", {"process_key": "quote_to_cash"}).get_json()["open_task_ids"][0]
    bad = quote()
    bad["line_items"] = [{"product": "CNC lathe", "quantity": "two", "unit_price": "12000.00"}]
    del bad["customer_name"]
    body = error_of(api.post(f"/tasks/{task_id}/complete", {"data": bad}), 422, "invalid")
    assert "line_items/0/quantity" in body["errors"] and "customer_name" in body["errors"]
    body = error_of(api.post(f"/tasks/{task_id}/complete", {"data": quote(), "expected_version": "3"}), 422)
    assert body["errors"] == {"expected_version": "must be an integer"}
    body = error_of(api.post(f"/tasks/{task_id}/complete", {"data": [1, 2]}), 422)
    assert "data" in body["errors"]
    body = error_of(api.post(f"/tasks/{task_id}/complete", {"data": quote(), "expected_versoin": 1}), 422)
    assert "expected_versoin" in body["errors"]
    assert tasks.get_task(rt, task_id).status == "open" and audit_count(rt, "complete") == 0


def test_non_json_bodies_are_400(api):
    task_id = api.post("/instances", {"process_key": "quote_to_cash"}).get_json()["open_task_ids"][0]
    for kw in ({"data": "data=1", "content_type": "application/x-www-form-urlencoded"},
               {"data": "{not json", "content_type": "application/json"},
               {"data": "[1, 2]", "content_type": "application/json"},
               {"data": "hello", "content_type": "text/plain"}):
        body = error_of(api.post(f"/tasks/{task_id}/complete", **kw), 400, "bad_request")
        assert "JSON" in body["message"]
    error_of(api.post("/instances", data="process_key=quote_to_cash",
                      content_type="application/x-www-form-urlencoded"), 400, "bad_request")


def test_role_violations_are_403(rt, api, client):
    flow = Flow(rt)  # started by rep1: the service account also holds sales_rep
    flow.act("prepare_quote", "rep1", quote())
    review = flow.task("supervisor_review")
    error_of(api.post(f"/tasks/{review.id}/claim"), 403, "forbidden")
    error_of(api.post(f"/tasks/{review.id}/complete", {"data": approve("supervisor")}), 403, "forbidden")
    error_of(api.get(f"/tasks/{review.id}"), 403, "forbidden")
    error_of(api.get(f"/instances/{flow.started.business_key}"), 403, "forbidden")  # no part in it
    error_of(api.get("/tasks?scope=team"), 403, "forbidden")
    assert tasks.get_task(rt, review.id).status == "open"

    _, legal_token = service_account(rt, "contracts-bot", roles=("legal",))
    body = error_of(Api(client, legal_token).post("/instances", {"process_key": "quote_to_cash"}), 403, "forbidden")
    assert "sales_rep" in body["message"]


def test_claimed_by_someone_else_is_409(rt, api, users):
    task_id = api.post("/instances", {"process_key": "quote_to_cash"}).get_json()["open_task_ids"][0]
    tasks.claim(rt, task_id, users["rep2"])
    error_of(api.post(f"/tasks/{task_id}/claim"), 409, "conflict")
    error_of(api.post(f"/tasks/{task_id}/complete", {"data": quote()}), 409, "conflict")


def test_unclaim_gives_the_task_back_and_only_the_holder_may(rt, api, users):
    task_id = api.post("/instances", {"process_key": "quote_to_cash"}).get_json()["open_task_ids"][0]
    assert api.post(f"/tasks/{task_id}/claim").get_json()["assignee"] == "erp"
    freed = api.post(f"/tasks/{task_id}/unclaim")
    assert freed.status_code == 200, freed.get_json()
    body = freed.get_json()
    assert body["id"] == task_id and body["assignee"] is None and body["claimed_at"] is None
    assert tasks.get_task(rt, task_id).assignee is None and audit_count(rt, "unclaim") == 1
    assert [t["id"] for t in api.get("/tasks?scope=roles").get_json()["items"]] == [task_id]

    error_of(api.post(f"/tasks/{task_id}/unclaim"), 409, "conflict")  # not held by anyone
    tasks.claim(rt, task_id, users["rep2"])
    assert "not claimed by erp" in error_of(api.post(f"/tasks/{task_id}/unclaim"), 409, "conflict")["message"]
    assert tasks.get_task(rt, task_id).assignee == "rep2" and audit_count(rt, "unclaim") == 1

    tasks.complete(rt, task_id, users["rep2"], quote())
    assert "completed" in error_of(api.post(f"/tasks/{task_id}/unclaim"), 409, "conflict")["message"]
    error_of(api.post("/tasks/999999/unclaim"), 404, "not_found")
    assert audit_count(rt, "unclaim") == 1


def test_reassign_by_the_holder_and_by_a_supervisor(rt, api, client, users):
    task_id = api.post("/instances", {"process_key": "quote_to_cash"}).get_json()["open_task_ids"][0]
    api.post(f"/tasks/{task_id}/claim")
    handed = api.post(f"/tasks/{task_id}/reassign", {"to": " rep2 ", "reason": "on holiday next week"})
    assert handed.status_code == 200, handed.get_json()
    assert handed.get_json()["assignee"] == "rep2" and tasks.get_task(rt, task_id).assignee == "rep2"
    with rt.read() as s:
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "reassign"))
    assert (event.actor, event.task_id) == ("erp", task_id)
    assert event.data == {"from": "erp", "to": "rep2", "reason": "on holiday next week"}

    # no longer the holder, and no supervisor: forbidden, and nothing changes
    error_of(api.post(f"/tasks/{task_id}/reassign", {"to": "rep1", "reason": "take it back"}), 403, "forbidden")
    _, boss_token = service_account(rt, "team-lead-bot", roles=("supervisor",))
    boss = Api(client, boss_token)
    taken = boss.post(f"/tasks/{task_id}/reassign", {"to": "rep1", "reason": "rep2 is overloaded"})
    assert taken.status_code == 200 and taken.get_json()["assignee"] == "rep1", taken.get_json()
    assert tasks.get_task(rt, task_id).assignee == "rep1" and audit_count(rt, "reassign") == 2

    tasks.complete(rt, task_id, users["rep1"], quote())
    body = error_of(boss.post(f"/tasks/{task_id}/reassign", {"to": "rep2", "reason": "too late now"}), 409, "conflict")
    assert "completed" in body["message"]
    error_of(boss.post("/tasks/999999/reassign", {"to": "rep2", "reason": "no such task"}), 404, "not_found")
    assert audit_count(rt, "reassign") == 2


def test_reassign_needs_a_role_member_or_holder_and_a_fitting_target(rt, api, users):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    review = flow.task("supervisor_review")
    # a supervisor's review, and the sales rep account is neither its holder nor a supervisor
    error_of(api.post(f"/tasks/{review.id}/reassign", {"to": "sup1", "reason": "yours"}), 403, "forbidden")
    error_of(api.post(f"/tasks/{review.id}/unclaim"), 409, "conflict")
    assert tasks.get_task(rt, review.id).assignee is None

    task_id = api.post("/instances", {"process_key": "quote_to_cash"}).get_json()["open_task_ids"][0]
    for body, field in (({"to": "fin1", "reason": "wrong role"}, "to"), ({"to": "nobody", "reason": "who?"}, "to"),
                        ({"to": "rep2"}, "reason"), ({"to": "rep2", "reason": "   "}, "reason"),
                        ({"reason": "to whom?"}, "to"), ({"to": 7, "reason": "a number"}, "to"),
                        ({"to": "rep2", "reason": "x", "urgent": True}, "urgent")):
        answer = error_of(api.post(f"/tasks/{task_id}/reassign", body), 422, "invalid")
        assert field in answer["errors"], (body, answer)
    for kw in ({"data": "to=rep2", "content_type": "application/x-www-form-urlencoded"},
               {"data": "{not json", "content_type": "application/json"},
               {"data": "[\"rep2\"]", "content_type": "application/json"}):
        error_of(api.post(f"/tasks/{task_id}/reassign", **kw), 400, "bad_request")
    assert tasks.get_task(rt, task_id).assignee is None and audit_count(rt, "reassign") == 0


def test_bad_requests_and_unknown_things(api):
    for query, field in (("scope=open", "scope"), ("scope=bogus", "scope"), ("page=x", "page"), ("page=0", "page"),
                         ("per_page=500", "per_page"), ("amount_min=abc", "amount_min"),
                         ("amount_max=NaN", "amount_max"), ("due=soon", "due"), ("sort=price", "sort")):
        body = error_of(api.get(f"/tasks?{query}"), 422, "invalid")
        assert field in body["errors"], (query, body)
    error_of(api.get("/tasks/999999"), 404, "not_found")
    error_of(api.post("/tasks/999999/claim"), 404, "not_found")
    error_of(api.post("/tasks/999999/complete", {"data": {}}), 404, "not_found")
    error_of(api.get("/instances/Q-1999-00001"), 404, "not_found")
    error_of(api.get("/nothing-here"), 404)
    error_of(api.get("/tasks/1/claim"), 405)
    error_of(api.post("/instances", {"process_key": "no_such_process"}), 404, "not_found")
    assert "process_key" in error_of(api.post("/instances", {"data": {}}), 422)["errors"]
    assert "colour" in error_of(api.post("/instances", {"process_key": "quote_to_cash", "colour": "red"}),
                                422)["errors"]
    assert "customer_name" in error_of(api.post("/instances", {"process_key": "quote_to_cash",
                                                               "data": {"customer_name": 5}}), 422)["errors"]


# --- the OpenAPI document --------------------------------------------------------------------------------

def _openapi(client) -> dict:
    response = client.get(API + "/openapi.json")  # no token needed
    assert response.status_code == 200 and response.is_json
    return response.get_json()


def _resolve(doc: dict, ref: str):
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"unresolved $ref {ref}"
        node = node[part]
    return node


def _refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_openapi_document_is_valid(client):
    doc = _openapi(client)
    assert doc["openapi"].startswith("3.1.") and doc["info"]["title"] and doc["info"]["version"]
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert doc["security"] == [{"bearerAuth": []}]
    for ref in _refs(doc):
        _resolve(doc, ref)
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    seen_ids = set()
    for path, item in doc["paths"].items():
        params = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            assert method in {"get", "post", "put", "patch", "delete"}, (path, method)
            assert op["responses"], (path, method)
            assert op["operationId"] not in seen_ids
            seen_ids.add(op["operationId"])
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == params, (path, method, declared)
            for status, response in op["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d", status), (path, status)
                response = _resolve(doc, response["$ref"]) if "$ref" in response else response
                assert response["description"]
            if path != "/openapi.json":
                assert "401" in op["responses"], (path, method)
                assert any(s.startswith("2") for s in op["responses"]), (path, method)


def test_openapi_lists_every_api_route(app, client):
    doc = _openapi(client)
    documented = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    registered = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API + "/"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule[len(API):])
        registered |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert registered and documented == registered, (documented ^ registered)
    assert doc["servers"] == [{"url": API}]


def test_responses_match_the_documented_schemas(rt, api, client):
    doc = _openapi(client)
    registry = Registry().with_resource("urn:lvyue:openapi", Resource.from_contents(doc, DRAFT202012))

    def check(response, schema_name: str) -> None:
        validator = Draft202012Validator({"$ref": f"urn:lvyue:openapi#/components/schemas/{schema_name}"},
                                         registry=registry)
        errors = [e.message for e in validator.iter_errors(response.get_json())]
        assert not errors, (schema_name, errors)

    started = api.post("/instances", {"process_key": "quote_to_cash", "data": {"customer_name": "X"}})
    check(started, "StartResult")
    task_id = started.get_json()["open_task_ids"][0]
    check(api.get("/tasks?scope=roles"), "TaskPage")
    check(api.get(f"/tasks/{task_id}"), "TaskDetail")
    check(api.post(f"/tasks/{task_id}/claim"), "Task")
    check(api.post(f"/tasks/{task_id}/unclaim"), "Task")
    check(api.post(f"/tasks/{task_id}/reassign", {"to": "erp", "reason": "back to me"}), "Task")
    check(api.post(f"/tasks/{task_id}/complete", {"data": quote()}), "Completion")
    check(api.get(f"/instances/{started.get_json()['business_key']}"), "Instance")
    check(api.get("/tasks?scope=bogus"), "Error")
    check(client.get(API + "/tasks"), "Error")


# --- the shell -------------------------------------------------------------------------------------------

def test_create_token_command(rt, client):
    runner = CliRunner()
    made = runner.invoke(main, ["--db", rt.database_url, "create-token", "crm", "--name", "CRM sync",
                                "--role", "sales_rep", "--display-name", "CRM"])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert re.fullmatch(r"lvy_[A-Za-z0-9_-]{43}", token) and "shown only once" in made.stderr
    account = accounts.get_user(rt, "crm")
    assert account.roles == {"sales_rep"} and client.get(API + "/tasks", headers=bearer(token)).status_code == 200
    again = runner.invoke(main, ["--db", rt.database_url, "create-token", "crm", "--name", "second"])
    assert again.exit_code == 0 and again.stdout.strip() != token
    assert len(tokens.list_tokens(rt, account.id)) == 2

    missing = runner.invoke(main, ["--db", rt.database_url, "create-token", "nobody", "--name", "x"])
    assert missing.exit_code == 1 and "--role" in missing.stderr
    person = runner.invoke(main, ["--db", rt.database_url, "create-token", "rep1", "--name", "x"])
    assert person.exit_code == 1 and "service accounts" in person.stderr


# --- found by fuzzing the document (tests/test_api_schema.py) ---------------------------------------------

def test_control_characters_in_parameters_are_a_documented_400(api, client):
    """The app refuses them before the API sees the request: every operation documents that 400."""
    key = api.post("/instances", {"process_key": "quote_to_cash"}).get_json()["business_key"]
    for path in ("/tasks?stage=%17", "/tasks?customer=a%01b", f"/instances/{key}%11"):
        error_of(api.get(path), 400)
    for path, item in _openapi(client)["paths"].items():
        for method, op in item.items():
            if path != "/openapi.json":
                assert "400" in op["responses"], (path, method)


def test_amount_filters_take_only_the_documented_plain_decimals(api, client):
    api.post("/instances", {"process_key": "quote_to_cash", "data": {"customer_name": "A"}})
    params = {p["name"]: p["schema"] for p in _openapi(client)["paths"]["/tasks"]["get"]["parameters"]}
    for raw in ("\u0091\u00a6e\u0084", "1,000", "١٢٣", "1e5", "1_000", " 5"):
        assert not re.search(params["amount_min"]["pattern"], raw), raw
        assert "amount_min" in error_of(api.get("/tasks", query_string={"amount_min": raw}), 422)["errors"], raw
    for raw in ("", "0", "12000.50", "-3"):
        assert re.search(params["amount_max"]["pattern"], raw), raw
        assert api.get("/tasks", query_string={"scope": "roles", "amount_max": raw}).status_code == 200, raw
    assert params["page"]["maximum"] == 100_000
    error_of(api.get("/tasks?page=100001"), 422, "invalid")


def test_unknown_or_empty_query_parameters_are_refused(api):
    """A misspelt filter used to be ignored, widening the queue; an empty enum value is none of its values."""
    body = error_of(api.get("/tasks?scope=roles&custmer=Beta&=0.0"), 422, "invalid")
    assert set(body["errors"]) == {"custmer", ""}
    for name in ("scope", "page", "per_page", "due", "sort"):
        assert name in error_of(api.get(f"/tasks?{name}="), 422, "invalid")["errors"], name
    assert api.get("/tasks?stage=&customer=&amount_min=").status_code == 200  # empty text: no filter


def test_nul_characters_and_overlong_names_in_bodies_are_a_422_not_a_500(rt, api):
    """PostgreSQL refuses NUL in text and names longer than their column: these were 500s there."""
    assert "process_key" in error_of(api.post("/instances", {"process_key": "\x00"}), 422, "invalid")["errors"]
    assert "business_key" in error_of(api.post("/instances", {"process_key": "quote_to_cash",
                                                               "business_key": "Q-\x00"}), 422)["errors"]
    for name in ("a\x00b", "x" * 201):
        body = error_of(api.post("/instances", {"process_key": "quote_to_cash", "data": {"customer_name": name}}),
                        422, "invalid")
        assert "customer_name" in body["errors"]
    assert api.post("/instances", {"process_key": "quote_to_cash", "data": {"customer_name": "中" * 200}}
                    ).status_code == 201
    task_id = api.post("/instances", {"process_key": "quote_to_cash"}).get_json()["open_task_ids"][0]
    for body, field in (({"to": "rep\x002", "reason": "on leave"}, "to"),
                        ({"to": "rep2", "reason": "on\x00"}, "reason")):
        assert set(error_of(api.post(f"/tasks/{task_id}/reassign", body), 422, "invalid")["errors"]) == {field}
    assert tasks.get_task(rt, task_id).assignee is None


def test_errors_made_outside_the_api_views_have_stable_codes_and_english_messages(client):
    response = client.get("/api/v1/tasks?stage=%01")
    assert response.status_code == 400
    assert response.get_json() == {"error": "bad_request", "message": "The request contains control characters."}
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.get_json() == {"error": "not_found", "message": "Not found"}


def test_amount_filters_take_no_trailing_line_break(rt, app):
    account = accounts.create_service_account(rt, "filter-bot", None, ["supervisor"], actor=None)
    token = tokens.issue_token(rt, account.id, "filters", actor=None)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/tasks?scope=roles&amount_min=5", headers=headers).status_code == 200
    response = client.get("/api/v1/tasks?scope=roles&amount_min=5%0A", headers=headers)
    assert response.status_code == 422 and response.get_json()["errors"] == {
        "amount_min": "must be a decimal such as 1234.50"}
