"""An emulator of the Azure Databricks Jobs API (2.1 and 2.2 paths), faithful enough that the official
``databricks-sdk`` client runs on it.

See :class:`DatabricksEmulator` for every endpoint and every choice made where the vendor's behaviour
is not documented (``VENDORS.md`` §3 lists what is known; the rest is marked "emulator choice").
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
from aiohttp import web
from aiohttp.typedefs import Handler

from ..backends.databricks import (
    LIFECYCLE_STATES,
    RESULT_STATES,
    STATUS_STATES,
    TERMINATION_CODES,
)
from ..exceptions import ConfigurationError
from .databricks_model import (
    API_VERSIONS,
    CODE_OF_RESULT,
    DEFAULT_CLUSTER_ID,
    DEFAULT_JOBS,
    ERROR_CODES,
    FIRST_ID,
    JOBS_PAGE_MAX,
    LIFE_OF_STATUS,
    MAX_TASKS,
    MAX_TOKEN,
    PAGE_MAX,
    STATUS_OF_LIFE,
    TERMINAL_LIFE,
    TERMINATION_TYPES,
    TYPE_OF_CODE,
    USER,
    EmulatedJob,
    Exchange,
    Forced,
    Refused,
    RunRecord,
    RunView,
    TaskRecord,
    json_or_none,
    offset_of,
    page_token,
    parse_bool,
    parse_int,
)
from .emulator import Emulator, duration_option
from .handlers import same_secret

__all__ = [
    "DEFAULT_CLUSTER_ID",
    "DEFAULT_JOBS",
    "TERMINATION_TYPES",
    "DatabricksEmulator",
    "EmulatedJob",
    "Exchange",
]


class DatabricksEmulator(Emulator):
    """Azure Databricks Jobs API 2.1/2.2 on 127.0.0.1, with runs that follow the documented states.

    :param token: the bearer token it accepts (default: ``dapi`` + 32 random hex digits, the shape of
        a personal access token).
    :param workspace_id: the workspace id (in ``run_page_url`` and the host metadata).
    :param jobs: the jobs of the workspace for ``run-now`` (default :data:`DEFAULT_JOBS`: 101
        ``nightly-etl`` (a notebook), 102 ``train-model`` (a Python wheel), 103 ``ingest-and-report``
        (a Python file, then a notebook that depends on it)).
    :param queue_s: how long a new run is ``QUEUED`` before ``PENDING`` (default 0: never queued).
    :param pending_s: how long it is ``PENDING`` (default: 10 % of ``job_duration_s``).
    :param terminating_s: how long it is ``TERMINATING`` after its tasks finish (default: 10 %).
    :param cancel_duration_s: how long a cancelled run stays ``TERMINATING`` (default: 10 %).
    Other keyword options (``job_duration_s`` — a run lasts ``queue_s + job_duration_s`` from
    submission to ``TERMINATED`` —, ``latency_s``, ``max_lifetime_s``, ``clock``, ``port`` ...) are
    the kit's.

    Authentication
        ``Authorization: Bearer <token>`` on every request except ``GET /.well-known/databricks-config``.
        Missing or wrong → 401 ``{"error_code": "PERMISSION_DENIED", "message": "Unauthorized
        access."}`` (the spec's only documented answer; real workspaces may answer 403 "Invalid
        access token": emulator choice to follow the spec).

    Endpoints (each under both ``/api/2.1/jobs`` and ``/api/2.2/jobs``)
        ``POST runs/submit`` ``{tasks: [...], run_name?, idempotency_token?, timeout_seconds?, ...}``
        → ``{"run_id"}``. Checked: a JSON object; 1-100 tasks, each an object with a unique
        ``task_key`` (``^[\\w-]{1,100}$``), exactly one ``*_task`` object, ``depends_on`` naming
        tasks of the run; ``idempotency_token`` at most 64 characters. Else 400
        ``INVALID_PARAMETER_VALUE`` (a body that is not JSON: 400 ``MALFORMED_REQUEST``).
        ``POST run-now`` ``{job_id, job_parameters?, notebook_params?, python_params?,
        jar_params?, python_named_params?, idempotency_token?, ...}`` → ``{"run_id",
        "number_in_job"}``; an unknown job → 400 ``INVALID_PARAMETER_VALUE`` "Job <id> does not
        exist." (emulator choice). Parameters are applied to the job's tasks: notebook
        ``base_parameters`` (job_parameters and notebook_params), Python ``parameters``
        (python_params), wheel ``named_parameters``, JAR ``parameters``.
        The same ``idempotency_token`` on either endpoint returns the run it first created
        (never a second run), whatever the body.
        ``GET runs/get?run_id=`` → the ``Run`` (below). ``GET runs/list?active_only=&
        completed_only=&job_id=&run_type=&offset=&limit=&page_token=&expand_tasks=&
        start_time_from=&start_time_to=`` → ``{"runs": [...], "has_more", "next_page_token"?,
        "prev_page_token"?}``, newest first, ``runs`` left out when empty, tasks only with
        ``expand_tasks=true``; ``limit`` 1-25 (0 or absent: 25); both ``active_only`` and
        ``completed_only`` → 400. Active means not TERMINATED, SKIPPED or INTERNAL_ERROR.
        ``POST runs/cancel {run_id}`` → ``{}``: an active run goes ``TERMINATING`` for
        ``cancel_duration_s`` then ``TERMINATED`` with result ``CANCELED`` (termination
        ``USER_CANCELED``, type ``SUCCESS``); a run that has ended, or whose tasks have finished and
        is ``TERMINATING`` on its own, is left alone (a no-op, 200 ``{}``). A task run id cancels its
        run (emulator choice). ``POST runs/cancel-all {job_id?, all_queued_runs?}`` → ``{}``.
        ``GET runs/get-output?run_id=<task run id>`` → ``{"metadata": <task run>, ...output}``: once
        the run ended, a notebook task has ``notebook_output`` (``result``: the JSON text
        ``{"task_key", "notebook_path", "parameters"}``, emulator choice), Python/wheel/JAR/submit
        tasks ``logs`` and ``logs_truncated``, and a failed run ``error`` and ``error_trace``. The id
        of a run with one task stands for its task (emulator choice); of a run with several → 400
        "Retrieving the output of runs with multiple tasks is not supported ..." (documented).
        ``GET jobs/list?limit=&offset=&page_token=&name=&expand_tasks=`` → ``{"jobs", "has_more",
        "next_page_token"?}``; ``GET jobs/get?job_id=`` → the job.
        An unknown run id anywhere → 400 ``INVALID_PARAMETER_VALUE`` "Run <id> does not exist"
        (documented); a missing or non-integer id → 400. Unknown routes → 404 ``ENDPOINT_NOT_FOUND``
        "No API endpoint found".
        ``GET /.well-known/databricks-config`` → ``{"oidc_endpoint", "workspace_id"}`` (read by the
        official client when it starts; shape from databricks-sdk's ``HostMetadata``).

    Runs
        Each run has the newer ``status`` (``state``, ``queue_details`` while queued,
        ``termination_details`` once ended) and the deprecated ``state`` (``life_cycle_state``,
        ``result_state`` only once ended, ``state_message``, ``user_cancelled_or_timedout``,
        ``queue_reason`` while queued), ``tasks`` (each with its own ``run_id`` and the same states),
        ``start_time``/``end_time`` (epoch ms; ``end_time`` 0 until ended),
        ``queue_duration``/``setup_duration``/``execution_duration``/``cleanup_duration`` (ms, phase
        by phase) and ``run_duration`` once ended, ``run_page_url``, ``run_type`` (``SUBMIT_RUN``,
        ``JOB_RUN``), ``trigger`` ``ONE_TIME``. A run goes ``QUEUED`` (if ``queue_s``) → ``PENDING``
        → ``RUNNING`` → ``TERMINATING`` → ``TERMINATED`` / ``SUCCESS``, computed from the clock when
        read (nothing runs in the background).

    Knobs (besides the kit's)
        ``set_state(run_id, life_cycle_state=..., result_state=..., status_state=...,
        termination_code=..., termination_type=..., state_message=..., error=...)`` holds a run in
        any documented state (missing parts are derived: ``WAITING_FOR_RETRY`` ↔ ``WAITING``,
        SKIPPED/INTERNAL_ERROR → ``TERMINATED``, a result's usual termination code); ``strict=False``
        allows undocumented values. A held active run is still cancellable; ``clear_state(run_id)``
        lets it follow its clock again. ``set_output(run_id, task_key, **fields)`` sets what
        ``runs/get-output`` returns for a task. ``runs_created`` counts the runs created (a retried
        submission with the same token adds none); ``run_ids`` lists them; ``task_run_ids(run_id)``
        gives ``{task_key: task run id}``; ``await state_of(run_id)`` reads ``(life_cycle_state,
        result_state)`` as a client would. ``exchanges`` lists every authorised request with the
        answer its handler gave (:class:`Exchange`), for contract checks; ``await
        wait_for_exchanges("POST", "runs/cancel")`` waits until such a request was handled.
    """

    vendor = "databricks"

    def __init__(
        self,
        *,
        token: str | None = None,
        workspace_id: int = 1234567890123456,
        jobs: Sequence[EmulatedJob] | None = None,
        queue_s: float = 0.0,
        pending_s: float | None = None,
        terminating_s: float | None = None,
        cancel_duration_s: float | None = None,
        **options: Any,
    ) -> None:
        self.token = token if token is not None else "dapi" + secrets.token_hex(16)
        if not isinstance(self.token, str) or not self.token:
            raise ConfigurationError("token must be a non-empty str")
        if isinstance(workspace_id, bool) or not isinstance(workspace_id, int) or workspace_id <= 0:
            raise ConfigurationError("workspace_id must be a positive int")
        self.workspace_id = workspace_id
        self.jobs: tuple[EmulatedJob, ...] = tuple(DEFAULT_JOBS if jobs is None else jobs)
        if len({job.job_id for job in self.jobs}) != len(self.jobs):
            raise ConfigurationError("job ids must be unique")
        self.queue_s = duration_option("queue_s", queue_s)
        self._pending_s = None if pending_s is None else duration_option("pending_s", pending_s)
        self._terminating_s = (
            None if terminating_s is None else duration_option("terminating_s", terminating_s)
        )
        self._cancel_s = (
            None if cancel_duration_s is None else duration_option("cancel_duration_s", cancel_duration_s)
        )
        self._runs: dict[int, RunRecord] = {}
        self._tasks: dict[int, tuple[RunRecord, TaskRecord]] = {}
        self._tokens: dict[str, int] = {}
        self._next_id = FIRST_ID
        #: How many runs were created.
        self.runs_created = 0
        #: Every authorised request the API handled, with its answer (capped like the request log).
        self.exchanges: list[Exchange] = []
        self._handled: anyio.Event | None = None
        super().__init__(**options)

    # -- what clients need ----------------------------------------------------------------------

    @property
    def credentials(self) -> dict[str, str]:
        """``{"host", "token"}``: the arguments of our backend (and of ``WorkspaceClient``)."""
        return {"host": self.base_url, "token": self.token}

    @property
    def env(self) -> dict[str, str]:
        """``DATABRICKS_HOST`` and ``DATABRICKS_TOKEN``, as Databricks' own tools read them."""
        return {"DATABRICKS_HOST": self.base_url, "DATABRICKS_TOKEN": self.token}

    def secrets(self) -> tuple[str, ...]:
        return (self.token,)

    @property
    def run_ids(self) -> list[int]:
        """Every run id handed out, oldest first."""
        return list(self._runs)

    def task_run_ids(self, run_id: int) -> dict[str, int]:
        """``{task_key: task run id}`` of a run."""
        return {task.key: task.run_id for task in self._run(run_id).tasks}

    # -- kit hooks ------------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        app.middlewares.append(self._record)  # inside the kit's: sees what the handlers answer
        router = app.router
        router.add_get("/.well-known/databricks-config", self._wrap(self._host_metadata))
        for version in API_VERSIONS:
            base = f"/api/{version}/jobs"
            router.add_post(f"{base}/runs/submit", self._wrap(self._submit))
            router.add_post(f"{base}/run-now", self._wrap(self._run_now))
            router.add_get(f"{base}/runs/get", self._wrap(self._get))
            router.add_get(f"{base}/runs/list", self._wrap(self._list_runs))
            router.add_post(f"{base}/runs/cancel", self._wrap(self._cancel))
            router.add_post(f"{base}/runs/cancel-all", self._wrap(self._cancel_all))
            router.add_get(f"{base}/runs/get-output", self._wrap(self._get_output))
            router.add_get(f"{base}/list", self._wrap(self._list_jobs))
            router.add_get(f"{base}/get", self._wrap(self._get_job))

    def is_authorized(self, request: web.Request) -> bool:
        if request.path == "/.well-known/databricks-config":
            return True
        sent = request.headers.get("Authorization", "")
        scheme, _, value = sent.partition(" ")
        if scheme.lower() != "bearer" or not value:
            return False
        return same_secret(value.strip(), self.token)

    def unauthorized_response(self, request: web.Request) -> web.StreamResponse:
        return self._error(401, "PERMISSION_DENIED", "Unauthorized access.")

    def error_response(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        if status == 404:
            message = "No API endpoint found"
        return self._error(status, ERROR_CODES.get(status, "UNKNOWN"), message, headers=headers)

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        raw = await request.read()
        answer = response.body if isinstance(response, web.Response) else None
        self.exchanges.append(
            Exchange(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                body=self._redact(json_or_none(raw)),
                status=response.status,
                answer=self._redact(json_or_none(answer if isinstance(answer, bytes) else b"")),
            )
        )
        if len(self.exchanges) > self.max_log:
            del self.exchanges[: len(self.exchanges) - self.max_log]
        handled, self._handled = self._handled, None
        if handled is not None:
            handled.set()
        return response

    async def wait_for_exchanges(self, method: str, endpoint: str, *, count: int = 1) -> None:
        """Wait until :attr:`exchanges` holds ``count`` requests of ``method`` to ``endpoint`` (e.g.
        ``"runs/cancel"``, any API version). No deadline here: put one around the call."""

        def seen() -> int:
            suffix = f"/jobs/{endpoint}"
            return sum(1 for e in self.exchanges if e.method == method.upper() and e.path.endswith(suffix))

        while seen() < count:
            if self._handled is None:
                self._handled = anyio.Event()
            await self._handled.wait()

    @staticmethod
    def _error(
        status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        return web.json_response({"error_code": code, "message": message}, status=status, headers=headers)

    def _wrap(
        self, handler: Callable[[web.Request], Awaitable[Any]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return web.json_response(await handler(request))
            except Refused as exc:
                return self._error(exc.status, exc.code, exc.message)

        return wrapped

    # -- knobs ----------------------------------------------------------------------------------

    def set_state(
        self,
        run_id: int,
        *,
        life_cycle_state: str | None = None,
        result_state: str | None = None,
        status_state: str | None = None,
        termination_code: str | None = None,
        termination_type: str | None = None,
        state_message: str = "",
        error: str | None = None,
        strict: bool = True,
    ) -> None:
        """Hold the run in this state until cancelled (if active) or :meth:`clear_state`.

        Give ``life_cycle_state`` or ``status_state`` (the other is derived); ``result_state`` and the
        termination code/type apply to ended runs (defaults derived from each other). ``error`` is
        what ``runs/get-output`` reports for its tasks. ``strict=False`` accepts undocumented values.
        """
        run = self._run(run_id)
        life = life_cycle_state
        status = status_state
        if life is None and status is None:
            raise ConfigurationError("give life_cycle_state or status_state")
        if life is None:
            assert status is not None
            life = LIFE_OF_STATUS.get(status, status)
        if status is None:
            status = STATUS_OF_LIFE.get(life, life)
        code, kind = termination_code, termination_type
        ended = life in TERMINAL_LIFE or status == "TERMINATED"
        if ended:
            if code is None:
                code = (
                    "SKIPPED" if life == "SKIPPED" else "INTERNAL_ERROR" if life == "INTERNAL_ERROR" else None
                )
                code = code or CODE_OF_RESULT.get(result_state or "", None)
            if kind is None and code is not None:
                kind = TYPE_OF_CODE.get(code, "CLIENT_ERROR")
        if strict:
            for name, value, allowed in (
                ("life_cycle_state", life, LIFECYCLE_STATES),
                ("status_state", status, STATUS_STATES),
                ("result_state", result_state, RESULT_STATES),
                ("termination_code", code, TERMINATION_CODES),
                ("termination_type", kind, TERMINATION_TYPES),
            ):
                if value is not None and value not in allowed:
                    raise ConfigurationError(
                        f"{name} {value!r} is not documented; one of {', '.join(allowed)} (or strict=False)"
                    )
        run.forced = Forced(
            life=life,
            status=status,
            result=result_state if ended else None,
            code=code if ended else None,
            type=kind if ended else None,
            message=state_message,
            since=self.clock(),
            error=error,
        )

    def clear_state(self, run_id: int) -> None:
        """Let the run follow its own clock again."""
        self._run(run_id).forced = None

    def set_output(self, run_id: int, task_key: str, **fields: Any) -> None:
        """What ``runs/get-output`` reports for the task once the run ended (e.g. ``notebook_output=
        {"result": "42"}``, ``logs="..."``, ``error="..."``), instead of the emulated output."""
        for task in self._run(run_id).tasks:
            if task.key == task_key:
                task.output = dict(fields)
                return
        raise KeyError(f"run {run_id} has no task {task_key!r}")

    async def state_of(self, run_id: int) -> tuple[str, str | None]:
        """``(life_cycle_state, result_state)`` of the run now."""
        view = self._view(self._run(run_id))
        return view.life, view.result

    # -- run state ------------------------------------------------------------------------------

    def _run(self, run_id: int) -> RunRecord:
        run = self._runs.get(run_id)
        if run is None:
            raise KeyError(f"the Databricks emulator has no run {run_id}")
        return run

    def _phases(self) -> tuple[float, float, float, float]:
        total = self.job_duration_s
        pending = self._pending_s if self._pending_s is not None else 0.1 * total
        terminating = self._terminating_s if self._terminating_s is not None else 0.1 * total
        cancel = self._cancel_s if self._cancel_s is not None else 0.1 * total
        running = max(total - pending - terminating, 0.0)
        return pending, running, terminating, cancel

    def _new_id(self) -> int:
        value = self._next_id
        self._next_id += 1
        return value

    def _view(self, run: RunRecord, now: float | None = None) -> RunView:
        now = self.clock() if now is None else now
        forced = run.forced
        if forced is not None:
            ended = forced.since if forced.life in TERMINAL_LIFE or forced.status == "TERMINATED" else None
            return RunView(
                life=forced.life,
                status=forced.status,
                result=forced.result,
                code=forced.code,
                type=forced.type,
                message=forced.message,
                ended=ended,
                queued=forced.life == "QUEUED",
                error=forced.error,
            )
        if run.cancelled_at is not None:
            done = run.cancelled_at + run.cancel_s
            if now < done:
                return RunView("TERMINATING", "TERMINATING", message="Run cancellation requested.")
            return RunView(
                "TERMINATED",
                "TERMINATED",
                result="CANCELED",
                code="USER_CANCELED",
                type="SUCCESS",
                message="Run was cancelled by a user.",
                ended=done,
                cancelled=True,
            )
        elapsed = now - run.t0
        queued_until = run.queue_s
        pending_until = queued_until + run.pending_s
        running_until = pending_until + run.running_s
        done_at = running_until + run.terminating_s
        if elapsed < queued_until:
            return RunView("QUEUED", "QUEUED", message="Waiting for a concurrency slot.", queued=True)
        if elapsed < pending_until:
            return RunView("PENDING", "PENDING", message="Waiting for cluster")
        if elapsed < running_until:
            return RunView("RUNNING", "RUNNING", message="In run")
        if elapsed < done_at:
            return RunView("TERMINATING", "TERMINATING", message="Cleaning up")
        return RunView(
            "TERMINATED",
            "TERMINATED",
            result="SUCCESS",
            code="SUCCESS",
            type="SUCCESS",
            message="",
            ended=run.t0 + done_at,
        )

    def _durations(self, run: RunRecord, view: RunView, now: float) -> dict[str, int]:
        """Milliseconds spent in each phase so far (cut where a cancel or a held state began)."""
        cut = now
        if run.forced is not None:
            cut = min(cut, run.forced.since)
        if run.cancelled_at is not None:
            cut = min(cut, run.cancelled_at)
        elapsed = max(cut - run.t0, 0.0)

        def part(start: float, length: float) -> int:
            return round(max(min(elapsed - start, length), 0.0) * 1000)

        queue = part(0.0, run.queue_s)
        setup = part(run.queue_s, run.pending_s)
        execution = part(run.queue_s + run.pending_s, run.running_s)
        cleanup = part(run.queue_s + run.pending_s + run.running_s, run.terminating_s)
        if run.cancelled_at is not None and run.forced is None:
            cleanup = round(max(min(now - run.cancelled_at, run.cancel_s), 0.0) * 1000)
        return {
            "queue_duration": queue,
            "setup_duration": setup,
            "execution_duration": execution,
            "cleanup_duration": cleanup,
        }

    def _state_json(self, view: RunView) -> dict[str, Any]:
        state: dict[str, Any] = {
            "life_cycle_state": view.life,
            "state_message": view.message,
            "user_cancelled_or_timedout": view.cancelled or view.result in ("CANCELED", "TIMEDOUT"),
        }
        if view.result is not None and view.terminal:
            state["result_state"] = view.result
        if view.queued:
            state["queue_reason"] = "Queued due to reaching maximum concurrent runs of the job."
        return state

    def _status_json(self, view: RunView) -> dict[str, Any]:
        status: dict[str, Any] = {"state": view.status}
        if view.queued:
            status["queue_details"] = {
                "code": "MAX_CONCURRENT_RUNS_REACHED",
                "message": "Queued due to reaching maximum concurrent runs of the job.",
            }
        if view.status == "TERMINATED" or view.terminal:
            details = {"code": view.code, "type": view.type, "message": view.message}
            status["termination_details"] = {k: v for k, v in details.items() if v is not None}
        return status

    def _page_url(self, run: RunRecord, run_id: int) -> str:
        return f"{self.base_url}/?o={self.workspace_id}#job/{run.job_id or run.run_id}/run/{run_id}"

    def _timing_json(self, run: RunRecord, view: RunView, now: float) -> dict[str, Any]:
        timing: dict[str, Any] = {"start_time": run.start_ms, **self._durations(run, view, now)}
        if view.ended is not None:
            ended_ms = run.start_ms + round(max(view.ended - run.t0, 0.0) * 1000)
            timing["end_time"] = ended_ms
            timing["run_duration"] = ended_ms - run.start_ms
        else:
            timing["end_time"] = 0
        return timing

    def _task_json(self, run: RunRecord, task: TaskRecord, view: RunView, now: float) -> dict[str, Any]:
        body: dict[str, Any] = {
            key: value
            for key, value in task.settings.items()
            if key not in ("run_id", "state", "status", "start_time", "end_time")
        }
        body.update(
            {
                "run_id": task.run_id,
                "task_key": task.key,
                "state": self._state_json(view),
                "status": self._status_json(view),
                "run_page_url": self._page_url(run, task.run_id),
                "attempt_number": 0,
                **self._timing_json(run, view, now),
            }
        )
        if view.life not in ("QUEUED", "PENDING", "BLOCKED") or view.terminal:
            cluster = task.settings.get("existing_cluster_id")
            body["cluster_instance"] = {
                "cluster_id": cluster if isinstance(cluster, str) else f"emulated-{task.run_id}",
                "spark_context_id": str(4348585301701786933 + task.run_id),
            }
        return body

    def _run_json(self, run: RunRecord, *, tasks: bool = True, now: float | None = None) -> dict[str, Any]:
        now = self.clock() if now is None else now
        view = self._view(run, now)
        body: dict[str, Any] = {
            "run_id": run.run_id,
            "number_in_job": run.run_id,
            "original_attempt_run_id": run.run_id,
            "creator_user_name": USER,
            "run_name": run.run_name,
            "run_type": run.run_type,
            "trigger": "ONE_TIME",
            "attempt_number": 0,
            "state": self._state_json(view),
            "status": self._status_json(view),
            "run_page_url": self._page_url(run, run.run_id),
            **self._timing_json(run, view, now),
        }
        if run.job_id is not None:
            body["job_id"] = run.job_id
        if run.overriding:
            body["overriding_parameters"] = dict(run.overriding)
        if run.job_parameters:
            body["job_parameters"] = [dict(p) for p in run.job_parameters]
        if tasks:
            body["tasks"] = [self._task_json(run, task, view, now) for task in run.tasks]
        return body

    def _task_output(self, run: RunRecord, task: TaskRecord) -> dict[str, Any]:
        now = self.clock()
        view = self._view(run, now)
        metadata = self._task_json(run, task, view, now)
        metadata["run_name"] = run.run_name
        if run.job_id is not None:
            metadata["job_id"] = run.job_id
        answer: dict[str, Any] = {"metadata": metadata}
        if not view.terminal:
            return answer
        if task.output is not None:
            answer.update(task.output)
            return answer
        body = task.settings.get(task.kind)
        settings = body if isinstance(body, dict) else {}
        succeeded = view.result in ("SUCCESS", "SUCCESS_WITH_FAILURES")
        if task.kind == "notebook_task":
            result = json.dumps(
                {
                    "task_key": task.key,
                    "notebook_path": settings.get("notebook_path"),
                    "parameters": settings.get("base_parameters", {}),
                },
                sort_keys=True,
            )
            answer["notebook_output"] = {"result": result, "truncated": False} if succeeded else {}
        elif task.kind in ("spark_python_task", "python_wheel_task", "spark_jar_task", "spark_submit_task"):
            what = (
                settings.get("python_file")
                or settings.get("entry_point")
                or settings.get("main_class_name")
                or task.kind
            )
            params = settings.get("parameters") or settings.get("named_parameters") or []
            answer["logs"] = f"[emulated {task.kind}] {task.key}: {what} {json.dumps(params)}\n"
            answer["logs_truncated"] = False
        if not succeeded and not view.cancelled and view.result not in ("CANCELED", None):
            message = view.error or view.message or f"The run ended {view.result}."
            answer["error"] = message
            answer["error_trace"] = f"emulated failure of task {task.key}: {message}"
        elif view.error is not None:
            answer["error"] = view.error
        return answer

    # -- request helpers ------------------------------------------------------------------------

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise Refused(
                "Invalid JSON given in the body of the request - expected a map", code="MALFORMED_REQUEST"
            ) from None
        if not isinstance(body, dict):
            raise Refused(
                "Invalid JSON given in the body of the request - expected a map", code="MALFORMED_REQUEST"
            )
        return body

    def _run_by_id(self, value: Any, *, tasks_too: bool = False) -> tuple[RunRecord, TaskRecord | None]:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value)
            elif value is None:
                raise Refused("Missing required field: run_id")
            else:
                raise Refused(f"Invalid value for parameter run_id: {value!r}")
        run = self._runs.get(value)
        if run is not None:
            return run, None
        if tasks_too and value in self._tasks:
            parent, task = self._tasks[value]
            return parent, task
        raise Refused(f"Run {value} does not exist.")

    def _job(self, value: Any) -> EmulatedJob:
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise Refused("Missing required field: job_id" if value is None else "Invalid value for job_id")
        for job in self.jobs:
            if job.job_id == value:
                return job
        raise Refused(f"Job {value} does not exist.")

    def _check_token(self, body: Mapping[str, Any]) -> str | None:
        token = body.get("idempotency_token")
        if token is None:
            return None
        if not isinstance(token, str) or not token:
            raise Refused("idempotency_token must be a non-empty string")
        if len(token) > MAX_TOKEN:
            raise Refused(f"idempotency_token must be at most {MAX_TOKEN} characters")
        return token

    @staticmethod
    def _check_tasks(tasks: Any) -> list[dict[str, Any]]:
        if not isinstance(tasks, list) or not tasks:
            raise Refused("A run needs at least one task in 'tasks'")
        if len(tasks) > MAX_TASKS:
            raise Refused(f"A run has at most {MAX_TASKS} tasks")
        keys: set[str] = set()
        for index, task in enumerate(tasks):
            if not isinstance(task, dict):
                raise Refused(f"tasks[{index}] must be an object")
            key = task.get("task_key")
            if (
                not isinstance(key, str)
                or not 1 <= len(key) <= 100
                or not all(ch.isalnum() or ch in "_-" for ch in key)
            ):
                raise Refused(f"Invalid task_key at tasks[{index}]: {key!r}")
            if key in keys:
                raise Refused(f"Task key {key} is used by more than one task")
            keys.add(key)
            kinds = [name for name in task if name.endswith("_task") and isinstance(task[name], dict)]
            if len(kinds) != 1:
                raise Refused(f"Task {key} must specify exactly one task type")
        for task in tasks:
            for dep in task.get("depends_on") or []:
                if not isinstance(dep, dict) or dep.get("task_key") not in keys:
                    raise Refused(f"Task {task['task_key']} depends on an unknown task: {dep!r}")
        return tasks

    def _create(
        self,
        *,
        run_type: str,
        run_name: str,
        job_id: int | None,
        tasks: Sequence[Mapping[str, Any]],
        token: str | None,
        overriding: Mapping[str, Any] | None = None,
        job_parameters: Sequence[Mapping[str, str]] = (),
    ) -> RunRecord:
        pending, running, terminating, cancel = self._phases()
        run = RunRecord(
            run_id=self._new_id(),
            run_type=run_type,
            run_name=run_name,
            job_id=job_id,
            tasks=[],
            t0=self.clock(),
            start_ms=int(time.time() * 1000),
            queue_s=self.queue_s,
            pending_s=pending,
            running_s=running,
            terminating_s=terminating,
            cancel_s=cancel,
            token=token,
            overriding=dict(overriding or {}),
            job_parameters=[dict(p) for p in job_parameters],
        )
        for spec in tasks:
            settings = json.loads(json.dumps(spec))
            kind = next(
                name for name in settings if name.endswith("_task") and isinstance(settings[name], dict)
            )
            task = TaskRecord(run_id=self._new_id(), key=settings["task_key"], kind=kind, settings=settings)
            run.tasks.append(task)
            self._tasks[task.run_id] = (run, task)
        self._runs[run.run_id] = run
        if token is not None:
            self._tokens[token] = run.run_id
        self.runs_created += 1
        return run

    # -- endpoints ------------------------------------------------------------------------------

    async def _host_metadata(self, request: web.Request) -> dict[str, Any]:
        return {"oidc_endpoint": f"{self.base_url}/oidc", "workspace_id": str(self.workspace_id)}

    async def _submit(self, request: web.Request) -> dict[str, Any]:
        body = await self._body(request)
        token = self._check_token(body)
        if token is not None and token in self._tokens:
            return {"run_id": self._tokens[token]}
        tasks = self._check_tasks(body.get("tasks"))
        name = body.get("run_name", "Untitled")
        if not isinstance(name, str):
            raise Refused("run_name must be a string")
        timeout = body.get("timeout_seconds")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0):
            raise Refused("timeout_seconds must be a non-negative integer")
        run = self._create(run_type="SUBMIT_RUN", run_name=name, job_id=None, tasks=tasks, token=token)
        return {"run_id": run.run_id}

    async def _run_now(self, request: web.Request) -> dict[str, Any]:
        body = await self._body(request)
        token = self._check_token(body)
        if token is not None and token in self._tokens:
            run_id = self._tokens[token]
            return {"run_id": run_id, "number_in_job": run_id}
        job = self._job(body.get("job_id"))
        job_params = body.get("job_parameters") or {}
        if not isinstance(job_params, dict) or not all(isinstance(v, str) for v in job_params.values()):
            raise Refused("job_parameters must map parameter names to strings")
        effective = {p["name"]: p.get("default", "") for p in job.parameters}
        effective.update(job_params)
        overriding: dict[str, Any] = {}
        tasks = [json.loads(json.dumps(task)) for task in job.tasks]
        for name, kind, target in (
            ("notebook_params", "notebook_task", "base_parameters"),
            ("python_params", "spark_python_task", "parameters"),
            ("jar_params", "spark_jar_task", "parameters"),
            ("python_named_params", "python_wheel_task", "named_parameters"),
            ("spark_submit_params", "spark_submit_task", "parameters"),
        ):
            value = body.get(name)
            if value is None:
                continue
            overriding[name] = value
            for task in tasks:
                if kind in task:
                    if isinstance(value, dict):
                        task[kind][target] = {**task[kind].get(target, {}), **value}
                    else:
                        task[kind][target] = value
        if job_params:
            for task in tasks:
                if "notebook_task" in task:
                    task["notebook_task"]["base_parameters"] = {
                        **task["notebook_task"].get("base_parameters", {}),
                        **job_params,
                    }
        run = self._create(
            run_type="JOB_RUN",
            run_name=job.name,
            job_id=job.job_id,
            tasks=tasks,
            token=token,
            overriding=overriding,
            job_parameters=[{"name": k, "value": v} for k, v in effective.items()],
        )
        return {"run_id": run.run_id, "number_in_job": run.run_id}

    async def _get(self, request: web.Request) -> dict[str, Any]:
        run, _ = self._run_by_id(request.query.get("run_id"))
        return self._run_json(run)

    async def _list_runs(self, request: web.Request) -> dict[str, Any]:
        query = request.query
        active = parse_bool("active_only", query.get("active_only"))
        completed = parse_bool("completed_only", query.get("completed_only"))
        if active and completed:
            raise Refused("active_only and completed_only cannot both be true")
        expand = parse_bool("expand_tasks", query.get("expand_tasks"))
        limit = parse_int("limit", query.get("limit"), default=PAGE_MAX, minimum=0) or PAGE_MAX
        if limit > PAGE_MAX:
            raise Refused(f"Invalid value for parameter limit: must be at most {PAGE_MAX}")
        token = query.get("page_token")
        offset = offset_of(token) if token else parse_int("offset", query.get("offset"), default=0, minimum=0)
        job_id = query.get("job_id")
        job_filter = None if job_id is None else parse_int("job_id", job_id)
        run_type = query.get("run_type")
        if run_type is not None and run_type not in ("JOB_RUN", "WORKFLOW_RUN", "SUBMIT_RUN"):
            raise Refused(f"Invalid value for parameter run_type: {run_type!r}")
        low = query.get("start_time_from")
        high = query.get("start_time_to")
        low_ms = None if low is None else parse_int("start_time_from", low)
        high_ms = None if high is None else parse_int("start_time_to", high)
        now = self.clock()
        chosen: list[RunRecord] = []
        for run in sorted(self._runs.values(), key=lambda r: (r.start_ms, r.run_id), reverse=True):
            if active or completed:  # a run's view is worked out only when a filter needs it
                terminal = self._view(run, now).terminal
                if (active and terminal) or (completed and not terminal):
                    continue
            if job_filter is not None and run.job_id != job_filter:
                continue
            if run_type is not None and run.run_type != run_type:
                continue
            if (low_ms is not None and run.start_ms < low_ms) or (
                high_ms is not None and run.start_ms > high_ms
            ):
                continue
            chosen.append(run)
        page = chosen[offset : offset + limit]
        more = offset + limit < len(chosen)
        answer: dict[str, Any] = {"has_more": more}
        if page:
            answer["runs"] = [self._run_json(run, tasks=expand, now=now) for run in page]
        if more:
            answer["next_page_token"] = page_token(offset + limit)
        if offset > 0:
            answer["prev_page_token"] = page_token(max(offset - limit, 0))
        return answer

    def _cancel_run(self, run: RunRecord) -> None:
        view = self._view(run)
        if view.terminal or (view.life == "TERMINATING" and run.forced is None):
            return  # ended, being cancelled, or finished and cleaning up: nothing to cancel
        run.forced = None
        run.cancelled_at = self.clock()

    async def _cancel(self, request: web.Request) -> dict[str, Any]:
        body = await self._body(request)
        run, _ = self._run_by_id(body.get("run_id"), tasks_too=True)
        self._cancel_run(run)
        return {}

    async def _cancel_all(self, request: web.Request) -> dict[str, Any]:
        body = await self._body(request)
        job_id = body.get("job_id")
        queued_only = body.get("all_queued_runs") is True
        if job_id is None and not queued_only:
            raise Refused("Missing required field: job_id")
        job = None if job_id is None else self._job(job_id)
        for run in list(self._runs.values()):
            if job is not None and run.job_id != job.job_id:
                continue
            if queued_only and self._view(run).life != "QUEUED":
                continue
            self._cancel_run(run)
        return {}

    async def _get_output(self, request: web.Request) -> dict[str, Any]:
        run, task = self._run_by_id(request.query.get("run_id"), tasks_too=True)
        if task is None:
            if len(run.tasks) != 1:
                raise Refused(
                    "Retrieving the output of runs with multiple tasks is not supported. You must "
                    "retrieve the output of each individual task run instead."
                )
            task = run.tasks[0]
        return self._task_output(run, task)

    def _job_json(self, job: EmulatedJob, *, tasks: bool) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "name": job.name,
            "max_concurrent_runs": 1,
            "format": "MULTI_TASK",
            "timeout_seconds": 0,
        }
        if tasks:
            settings["tasks"] = [json.loads(json.dumps(task)) for task in job.tasks]
        if job.parameters:
            settings["parameters"] = [dict(p) for p in job.parameters]
        return {
            "job_id": job.job_id,
            "creator_user_name": USER,
            "run_as_user_name": USER,
            "settings": settings,
            "created_time": job.created_time,
        }

    async def _list_jobs(self, request: web.Request) -> dict[str, Any]:
        query = request.query
        limit = parse_int("limit", query.get("limit"), default=20, minimum=0) or 20
        if limit > JOBS_PAGE_MAX:
            raise Refused(f"Invalid value for parameter limit: must be at most {JOBS_PAGE_MAX}")
        token = query.get("page_token")
        offset = offset_of(token) if token else parse_int("offset", query.get("offset"), default=0, minimum=0)
        expand = parse_bool("expand_tasks", query.get("expand_tasks"))
        name = query.get("name")
        jobs = [job for job in self.jobs if name is None or job.name.lower() == name.lower()]
        page = jobs[offset : offset + limit]
        more = offset + limit < len(jobs)
        answer: dict[str, Any] = {"has_more": more}
        if page:
            answer["jobs"] = [self._job_json(job, tasks=expand) for job in page]
        if more:
            answer["next_page_token"] = page_token(offset + limit)
        return answer

    async def _get_job(self, request: web.Request) -> dict[str, Any]:
        return self._job_json(self._job(request.query.get("job_id")), tasks=True)
