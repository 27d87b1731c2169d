"""Task forms rendered on the server from the JSON Schema and UI schema the BPMN deploys, so pages work without a
client-side form library, and posted form fields turned back into the JSON that ``validate_submission`` checks."""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from markdown_it import MarkdownIt
from markupsafe import Markup

from workflows import config
from workflows.forms import FileRef, attachment_rules, file_fields, is_file_field, node_type, parse_reference

log = logging.getLogger(__name__)

PREFIX = "f."
INDEX = "__INDEX__"
MAX_ROWS = 500
MAX_INDEX = 4 * MAX_ROWS  # rows removed in the browser leave gaps, so indexes may run a little past the row count
WIDGETS = ("text", "textarea", "number", "integer", "money", "date", "select", "radio", "checkbox", "array", "group",
           "file")
UPLOAD_PREFIX = "upload."  # the <input type=file> of field f.x is upload.x; f.x itself carries the stored reference

__all__ = ["FormView", "Field", "Row", "Option", "build_form", "parse_form", "parse_uploads", "put_values",
           "localize_error", "render_instructions"]


# --------------------------------------------------------------------------------------------- the view tree


@dataclass
class Option:
    value: str
    label: str


@dataclass
class Field:
    key: str  # the property name
    name: str  # HTML name, also used as the element id: f.line_items.0.product
    path: str  # error path as validate_submission reports it: line_items/0/product
    label: str
    widget: str  # one of WIDGETS
    input_type: str = "text"  # the <input type> to use (text when the current value would not survive type=number/date)
    description: str = ""
    help: str = ""
    placeholder: str = ""
    required: bool = False
    value: str = ""
    checked: bool = False  # checkbox
    error: str = ""
    minimum: str | None = None
    maximum: str | None = None
    step: str | None = None
    maxlength: int | None = None
    lines: int | None = None  # textarea rows
    inline: bool = False  # radio options side by side
    options: list[Option] = field(default_factory=list)
    # arrays: rows of item fields, a blank row (names with __INDEX__) for adding rows in the browser
    rows: list[Row] = field(default_factory=list)
    template: Row | None = None
    item_label: str = ""
    min_items: int | None = None
    max_items: int | None = None
    # groups (a nested object)
    children: list[Field] = field(default_factory=list)
    # file fields: the stored file the value names (if it names one), where to open it, what may be uploaded
    file: FileRef | None = None
    file_url: str | None = None
    file_kinds: list[str] = field(default_factory=list)  # PDF, PNG, JPEG, EML
    accept: str = ""  # the <input accept> list: content types and extensions
    max_size: str = ""  # "20 MB"

    @property
    def upload_name(self) -> str:
        return UPLOAD_PREFIX + self.name[len(PREFIX):]

    @property
    def file_size(self) -> str:
        return size_text(self.file.size) if self.file else ""

    @property
    def file_kind(self) -> str:
        return _KINDS.get(self.file.content_type, self.file.content_type) if self.file else ""

    @property
    def preview(self) -> str | None:
        """"image" or "pdf" when the browser can show the stored file inline."""
        return _PREVIEWS.get(self.file.content_type) if self.file else None

    @property
    def error_id(self) -> str:
        return self.name + "-error"

    @property
    def help_id(self) -> str:
        return self.name + "-help"

    @property
    def columns(self) -> list[Field]:
        """An array's column headers: the fields of its blank row."""
        return self.template.fields if self.template else []


@dataclass
class Row:
    index: str  # "0", "1", … or __INDEX__ in the template row
    fields: list[Field]
    error: str = ""


@dataclass
class FormView:
    title: str
    description: str
    fields: list[Field]
    lang: str
    error: str = ""  # errors[""]: the form as a whole
    other_errors: list[tuple[str, str]] = field(default_factory=list)  # errors on paths no field shows

    @property
    def has_files(self) -> bool:
        """A file field anywhere: the page must post the form as multipart/form-data."""
        return any(f.widget == "file" for f in _walk(self.fields))


# --------------------------------------------------------------------------------------------- helpers


def _zh(lang: str) -> bool:
    return (lang or "").lower().startswith("zh")


def _text(node: Any, key: str, lang: str) -> str:
    """``title``/``description`` in ``lang`` from ``x-i18n``, else the English text."""
    if not isinstance(node, dict):
        return ""
    if lang != "en":
        i18n = node.get("x-i18n")
        local = i18n.get(lang) if isinstance(i18n, dict) else None
        if isinstance(local, dict) and isinstance(local.get(key), str) and local[key]:
            return local[key]
    value = node.get(key)
    return value if isinstance(value, str) else ""


def _ui_text(value: Any, lang: str) -> str:
    """ui:help / ui:placeholder: a string, or a {lang: text} mapping."""
    if isinstance(value, dict):
        return str(value.get(lang) or value.get("en") or "")
    return "" if value is None else str(value)


def _as_text(value: Any) -> str:
    """A value as the text an input shows: Decimal/float in plain notation with all their digits."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        text = repr(value)
        return format(Decimal(text), "f") if "e" in text else text
    return str(value)


_type = node_type  # the deploy-time form checks read a node's type the same way


def _kind(schema: dict) -> str:
    """What a schema node holds, as far as the form cares: money/date are strings with a format."""
    t = _type(schema)
    if t == "string" and schema.get("format") in ("money", "date"):
        return schema["format"]
    return t


def _choices(schema: dict) -> list[tuple[Any, dict]]:
    """The allowed values with their label nodes, from oneOf/anyOf consts or enum."""
    for keyword in ("oneOf", "anyOf"):
        options = schema.get(keyword)
        if isinstance(options, list) and options and all(isinstance(o, dict) and "const" in o for o in options):
            return [(o["const"], o) for o in options]
    if isinstance(schema.get("enum"), list):
        return [(v, {}) for v in schema["enum"]]
    return []


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key or "." in key or any(c.isspace() for c in key) or key == INDEX:
        raise ValueError(f"form property name {key!r} cannot be used in a form (no dots, spaces or empty names)")
    return key


def _properties(schema: dict) -> dict[str, dict]:
    props = schema.get("properties")
    if not isinstance(props, dict):
        return {}
    return {_check_key(k): (v if isinstance(v, dict) else {}) for k, v in props.items()}


def _ordered(props: dict[str, dict], ui: dict) -> list[str]:
    """Property names in ui:order (with ``*`` standing for the rest), unlisted ones after, in schema order."""
    order = ui.get("ui:order") if isinstance(ui, dict) else None
    if not isinstance(order, list):
        return list(props)
    listed = [k for k in order if k in props]
    rest = [k for k in props if k not in listed]
    out: list[str] = []
    for k in order:
        if k == "*":
            out.extend(rest)
        elif k in props and k not in out:
            out.append(k)
    if "*" not in order:
        out.extend(rest)
    return out


def _number_attr(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return _as_text(value)


_KINDS = {"application/pdf": "PDF", "image/png": "PNG", "image/jpeg": "JPEG", "message/rfc822": "EML"}
_EXTENSIONS = {"application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg,.jpeg", "message/rfc822": ".eml"}
_PREVIEWS = {"application/pdf": "pdf", "image/png": "image", "image/jpeg": "image"}


def size_text(size: int) -> str:
    if size >= 2**20:
        return f"{size / 2**20:.1f} MB".replace(".0 MB", " MB")
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} B"


_INT_RE = re.compile(r"^[+-]?[0-9]{1,30}$")
_NUM_RE = re.compile(r"^[+-]?([0-9]{1,30}(\.[0-9]{0,30})?|\.[0-9]{1,30})([eE][+-]?[0-9]{1,3})?$")
_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


# --------------------------------------------------------------------------------------------- build_form


def build_form(schema: dict, uischema: dict | None, values: dict | None, errors: dict[str, str] | None,
               lang: str, file_url: Callable[[FileRef], str | None] | None = None) -> FormView:
    """The fields of ``schema`` in display order with labels in ``lang``, current ``values`` and ``errors``.

    ``values`` is task data (Decimal, int, float, bool, str) or what ``parse_form`` returned for a form being
    shown again; ``errors`` maps error paths to messages (English ones are localized here). ``file_url`` gives
    the address of a stored file a file field names (None: the page shows its name only).
    """
    schema = schema if isinstance(schema, dict) else {}
    lang = "zh-CN" if _zh(lang) else "en"
    messages = {str(k): localize_error(str(v), lang) for k, v in (errors or {}).items()}
    placed: set[str] = {""}
    fields = _object_fields(schema, uischema or {}, values if isinstance(values, dict) else {}, messages, lang,
                            [], placed, in_row=False)
    for f in _walk(fields):
        if f.widget == "file" and f.file is not None and file_url is not None:
            f.file_url = file_url(f.file)
    other = [(p, m) for p, m in messages.items() if p not in placed]
    return FormView(title=_text(schema, "title", lang), description=_text(schema, "description", lang),
                    fields=fields, lang=lang, error=messages.get("", ""), other_errors=other)


def _object_fields(schema: dict, ui: dict, values: dict, errors: dict[str, str], lang: str, path: list[str],
                   placed: set[str], in_row: bool) -> list[Field]:
    props = _properties(schema)
    required = set(schema.get("required") or [])
    ui = ui if isinstance(ui, dict) else {}
    return [_field(props[key], ui.get(key) or {}, key, values.get(key), key in required, errors, lang, path + [key],
                   placed, in_row) for key in _ordered(props, ui)]


def _field(schema: dict, ui: dict, key: str, value: Any, required: bool, errors: dict[str, str], lang: str,
           path: list[str], placed: set[str], in_row: bool) -> Field:
    ui = ui if isinstance(ui, dict) else {}
    options = ui.get("ui:options") if isinstance(ui.get("ui:options"), dict) else {}
    err_path = "/".join(path)
    placed.add(err_path)
    f = Field(key=key, name=PREFIX + ".".join(path), path=err_path, label=_text(schema, "title", lang) or key,
              widget="text", description=_text(schema, "description", lang), help=_ui_text(ui.get("ui:help"), lang),
              placeholder=_ui_text(ui.get("ui:placeholder"), lang), required=required, error=errors.get(err_path, ""))
    kind = _kind(schema)
    wanted = ui.get("ui:widget")
    if is_file_field(schema):
        if in_row:
            raise ValueError(f"{err_path}: file fields inside list rows are not supported by the form renderer")
        _file(f, schema, value)
        return f
    if kind == "array":
        _array(f, schema, ui, value, errors, lang, path, placed, in_row)
        return f
    if kind == "object":
        if in_row:
            raise ValueError(f"{err_path}: groups inside list rows are not supported by the form renderer")
        f.widget = "group"
        f.children = _object_fields(schema, ui, value if isinstance(value, dict) else {}, errors, lang, path,
                                    placed, in_row)
        return f
    f.value = _as_text(value)
    choices = _choices(schema)
    if kind == "boolean":
        f.widget, f.input_type, f.value = "checkbox", "checkbox", "true"
        f.checked = value is True or (isinstance(value, str) and value.lower() in ("true", "on", "1"))
        return f
    if choices:
        f.widget = "radio" if wanted == "radio" else "select"
        f.input_type = f.widget
        f.inline = bool(options.get("inline"))
        f.options = [Option(_as_text(const), _text(node, "title", lang) or _as_text(const)) for const, node in choices]
        return f
    if kind in ("integer", "number"):
        f.widget = kind
        f.minimum = _number_attr(schema.get("minimum"))
        f.maximum = _number_attr(schema.get("maximum"))
        multiple = _number_attr(schema.get("multipleOf"))
        f.step = multiple or ("1" if kind == "integer" else "any")
        parses = _INT_RE.match(f.value) if kind == "integer" else _NUM_RE.match(f.value)
        f.input_type = "number" if not f.value or parses else "text"  # type=number would hide what was typed
        return f
    if kind == "money":
        f.widget, f.input_type = "money", "text"
    elif kind == "date":
        f.widget = "date"
        f.input_type = "date" if not f.value or _DATE_RE.match(f.value) else "text"
    elif wanted == "textarea":
        f.widget, f.input_type = "textarea", "textarea"
        rows = options.get("rows")
        f.lines = rows if isinstance(rows, int) and not isinstance(rows, bool) and rows > 0 else None
    if isinstance(schema.get("maxLength"), int):
        f.maxlength = schema["maxLength"]
    return f


def _file(f: Field, schema: dict, value: Any) -> None:
    """A file field: the reference it holds goes back in a hidden input, a new file comes through upload.*"""
    settings = config.attachment_settings()
    types, max_bytes = attachment_rules(schema, settings.types, settings.max_bytes)
    f.widget, f.input_type = "file", "file"
    f.value = value if isinstance(value, str) else _as_text(value)
    f.file = parse_reference(value)
    f.file_kinds = [_KINDS.get(t, t) for t in types]
    f.accept = ",".join([*types, *(_EXTENSIONS[t] for t in types if t in _EXTENSIONS)])
    f.max_size = size_text(max_bytes)


def _array(f: Field, schema: dict, ui: dict, value: Any, errors: dict[str, str], lang: str, path: list[str],
           placed: set[str], in_row: bool) -> None:
    if in_row:
        raise ValueError(f"{f.path}: lists inside list rows are not supported by the form renderer")
    items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
    item_ui = ui.get("items") if isinstance(ui.get("items"), dict) else {}
    f.widget, f.input_type = "array", "array"
    f.item_label = _text(items, "title", lang) or f.label
    f.min_items = schema.get("minItems") if isinstance(schema.get("minItems"), int) else None
    f.max_items = schema.get("maxItems") if isinstance(schema.get("maxItems"), int) else None
    f.required = f.required or bool(f.min_items)
    rows = value if isinstance(value, list) else []
    count = min(max(len(rows), f.min_items or 0), MAX_ROWS)

    def row(index: str, item: Any) -> Row:
        row_path = path + [index]
        if _kind(items) == "object":
            cells = _object_fields(items, item_ui, item if isinstance(item, dict) else {}, errors, lang, row_path,
                                   placed, in_row=True)
        else:
            cell = _field(items, item_ui, index, item, True, errors, lang, row_path, placed, in_row=True)
            cell.label = f.item_label
            cells = [cell]
        row_error = errors.get("/".join(row_path), "")
        if index != INDEX:
            placed.add("/".join(row_path))
        return Row(index=index, fields=cells, error=row_error)

    f.rows = [row(str(i), rows[i] if i < len(rows) else None) for i in range(count)]
    f.template = row(INDEX, None)
    for cell in _walk(f.template.fields):
        cell.error = ""


def _walk(fields: list[Field]):
    for f in fields:
        yield f
        yield from _walk(f.children)


# --------------------------------------------------------------------------------------------- parse_form


class _Rows(dict):
    """Raw array rows by index while a form is being parsed."""


def parse_form(schema: dict, form: Any) -> dict:
    """Posted ``f.*`` fields → the JSON value ``validate_submission`` expects.

    Numbers become int/float when they parse and stay as typed otherwise (validation reports them); empty fields
    are left out; a checkbox is True when sent, else False; money loses a leading ``¥`` and thousands separators;
    list rows come back in index order without gaps or blank rows; names the form does not have are kept, so
    validation refuses them. Raises ``ValueError`` for a form no browser would send (a huge row index, too many
    rows, a name that does not fit its field's shape).
    """
    schema = schema if isinstance(schema, dict) else {}
    raw: dict[str, Any] = {}
    for name in form:
        if not isinstance(name, str) or not name.startswith(PREFIX):
            continue
        got = form.getlist(name) if hasattr(form, "getlist") else [form.get(name)]
        got = [v if isinstance(v, str) else "" if v is None else str(v) for v in got]
        _place(schema, raw, name[len(PREFIX):].split("."), got[0] if len(got) == 1 else got, name)
    return _build_object(schema, raw)


def _place(schema: dict, container: dict, parts: list[str], value: Any, name: str) -> None:
    props = _properties(schema)
    key = parts[0]
    if key not in props:
        container[".".join(parts)] = value  # not part of the form: validate_submission reports it
        return
    sub = props[key]
    kind = _kind(sub)
    if kind == "array":
        if len(parts) < 2:
            raise ValueError(f"form field {name!r} has no row number")
        index = _index(parts[1], name)
        rows = container.setdefault(key, _Rows())
        if not isinstance(rows, _Rows):
            raise ValueError(f"form field {name!r} does not fit the form")
        if index not in rows and len(rows) >= MAX_ROWS:
            raise ValueError(f"too many rows in {key!r}: at most {MAX_ROWS} allowed")
        items = sub.get("items") if isinstance(sub.get("items"), dict) else {}
        if _kind(items) == "object":
            if len(parts) < 3:
                raise ValueError(f"form field {name!r} does not name a column")
            _place(items, rows.setdefault(index, {}), parts[2:], value, name)
        elif len(parts) == 2:
            rows[index] = value
        else:
            raise ValueError(f"form field {name!r} does not fit the form")
    elif kind == "object":
        if len(parts) < 2:
            raise ValueError(f"form field {name!r} does not fit the form")
        group = container.setdefault(key, {})
        if not isinstance(group, dict) or isinstance(group, _Rows):
            raise ValueError(f"form field {name!r} does not fit the form")
        _place(sub, group, parts[1:], value, name)
    elif len(parts) == 1:
        container[key] = value
    else:
        raise ValueError(f"form field {name!r} does not fit the form")


def _index(part: str, name: str) -> int:
    if not re.fullmatch(r"0|[1-9][0-9]{0,8}", part):
        raise ValueError(f"form field {name!r} has an invalid row number")
    index = int(part)
    if index >= MAX_INDEX:
        raise ValueError(f"form field {name!r}: row number {index} is too large (at most {MAX_INDEX - 1})")
    return index


_OMIT = object()


def _build_object(schema: dict, raw: dict) -> dict:
    props = _properties(schema)
    required = set(schema.get("required") or [])
    out: dict[str, Any] = {}
    for key, sub in props.items():
        kind = _kind(sub)
        if kind == "boolean" and not _choices(sub):
            got = _first(raw.get(key))
            out[key] = key in raw and got.strip().lower() not in ("false", "0", "off")
            continue
        if key not in raw:
            if kind == "array" and key in required:
                out[key] = []
            continue
        if kind == "array":
            items = sub.get("items") if isinstance(sub.get("items"), dict) else {}
            rows = [raw[key][i] for i in sorted(raw[key]) if not _blank(raw[key][i])]
            if _kind(items) == "object":
                built = [_build_object(items, r) for r in rows]
            else:
                built = [v for v in (_leaf(items, r) for r in rows) if v is not _OMIT]
            if built or key in required:
                out[key] = built
        elif kind == "object":
            group = _build_object(sub, raw[key])
            if any(not isinstance(v, bool) for v in group.values()) or key in required:
                out[key] = group
        else:
            value = _leaf(sub, raw[key])
            if value is not _OMIT:
                out[key] = value
    for key, value in raw.items():  # anything the form does not declare goes through, to be refused by validation
        if key not in props:
            out[key] = value
    return out


def _first(value: Any) -> str:
    if isinstance(value, list):
        return value[0] if value else ""
    return value if isinstance(value, str) else ""


def _blank(row: Any) -> bool:
    if isinstance(row, dict):
        return all(_blank(v) for v in row.values())
    if isinstance(row, list):
        return all(_blank(v) for v in row)
    return not (row or "").strip()


_THOUSANDS = re.compile(r"^-?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]*)?$")


def _leaf(schema: dict, raw: Any) -> Any:
    if isinstance(raw, list):  # the same name twice: a scalar takes the first; the rest was not sent by our page
        raw = raw[0] if raw else ""
    text = raw.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        return _OMIT
    for const, _node in _choices(schema):
        if _as_text(const) == text:
            return const
    kind = _kind(schema)
    if kind in ("integer", "number", "money", "date"):
        text = unicodedata.normalize("NFKC", text).strip()  # full-width digits from a Chinese IME
    if kind == "integer" and _INT_RE.match(text):
        return int(text)
    if kind == "number" and _NUM_RE.match(text):
        if _INT_RE.match(text):
            return int(text)
        number = float(text)
        return number if math.isfinite(number) else text
    if kind == "money":
        text = re.sub(r"\s+", "", text)
        text = text.removeprefix("¥")
        if _THOUSANDS.match(text):
            text = text.replace(",", "")
    if kind == "boolean":
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
    return text


def parse_uploads(schema: dict, files: Any) -> list[tuple[str, str, Any]]:
    """The files posted with a form (``upload.*``, werkzeug's ``request.files``) as (field path, file name,
    stream), in form order. A file input left empty is no upload. Raises ``ValueError`` for a form no browser
    would send: a file for a field that takes none, or two files for one field."""
    paths = {".".join(path): "/".join(path) for path, _node in file_fields(schema if isinstance(schema, dict) else {})}
    out = []
    for name in files:
        if not isinstance(name, str) or not name.startswith(UPLOAD_PREFIX):
            continue
        key = name[len(UPLOAD_PREFIX):]
        if key not in paths:
            raise ValueError(f"form field {name!r} is not a file field of the form")
        sent = [f for f in files.getlist(name) if f.filename or not _empty(f.stream)]
        if len(sent) > 1:
            raise ValueError(f"form field {name!r}: one file per field")
        out.extend((paths[key], f.filename or "", f.stream) for f in sent)
    return out


def _empty(stream: Any) -> bool:
    first = stream.read(1)
    stream.seek(0)
    return not first


def without_files(schema: dict, values: dict) -> dict:
    """Values to pre-fill a form with, less its file fields: a file is evidence of this pass (a new acceptance
    certificate after a rejected delivery), never carried over from an earlier one."""
    out = dict(values)
    for path, _node in file_fields(schema if isinstance(schema, dict) else {}):
        node = out
        for part in path[:-1]:
            inner = node.get(part)
            if not isinstance(inner, dict):
                break
            node[part] = node = dict(inner)
        else:
            node.pop(path[-1], None)
    return out


def put_values(data: dict, values: dict[str, Any]) -> dict:
    """``data`` with each path of ``values`` (``group/file``) set, groups made as needed."""
    out = dict(data)
    for path, value in values.items():
        parts = path.split("/")
        node = out
        for part in parts[:-1]:
            inner = node.get(part)
            node[part] = inner = dict(inner) if isinstance(inner, dict) else {}
            node = inner
        node[parts[-1]] = value
    return out


# --------------------------------------------------------------------------------------------- localize_error

_ZH_TYPES = {"text": "文本", "a number": "数字", "a whole number": "整数", "yes or no": "是或否", "a list": "列表",
             "a group of fields": "一组字段", "null": "空值"}
_ZH_FORMATS = {"an amount such as 1234.50 (as text)": "金额（文本格式），例如 1234.50",
               "a date such as 2026-12-31": "日期，例如 2026-12-31",
               "a file uploaded with the form": "随表单上传的文件"}
_ZH_FIXED = {
    "this field is required": "此项为必填项",
    "this field is not part of the form": "此字段不属于该表单",
    "is not an allowed value": "不是允许的值",
    "has the wrong format": "格式不正确",
    "field names must be text": "字段名必须是文本",
    "the form data must be a set of named fields": "表单数据必须是一组具名字段",
    "the form data is not valid JSON": "表单数据不是有效的 JSON",
}
_ZH_PATTERNS = [
    (re.compile(r"^must be one of: (.*)$", re.S), "必须是以下之一：{0}"),
    (re.compile(r"^must be at least (\S+)$"), "不能小于 {0}"),
    (re.compile(r"^must be at most (\S+)$"), "不能大于 {0}"),
    (re.compile(r"^must be more than (\S+)$"), "必须大于 {0}"),
    (re.compile(r"^must be less than (\S+)$"), "必须小于 {0}"),
    (re.compile(r"^must have at least (\S+) characters$"), "至少需要 {0} 个字符"),
    (re.compile(r"^must have at most (\S+) characters$"), "最多 {0} 个字符"),
    (re.compile(r"^must not contain control characters$"), "不能包含控制字符"),
    (re.compile(r"^needs at least (\S+) entries$"), "至少需要 {0} 条"),
    (re.compile(r"^allows at most (\S+) entries$"), "最多允许 {0} 条"),
    (re.compile(r"^'(.*)' is a reserved name and cannot be a field$", re.S), "“{0}”是保留名称，不能用作字段"),
    (re.compile(r"^the form data is (\d+) bytes; at most (\d+) allowed$"), "表单数据有 {0} 字节，最多允许 {1} 字节"),
    (re.compile(r"^(\S+) is not a multiple of (\S+)$"), "必须是 {1} 的倍数"),
    (re.compile(r"^.* has non-unique elements$", re.S), "包含重复的条目"),
    (re.compile(r"^.* does not contain items matching the given schema$", re.S), "缺少符合要求的条目"),
    (re.compile(r"^'(.*)' is a dependency of '(.*)'$", re.S), "填写“{1}”时必须同时填写“{0}”"),
    (re.compile(r"^Unevaluated (?:properties|items) are not allowed \((.*) (?:was|were) unexpected\)$", re.S),
     "不允许的内容：{0}"),
]


def _zh_types(wanted: str) -> str | None:
    """'a whole number or text' → '整数或文本'; the names themselves may contain ' or ' ('yes or no')."""
    out: list[str] = []
    rest = wanted
    while rest:
        for name in sorted(_ZH_TYPES, key=len, reverse=True):
            if rest == name or rest.startswith(name + " or "):
                out.append(_ZH_TYPES[name])
                rest = rest[len(name) + len(" or "):]
                break
        else:
            return None
    return "或".join(out)


def localize_error(message: str, lang: str) -> str:
    """A ``workflows.forms`` message in ``lang`` (numbers and values kept); messages it does not know pass as is."""
    if not _zh(lang) or not isinstance(message, str):
        return message
    if message in _ZH_FIXED:
        return _ZH_FIXED[message]
    for pattern, template in _ZH_PATTERNS:
        m = pattern.match(message)
        if m:
            return template.format(*m.groups())
    if message.startswith("must be "):
        wanted = message[len("must be "):]
        if wanted in _ZH_FORMATS:
            return "必须是" + _ZH_FORMATS[wanted]
        types = _zh_types(wanted)
        if types:
            return "必须是" + types
        if re.fullmatch(r"[\w-]+", wanted):  # a format with no friendly text, e.g. "must be email"
            return f"必须符合 {wanted} 格式"
    return message


# --------------------------------------------------------------------------------------------- instructions

_MD_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")


def _md_escape(value: Any) -> str:
    """Data put into the markdown is text, not markup: it cannot add links, images or headings."""
    if isinstance(value, jinja2.Undefined) or value is None:
        return ""
    return _MD_PUNCT.sub(r"\\\1", _as_text(value))


_jinja = SandboxedEnvironment(autoescape=False, undefined=jinja2.ChainableUndefined, finalize=_md_escape)
_markdown = MarkdownIt("commonmark", {"html": False}).enable("table")


def render_instructions(template_text: str, data: dict | None) -> Markup:
    """The task's ``instructionsForEndUser``: Jinja over the task data (sandboxed), then markdown without raw HTML.

    Values from the data are escaped for markdown; a template that fails to render is shown as written.
    """
    source = template_text or ""
    try:
        text = _bounded(_jinja.from_string(source).generate(
            {k: v for k, v in (data or {}).items() if isinstance(k, str)}))
    except Exception:  # a broken template must not break the task page
        log.warning("instructions template failed to render; showing it as written", exc_info=True)
        text = source
    return Markup(_markdown.render(text))


MAX_INSTRUCTIONS_CHARS = 100_000


def _bounded(pieces) -> str:
    """Deploy admits only simple templates, but a loop over a long list a script made could still print
    megabytes into every view of the page: stop at MAX_INSTRUCTIONS_CHARS and say so."""
    out: list[str] = []
    size = 0
    for piece in pieces:
        size += len(piece)
        if size > MAX_INSTRUCTIONS_CHARS:
            out.append(piece[: MAX_INSTRUCTIONS_CHARS - (size - len(piece))])
            out.append(f"\n\n… (the instructions are cut here: longer than {MAX_INSTRUCTIONS_CHARS:,} characters)")
            break
        out.append(piece)
    return "".join(out)
