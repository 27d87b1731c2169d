"""Load test: users of every role working at once, over real HTTP, against gunicorn with several workers on PostgreSQL.

Why it exists: ``web_bench.py`` times one request at a time through the Flask test client. This shows what
happens when people work at the same time on separate web processes sharing one database: latency
percentiles under contention, throughput, the conflicts when two people go for the same task, and that the
record stays consistent afterwards (every task completed at most once, every audit chain intact).

What it does:

* Seeds a throwaway PostgreSQL database with ``web_bench.build`` (default 2,000 contracts spread over every
  stage; ``--quick`` 400), so every role has work waiting. The users are the demo users and web_bench's
  extra reps, supervisors and managers of the teams west and north. web_bench stores cheap password hashes;
  they are replaced by the production scrypt hashes, so ``POST /login`` costs what it costs in production
  (deliberately slow) and is reported on its own row.
* Starts ``gunicorn`` (``--workers``, default 4) serving ``webapp.wsgi:app`` on a free loopback port,
  with the session cookie's Secure flag off (plain http), and waits until ``/healthz`` answers.
* One thread per user (stdlib ``http.client``, a cookie per session, redirects followed like a browser):
  logs in through the login form with its CSRF token; lists "my tasks", the role queue and, for
  supervisors, managers and the director, the team queue (other pages and filters too); opens task pages,
  claims and completes tasks with valid data (the fields parsed from the page, the values made by
  web_bench's ``Builder.payload`` for the task's form); reps start new quotes; compliance browses
  ``/compliance``; the admin and the process owner read their pages. The reps of each team (rep1/rep2,
  rep3/rep4, rep5/rep6) meet at a barrier and go for the same role-queue task at the same moment,
  alternately claiming and completing it, so that conflicts (409) happen.
* Runs for ``--seconds`` (default 60; ``--quick`` 15), then prints per request type: count, conflicts,
  errors, p50 / p95 / p99 / max latency seen by the client, the median time gunicorn measured for it (the
  rest is waiting for a free worker) and its share of all request time; throughput in requests/s and
  completed tasks/s. An error is a 5xx, a connection error or any other unexpected status; a 409 on a raced
  claim or completion is a conflict. With 5xx the tail of gunicorn's log (tracebacks) is printed.
* Checks the record: no task completed twice in the audit log, the completions the clients saw are the
  ones the database recorded, and ``integrity.verify_all`` finds every chain intact; and that gunicorn's
  log holds no traceback or killed worker.
* Stops gunicorn and drops the database.

Run: ``.venv/bin/python bench/load_test.py`` (``--quick``; ``--seconds N``; ``--workers N``; ``--threads N``
for gunicorn's gthread worker; ``--contracts N``). Exit status 1 when a request failed, the record is
inconsistent or gunicorn logged trouble (its logs are then kept and their place printed). Seeding takes
about 10 s (--quick) and 30-60 s (2,000 contracts) on 2 cores. Never used for assertions in tests.
"""

from __future__ import annotations

import argparse
import html as html_lib
import http.client
import json
import math
import os
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from html.parser import HTMLParser
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from sqlalchemy import func, select, text, update
from tqdm import tqdm
from werkzeug.security import generate_password_hash

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import web_bench as wb  # noqa: E402
from scratch import scratch_postgres  # noqa: E402

from models import AuditEvent, User  # noqa: E402
from tests.web import CSRF_RE, form_fields  # noqa: E402
from workflows import config  # noqa: E402
from workflows.clock import FrozenClock  # noqa: E402
from workflows.services import accounts, integrity  # noqa: E402

SUPERVISORY = {"supervisor", "manager", "director"}
RACE_PAIRS = [users for users, _, _ in wb.TEAMS.values()]  # the two reps of each team share a role queue
HTTP_TIMEOUT = 120  # seconds; gunicorn kills a worker after its own --timeout (30 s) first
WORK_ROLES = {"sales_rep", "supervisor", "manager", "director", "legal", "finance", "delivery", "after_sales"}


# --- measurements ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Failure:
    user: str
    label: str
    status: int  # 0: no HTTP answer
    path: str
    detail: str


class Stats:
    """Every request's outcome, shared by the user threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)  # ms, of the requests that got an answer
        self.count: Counter[str] = Counter()
        self.conflicts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.failures: list[Failure] = []
        self.server_errors = 0
        self.completed = 0
        self.races = 0
        self.skipped = 0  # tasks left alone: four eyes, or a form web_bench cannot fill
        self.by_task: Counter[str] = Counter()  # completions per task (spec id)

    def record(self, label: str, ms: float | None, outcome: str, failure: Failure | None = None) -> None:
        with self._lock:
            self.count[label] += 1
            if ms is not None:
                self.latency[label].append(ms)
            if outcome == "conflict":
                self.conflicts[label] += 1
            elif outcome == "error":
                self.errors[label] += 1
                if failure is not None:
                    self.failures.append(failure)
                    self.server_errors += failure.status >= 500

    def add(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def done(self, spec: str) -> None:
        with self._lock:
            self.completed += 1
            self.by_task[spec] += 1

    def totals(self) -> tuple[int, int, int, int]:
        with self._lock:
            return (sum(self.count.values()), sum(self.conflicts.values()), sum(self.errors.values()),
                    self.completed)


TASK_KEY = re.compile(r"/tasks/\d+")
CONTRACT_KEY = re.compile(r"/contracts/[^/?]+")
USER_ID = re.compile(r"/users/\d+")


def label_of(method: str, path: str) -> str:
    """A request type: ids and keys replaced by placeholders, the queue scope kept, later pages and filters marked."""
    parts = urlsplit(path)
    name = TASK_KEY.sub("/tasks/<id>", parts.path)
    name = USER_ID.sub("/users/<id>", CONTRACT_KEY.sub("/contracts/<key>", name))
    query = dict(parse_qsl(parts.query))
    scope = query.pop("scope", "mine") if name == "/tasks" else None
    if scope is not None:
        name += " (mine)" if scope == "mine" else f"?scope={scope}"
    page = int(query.pop("page", "1") or 1)
    if query:
        name += " filtered"
    if page > 1:
        name += " page>1"
    return f"{method} {name}"


def percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[max(0, min(len(sorted_ms) - 1, math.ceil(q * len(sorted_ms)) - 1))]


# --- HTTP client ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Response:
    status: int
    location: str | None
    body: str


class Client:
    """One browser session: a cookie jar of its own, every request timed and judged."""

    def __init__(self, port: int, username: str, stats: Stats) -> None:
        self.port, self.username, self.stats = port, username, stats
        self.cookies: dict[str, str] = {}

    def get(self, path: str, ok: tuple[int, ...] = (200,)) -> Response | None:
        return self.request("GET", path, None, ok)

    def post(self, path: str, fields: list[tuple[str, str]], ok: tuple[int, ...] = (302,),
             conflict: tuple[int, ...] = (), files: dict[str, tuple[str, bytes]] | None = None) -> Response | None:
        """``files`` (form name: (file name, bytes)) make it a multipart/form-data post, as a browser sends one."""
        return self.request("POST", path, fields, ok, conflict, files)

    def follow(self, response: Response | None) -> Response | None:
        """The page a redirect leads to, as a browser would load it."""
        if response is None or response.location is None:
            return None
        parts = urlsplit(response.location)
        return self.get(parts.path + (f"?{parts.query}" if parts.query else ""))

    def request(self, method: str, path: str, fields: list[tuple[str, str]] | None, ok: tuple[int, ...],
                conflict: tuple[int, ...] = (), files: dict[str, tuple[str, bytes]] | None = None) -> Response | None:
        label = label_of(method, path)
        headers = {"User-Agent": "lvyue-load-test", "Accept": "text/html"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if files:
            body, headers["Content-Type"] = multipart(fields or [], files)
        elif fields is not None:
            body = urlencode(fields).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
        start = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            raw = conn.getresponse()
            text_ = raw.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as err:
            self.stats.record(label, None, "error", Failure(self.username, label, 0, path, repr(err)))
            return None
        finally:
            conn.close()
        ms = (time.perf_counter() - start) * 1000
        self._keep_cookies(raw.headers.get_all("Set-Cookie") or [])
        response = Response(raw.status, raw.headers.get("Location"), text_)
        if raw.status in ok:
            self.stats.record(label, ms, "ok")
        elif raw.status in conflict:
            self.stats.record(label, ms, "conflict")
        else:
            self.stats.record(label, ms, "error", Failure(self.username, label, raw.status, path, _gist(text_)))
        return response

    def _keep_cookies(self, headers: list[str]) -> None:
        for header in headers:
            jar = SimpleCookie()
            try:
                jar.load(header)
            except CookieError:
                continue
            for name, morsel in jar.items():
                if not morsel.value or morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value


def _gist(html: str) -> str:
    """The message of an error page or a re-rendered form, without the markup."""
    found = re.search(r'data-problem>(.*?)</div>|<main[^>]*>(.*?)</main>', html, re.S)
    snippet = next((g for g in found.groups() if g), "") if found else html
    return " ".join(re.sub(r"<[^>]+>", " ", snippet).split())[:300]


# --- reading pages -------------------------------------------------------------------------------------------------

@dataclass
class Form:
    action: str
    fields: list[tuple[str, str]] = field(default_factory=list)  # what a browser sends
    names: set[str] = field(default_factory=set)  # every control, sent or not


class FormParser(HTMLParser):
    """The forms of a page with their current values; rows inside <template> (added by script) are not sent."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._in_template = 0
        self._textarea: tuple[str, list[str]] | None = None
        self._select: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "template":
            self._in_template += 1
        if self._in_template:
            return
        if tag == "form":
            self._form = Form(a.get("action") or "")
            self.forms.append(self._form)
        elif self._form is not None and a.get("name"):
            self._control(tag, a)
        elif tag == "option" and self._select is not None:
            value = a.get("value") or ""
            self._select["first"] = self._select["first"] if self._select["first"] is not None else value
            if "selected" in a:
                self._select["selected"] = value

    def _control(self, tag: str, a: dict[str, str | None]) -> None:
        assert self._form is not None
        name = a["name"] or ""
        self._form.names.add(name)
        if tag == "input":
            kind = (a.get("type") or "text").lower()
            if kind in ("submit", "button", "file") or (kind in ("checkbox", "radio") and "checked" not in a):
                return  # a file input sends a file (SimUser.complete), not a text field
            self._form.fields.append((name, a.get("value") or ("on" if kind == "checkbox" else "")))
        elif tag == "textarea":
            self._textarea = (name, [])
        elif tag == "select":
            self._select = {"name": name, "first": None, "selected": None}

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._textarea[1].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "template":
            self._in_template -= 1
        if self._in_template:
            return
        if tag == "form":
            self._form = None
        elif tag == "textarea" and self._textarea is not None and self._form is not None:
            self._form.fields.append((self._textarea[0], "".join(self._textarea[1]).removeprefix("\n")))
            self._textarea = None
        elif tag == "select" and self._select is not None and self._form is not None:
            chosen = self._select["selected"] if self._select["selected"] is not None else self._select["first"]
            self._form.fields.append((self._select["name"] or "", chosen or ""))
            self._select = None


def forms_of(html: str) -> list[Form]:
    parser = FormParser()
    parser.feed(html)
    parser.close()
    return parser.forms


def form_to(forms: list[Form], suffix: str) -> Form | None:
    return next((f for f in forms if f.action.endswith(suffix)), None)


def csrf_of(html: str) -> str | None:
    found = CSRF_RE.search(html)
    return found.group(1) if found else None


TASK_ID = re.compile(r'data-task-id="(\d+)"')
NAV_COUNT = re.compile(r'data-count="(\w+)">(\d+)<')
PAGER = re.compile(r'<nav class="pager".*?<span>\D*(\d+)\D+(\d+)', re.S)
CONTRACT_LINK = re.compile(r'href="/contracts/(Q-\d{4}-\d+)"')
EXPLORER_KEY = re.compile(r'data-contract="([^"]+)"')
ADMIN_USER = re.compile(r'href="/admin/users/(\d+)"')


def pages_of(html: str) -> int:
    found = PAGER.search(html)
    return int(found.group(2)) if found else 1


def _money(raw: str) -> Decimal | None:
    try:
        return Decimal(re.sub(r"[^\d.]", "", raw))
    except InvalidOperation:
        return None


@dataclass
class TaskPage:
    task_id: int
    complete: Form | None  # the completion form, when the task is open
    claim: Form | None
    may_complete: bool
    four_eyes: bool
    spec: str | None
    customer: str | None
    amount: Decimal | None
    installments: list[str]  # the payment plan's amounts


def read_task_page(task_id: int, html: str) -> TaskPage:
    forms = forms_of(html)
    complete = form_to(forms, f"/tasks/{task_id}/complete")
    summary = html[html.find('class="panel summary"'):]
    summary = summary[:summary.find("</section>")]
    customer = re.search(r'<dl class="kv">\s*<dt>[^<]*</dt><dd>([^<]*)</dd>', summary)
    amount = re.search(r'<dd class="num strong">([^<]*)</dd>', summary)
    plan = re.findall(r'<tr><td>\d+</td><td>[^<]*</td><td class="num">([^<]*)</td></tr>', summary)
    return TaskPage(task_id, complete, form_to(forms, f"/tasks/{task_id}/claim"), 'data-action="complete"' in html,
                    "data-four-eyes" in html, spec_of(complete.names) if complete else None,
                    html_lib.unescape(customer.group(1)).strip() if customer and customer.group(1).strip() != "—"
                    else None,
                    _money(amount.group(1)) if amount else None,
                    [str(m) for raw in plan if (m := _money(raw)) is not None])


def _form_properties() -> dict[str, frozenset[str]]:
    """Each task form web_bench can fill: its top-level field names (the form files are named after the tasks)."""
    out = {}
    for spec in wb.ORDER:
        path = config.bpmn_dir() / "forms" / f"{spec}.schema.json"
        if path.exists():
            out[spec] = frozenset(json.loads(path.read_text(encoding="utf-8")).get("properties", {}))
    return out


FORM_PROPERTIES = _form_properties()


def spec_of(names: set[str]) -> str | None:
    """Which task a form belongs to, from its field names; None for a form web_bench cannot fill."""
    top = {n.split(".")[1] for n in names if n.startswith("f.")}
    fitting = [spec for spec, props in FORM_PROPERTIES.items() if top and top <= props]
    return min(fitting, key=lambda spec: len(FORM_PROPERTIES[spec]), default=None)


# --- form data ---------------------------------------------------------------------------------------------------

class PagePayload(wb.Builder):
    """web_bench's valid data per task, for a contract known only from its task page (no database reads:
    the users are loaded once before the run)."""

    def for_page(self, page: TaskPage, user: accounts.UserView) -> dict:
        assert page.spec is not None
        c = self.contract_of(page, user)
        when = datetime.now(UTC)
        if page.spec == "draft_contract":  # web_bench reads the amount from the database; here the page shows it
            amount = page.amount or Decimal("100000.00")
            first = (amount * Decimal("0.3")).quantize(Decimal("0.01"))
            plan = [{"amount": str(first), "due_date": wb._day(when, 25)},
                    {"amount": str(amount - first), "due_date": wb._day(when, 55)}]
            return {"contract_no": f"HT-{when.year}-L{page.task_id}", "payment_plan": plan,
                    "contract_terms": "标准销售合同条款 Standard sales terms", "sign_by": wb._day(when, 7)}
        return self.payload(c, page.spec, when)

    def contract_of(self, page: TaskPage, user: accounts.UserView) -> wb.Contract:
        rng = self.rng
        team = user.team or rng.choice(list(wb.TEAMS))
        starter = user.username if "sales_rep" in user.roles else wb.TEAMS[team][0][0]
        cls = rng.choices(wb.ALL, [wb.CLASS_WEIGHTS[c] for c in wb.ALL])[0]
        roll = rng.random()  # supervisors send back one quote in ten and reject one in twenty-five
        scenario = wb.Scenario("load", 0, None, send_backs=int(roll < 0.1), reject=0.1 <= roll < 0.14)
        c = wb.Contract(page.task_id, team, starter, cls, page.customer or wb._customer(rng), scenario,
                        datetime.now(UTC), [])
        low, high = wb.AMOUNTS[cls]
        qty = rng.randint(1, 4)
        price = (Decimal(rng.randint(low, high)) / qty).quantize(Decimal("0.01"))
        c.items = [{"product": wb.PRODUCTS[cls], "quantity": qty, "unit_price": str(price)}]
        c.plan = [{"amount": a} for a in page.installments] or [{"amount": "1000.00"}]
        return c


def multipart(fields: list[tuple[str, str]], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body (and its Content-Type) of text fields and files."""
    boundary = f"----lvyue-load-{uuid.uuid4().hex}"
    out = bytearray()
    for name, value in fields:
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n').encode()
    for name, (filename, content) in files.items():
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def completion_fields(page: TaskPage, data: dict) -> list[tuple[str, str]]:
    """The page's form as a browser sends it, with the fields the data covers replaced (whole lists included)."""
    assert page.complete is not None
    prefixes = tuple(f"f.{key}" for key in data)
    kept = [(n, v) for n, v in page.complete.fields
            if not any(n == p or n.startswith(p + ".") for p in prefixes)]
    return kept + list(form_fields(data).items())


# --- simulated users ------------------------------------------------------------------------------------------------

class RaceGroup:
    """The users that go for the same task at the same moment. Barrier rounds alternate: on odd phases each
    picks the first task of the role queue, on even ones they all fire (a drifted thread falls back in step)."""

    def __init__(self, size: int) -> None:
        self.phase = 0
        self.closed = False
        self.barrier = threading.Barrier(size, action=self._next, timeout=10)

    def _next(self) -> None:
        self.phase += 1

    def wait(self) -> int | None:
        """The phase after everyone arrived; None when someone did not come in time (or the run is over)."""
        if self.closed:
            return None
        try:
            self.barrier.wait()
            return self.phase
        except threading.BrokenBarrierError:
            if not self.closed:
                self.barrier.reset()
            return None

    def close(self) -> None:
        self.closed = True
        self.barrier.abort()


class SimUser:
    def __init__(self, user: accounts.UserView, port: int, stats: Stats, payload: PagePayload, seed: int,
                 group: RaceGroup | None) -> None:
        self.user, self.stats, self.payload, self.group = user, stats, payload, group
        self.web = Client(port, user.username, stats)
        self.rng = random.Random(seed)
        self.logged_in = False
        self.counts: dict[str, int] = {}
        self.skip: set[int] = set()  # tasks this user cannot do (four eyes, a form web_bench cannot fill)
        self.keys: list[str] = []

    # -- the loop
    def run(self, stop: threading.Event) -> None:
        step = self._behaviour()
        while not stop.is_set():
            try:
                if not self.logged_in and not self.login():
                    continue
                step()
                if self.rng.random() < 0.02:  # now and then someone logs out and back in
                    self.logout()
            except Exception as err:  # a bug of this script; counted, so that it is not silent
                self.stats.record("client exception", None, "error",
                                  Failure(self.user.username, "client exception", 0, "", repr(err)))
                time.sleep(0.2)

    def _behaviour(self) -> Callable[[], None]:
        roles = self.user.roles
        if "sales_rep" in roles:
            return self.rep_step
        if roles & WORK_ROLES:
            return self.worker_step
        if "compliance" in roles:
            return self.compliance_step
        if "admin" in roles:
            return self.admin_step
        return self.owner_step

    # -- sessions
    def login(self) -> bool:
        self.web.cookies.clear()
        page = self.web.get("/login")
        token = csrf_of(page.body) if page else None
        done = None
        if token is not None:
            done = self.web.post("/login", [("username", self.user.username),
                                            ("password", accounts.DEMO_PASSWORD), ("csrf_token", token)])
        self.logged_in = done is not None and done.status == 302
        if self.logged_in:
            self._remember(self.web.follow(done))
        else:
            time.sleep(0.5)
        return self.logged_in

    def logout(self) -> None:
        page = self.web.get("/tasks")
        token = csrf_of(page.body) if page else None
        if token:
            self.web.post("/logout", [("csrf_token", token)])
        self.web.cookies.clear()
        self.logged_in = False

    def _remember(self, page: Response | None) -> None:
        if page is not None and page.status == 200:
            self.counts.update({k: int(v) for k, v in NAV_COUNT.findall(page.body)})

    # -- queues and tasks
    def queue(self, scope: str, query: str = "", first_page: bool = False) -> list[int]:
        """A page of a queue (unless ``first_page``, now and then a later one), its task ids minus the ones
        to skip."""
        pages = max(1, -(-self.counts.get(scope, 0) // wb.PER_PAGE))
        later = pages > 1 and not first_page and not query and self.rng.random() < 0.2
        page_no = self.rng.randint(2, pages) if later else 1
        path = f"/tasks?scope={scope}{query}" + (f"&page={page_no}" if page_no > 1 else "")
        page = self.web.get(path)
        self._remember(page)
        if page is None or page.status != 200:
            return []
        return [int(i) for i in TASK_ID.findall(page.body) if int(i) not in self.skip]

    def open_task(self, task_id: int) -> TaskPage | None:
        page = self.web.get(f"/tasks/{task_id}")
        if page is None or page.status != 200:
            return None
        info = read_task_page(task_id, page.body)
        if info.complete is None or not info.may_complete or info.four_eyes or info.spec is None:
            self.skip.add(task_id)
            self.stats.add("skipped")
            return None
        return info

    def do_task(self, task_id: int, claim_first: bool) -> None:
        info = self.open_task(task_id)
        if info is None:
            return
        if claim_first and info.claim is not None:
            info = self.claim(info)
        if info is not None:
            self.complete(info)

    def claim(self, info: TaskPage) -> TaskPage | None:
        """Claim; on success the page it redirects to (the task, now held). None after losing the race."""
        assert info.claim is not None
        done = self.web.post(f"/tasks/{info.task_id}/claim", info.claim.fields, conflict=(409,))
        if done is None or done.status != 302:
            return None
        page = self.web.follow(done)
        if page is None or page.status != 200:
            return None
        again = read_task_page(info.task_id, page.body)
        return again if again.complete is not None and again.may_complete else None

    def complete(self, info: TaskPage) -> None:
        data = self.payload.for_page(info, self.user)
        evidence = wb.EVIDENCE.get(info.spec or "")
        files = {f"upload.{evidence[0]}": (evidence[1], wb.EVIDENCE_PDF)} if evidence else None
        done = self.web.post(f"/tasks/{info.task_id}/complete", completion_fields(info, data), conflict=(409,),
                             files=files)
        if done is not None and done.status == 302:
            self.stats.done(info.spec or "?")
            self._remember(self.web.follow(done))

    def work(self) -> None:
        mine = self.queue("mine")
        if mine:
            self.do_task(self.rng.choice(mine[:5]), claim_first=False)
            return
        waiting = self.queue("roles")
        if waiting:
            self.do_task(self.rng.choice(waiting), claim_first=self.rng.random() < 0.5)

    # -- what each role does
    def worker_step(self) -> None:
        if self.user.roles & SUPERVISORY and self.rng.random() < 0.3:
            query = self.rng.choice(["", "", "&sort=-amount", "&due=overdue", "&stage=approval"])
            self.queue("team", query)
        if self.rng.random() < 0.1:
            self.browse_contracts()
        self.work()

    def rep_step(self) -> None:
        if self.group is not None:
            self.race()
        roll = self.rng.random()
        if roll < 0.15:
            self.start_quote()
        elif roll < 0.25:
            self.browse_contracts()
        else:
            self.work()

    def race(self) -> None:
        assert self.group is not None
        phase = self.group.wait()
        if phase is None or phase % 2 == 0:
            return
        waiting = self.queue("roles", first_page=True)
        target = self.open_task(waiting[0]) if waiting else None
        phase = self.group.wait()
        if phase is None or phase % 2 == 1 or target is None:
            return
        self.stats.add("races")
        if phase % 4 == 2 and target.claim is not None:
            held = self.claim(target)
            if held is not None:
                self.complete(held)
        else:
            self.complete(target)

    def start_quote(self) -> None:
        page = self.web.get("/start")
        form = form_to(forms_of(page.body), "/start/quote_to_cash") if page and page.status == 200 else None
        if form is None:
            return
        fields = [(n, wb._customer(self.rng) if n == "f.customer_name" else v) for n, v in form.fields]
        done = self.web.post("/start/quote_to_cash", fields)
        page = self.web.follow(done)
        task = re.search(r"/tasks/(\d+)$", done.location or "") if done else None
        if page is not None and page.status == 200 and task:
            info = read_task_page(int(task.group(1)), page.body)
            if info.complete is not None and info.may_complete and info.spec:
                self.complete(info)

    def browse_contracts(self) -> None:
        page_no = self.rng.randint(1, 5)
        page = self.web.get("/contracts" + (f"?page={page_no}" if page_no > 1 else ""))
        keys = CONTRACT_LINK.findall(page.body) if page and page.status == 200 else []
        if keys:
            self.web.get(f"/contracts/{self.rng.choice(keys)}")

    def compliance_step(self) -> None:
        roll = self.rng.random()
        if roll < 0.35 or not self.keys:
            page_no = self.rng.randint(1, 20) if self.rng.random() < 0.3 else 1
            search = self.rng.choice([{}, {}, {"status": "running"}, {"stage": "approval"}, {"actor": "sup1"},
                                      {"customer": "苏州"}])
            params = urlencode(search | ({"page": page_no} if page_no > 1 else {}))
            page = self.web.get("/compliance/" + (f"?{params}" if params else ""))
            if page is not None and page.status == 200:
                self.keys = EXPLORER_KEY.findall(page.body) or self.keys
        elif roll < 0.75:
            key = self.rng.choice(self.keys)
            self.web.get(f"/compliance/contracts/{key}")
            if self.rng.random() < 0.3:
                self.web.get(f"/compliance/contracts/{key}/events.csv")
        else:
            self.web.get(self.rng.choice(["/compliance/four-eyes", "/compliance/heatmap", "/compliance/access",
                                          "/compliance/integrity"]))

    def admin_step(self) -> None:
        page = self.web.get("/admin/users")
        ids = ADMIN_USER.findall(page.body) if page and page.status == 200 else []
        if ids:
            self.web.get(f"/admin/users/{self.rng.choice(ids)}")
        if self.rng.random() < 0.3:
            self.web.get("/status")

    def owner_step(self) -> None:
        self.web.get("/status")
        self.browse_contracts()


# --- gunicorn -------------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """gunicorn serving the app on a loopback port; its log (errors and an access line with the time it
    measured per request) goes to temp files."""

    def __init__(self, url: str, workers: int, threads: int) -> None:
        self.url, self.workers, self.threads = url, workers, threads
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="lvyue_load_"))
        self.error_log, self.access_log = self.tmp / "gunicorn.log", self.tmp / "access.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ, LVYUE_DATABASE_URL=self.url, LVYUE_SECRET_KEY=secrets.token_hex(32),
                   LVYUE_INSECURE_COOKIES="1", LVYUE_ALLOW_DEMO_USERS="1")  # its 20 users are the demo users
        gunicorn = Path(sys.executable).parent / "gunicorn"
        cmd = [str(gunicorn), "--workers", str(self.workers), "--threads", str(self.threads),
               "--bind", f"127.0.0.1:{self.port}", "--error-logfile", str(self.error_log),
               "--access-logfile", str(self.access_log), "--access-logformat", "%(m)s %(U)s?%(q)s %(s)s %(M)s",
               "webapp.wsgi:app"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self, seconds: float = 60) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"gunicorn exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"gunicorn did not answer within {seconds:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # graceful: finish the requests in flight
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def cpu_seconds(self) -> float:
        """CPU time of the master and its workers so far (Linux /proc; 0 elsewhere)."""
        if self.proc is None:
            return 0.0
        try:
            pids = [self.proc.pid, *map(int, Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
                                        .read_text().split())]
            ticks = 0
            for pid in pids:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
            return ticks / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0.0

    def log_trouble(self) -> str:
        """What gunicorn's own log says went wrong (tracebacks, killed workers), whatever the clients saw."""
        try:
            log = self.error_log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "no log"
        found = {"traceback(s)": log.count("Traceback"), "worker timeout(s)": log.count("WORKER TIMEOUT"),
                 "error line(s)": log.count("[ERROR]"), "critical line(s)": log.count("[CRITICAL]")}
        return ", ".join(f"{n} {what}" for what, n in found.items() if n) or "clean"

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.error_log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no gunicorn log)"

    def server_ms(self) -> dict[str, list[float]]:
        """The time gunicorn measured per request type (from the access log)."""
        out: dict[str, list[float]] = defaultdict(list)
        try:
            lines = self.access_log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return out
        for line in lines:
            parts = line.split(" ")
            if len(parts) == 4 and parts[3].isdigit():
                method, path = parts[0], parts[1].removesuffix("?")
                if path != "/healthz":
                    out[label_of(method, path)].append(float(parts[3]))
        return out


# --- seeding, running, checking ---------------------------------------------------------------------------------

def seed(url: str, n: int, engine_n: int, n_long: int) -> tuple[wb.Built, list[accounts.UserView]]:
    built = wb.build(url, n, engine_n, n_long, "PostgreSQL")
    names = [u[0] for u in accounts.DEMO_USERS] + [u[0] for u in wb.EXTRA_USERS]
    users = [accounts.get_user(built.rt, name) for name in names]
    with built.rt.write() as s:  # production password hashes (scrypt): a login costs what it costs in production
        for name in names:
            s.execute(update(User).where(User.username == name)
                      .values(password_hash=generate_password_hash(accounts.DEMO_PASSWORD)))
    return built, users


def last_event_id(built: wb.Built) -> int:
    with built.rt.read() as s:
        return s.scalar(select(func.max(AuditEvent.id))) or 0


@dataclass
class Cpu:
    server: float = 0.0
    client: float = 0.0
    busy: float = 0.0  # the whole machine's busy share (every process, PostgreSQL included); -1: unknown
    _start: tuple[int, int] = (0, 0)

    def begin(self, gunicorn: Gunicorn) -> None:
        self.server, self.client, self._start = -gunicorn.cpu_seconds(), -_own_cpu(), _machine_ticks()

    def end(self, gunicorn: Gunicorn) -> None:
        self.server += gunicorn.cpu_seconds()
        self.client += _own_cpu()
        idle, total = (b - a for a, b in zip(self._start, _machine_ticks(), strict=True))
        self.busy = 1 - idle / total if total > 0 else -1.0


def _machine_ticks() -> tuple[int, int]:
    """(idle, total) jiffies of all cores since boot, from /proc/stat; (0, 0) elsewhere."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0, 0
    return values[3] + values[4], sum(values[:8])  # idle + iowait; user..steal


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_load(gunicorn: Gunicorn, users: list[accounts.UserView], built: wb.Built, seconds: float,
             stats: Stats, cpu: Cpu) -> float:
    groups: dict[str, RaceGroup] = {}
    for pair in RACE_PAIRS:
        group = RaceGroup(len(pair))
        groups.update((name, group) for name in pair)
    sims = []
    for i, u in enumerate(users):
        payload = PagePayload(built.rt, FrozenClock(wb.NOW), random.Random(wb.SEED + i))
        payload.users = {v.username: v for v in users}  # so Builder.user() never reads the database
        sims.append(SimUser(u, gunicorn.port, stats, payload, wb.SEED + i, groups.get(u.username)))
    stop = threading.Event()
    threads = [threading.Thread(target=s.run, args=(stop,), name=s.user.username, daemon=True) for s in sims]
    cpu.begin(gunicorn)
    start = time.perf_counter()
    for t in threads:
        t.start()
    with tqdm(total=round(seconds), desc="load", unit="s", file=sys.stderr, leave=False) as bar:
        while (elapsed := time.perf_counter() - start) < seconds:
            time.sleep(min(1.0, seconds - elapsed))
            bar.n = min(round(time.perf_counter() - start), round(seconds))
            requests, conflicts, errors, completed = stats.totals()
            bar.set_postfix(req=requests, done=completed, conflicts=conflicts, errors=errors, refresh=False)
            bar.refresh()
    stop.set()
    for group in set(groups.values()):
        group.close()
    for t in threads:
        t.join(timeout=HTTP_TIMEOUT + 10)
    elapsed = time.perf_counter() - start
    cpu.end(gunicorn)
    return elapsed


@dataclass
class Consistency:
    twice: list[tuple[int, int]]  # (task id, completions) of tasks completed more than once
    recorded: int  # completions the audit log recorded during the run
    verify: integrity.VerifyReport

    def ok(self, seen: int) -> bool:
        return not self.twice and self.recorded == seen and self.verify.ok


def check(built: wb.Built, since_event: int) -> Consistency:
    with built.rt.read() as s:
        twice = s.execute(text("SELECT task_id, count(*) FROM audit_events WHERE action = 'complete' AND "
                               "task_id IS NOT NULL GROUP BY task_id HAVING count(*) > 1 ORDER BY task_id")).all()
        recorded = s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "complete", AuditEvent.id > since_event)) or 0
    return Consistency([(r[0], r[1]) for r in twice], recorded, integrity.verify_all(built.rt))


# --- report ---------------------------------------------------------------------------------------------------------

def print_table(stats: Stats, server: dict[str, list[float]]) -> None:
    spent = {label: sum(ms) for label, ms in stats.latency.items()}
    total_ms = sum(spent.values()) or 1.0
    labels = sorted(stats.count, key=lambda k: -spent.get(k, 0.0))
    width = max(len(k) for k in labels)
    head = (f"{'request':<{width}} {'n':>6} {'409':>5} {'err':>4} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
            f"{'max ms':>8} {'srv p50':>8} {'time %':>6}")
    print(head)
    print("-" * len(head))
    for label in labels:
        ms = sorted(stats.latency.get(label, []))
        cells = [f"{'-':>8}"] * 4
        if ms:
            cells = [f"{percentile(ms, q):>8.0f}" for q in (0.5, 0.95, 0.99, 1.0)]
        srv = f"{statistics.median(server[label]):>8.0f}" if server.get(label) else f"{'-':>8}"
        share = f"{100 * spent.get(label, 0.0) / total_ms:>6.1f}"
        print(f"{label:<{width}} {stats.count[label]:>6} {stats.conflicts[label]:>5} {stats.errors[label]:>4} "
              f"{' '.join(cells)} {srv} {share}")
    print("-" * len(head))


def report(args: argparse.Namespace, built: wb.Built, users: int, seed_seconds: float, elapsed: float,
           stats: Stats, gunicorn: Gunicorn, consistency: Consistency, cpu: Cpu) -> None:
    requests, conflicts, errors, completed = stats.totals()
    print()
    print(f"Lvyue load test — gunicorn {args.workers} worker(s) x {args.threads} thread(s), {users} users "
          f"(one thread each), {elapsed:.1f} s of load, PostgreSQL")
    print(f"seeded {built.engine_n + built.copies} contracts in {seed_seconds:.1f} s "
          f"({built.engine_n} through the engine, {built.copies} copies); open tasks {built.sizes['open tasks']:,}")
    print()
    print_table(stats, gunicorn.server_ms())
    print("(ms as the client saw them, waiting for a free worker included; srv p50: gunicorn's own median;\n"
          " time %: share of all request time; 409: expected conflicts; POST /login checks a scrypt hash)")
    print()
    print(f"requests {requests:,} in {elapsed:.1f} s = {requests / elapsed:.1f} requests/s; "
          f"completed tasks {completed:,} = {completed / elapsed:.2f} tasks/s; "
          f"races {stats.races:,}; conflicts {conflicts:,}; errors {errors:,}; tasks left alone (four eyes, "
          f"closed or not fillable) {stats.skipped:,}")
    print("completed per task: " + ", ".join(f"{spec} {n}" for spec, n in stats.by_task.most_common()))
    cores = os.cpu_count() or 1
    print(f"CPU during the load ({cores} cores x {elapsed:.1f} s = {cores * elapsed:.0f} s): gunicorn "
          f"{cpu.server:.1f} s, this load generator {cpu.client:.1f} s; the machine was busy "
          f"{100 * cpu.busy:.0f}% of the time (every process: PostgreSQL and whatever else runs here)")
    twice = ", ".join(f"#{t} x{n}" for t, n in consistency.twice[:10]) or "none"
    print(f"gunicorn log: {gunicorn.log_trouble()}")
    print(f"consistency: tasks completed more than once: {twice}; completions seen by the clients {completed:,}, "
          f"recorded in the audit log {consistency.recorded:,}; audit chains: {consistency.verify.summary()}")


def print_failures(stats: Stats, gunicorn: Gunicorn) -> None:
    if stats.failures:
        print(f"\nerrors ({len(stats.failures)}; first 15):", file=sys.stderr)
    for f in stats.failures[:15]:
        print(f"  {f.user:<7} {f.label}  [{f.status or 'no answer'}] {f.path}  {f.detail}", file=sys.stderr)
    if stats.server_errors or gunicorn.log_trouble() != "clean":
        print(f"\ngunicorn log ({gunicorn.error_log}), last lines:\n{gunicorn.log_tail()}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="400 contracts, 15 s of load")
    parser.add_argument("--seconds", type=float, help="how long the load runs (default 60; --quick 15)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker (default 1: sync)")
    parser.add_argument("--contracts", type=int, help="contracts to seed (default 2000; --quick 400)")
    args = parser.parse_args()
    seconds = args.seconds or (15 if args.quick else 60)
    n = args.contracts or (400 if args.quick else 2000)
    engine_n, n_long = (100, 3) if args.quick else (300, 8)
    if n < 20:
        parser.error("--contracts: at least 20")

    stats, cpu = Stats(), Cpu()
    with scratch_postgres("lvyue_load") as url:
        started = time.perf_counter()
        built, users = seed(url, n, engine_n, n_long)
        seed_seconds = time.perf_counter() - started
        since_event = last_event_id(built)
        gunicorn = Gunicorn(url, args.workers, args.threads)
        try:
            gunicorn.start()
            elapsed = run_load(gunicorn, users, built, seconds, stats, cpu)
        finally:
            gunicorn.stop()
        consistency = check(built, since_event)
        built.rt.dispose()
    report(args, built, len(users), seed_seconds, elapsed, stats, gunicorn, consistency, cpu)
    print_failures(stats, gunicorn)
    _, _, errors, completed = stats.totals()
    if errors or not consistency.ok(completed) or gunicorn.log_trouble() != "clean":
        print(f"gunicorn's logs kept in {gunicorn.tmp}", file=sys.stderr)
        sys.exit(1)
    gunicorn.cleanup()


if __name__ == "__main__":
    main()
