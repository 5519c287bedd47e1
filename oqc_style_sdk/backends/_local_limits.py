"""The local simulator's limits: loop unrolling, memory, simulation methods, and what is cheap.

Every rule here is checked twice where it can be: on the program's text (or circuit) when the job
is created, so ``create_job`` refuses it with :class:`JobValidationError`, and on the parsed
circuit when its run starts (a text program's loops whose bounds are not literals, a memory need
known only once the gates are), where the run ends ``FAILED`` with code :data:`LOOP_LIMIT` or
:data:`MEMORY_LIMIT` and the same message. Nothing here imports qiskit at module level: the
checks on circuits take the circuit (already imported by whoever made it).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from typing import Any, Final

from ..exceptions import JobValidationError

__all__ = [
    "AER_METHODS",
    "DEVICES",
    "INLINE_COST_LIMIT",
    "LOOP_LIMIT",
    "MAX_UNROLLED_OPERATIONS",
    "MEMORY_FRACTION",
    "MEMORY_LIMIT",
    "LimitError",
    "available_memory_bytes",
    "check_circuit",
    "check_loops_in_text",
    "choose_method",
    "circuit_cost",
    "expanded_cost",
    "gpu_build_installed",
    "text_cost",
    "unrolled_operations",
]

#: The most operations a program may unroll to (loops unrolled, gate definitions not expanded).
#: Aer unrolls every ``for`` loop before it simulates; a 10⁹-iteration loop would take minutes and
#: gigabytes just to unroll.
MAX_UNROLLED_OPERATIONS: Final = 1_000_000
#: The share of the memory available (``MemAvailable``) a simulation may plan to use.
MEMORY_FRACTION: Final = 0.8
#: A run is *cheap* (simulated in this process, not in a worker) when shots × operations ×
#: 2**qubits is at most this (~tens of milliseconds of simulation at worst).
INLINE_COST_LIMIT: Final = 20_000_000

#: Observation codes of runs refused when they start.
LOOP_LIMIT: Final = "LOOP_LIMIT"
MEMORY_LIMIT: Final = "MEMORY_LIMIT"

#: qiskit-aer's simulation methods (``config["method"]``).
AER_METHODS: Final = (
    "automatic",
    "statevector",
    "density_matrix",
    "stabilizer",
    "extended_stabilizer",
    "matrix_product_state",
    "unitary",
    "superop",
    "tensor_network",
)
#: Devices (``config["device"]``); ``GPU`` needs a GPU build of qiskit-aer (``qiskit-aer-gpu``).
DEVICES: Final = ("CPU", "GPU")
_GPU_DISTRIBUTIONS: Final = ("qiskit-aer-gpu", "qiskit-aer-gpu-cu11", "qiskit-aer-gpu-cu12")

#: Bytes per amplitude (complex double) and the exponent of 2**n each method stores.
_AMPLITUDE_BYTES: Final = 16
_STATE_EXPONENT: Final = {"statevector": 1, "density_matrix": 2, "unitary": 2, "superop": 4}

#: Operations the stabilizer method runs (qiskit-aer's stabilizer basis, plus what every method takes).
_CLIFFORD_OPS: Final = frozenset(
    {"cx", "cy", "cz", "ecr", "h", "id", "pauli", "s", "sdg", "swap", "sx", "sxdg", "x", "y", "z"}
    | {"delay", "reset", "measure", "barrier"}
)
#: Rotations that are Clifford only at multiples of pi/2.
_PHASE_OPS: Final = frozenset({"rz", "p", "u1"})
_CONTROL_FLOW: Final = frozenset({"for_loop", "while_loop", "if_else", "switch_case", "box"})


class LimitError(JobValidationError):
    """A program over one of the local simulator's limits; ``code`` is :data:`LOOP_LIMIT` or
    :data:`MEMORY_LIMIT` (the code of its run, when the limit is found as the run starts)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


# -- text: loops of literal bounds, and cheapness --------------------------------------------------

_TOKENS = re.compile(r"//[^\n]*|/\*.*?\*/|\"[^\"]*\"|[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9_]*|\S", re.DOTALL)


def _tokens(program: str) -> Iterator[str]:
    for match in _TOKENS.finditer(program):
        token = match.group()
        if not token.startswith(("//", "/*")):
            yield token


def _literal(tokens: list[str], i: int) -> tuple[int | None, int]:
    """An integer literal (with an optional minus) at ``tokens[i]``: (value or None, next index)."""
    sign = 1
    if i < len(tokens) and tokens[i] == "-":
        sign, i = -1, i + 1
    if i < len(tokens) and tokens[i][0].isdigit():
        return sign * int(tokens[i].replace("_", "")), i + 1
    return None, i + 1


def _loop_count(tokens: list[str], i: int) -> tuple[int, int]:
    """The iteration count of the set or range at ``tokens[i]`` (1 if not literal) and where the
    loop body starts."""
    if i < len(tokens) and tokens[i] == "[":
        parts: list[int | None] = []
        j = i + 1
        while j < len(tokens) and tokens[j] != "]":
            value, j = _literal(tokens, j)
            parts.append(value)
            while j < len(tokens) and tokens[j] not in (":", "]"):  # an expression: not literal
                parts[-1] = None
                j += 1
            if j < len(tokens) and tokens[j] == ":":
                j += 1
        if len(parts) in (2, 3) and all(p is not None for p in parts):
            start, step, stop = (parts[0], 1, parts[1]) if len(parts) == 2 else parts
            if start is None or step is None or stop is None:  # pragma: no cover - checked above
                return 1, j + 1
            count = 0 if step == 0 else max(0, (stop - start) // step + 1)
            return count, j + 1
        return 1, j + 1
    if i < len(tokens) and tokens[i] == "{":
        j, elements, depth = i + 1, 1, 1
        while j < len(tokens) and depth:
            depth += {"{": 1, "}": -1}.get(tokens[j], 0)
            elements += tokens[j] == "," and depth == 1
            j += 1
        return elements, j
    return 1, i + 1  # an identifier (a register or array): not known from the text


def _text_operations(program: str) -> int:
    """Statements the program unrolls to, counting ``for`` loops of literal bounds (others once)."""
    tokens = list(_tokens(program))
    total = 0
    # Each open block: (its multiplier, whether it is a one-statement loop body without braces).
    stack: list[tuple[int, bool]] = []
    multiplier = 1
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "for":
            j = i + 1
            while j < len(tokens) and tokens[j] != "in":
                j += 1
            count, j = _loop_count(tokens, j + 1)
            braces = j < len(tokens) and tokens[j] == "{"
            stack.append((multiplier, not braces))
            multiplier *= max(count, 0) if count else 0
            i = j + 1 if braces else j
            continue
        if token == "{":
            stack.append((multiplier, False))
        elif token == "}":
            if stack:
                multiplier, _ = stack.pop()
            while stack and stack[-1][1]:  # a brace-less loop body ended with this block
                multiplier, _ = stack.pop()
        elif token == ";":
            total += multiplier
            while stack and stack[-1][1]:  # the one statement of a brace-less loop body
                multiplier, _ = stack.pop()
        i += 1
    return total


def _loop_error(operations: int) -> LimitError:
    return LimitError(
        f"the program unrolls to {operations:,} operations (its loops unrolled), over the local "
        f"simulator's limit of {MAX_UNROLLED_OPERATIONS:,} (MAX_UNROLLED_OPERATIONS); make the "
        "loops shorter",
        LOOP_LIMIT,
    )


def check_loops_in_text(program: str) -> None:
    """Refuse (JobValidationError) a program whose ``for`` loops of literal bounds unroll to more
    than :data:`MAX_UNROLLED_OPERATIONS` statements. Loops whose bounds are not literals are
    checked on the parsed circuit when the run starts."""
    if "for" not in program:
        return
    operations = _text_operations(program)
    if operations > MAX_UNROLLED_OPERATIONS:
        raise _loop_error(operations)


#: Words after which a text program's length no longer bounds its work.
_UNBOUNDED = re.compile(
    r"\b(for|while|gate|def|defcal|cal|extern|opaque|box)\b|\binclude\s+\"(?!stdgates|qelib1)"
)
_QUBITS = re.compile(
    r"\bqubit\s*\[\s*([0-9]+)\s*\]|\bqubit\s+[A-Za-z_]|\bqreg\s+[A-Za-z_][A-Za-z0-9_]*\s*\[\s*([0-9]+)\s*\]"
)


#: Words one of which is in any text that ``_UNBOUNDED`` finds a word in (checked first: the
#: search itself costs as much as the rest of a Bell job's submission).
_UNBOUNDED_WORDS = ("for", "while", "gate", "def", "cal", "extern", "opaque", "box")


def _unbounded(program: str) -> bool:
    std = program.count('include "qelib1') + program.count('include "stdgates')
    if std == program.count("include") and not any(word in program for word in _UNBOUNDED_WORDS):
        return False  # no such word, and every include is a standard one
    return _UNBOUNDED.search(program) is not None


def text_cost(program: str, shots: int) -> int | None:
    """shots × statements × 2**qubits of a text program, or None when its text does not bound its
    work (loops, gate or subroutine definitions, qubits not declared as registers)."""
    if _unbounded(program):
        return None
    qubits = 0
    for match in _QUBITS.finditer(program):
        size = match.group(1) or match.group(2)
        qubits += int(size) if size else 1
    if not qubits or qubits > 24:
        return None
    return shots * max(1, program.count(";")) << qubits


def circuit_cost(circuit: Any, shots: int) -> int | None:
    """shots × operations × 2**qubits of a circuit without control flow (else None)."""
    if circuit.num_qubits > 24:
        return None
    if any(instruction.operation.name in _CONTROL_FLOW for instruction in circuit.data):
        return None
    return shots * max(1, len(circuit.data)) << int(circuit.num_qubits)


# -- circuits: unrolled size, Clifford, memory, method ---------------------------------------------


def expanded_cost(circuit: Any, shots: int, native: frozenset[str], method: str = "automatic") -> int | None:
    """shots × operations × 2**qubits (× qubits with the stabilizer method) of a parsed circuit, its
    loops unrolled and the gates Aer lacks expanded from their definitions; None if unbounded (a
    ``while`` loop) or over 24 qubits (but for the stabilizer method)."""
    qubits = int(circuit.num_qubits)
    if qubits > 24 and method != "stabilizer":
        return None
    sizes: dict[int, int] = {}

    def size(block: Any, depth: int = 0) -> int | None:
        total = 0
        for instruction in block.data:
            operation = instruction.operation
            name = operation.name
            if name == "while_loop" or depth > 50:
                return None
            blocks = getattr(operation, "blocks", ())
            if blocks:
                inner = [size(b, depth + 1) for b in blocks]
                if any(n is None for n in inner):
                    return None
                count = len(operation.params[0]) if name == "for_loop" else 1
                total += 1 + count * max(n for n in inner if n is not None)
            elif name in native or getattr(operation, "definition", None) is None:
                total += 1
            else:
                key = id(operation.definition)
                if key not in sizes:
                    inner_size = size(operation.definition, depth + 1)
                    if inner_size is None:
                        return None
                    sizes[key] = inner_size
                total += sizes[key]
            if total > MAX_UNROLLED_OPERATIONS:
                return None
        return total

    operations = size(circuit)
    if operations is None:
        return None
    return shots * max(1, operations) * (qubits if method == "stabilizer" else 1 << qubits)


def unrolled_operations(circuit: Any) -> int:
    """Operations of ``circuit`` with every ``for`` loop unrolled (a ``while`` body counted once,
    the longest branch of a condition)."""
    total = 0
    for instruction in circuit.data:
        operation = instruction.operation
        blocks = getattr(operation, "blocks", ())
        if not blocks:
            total += 1
            continue
        inner = max(unrolled_operations(block) for block in blocks)
        if operation.name == "for_loop":
            inner *= len(operation.params[0])
        total += 1 + inner
        if total > MAX_UNROLLED_OPERATIONS:  # no need to count further
            return total
    return total


def _is_clifford(circuit: Any) -> bool:
    for instruction in circuit.data:
        operation = instruction.operation
        name = operation.name
        if name in _PHASE_OPS:
            try:
                turns = float(operation.params[0]) / (math.pi / 2)
            except (TypeError, ValueError):  # a parameter: not known to be Clifford
                return False
            if abs(turns - round(turns)) > 1e-9:
                return False
        elif name in _CONTROL_FLOW:
            if not all(_is_clifford(block) for block in operation.blocks):
                return False
        elif name not in _CLIFFORD_OPS:
            return False
    return True


def available_memory_bytes() -> int:
    """The memory available now (``MemAvailable`` on Linux, else physical memory)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 8 << 30


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f}"  # pragma: no cover


def _state_bytes(method: str, qubits: int) -> int | None:
    exponent = _STATE_EXPONENT.get(method)
    return None if exponent is None else _AMPLITUDE_BYTES << (exponent * qubits)


def choose_method(circuit: Any, method: str, limit_bytes: int) -> str:
    """The method to hand to Aer, or JobValidationError if the simulation cannot fit in
    ``limit_bytes``. ``automatic`` stays automatic while a statevector fits; a Clifford circuit
    too large for one runs with ``stabilizer``; any other circuit too large is refused."""
    qubits = int(circuit.num_qubits)
    planned = "statevector" if method == "automatic" else method
    need = _state_bytes(planned, qubits)
    if need is None or need <= limit_bytes:
        return method
    if method == "automatic" and _is_clifford(circuit):
        return "stabilizer"
    what = "is not a Clifford circuit, so " if method == "automatic" else ""
    raise LimitError(
        f"the circuit has {qubits} qubits and {what}simulating it with the {planned} method needs "
        f"{_size(need)} of memory, more than the {_size(limit_bytes)} the local simulator may use "
        f"({int(MEMORY_FRACTION * 100)}% of the memory available); use fewer qubits, or a method "
        "that needs less memory (config method='matrix_product_state')",
        MEMORY_LIMIT,
    )


def check_circuit(circuit: Any, method: str, limit_bytes: int | None = None) -> str:
    """Refuse (JobValidationError) a circuit over the loop or memory limit; else the method to use."""
    operations = unrolled_operations(circuit)
    if operations > MAX_UNROLLED_OPERATIONS:
        raise _loop_error(operations)
    if limit_bytes is None:
        limit_bytes = int(available_memory_bytes() * MEMORY_FRACTION)
    return choose_method(circuit, method, limit_bytes)


def gpu_build_installed() -> bool:
    """Whether a GPU build of qiskit-aer is installed (by its distribution name; no import)."""
    from importlib import metadata

    for name in _GPU_DISTRIBUTIONS:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        return True
    return False
