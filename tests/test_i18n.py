"""Every message the web app shows has a Simplified Chinese translation, with the same placeholders."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _extracted() -> dict[str, str]:
    with (ROOT / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(str(ROOT), method_map, options_map):
        msgid = message if isinstance(message, str) else message[0]
        found.setdefault(msgid, f"{filename}:{lineno}")
    return found


def _catalog():
    with (ROOT / "webapp/translations/zh_CN/LC_MESSAGES/messages.po").open("rb") as fh:
        return read_po(fh, locale="zh_CN")


def test_every_message_has_a_chinese_translation():
    catalog = _catalog()
    extracted = _extracted()
    assert len(extracted) > 100  # the extractor really read the templates
    missing = [f"{msgid!r} ({where})" for msgid, where in sorted(extracted.items())
               if not (catalog.get(msgid) and catalog.get(msgid).string and not catalog.get(msgid).fuzzy)]
    assert not missing, "untranslated:\n" + "\n".join(missing)


def test_translations_keep_their_placeholders():
    for message in _catalog():
        if not message.id or not message.string:
            continue
        ids = [message.id] if isinstance(message.id, str) else list(message.id)
        strings = [message.string] if isinstance(message.string, str) else list(message.string)
        wanted = set(PLACEHOLDER.findall(ids[0]))
        for text in strings:
            assert set(PLACEHOLDER.findall(text)) == wanted, (message.id, text)


def test_service_messages_read_in_chinese():
    from webapp.messages import localize_message

    samples = {
        "'Supervisor review / 主管审核' was already completed by sup1 (2026-11-23 02:00 UTC)":
            "「主管审核」已由 sup1 完成（2026-11-23 02:00 UTC）",  # the Chinese half of the BPMN name
        "'Legal review' is claimed by legal1": "「Legal review」已被 legal1 认领",
        "this contract changed since you opened 'Finance review' (version 4, now 5); check it and submit again":
            "打开「Finance review」后，合同已被他人推进；请核对后再次提交",
        "rep2 does not have the role 'supervisor'": "rep2 没有角色「supervisor」",
    }
    for english, chinese in samples.items():
        assert localize_message(english, "zh-CN") == chinese
        assert localize_message(english, "en") == english
    assert localize_message("something new", "zh-CN") == "something new"


def test_every_conflict_and_permission_message_of_the_task_service_has_a_pattern():
    """The sentences tasks.py raises to people (read from its source) must all be translatable."""
    import ast

    from webapp.messages import _PATTERNS

    source = (ROOT / "workflows/services/tasks.py").read_text()
    shapes = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args
                and getattr(node.exc.func, "id", "") != "AssertionError"):
            first = node.exc.args[0]
            if isinstance(first, ast.JoinedStr):
                shapes.append("".join(v.value if isinstance(v, ast.Constant) else "1" for v in first.values))
            elif isinstance(first, ast.Constant) and isinstance(first.value, str):
                shapes.append(first.value)
    assert len(shapes) > 10
    untranslated = [s for s in shapes if not any(p.match(s) for p, _ in _PATTERNS)]
    assert not untranslated, untranslated
