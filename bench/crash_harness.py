"""Crash harness: SIGKILL the web server or a timer worker at random moments while they complete tasks and fire
timers, start it again, N times, and prove nothing was torn.

Every step commits its workflow state, rows and audit events in one transaction; this is the evidence that it
holds when a process dies with no chance to clean up. The harness:

* prepares contracts: some waiting on a supervisor review (client threads then drive them, and contracts they
  start themselves, through the whole process over the JSON API, payments included), and many whose first
  installment timer fell due two days ago (the timer workers' backlog);
* runs gunicorn (2 workers, bearer tokens of one service account per role) and ``lvyue worker`` processes, each
  in a process group of its own;
* N times: picks a timer worker and the web server in turn (the web server when no timer is due: an idle worker
  is no test), waits until it is working again, then waits a random (seeded)
  delay drawn around the measured time of one completion (web) or of firing one instance's timers (worker) and
  SIGKILLs the whole group (gunicorn master and workers together), records what was in flight, restarts it;
* a client whose request got no answer retries it once the server is back: 200 (it was not recorded) or 409
  (it was, whole) are the only acceptable answers;
* finally lets the workers drain the due timers, stops everything and checks: the consistency checker
  (``workflows.services.consistency``: every instance's stored workflow agrees with its rows, so each is before
  or after its step; the audit chains verify), every due timer fired exactly once (one audit event per timer row,
  none left waiting or in error), every completion a client saw succeed recorded exactly once by that client.

On PostgreSQL each process connects with its own ``application_name`` (``PGAPPNAME``), so the harness can tell
whether the process it kills holds an open (write) transaction at that moment. Run:
``.venv/bin/python bench/crash_harness.py --kills 100`` (a scratch PostgreSQL database unless ``--database-url``).
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text
from tqdm import tqdm

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

from models import AuditEvent, Instance, TaskRow, Timer  # noqa: E402
from tests.flow import Flow, quote  # noqa: E402
from tests.processes import (  # noqa: E402
    Processes,
    api,
    free_port,
    gunicorn_command,
    kill_group,
    start_group,
    timer_worker_command,
)
from workflows import config  # noqa: E402
from workflows.clock import FrozenClock  # noqa: E402
from workflows.demo import sample_pdf  # noqa: E402
from workflows.runtime import Runtime  # noqa: E402
from workflows.schema import upgrade  # noqa: E402
from workflows.services import accounts, attachments, consistency, deployments, tokens  # noqa: E402
from workflows.services.errors import NotFound, ServiceError  # noqa: E402

TZ = ZoneInfo(config.business_tz())
FAST_HASH = "pbkdf2:sha256:1000"
TIMER_SPEC = "wait_installment_due"
READY_LINE = "LVYUE_SMTP_HOST is not set"  # a worker logs it once, just before its first pass
PATIENCE = 120.0  # seconds: a bound for a hang (a server that never comes back), not a speed requirement
ROLES = ("sales_rep", "supervisor", "manager", "director", "legal", "finance", "delivery", "after_sales")


def _today():
    return datetime.now(TZ).date()


# the file each task with a file field takes: field, file name
EVIDENCE = {"customer_signature": ("customer_evidence", "signed-contract.pdf"),
            "customer_acceptance": ("acceptance_certificate", "acceptance-certificate.pdf")}
EVIDENCE_PDF = sample_pdf("Crash harness", "Signed contract / acceptance certificate")


def form_data(spec_id: str, instance_id: int) -> dict | None:
    """What a client enters on each task of the happy path (a small quote: the supervisor alone approves it). The
    first installment is already due when collection starts, the second a year away: the contract then rests."""
    today = _today()
    plan = [{"amount": "7200.00", "due_date": (today - timedelta(days=1)).isoformat()},
            {"amount": "16800.00", "due_date": (today + timedelta(days=365)).isoformat()}]
    return {
        "prepare_quote": quote(customer_name=f"华东机械 #{instance_id}"),  # a customer of its own (no 抢单 refusal)
        "supervisor_review": {"supervisor_decision": "approve"},
        "draft_contract": {"contract_no": f"HT-{instance_id}", "contract_terms": "Standard terms",
                           "payment_plan": plan, "sign_by": "2026-12-01"},
        "legal_contract_check": {"contract_check_decision": "approve"},
        "sign_company": {"company_signatory": "刘洋", "company_signed_on": "2026-11-25"},
        "customer_signature": {"deal_confirmation": "signed_contract", "customer_signatory": "客户代表",
                               "customer_signed_on": "2026-11-26"},  # + the signed copy (EVIDENCE)
        "file_contract": {"filing_no": f"BA-{instance_id}", "filed_on": "2026-11-27"},
        "execute_delivery": {"delivered_on": "2026-12-10"},
        "customer_acceptance": {"acceptance": "accepted"},
        "service_onboarding": {"service_contact": "吴芳", "warranty_until": "2027-12-10"},
        "record_payment": {"amount_received": "7200.00", "received_on": today.isoformat(),
                           "payment_reference": f"BANK-{instance_id}"},
    }.get(spec_id)


# --- results ---------------------------------------------------------------------------------------------------

@dataclass
class Kill:
    target: str  # web | worker
    delay: float  # seconds after the target was working again
    requests_in_flight: int  # client requests without an answer yet (web kills)
    open_transactions: int | None  # the target's database sessions inside a transaction (PostgreSQL)
    writing: int | None  # ... of which had written something (a transaction id assigned)
    timers_due: int  # due timers left at the kill (worker kills: was there work?)


@dataclass
class Outcomes:
    ok: dict[int, int] = field(default_factory=dict)  # task id -> token user id, answered 200 (at once)
    lost_then_200: list[int] = field(default_factory=list)  # no answer; the retry completed it
    lost_then_409: list[int] = field(default_factory=list)  # no answer; it had been recorded
    conflicts: list[tuple[int, dict]] = field(default_factory=list)  # 409 on a first try: never expected
    unexpected: list[tuple[int, int, dict]] = field(default_factory=list)  # (task id, status, body)
    refused: int = 0  # not sent: the server was down
    starts: int = 0
    starts_lost: int = 0
    lost_retries: int = 0  # retries that were themselves cut off by a kill
    by_user: dict[int, int] = field(default_factory=dict)  # task id -> user id of the client that completed it


@dataclass
class Result:
    backend: str
    kills: list[Kill]
    outcomes: Outcomes
    timers_total: int
    timers_fired: int
    instances: int
    failures: list[str]
    seconds: float
    completion_s: float
    timer_s: float
    report: consistency.ConsistencyReport | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def table(self) -> str:
        lines = [f"crash harness on {self.backend}: {len(self.kills)} kill(s) in {self.seconds:.0f} s "
                 f"(one completion ≈ {self.completion_s * 1000:.0f} ms, one instance's timers ≈ "
                 f"{self.timer_s * 1000:.0f} ms)", ""]
        lines.append(f"{'kills':<34}{'web':>8}{'worker':>8}{'total':>8}")

        def row(label: str, pick) -> None:
            web = sum(1 for k in self.kills if k.target == "web" and pick(k))
            wrk = sum(1 for k in self.kills if k.target == "worker" and pick(k))
            lines.append(f"{label:<34}{web:>8}{wrk:>8}{web + wrk:>8}")

        row("killed", lambda k: True)
        row("with client requests in flight", lambda k: k.requests_in_flight > 0)
        if any(k.open_transactions is not None for k in self.kills):
            row("with a database transaction open", lambda k: bool(k.open_transactions))
            row("... that had written rows", lambda k: bool(k.writing))
        row("with due timers left", lambda k: k.timers_due > 0)
        in_flight = sum(k.requests_in_flight for k in self.kills if k.target == "web")
        o = self.outcomes
        lines += ["", f"{'outcomes':<34}{'count':>8}",
                  f"{'requests in flight when killed':<34}{in_flight:>8}",
                  f"{'completions answered 200':<34}{len(o.ok):>8}",
                  f"{'lost, retry 200 (not recorded)':<34}{len(o.lost_then_200):>8}",
                  f"{'lost, retry 409 (recorded whole)':<34}{len(o.lost_then_409):>8}",
                  f"{'retries cut off by another kill':<34}{o.lost_retries:>8}",
                  f"{'refused (server down, not sent)':<34}{o.refused:>8}",
                  f"{'contracts started by clients':<34}{o.starts:>8}",
                  f"{'... start answer lost':<34}{o.starts_lost:>8}",
                  f"{'unexpected 409 / other status':<34}{len(o.conflicts):>4} /{len(o.unexpected):>2}",
                  f"{'due timers fired / total':<34}{self.timers_fired:>4} /{self.timers_total}",
                  f"{'instances checked':<34}{self.instances:>8}",
                  "", (self.report.summary() if self.report else "not checked"),
                  "PASS" if self.ok else "FAIL:\n  " + "\n  ".join(self.failures[:30])]
        return "\n".join(lines)


# --- the system under test --------------------------------------------------------------------------------------

class System:
    """gunicorn and the timer workers, each in a process group of its own, killed and started again."""

    def __init__(self, url: str, folder: Path, web_workers: int, timer_workers: int, postgres: bool) -> None:
        self.url, self.folder, self.postgres = url, folder, postgres
        self.procs = Processes(folder)
        self.port = free_port()
        self.secret = os.urandom(32).hex()
        self.web_workers = web_workers
        self.names = [f"crash-worker-{i + 1}" for i in range(timer_workers)]
        self.running: dict[str, object] = {}
        self.log_sizes: dict[str, int] = {}
        self.up = threading.Event()  # the web server answers (clients wait on it after a failed request)

    def start(self, name: str) -> None:
        if name == "web":
            args, env = gunicorn_command(self.url, self.port, self.web_workers, self.folder / "access.log", self.secret)
            env["LVYUE_ALLOW_DEMO_USERS"] = "1"  # the prepared contracts are made by the demo users
        else:
            args, env = timer_worker_command(self.url, name)
        log = self.folder / f"{name}.log"
        self.log_sizes[name] = log.stat().st_size if log.exists() else 0
        self.running[name] = start_group(self.procs, name, args, {**env, "PGAPPNAME": f"lvyue-{name}"})

    def kill(self, name: str) -> None:
        if name == "web":
            self.up.clear()
        kill_group(self.procs, self.running.pop(name))

    def alive(self) -> None:
        for name, proc in self.running.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.procs.log(name)}")

    def worker_ready(self, name: str) -> bool:
        log = self.folder / f"{name}.log"
        with log.open("rb") as f:
            f.seek(self.log_sizes[name])
            return READY_LINE.encode() in f.read()

    def wait_web(self, token: str) -> None:
        deadline = time.monotonic() + PATIENCE
        while True:
            self.alive()
            try:
                status, _ = api(self.port, token, "GET", "/tasks?scope=mine&per_page=1")
                if status == 200:
                    self.up.set()
                    return
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the web server did not come back:\n{self.procs.log('web')}")
            time.sleep(0.05)

    def wait_worker(self, name: str) -> None:
        deadline = time.monotonic() + PATIENCE
        while not self.worker_ready(name):
            self.alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{self.procs.log(name)}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.procs.stop()


# --- clients ----------------------------------------------------------------------------------------------------

class Clients:
    """Threads that drive contracts through the process over HTTP, each its own contracts (so a 409 can only
    mean a completion that was already recorded), starting new ones when theirs rest."""

    def __init__(self, rt: Runtime, system: System, bearer: dict[str, tuple[int, str]], pools: list[list[int]]):
        self.rt, self.system, self.bearer = rt, system, bearer
        self.pools = [deque(p) for p in pools]
        self.outcomes = Outcomes()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.latencies: deque[float] = deque(maxlen=200)
        self.completed = 0  # answered 200, for "the server works again"
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True, name=f"client-{k}")
                        for k in range(len(pools))]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(PATIENCE)
        if any(t.is_alive() for t in self.threads):
            raise RuntimeError("a client thread hung")

    def completion_time(self) -> float:
        with self.lock:
            return statistics.median(self.latencies) if self.latencies else 0.1

    def _send(self, token: str, method: str, path: str, body: dict | None) -> tuple[int, dict] | str:
        """The answer, or 'refused' (never sent: the server is down) or 'lost' (sent, no answer)."""
        with self.lock:
            self.in_flight += 1
        began = time.monotonic()
        try:
            answer = api(self.system.port, token, method, path, body)
        except urllib.error.URLError as err:
            return "refused" if isinstance(err.reason, ConnectionRefusedError) else "lost"
        except ConnectionRefusedError:
            return "refused"
        except (OSError, http.client.HTTPException):
            return "lost"
        finally:
            with self.lock:
                self.in_flight -= 1
        if answer[0] == 200 and method == "POST":
            with self.lock:
                self.latencies.append(time.monotonic() - began)
                self.completed += 1
        return answer

    def _wait_up(self) -> bool:
        while not self.stop.is_set():
            if self.system.up.wait(0.2):
                return True
        return False

    def _run(self, k: int) -> None:
        pool = self.pools[k]
        while not self.stop.is_set():
            if not pool:
                self._start_contract(pool)
                continue
            instance_id = pool[0]
            with self.rt.read() as s:
                open_tasks = s.execute(select(TaskRow.id, TaskRow.spec_id, TaskRow.role)
                                       .where(TaskRow.instance_id == instance_id, TaskRow.status == "open")
                                       .order_by(TaskRow.id)).all()
            work = [(t, form_data(t.spec_id, instance_id)) for t in open_tasks]
            work = [(t, data) for t, data in work if data is not None and t.role in self.bearer]
            if not work:  # it rests on a timer a year away, or has ended
                pool.popleft()
                continue
            task, data = work[0]
            if task.spec_id in EVIDENCE:
                data = self._with_evidence(task, data)
                if data is None:
                    time.sleep(0.05)
                    continue
            self._complete(task.id, task.role, data)

    def _with_evidence(self, task, data: dict) -> dict | None:
        """The API takes no files: the file the task's form needs is uploaded through the service layer (as the
        browser would), then the completion names it. None if the task moved on meanwhile (a retried completion)."""
        field_name, file_name = EVIDENCE[task.spec_id]
        user = accounts.get_user_by_id(self.rt, self.bearer[task.role][0])
        try:
            reference = attachments.attach_file(self.rt, task.id, user, field_name, file_name, EVIDENCE_PDF)
        except ServiceError:
            return None
        return {**data, field_name: reference}

    def _start_contract(self, pool: deque[int]) -> None:
        user_id, token = self.bearer["sales_rep"]
        answer = self._send(token, "POST", "/instances", {"process_key": "quote_to_cash"})
        if answer == "refused" or (answer == "lost" and self.stop.is_set()):
            self._wait_up()
            return
        with self.lock:
            if answer == "lost":  # maybe started, maybe not: the checker sees it either way
                self.outcomes.starts_lost += 1
                return
            status, body = answer
            if status == 201:
                self.outcomes.starts += 1
                pool.append(body["instance_id"])
            else:
                self.outcomes.unexpected.append((0, status, body))

    def _complete(self, task_id: int, role: str, data: dict) -> None:
        user_id, token = self.bearer[role]
        path, body = f"/tasks/{task_id}/complete", {"data": data}
        lost = False
        while True:
            answer = self._send(token, "POST", path, body)
            if answer not in ("refused", "lost"):
                break
            if answer == "lost":
                if lost:
                    with self.lock:
                        self.outcomes.lost_retries += 1
                lost = True
            elif not lost:
                with self.lock:
                    self.outcomes.refused += 1
                if self.stop.is_set():
                    return  # nothing was sent, and the run is over
            self._wait_up()  # a lost completion is retried however long that takes: its outcome must be known
        status, reply = answer
        with self.lock:
            o = self.outcomes
            if status == 200:
                if lost:
                    o.lost_then_200.append(task_id)
                else:
                    o.ok[task_id] = user_id
                o.by_user[task_id] = user_id
            elif status == 409 and lost:
                o.lost_then_409.append(task_id)
                o.by_user[task_id] = user_id
            elif status == 409:
                o.conflicts.append((task_id, reply))
            else:
                o.unexpected.append((task_id, status, reply))
        if status not in (200, 409):
            time.sleep(0.1)  # do not spin on a task the server refuses; the run reports it


# --- preparing ---------------------------------------------------------------------------------------------------

def prepare(url: str, n_review: int, n_timers: int,
            n_clients: int) -> tuple[list[list[int]], dict[str, tuple[int, str]], list[int]]:
    """Contracts for the clients (at the supervisor review), contracts waiting on due timers (their ids), and a
    service account with a bearer token per role."""
    from timer_bench import contracts_waiting_on_timers

    clock = FrozenClock(datetime.now(TZ) - timedelta(days=30))  # made a month ago; the installment fell due since
    rt = Runtime(url, clock=clock, password_method=FAST_HASH)
    try:
        upgrade(rt.engine)
        accounts.ensure_demo_users(rt)
        deployments.deploy_path(rt, config.bpmn_dir(), comment="crash harness")
        with rt.read() as s:
            before = set(s.scalars(select(Instance.id)))
        contracts_waiting_on_timers(rt, n_timers, min(5, n_timers), _today() - timedelta(days=2), "crash harness")
        with rt.read() as s:
            timer_ids = sorted(set(s.scalars(select(Instance.id))) - before)
        clock.set(datetime.now(TZ))
        review = []
        for _ in range(n_review):
            flow = Flow(rt)
            flow.act("prepare_quote", "rep1", quote())
            review.append(flow.id)
        bearer = {}
        for role in ROLES:
            name = f"crash-{role.replace('_', '-')}"
            try:
                user_id = accounts.get_user(rt, name).id
            except NotFound:
                user_id = accounts.create_service_account(rt, name, None, [role], actor=None).id
            bearer[role] = (user_id, tokens.issue_token(rt, user_id, "crash harness", actor=None))
    finally:
        rt.dispose()
    pools = [review[k::n_clients] for k in range(n_clients)]
    return pools, bearer, timer_ids


# --- running ------------------------------------------------------------------------------------------------------

def _due_timers(rt: Runtime) -> int:
    with rt.read() as s:
        return s.scalar(select(func.count()).select_from(Timer).where(Timer.status == "waiting",
                                                                      Timer.due_at <= datetime.now(TZ))) or 0


def _fired(rt: Runtime) -> int:
    with rt.read() as s:
        return s.scalar(select(func.count()).select_from(Timer).where(Timer.status == "fired")) or 0


def _sessions(rt: Runtime, name: str) -> tuple[int | None, int | None]:
    """The open and the writing transactions of process ``name`` (PostgreSQL only)."""
    if not rt.postgres:
        return None, None
    with rt.engine.connect() as conn:
        row = conn.execute(text("SELECT count(*) FILTER (WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()), "
                                "count(*) FILTER (WHERE backend_xid IS NOT NULL) FROM pg_stat_activity "
                                "WHERE application_name = :app"), {"app": f"lvyue-{name}"}).one()
    return row[0], row[1]


def run(url: str, kills: int, seed: int, folder: Path, n_clients: int = 4, web_workers: int = 2,
        timer_workers: int = 1, n_timers: int | None = None, n_review: int | None = None,
        progress: bool = True) -> Result:
    began = time.monotonic()
    rng = random.Random(seed)
    n_timers = n_timers if n_timers is not None else 200 + 60 * kills
    n_review = n_review if n_review is not None else 2 * n_clients
    pools, bearer, timer_ids = prepare(url, n_review, n_timers, n_clients)
    rt = Runtime(url, password_method=FAST_HASH)
    system = System(url, folder, web_workers, timer_workers, rt.postgres)
    clients = Clients(rt, system, bearer, pools)
    record: list[Kill] = []
    token = bearer["sales_rep"][1]
    timer_s = 0.02
    try:
        system.start("web")
        system.wait_web(token)
        clients.start()
        for name in system.names:
            system.start(name)
            system.wait_worker(name)
        # one instance's timers: measured over a second of the backlog being fired
        time.sleep(1.0)  # past the first, cold, instance
        t0, f0 = time.monotonic(), _fired(rt)
        time.sleep(1.0)
        fired = _fired(rt) - f0
        if fired:
            timer_s = (time.monotonic() - t0) * len(system.names) / fired
        bar = tqdm(total=kills, desc="kills", unit="kill", file=sys.stderr, disable=not progress)
        for i in range(kills):
            # timer workers and the web server in turn, a timer worker first while its backlog is largest (the
            # moments are random); a worker whose backlog is gone would be killed idle, which tests nothing: the
            # web server is killed instead
            target = rng.choice(system.names) if i % 2 == 0 else "web"
            if target != "web" and not _due_timers(rt):
                target = "web"
            if target == "web":
                done = clients.completed
                deadline = time.monotonic() + PATIENCE
                while clients.completed == done and time.monotonic() < deadline:  # it completes tasks again
                    system.alive()
                    time.sleep(0.01)
                delay = rng.uniform(0.0, 3.0) * clients.completion_time()
            else:
                done, deadline = _fired(rt), time.monotonic() + 10
                while _due_timers(rt) and _fired(rt) == done and time.monotonic() < deadline:  # it fires again
                    system.alive()
                    time.sleep(0.01)
                delay = rng.uniform(0.0, 3.0) * timer_s
            time.sleep(delay)
            open_tx, writing = _sessions(rt, target)
            with clients.lock:
                in_flight = clients.in_flight if target == "web" else 0
            system.kill(target)
            record.append(Kill("web" if target == "web" else "worker", delay, in_flight, open_tx, writing,
                               _due_timers(rt)))
            system.start(target)
            if target == "web":
                system.wait_web(token)
            else:
                system.wait_worker(target)
            bar.update(1)
        bar.close()
        clients.join()
        last, moved = _fired(rt), time.monotonic()
        while _due_timers(rt) and time.monotonic() - moved < PATIENCE:  # the backlog drains, unless it stalls
            system.alive()
            time.sleep(0.2)
            if _fired(rt) != last:
                last, moved = _fired(rt), time.monotonic()
    finally:
        clients.stop.set()
        system.stop()
    report = consistency.check_all(rt)
    failures = [str(p) for p in report.problems]
    failures += verify(rt, clients.outcomes, timer_ids)
    with rt.read() as s:
        total = s.scalar(select(func.count()).select_from(Timer).where(Timer.instance_id.in_(timer_ids),
                                                                       Timer.spec_id == TIMER_SPEC)) or 0
        fired = s.scalar(select(func.count()).select_from(Timer).where(Timer.instance_id.in_(timer_ids),
                                                                       Timer.spec_id == TIMER_SPEC,
                                                                       Timer.status == "fired")) or 0
    rt.dispose()
    return Result("PostgreSQL" if rt.postgres else "SQLite", record, clients.outcomes, total, fired,
                  report.instances, failures, time.monotonic() - began, clients.completion_time(), timer_s, report)


def verify(rt: Runtime, o: Outcomes, timer_ids: list[int]) -> list[str]:
    """What the clients and the timer backlog must show after the run; each failure as a sentence."""
    failures = []
    for task_id, status, body in o.unexpected:
        failures.append(f"task {task_id}: answered {status}: {body}")
    for task_id, body in o.conflicts:
        failures.append(f"task {task_id}: 409 on a first try (no other client touches it): {body}")
    with rt.read() as s:
        due_left = s.scalar(select(func.count()).select_from(Timer).where(Timer.status == "waiting",
                                                                          Timer.due_at <= datetime.now(TZ)))
        if due_left:
            failures.append(f"{due_left} due timer(s) never fired (lost)")
        errors = s.execute(select(Timer.id, Timer.last_error).where(Timer.status == "error")).all()
        failures += [f"timer {t.id} in error: {t.last_error}" for t in errors]
        # each of the backlog's timers fired exactly once: one row fired, one audit event, per contract
        rows = Counter(s.scalars(select(Timer.instance_id).where(Timer.instance_id.in_(timer_ids),
                                                                 Timer.spec_id == TIMER_SPEC,
                                                                 Timer.status == "fired")))
        events = Counter(s.scalars(select(AuditEvent.instance_id).where(AuditEvent.instance_id.in_(timer_ids),
                                                                        AuditEvent.action == "timer",
                                                                        AuditEvent.spec_id == TIMER_SPEC)))
        for instance_id in timer_ids:
            if rows[instance_id] != 1 or events[instance_id] != 1:
                failures.append(f"instance {instance_id}: its due installment timer has {rows[instance_id]} fired "
                                f"row(s) and {events[instance_id]} firing event(s), not one each")
        # every completion a client knows of (answered 200, or lost and then found recorded) is recorded once,
        # by that client
        seen = list(o.by_user)
        for start in range(0, len(seen), 500):
            ids = seen[start:start + 500]
            got = {r.id: r for r in s.execute(select(TaskRow.id, TaskRow.status, TaskRow.completed_by_id)
                                              .where(TaskRow.id.in_(ids)))}
            n_events = Counter(s.scalars(select(AuditEvent.task_id).where(AuditEvent.task_id.in_(ids),
                                                                          AuditEvent.action == "complete")))
            for task_id in ids:
                r = got.get(task_id)
                if r is None or r.status != "completed" or r.completed_by_id != o.by_user[task_id]:
                    failures.append(f"task {task_id}: the client's completion is not what the row says: "
                                    f"{r and (r.status, r.completed_by_id)}")
                if n_events[task_id] != 1:
                    failures.append(f"task {task_id}: {n_events[task_id]} 'complete' events, not one")
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--database-url", default=None, help="default: a scratch PostgreSQL database, dropped after")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--timer-workers", type=int, default=1)
    parser.add_argument("--timers", type=int, default=None, help="contracts with a due timer (default 200 + 60/kill)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crash-") as tmp:
        if args.database_url:
            result = run(args.database_url, args.kills, args.seed, Path(tmp), n_clients=args.clients,
                         timer_workers=args.timer_workers, n_timers=args.timers)
        else:
            from scratch import scratch_postgres

            with scratch_postgres("lvyue_crash") as url:
                result = run(url, args.kills, args.seed, Path(tmp), n_clients=args.clients,
                             timer_workers=args.timer_workers, n_timers=args.timers)
    print(result.table())
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
