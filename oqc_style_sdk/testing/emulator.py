"""The vendor-emulator kit: real HTTP servers on 127.0.0.1 that speak a vendor's wire protocol.

An emulator is an :mod:`aiohttp` server on ``127.0.0.1`` and a port the OS picks (never
``0.0.0.0``), so that code written against a vendor's API — this SDK's adapters, or a user's own
client — runs unchanged against it, offline and fast:

```python
from oqc_style_sdk.testing.emulator import start_emulator

async with start_emulator("oqc", job_duration_s=0.05) as emu:
    emu.fail_next(1, status=503, path="/tasks/submit", retry_after=1)
    ...  # point a client at emu.base_url with emu.credentials (or emu.env)
    assert emu.count("POST", "/") == 2
```

What every emulator has (this module; vendors add their endpoints in a subclass)
    * ``base_url``, ``credentials`` (what a backend needs, e.g. a token) and ``env`` (the
      environment lines a backend reads, e.g. ``OQC_URL``).
    * A request log, :attr:`Emulator.requests`: every request in arrival order as a
      :class:`LoggedRequest` (method, path, query, parsed JSON body or raw text, headers, time, the
      status the client got, the fault applied). Secrets never enter it: authentication headers
      read ``<redacted>``, and the emulator's own secrets (tokens, passwords) are scrubbed from
      paths, queries and bodies. :meth:`Emulator.count` counts entries.
    * Knobs: ``job_duration_s`` (how long jobs take), ``latency_s`` (added to every response), and
      the fault rules below.
    * A bounded life: ``max_lifetime_s`` (default 600 s) after which the server stops itself
      (:attr:`Emulator.stop_reason` then says so), and :func:`start_emulator` always stops it.

Fault rules (middleware, so they apply to every endpoint of every vendor)
    Each rule matches the next ``n`` requests whose method equals ``method`` (any if None) and
    whose path (without the query) contains ``path`` when it is a ``str``, or matches it
    (``re.search``) when it is a compiled pattern (any path if None). Rules are tried in the order
    they were added; the first that matches applies (one rule per request) and is consumed.

    ==================================  ==========================================================
    ``fail_next(n, status=...)``        answer ``status`` (with ``Retry-After`` and a body if
                                        given, else the vendor's error body); NOT processed
    ``fail_after_processing_next``      processed, then the answer is replaced by ``status``:
                                        a lost response (the work was done, the client can't know)
    ``drop_next(n)``                    the connection is closed without an answer (the client
                                        sees a server disconnect); ``after_processing=True``
                                        processes the request first
    ``malformed_next(n)``               200 with ``Content-Type: application/json`` and a body that
                                        is not JSON; ``truncated=True``: a ``Content-Length``
                                        larger than the bytes sent, then the connection closes;
                                        ``after_processing=True`` processes first (a truncated
                                        body is then a prefix of the real one)
    ``slow_next(n, delay_s=...)``       waits ``delay_s`` then processes normally
    ==================================  ==========================================================

    A dropped connection is what the client sees; note that aiohttp's client (3.14) resends an
    idempotent request (GET, HEAD, PUT, DELETE ...) once after a disconnect, so making a GET fail
    through an aiohttp client takes ``drop_next(2)``.

    ``latency_s`` is waited before any rule applies. Faults are decided before authentication, so
    they apply to unauthenticated requests too.

Lifecycle and task groups
    Each emulator runs in one *host task* of its own (created on :meth:`Emulator.start`): it
    binds the server, owns the engine's task group (workers of the embedded simulator) and the
    lifetime deadline, and tears everything down when told to stop or when the lifetime ends —
    server first (in-flight requests get ``shutdown_timeout_s`` to finish, then are cancelled),
    then the engine. No cancel scope crosses the caller's tasks, so :meth:`Emulator.start` and
    :meth:`Emulator.stop` may run in different tasks (as pytest-asyncio's async fixtures do for
    setup and teardown), and a lifetime expiry never cancels the caller's code: its requests just
    find the server gone. aiohttp servers need asyncio, so emulators run on asyncio only.

Time
    Emulators take a ``clock`` (default :func:`anyio.current_time`); log times and any state
    computed on read (e.g. OQC's ``expire_after_s``) use it. Nothing busy-loops in the background:
    state progresses when read or when the embedded engine finishes a run.

Vendors
    :func:`start_emulator` builds emulators by vendor name: ``"oqc"`` is
    :class:`~oqc_style_sdk.testing.oqc.OqcEmulator`; :func:`register_emulator` adds others.
    A subclass sets :attr:`Emulator.vendor`, adds routes in :meth:`Emulator.setup_routes`, starts
    its engine in :meth:`Emulator.on_start`, and may override :meth:`Emulator.error_response`,
    :meth:`Emulator.is_authorized`, :meth:`Emulator.unauthorized_response`,
    :meth:`Emulator.secrets`, :attr:`Emulator.credentials` and :attr:`Emulator.env`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from importlib import metadata
from types import TracebackType
from typing import Any, ClassVar, Final, Literal, Self

import anyio
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from anyio.abc import TaskGroup

from .._http.secrets import CREDENTIAL_HEADERS
from ..exceptions import ConfigurationError

__all__ = [
    "DEFAULT_MAX_LIFETIME_S",
    "HOST",
    "REDACTED",
    "ApiError",
    "Emulator",
    "Fault",
    "LoggedRequest",
    "available_emulators",
    "create_emulator",
    "duration_option",
    "register_emulator",
    "sdk_version",
    "serve_forever",
    "start_emulator",
]

logger = logging.getLogger("oqc_style_sdk.testing.emulator")

#: The only address emulators listen on.
HOST: Final = "127.0.0.1"
#: What a secret reads as in the request log.
REDACTED: Final = "<redacted>"
#: How long an emulator serves at most, unless told otherwise (seconds).
DEFAULT_MAX_LIFETIME_S: Final = 600.0

#: Headers whose values never enter the request log (lower case): those the SDK treats as
#: credentials, and the management token Databricks' Azure service principals send.
SECRET_HEADERS: Final = CREDENTIAL_HEADERS | {"x-databricks-azure-sp-management-token"}
#: JSON body keys whose values never enter the request log (lower case, at any depth).
SECRET_FIELDS: Final = frozenset(
    {"password", "client_secret", "authentication_token", "access_token", "refresh_token", "token"}
)

FaultKind = Literal["fail", "drop", "malformed", "slow"]
PathMatcher = str | re.Pattern[str]

_NOT_JSON: Final = b"<html><body><h1>502 Bad Gateway</h1>(emulated malformed response)</body></html>"
_TRUNCATED_PREFIX: Final = b'{"response": {"message": "this body was cut sh'


# --------------------------------------------------------------------------------------------------
# The request log and fault rules
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class LoggedRequest:
    """One request as the emulator received it (secrets redacted) and what the client got."""

    method: str
    path: str
    query: dict[str, str]
    #: The parsed JSON body, else the raw text (UTF-8, errors replaced), else None (no body).
    body: Any
    headers: dict[str, str]
    #: The emulator's clock when the request arrived.
    time: float
    #: The status the client received; None while in progress, or if the connection was dropped.
    status: int | None = None
    #: The fault rule applied (``"fail"``, ``"fail_after_processing"``, ``"drop"``,
    #: ``"drop_after_processing"``, ``"malformed"``, ``"truncated"`` — with ``_after_processing``
    #: when processed first —, ``"slow"``), or None.
    fault: str | None = None


@dataclass(slots=True)
class Fault:
    """A pending fault rule (see the module docstring). ``remaining`` counts down to removal."""

    kind: FaultKind
    remaining: int
    path: PathMatcher | None = None
    method: str | None = None
    status: int | None = None
    retry_after: str | None = None
    body: Any = None
    delay_s: float = 0.0
    after_processing: bool = False
    truncated: bool = False

    def matches(self, method: str, path: str) -> bool:
        """Whether this rule applies to a request of ``method`` on ``path``."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is None:
            return True
        if isinstance(self.path, str):
            return self.path in path
        return self.path.search(path) is not None

    @property
    def label(self) -> str:
        """The name recorded in :attr:`LoggedRequest.fault`."""
        name = "truncated" if self.kind == "malformed" and self.truncated else self.kind
        return f"{name}_after_processing" if self.after_processing else name


def _positive_count(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigurationError(f"n must be a positive int, got {n!r}")
    return n


def duration_option(name: str, value: object, *, positive: bool = False) -> float:
    """A knob in seconds, checked: finite, >= 0 (> 0 with ``positive``). For every emulator's options."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number of seconds, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ConfigurationError(f"{name} must be {'> 0' if positive else '>= 0'} seconds, got {value!r}")
    return float(value)


def sdk_version() -> str:
    """This package's version, as emulators put it in their version strings."""
    try:
        return metadata.version("oqc-style-sdk")
    except metadata.PackageNotFoundError:
        return "unknown"


def _status_code(status: object) -> int:
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ConfigurationError(f"status must be an HTTP status code (100-599), got {status!r}")
    return status


def _retry_after(value: float | str | None) -> str | None:
    """``Retry-After`` as sent: an int as is, a float as written (not RFC, handy for fast tests)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"retry_after must be seconds or a string, got {value!r}")
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class ApiError(Exception):
    """Raise in a vendor handler to answer ``status`` with the vendor's error body."""

    def __init__(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = _status_code(status)
        self.message = message
        self.headers = dict(headers) if headers is not None else None


# --------------------------------------------------------------------------------------------------
# The base emulator
# --------------------------------------------------------------------------------------------------


class Emulator:
    """An aiohttp server on 127.0.0.1 with a request log, fault knobs and a bounded life.

    :param port: the port to bind (default 0: the OS picks a free one).
    :param job_duration_s: how long a job takes (how a vendor subclass uses it is its own).
    :param latency_s: waited before answering every request.
    :param max_lifetime_s: the server stops itself this long after it started (default 600 s).
    :param clock: the time source of the log and of state computed on read.
    :param shutdown_timeout_s: how long in-flight requests may finish when the server stops.
    :param max_log: the request log keeps at most this many (newest) entries.
    """

    #: The registry name of the vendor (set by subclasses).
    vendor: ClassVar[str] = ""

    def __init__(
        self,
        *,
        port: int = 0,
        job_duration_s: float = 0.5,
        latency_s: float = 0.0,
        max_lifetime_s: float = DEFAULT_MAX_LIFETIME_S,
        clock: Callable[[], float] | None = None,
        shutdown_timeout_s: float = 0.5,
        max_log: int = 100_000,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigurationError(f"port must be an int in 0..65535, got {port!r}")
        self.job_duration_s = duration_option("job_duration_s", job_duration_s)
        self.latency_s = duration_option("latency_s", latency_s)
        self.max_lifetime_s = duration_option("max_lifetime_s", max_lifetime_s, positive=True)
        self.shutdown_timeout_s = duration_option("shutdown_timeout_s", shutdown_timeout_s)
        self.clock: Callable[[], float] = clock if clock is not None else anyio.current_time
        self.max_log = _positive_count(max_log)
        self._requested_port = port
        self._port: int | None = None
        self.requests: list[LoggedRequest] = []
        self._faults: list[Fault] = []
        self._host_task: asyncio.Task[None] | None = None
        self._stop_event: asyncio.Event | None = None
        self._host_error_raised = False
        self._running = False
        #: Why the server stopped: ``"stopped"`` (asked to), ``"max_lifetime_s"``, or None.
        self.stop_reason: str | None = None
        self.app = web.Application(middlewares=[self._make_middleware()])
        self.setup_routes(self.app)

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "not started"
        return f"{type(self).__name__}({where}, running={self._running})"

    # -- what clients need ----------------------------------------------------------------------

    @property
    def host(self) -> str:
        """Always ``127.0.0.1``."""
        return HOST

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started: no port yet")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
        return f"http://{HOST}:{self.port}"

    @property
    def credentials(self) -> dict[str, str]:
        """What a backend needs to talk to this emulator (vendor subclasses fill it)."""
        return {"url": self.base_url}

    @property
    def env(self) -> dict[str, str]:
        """The environment variables a backend reads to find this emulator."""
        return {}

    @property
    def running(self) -> bool:
        """Whether the server is accepting requests."""
        return self._running

    # -- subclass hooks -------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        """Add the vendor's routes (called once, from ``__init__``)."""

    async def on_start(self, task_group: TaskGroup) -> None:
        """Start engines; background work goes in ``task_group`` (cancelled on stop)."""

    async def on_stop(self) -> None:
        """Release what :meth:`on_start` took (the server has already stopped)."""

    def is_authorized(self, request: web.Request) -> bool:
        """Whether the request carries valid credentials (default: everything is allowed)."""
        return True

    def unauthorized_response(self, request: web.Request) -> web.StreamResponse:
        """The answer to a request :meth:`is_authorized` refused."""
        return self.error_response(401, "Unauthorized")

    def error_response(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        """The vendor's error answer (default: ``{"error": {"code", "message"}}``)."""
        return web.json_response(
            {"error": {"code": status, "message": message}}, status=status, headers=headers
        )

    def secrets(self) -> Iterable[str]:
        """Secret values (tokens, passwords) to scrub from the request log."""
        return ()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start serving (in a host task of its own); return once requests are accepted.

        Raises whatever binding or the vendor's :meth:`on_start` raised. An emulator starts once.
        """
        if self._host_task is not None:
            raise RuntimeError(f"{type(self).__name__} was already started; create a new one")
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._stop_event = asyncio.Event()
        self._host_task = loop.create_task(self._host(ready), name=f"{self.vendor or 'vendor'} emulator")
        try:
            await ready
        except BaseException:
            self._host_error_raised = True  # raised here; stop() must not raise it again
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop serving and cancel the engine; idempotent; returns when everything is closed.

        Bounded by ``shutdown_timeout_s`` plus the time to cancel. Shielded from cancellation of
        the caller so that it always completes. Re-raises (once) an unexpected error of the host.
        """
        task = self._host_task
        if task is None:
            return
        if self._stop_event is not None and not self._stop_event.is_set():
            if self.stop_reason is None:
                self.stop_reason = "stopped"
            self._stop_event.set()
        with anyio.CancelScope(shield=True):
            await asyncio.wait({task})
        if task.cancelled():
            return
        error = task.exception()  # retrieved, so asyncio never logs it as unretrieved
        if error is None or self._host_error_raised:
            return
        self._host_error_raised = True
        raise RuntimeError(f"{type(self).__name__} failed while serving: {error!r}") from error

    async def wait_stopped(self) -> None:
        """Wait until the server has stopped (asked to, or its lifetime ended)."""
        task = self._host_task
        if task is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        await asyncio.wait({task})

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _host(self, ready: asyncio.Future[None]) -> None:
        """Serve until told to stop or the lifetime ends; owns every cancel scope involved."""
        assert self._stop_event is not None
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=self.shutdown_timeout_s
        )
        server_closed = False

        async def close_server() -> None:
            nonlocal server_closed
            self._running = False
            if server_closed:
                return
            server_closed = True
            with anyio.CancelScope(shield=True):
                await runner.cleanup()

        try:
            await runner.setup()
            site = web.TCPSite(runner, HOST, self._requested_port)
            await site.start()
            self._port = int(runner.addresses[0][1])
            async with anyio.create_task_group() as task_group:
                await self.on_start(task_group)
                self._running = True
                ready.set_result(None)
                logger.debug("%s emulator serving on %s", self.vendor, self.base_url)
                with anyio.move_on_after(self.max_lifetime_s) as lifetime:
                    await self._stop_event.wait()
                if lifetime.cancelled_caught:
                    self.stop_reason = "max_lifetime_s"
                    logger.warning(
                        "%s emulator at %s stopped itself after max_lifetime_s=%s",
                        self.vendor,
                        self.base_url,
                        self.max_lifetime_s,
                    )
                await close_server()  # no request reaches the engine after this
                task_group.cancel_scope.cancel()
        except BaseException as exc:
            if not ready.done():
                error: BaseException = exc
                while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
                    error = error.exceptions[0]
                if isinstance(error, asyncio.CancelledError):
                    ready.cancel()
                else:
                    ready.set_exception(error)
            raise
        finally:
            await close_server()
            with anyio.CancelScope(shield=True):
                await self.on_stop()

    # -- the request log ------------------------------------------------------------------------

    def count(self, method: str | None = None, path_prefix: str | None = None) -> int:
        """How many logged requests have this method (any if None) and path prefix (any if None)."""
        return sum(
            1
            for entry in self.requests
            if (method is None or entry.method == method.upper())
            and (path_prefix is None or entry.path.startswith(path_prefix))
        )

    def clear_log(self) -> None:
        """Forget the logged requests."""
        self.requests.clear()

    def _scrub(self, text: str) -> str:
        for secret in self.secrets():
            if secret:
                text = text.replace(secret, REDACTED)
        return text

    def _redact(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._scrub(value)
        if isinstance(value, list):
            return [self._redact(item) for item in value]
        if isinstance(value, dict):
            return {
                key: REDACTED if isinstance(key, str) and key.lower() in SECRET_FIELDS else self._redact(item)
                for key, item in value.items()
            }
        return value

    async def _log(self, request: web.Request) -> LoggedRequest:
        body: Any = None
        try:
            raw = await request.read()
        except web.HTTPException:  # too large: the handler answers (413) when it reads again
            raw = b""
        if raw:
            text = raw.decode("utf-8", errors="replace")
            try:
                body = json.loads(text)
            except ValueError:
                body = text
        headers = {
            name: REDACTED if name.lower() in SECRET_HEADERS else self._scrub(value)
            for name, value in request.headers.items()
        }
        entry = LoggedRequest(
            method=request.method,
            path=self._scrub(request.path),
            query={self._scrub(k): self._scrub(v) for k, v in request.query.items()},
            body=self._redact(body),
            headers=headers,
            time=self.clock(),
        )
        self.requests.append(entry)
        if len(self.requests) > self.max_log:
            del self.requests[: len(self.requests) - self.max_log]
        return entry

    # -- fault knobs ----------------------------------------------------------------------------

    @property
    def faults(self) -> list[Fault]:
        """The pending fault rules, in matching order (a copy)."""
        return list(self._faults)

    def clear_faults(self) -> None:
        """Drop every pending fault rule."""
        self._faults.clear()

    def _add(self, fault: Fault) -> Fault:
        if fault.method is not None and not isinstance(fault.method, str):
            raise ConfigurationError(f"method must be a str or None, got {fault.method!r}")
        if fault.path is not None and not isinstance(fault.path, str | re.Pattern):
            raise ConfigurationError(f"path must be a str, a compiled regex or None, got {fault.path!r}")
        self._faults.append(fault)
        return fault

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int,
        path: PathMatcher | None = None,
        method: str | None = None,
        retry_after: float | str | None = None,
        body: Any = None,
    ) -> Fault:
        """The next ``n`` matching requests get ``status`` and are NOT processed.

        ``retry_after`` sets ``Retry-After`` (seconds, or a string such as an HTTP date); ``body``
        replaces the vendor's error body (dict/list: JSON; str/bytes: sent as is).
        """
        return self._add(
            Fault(
                "fail",
                _positive_count(n),
                path,
                method,
                status=_status_code(status),
                retry_after=_retry_after(retry_after),
                body=body,
            )
        )

    def fail_after_processing_next(
        self,
        n: int = 1,
        *,
        status: int,
        path: PathMatcher | None = None,
        method: str | None = None,
        retry_after: float | str | None = None,
        body: Any = None,
    ) -> Fault:
        """The next ``n`` matching requests ARE processed, then answered ``status``: a lost reply."""
        return self._add(
            Fault(
                "fail",
                _positive_count(n),
                path,
                method,
                status=_status_code(status),
                retry_after=_retry_after(retry_after),
                body=body,
                after_processing=True,
            )
        )

    def drop_next(
        self,
        n: int = 1,
        *,
        path: PathMatcher | None = None,
        method: str | None = None,
        after_processing: bool = False,
    ) -> Fault:
        """Close the connection of the next ``n`` matching requests without answering."""
        return self._add(Fault("drop", _positive_count(n), path, method, after_processing=after_processing))

    def malformed_next(
        self,
        n: int = 1,
        *,
        path: PathMatcher | None = None,
        method: str | None = None,
        truncated: bool = False,
        after_processing: bool = False,
    ) -> Fault:
        """Answer the next ``n`` matching requests 200 with a non-JSON (or a truncated) body."""
        return self._add(
            Fault(
                "malformed",
                _positive_count(n),
                path,
                method,
                after_processing=after_processing,
                truncated=truncated,
            )
        )

    def slow_next(
        self,
        n: int = 1,
        *,
        delay_s: float,
        path: PathMatcher | None = None,
        method: str | None = None,
    ) -> Fault:
        """Wait ``delay_s`` before processing the next ``n`` matching requests."""
        return self._add(
            Fault("slow", _positive_count(n), path, method, delay_s=duration_option("delay_s", delay_s))
        )

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for index, fault in enumerate(self._faults):
            if fault.matches(method, path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    del self._faults[index]
                return fault
        return None

    # -- the middleware -------------------------------------------------------------------------

    def _make_middleware(self) -> Middleware:
        @web.middleware
        async def emulator_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            entry = await self._log(request)
            if self.latency_s > 0:
                await anyio.sleep(self.latency_s)
            fault = self._take_fault(request.method, request.path)
            entry.fault = fault.label if fault is not None else None
            response, status = await self._respond(request, handler, fault)
            entry.status = status
            return response

        return emulator_middleware

    async def _process(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authenticate and run the vendor's handler; errors become the vendor's error answers."""
        try:
            if not self.is_authorized(request):
                return self.unauthorized_response(request)
            return await handler(request)
        except ApiError as exc:
            return self.error_response(exc.status, exc.message, headers=exc.headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            allow = exc.headers.get("Allow")
            return self.error_response(
                exc.status, exc.reason, headers={"Allow": allow} if allow is not None else None
            )
        except Exception:  # a bug in a vendor handler: answer 500, keep serving
            logger.exception(
                "%s emulator: handler failed on %s %s", self.vendor, request.method, request.path
            )
            return self.error_response(500, "Internal Server Error")

    async def _respond(
        self, request: web.Request, handler: Handler, fault: Fault | None
    ) -> tuple[web.StreamResponse, int | None]:
        if fault is None:
            response = await self._process(request, handler)
            return response, response.status
        if fault.kind == "slow":
            await anyio.sleep(fault.delay_s)
            response = await self._process(request, handler)
            return response, response.status
        processed = await self._process(request, handler) if fault.after_processing else None
        if fault.kind == "fail":
            assert fault.status is not None
            return self._fault_response(fault), fault.status
        if fault.kind == "drop":
            request.protocol.force_close()
            return web.Response(status=204), None
        # malformed
        if not fault.truncated:
            return web.Response(status=200, body=_NOT_JSON, content_type="application/json"), 200
        full = _TRUNCATED_PREFIX + b"..."
        if isinstance(processed, web.Response) and isinstance(processed.body, bytes) and processed.body:
            full = processed.body
        return await self._send_truncated(request, full), 200

    def _fault_response(self, fault: Fault) -> web.Response:
        assert fault.status is not None
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
        body = fault.body
        if body is None:
            return self.error_response(fault.status, _reason(fault.status), headers=headers)
        if isinstance(body, bytes | str):
            raw = body.encode() if isinstance(body, str) else body
            html = raw.lstrip().startswith(b"<")
            return web.Response(
                status=fault.status,
                body=raw,
                content_type="text/html" if html else "text/plain",
                headers=headers,
            )
        return web.json_response(body, status=fault.status, headers=headers)

    @staticmethod
    async def _send_truncated(request: web.Request, full: bytes) -> web.StreamResponse:
        """200 announcing ``len(full)`` bytes (at least 64 more than sent), then a hang-up."""
        cut = full[: len(full) // 2]
        announced = max(len(full), len(cut) + 64)
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "application/json", "Content-Length": str(announced)}
        )
        await response.prepare(request)
        if cut:
            await response.write(cut)
        request.protocol.force_close()
        return response


# --------------------------------------------------------------------------------------------------
# The registry and the entry points
# --------------------------------------------------------------------------------------------------

EmulatorFactory = Callable[..., Emulator]

_REGISTRY: dict[str, EmulatorFactory] = {}
#: Built-in vendors, imported on first use (their modules import this one).
_BUILTIN: Final[Mapping[str, tuple[str, str]]] = {
    "oqc": ("oqc_style_sdk.testing.oqc", "OqcEmulator"),
    "ibm_quantum": ("oqc_style_sdk.testing.ibm_quantum", "IbmQuantumEmulator"),
    "azure_quantum": ("oqc_style_sdk.testing.azure_quantum", "AzureQuantumEmulator"),
    "databricks": ("oqc_style_sdk.testing.databricks", "DatabricksEmulator"),
    "windmill": ("oqc_style_sdk.testing.windmill", "WindmillEmulator"),
}


def register_emulator(name: str, cls: EmulatorFactory) -> None:
    """Make ``start_emulator(name, **options)`` build ``cls(**options)``."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"emulator name must be a non-empty str, got {name!r}")
    if not callable(cls):
        raise ConfigurationError(f"emulator factory for {name!r} must be callable, got {cls!r}")
    _REGISTRY[name] = cls


def available_emulators() -> list[str]:
    """The vendor names :func:`start_emulator` knows, sorted."""
    return sorted({*_BUILTIN, *_REGISTRY})


def create_emulator(vendor: str, **options: Any) -> Emulator:
    """A new, not yet started, emulator of ``vendor``."""
    factory = _REGISTRY.get(vendor)
    if factory is None and vendor in _BUILTIN:
        module_name, class_name = _BUILTIN[vendor]
        factory = getattr(importlib.import_module(module_name), class_name)
        _REGISTRY[vendor] = factory
    if factory is None:
        raise ConfigurationError(
            f"no emulator for vendor {vendor!r}; known: {', '.join(available_emulators())}"
        )
    emulator = factory(**options)
    if not isinstance(emulator, Emulator):
        raise ConfigurationError(
            f"the factory of {vendor!r} returned {type(emulator).__name__}, not an Emulator"
        )
    return emulator


@contextlib.asynccontextmanager
async def start_emulator(vendor: str, **options: Any) -> AsyncIterator[Emulator]:
    """Build, start and yield the emulator of ``vendor``; always stop it on exit.

    ``options`` go to the emulator's constructor (``job_duration_s``, ``latency_s``,
    ``max_lifetime_s`` — default 600 s, after which the server stops itself —, ``clock``, and the
    vendor's own). Entering and exiting may happen in different tasks.
    """
    emulator = create_emulator(vendor, **options)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


async def serve_forever(
    vendor: str,
    *,
    port: int = 0,
    job_duration_s: float | None = None,
    ready: Callable[[Emulator], None] | None = None,
    **options: Any,
) -> Emulator:
    """Serve an emulator until cancelled or until its ``max_lifetime_s`` ends (the CLI's loop).

    ``ready(emulator)`` is called once it accepts requests (the CLI prints ``emulator.env`` and
    ``ready``). Returns the stopped emulator when its lifetime ends.
    """
    if job_duration_s is not None:
        options["job_duration_s"] = job_duration_s
    async with start_emulator(vendor, port=port, **options) as emulator:
        if ready is not None:
            ready(emulator)
        await emulator.wait_stopped()
    return emulator
