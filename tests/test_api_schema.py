"""The JSON API fuzzed against its own OpenAPI document with schemathesis.

The hand-written document in ``webapp/openapi.py`` is a contract other systems code against. Here every
operation it lists is called with generated requests, valid ones and deliberately invalid ones, with a
token of an account that may use it, a token of an account with the wrong role, and no token at all,
against a database with a few real contracts (so that generated ids sometimes hit real rows). Every
built-in schemathesis check must pass: no 5xx, only documented status codes and content types, bodies
and headers that fit the documented schemas, invalid requests rejected, valid ones not refused for being
malformed.

Every operation must also show one real success in the positive phase: each run starts with one explicit, valid
request of the authorized caller on a real row (``VALID``), checked like the generated ones (with the
"valid data is accepted" check on, even where generated bodies cannot be valid), and the status codes of every
run are counted per operation, so an operation that only ever answers 4xx fails instead of passing on its
error answers. The negative phase is run by the authorized caller too (it must get past authentication at least
once), not only by callers that stop at 401.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy import select

from models import TaskRow
from workflows.services import accounts, tasks, tokens

from .flow import Flow, approve, quote

API = "/api/v1"
# per operation and generation mode; LVYUE_FUZZ_EXAMPLES=500 for a longer hunt
EXAMPLES = int(os.environ.get("LVYUE_FUZZ_EXAMPLES", "25"))
# every working role but none of the oversight ones: the account may do (or at least see) everything
WORKER_ROLES = ["sales_rep", "supervisor", "manager", "director", "legal", "finance", "delivery", "after_sales"]
# Bodies whose validity depends on the database, which a static document cannot express: form data is checked
# against the task's own JSON-Schema form, a reassignment needs an active user of the task's role. Schema-valid
# bodies are refused there with 422 (and its 'errors'), so "valid data is accepted" cannot hold.
DATA_DEPENDENT = {"POST /tasks/{task_id}/complete", "POST /instances", "POST /tasks/{task_id}/reassign"}


@dataclass
class Seeded:
    task_ids: list[int]
    business_keys: list[str]
    tokens: dict[str, str | None]  # who → bearer token (None: send no Authorization header)
    kinds: dict[int, str] = field(default_factory=dict)  # task id → what it is (see the fixture)
    status: dict[int, str] = field(default_factory=dict)  # task id → its row's status when seeded

    def one(self, kind: str) -> int:
        return next(i for i, k in sorted(self.kinds.items()) if k == kind)


def _token(rt, username: str, roles: list[str]) -> str:
    account = accounts.create_service_account(rt, username, f"{username} (fuzzing)", roles, actor=None)
    return tokens.issue_token(rt, account.id, f"{username} fuzz", actor=None)


@pytest.fixture
def seeded(rt) -> Seeded:
    """Contracts at several steps (open unclaimed tasks, a task held by someone else, one held by the fuzzing
    account, completed tasks) and three callers."""
    callers = {"worker": _token(rt, "fuzz-worker", WORKER_ROLES),
               "wrong_role": _token(rt, "fuzz-auditor", ["compliance"]),
               "anonymous": None}
    waiting = Flow(rt)  # prepare_quote, unclaimed
    reviewed = Flow(rt)
    reviewed.act("prepare_quote", "rep1", quote())  # supervisor_review open, prepare_quote completed
    drafting = Flow(rt)
    drafting.act("prepare_quote", "rep1", quote())
    drafting.act("supervisor_review", "sup1", approve("supervisor"))  # draft_contract open
    tasks.claim(rt, drafting.task("draft_contract").id, drafting.user("rep1"))  # held by someone else
    held = Flow(rt)
    tasks.claim(rt, held.task("prepare_quote").id, accounts.get_user(rt, "fuzz-worker"))  # held by the caller
    flows = (waiting, reviewed, drafting, held)
    with rt.read() as s:
        rows = s.execute(select(TaskRow.id, TaskRow.status, TaskRow.assignee_id)
                         .where(TaskRow.instance_id.in_([f.id for f in flows]))).all()
    worker_id = accounts.get_user(rt, "fuzz-worker").id
    kinds = {r.id: (r.status if r.status != "open" else
                    "open, unclaimed" if r.assignee_id is None else
                    "open, held by the caller" if r.assignee_id == worker_id else "open, held by another")
             for r in rows}
    # what the fuzz is meant to reach: each kind of task, the completed ones included
    assert set(kinds.values()) == {"completed", "open, unclaimed", "open, held by another",
                                   "open, held by the caller"}, kinds
    assert sum(k == "completed" for k in kinds.values()) == 3, kinds  # 2 prepare_quote, 1 supervisor_review
    return Seeded(task_ids=sorted(kinds), business_keys=[f.started.business_key for f in flows], tokens=callers,
                  kinds=kinds, status={r.id: r.status for r in rows})


@pytest.fixture
def api_schema(app, seeded):
    return schemathesis.openapi.from_wsgi(API + "/openapi.json", app)


def _runs() -> list[tuple[str, GenerationMode]]:
    """Every operation of the document as "METHOD /path" (read from the code, no app needed), with valid
    requests, and with invalid ones where it has an input to get wrong."""
    from webapp.openapi import build_openapi

    runs = []
    for path, item in build_openapi()["paths"].items():
        for method, op in item.items():
            label = f"{method.upper()} {path}"
            runs.append((label, GenerationMode.POSITIVE))
            if op.get("parameters") or op.get("requestBody"):
                runs.append((label, GenerationMode.NEGATIVE))
    return runs


def _all_checks() -> list[Callable]:
    load_all_checks()
    return [c for c in CHECKS.get_all() if callable(c) and not isinstance(c, type)]


def _real_parameters(seeded: Seeded, path: str) -> st.SearchStrategy[dict[str, Any] | None]:
    """Path parameters naming real rows, half of the time; otherwise schemathesis makes them up."""
    if "{task_id}" in path:
        real = st.sampled_from(seeded.task_ids).map(lambda i: {"task_id": i})
    elif "{key}" in path:
        real = st.sampled_from(seeded.business_keys).map(lambda k: {"key": k})
    else:
        return st.none()
    return st.one_of(st.none(), real)


def _valid_case(operation, seeded: Seeded, label: str):
    """One request of ``label`` that the authorized caller may make and that must succeed on the seeded data:
    the positive phase's explicit example, so each operation shows at least one real 2xx answer, checked against
    its response schema (the generated bodies of the data-dependent operations are rarely, if ever, valid)."""
    worker = {"Authorization": f"Bearer {seeded.tokens['worker']}"}
    unclaimed, held = seeded.one("open, unclaimed"), seeded.one("open, held by the caller")
    requests: dict[str, dict[str, Any]] = {
        "GET /openapi.json": {},
        "GET /tasks": {"query": {"scope": "roles"}},
        "GET /tasks/{task_id}": {"path_parameters": {"task_id": seeded.one("completed")}},
        "POST /tasks/{task_id}/claim": {"path_parameters": {"task_id": unclaimed}},
        "POST /tasks/{task_id}/unclaim": {"path_parameters": {"task_id": held}},
        "POST /tasks/{task_id}/reassign": {"path_parameters": {"task_id": seeded.one("open, held by another")},
                                           "body": {"to": "rep2", "reason": "rep1 is away"}},
        "POST /tasks/{task_id}/complete": {"path_parameters": {"task_id": unclaimed},  # a customer of its own
                                           "body": {"data": quote(customer_name="接口客户 API Customer")}},
        "POST /instances": {"body": {"process_key": "quote_to_cash"}},
        "GET /instances/{key}": {"path_parameters": {"key": seeded.business_keys[0]}},
    }
    assert label in requests, f"{label}: give it a valid request here"
    kwargs = requests[label]
    if "body" in kwargs:
        kwargs = {**kwargs, "media_type": "application/json"}
    return operation.Case(headers=worker if label != "GET /openapi.json" else None, **kwargs)


@pytest.mark.parametrize(("label", "mode"), _runs(), ids=lambda v: str(v))
def test_every_operation_keeps_its_contract(api_schema, seeded: Seeded, label: str, mode: GenerationMode) -> None:
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]
    checks = _all_checks()
    excluded = [positive_data_acceptance] if label in DATA_DEPENDENT else []
    by_token = {token: who for who, token in seeded.tokens.items() if token is not None}
    statuses: Counter[int] = Counter()  # every answer of this operation in this phase
    callers: Counter[tuple[str, int]] = Counter()  # (who, status)
    explicit = _valid_case(operation, seeded, label) if mode.is_positive else None
    explicit_answers: list[int] = []
    has_body = "requestBody" in operation.definition.raw
    has_query = any(p.get("in") == "query" for p in operation.definition.raw.get("parameters", []))

    @st.composite
    def cases(draw):
        # negative mode: an operation with a body gets real ids half of the time too, so its broken bodies reach
        # the body checks instead of all stopping at the 404 of a made-up id (a path-only one has nothing else
        # to break, so its id is the thing made invalid)
        fixed = draw(_real_parameters(seeded, path)) if mode.is_positive or has_body else None
        token = seeded.tokens[draw(st.sampled_from(sorted(seeded.tokens)))]
        # a fixed header is not mutated in negative mode; without one, schemathesis makes up a bearer token
        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        return draw(operation.as_strategy(generation_mode=mode, path_parameters=fixed, headers=headers))

    @settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                             HealthCheck.data_too_large])
    @given(cases())
    def run(case) -> None:
        # the valid example is held to "valid data is accepted" even where generated bodies are excused from it
        response = case.call_and_validate(checks=checks, excluded_checks=[] if case is explicit else excluded)
        statuses[response.status_code] += 1
        auth = (case.headers or {}).get("Authorization", "")
        callers[(by_token.get(auth.removeprefix("Bearer "), "anonymous"), response.status_code)] += 1
        if case is explicit:
            explicit_answers.append(response.status_code)
            assert 200 <= response.status_code < 300, (label, response.status_code, response.text)

    if explicit is not None:
        run = example(explicit)(run)
    run()
    print(label, mode.name, dict(statuses), dict(callers))
    if mode.is_positive:
        assert explicit_answers, f"{label}: the valid example was not run"
        assert any(200 <= code < 300 for code in statuses), f"{label}: no 2xx answer at all: {dict(statuses)}"
    else:
        # the authorized caller ran the negative phase too, its token was never refused (a fixed header is not
        # mutated), and where there is a body or a query to get wrong, the app's own input checks refused it
        worker = Counter({code: n for (who, code), n in callers.items() if who == "worker"})
        assert worker and 401 not in worker, dict(callers)
        if has_body or has_query:
            assert worker.keys() & {400, 422}, f"{label}: the worker's broken requests never reached the checks"


def test_the_fuzzer_reaches_real_rows(api_schema, seeded: Seeded) -> None:
    """Guards the guard: with the worker's token (it holds every working role, the director's included, and no
    team, so it may see every task), every seeded id answers 200 and names the task the fixture made, open or
    completed, so the fuzz above is not all 404s and 403s."""
    token = seeded.tokens["worker"]
    operation = api_schema["/tasks/{task_id}"]["GET"]
    for task_id in seeded.task_ids:
        case = operation.Case(path_parameters={"task_id": task_id}, headers={"Authorization": f"Bearer {token}"})
        response = case.call_and_validate(checks=_all_checks())
        assert response.status_code == 200, (task_id, seeded.kinds[task_id], response.status_code, response.text)
        body = response.json()
        assert (body["id"], body["status"]) == (task_id, seeded.status[task_id])
        assert body["actions"]["complete"] == (seeded.kinds[task_id] in ("open, unclaimed", "open, held by the caller"))
    for key in seeded.business_keys:
        case = api_schema["/instances/{key}"]["GET"].Case(path_parameters={"key": key},
                                                          headers={"Authorization": f"Bearer {token}"})
        response = case.call_and_validate(checks=_all_checks())
        assert response.status_code == 200 and response.json()["business_key"] == key
