"""The web app's plumbing: health check, status page, sessions, CSRF, login rate limit, redirects, languages."""

from __future__ import annotations

from webapp import Config, TestConfig, create_app

from .flow import Flow
from .web import WebClient


def test_health_check_touches_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_status_page_lists_deployments_and_open_work(login, rt):
    Flow(rt)
    page = login("dir1").text("/status")
    assert "quote_to_cash" in page and "complaint" in page
    assert 'data-role="sales_rep">1<' in page


def test_pages_need_a_login(client):
    for path in ("/tasks", "/tasks?scope=roles", "/status", "/start", "/tasks/1", "/contracts/Q-2026-00001"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path


def test_login_wrong_password_then_right(client):
    web = WebClient(client)
    token = web.csrf("/login")
    bad = client.post("/login", data={"username": "rep1", "password": "nope", "csrf_token": token})
    assert bad.status_code == 401
    body = bad.get_data(as_text=True)
    assert "Wrong user name or password" in body or "用户名或密码错误" in body
    web.login("rep1", "lvyue-demo")
    assert client.get("/tasks").status_code == 200


def test_login_is_rate_limited_per_user_name(client):
    web = WebClient(client)
    for _ in range(5):
        client.post("/login", data={"username": "sup1", "password": "wrong", "csrf_token": web.csrf()})
    locked = client.post("/login", data={"username": "sup1", "password": "lvyue-demo", "csrf_token": web.csrf()})
    assert locked.status_code == 429  # even the right password waits until the window passes
    other = client.post("/login", data={"username": "mgr1", "password": "lvyue-demo", "csrf_token": web.csrf()})
    assert other.status_code == 302


def test_login_rate_limit_ends_after_the_window(client, clock):
    from datetime import timedelta

    web = WebClient(client)
    for _ in range(5):
        client.post("/login", data={"username": "sup1", "password": "wrong", "csrf_token": web.csrf()})
    clock.advance(timedelta(minutes=16))
    web.login("sup1", "lvyue-demo")


def test_post_without_csrf_token_is_refused(login, rt):
    web = login("rep1")
    response = web.client.post("/start/quote_to_cash", data={})
    assert response.status_code == 400
    assert rt.read  # nothing started:
    with rt.read() as s:
        from sqlalchemy import func, select

        from models import Instance
        assert s.scalar(select(func.count()).select_from(Instance)) == 0


def test_login_form_itself_needs_csrf(client):
    response = client.post("/login", data={"username": "rep1", "password": "lvyue-demo"})
    assert response.status_code == 400


def test_next_parameter_cannot_leave_the_site(client):
    web = WebClient(client)
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        client.post("/logout", data={"csrf_token": web.csrf("/tasks")}) if web.username else None
        token = web.csrf("/login")
        response = client.post(f"/login?next={target}", data={"username": "rep1", "password": "lvyue-demo",
                                                               "csrf_token": token})
        assert response.status_code == 302
        assert response.headers["Location"] == "/tasks", target
        web.username = "rep1"
    token = web.csrf("/tasks")
    client.post("/logout", data={"csrf_token": token})
    token = web.csrf("/login")
    ok = client.post("/login?next=/start", data={"username": "rep1", "password": "lvyue-demo", "csrf_token": token})
    assert ok.headers["Location"] == "/start"


def test_session_cookie_flags(rt):
    assert Config.SESSION_COOKIE_HTTPONLY and Config.SESSION_COOKIE_SAMESITE == "Lax"
    assert Config.SESSION_COOKIE_SECURE  # production default; tests run over plain http
    app = create_app(TestConfig, runtime=rt)
    client = app.test_client()
    web = WebClient(client)
    response = web.login("rep1", "lvyue-demo")
    cookie = response.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_logout_ends_the_session(login):
    web = login("rep1")
    web.post("/logout")
    assert web.client.get("/tasks").status_code == 302


def test_language_switch_is_remembered_per_user(login, rt):
    from workflows.services import accounts

    web = login("rep1")
    assert accounts.get_user(rt, "rep1").language == "zh-CN"
    page = web.text("/tasks")
    assert '<html lang="zh-CN">' in page and "我的任务" in page
    web.post("/language", {"lang": "en", "next": "/tasks"})
    assert accounts.get_user(rt, "rep1").language == "en"
    page = web.text("/tasks")
    assert '<html lang="en">' in page and "My tasks" in page
    web.post("/language", {"lang": "xx"})  # unknown languages are ignored
    assert accounts.get_user(rt, "rep1").language == "en"


def test_security_headers(client):
    response = client.get("/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
