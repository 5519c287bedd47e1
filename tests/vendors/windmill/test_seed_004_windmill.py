"""Seed 004 ("Windmill: run a script with a cancel guard") in a few lines of the public API.

The seed's workflow: ``runScript`` (run by path) → ``inspectJob`` (``getJob``: the ``type``
discriminates ``CompletedJob`` from ``QueuedJob``) → ``readCompleted`` when completed, else
``cancelJob`` with the supplied reason. :func:`guard` is the same four steps; it is also printed in
``docs/windmill.md``. Two differences are the SDK's design, and asserted below: the completed
branch reads the result with ``jobs_u/completed/get_result`` (the job's data) rather than the whole
``jobs_u/completed/get`` record, and the cancel branch reads the status once more right before it
cancels and then until Windmill confirms the job ended (the guarded cancel).

Each branch is checked against the exact request sequence in the emulator's log. The emulator's
workers pick jobs up at once and the quick script takes no time, so at inspection the quick one has
certainly completed and the slow one (600 s) certainly has not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from oqc_style_sdk import Job, JobCancellation, JobState, Sdk
from oqc_style_sdk.testing.windmill import QUICK_SCRIPT, SLOW_SCRIPT, WindmillEmulator

WS = "/api/w/demo"
START_UP = [("GET", "/api/version"), ("GET", f"{WS}/users/whoami")]


async def guard(sdk: Sdk, path: str, args: dict[str, Any], cancel_reason: str) -> Job:
    job = sdk.create_job(program={"path": path, "args": args})
    await job.submit()  # runScript
    await job.refresh()  # inspectJob
    if not job.completed:  # still queued or running (a completed job's result is read: readCompleted)
        await job.cancel(reason=cancel_reason)  # cancelJob
    return job


@pytest.fixture
async def emu(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[WindmillEmulator]:
    """Jobs are picked up at once; ``u/demo/quick`` ends at once, ``u/demo/slow`` after 600 s.
    ``WM_BASE_URL``, ``WM_TOKEN`` and ``WM_WORKSPACE`` point at it, as ``oqcs emulate`` prints them."""
    emulator = WindmillEmulator(job_duration_s=0.0, queue_s=0.0, slow_duration_s=600.0, max_lifetime_s=60)
    await emulator.start()
    for name, value in emulator.env.items():
        monkeypatch.setenv(name, value)
    try:
        yield emulator
    finally:
        await emulator.stop()


def log_of(emu: WindmillEmulator) -> list[tuple[str, str]]:
    return [(entry.method, entry.path) for entry in emu.requests]


async def test_a_quick_script_is_read_when_completed(emu: WindmillEmulator) -> None:
    async with Sdk("windmill") as sdk:
        job = await guard(sdk, QUICK_SCRIPT, {"x": 1}, "took too long")
        assert job.completed
        assert job.result is not None
        assert job.result.data == {"ok": True, "args": {"x": 1}}
    job_id = job.task_id
    assert log_of(emu) == [
        *START_UP,
        ("POST", f"{WS}/jobs/run/p/{QUICK_SCRIPT}"),  # runScript
        ("GET", f"{WS}/jobs_u/get/{job_id}"),  # inspectJob: CompletedJob
        ("GET", f"{WS}/jobs_u/completed/get_result/{job_id}"),  # readCompleted
    ]
    assert emu.requests[2].query == {"job_id": job_id}
    assert emu.requests[2].body == {"x": 1}
    assert [entry.status for entry in emu.requests] == [200, 200, 201, 200, 200]


async def test_a_slow_script_is_cancelled_with_the_reason(emu: WindmillEmulator) -> None:
    async with Sdk("windmill") as sdk:
        job = await guard(sdk, SLOW_SCRIPT, {"n": 3}, "took too long")
        assert job.state is JobState.CANCELLED
        assert isinstance(job.history[-1], JobCancellation)
        assert job.history[-1].reason == "took too long"
    job_id = job.task_id
    assert log_of(emu) == [
        *START_UP,
        ("POST", f"{WS}/jobs/run/p/{SLOW_SCRIPT}"),  # runScript
        ("GET", f"{WS}/jobs_u/get/{job_id}"),  # inspectJob: QueuedJob, running
        ("GET", f"{WS}/jobs_u/get/{job_id}"),  # the guarded cancel reads before it cancels
        ("POST", f"{WS}/jobs_u/queue/cancel/{job_id}"),  # cancelJob
        ("GET", f"{WS}/jobs_u/get/{job_id}"),  # ... and reads until Windmill says it ended
    ]
    cancel = emu.requests[5]
    assert (cancel.body, cancel.status) == ({"reason": "took too long"}, 200)
    assert [entry.status for entry in emu.requests] == [200, 200, 201, 200, 200, 200, 200]
    record = emu.job_record(str(job_id))
    assert (record["type"], record["canceled"], record["success"]) == ("CompletedJob", True, False)
    assert record["canceled_reason"] == "took too long"
    assert record["result"]["error"]["message"] == "Job canceled: took too long by admin"
