"""Flask application factory: sessions and CSRF, languages, one blueprint per area, error pages."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, abort, redirect, request, url_for
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFError, CSRFProtect

from workflows import config as wf_config
from workflows.runtime import Runtime
from workflows.services import accounts
from workflows.services.errors import ServiceError

from . import charts, i18n, labels
from .config import Config, TestConfig
from .errors import render_error
from .session_user import SessionUser

__all__ = ["Config", "TestConfig", "create_app", "csrf"]

csrf = CSRFProtect()


def create_app(config: type[Config] = Config, runtime: Runtime | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_object(config)
    rt = runtime or Runtime(app.config.get("DATABASE_URL") or wf_config.database_url(),
                            business_tz=wf_config.business_tz())
    app.extensions["lvyue"] = rt
    csrf.init_app(app)
    i18n.init_app(app)
    labels.init_app(app)
    charts.init_app(app)
    _init_login(app, rt)

    from .views import BLUEPRINTS

    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    _init_errors(app)
    _init_guards(app)
    _init_headers(app)
    return app


def _init_login(app: Flask, rt: Runtime) -> None:
    manager = LoginManager(app)
    manager.login_view = "auth.login"
    manager.login_message = None
    manager.session_protection = "strong"

    @manager.unauthorized_handler
    def _unauthorized():
        from .views.common import safe_next

        # after logging in, go back to the page the user was on: a POST's own URL has no page to show
        target = request.full_path if request.method == "GET" else urlsplit(request.referrer or "").path
        return redirect(url_for("auth.login", next=safe_next(target, None) or None))

    @manager.user_loader
    def _load(user_id: str):
        view = accounts.get_user_by_id(rt, int(user_id)) if user_id.isdigit() else None
        return SessionUser(view) if view is not None else None


def _init_errors(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(err: CSRFError):
        message = i18n.gettext("Your form expired or was sent from another page; nothing was changed. "
                               "Check it and send it again.")
        from .views.task import rerender_task_form

        page = rerender_task_form(message) if request.endpoint == "task.complete" else None
        return page if page is not None else render_error(400, message)

    @app.errorhandler(ServiceError)
    def _service(err: ServiceError):
        return render_error(err.status, err.message, err.code, getattr(err, "errors", None))

    for code in (403, 404, 405, 429, 500):
        app.register_error_handler(code, lambda err, code=code: render_error(code, None))

    @app.errorhandler(413)
    def _too_large(err):
        from .views.attachments import too_large_message  # a task form's files: say what the limit is

        return render_error(413, too_large_message())


def _init_guards(app: Flask) -> None:
    """Requests no browser sends: control characters in parameters, ids beyond any row. A clear 400/404
    here instead of a database error later."""

    def _bad(text: str) -> bool:
        return any(ord(c) < 32 and c not in "\t\r\n" for c in text)

    @app.before_request
    def _reject_control_characters():
        values = [*request.args.keys(), *request.args.values(), request.path]
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            values += [*request.form.keys(), *request.form.values()]
        if any(_bad(v) for v in values):
            if request.path.startswith("/api/"):  # the API answers in English, whatever the server's language
                return render_error(400, "The request contains control characters.")
            return render_error(400, i18n.gettext("The request contains control characters."))
        return None

    @app.url_value_preprocessor
    def _ids_in_range(endpoint, values):
        if values and any(isinstance(v, int) and not 0 < v < 2**31 for v in values.values()):
            abort(404)


# pages that render templates/studio/edit.html (a refused deploy re-renders it)
STUDIO_EDITOR_ENDPOINTS = frozenset({"studio.edit", "studio.deploy"})


def _init_headers(app: Flask) -> None:
    @app.after_request
    def _security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        # the studio editor's dmn-js sets style attributes and its cell editor (CodeMirror) adds <style> elements:
        # that page alone allows inline styles (never inline scripts)
        style_src = "'self' 'unsafe-inline'" if request.endpoint in STUDIO_EDITOR_ENDPOINTS else "'self'"
        response.headers.setdefault("Content-Security-Policy",
                                    f"default-src 'self'; img-src 'self' data:; style-src {style_src}; "
                                    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'")
        # pages and downloads hold contract data: send_file's own "no-cache" would still let caches keep them
        signed_in = current_user and current_user.is_authenticated and request.endpoint != "static"
        if signed_in and "no-store" not in response.headers.get("Cache-Control", ""):
            response.headers["Cache-Control"] = "no-store"
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

