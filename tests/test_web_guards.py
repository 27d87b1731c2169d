"""Requests no browser sends, and expired forms: a clear answer, never a 500, and nothing typed is lost."""

from __future__ import annotations

import re

from .flow import Flow, quote
from .web import WebClient, form_fields


def _prepare(rt) -> int:
    return Flow(rt).task("prepare_quote").id


def test_control_characters_and_impossible_ids(login, rt):
    rep = login("rep1")
    for path in ("/tasks?customer=%00", "/contracts?q=a%00b", "/contracts/Q%00", "/tasks?scope=roles&stage=%01"):
        assert rep.get(path).status_code == 400, path
    anonymous = WebClient(rt_client := rep.client.application.test_client())
    response = rt_client.post("/login", data={"username": "a\x00b", "password": "x", "csrf_token": anonymous.csrf()})
    assert response.status_code == 400
    for path in ("/tasks/" + "9" * 30, "/tasks/0", "/api/v1/tasks/" + "9" * 20):
        assert rep.get(path).status_code in (401, 404), path
    assert rep.post("/tasks/" + "9" * 30 + "/claim").status_code == 404
    assert rep.post("/inbox/read", {"id": "²"}).status_code == 400
    assert rep.get("/status?page=" + "9" * 25).status_code == 200
    for bad in ("sNaN", "1e999999", "Infinity"):
        assert rep.get(f"/tasks?scope=roles&amount_min={bad}").status_code == 422, bad


def test_pager_links_carry_only_the_filters(login, rt):
    for _ in range(21):
        Flow(rt)
    page = login("rep1").text("/tasks?scope=roles&endpoint=x&_external=1&_anchor=zz&customer=")
    link = re.search(r'href="([^"]+)" rel="next"', page).group(1)
    assert link.startswith("/tasks?") and "endpoint" not in link and "_anchor" not in link and "zz" not in link


def test_next_with_line_breaks_is_ignored(client):
    web = WebClient(client)
    token = web.csrf("/login")
    response = client.post("/login?next=/tasks%0d%0aSet-Cookie:x=1",
                           data={"username": "rep1", "password": "lvyue-demo", "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/tasks"


def test_an_expired_form_comes_back_with_what_was_typed(login, rt):
    task_id = _prepare(rt)
    rep = login("rep1")
    page = rep.text(f"/tasks/{task_id}")
    version = re.search(r'name="version" value="(\d+)"', page).group(1)
    typed = dict(form_fields(quote(customer_name="过期表单保留 Kept")), version=version, csrf_token="expired")
    response = rep.client.post(f"/tasks/{task_id}/complete", data=typed)
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "过期表单保留 Kept" in body and 'name="csrf_token" value="' in body
    assert rep.post(f"/tasks/{task_id}/complete", {k: v for k, v in typed.items()
                                                                     if k != "csrf_token"},
                                      page=f"/tasks/{task_id}").status_code == 302  # sent again: done


def test_a_form_without_its_version_is_not_taken(login, rt):
    task_id = _prepare(rt)
    rep = login("rep1")
    response = rep.post(f"/tasks/{task_id}/complete", form_fields(quote(customer_name="无版本 No version")),
                        page=f"/tasks/{task_id}")
    assert response.status_code == 400 and "无版本 No version" in response.get_data(as_text=True)


def test_a_post_after_the_session_ended_returns_to_the_page_after_login(app, rt):
    task_id = _prepare(rt)
    client = app.test_client()
    token = WebClient(client).csrf("/login")  # a session with a form token but nobody logged in
    response = client.post(f"/tasks/{task_id}/claim", data={"csrf_token": token},
                           headers={"Referer": f"http://localhost/tasks/{task_id}"})
    assert response.status_code == 302
    assert response.headers["Location"] == f"/login?next=/tasks/{task_id}"


def test_logged_in_pages_are_not_cached(login):
    response = login("rep1").get("/tasks")
    assert response.headers["Cache-Control"] == "no-store"
    assert "base-uri 'self'" in response.headers["Content-Security-Policy"]


def test_the_same_start_form_sent_twice_starts_one_contract(login, rt):
    from sqlalchemy import func, select

    from models import Instance

    rep = login("rep1")
    page = rep.text("/start")
    token = re.search(r'name="submit_token" value="([0-9a-f]+)"', page).group(1)
    first = rep.post("/start/quote_to_cash", {"submit_token": token}, page="/start")
    again = rep.post("/start/quote_to_cash", {"submit_token": token}, page="/start")
    assert first.status_code == again.status_code == 302
    assert again.headers["Location"] == "/contracts/Q-2026-00001"
    with rt.read() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 1
