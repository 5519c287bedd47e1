"""Every failure as one SDK error: vendor error bodies read, statuses and transport failures mapped.

:func:`error_for_status` turns a non-ok answer into its typed error with the vendor's own message and
code (:func:`extract_vendor_error` knows each vendor's error shape); :func:`map_exception` does the
same for a transport failure. Neither lets a query string or a request header into a message.
"""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, Final

import aiohttp

from ..exceptions import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    NotFoundError,
    ProtocolError,
    RateLimitedError,
    SdkError,
    ServerError,
)
from .response import charset_of
from .secrets import scrub

__all__ = [
    "RedactedTransportError",
    "error_for_status",
    "extract_vendor_error",
    "map_exception",
    "safe_cause",
    "unavailable_phrase",
]

_MESSAGE_LIMIT: Final = 300
_JSON_PARSE_LIMIT: Final = 1_000_000
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_WHITESPACE = re.compile(r"\s+")


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
        text = stripped[:4096].decode(charset_of(headers), errors="replace")
        if text.lstrip().startswith("<"):  # an HTML error page (a proxy's): its title at most
            title = _HTML_TITLE.search(text)
            message = _as_text(title.group(1)) if title else None
        else:
            message = _as_text(text)
    if code is None:
        code = _as_code(headers.get("x-ms-error-code"))
    return (_shorten(message) if message else None), code, parsed


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
    kw: dict[str, Any] = {"status": status, "vendor_code": code, "details": scrub(parsed, redact)}
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


class RedactedTransportError(Exception):
    """Stands in as ``__cause__`` for an aiohttp exception whose text or attributes could carry a query
    string or request headers (``ClientResponseError`` and its subclasses, ``InvalidURL``)."""


def _strerror(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__


def unavailable_phrase(exc: BaseException, timeout_s: float | None) -> tuple[str, bool] | None:
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
    unavailable = unavailable_phrase(exc, timeout_s)
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


def safe_cause(exc: BaseException) -> BaseException:
    """``exc`` itself, unless its text or attributes may carry a query string or request headers."""
    if isinstance(exc, aiohttp.ClientResponseError):
        # request_info holds the request headers (tokens) and str() the full URL with its query.
        return RedactedTransportError(f"{type(exc).__module__}.{type(exc).__qualname__}: status {exc.status}")
    if isinstance(exc, aiohttp.InvalidURL):
        return RedactedTransportError(f"{type(exc).__module__}.{type(exc).__qualname__}")
    return exc
