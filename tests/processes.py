"""Test helper: real subprocesses (gunicorn, ``lvyue worker``) with their output in files, stopped at teardown;
a JSON API client over real HTTP; a lock that holds the timer workers back until they race."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEADLINE = 120  # seconds; a generous bound for a hang, not a speed requirement


class Processes:
    """Subprocesses with their output in files; all are stopped at teardown."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.running: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Path:
        log = self.folder / f"{name}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(args, env={**os.environ, **env}, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.running.append((name, proc))
        return log

    def check_alive(self) -> None:
        for name, proc in self.running:
            assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{self.log(name)}"

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text()[-4000:]

    def stop(self) -> None:
        for _, proc in self.running:
            if proc.poll() is None:
                proc.terminate()
        for _, proc in self.running:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_timer_worker(procs: Processes, url: str, name: str) -> None:
    lvyue = BIN / "lvyue"
    assert lvyue.exists(), f"no {lvyue}: install the project (make setup)"
    procs.start(name, [str(lvyue), "worker", "--name", name], {"LVYUE_DATABASE_URL": url, "LVYUE_SMTP_HOST": ""})


def wait_for(what: str, done: Callable[[], bool], procs: Processes) -> None:
    deadline = time.monotonic() + DEADLINE
    while not done():
        procs.check_alive()
        assert time.monotonic() < deadline, f"still waiting after {DEADLINE} s: {what}"
        time.sleep(0.2)


@contextlib.contextmanager
def timers_held(url: str) -> Iterator[Callable[[int], None]]:
    """Keep the timer workers from picking any timer until the block ends: the timers table is locked in
    EXCLUSIVE mode (reads pass, a worker's ``SELECT … FOR UPDATE`` waits). ``wait_blocked(n)`` returns once
    ``n`` sessions wait on it, so that the workers start racing at the same moment."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn, conn.begin():
            conn.execute(text("LOCK TABLE timers IN EXCLUSIVE MODE"))

            def blocked() -> int:
                with engine.connect() as probe:  # a new transaction each time: pg_stat_activity is a snapshot
                    return probe.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                             "AND wait_event_type = 'Lock'"))

            def wait_blocked(n: int) -> None:
                deadline = time.monotonic() + DEADLINE
                while blocked() < n:
                    assert time.monotonic() < deadline, f"{n} workers never waited for a timer"
                    time.sleep(0.05)

            yield wait_blocked
    finally:
        engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port: int, token: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, {"raw": raw.decode(errors="replace")[:300]}


def served_by(access_log: Path, method: str) -> Counter[str]:
    """Requests per gunicorn worker (the access log format is ``<pid> method path status``)."""
    return Counter(m.group(1) for m in re.finditer(rf"^<(\d+)> {method} ", access_log.read_text(), re.M))


def start_gunicorn(procs: Processes, url: str, workers: int, access_log: Path, name: str = "gunicorn") -> int:
    """``webapp.wsgi:app`` under gunicorn with ``workers`` processes on a free port (returned); the access log
    lines are ``<pid> method path status``."""
    gunicorn = BIN / "gunicorn"
    assert gunicorn.exists(), f"no {gunicorn}: install the project (make setup)"
    port = free_port()
    procs.start(name, [str(gunicorn), "-w", str(workers), "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5",
                       "--access-logfile", str(access_log), "--access-logformat", "%(p)s %(m)s %(U)s %(s)s",
                       "webapp.wsgi:app"],
                {"LVYUE_DATABASE_URL": url, "LVYUE_SECRET_KEY": os.urandom(32).hex(), "LVYUE_INSECURE_COOKIES": "1",
                 "LVYUE_ALLOW_DEMO_USERS": "1"})
    return port


# --- crash testing: processes killed as a whole and started again ----------------------------------------------

def start_group(procs: Processes, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Like ``Processes.start``, but in a session (and process group) of its own, so that ``kill_group`` ends it
    with every child it forked (a gunicorn master and its workers), and with the log appended across restarts."""
    with (procs.folder / f"{name}.log").open("a") as out:
        proc = subprocess.Popen(args, env={**os.environ, **env}, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    procs.running.append((name, proc))
    return proc


def kill_group(procs: Processes, proc: subprocess.Popen) -> None:
    """SIGKILL the process group of ``proc`` (no cleanup runs anywhere in it) and forget it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    procs.running[:] = [(n, p) for n, p in procs.running if p is not proc]


def gunicorn_command(url: str, port: int, workers: int, access_log: Path,
                     secret: str) -> tuple[list[str], dict[str, str]]:
    """The arguments and environment of ``start_gunicorn``, for a caller that starts (and restarts) it itself on a
    fixed port and secret."""
    gunicorn = BIN / "gunicorn"
    assert gunicorn.exists(), f"no {gunicorn}: install the project (make setup)"
    return ([str(gunicorn), "-w", str(workers), "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5",
             "--access-logfile", str(access_log), "--access-logformat", "%(p)s %(m)s %(U)s %(s)s", "webapp.wsgi:app"],
            {"LVYUE_DATABASE_URL": url, "LVYUE_SECRET_KEY": secret, "LVYUE_INSECURE_COOKIES": "1"})


def timer_worker_command(url: str, name: str) -> tuple[list[str], dict[str, str]]:
    """The arguments and environment of ``start_timer_worker``."""
    lvyue = BIN / "lvyue"
    assert lvyue.exists(), f"no {lvyue}: install the project (make setup)"
    return [str(lvyue), "worker", "--name", name], {"LVYUE_DATABASE_URL": url, "LVYUE_SMTP_HOST": ""}
