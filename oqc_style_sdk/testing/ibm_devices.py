"""The IBM Quantum emulator's devices: what ``GET /backends/{name}/configuration``, ``/properties`` and
``/status`` answer, and the ISA check IBM applies to every circuit sent to a device.

A device is a heavy-hex lattice of fixed-frequency transmons (rows of ``row_width`` qubits, joined by
bridge qubits every 4 columns, alternating offsets), as IBM's Heron processors are, with IBM's native
gates (``cz``, ``id``, ``rz``, ``sx``, ``x``) and calibration data drawn from a seeded generator: the
same device name always has the same numbers. The documents have the fields qiskit-ibm-runtime reads
to build its ``Target`` (``QasmBackendConfiguration`` and ``BackendProperties`` shapes).

An ISA circuit uses only the device's native instructions, a two-qubit gate only on a coupled pair,
and no qubit beyond the device. Anything else fails the job with IBM's reason code 1517 ("Circuits do
not match the target definition (non-ISA circuits)", IBM's error registry and its ISA announcement of
2024-05-06).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

from ..backends._qiskit import error_message, parse_qasm, qasm_major_version
from .ibm_encoding import EncodingError, decode_circuit

__all__ = [
    "HERON_BASIS_GATES",
    "NON_ISA_REASON",
    "NON_ISA_REASON_CODE",
    "VALIDATION_ERROR_CODE",
    "IbmDevice",
    "PubRefused",
    "device_program",
    "heavy_hex_edges",
    "non_isa_problem",
]

#: The native gates of IBM's Heron processors.
HERON_BASIS_GATES: Final = ("cz", "id", "rz", "sx", "x")
#: Instructions a device runs besides its gates (``supported_instructions`` of the configuration).
NON_GATE_INSTRUCTIONS: Final = ("delay", "measure", "reset", "if_else", "for_loop", "switch_case")
#: Instructions that are no operation on the device (directives), allowed anywhere.
DIRECTIVES: Final = frozenset({"barrier"})
#: The control flow a device runs (its blocks are checked instruction by instruction).
CONTROL_FLOW: Final = frozenset({"if_else", "for_loop", "switch_case"})
#: IBM's error code for a job that fails validation ("Error in the validation process of the job").
VALIDATION_ERROR_CODE: Final = 1002
#: IBM's error code and text for a circuit that is not ISA (the job is created, then fails).
NON_ISA_REASON_CODE: Final = 1517
NON_ISA_REASON: Final = "Circuits do not match the target definition (non-ISA circuits)"
_TRANSPILE_HINT: Final = (
    "Transpile your circuits for the target before submitting a primitive query, for example with "
    "generate_preset_pass_manager(optimization_level=1, target=backend.target)"
)
_CALIBRATED: Final = "2026-11-30T08:00:00+00:00"


@dataclass(frozen=True, slots=True)
class IbmDevice:
    """One device of the emulator's ``GET /backends`` list (each runs on the embedded simulator)."""

    name: str
    qubits: int
    status: str = "online"
    reason: str = "available"
    is_simulator: bool = False
    processor_type: Mapping[str, str] = field(default_factory=dict, hash=False)
    basis_gates: tuple[str, ...] = HERON_BASIS_GATES
    #: Qubits per row of the heavy-hex lattice.
    row_width: int = 16
    backend_version: str = "1.0.0"

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """The coupled pairs, each once (``a < b``)."""
        return heavy_hex_edges(self.qubits, self.row_width)

    def configuration(self) -> dict[str, Any]:
        """The ``GET /backends/{name}/configuration`` document."""
        return dict(_documents(self)[0])

    def properties(self) -> dict[str, Any]:
        """The ``GET /backends/{name}/properties`` document."""
        return dict(_documents(self)[1])

    def status_document(self, pending_jobs: int) -> dict[str, Any]:
        """The ``GET /backends/{name}/status`` document (qiskit-ibm-runtime reads ``state``,
        ``status`` and ``length_queue``; ``status`` is ``active`` for a device taking jobs, else the
        client warns)."""
        return {
            "backend_name": self.name,
            "backend_version": self.backend_version,
            "state": self.status == "online",
            "status": "active" if self.status == "online" else self.reason,
            "message": self.reason,
            "length_queue": pending_jobs,
        }


def heavy_hex_edges(qubits: int, row_width: int = 16) -> tuple[tuple[int, int], ...]:
    """A heavy-hex lattice of ``qubits`` qubits: rows of ``row_width`` joined by bridge qubits.

    Qubits are numbered row by row, each row followed by its bridges (one every 4 columns, the
    columns alternating between rows, as on IBM's Heron chips: 156 qubits of width 16 are 8 rows and
    7 bridge rows). A bridge row after the last full row is joined to the row above only.
    """
    edges: list[tuple[int, int]] = []
    row_start, row = 0, 0
    while row_start < qubits:
        width = min(row_width, qubits - row_start)
        edges.extend((row_start + i, row_start + i + 1) for i in range(width - 1))
        first_bridge = (row_width - 1) % 4 if row % 2 == 0 else ((row_width - 1) % 4 + 2) % 4
        columns = list(range(first_bridge, width, 4))
        bridge_start = row_start + width
        bridges = columns[: max(0, qubits - bridge_start)]
        next_row = bridge_start + len(bridges)
        for k, column in enumerate(bridges):
            bridge = bridge_start + k
            edges.append((row_start + column, bridge))
            if next_row + column < qubits:
                edges.append((bridge, next_row + column))
        row_start, row = next_row, row + 1
    return tuple(sorted(edges))


def _param(name: str, value: float, unit: str = "") -> dict[str, Any]:
    return {"date": _CALIBRATED, "name": name, "unit": unit, "value": value}


@cache
def _documents(device: IbmDevice) -> tuple[dict[str, Any], dict[str, Any]]:
    """(configuration, properties) of a device, the same on every call and in every process."""
    rng = random.Random(f"ibm-device:{device.name}:{device.qubits}")
    n = device.qubits
    edges = device.edges
    directed = [[a, b] for a, b in edges] + [[b, a] for a, b in edges]
    directed.sort()
    two_qubit = [g for g in device.basis_gates if g in ("cz", "ecr", "cx")]
    gates_config = []
    gates_props = []
    for gate in device.basis_gates:
        pairs = [[a, b] for a, b in directed] if gate in two_qubit else [[q] for q in range(n)]
        parameters = ["theta"] if gate == "rz" else []
        gates_config.append(
            {"name": gate, "parameters": parameters, "qasm_def": f"gate {gate}", "coupling_map": pairs}
        )
        for qargs in pairs:
            if gate == "rz":  # virtual: no error, no time
                error, length = 0.0, 0.0
            elif gate in two_qubit:
                error, length = rng.uniform(1.5e-3, 6e-3), 68.0
            else:
                error, length = rng.uniform(1.5e-4, 5e-4), 24.0
            gates_props.append(
                {
                    "qubits": qargs,
                    "gate": gate,
                    "name": f"{gate}{'_'.join(map(str, qargs))}",
                    "parameters": [_param("gate_error", error), _param("gate_length", length, "ns")],
                }
            )
    qubits_props = []
    for _ in range(n):
        t1 = rng.uniform(120, 300)
        readout = rng.uniform(5e-3, 2.5e-2)
        qubits_props.append(
            [
                _param("T1", t1, "us"),
                _param("T2", rng.uniform(0.5, 1.5) * t1, "us"),
                _param("frequency", rng.uniform(4.5, 5.2), "GHz"),
                _param("anharmonicity", rng.uniform(-0.32, -0.28), "GHz"),
                _param("readout_error", readout),
                _param("prob_meas0_prep1", readout * 1.2),
                _param("prob_meas1_prep0", readout * 0.8),
                _param("readout_length", 1560.0, "ns"),
            ]
        )
    configuration = {
        "backend_name": device.name,
        "backend_version": device.backend_version,
        "n_qubits": n,
        "basis_gates": list(device.basis_gates),
        "gates": gates_config,
        "supported_instructions": sorted({*device.basis_gates, *NON_GATE_INSTRUCTIONS}),
        "local": False,
        "simulator": device.is_simulator,
        "conditional": False,
        "open_pulse": False,
        "memory": True,
        "max_shots": 100_000,
        "max_experiments": 300,
        "coupling_map": directed,
        "dt": 0.5e-9 * 8,
        "dtm": 0.5e-9 * 8,
        "timing_constraints": {
            "acquire_alignment": 1,
            "granularity": 1,
            "min_length": 2,
            "pulse_alignment": 1,
        },
        "meas_map": [list(range(n))],
        "processor_type": dict(device.processor_type),
        "description": f"{n} qubit device",
        "online_date": "2024-05-14T04:00:00+00:00",
        "supported_features": ["qobj", "qasm3"],
        "rep_delay_range": [0.0, 500.0],
        "default_rep_delay": 250.0,
        "dynamic_reprate_enabled": True,
    }
    properties = {
        "backend_name": device.name,
        "backend_version": device.backend_version,
        "last_update_date": _CALIBRATED,
        "qubits": qubits_props,
        "gates": gates_props,
        "general": [],
    }
    return configuration, properties


@cache
def _allowed(device: IbmDevice) -> dict[str, frozenset[tuple[int, ...]]]:
    """The qubit tuples each native gate runs on, from the configuration (IBM's own definition)."""
    return {
        gate["name"]: frozenset(tuple(qargs) for qargs in gate["coupling_map"])
        for gate in _documents(device)[0]["gates"]
    }


def non_isa_problem(circuit: Any, device: IbmDevice) -> str | None:
    """Why ``circuit`` (a qiskit ``QuantumCircuit``) is not ISA for ``device``, or None if it is.

    A circuit's qubit ``i`` is the device's physical qubit ``i`` (a transpiled circuit spans the whole
    device; OpenQASM 3 physical qubits ``$i`` load as qubit ``i``).
    """
    if circuit.num_qubits > device.qubits:
        return _non_isa(f"the circuit has {circuit.num_qubits} qubits; {device.name} has {device.qubits}")
    physical = {qubit: i for i, qubit in enumerate(circuit.qubits)}
    return _check_block(circuit, physical, _allowed(device), device.name)


def _check_block(
    block: Any, physical: Mapping[Any, int], allowed: Mapping[str, frozenset[tuple[int, ...]]], name: str
) -> str | None:
    """The first non-ISA instruction of ``block`` (its qubits mapped to physical ones), if any."""
    for instruction in block.data:
        operation = instruction.operation
        qargs = tuple(physical[q] for q in instruction.qubits)
        if operation.name in DIRECTIVES or operation.name in ("measure", "reset", "delay"):
            continue
        if operation.name in CONTROL_FLOW:
            for inner in operation.blocks:
                inner_physical = dict(zip(inner.qubits, qargs, strict=True))
                problem = _check_block(inner, inner_physical, allowed, name)
                if problem:
                    return problem
            continue
        on = allowed.get(operation.name)
        if on is None:
            return _non_isa(f"the instruction {operation.name} is not supported by {name}")
        if qargs not in on:
            return _non_isa(f"the instruction {operation.name} on qubits {qargs} is not supported by {name}")
    return None


def _non_isa(detail: str) -> str:
    return f"{NON_ISA_REASON}. -- {detail[:200]}. {_TRANSPILE_HINT}"


class PubRefused(Exception):
    """A PUB the device does not run: the job fails with ``code`` (IBM's error registry)."""

    def __init__(self, reason: str, code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def device_program(circuit: str | dict[str, Any], device: IbmDevice) -> str:
    """The OpenQASM 3 the engine runs for a PUB's circuit, once IBM's checks pass.

    CPU work: call it in a worker thread, after ``qiskit_imported()``.

    Raises :class:`PubRefused` for a circuit that is not OpenQASM 3 or QPY, does not load, has
    unbound parameters, or is not ISA for ``device``.
    """
    import qiskit.qasm3

    if isinstance(circuit, str):
        version = qasm_major_version(circuit)
        if version not in (None, 3):
            raise PubRefused(
                f"the circuit must be OpenQASM 3 or QPY (got OPENQASM {version})", VALIDATION_ERROR_CODE
            )
        try:
            loaded = parse_qasm(circuit)
        except Exception as exc:
            raise PubRefused(
                f"the circuit does not parse: {error_message(exc)[:300]}", VALIDATION_ERROR_CODE
            ) from None
    else:
        try:
            loaded = decode_circuit(circuit)
        except EncodingError as exc:
            raise PubRefused(str(exc), VALIDATION_ERROR_CODE) from None
    if loaded.num_parameters:
        names = ", ".join(sorted(p.name for p in loaded.parameters))[:200]
        raise PubRefused(f"the circuit has parameters without values: {names}", VALIDATION_ERROR_CODE)
    problem = non_isa_problem(loaded, device)
    if problem is not None:
        raise PubRefused(problem, NON_ISA_REASON_CODE)
    return str(qiskit.qasm3.dumps(_active_part(loaded)))


def _active_part(circuit: Any) -> Any:
    """``circuit`` on its used qubits only, renumbered densely (a transpiled circuit spans the whole
    device; the simulator needs only the qubits that do something). Classical bits stay as they are."""
    from qiskit.circuit import Barrier, QuantumCircuit, QuantumRegister

    used = sorted(
        {
            circuit.find_bit(q).index
            for instruction in circuit.data
            if instruction.operation.name != "barrier"
            for q in instruction.qubits
        }
    )
    dense = {circuit.qubits[old]: new for new, old in enumerate(used)}
    compact = QuantumCircuit(QuantumRegister(max(len(used), 1), "q"))
    in_registers = {bit for register in circuit.cregs for bit in register}
    compact.add_bits([bit for bit in circuit.clbits if bit not in in_registers])
    for register in circuit.cregs:
        compact.add_register(register)
    for instruction in circuit.data:
        qubits = [compact.qubits[dense[q]] for q in instruction.qubits if q in dense]
        operation = instruction.operation
        if operation.name == "barrier":
            if not qubits:
                continue
            operation = Barrier(len(qubits))
        compact.append(operation, qubits, instruction.clbits, copy=False)
    return compact
