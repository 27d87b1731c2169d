"""Where settings come from: environment variables, with defaults for a developer's checkout."""

from __future__ import annotations

import math
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


def warn_complaints() -> int:
    """How many complaints opened within 90 days flag a customer for attention (客户预警;
    LVYUE_WARN_COMPLAINTS, default 2)."""
    number = _positive("LVYUE_WARN_COMPLAINTS", int)
    return 2 if number is None else number


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
    if not number > 0 or not math.isfinite(number):  # NaN and infinity pass float() but are no setting
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


# file types an attachment may have: short name in LVYUE_ATTACHMENTS_TYPES -> the content type Lvyue recognises
ATTACHMENT_TYPES = {"pdf": "application/pdf", "png": "image/png", "jpeg": "image/jpeg", "eml": "message/rfc822"}


@dataclass(frozen=True)
class AttachmentSettings:
    """Limits of uploaded files and where they are kept: a local folder, or S3-compatible object storage when a
    bucket is named. The form's own ``x-attachment`` limits can only narrow these."""

    max_bytes: int = 20 * 2**20
    types: tuple[str, ...] = tuple(ATTACHMENT_TYPES.values())
    folder: Path = PROJECT_ROOT / "instance" / "attachments"
    s3_bucket: str | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_prefix: str = ""


def attachment_settings() -> AttachmentSettings:
    """From LVYUE_ATTACHMENTS_MAX_MB (20; fractions allowed), LVYUE_ATTACHMENTS_TYPES (pdf,png,jpeg,eml),
    LVYUE_ATTACHMENTS_DIR (instance/attachments) and, for object storage, LVYUE_ATTACHMENTS_S3_BUCKET with
    LVYUE_ATTACHMENTS_S3_ENDPOINT (unset: AWS), _S3_REGION, _S3_ACCESS_KEY, _S3_SECRET_KEY (unset: boto3's own
    credential chain) and _S3_PREFIX (a key prefix such as ``lvyue/``)."""
    env = os.environ
    megabytes = _positive("LVYUE_ATTACHMENTS_MAX_MB", float)
    names = [n.strip().lower() for n in env.get("LVYUE_ATTACHMENTS_TYPES", "").split(",") if n.strip()]
    unknown = [n for n in names if n not in ATTACHMENT_TYPES]
    if unknown:
        raise ValueError(f"LVYUE_ATTACHMENTS_TYPES: unknown type {unknown[0]!r}; "
                         f"choose from {', '.join(ATTACHMENT_TYPES)}")
    default = AttachmentSettings()
    return AttachmentSettings(
        max_bytes=default.max_bytes if megabytes is None else max(1, int(megabytes * 2**20)),
        types=tuple(ATTACHMENT_TYPES[n] for n in names) if names else default.types,
        folder=Path(env.get("LVYUE_ATTACHMENTS_DIR") or default.folder),
        s3_bucket=env.get("LVYUE_ATTACHMENTS_S3_BUCKET", "").strip() or None,
        s3_endpoint=env.get("LVYUE_ATTACHMENTS_S3_ENDPOINT", "").strip() or None,
        s3_region=env.get("LVYUE_ATTACHMENTS_S3_REGION", "").strip() or None,
        s3_access_key=env.get("LVYUE_ATTACHMENTS_S3_ACCESS_KEY") or None,
        s3_secret_key=env.get("LVYUE_ATTACHMENTS_S3_SECRET_KEY") or None,
        s3_prefix=env.get("LVYUE_ATTACHMENTS_S3_PREFIX", "").strip(),
    )
