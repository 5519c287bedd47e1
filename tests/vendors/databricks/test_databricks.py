"""The ``databricks`` backend: settings, validation, the status table, runs to completion and cancel,
idempotent submission, batched status reads and secrets — against the Databricks emulator."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from oqc_style_sdk import Sdk
from oqc_style_sdk._http import RetryPolicy, Secret
from oqc_style_sdk.backends.base import Observation, RunRef, RunSpec
from oqc_style_sdk.backends.databricks import (
    DATABRICKS_STATUS,
    LIFECYCLE_STATES,
    RESULT_STATES,
    STATUS_STATES,
    TERMINATION_CODES,
    DatabricksBackend,
    observe_run,
)
from oqc_style_sdk.exceptions import (
    AuthenticationError,
    BackendUnavailableError,
    ConfigurationError,
    JobValidationError,
    NotFoundError,
    RateLimitedError,
    UnknownTargetError,
)
from oqc_style_sdk.job import Job
from oqc_style_sdk.job_output import JobCancellation, JobError, JobResult
from oqc_style_sdk.state import JobState
from oqc_style_sdk.testing.databricks import DatabricksEmulator
from oqc_style_sdk.testing.emulator import Emulator
from oqc_style_sdk.testing.pytest_plugin import EmulatorFactory
from tests.common import FAST

API = "/api/2.2/jobs"
CLUSTER = "0923-164208-meows279"
QUICK_RETRY = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05)
NOTEBOOK: dict[str, Any] = {
    "run_name": "sdk-nb",
    "tasks": [
        {
            "task_key": "main",
            "existing_cluster_id": CLUSTER,
            "notebook_task": {"notebook_path": "/Users/me@example.com/nb", "base_parameters": {"x": "1"}},
        }
    ],
}
PYTHON: dict[str, Any] = {
    "run_name": "sdk-py",
    "tasks": [
        {
            "task_key": "main",
            "existing_cluster_id": CLUSTER,
            "spark_python_task": {"python_file": "dbfs:/path/to/file.py", "parameters": ["--n", "3"]},
        }
    ],
}


def sdk_for(emu: Emulator, **settings: Any) -> Sdk:
    assert isinstance(emu, DatabricksEmulator)
    settings.setdefault("retry", QUICK_RETRY)
    return Sdk("databricks", polling=FAST, **emu.credentials, **settings)


@pytest.fixture
async def emu(emulator_factory: EmulatorFactory) -> AsyncIterator[DatabricksEmulator]:
    async with emulator_factory("databricks", job_duration_s=0.2, cancel_duration_s=0.1) as started:
        assert isinstance(started, DatabricksEmulator)
        yield started


def state_in(out: dict[str, Observation | BaseException], ref: RunRef) -> JobState:
    reading = out[ref.task_id]
    assert isinstance(reading, Observation), reading
    return reading.state


def calls(emu: DatabricksEmulator, method: str, endpoint: str) -> int:
    """Requests to exactly this endpoint (``emu.count`` matches path prefixes: runs/get-output is
    not runs/get)."""
    return sum(1 for r in emu.requests if r.method == method and r.path == f"{API}/{endpoint}")


def backend(**settings: Any) -> DatabricksBackend:
    settings.setdefault("host", "https://adb-1.2.azuredatabricks.net")
    settings.setdefault("token", "dapi-secret-token-value")
    return DatabricksBackend(**settings)


# -- settings --------------------------------------------------------------------------------------------


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABRICKS_HOST", raising=False)
    monkeypatch.delenv("DATABRICKS_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="DATABRICKS_HOST"):
        DatabricksBackend(token="t")
    with pytest.raises(ConfigurationError, match="DATABRICKS_TOKEN"):
        DatabricksBackend(host="https://adb-1.2.azuredatabricks.net")
    monkeypatch.setenv("DATABRICKS_HOST", "adb-1.2.azuredatabricks.net/?o=1#job/3")
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-from-env")
    made = DatabricksBackend()
    assert made.host == "https://adb-1.2.azuredatabricks.net"  # bare host: https, no path or query
    assert made.identity() == {"backend": "databricks", "host": "https://adb-1.2.azuredatabricks.net"}
    assert made.default_target == "workspace"
    assert made.batch_status
    assert made.idempotent_submit


def test_plain_http_only_to_loopback() -> None:
    with pytest.raises(ConfigurationError, match="plain http"):
        backend(host="http://adb-1.2.azuredatabricks.net")
    assert backend(host="http://127.0.0.1:8080").host == "http://127.0.0.1:8080"
    assert backend(host="http://10.0.0.1", allow_insecure_http=True).host == "http://10.0.0.1"


async def test_list_targets_is_the_workspace() -> None:
    assert await backend().list_targets() == [
        {
            "id": "workspace",
            "name": "Azure Databricks workspace",
            "host": "https://adb-1.2.azuredatabricks.net",
        }
    ]


# -- validation (no I/O) ---------------------------------------------------------------------------------


def spec(program: Any, target: str | None = None, **config: Any) -> RunSpec:
    return RunSpec(program=program, target=target, config=config)


def test_valid_programs() -> None:
    b = backend()
    ok = b.validate(spec(NOTEBOOK))
    assert ok.target == "workspace"
    assert ok.program == NOTEBOOK
    assert ok.program is not NOTEBOOK
    assert b.validate(spec(json.dumps(PYTHON))).program == PYTHON  # JSON text, as `oqcs run` passes
    run_now = b.validate(spec({"job_id": 101, "job_parameters": {"date": "x"}}, notebook_params={"a": "b"}))
    assert run_now.config == {"notebook_params": {"a": "b"}}
    wheel = {
        "tasks": [
            {
                "task_key": "w",
                "environment_key": "default",
                "python_wheel_task": {
                    "package_name": "p",
                    "entry_point": "main",
                    "named_parameters": {"a": "1"},
                },
            },
            {"task_key": "later", "depends_on": [{"task_key": "w"}], "sql_task": {"warehouse_id": "wh"}},
            {"task_key": "cond", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}},
        ]
    }
    b.validate(spec(wheel))


@pytest.mark.parametrize(
    ("program", "message"),
    [
        (42, "not int"),
        ("not json", "JSON object"),
        ({}, "non-empty 'tasks'"),
        ({"tasks": "x"}, "non-empty 'tasks'"),
        ({"tasks": [1]}, "must be an object"),
        ({"tasks": [{"notebook_task": {"notebook_path": "/x"}}]}, "task_key"),
        ({"tasks": [{"task_key": "a b", "notebook_task": {"notebook_path": "/x"}}]}, "task_key"),
        ({"tasks": [{"task_key": "a"}]}, "exactly one task type"),
        (
            {
                "tasks": [
                    {
                        "task_key": "a",
                        "notebook_task": {"notebook_path": "/x"},
                        "sql_task": {"warehouse_id": "w"},
                    }
                ]
            },
            "exactly one task type",
        ),
        ({"tasks": [{"task_key": "a", "notebook_task": {}}]}, "notebook_path is required"),
        ({"tasks": [{"task_key": "a", "spark_python_task": {"python_file": ""}}]}, "python_file is required"),
        (
            {"tasks": [{"task_key": "a", "python_wheel_task": {"package_name": "p"}}]},
            "entry_point is required",
        ),
        ({"tasks": [{"task_key": "a", "notebook_task": "nb"}]}, "must be an object"),
        (
            {
                "tasks": [
                    {"task_key": "a", "notebook_task": {"notebook_path": "/x", "base_parameters": {"n": 1}}}
                ]
            },
            "strings to strings",
        ),
        (
            {"tasks": [{"task_key": "a", "spark_python_task": {"python_file": "f", "parameters": [1]}}]},
            "list of strings",
        ),
        (
            {
                "tasks": [
                    {"task_key": "a", "notebook_task": {"notebook_path": "/x"}, "existing_cluster_id": 5}
                ]
            },
            "existing_cluster_id must be a string",
        ),
        (
            {"tasks": [{"task_key": "a", "notebook_task": {"notebook_path": "/x"}}] * 2},
            "used twice",
        ),
        (
            {
                "tasks": [
                    {
                        "task_key": "a",
                        "notebook_task": {"notebook_path": "/x"},
                        "depends_on": [{"task_key": "b"}],
                    }
                ]
            },
            "not a task of this run",
        ),
        (
            {
                "tasks": [
                    {
                        "task_key": "a",
                        "notebook_task": {"notebook_path": "/x"},
                        "depends_on": [{"task_key": "b"}],
                    },
                    {
                        "task_key": "b",
                        "notebook_task": {"notebook_path": "/x"},
                        "depends_on": [{"task_key": "a"}],
                    },
                ]
            },
            "cycle",
        ),
        ({**NOTEBOOK, "timeout_seconds": -5}, "timeout_seconds"),
        ({**NOTEBOOK, "run_name": 7}, "run_name"),
        ({**NOTEBOOK, "idempotency_token": "mine"}, "set by the SDK"),
        ({**NOTEBOOK, "when": datetime(2024, 1, 1, tzinfo=UTC)}, "plain JSON"),
        (
            {"tasks": [{"task_key": f"t{i}", "notebook_task": {"notebook_path": "/x"}} for i in range(101)]},
            "at most 100",
        ),
        ({"job_id": "101"}, "positive integer"),
        ({"job_id": True}, "positive integer"),
        ({"job_id": 101, "tasks": []}, "does not go with job_id"),
        ({"job_id": 101, "job_parameters": {"a": 1}}, "strings to strings"),
        ({"job_id": 101, "python_params": "x"}, "list of strings"),
        ({"job_id": 101, "only": [1]}, "list of strings"),
        ({"tasks": [{"task_key": "a", "run_job_task": {"job_id": "7"}}]}, "run_job_task.job_id"),
    ],
)
def test_invalid_programs_are_refused_with_a_clear_message(program: Any, message: str) -> None:
    with pytest.raises(JobValidationError, match=message):
        backend().validate(spec(program))


def test_only_the_workspace_is_a_target() -> None:
    with pytest.raises(UnknownTargetError, match="'workspace'"):
        backend().validate(spec(NOTEBOOK, target="cluster-1"))


async def test_the_idempotency_key_fits_databricks() -> None:
    b = backend()
    keys = {await b.new_idempotency_key(spec(NOTEBOOK)) for _ in range(50)}
    assert len(keys) == 50
    assert all(len(key) <= 64 for key in keys)


# -- the status table ------------------------------------------------------------------------------------


def _run(
    life: str | None = None,
    result: str | None = None,
    status: str | None = None,
    code: str | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    run: dict[str, Any] = {"run_id": 1, "end_time": 1_700_000_000_000}
    if life is not None or result is not None:
        run["state"] = {"life_cycle_state": life, "state_message": "msg"}
        if result is not None:
            run["state"]["result_state"] = result
    if status is not None:
        run["status"] = {"state": status}
        if code is not None or kind is not None:
            run["status"]["termination_details"] = {"code": code, "type": kind, "message": "details"}
    return run


def test_the_table_covers_every_documented_value_once() -> None:
    assert set(DATABRICKS_STATUS["state.life_cycle_state"]) == set(LIFECYCLE_STATES)
    assert set(DATABRICKS_STATUS["status.state"]) == set(STATUS_STATES)
    assert set(DATABRICKS_STATUS["state.result_state"]) == set(RESULT_STATES)
    assert set(DATABRICKS_STATUS["termination_details.code"]) == set(TERMINATION_CODES)
    assert len(TERMINATION_CODES) == len(set(TERMINATION_CODES)) == 27


S, R, C, F, X = (
    JobState.SUBMITTED,
    JobState.RUNNING,
    JobState.COMPLETED,
    JobState.FAILED,
    JobState.CANCELLED,
)
EXPECTED: dict[str, dict[str, JobState]] = {
    "status.state": {
        "QUEUED": S,
        "PENDING": S,
        "BLOCKED": S,
        "WAITING": S,
        "RUNNING": R,
        "TERMINATING": R,
    },
    "state.life_cycle_state": {
        "QUEUED": S,
        "PENDING": S,
        "BLOCKED": S,
        "WAITING_FOR_RETRY": S,
        "RUNNING": R,
        "TERMINATING": R,
        "SKIPPED": F,
        "INTERNAL_ERROR": F,
    },
    "state.result_state": {
        "SUCCESS": C,
        "SUCCESS_WITH_FAILURES": C,
        "FAILED": F,
        "TIMEDOUT": F,
        "CANCELED": X,
        "MAXIMUM_CONCURRENT_RUNS_REACHED": F,
        "EXCLUDED": F,
        "UPSTREAM_FAILED": F,
        "UPSTREAM_CANCELED": X,
        "DISABLED": X,
    },
    "termination_details.code": {
        **dict.fromkeys(TERMINATION_CODES, F),
        "SUCCESS": C,
        "SUCCESS_WITH_FAILURES": C,
        "USER_CANCELED": X,
        "DISABLED": X,
    },
}


def test_every_documented_value_walks_through_the_table() -> None:
    """Each value on its own field (the deprecated and the newer way), and the observation it gives."""
    walked = 0
    for value, expected in EXPECTED["status.state"].items():
        obs = observe_run(_run(status=value))
        assert (obs.state, obs.vendor_status) == (expected, value)
        walked += 1
    for value, expected in EXPECTED["state.life_cycle_state"].items():
        obs = observe_run(_run(life=value))
        assert obs.state is expected, value
        assert obs.vendor_status == value
        if expected.is_terminal:
            assert (obs.code, obs.message) == (value, "msg")
        walked += 1
    for value, expected in EXPECTED["state.result_state"].items():
        obs = observe_run(_run(life="TERMINATED", result=value))
        assert (obs.state, obs.vendor_status) == (expected, f"TERMINATED/{value}"), value
        assert obs.ended_at == datetime.fromtimestamp(1_700_000_000, tz=UTC)
        if expected is not C:
            assert (obs.code, obs.message) == (value, "msg")
        walked += 1
    for value, expected in EXPECTED["termination_details.code"].items():
        obs = observe_run(_run(status="TERMINATED", code=value, kind="SUCCESS"))
        assert (obs.state, obs.vendor_status) == (expected, f"TERMINATED/{value}"), value
        if expected is not C:
            assert (obs.code, obs.message) == (value, "details")
        walked += 1
    assert walked == 6 + 8 + 10 + 27
    # TERMINATED alone is "ended, outcome decides": without one it is not a terminal reading
    assert observe_run(_run(life="TERMINATED")).state is JobState.RUNNING
    assert observe_run(_run(status="TERMINATED")).state is JobState.RUNNING


@pytest.mark.parametrize(
    ("run", "state", "vendor", "code"),
    [
        # both fields, as runs/get sends them: the newer place, the result_state's outcome
        (_run("TERMINATED", "SUCCESS", "TERMINATED", "SUCCESS", "SUCCESS"), C, "TERMINATED/SUCCESS", None),
        (
            _run("TERMINATED", "CANCELED", "TERMINATED", "USER_CANCELED", "SUCCESS"),
            X,
            "TERMINATED/CANCELED",
            "USER_CANCELED",
        ),
        # a timeout: result TIMEDOUT, termination code CANCELED (the platform) — FAILED either way
        (
            _run("TERMINATED", "TIMEDOUT", "TERMINATED", "CANCELED", "SUCCESS"),
            F,
            "TERMINATED/TIMEDOUT",
            "CANCELED",
        ),
        (_run(status="TERMINATED", code="CANCELED"), F, "TERMINATED/CANCELED", "CANCELED"),
        (
            _run("TERMINATED", "FAILED", "TERMINATED", "RUN_EXECUTION_ERROR", "CLIENT_ERROR"),
            F,
            "TERMINATED/FAILED",
            "RUN_EXECUTION_ERROR",
        ),
        # result_state is absent until the run ends: a TERMINATING run with one stays active
        (_run("TERMINATING", "SUCCESS", "TERMINATING"), R, "TERMINATING", None),
        (_run("WAITING_FOR_RETRY", None, "WAITING"), S, "WAITING", None),
        # the life-cycle states that end a run on their own, seen through the newer field
        (_run("SKIPPED", None, "TERMINATED", "SKIPPED", "SUCCESS"), F, "TERMINATED/SKIPPED", "SKIPPED"),
        (_run("SKIPPED", None, "TERMINATED"), F, "TERMINATED/SKIPPED", "SKIPPED"),
        (_run("INTERNAL_ERROR", "SUCCESS", "TERMINATED"), F, "TERMINATED/INTERNAL_ERROR", "INTERNAL_ERROR"),
        (
            _run("INTERNAL_ERROR", None, "TERMINATED", "CLUSTER_ERROR", "CLOUD_FAILURE"),
            F,
            "TERMINATED/CLUSTER_ERROR",
            "CLUSTER_ERROR",
        ),
        # a code newer than the table with an error type still ends the run
        (
            _run(status="TERMINATED", code="NEW_KIND_OF_FAILURE", kind="CLIENT_ERROR"),
            F,
            "TERMINATED/NEW_KIND_OF_FAILURE",
            "NEW_KIND_OF_FAILURE",
        ),
        # an undocumented newer state falls back to the deprecated one
        (_run("RUNNING", None, "SOMETHING_NEW"), R, "RUNNING", None),
    ],
)
def test_combinations(run: dict[str, Any], state: JobState, vendor: str, code: str | None) -> None:
    obs = observe_run(run)
    assert (obs.state, obs.vendor_status) == (state, vendor)
    if state.is_terminal and state is not C:
        assert obs.code == code


def test_undocumented_values_keep_the_job_active_and_are_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: set[str] = set()
    with caplog.at_level(logging.WARNING, logger="oqc_style_sdk.backends.databricks"):
        for _ in range(3):
            assert observe_run(_run("PAUSED"), seen=seen).state is JobState.SUBMITTED
            assert observe_run({"run_id": 1}, seen=seen).state is JobState.SUBMITTED
            obs = observe_run(_run("TERMINATED", "PARTIAL"), seen=seen)
            assert (obs.state, obs.vendor_status) == (JobState.RUNNING, "TERMINATED/PARTIAL")
            obs = observe_run(_run(status="TERMINATED", code="NEW", kind="SUCCESS"), seen=seen)
            assert obs.state is JobState.RUNNING
    assert len(caplog.records) == 4


async def test_every_documented_value_through_the_emulator(emu: DatabricksEmulator) -> None:
    """The emulator sends each documented value (with the fields it derives) and the backend maps
    it as the table says: the wire path of the same walk."""
    async with sdk_for(emu) as sdk:
        b = sdk.backend
        ref = await b.submit(b.validate(spec(NOTEBOOK)), "walk-1")
        run_id = int(ref.task_id)
        for life, expected in EXPECTED["state.life_cycle_state"].items():
            emu.set_state(run_id, life_cycle_state=life)
            assert (await b.status(ref)).state is expected, life
        for result, expected in EXPECTED["state.result_state"].items():
            emu.set_state(run_id, life_cycle_state="TERMINATED", result_state=result)
            assert (await b.status(ref)).state is expected, result
        for code, expected in EXPECTED["termination_details.code"].items():
            emu.set_state(run_id, status_state="TERMINATED", termination_code=code)
            assert (await b.status(ref)).state is expected, code
        for status, expected in EXPECTED["status.state"].items():
            emu.set_state(run_id, status_state=status)
            assert (await b.status(ref)).state is expected, status


# -- running jobs ----------------------------------------------------------------------------------------


async def test_a_submitted_run_completes_with_its_output(emu: DatabricksEmulator) -> None:
    async with sdk_for(emu) as sdk:
        job = sdk.create_job(program=NOTEBOOK, fetch_diagnostics=True)
        with anyio.fail_after(10):
            await job.execute()
        job.raise_for_status()
        assert (job.state, job.vendor_status, job.target) == (
            JobState.COMPLETED,
            "TERMINATED/SUCCESS",
            "workspace",
        )
        assert isinstance(job.result, JobResult)
        main = job.result.data["main"]
        assert json.loads(main["result"])["parameters"] == {"x": "1"}
        assert main["result_state"] == "SUCCESS"
        assert main["error"] is None
        assert main["run_id"] == emu.task_run_ids(int(job.task_id or 0))["main"]
        assert job.timings is not None
        assert job.timings["run_duration_s"] > 0
        assert job.metadata is not None
        assert job.metadata["run_type"] == "SUBMIT_RUN"
        assert job.metadata["tasks"][0]["task_key"] == "main"
        py = sdk.create_job(program=PYTHON)
        with anyio.fail_after(10):
            await py.execute()
        assert "dbfs:/path/to/file.py" in py.result.data["main"]["logs"]  # type: ignore[union-attr]
    tokens = [e.body["idempotency_token"] for e in emu.exchanges if e.path == f"{API}/runs/submit"]
    assert len(set(tokens)) == 2
    assert all(0 < len(token) <= 64 for token in tokens)


async def test_run_now_of_a_multi_task_job(emu: DatabricksEmulator) -> None:
    async with sdk_for(emu) as sdk:
        job = sdk.create_job(program={"job_id": 103}, config={"python_params": ["--fast"]})
        with anyio.fail_after(10):
            await job.execute()
        assert job.completed
        data = job.result.data  # type: ignore[union-attr]
        assert list(data) == ["ingest", "report"]
        assert '["--fast"]' in data["ingest"]["logs"]
        assert json.loads(data["report"]["result"])["task_key"] == "report"
    (posted,) = [e for e in emu.exchanges if e.path == f"{API}/run-now"]
    assert posted.body["job_id"] == 103
    assert posted.body["python_params"] == ["--fast"]
    assert posted.body["idempotency_token"].startswith("oqcs-")


async def test_an_unknown_job_is_a_rejected_submission(emu: DatabricksEmulator) -> None:
    async with sdk_for(emu) as sdk:
        job = sdk.create_job(program={"job_id": 999})
        await job.execute(timeout_s=10)
        assert job.state is JobState.FAILED
        assert isinstance(job.error, JobError)
        assert job.error.code == "INVALID_PARAMETER_VALUE"
        assert "Job 999 does not exist" in job.error.message


async def test_cancel_a_running_run(emulator_factory: EmulatorFactory) -> None:
    running = emulator_factory("databricks", job_duration_s=30, pending_s=0, cancel_duration_s=0.1)
    async with running as emu, sdk_for(emu) as sdk:
        job = sdk.create_job(program=NOTEBOOK)
        await job.submit()
        assert await job.refresh() is JobState.RUNNING
        with anyio.fail_after(10):
            assert await job.cancel("not needed") is JobState.CANCELLED
        assert job.vendor_status == "TERMINATED/CANCELED"
        (entry,) = job.history
        assert isinstance(entry, JobCancellation)
        assert entry.reason == "not needed"
        with pytest.raises(Exception, match="cancelled"):
            job.raise_for_status()


async def test_a_failed_run_reports_the_vendors_message_and_code(emulator_factory: EmulatorFactory) -> None:
    async with emulator_factory("databricks", job_duration_s=30) as emu:
        assert isinstance(emu, DatabricksEmulator)
        async with sdk_for(emu) as sdk:
            job = sdk.create_job(program=NOTEBOOK)
            await job.submit()
            emu.set_state(
                int(job.task_id or 0),
                life_cycle_state="TERMINATED",
                result_state="FAILED",
                termination_code="LIBRARY_INSTALLATION_ERROR",
                state_message="Library installation failed",
            )
            await job.wait(timeout_s=10)
            assert job.state is JobState.FAILED
            assert isinstance(job.error, JobError)
            assert (job.error.code, job.error.message) == (
                "LIBRARY_INSTALLATION_ERROR",
                "Library installation failed",
            )


async def test_a_run_the_workspace_forgot_is_not_found(emu: DatabricksEmulator) -> None:
    async with sdk_for(emu) as sdk:
        b = sdk.backend
        with pytest.raises(NotFoundError, match="Run 424242 does not exist") as caught:
            await b.status(RunRef("424242"))
        assert (caught.value.status, caught.value.vendor_code) == (400, "INVALID_PARAMETER_VALUE")
        with pytest.raises(NotFoundError):
            await b.status(RunRef("not-a-number"))
        with pytest.raises(NotFoundError):
            await b.cancel(RunRef("424242"))
        out = await b.statuses([RunRef("424242"), RunRef("424243")])
        assert all(isinstance(value, NotFoundError) for value in out.values())


# -- a lost answer, throttling ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["fail_after_processing", "drop_after_processing"])
@pytest.mark.parametrize("program", [NOTEBOOK, {"job_id": 101}])
async def test_a_submission_retried_after_a_lost_answer_makes_one_run(
    emu: DatabricksEmulator, fault: str, program: dict[str, Any]
) -> None:
    path = "/run-now" if "job_id" in program else "/runs/submit"
    if fault == "fail_after_processing":
        emu.fail_after_processing_next(1, status=503, path=path)
    else:
        emu.drop_next(1, path=path, after_processing=True)
    async with sdk_for(emu) as sdk:
        job = sdk.create_job(program=program)
        with anyio.fail_after(10):
            await job.execute()
        assert job.completed
    posts = [r for r in emu.requests if r.method == "POST" and r.path.endswith(path)]
    assert len(posts) == 2
    assert posts[0].fault is not None
    assert posts[0].body["idempotency_token"] == posts[1].body["idempotency_token"]
    assert emu.runs_created == 1
    assert emu.run_ids == [int(job.task_id or 0)]


async def test_a_job_creation_rate_limit_does_not_fail_the_job(emu: DatabricksEmulator) -> None:
    body = {
        "error_code": "INVALID_STATE",
        "message": "Cannot create run: exceeding rate limit: 1000 job creations per 3600 seconds",
    }
    emu.fail_next(1, status=400, path="/runs/submit", body=body)
    async with sdk_for(emu) as sdk:
        job = sdk.create_job(program=NOTEBOOK)
        with pytest.raises(RateLimitedError, match="rate limit"):
            await job.execute(timeout_s=10)
        assert job.state is JobState.CREATED  # not failed: it can be sent again, same token
        await job.execute(timeout_s=10)
        assert job.completed
    tokens = [r.body["idempotency_token"] for r in emu.requests if r.path.endswith("/runs/submit")]
    assert len(tokens) == 2
    assert len(set(tokens)) == 1
    assert emu.runs_created == 1


async def test_429_with_retry_after_is_waited_out(emu: DatabricksEmulator) -> None:
    async with sdk_for(emu) as sdk:
        job = sdk.create_job(program=NOTEBOOK)
        await job.submit()
        emu.fail_next(2, status=429, path="/runs/get", retry_after=0.05)
        assert await job.refresh(timeout_s=10) in (JobState.SUBMITTED, JobState.RUNNING, JobState.COMPLETED)
    assert calls(emu, "GET", "runs/get") == 3


# -- batched status reads --------------------------------------------------------------------------------


async def test_statuses_read_many_runs_with_one_list_page(emulator_factory: EmulatorFactory) -> None:
    async with emulator_factory("databricks", job_duration_s=60) as emu:
        assert isinstance(emu, DatabricksEmulator)
        async with sdk_for(emu) as sdk:
            b = sdk.backend
            valid = b.validate(spec(NOTEBOOK))
            refs = [await b.submit(valid, f"key-{i}") for i in range(30)]
            emu.clear_log()
            out = await b.statuses(refs)
            assert all(state_in(out, ref) is JobState.SUBMITTED for ref in refs)
            assert set(out) == {ref.task_id for ref in refs}
            # 30 active runs: two pages of 25, no runs/get
            assert [r.path for r in emu.requests] == [f"{API}/runs/list"] * 2
            assert emu.requests[0].query == {"active_only": "true", "limit": "25"}
            assert "page_token" in emu.requests[1].query
            for ref in refs[:5]:
                emu.set_state(int(ref.task_id), life_cycle_state="TERMINATED", result_state="SUCCESS")
            emu.set_state(int(refs[5].task_id), life_cycle_state="RUNNING")
            emu.clear_log()
            out = await b.statuses(refs)
            assert [state_in(out, ref) for ref in refs[:6]] == [JobState.COMPLETED] * 5 + [JobState.RUNNING]
            # one page of the 25 still active, then runs/get for the 5 that left the list
            paths = [r.path for r in emu.requests]
            assert paths.count(f"{API}/runs/list") == 1
            assert paths.count(f"{API}/runs/get") == 5
            # a single run is read directly (one runs/get is as cheap as one page, and exact)
            emu.clear_log()
            await b.statuses(refs[6:7])
            assert [r.path for r in emu.requests] == [f"{API}/runs/get"]


async def test_a_busy_workspace_costs_no_more_than_reading_each_run(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory("databricks", job_duration_s=60) as emu:
        assert isinstance(emu, DatabricksEmulator)
        async with sdk_for(emu) as sdk:
            b = sdk.backend
            valid = b.validate(spec(NOTEBOOK))
            mine = [await b.submit(valid, f"mine-{i}") for i in range(3)]
            for i in range(100):  # other people's runs, newer than ours
                await b.submit(valid, f"theirs-{i}")
            emu.clear_log()
            out = await b.statuses(mine)
            assert set(out) == {ref.task_id for ref in mine}
            assert len(emu.requests) <= 2 * len(mine)


async def test_many_waiting_jobs_cost_about_one_list_request_per_tick(emu: DatabricksEmulator) -> None:
    async with sdk_for(emu) as sdk:
        jobs = [sdk.create_job(program=NOTEBOOK) for _ in range(12)]
        for job in jobs:
            await job.submit()
        emu.clear_log()
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                for job in jobs:
                    tg.start_soon(job.wait)
        assert all(job.completed for job in jobs)
        ticks = sdk.poller.ticks
    lists = calls(emu, "GET", "runs/list")
    gets = calls(emu, "GET", "runs/get")
    outputs = calls(emu, "GET", "runs/get-output")
    assert outputs == 12
    assert lists >= 1
    # one list page per tick at most (12 runs < 25); a runs/get when one run alone is due, and one
    # per run to learn how it ended once it left the active list (rarely twice, if a tick comes
    # before its waiter has left)
    assert lists <= ticks
    assert gets <= ticks + 2 * 12
    assert lists + gets < 12 * ticks / 2  # far fewer than one read per job per tick


# -- start-up, secrets, persistence -----------------------------------------------------------------------


async def test_start_up_checks_the_host_and_the_token(emu: DatabricksEmulator) -> None:
    with pytest.raises(AuthenticationError) as caught:
        async with Sdk("databricks", host=emu.base_url, token="dapi-wrong-token-000"):
            pass
    assert caught.value.status == 401
    assert caught.value.vendor_code == "PERMISSION_DENIED"
    port = emu.port
    await emu.stop()
    with pytest.raises(BackendUnavailableError, match="cannot reach Azure Databricks"):
        async with Sdk("databricks", host=f"http://127.0.0.1:{port}", token="dapi-x"):
            pass


async def test_the_token_never_shows(
    emu: DatabricksEmulator, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    token = emu.token
    with caplog.at_level(logging.DEBUG):
        async with sdk_for(emu) as sdk:
            job = sdk.create_job(program=NOTEBOOK)
            await job.execute(timeout_s=10)
            saved = await job.save(tmp_path / "job.json")
            assert isinstance(sdk.backend, DatabricksBackend)
            texts = [repr(sdk), repr(sdk.backend), repr(job), repr(sdk.backend.http), str(job.outputs)]
        async with Sdk("databricks", host=emu.base_url, token=Secret(token), retry=QUICK_RETRY) as again:
            assert token not in repr(again.backend)
        emu.fail_next(
            2, status=403, body={"error_code": "PERMISSION_DENIED", "message": f"bad token {token}"}
        )
        with pytest.raises(AuthenticationError) as caught:
            async with sdk_for(emu):
                pass
    texts += [str(caught.value), repr(caught.value.details), saved.read_text()]
    texts += [record.getMessage() for record in caplog.records]
    assert not [text for text in texts if token in text]
    assert "***" in str(caught.value)


async def test_a_saved_job_is_resumed_by_another_sdk(emu: DatabricksEmulator, tmp_path: Path) -> None:
    async with sdk_for(emu) as sdk:
        job = sdk.create_job(program={"job_id": 102})
        await job.submit()
        path = await job.save(tmp_path / "job.json")
    async with sdk_for(emu) as sdk:
        resumed = await sdk.load(path)
        assert isinstance(resumed, Job)
        with anyio.fail_after(10):
            await resumed.wait()
        assert resumed.completed
        assert resumed.task_id == job.task_id
    assert emu.runs_created == 1
