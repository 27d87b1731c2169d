"""Replay against history: quotes with known amounts go through the real process, then a changed approval
matrix is replayed over their recorded inputs; exactly the quotes between the old and the new manager limit
skip manager review. Also: an unchanged process replays every path as it was (timers and escalations
included), rewound histories are counted apart, a broken package is refused, and only the latest version's
newest instances are read."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from workflows.services import replay, rewind, timers
from workflows.services.deployments import deploy_files, latest_deployment_id, package_for
from workflows.services.errors import DeployRefused

from .flow import Flow, approve, quote
from .service_messages import untranslated

# amount = 2 x unit price; the matrix asks a manager above 50,000 (and above 200,000 with legal and finance)
AMOUNTS = ["30000.00", "50000.00", "52000.00", "60000.00", "80000.00", "99000.00", "100000.00", "100002.00",
           "150000.00", "250000.00"]
APPROVERS = (("manager_review", "mgr1", "manager"), ("director_review", "dir1", "director"),
             ("legal_review", "legal1", "legal"), ("finance_review", "fin1", "finance"))


def files_with(rt, old: str, new: str) -> dict[str, bytes]:
    files = dict(package_for(rt, latest_deployment_id(rt, "quote_to_cash")).files)
    dmn = files["approval_matrix.dmn"].decode()
    assert old in dmn
    files["approval_matrix.dmn"] = dmn.replace(old, new).encode()
    return files


def start_quotes(rt, amounts=AMOUNTS) -> dict[str, Decimal]:
    """One quote per amount, approved at every level it needs; returns business key -> amount."""
    keys = {}
    for amount in amounts:
        flow = Flow(rt)
        flow.act("prepare_quote", "rep1", quote(str(Decimal(amount) / 2), customer_name=f"客户 {amount}"))
        flow.act("supervisor_review", "sup1", approve("supervisor"))
        for spec, user, role in APPROVERS:
            if spec in flow.open_specs():
                flow.act(spec, user, approve(role))
        keys[flow.view().business_key] = Decimal(amount)
    return keys


def test_raising_the_manager_limit_skips_manager_review_exactly_between_the_limits(rt) -> None:
    keys = start_quotes(rt)
    report = replay.replay(rt, "quote_to_cash", files_with(rt, "&gt; 50000", "&gt; 100000"), limit=120)
    expected = {k for k, a in keys.items() if Decimal(50000) < a <= Decimal(100000)}
    assert len(expected) == 5  # computed by hand: 52,000 60,000 80,000 99,000 100,000
    assert report.replayed == 10 and report.not_replayable == 0
    assert {d.business_key for d in report.different} == expected
    assert report.same == 5
    assert [(c.spec_id, c.skipped, c.added) for c in report.tasks] == [("manager_review", 5, 0)]
    for d in report.different:
        assert d.skipped == ["manager_review"] and d.added == []
        assert d.old_path == ["prepare_quote", "supervisor_review", "manager_review", "waiting: draft_contract"]
        assert d.new_path == ["prepare_quote", "supervisor_review", "waiting: draft_contract"]
        assert d.divergence == "'Manager review / 经理审批' would be skipped"
        assert d.customer == f"客户 {keys[d.business_key]:.2f}" and Decimal(d.amount) == keys[d.business_key]
    assert report.summary_en == ("Manager review would be skipped on 5 of the last 10 instances "
                                 "(5 take a different path)")
    assert report.summary_zh == "最近 10 个实例中，5 个将跳过「经理审批」（共 5 个路径不同）"


def test_lowering_the_limit_adds_manager_review_where_no_input_was_recorded(rt) -> None:
    keys = start_quotes(rt, ["30000.00", "40000.00", "50000.00", "60000.00"])
    report = replay.replay(rt, "quote_to_cash", files_with(rt, "&gt; 50000", "&gt; 35000"))
    expected = {k for k, a in keys.items() if Decimal(35000) < a <= Decimal(50000)}
    assert {d.business_key for d in report.different} == expected and len(expected) == 2
    for d in report.different:
        assert d.new_path == ["prepare_quote", "supervisor_review", "waiting: manager_review"]
        assert d.divergence == "would wait at 'Manager review / 经理审批', which this instance never had"
    # running quotes that now wait at a step they never had: skipped where they waited, not "added"
    assert [(c.spec_id, c.skipped, c.added) for c in report.tasks] == [("draft_contract", 2, 0)]


def test_an_unchanged_process_replays_every_path_including_timers_and_escalations(rt, clock) -> None:
    start_quotes(rt, ["30000.00", "60000.00"])
    flow = Flow(rt)  # to the end: the installment timer fires, the payment is late and escalated, then paid
    flow.to_collection(plan=[{"amount": "24000.00", "due_date": "2026-12-15"}])
    clock.set(datetime(2026, 12, 14, 16, 0, 1, tzinfo=UTC))
    assert timers.fire_due_timers(rt).fired == 1
    clock.set(datetime(2026, 12, 21, 16, 0, 1, tzinfo=UTC))
    assert timers.fire_due_timers(rt).fired == 1
    flow.act("overdue_escalation", "mgr1", {"escalation_action": "Called the CFO", "next_contact_on": "2026-12-22"})
    flow.act("record_payment", "fin1", {"amount_received": "24000.00", "received_on": "2026-12-22",
                                        "payment_reference": "BANK-1"})
    assert flow.view().end_event == "end_fulfilled"
    rejected = Flow(rt)
    rejected.act("prepare_quote", "rep1", quote())
    rejected.act("supervisor_review", "sup1", {"supervisor_decision": "reject", "supervisor_comment": "no"})
    files = dict(package_for(rt, latest_deployment_id(rt, "quote_to_cash")).files)
    report = replay.replay(rt, "quote_to_cash", files)
    assert (report.replayed, report.same, report.different) == (4, 4, [])
    assert report.summary_en == "All of the last 4 instances would take the same path"
    # and with the limit raised, the completed one is unaffected (24,000 never needed a manager)
    report = replay.replay(rt, "quote_to_cash", files_with(rt, "&gt; 50000", "&gt; 100000"))
    assert [d.customer for d in report.different] == ["客户 60000.00"] and report.same == 3


def test_rewound_histories_are_not_replayed_and_say_why(rt, users) -> None:
    start_quotes(rt, ["60000.00"])
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote("30000.00"))
    rewind.withdraw(rt, next(t for t in _completed(rt, flow.id) if t[1] == "prepare_quote")[0], users["rep1"])
    report = replay.replay(rt, "quote_to_cash", files_with(rt, "&gt; 50000", "&gt; 100000"))
    assert report.looked_at == 2 and report.replayed == 1 and report.not_replayable == 1
    assert report.reasons == {"the history has a withdraw": 1}
    assert report.summary_en.endswith("(1 could not be replayed)")


def _completed(rt, instance_id):
    from sqlalchemy import select

    from models import TaskRow

    with rt.read() as s:
        return s.execute(select(TaskRow.id, TaskRow.spec_id).where(TaskRow.instance_id == instance_id,
                                                                   TaskRow.status == "completed")).all()


def test_only_the_newest_instances_of_the_latest_version_are_read(rt) -> None:
    old_keys = start_quotes(rt, ["60000.00"])
    deploy_files(rt, files_with(rt, "&gt; 50000", "&gt; 50001"), comment="v2")  # a new latest version
    new_keys = start_quotes(rt, ["60000.00", "80000.00", "99000.00"])
    report = replay.replay(rt, "quote_to_cash", files_with(rt, "&gt; 50001", "&gt; 100000"), limit=2)
    assert report.base_version == 2 and report.looked_at == 2
    newest = sorted(new_keys)[-2:]
    assert sorted(d.business_key for d in report.different) == newest
    assert not set(old_keys) & {d.business_key for d in report.different}


def test_a_package_that_does_not_build_is_refused(rt) -> None:
    files = dict(package_for(rt, latest_deployment_id(rt, "quote_to_cash")).files)
    files["approval_matrix.dmn"] = b"<definitions"
    with pytest.raises(DeployRefused) as err:
        replay.replay(rt, "quote_to_cash", files)
    assert "does not build" in err.value.message and err.value.problems


def test_replay_of_120_instances_is_fast(rt) -> None:
    """120 quotes (the issue's example) replayed: reading their histories and simulating them all."""
    amounts = [f"{40000 + 2000 * i}.00" for i in range(120)]
    keys = {}
    for amount in amounts:  # to supervisor approval and, where needed, the manager's: enough history to replay
        flow = Flow(rt)
        flow.act("prepare_quote", "rep1", quote(str(Decimal(amount) / 2)))
        flow.act("supervisor_review", "sup1", approve("supervisor"))
        if "manager_review" in flow.open_specs():
            flow.act("manager_review", "mgr1", approve("manager"))
        keys[flow.view().business_key] = Decimal(amount)
    started = time.perf_counter()
    report = replay.replay(rt, "quote_to_cash", files_with(rt, "&gt; 50000", "&gt; 100000"), limit=120)
    seconds = time.perf_counter() - started
    assert report.replayed == 120
    assert len(report.different) == sum(1 for a in keys.values() if 50000 < a <= 100000) == 25
    print(f"\nreplay of 120 instances: {seconds:.2f} s")
    assert seconds < 10


def test_every_message_has_chinese() -> None:
    assert untranslated("workflows/services/replay.py", ("InvalidInput", "NotFound", "DeployRefused")) == []
    from webapp.messages import localize_message

    for message in ("'Manager review / 经理审批' would be skipped", "the history has a withdraw",
                    "would wait at 'Manager review / 经理审批', which this instance never had",
                    "'Legal review / 法务审核' would be added before 'Draft contract / 起草合同'"):
        assert localize_message(message, "zh-CN") != message
