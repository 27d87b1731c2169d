"""Names in the BPMN are written bilingually ("Record payment / 登记回款"); show the half for a language."""

from __future__ import annotations


def language_of(value: str | None) -> str:
    return "en" if (value or "").lower().startswith("en") else "zh-CN"


def name_in(name: str | None, language: str | None) -> str:
    """``"English / 中文"`` → the half for ``language``; any other name as it is."""
    parts = [p.strip() for p in (name or "").split(" / ", 1)]
    if len(parts) != 2 or not all(parts):
        return name or ""
    return parts[0] if language_of(language) == "en" else parts[1]
