"""Secrets: values that go on the wire and nowhere else.

:class:`Secret` wraps a token or key so that no repr, str, pickle or log line shows it.
:class:`KnownSecrets` remembers the credential values a client has sent, so that any text the SDK
keeps (an error message, a vendor's answer echoing a token) can be scrubbed of them.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any, Final, NoReturn

__all__ = ["CREDENTIAL_HEADERS", "KnownSecrets", "Secret", "scrub"]

#: Header names whose values are credentials even when given as plain strings.
CREDENTIAL_HEADERS: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "authentication-token",
        "cookie",
        "x-api-key",
        "api-key",
        "ocp-apim-subscription-key",
    }
)

#: Values shorter than this are not scrubbed: they would match ordinary text.
_MIN_SECRET_LENGTH: Final = 4


class Secret:
    """A token or key. Its repr and str are ``'***'``; :meth:`reveal` gives the value.

    It refuses to be pickled (so it cannot end up in a saved file by accident); copies are the same
    object, as it is immutable.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret takes a str")
        self._value = value

    def reveal(self) -> str:
        """The value itself: call only where it goes on the wire."""
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")


class KnownSecrets:
    """The last few credential values seen (kept as :class:`Secret`), and :meth:`redact` to scrub them.

    Bounded: a long-lived client whose tokens rotate keeps the newest ``limit`` values.
    """

    __slots__ = ("_byte_order", "_order", "_secrets", "_seen")

    def __init__(self, limit: int = 32) -> None:
        self._secrets: deque[Secret] = deque(maxlen=limit)
        self._order: tuple[str, ...] | None = None
        self._byte_order: tuple[bytes, ...] | None = None
        self._seen: set[str] = set()

    def __repr__(self) -> str:
        return f"KnownSecrets({len(self._secrets)} values)"

    def remember(self, value: str | Secret) -> None:
        """Remember a credential header value; for ``"<scheme> <credential>"``, the credential too."""
        raw = value.reveal() if isinstance(value, Secret) else value
        if raw in self._seen:  # every request sends the same few: known already
            return
        if len(self._seen) >= 4 * self._secrets.maxlen:  # type: ignore[operator]
            self._seen.clear()
        self._seen.add(raw)
        candidates = [raw]
        scheme, _, credential = raw.partition(" ")
        if credential and scheme.isalpha():  # "Bearer xyz": the token alone, too
            candidates.append(credential.strip())
        for candidate in candidates:
            if len(candidate) < _MIN_SECRET_LENGTH:
                continue
            secret = Secret(candidate)
            if secret not in self._secrets:
                self._secrets.append(secret)
                self._order = self._byte_order = None

    def redact(self, text: str) -> str:
        """``text`` with every known value replaced by ``***``."""
        for value in self._ordered():
            if value in text:
                text = text.replace(value, "***")
        return text

    def redact_bytes(self, data: bytes) -> bytes:
        """An answer's body with every known value replaced by ``***``: as sent, and as JSON
        escapes it (a token with a quote or backslash), so the body stays what it was otherwise."""
        order = self._byte_order
        if order is None:  # shortest first: a form that holds a shorter one needs no scan of its own
            forms = sorted({f.encode() for v in self._ordered() for f in (v, json.dumps(v)[1:-1])}, key=len)
            kept: list[bytes] = []
            for form in forms:
                if not any(shorter in form for shorter in kept):
                    kept.append(form)
            order = self._byte_order = tuple(kept)
        for value in order:
            if value in data:
                data = data.replace(value, b"***")
        return data

    def may_hide(self, data: bytes) -> bool:
        """Whether a JSON body could spell a known value in escapes (``\\u0074``, ``\\/``) that
        :meth:`redact_bytes` cannot see: its parsed value must then be scrubbed too."""
        # A backslash is looked for first: one byte is found at memchr's speed (a two-byte needle
        # is searched a byte at a time, some 50× slower), and most bodies have none.
        return bool(self._secrets) and b"\\" in data and (b"\\u" in data or b"\\/" in data)

    def _ordered(self) -> tuple[str, ...]:
        order = self._order
        if order is None:  # longest first, so a token inside a longer secret does not split it
            order = self._order = tuple(sorted((s.reveal() for s in self._secrets), key=len, reverse=True))
        return order


def scrub(value: Any, redact: Callable[[str], str]) -> Any:
    """``value`` (parsed JSON) with every string, keys included, passed through ``redact``."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [scrub(item, redact) for item in value]
    if isinstance(value, dict):
        return {
            redact(key) if isinstance(key, str) else key: scrub(item, redact) for key, item in value.items()
        }
    return value
