"""Secrets come from configuration, never from the repository: no key, token or password is committed; the
production entry point refuses to start without its secret key or while demo accounts keep the demo password
published with the source; an administrator's password is set from the shell without passing through argv."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from models import AuditEvent
from workflows.cli import main
from workflows.services import accounts

ROOT = Path(__file__).resolve().parent.parent

SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    # a placeholder (…, ***, PASSWORD) in documentation is not a password
    "password in a URL": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:(?!…@|\*+@|PASSWORD@)[^/\s@'\"{}$<>]+@"),
    "hard-coded SECRET_KEY": re.compile(r"SECRET_KEY\s*=\s*['\"][^'\"]+['\"]"),
}
# where a pattern is expected: the test configuration's fixed key, and this file's own patterns
ALLOWED = {("webapp/config.py", "hard-coded SECRET_KEY"), ("tests/test_production_safety.py", None)}


def tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in listed.decode().split("\0") if name]


def test_no_secret_is_committed():
    files = tracked_files()
    assert len(files) > 50, "git ls-files found too little: not run in the repository?"
    found = []
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if (rel, None) in ALLOWED or not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for what, pattern in SECRET_PATTERNS.items():
            for match in pattern.finditer(text):
                if (rel, what) not in ALLOWED:
                    found.append(f"{rel}: {what}: {match.group(0)[:60]}")
    assert not found, "secrets in the repository:\n" + "\n".join(found)


def test_the_scan_finds_what_it_looks_for():
    samples = {
        "private key": "-----BEGIN RSA PRIVATE KEY-----",
        "AWS access key": "key = AKIAABCDEFGHIJKLMNOP",
        "GitHub token": "ghp_" + "a1" * 18,
        "Slack token": "xoxb-1234567890-abc",
        "password in a URL": "postgresql://lvyue:hunter2@db.example/lvyue",
        "hard-coded SECRET_KEY": 'SECRET_KEY = "abc"',
    }
    for what, sample in samples.items():
        assert SECRET_PATTERNS[what].search(sample), what
    # a URL without a password is no secret (the test server's trust-auth URL, a template variable)
    assert not SECRET_PATTERNS["password in a URL"].search("postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    assert not SECRET_PATTERNS["password in a URL"].search("scheme://user:{password}@host")
    assert not SECRET_PATTERNS["password in a URL"].search("postgresql+psycopg://lvyue:…@db.internal/lvyue")


def test_production_config_takes_its_key_from_the_environment():
    source = (ROOT / "webapp" / "config.py").read_text()
    production = source.split("class TestConfig")[0]
    assert 'SECRET_KEY = os.environ.get("LVYUE_SECRET_KEY") or secrets.token_hex(32)' in production


def start_wsgi(url: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LVYUE_")}
    environ.update(LVYUE_DATABASE_URL=url, **env)
    return subprocess.run([sys.executable, "-c", "import webapp.wsgi"], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=120)


def test_the_production_entry_point_refuses_without_a_secret_key(db_url):
    done = start_wsgi(db_url)
    assert done.returncode != 0 and "LVYUE_SECRET_KEY is not set" in done.stderr


def test_the_production_entry_point_refuses_demo_accounts_with_the_demo_password(rt, db_url):
    key = os.urandom(32).hex()
    done = start_wsgi(db_url, LVYUE_SECRET_KEY=key)
    assert done.returncode != 0
    assert "demo accounts with the published demo password are active" in done.stderr and "admin" in done.stderr
    assert start_wsgi(db_url, LVYUE_SECRET_KEY=key, LVYUE_ALLOW_DEMO_USERS="1").returncode == 0

    for name, *_ in accounts.DEMO_USERS[:-1]:
        accounts.set_password(rt, name, f"{name}-own-password", actor=None)
    assert accounts.users_with_demo_password(rt) == ["admin"]
    done = start_wsgi(db_url, LVYUE_SECRET_KEY=key)
    assert done.returncode != 0 and "are active: admin;" in done.stderr
    accounts.set_password(rt, "admin", "a-long-admin-password", actor=None)
    done = start_wsgi(db_url, LVYUE_SECRET_KEY=key)
    assert done.returncode == 0, done.stderr


def cli(url: str, *args: str, password: str) -> object:
    return CliRunner().invoke(main, ["--db", url, *args], input=password + "\n")


def test_the_first_administrator_is_made_from_the_shell(empty_rt):
    url = empty_rt.database_url
    result = cli(url, "add-user", "boss", "--role", "admin", "--name", "Boss", password="correct-horse-battery")
    assert result.exit_code == 0, result.output
    assert "created boss (admin)" in result.output
    assert accounts.authenticate(empty_rt, "boss", "correct-horse-battery") is not None

    result = cli(url, "set-password", "boss", password="another-long-one")
    assert result.exit_code == 0, result.output
    assert accounts.authenticate(empty_rt, "boss", "correct-horse-battery") is None
    assert accounts.authenticate(empty_rt, "boss", "another-long-one") is not None
    with empty_rt.read() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action.in_(["user_created", "password_set"]))
                           .order_by(AuditEvent.id)).all()
        assert [e.action for e in events] == ["user_created", "password_set"]
        assert all("another-long-one" not in str(e.data) and "correct-horse" not in str(e.data) for e in events)


@pytest.mark.parametrize(("password", "message"), [("short", "at least 8 characters"),
                                                    (accounts.DEMO_PASSWORD, "this is the demo password")])
def test_weak_passwords_are_refused(empty_rt, password, message):
    result = cli(empty_rt.database_url, "add-user", "boss", "--role", "admin", password=password)
    assert result.exit_code == 1 and message in result.output
    accounts.add_user(empty_rt, None, "boss", "good-password-1", ["admin"])
    result = cli(empty_rt.database_url, "set-password", "boss", password=password)
    assert result.exit_code == 1 and message in result.output
    assert accounts.authenticate(empty_rt, "boss", "good-password-1") is not None


def test_a_service_account_gets_no_password(rt):
    accounts.create_service_account(rt, "erp-bot", None, ["finance"], actor=None)
    result = cli(rt.database_url, "set-password", "erp-bot", password="some-long-password")
    assert result.exit_code == 1 and "a service account has no password" in result.output
