"""IBM Quantum: OpenQASM circuits run by the Qiskit Runtime ``sampler`` over IBM's REST API.

Settings (keyword arguments of ``Sdk("ibm_quantum", ...)``; each defaults to an environment variable)

- ``api_key``: ``IBM_QUANTUM_API_KEY``, else ``QISKIT_IBM_TOKEN`` (qiskit-ibm-runtime's name). Required.
- ``instance``: the service instance CRN; ``IBM_QUANTUM_INSTANCE``, else ``QISKIT_IBM_INSTANCE``. Required.
- ``url``: ``IBM_QUANTUM_URL``; default ``https://quantum.cloud.ibm.com/api/v1``, or
  ``https://{region}.quantum.cloud.ibm.com/api/v1`` for a CRN of another region than us-east.
- ``iam_url``: ``IBM_QUANTUM_IAM_URL``; default ``https://iam.cloud.ibm.com/identity/token``.
- ``api_version``: the ``IBM-API-Version`` header; ``IBM_QUANTUM_API_VERSION``; default ``2026-04-15``
  (what qiskit-ibm-runtime 0.51.0 sends).
- ``max_jobs_per_window`` / ``rate_window_s``: the job-creation limit kept on this side;
  ``IBM_QUANTUM_MAX_JOBS_PER_WINDOW`` / ``IBM_QUANTUM_RATE_WINDOW_S``; default 5 per 60 s (IBM's).
- ``allow_insecure_http`` (default False: plain http only to loopback), ``timeout_s``, ``retry``.

A missing API key or instance raises :class:`~oqc_style_sdk.exceptions.ConfigurationError` naming the
variable. Opening the Sdk gets a token and lists the backends: a wrong URL, key or instance fails
there, at once, with a typed error.

Wire facts (``specs/VENDORS.md`` §1)

- The API key is exchanged at IBM Cloud IAM for a bearer token (form POST
  ``grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=…`` → ``{access_token, expires_in,
  expiration}``). Every API call carries ``Authorization: Bearer <token>``, ``Service-CRN: <instance>``
  and ``IBM-API-Version: <date>``.
- ``GET /backends`` → ``{"devices": [...]}``; ``POST /jobs`` (program ``sampler``) → ``{"id",
  "backend"}``; ``GET /jobs/{id}`` → the job, whose ``state.status`` is ``Queued``, ``Running``,
  ``Completed``, ``Failed`` or ``Cancelled`` (top-level ``status`` also ``Cancelled - Ran too long``);
  ``GET /backends/{name}/configuration`` and ``/properties`` → the device's gates, coupling map and
  calibration (qiskit-ibm-runtime's ``QasmBackendConfiguration`` and ``BackendProperties`` shapes);
  ``GET /jobs?pending=true`` lists queued and running jobs; ``POST /jobs/{id}/cancel`` → empty (409 once
  the job has ended); ``GET /jobs/{id}/results`` → plain-JSON SamplerV2 results (hex samples per shot).
- Job creation is rate limited ("5 jobs per minute per user"). A 429 is retried after its
  ``Retry-After`` by the HTTP layer, within the caller's deadline.

How this adapter uses them

- **Tokens.** The token is cached and refreshed shortly before it expires (when less than a fifth of
  its life, at most 5 minutes, remains), and once more when a request is answered 401. Refreshes are
  single-flight: concurrent requests refused with the same token cause one IAM call. The API key and
  tokens are :class:`~oqc_style_sdk._http.Secret` values: never in a repr, a log line or a message.
- **Programs** are OpenQASM 2 or 3 text, or a qiskit ``QuantumCircuit`` with every parameter bound.
  IBM's devices run only ISA circuits (their native gates, two-qubit gates on coupled qubits), so
  each program is transpiled before it is sent, as qiskit-ibm-runtime's users do it: the device's
  ``Target`` is built from ``GET /backends/{name}/configuration`` and ``/properties`` (once per
  device and backend), and a preset pass manager of ``config["optimization_level"]`` (0-3; default 1,
  the level IBM's documentation and its non-ISA error message use) lowers the circuit to it, in a
  worker thread. ``config={"transpile": False}`` sends an ISA circuit as written (it is still
  checked against the Target). The ISA circuit goes as OpenQASM 3; its depth, two-qubit gate
  count, gate counts and layout are in the job's ``metrics["transpilation"]``
  (``fetch_diagnostics=True``). A circuit wider than the device, with unbound parameters, or with a
  gate the device cannot run after transpilation is refused with JobValidationError, before any job
  is created at IBM.
- **Shots** go in ``params.options.default_shots`` — accepted by IBM's JSON schema and by its current
  Pydantic model (which forbids a top-level ``shots``). Without ``shots`` IBM's default applies (4096).
- **No idempotency key.** IBM takes none, so :attr:`IbmQuantumBackend.idempotent_submit` is False and
  the job creation POST is never resent by the HTTP layer after an ambiguous failure (a 429 is: it was
  not processed). Each job is tagged ``oqcs-submission:<key>`` (the run's idempotency key, beside the
  job's own tag); when a job is submitted again after a creation whose answer was lost — by this
  Sdk, or by the process whose job file was loaded (the file records that it was sent) — that tag is
  looked up first (``GET /jobs?tags=…``) and a job found is adopted, not created twice
  (:mod:`oqc_style_sdk.backends._ibm_submit`).
- **Creations wait their turn.** The documented limit is kept on this side
  (``max_jobs_per_window=5``, ``rate_window_s=60``; ``IBM_QUANTUM_MAX_JOBS_PER_WINDOW`` and
  ``IBM_QUANTUM_RATE_WINDOW_S``; ``None``/``none`` turns it off): a creation beyond it waits, before
  anything is sent, until the oldest answered creation leaves the window (:mod:`oqc_style_sdk._limits`;
  one window per key and instance in the process). A 429 is then rare, and still obeyed.
- **Status reads are batched.** Several waiting jobs are read with one ``GET /jobs?pending=true``
  (bounded by ``created_after``); a job absent from that list (it has ended) is read on its own.
- **Results** are decoded from the hex samples into counts per classical register, bitstrings of the
  register's width: ``{"c": {"00": 503, "11": 497}}``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar
from urllib.parse import quote, urlencode

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup
from pydantic import BaseModel, ConfigDict, ValidationError

from .._http import HttpClient, RetryPolicy, Secret
from .._limits import CreationWindow, creation_window
from ..exceptions import (
    AuthenticationError,
    BackendError,
    ConfigurationError,
    JobValidationError,
    ProtocolError,
    UnknownTargetError,
)
from ..state import JobState
from . import _ibm_runs
from ._http_backend import HttpBackend
from ._ibm_submit import SUBMISSION_TAG_PREFIX, LostCreations

# The local simulator's qiskit discipline: qiskit is first imported by its parked loader thread.
from ._ibm_target import DEFAULT_OPTIMIZATION_LEVEL, target_from_ibm, transpile_for, warm_transpiler
from ._qiskit import (
    as_circuit,
    as_qasm3,
    error_message,
    in_qiskit_thread,
    is_circuit,
    qasm_major_version,
)
from .base import Diagnostics, FoundRun, Observation, RunQuery, RunRef, RunSpec

__all__ = [
    "CONFIG_KEYS",
    "DEFAULT_API_VERSION",
    "DEFAULT_IAM_URL",
    "DEFAULT_MAX_JOBS_PER_WINDOW",
    "DEFAULT_RATE_WINDOW_S",
    "DEFAULT_URL",
    "IBM_STATUS",
    "MAX_PROGRAM_BYTES",
    "MAX_SHOTS",
    "RAN_TOO_LONG",
    "RAN_TOO_LONG_REASON_CODE",
    "SUBMISSION_TAG_PREFIX",
    "IbmQuantumBackend",
    "decode_samples",
    "default_url_for",
]

logger = logging.getLogger("oqc_style_sdk.backends.ibm_quantum")

DEFAULT_URL: Final = "https://quantum.cloud.ibm.com/api/v1"
DEFAULT_IAM_URL: Final = "https://iam.cloud.ibm.com/identity/token"
#: The ``IBM-API-Version`` qiskit-ibm-runtime 0.51.0 sends.
DEFAULT_API_VERSION: Final = "2026-04-15"
IAM_GRANT_TYPE: Final = "urn:ibm:params:oauth:grant-type:apikey"

#: The top-level job ``status`` of a job IBM stopped for running past its time limit.
RAN_TOO_LONG: Final = "Cancelled - Ran too long"
#: The ``state.reason_code`` of the same (qiskit-ibm-runtime reads it as an error, not a cancel).
RAN_TOO_LONG_REASON_CODE: Final = 1305

#: Every documented IBM job status, mapped once. Anything else keeps the job active (and is logged).
IBM_STATUS: Final[Mapping[str, JobState]] = {
    "Queued": JobState.SUBMITTED,
    "Running": JobState.RUNNING,
    "Completed": JobState.COMPLETED,
    "Failed": JobState.FAILED,
    "Cancelled": JobState.CANCELLED,
    RAN_TOO_LONG: JobState.FAILED,
}
_STATUS_BY_FOLDED: Final = {name.casefold(): name for name in IBM_STATUS}

#: IBM devices' ``max_shots``; the most shots this adapter lets one job ask for.
MAX_SHOTS: Final = 100_000
#: The largest program accepted, in UTF-8 bytes (SDK choice; IBM documents no limit).
MAX_PROGRAM_BYTES: Final = 1_000_000
#: ``shots`` (sent as ``options.default_shots``), ``options`` (the sampler's options, sent as is),
#: ``optimization_level`` (0-3, of the preset pass manager) and ``transpile`` (False: send as written).
CONFIG_KEYS: Final = ("shots", "options", "optimization_level", "transpile")

#: How far before a job's submission the job list is read from (clocks differ). A job outside the
#: window is read on its own.
LIST_WINDOW_SLACK: Final = timedelta(hours=1)
#: After an unanswered job creation, how long beyond the request timeout to wait for it to show in
#: the job list before sending it again (a request the client gave up on may still be processed).
RESEND_GRACE_S: Final = 1.0
#: IBM's documented job-creation limit: "5 jobs per minute per user".
DEFAULT_MAX_JOBS_PER_WINDOW: Final = 5
DEFAULT_RATE_WINDOW_S: Final = 60.0
#: Jobs per page of ``GET /jobs`` (SDK choice), and the most pages one status tick reads.
LIST_PAGE_LIMIT: Final = 100
LIST_MAX_PAGES: Final = 5

#: A token is refreshed when less than this share of its life remains (at most REFRESH_MARGIN_S).
REFRESH_SHARE: Final = 0.2
REFRESH_MARGIN_S: Final = 300.0
#: The token lifetime assumed when IAM gives none.
ASSUMED_TOKEN_TTL_S: Final = 1200.0


def default_url_for(instance: str) -> str:
    """IBM's API URL for the region of an instance CRN (its 6th ``:`` field); us-east is the default."""
    fields = instance.split(":")
    region = fields[5].strip().lower() if len(fields) > 5 else ""
    if not region or region == "us-east" or not region.replace("-", "").isalnum():
        return DEFAULT_URL
    return f"https://{region}.quantum.cloud.ibm.com/api/v1"


# --------------------------------------------------------------------------------------------------
# Wire models (permissive: unknown fields are ignored)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


_W = TypeVar("_W", bound=_Wire)


class _JobState(_Wire):
    status: str | None = None
    reason: str | None = None
    reason_code: int | str | None = None
    reasonCode: int | str | None = None  # qiskit-ibm-runtime accepts this spelling too


class _Job(_Wire):
    id: str
    status: str | None = None
    state: _JobState | None = None
    backend: str | None = None
    created: str | None = None


class _CreatedJob(_Wire):
    id: str
    backend: str | None = None


class _Register(_Wire):
    samples: list[str]
    num_bits: int


class _PubResult(_Wire):
    data: dict[str, _Register]


class _Results(_Wire):
    results: list[_PubResult]


def _parse(model: type[_W], body: Any, what: str) -> _W:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "the body"
        raise ProtocolError(
            f"IBM Quantum answered {what} in an unknown shape ({where}: {first['msg']})"
        ) from None


def decode_samples(body: Any) -> dict[str, dict[str, int]]:
    """Counts per classical register from a plain-JSON SamplerV2 result (its first PUB), or from a
    Qiskit-encoded one (a job qiskit-ibm-runtime made, followed by ``sdk.job``).

    Each shot is a hex string (``"0x3"``); it becomes a bitstring of the register's ``num_bits``
    (``"11"``). Counts are sorted by bitstring.
    """
    if isinstance(body, dict) and "__type__" in body:  # a job made by qiskit-ibm-runtime, found by id
        return _ibm_runs.decode_qiskit_samples(body)
    results = _parse(_Results, body, "the results")
    if not results.results:
        raise ProtocolError("IBM Quantum answered results without any PUB result")
    counts: dict[str, dict[str, int]] = {}
    for name, register in results.results[0].data.items():
        width = register.num_bits
        if width < 0:
            raise ProtocolError(f"IBM Quantum gave register {name!r} a negative num_bits")
        tally: Counter[str] = Counter()
        for sample, n in Counter(register.samples).items():
            try:
                value = int(sample, 16)
            except ValueError:
                raise ProtocolError(f"IBM Quantum sent a sample that is not hex: {sample[:20]!r}") from None
            if value < 0 or value >> width:
                raise ProtocolError(f"IBM Quantum sent sample {sample[:20]!r} wider than {width} bits")
            tally[format(value, "b").zfill(width) if width else ""] += n
        counts[name] = dict(sorted(tally.items()))
    return counts


# --------------------------------------------------------------------------------------------------
# IAM tokens


@dataclass(frozen=True, slots=True, eq=False)
class _Token:
    value: Secret
    refresh_at: float
    expires_at: float


#: The token the current task's request was sent with (set by ``auth()``, read on its 401).
_SENT_TOKEN: ContextVar[_Token | None] = ContextVar("oqc_style_sdk_ibm_sent_token", default=None)


class _IamTokens:
    """Bearer tokens for an API key: cached, refreshed before expiry and on a 401, single-flight."""

    def __init__(self, http: HttpClient, iam_url: str, api_key: Secret) -> None:
        self._http = http
        self._iam_url = iam_url
        self._api_key = api_key
        self._token: _Token | None = None
        self._lock: anyio.Lock | None = None

    def __repr__(self) -> str:
        return f"<IBM Cloud IAM tokens at {self._iam_url!r}>"

    def _get_lock(self) -> anyio.Lock:
        if self._lock is None:
            self._lock = anyio.Lock()
        return self._lock

    async def headers(self) -> Mapping[str, str | Secret]:
        """``Authorization: Bearer …`` with a token good for a while yet (HttpClient's ``auth``)."""
        token = await self._current()
        _SENT_TOKEN.set(token)
        return {"Authorization": Secret(f"Bearer {token.value.reveal()}")}

    async def on_unauthorized(self) -> None:
        """A request was refused (401): replace its token, unless another request already did."""
        sent = _SENT_TOKEN.get()
        async with self._get_lock():
            if self._token is None or self._token is sent:
                logger.debug("IBM Quantum refused the bearer token; getting a new one")
                self._token = await self._fetch()

    async def _current(self) -> _Token:
        token = self._token
        if token is not None and anyio.current_time() < token.refresh_at:
            return token
        async with self._get_lock():
            token = self._token
            now = anyio.current_time()
            if token is not None and now < token.refresh_at:
                return token  # refreshed by another request meanwhile
            try:
                self._token = await self._fetch()
            except BackendError as exc:
                if token is None or now >= token.expires_at or isinstance(exc, AuthenticationError):
                    raise
                logger.info(
                    "refreshing the IBM Cloud IAM token failed (%s); the current one is valid %.0f s more",
                    exc,
                    token.expires_at - now,
                )
                return token
            return self._token

    async def _fetch(self) -> _Token:
        form = urlencode({"grant_type": IAM_GRANT_TYPE, "apikey": self._api_key.reveal()}).encode()
        started = anyio.current_time()
        try:
            response = await self._http.post(
                self._iam_url,
                data=form,
                headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                idempotent=True,  # a token request changes nothing: safe to resend
            )
        except BackendError as exc:
            if exc.status in (400, 401, 403):
                raise self._refused(exc) from None
            raise
        body = response.json()
        access = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(access, str) or not access:
            raise ProtocolError("IBM Cloud IAM answered the token request without an access_token")
        ttl = _lifetime(body)
        margin = min(REFRESH_MARGIN_S, ttl * REFRESH_SHARE)
        logger.debug("IBM Cloud IAM token obtained, valid for %.1f s", ttl)
        return _Token(Secret(access), refresh_at=started + ttl - margin, expires_at=started + ttl)

    def _refused(self, exc: BackendError) -> AuthenticationError:
        details = exc.details if isinstance(exc.details, dict) else {}
        code = details.get("errorCode") or exc.vendor_code
        message = details.get("errorMessage") or details.get("message") or "the API key was refused"
        text = f"IBM Cloud IAM refused the API key ({exc.status}{f' {code}' if code else ''}: {message})"
        key = self._api_key.reveal()
        if key:
            text = text.replace(key, "***")
        return AuthenticationError(
            text[:400], status=exc.status, vendor_code=None if code is None else str(code)
        )


def _lifetime(body: dict[str, Any]) -> float:
    """Seconds the token lives: ``expires_in``, else ``expiration`` (epoch) minus now."""
    expires_in = body.get("expires_in")
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        return float(expires_in)
    expiration = body.get("expiration")
    if isinstance(expiration, int | float) and not isinstance(expiration, bool):
        left = float(expiration) - datetime.now(UTC).timestamp()
        if left > 0:
            return left
    return ASSUMED_TOKEN_TTL_S


# --------------------------------------------------------------------------------------------------
# The backend


def _creation_limit(limit: int | str | None, window_s: float | str) -> tuple[int | None, float]:
    """The job-creation limit from the arguments, else ``IBM_QUANTUM_MAX_JOBS_PER_WINDOW`` and
    ``IBM_QUANTUM_RATE_WINDOW_S``, else IBM's documented 5 per 60 s. ``none`` turns it off."""
    raw_limit: object = limit
    if limit == "env":
        raw_limit = os.environ.get("IBM_QUANTUM_MAX_JOBS_PER_WINDOW") or DEFAULT_MAX_JOBS_PER_WINDOW
    raw_window: object = window_s
    if window_s == "env":
        raw_window = os.environ.get("IBM_QUANTUM_RATE_WINDOW_S") or DEFAULT_RATE_WINDOW_S
    if raw_limit is None or (isinstance(raw_limit, str) and raw_limit.strip().lower() == "none"):
        parsed_limit = None
    else:
        try:
            parsed_limit = int(str(raw_limit).strip()) if not isinstance(raw_limit, bool) else 0
        except ValueError:
            parsed_limit = 0
        if parsed_limit < 1:
            raise ConfigurationError(
                f"max_jobs_per_window must be a whole number of jobs >= 1, or None for no limit "
                f"(IBM_QUANTUM_MAX_JOBS_PER_WINDOW=none), not {raw_limit!r}"
            )
    try:
        parsed_window = float(str(raw_window).strip()) if not isinstance(raw_window, bool) else 0.0
    except ValueError:
        parsed_window = 0.0
    if not (parsed_window > 0 and math.isfinite(parsed_window)):
        raise ConfigurationError(f"rate_window_s must be a number of seconds > 0, not {raw_window!r}")
    return parsed_limit, parsed_window


def _setting(value: str | None, *names: str) -> str | None:
    if value:
        return value
    for name in names:
        found = os.environ.get(name)
        if found:
            return found
    return None


def _submitted_at(ref: RunRef) -> datetime | None:
    raw = ref.extra.get("submitted_at")
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _job_path(task_id: str) -> str:
    return f"/jobs/{quote(task_id, safe='')}"


class IbmQuantumBackend(HttpBackend):
    """The ``ibm_quantum`` backend (see the module docstring for settings and behaviour)."""

    name = "ibm_quantum"

    async def start(self, task_group: TaskGroup) -> None:
        await super().start(task_group)
        # The process's first transpilation imports the transpiler's plugins (1-3 s): made now,
        # in the background, so the first job does not pay for it inside its deadline.
        task_group.start_soon(self._warm_transpiler)

    @staticmethod
    async def _warm_transpiler() -> None:
        await in_qiskit_thread(warm_transpiler)

    batch_status = True
    idempotent_submit = False
    #: qiskit-ibm-runtime polls every 0.5 s; idle jobs back off to 10 s.
    min_poll_interval_s = 0.5
    max_poll_interval_s = 10.0
    status_concurrency = 8
    #: IBM documents no read limit (only 5 job creations per minute per user): stay gentle.
    status_reads_per_s = 10.0

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        instance: str | None = None,
        url: str | None = None,
        iam_url: str | None = None,
        api_version: str | None = None,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        allow_insecure_http: bool = False,
        max_jobs_per_window: int | str | None = "env",
        rate_window_s: float | str = "env",
    ) -> None:
        key: str | Secret | None = api_key
        if not key:
            key = _setting(None, "IBM_QUANTUM_API_KEY", "QISKIT_IBM_TOKEN")
        if not key:
            raise ConfigurationError(
                "IBM Quantum needs an API key: pass api_key=... or set IBM_QUANTUM_API_KEY "
                "(QISKIT_IBM_TOKEN is read too)"
            )
        crn = _setting(instance, "IBM_QUANTUM_INSTANCE", "QISKIT_IBM_INSTANCE")
        if not crn:
            raise ConfigurationError(
                "IBM Quantum needs the service instance CRN: pass instance=... or set "
                "IBM_QUANTUM_INSTANCE (QISKIT_IBM_INSTANCE is read too)"
            )
        self._api_key = key if isinstance(key, Secret) else Secret(key)
        self.instance: str = crn.strip()
        base_url = _setting(url, "IBM_QUANTUM_URL") or default_url_for(self.instance)
        iam = _setting(iam_url, "IBM_QUANTUM_IAM_URL") or DEFAULT_IAM_URL
        self.api_version: str = _setting(api_version, "IBM_QUANTUM_API_VERSION") or DEFAULT_API_VERSION
        self._iam_http = HttpClient(
            iam,
            vendor="IBM Cloud IAM",
            secrets=(self._api_key,),  # in the form body: it goes to the IAM origin only, never logged
            timeout_s=timeout_s,
            retry=retry,
            allow_insecure_http=allow_insecure_http,
            user_agent="oqc-style-sdk",
        )
        self._tokens = _IamTokens(self._iam_http, self._iam_http.base_url, self._api_key)
        self._http = HttpClient(
            base_url,
            vendor="IBM Quantum",
            headers={
                "Service-CRN": self.instance,
                "IBM-API-Version": self.api_version,
                "Accept": "application/json",
            },
            auth=self._tokens.headers,
            on_unauthorized=self._tokens.on_unauthorized,
            secrets=(self._api_key,),  # scrubbed from every answer, should one echo it
            timeout_s=timeout_s,
            retry=retry,
            allow_insecure_http=allow_insecure_http,
            user_agent="oqc-style-sdk",
        )
        self.url: str = self._http.base_url
        self.iam_url: str = self._iam_http.base_url
        self._devices: dict[str, dict[str, Any]] = {}
        #: Each device's qiskit Target (read on first use; the Sdk's backend is its cache).
        self._targets: dict[str, Any] = {}
        self._target_locks: dict[str, anyio.Lock] = {}
        self._job_list_usable = True
        self._undocumented: set[str] = set()
        #: Creations whose answer was lost (they may have made a job), looked up before a resend.
        self._lost = LostCreations(float(timeout_s) + RESEND_GRACE_S)
        limit, window_s = _creation_limit(max_jobs_per_window, rate_window_s)
        #: The job-creation limit kept on this side (None: only IBM's 429s limit creations).
        self.creations: CreationWindow | None = None
        if limit is not None:
            self.creations = creation_window(
                f"{self.url}|{self.instance}", self._api_key.reveal(), limit, window_s
            )

    def __repr__(self) -> str:
        return f"<IbmQuantumBackend url={self.url!r} instance={self.instance!r}>"

    # ------------------------------------------------------------------ lifetime
    def _clients(self) -> tuple[HttpClient, ...]:
        return (self._iam_http, self._http)

    async def _check(self) -> None:
        await self._http.check_reachable("/backends")
        await self._refresh_devices()  # gets a token too: key, instance and URL checked at once

    def identity(self) -> dict[str, str]:
        return {"backend": self.name, "endpoint": self.url, "instance": self.instance}

    # ------------------------------------------------------------------ targets
    async def _refresh_devices(self) -> list[dict[str, Any]]:
        body = (await self._http.get("/backends")).json()
        devices = body.get("devices") if isinstance(body, dict) else None
        if not isinstance(devices, list):
            raise ProtocolError("IBM Quantum answered the backend list without a 'devices' list")
        targets: list[dict[str, Any]] = []
        for device in devices:
            if not isinstance(device, dict) or not isinstance(device.get("name"), str):
                continue
            status = device.get("status")
            status_name = status.get("name") if isinstance(status, dict) else status
            reason = status.get("reason") if isinstance(status, dict) else None
            targets.append(
                {
                    **device,
                    "id": device["name"],
                    "name": device["name"],
                    "status": status_name,
                    "status_reason": reason,
                }
            )
        self._devices = {target["id"]: target for target in targets}
        return targets

    async def list_targets(self) -> list[dict[str, Any]]:
        return [dict(target) for target in await self._refresh_devices()]

    # ------------------------------------------------------------------ jobs
    def validate(self, spec: RunSpec) -> RunSpec:
        program = spec.program
        if is_circuit(program):
            self._check_circuit(program, spec.target)
        elif not isinstance(program, str):
            raise JobValidationError(
                "an IBM Quantum program is OpenQASM text or a qiskit QuantumCircuit, "
                f"not {type(program).__name__}"
            )
        elif not program.strip():
            raise JobValidationError("the program is empty")
        else:
            if (
                len(program) * 4 > MAX_PROGRAM_BYTES
                and len(program.encode("utf-8", "replace")) > MAX_PROGRAM_BYTES
            ):
                raise JobValidationError(f"the program is over the {MAX_PROGRAM_BYTES:,}-byte limit")
            version = qasm_major_version(program)
            if version not in (None, 2, 3):
                raise JobValidationError(
                    f"IBM Quantum runs OpenQASM 2 or 3; this program is OPENQASM {version}"
                )
        if spec.target is None:
            raise JobValidationError(
                "no IBM backend for this job: pass target=... to create_job, or default_target=... to Sdk"
            )
        if not isinstance(spec.target, str):
            raise JobValidationError(f"target must be a str, not {type(spec.target).__name__}")
        if self._devices and spec.target not in self._devices:
            raise UnknownTargetError(spec.target, sorted(self._devices))
        unknown = set(spec.config) - set(CONFIG_KEYS)
        if unknown:
            raise JobValidationError(
                f"unknown config key(s) {sorted(unknown)} for IBM Quantum; allowed: {list(CONFIG_KEYS)}"
            )
        config: dict[str, Any] = {}
        if "shots" in spec.config:
            shots = spec.config["shots"]
            if isinstance(shots, bool) or not isinstance(shots, int) or not 1 <= shots <= MAX_SHOTS:
                raise JobValidationError(f"shots must be a whole number from 1 to {MAX_SHOTS:,}")
            config["shots"] = shots
        options = spec.config.get("options")
        if options is not None:
            if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
                raise JobValidationError("options are the sampler's options: a mapping with str keys")
            if "shots" in config and "default_shots" in options:
                raise JobValidationError("give shots or options['default_shots'], not both")
            config["options"] = dict(options)
        config.update(_transpilation(spec.config))
        return RunSpec(program=program, target=spec.target, config=config, tag=spec.tag)

    def _check_circuit(self, circuit: Any, target: object) -> None:
        """What is known of a circuit without parsing or I/O: as many qubits as the device has
        (when the backend list has been read). Its parameters are bound (oqc_style_sdk.programs)."""
        qubits = self._devices.get(target, {}).get("qubits") if isinstance(target, str) else None
        if isinstance(qubits, int) and circuit.num_qubits > qubits:
            raise JobValidationError(f"the circuit has {circuit.num_qubits} qubits; {target} has {qubits}")

    async def _device_target(self, name: str) -> Any:
        """The qiskit ``Target`` of a device, read once per backend (its configuration and
        properties) and cached; concurrent first uses make one read."""
        target = self._targets.get(name)
        if target is not None:
            return target
        lock = self._target_locks.setdefault(name, anyio.Lock())
        async with lock:
            if name not in self._targets:
                path = f"/backends/{quote(name, safe='')}"
                configuration = (await self._http.get(f"{path}/configuration")).json()
                properties = (await self._http.get(f"{path}/properties")).json()
                if not isinstance(configuration, dict) or not isinstance(properties, dict | None):
                    raise ProtocolError(
                        f"IBM Quantum answered the configuration of {name} in an unknown shape"
                    )
                self._targets[name] = await in_qiskit_thread(target_from_ibm, configuration, properties)
        return self._targets[name]

    async def _isa_program(self, spec: RunSpec) -> tuple[str, dict[str, Any]]:
        """The program as IBM runs it — an ISA circuit for the device, as OpenQASM 3 — and its
        metrics. Parsing and transpiling run in a worker thread."""
        device = str(spec.target)
        target = await self._device_target(device)
        level = spec.config.get("optimization_level", DEFAULT_OPTIMIZATION_LEVEL)
        if spec.config.get("transpile") is False:
            level = None

        def lower() -> tuple[str, dict[str, Any]]:
            try:
                circuit = as_circuit(spec.program)
            except Exception as exc:  # the program's fault: refused before anything is sent
                raise JobValidationError(f"the program does not parse: {error_message(exc)[:300]}") from None
            transpiled = transpile_for(circuit, target, device, level)
            try:
                text = as_qasm3(transpiled.circuit)
            except Exception as exc:
                raise JobValidationError(
                    f"the circuit cannot be written as OpenQASM 3: {error_message(exc)[:300]}"
                ) from None
            return text, transpiled.metrics

        return await in_qiskit_thread(lower)

    def job_body(self, spec: RunSpec, program: str, idempotency_key: str | None = None) -> dict[str, Any]:
        """The ``POST /jobs`` body of a (validated) spec whose program is already OpenQASM 3.

        ``tags`` holds the job's tag, if any, and ``oqcs-submission:<idempotency_key>``, by which a
        submission whose answer was lost is found again.
        """
        params: dict[str, Any] = {"pubs": [[program]], "version": 2, "support_qiskit": False}
        options = dict(spec.config.get("options") or {})
        if "shots" in spec.config:
            options["default_shots"] = spec.config["shots"]
        if options:
            params["options"] = options
        body: dict[str, Any] = {"program_id": "sampler", "backend": spec.target, "params": params}
        tags = [spec.tag] if spec.tag else []
        if idempotency_key:
            tags.append(SUBMISSION_TAG_PREFIX + idempotency_key)
        if tags:
            body["tags"] = tags
        return body

    def recall_submission(self, idempotency_key: str, sent_at: datetime | None) -> None:
        """A creation with this key may have made a job (a loaded file says it was sent): its tag
        is looked up before the key creates anything."""
        self._lost.recall(idempotency_key, sent_at)

    async def submit(self, spec: RunSpec, idempotency_key: str) -> RunRef:
        """Create the job — once: a job whose creation may have happened (its answer was lost) is
        looked up by its submission tag before anything is sent again."""
        program, metrics = await self._isa_program(spec)
        found = await self._lost.find(self, idempotency_key)
        if found is not None:
            made = _submitted_at(found) or datetime.now(UTC)
            return self._ref(found.task_id, found.extra.get("backend", ""), made, metrics)
        body = self.job_body(spec, program, idempotency_key)
        async with self._creation_turn():
            submitted_at = self._lost.sending(idempotency_key)
            try:
                response = await self._http.post("/jobs", json=body)
            except BackendError as exc:
                if exc.status is not None:  # answered: no longer in flight; refused: nothing made
                    self._lost.answered(idempotency_key, settled=exc.status < 500 and exc.status != 408)
                raise
        # Answered: the job exists, but until its id is read the key stays on record, so that a
        # body that cannot be parsed is followed by a lookup, never by a second creation.
        self._lost.answered(idempotency_key, settled=False)
        created = _parse(_CreatedJob, response.json(), "the job creation")
        self._lost.answered(idempotency_key, settled=True)
        logger.debug("IBM Quantum job %s created on %s", created.id, created.backend or spec.target)
        return self._ref(created.id, created.backend or str(spec.target), submitted_at, metrics)

    @asynccontextmanager
    async def _creation_turn(self) -> AsyncIterator[None]:
        """IBM's per-user creation limit: wait for a turn here rather than be answered 429."""
        if self.creations is None:
            yield
            return
        async with self.creations.turn() as waited:
            if waited:
                logger.info("IBM Quantum: waited %.1f s for a job creation turn (%s)", waited, self.creations)
            yield

    @staticmethod
    def _ref(
        job_id: str, backend: str, submitted_at: datetime, metrics: Mapping[str, Any] | None = None
    ) -> RunRef:
        extra = {"backend": backend, "submitted_at": submitted_at.isoformat(timespec="seconds")}
        if metrics is not None:  # saved with the job: diagnostics of a loaded job have them too
            extra["transpilation"] = json.dumps(metrics, separators=(",", ":"))
        return RunRef(task_id=job_id, extra=extra)

    def observation(self, body: Any) -> Observation:
        """A job object (``GET /jobs/{id}``) read through :data:`IBM_STATUS`."""
        job = _parse(_Job, body, "a job")
        state = job.state or _JobState()
        reason = state.reason
        raw_code = state.reason_code if state.reason_code is not None else state.reasonCode
        code = None if raw_code is None else str(raw_code)
        outer = _STATUS_BY_FOLDED.get(job.status.casefold()) if job.status else None
        inner = _STATUS_BY_FOLDED.get(state.status.casefold()) if state.status else None
        if outer == RAN_TOO_LONG or (inner == "Cancelled" and code == str(RAN_TOO_LONG_REASON_CODE)):
            return Observation(
                JobState.FAILED,
                job.status if outer == RAN_TOO_LONG and job.status else RAN_TOO_LONG,
                message=reason or "the job ran longer than its maximum execution time and was stopped",
                code=code or str(RAN_TOO_LONG_REASON_CODE),
            )
        vendor = state.status or job.status
        known = inner or outer
        if known is None or vendor is None:
            shown = vendor if vendor is not None else "<none>"
            if shown not in self._undocumented:
                self._undocumented.add(shown)
                logger.warning("IBM Quantum job %s has an undocumented status %r; kept active", job.id, shown)
            return Observation(JobState.SUBMITTED, shown)
        mapped = IBM_STATUS[known]
        if mapped is JobState.FAILED:
            return Observation(mapped, vendor, message=reason or "the job failed", code=code)
        if mapped is JobState.CANCELLED:
            return Observation(mapped, vendor, message=reason, code=code)
        return Observation(mapped, vendor)

    async def status(self, ref: RunRef) -> Observation:
        response = await self._http.get(_job_path(ref.task_id), params={"exclude_params": "true"})
        return self.observation(response.json())

    async def statuses(self, refs: Sequence[RunRef]) -> dict[str, Observation | BaseException]:
        """Several waiting jobs with one ``GET /jobs?pending=true``; ended (unlisted) ones one by one."""
        listable = [ref for ref in refs if _submitted_at(ref) is not None]
        if len(listable) < 2 or not self._job_list_usable:
            return await super().statuses(refs)
        out: dict[str, Observation | BaseException] = {}
        alone = [ref for ref in refs if _submitted_at(ref) is None]
        try:
            listed = await self._pending_jobs(listable)
        except BackendError as exc:
            if exc.transient or isinstance(exc, AuthenticationError):
                out.update({ref.task_id: exc for ref in listable})
            elif isinstance(exc, ProtocolError):  # a garbled answer: this time, one by one
                alone.extend(listable)
            else:  # refused: this server lists no jobs this way
                logger.info("IBM Quantum: the job list is not usable (%s); reading jobs one by one", exc)
                self._job_list_usable = False
                alone.extend(listable)
            listed = {}
        for ref in listable:
            if ref.task_id in out:
                continue
            item = listed.get(ref.task_id)
            if item is None:  # not pending any more (or outside the window): read it on its own
                alone.append(ref)
                continue
            try:
                out[ref.task_id] = self.observation(item)
            except Exception as exc:  # handed to the job that asked, typed
                out[ref.task_id] = exc
        if alone:
            out.update(await super().statuses(alone))
        return out

    async def _pending_jobs(self, refs: Sequence[RunRef]) -> dict[str, Any]:
        """The pending jobs among ``refs``, by id, from the job list since the earliest submission."""
        wanted = {ref.task_id for ref in refs}
        since = min(t for t in map(_submitted_at, refs) if t is not None) - LIST_WINDOW_SLACK
        params: dict[str, str | int] = {
            "pending": "true",
            "exclude_params": "true",
            "created_after": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "limit": LIST_PAGE_LIMIT,
            "offset": 0,
        }
        found: dict[str, Any] = {}
        for _page in range(LIST_MAX_PAGES):
            body = (await self._http.get("/jobs", params=params)).json()
            jobs = body.get("jobs") if isinstance(body, dict) else None
            if not isinstance(jobs, list):
                raise ProtocolError("IBM Quantum answered the job list without a 'jobs' list")
            for item in jobs:
                if isinstance(item, dict) and item.get("id") in wanted:
                    found[item["id"]] = item
            offset = int(params["offset"]) + len(jobs)
            count = body.get("count")
            if (
                len(found) == len(wanted)
                or len(jobs) < LIST_PAGE_LIMIT
                or (isinstance(count, int) and offset >= count)
            ):
                break
            params["offset"] = offset
        return found

    # ------------------------------------------------------------------ finding jobs (_ibm_runs.py)
    has_job_list = True

    def check_task_id(self, task_id: str) -> None:
        _ibm_runs.check_job_id(task_id)

    async def find_run(self, task_id: str) -> FoundRun:
        body = (await self._http.get(_job_path(task_id))).json()
        return _ibm_runs.found_run(self, body, SUBMISSION_TAG_PREFIX)

    def list_runs(self, query: RunQuery) -> AsyncIterator[FoundRun]:
        return _ibm_runs.list_runs(self, query, LIST_PAGE_LIMIT, SUBMISSION_TAG_PREFIX)

    def target_unavailable(self, target: str) -> tuple[str, datetime | None] | None:
        """A device IBM lists as ``offline`` (a ``paused`` one keeps and later runs its queue)."""
        status = self._devices.get(target, {}).get("status")
        return (str(status), None) if isinstance(status, str) and status.lower() == "offline" else None

    async def cancel(self, ref: RunRef, reason: str | None = None) -> None:
        """``POST /jobs/{id}/cancel``; a 409 (the job has already ended) is left to the next read."""
        try:
            await self._http.post(f"{_job_path(ref.task_id)}/cancel", idempotent=True)
        except BackendError as exc:
            if exc.status != 409:
                raise
            logger.debug("IBM Quantum job %s could not be cancelled (409): it has ended", ref.task_id)

    async def result(self, ref: RunRef, spec: RunSpec) -> dict[str, dict[str, int]]:
        response = await self._http.get(f"{_job_path(ref.task_id)}/results")
        return decode_samples(response.json())

    async def diagnostics(self, ref: RunRef, spec: RunSpec) -> Diagnostics:
        """Timings and usage from ``/jobs/{id}/metrics``; the job object (without params) as metadata."""
        path = _job_path(ref.task_id)
        timings = metrics = metadata = None
        try:
            body = (await self._http.get(f"{path}/metrics")).json()
            if isinstance(body, dict):
                stamps = body.get("timestamps")
                timings = dict(stamps) if isinstance(stamps, dict) else None
                metrics = {key: value for key, value in body.items() if key != "timestamps"}
        except Exception as exc:  # each part is independent; a missing one stays None
            logger.debug("IBM Quantum metrics of %s unavailable: %s", ref.task_id, exc)
        try:
            body = (await self._http.get(path, params={"exclude_params": "true"})).json()
            metadata = dict(body) if isinstance(body, dict) else None
        except Exception as exc:
            logger.debug("IBM Quantum job %s unavailable for metadata: %s", ref.task_id, exc)
        transpilation = ref.extra.get("transpilation")
        if transpilation:
            metrics = {**(metrics or {}), "transpilation": json.loads(transpilation)}
        return Diagnostics(timings=timings, metrics=metrics, metadata=metadata)


def _transpilation(config: Mapping[str, Any]) -> dict[str, Any]:
    """``optimization_level`` (0-3) and ``transpile`` (bool) of a config, checked."""
    out: dict[str, Any] = {}
    if "transpile" in config:
        if not isinstance(config["transpile"], bool):
            raise JobValidationError(
                "transpile must be True (transpile for the device) or False (send ISA as is)"
            )
        out["transpile"] = config["transpile"]
    if "optimization_level" in config:
        level = config["optimization_level"]
        if isinstance(level, bool) or level not in (0, 1, 2, 3):
            raise JobValidationError(f"optimization_level must be 0, 1, 2 or 3, not {level!r}")
        if out.get("transpile") is False:
            raise JobValidationError(
                "optimization_level needs transpile=True; an ISA circuit is sent as written"
            )
        out["optimization_level"] = level
    return out
