"""A complete HTTP answer, and JSON read fast but as the standard library would."""

from __future__ import annotations

import codecs
import json as jsonlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from ..exceptions import ProtocolError
from .secrets import KnownSecrets, scrub

__all__ = ["Response", "charset_of", "loads_json"]

_CHARSET = re.compile(r"charset\s*=\s*\"?([A-Za-z0-9._:-]+)", re.IGNORECASE)


def loads_json(data: bytes) -> Any:
    """JSON as the standard library reads it, fast: orjson parses what it can (big task lists
    are read on every poll tick), and anything it refuses — NaN, integers beyond 64 bits, lone
    surrogates, very deep nesting — is read by :func:`json.loads`, which decides."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return jsonlib.loads(data)


class Response:
    """A complete HTTP answer (body read). ``url`` has no query string and no credentials.

    ``url`` may be given as a function, called on first use: most answers never need it (it is
    for messages), and building it costs more than the rest of the answer.

    With ``secrets``, the body is scrubbed of them as it arrives: whatever the SDK keeps of what a
    vendor says (a task's error message, a status, a result, a log line) is built from scrubbed
    text, for every vendor, here once.
    """

    __slots__ = ("_secrets", "_url", "body", "headers", "status")

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        url: str | Callable[[], str],
        secrets: KnownSecrets | None = None,
    ):
        self.status = status
        self.headers = headers
        self.body = body if secrets is None else secrets.redact_bytes(body)
        self._url = url
        self._secrets = secrets

    @property
    def url(self) -> str:
        if not isinstance(self._url, str):
            self._url = self._url()
        return self._url

    def __repr__(self) -> str:
        return f"Response(status={self.status}, url={self.url!r}, {len(self.body)} bytes)"

    def json(self) -> Any:
        """The body parsed as JSON; :class:`ProtocolError` (with ``status``) if it is not JSON."""
        if not self.body or self.body.isspace():
            raise ProtocolError(
                f"{self.url} answered {self.status} with an empty body where JSON was expected",
                status=self.status,
            )
        try:
            value = loads_json(self.body)
        except (ValueError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, jsonlib.JSONDecodeError) else type(exc).__name__
            raise ProtocolError(
                f"{self.url} answered {self.status} with a body that is not JSON ({reason})",
                status=self.status,
            ) from exc
        if self._secrets is not None and self._secrets.may_hide(self.body):
            value = scrub(value, self._secrets.redact)
        return value

    def text(self) -> str:
        """The body decoded with the charset of its Content-Type (UTF-8 by default)."""
        text = self.body.decode(charset_of(self.headers), errors="replace")
        return text if self._secrets is None else self._secrets.redact(text)


def charset_of(headers: Mapping[str, str]) -> str:
    match = _CHARSET.search(headers.get("Content-Type", ""))
    if match:
        try:
            return codecs.lookup(match.group(1)).name
        except LookupError:
            pass
    return "utf-8"
