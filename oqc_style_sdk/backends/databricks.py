"""Azure Databricks: one-time runs (``runs/submit``) and runs of existing jobs (``run-now``), Jobs API 2.2.

Wire facts (``specs/VENDORS.md`` §3):

- ``https://adb-<workspace-id>.<n>.azuredatabricks.net`` + ``/api/2.2/jobs/...``; every request carries
  ``Authorization: Bearer <token>`` (a personal access token or a Microsoft Entra token).
- ``POST runs/submit`` ``{run_name?, tasks: [...], idempotency_token?, ...}`` → ``{"run_id"}``;
  ``POST run-now`` ``{job_id, job_parameters?, notebook_params?, ..., idempotency_token?}`` →
  ``{"run_id", "number_in_job"}``. A second request with the same ``idempotency_token`` (≤ 64
  characters) returns the existing run instead of starting another.
- ``GET runs/get?run_id=`` → the ``Run``: the newer ``status`` object (``state``,
  ``termination_details``, ``queue_details``) and the deprecated ``state`` object
  (``life_cycle_state``, ``result_state`` — absent until the run ends —, ``state_message``).
- ``GET runs/list?active_only=true&limit=25&page_token=`` pages through the workspace's active runs
  (``runs`` is left out when empty). ``POST runs/cancel {run_id}`` → ``{}``: asynchronous, and a no-op
  on a run that already ended. ``GET runs/get-output?run_id=<task run id>`` → the task's output.
- Errors are ``{"error_code", "message"}``. An unknown run id is **400** ``INVALID_PARAMETER_VALUE``
  "Run <id> does not exist", not 404. 429/503 carry ``Retry-After`` (``_http`` obeys it).

How this adapter uses them

- A *program* is either a one-time run spec (a mapping with ``tasks``) sent to ``runs/submit``, or
  ``{"job_id": N, ...}`` (with ``job_parameters``, ``notebook_params`` ...) sent to ``run-now``. A
  JSON object given as text is accepted too (what ``oqcs run spec.json`` passes). ``config`` holds
  extra top-level request fields merged over the program (e.g. one job, many ``job_parameters``
  in a composite). Shapes are checked by :meth:`DatabricksBackend.validate` without any I/O.
- The only target is the workspace (``"workspace"``): compute is chosen per task in the spec
  (``existing_cluster_id``, ``new_cluster``, ``job_cluster_key``, ``environment_key``).
- The idempotency key is the run's ``idempotency_token``, made before the first submission and saved
  with the job; both POSTs are sent with it and as idempotent, so a submission whose answer was lost
  is safely sent again and never starts a second run.
- Status goes through the one table :data:`DATABRICKS_STATUS` (see :func:`observe_run`).
  :meth:`DatabricksBackend.statuses` reads many runs with ``runs/list?active_only=true`` (one request
  per 25 active runs of the workspace) and a ``runs/get`` only for the runs that left the active
  list — to learn how they ended — so N waiting runs cost about one request per tick.
- The result of a completed run is ``{task_key: {"result", "logs", "error", "run_id",
  "result_state", ...}}`` from ``runs/get-output`` of each task run (``result`` is the notebook's
  ``dbutils.notebook.exit`` value).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

import anyio

from .._http import HttpClient, Response, RetryPolicy, Secret
from ..exceptions import (
    AuthenticationError,
    BackendError,
    ConfigurationError,
    JobValidationError,
    NotFoundError,
    ProtocolError,
    RateLimitedError,
    UnknownTargetError,
)
from ..state import JobState
from . import _databricks_runs
from ._http_backend import HttpBackend
from .base import Diagnostics, FoundRun, Observation, RunQuery, RunRef, RunSpec

__all__ = [
    "API_PREFIX",
    "DATABRICKS_STATUS",
    "LIFECYCLE_STATES",
    "RESULT_STATES",
    "STATUS_STATES",
    "TERMINATION_CODES",
    "WORKSPACE_TARGET",
    "DatabricksBackend",
    "observe_run",
]

logger = logging.getLogger("oqc_style_sdk.backends.databricks")

#: The Jobs API version this adapter speaks (databricks-sdk 0.162.0 uses 2.2).
API_PREFIX: Final = "/api/2.2/jobs"
#: The one target: the workspace the host names.
WORKSPACE_TARGET: Final = "workspace"
#: ``idempotency_token`` is at most this long.
MAX_IDEMPOTENCY_TOKEN: Final = 64
#: ``runs/list`` returns at most this many runs per page.
LIST_PAGE_SIZE: Final = 25
#: A run spec has at most this many tasks.
MAX_TASKS: Final = 100
#: How many ``runs/get`` / ``runs/get-output`` requests of one call are in flight at once.
READ_CONCURRENCY: Final = 8
#: How many ended runs' ``Run`` bodies are kept for :meth:`DatabricksBackend.result` and diagnostics.
_ENDED_CACHE: Final = 256

#: ``state.life_cycle_state`` (deprecated field), every documented value.
LIFECYCLE_STATES: Final = (
    "QUEUED",
    "PENDING",
    "RUNNING",
    "TERMINATING",
    "TERMINATED",
    "SKIPPED",
    "INTERNAL_ERROR",
    "BLOCKED",
    "WAITING_FOR_RETRY",
)
#: ``status.state`` (the newer field), every documented value.
STATUS_STATES: Final = ("BLOCKED", "PENDING", "QUEUED", "RUNNING", "TERMINATED", "TERMINATING", "WAITING")
#: ``state.result_state``, present only once the run has ended.
RESULT_STATES: Final = (
    "SUCCESS",
    "FAILED",
    "TIMEDOUT",
    "CANCELED",
    "MAXIMUM_CONCURRENT_RUNS_REACHED",
    "EXCLUDED",
    "SUCCESS_WITH_FAILURES",
    "UPSTREAM_FAILED",
    "UPSTREAM_CANCELED",
    "DISABLED",
)
#: ``status.termination_details.code`` ("additional codes might be introduced").
TERMINATION_CODES: Final = (
    "SUCCESS",
    "SUCCESS_WITH_FAILURES",
    "USER_CANCELED",
    "CANCELED",
    "SKIPPED",
    "INTERNAL_ERROR",
    "DRIVER_ERROR",
    "CLUSTER_ERROR",
    "REPOSITORY_CHECKOUT_FAILED",
    "INVALID_CLUSTER_REQUEST",
    "WORKSPACE_RUN_LIMIT_EXCEEDED",
    "FEATURE_DISABLED",
    "CLUSTER_REQUEST_LIMIT_EXCEEDED",
    "STORAGE_ACCESS_ERROR",
    "RUN_EXECUTION_ERROR",
    "UNAUTHORIZED_ERROR",
    "LIBRARY_INSTALLATION_ERROR",
    "MAX_CONCURRENT_RUNS_EXCEEDED",
    "MAX_SPARK_CONTEXTS_EXCEEDED",
    "RESOURCE_NOT_FOUND",
    "INVALID_RUN_CONFIGURATION",
    "CLOUD_FAILURE",
    "MAX_JOB_QUEUE_SIZE_EXCEEDED",
    "DISABLED",
    "BREAKING_CHANGE",
    "CLUSTER_TERMINATED_BY_USER",
    "BUDGET_POLICY_LIMIT_EXCEEDED",
)
#: ``status.termination_details.type``: used only when the code is undocumented (an error type → FAILED).
_ERROR_TERMINATION_TYPES: Final = frozenset({"INTERNAL_ERROR", "CLIENT_ERROR", "CLOUD_FAILURE"})

_S, _R, _C, _F, _X = (
    JobState.SUBMITTED,
    JobState.RUNNING,
    JobState.COMPLETED,
    JobState.FAILED,
    JobState.CANCELLED,
)

#: The one status table: every documented value of the four fields that describe a run, mapped
#: once. Where the run is (``status.state``, ``state.life_cycle_state``) maps to an active state, or
#: to None for ``TERMINATED`` ("ended: the outcome decides"), or to FAILED for the life-cycle states
#: that end a run by themselves. How an ended run ended (``state.result_state``,
#: ``status.termination_details.code``) maps to a terminal state.
#:
#: Policy: a run stopped because a person asked for it (a user cancel, an upstream cancel, a job
#: disabled by its user) is CANCELLED; a run that did not complete for any other reason (failures,
#: timeouts, the platform cancelling it, being skipped behind another run, concurrency or queue
#: limits, unmet conditions) is FAILED with the vendor's value as its code. The same name can mean
#: different things in two fields: result_state ``CANCELED`` is "cancelled at user request", while
#: termination code ``CANCELED`` is "cancelled by the platform, e.g. the maximum duration was
#: exceeded" — hence one table with a column per field rather than one flat list of names.
DATABRICKS_STATUS: Final[Mapping[str, Mapping[str, JobState | None]]] = MappingProxyType(
    {
        "status.state": MappingProxyType(
            {
                "QUEUED": _S,  # waiting for a concurrency slot
                "PENDING": _S,  # compute being prepared
                "BLOCKED": _S,  # waiting on an upstream dependency
                "WAITING": _S,  # a failed attempt waits to be retried
                "RUNNING": _R,
                "TERMINATING": _R,  # done or being cancelled, compute being cleaned up: still active
                "TERMINATED": None,
            }
        ),
        "state.life_cycle_state": MappingProxyType(
            {
                "QUEUED": _S,
                "PENDING": _S,
                "BLOCKED": _S,
                "WAITING_FOR_RETRY": _S,
                "RUNNING": _R,
                "TERMINATING": _R,
                "TERMINATED": None,
                "SKIPPED": _F,  # aborted because a previous run of the same job was still active
                "INTERNAL_ERROR": _F,  # a failure of the Jobs service
            }
        ),
        "state.result_state": MappingProxyType(
            {
                "SUCCESS": _C,
                "SUCCESS_WITH_FAILURES": _C,  # leaf tasks succeeded; failed tasks show in the result
                "FAILED": _F,
                "TIMEDOUT": _F,
                "CANCELED": _X,  # "canceled at user request"
                "MAXIMUM_CONCURRENT_RUNS_REACHED": _F,
                "EXCLUDED": _F,  # skipped: its conditions were not met
                "UPSTREAM_FAILED": _F,
                "UPSTREAM_CANCELED": _X,
                "DISABLED": _X,  # skipped: disabled by its user
            }
        ),
        "termination_details.code": MappingProxyType(
            {
                "SUCCESS": _C,
                "SUCCESS_WITH_FAILURES": _C,
                "USER_CANCELED": _X,
                "CANCELED": _F,  # cancelled by the platform (e.g. maximum duration exceeded)
                "SKIPPED": _F,
                "INTERNAL_ERROR": _F,
                "DRIVER_ERROR": _F,
                "CLUSTER_ERROR": _F,
                "REPOSITORY_CHECKOUT_FAILED": _F,
                "INVALID_CLUSTER_REQUEST": _F,
                "WORKSPACE_RUN_LIMIT_EXCEEDED": _F,
                "FEATURE_DISABLED": _F,
                "CLUSTER_REQUEST_LIMIT_EXCEEDED": _F,
                "STORAGE_ACCESS_ERROR": _F,
                "RUN_EXECUTION_ERROR": _F,
                "UNAUTHORIZED_ERROR": _F,
                "LIBRARY_INSTALLATION_ERROR": _F,
                "MAX_CONCURRENT_RUNS_EXCEEDED": _F,
                "MAX_SPARK_CONTEXTS_EXCEEDED": _F,
                "RESOURCE_NOT_FOUND": _F,
                "INVALID_RUN_CONFIGURATION": _F,
                "CLOUD_FAILURE": _F,
                "MAX_JOB_QUEUE_SIZE_EXCEEDED": _F,
                "DISABLED": _X,
                "BREAKING_CHANGE": _F,
                "CLUSTER_TERMINATED_BY_USER": _F,  # the cluster went away under the run, not a cancel of it
                "BUDGET_POLICY_LIMIT_EXCEEDED": _F,
            }
        ),
    }
)
_PLACE_NEW: Final = DATABRICKS_STATUS["status.state"]
_PLACE_OLD: Final = DATABRICKS_STATUS["state.life_cycle_state"]
_RESULT: Final = DATABRICKS_STATUS["state.result_state"]
_CODE: Final = DATABRICKS_STATUS["termination_details.code"]
_ENDING_ITSELF: Final = frozenset({"SKIPPED", "INTERNAL_ERROR"})


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _ms_to_datetime(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value / 1000.0, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _undocumented(seen: set[str] | None, what: str, run_id: Any) -> None:
    if seen is None or what not in seen:
        if seen is not None:
            seen.add(what)
        logger.warning("Databricks run %s reports %s; the job is kept active", run_id, what)


def observe_run(run: Mapping[str, Any], *, seen: set[str] | None = None) -> Observation:
    """Map a ``Run`` (from ``runs/get`` or ``runs/list``) through :data:`DATABRICKS_STATUS`.

    Where the run is: ``status.state`` when documented, else the deprecated
    ``state.life_cycle_state``. How an ended run ended, in order: ``state.result_state`` (its values
    tell a user's cancel from a timeout), ``status.termination_details.code``, the life-cycle state
    that ended it (SKIPPED, INTERNAL_ERROR), and — for a code introduced after this table — an error
    ``termination_details.type`` (FAILED). A SKIPPED or INTERNAL_ERROR run is never COMPLETED. The
    observation's ``code`` is the termination code when it is documented and agrees with the outcome
    (it is the most specific), else the deciding value; its message is the vendor's.

    Anything undocumented keeps the job active — SUBMITTED, or RUNNING for a run that says it
    TERMINATED without a known outcome —, shows in ``vendor_status`` and is logged once per value
    (``seen`` remembers which).
    """
    run_id = run.get("run_id")
    state = _mapping(run.get("state"))
    status = _mapping(run.get("status"))
    details = _mapping(status.get("termination_details"))
    life = _text(state.get("life_cycle_state"))
    newer = _text(status.get("state"))
    if newer is not None and newer in _PLACE_NEW:
        place, mapped = newer, _PLACE_NEW[newer]
    elif life is not None and life in _PLACE_OLD:
        place, mapped = life, _PLACE_OLD[life]
    else:
        shown = newer or life or "no state"
        _undocumented(seen, f"the undocumented state {shown!r}", run_id)
        return Observation(JobState.SUBMITTED, shown)
    if mapped is not None and mapped.is_active:
        return Observation(mapped, place)
    result = _text(state.get("result_state"))
    code = _text(details.get("code"))
    ended: JobState | None = None
    outcome: str | None = None
    if result is not None and result in _RESULT:
        ended, outcome = _RESULT[result], result
    elif code is not None and code in _CODE:
        ended, outcome = _CODE[code], code
    elif mapped is not None:
        ended, outcome = mapped, place
    elif life in _ENDING_ITSELF:
        ended, outcome = JobState.FAILED, life
    elif _text(details.get("type")) in _ERROR_TERMINATION_TYPES:
        ended, outcome = JobState.FAILED, code or str(details["type"])
    if ended is None or outcome is None:
        shown = "/".join(part for part in (place, result or code) if part)
        _undocumented(seen, f"the undocumented outcome {shown!r}", run_id)
        return Observation(JobState.RUNNING, shown)
    ending = life if life in _ENDING_ITSELF else place if place in _ENDING_ITSELF else None
    if (
        ending is not None
        and ended is not JobState.FAILED
        and (ending == "INTERNAL_ERROR" or ended is JobState.COMPLETED)
    ):
        ended, outcome = JobState.FAILED, ending  # a skipped run or a failure of the service never completed
    vendor = place if outcome == place else f"{place}/{outcome}"
    ended_at = _ms_to_datetime(run.get("end_time"))
    if ended is JobState.COMPLETED:
        return Observation(ended, vendor, ended_at=ended_at)
    detail = code if code is not None and _CODE.get(code) is ended else outcome
    message = _text(details.get("message")) or _text(state.get("state_message"))
    if ended is JobState.CANCELLED:
        return Observation(ended, vendor, message=message, code=detail, ended_at=ended_at)
    return Observation(
        ended,
        vendor,
        message=message or f"the Databricks run ended {vendor}",
        code=detail,
        ended_at=ended_at,
    )


# --------------------------------------------------------------------------------------------------
# Validation (pure)

_TASK_KEY = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")
#: Required string fields of the well-known task types (other ``*_task`` types are passed through).
_TASK_REQUIRED: Final[Mapping[str, tuple[str, ...]]] = {
    "notebook_task": ("notebook_path",),
    "spark_python_task": ("python_file",),
    "python_wheel_task": ("package_name", "entry_point"),
    "spark_jar_task": ("main_class_name",),
    "pipeline_task": ("pipeline_id",),
    "sql_task": ("warehouse_id",),
}
_STRING_MAPS: Final = frozenset(
    {"job_parameters", "notebook_params", "python_named_params", "sql_params", "base_parameters"}
)
_STRING_LISTS: Final = frozenset(
    {"python_params", "jar_params", "spark_submit_params", "dbt_commands", "parameters"}
)


def _fail(message: str) -> JobValidationError:
    return JobValidationError(f"Databricks program: {message}")


def _check_string_map(where: str, value: Any) -> None:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _fail(f"{where} must map strings to strings (Databricks passes parameters as text)")


def _check_string_list(where: str, value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _fail(f"{where} must be a list of strings")


def _check_task(index: int, task: Any, keys: set[str]) -> str:
    where = f"tasks[{index}]"
    if not isinstance(task, Mapping):
        raise _fail(f"{where} must be an object, not {type(task).__name__}")
    key = task.get("task_key")
    if not isinstance(key, str) or not _TASK_KEY.match(key):
        raise _fail(f"{where}.task_key must be 1-100 letters, digits, '_' or '-' (got {key!r})")
    if key in keys:
        raise _fail(f"task_key {key!r} is used twice; each task needs its own")
    kinds = [name for name in task if isinstance(name, str) and name.endswith("_task")]
    if len(kinds) != 1:
        found = ", ".join(kinds) or "none"
        raise _fail(
            f"task {key!r} needs exactly one task type such as notebook_task, spark_python_task or "
            f"python_wheel_task (found {found})"
        )
    kind = kinds[0]
    body = task[kind]
    if not isinstance(body, Mapping):
        raise _fail(f"task {key!r}: {kind} must be an object")
    for field in _TASK_REQUIRED.get(kind, ()):
        if not isinstance(body.get(field), str) or not body[field].strip():
            raise _fail(f"task {key!r}: {kind}.{field} is required (a non-empty string)")
    for field, value in body.items():
        if field in _STRING_MAPS:
            _check_string_map(f"task {key!r}: {kind}.{field}", value)
        elif field in _STRING_LISTS:
            _check_string_list(f"task {key!r}: {kind}.{field}", value)
    if kind == "run_job_task" and (
        isinstance(body.get("job_id"), bool) or not isinstance(body.get("job_id"), int)
    ):
        raise _fail(f"task {key!r}: run_job_task.job_id is required (an integer)")
    for field in ("existing_cluster_id", "job_cluster_key", "environment_key", "run_if"):
        if field in task and not isinstance(task[field], str):
            raise _fail(f"task {key!r}: {field} must be a string")
    if "new_cluster" in task and not isinstance(task["new_cluster"], Mapping):
        raise _fail(f"task {key!r}: new_cluster must be an object")
    _check_timeout(f"task {key!r}: timeout_seconds", task.get("timeout_seconds"))
    return key


def _check_timeout(where: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise _fail(f"{where} must be a whole number of seconds >= 0")


def _check_dependencies(tasks: Sequence[Mapping[str, Any]], keys: set[str]) -> None:
    graph: dict[str, list[str]] = {}
    for task in tasks:
        key = task["task_key"]
        depends = task.get("depends_on", [])
        if not isinstance(depends, list) or not all(
            isinstance(d, Mapping) and isinstance(d.get("task_key"), str) for d in depends
        ):
            raise _fail(f'task {key!r}: depends_on must be a list of {{"task_key": "..."}}')
        graph[key] = [d["task_key"] for d in depends]
        for name in graph[key]:
            if name not in keys:
                raise _fail(f"task {key!r} depends on {name!r}, which is not a task of this run")
    done: set[str] = set()
    visiting: set[str] = set()

    def visit(key: str) -> None:
        if key in done:
            return
        if key in visiting:
            raise _fail(f"the tasks' depends_on form a cycle through {key!r}")
        visiting.add(key)
        for name in graph[key]:
            visit(name)
        visiting.discard(key)
        done.add(key)

    for key in graph:
        visit(key)


def _check_submit(body: Mapping[str, Any]) -> None:
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise _fail("a one-time run needs a non-empty 'tasks' list")
    if len(tasks) > MAX_TASKS:
        raise _fail(f"a run has at most {MAX_TASKS} tasks, not {len(tasks)}")
    keys: set[str] = set()
    for index, task in enumerate(tasks):
        keys.add(_check_task(index, task, keys))
    _check_dependencies(tasks, keys)
    if "run_name" in body and not isinstance(body["run_name"], str):
        raise _fail("run_name must be a string")
    _check_timeout("timeout_seconds", body.get("timeout_seconds"))


def _check_run_now(body: Mapping[str, Any]) -> None:
    job_id = body.get("job_id")
    if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id <= 0:
        raise _fail(f"job_id must be a positive integer (the id of an existing job), not {job_id!r}")
    for field in ("tasks", "run_name"):
        if field in body:
            raise _fail(
                f"'{field}' does not go with job_id: a run of an existing job takes its tasks and name "
                "from the job (submit a run spec with tasks and no job_id for a one-time run)"
            )
    for field, value in body.items():
        if field in _STRING_MAPS:
            _check_string_map(field, value)
        elif field in _STRING_LISTS:
            _check_string_list(field, value)
    if "only" in body:
        _check_string_list("only", body["only"])


def _as_body(program: Any) -> dict[str, Any]:
    if isinstance(program, str | bytes):
        try:
            program = json.loads(program)
        except ValueError as exc:
            raise _fail("text must be a JSON object (a run spec with 'tasks', or {'job_id': ...})") from exc
    if not isinstance(program, Mapping):
        raise _fail(
            "expected a run spec (a mapping with 'tasks') or {'job_id': N, ...}, "
            f"not {type(program).__name__}"
        )
    if not all(isinstance(key, str) for key in program):
        raise _fail("the request fields must be named by strings")
    return dict(program)


def _plain(value: dict[str, Any], what: str) -> dict[str, Any]:
    """A deep copy that is plain JSON (refusing what cannot be sent)."""
    try:
        copied: dict[str, Any] = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise _fail(f"{what} must be plain JSON (strings, numbers, lists, objects): {exc}") from None
    return copied


# --------------------------------------------------------------------------------------------------
# The backend


def _normalise_host(host: str) -> str:
    """``scheme://netloc`` of a workspace URL; a bare host name gets ``https://`` (as the official
    client does, which also drops any path or ``?o=<workspace id>`` query a browser URL carries)."""
    text = host.strip()
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if not parts.netloc:
        raise ConfigurationError(
            "DATABRICKS_HOST must be a workspace URL such as https://adb-1.2.azuredatabricks.net"
        )
    return f"{parts.scheme}://{parts.netloc}"


class DatabricksBackend(HttpBackend):
    """The ``databricks`` backend. Settings default to ``DATABRICKS_HOST`` and ``DATABRICKS_TOKEN``."""

    name = "databricks"
    default_target = WORKSPACE_TARGET
    batch_status = True
    idempotent_submit = True
    #: The official client polls at 1, 2, ... 10 s. This one starts at 0.5 s: runs are read in
    #: batches (runs/list), and a run being cancelled is read at this pace until it ends, well
    #: inside the published runs/get limit.
    min_poll_interval_s = 0.5
    max_poll_interval_s = 10.0
    #: Half the (unverified) published runs/get limit of 100 requests per second per workspace.
    status_reads_per_s = 50.0

    def __init__(
        self,
        *,
        host: str | None = None,
        token: str | Secret | None = None,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        host = host or os.environ.get("DATABRICKS_HOST")
        token = token or os.environ.get("DATABRICKS_TOKEN")
        if not host:
            raise ConfigurationError(
                "Databricks needs the workspace URL: pass host=... or set DATABRICKS_HOST"
            )
        if not token:
            raise ConfigurationError(
                "Databricks needs a token (a personal access token or an Entra ID token): pass "
                "token=... or set DATABRICKS_TOKEN"
            )
        if not isinstance(host, str):
            raise ConfigurationError("host must be a string (the workspace URL)")
        self._token = token if isinstance(token, Secret) else Secret(token)
        self._http = HttpClient(
            _normalise_host(host),
            vendor="Azure Databricks",
            headers={"Authorization": Secret(f"Bearer {self._token.reveal()}")},
            timeout_s=timeout_s,
            retry=retry,
            allow_insecure_http=allow_insecure_http,
            user_agent="oqc-style-sdk",
        )
        self.host = self._http.base_url
        self._seen_undocumented: set[str] = set()
        self._ended: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def __repr__(self) -> str:
        return f"<DatabricksBackend host={self.host!r}>"

    # ------------------------------------------------------------------ lifetime
    async def _check(self) -> None:
        """The host answers (fast, no retries), then the token is accepted."""
        await self._http.check_reachable(f"{API_PREFIX}/runs/list")
        await self._http.get(f"{API_PREFIX}/runs/list", params={"limit": 1})

    def identity(self) -> dict[str, str]:
        return {"backend": self.name, "host": self.host}

    async def list_targets(self) -> list[dict[str, Any]]:
        """The workspace. Compute is chosen per task in the run spec, not by the target."""
        return [{"id": WORKSPACE_TARGET, "name": "Azure Databricks workspace", "host": self.host}]

    # ------------------------------------------------------------------ jobs
    def validate(self, spec: RunSpec) -> RunSpec:
        target = spec.target or WORKSPACE_TARGET
        if target != WORKSPACE_TARGET:
            raise UnknownTargetError(target, [WORKSPACE_TARGET])
        program = _plain(_as_body(spec.program), "the program")
        config = _plain(_as_body(dict(spec.config)), "config")
        body = {**program, **config}
        if "idempotency_token" in body:
            raise _fail("idempotency_token is set by the SDK (one per run, saved with the job); remove it")
        if "job_id" in body:
            _check_run_now(body)
        else:
            _check_submit(body)
        return RunSpec(program=program, target=target, config=config, tag=spec.tag)

    def local_idempotency_key(self, spec: RunSpec) -> str:
        """A fresh ``idempotency_token`` (37 characters), made once per run and saved with the job."""
        return f"oqcs-{uuid.uuid4().hex}"

    @staticmethod
    def _request(spec: RunSpec) -> tuple[str, dict[str, Any]]:
        body = {**dict(_as_body(spec.program)), **dict(spec.config)}
        endpoint = "run-now" if "job_id" in body else "runs/submit"
        return endpoint, body

    async def submit(self, spec: RunSpec, idempotency_key: str) -> RunRef:
        if len(idempotency_key) > MAX_IDEMPOTENCY_TOKEN:
            raise JobValidationError(
                f"the idempotency key is longer than Databricks' {MAX_IDEMPOTENCY_TOKEN} characters"
            )
        endpoint, body = self._request(spec)
        body["idempotency_token"] = idempotency_key
        try:
            response = await self._http.post(
                f"{API_PREFIX}/{endpoint}",
                json=body,
                idempotent=True,  # the idempotency_token makes a resend return the same run
            )
        except BackendError as exc:
            mapped = _rate_limit_in_disguise(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        answer = response.json()
        run_id = answer.get("run_id") if isinstance(answer, dict) else None
        if isinstance(run_id, bool) or not isinstance(run_id, int):
            raise ProtocolError(f"Azure Databricks answered {endpoint} without a run_id: {answer!r:.200}")
        kind = "run_now" if endpoint == "run-now" else "submit"
        return RunRef(task_id=str(run_id), extra={"kind": kind})

    # ------------------------------------------------------------------ status
    async def _get(self, path: str, params: Mapping[str, str | int]) -> Response:
        """A GET whose "Run <id> does not exist" (400 INVALID_PARAMETER_VALUE) is a NotFoundError."""
        try:
            return await self._http.get(f"{API_PREFIX}/{path}", params=params)
        except BackendError as exc:
            mapped = _not_found_in_disguise(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    async def _get_run(self, task_id: str) -> dict[str, Any]:
        body = (await self._get("runs/get", {"run_id": _run_id(task_id)})).json()
        if not isinstance(body, dict):
            raise ProtocolError(f"Azure Databricks answered runs/get with {type(body).__name__}, not a Run")
        return body

    def _observe(self, task_id: str, run: dict[str, Any]) -> Observation:
        obs = observe_run(run, seen=self._seen_undocumented)
        if obs.state.is_terminal and isinstance(run.get("tasks"), list):  # kept for result()
            self._ended[task_id] = run
            self._ended.move_to_end(task_id)
            while len(self._ended) > _ENDED_CACHE:
                self._ended.popitem(last=False)
        return obs

    async def status(self, ref: RunRef) -> Observation:
        return self._observe(ref.task_id, await self._get_run(ref.task_id))

    # ------------------------------------------------------------------ finding runs
    has_job_list = True
    list_filters = frozenset({"states", "target", "since"})  # runs carry no tag

    def check_task_id(self, task_id: str) -> None:
        if not isinstance(task_id, str) or not task_id.isdigit():
            raise JobValidationError(f"{task_id!r} is not a Databricks run id (a whole number)")

    async def find_run(self, task_id: str) -> FoundRun:
        run = await self._get_run(task_id)  # "does not exist" is a NotFoundError: JobNotFoundError
        return _databricks_runs.found_run(run, self._observe(task_id, run))

    def list_runs(self, query: RunQuery) -> AsyncIterator[FoundRun]:
        return _databricks_runs.list_runs(self, query, self._observe)

    async def statuses(self, refs: Sequence[RunRef]) -> dict[str, Observation | BaseException]:
        """Many runs: pages of ``runs/list?active_only=true``, then ``runs/get`` for the runs not on
        them (ended, or too new to be listed). Listing stops once another page would cost more than
        reading the missing runs one by one, so a tick never costs much more than one read per run.
        """
        if len(refs) <= 1:  # one runs/get is as cheap as one list page, and always exact
            return await super().statuses(refs)
        wanted = {ref.task_id: ref for ref in refs}
        out: dict[str, Observation | BaseException] = {}
        pages = 0
        offset = 0
        token: str | None = None
        while True:
            params: dict[str, str | int] = {"active_only": "true", "limit": LIST_PAGE_SIZE}
            if token is not None:
                params["page_token"] = token
            elif offset:
                params["offset"] = offset
            body = (await self._get("runs/list", params)).json()
            pages += 1
            if not isinstance(body, dict):
                raise ProtocolError("Azure Databricks answered runs/list without an object")
            runs = body.get("runs") or []  # left out when there are none
            if not isinstance(runs, list):
                raise ProtocolError("Azure Databricks answered runs/list with 'runs' that is not a list")
            for run in runs:
                run_id = run.get("run_id") if isinstance(run, dict) else None
                key = str(run_id) if isinstance(run_id, int) and not isinstance(run_id, bool) else None
                if key is not None and key in wanted and key not in out:
                    out[key] = self._observe(key, run)
            missing = len(wanted) - len(out)
            token = _text(body.get("next_page_token"))
            more = token is not None or body.get("has_more") is True
            if not missing or not more or pages >= missing:
                break
            offset += len(runs)
        rest = [ref for key, ref in wanted.items() if key not in out]
        if rest:
            out.update(await super().statuses(rest))
        return out

    # ------------------------------------------------------------------ cancel
    async def cancel(self, ref: RunRef, reason: str | None = None) -> None:
        """``runs/cancel``: asynchronous; a no-op on a run that already ended."""
        try:
            await self._http.post(
                f"{API_PREFIX}/runs/cancel", json={"run_id": _run_id(ref.task_id)}, idempotent=True
            )
        except BackendError as exc:
            mapped = _not_found_in_disguise(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    # ------------------------------------------------------------------ results
    async def _ended_run(self, ref: RunRef) -> dict[str, Any]:
        """The ended run with all of its tasks (cached from the status read that saw it end)."""
        run = self._ended.get(ref.task_id) or await self._get_run(ref.task_id)
        token = _text(run.get("next_page_token"))
        if token is None:
            return run
        tasks = list(run.get("tasks") or [])
        pages = 0
        while token is not None and pages < 1000:
            page = (await self._get("runs/get", {"run_id": _run_id(ref.task_id), "page_token": token})).json()
            if not isinstance(page, dict):
                break
            tasks.extend(page.get("tasks") or [])
            token = _text(page.get("next_page_token"))
            pages += 1
        full = {**run, "tasks": tasks}
        full.pop("next_page_token", None)
        self._ended[ref.task_id] = full
        return full

    async def _task_output(self, task: Mapping[str, Any]) -> dict[str, Any]:
        task_run = task.get("run_id")
        task_state = _mapping(task.get("state"))
        entry: dict[str, Any] = {
            "run_id": task_run,
            "result_state": task_state.get("result_state"),
            "result": None,
            "logs": None,
            "error": None,
        }
        if isinstance(task_run, bool) or not isinstance(task_run, int):
            entry["error"] = "the task has no run id"
            return entry
        try:
            body = (await self._get("runs/get-output", {"run_id": task_run})).json()
        except BackendError as exc:
            if exc.transient or isinstance(
                exc, AuthenticationError
            ):  # refused credentials are no "no output"
                raise
            entry["error"] = f"output unavailable: {exc}"
            return entry
        if not isinstance(body, dict):
            raise ProtocolError("Azure Databricks answered runs/get-output without an object")
        notebook = body.get("notebook_output")
        if isinstance(notebook, Mapping):
            entry["result"] = notebook.get("result")
            if notebook.get("truncated"):
                entry["result_truncated"] = True
        for key, value in body.items():
            if key not in ("metadata", "notebook_output"):
                entry[key] = value
        return entry

    async def result(self, ref: RunRef, spec: RunSpec) -> Any:
        """``{task_key: {"result", "logs", "error", "run_id", "result_state", ...}}`` of every task."""
        run = await self._ended_run(ref)
        tasks = [t for t in (run.get("tasks") or []) if isinstance(t, Mapping)]
        if not tasks:  # a run reported without tasks: its own id is the task run (single-task runs)
            tasks = [
                {
                    "task_key": _text(run.get("run_name")) or "main",
                    "run_id": run.get("run_id"),
                    "state": run.get("state"),
                }
            ]
        outputs: dict[str, dict[str, Any]] = {}
        limiter = anyio.CapacityLimiter(READ_CONCURRENCY)

        async def one(index: int, task: Mapping[str, Any]) -> None:
            async with limiter:
                key = _text(task.get("task_key")) or f"task_{index}"
                outputs[key] = await self._task_output(task)

        try:
            async with anyio.create_task_group() as tg:
                for index, task in enumerate(tasks):
                    tg.start_soon(one, index, task)
        except BaseExceptionGroup as group:  # a typed SDK error for the caller, not a group
            errors = group.exceptions
            if errors and all(isinstance(e, BackendError) for e in errors):
                raise errors[0] from None
            raise
        order = [_text(t.get("task_key")) or f"task_{i}" for i, t in enumerate(tasks)]
        return {key: outputs[key] for key in order if key in outputs}

    async def diagnostics(self, ref: RunRef, spec: RunSpec) -> Diagnostics:
        run = await self._ended_run(ref)
        timings: dict[str, Any] = {}
        for name in ("start_time", "end_time"):
            moment = _ms_to_datetime(run.get(name))
            if moment is not None:
                timings[name] = moment.isoformat()
        for name in (
            "queue_duration",
            "setup_duration",
            "execution_duration",
            "cleanup_duration",
            "run_duration",
        ):
            value = run.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                timings[f"{name}_s"] = value / 1000.0
        state = _mapping(run.get("state"))
        status = _mapping(run.get("status"))
        metadata: dict[str, Any] = {
            key: run[key]
            for key in (
                "run_id",
                "run_name",
                "run_type",
                "job_id",
                "run_page_url",
                "creator_user_name",
                "cluster_instance",
                "trigger",
                "attempt_number",
            )
            if run.get(key) is not None
        }
        if state.get("state_message"):
            metadata["state_message"] = state["state_message"]
        if isinstance(status.get("termination_details"), Mapping):
            metadata["termination_details"] = dict(status["termination_details"])
        tasks = []
        for task in run.get("tasks") or []:
            if not isinstance(task, Mapping):
                continue
            task_state = _mapping(task.get("state"))
            item = {
                "task_key": task.get("task_key"),
                "run_id": task.get("run_id"),
                "life_cycle_state": task_state.get("life_cycle_state"),
                "result_state": task_state.get("result_state"),
                "cluster_instance": task.get("cluster_instance"),
            }
            tasks.append({k: v for k, v in item.items() if v is not None})
        metadata["tasks"] = tasks
        return Diagnostics(timings=timings or None, metrics=None, metadata=metadata)


def _run_id(task_id: str) -> int:
    if not task_id.isdigit():
        raise NotFoundError(f"{task_id!r} is not a Databricks run id (a whole number)")
    return int(task_id)


def _not_found_in_disguise(exc: BackendError) -> BackendError:
    """Databricks answers an unknown run id with 400 INVALID_PARAMETER_VALUE "Run <id> does not exist"
    (and newer endpoints may say 404 RESOURCE_DOES_NOT_EXIST): both are a NotFoundError."""
    if isinstance(exc, NotFoundError):
        return exc
    gone = exc.vendor_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or (
        exc.vendor_code == "INVALID_PARAMETER_VALUE" and "does not exist" in str(exc).lower()
    )
    if exc.status in (400, 404) and gone:
        return NotFoundError(str(exc), status=exc.status, vendor_code=exc.vendor_code, details=exc.details)
    return exc


def _rate_limit_in_disguise(exc: BackendError) -> BackendError:
    """Job-creation limits come back as 400 INVALID_STATE "... exceeding rate limit ..." (Databricks
    KB): not a rejection of the run, so it must not fail the job. The job keeps its idempotency token
    and can be sent again later (``execute()`` again) without risk of a second run."""
    limited = exc.vendor_code in ("INVALID_STATE", "REQUEST_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED")
    if exc.status == 400 and limited and "rate limit" in str(exc).lower():
        return RateLimitedError(str(exc), vendor_code=exc.vendor_code, details=exc.details)
    return exc
