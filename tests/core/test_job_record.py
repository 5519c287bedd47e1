"""The seam between a Job and the rest: its record as data, the rules its composite shares with it.

``Job._snapshot()`` / ``Job._restored()`` are the only way a job's record leaves or enters a Job;
``Job._take`` is how a composite hands a child one reading, under the same rule for a failed read
as a single job's wait; ``BackendError.rereadable`` / ``.refused`` are those rules' one home.
"""

from __future__ import annotations

import pytest

from oqc_style_sdk import Sdk
from oqc_style_sdk.exceptions import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    JobNotResumableError,
    NotFoundError,
    ProtocolError,
    RateLimitedError,
    ServerError,
)
from oqc_style_sdk.job import Job, Reading
from oqc_style_sdk.state import JobState, state_rank
from tests.common import BELL


async def test_a_snapshot_restored_is_the_same_record() -> None:
    async with Sdk() as sdk:
        job = sdk.create_job(program=BELL, config={"shots": 10}, tag="t", fetch_diagnostics=True)
        await job.execute(timeout_s=30)
        await job.execute(timeout_s=30)  # two runs: history of two
        snap = job._snapshot()
        again = Job._restored(sdk, snap)
        assert again._snapshot().model_dump() == snap.model_dump()
        assert again.id == job.id
        assert again.state is JobState.COMPLETED
        assert again.run == 2
        assert again.result is not None
        assert again.result.data == job.result.data
        assert [o.run for o in again.history] == [1, 2]
        assert all(o._job is again for o in again.history)  # bound to the new job, not the old


async def test_a_restored_active_run_that_cannot_be_followed_raises_or_fails() -> None:
    async with Sdk() as sdk:
        job = sdk.create_job(program=BELL)
        await job.submit(timeout_s=30)
        snap = job._snapshot()
        # A local run lives only in the Sdk that ran it: another Sdk cannot follow it.
    async with Sdk() as other:
        with pytest.raises(JobNotResumableError):
            Job._restored(other, snap)
        lost = Job._restored(other, snap, lost_runs="fail")
        assert lost.state is JobState.FAILED
        assert lost.error is not None
        assert lost.error.code == "LOST"


async def test_a_childs_failed_read_follows_the_single_job_rule() -> None:
    async with Sdk() as sdk:
        job = sdk.create_job(program=BELL)
        await job.submit(timeout_s=30)
        task_id = job.task_id
        assert task_id is not None
        assert job.state is JobState.SUBMITTED
        assert job._take("another-task", None, ServerError("x")) is Reading.GONE
        assert job._take(task_id, None, ServerError("busy", status=503)) is Reading.RETRY
        assert job._take(task_id, None, ProtocolError("garbled")) is Reading.RETRY
        with pytest.raises(AuthenticationError):
            job._take(task_id, None, AuthenticationError("no", status=401))
        assert job.state is JobState.SUBMITTED  # an error raised leaves the job active
        assert job._take(task_id, None, NotFoundError("gone", status=404)) is Reading.GONE
        assert job.state is JobState.FAILED
        assert job.error is not None
        assert job.error.code == "NOT_FOUND"
        assert job._take(task_id, None, ServerError("x")) is Reading.GONE  # ended: not followed


@pytest.mark.parametrize(
    ("error", "rereadable", "refused"),
    [
        (BackendUnavailableError("down"), True, False),
        (ServerError("5xx", status=503), True, False),
        (RateLimitedError("429", status=429), True, False),
        (ProtocolError("garbled", status=200), True, False),
        (BackendError("bad request", status=400), False, True),
        (BackendError("conflict", status=409), False, True),
        (BackendError("timeout", status=408), False, False),
        (AuthenticationError("creds", status=403), False, False),
        (NotFoundError("unknown", status=404), False, True),
        (BackendError("no status"), False, False),
    ],
)
def test_backend_error_rules(error: BackendError, rereadable: bool, refused: bool) -> None:
    assert error.rereadable is rereadable
    assert error.refused is refused


def test_state_rank_orders_the_lifecycle() -> None:
    ranks = [state_rank(s) for s in (JobState.CREATED, JobState.SUBMITTED, JobState.RUNNING)]
    assert ranks == sorted(set(ranks))
    assert {state_rank(s) for s in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)} == {3}
