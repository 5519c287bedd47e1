"""An emulator of OQC's QCaaS API, faithful enough that the published ``oqc-qcaas-client`` runs on it.

See :class:`OqcEmulator` for every endpoint and every choice made where the vendor's behaviour is
not documented (``VENDORS.md`` §5 lists what is known; everything else is marked "emulator choice").
"""

from __future__ import annotations

import json
import random
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Final

from aiohttp import web
from anyio.abc import TaskGroup

from ..backends.base import Diagnostics, Observation, RunRef, RunSpec
from ..backends.local import DEFAULT_SHOTS, MAX_SHOTS, SIMULATOR_TARGET, LocalBackend
from ..exceptions import ConfigurationError, JobValidationError
from ..state import JobState
from .emulator import ApiError, Emulator, duration_option, sdk_version
from .handlers import found, read_json, same_secret, utc_moment

__all__ = [
    "ACTIVE_STATUSES",
    "DEFAULT_QPUS",
    "INACTIVE_QPU_ID",
    "LUCY_QPU_ID",
    "MAX_RESERVE",
    "SIMULATOR_QPU_ID",
    "TASK_STATUSES",
    "TERMINAL_STATUSES",
    "OqcEmulator",
    "OqcQpu",
    "shots_from_config",
]

#: OQC's published QPU id (VENDORS.md §5), served here by the embedded simulator.
LUCY_QPU_ID: Final = "qpu:uk:2:d865b5a184"
#: The emulator's QPU named exactly ``Simulator``.
SIMULATOR_QPU_ID: Final = "qpu:uk:99:9999999999"
#: The client's built-in default QPU id; INACTIVE here, so clients fall back to the first active one.
INACTIVE_QPU_ID: Final = "qpu:uk:3:9829a5504f"

#: Every task status of ``qcaas_client.client.TaskStatus`` ("keep in sync with qcaas").
TASK_STATUSES: Final = (
    "UNKNOWN",
    "CREATED",
    "SUBMITTED",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "EXPIRED",
)
TERMINAL_STATUSES: Final = frozenset({"COMPLETED", "FAILED", "CANCELLED", "EXPIRED"})
ACTIVE_STATUSES: Final = frozenset({"CREATED", "SUBMITTED", "RUNNING"})

#: The engine's states as OQC statuses.
_STATUS_OF: Final[Mapping[JobState, str]] = {
    JobState.CREATED: "CREATED",
    JobState.SUBMITTED: "SUBMITTED",
    JobState.RUNNING: "RUNNING",
    JobState.COMPLETED: "COMPLETED",
    JobState.FAILED: "FAILED",
    JobState.CANCELLED: "CANCELLED",
}
#: ``task_error.error_code`` (an int, as the client's ``QPUTaskErrors`` and qBraid's mock have it)
#: for each engine failure code: the program or config was refused (400), the run broke (500).
_ERROR_CODE_OF: Final[Mapping[str, int]] = {
    "PARSE_ERROR": 400,
    "SIMULATION_ERROR": 500,
    "INTERNAL_ERROR": 500,
}
CONFIG_ERROR_CODE: Final = 400
FORCED_FAILURE_CODE: Final = 500

#: The most task ids one ``POST /tasks`` reserves (emulator choice; the real limit is unknown).
MAX_RESERVE: Final = 10_000
#: The most items one ``GET /admin/qpu`` page holds (``per_page`` above this is clamped).
MAX_PER_PAGE: Final = 1000

_PUBLIC: Final = frozenset(
    {
        ("GET", "/admin/version"),
        ("HEAD", "/admin/version"),
        ("POST", "/admin/login"),
        ("POST", "/admin/logout"),
    }
)
_TOKEN_HEADER: Final = "Authentication-Token"


@dataclass(frozen=True, slots=True)
class OqcQpu:
    """One QPU of the emulator's list. ``path`` is its execution URL's path (``{base_url}/{path}``)."""

    id: str
    name: str
    path: str
    active: bool = True
    region: str = "uk"
    generation: int = 2
    feature_set: Mapping[str, Any] = field(default_factory=dict)
    price_per_shot: str = "0"
    price_per_task: str = "0"


#: The QPUs an emulator lists unless given others.
DEFAULT_QPUS: Final = (
    OqcQpu(
        id=LUCY_QPU_ID,
        name="Lucy",
        path="d865b5a184",
        generation=2,
        feature_set={"always_on": True, "qubit_count": 8, "simulator": True},
    ),
    OqcQpu(
        id=SIMULATOR_QPU_ID,
        name="Simulator",
        path="9999999999",
        generation=99,
        feature_set={"always_on": True, "qubit_count": 16, "simulator": True},
    ),
    OqcQpu(
        id=INACTIVE_QPU_ID,
        name="Offline QPU",
        path="9829a5504f",
        active=False,
        generation=3,
        feature_set={"always_on": False, "qubit_count": 32, "simulator": False},
        price_per_shot="0.0013",
    ),
)


@dataclass(slots=True, eq=False)
class _Task:
    """One task id the emulator handed out, and what became of it."""

    task_id: str
    qpu: OqcQpu
    tag: str | None
    created_at: datetime
    #: The emulator clock when the id was reserved, then when the task was submitted.
    since: float
    program: str | None = None
    config: str | None = None
    spec: RunSpec | None = None
    submitted_at: datetime | None = None
    ref: RunRef | None = None
    #: Submitted to an inactive QPU: waits (SUBMITTED) until the QPU is activated.
    held: bool = False
    #: A status the emulator decided itself (knob, expiry, cancel before running, config error).
    forced: str | None = None
    error: dict[str, Any] | None = None

    @property
    def submitted(self) -> bool:
        return self.submitted_at is not None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _http_date(moment: datetime) -> str:
    """Flask's JSON datetime format (``Wed, 12 Jun 2024 20:11:15 GMT``), as in qBraid's mock."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def _timing(moment: datetime | str | None) -> str | None:
    """A timing as ``str(datetime)`` (``2023-10-17 11:24:32.937188+00:00``), as in qBraid's mock."""
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return str(moment.astimezone(UTC))


def _parse_date(name: str, value: str) -> datetime:
    try:
        return utc_moment(value.strip())
    except ValueError:
        raise ApiError(400, f"{name} is not a date: {value!r}") from None


def _task_page(query: Mapping[str, str], tasks: list[_Task]) -> list[_Task] | None:
    """The page ``page``/``per_page`` ask for, newest first; None when neither is given (the whole
    list, oldest first, as the published client reads it). Paging is an emulator choice (OQC
    documents none for this list), in the style of ``/admin/qpu``."""
    if "page" not in query and "per_page" not in query:
        return None
    try:
        per_page = int(query.get("per_page", "50"))
        page = int(query.get("page", "1"))
    except ValueError:
        raise ApiError(400, "page and per_page must be integers") from None
    if per_page < 1 or page < 1:
        raise ApiError(400, "page and per_page must be positive")
    per_page = min(per_page, MAX_PER_PAGE)
    start = (page - 1) * per_page
    return tasks[::-1][start : start + per_page]


def shots_from_config(config: object) -> tuple[int, str | None]:
    """(shots, error) of a task's ``config``: a CompilerConfig JSON *string* (or its parsed dict).

    Reads ``$data.repeats``. A missing or unparseable config, or ``repeats`` absent or null, means
    :data:`~oqc_style_sdk.backends.local.DEFAULT_SHOTS` (1000, the client's default). A ``repeats``
    that is not an int from 1 to ``MAX_SHOTS`` is an error (the task then ends FAILED).
    """
    data: object = config
    if isinstance(config, str):
        try:
            data = json.loads(config)
        except ValueError:
            return DEFAULT_SHOTS, None
    if not isinstance(data, dict):
        return DEFAULT_SHOTS, None
    inner = data.get("$data", data)
    if not isinstance(inner, dict):
        return DEFAULT_SHOTS, None
    repeats = inner.get("repeats")
    if repeats is None:
        return DEFAULT_SHOTS, None
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= MAX_SHOTS:
        return DEFAULT_SHOTS, f"config repeats must be an int from 1 to {MAX_SHOTS}, got {repeats!r}"
    return repeats, None


class OqcEmulator(Emulator):
    """OQC QCaaS (``oqc-qcaas-client`` 3.22.1's API) on 127.0.0.1, run by the embedded simulator.

    Submitted tasks run on a :class:`~oqc_style_sdk.backends.local.LocalBackend` (each lasting at
    least ``job_duration_s``, read at submission), so results are real simulations. Success is
    always 200; every error body is ``{"response": {"errors": ["<message>"]}}``. Every fault knob
    of :class:`~oqc_style_sdk.testing.emulator.Emulator` works on every endpoint.

    :param token: the ``Authentication-Token`` (default: ``secrets.token_urlsafe(32)``).
    :param email: the login e-mail (``POST /admin/login``).
    :param password: the login password (default: random).
    :param qpus: the QPU list (default :data:`DEFAULT_QPUS`: ``qpu:uk:2:d865b5a184`` "Lucy" and
        ``qpu:uk:99:9999999999`` "Simulator", both ACTIVE, and ``qpu:uk:3:9829a5504f`` INACTIVE).
    :param expire_after_s: tasks still active this long after submission (after reservation, for
        ids never submitted) read as ``EXPIRED`` (their run is cancelled). None: never.
    :param max_concurrency: how many tasks simulate at once; others stay ``SUBMITTED`` (default:
        the CPU count).
    :param seed: the simulator's seed (default: unseeded).
    :param version: what ``GET /admin/version`` says.
    :param simulate: False: tasks are not simulated (for load tests of thousands of tasks): each
        runs for a duration drawn uniformly from ``job_duration_s`` to ``job_duration_max_s``, any
        number at once, and completes with a fixed result (every shot on the all-zeros bitstring
        of register ``c``). Programs are not parsed.
    :param job_duration_max_s: with ``simulate=False``, the longest task (default: ``job_duration_s``).
    Other keyword options (``job_duration_s``, ``latency_s``, ``max_lifetime_s``, ``clock``,
    ``port`` ...) are the kit's.

    Authentication
        Header ``Authentication-Token: <token>`` on everything except ``GET /admin/version``,
        ``POST /admin/login`` and ``POST /admin/logout``. Missing or wrong → 401
        ``{"response": {"errors": ["Authentication Error"]}}``.

    Control plane (on ``base_url``)
        ``GET /admin/version`` → ``{"version": "..."}``.
        ``POST /admin/login?include_auth_token=true`` ``{"email", "password"}`` →
        ``{"meta": {"code": 200}, "response": {"user": {"id", "email", "authentication_token"}}}``
        (the token only with ``include_auth_token=true``); wrong → 400. ``POST /admin/logout`` →
        ``{"meta": {"code": 200}, "response": {}}``. ``GET /admin/auth_tokens/{token}`` →
        ``{"expires_at": "YYYY-MM-DDTHH:MM:SS"}`` (30 days after start; emulator choice), unknown
        token → 404.
        ``GET /admin/qpu?per_page=1000[&page=1]`` → ``{"items": [QPU], "total", "page",
        "per_page"}``; a QPU is ``{"id", "name", "url", "active", "status" ("ACTIVE" |
        "INACTIVE"), "region", "generation", "feature_set" (a JSON *string*), "price_per_shot",
        "price_per_task"}`` (qBraid's mock), ``url`` being ``{base_url}/{path}``: the per-QPU
        execution URL. ``total``/``page``/``per_page`` and the default of 50 per page are emulator
        choices (Flask-Admin style, as the client's ``/admin/users`` reads ``total``).
        ``GET /admin/qpu/{qpu_id}`` → the QPU, unknown → 404 ``QPU not found``.

    Task endpoints (on each QPU's ``url``; a task is found only under its own QPU's URL)
        ``POST /tasks`` ``{"qpu_id", "task_count", "tag"}`` → ``["<uuid>", ...]``: ids reserved in
        state ``CREATED``. ``qpu_id`` may be null (the URL's QPU); another QPU's id → 400;
        ``task_count`` must be an int from 1 to :data:`MAX_RESERVE` (else 400).
        ``POST /tasks/submit`` ``{"tasks": [Task]}`` → ``[{"task_id": "<uuid>"}, ...]`` in order.
        Task = ``{"program", "config", "qpu_id", "tag", "task_id"?}``; ``config`` is a
        CompilerConfig JSON string whose ``$data.repeats`` gives the shots (missing/unparseable
        config or null repeats → 1000; an invalid repeats → the task ends FAILED, code 400).
        The whole request is checked first and refused with 400 (nothing submitted) if: it is not
        ``{"tasks": [...]}`` with 1+ objects, a ``program`` is not a string, a ``qpu_id`` names
        another QPU, or a ``task_id`` was never reserved on this QPU. A reserved id (``CREATED``)
        is submitted; an id already submitted — or already ended — is NOT run again, only returned
        again (idempotent: a client may retry a lost submit response). A missing, null, empty or
        ``-1`` ``task_id`` (the client's batch placeholder) gets a new id from the server.
        On an INACTIVE QPU submitted tasks wait in ``SUBMITTED`` (like a QPU outside its window)
        until :meth:`set_qpu_active` (emulator choice).
        ``GET /tasks/{id}/status`` → ``{"status": "<TaskStatus>"}``.
        ``GET /tasks/{id}/results`` → ``{"results": {"<creg>": {"<bits>": n}} | null}`` (counts
        only when COMPLETED, BinaryCount style).
        ``GET /tasks/{id}/error`` → ``{"task_error": {"error_message", "error_code"} | null}``,
        set only when FAILED: the parser's message with code 400 for a program that does not
        parse (``OPENQASM 5.0``) or an invalid config, 500 for a simulation error or a FAILED forced
        by :meth:`set_status`. Codes are ints (the client's ``QPUTaskErrors`` default is ``-1``,
        qBraid's mock uses 400): emulator choice.
        ``GET /tasks/{id}/metadata`` → ``{"metadata": {"allow_support_access", "config",
        "created_at" (HTTP date), "id", "qpu_id", "tag"}}`` (qBraid's mock).
        ``GET /tasks/{id}/execution_metadata`` → ``{"execution_metadata": {"optimized_circuit",
        "optimized_instruction_count", "num_qubits", "num_clbits", "depth", "size",
        "gate_counts"} | null}`` (null until the program was parsed).
        ``GET /tasks/{id}/timings`` → ``{"timings": {"SERVER_RECEIVED", "SERVER_ENQUEUED",
        "SERVER_DEQUEUED", "RECEIVER_ENQUEUED", "RECEIVER_DEQUEUED", "RECEIVER_TO_SCC",
        "RECEIVER_FROM_SCC"}}``, each ``str(datetime)`` in UTC, a key present once reached
        (names from qBraid's mock; their mapping to submit/start/end is the emulator's reading).
        ``GET /tasks/{id}/all_info`` → ``{"task_id", "qpu_id", "tag", "status", "results",
        "task_error", "execution_metadata", "metadata", "timings"}``.
        ``GET /tasks?start_date=&end_date=`` → ``[{"task_id", "qpu_id", "status", "tag",
        "created_at"}, ...]`` of this QPU, oldest first, ``created_at`` within the (inclusive,
        ISO 8601, naive = UTC) bounds given; a bound that is not a date → 400. With ``page``
        and/or ``per_page`` (emulator choice, as ``/admin/qpu``: default 50, at most
        :data:`MAX_PER_PAGE`) the same list is paged, newest first.
        ``POST /tasks/cancel_many`` ``{"tasks": ["<id>", ...]}`` → 200 ``{"tasks": [{"task_id",
        "cancelled": bool, "status": "<status after>" | null, "detail"}]}`` in request order
        (emulator choice; the real body is unknown and the client does not read it): an active
        task (CREATED, SUBMITTED, RUNNING) becomes ``CANCELLED`` (``detail`` "cancelled"); an ended
        one is left as it is (``detail`` "already finished"); an unknown id changes nothing
        (``status`` null, ``detail`` "Task not found"). A body that is not ``{"tasks": [str]}`` → 400.
        Unknown task id on any GET → 404 ``{"response": {"errors": ["Task not found"]}}``; unknown
        QPU path → 404 ``QPU not found``; an undeclared route → 404, a wrong method → 405.
        ``GET /windows/next`` → ``{}`` (no window known; the client reads this as "no next
        window"), or ``{"next_window": {"starting": "YYYY-MM-DDTHH:MM:SSZ"}}`` once
        :meth:`set_qpu_active` gave one (the format the client's ``get_next_window`` accepts).
        ``POST /monitoring/qpu_wait_time`` ``{"targets": [qpu ids]}`` →
        ``{"qpu_wait_times": [{"qpu_id", "tasks_in_queue", "average_processing_seconds",
        "estimated_availability_time", "timestamp", "windows": []}]}`` (qBraid's mock shape).
        Other ``/monitoring/*`` endpoints are not emulated (their shapes are unknown): 404.

    Statuses
        ``CREATED`` (reserved) → ``SUBMITTED`` (queued in the engine, or held) → ``RUNNING`` →
        ``COMPLETED`` | ``FAILED`` | ``CANCELLED``; ``EXPIRED`` via :meth:`expire` or
        ``expire_after_s`` (checked when the task is read: a task still active at or after its
        deadline is EXPIRED). ``UNKNOWN`` is never reported unless forced with :meth:`set_status`.

    Knobs (besides the kit's)
        ``await set_status(task_id, status)`` overrides the reported status (None clears it);
        forcing a terminal status cancels the engine run. ``await expire(task_id)`` is
        ``set_status(task_id, "EXPIRED")``. ``await set_qpu_active(qpu_id, active)``.
        ``engine_runs`` counts the runs handed to the engine (a retried submit adds none).
        ``await status_of(task_id)`` reads a status as a client would (also after stop);
        ``task_ids`` lists every id handed out; ``qpu_url(qpu_id)`` is a QPU's execution URL;
        ``token``, ``email`` and ``password`` are the credentials it accepts.
    """

    vendor = "oqc"

    def __init__(
        self,
        *,
        token: str | None = None,
        email: str = "user@example.com",
        password: str | None = None,
        qpus: Sequence[OqcQpu] | None = None,
        expire_after_s: float | None = None,
        max_concurrency: int | None = None,
        seed: int | None = None,
        version: str | None = None,
        simulate: bool = True,
        job_duration_max_s: float | None = None,
        **options: Any,
    ) -> None:
        self.token = token if token is not None else secrets.token_urlsafe(32)
        if not isinstance(self.token, str) or not self.token:
            raise ConfigurationError("token must be a non-empty str")
        self.email = email
        self.password = password if password is not None else secrets.token_urlsafe(16)
        self.qpus: tuple[OqcQpu, ...] = tuple(DEFAULT_QPUS if qpus is None else qpus)
        if not self.qpus:
            raise ConfigurationError("an OQC emulator needs at least one QPU")
        if len({q.id for q in self.qpus}) != len(self.qpus) or len({q.path for q in self.qpus}) != len(
            self.qpus
        ):
            raise ConfigurationError("QPU ids and paths must be unique")
        self.expire_after_s = (
            None if expire_after_s is None else duration_option("expire_after_s", expire_after_s)
        )
        self.version = version if version is not None else f"oqc-style-sdk-emulator {sdk_version()}"
        self._active = {q.id: q.active for q in self.qpus}
        self._next_windows: dict[str, datetime | None] = {}
        self._by_id = {q.id: q for q in self.qpus}
        self._by_path = {q.path: q for q in self.qpus}
        self._tasks: dict[str, _Task] = {}
        self._token_expires_at = _utcnow() + timedelta(days=30)
        self._engine: LocalBackend | _FixedEngine = LocalBackend(max_concurrency=max_concurrency, seed=seed)
        #: How many runs were handed to the engine.
        self.engine_runs = 0
        super().__init__(**options)
        if not simulate:
            longest = self.job_duration_s if job_duration_max_s is None else job_duration_max_s
            longest = duration_option("job_duration_max_s", longest)
            if longest < self.job_duration_s:
                raise ConfigurationError("job_duration_max_s must be at least job_duration_s")
            self._engine = _FixedEngine(self.job_duration_s, longest, seed)

    # -- what clients need ----------------------------------------------------------------------

    @property
    def credentials(self) -> dict[str, str]:
        """``{"url", "authentication_token"}``: the arguments of ``OQCClient`` and of our backend."""
        return {"url": self.base_url, "authentication_token": self.token}

    @property
    def env(self) -> dict[str, str]:
        """``OQC_URL`` and ``OQC_AUTHENTICATION_TOKEN``, as OQC's documentation reads them."""
        return {"OQC_URL": self.base_url, "OQC_AUTHENTICATION_TOKEN": self.token}

    def secrets(self) -> tuple[str, ...]:
        return (self.token, self.password)

    def qpu_url(self, qpu_id: str) -> str:
        """The execution URL of a QPU."""
        return f"{self.base_url}/{self._by_id[qpu_id].path}"

    @property
    def task_ids(self) -> list[str]:
        """Every task id handed out, oldest first."""
        return list(self._tasks)

    # -- kit hooks ------------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        router = app.router
        router.add_get("/admin/version", self._version)
        router.add_post("/admin/login", self._login)
        router.add_post("/admin/logout", self._logout)
        router.add_get("/admin/auth_tokens/{token}", self._auth_token)
        router.add_get("/admin/qpu", self._list_qpus)
        router.add_get("/admin/qpu/{qpu_id}", self._get_qpu)
        router.add_post("/{qpu}/tasks", self._reserve)
        router.add_get("/{qpu}/tasks", self._list_tasks)
        router.add_post("/{qpu}/tasks/submit", self._submit)
        router.add_post("/{qpu}/tasks/cancel_many", self._cancel_many)
        router.add_get("/{qpu}/tasks/{task_id}/status", self._status_of)
        router.add_get("/{qpu}/tasks/{task_id}/all_info", self._all_info)
        router.add_get("/{qpu}/tasks/{task_id}/results", self._results_of)
        router.add_get("/{qpu}/tasks/{task_id}/error", self._error_of)
        router.add_get("/{qpu}/tasks/{task_id}/metadata", self._metadata_of)
        router.add_get("/{qpu}/tasks/{task_id}/execution_metadata", self._execution_metadata_of)
        router.add_get("/{qpu}/tasks/{task_id}/timings", self._timings_of)
        router.add_get("/{qpu}/windows/next", self._next_window)
        router.add_post("/{qpu}/monitoring/qpu_wait_time", self._qpu_wait_time)

    async def on_start(self, task_group: TaskGroup) -> None:
        await self._engine.start(task_group)

    async def on_stop(self) -> None:
        await self._engine.aclose()

    def is_authorized(self, request: web.Request) -> bool:
        if (request.method, request.path) in _PUBLIC:
            return True
        sent = request.headers.get(_TOKEN_HEADER)
        if sent is None:
            return False
        return same_secret(sent, self.token)

    def unauthorized_response(self, request: web.Request) -> web.StreamResponse:
        return self.error_response(401, "Authentication Error")

    def error_response(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        return web.json_response({"response": {"errors": [message]}}, status=status, headers=headers)

    # -- knobs ----------------------------------------------------------------------------------

    async def set_status(
        self,
        task_id: str,
        status: str | None,
        *,
        error_message: str | None = None,
        error_code: int | None = None,
    ) -> None:
        """Report ``status`` for the task from now on (None: back to the engine's own status).

        A terminal status cancels the task's engine run. ``FAILED`` takes an optional task_error.
        """
        task = self._tasks.get(task_id)
        if task is None:
            raise KeyError(f"the OQC emulator has no task {task_id!r}")
        if status is not None and status not in TASK_STATUSES:
            raise ConfigurationError(
                f"status must be one of {', '.join(TASK_STATUSES)} or None, got {status!r}"
            )
        if status == "FAILED" and (error_message is not None or error_code is not None):
            task.error = {
                "error_message": error_message or "The task failed.",
                "error_code": FORCED_FAILURE_CODE if error_code is None else error_code,
            }
        await self._force(task, status)

    async def expire(self, task_id: str) -> None:
        """Make the task ``EXPIRED`` (its engine run, if any, is cancelled)."""
        await self.set_status(task_id, "EXPIRED")

    async def set_qpu_active(self, qpu_id: str, active: bool, *, next_window: datetime | None = None) -> None:
        """Mark a QPU ACTIVE or INACTIVE; activating runs the tasks held for it. ``next_window``:
        when its next window starts (``GET /windows/next`` says it; None: no window known)."""
        qpu = self._by_id.get(qpu_id)
        if qpu is None:
            raise KeyError(f"the OQC emulator has no QPU {qpu_id!r}")
        self._active[qpu_id] = bool(active)
        self._next_windows[qpu_id] = next_window
        if active:
            for task in list(self._tasks.values()):
                if task.qpu is qpu and task.held and task.forced is None:
                    task.held = False
                    await self._run(task)

    async def status_of(self, task_id: str) -> str:
        """The task's status as a client would read it now."""
        task = self._tasks.get(task_id)
        if task is None:
            raise KeyError(f"the OQC emulator has no task {task_id!r}")
        status, _ = await self._observe(task)
        return status

    # -- task state -----------------------------------------------------------------------------

    async def _force(self, task: _Task, status: str | None) -> None:
        task.forced = status
        if status in TERMINAL_STATUSES:
            task.held = False
            if task.ref is not None:
                await self._engine.cancel(task.ref, reason=f"the OQC emulator set the task {status}")

    async def _observe(self, task: _Task) -> tuple[str, Observation | None]:
        """(status, engine observation) — applying ``expire_after_s`` to a task still active."""
        if task.forced is not None:
            observation = await self._engine.status(task.ref) if task.ref is not None else None
            return task.forced, observation
        observation = await self._engine.status(task.ref) if task.ref is not None else None
        active = observation is None or observation.state.is_active
        if active and self.expire_after_s is not None and self.clock() - task.since >= self.expire_after_s:
            await self._force(task, "EXPIRED")
            return "EXPIRED", observation
        if observation is None:
            return ("SUBMITTED" if task.submitted else "CREATED"), None
        return _STATUS_OF[observation.state], observation

    def _task_error(self, task: _Task, status: str, observation: Observation | None) -> dict[str, Any] | None:
        if status != "FAILED":
            return None
        if task.error is not None:
            return dict(task.error)
        if observation is not None and observation.state is JobState.FAILED:
            return {
                "error_message": observation.message or "The task failed.",
                "error_code": _ERROR_CODE_OF.get(observation.code or "", FORCED_FAILURE_CODE),
            }
        return {"error_message": "The task failed.", "error_code": FORCED_FAILURE_CODE}

    async def _results(self, task: _Task, status: str, observation: Observation | None) -> Any:
        if status != "COMPLETED" or observation is None or observation.state is not JobState.COMPLETED:
            return None
        if task.ref is None or task.spec is None:  # pragma: no cover - a COMPLETED run has both
            return None
        return await self._engine.result(task.ref, task.spec)

    async def _execution_metadata(self, task: _Task) -> dict[str, Any] | None:
        if task.ref is None or task.spec is None:
            return None
        metrics = (await self._engine.diagnostics(task.ref, task.spec)).metrics
        if metrics is None:
            return None
        return {
            "optimized_circuit": task.program,
            "optimized_instruction_count": metrics.get("size"),
            **metrics,
        }

    def _metadata(self, task: _Task) -> dict[str, Any]:
        return {
            "allow_support_access": False,
            "config": task.config,
            "created_at": _http_date(task.created_at),
            "id": task.task_id,
            "qpu_id": task.qpu.id,
            "tag": task.tag,
        }

    async def _timings(self, task: _Task) -> dict[str, str]:
        moments: dict[str, str | None] = {
            "SERVER_RECEIVED": _timing(task.submitted_at),
            "SERVER_ENQUEUED": _timing(task.submitted_at),
        }
        if task.ref is not None and task.spec is not None:
            timings = (await self._engine.diagnostics(task.ref, task.spec)).timings or {}
            started, ended = timings.get("started_at"), timings.get("ended_at")
            moments.update(
                {
                    "SERVER_DEQUEUED": _timing(started),
                    "RECEIVER_ENQUEUED": _timing(started),
                    "RECEIVER_DEQUEUED": _timing(started),
                    "RECEIVER_TO_SCC": _timing(started),
                    "RECEIVER_FROM_SCC": _timing(ended),
                }
            )
        return {key: value for key, value in moments.items() if value is not None}

    async def _run(self, task: _Task) -> None:
        """Hand a submitted task to the engine (or hold it for an inactive QPU)."""
        assert task.program is not None
        if not self._active[task.qpu.id]:
            task.held = True
            return
        shots, config_error = shots_from_config(task.config)
        if config_error is not None:
            task.forced, task.error = (
                "FAILED",
                {"error_message": config_error, "error_code": CONFIG_ERROR_CODE},
            )
            return
        spec = RunSpec(
            program=task.program,
            target=SIMULATOR_TARGET,
            config={"shots": shots, "min_duration_s": self.job_duration_s},
            tag=task.tag,
        )
        try:
            spec = self._engine.validate(spec)
        except JobValidationError as exc:
            task.forced, task.error = "FAILED", {"error_message": str(exc), "error_code": CONFIG_ERROR_CODE}
            return
        task.spec = spec
        task.ref = await self._engine.submit(spec, task.task_id)
        self.engine_runs += 1

    # -- request helpers ------------------------------------------------------------------------

    def _qpu(self, request: web.Request) -> OqcQpu:
        return found(self._by_path.get(request.match_info["qpu"]), "QPU not found")

    def _task(self, request: web.Request) -> _Task:
        qpu = self._qpu(request)
        task = self._tasks.get(request.match_info["task_id"])
        if task is None or task.qpu is not qpu:
            raise ApiError(404, "Task not found")
        return task

    def _qpu_item(self, qpu: OqcQpu) -> dict[str, Any]:
        active = self._active[qpu.id]
        return {
            "id": qpu.id,
            "name": qpu.name,
            "url": f"{self.base_url}/{qpu.path}",
            "active": active,
            "status": "ACTIVE" if active else "INACTIVE",
            "region": qpu.region,
            "generation": qpu.generation,
            "feature_set": json.dumps(dict(qpu.feature_set)),
            "price_per_shot": qpu.price_per_shot,
            "price_per_task": qpu.price_per_task,
        }

    def _check_qpu_id(self, qpu: OqcQpu, qpu_id: object) -> None:
        if qpu_id is not None and qpu_id != qpu.id:
            raise ApiError(400, f"qpu_id {qpu_id!r} does not match this QPU endpoint ({qpu.id})")

    def _new_task(self, qpu: OqcQpu, tag: str | None) -> _Task:
        task = _Task(task_id=str(uuid.uuid4()), qpu=qpu, tag=tag, created_at=_utcnow(), since=self.clock())
        self._tasks[task.task_id] = task
        return task

    # -- control plane --------------------------------------------------------------------------

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": self.version})

    async def _login(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ApiError(400, "Email and password are required")
        email, password = body.get("email"), body.get("password")
        ok = (
            isinstance(email, str)
            and isinstance(password, str)
            and email == self.email
            and secrets.compare_digest(password.encode(), self.password.encode())
        )
        if not ok:
            raise ApiError(400, "Invalid email or password")
        user: dict[str, Any] = {"id": 1, "email": self.email}
        if request.query.get("include_auth_token", "").lower() in ("true", "1", "yes"):
            user["authentication_token"] = self.token
        return web.json_response({"meta": {"code": 200}, "response": {"user": user}})

    async def _logout(self, request: web.Request) -> web.Response:
        return web.json_response({"meta": {"code": 200}, "response": {}})

    async def _auth_token(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if not secrets.compare_digest(token.encode(), self.token.encode()):
            raise ApiError(404, "Token not found")
        return web.json_response({"expires_at": self._token_expires_at.strftime("%Y-%m-%dT%H:%M:%S")})

    async def _list_qpus(self, request: web.Request) -> web.Response:
        try:
            per_page = int(request.query.get("per_page", "50"))
            page = int(request.query.get("page", "1"))
        except ValueError:
            raise ApiError(400, "page and per_page must be integers") from None
        if per_page < 1 or page < 1:
            raise ApiError(400, "page and per_page must be positive")
        per_page = min(per_page, MAX_PER_PAGE)
        items = [self._qpu_item(qpu) for qpu in self.qpus]
        start = (page - 1) * per_page
        return web.json_response(
            {
                "items": items[start : start + per_page],
                "total": len(items),
                "page": page,
                "per_page": per_page,
            }
        )

    async def _get_qpu(self, request: web.Request) -> web.Response:
        qpu = found(self._by_id.get(request.match_info["qpu_id"]), "QPU not found")
        return web.json_response(self._qpu_item(qpu))

    # -- tasks ----------------------------------------------------------------------------------

    async def _reserve(self, request: web.Request) -> web.Response:
        qpu = self._qpu(request)
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ApiError(400, 'expected {"qpu_id", "task_count", "tag"}')
        self._check_qpu_id(qpu, body.get("qpu_id"))
        count, tag = body.get("task_count"), body.get("tag")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_RESERVE:
            raise ApiError(400, f"task_count must be an int from 1 to {MAX_RESERVE}, got {count!r}")
        if tag is not None and not isinstance(tag, str):
            raise ApiError(400, "tag must be a string")
        return web.json_response([self._new_task(qpu, tag).task_id for _ in range(count)])

    async def _submit(self, request: web.Request) -> web.Response:
        qpu = self._qpu(request)
        body = await read_json(request)
        items = body.get("tasks") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items or not all(isinstance(item, dict) for item in items):
            raise ApiError(400, 'expected {"tasks": [Task, ...]} with at least one task')
        # Check everything first: a refused request submits nothing.
        plan: list[tuple[dict[str, Any], _Task | None]] = []
        for index, item in enumerate(items):
            if not isinstance(item.get("program"), str):
                raise ApiError(400, f"tasks[{index}].program must be a string")
            self._check_qpu_id(qpu, item.get("qpu_id"))
            tag = item.get("tag")
            if tag is not None and not isinstance(tag, str):
                raise ApiError(400, f"tasks[{index}].tag must be a string")
            task_id = item.get("task_id")
            if task_id in (None, "", -1, "-1"):
                plan.append((item, None))
                continue
            task = self._tasks.get(task_id) if isinstance(task_id, str) else None
            if task is None or task.qpu is not qpu:
                raise ApiError(400, f"task_id {task_id!r} was not reserved on this QPU")
            plan.append((item, task))
        answer = []
        for item, known in plan:
            task = known if known is not None else self._new_task(qpu, item.get("tag"))
            if not task.submitted and task.forced is None:  # reserved: submit it (once)
                config = item.get("config")
                task.program = item["program"]
                task.config = config if isinstance(config, str) or config is None else json.dumps(config)
                task.tag = item.get("tag") or task.tag or item.get("tag")
                task.submitted_at = _utcnow()
                task.since = self.clock()
                await self._run(task)
            answer.append({"task_id": task.task_id})
        return web.json_response(answer)

    async def _cancel_many(self, request: web.Request) -> web.Response:
        qpu = self._qpu(request)
        body = await read_json(request)
        ids = body.get("tasks") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ApiError(400, 'expected {"tasks": ["<task id>", ...]}')
        report: list[dict[str, Any]] = []
        for task_id in ids:
            task = self._tasks.get(task_id)
            if task is None or task.qpu is not qpu:
                report.append(
                    {"task_id": task_id, "cancelled": False, "status": None, "detail": "Task not found"}
                )
                continue
            status, _ = await self._observe(task)
            if status in TERMINAL_STATUSES:
                report.append(
                    {"task_id": task_id, "cancelled": False, "status": status, "detail": "already finished"}
                )
                continue
            await self._force(task, "CANCELLED")
            report.append(
                {"task_id": task_id, "cancelled": True, "status": "CANCELLED", "detail": "cancelled"}
            )
        return web.json_response({"tasks": report})

    async def _list_tasks(self, request: web.Request) -> web.Response:
        qpu = self._qpu(request)
        start = request.query.get("start_date")
        end = request.query.get("end_date")
        low = _parse_date("start_date", start) if start else None
        high = _parse_date("end_date", end) if end else None
        chosen = [
            task
            for task in list(self._tasks.values())
            if task.qpu is qpu
            and not (low is not None and task.created_at < low)
            and not (high is not None and task.created_at > high)
        ]
        paged = _task_page(request.query, chosen)
        listing = []
        for task in chosen if paged is None else paged:
            status, _ = await self._observe(task)
            listing.append(
                {
                    "task_id": task.task_id,
                    "qpu_id": qpu.id,
                    "status": status,
                    "tag": task.tag,
                    "created_at": _http_date(task.created_at),
                }
            )
        return web.json_response(listing)

    async def _status_of(self, request: web.Request) -> web.Response:
        status, _ = await self._observe(self._task(request))
        return web.json_response({"status": status})

    async def _results_of(self, request: web.Request) -> web.Response:
        task = self._task(request)
        status, observation = await self._observe(task)
        return web.json_response({"results": await self._results(task, status, observation)})

    async def _error_of(self, request: web.Request) -> web.Response:
        task = self._task(request)
        status, observation = await self._observe(task)
        return web.json_response({"task_error": self._task_error(task, status, observation)})

    async def _metadata_of(self, request: web.Request) -> web.Response:
        return web.json_response({"metadata": self._metadata(self._task(request))})

    async def _execution_metadata_of(self, request: web.Request) -> web.Response:
        return web.json_response({"execution_metadata": await self._execution_metadata(self._task(request))})

    async def _timings_of(self, request: web.Request) -> web.Response:
        return web.json_response({"timings": await self._timings(self._task(request))})

    async def _all_info(self, request: web.Request) -> web.Response:
        task = self._task(request)
        status, observation = await self._observe(task)
        return web.json_response(
            {
                "task_id": task.task_id,
                "qpu_id": task.qpu.id,
                "tag": task.tag,
                "status": status,
                "results": await self._results(task, status, observation),
                "task_error": self._task_error(task, status, observation),
                "execution_metadata": await self._execution_metadata(task),
                "metadata": self._metadata(task),
                "timings": await self._timings(task),
            }
        )

    async def _next_window(self, request: web.Request) -> web.Response:
        starting = self._next_windows.get(self._qpu(request).id)
        if starting is None:
            return web.json_response({})
        window = {"starting": starting.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        return web.json_response({"next_window": window})

    async def _qpu_wait_time(self, request: web.Request) -> web.Response:
        self._qpu(request)
        body = await read_json(request)
        targets = body.get("targets") if isinstance(body, dict) else None
        if not isinstance(targets, list):
            raise ApiError(400, 'expected {"targets": ["<qpu id>", ...]}')
        now = _utcnow().strftime("%Y-%m-%d %H:%M:%S")
        waits = []
        for qpu_id in targets:
            qpu = self._by_id.get(qpu_id) if isinstance(qpu_id, str) else None
            if qpu is None:
                continue
            queued = 0
            for task in list(self._tasks.values()):
                if task.qpu is qpu and task.submitted:
                    status, _ = await self._observe(task)
                    queued += status in ("SUBMITTED", "RUNNING")
            waits.append(
                {
                    "qpu_id": qpu.id,
                    "tasks_in_queue": queued,
                    "average_processing_seconds": self.job_duration_s,
                    "estimated_availability_time": now,
                    "timestamp": now,
                    "windows": [],
                }
            )
        return web.json_response({"qpu_wait_times": waits})


class _FixedEngine:
    """The engine of ``simulate=False``: timed runs with a fixed result, no simulation, no limit."""

    def __init__(self, shortest_s: float, longest_s: float, seed: int | None) -> None:
        self._rng = random.Random(seed)
        self._span = (shortest_s, longest_s)
        self._runs: dict[str, tuple[float, float, int]] = {}  # id: (start, end, shots) in time.time()
        self._cancelled: dict[str, float] = {}

    async def start(self, task_group: TaskGroup) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def validate(self, spec: RunSpec) -> RunSpec:
        return spec

    async def submit(self, spec: RunSpec, key: str) -> RunRef:
        start = time.time()
        self._runs[key] = (start, start + self._rng.uniform(*self._span), int(spec.config.get("shots", 1)))
        return RunRef(key)

    async def status(self, ref: RunRef) -> Observation:
        _, end, _ = self._runs[ref.task_id]
        cancelled = self._cancelled.get(ref.task_id)
        if cancelled is not None and cancelled < end:
            return Observation(JobState.CANCELLED, "CANCELLED")
        if time.time() < end:
            return Observation(JobState.RUNNING, "RUNNING")
        return Observation(JobState.COMPLETED, "COMPLETED", ended_at=datetime.fromtimestamp(end, UTC))

    async def cancel(self, ref: RunRef, reason: str | None = None) -> None:
        self._cancelled.setdefault(ref.task_id, time.time())

    async def result(self, ref: RunRef, spec: RunSpec) -> Any:
        return {"c": {"0": self._runs[ref.task_id][2]}}

    async def diagnostics(self, ref: RunRef, spec: RunSpec) -> Diagnostics:
        start, end, _ = self._runs[ref.task_id]
        ended = min(end, self._cancelled.get(ref.task_id, end))
        timings: dict[str, Any] = {"started_at": datetime.fromtimestamp(start, UTC).isoformat()}
        if time.time() >= ended:
            timings["ended_at"] = datetime.fromtimestamp(ended, UTC).isoformat()
        return Diagnostics(timings=timings)
