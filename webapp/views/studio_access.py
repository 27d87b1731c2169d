"""The studio belongs to process owners: every studio blueprint refuses anyone else (403) before its views run."""

from __future__ import annotations

from flask import abort, current_app
from flask_login import current_user

from .common import me

OWNER_ROLE = "process_owner"


def owners_only():
    if not current_user.is_authenticated:
        return current_app.login_manager.unauthorized()
    if OWNER_ROLE not in me().roles:
        abort(403)
    return None
