"""Test helper: the message shapes a service module can raise, read from its source, to check that each one
has a Chinese pattern in ``webapp/messages.py`` (f-string parts become "1")."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ERRORS = ("Conflict", "PermissionDenied", "FourEyesViolation", "InvalidInput", "NotFound", "ProcessError")


def _shape(node) -> str | None:
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "1" for v in node.values)
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def raised_messages(module: str, errors: tuple[str, ...] = ERRORS) -> list[str]:
    """Every message passed to an error of ``workflows/services/errors.py`` (or of ``errors``) in ``module`` (a
    path from the project root), with the per-field messages of InvalidInput and of the ``errors[...] = ...``
    it collects."""
    shapes = []
    for node in ast.walk(ast.parse((ROOT / module).read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in errors and node.args:
            shapes.append(_shape(node.args[0]))
            if len(node.args) > 1 and isinstance(node.args[1], ast.Dict):
                shapes += [_shape(v) for v in node.args[1].values]
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript)
                and getattr(node.targets[0].value, "id", "") == "errors"):
            shapes.append(_shape(node.value))
    return [s for s in shapes if s is not None]


def untranslated(module: str, errors: tuple[str, ...] = ERRORS) -> list[str]:
    from webapp.messages import _PATTERNS

    return [s for s in raised_messages(module, errors) if not any(p.match(s) for p, _ in _PATTERNS)]
