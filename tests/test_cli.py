"""The ``lvyue`` command against a real database: set-up, deploy, start, list, claim, complete, show and
the timer worker. Failures exit with status 1 and say why on stderr."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from click.testing import CliRunner, Result
from sqlalchemy import func, select

from models import AuditEvent, Deployment, Instance, Timer, User
from workflows import config
from workflows.cli import main
from workflows.runtime import Runtime
from workflows.services import accounts, instances, tasks

from .flow import Flow, approve, quote

BAD = Path(__file__).parent / "bpmn" / "bad"


def lvyue(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--db", url, *args])


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result.stdout


def failed(result: Result) -> str:
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stderr.startswith("error: "), result.stderr
    return result.stderr


def count(rt, model, *where) -> int:
    with rt.read() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_init_db_on_an_empty_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    out = ok(lvyue(url, "init-db"))
    assert f"demo users: {len(accounts.DEMO_USERS)} created" in out
    assert "complaint v1: deployed" in out and "quote_to_cash v1: deployed" in out
    assert "ownership_dispute v1: deployed" in out
    again = ok(lvyue(url, "init-db"))
    assert "demo users: 0 created" in again
    assert "complaint v1: unchanged" in again and "quote_to_cash v1: unchanged" in again
    rt = Runtime(url)
    try:
        assert count(rt, User) == len(accounts.DEMO_USERS)
        assert count(rt, Deployment) == 3  # quote_to_cash, complaint, ownership_dispute
        assert accounts.authenticate(rt, "rep1", accounts.DEMO_PASSWORD) is not None
        assert accounts.get_user(rt, "owner1").roles == {"process_owner"}
    finally:
        rt.dispose()
    out = ok(lvyue(url, "start", "quote_to_cash", "--as", "rep1"))
    assert "Prepare quote" in out


def test_start_claim_complete_and_show(rt, tmp_path):
    url = rt.database_url
    out = ok(lvyue(url, "start", "quote_to_cash", "--as", "rep1", "--data", '{"customer_name": "X"}'))
    match = re.search(r"started (\S+) \(instance (\d+), version (\d+)\)", out)
    assert match, out
    key, instance_id = match.group(1), int(match.group(2))
    view = instances.get_instance(rt, key)
    assert (view.id, view.customer_name, view.version) == (instance_id, "X", int(match.group(3)))
    ((task_id, spec_id, role, holder),) = view.open_tasks
    assert (spec_id, role, holder) == ("prepare_quote", "sales_rep", None)
    assert f"task {task_id}: Prepare quote / 编制报价 [sales_rep]" in out

    listing = ok(lvyue(url, "tasks", "--as", "rep1"))
    assert re.search(rf"^\s*{task_id}\s+{re.escape(key)}\s+Prepare quote", listing, re.M), listing
    assert "page 1 of 1 (1 tasks)" in listing
    assert ok(lvyue(url, "tasks", "--as", "fin1")).strip() == "no tasks"
    assert "no tasks" in ok(lvyue(url, "tasks", "--as", "rep1", "--scope", "mine"))
    assert "no active user 'ghost'" in failed(lvyue(url, "tasks", "--as", "ghost"))

    assert f"task {task_id} (Prepare quote / 编制报价) is now held by rep1" in ok(
        lvyue(url, "claim", str(task_id), "--as", "rep1"))
    assert tasks.get_task(rt, task_id).assignee == "rep1"
    assert "claimed by rep1" in failed(lvyue(url, "claim", str(task_id), "--as", "rep2"))
    assert str(task_id) in ok(lvyue(url, "tasks", "--as", "rep1", "--scope", "mine"))

    # a bad form: exit 1, one line per field, nothing changed
    version = instances.get_instance(rt, key).version
    bad = dict(quote(), discount_pct="ten")
    bad["line_items"][0]["quantity"] = 1.5
    del bad["payment_terms"]
    err = failed(lvyue(url, "complete", str(task_id), "--as", "rep1", "--data", json.dumps(bad)))
    assert "the form 'Prepare quote / 编制报价' has errors" in err
    assert "  discount_pct: must be a number" in err
    assert "  line_items/0/quantity: must be a whole number" in err
    assert "  payment_terms: this field is required" in err
    assert instances.get_instance(rt, key).version == version
    assert tasks.get_task(rt, task_id).status == "open"

    # not JSON / not an object: a usage error (exit 2) before anything runs
    for data, message in (("{oops", "not valid JSON"), ("[1, 2]", "must be a JSON object")):
        result = lvyue(url, "complete", str(task_id), "--as", "rep1", "--data", data)
        assert result.exit_code == 2 and message in result.stderr, (result.exit_code, result.stderr)

    # data from a file
    form = tmp_path / "quote.json"
    form.write_text(json.dumps(quote()), encoding="utf-8")
    out = ok(lvyue(url, "complete", str(task_id), "--as", "rep1", "--data", f"@{form}"))
    assert re.search(rf"completed task {task_id}; instance {instance_id} is running \(version \d+\)", out), out
    review = tasks.open_tasks_of_instance(rt, instance_id)[0]
    assert review.spec_id == "supervisor_review"
    assert f"task {review.id}: Supervisor review / 主管审核 [supervisor]" in out

    # a stale --version is refused
    stale = instances.get_instance(rt, key).version - 1
    assert "changed since" in failed(lvyue(url, "complete", str(review.id), "--as", "sup1",
                                           "--data", json.dumps(approve("supervisor")), "--version", str(stale)))
    assert "already completed" in failed(lvyue(url, "complete", str(task_id), "--as", "rep1",
                                               "--data", json.dumps(quote())))
    ok(lvyue(url, "complete", str(review.id), "--as", "sup1", "--data", json.dumps(approve("supervisor"))))

    shown = ok(lvyue(url, "show", key))
    assert f"{key} (quote_to_cash v1): running, stage contract, customer {quote()['customer_name']}, " \
           "amount 24000.00" in shown
    draft = tasks.open_tasks_of_instance(rt, instance_id)[0]
    assert f"open task {draft.id}: draft_contract [sales_rep] held by nobody" in shown
    path = re.search(r"path: (.*)", shown).group(1).split(" → ")
    assert path[0] == "start_quote"
    assert [p for p in path if p in {"prepare_quote", "supervisor_review"}] == ["prepare_quote", "supervisor_review"]
    assert ok(lvyue(url, "show", str(instance_id))) == shown
    assert "no instance 'Q-1999-00001'" in failed(lvyue(url, "show", "Q-1999-00001"))


def test_a_missing_data_file_is_a_usage_error(rt, tmp_path):
    flow = Flow(rt)
    task = flow.task("prepare_quote")
    result = lvyue(rt.database_url, "complete", str(task.id), "--as", "rep1", "--data", f"@{tmp_path / 'none.json'}")
    assert result.exit_code == 2, (result.exit_code, repr(result.exception))
    assert "none.json" in result.stderr


def test_deploy_prints_the_problems_and_exits_1(rt, tmp_path):
    url = rt.database_url
    before = count(rt, Deployment)
    err = failed(lvyue(url, "deploy", str(BAD / "xxe.bpmn"), "--as", "owner1"))
    assert "the package cannot be deployed (1 problem(s))" in err
    assert "  - xxe.bpmn: DTDs and entity declarations are not allowed in process files" in err
    err = failed(lvyue(url, "deploy", str(BAD / "unknown_element.bpmn")))
    assert "unknown_element.bpmn:" in err and "fooTask" in err
    assert "rep1 is not a process owner" in failed(lvyue(url, "deploy", str(config.bpmn_dir()), "--as", "rep1"))
    assert count(rt, Deployment) == before

    out = ok(lvyue(url, "deploy", str(config.bpmn_dir()), "--as", "owner1"))
    assert "quote_to_cash v1: unchanged (same content as the latest version)" in out
    assert count(rt, Deployment) == before

    # a changed copy of the real set is a new version
    copy = tmp_path / "bpmn"
    shutil.copytree(config.bpmn_dir(), copy)
    form = copy / "forms" / "file_contract.schema.json"
    schema = json.loads(form.read_text(encoding="utf-8"))
    schema["title"] = "File the contract"
    form.write_text(json.dumps(schema), encoding="utf-8")
    out = ok(lvyue(url, "deploy", str(copy / "quote_to_cash.bpmn"), "--as", "owner1", "--comment", "retitled"))
    assert out.strip() == "quote_to_cash v2: deployed"
    assert count(rt, Deployment) == before + 1
    with rt.read() as s:
        dep = s.scalar(select(Deployment).where(Deployment.process_key == "quote_to_cash", Deployment.version == 2))
    assert dep.comment == "retitled" and dep.deployed_by_id == accounts.get_user(rt, "owner1").id


def collecting(rt, clock, due_date: date) -> Flow:
    """An instance waiting for its only installment, due 00:00 Shanghai on ``due_date``; built 60 days before."""
    clock.set(datetime.combine(due_date - timedelta(days=60), time(2), UTC))
    flow = Flow(rt)
    flow.to_collection(plan=[{"amount": "24000.00", "due_date": due_date.isoformat()}])
    assert flow.open_specs() == set()
    with rt.read() as s:
        assert s.scalar(select(func.count()).select_from(Timer).where(Timer.instance_id == flow.id,
                                                                      Timer.status == "waiting")) == 1
    return flow


def test_worker_once_fires_what_is_due(rt, clock):
    # the CLI's runtime has the system clock: the installment was due yesterday, the escalation is days away
    yesterday = datetime.now(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=1)
    flow = collecting(rt, clock, yesterday)
    out = ok(lvyue(rt.database_url, "worker", "--once", "--name", "cli-worker"))
    assert out.strip().splitlines()[-1] == "fired 1 timer(s); 0 error(s)"
    assert flow.open_specs() == {"record_payment"}
    assert ok(lvyue(rt.database_url, "worker", "--once")).strip().splitlines()[-1] == "fired 0 timer(s); 0 error(s)"
    with rt.read() as s:
        assert s.scalar(select(Instance.stage).where(Instance.id == flow.id)) == "collection"
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.instance_id == flow.id,
                                                         AuditEvent.action == "timer")))
    assert [(e.actor, e.spec_id) for e in events] == [("cli-worker", "wait_installment_due")]
    assert [t.spec_id for t in tasks.open_tasks_of_instance(rt, flow.id)] == ["record_payment"]


def test_worker_once_records_a_failing_timer_and_fires_the_others(rt, clock):
    from .test_hostile_bpmn import waiting_on_timers

    # built three days ago (the CLI's runtime has the system clock): the timers fell due the day after
    clock.set(datetime.now(UTC) - timedelta(days=3))
    ids = waiting_on_timers(rt, {"ranged": "s = range(quantity)\ndoubled = 1", "calm": "doubled = quantity * 2"},
                            ["ranged", "calm", "calm"])
    out = ok(lvyue(rt.database_url, "worker", "--once", "--name", "cli-worker"))
    assert out.strip().splitlines()[-1] == "fired 2 timer(s); 1 error(s)"
    with rt.read() as s:
        bad = s.scalar(select(Timer).where(Timer.instance_id == ids["ranged"][0]))
        assert (bad.status, bad.attempts) == ("waiting", 1)
        assert "the script left 's' as a range, which cannot be saved" in bad.last_error
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "timer_error")))
        assert [(e.actor, e.instance_id) for e in events] == [("cli-worker", ids["ranged"][0])]
        assert [s.get(Instance, i).status for i in ids["calm"]] == ["completed", "completed"]
    # it stays first by due date: the next run records another attempt and still exits normally
    assert ok(lvyue(rt.database_url, "worker", "--once")).strip().splitlines()[-1] == "fired 0 timer(s); 1 error(s)"
    assert count(rt, Timer, Timer.instance_id == ids["ranged"][0], Timer.attempts == 2) == 1


def test_a_worker_pass_survives_a_failure_of_the_timer_pass_itself(rt, clock, monkeypatch, caplog):
    from workflows import cli
    from workflows.services import timers

    def away(*args, **kwargs):
        raise ConnectionError("the database is away")

    monkeypatch.setattr(timers, "fire_due_timers", away)
    report, sent = cli._worker_pass(rt, config.smtp_settings(), "worker")
    assert (report, sent) == (None, None)  # logged; mail and anchoring still had their turn
    assert "firing the due timers failed" in caplog.text and "the database is away" in caplog.text
    result = lvyue(rt.database_url, "worker", "--once")
    assert result.exit_code == 1 and "firing the due timers failed" in result.stderr


def test_worker_audits_an_escalation_that_was_already_due(rt, clock):
    # the worker was down: the installment is 30 days overdue when it runs
    flow = collecting(rt, clock, datetime.now(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=30))
    ok(lvyue(rt.database_url, "worker", "--once"))
    assert flow.open_specs() == {"record_payment", "overdue_escalation"}
    with rt.read() as s:
        actions = list(s.scalars(select(AuditEvent.action).where(AuditEvent.instance_id == flow.id)))
    assert actions.count("timer") == 1
    assert actions.count("escalation") == 1


def test_audit_verify_and_anchor(rt, clock):
    flow = Flow(rt)
    flow.act("prepare_quote", "rep1", quote())
    key = flow.view().business_key
    assert ok(lvyue(rt.database_url, "audit", "verify", key)).startswith("intact: ")
    assert "intact: " in ok(lvyue(rt.database_url, "audit", "verify"))
    out = ok(lvyue(rt.database_url, "audit", "anchor"))
    assert out.startswith("anchored anchor #1 ") and re.search(r"^digest [0-9a-f]{64}$", out, re.M)
    assert ok(lvyue(rt.database_url, "audit", "anchor")).startswith("nothing moved since anchor #1")
    with rt.engine.begin() as conn:
        conn.execute(AuditEvent.__table__.update().where(AuditEvent.instance_id == flow.id,
                                                         AuditEvent.action == "complete").values(actor="mgr1"))
    result = lvyue(rt.database_url, "audit", "verify")
    assert result.exit_code == 1
    assert re.search(rf"^BROKEN i:{flow.id}: event #\d+ .* was altered", result.stdout, re.M), result.stdout
    assert failed(lvyue(rt.database_url, "audit", "verify", "NOPE-1")) == "error: no contract 'NOPE-1'\n"


def test_worker_anchors_the_audit_record(rt, clock):
    Flow(rt)
    ok(lvyue(rt.database_url, "worker", "--once"))
    assert "nothing moved since anchor #1" in ok(lvyue(rt.database_url, "audit", "anchor"))
