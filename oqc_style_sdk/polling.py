"""The one place that waits on jobs.

One :class:`Poller` per Sdk serves every job waiting on its backend. Each watched run has its own
interval: it starts at the backend's fastest, grows by ``factor`` each read that shows no change, and
drops back to the fastest when something changes. Every interval is jittered, so thousands of jobs
do not read in lockstep. At each tick all due runs are read together through
``Backend.statuses`` — one request for backends with a list endpoint, bounded concurrency otherwise.
Backends that learn of changes by themselves (the local simulator) poke the poller, which reads at
once instead of waiting out the interval.

Waiters never sleep on their own: they wait for the poller's next reading of their run, and bring
their own deadline (``anyio.fail_after`` around :meth:`Poller.next_observation`).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from .backends.base import Backend, Observation, RunRef
from .exceptions import BackendUnavailableError
from .state import JobState

__all__ = ["Poller", "PollingPolicy", "state_rank"]

logger = logging.getLogger("oqc_style_sdk.polling")


def state_rank(state: JobState) -> int:
    """How far along the lifecycle a state is; all terminal states share the last rank."""
    return {JobState.CREATED: 0, JobState.SUBMITTED: 1, JobState.RUNNING: 2}.get(state, 3)


@dataclass(frozen=True, slots=True)
class PollingPolicy:
    """How often runs are read. Defaults come from the backend."""

    min_interval_s: float
    max_interval_s: float
    factor: float = 2.0
    jitter: float = 0.1
    #: The longest one tick's status read may take, retries included.
    read_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not (0 < self.min_interval_s <= self.max_interval_s):
            raise ValueError("polling needs 0 < min_interval_s <= max_interval_s")
        if self.factor < 1 or not (0 <= self.jitter < 1):
            raise ValueError("polling needs factor >= 1 and 0 <= jitter < 1")

    @classmethod
    def for_backend(cls, backend: Backend) -> PollingPolicy:
        return cls(backend.min_poll_interval_s, backend.max_poll_interval_s)

    def next_interval(self, current: float, changed: bool) -> float:
        """The un-jittered interval after a read."""
        if changed:
            return self.min_interval_s
        return min(current * self.factor, self.max_interval_s)


@dataclass(slots=True)
class _Watch:
    ref: RunRef
    interval: float
    due: float
    waiters: int = 0
    latest: Observation | None = None
    error: BaseException | None = None
    seq: int = 0
    fired: anyio.Event = field(default_factory=anyio.Event)

    def deliver(self, obs: Observation | None, error: BaseException | None) -> None:
        self.latest = obs if obs is not None else self.latest
        self.error = error
        self.seq += 1
        fired, self.fired = self.fired, anyio.Event()
        fired.set()


class Poller:
    """Reads the status of every watched run of one backend, and wakes the jobs waiting on them."""

    def __init__(
        self,
        backend: Backend,
        policy: PollingPolicy | None = None,
        *,
        clock: Callable[[], float] = anyio.current_time,
        rng: random.Random | None = None,
    ) -> None:
        self._backend = backend
        self.policy = policy or PollingPolicy.for_backend(backend)
        self._clock = clock
        self._rng = rng or random.Random()
        self._watches: dict[str, _Watch] = {}
        self._wake = anyio.Event()
        #: Status reads sent so far (one per run for backends without a batch read).
        self.reads = 0
        #: Calls of ``Backend.statuses`` (ticks that read anything).
        self.ticks = 0

    @property
    def watching(self) -> int:
        """How many runs are being watched."""
        return len(self._watches)

    def poke(self, task_id: str) -> None:
        """Read ``task_id`` at the next opportunity (the backend says it changed)."""
        watch = self._watches.get(task_id)
        if watch is not None:
            watch.due = self._clock()
            watch.interval = self.policy.min_interval_s
            self._wake.set()

    def observed(self, ref: RunRef, obs: Observation) -> None:
        """A job read ``ref`` itself: share the reading with anyone waiting on it."""
        watch = self._watches.get(ref.task_id)
        if watch is not None and not obs.same_as(watch.latest):
            watch.interval = self.policy.min_interval_s
            watch.deliver(obs, None)

    async def next_observation(self, ref: RunRef, known: Observation | None) -> Observation:
        """Wait for a reading of ``ref`` that differs from ``known``; raise a failed read's error.

        There is no deadline here: the caller puts one around the call.
        """
        watch = self._watches.get(ref.task_id)
        if watch is None:
            now = self._clock()
            watch = _Watch(ref=ref, interval=self.policy.min_interval_s, due=now)
            self._watches[ref.task_id] = watch
            self._wake.set()
        watch.waiters += 1
        try:
            cached = watch.latest
            if (
                cached is not None
                and not cached.same_as(known)
                and (known is None or state_rank(cached.state) >= state_rank(known.state))
            ):
                return cached
            while True:
                seen = watch.seq
                await watch.fired.wait()
                if watch.seq == seen:  # pragma: no cover - Event semantics make this unreachable
                    continue
                if watch.error is not None:
                    raise watch.error
                if watch.latest is not None and not watch.latest.same_as(known):
                    return watch.latest
        finally:
            # The watch is kept (and dropped by the loop once nobody waits): a waiter that comes
            # straight back for the next reading keeps the run's schedule, instead of starting a
            # new watch that reads at once (a second read per change) and forgets any backoff.
            watch.waiters -= 1

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The polling loop; runs in the Sdk's task group until it is cancelled."""
        task_status.started()
        while True:
            self._wake = anyio.Event()
            for task_id in [k for k, w in self._watches.items() if w.waiters == 0]:
                del self._watches[task_id]
            now = self._clock()
            due = [w for w in self._watches.values() if w.due <= now]
            if due and self._backend.batch_status:
                # One request reads any number of runs: take along those due within half their
                # interval, so runs started together stay read together instead of drifting
                # apart by their jitter into one request each.
                due = [w for w in self._watches.values() if w.due <= now + w.interval / 2]
            if not due:
                next_due = min((w.due for w in self._watches.values()), default=math.inf)
                with anyio.move_on_after(max(next_due - now, 0.0)):
                    await self._wake.wait()
                continue
            await self._tick(due)

    async def _tick(self, due: list[_Watch]) -> None:
        self.ticks += 1
        self.reads += 1 if self._backend.batch_status else len(due)
        try:
            # One tick never holds up the others for long: retries inside the read (a Retry-After,
            # a backoff) stop at this bound, and what is left is tried again at the next tick.
            with anyio.fail_after(self.policy.read_timeout_s):
                readings = await self._backend.statuses([w.ref for w in due])
        except TimeoutError:
            exc = BackendUnavailableError(
                f"reading {len(due)} run(s) took longer than {self.policy.read_timeout_s:g} s"
            )
            logger.debug("%s", exc)
            readings = {w.ref.task_id: exc for w in due}
        except Exception as exc:  # handed to every waiter of these runs, typed
            logger.debug("status read of %d runs failed: %s", len(due), exc)
            readings = {w.ref.task_id: exc for w in due}
        now = self._clock()
        for watch in due:
            reading = readings.get(watch.ref.task_id)
            if reading is None:
                changed = False
            elif isinstance(reading, BaseException):
                watch.deliver(None, reading)
                changed = False
            else:
                watch.error = None
                changed = not reading.same_as(watch.latest)
                if changed:
                    watch.deliver(reading, None)
            watch.interval = self.policy.next_interval(watch.interval, changed)
            spread = 1.0 + self._rng.uniform(-self.policy.jitter, self.policy.jitter)
            watch.due = now + watch.interval * spread
            retry_after = getattr(reading, "retry_after_s", None)
            if isinstance(reading, BaseException) and isinstance(retry_after, int | float):
                watch.due = max(watch.due, now + retry_after)  # the server asked us to wait
