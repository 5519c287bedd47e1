"""The vendor-emulator kit: binding, the request log, every fault knob, the lifecycle, the fixtures.

A tiny vendor (``KitEmulator``) stands in for real ones; the client is a plain aiohttp session.
"""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
import pytest
from aiohttp import web
from anyio.abc import TaskGroup

from oqc_style_sdk.backends._qiskit import wait_for_qiskit
from oqc_style_sdk.exceptions import ConfigurationError
from oqc_style_sdk.testing.emulator import (
    REDACTED,
    ApiError,
    Emulator,
    LoggedRequest,
    available_emulators,
    create_emulator,
    register_emulator,
    serve_forever,
    start_emulator,
)
from oqc_style_sdk.testing.oqc import OqcEmulator
from oqc_style_sdk.testing.pytest_plugin import EmulatorFactory

pytest_plugins = ["pytester"]  # the emulator fixtures: tests/conftest.py

SECRET = "s3cr3t-t0ken-value"
#: The plugin's defaults (not imported from it: a plugin module imported before pytest registers it
#: cannot be assertion-rewritten, which pytest warns about).
TEST_JOB_DURATION_S = 0.05


class KitEmulator(Emulator):
    """A minimal vendor: ``GET /echo``, ``POST /items`` (counts processing), ``GET /boom``."""

    vendor = "kit-test"

    def __init__(self, **options: Any) -> None:
        self.processed = 0
        self.background_cancelled = False
        super().__init__(**options)

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/echo", self._echo)
        app.router.add_get("/echo/{rest}", self._echo)
        app.router.add_post("/items", self._create)
        app.router.add_get("/boom", self._boom)
        app.router.add_get("/teapot", self._teapot)

    async def on_start(self, task_group: TaskGroup) -> None:
        task_group.start_soon(self._background)

    async def _background(self) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            self.background_cancelled = True

    def secrets(self) -> tuple[str, ...]:
        return (SECRET,)

    async def _echo(self, request: web.Request) -> web.Response:
        return web.json_response({"query": dict(request.query)})

    async def _create(self, request: web.Request) -> web.Response:
        self.processed += 1
        body = await request.json()
        return web.json_response({"id": self.processed, "echo": body})

    async def _boom(self, request: web.Request) -> web.Response:
        raise RuntimeError("a bug in a handler")

    async def _teapot(self, request: web.Request) -> web.Response:
        raise ApiError(418, "I'm a teapot", headers={"X-Kind": "tea"})


register_emulator("kit-test", KitEmulator)


@pytest.fixture
async def emu() -> AsyncIterator[KitEmulator]:
    async with start_emulator("kit-test", max_lifetime_s=60, shutdown_timeout_s=0.05) as emulator:
        assert isinstance(emulator, KitEmulator)
        yield emulator


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        return response.status, await response.json()


# -- binding and the lifecycle ----------------------------------------------------------------------


async def test_binds_127_0_0_1_on_an_os_chosen_port(emu: KitEmulator, session: aiohttp.ClientSession) -> None:
    assert emu.host == "127.0.0.1"
    assert emu.port > 0
    assert emu.base_url == f"http://127.0.0.1:{emu.port}"
    assert emu.running
    status, body = await get_json(session, emu.base_url + "/echo?x=1")
    assert (status, body) == (200, {"query": {"x": "1"}})
    # Another loopback address of this host reaches nothing: the socket is bound to 127.0.0.1 only.
    with pytest.raises(aiohttp.ClientConnectorError):
        await get_json(session, f"http://127.0.0.2:{emu.port}/echo")


async def test_stops_on_exit_and_cancels_background_work(session: aiohttp.ClientSession) -> None:
    async with start_emulator("kit-test") as emulator:
        assert isinstance(emulator, KitEmulator)
        url = emulator.base_url + "/echo"
        assert (await get_json(session, url))[0] == 200
    assert not emulator.running
    assert emulator.stop_reason == "stopped"
    assert emulator.background_cancelled
    with pytest.raises(aiohttp.ClientConnectorError):
        await get_json(session, url)
    await emulator.stop()  # idempotent


async def test_stops_on_exit_when_the_body_raises() -> None:
    with pytest.raises(KeyError):
        async with start_emulator("kit-test") as emulator:
            raise KeyError("boom")
    assert isinstance(emulator, KitEmulator)
    assert not emulator.running
    assert emulator.background_cancelled


async def test_max_lifetime_stops_the_server_itself(session: aiohttp.ClientSession) -> None:
    async with start_emulator("kit-test", max_lifetime_s=0.1) as emulator:
        assert isinstance(emulator, KitEmulator)
        with anyio.fail_after(10):
            await emulator.wait_stopped()
        # The caller's code was not cancelled; only the server is gone.
        assert emulator.stop_reason == "max_lifetime_s"
        assert not emulator.running
        assert emulator.background_cancelled
        with pytest.raises(aiohttp.ClientConnectorError):
            await get_json(session, emulator.base_url + "/echo")


async def test_start_and_stop_may_run_in_different_tasks(session: aiohttp.ClientSession) -> None:
    """What pytest-asyncio does with async fixtures: setup in one task, teardown in another."""
    emulator = KitEmulator()
    await asyncio.get_running_loop().create_task(emulator.start())
    assert (await get_json(session, emulator.base_url + "/echo"))[0] == 200
    await asyncio.get_running_loop().create_task(emulator.stop())
    assert not emulator.running
    assert emulator.background_cancelled


async def test_async_with_on_the_class_and_single_start() -> None:
    async with KitEmulator() as emulator:
        assert emulator.running
        with pytest.raises(RuntimeError, match="already started"):
            await emulator.start()
    assert not emulator.running
    with pytest.raises(RuntimeError, match="not started"):
        _ = KitEmulator().base_url
    assert "not started" in repr(KitEmulator())


async def test_a_port_in_use_fails_start_cleanly(emu: KitEmulator) -> None:
    with pytest.raises(OSError, match="in use"):
        async with start_emulator("kit-test", port=emu.port):
            pass


class CrashingEmulator(KitEmulator):
    """Its background work dies after start."""

    async def on_start(self, task_group: TaskGroup) -> None:
        task_group.start_soon(self._crash)

    async def _crash(self) -> None:
        await anyio.lowlevel.checkpoint()
        raise RuntimeError("the engine died")


class BrokenStartEmulator(KitEmulator):
    async def on_start(self, task_group: TaskGroup) -> None:
        raise LookupError("no engine")


async def test_a_crash_while_serving_stops_the_server_and_is_reported_once() -> None:
    emulator = CrashingEmulator()
    await emulator.start()
    with anyio.fail_after(10):
        await emulator.wait_stopped()
    assert not emulator.running
    with pytest.raises(RuntimeError, match="failed while serving"):
        await emulator.stop()
    await emulator.stop()


async def test_a_failing_on_start_is_raised_by_start() -> None:
    emulator = BrokenStartEmulator()
    with pytest.raises(LookupError, match="no engine"):
        await emulator.start()
    assert not emulator.running
    await emulator.stop()


async def test_serve_forever_calls_ready_and_stops_when_cancelled(session: aiohttp.ClientSession) -> None:
    seen: list[Emulator] = []
    ready = anyio.Event()

    def on_ready(emulator: Emulator) -> None:
        seen.append(emulator)
        ready.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve_forever("kit-test", job_duration_s=0.25, ready=on_ready))
        with anyio.fail_after(10):
            await ready.wait()
        (emulator,) = seen
        assert emulator.job_duration_s == 0.25
        assert (await get_json(session, emulator.base_url + "/echo"))[0] == 200
        tg.cancel_scope.cancel()
    assert not emulator.running


async def test_serve_forever_returns_when_the_lifetime_ends() -> None:
    with anyio.fail_after(10):
        emulator = await serve_forever("kit-test", max_lifetime_s=0.05)
    assert emulator.stop_reason == "max_lifetime_s"


def test_registry() -> None:
    assert {"oqc", "kit-test"} <= set(available_emulators())
    assert isinstance(create_emulator("oqc"), OqcEmulator)
    with pytest.raises(ConfigurationError, match="no emulator for vendor 'nope'"):
        create_emulator("nope")
    with pytest.raises(ConfigurationError):
        register_emulator("", KitEmulator)
    register_emulator("not-an-emulator", dict)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="not an Emulator"):
        create_emulator("not-an-emulator")


def test_options_are_validated() -> None:
    for options in (
        {"port": -1},
        {"job_duration_s": -1},
        {"latency_s": float("nan")},
        {"max_lifetime_s": 0},
        {"max_lifetime_s": True},
    ):
        with pytest.raises(ConfigurationError):
            KitEmulator(**options)
    emulator = KitEmulator()
    with pytest.raises(ConfigurationError):
        emulator.fail_next(0, status=503)
    with pytest.raises(ConfigurationError):
        emulator.fail_next(1, status=700)
    with pytest.raises(ConfigurationError):
        emulator.fail_next(1, status=503, retry_after=float("inf"))
    with pytest.raises(ConfigurationError):
        emulator.slow_next(1, delay_s=-1)
    with pytest.raises(ConfigurationError):
        emulator.drop_next(1, path=42)  # type: ignore[arg-type]
    assert emulator.faults == []


# -- the request log ----------------------------------------------------------------------------------


async def test_request_log_order_bodies_and_redaction(session: aiohttp.ClientSession) -> None:
    now = [100.0]
    async with start_emulator("kit-test", clock=lambda: now[0]) as emulator:
        await get_json(session, emulator.base_url + f"/echo/{SECRET}?token={SECRET}&page=2")
        now[0] = 101.5
        async with session.post(
            emulator.base_url + "/items",
            json={"name": "x", "password": "hunter2", "nested": [{"note": f"uses {SECRET}"}]},
            headers={"Authorization": f"Bearer {SECRET}", "X-Trace": SECRET, "X-Plain": "visible"},
        ) as response:
            assert response.status == 200
        now[0] = 102.0
        async with session.post(emulator.base_url + "/items", data=b"not json at all") as response:
            assert response.status == 500  # the handler's request.json() failed: a 500, logged
        first, second, third = emulator.requests
    assert isinstance(first, LoggedRequest)
    assert [r.method for r in emulator.requests] == ["GET", "POST", "POST"]
    assert first.path == f"/echo/{REDACTED}"
    assert first.query == {"token": REDACTED, "page": "2"}
    assert first.body is None
    assert (first.time, second.time, third.time) == (100.0, 101.5, 102.0)
    assert second.body == {"name": "x", "password": REDACTED, "nested": [{"note": f"uses {REDACTED}"}]}
    assert second.headers["Authorization"] == REDACTED
    assert second.headers["X-Trace"] == REDACTED
    assert second.headers["X-Plain"] == "visible"
    assert third.body == "not json at all"
    assert [r.status for r in emulator.requests] == [200, 200, 500]
    assert all(r.fault is None for r in emulator.requests)
    assert SECRET not in repr(emulator.requests)
    assert "hunter2" not in repr(emulator.requests)
    assert emulator.count() == 3
    assert emulator.count("post") == 2
    assert emulator.count(path_prefix="/echo") == 1
    assert emulator.count("GET", "/items") == 0
    emulator.clear_log()
    assert emulator.requests == []


async def test_request_log_is_capped(session: aiohttp.ClientSession) -> None:
    async with start_emulator("kit-test", max_log=2) as emulator:
        for page in range(3):
            await get_json(session, emulator.base_url + f"/echo?page={page}")
        assert [r.query["page"] for r in emulator.requests] == ["1", "2"]


async def test_handler_errors_become_vendor_error_bodies(
    emu: KitEmulator, session: aiohttp.ClientSession
) -> None:
    async with session.get(emu.base_url + "/boom") as response:
        assert response.status == 500
        assert await response.json() == {"error": {"code": 500, "message": "Internal Server Error"}}
    async with session.get(emu.base_url + "/nowhere") as response:
        assert response.status == 404
        assert await response.json() == {"error": {"code": 404, "message": "Not Found"}}
    async with session.delete(emu.base_url + "/items") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
    async with session.get(emu.base_url + "/teapot") as response:
        assert response.status == 418
        assert response.headers["X-Kind"] == "tea"
        assert await response.json() == {"error": {"code": 418, "message": "I'm a teapot"}}


# -- fault knobs ----------------------------------------------------------------------------------------


async def test_fail_next_with_status_retry_after_and_no_processing(
    emu: KitEmulator, session: aiohttp.ClientSession
) -> None:
    emu.fail_next(2, status=429, path="/items", retry_after=3)
    for _ in range(2):
        async with session.post(emu.base_url + "/items", json={"a": 1}) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "3"
            assert await response.json() == {"error": {"code": 429, "message": "Too Many Requests"}}
    assert emu.processed == 0
    async with session.post(emu.base_url + "/items", json={"a": 1}) as response:
        assert response.status == 200
    assert emu.processed == 1
    assert [r.fault for r in emu.requests] == ["fail", "fail", None]
    assert [r.status for r in emu.requests] == [429, 429, 200]


async def test_fail_next_bodies_filters_and_order(emu: KitEmulator, session: aiohttp.ClientSession) -> None:
    emu.fail_next(1, status=503, method="POST", retry_after=0.25, body="<html>busy</html>")
    emu.fail_next(1, status=500, path=re.compile(r"^/echo$"), body={"custom": True})
    emu.fail_next(1, status=502, body="plain text")
    assert len(emu.faults) == 3
    # GET /echo/x matches neither the POST rule nor the ^/echo$ regex: the 502 rule takes it.
    async with session.get(emu.base_url + "/echo/x") as response:
        assert response.status == 502
        assert response.content_type == "text/plain"
        assert await response.text() == "plain text"
    async with session.get(emu.base_url + "/echo") as response:
        assert response.status == 500
        assert await response.json() == {"custom": True}
    async with session.post(emu.base_url + "/items", json={}) as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "0.25"
        assert response.content_type == "text/html"
    assert emu.faults == []
    assert (await get_json(session, emu.base_url + "/echo"))[0] == 200
    emu.fail_next(5, status=500, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    assert emu.faults[0].retry_after == "Wed, 21 Oct 2015 07:28:00 GMT"
    emu.clear_faults()
    assert (await get_json(session, emu.base_url + "/echo"))[0] == 200


async def test_fail_after_processing_next_processes_then_fails(
    emu: KitEmulator, session: aiohttp.ClientSession
) -> None:
    emu.fail_after_processing_next(1, status=503, path="/items", method="POST")
    async with session.post(emu.base_url + "/items", json={"a": 1}) as response:
        assert response.status == 503
        assert await response.json() == {"error": {"code": 503, "message": "Service Unavailable"}}
    assert emu.processed == 1  # the work was done; the client cannot know
    assert emu.requests[-1].fault == "fail_after_processing"
    async with session.post(emu.base_url + "/items", json={"a": 1}) as response:
        assert (await response.json())["id"] == 2


@pytest.mark.parametrize("after_processing", [False, True])
async def test_drop_next_closes_the_connection(
    emu: KitEmulator, session: aiohttp.ClientSession, after_processing: bool
) -> None:
    emu.drop_next(1, path="/items", after_processing=after_processing)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with session.post(emu.base_url + "/items", json={"a": 1}) as response:
            await response.read()
    assert emu.processed == (1 if after_processing else 0)
    entry = emu.requests[-1]
    assert entry.status is None
    assert entry.fault == ("drop_after_processing" if after_processing else "drop")
    # The next request (on a new connection) is served.
    async with session.post(emu.base_url + "/items", json={"a": 1}) as response:
        assert response.status == 200


async def test_malformed_next_is_200_and_not_json(emu: KitEmulator, session: aiohttp.ClientSession) -> None:
    emu.malformed_next(1, path="/echo")
    async with session.get(emu.base_url + "/echo") as response:
        assert response.status == 200
        assert response.content_type == "application/json"  # it claims JSON ...
        with pytest.raises(json.JSONDecodeError):  # ... and is not
            await response.json()
    assert emu.requests[-1].fault == "malformed"
    emu.malformed_next(1, path="/items", after_processing=True)
    async with session.post(emu.base_url + "/items", json={}) as response:
        with pytest.raises(json.JSONDecodeError):
            await response.json()
    assert emu.processed == 1
    assert (await get_json(session, emu.base_url + "/echo"))[0] == 200


@pytest.mark.parametrize("after_processing", [False, True])
async def test_malformed_truncated_announces_more_than_it_sends(
    emu: KitEmulator, session: aiohttp.ClientSession, after_processing: bool
) -> None:
    emu.malformed_next(1, path="/items", truncated=True, after_processing=after_processing)
    async with session.post(emu.base_url + "/items", json={"payload": "x" * 50}) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    assert emu.processed == (1 if after_processing else 0)
    assert emu.requests[-1].fault == ("truncated_after_processing" if after_processing else "truncated")
    async with session.post(emu.base_url + "/items", json={}) as response:
        assert response.status == 200


async def test_slow_next_delays_one_request(emu: KitEmulator, session: aiohttp.ClientSession) -> None:
    emu.slow_next(1, delay_s=5, path="/echo")
    with pytest.raises(TimeoutError):
        async with session.get(emu.base_url + "/echo", timeout=aiohttp.ClientTimeout(total=0.1)) as response:
            await response.read()
    assert emu.requests[-1].fault == "slow"
    # The rule is consumed: the next request is answered at once.
    async with session.get(emu.base_url + "/echo", timeout=aiohttp.ClientTimeout(total=5)) as response:
        assert response.status == 200


async def test_slow_request_is_processed_after_its_delay(
    emu: KitEmulator, session: aiohttp.ClientSession
) -> None:
    now = [0.0]
    emu.clock = lambda: now[0]
    emu.slow_next(1, delay_s=0.05, path="/items")
    async with session.post(emu.base_url + "/items", json={}) as response:
        assert response.status == 200
    assert emu.processed == 1
    assert emu.requests[-1].fault == "slow"


async def test_latency_is_added_to_every_response(emu: KitEmulator, session: aiohttp.ClientSession) -> None:
    emu.latency_s = 5
    with pytest.raises(TimeoutError):
        async with session.get(emu.base_url + "/echo", timeout=aiohttp.ClientTimeout(total=0.1)) as response:
            await response.read()
    emu.latency_s = 0
    async with session.get(emu.base_url + "/echo", timeout=aiohttp.ClientTimeout(total=5)) as response:
        assert response.status == 200


async def test_stop_does_not_wait_for_slow_requests(session: aiohttp.ClientSession) -> None:
    async with start_emulator("kit-test", shutdown_timeout_s=0.05) as emulator:
        emulator.slow_next(1, delay_s=60)

        async def slow_call() -> None:
            with pytest.raises(aiohttp.ClientError):
                async with session.get(emulator.base_url + "/echo") as response:
                    await response.read()

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow_call)
            with anyio.fail_after(10):
                while emulator.count() == 0:  # noqa: ASYNC110 - the emulator has no arrival event
                    await anyio.sleep(0.01)
                await emulator.stop()
    assert not emulator.running


# -- the pytest plugin ----------------------------------------------------------------------------------


async def test_oqc_emulator_fixture(oqc_emulator: OqcEmulator, session: aiohttp.ClientSession) -> None:
    assert oqc_emulator.running
    assert oqc_emulator.job_duration_s == TEST_JOB_DURATION_S
    status, body = await get_json(session, oqc_emulator.base_url + "/admin/version")
    assert status == 200
    assert "version" in body


async def test_emulator_factory_fixture(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    async with emulator_factory("kit-test", latency_s=0.01) as first:
        assert first.job_duration_s == TEST_JOB_DURATION_S
        assert first.latency_s == 0.01
        assert (await get_json(session, first.base_url + "/echo"))[0] == 200
    assert not first.running
    # One left running on purpose: the fixture's teardown stops it.
    await emulator_factory("oqc", job_duration_s=0.2).__aenter__()


PLUGIN_TEARDOWN_TESTS = """
import aiohttp
import pytest

seen = []


async def test_first(oqc_emulator):
    seen.append(oqc_emulator)
    assert oqc_emulator.running


async def test_factory(emulator_factory):
    started = await emulator_factory("oqc").__aenter__()  # left running on purpose
    seen.append(started)


async def test_after():
    # Both fixtures tore their emulators down, in tasks other than the ones that started them.
    assert [emu.running for emu in seen] == [False, False]
    async with aiohttp.ClientSession() as session:
        for emu in seen:
            with pytest.raises(aiohttp.ClientConnectorError):
                await session.get(emu.base_url + "/admin/version")
"""


@pytest.fixture
def qiskit_imported() -> None:
    """The pytester fixture restores ``sys.modules`` when it ends, dropping whatever was imported
    meanwhile: qiskit must be wholly imported (by the local simulator's loader thread) before it
    starts, never half-way through."""
    assert wait_for_qiskit(timeout_s=120)


@pytest.mark.parametrize("mode", ["auto", "strict"])
@pytest.mark.usefixtures("qiskit_imported")
def test_plugin_fixtures_tear_down_in_pytest_asyncio(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A real pytest-asyncio session using the plugin's fixtures, strict and auto.

    It runs in a subprocess: an in-process run restores ``sys.modules`` afterwards, dropping numpy
    and qiskit if they were first imported during it, and their extension modules cannot be loaded
    a second time in one process."""
    # Only the plugins needed: the others (hypothesis, coverage ...) cost a second to load.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    source = PLUGIN_TEARDOWN_TESTS
    if mode == "strict":
        source = source.replace("\nasync def test_", "\n@pytest.mark.asyncio\nasync def test_")
    pytester.makepyfile(test_teardown=textwrap.dedent(source))
    result = pytester.runpytest_subprocess(
        "-p",
        "pytest_asyncio.plugin",
        "-p",
        "oqc_style_sdk.testing.pytest_plugin",
        "-p",
        "no:cacheprovider",
        "-o",
        f"asyncio_mode={mode}",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "-W",
        "error",
        # The outer session may have imported the plugin without rewriting it: harmless here.
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        "-q",
    )
    result.assert_outcomes(passed=3)
