"""The poller at scale, driven by a controllable clock: batch reads, the rate limit, shared Retry-After.

The poller's loop is not run here: the tests call :meth:`Poller.plan` and :meth:`Poller._tick` in
turn while moving a fake clock, so nothing depends on how fast the machine is.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from oqc_style_sdk.backends.base import Backend, Observation, RunRef, RunSpec
from oqc_style_sdk.exceptions import RateLimitedError
from oqc_style_sdk.polling import Poller, PollingPolicy, RateLimiter
from oqc_style_sdk.state import JobState

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FakeBackend(Backend):
    """Runs end after ``reads_to_end`` readings; counts requests as a vendor would see them."""

    name = "fake"

    def __init__(self, *, batch: bool, reads_to_end: int = 3, rate: float | None = None) -> None:
        self.batch_status = batch
        self.status_reads_per_s = rate
        self.reads_to_end = reads_to_end
        self.requests = 0
        self.seen: dict[str, int] = {}
        self.limited: set[str] = set()  # task ids whose next read is answered 429 Retry-After: 5

    def validate(self, spec: RunSpec) -> RunSpec:  # pragma: no cover - not used
        return spec

    async def submit(self, spec: RunSpec, idempotency_key: str) -> RunRef:  # pragma: no cover
        return RunRef(idempotency_key)

    def _read(self, ref: RunRef) -> Observation:
        n = self.seen[ref.task_id] = self.seen.get(ref.task_id, 0) + 1
        if n >= self.reads_to_end:
            return Observation(JobState.COMPLETED, "COMPLETED")
        return Observation(JobState.RUNNING, "RUNNING")

    async def status(self, ref: RunRef) -> Observation:
        self.requests += 1
        if ref.task_id in self.limited:
            self.limited.discard(ref.task_id)
            raise RateLimitedError("slow down", retry_after_s=5.0)
        return self._read(ref)

    async def statuses(self, refs: Sequence[RunRef]) -> dict[str, Observation | BaseException]:
        if not self.batch_status:
            return await super().statuses(refs)
        self.requests += 1
        return {ref.task_id: self._read(ref) for ref in refs}

    async def cancel(self, ref: RunRef, reason: str | None = None) -> None:  # pragma: no cover
        pass

    async def result(self, ref: RunRef, spec: RunSpec) -> Any:  # pragma: no cover
        return {}

    async def list_targets(self) -> list[dict[str, Any]]:  # pragma: no cover
        return []


async def _watch_all(poller: Poller, n: int, done: dict[str, Observation]) -> list[Any]:
    """Start ``n`` waiters that each wait for their run's terminal reading."""
    refs = [RunRef(f"run-{i}") for i in range(n)]

    async def wait(ref: RunRef) -> None:
        known: Observation | None = None
        while known is None or known.state.is_active:
            try:
                known = await poller.next_observation(ref, known)
            except RateLimitedError:
                continue
        done[ref.task_id] = known

    return [(wait, ref) for ref in refs]


async def _drive(poller: Poller, clock: Clock, *, step: float, until: float) -> list[int]:
    """Move the clock by ``step`` up to ``until`` seconds, ticking whenever plan() says so."""
    sizes: list[int] = []
    end = clock.t + until
    while clock.t < end:
        due, _wait = poller.plan()
        if due:
            sizes.append(len(due))
            await poller._tick(due)
        await anyio.lowlevel.checkpoint()  # let the waiters take their readings
        await anyio.lowlevel.checkpoint()
        clock.t += step
    return sizes


async def test_two_hundred_runs_cost_one_request_per_tick_with_a_batch_read() -> None:
    clock = Clock()
    backend = FakeBackend(batch=True)
    poller = Poller(
        backend, PollingPolicy(0.5, 5.0, max_reads_per_s=math.inf), clock=clock, rng=random.Random(1)
    )
    done: dict[str, Observation] = {}
    async with anyio.create_task_group() as tg:
        for fn, ref in await _watch_all(poller, 200, done):
            tg.start_soon(fn, ref)
        await anyio.lowlevel.checkpoint()
        sizes = await _drive(poller, clock, step=0.05, until=10.0)
        tg.cancel_scope.cancel()
    assert len(done) == 200
    assert all(o.state is JobState.COMPLETED for o in done.values())
    # Three readings per run end it: one request per tick, a handful of requests for 200 runs.
    assert backend.requests == poller.reads == len(sizes)
    assert backend.requests <= 6  # 600 readings; one GET each would be 600 requests
    assert max(sizes) == 200


async def test_the_rate_limit_bounds_requests_without_a_batch_read() -> None:
    clock = Clock()
    backend = FakeBackend(batch=False, reads_to_end=10**9)
    poller = Poller(backend, PollingPolicy(0.1, 0.1, jitter=0.0, max_reads_per_s=10.0), clock=clock)
    done: dict[str, Observation] = {}
    async with anyio.create_task_group() as tg:
        for fn, ref in await _watch_all(poller, 100, done):
            tg.start_soon(fn, ref)
        await anyio.lowlevel.checkpoint()
        await _drive(poller, clock, step=0.01, until=10.0)
        tg.cancel_scope.cancel()
    # 100 runs wanting 10 reads a second each (1000/s) get 10/s, plus the first burst of 10.
    assert 90 <= backend.requests <= 10 * 10 + 10
    # ... and the most overdue are read first, so every run is read, none starved.
    assert len(backend.seen) == 100


async def test_the_backend_default_rate_applies_and_policy_overrides_it() -> None:
    assert Poller(FakeBackend(batch=True, rate=7.0)).limiter.rate == 7.0
    assert Poller(FakeBackend(batch=True, rate=None)).limiter.rate == math.inf
    policy = PollingPolicy(0.1, 1.0, max_reads_per_s=3.0)
    assert Poller(FakeBackend(batch=True, rate=7.0), policy).limiter.rate == 3.0
    with pytest.raises(ValueError, match="max_reads_per_s"):
        PollingPolicy(0.1, 1.0, max_reads_per_s=0)


async def test_one_retry_after_holds_every_read_of_the_backend() -> None:
    clock = Clock()
    backend = FakeBackend(batch=False, reads_to_end=10**9)
    poller = Poller(backend, PollingPolicy(0.1, 0.1, jitter=0.0, max_reads_per_s=math.inf), clock=clock)
    done: dict[str, Observation] = {}
    async with anyio.create_task_group() as tg:
        for fn, ref in await _watch_all(poller, 20, done):
            tg.start_soon(fn, ref)
        await anyio.lowlevel.checkpoint()
        backend.limited.add("run-3")  # one run's read is answered 429, Retry-After: 5
        due, _ = poller.plan()
        assert len(due) == 20
        await poller._tick(due)
        start, sent = clock.t, backend.requests
        assert sent == 20
        # For the next five seconds nothing is read, although every other run is due again.
        while clock.t + 0.1 < start + 4.99:
            clock.t += 0.1
            due, wait = poller.plan()
            assert due == []
            assert 0 < wait <= 5.0
        assert backend.requests == sent
        clock.t = start + 5.01
        due, _ = poller.plan()
        assert len(due) == 20
        tg.cancel_scope.cancel()


def test_rate_limiter_is_a_token_bucket() -> None:
    clock = Clock()
    bucket = RateLimiter(2.0, burst=4, clock=clock)
    assert bucket.available() == 4
    bucket.take(4)
    assert bucket.available() == 0
    assert bucket.wait_s() == pytest.approx(0.5)
    clock.t += 1.0
    assert bucket.available() == pytest.approx(2.0)
    clock.t += 100.0
    assert bucket.available() == 4  # never more than the burst
    bucket.take(6)  # debt: later requests wait it out
    assert bucket.wait_s() == pytest.approx(1.5)
    unlimited = RateLimiter(math.inf, clock=clock)
    unlimited.take(10**6)
    assert unlimited.available() == math.inf
    assert unlimited.wait_s() == 0
    with pytest.raises(ValueError, match="rate > 0"):
        RateLimiter(0)
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(1.0, burst=0.5)


async def _batch_interval(policy: PollingPolicy, *, step: float, until: float) -> tuple[float, float]:
    """Three runs followed through a batch read that never ends them, driven to ``until``:
    the first run's interval then, and how long it has been watched."""
    clock = Clock()
    poller = Poller(FakeBackend(batch=True, reads_to_end=10**9), policy, clock=clock)
    done: dict[str, Observation] = {}
    async with anyio.create_task_group() as tg:
        for fn, ref in await _watch_all(poller, 3, done):
            tg.start_soon(fn, ref)
        await anyio.lowlevel.checkpoint()
        start = clock.t
        await _drive(poller, clock, step=step, until=until)
        tg.cancel_scope.cancel()
    return poller._watches["run-0"].interval, clock.t - start


async def test_with_a_batch_read_intervals_stay_a_fraction_of_the_run_age() -> None:
    policy = PollingPolicy(0.1, 30.0, jitter=0.0, max_reads_per_s=math.inf, lag_ratio=0.2)
    interval, age = await _batch_interval(policy, step=0.05, until=60.0)
    # Without the cap the interval would have doubled up to 30 s; it stays near age / 5.
    assert interval <= age * 0.2 + 1e-9
    assert interval >= 5.0
    with pytest.raises(ValueError, match="lag_ratio"):
        PollingPolicy(0.1, 1.0, lag_ratio=0)


async def test_with_a_batch_read_early_intervals_grow_to_the_lag_floor_not_beyond() -> None:
    policy = PollingPolicy(0.1, 30.0, jitter=0.0, max_reads_per_s=math.inf, lag_ratio=0.2, lag_floor_s=0.5)
    interval, _ = await _batch_interval(policy, step=0.01, until=2.0)
    # At 2 s a fifth of the age is 0.4 s: the floor (0.5 s) holds instead; without a floor
    # the interval would be 0.4 s, without the cap 0.1 s doubling past 1.6 s.
    assert interval == pytest.approx(0.5)
    with pytest.raises(ValueError, match="lag_floor_s"):
        PollingPolicy(0.1, 1.0, lag_floor_s=-1)


async def test_a_run_asked_to_change_is_read_at_the_fastest_interval_until_it_ends() -> None:
    clock = Clock()
    backend = FakeBackend(batch=False, reads_to_end=10**9)
    poller = Poller(backend, PollingPolicy(1.0, 10.0, jitter=0.0, max_reads_per_s=math.inf), clock=clock)
    done: dict[str, Observation] = {}
    async with anyio.create_task_group() as tg:
        for fn, ref in await _watch_all(poller, 1, done):
            tg.start_soon(fn, ref)
        await anyio.lowlevel.checkpoint()
        await _drive(poller, clock, step=0.05, until=3.1)  # reads at 0, 1 and 3 s: backing off
        assert backend.requests == 3
        poller.expect_change("run-0")  # e.g. a cancel was sent: the next read in 1 s, not 4 s
        await _drive(poller, clock, step=0.05, until=3.3)
        assert backend.requests == 6  # every second, never faster than the policy allows
        backend.reads_to_end = 7
        await _drive(poller, clock, step=0.05, until=1.0)
        assert done["run-0"].state is JobState.COMPLETED
        assert "run-0" not in poller._hurried  # ended: back to usual
        poller.expect_change("unknown")  # nothing watched: only remembered
        tg.cancel_scope.cancel()


@pytest.mark.parametrize(("runs", "next_interval"), [(3, 0.5), (1, 0.1)])
async def test_a_batch_read_of_several_runs_is_not_repeated_faster_than_the_floor_after_a_change(
    runs: int, next_interval: float
) -> None:
    """Their first readings are a change: several runs read by one list go next at the floor (each
    read parses the whole list), a run read on its own at the fastest interval."""
    clock = Clock()
    policy = PollingPolicy(0.1, 30.0, jitter=0.0, max_reads_per_s=math.inf, lag_ratio=0.2, lag_floor_s=0.5)
    poller = Poller(FakeBackend(batch=True, reads_to_end=10**9), policy, clock=clock)
    done: dict[str, Observation] = {}
    async with anyio.create_task_group() as tg:
        for fn, ref in await _watch_all(poller, runs, done):
            tg.start_soon(fn, ref)
        await anyio.lowlevel.checkpoint()
        clock.t += 1.0
        due, _ = poller.plan()
        assert len(due) == runs
        await poller._tick(due)
        assert {watch.interval for watch in poller._watches.values()} == {next_interval}
        tg.cancel_scope.cancel()
