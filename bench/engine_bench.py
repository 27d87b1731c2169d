"""Engine benchmark: the bare SpiffWorkflow step against Lvyue's persisted, audited completion.

Three measures, on a SQLite file and (unless ``--no-postgres``) a throwaway PostgreSQL database:

* per-step cost against history length: one instance loops prepare_quote ⇄ supervisor_review (a send-back)
  for 2,500 passes, and the completions around steps 5, 50, 500 and 5,000 are compared;
* the persisted completion (validate, run, compact, store rows, state and audit, commit) against the bare
  in-memory SpiffWorkflow step on the same BPMN plus one empty commit;
* throughput: whole quote-to-cash contracts per second in one process (start, eleven completions by the
  right users, the installment timer fired by the worker, the payment recorded).

Prints a table and, as its last three lines, ``step<N>_over_step5=<ratio>``, ``persisted_over_bare=<ratio>``
and ``contracts_per_s=<n>``. Never used for assertions in tests. Run: ``make bench`` (``--quick`` for fewer
samples; ``--no-postgres`` to skip the PostgreSQL rows).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import func, select, text
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scratch import scratch_postgres  # noqa: E402

from models import TaskRow  # noqa: E402
from tests.flow import Flow  # noqa: E402
from workflows import config  # noqa: E402
from workflows.clock import FrozenClock  # noqa: E402
from workflows.engine import sandbox  # noqa: E402
from workflows.engine.package import build_package  # noqa: E402
from workflows.forms import validate_submission  # noqa: E402
from workflows.runtime import Runtime  # noqa: E402
from workflows.schema import upgrade  # noqa: E402
from workflows.services import accounts, deployments, instances, tasks, timers  # noqa: E402
from workflows.services.deployments import collect_files  # noqa: E402

QUOTE = {
    "customer_name": "华东机械 East China Machinery", "customer_risk": "low",
    "line_items": [{"product": "CNC lathe", "quantity": 2, "unit_price": "12000.00"}],
    "discount_pct": 0, "payment_terms": "30% advance, 70% on delivery", "delivery_date": "2027-01-15",
}
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
SEND_BACK = {"supervisor_decision": "send_back", "supervisor_comment": "recheck the discount"}


def _ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def bare_steps(passes: int) -> list[float]:
    """Plain SpiffWorkflow (default engine, nothing persisted, no compaction): one sample per user task."""
    package = build_package(collect_files(config.bpmn_dir() / "quote_to_cash.bpmn"))
    clock = FrozenClock()
    env = TaskDataEnvironment(dict(sandbox.RestrictedEnvironment(clock.now).globals))
    wf = BpmnWorkflow(package.spec, package.subprocess_specs, script_engine=PythonScriptEngine(environment=env))
    wf.do_engine_steps()
    forms = {name: package.forms[package.main.user_tasks[name].form]
             for name in ("prepare_quote", "supervisor_review")}
    samples = []
    for _ in range(passes):
        for spec_id, data in (("prepare_quote", QUOTE), ("supervisor_review", SEND_BACK)):
            task = next(t for t in wf.get_tasks(state=TaskState.READY, manual=True) if t.task_spec.name == spec_id)
            cleaned = validate_submission(forms[spec_id], data)
            start = time.perf_counter()
            task.data.update(cleaned)
            task.run()
            wf.do_engine_steps()
            samples.append(time.perf_counter() - start)
    return samples


def _runtime(url: str) -> Runtime:
    rt = Runtime(url, clock=FrozenClock(NOW), password_method="pbkdf2:sha256:1000")
    upgrade(rt.engine)
    accounts.ensure_demo_users(rt)
    deployments.deploy_path(rt, config.bpmn_dir())
    return rt


def empty_commit(rt: Runtime, n: int = 200) -> float:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        with rt.write() as s:
            s.execute(text("SELECT 1"))
        samples.append(time.perf_counter() - start)
    return _ms(samples)


def persisted_steps(rt: Runtime, passes: int, label: str) -> list[float]:
    """Our completion through the service layer: validate, run, compact, persist rows and audit, commit."""
    rep, sup = accounts.get_user(rt, "rep1"), accounts.get_user(rt, "sup1")
    started = instances.start_instance(rt, "quote_to_cash", rep, {"customer_name": QUOTE["customer_name"]})
    samples = []
    for _ in tqdm(range(passes), desc=label, unit="pass", leave=False, file=sys.stderr):
        for spec_id, user, data in (("prepare_quote", rep, QUOTE), ("supervisor_review", sup, SEND_BACK)):
            item = next(t for t in tasks.open_tasks_of_instance(rt, started.instance_id) if t.spec_id == spec_id)
            start = time.perf_counter()
            tasks.complete(rt, item.id, user, data)
            samples.append(time.perf_counter() - start)
    return samples


def window(samples: list[float], at: int, width: int = 20) -> float:
    lo = max(0, at - width // 2)
    return _ms(samples[lo:lo + width])


PLAN = [{"amount": "24000.00", "due_date": "2026-12-15"}]
PAYMENT = {"amount_received": "24000.00", "received_on": "2026-12-15", "payment_reference": "BANK-1"}


def throughput(rt: Runtime, n: int, label: str) -> tuple[float, int]:
    """Whole contracts, one after another in one process, each ended by its payment: (contracts/s, steps).
    The happy path is the tests' (``tests/flow.py``): quote, approval, contract, delivery, then the worker fires
    the installment timer and finance records the payment. Steps: task completions and timers fired."""
    clock: FrozenClock = rt.clock
    ids, fired = [], 0
    start = time.perf_counter()
    for i in tqdm(range(n), desc=label, unit="contract", leave=False, file=sys.stderr):
        clock.set(NOW + timedelta(seconds=i))  # a frozen clock never moves back: each contract a second later
        flow = Flow(rt, data={"customer_name": f"{QUOTE['customer_name']} {i}"})
        flow.to_collection(plan=PLAN)
        clock.set(datetime(2026, 12, 15, 1, 0, tzinfo=UTC) + timedelta(seconds=i))
        fired += timers.fire_due_timers(rt).fired
        flow.act("record_payment", "fin1", PAYMENT)
        if flow.view().status != "completed":
            raise SystemExit(f"contract {i} did not end: the benchmark's path no longer matches the BPMN")
        ids.append(flow.id)
    seconds = time.perf_counter() - start
    with rt.read() as s:
        completed = s.scalar(select(func.count()).select_from(TaskRow).where(
            TaskRow.instance_id.in_(ids), TaskRow.status == "completed"))
    return n / seconds, completed + fired


def _backend(rt: Runtime, label: str, passes: int, contracts: int) -> dict:
    commit = empty_commit(rt)
    persisted_steps(rt, 10, label + " warm-up")  # first-use costs (caches, statements) are not step 5's
    loop = persisted_steps(rt, passes, label)
    rate, steps = throughput(rt, contracts, label + " contracts")
    return {"label": label, "commit": commit, "loop": loop, "rate": rate, "steps": steps, "contracts": contracts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples (CI)")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    history_points = [5, 50, 500, 5000] if not args.quick else [5, 50]
    passes = history_points[-1] // 2 + 15
    contracts = 100 if not args.quick else 20

    bare = bare_steps(30)
    bare_ms = window(bare, 5)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rt = _runtime(f"sqlite:///{tmp}/bench.db")
        rows.append(_backend(rt, "SQLite", passes, contracts))
        rt.dispose()
    if not args.no_postgres:
        with scratch_postgres("lvyue_bench") as url:
            rt = _runtime(url)
            rows.append(_backend(rt, "PostgreSQL", passes, contracts))
            rt.dispose()

    print()
    print("Lvyue engine benchmark — quote_to_cash")
    print(f"{'measure':<66} {'median ms':>10}")
    print("-" * 78)
    print(f"{'bare SpiffWorkflow step (in memory, default engine), step 5':<66} {bare_ms:>10.2f}")
    for row in rows:
        label = row["label"]
        print(f"{label + ': empty commit':<66} {row['commit']:>10.2f}")
        for at in history_points:
            print(f"{label + f': persisted, audited completion at step {at}':<66} {window(row['loop'], at):>10.2f}")
        ratio = window(row["loop"], 5) / (bare_ms + row["commit"])
        print(f"{label + ': step 5 over (bare step + empty commit)':<66} {ratio:>9.2f}×")
        last = history_points[-1]
        print(f"{label + f': step {last} over step 5':<66} {window(row['loop'], last) / window(row['loop'], 5):>9.2f}×")
    print("-" * 78)
    print(f"{'throughput: whole contracts, one process':<40} {'contracts/s':>12} {'steps/s':>10} {'ms/contract':>12}")
    for row in rows:
        per_s = row["rate"] * row["steps"] / row["contracts"]
        print(f"{row['label']:<40} {row['rate']:>12.1f} {per_s:>10.0f} {1000 / row['rate']:>12.1f}")
    print("-" * 78)
    sqlite = rows[0]
    last = history_points[-1]
    print(f"(last lines on SQLite; {sqlite['steps'] // sqlite['contracts']} steps per contract: "
          "task completions and timers fired)")
    print(f"step{last}_over_step5={window(sqlite['loop'], last) / window(sqlite['loop'], 5):.2f}")
    print(f"persisted_over_bare={window(sqlite['loop'], 5) / (bare_ms + sqlite['commit']):.2f}")
    print(f"contracts_per_s={sqlite['rate']:.1f}")


if __name__ == "__main__":
    main()
