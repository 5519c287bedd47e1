"""The client: one aiohttp session per vendor endpoint, retries under the caller's deadline.

Adapters call :class:`HttpClient`; they never sleep, retry or see an aiohttp exception.

What it guarantees
    - **One session.** :meth:`HttpClient.start` creates the one ``aiohttp.ClientSession`` (pooled
      connections, DNS cache); :meth:`HttpClient.aclose` closes it. No background tasks.
    - **Retries are decided by** :meth:`RetryPolicy.decide` (``retry.py``), a pure function.
    - **A deadline is a deadline.** The caller's anyio deadline caps every request's timeout, and a
      wait that would end after it is not started: the typed error of the last attempt is raised at
      once.
    - **Every failure is one SDK error** (``errors.py``), with the vendor's own message and code.
    - **Secrets stay secret.** :class:`Secret` values are revealed only when put on the wire; they are
      never logged, never in a repr or an exception message, and known secret values are scrubbed
      from every answer as it arrives (a vendor echoing a token). Query strings never appear in
      messages or logs.
    - **Credentials go where the Sdk says** (``origins.py``): to the configured origin and those its
      backend granted; any other URL is refused, and a redirect elsewhere is followed bare or not
      at all.
"""

from __future__ import annotations

import functools
import json as jsonlib
import logging
import math
import random
import re
from collections.abc import Awaitable, Callable, Container, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import Any, Final, Self

import aiohttp
import anyio
from multidict import CIMultiDict
from yarl import URL

from ..exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    ProtocolError,
    SdkError,
    SdkNotStartedError,
)
from .errors import RedactedTransportError, error_for_status, map_exception, safe_cause, unavailable_phrase
from .origins import OriginPolicy, origin_of
from .response import Response
from .retry import IDEMPOTENT_METHODS, RetryPolicy, retry_after_from
from .secrets import CREDENTIAL_HEADERS, KnownSecrets, Secret
from .urls import check_url, display_url, is_absolute, is_plain_path

__all__ = ["DEFAULT_USER_AGENT", "HttpClient", "encode_json"]

logger = logging.getLogger("oqc_style_sdk.http")

try:
    _SDK_VERSION = version("oqc-style-sdk")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    _SDK_VERSION = "0"

DEFAULT_USER_AGENT: Final = f"oqc-style-sdk/{_SDK_VERSION} aiohttp/{aiohttp.__version__}"

_OK: Final = range(200, 300)
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS: Final = 10
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: Connections per client (aiohttp's pool), and so requests in flight at once.
_CONNECTIONS: Final = 100


@dataclass(slots=True)
class _Request:
    """One hop of one attempt: what is sent, and where. A redirect makes the next hop's request."""

    method: str
    url: URL
    headers: CIMultiDict[str]
    #: Lower-cased names of the headers that are credentials (dropped when a hop leaves the origin).
    credential_names: frozenset[str]
    body: bytes | None
    #: The path as messages and logs show it (known secrets scrubbed).
    path: str


class HttpClient:
    """One vendor endpoint: a pooled session, retries under the caller's deadline, typed errors.

    ``headers`` are sent on every request; ``auth()`` is awaited before every attempt for fresh
    credential headers; ``on_unauthorized()`` is awaited once on a 401 (e.g. to refresh a token) and
    the request is tried once more. ``secrets`` are credentials the client puts in request bodies
    (IBM Cloud IAM's API key): they make it a client with credentials, and are scrubbed like the
    others. Use as ``async with HttpClient(...) as http:`` or ``start()``/``aclose()``.
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
        secrets: Iterable[Secret] = (),
    ) -> None:
        if not isinstance(base_url, str) or not base_url.strip():
            raise ConfigurationError(f"{vendor}: base_url must be an http(s) URL")
        try:
            parsed = URL(base_url.strip())
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"{vendor}: base_url is not a valid URL") from exc
        check_url(parsed, allow_insecure_http=allow_insecure_http, what=f"{vendor} base_url")
        if parsed.raw_query_string or parsed.raw_fragment:
            raise ConfigurationError(
                f"{vendor} base_url must not have a query or fragment; pass query parameters per request"
            )
        for name, value in (("timeout_s", timeout_s), ("connect_timeout_s", connect_timeout_s)):
            if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
                raise ConfigurationError(f"{name} must be a positive number of seconds")
        self.vendor = vendor
        self.base_url: str = str(parsed).rstrip("/")
        #: The base URL, and its path where a plain one (a plain path is joined to it unparsed).
        self._base = parsed
        base_path = parsed.raw_path.rstrip("/")
        self._base_path = base_path if is_plain_path(base_path) else None
        #: The text before the path of absolute URLs already accepted → that origin, as a URL.
        self._accepted: dict[str, URL] = {}
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
        self._secrets = KnownSecrets()
        # The header set of a request without per-request headers or an auth() callback, by
        # content type: built once, never changed (a redirect works on a copy).
        self._static_headers: dict[str | None, tuple[CIMultiDict[str], frozenset[str]]] = {}
        # Origins of absolute URLs already checked by _check_url.
        self._checked_origins: set[tuple[str, str | None, int | None]] = set()
        self._headers = self._validated_headers(headers or {})
        carried: list[str | Secret] = list(secrets)
        for header_name, header_value in self._headers.items():
            if isinstance(header_value, Secret) or header_name.lower() in CREDENTIAL_HEADERS:
                carried.append(header_value)
        for secret in carried:
            self._secrets.remember(secret)
        #: Where credentials may go (see origins.py); a client that carries none may go anywhere.
        self._origins = OriginPolicy(parsed)
        self._credentialed = bool(carried) or auth is not None
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

    # -- origins -------------------------------------------------------------------------------------

    def grant_origin(self, url: str) -> None:
        """Send credentials to ``url``'s origin too: for the derived hosts a vendor documents (and
        that the configured origin named), never for a URL from a file. ConfigurationError if the
        URL is not one this client accepts at all, or too many origins were granted."""
        target = self._parse_absolute(url, what=f"a derived URL of {self.vendor}")
        if not self._origins.grant(target):
            raise ConfigurationError(
                f"{self.vendor}: too many derived origins; {target.host} was not granted"
            )

    @property
    def carries_credentials(self) -> bool:
        """Whether this client sends credentials (headers, ``auth()``, or secrets in its bodies)."""
        return self._credentialed

    def scrub_secrets_of(self, other: HttpClient) -> None:
        """Scrub ``other``'s known secrets (and any it learns later) from this client's answers and
        messages too: for a client that carries none of its own, such as Azure's blob client,
        whose answers could otherwise echo the workspace token unseen."""
        if self._credentialed:
            raise ConfigurationError(f"{self.vendor}: a client with credentials keeps its own secrets")
        self._secrets = other._secrets

    def sends_credentials_to(self, url: str) -> bool:
        """Whether a request to ``url`` (a path, or an absolute URL) would be sent: a client that
        carries credentials sends only to its own and its granted origins."""
        if not is_absolute(url):
            return not url.startswith("//")  # scheme-relative: refused by every request too
        try:
            target = self._parse_absolute(url, what=f"a URL for {self.vendor}")
        except ConfigurationError:
            return False
        return not self._credentialed or self._origins.allows(target)

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
        encoded_json: bytes | None = None,
        headers: Mapping[str, str | Secret] | None = None,
        idempotent: bool | None = None,
        ok: Container[int] = _OK,
    ) -> Response:
        """Send a request, retrying as :class:`RetryPolicy` decides; the answer if its status is ok.

        ``url`` is a path joined to ``base_url`` or an absolute http(s) URL. ``json`` is sent compact;
        ``encoded_json`` is JSON the caller encoded already (sent as is, as JSON); ``data`` raw.
        ``idempotent`` defaults by method (POST: False); pass True for a POST that carries an
        idempotency key or a client-chosen id. Any other status raises its SDK error.
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
            body = encode_json(json).encode()
            content_type = "application/json"
        if encoded_json is not None:
            if data is not None or json is not None:
                raise ConfigurationError("pass one of json, encoded_json or data")
            body = encoded_json
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
                    session,
                    _Request(method, target, wire_headers, credential_names, body, path),
                    ok=ok,
                    attempt=attempt,
                    client_timeout=timeout,
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
                    retry_after = retry_after_from(response.headers, datetime.now(UTC))
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
            unavailable = unavailable_phrase(exc, timeout.total)
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
        cause = safe_cause(exc)
        text = str(cause)
        if self._redact(text) != text:  # e.g. a server echoing a token into a transport error
            cause = RedactedTransportError(
                f"{type(exc).__module__}.{type(exc).__qualname__}: {self._redact(text)}"
            )
        error.__cause__ = cause
        error.__suppress_context__ = True
        return error

    def _parse_absolute(self, url: str, *, what: str) -> URL:
        """An absolute URL this client accepts at all (see ``urls.py``), else ConfigurationError."""
        try:
            target = URL(url)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"not a valid URL for {self.vendor}") from exc
        origin = (target.scheme, target.host, target.port)
        if origin not in self._checked_origins or target.user is not None or target.password is not None:
            check_url(target, allow_insecure_http=self._allow_insecure_http, what=what)
            if len(self._checked_origins) < 64:
                self._checked_origins.add(origin)
        return target

    def _resolve(self, url: str, params: Mapping[str, str | int] | None) -> URL:
        if is_absolute(url):
            # The usual URL: a plain path under an origin already checked (OQC's task URLs, one
            # per request): built from that origin without parsing the whole URL again.
            cut = url.find("/", url.find("://") + 3)
            known = self._accepted.get(url[:cut]) if cut > 0 else None
            if known is not None and is_plain_path(url, cut):
                target = known.with_path(url[cut:], encoded=True)
            else:
                target = self._parse_absolute(url, what=f"a URL for {self.vendor}")
                if self._credentialed and not self._origins.allows(target):
                    raise ProtocolError(
                        f"{self.vendor}: a URL naming {target.scheme}://{target.host}:{target.port} was "
                        "not followed: credentials go only to the origins this Sdk was configured with"
                    )
                # Accepted (origins are only ever granted, never withdrawn): the text before its
                # path names that origin from now on — where that text is exactly the origin as
                # written out (no query, fragment or userinfo before the path's first slash).
                origin = target.with_path("/", encoded=True)
                if cut > 0 and len(self._accepted) < 64 and str(origin) == url[: cut + 1]:
                    self._accepted[url[:cut]] = origin
        else:
            if url.startswith("//"):
                raise ConfigurationError("a scheme-relative URL is ambiguous; pass a path or a full URL")
            if self._base_path is not None and url.startswith("/") and is_plain_path(url):
                target = self._base.with_path(self._base_path + url, encoded=True)
            else:
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

    def _display(self, url: URL) -> str:
        return self._redact(display_url(url))

    def _redact(self, text: str) -> str:
        return self._secrets.redact(text)

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
                if from_auth or isinstance(value, Secret) or lowered in CREDENTIAL_HEADERS:
                    credentials.add(lowered)
                    self._secrets.remember(value)
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
        request: _Request,
        *,
        ok: Container[int],
        attempt: int,
        client_timeout: aiohttp.ClientTimeout,
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
                        request.method,
                        request.url,
                        headers=request.headers,
                        data=request.body,
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
                                    request.method,
                                    request.path,
                                    status,
                                    _ms_since(started),
                                    attempt,
                                )
                            return Response(
                                status=status,
                                headers=response.headers,
                                body=payload,
                                url=functools.partial(self._display, response.url),
                                secrets=self._secrets,
                            )
                except (aiohttp.ClientError, TimeoutError) as exc:
                    if debug:
                        logger.debug(
                            "%s %s -> %s after %d ms (attempt %d)",
                            request.method,
                            request.path,
                            type(exc).__name__,
                            _ms_since(started),
                            attempt,
                        )
                    raise
                if debug:
                    logger.debug(
                        "%s %s -> %d redirect in %d ms (attempt %d)",
                        request.method,
                        request.path,
                        status,
                        _ms_since(started),
                        attempt,
                    )
                request = self._follow(request, location, status)
            raise ProtocolError(
                f"{self.vendor} redirected {request.method} {request.path} more than {_MAX_REDIRECTS} times"
            )
        finally:
            slots.release()

    def _follow(self, request: _Request, location: str, status: int) -> _Request:
        """The request a redirect asks for: a POST turned into a GET where the status says so; to an
        origin outside the policy, without credentials, and refused if it would resend a body."""
        method, path = request.method, request.path
        try:
            target = request.url.join(URL(location)).with_fragment(None)
        except (ValueError, TypeError):
            raise ProtocolError(f"{self.vendor} redirected {method} {path} to an invalid URL") from None
        try:
            check_url(target, allow_insecure_http=self._allow_insecure_http, what="redirect target")
        except ConfigurationError as exc:
            raise ProtocolError(
                f"{self.vendor} redirected {method} {path} to a URL this client refuses: {exc}"
            ) from None
        headers = request.headers.copy()
        body = request.body
        if status == 303 or (status in (301, 302) and method == "POST"):
            method = "GET" if method != "HEAD" else method
            body = None
            headers.popall("Content-Type", None)
        if origin_of(target) != origin_of(request.url) and not self._origins.allows(target):
            # Another origin than the Sdk chose: it gets a bare request, or none.
            if body is not None:  # a body may hold a credential (IBM's IAM API key): never resent
                raise ProtocolError(
                    f"{self.vendor} redirected {method} {path} with its body to another origin; not followed"
                )
            for name in request.credential_names | CREDENTIAL_HEADERS:
                headers.popall(name, None)
        return replace(
            request, method=method, url=target, headers=headers, body=body, path=self._redact(target.path)
        )


#: The encoder of every JSON body (``json.dumps`` with options builds a new one per call).
_JSON_ENCODER: Final = jsonlib.JSONEncoder(separators=(",", ":"), allow_nan=False)


def encode_json(value: Any) -> str:
    """``value`` as the JSON text a ``json=`` body sends (compact, ASCII, no NaN)."""
    return _JSON_ENCODER.encode(value)


def _query_value(value: str | int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _ms_since(started: float) -> int:
    return round((anyio.current_time() - started) * 1000)


def _fmt_s(value: float | None) -> str:
    return "none" if value is None else f"{value:.3f}s"
