"""The task page and the actions on a task: claim, unclaim, reassign, complete, and remind (催办) its holder.

A failed completion (invalid form, stale version, someone else acted) renders the page again with
everything the user typed and the reason, never a blank form.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from workflows.services import batch, remind, task_detail, tasks
from workflows.services.errors import (
    Conflict,
    InvalidInput,
    PermissionDenied,
    ProcessError,
    ServiceError,
    Unavailable,
)
from workflows.services.routing import explain as explain_routing

from .. import formrender
from ..i18n import get_language
from ..i18n import gettext as _
from .attachments import attach_uploads, file_url, files_panel
from .common import me, rt, say
from .rewind import back_panel
from .signers import signers_panel

bp = Blueprint("task", __name__)


def _render(task_id: int, values: dict | None = None, errors: dict | None = None, problem: str | None = None,
            status: int = 200, override_reason: str | None = None, **typed):
    detail = task_detail.task_detail(rt(), task_id, me())
    lang = get_language()
    shown_errors = {k: say(v) for k, v in (errors or {}).items()}  # build_form localizes validation messages
    shown = formrender.without_files(detail.schema, detail.values) if values is None else values
    form = formrender.build_form(detail.schema, detail.ui_schema, shown, shown_errors, lang,
                                 file_url=file_url(detail.task.business_key))
    instructions = formrender.render_instructions(detail.instructions, detail.data) if detail.instructions else None
    panels = {name: build(detail) for name, build in PANELS.items()}
    return render_template("task.html", d=detail, t=detail.task, form=form, instructions=instructions,
                           problem=problem, now=rt().clock.now(), override_reason=override_reason,
                           typed=typed, **panels), status


# Extra panels of the task page, one per power tool: template variable -> function(detail) giving its content.
# Each feature adds its own line (its template is included by task.html: _task_why, _task_signers, _task_back).
PANELS: dict = {
    "why": lambda detail: explain_routing(rt(), detail.task.id, me()),
    "back": lambda detail: back_panel(detail),
    "signers": signers_panel,
    "files": files_panel,
}


@bp.get("/tasks/<int:task_id>")
@login_required
def show(task_id: int):
    return _render(task_id)


@bp.post("/tasks/<int:task_id>/claim")
@login_required
def claim(task_id: int):
    task_detail.require_visible(rt(), task_id, me())
    tasks.claim(rt(), task_id, me())
    flash(_("You hold this task now."), "ok")
    return redirect(url_for("task.show", task_id=task_id))


@bp.post("/tasks/<int:task_id>/unclaim")
@login_required
def unclaim(task_id: int):
    task_detail.require_visible(rt(), task_id, me(), unclaim=True)
    tasks.unclaim(rt(), task_id, me())
    flash(_("The task is back in its role's queue."), "ok")
    return redirect(url_for("queues.index", scope="roles"))


@bp.post("/tasks/<int:task_id>/reassign")
@login_required
def reassign(task_id: int):
    task_detail.require_visible(rt(), task_id, me())
    to = request.form.get("to", "").strip()
    try:
        item = tasks.reassign(rt(), task_id, me(), to, request.form.get("reason", ""))
    except InvalidInput as err:
        return _render(task_id, problem=say(err.message) + ": " + "; ".join(say(m) for m in err.errors.values()),
                       status=422)
    flash(_("Reassigned to %(name)s.", name=item.assignee_name or to), "ok")
    return redirect(url_for("task.show", task_id=task_id))


@bp.post("/tasks/<int:task_id>/remind")
@login_required
def remind_holder(task_id: int):
    sent = remind.remind(rt(), task_id, me(), request.form.get("message", ""))
    flash(_("Reminder sent to %(names)s.", names=", ".join(sent.recipients)), "ok")
    return redirect(url_for("contracts.show", key=sent.business_key))


def _batch_ids(values: list[str]) -> list[int]:
    return [int(v) for v in values if v.strip().isdigit()]


@bp.get("/tasks/batch")
@login_required
def batch_confirm():
    """The confirmation step of a batch approval (批量审批): the chosen tasks, their contracts and amounts,
    and for each whether it can be approved. Changes nothing."""
    try:
        rows = batch.preview(rt(), _batch_ids(request.args.getlist("ids")), me())
    except InvalidInput as err:
        flash(say(err.message), "error")
        return redirect(url_for("queues.index", scope=request.args.get("scope") or "mine"))
    return render_template("batch.html", rows=rows, results=False, total=batch.amount_total(
        [r for r in rows if r.ok]), ready=sum(r.ok for r in rows), max_comment=batch.MAX_COMMENT, say=say)


@bp.post("/tasks/batch")
@login_required
def batch_approve():
    """Approve the confirmed tasks one by one (each validated, authorized and audited on its own); the
    answer lists per task what happened. 200 if at least one was approved, else the first refusal's status."""
    ids = _batch_ids(request.form.getlist("ids"))
    versions = {i: v for i in ids if (v := request.form.get(f"v.{i}", type=int)) is not None}
    try:
        rows = batch.approve_many(rt(), ids, me(), request.form.get("comment", ""), versions=versions)
    except InvalidInput as err:
        flash(say(err.message), "error")
        return redirect(url_for("queues.index"))
    status = 200 if any(r.ok for r in rows) else _STATUS.get(rows[0].code, 400)
    return render_template("batch.html", rows=rows, results=True, ready=sum(r.ok for r in rows),
                           total=batch.amount_total([r for r in rows if r.ok]),
                           max_comment=batch.MAX_COMMENT, say=say), status


_STATUS = {"forbidden": 403, "four_eyes": 403, "not_found": 404, "conflict": 409, "invalid": 422,
           "process_error": 500}


@bp.post("/tasks/<int:task_id>/complete")
@login_required
def complete(task_id: int):
    task_detail.require_visible(rt(), task_id, me())
    schema = task_detail.form_schema(rt(), task_id)
    try:
        data = formrender.parse_form(schema, request.form)
        uploads = formrender.parse_uploads(schema, request.files)
    except ValueError as err:
        return _render(task_id, problem=say(str(err)), status=422)
    version = request.form.get("version", type=int)
    if version is None:  # every task page sends it: without it a stale page could not be told apart
        return _render(task_id, values=data, problem=_("Reload the task and send it again: the form was "
                                                       "missing its version."), status=400)
    reason = request.form.get("override_reason", "").strip() or None
    try:
        if uploads:  # kept first, so a form sent back for its other fields keeps the files (as references)
            data, refused = attach_uploads(task_id, data, uploads)
            if refused:
                return _render(task_id, values=data, errors=refused, status=422, override_reason=reason,
                               problem=_("A file was refused and the task was not completed. Choose another file for "
                                         "the marked field."))
        done = tasks.complete(rt(), task_id, me(), data, expected_version=version, override_reason=reason)
    except InvalidInput as err:
        if "override_reason" in err.errors:
            return _render(task_id, values=data, problem=say(err.errors["override_reason"]), status=422,
                           override_reason=reason)
        return _render(task_id, values=data, errors=err.errors or {"": err.message},
                       problem=_("The form has errors; nothing was saved. Correct the marked fields."), status=422,
                       override_reason=reason)
    except (Conflict, PermissionDenied, ProcessError, Unavailable) as err:
        return _render(task_id, values=data, problem=say(err.message), status=err.status, override_reason=reason)
    flash(_("Done. The contract moved on."), "ok")
    mine_next = [t for t in done.new_task_ids if _may_continue(t)]
    if mine_next:
        return redirect(url_for("task.show", task_id=mine_next[0]))
    return redirect(url_for("queues.index"))


def rerender_task_form(problem: str):
    """After a CSRF failure on a completion (an expired form): the task page again, with what was typed
    and a fresh token, instead of a bare error page. None if the user may not see the task."""
    task_id = (request.view_args or {}).get("task_id")
    if task_id is None or not current_user.is_authenticated:
        return None
    try:
        data = formrender.parse_form(task_detail.form_schema(rt(), task_id), request.form)
        return _render(task_id, values=data, problem=problem, status=400)
    except (ValueError, ServiceError):
        return None


def _may_continue(task_id: int) -> bool:
    item = tasks.get_task(rt(), task_id)
    return item.role in me().roles and item.assignee in (None, me().username)
