"""A composite through OQC's batch submission: one reservation, one submit, each child its own flight.

Also the fast (``simulate=False``) OQC emulator the benchmarks use, and the default batch hooks of
:class:`~oqc_style_sdk.backends.base.Backend` for backends without a batch submission.
"""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from oqc_style_sdk import JobState, OqcSdk, Sdk, ServerError
from oqc_style_sdk.backends.base import Backend, RunRef, RunSpec
from oqc_style_sdk.testing.emulator import start_emulator
from oqc_style_sdk.testing.oqc import LUCY_QPU_ID, OqcEmulator

pytestmark = pytest.mark.anyio

PROGRAM = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'


@asynccontextmanager
async def session(**options: Any) -> AsyncIterator[tuple[OqcEmulator, OqcSdk]]:
    options.setdefault("job_duration_s", 0.05)
    options.setdefault("max_lifetime_s", 120.0)
    async with start_emulator("oqc", **options) as emu:
        assert isinstance(emu, OqcEmulator)
        async with OqcSdk(**emu.credentials, default_qpu_id=LUCY_QPU_ID) as sdk:
            yield emu, sdk


def _posts(emu: OqcEmulator, suffix: str) -> int:
    return sum(1 for e in emu.requests if e.method == "POST" and e.path.endswith(suffix))


async def test_a_composite_reserves_and_submits_in_one_request_each() -> None:
    with anyio.fail_after(20):
        async with session(simulate=False) as (emu, sdk):
            composite = sdk.create_job(program=[PROGRAM] * 40)
            async with anyio.create_task_group() as tg:
                tg.start_soon(composite.execute)
                await anyio.lowlevel.checkpoint()
                # A child submitted on its own meanwhile waits for the batch: nothing more is sent.
                await composite[3].submit()
            assert all(child.state is JobState.COMPLETED for child in composite)
            assert _posts(emu, "/tasks") == 1
            assert _posts(emu, "/tasks/submit") == 1
            assert len(emu.task_ids) == 40
            assert len({child.task_id for child in composite}) == 40
            assert composite[0].result is not None
            # Run again: fresh ids, reserved and submitted together again.
            await composite.execute()
            assert _posts(emu, "/tasks") == 2
            assert _posts(emu, "/tasks/submit") == 2
            assert len(emu.task_ids) == 80


async def test_a_lost_batch_answer_is_resent_with_the_same_ids() -> None:
    with anyio.fail_after(20):
        async with session(simulate=False) as (emu, sdk):
            emu.fail_after_processing_next(1, status=503, path="/tasks/submit")
            composite = sdk.create_job(program=[PROGRAM] * 5)
            await composite.execute(timeout_s=10)
            assert all(child.state is JobState.COMPLETED for child in composite)
            assert len(emu.task_ids) == 5  # no second reservation, no second run
            assert emu.engine_runs == 5


async def test_a_reservation_failure_fails_the_submission_of_every_child() -> None:
    with anyio.fail_after(20):
        async with session(simulate=False) as (emu, sdk):
            emu.fail_next(1, status=400, path=f"{LUCY_QPU_ID.split(':')[-1]}/tasks", method="POST")
            composite = sdk.create_job(program=[PROGRAM] * 3)
            await composite.execute(timeout_s=10)
            assert [child.state for child in composite] == [JobState.FAILED] * 3
            assert emu.task_ids == []


async def test_one_error_shared_by_a_whole_batch_keeps_a_short_traceback_for_every_child() -> None:
    # A 500 on the reservation (retried, then given up) is every child's outcome; raised once per
    # child and once per waiter, the same exception must not gather a frame chain per raise.
    with anyio.fail_after(20):
        async with session(simulate=False) as (emu, sdk):
            emu.fail_next(10, status=500, path=f"{LUCY_QPU_ID.split(':')[-1]}/tasks", method="POST")
            composite = sdk.create_job(program=[PROGRAM] * 200)
            with pytest.raises(ServerError) as caught:
                await composite.execute(timeout_s=10)
            depth = len(traceback.extract_tb(caught.value.__traceback__))
            assert depth < 40, depth
            assert [child.state for child in composite] == [JobState.CREATED] * 200
            assert emu.task_ids == []


async def test_the_fast_emulator_completes_with_a_fixed_result_and_cancels() -> None:
    with anyio.fail_after(20):
        async with session(simulate=False, job_duration_s=0.05, job_duration_max_s=0.1, seed=1) as (
            emu,
            sdk,
        ):
            job = sdk.create_job(program=PROGRAM, config={"shots": 10})
            await job.execute(timeout_s=10)
            assert job.result is not None
            assert job.result.data == {"c": {"0": 10}}
            with pytest.raises(ValueError, match="job_duration_max_s"):
                OqcEmulator(simulate=False, job_duration_s=2, job_duration_max_s=1)
    async with session(simulate=False, job_duration_s=30) as (emu, sdk):
        long = sdk.create_job(program=PROGRAM)
        await long.submit()
        assert await long.cancel(timeout_s=10) is JobState.CANCELLED
        assert (await emu.status_of(long.task_id or "")) == "CANCELLED"


async def test_default_batch_hooks_submit_one_by_one() -> None:
    # The base class's hooks, on the local backend (which has its own one-step submit_many).
    async with Sdk() as sdk:
        backend = sdk.backend
        assert Backend.batch_submit is False
        spec = backend.validate(RunSpec(program=PROGRAM, target=None))
        keys = await backend.new_idempotency_keys([spec, spec])
        assert len(set(keys)) == 2
        refs = await Backend.submit_many(backend, [spec, spec], keys)
        assert all(isinstance(ref, RunRef) for ref in refs)
        bad = await Backend.submit_many(backend, [RunSpec(program=object(), target="nowhere")], ["k"])
        assert isinstance(bad[0], Exception)
