"""Away / substitute (委托/代理): set and cancel one's own time away and the colleague who holds one's tasks
meanwhile; the supervisors, managers and the director see who of their team is away."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_required

from workflows.services import substitutes
from workflows.services.errors import InvalidInput

from ..i18n import gettext as _
from .common import me, page_arg, rt, say

bp = Blueprint("away", __name__)

PER_PAGE = 20


def _day(raw: str, name: str, errors: dict[str, str]) -> date | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        errors[name] = "must be a date such as 2026-11-29"
        return None


def _render(values: dict, errors: dict | None = None, problem: str | None = None, status: int = 200):
    view = substitutes.away_page(rt(), me(), page_arg(), PER_PAGE)
    return render_template("away.html", v=view, values=values, errors={k: say(v) for k, v in (errors or {}).items()},
                           problem=problem, max_reason=substitutes.MAX_REASON), status


@bp.get("/me/away")
@login_required
def mine():
    return _render({})


@bp.post("/me/away")
@login_required
def create():
    form = request.form
    values = {k: form.get(k, "") for k in ("substitute", "first_day", "last_day", "reason")}
    errors: dict[str, str] = {}
    first, last = _day(values["first_day"], "first_day", errors), _day(values["last_day"], "last_day", errors)
    try:
        if errors:
            raise InvalidInput("the away range was not saved", errors)
        made = substitutes.create(rt(), me(), values["substitute"], first, last, values["reason"])
    except InvalidInput as err:
        return _render(values, err.errors, say(err.message), 422)
    flash(_("Saved: %(name)s holds your tasks while you are away.", name=made.substitute), "ok")
    return redirect(url_for("away.mine"))


@bp.post("/me/away/<int:range_id>/cancel")
@login_required
def cancel(range_id: int):
    substitutes.cancel(rt(), me(), range_id)
    flash(_("Cancelled. Whatever your substitute held for you is back with you."), "ok")
    return redirect(url_for("away.mine"))


@bp.get("/away")
@login_required
def team():
    page = substitutes.who_is_away(rt(), me(), page_arg(), PER_PAGE)
    return render_template("away_team.html", page=page, now=rt().clock.now())
