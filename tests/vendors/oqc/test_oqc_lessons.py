"""One test per OQC item of ``LESSONS.md`` (1–13 and 15): each asserts behaviour that the published
OQC QCaaS SDK is recorded as getting wrong, against the OQC emulator, read from its request log.

Items 14 (token cache files) and 16 (no backend interface) are not behaviours of a run against the
emulator and are left to other suites.
"""

from __future__ import annotations

import asyncio
import builtins
import io
import itertools
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from oqc_style_sdk import JobState, OqcSdk
from oqc_style_sdk import persistence as persistence_module
from oqc_style_sdk.exceptions import (
    AuthenticationError,
    BackendUnavailableError,
    JobFailed,
    JobStateError,
    JobTimeoutError,
    SdkNotStartedError,
    ServerError,
)
from oqc_style_sdk.job_output import JobCancellation, JobError, JobPending, JobResult
from oqc_style_sdk.testing.emulator import LoggedRequest
from oqc_style_sdk.testing.oqc import INACTIVE_QPU_ID, LUCY_QPU_ID, OqcEmulator
from tests.vendors.oqc.common import emulator, reservations, wait_until_running

PROGRAM = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
BAD_PROGRAM = PROGRAM.replace("2.0", "5.0")
LUCY = "/d865b5a184"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "EXPIRED"}


@asynccontextmanager
async def session(**options: Any) -> AsyncIterator[tuple[OqcEmulator, OqcSdk]]:
    async with emulator(**options) as emu, OqcSdk(**emu.credentials, default_qpu_id=LUCY_QPU_ID) as sdk:
        yield emu, sdk


def posts(emu: OqcEmulator, suffix: str) -> list[LoggedRequest]:
    return [e for e in emu.requests if e.method == "POST" and e.path.endswith(suffix)]


def status_reads(emu: OqcEmulator, task_id: str | None = None) -> list[LoggedRequest]:
    """Status reads: ``…/tasks/{id}/status`` (of ``task_id`` if given) and task-list reads."""
    return [
        e
        for e in emu.requests
        if e.method == "GET"
        and (
            (e.path.endswith("/status") and (task_id is None or f"/{task_id}/" in e.path))
            or (e.path.count("/") == 2 and e.path.endswith("/tasks"))
        )
    ]


async def all_ids_settled(emu: OqcEmulator) -> dict[str, str]:
    """Every id the emulator handed out, with its status; none may be left CREATED or active."""
    statuses = {task_id: await emu.status_of(task_id) for task_id in emu.task_ids}
    assert set(statuses.values()) <= TERMINAL, statuses
    return statuses


# ------------------------------------------------------------------------------------------- 1
async def test_lesson_01_concurrent_execute_submits_once() -> None:
    """1. Two concurrent `execute()` calls on a fresh job submit it twice; `submit()` on a submitted
    job posts again."""
    with anyio.fail_after(10):
        async with session(job_duration_s=0.3) as (emu, sdk):
            job = sdk.create_job(program=PROGRAM)
            results: list[Any] = []

            async def execute() -> None:
                results.append(await job.execute(timeout_s=5))

            async with anyio.create_task_group() as tg:
                tg.start_soon(execute)
                tg.start_soon(execute)
            assert job.completed
            assert len(results) == 2
            assert results[0].first is results[1].first is job.result
            assert len(reservations(emu)) == 1
            assert len(posts(emu, "/tasks/submit")) == 1
            assert emu.task_ids == [job.task_id]
            assert emu.engine_runs == 1
            assert len(job.history) == 1

            second = sdk.create_job(program=PROGRAM)
            await second.submit()
            await second.submit()  # already at the vendor: nothing is sent
            with pytest.raises(JobTimeoutError):
                await second.execute(timeout_s=0.05)
            await second.execute(timeout_s=5)  # an active job is resumed, not resubmitted
            assert second.completed
            assert len(reservations(emu)) == 2
            assert len(posts(emu, "/tasks/submit")) == 2


# ------------------------------------------------------------------------------------------- 2
async def test_lesson_02_cancel_asks_the_server_and_a_finished_job_keeps_its_result() -> None:
    """2. `cancel()` marks the job CANCELLED locally without asking the server — even a COMPLETED
    job, whose result then reads as not completed."""
    with anyio.fail_after(15):
        async with session(job_duration_s=0.4) as (emu, sdk):
            done = sdk.create_job(program=PROGRAM)
            await done.execute(timeout_s=5)
            result = done.result
            assert await done.cancel() is JobState.COMPLETED
            assert done.completed
            assert done.result is result
            assert result is not None
            assert posts(emu, "/tasks/cancel_many") == []

            running = sdk.create_job(program=PROGRAM)
            await running.submit()
            await wait_until_running(running, emu)
            assert await running.cancel(timeout_s=5) is JobState.CANCELLED
            (cancel,) = posts(emu, "/tasks/cancel_many")
            assert cancel.body == {"tasks": [running.task_id]}
            assert await emu.status_of(running.task_id) == "CANCELLED"  # the server agrees

            # The run finishes while the cancel is in flight: the finished state wins.
            racing = sdk.create_job(program=PROGRAM)
            await racing.submit()
            await wait_until_running(racing, emu)
            emu.slow_next(1, delay_s=0.6, path="/tasks/cancel_many")
            assert await racing.cancel(timeout_s=5) is JobState.COMPLETED
            assert racing.completed
            assert racing.result is not None
            assert await emu.status_of(racing.task_id) == "COMPLETED"
            assert len(posts(emu, "/tasks/cancel_many")) == 2


# ------------------------------------------------------------------------------------------- 3
async def test_lesson_03_a_deadline_holds_against_a_server_answering_503() -> None:
    """3. `execute(timeout_s=2)` returned after 3.0 s; against a server answering 503 it took 15 s,
    because retries inside each request ignore the caller's deadline."""
    with anyio.fail_after(20):
        async with session(job_duration_s=0.3) as (emu, sdk):
            # Everything answers 503, from the first request of the job on.
            emu.fail_next(1000, status=503)
            job = sdk.create_job(program=PROGRAM)
            start = anyio.current_time()
            with pytest.raises((JobTimeoutError, ServerError)):
                await job.execute(timeout_s=2)
            assert anyio.current_time() - start <= 2.25
            assert job.state is JobState.CREATED  # a transient failure is not recorded as FAILED
            emu.clear_faults()

            # The job is at the vendor; then every request answers 503 (GETs are retried).
            await job.submit()
            emu.fail_next(1000, status=503)
            start = anyio.current_time()
            with pytest.raises(JobTimeoutError):
                await job.execute(timeout_s=2)
            elapsed = anyio.current_time() - start
            assert 2.0 <= elapsed <= 2.25, elapsed
            assert job.active  # left attached and active; nothing was cancelled
            assert posts(emu, "/tasks/cancel_many") == []
            emu.clear_faults()

            # The submission itself keeps answering 503 (it is retried, as the reserved id allows,
            # within the caller's deadline).
            late = sdk.create_job(program=PROGRAM)
            emu.fail_next(1000, status=503, path="/tasks/submit")
            start = anyio.current_time()
            with pytest.raises(JobTimeoutError):
                await late.execute(timeout_s=1)
            elapsed = anyio.current_time() - start
            assert 1.0 <= elapsed <= 1.25, elapsed
            assert late.state is JobState.CREATED  # not FAILED: a later execute() settles it
            submits = posts(emu, "/tasks/submit")[1:]
            assert len(submits) >= 2
            assert len({e.body["tasks"][0]["task_id"] for e in submits}) == 1
            assert len(emu.task_ids) == 2  # one id per job, however often it is resent


async def test_lesson_03_timeout_none_means_no_deadline() -> None:
    """3. … `timeout_s=None` silently meant 120 s.

    Shown on the deadline in force while ``execute()`` waits for the poller: with
    ``timeout_s=None`` it adds none (the only deadline is this test's own ``fail_after``; with no
    such outer bound it is infinite), with ``timeout_s`` it is that far ahead — and a job that
    outlasts the earlier call's deadline ends normally under ``None``."""
    with anyio.fail_after(10):
        outer = anyio.current_effective_deadline()
        async with session(job_duration_s=0.6) as (_emu, sdk):
            seen: list[tuple[float, float]] = []
            original = sdk.poller.next_observation

            async def spy(*args: Any, **kwargs: Any) -> Any:
                seen.append((anyio.current_effective_deadline(), anyio.current_time()))
                return await original(*args, **kwargs)

            sdk.poller.next_observation = spy  # type: ignore[method-assign]
            job = sdk.create_job(program=PROGRAM)
            with pytest.raises(JobTimeoutError):
                await job.execute(timeout_s=0.3)
            assert seen
            assert all(0 < deadline - now <= 0.3 for deadline, now in seen)
            seen.clear()
            await job.execute(timeout_s=None)
            assert job.completed
            assert seen
            assert all(deadline == outer for deadline, _ in seen)


# ------------------------------------------------------------------------------------------- 4
async def test_lesson_04_expired_ends_the_job_and_it_can_be_saved(tmp_path: Path) -> None:
    """4. An unmapped server status (its own `EXPIRED`) becomes UNKNOWN, is polled until the timeout,
    and a job in that state cannot be saved."""
    with anyio.fail_after(10):
        async with session(job_duration_s=30) as (emu, sdk):
            job = sdk.create_job(program=PROGRAM)
            await job.submit()
            assert job.task_id is not None
            await emu.expire(job.task_id)
            start = anyio.current_time()
            await job.execute(timeout_s=5)
            assert anyio.current_time() - start < 1.0  # ended at once, not polled to the deadline
            assert job.state is JobState.FAILED
            assert job.ended
            assert job.vendor_status == "EXPIRED"
            assert job.error is not None
            assert job.error.code == "EXPIRED"
            reads = len(status_reads(emu, job.task_id))
            path = await job.save(tmp_path / "expired.json")
            back = await sdk.load(path)
            assert back.state is JobState.FAILED
            assert back.error is not None
            assert back.error.code == "EXPIRED"
            await anyio.sleep(0.3)
            assert len(status_reads(emu, job.task_id)) == reads  # an ended job is not read again


# ------------------------------------------------------------------------------------------- 5
async def test_lesson_05_refresh_after_completion_appends_nothing() -> None:
    """5. `refresh()` after completion appends the same result to history again."""
    with anyio.fail_after(10):
        async with session() as (emu, sdk):
            job = sdk.create_job(program=PROGRAM)
            await job.execute(timeout_s=5)
            sent = len(emu.requests)
            for _ in range(3):
                assert await job.refresh() is JobState.COMPLETED
            assert len(job.history) == 1
            assert job.history.first is job.result
            assert len(emu.requests) == sent  # an ended job is not read again
            await job.execute(timeout_s=5)  # a new run is the only way to a second entry
            assert len(job.history) == 2


# ------------------------------------------------------------------------------------------- 6
async def test_lesson_06_reconfigure_never_orphans_a_running_task() -> None:
    """6. `reconfigure()` on a running job drops its task id without cancelling it: the server task
    is orphaned."""
    with anyio.fail_after(10):
        async with session(job_duration_s=30) as (emu, sdk):
            job = sdk.create_job(program=PROGRAM)
            await job.submit()
            await wait_until_running(job, emu)
            first = job.task_id
            with pytest.raises(JobStateError, match="cancel_if_active"):
                job.reconfigure(config={"shots": 10})
            assert job.task_id == first
            assert job.state is JobState.RUNNING
            assert job.config == {"shots": 1000}
            assert posts(emu, "/tasks/cancel_many") == []

            assert await job.cancel_if_active(timeout_s=5) is True
            assert await emu.status_of(first) == "CANCELLED"
            job.reconfigure(config={"shots": 10})
            assert job.state is JobState.CREATED
            assert job.task_id is None
            await job.submit()
            assert job.task_id not in (None, first)
            await job.cancel(timeout_s=5)
            statuses = await all_ids_settled(emu)
            assert statuses == {first: "CANCELLED", job.task_id: "CANCELLED"}


# ------------------------------------------------------------------------------------------- 7
async def test_lesson_07_composite_outputs_stay_aligned_and_cancel_in_one_request() -> None:
    """7. A composite's outputs leave out timed-out children, so output i is no longer child i; its
    repr counts cancelled children as active; it cancels children one request each though the
    endpoint takes a list.

    Children 1 and 3 go to the emulator's INACTIVE QPU, where tasks wait SUBMITTED: they time out.
    """
    with anyio.fail_after(15):
        async with session() as (emu, sdk):
            targets = [LUCY_QPU_ID, INACTIVE_QPU_ID, LUCY_QPU_ID, INACTIVE_QPU_ID]
            # Queued on purpose for the inactive QPU (refused otherwise: TargetUnavailableError).
            composite = sdk.create_job(program=[PROGRAM] * 4, qpu_id=targets, queue=True)
            with pytest.raises(JobTimeoutError) as info:
                await composite.execute(timeout_s=1.5)
            outputs = info.value.outputs
            assert outputs is not None
            assert len(outputs) == 4
            for i, (child, output) in enumerate(zip(composite, outputs, strict=True)):
                assert output.task_id == child.task_id, i
                assert output.target == targets[i]
            assert [type(o) for o in outputs] == [JobResult, JobPending, JobResult, JobPending]
            assert [type(o) for o in composite.outputs] == [JobResult, JobPending, JobResult, JobPending]

            summary = await composite.cancel(timeout_s=5)
            assert summary == {JobState.COMPLETED: 2, JobState.CANCELLED: 2}
            (cancel,) = posts(emu, "/tasks/cancel_many")
            assert cancel.path == "/9829a5504f/tasks/cancel_many"
            assert sorted(cancel.body["tasks"]) == sorted([composite[1].task_id, composite[3].task_id])
            assert [type(o) for o in composite.outputs] == [
                JobResult,
                JobCancellation,
                JobResult,
                JobCancellation,
            ]
            text = repr(composite)
            assert "2 COMPLETED" in text
            assert "2 CANCELLED" in text
            assert "SUBMITTED" not in text
            assert "RUNNING" not in text
            assert not composite.active
            assert composite.ended


# ------------------------------------------------------------------------------------------- 8
async def test_lesson_08_a_refused_submission_leaves_no_reserved_id_behind() -> None:
    """8. A failed batch submit orphans the ids it had pre-allocated.

    Here a composite reserves its ids together and submits them in one batch; a refused batch is
    sent again task by task (same ids), and when the server refuses one child's submission
    outright, that child fails and its reserved id is released with ``cancel_many``: every id the
    server handed out ends submitted (and run) or cancelled — none is left CREATED."""
    with anyio.fail_after(15):
        async with session() as (emu, sdk):
            # The batch, then the first task sent on its own, are refused.
            emu.fail_next(2, status=400, path="/tasks/submit", body={"response": {"errors": ["bad task"]}})
            composite = sdk.create_job(program=[PROGRAM] * 3)
            await composite.execute(timeout_s=5)
            states = sorted(child.state.value for child in composite)
            assert states == ["COMPLETED", "COMPLETED", "FAILED"]
            (refused,) = [child for child in composite if child.state is JobState.FAILED]
            assert refused.error is not None
            assert refused.error.code in ("400", "REJECTED")
            assert "bad task" in refused.error.message
            assert len(emu.task_ids) == 3  # three ids, reserved with one request
            assert len(posts(emu, "/tasks")) == 1
            statuses = await all_ids_settled(emu)
            completed = {child.task_id for child in composite if child.completed}
            leftover = set(statuses) - completed
            assert len(leftover) == 1
            assert statuses[leftover.pop()] == "CANCELLED"
            (release,) = posts(emu, "/tasks/cancel_many")
            assert release.body["tasks"][0] not in completed


# ------------------------------------------------------------------------------------------- 9
@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda e: e.fail_next(1, status=503, path="/tasks/submit"), id="503-not-processed"),
        pytest.param(
            lambda e: e.fail_after_processing_next(1, status=503, path="/tasks/submit"), id="503-lost-answer"
        ),
        pytest.param(
            lambda e: e.drop_next(1, path="/tasks/submit", after_processing=True), id="dropped-answer"
        ),
    ],
)
async def test_lesson_09_a_transient_submit_failure_is_retried_with_the_same_task_id(
    fault: Callable[[OqcEmulator], Any],
) -> None:
    """9. One transient 503 on submit marks the job FAILED — no retry, no idempotency key to find
    out whether the task was in fact created."""
    with anyio.fail_after(10):
        async with session() as (emu, sdk):
            fault(emu)
            job = sdk.create_job(program=PROGRAM)
            await job.execute(timeout_s=5)
            assert job.completed
            submits = posts(emu, "/tasks/submit")
            assert len(submits) == 2
            assert submits[0].fault is not None
            assert submits[1].status == 200
            assert {s.body["tasks"][0]["task_id"] for s in submits} == {job.task_id}
            assert emu.task_ids == [job.task_id]  # exactly one task on the server ...
            assert emu.engine_runs == 1  # ... run once
            assert len(job.history) == 1


# ------------------------------------------------------------------------------------------- 10
async def test_lesson_10_start_up_failures_raise_at_async_with() -> None:
    """10. Start-up failures are swallowed: the client claims to be initialised, later calls die
    with `TypeError: 'NoneType' object is not subscriptable`; the same when `async with` is
    forgotten."""
    with anyio.fail_after(10):
        async with emulator() as emu:
            with pytest.raises(AuthenticationError):
                async with OqcSdk(url=emu.base_url, authentication_token="wrong-token"):
                    pytest.fail("opened with a wrong token")
            dead = emu.base_url
        with pytest.raises(BackendUnavailableError, match=dead):
            async with OqcSdk(url=dead, authentication_token="any-token"):
                pytest.fail("opened on a server that is gone")

        async with emulator() as emu:
            forgot = OqcSdk(**emu.credentials, default_qpu_id=LUCY_QPU_ID)
            with pytest.raises(SdkNotStartedError, match="async with"):
                forgot.create_job(program=PROGRAM)
            with pytest.raises(SdkNotStartedError):
                await forgot.list_qpus()
            async with OqcSdk(**emu.credentials, default_qpu_id=LUCY_QPU_ID) as sdk:
                job = sdk.create_job(program=PROGRAM)
            for verb in (job.execute, job.submit, job.refresh, job.cancel):
                with pytest.raises(SdkNotStartedError):
                    await verb()
            assert posts(emu, "/tasks/submit") == []


# ------------------------------------------------------------------------------------------- 11
async def test_lesson_11_no_blocking_file_io_on_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """11. Blocking file reads on the event loop on every authenticated request; synchronous
    save/load."""
    loop_thread = threading.get_ident()
    file_io: list[tuple[str, int]] = []
    for name in ("_write_atomically", "read_document"):
        original = getattr(persistence_module, name)

        def wrapper(*args: Any, _original: Any = original, _name: str = name) -> Any:
            file_io.append((_name, threading.get_ident()))
            return _original(*args)

        monkeypatch.setattr(persistence_module, name, wrapper)
    opened_on_loop: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def spying_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() == loop_thread:
            opened_on_loop.append(str(file))
        return real_open(file, *args, **kwargs)

    def spying_os_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() == loop_thread:
            opened_on_loop.append(str(path))
        return real_os_open(path, *args, **kwargs)

    with anyio.fail_after(10):
        async with session() as (_emu, sdk):
            job = sdk.create_job(program=PROGRAM)
            await job.execute(timeout_s=5)  # warm up (imports, first connection)
            monkeypatch.setattr(builtins, "open", spying_open)
            monkeypatch.setattr(io, "open", spying_open)  # pathlib opens through io.open
            monkeypatch.setattr(os, "open", spying_os_open)
            again = sdk.create_job(program=PROGRAM)
            await again.execute(timeout_s=5)  # every authenticated request of a whole run
            path = await again.save(tmp_path / "job.json")
            back = await sdk.load(path)
            monkeypatch.undo()
    assert back.completed
    assert opened_on_loop == []
    assert [name for name, _ in file_io] == ["_write_atomically", "read_document"]
    assert all(thread != loop_thread for _, thread in file_io)


# ------------------------------------------------------------------------------------------- 12
async def test_lesson_12_no_side_requests_and_no_background_tasks_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """12. Every 429/5xx fires an untracked background request to a third-party status page."""
    loop = asyncio.get_running_loop()
    hosts: list[Any] = []
    real_create_connection = loop.create_connection

    async def create_connection(*args: Any, **kwargs: Any) -> Any:
        sock = kwargs.get("sock")  # aiohttp connects the socket itself, then hands it over
        hosts.append(sock.getpeername()[0] if sock is not None else kwargs.get("host", args[1:2]))
        return await real_create_connection(*args, **kwargs)

    monkeypatch.setattr(loop, "create_connection", create_connection)
    with anyio.fail_after(15):
        async with emulator(job_duration_s=0.2) as emu:
            before = asyncio.all_tasks()
            emu.clear_log()
            async with OqcSdk(**emu.credentials, default_qpu_id=LUCY_QPU_ID) as sdk:
                assert sdk_tasks(asyncio.all_tasks() - before)  # the check sees the SDK's own tasks
                emu.fail_next(2, status=429, retry_after=0.1, path="/status")
                emu.fail_next(2, status=503, path="/tasks/submit")
                emu.fail_next(1, status=502, path="/results")
                emu.fail_next(1, status=500, path="/admin/qpu")
                jobs = [sdk.create_job(program=PROGRAM) for _ in range(3)]
                async with anyio.create_task_group() as tg:
                    for job in jobs:
                        tg.start_soon(job.execute, 10)
                assert await sdk.list_qpus()
                assert all(job.completed for job in jobs)
                sent = sdk.backend.http.requests_sent  # type: ignore[attr-defined]
            assert {e.fault for e in emu.requests} >= {"fail"}
            assert len(emu.requests) == sent  # every request the SDK made reached the emulator ...
            assert hosts
            assert set(hosts) == {"127.0.0.1"}
            await anyio.sleep(0.05)
            assert sdk_tasks(asyncio.all_tasks() - before) == []


def sdk_tasks(tasks: set[asyncio.Task[Any]]) -> list[str]:
    """The live tasks running the SDK's own code (its emulators' tasks aside). anyio names a task
    after its function (``oqc_style_sdk.polling.Poller.run``); plain asyncio tasks show their code."""
    found = []
    for task in tasks:
        code = getattr(task.get_coro(), "cr_code", None)
        where = f"{task.get_name()} {code.co_filename if code is not None else ''}"
        if task.done() or "oqc_style_sdk" not in where:
            continue
        if "oqc_style_sdk.testing" in where or f"oqc_style_sdk{os.sep}testing{os.sep}" in where:
            continue
        found.append(where)
    return found


# ------------------------------------------------------------------------------------------- 13
async def test_lesson_13_retry_after_is_obeyed() -> None:
    """13. No rate limit, no jitter, `Retry-After` ignored; one GET per job per tick (0.2 s
    doubling to 10 s). — here: `Retry-After`."""
    with anyio.fail_after(10):
        async with session(job_duration_s=0.5) as (emu, sdk):
            job = sdk.create_job(program=PROGRAM)
            await job.submit()
            assert job.task_id is not None
            emu.fail_next(1, status=429, retry_after=1, path=f"/{job.task_id}/status")
            await job.execute(timeout_s=5)
            assert job.completed
            reads = status_reads(emu, job.task_id)
            limited = next(i for i, e in enumerate(reads) if e.status == 429)
            assert reads[limited + 1].time - reads[limited].time >= 0.99


async def test_lesson_13_polling_is_jittered() -> None:
    """13. … no jitter … — four clients polling identical jobs do not read in lockstep.

    Each interval is jittered by ±10 %: that all four clients' gaps agree within 5 ms at each of the
    first three reads (0.1, 0.2 and 0.4 s) has a probability below one in a million."""
    with anyio.fail_after(15):
        async with emulator(job_duration_s=1.0) as emu:
            task_ids: list[str] = []

            async def one() -> None:
                async with OqcSdk(**emu.credentials, default_qpu_id=LUCY_QPU_ID) as sdk:
                    job = sdk.create_job(program=PROGRAM)
                    await job.submit()
                    assert job.task_id is not None
                    task_ids.append(job.task_id)
                    await job.execute(timeout_s=10)
                    assert job.completed

            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(one)
            gaps = []
            for task_id in task_ids:
                times = [e.time for e in status_reads(emu, task_id)]
                gaps.append([b - a for a, b in itertools.pairwise(times)])
            n = min(len(g) for g in gaps)
            assert n >= 3
            spread = max(abs(gaps[i][k] - gaps[j][k]) for k in range(n) for i in range(4) for j in range(i))
            assert spread > 0.005, gaps


async def test_lesson_13_far_fewer_status_reads_than_one_per_job_per_tick() -> None:
    """13. … one GET per job per tick (0.2 s doubling to 10 s).

    Eight jobs of 0.7 s: the published SDK reads each at 0.2, 0.6 and 1.4 s (24 GETs); here the
    jobs of one QPU are read together, one request per tick."""
    duration = 0.7
    with anyio.fail_after(15):
        async with session(job_duration_s=duration) as (emu, sdk):
            composite = sdk.create_job(program=[PROGRAM] * 8)
            await composite.execute(timeout_s=10)
            assert composite.completed
            ticks, t = [], 0.2
            while not ticks or ticks[-1] < duration:
                ticks.append(t)
                t = 2 * t + 0.2  # 0.2, 0.6, 1.4, ...: waits of 0.2 s doubling
            published = len(ticks) * len(composite)
            ours = len(status_reads(emu))
            assert published == 24
            assert ours <= len(composite), ours  # at most one read per job over the whole run
            assert 3 * ours <= published, ours


# ------------------------------------------------------------------------------------------- 15
async def test_lesson_15_one_failure_type_ok_false_on_errors_and_aware_utc_times() -> None:
    """15. `raise_for_status()` raises `JobFailed` but the output proxy's error check raises
    `RuntimeError`; a `JobError` without a code reports `ok=True`; `received` is naive local time
    of observation."""
    with anyio.fail_after(10):
        async with session() as (_emu, sdk):
            job = sdk.create_job(program=BAD_PROGRAM)
            outputs = await job.execute(timeout_s=5)
            with pytest.raises(JobFailed) as from_job:
                job.raise_for_status()
            with pytest.raises(JobFailed) as from_outputs:
                outputs.raise_for_status()
            assert type(from_job.value) is type(from_outputs.value) is JobFailed
            assert not isinstance(from_outputs.value, RuntimeError)
            with pytest.raises(JobFailed):
                job.history.raise_for_status()

            composite = sdk.create_job(program=[PROGRAM, BAD_PROGRAM])
            await composite.execute(timeout_s=5)
            with pytest.raises(JobFailed):
                composite.raise_for_status()
            with pytest.raises(JobFailed):
                composite.outputs.raise_for_status()

            bare = JobError(message="no code given")
            assert bare.code is None
            assert bare.ok is False
            assert bare.is_error is True
            assert job.error is not None
            assert job.error.ok is False

            before = datetime.now(UTC)
            good = sdk.create_job(program=PROGRAM)
            await good.execute(timeout_s=5)
            received = good.result.received if good.result else None
            assert received is not None
            assert received.tzinfo is not None
            assert received.utcoffset() == timedelta(0)
            assert before <= received <= datetime.now(UTC)
            assert job.error.received is not None
            assert job.error.received.utcoffset() == timedelta(0)


def test_every_lesson_is_covered() -> None:
    """Items 1–13 and 15 each have a test named after them."""
    names = [name for name in globals() if name.startswith("test_lesson_")]
    covered = {int(name.split("_")[2]) for name in names}
    assert covered == {*range(1, 14), 15}
