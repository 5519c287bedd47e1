"""The four vendor seeds, verbatim, run by the Arazzo executor against the SDK's vendor emulators.

Each test makes a job on the emulator over plain HTTP (as any client would), puts it in the state a
branch needs, runs the seed with ``servers=`` pointing at the emulator, and asserts the workflow's
outputs, its branch trace and the emulator's request log.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import aiohttp
import anyio
import pytest

from oqc_style_sdk.arazzo import Pacing, run_workflow
from oqc_style_sdk.testing.azure_quantum import AzureQuantumEmulator
from oqc_style_sdk.testing.databricks import DatabricksEmulator
from oqc_style_sdk.testing.emulator import Emulator
from oqc_style_sdk.testing.ibm_quantum import IAM_GRANT_TYPE, IbmQuantumEmulator
from oqc_style_sdk.testing.windmill import QUICK_SCRIPT, SLOW_SCRIPT, WindmillEmulator
from tests.common import DATA

DATA = DATA / "arazzo"
IBM_SEED = DATA / "000_d47212bd6c163dd2.txt"
AZURE_SEED = DATA / "001_d120ef2a5adae25b.txt"
DATABRICKS_SEED = DATA / "002_aaeb209fff7697ab.txt"
WINDMILL_SEED = DATA / "004_89234a8ac85df44d.txt"

FAST = Pacing(initial_s=0.02, max_s=0.1)
BOUND_S = 15
#: An ISA circuit (ibm_fez's native gates on a physical qubit), so the job runs as a real one would.
QASM3 = 'OPENQASM 3.0; include "stdgates.inc"; bit[1] c; rz(pi/2) $0; sx $0; rz(pi/2) $0; c[0] = measure $0;'


async def call(method: str, url: str, **kw: Any) -> Any:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kw) as response:
        assert response.status < 300, await response.text()
        if response.content_type == "application/json":
            return await response.json()
        return await response.text()


def log(emu: Emulator, prefix: str = "") -> list[tuple[str, str, int | None]]:
    return [(r.method, r.path.removeprefix(prefix), r.status) for r in emu.requests]


# -- IBM Quantum ------------------------------------------------------------------------------------


async def ibm_job(emu: IbmQuantumEmulator) -> tuple[str, str]:
    token = (await call("POST", emu.iam_url, data={"grant_type": IAM_GRANT_TYPE, "apikey": emu.api_key}))[
        "access_token"
    ]
    body = {
        "program_id": "sampler",
        "backend": "ibm_fez",
        "params": {"pubs": [[QASM3, None, 10]], "version": 2, "support_qiskit": False},
    }
    headers = {"Authorization": f"Bearer {token}", "Service-CRN": emu.instance}
    job = await call("POST", emu.api_url + "/jobs", json=body, headers=headers)
    return token, job["id"]


def ibm_inputs(emu: IbmQuantumEmulator, token: str, job_id: str) -> dict[str, str]:
    return {"accessToken": token, "serviceCrn": emu.instance, "apiVersion": "2026-04-15", "jobId": job_id}


@pytest.mark.parametrize("status", ["Queued", "Running"])
async def test_ibm_seed_cancels_a_queued_or_running_job(status: str) -> None:
    async with IbmQuantumEmulator(job_duration_s=30, max_lifetime_s=60) as emu:
        token, job_id = await ibm_job(emu)
        await emu.set_status(job_id, status)
        emu.clear_log()
        with anyio.fail_after(BOUND_S):
            result = await run_workflow(
                IBM_SEED, None, ibm_inputs(emu, token, job_id), servers={"jobsApi": emu.base_url}, pacing=FAST
            )
        assert log(emu, "/api/v1") == [
            ("GET", f"/jobs/{job_id}", 200),
            ("POST", f"/jobs/{job_id}/cancel", 204),
            ("GET", f"/jobs/{job_id}", 200),
        ]
        assert await emu.status_of(job_id) == "Cancelled"
    assert result.outputs == {"finalStatus": "Cancelled"}
    assert result.trace == [
        ("getJobStatus", "cancellable → cancelJob"),
        ("cancelJob", "next → confirmCancelled"),
        ("confirmCancelled", "end"),
    ]


@pytest.mark.parametrize("status", ["Completed", "Failed", "Cancelled"])
async def test_ibm_seed_ends_without_a_cancel_for_a_terminal_job(status: str) -> None:
    async with IbmQuantumEmulator(job_duration_s=30, max_lifetime_s=60) as emu:
        token, job_id = await ibm_job(emu)
        await emu.set_status(job_id, status)
        emu.clear_log()
        with anyio.fail_after(BOUND_S):
            result = await run_workflow(
                IBM_SEED, None, ibm_inputs(emu, token, job_id), servers={"ibm": emu.base_url}, pacing=FAST
            )
        assert log(emu, "/api/v1") == [("GET", f"/jobs/{job_id}", 200)]
    assert result.trace == [("getJobStatus", "alreadyTerminal → end")]
    assert result.steps[0].outputs == {"jobStatus": status}
    assert result.outputs == {"finalStatus": None}


async def test_ibm_seed_reports_a_slow_cancel_as_still_running() -> None:
    """LESSONS: the seed's confirmCancelled reads once; with a cancel that takes time it says Running."""
    async with IbmQuantumEmulator(job_duration_s=30, cancel_delay_s=5, max_lifetime_s=60) as emu:
        token, job_id = await ibm_job(emu)
        await emu.set_status(job_id, "Running")
        await emu.set_status(job_id, None)
        with anyio.fail_after(BOUND_S):
            result = await run_workflow(
                IBM_SEED, None, ibm_inputs(emu, token, job_id), servers={"jobsApi": emu.base_url}, pacing=FAST
            )
    assert result.outputs["finalStatus"] in ("Queued", "Running")
    assert len(result.steps) == 3


# -- Azure Quantum ------------------------------------------------------------------------------------


async def azure_job(emu: AzureQuantumEmulator) -> str:
    job_id = str(uuid.uuid4())
    body = {
        "id": job_id,
        "name": "arazzo",
        "providerId": "ionq",
        "target": "ionq.simulator",
        "itemType": "Job",
        "containerUri": f"{emu.base_url}/devstoreaccount1/job-{job_id}",
    }
    await call(
        "PUT",
        f"{emu.base_url}{emu.workspace_path}/jobs/{job_id}",
        params={"api-version": "2026-01-15-preview"},
        json=body,
        headers={"Authorization": f"Bearer {emu.token}"},
    )
    return job_id


def azure_inputs(emu: AzureQuantumEmulator, job_id: str) -> dict[str, str]:
    return {
        "subscriptionId": emu.subscription_id,
        "resourceGroupName": emu.resource_group,
        "workspaceName": emu.workspace,
        "apiVersion": "2026-01-15-preview",
        "authToken": emu.token,
        "jobId": job_id,
    }


@pytest.mark.parametrize("status", ["Waiting", "Executing"])
async def test_azure_seed_cancels_then_polls_until_cancelled(status: str) -> None:
    progression = ("CancellationRequested", "Cancelling")
    async with AzureQuantumEmulator(
        job_duration_s=30, cancel_progression=progression, max_lifetime_s=60
    ) as emu:
        job_id = await azure_job(emu)
        await emu.set_status(job_id, status)
        emu.clear_log()
        with anyio.fail_after(BOUND_S):
            result = await run_workflow(
                AZURE_SEED,
                None,
                azure_inputs(emu, job_id),
                servers={"dataPlaneApi": emu.base_url},
                pacing=FAST,
            )
        job = f"/jobs/{job_id}"
        assert log(emu, emu.workspace_path) == [
            ("GET", job, 200),
            ("POST", f"{job}:cancel", 200),
            ("GET", job, 200),
            ("GET", job, 200),
            ("GET", job, 200),
        ]
        gaps = [b.time - a.time for a, b in zip(emu.requests[2:], emu.requests[3:], strict=False)]
    assert all(gap >= FAST.initial_s * (1 - FAST.jitter) for gap in gaps)  # paced, never back-to-back
    assert result.outputs["finalStatus"] == "Cancelled"
    assert result.outputs["jobId"] == job_id
    assert result.outputs["cancellationTime"]
    assert [branch for _, branch in result.trace] == [
        "stillRunning → cancelJob",
        "next → confirmCancelled",
        "cancelPending → confirmCancelled",
        "cancelPending → confirmCancelled",
        "end",
    ]


@pytest.mark.parametrize("status", ["Succeeded", "Failed", "Cancelled"])
async def test_azure_seed_reads_a_terminal_job_without_cancelling(status: str) -> None:
    async with AzureQuantumEmulator(job_duration_s=30, max_lifetime_s=60) as emu:
        job_id = await azure_job(emu)
        await emu.set_status(job_id, status)
        emu.clear_log()
        with anyio.fail_after(BOUND_S):
            result = await run_workflow(
                AZURE_SEED, None, azure_inputs(emu, job_id), servers={"azure": emu.base_url}, pacing=FAST
            )
        # As written: alreadyTerminal → confirmCancelled, one more read, and the end. No cancel.
        assert log(emu, emu.workspace_path) == [("GET", f"/jobs/{job_id}", 200)] * 2
    assert result.trace == [("getJob", "alreadyTerminal → confirmCancelled"), ("confirmCancelled", "end")]
    assert result.outputs["finalStatus"] == status


# -- Azure Databricks ---------------------------------------------------------------------------------


async def databricks_run(emu: DatabricksEmulator) -> int:
    body = {
        "run_name": "arazzo",
        "tasks": [
            {"task_key": "main", "existing_cluster_id": "c-1", "notebook_task": {"notebook_path": "/nb"}}
        ],
    }
    answer = await call(
        "POST",
        f"{emu.base_url}/api/2.2/jobs/runs/submit",
        json=body,
        headers={"Authorization": f"Bearer {emu.token}"},
    )
    return int(answer["run_id"])


async def test_databricks_seed_cancels_then_polls_paced_until_terminated() -> None:
    async with DatabricksEmulator(job_duration_s=30, cancel_duration_s=0.4, max_lifetime_s=60) as emu:
        run_id = await databricks_run(emu)
        emu.clear_log()
        with anyio.fail_after(BOUND_S):
            result = await run_workflow(
                DATABRICKS_SEED,
                None,
                {"token": emu.token, "runId": run_id},
                servers={"azureDatabricksApi": emu.base_url},
                pacing=FAST,
            )
        calls = log(emu, "/api/2.2/jobs")
        polls = list(emu.requests[2:])
    assert result.outputs == {"runId": run_id, "finalLifeCycleState": "TERMINATED", "resultState": "CANCELED"}
    assert calls[:2] == [("GET", "/runs/get", 200), ("POST", "/runs/cancel", 200)]
    assert set(calls[2:]) == {("GET", "/runs/get", 200)}
    # 0.4 s of TERMINATING with waits from 0.02 s doubling to 0.1 s: a handful of polls, not hundreds.
    assert 3 <= len(polls) <= 10
    assert all(b.time - a.time >= FAST.initial_s * (1 - FAST.jitter) for a, b in itertools.pairwise(polls))
    assert result.trace[-1] == ("pollRun", "cancelled → end")
    assert {branch for _, branch in result.trace[2:-1]} == {"stillActive → pollRun"}
    assert emu.requests[1].body == {"run_id": run_id}  # an integer, as the seed's input schema says


async def test_databricks_seed_on_an_already_ended_run_is_one_poll() -> None:
    async with DatabricksEmulator(job_duration_s=30, max_lifetime_s=60) as emu:
        run_id = await databricks_run(emu)
        emu.set_state(run_id, life_cycle_state="TERMINATED", result_state="SUCCESS")
        emu.clear_log()
        with anyio.fail_after(BOUND_S):
            result = await run_workflow(
                DATABRICKS_SEED,
                None,
                {"token": emu.token, "runId": run_id},
                servers={"databricks": emu.base_url},
            )
        # The seed always cancels (readRun never branches); on an ended run that is a no-op.
        assert log(emu, "/api/2.2/jobs") == [
            ("GET", "/runs/get", 200),
            ("POST", "/runs/cancel", 200),
            ("GET", "/runs/get", 200),
        ]
    assert result.outputs == {"runId": run_id, "finalLifeCycleState": "TERMINATED", "resultState": "SUCCESS"}


# -- Windmill -----------------------------------------------------------------------------------------


def windmill_inputs(emu: WindmillEmulator, script: str) -> dict[str, Any]:
    return {
        "token": emu.token,
        "workspace": emu.workspace,
        "path": script,
        "args": {"x": 21},
        "cancelReason": "over the time budget",
    }


async def test_windmill_seed_returns_a_quick_scripts_result() -> None:
    async with WindmillEmulator(job_duration_s=0.0, queue_s=0.0, max_lifetime_s=60) as emu:
        with anyio.fail_after(BOUND_S):
            result = await run_workflow(
                WINDMILL_SEED, None, windmill_inputs(emu, QUICK_SCRIPT), servers={"windmillApi": emu.base_url}
            )
        (job_id,) = emu.job_ids
        assert log(emu, f"/api/w/{emu.workspace}") == [
            ("POST", f"/jobs/run/p/{QUICK_SCRIPT}", 201),
            ("GET", f"/jobs_u/get/{job_id}", 200),
            ("GET", f"/jobs_u/completed/get/{job_id}", 200),
        ]
    assert result.outputs["jobId"] == job_id
    assert result.outputs["result"] == {"ok": True, "args": {"x": 21}}
    assert result.outputs["cancelConfirmation"] is None
    assert [branch for _, branch in result.trace] == [
        "next → inspectJob",
        "alreadyCompleted → readCompleted",
        "done → end",
    ]


async def test_windmill_seed_cancels_a_slow_script_with_the_reason() -> None:
    async with WindmillEmulator(
        job_duration_s=0.0, queue_s=0.0, slow_duration_s=600.0, max_lifetime_s=60
    ) as emu:
        with anyio.fail_after(BOUND_S):
            result = await run_workflow(
                WINDMILL_SEED, None, windmill_inputs(emu, SLOW_SCRIPT), servers={"windmill": emu.base_url}
            )
        (job_id,) = emu.job_ids
        assert log(emu, f"/api/w/{emu.workspace}") == [
            ("POST", f"/jobs/run/p/{SLOW_SCRIPT}", 201),
            ("GET", f"/jobs_u/get/{job_id}", 200),
            ("POST", f"/jobs_u/queue/cancel/{job_id}", 200),
        ]
        assert emu.requests[-1].body == {"reason": "over the time budget"}
        record = emu.job_record(job_id)
    assert record["canceled"] is True
    assert record.get("canceled_reason") == "over the time budget" or "over the time budget" in str(record)
    assert result.outputs == {"jobId": job_id, "result": None, "cancelConfirmation": job_id}
    assert [branch for _, branch in result.trace] == ["next → inspectJob", "stillPending → cancelJob", "end"]
