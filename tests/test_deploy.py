"""Deploying process packages: a corpus of broken and hostile packages is refused with a clear problem
(and nothing is stored), and valid packages become immutable, numbered versions that running
instances keep using."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from models import AuditEvent, Deployment, DeploymentFile
from workflows import config
from workflows.engine.package import MAX_FILE_BYTES, MAX_XML_DEPTH, PackageError, Problem, build_package
from workflows.runtime import Runtime
from workflows.services import accounts, deployments, instances, tasks
from workflows.services.errors import DeployRefused, InvalidInput

from .flow import Flow, approve, quote

BAD = Path(__file__).parent / "bpmn" / "bad"

MINI = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
    id="Defs_mini" targetNamespace="http://lvyue.example/tests">
  <bpmn:process id="mini" name="Mini / 迷你" isExecutable="true">
    <bpmn:laneSet id="LaneSet_mini">
      <bpmn:lane id="Lane_rep" name="Sales rep / 销售代表">
        <bpmn:extensionElements>
          <spiffworkflow:properties>
            <spiffworkflow:property name="role" value="sales_rep" />
          </spiffworkflow:properties>
        </bpmn:extensionElements>
        <bpmn:flowNodeRef>start</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>fill</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>calc</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>gw</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>end_big</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>end_small</bpmn:flowNodeRef>
      </bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start" name="Start / 开始" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="fill" />
    <bpmn:userTask id="fill" name="Fill in / 填写">
      <bpmn:extensionElements>
        <spiffworkflow:properties>
          <spiffworkflow:property name="formJsonSchemaFilename" value="fill.schema.json" />
          <spiffworkflow:property name="dueIn" value="P1D" />
        </spiffworkflow:properties>
      </bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f2" sourceRef="fill" targetRef="calc" />
    <bpmn:scriptTask id="calc" name="Calculate / 计算">
      <bpmn:script>doubled = quantity * 2</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f3" sourceRef="calc" targetRef="gw" />
    <bpmn:exclusiveGateway id="gw" name="Big? / 大？" default="f5" />
    <bpmn:sequenceFlow id="f4" sourceRef="gw" targetRef="end_big">
      <bpmn:conditionExpression>doubled &gt; 10</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f5" sourceRef="gw" targetRef="end_small" />
    <bpmn:endEvent id="end_big" name="Big / 大" />
    <bpmn:endEvent id="end_small" name="Small / 小" />
  </bpmn:process>
</bpmn:definitions>
"""
FORM = {
    "$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Fill in", "type": "object",
    "properties": {"quantity": {"title": "Quantity", "type": "integer"}},
    "required": ["quantity"], "additionalProperties": False,
}
TIMER = """<bpmn:sequenceFlow id="f3" sourceRef="calc" targetRef="wait" />
    <bpmn:intermediateCatchEvent id="wait" name="Wait / 等待">
      <bpmn:timerEventDefinition id="wait_timer">
        <bpmn:timeDate xsi:type="bpmn:tFormalExpression">EXPR</bpmn:timeDate>
      </bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f3b" sourceRef="wait" targetRef="gw" />"""


def line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def package(bpmn: str | bytes = MINI, **extra: bytes) -> dict[str, bytes]:
    files = {"mini.bpmn": bpmn.encode() if isinstance(bpmn, str) else bpmn,
             "fill.schema.json": json.dumps(FORM).encode()}
    files.update({name.replace("__", "."): data for name, data in extra.items()})
    return files


def edit(old: str, new: str) -> Callable[[], dict[str, bytes]]:
    def make() -> dict[str, bytes]:
        assert old in MINI, old
        return package(MINI.replace(old, new, 1))
    return make


def with_timer(expression: str) -> str:
    return (MINI.replace('<bpmn:sequenceFlow id="f3" sourceRef="calc" targetRef="gw" />',
                         TIMER.replace("EXPR", expression))
            .replace("<bpmn:flowNodeRef>gw</bpmn:flowNodeRef>",
                     "<bpmn:flowNodeRef>gw</bpmn:flowNodeRef><bpmn:flowNodeRef>wait</bpmn:flowNodeRef>"))


def real_set(**edits: tuple[str, str]) -> dict[str, bytes]:
    """The real quote-to-cash package, with string edits per file (``name=(old, new)``)."""
    files = deployments.collect_files(config.bpmn_dir() / "quote_to_cash.bpmn")
    for name, (old, new) in edits.items():
        name = name.replace("__", ".")
        text = files[name].decode()
        assert old in text, (name, old)
        files[name] = text.replace(old, new, 1).encode()
    return files


def nested(depth: int) -> dict[str, bytes]:
    doc = "<bpmn:documentation>" + "<x>" * depth + "</x>" * depth + "</bpmn:documentation>"
    return package(MINI.replace('<bpmn:endEvent id="end_small" name="Small / 小" />',
                                f'<bpmn:endEvent id="end_small" name="Small / 小">{doc}</bpmn:endEvent>'))


# (make the files, fragments of the message, expected file, element id, line) — None: not checked
FILL_LINE = line_of(MINI, '<bpmn:userTask id="fill"')
LANE_LINE = line_of(MINI, '<bpmn:lane id="Lane_rep"')
CORPUS: dict[str, tuple[Callable[[], dict[str, bytes]], list[str], str | None, str | None, int | None]] = {
    "not xml": (lambda: package((BAD / "not_xml.bpmn").read_bytes()), ["not well-formed XML"], "mini.bpmn",
                None, 1),
    "unknown BPMN element": (
        lambda: {"unknown_element.bpmn": (BAD / "unknown_element.bpmn").read_bytes()},
        ["fooTask", "not expected"], "unknown_element.bpmn", None,
        line_of((BAD / "unknown_element.bpmn").read_text(), "<bpmn:fooTask")),
    "user task outside every lane": (edit("<bpmn:flowNodeRef>fill</bpmn:flowNodeRef>", ""),
                                     ["outside every lane"], "mini.bpmn", "fill", FILL_LINE),
    "lane without a role": (edit('<spiffworkflow:property name="role" value="sales_rep" />', ""),
                            ["lane has no role"], "mini.bpmn", "Lane_rep", LANE_LINE),
    "lane with an unknown role": (edit('value="sales_rep"', 'value="astronaut"'),
                                  ["unknown role 'astronaut'", "sales_rep"], "mini.bpmn", "Lane_rep", LANE_LINE),
    "user task without a form": (
        edit('<spiffworkflow:property name="formJsonSchemaFilename" value="fill.schema.json" />', ""),
        ["has no form", "formJsonSchemaFilename"], "mini.bpmn", "fill", FILL_LINE),
    "form file missing": (lambda: {"mini.bpmn": MINI.encode()}, ["'fill.schema.json' is not in the package"],
                          "mini.bpmn", "fill", FILL_LINE),
    "form path outside the package": (edit('value="fill.schema.json"', 'value="../../forms/fill.schema.json"'),
                                      ["is not in the package"], "mini.bpmn", "fill", FILL_LINE),
    "form is not JSON": (lambda: package(fill__schema__json=b'{"type": "object", properties: {}}'),
                         ["not valid JSON"], "fill.schema.json", None, None),
    "form is not a JSON Schema": (
        lambda: package(fill__schema__json=json.dumps(dict(FORM, properties={"q": {"type": "banana"}})).encode()),
        ["not a valid JSON Schema"], "fill.schema.json", None, None),
    "form is not an object": (lambda: package(fill__schema__json=b'{"type": "array"}'),
                              ['"type": "object"'], "fill.schema.json", None, None),
    "external entity (XXE)": (lambda: {"xxe.bpmn": (BAD / "xxe.bpmn").read_bytes()},
                              ["DTDs and entity declarations are not allowed"], "xxe.bpmn", None, None),
    "billion laughs": (lambda: {"billion_laughs.bpmn": (BAD / "billion_laughs.bpmn").read_bytes()},
                       ["DTDs and entity declarations are not allowed"], "billion_laughs.bpmn", None, None),
    "import in a script task": (edit("doubled = quantity * 2", "doubled = __import__('os').system('id')"),
                                ["script", "'__import__'"], "mini.bpmn", "calc",
                                line_of(MINI, "<bpmn:script>")),
    "import statement in a script task": (edit("doubled = quantity * 2", "import os\ndoubled = os.getpid()"),
                                          ["script", "import"], "mini.bpmn", "calc", None),
    "dunder walk in a gateway condition": (edit("doubled &gt; 10", "().__class__.__mro__[1].__subclasses__()"),
                                           ["condition", "__class__"], "mini.bpmn", "f4",
                                           line_of(MINI, "<bpmn:conditionExpression>")),
    "open() in a gateway condition": (edit("doubled &gt; 10", "open('/etc/passwd').read() != ''"),
                                      ["condition", "open"], "mini.bpmn", "f4", None),
    "import in a timer expression": (lambda: package(with_timer("__import__('os').system('id')")),
                                     ["timer expression", "'__import__'"], "mini.bpmn", "wait_timer", None),
    "while loop in a post-script": (
        edit("</spiffworkflow:properties>\n      </bpmn:extensionElements>\n    </bpmn:userTask>",
             "</spiffworkflow:properties>\n<spiffworkflow:postScript>while True:\n    pass</spiffworkflow:postScript>"
             "\n      </bpmn:extensionElements>\n    </bpmn:userTask>"),
        ["postScript", "'while' loops"], "mini.bpmn", "fill", None),
    "dunder in a dueDate": (edit('name="dueIn" value="P1D"', 'name="dueDate" value="today().__class__"'),
                            ["dueDate expression", "__class__"], "mini.bpmn", "fill", FILL_LINE),
    "DMN input cell with __class__": (
        lambda: real_set(approval_matrix__dmn=("<text>&gt; 1000000</text>",
                                               "<text>?.__class__.__name__ == 'Decimal'</text>")),
        ["DMN cell", "__class__"], "approval_matrix.dmn", "InputEntry_1_amount", None),
    "DMN output cell with __class__": (
        lambda: real_set(approval_matrix__dmn=("<text>True</text>", "<text>(1).__class__</text>")),
        ["DMN cell", "__class__"], "approval_matrix.dmn", "OutputEntry_1_need_manager", None),
    "invalid dueIn": (edit('value="P1D"', 'value="tomorrow"'), ["dueIn 'tomorrow'", "ISO 8601"], "mini.bpmn",
                      "fill", FILL_LINE),
    "fourEyesExclude names a missing task": (
        edit('<spiffworkflow:property name="dueIn" value="P1D" />',
             '<spiffworkflow:property name="fourEyesExclude" value="ghost_task" />'),
        ["fourEyesExclude", "'ghost_task'"], "mini.bpmn", "fill", None),
    "starterRoles names an unknown role": (
        edit('<bpmn:startEvent id="start" name="Start / 开始" />',
             '<bpmn:startEvent id="start" name="Start / 开始"><bpmn:extensionElements><spiffworkflow:properties>'
             '<spiffworkflow:property name="starterRoles" value="emperor" /></spiffworkflow:properties>'
             '</bpmn:extensionElements></bpmn:startEvent>'),
        ["starterRoles", "'emperor'"], "mini.bpmn", "start", None),
    "file over the size limit": (
        lambda: package(MINI.replace("<bpmn:endEvent id=\"end_small\" name=\"Small / 小\" />",
                                     "<bpmn:endEvent id=\"end_small\" name=\"Small / 小\"><bpmn:documentation>"
                                     + "x" * MAX_FILE_BYTES + "</bpmn:documentation></bpmn:endEvent>")),
        [f"at most {MAX_FILE_BYTES} allowed"], "mini.bpmn", None, None),
    "XML nested deeper than allowed": (lambda: nested(MAX_XML_DEPTH + 10), [f"at most {MAX_XML_DEPTH} allowed"],
                                       "mini.bpmn", None, None),
    "XML nested thousands deep": (lambda: nested(5000), ["depth"], "mini.bpmn", None, None),
    "no BPMN file": (lambda: {"fill.schema.json": json.dumps(FORM).encode()}, ["no .bpmn file"], None, None, None),
    "two executable processes": (
        lambda: dict(package(), **{"other.bpmn": MINI.replace('id="mini"', 'id="mini_two"')
                                   .replace('id="Defs_mini"', 'id="Defs_two"').encode()}),
        ["exactly one executable process", "mini", "mini_two"], None, None, None),
}


def stored(rt) -> tuple[int, int, int]:
    with rt.read() as s:
        return (s.scalar(select(func.count()).select_from(Deployment)),
                s.scalar(select(func.count()).select_from(DeploymentFile)),
                s.scalar(select(func.count()).select_from(AuditEvent)))


def test_the_minimal_package_itself_is_valid():
    built = build_package(package(), known_roles=accounts.ROLE_CODES)
    assert built.process_key == "mini"
    assert built.main.user_tasks["fill"].role == "sales_rep"
    assert built.main.starter_roles == ("sales_rep",)
    assert build_package(package(with_timer("'2026-12-01T00:00:00+08:00'")), known_roles=accounts.ROLE_CODES)
    assert build_package(real_set(), known_roles=accounts.ROLE_CODES).process_key == "quote_to_cash"


@pytest.mark.parametrize("case", list(CORPUS), ids=list(CORPUS))
def test_a_bad_package_is_refused_with_a_clear_problem(shared_rt, case):
    make, fragments, file, element_id, line = CORPUS[case]
    files = make()
    before = stored(shared_rt)
    with pytest.raises(DeployRefused) as exc:
        deployments.deploy_files(shared_rt, files, accounts.get_user(shared_rt, "owner1"), comment=case)
    problems = exc.value.problems
    assert problems and all(isinstance(p, Problem) for p in problems)
    assert f"{len(problems)} problem(s)" in exc.value.message
    matching = [p for p in problems if all(f in p.message for f in fragments)]
    assert matching, [str(p) for p in problems]
    problem = matching[0]
    assert problem.severity == "error"
    if file is not None:
        assert problem.file == file
        assert str(problem).startswith(file)
    if element_id is not None:
        assert problem.element_id == element_id
        assert f"element '{element_id}'" in str(problem)
    if line is not None:
        assert problem.line == line
    assert stored(shared_rt) == before, "a refused deploy stores nothing and audits nothing"
    # the package check is the same without a database
    with pytest.raises(PackageError):
        build_package(files, known_roles=accounts.ROLE_CODES)


def test_the_external_entity_is_never_read():
    """Whatever the refusal path, no file content may end up in a problem message."""
    with pytest.raises(PackageError) as exc:
        build_package({"xxe.bpmn": (BAD / "xxe.bpmn").read_bytes()}, known_roles=accounts.ROLE_CODES)
    assert "root:" not in str(exc.value)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_a_dtd_is_refused_in_any_encoding(encoding):
    doc = (MINI.replace('encoding="UTF-8"', f'encoding="{encoding.upper()}"')
           .replace("<bpmn:definitions", '<!DOCTYPE x [<!ENTITY co "Lvyue Company">]>\n<bpmn:definitions', 1)
           .replace('name="Fill in / 填写"', 'name="Fill in for &co;"'))
    with pytest.raises(PackageError) as exc:
        build_package(package(doc.encode(encoding)), known_roles=accounts.ROLE_CODES)
    assert "DTDs and entity declarations are not allowed" in str(exc.value)


def test_a_comparison_dmn_cell_names_the_dunder():
    files = real_set(approval_matrix__dmn=("<text>&gt; 1000000</text>", "<text>&gt; ().__class__</text>"))
    with pytest.raises(PackageError) as exc:
        build_package(files, known_roles=accounts.ROLE_CODES)
    (problem,) = exc.value.problems
    assert problem.element_id == "InputEntry_1_amount"
    assert "__class__" in problem.message, problem.message


# --------------------------------------------------------------------------------------------------
# Versions
# --------------------------------------------------------------------------------------------------


def deploy_events(rt) -> list[AuditEvent]:
    with rt.read() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == "deploy").order_by(AuditEvent.id)))


def test_redeploying_the_same_files_creates_no_version(rt):
    before = stored(rt)
    events = len(deploy_events(rt))
    for _ in range(2):
        results = deployments.deploy_path(rt, config.bpmn_dir())
        assert sorted((r.process_key, r.version, r.created) for r in results) == [
            ("complaint", 1, False), ("ownership_dispute", 1, False), ("quote_to_cash", 1, False)]
    assert stored(rt) == before
    assert len(deploy_events(rt)) == events


def test_each_deploy_is_audited(rt):
    owner = accounts.get_user(rt, "owner1")
    first = deployments.deploy_files(rt, package(), owner, comment="first")
    again = deployments.deploy_files(rt, package(), owner, comment="again")
    assert (first.created, first.version) == (True, 1)
    assert (again.created, again.version, again.deployment_id) == (False, 1, first.deployment_id)
    second = deployments.deploy_files(rt, package(MINI.replace('value="P1D"', 'value="P2D"')), None)
    assert (second.created, second.version) == (True, 2)
    events = [e for e in deploy_events(rt) if e.data.get("process_key") == "mini"]
    assert len(events) == 2
    assert (events[0].actor, events[0].actor_id, events[0].deployment_id) == ("owner1", owner.id,
                                                                            first.deployment_id)
    assert events[0].data["version"] == 1 and events[0].data["comment"] == "first"
    assert events[0].data["files"] == ["fill.schema.json", "mini.bpmn"]
    assert len(events[0].data["hash"]) == 64
    assert (events[1].actor, events[1].deployment_id, events[1].data["version"]) == ("system",
                                                                                   second.deployment_id, 2)
    assert events[0].data["hash"] != events[1].data["hash"]


def test_a_changed_form_is_version_two_and_running_instances_stay_on_version_one(rt):
    old = Flow(rt)
    assert old.view().deployment_version == 1
    schema = json.loads((config.bpmn_dir() / "forms" / "prepare_quote.schema.json").read_text())
    schema["properties"]["incoterms"] = {"title": "Incoterms", "type": "string", "minLength": 3}
    schema["required"].append("incoterms")
    files = deployments.collect_files(config.bpmn_dir() / "quote_to_cash.bpmn")
    files["prepare_quote.schema.json"] = json.dumps(schema).encode()
    result = deployments.deploy_files(rt, files, accounts.get_user(rt, "owner1"), comment="incoterms")
    assert (result.process_key, result.version, result.created) == ("quote_to_cash", 2, True)
    assert deployments.deploy_files(rt, files).created is False

    new = Flow(rt)
    assert new.view().deployment_version == 2
    assert old.view().deployment_version == 1

    # v1 keeps v1's form: the new field is unknown there, the old data is complete
    with pytest.raises(InvalidInput) as exc:
        old.act("prepare_quote", "rep1", quote(incoterms="FOB"))
    assert set(exc.value.errors) == {"incoterms"}
    old.act("prepare_quote", "rep1", quote())
    # v2 requires it
    with pytest.raises(InvalidInput) as exc:
        new.act("prepare_quote", "rep1", quote())
    assert exc.value.errors == {"incoterms": "this field is required"}
    new.act("prepare_quote", "rep1", quote(incoterms="FOB"))
    assert new.data()["incoterms"] == "FOB"

    # both go on to the end of the approvals on their own version
    for flow in (old, new):
        flow.act("supervisor_review", "sup1", approve("supervisor"))
        assert flow.open_specs() == {"draft_contract"}
    assert (old.view().deployment_version, new.view().deployment_version) == (1, 2)
    assert "incoterms" not in old.data()

    # a fresh runtime (empty package cache) loads each instance with its own version
    fresh = Runtime(rt.database_url, clock=rt.clock, password_method="pbkdf2:sha256:1000")
    try:
        assert instances.get_instance(fresh, old.id).deployment_version == 1
        item = [t for t in tasks.open_tasks_of_instance(fresh, old.id) if t.spec_id == "draft_contract"][0]
        tasks.complete(fresh, item.id, accounts.get_user(fresh, "rep1"), {
            "contract_no": "HT-V1", "contract_terms": "v1 terms",
            "payment_plan": [{"amount": "24000.00", "due_date": "2026-12-15"}], "sign_by": "2026-12-01"})
    finally:
        fresh.dispose()
    assert old.open_specs() == {"legal_contract_check"}


@pytest.mark.parametrize(("pattern", "refused"), [
    ("^(a+)+$", True),  # a repeat of a repeat
    ("^(a|aa)+$", True),  # overlapping alternatives under a repeat: 60 characters take hours
    ("^(?:CN|US)+$", True),  # alternatives under a repeat are refused whether they overlap or not
    ("^(a|b)+$", False),  # single characters: the parser makes it the class [ab]
    ("^[ab]+$", False),
    ("^(foo|bar){1,3}$", False),  # a bounded repeat
    ("^\\d{1,13}(\\.\\d{1,2})?$", False),  # the amounts of the real forms
])
def test_form_patterns_that_backtrack_exponentially_are_refused(pattern, refused):
    from workflows.engine.package import _backtracks

    assert _backtracks(pattern) is refused
