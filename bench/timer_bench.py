"""Timer benchmark: 10,000 contracts waiting on a timer, how late does each fire?

Timers are the one thing nobody clicks: if the worker falls behind, an installment opens late and no page
shows it. This measures, on a SQLite file (1 worker) and a throwaway PostgreSQL database (2 workers;
``--quick`` also 1), the lateness of every timer: when the real ``lvyue worker`` processes fired it (the
timer row's ``fired_at``: when the worker's transaction picked it; the commit follows milliseconds later)
minus when it was due.

How it is set up (printed with the results):

* A few contracts (20; ``--quick`` 10) go through the service layer to collection, where each waits on
  the ``wait_installment_due`` timer of ``bpmn/quote_to_cash.bpmn``; the rest are whole-row copies of them
  (``web_bench.Copier``: instance with its stored workflow state, tasks, steps, timer, audit chain).
* Their installment falls due at midnight of a day a year away. Just before the run each timer is moved
  to a moment of the real wall clock spread at random over a window (60 s; ``--quick`` 5 s) starting a
  few seconds ahead: the timer row's ``due_at`` and, in the stored state, the timer's ``event_value`` (and
  the ``installment_due_at`` it came from), so the engine and the row agree. Nothing else is faked: the
  worker processes load each workflow, the engine decides the timer fired, rows, state and audit commit.
* The workers are started first (``LVYUE_DATABASE_URL``, ``--name``); timers are armed once they poll.
  On PostgreSQL each run gets its own copy of the built database (``CREATE DATABASE … TEMPLATE``).

Reported per run: fired, lateness percentiles, fired/s (fired ÷ time from the first due moment to the
last firing: the due rate when the workers keep up, their throughput when they do not), how each worker's
share came out (audit actor), doubles (a timer with more than one fire event; must be 0), lost (not fired
when the run ended: nothing fired for ``--stall`` seconds after the window), errors, and whether the audit
chains verify afterwards. ``--window 0`` makes every timer due at once: fired/s is then the throughput.
Never used for assertions. Run: ``.venv/bin/python bench/timer_bench.py`` (``--quick``; ``--timers N``;
``--window S``; ``--no-postgres``).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select, text, update
from tqdm import tqdm

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]  # the project and the other benchmarks (tests import this too)

from scratch import scratch_postgres  # noqa: E402
from web_bench import Copier  # noqa: E402

from models import AuditEvent, Instance, Timer  # noqa: E402
from models.base import UTCDateTime  # noqa: E402
from tests.flow import Flow  # noqa: E402
from workflows import config  # noqa: E402
from workflows.runtime import Runtime  # noqa: E402
from workflows.schema import upgrade  # noqa: E402
from workflows.services import accounts, deployments, integrity  # noqa: E402

ROOT = BENCH.parent
LVYUE = Path(sys.executable).with_name("lvyue")
FAST_HASH = "pbkdf2:sha256:1000"
SEED = 20261130
SPEC = "wait_installment_due"
TZ = ZoneInfo(config.business_tz())
READY_LINE = "LVYUE_SMTP_HOST is not set"  # the worker logs it once, just before its first pass


# --- building --------------------------------------------------------------------------------------------

def build(url: str, n: int, n_templates: int, label: str) -> None:
    """``n`` contracts on collection, each with one waiting timer due a year from now."""
    rt = Runtime(url, password_method=FAST_HASH)
    try:
        upgrade(rt.engine)
        accounts.ensure_demo_users(rt)
        deployments.deploy_path(rt, config.bpmn_dir(), comment="timer bench")
        contracts_waiting_on_timers(rt, n, n_templates, datetime.now(TZ).date() + timedelta(days=365), label)
    finally:
        rt.dispose()


def contracts_waiting_on_timers(rt: Runtime, n: int, n_templates: int, due: date, label: str) -> list[int]:
    """``n`` quote-to-cash contracts waiting on the timer of their first installment, due at the start of ``due``
    (the next one 30 days later): ``n_templates`` go through the services at ``rt``'s clock, the rest are copies
    of them. Returns the ids of those through the services."""
    plan = [{"amount": "7200.00", "due_date": due.isoformat()},
            {"amount": "16800.00", "due_date": (due + timedelta(days=30)).isoformat()}]
    ids = []
    for _ in tqdm(range(min(n_templates, n)), desc=f"{label}: contracts through the engine", unit="contract",
                  file=sys.stderr, leave=False):
        flow = Flow(rt)
        flow.to_collection(plan=plan)
        ids.append(flow.id)
    copy_contracts(rt, ids, n - len(ids), label)
    return ids


def copy_contracts(rt: Runtime, template_ids: list[int], n: int, label: str) -> None:
    """``n`` copies of the contracts ``template_ids`` with every row and a valid audit chain each
    (``web_bench.Copier``, which verifies them and moves PostgreSQL's id sequences past them)."""
    Copier(rt, random.Random(SEED)).run(template_ids, n, label)
    if rt.postgres:
        with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))


def arm(rt: Runtime, start: datetime, window: float) -> dict[int, datetime]:
    """Move every waiting timer to ``start`` + a random part of ``window`` seconds: its row and the engine's
    value in the stored state (and the instance version, as any change of the state does). One commit."""
    rng = random.Random(SEED)
    t, i = Timer.__table__, Instance.__table__
    with rt.write() as session:  # BEGIN IMMEDIATE on SQLite: the polling workers write too
        conn = session.connection()
        rows = conn.execute(select(t.c.id, t.c.instance_id, t.c.due_at).where(t.c.status == "waiting",
                                                                            t.c.spec_id == SPEC)).all()
        offsets = [window * k / max(len(rows) - 1, 1) for k in range(len(rows))]
        rng.shuffle(offsets)
        due = {row.id: start + timedelta(seconds=off) for row, off in zip(rows, offsets, strict=True)}
        conn.execute(update(t).where(t.c.id == bindparam("tid")).values(due_at=bindparam("due", type_=UTCDateTime())),
                     [{"tid": row.id, "due": due[row.id]} for row in rows])
        olds = {row.due_at.astimezone(TZ).isoformat() for row in rows}
        conn.execute(update(i).where(i.c.id == bindparam("iid"))
                     .values(state=func.replace(i.c.state, bindparam("old"), bindparam("new")),
                             version=i.c.version + 1),
                     [{"iid": row.instance_id, "old": row.due_at.astimezone(TZ).isoformat(),
                       "new": due[row.id].astimezone(TZ).isoformat()} for row in rows])
        for old in olds:  # the state spells the due moment as the row does: nothing may be left unmoved
            left = conn.scalar(select(func.count()).select_from(i).where(i.c.state.contains(old)))
            if left:
                raise SystemExit(f"arming: {left} stored state(s) still hold the old due moment {old}")
        if rt.postgres:  # as autovacuum would soon after so many changed rows: plans see the new due times
            conn.execute(text("ANALYZE timers"))
    return due


# --- one run ---------------------------------------------------------------------------------------------

@dataclass
class Result:
    backend: str
    timers: int
    workers: int
    window: float
    fired: int = 0
    lateness: list[float] = field(default_factory=list)
    rate: float = 0.0
    split: str = ""
    doubles: int = 0
    lost: int = 0
    errors: int = 0
    audit_ok: bool = False
    arming: float = 0.0  # seconds the arming transaction took; above --lead, the first timers were late for it


def _start_workers(url: str, n: int, interval: float, logs: Path, procs: list[subprocess.Popen]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LVYUE_SMTP")}
    env["LVYUE_DATABASE_URL"] = url
    for k in range(n):
        with (logs / f"w{k + 1}.log").open("w") as log:
            procs.append(subprocess.Popen([str(LVYUE), "worker", "--name", f"bench-w{k + 1}", "--interval",
                                           str(interval)], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 60
    for k, proc in enumerate(procs):
        log_file = logs / f"w{k + 1}.log"
        while READY_LINE not in log_file.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker {k + 1} did not start:\n{log_file.read_text()[-2000:]}")
            time.sleep(0.05)


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(url: str, backend: str, n: int, workers: int, window: float, lead: float, interval: float,
        stall: float) -> Result:
    result = Result(backend, n, workers, window)
    logs = Path(tempfile.mkdtemp(prefix="lvyue_timer_bench_logs_"))
    rt = Runtime(url)
    procs: list[subprocess.Popen] = []
    try:
        try:
            _start_workers(url, workers, interval, logs, procs)
            start = datetime.now(UTC) + timedelta(seconds=lead)
            due = arm(rt, start, window)
            result.arming = (datetime.now(UTC) - start).total_seconds() + lead
            _watch(rt, backend, procs, len(due), time.monotonic() + lead + window, stall)
        finally:
            _stop(procs)
        _measure(rt, result, list(due))
    finally:
        rt.dispose()
        for proc_log in logs.iterdir():
            if "Traceback" in proc_log.read_text():
                print(f"{proc_log.name} ({backend}) logged an exception:\n{proc_log.read_text()[-3000:]}",
                      file=sys.stderr)
        shutil.rmtree(logs)
    return result


def _watch(rt: Runtime, backend: str, procs: list[subprocess.Popen], n: int, end_of_window: float,
           stall: float) -> None:
    """Until every timer fired, a worker died, or nothing fired for ``stall`` seconds after the window."""
    last_count, last_change = 0, time.monotonic()
    with tqdm(total=n, desc=f"{backend}, {len(procs)} worker(s): fired", unit="timer", file=sys.stderr,
              leave=False) as bar:
        while True:
            time.sleep(0.25)
            with rt.read() as s:
                count = s.scalar(select(func.count()).select_from(Timer).where(Timer.spec_id == SPEC,
                                                                              Timer.status != "waiting"))
            bar.update(count - bar.n)
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            if count >= n or any(p.poll() is not None for p in procs):
                return
            if time.monotonic() > end_of_window and time.monotonic() - last_change > stall:
                return


def _measure(rt: Runtime, result: Result, ids: list[int]) -> None:
    with rt.read() as s:
        rows = s.execute(select(Timer.id, Timer.due_at, Timer.fired_at, Timer.status)
                         .where(Timer.id.in_(ids))).all()
        events = s.execute(select(AuditEvent.instance_id, AuditEvent.actor).where(
            AuditEvent.action == "timer", AuditEvent.spec_id == SPEC)).all()
    fired = [r for r in rows if r.status == "fired"]
    result.fired = len(fired)
    result.errors = sum(r.status == "error" for r in rows)
    result.lost = len(ids) - result.fired
    result.lateness = sorted((r.fired_at - r.due_at).total_seconds() for r in fired)
    if fired:
        span = (max(r.fired_at for r in fired) - min(r.due_at for r in rows)).total_seconds()
        result.rate = len(fired) / span if span > 0 else float("inf")
    per_instance = Counter(e.instance_id for e in events)
    result.doubles = sum(c - 1 for c in per_instance.values() if c > 1)
    actors = Counter(e.actor for e in events)
    result.split = "/".join(str(actors[f"bench-w{k + 1}"]) for k in range(result.workers))
    with tqdm(desc=f"{result.backend}: verifying the audit", unit="event", file=sys.stderr, leave=False) as bar:
        result.audit_ok = integrity.verify_all(rt, progress=bar.update).ok


# --- report ----------------------------------------------------------------------------------------------

def _pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))] if values else float("nan")


def print_table(results: list[Result], lead: float) -> None:
    head = (f"{'backend':<11}{'timers':>7}{'window s':>9}{'workers':>8}{'fired':>7}{'p50 ms':>9}{'p95 ms':>9}"
            f"{'p99 ms':>9}{'max ms':>9}{'fired/s':>9}  {'split':<12}{'doubles':>8}{'lost':>6}{'errors':>7}"
            f"{'arm s':>7}  audit")
    print(head)
    print("-" * len(head))
    for r in results:
        late = [x * 1000 for x in r.lateness]
        print(f"{r.backend:<11}{r.timers:>7}{r.window:>9g}{r.workers:>8}{r.fired:>7}{_pct(late, 50):>9.1f}"
              f"{_pct(late, 95):>9.1f}{_pct(late, 99):>9.1f}{max(late, default=float('nan')):>9.1f}{r.rate:>9.1f}"
              f"  {r.split:<12}{r.doubles:>8}{r.lost:>6}{r.errors:>7}{r.arming:>7.1f}  "
              f"{'verifies' if r.audit_ok else 'BROKEN'}")
    print("-" * len(head))
    for r in results:
        if r.arming > lead:
            print(f"note: {r.backend}, {r.workers} worker(s): arming took {r.arming:.1f} s, longer than --lead "
                  f"{lead:g} s: the first timers were due before they were armed; raise --lead")
    print("(lateness: the timer row's fired_at − due_at, fired_at being when the worker's transaction picked it; "
          "fired/s: fired ÷ (last fired_at − first due_at);\n split: timers fired per worker, from the audit actor; "
          "arm s: the arming transaction; audit: integrity.verify_all afterwards)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 timers over 5 s")
    parser.add_argument("--timers", type=int, help="how many waiting timers (default 10,000; --quick 1,000)")
    parser.add_argument("--window", type=float, help="seconds over which they fall due (default 60; --quick 5)")
    parser.add_argument("--lead", type=float, help="seconds from arming to the first due moment (default 5; "
                                                   "--quick 1.5): longer than the arming takes")
    parser.add_argument("--interval", type=float, default=1.0, help="the workers' --interval")
    parser.add_argument("--stall", type=float, default=30.0, help="give up after this long without a firing")
    parser.add_argument("--pg-workers", help="comma-separated worker counts of the PostgreSQL runs (default 2; "
                                             "--quick 1,2: one worker falling behind takes long at full size)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only (bench/run_all.py at full size)")
    args = parser.parse_args()
    pg_workers = [int(w) for w in (args.pg_workers or ("1,2" if args.quick else "2")).split(",")]
    n = args.timers or (1000 if args.quick else 10_000)
    window = args.window if args.window is not None else (5.0 if args.quick else 60.0)
    lead = args.lead if args.lead is not None else (1.5 if args.quick else 5.0)
    templates = 10 if args.quick else 20
    if not LVYUE.exists():
        raise SystemExit(f"no lvyue command beside {sys.executable}: install the project (make setup)")
    began = time.perf_counter()
    results: list[Result] = []
    if not args.no_sqlite:
        tmp = Path(tempfile.mkdtemp(prefix="lvyue_timer_bench_"))
        try:
            url = f"sqlite:///{tmp / 'bench.db'}"
            build(url, n, templates, "SQLite")
            results.append(run(url, "SQLite", n, 1, window, lead, args.interval, args.stall))
        finally:
            shutil.rmtree(tmp)
    if not args.no_postgres:
        with scratch_postgres("lvyue_timerbench") as url:
            build(url, n, templates, "PostgreSQL")
            for workers in pg_workers:
                with scratch_postgres("lvyue_timerrun", template=url) as copy:
                    results.append(run(copy, "PostgreSQL", n, workers, window, lead, args.interval, args.stall))
    print()
    print(f"Lvyue timer benchmark — {n} contracts waiting on '{SPEC}' ({templates} through the engine, the rest "
          f"copies), due over {window:g} s of the real clock from {lead:g} s after arming; real `lvyue "
          f"worker` processes, --interval {args.interval:g}; {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f}")
    print_table(results, lead)
    print(f"(whole run {time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
