"""A composite on a backend that reads many runs at once waits on its children in bulk.

``execute()`` and ``wait()`` follow every child at the vendor through one poller subscription (no
task per child), apply readings as they come, and read outcomes with a few workers. These tests
drive that path with a scripted backend that reports ``batch_status`` and check that it keeps every
promise the per-child path keeps: each outcome read once, lost runs ended, transient failures
retried, errors raised with their child's index, one deadline, and a child awaited on its own at
the same time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from oqc_style_sdk import Sdk
from oqc_style_sdk.exceptions import AuthenticationError, JobTimeoutError, NotFoundError, ServerError
from oqc_style_sdk.job_output import JobPending, JobResult
from oqc_style_sdk.polling import PollingPolicy
from oqc_style_sdk.state import JobState
from oqc_style_sdk.testing.scripted import ScriptedBackend

BOUND_S = 10
FAST = PollingPolicy(min_interval_s=0.005, max_interval_s=0.02, lag_floor_s=0.01)


class BulkScripted(ScriptedBackend):
    """The scripted backend, read the way vendors with a list endpoint are (one tick, all runs)."""

    batch_status = True


@asynccontextmanager
async def bulk(*script: str, **settings: Any) -> AsyncIterator[tuple[Sdk, BulkScripted]]:
    backend = BulkScripted(script or ("QUEUED", "RUNNING", "RUNNING", "COMPLETED"), **settings)
    async with Sdk(backend, polling=FAST) as sdk:
        with anyio.fail_after(BOUND_S):
            yield sdk, backend


async def test_every_child_ends_and_each_outcome_is_read_once() -> None:
    async with bulk() as (sdk, backend):
        composite = sdk.create_job(program=[f"p{i}" for i in range(40)])
        outputs = await composite.execute()
        assert composite.state is JobState.COMPLETED
        assert [type(o) for o in outputs] == [JobResult] * 40
        assert [o.task_id for o in outputs] == [child.task_id for child in composite]
        assert sorted(backend.calls_of("result")) == sorted(child.task_id for child in composite)
        # every child went through RUNNING on its way (its readings were applied as they came)
        assert all("RUNNING" in backend.reported(str(child.task_id)) for child in composite)


async def test_a_child_the_vendor_no_longer_knows_ends_failed_not_found_and_the_others_complete() -> None:
    async with bulk("QUEUED", "RUNNING", "RUNNING", "RUNNING", "COMPLETED") as (sdk, backend):
        composite = sdk.create_job(program=["a", "b", "c"])
        await composite.submit()
        backend.fail_next("status", NotFoundError("no such job", status=404))
        await composite.wait()
        states = [child.state for child in composite]
        assert states.count(JobState.FAILED) == 1
        assert states.count(JobState.COMPLETED) == 2
        lost = next(child for child in composite if child.state is JobState.FAILED)
        assert lost.error is not None
        assert lost.error.code == "NOT_FOUND"


async def test_an_outcome_that_cannot_be_read_yet_is_read_again() -> None:
    async with bulk() as (sdk, backend):
        composite = sdk.create_job(program=["a", "b"])
        backend.fail_next("result", ServerError("try later", status=503))
        await composite.execute()
        assert composite.state is JobState.COMPLETED
        assert len(backend.calls_of("result")) == 3  # one child's result was read twice


async def test_a_read_error_that_waiting_cannot_fix_is_raised_with_its_child() -> None:
    async with bulk("QUEUED", "RUNNING", "RUNNING", "RUNNING", "COMPLETED") as (sdk, backend):
        composite = sdk.create_job(program=["a", "b", "c"])
        await composite.submit()
        backend.fail_next("status", AuthenticationError("the token was revoked", status=401))
        with pytest.raises(AuthenticationError) as caught:
            await composite.wait()
        assert any("children raised" in note for note in caught.value.__notes__)
        assert composite.summary().get(JobState.COMPLETED, 0) == 2


async def test_one_deadline_over_all_children_and_execute_again_resumes() -> None:
    async with bulk("QUEUED", "RUNNING") as (sdk, backend):  # never ends on its own
        composite = sdk.create_job(program=["a", "b", "c"])
        with pytest.raises(JobTimeoutError) as caught:
            await composite.execute(timeout_s=0.2)
        assert [type(o) for o in caught.value.outputs] == [JobPending] * 3
        assert [child.state for child in composite] == [JobState.RUNNING] * 3
        for child in composite:
            backend.complete(str(child.task_id))
        await composite.execute(timeout_s=5)  # resumed: nothing is submitted again
        assert composite.state is JobState.COMPLETED
        assert backend.submissions == 3


async def test_a_child_awaited_on_its_own_meanwhile_shares_the_same_outcome() -> None:
    async with bulk("QUEUED", "RUNNING", "RUNNING", "RUNNING", "COMPLETED") as (sdk, backend):
        composite = sdk.create_job(program=["a", "b"])
        await composite.submit()
        async with anyio.create_task_group() as tg:
            tg.start_soon(composite.wait)
            tg.start_soon(composite[0].wait)
        assert composite.state is JobState.COMPLETED
        assert sorted(backend.calls_of("result")) == sorted(child.task_id for child in composite)
        assert len(composite[0].history) == 1
