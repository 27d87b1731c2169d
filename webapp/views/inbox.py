"""The inbox: the notifications of the signed-in user (new tasks, escalations, reassignments)."""

from __future__ import annotations

import re

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from workflows.services import notifications

from ..i18n import ngettext
from .common import me, page_arg, rt, safe_next

bp = Blueprint("inbox", __name__)


@bp.get("/inbox")
@login_required
def index():
    unread_only = request.args.get("show") == "unread"
    page = notifications.inbox(rt(), me().id, page=page_arg(), per_page=20, unread_only=unread_only)
    return render_template("inbox.html", page=page, unread_only=unread_only,
                           args={"show": "unread"} if unread_only else {})


@bp.post("/inbox/read")
@login_required
def read():
    """``id``: mark that notification read (only one's own); none: mark all read."""
    raw = (request.form.get("id") or "").strip()
    if raw and not re.fullmatch(r"[0-9]{1,12}", raw):
        abort(400)
    marked = notifications.mark_read(rt(), me().id, [int(raw)] if raw else None)
    if not raw:
        flash(ngettext("%(num)s notification marked as read.", "%(num)s notifications marked as read.", marked), "ok")
    return redirect(safe_next(request.form.get("next"), url_for("inbox.index")))


@bp.app_context_processor
def nav_unread():
    if not current_user.is_authenticated:
        return {}
    if "nav_unread" not in g:
        g.nav_unread = notifications.unread_count(rt(), me().id)
    return {"nav_unread": g.nav_unread}
