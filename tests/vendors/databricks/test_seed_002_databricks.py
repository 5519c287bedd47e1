"""Seed 002 ("Azure Databricks — Cancel an Active Job Run", Arazzo) as ``job.cancel()`` behaviour.

The seed's workflow: ``readRun`` (GET runs/get), ``cancelRun`` (POST runs/cancel: asynchronous, the
run may still be running afterwards), then ``pollRun`` (GET runs/get) again and again until
``life_cycle_state`` is TERMINATED. Its page is kept verbatim in
``tests/data/databricks/seed_002_cancel_active_run.txt`` and its steps are read from there.

Where ``job.cancel()`` goes beyond the seed (see LESSONS.md):
- the seed's polls have no delay; ours are paced by the poller (and bounded by the cancel deadline);
- the seed reads once and cancels whatever it saw; we cancel only a run that is still active — a run
  that ended first keeps its outcome (one read, no cancel);
- the seed's ``pollRun`` ends (neither of its branches matches) on QUEUED, BLOCKED,
  WAITING_FOR_RETRY or SKIPPED after one read; ours keeps polling while the run is active (QUEUED,
  BLOCKED, WAITING_FOR_RETRY, PENDING, RUNNING, TERMINATING) and stops on a terminal state (SKIPPED
  and INTERNAL_ERROR included).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import anyio
import pytest
import yaml

from oqc_style_sdk import Sdk
from oqc_style_sdk._http import RetryPolicy
from oqc_style_sdk.job_output import JobCancellation, JobError, JobResult
from oqc_style_sdk.polling import PollingPolicy
from oqc_style_sdk.state import JobState
from oqc_style_sdk.testing.databricks import DatabricksEmulator
from oqc_style_sdk.testing.emulator import REDACTED, Emulator, LoggedRequest
from oqc_style_sdk.testing.pytest_plugin import EmulatorFactory
from tests.common import DATA

SEED = DATA / "databricks" / "seed_002_cancel_active_run.txt"
API = "/api/2.2/jobs"
#: The seed's operations (from its "azureDatabricksApi" description) as Jobs API calls.
OPERATIONS = {"getJobRun": ("GET", f"{API}/runs/get"), "cancelJobRun": ("POST", f"{API}/runs/cancel")}
MIN_INTERVAL_S = 0.05
POLLING = PollingPolicy(min_interval_s=MIN_INTERVAL_S, max_interval_s=0.2)
CANCEL_S = 0.3
SPEC: dict[str, Any] = {
    "run_name": "seed-002",
    "tasks": [
        {
            "task_key": "main",
            "existing_cluster_id": "0923-164208-meows279",
            "notebook_task": {"notebook_path": "/Users/me@example.com/long-running"},
        }
    ],
}


def seed_workflow() -> dict[str, Any]:
    text = SEED.read_text(encoding="utf-8")
    document = yaml.safe_load(text[text.index("arazzo: 1.0.1") :])
    (workflow,) = document["workflows"]
    assert isinstance(workflow, dict)
    return workflow


def sdk_for(emu: Emulator, polling: PollingPolicy = POLLING) -> Sdk:
    assert isinstance(emu, DatabricksEmulator)
    return Sdk("databricks", polling=polling, retry=RetryPolicy(base_delay_s=0.01), **emu.credentials)


def step_of(entry: LoggedRequest, seen_cancel: bool) -> str:
    """The seed step a logged request is (``readRun`` and ``pollRun`` are the same call)."""
    call = (entry.method, entry.path)
    if call == OPERATIONS["cancelJobRun"]:
        return "cancelRun"
    if call == OPERATIONS["getJobRun"]:
        return "pollRun" if seen_cancel else "readRun"
    return f"{entry.method} {entry.path}"


def steps(emu: DatabricksEmulator) -> list[str]:
    out: list[str] = []
    for entry in emu.requests:
        out.append(step_of(entry, "cancelRun" in out))
    return out


def test_the_seed_is_read_run_cancel_run_poll_run() -> None:
    workflow = seed_workflow()
    assert workflow["workflowId"] == "cancel-active-run"
    assert [(s["stepId"], s["operationId"]) for s in workflow["steps"]] == [
        ("readRun", "getJobRun"),
        ("cancelRun", "cancelJobRun"),
        ("pollRun", "getJobRun"),
    ]
    poll = workflow["steps"][2]
    branches = {action["name"]: action for action in poll["onSuccess"]}
    assert branches["stillActive"]["stepId"] == "pollRun"  # the loop
    assert "TERMINATED" in branches["cancelled"]["criteria"][0]["condition"]
    assert workflow["steps"][1]["requestBody"]["payload"] == {"run_id": "$inputs.runId"}


async def test_cancelling_a_running_run_follows_the_seed_with_paced_polls(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory(
        "databricks", job_duration_s=60, pending_s=0, cancel_duration_s=CANCEL_S
    ) as emu:
        assert isinstance(emu, DatabricksEmulator)
        async with sdk_for(emu) as sdk:
            job = sdk.create_job(program=SPEC)
            await job.submit()
            assert await job.refresh() is JobState.RUNNING
            run_id = int(job.task_id or 0)
            emu.clear_log()
            emu.exchanges.clear()
            with anyio.fail_after(10):
                assert await job.cancel("seed 002") is JobState.CANCELLED
        log = list(emu.requests)
        answers = [e.answer for e in emu.exchanges]
    # the request sequence: readRun, cancelRun, then pollRun k times until TERMINATED
    seen = steps(emu)
    k = len(seen) - 2
    assert seen == ["readRun", "cancelRun"] + ["pollRun"] * k
    bound = 2 + math.ceil(CANCEL_S / (MIN_INTERVAL_S * (1 - POLLING.jitter)))
    assert 2 <= k <= bound, seen
    # every request names the run as the seed does, with the bearer token (redacted in the log)
    assert log[0].query == {"run_id": str(run_id)}
    assert log[1].body == {"run_id": run_id}
    assert all(entry.query == {"run_id": str(run_id)} for entry in log[2:])
    assert all(entry.headers["Authorization"] == REDACTED for entry in log)
    # paced: after the first confirmation read, polls are at least the poller's interval apart
    polls = [entry.time for entry in log[2:]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(polls)]
    assert min(gaps) >= MIN_INTERVAL_S * (1 - POLLING.jitter) * 0.95, gaps
    # the seed's branches: every poll but the last is "stillActive", the last is "cancelled"
    assert answers[1] == {}  # runs/cancel
    lives = [answer["state"]["life_cycle_state"] for answer in answers[:1] + answers[2:]]
    assert lives[0] == "RUNNING"
    assert all(life in ("RUNNING", "TERMINATING", "PENDING") for life in lives[1:-1])
    assert (lives[-1], answers[-1]["state"]["result_state"]) == ("TERMINATED", "CANCELED")
    assert job.vendor_status == "TERMINATED/CANCELED"
    (entry,) = job.history
    assert isinstance(entry, JobCancellation)
    assert entry.reason == "seed 002"


@pytest.mark.parametrize(
    ("forced", "state", "code"),
    [
        ({"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"}, JobState.COMPLETED, None),
        (
            {"life_cycle_state": "TERMINATED", "result_state": "FAILED"},
            JobState.FAILED,
            "RUN_EXECUTION_ERROR",
        ),
        ({"life_cycle_state": "TERMINATED", "result_state": "CANCELED"}, JobState.CANCELLED, None),
        ({"life_cycle_state": "SKIPPED"}, JobState.FAILED, "SKIPPED"),
        ({"life_cycle_state": "INTERNAL_ERROR"}, JobState.FAILED, "INTERNAL_ERROR"),
    ],
)
async def test_a_run_that_already_ended_is_read_once_and_not_cancelled(
    emulator_factory: EmulatorFactory, forced: dict[str, Any], state: JobState, code: str | None
) -> None:
    async with emulator_factory("databricks", job_duration_s=60) as emu:
        assert isinstance(emu, DatabricksEmulator)
        async with sdk_for(emu) as sdk:
            job = sdk.create_job(program=SPEC)
            await job.submit()
            emu.set_state(int(job.task_id or 0), **forced)  # ended at the vendor; the job does not know
            emu.clear_log()
            with anyio.fail_after(10):
                assert await job.cancel() is state
            # a job that already knows it ended sends nothing at all
            before = len(emu.requests)
            assert await job.cancel() is state
            assert len(emu.requests) == before
    seen = steps(emu)
    assert seen.count("readRun") == 1
    assert "cancelRun" not in seen
    if state is JobState.COMPLETED:  # the finished state wins, with its result
        assert seen == ["readRun", f"GET {API}/runs/get-output"]
        assert isinstance(job.result, JobResult)
        assert "main" in job.result.data
    else:
        assert seen == ["readRun"]
    if state is JobState.FAILED:
        assert isinstance(job.error, JobError)
        assert job.error.code == code


@pytest.mark.parametrize(
    "held", ["QUEUED", "BLOCKED", "WAITING_FOR_RETRY", "PENDING", "RUNNING", "TERMINATING"]
)
async def test_queued_blocked_and_waiting_runs_are_cancellable_and_stay_active_until_terminal(
    emulator_factory: EmulatorFactory, held: str
) -> None:
    async with emulator_factory("databricks", job_duration_s=60, cancel_duration_s=30) as emu:
        assert isinstance(emu, DatabricksEmulator)
        async with sdk_for(emu, PollingPolicy(min_interval_s=0.01, max_interval_s=0.04)) as sdk:
            job = sdk.create_job(program=SPEC)
            await job.submit()
            run_id = int(job.task_id or 0)
            emu.set_state(run_id, life_cycle_state=held)
            for _ in range(3):  # held there, the job stays active
                assert (await job.refresh()).is_active
            assert job.vendor_status == {"WAITING_FOR_RETRY": "WAITING"}.get(held, held)
            emu.clear_log()
            emu.exchanges.clear()
            outcome: list[JobState] = []

            async def cancel() -> None:
                outcome.append(await job.cancel())

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(cancel)
                    await emu.wait_for_exchanges("POST", "runs/cancel")
                    # the platform keeps the run in that state for a while after the cancel
                    emu.set_state(run_id, life_cycle_state=held)
                    await emu.wait_for_exchanges("GET", "runs/get", count=1 + 4)  # readRun + 4 polls
                    assert job.state.is_active
                    assert not outcome
                    emu.set_state(run_id, life_cycle_state="TERMINATED", result_state="CANCELED")
        assert outcome == [JobState.CANCELLED]
    seen = steps(emu)
    assert seen[:2] == ["readRun", "cancelRun"]
    assert set(seen[2:]) == {"pollRun"}
    (entry,) = job.history
    assert isinstance(entry, JobCancellation)
