"""Crash safety, CI size: the crash harness (``bench/crash_harness.py``) SIGKILLs a timer worker and the web
server in turn (24 kills on PostgreSQL, 12 on SQLite) while clients complete tasks over HTTP and the worker fires a
backlog of due timers, then proves every instance is before or after its step, every due timer fired exactly once,
every completion a client saw succeed is recorded once, a completion whose answer was lost is recorded whole or
not at all, and the audit chains verify. ``make crash`` is the full run (100 kills on PostgreSQL).

Runs on the suite's database: PostgreSQL (``LVYUE_TEST_DATABASE_URL``) or a SQLite file. SQLite takes several
processes on one file reliably: WAL, a 60 s busy timeout and ``BEGIN IMMEDIATE`` writers queue on the file lock,
which the kernel releases when a killed process dies, and the WAL frames of a transaction that never committed
are ignored by the next reader.

Where the kills land. On PostgreSQL the harness asks ``pg_stat_activity`` at each kill whether the killed
process had a transaction open and whether it had already written (a transaction id assigned): the test
requires kills inside written-to, uncommitted transactions of both the web server and the timer worker, so the
invariants above are proven against torn writes, not only against kills between transactions. (About 4 in 10
web server kills and nearly every timer worker kill land inside one: 7 of 12 and 11 of 12 in one run; the kill
delay is drawn around the measured length of one step.)

On SQLite the harness cannot see transactions. What is proven there: with web kills landing while client
requests are in flight and worker kills while due timers are left (both asserted), no interleaving of those
kills left an instance torn, a timer fired twice or not at all, or a seen completion unrecorded. What is not
proven: that any kill fell inside a write transaction rather than before or after one (the same kill
placement makes it likely, but nothing records it); that rests on the PostgreSQL run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from crash_harness import run  # noqa: E402

# on PostgreSQL each kill is checked for a writing transaction: 24 kills make a web server kill inside one all but
# certain (about 4 in 10 land there; 12 web kills miss them all about once in 500 runs)
KILLS = 24 if os.environ.get("LVYUE_TEST_DATABASE_URL") else 12


@pytest.mark.timeout(400)
def test_kills_during_completions_and_timer_firing_leave_nothing_half_done(db_url, tmp_path):
    # a backlog that lasts past the first kills: a timer worker with nothing due is not killed (the web server is)
    n_timers = 1500
    result = run(db_url, kills=KILLS, seed=7, folder=tmp_path, n_timers=n_timers, progress=False)
    print(result.table())
    assert result.ok, result.table()
    assert len(result.kills) == KILLS
    assert {k.target for k in result.kills} == {"web", "worker"}  # in turn, a worker first
    assert result.outcomes.ok, "the clients completed nothing: the harness tested nothing"
    assert result.timers_fired == result.timers_total == n_timers
    assert result.report is not None and result.report.audit is not None and result.report.audit.ok
    # the kills landed while there was work: requests in flight (web), a backlog left (worker)
    assert any(k.requests_in_flight for k in result.kills if k.target == "web"), result.table()
    assert any(k.timers_due for k in result.kills if k.target == "worker"), result.table()
    if result.backend == "PostgreSQL":
        assert all(k.open_transactions is not None and k.writing is not None for k in result.kills)
        # ... and inside transactions that had written rows and not committed, of each kind of process
        writing = {k.target for k in result.kills if k.writing}
        missing = {"web", "worker"} - writing
        assert not missing, f"no kill inside a writing transaction of {sorted(missing)}:\n{result.table()}"
    else:  # SQLite: transactions are invisible to the harness (see the module's docstring)
        assert all(k.open_transactions is None and k.writing is None for k in result.kills)
