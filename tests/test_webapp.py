"""The app factory serves the status page (what is deployed, what waits per role) and a health check."""

from __future__ import annotations

import pytest

from webapp import TestConfig, create_app

from .flow import Flow


@pytest.fixture
def client(rt):
    app = create_app(TestConfig, runtime=rt)
    return app.test_client()


def test_health_check_touches_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_status_page_lists_deployments_and_open_work(client, rt):
    Flow(rt)
    page = client.get("/").get_data(as_text=True)
    assert "quote_to_cash" in page and "complaint" in page
    assert "<td>sales_rep</td><td>1</td>" in page
    assert "1 running instance(s)" in page

