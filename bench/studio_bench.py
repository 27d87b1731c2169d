"""Studio benchmark: what a process owner waits for before a deploy.

On a SQLite file (and, unless ``--no-postgres``, a throwaway PostgreSQL database) holding N quote-to-cash
contracts (each prepared and reviewed by the supervisor, a third approved further), it measures:

* the check before deploy of the shipped package (``checks.check_files``) and the diff of two versions;
* replay of a draft raising the manager limit against the last N contracts: total seconds and per contract;
* saving a draft and deploying it (checks and saved process tests included);
* the migration dry run over the N running contracts, one page of 20.

Prints a table; never used for assertions. Run: ``.venv/bin/python bench/studio_bench.py`` (``--quick`` for
fewer contracts).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine_bench import _runtime  # noqa: E402
from scratch import scratch_postgres  # noqa: E402

from tests.flow import Flow, approve, quote  # noqa: E402
from tests.test_studio import raise_manager_limit  # noqa: E402
from workflows.services import accounts, deployments, migration, replay, studio  # noqa: E402
from workflows.services.accounts import ROLE_CODES  # noqa: E402
from workflows.studio import checks, diff  # noqa: E402

KEY = "quote_to_cash"


def _median_ms(fn, n: int) -> float:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def _contracts(rt, n: int, label: str) -> None:
    for i in tqdm(range(n), desc=f"{label}: contracts", unit="contract", leave=False, file=sys.stderr):
        f = Flow(rt)
        f.act("prepare_quote", "rep1", quote(f"{20000 + 7000 * (i % 40)}.00", quantity=3))
        f.act("supervisor_review", "sup1", approve("supervisor"))
        if i % 3 == 0 and "manager_review" in f.open_specs():
            f.act("manager_review", "mgr1", approve("manager"))


def run(url: str, label: str, n: int, repeats: int) -> list[tuple[str, str]]:
    rt = _runtime(url)
    rows: list[tuple[str, str]] = []
    try:
        _contracts(rt, n, label)
        owner = accounts.get_user(rt, "owner1")
        files = studio.draft(rt, KEY).files
        raised = raise_manager_limit(files, "200000")
        raw = {k: v.encode() for k, v in files.items()}
        raised_raw = {k: v.encode() for k, v in raised.items()}
        checked = _median_ms(lambda: checks.check_files(raw, ROLE_CODES, KEY), repeats)
        rows.append(("check the package", f"{checked:8.1f} ms"))
        rows.append(("diff two versions", f"{_median_ms(lambda: diff.diff_files(raw, raised_raw), repeats):8.1f} ms"))
        start = time.perf_counter()
        report = replay.replay(rt, KEY, raised_raw, limit=n)
        seconds = time.perf_counter() - start
        rows.append((f"replay {report.replayed} contracts", f"{seconds * 1000:8.1f} ms "
                     f"({seconds * 1000 / max(1, report.replayed):.1f} ms each; {len(report.different)} differ)"))
        start = time.perf_counter()
        revision = studio.save_draft(rt, owner, KEY, raised, 0)
        saved = time.perf_counter() - start
        rows.append(("save the draft", f"{saved * 1000:8.1f} ms"))
        start = time.perf_counter()
        result = studio.deploy_draft(rt, owner, KEY, revision, "raise the manager limit")
        rows.append(("deploy the draft", f"{(time.perf_counter() - start) * 1000:8.1f} ms"))
        dry = _median_ms(lambda: migration.dry_run(rt, KEY, result.deployment_id), max(3, repeats // 4))
        rows.append(("migration dry run, page of 20", f"{dry:8.1f} ms"))
        assert deployments.latest_deployment_id(rt, KEY) == result.deployment_id
    finally:
        rt.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 contracts instead of 120")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    n, repeats = (30, 5) if args.quick else (120, 20)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(("SQLite", run(f"sqlite:///{tmp}/studio.db", "SQLite", n, repeats)))
    if not args.no_postgres:
        with scratch_postgres("lvyue_studio") as url:
            results.append(("PostgreSQL", run(url, "PostgreSQL", n, repeats)))
    for label, rows in results:
        print(f"\n{label}, {n} contracts")
        for what, value in rows:
            print(f"  {what:<34} {value}")


if __name__ == "__main__":
    main()
