"""A contract's page: where it stands, its business data, open tasks and what everyone did."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import login_required

from workflows.services import attachments, contract_view, records, responsibility, rewind

from .common import me, page_arg, rt

bp = Blueprint("contracts", __name__)


@bp.get("/contracts/<key>")
@login_required
def show(key: str):
    view = contract_view.contract_view(rt(), key, me(), page=page_arg())
    return render_template("contract.html", c=view, now=rt().clock.now(),
                           files=attachments.of_contract(rt(), key, me()),
                           withdrawable=rewind.withdrawable(rt(), view.instance.id, me()),
                           records=records.contract_records(rt(), view.instance.id))


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
