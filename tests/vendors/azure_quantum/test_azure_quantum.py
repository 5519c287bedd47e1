"""``Sdk("azure_quantum")`` against the Azure Quantum emulator: results, statuses, submission, cancel,
batched reads, settings and secrets."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from oqc_style_sdk import Sdk
from oqc_style_sdk._http import RetryPolicy
from oqc_style_sdk.backends._qiskit import as_qasm3
from oqc_style_sdk.backends.azure_quantum import (
    AZURE_STATUS,
    DEFAULT_API_VERSION,
    DOCUMENTED_STATUSES,
    ENV,
    AzureQuantumBackend,
    counts_from_ionq,
    counts_from_quantinuum,
    ionq_program,
    map_status,
    quantinuum_program,
)
from oqc_style_sdk.backends.base import RunRef, RunSpec
from oqc_style_sdk.exceptions import (
    AuthenticationError,
    BackendUnavailableError,
    ConfigurationError,
    JobValidationError,
    ProtocolError,
    ServerError,
    UnknownTargetError,
)
from oqc_style_sdk.polling import PollingPolicy
from oqc_style_sdk.state import JobState
from oqc_style_sdk.testing.azure_quantum import AzureQuantumEmulator
from oqc_style_sdk.testing.pytest_plugin import EmulatorFactory
from tests.common import BELL3, DATA, FAST

DATA = DATA / "azure"
OLD_API = "2024-03-01-preview"

#: Two registers, measured out of order: a = [q2], b = [q1, q0] → a "1", b "10" every shot.
REGISTERS_QASM2 = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[3];
creg a[1];
creg b[2];
x q[0];
x q[2];
measure q[0] -> b[1];
measure q[2] -> a[0];
measure q[1] -> b[0];
"""
IONQ = "ionq.simulator"
QUANTINUUM = "quantinuum.sim.h2-1e"


@pytest.fixture
async def emu(emulator_factory: EmulatorFactory) -> AsyncIterator[AzureQuantumEmulator]:
    async with emulator_factory("azure_quantum", seed=5) as emulator:
        assert isinstance(emulator, AzureQuantumEmulator)
        yield emulator


def use_env(monkeypatch: pytest.MonkeyPatch, emulator: AzureQuantumEmulator) -> None:
    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)
    for key, value in emulator.env.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, emu: AzureQuantumEmulator) -> AzureQuantumEmulator:
    use_env(monkeypatch, emu)
    return emu


def backend_of(sdk: Sdk) -> AzureQuantumBackend:
    backend = sdk.backend
    assert isinstance(backend, AzureQuantumBackend)
    return backend


def job_path(emu: AzureQuantumEmulator, job_id: str) -> str:
    return f"{emu.workspace_path}/jobs/{job_id}"


def requests(emu: AzureQuantumEmulator, method: str, path: str | re.Pattern[str]) -> list[int | None]:
    """Statuses of the logged requests of ``method`` on exactly ``path`` (or matching the pattern)."""
    return [
        r.status
        for r in emu.requests
        if r.method == method and (r.path == path if isinstance(path, str) else path.search(r.path))
    ]


async def wait_for(emu: AzureQuantumEmulator, job_id: str, status: str) -> None:
    with anyio.fail_after(10):
        while True:
            if await emu.status_of(job_id) == status:
                return
            await anyio.sleep(0.01)


# -- results ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [IONQ, QUANTINUUM])
async def test_bell_returns_correct_counts(env: AzureQuantumEmulator, target: str) -> None:
    async with Sdk("azure_quantum", polling=FAST) as sdk:
        job = sdk.create_job(program=BELL3, target=target, config={"shots": 1000})
        outputs = await job.execute(timeout_s=20)
    assert job.state is JobState.COMPLETED
    assert job.vendor_status == "Succeeded"
    assert outputs[0] is job.result
    assert job.result is not None
    counts = job.result.data["c"]
    assert set(counts) == {"00", "11"}
    assert sum(counts.values()) == 1000
    assert 400 < counts["00"] < 600
    assert env.job_ids == [job.task_id]
    # the counts are exactly what the provider wrote (IonQ: probabilities × shots)
    raw = json.loads(env.blob(f"job-{job.task_id}", "rawOutputData") or b"")
    if target == IONQ:
        assert {str(int(bits, 2)): n / 1000 for bits, n in counts.items()} == raw["histogram"]
        sent = json.loads(env.blob(f"job-{job.task_id}", "inputData") or b"")
        assert sent == {
            "gateset": "qis",
            "qubits": 2,
            "circuit": [{"gate": "h", "targets": [0]}, {"gate": "x", "controls": [0], "targets": [1]}],
        }
    else:
        assert counts == {bits: raw["c"].count(bits) for bits in set(raw["c"])}
        assert (env.blob(f"job-{job.task_id}", "inputData") or b"").startswith(b"OPENQASM 2.0;")


@pytest.mark.parametrize("target", [IONQ, QUANTINUUM])
async def test_registers_and_bit_order(env: AzureQuantumEmulator, target: str) -> None:
    async with Sdk("azure_quantum", polling=FAST) as sdk:
        job = sdk.create_job(program=REGISTERS_QASM2, target=target, config={"shots": 10})
        await job.execute(timeout_s=20)
    assert job.result is not None
    assert job.result.data == {"a": {"1": 10}, "b": {"10": 10}}


async def test_the_ionq_job_carries_what_decodes_its_histogram(env: AzureQuantumEmulator) -> None:
    async with Sdk("azure_quantum", polling=FAST) as sdk:
        job = sdk.create_job(program=REGISTERS_QASM2, target=IONQ, config={"shots": 4}, tag="regs")
        await job.execute(timeout_s=20)
    put = next(r for r in env.requests if r.method == "PUT" and r.path.startswith(env.workspace_path))
    assert put.body["metadata"] == {
        "num_qubits": "3",
        "meas_map": "[2, 1, 0]",
        "cregs": '[["a", [0]], ["b", [1, 2]]]',
    }
    assert put.body["inputParams"] == {"shots": 4}
    assert put.body["name"] == "regs"
    assert put.body["tags"] == ["regs"]
    assert put.body["inputDataUri"] == f"{env.storage_url}/job-{job.task_id}/inputData"
    assert "sig=" in put.body["containerUri"]


def test_result_decoders() -> None:
    assert counts_from_ionq(
        {"histogram": {"0": 0.5, "3": 0.5}}, shots=5, meas_map=[0, 1], cregs=[("c", [0, 1])]
    ) == {"c": {"00": 3, "11": 2}}  # largest remainder: the counts add up to the shots
    # a clbit never measured reads 0; a qubit not measured is left out
    assert counts_from_ionq({"histogram": {"7": 1}}, shots=2, meas_map=[2, None], cregs=[("c", [0, 1])]) == {
        "c": {"01": 2}
    }
    for bad in ({}, {"histogram": {"x": 1}}, {"histogram": {"0": -1}}, {"histogram": {"0": 0.2}}, []):
        with pytest.raises(ProtocolError):
            counts_from_ionq(bad, shots=1, meas_map=[0], cregs=[("c", [0])])
    assert counts_from_quantinuum({"c": ["01", "01", "10"], "access_token": "x", "n": 3}) == {
        "c": {"01": 2, "10": 1}
    }
    with pytest.raises(ProtocolError):
        counts_from_quantinuum(["01"])


def test_program_conversion() -> None:
    program = ionq_program(BELL3)
    assert program.meas_map == [0, 1]
    assert program.cregs == [("c", [0, 1])]
    for refused, message in (
        ("OPENQASM 2.0; qreg q[1]; creg c[1]; measure q[0] -> c[0]; h q[0];", "does not parse"),
        (
            'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; measure q[0] -> c[0]; h q[0];',
            "after it was measured",
        ),
        ('OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; reset q[0];', "reset"),
        (
            'OPENQASM 3.0; include "stdgates.inc"; qubit q; bit c; c = measure q; if (c) { x q; }',
            "classically controlled",
        ),
    ):
        with pytest.raises(JobValidationError, match=message):
            ionq_program(refused)
    assert quantinuum_program(REGISTERS_QASM2) == REGISTERS_QASM2  # OpenQASM 2 goes as written
    lowered = quantinuum_program(BELL3.replace("cx q[0], q[1];", "cx q[0], q[1];\nswap q[0], q[1];"))
    assert lowered.startswith("OPENQASM 2.0;")
    assert "swap" not in lowered
    assert "creg c[2];" in lowered


# -- the status table ------------------------------------------------------------------------------


def test_the_table_maps_every_documented_status_once() -> None:
    spec = json.loads((DATA / "azure-quantum-data-plane.openapi.json").read_text())
    assert list(AZURE_STATUS) == list(DOCUMENTED_STATUSES) == spec["definitions"]["JobStatus"]["enum"]
    active = {s for s, state in AZURE_STATUS.items() if state.is_active}
    assert active == {"Queued", "Waiting", "Executing", "CancellationRequested", "Cancelling", "Finishing"}
    assert map_status("Succeeded") is map_status("Completed") is JobState.COMPLETED
    assert map_status("Paused") is None


async def test_every_documented_status_through_the_adapter(
    env: AzureQuantumEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    async with Sdk("azure_quantum", polling=FAST) as sdk:
        backend = backend_of(sdk)
        job = sdk.create_job(program=BELL3, target=IONQ)
        await job.submit()
        assert job.task_id is not None
        ref = RunRef(job.task_id)
        for status in DOCUMENTED_STATUSES:
            await env.set_status(
                job.task_id, status, error_code="QuotaExceeded", error_message="no time left"
            )
            observation = await backend.status(ref)
            assert (observation.vendor_status, observation.state) == (status, AZURE_STATUS[status])
            if status == "Failed":
                assert (observation.message, observation.code) == ("no time left", "QuotaExceeded")
            if status == "Cancelled":
                assert observation.ended_at is not None
        # errorData absent on a failed job: still FAILED, with a message
        await env.set_status(job.task_id, "Failed")
        env._jobs[job.task_id].forced_error = None  # a service that gives no errorData
        observation = await backend.status(ref)
        assert observation.state is JobState.FAILED
        assert "no error data" in (observation.message or "")
        # undocumented: active, kept raw, logged once
        caplog.set_level(logging.WARNING, logger="oqc_style_sdk.backends.azure_quantum")
        await env.set_status(job.task_id, "Paused", undocumented=True)
        for _ in range(2):
            observation = await backend.status(ref)
            assert (observation.state, observation.vendor_status) == (JobState.SUBMITTED, "Paused")
        assert sum("undocumented status 'Paused'" in r.getMessage() for r in caplog.records) == 1
        state = await job.refresh()
        assert (state, job.vendor_status) == (JobState.SUBMITTED, "Paused")


async def test_a_failed_job_carries_the_error_data(env: AzureQuantumEmulator) -> None:
    async with Sdk("azure_quantum", polling=FAST) as sdk:
        job = sdk.create_job(program=BELL3, target=IONQ)
        await job.submit()
        assert job.task_id is not None
        await env.set_status(job.task_id, "Failed", error_code="ProviderError", error_message="ion trap lost")
        await job.wait(timeout_s=10)
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert (job.error.message, job.error.code) == ("ion trap lost", "ProviderError")


# -- submission ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["fail_after_processing", "drop_after_processing"])
async def test_a_create_retried_after_a_lost_response_makes_one_job(
    env: AzureQuantumEmulator, fault: str
) -> None:
    jobs = re.compile(r"/jobs/[0-9a-f-]{36}$")
    if fault == "fail_after_processing":
        env.fail_after_processing_next(1, status=503, method="PUT", path=jobs)
    else:
        env.drop_next(1, method="PUT", path=jobs, after_processing=True)
    async with Sdk("azure_quantum", polling=FAST, retry=RetryPolicy(base_delay_s=0.01)) as sdk:
        job = sdk.create_job(program=BELL3, target=IONQ, config={"shots": 100})
        await job.execute(timeout_s=20)
    assert job.completed
    assert env.job_ids == [job.task_id]
    assert env.engine_runs == 1
    expected = [503, 200] if fault == "fail_after_processing" else [None, 200]
    assert requests(env, "PUT", job_path(env, str(job.task_id))) == expected


async def test_a_submission_given_up_and_resumed_reuses_the_job_id(env: AzureQuantumEmulator) -> None:
    env.fail_after_processing_next(2, status=503, method="PUT", path=re.compile(r"/jobs/[0-9a-f-]{36}$"))
    async with Sdk(
        "azure_quantum", polling=FAST, retry=RetryPolicy(max_attempts=2, base_delay_s=0.01)
    ) as sdk:
        job = sdk.create_job(program=BELL3, target=IONQ, config={"shots": 100})
        with pytest.raises(ServerError):
            await job.execute(timeout_s=20)
        assert job.state is JobState.CREATED  # the job may exist: nothing is decided yet
        assert len(env.job_ids) == 1
        await job.execute(timeout_s=20)  # the same GUID again: the service answers with that job
    assert job.completed
    assert env.job_ids == [job.task_id]
    assert env.engine_runs == 1
    assert requests(env, "PUT", job_path(env, str(job.task_id))) == [503, 503, 200]


async def test_a_409_on_create_is_resolved_by_reading_the_job(env: AzureQuantumEmulator) -> None:
    env.fail_after_processing_next(1, status=409, method="PUT", path=re.compile(r"/jobs/[0-9a-f-]{36}$"))
    async with Sdk("azure_quantum", polling=FAST) as sdk:
        job = sdk.create_job(program=BELL3, target=QUANTINUUM, config={"shots": 10})
        await job.execute(timeout_s=20)
    assert job.completed
    assert env.job_ids == [job.task_id]


async def test_a_program_ionq_cannot_run_is_rejected_before_anything_is_sent(
    env: AzureQuantumEmulator,
) -> None:
    program = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; measure q[0] -> c[0]; x q[0];'
    async with Sdk("azure_quantum", polling=FAST) as sdk:
        env.clear_log()
        job = sdk.create_job(program=program, target=IONQ)
        await job.execute(timeout_s=10)
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert job.error.code == "REJECTED"
    assert "after it was measured" in job.error.message
    assert env.requests == []


def bell_circuit() -> Any:
    from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister

    circuit = QuantumCircuit(QuantumRegister(2, "q"), ClassicalRegister(2, "c"))
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure([0, 1], [0, 1])
    return circuit


@pytest.mark.parametrize("target", [IONQ, QUANTINUUM])
async def test_a_circuit_is_lowered_to_the_providers_format(env: AzureQuantumEmulator, target: str) -> None:
    async with Sdk("azure_quantum", polling=FAST) as sdk:
        job = sdk.create_job(program=bell_circuit(), target=target, config={"shots": 40})
        await job.execute(timeout_s=20)
    assert job.state is JobState.COMPLETED, job.error
    counts = job.result.data if job.result is not None else None
    assert counts is not None
    assert set(counts) == {"c"}
    assert set(counts["c"]) <= {"00", "11"}
    assert sum(counts["c"].values()) == 40
    uploaded = next(r for r in env.requests if r.method == "PUT" and r.path.endswith("/inputData"))
    if target == IONQ:  # IonQ's qis JSON: h, then cx as a controlled x
        assert uploaded.body["circuit"] == [
            {"gate": "h", "targets": [0]},
            {"gate": "x", "controls": [0], "targets": [1]},
        ]
    else:  # OpenQASM 2 in the paper's qelib1 gates
        assert str(uploaded.body).startswith("OPENQASM 2.0;")
        assert "cx q[0],q[1];" in str(uploaded.body)


def wide_circuit(qubits: int) -> Any:
    from qiskit import QuantumCircuit

    circuit = QuantumCircuit(qubits, qubits)
    circuit.h(range(qubits))
    circuit.measure(range(qubits), range(qubits))
    return circuit


def opaque_gate_circuit() -> Any:
    from qiskit import QuantumCircuit
    from qiskit.circuit import Gate

    circuit = QuantumCircuit(1, 1)
    circuit.append(Gate("mystery", 1, []), [0])  # no definition: nothing can lower it
    circuit.measure(0, 0)
    return circuit


def unbound_circuit() -> Any:
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter

    circuit = QuantumCircuit(1, 1)
    circuit.rx(Parameter("theta"), 0)
    circuit.measure(0, 0)
    return circuit


@pytest.mark.parametrize("target", [IONQ, QUANTINUUM])
@pytest.mark.parametrize(
    ("make", "error"),
    [
        (opaque_gate_circuit, "mystery"),
        (lambda: as_qasm3(wide_circuit(60)), "uses 60 qubits; .* has (29|56)"),  # text: found when lowered
    ],
)
async def test_a_circuit_the_target_cannot_run_is_refused_before_anything_is_sent(
    env: AzureQuantumEmulator, target: str, make: Callable[[], Any], error: str
) -> None:
    async with Sdk("azure_quantum", polling=FAST) as sdk:
        env.clear_log()
        job = sdk.create_job(program=make(), target=target)
        await job.execute(timeout_s=10)
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert job.error.code == "REJECTED"
    assert re.search(error, job.error.message), job.error.message
    assert env.requests == []
    assert env.job_ids == []


async def test_unbound_parameters_and_too_many_qubits_are_refused_at_create_job(
    env: AzureQuantumEmulator,
) -> None:
    async with Sdk("azure_quantum", polling=FAST) as sdk:
        env.clear_log()
        with pytest.raises(JobValidationError, match="theta"):
            sdk.create_job(program=unbound_circuit(), target=IONQ)
        with pytest.raises(JobValidationError, match=r"uses 30 qubits; ionq\.simulator has 29"):
            sdk.create_job(program=wide_circuit(30), target=IONQ)
    assert env.requests == []


async def test_older_api_versions_create_the_container_themselves(emulator_factory: EmulatorFactory) -> None:
    async with emulator_factory("azure_quantum") as emulator:
        assert isinstance(emulator, AzureQuantumEmulator)
        async with Sdk("azure_quantum", polling=FAST, api_version=OLD_API, **emulator.credentials) as sdk:
            job = sdk.create_job(program=BELL3, target=IONQ, config={"shots": 10})
            await job.execute(timeout_s=20)
        assert job.completed
        container = f"{emulator.storage_url.removeprefix(emulator.base_url)}/job-{job.task_id}"
        assert requests(emulator, "PUT", container) == [201]


# -- cancel ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_version", "cancel_response", "method", "suffix", "status"),
    [
        (DEFAULT_API_VERSION, "details", "POST", ":cancel", 200),
        (DEFAULT_API_VERSION, "no_content", "POST", ":cancel", 204),
        ("2025-12-01-preview", "details", "POST", ":cancel", 200),
        (OLD_API, "details", "DELETE", "", 204),
    ],
)
async def test_cancel_per_api_version(
    emulator_factory: EmulatorFactory,
    api_version: str,
    cancel_response: str,
    method: str,
    suffix: str,
    status: int,
) -> None:
    async with emulator_factory(
        "azure_quantum", job_duration_s=30, cancel_response=cancel_response
    ) as emulator:
        assert isinstance(emulator, AzureQuantumEmulator)
        async with Sdk("azure_quantum", polling=FAST, api_version=api_version, **emulator.credentials) as sdk:
            assert backend_of(sdk).cancel_with_post is (method == "POST")
            job = sdk.create_job(program=BELL3, target=IONQ)
            await job.submit()
            assert job.task_id is not None
            await wait_for(emulator, job.task_id, "Executing")
            assert await job.cancel(timeout_s=10) is JobState.CANCELLED
        path = job_path(emulator, job.task_id)
        assert requests(emulator, method, path + suffix) == [status]
        other = "DELETE" if method == "POST" else "POST"
        assert requests(emulator, other, re.compile(r"/jobs/")) == []
        assert job.vendor_status == "Cancelled"
        assert await emulator.status_of(job.task_id) == "Cancelled"


async def test_cancel_racing_the_end_keeps_the_result(env: AzureQuantumEmulator) -> None:
    """The job ends between the status read and the cancel: the 409 is not an error, the result wins."""
    async with Sdk("azure_quantum", polling=FAST) as sdk:
        job = sdk.create_job(program=BELL3, target=IONQ, config={"shots": 10})
        await job.submit()
        assert job.task_id is not None
        await env.set_status(job.task_id, "Executing")
        await wait_for(env, job.task_id, "Executing")
        # the next read says Executing, then the job ends before the cancel arrives
        original = env._cancel

        async def finished_first(azure_job: Any) -> None:
            await env.set_status(azure_job.id, None)
            await wait_for(env, azure_job.id, "Succeeded")
            await original(azure_job)

        env._cancel = finished_first  # type: ignore[method-assign]
        assert await job.cancel(timeout_s=10) is JobState.COMPLETED
    assert requests(env, "POST", job_path(env, job.task_id) + ":cancel") == [409]
    assert job.result is not None
    assert sum(job.result.data["c"].values()) == 10


# -- batched status reads --------------------------------------------------------------------------


async def test_many_waiting_jobs_cost_one_list_request_per_tick(emulator_factory: EmulatorFactory) -> None:
    n = 8
    async with emulator_factory("azure_quantum", job_duration_s=0.4, max_concurrency=n) as emulator:
        assert isinstance(emulator, AzureQuantumEmulator)
        policy = PollingPolicy(0.05, 0.05)  # jittered: the poller still reads them together
        async with Sdk("azure_quantum", polling=policy, **emulator.credentials) as sdk:
            jobs = [sdk.create_job(program=BELL3, target=IONQ, config={"shots": 10}) for _ in range(n)]
            for job in jobs:
                await job.submit()
            emulator.clear_log()
            async with anyio.create_task_group() as tg:
                for job in jobs:
                    tg.start_soon(job.wait, 20)
            ticks = sdk.poller.ticks
        assert all(job.completed for job in jobs)
        lists = [r for r in emulator.requests if r.method == "GET" and r.path.endswith("/jobs")]
        singles = requests(emulator, "GET", re.compile(r"/jobs/[0-9a-f-]{36}$"))
        assert ticks >= 3
        assert len(lists) + len(singles) == ticks  # one status request per tick, whatever the number of jobs
        assert len(singles) <= 2  # only the last runs to end may be read alone
        first = lists[0].query["filter"]
        assert sorted(re.findall(r"Id eq '([0-9a-f-]{36})'", first)) == sorted(str(j.task_id) for j in jobs)


async def test_batched_reads_follow_pages_and_fall_back(emulator_factory: EmulatorFactory) -> None:
    async with emulator_factory("azure_quantum", job_duration_s=30, page_size=2) as emulator:
        assert isinstance(emulator, AzureQuantumEmulator)
        async with Sdk("azure_quantum", polling=FAST, **emulator.credentials) as sdk:
            backend = backend_of(sdk)
            jobs = [sdk.create_job(program=BELL3, target=QUANTINUUM) for _ in range(5)]
            for job in jobs:
                await job.submit()
            refs = [RunRef(str(job.task_id)) for job in jobs]
            for ref in refs:
                await emulator.set_status(ref.task_id, "Waiting")
            await emulator.set_status(refs[3].task_id, "Failed", error_code="E", error_message="m")
            emulator.clear_log()
            readings = await backend.statuses(refs)
            assert [readings[r.task_id].vendor_status for r in refs] == [
                "Waiting",
                "Waiting",
                "Waiting",
                "Failed",
                "Waiting",
            ]  # type: ignore[union-attr]
            assert len(emulator.requests) == 3  # three pages of one list
            # a job the list does not return is read on its own
            emulator._jobs[refs[0].task_id].deleted = True
            emulator.clear_log()
            readings = await backend.statuses(refs[:2])
            assert type(readings[refs[0].task_id]).__name__ == "NotFoundError"
            assert [r.method for r in emulator.requests] == ["GET", "GET"]
            # a server refusing the filter: read one by one from then on
            emulator.fail_next(1, status=400, method="GET", path=re.compile(r"/jobs$"))
            emulator.clear_log()
            readings = await backend.statuses(refs[1:])
            assert len(readings) == 4
            assert len(requests(emulator, "GET", re.compile(r"/jobs/[0-9a-f-]{36}$"))) == 4
            emulator.clear_log()
            await backend.statuses(refs[1:])
            assert requests(emulator, "GET", re.compile(r"/jobs$")) == []


# -- targets, validation, settings -----------------------------------------------------------------


async def test_targets_come_from_the_provider_status(env: AzureQuantumEmulator) -> None:
    async with Sdk("azure_quantum") as sdk:
        targets = {t["id"]: t for t in await sdk.list_targets()}
    assert "microsoft.estimator" not in targets  # a provider whose formats this adapter does not write
    assert targets[IONQ]["provider"] == "ionq"
    assert targets[IONQ]["input_format"] == "ionq.circuit.v1"
    assert targets[IONQ]["output_format"] == "ionq.quantum-results.v1"
    assert targets[IONQ]["num_qubits"] == 29
    assert targets[QUANTINUUM]["input_format"] == "honeywell.openqasm.v1"
    assert targets[QUANTINUUM]["output_format"] == "honeywell.quantum-results.v1"
    assert targets[QUANTINUUM]["status"] == "Available"


async def test_validation_needs_no_io(env: AzureQuantumEmulator) -> None:
    async with Sdk("azure_quantum") as sdk:
        before = len(env.requests)
        for kwargs, error in (
            ({"program": BELL3}, "no target"),
            ({"program": BELL3, "target": "ionq.qpu.nope"}, "unknown target"),
            ({"program": BELL3, "target": "microsoft.estimator"}, "unknown target"),
            ({"program": "", "target": IONQ}, "empty"),
            ({"program": {"not": "text"}, "target": IONQ}, "OpenQASM"),
            ({"program": "x" * 1_000_001, "target": IONQ}, "limit"),
            ({"program": BELL3, "target": IONQ, "config": {"shots": 0}}, "shots"),
            ({"program": BELL3, "target": IONQ, "config": {"shots": 1_000_001}}, "shots"),
            ({"program": BELL3, "target": IONQ, "config": {"shots": True}}, "shots"),
            ({"program": BELL3, "target": IONQ, "config": {"seed": 1}}, "unknown config"),
            ({"program": BELL3, "target": IONQ, "config": {"priority": "Urgent"}}, "priority"),
            ({"program": BELL3, "target": IONQ, "config": {"tags": "a"}}, "tags"),
            ({"program": BELL3, "target": IONQ, "config": {"name": ""}}, "name"),
        ):
            with pytest.raises(JobValidationError, match=error):
                sdk.create_job(**kwargs)
        with pytest.raises(UnknownTargetError):
            sdk.create_job(program=BELL3, target="ionq.qpu.nope")
        job = sdk.create_job(
            program=BELL3, target=IONQ, config={"shots": 7, "priority": "High", "tags": ["x"], "name": "n"}
        )
        assert job.config == {"shots": 7, "priority": "High", "tags": ["x"], "name": "n"}
        assert len(env.requests) == before


async def test_settings_default_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="AZURE_QUANTUM_ENDPOINT"):
        AzureQuantumBackend()
    monkeypatch.setenv("AZURE_QUANTUM_LOCATION", "East US")
    with pytest.raises(ConfigurationError, match="AZURE_QUANTUM_SUBSCRIPTION_ID"):
        AzureQuantumBackend()
    monkeypatch.setenv("AZURE_QUANTUM_SUBSCRIPTION_ID", "00000000-0000-0000-0000-00000000000A")
    with pytest.raises(ConfigurationError, match="AZURE_QUANTUM_RESOURCE_GROUP"):
        AzureQuantumBackend()
    monkeypatch.setenv("AZURE_QUANTUM_RESOURCE_GROUP", "rg")
    with pytest.raises(ConfigurationError, match="AZURE_QUANTUM_WORKSPACE"):
        AzureQuantumBackend()
    monkeypatch.setenv("AZURE_QUANTUM_WORKSPACE", "ws")
    with pytest.raises(
        ConfigurationError,
        match="AZURE_QUANTUM_ACCESS_TOKEN, AZURE_QUANTUM_API_KEY or AZURE_QUANTUM_CONNECTION_STRING",
    ):
        AzureQuantumBackend()
    monkeypatch.setenv("AZURE_QUANTUM_API_KEY", "k3y-value")
    backend = AzureQuantumBackend()
    assert backend.endpoint == "https://eastus.quantum.azure.com"
    assert backend.subscription_id == "00000000-0000-0000-0000-00000000000a"
    assert backend.api_version == DEFAULT_API_VERSION
    assert backend.cancel_with_post
    assert backend.identity() == {
        "backend": "azure_quantum",
        "endpoint": "https://eastus.quantum.azure.com",
        "workspace": "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg"
        "/providers/Microsoft.Quantum/workspaces/ws",
    }
    monkeypatch.setenv("AZURE_QUANTUM_API_VERSION", OLD_API)
    assert not AzureQuantumBackend().cancel_with_post
    for bad in (
        {"api_version": "v2"},
        {"subscription_id": "nope"},
        {"resource_group": "-rg"},
        {"workspace": "w"},
        {"endpoint": "http://quantum.example.com"},  # plain http beyond loopback
        {"location": "east/us"},
    ):
        with pytest.raises(ConfigurationError):
            AzureQuantumBackend(**bad)


async def test_a_wrong_token_or_an_unreachable_endpoint_fails_at_start(
    env: AzureQuantumEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_QUANTUM_ACCESS_TOKEN", "wrong-token-value")
    with pytest.raises(AuthenticationError) as caught:
        async with Sdk("azure_quantum"):
            pass
    assert "wrong-token-value" not in str(caught.value)
    assert caught.value.vendor_code == "Unauthorized"
    with pytest.raises(BackendUnavailableError):
        async with Sdk("azure_quantum", endpoint="http://127.0.0.1:9", api_key="k"):
            pass


async def test_the_api_key_and_a_token_provider(
    env: AzureQuantumEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_QUANTUM_ACCESS_TOKEN")
    async with Sdk("azure_quantum", polling=FAST, api_key=env.api_key) as sdk:
        job = sdk.create_job(program=BELL3, target=QUANTINUUM, config={"shots": 10})
        await job.execute(timeout_s=20)
    assert job.completed
    workspace = [r for r in env.requests if r.path.startswith(env.workspace_path)][1:]  # after the ping
    assert all(r.headers.get("x-ms-quantum-api-key") == "<redacted>" for r in workspace)
    assert all("Authorization" not in r.headers for r in workspace)
    blobs = [r for r in env.requests if not r.path.startswith(env.workspace_path)]
    assert blobs  # blob storage never sees the workspace credentials
    assert all(not {"authorization", "x-ms-quantum-api-key"} & {h.lower() for h in r.headers} for r in blobs)
    tokens = iter(["stale-token-value", env.token])
    asked = 0

    async def provider() -> str:
        nonlocal asked
        asked += 1
        return next(tokens)

    async with Sdk("azure_quantum", token_provider=provider) as sdk:
        assert len(await sdk.list_targets()) > 0
    assert asked == 2  # the first token was refused (401), a fresh one was asked for once


async def test_a_connection_string_is_all_it_takes(
    emu: AzureQuantumEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_QUANTUM_CONNECTION_STRING", emu.connection_string)
    async with Sdk("azure_quantum", polling=FAST) as sdk:
        backend = backend_of(sdk)
        assert (backend.endpoint, backend.workspace) == (emu.base_url, emu.workspace)
        job = sdk.create_job(program=BELL3, target=QUANTINUUM, config={"shots": 10})
        await job.execute(timeout_s=20)
    assert job.completed
    workspace = [r for r in emu.requests if r.path.startswith(emu.workspace_path)][1:]  # after the ping
    assert all(r.headers.get("x-ms-quantum-api-key") == "<redacted>" for r in workspace)
    # a keyword wins over the connection string, which wins over a setting's own variable
    monkeypatch.setenv("AZURE_QUANTUM_WORKSPACE", "from-the-environment")
    assert AzureQuantumBackend().workspace == emu.workspace
    assert AzureQuantumBackend(workspace="from-a-keyword").workspace == "from-a-keyword"
    given = AzureQuantumBackend(connection_string=emu.connection_string.replace(emu.workspace, "other-ws"))
    assert given.workspace == "other-ws"


def test_v2_workspaces_have_their_own_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)
    where = {"subscription_id": str(uuid.uuid4()), "resource_group": "rg", "workspace": "ws", "api_key": "k"}
    assert AzureQuantumBackend(location="westus", **where).endpoint == "https://westus.quantum.azure.com"
    v2 = AzureQuantumBackend(location="westus", workspace_kind="V2", **where)
    assert v2.endpoint == "https://westus-v2.quantum.azure.com"
    monkeypatch.setenv("AZURE_QUANTUM_WORKSPACE_KIND", "v2")
    assert AzureQuantumBackend(location="westus", **where).endpoint == "https://westus-v2.quantum.azure.com"
    text = (
        f"SubscriptionId={where['subscription_id']};ResourceGroupName=rg;WorkspaceName=ws;"
        "ApiKey=k3y;QuantumEndpoint=https://eastus-v2.quantum.azure.com/;"
    )
    # the connection string's endpoint is taken as it is, never rebuilt from a region
    assert AzureQuantumBackend(connection_string=text, location="westus").endpoint == (
        "https://eastus-v2.quantum.azure.com"
    )
    with pytest.raises(ConfigurationError, match="workspace_kind"):
        AzureQuantumBackend(location="westus", workspace_kind="V3", **where)  # type: ignore[arg-type]


GOOD_CONNECTION = (
    "SubscriptionId=00000000-0000-0000-0000-000000000001;ResourceGroupName=rg;WorkspaceName=ws;"
    "ApiKey=s3cret-k3y-value;QuantumEndpoint=https://eastus.quantum.azure.com/;"
)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (GOOD_CONNECTION.replace("ApiKey=", "ApiKey"), "not one of"),  # the key, glued to its name
        (GOOD_CONNECTION.replace("WorkspaceName=ws;", ""), "no WorkspaceName"),
        (GOOD_CONNECTION + "apikey=s3cret-k3y-value;", "ApiKey twice"),
        (GOOD_CONNECTION.replace("https://eastus.quantum.azure.com/", "s3cret-k3y-value"), "QuantumEndpoint"),
        (GOOD_CONNECTION.replace("s3cret-k3y-value", " "), "empty ApiKey"),
        (GOOD_CONNECTION + "Password=s3cret-k3y-value;", "not one of"),
        ("   ", "non-empty"),
    ],
)
def test_a_bad_connection_string_is_refused_without_quoting_it(
    text: str, error: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match=error) as caught:
        AzureQuantumBackend(connection_string=text)
    assert "s3cret" not in str(caught.value)
    assert "s3cret" not in repr(caught.value)
    assert caught.value.__cause__ is None


async def test_an_expiring_output_sas_is_refreshed(emulator_factory: EmulatorFactory) -> None:
    async with emulator_factory("azure_quantum", sas_ttl_s=120) as emulator:
        assert isinstance(emulator, AzureQuantumEmulator)
        async with Sdk("azure_quantum", polling=FAST, **emulator.credentials) as sdk:
            job = sdk.create_job(program=BELL3, target=IONQ, config={"shots": 10})
            await job.execute(timeout_s=20)
        assert job.completed
        sas_calls = [r.body for r in emulator.requests if r.path.endswith("/storage/sasUri")]
        assert sas_calls == [
            {"containerName": f"job-{job.task_id}"},
            {"containerName": f"job-{job.task_id}", "blobName": "rawOutputData"},
        ]
        download = [r for r in emulator.requests if r.path.endswith("/rawOutputData")]
        assert [(r.query["sr"], r.status) for r in download] == [("b", 200)]


async def test_diagnostics(env: AzureQuantumEmulator) -> None:
    async with Sdk("azure_quantum", polling=FAST) as sdk:
        job = sdk.create_job(program=BELL3, target=IONQ, config={"shots": 10}, fetch_diagnostics=True)
        await job.execute(timeout_s=20)
    assert job.timings is not None
    assert job.timings["created_at"]
    assert job.timings["ended_at"]
    assert job.metadata is not None
    assert job.metadata["provider"] == "ionq"


# -- secrets ---------------------------------------------------------------------------------------


async def test_secrets_never_in_reprs_logs_messages_or_files(
    env: AzureQuantumEmulator, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG, logger="oqc_style_sdk")
    no_retry = RetryPolicy(max_attempts=1)
    async with Sdk("azure_quantum", polling=FAST, api_key=env.api_key, retry=no_retry) as sdk:
        backend = backend_of(sdk)
        job = sdk.create_job(program=BELL3, target=IONQ, config={"shots": 10})
        await job.execute(timeout_s=20)
        saved = (await job.save(tmp_path / "job.json")).read_text()
        env.fail_next(
            1, status=500, method="GET", body={"error": {"code": "Boom", "message": f"echo {env.token}"}}
        )
        with pytest.raises(ServerError) as caught:
            await backend.status(RunRef(str(job.task_id)))
        texts = [
            repr(sdk),
            repr(backend),
            repr(backend.http),
            repr(job),
            saved,
            caplog.text,
            str(caught.value),
        ]
        texts.append(json.dumps(caught.value.details))
    signatures = env.secrets()[2:]  # every SAS signature the emulator handed out (and URL-encoded)
    assert signatures
    for secret in (env.token, env.api_key, *signatures):
        for text in texts:
            assert secret not in text
    for text in (saved, caplog.text):
        assert "sig=" not in text
    assert "api-version" not in caplog.text  # no query string is ever logged


@pytest.mark.parametrize("kwarg", ["access_token", "api_key", "connection_string"])
def test_credentials_are_held_as_secrets(kwarg: str) -> None:
    settings = {
        "endpoint": "https://eastus.quantum.azure.com",
        "subscription_id": str(uuid.uuid4()),
        "resource_group": "rg",
        "workspace": "ws",
        kwarg: GOOD_CONNECTION if kwarg == "connection_string" else "s3cret-value-1234",
    }
    backend = AzureQuantumBackend(**settings)
    assert "s3cret" not in repr(backend)
    assert "s3cret" not in repr(vars(backend))


# -- answers the adapter does not expect -----------------------------------------------------------


async def test_a_next_link_to_another_host_is_not_followed(env: AzureQuantumEmulator) -> None:
    def next_page(link: str) -> None:
        env.slow_next(1, delay_s=0, path="/providerStatus")  # lets the start-up ping through untouched
        env.fail_next(1, status=200, path="/providerStatus", body={"value": [], "nextLink": link})

    next_page("http://198.51.100.7/steal")
    with pytest.raises(ProtocolError, match="another host"):
        async with Sdk("azure_quantum"):
            pass
    # a nextLink without api-version gets it added
    next_page(f"{env.base_url}{env.workspace_path}/providerStatus?page=2")
    env.clear_log()
    async with Sdk("azure_quantum") as sdk:
        assert len(await sdk.list_targets()) > 0
    followed = [r.query for r in env.requests if r.path.endswith("/providerStatus") and "page" in r.query]
    assert followed == [{"page": "2", "api-version": DEFAULT_API_VERSION}]


async def test_unexpected_answers_are_protocol_errors(env: AzureQuantumEmulator) -> None:
    async with Sdk("azure_quantum", polling=FAST, retry=RetryPolicy(max_attempts=1)) as sdk:
        backend = backend_of(sdk)
        job = sdk.create_job(program=BELL3, target=IONQ, config={"shots": 10})
        await job.submit()
        ref = RunRef(str(job.task_id))
        other = sdk.create_job(program=BELL3, target=IONQ, config={"shots": 10})
        await other.submit()
        pair = [ref, RunRef(str(other.task_id))]
        for body, message in (
            ({"status": "Waiting"}, "unexpected body"),
            ({"id": ref.task_id}, "without a status"),
        ):
            env.fail_next(1, status=200, method="GET", path=job_path(env, ref.task_id), body=body)
            with pytest.raises(ProtocolError, match=message):
                await backend.status(ref)
        # the list: a broken item fails its job only; a failed request fails every job it read
        env.fail_next(
            1, status=200, method="GET", path=re.compile(r"/jobs$"), body={"value": [{"id": ref.task_id}]}
        )
        readings = await backend.statuses(pair)
        assert isinstance(readings[ref.task_id], ProtocolError)
        assert not isinstance(readings[pair[1].task_id], BaseException)
        env.fail_next(1, status=500, method="GET", path=re.compile(r"/jobs$"))
        readings = await backend.statuses(pair)
        assert all(isinstance(reading, ServerError) for reading in readings.values())
        await job.wait(timeout_s=10)
        await other.wait(timeout_s=10)
        # an output blob that is not JSON, an output format this SDK does not read
        spec = RunSpec(BELL3, IONQ, {"shots": 10})
        env.storage.write(f"job-{ref.task_id}", "rawOutputData", b"<html>", "text/html")
        with pytest.raises(ProtocolError, match="not JSON"):
            await backend.result(ref, spec)
        env.storage.write(f"job-{ref.task_id}", "rawOutputData", b"{}", "application/json")
        env._jobs[ref.task_id].output_format = "microsoft.quantum-results.v2"
        with pytest.raises(ProtocolError, match="does not read"):
            await backend.result(ref, spec)


async def test_the_ionq_layout_is_read_from_the_program_when_the_metadata_is_gone(
    env: AzureQuantumEmulator,
) -> None:
    async with Sdk("azure_quantum", polling=FAST) as sdk:
        backend = backend_of(sdk)
        job = sdk.create_job(program=REGISTERS_QASM2, target=IONQ, config={"shots": 6})
        await job.execute(timeout_s=20)
        assert job.task_id is not None
        env._jobs[job.task_id].request["metadata"] = {}  # e.g. submitted by another client
        data = await backend.result(RunRef(job.task_id), RunSpec(REGISTERS_QASM2, IONQ, {"shots": 6}))
    assert data == {"a": {"1": 6}, "b": {"10": 6}}
