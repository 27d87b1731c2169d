"""User administration pages: only administrators get in; they list, search, create and edit accounts,
and issue and revoke API tokens of service accounts. The last administrator cannot be removed."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from models import AuditEvent, User
from workflows.services import accounts, tokens
from workflows.services.errors import InvalidInput, PermissionDenied

TOKEN_RE = re.compile(r"lvy_[A-Za-z0-9_-]{43}")


def user_id(rt, username: str) -> int:
    with rt.read() as s:
        return s.scalar(select(User.id).where(User.username == username))


def record(rt, username: str) -> accounts.UserRecord:
    return accounts.get_user_record(rt, user_id(rt, username))


def audits(rt, action: str) -> list[AuditEvent]:
    with rt.read() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def edit(web, rt, username: str, **changes):
    """POST the edit form of ``username`` with its current values, changed by ``changes``."""
    u = record(rt, username)
    form = {"action": "update", "display_name": u.display_name, "email": u.email or "", "team": u.team or "",
            "roles": list(u.roles), "active": "1" if u.active else ""}
    form.update(changes)
    return web.post(f"/admin/users/{u.id}", form, page=f"/admin/users/{u.id}")


def admin_routes(app, rt) -> list[tuple[str, set[str]]]:
    """Every registered admin route as (URL, methods), so a new admin route is covered without editing here."""
    some_id = user_id(rt, "rep1")
    routes = [(rule.rule.replace("<int:user_id>", str(some_id)), rule.methods - {"HEAD", "OPTIONS"})
              for rule in app.url_map.iter_rules() if rule.endpoint.startswith("admin.")]
    assert len(routes) >= 3 and any("POST" in m for _, m in routes), routes
    return routes


@pytest.mark.parametrize("username", ["sup1", "rep1", "audit1"])
def test_non_admins_get_403_on_every_admin_route(app, rt, login, username):
    web = login(username)
    assert "/admin/users" not in web.text("/tasks")  # no link in the navigation either
    for url, methods in admin_routes(app, rt):
        if "GET" in methods:
            assert web.get(url).status_code == 403, url
        if "POST" in methods:
            for action in ("update", "issue_token", "revoke_token"):
                response = web.post(url, {"action": action, "roles": ["admin"], "username": "intruder",
                                          "password": "intruder-pass", "token_name": "x", "token_id": "1"})
                assert response.status_code == 403, (url, action)
    assert "admin" not in record(rt, "rep1").roles and user_id(rt, "intruder") is None


def test_anonymous_visitors_are_sent_to_log_in(app, rt, client):
    for url, _ in admin_routes(app, rt):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url


def test_admin_lists_and_searches_users(rt, login, users):
    for n in range(15):
        accounts.add_user(rt, users["admin"], f"temp{n:02d}", "temporary-pass", ["delivery"], team="north")
    web = login("admin")
    assert 'href="/admin/users"' in web.text("/tasks")  # the navigation links here
    first = web.text("/admin/users")
    assert 'data-user="admin"' in first and 'data-user="audit1"' in first and 'data-user="temp00"' in first
    assert first.count("data-user=") == 20 and "page=2" in first
    second = web.text("/admin/users?page=2")
    assert second.count("data-user=") == 27 - 20 and 'data-user="temp14"' in second
    found = web.text("/admin/users?q=rep")
    assert 'data-user="rep1"' in found and 'data-user="rep2"' in found and 'data-user="sup1"' not in found
    assert web.text("/admin/users?q=north").count("data-user=") == 15
    assert web.text("/admin/users?q=%25").count("data-user=") == 0  # LIKE wildcards are matched literally


def test_admin_creates_a_user_who_can_log_in(rt, login):
    web = login("admin")
    page = web.text("/admin/users/new")
    assert 'name="roles" value="sales_rep"' in page and 'name="roles" value="admin"' in page
    response = web.post("/admin/users/new", {"username": "rep3", "display_name": "钱三 Qian San",
                                             "password": "rep3-password", "email": "rep3@example.com",
                                             "team": "west", "language": "en", "roles": ["sales_rep", "finance"]},
                        page="/admin/users/new")
    assert response.status_code == 302
    made = record(rt, "rep3")
    assert response.headers["Location"].endswith(f"/admin/users/{made.id}")
    assert (made.roles, made.team, made.email, made.language, made.active, made.service_account) == (
        ("finance", "sales_rep"), "west", "rep3@example.com", "en", True, False)
    [event] = audits(rt, "user_created")
    assert event.actor == "admin" and event.data["username"] == "rep3" and "rep3-password" not in str(event.data)

    rep3 = login("rep3", "rep3-password")
    assert rep3.get("/tasks").status_code == 200
    assert rep3.get("/admin/users").status_code == 403


def test_create_form_errors_keep_the_input_and_save_nothing(rt, login):
    web = login("admin")
    response = web.post("/admin/users/new", {"username": "rep1", "display_name": "Dup", "password": "short",
                                             "email": "not-an-email", "team": "east", "language": "en",
                                             "roles": ["sales_rep", "emperor"]}, page="/admin/users/new")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    for field in ("password", "email", "roles"):
        assert f'id="err-{field}"' in page, field
    assert 'value="Dup"' in page and 'value="sales_rep" checked' in page
    response = web.post("/admin/users/new", {"username": "rep1", "password": "long-enough", "language": "en"},
                        page="/admin/users/new")
    assert response.status_code == 422 and 'id="err-username"' in response.get_data(as_text=True)
    with rt.read() as s:
        assert s.scalar(select(func.count()).select_from(User)) == len(accounts.DEMO_USERS)
    assert audits(rt, "user_created") == []


def test_admin_edits_roles_team_email_and_active(rt, login):
    web = login("admin")
    page = web.text(f"/admin/users/{user_id(rt, 'rep2')}")
    assert 'value="sales_rep" checked' in page and 'id="tokens"' not in page  # a person has no tokens
    response = edit(web, rt, "rep2", roles=["sales_rep", "supervisor"], team="west", email="li.na@example.com",
                    display_name="李娜")
    assert response.status_code == 302
    rep2 = record(rt, "rep2")
    assert (rep2.roles, rep2.team, rep2.email, rep2.display_name) == (
        ("sales_rep", "supervisor"), "west", "li.na@example.com", "李娜")
    [event] = audits(rt, "user_updated")
    assert event.actor == "admin" and set(event.data["changes"]) == {"roles", "team", "email", "display_name"}
    assert event.data["changes"]["roles"] == {"old": ["sales_rep"], "new": ["sales_rep", "supervisor"]}

    other = login("rep2")
    assert edit(web, rt, "rep2", active="").status_code == 302
    assert not record(rt, "rep2").active
    assert other.get("/tasks").status_code == 302  # the open session ends with the account
    refused = other.client.post("/login", data={"username": "rep2", "password": accounts.DEMO_PASSWORD,
                                                "csrf_token": other.csrf("/login")})
    assert refused.status_code == 401
    assert 'data-user="rep2"' in web.text("/admin/users?q=rep2")  # inactive accounts stay listed

    assert edit(web, rt, "rep2", roles=["sales_rep", "wizard"]).status_code == 422
    assert edit(web, rt, "rep2", email="nope").status_code == 422
    assert record(rt, "rep2").roles == ("sales_rep", "supervisor")


def test_the_last_admin_keeps_the_admin_role(rt, login, users):
    web = login("admin")
    response = edit(web, rt, "admin", roles=["compliance"])
    assert response.status_code == 422 and 'id="err-roles"' in response.get_data(as_text=True)
    response = edit(web, rt, "admin", active="")
    assert response.status_code == 422 and 'id="err-active"' in response.get_data(as_text=True)
    assert record(rt, "admin").roles == ("admin",) and record(rt, "admin").active
    assert audits(rt, "user_updated") == []

    # a service account with the admin role cannot use the pages, so it does not count
    accounts.create_service_account(rt, "robot", "Robot", ["admin"], actor=users["admin"])
    assert edit(web, rt, "admin", roles=["compliance"]).status_code == 422

    assert edit(web, rt, "owner1", roles=["process_owner", "admin"]).status_code == 302
    assert edit(web, rt, "admin", roles=["compliance"]).status_code == 302
    assert record(rt, "admin").roles == ("compliance",)
    assert web.get("/admin/users").status_code == 403
    with pytest.raises(InvalidInput):
        accounts.update_user(rt, user_id(rt, "owner1"), ["process_owner"], "Owner", None, None, True,
                             accounts.get_user(rt, "owner1"))
    with pytest.raises(PermissionDenied):
        accounts.update_user(rt, user_id(rt, "rep1"), ["admin"], "x", None, None, True, users["rep1"])


def test_admin_issues_and_revokes_tokens_of_a_service_account(rt, login, client):
    web = login("admin")
    response = web.post("/admin/users/new", {"username": "erp", "display_name": "ERP", "service_account": "1",
                                             "language": "en", "roles": ["sales_rep"]}, page="/admin/users/new")
    assert response.status_code == 302
    erp = record(rt, "erp")
    assert erp.service_account and erp.roles == ("sales_rep",)
    url = f"/admin/users/{erp.id}"
    page = web.text(url)
    assert 'id="tokens"' in page and TOKEN_RE.search(page) is None

    issued = web.post(url, {"action": "issue_token", "token_name": "ERP nightly sync"}, page=url)
    assert issued.status_code == 200 and issued.headers["Cache-Control"] == "no-store"
    shown = issued.get_data(as_text=True)
    token = TOKEN_RE.search(shown).group(0)
    assert "data-new-token" in shown and "ERP nightly sync" in shown
    assert TOKEN_RE.search(web.text(url)) is None  # shown once
    assert client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    [event] = audits(rt, "token_issued")
    assert event.actor == "admin" and token not in str(event.data)

    assert web.post(url, {"action": "issue_token", "token_name": " "}, page=url).status_code == 422
    [listed] = tokens.list_tokens(rt, erp.id)
    assert listed.last_used_at is not None and f'data-token-id="{listed.id}"' in web.text(url)

    # a token id of another account is not revoked through this account's page
    rep_url = f"/admin/users/{user_id(rt, 'rep1')}"
    assert web.post(rep_url, {"action": "revoke_token", "token_id": str(listed.id)}, page=rep_url).status_code == 404
    revoked = web.post(url, {"action": "revoke_token", "token_id": str(listed.id)}, page=url)
    assert revoked.status_code == 302
    assert client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert tokens.list_tokens(rt, erp.id)[0].revoked_at is not None
    assert len(audits(rt, "token_revoked")) == 1
    assert web.post(url, {"action": "revoke_token", "token_id": str(listed.id)}, page=url).status_code == 409

    # people do not get tokens, and service accounts do not log in with passwords
    assert web.post(rep_url, {"action": "issue_token", "token_name": "mine"}, page=rep_url).status_code == 422
    assert tokens.list_tokens(rt, user_id(rt, "rep1")) == []
    assert accounts.authenticate(rt, "erp", "") is None


def test_posts_without_a_csrf_token_are_refused(rt, login):
    web = login("admin")
    response = web.client.post("/admin/users/new", data={"username": "sneaky", "password": "sneaky-pass",
                                                         "roles": ["admin"], "language": "en"})
    assert response.status_code == 400
    response = web.client.post(f"/admin/users/{user_id(rt, 'rep1')}",
                               data={"action": "update", "roles": ["admin"], "active": "1"})
    assert response.status_code == 400
    assert user_id(rt, "sneaky") is None and record(rt, "rep1").roles == ("sales_rep",)


def test_every_field_message_of_the_services_is_translatable(app, rt, users):
    """The admin pages translate the services' field sentences through a fixed table; keep them in step."""
    from webapp.views.admin import _field_messages

    seen: set[str] = set()

    def collect(call, *args, **kw):
        with pytest.raises(InvalidInput) as err:
            call(*args, **kw)
        seen.update(err.value.errors.values())

    admin = users["admin"]
    collect(accounts.add_user, rt, admin, "-x", "short", ["sales_rep"], display_name="d" * 121, team="t" * 81,
            email="nope", language="fr")
    collect(accounts.add_user, rt, admin, "rep1", "long-enough", [])
    collect(accounts.update_user, rt, users["admin"].id, [], "Admin", None, None, True, admin)
    collect(tokens.issue_token, rt, users["rep1"].id, "x", admin)
    collect(tokens.issue_token, rt, users["rep1"].id, "", admin)
    robot = accounts.create_service_account(rt, "robot", None, ["sales_rep"], admin)
    accounts.update_user(rt, robot.id, ["sales_rep"], None, None, None, False, admin)
    collect(tokens.issue_token, rt, robot.id, "x", admin)
    with app.test_request_context("/admin/users"):
        known = _field_messages()
    assert len(seen) == len(known) and seen <= set(known), seen ^ set(known)
