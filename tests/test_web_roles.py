"""Every route, every role: who may see and do what. A route added without a row here fails the last test.

Each row names a request and, per demo user, the status it must get on a contract whose supervisor review
is open and unclaimed (rep1 started it). Other test files cover what the allowed requests do."""

from __future__ import annotations

import pytest

from workflows.services import accounts, deployments

from .flow import Flow, quote

ALL = [name for name, *_ in accounts.DEMO_USERS]
SUPERVISORY = {"sup1", "mgr1", "dir1"}
OVERSIGHT = {"dir1", "audit1", "admin", "owner1"}


@pytest.fixture
def contract(rt):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    review = flow.task("supervisor_review")
    return {"key": flow.view().business_key, "task": review.id, "version": review.instance_version,
            "deployment": deployments.latest_deployment_id(rt, "quote_to_cash")}


def _expect(allowed: set[str], ok: int, denied: int) -> dict[str, int]:
    return {name: ok if name in allowed else denied for name in ALL}


# endpoint -> (method, path, data, expected status per user); {key}/{task} are filled from the fixture
MATRIX: dict[str, tuple[str, str, dict, dict[str, int]]] = {
    "queues.home": ("GET", "/", {}, _expect(set(ALL), 302, 302)),
    "queues.index": ("GET", "/tasks?scope=team", {}, _expect(SUPERVISORY, 200, 403)),
    "task.show": ("GET", "/tasks/{task}", {}, _expect({"sup1", "mgr1", "dir1", "audit1", "admin"}, 200, 403)),
    "task.claim": ("POST", "/tasks/{task}/claim", {}, _expect({"sup1"}, 302, 403)),
    "task.unclaim": ("POST", "/tasks/{task}/unclaim", {}, _expect(set(), 302, 409)),  # nobody holds it
    "task.reassign": ("POST", "/tasks/{task}/reassign", {"to": "sup1", "reason": "cover"},
                      _expect({"sup1", "mgr1", "dir1"}, 302, 403)),
    "task.complete": ("POST", "/tasks/{task}/complete", {"f.supervisor_decision": "approve"},
                      _expect({"sup1"}, 302, 403)),
    "start.index": ("GET", "/start", {}, _expect(set(ALL), 200, 200)),
    "start.start": ("POST", "/start/quote_to_cash", {}, _expect({"rep1", "rep2"}, 302, 403)),
    "contracts.index": ("GET", "/contracts", {}, _expect(set(ALL), 200, 200)),
    "contracts.show": ("GET", "/contracts/{key}", {},
                       _expect({"rep1", "sup1", "mgr1", "dir1", "audit1", "admin", "owner1"}, 200, 403)),
    "contracts.responsibilities": ("GET", "/contracts/{key}/responsibilities", {},
                                   _expect({"rep1", "sup1", "mgr1", "dir1", "audit1", "admin", "owner1"}, 200, 403)),
    # amending a contract not signed yet: refused, 409 for who may amend, 403 for the rest
    "contracts.amend_contract": ("POST", "/contracts/{key}/amend", {"reason": "one more lathe"},
                                 _expect({"rep1", "sup1", "mgr1", "dir1"}, 409, 403)),
    "dashboard.index": ("GET", "/dashboard", {},
                        _expect({"rep1", "rep2", "sup1", "mgr1", "dir1", "fin1", "audit1", "admin"}, 200, 403)),
    "dashboard.overdue": ("GET", "/dashboard/overdue", {},
                          _expect({"rep1", "rep2", "sup1", "mgr1", "dir1", "fin1", "audit1", "admin"}, 200, 403)),
    "attachments.download": ("GET", "/attachments/{key}/" + "0" * 64, {},
                             _expect({"rep1", "sup1", "mgr1", "dir1", "audit1", "admin", "owner1"}, 404, 403)),
    "inbox.index": ("GET", "/inbox", {}, _expect(set(ALL), 200, 200)),
    "inbox.read": ("POST", "/inbox/read", {}, _expect(set(ALL), 302, 302)),
    "away.mine": ("GET", "/me/away", {}, _expect(set(ALL), 200, 200)),
    "away.create": ("POST", "/me/away", {"substitute": "dir1", "first_day": "2026-11-23", "last_day": "2026-11-23"},
                    _expect(set(ALL) - {"dir1"}, 302, 422)),  # nobody names themselves
    "away.team": ("GET", "/away", {}, _expect(SUPERVISORY, 200, 403)),
    "status.index": ("GET", "/status", {}, _expect(set(ALL), 200, 200)),
    "status.healthz": ("GET", "/healthz", {}, _expect(set(ALL), 200, 200)),
    "auth.login": ("GET", "/login", {}, _expect(set(ALL), 302, 302)),  # logged in: sent to the queue
    "auth.language": ("POST", "/language", {"lang": "en"}, _expect(set(ALL), 302, 302)),
    "auth.logout": ("POST", "/logout", {}, _expect(set(ALL), 302, 302)),
    # compliance reads everything and nobody else reads these (not even the administrator, who can override
    # four eyes and must not audit themselves)
    "compliance.explorer": ("GET", "/compliance/?customer=East", {}, _expect({"audit1"}, 200, 403)),
    "compliance.instance": ("GET", "/compliance/contracts/{key}", {}, _expect({"audit1"}, 200, 403)),
    "compliance.diagram": ("GET", "/compliance/contracts/{key}/diagram.bpmn", {}, _expect({"audit1"}, 200, 403)),
    "compliance.definition": ("GET", "/compliance/contracts/{key}/files/quote_to_cash.bpmn", {},
                              _expect({"audit1"}, 200, 403)),
    "compliance.dossier_pdf": ("GET", "/compliance/contracts/{key}/dossier.pdf", {}, _expect({"audit1"}, 200, 403)),
    "compliance.instance_csv": ("GET", "/compliance/contracts/{key}/events.csv", {}, _expect({"audit1"}, 200, 403)),
    "compliance.period_csv": ("GET", "/compliance/events.csv?from=2020-01-01&to=2030-12-31", {},
                              _expect({"audit1"}, 200, 403)),
    "compliance.four_eyes": ("GET", "/compliance/four-eyes", {}, _expect({"audit1"}, 200, 403)),
    "compliance.heatmap": ("GET", "/compliance/heatmap", {}, _expect({"audit1"}, 200, 403)),
    "compliance.heatmap_xml": ("GET", "/compliance/heatmap/diagram.bpmn?version={deployment}", {},
                               _expect({"audit1"}, 200, 403)),
    "compliance.integrity_page": ("GET", "/compliance/integrity", {}, _expect({"audit1"}, 200, 403)),
    "compliance.verify": ("POST", "/compliance/integrity", {"key": "{key}"}, _expect({"audit1"}, 200, 403)),
    "compliance.access": ("GET", "/compliance/access", {}, _expect({"audit1"}, 200, 403)),
}


@pytest.mark.parametrize("endpoint", sorted(MATRIX))
def test_route_by_role(endpoint, rt, login, contract):
    method, path, data, expected = MATRIX[endpoint]
    path = path.format(**contract)
    data = {k: v.format(**contract) for k, v in data.items()}
    if method == "POST" and endpoint == "task.complete":
        data = dict(data, version=contract["version"])
    # the refused users first: an allowed completion ends the task for everyone after it
    for username in sorted(ALL, key=lambda name: expected[name] < 400):
        web = login(username)
        response = web.get(path) if method == "GET" else web.post(path, data, page="/status")
        assert response.status_code == expected[username], (endpoint, username, response.status_code,
                                                            response.get_data(as_text=True)[:300])
        if method == "POST" and response.status_code < 400 and endpoint.startswith("task."):
            # an allowed action changed the task: later users must see the same starting point
            _reset(rt, contract)


def _reset(rt, contract):
    from sqlalchemy import update

    from models import TaskRow

    with rt.write() as s:
        s.execute(update(TaskRow).where(TaskRow.id == contract["task"]).values(assignee_id=None, claimed_at=None))


def test_every_route_is_in_the_matrix(app):
    extra = {"static"} | set(EXTRA_ROLE_TESTS)
    # the studio's routes (process owners only) are declared in test_authorization.py's matrix alone
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()
                 if not rule.endpoint.startswith("studio")} - extra
    missing = endpoints - set(MATRIX)
    assert not missing, f"routes without a role test: {sorted(missing)}"


# endpoints whose role tests live in their own files (API tokens, admin, inbox)
EXTRA_ROLE_TESTS: dict[str, str] = {
    "admin.users": "test_web_admin.py", "admin.new_user": "test_web_admin.py", "admin.user": "test_web_admin.py",
    "api.list_tasks": "test_api.py", "api.get_task": "test_api.py", "api.claim": "test_api.py",
    "api.complete": "test_api.py", "api.start": "test_api.py", "api.get_instance": "test_api.py",
    "api.openapi": "test_api.py", "api.unclaim": "test_api.py", "api.reassign": "test_api.py",
    "task.remind_holder": "test_remind.py",
    "signers.ask": "test_countersign.py", "signers.add_approver": "test_countersign.py",
    "signers.index": "test_countersign.py", "signers.show": "test_countersign.py",
    "signers.answer": "test_countersign.py", "signers.withdraw": "test_countersign.py",
    "away.cancel": "test_substitutes.py",
    "task.batch_confirm": "test_batch.py", "task.batch_approve": "test_batch.py",
    "rewind.withdraw": "test_rewind.py", "rewind.return_to": "test_rewind.py",
    "customers.index": "test_customers.py", "customers.show": "test_customers.py",
    "customers.register": "test_customers.py", "customers.request_ownership": "test_customers.py",
    "customers.rules": "test_customers.py", "customers.save_rule": "test_customers.py",
}
