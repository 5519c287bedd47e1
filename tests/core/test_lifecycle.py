"""The lifecycle rules of DESIGN.md, one (or more) tests per rule, and the OQC SDK bugs of LESSONS.md.

Most tests drive a :class:`~oqc_style_sdk.testing.ScriptedBackend` (in memory, never sleeps, records
every call); the last ones go through the embedded local simulator with ``min_duration_s``. Waits
are bounded by ``anyio.fail_after``; the only timing assertion is that a deadline held (T + 0.25 s).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from oqc_style_sdk import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    Job,
    JobCancellation,
    JobCancelledError,
    JobError,
    JobFailed,
    JobOutputProxy,
    JobResult,
    JobState,
    JobStateError,
    JobTimeoutError,
    JobValidationError,
    NotFoundError,
    RateLimitedError,
    Sdk,
    SdkNotStartedError,
    ServerError,
)
from oqc_style_sdk.polling import PollingPolicy
from oqc_style_sdk.testing import ScriptedBackend

#: Bound on every wait in these tests (a hang fails fast instead of reaching pytest-timeout).
BOUND_S = 10
#: How far past its deadline a timed-out call may return.
MARGIN_S = 0.25

QASM = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
NEVER_ENDS = ("QUEUED", "RUNNING")


@asynccontextmanager
async def scripted(*script: str, **settings: Any) -> AsyncIterator[tuple[Sdk, ScriptedBackend]]:
    backend = ScriptedBackend(script or ("QUEUED", "RUNNING", "COMPLETED"), **settings)
    async with Sdk(backend) as sdk:
        with anyio.fail_after(BOUND_S):
            yield sdk, backend


async def started(job: Job) -> str:
    """Submit ``job`` and return its task id."""
    await job.submit()
    assert job.task_id is not None
    return job.task_id


async def until(predicate: Callable[[], bool], refresh: Callable[[], Awaitable[Any]]) -> None:
    """Refresh until ``predicate()`` holds (bounded by the caller's ``fail_after``)."""
    while not predicate():
        await refresh()
        await anyio.sleep(0.005)


# ==================================================================================================
# single-flight (LESSONS 1)
# ==================================================================================================


async def test_two_concurrent_executes_on_a_fresh_job_submit_once() -> None:
    async with scripted() as (sdk, backend):
        job = sdk.create_job(program="p")
        backend.hold_submissions()
        outputs: list[JobOutputProxy] = []

        async def run() -> None:
            outputs.append(await job.execute(timeout_s=5))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            tg.start_soon(run)
            await backend.wait_for_call("submit")
            await anyio.wait_all_tasks_blocked()  # both callers are waiting now
            assert backend.calls_of("submit") == [None]
            backend.release_submissions()

        assert backend.submissions == 1
        assert len(backend.calls_of("submit")) == 1
        assert len(outputs) == 2
        assert outputs[0] == outputs[1]
        assert outputs[0].one is outputs[1].one is job.result
        assert len(job.history) == 1


async def test_concurrent_submit_and_execute_share_one_submission() -> None:
    async with scripted() as (sdk, backend):
        job = sdk.create_job(program="p")
        async with anyio.create_task_group() as tg:
            tg.start_soon(job.submit)
            tg.start_soon(job.execute)
            tg.start_soon(job.submit)
        assert job.completed
        assert backend.submissions == 1
        assert len(backend.calls_of("submit")) == 1


async def test_submit_on_a_submitted_job_sends_nothing() -> None:
    async with scripted(*NEVER_ENDS) as (sdk, backend):
        job = sdk.create_job(program="p")
        task_id = await started(job)
        assert job.state is JobState.SUBMITTED
        await job.submit()
        await job.refresh()
        await job.refresh()
        assert job.state is JobState.RUNNING
        await job.submit()
        assert backend.submissions == 1
        assert backend.calls_of("submit") == [None]
        assert job.task_id == task_id


async def test_two_concurrent_executes_on_a_terminal_job_start_one_new_run() -> None:
    async with scripted() as (sdk, backend):
        job = sdk.create_job(program="p")
        await job.execute(timeout_s=5)
        first_task = job.task_id
        backend.hold_submissions()
        async with anyio.create_task_group() as tg:
            tg.start_soon(job.execute)
            tg.start_soon(job.execute)
            await backend.wait_for_call("submit", 2)
            await anyio.wait_all_tasks_blocked()
            assert len(backend.calls_of("submit")) == 2  # the first run's and one more
            backend.release_submissions()
        assert backend.submissions == 2
        assert job.run == 2
        assert job.task_id != first_task
        assert [o.run for o in job.history] == [1, 2]


# ==================================================================================================
# deadlines (LESSONS 3)
# ==================================================================================================


async def test_execute_deadline_on_a_run_that_never_ends_leaves_it_attached() -> None:
    async with scripted(*NEVER_ENDS) as (sdk, backend):
        job = sdk.create_job(program="p")
        t0 = anyio.current_time()
        with pytest.raises(TimeoutError) as caught:
            await job.execute(timeout_s=0.2)
        elapsed = anyio.current_time() - t0
        assert isinstance(caught.value, JobTimeoutError)
        assert elapsed <= 0.2 + MARGIN_S
        task_id = job.task_id
        assert task_id is not None
        assert job.state.is_active
        assert backend.calls_of("cancel") == []
        assert not backend.cancel_requested(task_id)
        assert job.history.all() == []

        backend.complete(task_id, {"c": {"1": 7}})
        outputs = await job.execute(timeout_s=5)
        assert job.completed
        assert job.task_id == task_id
        assert backend.submissions == 1
        assert len(backend.calls_of("submit")) == 1
        assert outputs.one.ok
        assert job.result is not None
        assert job.result.data == {"c": {"1": 7}}


async def test_wait_deadline_raises_and_a_later_wait_completes() -> None:
    async with scripted(*NEVER_ENDS) as (sdk, backend):
        job = sdk.create_job(program="p")
        task_id = await started(job)
        t0 = anyio.current_time()
        with pytest.raises(JobTimeoutError):
            await job.wait(timeout_s=0.1)
        assert anyio.current_time() - t0 <= 0.1 + MARGIN_S
        backend.complete(task_id)
        await job.wait(timeout_s=5)
        assert job.completed
        assert backend.submissions == 1


async def test_deadline_holds_while_the_submission_hangs_and_it_attaches_later() -> None:
    async with scripted() as (sdk, backend):
        job = sdk.create_job(program="p")
        backend.hold_submissions()
        t0 = anyio.current_time()
        with pytest.raises(JobTimeoutError):
            await job.execute(timeout_s=0.2)
        assert anyio.current_time() - t0 <= 0.2 + MARGIN_S
        assert job.state is JobState.CREATED
        assert job.task_id is None

        # a second impatient caller joins the same pending submission, sending nothing new
        with pytest.raises(JobTimeoutError):
            await job.execute(timeout_s=0.05)
        assert len(backend.calls_of("submit")) == 1

        backend.release_submissions()
        await anyio.wait_all_tasks_blocked()
        assert job.state is JobState.SUBMITTED
        assert job.task_id == backend.last_task_id

        await job.execute(timeout_s=5)
        assert job.completed
        assert backend.submissions == 1
        assert len(backend.calls_of("submit")) == 1


@pytest.mark.parametrize("bad", [0, -1, -0.5, math.nan, "1", b"1", True, [1]])
async def test_timeout_validation(bad: Any) -> None:
    async with scripted() as (sdk, backend):
        job = sdk.create_job(program="p")
        with pytest.raises(JobValidationError):
            await job.execute(timeout_s=bad)
        with pytest.raises(JobValidationError):
            await job.submit(timeout_s=bad)
        with pytest.raises(JobValidationError):
            await job.wait(timeout_s=bad)
        with pytest.raises(JobValidationError):
            await job.refresh(timeout_s=bad)
        with pytest.raises(JobValidationError):
            await job.cancel(timeout_s=bad)
        assert job.state is JobState.CREATED
        assert backend.calls == []


# ==================================================================================================
# history: exactly one entry per run (LESSONS 5)
# ==================================================================================================


async def test_one_history_entry_per_run_completed_failed_and_cancelled() -> None:
    async with scripted() as (sdk, backend):
        job = sdk.create_job(program="p")
        await job.execute(timeout_s=5)

        backend.script_next(["QUEUED", "RUNNING", "FAILED"])
        await job.execute(timeout_s=5)
        assert job.state is JobState.FAILED

        backend.script_next(NEVER_ENDS)
        await job.submit()
        await job.cancel("enough")
        assert job.state is JobState.CANCELLED

        never_sent = sdk.create_job(program="q")
        await never_sent.cancel()

        history = job.history.all()
        assert [type(o) for o in history] == [JobResult, JobError, JobCancellation]
        assert [o.run for o in history] == [1, 2, 3]
        assert [o.task_id for o in history] == backend.task_ids
        assert isinstance(history[1], JobError)
        assert history[1].message == "the scripted run failed"
        assert history[1].code == "SCRIPTED_FAILURE"
        assert isinstance(history[2], JobCancellation)
        assert history[2].reason == "enough"
        assert len(never_sent.history) == 1


async def test_a_run_driven_by_hand_through_running_to_failed() -> None:
    async with scripted("QUEUED") as (sdk, backend):
        job = sdk.create_job(program="p")
        task_id = await started(job)
        backend.set_state(task_id, JobState.RUNNING)
        assert await job.refresh() is JobState.RUNNING
        assert job.vendor_status == "RUNNING"
        backend.fail(task_id, "calibration drifted", "E_CAL")
        await job.wait(timeout_s=5)
        assert job.state is JobState.FAILED
        error = job.history.one
        assert isinstance(error, JobError)
        assert (error.message, error.code, error.task_id) == ("calibration drifted", "E_CAL", task_id)
        assert error.received is not None
        assert error.received.tzinfo is not None
        assert backend.calls_of("result") == []


async def test_many_concurrent_waiters_leave_one_history_entry() -> None:
    async with scripted(*NEVER_ENDS) as (sdk, backend):
        job = sdk.create_job(program="p")
        task_id = await started(job)
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(job.execute)
                tg.start_soon(job.wait)
            await anyio.wait_all_tasks_blocked()
            backend.complete(task_id)
            tg.start_soon(job.refresh)
        assert job.completed
        assert len(job.history) == 1
        assert backend.calls_of("result") == [task_id]


async def test_refresh_after_the_end_appends_nothing_and_reads_nothing() -> None:
    async with scripted("QUEUED", "COMPLETED", "RUNNING") as (sdk, backend):
        job = sdk.create_job(program="p")
        await job.execute(timeout_s=5)
        result = job.result
        calls = list(backend.calls)
        assert await job.refresh() is JobState.COMPLETED
        assert await job.refresh() is JobState.COMPLETED
        assert backend.calls == calls
        assert job.history.all() == [result]
        assert job.result is result


async def test_a_terminal_job_ignores_the_vendor_reporting_it_active(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="oqc_style_sdk.job")
    async with scripted(*NEVER_ENDS) as (sdk, backend):
        job = sdk.create_job(program="p")
        task_id = await started(job)
        gate = anyio.Event()
        backend.before_next("status", lambda _: gate.wait())  # the refresh's read is held
        async with anyio.create_task_group() as tg:
            tg.start_soon(job.refresh)
            await backend.wait_for_call("status")
            backend.complete(task_id)
            await job.wait(timeout_s=5)  # the poller reads COMPLETED meanwhile
            assert job.completed
            backend.set_state(task_id, JobState.RUNNING)  # the vendor flips the run back ...
            gate.set()  # ... and the held read now answers RUNNING

        assert backend.reported(task_id)[-1] == "RUNNING"
        assert job.state is JobState.COMPLETED
        assert job.completed
        assert len(job.history) == 1
        assert job.result is not None
        flips = [r for r in caplog.records if r.levelno == logging.WARNING and "ignored" in r.getMessage()]
        assert len(flips) == 1
        assert "RUNNING" in flips[0].getMessage()


@pytest.mark.parametrize("before", ["QUEUED", "RUNNING"])
async def test_an_undocumented_status_keeps_the_job_active(before: str, tmp_path: Path) -> None:
    async with scripted(before, "ON_HOLD_FOR_MAINTENANCE") as (sdk, backend):
        job = sdk.create_job(program="p")
        task_id = await started(job)
        await job.refresh()
        state_before = job.state
        await job.refresh()
        assert job.vendor_status == "ON_HOLD_FOR_MAINTENANCE"
        assert job.state is state_before
        assert job.state.is_active
        with pytest.raises(JobTimeoutError):
            await job.execute(timeout_s=0.05)
        assert job.state.is_active
        assert job.history.all() == []

        # a job in an undocumented status can be saved and loaded (LESSONS 4)
        path = await job.save(tmp_path / "job.json")
        loaded = await sdk.load(path)
        assert isinstance(loaded, Job)
        assert loaded.vendor_status == "ON_HOLD_FOR_MAINTENANCE"
        assert loaded.state is job.state
        assert loaded.task_id == task_id

        backend.complete(task_id)
        await job.execute(timeout_s=5)
        assert job.completed
        await loaded.execute(timeout_s=5)
        assert loaded.completed
        assert backend.submissions == 1


# ==================================================================================================
# cancel (LESSONS 2)
# ==================================================================================================


async def test_cancelling_a_never_submitted_job_sends_nothing() -> None:
    async with scripted() as (sdk, backend):
        job = sdk.create_job(program="p")
        assert await job.cancel("not needed") is JobState.CANCELLED
        assert job.state is JobState.CANCELLED
        assert backend.calls == []
        cancellation = job.history.one
        assert isinstance(cancellation, JobCancellation)
        assert cancellation.reason == "not needed"
        assert not cancellation.ok
        assert not cancellation.is_error


async def test_cancelling_a_finished_job_keeps_completed_and_its_result() -> None:
    async with scripted() as (sdk, backend):
        job = sdk.create_job(program="p")
        await job.execute(timeout_s=5)
        result = job.result
        assert await job.cancel() is JobState.COMPLETED
        assert job.completed
        assert job.result is result
        assert job.history.all() == [result]
        assert backend.calls_of("cancel") == []


async def test_guarded_cancel_reads_first_sends_once_then_confirms() -> None:
    async with scripted(*NEVER_ENDS) as (sdk, backend):
        job = sdk.create_job(program="p")
        task_id = await started(job)
        before = len(backend.calls)
        assert await job.cancel("stop") is JobState.CANCELLED
        calls = backend.calls[before:]
        assert calls[0] == ("status", task_id)  # read first
        assert calls.count(("cancel", task_id)) == 1  # one request
        sent = calls.index(("cancel", task_id))
        assert ("status", task_id) in calls[sent + 1 :]  # confirmed by reading after it
        assert backend.reported(task_id)[-1] == "CANCELLED"
        assert job.vendor_status == "CANCELLED"
        cancellation = job.history.one
        assert isinstance(cancellation, JobCancellation)
        assert cancellation.reason == "stop"
        assert cancellation.task_id == task_id

        # cancelling again sends nothing
        assert await job.cancel() is JobState.CANCELLED
        assert backend.calls_of("cancel") == [task_id]


async def test_cancel_keeps_reading_through_cancelling_until_terminal() -> None:
    async with scripted(*NEVER_ENDS, cancel_script=("CANCELLING", "CANCELLING", "CANCELLED")) as (
        sdk,
        backend,
    ):
        job = sdk.create_job(program="p")
        task_id = await started(job)
        assert await job.cancel() is JobState.CANCELLED
        assert backend.reported(task_id)[-3:] == ["CANCELLING", "CANCELLING", "CANCELLED"]
        assert backend.calls_of("cancel") == [task_id]
        assert isinstance(job.history.one, JobCancellation)


async def test_cancel_deadline_while_the_vendor_keeps_cancelling() -> None:
    async with scripted(*NEVER_ENDS, cancel_script=("CANCELLING",)) as (sdk, backend):
        job = sdk.create_job(program="p")
        task_id = await started(job)
        t0 = anyio.current_time()
        with pytest.raises(JobTimeoutError):
            await job.cancel(timeout_s=0.1)
        assert anyio.current_time() - t0 <= 0.1 + MARGIN_S
        assert job.state.is_active  # not marked CANCELLED before the vendor says so
        assert job.vendor_status == "CANCELLING"
        assert job.history.all() == []
        backend.set_state(task_id, "CANCELLED")
        assert await job.cancel() is JobState.CANCELLED
        assert backend.calls_of("cancel") == [task_id]  # not sent twice


async def test_cancel_finds_the_run_already_completed_and_sends_nothing() -> None:
    async with scripted("COMPLETED") as (sdk, backend):
        job = sdk.create_job(program="p")
        task_id = await started(job)
        assert await job.cancel() is JobState.COMPLETED
        assert backend.calls_of("cancel") == []
        assert job.result is not None
        assert job.history.one is job.result
        assert backend.calls_of("result") == [task_id]


async def test_a_run_that_completes_before_the_cancel_lands_keeps_completed() -> None:
    async with scripted(*NEVER_ENDS) as (sdk, backend):
        job = sdk.create_job(program="p")
        task_id = await started(job)
        # the run finishes between the cancel's status read and its request
        backend.before_next("cancel", lambda tid: backend.complete(str(tid), {"c": {"0": 3}}))
        assert await job.cancel() is JobState.COMPLETED
        assert backend.calls_of("cancel") == [task_id]
        assert job.completed
        assert job.result is not None
        assert job.result.data == {"c": {"0": 3}}
        assert len(job.history) == 1


async def test_cancel_while_execute_waits_ends_the_wait_cancelled() -> None:
    async with scripted(*NEVER_ENDS) as (sdk, backend):
        job = sdk.create_job(program="p")
        outputs: list[JobOutputProxy] = []

        async def run() -> None:
            outputs.append(await job.execute())

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await backend.wait_for_call("status")
            assert await job.cancel() is JobState.CANCELLED
        assert isinstance(outputs[0].one, JobCancellation)
        assert len(job.history) == 1
        assert len(backend.calls_of("cancel")) == 1


async def test_cancel_if_active_on_a_terminal_job_is_false_and_sends_nothing() -> None:
    async with scripted() as (sdk, backend):
        job = sdk.create_job(program="p")
        await job.execute(timeout_s=5)
        calls = list(backend.calls)
        assert await job.cancel_if_active() is False
        assert backend.calls == calls
        assert job.completed


async def test_cancel_if_active_then_execute_is_a_fresh_run() -> None:
    async with scripted() as (sdk, backend):
        backend.script_next(NEVER_ENDS)
        job = sdk.create_job(program="p")
        first = await started(job)
        assert await job.cancel_if_active() is True
        assert job.state is JobState.CANCELLED
        await job.execute(timeout_s=5)
        assert job.completed
        assert job.task_id != first
        assert backend.submissions == 2
        assert [type(o) for o in job.history] == [JobCancellation, JobResult]
        assert [o.task_id for o in job.history] == [first, job.task_id]


# ==================================================================================================
# reconfigure (LESSONS 6)
# ==================================================================================================


@pytest.mark.parametrize("reads", [0, 1])  # SUBMITTED, RUNNING
async def test_reconfigure_on_an_active_job_is_refused_and_orphans_nothing(reads: int) -> None:
    async with scripted(*NEVER_ENDS) as (sdk, backend):
        job = sdk.create_job(program="p")
        task_id = await started(job)
        for _ in range(reads + 1):
            await job.refresh()
        state = job.state
        assert state is (JobState.SUBMITTED, JobState.RUNNING)[reads]
        with pytest.raises(JobStateError, match="cancel") as caught:
            job.reconfigure(program="other")
        assert "cancel_if_active" in str(caught.value)
        assert job.task_id == task_id
        assert job.state is state
        assert job.program == "p"
        assert backend.calls_of("cancel") == []

        backend.complete(task_id)  # the run is still followed to its end
        await job.execute(timeout_s=5)
        assert job.completed
        assert job.history.one.program == "p"
        assert backend.submissions == 1


async def test_reconfigure_while_the_submission_is_in_flight_is_refused() -> None:
    async with scripted() as (sdk, backend):
        job = sdk.create_job(program="p")
        backend.hold_submissions()
        async with anyio.create_task_group() as tg:
            tg.start_soon(job.submit)
            await backend.wait_for_call("submit")
            with pytest.raises(JobStateError, match="cancel"):
                job.reconfigure(program="other")
            backend.release_submissions()
        await job.execute(timeout_s=5)
        assert job.history.one.program == "p"


async def test_reconfigure_on_a_created_job_changes_it_in_place() -> None:
    async with scripted() as (sdk, _backend):
        job = sdk.create_job(program="p")
        job.reconfigure(program="q")
        assert (job.state, job.run, job.program) == (JobState.CREATED, 1, "q")
        await job.execute(timeout_s=5)
        assert job.history.one.program == "q"


async def test_reconfigure_on_a_terminal_job_prepares_a_new_run_keeping_history() -> None:
    async with scripted() as (sdk, backend):
        job = sdk.create_job(program="p")
        await job.execute(timeout_s=5)
        first = job.result
        job.reconfigure(program="q")
        assert job.state is JobState.CREATED
        assert job.run == 2
        assert job.task_id is None
        assert job.result is None
        assert job.outputs.all() == []
        assert job.history.all() == [first]
        assert backend.submissions == 1
        await job.execute(timeout_s=5)
        assert [o.program for o in job.history] == ["p", "q"]


async def test_reconfigure_refuses_an_unknown_setting() -> None:
    async with scripted() as (sdk, _backend):
        job = sdk.create_job(program="p")
        await job.execute(timeout_s=5)
        with pytest.raises(JobValidationError, match="shots_per_run"):
            job.reconfigure(shots_per_run=10)
        assert job.completed  # nothing changed
        assert job.run == 1
        with pytest.raises(JobValidationError):
            job.reconfigure(memento="not an output")  # type: ignore[arg-type]


async def test_memento_restores_program_target_and_config() -> None:
    async with scripted(targets=("a", "b")) as (sdk, backend):
        job = sdk.create_job(program="p1", target="a", config={"x": 1})
        await job.execute(timeout_s=5)
        job.reconfigure(program="p2", qpu_id="b", config={"y": 2})
        await job.execute(timeout_s=5)
        assert (job.program, job.target, job.config) == ("p2", "b", {"y": 2})

        job.reconfigure(memento=job.history[0])
        assert (job.program, job.target, job.config) == ("p1", "a", {"x": 1})
        await job.execute(timeout_s=5)

        job.reconfigure(memento=job.history[1], program="p3")  # overrides on top of the memento
        assert (job.program, job.target, job.config) == ("p3", "b", {"y": 2})
        await job.execute(timeout_s=5)
        settings = [(o.program, o.qpu_id, o.config) for o in job.history]
        assert settings == [
            ("p1", "a", {"x": 1}),
            ("p2", "b", {"y": 2}),
            ("p1", "a", {"x": 1}),
            ("p3", "b", {"y": 2}),
        ]
        assert backend.submissions == 4


async def test_reexecute_and_resubmit_on_an_output() -> None:
    async with scripted() as (sdk, backend):
        job = sdk.create_job(program="p1")
        outputs = await job.execute(timeout_s=5)
        job.reconfigure(program="p2")
        await job.execute(timeout_s=5)

        again = await outputs.one.reexecute(timeout_s=5)  # back to p1, and waits
        assert job.completed
        assert again.one is job.result
        assert job.program == "p1"
        assert job.history[2].program == "p1"

        assert await job.history[1].resubmit() is None  # p2, without waiting
        assert job.state is JobState.SUBMITTED
        assert job.program == "p2"
        await job.wait(timeout_s=5)
        assert [o.program for o in job.history] == ["p1", "p2", "p1", "p2"]
        assert backend.submissions == 4


async def test_reexecute_on_an_active_job_is_refused() -> None:
    async with scripted(*NEVER_ENDS) as (sdk, backend):
        job = sdk.create_job(program="p")
        backend.script_next(["COMPLETED"])
        await job.execute(timeout_s=5)
        first = job.history.one
        await job.submit()  # a second run, never ending
        with pytest.raises(JobStateError, match="cancel"):
            await first.reexecute()
        assert backend.submissions == 2


# ==================================================================================================
# submission errors (LESSONS 9)
# ==================================================================================================


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (JobValidationError("the program does not parse"), "REJECTED"),
        (BackendError("bad request: no such gate", status=400, vendor_code="BAD_GATE"), "BAD_GATE"),
        (BackendError("unprocessable", status=422), "REJECTED"),
    ],
)
async def test_a_rejected_submission_fails_the_job_with_one_error(exc: Exception, code: str) -> None:
    async with scripted() as (sdk, backend):
        job = sdk.create_job(program="p")
        backend.fail_next("submit", exc)
        outputs = await job.execute(timeout_s=5)  # stored on the job, not raised
        assert job.state is JobState.FAILED
        error = outputs.one
        assert isinstance(error, JobError)
        assert job.error is error
        assert job.history.one is error
        assert error.code == code
        assert str(exc) in error.message
        assert error.ok is False
        assert error.task_id is None
        assert backend.submissions == 0
        with pytest.raises(JobFailed):
            job.raise_for_status()

        await job.execute(timeout_s=5)  # a fresh run may go through
        assert job.completed
        assert len(job.history) == 2


@pytest.mark.parametrize(
    "exc",
    [
        ServerError("503 Service Unavailable", status=503),
        BackendUnavailableError("connection refused"),
        RateLimitedError("429", status=429, retry_after_s=30),
    ],
)
async def test_a_transient_submit_error_is_raised_and_the_job_stays_created(exc: BackendError) -> None:
    async with scripted() as (sdk, backend):
        job = sdk.create_job(program="p")
        backend.fail_next("submit", exc)
        with pytest.raises(type(exc)):
            await job.execute(timeout_s=5)
        assert job.state is JobState.CREATED
        assert job.history.all() == []
        assert job.task_id is None

        await job.execute(timeout_s=5)
        assert job.completed
        assert backend.submissions == 1
        assert len(backend.submit_keys) == 2
        assert backend.submit_keys[0] == backend.submit_keys[1]  # same idempotency key
        assert len(job.history) == 1


async def test_a_new_run_gets_a_new_idempotency_key() -> None:
    async with scripted() as (sdk, backend):
        job = sdk.create_job(program="p")
        await job.execute(timeout_s=5)
        await job.execute(timeout_s=5)
        assert len(set(backend.submit_keys)) == 2
        assert backend.submissions == 2


async def test_the_same_idempotency_key_gives_the_same_scripted_run() -> None:
    from oqc_style_sdk.backends.base import RunSpec

    backend = ScriptedBackend()
    spec = backend.validate(RunSpec(program="p", target=None))
    first = await backend.submit(spec, "key-1")
    again = await backend.submit(spec, "key-1")
    other = await backend.submit(spec, "key-2")
    assert first == again
    assert other != first
    assert backend.submissions == 2


# ==================================================================================================
# status-read errors
# ==================================================================================================


async def test_transient_status_read_errors_do_not_fail_the_job() -> None:
    async with scripted() as (sdk, backend):
        backend.fail_next("status", ServerError("502", status=502))
        backend.fail_next("status", BackendUnavailableError("reset by peer"))
        backend.fail_next("status", RateLimitedError("429", status=429))
        job = sdk.create_job(program="p")
        await job.execute(timeout_s=5)
        assert job.completed
        assert len(job.history) == 1
        assert backend.reported(str(job.task_id))[-1] == "COMPLETED"


async def test_a_transient_error_reading_the_result_is_retried() -> None:
    async with scripted() as (sdk, backend):
        backend.fail_next("result", ServerError("503", status=503))
        job = sdk.create_job(program="p")
        await job.execute(timeout_s=5)
        assert job.completed
        assert len(backend.calls_of("result")) == 2
        assert len(job.history) == 1


async def test_a_result_read_failing_for_a_long_time_keeps_waiting_at_the_longest_interval() -> None:
    # Each failed read of an ended run's result waits longer, up to max_interval_s. The wait is
    # grown step by step, not computed as factor ** attempt, which overflows a float after about
    # a thousand attempts (about 80 minutes of an outage at a 5 s interval).
    backend = ScriptedBackend(("QUEUED", "COMPLETED"))
    for _ in range(1100):
        backend.fail_next("result", ServerError("503", status=503))
    async with Sdk(backend, polling=PollingPolicy(0.0001, 0.0001)) as sdk:
        job = sdk.create_job(program="p")
        with anyio.fail_after(BOUND_S):
            await job.execute(timeout_s=BOUND_S)
        assert job.completed
        assert len(backend.calls_of("result")) == 1101


async def test_a_run_the_vendor_no_longer_knows_ends_failed_not_found() -> None:
    # A vendor that answers 404 for a run we submitted has lost it: waiting can never end, so the
    # run ends FAILED with a clear code instead of leaving the job active for good.
    async with scripted(*NEVER_ENDS) as (sdk, backend):
        job = sdk.create_job(program="p")
        task_id = await started(job)
        backend.fail_next("status", NotFoundError("no such job", status=404))
        await job.execute(timeout_s=5)
        assert job.state is JobState.FAILED
        assert job.task_id == task_id
        assert backend.submissions == 1
        (entry,) = job.history.all()
        assert isinstance(entry, JobError)
        assert entry.code == "NOT_FOUND"
        assert "no such job" in entry.message


async def test_refresh_of_a_lost_run_ends_it_too() -> None:
    async with scripted(*NEVER_ENDS) as (sdk, backend):
        job = sdk.create_job(program="p")
        await started(job)
        backend.fail_next("status", NotFoundError("gone", status=404))
        assert await job.refresh() is JobState.FAILED
        assert job.error is not None
        assert job.error.code == "NOT_FOUND"


# ==================================================================================================
# diagnostics
# ==================================================================================================


async def test_diagnostics_are_fetched_once_per_run_and_a_failure_does_not_fail_the_job() -> None:
    async with scripted() as (sdk, backend):
        job = sdk.create_job(program="p", fetch_diagnostics=True)
        assert (job.timings, job.metrics, job.metadata) == (None, None, None)
        await job.execute(timeout_s=5)
        assert job.metadata == {"backend": "scripted", "target": "scripted", "task_id": job.task_id}
        assert job.timings is not None
        assert job.metrics == {"program_chars": 1}
        assert backend.calls_of("diagnostics") == [job.task_id]

        backend.fail_next("diagnostics", ServerError("503", status=503))
        await job.execute(timeout_s=5)
        assert job.completed
        assert (job.timings, job.metrics, job.metadata) == (None, None, None)
        assert len(job.history) == 2

        plain = sdk.create_job(program="p")
        await plain.execute(timeout_s=5)
        assert backend.calls_of("diagnostics") == backend.task_ids[:2]


# ==================================================================================================
# raise_for_status (LESSONS 15)
# ==================================================================================================


async def test_raise_for_status_by_state() -> None:
    async with scripted() as (sdk, backend):
        done = sdk.create_job(program="p")
        await done.execute(timeout_s=5)
        done.raise_for_status()
        done.outputs.raise_for_status()

        backend.script_next(["FAILED"])
        failed = sdk.create_job(program="p")
        await failed.execute(timeout_s=5)
        with pytest.raises(JobFailed) as caught:
            failed.raise_for_status()
        assert not isinstance(caught.value, JobCancelledError)
        assert caught.value.error is failed.error
        with pytest.raises(JobFailed) as from_proxy:
            failed.outputs.raise_for_status()
        assert type(from_proxy.value) is JobFailed
        assert from_proxy.value.error is failed.error
        with pytest.raises(JobFailed):
            failed.history.raise_for_status()

        cancelled = sdk.create_job(program="p")
        await cancelled.cancel()
        with pytest.raises(JobCancelledError) as was_cancelled:
            cancelled.raise_for_status()
        assert isinstance(was_cancelled.value, JobFailed)
        assert isinstance(was_cancelled.value.error, JobCancellation)
        with pytest.raises(JobCancelledError):
            cancelled.outputs.raise_for_status()

        created = sdk.create_job(program="p")
        with pytest.raises(JobStateError):
            created.raise_for_status()
        backend.script_next(NEVER_ENDS)
        await created.submit()
        with pytest.raises(JobStateError):
            created.raise_for_status()


def test_a_job_error_is_never_ok() -> None:
    assert JobError(message="boom").ok is False
    assert JobError(message="boom", code=None).ok is False
    assert JobError(message="boom", code="E1").ok is False
    assert JobError().is_error is True
    assert JobResult(data={}).ok is True
    assert JobOutputProxy([JobError(message="boom")]).ok is False
    with pytest.raises(JobFailed):
        JobOutputProxy([JobResult(data={}), JobError(message="boom")]).raise_for_status()


# ==================================================================================================
# the Sdk (LESSONS 10)
# ==================================================================================================


async def test_create_job_outside_async_with_says_so() -> None:
    sdk = Sdk(ScriptedBackend())
    with pytest.raises(SdkNotStartedError, match="async with"):
        sdk.create_job(program="p")
    with pytest.raises(SdkNotStartedError, match="async with"):
        await sdk.list_targets()


async def test_every_verb_of_a_job_after_the_sdk_closed_says_so(tmp_path: Path) -> None:
    backend = ScriptedBackend(NEVER_ENDS)
    async with Sdk(backend) as sdk:
        active = sdk.create_job(program="p")
        await active.submit()
        done = sdk.create_job(program="p")
        backend.script_next(["COMPLETED"])
        await done.execute(timeout_s=5)
    calls = list(backend.calls)
    verbs: list[Callable[[], Awaitable[Any]]] = [
        active.execute,
        active.submit,
        active.wait,
        active.refresh,
        active.cancel,
        active.cancel_if_active,
        done.execute,
        done.refresh,
        done.cancel,
        done.cancel_if_active,
    ]
    for verb in verbs:
        with pytest.raises(SdkNotStartedError, match="async with"):
            await verb()
    with pytest.raises(SdkNotStartedError, match="async with"):
        sdk.create_job(program="p")
    assert backend.calls == calls


async def test_unknown_backend_name_lists_the_available_ones() -> None:
    with pytest.raises(ConfigurationError, match="local") as caught:
        Sdk("no_such_vendor")
    assert "no_such_vendor" in str(caught.value)


async def test_default_target_set_default_qpu_and_list_qpus() -> None:
    async with Sdk(default_target="qpu:uk:2:d865b5a184") as sdk:
        assert sdk.default_target == "qpu:uk:2:d865b5a184"
        assert sdk.create_job(program=QASM).qpu_id == "qpu:uk:2:d865b5a184"
        qpus = await sdk.list_qpus()
        assert any(q["name"] == "Simulator" and q["status"] == "ACTIVE" for q in qpus)
        simulator = next(q for q in qpus if q["name"] == "Simulator")
        sdk.set_default_qpu(simulator["id"])
        assert sdk.create_job(program=QASM).target == simulator["id"]
        assert sdk.create_job(program=QASM, qpu_id="qpu:uk:2:d865b5a184").target == "qpu:uk:2:d865b5a184"


async def test_sdk_repr() -> None:
    sdk = Sdk(ScriptedBackend(), default_target="scripted")
    assert repr(sdk) == "<Sdk backend='scripted' default_target='scripted' closed>"
    async with sdk:
        assert repr(sdk) == "<Sdk backend='scripted' default_target='scripted' open>"
    assert "closed" in repr(Sdk())


async def test_an_sdk_cannot_be_entered_twice() -> None:
    sdk = Sdk(ScriptedBackend())
    async with sdk:
        with pytest.raises(RuntimeError, match="already open"):
            await sdk.__aenter__()
        assert sdk.is_open
        job = sdk.create_job(program="p")
        await job.execute(timeout_s=5)  # still fully usable
        assert job.completed
    assert not sdk.is_open


# ==================================================================================================
# the local simulator through Job
# ==================================================================================================


async def test_local_job_goes_submitted_running_completed() -> None:
    async with Sdk(min_duration_s=0.3) as sdk:
        job = sdk.create_job(program=QASM)
        await job.submit()
        seen = [job.state]
        with anyio.fail_after(BOUND_S):
            while not job.ended:
                await job.refresh()
                if job.state is not seen[-1]:
                    seen.append(job.state)
                await anyio.sleep(0.01)
        assert seen == [JobState.SUBMITTED, JobState.RUNNING, JobState.COMPLETED]
        assert job.result is not None
        assert sum(job.result.data["c"].values()) == 1000


async def test_local_execute_deadline_leaves_the_run_going() -> None:
    async with Sdk(min_duration_s=30) as sdk:
        job = sdk.create_job(program=QASM)
        t0 = anyio.current_time()
        with pytest.raises(JobTimeoutError):
            await job.execute(timeout_s=0.3)
        assert anyio.current_time() - t0 <= 0.3 + MARGIN_S
        task_id = job.task_id
        assert task_id is not None
        assert (await job.refresh()).is_active
        with anyio.fail_after(BOUND_S):
            assert await job.cancel() is JobState.CANCELLED
        assert job.task_id == task_id


async def test_local_queued_job_cancelled_never_runs_and_a_running_one_ends_cancelled() -> None:
    async with Sdk(min_duration_s=0.5, max_concurrency=1) as sdk:
        with anyio.fail_after(BOUND_S):
            long = sdk.create_job(program=QASM, config={"min_duration_s": 60}, fetch_diagnostics=True)
            queued = sdk.create_job(program=QASM, fetch_diagnostics=True)
            await long.submit()
            await until(lambda: long.state is JobState.RUNNING, long.refresh)
            await queued.submit()
            assert await queued.refresh() is JobState.SUBMITTED
            assert queued.vendor_status == "QUEUED"

            assert await queued.cancel("not any more") is JobState.CANCELLED
            assert queued.timings is not None
            assert queued.timings["started_at"] is None  # it never ran
            assert queued.metrics is None
            assert await long.refresh() is JobState.RUNNING

            assert await long.cancel() is JobState.CANCELLED
            assert long.timings is not None
            assert long.timings["started_at"] is not None
            assert isinstance(long.history.one, JobCancellation)
            assert isinstance(queued.history.one, JobCancellation)

            # the slot is free again: a new job runs to the end
            after = sdk.create_job(program=QASM)
            await after.execute()
            assert after.completed


# ==================================================================================================
# the ScriptedBackend's own documented example
# ==================================================================================================


async def test_the_scripted_backend_docstring_example() -> None:
    backend = ScriptedBackend(script=["QUEUED", "RUNNING", "COMPLETED"], data={"c": {"0": 1}})
    async with Sdk(backend) as sdk:
        job = sdk.create_job(program="anything")
        await job.execute(timeout_s=5)
        assert job.result is not None
        assert job.result.data == {"c": {"0": 1}}
        assert backend.submissions == 1
        assert backend.calls[0] == ("submit", None)
        assert backend.reported(str(job.task_id)) == ["QUEUED", "RUNNING", "COMPLETED"]


# ==================================================================================================
# a submission whose answer was lost
# ==================================================================================================


def lose_next_submit_response(backend: ScriptedBackend) -> None:
    """The vendor creates the run, then the answer never arrives (a dropped connection)."""
    original = backend.submit

    async def submit_then_drop(spec: Any, key: str) -> Any:
        backend.submit = original  # type: ignore[method-assign]
        await original(spec, key)
        raise BackendUnavailableError("connection reset after the request was sent")

    backend.submit = submit_then_drop  # type: ignore[method-assign]


async def test_lost_submit_answer_is_settled_by_resending_the_same_key() -> None:
    async with scripted() as (sdk, backend):
        job = sdk.create_job(program="p")
        lose_next_submit_response(backend)
        with pytest.raises(BackendUnavailableError):
            await job.execute(timeout_s=5)
        assert job.state is JobState.CREATED
        await job.execute(timeout_s=5)
        assert job.completed
        assert backend.submissions == 1
        assert len(set(backend.submit_keys)) == 1


async def test_lost_submit_answer_blocks_reconfigure_until_settled() -> None:
    async with scripted() as (sdk, backend):
        job = sdk.create_job(program="p")
        lose_next_submit_response(backend)
        with pytest.raises(BackendUnavailableError):
            await job.submit()
        with pytest.raises(JobStateError, match="may have reached the vendor"):
            job.reconfigure(program="q")
        assert job.program == "p"


async def test_cancel_after_a_lost_submit_answer_cancels_the_vendor_run() -> None:
    async with scripted(*NEVER_ENDS) as (sdk, backend):
        job = sdk.create_job(program="p")
        lose_next_submit_response(backend)
        with pytest.raises(BackendUnavailableError):
            await job.submit()
        assert await job.cancel(timeout_s=5) is JobState.CANCELLED
        assert backend.submissions == 1
        assert backend.cancel_requested(str(backend.last_task_id))  # not orphaned at the vendor


async def test_cancel_after_a_lost_answer_without_idempotent_resend_is_local_and_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with scripted(*NEVER_ENDS) as (sdk, backend):
        backend.idempotent_submit = False
        job = sdk.create_job(program="p")
        lose_next_submit_response(backend)
        with pytest.raises(BackendUnavailableError):
            await job.submit()
        with caplog.at_level(logging.WARNING, logger="oqc_style_sdk.job"):
            assert await job.cancel(timeout_s=5) is JobState.CANCELLED
        assert backend.calls_of("cancel") == []
        assert "may have reached" in caplog.text


async def test_an_error_inside_the_sdk_block_reaches_the_caller_unwrapped() -> None:
    # Not an ExceptionGroup: `except JobFailed` around `async with Sdk()` must work.
    with pytest.raises(JobFailed) as caught:
        async with Sdk(ScriptedBackend()):
            raise JobFailed("from the user's block")
    assert type(caught.value) is JobFailed


async def test_an_outer_deadline_cancels_the_sdk_block_cleanly() -> None:
    with anyio.move_on_after(0.05) as scope:
        async with Sdk(ScriptedBackend(*[NEVER_ENDS])) as sdk:
            job = sdk.create_job(program="p")
            await job.execute()
    assert scope.cancelled_caught
    assert job.active  # left as it was, attached to nothing, never cancelled behind our back
