"""Error pages and JSON errors: a clear message, a translated headline, never a stack trace."""

from __future__ import annotations

from flask import jsonify, render_template, request

from .i18n import gettext as _
from .labels import N_

_HEADLINES = {
    400: N_("The request could not be understood"),
    403: N_("You may not do this"),
    404: N_("Not found"),
    405: N_("Not allowed here"),
    409: N_("Someone else got there first"),
    413: N_("Too much data"),
    422: N_("Please check what you entered"),
    429: N_("Too many attempts"),
    500: N_("Something went wrong on our side"),
}


# the API's stable error codes for answers that no service error made (guards, 404s of unknown routes, ...)
_API_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
              409: "conflict", 413: "too_large", 422: "invalid", 429: "rate_limited", 500: "server_error"}


def headline(status: int) -> str:
    return _(_HEADLINES.get(status, _HEADLINES[500]))


def render_error(status: int, message: str | None, code: str | None = None, errors: dict | None = None):
    if request.path.startswith("/api/"):
        body = {"error": code or _API_CODES.get(status, str(status)),
                "message": message or _HEADLINES.get(status, _HEADLINES[500])}
        if errors:
            body["errors"] = errors
        return jsonify(body), status
    from .i18n import get_language
    from .messages import localize_message

    shown = localize_message(message, get_language()) if message else None
    if request.is_json:  # a page's script (the studio editor) posted JSON: it reads the answer as JSON
        return jsonify({"error": shown or headline(status)}), status
    return render_template("error.html", status=status, headline=headline(status), message=shown), status
