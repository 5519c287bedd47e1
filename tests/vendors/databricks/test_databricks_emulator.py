"""The Azure Databricks emulator: contract tests against the official API description, every endpoint
and error shape with plain aiohttp, and the official ``databricks-sdk`` client running on it.

Contract checks. ``tests/data/databricks/databricks-jobs-2.1-azure.openapi.yaml`` is the official
Jobs API 2.1 description (Azure flavour, 2023 snapshot), copied verbatim (its git blob hash is checked
below). Requests and answers are validated with openapi-core. Three adjustments are made to the
*loaded* document, never to the file:

- the backend and the official client call ``/api/2.2/jobs/...``; 2.2 kept the 2.1 operations under
  the same names, so a 2.2 call is validated against the 2.1 operation of the same name (the path
  prefix is rewritten before validation);
- the values VENDORS.md §3 lists as newer than the snapshot (from databricks-sdk 0.162.0) are added to
  the enums (``QUEUED``; the six newer result states), and the newer ``status`` object is described
  from the same source and attached to ``Run`` and ``RunTask`` — so it is *checked*, not just
  tolerated. Other new fields (``next_page_token``, ``queue_reason``, ``run_duration`` ...) pass
  because the 2.1 schemas do not forbid extra properties;
- the servers entry is pointed at a placeholder host, and the document's own schema check is skipped:
  the snapshot declares ``default: '{}'`` (a string) for the object ``JobSettings.tags``, which
  openapi-spec-validator rejects.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import anyio
import anyio.to_thread
import pytest
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockRequest, MockResponse

from oqc_style_sdk import Sdk
from oqc_style_sdk.backends.databricks import (
    LIFECYCLE_STATES,
    RESULT_STATES,
    STATUS_STATES,
    TERMINATION_CODES,
)
from oqc_style_sdk.exceptions import ConfigurationError
from oqc_style_sdk.polling import PollingPolicy
from oqc_style_sdk.testing.databricks import (
    TERMINATION_TYPES,
    DatabricksEmulator,
    Exchange,
)
from oqc_style_sdk.testing.emulator import REDACTED, Emulator, serve_forever
from oqc_style_sdk.testing.pytest_plugin import EmulatorFactory
from tests.common import DATA

DATA = DATA / "databricks"
SPEC_FILE = DATA / "databricks-jobs-2.1-azure.openapi.yaml"
#: VENDORS.md §0: the snapshot's git blob hash begins 0e3e2519.
SPEC_BLOB_PREFIX = "0e3e2519"
HOST_URL = "https://adb-1234567890123456.7.azuredatabricks.net"
API = "/api/2.2/jobs"
CLUSTER = "0923-164208-meows279"
NOTEBOOK_SPEC: dict[str, Any] = {
    "run_name": "sdk-nb",
    "tasks": [
        {
            "task_key": "main",
            "existing_cluster_id": CLUSTER,
            "notebook_task": {"notebook_path": "/Users/me@example.com/nb", "base_parameters": {"x": "1"}},
        }
    ],
}
TWO_TASKS: dict[str, Any] = {
    "run_name": "two",
    "tasks": [
        {
            "task_key": "ingest",
            "existing_cluster_id": CLUSTER,
            "spark_python_task": {"python_file": "dbfs:/path/to/file.py", "parameters": ["--n", "3"]},
        },
        {
            "task_key": "report",
            "depends_on": [{"task_key": "ingest"}],
            "existing_cluster_id": CLUSTER,
            "notebook_task": {"notebook_path": "/Users/me@example.com/report"},
        },
    ],
}


# -- the contract ---------------------------------------------------------------------------------------

_STATUS_SCHEMA: dict[str, Any] = {  # VENDORS.md §3, from databricks-sdk 0.162.0 (RunStatus)
    "type": "object",
    "properties": {
        "state": {"type": "string", "enum": list(STATUS_STATES)},
        "queue_details": {
            "type": "object",
            "properties": {
                "code": {
                    "type": "string",
                    "enum": [
                        "ACTIVE_RUNS_LIMIT_REACHED",
                        "MAX_CONCURRENT_RUNS_REACHED",
                        "ACTIVE_RUN_JOB_TASKS_LIMIT_REACHED",
                    ],
                },
                "message": {"type": "string"},
            },
        },
        "termination_details": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "enum": list(TERMINATION_CODES)},
                "type": {"type": "string", "enum": list(TERMINATION_TYPES)},
                "message": {"type": "string"},
            },
        },
    },
}


def _load_contract() -> OpenAPI:
    doc = yaml.safe_load(SPEC_FILE.read_text(encoding="utf-8"))
    doc["servers"] = [{"url": f"{HOST_URL}/api"}]
    schemas = doc["components"]["schemas"]
    life = schemas["RunLifeCycleState"]["enum"]
    life.extend(value for value in LIFECYCLE_STATES if value not in life)
    result = schemas["RunResultState"]["enum"]
    result.extend(value for value in RESULT_STATES if value not in result)
    schemas["RunStatus"] = _STATUS_SCHEMA
    for name in ("Run", "RunTask"):
        schemas[name]["properties"]["status"] = {"$ref": "#/components/schemas/RunStatus"}
    return OpenAPI.from_dict(doc, config=Config(spec_validator_cls=None))


_CONTRACT: OpenAPI | None = None


def contract() -> OpenAPI:
    global _CONTRACT
    if _CONTRACT is None:
        _CONTRACT = _load_contract()
    return _CONTRACT


def spec_path(path: str) -> str:
    """A 2.2 call is checked against the 2.1 operation of the same name."""
    return path.replace("/api/2.2/", "/api/2.1/", 1)


def check_exchange(exchange: Exchange) -> None:
    """The request and the answer match the official description (raises openapi-core's error).

    A request the emulator refused (4xx) may have been wrong on purpose: only its answer is checked.
    """
    data = None if exchange.body is None else json.dumps(exchange.body).encode()
    request = MockRequest(
        HOST_URL,
        exchange.method.lower(),
        spec_path(exchange.path),
        args=exchange.query,
        headers={"Authorization": "Bearer " + REDACTED},
        data=data,
    )
    api = contract()
    if exchange.status < 400:
        api.validate_request(request)
    answer = MockResponse(json.dumps(exchange.answer).encode(), status_code=exchange.status)
    api.validate_response(request, answer)


def check_all(emu: DatabricksEmulator, *, at_least: int = 1) -> list[str]:
    """Validate every Jobs API exchange (host discovery is not part of the Jobs description);
    return the operations seen (``METHOD /path``)."""
    exchanges = [e for e in emu.exchanges if e.path.startswith("/api/")]
    assert len(exchanges) >= at_least
    for exchange in exchanges:
        check_exchange(exchange)
    return sorted({f"{e.method} {spec_path(e.path)}" for e in exchanges})


def test_the_description_is_the_verbatim_official_copy() -> None:
    raw = SPEC_FILE.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(raw) + raw, usedforsecurity=False).hexdigest()
    assert len(raw) == 183_315
    assert blob.startswith(SPEC_BLOB_PREFIX)


def test_the_contract_rejects_what_it_should() -> None:
    """The checker is not a rubber stamp: wrong enums, missing fields and bad types fail."""
    ok = Exchange("GET", f"{API}/runs/get", {"run_id": "5"}, None, 200, {"run_id": 5})
    check_exchange(ok)
    bad = [
        Exchange("GET", f"{API}/runs/get", {"run_id": "x"}, None, 200, {"run_id": 5}),
        Exchange("GET", f"{API}/runs/get", {}, None, 200, {"run_id": 5}),
        Exchange("GET", f"{API}/runs/get", {"run_id": "5"}, None, 200, {"run_id": "five"}),
        Exchange(
            "GET", f"{API}/runs/get", {"run_id": "5"}, None, 200, {"state": {"life_cycle_state": "DONE"}}
        ),
        Exchange(
            "GET", f"{API}/runs/get", {"run_id": "5"}, None, 200, {"status": {"state": "WAITING_FOR_RETRY"}}
        ),
        Exchange("POST", f"{API}/runs/cancel", {}, {}, 200, {}),
        Exchange("GET", f"{API}/runs/list", {}, None, 200, {"runs": {}}),
        Exchange("GET", f"{API}/runs/get", {"run_id": "5"}, None, 400, {"error_code": 400}),
    ]
    for exchange in bad:
        with pytest.raises(OpenAPIError):
            check_exchange(exchange)


# -- fixtures and a thin client ---------------------------------------------------------------------------


class Api:
    def __init__(self, emu: DatabricksEmulator, session: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.session = session

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        token: str | None = "",
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token or self.emu.token}"
        url = self.emu.base_url + (path if path.startswith("/") else f"{API}/{path}")
        kw: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
        async with self.session.request(method, url, params=params, headers=headers, **kw) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None

    async def submit(self, spec: dict[str, Any] | None = None, **extra: Any) -> int:
        status, body = await self.call("POST", "runs/submit", {**(spec or NOTEBOOK_SPEC), **extra})
        assert status == 200, body
        assert set(body) == {"run_id"}
        return int(body["run_id"])

    async def run(self, run_id: int) -> dict[str, Any]:
        status, body = await self.call("GET", "runs/get", params={"run_id": str(run_id)})
        assert status == 200, body
        return dict(body)

    async def life(self, run_id: int) -> tuple[str, str | None, str]:
        run = await self.run(run_id)
        return run["state"]["life_cycle_state"], run["state"].get("result_state"), run["status"]["state"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def emu(emulator_factory: EmulatorFactory) -> AsyncIterator[DatabricksEmulator]:
    async with emulator_factory("databricks", job_duration_s=30) as started:
        assert isinstance(started, DatabricksEmulator)
        yield started


@pytest.fixture
def api(emu: DatabricksEmulator, session: aiohttp.ClientSession) -> Api:
    return Api(emu, session)


# -- authentication, errors, discovery -------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "dapi-wrong"])
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "runs/list"), ("GET", "runs/get"), ("POST", "runs/submit"), ("POST", "runs/cancel")],
)
async def test_401_without_or_with_a_wrong_token(api: Api, token: str | None, method: str, path: str) -> None:
    status, body = await api.call(method, path, {}, params={"run_id": "1"}, token=token)
    assert (status, body) == (401, {"error_code": "PERMISSION_DENIED", "message": "Unauthorized access."})
    assert api.emu.exchanges == []  # refused before any handler


async def test_error_shapes(api: Api) -> None:
    assert await api.call("GET", "runs/get", params={"run_id": "424242"}) == (
        400,
        {"error_code": "INVALID_PARAMETER_VALUE", "message": "Run 424242 does not exist."},
    )
    status, body = await api.call("GET", "runs/get")
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    status, body = await api.call("GET", "runs/get", params={"run_id": "abc"})
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    status, body = await api.call("POST", "runs/submit", raw=b"{not json")
    assert (status, body["error_code"]) == (400, "MALFORMED_REQUEST")
    assert await api.call("GET", "/api/2.2/jobs/nothing-here") == (
        404,
        {"error_code": "ENDPOINT_NOT_FOUND", "message": "No API endpoint found"},
    )
    api.emu.fail_next(1, status=429, path="/runs/get", retry_after=3)
    async with api.session.get(
        f"{api.emu.base_url}{API}/runs/get?run_id=1", headers={"Authorization": f"Bearer {api.emu.token}"}
    ) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "3"
        assert (await response.json())["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    api.emu.fail_next(1, status=503)
    status, body = await api.call("GET", "runs/list")
    assert (status, body["error_code"]) == (503, "TEMPORARILY_UNAVAILABLE")
    check_all(api.emu)


async def test_host_metadata_needs_no_token(api: Api) -> None:
    status, body = await api.call("GET", "/.well-known/databricks-config", token=None)
    assert status == 200
    assert body == {"oidc_endpoint": f"{api.emu.base_url}/oidc", "workspace_id": "1234567890123456"}


async def test_credentials_env_and_no_secret_in_the_log(api: Api) -> None:
    emu = api.emu
    assert emu.credentials == {"host": emu.base_url, "token": emu.token}
    assert emu.env == {"DATABRICKS_HOST": emu.base_url, "DATABRICKS_TOKEN": emu.token}
    assert emu.token.startswith("dapi")
    assert len(emu.token) == 36
    await api.submit()
    await api.call("GET", "runs/list", token="dapi-wrong")
    assert emu.requests[0].headers["Authorization"] == REDACTED
    assert emu.token not in repr(emu.requests) + repr(emu.exchanges)


async def test_oqcs_emulate_prints_the_environment() -> None:
    printed: dict[str, str] = {}

    def ready(emulator: Emulator) -> None:
        printed.update(emulator.env)
        emulator._stop_event.set()  # type: ignore[union-attr]  # stop at once, as Ctrl-C would

    with anyio.fail_after(10):
        stopped = await serve_forever("databricks", ready=ready, max_lifetime_s=10)
    assert set(printed) == {"DATABRICKS_HOST", "DATABRICKS_TOKEN"}
    assert printed["DATABRICKS_HOST"].startswith("http://127.0.0.1:")
    assert isinstance(stopped, DatabricksEmulator)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        DatabricksEmulator(token="")
    with pytest.raises(ConfigurationError):
        DatabricksEmulator(workspace_id=0)
    with pytest.raises(ConfigurationError):
        DatabricksEmulator(queue_s=-1)


# -- runs/submit and the life cycle ----------------------------------------------------------------------


async def test_a_run_goes_through_every_documented_phase(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    clock = Clock()
    async with emulator_factory(
        "databricks", job_duration_s=10, queue_s=2, pending_s=1, terminating_s=1, clock=clock
    ) as started:
        assert isinstance(started, DatabricksEmulator)
        api = Api(started, session)
        run_id = await api.submit()
        seen = []
        for step in (0, 2, 3, 11, 12.5):
            clock.now = 1000.0 + step
            seen.append(await api.life(run_id))
        assert seen == [
            ("QUEUED", None, "QUEUED"),
            ("PENDING", None, "PENDING"),
            ("RUNNING", None, "RUNNING"),
            ("TERMINATING", None, "TERMINATING"),
            ("TERMINATED", "SUCCESS", "TERMINATED"),
        ]
        clock.now = 1000.0
        queued = await api.run(run_id)
        assert queued["status"]["queue_details"]["code"] == "MAX_CONCURRENT_RUNS_REACHED"
        assert "queue_reason" in queued["state"]
        clock.now = 1015.0
        run = await api.run(run_id)
        assert run["status"]["termination_details"] == {"code": "SUCCESS", "type": "SUCCESS", "message": ""}
        assert run["run_type"] == "SUBMIT_RUN"
        assert run["run_name"] == "sdk-nb"
        assert run["end_time"] - run["start_time"] == run["run_duration"] == 12_000
        assert (run["queue_duration"], run["setup_duration"]) == (2000, 1000)
        assert (run["execution_duration"], run["cleanup_duration"]) == (8000, 1000)
        (task,) = run["tasks"]
        assert task["task_key"] == "main"
        assert task["run_id"] != run_id
        assert task["state"]["result_state"] == "SUCCESS"
        assert task["cluster_instance"]["cluster_id"] == CLUSTER
        assert run["run_page_url"].endswith(f"#job/{run_id}/run/{run_id}")
        check_all(started)


async def test_submit_checks_the_body(api: Api) -> None:
    task = {"task_key": "a", "notebook_task": {"notebook_path": "/x"}}
    refused = [
        {},
        {"tasks": []},
        {"tasks": [{"notebook_task": {"notebook_path": "/x"}}]},
        {"tasks": [{"task_key": "bad key!", "notebook_task": {"notebook_path": "/x"}}]},
        {"tasks": [task, task]},
        {"tasks": [{"task_key": "a"}]},
        {"tasks": [{**task, "spark_python_task": {"python_file": "f.py"}}]},
        {"tasks": [{**task, "depends_on": [{"task_key": "ghost"}]}]},
        {"tasks": [task], "idempotency_token": "x" * 65},
        {"tasks": [task], "run_name": 5},
        {"tasks": [task], "timeout_seconds": -1},
    ]
    for body in refused:
        status, answer = await api.call("POST", "runs/submit", body)
        assert status == 400, body
        assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert api.emu.runs_created == 0


async def test_the_idempotency_token_makes_one_run(api: Api) -> None:
    first = await api.submit(idempotency_token="job-123")
    again = await api.submit(idempotency_token="job-123")
    other_body = await api.submit(TWO_TASKS, idempotency_token="job-123")
    assert first == again == other_body
    status, body = await api.call("POST", "run-now", {"job_id": 101, "idempotency_token": "job-123"})
    assert (status, body) == (200, {"run_id": first, "number_in_job": first})
    assert api.emu.runs_created == 1
    assert await api.submit(idempotency_token="job-124") != first
    assert await api.submit() != first  # no token: a new run each time
    assert api.emu.runs_created == 3


async def test_a_lost_submit_answer_can_be_retried_safely(api: Api) -> None:
    api.emu.fail_after_processing_next(1, status=503, path="/runs/submit")
    status, _ = await api.call("POST", "runs/submit", {**NOTEBOOK_SPEC, "idempotency_token": "t-1"})
    assert status == 503
    assert api.emu.runs_created == 1
    run_id = await api.submit(idempotency_token="t-1")
    assert api.emu.run_ids == [run_id]


# -- run-now and jobs ------------------------------------------------------------------------------------


async def test_run_now_applies_the_parameters(emulator_factory: EmulatorFactory, session: Any) -> None:
    clock = Clock()
    async with emulator_factory("databricks", job_duration_s=1, clock=clock) as started:
        assert isinstance(started, DatabricksEmulator)
        api = Api(started, session)
        status, body = await api.call(
            "POST", "run-now", {"job_id": 101, "job_parameters": {"date": "2024-01-01"}}
        )
        assert status == 200
        run_id = body["run_id"]
        assert body["number_in_job"] == run_id
        status, body = await api.call("POST", "run-now", {"job_id": 103, "python_params": ["--fast"]})
        multi = body["run_id"]
        clock.now += 5
        run = await api.run(run_id)
        assert (run["job_id"], run["run_type"], run["run_name"]) == (101, "JOB_RUN", "nightly-etl")
        assert run["job_parameters"] == [{"name": "date", "value": "2024-01-01"}]
        (task,) = run["tasks"]
        assert task["notebook_task"]["base_parameters"] == {"date": "2024-01-01"}
        status, output = await api.call("GET", "runs/get-output", params={"run_id": str(task["run_id"])})
        assert status == 200
        assert json.loads(output["notebook_output"]["result"])["parameters"] == {"date": "2024-01-01"}
        assert output["metadata"]["run_id"] == task["run_id"]
        run = await api.run(multi)
        assert run["overriding_parameters"] == {"python_params": ["--fast"]}
        keys = started.task_run_ids(multi)
        assert list(keys) == ["ingest", "report"]
        status, output = await api.call("GET", "runs/get-output", params={"run_id": str(keys["ingest"])})
        assert '["--fast"]' in output["logs"]
        assert output["logs_truncated"] is False
        check_all(started)


async def test_run_now_of_an_unknown_job_and_the_jobs_endpoints(api: Api) -> None:
    status, body = await api.call("POST", "run-now", {"job_id": 999})
    assert (status, body) == (
        400,
        {"error_code": "INVALID_PARAMETER_VALUE", "message": "Job 999 does not exist."},
    )
    status, body = await api.call("GET", "list")
    assert status == 200
    assert body["has_more"] is False
    assert [job["job_id"] for job in body["jobs"]] == [101, 102, 103]
    assert "tasks" not in body["jobs"][0]["settings"]
    status, body = await api.call("GET", "list", params={"limit": "2", "expand_tasks": "true"})
    assert body["has_more"] is True
    assert len(body["jobs"]) == 2
    assert "tasks" in body["jobs"][0]["settings"]
    status, body = await api.call("GET", "list", params={"page_token": body["next_page_token"]})
    assert [job["job_id"] for job in body["jobs"]] == [103]
    status, body = await api.call("GET", "list", params={"name": "TRAIN-MODEL"})
    assert [job["job_id"] for job in body["jobs"]] == [102]
    status, body = await api.call("GET", "get", params={"job_id": "102"})
    assert status == 200
    assert body["settings"]["tasks"][0]["task_key"] == "train"
    status, body = await api.call("GET", "get", params={"job_id": "7"})
    assert status == 400
    check_all(api.emu)


# -- runs/list -------------------------------------------------------------------------------------------


async def test_runs_list_filters_and_pages(emulator_factory: EmulatorFactory, session: Any) -> None:
    clock = Clock()
    async with emulator_factory("databricks", job_duration_s=10, clock=clock) as started:
        assert isinstance(started, DatabricksEmulator)
        api = Api(started, session)
        status, body = await api.call("GET", "runs/list", params={"active_only": "true"})
        assert (status, body) == (200, {"has_more": False})  # "runs" is left out when empty
        ids = [await api.submit() for _ in range(30)]
        done = ids[:3]
        for run_id in done:
            started.set_state(run_id, life_cycle_state="TERMINATED", result_state="SUCCESS")
        status, body = await api.call("GET", "runs/list", params={"active_only": "true"})
        assert body["has_more"] is True
        assert len(body["runs"]) == 25
        assert "next_page_token" in body
        assert "tasks" not in body["runs"][0]
        listed = [run["run_id"] for run in body["runs"]]
        status, body = await api.call(
            "GET", "runs/list", params={"page_token": body["next_page_token"], "active_only": "true"}
        )
        assert body["has_more"] is False
        assert "prev_page_token" in body
        listed += [run["run_id"] for run in body["runs"]]
        assert sorted(listed) == sorted(set(ids) - set(done))
        assert listed == sorted(listed, reverse=True)  # newest first
        status, body = await api.call(
            "GET", "runs/list", params={"completed_only": "true", "expand_tasks": "true"}
        )
        assert sorted(run["run_id"] for run in body["runs"]) == done
        assert "tasks" in body["runs"][0]
        status, body = await api.call("GET", "runs/list", params={"limit": "5", "offset": "27"})
        assert len(body["runs"]) == 3
        assert body["has_more"] is False
        status, body = await api.call("GET", "runs/list", params={"run_type": "JOB_RUN"})
        assert body == {"has_more": False}
        for params in (
            {"active_only": "true", "completed_only": "true"},
            {"limit": "26"},
            {"active_only": "maybe"},
            {"page_token": "garbage!"},
            {"run_type": "NOPE"},
        ):
            status, body = await api.call("GET", "runs/list", params=params)
            assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), params
        check_all(started)


# -- cancel ----------------------------------------------------------------------------------------------


async def test_cancel_an_active_run(emulator_factory: EmulatorFactory, session: Any) -> None:
    clock = Clock()
    async with emulator_factory("databricks", job_duration_s=10, cancel_duration_s=2, clock=clock) as started:
        assert isinstance(started, DatabricksEmulator)
        api = Api(started, session)
        run_id = await api.submit()
        clock.now += 3
        assert (await api.life(run_id))[0] == "RUNNING"
        assert await api.call("POST", "runs/cancel", {"run_id": run_id}) == (200, {})
        assert await api.life(run_id) == ("TERMINATING", None, "TERMINATING")
        assert await api.call("POST", "runs/cancel", {"run_id": run_id}) == (200, {})  # again: harmless
        clock.now += 2
        run = await api.run(run_id)
        assert (run["state"]["life_cycle_state"], run["state"]["result_state"]) == ("TERMINATED", "CANCELED")
        assert run["state"]["user_cancelled_or_timedout"] is True
        assert run["status"]["termination_details"]["code"] == "USER_CANCELED"
        assert run["tasks"][0]["state"]["result_state"] == "CANCELED"
        assert run["cleanup_duration"] == 2000
        clock.now += 100
        assert await api.life(run_id) == ("TERMINATED", "CANCELED", "TERMINATED")
        check_all(started)


async def test_cancel_is_a_no_op_once_the_run_has_ended_or_is_finishing(
    emulator_factory: EmulatorFactory, session: Any
) -> None:
    clock = Clock()
    async with emulator_factory("databricks", job_duration_s=10, terminating_s=2, clock=clock) as started:
        assert isinstance(started, DatabricksEmulator)
        api = Api(started, session)
        ended = await api.submit()
        finishing = await api.submit()
        clock.now += 9
        assert (await api.life(finishing))[0] == "TERMINATING"
        assert await api.call("POST", "runs/cancel", {"run_id": finishing}) == (200, {})
        clock.now += 2
        assert await api.life(finishing) == ("TERMINATED", "SUCCESS", "TERMINATED")  # the finish wins
        assert await api.call("POST", "runs/cancel", {"run_id": ended}) == (200, {})
        assert await api.life(ended) == ("TERMINATED", "SUCCESS", "TERMINATED")
        status, body = await api.call("POST", "runs/cancel", {"run_id": 5})
        assert (status, body["message"]) == (400, "Run 5 does not exist.")
        status, body = await api.call("POST", "runs/cancel", {})
        assert status == 400
        check_all(started)


async def test_cancel_a_task_run_and_cancel_all(emulator_factory: EmulatorFactory, session: Any) -> None:
    clock = Clock()
    async with emulator_factory("databricks", job_duration_s=10, cancel_duration_s=0, clock=clock) as started:
        assert isinstance(started, DatabricksEmulator)
        api = Api(started, session)
        run_id = await api.submit(TWO_TASKS)
        assert await api.call("POST", "runs/cancel", {"run_id": started.task_run_ids(run_id)["report"]}) == (
            200,
            {},
        )
        assert (await api.life(run_id))[1] == "CANCELED"
        _, body = await api.call("POST", "run-now", {"job_id": 102})
        job_run = body["run_id"]
        other = await api.submit()
        assert await api.call("POST", "runs/cancel-all", {"job_id": 102}) == (200, {})
        assert (await api.life(job_run))[1] == "CANCELED"
        assert (await api.life(other))[0] == "PENDING"
        status, _ = await api.call("POST", "runs/cancel-all", {})
        assert status == 400


# -- forced states ---------------------------------------------------------------------------------------


async def test_every_documented_state_can_be_forced_and_is_valid(api: Api) -> None:
    emu = api.emu
    run_id = await api.submit()
    for life in LIFECYCLE_STATES:
        emu.set_state(run_id, life_cycle_state=life, result_state="FAILED" if life == "TERMINATED" else None)
        run = await api.run(run_id)
        assert run["state"]["life_cycle_state"] == life
        assert run["status"]["state"] in STATUS_STATES
    for result in RESULT_STATES:
        emu.set_state(run_id, life_cycle_state="TERMINATED", result_state=result)
        run = await api.run(run_id)
        assert run["state"]["result_state"] == result
        assert run["status"]["termination_details"]["code"] in TERMINATION_CODES
    for code in TERMINATION_CODES:
        emu.set_state(run_id, status_state="TERMINATED", termination_code=code)
        run = await api.run(run_id)
        assert run["status"]["termination_details"]["code"] == code
        assert "result_state" not in run["state"]  # none given: the newer field alone
    for status in STATUS_STATES:
        emu.set_state(run_id, status_state=status)
        run = await api.run(run_id)
        assert run["status"]["state"] == status
    emu.set_state(run_id, life_cycle_state="WAITING_FOR_RETRY")
    assert (await api.run(run_id))["status"]["state"] == "WAITING"
    emu.set_state(run_id, life_cycle_state="SKIPPED")
    run = await api.run(run_id)
    assert run["status"] == {
        "state": "TERMINATED",
        "termination_details": {"code": "SKIPPED", "type": "SUCCESS", "message": ""},
    }
    check_all(emu, at_least=40)


async def test_set_state_refuses_undocumented_values_unless_asked(api: Api) -> None:
    run_id = await api.submit()
    with pytest.raises(ConfigurationError, match="not documented"):
        api.emu.set_state(run_id, life_cycle_state="FINISHED")
    with pytest.raises(ConfigurationError, match="not documented"):
        api.emu.set_state(run_id, life_cycle_state="TERMINATED", result_state="PARTIAL")
    with pytest.raises(ConfigurationError):
        api.emu.set_state(run_id)
    with pytest.raises(KeyError):
        api.emu.set_state(77, life_cycle_state="RUNNING")
    api.emu.set_state(run_id, life_cycle_state="FINISHED", strict=False)
    assert (await api.life(run_id))[0] == "FINISHED"
    api.emu.clear_state(run_id)
    assert (await api.life(run_id))[0] == "PENDING"
    assert await api.emu.state_of(run_id) == ("PENDING", None)


@pytest.mark.parametrize("held", ["QUEUED", "BLOCKED", "WAITING_FOR_RETRY", "PENDING", "RUNNING"])
async def test_a_held_active_run_stays_active_and_can_be_cancelled(
    emulator_factory: EmulatorFactory, session: Any, held: str
) -> None:
    clock = Clock()
    async with emulator_factory("databricks", job_duration_s=1, cancel_duration_s=1, clock=clock) as started:
        assert isinstance(started, DatabricksEmulator)
        api = Api(started, session)
        run_id = await api.submit()
        started.set_state(run_id, life_cycle_state=held)
        clock.now += 100
        assert (await api.life(run_id))[0] == held
        assert await api.call("POST", "runs/cancel", {"run_id": run_id}) == (200, {})
        assert (await api.life(run_id))[0] == "TERMINATING"
        clock.now += 1
        assert await api.life(run_id) == ("TERMINATED", "CANCELED", "TERMINATED")


# -- get-output ------------------------------------------------------------------------------------------


async def test_get_output(emulator_factory: EmulatorFactory, session: Any) -> None:
    clock = Clock()
    async with emulator_factory("databricks", job_duration_s=1, clock=clock) as started:
        assert isinstance(started, DatabricksEmulator)
        api = Api(started, session)
        single = await api.submit()
        multi = await api.submit(TWO_TASKS)
        status, body = await api.call("GET", "runs/get-output", params={"run_id": str(single)})
        assert status == 200
        assert set(body) == {"metadata"}
        clock.now += 2
        status, body = await api.call("GET", "runs/get-output", params={"run_id": str(single)})
        assert json.loads(body["notebook_output"]["result"]) == {
            "notebook_path": "/Users/me@example.com/nb",
            "parameters": {"x": "1"},
            "task_key": "main",
        }
        assert body["metadata"]["state"]["result_state"] == "SUCCESS"
        status, body = await api.call("GET", "runs/get-output", params={"run_id": str(multi)})
        assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
        assert body["message"].startswith(
            "Retrieving the output of runs with multiple tasks is not supported."
        )
        report = started.task_run_ids(multi)["report"]
        started.set_output(multi, "report", notebook_output={"result": "42", "truncated": False})
        status, body = await api.call("GET", "runs/get-output", params={"run_id": str(report)})
        assert body["notebook_output"]["result"] == "42"
        with pytest.raises(KeyError):
            started.set_output(multi, "nope", logs="")
        failed = await api.submit()
        started.set_state(failed, life_cycle_state="TERMINATED", result_state="FAILED", state_message="boom")
        status, body = await api.call("GET", "runs/get-output", params={"run_id": str(failed)})
        assert body["error"] == "boom"
        assert "boom" in body["error_trace"]
        assert body["notebook_output"] == {}
        status, body = await api.call("GET", "runs/get-output", params={"run_id": "99999"})
        assert (status, body["message"]) == (400, "Run 99999 does not exist.")
        check_all(started)


# -- the 2.1 paths ---------------------------------------------------------------------------------------


async def test_the_2_1_paths_are_served_too(api: Api) -> None:
    status, body = await api.call("POST", "/api/2.1/jobs/runs/submit", NOTEBOOK_SPEC)
    assert status == 200
    status, run = await api.call("GET", "/api/2.1/jobs/runs/get", params={"run_id": str(body["run_id"])})
    assert status == 200
    assert run["run_id"] == body["run_id"]
    assert check_all(api.emu) == ["GET /api/2.1/jobs/runs/get", "POST /api/2.1/jobs/runs/submit"]


# -- our backend's traffic, checked against the description -------------------------------------------


async def test_the_backends_requests_and_answers_match_the_description(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory("databricks", job_duration_s=0.2, cancel_duration_s=0.1) as started:
        assert isinstance(started, DatabricksEmulator)
        polling = PollingPolicy(min_interval_s=0.02, max_interval_s=0.1)
        async with Sdk("databricks", polling=polling, **started.credentials) as sdk:
            jobs = [sdk.create_job(program=spec) for spec in (NOTEBOOK_SPEC, TWO_TASKS, {"job_id": 101})]
            with anyio.fail_after(15):
                async with anyio.create_task_group() as tg:
                    for job in jobs:
                        tg.start_soon(job.execute)
            assert all(job.completed for job in jobs)
            slow = sdk.create_job(program={"job_id": 102, "python_named_params": {"lr": "0.1"}})
            await slow.submit()
            started.set_state(int(slow.task_id or 0), life_cycle_state="RUNNING")
            with anyio.fail_after(10):
                await slow.cancel()
            assert slow.state.value == "CANCELLED"
        operations = check_all(started, at_least=10)
    assert {
        "GET /api/2.1/jobs/runs/get",
        "GET /api/2.1/jobs/runs/get-output",
        "GET /api/2.1/jobs/runs/list",
        "POST /api/2.1/jobs/run-now",
        "POST /api/2.1/jobs/runs/cancel",
        "POST /api/2.1/jobs/runs/submit",
    } <= set(operations)


# -- the official client ---------------------------------------------------------------------------------


def _official_client_flow(host: str, token: str) -> dict[str, Any]:
    """What a user of databricks-sdk does (runs in a worker thread: the client is synchronous)."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service import jobs

    client = WorkspaceClient(host=host, token=token, auth_type="pat")
    waiter = client.jobs.submit(
        run_name="sdk-nb",
        tasks=[
            jobs.SubmitTask(
                task_key="main",
                existing_cluster_id=CLUSTER,
                notebook_task=jobs.NotebookTask(notebook_path="/Users/me@example.com/nb"),
            )
        ],
        idempotency_token="official-1",
    )
    run_id = waiter.run_id
    read = client.jobs.get_run(run_id)
    assert read.tasks is not None
    assert read.state is not None
    assert read.status is not None
    ended = client.jobs.cancel_run_and_wait(run_id, timeout=timedelta(seconds=20))
    assert ended.state is not None
    assert ended.status is not None
    details = ended.status.termination_details
    assert details is not None
    assert details.code is not None
    listed = list(client.jobs.list_runs(active_only=True))
    job_ids = [job.job_id for job in client.jobs.list()]
    return {
        "run_id": run_id,
        "first": (read.state.life_cycle_state.value if read.state.life_cycle_state else None),
        "first_v2": read.status.state.value if read.status.state else None,
        "tasks": [task.task_key for task in read.tasks],
        "final": ended.state.life_cycle_state.value if ended.state.life_cycle_state else None,
        "result": ended.state.result_state.value if ended.state.result_state else None,
        "code": details.code.value,
        "active_after": [run.run_id for run in listed],
        "jobs": job_ids,
        "thread": threading.current_thread() is not threading.main_thread(),
    }


async def test_the_official_databricks_sdk_submits_reads_and_cancels(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory(
        # TERMINATING for 0.9 s: the client reads it at once after the cancel, then sleeps >= 1 s
        "databricks",
        job_duration_s=30,
        pending_s=0,
        cancel_duration_s=0.9,
    ) as started:
        assert isinstance(started, DatabricksEmulator)
        with anyio.fail_after(30):
            seen = await anyio.to_thread.run_sync(_official_client_flow, started.base_url, started.token)
        assert seen["thread"] is True
        assert (seen["first"], seen["first_v2"], seen["tasks"]) == ("RUNNING", "RUNNING", ["main"])
        assert (seen["final"], seen["result"], seen["code"]) == ("TERMINATED", "CANCELED", "USER_CANCELED")
        assert seen["active_after"] == []
        assert seen["jobs"] == [101, 102, 103]
        assert started.runs_created == 1
        # the client sent its calls on the 2.2 paths, with our token, and polled until TERMINATED
        calls = [(r.method, r.path) for r in started.requests]
        assert calls[0] == ("GET", "/.well-known/databricks-config")
        assert ("POST", f"{API}/runs/submit") in calls
        assert ("POST", f"{API}/runs/cancel") in calls
        cancel_at = calls.index(("POST", f"{API}/runs/cancel"))
        polls = [c for c in calls[cancel_at + 1 :] if c == ("GET", f"{API}/runs/get")]
        assert len(polls) >= 2  # TERMINATING first, then TERMINATED after the client's back-off
        submitted = next(e for e in started.exchanges if e.path.endswith("/runs/submit"))
        assert submitted.body["idempotency_token"] == "official-1"
        check_all(started, at_least=5)
