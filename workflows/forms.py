"""Server-side validation of form submissions against a task's JSON Schema.

Every completion goes through here, whatever the browser checked. Errors come back per field (a path
such as ``line_items/0/unit_price``) so the page can show them next to the field. Money fields
(``"format": "money"``) become ``Decimal``; keys that would confuse the engine's serializer
(``typename``) or look like Python internals (``__x``) are refused, as are fields the form does not have.

File fields are what SpiffArena draws, ``{"type": "string", "format": "data-url"}``, optionally with
``"x-attachment": {"accept": [content types], "maxBytes": n}``. Where SpiffArena keeps the whole file in
the task data as a data URL, Lvyue keeps a data URL *without* the bytes that names the stored file by its
SHA-256 (``file_reference``); here only its shape is checked, ``services/attachments.py`` checks that the
file was really uploaded to the contract.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, unquote

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

MAX_SUBMISSION_BYTES = 256 * 1024
MAX_STRING = 20_000
# ASCII digits only, and nothing after them: Python's \d and $ would also take "١٢٣" and "12.50\n"
MONEY_RE = re.compile(r"-?[0-9]{1,13}(\.[0-9]{1,2})?")
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
FORBIDDEN_KEYS = {"typename"}

_formats = FormatChecker()


@_formats.checks("money", raises=(InvalidOperation, ValueError))
def _is_money(value: object) -> bool:
    if not isinstance(value, str):
        return True  # the type keyword reports non-strings
    return MONEY_RE.fullmatch(value) is not None


@_formats.checks("data-url")
def _is_file_reference(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return parse_reference(value) is not None


@_formats.checks("date", raises=ValueError)
def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    # fromisoformat alone also takes ISO week dates ("2026-W01-1" is 2025-12-29) and "20261220"
    return DATE_RE.fullmatch(value) is not None and date.fromisoformat(value) is not None


class FormInvalid(Exception):
    """A submission that does not fit its form; ``errors`` maps a field path to a message."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k or 'form'}: {v}" for k, v in errors.items()))


def _path(parts) -> str:
    return "/".join(str(p) for p in parts)


_FORMAT_TEXT = {"money": "an amount such as 1234.50 (as text)", "date": "a date such as 2026-12-31",
                "data-url": "a file uploaded with the form"}


def _friendly(err: ValidationError) -> tuple[str, str]:
    path = list(err.absolute_path)
    v = err.validator
    # the names come from the instance and the schema, not from the message, which holds their repr ('\\x1f')
    if v == "required" and isinstance(err.instance, dict):
        # jsonschema reports each missing property in an error of its own, whose message starts with its repr
        missing = [k for k in err.validator_value if k not in err.instance]
        named = [k for k in missing if err.message.startswith(repr(k))] or missing
        return _path(path + named[:1]), "this field is required"
    if v == "additionalProperties" and isinstance(err.instance, dict):
        props = err.schema.get("properties") or {}
        patterns = list(err.schema.get("patternProperties") or {})
        extra = [k for k in err.instance if k not in props and not any(re.search(p, str(k)) for p in patterns)]
        return _path(path + extra[:1]), "this field is not part of the form"
    if v == "type" and err.schema.get("format") in _FORMAT_TEXT:
        return _path(path), f"must be {_FORMAT_TEXT[err.schema['format']]}"
    if v == "type":
        expected = err.validator_value
        names = {"string": "text", "number": "a number", "integer": "a whole number", "boolean": "yes or no",
                 "array": "a list", "object": "a group of fields"}
        if isinstance(expected, list):
            wanted = " or ".join(names.get(t, t) for t in expected)
        else:
            wanted = names.get(expected, expected)
        return _path(path), f"must be {wanted}"
    if v == "format":
        return _path(path), f"must be {_FORMAT_TEXT.get(err.validator_value, err.validator_value)}"
    if v in ("oneOf", "anyOf", "enum", "const"):
        options = err.schema.get("oneOf") or err.schema.get("anyOf") or []
        consts = [str(o.get("const")) for o in options if isinstance(o, dict) and "const" in o]
        if v == "enum":
            consts = [str(x) for x in err.validator_value]
        if consts:
            return _path(path), "must be one of: " + ", ".join(consts)
        return _path(path), "is not an allowed value"
    simple = {
        "minimum": "must be at least {}", "maximum": "must be at most {}",
        "exclusiveMinimum": "must be more than {}", "exclusiveMaximum": "must be less than {}",
        "minLength": "must have at least {} characters", "maxLength": "must have at most {} characters",
        "minItems": "needs at least {} entries", "maxItems": "allows at most {} entries",
        "pattern": "has the wrong format",
    }
    if v in simple:
        return _path(path), simple[v].format(err.validator_value)
    return _path(path), err.message


def _scan_keys(value: Any, path: list, errors: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                errors[_path(path)] = "field names must be text"
            elif key in FORBIDDEN_KEYS or key.startswith("__"):
                errors[_path(path + [key])] = f"'{key}' is a reserved name and cannot be a field"
            else:
                _scan_keys(item, path + [key], errors)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _scan_keys(item, path + [i], errors)
    elif isinstance(value, str) and len(value) > MAX_STRING:
        errors[_path(path)] = f"must have at most {MAX_STRING} characters"
    elif isinstance(value, str) and "\x00" in value:
        errors[_path(path)] = "must not contain control characters"
    elif isinstance(value, float) and value != value:  # NaN
        errors[_path(path)] = "must be a number"


def _unknown_fields(schema: dict, value: Any, path: list, errors: dict[str, str]) -> None:
    """Refuse fields the form does not declare, even where the schema forgot additionalProperties."""
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        props = schema["properties"]
        for key, item in value.items():
            if key not in props:
                errors.setdefault(_path(path + [key]), "this field is not part of the form")
            else:
                _unknown_fields(props[key], item, path + [key], errors)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _unknown_fields(schema["items"], item, path + [i], errors)


def _convert(schema: dict, value: Any) -> Any:
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        return {k: _convert(schema["properties"].get(k, {}), v) for k, v in value.items()}
    if isinstance(value, list):
        item_schema = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        return [_convert(item_schema, v) for v in value]
    if schema.get("format") == "money" and isinstance(value, str):
        return Decimal(value)
    return value


def validator_for(schema: dict) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=_formats)


def validate_submission(schema: dict, data: Any, validator: Draft202012Validator | None = None) -> dict:
    """Return the cleaned data (money as Decimal) or raise ``FormInvalid`` with every field's problem."""
    if not isinstance(data, dict):
        raise FormInvalid({"": "the form data must be a set of named fields"})
    try:
        size = len(json.dumps(data, default=str))
    except (TypeError, ValueError):
        raise FormInvalid({"": "the form data is not valid JSON"}) from None
    if size > MAX_SUBMISSION_BYTES:
        raise FormInvalid({"": f"the form data is {size} bytes; at most {MAX_SUBMISSION_BYTES} allowed"})
    errors: dict[str, str] = {}
    _scan_keys(data, [], errors)
    _unknown_fields(schema, data, [], errors)
    for err in sorted((validator or validator_for(schema)).iter_errors(data), key=lambda e: list(e.path)):
        path, message = _friendly(err)
        errors.setdefault(path, message)
    if errors:
        raise FormInvalid(errors)
    return _convert(schema, data)


def to_form_values(value: Any) -> Any:
    """Task data → JSON form values (Decimal back to text), for pre-filling a form."""
    if isinstance(value, dict):
        return {k: to_form_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_form_values(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


# --------------------------------------------------------------------------------------------- file fields

# data:<type>;name=<percent-encoded name>;size=<bytes>;sha256=<hex>,  — a data URL whose data is empty
_REFERENCE_RE = re.compile(r"data:(?P<type>[a-z0-9][a-z0-9.+-]{0,60}/[a-z0-9][a-z0-9.+-]{0,60});"
                           r"name=(?P<name>[A-Za-z0-9%._~-]{1,2000});size=(?P<size>0|[1-9][0-9]{0,14});"
                           r"sha256=(?P<sha256>[0-9a-f]{64}),")
ATTACHMENT_KEYWORD = "x-attachment"
KNOWN_FILE_TYPES = ("application/pdf", "image/png", "image/jpeg", "message/rfc822")


@dataclass(frozen=True)
class FileRef:
    """What task data holds for an uploaded file."""

    sha256: str
    name: str
    size: int
    content_type: str

    def __str__(self) -> str:
        return file_reference(self.sha256, self.name, self.size, self.content_type)


def file_reference(sha256: str, name: str, size: int, content_type: str) -> str:
    return f"data:{content_type};name={quote(name, safe='')};size={int(size)};sha256={sha256},"


def parse_reference(value: Any) -> FileRef | None:
    """The file a reference names, or None for anything else (a data URL with the bytes in it, say)."""
    if not isinstance(value, str):
        return None
    found = _REFERENCE_RE.fullmatch(value)
    if found is None:
        return None
    try:
        name = unquote(found["name"], errors="strict")
    except UnicodeDecodeError:
        return None
    if not name or any(ord(c) < 32 for c in name):
        return None
    return FileRef(found["sha256"], name, int(found["size"]), found["type"])


def is_file_field(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("format") == "data-url" and schema.get("type") in (None, "string")


def file_fields(schema: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict]]:
    """The file fields of a form, as (path, schema node), in its objects and nested groups (not in list rows)."""
    out: list[tuple[tuple[str, ...], dict]] = []
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return out
    for key, node in props.items():
        if is_file_field(node):
            out.append(((*path, key), node))
        elif isinstance(node, dict) and isinstance(node.get("properties"), dict):
            out.extend(file_fields(node, (*path, key)))
    return out


def attachment_rules(node: dict, types: tuple[str, ...], max_bytes: int) -> tuple[tuple[str, ...], int]:
    """The content types and size a file field takes: the server's limits, narrowed by the form's own."""
    rules = node.get(ATTACHMENT_KEYWORD) if isinstance(node, dict) else None
    rules = rules if isinstance(rules, dict) else {}
    accept = rules.get("accept")
    if isinstance(accept, list):
        types = tuple(t for t in types if t in accept)
    limit = rules.get("maxBytes")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        max_bytes = min(max_bytes, limit)
    return types, max_bytes


def file_field_problems(schema: Any) -> list[str]:
    """Deploy-time checks of file fields: ``x-attachment`` well formed, no file fields inside list rows."""
    problems: list[str] = []

    def walk(node: Any, where: str, in_list: bool) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, where, in_list)
            return
        if not isinstance(node, dict):
            return
        if ATTACHMENT_KEYWORD in node or is_file_field(node):
            problems.extend(f"{where or 'the form'}: {p}" for p in _attachment_problems(node, in_list))
        for key, child in node.items():
            if key in ("items", "prefixItems", "contains"):
                walk(child, f"{where}/{key}", True)
            elif key != ATTACHMENT_KEYWORD:
                walk(child, f"{where}/{key}" if key != "properties" else where, in_list)

    walk(schema, "", False)
    for path, _ in file_fields(schema):
        if len("/".join(path)) > MAX_FILE_FIELD_PATH:
            problems.append(f"the file field '{'/'.join(path)[:60]}…' has a path longer than {MAX_FILE_FIELD_PATH} "
                            "characters; give it a shorter name")
    return problems


MAX_FILE_FIELD_PATH = 200  # attachments.field


def node_type(node: dict) -> str:
    """The type the task page renders a schema node as (like the form renderer reads it)."""
    t = node.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), None)
    if t is None and isinstance(node.get("properties"), dict):
        t = "object"
    return t if isinstance(t, str) else "string"


def row_field_problems(schema: Any) -> list[str]:
    """Deploy-time check of what the task page can draw: a list's rows hold plain fields, not groups or lists."""
    problems: list[str] = []

    def walk(node: Any, where: str) -> None:
        if not isinstance(node, dict):
            return
        kind = node_type(node)
        if kind == "object" and isinstance(node.get("properties"), dict):
            for key, child in node["properties"].items():
                walk(child, f"{where}/{key}")
        elif kind == "array" and isinstance(node.get("items"), dict):
            items = node["items"]
            columns = items.get("properties") if isinstance(items.get("properties"), dict) else {}
            if node_type(items) == "array":
                problems.append(f"{where or 'the form'}: a list whose rows are lists cannot be shown on the task "
                                "page; give the rows named fields")
            for key, child in columns.items():
                if isinstance(child, dict) and node_type(child) in ("object", "array"):
                    problems.append(f"{where}/{key}: a row of a list can hold only plain fields, not a group or "
                                    "another list; move it beside the list")

    walk(schema, "")
    return problems


def _attachment_problems(node: dict, in_list: bool) -> list[str]:
    out = []
    if in_list and is_file_field(node):
        out.append("file fields inside list rows are not supported; put the file field beside the list")
    if ATTACHMENT_KEYWORD not in node:
        return out
    if not is_file_field(node):
        out.append(f"'{ATTACHMENT_KEYWORD}' belongs on a file field: "
                   '{"type": "string", "format": "data-url"}')
    rules = node[ATTACHMENT_KEYWORD]
    if not isinstance(rules, dict):
        return [*out, f"'{ATTACHMENT_KEYWORD}' must be an object with 'accept' and/or 'maxBytes'"]
    unknown = sorted(set(rules) - {"accept", "maxBytes"})
    if unknown:
        out.append(f"'{ATTACHMENT_KEYWORD}' has unknown keys: {', '.join(map(str, unknown))[:200]}")
    accept = rules.get("accept")
    if "accept" in rules and (not isinstance(accept, list) or not accept
                              or not all(isinstance(t, str) and t in KNOWN_FILE_TYPES for t in accept)):
        out.append(f"'{ATTACHMENT_KEYWORD}.accept' must list content types among {', '.join(KNOWN_FILE_TYPES)}")
    limit = rules.get("maxBytes")
    if "maxBytes" in rules and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        out.append(f"'{ATTACHMENT_KEYWORD}.maxBytes' must be a positive whole number of bytes")
    return out
