"""Start pages: a rep starts a new quote; anyone permitted starts a complaint against a contract."""

from __future__ import annotations

import secrets

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import login_required

from workflows.services import deployments, instances, tasks
from workflows.services.errors import InvalidInput, ProcessError

from .. import formrender
from ..i18n import get_language
from ..i18n import gettext as _
from .common import me, rt, say

bp = Blueprint("start", __name__)


def _option(process_key: str) -> deployments.StartOption:
    for option in deployments.startable(rt(), me()):
        if option.process_key == process_key:
            return option
    abort(403)


def _render(options, chosen: str | None = None, values=None, errors=None, problem=None, status=200):
    """The start page. The chosen form shows what was typed and its errors; the others may be pre-filled
    from the query string (the contract page links to a complaint with its key filled in)."""
    lang = get_language()
    shown = {k: say(v) for k, v in (errors or {}).items()}  # build_form localizes validation messages
    prefill = request.args.to_dict() or None
    forms = {}
    for o in options:
        if o.schema:
            mine = o.process_key == chosen
            typed = values if mine and values is not None else prefill
            forms[o.process_key] = formrender.build_form(o.schema, o.ui_schema, typed, shown if mine else {}, lang)
    return render_template("start.html", options=options, forms=forms, chosen=chosen, problem=problem,
                           submit_token=secrets.token_hex(16)), status


@bp.get("/start")
@login_required
def index():
    return _render(deployments.startable(rt(), me()), chosen=request.args.get("process"))


@bp.post("/start/<process_key>")
@login_required
def start(process_key: str):
    option = _option(process_key)
    token = request.form.get("submit_token", "")[:64]
    done = session.get("started", {})
    if token and token in done:  # the same form sent twice (a reload, a second click): one contract
        flash(_("This form was already sent: %(key)s was started then.", key=done[token]), "info")
        return redirect(url_for("contracts.show", key=done[token]))
    data = {}
    if option.schema:
        try:
            data = formrender.parse_form(option.schema, request.form)
        except ValueError as err:
            return _render(deployments.startable(rt(), me()), process_key, problem=say(str(err)), status=422)
    elif request.form.get("customer_name", "").strip():  # a quote for a customer, from the customer's page
        data = {"customer_name": request.form["customer_name"].strip()}
    try:
        started = instances.start_instance(rt(), process_key, me(), data, claim_first=True)
    except InvalidInput as err:
        return _render(deployments.startable(rt(), me()), process_key, values=data,
                       errors=err.errors or {"": err.message},
                       problem=_("The form has errors; nothing was saved. Correct the marked fields."), status=422)
    except ProcessError as err:  # the process definition failed (a script, a condition): keep what was typed
        return _render(deployments.startable(rt(), me()), process_key, values=data, problem=say(err.message),
                       status=err.status)
    if token:
        session["started"] = dict(list(done.items())[-19:] + [(token, started.business_key)])
    flash(_("Started %(key)s.", key=started.business_key), "ok")
    if started.handed_to:  # a new deal for an existing customer goes to its owner
        flash(_("The customer %(customer)s belongs to %(owner)s; the quote went to %(owner)s.",
                customer=data.get("customer_name"), owner=started.handed_to), "info")
    for task_id in started.open_task_ids:  # the starter does the first step when it is theirs
        if tasks.get_task(rt(), task_id).assignee == me().username:
            return redirect(url_for("task.show", task_id=task_id))
    return redirect(url_for("contracts.show", key=started.business_key))
