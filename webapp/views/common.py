"""Small helpers every blueprint uses: the runtime, the current user's service view, safe redirects."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from flask import current_app, request
from flask_login import current_user

from workflows.runtime import Runtime
from workflows.services.accounts import UserView
from workflows.services.errors import InvalidInput
from workflows.services.tasks import QueueFilter


def rt() -> Runtime:
    return current_app.extensions["lvyue"]


def me() -> UserView:
    return current_user.view


def safe_next(target: str | None, default: str | None) -> str | None:
    """Only same-site relative paths: an open redirect would let a phishing link borrow our login page."""
    if not target:
        return default
    if any(ord(c) < 32 or ord(c) == 127 for c in target):  # no header injection through Location
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def page_arg() -> int:
    return max(1, min(request.args.get("page", 1, type=int) or 1, 100_000))


def say(message: str) -> str:
    """A service message in the page's language."""
    from ..i18n import get_language
    from ..messages import localize_message

    return localize_message(message, get_language())


def queue_filter_arg() -> QueueFilter:
    """The queue filters of the query string (the queue page and the API read the same ones)."""
    return QueueFilter(stage=request.args.get("stage") or None,
                       customer=(request.args.get("customer") or "").strip()[:100] or None,
                       amount_min=money_arg("amount_min"), amount_max=money_arg("amount_max"),
                       due=request.args.get("due") or None, sort=request.args.get("sort") or "due")


def money_arg(name: str) -> Decimal | None:
    """An amount filter from the query string (``12,000.50``), or None; anything else is a clear 422."""
    raw = (request.args.get(name) or "").replace(",", "").strip()
    if not raw:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or abs(value) >= 10**16:
        raise InvalidInput(f"'{raw[:40]}' is not an amount", {name: "must be an amount such as 1234.50"})
    return value
