"""Engine benchmark: the bare SpiffWorkflow step against Lvyue's persisted, audited completion.

Prints a table and, as its last two lines, ``step500_over_step5=<ratio>`` and
``persisted_over_bare=<ratio>``. Never used for assertions in tests. Run: ``make bench``
(``--quick`` for fewer samples; ``--no-postgres`` to skip the PostgreSQL rows).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import text
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scratch import scratch_postgres  # noqa: E402

from workflows import config  # noqa: E402
from workflows.clock import FrozenClock  # noqa: E402
from workflows.engine import sandbox  # noqa: E402
from workflows.engine.package import build_package  # noqa: E402
from workflows.forms import validate_submission  # noqa: E402
from workflows.runtime import Runtime  # noqa: E402
from workflows.schema import upgrade  # noqa: E402
from workflows.services import accounts, deployments, instances, tasks  # noqa: E402
from workflows.services.deployments import collect_files  # noqa: E402

QUOTE = {
    "customer_name": "华东机械 East China Machinery", "customer_risk": "low",
    "line_items": [{"product": "CNC lathe", "quantity": 2, "unit_price": "12000.00"}],
    "discount_pct": 0, "payment_terms": "30% advance, 70% on delivery", "delivery_date": "2027-01-15",
}
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
    rt = Runtime(url, clock=FrozenClock(), password_method="pbkdf2:sha256:1000")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples (CI)")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    passes = 260 if not args.quick else 40
    history_points = [5, 50, 500] if not args.quick else [5, 50]

    bare = bare_steps(min(passes, 30))
    bare_ms = window(bare, 5)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rt = _runtime(f"sqlite:///{tmp}/bench.db")
        sqlite_commit = empty_commit(rt)
        sqlite = persisted_steps(rt, passes, "SQLite")
        rt.dispose()
    rows.append(("SQLite", sqlite, sqlite_commit))

    if not args.no_postgres:
        with scratch_postgres("lvyue_bench") as url:
            rt = _runtime(url)
            pg_commit = empty_commit(rt)
            pg = persisted_steps(rt, max(passes // 2, 30) if not args.quick else 30, "PostgreSQL")
            rt.dispose()
            rows.append(("PostgreSQL", pg, pg_commit))

    print()
    print("Lvyue engine benchmark — quote_to_cash send-back loop (prepare_quote ⇄ supervisor_review)")
    print(f"{'measure':<58} {'median ms':>10}")
    print("-" * 70)
    print(f"{'bare SpiffWorkflow step (in memory, default engine), step 5':<58} {bare_ms:>10.2f}")
    for label, samples, commit in rows:
        print(f"{label + ': empty commit':<58} {commit:>10.2f}")
        for at in history_points:
            if at < len(samples):
                print(f"{label + f': persisted, audited completion at step {at}':<58} {window(samples, at):>10.2f}")
    print("-" * 70)
    sqlite_samples, sqlite_commit = rows[0][1], rows[0][2]
    step5 = window(sqlite_samples, 5)
    last = history_points[-1]
    step_last = window(sqlite_samples, last)
    ratio_bare = step5 / (bare_ms + sqlite_commit)
    print(f"(ratios on SQLite; persisted step {last} over step 5, and step 5 over bare step + empty commit)")
    print(f"step{last}_over_step5={step_last / step5:.2f}")
    print(f"persisted_over_bare={ratio_bare:.2f}")


if __name__ == "__main__":
    main()
