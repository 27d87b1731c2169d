"""Test helper: a Flask test client that logs in and posts forms with the CSRF token of the page."""

from __future__ import annotations

import re

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class WebClient:
    def __init__(self, client) -> None:
        self.client = client
        self.username: str | None = None

    def csrf(self, path: str = "/login") -> str:
        page = self.client.get(path).get_data(as_text=True)
        found = CSRF_RE.search(page)
        assert found, f"no CSRF token on {path}"
        return found.group(1)

    def login(self, username: str, password: str):
        token = self.csrf("/login")
        response = self.client.post("/login", data={"username": username, "password": password, "csrf_token": token})
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        self.username = username
        return response

    def get(self, path: str, **kw):
        return self.client.get(path, **kw)

    def text(self, path: str, status: int = 200) -> str:
        response = self.client.get(path)
        assert response.status_code == status, (path, response.status_code, response.get_data(as_text=True)[:800])
        return response.get_data(as_text=True)

    def post(self, path: str, data: dict | None = None, page: str | None = None, **kw):
        """POST with the CSRF token taken from ``page`` (default: the task queue)."""
        data = dict(data or {})
        data.setdefault("csrf_token", self.csrf(page or "/tasks"))
        return self.client.post(path, data=data, **kw)


def form_fields(data: dict, prefix: str = "f") -> dict[str, str]:
    """Task data → the flat names the rendered form posts (``f.line_items.0.product``)."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}"
        if isinstance(value, dict):
            out.update(form_fields(value, name))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    out.update(form_fields(item, f"{name}.{i}"))
                else:
                    out[f"{name}.{i}"] = str(item)
        elif isinstance(value, bool):
            if value:
                out[name] = "on"
        else:
            out[name] = str(value)
    return out
