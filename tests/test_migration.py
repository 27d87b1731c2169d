"""Moving running quotes to a newer version of quote_to_cash: dry run, migration, refusals, races, the audit."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from models import AuditEvent, Instance, TaskRow
from workflows.services import consistency, deployments, migration, timers
from workflows.services.errors import InvalidInput, NotFound

from .flow import Flow, approve, quote

BPMN = Path(__file__).resolve().parents[1] / "bpmn" / "quote_to_cash.bpmn"

EXTRA_TASK = """
    <bpmn:userTask id="extra_check" name="Extra check / 额外检查">
      <bpmn:extensionElements>
        <spiffworkflow:properties>
          <spiffworkflow:property name="formJsonSchemaFilename" value="extra_check.schema.json" />
          <spiffworkflow:property name="stage" value="quote" />
        </spiffworkflow:properties>
      </bpmn:extensionElements>
      <bpmn:incoming>Flow_prepare_quote_to_compute_totals</bpmn:incoming>
      <bpmn:outgoing>Flow_extra_check_to_compute_totals</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="Flow_extra_check_to_compute_totals" sourceRef="extra_check" targetRef="compute_totals" />
"""
EXTRA_FORM = {"type": "object", "title": "Extra check", "properties": {"extra_note": {"type": "string",
                                                                                      "title": "Note"}},
              "required": ["extra_note"]}


def version_two(files: dict[str, bytes], *, extra_step=True, rename_supervisor=True, manager_limit=True,
                timer=False) -> dict[str, bytes]:
    """quote_to_cash with a step added after prepare_quote, supervisor_review renamed (removed, as far as running
    quotes go), the manager limit of the approval matrix raised from 50,000 to 100,000, optionally a changed
    installment timer."""
    files = dict(files)
    text = files["quote_to_cash.bpmn"].decode()
    if extra_step:
        text = text.replace('sourceRef="prepare_quote" targetRef="compute_totals"',
                            'sourceRef="prepare_quote" targetRef="extra_check"')
        text = text.replace("<bpmn:flowNodeRef>prepare_quote</bpmn:flowNodeRef>",
                            "<bpmn:flowNodeRef>prepare_quote</bpmn:flowNodeRef>"
                            "<bpmn:flowNodeRef>extra_check</bpmn:flowNodeRef>")
        script = '    <bpmn:scriptTask id="compute_totals"'
        text = text.replace(script, EXTRA_TASK + script)
        files["extra_check.schema.json"] = json.dumps(EXTRA_FORM).encode()
    if rename_supervisor:
        text = re.sub(r"supervisor_review(?!\.(?:ui)?schema\.json)", "supervisor_check", text)
    if timer:
        text = text.replace(">installment_due_at<", ">installment_due_at + timedelta(days=1)<")
    files["quote_to_cash.bpmn"] = text.encode()
    if manager_limit:
        dmn = files["approval_matrix.dmn"].decode()
        assert dmn.count("&gt; 50000<") == 1
        files["approval_matrix.dmn"] = dmn.replace("&gt; 50000<", "&gt; 100000<").encode()
    return files


def deploy_v2(rt, users, **changes) -> deployments.DeployResult:
    files = version_two(deployments.collect_files(BPMN), **changes)
    result = deployments.deploy_files(rt, files, users["owner1"], "v2 for the migration tests")
    assert result.created and result.version == 2
    return result


def _events(rt, instance_id: int, action: str) -> list[AuditEvent]:
    with rt.read() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.instance_id == instance_id,
                                                       AuditEvent.action == action)))


def _instance(rt, instance_id: int) -> Instance:
    with rt.read() as s:
        return s.get(Instance, instance_id)


def _waiting_at_supervisor(rt) -> Flow:
    flow = Flow(rt, data={"customer_name": "华北电气"})
    flow.act("prepare_quote", "rep1", quote("30000.00"))
    assert flow.open_specs() == {"supervisor_review"}
    return flow


def test_dry_run_lists_who_can_move_and_why_not(rt, users):
    at_quote = Flow(rt, data={"customer_name": "华东机械"})
    at_review = _waiting_at_supervisor(rt)
    v2 = deploy_v2(rt, users)
    on_v2 = Flow(rt, data={"customer_name": "新版本客户"})  # already on the target: not a candidate

    run = migration.dry_run(rt, "quote_to_cash", v2.deployment_id)
    assert run.to_version == 2
    assert run.page.total == 2
    by_id = {c.instance_id: c for c in run.page.items}
    assert set(by_id) == {at_quote.id, at_review.id} and on_v2.id not in by_id
    movable = by_id[at_quote.id]
    assert movable.movable and movable.reasons == [] and movable.from_version == 1
    assert movable.open_tasks == ["Prepare quote / 编制报价"]
    refused = by_id[at_review.id]
    assert not refused.movable
    assert refused.reasons == ["open task 'Supervisor review / 主管审核' was removed"]
    assert refused.instance_version == _instance(rt, at_review.id).version

    second = migration.dry_run(rt, "quote_to_cash", v2.deployment_id, page=2, per_page=1)
    assert second.page.total == 2 and [c.instance_id for c in second.page.items] == [at_review.id]
    with pytest.raises(NotFound):
        migration.dry_run(rt, "complaint", v2.deployment_id)


def test_a_moved_quote_runs_to_the_end_on_the_new_version(rt, users, clock):
    moving = Flow(rt, data={"customer_name": "华东机械"})
    staying = _waiting_at_supervisor(rt)
    before = _instance(rt, moving.id)
    v2 = deploy_v2(rt, users)

    report = migration.migrate(rt, users["owner1"], "quote_to_cash", v2.deployment_id, [moving.id, staying.id])
    assert report.moved == [(moving.id, moving.started.business_key)]
    assert [(r.instance_id, r.reasons) for r in report.refused] == [
        (staying.id, ["open task 'Supervisor review / 主管审核' was removed"])]

    after = _instance(rt, moving.id)
    assert after.deployment_id == v2.deployment_id and after.version == before.version + 1
    assert _instance(rt, staying.id).deployment_id == before.deployment_id
    [event] = _events(rt, moving.id, "migrate")
    assert event.actor == "owner1" and event.deployment_id == v2.deployment_id
    assert event.data == {"from_deployment_id": before.deployment_id, "to_deployment_id": v2.deployment_id,
                          "from_version": 1, "to_version": 2}
    assert _events(rt, staying.id, "migrate") == []
    assert consistency.check_instances(rt, [moving.id, staying.id]) == []

    # the moved quote takes v2's new step, its renamed review and its raised manager limit
    moving.act("prepare_quote", "rep1", quote("30000.00"))
    assert moving.open_specs() == {"extra_check"}
    moving.act("extra_check", "rep1", {"extra_note": "checked"})
    assert moving.open_specs() == {"supervisor_check"}
    moving.act("supervisor_check", "sup1", approve("supervisor"))
    assert moving.open_specs() == {"draft_contract"}, "60,000 is below v2's manager limit of 100,000"
    moving.through_contract(plan=[{"amount": "7200.00", "due_date": "2026-12-15"},
                                  {"amount": "52800.00", "due_date": "2027-01-15"}])  # the plan fits 60,000
    moving.through_delivery()
    clock.set(datetime(2026, 12, 14, 16, 0, 1, tzinfo=UTC))
    assert timers.fire_due_timers(rt).fired == 1
    moving.act("record_payment", "fin1", {"amount_received": "7200.00", "received_on": "2026-12-15",
                                          "payment_reference": "BANK-1"})
    clock.set(datetime(2027, 1, 14, 16, 0, 1, tzinfo=UTC))
    assert timers.fire_due_timers(rt).fired == 1
    moving.act("record_payment", "fin1", {"amount_received": "52800.00", "received_on": "2027-01-15",
                                          "payment_reference": "BANK-2"})
    view = moving.view()
    assert view.status == "completed" and view.end_event == "end_fulfilled"
    assert "extra_check" in view.path and "supervisor_check" in view.path

    # the one left behind keeps v1: its review, and v1's manager limit
    staying.act("supervisor_review", "sup1", approve("supervisor"))
    assert staying.open_specs() == {"manager_review"}
    assert consistency.check_instances(rt, [moving.id, staying.id]) == []


def test_an_open_task_renamed_in_place_moves_and_its_row_follows(rt, users):
    flow = _waiting_at_supervisor(rt)
    files = deployments.collect_files(BPMN)
    bpmn = files["quote_to_cash.bpmn"].decode().replace('name="Supervisor review / 主管审核"',
                                                        'name="Supervisor check / 主管复核"')
    files["quote_to_cash.bpmn"] = bpmn.encode()
    v2 = deployments.deploy_files(rt, files, users["owner1"], "renamed")
    report = migration.migrate(rt, users["owner1"], "quote_to_cash", v2.deployment_id, [flow.id])
    assert report.moved and not report.refused
    with rt.read() as s:
        names = list(s.scalars(select(TaskRow.name).where(TaskRow.instance_id == flow.id, TaskRow.status == "open")))
    assert names == ["Supervisor check / 主管复核"]
    flow.act("supervisor_review", "sup1", approve("supervisor"))
    assert flow.open_specs() == {"manager_review"}
    assert consistency.check_instances(rt, [flow.id]) == []


def test_changed_form_lane_and_timer_are_refused(rt, users, clock):
    at_review = _waiting_at_supervisor(rt)
    collecting = Flow(rt, data={"customer_name": "华东机械"})
    collecting.to_collection()
    files = deployments.collect_files(BPMN)
    schema = json.loads(files["supervisor_review.schema.json"])
    schema["properties"]["extra"] = {"type": "string", "title": "Extra"}
    files["supervisor_review.schema.json"] = json.dumps(schema).encode()
    files = version_two(files, extra_step=False, rename_supervisor=False, manager_limit=False, timer=True)
    v2 = deployments.deploy_files(rt, files, users["owner1"], "form and timer")
    run = {c.instance_id: c for c in migration.dry_run(rt, "quote_to_cash", v2.deployment_id).page.items}
    assert run[at_review.id].reasons == ["the form of open task 'Supervisor review / 主管审核' changed"]
    assert run[collecting.id].reasons == ["a timer of 'Installment due / 等待到期日' changed"]
    report = migration.migrate(rt, users["owner1"], "quote_to_cash", v2.deployment_id, [at_review.id, collecting.id])
    assert report.moved == [] and len(report.refused) == 2

    lane = deployments.collect_files(BPMN)
    text = lane["quote_to_cash.bpmn"].decode()
    text = text.replace("<bpmn:flowNodeRef>supervisor_review</bpmn:flowNodeRef>", "")
    text = text.replace("<bpmn:flowNodeRef>prepare_quote</bpmn:flowNodeRef>",
                        "<bpmn:flowNodeRef>prepare_quote</bpmn:flowNodeRef>"
                        "<bpmn:flowNodeRef>supervisor_review</bpmn:flowNodeRef>")
    lane["quote_to_cash.bpmn"] = text.encode()
    v3 = deployments.deploy_files(rt, lane, users["owner1"], "review by the rep")
    [candidate] = [c for c in migration.dry_run(rt, "quote_to_cash", v3.deployment_id).page.items
                   if c.instance_id == at_review.id]
    assert candidate.reasons == ["open task 'Supervisor review / 主管审核' changed its lane "
                                 "(role 'supervisor' -> 'sales_rep')"]


def test_an_instance_that_changed_since_the_dry_run_is_refused(rt, users):
    flow = Flow(rt, data={"customer_name": "华东机械"})
    v2 = deploy_v2(rt, users, rename_supervisor=False)
    [seen] = migration.dry_run(rt, "quote_to_cash", v2.deployment_id).page.items
    assert seen.movable
    flow.act("prepare_quote", "rep1", quote("30000.00"))  # the contract moves on meanwhile
    report = migration.migrate(rt, users["owner1"], "quote_to_cash", v2.deployment_id, [flow.id],
                               versions={flow.id: seen.instance_version})
    assert report.moved == []
    assert report.refused[0].reasons == ["it changed since the dry run; run the dry run again"]
    assert _instance(rt, flow.id).deployment_id != v2.deployment_id
    assert _events(rt, flow.id, "migrate") == []
    again = migration.migrate(rt, users["owner1"], "quote_to_cash", v2.deployment_id, [flow.id])
    assert again.moved == [(flow.id, flow.started.business_key)]
    again = migration.migrate(rt, users["owner1"], "quote_to_cash", v2.deployment_id, [flow.id])
    assert again.refused[0].reasons == ["it is on version 2 already, not older than 2"]
    with pytest.raises(InvalidInput):
        migration.migrate(rt, users["owner1"], "quote_to_cash", v2.deployment_id, [])


def test_a_completion_racing_a_migration_leaves_a_consistent_instance(rt, users):
    flows = [Flow(rt, data={"customer_name": f"客户 {i}"}) for i in range(3)]
    v2 = deploy_v2(rt, users, rename_supervisor=False)
    task_ids = [f.task("prepare_quote").id for f in flows]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def complete_all():
        barrier.wait()
        for f, task_id in zip(flows, task_ids, strict=True):
            try:
                from workflows.services import tasks
                tasks.complete(rt, task_id, f.user("rep1"), quote("30000.00"))
            except BaseException as err:  # noqa: BLE001 - collected and checked below
                errors.append(err)

    def migrate_all():
        barrier.wait()
        try:
            migration.migrate(rt, users["owner1"], "quote_to_cash", v2.deployment_id, [f.id for f in flows])
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=complete_all), threading.Thread(target=migrate_all)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert consistency.check_instances(rt, [f.id for f in flows]) == []
    for f in flows:
        inst = _instance(rt, f.id)
        moved = inst.deployment_id == v2.deployment_id
        assert len(_events(rt, f.id, "migrate")) == (1 if moved else 0)
        # a quote moved before its completion takes v2's new step; one completed first is at its review
        assert f.open_specs() in ({"extra_check"}, {"supervisor_review"})
        if f.open_specs() == {"extra_check"}:
            assert moved


THIRD_BRANCH = """
    <bpmn:userTask id="tax_review" name="Tax review / 税务审核">
      <bpmn:extensionElements>
        <spiffworkflow:properties>
          <spiffworkflow:property name="formJsonSchemaFilename" value="tax_review.schema.json" />
        </spiffworkflow:properties>
      </bpmn:extensionElements>
      <bpmn:incoming>Flow_split_to_tax</bpmn:incoming>
      <bpmn:outgoing>Flow_tax_to_join</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="Flow_split_to_tax" sourceRef="split_reviews" targetRef="tax_review" />
    <bpmn:sequenceFlow id="Flow_tax_to_join" sourceRef="tax_review" targetRef="join_reviews" />
"""


def with_third_review_branch(files: dict[str, bytes]) -> dict[str, bytes]:
    """quote_to_cash with a third parallel review (tax) between the split and the join of legal and finance."""
    text = files["quote_to_cash.bpmn"].decode()
    edits = [
        ("<bpmn:outgoing>Flow_split_reviews_to_gw_need_finance</bpmn:outgoing>\n    </bpmn:parallelGateway>",
         "<bpmn:outgoing>Flow_split_reviews_to_gw_need_finance</bpmn:outgoing>\n"
         "      <bpmn:outgoing>Flow_split_to_tax</bpmn:outgoing>\n    </bpmn:parallelGateway>"),
        ("<bpmn:incoming>Flow_merge_finance_to_join_reviews</bpmn:incoming>",
         "<bpmn:incoming>Flow_merge_finance_to_join_reviews</bpmn:incoming>\n"
         "      <bpmn:incoming>Flow_tax_to_join</bpmn:incoming>"),
        ("<bpmn:flowNodeRef>finance_review</bpmn:flowNodeRef>",
         "<bpmn:flowNodeRef>finance_review</bpmn:flowNodeRef><bpmn:flowNodeRef>tax_review</bpmn:flowNodeRef>"),
        ('    <bpmn:parallelGateway id="join_reviews"', THIRD_BRANCH + '    <bpmn:parallelGateway id="join_reviews"'),
    ]
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    form = {"type": "object", "properties": {"tax_ok": {"type": "boolean", "title": "Tax ok"}}}
    return {**files, "quote_to_cash.bpmn": text.encode(), "tax_review.schema.json": json.dumps(form).encode()}


def test_a_branch_added_to_a_join_ahead_is_refused(rt, users):
    """Already past the split, a quote in legal and finance review would wait at the join for a tax branch that
    never starts: the move is refused with the join named, and a quote before the split may still move."""
    f = Flow(rt)
    f.act("prepare_quote", "rep1", quote("150000.00"))  # 300,000: manager, legal and finance reviews
    f.act("supervisor_review", "sup1", approve("supervisor"))
    f.act("manager_review", "mgr1", approve("manager"))
    assert {"legal_review", "finance_review"} <= f.open_specs()
    early = Flow(rt)
    v2 = deployments.deploy_files(rt, with_third_review_branch(deployments.collect_files(BPMN)), users["owner1"],
                                  "tax review beside legal and finance")
    found = {c.instance_id: c for c in migration.dry_run(rt, "quote_to_cash", v2.deployment_id).page.items}
    assert not found[f.id].movable
    assert any("Reviews complete" in reason for reason in found[f.id].reasons), found[f.id].reasons
    report = migration.migrate(rt, users["owner1"], "quote_to_cash", v2.deployment_id, [f.id],
                               {f.id: found[f.id].instance_version})
    assert not report.moved and report.refused
    f.act("legal_review", "legal1", approve("legal"))
    f.act("finance_review", "fin1", approve("finance"))
    assert "draft_contract" in f.open_specs()  # still on version 1, it goes on
    # before the split, the new branch is ahead of the split too: still refused (the rule is conservative)
    assert not found[early.id].movable
