"""The jobs list's ``filter`` and ``orderby`` as the Azure Quantum emulator reads them.

The service documents neither grammar; this is a subset of OData (an emulator choice): comparisons,
``startswith``/``endswith``/``contains``, ``not``/``and``/``or`` and parentheses over the fields a
job list shows. Kept apart from the emulator because it is a small language of its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from .handlers import utc_moment

__all__ = ["FIELDS", "Predicate", "Record", "order_key", "parse_filter", "parse_time"]


def parse_time(text: str) -> datetime:
    """An ISO 8601 date-time as Azure writes it (seven fractional digits, ``Z`` or an offset; no
    zone means UTC). Raises ValueError."""
    value = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    return utc_moment(value)


_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<open>\()|(?P<close>\))|(?P<comma>,)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9A-Za-z_.:+\-]*))"
)
_OPERATORS: Final = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
_FUNCTIONS: Final = frozenset({"startswith", "endswith", "contains"})
#: Fields a filter or an orderby may name (lower case) → the record key.
FIELDS: Final = {
    "id": "id",
    "name": "name",
    "providerid": "providerid",
    "target": "target",
    "state": "status",
    "status": "status",
    "itemtype": "itemtype",
    "jobtype": "jobtype",
    "sessionid": "sessionid",
    "creationtime": "creationtime",
}

Record = Mapping[str, Any]
Predicate = Callable[[Record], bool]


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ValueError(f"unexpected text at position {position}: {text[position : position + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        position = match.end()
    return out


def _compare(left: Any, op: str, literal: tuple[str, str]) -> bool:
    kind, raw = literal
    if left is None:
        return op == "ne"
    if isinstance(left, datetime):
        try:
            right: Any = parse_time(raw.strip("'"))
        except ValueError:
            raise ValueError(f"{raw!r} is not a date-time") from None
        value: Any = left
    else:
        if kind != "string":
            raise ValueError(f"compare text fields with a quoted string, not {raw!r}")
        value, right = str(left).lower(), raw[1:-1].replace("''", "'").lower()
    return bool(
        {
            "eq": value == right,
            "ne": value != right,
            "gt": value > right,
            "ge": value >= right,
            "lt": value < right,
            "le": value <= right,
        }[op]
    )


def parse_filter(text: str) -> Predicate:
    """A predicate over job records from an OData-style ``filter``: ``Field op literal`` (op one of
    eq ne gt ge lt le; text compared case-insensitively, ``CreationTime`` as a date-time),
    ``startswith|endswith|contains(Field, 'text')``, ``not``, ``and``, ``or`` and parentheses.
    Fields: Id, Name, ProviderId, Target, State (or Status), ItemType, JobType, SessionId,
    CreationTime. Raises ValueError for anything else."""
    tokens = _tokens(text)
    position = 0

    def peek() -> tuple[str, str] | None:
        return tokens[position] if position < len(tokens) else None

    def take(kind: str | None = None, word: str | None = None) -> tuple[str, str]:
        nonlocal position
        token = peek()
        if token is None or (kind and token[0] != kind) or (word and token[1].lower() != word):
            raise ValueError(f"expected {word or kind} at token {position + 1}")
        position += 1
        return token

    def field_key(raw: str) -> str:
        key = FIELDS.get(raw.lower())
        if key is None:
            raise ValueError(f"unknown field {raw!r}")
        return key

    def primary() -> Predicate:
        token = peek()
        if token is None:
            raise ValueError("the filter ends too early")
        if token[0] == "open":
            take("open")
            inner = disjunction()
            take("close")
            return inner
        word = take("word")[1]
        if word.lower() == "not":
            negated = primary()
            return lambda record: not negated(record)
        if word.lower() in _FUNCTIONS:
            function = word.lower()
            take("open")
            key = field_key(take("word")[1])
            take("comma")
            literal = take("string")[1][1:-1].replace("''", "'").lower()
            take("close")

            def call(record: Record) -> bool:
                value = str(record.get(key) or "").lower()
                if function == "startswith":
                    return value.startswith(literal)
                if function == "endswith":
                    return value.endswith(literal)
                return literal in value

            return call
        key = field_key(word)
        op = take("word")[1].lower()
        if op not in _OPERATORS:
            raise ValueError(f"unknown operator {op!r}")
        operand = take()
        if operand[0] not in ("string", "word"):
            raise ValueError(f"{op} needs a value")
        return lambda record: _compare(record.get(key), op, operand)

    def chain(
        word: str, operand: Callable[[], Predicate], combine: Callable[[Iterable[bool]], bool]
    ) -> Predicate:
        """``operand (word operand)*``, the parts' answers combined by ``combine`` (all, any)."""
        parts = [operand()]
        while (token := peek()) is not None and token[0] == "word" and token[1].lower() == word:
            take()
            parts.append(operand())
        return lambda record: combine(part(record) for part in parts)

    def conjunction() -> Predicate:
        return chain("and", primary, all)

    def disjunction() -> Predicate:
        return chain("or", conjunction, any)

    predicate = disjunction()
    if position != len(tokens):
        raise ValueError(f"unexpected {tokens[position][1]!r} at token {position + 1}")
    return predicate


def order_key(orderby: str) -> list[tuple[str, bool]]:
    """``Field [asc|desc], ...`` as (record key, descending) pairs, first key first. Raises ValueError."""
    keys: list[tuple[str, bool]] = []
    for part in orderby.split(","):
        words = part.split()
        if not words or len(words) > 2:
            raise ValueError(f"cannot order by {part.strip()!r}")
        direction = words[1].lower() if len(words) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise ValueError(f"order direction must be asc or desc, not {words[1]!r}")
        key = FIELDS.get(words[0].lower())
        if key is None:
            raise ValueError(f"cannot order by {words[0]!r}")
        keys.append((key, direction == "desc"))
    return keys
