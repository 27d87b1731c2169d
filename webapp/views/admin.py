"""User administration (admin role only): list and search accounts, create them, edit roles and profile,
and manage the API tokens of service accounts. A new token is shown once, on the page that issued it."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from workflows.services import accounts, tokens
from workflows.services.errors import InvalidInput

from ..i18n import gettext as _
from .common import me, page_arg, rt

bp = Blueprint("admin", __name__, url_prefix="/admin")

PER_PAGE = 20


@bp.before_request
def _admins_only():
    if not current_user.is_authenticated:
        return current_app.login_manager.unauthorized()
    if "admin" not in me().roles:
        abort(403)
    return None


def _field_messages() -> dict[str, str]:
    """The fixed sentences the account and token services put on fields, in the current language."""
    return {
        "2 to 80 letters, digits or . _ - @, starting with a letter or digit":
            _("2 to 80 letters, digits or . _ - @, starting with a letter or digit"),
        "this user name is taken": _("this user name is taken"),
        "at least 8 characters": _("at least 8 characters"),
        "must be zh-CN or en": _("must be zh-CN or en"),
        "at most 120 characters": _("at most 120 characters"),
        "at most 80 characters": _("at most 80 characters"),
        "not an e-mail address": _("not an e-mail address"),
        "this is the last active administrator; make someone else an administrator first":
            _("this is the last active administrator; make someone else an administrator first"),
        "1 to 120 characters, e.g. what uses the token": _("1 to 120 characters, e.g. what uses the token"),
        "tokens are only for service accounts": _("tokens are only for service accounts"),
        "the account is inactive": _("the account is inactive"),
    }


def _localized(errors: dict[str, str] | None) -> dict[str, str]:
    known = _field_messages()
    return {field: known.get(message, message) for field, message in (errors or {}).items()}


def _roles_from_form() -> list[str]:
    return request.form.getlist("roles")


@bp.get("/users")
def users():
    q = (request.args.get("q") or "").strip()[:100]
    page = accounts.list_users(rt(), page_arg(), PER_PAGE, q or None)
    return render_template("admin_users.html", page=page, q=q, args={"q": q} if q else {})


def _render_new(values: dict, errors: dict | None = None, status: int = 200):
    return render_template("admin_user.html", mode="new", values=values, errors=_localized(errors),
                           roles=accounts.ROLES), status


@bp.route("/users/new", methods=["GET", "POST"])
def new_user():
    if request.method == "GET":
        return _render_new({"language": "zh-CN", "roles": []})
    form = request.form
    values = {"username": form.get("username", ""), "display_name": form.get("display_name", ""),
              "email": form.get("email", ""), "team": form.get("team", ""),
              "language": form.get("language", "zh-CN"), "roles": _roles_from_form(),
              "service_account": form.get("service_account") == "1"}
    try:
        made = accounts.add_user(rt(), me(), values["username"], form.get("password", ""), values["roles"],
                                 display_name=values["display_name"], team=values["team"], email=values["email"],
                                 language=values["language"], service_account=values["service_account"])
    except InvalidInput as err:
        return _render_new(values, err.errors or {"": err.message}, 422)
    flash(_("Created the account %(name)s.", name=made.username), "ok")
    return redirect(url_for("admin.user", user_id=made.id))


def _render_user(user_id: int, errors: dict | None = None, new_token: str | None = None, values: dict | None = None,
                 status: int = 200):
    detail = tokens.account_detail(rt(), user_id)
    u = detail.user
    shown = values or {"display_name": u.display_name, "email": u.email or "", "team": u.team or "",
                       "roles": list(u.roles), "active": u.active}
    response = current_app.make_response((render_template(
        "admin_user.html", mode="edit", u=u, tokens=detail.tokens, values=shown, errors=_localized(errors),
        new_token=new_token, roles=accounts.ROLES), status))
    if new_token:  # the only copy of the secret: keep it out of every cache
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
def user(user_id: int):
    if request.method == "GET":
        return _render_user(user_id)
    action = request.form.get("action", "update")
    if action == "issue_token":
        try:
            token = tokens.issue_token(rt(), user_id, request.form.get("token_name", ""), me())
        except InvalidInput as err:
            return _render_user(user_id, errors={"token_name": "; ".join(err.errors.values()) or err.message},
                                status=422)
        return _render_user(user_id, new_token=token)
    if action == "revoke_token":
        token_id = request.form.get("token_id", type=int)
        if token_id is None:
            abort(400)
        revoked = tokens.revoke_token(rt(), token_id, me(), user_id=user_id)
        flash(_("Revoked the token %(name)s.", name=revoked.name), "ok")
        return redirect(url_for("admin.user", user_id=user_id))
    if action != "update":
        abort(400)
    values = {"display_name": request.form.get("display_name", ""), "email": request.form.get("email", ""),
              "team": request.form.get("team", ""), "roles": _roles_from_form(),
              "active": request.form.get("active") == "1"}
    try:
        saved = accounts.update_user(rt(), user_id, values["roles"], values["display_name"], values["team"],
                                     values["email"], values["active"], me())
    except InvalidInput as err:
        return _render_user(user_id, errors=err.errors or {"": err.message}, values=values, status=422)
    flash(_("Saved the account %(name)s.", name=saved.username), "ok")
    return redirect(url_for("admin.user", user_id=user_id))
