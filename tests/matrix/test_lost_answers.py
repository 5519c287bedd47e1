"""The vendor acted, the answer was lost: every HTTP backend × {submit, batch submit, cancel, batch
cancel} × {the connection closed after the server handled the request, 200 with a body that cannot
be read, 200 with a body cut short}.

The server did what it was asked; the client cannot know. Each case loses the answer

* ``once`` — the first such request's answer (the SDK's own resend or read may absorb it);
* ``every`` — every answer of that endpoint during the first call (under a short deadline), so
  the caller sees the error; then the caller carries on in the same Sdk;
* ``restart`` — the same, then the job is saved, the Sdk closed, and a new Sdk loads the file and
  carries on (a process restart, as far as the SDK's memory goes).

Whatever the first call returns or raises, the caller then does what a caller does (the same verb
again, no fault left), and the run ends as it should, with exactly one vendor job per SDK job
(counted at the emulator): a creation whose answer was lost is resent with its idempotency key or
looked up, never made twice. A cancel whose answer was lost took effect: the job ends CANCELLED
without another cancel request, the vendor says so too, and no job reads CANCELLED before that.

The backends, their endpoints and how their emulators count vendor jobs are the fault matrix's
(:mod:`tests.matrix.test_fault_matrix`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from oqc_style_sdk import CompositeJob, Job, JobState, Sdk
from oqc_style_sdk.testing.emulator import Emulator, start_emulator
from tests.common import FAST
from tests.matrix.test_fault_matrix import (
    ADAPTERS,
    DEADLINE_S,
    MARGIN_S,
    QUICK_RETRY,
    READ_TIMEOUT_S,
    SHORT_JOB_S,
    Adapter,
    Endpoint,
    _transpiler_warmed,  # noqa: F401 - the module's autouse fixture
    applied,
    timed,
)

LOST = ("closed_after_handling", "unreadable_200", "truncated_200")
OPERATIONS = ("submit", "batch_submit", "cancel", "batch_cancel")
HOW = ("once", "every", "restart")
#: Children of the composite in the batch rows.
BATCH = 3
#: The first call's deadline when every answer is lost (the call must give up, typed, by then).
EVERY_DEADLINE_S = 1.0
#: What a backend may spend before its first request goes out, added to EVERY_DEADLINE_S (IBM
#: transpiles every circuit first: more than a second for a batch on a busy machine).
PREPARE_S = {"ibm_quantum": 3.0}
#: A fault rule for "every answer": more than any call under EVERY_DEADLINE_S can send.
EVERY = 10_000

CASES = [
    (backend, fault, operation, how)
    for backend in ADAPTERS
    for fault in LOST
    for operation in OPERATIONS
    for how in HOW
    # a body cut short is an unreadable body: once is enough to tell them apart
    if how == "once" or fault != "truncated_200"
]


def lose_answers(emu: Emulator, fault: str, where: Endpoint, n: int) -> None:
    """Arm ``fault`` on the next ``n`` requests to ``where``: each is handled, its answer lost."""
    rule: dict[str, Any] = {"path": where.path, "method": where.method, "after_processing": True}
    if fault == "closed_after_handling":
        emu.drop_next(n, **rule)
    elif fault == "unreadable_200":
        emu.malformed_next(n, **rule)
    else:
        assert fault == "truncated_200"
        emu.malformed_next(n, truncated=True, **rule)


def vendor_ids(adapter: Adapter, emu: Any) -> set[str]:
    """The ids of every vendor job the emulator holds."""
    if adapter.emulator == "oqc":
        return set(emu.task_ids)
    if adapter.emulator == "databricks":
        return {str(run_id) for run_id in emu.run_ids}
    return set(emu.job_ids)


async def vendor_cancelled(backend: str, emu: Any, task_id: str) -> bool:
    """The vendor's own word (read at the emulator, not through the SDK) that a run was cancelled."""
    if backend == "databricks":
        life, result = await emu.state_of(int(task_id))
        return bool(life == "TERMINATED" and result == "CANCELED")
    if backend == "windmill":
        record = emu.job_record(task_id)
        return bool(record.get("canceled")) and record.get("type") == "CompletedJob"
    status = await emu.status_of(task_id)
    return str(status).upper() in ("CANCELLED", "CANCELED")


def cancel_requests(emu: Emulator, adapter: Adapter) -> int:
    where = adapter.cancel
    return sum(1 for e in emu.requests if e.method == where.method and where.path.search(e.path))


def children(job: Job | CompositeJob) -> list[Job]:
    return list(job) if isinstance(job, CompositeJob) else [job]


@asynccontextmanager
async def emulator(adapter: Adapter, *, long: bool) -> AsyncIterator[Emulator]:
    options: dict[str, Any] = {"job_duration_s": SHORT_JOB_S, "max_lifetime_s": 90.0, **adapter.options}
    if long:
        options.update(adapter.long_options)
    async with start_emulator(adapter.emulator, **options) as emu:
        yield emu


#: The process after a restart meets no fault of its own: its read timeout need not be short (its
#: start-up check timed out at 0.4 s on a loaded machine).
RESTART_READ_TIMEOUT_S = 5.0


def open_sdk(adapter: Adapter, emu: Emulator, read_timeout_s: float = READ_TIMEOUT_S) -> Sdk:
    settings = {**emu.credentials, "timeout_s": read_timeout_s, "retry": QUICK_RETRY}
    return Sdk(adapter.emulator, default_target=adapter.target, polling=FAST, **settings)


async def first_call(
    emu: Emulator, adapter: Adapter, job: Job | CompositeJob, fault: str, operation: str, how: str
) -> BaseException | None:
    """The call whose answer(s) are lost; checks its deadline and what it reports."""
    cancelling = operation.endswith("cancel")
    if cancelling:
        await job.submit(timeout_s=DEADLINE_S)
    where = adapter.cancel if cancelling else adapter.submit
    lose_answers(emu, fault, where, 1 if how == "once" else EVERY)
    deadline = DEADLINE_S if how == "once" else EVERY_DEADLINE_S + PREPARE_S.get(adapter.emulator, 0.0)
    if cancelling:
        error, elapsed = await timed(lambda: job.cancel(timeout_s=deadline))
    else:
        error, elapsed = await timed(lambda: job.execute(timeout_s=deadline))
    emu.clear_faults()
    assert elapsed <= deadline + MARGIN_S, (elapsed, error)
    assert applied(emu), f"the {fault} fault never met {where}"
    for child in children(job):
        # Never FAILED for a lost answer; never reported cancelled (or done) unless it is.
        assert child.state is not JobState.FAILED, (child.state, child.error, error)
        if cancelling and error is None:
            assert child.state is JobState.CANCELLED, child.state
        if cancelling and error is not None:
            assert child.state is not JobState.COMPLETED, child.state
    return error


async def carry_on(emu: Emulator, adapter: Adapter, job: Job | CompositeJob, operation: str) -> None:
    """What the caller does next (no fault left), and the end every case must reach."""
    runs = children(job)
    if operation.endswith("cancel"):
        asked = cancel_requests(emu, adapter)
        # The cancel the vendor handled is effective: the run ends CANCELLED with no new request.
        if not job.ended:
            await job.wait(timeout_s=DEADLINE_S)
        assert [run.state for run in runs] == [JobState.CANCELLED] * len(runs)
        assert cancel_requests(emu, adapter) == asked
        await job.cancel(timeout_s=DEADLINE_S)  # and cancel() agrees
        assert [run.state for run in runs] == [JobState.CANCELLED] * len(runs)
        for run in runs:  # as the vendor says
            assert run.task_id is not None
            assert await vendor_cancelled(adapter.emulator, emu, run.task_id), run.task_id
    else:
        if not job.ended:
            await job.execute(timeout_s=DEADLINE_S)
        for run in runs:
            assert run.state is JobState.COMPLETED, (run.state, run.error)
            assert run.result is not None
    for run in runs:
        assert len(run.history) == 1
    ids = {run.task_id for run in runs}
    assert len(ids) == len(runs)  # one vendor job per SDK job ...
    assert ids <= vendor_ids(adapter, emu), ids  # ... that the vendor knows ...
    assert adapter.created(emu) == len(runs), applied(emu)  # ... and no other


@pytest.mark.parametrize(("backend", "fault", "operation", "how"), CASES)
async def test_lost_answer(backend: str, fault: str, operation: str, how: str, tmp_path: Path) -> None:
    adapter = ADAPTERS[backend]
    program = [adapter.program] * BATCH if operation.startswith("batch") else adapter.program
    with anyio.fail_after(60):
        async with emulator(adapter, long=operation.endswith("cancel")) as emu:
            async with open_sdk(adapter, emu) as sdk:
                job = sdk.create_job(program=program)
                await first_call(emu, adapter, job, fault, operation, how)
                if how == "restart":
                    saved = await job.save(tmp_path / "job.json")
                else:
                    await carry_on(emu, adapter, job, operation)
            if how == "restart":
                async with open_sdk(adapter, emu, RESTART_READ_TIMEOUT_S) as sdk:
                    await carry_on(emu, adapter, await sdk.load(saved), operation)
