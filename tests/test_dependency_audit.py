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


@pytest.fixture
def osv_server() -> Iterator[Callable[[Callable[[dict], tuple[int, dict]]], str]]:
    """``osv_server(answer)`` → the URL of an OSV query endpoint on 127.0.0.1 that answers with ``answer(query)``."""
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Callable[[dict], tuple[int, dict]]) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, body = answer(query)
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1/query"

    yield start
    for server in servers:
        server.shutdown()


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
    assert f"{len(set(asked))} of {len(set(asked))} packages audited, 0 known vulnerabilities" in done.stdout


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
    assert audit_dependencies.main([]) == 0
    out = capsys.readouterr().out
    assert "1 of 2 packages audited" in out and "NOT AUDITED (1): lxml" in out
    assert audit_dependencies.main(["--strict"]) == 3
    report["dependencies"] = report["dependencies"][1:]
    assert audit_dependencies.main([]) == 0
    assert "this run checked nothing" in capsys.readouterr().out
