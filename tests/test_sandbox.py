"""The script sandbox: hostile input is refused (statically and at runtime), resource attacks are cut
short, and ordinary business expressions and scripts behave as under SpiffWorkflow's default engine."""

from __future__ import annotations

import re
import sys
import time
import timeit
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine.python_environment import TaskDataEnvironment
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from SpiffWorkflow.util.task import TaskState

from workflows.engine import sandbox
from workflows.engine.sandbox import (
    RestrictedEnvironment,
    SandboxViolation,
    ScriptLimitExceeded,
    check_expression,
    check_script,
    make_script_engine,
)


class Clock:
    """A controllable clock, as the engine injects one."""

    def __init__(self, current: datetime):
        self.current = current

    def __call__(self) -> datetime:
        return self.current


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 30, 20, 0, tzinfo=UTC))  # 2026-12-01 04:00 in Shanghai


@pytest.fixture
def env(clock: Clock) -> RestrictedEnvironment:
    return RestrictedEnvironment(clock)


def line_items() -> list[dict]:
    return [
        {"sku": "A-1", "qty": 2, "price": Decimal("10.50")},
        {"sku": "B-7", "qty": 3, "price": Decimal("3.335")},
    ]


# --------------------------------------------------------------------------------------------------
# Hostile corpus: refused by check_* and by evaluate/execute, before anything runs
# --------------------------------------------------------------------------------------------------

HOSTILE_EXPRESSIONS = [
    "__import__('os').system('id')",
    "().__class__.__mro__[1].__subclasses__()",
    "[c for c in ().__class__.__base__.__subclasses__()]",
    "getattr(1, '__class__')",
    "open('/etc/passwd').read()",
    "eval('1')",
    "exec('x=1')",
    "(lambda: 0).__globals__",
    "type(1)",
    "vars()",
    "globals()",
    "locals()",
    "'{0.__class__}'.format(1)",
    "'{x.__class__.__mro__}'.format_map({'x': 1})",
    "'{:{0.__class__}}'.format(1)",
    "(x for x in [1]).gi_frame",
    "Decimal.__dict__",
    "datetime.now()",
    "date.today()",
    "datetime.utcnow()",
    "money.__globals__['__builtins__']",
    "setattr(money, 'x', 1)",
    "compile('1', 'x', 'eval')",
    "breakpoint()",
    "input()",
    "help()",
    "memoryview(b'x')",
    "super()",
    "object.__subclasses__()",
    "dir()",
    "_getattr_(1, 'real')",
    "__builtins__",
    "'%*d' % (1000000000, 1)",
]

HOSTILE_SCRIPTS = [
    "import os",
    "from os import system",
    "import subprocess as sp",
    "while True: pass",
    "while True:\n    x = 1",
    "x = (i for i in [1])\ny = x.gi_frame",
    "y = Decimal.__dict__",
    "class A:\n    pass",
    "try:\n    x = 1\nexcept Exception:\n    pass",
    "global x\nx = 1",
    "def f():\n    yield 1",
    "def f():\n    x = 0\n    def g():\n        nonlocal x\n    return g",
    "@money\ndef f():\n    return 1",
    "items = []\nitems.append = 1",
    "print = 1",
    "_secret = 1",
    "raise SystemExit",
    "with open('x') as f:\n    pass",
    "x = 1\ny = x.__class__",
    "def f(__x):\n    return __x",
    "x = [y async for y in z]",
]


def _assert_refused_statically(problems: list[str]) -> None:
    assert problems, "expected the sandbox to refuse this"
    assert all(isinstance(p, str) and p.startswith("line ") for p in problems), problems


@pytest.mark.parametrize("source", HOSTILE_EXPRESSIONS)
def test_hostile_expression_refused_statically_and_at_runtime(env: RestrictedEnvironment,
                                                              source: str) -> None:
    _assert_refused_statically(check_expression(source))
    _assert_refused_statically(check_script(source))
    with pytest.raises(SandboxViolation):
        env.evaluate(source, {"hit": []})
    # as a script statement after a side effect: the side effect must never happen
    data = {"hit": []}
    with pytest.raises(SandboxViolation):
        env.execute(f"hit.append(1)\nmarker = 1\n{source}", data)
    assert data == {"hit": []}


@pytest.mark.parametrize("source", HOSTILE_SCRIPTS)
def test_hostile_script_refused_statically_and_at_runtime(env: RestrictedEnvironment, source: str) -> None:
    _assert_refused_statically(check_script(source))
    data = {"hit": []}
    with pytest.raises(SandboxViolation):
        env.execute(f"hit.append(1)\nmarker = 1\n{source}", data)
    assert data == {"hit": []}


def test_messages_name_the_construct() -> None:
    assert check_expression("().__class__") == [
        "line 1: names starting with '_' are not allowed: '__class__'"]
    assert check_script("import os") == ["line 1: 'import' statements are not allowed"]
    assert "use 'for ... in range(...)' instead" in check_script("x = 1\nwhile x:\n    x = 0")[0]
    assert check_script("x = 1\nwhile x:\n    x = 0")[0].startswith("line 2: 'while' loops are not allowed")
    assert check_expression("type(x)") == ["line 1: 'type' is not allowed"]
    assert "use now() or today()" in check_expression("datetime.now()")[0]
    assert "format fields may not look up attributes" in check_expression("'{0.__class__}'.format(1)")[0]
    with pytest.raises(SandboxViolation, match="names starting with '_' are not allowed: '__class__'"):
        RestrictedEnvironment(Clock(datetime(2026, 1, 1, tzinfo=UTC))).evaluate("x.__class__", {"x": 1})


@pytest.mark.parametrize("source", ["-" * 99_990 + "1", "a." * 49_000 + "b", "1+" * 49_000 + "1",
                                    "x = 1\n" * 20_000])
def test_huge_or_deep_sources_are_refused_not_crashing(env: RestrictedEnvironment, source: str) -> None:
    problems = check_script(source)
    assert len(problems) == 1 and "text" in problems[0]
    with pytest.raises(SandboxViolation):
        env.execute(source, {})


def test_syntax_errors_give_line_and_message(env: RestrictedEnvironment) -> None:
    problems = check_script("a = 1\nb = (2 +\n")
    assert len(problems) == 1 and problems[0].startswith("line 2: syntax error:")
    assert check_expression("amount >")[0].startswith("line 1: syntax error:")
    with pytest.raises(SyntaxError):
        env.evaluate("amount >", {"amount": 1})
    assert check_script("return 1")[0].startswith("line 1: syntax error:")
    assert check_script("a\x00b")[0].endswith("null bytes")


# --------------------------------------------------------------------------------------------------
# Runtime guards: constructs the static check cannot see
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "data", "message"), [
    ("fmt.format(1)", {"fmt": "{0.__class__}"}, "format fields may not look up attributes"),
    ("fmt.format(x=1)", {"fmt": "{x.__class__.__mro__}"}, "format fields may not look up attributes"),
    ("fmt.format_map({'a': [1]})", {"fmt": "{a[0]}"}, "format fields may not look up attributes"),
    ("str.format('{0.__class__}', 1)", {}, "'str.format' is not allowed"),
    ("(x for x in [1]).send(None)", {}, "'.send' cannot be used on a generator"),
    ("(x for x in [1]).close()", {}, "'.close' cannot be used on a generator"),
    ("{1: 2}.items().mapping", {}, "'.mapping' cannot be used on a value of type 'dict_items'"),
    ("money.x", {}, "'money.x' is not allowed"),
    ("len.x", {}, "'len.x' is not allowed"),
    ("(lambda: 1).x", {}, "'<lambda>.x' is not allowed"),
    ("d.keys().mapping", {"d": {"a": 1}}, "'.mapping' cannot be used"),
    ("(1).to_bytes(1000000000, 'big')", {}, "'.to_bytes' cannot be used on a whole number"),
    ("'abc'.translate({97: 'x' * 1000})", {}, "'.translate' cannot be used on text"),
    ("'abc'.encode('punycode')", {}, "'.encode' cannot be used on text"),
    ("datetime.fromtimestamp(0)", {}, "'datetime.fromtimestamp' is not allowed"),
    ("when.astimezone().tzinfo.utcoffset(when)", {"when": datetime(2026, 1, 1, tzinfo=UTC)},
     "cannot be used"),
    ("Decimal(1).as_integer_ratio()", {}, "'.as_integer_ratio' cannot be used on a decimal number"),
    ("money[0]", {}, "[...] cannot be used on a function"),
    ("int.mro()", {}, "'int.mro' is not allowed"),
    ("sum([[1], [2]], [])", {}, "sum() adds up numbers only"),
])
def test_runtime_guards(env: RestrictedEnvironment, source: str, data: dict, message: str) -> None:
    assert check_expression(source) == []
    with pytest.raises(SandboxViolation, match=re.escape(message)):
        env.evaluate(source, data)


@pytest.mark.parametrize("script", [
    "t = (1, 2)\nt[0] = 5",
    "s = 'abc'\ns[0] = 'x'",
    "when[0] = 1",
    "del t[0]",
])
def test_writes_only_to_lists_and_dicts(env: RestrictedEnvironment, script: str) -> None:
    with pytest.raises(SandboxViolation, match="cannot be changed"):
        env.execute(script, {"when": date(2026, 1, 1), "t": (1,)})


# --------------------------------------------------------------------------------------------------
# Resource attacks: refused quickly
# --------------------------------------------------------------------------------------------------

RESOURCE_ATTACKS = [
    ("'a' * 10**9", {}),
    ("[0] * 10**9", {}),
    ("10 ** 10 ** 10", {}),
    ("2 ** 100000", {}),
    ("1 << 10**9", {}),
    ("'x'.ljust(10**9)", {}),
    ("'x'.rjust(10**9, '-')", {}),
    ("'x'.center(10**9)", {}),
    ("'7'.zfill(10**9)", {}),
    ("'\\t'.expandtabs(10**9)", {}),
    ("'-'.join(['x' * 999999] * 5)", {}),
    ("'ab'.replace('', 'y' * 999999)", {}),
    ("list(range(10**9))", {}),
    ("range(10**20)", {}),
    ("f'{1:>{n}}'", {"n": 10**9}),
    ("fmt.format(1)", {"fmt": "{:>1000000000}"}),
    ("'{:{}}'.format(1, n)", {"n": 10**9}),
    ("fmt % 1", {"fmt": "%1000000000d"}),
    ("fmt % 1.5", {"fmt": "%.1000000000f"}),
    ("int(d)", {"d": Decimal("1e999999999")}),
    ("round(d)", {"d": Decimal("1e999999999")}),
    ("f'{d:f}'", {"d": Decimal("1e999999999")}),
    ("'{:f}'.format(d)", {"d": Decimal("-1e-999999999")}),
    ("'%d' % d", {"d": Decimal("1e999999999")}),
    ("int('9' * 100000)", {}),
    ("round(5, -10**9)", {}),
    ("x * x", {"x": 10**4000}),
    ("s + s", {"s": "x" * 999_999}),
    ("big.extend(big)", {"big": [0] * 999_999}),
    ("d ** Decimal('0.5')", {"d": Decimal("1." + "1" * 20_000)}),
]


@pytest.mark.parametrize(("source", "data"), RESOURCE_ATTACKS)
def test_resource_attacks_refused_quickly(env: RestrictedEnvironment, source: str, data: dict) -> None:
    started = time.perf_counter()
    with pytest.raises(ScriptLimitExceeded):
        env.evaluate(source, data)
    assert time.perf_counter() - started < 2


AMPLIFICATIONS = [
    ("str(x)", {"x": [[0] * 1000] * 1000}),  # 1,000 references to one list: a 3 MB repr
    ("f'{x}'", {"x": [[0] * 1000] * 1000}),
    ("f'{x!r}'", {"x": [[0] * 1000] * 1000}),
    ("'%s' % (x,)", {"x": [[0] * 1000] * 1000}),
    ("'{}'.format(x)", {"x": [[0] * 1000] * 1000}),
    ("'{!r}'.format(x)", {"x": [[0] * 1000] * 1000}),
    ("f'" + "{s}" * 100 + "'", {"s": "x" * 999_999}),
    ("[*l, *l]", {"l": list(range(60_000))}),
    ("max(*l, *l)", {"l": list(range(60_000))}),
    ("a | b", {"a": set(range(600_000)), "b": set(range(600_000, 1_200_000))}),
    ("a ^ b", {"a": set(range(600_000)), "b": set(range(-600_000, 0))}),
]


@pytest.mark.parametrize(("source", "data"), AMPLIFICATIONS)
def test_amplification_by_repr_join_unpacking_and_unions(env: RestrictedEnvironment, source: str,
                                                         data: dict) -> None:
    started = time.perf_counter()
    with pytest.raises(ScriptLimitExceeded):
        env.evaluate(source, data)
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("source", [
    "[" + "list(b), " * 60 + "]",
    "[" + "b[:], " * 60 + "]",
    "[" + "b.copy(), " * 60 + "]",
    "[" + "sorted(b), " * 60 + "]",
    "[" + "d | e, " * 60 + "]",
])
def test_many_copies_on_one_line_hit_the_memory_budget(clock: Clock, source: str) -> None:
    env = RestrictedEnvironment(clock, max_memory=48 * 2**20)
    data = {"b": [0] * 999_999, "d": dict.fromkeys(range(300_000)), "e": {-1: 0}}
    with pytest.raises(ScriptLimitExceeded, match="too much memory"):
        env.evaluate(source, data)


def test_deep_nesting_and_cycles_end_quickly(env: RestrictedEnvironment) -> None:
    with pytest.raises(ScriptLimitExceeded, match="too deeply"):
        env.execute("x = []\nfor i in range(5000):\n    x = [x]\ny = str(x)", {})
    started = time.perf_counter()
    with pytest.raises(ScriptLimitExceeded):
        env.execute("x = []\nx.append(x)\ny = str(x)", {})
    assert time.perf_counter() - started < 2


def test_constant_format_widths_refused_statically() -> None:
    assert "too large" in check_expression('f"{1:>1000000000}"')[0]
    assert "too large" in check_expression("'{:>1000000000}'.format(1)")[0]
    assert "too large" in check_expression("'%1000000000d' % 1")[0]
    assert check_expression('f"{amount:>12,.2f}"') == []


@pytest.mark.parametrize("script", [
    "for i in range(100000):\n  for j in range(100000):\n    x = i",
    "x = [i * j for i in range(100000) for j in range(100000)]",
    "x = sum(1 for i in range(1000) for j in range(1000))",
    "def f(n):\n    return f(n + 1)\nf(0)",
    "f = lambda n: f(n + 1)\nf(0)",
    "def f(n):\n    return 1 if n == 0 else f(n - 1) + f(n - 1)\nx = f(40)",
    "s = 'x' * 999999\nfor i in range(30):\n    s = s + s",
    "s = 'x' * 999999\nfor i in range(30):\n    s += s",
    "l = [0] * 999999\nfor i in range(30):\n    l *= 2",
    "x = 2\nfor i in range(100):\n    x = x * x",
    "x = 2\nfor i in range(100):\n    x *= x",
    "x = 3\nfor i in range(100):\n    x **= 2",
    "x = 1\nfor i in range(100):\n    x <<= 1000",
    "x = 2\nx **= 10**9",
    "l = [1]\nfor x in l:\n    l.append(x)",
    "l = [1]\nr = [l.append(x) for x in l]",
    "keep = []\nfor i in range(100000):\n    keep.append('x' * 999999)",
])
def test_loops_recursion_and_growth_are_bounded(clock: Clock, script: str) -> None:
    env = RestrictedEnvironment(clock, max_seconds=0.3, max_memory=64 * 2**20)
    started = time.perf_counter()
    with pytest.raises(ScriptLimitExceeded):
        env.execute(script, {})
    assert time.perf_counter() - started < 2


def test_limits_are_configurable(clock: Clock) -> None:
    small = RestrictedEnvironment(clock, max_iterations=10, max_size=100)
    assert small.evaluate("len([i for i in range(10)])", {}) == 10
    with pytest.raises(ScriptLimitExceeded, match="loops too much"):
        small.evaluate("[i for i in range(6)] + [i for i in range(6)]", {})
    with pytest.raises(ScriptLimitExceeded, match="too large"):
        small.evaluate("'x' * 101", {})
    assert small.evaluate("'x' * 100", {}) == "x" * 100


def test_tracer_is_restored(env: RestrictedEnvironment) -> None:
    previous = sys.gettrace()

    def outer_tracer(frame, event, arg):  # a stand-in for coverage or a debugger
        return None

    sys.settrace(outer_tracer)
    try:
        env.execute("x = [i for i in range(10)]", {})
        assert sys.gettrace() is outer_tracer
        with pytest.raises(ScriptLimitExceeded):
            env.execute("for i in range(100000):\n  for j in range(100000):\n    x = i", {})
        assert sys.gettrace() is outer_tracer
    finally:
        sys.settrace(previous)


# --------------------------------------------------------------------------------------------------
# What business scripts need
# --------------------------------------------------------------------------------------------------

def test_dmn_style_expressions(env: RestrictedEnvironment) -> None:
    data = {"customer_risk": "high", "amount": Decimal("1250000.00"), "region": "east"}
    assert env.evaluate('(customer_risk) == ("high")', data) is True
    assert env.evaluate("amount > 1000000", data) is True
    assert env.evaluate("(region) == (\"west\")", data) is False
    assert env.evaluate("dmninputexpr > 5", data, {"dmninputexpr": 7}) is True
    assert env.evaluate("dmninputexpr in ('low', 'medium')", data, {"dmninputexpr": "high"}) is False
    assert env.evaluate("5 < dmninputexpr < 10", data, {"dmninputexpr": 7}) is True
    assert env.evaluate("\n   amount >= 1000000\n", data) is True  # conditions as they come out of XML


def test_task_data_shadows_external_context_in_evaluate(env: RestrictedEnvironment) -> None:
    assert env.evaluate("x", {"x": 1}, {"x": 2}) == 1
    assert env.evaluate("y", {"x": 1}, {"y": 2}) == 2
    # as in TaskDataEnvironment, evaluate lets task data shadow a helper
    assert env.evaluate("date", {"date": "2026-01-01"}) == "2026-01-01"


def test_decimals_and_money(env: RestrictedEnvironment) -> None:
    assert env.evaluate("money('1.005')", {}) == Decimal("1.01")
    assert env.evaluate("money(2.675)", {}) == Decimal("2.68")  # via str(), not the binary float
    assert env.evaluate("money(10)", {}) == Decimal("10.00")
    assert env.evaluate("money(Decimal('3.14159'))", {}) == Decimal("3.14")
    assert env.evaluate("money('-0.125')", {}) == Decimal("-0.13")
    assert str(env.evaluate("money(x)", {"x": Decimal("7")})) == "7.00"
    assert env.evaluate("price.quantize(Decimal('0.1'))", {"price": Decimal("3.14159")}) == Decimal("3.1")
    assert env.evaluate("(price * 3).to_integral_value()", {"price": Decimal("2.5")}) == Decimal("8")
    assert env.evaluate("isinstance(price, Decimal) and isinstance(3, int) and isinstance(2.0, (int, float))",
                        {"price": Decimal("1")}) is True
    assert env.evaluate("int(Decimal('42.9')) + round(Decimal('2.5')) + round(2.567, 2)", {}) == 44 + 2.57
    types = "(list, dict, str, tuple, set, range, int)"
    assert env.evaluate(f"[isinstance(v, t) for v, t in zip(values, {types})]",
                        {"values": [[], {}, "", (), set(), range(1), 1]}) == [True] * 7
    assert env.evaluate("dict.fromkeys(['a'], 0) | dict(b=1)", {}) == {"a": 0, "b": 1}
    assert env.evaluate("str(b'x', 'ascii') + str(12) + str([1, 'a'])", {}) == "x12[1, 'a']"
    assert env.evaluate("sorted({3, 1, 2}, reverse=True) + list((4,)) + [len(set('aab'))]", {}) == \
        [3, 2, 1, 4, 2]
    fields = {"x": 1, "y": "a", "z": Decimal("1.25"), "w": "ab", "n": 4}
    assert env.evaluate("f'{x:>5}|{y!r}|{z}|{z:.1f}|{w:{n}}|'", fields) == "    1|'a'|1.25|1.2|ab  |"
    for bad in ("money('abc')", "money(None)", "money(True)", "money('NaN')"):
        with pytest.raises(ValueError, match="money"):
            env.evaluate(bad, {})


def test_dates_follow_the_injected_clock(env: RestrictedEnvironment, clock: Clock) -> None:
    assert env.evaluate("today()", {}) == "2026-12-01"
    assert env.evaluate("now()", {}) == "2026-12-01T04:00:00+08:00"
    assert env.evaluate("date_start('2026-12-01')", {}) == "2026-12-01T00:00:00+08:00"
    assert env.evaluate("date_start('2026-12-01', 30)", {}) == "2026-12-31T00:00:00+08:00"
    assert env.evaluate("date_start(d, days=-1)", {"d": date(2026, 12, 1)}) == "2026-11-30T00:00:00+08:00"
    assert env.evaluate("date_start(when)", {"when": datetime(2026, 11, 30, 20, 0, tzinfo=UTC)}) == \
        "2026-12-01T00:00:00+08:00"
    assert env.evaluate("date_start(today(), 7)", {}) == "2026-12-08T00:00:00+08:00"
    clock.current = datetime(2027, 2, 1, 15, 59, tzinfo=UTC)
    assert env.evaluate("today()", {}) == "2027-02-01"
    clock.current = datetime(2027, 2, 1, 16, 0, tzinfo=UTC)
    assert env.evaluate("today()", {}) == "2027-02-02"
    assert env.evaluate("(date.fromisoformat(today()) + timedelta(days=1)).isoformat()", {}) == "2027-02-03"
    assert env.evaluate("datetime.fromisoformat(now()).hour", {}) == 0
    assert env.evaluate("datetime.strptime('02.01.2026', '%d.%m.%Y').date().isoformat()", {}) == "2026-01-02"
    assert env.evaluate("f'{d:%d.%m.%Y}' + d.strftime(' %Y') + '{:%m}'.format(d)", {"d": date(2026, 1, 5)}) \
        == "05.01.2026 202601"
    with pytest.raises(ValueError, match="date_start"):
        env.evaluate("date_start('soon')", {})


def test_comprehensions_over_line_items(env: RestrictedEnvironment) -> None:
    data = {"lines": line_items()}
    assert env.evaluate("[l['qty'] * l['price'] for l in lines]", data) == [Decimal("21.00"),
                                                                             Decimal("10.005")]
    assert env.evaluate("{l['sku']: l.get('qty') for l in lines}", data) == {"A-1": 2, "B-7": 3}
    assert env.evaluate("money(sum(l['qty'] * l['price'] for l in lines))", data) == Decimal("31.01")
    assert env.evaluate("sorted(l['sku'].lower() for l in lines if l['qty'] > 2)", data) == ["b-7"]
    assert env.evaluate("[(i, sku) for i, sku in enumerate(l['sku'] for l in lines)]", data) == \
        [(0, "A-1"), (1, "B-7")]
    assert env.evaluate("max(lines, key=lambda l: l['price'])['sku']", data) == "A-1"
    assert env.evaluate("any(l.get('discount') for l in lines)", data) is False


def test_script_assigns_into_task_data_and_helpers_are_removed(env: RestrictedEnvironment) -> None:
    data = {"lines": line_items(), "customer": {"name": "acme", "tier": "gold"}}
    env.execute(
        "subtotal = sum(l['qty'] * l['price'] for l in lines)\n"
        "tax = money(subtotal * Decimal('0.13'))\n"
        "total = money(subtotal) + tax\n"
        "label = customer['name'].upper() + '-' + customer.get('tier', 'none')\n"
        "lines.append({'sku': 'FEE', 'qty': 1, 'price': Decimal('5.00')})\n"
        "summary = {}\n"
        "summary['count'] = len(lines)\n"
        "summary['count'] += 1\n"
        "a, (b, c) = 1, (2, 3)\n"
        "def double(x):\n"
        "    return x * 2\n"
        "doubled = double(21)\n"
        "pick = lambda l: l['sku']\n"
        "skus = list(map(pick, lines))\n"
        "gen = (x for x in skus)\n"
        "due = date_start('2026-12-01', 30)\n"
        "note = f'{total:,.2f} due {due[:10]}' + ' / %s' % 'ok'\n"
        "text = '{} x {qty}'.format('A-1', qty=2)\n"
        "print('debug output goes to the log', total)\n",
        data,
    )
    assert data["subtotal"] == Decimal("31.005")
    assert data["tax"] == Decimal("4.03")
    assert data["total"] == Decimal("35.04")
    assert data["label"] == "ACME-gold"
    assert data["summary"] == {"count": 4}
    assert (data["a"], data["b"], data["c"]) == (1, 2, 3)
    assert data["doubled"] == 42
    assert data["skus"] == ["A-1", "B-7", "FEE"]
    assert data["due"] == "2026-12-31T00:00:00+08:00"
    assert data["note"] == "35.04 due 2026-12-31 / ok"
    assert data["text"] == "A-1 x 2"
    for gone in ("double", "pick", "gen", "money", "Decimal", "date_start", "today", "now", "date",
                 "datetime", "timedelta", "__builtins__", "_getattr_", "_getiter_", "_write_"):
        assert gone not in data
    assert set(data) == {"lines", "customer", "subtotal", "tax", "total", "label", "summary", "a", "b", "c",
                         "doubled", "skus", "due", "note", "text"}


def test_execute_removes_external_context_and_cleans_up_after_errors(env: RestrictedEnvironment) -> None:
    data = {"x": 1}
    env.execute("y = x + extra", data, {"extra": 2})
    assert data == {"x": 1, "y": 3}
    data = {"x": 1}
    with pytest.raises(ZeroDivisionError):
        env.execute("y = 2\nz = x / 0", data)
    assert data == {"x": 1, "y": 2}
    with pytest.raises(ScriptLimitExceeded):
        env.execute("y = 3\nz = 'a' * 10**9", data)
    assert data == {"x": 1, "y": 3}


@pytest.mark.parametrize("name", ["money", "date", "now", "_getattr_", "__builtins__"])
def test_task_data_shadowing_a_helper_is_refused(env: RestrictedEnvironment, name: str) -> None:
    with pytest.raises(ValueError, match=f"named {name}") as info:
        env.execute("x = 1", {name: 5})
    assert "rename" in str(info.value)
    with pytest.raises(ValueError, match="named extra"):
        env.execute("x = 1", {"extra": 5}, {"extra": 6})


def test_defs_and_print_are_allowed(env: RestrictedEnvironment) -> None:
    data = {}
    env.execute("def fee(amount, rate=Decimal('0.02')):\n    return money(amount * rate)\n"
                "result = fee(Decimal('1000'))\nprint(result)", data)
    assert data == {"result": Decimal("20.00")}
    assert env.evaluate("print('x')", {}) is None


def test_compiled_code_is_cached(env: RestrictedEnvironment) -> None:
    source = "cache_probe_value + 1"
    before = sandbox._compile.cache_info()
    assert env.evaluate(source, {"cache_probe_value": 1}) == 2
    assert env.evaluate(source, {"cache_probe_value": 2}) == 3
    after = sandbox._compile.cache_info()
    assert after.hits >= before.hits + 1
    assert after.maxsize >= 2048


def test_simple_expressions_are_not_slower_than_the_default_engine(env: RestrictedEnvironment) -> None:
    default = TaskDataEnvironment()
    data = {"amount": Decimal("1250000.00"), "customer_risk": "high", "region": "east", "term": 12}

    def best(environment) -> float:
        return min(timeit.repeat(lambda: environment.evaluate("amount > 1000000", data), number=2000,
                                 repeat=5))

    assert best(env) < 1.5 * best(default)


# --------------------------------------------------------------------------------------------------
# Inside SpiffWorkflow
# --------------------------------------------------------------------------------------------------

BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="defs"
                  targetNamespace="http://lvyue.example/tests">
  <bpmn:process id="tiny" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="calc"/>
    <bpmn:scriptTask id="calc" name="Calculate"><bpmn:script>{script}</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="calc" targetRef="decide"/>
    <bpmn:exclusiveGateway id="decide" default="f4"/>
    <bpmn:sequenceFlow id="f3" sourceRef="decide" targetRef="big_end">
      <bpmn:conditionExpression>{condition}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f4" sourceRef="decide" targetRef="small_end"/>
    <bpmn:endEvent id="big_end"/>
    <bpmn:endEvent id="small_end"/>
  </bpmn:process>
</bpmn:definitions>
"""

GOOD_SCRIPT = """lines = [{'qty': 2, 'price': Decimal('60.00')}, {'qty': 1, 'price': Decimal('0.005')}]
total = money(sum(l['qty'] * l['price'] for l in lines))"""


def run_tiny_workflow(clock: Clock, script: str, condition: str = "total &gt; 100") -> BpmnWorkflow:
    parser = SpiffBpmnParser()
    parser.add_bpmn_str(BPMN.format(script=script, condition=condition).encode(), "tiny.bpmn")
    workflow = BpmnWorkflow(parser.get_spec("tiny"), script_engine=make_script_engine(clock))
    workflow.do_engine_steps()
    return workflow


def completed(workflow: BpmnWorkflow) -> set[str]:
    return {t.task_spec.name for t in workflow.get_tasks(state=TaskState.COMPLETED)}


def test_bpmn_script_task_and_gateway_run_in_the_sandbox(clock: Clock) -> None:
    workflow = run_tiny_workflow(clock, GOOD_SCRIPT)
    assert workflow.is_completed()
    assert "big_end" in completed(workflow) and "small_end" not in completed(workflow)
    assert workflow.data["total"] == Decimal("120.01")
    assert "money" not in workflow.data and "lines" in workflow.data

    workflow = run_tiny_workflow(clock, GOOD_SCRIPT, condition="total &gt; 1000")
    assert "small_end" in completed(workflow)


@pytest.mark.parametrize(("script", "condition", "cause", "line"), [
    ("x = 1\ny = ().__class__.__mro__[1].__subclasses__()", "True", SandboxViolation, 2),
    ("import os\nos.system('id')", "True", SandboxViolation, 1),
    ("x = 1\ny = 'a' * 10**9", "True", ScriptLimitExceeded, 2),
    ("total = 1", "__import__('os').system('id')", SandboxViolation, None),
    ("total = 1", "fmt.format(1)", SandboxViolation, None),
])
def test_hostile_bpmn_raises_workflow_task_exception_caused_by_the_violation(
        clock: Clock, script: str, condition: str, cause: type, line: int | None) -> None:
    if condition == "fmt.format(1)":
        script = "fmt = '{0.__class__}'"
    with pytest.raises(WorkflowTaskException) as info:
        run_tiny_workflow(clock, script, condition)
    error = info.value
    assert isinstance(error.__cause__, cause)
    assert error.exception is error.__cause__
    assert str(error.__cause__) in str(error)  # the readable message reaches the process owner
    assert error.error_type == cause.__name__
    if line is not None:
        assert error.line_number == line


def test_make_script_engine_passes_limits(clock: Clock) -> None:
    engine = make_script_engine(clock, max_seconds=0.5, max_iterations=50, max_size=1000)
    assert isinstance(engine.environment, RestrictedEnvironment)
    assert (engine.environment.max_seconds, engine.environment.max_iterations, engine.environment.max_size) \
        == (0.5, 50, 1000)
    assert engine.environment.evaluate("timedelta(days=2).days + len(range(50))", {}) == 52
    assert engine.environment.evaluate("datetime(2026, 1, 2) - timedelta(days=1)", {}) == datetime(2026, 1, 1)


@pytest.mark.parametrize(("script", "message"), [
    ("chunk = 'x' * 999999\nshared = [chunk] * 999999", "too large to be saved"),  # 8 MB in memory, 1 TB as JSON
    ("tree = [0]\nfor i in range(64):\n    tree = [tree, tree]", "too large to be saved"),
    ("deep = []\nfor i in range(1000):\n    deep = [deep]", "nested too deeply"),
    ("loop = []\nloop.append(loop)", "nested too deeply"),
])
def test_task_data_a_script_leaves_behind_is_bounded(env: RestrictedEnvironment, script: str, message: str) -> None:
    with pytest.raises(ScriptLimitExceeded, match=message):
        env.execute(script, {})


def test_an_expression_result_is_bounded_like_task_data(clock: Clock) -> None:
    env = RestrictedEnvironment(clock, max_data=1000)
    assert env.evaluate("[x] * 10", {"x": "y" * 50}) == ["y" * 50] * 10
    with pytest.raises(ScriptLimitExceeded, match="too large to be saved"):
        env.evaluate("[x] * 100", {"x": "y" * 50})
    env.execute("small = [1, 2, 3]", {})
    with pytest.raises(ScriptLimitExceeded, match="more than 1,000 characters"):
        env.execute("big = 'y' * 2000", {})


UNSAVEABLE = [  # script → what the process owner is told
    ("s = range(3)", "the script left 's' as a range, which cannot be saved; only text, numbers, amounts, dates, "
                     "lists and dicts can"),
    ("d = {'a': 1}\nk = d.keys()", "the script left 'k' as the keys of a dict (d.keys())"),
    ("d = {'a': 1}\nk = d.values()", "the script left 'k' as the values of a dict (d.values())"),
    ("d = {'a': 1}\nk = d.items()", "the script left 'k' as the items of a dict (d.items())"),
    ("s = {1, 2}", "the script left 's' as a set, which cannot be saved"),
    ("s = set()", "the script left 's' as a set"),
    ("g = [(x for x in range(3))]", "the script left a generator in g[0], which cannot be saved"),
    ("z = {'pairs': [1, zip([1], [2])]}", "the script left an iterator (zip) in z['pairs'][1]"),
    ("t = datetime(2026, 1, 1, 9).time()", "the script left 't' as a time"),
    ("x = ...", "the script left 'x' as '...'"),
    ("x = b'abc'", "the script left 'x' as bytes"),
    ("x = [1j]", "the script left a complex number in x[0]"),
    ("types = [1, Decimal]", "the script left the type 'Decimal' in types[1]"),
    ("def f():\n    return 1\nfs = {'f': f}", "the script left a function in fs['f']"),
    ("per_year = {2026: 'a'}", "the script left a dict with a whole number as a key in 'per_year', which cannot be "
                               "saved; the keys of a dict must be text"),
    ("x = [{'a': {date(2026, 1, 1): 1}}]", "the script left a dict with a date as a key in x[0]['a']"),
    ("x = float('nan')", "the script left 'x' as the number nan, which cannot be saved; numbers must be finite"),
    ("x = {'y': [1e308 * 10]}", "the script left the number inf in x['y'][0]"),
    ("x = -float('inf')", "the script left 'x' as the number -inf"),
]


@pytest.mark.parametrize(("script", "message"), UNSAVEABLE, ids=[s for s, _ in UNSAVEABLE])
def test_a_script_may_not_leave_values_the_codec_cannot_save(env: RestrictedEnvironment, script: str,
                                                             message: str) -> None:
    context = {"quantity": 3}
    with pytest.raises(SandboxViolation) as info:
        env.execute(script, context)
    assert not isinstance(info.value, ScriptLimitExceeded)  # a refusal, not a budget
    assert str(info.value) == message or str(info.value).startswith(message), str(info.value)
    # the same values are refused as an expression's result (a decision table's output, a message payload)
    expression = script.splitlines()[-1].split(" = ", 1)[1]
    if "def " not in script and "d." not in expression:
        with pytest.raises(SandboxViolation, match="^the expression's result (is|holds) "):
            env.evaluate(expression, {})


def test_saveable_task_data_passes_and_round_trips_through_the_codec(clock: Clock) -> None:
    from workflows.engine.codec import StateCodec

    script = """total = money(120)
kept = {'text': 'a', 'whole': 2, 'number': 1.5, 'yes': True, 'nothing': None, 'amount': Decimal('1.10'),
        'day': date(2026, 12, 1), 'moment': datetime(2026, 12, 1, 9, 30), 'span': timedelta(days=2, seconds=5),
        'rows': [[1, 2], {'deep': [{'a': 'b'}]}], 'pair': (1, 'two'), 'week': date(2026, 12, 1).isocalendar()}
left = sorted({3, 1, 2})
views = list({'a': 1}.items())
pairs = zip([1], [2])
half = 1 / 2"""
    workflow = run_tiny_workflow(clock, script)
    assert workflow.is_completed()
    end = workflow.get_tasks(spec_name="big_end")[0]
    assert "pairs" not in end.data  # an iterator left at the top is dropped, as before
    codec = StateCodec()
    restored = codec.loads(codec.dumps(workflow), workflow.spec, workflow.subprocess_specs,
                           make_script_engine(clock))
    again = restored.get_tasks(spec_name="big_end")[0].data
    kept = dict(end.data["kept"], pair=[1, "two"], week=[2026, 49, 2])  # tuples come back as lists
    assert again["kept"] == kept and type(again["kept"]["amount"]) is Decimal
    assert type(again["kept"]["moment"]) is datetime and type(again["kept"]["day"]) is date
    assert (again["left"], again["views"], again["half"]) == ([1, 2, 3], [["a", 1]], 0.5)


def test_conditions_that_give_plain_values_still_work(env: RestrictedEnvironment) -> None:
    data = {"a": [1, 2], "b": [2, 3], "d": {"x": 1}}
    assert env.evaluate("bool(set(a) & set(b))", data) is True
    assert env.evaluate("len(d.keys()) > 0 and 'x' in d.keys()", data) is True
    assert env.evaluate("sorted(set(a) | set(b))", data) == [1, 2, 3]
    with pytest.raises(SandboxViolation, match="the expression's result is a set"):
        env.evaluate("set(a) & set(b)", data)


def test_script_limits_come_from_the_environment(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    from workflows import config

    assert config.script_limits() == {}
    monkeypatch.setenv("LVYUE_SCRIPT_MAX_SECONDS", "0.25")
    monkeypatch.setenv("LVYUE_SCRIPT_MAX_MEMORY_MB", "64")
    monkeypatch.setenv("LVYUE_SCRIPT_MAX_DATA", "5000")
    limits = config.script_limits()
    assert limits == {"max_seconds": 0.25, "max_memory": 64 * 2**20, "max_data": 5000}
    engine = make_script_engine(clock, **limits)
    assert (engine.environment.max_seconds, engine.environment.max_memory, engine.environment.max_data) \
        == (0.25, 64 * 2**20, 5000)
    monkeypatch.setenv("LVYUE_SCRIPT_MAX_SIZE", "-1")
    with pytest.raises(ValueError, match="LVYUE_SCRIPT_MAX_SIZE must be a positive number"):
        config.script_limits()
