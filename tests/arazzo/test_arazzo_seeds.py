"""The four vendor seed workflows, verbatim, against small scripted fake vendors, every branch.

Each seed file (tests/data/arazzo/, copied byte for byte from shared/seeds/) is a title block
followed by the Arazzo YAML. The fakes below speak just enough of each vendor's API (paths,
headers, bodies from shared/specs/VENDORS.md) to answer the seed's requests from a script, and log
every request, so each test asserts the outputs, the branch trace and the exact request sequence.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from oqc_style_sdk.arazzo import (
    Pacing,
    StepLimitError,
    WorkflowResult,
    WorkflowTimeoutError,
    load_document,
    run_workflow,
)
from tests.common import DATA, SHARED

DATA = DATA / "arazzo"
IBM_SEED = DATA / "000_d47212bd6c163dd2.txt"
AZURE_SEED = DATA / "001_d120ef2a5adae25b.txt"
DATABRICKS_SEED = DATA / "002_aaeb209fff7697ab.txt"
WINDMILL_SEED = DATA / "004_89234a8ac85df44d.txt"
SHARED_SEEDS = SHARED / "seeds"

FAST = Pacing(initial_s=0.02, max_s=0.08, factor=2.0, jitter=0.25)
TOKEN = "tok-3c1d9e"


@dataclass
class Hit:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    at: float

    @property
    def line(self) -> str:
        return f"{self.method} {self.path}"


class FakeVendor:
    """An aiohttp server on 127.0.0.1 (port chosen by the OS) that logs every request."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.app = web.Application(middlewares=[self._log])
        self.url = ""
        self._runner: web.AppRunner | None = None

    @web.middleware
    async def _log(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode()
        self.hits.append(
            Hit(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                body,
                time.monotonic(),
            )
        )
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": {"code": "Unauthorized", "message": "bad token"}}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    async def __aenter__(self) -> FakeVendor:
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def calls(self) -> list[str]:
        return [hit.line for hit in self.hits]

    def gaps(self, line: str) -> list[float]:
        times = [hit.at for hit in self.hits if hit.line == line]
        return [b - a for a, b in itertools.pairwise(times)]


def trace(result: WorkflowResult) -> list[tuple[str, str]]:
    return result.trace


def test_the_seeds_here_are_the_shared_seeds_verbatim() -> None:
    for seed in (IBM_SEED, AZURE_SEED, DATABRICKS_SEED, WINDMILL_SEED):
        shared = SHARED_SEEDS / seed.name
        if shared.exists():  # the shared folder sits beside the checkout
            assert seed.read_bytes() == shared.read_bytes()
        assert seed.read_text().splitlines()[0].endswith("Arazzo Workflow")


@pytest.mark.parametrize(
    ("seed", "workflow", "steps"),
    [
        (IBM_SEED, "cancel-running-job", ["getJobStatus", "cancelJob", "confirmCancelled"]),
        (AZURE_SEED, "cancel-running-job", ["getJob", "cancelJob", "confirmCancelled"]),
        (DATABRICKS_SEED, "cancel-active-run", ["readRun", "cancelRun", "pollRun"]),
        (
            WINDMILL_SEED,
            "run-script-with-cancel-guard",
            ["runScript", "inspectJob", "readCompleted", "cancelJob"],
        ),
    ],
)
def test_each_seed_loads_verbatim(seed: Path, workflow: str, steps: list[str]) -> None:
    doc = load_document(seed)
    assert doc.arazzo == "1.0.1"
    assert [w.workflowId for w in doc.workflows] == [workflow]
    assert [s.stepId for s in doc.workflow().steps] == steps


# -- IBM Quantum ---------------------------------------------------------------------------------------

IBM_INPUTS = {
    "accessToken": TOKEN,
    "serviceCrn": "crn:v1:bluemix:public:quantum-computing:us-east:a/1::",
    "apiVersion": "2026-04-15",
    "jobId": "d1job",
}
IBM_TERMINAL = frozenset({"Completed", "Failed", "Cancelled"})


class IbmFake(FakeVendor):
    """GET /api/v1/jobs/{id} and POST /api/v1/jobs/{id}/cancel (204; 409 once terminal)."""

    def __init__(self, status: str, after_cancel: str = "Cancelled") -> None:
        super().__init__()
        self.status = status
        self.after_cancel = after_cancel
        self.app.router.add_get("/api/v1/jobs/{id}", self.get)
        self.app.router.add_post("/api/v1/jobs/{id}/cancel", self.cancel)

    def _headers_ok(self, request: web.Request) -> bool:
        return (
            request.headers.get("Service-CRN") == IBM_INPUTS["serviceCrn"]
            and request.headers.get("IBM-API-Version") == IBM_INPUTS["apiVersion"]
            and request.match_info["id"] == "d1job"
        )

    async def get(self, request: web.Request) -> web.Response:
        if not self._headers_ok(request):
            return web.json_response({"errors": [{"code": "bad", "message": "headers"}]}, status=400)
        return web.json_response(
            {"id": "d1job", "backend": "ibm_fez", "status": self.status, "state": {"status": self.status}}
        )

    async def cancel(self, request: web.Request) -> web.Response:
        if not self._headers_ok(request):
            return web.json_response({"errors": [{"code": "bad", "message": "headers"}]}, status=400)
        if self.status in IBM_TERMINAL:
            return web.json_response(
                {"errors": [{"code": "1305", "message": "Job cannot be cancelled"}]}, status=409
            )
        self.status = self.after_cancel
        return web.Response(status=204)


@pytest.mark.parametrize("status", ["Queued", "Running"])
async def test_ibm_cancellable_job_is_cancelled_and_reread(status: str) -> None:
    async with IbmFake(status) as ibm:
        result = await run_workflow(IBM_SEED, None, IBM_INPUTS, servers={"jobsApi": ibm.url}, pacing=FAST)
    assert result.outputs == {"finalStatus": "Cancelled"}
    assert trace(result) == [
        ("getJobStatus", "cancellable → cancelJob"),
        ("cancelJob", "next → confirmCancelled"),
        ("confirmCancelled", "end"),
    ]
    assert ibm.calls == ["GET /api/v1/jobs/d1job", "POST /api/v1/jobs/d1job/cancel", "GET /api/v1/jobs/d1job"]
    assert [r.status for r in result.steps] == [200, 204, 200]
    assert result.steps[0].outputs == {"jobStatus": status}
    assert result.requests_sent == 3
    # The seed's bare "Bearer $inputs.accessToken" reached the wire as the author meant ...
    assert all(hit.headers["Authorization"] == f"Bearer {TOKEN}" for hit in ibm.hits)
    # ... and both of the seeds' non-standard forms were named, once each.
    assert sum("without braces" in w for w in result.warnings) == 1
    assert sum("not RFC 9535 queries" in w for w in result.warnings) == 1
    assert TOKEN not in json.dumps(result.to_dict())


@pytest.mark.parametrize("status", sorted(IBM_TERMINAL))
async def test_ibm_terminal_job_ends_without_a_cancel(status: str) -> None:
    async with IbmFake(status) as ibm:
        result = await run_workflow(IBM_SEED, None, IBM_INPUTS, servers={"jobsApi": ibm.url}, pacing=FAST)
    assert ibm.calls == ["GET /api/v1/jobs/d1job"]
    assert trace(result) == [("getJobStatus", "alreadyTerminal → end")]
    assert result.steps[0].outputs == {"jobStatus": status}
    # The workflow's only output reads confirmCancelled, which did not run on this path: null, warned.
    assert result.outputs == {"finalStatus": None}
    assert any("'confirmCancelled' did not run" in w for w in result.warnings)


async def test_ibm_confirmation_reads_once_as_written() -> None:
    """LESSONS: IBM's confirmCancelled reads once and may still say Running: reported as it is."""
    async with IbmFake("Running", after_cancel="Running") as ibm:
        result = await run_workflow(IBM_SEED, None, IBM_INPUTS, servers={"ibm": ibm.url}, pacing=FAST)
    assert result.outputs == {"finalStatus": "Running"}
    assert len(ibm.calls) == 3


# -- Azure Quantum -------------------------------------------------------------------------------------

AZ_INPUTS = {
    "subscriptionId": "6a9e2d1c-0000-4000-8000-000000000001",
    "resourceGroupName": "rg-quantum",
    "workspaceName": "ws-1",
    "apiVersion": "2026-01-15-preview",
    "authToken": TOKEN,
    "jobId": "0f4c2d9e-1111-4222-8333-444455556666",
}
AZ_JOB = (
    "/subscriptions/6a9e2d1c-0000-4000-8000-000000000001/resourceGroups/rg-quantum"
    "/providers/Microsoft.Quantum/workspaces/ws-1/jobs/0f4c2d9e-1111-4222-8333-444455556666"
)


class AzureFake(FakeVendor):
    """Jobs_Get and Jobs_Cancel (200 + JobDetails, as the spec says); a cancelled job moves through
    CancellationRequested → Cancelling → Cancelled, one step per read."""

    def __init__(self, status: str) -> None:
        super().__init__()
        self.status = status
        self.pending: list[str] = []
        self.app.router.add_route("*", "/subscriptions/{tail:.*}", self.handle)

    def details(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": AZ_INPUTS["jobId"],
            "name": "h",
            "status": self.status,
            "target": "ionq.simulator",
        }
        if self.status == "Cancelled":
            body["cancellationTime"] = "2026-11-23T10:00:00Z"
        return body

    async def handle(self, request: web.Request) -> web.Response:
        if request.query.get("api-version") != AZ_INPUTS["apiVersion"]:
            return web.json_response(
                {"error": {"code": "MissingApiVersion", "message": "api-version"}}, status=400
            )
        if request.method == "GET" and request.path == AZ_JOB:
            if self.pending:
                self.status = self.pending.pop(0)
            return web.json_response(self.details())
        if request.method == "POST" and request.path == AZ_JOB + ":cancel":
            self.status = "CancellationRequested"
            self.pending = ["Cancelling", "Cancelling", "Cancelled"]
            return web.json_response(self.details())
        return web.json_response({"error": {"code": "NotFound", "message": request.path}}, status=404)


@pytest.mark.parametrize("status", ["Waiting", "Executing", "Queued"])
async def test_azure_running_job_is_cancelled_then_polled_until_cancelled(status: str) -> None:
    async with AzureFake(status) as az:
        result = await run_workflow(
            AZURE_SEED, None, AZ_INPUTS, servers={"dataPlaneApi": az.url}, pacing=FAST
        )
    assert result.outputs == {
        "jobId": AZ_INPUTS["jobId"],
        "finalStatus": "Cancelled",
        "cancellationTime": "2026-11-23T10:00:00Z",
    }
    assert az.calls == [f"GET {AZ_JOB}", f"POST {AZ_JOB}:cancel"] + [f"GET {AZ_JOB}"] * 3
    assert trace(result) == [
        ("getJob", "stillRunning → cancelJob"),
        ("cancelJob", "next → confirmCancelled"),
        ("confirmCancelled", "cancelPending → confirmCancelled"),
        ("confirmCancelled", "cancelPending → confirmCancelled"),
        ("confirmCancelled", "end"),
    ]
    assert [s.outputs.get("finalStatus") for s in result.steps[2:]] == [
        "Cancelling",
        "Cancelling",
        "Cancelled",
    ]
    # The self-loop is paced: no back-to-back polls, growing waits.
    gaps = az.gaps(f"GET {AZ_JOB}")[1:]
    assert all(gap >= FAST.initial_s * (1 - FAST.jitter) for gap in gaps)
    assert [s.waited_s > 0 for s in result.steps] == [False, False, False, True, True]
    assert all(hit.query["api-version"] == AZ_INPUTS["apiVersion"] for hit in az.hits)


@pytest.mark.parametrize("status", ["Succeeded", "Failed", "Cancelled"])
async def test_azure_terminal_job_is_read_without_a_cancel(status: str) -> None:
    async with AzureFake(status) as az:
        result = await run_workflow(AZURE_SEED, None, AZ_INPUTS, servers={"azure": az.url}, pacing=FAST)
    # As written: alreadyTerminal goes to confirmCancelled, which reads the job once and ends.
    assert az.calls == [f"GET {AZ_JOB}", f"GET {AZ_JOB}"]
    assert "POST" not in " ".join(az.calls)
    assert trace(result) == [("getJob", "alreadyTerminal → confirmCancelled"), ("confirmCancelled", "end")]
    assert result.outputs["finalStatus"] == status
    assert result.outputs["jobId"] == AZ_INPUTS["jobId"]


# -- Azure Databricks ----------------------------------------------------------------------------------

DB_INPUTS = {"token": TOKEN, "runId": 42}


class DatabricksFake(FakeVendor):
    """runs/get and runs/cancel of Jobs API 2.2. After a cancel the run reports ``after_cancel``
    ``terminating`` times, then TERMINATED / CANCELED (``result_state`` only once it has ended)."""

    def __init__(
        self, state: str = "RUNNING", *, terminating: int = 3, after_cancel: str = "TERMINATING"
    ) -> None:
        super().__init__()
        self.state = state
        self.result_state: str | None = None
        self.script: list[str] = []
        self.terminating = terminating
        self.after_cancel = after_cancel
        self.app.router.add_get("/api/2.2/jobs/runs/get", self.get)
        self.app.router.add_post("/api/2.2/jobs/runs/cancel", self.cancel)

    async def get(self, request: web.Request) -> web.Response:
        if request.query.get("run_id") != "42":
            return web.json_response(
                {"error_code": "INVALID_PARAMETER_VALUE", "message": "Run does not exist"}, status=400
            )
        if self.script:
            self.state = self.script.pop(0)
            if self.state == "TERMINATED":
                self.result_state = "CANCELED"
        state: dict[str, Any] = {"life_cycle_state": self.state, "state_message": ""}
        if self.result_state is not None:
            state["result_state"] = self.result_state
        return web.json_response({"run_id": 42, "job_id": 7, "state": state})

    async def cancel(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body != {"run_id": 42}:  # an integer, as the input schema says: types are kept
            return web.json_response(
                {"error_code": "INVALID_PARAMETER_VALUE", "message": repr(body)}, status=400
            )
        self.script = [self.after_cancel] * self.terminating + ["TERMINATED"]
        return web.json_response({})


async def test_databricks_running_run_is_cancelled_then_polled_paced_until_terminated() -> None:
    async with DatabricksFake(terminating=3) as db:
        result = await run_workflow(
            DATABRICKS_SEED, None, DB_INPUTS, servers={"azureDatabricksApi": db.url}, pacing=FAST
        )
    assert result.outputs == {"runId": 42, "finalLifeCycleState": "TERMINATED", "resultState": "CANCELED"}
    poll = "GET /api/2.2/jobs/runs/get"
    assert (
        db.calls == [poll, "POST /api/2.2/jobs/runs/cancel"] + [poll] * 4
    )  # bounded: exactly the reads needed
    assert trace(result) == [
        ("readRun", "next → cancelRun"),
        ("cancelRun", "next → pollRun"),
        ("pollRun", "stillActive → pollRun"),
        ("pollRun", "stillActive → pollRun"),
        ("pollRun", "stillActive → pollRun"),
        ("pollRun", "cancelled → end"),
    ]
    # result_state is absent until the run ends: null meanwhile, never an error.
    assert [s.outputs.get("resultState") for s in result.steps[2:]] == [None, None, None, "CANCELED"]
    # Paced, with exponential backoff: the polls are not back-to-back and the waits grow.
    waits = [s.waited_s for s in result.steps[3:]]
    assert all(w >= FAST.initial_s * (1 - FAST.jitter) for w in waits)
    assert waits[2] > waits[0]
    gaps = db.gaps(poll)[2:]
    assert all(gap >= FAST.initial_s * (1 - FAST.jitter) for gap in gaps)
    assert all(hit.query == {"run_id": "42"} for hit in db.hits if hit.method == "GET")


async def test_databricks_poll_ends_on_a_state_the_seed_does_not_name() -> None:
    """LESSONS: pollRun ends on QUEUED/BLOCKED/WAITING_FOR_RETRY/SKIPPED after one read: as written,
    with a warning that none of its actions matched."""
    async with DatabricksFake(terminating=5, after_cancel="QUEUED") as db:
        result = await run_workflow(
            DATABRICKS_SEED, None, DB_INPUTS, servers={"databricks": db.url}, pacing=FAST
        )
    assert len(db.calls) == 3
    assert trace(result)[-1] == ("pollRun", "end")
    assert result.outputs == {"runId": 42, "finalLifeCycleState": "QUEUED", "resultState": None}
    assert any("none of its onSuccess actions (cancelled, stillActive) matched" in w for w in result.warnings)


async def test_databricks_endless_run_hits_the_step_cap() -> None:
    async with DatabricksFake(terminating=10_000, after_cancel="RUNNING") as db:
        with pytest.raises(StepLimitError, match="limit of 8 steps") as caught:
            await run_workflow(
                DATABRICKS_SEED, None, DB_INPUTS, servers={"databricks": db.url}, pacing=FAST, max_steps=8
            )
    assert len(db.calls) == 8
    partial = caught.value.result
    assert partial is not None
    assert len(partial.steps) == 8
    assert partial.outputs["finalLifeCycleState"] == "RUNNING"


async def test_databricks_endless_run_hits_the_deadline_with_few_requests() -> None:
    pacing = Pacing(initial_s=0.05, max_s=0.2)
    async with DatabricksFake(terminating=10_000, after_cancel="RUNNING") as db:
        started = time.monotonic()
        with pytest.raises(WorkflowTimeoutError) as caught:
            await run_workflow(
                DATABRICKS_SEED, None, DB_INPUTS, servers={"databricks": db.url}, pacing=pacing, timeout_s=0.6
            )
        elapsed = time.monotonic() - started
    assert elapsed < 1.0
    assert 3 <= len(db.calls) <= 10  # arazzo-runner sent 399 GETs in 0.44 s
    assert caught.value.result is not None


# -- Windmill ------------------------------------------------------------------------------------------

WM_INPUTS: dict[str, Any] = {
    "token": TOKEN,
    "workspace": "demo",
    "path": "f/examples/add",
    "args": {"a": 1, "b": 2},
    "cancelReason": "took too long",
}


class WindmillFake(FakeVendor):
    """runScriptByPath (201 text/plain UUID), getJob, getCompletedJob, cancelQueuedJob. Scripts whose
    path ends in ``slow`` are still running when inspected; others have completed."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, dict[str, Any]] = {}
        base = "/api/w/{workspace}"
        self.app.router.add_post(base + "/jobs/run/p/{path:.+}", self.run)
        self.app.router.add_get(base + "/jobs_u/get/{id}", self.get)
        self.app.router.add_get(base + "/jobs_u/completed/get/{id}", self.completed)
        self.app.router.add_post(base + "/jobs_u/queue/cancel/{id}", self.cancel)

    async def run(self, request: web.Request) -> web.Response:
        args = await request.json()
        job_id = str(uuid.uuid4())
        if request.match_info["path"].endswith("slow"):
            self.jobs[job_id] = {
                "id": job_id,
                "type": "QueuedJob",
                "running": True,
                "canceled": False,
                "args": args,
            }
        else:
            result = {"sum": args["a"] + args["b"]}
            self.jobs[job_id] = {
                "id": job_id,
                "type": "CompletedJob",
                "success": True,
                "result": result,
                "args": args,
            }
        return web.Response(status=201, text=job_id, content_type="text/plain")

    async def get(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.Response(status=404, text="Not found: job")
        return web.json_response(job)

    async def completed(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None or job["type"] != "CompletedJob":
            return web.Response(status=404, text="Not found: Completed Job not found")
        return web.json_response(job)

    async def cancel(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.Response(status=404, text="Not found: queued job id does not exist")
        reason = (await request.json()).get("reason")
        error = {"message": f"Job canceled: {reason} by u/tester", "name": "Canceled", "reason": reason}
        job.update(
            type="CompletedJob", success=False, canceled=True, canceled_reason=reason, result={"error": error}
        )
        return web.Response(status=200, text=job["id"], content_type="text/plain")


async def test_windmill_quick_script_gives_its_result() -> None:
    async with WindmillFake() as wm:
        result = await run_workflow(
            WINDMILL_SEED, None, WM_INPUTS, servers={"windmillApi": wm.url}, pacing=FAST
        )
        (job_id,) = wm.jobs
    assert result.outputs == {"jobId": job_id, "result": {"sum": 3}, "cancelConfirmation": None}
    assert wm.calls == [
        "POST /api/w/demo/jobs/run/p/f/examples/add",  # the script path's slashes are kept
        f"GET /api/w/demo/jobs_u/get/{job_id}",
        f"GET /api/w/demo/jobs_u/completed/get/{job_id}",
    ]
    assert wm.hits[0].body == {"a": 1, "b": 2}  # payload: $inputs.args, an object
    assert trace(result) == [
        ("runScript", "next → inspectJob"),
        ("inspectJob", "alreadyCompleted → readCompleted"),
        ("readCompleted", "done → end"),
    ]
    assert result.steps[-1].outputs == {"result": {"sum": 3}, "success": True}
    # LESSONS: the outputs name a step that did not run on this path (cancelJob): null + warning.
    assert any("'cancelJob' did not run" in w for w in result.warnings)


async def test_windmill_slow_script_is_cancelled_with_the_reason() -> None:
    inputs = {**WM_INPUTS, "path": "u/admin/slow"}
    async with WindmillFake() as wm:
        result = await run_workflow(WINDMILL_SEED, None, inputs, servers={"windmill": wm.url}, pacing=FAST)
        (job_id,) = wm.jobs
        job = wm.jobs[job_id]
    assert wm.calls == [
        "POST /api/w/demo/jobs/run/p/u/admin/slow",
        f"GET /api/w/demo/jobs_u/get/{job_id}",
        f"POST /api/w/demo/jobs_u/queue/cancel/{job_id}",
    ]
    assert wm.hits[-1].body == {"reason": "took too long"}
    assert job["canceled"] is True
    assert job["canceled_reason"] == "took too long"
    assert result.outputs == {"jobId": job_id, "result": None, "cancelConfirmation": job_id}
    assert trace(result) == [
        ("runScript", "next → inspectJob"),
        ("inspectJob", "stillPending → cancelJob"),
        ("cancelJob", "end"),
    ]
    assert any("'readCompleted' did not run" in w for w in result.warnings)


def test_no_seed_file_was_modified() -> None:
    for seed in (IBM_SEED, AZURE_SEED, DATABRICKS_SEED, WINDMILL_SEED):
        text = seed.read_text()
        assert re.search(r"^arazzo: 1\.0\.1$", text, re.MULTILINE)
        assert "Bearer $inputs." in text  # the bare form, untouched
