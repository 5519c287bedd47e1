"""The ``oqc`` backend against the OQC emulator: settings, start-up, targets, validation, the wire
conversation of a job, failures, cancellation, diagnostics, persistence and secrets.

Every test runs against a real emulator on 127.0.0.1 and reads what was sent from its request log.
Each is bounded with ``anyio.fail_after``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from oqc_style_sdk import JobState, OqcSdk, Sdk
from oqc_style_sdk.backends.base import Observation, RunRef
from oqc_style_sdk.backends.oqc import DEFAULT_SHOTS, MAX_SHOTS, OqcBackend
from oqc_style_sdk.exceptions import (
    AuthenticationError,
    BackendUnavailableError,
    ConfigurationError,
    ForeignJobFileError,
    JobTimeoutError,
    JobValidationError,
    SdkError,
    UnknownTargetError,
)
from oqc_style_sdk.job_output import JobError, JobResult
from oqc_style_sdk.testing.emulator import LoggedRequest
from oqc_style_sdk.testing.oqc import INACTIVE_QPU_ID, LUCY_QPU_ID, SIMULATOR_QPU_ID, OqcEmulator
from tests.vendors.oqc.common import emulator, reservations, wait_until_running

PROGRAM = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
BAD_PROGRAM = PROGRAM.replace("2.0", "5.0")
LUCY_PATH = "/d865b5a184"
TASK_LIST = re.compile(r"^/[^/]+/tasks$")


@asynccontextmanager
async def session(**options: Any) -> AsyncIterator[tuple[OqcEmulator, OqcSdk]]:
    """An emulator and an OqcSdk open on it."""
    async with emulator(**options) as emu, OqcSdk(**emu.credentials) as sdk:
        yield emu, sdk


def since(emu: OqcEmulator, mark: int) -> list[LoggedRequest]:
    return emu.requests[mark:]


def calls(entries: list[LoggedRequest], method: str, suffix: str) -> list[LoggedRequest]:
    return [e for e in entries if e.method == method and e.path.endswith(suffix)]


def status_reads(entries: list[LoggedRequest]) -> list[LoggedRequest]:
    """Single status reads and task-list reads (the batched status read)."""
    return [
        e
        for e in entries
        if e.method == "GET"
        and (e.path.endswith("/status") or (e.path.count("/") == 2 and e.path.endswith("/tasks")))
    ]


async def fetch(emu: OqcEmulator, url: str) -> Any:
    """A GET straight to the emulator, bypassing the SDK."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers={"Authentication-Token": emu.token}) as response,
    ):
        assert response.status == 200
        return await response.json()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------- settings
async def test_sdk_oqc_reads_url_and_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with anyio.fail_after(10):
        async with emulator() as emu:
            for key, value in emu.env.items():
                monkeypatch.setenv(key, value)
            async with Sdk("oqc", default_target=LUCY_QPU_ID) as sdk:
                assert isinstance(sdk.backend, OqcBackend)
                assert sdk.backend.url == emu.base_url
                job = sdk.create_job(program=PROGRAM)
                await job.execute(timeout_s=5)
                assert job.completed
            async with OqcSdk(default_qpu_id=LUCY_QPU_ID) as client:  # the preset reads them too
                assert client.backend.identity()["endpoint"] == emu.base_url


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "OQC_URL"),
        ({"OQC_AUTHENTICATION_TOKEN": "a-token-value"}, "OQC_URL"),
        ({"OQC_URL": "http://127.0.0.1:9"}, "OQC_AUTHENTICATION_TOKEN"),
    ],
)
def test_a_missing_setting_is_a_configuration_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], missing: str
) -> None:
    monkeypatch.delenv("OQC_URL", raising=False)
    monkeypatch.delenv("OQC_AUTHENTICATION_TOKEN", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigurationError, match=missing):
        Sdk("oqc")
    with pytest.raises(ConfigurationError, match=missing):
        OqcSdk()
    if "OQC_AUTHENTICATION_TOKEN" in env:
        for call in (lambda: Sdk("oqc"), OqcSdk):
            with pytest.raises(ConfigurationError) as info:
                call()
            assert env["OQC_AUTHENTICATION_TOKEN"] not in str(info.value)


# ---------------------------------------------------------------------------------- start-up
async def test_an_unreachable_url_fails_at_start_up_quickly_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    token = "secret-token-that-must-not-leak"
    start = anyio.current_time()
    with anyio.fail_after(5), pytest.raises(BackendUnavailableError) as info:
        async with OqcSdk(url=url, authentication_token=token):
            pytest.fail("the Sdk opened on a server that is not there")
    assert anyio.current_time() - start < 2.0
    assert url in str(info.value)
    assert token not in str(info.value)


async def test_a_wrong_token_is_an_authentication_error_at_start_up() -> None:
    with anyio.fail_after(10):
        async with emulator() as emu:
            with pytest.raises(AuthenticationError) as info:
                async with OqcSdk(url=emu.base_url, authentication_token="not-the-token-at-all"):
                    pytest.fail("the Sdk opened with a wrong token")
            assert info.value.status == 401
            assert "not-the-token-at-all" not in str(info.value)
            assert emu.count("GET", "/admin/qpu") == 1  # refused at once, not retried


# ---------------------------------------------------------------------------------- targets
async def test_list_qpus_and_set_default_qpu() -> None:
    with anyio.fail_after(10):
        async with session() as (emu, sdk):
            qpus = await sdk.list_qpus()
            by_id = {q["id"]: q for q in qpus}
            assert LUCY_QPU_ID in by_id
            simulator = next(q for q in qpus if q.get("name") == "Simulator" and q.get("status") == "ACTIVE")
            assert simulator["id"] == SIMULATOR_QPU_ID
            assert by_id[INACTIVE_QPU_ID]["status"] == "INACTIVE"
            assert await sdk.list_targets() == qpus

            sdk.set_default_qpu(simulator["id"])
            assert sdk.default_target == SIMULATOR_QPU_ID
            job = sdk.create_job(program=PROGRAM)
            assert job.qpu_id == SIMULATOR_QPU_ID
            await job.execute(timeout_s=5)
            assert job.completed
            assert job.result is not None
            assert job.result.qpu_id == SIMULATOR_QPU_ID
            (submit,) = calls(emu.requests, "POST", "/tasks/submit")
            assert submit.path == "/9999999999/tasks/submit"  # the simulator's execution URL
            assert submit.body["tasks"][0]["qpu_id"] == SIMULATOR_QPU_ID


async def test_an_unknown_qpu_is_refused_at_create_job_before_anything_is_sent() -> None:
    with anyio.fail_after(10):
        async with session() as (emu, sdk):
            sent = len(emu.requests)
            with pytest.raises(UnknownTargetError, match="qpu:uk:9:nope"):
                sdk.create_job(program=PROGRAM, qpu_id="qpu:uk:9:nope")
            with pytest.raises(JobValidationError, match="no QPU"):
                sdk.create_job(program=PROGRAM)  # no qpu_id and no default
            assert len(emu.requests) == sent


@pytest.mark.parametrize(
    ("program", "config", "match"),
    [
        (123, None, "OpenQASM text"),
        (b"OPENQASM 2.0;", None, "OpenQASM text"),
        ("", None, "empty"),
        ("   \n", None, "empty"),
        (PROGRAM, {"shots": 0}, "shots"),
        (PROGRAM, {"shots": -5}, "shots"),
        (PROGRAM, {"shots": MAX_SHOTS + 1}, "shots"),
        (PROGRAM, {"shots": 10.5}, "shots"),
        (PROGRAM, {"shots": "100"}, "shots"),
        (PROGRAM, {"shots": True}, "shots"),
        (PROGRAM, {"repeats": 100}, "unknown config key"),
        (PROGRAM, {"compiler_config": {"repeats": 1}}, "compiler_config"),
    ],
)
async def test_bad_input_is_refused_before_anything_is_sent(program: Any, config: Any, match: str) -> None:
    with anyio.fail_after(10):
        async with session() as (emu, sdk):
            sent = len(emu.requests)
            with pytest.raises(JobValidationError, match=match):
                sdk.create_job(program=program, qpu_id=LUCY_QPU_ID, config=config)
            assert len(emu.requests) == sent


# ---------------------------------------------------------------------------------- one job on the wire
async def test_a_job_reserves_submits_reads_then_fetches_results_in_that_order() -> None:
    with anyio.fail_after(10):
        async with session() as (emu, sdk):
            mark = len(emu.requests)
            job = sdk.create_job(program=PROGRAM, qpu_id=LUCY_QPU_ID)
            await job.execute(timeout_s=5)
            assert job.completed
            log = since(emu, mark)
            task_id = job.task_id
            assert task_id is not None

            reserve, submit = log[0], log[1]
            assert (reserve.method, reserve.path) == ("POST", f"{LUCY_PATH}/tasks")
            assert reserve.body == {"qpu_id": LUCY_QPU_ID, "task_count": 1, "tag": ""}
            assert emu.task_ids == [task_id]  # the reserved id is the task that ran
            assert (submit.method, submit.path) == ("POST", f"{LUCY_PATH}/tasks/submit")
            (task,) = submit.body["tasks"]
            assert task["task_id"] == task_id
            assert task["program"] == PROGRAM
            assert task["qpu_id"] == LUCY_QPU_ID

            reads = log[2:-1]
            assert reads, "no status read between the submission and the results"
            assert all(e.path == f"{LUCY_PATH}/tasks/{task_id}/status" and e.method == "GET" for e in reads)
            assert (log[-1].method, log[-1].path) == ("GET", f"{LUCY_PATH}/tasks/{task_id}/results")
            assert all(e.status == 200 for e in log)
            assert all(e.headers.get("Authentication-Token") == "<redacted>" for e in log)


@pytest.mark.parametrize("shots", [None, 1, 123])
async def test_shots_become_the_compiler_config_repeats(shots: int | None) -> None:
    with anyio.fail_after(10):
        async with session() as (emu, sdk):
            config = None if shots is None else {"shots": shots}
            job = sdk.create_job(program=PROGRAM, qpu_id=LUCY_QPU_ID, config=config)
            await job.execute(timeout_s=5)
            (submit,) = calls(emu.requests, "POST", "/tasks/submit")
            raw = submit.body["tasks"][0]["config"]
            assert isinstance(raw, str)  # a CompilerConfig serialised as a JSON *string*
            compiler = json.loads(raw)
            assert compiler["$type"] == "<class 'compiler_config.config.CompilerConfig'>"
            expected = DEFAULT_SHOTS if shots is None else shots
            assert compiler["$data"]["repeats"] == expected
            assert job.result is not None
            assert sum(job.result.data["c"].values()) == expected


async def test_results_are_the_emulators_results() -> None:
    with anyio.fail_after(10):
        async with session() as (emu, sdk):
            before = datetime.now(UTC)
            job = sdk.create_job(program=PROGRAM, qpu_id=LUCY_QPU_ID, config={"shots": 200})
            outputs = await job.execute(timeout_s=5)
            result = job.result
            assert isinstance(result, JobResult)
            assert outputs.first is result
            served = await fetch(emu, f"{emu.qpu_url(LUCY_QPU_ID)}/tasks/{job.task_id}/results")
            assert result.data == served["results"]
            assert result.program == PROGRAM
            assert result.qpu_id == LUCY_QPU_ID
            assert str(result.task_id) == job.task_id
            assert result.received is not None
            assert before <= result.received <= datetime.now(UTC)


async def test_a_failing_program_ends_failed_with_the_task_error() -> None:
    with anyio.fail_after(10):
        async with session() as (emu, sdk):
            job = sdk.create_job(program=BAD_PROGRAM, qpu_id=LUCY_QPU_ID)
            await job.execute(timeout_s=5)
            assert job.state is JobState.FAILED
            served = await fetch(emu, f"{emu.qpu_url(LUCY_QPU_ID)}/tasks/{job.task_id}/error")
            error = job.error
            assert isinstance(error, JobError)
            assert error.message == served["task_error"]["error_message"]
            assert "5.0" in error.message
            assert error.code == str(served["task_error"]["error_code"])
            assert not error.ok
            assert error.is_error
            assert job.history.all() == [error]


async def test_an_expired_task_ends_the_job_failed_with_code_expired() -> None:
    with anyio.fail_after(10):
        async with session(job_duration_s=30) as (emu, sdk):
            job = sdk.create_job(program=PROGRAM, qpu_id=LUCY_QPU_ID)
            await job.submit()
            assert job.task_id is not None
            await emu.expire(job.task_id)
            start = anyio.current_time()
            await job.execute(timeout_s=5)
            assert anyio.current_time() - start < 2.0
            assert job.state is JobState.FAILED
            assert job.vendor_status == "EXPIRED"
            assert job.error is not None
            assert job.error.code == "EXPIRED"


async def test_an_undocumented_status_keeps_the_job_active(caplog: pytest.LogCaptureFixture) -> None:
    """The emulator's ``set_status`` accepts documented statuses only, so the odd one is served
    with a fault rule answering 200 and a made-up status to every status read of the task."""
    with anyio.fail_after(10):
        async with session(job_duration_s=0.3) as (emu, sdk):
            job = sdk.create_job(program=PROGRAM, qpu_id=LUCY_QPU_ID)
            await job.submit()
            rule = emu.fail_next(
                10_000, status=200, body={"status": "ON_HOLD"}, path=f"/{job.task_id}/status"
            )
            with caplog.at_level(logging.WARNING, logger="oqc_style_sdk"), pytest.raises(JobTimeoutError):
                await job.execute(timeout_s=1.0)
            assert job.active
            assert job.vendor_status == "ON_HOLD"
            assert job.history.all() == []
            odd = [r for r in caplog.records if "ON_HOLD" in r.getMessage()]
            assert len(odd) == 1  # logged once, not at every read
            assert rule.remaining < 10_000 - 2  # it was read several times meanwhile

            emu.clear_faults()
            await job.execute(timeout_s=5)  # resumes, and ends when the real status shows
            assert job.completed
            assert emu.count("POST", f"{LUCY_PATH}/tasks/submit") == 1


async def test_unknown_keeps_the_job_active() -> None:
    with anyio.fail_after(10):
        async with session(job_duration_s=0.3) as (emu, sdk):
            job = sdk.create_job(program=PROGRAM, qpu_id=LUCY_QPU_ID)
            await job.submit()
            assert job.task_id is not None
            await emu.set_status(job.task_id, "UNKNOWN")
            assert await job.refresh() is JobState.SUBMITTED
            assert job.vendor_status == "UNKNOWN"
            await emu.set_status(job.task_id, None)
            await job.execute(timeout_s=5)
            assert job.completed


async def test_several_jobs_are_read_with_one_task_list_request_per_tick() -> None:
    with anyio.fail_after(10):
        async with session(job_duration_s=0.5) as (emu, sdk):
            composite = sdk.create_job(program=[PROGRAM] * 4, qpu_id=LUCY_QPU_ID)
            await composite.submit(timeout_s=5)
            emu.malformed_next(1, path=TASK_LIST, method="GET")  # garbled once: read one by one, once
            await composite.execute(timeout_s=5)
            assert composite.completed
            lists = [e for e in emu.requests if e.method == "GET" and TASK_LIST.search(e.path)]
            assert lists[0].fault == "malformed"
            assert len(lists) >= 2  # used again after the garbled answer
            assert all("start_date" in e.query for e in lists)
            singles = [e for e in emu.requests if e.path.endswith("/status")]
            assert len(singles) <= 4 + 1  # one round of single reads (and the first job's own)


async def test_runs_the_task_list_cannot_answer_for_are_read_one_by_one() -> None:
    """Unlisted tasks, odd statuses in the list and unreadable submission times cost a single read
    each; the other runs are answered from the list, and the list stays in use."""
    with anyio.fail_after(10):
        async with session(job_duration_s=30) as (emu, sdk):
            composite = sdk.create_job(program=[PROGRAM] * 5, qpu_id=LUCY_QPU_ID)
            await composite.submit(timeout_s=5)
            refs = [child._ref for child in composite]
            assert all(ref is not None for ref in refs)
            unlisted, odd, garbled_time, *listed = [ref for ref in refs if ref is not None]
            garbled_time = RunRef(garbled_time.task_id, {**garbled_time.extra, "submitted_at": "yesterday"})
            backend = sdk.backend
            assert isinstance(backend, OqcBackend)

            async def task_list(qpu_url: str, earliest: datetime) -> dict[Any, Any]:
                return {odd.task_id: 5, **{ref.task_id: "RUNNING" for ref in listed}, 7: "COMPLETED"}

            backend._task_list = task_list  # type: ignore[method-assign]
            mark = len(emu.requests)
            readings = await backend.statuses([unlisted, odd, garbled_time, *listed])
            assert sorted(readings) == sorted(ref.task_id for ref in refs if ref is not None)
            assert all(isinstance(obs, Observation) and obs.state.is_active for obs in readings.values())
            singles = sorted(e.path.split("/")[-2] for e in calls(since(emu, mark), "GET", "/status"))
            assert singles == sorted([unlisted.task_id, odd.task_id, garbled_time.task_id])
            assert backend._task_list_usable
            del backend._task_list  # the real list again, to see the cancels confirmed
            await composite.cancel()


async def test_a_refused_task_list_falls_back_to_single_reads_for_good() -> None:
    with anyio.fail_after(10):
        async with session(job_duration_s=0.3) as (emu, sdk):
            emu.fail_next(1, status=404, path=TASK_LIST, method="GET")
            composite = sdk.create_job(program=[PROGRAM] * 3, qpu_id=LUCY_QPU_ID)
            await composite.execute(timeout_s=5)
            assert composite.completed
            lists = [e for e in emu.requests if e.method == "GET" and TASK_LIST.search(e.path)]
            assert [e.status for e in lists] == [404]  # refused once, never asked again
            for child in composite:
                assert calls(emu.requests, "GET", f"/{child.task_id}/status")


# ---------------------------------------------------------------------------------- cancellation
async def test_cancel_of_a_running_job_sends_one_cancel_many() -> None:
    with anyio.fail_after(10):
        async with session(job_duration_s=30) as (emu, sdk):
            job = sdk.create_job(program=PROGRAM, qpu_id=LUCY_QPU_ID)
            await job.submit()
            await wait_until_running(job, emu)
            assert await job.cancel(timeout_s=5) is JobState.CANCELLED
            (cancel,) = calls(emu.requests, "POST", "/tasks/cancel_many")
            assert cancel.path == f"{LUCY_PATH}/tasks/cancel_many"
            assert cancel.body == {"tasks": [job.task_id]}
            assert await emu.status_of(job.task_id) == "CANCELLED"
            assert [o.state for o in job.history] == [JobState.CANCELLED]


async def test_cancel_of_a_finished_job_sends_no_cancel_many() -> None:
    with anyio.fail_after(10):
        async with session() as (emu, sdk):
            job = sdk.create_job(program=PROGRAM, qpu_id=LUCY_QPU_ID)
            await job.execute(timeout_s=5)
            result = job.result
            assert await job.cancel() is JobState.COMPLETED
            assert await job.cancel_if_active() is False
            assert job.completed
            assert job.result is result
            assert emu.count("POST", f"{LUCY_PATH}/tasks/cancel_many") == 0


async def test_cancelling_a_composite_sends_one_cancel_many_with_every_id() -> None:
    with anyio.fail_after(15):
        async with session(job_duration_s=30) as (emu, sdk):
            composite = sdk.create_job(program=[PROGRAM] * 5, qpu_id=LUCY_QPU_ID)
            await composite.submit(timeout_s=5)
            ids = [child.task_id for child in composite]
            assert None not in ids
            assert len(set(ids)) == 5
            summary = await composite.cancel(timeout_s=5)
            assert summary == {JobState.CANCELLED: 5}
            (cancel,) = calls(emu.requests, "POST", "/tasks/cancel_many")
            assert sorted(cancel.body["tasks"]) == sorted(ids)
            for task_id in ids:
                assert await emu.status_of(task_id) == "CANCELLED"


# ---------------------------------------------------------------------------------- diagnostics
async def test_fetch_diagnostics_fills_timings_metrics_and_metadata() -> None:
    with anyio.fail_after(10):
        async with session() as (emu, sdk):
            plain = sdk.create_job(program=PROGRAM, qpu_id=LUCY_QPU_ID)
            await plain.execute(timeout_s=5)
            assert (plain.timings, plain.metrics, plain.metadata) == (None, None, None)
            assert emu.count("GET", f"{LUCY_PATH}/tasks/{plain.task_id}/timings") == 0

            job = sdk.create_job(program=PROGRAM, qpu_id=LUCY_QPU_ID, fetch_diagnostics=True)
            await job.execute(timeout_s=5)
            assert job.timings is not None
            assert "SERVER_RECEIVED" in job.timings
            assert job.metrics is not None
            assert job.metrics["num_qubits"] == 1
            assert job.metadata is not None
            assert job.metadata["id"] == job.task_id
            assert job.metadata["qpu_id"] == LUCY_QPU_ID
            base = f"{emu.qpu_url(LUCY_QPU_ID)}/tasks/{job.task_id}"
            assert job.timings == (await fetch(emu, f"{base}/timings"))["timings"]


# ---------------------------------------------------------------------------------- persistence
async def test_a_job_file_names_the_endpoint_and_refuses_another(tmp_path: Path) -> None:
    with anyio.fail_after(15):
        async with session() as (emu, sdk):
            job = sdk.create_job(program=PROGRAM, qpu_id=LUCY_QPU_ID)
            await job.execute(timeout_s=5)
            path = await job.save(tmp_path / "job.json")
            text = path.read_text()
            assert json.loads(text)["backend"] == {"backend": "oqc", "endpoint": emu.base_url}
            assert emu.token not in text
            async with emulator() as other, OqcSdk(**other.credentials) as elsewhere:
                with pytest.raises(ForeignJobFileError, match=emu.base_url):
                    await elsewhere.load(path)


async def test_save_load_round_trip_and_resume_in_the_same_process(tmp_path: Path) -> None:
    with anyio.fail_after(15):
        async with session(job_duration_s=0.4) as (emu, sdk):
            done = sdk.create_job(program=PROGRAM, qpu_id=LUCY_QPU_ID, fetch_diagnostics=True)
            await done.execute(timeout_s=5)
            back = await sdk.load(await done.save(tmp_path / "done.json"))
            assert back is not done
            assert back.state is JobState.COMPLETED
            assert back.task_id == done.task_id
            assert back.result is not None
            assert done.result is not None
            assert back.result.model_dump() == done.result.model_dump()  # (equal but for the parent)
            assert [o.model_dump() for o in back.history] == [o.model_dump() for o in done.history]
            assert (back.timings, back.metrics, back.metadata) == (done.timings, done.metrics, done.metadata)

            job = sdk.create_job(program=PROGRAM, qpu_id=LUCY_QPU_ID)
            await job.submit()
            path = await job.save(tmp_path / "active.json")
            submits = emu.count("POST", f"{LUCY_PATH}/tasks/submit")
            async with OqcSdk(**emu.credentials) as second:  # another Sdk on the same endpoint
                resumed = await second.load(path)
                assert resumed.active
                assert resumed.task_id == job.task_id
                await resumed.execute(timeout_s=5)
                assert resumed.completed
            assert emu.count("POST", f"{LUCY_PATH}/tasks/submit") == submits  # nothing sent again
            assert len(reservations(emu)) == 2  # one reservation per job


CRASHING_CLIENT = """
import os, sys
import anyio
from oqc_style_sdk import JobState, OqcSdk

async def main() -> None:
    async with OqcSdk(
        url=os.environ["OQC_URL"],
        authentication_token=os.environ["OQC_AUTHENTICATION_TOKEN"],
        default_qpu_id="qpu:uk:2:d865b5a184",
    ) as sdk:
        job = sdk.create_job(program=os.environ["PROGRAM"])
        await job.submit()
        with anyio.fail_after(10):
            while job.state is not JobState.RUNNING:
                await anyio.sleep(0.02)
                await job.refresh()
        await job.save(sys.argv[1])
        print(job.task_id, flush=True)
        os._exit(0)  # die without leaving the Sdk: no clean-up of any kind

anyio.run(main)
"""


async def test_a_job_saved_while_running_finishes_in_another_process_without_resubmitting(
    tmp_path: Path,
) -> None:
    with anyio.fail_after(30):
        async with emulator(job_duration_s=2.0) as emu:
            path = tmp_path / "running.json"
            env = {**os.environ, **emu.env, "PROGRAM": PROGRAM}
            done = await anyio.run_process(
                [sys.executable, "-c", CRASHING_CLIENT, str(path)], env=env, check=False
            )
            assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
            task_id = done.stdout.decode().strip()
            assert json.loads(path.read_text())["jobs"][0]["state"] == "RUNNING"

            async with OqcSdk(**emu.credentials) as sdk:
                job = await sdk.load(path)
                assert job.state is JobState.RUNNING
                assert job.task_id == task_id
                await job.execute(timeout_s=10)
                assert job.completed
                assert job.result is not None
                assert sum(job.result.data["c"].values()) == DEFAULT_SHOTS
            assert len(reservations(emu)) == 1
            submits = calls(emu.requests, "POST", "/tasks/submit")
            assert len(submits) == 1
            assert submits[0].body["tasks"][0]["task_id"] == task_id
            assert emu.task_ids == [task_id]
            assert emu.engine_runs == 1


# ---------------------------------------------------------------------------------- secrets
async def test_no_token_in_reprs_logs_or_messages(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    token = "tok-" + "s3cr3t" * 6
    errors: list[BaseException] = []

    def record(exc: BaseException) -> None:
        while exc is not None and exc not in errors:
            errors.append(exc)
            exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]

    with anyio.fail_after(20), caplog.at_level(logging.DEBUG):
        async with emulator(token=token, job_duration_s=0.2) as emu:
            try:
                async with OqcSdk(url=emu.base_url, authentication_token=token + "x"):
                    pass
            except SdkError as exc:
                record(exc)
            try:
                async with OqcSdk(url=f"http://127.0.0.1:{free_port()}", authentication_token=token):
                    pass
            except SdkError as exc:
                record(exc)
            async with OqcSdk(**emu.credentials) as sdk:
                texts = [repr(sdk), repr(sdk.backend), repr(sdk.backend.http), str(sdk.backend)]
                emu.fail_next(1, status=503, path="/tasks", method="POST")
                job = sdk.create_job(program=PROGRAM, qpu_id=LUCY_QPU_ID)
                try:
                    await job.execute(timeout_s=5)
                except SdkError as exc:
                    record(exc)
                emu.fail_next(1, status=400, path="/tasks/submit", body={"response": {"errors": [token]}})
                await job.execute(timeout_s=5)  # refused: the server echoes the token
                assert job.error is not None
                texts.append(job.error.message)
                emu.fail_next(100, status=503, path="/status")
                try:
                    await job.execute(timeout_s=0.5)
                except SdkError as exc:
                    record(exc)
                emu.clear_faults()
                await job.execute(timeout_s=5)
                texts += [repr(job), repr(job.outputs), repr(job.history)]
                texts.append((await job.save(tmp_path / "job.json")).read_text())
    assert len(errors) >= 4
    texts += [str(e) for e in errors] + [repr(e) for e in errors]
    texts += [r.getMessage() for r in caplog.records]
    assert caplog.records, "nothing was logged"
    leaks = [t for t in texts if token in t]
    assert not leaks, leaks[:3]
