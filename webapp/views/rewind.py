"""Withdraw (撤回) a step one completed, and return a contract to an earlier step (驳回到指定节点).

The task page offers both (``_task_back.html``): withdraw on a completed task of one's own, return on an open
task one may complete. A refusal shows the task page again with the reason and what was typed.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for
from flask_login import login_required

from workflows.services import rewind, task_detail
from workflows.services.errors import Conflict, InvalidInput, PermissionDenied

from ..i18n import gettext as _
from .common import me, rt, say

bp = Blueprint("rewind", __name__)


def back_panel(detail) -> dict:
    """What the task page's return / withdraw panel shows to this user."""
    t = detail.task
    if t.status == "open":
        return {"targets": rewind.return_targets(rt(), t.id, me()), "withdraw": None,
                "max_comment": rewind.MAX_COMMENT}
    if t.status == "completed":
        state = rewind.withdraw_state(rt(), t.id, me())
        return {"targets": [], "withdraw": state, "withdraw_reason": say(state.reason) if state.reason else None}
    return {"targets": [], "withdraw": None}


@bp.post("/tasks/<int:task_id>/withdraw")
@login_required
def withdraw(task_id: int):
    task_detail.require_visible(rt(), task_id, me())
    moved = rewind.withdraw(rt(), task_id, me(), expected_version=request.form.get("version", type=int))
    flash(_("Withdrawn: the step is open again for you."), "ok")
    return redirect(url_for("task.show", task_id=moved.new_task_ids[0]) if moved.new_task_ids
                    else url_for("contracts.show", key=moved.business_key))


@bp.post("/tasks/<int:task_id>/return")
@login_required
def return_to(task_id: int):
    from .task import _render

    task_detail.require_visible(rt(), task_id, me())
    target, comment = request.form.get("target", ""), request.form.get("comment", "")
    try:
        moved = rewind.return_to(rt(), task_id, me(), target, comment,
                                 expected_version=request.form.get("version", type=int))
    except InvalidInput as err:
        return _render(task_id, problem=say(err.message) + ": " + "; ".join(say(m) for m in err.errors.values()),
                       status=422, back_comment=comment, back_target=target)
    except (Conflict, PermissionDenied) as err:
        return _render(task_id, problem=say(err.message), status=err.status, back_comment=comment,
                       back_target=target)
    flash(_("Returned: the contract is back at the chosen step."), "ok")
    return redirect(url_for("contracts.show", key=moved.business_key))
