"""Audit benchmark: the tamper-evident audit record at volume.

On a fresh SQLite file and a throwaway PostgreSQL database (``--backend sqlite|postgres|both``) this fills
``audit_events`` with N events (default 1,000,000; ``--quick`` 50,000; ``--events N``) and measures:

1. the fill: events are written straight into the tables (Core ``insert`` with executemany, 5,000 a batch),
   each one chained as ``audit.record`` would chain it (``audit.event_hash`` from ``GENESIS``), interleaved
   over N/20 instance chains of 20 events (a minimal ``instances`` row each, so the CSV export's outer join
   finds its business key) plus a ``system`` event every 500; the chain heads go into ``audit_chains`` and
   one anchor is taken, as the worker would;
2. ``integrity.verify_all`` over all of it: time, events/s and the memory it needs;
3. the streamed period CSV export (``compliance.period_events_csv`` for the whole year) written by a
   ``csv.writer`` into a sink that only counts: time to the first row, rows/s and memory;
4. what ``audit.record`` costs: single-event write transactions on one hot chain and on a fresh chain each,
   against the same row written with the plain ``INSERT_AUDIT`` (chain columns precomputed) and an empty
   write transaction, interleaved so that they see the same table;
5. tamper detection: one event in the middle is changed with SQL and ``verify_all`` runs again.

Memory: "RSS +MB" is the highest resident set size sampled every 5 ms during the call, minus the RSS just
before it; "maxrss +MB" is the growth of ``getrusage(RUSAGE_SELF).ru_maxrss`` over the call (0 when the
call stayed below an earlier peak of the process); "traced peak" is ``tracemalloc``'s peak of Python
allocations in a separate run of the same call, about 7 times slower (by default only up to 200,000 events;
``--tracemalloc`` / ``--no-tracemalloc``). The load average is printed: other work on the machine slows every
number.

It also prints the plans of the two big reads (``EXPLAIN QUERY PLAN`` on SQLite; on PostgreSQL ``EXPLAIN`` of
the server-side cursor's ``DECLARE`` and an ``EXPLAIN ANALYZE``). Never used for assertions. Run:
``make bench-audit`` (``--quick``; ``--events N``; ``--backend sqlite|postgres|both``).
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import event, func, insert, select, text
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scratch import scratch_postgres  # noqa: E402

from models import AuditChain, AuditEvent, Deployment, Instance, User  # noqa: E402
from workflows import config  # noqa: E402
from workflows.clock import FrozenClock  # noqa: E402
from workflows.runtime import Runtime  # noqa: E402
from workflows.schema import upgrade  # noqa: E402
from workflows.services import accounts, audit, compliance, deployments, integrity  # noqa: E402
from workflows.services.statements import INSERT_AUDIT  # noqa: E402

FAST_HASH = "pbkdf2:sha256:1000"
TZ = ZoneInfo("Asia/Shanghai")  # the runtime's business time zone
YEAR = 2025  # the events fill this business year
SETUP_AT = datetime(2024, 12, 20, 2, 0, tzinfo=UTC)  # users and deployments before it
NOW = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)  # the clock after the fill (compliance reads, record timing)
SEED = 20250101
PER_CHAIN = 20
SYSTEM_EVERY = 500  # one system-chain event in this many
WINDOW = 300  # instance chains in progress at once: their events interleave in id and time order
BATCH = 5_000
RECORDS = 5_000
TRACEMALLOC_UP_TO = 200_000
MB = 1024 * 1024

# twenty events of one contract: (action, spec_id, actor, role)
LIFE = [("start", None, "rep1", "sales_rep")] + [
    (action, spec, user, role)
    for spec, user, role in (("prepare_quote", "rep1", "sales_rep"), ("supervisor_review", "sup1", "supervisor"),
                             ("manager_review", "mgr1", "manager"), ("legal_review", "legal1", "legal"),
                             ("finance_review", "fin1", "finance"), ("draft_contract", "rep1", "sales_rep"),
                             ("sign_company", "mgr1", "manager"), ("execute_delivery", "dlv1", "delivery"),
                             ("record_payment", "fin1", "finance"))
    for action in ("claim", "complete")] + [("end", None, "system", None)]
assert len(LIFE) == PER_CHAIN
CUSTOMERS = ["华东机械 East China Machinery", "苏州精密零件 Suzhou Precision Parts",
             "宁波港通物流 Ningbo Port Logistics", "杭州绿源食品 Hangzhou Green Source Foods",
             "南京重工 Nanjing Heavy Industry"]


# --- memory ---------------------------------------------------------------------------------------------------

def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class MemWatch:
    """RSS sampled every 5 ms in a thread while the block runs, and ru_maxrss before and after it."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.start_rss = self.peak_rss = self.maxrss_growth = 0

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak_rss = max(self.peak_rss, rss())

    def __enter__(self) -> MemWatch:
        gc.collect()
        self._max0 = maxrss()
        self.start_rss = self.peak_rss = rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, rss())
        self.maxrss_growth = maxrss() - self._max0

    @property
    def growth(self) -> int:
        return self.peak_rss - self.start_rss


def traced_peak(call: Callable[[], Any]) -> tuple[int, float]:
    """tracemalloc's peak of Python allocations during ``call`` (bytes) and the call's (slowed) wall time."""
    gc.collect()
    tracemalloc.start()
    try:
        start = time.perf_counter()
        call()
        seconds = time.perf_counter() - start
        return tracemalloc.get_traced_memory()[1], seconds
    finally:
        tracemalloc.stop()


class Checkpoints:
    """RSS growth at every tenth of the work, from a progress callback: is memory flat along the way?"""

    def __init__(self, total: int, base: int) -> None:
        self.total, self.base, self.done, self.marks = total, base, 0, []
        self._next = 1

    def add(self, n: int) -> None:
        self.done += n
        while self._next <= 10 and self.done >= self.total * self._next / 10:
            self.marks.append((self._next * 10, rss() - self.base))
            self._next += 1

    def line(self) -> str:
        return "  ".join(f"{pct}%:{grow / MB:+.0f}" for pct, grow in self.marks)


# --- setting up and filling -------------------------------------------------------------------------------------

@dataclass
class Result:
    label: str
    seconds: float | None = None
    per_second: float | None = None
    us_per_event: float | None = None
    rss_mb: float | None = None
    maxrss_mb: float | None = None
    note: str = ""


@dataclass
class Backend:
    name: str
    rt: Runtime
    clock: FrozenClock
    events: int = 0  # in the table after the fill
    filled: int = 0
    chains: int = 0
    results: list[Result] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # details printed under the table
    plans: list[str] = field(default_factory=list)
    statements: list[tuple[str, Any]] = field(default_factory=list)


def runtime(url: str) -> tuple[Runtime, FrozenClock]:
    clock = FrozenClock(SETUP_AT)
    rt = Runtime(url, clock=clock, password_method=FAST_HASH)
    upgrade(rt.engine)
    accounts.ensure_demo_users(rt)
    deployments.deploy_path(rt, config.bpmn_dir())
    return rt, clock


def _event_rows(n: int, users: dict[str, int], deployment_id: int, first_instance_id: int,
                heads: dict[str, tuple[int, str]]) -> Iterator[tuple[list[dict], list[dict]]]:
    """Yields (new instance rows, event rows) a batch at a time: n events in time order, chained."""
    rng = random.Random(SEED)
    lo = datetime(YEAR, 1, 1, tzinfo=TZ).astimezone(UTC)
    step = (datetime(YEAR + 1, 1, 1, tzinfo=TZ).astimezone(UTC) - lo) / (n + 1)
    n_instance_events = n - sum(1 for i in range(n) if i % SYSTEM_EVERY == SYSTEM_EVERY // 2)
    n_chains = -(-n_instance_events // PER_CHAIN)
    active: list[list[int]] = []  # [instance id, events so far]
    made = 0
    instances: list[dict] = []
    events: list[dict] = []

    def new_chain(at: datetime) -> None:
        nonlocal made
        iid = first_instance_id + made
        made += 1
        active.append([iid, 0])
        instances.append(dict(id=iid, deployment_id=deployment_id, process_key="quote_to_cash",
                              business_key=f"Q-{YEAR}-B{made:07d}", status="completed", stage="completed",
                              customer_name=rng.choice(CUSTOMERS), started_by_id=users["rep1"], team="east",
                              started_at=at, updated_at=at, state="{}", version=1))

    for i in range(n):
        at = lo + step * (i + 1)
        if i % SYSTEM_EVERY == SYSTEM_EVERY // 2:
            chain, iid = audit.SYSTEM_CHAIN, None
            action, spec, actor, role = "user_updated", None, "admin", "admin"
            data: dict[str, Any] = {"user": rng.choice(list(users)), "changes": {"team": {"old": None,
                                                                                          "new": "east"}}}
        else:
            while len(active) < WINDOW and made < n_chains:
                new_chain(at)
            slot = rng.randrange(len(active))
            iid, k = active[slot]
            chain = audit.chain_of(iid)
            action, spec, actor, role = LIFE[k]
            if action == "start":
                data = {"data": {"customer_name": rng.choice(CUSTOMERS)}}
            elif action == "complete":
                amount = rng.randrange(5_000, 3_000_000)
                data = {"form": {"decision": "approve", "comment": "同意 ok"},
                        "changes": {"amount": {"old": None, "new": f"{amount}.00"},
                                    "discount_pct": {"old": 0, "new": rng.randrange(0, 15)}}}
            elif action == "end":
                data = {"end_event": "end_fulfilled"}
            else:
                data = {}
            active[slot][1] = k + 1
            if k + 1 == PER_CHAIN:
                active[slot] = active[-1]
                active.pop()
        row = dict(at=at, action=action, actor_id=users.get(actor), actor=actor, role=role, instance_id=iid,
                   deployment_id=deployment_id if iid else None, task_id=None, spec_id=spec, data=data)
        heads[chain] = audit.link(row, chain, heads.get(chain, (0, audit.GENESIS)))
        events.append(row)
        if len(events) >= BATCH:
            yield instances, events
            instances, events = [], []
    if events or instances:
        yield instances, events


def fill(b: Backend, n: int) -> None:
    rt = b.rt
    with rt.read() as s:
        users = dict(s.execute(select(User.username, User.id)).all())
        deployment_id = s.scalar(select(Deployment.id).where(Deployment.process_key == "quote_to_cash"))
        first_instance_id = (s.scalar(select(func.max(Instance.id))) or 0) + 1
        heads = {c: (seq, h) for c, seq, h in s.execute(select(AuditChain.chain, AuditChain.seq, AuditChain.head))}
        before = s.scalar(select(func.count()).select_from(AuditEvent)) or 0
    known = set(heads)
    n_instances = 0
    with MemWatch() as mem:
        start = time.perf_counter()
        with tqdm(total=n, desc=f"{b.name}: fill", unit="event", file=sys.stderr, leave=False) as bar:
            for instances, events in _event_rows(n, users, deployment_id, first_instance_id, heads):
                with rt.engine.begin() as conn:
                    if instances:
                        conn.execute(insert(Instance), instances)
                    conn.execute(insert(AuditEvent), events)
                n_instances += len(instances)
                bar.update(len(events))
        seconds_events = time.perf_counter() - start
        with rt.engine.begin() as conn:
            old = [{"c": c, "s": seq, "h": h} for c, (seq, h) in heads.items() if c in known]
            new = [{"chain": c, "seq": seq, "head": h, "anchored_seq": 0} for c, (seq, h) in heads.items()
                   if c not in known]
            if old:
                conn.execute(text("UPDATE audit_chains SET seq = :s, head = :h WHERE chain = :c"), old)
            for i in range(0, len(new), BATCH):
                conn.execute(insert(AuditChain), new[i:i + BATCH])
            if rt.postgres:
                conn.execute(text("SELECT setval(pg_get_serial_sequence('instances', 'id'), max(id)) FROM instances"))
        seconds = time.perf_counter() - start
    b.clock.set(NOW)
    b.events, b.filled, b.chains = before + n, n, len(heads)
    b.results.append(Result(f"fill: {n:,} events, {n_instances:,} instances, {len(heads):,} heads", seconds,
                            n / seconds, seconds / n * 1e6, mem.growth / MB, mem.maxrss_growth / MB,
                            f"events {seconds_events:.1f} s, heads {seconds - seconds_events:.1f} s"))
    start = time.perf_counter()
    info = integrity.anchor(rt)
    seconds = time.perf_counter() - start
    b.results.append(Result(f"anchor: {info.chains if info else 0:,} moved heads", seconds))
    if rt.postgres:  # autovacuum would have vacuumed (hint bits, visibility map) and analyzed it by now
        start = time.perf_counter()
        with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        b.results.append(Result("VACUUM ANALYZE (as autovacuum would)", time.perf_counter() - start))
    with rt.read() as s:
        size = (s.scalar(text("SELECT pg_total_relation_size('audit_events')")) if rt.postgres
                else s.scalar(text("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")))
    b.lines.append(f"{b.name}: {b.events:,} events ({before} from setting up) in {b.chains:,} chains; "
                   f"{'audit_events with its indexes' if rt.postgres else 'database file'} {size / MB:,.0f} MB")


# --- measuring --------------------------------------------------------------------------------------------------

class Capture:
    """The SQL text and parameters of statements that read audit_events in order (for the plans)."""

    def __init__(self, b: Backend) -> None:
        self.b = b

    def _grab(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if "FROM audit_events" in statement and "ORDER BY" in statement:
            self.b.statements.append((statement, parameters))

    def __enter__(self) -> Capture:
        event.listen(self.b.rt.engine, "before_cursor_execute", self._grab)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.b.rt.engine, "before_cursor_execute", self._grab)


def measure_verify(b: Backend, label: str, tracemalloc_run: bool) -> integrity.VerifyReport:
    rt = b.rt
    first: list[float] = []
    with MemWatch() as mem, Capture(b) if label == "verify_all" else nullcontext():
        marks = Checkpoints(b.events, mem.start_rss)
        with tqdm(total=b.events, desc=f"{b.name}: {label}", unit="event", file=sys.stderr, leave=False) as bar:
            def progress(n: int) -> None:
                if not first:
                    first.append(time.perf_counter())
                marks.add(n)
                bar.update(n)

            start = time.perf_counter()
            report = integrity.verify_all(rt, progress=progress)
            seconds = time.perf_counter() - start
    b.results.append(Result(label, seconds, report.events / seconds, seconds / report.events * 1e6,
                            mem.growth / MB, mem.maxrss_growth / MB,
                            f"first chain after {first[0] - start:.2f} s; {len(report.breaks)} break(s)"))
    b.lines.append(f"{b.name}: {label}: {report.summary()[:300]}")
    b.lines.append(f"{b.name}: {label}: RSS growth (MB) at each tenth of the events: {marks.line()}")
    if tracemalloc_run:
        peak, slow = traced_peak(lambda: integrity.verify_all(rt))
        b.results.append(Result(f"{label} under tracemalloc (separate run)", slow, report.events / slow,
                                note=f"traced peak {peak / MB:.1f} MB"))
    return report


class CountingSink:
    """A file for csv.writer that keeps nothing: it counts characters."""

    def __init__(self) -> None:
        self.chars = 0

    def write(self, s: str) -> int:
        self.chars += len(s)
        return len(s)


def export_csv(rt: Runtime, user: accounts.UserView, start: date, end: date,
               progress: Callable[[int], None] | None = None) -> tuple[int, int, float]:
    """Rows and characters written, and the seconds to the first row."""
    sink = CountingSink()
    writer = csv.writer(sink)
    writer.writerow(compliance.CSV_COLUMNS)
    t0 = time.perf_counter()
    first = 0.0
    rows = 0
    for row in compliance.period_events_csv(rt, user, start, end):
        if not rows:
            first = time.perf_counter() - t0
        writer.writerow(row)
        rows += 1
        if progress and rows % 1000 == 0:
            progress(1000)
    if progress:
        progress(rows % 1000)
    return rows, sink.chars, first


def measure_csv(b: Backend, tracemalloc_run: bool) -> None:
    rt = b.rt
    user = accounts.get_user(rt, "audit1")
    start_day, end_day = date(YEAR, 1, 1), date(YEAR, 12, 31)
    with MemWatch() as mem, Capture(b):
        marks = Checkpoints(b.filled, mem.start_rss)
        with tqdm(total=b.filled, desc=f"{b.name}: period CSV", unit="row", file=sys.stderr, leave=False) as bar:
            def progress(n: int) -> None:
                marks.add(n)
                bar.update(n)

            t0 = time.perf_counter()
            rows, chars, first = export_csv(rt, user, start_day, end_day, progress)
            seconds = time.perf_counter() - t0
    b.results.append(Result(f"period CSV {start_day}..{end_day}", seconds, rows / seconds, seconds / rows * 1e6,
                            mem.growth / MB, mem.maxrss_growth / MB,
                            f"first row after {first:.2f} s; {rows:,} rows, {chars / MB:,.0f} MB of CSV"))
    b.lines.append(f"{b.name}: period CSV: RSS growth (MB) at each tenth of the rows: {marks.line()}")
    if tracemalloc_run:
        peak, slow = traced_peak(lambda: export_csv(rt, user, start_day, end_day))
        b.results.append(Result("period CSV under tracemalloc (separate run)", slow, rows / slow,
                                note=f"traced peak {peak / MB:.1f} MB"))


def measure_tamper(b: Backend) -> None:
    rt = b.rt
    with rt.read() as s:
        lo, hi = s.execute(select(func.min(AuditEvent.id), func.max(AuditEvent.id))).one()
        target = s.execute(select(AuditEvent.id, AuditEvent.chain, AuditEvent.seq, AuditEvent.actor)
                           .where(AuditEvent.id >= (lo + hi) // 2).order_by(AuditEvent.id).limit(1)).one()
    with rt.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE id = :id"), {"id": target.id})
    b.lines.append(f"{b.name}: tampered: event id {target.id} ({target.chain} #{target.seq}), actor "
                   f"{target.actor!r} -> 'mallory'")
    report = measure_verify(b, "verify_all after tampering", tracemalloc_run=False)
    for brk in report.breaks[:5]:
        b.lines.append(f"{b.name}:   break found: [{brk.kind}] {brk}")
    hit = [brk for brk in report.breaks if brk.event_id == target.id and brk.kind == "altered"]
    b.lines.append(f"{b.name}:   the altered event was {'found' if hit else 'NOT found'}; "
                   f"{len(report.breaks) - len(hit)} other break(s)")
    with rt.engine.begin() as conn:  # put it back for the steps after
        conn.execute(text("UPDATE audit_events SET actor = :a WHERE id = :id"), {"a": target.actor, "id": target.id})


def measure_record(b: Backend, n: int) -> None:
    """Single-event write transactions, the variants interleaved so that each sees the same table and WAL."""
    rt, clock = b.rt, b.clock
    data = {"form": {"decision": "approve", "comment": "同意 ok"},
            "changes": {"amount": {"old": None, "new": "125000.00"}, "discount_pct": {"old": 0, "new": 5}}}
    fake = "f" * 64
    tag = uuid.uuid4().hex[:6]

    def hot(i: int) -> None:
        with rt.write() as s:
            audit.record(s, clock.now(), "bench", actor="bench", chain=f"bench:{tag}:hot", data=data)

    def fresh(i: int) -> None:
        with rt.write() as s:
            audit.record(s, clock.now(), "bench", actor="bench", chain=f"bench:{tag}:{i}", data=data)

    def plain(i: int) -> None:
        with rt.write() as s:
            s.connection().execute(INSERT_AUDIT, dict(
                at=clock.now(), action="bench", actor_id=None, actor="bench", role=None, instance_id=None,
                deployment_id=None, task_id=None, spec_id=None, data=data, chain=f"bench:{tag}:plain", seq=i + 1,
                prev_hash=fake, hash=fake))

    def empty(i: int) -> None:
        with rt.write() as s:
            s.execute(text("SELECT 1"))

    variants = [("audit.record, one hot chain", hot), ("audit.record, a fresh chain each", fresh),
                ("plain INSERT_AUDIT, chain columns given", plain), ("empty write transaction", empty)]
    samples: dict[str, list[float]] = {label: [] for label, _ in variants}
    for i in tqdm(range(n), desc=f"{b.name}: record", unit="round", file=sys.stderr, leave=False):
        for label, call in variants:
            t0 = time.perf_counter()
            call(i)
            samples[label].append(time.perf_counter() - t0)
    plain_median = statistics.median(samples["plain INSERT_AUDIT, chain columns given"])
    for label, _ in variants:
        xs = sorted(samples[label])
        med, p95 = statistics.median(xs), xs[int(len(xs) * 0.95)]
        extra = f"; {(med - plain_median) * 1e6:+.0f} µs vs plain" if label.startswith("audit") else ""
        b.results.append(Result(f"{label} ({n:,} txns)", sum(xs), n / sum(xs), med * 1e6,
                                note=f"median µs/event; p95 {p95 * 1e6:.0f} µs{extra}"))
    # the same without the commit: many events in one transaction
    for label, chain in (("audit.record, one chain, 5,000 in one txn", f"bench:{tag}:bulk"),):
        t0 = time.perf_counter()
        with rt.write() as s:
            for _ in range(5_000):
                audit.record(s, clock.now(), "bench", actor="bench", chain=chain, data=data)
        seconds = time.perf_counter() - t0
        b.results.append(Result(label, seconds, 5_000 / seconds, seconds / 5_000 * 1e6, note="mean µs/event"))
    t0 = time.perf_counter()
    with rt.write() as s:
        conn = s.connection()
        for i in range(5_000):
            conn.execute(INSERT_AUDIT, dict(
                at=clock.now(), action="bench", actor_id=None, actor="bench", role=None, instance_id=None,
                deployment_id=None, task_id=None, spec_id=None, data=data, chain=f"bench:{tag}:plainbulk", seq=i + 1,
                prev_hash=fake, hash=fake))
    seconds = time.perf_counter() - t0
    b.results.append(Result("plain INSERT_AUDIT, 5,000 in one txn", seconds, 5_000 / seconds, seconds / 5_000 * 1e6,
                            note="mean µs/event"))


def explain(b: Backend) -> None:
    rt = b.rt
    seen: dict[str, Any] = {}
    for statement, params in b.statements:
        seen.setdefault(statement, params)
    out = [f"=== {b.name}: plans of the streamed reads ==="]
    with rt.engine.connect() as conn:
        for statement, params in seen.items():
            flat = " ".join(statement.split())
            out.append(f"-- {flat[flat.upper().find(' FROM ') + 1:][:200]}")
            if rt.postgres:
                out.append("   EXPLAIN DECLARE c CURSOR FOR … (the plan the server-side cursor gets):")
                out += ["     " + r[0] for r in conn.exec_driver_sql("EXPLAIN DECLARE c CURSOR FOR " + statement,
                                                                     params)]
                out.append("   EXPLAIN (ANALYZE, BUFFERS) of the plain SELECT (planned for all rows):")
                out += ["     " + r[0] for r in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement,
                                                                     params)]
            else:
                plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
                depth: dict[int, int] = {0: -1}
                for node, parent, _, detail in plan:
                    depth[node] = depth.get(parent, -1) + 1
                    out.append("     " + "  " * depth[node] + detail)
        conn.rollback()
    b.plans = out


def run_backend(name: str, url: str, n: int, records: int, tracemalloc_run: bool) -> Backend:
    rt, clock = runtime(url)
    b = Backend(name, rt, clock)
    b.lines.append(f"{name}: load average at the start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPU(s)")
    try:
        fill(b, n)
        measure_verify(b, "verify_all", tracemalloc_run)
        measure_csv(b, tracemalloc_run)
        measure_tamper(b)
        measure_record(b, records)
        explain(b)
        b.lines.append(f"{name}: load average at the end {os.getloadavg()[0]:.2f}")
    finally:
        rt.dispose()
    return b


def print_backend(b: Backend, n: int) -> None:
    print()
    print(f"Lvyue audit benchmark — {b.name}, {n:,} events filled")
    width = max(len(r.label) for r in b.results)
    print(f"{'measure':<{width}}  {'wall s':>8} {'per s':>10} {'µs/event':>9} {'RSS +MB':>8} {'maxrss +MB':>10}  notes")
    print("-" * (width + 80))

    def num(v: float | None, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    for r in b.results:
        print(f"{r.label:<{width}}  {num(r.seconds, '8.2f'):>8} {num(r.per_second, ',.0f'):>10} "
              f"{num(r.us_per_event, '9.1f'):>9} {num(r.rss_mb, '8.1f'):>8} {num(r.maxrss_mb, '10.1f'):>10}  {r.note}")
    print("-" * (width + 80))
    for line in b.lines:
        print(line)
    print()
    for line in b.plans:
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, help="how many events to fill (default 1,000,000; --quick 50,000)")
    parser.add_argument("--quick", action="store_true", help="50,000 events")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--records", type=int, default=RECORDS, help=f"transactions per audit.record variant "
                                                                     f"(default {RECORDS:,})")
    parser.add_argument("--tracemalloc", action=argparse.BooleanOptionalAction,
                        help=f"repeat verify_all and the CSV export under tracemalloc (about 7 times slower; default: "
                             f"only up to {TRACEMALLOC_UP_TO:,} events)")
    args = parser.parse_args()
    n = args.events or (50_000 if args.quick else 1_000_000)
    if n < 1_000:
        parser.error("--events: at least 1000")
    tracemalloc_run = args.tracemalloc if args.tracemalloc is not None else n <= TRACEMALLOC_UP_TO
    done: list[Backend] = []

    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="lvyue_audit_bench_") as tmp:
            done.append(run_backend("SQLite", f"sqlite:///{tmp}/bench.db", n, args.records, tracemalloc_run))

    if args.backend in ("postgres", "both"):
        with scratch_postgres("lvyue_bench_audit") as url:
            done.append(run_backend("PostgreSQL", url, n, args.records, tracemalloc_run))

    for b in done:
        print_backend(b, n)
    print()
    print("(RSS +MB: highest RSS sampled every 5 ms during the call minus RSS before it; maxrss +MB: growth of "
          "ru_maxrss over the call,\n 0 when it stayed under an earlier peak; traced peak: tracemalloc's peak of "
          "Python allocations in a separate run;\n record rows: µs/event is the median of single-event write "
          "transactions, the variants interleaved round by round)")


if __name__ == "__main__":
    main()
