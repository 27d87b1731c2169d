"""Races on tasks through the real HTTP JSON API under gunicorn with several worker processes.

Fifty clients completing one task at the same moment: exactly one wins, the others get a clean 409, the
engine steps once. A thousand random claims, unclaims, reassignments and completions from many clients on
many tasks (PostgreSQL only): afterwards every accepted action is in the audit log exactly once and every
audited action was accepted (no lost or phantom updates), the audit log replays into the rows' final state,
no task is completed twice, nothing is recorded on a task after its completion, and the hash chains verify.
``test_concurrency.py`` races the service layer in threads; this adds the processes and the wire (and, on
the service layer, fifty threads, and a completion queued behind a claim, reassignment or unclaim).
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text

from models import AuditEvent, Instance, TaskRow, User
from workflows import config
from workflows.runtime import Runtime
from workflows.services import accounts, audit, integrity, tasks, timers, tokens
from workflows.services.errors import Conflict

from .flow import Flow, approve, quote
from .processes import DEADLINE, Processes, api, served_by, start_gunicorn, wait_for

PG = bool(os.environ.get("LVYUE_TEST_DATABASE_URL"))
WEB_WORKERS = 4
TZ = ZoneInfo(config.business_tz())
TASK_ACTIONS = ("claim", "unclaim", "reassign", "complete")
# what a lost race or a refused action may answer; anything else (a 5xx, a 404 for a task that exists, a
# dropped connection) is a failure
CLEAN_ERRORS = {403: {"forbidden", "four_eyes"}, 409: {"conflict"}, 422: {"invalid"}}


def count(rt: Runtime, model, *where) -> int:
    with rt.read() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def bots(rt: Runtime, role: str, n: int, prefix: str | None = None) -> dict[str, str]:
    """``n`` service accounts with ``role`` (no team: they work for every team): user name → bearer token."""
    made = {}
    for i in range(n):
        account = accounts.create_service_account(rt, f"{prefix or role}-bot{i:02d}", None, [role], actor=None)
        made[account.username] = tokens.issue_token(rt, account.id, "race test", actor=None)
    return made


def serve(processes: Processes, rt: Runtime, token: str, tmp_path: Path) -> tuple[int, Path]:
    """gunicorn with ``WEB_WORKERS`` processes on ``rt``'s database, once at least two of them answer."""
    access_log = tmp_path / "access.log"
    port = start_gunicorn(processes, rt.database_url, WEB_WORKERS, access_log)

    def read() -> None:
        with contextlib.suppress(OSError):  # not listening yet
            api(port, token, "GET", "/tasks?scope=roles")

    def two_workers_answer() -> bool:  # concurrent reads, so that a busy worker leaves the next to another
        pool = [threading.Thread(target=read) for _ in range(2 * WEB_WORKERS)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return access_log.exists() and len(served_by(access_log, "GET")) >= 2

    wait_for("gunicorn workers answering", two_workers_answer, processes)
    return port, access_log


def assert_clean_logs(processes: Processes) -> None:
    for name, _ in processes.running:
        log = (processes.folder / f"{name}.log").read_text()
        assert "Traceback" not in log, processes.log(name)


def assert_audit_verifies(rt: Runtime) -> None:
    report = integrity.verify_all(rt)
    assert report.ok, report.summary()


def run_together(n: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(i)`` in ``n`` threads released together by a barrier; their results (or exceptions) in order."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait(DEADLINE)
            results[i] = work(i)
        except BaseException as err:  # noqa: BLE001 - the test inspects every outcome
            results[i] = err

    pool = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(DEADLINE)
    assert not any(t.is_alive() for t in pool), "a client hung"
    return results


# --- fifty completions of one task -----------------------------------------------------------------------

FIFTY = 50


def review_waiting(rt: Runtime) -> tuple[Flow, tasks.TaskItem, int]:
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    return flow, flow.task("supervisor_review"), flow.view().version


def assert_one_review_step(rt: Runtime, flow: Flow, task_id: int, winner: str) -> None:
    """The review was completed once, by ``winner``, and the engine took the step after it once."""
    with rt.read() as s:
        completes = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "complete",
                                                            AuditEvent.task_id == task_id)))
        row = s.get(TaskRow, task_id)
        completed_by = s.scalar(select(User.username).where(User.id == row.completed_by_id))
    assert [e.actor for e in completes] == [winner]
    assert row.status == "completed" and completed_by == winner
    view = flow.view()
    assert view.path.count("supervisor_review") == 1 and view.path.count("approval_matrix_task") == 1
    assert flow.open_specs() == {"draft_contract"}
    assert count(rt, TaskRow, TaskRow.instance_id == flow.id, TaskRow.spec_id == "draft_contract") == 1
    assert_audit_verifies(rt)


def test_fifty_completions_of_one_task_over_http_one_wins(rt, processes, tmp_path):
    """Twenty-five supervisor accounts, each on two clients at once (so the same user races itself too); half
    send the version they saw. On SQLite the gunicorn workers share the file (writers queue on its lock)."""
    flow, review, version = review_waiting(rt)
    bearer = list(bots(rt, "supervisor", FIFTY // 2).items())
    port, access_log = serve(processes, rt, bearer[0][1], tmp_path)

    def complete(i: int) -> tuple[str, int, dict]:
        username, token = bearer[i % len(bearer)]
        body: dict[str, Any] = {"data": approve("supervisor")}
        if i % 2:
            body["expected_version"] = version
        return (username, *api(port, token, "POST", f"/tasks/{review.id}/complete", body))

    started = time.monotonic()
    results = run_together(FIFTY, complete)
    took = time.monotonic() - started
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures[:3]  # e.g. a dropped connection
    wins = [(user, body) for user, status, body in results if status == 200]
    losses = [(status, body) for _, status, body in results if status != 200]
    assert len(wins) == 1, [r[1:] for r in results][:5]
    assert len(losses) == FIFTY - 1
    assert all(status == 409 and body.get("error") == "conflict" and body.get("message") for status, body in losses), \
        [(status, body) for status, body in losses if status != 409 or body.get("error") != "conflict"][:5]
    winner, done = wins[0]
    assert done["task_id"] == review.id and done["instance_version"] > version and len(done["new_task_ids"]) == 1
    assert_one_review_step(rt, flow, review.id, winner)
    assert flow.task("draft_contract").id == done["new_task_ids"][0]
    assert_clean_logs(processes)
    print(f"\n{FIFTY} completions over HTTP: 1 win ({winner}), {len(losses)} conflicts in {took:.1f} s; "
          f"answered per web worker: {dict(served_by(access_log, 'POST'))}")


def test_fifty_completions_of_one_task_in_threads_one_wins(rt):
    """The same race on the service layer: fifty threads in one process, one connection pool."""
    flow, review, version = review_waiting(rt)
    users = [accounts.create_user(rt, f"race-sup{i:02d}", "race-password", ["supervisor"]) for i in range(FIFTY // 2)]

    def complete(i: int) -> tuple[str, tasks.Completion]:
        user = users[i % len(users)]
        expected = version if i % 2 else None
        return user.username, tasks.complete(rt, review.id, user, approve("supervisor"), expected_version=expected)

    results = run_together(FIFTY, complete)
    wins = [r for r in results if isinstance(r, tuple)]
    errors = [r for r in results if not isinstance(r, tuple)]
    assert len(wins) == 1, errors[:3]
    assert len(errors) == FIFTY - 1 and all(type(e) is Conflict for e in errors), \
        [repr(e) for e in errors if type(e) is not Conflict][:3]
    winner, done = wins[0]
    assert done.task_id == review.id and done.instance_version > version
    assert_one_review_step(rt, flow, review.id, winner)


# --- a completion queued behind another action on the task ----------------------------------------------

def waiting_on_locks(rt: Runtime) -> int:
    with rt.engine.connect() as conn:
        return conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND wait_event_type = 'Lock'"))


@pytest.mark.skipif(not PG, reason="row locks: needs PostgreSQL (on SQLite write transactions run one at a time)")
@pytest.mark.parametrize("action", ["claim", "reassign", "unclaim"])
def test_a_completion_waiting_behind_another_action_sees_it(rt, monkeypatch, action):
    """sup2 claims (or hands on, or gives back) the review and is held just before its audit event, its rows
    locked; meanwhile sup1 submits the review, which must wait, then see what sup2 did. Before the fix the
    completion locked the contract and read the task without waiting for sup2: sup2's audit insert then waited
    for the contract and sup2's task row lock held up the completion, a deadlock (a 500 over HTTP)."""
    flow, review, _ = review_waiting(rt)
    sup1 = flow.user("sup1")
    sup2, sup3 = (accounts.create_user(rt, name, "race-password", ["supervisor"], team="east")
                  for name in ("sup2", "sup3"))
    if action == "unclaim":
        tasks.claim(rt, review.id, sup2)
    holding, release = threading.Event(), threading.Event()
    real_record = audit.record

    def record(s, at, what, **kw) -> None:
        if what == action:
            holding.set()
            release.wait(DEADLINE)
        real_record(s, at, what, **kw)

    monkeypatch.setattr(audit, "record", record)
    act = {"claim": lambda: tasks.claim(rt, review.id, sup2),
           "reassign": lambda: tasks.reassign(rt, review.id, sup2, "sup3", "sup3 knows the customer"),
           "unclaim": lambda: tasks.unclaim(rt, review.id, sup2)}[action]
    results: dict[str, Any] = {}

    def run(name: str, work: Callable[[], Any]) -> None:
        try:
            results[name] = work()
        except BaseException as err:  # noqa: BLE001 - the test inspects every outcome
            results[name] = err

    first = threading.Thread(target=run, args=(action, act), daemon=True)
    first.start()
    assert holding.wait(DEADLINE)
    second = threading.Thread(target=run, args=("complete", lambda: tasks.complete(
        rt, review.id, sup1, approve("supervisor"))), daemon=True)
    second.start()
    deadline = time.monotonic() + DEADLINE
    while waiting_on_locks(rt) < 1:  # the completion waits for sup2's transaction
        assert time.monotonic() < deadline and second.is_alive(), results
        time.sleep(0.02)
    release.set()
    first.join(DEADLINE)
    second.join(DEADLINE)
    monkeypatch.undo()
    assert not first.is_alive() and not second.is_alive(), "hung"

    assert isinstance(results[action], tasks.TaskItem), results
    item = tasks.get_task(rt, review.id)
    if action == "unclaim":  # given back before the completion read it: sup1 may complete it
        assert isinstance(results["complete"], tasks.Completion), results
        assert item.status == "completed"
        assert_one_review_step(rt, flow, review.id, "sup1")
    else:
        assert type(results["complete"]) is Conflict, results
        assert (item.status, item.assignee) == ("open", {"claim": sup2, "reassign": sup3}[action].username)
        assert count(rt, AuditEvent, AuditEvent.task_id == review.id, AuditEvent.action == "complete") == 0
        assert_audit_verifies(rt)


# --- a thousand mixed operations -------------------------------------------------------------------------

OPS = 1000
CLIENTS = 16
SEED = 20261130
HOT = 8  # tasks in play at a time: the operations sweep over the tasks, so that clients collide


@dataclass
class Op:
    n: int
    kind: str
    task_id: int
    user: str
    target: str | None = None
    status: int = 0
    body: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Work:
    task_id: int
    instance_id: int
    role: str
    data: dict[str, Any]


def today() -> date:
    return datetime.now(TZ).date()


def open_work(rt: Runtime, clock, n_reviews: int, n_parallel: int, n_payments: int) -> list[Work]:
    """Supervisor reviews (``n_reviews`` contracts), parallel legal and finance reviews (``n_parallel``
    contracts, two tasks each) and first installments to record (``n_payments`` contracts)."""
    from bench.timer_bench import contracts_waiting_on_timers

    work: list[Work] = []
    clock.set(datetime.now(TZ) - timedelta(days=30))
    contracts_waiting_on_timers(rt, n_payments, min(n_payments, 2), today() - timedelta(days=2), "race test")
    clock.set(datetime.now(TZ))
    assert timers.fire_due_timers(rt).fired == n_payments
    with rt.read() as s:
        rows = s.execute(select(TaskRow.id, TaskRow.instance_id).where(TaskRow.spec_id == "record_payment",
                                                                       TaskRow.status == "open")).all()
    work += [Work(t, i, "finance", {"amount_received": "7200.00", "received_on": today().isoformat(),
                                    "payment_reference": f"BANK-{i}"}) for t, i in rows]
    for _ in range(n_reviews):
        flow = Flow(rt)
        flow.act("prepare_quote", "rep1", quote())
        work.append(Work(flow.task("supervisor_review").id, flow.id, "supervisor", approve("supervisor")))
    for _ in range(n_parallel):
        flow = Flow(rt)
        flow.act("prepare_quote", "rep1", quote("150000.00"))  # 300,000: the manager, then legal and finance
        flow.act("supervisor_review", "sup1", approve("supervisor"))
        flow.act("manager_review", "mgr1", approve("manager"))
        for spec, role in (("legal_review", "legal"), ("finance_review", "finance")):
            work.append(Work(flow.task(spec).id, flow.id, role, approve(role)))
    return work


def plan_ops(work: list[Work], users: dict[str, list[str]], rng: random.Random) -> list[Op]:
    """Seeded random operations; mostly by users of the task's role, some by others (403 or 409)."""
    roles = sorted(users)
    ops = []
    for n in range(OPS):
        centre = n * len(work) // OPS
        w = work[rng.randrange(max(0, centre - HOT // 2), min(len(work), centre + HOT // 2 + 1))]
        kind = rng.choices(TASK_ACTIONS, weights=(30, 25, 25, 20))[0]
        role = w.role if rng.random() < 0.85 else rng.choice(roles)
        target_role = w.role if rng.random() < 0.9 else rng.choice(roles)
        ops.append(Op(n, kind, w.task_id, rng.choice(users[role]),
                      rng.choice(users[target_role]) if kind == "reassign" else None))
    return ops


def send(port: int, token: str, op: Op, work: Work) -> None:
    path = f"/tasks/{op.task_id}/{op.kind}"
    body = {"data": work.data} if op.kind == "complete" else {
        "to": op.target, "reason": f"race op {op.n}"} if op.kind == "reassign" else None
    try:
        op.status, op.body = api(port, token, "POST", path, body)
    except OSError as err:  # fails the test below as neither a success nor a clean error
        op.status, op.body = 0, {"raw": repr(err)}


def _at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@pytest.mark.skipif(not PG, reason="many writers at once: needs PostgreSQL (set LVYUE_TEST_DATABASE_URL)")
def test_a_thousand_mixed_operations_lose_no_update(rt, clock, processes, tmp_path):
    setting_up = time.monotonic()
    work = open_work(rt, clock, n_reviews=20, n_parallel=10, n_payments=10)
    assert len(work) == 20 + 2 * 10 + 10
    random.Random(SEED).shuffle(work)
    by_task = {w.task_id: w for w in work}
    bearer: dict[str, str] = {}
    users: dict[str, list[str]] = {}
    for role, prefix in (("supervisor", "sup"), ("legal", "legal"), ("finance", "fin")):
        made = bots(rt, role, 3, prefix)
        bearer |= made
        users[role] = sorted(made)
    role_of = {u: role for role, names in users.items() for u in names}
    with rt.read() as s:
        first_event = (s.scalar(select(func.max(AuditEvent.id))) or 0) + 1
    ops = plan_ops(work, users, random.Random(SEED))
    port, access_log = serve(processes, rt, bearer[users["finance"][0]], tmp_path)
    set_up = time.monotonic() - setting_up

    queue = iter(ops)
    lock = threading.Lock()

    def client(_: int) -> None:
        while True:
            with lock:
                op = next(queue, None)
            if op is None:
                return
            send(port, bearer[op.user], op, by_task[op.task_id])

    started = time.monotonic()
    failures = [r for r in run_together(CLIENTS, client) if r is not None]
    took = time.monotonic() - started
    assert not failures, failures[:3]

    # then each task still open is completed by its holder (or a member of its role): none got stuck
    with rt.read() as s:
        still_open = dict(s.execute(select(TaskRow.id, User.username).outerjoin(User, User.id == TaskRow.assignee_id)
                                    .where(TaskRow.id.in_(by_task), TaskRow.status == "open")).all())
    finishing = []
    for n, (task_id, holder) in enumerate(sorted(still_open.items()), start=OPS):
        user = holder or users[by_task[task_id].role][0]
        assert role_of.get(user) == by_task[task_id].role, (task_id, holder)  # only the bots ever held them
        op = Op(n, "complete", task_id, user)
        send(port, bearer[user], op, by_task[task_id])
        assert op.status == 200, (op, by_task[task_id])
        finishing.append(op)
    ops += finishing

    # every answer is a success or a clean JSON error
    unclean = [op for op in ops if op.status // 100 != 2 and (
        op.body.get("error") not in CLEAN_ERRORS.get(op.status, ()) or not op.body.get("message")
        or set(op.body) - {"error", "message", "errors"})]
    assert not unclean, unclean[:5]
    ok = [op for op in ops if op.status // 100 == 2]

    with rt.read() as s:
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.id >= first_event)
                                .order_by(AuditEvent.chain, AuditEvent.seq)))
        rows = {r.id: r for r in s.scalars(select(TaskRow).where(TaskRow.id.in_(by_task)))}
        names = dict(s.execute(select(User.id, User.username)).all())
    on_tasks = [e for e in events if e.task_id in by_task]
    assert {e.action for e in on_tasks} <= set(TASK_ACTIONS), Counter(e.action for e in on_tasks)

    # no lost update, no phantom one: each accepted unclaim, reassignment and completion is one audit event of
    # that user on that task (claims and reassignments to the moment: the answer's claimed_at is the event's
    # time), and each such event was accepted
    def key(op: Op) -> tuple:
        moment = _at(op.body.get("claimed_at")) if op.kind in ("claim", "reassign") else None
        return op.kind, op.task_id, op.user, op.target, moment

    def event_key(e: AuditEvent) -> tuple:
        moment = e.at if e.action in ("claim", "reassign") else None
        return e.action, e.task_id, e.actor, e.data.get("to") if e.action == "reassign" else None, moment

    audited = Counter(event_key(e) for e in on_tasks)
    answered = Counter(key(op) for op in ok if op.kind != "claim")
    assert {k: n for k, n in audited.items() if k[0] != "claim"} == answered
    # a claim by the holder is answered 200 and changes nothing: its claimed_at is that of the event that made
    # the user the holder (their own claim, or a reassignment to them)
    made_holder = {(e.task_id, e.actor if e.action == "claim" else e.data["to"], e.at)
                   for e in on_tasks if e.action in ("claim", "reassign")}
    claims = Counter(key(op) for op in ok if op.kind == "claim")
    unmatched = [k for k in claims if (k[1], k[2], k[4]) not in made_holder]
    assert not unmatched, unmatched[:5]
    unanswered = [k for k, n in audited.items() if k[0] == "claim" and claims[k] < n]
    assert not unanswered, unanswered[:5]

    # the audit log, replayed per task in its chain's order, agrees with every answer and with the rows
    answers = defaultdict(list)
    for op in ok:
        answers[key(op)].append(op)
    holder: dict[int, str | None] = {t: None for t in by_task}
    completed: dict[int, str] = {}
    for e in on_tasks:
        t = e.task_id
        assert t not in completed, f"{e.action} on task #{t} after its completion"
        if e.action == "claim":
            assert holder[t] is None, (e.action, t, e.actor, holder[t])
            holder[t] = e.actor
        elif e.action == "unclaim":
            assert holder[t] == e.actor, (e.action, t, e.actor, holder[t])
            holder[t] = None
        elif e.action == "reassign":
            assert e.data["from"] == (holder[t] or "nobody"), (t, e.data, holder[t])
            holder[t] = e.data["to"]
        else:
            assert holder[t] in (None, e.actor), (e.action, t, e.actor, holder[t])
            completed[t] = e.actor
        if e.action != "complete":
            said = [op.body["assignee"] for op in answers[event_key(e)]]
            assert said and set(said) == {holder[t]}, (e.action, t, said, holder[t])
    assert completed.keys() == by_task.keys(), "a task was never completed"
    wins = Counter(op.task_id for op in ok if op.kind == "complete")
    assert wins == Counter(list(by_task)), [t for t, n in wins.items() if n != 1]
    for t, row in rows.items():
        assert row.status == "completed" and names[row.completed_by_id] == completed[t], (t, row.status)
        assert row.completed_by_id is not None
    # the assignee at the end of the random phase is what the last accepted claim, unclaim or reassignment said
    for op in finishing:
        changes = [e for e in on_tasks if e.task_id == op.task_id and e.action != "complete"]
        said = answers[event_key(changes[-1])][0].body["assignee"] if changes else None
        assert still_open[op.task_id] == said, (op.task_id, still_open[op.task_id], said)

    # what each completion started exists once: one row per step of each contract
    with rt.read() as s:
        steps = Counter(s.execute(select(TaskRow.instance_id, TaskRow.spec_id).where(
            TaskRow.instance_id.in_({w.instance_id for w in work}))).all())
    assert set(steps.values()) == {1}, [k for k, n in steps.items() if n > 1]
    for w in work:
        if w.role == "supervisor":
            assert count(rt, TaskRow, TaskRow.instance_id == w.instance_id, TaskRow.spec_id == "draft_contract") == 1
    with rt.read() as s:
        running = Counter(s.scalars(select(Instance.status).where(Instance.id.in_({w.instance_id for w in work}))))
    assert set(running) == {"running"}, running

    assert_audit_verifies(rt)
    assert_clean_logs(processes)
    random_phase = ops[:OPS]
    print(f"\n{OPS} operations from {CLIENTS} clients on {len(work)} tasks with {WEB_WORKERS} web workers in "
          f"{took:.1f} s (set up in {set_up:.1f} s), then {len(finishing)} tasks finished one by one")
    for kind in TASK_ACTIONS:
        mine = [op for op in random_phase if op.kind == kind]
        print(f"  {kind:9} {len(mine):4} sent: " + ", ".join(
            f"{n}× {status} {error}".rstrip() for (status, error), n in sorted(
                Counter((op.status, op.body.get("error", "")) for op in mine).items())))
    print(f"  answered per web worker: {dict(served_by(access_log, 'POST'))}")
