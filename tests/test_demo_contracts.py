"""``lvyue demo --contracts N``: contracts driven through the real process over months of replayed history, with
the variety dashboards need, records that agree with the process, the same contracts for the same seed, and room
beside the small demo."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from click.testing import CliRunner, Result
from sqlalchemy import func, select

from models import Complaint, Contract, Customer, Installment, Instance, Payment, Quote, TaskRow
from workflows.cli import main
from workflows.demo import seed_demo
from workflows.services import consistency, instances


def demo(url: str, *args: str) -> str:
    result: Result = CliRunner().invoke(main, ["--db", url, "demo", "--no-progress", *args])
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result.stdout


def _first_quotes(rt, ids: list[int]) -> list[tuple[str, Decimal | None]]:
    """(customer, amount of the first quote) of each contract, in the order the contracts were started (None: the
    rep had not quoted yet at the time of the run)."""
    with rt.read() as s:
        amounts = dict(s.execute(select(Quote.instance_id, Quote.amount)
                                 .where(Quote.instance_id.in_(ids), Quote.revision == 1)).all())
        names = dict(s.execute(select(Instance.id, Instance.customer_name).where(Instance.id.in_(ids))).all())
    return [(names[i], amounts.get(i)) for i in ids]


def _contract_ids(rt) -> list[int]:
    with rt.read() as s:
        return list(s.scalars(select(Instance.id).where(Instance.process_key == "quote_to_cash").order_by(Instance.id)))


def test_demo_contracts_have_variety_and_agree_with_the_process(rt):
    out = demo(rt.database_url, "--contracts", "12", "--seed", "1")
    assert "demo: 12 contracts over the past 180 days (seed 1)" in out and "contracts/s" in out
    today = datetime.now(UTC).astimezone(ZoneInfo(rt.business_tz)).date()
    with rt.read() as s:
        q2c = s.execute(select(Instance.id, Instance.business_key, Instance.end_event)
                        .where(Instance.process_key == "quote_to_cash")).all()
        contracts = s.scalars(select(Contract)).all()
        installments = defaultdict(list)
        for row in s.scalars(select(Installment)):
            installments[row.contract_id].append(row)
        payments = defaultdict(list)
        for row in s.scalars(select(Payment)):
            payments[row.contract_id].append(row)
        escalations = s.scalar(select(func.count()).select_from(TaskRow).where(TaskRow.spec_id == "overdue_escalation"))
        complaints = s.scalar(select(func.count()).select_from(Complaint))
        started = s.execute(select(Instance.started_at, Instance.updated_at)).all()
    assert len(q2c) == 12
    ends = Counter(end for _, _, end in q2c)
    assert ends["end_rejected"] >= 1 and ends["end_fulfilled"] >= 1, ends
    assert len(contracts) >= 3 and complaints >= 1
    overdue_open = [i for rows in installments.values() for i in rows if i.due_date < today and i.paid < i.amount]
    assert escalations >= 1 or overdue_open, "a late payer"
    partial = [p for c in contracts for p in payments[c.id]
               if any(i.no == p.installment_no and p.amount < i.amount for i in installments[c.id])]
    assert partial, "a payment smaller than its installment"
    assert all(at <= datetime.now(UTC) for pair in started for at in pair), "the history lies in the past"

    keys = {i: key for i, key, _ in q2c}
    for contract in contracts:
        rows = sorted(installments[contract.id], key=lambda i: i.no)
        assert sum(i.amount for i in rows) == contract.amount, contract.business_key
        assert contract.paid == sum((p.amount for p in payments[contract.id]), Decimal("0.00"))
        data = instances.instance_data(rt, keys[contract.instance_id])
        assert Decimal(data["amount"]) == contract.amount
        assert [(Decimal(item["amount"]), item["due_date"]) for item in data["payment_plan"]] == [
            (i.amount, i.due_date.isoformat()) for i in rows]
        assert contract.paid == Decimal(data.get("paid_total") or 0)
        assert len(payments[contract.id]) == len(data.get("payments") or [])

    # the same seed and count: the same customers and quotes again, as new contracts
    first = _contract_ids(rt)
    demo(rt.database_url, "--contracts", "12", "--seed", "1")
    both = _contract_ids(rt)
    assert len(both) == 24 and both[:12] == first
    again, before = _first_quotes(rt, both[12:]), _first_quotes(rt, first)
    assert [name for name, _ in again] == [name for name, _ in before]
    same = [(a, b) for (_, a), (_, b) in zip(again, before, strict=True) if a is not None and b is not None]
    assert len(same) >= 10 and all(a == b for a, b in same), same
    report = consistency.check_all(rt, audit=True)
    assert report.ok, report.problems


def test_demo_adds_to_the_small_demo_without_collisions(rt):
    small = seed_demo(rt, progress=False)
    with rt.read() as s:
        before = dict(s.execute(select(Customer.name, Customer.owner_id)).all())
    out = demo(rt.database_url, "--contracts", "4", "--seed", "2", "--days", "60")
    assert "demo: 4 contracts over the past 60 days (seed 2)" in out
    with rt.read() as s:
        keys = list(s.scalars(select(Instance.business_key)))
        after = dict(s.execute(select(Customer.name, Customer.owner_id)).all())
        made = s.scalar(select(func.count()).select_from(Instance).where(Instance.business_key.not_in(small)))
    assert len(keys) == len(set(keys)) and made >= 4
    assert {name: after[name] for name in before} == before, "the small demo's customers keep their owners"
    assert len(after) > len(before)
    assert consistency.check_all(rt, audit=True).ok


def test_demo_needs_the_demo_users(empty_rt):
    result = CliRunner().invoke(main, ["--db", empty_rt.database_url, "demo", "--contracts", "1", "--no-progress"])
    assert result.exit_code == 1 and "demo users" in result.stderr
