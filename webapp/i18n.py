"""Languages: Simplified Chinese and English, chosen per user and switchable.

Catalogs are read from the ``.po`` files under ``webapp/translations`` when the app starts (no compile
step to forget). Dates are shown in the business time zone; money as CNY, both formatted per language
with Babel.
"""

from __future__ import annotations

import io
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal
from babel.support import NullTranslations, Translations
from flask import Flask, current_app, g, request, session
from flask_login import current_user
from markupsafe import Markup

LANGUAGES = {"zh-CN": "简体中文", "en": "English"}
DEFAULT_LANGUAGE = "zh-CN"
_BABEL = {"zh-CN": "zh_Hans_CN", "en": "en_US"}
TRANSLATIONS_DIR = Path(__file__).parent / "translations"


def load_catalogs(folder: Path = TRANSLATIONS_DIR) -> dict[str, NullTranslations]:
    catalogs: dict[str, NullTranslations] = {"en": NullTranslations()}
    for lang, code in (("zh-CN", "zh_CN"),):
        po = folder / code / "LC_MESSAGES" / "messages.po"
        if not po.exists():
            catalogs[lang] = NullTranslations()
            continue
        with po.open("rb") as fh:
            catalog = read_po(fh, locale=code)
        buf = io.BytesIO()
        write_mo(buf, catalog)
        buf.seek(0)
        catalogs[lang] = Translations(buf)
    return catalogs


def normalize(lang: str | None) -> str | None:
    if not lang:
        return None
    lang = lang.replace("_", "-")
    if lang.lower().startswith("zh"):
        return "zh-CN"
    if lang.lower().startswith("en"):
        return "en"
    return None


def get_language() -> str:
    if "lang" in g:
        return g.lang
    lang = None
    if current_user and current_user.is_authenticated:
        lang = normalize(current_user.language)
    lang = lang or normalize(session.get("lang"))
    if lang is None:
        best = request.accept_languages.best_match(["zh-CN", "zh", "en"]) if request else None
        lang = normalize(best) or DEFAULT_LANGUAGE
    g.lang = lang
    return lang


def _translations() -> NullTranslations:
    return current_app.extensions["lvyue_i18n"][get_language()]


def gettext(message: str, **variables) -> str:
    text = _translations().gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables) -> str:
    variables.setdefault("num", n)
    return _translations().ngettext(singular, plural, n) % variables


def babel_locale(lang: str | None = None) -> Locale:
    return Locale.parse(_BABEL[lang or get_language()])


def _tz() -> ZoneInfo:
    return ZoneInfo(current_app.extensions["lvyue"].business_tz)


def fmt_money(value) -> str:
    if value is None or value == "":
        return ""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    # Babel writes "CN¥" in English; people here read "¥" as the yuan in either language
    return format_currency(amount, "CNY", locale=babel_locale()).replace("CN¥", "¥")


def fmt_number(value) -> str:
    return "" if value is None else format_decimal(value, locale=babel_locale())


def fmt_date(value) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):  # a date, or a datetime as notifications store them (ISO 8601)
        try:
            value = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        value = value.astimezone(_tz()).date()
    return format_date(value, format="medium", locale=babel_locale())


def fmt_datetime(value) -> str:
    if value is None:
        return ""
    return format_datetime(value.astimezone(_tz()), format="short" if get_language() == "en" else "yyyy-MM-dd HH:mm",
                           locale=babel_locale())


def fmt_duration(delta) -> str:
    """'3d 4h' / '3天4小时' for how long a task has waited or is overdue."""
    seconds = int(abs(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return gettext("%(d)sd %(h)sh", d=days, h=hours)
    if hours:
        return gettext("%(h)sh %(m)sm", h=hours, m=minutes)
    return gettext("%(m)sm", m=minutes)


def init_app(app: Flask) -> None:
    app.extensions["lvyue_i18n"] = load_catalogs()
    app.jinja_env.add_extension("jinja2.ext.i18n")
    app.jinja_env.install_gettext_callables(gettext, ngettext, newstyle=True)
    app.jinja_env.filters.update(money=fmt_money, number=fmt_number, date=fmt_date, datetime=fmt_datetime,
                                 duration=fmt_duration)

    @app.context_processor
    def _language():
        return {"lang": get_language(), "LANGUAGES": LANGUAGES, "Markup": Markup}
