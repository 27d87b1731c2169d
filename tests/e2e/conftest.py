"""End-to-end fixtures: the real app on a local port, driven by headless Chromium through Playwright.

``live_server`` serves ``create_app(TestConfig, runtime=rt)`` — the same runtime, FrozenClock and fresh
database as the other tests, so a test can move the clock and run the timer worker between clicks.
``page_as("rep1")`` opens a new browser context and logs in through the login form. ``shot(page, name)``
saves a full-page screenshot under ``tests/artifacts/screenshots/`` named after the page's language.
Every page opened here is watched: a JavaScript error, a console error (CSP violations show up there) or a
5xx answer fails the test.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from workflows.services import accounts

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
VIEWPORT = {"width": 1366, "height": 900}
TIMEOUT_MS = 10_000
# the browser logs every 4xx answer as a console error; 409/422 pages are part of the flows under test
_EXPECTED_CONSOLE = re.compile(r"Failed to load resource: the server responded with a status of 4(09|22)")
_NO_FAVICON = re.compile(r"/favicon\.ico$")  # Chromium asks for one on its own; the app has none


def _unexpected(msg) -> bool:
    if msg.type != "error" or _EXPECTED_CONSOLE.search(msg.text):
        return False
    return not (_NO_FAVICON.search((msg.location or {}).get("url") or "") and "404" in msg.text)


class _Chromium:
    """One Chromium for the session, launched again if it went away: a browser that crashed (its PDF viewer has,
    under load) fails the test it crashed in, not every test after it."""

    def __init__(self, playwright) -> None:
        self._playwright = playwright
        self._browser = None

    def get(self):
        if self._browser is None or not self._browser.is_connected():
            self._browser = self._playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        return self._browser

    def close(self) -> None:
        if self._browser is not None and self._browser.is_connected():
            self._browser.close()


@pytest.fixture(scope="session")
def _chromium():
    if not CHROMIUM.exists():
        pytest.skip(f"end-to-end tests need Chromium at {CHROMIUM} (apt-get install chromium fonts-noto-cjk)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = _Chromium(p)
        yield chromium
        chromium.close()


@pytest.fixture
def browser(_chromium):
    return _chromium.get()


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request (errors are still logged)."""

    def log_request(self, code="-", size="-") -> None:
        pass


@pytest.fixture
def live_server(rt) -> Iterator[str]:
    from webapp import TestConfig, create_app

    app = create_app(TestConfig, runtime=rt)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="lvyue-live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def browser_errors() -> list[str]:
    """What went wrong in any page of the test; checked when the test ends."""
    return []


@pytest.fixture
def new_page(browser, live_server, browser_errors) -> Iterator[Callable]:
    """``new_page(label)`` → a page in a fresh context (own cookies), not logged in, Chinese browser locale."""
    contexts = []

    def _new(label: str = "anonymous"):
        context = browser.new_context(base_url=live_server, locale="zh-CN", timezone_id="Asia/Shanghai",
                                      viewport=VIEWPORT)
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda err: browser_errors.append(f"{label}: JavaScript error: {err}"))
        page.on("console", lambda msg: _unexpected(msg)
                and browser_errors.append(f"{label}: console error on {page.url}: {msg.text}"))
        page.on("response", lambda r: r.status >= 500
                and browser_errors.append(f"{label}: HTTP {r.status} for {r.request.method} {r.url}"))
        return page

    yield _new
    for context in contexts:
        context.close()
    assert not browser_errors, "\n".join(browser_errors)


def log_in(page, username: str, password: str = accounts.DEMO_PASSWORD) -> None:
    """Fill in and send the real login form; wait until the app has left the login page."""
    if "/login" not in page.url:
        page.goto("/login")
    page.locator("#username").fill(username)
    page.locator("#password").fill(password)
    page.locator("form:has(#password) button[type=submit]").click()
    page.wait_for_url(lambda url: "/login" not in url)


@pytest.fixture
def page_as(new_page) -> Callable:
    """``page_as("sup1")`` → a page of a new browser context, logged in as that user through the login form."""

    def _page_as(username: str, password: str = accounts.DEMO_PASSWORD):
        page = new_page(username)
        page.goto("/login")
        log_in(page, username, password)
        return page

    return _page_as


def take_shot(page, name: str) -> Path:
    """A full-page PNG of ``page`` as ``<name>.<language of the page>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    lang = page.locator("html").get_attribute("lang") or "unknown"
    path = SCREENSHOTS / f"{name}.{lang}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path


@pytest.fixture
def shot() -> Callable:
    return take_shot
