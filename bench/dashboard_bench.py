"""Dashboard benchmark: what a manager waits for on the dashboard, the overdue list and a contract's records,
and what the records cost each engine step.

On a SQLite file and (unless ``--no-postgres``) a throwaway PostgreSQL database: ``lvyue demo --contracts N``'s
generator (``workflows/demo_contracts.py``) drives N contracts through the real process (default 200,
``--quick`` 40), timing the whole run (contracts per second, the records written inside every step); then
``kpis.dashboard`` for the quarter and the year, ``kpis.overdue_contracts`` and ``records.contract_records``
(median of repeats), and the ``/dashboard`` page through the Flask test client with its SQL statement count.
Never used for assertions. Run: ``make bench-dashboard`` (``--quick``; ``--no-postgres``; ``--contracts N``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import event, func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_bench import _runtime  # noqa: E402
from scratch import scratch_postgres  # noqa: E402
from studio_bench import _median_ms  # noqa: E402

from models import Contract, Installment, Instance  # noqa: E402
from tests.web import WebClient  # noqa: E402
from webapp import TestConfig, create_app  # noqa: E402
from workflows import demo_contracts  # noqa: E402
from workflows.services import accounts, kpis, records  # noqa: E402


def run(url: str, label: str, n: int, repeats: int) -> list[tuple[str, str]]:
    rt = _runtime(url)
    rows: list[tuple[str, str]] = []
    try:
        start = time.perf_counter()
        demo_contracts.generate(rt, n, seed=7, progress=True)
        seconds = time.perf_counter() - start
        with rt.read() as s:
            made = s.scalar(select(func.count()).select_from(Instance))
            contracts = s.scalar(select(func.count()).select_from(Contract))
            installments = s.scalar(select(func.count()).select_from(Installment))
            some = s.scalar(select(Contract.instance_id).order_by(Contract.id.desc()).limit(1))
        rows.append((f"demo --contracts {n}", f"{seconds:8.1f} s ({n / seconds:.1f} contracts/s; {made} instances, "
                     f"{contracts} contracts, {installments} installments)"))
        mgr, director = accounts.get_user(rt, "mgr1"), accounts.get_user(rt, "dir1")
        today = kpis.business_today(rt)
        timed = {f"dashboard, {kind}, director": (lambda p=kpis.period_of(kind, today): kpis.dashboard(rt, director, p))
                 for kind in ("quarter", "year")}
        quarter = kpis.period_of("quarter", today)
        timed["dashboard, quarter, manager"] = lambda: kpis.dashboard(rt, mgr, quarter)
        timed["overdue contracts, page 1"] = lambda: kpis.overdue_contracts(rt, director)
        if some:
            timed["contract records panel"] = lambda: records.contract_records(rt, some)
        rows += [(what, f"{_median_ms(fn, repeats):8.1f} ms") for what, fn in timed.items()]
        app = create_app(TestConfig, runtime=rt)
        client = WebClient(app.test_client())
        client.login("mgr1", accounts.DEMO_PASSWORD)
        count = [0]

        def counter(*_args, **_kw):
            count[0] += 1

        event.listen(rt.engine, "before_cursor_execute", counter)
        page = _median_ms(lambda: client.get("/dashboard"), repeats)
        count[0] = 0
        answer = client.get("/dashboard")
        event.remove(rt.engine, "before_cursor_execute", counter)
        rows.append(("GET /dashboard (mgr1)", f"{page:8.1f} ms, {count[0]} SQL statements, HTTP {answer.status_code}"))
    finally:
        rt.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40 contracts instead of 200")
    parser.add_argument("--contracts", type=int)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    n, repeats = (40, 5) if args.quick else (200, 15)
    n = args.contracts or n
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(("SQLite", run(f"sqlite:///{tmp}/dashboard.db", "SQLite", n, repeats)))
    if not args.no_postgres:
        with scratch_postgres("lvyue_dashboard") as url:
            results.append(("PostgreSQL", run(url, "PostgreSQL", n, repeats)))
    for label, rows in results:
        print(f"\n{label}")
        for what, value in rows:
            print(f"  {what:<32} {value}")


if __name__ == "__main__":
    main()
