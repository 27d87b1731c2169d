"""Demo contracts: every stage of quote to cash plus a complaint, work waiting for each demo role, seeded
through the service layer on a replayed clock, and only once."""

from __future__ import annotations

from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from models import AuditEvent, Instance, TaskRow, Timer
from workflows.cli import main
from workflows.demo import seed_demo
from workflows.services import instances, tasks
from workflows.services.errors import NotFound

WORKERS = ("rep1", "sup1", "mgr1", "legal1", "fin1", "dlv1", "svc1")


@pytest.fixture
def seeded(rt) -> list[str]:
    return seed_demo(rt, progress=False)


def _views(rt, keys):
    return [instances.get_instance(rt, key) for key in keys]


def test_seed_makes_contracts_in_every_stage(rt, seeded):
    keys = seeded
    views = _views(rt, keys)
    contracts = [v for v in views if v.process_key == "quote_to_cash"]
    assert len(contracts) >= 8
    assert len(set(keys)) == len(keys)
    assert all(v.customer_name for v in views)
    stages = {v.stage for v in views}
    assert len(stages) >= 6, stages
    assert {"quote", "approval", "contract", "delivery", "collection", "after_sales", "done"} <= stages
    ends = {v.end_event for v in views if v.status == "completed"}
    assert ends == {"end_fulfilled", "end_rejected"}
    fulfilled = [v for v in views if v.end_event == "end_fulfilled"]
    assert len(fulfilled) == 1 and fulfilled[0].stage == "done" and not fulfilled[0].open_tasks
    amounts = [v.amount for v in contracts if v.amount is not None]
    assert any(a <= Decimal("50000") for a in amounts), "a small one the supervisor approves alone"
    assert any(Decimal("50000") < a <= Decimal("1000000") for a in amounts), "ones for a manager"
    assert any(a > Decimal("1000000") for a in amounts), "one above the director limit"
    with rt.read() as s:
        starters = set(s.scalars(select(Instance.started_by_id).where(Instance.process_key == "quote_to_cash")))
    assert len(starters) == 2, "two reps started contracts"


def test_every_working_role_has_work_and_some_hold_it(rt, users, seeded):
    for name in WORKERS:
        mine = tasks.list_tasks(rt, users[name], "mine").total
        queued = tasks.list_tasks(rt, users[name], "roles").total
        assert mine + queued > 0, f"{name} has nothing to do"
    for name in ("rep1", "sup1", "legal1", "fin1"):
        assert tasks.list_tasks(rt, users[name], "mine").total > 0, f"{name}'s own list is empty"
    assert tasks.list_tasks(rt, users["dir1"], "roles").total > 0
    # some work is left unclaimed in the queues
    for name in ("mgr1", "dlv1", "svc1"):
        assert tasks.list_tasks(rt, users[name], "roles").total > 0


def test_exactly_one_task_is_overdue_and_the_clock_is_given_back(rt, clock, seeded):
    assert rt.clock is clock
    now = clock.now()
    with rt.read() as s:
        overdue = s.execute(select(TaskRow.spec_id, TaskRow.assignee_id).where(
            TaskRow.status == "open", TaskRow.due_at < now)).all()
        latest = s.scalar(select(func.max(AuditEvent.at)).where(AuditEvent.instance_id.is_not(None)))
        times = list(s.scalars(select(AuditEvent.at).where(AuditEvent.instance_id.is_not(None))
                               .order_by(AuditEvent.id)))
        late_timers = s.scalar(select(func.count()).select_from(Timer).where(
            Timer.status == "waiting", Timer.due_at <= now))
    assert overdue == [("manager_review", None)]
    assert latest <= now, "the history lies in the past"
    assert times == sorted(times), "the contracts' history was replayed in time order"
    assert late_timers == 0, "every timer that is due has fired"


def test_send_back_and_collection_carry_their_history(rt, seeded):
    keys = seeded
    views = _views(rt, keys)
    sent_back = [v for v in views if v.stage == "quote" and v.amount is not None]
    assert len(sent_back) == 1
    data = instances.instance_data(rt, sent_back[0].business_key)
    assert data["send_back"]["role"] == "supervisor" and data["send_back"]["comment"]
    assert [spec for spec in sent_back[0].path if spec == "prepare_quote"] == ["prepare_quote"]

    collecting = [v for v in views if v.stage == "collection"]
    assert len(collecting) == 1
    data = instances.instance_data(rt, collecting[0].business_key)
    assert len(data["payments"]) == 1 and data["installment_no"] == 2
    assert data["paid_total"] == Decimal(data["payment_plan"][0]["amount"])
    assert [(spec, holder) for _, spec, _, holder in collecting[0].open_tasks] == [("record_payment", "fin1")]

    complaint = [v for v in views if v.process_key == "complaint"]
    assert len(complaint) == 1
    with rt.read() as s:
        related = s.scalar(select(Instance.related_key).where(Instance.id == complaint[0].id))
    assert instances.get_instance(rt, related).end_event == "end_fulfilled"
    assert [spec for _, spec, _, _ in complaint[0].open_tasks] == ["accept_complaint"]


def test_seeding_twice_makes_nothing_new(rt, seeded):
    keys = seeded
    with rt.read() as s:
        before = (s.scalar(select(func.count()).select_from(Instance)),
                  s.scalar(select(func.count()).select_from(AuditEvent)))
    assert seed_demo(rt, progress=False) == []
    with rt.read() as s:
        after = (s.scalar(select(func.count()).select_from(Instance)),
                 s.scalar(select(func.count()).select_from(AuditEvent)))
    assert after == before and before[0] == len(keys)


def test_demo_contracts_move_on_with_the_next_role(rt, users, seeded):
    review = tasks.list_tasks(rt, users["sup1"], "mine").items[0]
    assert review.spec_id == "supervisor_review"
    done = tasks.complete(rt, review.id, users["sup1"], {"supervisor_decision": "approve"})
    assert [t.spec_id for t in tasks.open_tasks_of_instance(rt, done.instance_id)] == ["draft_contract"]

    delivery = tasks.list_tasks(rt, users["dlv1"], "roles").items[0]
    assert delivery.spec_id == "execute_delivery" and delivery.instance_id != review.instance_id
    tasks.claim(rt, delivery.id, users["dlv1"])
    done = tasks.complete(rt, delivery.id, users["dlv1"], {"delivered_on": "2026-11-23"})
    assert [t.spec_id for t in tasks.open_tasks_of_instance(rt, done.instance_id)] == ["customer_acceptance"]
    assert instances.get_instance(rt, done.instance_id).stage == "delivery"


def test_seeding_needs_the_demo_users(empty_rt):
    with pytest.raises(NotFound, match="demo users"):
        seed_demo(empty_rt, progress=False)


def test_cli_init_db_with_demo_contracts_and_seed_demo(tmp_path):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    result = CliRunner().invoke(main, ["--db", url, "init-db", "--demo-contracts"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "demo contracts: " in result.stdout and "created" in result.stdout
    assert "end_fulfilled" in result.stdout and "accept_complaint" in result.stdout
    listed = CliRunner().invoke(main, ["--db", url, "tasks", "--as", "fin1", "--scope", "mine"])
    assert listed.exit_code == 0, (listed.output, listed.exception)
    assert "Record payment" in listed.stdout and "Finance review" in listed.stdout
    again = CliRunner().invoke(main, ["--db", url, "seed-demo", "--no-progress"])
    assert again.exit_code == 0, (again.output, again.exception)
    assert "none created" in again.stdout
    plain = CliRunner().invoke(main, ["--db", f"sqlite:///{tmp_path / 'plain.db'}", "init-db"])
    assert plain.exit_code == 0 and "demo contracts" not in plain.stdout
