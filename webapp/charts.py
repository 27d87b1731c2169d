"""Rows for the dashboard's bar charts, ``(label, value, text)``, with labels in the reader's language."""

from __future__ import annotations

from flask import Flask

from workflows.services.records import fmt

from .i18n import gettext as _
from .labels import bilingual, risk_label, stage_label


def rate_rows(rates) -> list[tuple]:
    return [(r.key, r.rate or 0, f"{r.rate * 100:.1f}%" if r.rate is not None else "—") for r in rates]


def age_rows(buckets) -> list[tuple]:
    return [(label, float(amount), f"{fmt(amount)} ({n})") for label, amount, n in buckets]


def pipeline_rows(stages) -> list[tuple]:
    return [(stage_label(stage), n, f"{n} · {fmt(amount)}") for stage, n, amount in stages]


def hours_rows(rows) -> list[tuple]:
    return [(bilingual(name), hours, _("%(h)s h (%(n)s)", h=f"{hours:.1f}", n=n)) for name, n, hours in rows]


def days_rows(rows) -> list[tuple]:
    return [(stage_label(stage), days, _("%(d)s d (%(n)s)", d=f"{days:.1f}", n=n)) for stage, n, days in rows]


def severity_rows(rows) -> list[tuple]:
    return [(risk_label(severity), n, str(n)) for severity, n in rows]


def init_app(app: Flask) -> None:
    for fn in (rate_rows, age_rows, pipeline_rows, hours_rows, days_rows, severity_rows):
        app.jinja_env.filters[fn.__name__] = fn
