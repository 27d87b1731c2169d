"""Task queues are indexed SQL over task rows: mine, my roles' unclaimed work, all open work of my roles."""

from __future__ import annotations

import pytest

from workflows.services import tasks
from workflows.services.errors import InvalidInput

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
