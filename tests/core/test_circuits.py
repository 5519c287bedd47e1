"""qiskit circuits as programs: plain, parameterised with values, swept; on the local simulator and on
OQC (against its emulator); saved as OpenQASM 3 and loaded back as circuits; and every bad input
refused at ``create_job``, naming the parameter, before anything reaches a vendor."""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister, qasm3
from qiskit.circuit import Instruction, Parameter, ParameterVector

from oqc_style_sdk import OqcSdk, Sdk
from oqc_style_sdk.backends._qiskit import load_qasm3
from oqc_style_sdk.composite import CompositeJob
from oqc_style_sdk.exceptions import CorruptJobFileError, JobValidationError, PersistenceError
from oqc_style_sdk.job import Job
from oqc_style_sdk.job_output import JobError
from oqc_style_sdk.testing.emulator import start_emulator
from oqc_style_sdk.testing.oqc import LUCY_QPU_ID, OqcEmulator

PI = math.pi


def bell(register: str = "meas") -> QuantumCircuit:
    """A Bell pair measured into a classical register of the given name."""
    q, c = QuantumRegister(2, "q"), ClassicalRegister(2, register)
    circuit = QuantumCircuit(q, c)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure(q, c)
    return circuit


def rotations() -> tuple[QuantumCircuit, Parameter, Parameter]:
    """Two qubits, ``ry(theta)`` on the first and ``ry(alpha)`` on the second: each angle 0 or pi
    gives a certain outcome, so the counts say which value went to which parameter. ``alpha``
    sorts before ``theta`` (``circuit.parameters`` is in name order), the order sequences follow."""
    theta, alpha = Parameter("theta"), Parameter("alpha")
    circuit = QuantumCircuit(2, 2)
    circuit.ry(theta, 0)
    circuit.ry(alpha, 1)
    circuit.measure([0, 1], [0, 1])
    return circuit, theta, alpha


@asynccontextmanager
async def local() -> AsyncIterator[Sdk]:
    async with Sdk(seed=11) as sdk:
        yield sdk


@asynccontextmanager
async def oqc() -> AsyncIterator[tuple[OqcEmulator, OqcSdk]]:
    async with start_emulator("oqc", job_duration_s=0.02, max_lifetime_s=60.0) as emu:
        assert isinstance(emu, OqcEmulator)
        async with OqcSdk(**emu.credentials, default_qpu_id=LUCY_QPU_ID) as sdk:
            yield emu, sdk


def submitted_programs(emu: OqcEmulator) -> list[str]:
    """The ``program`` of every task submitted to the emulator, in order."""
    return [
        task["program"]
        for entry in emu.requests
        if entry.method == "POST" and entry.path.endswith("/tasks/submit")
        for task in entry.body["tasks"]
    ]


# ------------------------------------------------------------------------------------- local
async def test_a_circuit_runs_locally_with_counts_keyed_by_its_register() -> None:
    with anyio.fail_after(30):
        async with local() as sdk:
            job = sdk.create_job(program=bell("meas"))
            output = await job.execute(timeout_s=20)
    assert job.completed
    assert set(output.last.data) == {"meas"}
    counts = output.last.data["meas"]
    assert set(counts) == {"00", "11"}
    assert sum(counts.values()) == 1000


async def test_a_job_keeps_its_own_copy_of_the_circuit() -> None:
    circuit = QuantumCircuit(1, 1)
    circuit.measure(0, 0)
    with anyio.fail_after(30):
        async with local() as sdk:
            job = sdk.create_job(program=circuit)
            circuit.x(0)  # changed after the job was made: the job runs the circuit as it was then
            output = await job.execute(timeout_s=20)
    assert output.last.data == {"c": {"0": 1000}}
    assert job.program is not circuit


@pytest.mark.parametrize(
    "values_for",
    [
        pytest.param(lambda theta, alpha: [0.0, PI], id="sequence in parameter order"),
        pytest.param(lambda theta, alpha: np.array([0.0, PI]), id="numpy array"),
        pytest.param(lambda theta, alpha: [np.float64(0.0), np.float32(PI)], id="numpy numbers"),
        pytest.param(lambda theta, alpha: {"theta": PI, "alpha": 0.0}, id="mapping by name"),
        pytest.param(lambda theta, alpha: {theta: np.float32(PI), alpha: 0}, id="mapping by Parameter"),
    ],
)
async def test_a_parameterised_circuit_runs_with_its_values(values_for: Any) -> None:
    circuit, theta, alpha = rotations()
    values = values_for(theta, alpha)
    with anyio.fail_after(30):
        async with local() as sdk:
            job = sdk.create_job(program=(circuit, values))
            output = await job.execute(timeout_s=20)
    # alpha = 0 leaves qubit 1 at 0, theta = pi flips qubit 0: bitstrings read c[1] c[0]
    assert output.last.data == {"c": {"01": 1000}}
    assert not job.program.parameters  # the job's program is the bound circuit
    assert circuit.parameters  # the user's circuit is left as it was


async def test_a_sweep_makes_one_child_per_binding_in_order() -> None:
    circuit, theta, alpha = rotations()
    sweep = [[0.0, 0.0], [0.0, PI], {"alpha": PI, "theta": PI}, {theta: PI, alpha: 0.0}]
    with anyio.fail_after(60):
        async with local() as sdk:
            composite = sdk.create_job(program=(circuit, sweep))
            assert isinstance(composite, CompositeJob)
            assert len(composite) == 4
            outputs = await composite.execute(timeout_s=40)
    assert [o.data for o in outputs] == [
        {"c": {"00": 1000}},
        {"c": {"01": 1000}},
        {"c": {"11": 1000}},
        {"c": {"01": 1000}},
    ]


async def test_a_numpy_sweep_and_a_parameter_vector() -> None:
    angles = ParameterVector("a", 2)
    circuit = QuantumCircuit(2, 2)
    circuit.ry(angles[0], 0)
    circuit.ry(angles[1], 1)
    circuit.rx(Parameter("b"), 1)
    circuit.measure([0, 1], [0, 1])
    with anyio.fail_after(60):
        async with local() as sdk:
            swept = sdk.create_job(program=(circuit, np.array([[PI, 0.0, 0.0], [0.0, PI, 0.0]])))
            by_vector = sdk.create_job(program=(circuit, {angles: [PI, 0.0], "b": PI}))
            outputs = await swept.execute(timeout_s=40)
            single = await by_vector.execute(timeout_s=20)
    assert [o.data for o in outputs] == [{"c": {"01": 1000}}, {"c": {"10": 1000}}]
    assert single.last.data == {"c": {"11": 1000}}


async def test_lists_mix_text_circuits_and_bound_circuits_with_targets_per_child() -> None:
    circuit, _, _ = rotations()
    coin = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; x q[0]; measure q -> c;'
    with anyio.fail_after(60):
        async with local() as sdk:
            composite = sdk.create_job(
                program=[coin, bell("b"), (circuit, [PI, PI])], config=[{"shots": 10}, None, None]
            )
            outputs = await composite.execute(timeout_s=40)
    assert outputs[0].data == {"c": {"1": 10}}
    assert set(outputs[1].data) == {"b"}
    assert outputs[2].data == {"c": {"11": 1000}}


async def test_a_sweep_lines_up_with_a_list_of_configs() -> None:
    circuit, _, _ = rotations()
    with anyio.fail_after(60):
        async with local() as sdk:
            composite = sdk.create_job(
                program=(circuit, [[0, 0], [PI, PI]]), config=[{"shots": 5}, {"shots": 7}]
            )
            outputs = await composite.execute(timeout_s=40)
            with pytest.raises(JobValidationError, match="different lengths"):
                sdk.create_job(program=(circuit, [[0, 0], [PI, PI]]), config=[{}, {}, {}])
    assert [o.data for o in outputs] == [{"c": {"00": 5}}, {"c": {"11": 7}}]


async def test_reconfigure_takes_a_circuit_and_values_but_not_a_sweep() -> None:
    circuit, _, _ = rotations()
    with anyio.fail_after(60):
        async with local() as sdk:
            job = sdk.create_job(program=bell())
            await job.execute(timeout_s=20)
            job.reconfigure(program=(circuit, [PI, PI]))
            second = await job.execute(timeout_s=20)
            with pytest.raises(JobValidationError, match="makes one job per binding"):
                job.reconfigure(program=(circuit, [[0, 0], [PI, PI]]))
            with pytest.raises(JobValidationError, match="unbound parameter"):
                job.reconfigure(program=circuit)
            await job.history[0].reexecute(timeout_s=20)  # the memento's circuit runs again
    assert second.last.data == {"c": {"11": 1000}}
    assert set(job.history[2].data) == {"meas"}


# ------------------------------------------------------------------------------------- OQC
async def test_a_circuit_on_oqc_is_sent_as_openqasm_2_and_counted_by_register() -> None:
    with anyio.fail_after(30):
        async with oqc() as (emu, sdk):
            job = sdk.create_job(program=bell("meas"), config={"shots": 100})
            output = await job.execute(timeout_s=20)
            sent = submitted_programs(emu)
    assert job.completed
    assert set(output.last.data) == {"meas"}
    assert sum(output.last.data["meas"].values()) == 100
    assert len(sent) == 1
    assert sent[0].startswith("OPENQASM 2.0;")
    assert "creg meas[2];" in sent[0]


async def test_a_circuit_openqasm_2_cannot_express_goes_to_oqc_as_openqasm_3() -> None:
    circuit = QuantumCircuit(2, 2)
    circuit.x(0)
    circuit.measure(0, 0)
    with circuit.if_test((circuit.clbits[0], 1)):  # control flow: OpenQASM 3 only
        circuit.x(1)
    circuit.measure(1, 1)
    with anyio.fail_after(30):
        async with oqc() as (emu, sdk):
            job = sdk.create_job(program=circuit, config={"shots": 20})
            output = await job.execute(timeout_s=20)
            sent = submitted_programs(emu)
    assert sent[0].startswith("OPENQASM 3.0;")
    assert output.last.data == {"c": {"11": 20}}


async def test_a_sweep_on_oqc_is_one_batch_of_bound_programs() -> None:
    circuit, _, _ = rotations()
    with anyio.fail_after(30):
        async with oqc() as (emu, sdk):
            composite = sdk.create_job(program=(circuit, [[0.0, PI], [PI, 0.0]]), config={"shots": 50})
            outputs = await composite.execute(timeout_s=20)
            submits = [e for e in emu.requests if e.method == "POST" and e.path.endswith("/tasks/submit")]
            sent = submitted_programs(emu)
    assert [o.data for o in outputs] == [{"c": {"01": 50}}, {"c": {"10": 50}}]
    assert len(submits) == 1  # the composite's batch submission, as for text programs
    assert all("theta" not in text and "alpha" not in text for text in sent)


async def test_a_circuit_openqasm_cannot_express_fails_on_oqc_and_releases_its_id() -> None:
    circuit = QuantumCircuit(1, 1)
    circuit.append(Instruction("mystery", 1, 1, []), [0], [0])  # opaque, with a classical bit
    with anyio.fail_after(30):
        async with oqc() as (emu, sdk):
            composite = sdk.create_job(program=[circuit, bell()], config={"shots": 10})
            outputs = await composite.execute(timeout_s=20)
            released = [
                task_id
                for e in emu.requests
                if e.method == "POST" and e.path.endswith("/tasks/cancel_many")
                for task_id in e.body["tasks"]
            ]
            sent = submitted_programs(emu)
            assert len(released) == 1
            assert await emu.status_of(released[0]) == "CANCELLED"  # its reserved id is not left
    assert isinstance(outputs[0], JobError)
    assert "cannot be written as OpenQASM" in outputs[0].message
    assert "mystery" in outputs[0].message
    assert outputs[1].ok
    assert len(sent) == 1  # only the Bell circuit went out


# ------------------------------------------------------------------------------------- IBM, Azure
@pytest.mark.parametrize(
    ("vendor", "target"), [("ibm_quantum", "ibm_fez"), ("azure_quantum", "ionq.simulator")]
)
async def test_circuits_and_sweeps_run_on_the_other_quantum_backends(vendor: str, target: str) -> None:
    circuit, _, _ = rotations()
    with anyio.fail_after(60):
        async with (
            start_emulator(vendor, job_duration_s=0.02, max_lifetime_s=60.0) as emu,
            Sdk(vendor, **emu.credentials) as sdk,
        ):
            job = sdk.create_job(program=bell("meas"), target=target, config={"shots": 100})
            await job.execute(timeout_s=30)
            sweep = sdk.create_job(program=(circuit, [[0, PI], [PI, 0]]), target=target, config={"shots": 50})
            outputs = await sweep.execute(timeout_s=30)
    assert job.completed
    assert set(job.result.data) == {"meas"}
    assert sum(job.result.data["meas"].values()) == 100
    assert [o.data for o in outputs] == [{"c": {"01": 50}}, {"c": {"10": 50}}]


# ------------------------------------------------------------------------------------- saving
async def test_a_saved_circuit_is_openqasm_3_text_and_loads_back_as_a_circuit(tmp_path: Path) -> None:
    circuit, _, _ = rotations()
    path = tmp_path / "job.json"
    with anyio.fail_after(60):
        async with local() as sdk:
            job = sdk.create_job(program=(circuit, [PI, 0.0]))
            await job.execute(timeout_s=20)
            await job.save(path)
            document = json.loads(path.read_text())
            loaded = await sdk.load(path)
            assert isinstance(loaded, Job)
            loaded.reconfigure()  # a fresh run of the loaded circuit
            again = await loaded.execute(timeout_s=20)
    saved = document["jobs"][0]
    assert saved["program"].startswith("OPENQASM 3.0;")
    assert saved["program_is_circuit"] is True
    assert saved["circuit_runs"] == [1]
    assert saved["history"][0]["program"] == saved["program"]
    assert isinstance(loaded.program, QuantumCircuit)
    assert isinstance(loaded.history[0].program, QuantumCircuit)
    assert [r.name for r in loaded.program.cregs] == ["c"]
    assert again.last.data == {"c": {"10": 1000}}


async def test_text_and_circuit_runs_of_one_job_load_as_they_came(tmp_path: Path) -> None:
    text = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; measure q -> c;'
    path = tmp_path / "job.json"
    with anyio.fail_after(60):
        async with local() as sdk:
            job = sdk.create_job(program=text)
            await job.execute(timeout_s=20)
            await job.save(tmp_path / "text.json")
            job.reconfigure(program=bell())
            await job.execute(timeout_s=20)
            job.reconfigure(program=text)
            await job.save(path)
            loaded = await sdk.load(path)
    assert "program_is_circuit" not in json.loads((tmp_path / "text.json").read_text())["jobs"][0]
    assert loaded.program == text
    assert loaded.history[0].program == text
    assert isinstance(loaded.history[1].program, QuantumCircuit)


async def test_a_sweep_composite_round_trips_as_circuits(tmp_path: Path) -> None:
    circuit, _, _ = rotations()
    path = tmp_path / "sweep.json"
    with anyio.fail_after(60):
        async with local() as sdk:
            composite = sdk.create_job(program=(circuit, [[0, 0], [PI, PI]]))
            await composite.save(path)
            loaded = await sdk.load(path)
            assert isinstance(loaded, CompositeJob)
            outputs = await loaded.execute(timeout_s=40)
    assert all(isinstance(child.program, QuantumCircuit) for child in loaded)
    assert [o.data for o in outputs] == [{"c": {"00": 1000}}, {"c": {"11": 1000}}]


async def test_a_circuit_openqasm_3_cannot_express_is_not_saved(tmp_path: Path) -> None:
    circuit = QuantumCircuit(1, 1)
    circuit.initialize([0, 1], 0)  # runs locally, but OpenQASM 3 has no way to write it
    circuit.measure(0, 0)
    path = tmp_path / "job.json"
    path.write_text("old")
    with anyio.fail_after(30):
        async with local() as sdk:
            job = sdk.create_job(program=circuit)
            with pytest.raises(PersistenceError, match=f"job {job.id} cannot be saved.*OpenQASM 3"):
                await job.save(path)
    assert path.read_text() == "old"


@pytest.mark.parametrize(
    ("program", "message"),
    [
        ("OPENQASM 3.0; qubit q; nonsense q;", "does not parse as OpenQASM 3"),
        ({"gates": ["h"]}, "a circuit that is not OpenQASM text"),
    ],
)
async def test_a_flagged_program_that_is_not_a_circuit_is_a_corrupt_file(
    tmp_path: Path, program: Any, message: str
) -> None:
    path = tmp_path / "job.json"
    with anyio.fail_after(30):
        async with local() as sdk:
            await sdk.create_job(program=bell()).save(path)
            document = json.loads(path.read_text())
            document["jobs"][0]["program"] = program
            path.write_text(json.dumps(document))
            with pytest.raises(CorruptJobFileError, match=message):
                await sdk.load(path)


def test_saved_text_is_read_back_exactly_by_either_importer(monkeypatch: pytest.MonkeyPatch) -> None:
    plain, _, _ = rotations()
    plain = plain.assign_parameters([0.25, 0.5])
    unusual = QuantumCircuit(2, 2)  # rzz and an if: the native importer does not read them yet
    unusual.rzz(0.3, 0, 1)
    unusual.measure(0, 0)
    with unusual.if_test((unusual.clbits[0], 1)):
        unusual.x(1)
    unusual.measure(1, 1)
    text = qasm3.dumps(plain)
    assert qasm3.dumps(load_qasm3(text)) == text
    assert load_qasm3(text) == plain
    unusual_text = qasm3.dumps(unusual)
    loaded = load_qasm3(unusual_text)
    assert loaded.count_ops() == qasm3.loads(unusual_text).count_ops()
    assert [r.name for r in loaded.cregs] == ["c"]
    # A native reading that does not write back the same text is not trusted: the reference one is.
    monkeypatch.setattr(qasm3, "loads_experimental", lambda text: QuantumCircuit(2, 2))
    assert load_qasm3(qasm3.dumps(plain)) == plain


# ------------------------------------------------------------------------------------- bad input
def _unknown_parameter() -> Any:
    circuit, _, _ = rotations()
    return (circuit, {Parameter("theta"): 1.0, "alpha": 0.0})  # same name, another Parameter


def _vector_too_short() -> Any:
    angles = ParameterVector("a", 2)
    circuit = QuantumCircuit(2)
    circuit.ry(angles[0], 0)
    circuit.ry(angles[1], 1)
    return (circuit, {angles: [1.0]})


def _given_twice() -> Any:
    circuit, theta, _ = rotations()
    return (circuit, {"theta": 1.0, theta: 2.0, "alpha": 0.0})


BAD = [
    pytest.param(lambda: rotations()[0], "unbound parameter.*alpha, theta", id="unbound"),
    pytest.param(lambda: (rotations()[0], [1.0]), "2 parameter.*alpha, theta.*1 value", id="too few"),
    pytest.param(lambda: (rotations()[0], [1.0, 2.0, 3.0]), "3 value", id="too many"),
    pytest.param(lambda: (rotations()[0], [1.0, "x"]), "'theta' must be a finite real number", id="text"),
    pytest.param(lambda: (rotations()[0], [True, 1.0]), "'alpha' must be a finite real", id="bool"),
    pytest.param(lambda: (rotations()[0], [1.0, math.nan]), "'theta'.*finite", id="nan"),
    pytest.param(lambda: (rotations()[0], [1j, 1.0]), "'alpha'.*real", id="complex"),
    pytest.param(lambda: (rotations()[0], {"theta": 1.0}), "no value for parameter.*alpha", id="missing"),
    pytest.param(
        lambda: (rotations()[0], {"alpha": 0, "theta": 1, "beta": 2}), "no parameter 'beta'", id="name"
    ),
    pytest.param(_unknown_parameter, "another Parameter named 'theta'", id="foreign Parameter"),
    pytest.param(_given_twice, "'theta' is given twice", id="twice"),
    pytest.param(_vector_too_short, "vector 'a' has 2 element", id="short vector"),
    pytest.param(lambda: (rotations()[0], 1.5), "sequence of numbers.*not float", id="scalar values"),
    pytest.param(lambda: (rotations()[0], [[0, 0], 1.0]), "mix numbers and bindings", id="mixed sweep"),
    pytest.param(lambda: (rotations()[0], [[0, 0], [1.0]]), "in binding 1 of the sweep", id="bad binding"),
    pytest.param(lambda: [(rotations()[0], [[0, 0]])], "makes one job per binding", id="sweep in a list"),
    pytest.param(lambda: 42, "OpenQASM text or a qiskit QuantumCircuit, not int", id="neither"),
    pytest.param(lambda: [bell(), rotations()[0]], "unbound parameter", id="unbound child"),
]


@pytest.mark.parametrize(("make", "message"), BAD)
async def test_bad_programs_are_refused_at_create_job_before_anything_is_sent(
    make: Any, message: str
) -> None:
    with anyio.fail_after(30):
        async with oqc() as (emu, sdk):
            before = len(emu.requests)
            with pytest.raises(JobValidationError) as caught:
                sdk.create_job(program=make())
            after = len(emu.requests)
    text = "\n".join([str(caught.value), *getattr(caught.value, "__notes__", [])])
    assert re.search(message, text), text
    assert after == before  # nothing reached the vendor


async def test_the_empty_sweep_is_refused() -> None:
    circuit, _, _ = rotations()
    with anyio.fail_after(30):
        async with local() as sdk:
            with pytest.raises(JobValidationError, match="sweep of parameter values is empty"):
                sdk.create_job(program=(circuit, np.zeros((0, 2))))
            # an empty list is one binding of no values: right only for a circuit without parameters
            with pytest.raises(JobValidationError, match="2 parameter"):
                sdk.create_job(program=(circuit, []))
            assert isinstance(sdk.create_job(program=(bell(), [])), Job)
