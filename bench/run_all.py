"""Every performance benchmark of issue 7 in one run, one after another, with their tables and a summary.

engine (per-step cost against history, persisted against bare, contracts per second), timers (10,000 waiting
timers, how late each fires), the HTTP load test (gunicorn, several workers, PostgreSQL) and web (the queue
pages at 100,000 contracts and 1,000,000 task rows, beside their raw SQL, with query plans). Prints each
benchmark's own output as it comes and the wall time of each. Run: ``make bench-all`` (``--quick``: the
small sizes CI uses; ``--only engine,web``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the web benchmark's bulk load last: PostgreSQL's checkpoints after it would disturb the timings that follow
BENCHES = {"engine": "engine_bench.py", "timers": "timer_bench.py", "load": "load_test.py", "web": "web_bench.py"}
# at full size, to stay within 10 minutes: the timers on PostgreSQL (two workers) only; one SQLite worker and
# one PostgreSQL worker are measured by --quick and by bench/timer_bench.py alone
FULL_ARGS = {"timers": ["--no-sqlite"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument("--only", help="comma-separated subset of " + ", ".join(BENCHES))
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else list(BENCHES)
    unknown = [name for name in chosen if name not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    walls: list[tuple[str, float, int]] = []
    for name in chosen:
        start = time.perf_counter()
        extra = ["--quick"] if args.quick else FULL_ARGS.get(name, [])
        print(f"\n##### {name}: bench/{BENCHES[name]} {' '.join(extra)}", flush=True)
        done = subprocess.run([sys.executable, str(HERE / BENCHES[name]), *extra], check=False)
        walls.append((name, time.perf_counter() - start, done.returncode))
    print("\n##### wall time")
    for name, seconds, code in walls:
        print(f"{name:<8} {seconds:>7.1f} s{'' if code == 0 else f'   exit status {code}'}")
    total = sum(seconds for _, seconds, _ in walls)
    print(f"{'total':<8} {total:>7.1f} s")
    sys.exit(max(code for _, _, code in walls))


if __name__ == "__main__":
    main()
