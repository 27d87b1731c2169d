"""Log in and out, and switch the language (per user when logged in, per session before)."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from workflows.services import accounts

from ..i18n import LANGUAGES
from ..i18n import gettext as _
from ..session_user import SessionUser
from .common import me, rt, safe_next

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("queues.index"))
    error, username = None, ""
    status = 200
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        cfg = current_app.config
        policy = accounts.LoginPolicy(cfg["LOGIN_MAX_FAILURES"], cfg["LOGIN_MAX_FAILURES_PER_ADDR"],
                                      int(cfg["LOGIN_WINDOW"].total_seconds()))
        try:
            user = accounts.login(rt(), username, request.form.get("password", ""), request.remote_addr, policy)
        except accounts.RateLimited:
            user, error, status = None, _("Too many failed logins. Wait 15 minutes and try again."), 429
        if user is not None:
            lang = session.get("lang")
            session.clear()  # a fresh session on login: no fixation
            login_user(SessionUser(user))
            session.permanent = True
            if lang in LANGUAGES and lang != user.language:  # chosen on the login page: keep it
                accounts.set_language(rt(), user.id, lang)
            return redirect(safe_next(request.args.get("next"), url_for("queues.index")))
        if error is None:
            error, status = _("Wrong user name or password."), 401
    return render_template("login.html", error=error, username=username), status


@bp.post("/logout")
@login_required
def logout():
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


@bp.post("/language")
def language():
    lang = request.form.get("lang", "")
    if lang in LANGUAGES:
        session["lang"] = lang
        if current_user.is_authenticated:
            accounts.set_language(rt(), me().id, lang)
    return redirect(safe_next(request.form.get("next"), url_for("queues.index")))
