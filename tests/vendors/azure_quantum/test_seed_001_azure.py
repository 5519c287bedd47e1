"""Seed 001 — Azure Quantum's "cancel a running job" workflow — as ``job.cancel()`` on ``azure_quantum``.

The seed (``seeds/001_d120ef2a5adae25b.txt``, Arazzo 1.0.1) has three steps:

``getJob``            Jobs_Get; ``stillRunning`` (status not Succeeded/Failed/Cancelled) → ``cancelJob``,
                      ``alreadyTerminal`` → ``confirmCancelled``.
``cancelJob``         Jobs_Cancel (success: 200); then, by step order, ``confirmCancelled``.
``confirmCancelled``  Jobs_Get, repeated while the status is CancellationRequested or Cancelling.

``job.cancel()`` is that workflow: one read; the cancel request only while the job is active; then
reads until the job is terminal — CancellationRequested and Cancelling keep it active. Where it
departs from the seed's letter, on purpose:

- On an already-terminal job the seed reads once more (``alreadyTerminal`` goes to
  ``confirmCancelled``); ``cancel()`` stops after the one read that showed the end (a second read
  could not change a terminal status). A job that Succeeded has its result downloaded (the output
  blob), since the finished state wins and keeps its result.
- ``Completed`` is terminal (the spec's and azure-quantum's reading); the seed's ``stillRunning``
  condition would send Jobs_Cancel for it.
- With an api-version before 2025-12-01-preview, Jobs_Cancel does not exist: ``DELETE`` (204) cancels.

Each test asserts the exact sequence of requests the emulator received, the statuses it sent, and
the job's final state.
"""

from __future__ import annotations

import re
from typing import Any

import anyio
import pytest

from oqc_style_sdk import Sdk
from oqc_style_sdk.job_output import JobCancellation, JobError, JobResult
from oqc_style_sdk.state import JobState
from oqc_style_sdk.testing.azure_quantum import AzureQuantumEmulator
from oqc_style_sdk.testing.pytest_plugin import EmulatorFactory
from tests.common import BELL3, FAST

PROGRESSION = ("CancellationRequested", "Cancelling")


def sequence(emu: AzureQuantumEmulator) -> list[tuple[str, str, int | None]]:
    """The logged requests as (method, path relative to the workspace or storage, status)."""
    out = []
    for request in emu.requests:
        path = request.path.removeprefix(emu.workspace_path)
        path = re.sub(r"^/devstoreaccount1/job-[0-9a-f-]{36}/", "blob:", path)
        path = re.sub(r"/jobs/[0-9a-f-]{36}", "/jobs/{id}", path)
        out.append((request.method, path, request.status))
    return out


def reported(emu: AzureQuantumEmulator) -> list[tuple[str, str]]:
    return [(r.operation, r.status) for r in emu.reported]


async def wait_for(emu: AzureQuantumEmulator, job_id: str, status: str) -> None:
    with anyio.fail_after(10):
        while True:
            if await emu.status_of(job_id) == status:
                return
            await anyio.sleep(0.01)


async def submitted(sdk: Sdk, emu: AzureQuantumEmulator) -> tuple[Any, str]:
    job = sdk.create_job(program=BELL3, target="ionq.simulator", config={"shots": 20})
    await job.submit()
    assert job.task_id is not None
    return job, job.task_id


# -- stillRunning → cancelJob → confirmCancelled (looping while the cancel is in progress) ----------


@pytest.mark.parametrize(
    "initial", ["Executing", "Waiting", "Queued", "Finishing", "CancellationRequested", "Cancelling"]
)
async def test_running_job_is_cancelled_and_confirmed(
    emulator_factory: EmulatorFactory, initial: str
) -> None:
    async with emulator_factory("azure_quantum", job_duration_s=30, cancel_progression=PROGRESSION) as emu:
        assert isinstance(emu, AzureQuantumEmulator)
        async with Sdk("azure_quantum", polling=FAST, **emu.credentials) as sdk:
            job, job_id = await submitted(sdk, emu)
            await wait_for(emu, job_id, "Executing")
            if initial != "Executing":
                await emu.set_status(job_id, initial)
            emu.clear_log()
            emu.reported.clear()
            final = await job.cancel(reason="seed 001", timeout_s=10)
        assert sequence(emu) == [
            ("GET", "/jobs/{id}", 200),  # getJob: still running
            ("POST", "/jobs/{id}:cancel", 200),  # cancelJob
            ("GET", "/jobs/{id}", 200),  # confirmCancelled: CancellationRequested, again
            ("GET", "/jobs/{id}", 200),  # Cancelling, again
            ("GET", "/jobs/{id}", 200),  # Cancelled: done
        ]
        assert reported(emu) == [
            ("get", initial),
            ("cancel", "CancellationRequested"),
            ("get", "CancellationRequested"),
            ("get", "Cancelling"),
            ("get", "Cancelled"),
        ]
        assert final is JobState.CANCELLED
        assert job.state is JobState.CANCELLED
        assert job.vendor_status == "Cancelled"
        assert isinstance(job.history[-1], JobCancellation)
        assert job.history[-1].reason == "seed 001"
        assert len(job.history) == 1


async def test_cancel_confirmed_at_once_when_the_service_cancels_at_once(
    emulator_factory: EmulatorFactory,
) -> None:
    """The official example's behaviour: Jobs_Cancel answers Cancelled; one confirming read."""
    async with emulator_factory("azure_quantum", job_duration_s=30) as emu:
        assert isinstance(emu, AzureQuantumEmulator)
        async with Sdk("azure_quantum", polling=FAST, **emu.credentials) as sdk:
            job, job_id = await submitted(sdk, emu)
            await wait_for(emu, job_id, "Executing")
            emu.clear_log()
            emu.reported.clear()
            assert await job.cancel(timeout_s=10) is JobState.CANCELLED
        assert sequence(emu) == [
            ("GET", "/jobs/{id}", 200),
            ("POST", "/jobs/{id}:cancel", 200),
            ("GET", "/jobs/{id}", 200),
        ]
        assert reported(emu) == [("get", "Executing"), ("cancel", "Cancelled"), ("get", "Cancelled")]


async def test_running_job_with_an_older_api_version_is_cancelled_with_delete(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory("azure_quantum", job_duration_s=30, cancel_progression=PROGRESSION) as emu:
        assert isinstance(emu, AzureQuantumEmulator)
        async with Sdk(
            "azure_quantum", polling=FAST, api_version="2024-03-01-preview", **emu.credentials
        ) as sdk:
            job, job_id = await submitted(sdk, emu)
            await wait_for(emu, job_id, "Executing")
            emu.clear_log()
            emu.reported.clear()
            assert await job.cancel(timeout_s=10) is JobState.CANCELLED
        assert sequence(emu) == [
            ("GET", "/jobs/{id}", 200),
            ("DELETE", "/jobs/{id}", 204),
            ("GET", "/jobs/{id}", 200),
            ("GET", "/jobs/{id}", 200),
            ("GET", "/jobs/{id}", 200),
        ]
        assert reported(emu) == [
            ("get", "Executing"),
            ("get", "CancellationRequested"),
            ("get", "Cancelling"),
            ("get", "Cancelled"),
        ]


# -- alreadyTerminal: one read, no cancel ----------------------------------------------------------


@pytest.mark.parametrize("terminal", ["Succeeded", "Completed", "Failed", "Cancelled"])
async def test_terminal_job_is_read_once_and_not_cancelled(
    emulator_factory: EmulatorFactory, terminal: str
) -> None:
    succeeded = terminal in ("Succeeded", "Completed")
    duration = 0.01 if succeeded else 30
    async with emulator_factory(
        "azure_quantum", job_duration_s=duration, cancel_progression=PROGRESSION
    ) as emu:
        assert isinstance(emu, AzureQuantumEmulator)
        async with Sdk("azure_quantum", polling=FAST, **emu.credentials) as sdk:
            job, job_id = await submitted(sdk, emu)
            if succeeded:
                await wait_for(emu, job_id, "Succeeded")  # the run ended: its output blob exists
            if terminal != "Succeeded":
                await emu.set_status(job_id, terminal, error_code="E1", error_message="it broke")
            assert job.state is JobState.SUBMITTED  # the job has not seen the end yet
            emu.clear_log()
            emu.reported.clear()
            final = await job.cancel(timeout_s=10)
        expected = [("GET", "/jobs/{id}", 200)]  # getJob: already terminal
        if succeeded:
            expected.append(("GET", "blob:rawOutputData", 200))  # the result is kept, so it is read
        assert sequence(emu) == expected
        assert reported(emu) == [("get", terminal)]
        assert not any(r.method in ("POST", "DELETE") for r in emu.requests)
        assert job.vendor_status == terminal
        if succeeded:
            assert final is JobState.COMPLETED
            assert isinstance(job.history[-1], JobResult)
            assert sum(job.history[-1].data["c"].values()) == 20
        elif terminal == "Failed":
            assert final is JobState.FAILED
            assert isinstance(job.history[-1], JobError)
            assert (job.history[-1].message, job.history[-1].code) == ("it broke", "E1")
        else:
            assert final is JobState.CANCELLED
            assert isinstance(job.history[-1], JobCancellation)


async def test_a_job_known_to_be_terminal_or_never_sent_costs_no_request(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory("azure_quantum") as emu:
        assert isinstance(emu, AzureQuantumEmulator)
        async with Sdk("azure_quantum", polling=FAST, **emu.credentials) as sdk:
            done = sdk.create_job(program=BELL3, target="ionq.simulator", config={"shots": 5})
            await done.execute(timeout_s=10)
            never = sdk.create_job(program=BELL3, target="ionq.simulator")
            emu.clear_log()
            assert await done.cancel(timeout_s=5) is JobState.COMPLETED
            assert await never.cancel(timeout_s=5) is JobState.CANCELLED
        assert emu.requests == []
