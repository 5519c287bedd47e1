"""The OQC QCaaS emulator: every endpoint and error shape (plain aiohttp), then the published client.

The published ``oqc-qcaas-client`` (a test-only dependency) is synchronous: it runs in a worker
thread while the emulator serves on the event loop.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import anyio
import anyio.to_thread
import pytest

from oqc_style_sdk.exceptions import ConfigurationError
from oqc_style_sdk.testing.oqc import (
    LUCY_QPU_ID,
    SIMULATOR_QPU_ID,
    TASK_STATUSES,
    OqcEmulator,
    OqcQpu,
    shots_from_config,
)
from oqc_style_sdk.testing.pytest_plugin import EmulatorFactory
from tests.common import BELL3

PROGRAM = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
BAD_PROGRAM = PROGRAM.replace("2.0", "5.0")
INACTIVE_QPU_ID = "qpu:uk:3:9829a5504f"
ERROR_NOT_FOUND = {"response": {"errors": ["Task not found"]}}


def config(repeats: int | None) -> str:
    """A CompilerConfig JSON string as ``compiler_config`` 0.2.0 writes it (VENDORS.md §5)."""
    return json.dumps(
        {
            "$type": "<class 'compiler_config.config.CompilerConfig'>",
            "$data": {
                "repeats": repeats,
                "repetition_period": None,
                "results_format": {
                    "$type": "<class 'compiler_config.config.QuantumResultsFormat'>",
                    "$data": {
                        "format": {
                            "$type": "<enum 'compiler_config.config.InlineResultsProcessing'>",
                            "$value": 1,
                        },
                        "transforms": {
                            "$type": "<enum 'compiler_config.config.ResultsFormatting'>",
                            "$value": 3,
                        },
                    },
                },
            },
        }
    )


class Api:
    """A thin aiohttp client of the emulator: one session, the token, a QPU's URL."""

    def __init__(self, emu: OqcEmulator, session: aiohttp.ClientSession, qpu_id: str = LUCY_QPU_ID) -> None:
        self.emu = emu
        self.session = session
        self.qpu_id = qpu_id
        self.qpu_url = emu.qpu_url(qpu_id)

    async def call(
        self, method: str, url: str, body: Any = None, *, token: str | None = ""
    ) -> tuple[int, Any]:
        headers = {}
        if token is not None:
            headers["Authentication-Token"] = token or self.emu.token
        if not url.startswith("http"):
            url = self.qpu_url + url
        async with self.session.request(method, url, json=body, headers=headers) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None

    async def reserve(self, count: int, tag: str | None = None) -> list[str]:
        status, ids = await self.call(
            "POST", "/tasks", {"qpu_id": self.qpu_id, "task_count": count, "tag": tag}
        )
        assert status == 200, ids
        assert isinstance(ids, list)
        return ids

    async def submit(self, *tasks: dict[str, Any]) -> tuple[int, Any]:
        return await self.call("POST", "/tasks/submit", {"tasks": list(tasks)})

    def task(
        self, program: str = PROGRAM, repeats: int | None = 100, task_id: Any = None, **extra: Any
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "program": program,
            "config": config(repeats),
            "qpu_id": self.qpu_id,
            "tag": "",
        }
        if task_id is not None:
            body["task_id"] = task_id
        return body | extra

    async def submit_one(self, program: str = PROGRAM, repeats: int | None = 100) -> str:
        status, answer = await self.submit(self.task(program, repeats))
        assert status == 200, answer
        task_id = answer[0]["task_id"]
        assert isinstance(task_id, str)
        return task_id

    async def status(self, task_id: str) -> str:
        code, body = await self.call("GET", f"/tasks/{task_id}/status")
        assert code == 200, body
        assert body["status"] in TASK_STATUSES
        return str(body["status"])

    async def wait(self, task_id: str, *until: str, timeout_s: float = 20) -> list[str]:
        """Poll (20 ms) until the status is one of ``until``; return every status seen."""
        seen: list[str] = []
        with anyio.fail_after(timeout_s):
            while True:
                status = await self.status(task_id)
                if not seen or seen[-1] != status:
                    seen.append(status)
                if status in until:
                    return seen
                await anyio.sleep(0.02)


@pytest.fixture
def api(oqc_emulator: OqcEmulator, session: aiohttp.ClientSession) -> Api:
    return Api(oqc_emulator, session)


# -- authentication and the control plane ----------------------------------------------------------------


async def test_version_needs_no_token(api: Api) -> None:
    status, body = await api.call("GET", api.emu.base_url + "/admin/version", token=None)
    assert status == 200
    assert isinstance(body["version"], str)


@pytest.mark.parametrize("token", [None, "wrong-token"])
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/admin/qpu"), ("GET", "/admin/qpu/" + LUCY_QPU_ID), ("POST", "/d865b5a184/tasks/submit")],
)
async def test_401_without_or_with_a_wrong_token(api: Api, token: str | None, method: str, path: str) -> None:
    status, body = await api.call(method, api.emu.base_url + path, {"tasks": []}, token=token)
    assert status == 401
    assert body == {"response": {"errors": ["Authentication Error"]}}


async def test_login_logout_and_token_expiry(api: Api) -> None:
    base = api.emu.base_url
    status, body = await api.call("POST", base + "/admin/logout", {}, token=None)
    assert (status, body) == (200, {"meta": {"code": 200}, "response": {}})
    credentials = {"email": api.emu.email, "password": api.emu.password}
    status, body = await api.call(
        "POST", base + "/admin/login?include_auth_token=true", credentials, token=None
    )
    assert status == 200
    assert body["response"]["user"]["authentication_token"] == api.emu.token
    status, body = await api.call("POST", base + "/admin/login", credentials, token=None)
    assert "authentication_token" not in body["response"]["user"]
    wrong = {"email": api.emu.email, "password": "nope"}
    status, body = await api.call("POST", base + "/admin/login?include_auth_token=true", wrong, token=None)
    assert (status, body) == (400, {"response": {"errors": ["Invalid email or password"]}})
    status, body = await api.call("GET", base + f"/admin/auth_tokens/{api.emu.token}")
    assert status == 200
    assert datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%S") > datetime.now() + timedelta(days=1)
    status, body = await api.call("GET", base + "/admin/auth_tokens/other")
    assert (status, body) == (404, {"response": {"errors": ["Token not found"]}})
    # Secrets never reach the request log.
    assert api.emu.token not in repr(api.emu.requests)
    assert api.emu.password not in repr(api.emu.requests)


async def test_qpu_list(api: Api) -> None:
    status, body = await api.call("GET", api.emu.base_url + "/admin/qpu?per_page=1000")
    assert status == 200
    items = {item["id"]: item for item in body["items"]}
    assert body["total"] == len(items) == 3
    lucy, simulator, inactive = items[LUCY_QPU_ID], items[SIMULATOR_QPU_ID], items[INACTIVE_QPU_ID]
    assert (lucy["name"], lucy["status"], lucy["active"]) == ("Lucy", "ACTIVE", True)
    assert (simulator["name"], simulator["status"], simulator["active"]) == ("Simulator", "ACTIVE", True)
    assert (inactive["status"], inactive["active"]) == ("INACTIVE", False)
    for item in items.values():
        assert set(item) == {
            "id",
            "name",
            "url",
            "active",
            "status",
            "region",
            "generation",
            "feature_set",
            "price_per_shot",
            "price_per_task",
        }
        assert isinstance(item["feature_set"], str)  # a JSON *string*
        assert isinstance(json.loads(item["feature_set"])["qubit_count"], int)
    assert lucy["url"] == api.emu.base_url + "/d865b5a184"
    status, one = await api.call("GET", api.emu.base_url + "/admin/qpu/" + LUCY_QPU_ID)
    assert (status, one) == (200, lucy)
    status, missing = await api.call("GET", api.emu.base_url + "/admin/qpu/qpu:uk:0:nope")
    assert (status, missing) == (404, {"response": {"errors": ["QPU not found"]}})
    status, page = await api.call("GET", api.emu.base_url + "/admin/qpu?per_page=2&page=2")
    assert [item["id"] for item in page["items"]] == [INACTIVE_QPU_ID]
    status, _ = await api.call("GET", api.emu.base_url + "/admin/qpu?per_page=x")
    assert status == 400


# -- the task lifecycle ------------------------------------------------------------------------------------


async def test_reserve_then_submit_runs_to_completion(
    emulator_factory: EmulatorFactory, session: Any
) -> None:
    async with emulator_factory("oqc", job_duration_s=0.2) as emu:
        assert isinstance(emu, OqcEmulator)
        api = Api(emu, session)
        first, second = await api.reserve(2, tag="batch")
        assert await api.status(first) == "CREATED"
        status, results = await api.call("GET", f"/tasks/{first}/results")
        assert (status, results) == (200, {"results": None})
        status, answer = await api.submit(api.task(BELL3, 100, first), api.task(PROGRAM, 250, second))
        assert (status, answer) == (200, [{"task_id": first}, {"task_id": second}])
        assert await api.status(first) in ("SUBMITTED", "RUNNING")  # it lasts at least 0.2 s
        seen = await api.wait(first, "COMPLETED", "FAILED")
        assert seen[-1] == "COMPLETED"
        assert set(seen) <= {"SUBMITTED", "RUNNING", "COMPLETED"}
        await api.wait(second, "COMPLETED")
        assert emu.engine_runs == 2

        status, body = await api.call("GET", f"/tasks/{first}/results")
        counts = body["results"]["c"]
        assert sum(counts.values()) == 100
        assert set(counts) <= {"00", "11"}  # a Bell pair
        _, body = await api.call("GET", f"/tasks/{second}/results")
        assert sum(body["results"]["c"].values()) == 250
        assert await api.call("GET", f"/tasks/{first}/error") == (200, {"task_error": None})

        status, metadata = await api.call("GET", f"/tasks/{first}/metadata")
        assert metadata["metadata"]["id"] == first
        assert metadata["metadata"]["qpu_id"] == LUCY_QPU_ID
        assert metadata["metadata"]["tag"] == "batch"
        assert metadata["metadata"]["config"] == config(100)
        assert metadata["metadata"]["created_at"].endswith(" GMT")
        status, execution = await api.call("GET", f"/tasks/{first}/execution_metadata")
        assert execution["execution_metadata"]["num_qubits"] == 2
        assert execution["execution_metadata"]["gate_counts"]["cx"] == 1
        status, timings = await api.call("GET", f"/tasks/{first}/timings")
        assert {"SERVER_RECEIVED", "SERVER_DEQUEUED", "RECEIVER_FROM_SCC"} <= set(timings["timings"])
        status, info = await api.call("GET", f"/tasks/{first}/all_info")
        assert status == 200
        assert info["task_id"] == first
        assert info["status"] == "COMPLETED"
        assert info["results"] == {"c": counts}
        assert info["task_error"] is None
        assert info["metadata"] == metadata["metadata"]
        assert info["execution_metadata"] == execution["execution_metadata"]
        assert info["timings"] == timings["timings"]


async def test_submitted_while_queued_running_while_running(
    emulator_factory: EmulatorFactory, session: Any
) -> None:
    async with emulator_factory("oqc", job_duration_s=0.3, max_concurrency=1) as emu:
        assert isinstance(emu, OqcEmulator)
        api = Api(emu, session)
        first = await api.submit_one()
        second = await api.submit_one()
        await api.wait(first, "RUNNING")
        assert await api.status(second) == "SUBMITTED"  # the only slot is taken for >= 0.3 s
        assert (await api.wait(second, "COMPLETED"))[-1] == "COMPLETED"
        assert await api.status(first) == "COMPLETED"


async def test_resubmitting_a_task_id_does_not_run_it_twice(api: Api) -> None:
    (task_id,) = await api.reserve(1)
    body = api.task(PROGRAM, 100, task_id)
    assert await api.submit(body) == (200, [{"task_id": task_id}])
    assert await api.submit(body) == (200, [{"task_id": task_id}])  # still running: same id
    await api.wait(task_id, "COMPLETED")
    assert await api.submit(body) == (200, [{"task_id": task_id}])  # finished: same id, not rerun
    assert await api.status(task_id) == "COMPLETED"
    assert api.emu.engine_runs == 1


async def test_a_lost_submit_response_can_be_retried_safely(api: Api) -> None:
    (task_id,) = await api.reserve(1)
    api.emu.fail_after_processing_next(1, status=503, path="/tasks/submit")
    status, _ = await api.submit(api.task(PROGRAM, 100, task_id))
    assert status == 503  # the client cannot know the task was created ...
    assert await api.submit(api.task(PROGRAM, 100, task_id)) == (200, [{"task_id": task_id}])
    await api.wait(task_id, "COMPLETED")
    assert api.emu.engine_runs == 1  # ... and retrying with its id ran it once


async def test_unreserved_task_id_is_refused_and_nothing_is_submitted(api: Api) -> None:
    (reserved,) = await api.reserve(1)
    stranger = str(uuid.uuid4())
    status, body = await api.submit(api.task(task_id=reserved), api.task(task_id=stranger))
    assert status == 400
    assert body == {"response": {"errors": [f"task_id '{stranger}' was not reserved on this QPU"]}}
    assert await api.status(reserved) == "CREATED"
    assert api.emu.engine_runs == 0
    # Reserved on another QPU: not this endpoint's.
    other = Api(api.emu, api.session, SIMULATOR_QPU_ID)
    (elsewhere,) = await other.reserve(1)
    status, _ = await api.submit(api.task(task_id=elsewhere))
    assert status == 400


async def test_server_assigned_ids(api: Api) -> None:
    status, answer = await api.submit(api.task(), api.task(task_id=-1))
    assert status == 200
    ids = [item["task_id"] for item in answer]
    assert len(set(ids)) == 2
    for task_id in ids:
        uuid.UUID(task_id)
        await api.wait(task_id, "COMPLETED")
    assert api.emu.task_ids == ids


async def test_openqasm_5_fails_with_the_parser_message(api: Api) -> None:
    task_id = await api.submit_one(BAD_PROGRAM)
    assert (await api.wait(task_id, "COMPLETED", "FAILED"))[-1] == "FAILED"
    status, body = await api.call("GET", f"/tasks/{task_id}/error")
    assert status == 200
    error = body["task_error"]
    assert "5.0" in error["error_message"]
    assert error["error_code"] == 400
    assert await api.call("GET", f"/tasks/{task_id}/results") == (200, {"results": None})
    _, info = await api.call("GET", f"/tasks/{task_id}/all_info")
    assert info["task_error"] == error


async def test_shots_come_from_the_config(api: Api) -> None:
    assert shots_from_config(config(7)) == (7, None)
    assert shots_from_config(config(None)) == (1000, None)
    assert shots_from_config("not json") == (1000, None)
    assert shots_from_config(None) == (1000, None)
    assert shots_from_config({"$data": "odd"}) == (1000, None)
    assert shots_from_config({"repeats": 3}) == (3, None)
    default = await api.submit_one(repeats=None)
    _, answer = await api.submit({"program": PROGRAM, "qpu_id": LUCY_QPU_ID, "config": "{not json"})
    garbled = answer[0]["task_id"]
    invalid = await api.submit_one(repeats=0)
    for task_id in (default, garbled):
        await api.wait(task_id, "COMPLETED")
        _, body = await api.call("GET", f"/tasks/{task_id}/results")
        assert sum(body["results"]["c"].values()) == 1000
    assert await api.status(invalid) == "FAILED"
    _, body = await api.call("GET", f"/tasks/{invalid}/error")
    assert body["task_error"]["error_code"] == 400
    assert "repeats" in body["task_error"]["error_message"]
    empty = await api.submit_one(program="   ")
    assert await api.status(empty) == "FAILED"


async def test_malformed_submissions_are_refused(api: Api) -> None:
    body: Any
    for body in (None, {}, {"tasks": []}, {"tasks": ["x"]}, {"tasks": [{"config": "{}"}]}):
        status, answer = await api.call("POST", "/tasks/submit", body)
        assert status == 400
        assert set(answer) == {"response"}
    status, _ = await api.submit(api.task(qpu_id=SIMULATOR_QPU_ID))
    assert status == 400
    status, _ = await api.submit(api.task(tag=5))
    assert status == 400
    async with api.session.post(
        api.qpu_url + "/tasks/submit", data=b"{oops", headers={"Authentication-Token": api.emu.token}
    ) as response:
        assert response.status == 400
        assert await response.json() == {"response": {"errors": ["The request body is not valid JSON"]}}
    for body in (
        {"task_count": 0},
        {"task_count": "2"},
        {"task_count": 1, "tag": 3},
        {"qpu_id": "other"},
        [],
    ):
        status, _ = await api.call("POST", "/tasks", body)
        assert status == 400
    assert api.emu.engine_runs == 0


async def test_cancel_many(emulator_factory: EmulatorFactory, session: Any) -> None:
    async with emulator_factory("oqc", job_duration_s=30, max_concurrency=4) as emu:
        assert isinstance(emu, OqcEmulator)
        api = Api(emu, session)
        running = await api.submit_one()
        await api.wait(running, "RUNNING")
        (reserved,) = await api.reserve(1)
        emu.job_duration_s = 0
        finished = await api.submit_one()
        await api.wait(finished, "COMPLETED")
        unknown = str(uuid.uuid4())
        status, body = await api.call(
            "POST", "/tasks/cancel_many", {"tasks": [running, finished, unknown, reserved]}
        )
        assert status == 200
        assert body == {
            "tasks": [
                {"task_id": running, "cancelled": True, "status": "CANCELLED", "detail": "cancelled"},
                {
                    "task_id": finished,
                    "cancelled": False,
                    "status": "COMPLETED",
                    "detail": "already finished",
                },
                {"task_id": unknown, "cancelled": False, "status": None, "detail": "Task not found"},
                {"task_id": reserved, "cancelled": True, "status": "CANCELLED", "detail": "cancelled"},
            ]
        }
        assert await api.status(running) == "CANCELLED"
        assert await api.status(finished) == "COMPLETED"
        assert await api.call("GET", f"/tasks/{running}/results") == (200, {"results": None})
        # A cancelled reserved id is never run, even when submitted afterwards.
        assert await api.submit(api.task(task_id=reserved)) == (200, [{"task_id": reserved}])
        assert await api.status(reserved) == "CANCELLED"
        assert emu.engine_runs == 2
        status, _ = await api.call("POST", "/tasks/cancel_many", {"tasks": "all"})
        assert status == 400


async def test_expired_via_the_knob(api: Api) -> None:
    task_id = await api.submit_one()
    (reserved,) = await api.reserve(1)
    await api.emu.expire(task_id)
    await api.emu.expire(reserved)
    assert await api.status(task_id) == "EXPIRED"
    assert await api.status(reserved) == "EXPIRED"
    assert await api.call("GET", f"/tasks/{task_id}/results") == (200, {"results": None})
    assert await api.call("GET", f"/tasks/{task_id}/error") == (200, {"task_error": None})
    _, body = await api.call("POST", "/tasks/cancel_many", {"tasks": [task_id]})
    assert body["tasks"][0]["detail"] == "already finished"
    with pytest.raises(KeyError):
        await api.emu.expire("nope")


async def test_expired_via_expire_after_s(emulator_factory: EmulatorFactory, session: Any) -> None:
    now = [1000.0]
    async with emulator_factory("oqc", job_duration_s=30, expire_after_s=60, clock=lambda: now[0]) as emu:
        assert isinstance(emu, OqcEmulator)
        api = Api(emu, session)
        task_id = await api.submit_one()
        (reserved,) = await api.reserve(1)
        now[0] += 59.9
        assert await api.status(task_id) in ("SUBMITTED", "RUNNING")
        assert await api.status(reserved) == "CREATED"
        now[0] += 0.1
        assert await api.status(task_id) == "EXPIRED"
        assert await api.status(reserved) == "EXPIRED"
        assert await emu.status_of(task_id) == "EXPIRED"
        _, listing = await api.call("GET", "/tasks")
        assert [item["status"] for item in listing] == ["EXPIRED", "EXPIRED"]


async def test_finished_tasks_do_not_expire(emulator_factory: EmulatorFactory, session: Any) -> None:
    now = [0.0]
    async with emulator_factory("oqc", job_duration_s=0, expire_after_s=10, clock=lambda: now[0]) as emu:
        assert isinstance(emu, OqcEmulator)
        api = Api(emu, session)
        task_id = await api.submit_one()
        await api.wait(task_id, "COMPLETED")
        now[0] += 100
        assert await api.status(task_id) == "COMPLETED"


async def test_set_status_knob(api: Api) -> None:
    task_id = await api.submit_one()
    await api.wait(task_id, "COMPLETED")
    await api.emu.set_status(task_id, "RUNNING")
    assert await api.status(task_id) == "RUNNING"
    await api.emu.set_status(task_id, "UNKNOWN")
    assert await api.status(task_id) == "UNKNOWN"
    await api.emu.set_status(task_id, None)
    assert await api.status(task_id) == "COMPLETED"
    await api.emu.set_status(task_id, "FAILED", error_message="calibration drifted", error_code=503)
    assert await api.call("GET", f"/tasks/{task_id}/error") == (
        200,
        {"task_error": {"error_message": "calibration drifted", "error_code": 503}},
    )
    assert await api.call("GET", f"/tasks/{task_id}/results") == (200, {"results": None})
    other = await api.submit_one()
    await api.emu.set_status(other, "FAILED")
    _, body = await api.call("GET", f"/tasks/{other}/error")
    assert body["task_error"]["error_code"] == 500
    with pytest.raises(ConfigurationError):
        await api.emu.set_status(other, "DONE")
    with pytest.raises(KeyError):
        await api.emu.set_status("nope", "FAILED")


async def test_inactive_qpu_holds_tasks_until_activated(api: Api) -> None:
    offline = Api(api.emu, api.session, INACTIVE_QPU_ID)
    task_id = await offline.submit_one()
    assert await offline.status(task_id) == "SUBMITTED"
    assert api.emu.engine_runs == 0
    await api.emu.set_qpu_active(INACTIVE_QPU_ID, True)
    await offline.wait(task_id, "COMPLETED")
    _, body = await api.call("GET", api.emu.base_url + "/admin/qpu/" + INACTIVE_QPU_ID)
    assert body["status"] == "ACTIVE"
    await api.emu.set_qpu_active(INACTIVE_QPU_ID, False)
    with pytest.raises(KeyError):
        await api.emu.set_qpu_active("qpu:nope", True)


async def test_404_shapes(api: Api) -> None:
    unknown = str(uuid.uuid4())
    for endpoint in ("status", "all_info", "results", "error", "metadata", "execution_metadata", "timings"):
        assert await api.call("GET", f"/tasks/{unknown}/{endpoint}") == (404, ERROR_NOT_FOUND)
    # A task is found only under its own QPU's URL.
    task_id = await api.submit_one()
    other = Api(api.emu, api.session, SIMULATOR_QPU_ID)
    assert await other.call("GET", f"/tasks/{task_id}/status") == (404, ERROR_NOT_FOUND)
    status, body = await api.call("GET", api.emu.base_url + f"/nowhere/tasks/{task_id}/status")
    assert (status, body) == (404, {"response": {"errors": ["QPU not found"]}})
    status, body = await api.call("GET", api.emu.base_url + "/not/a/route/at/all")
    assert (status, body) == (404, {"response": {"errors": ["Not Found"]}})
    status, body = await api.call("GET", "/tasks/submit")
    assert (status, body) == (405, {"response": {"errors": ["Method Not Allowed"]}})


async def test_tasks_listing(api: Api) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    first = await api.submit_one()
    (reserved,) = await api.reserve(1, tag="t")
    await Api(api.emu, api.session, SIMULATOR_QPU_ID).submit_one()  # another QPU: not listed
    status, listing = await api.call("GET", "/tasks")
    assert status == 200
    assert [item["task_id"] for item in listing] == [first, reserved]
    assert listing[1] == {
        "task_id": reserved,
        "qpu_id": LUCY_QPU_ID,
        "status": "CREATED",
        "tag": "t",
        "created_at": listing[1]["created_at"],
    }
    after = datetime.now(UTC) + timedelta(seconds=1)
    naive = before.replace(tzinfo=None)  # the client sends str(datetime): naive means UTC here
    _, within = await api.call(
        "GET", f"/tasks?start_date={naive}&end_date={after.isoformat()}".replace("+", "%2B")
    )
    assert len(within) == 2
    _, later = await api.call("GET", f"/tasks?start_date={after.date() + timedelta(days=1)}")
    assert later == []
    status, body = await api.call("GET", "/tasks?start_date=yesterday")
    assert (status, body) == (400, {"response": {"errors": ["start_date is not a date: 'yesterday'"]}})


async def test_windows_and_wait_times(api: Api) -> None:
    assert await api.call("GET", "/windows/next") == (200, {})
    await api.submit_one()
    status, body = await api.call("POST", "/monitoring/qpu_wait_time", {"targets": [LUCY_QPU_ID, "qpu:nope"]})
    assert status == 200
    (wait,) = body["qpu_wait_times"]
    assert wait["qpu_id"] == LUCY_QPU_ID
    assert wait["tasks_in_queue"] in (0, 1)
    status, _ = await api.call("POST", "/monitoring/qpu_wait_time", {})
    assert status == 400


ENDPOINTS: list[tuple[str, str, Any]] = [
    ("GET", "/admin/version", None),
    ("GET", "/admin/qpu?per_page=1000", None),
    ("GET", "/admin/qpu/" + LUCY_QPU_ID, None),
    ("POST", "/d865b5a184/tasks", {"qpu_id": LUCY_QPU_ID, "task_count": 1, "tag": None}),
    ("POST", "/d865b5a184/tasks/submit", {"tasks": [{"program": PROGRAM, "config": config(10)}]}),
    ("GET", "/d865b5a184/tasks/{id}/status", None),
    ("GET", "/d865b5a184/tasks/{id}/all_info", None),
    ("GET", "/d865b5a184/tasks/{id}/results", None),
    ("GET", "/d865b5a184/tasks/{id}/error", None),
    ("GET", "/d865b5a184/tasks/{id}/metadata", None),
    ("GET", "/d865b5a184/tasks/{id}/execution_metadata", None),
    ("GET", "/d865b5a184/tasks/{id}/timings", None),
    ("GET", "/d865b5a184/tasks", None),
    ("POST", "/d865b5a184/tasks/cancel_many", {"tasks": ["{id}"]}),
    ("GET", "/d865b5a184/windows/next", None),
    ("POST", "/d865b5a184/monitoring/qpu_wait_time", {"targets": [LUCY_QPU_ID]}),
]


async def test_every_fault_knob_works_on_every_endpoint(api: Api) -> None:
    task_id = await api.submit_one()
    base = api.emu.base_url
    for method, template, body in ENDPOINTS:
        path = template.replace("{id}", task_id)
        payload = json.loads(json.dumps(body).replace("{id}", task_id)) if body is not None else None
        route = path.split("?")[0]
        api.emu.fail_next(1, status=503, path=route, method=method, retry_after=2)
        status, answer = await api.call(method, base + path, payload)
        assert (status, answer) == (503, {"response": {"errors": ["Service Unavailable"]}}), path
        # aiohttp (3.14) resends an idempotent request (GET) once after a disconnect: drop both.
        api.emu.drop_next(2 if method == "GET" else 1, path=route, method=method)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.call(method, base + path, payload)
        api.emu.clear_faults()  # in case a client version no longer resends
        api.emu.malformed_next(1, path=route, method=method)
        with pytest.raises(json.JSONDecodeError):
            await api.call(method, base + path, payload)
        api.emu.malformed_next(1, path=route, method=method, truncated=True)
        with pytest.raises(aiohttp.ClientPayloadError):
            await api.call(method, base + path, payload)
        api.emu.slow_next(1, delay_s=0.01, path=route, method=method)
        status, _ = await api.call(method, base + path, payload)
        assert status == 200, path
        api.emu.fail_after_processing_next(1, status=500, path=route, method=method)
        status, _ = await api.call(method, base + path, payload)
        assert status == 500
        status, _ = await api.call(method, base + path, payload)
        assert status == 200, path
    assert api.emu.faults == []
    faults = [entry.fault for entry in api.emu.requests if entry.fault is not None]
    assert len(faults) >= 6 * len(ENDPOINTS)


async def test_stop_cancels_runs_in_the_engine(emulator_factory: EmulatorFactory, session: Any) -> None:
    async with emulator_factory("oqc", job_duration_s=30) as emu:
        assert isinstance(emu, OqcEmulator)
        api = Api(emu, session)
        task_id = await api.submit_one()
        await api.wait(task_id, "RUNNING")
    assert await emu.status_of(task_id) == "CANCELLED"


def test_options_are_validated() -> None:
    with pytest.raises(ConfigurationError):
        OqcEmulator(qpus=[])
    with pytest.raises(ConfigurationError):
        OqcEmulator(qpus=[OqcQpu("a", "A", "p"), OqcQpu("b", "B", "p")])
    with pytest.raises(ConfigurationError):
        OqcEmulator(token="")
    with pytest.raises(ConfigurationError):
        OqcEmulator(expire_after_s=-1)
    emu = OqcEmulator(token="given", qpus=[OqcQpu("qpu:x", "X", "x")])
    assert emu.token == "given"
    assert emu.secrets() == ("given", emu.password)


async def test_credentials_and_env(api: Api) -> None:
    assert api.emu.credentials == {"url": api.emu.base_url, "authentication_token": api.emu.token}
    assert api.emu.env == {"OQC_URL": api.emu.base_url, "OQC_AUTHENTICATION_TOKEN": api.emu.token}
    assert len(api.emu.token) >= 32


# -- the published client, unchanged -----------------------------------------------------------------------


def published_client_flow(url: str, token: str) -> dict[str, Any]:
    """OQC's own client, used as its users use it (runs in a worker thread)."""
    from qcaas_client.client import OQCClient, QPUTask  # type: ignore[import-untyped]
    from qcaas_client.compiler_config import (  # type: ignore[import-untyped]
        CompilerConfig,
        QuantumResultsFormat,
    )

    out: dict[str, Any] = {}
    client = OQCClient(url=url, authentication_token=token)
    out["initialised"] = client.is_client_initialized
    out["qpus"] = client.get_qpus()
    qpu_id = LUCY_QPU_ID
    shots = CompilerConfig(repeats=200, results_format=QuantumResultsFormat().binary_count())

    # One task, id assigned by the server; then its status and results.
    (scheduled,) = client.schedule_tasks(QPUTask(program=PROGRAM, config=shots, qpu_id=qpu_id))
    out["scheduled_status"] = client.get_task_status(scheduled.task_id, qpu_id)
    # A batch: ids reserved first, then submitted; execute_tasks waits for both.
    tasks = [
        QPUTask(program=PROGRAM, config=shots, qpu_id=qpu_id),
        QPUTask(program=BAD_PROGRAM, qpu_id=qpu_id),
    ]
    out["executed"] = [
        (r.id, r.result, r.error_details and (r.error_details.error_message, r.error_details.error_code))
        for r in client.execute_tasks(tasks, qpu_id=qpu_id)
    ]
    out["scheduled_final_status"] = client.get_task_status(scheduled.task_id, qpu_id)
    out["scheduled_results"] = client.get_task_results(scheduled.task_id, qpu_id).result
    out["errors"] = client.get_task_errors(out["executed"][1][0], qpu_id).error_message
    out["metrics"] = client.get_task_metrics(scheduled.task_id, qpu_id)
    out["metadata"] = client.get_task_metadata(scheduled.task_id, qpu_id)
    out["timings"] = client.get_task_timings(scheduled.task_id, qpu_id)
    out["summary"] = client.get_tasks_summary(qpu_id=qpu_id)
    out["features"] = client.get_features(qpu_id)
    out["next_window"] = client.get_next_window(qpu_id)
    out["estimates"] = client.get_qpu_execution_estimates(qpu_id)
    out["token_expiry"] = client.get_token_expiry_time()
    # Cancel a running task.
    (to_cancel,) = client.schedule_tasks(QPUTask(program=PROGRAM, config=shots, qpu_id=qpu_id))
    out["cancel_http_status"] = client.cancel_task(to_cancel.task_id, qpu_id).status_code
    out["cancelled_status"] = client.get_task_status(to_cancel.task_id, qpu_id)
    out["cancelled_id"] = to_cancel.task_id
    return out


async def test_the_published_client_runs_unchanged(emulator_factory: EmulatorFactory) -> None:
    async with emulator_factory("oqc", job_duration_s=0.2) as emu:
        assert isinstance(emu, OqcEmulator)
        # One transient 503 on a status read: the client's own urllib3 retry (GET only) absorbs it.
        emu.fail_next(1, status=503, path="/status", method="GET")
        with anyio.fail_after(60):
            out = await anyio.to_thread.run_sync(published_client_flow, emu.base_url, emu.token)
    assert out["initialised"] is True
    assert {q["id"] for q in out["qpus"]} == {LUCY_QPU_ID, SIMULATOR_QPU_ID}  # active ones only
    assert out["scheduled_status"] in ("SUBMITTED", "RUNNING")
    assert out["scheduled_final_status"] == "COMPLETED"
    assert sum(out["scheduled_results"]["c"].values()) == 200
    (_, good_counts, good_error), (_, bad_counts, bad_error) = out["executed"]
    assert sum(good_counts["c"].values()) == 200
    assert good_error is None
    assert bad_counts is None
    assert "5.0" in bad_error[0]
    assert bad_error[1] == 400
    assert out["errors"] == bad_error[0]
    assert out["metrics"]["num_qubits"] == 1
    assert out["metadata"]["qpu_id"] == LUCY_QPU_ID
    assert "SERVER_RECEIVED" in out["timings"]
    assert {item["status"] for item in out["summary"]} >= {"COMPLETED", "FAILED"}
    assert json.loads(out["features"])["qubit_count"] == 8
    assert out["next_window"] is None
    assert out["estimates"]["qpu_wait_times"][0]["qpu_id"] == LUCY_QPU_ID
    assert isinstance(out["token_expiry"], int)
    assert out["cancel_http_status"] == 200
    assert out["cancelled_status"] == "CANCELLED"
    # The client's retry is visible in the log: the faulted status read was sent again.
    faulted = [entry for entry in emu.requests if entry.fault == "fail"]
    assert len(faulted) == 1
    assert faulted[0].status == 503
    assert emu.engine_runs == 4
    headers = [{name.lower(): value for name, value in entry.headers.items()} for entry in emu.requests]
    assert all(h["user-agent"].startswith("QCaaS Client") for h in headers)
    assert all(h.get("authentication-token") in (None, "<redacted>") for h in headers)
    assert emu.token not in repr(emu.requests)
