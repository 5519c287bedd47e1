"""The local simulator's simulation itself: a chunk of runs in, one outcome per run out.

The same code runs in the backend's process (cheap runs, on a thread) and in its worker processes
(:mod:`._local_worker`). It touches no state of the backend; what it keeps is per process:

* **Parse once.** A program's text is parsed once per process: the circuit, how
  its clbits map to registers and whether Aer runs its gates natively are kept in a bounded LRU
  cache keyed by the text (:data:`PARSE_CACHE_RUNS` programs, :data:`PARSE_CACHE_BYTES` of text).
  A failure to parse is kept too.
* **Transpile only when needed.** A circuit whose operations Aer runs natively goes to Aer as it
  is; one with gates Aer does not know (user-defined gates ...) is lowered once, and the lowered
  circuit is cached.
* **One Aer call per group.** The runs of a chunk are grouped by (shots, seed, method, device) and
  each group is one call of the simulator (Aer's own executor, a process-wide single thread, is not
  used: the call runs in the calling thread). A run with a seed is a group of its own, so its counts
  do not depend on what it was batched with. If a group's call raises, its runs are simulated one
  by one, so one failing circuit fails only its own run.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final, Literal

from ._local_limits import (
    MEMORY_FRACTION,
    MEMORY_LIMIT,
    LimitError,
    available_memory_bytes,
    check_circuit,
    expanded_cost,
)
from ._qiskit import as_circuit, error_message, is_circuit, qiskit_ready, start_qiskit_loader

__all__ = [
    "PARSE_CACHE_BYTES",
    "PARSE_CACHE_RUNS",
    "PARSE_ERROR",
    "SIMULATION_ERROR",
    "TOO_COSTLY",
    "Item",
    "Outcome",
    "metrics_of",
    "simulate_chunk",
]

Engine = Literal["aer", "reference"]
Counts = dict[str, dict[str, int]]

PARSE_ERROR: Final = "PARSE_ERROR"
SIMULATION_ERROR: Final = "SIMULATION_ERROR"
#: The code of an item not simulated because, parsed, it costs more than its ``max_cost``.
TOO_COSTLY: Final = "TOO_COSTLY"

#: The parse cache of each process keeps at most this many programs ...
PARSE_CACHE_RUNS: Final = 4096
#: ... and at most this much program text (UTF-8 characters).
PARSE_CACHE_BYTES: Final = 64 << 20


@dataclass(frozen=True, slots=True)
class Item:
    """One run of a chunk: what to simulate and how."""

    program: Any
    shots: int
    seed: int | None
    method: str
    device: str
    engine: Engine
    #: Simulate only if, parsed, it costs at most this (shots × operations × 2**qubits); else
    #: the outcome's code is :data:`TOO_COSTLY` (a run probed in-process, for a worker).
    max_cost: int | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the simulation of one run hands back (its circuit's metrics: :func:`metrics_of`)."""

    counts: Counts | None = None
    message: str | None = None
    code: str | None = None
    method: str | None = None


@dataclass(slots=True)
class _Prepared:
    """A parsed program and what its runs need of it."""

    circuit: Any
    registers: list[tuple[str, list[int]]]  # (name, clbit indices, least significant first)
    runnable: Any = None  # the circuit Aer is given (lowered if it had gates Aer lacks)
    known_metrics: dict[str, Any] | None = None

    @property
    def metrics(self) -> dict[str, Any]:
        if self.known_metrics is None:
            self.known_metrics = _metrics(self.circuit)
        return self.known_metrics


class _Cache:
    """A bounded LRU of prepared programs (or their parse error), keyed by the program's text."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, _Prepared | str] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, text: str) -> _Prepared | str | None:
        with self._lock:
            entry = self._entries.get(text)
            if entry is not None:
                self._entries.move_to_end(text)
            return entry

    def put(self, text: str, entry: _Prepared | str) -> None:
        with self._lock:
            if text in self._entries or len(text) > PARSE_CACHE_BYTES:
                return
            self._entries[text] = entry
            self._chars += len(text)
            while len(self._entries) > PARSE_CACHE_RUNS or self._chars > PARSE_CACHE_BYTES:
                old, _ = self._entries.popitem(last=False)
                self._chars -= len(old)


_CACHE = _Cache()
#: Aer's threads per simulation in this process (a worker sets it from its share of the cores).
_THREADS = int(os.environ.get("OQC_STYLE_SDK_AER_THREADS", "1") or 1)
_AER_NAMES: frozenset[str] | None = None
_SIMULATOR: Any = None
#: Aer's job ids (a label in its output): a count, not a random id (a system call) per call.
_AER_CALLS = itertools.count()


_MEMORY: list[float] = [0.0, -1.0]  # (limit in bytes, when read)


#: How long a reading of the available memory is used before it is read again.
_MEMORY_FRESH_S = 0.5


def _memory_limit() -> int:
    """The memory a simulation may plan to use, read at most every half second (a read of
    /proc/meminfo costs about as much as simulating a Bell pair)."""
    now = time.monotonic()
    if now - _MEMORY[1] > _MEMORY_FRESH_S:
        _MEMORY[:] = [available_memory_bytes() * MEMORY_FRACTION, now]
    return int(_MEMORY[0])


def memory_reading_fresh() -> bool:
    """Whether a chunk simulated now reads no file for its memory limit: the event loop's lane
    takes a chunk only then (a chunk in a thread reads it again)."""
    return time.monotonic() - _MEMORY[1] <= _MEMORY_FRESH_S


def _aer_names() -> frozenset[str]:
    global _AER_NAMES
    if _AER_NAMES is None:
        from qiskit_aer import AerSimulator

        _AER_NAMES = frozenset(AerSimulator().target.operation_names) | {"barrier"}
    return _AER_NAMES


def _operation_names(circuit: Any) -> set[str]:
    """Every operation name in the circuit, control-flow bodies included."""
    names: set[str] = set()
    for instruction in circuit.data:
        operation = instruction.operation
        names.add(operation.name)
        for block in getattr(operation, "blocks", ()):
            names |= _operation_names(block)
    return names


def _metrics(circuit: Any) -> dict[str, Any]:
    return {
        "num_qubits": int(circuit.num_qubits),
        "num_clbits": int(circuit.num_clbits),
        "depth": int(circuit.depth()),
        "size": int(circuit.size()),
        "gate_counts": {str(name): int(n) for name, n in circuit.count_ops().items()},
    }


def _prepare(circuit: Any) -> _Prepared:
    index = {clbit: i for i, clbit in enumerate(circuit.clbits)}
    registers = [(register.name, [index[bit] for bit in register]) for register in circuit.cregs]
    return _Prepared(circuit=circuit, registers=registers)


def _prepared(program: Any) -> _Prepared | str:
    """The prepared program, or the parser's message if it does not parse."""
    if is_circuit(program):
        return _prepare(program)
    entry = _CACHE.get(program)
    if entry is None:
        try:
            entry = _prepare(as_circuit(program))
        except Exception as exc:  # any failure to read the program is the program's fault
            entry = error_message(exc)
        _CACHE.put(program, entry)
    return entry


def _runnable(prepared: _Prepared) -> Any:
    if prepared.runnable is None:
        circuit = prepared.circuit
        if not _operation_names(circuit) <= _aer_names():
            import qiskit
            from qiskit_aer import AerSimulator

            # Gates Aer does not know (user-defined gates ...): lower them, once.
            circuit = qiskit.transpile(circuit, AerSimulator(), optimization_level=0)
        prepared.runnable = circuit
    return prepared.runnable


def _counts(raw: dict[str, int], registers: list[tuple[str, list[int]]]) -> Counts:
    """Aer's counts (hex of every clbit) per classical register, bitstrings sorted."""
    out: Counts = {}
    values = [(int(key, 16), n) for key, n in raw.items()]
    for name, positions in registers:
        hist: dict[str, int] = {}
        for value, n in values:
            bits = "".join("1" if value >> p & 1 else "0" for p in reversed(positions))
            hist[bits] = hist.get(bits, 0) + int(n)
        out[name] = dict(sorted(hist.items()))
    return out


def _aer_call(circuits: list[Any], shots: int, seed: int | None, method: str, device: str) -> Any:
    """One Aer simulation of ``circuits`` in this thread: its raw result dict."""
    global _SIMULATOR
    if _SIMULATOR is None:
        from qiskit_aer import AerSimulator

        _SIMULATOR = AerSimulator()
    # One thread: the cheap runs simulated in-process gain nothing from OpenMP's team (whose
    # start-up costs milliseconds on a busy machine), and each worker process has its own core.
    options: dict[str, Any] = {"shots": shots, "method": method, "device": device}
    if device == "CPU":
        options["max_parallel_threads"] = _THREADS
    if seed is not None:
        options["seed_simulator"] = seed
    execute = getattr(_SIMULATOR, "_execute_circuits_job", None)
    if execute is None:  # pragma: no cover - a qiskit-aer without it: its public (queued) path
        return _SIMULATOR.run(circuits, **options).result().to_dict()
    return execute(circuits, None, options, job_id=f"local-{next(_AER_CALLS)}", format_result=False)


def _aer_group(runs: list[tuple[int, Item, _Prepared, str]], out: list[Outcome | None]) -> None:
    first = runs[0][1]
    circuits = [_runnable(prepared) for _, _, prepared, _ in runs]
    try:
        output = _aer_call(circuits, first.shots, first.seed, runs[0][3], first.device)
        results = output["results"]
        if len(results) != len(runs):
            raise RuntimeError(f"Aer returned {len(results)} results for {len(runs)} circuits")
    except Exception as exc:
        if len(runs) > 1:  # find the culprit: each alone
            for run in runs:
                _aer_group([run], out)
            return
        i, _, prepared, _ = runs[0]
        out[i] = Outcome(message=error_message(exc), code=SIMULATION_ERROR)
        return
    for (i, _, prepared, _), result in zip(runs, results, strict=True):
        metadata = result.get("metadata") or {}
        used = metadata.get("method")
        if result.get("success"):
            counts = _counts(result.get("data", {}).get("counts", {}), prepared.registers)
            out[i] = Outcome(counts=counts, method=used)
        else:
            status = str(result.get("status") or output.get("status") or "simulation failed")
            code = MEMORY_LIMIT if "Insufficient memory" in status else SIMULATION_ERROR
            out[i] = Outcome(message=status.removeprefix("ERROR: "), code=code)


def _reference(item: Item, prepared: _Prepared) -> Outcome:
    from qiskit.primitives import StatevectorSampler

    if not prepared.registers:
        return Outcome(counts={}, method="reference")
    sampler = StatevectorSampler(seed=item.seed)
    try:
        data = sampler.run([prepared.circuit], shots=item.shots).result()[0].data
    except Exception as exc:
        return Outcome(message=error_message(exc), code=SIMULATION_ERROR)
    counts = {
        name: {bits: int(n) for bits, n in sorted(data[name].get_counts().items())}
        for name, _ in prepared.registers
    }
    return Outcome(counts=counts, method="reference")


def metrics_of(program: Any) -> dict[str, Any] | None:
    """The circuit metrics of a program (parsed once, cached), or None if it does not parse.

    Computed where asked (a run's diagnostics), not for every run simulated."""
    start_qiskit_loader()
    qiskit_ready.wait()
    prepared = _prepared(program)
    if isinstance(prepared, str):
        return None
    try:
        metrics = prepared.metrics
    except Exception:  # metrics of a circuit qiskit cannot measure: none
        return None
    return {**metrics, "gate_counts": dict(metrics["gate_counts"])}


def simulate_chunk(items: list[Item]) -> list[Outcome]:
    """Parse, check and simulate every run of a chunk; one outcome per item, in order. Never raises."""
    start_qiskit_loader()
    qiskit_ready.wait()
    out: list[Outcome | None] = [None] * len(items)
    memory = _memory_limit()
    groups: dict[tuple[int, int | None, str, str, int], list[tuple[int, Item, _Prepared, str]]] = {}
    for i, item in enumerate(items):
        prepared = _prepared(item.program)
        if isinstance(prepared, str):
            out[i] = Outcome(message=prepared, code=PARSE_ERROR)
            continue
        try:
            method = check_circuit(prepared.circuit, item.method, memory)
        except LimitError as exc:
            out[i] = Outcome(message=str(exc), code=exc.code)
            continue
        except Exception as exc:
            out[i] = Outcome(message=error_message(exc), code=SIMULATION_ERROR)
            continue
        if item.max_cost is not None:
            cost = expanded_cost(prepared.circuit, item.shots, _aer_names(), method)
            if cost is None or cost > item.max_cost:
                out[i] = Outcome(code=TOO_COSTLY)
                continue
        if not prepared.registers:  # nothing measured into a register: nothing to count
            out[i] = Outcome(counts={})
        elif item.engine == "reference":
            out[i] = _reference(item, prepared)
        else:
            solo = i if item.seed is not None else -1  # a seeded run is simulated alone
            groups.setdefault((item.shots, item.seed, method, item.device, solo), []).append(
                (i, item, prepared, method)
            )
    for runs in groups.values():
        try:
            _aer_group(runs, out)
        except Exception as exc:  # a bug here must fail these runs, not the chunk
            for i, *_ in runs:
                out[i] = Outcome(message=error_message(exc), code=SIMULATION_ERROR)
    return [o if o is not None else Outcome(message="not simulated", code=SIMULATION_ERROR) for o in out]
