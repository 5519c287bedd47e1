"""The one place that waits on jobs.

One :class:`Poller` per Sdk serves every job waiting on its backend. Each watched run has its own
interval: it starts at the backend's fastest, grows by ``factor`` each read that shows no change, and
drops back to the fastest when something changes. Every interval is jittered, so jobs and clients do
not read in lockstep (the runs of one batch read share one spread, so they stay read together). At
each tick all due runs are read together through ``Backend.statuses`` — one request for backends
with a list endpoint, bounded concurrency otherwise.
Backends that learn of changes by themselves poke the poller, which reads at once instead of waiting
out the interval; one that also knows the reading itself (``Backend.peek``: the local simulator)
hands it over with the poke, so its waiters wake with no read at all.

The poller keeps each vendor's limits for the backend as a whole, not per job: a token bucket bounds
its status requests per second (:attr:`PollingPolicy.max_reads_per_s`, by default the backend's
``status_reads_per_s``), and a ``Retry-After`` answered to any read holds every read of the backend
until it has passed. With a batch read, a run's interval also stays below a fraction of its age
(:attr:`PollingPolicy.lag_ratio`, floored by :attr:`PollingPolicy.lag_floor_s`): one read serves
every run, so endings are seen soon; and a batch read of many runs is not made more often than
that floor, even after a change (each costs the parse of a whole list). Many runs can be followed
at once by one sink (:meth:`Poller.follow`): a composite waits on its children that way, with no
task per child. A run the SDK asked to cancel is read at the fastest interval until it ends
(:meth:`Poller.expect_change`).

Waiters never sleep on their own: they wait for the poller's next reading of their run, and bring
their own deadline (``anyio.fail_after`` around :meth:`Poller.next_observation`).
"""

from __future__ import annotations

import logging
import math
import operator
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import compress, repeat

import anyio

from .backends.base import Backend, Observation, RunRef
from .exceptions import BackendUnavailableError
from .state import state_rank

__all__ = ["Poller", "PollingPolicy", "RateLimiter"]

logger = logging.getLogger("oqc_style_sdk.polling")

#: A run the SDK asked to change (a cancel) is read at the fastest interval, without backing off,
#: for at most this many reads (then as usual).
HURRIED_READS = 20
#: With a batch read, a newly watched run waits this long for its first read, to share it.
_GATHER_S = 0.05


@dataclass(frozen=True, slots=True)
class PollingPolicy:
    """How often runs are read. Defaults come from the backend."""

    min_interval_s: float
    max_interval_s: float
    factor: float = 2.0
    jitter: float = 0.1
    #: The longest one tick's status read may take, retries included.
    read_timeout_s: float = 30.0
    #: Status requests per second at most, for the whole backend (None: the backend's
    #: ``status_reads_per_s``; ``math.inf``: no limit). A batch read counts as one request.
    max_reads_per_s: float | None = None
    #: With a batch read (one request per tick, whatever the number of runs), a run's interval
    #: never exceeds this fraction of how long it has been watched (nor, early on, the second
    #: interval), so an ending is seen within about that fraction of the run's duration. None:
    #: intervals only follow ``factor``.
    lag_ratio: float | None = 0.2
    #: With a batch read, the interval the fraction never holds a run below (seconds): early in a
    #: run, when ``lag_ratio`` of its age is tiny, every run is read at least this often. A batch
    #: read of several runs is also made at most this often, even after a change (a run read on
    #: its own, or hurried by a cancel, is read from ``min_interval_s``): one read serves them
    #: all, but each costs a request and the parse of a whole list.
    lag_floor_s: float = 0.6

    def __post_init__(self) -> None:
        if not (0 < self.min_interval_s <= self.max_interval_s):
            raise ValueError("polling needs 0 < min_interval_s <= max_interval_s")
        if self.factor < 1 or not (0 <= self.jitter < 1):
            raise ValueError("polling needs factor >= 1 and 0 <= jitter < 1")
        if self.max_reads_per_s is not None and not self.max_reads_per_s > 0:
            raise ValueError("polling needs max_reads_per_s > 0 (or None)")
        if self.lag_ratio is not None and not self.lag_ratio > 0:
            raise ValueError("polling needs lag_ratio > 0 (or None)")
        if not self.lag_floor_s >= 0:
            raise ValueError("polling needs lag_floor_s >= 0")

    @classmethod
    def for_backend(cls, backend: Backend) -> PollingPolicy:
        return cls(backend.min_poll_interval_s, backend.max_poll_interval_s)

    def next_interval(self, current: float, changed: bool) -> float:
        """The un-jittered interval after a read."""
        if changed:
            return self.min_interval_s
        return min(current * self.factor, self.max_interval_s)


class RateLimiter:
    """A token bucket: ``rate`` requests per second on average, bursts of up to ``burst``.

    Time comes from ``clock``, so tests drive it without sleeping. ``rate=math.inf`` never limits.
    """

    def __init__(
        self, rate: float, burst: float | None = None, *, clock: Callable[[], float] = anyio.current_time
    ) -> None:
        if not rate > 0:
            raise ValueError("a rate limit needs rate > 0")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate if math.isfinite(rate) else 1.0)
        if not self.burst >= 1:
            raise ValueError("a rate limit needs burst >= 1")
        self._clock = clock
        self._tokens = self.burst
        self._at: float | None = None

    def _refill(self) -> None:
        now = self._clock()
        if self._at is not None and math.isfinite(self.rate):
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def available(self) -> float:
        """How many requests may be sent now (``inf`` without a limit)."""
        if not math.isfinite(self.rate):
            return math.inf
        self._refill()
        return self._tokens

    def take(self, n: float = 1.0) -> None:
        """Spend ``n`` requests (the bucket may go into debt: later requests wait it out)."""
        if math.isfinite(self.rate):
            self._refill()
            self._tokens -= n

    def wait_s(self, n: float = 1.0) -> float:
        """Seconds until ``n`` requests may be sent."""
        if not math.isfinite(self.rate):
            return 0.0
        self._refill()
        return max(0.0, (min(n, self.burst) - self._tokens) / self.rate)


#: A watch's fields, read in C over every watch at every turn of the loop.
_WAITERS = operator.attrgetter("waiters")
_DUE = operator.attrgetter("due")
_INTERVAL = operator.attrgetter("interval")
_REF = operator.attrgetter("ref")
_TASK_ID = operator.attrgetter("task_id")
_LATEST = operator.attrgetter("latest")
_HURRIED = operator.attrgetter("hurried")
_SCHEDULE = operator.attrgetter("interval", "since")
_ERROR = operator.attrgetter("error")


def _store(watches: list[_Watch], name: str, value: float) -> None:
    """Give every one of ``watches`` the same ``name`` (one pass in C)."""
    deque(map(setattr, watches, repeat(name), repeat(value)), maxlen=0)


#: A follower of many runs: called with (task_id, reading, None) or (task_id, None, error).
Sink = Callable[[str, Observation | None, BaseException | None], None]


@dataclass(slots=True)
class _Watch:
    ref: RunRef
    interval: float
    due: float
    since: float = 0.0
    waiters: int = 0
    latest: Observation | None = None
    error: BaseException | None = None
    seq: int = 0
    #: Set at the next delivery; made by the first waiter that needs it (most readings find none).
    fired: anyio.Event | None = None
    #: Followers told of every delivery as it happens (see :meth:`Poller.follow`).
    sinks: list[Sink] | None = None
    #: Fast reads left because the SDK asked the run to change (:meth:`Poller.expect_change`).
    hurried: int = 0

    def deliver(self, obs: Observation | None, error: BaseException | None) -> None:
        self.latest = obs if obs is not None else self.latest
        self.error = error
        self.seq += 1
        fired, self.fired = self.fired, None
        if fired is not None:
            fired.set()
        if self.sinks:
            for sink in self.sinks:
                sink(self.ref.task_id, obs, error)


class Following:
    """Runs followed by one sink (:meth:`Poller.follow`); each is let go once, by drop or close."""

    __slots__ = ("_sink", "_watches")

    def __init__(self, watches: dict[str, _Watch], sink: Sink) -> None:
        self._watches = watches
        self._sink = sink

    def drop(self, task_id: str) -> None:
        """Stop following ``task_id`` (the poller stops reading it unless someone else waits)."""
        watch = self._watches.pop(task_id, None)
        if watch is not None:
            watch.waiters -= 1
            if watch.sinks is not None and self._sink in watch.sinks:
                watch.sinks.remove(self._sink)

    def close(self) -> None:
        """Stop following every run."""
        for task_id in list(self._watches):
            self.drop(task_id)


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
        #: When the loop's sleep ends (-inf while it is awake: it plans again before it sleeps). A
        #: new watch due later than that needs no wake-up.
        self._asleep_until = -math.inf
        #: Runs expected to change soon (a cancel was sent) that nobody watched at the time: when each
        #: stops waiting for its watch. A watch takes its entry when it starts (its fast reads are
        #: then the watch's own, and go with it); an entry no watch took in time is dropped, so
        #: nothing here outlives its run (a cancel that raced the end of ``execute()``).
        self._hurried: dict[str, float] = {}
        self._hurried_pruned = -math.inf
        rate = self.policy.max_reads_per_s
        if rate is None:
            rate = getattr(backend, "status_reads_per_s", None) or math.inf
        #: The backend's status requests per second, shared by every watched run.
        self.limiter = RateLimiter(rate, clock=clock)
        #: No read is sent before this time: a ``Retry-After`` answered to any read holds them all.
        self.hold_until = -math.inf
        #: Status reads sent so far (one per run for backends without a batch read).
        self.reads = 0
        #: Calls of ``Backend.statuses`` (ticks that read anything).
        self.ticks = 0

    def poke(self, task_id: str) -> None:
        """Read ``task_id`` at the next opportunity (the backend says it changed). A backend that
        knows the reading already (:meth:`Backend.peek`) hands it over at once, with no read."""
        watch = self._watches.get(task_id)
        if watch is not None:
            reading = self._backend.peek(watch.ref)
            if reading is not None:
                self.observed(watch.ref, reading)
                return
            watch.due = self._clock()
            watch.interval = self.policy.min_interval_s
            self._wake.set()

    def expect_change(self, task_id: str) -> None:
        """The SDK asked the vendor to change ``task_id`` (a cancel): read it at the fastest
        interval, without backing off, until it ends (at most :data:`HURRIED_READS` reads).

        A run nobody watches now is remembered for the watch that starts next (the canceller's own
        wait, a moment later) for at most ``max_interval_s``."""
        watch = self._watches.get(task_id)
        if watch is None:
            self._hurried[task_id] = self._clock() + self.policy.max_interval_s
            self._wake.set()  # the loop plans again, and knows when to let it go
            return
        watch.hurried = HURRIED_READS
        watch.interval = self.policy.min_interval_s
        watch.due = min(watch.due, self._clock() + self.policy.min_interval_s)
        self._wake.set()

    def _new_watch(self, ref: RunRef, due: float, now: float) -> _Watch:
        watch = _Watch(ref=ref, interval=self.policy.min_interval_s, due=due, since=now)
        if self._hurried and self._hurried.pop(ref.task_id, None) is not None:
            watch.hurried = HURRIED_READS
        self._watches[ref.task_id] = watch
        return watch

    def bookkeeping(self) -> dict[str, int]:
        """How many entries the poller keeps: ``watches`` (runs someone waits on, or waited on until
        the next plan) and ``hurried`` (cancelled runs not watched yet). Both are bounded by the
        runs in play, never by how many were ever followed or cancelled."""
        return {"watches": len(self._watches), "hurried": len(self._hurried)}

    def follow(self, refs: Sequence[RunRef], sink: Sink) -> Following:
        """Follow many runs at once: ``sink`` is called, synchronously, with every new reading or
        failed read of each (and at once with the last reading of a run already watched). Each run
        stays watched until :meth:`Following.drop` lets it go, or :meth:`Following.close` all. A
        composite waits on all its children this way, with no task per child."""
        now = self._clock()
        due = now + _GATHER_S if self._backend.batch_status else now
        followed: dict[str, _Watch] = {}
        for ref in refs:
            watch = self._watches.get(ref.task_id)
            if watch is None:
                watch = self._new_watch(ref, due, now)
            watch.waiters += 1
            if watch.sinks is None:
                watch.sinks = []
            watch.sinks.append(sink)
            followed[ref.task_id] = watch
        self._wake.set()
        for watch in list(followed.values()):
            if watch.latest is not None:
                sink(watch.ref.task_id, watch.latest, None)
        return Following(followed, sink)

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
            # A backend that knows the run's state (peek) tells it now: a run that ended before
            # this wait began needs no watch, and one under way starts from that reading.
            latest = self._backend.peek(ref)
            if latest is not None and latest.state.is_terminal and not latest.same_as(known):
                return latest
            now = self._clock()
            # A new run is read at once; with a batch read, after a moment, so that runs starting
            # together (a composite) are read together.
            due = now + _GATHER_S if self._backend.batch_status else now
            watch = self._new_watch(ref, due, now)
            watch.latest = latest
            if not now < self._asleep_until <= due:  # else the loop wakes in time anyway
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
                fired = watch.fired
                if fired is None:
                    fired = watch.fired = anyio.Event()
                await fired.wait()
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
            due, wait = self.plan()
            if due:
                next_due = await self._tick(due)
                # A tick that read every watched run knows when the next is due: unless something
                # changed meanwhile (which sets the wake), the loop waits for it without planning
                # again (a plan looks at every run; a composite's thousands, twice a tick).
                if next_due is None or self._wake.is_set() or self._hurried or len(due) != len(self._watches):
                    continue
                wait = max(next_due - self._clock(), 0.0)
            self._asleep_until = self._clock() + wait
            try:
                with anyio.move_on_after(wait):
                    await self._wake.wait()
            finally:
                self._asleep_until = -math.inf

    def plan(self) -> tuple[list[_Watch], float]:
        """The runs to read now, or (none and) how long to wait before looking again.

        Nothing is read while a ``Retry-After`` holds the backend, nor beyond the rate limit: a
        batch read costs one request; without one, only as many of the most overdue runs are read
        as the limit allows now, and the others at the next tick.
        """
        now = self._clock()
        batch = self._backend.batch_status
        # This runs at every turn of the loop, over every watch (a composite's thousands), so each
        # step below is one pass made in C (map, compress, min), not a Python loop per watch.
        watches = self._watches
        if 0 in map(_WAITERS, watches.values()):  # the ones nobody waits on any more
            for task_id in [t for t, watch in watches.items() if watch.waiters == 0]:
                del watches[task_id]
        items = list(watches.values())
        dues = list(map(_DUE, items))
        first = next_due = min(dues, default=math.inf)
        if self._hurried:  # look again by the time the oldest of them is due to go
            if now >= self._hurried_pruned + self.policy.max_interval_s:
                self._hurried_pruned = now
                for task_id in [t for t, until in self._hurried.items() if until <= now]:
                    del self._hurried[task_id]
            if self._hurried:
                next_due = min(next_due, self._hurried_pruned + self.policy.max_interval_s)
        if now < self.hold_until:
            return [], self.hold_until - now
        if not first <= now:  # none is due
            return [], max(next_due - now, 0.0)
        allowed = self.limiter.available()
        if allowed < 1:
            return [], self.limiter.wait_s()
        bounds: Iterable[float]
        if batch:
            # The runs due, and those due within half their interval: one request reads any
            # number of runs, so runs started together stay read together instead of drifting
            # apart by their jitter into one request each.
            bounds = map(operator.add, repeat(now), map(operator.mul, map(_INTERVAL, items), repeat(0.5)))
        else:
            bounds = repeat(now)
        due = list(compress(items, map(operator.le, dues, bounds)))
        if not batch and len(due) > allowed:
            due.sort(key=lambda w: w.due)
            due = due[: int(allowed)]
        return due, 0.0

    async def _tick(self, due: list[_Watch]) -> float | None:
        """Read the runs ``due`` and schedule their next reads. Returns when the earliest of those
        is due, where that follows from the intervals alone (one spread, no Retry-After), else
        None."""
        self.ticks += 1
        cost = 1 if self._backend.batch_status else len(due)
        self.reads += cost
        self.limiter.take(cost)
        try:
            # One tick never holds up the others for long: retries inside the read (a Retry-After,
            # a backoff) stop at this bound, and what is left is tried again at the next tick.
            with anyio.fail_after(self.policy.read_timeout_s):
                readings = await self._backend.statuses(list(map(_REF, due)))
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
        policy = self.policy
        lag = policy.lag_ratio if self._backend.batch_status else None
        floor = max(policy.min_interval_s * policy.factor, policy.lag_floor_s)
        min_s, max_s = policy.min_interval_s, policy.max_interval_s
        # A batch read of many runs is not made more often than the floor, even after a change:
        # it costs the parse of a whole list (a run read on its own, or hurried, is read sooner).
        low = max(min_s, min(policy.lag_floor_s, max_s)) if lag is not None and len(due) > 1 else min_s
        jitter = policy.jitter
        uniform = self._rng.uniform
        # One read serves every run of a batch: they share one jittered spread, so they stay read
        # together (while other clients' reads still drift apart from this one's).
        shared = 1.0 + uniform(-jitter, jitter) if self._backend.batch_status and jitter else None

        def grown(interval: float, since: float) -> float:
            """The next interval after a read that changed nothing, under the lag cap."""
            interval = policy.next_interval(interval, changed=False)
            if lag is not None:
                cap = (now - since) * lag
                if cap < floor:
                    cap = floor
                if interval > cap:
                    interval = cap
                if interval < low:
                    interval = low
            return interval

        next_due = math.inf  # when the earliest of these runs is read next
        spread = shared if shared is not None else 1.0
        exact = shared is not None or not jitter  # (each run's own jitter: not known here)
        got = list(map(readings.get, map(_TASK_ID, map(_REF, due))))
        others: Iterable[tuple[_Watch, Observation | BaseException | None]]
        if exact:
            # The usual reading: the very one delivered last time (a batch read hands out one per
            # status), so nothing changed (a run never read, and not read now, is unchanged too),
            # of a run neither hurried nor failing. Runs watched since the same moment at the same
            # interval (a composite's) then grow alike: their next interval and read are worked out
            # once for all of them. This runs for every run at every tick, so it is made in C.
            unchanged = map(operator.is_, got, map(_LATEST, due))
            calm = map(operator.not_, map(_HURRIED, due))
            clean = map(operator.is_, map(_ERROR, due), repeat(None))
            steady = list(map(operator.and_, map(operator.and_, unchanged, calm), clean))
            if any(steady):
                watches = list(compress(due, steady))
                schedules = list(map(_SCHEDULE, watches))
                alike: dict[tuple[float, float], list[_Watch]]
                if len(set(schedules)) == 1:  # a composite's runs: one schedule
                    alike = {schedules[0]: watches}
                else:  # runs watched since different moments: grouped in one pass
                    alike = {}
                    for watch, key in zip(watches, schedules, strict=True):
                        alike.setdefault(key, []).append(watch)
                for key, group in alike.items():
                    interval = grown(*key)
                    at = now + interval * spread
                    next_due = min(next_due, at)
                    _store(group, "interval", interval)
                    _store(group, "due", at)
            others = compress(zip(due, got, strict=True), map(operator.not_, steady))
        else:
            others = zip(due, got, strict=True)
        for watch, reading in others:
            if reading is None:
                changed = False
            elif isinstance(reading, Observation):
                watch.error = None
                latest = watch.latest
                changed = reading is not latest and not reading.same_as(latest)
                if changed:
                    watch.deliver(reading, None)
            else:
                watch.deliver(None, reading)
                changed = False
            interval = low if changed else grown(watch.interval, watch.since)
            left = watch.hurried
            if left:
                if left <= 1 or (isinstance(reading, Observation) and reading.state.is_terminal):
                    watch.hurried = 0
                else:
                    watch.hurried = left - 1
                    interval = min_s
            if now + interval * spread < next_due:
                next_due = now + interval * spread
            watch.interval = interval
            if shared is not None:
                watch.due = now + interval * shared
            else:
                watch.due = now + (interval * (1.0 + uniform(-jitter, jitter)) if jitter else interval)
            if reading is None or isinstance(reading, Observation):
                continue
            retry_after = getattr(reading, "retry_after_s", None)
            if isinstance(reading, BaseException) and isinstance(retry_after, int | float):
                # The server asked us to wait: it limits the client, not this one run, so every
                # read of the backend waits (the next plan() holds them all until then).
                self.hold_until = max(self.hold_until, now + retry_after)
                watch.due = max(watch.due, now + retry_after)
                exact = False  # the plan works the schedule out again
        return next_due if exact else None
