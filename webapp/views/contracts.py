"""A contract's page: where it stands, its business data, open tasks and what everyone did."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_required

from workflows.services import amend, attachments, contract_view, records, responsibility, rewind
from workflows.services.errors import Conflict, InvalidInput, PermissionDenied

from ..i18n import gettext as _
from .common import me, page_arg, rt, say

bp = Blueprint("contracts", __name__)


@bp.get("/contracts/<key>")
@login_required
def show(key: str, problem: str | None = None, reason: str = "", status: int = 200):
    view = contract_view.contract_view(rt(), key, me(), page=page_arg())
    amendable = amend.amend_state(rt(), view.instance.id, me())
    return render_template("contract.html", c=view, now=rt().clock.now(),
                           files=attachments.of_contract(rt(), key, me()),
                           withdrawable=rewind.withdrawable(rt(), view.instance.id, me()),
                           records=records.contract_records(rt(), view.instance.id),
                           amendable=amendable, amend_closed=say(amendable.reason) if amendable.reason else None,
                           amend_problem=problem, amend_reason=reason), status


@bp.post("/contracts/<key>/amend")
@login_required
def amend_contract(key: str):
    """Amend (修订) a signed contract: it reopens at the quote and is reviewed and signed again."""
    contract_view.contract_view(rt(), key, me(), page=1)  # the same refusal as the page for who may not see it
    reason = request.form.get("reason", "")
    try:
        moved = amend.amend(rt(), key, me(), reason, expected_version=request.form.get("version", type=int))
    except InvalidInput as err:
        return show(key, say(err.message) + ": " + "; ".join(say(m) for m in err.errors.values()), reason, 422)
    except (Conflict, PermissionDenied) as err:
        return show(key, say(err.message), reason, err.status)
    flash(_("Amendment started: the contract is back at the quote and will be reviewed and signed again."), "ok")
    return redirect(url_for("contracts.show", key=moved.business_key))


@bp.get("/contracts/<key>/responsibilities")
@login_required
def responsibilities(key: str):
    """The responsibility table (职责分工表): every step done, open and to come, with whom; printable."""
    return render_template("responsibilities.html", t=responsibility.responsibility_table(rt(), key, me()))


@bp.get("/contracts")
@login_required
def index():
    q = (request.args.get("q") or "").strip()[:100] or None
    status = request.args.get("status") if request.args.get("status") in ("running", "completed", "error") else None
    page = contract_view.list_contracts(rt(), me(), page=page_arg(), q=q, status=status)
    args = {k: v for k, v in (("q", q), ("status", status)) if v}
    return render_template("contracts.html", page=page, q=q, status=status, args=args)
