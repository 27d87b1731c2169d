"""What changed between two versions of a process package, element by element, in short sentences.

Pure (no database): ``diff_files(old, new)`` compares the files of two packages. BPMN elements are matched by
id (type, name, lane, properties, scripts, instructions, conditions, flow ends, default flow, timers, called
decision); DMN decisions by id (inputs, outputs, hit policy, and rules by id with each cell); form files by
JSON Schema property (added, removed, changed, required). A file that does not parse is reported as such.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
DI_NAMESPACES = {"http://www.omg.org/spec/BPMN/20100524/DI", "http://www.omg.org/spec/DD/20100524/DC",
                 "http://www.omg.org/spec/DD/20100524/DI"}
MAX_SHOWN = 80  # longer values are shortened in the sentences


@dataclass(frozen=True)
class ElementChange:
    kind: str  # added | removed | changed
    file: str
    element_id: str | None
    element_type: str
    name: str | None
    details: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PackageDiff:
    changes: list[ElementChange]

    @property
    def empty(self) -> bool:
        return not self.changes

    def in_file(self, name: str) -> list[ElementChange]:
        return [c for c in self.changes if c.file == name]

    def markers(self, file: str, side: str) -> dict[str, str]:
        """``{element id: kind}`` to mark on the diagram of ``file``: side "old" shows removed and changed
        elements, "new" added and changed ones."""
        shown = {"old": ("removed", "changed"), "new": ("added", "changed")}[side]
        return {c.element_id: c.kind for c in self.changes
                if c.file == file and c.element_id and c.kind in shown}


def diff_files(old: dict[str, bytes], new: dict[str, bytes]) -> PackageDiff:
    changes: list[ElementChange] = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        kind = _kind_of(name)
        if before is None or after is None:
            changes.append(ElementChange("added" if before is None else "removed", name, None, kind, name,
                                         [f"file {'added' if before is None else 'removed'}"]))
            if kind == "file":
                continue
        if kind == "bpmn":
            changes += _diff_bpmn(name, before, after)
        elif kind == "dmn":
            changes += _diff_dmn(name, before, after)
        elif kind == "form":
            changes += _diff_form(name, before, after)
        elif before is not None and after is not None:
            changes.append(ElementChange("changed", name, None, "file", name, ["file changed"]))
    return PackageDiff(changes)


def _kind_of(name: str) -> str:
    if name.endswith(".bpmn"):
        return "bpmn"
    if name.endswith(".dmn"):
        return "dmn"
    if name.endswith(".json"):
        return "form"
    return "file"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = " ".join(text.split())
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 1] + "…"


def _parse(data: bytes | None) -> etree._Element | None:
    if data is None:
        return None
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    return etree.fromstring(data, parser)


def _unreadable(file: str, kind: str, err: Exception) -> list[ElementChange]:
    return [ElementChange("changed", file, None, kind, file, [f"the file could not be read: {_short(str(err))}"])]


# --- BPMN -------------------------------------------------------------------------------------------------

def _text(node: etree._Element | None) -> str | None:
    if node is None or node.text is None:
        return None
    text = node.text.strip()
    return text or None


def _bpmn_elements(root: etree._Element) -> dict[str, dict[str, Any]]:
    """Every element with an id outside the diagram section, described by what a process owner can change."""
    lane_of: dict[str, str] = {}
    for lane in root.iter(f"{{{BPMN_NS}}}lane"):
        for ref in lane.iterfind(f"{{{BPMN_NS}}}flowNodeRef"):
            if _text(ref):
                lane_of[_text(ref)] = lane.get("name") or lane.get("id")
    found: dict[str, dict[str, Any]] = {}
    for node in root.iter(etree.Element):
        node_id = node.get("id")
        qname = etree.QName(node)
        if not node_id or qname.namespace in DI_NAMESPACES or qname.namespace != BPMN_NS:
            continue
        if qname.localname in ("definitions", "extensionElements", "incoming", "outgoing"):
            continue
        if qname.localname.endswith("EventDefinition") or qname.localname in (
                "conditionExpression", "laneSet", "participant", "collaboration"):
            continue
        found[node_id] = _describe_bpmn(node, qname.localname, lane_of)
    return found


def _describe_bpmn(node: etree._Element, kind: str, lane_of: dict[str, str]) -> dict[str, Any]:
    spiff = f"{{{SPIFF_NS}}}"
    ext = node.find(f"{{{BPMN_NS}}}extensionElements")
    props: dict[str, str] = {}
    scripts: dict[str, str | None] = {}
    instructions = called = None
    if ext is not None:
        for prop in ext.iterfind(f"{spiff}properties/{spiff}property"):
            if prop.get("name"):
                props[prop.get("name")] = prop.get("value", "")
        for tag, label in (("preScript", "pre-script"), ("postScript", "post-script")):
            scripts[label] = _text(ext.find(spiff + tag))
        instructions = _text(ext.find(spiff + "instructionsForEndUser"))
        called = _text(ext.find(spiff + "calledDecisionId"))
    scripts["script"] = _text(node.find(f"{{{BPMN_NS}}}script"))
    timers = {}
    for definition in node.iterfind(f"{{{BPMN_NS}}}timerEventDefinition"):
        for child in definition:
            if isinstance(child.tag, str):
                timers[etree.QName(child).localname] = _text(child)
    events = sorted(etree.QName(d).localname for d in node if isinstance(d.tag, str)
                    and etree.QName(d).localname.endswith("EventDefinition"))
    members = None
    if kind == "lane":
        members = sorted(_text(r) for r in node.iterfind(f"{{{BPMN_NS}}}flowNodeRef") if _text(r))
    return {
        "type": kind, "name": node.get("name"), "lane": lane_of.get(node.get("id")) if kind != "lane" else None,
        "properties": props, "scripts": {k: v for k, v in scripts.items() if v},
        "instructions": instructions, "calledDecisionId": called,
        "condition": _text(node.find(f"{{{BPMN_NS}}}conditionExpression")),
        "source": node.get("sourceRef"), "target": node.get("targetRef"), "default": node.get("default"),
        "attachedTo": node.get("attachedToRef"), "cancelActivity": node.get("cancelActivity"),
        "timer": timers, "events": events, "members": members,
    }


_LABELS = {"name": "name", "lane": "lane", "instructions": "instructions", "calledDecisionId": "decision table",
           "condition": "flow condition", "source": "from", "target": "to", "default": "default flow",
           "attachedTo": "attached to", "cancelActivity": "interrupting", "events": "event type"}


def _element_details(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    details: list[str] = []
    if a["type"] != b["type"]:
        details.append(f"type: {a['type']} -> {b['type']}")
    for key, label in _LABELS.items():
        if a[key] == b[key]:
            continue
        if key == "instructions":
            details.append("instructions changed" if a[key] and b[key] else
                           "instructions added" if b[key] else "instructions removed")
        elif a[key] is None:
            details.append(f"{label} set to '{_short(b[key])}'")
        elif b[key] is None:
            details.append(f"{label} '{_short(a[key])}' removed")
        else:
            details.append(f"{label}: '{_short(a[key])}' -> '{_short(b[key])}'")
    details += _mapping_details("property", a["properties"], b["properties"])
    for label in sorted(set(a["scripts"]) | set(b["scripts"])):
        old, new = a["scripts"].get(label), b["scripts"].get(label)
        if old != new:
            details.append(f"{label} {'changed' if old and new else 'added' if new else 'removed'}")
    details += _mapping_details("timer", a["timer"], b["timer"])
    if a["members"] != b["members"]:
        old, new = set(a["members"] or ()), set(b["members"] or ())
        if new - old:
            details.append("now holds " + ", ".join(sorted(new - old)))
        if old - new:
            details.append("no longer holds " + ", ".join(sorted(old - new)))
    return details


def _mapping_details(label: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    details = []
    for key in sorted(set(old) | set(new)):
        if key not in new:
            details.append(f"{label} '{key}' removed (was '{_short(old[key])}')")
        elif key not in old:
            details.append(f"{label} '{key}' added: '{_short(new[key])}'")
        elif old[key] != new[key]:
            details.append(f"{label} '{key}': '{_short(old[key])}' -> '{_short(new[key])}'")
    return details


def _diff_bpmn(file: str, before: bytes | None, after: bytes | None) -> list[ElementChange]:
    try:
        old = _bpmn_elements(_parse(before)) if before is not None else {}
        new = _bpmn_elements(_parse(after)) if after is not None else {}
    except etree.XMLSyntaxError as err:
        return _unreadable(file, "bpmn", err)
    changes = []
    for element_id in _ordered(old, new):
        a, b = old.get(element_id), new.get(element_id)
        if a is None:
            changes.append(ElementChange("added", file, element_id, b["type"], b["name"], _summary(b)))
        elif b is None:
            changes.append(ElementChange("removed", file, element_id, a["type"], a["name"], []))
        else:
            details = _element_details(a, b)
            if details:
                changes.append(ElementChange("changed", file, element_id, b["type"], b["name"] or a["name"], details))
    return changes


def _summary(desc: dict[str, Any]) -> list[str]:
    """What an added element is, in a sentence or two."""
    details = []
    if desc["lane"]:
        details.append(f"in lane '{desc['lane']}'")
    if desc["source"] or desc["target"]:
        details.append(f"from '{desc['source']}' to '{desc['target']}'")
    if desc["condition"]:
        details.append(f"condition '{_short(desc['condition'])}'")
    form = desc["properties"].get("formJsonSchemaFilename")
    if form:
        details.append(f"form '{form}'")
    if desc["calledDecisionId"]:
        details.append(f"decision table '{desc['calledDecisionId']}'")
    return details


def _ordered(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Ids in document order: the new file's, then those only the old one had."""
    return list(new) + [k for k in old if k not in new]


# --- DMN --------------------------------------------------------------------------------------------------

def _local(node: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in node if isinstance(c.tag, str) and etree.QName(c).localname == name]


def _child_text(node: etree._Element, *path: str) -> str | None:
    current: etree._Element | None = node
    for name in path:
        found = _local(current, name) if current is not None else []
        current = found[0] if found else None
    return _text(current)


def _decisions(root: etree._Element) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for decision in root.iter(etree.Element):
        if etree.QName(decision).localname != "decision" or not decision.get("id"):
            continue
        table = next(iter(_local(decision, "decisionTable")), None)
        inputs, outputs, rules = {}, {}, {}
        hit = None
        if table is not None:
            hit = table.get("hitPolicy", "UNIQUE")
            for i, node in enumerate(_local(table, "input")):
                expr = _child_text(node, "inputExpression", "text")
                inputs[node.get("id") or f"input{i}"] = {"label": node.get("label"), "expression": expr,
                                                          "shown": expr or node.get("label") or node.get("id")}
            for i, node in enumerate(_local(table, "output")):
                outputs[node.get("id") or f"output{i}"] = {"label": node.get("label"), "name": node.get("name"),
                                                           "shown": node.get("name") or node.get("label")}
            for i, rule in enumerate(_local(table, "rule")):
                rules[rule.get("id") or f"rule{i}"] = {
                    "number": i + 1, "description": _child_text(rule, "description"),
                    "inputs": [_child_text(e, "text") or "" for e in _local(rule, "inputEntry")],
                    "outputs": [_child_text(e, "text") or "" for e in _local(rule, "outputEntry")]}
        out[decision.get("id")] = {"name": decision.get("name"), "hit": hit, "inputs": inputs, "outputs": outputs,
                                   "rules": rules}
    return out


def _diff_dmn(file: str, before: bytes | None, after: bytes | None) -> list[ElementChange]:
    try:
        old = _decisions(_parse(before)) if before is not None else {}
        new = _decisions(_parse(after)) if after is not None else {}
    except etree.XMLSyntaxError as err:
        return _unreadable(file, "dmn", err)
    changes: list[ElementChange] = []
    for decision_id in _ordered(old, new):
        a, b = old.get(decision_id), new.get(decision_id)
        if a is None or b is None:
            d = a or b
            changes.append(ElementChange("added" if a is None else "removed", file, decision_id, "decision",
                                         d["name"], [f"{len(d['rules'])} rule(s)"]))
            continue
        details = []
        if a["name"] != b["name"]:
            details.append(f"name: '{a['name']}' -> '{b['name']}'")
        if a["hit"] != b["hit"]:
            details.append(f"hit policy: {a['hit']} -> {b['hit']}")
        if details:
            changes.append(ElementChange("changed", file, decision_id, "decision", b["name"], details))
        for part, kind in (("inputs", "input"), ("outputs", "output")):
            for cid in _ordered(a[part], b[part]):
                x, y = a[part].get(cid), b[part].get(cid)
                if x == y:
                    continue
                if x is None or y is None:
                    changes.append(ElementChange("added" if x is None else "removed", file, cid, kind,
                                                 (x or y)["shown"], [f"{kind} '{(x or y)['shown']}'"]))
                else:
                    changes.append(ElementChange("changed", file, cid, kind, y["shown"], [
                        f"{key}: '{_short(x[key])}' -> '{_short(y[key])}'" for key in x
                        if key != "shown" and x[key] != y[key]]))
        changes += _rule_changes(file, a, b)
    return changes


def _rule_changes(file: str, a: dict[str, Any], b: dict[str, Any]) -> list[ElementChange]:
    changes = []
    in_names = [v["shown"] for v in b["inputs"].values()]
    out_names = [v["shown"] for v in b["outputs"].values()]
    old_in = [v["shown"] for v in a["inputs"].values()]
    old_out = [v["shown"] for v in a["outputs"].values()]
    for rid in _ordered(a["rules"], b["rules"]):
        x, y = a["rules"].get(rid), b["rules"].get(rid)
        if x is None:
            cells = [f"{n} {v}" for n, v in zip(in_names, y["inputs"], strict=False) if v and v != "-"]
            then = [f"{n} = {v}" for n, v in zip(out_names, y["outputs"], strict=False)]
            changes.append(ElementChange("added", file, rid, "rule", y["description"], [
                f"rule {y['number']}: when {', '.join(cells) or 'anything'} then {', '.join(then)}"]))
            continue
        if y is None:
            changes.append(ElementChange("removed", file, rid, "rule", x["description"],
                                         [f"rule {x['number']} removed"]))
            continue
        details = []
        if x["number"] != y["number"]:
            details.append(f"rule {x['number']} is now rule {y['number']}")
        if x["description"] != y["description"]:
            details.append(f"rule {y['number']}, description: '{_short(x['description'] or '')}' -> "
                           f"'{_short(y['description'] or '')}'")
        details += _cells(y["number"], "input", old_in, in_names, x["inputs"], y["inputs"])
        details += _cells(y["number"], "output", old_out, out_names, x["outputs"], y["outputs"])
        if details:
            changes.append(ElementChange("changed", file, rid, "rule", y["description"], details))
    return changes


def _cells(number: int, kind: str, old_names: list[str], new_names: list[str], old: list[str],
           new: list[str]) -> list[str]:
    """Cells compared by column name (a column added or moved is not every cell changed)."""
    before = dict(zip(old_names, old, strict=False))
    details = []
    for name, value in zip(new_names, new, strict=False):
        if name in before and before[name] != value:
            details.append(f"rule {number}, {kind} '{name}': '{_short(before[name])}' -> '{_short(value)}'")
        elif name not in before and value not in ("", "-"):
            details.append(f"rule {number}, {kind} '{name}': '{_short(value)}'")
    return details


# --- forms ------------------------------------------------------------------------------------------------

def _diff_form(file: str, before: bytes | None, after: bytes | None) -> list[ElementChange]:
    try:
        old = json.loads(before) if before is not None else {}
        new = json.loads(after) if after is not None else {}
    except (ValueError, UnicodeDecodeError) as err:
        return _unreadable(file, "form", err)
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [ElementChange("changed", file, None, "form", file, ["file changed"])]
    if not file.endswith(".schema.json"):  # UI schemas: layout only, compared as a whole
        return [] if old == new or before is None or after is None else [
            ElementChange("changed", file, None, "form layout", file, ["layout changed"])]
    changes = []
    old_props, new_props = _props(old), _props(new)
    old_req, new_req = set(old.get("required") or []), set(new.get("required") or [])
    for name in _ordered(old_props, new_props):
        a, b = old_props.get(name), new_props.get(name)
        if a is None:
            details = [f"type {b.get('type')}"] if isinstance(b, dict) and b.get("type") else []
            if name in new_req:
                details.append("required")
            changes.append(ElementChange("added", file, name, "field", _title(b, name), details))
        elif b is None:
            changes.append(ElementChange("removed", file, name, "field", _title(a, name), []))
        else:
            details = []
            if a != b:
                if isinstance(a, dict) and isinstance(b, dict):
                    details += _mapping_details("setting", a, b)
                else:
                    details.append(f"'{_short(a)}' -> '{_short(b)}'")
            if (name in old_req) != (name in new_req):
                details.append("now required" if name in new_req else "no longer required")
            if details:
                changes.append(ElementChange("changed", file, name, "field", _title(b, name), details))
    rest = [k for k in sorted(set(old) | set(new)) if k not in ("properties", "required") and old.get(k) != new.get(k)]
    if rest:
        changes.append(ElementChange("changed", file, None, "form", new.get("title") or file,
                                     [f"'{k}' changed" for k in rest]))
    return changes


def _props(schema: dict[str, Any]) -> dict[str, Any]:
    props = schema.get("properties")
    return props if isinstance(props, dict) else {}


def _title(prop: Any, name: str) -> str:
    return prop.get("title") or name if isinstance(prop, dict) else name
