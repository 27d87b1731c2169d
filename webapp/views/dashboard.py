"""The sales dashboard: 回款率, overdue amounts and contracts, pipeline, turnaround, cycle time, SLA and
complaints for a period, per rep and team (numbers from ``workflows/services/kpis.py``)."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import login_required

from workflows.services import kpis

from .common import me, page_arg, rt

bp = Blueprint("dashboard", __name__)


def _filters() -> tuple[kpis.Period, str | None, int | None, dict[str, str]]:
    args = request.args
    try:
        offset = max(-40, min(0, int(args.get("offset", "0"))))
    except ValueError:
        offset = 0
    period = kpis.period_of(args.get("period") or "quarter", kpis.business_today(rt()),
                            args.get("start"), args.get("end"), offset)
    team = (args.get("team") or "").strip()[:80] or None
    rep = args.get("rep", "")
    rep_id = int(rep) if rep.isdigit() and len(rep) < 10 else None
    kept = {k: args[k] for k in ("period", "offset", "start", "end", "team", "rep") if args.get(k)}
    return period, team, rep_id, kept


@bp.get("/dashboard")
@login_required
def index():
    period, team, rep_id, kept = _filters()
    board = kpis.dashboard(rt(), me(), period, team=team, rep_id=rep_id)
    overdue = kpis.overdue_contracts(rt(), me(), page=1, team=team, rep_id=rep_id)
    return render_template("dashboard/index.html", b=board, overdue=overdue, args=kept)


@bp.get("/dashboard/overdue")
@login_required
def overdue():
    _period, team, rep_id, kept = _filters()
    page = kpis.overdue_contracts(rt(), me(), page=page_arg(), team=team, rep_id=rep_id)
    return render_template("dashboard/overdue.html", page=page, args=kept, today=kpis.business_today(rt()))
