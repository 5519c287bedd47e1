"""Arazzo criteria: ``simple`` conditions, ``regex`` and ``jsonpath``. A hand-written parser; no eval.

Simple conditions (Arazzo 1.0.1 §"Criterion Object")::

    condition := or
    or        := and ("||" and)*
    and       := unary ("&&" unary)*
    unary     := "!" unary | comparison
    comparison:= postfix (("==" | "!=" | "<" | "<=" | ">" | ">=") postfix)?
    postfix   := primary ("." NAME | "[" (INTEGER | STRING) "]")*
    primary   := "(" condition ")" | literal | runtime-expression | context-path
    literal   := 'single quoted' ('' escapes a quote) | "double quoted" | number | true | false | null

Comparisons are loose, as the specification says: strings compare case-insensitively; a number and
a string that holds a number compare as numbers; values of different kinds are not equal and not
ordered. A lone operand counts as true when it is not null, false, 0 or empty.

``jsonpath`` criteria are first compiled as RFC 9535 queries (python-jsonpath, strict): true when
the query selects at least one node of the context. A condition that is not a query — the four
vendor seeds write comparisons such as ``$.status == "Queued" || $.status == "Running"`` — is then
evaluated as a simple condition in which ``$.a.b`` / ``$['a'][0]`` read the context (the runner
warns once that this fallback was used). ``regex`` criteria search the context's text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import jsonpath
from jsonpath.exceptions import JSONPathError

from .expressions import (
    ExpressionContext,
    ExpressionError,
    RuntimeExpression,
    evaluate,
    parse_expression,
    to_text,
)

__all__ = [
    "CompiledCriterion",
    "ConditionError",
    "compile_criterion",
    "evaluate_condition",
    "evaluate_criterion",
    "loose_compare",
    "loose_equal",
    "parse_condition",
    "truthy",
]


class ConditionError(ValueError):
    """A condition that cannot be parsed (a definition error)."""


# --------------------------------------------------------------------------------------------------
# AST


@dataclass(frozen=True, slots=True)
class Const:
    value: Any


@dataclass(frozen=True, slots=True)
class Expr:
    expr: RuntimeExpression


@dataclass(frozen=True, slots=True)
class ContextRoot:
    """``$`` of a jsonpath-style comparison: the criterion's context."""


@dataclass(frozen=True, slots=True)
class Member:
    target: Node
    key: str | int


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class Logical:
    op: Literal["&&", "||"]
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Node
    right: Node


Node: TypeAlias = Const | Expr | ContextRoot | Member | Not | Logical | Compare


# --------------------------------------------------------------------------------------------------
# Lexer

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<op>&&|\|\||==|!=|<=|>=|<|>|!|\(|\)|\[|\]|\.)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<squote>'(?:[^']|'')*')
  | (?P<dquote>"(?:[^"\\]|\\.)*")
  | (?P<expr>\$[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z0-9_\-]+)*(?:\#/[^\s()=!<>&|\[\]]*)?)
  | (?P<context>\$(?=[.\[\s)]|$))
  | (?P<name>[A-Za-z_][A-Za-z0-9_\-]*)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _lex(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ConditionError(f"unexpected character {text[position]!r} at column {position + 1}")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_Tok(kind, match.group(0), position))
        position = match.end()
    tokens.append(_Tok("end", "", len(text)))
    return tokens


def _unquote_single(text: str) -> str:
    return text[1:-1].replace("''", "'")


_ESCAPES: Final = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unquote_double(text: str) -> str:
    out: list[str] = []
    body = text[1:-1]
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            nxt = body[index + 1]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[index + 2 : index + 6]):
                out.append(chr(int(body[index + 2 : index + 6], 16)))
                index += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


# --------------------------------------------------------------------------------------------------
# Parser


class _Parser:
    def __init__(self, text: str, *, context_paths: bool) -> None:
        self.text = text
        self.tokens = _lex(text)
        self.index = 0
        self.context_paths = context_paths
        self.uses_context = False

    def peek(self) -> _Tok:
        return self.tokens[self.index]

    def take(self) -> _Tok:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text or token.kind != "op":
            raise self.error(token, f"expected {text!r}")

    def error(self, token: _Tok, message: str) -> ConditionError:
        found = repr(token.text) if token.kind != "end" else "the end"
        return ConditionError(f"{message}, found {found} at column {token.pos + 1}")

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise ConditionError("the condition is empty")
        node = self.parse_or()
        if self.peek().kind != "end":
            raise self.error(self.peek(), "expected an operator or the end")
        return node

    def parse_or(self) -> Node:
        return self.parse_chain("||", self.parse_and)

    def parse_and(self) -> Node:
        return self.parse_chain("&&", self.parse_unary)

    def parse_chain(self, op: Literal["&&", "||"], operand: Callable[[], Node]) -> Node:
        """``operand (op operand)*``, grouped from the left."""
        node = operand()
        while self.peek().kind == "op" and self.peek().text == op:
            self.take()
            node = Logical(op, node, operand())
        return node

    def parse_unary(self) -> Node:
        if self.peek().kind == "op" and self.peek().text == "!":
            self.take()
            return Not(self.parse_unary())
        return self.parse_comparison()

    def parse_comparison(self) -> Node:
        left = self.parse_postfix()
        token = self.peek()
        if token.kind == "op" and token.text in ("==", "!=", "<", "<=", ">", ">="):
            self.take()
            right = self.parse_postfix()
            return Compare(token.text, left, right)
        return left

    def parse_postfix(self) -> Node:
        node = self.parse_primary()
        while self.peek().kind == "op" and self.peek().text in (".", "["):
            if self.take().text == ".":
                name = self.take()
                if not (name.kind == "name" or (name.kind == "number" and name.text.isdigit())):
                    raise self.error(name, "expected a member name after '.'")
                node = Member(node, name.text)
            else:
                key = self.take()
                if key.kind == "number" and re.fullmatch(r"-?\d+", key.text):
                    node = Member(node, int(key.text))
                elif key.kind == "squote":
                    node = Member(node, _unquote_single(key.text))
                elif key.kind == "dquote":
                    node = Member(node, _unquote_double(key.text))
                else:
                    raise self.error(key, "expected an index or a quoted name in '[...]'")
                self.expect("]")
        return node

    def parse_primary(self) -> Node:
        token = self.take()
        if token.kind == "op" and token.text == "(":
            node = self.parse_or()
            self.expect(")")
            return node
        if token.kind == "number":
            number = float(token.text)
            if not math.isfinite(number):
                raise self.error(token, "number out of range")
            is_int = re.fullmatch(r"-?\d+", token.text) is not None
            return Const(int(token.text) if is_int else number)
        if token.kind == "squote":
            return Const(_unquote_single(token.text))
        if token.kind == "dquote":
            return Const(_unquote_double(token.text))
        if token.kind == "name" and token.text in ("true", "false", "null"):
            return Const({"true": True, "false": False, "null": None}[token.text])
        if token.kind == "expr":
            try:
                return Expr(parse_expression(token.text))
            except ExpressionError as exc:
                raise ConditionError(f"{exc} (at column {token.pos + 1})") from None
        if token.kind == "context":
            if not self.context_paths:
                raise self.error(token, "'$' alone is not a runtime expression here")
            self.uses_context = True
            return ContextRoot()
        raise self.error(token, "expected a value, a runtime expression or '('")


def parse_condition(text: str, *, context_paths: bool = False) -> Node:
    """Parse a simple condition. ``context_paths`` allows ``$.a.b`` (the seeds' jsonpath form)."""
    return _Parser(text, context_paths=context_paths).parse()


# --------------------------------------------------------------------------------------------------
# Evaluation


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_number(value: Any) -> float | None:
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def loose_equal(left: Any, right: Any) -> bool:
    """Arazzo's loose equality (see the module docstring)."""
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold() == right.casefold()
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if left is None or right is None:
        return left is None and right is None
    if _is_number(left) or _is_number(right):
        a, b = _as_number(left), _as_number(right)
        return a is not None and b is not None and a == b
    if isinstance(left, type(right)) or isinstance(right, type(left)):
        return bool(left == right)
    return False


def loose_compare(op: str, left: Any, right: Any) -> bool:
    """``left op right`` for ``<``, ``<=``, ``>``, ``>=``: numbers (or numeric strings against a
    number) and strings (case-insensitively); anything else is not ordered: False."""
    a: Any
    b: Any
    if isinstance(left, str) and isinstance(right, str):
        a, b = left.casefold(), right.casefold()
    elif (
        (_is_number(left) or _is_number(right)) and not isinstance(left, bool) and not isinstance(right, bool)
    ):
        a, b = _as_number(left), _as_number(right)
        if a is None or b is None:
            return False
    else:
        return False
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def truthy(value: Any) -> bool:
    """JSON truthiness: not null, false, 0, "" or empty."""
    if value is None or value is False:
        return False
    if _is_number(value):
        return bool(value)
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True


def _member(value: Any, key: str | int) -> Any:
    if isinstance(key, int):
        if isinstance(value, list) and -len(value) <= key < len(value):
            return value[key]
        return None
    if isinstance(value, Mapping):
        return value.get(key)
    if isinstance(value, list) and key.isdigit() and int(key) < len(value):
        return value[int(key)]
    return None


def _value(node: Node, ctx: ExpressionContext, context: Any) -> Any:
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Expr):
        return evaluate(node.expr, ctx)
    if isinstance(node, ContextRoot):
        return context
    if isinstance(node, Member):
        return _member(_value(node.target, ctx, context), node.key)
    return _truth(node, ctx, context)


def _truth(node: Node, ctx: ExpressionContext, context: Any) -> bool:
    if isinstance(node, Not):
        return not _truth(node.operand, ctx, context)
    if isinstance(node, Logical):
        if node.op == "&&":
            return _truth(node.left, ctx, context) and _truth(node.right, ctx, context)
        return _truth(node.left, ctx, context) or _truth(node.right, ctx, context)
    if isinstance(node, Compare):
        left, right = _value(node.left, ctx, context), _value(node.right, ctx, context)
        if node.op == "==":
            return loose_equal(left, right)
        if node.op == "!=":
            return not loose_equal(left, right)
        return loose_compare(node.op, left, right)
    return truthy(_value(node, ctx, context))


def evaluate_condition(node: Node, ctx: ExpressionContext, context: Any = None) -> bool:
    """Evaluate a parsed condition; ``context`` is what ``$.`` paths read."""
    return _truth(node, ctx, context)


# --------------------------------------------------------------------------------------------------
# Criteria

CriterionKind: TypeAlias = Literal["simple", "regex", "jsonpath", "comparison"]
_STRICT: Final = jsonpath.JSONPathEnvironment(strict=True)
_LENIENT: Final = jsonpath.JSONPathEnvironment()
_REGEX_CONTEXT_LIMIT: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class CompiledCriterion:
    """A criterion ready to evaluate. ``kind`` ``comparison`` marks the seeds' jsonpath fallback."""

    condition: str
    kind: CriterionKind
    context: RuntimeExpression | None = None
    ast: Node | None = None
    query: jsonpath.JSONPath | jsonpath.CompoundJSONPath | None = None
    pattern: re.Pattern[str] | None = None
    jsonpath_error: str | None = None


def compile_criterion(
    condition: str,
    type_: str | None = None,
    context: str | None = None,
    version: str | None = None,
) -> CompiledCriterion:
    """Compile a Criterion Object; :class:`ConditionError` if it cannot be evaluated."""
    kind = type_ or "simple"
    context_expr: RuntimeExpression | None = None
    if context is not None:
        try:
            context_expr = parse_expression(context)
        except ExpressionError as exc:
            raise ConditionError(f"context: {exc}") from None
    if kind == "simple":
        return CompiledCriterion(condition, "simple", context_expr, ast=parse_condition(condition))
    if context_expr is None:
        raise ConditionError(f"a {kind} criterion needs a 'context' (e.g. $response.body)")
    if kind == "regex":
        try:
            pattern = re.compile(condition)
        except re.error as exc:
            raise ConditionError(f"not a valid regular expression: {exc}") from None
        return CompiledCriterion(condition, "regex", context_expr, pattern=pattern)
    if kind == "jsonpath":
        env = _LENIENT if version == "draft-goessner-dispatch-jsonpath-00" else _STRICT
        try:
            query = env.compile(condition)
        except (JSONPathError, RecursionError, ValueError) as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            try:
                ast = parse_condition(condition, context_paths=True)
            except ConditionError as second:
                raise ConditionError(
                    f"neither an RFC 9535 JSONPath query ({first_line}) nor a comparison ({second})"
                ) from None
            return CompiledCriterion(
                condition, "comparison", context_expr, ast=ast, jsonpath_error=first_line
            )
        return CompiledCriterion(condition, "jsonpath", context_expr, query=query)
    raise ConditionError(f"criterion type {kind!r} is not supported (simple, regex, jsonpath)")


def evaluate_criterion(criterion: CompiledCriterion, ctx: ExpressionContext) -> bool:
    """Whether the criterion holds in ``ctx``."""
    context = evaluate(criterion.context, ctx) if criterion.context is not None else None
    if criterion.kind == "simple":
        assert criterion.ast is not None
        return evaluate_condition(criterion.ast, ctx, context)
    if criterion.kind == "comparison":
        assert criterion.ast is not None
        return evaluate_condition(criterion.ast, ctx, context)
    if criterion.kind == "regex":
        assert criterion.pattern is not None
        if context is None:
            return False
        text = context if isinstance(context, str) else to_text(context)
        return criterion.pattern.search(text[:_REGEX_CONTEXT_LIMIT]) is not None
    assert criterion.query is not None
    # A string context is a JSON string value, not JSON text to be parsed (python-jsonpath would):
    # no query step can select anything inside a string, so None gives the same node count.
    data = None if isinstance(context, str) else context
    return len(criterion.query.findall(data)) > 0
