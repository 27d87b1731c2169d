"""Parses and checks a process package (BPMN + DMN + JSON-Schema forms) before it may be deployed.

Everything a process owner can get wrong is reported here, with the file, line, element id and name,
in words a non-programmer understands: XML that does not parse, DTDs and entities (refused outright),
BPMN schema errors, user tasks outside a lane, lanes without a role, missing or invalid forms, and
conditions, scripts, timer and due-date expressions or DMN cells that break the sandbox rules.
The result is an immutable ``ProcessPackage`` holding the parsed specs, cached per deployment.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import jinja2
from jinja2 import nodes as jnodes
from jinja2.sandbox import SandboxedEnvironment
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser

from . import sandbox

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
DMN_NAMESPACES = (
    "https://www.omg.org/spec/DMN/20191111/MODEL/",
    "http://www.omg.org/spec/DMN/20180521/MODEL/",
    "https://www.omg.org/spec/DMN/20230324/MODEL/",
)
NS = {"bpmn": BPMN_NS, "spiff": SPIFF_NS}
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_PACKAGE_BYTES = 10 * 1024 * 1024
MAX_XML_DEPTH = 64
MAX_JSON_DEPTH = 64
XINCLUDE_NAMESPACES = ("http://www.w3.org/2001/XInclude", "http://www.w3.org/2003/XInclude")


@dataclass(frozen=True)
class Problem:
    message: str
    file: str | None = None
    line: int | None = None
    element_id: str | None = None
    element_name: str | None = None
    severity: str = "error"
    code: str | None = None  # the kind of problem, stable for the studio (workflows/studio/checks.py)

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file + (f":{self.line}" if self.line else ""))
        if self.element_id:
            where.append(f"element '{self.element_id}'" + (f" ({self.element_name})" if self.element_name else ""))
        return (", ".join(where) + ": " if where else "") + self.message


class PackageError(Exception):
    """The package cannot be deployed; ``problems`` lists every reason found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class UserTaskInfo:
    spec_id: str
    name: str
    process_id: str
    lane: str | None
    role: str
    form: str
    ui_form: str | None
    stage: str | None
    due_in: str | None
    due_date: str | None
    four_eyes_exclude: tuple[str, ...]
    instructions: str | None
    returnable: bool = True  # property returnable="false": withdraw and return-to-step never reopen it


@dataclass(frozen=True)
class ProcessInfo:
    process_id: str
    name: str
    start_form: str | None
    lanes: dict[str, str]
    user_tasks: dict[str, UserTaskInfo]
    starter_roles: tuple[str, ...] = ()
    outcomes: dict[str, str] = field(default_factory=dict)  # end event id -> business outcome
    # process property returnBarriers: once one of these user tasks is completed, it and every step before it
    # are closed to withdraw and return-to-step (a signed contract is not reopened)
    return_barriers: tuple[str, ...] = ()
    amendment: Amendment | None = None


@dataclass(frozen=True)
class Amendment:
    """Process properties ``amendmentStep``, ``amendmentOpensAfter``, ``amendmentClosedBy``: once the user task
    ``opens_after`` is completed (the contract is signed) and until one of ``closed_by`` is, a contract may be
    amended (合同修订): the token moves back to ``step`` and everything after it is done again."""

    step: str
    opens_after: str
    closed_by: tuple[str, ...]


@dataclass
class ProcessPackage:
    process_key: str
    files: dict[str, bytes]
    processes: dict[str, ProcessInfo]
    forms: dict[str, dict[str, Any]]
    spec: Any
    subprocess_specs: dict[str, Any]
    content_hash: str
    warnings: list[Problem] = field(default_factory=list)
    _validators: dict[str, Any] = field(default_factory=dict, repr=False)

    def validator(self, form: str):
        """A compiled JSON-Schema validator for one form, built once per package."""
        found = self._validators.get(form)
        if found is None:
            from ..forms import validator_for

            found = self._validators[form] = validator_for(self.forms[form])
        return found

    @property
    def main(self) -> ProcessInfo:
        return self.processes[self.process_key]

    def user_task(self, process_id: str, spec_id: str) -> UserTaskInfo:
        return self.processes[process_id].user_tasks[spec_id]

    @property
    def four_eyes_specs(self) -> frozenset[str]:
        """User tasks under a four-eyes rule (never routed straight back to who did them before)."""
        specs = self.__dict__.get("_four_eyes_specs")
        if specs is None:
            specs = self.__dict__["_four_eyes_specs"] = frozenset(
                spec for p in self.processes.values() for spec, t in p.user_tasks.items() if t.four_eyes_exclude)
        return specs

    @property
    def node_names(self) -> dict[str, str]:
        """The BPMN name of every named element (tasks, events, gateways), by id: for paths and histories."""
        names = self.__dict__.get("_node_names")
        if names is None:
            names = {}
            for spec in [self.spec, *self.subprocess_specs.values()]:
                for task_spec in spec.task_specs.values():
                    bpmn_id, bpmn_name = getattr(task_spec, "bpmn_id", None), getattr(task_spec, "bpmn_name", None)
                    if bpmn_id and bpmn_name:
                        names.setdefault(bpmn_id, bpmn_name)
            self.__dict__["_node_names"] = names
        return names

    @property
    def main_bpmn(self) -> tuple[str, bytes]:
        """The BPMN file that holds the main process (its diagram is the one to show)."""
        found = self.__dict__.get("_main_bpmn")
        if found is None:
            marker = f'id="{self.process_key}"'.encode()
            bpmn = sorted(n for n in self.files if n.endswith(".bpmn"))
            name = next((n for n in bpmn if marker in self.files[n]), bpmn[0])
            found = self.__dict__["_main_bpmn"] = (name, self.files[name])
        return found

    @property
    def sequence_flows(self) -> dict[str, tuple[str, str]]:
        """Every sequence flow of the BPMN files: id -> (source id, target id)."""
        flows = self.__dict__.get("_sequence_flows")
        if flows is None:
            flows = {}
            for name, data in self.files.items():
                if name.endswith(".bpmn"):
                    root = etree.fromstring(data, _safe_parser())
                    for el in root.iter(f"{{{BPMN_NS}}}sequenceFlow"):
                        flows[el.get("id")] = (el.get("sourceRef"), el.get("targetRef"))
            self.__dict__["_sequence_flows"] = flows
        return flows


def content_hash(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
    )


def _parse_xml(name: str, data: bytes, problems: list[Problem], kind: str) -> etree._Element | None:
    """Parse one BPMN or DMN file (``kind``) safely; None (with the problem recorded) if it is refused."""
    if _declares_dtd(data):
        problems.append(Problem("DTDs and entity declarations are not allowed in process files", file=name))
        return None
    try:
        root = etree.fromstring(data, _safe_parser())
    except etree.XMLSyntaxError as err:
        if "Excessive depth" in (err.msg or ""):  # libxml2's own limit, in words about its options
            problems.append(Problem("elements are nested too deep for the parser's depth limit; "
                                    f"at most {MAX_XML_DEPTH} allowed", file=name, line=err.lineno))
        else:
            problems.append(Problem(f"not well-formed XML: {err.msg}", file=name, line=err.lineno))
        return None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        # the byte check above misses UTF-16/32 files; the parsed document tells in any encoding
        problems.append(Problem("DTDs and entity declarations are not allowed in process files", file=name))
        return None
    depth = _max_depth(root)
    if depth > MAX_XML_DEPTH:
        problems.append(Problem(f"elements are nested {depth} deep; at most {MAX_XML_DEPTH} allowed", file=name))
        return None
    qname = etree.QName(root)
    expected = (BPMN_NS,) if kind == "BPMN" else DMN_NAMESPACES
    if qname.localname != "definitions" or qname.namespace not in expected:
        problems.append(Problem(f"this is not a {kind} file: its root element is <{qname.localname}>"
                                + (f" in the namespace '{qname.namespace}'" if qname.namespace else "")
                                + f", not a {kind} <definitions>", file=name, line=root.sourceline))
        return None
    found = len(problems)
    # the safe parser never acts on these, but nothing legitimate needs them either: refuse, do not ignore
    instructions = [*root.itersiblings(etree.ProcessingInstruction, preceding=True),
                    *root.iter(etree.ProcessingInstruction), *root.itersiblings(etree.ProcessingInstruction)]
    for pi in instructions:
        problems.append(Problem(f"processing instructions are not allowed (<?{pi.target} ...?>)", file=name,
                                line=pi.sourceline, **_owner(pi)))
    for node in root.iter(etree.Element):
        if etree.QName(node).namespace in XINCLUDE_NAMESPACES:
            problems.append(Problem("XInclude elements are not allowed: a process file cannot include other files",
                                    file=name, line=node.sourceline, **_owner(node)))
    return root if len(problems) == found else None


def _declares_dtd(data: bytes) -> bool:
    """A DOCTYPE or entity declaration in the raw bytes, also in UTF-16/32 (the parse would otherwise stop
    first at an entity it refuses to load, with a less telling message)."""
    texts = [data]
    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                       (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            texts.append(data.decode(codec, errors="replace").encode("utf-8"))
            break
    return any(b"<!DOCTYPE" in t or b"<!ENTITY" in t for t in texts)


def _owner(node: etree._Element) -> dict[str, str | None]:
    """The id and name of the nearest element around ``node`` that has an id (for Problem)."""
    owner = node.getparent()
    while owner is not None and owner.get("id") is None:
        owner = owner.getparent()
    return {"element_id": owner.get("id"), "element_name": owner.get("name")} if owner is not None else {}


def _max_depth(root: etree._Element) -> int:
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_XML_DEPTH:
            stack.extend((child, depth + 1) for child in node)
    return deepest


def _properties(node: etree._Element) -> dict[str, str]:
    props = {}
    for prop in node.iterfind("bpmn:extensionElements/spiff:properties/spiff:property", NS):
        if "name" in prop.attrib:
            props[prop.attrib["name"]] = prop.attrib.get("value", "")
    return props


def _extension_text(node: etree._Element, tag: str) -> str | None:
    found = node.find(f"bpmn:extensionElements/spiff:{tag}", NS)
    return found.text if found is not None and found.text and found.text.strip() else None


def _basename(name: str) -> str:
    return PurePosixPath(name).name


def build_package(
    files: dict[str, bytes], known_roles: set[str] | None = None, process_key: str | None = None
) -> ProcessPackage:
    """Check every file and return the parsed package, or raise ``PackageError`` listing all problems."""
    problems: list[Problem] = []
    files = {_basename(k): v for k, v in files.items()}
    total = sum(len(v) for v in files.values())
    if total > MAX_PACKAGE_BYTES:
        raise PackageError([Problem(f"the package is {total} bytes; at most {MAX_PACKAGE_BYTES} allowed")])
    for name, data in files.items():
        if len(data) > MAX_FILE_BYTES:
            problems.append(Problem(f"file is {len(data)} bytes; at most {MAX_FILE_BYTES} allowed", file=name))
    if problems:
        raise PackageError(problems)

    bpmn_docs: dict[str, etree._Element] = {}
    dmn_docs: dict[str, etree._Element] = {}
    for name, data in files.items():
        if name.endswith(".bpmn"):
            root = _parse_xml(name, data, problems, "BPMN")
            if root is not None:
                bpmn_docs[name] = root
        elif name.endswith(".dmn"):
            root = _parse_xml(name, data, problems, "DMN")
            if root is not None:
                dmn_docs[name] = root
    if not bpmn_docs and not problems:
        problems.append(Problem("the package has no .bpmn file"))
    if problems:
        raise PackageError(problems)

    parser = SpiffBpmnParser(validator=VALIDATOR)
    for name, root in bpmn_docs.items():
        try:
            parser.add_bpmn_xml(root, filename=name)
        except ValidationException as err:
            problems.append(_problem_from_validation(err, name))
        except Exception as err:  # noqa: BLE001 - the parser raises many kinds; all mean "not deployable"
            problems.append(Problem(f"the BPMN could not be read: {err}", file=name))
    for name, root in dmn_docs.items():
        try:
            parser.add_dmn_xml(root, filename=name)
        except ValidationException as err:
            problems.append(_problem_from_validation(err, name))
        except Exception as err:  # noqa: BLE001
            problems.append(Problem(f"the DMN could not be read: {err}", file=name))
    if problems:
        raise PackageError(problems)

    forms = _load_forms(files, problems)
    processes: dict[str, ProcessInfo] = {}
    executable: list[str] = []
    for name, root in bpmn_docs.items():
        for proc in root.iterfind("bpmn:process", NS):
            info = _process_info(name, proc, files, forms, known_roles, problems)
            processes[info.process_id] = info
            if proc.get("isExecutable", "false") == "true":
                executable.append(info.process_id)
        _check_expressions(name, root, problems)
    for name, root in dmn_docs.items():
        _check_dmn(name, root, problems)

    if process_key is None:
        if len(executable) != 1:
            problems.append(Problem(f"expected exactly one executable process, found {len(executable)}: "
                                    f"{', '.join(executable) or 'none'}"))
        else:
            process_key = executable[0]
    elif process_key not in processes:
        problems.append(Problem(f"no process with id '{process_key}' in the package"))
    if problems:
        raise PackageError(problems)
    assert process_key is not None

    try:
        spec = parser.get_spec(process_key)
        subprocess_specs = parser.get_subprocess_specs(process_key)
    except ValidationException as err:
        raise PackageError([_problem_from_validation(err, None)]) from err
    except Exception as err:  # noqa: BLE001
        raise PackageError([Problem(f"the process could not be built: {err}")]) from err

    return ProcessPackage(
        process_key=process_key,
        files=dict(files),
        processes=processes,
        forms=forms,
        spec=spec,
        subprocess_specs=subprocess_specs,
        content_hash=content_hash(files),
    )


def _problem_from_validation(err: ValidationException, name: str | None) -> Problem:
    message = str(getattr(err, "error_msg", None) or err).splitlines()[0]
    return Problem(
        message,
        file=getattr(err, "file_name", None) or name,
        line=getattr(err, "line_number", None) or None,
        element_id=getattr(err, "id", None) or None,
        element_name=getattr(err, "name", None) or None,
    )


def _load_forms(files: dict[str, bytes], problems: list[Problem]) -> dict[str, dict[str, Any]]:
    forms: dict[str, dict[str, Any]] = {}
    for name, data in files.items():
        if not name.endswith(".json"):
            continue
        try:
            doc = json.loads(data.decode("utf-8"))
        except RecursionError:
            problems.append(Problem(f"the JSON is nested too deeply; at most {MAX_JSON_DEPTH} levels allowed",
                                    file=name))
            continue
        except ValueError as err:  # also too many digits in a number, which is not a JSONDecodeError
            problems.append(Problem(f"not valid JSON: {err}", file=name))
            continue
        depth = _json_depth(doc)
        if depth > MAX_JSON_DEPTH:
            problems.append(Problem(f"the JSON is nested {depth} deep; at most {MAX_JSON_DEPTH} levels allowed",
                                    file=name))
            continue
        if name.endswith(".schema.json"):
            from ..forms import file_field_problems, row_field_problems

            schema_problems = _schema_problems(doc) + file_field_problems(doc) + row_field_problems(doc)
            if schema_problems:
                problems.extend(Problem(p, file=name) for p in schema_problems)
                continue
            try:
                Draft202012Validator.check_schema(doc)
            except SchemaError as err:
                problems.append(Problem(f"not a valid JSON Schema: {err.message}", file=name))
                continue
            if doc.get("type") != "object":
                problems.append(Problem("a form schema must describe an object (\"type\": \"object\")", file=name))
                continue
        forms[name] = doc
    return forms


def _json_depth(doc: Any) -> int:
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_JSON_DEPTH:
            children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _schema_problems(doc: Any) -> list[str]:
    """References out of the form (other files, URLs) and patterns that backtrack catastrophically."""
    problems: list[str] = []
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        for key in ("$ref", "$dynamicRef"):
            ref = node.get(key)
            if isinstance(ref, str) and not ref.startswith("#"):
                problems.append(f"'{key}': '{ref[:200]}' points outside the form; only references inside it "
                                "('#/$defs/...') are allowed")
        patterns = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        if isinstance(node.get("patternProperties"), dict):
            patterns.extend(node["patternProperties"])
        for pattern in patterns:
            if _backtracks(pattern):
                problems.append(f"the pattern '{pattern[:200]}' repeats a repetition or an alternative (like "
                                "'(a+)+' or '(a|aa)+'), which can take hours to check one value; write it "
                                "without them (a character class such as [ab]+ is fine)")
        stack.extend(node.values())
    return problems


def _backtracks(pattern: str) -> bool:
    """Whether a regular expression nests an unbounded repeat inside another repeat (exponential matching).

    Uses the standard library's own regex parser (``re._parser``); an invalid pattern is left to the JSON
    Schema check, which reports it."""
    try:
        import re._parser as sre_parse  # private, but the only parser of Python's own regex syntax
        from re._constants import BRANCH, MAX_REPEAT, MAXREPEAT, MIN_REPEAT, POSSESSIVE_REPEAT

        parsed = sre_parse.parse(pattern)
    except Exception:  # noqa: BLE001
        return False
    repeats = (MAX_REPEAT, MIN_REPEAT)

    # an alternation under an unbounded repeat (``(a|aa)+``) backtracks exponentially when its branches can
    # match the same text; telling which can is as hard as the problem, so any such alternation is refused
    def walk(items: Any, inside_repeat: bool, inside_unbounded: bool) -> bool:
        for op, arg in items:
            if op in repeats:
                low, high, body = arg
                unbounded = high == MAXREPEAT or high > 100
                if inside_repeat and unbounded:
                    return True
                if walk(body, inside_repeat or high > 1, inside_unbounded or unbounded):
                    return True
            elif op is POSSESSIVE_REPEAT:
                continue  # possessive repeats never backtrack
            elif op is BRANCH and inside_unbounded:
                return True
            else:
                for sub in arg if isinstance(arg, list | tuple) else ():
                    if isinstance(sub, sre_parse.SubPattern) and walk(sub, inside_repeat, inside_unbounded):
                        return True
                    if isinstance(sub, list | tuple):
                        for part in sub:
                            if isinstance(part, sre_parse.SubPattern) and walk(part, inside_repeat,
                                                                               inside_unbounded):
                                return True
        return False

    return walk(parsed, False, False)


def _process_info(
    file: str,
    proc: etree._Element,
    files: dict[str, bytes],
    forms: dict[str, dict[str, Any]],
    known_roles: set[str] | None,
    problems: list[Problem],
) -> ProcessInfo:
    process_id = proc.get("id", "")
    lanes: dict[str, str] = {}
    lane_of_node: dict[str, str] = {}
    for lane in proc.iterfind(".//bpmn:lane", NS):
        lane_name = lane.get("name") or lane.get("id", "")
        role = _properties(lane).get("role") or (lane_name if known_roles and lane_name in known_roles else "")
        where = dict(file=file, line=lane.sourceline, element_id=lane.get("id"), element_name=lane.get("name"))
        if not role:
            problems.append(Problem("this lane has no role (add the property 'role')", **where))
        elif known_roles is not None and role not in known_roles:
            problems.append(Problem(f"unknown role '{role}'; known roles: {', '.join(sorted(known_roles))}",
                                    **where))
        lanes[lane_name] = role
        for ref in lane.iterfind("bpmn:flowNodeRef", NS):
            if ref.text:
                lane_of_node[ref.text.strip()] = lane_name

    def check_form(node: etree._Element, filename: str | None, required: bool) -> None:
        where = dict(file=file, line=node.sourceline, element_id=node.get("id"), element_name=node.get("name"))
        if not filename:
            if required:
                problems.append(Problem("this user task has no form (property 'formJsonSchemaFilename')", **where))
            return
        if filename not in files:
            problems.append(Problem(f"form file '{filename}' is not in the package", **where))
        elif filename.endswith(".schema.json") and filename not in forms:
            pass  # already reported by _load_forms
        elif not filename.endswith(".json"):
            problems.append(Problem(f"form file '{filename}' is not a .json file", **where))

    user_tasks: dict[str, UserTaskInfo] = {}
    for node in proc.iter(f"{{{BPMN_NS}}}userTask"):
        spec_id = node.get("id", "")
        props = _properties(node)
        where = dict(file=file, line=node.sourceline, element_id=spec_id, element_name=node.get("name"))
        lane_name = lane_of_node.get(spec_id)
        if lane_name is None:
            problems.append(Problem("this user task is outside every lane, so no role can see it", **where))
        form = props.get("formJsonSchemaFilename")
        ui_form = props.get("formUiSchemaFilename") or None
        check_form(node, form, required=True)
        if ui_form:
            check_form(node, ui_form, required=False)
        due_in, due_date = props.get("dueIn") or None, props.get("dueDate") or None
        if due_in:
            from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

            try:
                TimerEventDefinition.parse_iso_duration(due_in)
            except Exception:  # noqa: BLE001
                problems.append(Problem(f"dueIn '{due_in}' is not an ISO 8601 duration such as P2D or PT8H",
                                        **where))
        if due_date:
            for msg in sandbox.check_expression(due_date):
                problems.append(Problem(f"dueDate expression: {msg}", **where))
        exclude = tuple(x.strip() for x in props.get("fourEyesExclude", "").split(",") if x.strip())
        user_tasks[spec_id] = UserTaskInfo(
            spec_id=spec_id,
            name=node.get("name") or spec_id,
            process_id=process_id,
            lane=lane_name,
            role=lanes.get(lane_name or "", ""),
            form=form or "",
            ui_form=ui_form,
            stage=props.get("stage") or None,
            due_in=due_in,
            due_date=due_date,
            four_eyes_exclude=exclude,
            instructions=_extension_text(node, "instructionsForEndUser"),
            returnable=_flag(props, "returnable", True, problems, where),
        )
    all_user_tasks = set(user_tasks)
    for info in user_tasks.values():
        for ref in info.four_eyes_exclude:
            if ref not in all_user_tasks:
                problems.append(Problem(f"fourEyesExclude names '{ref}', which is not a user task of this process",
                                        file=file, element_id=info.spec_id, element_name=info.name))
    start_form, starters = None, []
    for start in proc.iterfind("bpmn:startEvent", NS):
        props = _properties(start)
        start_form = props.get("formJsonSchemaFilename") or start_form
        if start_form:
            check_form(start, start_form, required=False)
            from ..forms import file_fields

            if start_form in forms and file_fields(forms[start_form]):
                problems.append(Problem("a start form cannot have file fields: files are uploaded with the form of "
                                        "a user task", file=file, element_id=start.get("id"),
                                        element_name=start.get("name")))
        named = [r.strip() for r in props.get("starterRoles", "").split(",") if r.strip()]
        lane_role = lanes.get(lane_of_node.get(start.get("id", ""), ""), "")
        starters.extend(named or ([lane_role] if lane_role else []))
        if known_roles is not None:
            for role in named:
                if role not in known_roles:
                    problems.append(Problem(f"starterRoles names unknown role '{role}'", file=file,
                                            element_id=start.get("id"), element_name=start.get("name")))
    outcomes = {end.get("id", ""): _properties(end)["outcome"] for end in proc.iter(f"{{{BPMN_NS}}}endEvent")
                if _properties(end).get("outcome")}
    barriers = tuple(x.strip() for x in _properties(proc).get("returnBarriers", "").split(",") if x.strip())
    for ref in barriers:
        if ref not in all_user_tasks:
            problems.append(Problem(f"returnBarriers names '{ref}', which is not a user task of this process",
                                    file=file, line=proc.sourceline, element_id=process_id,
                                    element_name=proc.get("name")))
    props = _properties(proc)
    amendment = None
    if props.get("amendmentStep") or props.get("amendmentOpensAfter"):
        amendment = Amendment(props.get("amendmentStep", "").strip(), props.get("amendmentOpensAfter", "").strip(),
                              tuple(x.strip() for x in props.get("amendmentClosedBy", "").split(",") if x.strip()))
        for name, ref in (("amendmentStep", amendment.step), ("amendmentOpensAfter", amendment.opens_after),
                          *(("amendmentClosedBy", ref) for ref in amendment.closed_by)):
            if ref not in all_user_tasks:
                problems.append(Problem(f"{name} names '{ref}', which is not a user task of this process",
                                        file=file, line=proc.sourceline, element_id=process_id,
                                        element_name=proc.get("name")))
    return ProcessInfo(process_id, proc.get("name") or process_id, start_form, lanes, user_tasks,
                       tuple(dict.fromkeys(starters)), outcomes, barriers, amendment)


def _flag(props: dict[str, str], name: str, default: bool, problems: list[Problem], where: dict) -> bool:
    value = props.get(name)
    if value is None or value.strip() == "":
        return default
    if value.strip().lower() in ("true", "yes"):
        return True
    if value.strip().lower() in ("false", "no"):
        return False
    problems.append(Problem(f"property '{name}' must be true or false, not '{value}'", **where))
    return default


def _reporter(file: str, problems: list[Problem]):
    """Reports sandbox problems of a text node against the nearest enclosing element that has an id."""

    def report(node: etree._Element, what: str, messages: list[str]) -> None:
        owner = node
        while owner is not None and owner.get("id") is None:
            owner = owner.getparent()
        for msg in messages:
            problems.append(Problem(f"{what}: {msg}", file=file, line=node.sourceline,
                                    element_id=owner.get("id") if owner is not None else None,
                                    element_name=owner.get("name") if owner is not None else None))

    return report


def _check_expressions(file: str, root: etree._Element, problems: list[Problem]) -> None:
    report = _reporter(file, problems)

    for node in root.iter(f"{{{BPMN_NS}}}conditionExpression"):
        if node.text and node.text.strip():
            report(node, "condition", sandbox.check_expression(node.text.strip()))
    for node in root.iter(f"{{{BPMN_NS}}}script"):
        if node.text and node.text.strip():
            report(node, "script", sandbox.check_script(node.text))
    for tag in ("preScript", "postScript"):
        for node in root.iter(f"{{{SPIFF_NS}}}{tag}"):
            if node.text and node.text.strip():
                report(node, tag, sandbox.check_script(node.text))
    for tag in ("timeDate", "timeDuration", "timeCycle"):
        for node in root.iter(f"{{{BPMN_NS}}}{tag}"):
            if node.text and node.text.strip():
                report(node, "timer expression", sandbox.check_expression(node.text.strip()))
    # every other place SpiffWorkflow evaluates an expression (the sandbox would refuse them when run)
    for tag, what in (("loopCardinality", "loop cardinality"), ("completionCondition", "completion condition"),
                      ("loopCondition", "loop condition"), ("condition", "conditional event"),
                      ("messagePath", "message correlation"), ("formalExpression", "message correlation")):
        for node in root.iter(f"{{{BPMN_NS}}}{tag}"):
            if node.text and node.text.strip():
                report(node, what, sandbox.check_expression(node.text.strip()))
    for node in root.iter(f"{{{SPIFF_NS}}}expression"):  # processVariableCorrelation's expression
        if node.text and node.text.strip():
            report(node, "message correlation", sandbox.check_expression(node.text.strip()))
    for node in root.iter(f"{{{SPIFF_NS}}}messagePayload"):
        if node.text and node.text.strip():
            report(node, "message payload", sandbox.check_expression(node.text.strip()))
    for node in root.iter(f"{{{SPIFF_NS}}}parameter"):
        if (node.get("value") or "").strip():
            report(node, f"service parameter '{node.get('id') or ''}'", sandbox.check_expression(node.get("value")))
    for node in root.iter(f"{{{SPIFF_NS}}}instructionsForEndUser"):
        if node.text and node.text.strip():
            report(node, "instructions", _template_problems(node.text))


# Instructions are Jinja templates rendered on every view of the task page. Jinja's sandbox stops attribute
# walks, not '*', '**', '+' or method calls that allocate gigabytes or compute for hours, so only a small
# language is accepted: names, look-ups, if/for/set, comparisons, literals and filters that cannot grow text.
_TEMPLATE_NODES = (
    jnodes.Template, jnodes.Output, jnodes.TemplateData, jnodes.Name, jnodes.Const, jnodes.Getattr,
    jnodes.Getitem, jnodes.Slice, jnodes.If, jnodes.For, jnodes.Assign, jnodes.Dict, jnodes.Pair, jnodes.List,
    jnodes.Tuple, jnodes.Compare, jnodes.Operand, jnodes.And, jnodes.Or, jnodes.Not, jnodes.CondExpr,
    jnodes.Filter, jnodes.Test, jnodes.Neg, jnodes.Pos, jnodes.Sub, jnodes.Div, jnodes.FloorDiv, jnodes.Keyword,
)
_TEMPLATE_FILTERS = frozenset({
    "default", "d", "upper", "lower", "title", "capitalize", "trim", "length", "count", "round", "int", "float",
    "string", "abs", "first", "last", "e", "escape", "truncate", "wordcount", "sort", "reverse", "unique", "min",
    "max", "dictsort", "join",
})
_TEMPLATE_WORDS = {"Mul": "'*'", "Pow": "'**'", "Add": "'+'", "Concat": "'~'", "Mod": "'%'", "Call": "calls",
                   "Include": "'include'", "Import": "'import'", "FromImport": "'import'", "Extends": "'extends'",
                   "Macro": "macros", "CallBlock": "'call' blocks", "FilterBlock": "filter blocks"}
_template_env = SandboxedEnvironment()


def _template_problems(text: str) -> list[str]:
    try:
        tree = _template_env.parse(text)
    except jinja2.TemplateSyntaxError as err:
        return [f"line {err.lineno}: template syntax error: {err.message}"]
    problems: list[str] = []

    def walk(node: jnodes.Node, loops: int) -> None:
        kind = type(node).__name__
        where = f"line {node.lineno}: " if getattr(node, "lineno", None) else ""
        if not isinstance(node, _TEMPLATE_NODES):
            problems.append(f"{where}{_TEMPLATE_WORDS.get(kind, kind)} not allowed in instructions")
            return
        if isinstance(node, jnodes.Name | jnodes.Getattr) and (getattr(node, "name", None) or
                                                              getattr(node, "attr", "")).startswith("_"):
            problems.append(f"{where}names starting with '_' are not allowed")
        if isinstance(node, jnodes.Filter) and node.name not in _TEMPLATE_FILTERS:
            problems.append(f"{where}the filter '{node.name}' is not allowed in instructions")
        if isinstance(node, jnodes.Filter) and node.name == "join" and not all(
                isinstance(a, jnodes.Const) and isinstance(a.value, str) and len(a.value) <= 20 for a in node.args):
            problems.append(f"{where}'join' needs a short fixed separator such as ', '")
        if isinstance(node, jnodes.For):
            if loops:
                problems.append(f"{where}a loop inside a loop is not allowed in instructions")
                return
            loops += 1
        for child in node.iter_child_nodes():
            walk(child, loops)

    walk(tree, 0)
    return problems


def _check_dmn(file: str, root: etree._Element, problems: list[Problem]) -> None:
    ns = etree.QName(root).namespace
    if ns not in DMN_NAMESPACES:
        problems.append(Problem(f"unsupported DMN namespace '{ns}'", file=file))
        return
    q = {"dmn": ns}
    report = _reporter(file, problems)

    for node in root.iterfind(".//dmn:inputExpression/dmn:text", q):
        if node.text and node.text.strip():
            report(node, "DMN input", sandbox.check_expression(node.text.strip()))
    for tag in ("inputEntry", "outputEntry"):
        for node in root.iterfind(f".//dmn:{tag}/dmn:text", q):
            text = (node.text or "").strip()
            if not text or text == "-":
                continue
            if tag == "inputEntry":
                cell = text.replace("?", "dmninputexpr")
                candidates = [f"({cell})", f"dmninputexpr {cell}"]
                results = [sandbox.check_expression(c) for c in candidates]
                # a cell is fine if either reading is; otherwise report the reading that parsed
                parsed = [r for r in results if not any("syntax error" in m for m in r)]
                messages = [] if any(not r for r in results) else (parsed or results)[0]
            else:
                messages = sandbox.check_expression(text)
            report(node, "DMN cell", messages)
