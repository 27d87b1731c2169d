"""The studio's check before deploy (workflows/studio/checks.py) on a corpus of broken packages: every check fires
on its own broken package with the element, file, line and severity the editor needs, the shipped processes pass,
warnings never block, a broken package never makes the check raise, and every message has a Chinese form."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from webapp.messages import localize_message
from workflows.engine.package import Problem, build_package
from workflows.services.accounts import ROLE_CODES
from workflows.services.deployments import collect_files
from workflows.studio import checks
from workflows.studio.checks import blocks_deploy, check_files

from .service_messages import ROOT, raised_messages

BROKEN = Path(__file__).parent / "studio" / "broken"
CJK = re.compile("[\u4e00-\u9fff]")

# case -> (code, severity, file, element id, element name, a text on the line the problem must point at)
CASES: dict[str, tuple[str, str, str, str | None, str | None, str | None]] = {
    "not_well_formed": ("xml", "error", "mini.bpmn", None, None, "</bpmn:scriptTsk>"),
    "schema_error": ("schema", "error", "mini.bpmn", "extra_approval", "Extra approval / 额外审批",
                     '<bpmn:approvalTask id="extra_approval"'),
    "outside_lane": ("outside_lane", "error", "mini.bpmn", "fill", "Fill in the order / 填写订单",
                     '<bpmn:userTask id="fill"'),
    "lane_without_role": ("lane_role", "error", "mini.bpmn", "Lane_manager", "Manager / 经理",
                          '<bpmn:lane id="Lane_manager"'),
    "unknown_role": ("lane_role", "error", "mini.bpmn", "Lane_manager", "Manager / 经理",
                     '<bpmn:lane id="Lane_manager"'),
    "missing_form": ("form", "error", "mini.bpmn", "approve", "Manager approval / 经理审批",
                     '<bpmn:userTask id="approve"'),
    "form_not_in_package": ("form", "error", "mini.bpmn", "approve", "Manager approval / 经理审批",
                            '<bpmn:userTask id="approve"'),
    "invalid_form_json": ("form", "error", "fill.schema.json", "fill", "Fill in the order / 填写订单",
                          '"unit_price": {"title"'),
    "invalid_form_schema": ("form", "error", "fill.schema.json", "fill", "Fill in the order / 填写订单", None),
    "bad_condition": ("expression", "error", "mini.bpmn", "f_gw_big", "Needed / 需要", "need_manager =="),
    "sandbox_script": ("expression", "error", "mini.bpmn", "calc", "Compute the total / 计算总额", "import os"),
    "bad_dmn_cell": ("expression", "error", "limits.dmn", "InputEntry_big_total", None, "__class__"),
    "bad_due_in": ("due", "error", "mini.bpmn", "fill", "Fill in the order / 填写订单", '<bpmn:userTask id="fill"'),
    "gateway_no_default": ("gateway_default", "warning", "mini.bpmn", "gw", "Manager needed? / 需经理审批？",
                           '<bpmn:exclusiveGateway id="gw"'),
    "unreachable": ("unreachable", "warning", "mini.bpmn", "archive", "Archive the order / 归档订单",
                    '<bpmn:userTask id="archive"'),
    "dmn_input_not_set": ("dmn_input", "warning", "limits.dmn", "Input_discount", "Discount % / 折扣 %",
                          "<text>discount_pct</text>"),
}


def load(case: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((BROKEN / case).iterdir())}


def line_of(case: str, file: str, text: str) -> int:
    lines = (BROKEN / case / file).read_text().splitlines()
    (found,) = [i for i, line in enumerate(lines, 1) if text in line]
    return found


def edited(case: str, file: str, *pairs: tuple[str, str]) -> dict[str, bytes]:
    files = load(case)
    text = files[file].decode()
    for old, new in pairs:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    files[file] = text.encode()
    return files


def test_the_corpus_has_one_package_per_check_besides_the_valid_base():
    assert sorted(p.name for p in BROKEN.iterdir() if p.is_dir()) == sorted([*CASES, "base"])
    base = load("base")
    for case in CASES:
        assert load(case) != base, f"{case} differs from the base package"


def test_the_base_package_is_valid_and_has_no_problem_at_all():
    files = load("base")
    assert build_package(files, known_roles=ROLE_CODES).process_key == "studio_mini"
    # it has what the reachability check must not flag: a boundary event, the task after it, an event subprocess
    text = files["mini.bpmn"].decode()
    assert 'attachedToRef="approve"' in text and 'triggeredByEvent="true"' in text
    assert check_files(files, ROLE_CODES) == []


@pytest.mark.parametrize("case", list(CASES))
def test_each_check_fires_on_its_broken_package(case):
    code, severity, file, element_id, element_name, marker = CASES[case]
    problems = check_files(load(case), ROLE_CODES)
    assert len(problems) == 1, [str(p) for p in problems]  # and nothing else: no false alarm in the package
    (problem,) = problems
    assert isinstance(problem, Problem)
    assert (problem.code, problem.severity, problem.file) == (code, severity, file), str(problem)
    assert (problem.element_id, problem.element_name) == (element_id, element_name), str(problem)
    if marker is not None:
        assert problem.line == line_of(case, file, marker), str(problem)
    assert blocks_deploy(problems) == (severity == "error")


def test_the_lint_messages_are_plain_sentences_with_the_element_name():
    (gateway,) = check_files(load("gateway_no_default"), ROLE_CODES)
    assert gateway.message == ("The gateway 'Manager needed? / 需经理审批？' has no default flow: if no condition is "
                               "true the contract stops here. Mark one outgoing flow as the default.")
    (dmn,) = check_files(load("dmn_input_not_set"), ROLE_CODES)
    assert "'discount_pct'" in dmn.message and "'Limits / 限额'" in dmn.message
    (schema,) = check_files(load("schema_error"), ROLE_CODES)
    assert "{http" not in schema.message and "Expected is" not in schema.message
    assert "'bpmn:approvalTask'" in schema.message


@pytest.mark.parametrize("process", ["quote_to_cash", "complaint"])
def test_the_shipped_processes_have_no_errors_and_no_warnings(process):
    files = collect_files(ROOT / "bpmn" / f"{process}.bpmn")
    problems = check_files(files, ROLE_CODES, process_key=process)
    assert [str(p) for p in problems if p.severity == "error"] == []
    # every decision gateway of the shipped processes has a default flow, every element is reached and the
    # approval matrix reads amount, discount_pct and customer_risk, which the quote form sets: no warning either
    assert [str(p) for p in problems] == []


def test_errors_come_first_then_warnings_in_a_stable_order():
    files = edited("gateway_no_default", "mini.bpmn", ("        <bpmn:flowNodeRef>fill</bpmn:flowNodeRef>\n", ""),
                   ('<bpmn:endEvent id="end_small" name="Done without approval / 无需审批完成" />',
                    '<bpmn:endEvent id="end_small" name="Done without approval / 无需审批完成" />\n'
                    '    <bpmn:task id="orphan" name="Orphan / 孤立" />'))
    problems = check_files(files, ROLE_CODES)
    assert [(p.severity, p.code, p.element_id) for p in problems] == [
        ("error", "outside_lane", "fill"), ("warning", "gateway_default", "gw"), ("warning", "unreachable", "orphan")]
    assert check_files(files, ROLE_CODES) == problems
    assert blocks_deploy(problems)
    assert not blocks_deploy([p for p in problems if p.severity == "warning"])


def test_a_boundary_event_is_reached_only_when_its_host_is():
    # without the flow into the manager's approval, it, its timer, the task after the timer and the ends go dark
    files = edited("base", "mini.bpmn",
                   ('''<bpmn:sequenceFlow id="f_gw_big" name="Needed / 需要" sourceRef="gw" targetRef="approve">
      <bpmn:conditionExpression>need_manager</bpmn:conditionExpression>
    </bpmn:sequenceFlow>''', ""))
    problems = check_files(files, ROLE_CODES)
    assert {p.element_id for p in problems} == {"approve", "approval_late", "approve_late", "end_big", "end_late"}
    assert {(p.code, p.severity) for p in problems} == {("unreachable", "warning")}


def test_an_event_subprocess_start_is_a_start_and_an_ordinary_unreached_subprocess_is_reported_once():
    files = edited("base", "mini.bpmn", (' triggeredByEvent="true"', ""),
                   ('<bpmn:startEvent id="cancel_received" name="Cancel received / 收到取消" isInterrupting="true">\n'
                    '        <bpmn:messageEventDefinition id="Msg_cancel_def" messageRef="Msg_cancel" />\n'
                    '      </bpmn:startEvent>',
                    '<bpmn:startEvent id="cancel_received" name="Cancel received / 收到取消" />'))
    problems = check_files(files, ROLE_CODES)
    assert [(p.code, p.element_id) for p in problems] == [("unreachable", "on_cancel")]


@pytest.mark.parametrize("expression, unset", [
    ("checked", []),  # set by the postScript of 'fill'
    ("need_manager", []),  # a decision's output
    ("customer_name", []),  # the start form
    ("len([q for q in line_items if q])", ["line_items"]),  # 'q' is bound by the comprehension
    ("money(total) > Decimal('1') and risk", ["risk"]),  # helpers are not variables
    ("(lambda v: v)(nothing)", ["nothing"]),
])
def test_dmn_inputs_are_checked_against_what_the_process_sets(expression, unset):
    files = edited("base", "limits.dmn", ("<text>customer_name.strip()</text>", f"<text>{expression}</text>"))
    problems = check_files(files, ROLE_CODES)
    assert [p.message.split("reads '")[1].split("'")[0] for p in problems] == unset
    assert all((p.code, p.severity, p.element_id) == ("dmn_input", "warning", "Input_customer") for p in problems)


def test_data_objects_and_script_loops_count_as_set():
    files = edited("base", "mini.bpmn",
                   ("<bpmn:script>total = quantity * unit_price</bpmn:script>",
                    "<bpmn:script>total = 0\nfor price in [unit_price] * quantity:\n    total += price</bpmn:script>"),
                   ('<bpmn:endEvent id="end_late" name="Chased / 已催办" />',
                    '<bpmn:endEvent id="end_late" name="Chased / 已催办" />\n'
                    '    <bpmn:dataObject id="region" name="Region / 区域" />'))
    files = {**files, "limits.dmn": files["limits.dmn"].replace(b"<text>customer_name.strip()</text>",
                                                                b"<text>region if price else None</text>")}
    assert check_files(files, ROLE_CODES) == []


def test_no_dmn_warning_while_a_bpmn_file_cannot_be_read():
    files = edited("dmn_input_not_set", "mini.bpmn", ("</bpmn:scriptTask>\n    <bpmn:sequenceFlow id=\"f_calc",
                                                      "</bpmn:scriptTsk>\n    <bpmn:sequenceFlow id=\"f_calc"))
    assert [p.code for p in check_files(files, ROLE_CODES)] == ["xml"]


def hostile_packages() -> list[tuple[str, dict[str, bytes]]]:
    base = load("base")
    packages = [
        ("empty", {}),
        ("empty bpmn", {"a.bpmn": b""}),
        ("bytes", {"a.bpmn": b"\xff\xfe\x00garbage", "b.dmn": b"\x00"}),
        ("only a form", {"fill.schema.json": base["fill.schema.json"]}),
        ("bare dmn", {**base, "limits.dmn": b'<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/"/>'}),
        ("json list", {**base, "fill.schema.json": b"[1, 2"}),
        ("too big", {**base, "big.schema.json": b" " * (3 * 1024 * 1024)}),
        ("flow to nowhere", {**base, "mini.bpmn": base["mini.bpmn"].replace(b'targetRef="calc"', b'targetRef="x"')}),
        ("folders in names", {f"some/folder/{k}": v for k, v in base.items()}),
    ]
    for folder in ("bad", "hostile"):
        for path in sorted((ROOT / "tests" / "bpmn" / folder).iterdir()):
            packages.append((f"{folder}/{path.name}", {**base, path.name: path.read_bytes()}))
    return packages


@pytest.mark.parametrize("name, files", hostile_packages(), ids=[n for n, _ in hostile_packages()])
def test_a_broken_package_never_makes_the_check_raise(name, files):
    problems = check_files(files, ROLE_CODES)
    assert all(isinstance(p, Problem) and p.severity in ("error", "warning") and p.code for p in problems)
    if name == "folders in names":
        assert problems == []
    elif name == "bad/unknown_element.bpmn":  # the flows through the unknown element are still followed
        assert [(p.code, p.element_id) for p in problems] == [("schema", "foo")]
    elif name == "bare dmn":
        assert [p.message for p in problems] == ["The file does not follow the DMN standard: Element "
                                                 "'dmn:definitions': The attribute 'name' is required but missing."]
    else:
        assert blocks_deploy(problems), [str(p) for p in problems]


def test_a_lint_that_crashes_finds_nothing_and_the_rest_still_runs(monkeypatch):
    def crash(*_args, **_kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(checks, "_unreachable", crash)
    problems = check_files(load("gateway_no_default"), ROLE_CODES)
    assert [p.code for p in problems] == ["gateway_default"]
    monkeypatch.setattr(checks, "build_package", crash)
    (problem,) = [p for p in check_files(load("base"), ROLE_CODES) if p.severity == "error"]
    assert problem.message == "The package could not be checked: bug"


def all_messages() -> list[str]:
    messages = [p.message for case in CASES for p in check_files(load(case), ROLE_CODES)]
    messages.append(next(p.message for p in check_files(
        edited("gateway_no_default", "mini.bpmn", ("<bpmn:conditionExpression>need_manager == False"
                                                    "</bpmn:conditionExpression>", "")), ROLE_CODES)
        if p.code == "bpmn"))
    return messages


def test_every_message_has_a_chinese_form():
    messages = all_messages()
    assert len(messages) > len(CASES)
    for message in messages:
        chinese = localize_message(message, "zh-CN")
        assert chinese != message and CJK.search(chinese), message
        assert localize_message(message, "en") == message
    # the sentences checks.py builds, read from its source, each have a pattern too
    from webapp.messages import _PATTERNS

    shapes = raised_messages("workflows/studio/checks.py", ("Problem",))
    assert len(shapes) >= 5
    assert [s for s in shapes if not any(p.match(s) for p, _ in _PATTERNS)] == []


@pytest.mark.parametrize("message, chinese", [
    ("The gateway 'Manager needed? / 需经理审批？' has no default flow: if no condition is true the contract stops "
     "here. Mark one outgoing flow as the default.", "网关「需经理审批？」"),
    ("'Archive the order / 归档订单' can never be reached: no path of sequence flows leads to it from a start event, "
     "so it never runs.", "「归档订单」永远不会执行"),
    ("The input 'Discount % / 折扣 %' of the decision table 'Limits / 限额' reads 'discount_pct', which no form, "
     "script or decision of this process sets: the decision may fail when it runs.",
     "决策表「限额」的输入「折扣 %」读取变量「discount_pct」"),
    ("this lane has no role (add the property 'role')", "该泳道没有角色"),
    ("unknown role 'approver'; known roles: manager, sales_rep", "未知角色「approver」"),
    ("this user task has no form (property 'formJsonSchemaFilename')", "该人工任务没有表单"),
    ("form file 'approval.schema.json' is not in the package", "表单文件「approval.schema.json」不在流程包中"),
    ("this user task is outside every lane, so no role can see it", "不在任何泳道中"),
    ("not well-formed XML: Opening and ending tag mismatch: a line 1 and b, line 2, column 3", "XML 格式错误"),
    ("condition: line 1: syntax error: invalid syntax", "条件第 1 行有语法错误"),
    ("script: line 1: 'import' statements are not allowed", "脚本不符合规则"),
    ("postScript: line 2: 'while' loops are not allowed", "后置脚本不符合规则"),
    ("DMN cell: line 1: names starting with '_' are not allowed: '__class__'", "决策表单元格不符合规则"),
    ("dueIn 'one day' is not an ISO 8601 duration such as P2D or PT8H", "dueIn「one day」不是 ISO 8601 时长"),
])
def test_chinese_uses_the_chinese_half_of_names(message, chinese):
    shown = localize_message(message, "zh-CN")
    assert shown.startswith(chinese) or chinese in shown, shown
    assert not re.search(r"Manager needed|Archive the order|Limits|Discount", shown)
