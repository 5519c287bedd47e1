"""The official ``qiskit-ibm-runtime`` client as the judge of the IBM Quantum emulator.

The client runs unchanged, configured only through documented settings: ``QiskitRuntimeService``'s
``channel``, ``token``, ``instance``, ``url`` and ``url_resolver`` (its docstring: "If you provide a
custom url, you must also supply a matching url_resolver"), and the IBM Cloud SDK's environment
variables ``IAM_URL``, ``GLOBAL_SEARCH_URL`` and ``GLOBAL_CATALOG_URL`` (the client derives those
hosts from ``url`` without its port). It is synchronous, so it runs in a worker thread while the
emulator serves on the test's event loop; qiskit-ibm-runtime (and so qiskit) is imported here, in the
main thread, at collection.
"""

from __future__ import annotations

import threading
from typing import Any

import aiohttp
import anyio
import anyio.to_thread
import jsonschema
import pytest
from qiskit import QuantumCircuit
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import Batch, QiskitRuntimeService, SamplerV2

from oqc_style_sdk.testing.ibm_quantum import IAM_GRANT_TYPE, IbmQuantumEmulator
from tests.vendors.ibm_quantum.test_ibm_emulator import PARAMS_MODEL_SCHEMA, QISKIT_RESULT_SCHEMA

pytestmark = pytest.mark.filterwarnings(
    # qiskit-ibm-runtime 0.50 deprecated SamplerV2 for a client-side sampler; it is still the one
    # that sends jobs to the REST API, and what IBM's guides use.
    "ignore:The SamplerV2 class is deprecated:DeprecationWarning"
)

BOUND_S = 60
SHOTS = 200


def _resolver(url: str, instance: str, private_endpoint: bool | None = False, channel: str = "") -> str:
    """The documented ``url_resolver``: the emulator serves the API under ``/api/v1``."""
    return url + "/api/v1"


def _service(emu: IbmQuantumEmulator) -> QiskitRuntimeService:
    return QiskitRuntimeService(
        channel="ibm_quantum_platform",
        token=emu.api_key,
        instance=emu.instance,
        url=emu.base_url,
        url_resolver=_resolver,
    )


def _bell() -> QuantumCircuit:
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    return circuit


def _run_cancel_and_list(emu: IbmQuantumEmulator) -> dict[str, Any]:
    """What a user of qiskit-ibm-runtime does: find a backend, transpile, sample, read, cancel, list."""
    service = _service(emu)
    names = [backend.name for backend in service.backends()]
    backend = service.backend("ibm_fez")
    isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(_bell())
    sampler = SamplerV2(mode=backend)
    job = sampler.run([isa], shots=SHOTS)
    first = job.status()
    result = job.result(timeout=BOUND_S)
    counts = result[0].data.meas.get_counts()
    doomed = sampler.run([isa], shots=SHOTS)
    doomed.cancel()
    listed = [j.job_id() for j in service.jobs(limit=10)]
    return {
        "names": names,
        "num_qubits": backend.num_qubits,
        "first": first,
        "final": job.status(),
        "counts": counts,
        "cancelled": doomed.status(),
        "job_id": job.job_id(),
        "doomed_id": doomed.job_id(),
        "listed": listed,
        "thread": threading.current_thread() is not threading.main_thread(),
    }


async def test_sampler_v2_runs_a_bell_pair_reads_status_and_results_cancels_and_lists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with IbmQuantumEmulator(job_duration_s=1.0, max_lifetime_s=120) as emu:
        for name, value in emu.cloud_env.items():
            monkeypatch.setenv(name, value)
        with anyio.fail_after(BOUND_S):
            seen = await anyio.to_thread.run_sync(_run_cancel_and_list, emu)
        assert seen["thread"] is True
        assert seen["names"] == ["ibm_fez", "ibm_torino", "ibm_kingston"]
        assert seen["num_qubits"] == 156
        assert seen["first"] in ("QUEUED", "RUNNING")
        assert seen["final"] == "DONE"
        assert set(seen["counts"]) == {"00", "11"}
        assert sum(seen["counts"].values()) == SHOTS
        assert seen["cancelled"] == "CANCELLED"
        assert seen["listed"] == [seen["doomed_id"], seen["job_id"]]  # newest first
        assert await emu.status_of(seen["doomed_id"]) == "Cancelled"
        calls = {(r.method, r.path) for r in emu.requests}
        assert {
            ("POST", "/identity/token"),
            ("POST", "/global-search/v3/resources/search"),
            ("GET", "/api/v1/backends/ibm_fez/configuration"),
            ("GET", "/api/v1/backends/ibm_fez/properties"),
            ("POST", "/api/v1/jobs"),
            ("POST", f"/api/v1/jobs/{seen['doomed_id']}/cancel"),
            ("GET", f"/api/v1/jobs/{seen['job_id']}/results"),
        } <= calls
        # the client decoded the emulator's JWTs: it never fell back to sending the API key (which
        # the API answers 401), and every call it made was answered
        assert emu.tokens_issued >= 1
        assert all(r.status is not None and r.status < 400 for r in emu.requests), [
            (r.method, r.path, r.status) for r in emu.requests if r.status is None or r.status >= 400
        ]
        created = next(r for r in emu.requests if (r.method, r.path) == ("POST", "/api/v1/jobs"))
        params = created.body["params"]
        assert params["support_qiskit"] is True
        assert params["pubs"][0][0]["__type__"] == "QuantumCircuit"  # QPY, as the client sends
        jsonschema.Draft202012Validator(PARAMS_MODEL_SCHEMA).validate(params)  # IBM's current model
        jsonschema.Draft202012Validator(QISKIT_RESULT_SCHEMA).validate(await _results(emu, seen["job_id"]))


async def _results(emu: IbmQuantumEmulator, job_id: str) -> Any:
    """The raw ``GET /jobs/{id}/results`` body the client decoded."""
    async with aiohttp.ClientSession() as session:
        form = {"grant_type": IAM_GRANT_TYPE, "apikey": emu.api_key}
        async with session.post(emu.iam_url, data=form) as response:
            token = (await response.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Service-CRN": emu.instance}
        async with session.get(f"{emu.api_url}/jobs/{job_id}/results", headers=headers) as response:
            assert response.status == 200
            return await response.json()


def _run_in_a_batch(emu: IbmQuantumEmulator) -> dict[str, Any]:
    service = _service(emu)
    backend = service.backend("ibm_torino")
    isa = generate_preset_pass_manager(backend=backend, optimization_level=2).run(_bell())
    with Batch(backend=backend) as batch:
        sampler = SamplerV2(mode=batch)
        jobs = [sampler.run([isa], shots=50) for _ in range(2)]
        counts = [job.result(timeout=BOUND_S)[0].data.meas.get_counts() for job in jobs]
        details = batch.details()
    return {
        "session": batch.session_id,
        "jobs": [job.session_id for job in jobs],
        "counts": counts,
        "details": details,
    }


async def test_a_batch_sends_its_jobs_in_one_session(monkeypatch: pytest.MonkeyPatch) -> None:
    async with IbmQuantumEmulator(job_duration_s=0.05, max_lifetime_s=120) as emu:
        for name, value in emu.cloud_env.items():
            monkeypatch.setenv(name, value)
        with anyio.fail_after(BOUND_S):
            seen = await anyio.to_thread.run_sync(_run_in_a_batch, emu)
        assert seen["session"]
        assert seen["jobs"] == [seen["session"]] * 2
        for counts in seen["counts"]:
            assert set(counts) <= {"00", "11"}
            assert sum(counts.values()) == 50
        assert seen["details"]["mode"] == "batch"
        assert seen["details"]["backend_name"] == "ibm_torino"
        created = next(r for r in emu.requests if (r.method, r.path) == ("POST", "/api/v1/sessions"))
        assert created.body["mode"] == "batch"
        # leaving the batch closes it: it takes no more jobs
        assert ("PATCH", f"/api/v1/sessions/{seen['session']}") in {(r.method, r.path) for r in emu.requests}
