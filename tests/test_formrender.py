"""Server-side forms: every deployed form renders, posts back to the same data, and reports errors in both languages."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import jinja2
import pytest
from jsonschema import Draft202012Validator
from markupsafe import Markup
from werkzeug.datastructures import MultiDict

from webapp import formrender
from webapp.formrender import build_form, localize_error, parse_form, render_instructions
from workflows import forms
from workflows.forms import FormInvalid, validate_submission

from .flow import PLAN, QUOTE, approve

ROOT = Path(__file__).resolve().parent.parent
FORMS = ROOT / "bpmn" / "forms"
TEMPLATES = ROOT / "webapp" / "templates"
FORM_NAMES = sorted(p.name.removesuffix(".schema.json") for p in FORMS.glob("*.schema.json"))
LANGS = ("zh-CN", "en")
# what a file field holds once its file is uploaded: a data URL without the bytes, naming them by SHA-256
SIGNED = forms.file_reference("5" * 64, "合同 signed (1).pdf", 12345, "application/pdf")

EXAMPLES = {
    "prepare_quote": dict(QUOTE, line_items=[{"product": "CNC lathe", "quantity": 2, "unit_price": "12000.00"},
                                             {"product": "安装调试 <Setup & \"training\">", "quantity": 1,
                                              "unit_price": "850.5"}],
                          discount_pct=12.5, notes="第一行\nsecond line"),
    "draft_contract": {"contract_no": "HT-2026-001", "contract_terms": "Standard terms\n\n1. Delivery",
                       "payment_plan": PLAN, "sign_by": "2026-12-01"},
    "supervisor_review": approve("supervisor"),
    "manager_review": {"manager_decision": "send_back", "manager_comment": "Price too low / 价格过低"},
    "director_review": {"director_decision": "reject", "director_comment": "Risk"},
    "finance_review": approve("finance"),
    "legal_review": {"legal_decision": "approve", "legal_comment": "OK"},
    "legal_contract_check": {"contract_check_decision": "approve"},
    "sign_company": {"company_signatory": "刘洋", "company_signed_on": "2026-11-25"},
    "customer_signature": {"deal_confirmation": "written_confirmation", "customer_signatory": "客户代表",
                           "customer_signed_on": "2026-11-26", "confirmation_reference": "PO-4711",
                           "customer_evidence": SIGNED},
    "file_contract": {"filing_no": "BA-0001", "filed_on": "2026-11-27"},
    "execute_delivery": {"delivered_on": "2026-12-10"},
    "customer_acceptance": {"acceptance": "rejected", "acceptance_note": "Damaged on arrival",
                            "acceptance_certificate": SIGNED},
    "service_onboarding": {"service_contact": "吴芳", "warranty_until": "2027-12-10"},
    "record_payment": {"amount_received": "7200.00", "received_on": "2026-12-16", "payment_reference": "TRX-0001"},
    "overdue_escalation": {"escalation_action": "Called the customer's CFO", "next_contact_on": "2027-01-20"},
    "complaint_start": {"contract_key": "Q-2026-00001", "customer_name": "华东机械",
                        "complaint_summary": "设备异响 Noise from the spindle", "severity": "medium"},
    "accept_complaint": {"acceptance_decision": "accept", "category": "quality"},
    "investigate": {"root_cause": "Loose bearing", "findings": "The bearing was not torqued."},
    "resolve": {"resolution": "Replaced the bearing", "resolved_on": "2026-12-20", "compensation": "500.00"},
    "feedback_to_customer": {"feedback_summary": "Told the customer", "customer_reached": True},
    "satisfaction_survey": {"satisfaction": 4, "survey_comment": "快"},
    "ownership_dispute_start": {"customer_name": "华东机械", "claim_reason": "客户先联系了我 <first contact>"},
    "decide_dispute": {"dispute_decision": "keep", "dispute_comment": "维持原归属"},
}


def load(name: str) -> tuple[dict, dict | None]:
    schema = json.loads((FORMS / f"{name}.schema.json").read_text(encoding="utf-8"))
    ui_path = FORMS / f"{name}.uischema.json"
    return schema, json.loads(ui_path.read_text(encoding="utf-8")) if ui_path.exists() else None


@pytest.fixture(scope="module")
def env() -> jinja2.Environment:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), extensions=["jinja2.ext.i18n"],
                                     autoescape=jinja2.select_autoescape(default_for_string=True),
                                     undefined=jinja2.StrictUndefined)
    environment.install_null_translations(newstyle=True)
    return environment


def html_of(env: jinja2.Environment, view: formrender.FormView) -> str:
    return env.from_string('{% from "_form.html" import render_form %}{{ render_form(form, lang) }}').render(
        form=view, lang=view.lang)


class Browser(HTMLParser):
    """What a browser posts for the rendered fields: checked boxes/radios, selected options, textareas;
    nothing inside <template>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pairs: list[tuple[str, str]] = []
        self.names: set[str] = set()
        self.ids: set[str] = set()
        self._template = 0
        self._textarea: str | None = None
        self._text: list[str] = []
        self._select: str | None = None
        self._options: list[tuple[str, bool]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if a.get("name"):
            self.names.add(a["name"])
        if tag == "template":
            self._template += 1
        if self._template:
            return
        if tag == "input":
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.pairs.append((a["name"], a.get("value", "on")))
            elif kind not in ("button", "submit"):
                self.pairs.append((a["name"], a.get("value", "")))
        elif tag == "textarea":
            self._textarea, self._text = a["name"], []
        elif tag == "select":
            self._select, self._options = a["name"], []
        elif tag == "option" and self._select:
            self._options.append((a.get("value", ""), "selected" in a))

    def handle_endtag(self, tag):
        if tag == "template":
            self._template -= 1
        elif tag == "textarea" and self._textarea and not self._template:
            self.pairs.append((self._textarea, "".join(self._text)))
            self._textarea = None
        elif tag == "select" and self._select and not self._template:
            chosen = [v for v, selected in self._options if selected] or [v for v, _ in self._options[:1]]
            self.pairs.append((self._select, chosen[0] if chosen else ""))
            self._select = None

    def handle_data(self, data):
        if self._textarea is not None:
            self._text.append(data)


def post_of(html: str) -> Browser:
    browser = Browser()
    browser.feed(html)
    browser.close()
    return browser


def all_fields(fields):
    for f in fields:
        yield f
        yield from all_fields(f.children)
        for row in f.rows:
            yield from all_fields(row.fields)
        if f.template:
            yield from all_fields(f.template.fields)


def schema_paths(schema: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, sub in schema.get("properties", {}).items():
        path = prefix + key
        out.add(path)
        if sub.get("type") == "array":
            items = sub["items"]
            if items.get("type") == "object":
                out |= schema_paths(items, path + "/__INDEX__/")
            else:
                out.add(path + "/__INDEX__")
        elif sub.get("type") == "object":
            out |= schema_paths(sub, path + "/")
    return out


def invalid(schema: dict, data) -> dict[str, str]:
    with pytest.raises(FormInvalid) as caught:
        validate_submission(schema, data)
    return caught.value.errors


# --------------------------------------------------------------------------------------------- every form


def test_every_deployed_form_has_an_example():
    assert set(EXAMPLES) == set(FORM_NAMES)
    for name in FORM_NAMES:
        validate_submission(load(name)[0], EXAMPLES[name])


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name", FORM_NAMES)
def test_every_form_renders_every_property(name, lang, env):
    schema, ui = load(name)
    view = build_form(schema, ui, None, None, lang)
    paths = {f.path for f in all_fields(view.fields)}
    assert schema_paths(schema) <= paths
    assert view.title == (schema["x-i18n"]["zh-CN"]["title"] if lang == "zh-CN" else schema["title"])
    for f in all_fields(view.fields):
        assert f.name == "f." + f.path.replace("/", ".") and f.label and f.widget in formrender.WIDGETS
    top = [f.key for f in view.fields]
    if ui and "ui:order" in ui:
        assert top == ui["ui:order"]
    for key, sub in schema["properties"].items():
        field = next(f for f in view.fields if f.key == key)
        expected = sub.get("x-i18n", {}).get("zh-CN", {}).get("title") if lang == "zh-CN" else None
        assert field.label == (expected or sub["title"])
    html = html_of(env, view)
    browser = post_of(html)
    for f in all_fields(view.fields):
        if f.widget not in ("array", "group"):
            assert f.name in browser.names, f.name
    assert all(n.startswith(("f.", formrender.UPLOAD_PREFIX)) for n in browser.names)  # upload.*: a file field's file


@pytest.mark.parametrize("name", FORM_NAMES)
def test_round_trip_through_the_rendered_html(name, env):
    """Stored task data (money as Decimal) → page → what the browser posts → parse_form → the same data."""
    schema, ui = load(name)
    example = EXAMPLES[name]
    stored = validate_submission(schema, example)
    for lang in LANGS:
        view = build_form(schema, ui, stored, {}, lang)
        posted = MultiDict(post_of(html_of(env, view)).pairs + [("csrf_token", "x"), ("version", "3")])
        parsed = parse_form(schema, posted)
        assert parsed == example
        assert validate_submission(schema, parsed) == stored


def test_form_values_display_without_losing_digits():
    schema = {"type": "object", "properties": {k: {"type": "number"} for k in "abcdef"}}
    view = build_form(schema, None, {"a": Decimal("1E+3"), "b": Decimal("12000.00"), "c": 0.1, "d": 1e-7,
                                     "e": 5.0, "f": 123456789.123456}, {}, "en")
    assert [f.value for f in view.fields] == ["1000", "12000.00", "0.1", "0.0000001", "5", "123456789.123456"]


# --------------------------------------------------------------------------------------------- parse_form


QUOTE_SCHEMA, QUOTE_UI = load("prepare_quote")


def quote_post(**changes) -> MultiDict:
    base = {"f.customer_name": "华东机械", "f.customer_risk": "low", "f.line_items.0.product": "CNC lathe",
            "f.line_items.0.quantity": "2", "f.line_items.0.unit_price": "12000.00", "f.discount_pct": "0",
            "f.payment_terms": "30% advance", "f.delivery_date": "2026-12-20", "csrf_token": "t"}
    base.update(changes)
    return MultiDict([(k, v) for k, v in base.items() if v is not None])


def test_typed_text_in_an_integer_field_is_kept_and_reported(env):
    data = parse_form(QUOTE_SCHEMA, quote_post(**{"f.line_items.0.quantity": "abc"}))
    assert data["line_items"][0]["quantity"] == "abc"
    errors = invalid(QUOTE_SCHEMA, data)
    assert errors == {"line_items/0/quantity": "must be a whole number"}
    view = build_form(QUOTE_SCHEMA, QUOTE_UI, data, errors, "zh-CN")
    cell = view.fields[2].rows[0].fields[1]
    assert (cell.value, cell.input_type, cell.error) == ("abc", "text", "必须是整数")
    assert 'value="abc"' in html_of(env, view)


def test_numbers_parse_and_junk_stays_text():
    data = parse_form(QUOTE_SCHEMA, quote_post(**{"f.discount_pct": " 12.5 ", "f.line_items.0.quantity": "３"}))
    assert data["discount_pct"] == 12.5 and data["line_items"][0]["quantity"] == 3
    for junk in ("nan", "inf", "1e999", "12%"):
        data = parse_form(QUOTE_SCHEMA, quote_post(**{"f.discount_pct": junk}))
        assert data["discount_pct"] == junk
        assert invalid(QUOTE_SCHEMA, data) == {"discount_pct": "must be a number"}


@pytest.mark.parametrize(("typed", "kept"), [
    ("12,000.50", "12000.50"), ("¥12,000.50", "12000.50"), (" ¥ 1,234,567.8 ", "1234567.8"), ("￥１２０００", "12000"),
    ("12000", "12000"), ("1,50", "1,50"), ("12,00.5", "12,00.5"), ("12000元", "12000元"),
])
def test_money_accepts_thousands_separators_and_the_yuan_sign(typed, kept):
    data = parse_form(QUOTE_SCHEMA, quote_post(**{"f.line_items.0.unit_price": typed}))
    assert data["line_items"][0]["unit_price"] == kept
    if kept.replace(".", "").isdigit():
        assert validate_submission(QUOTE_SCHEMA, data)["line_items"][0]["unit_price"] == Decimal(kept)
    else:
        assert "line_items/0/unit_price" in invalid(QUOTE_SCHEMA, data)


def test_rows_removed_in_the_browser_leave_gaps_that_are_compacted():
    post = quote_post(**{"f.line_items.0.product": "A", "f.line_items.0.quantity": "1"})
    post.add("f.line_items.12.product", "C")  # index order, not text order: 12 after 2
    post.add("f.line_items.12.quantity", "3")
    post.add("f.line_items.12.unit_price", "3.00")
    post.add("f.line_items.2.product", "B")
    post.add("f.line_items.2.quantity", "2")
    post.add("f.line_items.2.unit_price", "2.00")
    for column in ("product", "quantity", "unit_price"):  # an added row left blank
        post.add(f"f.line_items.7.{column}", " ")
    items = validate_submission(QUOTE_SCHEMA, parse_form(QUOTE_SCHEMA, post))["line_items"]
    assert [(i["product"], i["quantity"]) for i in items] == [("A", 1), ("B", 2), ("C", 3)]


def test_no_rows_left_reports_the_list():
    post = quote_post(**{f"f.line_items.0.{c}": None for c in ("product", "quantity", "unit_price")})
    data = parse_form(QUOTE_SCHEMA, post)
    assert data["line_items"] == []
    errors = invalid(QUOTE_SCHEMA, data)
    assert errors == {"line_items": "needs at least 1 entries"}
    view = build_form(QUOTE_SCHEMA, QUOTE_UI, data, errors, "en")
    array = view.fields[2]
    assert array.error == "needs at least 1 entries" and len(array.rows) == 1  # one blank row to fill in


@pytest.mark.parametrize("name", ["f.line_items.99999999.product", "f.line_items.2000.product",
                                  "f.line_items.-1.product", "f.line_items.01.product", "f.line_items.x.product",
                                  "f.line_items.0", "f.line_items", "f.customer_name.x"])
def test_hostile_or_malformed_names_are_refused(name):
    with pytest.raises(ValueError, match="form field"):
        parse_form(QUOTE_SCHEMA, quote_post(**{name: "x"}))


def test_too_many_rows_are_refused():
    post = quote_post()
    for i in range(formrender.MAX_ROWS + 1):
        post.add(f"f.line_items.{i}.product", "x")
    with pytest.raises(ValueError, match="too many rows"):
        parse_form(QUOTE_SCHEMA, post)


def test_unknown_fields_reach_validation_and_are_reported():
    post = quote_post(**{"f.evil": "1", "f.line_items.0.evil": "2", "f.__class__": "3", "csrf_token": "t",
                         "version": "4", "submit": "go"})
    data = parse_form(QUOTE_SCHEMA, post)
    assert data["evil"] == "1" and data["line_items"][0]["evil"] == "2" and "csrf_token" not in data
    errors = invalid(QUOTE_SCHEMA, data)
    assert errors["evil"] == errors["line_items/0/evil"] == "this field is not part of the form"
    assert "reserved name" in errors["__class__"]
    view = build_form(QUOTE_SCHEMA, QUOTE_UI, data, errors, "zh-CN")
    assert ("evil", "此字段不属于该表单") in view.other_errors  # no field to show it next to, so at the top


def test_checkbox_false_when_absent_true_when_present(env):
    schema, ui = load("feedback_to_customer")
    base = {"f.feedback_summary": "Told them"}
    assert parse_form(schema, MultiDict(base)) == {"feedback_summary": "Told them", "customer_reached": False}
    for sent in ("true", "on"):
        assert parse_form(schema, MultiDict(dict(base, **{"f.customer_reached": sent})))["customer_reached"] is True
    for stored in (True, False):
        view = build_form(schema, ui, {"feedback_summary": "x", "customer_reached": stored}, {}, "en")
        assert view.fields[1].checked is stored
        assert ("checked" in html_of(env, view)) is stored


def test_empty_fields_are_left_out_so_validation_says_required():
    schema, _ui = load("accept_complaint")
    post = MultiDict({"f.acceptance_decision": "decline", "f.category": "", "f.acceptance_comment": "  "})
    data = parse_form(schema, post)
    assert data == {"acceptance_decision": "decline"}
    assert invalid(schema, data) == {"category": "this field is required",
                                     "acceptance_comment": "this field is required"}


def test_textarea_line_ends_and_integer_options():
    schema, _ui = load("satisfaction_survey")
    data = parse_form(schema, MultiDict({"f.satisfaction": "5", "f.survey_comment": "a\r\nb\r\n"}))
    assert data == {"satisfaction": 5, "survey_comment": "a\nb"}
    data = parse_form(schema, MultiDict({"f.satisfaction": "9"}))
    assert data == {"satisfaction": 9} and invalid(schema, data) == {"satisfaction": "must be at most 5"}


# --------------------------------------------------------------------------------------------- build_form


def test_order_widgets_and_attributes():
    view = build_form(QUOTE_SCHEMA, QUOTE_UI, {}, {}, "en")
    by_key = {f.key: f for f in view.fields}
    assert [f.key for f in view.fields] == QUOTE_UI["ui:order"]
    assert by_key["customer_risk"].widget == "radio" and [o.value for o in by_key["customer_risk"].options] == [
        "low", "medium", "high"]
    assert (by_key["discount_pct"].widget, by_key["discount_pct"].minimum, by_key["discount_pct"].maximum,
            by_key["discount_pct"].step) == ("number", "0", "100", "any")
    assert by_key["discount_pct"].description == "Discount on the subtotal, 0 to 100."
    assert (by_key["notes"].widget, by_key["notes"].lines, by_key["notes"].maxlength) == ("textarea", 4, 4000)
    assert by_key["delivery_date"].widget == "date" and by_key["delivery_date"].required
    assert not by_key["notes"].required
    items = by_key["line_items"]
    assert items.widget == "array" and items.min_items == 1 and items.item_label == "Line item"
    assert [c.name for c in items.template.fields] == [f"f.line_items.__INDEX__.{k}" for k in
                                                        ("product", "quantity", "unit_price")]
    assert [c.widget for c in items.template.fields] == ["text", "integer", "money"]
    assert len(items.rows) == 1  # minItems blank rows for a new form


def test_select_without_radio_hint_and_english_fallback():
    schema = {"title": "T", "x-i18n": {"zh-CN": {"title": "标题"}}, "type": "object", "properties": {
        "pick": {"title": "Pick", "type": "string", "oneOf": [
            {"const": "a", "title": "Alpha", "x-i18n": {"zh-CN": {"title": "甲"}}}, {"const": "b", "title": "Beta"}]},
        "code": {"type": "string", "enum": ["x", "y"]}}}
    view = build_form(schema, {"ui:order": ["code", "*"], "pick": {"ui:help": "Choose one",
                                                                   "ui:placeholder": "…"}}, {"pick": "b"}, {}, "zh-CN")
    code, pick = view.fields
    assert (view.title, code.widget, code.label, [o.label for o in code.options]) == ("标题", "select", "code",
                                                                                       ["x", "y"])
    assert (pick.widget, pick.value, pick.help, pick.placeholder) == ("select", "b", "Choose one", "…")
    assert [(o.value, o.label) for o in pick.options] == [("a", "甲"), ("b", "Beta")]


def test_property_names_that_would_break_html_names_are_refused():
    with pytest.raises(ValueError, match="cannot be used"):
        build_form({"type": "object", "properties": {"a.b": {"type": "string"}}}, None, {}, {}, "en")


# --------------------------------------------------------------------------------------------- the macro


def test_macro_renders_labels_errors_and_names(env):
    errors = {"customer_name": "this field is required", "line_items/0/unit_price":
              "must be an amount such as 1234.50 (as text)", "": "the form data is not valid JSON"}
    view = build_form(QUOTE_SCHEMA, QUOTE_UI, dict(QUOTE, customer_name=""), errors, "zh-CN")
    html = html_of(env, view)
    for label in ("客户名称", "客户风险等级", "报价明细", "产品", "单价（元）", "折扣（%）", "编制报价"):
        assert label in html
    assert 'name="f.customer_name"' in html and 'name="f.line_items.0.product"' in html
    assert 'name="f.line_items.__INDEX__.product"' in html

    def error_follows(field_id: str, message: str) -> None:
        control = re.search(rf'<input[^>]*\bid="{re.escape(field_id)}"[^>]*>', html).group(0)
        assert 'aria-invalid="true"' in control and f'aria-describedby="{field_id}-error' in control
        error = f'<div class="field-error" id="{field_id}-error">{message}</div>'
        start = html.index(control) + len(control)
        assert html.index(error, start) < html.find("<input", start) or html.find("<input", start) < 0

    error_follows("f.customer_name", "此项为必填项")
    error_follows("f.line_items.0.unit_price", "必须是金额（文本格式），例如 1234.50")
    assert html.count('class="field-error"') == 3  # two fields and the form
    assert re.search(r'<div class="form-field text-field has-error">\s*<label for="f.customer_name">', html)
    assert re.search(r'<td class="has-error">\s*<label for="f.line_items.0.unit_price"', html)
    assert "表单数据不是有效的 JSON" in html
    assert '<label for="f.customer_name">' in html
    assert 'class="money-input"><span class="money-prefix" aria-hidden="true">¥</span><input type="text" ' \
           'inputmode="decimal"' in html
    assert 'type="date" id="f.delivery_date"' in html
    assert re.search(r'<fieldset class="form-field radio-group[^"]*" role="radiogroup"[^>]*>\s*<legend>客户风险等级',
                     html)
    assert 'class="array-table"' in html and "data-add-row" in html and "data-remove-row" in html
    assert re.search(r"<template data-row-template><tr data-row data-index=\"__INDEX__\">", html)
    assert "Add row" in html and "Remove" in html and 'aria-hidden="true">*</span>' in html


def test_macro_escapes_values_and_labels(env):
    schema = {"type": "object", "title": "<b>T</b>", "properties": {"x": {"type": "string", "title": "<i>"}}}
    html = html_of(env, build_form(schema, None, {"x": '"><script>alert(1)</script>'}, {"x": "<em>"}, "en"))
    assert "<script>" not in html and "<b>" not in html and "<i>" not in html and "<em>" not in html
    assert post_of(html).pairs == [("f.x", '"><script>alert(1)</script>')]


# --------------------------------------------------------------------------------------------- localize_error

# One failing case per keyword the validator knows: (property schema, bad value), checked under property "x";
# or a whole (schema, data) for keywords that act on the form itself.
KEYWORD_CASES: dict[str, list] = {
    "type": [({"type": t}, v) for t, v in (("string", 1), ("number", "x"), ("integer", "x"), ("boolean", "x"),
                                            ("array", "x"), ("object", "x"), ("null", "x"))]
    + [({"type": ["integer", "string"]}, 1.5), ({"type": "string", "format": "money"}, 5),
       ({"type": "string", "format": "date"}, 5)],
    "format": [({"type": "string", "format": fmt}, "not it") for fmt in [*forms._FORMAT_TEXT, "email"]],
    "minimum": [({"type": "integer", "minimum": 1}, 0)],
    "maximum": [({"type": "integer", "maximum": 5}, 6)],
    "exclusiveMinimum": [({"type": "number", "exclusiveMinimum": 0}, 0)],
    "exclusiveMaximum": [({"type": "number", "exclusiveMaximum": 100}, 100)],
    "multipleOf": [({"type": "integer", "multipleOf": 5}, 7)],
    "minLength": [({"type": "string", "minLength": 3}, "a")],
    "maxLength": [({"type": "string", "maxLength": 3}, "abcd")],
    "pattern": [({"type": "string", "pattern": "^[0-9]+$"}, "a")],
    "enum": [({"enum": ["low", "medium"]}, "high")],
    "const": [({"const": "a"}, "b")],
    "oneOf": [({"oneOf": [{"const": "low"}, {"const": "medium"}]}, "x"), ({"oneOf": [{"type": "string"},
                                                                                    {"minLength": 1}]}, "ab")],
    "anyOf": [({"anyOf": [{"const": 1}, {"const": 2}]}, 3), ({"anyOf": [{"type": "integer"}]}, "x")],
    "allOf": [({"allOf": [{"minLength": 3}]}, "a")],
    "not": [({"not": {"const": "a"}}, "a")],
    "if": [({"if": {"const": "a"}, "then": {"minLength": 5}}, "a")],
    "minItems": [({"type": "array", "minItems": 1}, [])],
    "maxItems": [({"type": "array", "maxItems": 1}, [1, 2])],
    "uniqueItems": [({"type": "array", "uniqueItems": True}, [1, 1])],
    "contains": [({"type": "array", "contains": {"const": 1}}, [2])],
    "items": [({"type": "array", "items": {"type": "integer"}}, ["x"])],
    "prefixItems": [({"type": "array", "prefixItems": [{"type": "integer"}]}, ["x"])],
    "unevaluatedItems": [({"type": "array", "prefixItems": [{}], "unevaluatedItems": False}, [1, 2])],
    "properties": [({"type": "object", "properties": {"y": {"type": "integer"}}}, {"y": "x"})],
    "required": [({"type": "object", "properties": {"y": {}}, "required": ["y"]}, {})],
    "additionalProperties": [({"type": "object", "properties": {}, "additionalProperties": False}, {"z": 1})],
    "patternProperties": [({"type": "object", "patternProperties": {"^a": {"type": "integer"}}}, {"ab": "x"})],
    "propertyNames": [({"type": "object", "propertyNames": {"maxLength": 1}}, {"ab": 1})],
    "minProperties": [({"type": "object", "minProperties": 1}, {})],
    "maxProperties": [({"type": "object", "maxProperties": 0}, {"a": 1})],
    "dependentRequired": [({"type": "object", "dependentRequired": {"a": ["b"]}}, {"a": 1})],
    "dependentSchemas": [({"type": "object", "dependentSchemas": {"a": {"required": ["b"]}}}, {"a": 1})],
    "unevaluatedProperties": [({"type": "object", "unevaluatedProperties": False}, {"a": 1})],
    "$ref": [({"$ref": "#/$defs/int"}, "x")],
    "$dynamicRef": [({"$dynamicRef": "#int"}, "x")],
}
DEFS = {"int": {"$dynamicAnchor": "int", "type": "integer"}}

# What validate_submission says before jsonschema runs (reserved names, sizes, shapes).
SCAN_CASES = [
    ({"x": {"type": "string"}}, {"__x": "1"}),
    ({"x": {"type": "string"}}, {"typename": "1"}),
    ({"x": {"type": "object"}}, {"x": {1: "a"}}),
    ({"x": {"type": "string"}}, {"x": "a" * (forms.MAX_STRING + 1)}),
    ({"x": {"type": "number"}}, {"x": float("nan")}),
    ({"x": {"type": "string"}}, {"x": "a" * forms.MAX_SUBMISSION_BYTES}),
    ({"x": {"type": "string"}}, ["not", "a", "dict"]),
    ({"x": {"type": "string"}}, {"y": "not in the form"}),
]


def _messages() -> list[tuple[str, set[str]]]:
    """(what validate_submission said, jsonschema's own messages for the same data) for every case."""
    out = []
    runs = [({"type": "object", "$defs": DEFS, "properties": {"x": sub}}, {"x": bad})
            for cases in KEYWORD_CASES.values() for sub, bad in cases]
    runs += [({"type": "object", "properties": props}, data) for props, data in SCAN_CASES]
    circular: dict = {}
    circular["me"] = circular
    runs.append(({"type": "object"}, circular))
    for schema, data in runs:
        errors = invalid(schema, data)
        raw: set[str] = set()
        if isinstance(data, dict) and data is not circular:
            raw = {e.message for e in Draft202012Validator(schema, format_checker=forms._formats).iter_errors(data)}
        out.extend((message, raw) for message in errors.values())
    return out


def test_error_cases_cover_every_keyword_the_validator_knows():
    """A jsonschema upgrade with a new keyword fails here until it has a case above."""
    assert set(Draft202012Validator.VALIDATORS) <= set(KEYWORD_CASES)


def test_every_friendly_message_has_a_chinese_translation():
    """Fails when workflows/forms.py learns a new message without a translation in localize_error."""
    seen = _messages()
    assert len({m for m, _raw in seen}) >= 30
    for message, raw in seen:
        zh = localize_error(message, "zh-CN")
        assert localize_error(message, "en") == message
        if message in raw:  # jsonschema's own text passed through by _friendly: allowed as is
            continue
        assert zh != message and re.search(r"[\u4e00-\u9fff]", zh), f"no translation for {message!r}"
        for number in re.findall(r"\d+(?:\.\d+)?", message):
            assert number in zh, (message, zh)
        assert localize_error(zh, "zh-CN") == zh  # showing an error twice does not change it


def test_localize_error_keeps_values_and_passes_unknown_text():
    assert localize_error("must be one of: low, medium", "zh-CN") == "必须是以下之一：low, medium"
    assert localize_error("must be at least 1", "zh-CN") == "不能小于 1"
    assert localize_error("needs at least 1 entries", "zh-CN") == "至少需要 1 条"
    assert localize_error("must be a whole number or text", "zh-CN") == "必须是整数或文本"
    assert localize_error("something new", "zh-CN") == "something new"
    assert localize_error("this field is required", "en") == "this field is required"


# --------------------------------------------------------------------------------------------- instructions


def test_instructions_render_markdown_with_data():
    html = render_instructions("### {{ customer_name }}\n\n{% for i in line_items %}"
                               "- {{ i.product }} × {{ i.quantity }} @ {{ i.unit_price }}\n{% endfor %}\n"
                               "|a|b|\n|-|-|\n|{{ amount }}|{{ missing.deep }}|",
                               {"customer_name": "华东机械", "amount": Decimal("24000.00"),
                                "line_items": [{"product": "CNC lathe", "quantity": 2,
                                                "unit_price": Decimal("12000.00")}]})
    assert isinstance(html, Markup)
    assert "<h3>华东机械</h3>" in html and "<li>CNC lathe × 2 @ 12000.00</li>" in html
    assert "<td>24000.00</td>" in html and "<table>" in html


def test_instructions_escape_html_and_drop_script_links():
    data = {"customer_name": '<script>alert("x")</script>', "note": "[pay here](javascript:alert(1)) ![t](http://t/x)"}
    html = render_instructions("Hi **{{ customer_name }}** {{ note }}\n\n<script>evil()</script>\n\n"
                               "[click](javascript:alert(2)) <img src=x onerror=alert(3)>", data)
    assert "<script" not in html and "<img" not in html and "&lt;img src=x onerror" in html
    assert "&lt;script&gt;" in html and "<a " not in html and "href" not in html
    assert '<a href="https://example.com/terms">terms</a>' in render_instructions("[terms](https://example.com/terms)",
                                                                                   {})


def test_broken_or_unsafe_templates_do_not_crash():
    assert render_instructions("{% if %}oops", {}) == "<p>{% if %}oops</p>\n"
    assert "mro" not in render_instructions("{{ ''.__class__.__mro__ }}{{ x.__globals__ }}", {"x": print})
    assert "__class__" not in render_instructions("{{ c.__class__ }}", {"c": 1})


def test_every_deployed_instruction_renders():
    ns = "{http://spiffworkflow.org/bpmn/schema/1.0/core}instructionsForEndUser"
    data = {k: v for example in EXAMPLES.values() for k, v in example.items()}
    data.update(amount=Decimal("21120.00"), subtotal=Decimal("24000.00"), send_back={"role": "manager"})
    count = 0
    for path in (ROOT / "bpmn").glob("*.bpmn"):
        for node in ElementTree.parse(path).iter():
            if node.tag.endswith("instructionsForEndUser") or node.tag == ns:
                html = render_instructions(node.text or "", data)
                assert "{{" not in html and "{%" not in html, path.name
                count += 1
    assert count >= 10


def test_lists_of_plain_values_and_nested_groups_round_trip(env):
    schema = {"type": "object", "required": ["tags"], "properties": {
        "tags": {"title": "Tags", "type": "array", "minItems": 1, "items": {"title": "Tag", "type": "string"}},
        "contact": {"title": "Contact", "type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "title": "Name"}, "phone": {"type": "string", "title": "Phone"}}}}}
    data = {"tags": ["urgent", "vip"], "contact": {"name": "吴芳"}}
    view = build_form(schema, {"tags": {"items": {"ui:placeholder": "tag"}}}, data,
                      {"contact/phone": "has the wrong format"}, "en")
    tags, contact = view.fields
    assert [c.name for r in tags.rows for c in r.fields] == ["f.tags.0", "f.tags.1"]
    assert tags.template.fields[0].name == "f.tags.__INDEX__" and tags.template.fields[0].label == "Tag"
    assert [c.name for c in contact.children] == ["f.contact.name", "f.contact.phone"]
    html = html_of(env, view)
    assert '<div class="field-error" id="f.contact.phone-error">has the wrong format</div>' in html
    assert parse_form(schema, MultiDict(post_of(html).pairs)) == data
    assert parse_form(schema, MultiDict({"f.tags.3": "b", "f.tags.1": "a", "f.tags.2": ""})) == {"tags": ["a", "b"]}


# ------------------------------------------------------------------------- found by tests/test_form_properties.py


def test_money_and_dates_are_ascii_digits_in_the_documented_shape():
    """Python's \\d and $ took Arabic-Indic digits and a trailing newline as money; date.fromisoformat took ISO
    week dates ("2026-W01-1" is 2025-12-29) and "20261220xx". All were stored as typed."""
    schema = load("record_payment")[0]
    base = {"amount_received": "7200.00", "received_on": "2026-12-16", "payment_reference": "TRX-1"}
    for amount in ("١٢٣", "１２", "12.50\n", "12.5 "):
        assert "amount_received" in invalid(schema, dict(base, amount_received=amount)), amount
    for day in ("2026-W01-1", "20261220xx", "2026-12-16\n", "２０２６-１２-１６"):
        assert "received_on" in invalid(schema, dict(base, received_on=day)), day
    assert validate_submission(schema, base)["amount_received"] == Decimal("7200.00")


def test_fields_not_in_the_form_are_reported_under_their_own_name():
    """The name came from the validator's message, which holds its repr: '\\x1f' was reported as '\\\\x1f'."""
    schema = load("accept_complaint")[0]
    for key in ("\x1f", "it's", "a\\b", "名字"):
        errors = invalid(schema, {"acceptance_decision": "accept", "category": "quality", key: 1})
        assert errors == {key: "this field is not part of the form"}, errors


def test_instructions_printing_a_long_list_are_cut_not_served_whole():
    from webapp.formrender import MAX_INSTRUCTIONS_CHARS

    html = render_instructions("{% for x in items %}{{ x }} {% endfor %}", {"items": ["word"] * 200_000})
    assert len(html) < MAX_INSTRUCTIONS_CHARS + 1000
    assert "the instructions are cut here" in html
    short = render_instructions("{% for x in items %}{{ x }} {% endfor %}", {"items": ["word"] * 10})
    assert "cut here" not in short and short.count("word") == 10


def test_what_a_forged_form_post_is_told_reads_in_chinese():
    """parse_form's refusals of posts the page never sends (shown on the task page as the problem)."""
    from .service_messages import raised_messages, untranslated

    posted = [m for m in raised_messages("webapp/formrender.py", ("ValueError",))
              if m.startswith(("form field", "too many rows"))]
    assert len(posted) >= 8
    assert [m for m in untranslated("webapp/formrender.py", ("ValueError",)) if m in posted] == []
