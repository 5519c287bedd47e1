"""A submission's identity is fixed before its request is sent, and a save records it (issue 16,
holes 2, 3 and 5).

Each test drives one vendor's emulator through a submission, saves the job at a chosen moment,
loads the file into a fresh Sdk and carries on there; the vendor's own count of jobs (OQC: task ids
handed out) says whether a second one was made.

- Hole 2: a save as the submission starts, and while its request is at the vendor, holds the key
  the request carries, so the loaded job resumes the vendor's same job (every HTTP vendor).
- Hole 3 (IBM, which takes no key): a creation answered 200 with a body that cannot be read, or
  whose answer was lost, is looked up by its submission tag before anything is created again — in
  the same Sdk, and after ``save()`` and ``load()`` in a new one.
- Hole 5: ``save()`` never waits on a vendor; ``save(timeout_s=T)`` waits at most ``T``.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from oqc_style_sdk import CompositeJob, Job, JobState, Sdk
from oqc_style_sdk.exceptions import BackendUnavailableError, ProtocolError, SdkError
from oqc_style_sdk.testing.emulator import Emulator, start_emulator
from oqc_style_sdk.testing.oqc import LUCY_QPU_ID
from tests.common import BELL, FAST
from tests.matrix.test_fault_matrix import ADAPTERS, QUICK_RETRY, Adapter
from tests.vendors.oqc.common import reservations

#: The HttpClient's request timeout in these tests; a creation IBM may still be processing is
#: looked up again this long (plus a second) after it was sent.
REQUEST_TIMEOUT_S = 1.5
#: How long the vendor holds a creation's answer back in the "during the request" case.
HELD_S = 0.5
BOUND_S = 30.0


@asynccontextmanager
async def emulator(adapter: Adapter, **options: Any) -> AsyncIterator[Emulator]:
    settings = {"job_duration_s": 0.05, "max_lifetime_s": 90.0, **adapter.options, **options}
    async with start_emulator(adapter.emulator, **settings) as emu:
        yield emu


def sdk_for(adapter: Adapter, emu: Emulator) -> Sdk:
    settings = {**emu.credentials, "timeout_s": REQUEST_TIMEOUT_S, "retry": QUICK_RETRY}
    return Sdk(adapter.emulator, default_target=adapter.target, polling=FAST, **settings)


def saved_job(path: Path) -> dict[str, Any]:
    [snap] = json.loads(path.read_text())["jobs"]
    assert isinstance(snap, dict)
    return snap


async def resume_elsewhere(adapter: Adapter, emu: Emulator, path: Path) -> Job:
    """Load ``path`` into a fresh Sdk and run the job to its end there."""
    async with sdk_for(adapter, emu) as fresh:
        loaded = await fresh.load(path)
        assert isinstance(loaded, Job)
        await loaded.execute(timeout_s=BOUND_S)
        return loaded


#: The vendors that hand the keys out (a request), rather than let the SDK make them.
RESERVES_KEYS = frozenset({"oqc"})


# ==================================================================================================
# hole 2: a save during a submission records its key
# ==================================================================================================


@pytest.mark.parametrize("backend", list(ADAPTERS))
async def test_a_save_as_the_submission_starts_holds_its_key_and_a_new_process_makes_no_second_job(
    backend: str, tmp_path: Path
) -> None:
    adapter = ADAPTERS[backend]
    with anyio.fail_after(60):
        async with emulator(adapter) as emu:
            async with sdk_for(adapter, emu) as sdk:
                job = sdk.create_job(program=adapter.program)
                # OQC's key is a task id it reserves: a save waits for it only when allowed to.
                wait = {"timeout_s": 10.0} if backend in RESERVES_KEYS else {}
                async with anyio.create_task_group() as tg:
                    tg.start_soon(job.submit)
                    await anyio.lowlevel.checkpoint()  # the submission has started, nothing is sent yet
                    assert job.state is JobState.CREATED
                    path = await job.save(tmp_path / "job.json", **wait)
                # This process's submission reached the vendor after the save; the file knows it.
                assert job.state is not JobState.CREATED
                snap = saved_job(path)
                assert snap["state"] == "CREATED"
                assert snap["idempotency_key"] is not None
                assert snap["submit_attempted"] is True
            loaded = await resume_elsewhere(adapter, emu, path)
            assert loaded.state is JobState.COMPLETED, loaded.error
            assert loaded.task_id == job.task_id
            assert adapter.created(emu) == 1


@pytest.mark.parametrize("backend", list(ADAPTERS))
async def test_a_save_while_the_creation_is_at_the_vendor_resumes_the_same_job(
    backend: str, tmp_path: Path
) -> None:
    """The vendor holds the creation's answer back; the job is saved meanwhile and resumed by a
    new Sdk while the first request is still unanswered: the vendor still makes one job."""
    adapter = ADAPTERS[backend]
    where = adapter.submit
    with anyio.fail_after(60):
        async with emulator(adapter) as emu:
            async with sdk_for(adapter, emu) as sdk:
                emu.slow_next(1, delay_s=HELD_S, path=where.path, method=where.method)
                job = sdk.create_job(program=adapter.program)

                async def first_submission() -> None:
                    with contextlib.suppress(SdkError):  # it may conflict with the resumed one
                        await job.submit()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(first_submission)
                    with anyio.fail_after(20):  # until the creation is at the vendor
                        while not any(e.fault == "slow" for e in emu.requests):  # noqa: ASYNC110
                            await anyio.sleep(0.005)
                    path = await job.save(tmp_path / "job.json")
                    snap = saved_job(path)
                    assert (snap["state"], snap["submit_attempted"]) == ("CREATED", True)
                    assert snap["idempotency_key"] is not None
                    loaded = await resume_elsewhere(adapter, emu, path)
            assert loaded.state is JobState.COMPLETED, loaded.error
            assert adapter.created(emu) == 1


# ==================================================================================================
# hole 3: IBM creations in doubt are looked up by their submission tag
# ==================================================================================================

IBM = ADAPTERS["ibm_quantum"]
IBM_CREATE = {"path": re.compile(r"/api/v1/jobs$"), "method": "POST"}


async def test_ibm_a_creation_answered_with_an_unreadable_body_is_not_made_twice_in_the_same_sdk() -> None:
    with anyio.fail_after(60):
        async with emulator(IBM) as emu, sdk_for(IBM, emu) as sdk:
            emu.malformed_next(1, after_processing=True, **IBM_CREATE)
            job = sdk.create_job(program=IBM.program)
            with pytest.raises(ProtocolError):
                await job.execute(timeout_s=BOUND_S)
            assert len(emu.job_ids) == 1  # IBM made the job; its id was never read
            await job.execute(timeout_s=BOUND_S)
            assert job.state is JobState.COMPLETED, job.error
            assert job.task_id == emu.job_ids[0]
            assert len(emu.job_ids) == 1
            assert emu.count("POST", "/api/v1/jobs") == 1


@pytest.mark.parametrize("fault", ["dropped", "unreadable"])
async def test_ibm_a_creation_in_doubt_saved_and_loaded_in_a_new_sdk_is_found_by_its_tag(
    fault: str, tmp_path: Path
) -> None:
    with anyio.fail_after(60):
        async with emulator(IBM) as emu:
            async with sdk_for(IBM, emu) as sdk:
                if fault == "dropped":  # the connection closes after IBM made the job
                    emu.drop_next(1, after_processing=True, **IBM_CREATE)
                else:
                    emu.malformed_next(1, after_processing=True, **IBM_CREATE)
                job = sdk.create_job(program=IBM.program)
                with pytest.raises((BackendUnavailableError, ProtocolError)):
                    await job.execute(timeout_s=BOUND_S)
                assert len(emu.job_ids) == 1
                path = await job.save(tmp_path / "job.json")
            snap = saved_job(path)
            assert snap["submit_attempted"] is True
            assert snap["submit_attempted_at"] is not None
            loaded = await resume_elsewhere(IBM, emu, path)
            assert loaded.state is JobState.COMPLETED, loaded.error
            assert loaded.task_id == emu.job_ids[0]
            assert len(emu.job_ids) == 1
            assert emu.count("POST", "/api/v1/jobs") == 1
            lookups = [e for e in emu.requests if (e.method, e.path) == ("GET", "/api/v1/jobs")]
            assert lookups
            assert lookups[0].query["tags"] == f"oqcs-submission:{snap['idempotency_key']}"


async def test_ibm_a_creation_that_never_reached_ibm_is_sent_again_after_load(tmp_path: Path) -> None:
    """The other side of the lookup: nothing found (the creation was refused with a 503 before IBM
    made anything), so the loaded job creates its one job."""
    with anyio.fail_after(60):
        async with emulator(IBM) as emu:
            async with sdk_for(IBM, emu) as sdk:
                emu.fail_next(1, status=503, **IBM_CREATE)
                job = sdk.create_job(program=IBM.program)
                with pytest.raises(SdkError):
                    await job.execute(timeout_s=BOUND_S)
                path = await job.save(tmp_path / "job.json")
            assert emu.job_ids == []
            loaded = await resume_elsewhere(IBM, emu, path)
            assert loaded.state is JobState.COMPLETED, loaded.error
            assert len(emu.job_ids) == 1
            assert emu.count("GET", "/api/v1/jobs") >= 1  # looked up first


# ==================================================================================================
# hole 5: a save never waits on a vendor longer than the caller allows
# ==================================================================================================

OQC = ADAPTERS["oqc"]
LUCY_PATH = "d865b5a184"  # the Lucy QPU's execution path at the emulator
RESERVE = {"path": re.compile(r"/tasks$"), "method": "POST"}
#: The most a bounded save may take past its timeout (the file is written after it).
MARGIN_S = 0.25


@pytest.mark.parametrize("shape", ["job", "composite"])
async def test_save_never_waits_on_a_vendor_that_does_not_answer(shape: str, tmp_path: Path) -> None:
    with anyio.fail_after(20):
        async with emulator(OQC) as emu, sdk_for(OQC, emu) as sdk:
            emu.slow_next(100, delay_s=60, **RESERVE)  # accepts, never answers in time
            made: Job | CompositeJob = (
                sdk.create_job(program=BELL, qpu_id=LUCY_QPU_ID)
                if shape == "job"
                else sdk.create_job(program=[BELL, BELL], qpu_id=LUCY_QPU_ID)
            )
            path = await made.save(tmp_path / "job.json")
            assert len(reservations(emu)) == 0  # the default save asks the vendor nothing
            keys = [snap["idempotency_key"] for snap in json.loads(path.read_text())["jobs"]]
            assert keys == [None] * len(keys)  # left to the submission, which reserves them

            start = anyio.current_time()
            path = await made.save(tmp_path / "job.json", timeout_s=0.5)
            elapsed = anyio.current_time() - start
            assert elapsed <= 0.5 + MARGIN_S, elapsed
            assert len(reservations(emu)) == 1  # it asked, and gave up at its deadline
            assert json.loads(path.read_text())["jobs"][0]["idempotency_key"] is None


async def test_save_with_a_timeout_waits_for_a_reservation_in_flight(tmp_path: Path) -> None:
    """OQC's key is reserved by the submission's first request: a save made while it is in flight
    records the key only if it may wait (``timeout_s``), and then the loaded job makes no second
    task."""
    with anyio.fail_after(60):
        async with emulator(OQC) as emu:
            async with sdk_for(OQC, emu) as sdk:
                emu.slow_next(1, delay_s=HELD_S, **RESERVE)
                job = sdk.create_job(program=BELL, qpu_id=LUCY_QPU_ID)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(job.submit)
                    with anyio.fail_after(20):  # until the reservation is at the vendor
                        while not any(e.fault == "slow" for e in emu.requests):  # noqa: ASYNC110
                            await anyio.sleep(0.005)
                    quick = await job.save(tmp_path / "quick.json")  # does not wait for it
                    assert saved_job(quick)["idempotency_key"] is None
                    path = await job.save(tmp_path / "job.json", timeout_s=10)
                    assert saved_job(path)["idempotency_key"] is not None
                    # Nothing carrying the key was sent before the file holding it was written.
                    assert emu.count("POST", f"/{LUCY_PATH}/tasks/submit") == 0
                assert len(reservations(emu)) == 1  # the save joined the reservation
            loaded = await resume_elsewhere(OQC, emu, path)
            assert loaded.state is JobState.COMPLETED, loaded.error
            assert loaded.task_id == job.task_id
            assert len(emu.task_ids) == 1


async def test_a_file_saved_before_the_key_is_written_again_before_the_key_is_sent(tmp_path: Path) -> None:
    """A plain save before OQC reserved the id writes no key; the submission writes that file
    again, with the key, before its submit request leaves: a process killed while OQC holds the
    task resumes it from the file. A file saved over since is left alone."""
    submit = OQC.submit
    with anyio.fail_after(60):
        async with emulator(OQC) as emu:
            async with sdk_for(OQC, emu) as sdk:
                job = sdk.create_job(program=BELL, qpu_id=LUCY_QPU_ID)
                other = sdk.create_job(program=BELL, qpu_id=LUCY_QPU_ID)
                path = await job.save(tmp_path / "job.json")
                taken = await job.save(tmp_path / "taken.json")
                await other.save(taken)  # the name now holds another job's file
                assert saved_job(path)["idempotency_key"] is None
                emu.slow_next(1, delay_s=HELD_S, path=submit.path, method=submit.method)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(job.submit)
                    with anyio.fail_after(20):  # until the submit request is at the vendor
                        while not any(e.fault == "slow" for e in emu.requests):  # noqa: ASYNC110
                            await anyio.sleep(0.005)
                    snap = saved_job(path)
                    assert snap["idempotency_key"] is not None
                    assert (snap["state"], snap["submit_attempted"]) == ("CREATED", True)
                    assert saved_job(taken)["id"] == other.id
                    loaded = await resume_elsewhere(OQC, emu, path)  # as a new process would
            assert loaded.state is JobState.COMPLETED, loaded.error
            assert loaded.task_id == job.task_id
            assert len(emu.task_ids) == 1


async def test_save_refuses_a_bad_timeout_before_anything(tmp_path: Path) -> None:
    from oqc_style_sdk.exceptions import JobValidationError

    async with Sdk() as sdk:
        job = sdk.create_job(program=BELL)
        for bad in (0, -1, float("nan"), "1", True):
            with pytest.raises(JobValidationError):
                await job.save(tmp_path / "job.json", timeout_s=bad)  # type: ignore[arg-type]
        assert not (tmp_path / "job.json").exists()


async def test_a_submission_waiting_on_a_save_that_gave_up_reserves_its_own_key(tmp_path: Path) -> None:
    """The save starts the reservation and the submission joins it; the save's deadline ends the
    reservation, and the submission then reserves its own id: the job runs once."""
    with anyio.fail_after(60):
        async with emulator(OQC) as emu, sdk_for(OQC, emu) as sdk:
            emu.slow_next(1, delay_s=1.0, **RESERVE)
            job = sdk.create_job(program=BELL, qpu_id=LUCY_QPU_ID)
            async with anyio.create_task_group() as tg:

                async def submit_soon() -> None:
                    with anyio.fail_after(20):  # once the save's reservation is at the vendor
                        while len(reservations(emu)) == 0:  # noqa: ASYNC110
                            await anyio.sleep(0.005)
                    await job.submit()

                tg.start_soon(submit_soon)
                path = await job.save(tmp_path / "job.json", timeout_s=0.3)
            await job.execute(timeout_s=BOUND_S)
            assert job.state is JobState.COMPLETED, job.error
            # The save gave up on the key; the submission wrote its own into that file before sending it.
            assert saved_job(path)["idempotency_key"] == job.task_id
            assert len(reservations(emu)) == 2  # the abandoned one, and the submission's own
            assert emu.engine_runs == 1
