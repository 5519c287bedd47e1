"""The HTTP layer: one aiohttp session per client, retries, deadlines, error mapping, secrets.

This is the only module of the SDK (besides ``testing/``) that imports aiohttp. Adapters call
:class:`HttpClient`; they never sleep, retry or see an aiohttp exception.

What it guarantees
    - **One session.** :meth:`HttpClient.start` creates the one ``aiohttp.ClientSession`` (pooled
      connections, DNS cache); :meth:`HttpClient.aclose` closes it. No background tasks.
    - **Retries are decided by a pure function**, :meth:`RetryPolicy.decide`, tested against a table:
      429 always (the server did not process it); 408/500/502/503/504 and failures after the request
      may have reached the server only when the request is idempotent; failures before anything was
      sent (refused, DNS) always; certificate/TLS failures never. Waits are capped exponential
      backoff with full jitter, or ``Retry-After`` when longer.
    - **A deadline is a deadline.** The caller's anyio deadline caps every request's timeout, and a
      wait that would end after it is not started: the typed error of the last attempt is raised at
      once.
    - **Every failure is one SDK error** (:func:`map_exception`, :func:`error_for_status`), with the
      vendor's own message and code extracted from its error body.
    - **Secrets stay secret.** :class:`Secret` values are revealed only when put on the wire; they are
      never logged, never in a repr or an exception message (known secret values are also scrubbed
      from vendor messages that echo them), and credential headers are dropped when a redirect leaves
      the origin. Query strings never appear in messages or logs.
"""

from __future__ import annotations

import codecs
import email.utils
import functools
import ipaddress
import json as jsonlib
import logging
import math
import random
import re
from collections import deque
from collections.abc import Awaitable, Callable, Container, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import Any, Final, Literal, NoReturn, Self

import aiohttp
import anyio
import orjson
from multidict import CIMultiDict
from yarl import URL

from .exceptions import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    NotFoundError,
    ProtocolError,
    RateLimitedError,
    SdkError,
    SdkNotStartedError,
    ServerError,
)

__all__ = [
    "HttpClient",
    "Response",
    "RetryPolicy",
    "Secret",
    "error_for_status",
    "extract_vendor_error",
    "is_loopback_host",
    "map_exception",
    "parse_retry_after",
]

logger = logging.getLogger("oqc_style_sdk.http")

try:
    _SDK_VERSION = version("oqc-style-sdk")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    _SDK_VERSION = "0"

DEFAULT_USER_AGENT: Final = f"oqc-style-sdk/{_SDK_VERSION} aiohttp/{aiohttp.__version__}"

#: Methods that may be repeated without changing the outcome (RFC 9110 §9.2.2).
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
_OK: Final = range(200, 300)
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS: Final = 10
#: Header names whose values are credentials even when given as plain strings.
_CREDENTIAL_HEADERS: Final = frozenset(
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
_MESSAGE_LIMIT: Final = 300
_JSON_PARSE_LIMIT: Final = 1_000_000
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_DELTA_SECONDS = re.compile(r"^\+?\d+(\.\d+)?$", re.ASCII)
_NEGATIVE_SECONDS = re.compile(r"^-\d+(\.\d+)?$", re.ASCII)
_CHARSET = re.compile(r"charset\s*=\s*\"?([A-Za-z0-9._:-]+)", re.IGNORECASE)
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_WHITESPACE = re.compile(r"\s+")


# --------------------------------------------------------------------------------------------------
# Secret


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


# --------------------------------------------------------------------------------------------------
# Retry policy (pure)

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


def _retry_after_from(headers: Mapping[str, str], now: datetime) -> float | None:
    """Retry-After, preferring Azure's millisecond headers when present."""
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        raw = headers.get(name)
        if raw is not None and _DELTA_SECONDS.match(raw.strip()):
            return float(raw.strip()) / 1000.0
    return parse_retry_after(headers.get("Retry-After"), now)


# --------------------------------------------------------------------------------------------------
# Response


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
    """

    __slots__ = ("_url", "body", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes, url: str | Callable[[], str]):
        self.status = status
        self.headers = headers
        self.body = body
        self._url = url

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
            return loads_json(self.body)
        except (ValueError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, jsonlib.JSONDecodeError) else type(exc).__name__
            raise ProtocolError(
                f"{self.url} answered {self.status} with a body that is not JSON ({reason})",
                status=self.status,
            ) from exc

    def text(self) -> str:
        """The body decoded with the charset of its Content-Type (UTF-8 by default)."""
        return self.body.decode(_charset(self.headers), errors="replace")


def _charset(headers: Mapping[str, str]) -> str:
    match = _CHARSET.search(headers.get("Content-Type", ""))
    if match:
        try:
            return codecs.lookup(match.group(1)).name
        except LookupError:
            pass
    return "utf-8"


# --------------------------------------------------------------------------------------------------
# Vendor error bodies and status mapping


def _shorten(text: str, limit: int = _MESSAGE_LIMIT) -> str:
    text = _WHITESPACE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _as_text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    return None


def _as_code(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return _as_text(value)


def _from_list(items: list[Any]) -> tuple[str | None, str | None]:
    messages: list[str] = []
    code: str | None = None
    for item in items:
        if isinstance(item, str) and item.strip():
            messages.append(item)
        elif isinstance(item, dict):
            text = _as_text(item.get("message")) or _as_text(item.get("msg")) or _as_text(item.get("detail"))
            if text:
                messages.append(text)
            if code is None:
                code = _as_code(item.get("code")) or _as_code(item.get("error_code"))
    return ("; ".join(messages[:3]) or None), code


def _from_json(doc: Any) -> tuple[str | None, str | None]:
    if isinstance(doc, str):
        return _as_text(doc), None
    if isinstance(doc, list):
        return _from_list(doc)
    if not isinstance(doc, dict):
        return None, None
    error = doc.get("error")
    if isinstance(error, dict):  # Azure {"error": {"code", "message"}}, and many others
        message, code = _as_text(error.get("message")), _as_code(error.get("code"))
        if message or code:
            return message, code
    if isinstance(doc.get("errors"), list):  # IBM {"errors": [{"code", "message"}]}
        message, code = _from_list(doc["errors"])
        if message or code:
            return message, code
    inner = doc.get("response")
    if isinstance(inner, dict) and isinstance(inner.get("errors"), list):  # OQC (Flask-Security)
        message, code = _from_list(inner["errors"])
        if message or code:
            return message, code
    code = _as_code(doc.get("error_code")) or _as_code(doc.get("code"))  # Databricks: error_code
    message = (
        _as_text(doc.get("message"))
        or _as_text(doc.get("error_description"))
        or _as_text(doc.get("detail"))
        or _as_text(doc.get("title"))
    )
    if isinstance(error, str) and error.strip():
        if message:
            code = code or error  # {"error": "<code>", "message": "..."}
        else:
            message = error
    if message is None and isinstance(doc.get("detail"), list):  # FastAPI validation errors
        message, list_code = _from_list(doc["detail"])
        code = code or list_code
    return message, code


def extract_vendor_error(
    body: bytes, headers: Mapping[str, str] | None = None
) -> tuple[str | None, str | None, Any]:
    """``(message, code, parsed_json)`` from an error body, whatever the vendor's shape.

    Understands ``{"message"}``, ``{"error": {"message", "code"}}`` (Azure and others),
    ``{"error_code", "message"}`` and ``{"error": "...", ...}`` (Databricks, OAuth), ``{"errors": [...]}``
    (IBM), ``{"response": {"errors": [...]}}`` (OQC), ``{"detail": ...}``, and short plain text
    (Windmill); the message is shortened to about 300 characters. The code falls back to Azure's
    ``x-ms-error-code`` header.
    """
    headers = headers or {}
    message: str | None = None
    code: str | None = None
    parsed: Any = None
    stripped = body.strip()
    if stripped and len(stripped) <= _JSON_PARSE_LIMIT and stripped[:1] in (b"{", b"[", b'"'):
        try:
            parsed = jsonlib.loads(stripped)
        except (ValueError, RecursionError):
            parsed = None
        else:
            message, code = _from_json(parsed)
    if parsed is None and stripped:
        text = stripped[:4096].decode(_charset(headers), errors="replace")
        if text.lstrip().startswith("<"):  # an HTML error page (a proxy's): its title at most
            title = _HTML_TITLE.search(text)
            message = _as_text(title.group(1)) if title else None
        else:
            message = _as_text(text)
    if code is None:
        code = _as_code(headers.get("x-ms-error-code"))
    return (_shorten(message) if message else None), code, parsed


def _scrub(value: Any, redact: Callable[[str], str]) -> Any:
    """``value`` (parsed JSON) with every string passed through ``redact``."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_scrub(item, redact) for item in value]
    if isinstance(value, dict):
        return {key: _scrub(item, redact) for key, item in value.items()}
    return value


def error_for_status(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    vendor: str,
    method: str,
    path: str,
    retry_after_s: float | None = None,
    redact: Callable[[str], str] = lambda text: text,
) -> BackendError:
    """The SDK error for a non-ok answer.

    401/403 → AuthenticationError, 404 → NotFoundError, 429 → RateLimitedError, 5xx → ServerError,
    anything else → BackendError; each with ``status``, ``vendor_code`` and the parsed body as
    ``details``. The message is ``"{vendor} answered {status} to {METHOD} {path}: {vendor message}"``.
    """
    vendor_message, code, parsed = extract_vendor_error(body, headers)
    if vendor_message is None:
        try:
            vendor_message = HTTPStatus(status).phrase
        except ValueError:
            vendor_message = "no message"
    message = redact(f"{vendor} answered {status} to {method} {path}: {vendor_message}")
    kw: dict[str, Any] = {"status": status, "vendor_code": code, "details": _scrub(parsed, redact)}
    error: BackendError
    if status in (401, 403):
        error = AuthenticationError(message, **kw)
    elif status == 404:
        error = NotFoundError(message, **kw)
    elif status == 429:
        error = RateLimitedError(message, retry_after_s=retry_after_s, **kw)
    elif 500 <= status <= 599:
        error = ServerError(message, **kw)
    else:
        error = BackendError(message, **kw)
        if status == 408:
            error.transient = True
    return error


# --------------------------------------------------------------------------------------------------
# Exception mapping


class RedactedTransportError(Exception):
    """Stands in as ``__cause__`` for an aiohttp exception whose text or attributes could carry a query
    string or request headers (``ClientResponseError`` and its subclasses, ``InvalidURL``)."""


def _strerror(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__


def _unavailable_phrase(exc: BaseException, timeout_s: float | None) -> tuple[str, bool] | None:
    """``(what went wrong, transient)`` for the failures that make a backend unavailable, else None.

    Order matters: aiohttp's classes inherit from one another.
    """
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"its TLS certificate was not accepted ({exc.certificate_error})", False
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"the TLS handshake failed ({_strerror(exc.os_error)})", False
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return "its TLS certificate fingerprint does not match", False
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve host {exc.host} ({_strerror(exc.os_error)})", True
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return f"cannot connect to the proxy {exc.host}:{exc.port} ({_strerror(exc.os_error)})", True
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({_strerror(exc.os_error)})", True
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "timed out connecting", True
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        limit = f" within {timeout_s:g} s" if timeout_s is not None else ""
        return f"timed out waiting for the answer{limit}", True
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection before answering", True
    if isinstance(exc, aiohttp.ClientOSError | aiohttp.ClientConnectionError):
        detail = _strerror(exc) if isinstance(exc, OSError) else (str(exc) or type(exc).__name__)
        return f"the connection failed ({detail})", True
    return None


def map_exception(
    exc: BaseException,
    *,
    vendor: str,
    method: str,
    path: str,
    timeout_s: float | None = None,
) -> SdkError:
    """The SDK error for a transport failure of ``method path`` (the caller chains ``exc``).

    Connection, TLS, DNS, timeout and disconnect failures → BackendUnavailableError (``transient``
    False for TLS); an incomplete body → ProtocolError (transient); not JSON or too many redirects →
    ProtocolError; a bad URL → ConfigurationError; any other aiohttp error → BackendError.
    """
    where = f"{method} {path}"
    unavailable = _unavailable_phrase(exc, timeout_s)
    error: SdkError
    if unavailable is not None:
        phrase, transient = unavailable
        unreachable = BackendUnavailableError(f"cannot reach {vendor} ({where}): {phrase}")
        if not transient:
            unreachable.transient = False
        error = unreachable
    elif isinstance(exc, aiohttp.ClientPayloadError):
        incomplete = ProtocolError(f"{vendor} sent an incomplete or malformed answer to {where}: {exc}")
        incomplete.transient = True
        error = incomplete
    elif isinstance(exc, aiohttp.ContentTypeError | jsonlib.JSONDecodeError):
        error = ProtocolError(f"{vendor} answered {where} with a body that is not JSON")
    elif isinstance(exc, aiohttp.InvalidURL):
        error = ConfigurationError(f"invalid URL for {vendor} ({method} request)")
    elif isinstance(exc, aiohttp.TooManyRedirects):
        error = ProtocolError(f"{vendor} redirected {where} too many times")
    elif isinstance(exc, aiohttp.ClientResponseError):
        error = BackendError(
            f"{where} to {vendor} failed: {type(exc).__name__} {exc.status}", status=exc.status
        )
    else:
        error = BackendError(f"{where} to {vendor} failed: {type(exc).__name__}")
    return error


def _safe_cause(exc: BaseException) -> BaseException:
    """``exc`` itself, unless its text or attributes may carry a query string or request headers."""
    if isinstance(exc, aiohttp.ClientResponseError):
        # request_info holds the request headers (tokens) and str() the full URL with its query.
        return RedactedTransportError(f"{type(exc).__module__}.{type(exc).__qualname__}: status {exc.status}")
    if isinstance(exc, aiohttp.InvalidURL):
        return RedactedTransportError(f"{type(exc).__module__}.{type(exc).__qualname__}")
    return exc


# --------------------------------------------------------------------------------------------------
# URLs


def is_loopback_host(host: str) -> bool:
    """``localhost`` or an address in 127.0.0.0/8 or ::1."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url: URL, *, allow_insecure_http: bool, what: str) -> None:
    """http(s), a host, no credentials; plain http only to loopback unless allowed."""
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"{what} must be an http(s) URL with a host")
    if url.user is not None or url.password is not None:
        raise ConfigurationError(f"{what} must not carry credentials; pass them as headers")
    if url.scheme == "http" and not allow_insecure_http and not is_loopback_host(url.host):
        raise ConfigurationError(
            f"{what} uses plain http to {url.host}: credentials would cross the network in clear; "
            "use https (or allow_insecure_http=True for a trusted network)"
        )


def _display_url(url: URL) -> str:
    return str(url.with_query(None).with_fragment(None).with_user(None))


#: Connections per client (aiohttp's pool), and so requests in flight at once.
_CONNECTIONS: Final = 100

_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


# --------------------------------------------------------------------------------------------------
# The client


class HttpClient:
    """One vendor endpoint: a pooled session, retries under the caller's deadline, typed errors.

    ``headers`` are sent on every request; ``auth()`` is awaited before every attempt for fresh
    credential headers; ``on_unauthorized()`` is awaited once on a 401 (e.g. to refresh a token) and
    the request is tried once more. Use as ``async with HttpClient(...) as http:`` or
    ``start()``/``aclose()``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        vendor: str,
        headers: Mapping[str, str | Secret] | None = None,
        auth: Callable[[], Awaitable[Mapping[str, str | Secret]]] | None = None,
        on_unauthorized: Callable[[], Awaitable[None]] | None = None,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        allow_insecure_http: bool = False,
        user_agent: str | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.strip():
            raise ConfigurationError(f"{vendor}: base_url must be an http(s) URL")
        try:
            parsed = URL(base_url.strip())
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"{vendor}: base_url is not a valid URL") from exc
        _check_url(parsed, allow_insecure_http=allow_insecure_http, what=f"{vendor} base_url")
        if parsed.raw_query_string or parsed.raw_fragment:
            raise ConfigurationError(
                f"{vendor} base_url must not have a query or fragment; pass query parameters per request"
            )
        for name, value in (("timeout_s", timeout_s), ("connect_timeout_s", connect_timeout_s)):
            if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
                raise ConfigurationError(f"{name} must be a positive number of seconds")
        self.vendor = vendor
        self.base_url: str = str(parsed).rstrip("/")
        self._allow_insecure_http = allow_insecure_http
        self._timeout_s = float(timeout_s)
        self._connect_timeout_s = float(connect_timeout_s)
        self._full_timeout = aiohttp.ClientTimeout(
            total=self._timeout_s, sock_connect=self._connect_timeout_s
        )
        self._retry = retry if retry is not None else RetryPolicy()
        self._rng = rng if rng is not None else random.Random()
        self._sleep = sleep
        self._auth = auth
        self._on_unauthorized = on_unauthorized
        self._user_agent = user_agent or DEFAULT_USER_AGENT
        # Known secret values, kept as Secrets, scrubbed from any text we produce.
        self._known_secrets: deque[Secret] = deque(maxlen=32)
        self._redaction_order: tuple[str, ...] | None = None
        self._seen_credentials: set[str] = set()
        # The header set of a request without per-request headers or an auth() callback, by
        # content type: built once, never changed (a redirect works on a copy).
        self._static_headers: dict[str | None, tuple[CIMultiDict[str], frozenset[str]]] = {}
        # Origins of absolute URLs already checked by _check_url.
        self._checked_origins: set[tuple[str, str | None, int | None]] = set()
        self._headers = self._validated_headers(headers or {})
        for header_name, header_value in self._headers.items():
            if isinstance(header_value, Secret) or header_name.lower() in _CREDENTIAL_HEADERS:
                self._remember(header_value)
        self._session: aiohttp.ClientSession | None = None
        # Requests beyond the connection limit wait here, cheaply, instead of as pending aiohttp
        # requests (thousands of jobs ending together would otherwise hold one each).
        self._slots: anyio.Semaphore | None = None
        self._requests_sent = 0

    def __repr__(self) -> str:
        return f"HttpClient(vendor={self.vendor!r}, base_url={self.base_url!r})"

    # -- lifetime ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the session (once). Connection limits suit thousands of jobs polled together."""
        if self._session is not None and not self._session.closed:
            return
        connector = aiohttp.TCPConnector(limit=_CONNECTIONS, ttl_dns_cache=300)
        self._slots = anyio.Semaphore(_CONNECTIONS)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout_s, sock_connect=self._connect_timeout_s),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            raise_for_status=False,
        )
        # aiohttp silently re-sends an idempotent request once when a connection drops
        # (ServerDisconnectedError/ClientOSError). RetryPolicy is the one place that decides retries
        # (and requests_sent counts every request), so that hidden retry is switched off; aiohttp's
        # own test client does the same.
        if hasattr(self._session, "_retry_connection"):
            self._session._retry_connection = False

    async def aclose(self) -> None:
        """Close the session; the client cannot send until started again."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent (every attempt, every redirect hop, every reachability check)."""
        return self._requests_sent

    # -- verbs ---------------------------------------------------------------------------------------

    async def get(self, url: str, **kw: Any) -> Response:
        return await self.request("GET", url, **kw)

    async def post(self, url: str, **kw: Any) -> Response:
        return await self.request("POST", url, **kw)

    async def put(self, url: str, **kw: Any) -> Response:
        return await self.request("PUT", url, **kw)

    async def delete(self, url: str, **kw: Any) -> Response:
        return await self.request("DELETE", url, **kw)

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str | Secret] | None = None,
        idempotent: bool | None = None,
        ok: Container[int] = _OK,
    ) -> Response:
        """Send a request, retrying as :class:`RetryPolicy` decides; the answer if its status is ok.

        ``url`` is a path joined to ``base_url`` or an absolute http(s) URL. ``json`` is sent compact;
        ``data`` raw. ``idempotent`` defaults by method (POST: False); pass True for a POST that
        carries an idempotency key or a client-chosen id. Any other status raises its SDK error.
        """
        session = self._require_session()
        method = method.upper()
        target = self._resolve(url, params)
        path = self._redact(target.path)
        extra = self._validated_headers(headers) if headers else {}
        body: bytes | None = data
        content_type: str | None = None
        if json is not None:
            if data is not None:
                raise ConfigurationError("pass either json or data, not both")
            body = jsonlib.dumps(json, separators=(",", ":"), allow_nan=False).encode()
            content_type = "application/json"
        is_idempotent = idempotent if idempotent is not None else method in IDEMPOTENT_METHODS
        policy = self._retry
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            wire_headers, credential_names = await self._headers_for(extra, content_type)
            status: int | None = None
            transport_error: BaseException | None = None
            retry_after: float | None = None
            timeout = self._request_timeout()
            try:
                response = await self._send(
                    session, method, target, wire_headers, credential_names, body, ok, attempt, timeout, path
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                transport_error = exc
                error: SdkError = self._map(exc, method=method, path=path, timeout_s=timeout.total)
            else:
                if response.status in ok:
                    return response
                status = response.status
                if status == 401 and self._on_unauthorized is not None and not refreshed:
                    refreshed = True
                    logger.debug(
                        "%s %s answered 401; refreshing credentials and trying once more", method, path
                    )
                    await self._on_unauthorized()
                    continue
                if status in (429, 503):
                    retry_after = _retry_after_from(response.headers, datetime.now(UTC))
                error = error_for_status(
                    status,
                    response.headers,
                    response.body,
                    vendor=self.vendor,
                    method=method,
                    path=path,
                    retry_after_s=retry_after,
                    redact=self._redact,
                )
            remaining = self._remaining()
            wait = policy.decide(
                attempt=attempt,
                method_idempotent=is_idempotent,
                status=status,
                error=transport_error,
                retry_after_s=retry_after,
                remaining_s=remaining,
                rng=self._rng,
            )
            outcome = str(status) if status is not None else type(transport_error).__name__
            if wait is None:
                logger.debug(
                    "not retrying %s %s after attempt %d (%s; idempotent=%s, retry_after=%s, remaining=%s)",
                    method,
                    path,
                    attempt,
                    outcome,
                    is_idempotent,
                    _fmt_s(retry_after),
                    _fmt_s(remaining),
                )
                raise error
            logger.debug(
                "retrying %s %s in %.3f s (attempt %d of %d: %s)",
                method,
                path,
                wait,
                attempt,
                policy.max_attempts,
                outcome,
            )
            await self._sleep(wait)

    async def check_reachable(self, url: str = "/") -> None:
        """Start-up check: one GET without credentials; any HTTP answer counts as reachable.

        A refused, unresolvable or timed-out connection raises :class:`BackendUnavailableError`
        ``"cannot reach {vendor} at {base_url}: …"`` at once, without retries.
        """
        session = self._require_session()
        target = self._resolve(url, None)
        path = self._redact(target.path)
        timeout = self._request_timeout()
        self._requests_sent += 1
        started = anyio.current_time()
        failure: SdkError | None = None
        try:
            async with session.request(
                "GET",
                target,
                headers={"User-Agent": self._user_agent},
                allow_redirects=False,
                timeout=timeout,
            ) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            unavailable = _unavailable_phrase(exc, timeout.total)
            if unavailable is None:
                failure = self._map(exc, method="GET", path=path, timeout_s=timeout.total)
            else:
                phrase, transient = unavailable
                unreachable = BackendUnavailableError(
                    self._redact(f"cannot reach {self.vendor} at {self.base_url}: {phrase}")
                )
                unreachable.transient = transient
                failure = self._chain(unreachable, exc)
        if failure is not None:  # raised here, outside the except block: no implicit __context__
            logger.debug(
                "GET %s -> %s in %d ms (reachability check)", path, type(failure).__name__, _ms_since(started)
            )
            raise failure
        logger.debug("GET %s -> %d in %d ms (reachability check)", path, status, _ms_since(started))

    # -- internals -----------------------------------------------------------------------------------

    def _require_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            raise SdkNotStartedError(
                f"the HTTP client for {self.vendor} is not started: use `async with` (or start()) first"
            )
        return session

    def _map(self, exc: BaseException, *, method: str, path: str, timeout_s: float | None) -> SdkError:
        """map_exception, scrubbed of known secrets, with ``exc`` chained as ``__cause__``."""
        error = map_exception(exc, vendor=self.vendor, method=method, path=path, timeout_s=timeout_s)
        redacted = self._redact(str(error))
        if redacted != str(error):
            error.args = (redacted, *error.args[1:])
        return self._chain(error, exc)

    def _chain(self, error: SdkError, exc: BaseException) -> SdkError:
        cause = _safe_cause(exc)
        text = str(cause)
        if self._redact(text) != text:  # e.g. a server echoing a token into a transport error
            cause = RedactedTransportError(
                f"{type(exc).__module__}.{type(exc).__qualname__}: {self._redact(text)}"
            )
        error.__cause__ = cause
        error.__suppress_context__ = True
        return error

    def _resolve(self, url: str, params: Mapping[str, str | int] | None) -> URL:
        if _ABSOLUTE.match(url):
            try:
                target = URL(url)
            except (ValueError, TypeError) as exc:
                raise ConfigurationError(f"not a valid URL for {self.vendor}") from exc
            origin = (target.scheme, target.host, target.port)
            if origin not in self._checked_origins or target.user is not None or target.password is not None:
                _check_url(
                    target, allow_insecure_http=self._allow_insecure_http, what=f"a URL for {self.vendor}"
                )
                if len(self._checked_origins) < 64:
                    self._checked_origins.add(origin)
        else:
            if url.startswith("//"):
                raise ConfigurationError("a scheme-relative URL is ambiguous; pass a path or a full URL")
            try:
                target = URL(self.base_url + (url if url.startswith("/") else "/" + url))
            except (ValueError, TypeError) as exc:
                raise ConfigurationError(f"not a valid path for {self.vendor}") from exc
        if target.raw_fragment:
            target = target.with_fragment(None)
        if params:
            target = target.extend_query({key: _query_value(value) for key, value in params.items()})
        return target

    def _validated_headers(self, headers: Mapping[str, str | Secret]) -> dict[str, str | Secret]:
        checked: dict[str, str | Secret] = {}
        for name, value in headers.items():
            if not isinstance(name, str) or not _HEADER_NAME.match(name):
                raise ConfigurationError(f"invalid header name {name!r}")
            if not isinstance(value, str | Secret):
                raise ConfigurationError(f"header {name} must be a str or a Secret")
            raw = value.reveal() if isinstance(value, Secret) else value
            if "\r" in raw or "\n" in raw or "\0" in raw:
                raise ConfigurationError(f"header {name} contains a line break")
            checked[name] = value
        return checked

    def _remember(self, value: str | Secret) -> None:
        raw = value.reveal() if isinstance(value, Secret) else value
        if raw in self._seen_credentials:  # every request sends the same few: known already
            return
        if len(self._seen_credentials) >= 4 * self._known_secrets.maxlen:  # type: ignore[operator]
            self._seen_credentials.clear()
        self._seen_credentials.add(raw)
        candidates = [raw]
        scheme, _, credential = raw.partition(" ")
        if credential and scheme.isalpha():  # "Bearer xyz": the token alone, too
            candidates.append(credential.strip())
        for candidate in candidates:
            if len(candidate) < 4:
                continue
            secret = Secret(candidate)
            if secret not in self._known_secrets:
                self._known_secrets.append(secret)
                self._redaction_order = None

    def _display(self, url: URL) -> str:
        return self._redact(_display_url(url))

    def _redact(self, text: str) -> str:
        order = self._redaction_order
        if order is None:  # longest first, so a token inside a longer secret does not split it
            order = self._redaction_order = tuple(
                sorted((s.reveal() for s in self._known_secrets), key=len, reverse=True)
            )
        for value in order:
            if value in text:
                text = text.replace(value, "***")
        return text

    async def _headers_for(
        self, extra: Mapping[str, str | Secret], content_type: str | None
    ) -> tuple[CIMultiDict[str], frozenset[str]]:
        """Headers of one attempt, revealed; and the names of those that are credentials."""
        static = self._auth is None and not extra
        if static:
            cached = self._static_headers.get(content_type)
            if cached is not None:
                return cached
        layers: list[tuple[Mapping[str, str | Secret], bool]] = [(self._headers, False)]
        if self._auth is not None:
            layers.append((self._validated_headers(await self._auth()), True))
        layers.append((extra, False))
        wire: CIMultiDict[str] = CIMultiDict({"User-Agent": self._user_agent})
        if content_type is not None:
            wire["Content-Type"] = content_type
        credentials: set[str] = set()
        for layer, from_auth in layers:
            for name, value in layer.items():
                lowered = name.lower()
                if from_auth or isinstance(value, Secret) or lowered in _CREDENTIAL_HEADERS:
                    credentials.add(lowered)
                    self._remember(value)
                else:
                    credentials.discard(lowered)
                wire[name] = value.reveal() if isinstance(value, Secret) else value
        result = wire, frozenset(credentials)
        if static:
            self._static_headers[content_type] = result
        return result

    def _remaining(self) -> float | None:
        deadline = anyio.current_effective_deadline()
        if math.isinf(deadline):
            return None
        return deadline - anyio.current_time()

    def _request_timeout(self) -> aiohttp.ClientTimeout:
        remaining = self._remaining()
        if remaining is None or remaining >= self._timeout_s:
            return self._full_timeout
        return aiohttp.ClientTimeout(total=max(remaining, 0.001), sock_connect=self._connect_timeout_s)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        credential_names: frozenset[str],
        body: bytes | None,
        ok: Container[int],
        attempt: int,
        client_timeout: aiohttp.ClientTimeout,
        path: str,
    ) -> Response:
        """One attempt: the request and the redirects it is answered with. They are followed here,
        not by aiohttp, so that credentials never follow a redirect to another origin or to plain
        http (aiohttp drops only ``Authorization``)."""
        slots = self._slots if self._slots is not None else anyio.Semaphore(1)
        try:  # a free slot is taken at once, without a trip through the event loop
            slots.acquire_nowait()
            waited = False
        except anyio.WouldBlock:
            waited = True
        if waited:  # (waited for outside the except clause: the WouldBlock is not kept meanwhile)
            await slots.acquire()
        try:
            debug = logger.isEnabledFor(logging.DEBUG)
            for hop in range(_MAX_REDIRECTS + 1):
                self._requests_sent += 1
                started = anyio.current_time() if debug else 0.0
                location: str | None = None
                if hop:  # the first hop's timeout was made for it; a later hop gets what is left
                    client_timeout = self._request_timeout()
                try:
                    async with session.request(
                        method,
                        url,
                        headers=headers,
                        data=body,
                        allow_redirects=False,
                        timeout=client_timeout,
                    ) as response:
                        status = response.status
                        if status in _REDIRECT_STATUSES and status not in ok:
                            location = response.headers.get("Location")
                        if location is None:
                            payload = await response.read()
                            if debug:
                                logger.debug(
                                    "%s %s -> %d in %d ms (attempt %d)",
                                    method,
                                    path,
                                    status,
                                    _ms_since(started),
                                    attempt,
                                )
                            return Response(
                                status=status,
                                headers=response.headers,
                                body=payload,
                                url=functools.partial(self._display, response.url),
                            )
                except (aiohttp.ClientError, TimeoutError) as exc:
                    if debug:
                        logger.debug(
                            "%s %s -> %s after %d ms (attempt %d)",
                            method,
                            path,
                            type(exc).__name__,
                            _ms_since(started),
                            attempt,
                        )
                    raise
                if debug:
                    logger.debug(
                        "%s %s -> %d redirect in %d ms (attempt %d)",
                        method,
                        path,
                        status,
                        _ms_since(started),
                        attempt,
                    )
                url, method, body, headers = self._follow(
                    url, location, status, method, body, headers, credential_names, path
                )
                path = self._redact(url.path)
            raise ProtocolError(f"{self.vendor} redirected {method} {path} more than {_MAX_REDIRECTS} times")
        finally:
            slots.release()

    def _follow(
        self,
        url: URL,
        location: str,
        status: int,
        method: str,
        body: bytes | None,
        headers: CIMultiDict[str],
        credential_names: frozenset[str],
        path: str,
    ) -> tuple[URL, str, bytes | None, CIMultiDict[str]]:
        try:
            target = url.join(URL(location)).with_fragment(None)
        except (ValueError, TypeError):
            raise ProtocolError(f"{self.vendor} redirected {method} {path} to an invalid URL") from None
        try:
            _check_url(target, allow_insecure_http=self._allow_insecure_http, what="redirect target")
        except ConfigurationError as exc:
            raise ProtocolError(
                f"{self.vendor} redirected {method} {path} to a URL this client refuses: {exc}"
            ) from None
        headers = headers.copy()
        if target.origin() != url.origin():
            for name in credential_names | _CREDENTIAL_HEADERS:
                headers.popall(name, None)
        if status == 303 or (status in (301, 302) and method == "POST"):
            method = "GET" if method != "HEAD" else method
            body = None
            headers.popall("Content-Type", None)
        return target, method, body, headers


def _query_value(value: str | int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _ms_since(started: float) -> int:
    return round((anyio.current_time() - started) * 1000)


def _fmt_s(value: float | None) -> str:
    return "none" if value is None else f"{value:.3f}s"
