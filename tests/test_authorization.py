"""Who may call what, declared once for every route and checked against the running app.

The role tests elsewhere sample routes; this module makes the whole of ``app.url_map`` answer to one
declaration (ROUTES): for every endpoint and method, the answer each kind of caller gets — anonymous,
every demo role, a rep and a supervisor of another team, API service accounts and a revoked token. A route
added without a row, or a row whose route is gone, fails the suite. Around the matrix: objects reached by
guessed ids across teams and roles, four eyes on every path, CSRF on every form POST (and the API refusing
the session cookie), security headers on every response, and the cookie flags of the production config.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from flask_login import login_user
from markupsafe import escape
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from models import ApiToken, AuditEvent, Instance, TaskRow, User, UserRole
from webapp import Config, TestConfig, create_app
from webapp.session_user import SessionUser
from workflows.runtime import Runtime
from workflows.services import accounts, audit, deployments, tasks, tokens

from .conftest import seeded_runtime
from .flow import Flow, approve, quote
from .web import CSRF_RE, WebClient

# --- who calls -------------------------------------------------------------------------------------------

ANON = "anonymous"
DEMO = [name for name, *_ in accounts.DEMO_USERS]
WEST = ["rep3", "sup2"]  # a sales rep and a supervisor of team "west"; every contract here is east's
WEB_USERS = DEMO + WEST
API_USERS = ["api_rep", "api_west", "api_sup", "api_revoked"]  # service accounts; api_revoked's token is revoked
PRINCIPALS = [ANON, *WEB_USERS, *API_USERS]
LOGGED_IN = set(WEB_USERS)
SUPERVISORY = {"sup1", "mgr1", "dir1", "sup2"}
REPS = {"rep1", "rep2", "rep3"}
CUSTOMER_VIEWERS = REPS | SUPERVISORY | {"audit1", "admin"}
DASHBOARD = REPS | SUPERVISORY | {"fin1", "audit1", "admin"}


@dataclass(frozen=True)
class Redirect:
    """A 302 whose Location path starts with ``to`` (formatted with the world's ids)."""

    to: str


LOGIN = Redirect("/login")
Expect = int | Redirect


def web(allowed: Iterable[str], ok: Expect, denied: Expect = 403, anon: Expect = LOGIN) -> dict[str, Expect]:
    """A page: logged-in users in ``allowed`` get ``ok``, other logged-in users ``denied``; the anonymous and
    the API service accounts (a bearer token is no browser login) get ``anon``."""
    allowed = set(allowed)
    assert allowed <= LOGGED_IN, allowed - LOGGED_IN
    return {ANON: anon, **{u: ok if u in allowed else denied for u in WEB_USERS}, **{p: anon for p in API_USERS}}


def everyone_logged_in(ok: Expect, anon: Expect = LOGIN) -> dict[str, Expect]:
    return web(LOGGED_IN, ok, anon=anon)


def compliance_only() -> dict[str, Expect]:
    return web({"audit1"}, 200)


def admin_only(ok: Expect = 200) -> dict[str, Expect]:
    return web({"admin"}, ok)


def bearer_only(allowed: Iterable[str], ok: int, denied: int = 403) -> dict[str, Expect]:
    """The API: a browser session counts for nothing (401 like the anonymous); a revoked token is 401."""
    allowed = set(allowed)
    assert allowed <= set(API_USERS) - {"api_revoked"}, allowed
    out: dict[str, Expect] = {p: 401 for p in [ANON, *WEB_USERS, "api_revoked"]}
    out.update({p: ok if p in allowed else denied for p in API_USERS if p != "api_revoked"})
    return out


def public(ok: Expect) -> dict[str, Expect]:
    return {p: ok for p in PRINCIPALS}


@dataclass(frozen=True)
class Route:
    path: str  # {placeholders} are ids of the world below
    expected: dict[str, Expect]
    data: dict[str, Any] = field(default_factory=dict)  # form fields; under /api/ the JSON body
    mutates: bool = False  # an allowed call changes shared objects: that cell runs on a database of its own
    json: bool = False  # a page's script posts ``data`` as JSON, the CSRF token in the X-CSRFToken header


# The answers on the objects of ``build_objects``: {task} is an open, unclaimed supervisor review of
# contract {key} (east, prepared by rep1); {held} a review claimed by sup1; {api_held} one claimed by api_sup.
ROUTES: dict[tuple[str, str], Route] = {
    ("static", "GET"): Route("/static/app.css", public(200)),
    ("status.healthz", "GET"): Route("/healthz", public(200)),
    ("api.openapi", "GET"): Route("/api/v1/openapi.json", public(200)),
    ("auth.login", "GET"): Route("/login", everyone_logged_in(Redirect("/tasks"), anon=200)),
    ("auth.login", "POST"): Route("/login", everyone_logged_in(Redirect("/tasks"), anon=Redirect("/tasks")),
                                  {"username": "rep2", "password": accounts.DEMO_PASSWORD}),
    ("auth.logout", "POST"): Route("/logout", everyone_logged_in(LOGIN)),
    ("auth.language", "POST"): Route("/language", everyone_logged_in(Redirect("/tasks"), anon=Redirect("/tasks")),
                                     {"lang": "zh-CN"}),  # every demo user's language already: nothing changes
    ("queues.home", "GET"): Route("/", everyone_logged_in(Redirect("/tasks"))),
    ("queues.index", "GET"): Route("/tasks?scope=team", web(SUPERVISORY, 200)),
    ("task.show", "GET"): Route("/tasks/{task}", web({"sup1", "mgr1", "dir1", "audit1", "admin"}, 200)),
    ("task.claim", "POST"): Route("/tasks/{task}/claim", web({"sup1"}, Redirect("/tasks/{task}")), mutates=True),
    # only the holder may give a task back; to everyone else it is "not claimed by you" (409), never a 200
    ("task.unclaim", "POST"): Route("/tasks/{held}/unclaim", web({"sup1"}, Redirect("/tasks"), denied=409),
                                    mutates=True),
    ("task.reassign", "POST"): Route("/tasks/{task}/reassign", web({"sup1", "mgr1", "dir1"}, Redirect("/tasks/{task}")),
                                     {"to": "sup1", "reason": "cover"}, mutates=True),
    # the starter (rep1) and those above the team remind; sup1, whose work the unclaimed review is, may not
    ("task.remind_holder", "POST"): Route("/tasks/{task}/remind",
                                          web({"rep1", "mgr1", "dir1"}, Redirect("/contracts/{key}")),
                                          {"message": "please"}, mutates=True),
    # batch approval (批量审批): the confirmation lists the chosen tasks (those one may not see by number only);
    # the approval itself is refused per task, so whoever may not approve {task} gets 403 and nothing changes
    ("task.batch_confirm", "GET"): Route("/tasks/batch?ids={task}", everyone_logged_in(200)),
    ("task.batch_approve", "POST"): Route("/tasks/batch", web({"sup1"}, 200), {"ids": "{task}", "comment": "ok"},
                                          mutates=True),
    # withdraw (撤回): only who completed the step; return (驳回到指定节点): only who may complete the open task
    ("rewind.withdraw", "POST"): Route("/tasks/{done}/withdraw", web({"rep1"}, Redirect("/tasks/")),
                                       {"version": "{version}"}, mutates=True),
    ("rewind.return_to", "POST"): Route("/tasks/{task}/return", web({"sup1"}, Redirect("/contracts/{key}")),
                                        {"target": "prepare_quote", "comment": "recheck the prices",
                                         "version": "{version}"}, mutates=True),
    # added signers (加签): who may complete {task} asks for opinions or approves and adds sup4 (an east supervisor
    # who is no principal); {opinion} is sup1's question to legal1 on review {asked}, which sup1 holds
    ("signers.ask", "POST"): Route("/tasks/{task}/opinions", web({"sup1"}, Redirect("/tasks/{task}")),
                                   {"to": "legal1", "question": "terms ok?"}, mutates=True),
    ("signers.add_approver", "POST"): Route("/tasks/{task}/add-approver", web({"sup1"}, Redirect("/tasks")),
                                            {"to": "sup4", "f.supervisor_decision": "approve",
                                             "version": "{version}"}, mutates=True),
    ("signers.index", "GET"): Route("/opinions", everyone_logged_in(200)),
    ("signers.show", "GET"): Route("/opinions/{opinion}",
                                   web({"legal1", "sup1", "mgr1", "dir1", "audit1", "admin"}, 200)),
    ("signers.answer", "POST"): Route("/opinions/{opinion}/answer", web({"legal1"}, Redirect("/opinions")),
                                      {"agrees": "agree", "answer": "fine"}, mutates=True),
    ("signers.withdraw", "POST"): Route("/opinions/{opinion}/withdraw", web({"sup1"}, Redirect("/tasks/{asked}")),
                                        mutates=True),
    ("task.complete", "POST"): Route("/tasks/{task}/complete", web({"sup1"}, Redirect("/tasks")),
                                     {"f.supervisor_decision": "approve", "version": "{version}"}, mutates=True),
    ("start.index", "GET"): Route("/start", everyone_logged_in(200)),
    ("start.start", "POST"): Route("/start/quote_to_cash", web(REPS, Redirect("/tasks/")), mutates=True),
    # a contract's file: those who may see the contract are told there is no such file (404), the rest are refused
    # alike whether it exists or not (tests/test_attachments.py reads real files as every role)
    ("attachments.download", "GET"): Route("/attachments/{key}/" + "0" * 64,
                                           web({"rep1", "sup1", "mgr1", "dir1", "audit1", "admin", "owner1"}, 404)),
    ("contracts.index", "GET"): Route("/contracts", everyone_logged_in(200)),
    # the dashboard: sales roles (a rep their own numbers, supervisors and managers their team), finance, compliance
    ("dashboard.index", "GET"): Route("/dashboard", web(DASHBOARD, 200)),
    ("dashboard.overdue", "GET"): Route("/dashboard/overdue?page=2", web(DASHBOARD, 200)),
    ("contracts.show", "GET"): Route("/contracts/{key}",
                                     web({"rep1", "sup1", "mgr1", "dir1", "audit1", "admin", "owner1"}, 200)),
    # the responsibility table (职责分工表): whoever may see the contract's page, and nobody else
    ("contracts.responsibilities", "GET"): Route("/contracts/{key}/responsibilities",
                                                 web({"rep1", "sup1", "mgr1", "dir1", "audit1", "admin", "owner1"},
                                                     200)),
    # amend (合同修订) the signed contract {signed}: its rep and those above the team; who may see the contract but
    # not amend it gets 403, like everyone else (a contract not signed yet is a 409: tests/test_amend.py)
    ("contracts.amend_contract", "POST"): Route("/contracts/{signed}/amend",
                                                web({"rep1", "sup1", "mgr1", "dir1"}, Redirect("/contracts/{signed}")),
                                                {"reason": "one more lathe"}, mutates=True),
    ("inbox.index", "GET"): Route("/inbox", everyone_logged_in(200)),
    ("inbox.read", "POST"): Route("/inbox/read", everyone_logged_in(Redirect("/inbox"))),
    # substitutes (委托): one's own time away, naming dir1 (who may not name themselves); {away} is rep2's range,
    # which nobody else may end (404: not even whose it is); who is away is for the supervisory roles
    ("away.mine", "GET"): Route("/me/away", everyone_logged_in(200)),
    ("away.create", "POST"): Route("/me/away", web(LOGGED_IN - {"dir1"}, Redirect("/me/away"), denied=422),
                                   # a later day: the scratch database's users must not be away now (a task is
                                   # not reassigned to someone away)
                                   {"substitute": "dir1", "first_day": "2026-12-21", "last_day": "2026-12-21",
                                    "reason": "leave"}, mutates=True),
    ("away.cancel", "POST"): Route("/me/away/{away}/cancel", web({"rep2"}, Redirect("/me/away"), denied=404),
                                   mutates=True),
    ("away.team", "GET"): Route("/away", web(SUPERVISORY, 200)),
    # customers (客户归属): the sales roles, compliance and administrators see who owns what; {customer} belongs to
    # rep1 (registered by sup1 while rep1 was on duty). Supervisors, managers and the director register customers (for
    # their own team: sup2 is west's), a rep other than the owner asks the director for one (its owner rep1 is told
    # it is already theirs), the team's manager and the director set the team's rule
    ("customers.index", "GET"): Route("/customers?flagged=1", web(CUSTOMER_VIEWERS, 200)),
    ("customers.show", "GET"): Route("/customers/{customer}", web(CUSTOMER_VIEWERS, 200)),
    ("customers.register", "POST"): Route("/customers", web({"sup1", "mgr1", "dir1"}, Redirect("/customers/")),
                                          {"name": "矩阵新客户 {customer}", "team": "east"}, mutates=True),
    ("customers.request_ownership", "POST"): Route("/customers/{customer}/request",
                                                   {**web({"rep2", "rep3"}, Redirect("/contracts/D-")), "rep1": 422},
                                                   {"reason": "the buyer asked for me"}, mutates=True),
    ("customers.rules", "GET"): Route("/customers/rules", web(CUSTOMER_VIEWERS, 200)),
    ("customers.save_rule", "POST"): Route("/customers/rules", web({"mgr1", "dir1"}, Redirect("/customers/rules")),
                                           {"team": "east", "rule": "on_duty", "on_duty": "rep1"}, mutates=True),
    ("status.index", "GET"): Route("/status", everyone_logged_in(200)),
    ("compliance.explorer", "GET"): Route("/compliance/", compliance_only()),
    ("compliance.instance", "GET"): Route("/compliance/contracts/{key}", compliance_only()),
    ("compliance.diagram", "GET"): Route("/compliance/contracts/{key}/diagram.bpmn", compliance_only()),
    ("compliance.definition", "GET"): Route("/compliance/contracts/{key}/files/quote_to_cash.bpmn", compliance_only()),
    ("compliance.dossier_pdf", "GET"): Route("/compliance/contracts/{key}/dossier.pdf", compliance_only()),
    ("compliance.instance_csv", "GET"): Route("/compliance/contracts/{key}/events.csv", compliance_only()),
    ("compliance.period_csv", "GET"): Route("/compliance/events.csv?from=2020-01-01&to=2030-12-31", compliance_only()),
    ("compliance.four_eyes", "GET"): Route("/compliance/four-eyes", compliance_only()),
    ("compliance.heatmap", "GET"): Route("/compliance/heatmap", compliance_only()),
    ("compliance.heatmap_xml", "GET"): Route("/compliance/heatmap/diagram.bpmn?version={deployment}",
                                             compliance_only()),
    ("compliance.integrity_page", "GET"): Route("/compliance/integrity", compliance_only()),
    ("compliance.verify", "POST"): Route("/compliance/integrity", compliance_only(), {"key": "{key}"}),
    ("compliance.access", "GET"): Route("/compliance/access", compliance_only()),
    ("admin.users", "GET"): Route("/admin/users", admin_only()),
    ("admin.new_user", "GET"): Route("/admin/users/new", admin_only()),
    ("admin.new_user", "POST"): Route("/admin/users/new", admin_only(Redirect("/admin/users/")),
                                      {"username": "newbie", "password": "a-long-password", "display_name": "New",
                                       "team": "east", "language": "zh-CN", "roles": "sales_rep"}, mutates=True),
    ("admin.user", "GET"): Route("/admin/users/{rep1_id}", admin_only()),
    ("admin.user", "POST"): Route("/admin/users/{api_rep_id}", admin_only(Redirect("/admin/users/{api_rep_id}")),
                                  {"action": "revoke_token", "token_id": "{api_rep_token}"}, mutates=True),
    ("api.list_tasks", "GET"): Route("/api/v1/tasks?scope=team", bearer_only({"api_sup"}, 200)),
    ("api.get_task", "GET"): Route("/api/v1/tasks/{task}", bearer_only({"api_sup"}, 200)),
    ("api.claim", "POST"): Route("/api/v1/tasks/{task}/claim", bearer_only({"api_sup"}, 200), mutates=True),
    ("api.unclaim", "POST"): Route("/api/v1/tasks/{api_held}/unclaim", bearer_only({"api_sup"}, 200, denied=409),
                                   mutates=True),
    ("api.reassign", "POST"): Route("/api/v1/tasks/{task}/reassign", bearer_only({"api_sup"}, 200),
                                    {"to": "sup1", "reason": "cover"}, mutates=True),
    ("api.complete", "POST"): Route("/api/v1/tasks/{task}/complete", bearer_only({"api_sup"}, 200),
                                    {"data": approve("supervisor")}, mutates=True),
    ("api.start", "POST"): Route("/api/v1/instances", bearer_only({"api_rep", "api_west"}, 201),
                                 {"process_key": "quote_to_cash"}, mutates=True),
    ("api.get_instance", "GET"): Route("/api/v1/instances/{key}", bearer_only({"api_sup"}, 200)),
    # the studio: process owners only (owner1)
    ("studio.index", "GET"): Route("/studio", web({"owner1"}, 200)),
    ("studio.process", "GET"): Route("/studio/quote_to_cash", web({"owner1"}, 200)),
    ("studio.edit", "GET"): Route("/studio/quote_to_cash/edit", web({"owner1"}, 200)),
    ("studio.save", "POST"): Route("/studio/quote_to_cash/draft", web({"owner1"}, 200),
                                   {"revision": 0, "files": {"quote_to_cash.bpmn": "<definitions/>"}}, mutates=True,
                                   json=True),
    ("studio.check", "POST"): Route("/studio/quote_to_cash/check", web({"owner1"}, 200),
                                    {"files": {"quote_to_cash.bpmn": "<definitions/>"}}, json=True),
    ("studio.preview", "POST"): Route("/studio/quote_to_cash/preview", web({"owner1"}, 200),
                                      {"schema": {"type": "object"}, "uischema": ""}, json=True),
    ("studio.discard", "POST"): Route("/studio/quote_to_cash/draft/discard",
                                      web({"owner1"}, Redirect("/studio/quote_to_cash")), mutates=True),
    ("studio.deploy", "POST"): Route("/studio/quote_to_cash/deploy",
                                     web({"owner1"}, Redirect("/studio/quote_to_cash/edit")),
                                     {"revision": "0", "comment": "nothing saved"}),
    ("studio.rollback", "POST"): Route("/studio/quote_to_cash/versions/1/rollback",
                                       web({"owner1"}, Redirect("/studio/quote_to_cash")), {"comment": "x"}),
    ("studio.download_version", "GET"): Route("/studio/quote_to_cash/versions/1/download", web({"owner1"}, 200)),
    ("studio.download_draft", "GET"): Route("/studio/quote_to_cash/draft/download", web({"owner1"}, 200)),
    ("studio.upload", "POST"): Route("/studio/quote_to_cash/upload",
                                     web({"owner1"}, Redirect("/studio/quote_to_cash")), {"revision": "0"}),
    ("studio_changes.diff", "GET"): Route("/studio/quote_to_cash/diff", web({"owner1"}, 200)),
    ("studio_changes.diagram", "GET"): Route("/studio/quote_to_cash/versions/1/diagram.bpmn", web({"owner1"}, 200)),
    ("studio_changes.migrate_dry_run", "GET"): Route("/studio/quote_to_cash/migrate?to=1", web({"owner1"}, 200)),
    ("studio_changes.migrate", "POST"): Route("/studio/quote_to_cash/migrate",
                                              web({"owner1"}, Redirect("/studio/quote_to_cash/migrate")), {"to": "1"}),
    # process tests and replay (a replay posted as a plain form replays the saved draft, else the latest version)
    ("studio_tests.tests", "GET"): Route("/studio/quote_to_cash/tests", web({"owner1"}, 200)),
    ("studio_tests.save", "POST"): Route("/studio/quote_to_cash/tests",
                                         web({"owner1"}, Redirect("/studio/quote_to_cash/tests")),
                                         {"name": "matrix",
                                          "case": '{{"steps": [], "expect": {{"path": []}}}}'},  # filled by str.format
                                         mutates=True),
    ("studio_tests.delete", "POST"): Route("/studio/quote_to_cash/tests/999999/delete",
                                           web({"owner1"}, Redirect("/studio/quote_to_cash/tests"))),
    ("studio_tests.run", "POST"): Route("/studio/quote_to_cash/tests/run",
                                        web({"owner1"}, Redirect("/studio/quote_to_cash/tests"))),
    ("studio_tests.replay_json", "POST"): Route("/studio/quote_to_cash/replay", web({"owner1"}, 200)),
    ("studio_tests.replay_page", "GET"): Route("/studio/quote_to_cash/replay", web({"owner1"}, 200)),
}


# --- the world the requests act on -----------------------------------------------------------------------

SERVICE_ACCOUNTS = (("api_rep", ["sales_rep"], "east"), ("api_west", ["sales_rep"], "west"),
                    ("api_sup", ["supervisor"], "east"), ("api_revoked", ["sales_rep"], "east"))


def build_world(rt: Runtime) -> tuple[dict[str, Any], dict[str, str]]:
    """The accounts of the principals, and real objects for every URL parameter (``build_objects``)."""
    for name, roles in (("rep3", ["sales_rep"]), ("sup2", ["supervisor"])):
        accounts.create_user(rt, name, accounts.DEMO_PASSWORD, roles, team="west")
    accounts.create_user(rt, "sup4", accounts.DEMO_PASSWORD, ["supervisor"], team="east")  # added after sup1 (加签)
    ids: dict[str, Any] = {"rep1_id": accounts.get_user(rt, "rep1").id,
                           "deployment": deployments.latest_deployment_id(rt, "quote_to_cash")}
    from datetime import date

    from workflows.services import substitutes  # rep2 away in December (nothing moves now), rep1 standing in

    ids["away"] = substitutes.create(rt, accounts.get_user(rt, "rep2"), "rep1", date(2026, 12, 1),
                                     date(2026, 12, 2), "leave").id
    for name, roles, team in SERVICE_ACCOUNTS:
        ids[f"{name}_id"] = accounts.add_user(rt, None, name, None, roles, team=team, service_account=True).id
    return ids, build_objects(rt, ids)


def build_objects(rt: Runtime, ids: dict[str, Any]) -> dict[str, str]:
    """New contracts and tokens, their ids put in ``ids``; returns the bearer tokens. {task} is an open,
    unclaimed supervisor review of contract {key} (east, prepared by rep1); {held} a review claimed by
    sup1; {api_held} one claimed by api_sup."""
    bearer = {}
    for name, *_ in SERVICE_ACCOUNTS:
        bearer[name] = tokens.issue_token(rt, ids[f"{name}_id"], f"{name} sync", None)
        ids[f"{name}_token"] = tokens.list_tokens(rt, ids[f"{name}_id"])[0].id  # newest first
    tokens.revoke_token(rt, ids["api_revoked_token"], None)

    def prepared() -> Flow:
        flow = Flow(rt)
        flow.act("prepare_quote", "rep1", quote())
        return flow

    open_one = prepared()
    review = open_one.task("supervisor_review")
    ids.update(key=open_one.view().business_key, task=review.id, version=review.instance_version)
    with rt.read() as s:  # {done}: the quote rep1 prepared for {key}, which rep1 may still withdraw
        ids["done"] = s.scalar(select(TaskRow.id).where(TaskRow.instance_id == open_one.id,
                                                        TaskRow.spec_id == "prepare_quote"))
    from workflows.services import countersign  # {opinion}: sup1 asked legal1 about review {asked}

    ids["asked"] = prepared().task("supervisor_review").id
    ids["opinion"] = countersign.ask_opinions(rt, ids["asked"], accounts.get_user(rt, "sup1"), ["legal1"],
                                              "terms ok?").opinion_ids[0]
    for placeholder, holder in (("held", "sup1"), ("api_held", "api_sup")):
        held = prepared().task("supervisor_review")
        tasks.claim(rt, held.id, accounts.get_user(rt, holder))
        ids[placeholder] = held.id
    signed = prepared()  # {signed}: a contract signed by both sides, delivery open (it may be amended)
    signed.act("supervisor_review", "sup1", approve("supervisor"))
    signed.through_contract()
    ids["signed"] = signed.view().business_key
    from workflows.services import customers  # {customer}: a new customer of rep1's, nobody asking for it yet

    customers.set_rule(rt, accounts.get_user(rt, "mgr1"), "east", "on_duty", "rep1")
    ids["customer_seq"] = ids.get("customer_seq", 0) + 1
    ids["customer"] = customers.register_customer(rt, accounts.get_user(rt, "sup1"),
                                                  f"矩阵客户 Matrix {ids['customer_seq']}").id
    return bearer


class World:
    """One database, its app, and a way to send a request as any principal."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.ids, self.bearer = build_world(rt)
        self.app = create_app(TestConfig, runtime=rt)
        self._clients: dict[str, FlaskClient] = {}

    def renew(self) -> World:
        """Fresh objects (and live tokens) for a cell that will change the ones it acts on."""
        self.bearer.update(build_objects(self.rt, self.ids))
        return self

    def client(self, principal: str, fresh: bool = False) -> FlaskClient:
        """A client as ``principal``: logged in through the login page, or a bare one. POSTs take a fresh
        one, so a logout or a language switch never leaks into another cell."""
        if fresh or principal not in self._clients:
            client = self.app.test_client()
            if principal in LOGGED_IN:
                WebClient(client).login(principal, accounts.DEMO_PASSWORD)
            if fresh:
                return client
            self._clients[principal] = client
        return self._clients[principal]

    def headers(self, principal: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.bearer[principal]}"} if principal in self.bearer else {}

    def fill(self, text: str) -> str:
        return text.format(**self.ids)

    def send(self, principal: str, method: str, route: Route) -> TestResponse:
        path = self.fill(route.path)
        if method == "GET":
            return self.client(principal).get(path, headers=self.headers(principal))
        client = self.client(principal, fresh=True)
        if path.startswith("/api/"):
            return client.post(path, json=fill_json(route.data, self.ids), headers=self.headers(principal))
        return post_page(client, path, route, self.ids, csrf_token(client), self.headers(principal))


def post_page(client: FlaskClient, path: str, route: Route, ids: dict[str, Any], token: str | None,
              headers: dict[str, str] | None = None) -> TestResponse:
    """A page's POST as the page sends it: its form with the ``csrf_token`` field, or its script's JSON with the
    token in ``X-CSRFToken`` (``token`` None: no token at all)."""
    body = fill_json(route.data, ids)
    if route.json:
        return client.post(path, json=body, headers={**(headers or {}),
                                                     **({} if token is None else {"X-CSRFToken": token})})
    return client.post(path, data=body if token is None else {**body, "csrf_token": token}, headers=headers or {})


def fill_json(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: fill_json(v, ids) for k, v in value.items()}
    return value.format(**ids) if isinstance(value, str) else value


def csrf_token(client: FlaskClient) -> str:
    """The token of the client's session, from a page it can open signed in or not."""
    page = client.get("/status")
    if page.status_code != 200:
        page = client.get("/login")
    found = CSRF_RE.search(page.get_data(as_text=True))
    assert found, "no CSRF token on the page"
    return found.group(1)


def fingerprint(rt: Runtime) -> dict[str, Any]:
    """What a refused request must leave alone: tasks, contracts, accounts, tokens and the business audit
    trail (compliance reads are themselves recorded, in the access chain, so that chain is left out)."""
    with rt.read() as s:
        return {
            "tasks": s.execute(select(TaskRow.id, TaskRow.status, TaskRow.assignee_id, TaskRow.claimed_at)
                               .order_by(TaskRow.id)).all(),
            "instances": s.execute(select(Instance.id, Instance.status, Instance.version).order_by(Instance.id)).all(),
            "users": s.execute(select(User.id, User.active, User.team, User.language).order_by(User.id)).all(),
            "roles": s.execute(select(UserRole.user_id, UserRole.role_code).order_by(UserRole.user_id,
                                                                                    UserRole.role_code)).all(),
            "tokens": s.execute(select(ApiToken.id, ApiToken.revoked_at).order_by(ApiToken.id)).all(),
            "events": s.scalar(select(func.count()).select_from(AuditEvent)
                               .where(AuditEvent.chain != audit.ACCESS_CHAIN)),
        }


@pytest.fixture(scope="module")
def shared(databases) -> Iterator[World]:
    """One seeded database for every cell that changes nothing (read-only, refused, or harmless to others)."""
    with seeded_runtime(databases) as rt:
        yield World(rt)


@pytest.fixture(scope="module")
def scratch(databases) -> Iterator[World]:
    """A second database for the cells that change what they act on: each gets objects of its own."""
    with seeded_runtime(databases) as rt:
        yield World(rt)


@pytest.fixture
def world(rt) -> World:
    return World(rt)


# --- 1. the matrix ---------------------------------------------------------------------------------------

def succeeds(expected: Expect) -> bool:
    return expected != LOGIN if isinstance(expected, Redirect) else expected < 400


def assert_answer(response: TestResponse, expected: Expect, world: World, label: str) -> None:
    body = response.get_data()[:400].decode("utf-8", "replace")
    if isinstance(expected, Redirect):
        assert response.status_code == 302, (label, response.status_code, body)
        location = urlsplit(response.headers["Location"]).path
        assert location.startswith(world.fill(expected.to)), (label, response.headers["Location"])
    else:
        assert response.status_code == expected, (label, response.status_code, body)


SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}


def assert_hardened(response: TestResponse, label: str, private: bool) -> None:
    """The headers every response carries; ``private``: it was served to a signed-in caller, so no cache
    may keep it (static files excepted: they hold no contract data)."""
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (label, name, response.headers.get(name))
    csp = response.headers.get("Content-Security-Policy", "")
    for directive in ("default-src 'self'", "frame-ancestors 'none'", "script-src 'self'", "form-action 'self'"):
        assert directive in csp, (label, directive, csp)
    if private:
        assert "no-store" in response.headers.get("Cache-Control", ""), (label, response.headers.get("Cache-Control"))


CELLS = [(endpoint, method, principal) for (endpoint, method) in sorted(ROUTES) for principal in PRINCIPALS]


@pytest.mark.parametrize(("endpoint", "method", "principal"), CELLS, ids=[f"{e}:{m}:{p}" for e, m, p in CELLS])
def test_route_answers_as_declared(endpoint: str, method: str, principal: str, shared: World, request) -> None:
    route = ROUTES[endpoint, method]
    expected = route.expected[principal]
    world = request.getfixturevalue("scratch").renew() if route.mutates and succeeds(expected) else shared
    before = fingerprint(world.rt) if world is shared and method == "POST" else None
    response = world.send(principal, method, route)
    label = f"{method} {endpoint} as {principal}"
    assert_answer(response, expected, world, label)
    signed_in = principal in LOGGED_IN or (principal in API_USERS and route.path.startswith("/api/"))
    # a logout's own answer already belongs to nobody
    assert_hardened(response, label, private=signed_in and endpoint not in ("static", "auth.logout"))
    if before is not None:
        assert fingerprint(world.rt) == before, f"{label} changed the shared database"


def test_every_route_is_declared(shared: World) -> None:
    served = {(rule.endpoint, method) for rule in shared.app.url_map.iter_rules()
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    undeclared = sorted(served - set(ROUTES))
    assert not undeclared, f"declare who may call these in ROUTES of tests/test_authorization.py: {undeclared}"
    gone = sorted(set(ROUTES) - served)
    assert not gone, f"ROUTES declares routes the app no longer has: {gone}"
    for key, route in ROUTES.items():
        assert set(route.expected) == set(PRINCIPALS), (key, set(PRINCIPALS) ^ set(route.expected))
        shared.fill(route.path)  # every placeholder names an object of the world


# --- 2. objects by id, across teams and roles ------------------------------------------------------------

def to_legal_check(rt: Runtime) -> Flow:
    """An east contract whose legal check is open: rep1 prepared and drafted, sup1 approved."""
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    flow.act("draft_contract", "rep1", {"contract_no": "HT-2026-009", "contract_terms": "Standard terms",
                                        "payment_plan": [{"amount": "24000.00", "due_date": "2026-12-15"}],
                                        "sign_by": "2026-12-01"})
    return flow


def task_actions(task_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    """Every way a browser touches a task by id, with a form that would otherwise pass (unclaim last)."""
    return [("GET", f"/tasks/{task_id}", {}),
            ("POST", f"/tasks/{task_id}/claim", {}),
            ("POST", f"/tasks/{task_id}/complete", {"f.supervisor_decision": "approve", "version": "1"}),
            ("POST", f"/tasks/{task_id}/reassign", {"to": "rep3", "reason": "mine now"}),
            ("POST", f"/tasks/{task_id}/remind", {"message": "hurry"}),
            ("POST", f"/tasks/{task_id}/opinions", {"to": "rep3", "question": "ok?"}),
            ("POST", f"/tasks/{task_id}/add-approver", {"to": "rep3", "f.supervisor_decision": "approve"}),
            ("POST", f"/tasks/{task_id}/unclaim", {})]


def api_task_actions(task_id: int) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [("GET", f"/api/v1/tasks/{task_id}", None),
            ("POST", f"/api/v1/tasks/{task_id}/claim", None),
            ("POST", f"/api/v1/tasks/{task_id}/complete", {"data": approve("supervisor")}),
            ("POST", f"/api/v1/tasks/{task_id}/reassign", {"to": "api_west", "reason": "mine now"}),
            ("POST", f"/api/v1/tasks/{task_id}/unclaim", None)]


def browser_send(client: FlaskClient, method: str, path: str, data: dict[str, Any]) -> TestResponse:
    if method == "GET":
        return client.get(path)
    return client.post(path, data={**data, "csrf_token": csrf_token(client)})


def api_send(world: World, principal: str, method: str, path: str, body: dict[str, Any] | None) -> TestResponse:
    client = world.client(principal)
    if method == "GET":
        return client.get(path, headers=world.headers(principal))
    return client.post(path, json=body, headers=world.headers(principal))


def test_another_team_reaches_nothing_by_guessing_ids(world: World) -> None:
    """West's rep and supervisor (browser) and west's service account (API) try every task id and every
    contract key there is — open, claimed, completed — and a few beyond: 403 for what exists (409 "not
    claimed by you" to unclaim), 404 for what does not, no holder's or completer's name in any answer, and
    nothing changes."""
    rt = world.rt
    to_legal_check(rt)
    with rt.read() as s:
        task_ids = list(s.scalars(select(TaskRow.id).order_by(TaskRow.id)))
        keys = list(s.scalars(select(Instance.business_key).order_by(Instance.id)))
        statuses = set(s.scalars(select(TaskRow.status)))
        held = s.scalar(select(func.count()).select_from(TaskRow).where(TaskRow.assignee_id.is_not(None)))
    assert {"open", "completed"} <= statuses and held >= 2  # the guesses hit every kind of task
    missing = [task_ids[-1] + 1, task_ids[-1] + 1000]
    insiders = ("rep1", "sup1", "api_sup", "rep2", "legal1")  # names a leaking message would show
    before = fingerprint(rt)

    def check(response: TestResponse, exists: bool, label: str) -> None:
        # giving back a task one does not hold is "not claimed by you" for anybody: a 409 that tells nothing
        refused = 409 if label.endswith("/unclaim") else 403
        assert response.status_code == (refused if exists else 404), (label, response.status_code,
                                                                       response.get_data(as_text=True)[:300])
        text = response.get_data(as_text=True)
        leaked = [name for name in insiders if f"{name} " in text or f"by {name}" in text]
        assert not leaked, (label, leaked)

    for username in WEST:
        client = world.client(username)
        for task_id in task_ids + missing:
            for method, path, data in task_actions(task_id):
                check(browser_send(client, method, path, data), task_id not in missing,
                      f"{username} {method} {path}")
        for key in [*keys, "Q-2099-99999"]:
            check(client.get(f"/contracts/{key}"), key in keys, f"{username} /contracts/{key}")
    for task_id in task_ids + missing:
        for method, path, body in api_task_actions(task_id):
            check(api_send(world, "api_west", method, path, body), task_id not in missing, f"api_west {method} {path}")
    for key in [*keys, "Q-2099-99999"]:
        check(api_send(world, "api_west", "GET", f"/api/v1/instances/{key}", None), key in keys,
              f"api_west /instances/{key}")
    assert fingerprint(rt) == before


# the legal check of an east contract: who may open it, act on it, hand it on (the rest get 403)
LEGAL_CHECK: dict[str, set[str]] = {
    "show": {"legal1", "sup1", "mgr1", "dir1", "audit1", "admin"},
    "claim": {"legal1"},
    "complete": {"legal1"},
    "reassign": {"legal1", "sup1", "mgr1", "dir1"},
}


def test_a_task_is_refused_to_every_role_it_is_not_for(world: World) -> None:
    """Inside one team, every user and service account without a part in the legal check is refused each
    action on it — whatever else they may do on the same contract (rep1 started and drafted it)."""
    rt = world.rt
    flow = to_legal_check(rt)
    check = flow.task("legal_contract_check")
    before = fingerprint(rt)
    actions = dict(zip(("show", "claim", "complete", "reassign"), task_actions(check.id)[:4], strict=True))
    actions["complete"] = ("POST", f"/tasks/{check.id}/complete",
                           {"f.contract_check_decision": "approve", "version": str(check.instance_version)})
    actions["reassign"] = ("POST", f"/tasks/{check.id}/reassign", {"to": "legal1", "reason": "cover"})
    refused = 0
    for username in WEB_USERS:
        client = world.client(username)
        for action, (method, path, data) in actions.items():
            if username in LEGAL_CHECK[action]:
                continue
            response = browser_send(client, method, path, data)
            assert response.status_code == 403, (username, action, response.status_code)
            refused += 1
    api_actions = dict(zip(("show", "claim", "complete", "reassign"), api_task_actions(check.id)[:4], strict=True))
    api_actions["complete"] = ("POST", f"/api/v1/tasks/{check.id}/complete",
                               {"data": {"contract_check_decision": "approve"}})
    for principal in ("api_rep", "api_west"):  # api_sup supervises east: it may look and hand on
        for action, (method, path, body) in api_actions.items():
            response = api_send(world, principal, method, path, body)
            assert response.status_code == 403, (principal, action, response.status_code, response.get_json())
            refused += 1
    for action in ("claim", "complete"):
        method, path, body = api_actions[action]
        response = api_send(world, "api_sup", method, path, body)
        assert response.status_code == 403, ("api_sup", action, response.get_json())
    assert refused > 40
    assert fingerprint(rt) == before
    # the declaration is not vacuous: legal1 does open it
    assert world.client("legal1").get(f"/tasks/{check.id}").status_code == 200


def test_compliance_reads_of_unknown_contracts_are_404(shared: World) -> None:
    client = shared.client("audit1")
    for path in ("/compliance/contracts/{k}", "/compliance/contracts/{k}/diagram.bpmn",
                 "/compliance/contracts/{k}/dossier.pdf", "/compliance/contracts/{k}/events.csv",
                 "/compliance/contracts/{k}/files/quote_to_cash.bpmn"):
        response = client.get(path.format(k="Q-2099-99999"))
        assert response.status_code == 404, (path, response.status_code)
    assert client.get("/compliance/heatmap/diagram.bpmn?version=999999").status_code == 404
    key = shared.ids["key"]
    assert client.get(f"/compliance/contracts/{key}/files/../../etc/passwd").status_code == 404


def test_four_eyes_holds_on_every_path(world: World) -> None:
    """Whoever prepared a quote may not review it, though they hold the supervisor role too: not by claiming,
    not by completing (not even with an override reason), not by having it reassigned to them — in the
    browser and through the API. Someone else still can, so the refusals are four eyes, not a broken task."""
    rt = world.rt
    accounts.create_user(rt, "both1", accounts.DEMO_PASSWORD, ["sales_rep", "supervisor"], team="east")
    account = accounts.add_user(rt, None, "api_both", None, ["sales_rep", "supervisor"], team="east",
                                service_account=True)
    world.bearer["api_both"] = tokens.issue_token(rt, account.id, "both", None)
    web_flow = Flow(rt, starter="both1")  # customers of their own: the world's customer is rep1's (客户归属)
    web_flow.act("prepare_quote", "both1", quote(customer_name="四眼客户 Both1's Co"))
    api_flow = Flow(rt, starter="api_both")
    api_flow.act("prepare_quote", "api_both", quote(customer_name="四眼客户 API Co"))
    review, api_review = web_flow.task("supervisor_review"), api_flow.task("supervisor_review")
    before = fingerprint(rt)

    both = world.client("both1", fresh=True)
    WebClient(both).login("both1", accounts.DEMO_PASSWORD)
    form = {"f.supervisor_decision": "approve", "version": str(review.instance_version)}
    attempts = [(both, "both1", f"/tasks/{review.id}/claim", {}),
                (both, "both1", f"/tasks/{review.id}/complete", form),
                (both, "both1", f"/tasks/{review.id}/complete", {**form, "override_reason": "nobody else is here"}),
                (world.client("sup1"), "sup1", f"/tasks/{review.id}/reassign", {"to": "both1", "reason": "cover"})]
    for client, username, path, data in attempts:
        response = browser_send(client, "POST", path, data)
        assert response.status_code == 403, (username, path, response.status_code)
        assert "four eyes" in response.get_data(as_text=True) or "四眼" in response.get_data(as_text=True), path
    api_attempts = [("api_both", f"/api/v1/tasks/{api_review.id}/claim", None),
                    ("api_both", f"/api/v1/tasks/{api_review.id}/complete", {"data": approve("supervisor")}),
                    ("api_sup", f"/api/v1/tasks/{api_review.id}/reassign", {"to": "api_both", "reason": "cover"})]
    for principal, path, body in api_attempts:
        response = api_send(world, principal, "POST", path, body)
        assert response.status_code == 403 and response.get_json()["error"] == "four_eyes", (path, response.get_json())
    assert fingerprint(rt) == before

    done = browser_send(world.client("sup1"), "POST", f"/tasks/{review.id}/complete", form)
    assert done.status_code == 302, done.get_data(as_text=True)[:300]
    done = api_send(world, "api_sup", "POST", f"/api/v1/tasks/{api_review.id}/complete",
                    {"data": approve("supervisor")})
    assert done.status_code == 200, done.get_json()


# --- 3. CSRF ---------------------------------------------------------------------------------------------

FORM_POSTS = sorted(key for key in ROUTES if key[1] == "POST" and not ROUTES[key].path.startswith("/api/"))
API_POSTS = sorted(key for key in ROUTES if key[1] == "POST" and ROUTES[key].path.startswith("/api/"))


def allowed_user(route: Route) -> str:
    """A signed-in user the route would serve (so a refusal is the CSRF check, not the role check)."""
    served = [u for u in WEB_USERS if succeeds(route.expected[u])]
    return served[0] if served else "rep1"


def test_csrf_is_enforced_by_the_test_config(shared: World) -> None:
    assert shared.app.config.get("WTF_CSRF_ENABLED", True) and shared.app.config.get("WTF_CSRF_CHECK_DEFAULT", True)
    served = {(rule.endpoint, "POST") for rule in shared.app.url_map.iter_rules() if "POST" in rule.methods}
    assert set(FORM_POSTS) | set(API_POSTS) == served


# what the app's CSRF handler (webapp/__init__.py, ``_csrf``) says, in the reader's language
CSRF_MESSAGE = "Your form expired or was sent from another page; nothing was changed. Check it and send it again."


def is_csrf_refusal(app, response: TestResponse) -> bool:
    """The answer of the CSRF handler, told apart from any other 400 (a bad form, say) by its message."""
    body = response.get_data(as_text=True)
    if response.is_json:  # a script's JSON post is refused in JSON
        body = str((response.get_json() or {}).get("error"))
    texts = {str(escape(catalog.gettext(CSRF_MESSAGE))) for catalog in app.extensions["lvyue_i18n"].values()}
    texts |= {catalog.gettext(CSRF_MESSAGE) for catalog in app.extensions["lvyue_i18n"].values()}
    return response.status_code == 400 and any(text in body for text in texts)


@pytest.mark.parametrize("key", FORM_POSTS, ids=[e for e, _ in FORM_POSTS])
def test_form_posts_need_this_sessions_csrf_token(key: tuple[str, str], shared: World, request) -> None:
    """Without this session's token every form POST is the CSRF handler's refusal and changes nothing; with
    it, the very same request (on a database of its own where it changes something) gets the answer ROUTES declares
    for that user: so the refusals were the token's doing, not some other 400."""
    route = ROUTES[key]
    username = allowed_user(route)
    client = shared.client(username, fresh=True)
    stranger = shared.client("rep2", fresh=True)
    before = fingerprint(shared.rt)
    path = shared.fill(route.path)
    for token in (None, "", csrf_token(stranger), "x" * 91):
        response = post_page(client, path, route, shared.ids, token)
        assert is_csrf_refusal(shared.app, response), (key, username, token, response.status_code,
                                                       response.get_data(as_text=True)[:300])
        assert_hardened(response, f"CSRF {key}", private=True)
        assert fingerprint(shared.rt) == before
    assert client.get("/tasks").status_code == 200  # still signed in: not even a logout went through
    # the positive control, for every route: a mutating one on a database of its own (the scratch database
    # may already hold what it creates, e.g. the matrix's "newbie" account)
    world = request.getfixturevalue("world") if route.mutates else shared
    client = world.client(username, fresh=True)
    served = post_page(client, world.fill(route.path), route, world.ids, csrf_token(client))
    assert not is_csrf_refusal(world.app, served), (key, username, served.status_code)
    assert_answer(served, route.expected[username], world, f"POST {key[0]} as {username} with its token")
    if key == ("auth.logout", "POST"):  # its declared answer is the login page: it must have signed out
        assert client.get("/tasks").status_code == 302, "the logout with this session's token did not sign out"
    else:  # a user the route serves, so the declared answer is the action done, not a refusal
        assert succeeds(route.expected[username]), (key, username)


@pytest.mark.parametrize("key", API_POSTS, ids=[e for e, _ in API_POSTS])
def test_a_browser_session_cannot_call_the_api(key: tuple[str, str], shared: World) -> None:
    """The API skips CSRF because it reads only the bearer header: a signed-in browser — here the very
    supervisor (or rep) the action is for — sending its cookie, its CSRF token, JSON or a form, gets 401."""
    route = ROUTES[key]
    username = "rep1" if key[0] == "api.start" else "sup1"
    client = shared.client(username, fresh=True)
    token = csrf_token(client)
    before = fingerprint(shared.rt)
    path = shared.fill(route.path)
    body = fill_json(route.data, shared.ids)
    for response in (client.post(path, json=body), client.post(path, json=body, headers={"X-CSRFToken": token}),
                     client.post(path, data={"csrf_token": token, **{k: str(v) for k, v in body.items()}})):
        assert response.status_code == 401, (key, response.status_code)
        assert response.get_json()["error"] == "unauthorized", key
        assert_hardened(response, f"API {key}", private=True)
    assert fingerprint(shared.rt) == before


# --- 4. headers on what the matrix does not reach, and cookies ------------------------------------------

# (what, caller, path, status, whether no cache may keep it)
EXTRA_RESPONSES = [
    ("unknown page", ANON, "/no/such/page", 404, False),
    ("unknown page, signed in", "rep1", "/no/such/page", 404, True),
    ("method not allowed", "rep1", "/logout", 405, True),
    ("control characters", "rep1", "/contracts?q=%01", 400, True),
    ("id beyond any row", "rep1", "/tasks/99999999999", 404, True),
    ("api unknown route", "api_rep", "/api/v1/no-such", 404, False),  # no API route: the token is not read
    ("api no token", ANON, "/api/v1/tasks", 401, True),
    ("api method not allowed", "api_rep", "/api/v1/instances", 405, False),  # refused before the API runs
    ("static file, anonymous", ANON, "/static/favicon.svg", 200, False),
    ("static file, signed in", "rep1", "/static/diagram.js", 200, False),
]


@pytest.mark.parametrize(("what", "principal", "path", "status", "private"), EXTRA_RESPONSES,
                         ids=[r[0] for r in EXTRA_RESPONSES])
def test_error_pages_and_files_carry_the_security_headers(what: str, principal: str, path: str, status: int,
                                                          private: bool, shared: World) -> None:
    response = shared.client(principal).get(path, headers=shared.headers(principal))
    assert response.status_code == status, (what, response.status_code)
    assert_hardened(response, what, private=private)


def cookie_named(response: TestResponse, name: str) -> str:
    found = [c for c in response.headers.getlist("Set-Cookie") if c.startswith(name + "=")]
    assert found, (name, response.headers.getlist("Set-Cookie"))
    return found[-1]


def assert_cookie_flags(cookie: str, secure: bool) -> None:
    flags = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    assert "httponly" in flags, cookie
    assert flags.get("samesite", "").lower() in ("samesite=lax", "samesite=strict"), cookie
    assert ("secure" in flags) == secure, cookie


def test_production_cookies_are_secure_httponly_and_samesite(shared: World) -> None:
    """Under the production Config, over https: the session cookie after logging in, and the remember-me
    cookie flask-login would set, are Secure, HttpOnly and SameSite; responses carry HSTS."""
    rt = shared.rt
    app = create_app(Config, runtime=rt)
    app.config["SECRET_KEY"] = "a-production-like-secret-key-for-this-test"
    client = app.test_client()
    https = {"base_url": "https://lvyue.example"}
    page = client.get("/login", **https)
    assert page.headers.get("Strict-Transport-Security", "").startswith("max-age=")
    token = CSRF_RE.search(page.get_data(as_text=True)).group(1)
    done = client.post("/login", data={"username": "rep1", "password": accounts.DEMO_PASSWORD, "csrf_token": token},
                       headers={"Referer": "https://lvyue.example/login"}, **https)
    assert done.status_code == 302, done.get_data(as_text=True)[:300]
    assert_cookie_flags(cookie_named(done, app.config["SESSION_COOKIE_NAME"]), secure=True)

    with app.test_request_context("/", **https):
        login_user(SessionUser(accounts.get_user(rt, "rep1")), remember=True)
        response = app.process_response(app.make_response("ok"))
    assert_cookie_flags(cookie_named(response, app.config.get("REMEMBER_COOKIE_NAME", "remember_token")), secure=True)


def test_test_config_cookies_are_httponly_and_samesite(shared: World) -> None:
    client = shared.app.test_client()
    token = csrf_token(client)
    done = client.post("/login", data={"username": "rep1", "password": accounts.DEMO_PASSWORD, "csrf_token": token})
    assert_cookie_flags(cookie_named(done, shared.app.config["SESSION_COOKIE_NAME"]), secure=False)
