"""Approval power tools benchmark: what withdraw, return-to-step and the task page's extra panels cost.

On a SQLite file (and, unless ``--no-postgres``, a throwaway PostgreSQL database), for contracts at the manager
review (prepared, approved by the supervisor):

* a withdraw (the supervisor pulls back their approval) and a return (the manager sends the contract back to the
  rep), each against a plain completion of the same step: median milliseconds;
* the task page of the open manager review as its candidate: SQL statements and milliseconds per view, with the
  panels (why is this mine, signers, return) and without them.

Prints a table; never used for assertions. Run: ``.venv/bin/python bench/power_tools_bench.py`` (``--quick``
for fewer samples).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import event, select
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine_bench import _runtime  # noqa: E402
from scratch import scratch_postgres  # noqa: E402

from models import TaskRow  # noqa: E402
from tests.flow import Flow, approve, quote  # noqa: E402
from tests.web import WebClient  # noqa: E402
from webapp import TestConfig, create_app  # noqa: E402
from webapp.views import task as task_view  # noqa: E402
from workflows.services import accounts, rewind, tasks  # noqa: E402

BIG = dict(total_price="150000.00", quantity=2)  # manager review needed


def _at_manager(rt) -> Flow:
    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote(**BIG))
    f.act("supervisor_review", "sup1", approve("supervisor"))
    return f


def _done_id(rt, f: Flow, spec_id: str) -> int:
    with rt.read() as s:
        return s.scalar(select(TaskRow.id).where(TaskRow.instance_id == f.id, TaskRow.spec_id == spec_id,
                                                 TaskRow.status == "completed").order_by(TaskRow.id.desc()))


def actions(rt, n: int, label: str) -> dict[str, float]:
    out: dict[str, list[float]] = {"complete manager review": [], "withdraw supervisor review": [],
                                   "return to prepare quote": []}
    for _ in tqdm(range(n), desc=label, unit="contract", leave=False, file=sys.stderr):
        f = _at_manager(rt)
        start = time.perf_counter()
        rewind.withdraw(rt, _done_id(rt, f, "supervisor_review"), f.user("sup1"))
        out["withdraw supervisor review"].append(time.perf_counter() - start)
        f.act("supervisor_review", "sup1", approve("supervisor"))
        start = time.perf_counter()
        rewind.return_to(rt, f.task("manager_review").id, f.user("mgr1"), "prepare_quote", "recheck the prices")
        out["return to prepare quote"].append(time.perf_counter() - start)
        f.act("prepare_quote", "rep1", quote(**BIG))
        f.act("supervisor_review", "sup1", approve("supervisor"))
        item, mgr = f.task("manager_review"), f.user("mgr1")
        start = time.perf_counter()
        tasks.complete(rt, item.id, mgr, approve("manager"))
        out["complete manager review"].append(time.perf_counter() - start)
    return {k: statistics.median(v) * 1000 for k, v in out.items()}


def page(rt, n: int) -> dict[str, tuple[float, float]]:
    """(statements, ms) per view of the manager review page by mgr1, with and without the power-tool panels."""
    app = create_app(TestConfig, runtime=rt)
    f = _at_manager(rt)
    f.act("manager_review", "mgr1", approve("manager"))
    f.act("legal_review", "legal1", approve("legal"))
    f.act("finance_review", "fin1", approve("finance"))
    item = f.task("draft_contract")
    client = WebClient(app.test_client())
    client.login("rep1", accounts.DEMO_PASSWORD)
    counted = [0]

    def count(*_args) -> None:
        counted[0] += 1

    out = {}
    panels = dict(task_view.PANELS)
    for label, chosen in (("with the panels", panels), ("without them", {})):
        task_view.PANELS.clear()
        task_view.PANELS.update(chosen)
        client.get(f"/tasks/{item.id}")  # warm
        event.listen(rt.engine, "before_cursor_execute", count)
        counted[0] = 0
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            response = client.get(f"/tasks/{item.id}")
            samples.append(time.perf_counter() - start)
            assert response.status_code == 200, response.status_code
        event.remove(rt.engine, "before_cursor_execute", count)
        out[label] = (counted[0] / n, statistics.median(samples) * 1000)
    task_view.PANELS.clear()
    task_view.PANELS.update(panels)
    return out


def run(url: str, name: str, n: int) -> None:
    rt = _runtime(url)
    try:
        timed = actions(rt, n, name)
        viewed = page(rt, max(20, n))
    finally:
        rt.dispose()
    print(f"\n{name}")
    for label, ms in timed.items():
        print(f"  {label:<30} {ms:7.1f} ms")
    for label, (statements, ms) in viewed.items():
        print(f"  task page {label:<20} {statements:5.1f} statements {ms:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    n = 10 if args.quick else 50
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{tmp}/power.db", "SQLite", n)
    if not args.no_postgres:
        with scratch_postgres("lvyue_power") as url:
            run(url, "PostgreSQL", n)


if __name__ == "__main__":
    main()
