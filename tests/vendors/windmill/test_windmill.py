"""The ``windmill`` backend against the Windmill emulator: settings, validation, the status table,
runs to completion, guarded cancels with a reason, a submission resent after a lost answer, batched
status reads, and secrets.

Lifecycle tests run on the emulator's real clock with short jobs and fast polling; tests that must
see one exact state drive the emulator's clock by hand instead.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from oqc_style_sdk import Sdk
from oqc_style_sdk._http import RetryPolicy, Secret
from oqc_style_sdk.backends.base import Observation, RunRef, RunSpec
from oqc_style_sdk.backends.windmill import (
    DEFAULT_CANCEL_REASON,
    WINDMILL_STATUS,
    WindmillBackend,
    observe_job,
    vendor_status_of,
)
from oqc_style_sdk.exceptions import (
    AuthenticationError,
    BackendUnavailableError,
    ConfigurationError,
    ForeignJobFileError,
    JobFailed,
    JobValidationError,
    NotFoundError,
    ServerError,
    UnknownTargetError,
)
from oqc_style_sdk.job import Job
from oqc_style_sdk.polling import PollingPolicy
from oqc_style_sdk.state import JobState
from oqc_style_sdk.testing.windmill import FAIL_SCRIPT, QUICK_SCRIPT, SLOW_SCRIPT, WindmillEmulator

#: A token easy to hunt for in logs, reprs, messages and files.
TOKEN = "wm-secret-token-3f9a51c7d2"
FAST = PollingPolicy(0.02, 0.2)
QUICK_RETRY = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05)
WS = "/api/w/demo"


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def started(**options: Any) -> WindmillEmulator:
    options.setdefault("job_duration_s", 0.05)
    options.setdefault("max_lifetime_s", 60)
    emulator = WindmillEmulator(token=TOKEN, **options)
    await emulator.start()
    return emulator


@pytest.fixture
async def emu() -> AsyncIterator[WindmillEmulator]:
    emulator = await started()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def manual_emu(clock: ManualClock) -> AsyncIterator[WindmillEmulator]:
    emulator = await started(clock=clock, job_duration_s=1.0, queue_s=0.5)
    try:
        yield emulator
    finally:
        await emulator.stop()


def windmill(emu: WindmillEmulator, **settings: Any) -> Sdk:
    settings.setdefault("retry", QUICK_RETRY)
    return Sdk(
        "windmill", polling=FAST, base_url=emu.base_url, token=emu.token, workspace=emu.workspace, **settings
    )


def requests_of(emu: WindmillEmulator) -> list[tuple[str, str]]:
    return [(entry.method, entry.path) for entry in emu.requests]


async def until_running(job: Job) -> None:
    for _ in range(500):
        if await job.refresh() is JobState.RUNNING:
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"{job!r} did not start running")


# -- settings -------------------------------------------------------------------------------------------


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WM_BASE_URL", "https://windmill.example.com/api/")
    monkeypatch.setenv("WM_TOKEN", TOKEN)
    monkeypatch.setenv("WM_WORKSPACE", "team-a")
    backend = WindmillBackend()
    assert backend.base_url == "https://windmill.example.com"  # the API URL works as the base URL
    assert backend.http.base_url == "https://windmill.example.com/api"
    assert backend.workspace == backend.default_target == "team-a"
    assert backend.identity() == {
        "backend": "windmill",
        "endpoint": "https://windmill.example.com",
        "workspace": "team-a",
    }
    assert (backend.batch_status, backend.idempotent_submit) == (True, True)
    assert repr(backend) == "<WindmillBackend base_url='https://windmill.example.com' workspace='team-a'>"


@pytest.mark.parametrize("missing", ["WM_BASE_URL", "WM_TOKEN", "WM_WORKSPACE"])
def test_a_missing_setting_names_its_variable(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    env = {"WM_BASE_URL": "https://wm.example.com", "WM_TOKEN": TOKEN, "WM_WORKSPACE": "demo"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(missing)
    with pytest.raises(ConfigurationError, match=missing):
        WindmillBackend()


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"workspace": "a/b"}, "workspace id"),
        ({"base_url": "http://windmill.example.com"}, "plain http"),
        ({"base_url": "ftp://windmill.example.com"}, "http"),
    ],
)
def test_bad_settings(settings: dict[str, str], match: str) -> None:
    base: dict[str, Any] = {"base_url": "https://wm.example.com", "token": TOKEN, "workspace": "demo"}
    with pytest.raises(ConfigurationError, match=match):
        WindmillBackend(**(base | settings))


def test_plain_http_may_be_allowed_for_a_trusted_network() -> None:
    backend = WindmillBackend(
        base_url="http://windmill.internal:8000",
        token=Secret(TOKEN),
        workspace="demo",
        allow_insecure_http=True,
    )
    assert backend.base_url == "http://windmill.internal:8000"


async def test_startup_checks_url_token_and_workspace(emu: WindmillEmulator) -> None:
    base = emu.credentials
    with pytest.raises(AuthenticationError, match="401") as wrong_token:
        async with Sdk("windmill", base_url=base["base_url"], token="not-it", workspace="demo"):
            pass
    assert "not-it" not in str(wrong_token.value)
    with pytest.raises(AuthenticationError, match="workspace other"):
        async with Sdk("windmill", base_url=base["base_url"], token=TOKEN, workspace="other"):
            pass
    async with windmill(emu) as sdk:
        assert isinstance(sdk.backend, WindmillBackend)
        assert sdk.backend.username == "admin"
    assert requests_of(emu)[-2:] == [("GET", "/api/version"), ("GET", f"{WS}/users/whoami")]


async def test_an_unreachable_server_fails_at_once() -> None:
    gone = await started()
    await gone.stop()  # its port is closed now
    with anyio.fail_after(10), pytest.raises(BackendUnavailableError, match="cannot reach Windmill"):
        async with Sdk("windmill", base_url=gone.base_url, token=TOKEN, workspace="demo"):
            pass


# -- programs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("program", "match"),
    [
        ("u/demo/quick", "a Windmill program is"),
        ({"args": {}}, "needs 'path'"),
        ({"path": "u/demo/quick", "code": "x"}, "either 'path'"),
        ({"path": "demo/quick"}, "a script path is like"),
        ({"path": "/u/demo/quick"}, "a script path is like"),
        ({"path": "u/demo/../x"}, "a script path is like"),
        ({"path": "u/demo/quick?x=1"}, "a script path is like"),
        ({"path": "u/demo/quick", "args": [1]}, "mapping"),
        ({"path": "u/demo/quick", "args": {"x": float("nan")}}, "JSON"),
        ({"path": "u/demo/quick", "args": {"x": object()}}, "JSON"),
        ({"path": "u/demo/quick", "timeout": 3}, "unknown program key"),
        ({"code": "  ", "language": "python3"}, "non-empty"),
        ({"code": "print(1)"}, "'language' must be one of"),
        ({"code": "print(1)", "language": "cobol"}, "'language' must be one of"),
    ],
)
async def test_bad_programs_are_refused_before_anything_is_sent(
    emu: WindmillEmulator, program: Any, match: str
) -> None:
    async with windmill(emu) as sdk:
        sent = len(emu.requests)
        with pytest.raises(JobValidationError, match=match):
            sdk.create_job(program=program)
        assert len(emu.requests) == sent


async def test_programs_config_and_target(emu: WindmillEmulator) -> None:
    async with windmill(emu) as sdk:
        job = sdk.create_job(program={"path": QUICK_SCRIPT})
        assert job.program == {"path": QUICK_SCRIPT, "args": {}}
        assert job.target == "demo"
        inline = sdk.create_job(program={"code": "echo hi", "language": "bash", "args": {"a": 1}})
        assert inline.program == {"code": "echo hi", "language": "bash", "args": {"a": 1}}
        tagged = sdk.create_job(
            program={"path": QUICK_SCRIPT}, config={"worker_tag": "gpu", "scheduled_in_secs": 0}
        )
        assert tagged.config == {"worker_tag": "gpu", "scheduled_in_secs": 0}
        with pytest.raises(UnknownTargetError):
            sdk.create_job(program={"path": QUICK_SCRIPT}, target="elsewhere")
        with pytest.raises(JobValidationError, match="unknown config"):
            sdk.create_job(program={"path": QUICK_SCRIPT}, config={"shots": 5})
        with pytest.raises(JobValidationError, match="scripts by path only"):
            sdk.create_job(program={"code": "x", "language": "bash"}, config={"scheduled_in_secs": 1})
        with pytest.raises(JobValidationError, match="worker_tag"):
            sdk.create_job(program={"path": QUICK_SCRIPT}, config={"worker_tag": ""})
        with pytest.raises(JobValidationError, match="scheduled_in_secs"):
            sdk.create_job(program={"path": QUICK_SCRIPT}, config={"scheduled_in_secs": -1})
        assert await sdk.list_targets() == [
            {"id": "demo", "name": "demo", "kind": "workspace", "url": emu.base_url}
        ]


# -- the status table -----------------------------------------------------------------------------------

#: One record per documented shape (VENDORS.md §4 and the spec's QueuedJob / CompletedJob).
SHAPES: list[tuple[str, dict[str, Any], JobState]] = [
    ("QueuedJob:waiting", {"type": "QueuedJob", "running": False, "canceled": False}, JobState.SUBMITTED),
    ("QueuedJob:running", {"type": "QueuedJob", "running": True, "canceled": False}, JobState.RUNNING),
    (
        "QueuedJob:waiting:canceling",
        {"type": "QueuedJob", "running": False, "canceled": True},
        JobState.SUBMITTED,
    ),
    (
        "QueuedJob:running:canceling",
        {"type": "QueuedJob", "running": True, "canceled": True, "canceled_reason": "r"},
        JobState.RUNNING,
    ),
    (
        "CompletedJob:success",
        {"type": "CompletedJob", "success": True, "canceled": False, "is_skipped": False, "result": 1},
        JobState.COMPLETED,
    ),
    (
        "CompletedJob:skipped",
        {"type": "CompletedJob", "success": True, "canceled": False, "is_skipped": True},
        JobState.COMPLETED,
    ),
    (
        "CompletedJob:failure",
        {
            "type": "CompletedJob",
            "success": False,
            "canceled": False,
            "result": {"error": {"name": "ValueError", "message": "bad x"}},
            "completed_at": "2026-01-02T03:04:05.000006Z",
        },
        JobState.FAILED,
    ),
    (
        "CompletedJob:canceled",
        {"type": "CompletedJob", "success": False, "canceled": True, "canceled_reason": "stop"},
        JobState.CANCELLED,
    ),
]


def test_every_documented_shape_is_walked() -> None:
    assert {name for name, _, _ in SHAPES} == set(WINDMILL_STATUS)


@pytest.mark.parametrize(("name", "record", "state"), SHAPES, ids=[name for name, _, _ in SHAPES])
def test_status_table(name: str, record: dict[str, Any], state: JobState) -> None:
    assert vendor_status_of(record) == name
    obs = observe_job(record)
    assert obs is not None
    assert (obs.state, obs.vendor_status) == (state, name)
    assert WINDMILL_STATUS[name] is state
    if name == "CompletedJob:failure":
        assert (obs.message, obs.code) == ("bad x", "ValueError")
        assert obs.ended_at is not None
        assert obs.ended_at.microsecond == 6
    if name == "CompletedJob:canceled":
        assert obs.message == "stop"


def test_lists_leave_out_the_type() -> None:
    assert vendor_status_of({"running": True, "canceled": False}, "QueuedJob") == "QueuedJob:running"
    assert vendor_status_of({"success": True, "canceled": False}, "CompletedJob") == "CompletedJob:success"


@pytest.mark.parametrize(
    "record",
    [
        {"type": "CompletedJob", "success": False, "canceled": False, "result": {"error": "boom"}},
        {"type": "CompletedJob", "success": False, "canceled": False, "result": None},
    ],
)
def test_failure_messages_of_other_shapes(record: dict[str, Any]) -> None:
    obs = observe_job(record)
    assert obs is not None
    assert obs.state is JobState.FAILED
    assert obs.message in ("boom", "the script failed")


async def test_an_undocumented_shape_keeps_the_job_active_and_is_logged_once(
    emu: WindmillEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    async with windmill(emu) as sdk:
        backend = sdk.backend
        assert isinstance(backend, WindmillBackend)
        caplog.set_level(logging.WARNING, logger="oqc_style_sdk.backends.windmill")
        for record in ({"type": "SuspendedJob"}, {"type": "SuspendedJob", "running": 1}, {"running": True}):
            for _ in range(2):
                obs = backend._observe(record, "job-1")
                assert obs.state is JobState.SUBMITTED
        assert obs.vendor_status == "<no type>"
        assert vendor_status_of({"type": "QueuedJob", "running": "yes"}) is None
        assert vendor_status_of({"type": "CompletedJob"}) is None
        warnings = [r for r in caplog.records if "undocumented" in r.getMessage()]
        assert len(warnings) == 2  # 'SuspendedJob' once, '<no type>' once


async def test_the_emulators_shapes_through_the_backend(
    manual_emu: WindmillEmulator, clock: ManualClock
) -> None:
    """Each shape the emulator produces, read by the backend: waiting, running, canceling,
    success, failure, canceled."""
    async with windmill(manual_emu) as sdk:
        backend = sdk.backend
        spec = backend.validate(RunSpec({"path": SLOW_SCRIPT}, None))
        slow = await backend.submit(spec, str(uuid.uuid4()))
        quick = await backend.submit(
            backend.validate(RunSpec({"path": QUICK_SCRIPT}, None)), str(uuid.uuid4())
        )
        fail = await backend.submit(backend.validate(RunSpec({"path": FAIL_SCRIPT}, None)), str(uuid.uuid4()))
        queued = await backend.submit(spec, str(uuid.uuid4()))
        with pytest.raises(NotFoundError):
            await backend.result(queued, spec)  # 404 until it completes
        await backend.cancel(queued, None)  # a queued job is completed as canceled at once
        assert (await backend.status(queued)).vendor_status == "CompletedJob:canceled"
        assert manual_emu.job_record(queued.task_id)["canceled_reason"] == DEFAULT_CANCEL_REASON
        assert (await backend.status(slow)).vendor_status == "QueuedJob:waiting"
        clock.advance(0.6)
        assert (await backend.status(slow)).vendor_status == "QueuedJob:running"
        manual_emu.cancel_delay_s = 10.0
        await backend.cancel(slow, "enough")
        assert (await backend.status(slow)).vendor_status == "QueuedJob:running:canceling"
        clock.advance(1.0)
        assert (await backend.status(quick)).vendor_status == "CompletedJob:success"
        failed = await backend.status(fail)
        assert (failed.vendor_status, failed.message, failed.code) == (
            "CompletedJob:failure",
            "demo failure",
            "Exception",
        )
        clock.advance(10.0)
        cancelled = await backend.status(slow)
        assert (cancelled.state, cancelled.message) == (JobState.CANCELLED, "enough")


# -- runs -----------------------------------------------------------------------------------------------


async def test_a_script_by_path_and_inline_code_run_to_completion(emu: WindmillEmulator) -> None:
    async with windmill(emu) as sdk:
        job = sdk.create_job(program={"path": QUICK_SCRIPT, "args": {"x": 1}}, fetch_diagnostics=True)
        outputs = await job.execute(timeout_s=10)
        assert job.completed
        assert job.result is not None
        assert job.result.data == {"ok": True, "args": {"x": 1}}
        assert outputs[0] is job.result
        assert job.vendor_status == "CompletedJob:success"
        assert job.task_id in emu.job_ids
        assert job.timings is not None
        assert {"created_at", "started_at", "completed_at", "duration_ms"} <= set(job.timings)
        assert job.metadata is not None
        assert (job.metadata["script_path"], job.metadata["job_kind"]) == (QUICK_SCRIPT, "script")

        inline = sdk.create_job(
            program={"code": "def main(x): return x", "language": "python3", "args": {"x": 2}}
        )
        await inline.execute(timeout_s=10)
        assert inline.result is not None
        assert inline.result.data["args"] == {"x": 2}
        assert inline.result.data["language"] == "python3"
    run = next(e for e in emu.requests if e.method == "POST" and e.path.endswith(QUICK_SCRIPT))
    assert run.query == {"job_id": job.task_id}
    assert run.body == {"x": 1}
    preview = next(e for e in emu.requests if e.path == f"{WS}/jobs/run/preview")
    assert preview.body == {"content": "def main(x): return x", "language": "python3", "args": {"x": 2}}
    assert preview.query == {"job_id": inline.task_id}


async def test_worker_tag_goes_on_the_wire(emu: WindmillEmulator) -> None:
    async with windmill(emu) as sdk:
        by_path = sdk.create_job(program={"path": QUICK_SCRIPT}, config={"worker_tag": "gpu"})
        inline = sdk.create_job(program={"code": "x", "language": "bash"}, config={"worker_tag": "gpu"})
        await by_path.execute(timeout_s=10)
        await inline.execute(timeout_s=10)
    assert emu.job_record(str(by_path.task_id))["tag"] == "gpu"
    assert emu.job_record(str(inline.task_id))["tag"] == "gpu"


async def test_a_failing_script_fails_the_job(emu: WindmillEmulator) -> None:
    async with windmill(emu) as sdk:
        job = sdk.create_job(program={"path": FAIL_SCRIPT})
        await job.execute(timeout_s=10)
        assert job.state is JobState.FAILED
        assert job.error is not None
        assert (job.error.message, job.error.code) == ("demo failure", "Exception")
        with pytest.raises(JobFailed, match="demo failure"):
            job.raise_for_status()
    assert not any("get_result" in path for _, path in requests_of(emu))


async def test_an_unknown_script_is_rejected(emu: WindmillEmulator) -> None:
    async with windmill(emu) as sdk:
        job = sdk.create_job(program={"path": "u/demo/missing"})
        await job.execute(timeout_s=10)
        assert job.state is JobState.FAILED
        assert job.error is not None
        assert "Script not found at name u/demo/missing" in job.error.message
    assert emu.job_ids == []


# -- cancel ---------------------------------------------------------------------------------------------


async def test_cancel_a_running_job_with_a_reason(emu: WindmillEmulator) -> None:
    async with windmill(emu) as sdk:
        job = sdk.create_job(program={"path": SLOW_SCRIPT})
        await job.submit()
        await until_running(job)
        assert await job.cancel(reason="no longer needed", timeout_s=10) is JobState.CANCELLED
        assert job.history[-1].reason == "no longer needed"  # type: ignore[attr-defined]
        assert job.vendor_status == "CompletedJob:canceled"
    cancel = next(e for e in emu.requests if e.path == f"{WS}/jobs_u/queue/cancel/{job.task_id}")
    assert cancel.body == {"reason": "no longer needed"}
    record = emu.job_record(str(job.task_id))
    assert (record["canceled"], record["canceled_reason"]) == (True, "no longer needed")


async def test_cancel_without_a_reason_sends_the_default(emu: WindmillEmulator) -> None:
    async with windmill(emu) as sdk:
        job = sdk.create_job(program={"path": SLOW_SCRIPT})
        await job.submit()
        await job.cancel(timeout_s=10)
        assert job.state is JobState.CANCELLED
    assert emu.job_record(str(job.task_id))["canceled_reason"] == DEFAULT_CANCEL_REASON


async def test_a_cancel_in_progress_stays_active_until_windmill_completes_it() -> None:
    emu = await started(queue_s=0.0, cancel_delay_s=0.2)
    seen: list[str] = []
    try:
        async with windmill(emu) as sdk:
            backend = sdk.backend
            original = backend.status

            async def recording(ref: RunRef) -> Observation:
                obs = await original(ref)
                seen.append(obs.vendor_status)
                return obs

            backend.status = recording  # type: ignore[method-assign]
            job = sdk.create_job(program={"path": SLOW_SCRIPT})
            await job.submit()
            await until_running(job)
            await job.cancel(reason="slowly", timeout_s=10)
            assert job.state is JobState.CANCELLED
    finally:
        await emu.stop()
    assert "QueuedJob:running:canceling" in seen  # read while Windmill was stopping it: still active
    assert seen[-1] == "CompletedJob:canceled"
    assert job.history[-1].reason == "slowly"  # type: ignore[attr-defined]


async def test_a_finished_job_keeps_its_result_when_cancelled(emu: WindmillEmulator) -> None:
    async with windmill(emu) as sdk:
        job = sdk.create_job(program={"path": QUICK_SCRIPT})
        await job.execute(timeout_s=10)
        assert await job.cancel(reason="too late") is JobState.COMPLETED
        assert job.result is not None
        backend = sdk.backend
        assert job.task_id is not None
        await backend.cancel(RunRef(job.task_id), "late")  # 200 "already completed": no error
    cancels = [path for method, path in requests_of(emu) if "/queue/cancel/" in path]
    assert len(cancels) == 1  # only the direct one: the job itself sent none


# -- one job, whatever the network does -----------------------------------------------------------------


@pytest.mark.parametrize("duplicate_job_id", ["reject", "return"])
@pytest.mark.parametrize("fault", ["lost answer", "dropped after processing"])
async def test_a_submit_retried_after_a_lost_response_yields_one_job(
    fault: str, duplicate_job_id: str
) -> None:
    emu = await started(duplicate_job_id=duplicate_job_id)
    try:
        run_path = f"{WS}/jobs/run/p/{QUICK_SCRIPT}"
        if fault == "lost answer":
            emu.fail_after_processing_next(1, status=503, path=run_path)
        else:
            emu.drop_next(1, path=run_path, after_processing=True)
        async with windmill(emu) as sdk:
            job = sdk.create_job(program={"path": QUICK_SCRIPT})
            await job.execute(timeout_s=10)
            assert job.completed
    finally:
        await emu.stop()
    assert emu.job_ids == [job.task_id]
    posts = [e for e in emu.requests if e.method == "POST"]
    assert len(posts) == 2
    assert posts[0].query == posts[1].query == {"job_id": job.task_id}
    if duplicate_job_id == "reject":
        assert posts[1].status == 400
        after = requests_of(emu)[requests_of(emu).index(("POST", run_path), 3) + 1]
        assert after == ("GET", f"{WS}/jobs_u/get/{job.task_id}")  # the adapter checks it is there
    else:
        assert posts[1].status == 201


async def test_a_resend_with_the_saved_key_finds_the_same_job(emu: WindmillEmulator) -> None:
    async with windmill(emu) as sdk:
        backend = sdk.backend
        spec = backend.validate(RunSpec({"path": SLOW_SCRIPT}, None))
        key = await backend.new_idempotency_key(spec)
        assert str(uuid.UUID(key)) == key
        assert key != await backend.new_idempotency_key(spec)
        first = await backend.submit(spec, key)
        second = await backend.submit(spec, key)
        assert first.task_id == second.task_id == key
        assert first.extra == {"workspace": "demo", "kind": "path"}
    assert emu.job_ids == [key]


async def test_a_genuine_bad_request_is_not_mistaken_for_a_resend(emu: WindmillEmulator) -> None:
    emu.fail_next(1, status=400, path=f"{WS}/jobs/run/p/", body="Bad request: args do not match")
    async with windmill(emu) as sdk:
        job = sdk.create_job(program={"path": QUICK_SCRIPT})
        await job.execute(timeout_s=10)
        assert job.state is JobState.FAILED
        assert job.error is not None
        assert "args do not match" in job.error.message
    assert emu.job_ids == []


# -- batched status reads -------------------------------------------------------------------------------


async def test_statuses_cost_one_request_per_tick_while_jobs_are_queued(
    manual_emu: WindmillEmulator, clock: ManualClock
) -> None:
    async with windmill(manual_emu) as sdk:
        backend = sdk.backend
        spec = backend.validate(RunSpec({"path": QUICK_SCRIPT}, None))
        refs = [await backend.submit(spec, str(uuid.uuid4())) for _ in range(5)]
        manual_emu.clear_log()
        readings = await backend.statuses(refs)
        assert {obs.vendor_status for obs in readings.values()} == {"QueuedJob:waiting"}  # type: ignore[union-attr]
        clock.advance(0.6)
        readings = await backend.statuses(refs)
        assert {obs.state for obs in readings.values()} == {JobState.RUNNING}  # type: ignore[union-attr]
        assert requests_of(manual_emu) == [("GET", f"{WS}/jobs/queue/list")] * 2
        assert manual_emu.requests[0].query == {"per_page": "100", "page": "1", "created_by": "admin"}
        clock.advance(1.0)
        manual_emu.clear_log()
        readings = await backend.statuses(refs)
        assert {obs.state for obs in readings.values()} == {JobState.COMPLETED}  # type: ignore[union-attr]
        # The jobs left the queue: one list, then each is read once, as it ends.
        assert requests_of(manual_emu)[0] == ("GET", f"{WS}/jobs/queue/list")
        assert sorted(requests_of(manual_emu)[1:]) == sorted(
            ("GET", f"{WS}/jobs_u/get/{r.task_id}") for r in refs
        )
        one = await backend.statuses(refs[:1])  # one job: one read of its own
        assert set(one) == {refs[0].task_id}


async def test_many_queued_jobs_are_read_a_page_at_a_time(manual_emu: WindmillEmulator) -> None:
    async with windmill(manual_emu) as sdk:
        backend = sdk.backend
        spec = backend.validate(RunSpec({"path": SLOW_SCRIPT}, None))
        refs = [await backend.submit(spec, str(uuid.uuid4())) for _ in range(150)]
        manual_emu.clear_log()
        readings = await backend.statuses(refs)
        assert len(readings) == 150
        assert all(
            not isinstance(obs, BaseException) and obs.state is JobState.SUBMITTED
            for obs in readings.values()
        )
        assert [entry.query["page"] for entry in manual_emu.requests] == ["1", "2"]
        manual_emu.clear_log()
        await backend.statuses(refs[-3:])  # the newest come first: one page finds them
        assert [entry.query["page"] for entry in manual_emu.requests] == ["1"]
        manual_emu.clear_log()
        await backend.statuses(refs[:3])  # the oldest are on the second page
        assert [entry.query["page"] for entry in manual_emu.requests] == ["1", "2"]


async def test_without_a_queue_list_jobs_are_read_one_by_one(manual_emu: WindmillEmulator) -> None:
    async with windmill(manual_emu) as sdk:
        backend = sdk.backend
        spec = backend.validate(RunSpec({"path": SLOW_SCRIPT}, None))
        refs = [await backend.submit(spec, str(uuid.uuid4())) for _ in range(3)]
        manual_emu.fail_next(1, status=404, path=f"{WS}/jobs/queue/list")
        manual_emu.clear_log()
        assert len(await backend.statuses(refs)) == 3
        await backend.statuses(refs)
        paths = [path for _, path in requests_of(manual_emu)]
        assert paths.count(f"{WS}/jobs/queue/list") == 1  # tried once, then never again
        assert sum("/jobs_u/get/" in path for path in paths) == 6


async def test_a_failed_list_read_is_handed_to_the_waiters(manual_emu: WindmillEmulator) -> None:
    async with windmill(manual_emu, retry=RetryPolicy(max_attempts=1)) as sdk:
        backend = sdk.backend
        spec = backend.validate(RunSpec({"path": SLOW_SCRIPT}, None))
        refs = [await backend.submit(spec, str(uuid.uuid4())) for _ in range(2)]
        manual_emu.fail_next(1, status=503, path=f"{WS}/jobs/queue/list")
        with pytest.raises(ServerError):
            await backend.statuses(refs)
        assert len(await backend.statuses(refs)) == 2  # the list is still used afterwards
        assert manual_emu.count("GET", f"{WS}/jobs/queue/list") == 2


async def test_many_jobs_waited_on_together_share_the_list_reads(emu: WindmillEmulator) -> None:
    async with windmill(emu) as sdk:
        jobs = sdk.create_job(program=[{"path": QUICK_SCRIPT, "args": {"i": i}} for i in range(12)])
        await jobs.execute(timeout_s=20)
        assert jobs.state is JobState.COMPLETED
    paths = [path for method, path in requests_of(emu) if method == "GET"]
    single_reads = sum("/jobs_u/get/" in path for path in paths)
    assert paths.count(f"{WS}/jobs/queue/list") >= 1
    assert single_reads <= 2 * 12  # about one each (as it ends), not one per job per tick


# -- saved jobs -----------------------------------------------------------------------------------------


async def test_a_saved_running_job_is_followed_from_another_sdk(
    emu: WindmillEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "job.json"
    async with windmill(emu) as sdk:
        job = sdk.create_job(program={"path": SLOW_SCRIPT, "args": {"n": 1}})
        await job.submit()
        await job.save(path)
    text = path.read_text()
    assert TOKEN not in text
    assert job.task_id is not None
    assert job.task_id in text
    async with windmill(emu) as other:
        loaded = await other.load(path)
        assert isinstance(loaded, Job)
        assert loaded.task_id == job.task_id
        assert await loaded.cancel(reason="from elsewhere", timeout_s=10) is JobState.CANCELLED
    other_ws = WindmillEmulator(token=TOKEN, workspace="other", max_lifetime_s=60)
    await other_ws.start()
    try:
        async with windmill(other_ws) as third:
            with pytest.raises(ForeignJobFileError):
                await third.load(path)
    finally:
        await other_ws.stop()


# -- secrets --------------------------------------------------------------------------------------------


async def test_the_token_never_shows(emu: WindmillEmulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    with pytest.raises(AuthenticationError) as refused:
        async with Sdk("windmill", base_url=emu.base_url, token=TOKEN + "x", workspace="demo"):
            pass
    errors.append(refused.value)
    emu.fail_next(1, status=500, path=f"{WS}/jobs/run/p/", body=f"Internal: token {TOKEN} leaked")
    async with windmill(emu, retry=RetryPolicy(max_attempts=1)) as sdk:
        job = sdk.create_job(program={"path": QUICK_SCRIPT})
        with pytest.raises(ServerError) as server:
            await job.execute(timeout_s=10)
        errors.append(server.value)
        await job.execute(timeout_s=10)
        assert job.completed
        backend = sdk.backend
        assert isinstance(backend, WindmillBackend)
        shown = [repr(sdk), repr(backend), repr(backend.http), repr(job), str(backend.identity())]
    shown += [str(error) for error in errors] + [repr(error) for error in errors]
    shown += [caplog.text, repr(emu.requests)]
    for text in shown:
        assert TOKEN not in text
    assert "***" in str(server.value)
