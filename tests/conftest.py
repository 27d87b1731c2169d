"""Test fixtures: a real database per test (a SQLite file, or PostgreSQL when LVYUE_TEST_DATABASE_URL
names a server), copied from a template that is migrated, seeded and deployed once per session."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from workflows import config
from workflows.clock import FrozenClock
from workflows.runtime import Runtime
from workflows.schema import upgrade
from workflows.services import accounts, deployments

PG_URL = os.environ.get("LVYUE_TEST_DATABASE_URL")
FAST_HASH = "pbkdf2:sha256:1000"
START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def pytest_report_header(config):
    return f"database: {'PostgreSQL ' + make_url(PG_URL).render_as_string() if PG_URL else 'SQLite file'}"


def _seed(url: str, with_data: bool) -> None:
    rt = Runtime(url, password_method=FAST_HASH)
    try:
        upgrade(rt.engine)
        if with_data:
            accounts.ensure_demo_users(rt)
            deployments.deploy_path(rt, config.bpmn_dir(), comment="test template")
    finally:
        rt.dispose()


class _Databases:
    """Makes a fresh copy of a template database for each test."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.templates: dict[str, str] = {}
        self.made: list[str] = []

    def _admin(self):
        return create_engine(make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")

    def template(self, with_data: bool) -> str:
        name = "seeded" if with_data else "empty"
        if name not in self.templates:
            if PG_URL:
                db = f"lvyue_tmpl_{name}_{uuid.uuid4().hex[:8]}"
                with self._admin().connect() as conn:
                    conn.execute(text(f'CREATE DATABASE "{db}"'))
                self.made.append(db)
                url = make_url(PG_URL).set(database=db).render_as_string(hide_password=False)
            else:
                url = f"sqlite:///{self.tmp / (name + '.db')}"
            _seed(url, with_data)
            self.templates[name] = url
        return self.templates[name]

    def fresh(self, with_data: bool) -> str:
        template = self.template(with_data)
        if PG_URL:
            db = f"lvyue_test_{uuid.uuid4().hex[:12]}"
            with self._admin().connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{db}" TEMPLATE "{make_url(template).database}"'))
            self.made.append(db)
            return make_url(PG_URL).set(database=db).render_as_string(hide_password=False)
        path = self.tmp / f"test_{uuid.uuid4().hex[:12]}.db"
        shutil.copyfile(make_url(template).database, path)
        return f"sqlite:///{path}"

    def drop_all(self) -> None:
        if PG_URL and self.made:
            engine = self._admin()
            with engine.connect() as conn:
                for db in reversed(self.made):
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            engine.dispose()


@pytest.fixture(scope="session")
def databases(tmp_path_factory) -> Iterator[_Databases]:
    dbs = _Databases(tmp_path_factory.mktemp("db"))
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="session", autouse=True)
def attachments_dir(tmp_path_factory) -> Iterator[Path]:
    """Uploaded files go to a folder of the test run (and of the servers it starts), never to instance/."""
    folder = tmp_path_factory.mktemp("attachments")
    patch = pytest.MonkeyPatch()
    patch.setenv("LVYUE_ATTACHMENTS_DIR", str(folder))
    yield folder
    patch.undo()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def db_url(databases) -> str:
    return databases.fresh(with_data=True)


@pytest.fixture
def rt(db_url, clock) -> Iterator[Runtime]:
    runtime = Runtime(db_url, clock=clock, password_method=FAST_HASH)
    yield runtime
    runtime.dispose()


@contextlib.contextmanager
def seeded_runtime(databases) -> Iterator[Runtime]:
    """A runtime on a seeded database of its own, for module-scoped fixtures that many tests share."""
    runtime = Runtime(databases.fresh(with_data=True), clock=FrozenClock(START), password_method=FAST_HASH)
    try:
        yield runtime
    finally:
        runtime.dispose()


@pytest.fixture(scope="module")
def shared_rt(databases) -> Iterator[Runtime]:
    """One seeded database for a whole module whose tests change nothing in it (refused deploys, say)."""
    with seeded_runtime(databases) as runtime:
        yield runtime


@pytest.fixture
def empty_rt(databases, clock) -> Iterator[Runtime]:
    runtime = Runtime(databases.fresh(with_data=False), clock=clock, password_method=FAST_HASH)
    accounts.ensure_roles(runtime)
    yield runtime
    runtime.dispose()


@pytest.fixture
def users(rt):
    return {name: accounts.get_user(rt, name) for name, *_ in accounts.DEMO_USERS}


@pytest.fixture
def app(rt):
    from webapp import TestConfig, create_app

    return create_app(TestConfig, runtime=rt)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def login(app):
    """``login("sup1")`` → a test client logged in as that demo user (CSRF tokens taken from the pages)."""
    from .web import WebClient

    def _login(username: str, password: str = accounts.DEMO_PASSWORD) -> WebClient:
        web = WebClient(app.test_client())
        web.login(username, password)
        return web

    return _login


@pytest.fixture
def processes(tmp_path):
    """Subprocesses started by the test (gunicorn, timer workers), stopped at teardown."""
    from .processes import Processes

    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop()


# Hypothesis (tests/test_form_properties.py, tests/test_api_schema.py). Loaded here, before any test module
# is imported, so every @settings(...) of a test inherits it. The default profile is reproducible: the same
# examples on every run and machine (derandomize), nothing remembered between runs (no example database, which
# would also write a .hypothesis directory into the checkout), and no deadline (the examples hit a real
# database on a shared machine; a timing is no property). HYPOTHESIS_PROFILE=explore draws fresh random
# examples each run and keeps the failures it finds under tests/artifacts/, for hunting new bugs locally.
from hypothesis import HealthCheck as _HealthCheck  # noqa: E402
from hypothesis import settings as _hypothesis_settings  # noqa: E402
from hypothesis.database import DirectoryBasedExampleDatabase as _ExampleDatabase  # noqa: E402

_hypothesis_settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True,
                                      suppress_health_check=[_HealthCheck.too_slow])
_hypothesis_settings.register_profile(
    "explore", derandomize=False, deadline=None, print_blob=True, suppress_health_check=[_HealthCheck.too_slow],
    database=_ExampleDatabase(Path(__file__).resolve().parent / "artifacts" / "hypothesis"))
_hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
