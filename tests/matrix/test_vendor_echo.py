"""A vendor that echoes the user's secret: nothing the SDK keeps of what it said carries it.

Issue 16, hole 6: a FAILED OQC task whose message quoted the token kept it verbatim in
``job.error``, the job's repr and the saved file (HTTP error bodies were scrubbed, task errors were
not). Known secrets are now scrubbed from every answer as it arrives (``_http.Response``), so every
vendor text kept anywhere — an error message, a vendor status, a result, a log line, a saved file —
is built from scrubbed text. Each vendor's emulator is made to echo the secret where that vendor
puts a run's message, and everything kept is searched for it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from oqc_style_sdk import Job, JobState, Sdk
from oqc_style_sdk._http import HttpClient, Secret
from oqc_style_sdk.testing.emulator import start_emulator
from oqc_style_sdk.testing.windmill import EmulatedScript
from tests.common import FAST
from tests.matrix.test_fault_matrix import ADAPTERS
from tests.matrix.test_forged_files import serve

SECRET = "s3cr3t-echoed-ABCDEFGHIJKLMNOP"
ECHO = f"refused: credentials {SECRET} are not valid here"
WINDMILL_ECHO_SCRIPT = "u/demo/echoes"


async def _fail_oqc(emu: Any, job: Job) -> None:
    await emu.set_status(job.task_id, "FAILED", error_message=ECHO)


async def _fail_ibm(emu: Any, job: Job) -> None:
    await emu.set_status(job.task_id, "Failed", reason=ECHO)


async def _fail_azure(emu: Any, job: Job) -> None:
    await emu.set_status(job.task_id, "Failed", error_code="Echo", error_message=ECHO)


async def _fail_databricks(emu: Any, job: Job) -> None:
    assert job.task_id is not None
    emu.set_state(
        int(job.task_id), life_cycle_state="TERMINATED", result_state="FAILED", state_message=ECHO, error=ECHO
    )


async def _windmill_fails_by_itself(emu: Any, job: Job) -> None:
    """The script fails with ECHO as its error (see the emulator options below)."""


@dataclass(frozen=True)
class Echo:
    #: The emulator option that sets the secret the backend is given.
    secret_option: str
    fail: Callable[[Any, Job], Awaitable[None]]
    program: Any = None
    options: dict[str, Any] = field(default_factory=dict)


ECHOES: dict[str, Echo] = {
    "oqc": Echo("token", _fail_oqc),
    "ibm_quantum": Echo("api_key", _fail_ibm),
    "azure_quantum": Echo("token", _fail_azure),
    "databricks": Echo("token", _fail_databricks),
    "windmill": Echo(
        "token",
        _windmill_fails_by_itself,
        program={"path": WINDMILL_ECHO_SCRIPT},
        options={"scripts": (EmulatedScript(WINDMILL_ECHO_SCRIPT, error=ECHO),)},
    ),
}


def _kept(job: Job, saved: Path, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every text the SDK keeps of the run: what a user may print, save or paste in a bug report."""
    error = job.error
    return [
        repr(job),
        str(job),
        repr(error),
        str(error),
        str(job.vendor_status),
        repr(job.history),
        saved.read_text(),
        caplog.text,
    ]


@pytest.mark.parametrize("backend", list(ECHOES))
async def test_a_failed_run_whose_message_echoes_the_secret_keeps_it_scrubbed(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    adapter, echo = ADAPTERS[backend], ECHOES[backend]
    caplog.set_level(logging.DEBUG)
    options = {**adapter.long_options, **echo.options, echo.secret_option: SECRET}
    if backend == "windmill":
        options["job_duration_s"] = 0.05
    with anyio.fail_after(30):
        async with (
            start_emulator(adapter.emulator, max_lifetime_s=60, **options) as emulator,
            Sdk(adapter.emulator, default_target=adapter.target, polling=FAST, **emulator.credentials) as sdk,
        ):
            job = sdk.create_job(program=echo.program or adapter.program)
            await job.submit()
            await echo.fail(emulator, job)
            await job.wait(timeout_s=20)
            saved = await job.save(tmp_path / "job.json")
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert "***" in job.error.message  # the vendor's message is kept, the secret is not
    leaks = [text for text in _kept(job, saved, caplog) if SECRET in text]
    assert not leaks, f"{backend}: the echoed secret was kept in: {leaks[0][:300]}"


async def test_a_result_that_echoes_the_secret_is_scrubbed(tmp_path: Path) -> None:
    """Results are vendor text too: a Windmill script returning the token it ran with."""
    script = EmulatedScript("u/demo/leaky", result=lambda args: {"seen": SECRET, "args": dict(args)})
    with anyio.fail_after(30):
        async with (
            start_emulator(
                "windmill", job_duration_s=0.05, max_lifetime_s=60, token=SECRET, scripts=(script,)
            ) as emu,
            Sdk("windmill", polling=FAST, **emu.credentials) as sdk,
        ):
            job = sdk.create_job(program={"path": "u/demo/leaky"})
            await job.execute(timeout_s=20)
            saved = await job.save(tmp_path / "job.json")
    assert job.result is not None
    assert job.result.data["seen"] == "***"
    assert SECRET not in saved.read_text()
    assert SECRET not in repr(job.result)


@pytest.mark.parametrize(
    "spelled",
    [
        SECRET,  # as sent
        "".join(f"\\u{ord(c):04x}" for c in SECRET),  # every character a JSON escape
    ],
)
async def test_a_secret_spelled_in_json_escapes_is_scrubbed_from_the_parsed_answer(spelled: str) -> None:
    app = web.Application()

    async def answer(request: web.Request) -> web.Response:
        body = '{"message": "token ' + spelled + ' refused", "' + spelled + '": 1}'
        return web.Response(body=body.encode(), content_type="application/json")

    app.router.add_get("/echo", answer)
    with anyio.fail_after(10):
        async with (
            serve(app) as url,
            HttpClient(url, vendor="Echo", headers={"X-Api-Key": Secret(SECRET)}) as http,
        ):
            response = await http.get("/echo")
    parsed = response.json()
    assert SECRET not in repr(parsed)
    assert SECRET not in response.body.decode()
    assert parsed["message"] == "token *** refused"
    assert parsed["***"] == 1
