"""The OpenAPI 3.1 description of the JSON API under /api/v1, written by hand.

Paths are relative to the server URL ``/api/v1``. A test compares them with the routes the app
registers, so a new endpoint without a description here fails the build.
"""

from __future__ import annotations

from typing import Any

API_PREFIX = "/api/v1"


def _ref(name: str, kind: str = "schemas") -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _nullable(type_: str, **extra: Any) -> dict[str, Any]:
    return {"type": [type_, "null"], **extra}


_DATETIME = {"type": "string", "format": "date-time"}
_DATETIME_OR_NULL = _nullable("string", format="date-time")
_MONEY_OR_NULL = _nullable("string", pattern=r"^-?\d+(\.\d+)?$",
                           description="A decimal amount as text (never a float), e.g. \"24000.00\".")


def _schemas() -> dict[str, Any]:
    task_props = {
        "id": {"type": "integer"},
        "name": {"type": "string", "description": "The task's name as the process defines it."},
        "spec_id": {"type": "string", "description": "The BPMN id of the user task, e.g. prepare_quote."},
        "process_key": {"type": "string"},
        "role": {"type": "string", "description": "The role (lane) whose members may do the task."},
        "stage": _nullable("string"),
        "status": {"type": "string", "enum": ["open", "completed", "cancelled"]},
        "business_key": {"type": "string", "description": "The contract's key, e.g. Q-2026-00001."},
        "customer_name": _nullable("string"),
        "amount": _MONEY_OR_NULL,
        "assignee": _nullable("string", description="User name of the holder; null when unclaimed."),
        "assignee_name": _nullable("string"),
        "created_at": _DATETIME,
        "claimed_at": _DATETIME_OR_NULL,
        "due_at": _DATETIME_OR_NULL,
        "instance_version": {"type": "integer", "description": "Send it back as expected_version when completing."},
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": {"type": "string", "description": "A stable code: unauthorized, forbidden, not_found, "
                                                           "conflict, invalid, bad_request, four_eyes, ..."},
                "message": {"type": "string", "description": "What went wrong, for a person to read."},
                "errors": {"type": "object", "additionalProperties": {"type": "string"},
                           "description": "Per field: the field's path (parts joined by '/', e.g. "
                                          "line_items/0/quantity) and what is wrong with it."},
            },
        },
        "Task": {"type": "object", "required": list(task_props), "properties": task_props},
        "TaskPage": {
            "type": "object",
            "required": ["items", "total", "page", "per_page", "pages"],
            "properties": {
                "items": {"type": "array", "items": _ref("Task")},
                "total": {"type": "integer"},
                "page": {"type": "integer"},
                "per_page": {"type": "integer"},
                "pages": {"type": "integer"},
            },
        },
        "TaskDetail": {
            "allOf": [_ref("Task"), {
                "type": "object",
                "required": ["process_name", "form_schema", "values", "actions"],
                "properties": {
                    "process_name": {"type": "string"},
                    "form_schema": {"type": "object", "description": "The JSON Schema the completion data must fit."},
                    "values": {"type": "object", "description": "The form's current values (amounts as text)."},
                    "instructions": _nullable("string"),
                    "actions": {
                        "type": "object",
                        "description": "What the caller may do with the task now.",
                        "properties": {k: {"type": "boolean"} for k in ("claim", "unclaim", "complete", "reassign")},
                    },
                },
            }],
        },
        "CompleteRequest": {
            "type": "object",
            "required": ["data"],
            "additionalProperties": False,
            "properties": {
                "data": {"type": "object", "description": "The form's fields. Amounts as text, dates as YYYY-MM-DD. A "
                         "file field (format data-url) takes the reference of a file already uploaded to the "
                         "contract (data:<type>;name=…;size=…;sha256=…,); the API takes no file bytes."},
                "expected_version": {
                    "type": ["integer", "null"],
                    "description": "The instance_version the caller saw; if the contract moved on since, the "
                                   "answer is 409 and nothing changes.",
                },
            },
        },
        "ReassignRequest": {
            "type": "object",
            "required": ["to", "reason"],
            "additionalProperties": False,
            "properties": {
                "to": {"type": "string", "minLength": 1, "description": "User name of the new holder."},
                "reason": {"type": "string", "minLength": 1, "description": "Why; audited and sent to the new holder."},
            },
        },
        "Completion": {
            "type": "object",
            "required": ["task_id", "instance_id", "instance_version", "instance_status", "new_task_ids"],
            "properties": {
                "task_id": {"type": "integer"},
                "instance_id": {"type": "integer"},
                "instance_version": {"type": "integer"},
                "instance_status": {"type": "string"},
                "new_task_ids": {"type": "array", "items": {"type": "integer"}},
            },
        },
        "StartRequest": {
            "type": "object",
            "required": ["process_key"],
            "additionalProperties": False,
            "properties": {
                "process_key": {"type": "string", "examples": ["quote_to_cash", "complaint"]},
                "data": {"type": "object", "description": "The start form's fields, if the process has one."},
                "business_key": {"type": "string", "description": "Optional; generated when left out."},
            },
        },
        "StartResult": {
            "type": "object",
            "required": ["instance_id", "business_key", "version", "status", "open_task_ids"],
            "properties": {
                "instance_id": {"type": "integer"},
                "business_key": {"type": "string"},
                "version": {"type": "integer"},
                "status": {"type": "string"},
                "open_task_ids": {"type": "array", "items": {"type": "integer"}},
            },
        },
        "Instance": {
            "type": "object",
            "required": ["business_key", "process_key", "status", "version", "open_tasks", "path", "data"],
            "properties": {
                "id": {"type": "integer"},
                "business_key": {"type": "string"},
                "process_key": {"type": "string"},
                "process_name": {"type": "string"},
                "deployment_version": {"type": "integer"},
                "status": {"type": "string", "examples": ["running", "completed", "error"]},
                "stage": _nullable("string"),
                "end_event": _nullable("string"),
                "customer_name": _nullable("string"),
                "amount": _MONEY_OR_NULL,
                "version": {"type": "integer"},
                "open_tasks": {"type": "array", "items": _ref("Task")},
                "path": {"type": "array", "items": {"type": "string"},
                         "description": "BPMN ids of the finished steps, in order."},
                "data": {"type": "object", "description": "The business data; decimals as text."},
            },
        },
    }


_ERRORS = {
    "BadRequest": "The request is malformed: a parameter holds control characters, or the body is not a JSON "
                  "object sent as application/json.",
    "Unauthorized": "No bearer token, or the token is unknown, revoked, or belongs to an inactive account.",
    "Forbidden": "The account lacks the role for this (or four eyes forbid it).",
    "NotFound": "No such task or contract.",
    "Conflict": "Someone else acted first, or the contract changed since expected_version; nothing changed.",
    "Invalid": "The data does not fit; 'errors' maps each field path to what is wrong.",
}


def _responses() -> dict[str, Any]:
    return {name: _json(_ref("Error"), text) for name, text in _ERRORS.items()}


def _errors(*names: str) -> dict[str, Any]:
    codes = {"BadRequest": "400", "Unauthorized": "401", "Forbidden": "403", "NotFound": "404",
             "Conflict": "409", "Invalid": "422"}
    # any request may be refused as malformed (control characters in a parameter), whatever the operation
    return {codes[n]: _ref(n, "responses") for n in ("BadRequest", "Unauthorized", *names)}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


# what the app refuses with 400 in any parameter: control characters other than tab, CR and LF
_TEXT = {"type": "string", "pattern": "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f]*$"}
# the amount filters: plain decimals (empty: no filter); what money_arg would take beyond this is refused
AMOUNT_PATTERN = r"^(-?[0-9]{1,16}(\.[0-9]{1,12})?)?$"
_TASK_ID = {"name": "task_id", "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}}
_KEY = {"name": "key", "in": "path", "required": True, "schema": _TEXT,
        "description": "The contract's business key, e.g. Q-2026-00001."}


def _paths() -> dict[str, Any]:
    return {
        "/openapi.json": {"get": {
            "operationId": "getOpenApi", "summary": "This document", "security": [], "tags": ["meta"],
            "responses": {"200": {"description": "The OpenAPI document.",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}},
        }},
        "/tasks": {"get": {
            "operationId": "listTasks", "summary": "A task queue", "tags": ["tasks"],
            "parameters": [
                _query("scope", {"type": "string", "enum": ["mine", "roles", "team"], "default": "mine"},
                       "mine: held by me; roles: unclaimed tasks of my roles; team: my team's open tasks "
                       "(supervisors, managers, the director)."),
                _query("page", {"type": "integer", "minimum": 1, "maximum": 100_000, "default": 1}, "Page number."),
                _query("per_page", {"type": "integer", "minimum": 1, "maximum": 200, "default": 25}, "Page size."),
                _query("stage", _TEXT, "Only tasks in this stage (quote, approval, ...)."),
                _query("customer", _TEXT, "Customer name contains this text."),
                _query("amount_min", {"type": "string", "pattern": AMOUNT_PATTERN},
                       "Contract amount at least this (a decimal as text, e.g. 10000.50)."),
                _query("amount_max", {"type": "string", "pattern": AMOUNT_PATTERN},
                       "Contract amount at most this (a decimal as text)."),
                _query("due", {"type": "string", "enum": ["overdue", "today", "week", "none"]}, "Due-date filter."),
                _query("sort", {"type": "string", "enum": ["due", "created", "-created", "amount", "-amount",
                                                           "customer"], "default": "due"}, "Order."),
            ],
            "responses": {"200": _json(_ref("TaskPage"), "One page of tasks."), **_errors("Forbidden", "Invalid")},
        }},
        "/tasks/{task_id}": {"get": {
            "operationId": "getTask", "summary": "A task with its form", "tags": ["tasks"],
            "parameters": [_TASK_ID],
            "responses": {"200": _json(_ref("TaskDetail"), "The task."), **_errors("Forbidden", "NotFound")},
        }},
        "/tasks/{task_id}/claim": {"post": {
            "operationId": "claimTask", "summary": "Claim a task of one of my roles", "tags": ["tasks"],
            "parameters": [_TASK_ID],
            "responses": {"200": _json(_ref("Task"), "The task, now held by the caller."),
                          **_errors("Forbidden", "NotFound", "Conflict")},
        }},
        "/tasks/{task_id}/unclaim": {"post": {
            "operationId": "unclaimTask", "summary": "Give a task I hold back to its role's queue", "tags": ["tasks"],
            "parameters": [_TASK_ID],
            "responses": {"200": _json(_ref("Task"), "The task, now unclaimed."),
                          **_errors("NotFound", "Conflict")},
        }},
        "/tasks/{task_id}/reassign": {"post": {
            "operationId": "reassignTask", "summary": "Hand a task to another user of its role", "tags": ["tasks"],
            "description": "Allowed for the holder, for a member of the task's role while it is unclaimed, and for "
                           "a supervisor, manager or director of the contract's team. The new holder must be an "
                           "active user with the task's role (and team) whom four eyes do not rule out.",
            "parameters": [_TASK_ID],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ReassignRequest")}}},
            "responses": {"200": _json(_ref("Task"), "The task, now held by the new holder."),
                          **_errors("BadRequest", "Forbidden", "NotFound", "Conflict", "Invalid")},
        }},
        "/tasks/{task_id}/complete": {"post": {
            "operationId": "completeTask", "summary": "Complete a task with its form data", "tags": ["tasks"],
            "parameters": [_TASK_ID],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("CompleteRequest")}}},
            "responses": {"200": _json(_ref("Completion"), "Done; the contract moved on."),
                          **_errors("BadRequest", "Forbidden", "NotFound", "Conflict", "Invalid")},
        }},
        "/instances": {"post": {
            "operationId": "startInstance", "summary": "Start a contract (or complaint)", "tags": ["instances"],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("StartRequest")}}},
            "responses": {"201": {**_json(_ref("StartResult"), "Started."),
                                  "headers": {"Location": {"schema": {"type": "string"},
                                                           "description": "The new contract's URL in this API."}}},
                          **_errors("BadRequest", "Forbidden", "NotFound", "Invalid")},
        }},
        "/instances/{key}": {"get": {
            "operationId": "getInstance", "summary": "A contract: where it stands and its data",
            "tags": ["instances"], "parameters": [_KEY],
            "responses": {"200": _json(_ref("Instance"), "The contract."), **_errors("Forbidden", "NotFound")},
        }},
    }


def build_openapi(server_url: str = API_PREFIX) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Lvyue API",
            "version": "1.0.0",
            "description": "Contract workflows from quote to cash, for other systems. Authenticate with an API "
                           "token of a service account: 'Authorization: Bearer lvy_...'. An administrator issues "
                           "tokens on the account's page or with 'lvyue create-token'. The session cookie of the "
                           "web app is never accepted here.",
        },
        "servers": [{"url": server_url}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": "tasks"}, {"name": "instances"}, {"name": "meta"}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "lvy_<43 chars>",
                                               "description": "An API token of a service account."}},
            "schemas": _schemas(),
            "responses": _responses(),
        },
    }
