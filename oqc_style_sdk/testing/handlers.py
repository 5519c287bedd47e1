"""What vendor request handlers share: reading a JSON body or an integer query parameter, answering
404 for a lookup that came back empty, comparing a presented secret, reading a date-time.

Each vendor words its refusals its own way; these helpers keep the rule and take the words.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web

from .emulator import ApiError

__all__ = ["found", "query_int", "read_json", "same_secret", "utc_moment"]

_T = TypeVar("_T")


def found(value: _T | None, message: str) -> _T:
    """``value`` (what a handler looked up), or a 404 with the vendor's ``message`` when it is None."""
    if value is None:
        raise ApiError(404, message)
    return value


def utc_moment(text: str) -> datetime:
    """``text`` as an ISO 8601 date-time (:meth:`datetime.fromisoformat`), in UTC when it names no
    zone. Raises ValueError when it is not one (each vendor refuses that in its own words)."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def read_json(request: web.Request, not_json: Callable[[ValueError], Exception] | None = None) -> Any:
    """The request's JSON body, None when it is empty (or only white space).

    A body that is not JSON raises ``not_json(error)``: the vendor's own refusal (default: an
    :class:`ApiError` 400, "The request body is not valid JSON").
    """
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        if not_json is None:
            raise ApiError(400, "The request body is not valid JSON") from None
        raise not_json(exc) from None


def query_int(request: web.Request, name: str, default: int, not_int: Callable[[str], Exception]) -> int:
    """The query parameter ``name`` as an int, ``default`` when it is absent; ``not_int(raw)`` (the
    vendor's refusal) is raised when it is not an integer."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise not_int(raw) from None


def same_secret(given: str, expected: str) -> bool:
    """Compare a presented secret with the expected one in constant time (lone surrogates allowed)."""
    return secrets.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )
