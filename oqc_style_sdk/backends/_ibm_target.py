"""IBM Quantum devices as qiskit ``Target`` s, and circuits transpiled to them (ISA circuits).

IBM's devices run only ISA circuits: their native gates, two-qubit gates on coupled pairs, physical
qubits. qiskit-ibm-runtime users transpile with a preset pass manager built from the device's
``Target``; this module does the same without qiskit-ibm-runtime: the ``Target`` is built from the
JSON of ``GET /backends/{name}/configuration`` (gates and the qubits each runs on, supported
instructions, ``n_qubits``, ``dt``) and ``/properties`` (gate errors and lengths, readout errors and
lengths, T1/T2/frequency).

Everything here is CPU work on qiskit objects: call it in a worker thread, after
:func:`~oqc_style_sdk.backends._qiskit.qiskit_imported`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..exceptions import JobValidationError, ProtocolError
from ._qiskit import error_message

__all__ = [
    "DEFAULT_OPTIMIZATION_LEVEL",
    "Transpiled",
    "isa_problem",
    "target_from_ibm",
    "transpile_for",
]

logger = logging.getLogger("oqc_style_sdk.backends.ibm_quantum")

#: The preset pass manager level IBM recommends: qiskit-ibm-runtime's documentation and IBM's
#: non-ISA error message both transpile with ``optimization_level=1``.
DEFAULT_OPTIMIZATION_LEVEL: Final = 1
_CONTROL_FLOW: Final = ("if_else", "while_loop", "for_loop", "switch_case")
_NS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}


@dataclass(frozen=True, slots=True)
class Transpiled:
    """An ISA circuit and what :meth:`fetch_diagnostics` reports of it."""

    circuit: Any
    metrics: dict[str, Any]


def _value(parameters: object, name: str) -> float | None:
    """A named calibration value (``{"name", "value", "unit"}``) in seconds where it has a unit of time."""
    if not isinstance(parameters, list):
        return None
    for item in parameters:
        if isinstance(item, Mapping) and item.get("name") == name:
            value = item.get("value")
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value) * _NS.get(str(item.get("unit") or ""), 1.0)
    return None


def target_from_ibm(configuration: Mapping[str, Any], properties: Mapping[str, Any] | None) -> Any:
    """The qiskit ``Target`` of an IBM device from its configuration and (optional) properties.

    Raises :class:`~oqc_style_sdk.exceptions.ProtocolError` for a configuration without
    ``n_qubits`` or ``gates``. Gates qiskit has no standard definition of are left out (logged).
    """
    from qiskit.circuit import Delay, IfElseOp, Measure, Parameter, Reset
    from qiskit.circuit.controlflow import ForLoopOp, SwitchCaseOp, WhileLoopOp
    from qiskit.circuit.library import get_standard_gate_name_mapping
    from qiskit.providers import QubitProperties
    from qiskit.transpiler import InstructionProperties, Target

    n = configuration.get("n_qubits")
    gates = configuration.get("gates")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or not isinstance(gates, list):
        raise ProtocolError("IBM Quantum answered a backend configuration without n_qubits or gates")
    props = properties or {}
    gate_props: dict[tuple[str, tuple[int, ...]], tuple[float | None, float | None]] = {}
    for item in props.get("gates") or []:
        if not isinstance(item, Mapping) or not isinstance(item.get("qubits"), list):
            continue
        calibration = item.get("parameters")
        gate_props[(str(item.get("gate")), tuple(item["qubits"]))] = (
            _value(calibration, "gate_error"),
            _value(calibration, "gate_length"),
        )
    listed = props.get("qubits")
    qubits: list[Any] = listed if isinstance(listed, list) else []
    qubit_properties = None
    if len(qubits) == n:
        qubit_properties = [
            QubitProperties(t1=_value(q, "T1"), t2=_value(q, "T2"), frequency=_frequency(q)) for q in qubits
        ]
    dt = configuration.get("dt")
    target = Target(
        num_qubits=n,
        dt=float(dt) if isinstance(dt, int | float) and not isinstance(dt, bool) else None,
        qubit_properties=qubit_properties,
    )
    standard = get_standard_gate_name_mapping()
    for gate in gates:
        name = gate.get("name") if isinstance(gate, Mapping) else None
        if not isinstance(name, str) or name in ("measure", "reset", "delay"):
            continue
        operation = standard.get(name)
        if operation is None:
            logger.info("IBM Quantum device gate %r has no qiskit standard definition; left out", name)
            continue
        on = gate.get("coupling_map")
        if not on and operation.num_qubits == 1:
            on = [[q] for q in range(n)]
        entries = {}
        for qargs in on or []:
            error, length = gate_props.get((name, tuple(qargs)), (None, None))
            entries[tuple(qargs)] = InstructionProperties(error=error, duration=length)
        target.add_instruction(operation, entries)
    supported = set(configuration.get("supported_instructions") or ["measure", "reset", "delay"])
    readout: dict[tuple[int, ...], Any] = {(q,): None for q in range(n)}
    if len(qubits) == n:
        for q, calibration in enumerate(qubits):
            error, length = _value(calibration, "readout_error"), _value(calibration, "readout_length")
            readout[(q,)] = InstructionProperties(error=error, duration=length)
    target.add_instruction(Measure(), readout)
    if "reset" in supported:
        target.add_instruction(Reset(), {(q,): None for q in range(n)})
    if "delay" in supported:
        target.add_instruction(Delay(Parameter("t")), {(q,): None for q in range(n)})
    flow = {
        "if_else": IfElseOp,
        "while_loop": WhileLoopOp,
        "for_loop": ForLoopOp,
        "switch_case": SwitchCaseOp,
    }
    for name in _CONTROL_FLOW:
        if name in supported:
            target.add_instruction(flow[name], name=name)
    return target


def _frequency(qubit: object) -> float | None:
    value = _value(qubit, "frequency")  # GHz on the wire: no time unit, so scale it here
    if value is None or not isinstance(qubit, list):
        return None
    unit = next((p.get("unit") for p in qubit if isinstance(p, Mapping) and p.get("name") == "frequency"), "")
    return value * {"GHz": 1e9, "MHz": 1e6, "kHz": 1e3}.get(str(unit), 1.0)


def isa_problem(circuit: Any, target: Any, device: str) -> str | None:
    """Why ``circuit`` is not an ISA circuit of ``target`` (the gate or qubit count), or None."""
    if circuit.num_qubits > target.num_qubits:
        return f"the circuit has {circuit.num_qubits} qubits; {device} has {target.num_qubits}"
    for instruction in circuit.data:
        operation = instruction.operation
        if operation.name == "barrier":
            continue
        qargs = tuple(circuit.find_bit(q).index for q in instruction.qubits)
        if not target.instruction_supported(operation.name, qargs):
            return f"the instruction {operation.name} on qubits {qargs} is not supported by {device}"
    return None


def _metrics(circuit: Any, level: int | None) -> dict[str, Any]:
    two_qubit = sum(1 for i in circuit.data if i.operation.num_qubits == 2 and i.operation.name != "barrier")
    if level is not None and circuit.layout is not None:  # where each of the user's qubits ended
        layout = circuit.layout.final_index_layout()
    else:  # sent as written: its qubits are the physical ones
        layout = sorted({circuit.find_bit(q).index for i in circuit.data for q in i.qubits})
    return {
        "optimization_level": level,
        "depth": circuit.depth(),
        "size": circuit.size(),
        "two_qubit_gates": two_qubit,
        "count_ops": {name: int(n) for name, n in circuit.count_ops().items()},
        "layout": [int(q) for q in layout],
    }


#: The first transpilation of the process imports many modules (qiskit's stage plugins, and any
#: installed package that registers some: about 1,200 modules and 1-3 s with qiskit-ibm-runtime
#: installed). Two threads importing the same modules at once can see one half-initialised, so
#: the first run is made alone; later ones run in parallel.
_FIRST_RUN = threading.Lock()
_warmed = threading.Event()


def _run_preset(generate: Any, circuit: Any, target: Any, level: int) -> Any:
    if _warmed.is_set():
        return generate(optimization_level=level, target=target).run(circuit)
    with _FIRST_RUN:
        isa = generate(optimization_level=level, target=target).run(circuit)
        _warmed.set()
    return isa


def warm_transpiler() -> None:
    """Make the first transpilation of the process now (on a one-qubit circuit), so a job's own
    first one does not pay for the plugin imports. Idempotent; call it off the event loop."""
    if _warmed.is_set():
        return
    from qiskit import QuantumCircuit
    from qiskit.circuit.library import XGate
    from qiskit.transpiler import Target, generate_preset_pass_manager

    target = Target(num_qubits=1)
    target.add_instruction(XGate(), {(0,): None})
    circuit = QuantumCircuit(1)
    circuit.x(0)
    _run_preset(generate_preset_pass_manager, circuit, target, DEFAULT_OPTIMIZATION_LEVEL)


def transpile_for(circuit: Any, target: Any, device: str, optimization_level: int | None) -> Transpiled:
    """``circuit`` as an ISA circuit of ``target`` (``optimization_level`` None: sent as written,
    checked only). Raises JobValidationError naming the qubit count or the gate that cannot run."""
    from qiskit.transpiler import generate_preset_pass_manager

    if circuit.num_parameters:
        names = ", ".join(sorted(p.name for p in circuit.parameters))
        raise JobValidationError(f"the circuit has parameters without values: {names[:200]}")
    if circuit.num_qubits > target.num_qubits:
        raise JobValidationError(
            f"the circuit has {circuit.num_qubits} qubits; {device} has {target.num_qubits}"
        )
    isa = circuit
    if optimization_level is not None:
        try:
            isa = _run_preset(generate_preset_pass_manager, circuit, target, optimization_level)
        except Exception as exc:  # the circuit's fault: qiskit names what it could not map
            raise JobValidationError(
                f"the circuit cannot run on {device}: {error_message(exc)[:400]}"
            ) from None
    problem = isa_problem(isa, target, device)
    if problem is not None:
        hint = "" if optimization_level is None else " after transpilation"
        raise JobValidationError(f"{problem}{hint} (IBM runs ISA circuits only)")
    return Transpiled(isa, _metrics(isa, optimization_level))
