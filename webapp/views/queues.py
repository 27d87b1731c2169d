"""Task queues: mine, my roles' unclaimed work, and the team view for supervisors, managers and the director."""

from __future__ import annotations

from flask import Blueprint, abort, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from workflows.services import batch, tasks

from .common import me, page_arg, queue_filter_arg, rt

bp = Blueprint("queues", __name__)


@bp.get("/")
def home():
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    return redirect(url_for("queues.index"))


@bp.get("/tasks")
@login_required
def index():
    scope = request.args.get("scope", "mine")
    if scope not in ("mine", "roles", "team"):
        abort(404)
    filters = queue_filter_arg()
    page = tasks.list_tasks(rt(), me(), scope, page=page_arg(), per_page=20, filters=filters)
    args = {k: v for k, v in request.args.items() if k in FILTER_ARGS and v}  # for the pager's links
    selectable = batch.selectable(rt(), me(), page.items)  # approval tasks a batch may approve (批量审批)
    return render_template("queues.html", scope=scope, page=page, filters=filters, args=args,
                           now=rt().clock.now(), sorts=list(tasks.SORTS), stages=STAGES, selectable=selectable,
                           max_batch=batch.MAX_BATCH)


FILTER_ARGS = ("scope", "stage", "customer", "amount_min", "amount_max", "due", "sort")
STAGES = ["quote", "approval", "contract", "delivery", "collection", "after_sales"]


@bp.app_context_processor
def nav_counts():
    if not current_user.is_authenticated:
        return {}
    if "nav_counts" not in g:
        g.nav_counts = tasks.queue_counts(rt(), me())
    return {"nav_counts": g.nav_counts}
