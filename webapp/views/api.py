"""The JSON API under /api/v1, for other systems acting as service accounts.

It authenticates only by ``Authorization: Bearer <token>`` — never by the session cookie — which is why
it is exempt from CSRF protection: a browser cannot be tricked into sending a bearer header. Errors are
JSON: ``{"error": code, "message": ..., "errors": {field path: message}}``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from flask import Blueprint, g, jsonify, request, url_for
from werkzeug.exceptions import HTTPException

from workflows.forms import to_form_values
from workflows.services import contract_view, instances, task_detail, tasks, tokens
from workflows.services.accounts import UserView
from workflows.services.errors import InvalidInput, ServiceError

from .. import csrf
from ..openapi import AMOUNT_PATTERN, build_openapi
from .common import queue_filter_arg, rt

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)

SCOPES = ("mine", "roles", "team")
QUEUE_PARAMS = frozenset({"scope", "page", "per_page", "stage", "customer", "amount_min", "amount_max", "due", "sort"})


class Unauthorized(ServiceError):
    code = "unauthorized"
    status = 401


class BadRequest(ServiceError):
    code = "bad_request"
    status = 400


def api_user() -> UserView:
    return g.api_user


@bp.before_request
def _authenticate():
    if request.endpoint == "api.openapi":
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send an API token: 'Authorization: Bearer <token>'")
    user = tokens.user_for_token(rt(), token.strip())
    if user is None:
        raise Unauthorized("the API token is unknown or revoked, or its account is inactive")
    g.api_user = user
    return None


@bp.after_request
def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="lvyue"'
    return response


def _error(status: int, code: str, message: str, errors: dict | None = None):
    body: dict[str, Any] = {"error": code, "message": message}
    if errors:
        body["errors"] = errors
    return jsonify(body), status


@bp.errorhandler(ServiceError)
def _service_error(err: ServiceError):
    """Messages stay as the services word them (English), so that programs may rely on them."""
    return _error(err.status, err.code, err.message, getattr(err, "errors", None))


@bp.errorhandler(HTTPException)
def _http_error(err: HTTPException):
    return _error(err.code or 500, (err.name or "error").lower().replace(" ", "_"), err.description or "")


# --- parsing ---------------------------------------------------------------------------------------------

def _json_body() -> dict[str, Any]:
    if not request.is_json:
        raise BadRequest("send the body as JSON with 'Content-Type: application/json'")
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        raise BadRequest("the JSON body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object, e.g. {\"data\": {...}}")
    return body


def _only(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    extra = sorted(set(body) - set(allowed))
    if extra:
        raise InvalidInput("unknown fields in the body", {k: "this field is not part of the request" for k in extra})


def _object_field(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"'{name}' must be an object", {name: "must be a JSON object"})
    return value


def _no_nul(body: dict[str, Any], names: tuple[str, ...]) -> None:
    """Text that goes into SQL as it is: PostgreSQL cannot hold a NUL, and would fail the request with a 500."""
    bad = {k: "must not contain NUL characters" for k in names if isinstance(body.get(k), str) and "\x00" in body[k]}
    if bad:
        raise InvalidInput("NUL characters in the body", bad)


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"'{name}' must be a whole number", {name: "must be a whole number"}) from None
    if not lo <= value <= hi:
        raise InvalidInput(f"'{name}' is out of range", {name: f"must be between {lo} and {hi}"})
    return value





# --- rendering -------------------------------------------------------------------------------------------

def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _money(value: Any) -> str | None:
    return str(value) if value is not None else None


def task_json(t: tasks.TaskItem) -> dict[str, Any]:
    return {
        "id": t.id, "name": t.name, "spec_id": t.spec_id, "process_key": t.process_key, "role": t.role,
        "stage": t.stage, "status": t.status, "business_key": t.business_key, "customer_name": t.customer_name,
        "amount": _money(t.amount), "assignee": t.assignee, "assignee_name": t.assignee_name,
        "created_at": _iso(t.created_at), "claimed_at": _iso(t.claimed_at), "due_at": _iso(t.due_at),
        "instance_version": t.instance_version,
    }


# --- endpoints -------------------------------------------------------------------------------------------

@bp.get("/openapi.json")
def openapi():
    return jsonify(build_openapi(request.script_root + bp.url_prefix))


@bp.get("/tasks")
def list_tasks():
    scope = request.args.get("scope") or "mine"
    if scope not in SCOPES:
        raise InvalidInput(f"unknown queue '{scope}'", {"scope": "must be mine, roles or team"})
    unknown = sorted(set(request.args) - QUEUE_PARAMS)
    if unknown:  # a misspelt filter must not silently widen the queue
        raise InvalidInput("unknown query parameters",
                           {k[:100]: "this parameter is not part of the request" for k in unknown})
    empty = [k for k in ("scope", "page", "per_page", "due", "sort") if request.args.get(k) == ""]
    if empty:  # the document lists their values (and defaults): an empty one is none of them
        raise InvalidInput("empty query parameters", {k: "leave it out or give one of its values" for k in empty})
    for name in ("amount_min", "amount_max"):  # plain decimals only, as documented (the web page takes "12,000")
        if not re.fullmatch(AMOUNT_PATTERN, request.args.get(name, "")):  # search's $ passes "5\n"
            raise InvalidInput(f"'{name}' is not an amount", {name: "must be a decimal such as 1234.50"})
    filters = queue_filter_arg()
    page = tasks.list_tasks(rt(), api_user(), scope, page=_int_arg("page", 1, 1, 100_000),
                            per_page=_int_arg("per_page", 25, 1, 200), filters=filters)
    return jsonify(items=[task_json(t) for t in page.items], total=page.total, page=page.page,
                   per_page=page.per_page, pages=page.pages)


@bp.get("/tasks/<int:task_id>")
def get_task(task_id: int):
    d = task_detail.task_detail(rt(), task_id, api_user())
    return jsonify({**task_json(d.task), "process_name": d.process_name, "form_schema": d.schema,
                    "values": to_form_values(d.values), "instructions": d.instructions,
                    "actions": {"claim": d.may_claim, "unclaim": d.may_unclaim, "complete": d.may_complete,
                                "reassign": d.may_reassign}})


@bp.post("/tasks/<int:task_id>/claim")
def claim(task_id: int):
    task_detail.require_visible(rt(), task_id, api_user())
    return jsonify(task_json(tasks.claim(rt(), task_id, api_user())))


@bp.post("/tasks/<int:task_id>/unclaim")
def unclaim(task_id: int):
    task_detail.require_visible(rt(), task_id, api_user(), unclaim=True)
    return jsonify(task_json(tasks.unclaim(rt(), task_id, api_user())))


@bp.post("/tasks/<int:task_id>/reassign")
def reassign(task_id: int):
    task_detail.require_visible(rt(), task_id, api_user())
    body = _json_body()
    _only(body, ("to", "reason"))
    _no_nul(body, ("to", "reason"))
    to, reason = body.get("to"), body.get("reason")
    errors = {}
    if not isinstance(to, str) or not to.strip():
        errors["to"] = "required: the user name of the new holder"
    if not isinstance(reason, str) or not reason.strip():
        errors["reason"] = "required: why the task changes hands"
    if errors:
        raise InvalidInput("whom to, and why?", errors)
    return jsonify(task_json(tasks.reassign(rt(), task_id, api_user(), to.strip(), reason)))


@bp.post("/tasks/<int:task_id>/complete")
def complete(task_id: int):
    task_detail.require_visible(rt(), task_id, api_user())
    body = _json_body()
    _only(body, ("data", "expected_version"))
    data = _object_field(body, "data")
    expected = body.get("expected_version")
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int)):
        raise InvalidInput("'expected_version' must be an integer", {"expected_version": "must be an integer"})
    done = tasks.complete(rt(), task_id, api_user(), data, expected_version=expected)
    return jsonify(task_id=done.task_id, instance_id=done.instance_id, instance_version=done.instance_version,
                   instance_status=done.instance_status, new_task_ids=list(done.new_task_ids))


@bp.post("/instances")
def start():
    body = _json_body()
    _only(body, ("process_key", "data", "business_key"))
    _no_nul(body, ("process_key", "business_key"))
    process_key, business_key = body.get("process_key"), body.get("business_key")
    if not isinstance(process_key, str) or not process_key.strip():
        raise InvalidInput("which process?", {"process_key": "required, e.g. quote_to_cash"})
    if business_key is not None and (not isinstance(business_key, str) or not business_key.strip()):
        raise InvalidInput("'business_key' must be text", {"business_key": "must be non-empty text"})
    started = instances.start_instance(rt(), process_key.strip(), api_user(), _object_field(body, "data"),
                                       business_key.strip() if business_key else None)
    response = jsonify(instance_id=started.instance_id, business_key=started.business_key, version=started.version,
                       status=started.status, open_task_ids=list(started.open_task_ids))
    response.status_code = 201
    response.headers["Location"] = url_for("api.get_instance", key=started.business_key)
    return response


@bp.get("/instances/<key>")
def get_instance(key: str):
    c = contract_view.contract_view(rt(), key, api_user())
    i = c.instance
    return jsonify(id=i.id, business_key=i.business_key, process_key=i.process_key, process_name=c.process_name,
                   deployment_version=i.deployment_version, status=i.status, stage=i.stage, end_event=i.end_event,
                   customer_name=i.customer_name, amount=_money(i.amount), version=i.version,
                   open_tasks=[task_json(t) for t in c.open_tasks], path=list(i.path), data=to_form_values(c.data))
