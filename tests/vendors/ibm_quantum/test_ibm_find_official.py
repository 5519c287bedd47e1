"""A job qiskit-ibm-runtime submitted, unchanged, is found by ``sdk.job(id)`` in a fresh Sdk, waited on,
read, listed by ``sdk.jobs()``, and — while running — cancelled (issue 18: the vendor's client as judge)."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread
import pytest
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import SamplerV2

from oqc_style_sdk import JobState, JobValidationError, Sdk
from oqc_style_sdk.testing.ibm_quantum import IbmQuantumEmulator
from tests.vendors.ibm_quantum.test_ibm_official_client import _bell, _service

pytestmark = pytest.mark.filterwarnings("ignore:The SamplerV2 class is deprecated:DeprecationWarning")


def _submit_two(emu: IbmQuantumEmulator) -> tuple[str, str]:
    """Two sampler jobs as a qiskit-ibm-runtime user makes them; the first waited for."""
    service = _service(emu)
    backend = service.backend("ibm_fez")
    isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(_bell())
    sampler = SamplerV2(mode=backend)
    done = sampler.run([isa], shots=100)
    done.result(timeout=60)
    emu.job_duration_s = 60.0
    running = sampler.run([isa], shots=100)
    return done.job_id(), running.job_id()


async def test_a_job_of_qiskit_ibm_runtime_is_found_read_listed_and_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with IbmQuantumEmulator(job_duration_s=0.2, max_lifetime_s=120) as emu:
        for name, value in emu.cloud_env.items():
            monkeypatch.setenv(name, value)
        with anyio.fail_after(90):
            done_id, running_id = await anyio.to_thread.run_sync(_submit_two, emu)
            settings: dict[str, Any] = dict(emu.credentials)
            async with Sdk("ibm_quantum", **settings) as sdk:
                done = await sdk.job(done_id)
                assert done.state is JobState.COMPLETED
                assert done.target == "ibm_fez"
                assert sum(done.result.data["meas"].values()) == 100  # type: ignore[union-attr]
                assert done.program is None  # its PUB is a QPY-encoded circuit, not OpenQASM
                with pytest.raises(JobValidationError, match="not one OpenQASM circuit"):
                    await done.execute(timeout_s=10)
                listed = [job.task_id async for job in sdk.jobs(limit=10)]
                assert listed[:2] == [running_id, done_id]
                running = await sdk.job(running_id)
                assert running.active
                assert await running.cancel(timeout_s=30) is JobState.CANCELLED


def test_qiskit_encoded_results_decode_to_counts() -> None:
    from datetime import UTC, datetime

    from oqc_style_sdk.backends.ibm_quantum import decode_samples
    from oqc_style_sdk.exceptions import ProtocolError
    from oqc_style_sdk.testing.ibm_encoding import qiskit_result

    now = datetime.now(UTC)
    body = qiskit_result([{"c": ([0, 3, 3, 1], 2), "wide": ([300], 9)}], [4], now, now)
    assert decode_samples(body) == {"c": {"00": 1, "01": 1, "11": 2}, "wide": {"100101100": 1}}
    narrow = qiskit_result([{"c": ([7], 2)}], [1], now, now)
    with pytest.raises(ProtocolError, match="wider than 2 bits"):
        decode_samples(narrow)
    with pytest.raises(ProtocolError, match="Qiskit-encoded"):
        decode_samples({"__type__": "PrimitiveResult", "__value__": {}})
