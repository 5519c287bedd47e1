"""Text that cannot be encoded as UTF-8 is refused where it comes in, on every backend.

Issue 16, hole 7: a lone surrogate (``"\\ud800"``) in a program, tag, target or config (nested too)
gave a raw ``UnicodeEncodeError`` on OQC and other late failures elsewhere (a vendor's 400, a file
that cannot be saved). Now ``create_job`` and ``reconfigure`` raise :class:`JobValidationError`
naming the field, before any request, and ``load`` refuses a file that spells one in a ``\\u``
escape.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from oqc_style_sdk import JobState, Sdk
from oqc_style_sdk.exceptions import CorruptJobFileError, JobValidationError
from oqc_style_sdk.testing.emulator import start_emulator
from tests.common import BELL, FAST
from tests.matrix.test_fault_matrix import ADAPTERS

BACKENDS = ["local", *ADAPTERS]
LONE = "\ud800"


def _program(backend: str) -> Any:
    return BELL if backend == "local" else ADAPTERS[backend].program


def _tainted_program(backend: str) -> tuple[Any, str]:
    """The backend's program with a lone surrogate where it takes text, and the field's name."""
    program = copy.deepcopy(_program(backend))
    if isinstance(program, str):
        return f"{program}\n// {LONE}\n", "program"
    if backend == "databricks":
        program["tasks"][0]["notebook_task"]["base_parameters"] = {"who": f"a{LONE}"}
        return program, "program['tasks'][0]['notebook_task']['base_parameters']['who']"
    assert backend == "windmill"
    program["args"] = {"names": ["ok", f"b{LONE}"]}
    return program, "program['args']['names'][1]"


@asynccontextmanager
async def opened(backend: str) -> AsyncIterator[tuple[Any, Sdk]]:
    if backend == "local":
        async with Sdk(polling=FAST) as sdk:
            yield None, sdk
        return
    adapter = ADAPTERS[backend]
    async with start_emulator(adapter.emulator, job_duration_s=0.05, max_lifetime_s=60) as emu:  # noqa: SIM117 - the Sdk needs emu
        async with Sdk(backend, default_target=adapter.target, polling=FAST, **emu.credentials) as sdk:
            yield emu, sdk


def _sent(emu: Any) -> int:
    return 0 if emu is None else len(emu.requests)


def _refused(exc: pytest.ExceptionInfo[JobValidationError], field: str) -> None:
    message = str(exc.value)
    assert message.startswith(f"{field}:"), message
    assert "UTF-8" in message
    message.encode("utf-8")  # the error itself can be printed, logged and saved


@pytest.mark.parametrize("backend", BACKENDS)
async def test_create_job_refuses_unencodable_text_in_every_field(backend: str) -> None:
    program, program_field = _tainted_program(backend)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"program": program}, program_field),
        ({"tag": f"nightly-{LONE}"}, "tag"),
        ({"target": f"qpu{LONE}"}, "target"),
        ({"config": {"name": f"run {LONE}"}}, "config['name']"),
        ({"config": {"extra": {"deep": [1, {"x": LONE}]}}}, "config['extra']['deep'][1]['x']"),
        ({"config": {LONE: 1}}, "a key of config"),
        ({"program": [_program(backend), program]}, program_field),  # a composite's child
    ]
    with anyio.fail_after(30):
        async with opened(backend) as (emu, sdk):
            before = _sent(emu)
            for kwargs, field in cases:
                with pytest.raises(JobValidationError) as info:
                    sdk.create_job(**{"program": _program(backend), **kwargs})
                _refused(info, field)
            with pytest.raises(JobValidationError) as info:
                sdk.set_default_target(f"t{LONE}")
            _refused(info, "target")
            assert _sent(emu) == before  # nothing reached the vendor


@pytest.mark.parametrize("backend", BACKENDS)
async def test_reconfigure_refuses_unencodable_text_and_keeps_the_job(backend: str) -> None:
    program, program_field = _tainted_program(backend)
    with anyio.fail_after(30):
        async with opened(backend) as (emu, sdk):
            job = sdk.create_job(program=_program(backend), tag="kept")
            normalised = job.program
            before = _sent(emu)
            for kwargs, field in (({"program": program}, program_field), ({"tag": LONE}, "tag")):
                with pytest.raises(JobValidationError) as info:
                    job.reconfigure(**kwargs)
                _refused(info, field)
            assert (job.state, job.tag, job.program) == (JobState.CREATED, "kept", normalised)
            assert _sent(emu) == before


@pytest.mark.parametrize("backend", BACKENDS)
async def test_load_refuses_a_file_that_spells_a_lone_surrogate(backend: str, tmp_path: Path) -> None:
    with anyio.fail_after(30):
        async with opened(backend) as (emu, sdk):
            path = await sdk.create_job(program=_program(backend), tag="TAG").save(tmp_path / "job.json")
            text = path.read_text()
            path.write_text(text.replace('"tag": "TAG"', '"tag": "T\\ud800G"', 1))
            assert path.read_text() != text
            before = _sent(emu)
            with pytest.raises(CorruptJobFileError, match=r"jobs\[0\]\['tag'\].*UTF-8"):
                await sdk.load(path)
            assert _sent(emu) == before
            # A surrogate *pair* is one ordinary character (here an emoji): it loads.
            path.write_text(text.replace('"tag": "TAG"', '"tag": "T\\ud83d\\ude00G"', 1))
            loaded = await sdk.load(path)
            assert loaded.tag == "T\U0001f600G"
            assert json.loads(path.read_text())["jobs"][0]["tag"] == loaded.tag
