"""An emulator of IBM Quantum's Qiskit Runtime REST API (sampler jobs) and of IBM Cloud IAM.

See :class:`IbmQuantumEmulator` for every endpoint and every choice made where IBM's behaviour is not
documented (``VENDORS.md`` §1 and §7 list what is known; the rest is marked "emulator choice").
"""

from __future__ import annotations

import math
import random
import re
import secrets
import string
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Final

import anyio.to_thread
from aiohttp import web
from anyio.abc import TaskGroup

from ..backends._qiskit import qiskit_imported
from ..backends.base import Observation, RunRef, RunSpec
from ..backends.local import PARSE_ERROR, SIMULATOR_TARGET, LocalBackend
from ..exceptions import ConfigurationError, JobValidationError
from ..state import JobState
from .emulator import REDACTED, ApiError, Emulator, duration_option
from .handlers import found, query_int, read_json, same_secret, utc_moment
from .ibm_devices import VALIDATION_ERROR_CODE, IbmDevice, PubRefused, device_program
from .ibm_encoding import EncodingError, decode_array, qiskit_result
from .ibm_platform import IAM_GRANT_TYPE, IAM_PATH, IbmCloudPlatform
from .ibm_sessions import SessionRegistry

__all__ = [
    "ACTIVE_STATUSES",
    "API_PREFIX",
    "DEFAULT_DEVICES",
    "DEFAULT_SHOTS",
    "IAM_GRANT_TYPE",
    "IAM_PATH",
    "JOB_STATUSES",
    "MAX_SHOTS",
    "STATE_STATUSES",
    "TERMINAL_STATUSES",
    "IbmDevice",
    "IbmQuantumEmulator",
]

#: Where the API lives on the emulator (``IBM_QUANTUM_URL`` is ``{base_url}/api/v1``).
API_PREFIX: Final = "/api/v1"

#: ``state.status`` values (qrmi ``JobState``).
STATE_STATUSES: Final = ("Queued", "Running", "Completed", "Cancelled", "Failed")
#: Top-level ``status`` values (qrmi ``JobResponse``): the same and ``Cancelled - Ran too long``.
JOB_STATUSES: Final = (*STATE_STATUSES, "Cancelled - Ran too long")
ACTIVE_STATUSES: Final = frozenset({"Queued", "Running"})
TERMINAL_STATUSES: Final = frozenset(JOB_STATUSES) - ACTIVE_STATUSES
RAN_TOO_LONG: Final = "Cancelled - Ran too long"
RAN_TOO_LONG_REASON_CODE: Final = 1305

#: Shots when a job names none (``options.default_shots`` default of IBM's current model).
DEFAULT_SHOTS: Final = 4096
#: The most shots a job may take (IBM devices' ``max_shots``).
MAX_SHOTS: Final = 100_000
#: Largest page of ``GET /jobs`` (emulator choice).
MAX_LIST_LIMIT: Final = 1000
#: ``state.reason_code`` of a job whose circuit was refused, whose run broke, or that was failed by
#: :meth:`IbmQuantumEmulator.set_status` (IBM's error registry: 1002 "Error in the validation
#: process of the job", 1010 "Error returned at backend level").
BACKEND_ERROR_CODE: Final = 1010

_MORE_INFO: Final = "https://quantum.cloud.ibm.com/docs/errors"
_ERROR_CODES: Final[Mapping[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    429: "too_many_requests",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}
_JOB_ID_ALPHABET: Final = string.ascii_lowercase + string.digits
_FORM_API_KEY: Final = re.compile(r"(\bapikey=)[^&\s]+")


#: The devices an emulator lists unless given others (heavy-hex lattices of Heron's size).
DEFAULT_DEVICES: Final = (
    IbmDevice("ibm_fez", 156, processor_type={"family": "Heron", "revision": "2"}),
    IbmDevice("ibm_torino", 133, processor_type={"family": "Heron", "revision": "1"}, row_width=15),
    IbmDevice("ibm_kingston", 156, processor_type={"family": "Heron", "revision": "2"}),
)


@dataclass(slots=True, eq=False)
class _Pub:
    #: As sent: OpenQASM 3 text or a Qiskit-encoded (QPY) circuit.
    circuit: str | dict[str, Any]
    shots: int
    #: The OpenQASM 3 the engine runs: the circuit's active qubits only (set once it is accepted).
    program: str | None = None
    spec: RunSpec | None = None
    ref: RunRef | None = None


@dataclass(slots=True, eq=False)
class _Job:
    id: str
    seq: int
    backend: str
    params: dict[str, Any]
    tags: list[str]
    cost: int
    session_id: str | None
    created: datetime
    pubs: list[_Pub]
    #: Results in the Qiskit-encoded form (``support_qiskit: true``), else plain JSON.
    support_qiskit: bool = False
    #: A status decided by the emulator itself (knob, cancel, refused circuit).
    forced: str | None = None
    reason: str | None = None
    reason_code: int | None = None
    results: dict[str, Any] | None = None
    #: The emulator clock when a cancel was accepted, while it has not taken effect yet.
    cancel_requested: float | None = None


def _iso(moment: datetime | str | None) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_moment(name: str, value: str) -> datetime:
    try:
        return utc_moment(value.strip())
    except ValueError:
        raise ApiError(400, f"{name} is not an ISO 8601 date-time: {value!r}") from None


def _flag(name: str, value: str | None) -> bool | None:
    if value is None:
        return None
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ApiError(400, f"{name} must be true or false, got {value!r}")


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    value = query_int(
        request, name, default, lambda raw: ApiError(400, f"{name} must be an integer, got {raw!r}")
    )
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be from {low} to {high}, got {value}")
    return value


def _format_retry_after(seconds: float) -> str:
    """Whole seconds (RFC 9110) from 1 s up; milliseconds below (for fast tests)."""
    if seconds >= 1:
        return str(math.ceil(seconds))
    return f"{max(math.ceil(seconds * 1000), 1) / 1000:g}"


class IbmQuantumEmulator(Emulator):
    """IBM Quantum (Qiskit Runtime REST, sampler) and IBM Cloud (IAM, Global Search, Global Catalog)
    on 127.0.0.1, as strict as IBM about circuits and good enough for qiskit-ibm-runtime itself.

    Jobs run on a :class:`~oqc_style_sdk.backends.local.LocalBackend` (each PUB lasting at least
    ``job_duration_s``), so results are real simulations, returned in the plain-JSON SamplerV2 format
    or Qiskit-encoded (``support_qiskit: true``, :mod:`~oqc_style_sdk.testing.ibm_encoding`). Devices
    (:mod:`~oqc_style_sdk.testing.ibm_devices`) are heavy-hex lattices with IBM's native gates and run
    only ISA circuits. Sessions and batches: :mod:`~oqc_style_sdk.testing.ibm_sessions`. IAM's JWTs and
    the account look-ups qiskit-ibm-runtime makes: :mod:`~oqc_style_sdk.testing.ibm_platform`
    (:attr:`cloud_env` points the official client at them). Every fault knob of
    :class:`~oqc_style_sdk.testing.emulator.Emulator` works on every endpoint.

    :param api_key: the API key IAM accepts (default: random).
    :param instance: the service CRN the API accepts (default: a us-east CRN with a random id).
    :param token_ttl_s: how long an issued bearer token is valid (default 3600 s, as IAM's).
    :param max_jobs_per_window: job creations allowed per ``rate_window_s`` (a sliding window);
        one more is answered 429 with ``Retry-After``. None (default): no limit. IBM's is 5 per 60 s.
    :param rate_window_s: the window of ``max_jobs_per_window`` (default 60 s).
    :param devices: the backend list (default :data:`DEFAULT_DEVICES`: ``ibm_fez``, ``ibm_torino``,
        ``ibm_kingston``).
    :param cancel_delay_s: how long a cancelled job goes on reporting its status before it reads
        ``Cancelled`` (default 0: at once). A job that finishes meanwhile keeps its final status.
    :param max_concurrency: how many PUBs simulate at once; others stay ``Queued`` (default: CPUs).
    :param seed: the simulator's seed (default: unseeded).
    Other keyword options (``job_duration_s``, ``latency_s``, ``max_lifetime_s``, ``clock``,
    ``port`` ...) are the kit's.

    IAM (``POST /identity/token``, no credentials)
        Form body ``grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=<key>`` → 200
        ``{"access_token", "refresh_token": "not_supported", "token_type": "Bearer", "expires_in",
        "expiration", "scope"}``; the access token is a signed JWT whose ``exp`` is its expiry (the
        official client decodes it). ``expires_in`` is ``token_ttl_s`` (a float when it is not whole:
        emulator choice, for fast tests). Wrong key → 400 ``{"errorCode": "BXNIM0415E",
        "errorMessage": "Provided API key could not be found.", "context": {...}}``; missing key or
        another grant type → 400 ``BXNIM0109E`` (IAM's error shape, not the API's).

    Authentication of ``/api/v1/*``
        ``Authorization: Bearer <token>`` issued by the IAM endpoint and not expired, else 401;
        ``Service-CRN`` missing → 400, another CRN → 403; an ``IBM-API-Version`` that is not a
        ``YYYY-MM-DD`` date → 400 (it may be omitted). The statuses for CRN problems are emulator
        choices. Every error body is ``{"errors": [{"code", "message", "more_info"}], "trace"}``
        (the generated client's model), ``code`` being a name for the status (``not_found``,
        ``conflict`` ...: emulator choice).

    Endpoints (under ``/api/v1``)
        ``GET /backends`` → ``{"devices": [{"name", "status": {"name", "reason"}, "is_simulator",
        "qubits", "queue_length", "processor_type"}]}``.
        ``GET /backends/{name}/configuration``, ``/properties`` and ``/status``: the device's gates,
        coupling map and calibration, and whether it takes jobs (404 for an unknown device).
        ``GET /instances/usage`` → the instance's consumed seconds (no limit).
        ``POST /sessions``, ``GET``/``PATCH /sessions/{id}``, ``DELETE /sessions/{id}/close``.
        ``POST /jobs`` ``{"program_id": "sampler", "backend", "params": {"pubs", "version"?,
        "support_qiskit"?, "options"?, "shots"?}, "tags"?, "cost"?, "session_id"?, ...}`` → 200
        ``{"id", "backend"}`` (plus ``session_id`` when given). Refused with 400 (nothing created):
        a body that is not an object, an unknown ``backend`` ("Backend not found"), ``params``
        missing or not an object, ``remote_storage``, ``version`` other than 2, ``support_qiskit``
        not a boolean (omitted means plain JSON here, as in IBM's REST guide), ``pubs`` not a
        non-empty list of 1-3 item lists, a circuit that is neither OpenQASM 3 text nor a
        Qiskit-encoded (QPY) ``QuantumCircuit``, parameter values other than null/{}/an empty array
        (parameters are not emulated), shots not an int from 1 to :data:`MAX_SHOTS`, a
        ``session_id`` that is unknown (404), closed or on another device (400). Another
        ``program_id`` → 404 "Program not found". Shots: the PUB's, else ``params.shots``, else
        ``options.default_shots``, else 4096. Over the rate limit → 429 with ``Retry-After``
        (nothing created). A circuit that is not OpenQASM 3 (an ``OPENQASM 2.0`` header), does not
        load or has unbound parameters makes the job ``Failed`` (reason code 1002); one that is not
        ISA for the device (a gate that is not native, a two-qubit gate on uncoupled qubits, a qubit
        beyond the device) makes it ``Failed`` with IBM's 1517 "Circuits do not match the target
        definition (non-ISA circuits)"; a simulation error → ``Failed`` (1010). Circuit qubit ``i``
        is physical qubit ``i``; only the qubits a circuit uses are simulated.
        ``GET /jobs/{id}`` (``?exclude_params=true``) → ``{"id", "backend", "state": {"status",
        "reason"?, "reason_code"?}, "status", "program": {"id": "sampler"}, "created", "runtime",
        "cost", "tags", "session_id", "user_id", "usage": {"seconds"}, "params"?}``.
        ``GET /jobs`` (``limit`` 1-1000, default 200; ``offset``; ``pending`` true → Queued and
        Running, false → ended; ``backend``; ``program``; ``created_after``/``created_before``
        ISO 8601; ``tags``; ``session_id``; ``sort`` ASC or DESC by creation, default DESC;
        ``exclude_params``) → ``{"jobs": [...], "count", "offset", "limit"}``.
        ``POST /jobs/{id}/cancel`` → 204 (empty) for a Queued or Running job, which is then
        ``Cancelled`` (after ``cancel_delay_s``); 409 for an ended one; 404 for an unknown id.
        ``GET /jobs/{id}/results`` → the plain-JSON SamplerV2 result ``{"results": [{"data":
        {"<creg>": {"samples": ["0x3", ...], "num_bits": n}}, "metadata": {...}}], "metadata":
        {...}}`` (one hex sample per shot, in a shuffled order); 409 unless the job completed on the
        engine (emulator choice; a ``Completed`` forced by :meth:`set_status` before the run
        finished has no results either).
        ``GET /jobs/{id}/metrics`` → ``{"timestamps": {"created", "running", "finished"},
        "usage": {"seconds", "quantum_seconds"}, "bss": {"seconds"}, "qiskit_version"}``.
        ``DELETE /jobs/{id}`` → 204 for an ended job; 409 while it is active.

    Statuses
        ``Queued`` (waiting for a simulator slot) → ``Running`` → ``Completed`` | ``Failed`` |
        ``Cancelled``. ``Cancelled - Ran too long`` only through :meth:`set_status` (then
        ``state`` is ``{"status": "Cancelled", "reason_code": 1305, "reason": ...}``).

    Knobs (besides the kit's)
        ``await set_status(job_id, status, reason=None, reason_code=None)`` reports ``status`` from
        now on (None: back to the engine's); a terminal status cancels the job's engine runs.
        ``expire_tokens()`` makes every issued token invalid (the next request with one gets 401).
        ``await status_of(job_id)`` reads a job's top-level status; ``job_ids`` lists them;
        ``tokens_issued`` counts IAM tokens; ``engine_runs`` counts PUBs handed to the engine;
        ``api_key`` and ``instance`` are the credentials it accepts.
    """

    vendor = "ibm_quantum"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        instance: str | None = None,
        token_ttl_s: float = 3600.0,
        max_jobs_per_window: int | None = None,
        rate_window_s: float = 60.0,
        devices: Sequence[IbmDevice] | None = None,
        cancel_delay_s: float = 0.0,
        max_concurrency: int | None = None,
        seed: int | None = None,
        **options: Any,
    ) -> None:
        self.api_key = api_key if api_key is not None else secrets.token_urlsafe(32)
        if not isinstance(self.api_key, str) or not self.api_key:
            raise ConfigurationError("api_key must be a non-empty str")
        self.instance = (
            instance
            if instance is not None
            else f"crn:v1:bluemix:public:quantum-computing:us-east:a/{uuid.uuid4().hex}:{uuid.uuid4()}::"
        )
        self.token_ttl_s = duration_option("token_ttl_s", token_ttl_s, positive=True)
        if max_jobs_per_window is not None and (
            isinstance(max_jobs_per_window, bool)
            or not isinstance(max_jobs_per_window, int)
            or max_jobs_per_window < 1
        ):
            raise ConfigurationError(
                f"max_jobs_per_window must be a positive int or None, got {max_jobs_per_window!r}"
            )
        self.max_jobs_per_window = max_jobs_per_window
        self.rate_window_s = duration_option("rate_window_s", rate_window_s, positive=True)
        self.cancel_delay_s = duration_option("cancel_delay_s", cancel_delay_s)
        self.devices: tuple[IbmDevice, ...] = tuple(DEFAULT_DEVICES if devices is None else devices)
        if not self.devices or len({d.name for d in self.devices}) != len(self.devices):
            raise ConfigurationError("an IBM Quantum emulator needs devices with unique names")
        self._by_name = {device.name: device for device in self.devices}
        self._platform = IbmCloudPlatform(
            api_key=self.api_key, instance=self.instance, token_ttl_s=self.token_ttl_s, clock=self._now
        )
        self._sessions = SessionRegistry(lambda: set(self._by_name), self._cancel_jobs)
        self._created_at: deque[float] = deque()
        self._jobs: dict[str, _Job] = {}
        self._seq = 0
        self._engine = LocalBackend(max_concurrency=max_concurrency, seed=seed)
        self._seed = seed
        #: PUBs handed to the engine.
        self.engine_runs = 0
        super().__init__(**options)

    def _now(self) -> float:
        return self.clock()

    # -- what clients need ----------------------------------------------------------------------

    @property
    def tokens_issued(self) -> int:
        """IAM tokens issued so far."""
        return self._platform.tokens_issued

    @property
    def cloud_env(self) -> dict[str, str]:
        """The IBM Cloud SDK variables that point qiskit-ibm-runtime's IAM, Global Search and
        Global Catalog calls at this emulator (``IAM_URL``, ``GLOBAL_SEARCH_URL``,
        ``GLOBAL_CATALOG_URL``); the API itself is reached through its ``url_resolver``."""
        return self._platform.env(self.base_url)

    @property
    def api_url(self) -> str:
        """``{base_url}/api/v1``: the ``url`` of the backend."""
        return self.base_url + API_PREFIX

    @property
    def iam_url(self) -> str:
        """``{base_url}/identity/token``: the ``iam_url`` of the backend."""
        return self.base_url + IAM_PATH

    @property
    def credentials(self) -> dict[str, Any]:
        """The settings of ``Sdk("ibm_quantum")`` for this emulator: ``url``, ``iam_url``,
        ``api_key``, ``instance``, and its job-creation limit (``max_jobs_per_window``, None when it
        has none, and ``rate_window_s``), so the backend keeps the emulator's limit, not IBM's."""
        return {
            "url": self.api_url,
            "iam_url": self.iam_url,
            "api_key": self.api_key,
            "instance": self.instance,
            "max_jobs_per_window": self.max_jobs_per_window,
            "rate_window_s": self.rate_window_s,
        }

    @property
    def env(self) -> dict[str, str]:
        """The variables the ``ibm_quantum`` backend reads, pointing at this emulator, and the IBM
        Cloud SDK's (:attr:`cloud_env`), so that ``oqcs emulate ibm_quantum`` serves
        qiskit-ibm-runtime too."""
        return {
            "IBM_QUANTUM_URL": self.api_url,
            "IBM_QUANTUM_IAM_URL": self.iam_url,
            "IBM_QUANTUM_API_KEY": self.api_key,
            "IBM_QUANTUM_INSTANCE": self.instance,
            "IBM_QUANTUM_MAX_JOBS_PER_WINDOW": str(self.max_jobs_per_window or "none"),
            "IBM_QUANTUM_RATE_WINDOW_S": f"{self.rate_window_s:g}",
            **self.cloud_env,
        }

    def secrets(self) -> tuple[str, ...]:
        return (self.api_key, *self._platform.tokens)

    def _scrub(self, text: str) -> str:
        # Any API key sent to IAM is a secret, a wrong one too (the kit knows only the right one).
        return _FORM_API_KEY.sub(rf"\1{REDACTED}", super()._scrub(text))

    @property
    def job_ids(self) -> list[str]:
        """Every job id handed out, oldest first."""
        return list(self._jobs)

    # -- kit hooks ------------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        router = app.router
        self._platform.add_routes(router)
        self._sessions.add_routes(router, API_PREFIX)
        router.add_get(f"{API_PREFIX}/backends", self._list_devices)
        router.add_get(f"{API_PREFIX}/backends/{{name}}/configuration", self._device_configuration)
        router.add_get(f"{API_PREFIX}/backends/{{name}}/properties", self._device_properties)
        router.add_get(f"{API_PREFIX}/backends/{{name}}/status", self._device_status)
        router.add_get(f"{API_PREFIX}/instances/usage", self._usage)
        router.add_post(f"{API_PREFIX}/jobs", self._create)
        router.add_get(f"{API_PREFIX}/jobs", self._list_jobs)
        router.add_get(f"{API_PREFIX}/jobs/{{job_id}}", self._get_job)
        router.add_delete(f"{API_PREFIX}/jobs/{{job_id}}", self._delete_job)
        router.add_post(f"{API_PREFIX}/jobs/{{job_id}}/cancel", self._cancel)
        router.add_get(f"{API_PREFIX}/jobs/{{job_id}}/results", self._results_of)
        router.add_get(f"{API_PREFIX}/jobs/{{job_id}}/metrics", self._metrics_of)

    async def on_start(self, task_group: TaskGroup) -> None:
        await self._engine.start(task_group)

    async def on_stop(self) -> None:
        await self._engine.aclose()

    def is_authorized(self, request: web.Request) -> bool:
        return self._auth_problem(request) is None

    def unauthorized_response(self, request: web.Request) -> web.StreamResponse:
        status, message = self._auth_problem(request) or (401, "Unauthorized")
        return self.error_response(status, message)

    def error_response(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        body = {
            "errors": [
                {"code": _ERROR_CODES.get(status, "error"), "message": message, "more_info": _MORE_INFO}
            ],
            "trace": uuid.uuid4().hex,
        }
        return web.json_response(body, status=status, headers=headers)

    def _auth_problem(self, request: web.Request) -> tuple[int, str] | None:
        if self._platform.is_platform_path(request.path):
            return None  # IAM needs no token; Global Search and Catalog check theirs
        problem = self._platform.token_problem(request.headers.get("Authorization", ""))
        if problem is not None:
            return 401, problem
        crn = request.headers.get("Service-CRN")
        if not crn:
            return 400, "Missing Service-CRN header"
        if not same_secret(crn, self.instance):
            return 403, "You are not authorized to use this service instance"
        version = request.headers.get("IBM-API-Version")
        if version is not None:
            try:
                datetime.strptime(version, "%Y-%m-%d")
            except ValueError:
                return 400, f"IBM-API-Version must be a YYYY-MM-DD date, got {version[:40]!r}"
        return None

    # -- knobs ----------------------------------------------------------------------------------

    async def set_status(
        self, job_id: str, status: str | None, reason: str | None = None, reason_code: int | None = None
    ) -> None:
        """Report ``status`` for the job from now on (None: back to the engine's own status).

        A terminal status cancels the job's engine runs. ``Cancelled - Ran too long`` gets reason
        code 1305 unless another is given; ``Failed`` gets 1010.
        """
        job = self._job_by_id(job_id)
        if status is not None and status not in JOB_STATUSES:
            raise ConfigurationError(
                f"status must be one of {', '.join(JOB_STATUSES)} or None, got {status!r}"
            )
        if status == RAN_TOO_LONG:
            reason_code = RAN_TOO_LONG_REASON_CODE if reason_code is None else reason_code
            reason = reason or "Job ran longer than the maximum execution time"
        elif status == "Failed":
            reason_code = BACKEND_ERROR_CODE if reason_code is None else reason_code
            reason = reason or "Error returned at backend level"
        await self._force(job, status, reason, reason_code)

    def expire_tokens(self) -> None:
        """Make every issued token invalid: the next request with one is answered 401."""
        self._platform.expire_tokens()

    async def status_of(self, job_id: str) -> str:
        """The job's top-level ``status`` as a client would read it now."""
        status, _, _ = await self._observe(self._job_by_id(job_id))
        return status

    # -- job state ------------------------------------------------------------------------------

    def _job_by_id(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(f"the IBM Quantum emulator has no job {job_id!r}")
        return job

    async def _force(
        self, job: _Job, status: str | None, reason: str | None, reason_code: int | None
    ) -> None:
        job.forced, job.reason, job.reason_code = status, reason, reason_code
        if status in TERMINAL_STATUSES:
            for pub in job.pubs:
                if pub.ref is not None:
                    await self._engine.cancel(
                        pub.ref, reason=f"the IBM Quantum emulator set the job {status}"
                    )

    async def _engine_observations(self, job: _Job) -> list[Observation]:
        return [await self._engine.status(pub.ref) for pub in job.pubs if pub.ref is not None]

    async def _observe(self, job: _Job) -> tuple[str, str | None, int | None]:
        """(top-level status, reason, reason_code)."""
        if job.cancel_requested is not None and self.clock() >= job.cancel_requested + self.cancel_delay_s:
            job.cancel_requested = None
            if job.forced is None or job.forced in ACTIVE_STATUSES:
                status, _, _ = await self._observe(job)
                if status in ACTIVE_STATUSES:
                    await self._force(job, "Cancelled", None, None)
        if job.forced is not None:
            return job.forced, job.reason, job.reason_code
        observations = await self._engine_observations(job)
        failed = next((o for o in observations if o.state is JobState.FAILED), None)
        if failed is not None:
            code = VALIDATION_ERROR_CODE if failed.code == PARSE_ERROR else BACKEND_ERROR_CODE
            return "Failed", failed.message or "The job failed", code
        if any(o.state is JobState.CANCELLED for o in observations):
            return "Cancelled", None, None
        if observations and all(o.state is JobState.COMPLETED for o in observations):
            return "Completed", None, None
        if any(o.state in (JobState.RUNNING, JobState.COMPLETED) for o in observations):
            return "Running", None, None
        return "Queued", None, None

    async def _job_body(self, job: _Job, *, exclude_params: bool) -> dict[str, Any]:
        status, reason, reason_code = await self._observe(job)
        state: dict[str, Any] = {"status": "Cancelled" if status == RAN_TOO_LONG else status}
        if reason is not None:
            state["reason"] = reason
        if reason_code is not None:
            state["reason_code"] = reason_code
        body: dict[str, Any] = {
            "id": job.id,
            "backend": job.backend,
            "state": state,
            "status": status,
            "program": {"id": "sampler"},
            "created": _iso(job.created),
            "runtime": "",
            "cost": job.cost,
            "tags": list(job.tags),
            "session_id": job.session_id,
            "user_id": "emulator-user",
            "usage": {"seconds": round(await self._usage_s(job), 3)},
        }
        if not exclude_params:
            body["params"] = job.params
        return body

    async def _usage_s(self, job: _Job) -> float:
        total = 0.0
        for pub in job.pubs:
            if pub.ref is not None and pub.spec is not None:
                run_s = (await self._engine.diagnostics(pub.ref, pub.spec)).timings or {}
                total += float(run_s.get("run_s") or 0.0)
        return total

    async def _run_span(self, job: _Job) -> tuple[datetime, datetime]:
        """When the job's first PUB started and its last ended on the engine."""
        starts: list[datetime] = []
        ends: list[datetime] = []
        for pub in job.pubs:
            if pub.ref is not None and pub.spec is not None:
                timings = (await self._engine.diagnostics(pub.ref, pub.spec)).timings or {}
                starts += [datetime.fromisoformat(timings["started_at"])] if timings.get("started_at") else []
                ends += [datetime.fromisoformat(timings["ended_at"])] if timings.get("ended_at") else []
        started = min(starts, default=job.created)
        return started, max(ends, default=started)

    async def _result_body(self, job: _Job) -> dict[str, Any] | None:
        """The SamplerV2 result, Qiskit-encoded or plain JSON as the job asked, or None unless every
        PUB completed on the engine. Samples are the engine's counts, one per shot, shuffled."""
        if job.results is not None:
            return job.results
        observations = await self._engine_observations(job)
        if len(observations) != len(job.pubs) or not all(o.state is JobState.COMPLETED for o in observations):
            return None
        rng = random.Random(f"{self._seed}:{job.id}")
        pubs: list[dict[str, tuple[list[int], int]]] = []
        for pub in job.pubs:
            assert pub.ref is not None
            assert pub.spec is not None
            counts = await self._engine.result(pub.ref, pub.spec)
            registers: dict[str, tuple[list[int], int]] = {}
            for register, tally in counts.items():
                samples = [int(bits, 2) if bits else 0 for bits, n in tally.items() for _ in range(n)]
                rng.shuffle(samples)
                registers[register] = (samples, len(next(iter(tally), "")))
            pubs.append(registers)
        if job.support_qiskit:
            started, ended = await self._run_span(job)
            job.results = qiskit_result(pubs, [pub.shots for pub in job.pubs], started, ended)
        else:
            job.results = {
                "results": [
                    {
                        "data": {
                            name: {"samples": [hex(value) for value in samples], "num_bits": width}
                            for name, (samples, width) in registers.items()
                        },
                        "metadata": {"circuit_metadata": {}},
                    }
                    for registers in pubs
                ],
                "metadata": {"execution": {"execution_spans": []}, "version": 2},
            }
        return job.results

    # -- endpoints ------------------------------------------------------------------------------

    async def _queued(self) -> dict[str, int]:
        """Active jobs per device."""
        queued: dict[str, int] = {}
        for job in list(self._jobs.values()):
            status, _, _ = await self._observe(job)
            if status in ACTIVE_STATUSES:
                queued[job.backend] = queued.get(job.backend, 0) + 1
        return queued

    def _device(self, request: web.Request) -> IbmDevice:
        return found(self._by_name.get(request.match_info["name"]), "Backend not found")

    async def _device_configuration(self, request: web.Request) -> web.Response:
        return web.json_response(self._device(request).configuration())

    async def _device_properties(self, request: web.Request) -> web.Response:
        return web.json_response(self._device(request).properties())

    async def _device_status(self, request: web.Request) -> web.Response:
        device = self._device(request)
        return web.json_response(device.status_document((await self._queued()).get(device.name, 0)))

    async def _usage(self, request: web.Request) -> web.Response:
        """The instance's usage (``GET /instances/usage``): the emulator sets no limit."""
        used = sum([await self._usage_s(job) for job in list(self._jobs.values())])
        return web.json_response(
            {
                "instance_id": self.instance,
                "usage_consumed_seconds": round(used, 3),
                "usage_limit_reached": False,
            }
        )

    async def _cancel_jobs(self, job_ids: list[str]) -> None:
        """Cancel each active job of ``job_ids`` (a session was closed)."""
        for job_id in job_ids:
            job = self._jobs.get(job_id)
            if job is not None and (await self._observe(job))[0] in ACTIVE_STATUSES:
                await self._force(job, "Cancelled", None, None)

    async def _list_devices(self, request: web.Request) -> web.Response:
        queued = await self._queued()
        devices = [
            {
                "name": device.name,
                "status": {"name": device.status, "reason": device.reason},
                "is_simulator": device.is_simulator,
                "qubits": device.qubits,
                "queue_length": queued.get(device.name, 0),
                "processor_type": dict(device.processor_type),
            }
            for device in self.devices
        ]
        return web.json_response({"devices": devices})

    def _check_rate(self) -> None:
        if self.max_jobs_per_window is None:
            return
        now = self.clock()
        while self._created_at and self._created_at[0] <= now - self.rate_window_s:
            self._created_at.popleft()
        if len(self._created_at) >= self.max_jobs_per_window:
            wait = self._created_at[0] + self.rate_window_s - now
            raise ApiError(
                429,
                f"This request is rate limited to {self.max_jobs_per_window} jobs per "
                f"{self.rate_window_s:g} seconds per user",
                headers={"Retry-After": _format_retry_after(wait)},
            )

    async def _create(self, request: web.Request) -> web.Response:
        self._check_rate()
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object")
        program_id = body.get("program_id")
        if program_id != "sampler":
            raise ApiError(404, f"Program not found: {program_id!r} (the emulator runs 'sampler')")
        backend = body.get("backend")
        if not isinstance(backend, str) or backend not in self._by_name:
            raise ApiError(400, f"Backend not found: {backend!r}")
        if "remote_storage" in body:
            raise ApiError(400, "remote_storage is not emulated; send params")
        params = body.get("params")
        if not isinstance(params, dict):
            raise ApiError(400, "params must be an object")
        tags = body.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise ApiError(400, "tags must be a list of strings")
        cost = body.get("cost", 0)
        session_id = body.get("session_id")
        if (
            isinstance(cost, bool)
            or not isinstance(cost, int)
            or (session_id is not None and not isinstance(session_id, str))
        ):
            raise ApiError(400, "cost must be an integer and session_id a string")
        pubs = _pubs_of(params)
        job_id = "".join(secrets.choice(_JOB_ID_ALPHABET) for _ in range(20))
        if session_id is not None:
            self._sessions.admit(session_id, backend, job_id)
        self._seq += 1
        job = _Job(
            id=job_id,
            seq=self._seq,
            backend=backend,
            params=params,
            tags=list(tags),
            cost=cost,
            session_id=session_id,
            created=datetime.now(UTC),
            pubs=pubs,
            support_qiskit=bool(params.get("support_qiskit", False)),
        )
        self._jobs[job.id] = job
        if self.max_jobs_per_window is not None:
            self._created_at.append(self.clock())
        await self._run(job)
        answer: dict[str, Any] = {"id": job.id, "backend": job.backend}
        if session_id is not None:
            answer["session_id"] = session_id
        return web.json_response(answer)

    async def _run(self, job: _Job) -> None:
        """Hand the job's PUBs to the engine; a PUB the device would not run fails the job
        (reason code 1002 for a circuit that cannot be read, 1517 for one that is not ISA)."""
        device = self._by_name[job.backend]
        await qiskit_imported()
        for index, pub in enumerate(job.pubs):
            try:
                pub.program = await anyio.to_thread.run_sync(device_program, pub.circuit, device)
            except PubRefused as exc:
                await self._force(job, "Failed", f"pubs[{index}]: {exc.reason}", exc.code)
                return
        for pub in job.pubs:
            spec = RunSpec(
                program=pub.program,
                target=SIMULATOR_TARGET,
                config={"shots": pub.shots, "min_duration_s": self.job_duration_s},
            )
            try:
                pub.spec = self._engine.validate(spec)
            except JobValidationError as exc:
                await self._force(job, "Failed", str(exc), VALIDATION_ERROR_CODE)
                return
            pub.ref = await self._engine.submit(pub.spec, uuid.uuid4().hex)
            self.engine_runs += 1

    def _find(self, request: web.Request) -> _Job:
        return found(self._jobs.get(request.match_info["job_id"]), "Job not found")

    async def _get_job(self, request: web.Request) -> web.Response:
        job = self._find(request)
        exclude = _flag("exclude_params", request.query.get("exclude_params")) or False
        return web.json_response(await self._job_body(job, exclude_params=exclude))

    async def _list_jobs(self, request: web.Request) -> web.Response:
        query = request.query
        limit = _int_query(request, "limit", 200, 1, MAX_LIST_LIMIT)
        offset = _int_query(request, "offset", 0, 0, 2**31 - 1)
        pending = _flag("pending", query.get("pending"))
        exclude = _flag("exclude_params", query.get("exclude_params")) or False
        after = _parse_moment("created_after", query["created_after"]) if "created_after" in query else None
        before = (
            _parse_moment("created_before", query["created_before"]) if "created_before" in query else None
        )
        sort = query.get("sort", "DESC").upper()
        if sort not in ("ASC", "DESC"):
            raise ApiError(400, f"sort must be ASC or DESC, got {query.get('sort')!r}")
        tags = set(query.getall("tags", []))
        selected: list[_Job] = []
        for job in list(self._jobs.values()):
            if query.get("backend") not in (None, job.backend):
                continue
            if query.get("program") not in (None, "sampler"):
                continue
            if query.get("session_id") not in (None, job.session_id):
                continue
            if (after is not None and job.created < after) or (before is not None and job.created > before):
                continue
            if tags and not tags <= set(job.tags):
                continue
            if pending is not None:
                status, _, _ = await self._observe(job)
                if (status in ACTIVE_STATUSES) != pending:
                    continue
            selected.append(job)
        selected.sort(key=lambda j: j.seq, reverse=sort == "DESC")
        page = selected[offset : offset + limit]
        jobs = [await self._job_body(job, exclude_params=exclude) for job in page]
        return web.json_response({"jobs": jobs, "count": len(selected), "offset": offset, "limit": limit})

    async def _cancel(self, request: web.Request) -> web.Response:
        job = self._find(request)
        status, _, _ = await self._observe(job)
        if status not in ACTIVE_STATUSES:
            raise ApiError(409, f"Job {job.id} cannot be cancelled: its status is {status}")
        if self.cancel_delay_s > 0:
            if job.cancel_requested is None:
                job.cancel_requested = self.clock()
        else:
            await self._force(job, "Cancelled", None, None)
        return web.Response(status=204)

    async def _delete_job(self, request: web.Request) -> web.Response:
        job = self._find(request)
        status, _, _ = await self._observe(job)
        if status in ACTIVE_STATUSES:
            raise ApiError(409, "Job must be in a terminal state")
        del self._jobs[job.id]
        return web.Response(status=204)

    async def _results_of(self, request: web.Request) -> web.Response:
        job = self._find(request)
        status, _, _ = await self._observe(job)
        result = await self._result_body(job) if status == "Completed" else None
        if result is None:
            raise ApiError(409, f"Job {job.id} has no results: its status is {status}")
        return web.json_response(result)

    async def _metrics_of(self, request: web.Request) -> web.Response:
        job = self._find(request)
        started: list[str] = []
        ended: list[str] = []
        for pub in job.pubs:
            if pub.ref is not None and pub.spec is not None:
                timings = (await self._engine.diagnostics(pub.ref, pub.spec)).timings or {}
                if timings.get("started_at"):
                    started.append(timings["started_at"])
                if timings.get("ended_at"):
                    ended.append(timings["ended_at"])
        usage = round(await self._usage_s(job), 3)
        finished = max(ended) if ended and len(ended) == len(job.pubs) else None
        return web.json_response(
            {
                "timestamps": {
                    "created": _iso(job.created),
                    "running": _iso(min(started)) if started else None,
                    "finished": _iso(finished),
                },
                "usage": {"seconds": usage, "quantum_seconds": usage},
                "bss": {"seconds": usage},
                "qiskit_version": _version("qiskit"),
            }
        )


def _shots(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SHOTS:
        raise ApiError(400, f"{where} must be an integer from 1 to {MAX_SHOTS}, got {value!r}")
    return value


def _pubs_of(params: dict[str, Any]) -> list[_Pub]:
    """The PUBs of sampler ``params``, checked (ApiError 400 if refused)."""
    version = params.get("version", 2)
    if version != 2 or isinstance(version, bool):
        raise ApiError(400, f"params.version must be 2 for the sampler, got {version!r}")
    if not isinstance(params.get("support_qiskit", False), bool):
        raise ApiError(400, "params.support_qiskit must be a boolean")
    options = params.get("options", {})
    if not isinstance(options, dict):
        raise ApiError(400, "params.options must be an object")
    default = _shots(params.get("shots"), "params.shots")
    if default is None:
        default = _shots(options.get("default_shots"), "params.options.default_shots")
    if default is None:
        default = DEFAULT_SHOTS
    raw = params.get("pubs")
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "params.pubs must be a non-empty list of PUBs")
    pubs = []
    for index, pub in enumerate(raw):
        if not isinstance(pub, list) or not 1 <= len(pub) <= 3:
            raise ApiError(400, f"pubs[{index}] must be [circuit, parameter_values?, shots?]")
        circuit = pub[0]
        encoded = (
            isinstance(circuit, dict)
            and circuit.get("__type__") == "QuantumCircuit"
            and isinstance(circuit.get("__value__"), str)
        )
        if not encoded and (not isinstance(circuit, str) or not circuit.strip()):
            raise ApiError(
                400, f"pubs[{index}]: the circuit must be OpenQASM 3 text or a Qiskit-encoded QuantumCircuit"
            )
        if len(pub) > 1 and pub[1] not in (None, {}):
            try:
                values = decode_array(pub[1])
            except EncodingError as exc:
                raise ApiError(400, f"pubs[{index}]: {exc}") from None
            if values is not None and values.size:
                raise ApiError(400, f"pubs[{index}]: parameter values are not emulated")
        shots = _shots(pub[2], f"pubs[{index}] shots") if len(pub) > 2 else None
        pubs.append(_Pub(circuit=circuit, shots=shots if shots is not None else default))
    return pubs


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
