"""OQC's wire limits, as its own client (``qcaas_client`` 3.22) states them.

Issue 16, hole 8: the client refuses any POST over 128 KiB and takes 408/409/429/5xx as "try again
later". The SDK sent batches of up to 500 tasks (each ~850 bytes with its compiler config: over 400 KB
a request), accepted programs of up to 1 MB, and took a 409 as "refused outright" — releasing the
reserved id with ``cancel_many``, which after a resent submission whose first answer was lost
cancelled a task OQC had accepted. The emulator is now as strict as the client about size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import pytest
from qiskit import QuantumCircuit

from oqc_style_sdk import Job, JobState, OqcSdk
from oqc_style_sdk._http import encode_json
from oqc_style_sdk.backends import oqc
from oqc_style_sdk.backends._oqc_limits import MAX_BODY_BYTES, MAX_REQUEST_BYTES, encode_task, size_chunks
from oqc_style_sdk.exceptions import BackendError, JobTimeoutError, JobValidationError
from oqc_style_sdk.testing.emulator import start_emulator
from oqc_style_sdk.testing.oqc import LUCY_QPU_ID, OqcEmulator

PROGRAM = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'


@asynccontextmanager
async def session(**options: Any) -> AsyncIterator[tuple[OqcEmulator, OqcSdk]]:
    options.setdefault("job_duration_s", 0.05)
    options.setdefault("max_lifetime_s", 120.0)
    options.setdefault("simulate", False)
    async with start_emulator("oqc", **options) as emu:
        assert isinstance(emu, OqcEmulator)
        async with OqcSdk(**emu.credentials, default_qpu_id=LUCY_QPU_ID) as sdk:
            yield emu, sdk


@asynccontextmanager
async def one_job(faults: Callable[[OqcEmulator], None]) -> AsyncIterator[tuple[OqcEmulator, Job]]:
    """An emulator with ``faults`` set, and a job for it (not yet sent), within 30 s."""
    with anyio.fail_after(30):
        async with session() as (emu, sdk):
            faults(emu)
            yield emu, sdk.create_job(program=PROGRAM)


def _posts(emu: OqcEmulator, suffix: str) -> list[Any]:
    return [e for e in emu.requests if e.method == "POST" and e.path.endswith(suffix)]


def _request_bytes(entry: Any) -> int:
    """What OQC's client counts: body and headers (the body's length as sent)."""
    headers = sum(len(k.encode()) + len(v.encode()) for k, v in entry.headers.items())
    return int(entry.headers["Content-Length"]) + headers


# ------------------------------------------------------------------------------------- batch size
async def test_a_batch_of_500_tasks_is_cut_into_requests_of_at_most_128_kib() -> None:
    with anyio.fail_after(60):
        async with session() as (emu, sdk):
            composite = sdk.create_job(program=[PROGRAM] * 500)
            await composite.execute(timeout_s=50)
            assert all(child.state is JobState.COMPLETED for child in composite)
            submits = _posts(emu, "/tasks/submit")
            assert len(submits) >= 4  # ~850 bytes a task: 500 of them never fit one request
            assert all(e.status == 200 for e in submits)
            assert all(_request_bytes(e) <= MAX_REQUEST_BYTES for e in submits)
            assert sum(len(e.body["tasks"]) for e in submits) == 500  # each task sent once
            assert emu.engine_runs == 500
            assert len(emu.task_ids) == 500
            assert not _posts(emu, "/tasks/cancel_many")


@pytest.mark.parametrize(
    "program",
    [PROGRAM, 'OPENQASM 2.0;\n// "quotes", \\ back\tslash, \u00e9t\u00e9, \U0001f600, \x00\n', ""],
)
def test_a_task_is_sent_exactly_as_the_http_client_would_encode_it(program: str) -> None:
    fields = (program, oqc.compiler_config(100), "qpu:uk:2:d865b5a184", 'a "tag"', "t-1")
    task = dict(zip(("program", "config", "qpu_id", "tag", "task_id"), fields, strict=True))
    first = encode_task(*fields)
    assert first == encode_json(task)
    assert encode_task(*fields) == first  # escaped once, the same text from then on


def test_size_chunks_keeps_order_and_both_bounds() -> None:
    sizes = [1000] * 7 + [60_000, 60_000, 60_000] + [10] * 1200
    chunks = size_chunks(sizes, max_bytes=130_000, max_count=500)
    assert [i for chunk in chunks for i in chunk] == list(range(len(sizes)))  # in order, each once
    for chunk in chunks:
        assert len(chunk) <= 500
        assert 12 + sum(sizes[i] for i in chunk) + len(chunk) - 1 <= 130_000
    assert size_chunks([200_000, 5], max_bytes=1000) == [[0], [1]]  # too large: alone (refused)


# ----------------------------------------------------------------------------------- program size
async def test_a_program_whose_task_would_not_fit_a_request_is_refused_at_create_job() -> None:
    with anyio.fail_after(30):
        async with session() as (emu, sdk):
            before = len(emu.requests)
            with pytest.raises(JobValidationError, match=r"128 KiB") as info:
                sdk.create_job(program=PROGRAM + "//" + "x" * MAX_BODY_BYTES)
            assert "split or shorten" in str(info.value)
            # Under the limit in bytes, over it as sent: JSON escapes every quote and newline.
            escaped = PROGRAM + "\n" + '// "' * (MAX_BODY_BYTES // 5)
            assert len(escaped.encode()) < MAX_BODY_BYTES
            with pytest.raises(JobValidationError, match=r"JSON-encoded"):
                sdk.create_job(program=escaped)
            with pytest.raises(JobValidationError, match=r"128 KiB"):  # a tag counts too
                sdk.create_job(program=PROGRAM, tag="t" * MAX_BODY_BYTES)
            assert len(emu.requests) == before  # nothing was sent
            assert oqc.MAX_PROGRAM_BYTES <= MAX_REQUEST_BYTES


async def test_the_largest_program_that_fits_runs() -> None:
    with anyio.fail_after(30):
        async with session() as (emu, sdk):
            probe = sdk.create_job(program=PROGRAM)
            task = sdk.backend._task(probe._spec, PROGRAM, "00000000-0000-0000-0000-000000000000")  # type: ignore[attr-defined]
            room = MAX_BODY_BYTES - oqc.request_bytes([len(task)])
            big = PROGRAM + "//" + "x" * (room - 2)
            job = sdk.create_job(program=big)
            await job.execute(timeout_s=20)
            assert job.state is JobState.COMPLETED
            (submit,) = _posts(emu, "/tasks/submit")
            assert _request_bytes(submit) <= MAX_REQUEST_BYTES
            with pytest.raises(JobValidationError):
                sdk.create_job(program=big + "x")


async def test_the_emulator_refuses_a_post_over_128_kib_as_the_client_would(
    session_http: aiohttp.ClientSession,
) -> None:
    with anyio.fail_after(30):
        async with session() as (emu, _sdk):
            url = f"{emu.qpu_url(LUCY_QPU_ID)}/tasks/submit"
            headers = {"Authentication-Token": emu.token}
            task = {"program": "x" * MAX_REQUEST_BYTES, "config": None, "qpu_id": LUCY_QPU_ID, "tag": ""}
            async with session_http.post(url, json={"tasks": [task]}, headers=headers) as response:
                assert response.status == 413
                body = await response.json()
            (message,) = body["response"]["errors"]
            assert message.startswith("Request size exceeds the 128KB limit")
            assert emu.engine_runs == 0  # nothing was done
            small = {**task, "program": PROGRAM}
            async with session_http.post(url, json={"tasks": [small]}, headers=headers) as response:
                assert response.status == 200


@pytest.fixture
async def session_http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


# -------------------------------------------------------------------- 409 and held ids never released
def _accepted_then_409(emu: OqcEmulator) -> None:
    emu.fail_after_processing_next(1, status=409, path="/tasks/submit")


def _accepted_answer_lost_then_400(emu: OqcEmulator) -> None:
    emu.drop_next(1, path="/tasks/submit", after_processing=True)
    emu.fail_next(1, status=400, path="/tasks/submit")


@pytest.mark.parametrize("faults", [_accepted_then_409, _accepted_answer_lost_then_400])
async def test_a_submission_oqc_accepted_is_taken_whatever_answers_its_resend(
    faults: Callable[[OqcEmulator], None],
) -> None:
    """A 409 is "try again later" (retried); a refusal of a resend finds the task submitted. Either
    way the job runs once and the id OQC holds is never released."""
    async with one_job(faults) as (emu, job):
        await job.execute(timeout_s=20)
        assert job.state is JobState.COMPLETED
        assert await emu.status_of(job.task_id) == "COMPLETED"
        assert len(_posts(emu, "/tasks/submit")) == 2  # sent, then sent again
        assert not _posts(emu, "/tasks/cancel_many")  # nothing cancelled, nothing released
        assert emu.engine_runs == 1


async def test_a_409_that_persists_leaves_the_job_to_settle_not_failed() -> None:
    async with one_job(lambda emu: emu.fail_after_processing_next(20, status=409, path="/tasks/submit")) as (
        emu,
        job,
    ):
        # Retried until the deadline: what ends it is the last 409, or the deadline itself.
        with pytest.raises((BackendError, JobTimeoutError)) as info:
            await job.execute(timeout_s=3)
        if isinstance(info.value, BackendError):
            assert info.value.status == 409
            assert info.value.transient
            assert not info.value.refused
        assert len(_posts(emu, "/tasks/submit")) >= 2  # "try again later": it was tried again
        assert job.state is JobState.CREATED  # not FAILED: OQC may hold the task
        assert not _posts(emu, "/tasks/cancel_many")
        emu.clear_faults()
        await job.execute(timeout_s=20)  # the same reserved id, sent again
        assert job.state is JobState.COMPLETED
        assert len(emu.task_ids) == 1
        assert emu.engine_runs == 1


async def test_a_submission_refused_outright_still_releases_its_only_reserved_id() -> None:
    async with one_job(lambda emu: emu.fail_next(1, status=400, path="/tasks/submit")) as (emu, job):
        await job.execute(timeout_s=20)
        assert job.state is JobState.FAILED
        (release,) = _posts(emu, "/tasks/cancel_many")
        assert release.body == {"tasks": [job._key]}
        assert await emu.status_of(job._key) == "CANCELLED"
        assert emu.engine_runs == 0


async def test_a_409_to_a_batch_is_retried_and_every_child_runs_once() -> None:
    with anyio.fail_after(30):
        async with session() as (emu, sdk):
            emu.fail_after_processing_next(1, status=409, path="/tasks/submit")
            composite = sdk.create_job(program=[PROGRAM] * 20)
            await composite.execute(timeout_s=20)
            assert all(child.state is JobState.COMPLETED for child in composite)
            assert not _posts(emu, "/tasks/cancel_many")
            assert emu.engine_runs == 20
            assert len(emu.task_ids) == 20


async def test_a_circuit_too_large_once_written_fails_unsent_and_releases_its_id() -> None:
    circuit = QuantumCircuit(1, 1)
    for _ in range(MAX_BODY_BYTES // 8):  # "h q[0];\n" a gate: over the limit once written
        circuit.h(0)
    circuit.measure(0, 0)
    small = QuantumCircuit(1, 1)
    small.h(0)
    small.measure(0, 0)
    with anyio.fail_after(60):
        async with session() as (emu, sdk):
            composite = sdk.create_job(program=[circuit, small])  # sized when written, at submission
            await composite.execute(timeout_s=40)
            big, fine = composite
            assert big.state is JobState.FAILED
            assert "128 KiB" in str(big.error.message if big.error else "")
            assert fine.state is JobState.COMPLETED
            assert all(_request_bytes(e) <= MAX_REQUEST_BYTES for e in _posts(emu, "/tasks/submit"))
            assert emu.engine_runs == 1
            (release,) = _posts(emu, "/tasks/cancel_many")  # its reserved id, never submitted
            assert release.body == {"tasks": [big._key]}
