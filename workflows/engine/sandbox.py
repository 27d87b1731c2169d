"""The script sandbox: every expression and script a process package contains runs through here.

Why this exists
---------------
SpiffWorkflow's default ``PythonScriptEngine`` evaluates gateway conditions, script tasks, pre/post
scripts, DMN cells and timer expressions with ``eval``/``exec`` and Python's full builtins, so a BPMN
upload containing ``__import__('os').system('id')`` runs shell commands as the server. The recipe of
passing ``RestrictedPython.safe_globals`` to ``eval`` is escapable through
``().__class__.__mro__[1].__subclasses__()``.

What it does
------------
* **Static refusal.** Source is compiled with RestrictedPython (``compile_restricted_eval`` /
  ``compile_restricted_exec``) under our own policy (``_Policy``).  Refused before anything runs:
  ``import``, any name or attribute starting with ``_``, ``while``, ``try``, ``with``, ``raise``,
  ``global``/``nonlocal``, ``class``, ``yield``, ``async``, ``match``, decorators, attribute
  assignment, frame/code attributes (``gi_frame``, ``f_globals`` ...), ``.now``/``.today``/``.utcnow``
  (they would bypass the workflow clock), the names in ``FORBIDDEN_NAMES`` (``exec``, ``eval``,
  ``open``, ``getattr``, ``type``, ``vars`` ...), and constant format strings that look up attributes
  (``'{0.__class__}'.format(x)``) or ask for absurd widths (``f"{x:>1000000000}"``).
  ``def`` and ``lambda`` are allowed (without decorators or ``yield``); recursion is bounded.
  ``try`` is refused so that a script can never swallow a guard's exception.
* **Runtime guards.** Every attribute read goes through ``_getattr_``, which only allows the public
  attributes listed in ``_INSTANCE_ATTRS`` / ``_CLASS_ATTRS`` for the plain data types task data holds
  (str, numbers, Decimal, list, dict, set, tuple, date, datetime, time, timedelta).  Functions,
  generators, frames, modules and anything else have no readable attributes at all.  Subscripts,
  item writes (lists and dicts only), iteration and ``*unpacking`` are guarded too; ``str.format``
  runs through a formatter that refuses attribute/item look-ups in fields.
* **Resource bounds.** ``+ - * ** << % | & ^`` (and their augmented forms) and every f-string are
  rewritten into guarded calls that refuse, before computing it, a result larger than ``max_size``
  items or characters (integers: more than 4300 decimal digits, Python's own int/str conversion
  limit); so are ``range()``, the padding/joining/replacing string methods, ``list.extend``, format
  widths and precisions, and ``str()``/``repr()``/formatting of containers (shared references such as
  ``[big] * 1000`` would otherwise amplify).  Iterations (loops, comprehensions, ``*x``) are counted
  against ``max_iterations``.  A ``sys.settrace`` tracer reads the clock at every line and every call
  of a guard or builtin: it enforces the ``max_seconds`` budget, a call depth of ``MAX_CALL_DEPTH`` and,
  on Linux, a ``max_memory`` budget on the growth of the process's resident memory (sampled every
  ``MEMORY_CHECK_EVERY`` seconds).  Code that can neither loop nor call (most gateway conditions and
  DMN cells) runs without the tracer, which keeps it faster than the default engine.
* **Data bounds.** What a script leaves in the task data, and the value an expression returns, must
  serialize to at most ``max_data`` characters and nest at most ``MAX_DATA_DEPTH`` deep: shared
  references (``[big] * 999999``) cost nothing in memory but would be written out in full when the
  workflow is saved, exhausting the server's memory outside any budget.  And it must be data the codec
  saves and restores as it is (``_SAVED_SCALARS``: text, whole, finite and decimal numbers, true/false,
  None, dates, date-times, durations; lists, tuples and dicts with text keys of those): a range,
  ``d.keys()``, a set, a generator in a list, a time of day or a NaN is refused with a message naming the
  variable (``SandboxViolation``), instead of failing later when the step is saved.
* **Only whitelisted builtins** (``_SAFE_BUILTINS``: abs all any bool dict enumerate filter float int
  isinstance len list map max min range reversed round set sorted str sum tuple zip; those that copy
  or convert are thin wrappers, ``isinstance`` maps them back to the types) and the helpers
  ``Decimal``, ``money``, ``date_start``, ``today``, ``now``, ``date``, ``datetime``, ``timedelta``.
  ``today()``/``now()`` read the injected clock; ``datetime.now``/``date.today`` are unreachable.
  ``print`` is accepted; its output goes to this module's logger at DEBUG level, truncated.

Errors: static refusals and guard trips raise ``SandboxViolation`` (budgets: ``ScriptLimitExceeded``)
with a message meant for a process owner, not a programmer.  ``make_script_engine`` returns a
``PythonScriptEngine`` whose ``WorkflowTaskException`` carries the original error as ``exception`` and
``__cause__``.
"""

from __future__ import annotations

import ast
import functools
import logging
import math
import operator
import os
import re
import string
import sys
import time
import types
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, tzinfo
from datetime import time as dtime
from decimal import ROUND_HALF_UP, Context, Decimal, DecimalException
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from RestrictedPython import compile_restricted_eval, compile_restricted_exec
from RestrictedPython.transformer import (
    INSPECT_ATTRIBUTES,
    IOPERATOR_TO_STR,
    RestrictingNodeTransformer,
    copy_locations,
)
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine.python_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment
from SpiffWorkflow.exceptions import SpiffWorkflowException

__all__ = [
    "SandboxViolation",
    "ScriptLimitExceeded",
    "RestrictedEnvironment",
    "RestrictedScriptEngine",
    "check_expression",
    "check_script",
    "make_script_engine",
]

log = logging.getLogger(__name__)

FILENAME = "<string>"  # SpiffWorkflow looks for this name in tracebacks to report the failing line
MAX_SOURCE_CHARS = 100_000
MAX_INT_DIGITS = 4300  # the same bound CPython puts on int <-> str conversion
MAX_INT_BITS = int(MAX_INT_DIGITS * math.log2(10))
MAX_POW_DIGITS = 1000
MAX_CALL_DEPTH = 50
MEMORY_CHECK_EVERY = 0.002  # seconds
MAX_FORMAT_SPEC = 200
MAX_STRFTIME_FORMAT = 1000
MAX_PRINT_CHARS = 2000
DEFAULT_MAX_SIZE = 1_000_000
DEFAULT_MAX_DATA = 8_000_000  # characters of task data a script may leave behind (about its size when saved)
MAX_DATA_DEPTH = 100  # nesting of the task data a script may leave behind
CACHE_SIZE = 4096


class SandboxViolation(Exception):
    """A script or expression was refused, before running (statically) or while running (a guard).

    ``problems`` lists every reason (static checks report them all at once); ``line_number`` is the
    line of the first one when known.
    """

    def __init__(self, message: str, problems: list[str] | None = None, line_number: int | None = None):
        super().__init__(message)
        self.problems = list(problems) if problems else [message]
        self.line_number = line_number


class ScriptLimitExceeded(SandboxViolation):
    """A time, iteration, depth, memory or size budget was exceeded."""


# ---------------------------------------------------------------------------------------------------
# Static policy
# ---------------------------------------------------------------------------------------------------

# Not provided anyway (unknown names are NameErrors), but refused up front with a clear message.
FORBIDDEN_NAMES = frozenset({
    "exec", "eval", "compile", "open", "getattr", "setattr", "delattr", "hasattr", "vars", "globals",
    "locals", "type", "object", "super", "breakpoint", "input", "help", "memoryview", "dir", "__import__",
})
CLOCK_ATTRS = frozenset({"now", "today", "utcnow"})

_NODE_WORDS = {
    "Import": "'import' statements",
    "ImportFrom": "'import' statements",
    "While": "'while' loops",
    "Global": "'global' statements",
    "Nonlocal": "'nonlocal' statements",
    "ClassDef": "class definitions",
    "Try": "'try' blocks",
    "TryStar": "'try' blocks",
    "With": "'with' blocks",
    "AsyncWith": "'async with' blocks",
    "Raise": "'raise' statements",
    "Yield": "'yield' expressions",
    "YieldFrom": "'yield from' expressions",
    "AsyncFunctionDef": "'async def' functions",
    "AsyncFor": "'async for' loops",
    "Await": "'await' expressions",
    "Match": "'match' statements",
    "AnnAssign": "type-annotated assignments",
}

_NODE_HINTS = {
    "While": "use 'for ... in range(...)' instead",
    "Raise": "to stop with an error, use: assert condition, \"message\"",
    "Try": "check values with 'if' instead",
}

# Code without these nodes cannot loop or call anything, and code with at most MAX_UNTRACED_OPS of the
# operations that may allocate in proportion to an operand is evaluated without the tracer (fast path).
_LOOPY_NODES = (ast.Call, ast.For, ast.comprehension, ast.Lambda, ast.FunctionDef, ast.Starred,
                ast.JoinedStr)
_ALLOCATING_NODES = (ast.BinOp, ast.Subscript, ast.Attribute, ast.AugAssign)
MAX_UNTRACED_OPS = 8

_BINOP_GUARDS = {
    ast.Add: "_add_",
    ast.Mult: "_mul_",
    ast.Pow: "_pow_",
    ast.LShift: "_lshift_",
    ast.Mod: "_mod_",
    ast.Sub: "_sub_",
    ast.BitOr: "_or_",
    ast.BitAnd: "_and_",
    ast.BitXor: "_xor_",
}

_DIGITS_RE = re.compile(r"\d+")


def _number_problem(digits: str, max_size: int, what: str) -> str | None:
    if len(digits) > 9 or int(digits) > max_size:
        shown = digits if len(digits) <= 12 else digits[:12] + "..."
        return f"{what} {shown} is too large (the limit is {max_size:,})"
    return None


def _spec_problem(spec: str, max_size: int) -> str | None:
    """A problem with a format specification such as '>10', ',.2f' or '%Y-%m-%d', or None."""
    if len(spec) > MAX_FORMAT_SPEC:
        return f"format specifications longer than {MAX_FORMAT_SPEC} characters are not allowed"
    for match in _DIGITS_RE.finditer(spec):
        problem = _number_problem(match.group(), max_size, "format width or precision")
        if problem:
            return problem
    return None


def _format_string_problems(fmt: str, max_size: int, nested: bool = False) -> list[str]:
    """Problems with a str.format() template: attribute/item look-ups in fields, huge widths."""
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError as exc:
        return [f"invalid format text: {exc}"]
    problems = []
    for _literal, field, spec, _conversion in parsed:
        if field is None:
            continue
        if "." in field or "[" in field:
            problems.append(f"format fields may not look up attributes or items: '{{{field}}}'")
        if spec:
            if "{" in spec:
                if not nested:
                    problems.extend(_format_string_problems(spec, max_size, nested=True))
            else:
                problem = _spec_problem(spec, max_size)
                if problem:
                    problems.append(problem)
    return problems


def _percent_problems(fmt: str, max_size: int) -> list[str]:
    """Problems with the widths and precisions of a %-format (a linear scan: no regex backtracking)."""
    problems = []
    i, n = 0, len(fmt)
    while (i := fmt.find("%", i)) >= 0:
        i += 1
        if i < n and fmt[i] == "(":  # a mapping key, possibly with nested parentheses
            depth, i = 1, i + 1
            while i < n and depth:
                depth += {"(": 1, ")": -1}.get(fmt[i], 0)
                i += 1
        while i < n and fmt[i] in "-+ #0":
            i += 1
        for part in ("width", "precision"):
            if part == "precision":
                if i >= n or fmt[i] != ".":
                    break
                i += 1
            if i < n and fmt[i] == "*":
                problems.append("'*' widths or precisions in %-formatting are not allowed")
                i += 1
                continue
            start = i
            while i < n and "0" <= fmt[i] <= "9":
                i += 1
            if i > start:
                problem = _number_problem(fmt[start:i], max_size, "format width or precision")
                if problem:
                    problems.append(problem)
        i += 1  # the conversion character (or the second '%' of '%%')
    return problems


def _name(node_id: str, ctx: ast.expr_context, like: ast.AST) -> ast.Name:
    new = ast.Name(node_id, ctx)
    copy_locations(new, like)
    return new


def _call(func: str, args: list[ast.expr], like: ast.AST) -> ast.Call:
    new = ast.Call(func=ast.Name(func, ast.Load()), args=args, keywords=[])
    copy_locations(new, like)
    return new


class _Policy(RestrictingNodeTransformer):
    """RestrictedPython's transformer, stricter, with friendly messages and allocation guards."""

    max_size = DEFAULT_MAX_SIZE

    # -- messages -----------------------------------------------------------------------------------
    def error(self, node: ast.AST, info: str) -> None:
        lineno = getattr(node, "lineno", None)
        self.errors.append(f"line {lineno}: {info}" if lineno else info)

    def warn(self, node: ast.AST, info: str) -> None:  # RestrictedPython's warnings are not useful here
        pass

    def not_allowed(self, node: ast.AST) -> None:
        kind = type(node).__name__
        hint = _NODE_HINTS.get(kind)
        message = f"{_NODE_WORDS.get(kind, kind + ' constructs')} are not allowed"
        self.error(node, f"{message}; {hint}" if hint else message)

    def check_name(self, node: ast.AST, name: str | None, allow_magic_methods: bool = False) -> None:
        if name is None:
            return
        if name.startswith("_") and name != "_":
            self.error(node, f"names starting with '_' are not allowed: '{name}'")
        elif name in FORBIDDEN_NAMES or (name == "print" and not isinstance(getattr(node, "ctx", None),
                                                                           ast.Load)):
            self.error(node, f"'{name}' is not allowed")

    # -- names and attributes -----------------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id == "print" and isinstance(node.ctx, ast.Load):
            return _name("_print_", ast.Load(), node)
        self.check_name(node, node.id)
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        attr = node.attr
        if attr.startswith("_"):
            self.error(node, f"names starting with '_' are not allowed: '{attr}'")
        elif attr in INSPECT_ATTRIBUTES:
            self.error(node, f"'.{attr}' is not allowed")
        elif attr in CLOCK_ATTRS:
            self.error(node, f"'.{attr}' is not allowed: use now() or today(), which follow the workflow "
                             "clock")
        if not isinstance(node.ctx, ast.Load):
            self.error(node, f"changing attributes is not allowed ('.{attr}')")
            return node
        node = self.node_contents_visit(node)
        return _call("_getattr_", [node.value, ast.Constant(attr)], node)

    # -- calls, operators, formatting ---------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr in ("format", "format_map")
                and isinstance(func.value, ast.Constant) and isinstance(func.value.value, str)):
            for problem in _format_string_problems(func.value.value, self.max_size):
                self.error(node, problem)
        needs_apply = any(isinstance(a, ast.Starred) for a in node.args) or any(
            k.arg is None for k in node.keywords)
        node = self.node_contents_visit(node)
        if needs_apply:
            node.args.insert(0, node.func)
            node.func = _name("_apply_", ast.Load(), node)
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        guard = _BINOP_GUARDS.get(type(node.op))
        if guard == "_mod_" and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
            for problem in _percent_problems(node.left.value, self.max_size):
                self.error(node, problem)
        node = self.node_contents_visit(node)
        if guard is None:
            return node
        return _call(guard, [node.left, node.right], node)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        op = IOPERATOR_TO_STR[type(node.op)]
        target = node.target
        if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Slice):
            self.error(node, "augmented assignment to a slice is not allowed")
            return node
        node = self.node_contents_visit(node)
        target = node.target
        if isinstance(target, ast.Name):
            new: ast.stmt = ast.Assign(
                targets=[_name(target.id, ast.Store(), node)],
                value=_call("_inplacevar_",
                            [ast.Constant(op), _name(target.id, ast.Load(), node), node.value], node))
        elif isinstance(target, ast.Subscript):
            # target.value is already wrapped in _write_(...) by visit_Subscript
            new = ast.Expr(_call("_inplaceitem_", [target.value, target.slice, ast.Constant(op), node.value],
                                 node))
        else:  # attributes: already reported by visit_Attribute
            return node
        copy_locations(new, node)
        return new

    def visit_FormattedValue(self, node: ast.FormattedValue) -> ast.AST:
        spec = node.format_spec
        if spec is not None and isinstance(spec, ast.JoinedStr) and all(
                isinstance(v, ast.Constant) for v in spec.values):
            problem = _spec_problem("".join(str(v.value) for v in spec.values), self.max_size)
            if problem:
                self.error(node, problem)
        node = self.node_contents_visit(node)
        spec = node.format_spec if node.format_spec is not None else ast.Constant("")
        return _call("_format_", [node.value, ast.Constant(node.conversion), spec], node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        # f'a{x}b{y}' becomes _fjoin_(('a', _format_(x, -1, ''), 'b', _format_(y, -1, ''))), so that the
        # total length is checked before the parts are joined
        node = self.node_contents_visit(node)
        parts = ast.Tuple(elts=list(node.values), ctx=ast.Load())
        copy_locations(parts, node)
        return _call("_fjoin_", [parts], node)

    # -- statements ---------------------------------------------------------------------------------
    def visit_Starred(self, node: ast.Starred) -> ast.AST:
        node = self.node_contents_visit(node)
        if isinstance(node.ctx, ast.Load):  # *x in a call or display: counted like a loop over x
            node.value = _call("_getiter_", [node.value], node)
        return node

    def visit_comprehension(self, node: ast.comprehension) -> ast.AST:
        if node.is_async:
            self.error(node.target, "'async for' loops are not allowed")
        return super().visit_comprehension(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        if node.decorator_list:
            self.error(node, "decorators are not allowed")
        self.check_name(node, node.name)
        self.check_function_argument_names(node)
        return self.node_contents_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self.not_allowed(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.not_allowed(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.not_allowed(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.not_allowed(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.not_allowed(node)

    def visit_Try(self, node: ast.Try) -> None:
        self.not_allowed(node)

    def visit_With(self, node: ast.With) -> None:
        self.not_allowed(node)

    def visit_Raise(self, node: ast.Raise) -> None:
        self.not_allowed(node)

    def visit_Yield(self, node: ast.Yield) -> None:
        self.not_allowed(node)

    def visit_YieldFrom(self, node: ast.YieldFrom) -> None:
        self.not_allowed(node)


@functools.lru_cache(maxsize=16)
def _policy_for(max_size: int) -> type[_Policy]:
    return type(f"_Policy{max_size}", (_Policy,), {"max_size": max_size})


class _Compiled:
    __slots__ = ("code", "problems", "syntax_error", "needs_trace", "line_number")

    def __init__(self, code=None, problems=(), syntax_error=None, needs_trace=False, line_number=None):
        self.code = code
        self.problems = tuple(problems)
        self.syntax_error = syntax_error  # args to rebuild a SyntaxError with, for the runtime
        self.needs_trace = needs_trace
        self.line_number = line_number


def _syntax_problem(exc: SyntaxError) -> _Compiled:
    where = f"line {exc.lineno}: " if exc.lineno else ""
    return _Compiled(problems=[f"{where}syntax error: {exc.msg}"],
                     syntax_error=(exc.msg, (FILENAME, exc.lineno, exc.offset, exc.text)),
                     line_number=exc.lineno)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compile(source: str, mode: str, max_size: int) -> _Compiled:
    if not isinstance(source, str):
        raise TypeError(f"expected the source text as a string, got {type(source).__name__}")
    if mode == "eval":
        source = source.strip()
    if len(source) > MAX_SOURCE_CHARS:
        return _Compiled(problems=[f"the text is too long ({len(source):,} characters; the limit is "
                                   f"{MAX_SOURCE_CHARS:,})"])
    try:
        tree = ast.parse(source, FILENAME, mode)
    except SyntaxError as exc:
        return _syntax_problem(exc)
    except (RecursionError, MemoryError):
        return _Compiled(problems=["the text is nested too deeply to be read"])
    except ValueError as exc:  # e.g. NUL characters
        return _Compiled(problems=[f"the text cannot be read: {exc}"])
    allocating = 0
    needs_trace = False
    for node in ast.walk(tree):
        if isinstance(node, _LOOPY_NODES):
            needs_trace = True
            break
        if isinstance(node, _ALLOCATING_NODES):
            allocating += 1
    needs_trace = needs_trace or allocating > MAX_UNTRACED_OPS
    compiler = compile_restricted_eval if mode == "eval" else compile_restricted_exec
    try:
        result = compiler(tree, FILENAME, policy=_policy_for(max_size))
    except SyntaxError as exc:  # raised by compile() itself, e.g. 'return' outside a function
        return _syntax_problem(exc)
    except (RecursionError, MemoryError):
        return _Compiled(problems=["the text is nested too deeply"])
    if result.errors:
        first = re.match(r"line (\d+):", result.errors[0])
        return _Compiled(problems=result.errors, line_number=int(first.group(1)) if first else None)
    return _Compiled(code=result.code, needs_trace=needs_trace)


def check_expression(source: str) -> list[str]:
    """Problems that keep ``source`` from running as a sandboxed expression; empty if it is fine."""
    return list(_compile(source, "eval", DEFAULT_MAX_SIZE).problems)


def check_script(source: str) -> list[str]:
    """Problems that keep ``source`` from running as a sandboxed script; empty if it is fine."""
    return list(_compile(source, "exec", DEFAULT_MAX_SIZE).problems)


# ---------------------------------------------------------------------------------------------------
# Runtime guards
# ---------------------------------------------------------------------------------------------------

_KINDS = {
    str: "text", int: "a whole number", bool: "a true/false value", float: "a number",
    Decimal: "a decimal number", list: "a list", dict: "a dictionary", tuple: "a tuple", set: "a set",
    frozenset: "a set", type(None): "None", date: "a date", datetime: "a date-time", dtime: "a time",
    timedelta: "a duration", range: "a range", bytes: "bytes", types.FunctionType: "a function",
    types.BuiltinFunctionType: "a built-in function", types.MethodType: "a method",
    types.GeneratorType: "a generator", types.ModuleType: "a module",
}


def _kind(obj: Any) -> str:
    if isinstance(obj, type):
        return f"the type '{obj.__name__}'"
    return _KINDS.get(type(obj)) or f"a value of type '{type(obj).__name__}'"


def _too_large(count: int, limit: int, what: str = "items") -> ScriptLimitExceeded:
    return ScriptLimitExceeded(f"the result would be too large ({count:,} {what}; the limit is {limit:,})")


def _units(obj: Any) -> str:
    if isinstance(obj, str):
        return "characters"
    return "bytes" if isinstance(obj, bytes | bytearray) else "items"


def _number_too_large() -> ScriptLimitExceeded:
    return ScriptLimitExceeded(f"the result would be a number with more than {MAX_INT_DIGITS:,} digits")


def _check_decimal(value: Decimal, limit: int) -> None:
    """Refuse Decimals whose plain (non-scientific) rendering or integer value would be huge."""
    if value.is_finite() and (value.adjusted() > limit or -value.as_tuple().exponent > limit):
        raise ScriptLimitExceeded(f"the decimal number {value} is too large to convert")


_SEQUENCES = (str, bytes, bytearray, list, tuple)


# Guarded methods: factories called as factory(guards, obj) that return the callable handed to the script.
def _padding(name: str) -> Callable[[_Guards, str], Callable[..., str]]:
    def factory(g: _Guards, s: str) -> Callable[..., str]:
        method = getattr(s, name)

        def guarded(width: int, *args: Any) -> str:
            if isinstance(width, int) and width > g.max_size:
                raise _too_large(width, g.max_size, "characters")
            return method(width, *args)

        return guarded

    return factory


def _str_join(g: _Guards, sep: str) -> Callable[[Any], str]:
    def join(iterable: Any) -> str:
        items = iterable if isinstance(iterable, list | tuple) else list(iterable)
        try:
            total = sum(map(len, items)) + len(sep) * max(len(items) - 1, 0)
        except TypeError:
            return sep.join(items)  # raises the usual, readable TypeError
        if total > g.max_size:
            raise _too_large(total, g.max_size, "characters")
        return sep.join(items)

    return join


def _str_replace(g: _Guards, s: str) -> Callable[..., str]:
    def replace(old: str, new: str, count: int = -1) -> str:
        if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
            hits = s.count(old) if old else len(s) + 1
            if isinstance(count, int) and count >= 0:
                hits = min(hits, count)
            total = len(s) + hits * (len(new) - len(old))
            if total > g.max_size:
                raise _too_large(total, g.max_size, "characters")
        return s.replace(old, new, count)

    return replace


def _str_expandtabs(g: _Guards, s: str) -> Callable[..., str]:
    def expandtabs(tabsize: int = 8) -> str:
        if isinstance(tabsize, int):
            total = len(s) + s.count("\t") * max(tabsize, 0)
            if total > g.max_size:
                raise _too_large(total, g.max_size, "characters")
        return s.expandtabs(tabsize)

    return expandtabs


def _str_format(g: _Guards, s: str) -> Callable[..., str]:
    def format(*args: Any, **kwargs: Any) -> str:
        return g.formatter.vformat(s, args, kwargs)

    return format


def _str_format_map(g: _Guards, s: str) -> Callable[[Any], str]:
    def format_map(mapping: Any) -> str:
        return g.formatter.vformat(s, (), mapping)

    return format_map


def _list_extend(g: _Guards, lst: list) -> Callable[[Any], None]:
    def extend(iterable: Any) -> None:
        try:
            total = len(lst) + len(iterable)
        except TypeError:
            total = 0
        if total > g.max_size:
            raise _too_large(total, g.max_size)
        lst.extend(iterable)

    return extend


def _strftime(g: _Guards, obj: date | dtime) -> Callable[[str], str]:
    def strftime(fmt: str) -> str:
        if isinstance(fmt, str) and len(fmt) > MAX_STRFTIME_FORMAT:
            raise ScriptLimitExceeded(
                f"date formats longer than {MAX_STRFTIME_FORMAT} characters are not allowed")
        return obj.strftime(fmt)

    return strftime


def _strptime(g: _Guards, cls: type[datetime]) -> Callable[[str, str], datetime]:
    # datetime.strptime imports _strptime through the calling frame's builtins: call it from here
    def strptime(text: str, fmt: str) -> datetime:
        if isinstance(fmt, str) and len(fmt) > MAX_STRFTIME_FORMAT:
            raise ScriptLimitExceeded(
                f"date formats longer than {MAX_STRFTIME_FORMAT} characters are not allowed")
        return cls.strptime(text, fmt)

    return strptime


def _attrs(names: str, **guarded: Any) -> dict[str, Any]:
    table: dict[str, Any] = dict.fromkeys(names.split())
    table.update(guarded)
    return table


_STR_ATTRS = _attrs(
    "capitalize casefold count endswith find index isalnum isalpha isascii isdecimal isdigit isidentifier "
    "islower isnumeric isprintable isspace istitle isupper lower lstrip partition removeprefix removesuffix "
    "rfind rindex rpartition rsplit rstrip split splitlines startswith strip swapcase title upper",
    center=_padding("center"), ljust=_padding("ljust"), rjust=_padding("rjust"), zfill=_padding("zfill"),
    expandtabs=_str_expandtabs, join=_str_join, replace=_str_replace, format=_str_format,
    format_map=_str_format_map,
)
_INT_ATTRS = _attrs("as_integer_ratio bit_count bit_length conjugate denominator imag numerator real")
_DATE_ATTRS = _attrs("year month day replace toordinal weekday isoweekday isocalendar isoformat ctime",
                     strftime=_strftime)
_SET_READ = "copy difference intersection isdisjoint issubset issuperset symmetric_difference union"
_TUPLE_ATTRS = _attrs("count index")

_INSTANCE_ATTRS: dict[type, dict[str, Any]] = {
    str: _STR_ATTRS,
    int: _INT_ATTRS,
    bool: _INT_ATTRS,
    float: _attrs("as_integer_ratio conjugate hex imag is_integer real"),
    Decimal: _attrs(
        "adjusted as_tuple canonical compare compare_signal compare_total compare_total_mag conjugate "
        "copy_abs copy_negate copy_sign exp fma imag is_canonical is_finite is_infinite is_nan is_normal "
        "is_qnan is_signed is_snan is_subnormal is_zero ln log10 logb max max_mag min min_mag next_minus "
        "next_plus next_toward normalize number_class quantize radix real remainder_near rotate "
        "same_quantum scaleb shift sqrt to_eng_string to_integral to_integral_exact to_integral_value"),
    list: _attrs("append clear copy count index insert pop remove reverse sort", extend=_list_extend),
    dict: _attrs("clear copy get items keys pop popitem setdefault update values"),
    tuple: _TUPLE_ATTRS,
    set: _attrs(_SET_READ + " add clear discard pop remove update difference_update intersection_update "
                "symmetric_difference_update"),
    frozenset: _attrs(_SET_READ),
    range: _attrs("start stop step count index"),
    date: _DATE_ATTRS,
    datetime: {**_DATE_ATTRS, **_attrs(
        "hour minute second microsecond tzinfo fold date time timetz astimezone utcoffset dst tzname "
        "timestamp")},
    dtime: _attrs("hour minute second microsecond tzinfo fold replace isoformat utcoffset dst tzname",
                  strftime=_strftime),
    timedelta: _attrs("days seconds microseconds total_seconds"),
    type(Decimal(0).as_tuple()): _attrs("sign digits exponent count index"),
    type(date(2000, 1, 1).isocalendar()): _attrs("year week weekday count index"),
}
_CLASS_ATTRS: dict[type, dict[str, Any]] = {
    datetime: _attrs("fromisoformat combine fromordinal fromisocalendar min max resolution",
                     strptime=_strptime),
    date: _attrs("fromisoformat fromordinal fromisocalendar min max resolution"),
    timedelta: _attrs("min max resolution"),
    dict: _attrs("fromkeys"),
}
_NO_ATTRS: dict[str, Any] = {}
_CALLABLE_TYPES = (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)
_ITEM_TYPES = frozenset({dict, list, tuple, str, range, bytes})
_ITEM_BASES = (dict, list, tuple, str)

_INPLACE_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
    ">>=": operator.irshift, "|=": operator.ior, "^=": operator.ixor, "&=": operator.iand,
    "@=": operator.imatmul,
}


def _attr_table(obj: Any) -> dict[str, Any]:
    cls = type(obj)
    table = _INSTANCE_ATTRS.get(cls)
    if table is not None:
        return table
    if cls is type:
        return _CLASS_ATTRS.get(obj, _NO_ATTRS)
    for base in cls.__mro__[1:]:  # subclasses of the data types (they come from application code)
        table = _INSTANCE_ATTRS.get(base)
        if table is not None:
            return table
    return _NO_ATTRS


_CONTAINERS = (list, tuple, set, frozenset, dict)
_NUMBERS = frozenset({int, float, Decimal, bool})
_CHEAP_INPLACE = frozenset({"+=", "-=", "/=", "//=", "%="})  # on numbers: results no bigger than inputs
_SHORT_TEXT = frozenset({str, int, float, bool, type(None), date, datetime, dtime, timedelta})
_DICT_VIEWS = frozenset({type({}.keys()), type({}.values()), type({}.items())})


def _text_size(obj: Any, limit: int) -> int:
    """About how many characters str()/repr() of ``obj`` produces; stops counting above ``limit``.

    Shared references are counted every time they occur, as repr() prints them every time: that is
    how ``str([big] * 1000)`` would amplify.  Cycles only make the count grow, so it always ends.
    """
    total = 0
    stack = [obj]
    while stack:
        item = stack.pop()
        cls = type(item)
        if cls is str:
            total += len(item) + 3
        elif cls is list or cls is tuple or cls is set or cls is frozenset:
            total += 2 + 2 * len(item)
            stack.extend(item)
        elif cls is dict:
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif cls is int:
            total += item.bit_length() // 3 + 2
        elif cls is Decimal:
            total += len(item.as_tuple().digits) + 16
        elif isinstance(item, _CONTAINERS) or type(item) in _DICT_VIEWS:  # subclasses, d.keys() ...
            total += 12 + 4 * len(item)
            if isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            else:
                stack.extend(item)
        elif isinstance(item, bytes | bytearray):
            total += 4 * len(item) + 3
        else:
            total += 48
        if total > limit:
            break
    return total


class _Guards:
    """The environment-wide guard functions the rewritten code calls (names ending in '_'), and the
    builtins that need a limit."""

    def __init__(self, max_size: int, max_iterations: int):
        self.max_size = max_size
        self.max_iterations = max_iterations
        self.formatter = _SafeFormatter(self)

    # -- access ---------------------------------------------------------------------------------------
    def getattr(self, obj: Any, name: str) -> Any:
        table = _INSTANCE_ATTRS.get(type(obj))
        if table is None:
            if type(obj) is types.FunctionType and obj in _WRAPPED_TYPES:
                obj = _WRAPPED_TYPES[obj]  # dict.fromkeys: the script's `dict` is a wrapper
            table = _attr_table(obj)
        guard = table.get(name, _NO_ATTRS)
        if guard is None:
            return getattr(obj, name)
        if guard is _NO_ATTRS or name.startswith("_"):
            if isinstance(obj, _CALLABLE_TYPES):  # the script's own names for these are their names
                raise SandboxViolation(f"'{obj.__name__.strip('_')}.{name}' is not allowed")
            raise SandboxViolation(f"'.{name}' cannot be used on {_kind(obj)}")
        return guard(self, obj)

    def getitem(self, obj: Any, key: Any) -> Any:
        if type(obj) in _ITEM_TYPES or isinstance(obj, _ITEM_BASES):
            return obj[key]
        raise SandboxViolation(f"[...] cannot be used on {_kind(obj)}")

    def write(self, obj: Any) -> Any:
        if isinstance(obj, dict | list):
            return obj
        raise SandboxViolation(f"{_kind(obj)} cannot be changed")

    # -- operators ------------------------------------------------------------------------------------
    def check_add(self, a: Any, b: Any) -> None:
        if isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES):
            total = len(a) + len(b)
            if total > self.max_size:
                raise _too_large(total, self.max_size, _units(a))

    def check_union(self, a: Any, b: Any) -> None:  # set | set, set ^ set, dict | dict
        if isinstance(a, set | frozenset | dict) and isinstance(b, set | frozenset | dict):
            total = len(a) + len(b)
            if total > self.max_size:
                raise _too_large(total, self.max_size)

    def check_mul(self, a: Any, b: Any) -> None:
        if isinstance(b, int):
            if isinstance(a, _SEQUENCES):
                if len(a) * b > self.max_size:
                    raise _too_large(len(a) * b, self.max_size, _units(a))
            elif isinstance(a, int) and a.bit_length() + b.bit_length() > MAX_INT_BITS:
                raise _number_too_large()
        elif isinstance(a, int) and isinstance(b, _SEQUENCES) and len(b) * a > self.max_size:
            raise _too_large(len(b) * a, self.max_size, _units(b))

    def check_pow(self, a: Any, b: Any) -> None:
        if isinstance(a, int) and isinstance(b, int):
            if b > 1 and a not in (-1, 0, 1) and b * math.log2(abs(a)) > MAX_INT_BITS:
                raise _number_too_large()
        elif isinstance(a, Decimal) or isinstance(b, Decimal):
            # libmpdec's non-integer power takes seconds on operands with thousands of digits
            for operand in (a, b):
                if isinstance(operand, Decimal) and len(operand.as_tuple().digits) > MAX_POW_DIGITS:
                    raise ScriptLimitExceeded(
                        f"'**' on decimal numbers with more than {MAX_POW_DIGITS:,} digits is not allowed")

    def check_lshift(self, a: Any, b: Any) -> None:
        if isinstance(a, int) and isinstance(b, int) and a and b > 0 and a.bit_length() + b > MAX_INT_BITS:
            raise _number_too_large()

    def check_mod(self, a: Any, b: Any) -> None:
        if isinstance(a, str | bytes):
            text = a if isinstance(a, str) else a.decode("latin-1")
            if "%" not in text:
                return
            problems = _percent_problems(text, self.max_size)
            if problems:
                raise ScriptLimitExceeded(problems[0])
            self.check_text(b)
            for value in b.values() if isinstance(b, dict) else b if isinstance(b, tuple) else (b,):
                if isinstance(value, Decimal):
                    _check_decimal(value, MAX_INT_DIGITS)  # %d converts to int

    def add(self, a: Any, b: Any) -> Any:
        self.check_add(a, b)
        return a + b

    def sub(self, a: Any, b: Any) -> Any:
        return a - b  # a call only so that a traced run sees an event between copies of sets

    def or_(self, a: Any, b: Any) -> Any:
        self.check_union(a, b)
        return a | b

    def and_(self, a: Any, b: Any) -> Any:
        return a & b

    def xor(self, a: Any, b: Any) -> Any:
        self.check_union(a, b)
        return a ^ b

    def mul(self, a: Any, b: Any) -> Any:
        self.check_mul(a, b)
        return a * b

    def pow(self, a: Any, b: Any) -> Any:
        self.check_pow(a, b)
        return a**b

    def lshift(self, a: Any, b: Any) -> Any:
        self.check_lshift(a, b)
        return a << b

    def mod(self, a: Any, b: Any) -> Any:
        self.check_mod(a, b)
        return a % b

    def inplacevar(self, op: str, x: Any, y: Any) -> Any:
        if op in _CHEAP_INPLACE and type(x) in _NUMBERS and type(y) in _NUMBERS:
            return _INPLACE_OPS[op](x, y)  # the common `total += amount`
        check = self._inplace_checks.get(op)
        if check is not None:
            check(self, x, y)
        return _INPLACE_OPS[op](x, y)

    _inplace_checks: dict[str, Callable[[_Guards, Any, Any], None]] = {
        "+=": check_add, "*=": check_mul, "**=": check_pow, "<<=": check_lshift, "%=": check_mod,
        "|=": check_union, "^=": check_union,
    }

    def inplaceitem(self, obj: Any, key: Any, op: str, value: Any) -> None:
        obj[key] = self.inplacevar(op, self.getitem(obj, key), value)

    # -- text -----------------------------------------------------------------------------------------
    def check_text(self, value: Any) -> None:
        """Refuse values whose str()/repr() would exceed max_size characters."""
        if isinstance(value, _CONTAINERS) or type(value) is Decimal or type(value) in _DICT_VIEWS:
            size = _text_size(value, self.max_size)
            if size > self.max_size:
                raise _too_large(size, self.max_size, "characters")

    def check_format(self, value: Any, spec: str) -> None:
        if spec:
            problem = _spec_problem(spec, self.max_size)
            if problem:
                raise ScriptLimitExceeded(problem)
        if isinstance(value, Decimal):
            _check_decimal(value, self.max_size)
        self.check_text(value)

    def convert(self, value: Any, conversion: int | str | None) -> Any:
        if conversion in (-1, None):
            return value
        self.check_text(value)
        if conversion in (114, "r"):
            return repr(value)
        if conversion in (115, "s"):
            return str(value)
        if conversion in (97, "a"):
            return ascii(value)
        raise ValueError(f"unknown conversion '!{conversion}'")

    def fjoin(self, parts: tuple[str, ...]) -> str:
        """The parts of an f-string, joined."""
        total = sum(map(len, parts))
        if total > self.max_size:
            raise _too_large(total, self.max_size, "characters")
        return "".join(parts)

    def format(self, value: Any, conversion: int, spec: str) -> str:
        """An f-string field: f'{value!conversion:spec}'."""
        if conversion == -1 and not spec and type(value) in _SHORT_TEXT:
            return value if type(value) is str else format(value)
        value = self.convert(value, conversion)
        self.check_format(value, spec)
        return format(value, spec)

    # -- builtins that need a limit ---------------------------------------------------------------------
    def str_(self, *args: Any, **kwargs: Any) -> str:
        if len(args) == 1 and not kwargs and type(args[0]) not in _SHORT_TEXT:
            self.check_text(args[0])
        return str(*args, **kwargs)

    def range_(self, *args: Any) -> range:
        result = range(*args)
        try:
            n = len(result)
        except OverflowError:
            n = sys.maxsize
        if n > self.max_iterations:
            raise _too_large(n, self.max_iterations, "numbers in range()")
        return result


class _SafeFormatter(string.Formatter):
    """str.format without attribute/item look-ups in fields and with bounded widths and sizes."""

    def __init__(self, guards: _Guards):
        self.guards = guards

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        if "." in field_name or "[" in field_name:
            raise SandboxViolation(f"format fields may not look up attributes or items: '{{{field_name}}}'")
        return super().get_field(field_name, args, kwargs)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        return self.guards.convert(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        self.guards.check_format(value, format_spec)
        return format(value, format_spec)


def _apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


_THIS_FILE = _apply.__code__.co_filename


def _unpack_sequence(it: Any, spec: Any, getiter: Any) -> Any:
    return it  # Python unpacks natively; `it` holds at most what the script could already reach


def _plain_getiter(ob: Any) -> Any:
    return ob


def _iter_unpack_sequence(it: Any, spec: Any, getiter: Callable[[Any], Any]) -> Any:
    return getiter(it)


def _print(*args: Any, sep: Any = " ", end: Any = "\n", **_ignored: Any) -> None:
    if log.isEnabledFor(logging.DEBUG):
        parts = [str(a) if _text_size(a, MAX_PRINT_CHARS) <= MAX_PRINT_CHARS else "<too long to show>"
                 for a in args]
        log.debug("script output: %s", str(sep).join(parts)[:MAX_PRINT_CHARS])


# -- builtins -----------------------------------------------------------------------------------------
# Python functions rather than the C types, so that a traced run sees an event at every call (a copy of
# a big container is then never far from a memory check); isinstance() maps them back to the types.

def _int(x: Any = 0, *args: Any, **kwargs: Any) -> int:
    if isinstance(x, Decimal):
        _check_decimal(x, MAX_INT_DIGITS)
    elif isinstance(x, str | bytes | bytearray) and len(x) > MAX_INT_DIGITS + 100:
        raise ScriptLimitExceeded(f"numbers written with more than {MAX_INT_DIGITS:,} digits are not allowed")
    return int(x, *args, **kwargs)


def _list(iterable: Any = ()) -> list:
    return list(iterable)


def _tuple(iterable: Any = ()) -> tuple:
    return tuple(iterable)


def _set(iterable: Any = ()) -> set:
    return set(iterable)


def _dict(*args: Any, **kwargs: Any) -> dict:
    return dict(*args, **kwargs)


def _sorted(iterable: Any, *, key: Any = None, reverse: bool = False) -> list:
    return sorted(iterable, key=key, reverse=reverse)


def _round(number: Any, ndigits: Any = None) -> Any:
    if ndigits is None:
        if isinstance(number, Decimal):
            _check_decimal(number, MAX_INT_DIGITS)
        return round(number)
    if isinstance(ndigits, int) and abs(ndigits) > MAX_INT_DIGITS:
        raise ScriptLimitExceeded(f"round() to more than {MAX_INT_DIGITS:,} digits is not allowed")
    return round(number, ndigits)


def _sum(iterable: Any, start: Any = 0) -> Any:
    if not isinstance(start, int | float | Decimal | timedelta):
        raise SandboxViolation(
            "sum() adds up numbers only; use ''.join(...) or a comprehension for text and lists")
    return sum(iterable, start)


_WRAPPED_TYPES: dict[Any, type] = {_int: int, _list: list, _tuple: tuple, _set: set, _dict: dict}

_SAFE_BUILTINS: dict[str, Any] = {
    "None": None, "True": True, "False": False,
    "abs": abs, "all": all, "any": any, "bool": bool, "dict": _dict, "enumerate": enumerate,
    "filter": filter, "float": float, "int": _int, "len": len, "list": _list, "map": map, "max": max,
    "min": min, "reversed": reversed, "round": _round, "set": _set, "sorted": _sorted, "sum": _sum,
    "tuple": _tuple, "zip": zip,
}

_INTERNAL_NAMES = frozenset({
    "_getattr_", "_getitem_", "_getiter_", "_write_", "_inplacevar_", "_inplaceitem_", "_add_", "_sub_",
    "_mul_", "_pow_", "_lshift_", "_mod_", "_or_", "_and_", "_xor_", "_format_", "_fjoin_", "_apply_",
    "_unpack_sequence_", "_iter_unpack_sequence_", "_print_", "__builtins__",
})


# -- memory ----------------------------------------------------------------------------------------------

try:
    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):  # pragma: no cover - not Linux
    _PAGE_SIZE = 0


# What the codec (workflows/engine/codec.py) saves and restores as it was: JSON's own types, and the types it
# registers converters for (by exact class, so no subclasses of these). Sets would come back as lists, dict
# keys other than text as text, and anything else (a range, d.keys(), a generator inside a list, a time of
# day, bytes, a complex number ...) cannot be written at all. Floats must be finite: the codec would keep NaN
# and infinities, but the API would then send them as JSON that JSON parsers refuse.
_SAVED_SCALARS = frozenset({bool, int, type(None), Decimal, date, datetime, timedelta, UUID})
_SAVEABLE = "only text, numbers, amounts, dates, lists and dicts can"
_DATA_KINDS = {
    type({}.keys()): "the keys of a dict (d.keys())", type({}.values()): "the values of a dict (d.values())",
    type({}.items()): "the items of a dict (d.items())", complex: "a complex number", type(...): "'...'",
    map: "an iterator (map)", filter: "an iterator (filter)", zip: "an iterator (zip)",
    enumerate: "an iterator (enumerate)", type(iter([])): "an iterator", type(reversed([])): "an iterator",
}


def _data_kind(obj: Any) -> str:
    return _DATA_KINDS.get(type(obj)) or _kind(obj)


class _Unsaveable(Exception):
    """Internal: ``_measure`` found a value the codec cannot save (``key``: as a dict key)."""

    def __init__(self, value: Any, key: bool) -> None:
        super().__init__()
        self.value = value
        self.key = key


def _check_data(value: Any, limit: int, names: bool = False) -> None:
    """Refuse ``value`` as task data: ``SandboxViolation`` if the codec cannot save it as it is (a range, a set,
    d.keys(), a generator in a list, a dict key that is not text ...), ``ScriptLimitExceeded`` if it is too
    large or nested too deeply to be saved.

    ``names``: ``value`` is the task data a script left behind (a dict of variables), and the message names the
    variable. Counted like ``_text_size`` (shared references each time they occur, as JSON writes them), and
    iterative, so that neither a cycle nor a deep nesting can exhaust the stack here. One pass does both
    checks: it runs after every script and on every expression's result."""
    cls = type(value)
    if cls is bool or cls is int or value is None or (cls is float and math.isfinite(value)):
        return
    if cls is str:
        if len(value) > limit:
            raise ScriptLimitExceeded(f"the result is too large to be saved (more than {limit:,} characters)")
        return
    try:
        problem = _measure(value, limit)
    except _Unsaveable as bad:
        raise SandboxViolation(_unsaveable_message(value, bad, names)) from None
    if problem == "deep":
        raise ScriptLimitExceeded(f"the data is nested too deeply to be saved (more than {MAX_DATA_DEPTH} levels)")
    if problem == "large":
        raise ScriptLimitExceeded(f"the script's data is too large to be saved (more than {limit:,} characters)")


def _measure(value: Any, limit: int) -> str | None:
    """'deep', 'large' or None; raises ``_Unsaveable`` at the first value (or dict key) the codec cannot save."""
    total = 0
    stack = [(value, 1)]
    pop, push, extend = stack.pop, stack.append, stack.extend
    scalars, isfinite = _SAVED_SCALARS, math.isfinite
    while stack:
        item, depth = pop()
        if depth > MAX_DATA_DEPTH:
            return "deep"
        cls = type(item)
        if cls is str:
            total += len(item) + 3
        elif cls is float:
            if not isfinite(item):
                raise _Unsaveable(item, key=False)
            total += 24
        elif cls in scalars:
            total += item.bit_length() // 3 + 2 if cls is int else (
                len(item.as_tuple().digits) + 16 if cls is Decimal else 24)
        elif cls is dict or (cls is not list and cls is not tuple and isinstance(item, dict)):
            total += 2 + 4 * len(item)
            depth += 1
            for k, v in item.items():
                if type(k) is not str:
                    raise _Unsaveable(k, key=True)
                total += len(k)
                push((v, depth))
        elif cls is list or cls is tuple or isinstance(item, list | tuple):  # a namedtuple is written as a list
            total += 2 + 2 * len(item)
            depth += 1
            extend([(v, depth) for v in item])
        elif isinstance(item, str | int | float) and not isinstance(item, Decimal | date | timedelta):
            total += 48  # subclasses of text and numbers (from application code): JSON writes them as such
        else:
            raise _Unsaveable(item, key=False)
        if total > limit:
            return "large"
    return None


def _unsaveable_message(value: Any, bad: _Unsaveable, names: bool) -> str:
    """Where ``bad.value`` sits in ``value`` (task data when ``names``) and why it cannot be saved."""
    path = _path_to(value, bad.value, bad.key, names)
    kind = _data_kind(bad.value)
    allowed = _SAVEABLE
    if type(bad.value) is float and not bad.key:
        kind = f"the number {bad.value!r}"
        allowed = "numbers must be finite"
    subject = "the script left" if names else "the expression's result is"
    # a variable of the script ('rows'), or somewhere inside one (rows[2]['when'])
    where = f"'{path}'" if names and path and "[" not in path else path or ("a variable" if names else "")
    if bad.key:
        what = f"a dict with {kind} as a key" + (f" in {where}" if where else "")
        return f"{subject} {what}, which cannot be saved; the keys of a dict must be text"
    if names and "[" not in path:
        return f"the script left {where} as {kind}, which cannot be saved; {allowed}"
    if names:
        return f"the script left {kind} in {where}, which cannot be saved; {allowed}"
    if path:
        return f"the expression's result holds {kind} (at {path}), which cannot be saved; {allowed}"
    # a gateway condition is an expression too: its result may become data (a decision's output), so it is
    # checked like any other; the way out for a condition is to say what it means
    return (f"the expression's result is {kind}, which cannot be saved; {allowed} "
            "(a condition can say bool(...) or len(...) > 0)")


def _path_to(root: Any, target: Any, as_key: bool, names: bool, budget: int = 100_000) -> str:
    """A Python-like path (``rows[2]['when']``) to ``target`` in ``root`` (found by identity); '' for ``root``
    itself or when not found within ``budget`` steps. Only ever run when a script already failed."""
    if target is root and not as_key:
        return ""
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack and budget > 0:
        item, path = stack.pop()
        budget -= 1
        if isinstance(item, dict):
            for k, v in item.items():
                if as_key and k is target:
                    return path
                sub = k if names and not path else f"{path}[{_short_repr(k)}]"
                if v is target and not as_key:
                    return sub
                stack.append((v, sub))
        elif isinstance(item, list | tuple):
            for i, v in enumerate(item):
                sub = f"{path}[{i}]"
                if v is target and not as_key:
                    return sub
                stack.append((v, sub))
    return ""


def _short_repr(key: Any) -> str:
    text = repr(key) if isinstance(key, str) else "…"
    return text if len(text) <= 40 else text[:37] + "…'"


def _resident_bytes() -> int | None:
    """The process's current resident memory (Linux), or None where it cannot be read cheaply."""
    if not _PAGE_SIZE:
        return None  # pragma: no cover
    try:
        fd = os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:  # pragma: no cover
        return None
    try:
        return int(os.read(fd, 128).split()[1]) * _PAGE_SIZE
    finally:
        os.close(fd)


class _Run:
    """State of one evaluate/execute call: budgets, counters and the tracer."""

    __slots__ = ("env", "deadline", "next_check", "iterations", "depth", "violation", "rss_base", "local")

    def __init__(self, env: RestrictedEnvironment):
        self.env = env
        self.iterations = 0
        self.depth = 0
        self.violation: SandboxViolation | None = None
        self.rss_base: int | None = None
        self.deadline = self.next_check = 0.0

    def fail(self, exc: SandboxViolation) -> SandboxViolation:
        if self.violation is None:
            self.violation = exc
        return exc

    # -- iteration ------------------------------------------------------------------------------------
    def getiter(self, ob: Any) -> Any:
        if self.violation is not None:  # the tracer tripped, but something swallowed its exception
            raise self.violation
        try:
            n = len(ob)
        except TypeError:
            return self._counted(ob)
        self.iterations += n
        if self.iterations > self.env.max_iterations:
            raise self.fail(self._too_many())
        return ob

    def _counted(self, ob: Any) -> Iterator[Any]:
        limit = self.env.max_iterations
        for item in ob:
            self.iterations += 1
            if self.iterations > limit:
                raise self.fail(self._too_many())
            yield item

    def _too_many(self) -> ScriptLimitExceeded:
        return ScriptLimitExceeded(
            f"the script loops too much (more than {self.env.max_iterations:,} iterations in all)")

    # -- tracing --------------------------------------------------------------------------------------
    # Every Python-level event (a line of the script, a call of a guard, helper or wrapped builtin) reads
    # the clock; budgets are checked when it passes `next_check`, i.e. at least every MEMORY_CHECK_EVERY
    # seconds, which bounds how much a script can allocate between two memory checks.
    def trace(self, frame: types.FrameType, event: str, arg: Any) -> Any:
        """Global trace function: called for every new Python frame ('call' events)."""
        filename = frame.f_code.co_filename
        if filename == FILENAME:
            if time.perf_counter() > self.next_check:
                self.check_budgets()
            self.depth += 1
            if self.depth > MAX_CALL_DEPTH:
                raise self.fail(ScriptLimitExceeded(
                    f"functions call each other too deeply (more than {MAX_CALL_DEPTH} levels)"))
            return self.local
        # A guard, helper or wrapped builtin.  Frames of other code (a finalizer run by the garbage
        # collector, say) are left alone: an exception raised there would be swallowed.
        if filename == _THIS_FILE and time.perf_counter() > self.next_check:
            self.check_budgets()
        return None

    def trace_local(self, frame: types.FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            if time.perf_counter() > self.next_check:
                self.check_budgets()
        elif event == "return":
            self.depth -= 1
        return self.local

    def check_budgets(self) -> None:
        env = self.env
        now = time.perf_counter()
        if now > self.deadline:
            raise self.fail(ScriptLimitExceeded(
                f"the script took too long (the limit is {env.max_seconds:g} s)"))
        self.next_check = min(self.deadline, now + MEMORY_CHECK_EVERY)
        if self.rss_base is not None:
            rss = _resident_bytes()
            if rss is not None and env.max_memory and rss - self.rss_base > env.max_memory:
                raise self.fail(ScriptLimitExceeded(
                    f"the script uses too much memory (more than {env.max_memory // 2**20:,} MB)"))

    def traced(self, code: types.CodeType, namespace: dict[str, Any], runner: Callable[..., Any]) -> Any:
        """Run ``code`` under the tracer that enforces the time, depth and memory budgets."""
        namespace["_getiter_"] = self.getiter
        self.local = self.trace_local
        if self.env.max_memory:
            self.rss_base = _resident_bytes()
        self.deadline = time.perf_counter() + self.env.max_seconds
        self.next_check = min(self.deadline, time.perf_counter() + MEMORY_CHECK_EVERY)
        previous = sys.gettrace()
        sys.settrace(self.trace)
        try:
            result = runner(code, namespace)
        finally:
            sys.settrace(previous)
        if self.violation is not None:  # a budget tripped but something swallowed the exception
            raise self.violation
        return result


def _run(env: RestrictedEnvironment, compiled: _Compiled, namespace: dict[str, Any],
         runner: Callable[..., Any]) -> Any:
    try:
        if not compiled.needs_trace:  # no calls, loops or functions: nothing in it can run for long
            return runner(compiled.code, namespace)
        return _Run(env).traced(compiled.code, namespace, runner)
    except RecursionError as exc:
        raise ScriptLimitExceeded("the script nests or recurses too deeply") from exc
    except MemoryError as exc:
        raise ScriptLimitExceeded("the script ran out of memory") from exc


# ---------------------------------------------------------------------------------------------------
# The environment
# ---------------------------------------------------------------------------------------------------

_CENT = Decimal("0.01")
_MONEY_CONTEXT = Context(prec=40, rounding=ROUND_HALF_UP)


class RestrictedEnvironment(BasePythonScriptEngineEnvironment):
    """A SpiffWorkflow script environment that runs everything through the sandbox.

    Semantics follow SpiffWorkflow's ``TaskDataEnvironment``: ``evaluate`` sees task data and
    ``external_context`` as names (task data wins); ``execute`` runs with task data as globals so that
    assignments land in it, then removes callables, modules, iterators, the helpers and the external
    names, and refuses what remains if it cannot be saved (``_check_data``); task data that shadows a helper
    makes ``execute`` fail with a ValueError.
    """

    def __init__(self, clock: Callable[[], datetime], business_tz: tzinfo = ZoneInfo("Asia/Shanghai"),
                 max_seconds: float = 1.0, max_iterations: int = 100_000, max_size: int = DEFAULT_MAX_SIZE,
                 max_memory: int | None = 256 * 2**20, max_data: int = DEFAULT_MAX_DATA):
        if not callable(clock):
            raise TypeError("clock must be a callable returning an aware datetime")
        if max_seconds <= 0 or max_iterations <= 0 or max_size <= 0 or max_data <= 0:
            raise ValueError("max_seconds, max_iterations, max_size and max_data must be positive")
        self.clock = clock
        self.business_tz = business_tz
        self.max_seconds = float(max_seconds)
        self.max_iterations = int(max_iterations)
        self.max_size = int(max_size)
        self.max_memory = int(max_memory) if max_memory else None
        self.max_data = int(max_data)
        super().__init__({
            "Decimal": Decimal,
            "money": money,
            "date_start": self._date_start,
            "today": self._today,
            "now": self._now,
            "date": date,
            "datetime": datetime,
            "timedelta": timedelta,
        })
        guards = _Guards(self.max_size, self.max_iterations)
        str_, range_ = guards.str_, guards.range_
        self._real_types: dict[Any, type] = {**_WRAPPED_TYPES, str_: str, range_: range}
        # The helpers live in the builtins: task data and external context shadow them in evaluate(), as
        # they shadow TaskDataEnvironment's globals, and execute() need not copy them into task data.
        builtins = {**_SAFE_BUILTINS, "str": str_, "range": range_, "isinstance": self._isinstance,
                    **self.globals}
        self._guards: dict[str, Any] = {
            "_getattr_": guards.getattr,
            "_getitem_": guards.getitem,
            "_write_": guards.write,
            "_inplacevar_": guards.inplacevar,
            "_inplaceitem_": guards.inplaceitem,
            "_add_": guards.add,
            "_sub_": guards.sub,
            "_or_": guards.or_,
            "_and_": guards.and_,
            "_xor_": guards.xor,
            "_mul_": guards.mul,
            "_pow_": guards.pow,
            "_lshift_": guards.lshift,
            "_mod_": guards.mod,
            "_format_": guards.format,
            "_fjoin_": guards.fjoin,
            "_apply_": _apply,
            "_unpack_sequence_": _unpack_sequence,
            "_iter_unpack_sequence_": _iter_unpack_sequence,
            "_print_": _print,
            "_getiter_": _plain_getiter,  # replaced per run when the code can loop
            "__builtins__": builtins,
        }

    # -- SpiffWorkflow interface ------------------------------------------------------------------------
    def evaluate(self, expression: str, context: dict[str, Any],
                 external_context: dict[str, Any] | None = None) -> Any:
        compiled = self._compiled(expression, "eval")
        namespace = {**external_context, **context} if external_context else context.copy()
        namespace.update(self._guards)
        result = _run(self, compiled, namespace, eval)
        # a DMN output, a message payload or a correlation value becomes task data; SpiffWorkflow does not
        # say what a result is for, so a condition must give saveable values too (bool(), len(), ==)
        _check_data(result, self.max_data)
        return result

    def execute(self, script: str, context: dict[str, Any],
                external_context: dict[str, Any] | None = None) -> bool:
        compiled = self._compiled(script, "exec")
        external_context = external_context or {}
        self.check_for_overwrite(context, external_context)
        context.update(external_context)
        context.update(self._guards)
        try:
            _run(self, compiled, context, exec)
        finally:
            self._clean(context, external_context)
        _check_data(context, self.max_data, names=True)
        return True

    def call_service(self, context: dict[str, Any], **kwargs: Any) -> Any:
        raise NotImplementedError("service tasks are not supported by the script sandbox")

    def check_for_overwrite(self, context: dict[str, Any], external_context: dict[str, Any]) -> None:
        clashes = (set(self.globals) | _INTERNAL_NAMES | set(external_context)) & set(context)
        if clashes:
            names = ", ".join(sorted(clashes))
            raise ValueError(
                f"The task data has field(s) named {names}, which would hide a built-in script helper. "
                f"Please rename the field(s) to something else.")

    # -- internals ------------------------------------------------------------------------------------
    def _compiled(self, source: str, mode: str) -> _Compiled:
        compiled = _compile(source, mode, self.max_size)
        if compiled.code is None:
            if compiled.syntax_error is not None:
                raise SyntaxError(*compiled.syntax_error)
            problems = list(compiled.problems)
            raise SandboxViolation("; ".join(problems), problems, compiled.line_number)
        return compiled

    def _clean(self, context: dict[str, Any], external_context: dict[str, Any]) -> None:
        for key in list(context):
            value = context[key]
            if (key in _INTERNAL_NAMES or key in self.globals or key in external_context or callable(value)
                    or isinstance(value, types.ModuleType | Iterator)):
                del context[key]

    def _isinstance(self, obj: Any, classinfo: Any) -> bool:
        if isinstance(classinfo, tuple):
            classinfo = tuple(self._real_types.get(c, c) for c in classinfo)
        else:
            classinfo = self._real_types.get(classinfo, classinfo)
        return isinstance(obj, classinfo)

    def _current(self) -> datetime:
        current = self.clock()
        if not isinstance(current, datetime):
            raise TypeError("the workflow clock did not return a datetime")
        if current.tzinfo is None:
            current = current.replace(tzinfo=UTC)
        return current.astimezone(self.business_tz)

    def _today(self) -> str:
        """Today's date in the business time zone, as 'YYYY-MM-DD'."""
        return self._current().date().isoformat()

    def _now(self) -> str:
        """The current time in the business time zone, as an ISO 8601 string with offset."""
        return self._current().isoformat()

    def _date_start(self, day: Any, days: Any = 0) -> str:
        """Midnight at the start of ``day`` (+ ``days``) in the business time zone, as ISO 8601."""
        if isinstance(day, str):
            text = day.strip()
            try:
                day = date.fromisoformat(text) if len(text) <= 10 else datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"date_start() needs a date such as '2026-12-01', not {day!r}") from None
        if isinstance(day, datetime):
            day = (day.astimezone(self.business_tz) if day.tzinfo else day).date()
        elif not isinstance(day, date):
            raise ValueError(f"date_start() needs a date such as '2026-12-01', not {_kind(day)}")
        if isinstance(days, Decimal) and days == days.to_integral_value():
            days = int(days)
        if not isinstance(days, int) or isinstance(days, bool):
            raise ValueError("date_start(): days must be a whole number")
        try:
            day = day + timedelta(days=days)
        except OverflowError:
            raise ValueError("date_start(): the resulting date is out of range") from None
        return datetime(day.year, day.month, day.day, tzinfo=self.business_tz).isoformat()


def money(amount: Any) -> Decimal:
    """``amount`` as a Decimal rounded half-up to cents; accepts str, int, float (via str) and Decimal."""
    if isinstance(amount, bool) or not isinstance(amount, str | int | float | Decimal):
        raise ValueError(f"money() needs a number or a text such as '1234.50', not {_kind(amount)}")
    if isinstance(amount, float):
        amount = str(amount)
    if isinstance(amount, str):
        amount = amount.strip()
        if len(amount) > 100:
            raise ValueError("money(): the text is too long to be an amount")
    try:
        value = Decimal(amount)
        if not value.is_finite():
            raise ValueError(f"money() needs a finite amount, not {amount!r}")
        return value.quantize(_CENT, rounding=ROUND_HALF_UP, context=_MONEY_CONTEXT)
    except DecimalException:
        raise ValueError(f"money(): {amount!r} is not an amount of money") from None


# ---------------------------------------------------------------------------------------------------
# The script engine
# ---------------------------------------------------------------------------------------------------

class RestrictedScriptEngine(PythonScriptEngine):
    """PythonScriptEngine whose WorkflowTaskExceptions keep the original error (``exception``,
    ``__cause__``) and put the sandbox's readable message into their own text."""

    def evaluate(self, task: Any, expression: str, external_context: dict[str, Any] | None = None) -> Any:
        try:
            return self.environment.evaluate(expression, task.data, external_context)
        except SpiffWorkflowException as exc:
            exc.add_note(f"Error evaluating expression '{expression}'")
            raise
        except Exception as exc:
            wte = WorkflowTaskException(f"Error evaluating expression '{expression}': {_describe_error(exc)}",
                                        task=task, exception=exc,
                                        line_number=getattr(exc, "line_number", None))
            wte.exception = exc
            raise wte from exc

    def create_task_exec_exception(self, task: Any, script: str, err: Exception) -> Exception:
        line_number, error_line = self.get_error_line_number_and_content(script, err)
        if not line_number and isinstance(err, SandboxViolation) and err.line_number:
            line_number = err.line_number
            lines = script.splitlines()
            error_line = lines[line_number - 1] if 0 < line_number <= len(lines) else ""
        if isinstance(err, SpiffWorkflowException):
            err.line_number = line_number
            err.error_line = error_line
            err.add_note(f"Python script error on line {line_number}: '{error_line}'")
            return err
        wte = WorkflowTaskException(_describe_error(err), task=task, exception=err, line_number=line_number,
                                    error_line=error_line)
        wte.exception = err
        wte.__cause__ = err
        return wte


def _describe_error(err: BaseException) -> str:
    if isinstance(err, SandboxViolation):
        return str(err)
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def make_script_engine(clock: Callable[[], datetime], **limits: Any) -> PythonScriptEngine:
    """A SpiffWorkflow script engine running everything in the sandbox; ``limits`` go to
    ``RestrictedEnvironment`` (business_tz, max_seconds, max_iterations, max_size, max_memory, max_data)."""
    return RestrictedScriptEngine(environment=RestrictedEnvironment(clock, **limits))
