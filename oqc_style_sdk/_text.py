"""Text a job carries must be encodable as UTF-8: every vendor's wire, and every job file, is UTF-8.

A Python ``str`` may hold a lone surrogate (``"\\ud800"``, from ``surrogateescape`` decoding or a
JSON ``\\ud800`` escape) that no UTF-8 encoder takes. Let through, it fails late and differently on
each backend (a raw ``UnicodeEncodeError`` while sending, a vendor's 400, a file that cannot be
saved). :func:`check_utf8` refuses it where a job's settings come in (``create_job``,
``reconfigure``), naming the field; :func:`unencodable` finds it anywhere in nested data (a loaded
file is checked with it too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .exceptions import JobValidationError

__all__ = ["check_utf8", "unencodable"]


def _bad_text(text: str) -> str | None:
    """Why ``text`` cannot be encoded as UTF-8, or None if it can."""
    if text.isascii():  # the usual case, decided without encoding anything
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"a lone surrogate {text[exc.start]!r} at character {exc.start}"
    return None


def unencodable(value: Any, where: str) -> str | None:
    """Where the first text in ``value`` (a string, or one inside nested mappings, lists and tuples:
    keys and values) is that UTF-8 cannot encode, and why — e.g. ``"config['args'][2]: a lone
    surrogate '\\ud800' at character 0"``; None if all of it can be encoded. Other objects (a
    circuit, a number) are not looked into."""
    stack: list[tuple[Any, str]] = [(value, where)]
    seen: set[int] = set()  # containers already walked (shared, or holding themselves)
    while stack:
        item, at = stack.pop()
        if isinstance(item, str):
            why = _bad_text(item)
            if why is not None:
                return f"{at}: {why}"
            continue
        if isinstance(item, Mapping | list | tuple):
            if id(item) in seen:
                continue
            seen.add(id(item))
            inner: list[tuple[Any, str]] = []
            if isinstance(item, Mapping):
                for key, element in item.items():
                    if isinstance(key, str):
                        inner.append((key, f"a key of {at}"))
                    inner.append((element, f"{at}[{key!r}]"))
            else:
                inner.extend((element, f"{at}[{i}]") for i, element in enumerate(item))
            stack.extend(reversed(inner))  # the first in order is found first
    return None


def check_utf8(value: Any, field: str) -> None:
    """Refuse ``value`` (the job setting ``field``) if any of its text cannot be encoded as UTF-8."""
    where = unencodable(value, field)
    if where is not None:
        raise JobValidationError(
            f"{where}: the text cannot be encoded as UTF-8, which every backend and every job "
            "file needs (a lone surrogate usually comes from decoding bytes with errors="
            "'surrogateescape'); fix or remove that character"
        )
