"""Bookkeeping for a run is dropped when nothing follows it: a long-lived Sdk does not grow with its
cancels.

Issue 16, hole 7: the poller kept an entry per cancel (``expect_change``) that only a later read of
the run removed; when ``execute()`` and ``cancel()`` raced — the run's watch gone before its next
read — the entry stayed for good. Sizes are measured (entries kept), not memory or time.
"""

from __future__ import annotations

import anyio

from oqc_style_sdk import JobState, Sdk
from oqc_style_sdk.backends.base import Observation, RunRef
from oqc_style_sdk.backends.oqc import OqcBackend
from oqc_style_sdk.polling import Poller, PollingPolicy
from oqc_style_sdk.testing.emulator import start_emulator
from tests.common import BELL, FAST
from tests.core.test_polling import Clock, FakeBackend

CANCELS = 100_000
ACTIVE = 10
ENDED = Observation(JobState.CANCELLED, "CANCELLED")
QPU = "qpu:uk:2:d865b5a184"


def _sizes(poller: Poller) -> tuple[int, int]:
    return len(poller._watches), len(poller._hurried)


async def test_100k_cancels_racing_the_end_of_their_runs_leave_only_the_active_runs() -> None:
    clock = Clock()
    poller = Poller(FakeBackend(batch=True, reads_to_end=10**9), PollingPolicy(0.1, 5.0), clock=clock)
    active = poller.follow([RunRef(f"active-{i}") for i in range(ACTIVE)], lambda *_: None)
    most = 0
    for i in range(CANCELS):
        ref = RunRef(f"run-{i}")
        if i % 2:
            # The run's wait ended (another reading said it was over) and its watch went: the
            # cancel's request comes back after, for a run nobody watches any more.
            poller.expect_change(ref.task_id)
        else:
            # The cancel comes back while the run is still watched, then the run's end is shared by
            # a job's own read and its waiter leaves before the poller reads it again.
            following = poller.follow([ref], lambda *_: None)
            poller.expect_change(ref.task_id)
            poller.observed(ref, ENDED)
            following.drop(ref.task_id)
        if i % 1000 == 999:  # the poller's loop plans now and then while this goes on
            clock.t += 0.1
            poller.plan()
            most = max(most, sum(_sizes(poller)))
    clock.t += 2 * poller.policy.max_interval_s + 0.1
    poller.plan()
    assert _sizes(poller) == (ACTIVE, 0)
    assert poller.bookkeeping() == {"watches": ACTIVE, "hurried": 0}
    # Meanwhile at most the cancels of the last few seconds were remembered, never all of them.
    assert most < CANCELS // 2
    active.close()
    poller.plan()
    assert _sizes(poller) == (0, 0)


async def test_a_cancelled_run_watched_soon_after_is_still_read_fast() -> None:
    clock = Clock()
    backend = FakeBackend(batch=False, reads_to_end=10**9)
    poller = Poller(backend, PollingPolicy(1.0, 10.0, jitter=0.0), clock=clock)
    poller.expect_change("run-0")  # sent before the canceller's wait starts watching
    assert _sizes(poller) == (0, 1)
    following = poller.follow([RunRef("run-0")], lambda *_: None)
    assert _sizes(poller) == (1, 0)  # the watch took it
    intervals = []
    for _ in range(5):
        due, _wait = poller.plan()
        while not due:
            clock.t += 0.5
            due, _wait = poller.plan()
        await poller._tick(due)
        intervals.append(poller._watches["run-0"].interval)
    assert intervals == [1.0] * 5  # hurried: no backing off
    following.close()
    poller.plan()
    assert _sizes(poller) == (0, 0)


async def test_oqc_cancels_that_come_back_after_their_runs_ended_leave_no_bookkeeping() -> None:
    n = 20
    with anyio.fail_after(60):
        async with start_emulator("oqc", job_duration_s=0.1, simulate=False, max_lifetime_s=60) as emu:  # noqa: SIM117 - the Sdk needs emu
            async with Sdk("oqc", default_target=QPU, polling=FAST, **emu.credentials) as sdk:
                # Each cancel is sent while its task runs, and answered after the task completed
                # and execute() saw it: the cancel's answer comes back for a run nobody watches.
                emu.slow_next(n, delay_s=0.3, path="/tasks/cancel_many")
                jobs = [sdk.create_job(program=BELL) for _ in range(n)]
                async with anyio.create_task_group() as tg:
                    for job in jobs:
                        tg.start_soon(job.execute)
                    while any(job.state is JobState.CREATED for job in jobs):  # noqa: ASYNC110 - a state to poll, no event
                        await anyio.sleep(0.01)
                    for job in jobs:
                        tg.start_soon(job.cancel)
                assert all(job.state is JobState.COMPLETED for job in jobs)  # finished first: kept
                assert emu.count("POST", "/") >= n  # the cancels were sent
                with anyio.move_on_after(5.0):  # the poller's own loop lets them go, soon
                    while sum(_sizes(sdk.poller)) > 0:  # noqa: ASYNC110 - sizes to poll, no event
                        await anyio.sleep(FAST.max_interval_s)
                assert _sizes(sdk.poller) == (0, 0)
                assert sdk.poller.bookkeeping() == {"watches": 0, "hurried": 0}


async def test_an_undocumented_oqc_status_is_kept_once_not_once_per_task() -> None:
    backend = OqcBackend(url="http://127.0.0.1:9", authentication_token="t" * 32)
    for i in range(1000):  # no request: a status that is not FAILED needs nothing more
        await backend._observation(RunRef(f"t-{i}", {"qpu_id": QPU}), "PAUSED")
    for i in range(1000):
        await backend._observation(RunRef("t-0", {"qpu_id": QPU}), f"ODD-{i}")
    assert len(backend._odd_statuses) <= 64
