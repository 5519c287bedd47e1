"""Arazzo runtime expressions: parsing and evaluation. Pure functions, no I/O, types kept.

Supported (Arazzo 1.0.1 §"Runtime Expressions")::

    $statusCode  $url  $method
    $request.header.NAME  $request.query.NAME  $request.path.NAME  $request.body[#/json/pointer]
    $response.header.NAME  $response.body[#/json/pointer]
    $inputs.NAME[#/pointer]  $outputs.NAME  $steps.STEP.outputs.NAME[#/pointer]
    $workflows.ID.inputs.NAME  $workflows.ID.outputs.NAME   (the running workflow only)
    $sourceDescriptions.NAME.url

Dotted names after a value (``$response.body.status``, ``$inputs.args.a``) dereference object
members; a missing member or pointer target is ``None`` (JSON null), never an error.

Values (parameter values, payload strings, outputs) are compiled once by :func:`compile_value`:

* a whole string that is one expression (``$inputs.runId``) evaluates to the value itself, with
  its type (an integer stays an integer);
* ``{$expr}`` inside a string is replaced by the value's text (Arazzo's embedding);
* the seeds' bare form inside a string (``"Bearer $inputs.token"``) is substituted too, and the
  compiled value is flagged ``bare`` so the runner can warn that Arazzo writes ``{$inputs.token}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias
from urllib.parse import unquote

from .._http import Secret

__all__ = [
    "CompiledValue",
    "Embedded",
    "ExpressionContext",
    "ExpressionError",
    "Literal",
    "RequestView",
    "ResponseView",
    "RuntimeExpression",
    "compile_value",
    "evaluate",
    "evaluate_value",
    "expressions_in",
    "has_bare",
    "header_value",
    "parse_expression",
    "resolve_pointer",
    "reveal_text",
    "to_text",
]


class ExpressionError(ValueError):
    """A runtime expression that does not follow the grammar (a definition error)."""


ROOTS: Final = frozenset(
    {
        "statusCode",
        "url",
        "method",
        "request",
        "response",
        "inputs",
        "outputs",
        "steps",
        "workflows",
        "sourceDescriptions",
        "components",
    }
)
_SCALAR_ROOTS: Final = frozenset({"statusCode", "url", "method"})
_WHOLE = re.compile(r"^\$(?P<root>[A-Za-z]+)(?P<rest>(?:\.[^.#\s{}]+)*)(?:#(?P<pointer>.*))?$", re.DOTALL)
_EMBEDDED = re.compile(r"\{(\$[^{}]*)\}")
# The seeds' bare form inside a string: "$inputs.token" with at least one dotted name (or
# $statusCode). $url and $method are left out: too likely to be literal text.
_BARE = re.compile(
    r"(?<![\w{$])\$(?:statusCode\b|(?:inputs|outputs|steps|workflows|sourceDescriptions|request|response)"
    r"(?:\.[A-Za-z0-9_\-]+)+(?:#/[^\s\"'<>]*)?)"
)


@dataclass(frozen=True, slots=True)
class RuntimeExpression:
    """One parsed expression: ``$root.segments...#pointer``."""

    text: str
    root: str
    segments: tuple[str, ...]
    pointer: str | None = None

    def __str__(self) -> str:
        return self.text

    @property
    def step_id(self) -> str | None:
        """For ``$steps.X...``: ``X``."""
        return self.segments[0] if self.root == "steps" else None


def parse_expression(text: str) -> RuntimeExpression:
    """Parse one whole runtime expression; :class:`ExpressionError` if it is not one."""
    match = _WHOLE.match(text.strip())
    if match is None or not text.startswith("$"):
        raise ExpressionError(f"{text!r} is not a runtime expression")
    root = match.group("root")
    if root not in ROOTS:
        raise ExpressionError(
            f"{text!r}: unknown runtime expression ${root} (known: {', '.join(sorted(ROOTS))})"
        )
    rest = match.group("rest")
    segments = tuple(rest[1:].split(".")) if rest else ()
    pointer = match.group("pointer")
    if pointer is not None and pointer and not pointer.startswith("/"):
        raise ExpressionError(f"{text!r}: a JSON pointer after '#' starts with '/'")
    expr = RuntimeExpression(text=text.strip(), root=root, segments=segments, pointer=pointer)
    _check_shape(expr)
    return expr


def _check_shape(expr: RuntimeExpression) -> None:
    root, seg, text = expr.root, expr.segments, expr.text
    if root in _SCALAR_ROOTS:
        if seg or expr.pointer is not None:
            raise ExpressionError(f"{text!r}: ${root} takes no name or pointer")
    elif root in ("request", "response"):
        if not seg or seg[0] not in ("header", "query", "path", "body"):
            raise ExpressionError(f"{text!r}: expected ${root}.header.NAME, .query.NAME, .path.NAME or .body")
        if seg[0] != "body" and (len(seg) < 2 or expr.pointer is not None):
            raise ExpressionError(f"{text!r}: expected ${root}.{seg[0]}.NAME")
        if root == "response" and seg[0] in ("query", "path"):
            raise ExpressionError(f"{text!r}: a response has no {seg[0]} parameters")
    elif root in ("inputs", "outputs"):
        if not seg:
            raise ExpressionError(f"{text!r}: expected ${root}.NAME")
    elif root == "steps":
        if len(seg) < 3 or seg[1] != "outputs":
            raise ExpressionError(f"{text!r}: expected $steps.STEP_ID.outputs.NAME")
    elif root == "workflows":
        if len(seg) < 3 or seg[1] not in ("inputs", "outputs"):
            raise ExpressionError(f"{text!r}: expected $workflows.WORKFLOW_ID.outputs.NAME (or .inputs.NAME)")
    elif root == "sourceDescriptions":
        if not seg:
            raise ExpressionError(f"{text!r}: expected $sourceDescriptions.NAME.url")
    elif len(seg) < 2:  # components
        raise ExpressionError(f"{text!r}: expected $components.KIND.NAME")


# --------------------------------------------------------------------------------------------------
# Context


@dataclass(frozen=True, slots=True)
class RequestView:
    """The request a step sent, as expressions see it."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, Any] = field(default_factory=dict)
    path: Mapping[str, Any] = field(default_factory=dict)
    body: Any = None


@dataclass(frozen=True, slots=True)
class ResponseView:
    """A step's response: status, headers (looked up case-insensitively) and the parsed body."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None


def _no_warning(message: str) -> None:
    return None


@dataclass(slots=True)
class ExpressionContext:
    """Everything an expression can read. ``warn`` receives notes (e.g. a step that did not run)."""

    inputs: Mapping[str, Any] = field(default_factory=dict)
    step_outputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    step_ids: frozenset[str] = frozenset()
    workflow_id: str = ""
    workflow_outputs: Mapping[str, Any] = field(default_factory=dict)
    request: RequestView | None = None
    response: ResponseView | None = None
    source_urls: Mapping[str, str] = field(default_factory=dict)
    warn: Callable[[str], None] = _no_warning


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, by case-insensitive name."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, item in headers.items():
        if key.lower() == lowered:
            return item
    return None


def resolve_pointer(document: Any, pointer: str) -> tuple[bool, Any]:
    """RFC 6901: ``(True, value)`` if ``pointer`` points at something in ``document``, else ``(False, None)``.

    The pointer may be URI-fragment encoded (``%20``), as it follows a ``#``.
    """
    if pointer == "":
        return True, document
    if "%" in pointer:
        pointer = unquote(pointer)
    if not pointer.startswith("/"):
        return False, None
    current = document
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, Mapping):
            if token not in current:
                return False, None
            current = current[token]
        elif isinstance(current, list):
            if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
                return False, None
            index = int(token)
            if index >= len(current):
                return False, None
            current = current[index]
        else:
            return False, None
    return True, current


def _member(value: Any, key: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(key)
    if isinstance(value, list) and key.isdigit() and int(key) < len(value):
        return value[int(key)]
    return None


def _walk(value: Any, members: Sequence[str], pointer: str | None) -> Any:
    for key in members:
        value = _member(value, key)
    if pointer is not None:
        _found, value = resolve_pointer(value, pointer)
    return value


def _named(mapping: Mapping[str, Any], segments: Sequence[str]) -> tuple[Any, Sequence[str]]:
    """The value named by the longest dotted prefix of ``segments`` (names may contain dots)."""
    for cut in range(len(segments), 0, -1):
        name = ".".join(segments[:cut])
        if name in mapping:
            return mapping[name], segments[cut:]
    return None, ()


def evaluate(expr: RuntimeExpression, ctx: ExpressionContext) -> Any:
    """The value of ``expr`` in ``ctx``; ``None`` (null) where nothing is there."""
    root, seg = expr.root, expr.segments
    if root == "statusCode":
        return ctx.response.status if ctx.response is not None else None
    if root in ("url", "method"):
        if ctx.request is None:
            return None
        return ctx.request.url if root == "url" else ctx.request.method
    if root in ("request", "response"):
        return _message(expr, ctx)
    if root == "inputs":
        value, rest = _named(ctx.inputs, seg)
        return _walk(value, rest, expr.pointer)
    if root == "outputs":
        value, rest = _named(ctx.workflow_outputs, seg)
        return _walk(value, rest, expr.pointer)
    if root == "steps":
        step_id = seg[0]
        outputs = ctx.step_outputs.get(step_id)
        if outputs is None:
            if step_id in ctx.step_ids:
                ctx.warn(f"{expr.text}: step {step_id!r} did not run; its outputs are null")
            else:
                ctx.warn(f"{expr.text}: there is no step {step_id!r}; null")
            return None
        value, rest = _named(outputs, seg[2:])
        return _walk(value, rest, expr.pointer)
    if root == "workflows":
        if seg[0] != ctx.workflow_id:
            ctx.warn(f"{expr.text}: only the running workflow ({ctx.workflow_id}) can be read; null")
            return None
        source = ctx.inputs if seg[1] == "inputs" else ctx.workflow_outputs
        value, rest = _named(source, seg[2:])
        return _walk(value, rest, expr.pointer)
    if root == "sourceDescriptions":
        url = ctx.source_urls.get(seg[0])
        if len(seg) >= 2 and seg[1] == "url":
            return url
        return None
    ctx.warn(f"{expr.text}: $components can only be used in a 'reference' field; null")
    return None


def _message(expr: RuntimeExpression, ctx: ExpressionContext) -> Any:
    seg = expr.segments
    kind = seg[0]
    if expr.root == "response":
        response = ctx.response
        if response is None:
            return None
        if kind == "header":
            return header_value(response.headers, ".".join(seg[1:]))
        return _walk(response.body, seg[1:], expr.pointer)
    request = ctx.request
    if request is None:
        return None
    if kind == "header":
        return header_value(request.headers, ".".join(seg[1:]))
    if kind == "query":
        return request.query.get(".".join(seg[1:]))
    if kind == "path":
        return request.path.get(".".join(seg[1:]))
    return _walk(request.body, seg[1:], expr.pointer)


# --------------------------------------------------------------------------------------------------
# Compiled values


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class Embedded:
    """A string with expressions inside it; ``bare`` if written without braces (the seeds' form)."""

    parts: tuple[str | RuntimeExpression, ...]
    bare: bool = False


CompiledValue: TypeAlias = (
    Literal | RuntimeExpression | Embedded | tuple["CompiledValue", ...] | dict[str, "CompiledValue"]
)


def compile_value(value: Any) -> CompiledValue:
    """Compile a parameter value, payload or output once; :class:`ExpressionError` if malformed."""
    if isinstance(value, str):
        return _compile_string(value)
    if isinstance(value, Mapping):
        return {str(key): compile_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return tuple(compile_value(item) for item in value)
    return Literal(value)


def _compile_string(text: str) -> CompiledValue:
    if text.startswith("$"):
        match = _WHOLE.match(text)
        if match is not None and match.group("root") in ROOTS:
            return parse_expression(text)
    if "{$" in text:
        parts: list[str | RuntimeExpression] = []
        position = 0
        for found in _EMBEDDED.finditer(text):
            if found.start() > position:
                parts.append(text[position : found.start()])
            parts.append(parse_expression(found.group(1)))
            position = found.end()
        if position < len(text):
            parts.append(text[position:])
        if any(isinstance(part, RuntimeExpression) for part in parts):
            return Embedded(tuple(parts))
        raise ExpressionError(f"{text!r}: '{{$' opens an embedded expression that is not closed")
    bare: list[str | RuntimeExpression] = []
    position = 0
    for found in _BARE.finditer(text):
        try:
            expr = parse_expression(found.group(0))
        except ExpressionError:
            continue
        if found.start() > position:
            bare.append(text[position : found.start()])
        bare.append(expr)
        position = found.end()
    if bare:
        if position < len(text):
            bare.append(text[position:])
        return Embedded(tuple(bare), bare=True)
    return Literal(text)


def to_text(value: Any) -> str:
    """How a value is written into a string (a header, a path, an embedding): JSON for non-strings.
    A :class:`~oqc_style_sdk._http.Secret` shows as ``***`` (use :func:`reveal_text` for the wire)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Secret):
        return repr(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def reveal_text(value: Any) -> str:
    """:func:`to_text`, with secrets revealed: only for what goes on the wire."""
    if isinstance(value, Secret):
        return value.reveal()
    return to_text(value)


def evaluate_value(compiled: CompiledValue, ctx: ExpressionContext) -> Any:
    """The value of a compiled value in ``ctx`` (objects and arrays evaluated member by member)."""
    if isinstance(compiled, Literal):
        return compiled.value
    if isinstance(compiled, RuntimeExpression):
        return evaluate(compiled, ctx)
    if isinstance(compiled, Embedded):
        values = [part if isinstance(part, str) else evaluate(part, ctx) for part in compiled.parts]
        if any(isinstance(value, Secret) for value in values):
            # "Bearer {$inputs.token}" with a Secret token is a Secret as a whole.
            return Secret("".join(reveal_text(value) for value in values))
        return "".join(to_text(value) for value in values)
    if isinstance(compiled, tuple):
        return [evaluate_value(item, ctx) for item in compiled]
    return {key: evaluate_value(item, ctx) for key, item in compiled.items()}


def expressions_in(compiled: CompiledValue) -> list[RuntimeExpression]:
    """Every expression inside a compiled value (for static checks)."""
    if isinstance(compiled, RuntimeExpression):
        return [compiled]
    if isinstance(compiled, Embedded):
        return [part for part in compiled.parts if isinstance(part, RuntimeExpression)]
    if isinstance(compiled, tuple):
        return [expr for item in compiled for expr in expressions_in(item)]
    if isinstance(compiled, dict):
        return [expr for item in compiled.values() for expr in expressions_in(item)]
    return []


def has_bare(compiled: CompiledValue) -> bool:
    """Whether a compiled value uses the seeds' bare embedded form anywhere."""
    if isinstance(compiled, Embedded):
        return compiled.bare
    if isinstance(compiled, tuple):
        return any(has_bare(item) for item in compiled)
    if isinstance(compiled, dict):
        return any(has_bare(item) for item in compiled.values())
    return False
