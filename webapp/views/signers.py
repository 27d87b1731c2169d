"""Added signers (加签): asking colleagues for an opinion on a task, answering and withdrawing, the list of
opinions asked of me, and approving with an approver added after oneself. The task page's panel is
``signers_panel`` (listed in ``task.PANELS``)."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from workflows.services import countersign, task_detail
from workflows.services.errors import InvalidInput, ServiceError

from .. import formrender
from ..i18n import gettext as _
from .common import me, page_arg, rt, say

bp = Blueprint("signers", __name__)


def signers_panel(detail) -> countersign.Panel:
    return countersign.panel(rt(), detail, me())


def _task_page(task_id: int, err: ServiceError, **typed):
    """The task page again, with the reason and what was typed (``typed``, read back by the panel)."""
    from .task import _render  # task.py lists this module's panel: imported when first needed

    problem = say(err.message)
    if isinstance(err, InvalidInput) and err.errors:
        problem += ": " + "; ".join(say(m) for m in err.errors.values())
    return _render(task_id, problem=problem, status=err.status, **typed)


@bp.post("/tasks/<int:task_id>/opinions")
@login_required
def ask(task_id: int):
    task_detail.require_visible(rt(), task_id, me())
    try:
        asked = countersign.ask_opinions(rt(), task_id, me(), request.form.getlist("to"),
                                         request.form.get("question", ""))
    except ServiceError as err:
        return _task_page(task_id, err, signers_to=request.form.getlist("to"),
                          signers_question=request.form.get("question", ""))
    flash(_("Opinion asked of %(names)s. The task waits for their answers.", names=", ".join(asked.asked)), "ok")
    return redirect(url_for("task.show", task_id=task_id))


@bp.post("/tasks/<int:task_id>/add-approver")
@login_required
def add_approver(task_id: int):
    task_detail.require_visible(rt(), task_id, me())
    try:
        data = formrender.parse_form(task_detail.form_schema(rt(), task_id), request.form)
    except ValueError as err:
        return _task_page(task_id, InvalidInput(str(err)))
    try:
        added = countersign.approve_and_add_after(rt(), task_id, me(), request.form.get("to", ""), data,
                                                  expected_version=request.form.get("version", type=int))
    except ServiceError as err:
        comment = next((v for k, v in request.form.items() if k.startswith("f.") and k.endswith("_comment")), "")
        return _task_page(task_id, err, signers_after_to=request.form.get("to", ""), signers_comment=comment)
    flash(_("You approved; %(name)s decides next and now holds the task.", name=added.to_name), "ok")
    return redirect(url_for("queues.index"))


@bp.get("/opinions")
@login_required
def index():
    show = "all" if request.args.get("show") == "all" else "pending"
    page = countersign.pending_for(rt(), me(), show=show, page=page_arg())
    return render_template("opinions.html", page=page, show=show, args={"show": "all"} if show == "all" else {})


def _opinion_page(opinion_id: int, problem: str | None = None, status: int = 200):
    view = countersign.opinion_page(rt(), opinion_id, me())
    return render_template("opinions.html", one=view, c={"data": view.data}, problem=problem,
                           max_answer=countersign.MAX_ANSWER), status


@bp.get("/opinions/<int:opinion_id>")
@login_required
def show(opinion_id: int):
    return _opinion_page(opinion_id)


@bp.post("/opinions/<int:opinion_id>/answer")
@login_required
def answer(opinion_id: int):
    agrees = {"agree": True, "disagree": False}.get(request.form.get("agrees", ""))
    try:
        countersign.answer_opinion(rt(), opinion_id, me(), agrees, request.form.get("answer", ""))
    except InvalidInput as err:
        return _opinion_page(opinion_id, say(err.message) + ": " + "; ".join(say(m) for m in err.errors.values()),
                             err.status)
    flash(_("Thank you: your opinion was sent."), "ok")
    return redirect(url_for("signers.index"))


@bp.post("/opinions/<int:opinion_id>/withdraw")
@login_required
def withdraw(opinion_id: int):
    done = countersign.withdraw_opinion(rt(), opinion_id, me())
    flash(_("The question to %(name)s was withdrawn.", name=done.asked_of_name), "ok")
    return redirect(url_for("task.show", task_id=done.task_id))


@bp.app_context_processor
def nav_opinions():
    if not current_user.is_authenticated:
        return {}
    if "nav_opinions" not in g:
        g.nav_opinions = countersign.waiting_count(rt(), me().id)
    return {"nav_opinions": g.nav_opinions}
