"""When to try a request again, and how long to wait: a pure rule, tested against a table.

429 always (the server did not process it); 408/500/502/503/504 and failures after the request may
have reached the server only when the request is idempotent; failures before anything was sent
(refused, DNS) always; certificate/TLS failures never. Waits are capped exponential backoff with full
jitter, or ``Retry-After`` when longer, and never past the caller's deadline.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

import aiohttp

from ..exceptions import BackendError, ConfigurationError

__all__ = ["IDEMPOTENT_METHODS", "RetryPolicy", "parse_retry_after", "retry_after_from"]

#: Methods that may be repeated without changing the outcome (RFC 9110 §9.2.2).
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
_DELTA_SECONDS = re.compile(r"^\+?\d+(\.\d+)?$", re.ASCII)
_NEGATIVE_SECONDS = re.compile(r"^-\d+(\.\d+)?$", re.ASCII)

_SentState = Literal["not_sent", "maybe_sent", "fatal"]


def _sent_state(error: BaseException) -> _SentState:
    """Whether a failed request may have reached the server.

    ``not_sent``: nothing reached the server, a retry is always safe. ``maybe_sent``: safe only for
    idempotent requests. ``fatal``: trying again will not help (TLS, bad URL, a bug).
    """
    if isinstance(error, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch):
        return "fatal"
    if isinstance(error, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return "not_sent"
    if isinstance(
        error,
        aiohttp.ServerTimeoutError
        | aiohttp.ServerDisconnectedError
        | aiohttp.ClientOSError
        | aiohttp.ClientPayloadError
        | aiohttp.ClientConnectionError
        | TimeoutError,
    ):
        return "maybe_sent"
    if isinstance(error, BackendError) and error.transient:
        return "maybe_sent"
    return "fatal"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry. :meth:`decide` is the whole rule, and it is pure."""

    max_attempts: int = 6
    base_delay_s: float = 0.2
    max_delay_s: float = 10.0
    max_retry_after_s: float = 120.0
    retry_statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("RetryPolicy.max_attempts must be at least 1")
        for name in ("base_delay_s", "max_delay_s", "max_retry_after_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigurationError(f"RetryPolicy.{name} must be a finite number >= 0")

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """Wait after failed attempt ``attempt`` (1-based): full jitter over a capped exponential."""
        exponent = min(max(attempt, 1) - 1, 64)
        cap = min(self.max_delay_s, self.base_delay_s * 2.0**exponent)
        return rng.uniform(0.0, cap)

    def decide(
        self,
        *,
        attempt: int,
        method_idempotent: bool,
        status: int | None,
        error: BaseException | None,
        retry_after_s: float | None,
        remaining_s: float | None,
        rng: random.Random,
    ) -> float | None:
        """Seconds to wait before the next try, or ``None``: stop and raise the last error.

        ``attempt`` is the 1-based number of the attempt that just failed; ``status`` its HTTP status
        (``None`` if it failed without one), ``error`` the raw transport exception (``None`` if it got
        an answer); ``remaining_s`` the time left before the caller's deadline (``None``: none).
        """
        if attempt >= self.max_attempts:
            return None
        if status is not None:
            if status not in self.retry_statuses:
                return None
            if status != 429 and not method_idempotent:
                return None
        elif error is not None:
            state = _sent_state(error)
            if state == "fatal" or (state == "maybe_sent" and not method_idempotent):
                return None
        else:
            return None
        if retry_after_s is not None and retry_after_s > self.max_retry_after_s:
            return None
        wait = self.backoff_s(attempt, rng)
        if retry_after_s is not None:
            wait = max(wait, retry_after_s)
        if remaining_s is not None and wait >= remaining_s:
            return None
        return wait


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """A ``Retry-After`` value in seconds: delta-seconds or an HTTP-date; garbage gives ``None``.

    A negative delay or a date in the past gives 0. ``now`` should be aware (naive means UTC).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.match(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    if _NEGATIVE_SECONDS.match(text):
        return 0.0
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def retry_after_from(headers: Mapping[str, str], now: datetime) -> float | None:
    """Retry-After, preferring Azure's millisecond headers when present."""
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        raw = headers.get(name)
        if raw is not None and _DELTA_SECONDS.match(raw.strip()):
            return float(raw.strip()) / 1000.0
    return parse_retry_after(headers.get("Retry-After"), now)
