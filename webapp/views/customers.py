"""Customers (客户): who owns which customer and why, new customers by the team's rule, a rep's request for
someone else's customer (decided by the director in the ``ownership_dispute`` process), and the early warning
(客户预警)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_required

from workflows.services import customers
from workflows.services.errors import InvalidInput

from ..i18n import gettext as _
from .common import me, page_arg, rt, say

bp = Blueprint("customers", __name__)

PER_PAGE = 20


def _flag(name: str) -> bool:
    return request.args.get(name) in ("1", "on", "true")


def _list(values: dict | None = None, errors: dict | None = None, problem: str | None = None, status: int = 200):
    q = (request.args.get("q") or "").strip()[:100] or None
    mine, flagged = _flag("mine"), _flag("flagged")
    found = customers.list_customers(rt(), me(), page=page_arg(), per_page=PER_PAGE, q=q, mine=mine, flagged=flagged)
    args = {k: v for k, v in (("q", q), ("mine", "1" if mine else None), ("flagged", "1" if flagged else None)) if v}
    may_register = bool(me().roles & customers.REGISTER_ROLES)
    teams = [r.team for r in customers.team_rules(rt(), me())] if may_register and me().team is None else []
    return render_template("customers/index.html", found=found, page=found.page, q=q, mine=mine, flagged=flagged,
                           args=args, may_register=may_register, teams=teams, values=values or {},
                           errors={k: say(v) for k, v in (errors or {}).items()}, problem=problem), status


@bp.get("/customers")
@login_required
def index():
    return _list()


@bp.post("/customers")
@login_required
def register():
    values = {k: request.form.get(k, "") for k in ("name", "team")}
    try:
        made = customers.register_customer(rt(), me(), values["name"], values["team"] or None)
    except InvalidInput as err:
        return _list(values, err.errors, say(err.message), 422)
    flash(_("Registered %(customer)s; by the team's rule it belongs to %(owner)s.", customer=made.name,
            owner=made.owner_name), "ok")
    return redirect(url_for("customers.show", customer_id=made.id))


def _page(customer_id: int, reason: str = "", problem: str | None = None, errors: dict | None = None,
          status: int = 200):
    view = customers.customer_page(rt(), me(), customer_id, page=page_arg(), per_page=PER_PAGE)
    return render_template("customers/show.html", v=view, c=view.customer, reason=reason, problem=problem,
                           errors={k: say(v) for k, v in (errors or {}).items()},
                           max_reason=customers.MAX_REASON), status


@bp.get("/customers/<int:customer_id>")
@login_required
def show(customer_id: int):
    return _page(customer_id)


@bp.post("/customers/<int:customer_id>/request")
@login_required
def request_ownership(customer_id: int):
    reason = request.form.get("reason", "")
    try:
        started = customers.request_ownership(rt(), me(), customer_id, reason)
    except InvalidInput as err:
        return _page(customer_id, reason, say(err.message), err.errors, 422)
    flash(_("Your request %(key)s went to the director.", key=started.business_key), "ok")
    return redirect(url_for("contracts.show", key=started.business_key))


def _rules(problem: str | None = None, errors: dict | None = None, status: int = 200):
    return render_template("customers/rules.html", rules=customers.team_rules(rt(), me()), problem=problem,
                           errors={k: say(v) for k, v in (errors or {}).items()}), status


@bp.get("/customers/rules")
@login_required
def rules():
    return _rules()


@bp.post("/customers/rules")
@login_required
def save_rule():
    team = request.form.get("team", "")
    try:
        customers.set_rule(rt(), me(), team, request.form.get("rule", ""), request.form.get("on_duty") or None)
    except InvalidInput as err:
        return _rules(say(err.message), err.errors, 422)
    flash(_("Saved the assignment rule of the team %(team)s.", team=team), "ok")
    return redirect(url_for("customers.rules"))
