"""The timer worker's unit of work: fire the due timers of one instance at a time.

A due timer row is picked with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (so several workers share the
load and never fire the same timer), the instance's workflow fires every timer that is due by the
runtime's clock, and rows, state and audit commit together. A timer whose process fails, in whatever way,
has the attempt and the reason recorded (``timer_error``) and is retried no more than ``MAX_ATTEMPTS`` times,
after which it is marked ``error``; the other timers fire meanwhile.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from SpiffWorkflow.exceptions import SpiffWorkflowException
from sqlalchemy import bindparam, func, select

from models import Instance, Timer

from ..clock import FrozenClock, using_clock
from ..engine import runner
from ..engine.sandbox import SandboxViolation
from ..runtime import Runtime
from . import audit
from .deployments import package_for
from .errors import Conflict, ServiceError
from .progress import describe_engine_error, load_workflow, persist_step, read_live_instance

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5


def _pending():
    """Timers a worker will still try: waiting, with attempts left."""
    return (Timer.status == "waiting", Timer.attempts < MAX_ATTEMPTS)


@dataclass(frozen=True)
class FireReport:
    fired: int
    instances: int
    errors: int
    conflicts: int


def fire_due_timers(rt: Runtime, limit: int = 100, worker: str = "worker") -> FireReport:
    """Fire the due timers, one instance per transaction. A failure while firing one instance's timers, of any
    kind, is recorded against its timer (``record_timer_failure``) and the pass goes on with the others."""
    fired = instances = errors = conflicts = 0
    skip: set[int] = set()
    while instances + errors + conflicts < limit:
        try:
            outcome = _fire_one_instance(rt, worker, skip)
        except Conflict:
            conflicts += 1
            continue
        if outcome is None:
            break
        instance_id, count, failed = outcome
        skip.add(instance_id)
        if failed:
            errors += 1
        else:
            instances += 1
            fired += count
    return FireReport(fired, instances, errors, conflicts)


def _fire_one_instance(rt: Runtime, worker: str, skip: set[int]) -> tuple[int, int, bool] | None:
    now = rt.clock.now()
    workflow = None
    picked: tuple[int, int, str] | None = None  # (timer id, instance id, spec id), kept past a rollback
    try:
        with rt.write() as s:
            # by due_at alone, the order ix_timers_due gives: a tie-break on id made PostgreSQL sort every due
            # row on each pick when many share a moment (installments fall due at midnight)
            q = select(Timer).where(*_pending(), Timer.due_at <= now).order_by(Timer.due_at).limit(1)
            if skip:
                q = q.where(Timer.instance_id.not_in(skip))
            if rt.postgres:
                q = q.with_for_update(skip_locked=True)
            timer = s.scalar(q)
            if timer is None:
                return None
            picked = (timer.id, timer.instance_id, timer.spec_id)
            live = read_live_instance(s, Instance.id == timer.instance_id, lock=rt.postgres)
            if live is None:  # another worker holds the instance: leave it to them
                skip.add(timer.instance_id)
                return timer.instance_id, 0, False
            package = package_for(rt, live.deployment_id)
            workflow = load_workflow(rt, live, package, s)
            with using_clock(rt.clock):
                runner.fire_timers(workflow)
                stepped = runner.step(workflow)
            outcome = persist_step(rt, s, live, package, workflow, stepped, now, had_timers=True)
            for spec_id, kind, due in outcome.fired_timers:
                audit.record(s, now, kind, actor=worker, instance_id=live.id, spec_id=spec_id,
                             data={"due_at": due.isoformat(), "fired_at": now.isoformat()})
            for cancelled_id, spec_id in outcome.cancelled:
                audit.record(s, now, "cancel", actor=worker, instance_id=live.id, task_id=cancelled_id,
                             spec_id=spec_id)
            result = (live.id, len(outcome.fired_timers), False)
            version = outcome.version
            if not outcome.fired_timers:
                # the row said due but the engine did not fire: do not spin on it
                timer.attempts += 1
                timer.last_error = "due by the database but not fired by the engine"
    except Conflict:
        raise  # a lost race: nothing was written, the timer is tried again (fire_due_timers counts it)
    except Exception as err:  # noqa: BLE001 - whatever one instance's process does, the other timers fire
        if picked is None:
            raise  # no timer was picked (the database is away): the worker loop logs it and polls again
        # the transaction was rolled back, and the workflow (taken out of the cache) is dropped with it
        timer_id, instance_id, spec_id = picked
        if isinstance(err, SpiffWorkflowException | SandboxViolation | ServiceError):
            failure = describe_engine_error(err)
            log.warning("timer %s of instance %s failed: %s", spec_id, instance_id, failure)
        else:
            failure = f"unexpected error: {describe_engine_error(err)}"
            log.exception("timer %s of instance %s failed unexpectedly", spec_id, instance_id)
        record_timer_failure(rt, timer_id, failure, now, worker)
        return instance_id, 0, True
    rt.keep_workflow(result[0], version, workflow)
    return result


LOCK_INSTANCE = select(Instance.id).where(Instance.id == bindparam("instance_id")).with_for_update(key_share=True)


def record_timer_failure(rt: Runtime, timer_id: int, failure: str, now: datetime, worker: str = "worker") -> bool:
    """Count a failed attempt at firing timer ``timer_id``: attempts + 1, ``last_error``, ``error`` once it has
    failed ``MAX_ATTEMPTS`` times, and a ``timer_error`` audit event. Only while the timer is still waiting: a
    completion or another worker may have fired or cancelled it since the attempt, and that row stays as they
    left it. Locks as every other writer does (instance, then timer, then the audit chain head). Returns
    whether the failure was recorded."""
    with rt.write() as s:
        instance_id = s.scalar(select(Timer.instance_id).where(Timer.id == timer_id))
        if instance_id is None:
            return False
        if rt.postgres:  # waits for whoever holds the contract now, then reads what they committed
            s.execute(LOCK_INSTANCE, {"instance_id": instance_id})
        trow = s.get(Timer, timer_id, with_for_update=rt.postgres or None, populate_existing=True)
        if trow is None or trow.status != "waiting":
            log.info("timer %s was %s meanwhile: its failed attempt is not recorded", timer_id,
                     trow.status if trow is not None else "removed")
            return False
        trow.attempts += 1
        trow.last_error = failure
        if trow.attempts >= MAX_ATTEMPTS:
            trow.status = "error"
        audit.record(s, now, "timer_error", actor=worker, instance_id=trow.instance_id, spec_id=trow.spec_id,
                     data={"error": failure, "attempts": trow.attempts})
    return True


def next_due(rt: Runtime, after: datetime | None = None, until: datetime | None = None) -> datetime | None:
    """When the first pending timer falls due (after ``after``, by ``until``); None if there is none."""
    q = select(func.min(Timer.due_at)).where(*_pending())
    if after is not None:
        q = q.where(Timer.due_at > after)
    if until is not None:
        q = q.where(Timer.due_at <= until)
    with rt.read() as s:
        return s.scalar(q)


def catch_up(rt: Runtime, clock: FrozenClock, until: datetime, worker: str = "worker") -> int:
    """Fire every timer due by ``until`` at its own due time (plus a minute), as a worker polling all along
    would have, then leaves ``clock`` at ``until`` (it never moves back). For replaying history: the demo
    data, benchmarks."""
    fired = 0
    while True:
        due = next_due(rt, until=until)
        if due is None:
            break
        clock.set(max(clock.now(), min(due + timedelta(minutes=1), until)))
        report = fire_due_timers(rt, worker=worker)
        if report.fired == 0:
            break
        fired += report.fired
    clock.set(max(clock.now(), until))
    return fired
