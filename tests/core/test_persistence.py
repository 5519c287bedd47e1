"""Saving and loading jobs: round trips, the file itself, resuming, and every kind of bad input."""

from __future__ import annotations

import json
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from oqc_style_sdk import Sdk, persistence
from oqc_style_sdk.backends.local import LocalBackend
from oqc_style_sdk.composite import CompositeJob
from oqc_style_sdk.exceptions import (
    CorruptJobFileError,
    ForeignJobFileError,
    JobFailed,
    JobFileNotFoundError,
    JobNotResumableError,
    PersistenceError,
    UnsupportedSchemaError,
)
from oqc_style_sdk.job import Job
from oqc_style_sdk.job_output import JobCancellation, JobError, JobResult
from oqc_style_sdk.persistence import FORMAT, SCHEMA_VERSION
from oqc_style_sdk.state import JobState
from tests.common import BELL

ONE = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; x q[0]; measure q[0] -> c[0];'
BAD = 'OPENQASM 5.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'


# ------------------------------------------------------------------------------------------- helpers
def view(job: Job) -> dict[str, Any]:
    """Everything a round trip must keep."""
    return {
        "id": job.id,
        "state": job.state,
        "run": job.run,
        "task_id": job.task_id,
        "vendor_status": job.vendor_status,
        "program": job.program,
        "target": job.target,
        "config": job.config,
        "tag": job.tag,
        "fetch_diagnostics": job.fetch_diagnostics,
        "timings": job.timings,
        "metrics": job.metrics,
        "metadata": job.metadata,
        "history_types": [type(o) for o in job.history],
        "history": [o.model_dump() for o in job.history],
        "outputs": [o.model_dump() for o in job.outputs],
        "key": job._key,
    }


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def files_state(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


async def make_job(sdk: Sdk, kind: str) -> Job:
    """A job in the state named by ``kind``, with tag, config and diagnostics switched on."""
    if kind == "completed":
        job = sdk.create_job(
            program=BELL, config={"shots": 128, "seed": 7}, tag="done", fetch_diagnostics=True
        )
        await job.execute(timeout_s=30)
        assert job.completed
    elif kind == "failed":
        job = sdk.create_job(program=BAD, tag="bad", fetch_diagnostics=True)
        await job.execute(timeout_s=30)
        assert job.state is JobState.FAILED
    elif kind == "cancelled":
        job = sdk.create_job(program=BELL, config={"min_duration_s": 30}, tag="c", fetch_diagnostics=True)
        await job.submit()
        await job.cancel("no longer needed")
        assert job.state is JobState.CANCELLED
    elif kind == "created":
        job = sdk.create_job(program=ONE, target="qpu:uk:2:d865b5a184", config={"shots": 5}, tag="new")
        assert job.state is JobState.CREATED
    else:  # pragma: no cover
        raise AssertionError(kind)
    return job


@pytest.fixture
def probe_thread(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Record the thread each blocking persistence function runs in."""
    calls: list[tuple[str, int]] = []

    def wrap(name: str) -> None:
        original: Callable[..., Any] = getattr(persistence, name)

        def wrapper(*args: Any) -> Any:
            calls.append((name, threading.get_ident()))
            return original(*args)

        monkeypatch.setattr(persistence, name, wrapper)

    wrap("_write_atomically")
    wrap("read_document")
    return calls


# ------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("kind", ["completed", "failed", "cancelled", "created"])
async def test_round_trip_keeps_everything(kind: str, tmp_path: Path) -> None:
    async with Sdk() as sdk, Sdk() as other:
        job = await make_job(sdk, kind)
        path = await job.save(tmp_path / f"{kind}.json")
        assert path == tmp_path / f"{kind}.json"
        for into in (sdk, other):  # the same Sdk, and another one (a new process)
            loaded = await into.load(path)
            assert isinstance(loaded, Job)
            assert loaded is not job
            assert loaded.sdk is into
            assert view(loaded) == view(job)
            assert all(o._job is loaded for o in loaded.history)
            assert all(o._job is loaded for o in loaded.outputs)
        if kind == "cancelled":
            c = loaded.outputs.one
            assert isinstance(c, JobCancellation)
            assert c.reason == "no longer needed"
        if kind == "failed":
            assert loaded.error is not None
            assert loaded.error.code == "PARSE_ERROR"
        if kind != "created":
            assert loaded.timings is not None
            assert loaded.metadata is not None


async def test_diagnostics_flag_survives_and_keeps_fetching(tmp_path: Path) -> None:
    async with Sdk() as sdk:
        job = await make_job(sdk, "completed")
        loaded = await sdk.load(await job.save(tmp_path / "j.json"))
        assert loaded.fetch_diagnostics is True
        assert loaded.metrics == job.metrics
        assert loaded.metrics is not None
        assert loaded.metrics["num_qubits"] == 2
        await loaded.execute(timeout_s=30)
        assert loaded.run == 2
        assert loaded.timings is not None
        assert loaded.timings != job.timings  # fetched anew for the new run


async def test_loaded_completed_job_runs_again_and_its_outputs_are_bound(tmp_path: Path) -> None:
    async with Sdk() as sdk, Sdk() as other:
        job = await make_job(sdk, "completed")
        path = await job.save(tmp_path / "j.json")
        loaded = await other.load(path)
        assert isinstance(loaded, Job)
        outputs = await loaded.execute(timeout_s=30)
        assert loaded.completed
        assert loaded.run == 2
        assert len(loaded.history) == 2
        assert loaded.task_id != job.task_id
        assert outputs.one is loaded.history.last
        # an output read back from the file is attached to the loaded job
        again = await loaded.history.first.reexecute(timeout_s=30)
        assert again.one.run == 3
        assert [type(o) for o in loaded.history] == [JobResult] * 3
        assert len(job.history) == 1  # the original is untouched


async def test_loaded_failed_job_reexecutes_with_a_fix(tmp_path: Path) -> None:
    async with Sdk() as sdk:
        job = await make_job(sdk, "failed")
        loaded = await sdk.load(await job.save(tmp_path / "f.json"))
        loaded.reconfigure(memento=loaded.history.first, program=BELL)
        await loaded.execute(timeout_s=30)
        assert [type(o) for o in loaded.history] == [JobError, JobResult]
        assert loaded.tag == "bad"


async def test_loaded_created_job_executes(tmp_path: Path) -> None:
    async with Sdk() as sdk:
        job = await make_job(sdk, "created")
        loaded = await sdk.load(await job.save(tmp_path / "c.json"))
        await loaded.execute(timeout_s=30)
        assert loaded.completed
        assert loaded.run == 1
        assert loaded.result is not None
        assert loaded.result.data == {"c": {"1": 5}}
        assert job.state is JobState.CREATED  # the original was never sent


async def test_composite_round_trip(tmp_path: Path) -> None:
    async with Sdk() as sdk, Sdk() as other:
        comp = sdk.create_job(program=[BELL, BAD, ONE], config={"shots": 16}, tag="batch")
        assert isinstance(comp, CompositeJob)
        await comp.execute(timeout_s=30)
        path = await comp.save(tmp_path / "comp.json")
        raw = json.loads(path.read_text())
        assert raw["composite_id"] == comp.id
        assert len(raw["jobs"]) == 3
        loaded = await other.load(path)
        assert isinstance(loaded, CompositeJob)
        assert loaded.id == comp.id
        assert len(loaded) == 3
        assert [view(c) for c in loaded] == [view(c) for c in comp]
        assert [type(o) for o in loaded.outputs] == [JobResult, JobError, JobResult]
        assert loaded.state is JobState.FAILED
        assert loaded.summary() == comp.summary()
        await loaded.execute(timeout_s=30)
        assert [c.run for c in loaded] == [2, 2, 2]


# ------------------------------------------------------------------------------------------- the file
async def test_the_file_is_versioned_private_json(tmp_path: Path) -> None:
    async with Sdk() as sdk:
        job = await make_job(sdk, "completed")
        path = await job.save(tmp_path / "job.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == FORMAT
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["backend"] == {"backend": "local"}
    assert len(data["jobs"]) == 1
    assert data["jobs"][0]["id"] == job.id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert listing(tmp_path) == ["job.json"]  # no temp file left behind


async def test_save_accepts_str_and_home_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    async with Sdk() as sdk:
        job = await make_job(sdk, "created")
        p1 = await job.save(str(tmp_path / "a.json"))
        p2 = await job.save("~/b.json")
        assert p2 == tmp_path / "b.json"
        assert (await sdk.load("~/b.json")).id == job.id
        assert (await sdk.load(str(p1))).id == job.id
    assert listing(tmp_path) == ["a.json", "b.json"]


async def test_overwriting_narrows_permissions_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text("old")
    path.chmod(0o644)
    async with Sdk() as sdk:
        job = await make_job(sdk, "completed")
        await job.save(path)
        await job.execute(timeout_s=30)
        await job.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(json.loads(path.read_text())["jobs"][0]["history"]) == 2
    assert listing(tmp_path) == ["job.json"]


async def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "job.json"
    async with Sdk() as sdk:
        job = await make_job(sdk, "completed")
        await job.save(path)
        before = path.read_bytes()
        await job.execute(timeout_s=30)  # now there is more to write

        def broken_replace(src: Any, dst: Any) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "replace", broken_replace)
        with pytest.raises(PersistenceError) as info:
            await job.save(path)
        monkeypatch.undo()
        assert "Input/output error" in str(info.value)
        assert str(path) in str(info.value)
        assert path.read_bytes() == before
        assert listing(tmp_path) == ["job.json"]
        assert len((await sdk.load(path)).history) == 1  # still the old, whole file


async def test_a_failed_fsync_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "job.json"
    async with Sdk() as sdk:
        job = await make_job(sdk, "created")
        await job.save(path)
        before = path.read_bytes()

        def broken_fsync(fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", broken_fsync)
        with pytest.raises(PersistenceError, match="No space left"):
            await job.save(path)
        monkeypatch.undo()
    assert path.read_bytes() == before
    assert listing(tmp_path) == ["job.json"]


async def test_save_and_load_run_in_a_worker_thread(
    tmp_path: Path, probe_thread: list[tuple[str, int]]
) -> None:
    loop_thread = threading.get_ident()
    async with Sdk() as sdk:
        job = await make_job(sdk, "created")
        await job.save(tmp_path / "j.json")
        await sdk.load(tmp_path / "j.json")
    assert [name for name, _ in probe_thread] == ["_write_atomically", "read_document"]
    assert all(ident != loop_thread for _, ident in probe_thread)


async def test_the_event_loop_keeps_running_while_a_save_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow disk does not stop other tasks: the write blocks only its worker thread."""
    release = threading.Event()
    original = persistence._write_atomically

    def slow_write(*args: Any) -> Any:
        assert release.wait(10), "the event loop never got to run"
        return original(*args)

    monkeypatch.setattr(persistence, "_write_atomically", slow_write)
    async with Sdk() as sdk:
        job = await make_job(sdk, "created")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
                ticks += 1
            release.set()  # only reachable if the loop was not blocked by the save

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(job.save, tmp_path / "j.json")
                tg.start_soon(ticker)
        assert ticks == 3
    assert (tmp_path / "j.json").exists()


# ------------------------------------------------------------------------------------------- resuming
async def test_active_local_job_in_another_sdk_is_not_resumable(tmp_path: Path) -> None:
    path = tmp_path / "active.json"
    async with Sdk() as sdk, Sdk() as other:
        job = sdk.create_job(program=BELL, config={"min_duration_s": 0.3})
        await job.submit()
        assert job.active  # saved while at the vendor (nothing awaited since submit)
        await job.save(path)
        saved = path.read_bytes()

        with pytest.raises(JobNotResumableError) as info:
            await other.load(path)
        message = str(info.value)
        assert job.id in message
        assert job.task_id is not None
        assert job.task_id in message
        assert "cannot be resumed" in message
        assert "lost_runs='fail'" in message
        assert "another process" in message
        assert path.read_bytes() == saved

        # lost_runs="fail": loaded as FAILED with a LOST error, history kept, ready to run again
        lost = await other.load(path, lost_runs="fail")
        assert isinstance(lost, Job)
        assert lost.state is JobState.FAILED
        assert lost.error is not None
        assert lost.error.code == "LOST"
        assert "lost" in lost.error.message
        assert [type(o) for o in lost.history] == [JobError]
        assert lost.history.one.run == 1
        assert lost.history.one._job is lost
        with pytest.raises(JobFailed, match="failed"):
            lost.raise_for_status()
        await lost.execute(timeout_s=30)
        assert lost.completed
        assert lost.run == 2
        assert [type(o) for o in lost.history] == [JobError, JobResult]
        assert lost.task_id != job.task_id
        assert path.read_bytes() == saved  # loading never writes

        # the same file loaded into the Sdk that runs it: resumed, not resubmitted
        resumed = await sdk.load(path)
        assert isinstance(resumed, Job)
        assert resumed.active
        assert resumed.task_id == job.task_id
        await resumed.execute(timeout_s=30)
        assert resumed.completed
        assert resumed.run == 1
        assert resumed.task_id == job.task_id
        assert len(resumed.history) == 1
        await job.wait(timeout_s=30)
        assert job.result is not None
        assert resumed.result is not None
        assert resumed.result.data == job.result.data


async def test_lost_runs_takes_two_values(tmp_path: Path) -> None:
    async with Sdk() as sdk:
        job = await make_job(sdk, "created")
        path = await job.save(tmp_path / "j.json")
        with pytest.raises(ValueError, match="lost_runs"):
            await sdk.load(path, lost_runs="ignore")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- bad input
@pytest.fixture
async def saved_doc(tmp_path: Path) -> dict[str, Any]:
    """A real saved job file, as parsed JSON."""
    async with Sdk() as sdk:
        job = await make_job(sdk, "completed")
        path = await job.save(tmp_path / "good.json")
    return json.loads(path.read_text())


async def _expect_load_error(
    tmp_path: Path, content: bytes, error: type[Exception], *, match: str | None = None
) -> Exception:
    path = tmp_path / "input.json"
    path.write_bytes(content)
    before = files_state(tmp_path)
    async with Sdk() as sdk:
        with pytest.raises(error, match=match) as info:
            await sdk.load(path)
    assert files_state(tmp_path) == before  # nothing written, nothing changed
    assert str(path) in str(info.value)
    return info.value


async def test_missing_file(tmp_path: Path) -> None:
    async with Sdk() as sdk:
        with pytest.raises(JobFileNotFoundError) as info:
            await sdk.load(tmp_path / "nope.json")
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, PersistenceError)
    assert "nope.json" in str(info.value)
    assert listing(tmp_path) == []


async def test_a_directory_is_not_a_job_file(tmp_path: Path) -> None:
    async with Sdk() as sdk:
        with pytest.raises(PersistenceError, match="directory"):
            await sdk.load(tmp_path)


@pytest.mark.parametrize("content", [b"", b"not json", b"\xff\xfe\x00garbage", b'{"format": '])
async def test_not_json(tmp_path: Path, content: bytes) -> None:
    await _expect_load_error(tmp_path, content, CorruptJobFileError, match="not valid JSON")


async def test_truncated_file(tmp_path: Path, saved_doc: dict[str, Any]) -> None:
    whole = json.dumps(saved_doc, indent=1).encode()
    await _expect_load_error(tmp_path, whole[: len(whole) // 2], CorruptJobFileError, match="truncated")


@pytest.mark.parametrize(
    "content",
    [b"{}", b"[]", b"[1, 2]", b'"a string"', b"null", b"42", b'{"format": "someone-else/v1", "jobs": []}'],
)
async def test_json_that_is_not_ours(tmp_path: Path, content: bytes) -> None:
    await _expect_load_error(tmp_path, content, ForeignJobFileError, match="not an oqc-style-sdk job file")


async def test_newer_schema_asks_for_an_upgrade(tmp_path: Path, saved_doc: dict[str, Any]) -> None:
    saved_doc["schema_version"] = SCHEMA_VERSION + 1
    err = await _expect_load_error(tmp_path, json.dumps(saved_doc).encode(), UnsupportedSchemaError)
    assert "upgrade" in str(err)
    assert str(SCHEMA_VERSION + 1) in str(err)


@pytest.mark.parametrize("version", [None, "1", 0, -3, True, 1.5])
async def test_invalid_schema_version(tmp_path: Path, saved_doc: dict[str, Any], version: Any) -> None:
    saved_doc["schema_version"] = version
    await _expect_load_error(tmp_path, json.dumps(saved_doc).encode(), CorruptJobFileError)


def _forge(doc: dict[str, Any], how: str) -> dict[str, Any]:
    job = doc["jobs"][0]
    if how == "completed_without_history":
        job["history"] = []
    elif how == "running_without_ref":
        job["state"] = "RUNNING"
        job["ref"] = None
        job["history"] = []
    elif how == "history_after_current_run":
        job["history"][0]["run"] = job["run"] + 4
    elif how == "duplicate_history_runs":
        job["run"] = 2
        job["history"] = [job["history"][0], job["history"][0]]
    elif how == "extra_job_field":
        job["evil"] = "__import__('os').system('true')"
    elif how == "extra_top_level_field":
        doc["surprise"] = 1
    elif how == "extra_history_field":
        job["history"][0]["extra"] = 1
    elif how == "unknown_state":
        job["state"] = "EXPIRED"
    elif how == "pending_in_history":
        job["history"][0] = {"kind": "pending", "run": 1}
    elif how == "wrong_last_entry_type":
        job["history"][0] = {"kind": "error", "run": 1, "message": "x"}
    elif how == "created_with_ref":
        job["state"] = "CREATED"
        job["run"] = 2
    elif how == "no_jobs":
        doc["jobs"] = []
    elif how == "two_jobs_without_composite_id":
        doc["jobs"] = [job, job]
    elif how == "run_zero":
        job["run"] = 0
    else:  # pragma: no cover
        raise AssertionError(how)
    return doc


@pytest.mark.parametrize(
    "how",
    [
        "completed_without_history",
        "running_without_ref",
        "history_after_current_run",
        "duplicate_history_runs",
        "extra_job_field",
        "extra_top_level_field",
        "extra_history_field",
        "unknown_state",
        "pending_in_history",
        "wrong_last_entry_type",
        "created_with_ref",
        "no_jobs",
        "two_jobs_without_composite_id",
        "run_zero",
    ],
)
async def test_forged_contents_are_corrupt(tmp_path: Path, saved_doc: dict[str, Any], how: str) -> None:
    err = await _expect_load_error(
        tmp_path,
        json.dumps(_forge(saved_doc, how)).encode(),
        CorruptJobFileError,
        match="not a valid job file",
    )
    assert len(str(err)) < 1000  # a clear message, not a dump of the file


async def test_forged_messages_say_what_is_wrong(tmp_path: Path, saved_doc: dict[str, Any]) -> None:
    doc = json.loads(json.dumps(saved_doc))
    err = await _expect_load_error(
        tmp_path, json.dumps(_forge(doc, "running_without_ref")).encode(), CorruptJobFileError
    )
    assert "vendor reference" in str(err)
    doc = json.loads(json.dumps(saved_doc))
    err = await _expect_load_error(
        tmp_path, json.dumps(_forge(doc, "extra_job_field")).encode(), CorruptJobFileError
    )
    assert "evil" in str(err)
    assert "__import__" not in str(err)  # the forged input is not echoed back


async def test_file_from_another_backend_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with Sdk() as sdk, Sdk() as other:
        job = await make_job(sdk, "completed")
        path = await job.save(tmp_path / "j.json")
        before = files_state(tmp_path)
        monkeypatch.setattr(
            other.backend, "identity", lambda: {"backend": "local", "endpoint": "https://elsewhere.example"}
        )
        with pytest.raises(ForeignJobFileError) as info:
            await other.load(path)
        assert "elsewhere.example" in str(info.value)
        assert "same backend" in str(info.value)
        assert files_state(tmp_path) == before
        assert (await sdk.load(path)).id == job.id  # the right Sdk still loads it


async def test_save_into_a_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    async with Sdk() as sdk:
        job = await make_job(sdk, "created")
        with pytest.raises(PersistenceError) as info:
            await job.save(missing / "j.json")
    assert str(missing) in str(info.value)
    assert "does not exist" in str(info.value)
    assert listing(tmp_path) == []


def _can_write_despite_mode(directory: Path) -> bool:
    probe = directory / ".probe"
    try:
        probe.write_text("x")
    except PermissionError:
        return False
    probe.unlink()
    return True


async def test_save_into_a_read_only_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    existing = ro / "j.json"
    existing.write_text("keep me")
    ro.chmod(0o500)
    try:
        if _can_write_despite_mode(ro):  # running as root: the mode does not stop writes

            def refuse(*args: Any, **kwargs: Any) -> Any:
                raise PermissionError(13, "Permission denied")

            monkeypatch.setattr(tempfile, "mkstemp", refuse)
        async with Sdk() as sdk:
            job = await make_job(sdk, "created")
            with pytest.raises(PersistenceError) as info:
                await job.save(existing)
        assert "not writable" in str(info.value)
        assert str(ro) in str(info.value)
        assert existing.read_text() == "keep me"
        assert listing(ro) == ["j.json"]
    finally:
        ro.chmod(0o700)


async def test_other_write_errors_are_persistence_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only_fs(*args: Any, **kwargs: Any) -> Any:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only_fs)
    async with Sdk() as sdk:
        job = await make_job(sdk, "created")
        with pytest.raises(PersistenceError, match="Read-only file system"):
            await job.save(tmp_path / "j.json")
    assert listing(tmp_path) == []


async def test_other_read_errors_are_persistence_errors(tmp_path: Path) -> None:
    a_file = tmp_path / "plain"
    a_file.write_text("x")
    async with Sdk() as sdk:
        with pytest.raises(PersistenceError, match="cannot be read"):
            await sdk.load(a_file / "j.json")  # a file on the way: NotADirectoryError
    assert listing(tmp_path) == ["plain"]


@pytest.mark.parametrize("where", ["top", "data"])
async def test_hostile_nesting_is_corrupt_not_a_crash(
    tmp_path: Path, saved_doc: dict[str, Any], where: str
) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    if where == "top":
        content = deep
    else:
        saved_doc["jobs"][0]["history"][0]["data"] = "__DEEP__"
        content = json.dumps(saved_doc).replace('"__DEEP__"', deep)
    await _expect_load_error(tmp_path, content.encode(), CorruptJobFileError, match="nested too deeply")


@pytest.mark.parametrize("bad", [123, None, b"/tmp/x.json", ["a.json"]])
async def test_a_path_of_the_wrong_type(tmp_path: Path, bad: Any) -> None:
    async with Sdk() as sdk:
        job = await make_job(sdk, "created")
        with pytest.raises(TypeError, match="path"):
            await job.save(bad)
        with pytest.raises(TypeError, match="path"):
            await sdk.load(bad)


async def test_a_file_over_the_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with Sdk() as sdk:
        job = await make_job(sdk, "created")
        path = await job.save(tmp_path / "big.json")
        monkeypatch.setattr(persistence, "MAX_FILE_BYTES", 64)
        with pytest.raises(CorruptJobFileError, match="limit") as info:
            await sdk.load(path)
        assert "64" in str(info.value)
        monkeypatch.undo()
        assert (await sdk.load(path)).id == job.id


class _CredentialedLocal(LocalBackend):
    """A local simulator pretending to need a token: the token must never reach a saved file."""

    name = "credentialed"

    def __init__(self, token: str) -> None:
        super().__init__()
        self._token = token
        self.password = token

    def identity(self) -> dict[str, str]:
        return {"backend": self.name, "endpoint": "https://qpu.example/api"}


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


async def test_a_saved_file_never_holds_a_secret(tmp_path: Path) -> None:
    secret = "s3cr3t-t0ken-value"
    async with Sdk(_CredentialedLocal(secret)) as sdk:
        job = sdk.create_job(program=BELL, fetch_diagnostics=True)
        await job.execute(timeout_s=30)
        path = await job.save(tmp_path / "j.json")
        assert (await sdk.load(path)).id == job.id
    raw = path.read_text()
    assert secret not in raw
    data = json.loads(raw)
    assert data["backend"] == {"backend": "credentialed", "endpoint": "https://qpu.example/api"}
    lowered = {k.lower() for k in _keys(data)}
    assert not lowered & {"token", "password", "authentication_token", "authorization", "api_key", "secret"}
