"""Flask application factory: sessions and CSRF, languages, one blueprint per area, error pages."""

from __future__ import annotations

from flask import Flask
from flask_login import LoginManager
from flask_wtf.csrf import CSRFError, CSRFProtect

from workflows import config as wf_config
from workflows.runtime import Runtime
from workflows.services import accounts
from workflows.services.errors import ServiceError

from . import i18n, labels
from .config import Config, TestConfig
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
    _init_login(app, rt)

    from .views import BLUEPRINTS

    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    _init_errors(app)
    _init_headers(app)
    return app


def _init_login(app: Flask, rt: Runtime) -> None:
    manager = LoginManager(app)
    manager.login_view = "auth.login"
    manager.login_message = None
    manager.session_protection = "strong"

    @manager.user_loader
    def _load(user_id: str):
        view = accounts.get_user_by_id(rt, int(user_id)) if user_id.isdigit() else None
        return SessionUser(view) if view is not None else None


def _init_errors(app: Flask) -> None:
    from .errors import render_error

    @app.errorhandler(CSRFError)
    def _csrf(err: CSRFError):
        return render_error(400, i18n.gettext("Your form expired or was sent from another page. "
                                              "Reload the page and try again; nothing was changed."))

    @app.errorhandler(ServiceError)
    def _service(err: ServiceError):
        return render_error(err.status, err.message, err.code, getattr(err, "errors", None))

    for code in (403, 404, 405, 413, 429, 500):
        app.register_error_handler(code, lambda err, code=code: render_error(code, None))


def _init_headers(app: Flask) -> None:
    @app.after_request
    def _security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                    "script-src 'self'; frame-ancestors 'none'; form-action 'self'")
        return response

