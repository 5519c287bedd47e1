"""The data of the Databricks emulator: its runs, tasks and jobs, the views of a run at a moment, the
tables of states and codes, and the parsing of query values — apart from the endpoints
(:mod:`oqc_style_sdk.testing.databricks`), so neither file grows past what one reads at once.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

#: ``status.termination_details.type``, every documented value.
TERMINATION_TYPES: Final = ("SUCCESS", "INTERNAL_ERROR", "CLIENT_ERROR", "CLOUD_FAILURE")
#: The cluster the predefined jobs (and the examples) run on.
DEFAULT_CLUSTER_ID: Final = "0923-164208-meows279"

_TERMINAL_LIFE: Final = frozenset({"TERMINATED", "SKIPPED", "INTERNAL_ERROR"})
_API_VERSIONS: Final = ("2.1", "2.2")
_MAX_TOKEN: Final = 64
_MAX_TASKS: Final = 100
_PAGE_MAX: Final = 25
_JOBS_PAGE_MAX: Final = 100
_FIRST_ID: Final = 1001
_USER: Final = "emulator@example.com"
_STATUS_OF_LIFE: Final[Mapping[str, str]] = {
    "WAITING_FOR_RETRY": "WAITING",
    "SKIPPED": "TERMINATED",
    "INTERNAL_ERROR": "TERMINATED",
}
_LIFE_OF_STATUS: Final[Mapping[str, str]] = {"WAITING": "WAITING_FOR_RETRY"}
#: The termination code a forced result state implies, unless one is given (emulator choice).
_CODE_OF_RESULT: Final[Mapping[str, str]] = {
    "SUCCESS": "SUCCESS",
    "SUCCESS_WITH_FAILURES": "SUCCESS_WITH_FAILURES",
    "FAILED": "RUN_EXECUTION_ERROR",
    "TIMEDOUT": "CANCELED",
    "CANCELED": "USER_CANCELED",
    "MAXIMUM_CONCURRENT_RUNS_REACHED": "MAX_CONCURRENT_RUNS_EXCEEDED",
    "EXCLUDED": "SKIPPED",
    "UPSTREAM_FAILED": "SKIPPED",
    "UPSTREAM_CANCELED": "SKIPPED",
    "DISABLED": "DISABLED",
}
_TYPE_OF_CODE: Final[Mapping[str, str]] = {
    "SUCCESS": "SUCCESS",
    "SUCCESS_WITH_FAILURES": "SUCCESS",
    "USER_CANCELED": "SUCCESS",
    "CANCELED": "SUCCESS",
    "SKIPPED": "SUCCESS",
    "DISABLED": "SUCCESS",
    "INTERNAL_ERROR": "INTERNAL_ERROR",
    "CLOUD_FAILURE": "CLOUD_FAILURE",
}
_ERROR_CODES: Final[Mapping[int, str]] = {
    400: "INVALID_PARAMETER_VALUE",
    401: "PERMISSION_DENIED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    405: "ENDPOINT_NOT_FOUND",
    409: "RESOURCE_CONFLICT",
    413: "INVALID_PARAMETER_VALUE",
    429: "REQUEST_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class _Refused(Exception):
    """A Databricks error answer: ``{"error_code", "message"}`` with ``status``."""

    def __init__(self, message: str, *, code: str = "INVALID_PARAMETER_VALUE", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class EmulatedJob:
    """A job that exists in the emulated workspace (for ``run-now``, ``jobs/get``, ``jobs/list``)."""

    job_id: int
    name: str
    tasks: tuple[Mapping[str, Any], ...]
    #: Job-level parameters: ``({"name", "default"}, ...)``.
    parameters: tuple[Mapping[str, str], ...] = ()
    created_time: int = 1_700_000_000_000


#: The jobs of the emulated workspace unless given others.
DEFAULT_JOBS: Final = (
    EmulatedJob(
        job_id=101,
        name="nightly-etl",
        tasks=(
            {
                "task_key": "etl",
                "existing_cluster_id": DEFAULT_CLUSTER_ID,
                "notebook_task": {
                    "notebook_path": "/Workspace/Shared/etl",
                    "base_parameters": {"date": "today"},
                    "source": "WORKSPACE",
                },
            },
        ),
        parameters=({"name": "date", "default": "today"},),
    ),
    EmulatedJob(
        job_id=102,
        name="train-model",
        tasks=(
            {
                "task_key": "train",
                "existing_cluster_id": DEFAULT_CLUSTER_ID,
                "python_wheel_task": {
                    "package_name": "trainer",
                    "entry_point": "main",
                    "parameters": ["--epochs", "1"],
                },
            },
        ),
    ),
    EmulatedJob(
        job_id=103,
        name="ingest-and-report",
        tasks=(
            {
                "task_key": "ingest",
                "existing_cluster_id": DEFAULT_CLUSTER_ID,
                "spark_python_task": {"python_file": "dbfs:/jobs/ingest.py", "parameters": ["--full"]},
            },
            {
                "task_key": "report",
                "depends_on": [{"task_key": "ingest"}],
                "existing_cluster_id": DEFAULT_CLUSTER_ID,
                "notebook_task": {"notebook_path": "/Workspace/Shared/report", "source": "WORKSPACE"},
            },
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class Exchange:
    """One authorised request the API handled, and its answer as the handler gave it (before any
    fault rule replaced it): what the contract tests check against the OpenAPI description."""

    method: str
    path: str
    query: dict[str, str]
    #: The parsed JSON request body (None if there was none or it was not JSON).
    body: Any
    status: int
    #: The parsed JSON answer (None if it was not JSON).
    answer: Any


@dataclass(slots=True)
class _Forced:
    """A state set with :meth:`DatabricksEmulator.set_state`."""

    life: str
    status: str
    result: str | None
    code: str | None
    type: str | None
    message: str
    since: float
    error: str | None = None


@dataclass(slots=True, eq=False)
class _Task:
    run_id: int
    key: str
    kind: str
    settings: dict[str, Any]
    output: dict[str, Any] | None = None


@dataclass(slots=True, eq=False)
class _Run:
    run_id: int
    run_type: str
    run_name: str
    job_id: int | None
    tasks: list[_Task]
    #: The emulator clock and the wall clock (epoch ms) when it was created.
    t0: float
    start_ms: int
    queue_s: float
    pending_s: float
    running_s: float
    terminating_s: float
    cancel_s: float
    token: str | None = None
    overriding: dict[str, Any] = field(default_factory=dict)
    job_parameters: list[dict[str, str]] = field(default_factory=list)
    cancelled_at: float | None = None
    forced: _Forced | None = None


@dataclass(frozen=True, slots=True)
class _View:
    """What a run looks like at one moment."""

    life: str
    status: str
    result: str | None = None
    code: str | None = None
    type: str | None = None
    message: str = ""
    #: The emulator clock when it ended, if it did.
    ended: float | None = None
    cancelled: bool = False
    queued: bool = False
    error: str | None = None

    @property
    def terminal(self) -> bool:
        return self.life in _TERMINAL_LIFE


def _parse_bool(name: str, value: str | None) -> bool:
    if value is None:
        return False
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0", ""):
        return False
    raise _Refused(f"Invalid value for parameter {name}: {value!r} is not a boolean")


def _parse_int(
    name: str, value: str | None, *, default: int | None = None, minimum: int | None = None
) -> int:
    if value is None:
        if default is None:
            raise _Refused(f"Missing required field: {name}")
        return default
    try:
        number = int(value)
    except ValueError:
        raise _Refused(f"Invalid value for parameter {name}: {value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise _Refused(f"Invalid value for parameter {name}: must be at least {minimum}")
    return number


def _json_or_none(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _offset_of(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        kind, _, number = raw.partition(":")
        if kind != "offset":
            raise ValueError(raw)
        return max(int(number), 0)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _Refused("Invalid page_token") from None
