"""Task queues are indexed SQL over task rows: mine, my roles' unclaimed work, all open work of my roles."""

from __future__ import annotations

from decimal import Decimal

import pytest

from workflows.services import tasks
from workflows.services.errors import InvalidInput, PermissionDenied

from .flow import Flow


def test_queues_by_scope_with_pagination_and_filters(rt, users):
    flows = [Flow(rt, data={"customer_name": f"客户 {i} 50%_off"}) for i in range(7)]
    rep1 = users["rep1"]
    roles = tasks.list_tasks(rt, rep1, "roles", per_page=3)
    assert (roles.total, roles.pages, len(roles.items)) == (7, 3, 3)
    last = tasks.list_tasks(rt, rep1, "roles", page=3, per_page=3)
    assert len(last.items) == 1
    seen = {t.id for p in (1, 2, 3) for t in tasks.list_tasks(rt, rep1, "roles", page=p, per_page=3).items}
    assert len(seen) == 7, "pages neither overlap nor skip"

    first = flows[0].task("prepare_quote")
    tasks.claim(rt, first.id, rep1)
    assert [t.id for t in tasks.list_tasks(rt, rep1, "mine").items] == [first.id]
    assert tasks.list_tasks(rt, rep1, "roles").total == 6
    assert tasks.list_tasks(rt, rep1, "open").total == 7
    assert tasks.list_tasks(rt, users["rep2"], "mine").total == 0
    assert tasks.list_tasks(rt, users["fin1"], "open").total == 0

    assert tasks.list_tasks(rt, rep1, "open", customer="客户 3").total == 1
    assert tasks.list_tasks(rt, rep1, "open", customer="50%_off").total == 7
    assert tasks.list_tasks(rt, rep1, "open", customer="50x").total == 0, "% and _ are literal"
    assert tasks.list_tasks(rt, rep1, "open", stage="quote").total == 7
    assert tasks.list_tasks(rt, rep1, "open", stage="approval").total == 0


def test_queue_is_ordered_by_due_time(rt, users, clock):
    early = Flow(rt)
    clock.advance(hours=5)
    late = Flow(rt)
    items = tasks.list_tasks(rt, users["rep1"], "roles").items
    assert [t.instance_id for t in items] == [early.id, late.id]
    assert items[0].due_at < items[1].due_at


def test_unknown_queue_is_refused(rt, users):
    with pytest.raises(InvalidInput):
        tasks.list_tasks(rt, users["rep1"], "everything")


def test_team_queue_amount_filters_and_sorts(rt, users, clock):
    from datetime import timedelta

    from workflows.services import accounts

    from .flow import quote

    west = accounts.create_user(rt, "rep_west", "lvyue-demo", ["sales_rep"], team="west")
    amounts = {"east-small": ("rep1", "10000.00"), "east-big": ("rep2", "60000.00"), "west": ("rep_west", "30000.00")}
    flows = {}
    for name, (rep, price) in amounts.items():
        flow = Flow(rt, starter=rep)
        flow.act("prepare_quote", rep, quote(total_price=price, quantity=1, customer_name=name))
        flows[name] = flow
        clock.advance(timedelta(hours=1))
    sup1, director = users["sup1"], users["dir1"]
    team = tasks.list_tasks(rt, sup1, "team")
    assert {t.customer_name for t in team.items} == {"east-small", "east-big"}  # not the west team's
    assert tasks.list_tasks(rt, director, "team").total == 3
    largest = tasks.list_tasks(rt, director, "team", filters=tasks.QueueFilter(sort="-amount"))
    assert [t.customer_name for t in largest.items] == ["east-big", "west", "east-small"]
    ranged = tasks.list_tasks(rt, director, "team", filters=tasks.QueueFilter(
        amount_min=Decimal("20000"), amount_max=Decimal("60000"), sort="customer"))
    assert [t.customer_name for t in ranged.items] == ["east-big", "west"]
    assert tasks.queue_counts(rt, sup1)["team"] == 2
    assert west.team == "west"
    with pytest.raises(PermissionDenied):
        tasks.list_tasks(rt, users["rep1"], "team")
