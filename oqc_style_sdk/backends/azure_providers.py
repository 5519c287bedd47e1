"""Azure Quantum's providers: what each takes and gives, and the conversions to and from it.

IonQ takes its ``qis`` circuit JSON (``ionq.circuit.v1``) and gives a histogram of probabilities
(``ionq.quantum-results.v1``); Quantinuum takes OpenQASM 2 (``honeywell.openqasm.v1``) and gives
one bitstring per shot for each register (``honeywell.quantum-results.v1``). The conversions of
programs are CPU work (qiskit): callers run them in a worker thread.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..exceptions import JobValidationError, ProtocolError
from ._qiskit import as_circuit, error_message, qasm_major_version, qiskit_ready, start_qiskit_loader

__all__ = [
    "PROVIDER_FORMATS",
    "IonqProgram",
    "ProviderFormat",
    "counts_from_ionq",
    "counts_from_quantinuum",
    "ionq_program",
    "provider_of_target",
    "quantinuum_program",
]


@dataclass(frozen=True, slots=True)
class ProviderFormat:
    """What a provider takes and gives: formats of the input and output blobs."""

    provider: str
    input_format: str
    output_format: str
    content_type: str


#: The providers this adapter runs OpenQASM on (VENDORS.md §2).
PROVIDER_FORMATS: Final[Mapping[str, ProviderFormat]] = {
    "ionq": ProviderFormat("ionq", "ionq.circuit.v1", "ionq.quantum-results.v1", "application/json"),
    "quantinuum": ProviderFormat(
        "quantinuum", "honeywell.openqasm.v1", "honeywell.quantum-results.v1", "application/qasm"
    ),
}
_PROVIDER_OF_PREFIX: Final = {"ionq": "ionq", "quantinuum": "quantinuum", "honeywell": "quantinuum"}


def provider_of_target(target: str) -> str | None:
    """The provider a target name belongs to (``ionq.simulator`` → ``ionq``), or None."""
    return _PROVIDER_OF_PREFIX.get(target.split(".", 1)[0].lower())


@dataclass(frozen=True, slots=True)
class IonqProgram:
    """An OpenQASM program as IonQ's ``qis`` JSON, and how to read its histogram back."""

    payload: dict[str, Any]
    num_qubits: int
    #: For each clbit (by circuit index): the qubit measured into it, or None if never measured.
    meas_map: list[int | None]
    #: Each classical register: its name and its clbits' circuit indices (bit 0 first).
    cregs: list[tuple[str, list[int]]]

    def metadata(self) -> dict[str, str]:
        """What goes in the job's metadata (strings, as azure-quantum stores them)."""
        return {
            "num_qubits": str(self.num_qubits),
            "meas_map": json.dumps(self.meas_map),
            "cregs": json.dumps([[name, bits] for name, bits in self.cregs]),
        }


#: qiskit gate → IonQ ``qis`` gate (single qubit; rotations carry ``rotation`` in radians).
_IONQ_GATES: Final = {
    "x": "x",
    "y": "y",
    "z": "z",
    "h": "h",
    "s": "s",
    "sdg": "si",
    "t": "t",
    "tdg": "ti",
    "sx": "v",
    "sxdg": "vi",
    "rx": "rx",
    "ry": "ry",
    "rz": "rz",
}
_IONQ_BASIS: Final = [*_IONQ_GATES, "cx", "swap"]


def _load(program: Any, target: str | None, max_qubits: int | None) -> Any:
    """The program as a circuit (text parsed), refused if it has more qubits than the target."""
    start_qiskit_loader()
    qiskit_ready.wait()
    try:
        circuit = as_circuit(program)
    except Exception as exc:
        raise JobValidationError(f"the program does not parse: {error_message(exc)}") from None
    if circuit.parameters:
        names = ", ".join(sorted(str(p) for p in circuit.parameters))
        raise JobValidationError(f"the circuit has unbound parameters: {names}")
    if max_qubits is not None and circuit.num_qubits > max_qubits:
        raise JobValidationError(
            f"the circuit uses {circuit.num_qubits} qubits; {target or 'the target'} has {max_qubits}"
        )
    return circuit


def ionq_program(program: Any, *, target: str | None = None, max_qubits: int | None = None) -> IonqProgram:
    """Lower a program (OpenQASM 2 or 3 text, or a ``QuantumCircuit``) to IonQ's ``qis`` circuit
    JSON (``ionq.circuit.v1``).

    Raises JobValidationError for a program that does not parse or that IonQ cannot run: a gate
    outside IonQ's set that cannot be written in it, a gate on a qubit after it was measured,
    reset, classical control, unbound parameters, more qubits than ``max_qubits``.
    """
    circuit = _load(program, target, max_qubits)
    import qiskit

    try:
        lowered = qiskit.transpile(circuit, basis_gates=[*_IONQ_BASIS, "measure"], optimization_level=0)
    except Exception as exc:
        raise JobValidationError(
            f"the program cannot be written in IonQ's gates: {error_message(exc)}"
        ) from None
    gates: list[dict[str, Any]] = []
    measured: dict[int, int] = {}
    done: set[int] = set()
    for instruction in lowered.data:
        operation = instruction.operation
        name = str(operation.name)
        qubits = [int(lowered.find_bit(q).index) for q in instruction.qubits]
        if name == "barrier":
            continue
        if name == "measure":
            clbit = int(lowered.find_bit(instruction.clbits[0]).index)
            measured[clbit] = qubits[0]
            done.add(qubits[0])
            continue
        if getattr(operation, "blocks", ()) or instruction.clbits:
            raise JobValidationError(f"IonQ targets do not run classically controlled operations ({name})")
        touched = [q for q in qubits if q in done]
        if touched:
            raise JobValidationError(
                f"IonQ measures every qubit at the end of the circuit: {name} acts on qubit "
                f"{touched[0]} after it was measured"
            )
        gate: dict[str, Any]
        if name in _IONQ_GATES:
            gate = {"gate": _IONQ_GATES[name], "targets": [qubits[0]]}
            if name in ("rx", "ry", "rz"):
                try:
                    gate["rotation"] = float(operation.params[0])
                except (TypeError, ValueError):
                    raise JobValidationError(f"{name} has an unbound parameter") from None
        elif name == "cx":
            gate = {"gate": "x", "controls": [qubits[0]], "targets": [qubits[1]]}
        elif name == "swap":
            gate = {"gate": "swap", "targets": qubits}
        else:
            raise JobValidationError(f"IonQ targets cannot run {name!r}")
        gates.append(gate)
    num_qubits = int(lowered.num_qubits)
    meas_map = [measured.get(index) for index in range(int(lowered.num_clbits))]
    cregs = [
        (str(register.name), [int(lowered.find_bit(bit).index) for bit in register])
        for register in lowered.cregs
    ]
    payload = {"gateset": "qis", "qubits": num_qubits, "circuit": gates}
    return IonqProgram(payload=payload, num_qubits=num_qubits, meas_map=meas_map, cregs=cregs)


#: The gates of the OpenQASM 2 paper's ``qelib1.inc`` (what every OpenQASM 2 reader knows; qiskit's
#: writer would otherwise use its extended set — sx, swap, crx ... — that strict readers refuse).
_QELIB1_BASIS: Final = [
    *("u3", "u2", "u1", "cx", "id", "x", "y", "z", "h", "s", "sdg", "t", "tdg", "rx", "ry", "rz"),
    *("cz", "cy", "ch", "ccx", "crz", "measure", "reset"),
]


def quantinuum_program(program: Any, *, target: str | None = None, max_qubits: int | None = None) -> str:
    """OpenQASM 2 text for Quantinuum (``honeywell.openqasm.v1``): OpenQASM 2 text is sent as
    written (Quantinuum checks it); OpenQASM 3 text and circuits are lowered to the paper's qelib1
    gates and written out as OpenQASM 2 (registers and measurements kept). Raises
    JobValidationError as :func:`ionq_program` does for what cannot be written so."""
    circuit = _load(program, target, max_qubits)
    if isinstance(program, str) and qasm_major_version(program) == 2:
        return program
    import qiskit
    import qiskit.qasm2

    try:
        lowered = qiskit.transpile(circuit, basis_gates=_QELIB1_BASIS, optimization_level=0)
        return str(qiskit.qasm2.dumps(lowered))
    except Exception as exc:
        raise JobValidationError(
            f"the program cannot be written as OpenQASM 2: {error_message(exc)}"
        ) from None


# --------------------------------------------------------------------------------------------------
# Results


def _largest_remainder(probabilities: Mapping[int, float], shots: int) -> dict[int, int]:
    total = sum(probabilities.values())
    if total <= 0:
        return {}
    exact = {state: p / total * shots for state, p in probabilities.items()}
    counts = {state: math.floor(value) for state, value in exact.items()}
    left = shots - sum(counts.values())
    for state in sorted(exact, key=lambda s: (counts[s] - exact[s], s))[: max(left, 0)]:
        counts[state] += 1
    return {state: n for state, n in counts.items() if n > 0}


def counts_from_ionq(
    body: Any,
    *,
    shots: int,
    meas_map: Sequence[int | None],
    cregs: Sequence[tuple[str, Sequence[int]]],
) -> dict[str, dict[str, int]]:
    """Counts per classical register from an ``ionq.quantum-results.v1`` blob.

    ``{"histogram": {"<basis state>": probability}}``: the state's bit ``q`` is qubit ``q``. Each
    register's bitstring has its highest bit first (qiskit's order); a clbit never measured is 0.
    """
    histogram = body.get("histogram") if isinstance(body, dict) else None
    if not isinstance(histogram, dict):
        raise ProtocolError("the IonQ result has no 'histogram' object")
    probabilities: dict[int, float] = {}
    for key, value in histogram.items():
        try:
            state = int(key)
        except (TypeError, ValueError):
            raise ProtocolError(f"the IonQ histogram has a key that is not a basis state: {key!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or state < 0:
            raise ProtocolError(f"the IonQ histogram has an invalid entry {key!r}: {value!r}")
        probabilities[state] = probabilities.get(state, 0.0) + float(value)
    if probabilities and not math.isclose(sum(probabilities.values()), 1.0, abs_tol=1e-3):
        raise ProtocolError(f"the IonQ probabilities add up to {sum(probabilities.values()):g}, not 1")
    out: dict[str, Counter[str]] = {name: Counter() for name, _ in cregs}
    for state, n in _largest_remainder(probabilities, shots).items():
        for name, clbits in cregs:
            bits = []
            for clbit in reversed(clbits):
                qubit = meas_map[clbit] if clbit < len(meas_map) else None
                bits.append("0" if qubit is None else str((state >> qubit) & 1))
            out[name]["".join(bits)] += n
    return {name: dict(sorted(counter.items())) for name, counter in out.items()}


def counts_from_quantinuum(body: Any) -> dict[str, dict[str, int]]:
    """Counts per classical register from a ``honeywell.quantum-results.v1`` blob:
    ``{"<register>": ["<bits of shot 1>", ...]}``; keys whose value is not such a list are skipped."""
    if not isinstance(body, dict):
        raise ProtocolError("the Quantinuum result is not a JSON object")
    out: dict[str, dict[str, int]] = {}
    for name, shots in body.items():
        if not isinstance(shots, list) or not all(isinstance(s, str) for s in shots):
            continue
        out[str(name)] = dict(sorted(Counter(shots).items()))
    return out
