"""Property-based tests of form handling, generated from the real form schemas in bpmn/forms.

``tests/test_formrender.py`` checks one hand-written example per form; here hypothesis generates many:
valid task data built from each schema, the same data broken in one known place, hostile values of every
shape, and arbitrary posted fields sent to the real task page. The properties: validation raises nothing
but ``FormInvalid``, and names the field that is wrong; valid data is accepted; what the rendered form
posts back parses to the same data; and no post, however odd, makes the task page fail or store anything.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import jinja2
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from models import AuditEvent
from webapp.formrender import build_form, localize_error, parse_form
from workflows.forms import (
    MAX_STRING,
    MAX_SUBMISSION_BYTES,
    FormInvalid,
    file_reference,
    to_form_values,
    validate_submission,
    validator_for,
)
from workflows.services import instances, tasks, timers

from .flow import PLAN, Flow, approve, quote
from .test_formrender import FORM_NAMES, LANGS, TEMPLATES, html_of, load, post_of
from .web import CSRF_RE

JSON = dict[str, Any]

# --------------------------------------------------------------------------------------------- strategies

# text a person could type into one field: no control characters, no surrogates or unassigned code points
_TYPED_CHARS = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Co", "Cn"))
# anything a JSON string may hold, except NUL (refused on purpose, see _hostile_text)
_ANY_CHARS = st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00")
_CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)


def _choices(schema: JSON) -> list[Any]:
    for keyword in ("oneOf", "anyOf"):
        options = schema.get(keyword)
        if isinstance(options, list) and options and all(isinstance(o, dict) and "const" in o for o in options):
            return [o["const"] for o in options]
    return list(schema.get("enum") or [])


def _typed_text(min_size: int, max_size: int, multiline: bool) -> st.SearchStrategy[str]:
    """What survives a round trip through a browser: no surrounding white space (the parser strips it),
    no CR, line breaks only in a textarea."""
    alphabet = st.one_of(_TYPED_CHARS, _CJK, st.just("\n")) if multiline else st.one_of(_TYPED_CHARS, _CJK)
    body = st.text(alphabet, min_size=max(min_size, 1), max_size=max(max_size, 1))
    return body.filter(lambda s: s == s.strip() and min_size <= len(s) <= max_size and "\n\n" not in s)


def _string(schema: JSON, typed: bool, multiline: bool) -> st.SearchStrategy[str]:
    lo = schema.get("minLength", 0)
    hi = schema.get("maxLength", MAX_STRING)
    if typed:
        return _typed_text(max(lo, 1), min(hi, 80), multiline)
    short = st.text(st.one_of(_ANY_CHARS, _CJK), min_size=lo, max_size=min(hi, 80))
    # exactly as long as allowed, in characters that take 1, 3 and 4 bytes: maxLength counts characters
    longest = st.sampled_from(["x", "中", "😀"]).map(lambda c: c * hi)
    return st.one_of(short, longest) if hi > 80 else short


def valid(schema: JSON, ui: JSON | None = None, typed: bool = False) -> st.SearchStrategy[Any]:
    """Values that fit ``schema`` by construction. ``typed``: only what a person can type into the form."""
    ui = ui if isinstance(ui, dict) else {}
    choices = _choices(schema)
    if choices:
        return st.sampled_from(choices)
    kind = schema.get("type")
    if kind == "object":
        return _valid_object(schema, ui, typed)
    if kind == "array":
        item_ui = ui.get("items") if isinstance(ui.get("items"), dict) else {}
        return st.lists(valid(schema["items"], item_ui, typed), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 4), 4))
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        return st.one_of(st.integers(lo, hi), st.floats(lo, hi, allow_nan=False, allow_infinity=False))
    if schema.get("format") == "date":
        return st.dates(date(1000, 1, 1)).map(date.isoformat)
    if schema.get("format") == "money":
        return st.from_regex(r"[0-9]{1,13}(\.[0-9]{1,2})?", fullmatch=True)
    if schema.get("format") == "data-url":  # a file field: the reference of a file uploaded with the form
        return st.builds(file_reference, st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
                         _typed_text(1, 60, multiline=False), st.integers(1, 20 * 2**20),
                         st.sampled_from(["application/pdf", "image/png", "image/jpeg", "message/rfc822"]))
    return _string(schema, typed, multiline=ui.get("ui:widget") == "textarea")


def _valid_object(schema: JSON, ui: JSON, typed: bool) -> st.SearchStrategy[JSON]:
    props: dict[str, JSON] = schema.get("properties", {})
    required = set(schema.get("required", []))
    fields = {k: valid(v, ui.get(k), typed) for k, v in props.items()}
    base = st.fixed_dictionaries({k: s for k, s in fields.items() if k in required},
                                 optional={k: s for k, s in fields.items() if k not in required})
    if "if" not in schema:
        return base

    @st.composite
    def conditional(draw) -> JSON:
        """if/then (a comment required when not approving): draw the fields 'then' asks for under its rules."""
        data = draw(base)
        if validator_for(schema["if"]).is_valid(data):
            then = schema["then"]
            for key in then.get("required", []):
                merged = {**props[key], **then.get("properties", {}).get(key, {})}
                if not validator_for(merged).is_valid(data.get(key)):
                    data[key] = draw(valid(merged, ui.get(key), typed))
        return data

    return conditional()


def _hostile_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40),  # NUL and friends too
        st.text(_CJK, min_size=1, max_size=20),
        st.from_regex(r"-?[0-9]{14,60}(\.[0-9]{3,60})?", fullmatch=True),  # decimals with too many digits
        st.sampled_from(["NaN", "Infinity", "-inf", "1e400", "１２３", "¥1,234.50", "12.345", "2026-02-30",
                         "2026-13-01", "20261231", "\u202etxt", "a\u0000b", "__proto__", " ", "\ud7ff"]),
    )


def _huge_text() -> st.SearchStrategy[str]:
    """Longer than any field allows (and sometimes than a whole submission): built, not drawn, to stay fast."""
    return st.builds(lambda c, n: c * n, st.sampled_from(["x", "中", "😀", "\x01"]),
                     st.integers(MAX_STRING + 1, MAX_SUBMISSION_BYTES + 1000))


_SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.sampled_from([10**30, -(10**30), 2**63, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    _hostile_text(),
)
JUNK = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner),
    st.dictionaries(st.one_of(_hostile_text(), st.sampled_from(["typename", "__class__", "__x"])), inner,
                    max_size=4)), max_leaves=12)


def _wrong_type(schema: JSON) -> st.SearchStrategy[Any]:
    """Junk that cannot fit ``schema``: its type is wrong, or it breaks the field's own limits."""
    choices = _choices(schema)
    kind = schema.get("type")
    if choices:
        # 1.0 is the const 1 to JSON Schema; True is not
        return JUNK.filter(lambda v: isinstance(v, bool) or v not in choices)
    if kind == "object":
        return JUNK.filter(lambda v: not isinstance(v, dict))
    if kind == "array":
        return JUNK.filter(lambda v: not isinstance(v, list))
    if kind == "boolean":
        return JUNK.filter(lambda v: not isinstance(v, bool))
    if kind in ("integer", "number"):
        lo, hi = schema.get("minimum", -math.inf), schema.get("maximum", math.inf)
        out_of_range = st.sampled_from([math.nan, math.inf, -math.inf, 10**400, lo - 1, hi + 1, hi + 0.5])
        not_a_number = JUNK.filter(lambda v: isinstance(v, bool) or not isinstance(v, int | float | Decimal))
        return st.one_of(out_of_range, not_a_number)
    # text: not a string, longer than allowed, or holding a NUL; money/dates: text that is no amount/date
    bad = [JUNK.filter(lambda v: not isinstance(v, str)), _huge_text(), st.just("a\x00b")]
    if "maxLength" in schema:
        bad.append(st.just("x" * (schema["maxLength"] + 1)))
    if schema.get("minLength", 0) > 0:
        bad.append(st.just(""))
    if schema.get("format") in ("money", "date"):
        bad.append(_hostile_text().filter(lambda s: not re.fullmatch(r"[0-9]{1,13}(\.[0-9]{1,2})?|"
                                                                     r"[0-9]{4}-[0-9]{2}-[0-9]{2}", s)))
    return st.one_of(*bad)


# --------------------------------------------------------------------------------------------- helpers

FORMS: dict[str, tuple[JSON, JSON | None]] = {name: load(name) for name in FORM_NAMES}


def _sub(schema: JSON, path: list) -> JSON:
    for part in path:
        schema = schema["items"] if isinstance(part, int) else schema["properties"][part]
    return schema


def _places(schema: JSON, data: Any, path: list) -> list[list]:
    """Every field path present in ``data`` (objects, list rows and values)."""
    out = [path] if path else []
    if isinstance(data, dict):
        for key, value in data.items():
            out += _places(schema["properties"][key], value, path + [key])
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += _places(schema["items"], value, path + [i])
    return out


def _set(data: Any, path: list, value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def _money_paths(schema: JSON, data: Any, path: list) -> list[list]:
    return [p for p in _places(schema, data, path) if _sub(schema, p).get("format") == "money"]


def _stored(schema: JSON, data: JSON) -> JSON:
    """What validation should hand back: the same data with every amount as Decimal."""
    out = json.loads(json.dumps(data))
    for p in _money_paths(schema, data, []):
        value = out
        for part in p[:-1]:
            value = value[part]
        value[p[-1]] = Decimal(value[p[-1]])
    return out


def _errors_of(schema: JSON, data: Any) -> dict[str, str] | None:
    """None if ``data`` is accepted; else the errors. Any other exception fails the test that calls it."""
    try:
        validate_submission(schema, data)
    except FormInvalid as err:
        assert err.errors, "FormInvalid without errors"
        for path, message in err.errors.items():
            assert isinstance(path, str) and isinstance(message, str) and message.strip(), (path, message)
            assert localize_error(message, "zh-CN"), message
        return err.errors
    return None


@functools.cache
def _jinja() -> jinja2.Environment:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), extensions=["jinja2.ext.i18n"],
                                     autoescape=jinja2.select_autoescape(default_for_string=True),
                                     undefined=jinja2.StrictUndefined)
    environment.install_null_translations(newstyle=True)
    return environment


def _posted(schema: JSON, ui: JSON | None, values: JSON, lang: str) -> MultiDict:
    """What a browser posts for the rendered form (checked boxes, selected options, textareas, inputs)."""
    view = build_form(schema, ui, values, {}, lang)
    return MultiDict(post_of(html_of(_jinja(), view)).pairs + [("csrf_token", "t"), ("version", "1")])


FORM = st.sampled_from(FORM_NAMES)
QUICK = settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                         HealthCheck.data_too_large])


# An independent restatement of what the product accepts (workflows/forms.py), for checking data it accepted:
# JSON Schema 2020-12 with its own checks of the two custom formats (written differently from the product's
# regular expressions), and the product's documented extra rules. Nothing here calls the product's validator.
_INDEPENDENT_FORMATS = FormatChecker(formats=())


@_INDEPENDENT_FORMATS.checks("money")
def _independent_money(value: object) -> bool:
    if not isinstance(value, str):
        return True
    whole, _, cents = value.removeprefix("-").partition(".")
    ascii_digits = set("0123456789")
    return (0 < len(whole) <= 13 and set(whole) <= ascii_digits
            and ("." not in value or (0 < len(cents) <= 2 and set(cents) <= ascii_digits)))


@_INDEPENDENT_FORMATS.checks("date")
def _independent_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        parsed = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        return False
    return parsed.isoformat() == value  # four-digit year, two-digit month and day, nothing around them


def _independent_problems(schema: JSON, value: Any) -> list[str]:
    """Why ``value`` should not have been accepted, by rules that do not use the product's code."""
    problems = []
    if not isinstance(value, dict):
        return ["the data is not an object"]
    if not Draft202012Validator(schema, format_checker=_INDEPENDENT_FORMATS).is_valid(value):
        problems.append("JSON Schema 2020-12 (formats checked independently) refuses it")
    try:  # what a client can send and the database can keep: strict JSON, no NaN or Infinity
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as err:
        return [*problems, f"not strict JSON: {err}"]
    if len(json.dumps(value)) > MAX_SUBMISSION_BYTES:
        problems.append("larger than a submission may be")
    if "\x00" in text or "\\u0000" in text:
        problems.append("holds a NUL")

    def walk(sub: JSON, item: Any, at: str) -> None:
        if isinstance(item, dict):
            props = sub.get("properties", {})
            for key, inner in item.items():
                if key == "typename" or key.startswith("__") or key not in props:
                    problems.append(f"{at}/{key}: not a field of the form")
                else:
                    walk(props[key], inner, f"{at}/{key}")
        elif isinstance(item, list):
            for i, inner in enumerate(item):
                walk(sub.get("items", {}), inner, f"{at}/{i}")
        elif isinstance(item, str) and len(item) > MAX_STRING:
            problems.append(f"{at}: longer than any field may be")

    walk(schema, value, "")
    return problems


# --------------------------------------------------------------------------------------------- validation


@QUICK
@given(st.data())
def test_valid_data_is_accepted_with_amounts_as_decimal(data) -> None:
    name = data.draw(FORM, label="form")
    schema, ui = FORMS[name]
    value = data.draw(valid(schema, ui), label="data")
    errors = _errors_of(schema, value)
    assert errors is None, (name, errors)
    assert validate_submission(schema, value) == _stored(schema, value)
    assert not _independent_problems(schema, value), name  # the independent rules agree, so they are not vacuous


@QUICK
@given(st.data())
def test_data_broken_in_one_place_is_refused_naming_that_place(data) -> None:
    name = data.draw(FORM, label="form")
    schema, ui = FORMS[name]
    value = data.draw(valid(schema, ui), label="data")
    how = data.draw(st.sampled_from(["replace", "delete", "add"]), label="how")
    places = _places(schema, value, [])
    if how == "replace":
        path = data.draw(st.sampled_from(places), label="path")
        _set(value, path, data.draw(_wrong_type(_sub(schema, path)), label="junk"))
    elif how == "delete":
        # a required property of the form or of a list row
        deletable = [p for p in places if isinstance(p[-1], str)
                     and p[-1] in _sub(schema, p[:-1]).get("required", [])]
        path = data.draw(st.sampled_from(deletable), label="path")
        parent = value
        for part in path[:-1]:
            parent = parent[part]
        del parent[path[-1]]
    else:  # a field the form does not have, at the top or in a row
        objects = [[]] + [p for p in places if isinstance(p[-1], int) and _sub(schema, p).get("type") == "object"]
        at = data.draw(st.sampled_from(objects), label="object")
        key = data.draw(st.text(_ANY_CHARS, min_size=1, max_size=20)
                        .filter(lambda k: k not in _sub(schema, at).get("properties", {})), label="key")
        target = value
        for part in at:
            target = target[part]
        target[key] = data.draw(JUNK, label="junk")
        path = at + [key]
    errors = _errors_of(schema, value)
    assert errors is not None, (name, how, path)
    assert _independent_problems(schema, value), (name, how, path)  # ... and the independent rules refuse it too
    named = "/".join(str(p) for p in path)
    whole_form = set(errors) == {""} and re.search(r"bytes|JSON", errors[""])  # too big or no JSON at all
    assert whole_form or any(k == named or k.startswith(named + "/") for k in errors), (named, errors)


def _free_text(schema: JSON) -> list[str]:
    """The form's top-level text fields without a format or a list of choices."""
    return sorted(k for k, v in schema["properties"].items()
                  if v.get("type") == "string" and "format" not in v and not _choices(v))


@QUICK
@given(st.data())
def test_hostile_data_only_ever_raises_form_invalid(data) -> None:
    name = data.draw(FORM, label="form")
    schema, _ = FORMS[name]
    value = data.draw(st.one_of(
        JUNK,  # not even an object, mostly
        st.dictionaries(st.one_of(st.sampled_from(sorted(schema["properties"])), _hostile_text(), st.integers()),
                        JUNK, max_size=6),
        st.fixed_dictionaries({k: JUNK for k in schema["properties"]}),
        # valid data with a field or two swapped for hostile values: now and then they fit (a free-text field
        # takes "\u202etxt"), so the branch that checks accepted data runs
        st.tuples(valid(schema), st.dictionaries(st.sampled_from(sorted(schema["properties"])),
                                                 st.one_of(_hostile_text(), JUNK), min_size=1, max_size=2))
        .map(lambda pair: {**pair[0], **pair[1]}),
        st.tuples(valid(schema), st.dictionaries(st.sampled_from(_free_text(schema) or [""]), _hostile_text(),
                                                 min_size=1, max_size=2))
        .map(lambda pair: {**pair[0], **{k: v for k, v in pair[1].items() if k}}),
    ), label="data")
    errors = _errors_of(schema, value)
    if errors is None:  # junk that happens to fit: checked again by rules written here, independently
        event("hostile data accepted")
        problems = _independent_problems(schema, value)
        assert not problems, (name, problems, value)
        # and it survives the product's own round trip: stored, shown in the form again, sent back unchanged
        stored = validate_submission(schema, value)
        assert validate_submission(schema, to_form_values(stored)) == stored
    elif not isinstance(value, dict):
        assert list(errors) == [""]
    else:  # every error names the whole form, a field that was sent, or one the form requires
        required = {*schema.get("required", []), *schema.get("then", {}).get("required", [])}
        sent = {str(k) for k in value} | required | {""}
        # a sent name may itself hold the path separator ('0/'): then the whole key is that name
        assert all(k in sent or k.split("/")[0] in sent for k in errors), (errors, list(value))


# --------------------------------------------------------------------------------------------- the rendered form


@QUICK
@given(st.data())
def test_what_the_rendered_form_posts_parses_to_the_same_data(data) -> None:
    name = data.draw(FORM, label="form")
    schema, ui = FORMS[name]
    typed = data.draw(valid(schema, ui, typed=True), label="data")
    stored = validate_submission(schema, typed)
    lang = data.draw(st.sampled_from(LANGS), label="lang")
    # a form being filled in (the text as typed) and a stored task shown again (amounts as Decimal)
    assert parse_form(schema, _posted(schema, ui, typed, lang)) == typed
    assert validate_submission(schema, parse_form(schema, _posted(schema, ui, stored, lang))) == stored


@QUICK
@given(st.data())
def test_any_shown_values_and_errors_render(data) -> None:
    """Whatever a failed post brings back (any values, any error paths) shows again without failing."""
    name = data.draw(FORM, label="form")
    schema, ui = FORMS[name]
    values = data.draw(st.dictionaries(st.one_of(st.sampled_from(sorted(schema["properties"])), _hostile_text()),
                                       JUNK, max_size=6), label="values")
    errors = data.draw(st.dictionaries(st.one_of(st.just(""), _hostile_text()), _hostile_text(), max_size=4),
                       label="errors")
    html = html_of(_jinja(), build_form(schema, ui, values, errors, data.draw(st.sampled_from(LANGS))))
    assert 'name="f.' in html


# --------------------------------------------------------------------------------------------- the task page


@dataclass
class OpenTask:
    id: int
    form: str
    instance_id: int
    username: str
    names: list[str]  # the field names of its rendered form


def _field_names(schema: JSON) -> list[str]:
    view = build_form(schema, None, None, None, "en")
    names: list[str] = []

    def walk(fields) -> None:
        for f in fields:
            if f.widget == "group":
                walk(f.children)
            elif f.widget == "array":
                walk(f.template.fields if f.template else [])
            else:
                names.append(f.name)

    walk(view.fields)
    return names


def _posted_fields(names: list[str]) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Posted pairs: the form's own names (list rows at any index, even absurd ones) and made-up names, with
    anything as values, sometimes the same name twice."""
    own = st.sampled_from(names).flatmap(
        lambda n: st.one_of(st.just(n), st.integers(0, 2_500).map(str), st.sampled_from(["-1", "01", "x", ""]))
        .map(lambda i: n.replace("__INDEX__", i)))
    made_up = st.one_of(st.text(_TYPED_CHARS, max_size=30).map(lambda s: "f." + s),
                        st.sampled_from(["f.", "f..", "f.line_items", "f.line_items.0", "f.customer_name.x",
                                         "f.__class__", "f.typename", "csrf", "f.a.b.c.d.e"]))
    # control characters are one kind of value among many: the app refuses them before the form is read
    value = st.one_of(_hostile_text(), st.text(st.one_of(_TYPED_CHARS, _CJK), max_size=60), st.integers().map(str),
                      st.decimals(allow_nan=False).map(str), st.dates().map(str), st.sampled_from(["on", "true", ""]),
                      st.builds(lambda c, n: c * n, st.sampled_from(["9", "中", "x"]), st.integers(100, 30_000)))
    return st.lists(st.tuples(st.one_of(own, made_up), value), max_size=12)


def _audit_total(rt) -> int:
    with rt.read() as s:
        return s.scalar(select(func.count()).select_from(AuditEvent))


# who does each role's work on the seeded (east) contracts, and what they enter on the way to a task
ROLE_USER = {"sales_rep": "rep1", "supervisor": "sup1", "manager": "mgr1", "director": "dir1", "legal": "legal1",
             "finance": "fin1", "delivery": "dlv1", "after_sales": "svc1"}
START_FORMS = {"complaint_start", "ownership_dispute_start"}  # forms processes start with: no task shows them
POSTS_PER_FORM = 8  # bounded: 21 task forms, a few odd posts each


def _happy(spec: str, flow: Flow) -> JSON:
    return {
        "draft_contract": {"contract_no": f"HT-{flow.id}", "contract_terms": "Standard terms", "payment_plan": PLAN,
                           "sign_by": "2026-12-01"},
        "legal_contract_check": {"contract_check_decision": "approve"},
        "sign_company": {"company_signatory": "刘洋", "company_signed_on": "2026-11-25"},
        "customer_signature": flow.signed() if spec == "customer_signature" else {},
        "file_contract": {"filing_no": f"BA-{flow.id}", "filed_on": "2026-11-27"},
        "execute_delivery": {"delivered_on": "2026-12-10"},
        "customer_acceptance": flow.accepted() if spec == "customer_acceptance" else {},
        "service_onboarding": {"service_contact": "吴芳", "warranty_until": "2027-12-10"},
        "accept_complaint": {"acceptance_decision": "accept", "category": "quality"},
        "investigate": {"root_cause": "bearing", "findings": "worn bearing"},
        "resolve": {"resolution": "replaced bearing", "resolved_on": "2026-11-30", "compensation": "500.00"},
        "feedback_to_customer": {"feedback_summary": "customer satisfied", "customer_reached": True},
    }.get(spec) or approve(spec.removesuffix("_review"))


def _drive_to(flow: Flow, spec: str, first: JSON | None = None) -> Flow:
    """Complete the open tasks of ``flow`` along the happy path until ``spec`` is open."""
    while spec not in flow.open_specs():
        task = sorted(flow.open().values(), key=lambda t: t.id)[0]
        data = (first or quote()) if task.spec_id == "prepare_quote" else _happy(task.spec_id, flow)
        flow.act(task.spec_id, ROLE_USER[task.role], data)
    return flow


@pytest.fixture
def open_tasks(rt, clock) -> list[OpenTask]:
    """One open task for every form a task shows (all but the complaint's start form): contracts driven to
    each step of the quote-to-cash process (the big quotes through the manager's, director's, legal and finance
    reviews; one in collection, its installment timers fired until a payment is overdue) and complaints about
    that contract at each of their steps."""
    began = clock.now()
    collecting = Flow(rt)  # first, alone: firing its timers fires nobody else's
    collecting.to_collection()
    for when in (datetime(2026, 12, 15, 1, 0, tzinfo=UTC), datetime(2027, 1, 15, 1, 0, tzinfo=UTC)):
        clock.set(when)
        assert timers.fire_due_timers(rt).fired == 1
        if when.year == 2026:
            collecting.act("record_payment", "fin1", {"amount_received": "7200.00", "received_on": "2026-12-15",
                                                      "payment_reference": "BANK-1"})
    clock.set(datetime(2027, 1, 22, 16, 0, 1, tzinfo=UTC))  # the second installment seven days overdue
    assert timers.fire_due_timers(rt).fired == 1
    assert collecting.open_specs() == {"record_payment", "overdue_escalation"}
    clock.set(began)  # the other contracts start when the suite's do, no deadline of theirs passed
    flows = [_drive_to(Flow(rt), spec) for spec in
             ("prepare_quote", "supervisor_review", "draft_contract", "legal_contract_check", "sign_company",
              "customer_signature", "file_contract", "execute_delivery", "customer_acceptance", "service_onboarding")]
    flows += [_drive_to(Flow(rt), "manager_review", quote("150000.00")),  # 300,000: manager, legal, finance
              _drive_to(Flow(rt), "legal_review", quote("150000.00")),
              _drive_to(Flow(rt), "director_review", quote("800000.00")),  # 1,600,000: the director too
              collecting]
    about = {"contract_key": collecting.started.business_key, "customer_name": "华东机械",
             "complaint_summary": "设备异响 Noise from the spindle", "severity": "medium"}
    flows += [_drive_to(Flow(rt, "complaint", starter="svc1", data=about), spec)
              for spec in ("accept_complaint", "investigate", "resolve", "feedback_to_customer",
                           "satisfaction_survey")]
    flows.append(Flow(rt, "ownership_dispute", starter="rep2", data={  # rep1's customer: the director decides
        "customer_name": collecting.data()["customer_name"], "claim_reason": "the customer called me first"}))
    out: dict[str, OpenTask] = {}
    for flow in flows:
        for task in sorted(flow.open().values(), key=lambda t: t.id):
            form = task.form.removesuffix(".schema.json")  # the file name the task's definition names
            if form not in out:
                out[form] = OpenTask(task.id, form, flow.id, ROLE_USER[task.role], _field_names(FORMS[form][0]))
    assert set(out) == set(FORM_NAMES) - START_FORMS, set(FORM_NAMES) - START_FORMS ^ set(out)
    return sorted(out.values(), key=lambda t: t.form)


def test_arbitrary_posts_to_the_task_page_never_fail_and_store_nothing(rt, login, open_tasks) -> None:
    """Every form a task shows gets POSTS_PER_FORM odd posts (each its own hypothesis run, so none is left out
    by chance), from the user whose task it is."""
    webs = {who: login(who) for who in {t.username for t in open_tasks}}
    tokens = {who: CSRF_RE.search(web.text("/tasks")).group(1) for who, web in webs.items()}
    versions = {t.id: instances.get_instance(rt, t.instance_id).version for t in open_tasks}
    audit = _audit_total(rt)
    reached: dict[str, Counter[int]] = {}

    def post_to(task: OpenTask) -> None:
        @settings(max_examples=POSTS_PER_FORM, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.data_too_large,
                                                                        HealthCheck.filter_too_much])
        @given(st.data())
        def post(data) -> None:
            pairs = data.draw(_posted_fields(task.names), label="fields")
            right = str(versions[task.id])  # mostly: a stale or missing version stops the post before validation
            version = data.draw(st.sampled_from([right] * 6 + ["", "x", "-1", "9" * 40, "１",
                                                  str(versions[task.id] - 1)]), label="version")
            form = MultiDict([*pairs, ("version", version), ("csrf_token", tokens[task.username])])
            schema = FORMS[task.form][0]
            with contextlib.suppress(ValueError):  # ValueError: no browser sends this shape, the page says so
                assume(_errors_of(schema, parse_form(schema, form)) is not None)  # a valid post would be stored
            response = webs[task.username].client.post(f"/tasks/{task.id}/complete", data=form)
            page = response.get_data(as_text=True)
            event(f"status {response.status_code}")
            reached.setdefault(task.form, Counter())[response.status_code] += 1
            assert 400 <= response.status_code < 500, (task.form, response.status_code, page[:2000])
            if "control characters" not in page and "控制字符" not in page:  # the app-wide guard's own page
                assert f'action="/tasks/{task.id}/complete"' in page and 'name="f.' in page, (task.form, page[:2000])
            assert tasks.get_task(rt, task.id).status == "open"
            assert instances.get_instance(rt, task.instance_id).version == versions[task.id]

        post()

    for task in open_tasks:
        post_to(task)
    assert set(reached) == {t.form for t in open_tasks}, "a form was never posted to"
    assert _audit_total(rt) == audit  # nothing was done, or claimed, by any of the posts
