"""The audit record is tamper-evident: every change made to it in SQL behind the app's back is found,
with the chain and the event where it breaks."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select, text

from models import AuditChain, AuditEvent
from workflows.services import audit, integrity

from .flow import Flow, approve, quote


@pytest.fixture
def flow(rt, users):
    f = Flow(rt, data={})
    f.act("prepare_quote", "rep1", quote())
    f.act("supervisor_review", "sup1", approve("supervisor"))
    return f


def _events(rt, instance_id):
    with rt.read() as s:
        return s.execute(select(AuditEvent.id, AuditEvent.seq, AuditEvent.action)
                         .where(AuditEvent.instance_id == instance_id).order_by(AuditEvent.seq)).all()


def _sql(rt, statement, **params):
    with rt.engine.begin() as conn:
        conn.execute(text(statement), params)


def _verify(rt, flow):
    return integrity.verify_instance(rt, flow.view().business_key)


def test_an_untouched_history_verifies(rt, flow):
    events = _events(rt, flow.id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1)) and len(events) >= 3
    report = _verify(rt, flow)
    assert report.ok, report.summary()
    assert report.events == len(events)
    everything = integrity.verify_all(rt)
    assert everything.ok, everything.summary()
    assert everything.events == integrity.count_events(rt)


def test_an_altered_event_is_found(rt, flow):
    target = _events(rt, flow.id)[2]
    _sql(rt, "UPDATE audit_events SET actor = 'mgr1' WHERE id = :id", id=target.id)
    report = _verify(rt, flow)
    assert [(b.kind, b.seq, b.event_id) for b in report.breaks] == [("altered", target.seq, target.id)]
    assert f"event #{target.seq}" in report.breaks[0].message


def test_altered_data_inside_the_json_is_found(rt, flow):
    complete = next(e for e in _events(rt, flow.id) if e.action == "complete")
    with rt.engine.begin() as conn:
        data = conn.execute(select(AuditEvent.data).where(AuditEvent.id == complete.id)).scalar_one()
        data["form"]["discount_pct"] = 40
        conn.execute(AuditEvent.__table__.update().where(AuditEvent.id == complete.id).values(data=data))
    kinds = [(b.kind, b.event_id) for b in _verify(rt, flow).breaks]
    assert kinds == [("altered", complete.id)]


def test_a_moved_timestamp_is_found(rt, flow):
    target = _events(rt, flow.id)[1]
    _sql(rt, "UPDATE audit_events SET at = at - INTERVAL '1 hour' WHERE id = :id" if rt.postgres else
         "UPDATE audit_events SET at = datetime(at, '-1 hour') WHERE id = :id", id=target.id)
    assert [b.kind for b in _verify(rt, flow).breaks] == ["altered"]


def test_a_removed_event_is_found(rt, flow):
    target = _events(rt, flow.id)[1]
    _sql(rt, "DELETE FROM audit_events WHERE id = :id", id=target.id)
    report = _verify(rt, flow)
    assert report.breaks[0].kind == "removed" and report.breaks[0].seq == target.seq
    assert f"event #{target.seq} is missing" in report.breaks[0].message


def test_removing_the_last_events_is_found_from_the_head(rt, flow):
    events = _events(rt, flow.id)
    _sql(rt, "DELETE FROM audit_events WHERE id >= :id AND instance_id = :i", id=events[-2].id, i=flow.id)
    report = _verify(rt, flow)
    assert [(b.kind, b.seq) for b in report.breaks] == [("removed", events[-2].seq)]


def test_removing_the_tail_and_rewinding_the_head_is_found_by_the_anchor(rt, flow):
    integrity.anchor(rt)
    events = _events(rt, flow.id)
    last = events[-1]
    with rt.read() as s:
        prev_hash = s.scalar(select(AuditEvent.prev_hash).where(AuditEvent.id == last.id))
    _sql(rt, "DELETE FROM audit_events WHERE id = :id", id=last.id)
    _sql(rt, "UPDATE audit_chains SET seq = seq - 1, head = :h WHERE chain = :c", h=prev_hash,
         c=audit.chain_of(flow.id))
    report = _verify(rt, flow)
    assert [(b.kind, b.seq) for b in report.breaks] == [("removed", last.seq)]
    assert "anchor" in report.breaks[0].message


def test_reordered_events_are_found(rt, flow):
    a, b = _events(rt, flow.id)[1:3]
    # swap their places in the chain (the unique (chain, seq) needs a detour through a free number)
    _sql(rt, "UPDATE audit_events SET seq = -1 WHERE id = :id", id=a.id)
    _sql(rt, "UPDATE audit_events SET seq = :s WHERE id = :id", s=a.seq, id=b.id)
    _sql(rt, "UPDATE audit_events SET seq = :s WHERE id = :id", s=b.seq, id=a.id)
    report = _verify(rt, flow)
    assert "reordered" in {x.kind for x in report.breaks}
    assert {x.seq for x in report.breaks} <= {a.seq, b.seq}


def test_a_whole_deleted_history_is_found(rt, flow):
    _sql(rt, "DELETE FROM audit_events WHERE instance_id = :i", i=flow.id)
    report = integrity.verify_all(rt)
    assert [(b.chain, b.kind, b.seq) for b in report.breaks] == [(audit.chain_of(flow.id), "removed", 1)]


def test_verify_all_names_the_broken_chain_among_many(rt, users, flow):
    other = Flow(rt, data={})
    other.act("prepare_quote", "rep1", quote())
    target = _events(rt, other.id)[0]
    _sql(rt, "UPDATE audit_events SET role = 'director' WHERE id = :id", id=target.id)
    seen = []
    report = integrity.verify_all(rt, progress=seen.append)
    assert [(b.chain, b.kind, b.event_id) for b in report.breaks] == [(audit.chain_of(other.id), "altered",
                                                                       target.id)]
    assert sum(seen) == report.events == integrity.count_events(rt)


def test_anchors_chain_to_each_other_and_record_only_moved_chains(rt, users, flow):
    first = integrity.anchor(rt)
    assert first is not None and first.chains >= 2  # the instance and the system chain (deploy, users)
    assert integrity.anchor(rt) is None  # nothing moved
    Flow(rt, data={})
    second = integrity.anchor(rt)
    assert second is not None and second.chains == 1
    assert integrity.verify_all(rt).anchors == 2
    _sql(rt, "UPDATE audit_anchor_entries SET seq = seq + 1 WHERE anchor_id = :a", a=first.id)
    report = integrity.verify_all(rt)
    assert any(b.kind == "anchor" and f"anchor #{first.id}" in b.message for b in report.breaks)


def test_anchor_is_written_when_due(rt, clock, flow):
    from datetime import timedelta

    assert integrity.anchor_if_due(rt, timedelta(hours=1)) is not None
    Flow(rt, data={})
    assert integrity.anchor_if_due(rt, timedelta(hours=1)) is None
    clock.advance(timedelta(hours=1))
    assert integrity.anchor_if_due(rt, timedelta(hours=1)) is not None


def test_events_of_one_transaction_follow_each_other(rt, users):
    with rt.write() as s:
        for i in range(3):
            audit.record(s, rt.clock.now(), "note", actor="test", data={"i": i, "x": 1.0, "big": 1e20})
    report = integrity.verify_all(rt)
    assert report.ok, report.summary()
    with rt.read() as s:
        head = s.execute(select(AuditChain.seq, AuditChain.head).where(AuditChain.chain == audit.SYSTEM_CHAIN)).one()
        last = s.execute(select(AuditEvent.seq, AuditEvent.hash).where(AuditEvent.chain == audit.SYSTEM_CHAIN)
                         .order_by(AuditEvent.seq.desc()).limit(1)).one()
    assert tuple(head) == tuple(last)


def test_a_rolled_back_event_leaves_no_trace_in_the_chain(rt, users):
    with pytest.raises(RuntimeError), rt.write() as s:
        audit.record(s, rt.clock.now(), "note", actor="test")
        raise RuntimeError("abort")
    with rt.write() as s:
        audit.record(s, rt.clock.now(), "note", actor="test")
    assert integrity.verify_all(rt).ok


def test_concurrent_writers_to_one_chain_stay_in_one_line(rt, users):
    """Eight threads add events to the system chain at once: the head lock orders them, no seq is taken
    twice and the chain verifies."""
    errors = []

    def write(n):
        try:
            for i in range(10):
                with rt.write() as s:
                    audit.record(s, rt.clock.now(), "note", actor=f"t{n}", data={"i": i})
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = integrity.verify_all(rt)
    assert report.ok, report.summary()


@pytest.mark.parametrize("check", ["all", "one"])
def test_a_commit_during_verification_is_no_false_alarm(rt, flow, monkeypatch, check):
    """Another worker commits between the read of the chain heads and the stream of events: the verification
    reads one moment (a REPEATABLE READ snapshot on PostgreSQL) and still says intact."""
    from workflows.services import accounts, tasks

    review = flow.task("draft_contract")
    real, fired = integrity._anchored_in, []

    def then_someone_claims(s, chains):
        out = real(s, chains)
        if not fired:
            fired.append(1)
            tasks.claim(rt, review.id, accounts.get_user(rt, "rep1"))
        return out

    monkeypatch.setattr(integrity, "_anchored_in", then_someone_claims)
    report = integrity.verify_all(rt) if check == "all" else _verify(rt, flow)
    assert fired and report.ok, report.summary()
    assert integrity.verify_all(rt).ok  # and the claim itself chained on


def test_a_wiped_history_with_its_head_is_found(rt, flow):
    chain = audit.chain_of(flow.id)
    _sql(rt, "DELETE FROM audit_events WHERE chain = :c", c=chain)
    _sql(rt, "DELETE FROM audit_chains WHERE chain = :c", c=chain)
    expected = [(chain, "removed")]
    assert [(b.chain, b.kind) for b in integrity.verify_all(rt).breaks] == expected
    assert [(b.chain, b.kind) for b in _verify(rt, flow).breaks] == expected


def test_a_wiped_anchored_history_is_found_even_without_its_contract(rt, flow):
    integrity.anchor(rt)
    chain = audit.chain_of(flow.id)
    _sql(rt, "DELETE FROM instances WHERE id = :i", i=flow.id)  # cascades to tasks, events, steps
    _sql(rt, "DELETE FROM audit_chains WHERE chain = :c", c=chain)
    report = integrity.verify_all(rt)
    assert [(b.chain, b.kind) for b in report.breaks] == [(chain, "removed")], report.summary()
    assert "anchor" in report.breaks[0].message


def _rewrite(rt, chain: str, actor: str) -> None:
    """A consistent forgery: change every event's actor, recompute every hash and the head."""
    with rt.engine.begin() as conn:
        rows = conn.execute(select(AuditEvent.__table__).where(AuditEvent.chain == chain)
                            .order_by(AuditEvent.seq)).mappings().all()
        head = (0, audit.GENESIS)
        for row in rows:
            forged = dict(row, actor=actor)
            head = audit.link(forged, chain, head)
            conn.execute(AuditEvent.__table__.update().where(AuditEvent.id == row["id"])
                         .values(actor=actor, prev_hash=forged["prev_hash"], hash=forged["hash"]))
        conn.execute(AuditChain.__table__.update().where(AuditChain.chain == chain).values(head=head[1]))


def test_a_digest_kept_outside_proves_the_anchors_were_not_rewritten(rt, flow):
    kept = integrity.anchor(rt).digest
    assert integrity.verify_all(rt, digest=kept).ok
    # a forger rewrites a contract's history and every anchor consistently ...
    _rewrite(rt, audit.chain_of(flow.id), "mgr1")
    assert not integrity.verify_all(rt).ok  # (the old anchor still disagrees)
    _sql(rt, "DELETE FROM audit_anchors")
    _sql(rt, "UPDATE audit_chains SET anchored_seq = 0")
    integrity.anchor(rt)
    assert integrity.verify_all(rt).ok
    # ... and only the digest kept outside shows it
    report = integrity.verify_all(rt, digest=kept)
    assert [b.kind for b in report.breaks] == ["anchor"] and "kept outside" in report.breaks[0].message


def test_numbers_hash_the_same_after_the_round_trip(rt, users):
    """jsonb gives 1e23 back as an integer that is not int(1e23); NaN cannot be stored at all."""
    values = {"big": 1e23, "pow": float(2**60), "int": 10**23, "small": 1.5e-7, "tenth": 0.1, "neg": -2.0,
              "nan": float("nan"), "inf": float("-inf"), "flag": True}
    with rt.write() as s:
        audit.record(s, rt.clock.now(), "note", actor="test", data=values)
    report = integrity.verify_all(rt)
    assert report.ok, report.summary()
    with rt.read() as s:
        stored = s.scalars(select(AuditEvent.data).where(AuditEvent.action == "note")).one()
    assert stored["nan"] == "nan" and stored["inf"] == "-inf" and stored["flag"] is True


def test_a_failing_timer_is_recorded_on_the_chain_and_retried_until_error(rt, clock, monkeypatch):
    """The engine fails on a due timer: each attempt is a timer_error event on the contract's chain (taken
    after the timer row, like the firing path), the timer gives up after MAX_ATTEMPTS, the record verifies."""
    from datetime import date, timedelta

    from SpiffWorkflow.exceptions import WorkflowException

    from models import Timer
    from workflows.engine import runner
    from workflows.services import timers

    from .test_cli import collecting

    flow = collecting(rt, clock, date(2027, 3, 1))

    def broken(workflow):
        raise WorkflowException("the installment script failed")

    monkeypatch.setattr(runner, "fire_timers", broken)
    clock.advance(timedelta(days=61))
    for _ in range(timers.MAX_ATTEMPTS):
        assert timers.fire_due_timers(rt, worker="w1").errors == 1
    assert timers.fire_due_timers(rt, worker="w1").errors == 0  # given up
    with rt.read() as s:
        status = s.scalar(select(Timer.status).where(Timer.instance_id == flow.id, Timer.spec_id.like("%installment%")))
        errors = s.scalars(select(AuditEvent.data).where(AuditEvent.instance_id == flow.id,
                                                         AuditEvent.action == "timer_error")).all()
    assert status == "error" and len(errors) == timers.MAX_ATTEMPTS
    assert "the installment script failed" in errors[0]["error"]
    assert integrity.verify_all(rt).ok
