"""The studio's check before deploy: every problem ``build_package`` finds, plus the lint it does not do.

``check_files`` never raises. Each problem carries, whenever there is one, the element's id and name (the
editor highlights it on the diagram) and the file and line. Errors block a deploy, warnings do not:

* error (code ``xml``, ``schema``, ``bpmn``, ``lane_role``, ``outside_lane``, ``form``, ``expression``,
  ``due``, ``size``, ``package``): everything ``build_package`` reports. The deploy itself runs
  ``build_package``, which refuses the package, so these cannot be warnings.
* warning ``gateway_default``: an exclusive or inclusive gateway with conditions and no default flow. The
  conditions may well cover every case (approve / reject from a radio button), which no check can prove;
  when they do not, only the contract that meets the gap stops, with an error on the gateway.
* warning ``unreachable``: an element no path of sequence flows reaches from a start event (boundary events
  count when their host is reached, the starts of event subprocesses count as starts). It never runs, so it
  harms no contract; it is often a step still being drawn.
* warning ``dmn_input``: a decision table input that reads a variable no form, script, decision or data
  object of the package sets. A heuristic: data can come from where the check cannot see.

Problems are returned errors first (in build_package's order), then warnings (by kind, then by file and
document order). A lint that crashes on a broken package finds nothing (and is logged).
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import PurePosixPath

from lxml import etree

from ..engine.package import (
    BPMN_NS,
    DMN_NAMESPACES,
    MAX_FILE_BYTES,
    MAX_PACKAGE_BYTES,
    SPIFF_NS,
    PackageError,
    Problem,
    ProcessPackage,
    build_package,
)

log = logging.getLogger(__name__)

ERROR, WARNING = "error", "warning"
B = f"{{{BPMN_NS}}}"
S = f"{{{SPIFF_NS}}}"

FLOW_NODES = frozenset(B + t for t in (
    "startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent", "task",
    "userTask", "manualTask", "scriptTask", "serviceTask", "businessRuleTask", "sendTask", "receiveTask",
    "callActivity", "subProcess", "transaction", "adHocSubProcess", "exclusiveGateway", "inclusiveGateway",
    "parallelGateway", "eventBasedGateway", "complexGateway"))
CONTAINERS = frozenset(B + t for t in ("subProcess", "transaction", "adHocSubProcess"))

# names an expression may use without any process setting them: the sandbox's builtins and helpers
# (workflows/engine/sandbox.py _SAFE_BUILTINS and RestrictedEnvironment's globals)
SANDBOX_NAMES = frozenset({
    "None", "True", "False", "abs", "all", "any", "bool", "dict", "enumerate", "filter", "float", "int", "len",
    "list", "map", "max", "min", "reversed", "round", "set", "sorted", "sum", "tuple", "zip", "str", "range",
    "isinstance", "print", "Decimal", "money", "date_start", "today", "now", "date", "datetime", "timedelta",
})
# start data a process without a start form accepts (workflows/services/instances.py start_instance)
START_DATA = frozenset({"customer_name"})

# build_package's messages, by kind (the first match wins; anything else is "package")
_CODES = [(re.compile(p), code) for p, code in [
    (r"^(the package is \d+ bytes|file is \d+ bytes)", "size"),
    (r"^(not well-formed XML|DTDs and entity|elements are nested|this is not a (BPMN|DMN) file|processing "
     r"instructions are not allowed|XInclude elements)", "xml"),
    (r"^Element '", "schema"),
    (r"^Non-default exclusive outgoing sequence flow without condition", "bpmn"),
    (r"^(this lane has no role|unknown role|starterRoles names unknown role)", "lane_role"),
    (r"^this user task is outside every lane", "outside_lane"),
    (r"^(this user task has no form|form file '|not valid JSON|not a valid JSON Schema|a form schema must|"
     r"the JSON is nested|'\$(dynamic)?[Rr]ef'|the pattern '|a start form cannot have file fields)", "form"),
    (r"^dueIn '", "due"),
    (r"^(condition|script|preScript|postScript|timer expression|loop cardinality|completion condition|"
     r"loop condition|conditional event|message correlation|message payload|service parameter '[^']*'|"
     r"instructions|DMN input|DMN cell|dueDate expression): ", "expression"),
]]


def check_files(files: dict[str, bytes], known_roles: set[str], process_key: str | None = None) -> list[Problem]:
    """Every problem of a process package, errors first; an empty list means it deploys cleanly."""
    return check_package(files, known_roles, process_key)[0]


def check_package(files: dict[str, bytes], known_roles: set[str],
                  process_key: str | None = None) -> tuple[list[Problem], ProcessPackage | None]:
    """``check_files``'s problems and the package built on the way (None when it does not build), so that a
    deploy after the check does not build it again."""
    files = {PurePosixPath(name).name: data for name, data in files.items()}
    package = None
    try:
        package = build_package(files, known_roles=known_roles, process_key=process_key)
        found: list[Problem] = [replace(p, code=p.code or _code(p)) for p in package.warnings]
    except PackageError as err:
        found = [replace(p, message=p.message.strip(), severity=ERROR, code=p.code or _code(p))
                 for p in err.problems]
    except Exception as err:  # noqa: BLE001 - a bug in the package check must not hide the rest
        log.exception("build_package crashed")
        found = [Problem(f"The package could not be checked: {err}", code="package")]

    try:
        docs = _readable_xml(files, found)
    except Exception:  # noqa: BLE001 - then there is nothing to lint
        log.exception("reading the package for the studio checks failed")
        docs = None
    found = [_schema_plain(p) for p in found]
    found = [_located(p, files, docs) for p in found]
    if docs is not None:
        for lint in (_gateways_without_default, _unreachable, _dmn_inputs_not_set):
            try:
                found.extend(lint(files, docs))
            except Exception:  # noqa: BLE001 - a lint that trips over a broken package finds nothing
                log.exception("studio check %s crashed", lint.__name__)
    unique = list(dict.fromkeys(found))
    return sorted(unique, key=lambda p: p.severity != ERROR), package  # stable: errors first, each in their order


def errors_of(problems: list[Problem]) -> list[Problem]:
    """The problems that block a deploy (warnings never do)."""
    return [p for p in problems if p.severity == ERROR]


def blocks_deploy(problems: list[Problem]) -> bool:
    return bool(errors_of(problems))


def _code(problem: Problem) -> str:
    return next((code for pattern, code in _CODES if pattern.match(problem.message)), "package")


# --------------------------------------------------------------------------------------------------------------
# Reading the files (only what build_package read safely) and locating problems
# --------------------------------------------------------------------------------------------------------------

def _readable_xml(files: dict[str, bytes], found: list[Problem]) -> dict[str, etree._Element] | None:
    """The BPMN and DMN files build_package parsed without refusing them; None if it never got to parse."""
    if any(p.code == "size" for p in found) or sum(len(v) for v in files.values()) > MAX_PACKAGE_BYTES:
        return None
    refused = {p.file for p in found if p.code == "xml"}
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                             huge_tree=False)
    docs: dict[str, etree._Element] = {}
    for name in sorted(files):
        data = files[name]
        if not name.endswith((".bpmn", ".dmn")) or name in refused or len(data) > MAX_FILE_BYTES:
            continue
        if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
            continue
        try:
            docs[name] = etree.fromstring(data, parser)
        except etree.XMLSyntaxError:
            continue
    return docs


def _schema_plain(problem: Problem) -> Problem:
    """The schema's message without namespaces and without the list of everything allowed instead."""
    if problem.code != "schema":
        return problem
    kind = "DMN" if (problem.file or "").endswith(".dmn") else "BPMN"
    detail = problem.message.replace(f"{{{BPMN_NS}}}", "bpmn:").replace(f"{{{SPIFF_NS}}}", "spiffworkflow:")
    for ns in DMN_NAMESPACES:
        detail = detail.replace(f"{{{ns}}}", "dmn:")
    detail = re.sub(r"\s*Expected is (one of )?\(.*$", "", detail, flags=re.S).strip().rstrip(".").strip()
    return Problem(f"The file does not follow the {kind} standard: {detail}.", file=problem.file,
                   line=problem.line, element_id=problem.element_id, element_name=problem.element_name,
                   code="schema")


def _with_ids(root: etree._Element) -> Iterator[etree._Element]:
    return (el for el in root.iter(etree.Element) if el.get("id"))


def _located(problem: Problem, files: dict[str, bytes], docs: dict[str, etree._Element] | None) -> Problem:
    """Adds what a problem lacks and the package tells: the line of its element, the element at its line, the
    task that uses a form file, the file that holds its element."""
    try:
        return _locate(problem, files, docs or {})
    except Exception:  # noqa: BLE001
        log.exception("locating %r failed", problem)
        return problem


def _locate(problem: Problem, files: dict[str, bytes], docs: dict[str, etree._Element]) -> Problem:
    p = problem
    if p.element_id and not p.file:
        for name, root in docs.items():
            if any(el.get("id") == p.element_id for el in _with_ids(root)):
                p = replace(p, file=name)
                break
    root = docs.get(p.file or "")
    if root is not None and p.element_id and (not p.line or not p.element_name):
        el = next((el for el in _with_ids(root) if el.get("id") == p.element_id), None)
        if el is not None:
            p = replace(p, line=p.line or el.sourceline, element_name=p.element_name or el.get("name"))
    if root is not None and p.line and not p.element_id:
        at = None
        for el in root.iter(etree.Element):
            if el.sourceline is not None and el.sourceline <= p.line:
                at = el  # the last element that starts at or before the line
            elif el.sourceline is not None and el.sourceline > p.line:
                break
        while at is not None and not at.get("id"):
            at = at.getparent()
        if at is not None and at is not root:
            p = replace(p, element_id=at.get("id"), element_name=at.get("name"))
    if (p.file or "").endswith(".json") and not p.element_id:
        user = _form_user(p.file or "", docs)
        if user is not None:
            p = replace(p, element_id=user.get("id"), element_name=user.get("name"))
        found = re.search(r"line (\d+) column \d+", p.message)
        if found and not p.line:
            p = replace(p, line=int(found.group(1)))
    return p


def _form_user(form: str, docs: dict[str, etree._Element]) -> etree._Element | None:
    """The first task or start event whose properties name the form file."""
    for name, root in docs.items():
        if not name.endswith(".bpmn"):
            continue
        for prop in root.iter(S + "property"):
            if prop.get("name") in ("formJsonSchemaFilename", "formUiSchemaFilename") and prop.get("value") == form:
                owner = prop.getparent()
                while owner is not None and not owner.get("id"):
                    owner = owner.getparent()
                return owner
    return None


def _where(file: str, el: etree._Element) -> dict:
    return dict(file=file, line=el.sourceline, element_id=el.get("id"), element_name=el.get("name"))


def _label(el: etree._Element) -> str:
    return el.get("name") or el.get("label") or el.get("id") or "?"


def _bpmn(docs: dict[str, etree._Element]) -> Iterator[tuple[str, etree._Element]]:
    for name, root in docs.items():
        if name.endswith(".bpmn") and etree.QName(root).namespace == BPMN_NS:
            yield name, root


# --------------------------------------------------------------------------------------------------------------
# Gateways without a default flow
# --------------------------------------------------------------------------------------------------------------

def _gateways_without_default(files: dict[str, bytes], docs: dict[str, etree._Element]) -> list[Problem]:
    problems = []
    for file, root in _bpmn(docs):
        flows: dict[str, list[etree._Element]] = {}
        for flow in root.iter(B + "sequenceFlow"):
            flows.setdefault(flow.get("sourceRef", ""), []).append(flow)
        for gw in root.iter(B + "exclusiveGateway", B + "inclusiveGateway"):
            if gw.get("default"):
                continue
            conditional = [f for f in flows.get(gw.get("id", ""), [])
                           if f.find(B + "conditionExpression") is not None]
            if conditional:  # a merge (one plain outgoing flow) needs no default
                problems.append(Problem(
                    f"The gateway '{_label(gw)}' has no default flow: if no condition is true the contract stops "
                    "here. Mark one outgoing flow as the default.",
                    **_where(file, gw), severity=WARNING, code="gateway_default"))
    return problems


# --------------------------------------------------------------------------------------------------------------
# Unreachable elements
# --------------------------------------------------------------------------------------------------------------

def _unreachable(files: dict[str, bytes], docs: dict[str, etree._Element]) -> list[Problem]:
    problems = []
    for file, root in _bpmn(docs):
        for proc in root.iter(B + "process"):
            for el in _unreached_in(proc):
                problems.append(Problem(
                    f"'{_label(el)}' can never be reached: no path of sequence flows leads to it from a start "
                    "event, so it never runs.",
                    **_where(file, el), severity=WARNING, code="unreachable"))
    return problems


def _unreached_in(proc: etree._Element) -> list[etree._Element]:
    nodes = [el for el in proc.iter(*FLOW_NODES)]
    # any element a flow names is followed, also one the schema does not know (it is reported as an error)
    by_id = {el.get("id"): el for el in proc.iter(etree.Element) if el.get("id")}
    targets: dict[str, list[str]] = {}
    incoming: set[str] = set()
    for flow in proc.iter(B + "sequenceFlow"):
        targets.setdefault(flow.get("sourceRef", ""), []).append(flow.get("targetRef", ""))
        incoming.add(flow.get("targetRef", ""))
    for assoc in proc.iter(B + "association"):  # compensation: boundary event -> its handler
        targets.setdefault(assoc.get("sourceRef", ""), []).append(assoc.get("targetRef", ""))
    boundaries: dict[str, list[str]] = {}
    for ev in proc.iter(B + "boundaryEvent"):
        boundaries.setdefault(ev.get("attachedToRef", ""), []).append(ev.get("id", ""))
    catches: dict[str, list[str]] = {}  # link events: a throw jumps to the catch of the same name
    for ev in proc.iter(B + "intermediateCatchEvent"):
        link = ev.find(B + "linkEventDefinition")
        if link is not None:
            catches.setdefault(link.get("name") or ev.get("name") or "", []).append(ev.get("id", ""))

    def children(container: etree._Element) -> list[etree._Element]:
        return [c for c in container if c.tag in FLOW_NODES]

    def entries(container: etree._Element) -> list[etree._Element]:
        kids = children(container)
        if container.tag == B + "adHocSubProcess":
            return kids
        starts = [c for c in kids if c.tag == B + "startEvent"]
        if not starts:  # BPMN: without a start event, every activity without incoming flows starts
            starts = [c for c in kids if c.get("id") not in incoming and c.tag != B + "boundaryEvent"]
        events = [c for c in kids if c.tag in CONTAINERS and c.get("triggeredByEvent") == "true"]
        return starts + events

    seen: set[int] = set()
    stack = list(entries(proc))
    while stack:
        el = stack.pop()
        if id(el) in seen:
            continue
        seen.add(id(el))
        nid = el.get("id", "")
        follow = [*targets.get(nid, []), *boundaries.get(nid, [])]
        if el.tag == B + "intermediateThrowEvent":
            link = el.find(B + "linkEventDefinition")
            if link is not None:
                follow += catches.get(link.get("name") or el.get("name") or "", [])
        stack.extend(by_id[t] for t in follow if t in by_id)
        if el.tag in CONTAINERS:
            stack.extend(entries(el))

    unreached = []
    for el in nodes:
        if id(el) in seen or el.get("isForCompensation") == "true":
            continue
        parent = el.getparent()
        if parent is not None and parent.tag in CONTAINERS and id(parent) not in seen:
            continue  # the unreached subprocess itself is reported, not everything in it
        unreached.append(el)
    return unreached


# --------------------------------------------------------------------------------------------------------------
# Decision table inputs the process never sets
# --------------------------------------------------------------------------------------------------------------

def _dmn_inputs_not_set(files: dict[str, bytes], docs: dict[str, etree._Element]) -> list[Problem]:
    dmn = {name: root for name, root in docs.items() if etree.QName(root).namespace in DMN_NAMESPACES}
    if not dmn:
        return []
    if any(name.endswith(".bpmn") and name not in docs for name in files):
        return []  # a BPMN file that cannot be read may set anything
    known = _variables_set(files, docs)
    if known is None:
        return []
    problems = []
    for file, root in sorted(dmn.items()):
        q = {"dmn": etree.QName(root).namespace}
        for decision in root.iterfind("dmn:decision", q):
            for inp in decision.iterfind(".//dmn:decisionTable/dmn:input", q):
                text = inp.find("dmn:inputExpression/dmn:text", q)
                if text is None or not (text.text or "").strip():
                    continue
                for var in _names_read(text.text.strip()):
                    if var in known:
                        continue
                    problems.append(Problem(
                        f"The input '{_label(inp)}' of the decision table '{_label(decision)}' reads '{var}', which "
                        "no form, script or decision of this process sets: the decision may fail when it runs.",
                        file=file, line=text.sourceline, element_id=inp.get("id"), element_name=inp.get("label"),
                        severity=WARNING, code="dmn_input"))
    return problems


def _names_read(expression: str) -> list[str]:
    """The free variable names an expression reads (not builtins, not names it binds itself)."""
    try:
        tree = ast.parse(expression, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []  # build_package reports it
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Lambda):
            bound |= {a.arg for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]}
    names = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
    return [n for n in dict.fromkeys(names) if n not in bound and n not in SANDBOX_NAMES]


_ASSIGNED = re.compile(r"(?m)(?:^|[;,(\s])([A-Za-z_]\w*)\s*(?:[-+*/%&|^@]|//|\*\*|<<|>>)?=(?!=)")


def _variables_set(files: dict[str, bytes], docs: dict[str, etree._Element]) -> set[str] | None:
    """Generously, every variable the package may set; None if a form cannot be read (then nobody knows)."""
    known = set(START_DATA)
    for name, data in files.items():
        if not name.endswith(".schema.json"):
            continue
        try:
            schema = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError):
            return None
        if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
            known |= set(schema["properties"])
    for _, root in _bpmn(docs):
        for node in root.iter(B + "script", S + "preScript", S + "postScript"):
            known |= _script_targets(node.text or "")
        for node in root.iter(B + "dataObject", B + "dataObjectReference", B + "dataInput", B + "dataOutput",
                              B + "inputDataItem", B + "outputDataItem"):
            known |= {v for v in (node.get("id"), node.get("name")) if v}
        for node in root.iter(S + "messageVariable"):
            known |= {(node.text or "").strip()} - {""}
        for node in root.iter(etree.Element):
            if node.get("resultVariable"):
                known.add(node.get("resultVariable"))
    for root in docs.values():
        if etree.QName(root).namespace in DMN_NAMESPACES:
            q = {"dmn": etree.QName(root).namespace}
            known |= {o.get("name") for o in root.iterfind(".//dmn:output", q) if o.get("name")}
            known |= {d.get("id") for d in root.iterfind("dmn:decision", q) if d.get("id")}
    return known


def _script_targets(source: str) -> set[str]:
    """Every name a script assigns anywhere (loops and functions too); by pattern if it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set(_ASSIGNED.findall(source))
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    names |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    return names
