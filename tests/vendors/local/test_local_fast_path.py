"""A single tiny job's fast path: simulated in the dispatcher's own turn of the loop (no chunk task),
its readings handed to the poller's waiters as they happen (``peek``), no status read needed."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from oqc_style_sdk import Sdk
from oqc_style_sdk.backends import local
from oqc_style_sdk.backends.base import Observation, RunRef
from oqc_style_sdk.backends.local import LocalBackend
from oqc_style_sdk.exceptions import JobValidationError
from oqc_style_sdk.job_output import JobResult
from oqc_style_sdk.polling import Poller
from oqc_style_sdk.state import JobState

from .test_local_backend import (
    BELL_QASM3,
    COIN_QASM3,
    TERMINAL,
    Changes,
    run_now,
    run_to_end,
    running,
    spec,
)


class Spy:
    """Records each in-process simulation: (runs, on the event loop's thread)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, bool]] = []
        self._simulate = local._simulate
        monkeypatch.setattr(local, "_simulate", self)

    def __call__(self, items: Any) -> Any:
        self.calls.append((len(items), threading.current_thread() is threading.main_thread()))
        return self._simulate(items)


class CountingBackend(LocalBackend):
    """Counts the status reads the poller sends."""

    reads = 0

    async def statuses(self, refs: Sequence[RunRef]) -> dict[str, Observation | BaseException]:
        self.reads += 1
        return await super().statuses(refs)


@asynccontextmanager
async def warm_backend(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[LocalBackend, Changes, Spy]]:
    """A started backend whose in-process lane has run its first run (measured, on a thread)."""
    spy = Spy(monkeypatch)
    async with running() as (backend, changes):
        await run_to_end(backend, changes, spec(COIN_QASM3))
        spy.calls.clear()
        yield backend, changes, spy


async def warm(sdk: Sdk) -> None:
    """The in-process lane's first run is measured on a thread; after it the lane's time is known."""
    await sdk.create_job(program=COIN_QASM3, config={"shots": 10}).execute(timeout_s=60)


async def test_a_single_tiny_job_ends_in_the_dispatchers_turn_with_its_whole_lifecycle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy = Spy(monkeypatch)
    chunks: list[object] = []
    run_chunk = LocalBackend._run_chunk

    async def counted(self: LocalBackend, chunk: Any, token: object) -> None:
        chunks.append(chunk)
        await run_chunk(self, chunk, token)

    monkeypatch.setattr(LocalBackend, "_run_chunk", counted)
    async with Sdk() as sdk:
        await warm(sdk)
        chunks.clear()
        spy.calls.clear()
        for _ in range(3):
            job = sdk.create_job(program=BELL_QASM3, config={"shots": 200}, fetch_diagnostics=True)
            await job.execute(timeout_s=60)
            assert job.state is JobState.COMPLETED
            assert job.result is not None
            assert set(job.result.data["c"]) <= {"00", "11"}
            assert sum(job.result.data["c"].values()) == 200
            assert len(job.history) == 1
            assert isinstance(job.history[0], JobResult)
            assert job.metadata is not None
            assert (job.metadata["lane"], job.metadata["batch_size"]) == ("inline", 1)
            assert job.timings is not None
            assert job.timings["started_at"] is not None
        assert spy.calls == [(1, True)] * 3  # on the event loop, one run at a time
        assert chunks == []  # no chunk task: the dispatcher ran them itself


async def test_the_fast_path_still_tells_the_listener_of_every_transition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with warm_backend(monkeypatch) as (backend, changes, spy):
        ref, state = await run_to_end(backend, changes, spec(COIN_QASM3))
        assert state is JobState.COMPLETED
        assert spy.calls == [(1, True)]
        assert changes.states(ref) == [JobState.RUNNING, JobState.COMPLETED]


async def test_a_run_cancelled_as_it_starts_on_the_fast_path_ends_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cancel that comes in while the dispatcher runs the run (here: from the change listener,
    told of RUNNING before the simulation) wins: the simulation's outcome is discarded."""
    async with warm_backend(monkeypatch) as (backend, changes, spy):
        target: list[RunRef] = []

        def cancel_at_start(task_id: str) -> None:
            changes(task_id)
            ref = RunRef(task_id, {"instance": backend.instance_id})
            started = target and task_id == target[0].task_id
            if started and run_now(backend.status(ref)).state is JobState.RUNNING:
                run_now(backend.cancel(ref, "as it started"))

        backend.set_change_listener(cancel_at_start)
        ref = await backend.submit(backend.validate(spec(COIN_QASM3)), uuid.uuid4().hex)
        target.append(ref)
        assert await changes.wait_for(ref, *TERMINAL) is JobState.CANCELLED
        assert spy.calls == [(1, True)]  # it did run (on the loop), and its outcome was dropped
        obs = await backend.status(ref)
        assert (obs.state, obs.message) == (JobState.CANCELLED, "as it started")
        assert changes.states(ref) == [JobState.RUNNING, JobState.CANCELLED]
        backend.set_change_listener(changes)
        _, state = await run_to_end(backend, changes, spec(COIN_QASM3))
        assert state is JobState.COMPLETED  # the slot is free


async def test_a_run_cancelled_before_the_dispatcher_takes_it_never_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with warm_backend(monkeypatch) as (backend, changes, spy):
        ref = await backend.submit(backend.validate(spec(COIN_QASM3)), uuid.uuid4().hex)
        await backend.cancel(ref, "changed my mind")  # in the same turn: still queued
        await anyio.wait_all_tasks_blocked()
        assert spy.calls == []
        assert changes.states(ref) == [JobState.CANCELLED]


async def test_a_fast_job_cancelled_after_it_ended_keeps_its_result() -> None:
    async with Sdk() as sdk:
        await warm(sdk)
        done = sdk.create_job(program=COIN_QASM3, config={"shots": 10})
        await done.execute(timeout_s=60)
        assert await done.cancel(timeout_s=10) is JobState.COMPLETED  # ended first: kept
        assert done.result is not None
        assert len(done.history) == 1
        assert isinstance(done.history[0], JobResult)


async def test_a_waiter_gets_a_run_that_ended_before_it_waited_without_a_read() -> None:
    """``peek``: the reading of a run that already ended is handed over at once, with no watch and
    no status read; one of a run under way starts from its reading and gets each change."""
    backend = CountingBackend()
    async with anyio.create_task_group() as tg:
        await backend.start(tg)
        poller = Poller(backend)
        await tg.start(poller.run)
        done = anyio.Event()

        def listener(task_id: str) -> None:
            poller.poke(task_id)
            if task_id == ended.task_id and run_now(backend.status(ended)).state.is_terminal:
                done.set()

        backend.set_change_listener(listener)
        try:
            ended = await backend.submit(backend.validate(spec(COIN_QASM3)), "a")
            with anyio.fail_after(30):
                await done.wait()
            reads = backend.reads
            obs = await poller.next_observation(ended, None)
            assert obs.state is JobState.COMPLETED
            assert poller.bookkeeping()["watches"] == 0
            assert backend.reads == reads  # handed over, not read
            slow = await backend.submit(backend.validate(spec(COIN_QASM3, min_duration_s=0.3)), "b")
            states = []
            known: Observation | None = None
            with anyio.fail_after(30):
                while known is None or known.state.is_active:
                    known = await poller.next_observation(slow, known)
                    states.append(known.state)
            assert states[-1] is JobState.COMPLETED
            assert states[0] in (JobState.SUBMITTED, JobState.RUNNING)
        finally:
            await backend.aclose()
            tg.cancel_scope.cancel()


async def test_a_spec_not_from_validate_is_validated_at_submit() -> None:
    async with running() as (backend, _):
        backend.validate(spec(BELL_QASM3))
        with pytest.raises(JobValidationError, match="shots"):
            await backend.submit(spec(BELL_QASM3, shots=0), "k")
        ref = await backend.submit(spec(BELL_QASM3, shots=5), "k2")  # raw, normalised here
        assert str(uuid.UUID(ref.task_id, version=4)) == ref.task_id


def test_local_keys_are_distinct() -> None:
    backend = LocalBackend()
    keys = {backend.local_idempotency_key(spec()) for _ in range(1000)}
    assert len(keys) == 1000
    assert all(len(key) == 32 and int(key, 16) >= 0 for key in keys)


async def test_the_dispatcher_lets_others_run_between_runs_it_simulates_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each chunk the dispatcher simulates itself holds the loop a few milliseconds at most: with a
    queue of such chunks (here one run each), other tasks run between them."""
    monkeypatch.setattr(local, "SCHEDULE", local.Schedule(inline_max_runs=1))
    async with warm_backend(monkeypatch) as (backend, _, spy):
        seen: list[int] = []
        refs = await backend.submit_many(
            [backend.validate(spec(COIN_QASM3)) for _ in range(5)], list("abcde")
        )
        for _ in range(50):
            seen.append(len(spy.calls))
            if seen[-1] == 5:
                break
            await anyio.lowlevel.checkpoint()
        assert spy.calls == [(1, True)] * 5
        assert any(0 < n < 5 for n in seen)  # this task ran between two of them
        for ref in refs:
            assert isinstance(ref, RunRef)
            assert (await backend.status(ref)).state is JobState.COMPLETED
