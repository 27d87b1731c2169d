"""Flask application factory. The approvers' UI (queues, task pages, login) is built on this later;
for now it serves a status page of what is deployed and waiting, and a health check."""

from __future__ import annotations

import os
import secrets

from flask import Flask

from workflows import config as wf_config
from workflows.runtime import Runtime


class Config:
    SECRET_KEY = os.environ.get("LVYUE_SECRET_KEY") or secrets.token_hex(32)
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    DATABASE_URL: str | None = None


class TestConfig(Config):
    TESTING = True


def create_app(config: type[Config] = Config, runtime: Runtime | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_object(config)
    rt = runtime or Runtime(app.config.get("DATABASE_URL") or wf_config.database_url(),
                            business_tz=wf_config.business_tz())
    app.extensions["lvyue"] = rt

    from .status import bp as status_bp

    app.register_blueprint(status_bp)
    return app
