"""The CI dependency audit (scripts/audit_dependencies.py) against a vulnerability service run by the test: a
known vulnerability in an installed package fails the run and is named; a clean answer passes; a service that
fails or has no data is never mistaken for a clean audit."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "audit_dependencies.py"
sys.path.insert(0, str(SCRIPT.parent))
import audit_dependencies  # noqa: E402


def osv_vuln(package: str) -> dict:
    return {"id": "GHSA-test-0001", "summary": "a test advisory", "aliases": ["CVE-2099-0001"],
            "affected": [{"package": {"name": package, "ecosystem": "PyPI"},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "999.0"}]}]}]}


Answer = Callable[[str, dict | None], tuple[int, dict]]  # (path, JSON body of a POST) → (status, JSON)


@pytest.fixture
def json_server() -> Iterator[Callable[[Answer], str]]:
    """``json_server(answer)`` → the base URL of a JSON server on 127.0.0.1 that answers with ``answer``."""
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer) -> str:
        class Handler(BaseHTTPRequestHandler):
            def _reply(self, body: dict | None) -> None:
                status, reply = answer(self.path, body)
                raw = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                self._reply(None)

            def do_POST(self) -> None:  # noqa: N802
                self._reply(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

            def log_message(self, *args) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture
def osv_server(json_server) -> Callable[[Callable[[dict], tuple[int, dict]]], str]:
    """``osv_server(answer)`` → the URL of an OSV query endpoint that answers with ``answer(query)``."""
    return lambda answer: json_server(lambda path, query: answer(query)) + "/v1/query"


def audit(url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--service", "osv", "--osv-url", url, "--timeout", "10",
                           *extra], capture_output=True, text=True, timeout=300)


def test_a_known_vulnerability_fails_the_audit_and_is_named(osv_server):
    url = osv_server(lambda q: (200, {"vulns": [osv_vuln("flask")]} if q["package"]["name"] == "flask" else {}))
    done = audit(url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "VULNERABLE  flask" in done.stdout and "GHSA-test-0001" in done.stdout and "999.0" in done.stdout
    assert "1 known vulnerabilities" in done.stdout


def test_a_clean_answer_passes_and_counts_every_package(osv_server):
    asked: list[str] = []

    def answer(query: dict) -> tuple[int, dict]:
        asked.append(query["package"]["name"])
        return 200, {}

    done = audit(osv_server(answer))
    assert done.returncode == 0, done.stdout + done.stderr
    assert {"flask", "sqlalchemy", "spiffworkflow", "lxml"} <= set(asked)
    assert "lvyue" not in asked  # our own editable package is this repository, not a dependency
    n = len(set(asked))
    assert f"{n} of {n} packages audited ({n} by pip-audit's osv service, 0 from" in done.stdout
    assert "0 known vulnerabilities" in done.stdout


def test_a_failing_service_fails_the_audit(osv_server):
    done = audit(osv_server(lambda q: (503, {"error": "down"})))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "pip-audit failed" in done.stderr


def test_packages_without_data_are_reported_not_passed_silently(monkeypatch, capsys):
    report = {"dependencies": [
        {"name": "flask", "version": "3.1.3", "vulns": []},
        {"name": "lxml", "skip_reason": "Dependency not found on PyPI and could not be audited: lxml (6.0.0)"},
        {"name": "lvyue", "skip_reason": "could not audit lvyue: editable installs are skipped"},
    ]}
    result = audit_dependencies.parse(report)
    assert result.audited == ["flask"] and [name for name, _ in result.not_audited] == ["lxml"]
    assert result.vulnerable == []

    monkeypatch.setattr(audit_dependencies, "run_pip_audit", lambda *a: (0, json.dumps(report), ""))
    nowhere = ["--pypi-json-url", "http://127.0.0.1:9/pypi", "--timeout", "5"]  # the project pages fail too
    assert audit_dependencies.main(nowhere) == 0
    out = capsys.readouterr().out
    assert "1 of 2 packages audited" in out and "NOT AUDITED (1):\n  lxml: " in out
    assert audit_dependencies.main([*nowhere, "--strict"]) == 3
    report["dependencies"] = report["dependencies"][1:]
    assert audit_dependencies.main(nowhere) == 0
    assert "this run checked nothing" in capsys.readouterr().out


@pytest.fixture
def project_pages(json_server) -> str:
    """PyPI-style project pages (``/pypi/NAME/json``): lxml's newest release is 6.0.0 with one advisory,
    flask's 3.1.3 with none, sqlalchemy's 2.1.0; anything else is not found."""
    pages = {
        "lxml": {"info": {"version": "6.0.0"}, "vulnerabilities": [
            {"id": "PYSEC-2099-1", "aliases": ["CVE-2099-0002"], "fixed_in": ["6.0.1"], "withdrawn": None},
            {"id": "PYSEC-2099-2", "aliases": [], "fixed_in": [], "withdrawn": "2099-01-01T00:00:00Z"}]},
        "flask": {"info": {"version": "3.1.3"}, "vulnerabilities": []},
        "sqlalchemy": {"info": {"version": "2.1.0"}, "vulnerabilities": []},
    }

    def answer(path: str, _body: dict | None) -> tuple[int, dict]:
        name = path.split("/")[2]
        return (200, pages[name]) if name in pages else (404, {"message": "Not Found"})

    return json_server(answer) + "/pypi"


def test_what_pip_audit_could_not_check_is_checked_against_the_newest_release(project_pages, monkeypatch, capsys):
    skipped = "Dependency not found on PyPI and could not be audited"
    report = {"dependencies": [{"name": name, "skip_reason": f"{skipped}: {name}"}
                               for name in ("lxml", "flask", "SQLAlchemy", "unknown-pkg")]}
    installed = {"lxml": "6.0.0", "flask": "3.1.3", "sqlalchemy": "2.0.58", "unknown-pkg": "1.0"}
    monkeypatch.setattr(audit_dependencies, "run_pip_audit", lambda *a: (0, json.dumps(report), ""))
    monkeypatch.setattr(audit_dependencies, "installed_versions", lambda: installed)

    assert audit_dependencies.main(["--pypi-json-url", project_pages]) == 1
    out = capsys.readouterr().out
    assert "VULNERABLE  lxml 6.0.0: PYSEC-2099-1 / CVE-2099-0002 (fixed in 6.0.1)" in out
    assert "PYSEC-2099-2" not in out  # withdrawn
    assert "2 of 4 packages audited (0 by pip-audit's pypi service, 2 from their newest release's data)" in out
    assert "sqlalchemy: installed 2.0.58, but only the newest release (2.1.0) has data".lower() in out.lower()
    assert "unknown-pkg: " in out and "the project page failed too" in out
