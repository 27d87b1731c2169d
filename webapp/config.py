"""Configuration objects for the app factory (flaskr style): production defaults and a test variant."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta


class Config:
    SECRET_KEY = os.environ.get("LVYUE_SECRET_KEY") or secrets.token_hex(32)
    DATABASE_URL: str | None = None
    SESSION_COOKIE_NAME = "lvyue_session"
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    # Secure cookies by default; `lvyue run` on a loopback address may turn it off for plain http
    SESSION_COOKIE_SECURE = os.environ.get("LVYUE_INSECURE_COOKIES") != "1"
    REMEMBER_COOKIE_SECURE = SESSION_COOKIE_SECURE
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"  # flask-login's default is none
    PERMANENT_SESSION_LIFETIME = timedelta(hours=12)
    WTF_CSRF_TIME_LIMIT = 12 * 3600
    MAX_CONTENT_LENGTH = 1024 * 1024
    PER_PAGE = 20
    LOGIN_MAX_FAILURES = 5  # per user name within LOGIN_WINDOW
    LOGIN_MAX_FAILURES_PER_ADDR = 30
    LOGIN_WINDOW = timedelta(minutes=15)


class TestConfig(Config):
    TESTING = True
    SECRET_KEY = "test-secret"
    SESSION_COOKIE_SECURE = False
    REMEMBER_COOKIE_SECURE = False
