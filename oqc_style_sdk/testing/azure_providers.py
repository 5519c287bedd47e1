"""The emulated providers: their targets, what they take and give — IonQ's ``qis`` circuit JSON read
as OpenQASM for the simulator, and the simulator's counts written in each provider's output format."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = ["DEFAULT_PROVIDERS", "EmulatedProvider", "EmulatedTarget", "ionq_to_qasm", "provider_output"]


@dataclass(frozen=True, slots=True)
class EmulatedTarget:
    """One target of ``providerStatus``."""

    id: str
    num_qubits: int
    availability: str = "Available"
    average_queue_time: int = 0
    target_profile: str | None = None


@dataclass(frozen=True, slots=True)
class EmulatedProvider:
    """One provider: its targets and the formats it takes and gives. ``runs`` is how the emulator
    runs its jobs: ``"ionq"``, ``"quantinuum"``, or None (jobs are accepted, then fail)."""

    id: str
    targets: tuple[EmulatedTarget, ...]
    input_formats: tuple[str, ...]
    output_format: str
    runs: Literal["ionq", "quantinuum"] | None = None
    availability: str = "Available"


#: The providers the emulator lists unless given others.
DEFAULT_PROVIDERS: Final = (
    EmulatedProvider(
        "ionq",
        (
            EmulatedTarget("ionq.simulator", 29),
            EmulatedTarget("ionq.qpu.aria-1", 25, average_queue_time=3600),
            EmulatedTarget("ionq.qpu.forte-1", 36, average_queue_time=7200),
        ),
        ("ionq.circuit.v1",),
        "ionq.quantum-results.v1",
        runs="ionq",
    ),
    EmulatedProvider(
        "quantinuum",
        (
            EmulatedTarget("quantinuum.sim.h1-1sc", 20),
            EmulatedTarget("quantinuum.sim.h1-1e", 20, average_queue_time=60),
            EmulatedTarget("quantinuum.qpu.h1-1", 20, average_queue_time=86400),
            EmulatedTarget("quantinuum.sim.h2-1sc", 56),
            EmulatedTarget("quantinuum.sim.h2-1e", 56, average_queue_time=60),
            EmulatedTarget("quantinuum.qpu.h2-1", 56, average_queue_time=86400),
        ),
        ("honeywell.openqasm.v1",),
        "honeywell.quantum-results.v1",
        runs="quantinuum",
    ),
    EmulatedProvider(
        "microsoft-qc",
        (EmulatedTarget("microsoft.estimator", 100000),),
        ("qir.v1",),
        "microsoft.resource-estimates.v1",
    ),
)


_IONQ_QASM: Final = {
    "x": "x",
    "not": "x",
    "cnot": "x",
    "y": "y",
    "z": "z",
    "h": "h",
    "s": "s",
    "si": "sdg",
    "t": "t",
    "ti": "tdg",
    "v": "sx",
    "vi": "sxdg",
    "rx": "rx",
    "ry": "ry",
    "rz": "rz",
    "swap": "swap",
}
_CONTROLLED: Final = {
    "x": "cx",
    "y": "cy",
    "z": "cz",
    "h": "ch",
    "rx": "crx",
    "ry": "cry",
    "rz": "crz",
    "swap": "cswap",
}
#: qiskit's OpenQASM 2 reader (and the simulator's) knows the paper's qelib1 only: no sx/sxdg (√X is
#: H·S·H, √X† is H·S†·H, written inline), and no swap, cswap, crx, cry (defined in the program).
_SQRT_X: Final = {"sx": ("h", "s", "h"), "sxdg": ("h", "sdg", "h")}
_DEFINITIONS: Final = {
    "swap": "gate swap a,b { cx a,b; cx b,a; cx a,b; }",
    "cswap": "gate cswap a,b,c { cx c,b; ccx a,b,c; cx c,b; }",
    "crx": "gate crx(t) a,b { u1(pi/2) b; cx a,b; u3(-t/2,0,0) b; cx a,b; u3(t/2,-pi/2,0) b; }",
    "cry": "gate cry(t) a,b { ry(t/2) b; cx a,b; ry(-t/2) b; cx a,b; }",
}


def ionq_to_qasm(payload: Any, *, max_qubits: int | None = None) -> tuple[str, int]:
    """An IonQ ``qis`` circuit (``ionq.circuit.v1``) as OpenQASM 2 measuring every qubit into ``c``.

    Accepts ``targets``/``controls`` lists and the older ``target``/``control`` ints; single-qubit
    gates apply to each target; one control makes the controlled gate, two controls on ``x`` a
    Toffoli. Raises ValueError (its message is the job's errorData) for anything else.
    """
    if not isinstance(payload, dict):
        raise ValueError("the input is not a JSON object")
    gateset = payload.get("gateset", "qis")
    if gateset != "qis":
        raise ValueError(f"gateset {gateset!r} is not emulated (only 'qis')")
    n = payload.get("qubits")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError("'qubits' must be a positive integer")
    if max_qubits is not None and n > max_qubits:
        raise ValueError(f"the circuit uses {n} qubits; the target has {max_qubits}")
    circuit = payload.get("circuit")
    if not isinstance(circuit, list):
        raise ValueError("'circuit' must be a list of gates")
    lines: list[str] = []
    defined: list[str] = []

    def qubit_list(gate: Mapping[str, Any], many: str, one: str) -> list[int]:
        raw = gate.get(many, [gate[one]] if one in gate else [])
        if not isinstance(raw, list) or not all(
            isinstance(q, int) and not isinstance(q, bool) and 0 <= q < n for q in raw
        ):
            raise ValueError(f"{many} must be qubit indices from 0 to {n - 1}")
        return raw

    for index, gate in enumerate(circuit):
        if not isinstance(gate, dict) or not isinstance(gate.get("gate"), str):
            raise ValueError(f"circuit[{index}] is not a gate object")
        name = gate["gate"].lower()
        if name not in _IONQ_QASM:
            raise ValueError(f"circuit[{index}]: unknown gate {gate['gate']!r}")
        targets = qubit_list(gate, "targets", "target")
        controls = qubit_list(gate, "controls", "control")
        if not targets or set(targets) & set(controls):
            raise ValueError(f"circuit[{index}]: a gate needs targets distinct from its controls")
        base = _IONQ_QASM[name]
        args = ""
        if base in ("rx", "ry", "rz"):
            rotation = gate.get("rotation")
            if isinstance(rotation, bool) or not isinstance(rotation, int | float):
                raise ValueError(f"circuit[{index}]: {name} needs a numeric 'rotation' (radians)")
            args = f"({float(rotation)!r})"
        if name == "cnot" and not controls:
            raise ValueError(f"circuit[{index}]: cnot needs a control")
        if base == "swap" and len(targets) != 2:
            raise ValueError(f"circuit[{index}]: swap needs exactly two targets")
        if not controls:
            if base == "swap":
                defined.append("swap")
                lines.append(f"swap q[{targets[0]}],q[{targets[1]}];")
                continue
            for t in targets:
                lines.extend(f"{part} q[{t}];" for part in _SQRT_X.get(base, (f"{base}{args}",)))
            continue
        operands = [*controls, *targets]
        if len(controls) == 1 and base in _CONTROLLED and (base == "swap" or len(targets) == 1):
            defined.append(_CONTROLLED[base])
            lines.append(f"{_CONTROLLED[base]}{args} " + ",".join(f"q[{q}]" for q in operands) + ";")
        elif len(controls) == 2 and base == "x" and len(targets) == 1:
            lines.append("ccx " + ",".join(f"q[{q}]" for q in operands) + ";")
        else:
            raise ValueError(f"circuit[{index}]: {len(controls)}-controlled {name} is not emulated")
    header = ["OPENQASM 2.0;", 'include "qelib1.inc";']
    header += [_DEFINITIONS[name] for name in _DEFINITIONS if name in defined]
    header += [f"qreg q[{n}];", f"creg c[{n}];"]
    return "\n".join([*header, *lines, "measure q -> c;"]) + "\n", n


def provider_output(
    kind: Literal["ionq", "quantinuum"],
    counts: Mapping[str, Mapping[str, int]],
    shots: int,
    *,
    zero_results: bool = False,
) -> dict[str, Any]:
    """The output blob of a run, from the simulator's counts per register.

    IonQ (``ionq.quantum-results.v1``): ``{"histogram": {"<state>": probability}}`` of register
    ``c`` (which :func:`ionq_to_qasm` measures every qubit into), the sampled frequencies.
    Quantinuum (``honeywell.quantum-results.v1``): one bitstring per shot for each register; all
    zeros with ``zero_results`` (what the syntax checkers return).
    """
    if kind == "ionq":
        register = counts.get("c", {})
        return {"histogram": {str(int(bits, 2)): n / shots for bits, n in register.items()}}
    output: dict[str, Any] = {}
    for name, register in counts.items():
        width = len(next(iter(register), ""))
        if zero_results:
            output[name] = ["0" * width] * shots
        else:
            output[name] = [bits for bits, n in sorted(register.items()) for _ in range(n)]
    return output
