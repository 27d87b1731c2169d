"""Where settings come from: environment variables, with defaults for a developer's checkout."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    url = os.environ.get("LVYUE_DATABASE_URL")
    if url:
        return url
    folder = PROJECT_ROOT / "instance"
    folder.mkdir(exist_ok=True)
    return f"sqlite:///{folder / 'lvyue.db'}"


def bpmn_dir() -> Path:
    return Path(os.environ.get("LVYUE_BPMN_DIR") or PROJECT_ROOT / "bpmn")


def base_url() -> str | None:
    """Where people reach the web app (``https://lvyue.example.com``): e-mails link to their task."""
    url = os.environ.get("LVYUE_BASE_URL", "").strip().rstrip("/")
    return url or None


def anchor_interval() -> timedelta:
    """How often the worker anchors the audit chains (LVYUE_ANCHOR_MINUTES, default 60)."""
    return timedelta(minutes=float(os.environ.get("LVYUE_ANCHOR_MINUTES") or 60))


def business_tz() -> str:
    return os.environ.get("LVYUE_BUSINESS_TZ", "Asia/Shanghai")


def script_limits() -> dict[str, float | int]:
    """Budgets of every script and expression a process runs, for ``sandbox.make_script_engine``; unset
    variables keep the sandbox's defaults. LVYUE_SCRIPT_MAX_SECONDS (1), LVYUE_SCRIPT_MAX_MEMORY_MB (256),
    LVYUE_SCRIPT_MAX_SIZE (1000000 items or characters per value), LVYUE_SCRIPT_MAX_ITERATIONS (100000),
    LVYUE_SCRIPT_MAX_DATA (8000000 characters of task data a script may leave behind)."""
    limits = {}
    for name, key, kind, scale in (("LVYUE_SCRIPT_MAX_SECONDS", "max_seconds", float, 1),
                                   ("LVYUE_SCRIPT_MAX_MEMORY_MB", "max_memory", int, 2**20),
                                   ("LVYUE_SCRIPT_MAX_SIZE", "max_size", int, 1),
                                   ("LVYUE_SCRIPT_MAX_ITERATIONS", "max_iterations", int, 1),
                                   ("LVYUE_SCRIPT_MAX_DATA", "max_data", int, 1)):
        number = _positive(name, kind)
        if number is not None:
            limits[key] = number * scale
    return limits


def _positive(name: str, kind: type[int] | type[float]) -> int | float | None:
    """The positive number in environment variable ``name`` (None when unset or blank); anything else is an
    error naming the variable."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        number = kind(value)
    except ValueError:
        raise ValueError(f"{name} must be a positive number, not {value!r}") from None
    if number <= 0:
        raise ValueError(f"{name} must be a positive number, not {value!r}")
    return number


@dataclass(frozen=True)
class SmtpSettings:
    """Where the worker sends the e-mail outbox. ``host`` None: sending is off and mails stay pending."""

    host: str | None = None
    port: int = 25
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    mail_from: str = "lvyue@localhost"
    timeout: float = 30.0

    @property
    def enabled(self) -> bool:
        return bool(self.host)


def smtp_settings() -> SmtpSettings:
    """From LVYUE_SMTP_HOST (unset: no sending), LVYUE_SMTP_PORT (25), LVYUE_SMTP_USER, LVYUE_SMTP_PASSWORD,
    LVYUE_SMTP_STARTTLS (0/1) and LVYUE_MAIL_FROM (lvyue@localhost)."""
    env = os.environ
    port = env.get("LVYUE_SMTP_PORT", "").strip()
    return SmtpSettings(
        host=env.get("LVYUE_SMTP_HOST", "").strip() or None,
        port=int(port) if port else 25,
        user=env.get("LVYUE_SMTP_USER") or None,
        password=env.get("LVYUE_SMTP_PASSWORD") or None,
        starttls=env.get("LVYUE_SMTP_STARTTLS", "0").strip().lower() in ("1", "true", "yes", "on"),
        mail_from=env.get("LVYUE_MAIL_FROM", "").strip() or "lvyue@localhost",
    )


def remind_interval() -> timedelta:
    """How long after a reminder about a task the next one may be sent (LVYUE_REMIND_INTERVAL_MINUTES,
    default 240)."""
    minutes = _positive("LVYUE_REMIND_INTERVAL_MINUTES", float)
    return timedelta(minutes=240 if minutes is None else minutes)
