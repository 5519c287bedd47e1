"""``sdk.job(task_id)`` and ``sdk.jobs(...)``: finding, following and listing runs made elsewhere.

For every HTTP vendor: a run submitted by one Sdk (and, where the vendor's client is a dev extra, by
that client, unchanged) is found by a fresh Sdk, waited on, read, listed, and — while running —
cancelled. Listings are lazy (pages fetched only as they are used) and their filters are never
silently ignored. Every test runs against a real emulator on 127.0.0.1, bounded by ``fail_after``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from oqc_style_sdk import JobState, Sdk
from oqc_style_sdk.exceptions import JobNotFoundError, JobValidationError, UnknownTargetError
from oqc_style_sdk.testing.emulator import Emulator, start_emulator
from oqc_style_sdk.testing.oqc import LUCY_QPU_ID, SIMULATOR_QPU_ID, OqcEmulator
from oqc_style_sdk.testing.windmill import QUICK_SCRIPT, SLOW_SCRIPT
from tests.vendors.databricks.test_databricks import CLUSTER, NOTEBOOK

PROGRAM = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'


@asynccontextmanager
async def emulator(vendor: str, **options: Any) -> AsyncIterator[Emulator]:
    options.setdefault("job_duration_s", 0.05)
    options.setdefault("max_lifetime_s", 120.0)
    async with start_emulator(vendor, **options) as emu:
        yield emu


def settings(emu: Emulator) -> dict[str, Any]:
    return dict(emu.credentials)


async def listed(sdk: Sdk, **filters: Any) -> list[Any]:
    return [job async for job in sdk.jobs(**filters)]


async def submitted_elsewhere(emu: Emulator, **job: Any) -> str:
    """The task id of a job another Sdk (another process, as far as the next one knows) submitted."""
    async with Sdk(emu.vendor, **settings(emu)) as first:
        made = first.create_job(**job)
        await made.submit()
    assert made.task_id is not None
    return made.task_id


# ------------------------------------------------------------------------------------------- OQC
async def test_oqc_a_task_of_one_sdk_is_found_waited_on_and_listed_by_a_fresh_one() -> None:
    with anyio.fail_after(60):
        async with emulator("oqc", job_duration_s=0.3) as emu:
            task_id = await submitted_elsewhere(
                emu, program=PROGRAM, target=LUCY_QPU_ID, config={"shots": 300}, tag="exp-1"
            )
            async with Sdk("oqc", **settings(emu)) as fresh:
                found = await fresh.job(task_id)
                assert found.task_id == task_id
                assert found.target == LUCY_QPU_ID
                assert found.tag == "exp-1"
                assert found.config == {"shots": 300}
                assert found.program is None  # OQC's API does not return a task's program
                assert found.state in (JobState.SUBMITTED, JobState.RUNNING)
                await found.wait(timeout_s=30)
                assert found.state is JobState.COMPLETED
                assert sum(found.result.data["c"].values()) == 300  # type: ignore[union-attr]
                assert len(found.history) == 1
                listed_ids = [job.task_id for job in await listed(fresh)]
                assert task_id in listed_ids
                # Re-running needs the program, which OQC never returns: said so, typed.
                with pytest.raises(JobValidationError, match="program is not known"):
                    await found.execute(timeout_s=10)
                found.reconfigure(program=PROGRAM)
                await found.execute(timeout_s=30)
                assert found.completed
                assert found.run == 2


async def test_oqc_a_task_of_the_published_client_is_found_cancelled_and_listed() -> None:
    def schedule(url: str, token: str) -> tuple[str, str]:
        from qcaas_client.client import OQCClient, QPUTask  # type: ignore[import-untyped]

        client = OQCClient(url=url, authentication_token=token)
        (done,) = client.execute_tasks(QPUTask(program=PROGRAM, qpu_id=LUCY_QPU_ID), qpu_id=LUCY_QPU_ID)
        (running,) = client.schedule_tasks(QPUTask(program=PROGRAM, qpu_id=SIMULATOR_QPU_ID))
        return str(done.id), str(running.task_id)

    with anyio.fail_after(60):
        async with emulator("oqc", job_duration_s=0.2) as emu:
            assert isinstance(emu, OqcEmulator)
            done_id, running_id = await anyio.to_thread.run_sync(schedule, emu.base_url, emu.token)
            emu.job_duration_s = 60.0
            await emu.set_status(running_id, "RUNNING")
            async with Sdk("oqc", **settings(emu)) as sdk:
                done = await sdk.job(done_id)
                assert done.state is JobState.COMPLETED
                assert sum(done.result.data["c"].values()) == 1000  # type: ignore[union-attr]
                running = await sdk.job(running_id)
                assert running.target == SIMULATOR_QPU_ID
                assert running.state is JobState.RUNNING
                await emu.set_status(running_id, None)
                assert await running.cancel(timeout_s=10) is JobState.CANCELLED
                assert await emu.status_of(running_id) == "CANCELLED"
                jobs = await listed(sdk)
                assert [j.task_id for j in jobs][:2] == [running_id, done_id]  # newest first
                only_lucy = await listed(sdk, target=LUCY_QPU_ID)
                assert [j.task_id for j in only_lucy] == [done_id]
                cancelled = await listed(sdk, state="cancelled")
                assert [j.task_id for j in cancelled] == [running_id]


async def test_oqc_bad_task_ids() -> None:
    with anyio.fail_after(30):
        async with emulator("oqc") as emu, Sdk("oqc", **settings(emu)) as sdk:
            sent = len(emu.requests)
            with pytest.raises(JobValidationError, match="UUID"):
                await sdk.job("not-a-uuid")
            assert len(emu.requests) == sent  # refused before any request
            with pytest.raises(JobNotFoundError, match="oqc") as caught:
                await sdk.job("0f4c2d9e-0000-4000-8000-000000000000")
            assert caught.value.backend == "oqc"
            with pytest.raises(UnknownTargetError):
                await listed(sdk, target="qpu:nowhere")
            with pytest.raises(JobValidationError, match="unknown state"):
                sdk.jobs(state="sleeping")
            with pytest.raises(JobValidationError, match="limit"):
                sdk.jobs(limit=0)


async def test_oqc_listing_is_lazy_and_paged_newest_first() -> None:
    with anyio.fail_after(60):
        async with emulator("oqc", simulate=False) as emu, Sdk("oqc", **settings(emu)) as sdk:
            composite = sdk.create_job(program=[PROGRAM] * 25, target=LUCY_QPU_ID, tag="batch")
            await composite.execute(timeout_s=30)
            ids = [child.task_id for child in composite]
            before = len(emu.requests)
            iterator = sdk.jobs(target=LUCY_QPU_ID, page_size=10)
            assert len(emu.requests) == before  # nothing fetched until asked
            first = await anext(iterator)
            assert len(emu.requests) == before + 1
            assert first.state is JobState.COMPLETED
            rest = [job async for job in iterator]
            assert len(emu.requests) == before + 3  # pages of 10, 10 and 5
            got = [first.task_id] + [job.task_id for job in rest]
            assert sorted(got) == sorted(ids)
            assert len(await listed(sdk, target=LUCY_QPU_ID, limit=3, page_size=3)) == 3
            assert await listed(sdk, tag="other") == []
            assert len(await listed(sdk, tag="batch", since=timedelta(hours=1))) == 25
            assert await listed(sdk, since=datetime.now(UTC) + timedelta(hours=1)) == []
            # An ended job from a listing reads its result when first waited on.
            assert first.result is None
            await first.wait(timeout_s=10)
            assert first.result is not None
            assert len(first.history) == 1


async def test_an_attached_job_saves_and_loads(tmp_path: Any) -> None:
    with anyio.fail_after(60):
        async with emulator("oqc") as emu:
            async with Sdk("oqc", **settings(emu)) as sdk:
                made = sdk.create_job(program=PROGRAM, target=LUCY_QPU_ID)
                await made.execute(timeout_s=30)
            async with Sdk("oqc", **settings(emu)) as sdk:
                (job,) = await listed(sdk, limit=1)
                path = await job.save(tmp_path / "job.json")
                saved = json.loads(path.read_text())
                assert saved["jobs"][0]["state"] == "COMPLETED"
                loaded = await sdk.load(path)
                assert loaded.result is not None  # type: ignore[union-attr]


async def test_local_jobs_are_the_jobs_of_this_sdk() -> None:
    with anyio.fail_after(60):
        async with Sdk() as sdk:
            one = sdk.create_job(program=PROGRAM, tag="a")
            two = sdk.create_job(program=[PROGRAM, PROGRAM])
            await one.execute(timeout_s=30)
            jobs = await listed(sdk)
            assert jobs == [two[1], two[0], one]
            assert await listed(sdk, state="completed") == [one]
            assert await listed(sdk, tag="a") == [one]
            assert one.task_id is not None
            assert await sdk.job(one.task_id) is one
            with pytest.raises(JobNotFoundError, match="local"):
                await sdk.job("nope")
        async with Sdk() as other:
            assert await listed(other) == []


# ------------------------------------------------------------------------------------ Databricks
async def test_databricks_a_run_of_one_sdk_is_found_by_a_fresh_one_and_run_again() -> None:
    with anyio.fail_after(60):
        async with emulator("databricks", job_duration_s=0.2, pending_s=0) as emu:
            task_id = await submitted_elsewhere(emu, program=NOTEBOOK)
            async with Sdk("databricks", **settings(emu)) as fresh:
                found = await fresh.job(task_id)
                assert found.program == NOTEBOOK  # the run's spec, as runs/get gives it
                await found.wait(timeout_s=30)
                assert found.state is JobState.COMPLETED
                assert found.result is not None
                assert task_id in [job.task_id for job in await listed(fresh)]
                await found.execute(timeout_s=30)  # the spec is known: it runs again
                assert found.run == 2
                assert found.task_id != task_id
                assert found.completed


async def test_databricks_a_run_of_the_official_client_is_found_listed_and_cancelled() -> None:
    def submit(host: str, token: str) -> int:
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.service import jobs

        client = WorkspaceClient(host=host, token=token, auth_type="pat")
        waiter = client.jobs.submit(
            run_name="official",
            tasks=[
                jobs.SubmitTask(
                    task_key="main",
                    existing_cluster_id=CLUSTER,
                    notebook_task=jobs.NotebookTask(notebook_path="/Users/me@example.com/nb"),
                )
            ],
        )
        return int(waiter.run_id)

    with anyio.fail_after(60):
        async with emulator("databricks", job_duration_s=60, pending_s=0, cancel_duration_s=0.1) as emu:
            run_id = await anyio.to_thread.run_sync(submit, emu.base_url, emu.token)
            async with Sdk("databricks", **settings(emu)) as sdk:
                found = await sdk.job(str(run_id))
                assert found.state is JobState.RUNNING
                assert found.program["run_name"] == "official"
                active = await listed(sdk, state="active")
                assert [job.task_id for job in active] == [str(run_id)]
                assert await found.cancel(timeout_s=20) is JobState.CANCELLED
                assert await listed(sdk, state="active") == []
                (ended,) = await listed(sdk, state="cancelled")
                assert ended.task_id == str(run_id)


async def test_databricks_bad_ids_and_filters() -> None:
    with anyio.fail_after(30):
        async with emulator("databricks") as emu, Sdk("databricks", **settings(emu)) as sdk:
            sent = len(emu.requests)
            with pytest.raises(JobValidationError, match="whole number"):
                await sdk.job("run-7")
            with pytest.raises(JobValidationError, match="tag"):
                sdk.jobs(tag="x")  # Databricks runs carry no tag: refused, not ignored
            assert len(emu.requests) == sent
            with pytest.raises(JobNotFoundError, match="databricks"):
                await sdk.job("987654321")


async def test_databricks_listing_pages_of_25_lazily() -> None:
    with anyio.fail_after(60):
        async with (
            emulator("databricks", job_duration_s=0.05, pending_s=0) as emu,
            Sdk("databricks", **settings(emu)) as sdk,
        ):
            composite = sdk.create_job(program=[NOTEBOOK] * 30)
            await composite.submit()
            before = len(emu.requests)
            jobs = await listed(sdk, page_size=100)
            assert len(jobs) == 30
            assert len(emu.requests) - before == 2  # 25 + 5
            assert {job.task_id for job in jobs} == {child.task_id for child in composite}


# -------------------------------------------------------------------------------------- Windmill
async def test_windmill_a_job_of_one_sdk_is_found_by_a_fresh_one_and_run_again() -> None:
    program = {"path": QUICK_SCRIPT, "args": {"x": 3}}
    with anyio.fail_after(60):
        async with emulator("windmill", job_duration_s=0.2) as emu:
            task_id = await submitted_elsewhere(emu, program=program)
            async with Sdk("windmill", **settings(emu)) as fresh:
                found = await fresh.job(task_id)
                assert found.program == program
                await found.wait(timeout_s=30)
                assert found.result.data == {"ok": True, "args": {"x": 3}}  # type: ignore[union-attr]
                assert task_id in [job.task_id for job in await listed(fresh)]
                await found.execute(timeout_s=30)
                assert found.run == 2
                assert found.completed


async def test_windmill_a_job_of_the_official_client_is_found_listed_and_cancelled() -> None:
    def run(base_url: str, token: str, workspace: str) -> tuple[str, str]:
        from wmill import Windmill

        client = Windmill(base_url=base_url, token=token, workspace=workspace)  # type: ignore[no-untyped-call]
        try:
            quick = client.run_script_by_path_async(QUICK_SCRIPT, args={"x": 1})
            client.wait_job(quick, timeout=30, cleanup=False)
            slow = client.run_script_by_path_async(SLOW_SCRIPT, args={})
        finally:
            client.client.close()
        return str(quick), str(slow)

    with anyio.fail_after(60):
        async with emulator("windmill", job_duration_s=0.1, slow_duration_s=60) as emu:
            quick, slow = await anyio.to_thread.run_sync(run, emu.base_url, emu.token, emu.workspace)  # type: ignore[attr-defined]
            async with Sdk("windmill", **settings(emu)) as sdk:
                done = await sdk.job(quick)
                assert done.completed
                assert done.result.data == {"ok": True, "args": {"x": 1}}  # type: ignore[union-attr]
                assert [job.task_id for job in await listed(sdk)] == [slow, quick]
                recent = await listed(sdk, since=timedelta(minutes=5))
                assert [job.task_id for job in recent] == [slow, quick]
                assert await listed(sdk, since=datetime.now(UTC) + timedelta(minutes=5)) == []
                running = await sdk.job(slow)
                assert running.active
                assert await running.cancel(timeout_s=20) is JobState.CANCELLED
                (cancelled,) = await listed(sdk, state="cancelled")
                assert cancelled.task_id == slow


async def test_windmill_bad_ids_and_filters() -> None:
    with anyio.fail_after(30):
        async with emulator("windmill") as emu, Sdk("windmill", **settings(emu)) as sdk:
            with pytest.raises(JobValidationError, match="UUID"):
                await sdk.job("u/demo/quick")
            with pytest.raises(JobValidationError, match="tag"):
                sdk.jobs(tag="x")
            with pytest.raises(JobNotFoundError, match="windmill"):
                await sdk.job("0f4c2d9e-0000-4000-8000-000000000000")


# ---------------------------------------------------------------------------------- IBM Quantum
IBM_DEVICE = "ibm_fez"


async def test_ibm_a_job_of_one_sdk_is_found_listed_run_again_and_cancelled() -> None:
    with anyio.fail_after(90):
        async with emulator("ibm_quantum", job_duration_s=0.2) as emu:
            task_id = await submitted_elsewhere(
                emu, program=PROGRAM, target=IBM_DEVICE, config={"shots": 64}, tag="t1"
            )
            async with Sdk("ibm_quantum", **settings(emu)) as fresh:
                found = await fresh.job(task_id)
                assert (found.target, found.tag, found.config) == (IBM_DEVICE, "t1", {"shots": 64})
                assert "OPENQASM 3" in found.program  # the sampler's PUB, as IBM keeps it
                await found.wait(timeout_s=30)
                assert found.completed
                assert sum(next(iter(found.result.data.values())).values()) == 64  # type: ignore[union-attr]
                assert [job.task_id for job in await listed(fresh, tag="t1")] == [task_id]
                assert await listed(fresh, tag="other") == []
                emu.job_duration_s = 60.0
                await found.submit()  # the program is known: it runs again
                again = found.task_id
                assert again != task_id
                (active,) = await listed(fresh, state="active", target=IBM_DEVICE)
                assert active.task_id == again
                assert await active.cancel(timeout_s=20) is JobState.CANCELLED
            async with Sdk("ibm_quantum", **settings(emu)) as third:
                with pytest.raises(JobValidationError, match="IBM Quantum job id"):
                    await third.job("no/such")
                with pytest.raises(JobNotFoundError, match="ibm_quantum"):
                    await third.job("d0000000000000000000")


# -------------------------------------------------------------------------------- Azure Quantum
QUANTINUUM = "quantinuum.sim.h1-1sc"
IONQ = "ionq.simulator"


async def test_azure_a_job_of_one_sdk_is_found_read_listed_run_again_and_cancelled() -> None:
    with anyio.fail_after(90):
        async with emulator("azure_quantum", job_duration_s=0.2) as emu:
            async with Sdk("azure_quantum", **settings(emu)) as first:
                made = first.create_job(program=PROGRAM, target=QUANTINUUM, config={"shots": 50}, tag="az")
                other = first.create_job(program=PROGRAM, target=IONQ, config={"shots": 20})
                await made.submit()
                await other.execute(timeout_s=30)
                task_id = made.task_id
                assert task_id is not None
            async with Sdk("azure_quantum", **settings(emu)) as fresh:
                found = await fresh.job(task_id.upper())  # GUIDs in either case
                assert (found.target, found.tag, found.config) == (QUANTINUUM, "az", {"shots": 50})
                assert found.program == PROGRAM  # read back from the input blob
                await found.wait(timeout_s=30)
                assert found.completed
                assert sum(found.result.data["c"].values()) == 50  # type: ignore[union-attr]
                ionq = await fresh.job(other.task_id or "")
                assert ionq.completed
                assert ionq.program is None  # IonQ's input is its circuit JSON
                with pytest.raises(JobValidationError, match="not OpenQASM"):
                    await ionq.execute(timeout_s=10)
                assert [j.task_id for j in await listed(fresh)] == [other.task_id, task_id]
                assert [j.task_id for j in await listed(fresh, target=IONQ)] == [other.task_id]
                assert [j.task_id for j in await listed(fresh, tag="az")] == [task_id]
                emu.job_duration_s = 60.0
                await found.submit()
                (active,) = await listed(fresh, state="active")
                assert active.task_id == found.task_id
                assert await active.cancel(timeout_s=20) is JobState.CANCELLED
                with pytest.raises(JobValidationError, match="GUID"):
                    await fresh.job("job-1")
                with pytest.raises(JobNotFoundError, match="azure_quantum"):
                    await fresh.job("0f4c2d9e-0000-4000-8000-000000000000")


# ------------------------------------------------------------------ a target that cannot run jobs
async def test_an_inactive_qpu_is_refused_at_create_job_with_its_next_window() -> None:
    from oqc_style_sdk import TargetUnavailableError
    from oqc_style_sdk.testing.oqc import INACTIVE_QPU_ID

    window = datetime(2030, 1, 2, 9, 30, tzinfo=UTC)
    with anyio.fail_after(60):
        async with emulator("oqc") as emu:
            assert isinstance(emu, OqcEmulator)
            await emu.set_qpu_active(INACTIVE_QPU_ID, False, next_window=window)
            async with Sdk("oqc", **settings(emu)) as sdk:
                sent = len(emu.requests)
                with pytest.raises(TargetUnavailableError, match="INACTIVE") as refused:
                    sdk.create_job(program=PROGRAM, target=INACTIVE_QPU_ID)
                assert refused.value.next_window == window
                assert "2030-01-02 09:30" in str(refused.value)
                assert len(emu.requests) == sent  # nothing sent
                queued = sdk.create_job(program=PROGRAM, target=INACTIVE_QPU_ID, queue=True)
                await queued.submit()
                assert queued.state is JobState.SUBMITTED  # held by OQC until the QPU is back
                await emu.set_qpu_active(INACTIVE_QPU_ID, True)
                await queued.wait(timeout_s=30)
                assert queued.completed


async def test_offline_ibm_devices_and_unavailable_azure_targets_are_refused_unless_queued() -> None:
    import dataclasses

    from oqc_style_sdk import TargetUnavailableError
    from oqc_style_sdk.testing.azure_quantum import DEFAULT_PROVIDERS
    from oqc_style_sdk.testing.ibm_quantum import DEFAULT_DEVICES, IbmDevice

    devices = (*DEFAULT_DEVICES, IbmDevice("ibm_gone", 27, status="offline"))
    ionq = DEFAULT_PROVIDERS[0]
    down = dataclasses.replace(
        ionq, targets=tuple(dataclasses.replace(t, availability="Unavailable") for t in ionq.targets)
    )
    with anyio.fail_after(60):
        async with (
            emulator("ibm_quantum", devices=devices) as emu,
            Sdk("ibm_quantum", **settings(emu)) as sdk,
        ):
            with pytest.raises(TargetUnavailableError, match="offline"):
                sdk.create_job(program=PROGRAM, target="ibm_gone")
            sdk.create_job(program=PROGRAM, target="ibm_gone", queue=True)
            sdk.create_job(program=PROGRAM, target=IBM_DEVICE)  # online: fine
        async with (
            emulator("azure_quantum", providers=(down, *DEFAULT_PROVIDERS[1:])) as emu,
            Sdk("azure_quantum", **settings(emu)) as sdk,
        ):
            with pytest.raises(TargetUnavailableError, match="Unavailable") as refused:
                sdk.create_job(program=[PROGRAM, PROGRAM], target=[QUANTINUUM, IONQ])
            assert "child 1" in str(refused.value.__notes__)
            sdk.create_job(program=PROGRAM, target=IONQ, queue=True)
            with pytest.raises(JobValidationError, match="queue must be"):
                sdk.create_job(program=PROGRAM, target=IONQ, queue="yes")  # type: ignore[call-overload]


async def test_a_saved_found_job_without_its_program_still_refuses_to_rerun(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with emulator("oqc") as emu:
            task_id = await submitted_elsewhere(emu, program=PROGRAM, target=LUCY_QPU_ID)
            async with Sdk("oqc", **settings(emu)) as sdk:
                found = await sdk.job(task_id)
                await found.wait(timeout_s=30)
                path = await found.save(tmp_path / "found.json")
            async with Sdk("oqc", **settings(emu)) as sdk:
                loaded = await sdk.load(path)
                sent = len(emu.requests)
                with pytest.raises(JobValidationError, match="program is not known"):
                    await loaded.execute(timeout_s=10)
                assert len(emu.requests) == sent  # nothing sent


async def test_a_listing_whose_vendor_repeats_its_page_token_stops_with_an_error() -> None:
    from types import SimpleNamespace

    from oqc_style_sdk.backends import _databricks_runs
    from oqc_style_sdk.backends.base import Observation, RunQuery
    from oqc_style_sdk.exceptions import ProtocolError

    page = {"runs": [{"run_id": 1, "run_type": "SUBMIT_RUN", "tasks": []}], "has_more": True}
    page["next_page_token"] = "same"

    async def get(path: str, params: Any) -> Any:
        return SimpleNamespace(json=lambda: page)

    backend: Any = SimpleNamespace(_get=get)
    seen: list[str] = []

    async def drain() -> None:
        observe = lambda key, run: Observation(JobState.RUNNING, "RUNNING")  # noqa: E731
        async for found in _databricks_runs.list_runs(backend, RunQuery(), observe):
            seen.append(found.ref.task_id)

    with pytest.raises(ProtocolError, match="same page token"):
        await drain()
    assert seen == ["1", "1"]  # the first page, the page its token led to, then no more


async def test_found_runs_of_existing_jobs_and_vendor_side_filters() -> None:
    """A Databricks run of an existing job comes back as {"job_id", "job_parameters"}; state and
    since filters reach IBM, Azure and Databricks as their own query parameters."""
    with anyio.fail_after(90):
        async with emulator("databricks", job_duration_s=0.05, pending_s=0) as emu:
            program = {"job_id": 101, "job_parameters": {"date": "2026-12-01"}}
            task_id = await submitted_elsewhere(emu, program=program)
            async with Sdk("databricks", **settings(emu)) as sdk:
                found = await sdk.job(task_id)
                assert found.program == program
                await found.wait(timeout_s=30)
                (done,) = await listed(sdk, state=["completed", JobState.FAILED], since=timedelta(hours=1))
                assert done.task_id == task_id
                assert await listed(sdk, state=JobState.RUNNING) == []
            asked = [r.query for r in emu.requests if r.path.endswith("runs/list")]
            assert any(q.get("completed_only") == "true" and "start_time_from" in q for q in asked)
            assert any(q.get("active_only") == "true" for q in asked)
        async with emulator("ibm_quantum") as emu:
            task_id = await submitted_elsewhere(emu, program=PROGRAM, target=IBM_DEVICE)
            async with Sdk("ibm_quantum", **settings(emu)) as sdk:
                await (await sdk.job(task_id)).wait(timeout_s=30)
                (done,) = await listed(sdk, state="ended", since=timedelta(hours=1))
                assert done.task_id == task_id
            asked = [r.query for r in emu.requests if r.path.endswith("/jobs") and r.method == "GET"]
            assert any(q.get("pending") == "false" and "created_after" in q for q in asked)
        async with emulator("azure_quantum") as emu:
            task_id = await submitted_elsewhere(emu, program=PROGRAM, target=QUANTINUUM)
            async with Sdk("azure_quantum", **settings(emu)) as sdk:
                await (await sdk.job(task_id)).wait(timeout_s=30)
                (done,) = await listed(sdk, state="completed", since=timedelta(hours=1), target=QUANTINUUM)
                assert done.task_id == task_id
                assert await listed(sdk, state="active") == []
            asked = [r.query.get("filter", "") for r in emu.requests if r.path.endswith("/jobs")]
            assert any(
                "CreationTime ge" in f and "Status eq 'Succeeded'" in f and "Target eq" in f for f in asked
            )
