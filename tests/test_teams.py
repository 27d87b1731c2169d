"""Sales roles work within their team: another team's rep or supervisor neither sees nor acts on a contract;
company-wide roles (legal, finance, delivery, after-sales, the director) serve every team."""

from __future__ import annotations

import pytest

from workflows.services import accounts, notifications, task_detail, tasks
from workflows.services.errors import InvalidInput, PermissionDenied

from .flow import Flow, quote


@pytest.fixture
def west(rt):
    return {"sup": accounts.create_user(rt, "supw", "lvyue-demo", ["supervisor"], team="west"),
            "rep": accounts.create_user(rt, "repw", "lvyue-demo", ["sales_rep"], team="west")}


def test_another_teams_supervisor_neither_sees_nor_acts(rt, users, west):
    flow = Flow(rt)  # rep1 is in team east
    flow.act("prepare_quote", "rep1", quote())
    review = flow.task("supervisor_review")
    supw = west["sup"]
    assert tasks.list_tasks(rt, supw, "roles").total == 0
    assert tasks.queue_counts(rt, supw)["roles"] == 0
    assert notifications.unread_count(rt, supw.id) == 0  # not told of the east review
    assert notifications.unread_count(rt, users["sup1"].id) == 1
    with pytest.raises(PermissionDenied):
        task_detail.task_detail(rt, review.id, supw)
    with pytest.raises(PermissionDenied):
        tasks.claim(rt, review.id, supw)
    with pytest.raises(PermissionDenied):
        tasks.complete(rt, review.id, supw, {"supervisor_decision": "approve"})
    with pytest.raises(PermissionDenied):  # and cannot hand it to someone of their own team either
        tasks.reassign(rt, review.id, supw, "supw", "mine now")
    assert flow.task("supervisor_review").assignee is None
    tasks.complete(rt, review.id, users["sup1"], {"supervisor_decision": "approve"})  # east's own does


def test_rework_and_reassignment_stay_in_the_team(rt, users, west):
    flow = Flow(rt)
    prepare = flow.task("prepare_quote")
    assert tasks.list_tasks(rt, west["rep"], "roles").total == 0
    assert tasks.list_tasks(rt, users["rep2"], "roles").total == 1  # same team
    with pytest.raises(PermissionDenied):
        tasks.claim(rt, prepare.id, west["rep"])
    tasks.claim(rt, prepare.id, users["rep1"])
    with pytest.raises(InvalidInput) as exc:
        tasks.reassign(rt, prepare.id, users["rep1"], "repw", "help")
    assert exc.value.errors == {"to": "repw is not in the team 'east'"}
    detail = task_detail.task_detail(rt, prepare.id, users["rep1"])
    assert [u.username for u in detail.candidates] == ["rep2"]


def test_company_wide_roles_serve_every_team(rt, users, west):
    flow = Flow(rt, starter="repw")
    flow.act("prepare_quote", "repw", quote(total_price="150000.00"))  # west; needs legal and finance later
    assert tasks.list_tasks(rt, west["sup"], "roles").total == 1
    assert tasks.list_tasks(rt, users["sup1"], "roles").total == 0
    assert tasks.list_tasks(rt, users["dir1"], "team").total == 1


def test_after_sales_reads_only_delivered_contracts(login, rt):
    early, delivered = Flow(rt), Flow(rt)
    delivered.to_collection()
    svc = login("svc1")
    assert svc.get(f"/contracts/{early.view().business_key}").status_code == 403
    assert svc.get(f"/contracts/{delivered.view().business_key}").status_code == 200
