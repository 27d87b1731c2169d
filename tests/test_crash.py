"""Crash safety, CI size: the crash harness (``bench/crash_harness.py``) SIGKILLs the web server and the timer
worker a dozen times while clients complete tasks over HTTP and the worker fires a backlog of due timers, then
proves every instance is before or after its step, every due timer fired exactly once, every completion a client
saw succeed is recorded once, a completion whose answer was lost is recorded whole or not at all, and the audit
chains verify. ``.venv/bin/python bench/crash_harness.py --kills 100`` is the full run.

Runs on the suite's database: PostgreSQL (``LVYUE_TEST_DATABASE_URL``) or a SQLite file. SQLite takes several
processes on one file reliably: WAL, a 60 s busy timeout and ``BEGIN IMMEDIATE`` writers queue on the file lock,
which the kernel releases when a killed process dies, and the WAL frames of a transaction that never committed
are ignored by the next reader.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from crash_harness import run  # noqa: E402

KILLS = 12


@pytest.mark.timeout(400)
def test_kills_during_completions_and_timer_firing_leave_nothing_half_done(db_url, tmp_path):
    result = run(db_url, kills=KILLS, seed=7, folder=tmp_path, n_timers=500, progress=False)
    print(result.table())
    assert result.ok, result.table()
    assert len(result.kills) == KILLS
    assert {k.target for k in result.kills} == {"web", "worker"}  # the seed picks both
    assert result.outcomes.ok, "the clients completed nothing: the harness tested nothing"
    assert result.timers_fired == result.timers_total == 500
    assert result.report is not None and result.report.audit is not None and result.report.audit.ok
