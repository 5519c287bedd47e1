"""The Windmill emulator: its exchanges checked against Windmill's own OpenAPI description, every
endpoint and error shape with plain aiohttp, then the official ``wmill`` client run against it.

The spec (``tests/data/windmill/windmill.openapi.yaml``, v1.743.0) and the OpenFlow file it refers
to are verbatim copies of ``specs/``. The spec lives at ``backend/windmill-api/openapi.yaml`` upstream
and refers to ``../../openflow.openapi.yaml`` (the repository root): it is loaded with that upstream
address as its base URI and a resolver handler that serves exactly that one address from the local
copy (and refuses every other, so nothing is ever fetched).

Job state is computed from the emulator's clock when read; these tests drive a manual clock, so every
state is reached deterministically and nothing waits.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.to_thread
import pytest
import yaml
from jsonschema_path import SchemaPath
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from oqc_style_sdk import cli
from oqc_style_sdk.exceptions import ConfigurationError
from oqc_style_sdk.testing.pytest_plugin import EmulatorFactory
from oqc_style_sdk.testing.windmill import (
    DEFAULT_SCRIPTS,
    FAIL_SCRIPT,
    QUICK_SCRIPT,
    SLOW_SCRIPT,
    EmulatedScript,
    WindmillEmulator,
)
from tests.common import DATA, SHARED

DATA = DATA / "windmill"
SPEC_FILE = DATA / "windmill.openapi.yaml"
OPENFLOW_FILE = DATA / "windmill-openflow.openapi.yaml"
#: Where the two files live upstream (windmill-labs/windmill): the spec's relative ref resolves here.
SPEC_URI = "file:///windmill/backend/windmill-api/openapi.yaml"
OPENFLOW_URI = "file:///windmill/openflow.openapi.yaml"
UNUSED_ID = "0195f0c2-0000-7000-8000-000000000001"
_RUN_BY_PATH = re.compile(r"/api/w/([^/]+)/jobs/run/p/(.+)")


# -- the official description ---------------------------------------------------------------------------


def _load_yaml(path: Path) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)


@cache
def windmill_spec() -> OpenAPI:
    """Windmill's OpenAPI description, its ``../../openflow.openapi.yaml`` ref served from the copy."""
    spec = _load_yaml(SPEC_FILE)
    openflow = _load_yaml(OPENFLOW_FILE)

    def local_only(uri: str) -> Any:
        if uri.partition("#")[0] != OPENFLOW_URI:
            raise ValueError(f"the Windmill spec refers to {uri!r}, which is not stored here")
        return json.loads(json.dumps(openflow, default=str))

    handlers = {"file": local_only, "http": local_only, "https": local_only, "<all_urls>": local_only}
    path = SchemaPath.from_dict(spec, base_uri=SPEC_URI, handlers=handlers)
    # The spec validator would re-load the spec without these handlers; it is Windmill's own file.
    return OpenAPI(path, config=Config(spec_validator_cls=None))


def test_the_copies_are_verbatim() -> None:
    shared = SHARED / "specs"
    for name in (SPEC_FILE.name, OPENFLOW_FILE.name):
        original = shared / name
        if original.exists():  # the shared folder sits beside the repository in this workplace
            assert (DATA / name).read_bytes() == original.read_bytes(), name
    assert "\n  version: 1.743.0\n" in SPEC_FILE.read_text(encoding="utf-8")[:200]


def test_the_openflow_ref_is_resolved_from_the_local_copy() -> None:
    """A CompletedJob's ``flow_status`` is an OpenFlow ``FlowStatus``: checked, so the ref resolved."""
    record = completed_record_sample()
    request = MockRequest("http://127.0.0.1:1", "get", f"/api/w/demo/jobs_u/get/{UNUSED_ID}")
    ok = MockResponse(json.dumps(record).encode(), status_code=200)
    windmill_spec().validate_response(request, ok)
    record["flow_status"] = {"step": "not a number", "modules": []}
    bad = MockResponse(json.dumps(record).encode(), status_code=200)
    with pytest.raises(Exception, match="is not of type 'integer'"):
        windmill_spec().validate_response(request, bad)


def completed_record_sample() -> dict[str, Any]:
    return {
        "type": "CompletedJob",
        "id": UNUSED_ID,
        "created_by": "admin",
        "created_at": "2026-01-01T00:00:00.000000Z",
        "started_at": "2026-01-01T00:00:01.000000Z",
        "duration_ms": 5,
        "success": True,
        "canceled": False,
        "job_kind": "script",
        "permissioned_as": "u/admin",
        "is_flow_step": False,
        "is_skipped": False,
        "email": "admin@windmill.dev",
        "visible_to_owner": True,
        "tag": "python3",
        "result": 1,
    }


# -- a clock and a client -------------------------------------------------------------------------------


class ManualClock:
    """The emulator's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Reply:
    """An answer: status, content type, text and (when JSON) the parsed body."""

    def __init__(self, status: int, content_type: str, text: str) -> None:
        self.status = status
        self.content_type = content_type
        self.text = text

    @property
    def json(self) -> Any:
        return json.loads(self.text)


class Api:
    """Plain aiohttp against the emulator; ``contract=True`` checks each exchange against the spec."""

    def __init__(self, emu: WindmillEmulator, session: aiohttp.ClientSession, clock: ManualClock) -> None:
        self.emu = emu
        self.session = session
        self.clock = clock
        self.checked: list[str] = []

    def ws(self, path: str) -> str:
        return f"/api/w/{self.emu.workspace}{path}"

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        token: str | None = "",
        cookie: str | None = None,
        contract: bool = True,
    ) -> Reply:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token or self.emu.token}"
        cookies = {"token": cookie} if cookie is not None else None
        raw = None if body is None else json.dumps(body).encode()
        if raw is not None:
            headers["Content-Type"] = "application/json"
        url = self.emu.base_url + path
        async with self.session.request(
            method, url, data=raw, params=params, headers=headers, cookies=cookies
        ) as response:
            reply = Reply(response.status, response.content_type, await response.text())
        if contract and 200 <= reply.status < 300:
            self._check(method, path, params, headers, cookies, raw, reply)
        return reply

    def _check(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        headers: dict[str, str],
        cookies: dict[str, str] | None,
        raw: bytes | None,
        reply: Reply,
    ) -> None:
        # A script path has slashes; Windmill's router takes the rest of the URL as {path}, as here.
        by_path = _RUN_BY_PATH.fullmatch(path)
        request = MockRequest(
            self.emu.base_url,
            method.lower(),
            path,
            path_pattern="/api/w/{workspace}/jobs/run/p/{path}" if by_path else None,
            view_args={"workspace": by_path[1], "path": by_path[2]} if by_path else None,
            args=params or {},
            headers=headers,
            cookies=cookies,
            data=raw,
            content_type="application/json",
        )
        spec = windmill_spec()
        spec.validate_request(request)
        response = MockResponse(
            reply.text.encode(), status_code=reply.status, content_type=reply.content_type
        )
        spec.validate_response(request, response)
        self.checked.append(f"{method} {path}")

    async def run(self, path: str = QUICK_SCRIPT, args: Any = None, **params: str) -> str:
        reply = await self.call(
            "POST", self.ws(f"/jobs/run/p/{path}"), {} if args is None else args, params=params
        )
        assert reply.status == 201, reply.text
        assert reply.content_type == "text/plain"
        return reply.text

    async def job(self, job_id: str, **params: str) -> dict[str, Any]:
        reply = await self.call("GET", self.ws(f"/jobs_u/get/{job_id}"), params=params or None)
        assert reply.status == 200, reply.text
        record: dict[str, Any] = reply.json
        return record


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def emu(clock: ManualClock) -> AsyncIterator[WindmillEmulator]:
    emulator = WindmillEmulator(job_duration_s=1.0, queue_s=0.5, clock=clock, max_lifetime_s=60)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def api(emu: WindmillEmulator, clock: ManualClock) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(emu, session, clock)


# -- authentication -------------------------------------------------------------------------------------


async def test_version_is_public_text(api: Api) -> None:
    reply = await api.call("GET", "/api/version", token=None, contract=False)
    assert (reply.status, reply.content_type) == (200, "text/plain")
    await api.call("GET", "/api/version")  # checked against the spec (which asks for a token)
    assert reply.text.startswith("CE v1.743.0")


@pytest.mark.parametrize("token", [None, "wrong-token"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/users/whoami"),
        ("GET", "/api/w/demo/users/whoami"),
        ("POST", f"/api/w/demo/jobs/run/p/{QUICK_SCRIPT}"),
        ("GET", f"/api/w/demo/jobs_u/get/{UNUSED_ID}"),
        ("POST", f"/api/w/demo/jobs_u/queue/cancel/{UNUSED_ID}"),
        ("GET", "/api/w/demo/jobs/queue/list"),
    ],
)
async def test_401_without_or_with_a_wrong_token(api: Api, token: str | None, method: str, path: str) -> None:
    reply = await api.call(method, path, {} if method == "POST" else None, token=token)
    assert (reply.status, reply.content_type) == (401, "text/plain")
    assert reply.text.startswith("Not authorized: ")
    assert api.emu.job_ids == []


async def test_the_token_cookie_works_too(api: Api) -> None:
    reply = await api.call("GET", "/api/w/demo/users/whoami", token=None, cookie=api.emu.token)
    assert reply.status == 200
    assert reply.json["username"] == "admin"


async def test_another_workspace_is_refused(api: Api) -> None:
    reply = await api.call("GET", "/api/w/other/users/whoami")
    assert (reply.status, reply.text) == (401, "Not authorized: you are not a member of workspace other")


async def test_whoami_both_ways(api: Api) -> None:
    mine = (await api.call("GET", "/api/w/demo/users/whoami")).json
    assert (mine["username"], mine["email"]) == ("admin", "admin@windmill.dev")
    glob = (await api.call("GET", "/api/users/whoami")).json
    assert glob["email"] == "admin@windmill.dev"
    assert set(api.checked) == {"GET /api/w/demo/users/whoami", "GET /api/users/whoami"}


# -- scripts by path: the lifecycle, checked against the spec at every step -----------------------------


async def test_a_script_by_path_is_queued_then_running_then_completed(api: Api) -> None:
    job_id = str(uuid.uuid4())
    assert await api.run(QUICK_SCRIPT, {"x": 1}, job_id=job_id) == job_id
    path = f"/jobs_u/get/{job_id}"

    queued = await api.job(job_id)
    assert (queued["type"], queued["running"], queued["canceled"]) == ("QueuedJob", False, False)
    assert queued["script_path"] == QUICK_SCRIPT
    assert queued["args"] == {"x": 1}
    assert (queued["created_by"], queued["job_kind"], queued["tag"]) == ("admin", "script", "python3")
    maybe = (
        await api.call("GET", api.ws(f"/jobs_u/completed/get_result_maybe/{job_id}"), contract=False)
    ).json
    assert maybe == {"completed": False, "result": None, "success": None, "started": False}
    missing = await api.call("GET", api.ws(f"/jobs_u/completed/get_result/{job_id}"))
    assert (missing.status, missing.content_type) == (404, "text/plain")
    assert missing.text == f"Not found: Completed Job not found at name {job_id}"
    not_yet = await api.call("GET", api.ws(f"/jobs_u/completed/get/{job_id}"))
    assert not_yet.status == 404

    api.clock.advance(0.5)
    running = await api.job(job_id)
    assert (running["type"], running["running"]) == ("QueuedJob", True)
    assert {"started_at", "last_ping", "worker", "logs", "raw_code"} <= set(running)
    lean = await api.job(job_id, no_logs="true", no_code="true")
    assert "logs" not in lean
    assert "raw_code" not in lean
    maybe = (
        await api.call("GET", api.ws(f"/jobs_u/completed/get_result_maybe/{job_id}"), contract=False)
    ).json
    assert maybe["started"] is True
    assert maybe["completed"] is False

    api.clock.advance(1.0)
    done = await api.job(job_id)
    assert (done["type"], done["success"], done["canceled"], done["is_skipped"]) == (
        "CompletedJob",
        True,
        False,
        False,
    )
    assert done["result"] == {"ok": True, "args": {"x": 1}}
    assert done["duration_ms"] == 1000
    result = await api.call("GET", api.ws(f"/jobs_u/completed/get_result/{job_id}"))
    assert (result.status, result.json) == (200, {"ok": True, "args": {"x": 1}})
    completed = (await api.call("GET", api.ws(f"/jobs_u/completed/get/{job_id}"))).json
    assert "type" not in completed
    assert completed["result"] == done["result"]
    maybe = (await api.call("GET", api.ws(f"/jobs_u/completed/get_result_maybe/{job_id}"))).json
    assert maybe == {
        "completed": True,
        "result": {"ok": True, "args": {"x": 1}},
        "success": True,
        "started": True,
    }
    assert f"GET {api.ws(path)}" in api.checked
    assert f"POST {api.ws(f'/jobs/run/p/{QUICK_SCRIPT}')}" in api.checked


async def test_the_pending_result_maybe_differs_from_the_spec_only_by_a_null_success(api: Api) -> None:
    """Windmill sends ``success: null`` while pending (``wmill`` reads the key); the spec types it
    boolean. Everything else of the pending answer matches the spec."""
    job_id = await api.run()
    reply = await api.call("GET", api.ws(f"/jobs_u/completed/get_result_maybe/{job_id}"), contract=False)
    body = reply.json
    assert body.pop("success") is None
    request = MockRequest(api.emu.base_url, "get", api.ws(f"/jobs_u/completed/get_result_maybe/{job_id}"))
    windmill_spec().validate_response(request, MockResponse(json.dumps(body).encode(), status_code=200))


async def test_a_server_chosen_id_when_none_is_given(api: Api) -> None:
    job_id = await api.run(SLOW_SCRIPT)
    assert str(uuid.UUID(job_id)) == job_id
    assert api.emu.job_ids == [job_id]


async def test_a_failing_script(api: Api) -> None:
    job_id = await api.run(FAIL_SCRIPT, {"n": 2})
    api.clock.advance(2)
    done = await api.job(job_id)
    assert (done["success"], done["canceled"]) == (False, False)
    error = done["result"]["error"]
    assert (error["name"], error["message"]) == ("Exception", "demo failure")
    assert "Traceback" in error["stack"]
    result = await api.call("GET", api.ws(f"/jobs_u/completed/get_result/{job_id}"))
    assert result.json == done["result"]


async def test_inline_preview_code_is_opaque(api: Api) -> None:
    body = {"content": "def main(x):\n    return x * 2\n", "language": "python3", "args": {"x": 21}}
    job_id = str(uuid.uuid4())
    reply = await api.call("POST", api.ws("/jobs/run/preview"), body, params={"job_id": job_id})
    assert (reply.status, reply.text) == (201, job_id)
    queued = await api.job(job_id)
    assert (queued["job_kind"], queued["language"], queued["raw_code"]) == (
        "preview",
        "python3",
        body["content"],
    )
    assert "script_path" not in queued
    api.clock.advance(2)
    result = (await api.call("GET", api.ws(f"/jobs_u/completed/get_result/{job_id}"))).json
    assert result["args"] == {"x": 21}  # not 42: nothing was executed
    assert result["language"] == "python3"
    assert len(result["content_sha256"]) == 64


async def test_worker_tag_and_scheduled_in_secs(api: Api) -> None:
    job_id = await api.run(QUICK_SCRIPT, tag="gpu", scheduled_in_secs="10")
    assert (await api.job(job_id))["tag"] == "gpu"
    api.clock.advance(5)
    assert (await api.job(job_id))["running"] is False
    api.clock.advance(5.5)
    assert (await api.job(job_id))["running"] is True


# -- caller-chosen ids --------------------------------------------------------------------------------------


async def test_a_job_id_that_exists_is_refused_and_no_second_job_is_made(api: Api) -> None:
    job_id = str(uuid.uuid4())
    await api.run(QUICK_SCRIPT, job_id=job_id)
    again = await api.call("POST", api.ws(f"/jobs/run/p/{QUICK_SCRIPT}"), {}, params={"job_id": job_id})
    assert (again.status, again.content_type) == (400, "text/plain")
    assert again.text == f"Bad request: a job with id {job_id} already exists"
    assert api.emu.job_ids == [job_id]


async def test_duplicate_job_id_return_mode(emulator_factory: EmulatorFactory, session: Any) -> None:
    async with emulator_factory("windmill", duplicate_job_id="return") as emu:
        assert isinstance(emu, WindmillEmulator)
        api = Api(emu, session, ManualClock())
        job_id = str(uuid.uuid4())
        assert await api.run(QUICK_SCRIPT, job_id=job_id) == job_id
        assert await api.run(QUICK_SCRIPT, job_id=job_id) == job_id
        assert emu.job_ids == [job_id]


# -- cancel ---------------------------------------------------------------------------------------------


async def test_cancel_a_queued_job_completes_it_as_canceled(api: Api) -> None:
    job_id = await api.run(SLOW_SCRIPT)
    reply = await api.call("POST", api.ws(f"/jobs_u/queue/cancel/{job_id}"), {"reason": "not needed"})
    assert (reply.status, reply.content_type, reply.text) == (200, "text/plain", job_id)
    done = await api.job(job_id)
    assert (done["type"], done["success"], done["canceled"]) == ("CompletedJob", False, True)
    assert (done["canceled_by"], done["canceled_reason"]) == ("admin", "not needed")
    assert done["result"] == {
        "error": {
            "message": "Job canceled: not needed by admin",
            "name": "Canceled",
            "reason": "not needed",
            "canceler": "admin",
        }
    }


async def test_cancel_a_running_job(emulator_factory: EmulatorFactory, session: Any) -> None:
    clock = ManualClock()
    async with emulator_factory("windmill", clock=clock, queue_s=0.1, cancel_delay_s=2.0) as emu:
        assert isinstance(emu, WindmillEmulator)
        api = Api(emu, session, clock)
        job_id = await api.run(SLOW_SCRIPT)
        clock.advance(1)
        assert (await api.job(job_id))["running"] is True
        reply = await api.call("POST", api.ws(f"/jobs_u/queue/cancel/{job_id}"), {"reason": "too slow"})
        assert (reply.status, reply.text) == (200, job_id)
        stopping = await api.job(job_id)
        assert (stopping["type"], stopping["running"], stopping["canceled"]) == ("QueuedJob", True, True)
        assert stopping["canceled_reason"] == "too slow"
        clock.advance(2)
        done = await api.job(job_id)
        assert (done["type"], done["canceled"], done["success"]) == ("CompletedJob", True, False)
        assert done["result"]["error"]["reason"] == "too slow"


async def test_cancel_without_a_reason(api: Api) -> None:
    job_id = await api.run(SLOW_SCRIPT)
    reply = await api.call("POST", api.ws(f"/jobs_u/queue/cancel/{job_id}"), {})
    assert reply.status == 200
    assert (await api.job(job_id))["canceled_reason"] == "unexplicited reasons"


async def test_force_cancel_stops_a_running_job_at_once(
    emulator_factory: EmulatorFactory, session: Any
) -> None:
    clock = ManualClock()
    async with emulator_factory("windmill", clock=clock, queue_s=0.1, cancel_delay_s=60.0) as emu:
        assert isinstance(emu, WindmillEmulator)
        api = Api(emu, session, clock)
        job_id = await api.run(SLOW_SCRIPT)
        clock.advance(1)
        reply = await api.call("POST", api.ws(f"/jobs_u/queue/force_cancel/{job_id}"), {"reason": "now"})
        assert (reply.status, reply.text) == (200, job_id)
        assert (await api.job(job_id))["type"] == "CompletedJob"


async def test_cancel_a_completed_job_is_not_an_error(api: Api) -> None:
    job_id = await api.run()
    api.clock.advance(5)
    reply = await api.call("POST", api.ws(f"/jobs_u/queue/cancel/{job_id}"), {"reason": "late"})
    assert (reply.status, reply.text) == (200, f"queued job id {job_id} is already completed")
    done = await api.job(job_id)
    assert (done["success"], done["canceled"]) == (True, False)


async def test_a_job_that_ends_before_the_worker_notices_the_cancel_completes(
    emulator_factory: EmulatorFactory, session: Any
) -> None:
    clock = ManualClock()
    async with emulator_factory("windmill", clock=clock, queue_s=0.1, cancel_delay_s=5.0) as emu:
        assert isinstance(emu, WindmillEmulator)
        api = Api(emu, session, clock)
        job_id = await api.run(QUICK_SCRIPT)  # job_duration_s of the factory: 0.05 s
        clock.advance(0.11)
        await api.call("POST", api.ws(f"/jobs_u/queue/cancel/{job_id}"), {"reason": "r"})
        clock.advance(1)
        done = await api.job(job_id)
        assert (done["success"], done["canceled"]) == (True, False)


async def test_cancel_an_unknown_job_is_404(api: Api) -> None:
    reply = await api.call("POST", api.ws(f"/jobs_u/queue/cancel/{UNUSED_ID}"), {"reason": "r"})
    assert (reply.status, reply.content_type) == (404, "text/plain")
    assert reply.text == f"Not found: queued job id {UNUSED_ID} does not exist"


# -- lists ----------------------------------------------------------------------------------------------


async def test_job_lists(api: Api) -> None:
    quick = await api.run(QUICK_SCRIPT)
    api.clock.advance(5)  # completed
    slow = await api.run(SLOW_SCRIPT)
    api.clock.advance(1)  # running
    fail = await api.run(FAIL_SCRIPT)  # queued
    every = (await api.call("GET", api.ws("/jobs/list"))).json
    assert [(j["id"], j["type"]) for j in every] == [
        (fail, "QueuedJob"),
        (slow, "QueuedJob"),
        (quick, "CompletedJob"),
    ]
    queue = (await api.call("GET", api.ws("/jobs/queue/list"))).json
    assert [j["id"] for j in queue] == [fail, slow]
    assert all("type" not in j for j in queue)
    completed = (await api.call("GET", api.ws("/jobs/completed/list"))).json
    assert [j["id"] for j in completed] == [quick]
    running = (await api.call("GET", api.ws("/jobs/queue/list"), params={"running": "true"})).json
    assert [j["id"] for j in running] == [slow]
    oldest_first = (await api.call("GET", api.ws("/jobs/list"), params={"order_desc": "false"})).json
    assert [j["id"] for j in oldest_first] == [quick, slow, fail]
    exact = (
        await api.call(
            "GET", api.ws("/jobs/list"), params={"script_path_exact": f"{QUICK_SCRIPT},{FAIL_SCRIPT}"}
        )
    ).json
    assert {j["id"] for j in exact} == {quick, fail}
    negated = (
        await api.call("GET", api.ws("/jobs/list"), params={"script_path_exact": f"!{QUICK_SCRIPT}"})
    ).json
    assert {j["id"] for j in negated} == {slow, fail}
    prefix = (await api.call("GET", api.ws("/jobs/list"), params={"script_path_start": "u/demo/s"})).json
    assert [j["id"] for j in prefix] == [slow]
    mine = (await api.call("GET", api.ws("/jobs/queue/list"), params={"created_by": "admin"})).json
    assert len(mine) == 2
    others = (await api.call("GET", api.ws("/jobs/queue/list"), params={"created_by": "!admin"})).json
    assert others == []
    ok = (await api.call("GET", api.ws("/jobs/completed/list"), params={"success": "true"})).json
    assert [j["id"] for j in ok] == [quick]
    scripts = (await api.call("GET", api.ws("/jobs/list"), params={"job_kinds": "preview"})).json
    assert scripts == []


async def test_list_paging(api: Api) -> None:
    ids = [await api.run(SLOW_SCRIPT) for _ in range(5)]
    first = (await api.call("GET", api.ws("/jobs/queue/list"), params={"per_page": "2"})).json
    second = (await api.call("GET", api.ws("/jobs/queue/list"), params={"per_page": "2", "page": "2"})).json
    third = (await api.call("GET", api.ws("/jobs/queue/list"), params={"per_page": "2", "page": "3"})).json
    assert [j["id"] for j in first + second + third] == ids[::-1]
    clamped = (await api.call("GET", api.ws("/jobs/queue/list"), params={"per_page": "1000"})).json
    assert len(clamped) == 5
    ids += [await api.run(SLOW_SCRIPT) for _ in range(30)]
    default = (await api.call("GET", api.ws("/jobs/queue/list"))).json
    assert len(default) == 30


# -- error shapes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "params", "status", "text"),
    [
        (
            "POST",
            f"/jobs/run/p/{QUICK_SCRIPT}",
            {},
            {"job_id": "nope"},
            400,
            "Bad request: job_id 'nope' is not a UUID",
        ),
        (
            "POST",
            f"/jobs/run/p/{QUICK_SCRIPT}",
            [1],
            None,
            400,
            "Bad request: the script args must be a JSON object",
        ),
        (
            "POST",
            "/jobs/run/p/u/demo/missing",
            {},
            None,
            404,
            "Not found: Script not found at name u/demo/missing",
        ),
        (
            "POST",
            "/jobs/run/preview",
            {"args": {}, "language": "python3"},
            None,
            400,
            "Bad request: Preview.content",
        ),
        (
            "POST",
            "/jobs/run/preview",
            {"args": {}, "content": "x", "language": "cobol"},
            None,
            400,
            "Bad request: unknown language",
        ),
        (
            "POST",
            "/jobs/run/preview",
            {"content": "x", "language": "bash"},
            None,
            400,
            "Bad request: Preview.args",
        ),
        ("GET", f"/jobs_u/get/{UNUSED_ID}", None, None, 404, f"Not found: Job not found at name {UNUSED_ID}"),
        (
            "GET",
            f"/jobs_u/completed/get/{UNUSED_ID}",
            None,
            None,
            404,
            "Not found: Completed Job not found at name",
        ),
        (
            "GET",
            f"/jobs_u/completed/get_result/{UNUSED_ID}",
            None,
            None,
            404,
            "Not found: Completed Job not found",
        ),
        ("GET", "/jobs/list", None, {"running": "maybe"}, 400, "Bad request: running must be true or false"),
        ("GET", "/jobs/queue/list", None, {"per_page": "x"}, 400, "Bad request: per_page must be an integer"),
        ("GET", "/jobs/queue/list", None, {"page": "0"}, 400, "Bad request: page must be at least 1"),
    ],
)
async def test_error_shapes(
    api: Api, method: str, path: str, body: Any, params: dict[str, str] | None, status: int, text: str
) -> None:
    reply = await api.call(method, api.ws(path), body, params=params)
    assert (reply.status, reply.content_type) == (status, "text/plain")
    assert reply.text.startswith(text), reply.text
    assert api.emu.job_ids == []


async def test_a_body_that_is_not_json_is_400(api: Api) -> None:
    async with api.session.post(
        api.emu.base_url + api.ws(f"/jobs/run/p/{QUICK_SCRIPT}"),
        data=b"{nope",
        headers={"Authorization": f"Bearer {api.emu.token}", "Content-Type": "application/json"},
    ) as response:
        assert response.status == 400
        assert (await response.text()).startswith("Bad request: the body is not valid JSON")


async def test_undeclared_routes_and_methods(api: Api) -> None:
    assert (await api.call("GET", api.ws("/nothing/here"))).status == 404
    assert (await api.call("GET", api.ws(f"/jobs/run/p/{QUICK_SCRIPT}"))).status == 405


ENDPOINTS = [
    ("GET", "/api/version"),
    ("GET", "/api/w/demo/users/whoami"),
    ("POST", f"/api/w/demo/jobs/run/p/{QUICK_SCRIPT}"),
    ("POST", "/api/w/demo/jobs/run/preview"),
    ("GET", "/api/w/demo/jobs_u/get/{id}"),
    ("GET", "/api/w/demo/jobs_u/completed/get_result_maybe/{id}"),
    ("POST", "/api/w/demo/jobs_u/queue/cancel/{id}"),
    ("GET", "/api/w/demo/jobs/queue/list"),
]


async def test_every_fault_knob_works_on_windmill_endpoints(api: Api) -> None:
    job_id = await api.run(SLOW_SCRIPT)
    preview = {"content": "x", "language": "bash", "args": {}}
    for method, template in ENDPOINTS:
        path = template.replace("{id}", job_id)
        body = (preview if "preview" in path else {}) if method == "POST" else None
        api.emu.fail_next(1, status=503, path=path, method=method, retry_after=2)
        reply = await api.call(method, path, body)
        assert (reply.status, reply.content_type, reply.text) == (503, "text/plain", "Service Unavailable")
        api.emu.drop_next(2 if method == "GET" else 1, path=path, method=method)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.call(method, path, body)
        api.emu.clear_faults()
        api.emu.slow_next(1, delay_s=0.01, path=path, method=method)
        assert (await api.call(method, path, body, contract=False)).status in (200, 201)
        api.emu.fail_after_processing_next(1, status=500, path=path, method=method)
        assert (await api.call(method, path, body)).status == 500
    assert api.emu.faults == []


# -- the kit's surface ----------------------------------------------------------------------------------


async def test_credentials_env_and_the_log_keeps_no_secret(api: Api) -> None:
    emu = api.emu
    assert emu.credentials == {"base_url": emu.base_url, "token": emu.token, "workspace": "demo"}
    assert emu.env == {"WM_BASE_URL": emu.base_url, "WM_TOKEN": emu.token, "WM_WORKSPACE": "demo"}
    assert len(emu.token) >= 32
    await api.run()
    await api.call("GET", "/api/w/demo/users/whoami", token=None, cookie=emu.token)
    assert emu.token not in repr(emu.requests)
    assert emu.requests[0].headers["Authorization"] == "<redacted>"


def test_options_are_validated() -> None:
    with pytest.raises(ConfigurationError):
        WindmillEmulator(token="")
    with pytest.raises(ConfigurationError):
        WindmillEmulator(workspace="a/b")
    with pytest.raises(ConfigurationError):
        WindmillEmulator(duplicate_job_id="maybe")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        WindmillEmulator(cancel_delay_s=-1)
    with pytest.raises(ConfigurationError):
        WindmillEmulator(scripts=[EmulatedScript("u/a/b", language="cobol")])
    emu = WindmillEmulator(token="given", scripts=[EmulatedScript("f/x/y", result=lambda args: 42)])
    assert emu.secrets() == ("given",)
    assert set(emu.scripts) == {"f/x/y"}
    assert {s.path for s in DEFAULT_SCRIPTS} == {QUICK_SCRIPT, SLOW_SCRIPT, FAIL_SCRIPT}
    with pytest.raises(KeyError):
        emu.job_record(UNUSED_ID)


async def test_custom_scripts(emulator_factory: EmulatorFactory, session: Any) -> None:
    clock = ManualClock()
    add = EmulatedScript("f/math/add", result=lambda args: args["a"] + args["b"], duration_s=3.0)
    async with emulator_factory("windmill", clock=clock, scripts=[add], queue_s=0) as emu:
        assert isinstance(emu, WindmillEmulator)
        api = Api(emu, session, clock)
        job_id = await api.run("f/math/add", {"a": 2, "b": 3})
        clock.advance(2.9)
        assert (await api.job(job_id))["type"] == "QueuedJob"
        clock.advance(0.2)
        assert (await api.job(job_id))["result"] == 5
        assert emu.job_record(job_id)["result"] == 5


def test_oqcs_emulate_windmill_prints_the_wm_variables(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["emulate", "windmill", "--max-lifetime", "0.2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "ready"
    env = dict(line.split("=", 1) for line in lines[:-1])
    assert set(env) == {"WM_BASE_URL", "WM_TOKEN", "WM_WORKSPACE"}
    assert env["WM_BASE_URL"].startswith("http://127.0.0.1:")


# -- the official client, unchanged ---------------------------------------------------------------------


def wmill_flow(base_url: str, token: str, workspace: str) -> dict[str, Any]:
    """``wmill``'s own client as its users use it (in a worker thread)."""
    return dict(_wmill_steps(base_url, token, workspace))


def _wmill_steps(base_url: str, token: str, workspace: str) -> Iterator[tuple[str, Any]]:
    from wmill import Windmill

    client = Windmill(base_url=base_url, token=token, workspace=workspace)  # type: ignore[no-untyped-call]
    try:
        yield "version", client.version
        yield "whoami", client.whoami()
        yield "sync_result", client.run_script_by_path(QUICK_SCRIPT, args={"x": 1}, timeout=30, cleanup=False)
        job_id = client.run_script_by_path_async(QUICK_SCRIPT, args={"x": 2})
        yield "job_id", job_id
        yield "status_before", client.get_job_status(job_id)
        yield "waited", client.wait_job(job_id, timeout=30, cleanup=False)
        yield "status_after", client.get_job_status(job_id)
        yield "result", client.get_result(job_id)
        yield "job", client.get_job(job_id)
        failing = client.run_script_by_path_async(FAIL_SCRIPT)
        try:
            client.wait_job(failing, timeout=30, cleanup=False)
        except Exception as exc:  # wmill raises a bare Exception for a failed job
            yield "failure", str(exc)
        slow = client.run_script_by_path_async(SLOW_SCRIPT, args={})
        yield "slow_status", client.get_job_status(slow)
        yield "cancel", client.cancel_job(slow, reason="wmill says stop")
        yield "slow_after", client.get_job(slow)
        yield "cancel_again", client.cancel_job(slow, reason="again")
    finally:
        client.client.close()


async def test_the_official_wmill_client_runs_unchanged(emulator_factory: EmulatorFactory) -> None:
    async with emulator_factory("windmill", job_duration_s=0.1, queue_s=0.05) as emu:
        assert isinstance(emu, WindmillEmulator)
        with anyio.fail_after(60):
            out = await anyio.to_thread.run_sync(wmill_flow, emu.base_url, emu.token, emu.workspace)
    assert out["version"] == emu.version
    assert out["whoami"]["email"] == "admin@windmill.dev"
    assert out["sync_result"] == {"ok": True, "args": {"x": 1}}
    job_id = out["job_id"]
    assert str(uuid.UUID(job_id)) == job_id
    assert out["status_before"] in ("WAITING", "RUNNING")
    assert out["waited"] == {"ok": True, "args": {"x": 2}}
    assert out["status_after"] == "COMPLETED"
    assert out["result"] == {"ok": True, "args": {"x": 2}}
    assert (out["job"]["type"], out["job"]["success"]) == ("CompletedJob", True)
    assert "was not successful" in out["failure"]
    assert "demo failure" in out["failure"]
    assert out["slow_status"] in ("WAITING", "RUNNING")
    assert out["cancel"] != ""
    slow_after = out["slow_after"]
    assert (slow_after["type"], slow_after["canceled"], slow_after["canceled_reason"]) == (
        "CompletedJob",
        True,
        "wmill says stop",
    )
    assert out["cancel_again"].endswith("is already completed")
    paths = [(entry.method, entry.path) for entry in emu.requests]
    assert ("POST", f"/api/w/demo/jobs/run/p/{QUICK_SCRIPT}") in paths
    assert ("POST", f"/api/w/demo/jobs_u/queue/cancel/{slow_after['id']}") in paths
    cancel = next(e for e in emu.requests if e.path.endswith(f"/queue/cancel/{slow_after['id']}"))
    assert cancel.body == {"reason": "wmill says stop"}
    assert all(entry.status is not None and entry.status < 400 for entry in emu.requests)
    assert emu.token not in repr(emu.requests)
