"""Where settings come from: environment variables, with defaults for a developer's checkout."""

from __future__ import annotations

import os
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


def business_tz() -> str:
    return os.environ.get("LVYUE_BUSINESS_TZ", "Asia/Shanghai")
