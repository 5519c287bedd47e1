"""Seed 000 ("IBM Quantum Cancel Running Job", Arazzo) as the behaviour of ``job.cancel()``.

The seed's workflow: ``getJobStatus`` (GET the job) — if it is Queued or Running, ``cancelJob`` (POST
``/jobs/{id}/cancel``, 204) then ``confirmCancelled`` (GET the job); if it is already terminal, end
without a cancel. ``job.cancel()`` takes the same branches against the IBM Quantum emulator; each
test asserts the exact requests the emulator saw and the job's final state. Where the seed reads the
job once to confirm (it may still say Running), ``cancel()`` reads until the job has ended.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from oqc_style_sdk import Job, JobCancellation, JobState, Sdk
from oqc_style_sdk.testing.ibm_quantum import IbmQuantumEmulator
from tests.common import BELL3 as BELL
from tests.common import FAST

BOUND_S = 10


@asynccontextmanager
async def ibm(**options: Any) -> AsyncIterator[tuple[IbmQuantumEmulator, Sdk]]:
    async with IbmQuantumEmulator(max_lifetime_s=60, **options) as emu:
        credentials = emu.credentials
        async with Sdk("ibm_quantum", default_target="ibm_fez", polling=FAST, **credentials) as sdk:
            with anyio.fail_after(BOUND_S):
                yield emu, sdk


async def submitted(sdk: Sdk) -> tuple[Job, str]:
    job = sdk.create_job(program=BELL, config={"shots": 100})
    await job.submit()
    assert job.task_id is not None
    return job, job.task_id


async def until_status(emu: IbmQuantumEmulator, job_id: str, *statuses: str) -> None:
    while True:  # the emulator changes state as its engine runs: nothing to wait on but time
        if await emu.status_of(job_id) in statuses:
            return
        await anyio.sleep(0.01)


def wire(emu: IbmQuantumEmulator) -> list[tuple[str, str, int | None]]:
    """The requests since the log was cleared: (method, path relative to /api/v1, status)."""
    return [(r.method, r.path.removeprefix("/api/v1"), r.status) for r in emu.requests]


def assert_cancel_sequence(log: list[tuple[str, str, int | None]], job_id: str) -> None:
    """getJobStatus → cancelJob (204) → confirm: GET the job until it reads Cancelled."""
    job = f"/jobs/{job_id}"
    assert log[:2] == [("GET", job, 200), ("POST", f"{job}/cancel", 204)]
    assert len(log) >= 3
    assert log[2:] == [("GET", job, 200)] * (len(log) - 2)


@pytest.mark.parametrize("cancel_delay_s", [0.0, 0.3], ids=["immediate", "cancelled-after-a-while"])
async def test_queued_job_is_read_cancelled_and_confirmed(cancel_delay_s: float) -> None:
    async with ibm(job_duration_s=30, max_concurrency=1, cancel_delay_s=cancel_delay_s) as (emu, sdk):
        _blocker, _ = await submitted(sdk)
        job, job_id = await submitted(sdk)
        assert await emu.status_of(job_id) == "Queued"
        emu.clear_log()
        assert await job.cancel("not needed", timeout_s=BOUND_S) is JobState.CANCELLED
        log = wire(emu)
        assert_cancel_sequence(log, job_id)
        if cancel_delay_s:
            assert len(log) >= 4  # the first confirmation read still said Queued: read again
        assert job.vendor_status == "Cancelled"
        assert isinstance(job.outputs[0], JobCancellation)
        assert job.outputs[0].reason == "not needed"
        assert await emu.status_of(job_id) == "Cancelled"


@pytest.mark.parametrize("cancel_delay_s", [0.0, 0.3], ids=["immediate", "cancelled-after-a-while"])
async def test_running_job_is_read_cancelled_and_confirmed(cancel_delay_s: float) -> None:
    async with ibm(job_duration_s=30, cancel_delay_s=cancel_delay_s) as (emu, sdk):
        job, job_id = await submitted(sdk)
        await until_status(emu, job_id, "Running")
        emu.clear_log()
        assert await job.cancel(timeout_s=BOUND_S) is JobState.CANCELLED
        log = wire(emu)
        assert_cancel_sequence(log, job_id)
        if cancel_delay_s:
            assert len(log) >= 4
        assert (job.state, job.vendor_status) == (JobState.CANCELLED, "Cancelled")
        assert job.result is None


async def test_a_job_completed_at_ibm_is_read_not_cancelled_and_keeps_its_result() -> None:
    async with ibm(job_duration_s=0.05) as (emu, sdk):
        job, job_id = await submitted(sdk)
        await until_status(emu, job_id, "Completed")
        emu.clear_log()
        assert await job.cancel(timeout_s=BOUND_S) is JobState.COMPLETED
        # getJobStatus, then the finished state wins: its result is fetched, no cancel is sent.
        assert wire(emu) == [("GET", f"/jobs/{job_id}", 200), ("GET", f"/jobs/{job_id}/results", 200)]
        assert job.result is not None
        assert sum(job.result.data["c"].values()) == 100


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("Failed", JobState.FAILED),
        ("Cancelled", JobState.CANCELLED),
        ("Cancelled - Ran too long", JobState.FAILED),
    ],
)
async def test_a_job_ended_at_ibm_is_read_once_and_not_cancelled(status: str, state: JobState) -> None:
    async with ibm(job_duration_s=30) as (emu, sdk):
        job, job_id = await submitted(sdk)
        await emu.set_status(job_id, status)
        emu.clear_log()
        assert await job.cancel(timeout_s=BOUND_S) is state
        assert wire(emu) == [("GET", f"/jobs/{job_id}", 200)]
        assert job.vendor_status == status


async def test_a_job_known_to_have_ended_sends_nothing() -> None:
    async with ibm(job_duration_s=0.05) as (emu, sdk):
        job, _ = await submitted(sdk)
        await job.wait()
        emu.clear_log()
        assert await job.cancel() is JobState.COMPLETED
        assert await job.cancel_if_active() is False
        assert wire(emu) == []


async def test_a_job_never_submitted_is_cancelled_without_a_request() -> None:
    async with ibm() as (emu, sdk):
        job = sdk.create_job(program=BELL)
        emu.clear_log()
        assert await job.cancel() is JobState.CANCELLED
        assert wire(emu) == []


async def test_a_job_that_ends_between_the_read_and_the_cancel_keeps_its_final_state() -> None:
    """The race the seed cannot see: Running when read, finished when the cancel arrives (409)."""
    async with ibm(job_duration_s=0.3) as (emu, sdk):
        job, job_id = await submitted(sdk)
        await until_status(emu, job_id, "Running")
        emu.clear_log()
        emu.slow_next(1, delay_s=0.9, path="/cancel", method="POST")  # the job ends meanwhile
        assert await job.cancel(timeout_s=BOUND_S) is JobState.COMPLETED
        log = wire(emu)
        path = f"/jobs/{job_id}"
        assert log[:2] == [("GET", path, 200), ("POST", f"{path}/cancel", 409)]
        assert log[-1] == ("GET", f"{path}/results", 200)
        assert log[2:-1] == [("GET", path, 200)] * (len(log) - 3)
        assert job.result is not None
        assert job.error is None
