"""The JSON API fuzzed against its own OpenAPI document with schemathesis.

The hand-written document in ``webapp/openapi.py`` is a contract other systems code against. Here every
operation it lists is called with generated requests, valid ones and deliberately invalid ones, with a
token of an account that may use it, a token of an account with the wrong role, and no token at all,
against a database with a few real contracts (so that generated ids sometimes hit real rows). Every
built-in schemathesis check must pass: no 5xx, only documented status codes and content types, bodies
and headers that fit the documented schemas, invalid requests rejected, valid ones not refused for being
malformed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.specs.openapi.checks import positive_data_acceptance

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


def _token(rt, username: str, roles: list[str]) -> str:
    account = accounts.create_service_account(rt, username, f"{username} (fuzzing)", roles, actor=None)
    return tokens.issue_token(rt, account.id, f"{username} fuzz", actor=None)


@pytest.fixture
def seeded(rt) -> Seeded:
    """Contracts at several steps (open, claimed, completed and cancelled-free tasks) and three callers."""
    waiting = Flow(rt)  # prepare_quote, unclaimed
    reviewed = Flow(rt)
    reviewed.act("prepare_quote", "rep1", quote())  # supervisor_review open, prepare_quote completed
    drafting = Flow(rt)
    drafting.act("prepare_quote", "rep1", quote())
    drafting.act("supervisor_review", "sup1", approve("supervisor"))  # draft_contract open
    tasks.claim(rt, drafting.task("draft_contract").id, drafting.user("rep1"))  # held by someone else
    flows = (waiting, reviewed, drafting)
    task_ids = sorted({t.id for f in flows for t in f.open().values()} | {1, 2})  # 1, 2: completed
    return Seeded(task_ids=task_ids, business_keys=[f.started.business_key for f in flows],
                  tokens={"worker": _token(rt, "fuzz-worker", WORKER_ROLES),
                          "wrong_role": _token(rt, "fuzz-auditor", ["compliance"]),
                          "anonymous": None})


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


@pytest.mark.parametrize(("label", "mode"), _runs(), ids=lambda v: str(v))
def test_every_operation_keeps_its_contract(api_schema, seeded: Seeded, label: str, mode: GenerationMode) -> None:
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]
    checks = _all_checks()
    excluded = [positive_data_acceptance] if label in DATA_DEPENDENT else []

    @st.composite
    def cases(draw):
        fixed = draw(_real_parameters(seeded, path)) if mode.is_positive else None
        token = seeded.tokens[draw(st.sampled_from(sorted(seeded.tokens)))]
        # a fixed header is not mutated in negative mode; without one, schemathesis makes up a bearer token
        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        return draw(operation.as_strategy(generation_mode=mode, path_parameters=fixed, headers=headers))

    @settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                             HealthCheck.data_too_large])
    @given(cases())
    def run(case) -> None:
        case.call_and_validate(checks=checks, excluded_checks=excluded)

    run()


def test_the_fuzzer_reaches_real_rows(api_schema, seeded: Seeded) -> None:
    """Guards the guard: with a worker's token, the seeded ids answer 200, so the fuzz above is not all 404s."""
    token = seeded.tokens["worker"]
    operation = api_schema["/tasks/{task_id}"]["GET"]
    for task_id in seeded.task_ids[:3]:
        case = operation.Case(path_parameters={"task_id": task_id}, headers={"Authorization": f"Bearer {token}"})
        response = case.call_and_validate(checks=_all_checks())
        assert response.status_code in (200, 403), response.status_code
    key = seeded.business_keys[0]
    case = api_schema["/instances/{key}"]["GET"].Case(path_parameters={"key": key},
                                                      headers={"Authorization": f"Bearer {token}"})
    assert case.call_and_validate(checks=_all_checks()).status_code == 200
