"""Bad input on every HTTP backend: a typed, clear error before anything is sent, and nothing
half-written (no request to the vendor, no file, the job unchanged).

Fills the gaps left by test_persistence.py and test_lifecycle.py: wrong argument types to
``create_job``/``execute``/``cancel``, empty and oversized programs (each backend's documented
limit), an unknown target, and a job file loaded into an ``Sdk`` for another backend or endpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from oqc_style_sdk import Job, JobState, Sdk
from oqc_style_sdk.backends import azure_quantum, ibm_quantum, oqc, windmill
from oqc_style_sdk.exceptions import (
    ForeignJobFileError,
    JobValidationError,
    UnknownTargetError,
)
from oqc_style_sdk.testing.emulator import start_emulator
from tests.common import FAST
from tests.matrix.test_fault_matrix import ADAPTERS

HTTP_BACKENDS = list(ADAPTERS)

EMPTY: dict[str, Any] = {
    "oqc": "   ",
    "ibm_quantum": "",
    "azure_quantum": "\n",
    "databricks": {"tasks": []},
    "windmill": {},
}
OVERSIZED: dict[str, Any] = {
    "oqc": "x" * (oqc.MAX_PROGRAM_BYTES + 1),
    "ibm_quantum": "x" * (ibm_quantum.MAX_PROGRAM_BYTES + 1),
    "azure_quantum": "x" * (azure_quantum.MAX_PROGRAM_BYTES + 1),
    "windmill": {"code": "x" * (windmill.MAX_CODE_BYTES + 1), "language": "bash"},
}


@asynccontextmanager
async def opened(backend: str) -> AsyncIterator[tuple[Any, Sdk]]:
    adapter = ADAPTERS[backend]
    async with start_emulator(adapter.emulator, job_duration_s=0.05, max_lifetime_s=60) as emu:  # noqa: SIM117 - the Sdk needs emu
        async with Sdk(backend, default_target=adapter.target, polling=FAST, **emu.credentials) as sdk:
            yield emu, sdk


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
async def test_bad_programs_targets_and_arguments_send_nothing(backend: str) -> None:
    adapter = ADAPTERS[backend]
    with anyio.fail_after(20):
        async with opened(backend) as (emu, sdk):
            before = len(emu.requests)
            with pytest.raises(JobValidationError, match=r"(?i)empty|non-empty|needs|at least|task"):
                sdk.create_job(program=EMPTY[backend])
            if backend in OVERSIZED:
                with pytest.raises(JobValidationError, match=r"limit"):
                    sdk.create_job(program=OVERSIZED[backend])
            with pytest.raises(UnknownTargetError, match="nowhere"):
                sdk.create_job(program=adapter.program, target="nowhere")
            for bad in (
                {"config": "shots=10"},
                {"fetch_diagnostics": "yes"},
                {"tag": 5},
                {"target": 5},
            ):
                with pytest.raises(JobValidationError):
                    sdk.create_job(program=adapter.program, **bad)
            with pytest.raises(JobValidationError):
                sdk.create_job(program=42)
            job = sdk.create_job(program=adapter.program)
            assert isinstance(job, Job)
            for bad_timeout in ("5", -1, float("nan")):
                with pytest.raises(JobValidationError):
                    await job.execute(timeout_s=bad_timeout)  # type: ignore[arg-type]
                with pytest.raises(JobValidationError):
                    await job.cancel(timeout_s=bad_timeout)  # type: ignore[arg-type]
            with pytest.raises(JobValidationError):
                job.reconfigure(shots=10)  # not a setting: config={"shots": 10}
            assert job.state is JobState.CREATED
            assert len(job.history) == 0
            assert len(emu.requests) == before  # nothing reached the vendor
            assert adapter.created(emu) == 0


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
async def test_a_job_file_loads_only_into_its_own_backend_and_endpoint(backend: str, tmp_path: Path) -> None:
    other_backend = "windmill" if backend != "windmill" else "oqc"
    with anyio.fail_after(30):
        async with opened(backend) as (_emu, sdk):
            job = sdk.create_job(program=ADAPTERS[backend].program)
            saved = await job.save(tmp_path / "job.json")
            text = saved.read_text()
            # Same vendor, another endpoint: opened while the first still runs, so it cannot be
            # given the port the first one just freed (it was, once, and the load was not foreign).
            async with opened(backend) as (_emu2, elsewhere):
                with pytest.raises(ForeignJobFileError):
                    await elsewhere.load(saved)
        async with opened(other_backend) as (_emu3, other):
            with pytest.raises(ForeignJobFileError):
                await other.load(saved)
    assert saved.read_text() == text  # a refused load changes nothing
