"""The HTTP layer: retry decisions, Retry-After, deadlines, error mapping, secrets, wire details.

Wire details use aioresponses; dropped connections, slow answers, truncated bodies and redirects use
real servers on 127.0.0.1 (port 0). Nothing sleeps for real beyond a few tens of milliseconds: the
client's ``sleep`` is replaced by a recorder.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import email.utils
import json
import logging
import pickle
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web
from aiohttp.client_reqrep import ConnectionKey
from aioresponses import aioresponses
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from oqc_style_sdk._http import (
    HttpClient,
    Response,
    RetryPolicy,
    Secret,
    error_for_status,
    extract_vendor_error,
    map_exception,
    parse_retry_after,
)
from oqc_style_sdk.exceptions import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    NotFoundError,
    ProtocolError,
    RateLimitedError,
    SdkNotStartedError,
    ServerError,
)

BASE = "https://api.example.test"
TOKEN = "tok-5ecr3t-ABCDEF"


# --------------------------------------------------------------------------------------------------
# helpers


class _CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 does not pass aiohttp 3.14's new ``stream_writer`` argument
    (pnuckowski/aioresponses#289); supply a stand-in so mocked answers can be built."""

    def __init__(self, method: str, url: URL, **kw: Any) -> None:
        kw.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kw)


class mocked(aioresponses):
    def add(self, url: Any, method: str = "GET", *args: Any, **kw: Any) -> None:
        kw.setdefault("response_class", _CompatResponse)
        super().add(url, method, *args, **kw)


class SleepRecorder:
    """Stands in for ``anyio.sleep``: records the waits, does not wait."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await anyio.lowlevel.checkpoint()


def calls(m: aioresponses, method: str, url: str) -> list[Any]:
    """The recorded requests of ``method`` to ``url`` (query ignored: aioresponses sorts it)."""
    wanted = URL(url).with_query(None)
    found: list[Any] = []
    for (sent_method, sent_url), recorded in m.requests.items():
        if sent_method == method and sent_url.with_query(None) == wanted:
            found.extend(recorded)
    return found


def key(host: str = "api.example.test", port: int = 443) -> ConnectionKey:
    return ConnectionKey(host, port, True, True, None, None, None)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
async def make_client(sleeps: SleepRecorder) -> AsyncIterator[Callable[..., Awaitable[HttpClient]]]:
    made: list[HttpClient] = []

    async def make(base_url: str = BASE, **kw: Any) -> HttpClient:
        kw.setdefault("vendor", "acme")
        kw.setdefault("sleep", sleeps)
        kw.setdefault("rng", random.Random(7))
        client = HttpClient(base_url, **kw)
        await client.start()
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@contextlib.asynccontextmanager
async def web_server(routes: list[web.RouteDef]) -> AsyncIterator[str]:
    """A real aiohttp.web server on 127.0.0.1, port 0; yields its base URL."""
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        with anyio.fail_after(5):
            await runner.cleanup()


@contextlib.asynccontextmanager
async def raw_server(
    behave: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[tuple[str, list[int]]]:
    """A raw TCP server that misbehaves on purpose; yields its base URL and a connection counter."""
    seen: list[int] = []
    tasks: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        seen.append(1)
        try:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                await reader.readuntil(b"\r\n\r\n")
                await behave(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.close()
        with anyio.fail_after(5):
            await server.wait_closed()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------------
# Secret


def test_secret_hides_its_value() -> None:
    secret = Secret(TOKEN)
    assert repr(secret) == str(secret) == f"{secret}" == "***"
    assert TOKEN not in repr({"h": secret})
    assert secret.reveal() == TOKEN
    assert secret == Secret(TOKEN)
    assert secret != Secret("other")
    assert secret != TOKEN
    assert hash(secret) == hash(Secret(TOKEN))
    assert len({secret, Secret(TOKEN)}) == 1
    assert secret
    assert not Secret("")
    assert copy.deepcopy({"a": secret})["a"] is secret
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        Secret(123)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# RetryPolicy.decide — the retry decision table (pure)


def _cce() -> BaseException:
    return aiohttp.ClientConnectorError(key(), ConnectionRefusedError(111, "Connection refused"))


def _dns() -> BaseException:
    return aiohttp.ClientConnectorDNSError(key(), OSError(-2, "Name or service not known"))


def _cert() -> BaseException:
    return aiohttp.ClientConnectorCertificateError(key(), Exception("certificate verify failed"))


def _ssl() -> BaseException:
    return aiohttp.ClientSSLError(key(), OSError(1, "wrong version number"))


R = "retry"
DECIDE_TABLE: list[tuple[str, dict[str, Any], Any]] = [
    # statuses
    ("429 POST is always retried", {"status": 429, "method_idempotent": False}, R),
    ("429 GET", {"status": 429}, R),
    ("429 waits Retry-After when longer", {"status": 429, "retry_after_s": 3.0}, 3.0),
    ("429 Retry-After 0 gives backoff", {"status": 429, "retry_after_s": 0.0}, R),
    ("429 Retry-After too long: stop", {"status": 429, "retry_after_s": 121.0}, None),
    ("503 GET", {"status": 503}, R),
    ("503 GET waits Retry-After", {"status": 503, "retry_after_s": 2.0}, 2.0),
    ("503 POST", {"status": 503, "method_idempotent": False}, None),
    ("500 GET", {"status": 500}, R),
    ("500 POST", {"status": 500, "method_idempotent": False}, None),
    ("502 GET", {"status": 502}, R),
    ("504 GET", {"status": 504}, R),
    ("504 POST", {"status": 504, "method_idempotent": False}, None),
    ("408 GET", {"status": 408}, R),
    ("408 POST", {"status": 408, "method_idempotent": False}, None),
    ("400", {"status": 400}, None),
    ("401", {"status": 401}, None),
    ("403", {"status": 403}, None),
    ("404", {"status": 404}, None),
    ("409", {"status": 409}, None),
    ("501 not retried", {"status": 501}, None),
    # errors before anything was sent: always
    ("refused POST", {"error": _cce(), "method_idempotent": False}, R),
    ("DNS POST", {"error": _dns(), "method_idempotent": False}, R),
    ("connect timeout POST", {"error": aiohttp.ConnectionTimeoutError(), "method_idempotent": False}, R),
    (
        "proxy refused POST",
        {"error": aiohttp.ClientProxyConnectionError(key(), OSError(111, "x")), "method_idempotent": False},
        R,
    ),
    # TLS: never
    ("certificate GET", {"error": _cert()}, None),
    ("ssl GET", {"error": _ssl()}, None),
    # errors after the request may have reached the server: idempotent only
    ("disconnected GET", {"error": aiohttp.ServerDisconnectedError()}, R),
    ("disconnected POST", {"error": aiohttp.ServerDisconnectedError(), "method_idempotent": False}, None),
    ("reset GET", {"error": aiohttp.ClientOSError(104, "Connection reset by peer")}, R),
    ("reset POST", {"error": aiohttp.ClientOSError(104, "reset"), "method_idempotent": False}, None),
    ("read timeout GET", {"error": aiohttp.SocketTimeoutError()}, R),
    ("read timeout POST", {"error": aiohttp.SocketTimeoutError(), "method_idempotent": False}, None),
    ("total timeout GET", {"error": TimeoutError()}, R),
    ("total timeout POST", {"error": TimeoutError(), "method_idempotent": False}, None),
    ("payload GET", {"error": aiohttp.ClientPayloadError("short")}, R),
    ("payload POST", {"error": aiohttp.ClientPayloadError("short"), "method_idempotent": False}, None),
    # not transport trouble: never
    ("invalid URL", {"error": aiohttp.InvalidURL("x")}, None),
    ("too many redirects", {"error": aiohttp.TooManyRedirects(None, ())}, None),  # type: ignore[arg-type]
    ("other client error", {"error": aiohttp.ClientError("?")}, None),
    ("a bug", {"error": KeyError("x")}, None),
    ("nothing failed", {}, None),
    # limits
    ("last attempt", {"status": 503, "attempt": 6}, None),
    ("beyond last attempt", {"error": _cce(), "attempt": 9}, None),
    ("Retry-After past the deadline", {"status": 503, "retry_after_s": 5.0, "remaining_s": 1.0}, None),
    ("429 Retry-After past the deadline", {"status": 429, "retry_after_s": 5.0, "remaining_s": 4.99}, None),
    ("Retry-After within the deadline", {"status": 429, "retry_after_s": 5.0, "remaining_s": 10.0}, 5.0),
    ("deadline passed", {"status": 503, "remaining_s": 0.0}, None),
    ("deadline long passed", {"error": _cce(), "remaining_s": -3.0}, None),
]


@pytest.mark.parametrize(("case", "args", "expected"), DECIDE_TABLE, ids=[row[0] for row in DECIDE_TABLE])
def test_decide_table(case: str, args: dict[str, Any], expected: Any) -> None:
    policy = RetryPolicy()
    full: dict[str, Any] = {
        "attempt": 1,
        "method_idempotent": True,
        "status": None,
        "error": None,
        "retry_after_s": None,
        "remaining_s": None,
        "rng": random.Random(1),
    }
    full.update(args)
    wait = policy.decide(**full)
    if expected is None:
        assert wait is None
    elif expected == R:
        assert wait is not None
        assert 0.0 <= wait <= policy.base_delay_s * 2 ** (full["attempt"] - 1)
    else:
        assert wait == expected


def test_decide_respects_custom_statuses_and_is_pure() -> None:
    no_429 = RetryPolicy(retry_statuses=frozenset({503}))
    base = {"attempt": 1, "error": None, "retry_after_s": None, "remaining_s": None}
    assert no_429.decide(method_idempotent=True, status=429, rng=random.Random(1), **base) is None
    waits = [
        RetryPolicy().decide(method_idempotent=True, status=503, rng=random.Random(5), **base)
        for _ in range(3)
    ]
    assert len(set(waits)) == 1


@pytest.mark.parametrize(
    "kw",
    [
        {"max_attempts": 0},
        {"base_delay_s": -1.0},
        {"max_delay_s": float("inf")},
        {"max_retry_after_s": float("nan")},
    ],
)
def test_retry_policy_validates(kw: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kw)


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    policy = RetryPolicy(base_delay_s=0.2, max_delay_s=10.0)
    rng = random.Random(42)
    for attempt in range(1, 15):
        cap = min(10.0, 0.2 * 2 ** (attempt - 1))
        draws = [policy.backoff_s(attempt, rng) for _ in range(300)]
        assert all(0.0 <= d <= cap for d in draws)
        assert max(draws) > 0.8 * cap  # spread over the whole range (full jitter) ...
        assert min(draws) < 0.2 * cap
        assert len(set(draws)) > 250  # ... and not a constant
    # pure given the rng
    assert [policy.backoff_s(3, random.Random(9)) for _ in range(2)] == [
        policy.backoff_s(3, random.Random(9))
    ] * 2


@given(attempt=st.integers(min_value=-5, max_value=10_000), seed=st.integers(0, 2**32))
def test_backoff_never_exceeds_the_cap(attempt: int, seed: int) -> None:
    policy = RetryPolicy(base_delay_s=0.2, max_delay_s=10.0)
    assert 0.0 <= policy.backoff_s(attempt, random.Random(seed)) <= 10.0


# --------------------------------------------------------------------------------------------------
# parse_retry_after

NOW = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("+3", 3.0),
        ("-3", 0.0),
        ("-0.5", 0.0),
        (email.utils.format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        ("Thu, 15 Jan 2026 12:01:00 GMT", 60.0),
        ("Thu, 15 Jan 2026 11:00:00 GMT", 0.0),  # in the past
        ("Thursday, 15-Jan-26 12:00:10 GMT", 10.0),  # RFC 850, obsolete but allowed
        ("Thu Jan 15 12:00:10 2026", 10.0),  # asctime, obsolete but allowed
        ("garbage", None),
        ("", None),
        ("   ", None),
        (None, None),
        ("inf", None),
        ("nan", None),
        ("1e3", None),
        ("5 seconds", None),
        ("Thu, 99 Foo 2026 12:00:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    got = parse_retry_after(value, NOW)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_parse_retry_after_naive_now_means_utc() -> None:
    assert parse_retry_after("Thu, 15 Jan 2026 12:00:20 GMT", NOW.replace(tzinfo=None)) == 20.0


@given(st.text(max_size=40))
def test_parse_retry_after_never_raises(value: str) -> None:
    got = parse_retry_after(value, NOW)
    assert got is None or got >= 0


# --------------------------------------------------------------------------------------------------
# Exception mapping, class by class

MAPPING_TABLE: list[tuple[str, Callable[[], BaseException], type[Exception], bool | None, str]] = [
    ("certificate", _cert, BackendUnavailableError, False, "certificate"),
    (
        "connector ssl",
        lambda: aiohttp.ClientConnectorSSLError(key(), OSError(1, "bad tls")),
        BackendUnavailableError,
        False,
        "TLS handshake",
    ),
    ("ssl", _ssl, BackendUnavailableError, False, "TLS handshake"),
    ("dns", _dns, BackendUnavailableError, True, "cannot resolve host api.example.test"),
    ("connector", _cce, BackendUnavailableError, True, "cannot connect to api.example.test:443"),
    (
        "proxy",
        lambda: aiohttp.ClientProxyConnectionError(key("proxy.local", 3128), OSError(111, "refused")),
        BackendUnavailableError,
        True,
        "proxy proxy.local:3128",
    ),
    ("disconnected", aiohttp.ServerDisconnectedError, BackendUnavailableError, True, "closed the connection"),
    (
        "os error",
        lambda: aiohttp.ClientOSError(104, "Connection reset by peer"),
        BackendUnavailableError,
        True,
        "Connection reset by peer",
    ),
    (
        "connection reset",
        lambda: aiohttp.ClientConnectionResetError("reset"),
        BackendUnavailableError,
        True,
        "connection failed",
    ),
    (
        "connection closed",
        lambda: aiohttp.ClientConnectionError("Connection closed"),
        BackendUnavailableError,
        True,
        "Connection closed",
    ),
    ("server timeout", aiohttp.ServerTimeoutError, BackendUnavailableError, True, "timed out"),
    ("connection timeout", aiohttp.ConnectionTimeoutError, BackendUnavailableError, True, "timed out"),
    ("socket timeout", aiohttp.SocketTimeoutError, BackendUnavailableError, True, "timed out"),
    ("asyncio timeout (TimeoutError)", TimeoutError, BackendUnavailableError, True, "timed out"),
    (
        "payload",
        lambda: aiohttp.ClientPayloadError("Response payload is not completed"),
        ProtocolError,
        True,
        "incomplete",
    ),
    ("content type", lambda: aiohttp.ContentTypeError(None, ()), ProtocolError, False, "not JSON"),  # type: ignore[arg-type]
    (
        "json decode",
        lambda: json.JSONDecodeError("Expecting value", "x", 0),
        ProtocolError,
        False,
        "not JSON",
    ),
    (
        "invalid url",
        lambda: aiohttp.InvalidURL("https://h/x?sig=abc"),
        ConfigurationError,
        None,
        "invalid URL",
    ),
    (
        "invalid url client",
        lambda: aiohttp.InvalidUrlClientError("nope"),
        ConfigurationError,
        None,
        "invalid URL",
    ),
    ("too many redirects", lambda: aiohttp.TooManyRedirects(None, ()), ProtocolError, False, "redirected"),  # type: ignore[arg-type]
    (
        "fingerprint",
        lambda: aiohttp.ServerFingerprintMismatch(b"a", b"b", "h", 443),
        BackendUnavailableError,
        False,
        "fingerprint",
    ),
    ("other client error", lambda: aiohttp.ClientError("?"), BackendError, False, "failed: ClientError"),
    ("upload aborted", lambda: aiohttp.UploadAbortedError(), BackendError, False, "failed"),
    ("non-http redirect", lambda: aiohttp.NonHttpUrlClientError("ftp://x"), BackendError, False, "failed"),
]


@pytest.mark.parametrize(
    ("case", "make", "expected", "transient", "fragment"),
    MAPPING_TABLE,
    ids=[row[0] for row in MAPPING_TABLE],
)
def test_exception_mapping_table(
    case: str,
    make: Callable[[], BaseException],
    expected: type[Exception],
    transient: bool | None,
    fragment: str,
) -> None:
    exc = make()
    error = map_exception(exc, vendor="acme", method="GET", path="/jobs/1", timeout_s=30.0)
    assert type(error) is expected
    if transient is not None:
        assert isinstance(error, BackendError)
        assert error.transient is transient
    assert fragment in str(error)
    if isinstance(error, BackendError):
        assert "acme" in str(error)
        assert "GET /jobs/1" in str(error)
    assert "sig=abc" not in str(error)


def test_timeout_message_names_the_limit() -> None:
    error = map_exception(TimeoutError(), vendor="acme", method="GET", path="/x", timeout_s=2.5)
    assert "timed out" in str(error)
    assert "2.5 s" in str(error)


# --------------------------------------------------------------------------------------------------
# Status mapping and vendor messages

BODY_TABLE: list[tuple[str, int, Any, dict[str, str], type[Exception], str | None, str]] = [
    ("plain message", 400, {"message": "bad shots"}, {}, BackendError, None, "bad shots"),
    (
        "message and code",
        409,
        {"message": "already done", "code": "CONFLICT"},
        {},
        BackendError,
        "CONFLICT",
        "already done",
    ),
    (
        "error object",
        404,
        {"error": {"message": "no such job", "code": "JobNotFound"}},
        {},
        NotFoundError,
        "JobNotFound",
        "no such job",
    ),
    (
        "azure",
        403,
        {"error": {"code": "Forbidden", "message": "not allowed", "details": []}},
        {},
        AuthenticationError,
        "Forbidden",
        "not allowed",
    ),
    (
        "azure header code",
        500,
        {"message": "boom"},
        {"x-ms-error-code": "InternalError"},
        ServerError,
        "InternalError",
        "boom",
    ),
    (
        "databricks",
        400,
        {"error_code": "INVALID_PARAMETER_VALUE", "message": "Run 7 does not exist"},
        {},
        BackendError,
        "INVALID_PARAMETER_VALUE",
        "Run 7 does not exist",
    ),
    (
        "databricks 401",
        401,
        {"error_code": "PERMISSION_DENIED", "message": "Unauthorized access."},
        {},
        AuthenticationError,
        "PERMISSION_DENIED",
        "Unauthorized access.",
    ),
    (
        "error string + message",
        400,
        {"error": "invalid_request", "message": "missing run_id"},
        {},
        BackendError,
        "invalid_request",
        "missing run_id",
    ),
    (
        "error string + error_code",
        429,
        {"error": "slow down", "error_code": "REQUEST_LIMIT_EXCEEDED"},
        {},
        RateLimitedError,
        "REQUEST_LIMIT_EXCEEDED",
        "slow down",
    ),
    (
        "oauth",
        401,
        {"error": "invalid_token", "error_description": "token expired"},
        {},
        AuthenticationError,
        "invalid_token",
        "token expired",
    ),
    (
        "ibm",
        400,
        {"trace": "t1", "errors": [{"code": 1234, "message": "Program not found", "more_info": "u"}]},
        {},
        BackendError,
        "1234",
        "Program not found",
    ),
    ("ibm several", 400, {"errors": [{"message": "a"}, {"message": "b"}]}, {}, BackendError, None, "a; b"),
    (
        "oqc",
        500,
        {"response": {"errors": ["Task queue unavailable"]}},
        {},
        ServerError,
        None,
        "Task queue unavailable",
    ),
    ("fastapi", 422, {"detail": "bad program"}, {}, BackendError, None, "bad program"),
    (
        "fastapi list",
        422,
        {"detail": [{"msg": "field required", "loc": ["body"]}]},
        {},
        BackendError,
        None,
        "field required",
    ),
    (
        "windmill text",
        404,
        "Not found: job 1 not found",
        {},
        NotFoundError,
        None,
        "Not found: job 1 not found",
    ),
    (
        "windmill 401",
        401,
        "Not authorized: bad token",
        {},
        AuthenticationError,
        None,
        "Not authorized: bad token",
    ),
    ("empty body", 502, "", {}, ServerError, None, "Bad Gateway"),
    (
        "html page",
        502,
        "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        {},
        ServerError,
        None,
        "502 Bad Gateway",
    ),
    ("json string", 400, '"just a string"', {}, BackendError, None, "just a string"),
    ("unknown json", 418, {"weird": True}, {}, BackendError, None, "I'm a Teapot"),
    ("unknown status", 599, "", {}, ServerError, None, "no message"),
]


@pytest.mark.parametrize(
    ("case", "status", "body", "headers", "expected", "code", "message"),
    BODY_TABLE,
    ids=[row[0] for row in BODY_TABLE],
)
async def test_status_mapping_and_vendor_messages(
    make_client: Any,
    case: str,
    status: int,
    body: Any,
    headers: dict[str, str],
    expected: type[Exception],
    code: str | None,
    message: str,
) -> None:
    http = await make_client(retry=RetryPolicy(max_attempts=1))
    raw = body if isinstance(body, str) else json.dumps(body)
    content_type = "application/json" if not isinstance(body, str) or raw.startswith('"') else "text/plain"
    with mocked() as m:
        m.get(f"{BASE}/jobs/1?token=x", status=status, body=raw, headers=headers, content_type=content_type)
        with pytest.raises(BackendError) as info:
            await http.get("/jobs/1", params={"token": "x"})
    error = info.value
    assert type(error) is expected
    assert error.status == status
    assert error.vendor_code == code
    assert str(error) == f"acme answered {status} to GET /jobs/1: {message}"
    assert "token=x" not in str(error)


def test_plain_text_bodies_are_shortened() -> None:
    message, code, parsed = extract_vendor_error(b"x" * 5000, {"Content-Type": "text/plain"})
    assert message is not None
    assert len(message) <= 300
    assert message.endswith("…")
    assert code is None
    assert parsed is None


def test_error_for_status_keeps_details_and_retry_after() -> None:
    error = error_for_status(
        429, {}, b'{"message":"slow"}', vendor="acme", method="POST", path="/jobs", retry_after_s=4.0
    )
    assert isinstance(error, RateLimitedError)
    assert error.retry_after_s == 4.0
    assert error.details == {"message": "slow"}
    assert error.transient


# --------------------------------------------------------------------------------------------------
# Retries through the client


async def test_429_retry_after_is_honoured(make_client: Any, sleeps: SleepRecorder) -> None:
    http = await make_client()
    with mocked() as m:
        m.post(f"{BASE}/jobs", status=429, headers={"Retry-After": "3"}, payload={"message": "slow down"})
        m.post(f"{BASE}/jobs", status=429, headers={"Retry-After": email.utils.formatdate(usegmt=True)})
        m.post(f"{BASE}/jobs", status=200, payload={"id": "j1"})
        response = await http.post("/jobs", json={"shots": 10})  # POST: 429 is retried all the same
    assert response.json() == {"id": "j1"}
    assert sleeps.calls[0] == 3.0
    assert 0.0 <= sleeps.calls[1] <= 0.4  # a date of "now": the backoff decides
    assert http.requests_sent == 3


async def test_azure_retry_after_ms_is_honoured(make_client: Any, sleeps: SleepRecorder) -> None:
    http = await make_client()
    with mocked() as m:
        m.get(f"{BASE}/x", status=429, headers={"retry-after-ms": "1500", "Retry-After": "9"})
        m.get(f"{BASE}/x", status=200, body="ok")
        await http.get("/x")
    assert sleeps.calls == [1.5]


async def test_retry_after_beyond_the_maximum_raises_at_once(make_client: Any, sleeps: SleepRecorder) -> None:
    http = await make_client()
    with mocked() as m:
        m.get(
            f"{BASE}/x",
            status=429,
            headers={"Retry-After": "3600"},
            payload={"message": "quota"},
            repeat=True,
        )
        with pytest.raises(RateLimitedError) as info:
            await http.get("/x")
    assert info.value.retry_after_s == 3600.0
    assert sleeps.calls == []
    assert http.requests_sent == 1


async def test_post_is_not_retried_on_503_unless_idempotent(make_client: Any, sleeps: SleepRecorder) -> None:
    http = await make_client()
    with mocked() as m:
        m.post(f"{BASE}/jobs", status=503, repeat=True)
        with pytest.raises(ServerError) as info:
            await http.post("/jobs", json={})
    assert info.value.status == 503
    assert http.requests_sent == 1
    assert sleeps.calls == []

    with mocked() as m:
        m.post(f"{BASE}/jobs", status=503)
        m.post(f"{BASE}/jobs", status=200, payload={"id": "j1"})
        response = await http.post("/jobs", json={"idempotency_token": "k1"}, idempotent=True)
    assert response.status == 200
    assert http.requests_sent == 3
    assert len(sleeps.calls) == 1


async def test_get_can_opt_out_of_retries(make_client: Any) -> None:
    http = await make_client()
    with mocked() as m:
        m.get(f"{BASE}/x", status=500, repeat=True)
        with pytest.raises(ServerError):
            await http.get("/x", idempotent=False)
    assert http.requests_sent == 1


async def test_requests_sent_counts_every_attempt(make_client: Any, sleeps: SleepRecorder) -> None:
    http = await make_client(retry=RetryPolicy(max_attempts=4))
    with mocked() as m:
        m.get(f"{BASE}/x", status=500)
        m.get(f"{BASE}/x", status=502)
        m.get(f"{BASE}/x", status=200, body="fine")
        assert (await http.get("/x")).text() == "fine"
        assert http.requests_sent == 3
        assert len(sleeps.calls) == 2
        m.get(f"{BASE}/y", status=503, repeat=True)
        with pytest.raises(ServerError):
            await http.get("/y")
    assert http.requests_sent == 3 + 4
    assert len(sleeps.calls) == 2 + 3


async def test_non_retryable_status_raises_at_once(make_client: Any) -> None:
    http = await make_client()
    with mocked() as m:
        m.delete(f"{BASE}/jobs/1", status=404, payload={"message": "gone"})
        with pytest.raises(NotFoundError):
            await http.delete("/jobs/1")
    assert http.requests_sent == 1


async def test_ok_widens_the_accepted_statuses(make_client: Any) -> None:
    http = await make_client()
    with mocked() as m:
        m.get(f"{BASE}/result", status=404, body="Not found: not yet")
        response = await http.get("/result", ok={200, 404})
    assert response.status == 404
    assert response.text() == "Not found: not yet"


# --------------------------------------------------------------------------------------------------
# Deadlines


async def test_deadline_stops_retrying_instead_of_sleeping_past_it(
    make_client: Any, sleeps: SleepRecorder
) -> None:
    http = await make_client()
    with mocked() as m:
        m.get(f"{BASE}/status", status=503, headers={"Retry-After": "5"}, repeat=True)
        started = anyio.current_time()
        with anyio.move_on_after(1.0), pytest.raises(ServerError) as info:
            await http.get("/status")
        elapsed = anyio.current_time() - started
        assert elapsed < 0.5
        assert info.value.status == 503
        assert sleeps.calls == []
        assert http.requests_sent == 1
        # the request's own timeout was capped by the deadline
        (call,) = calls(m, "GET", f"{BASE}/status")
        assert call.kwargs["timeout"].total <= 1.0


async def test_deadline_with_429_raises_rate_limited(make_client: Any, sleeps: SleepRecorder) -> None:
    http = await make_client()
    with mocked() as m:
        m.post(f"{BASE}/jobs", status=429, headers={"Retry-After": "5"}, repeat=True)
        with anyio.move_on_after(1.0), pytest.raises(RateLimitedError) as info:
            await http.post("/jobs", json={})
    assert info.value.retry_after_s == 5.0
    assert sleeps.calls == []


async def test_waits_never_end_after_the_deadline(make_client: Any, sleeps: SleepRecorder) -> None:
    # Long backoffs: some draw would outlast the 4 s left, and then the client stops instead.
    http = await make_client(retry=RetryPolicy(max_attempts=20, base_delay_s=0.5, max_delay_s=30.0))
    with mocked() as m:
        m.get(f"{BASE}/x", status=503, repeat=True)
        with anyio.move_on_after(4.0), pytest.raises(ServerError):
            await http.get("/x")
    assert 0 < len(sleeps.calls) < 19
    assert all(wait < 4.0 for wait in sleeps.calls)
    assert http.requests_sent == len(sleeps.calls) + 1


async def test_slow_server_is_bounded_by_the_deadline(make_client: Any) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="late")

    async with web_server([web.get("/slow", slow)]) as base:
        http = await make_client(base)
        started = anyio.current_time()
        with anyio.fail_after(3):
            with anyio.move_on_after(0.1):
                with contextlib.suppress(BackendUnavailableError):
                    await http.get("/slow")
        assert anyio.current_time() - started < 1.0
        release.set()


# --------------------------------------------------------------------------------------------------
# 401 and credential refresh


async def test_401_refreshes_once_then_succeeds(make_client: Any) -> None:
    token = {"value": "old-token-1234"}
    refreshed: list[int] = []

    async def auth() -> dict[str, str | Secret]:
        return {"Authorization": Secret(f"Bearer {token['value']}")}

    async def on_unauthorized() -> None:
        refreshed.append(1)
        token["value"] = "new-token-5678"

    http = await make_client(auth=auth, on_unauthorized=on_unauthorized)
    with mocked() as m:
        m.get(f"{BASE}/me", status=401, payload={"message": "expired"})
        m.get(f"{BASE}/me", status=200, payload={"ok": True})
        response = await http.get("/me")
        sent = [c.kwargs["headers"]["Authorization"] for c in calls(m, "GET", f"{BASE}/me")]
    assert response.json() == {"ok": True}
    assert refreshed == [1]
    assert sent == ["Bearer old-token-1234", "Bearer new-token-5678"]
    assert http.requests_sent == 2


async def test_second_401_is_an_authentication_error(make_client: Any) -> None:
    refreshed: list[int] = []

    async def on_unauthorized() -> None:
        refreshed.append(1)

    http = await make_client(on_unauthorized=on_unauthorized)
    with mocked() as m:
        m.post(f"{BASE}/jobs", status=401, payload={"message": "no"}, repeat=True)
        with pytest.raises(AuthenticationError) as info:
            await http.post("/jobs", json={})
    assert info.value.status == 401
    assert refreshed == [1]
    assert http.requests_sent == 2


async def test_401_without_refresh_hook_raises_at_once(make_client: Any) -> None:
    http = await make_client()
    with mocked() as m:
        m.get(f"{BASE}/me", status=401, repeat=True)
        with pytest.raises(AuthenticationError):
            await http.get("/me")
    assert http.requests_sent == 1


# --------------------------------------------------------------------------------------------------
# URL rules


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://localhost:1/api/",
        "http://[::1]:9000",
        "http://127.3.4.5",
        "https://example.com",
    ],
)
def test_secure_or_loopback_urls_are_accepted(url: str) -> None:
    HttpClient(url, vendor="acme")


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "http://10.0.0.1:8080",
        "http://localhost.example.com",
        "ftp://example.com",
        "example.com/api",
        "https://",
        "",
        "https://user:pw@example.com",
        "https://example.com/api?api-version=1",
        "https://example.com/#x",
    ],
)
def test_bad_base_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        HttpClient(url, vendor="acme")


def test_plain_http_allowed_when_asked() -> None:
    http = HttpClient("http://example.com/", vendor="acme", allow_insecure_http=True)
    assert http.base_url == "http://example.com"


def test_base_url_is_normalised() -> None:
    assert HttpClient("https://Example.COM/api/", vendor="acme").base_url == "https://example.com/api"


@pytest.mark.parametrize("timeout", [0, -1.0, float("inf"), float("nan")])
def test_bad_timeouts_are_refused(timeout: float) -> None:
    with pytest.raises(ConfigurationError):
        HttpClient(BASE, vendor="acme", timeout_s=timeout)
    with pytest.raises(ConfigurationError):
        HttpClient(BASE, vendor="acme", connect_timeout_s=timeout)


@pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "a\nb"])
def test_header_injection_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        HttpClient(BASE, vendor="acme", headers={"X-Token": Secret(value)})
    assert value not in str(info.value)


async def test_absolute_urls_follow_the_same_rule(make_client: Any) -> None:
    http = await make_client()
    for url in (
        "http://blob.example.net/x",
        "ftp://blob.example.net/x",
        "https://u:p@blob.example.net/x",
        "//h/x",
    ):
        with pytest.raises(ConfigurationError):
            await http.get(url)
    assert http.requests_sent == 0
    with mocked() as m:
        m.get("https://blob.example.net/container/out.json?sig=SAS-SIGNATURE", status=200, payload=[1])
        response = await http.get("https://blob.example.net/container/out.json?sig=SAS-SIGNATURE")
    assert response.json() == [1]
    assert response.url == "https://blob.example.net/container/out.json"


async def test_insecure_client_may_call_plain_http(make_client: Any) -> None:
    http = await make_client("http://intranet.example", allow_insecure_http=True)
    with mocked() as m:
        m.get("http://other.example/x", status=204)
        assert (await http.get("http://other.example/x")).status == 204


# --------------------------------------------------------------------------------------------------
# Wire details


async def test_wire_details(make_client: Any) -> None:
    async def auth() -> dict[str, str | Secret]:
        return {"Authentication-Token": Secret(TOKEN)}

    http = await make_client(
        f"{BASE}/api/",
        headers={"X-Workspace": "ws1", "X-Key": Secret("static-key-99")},
        auth=auth,
        user_agent="t/1",
    )
    with mocked() as m:
        m.post(
            f"{BASE}/api/jobs?limit=5&flag=true&name=a+b",
            status=201,
            body="uuid-1",
            content_type="text/plain",
        )
        response = await http.post(
            "jobs",
            params={"limit": 5, "flag": True, "name": "a b"},
            json={"b": [1, 2], "a": "é"},
            headers={"X-Workspace": "ws2"},
        )
        m.put(f"{BASE}/api/blob", status=200, body=b"")
        await http.put("/blob", data=b"\x00raw", headers={"Content-Type": "application/x"})
        (post,) = calls(m, "POST", f"{BASE}/api/jobs")
        assert [dict(u.query) for (_, u) in m.requests if u.path == "/api/jobs"] == [
            {"limit": "5", "flag": "true", "name": "a b"}
        ]
        (put,) = calls(m, "PUT", f"{BASE}/api/blob")
    assert response.status == 201
    assert response.text() == "uuid-1"
    assert response.url == f"{BASE}/api/jobs"
    assert post.kwargs["data"] == b'{"b":[1,2],"a":"\\u00e9"}'
    sent = post.kwargs["headers"]
    assert sent["Content-Type"] == "application/json"
    assert sent["User-Agent"] == "t/1"
    assert sent["X-Workspace"] == "ws2"
    assert sent["X-Key"] == "static-key-99"
    assert sent["Authentication-Token"] == TOKEN
    assert post.kwargs["allow_redirects"] is False
    assert put.kwargs["data"] == b"\x00raw"
    assert put.kwargs["headers"]["Content-Type"] == "application/x"


async def test_json_and_data_together_are_refused(make_client: Any) -> None:
    http = await make_client()
    with pytest.raises(ConfigurationError):
        await http.post("/x", json={}, data=b"x")


async def test_response_json_and_text() -> None:
    bad = Response(status=200, headers={"Content-Type": "application/json"}, body=b"{nope", url=f"{BASE}/x")
    with pytest.raises(ProtocolError) as info:
        bad.json()
    assert info.value.status == 200
    with pytest.raises(ProtocolError):
        Response(status=204, headers={}, body=b"", url=f"{BASE}/x").json()
    latin = Response(
        status=200,
        headers={"Content-Type": "text/plain; charset=latin-1"},
        body="é".encode("latin-1"),
        url=f"{BASE}/x",
    )
    assert latin.text() == "é"
    odd = Response(
        status=200, headers={"Content-Type": "text/plain; charset=nope"}, body=b"ok", url=f"{BASE}/x"
    )
    assert odd.text() == "ok"


async def test_not_started_and_closed(sleeps: SleepRecorder) -> None:
    http = HttpClient(BASE, vendor="acme", sleep=sleeps)
    with pytest.raises(SdkNotStartedError):
        await http.get("/x")
    async with http as same:
        assert same is http
        await http.start()  # a second start is a no-op
        with mocked() as m:
            m.get(f"{BASE}/x", status=200, body="ok")
            await http.get("/x")
    with pytest.raises(SdkNotStartedError):
        await http.get("/x")
    with pytest.raises(SdkNotStartedError):
        await http.check_reachable()
    await http.aclose()  # closing twice is fine


# --------------------------------------------------------------------------------------------------
# Real servers: dropped connections, truncated bodies, timeouts, refused connections


async def test_dropped_connection_is_retried_for_get_only(make_client: Any, sleeps: SleepRecorder) -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        return  # read the request, close without answering

    async with raw_server(drop) as (base, seen):
        http = await make_client(base, retry=RetryPolicy(max_attempts=3))
        with anyio.fail_after(5):
            with pytest.raises(BackendUnavailableError) as info:
                await http.get("/jobs/1")
            assert "closed the connection" in str(info.value)
            assert isinstance(info.value.__cause__, aiohttp.ServerDisconnectedError)
            assert http.requests_sent == 3
            assert len(sleeps.calls) == 2

            with pytest.raises(BackendUnavailableError):
                await http.post("/jobs", json={})
            assert http.requests_sent == 4
    assert len(seen) == 4


async def test_truncated_body_is_a_transient_protocol_error(make_client: Any, sleeps: SleepRecorder) -> None:
    async def truncate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"counts":'
        )
        await writer.drain()

    async with raw_server(truncate) as (base, seen):
        http = await make_client(base, retry=RetryPolicy(max_attempts=2))
        with anyio.fail_after(5), pytest.raises(ProtocolError) as info:
            await http.get("/jobs/1/results")
    assert info.value.transient is True
    assert "incomplete" in str(info.value)
    assert len(seen) == 2
    assert http.requests_sent == 2


async def test_read_timeout_is_backend_unavailable(make_client: Any) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="late")

    async with web_server([web.get("/slow", slow)]) as base:
        http = await make_client(base, timeout_s=0.05, retry=RetryPolicy(max_attempts=1))
        started = anyio.current_time()
        with anyio.fail_after(3), pytest.raises(BackendUnavailableError) as info:
            await http.get("/slow")
        assert anyio.current_time() - started < 1.0
        assert "timed out" in str(info.value)
        release.set()


async def test_refused_connection_is_retried_even_for_post(make_client: Any, sleeps: SleepRecorder) -> None:
    http = await make_client(f"http://127.0.0.1:{closed_port()}", retry=RetryPolicy(max_attempts=3))
    with anyio.fail_after(5), pytest.raises(BackendUnavailableError) as info:
        await http.post("/jobs", json={})
    assert info.value.transient
    assert http.requests_sent == 3
    assert len(sleeps.calls) == 2


async def test_check_reachable_on_a_closed_port(make_client: Any, sleeps: SleepRecorder) -> None:
    base = f"http://127.0.0.1:{closed_port()}"
    http = await make_client(base)
    started = anyio.current_time()
    with anyio.fail_after(2), pytest.raises(BackendUnavailableError) as info:
        await http.check_reachable()
    assert anyio.current_time() - started < 1.0
    assert str(info.value).startswith(f"cannot reach acme at {base}: ")
    assert http.requests_sent == 1
    assert sleeps.calls == []


async def test_check_reachable_accepts_any_http_answer_and_sends_no_credentials(make_client: Any) -> None:
    seen_headers: list[dict[str, str]] = []

    async def anything(request: web.Request) -> web.Response:
        seen_headers.append(dict(request.headers))
        return web.Response(status=404, text="Not found")

    async with web_server([web.get("/", anything)]) as base:
        http = await make_client(base, headers={"Authorization": Secret(f"Bearer {TOKEN}")})
        with anyio.fail_after(3):
            await http.check_reachable()
    assert len(seen_headers) == 1
    assert "Authorization" not in seen_headers[0]


# --------------------------------------------------------------------------------------------------
# Redirects (followed by the client so that credentials stay on their origin)


async def test_redirects_keep_credentials_on_their_origin(make_client: Any) -> None:
    seen: list[tuple[str, str, dict[str, str]]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, dict(request.headers)))
        return web.json_response({"at": request.path})

    async with web_server([web.route("*", "/{tail:.*}", record)]) as other:

        async def hop(request: web.Request) -> web.Response:
            target = {"/cross": f"{other}/landed", "/same": "/here", "/see-other": "/here"}[request.path]
            status = 303 if request.path == "/see-other" else 307
            return web.Response(status=status, headers={"Location": target})

        async def here(request: web.Request) -> web.Response:
            seen.append((request.method, request.path, dict(request.headers)))
            return web.json_response({"at": "here"})

        routes = [
            web.route("*", "/cross", hop),
            web.route("*", "/same", hop),
            web.route("*", "/see-other", hop),
            web.route("*", "/here", here),
        ]
        async with web_server(routes) as base:
            http = await make_client(base, headers={"Authentication-Token": Secret(TOKEN), "X-Trace": "t1"})
            with anyio.fail_after(5):
                assert (await http.get("/cross")).json() == {"at": "/landed"}
                assert (await http.get("/same")).json() == {"at": "here"}
                response = await http.post("/see-other", json={"a": 1})
    assert response.json() == {"at": "here"}
    (cross_method, _, cross), (_, _, same), (see_method, _, see) = seen
    assert "Authentication-Token" not in cross
    assert cross["X-Trace"] == "t1"
    assert cross_method == "GET"
    assert same["Authentication-Token"] == TOKEN
    assert see_method == "GET"
    assert "Content-Type" not in see
    assert http.requests_sent == 6


async def test_redirect_to_plain_http_elsewhere_is_refused(make_client: Any) -> None:
    async def away(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "http://evil.example/steal"})

    async def loop(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/loop"})

    async with web_server([web.get("/away", away), web.get("/loop", loop)]) as base:
        http = await make_client(base)
        with anyio.fail_after(5):
            with pytest.raises(ProtocolError) as info:
                await http.get("/away")
            assert "refuses" in str(info.value)
            assert "plain http" in str(info.value)
            assert http.requests_sent == 1
            with pytest.raises(ProtocolError) as info:
                await http.get("/loop")
            assert "redirected" in str(info.value)
            assert http.requests_sent == 1 + 11


# --------------------------------------------------------------------------------------------------
# Secrets never leak: repr, messages, logs


async def test_secrets_never_leak(make_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    received: list[str] = []
    answers = iter(
        [
            web.json_response(
                {"message": f"token {TOKEN} is throttled"}, status=503, headers={"Retry-After": "0"}
            ),
            web.json_response(
                {"error": {"code": "Unauthorized", "message": f"bad token {TOKEN}"}}, status=401
            ),
            web.json_response(
                {"error": {"code": "Unauthorized", "message": f"bad token {TOKEN}"}}, status=401
            ),
        ]
    )

    async def handler(request: web.Request) -> web.Response:
        received.append(request.headers.get("Authorization", ""))
        return next(answers)

    async def auth() -> dict[str, str | Secret]:
        return {"Authorization": Secret(f"Bearer {TOKEN}")}

    async def on_unauthorized() -> None:
        return None

    async with web_server([web.get("/jobs/{id}", handler)]) as base:
        http = await make_client(
            base, headers={"X-Api-Key": Secret("KEY-" + TOKEN)}, auth=auth, on_unauthorized=on_unauthorized
        )
        assert TOKEN not in repr(http)
        assert repr(http) == f"HttpClient(vendor='acme', base_url='{base}')"
        with anyio.fail_after(5), pytest.raises(AuthenticationError) as info:
            await http.get("/jobs/1", params={"sig": "SAS-SIGNATURE"})
    assert received == [f"Bearer {TOKEN}"] * 3  # it was on the wire ...
    error = info.value
    texts = [str(error), repr(error), repr(error.args), repr(error.details), caplog.text]
    texts += [record.getMessage() for record in caplog.records]
    cause = error.__cause__
    while cause is not None:
        texts.append(str(cause))
        cause = cause.__cause__
    for text in texts:  # ... and nowhere else
        assert TOKEN not in text
        assert "SAS-SIGNATURE" not in text
    assert "bad token ***" in str(error)
    assert any("GET /jobs/1 -> 503 in" in record.getMessage() for record in caplog.records)
    assert any("(attempt 1)" in record.getMessage() for record in caplog.records)


async def test_secret_in_a_transport_failure_message_is_scrubbed(make_client: Any) -> None:
    http = await make_client(headers={"Authorization": f"Bearer {TOKEN}"})
    with mocked() as m:
        m.get(f"{BASE}/x", exception=aiohttp.ClientConnectionError(f"echo {TOKEN}"))
        with pytest.raises(BackendUnavailableError) as info:
            await http.get("/x", idempotent=False)
    assert TOKEN not in str(info.value)
    assert "***" in str(info.value)
    assert TOKEN not in str(info.value.__cause__)
    assert "ClientConnectionError" in str(info.value.__cause__)


async def test_client_response_errors_are_chained_without_request_headers(make_client: Any) -> None:
    http = await make_client(headers={"Authorization": Secret(f"Bearer {TOKEN}")})
    with mocked() as m:
        m.get(f"{BASE}/x", exception=aiohttp.TooManyRedirects(None, ()))  # type: ignore[arg-type]
        with pytest.raises(ProtocolError) as info:
            await http.get("/x")
    assert not isinstance(info.value.__cause__, aiohttp.ClientResponseError)
    assert "TooManyRedirects" in str(info.value.__cause__)


# --------------------------------------------------------------------------------------------------
# URLs resolved without a parse (a plain path under an origin already accepted)

_PATH_CHARS = st.sampled_from([*"ab/._~:@-%?#& 0éZ\\=+", "..", "//", "%41", "%7e"])


@given(path=st.lists(_PATH_CHARS, max_size=12).map("".join))
def test_a_url_resolved_without_a_parse_is_the_one_a_parse_makes(path: str) -> None:
    client = HttpClient(f"{BASE}/api/v1", vendor="acme")
    origin = "http://127.0.0.1:9"
    client._resolve(f"{origin}/first", None)  # the origin is now accepted
    for url, parsed in (
        (f"{origin}/{path}", URL(f"{origin}/{path}")),
        (f"/{path}", URL(f"{BASE}/api/v1/{path}")),
    ):
        if url.startswith("//"):  # scheme-relative: refused whatever follows
            with pytest.raises(ConfigurationError):
                client._resolve(url, None)
            continue
        try:
            expected = parsed.with_fragment(None)
        except ValueError:
            continue
        assert client._resolve(url, None) == expected
        assert str(client._resolve(url, None)) == str(expected)


async def test_an_accepted_origin_opens_no_way_for_credentials_to_another(make_client: Any) -> None:
    async def here(request: web.Request) -> web.Response:
        return web.json_response({"at": request.path})

    async with web_server([web.get("/{tail:.*}", here)]) as base:
        http = await make_client(base, headers={"Authentication-Token": Secret(TOKEN)})
        with anyio.fail_after(5):
            assert (await http.get(f"{base}/tasks/one")).json() == {"at": "/tasks/one"}
            # Texts that start like the accepted origin but name another one, or carry userinfo.
            for url in (f"{base}0/tasks/two", f"{base}.evil.example/x", f"{base}@evil.example/x"):
                with pytest.raises((ProtocolError, ConfigurationError)):
                    await http.get(url)
            assert (await http.get(f"{base}/tasks/two")).json() == {"at": "/tasks/two"}
    assert http.requests_sent == 2
