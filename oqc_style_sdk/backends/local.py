"""The embedded local simulator: the SDK's default backend (no account, no network).

Design
------
* **One worker task per run, in the Sdk's task group.** :meth:`LocalBackend.submit` records the
  run as ``SUBMITTED`` (vendor status ``QUEUED``) and spawns a worker with
  ``task_group.start_soon``; nothing runs as a bare asyncio task, so closing the Sdk's task group
  stops every worker (a run still active then ends ``CANCELLED``).
* **A capacity limiter is the queue.** A worker waits for a slot of an ``anyio.CapacityLimiter``
  (``max_concurrency`` slots). On getting one the run becomes ``RUNNING``; it parses and samples
  the program in a worker thread (``anyio.to_thread.run_sync(..., abandon_on_cancel=True)``) so
  the event loop never blocks, then sleeps what remains of its minimum duration (measured from the
  start of the run: a stand-in for the time a device takes) and ends ``COMPLETED`` or ``FAILED``.
* **Status and cancel never suspend.** They read and change in-memory state only, so
  ``ref = await submit(...); await cancel(ref)`` always ends ``CANCELLED``. Cancelling a queued
  run cancels its worker's scope (it never runs); cancelling a running one abandons its thread (a
  simulation thread cannot be interrupted; its outcome is discarded when it ends) and cancels the
  min-duration sleep. The first terminal state wins: a late outcome never overwrites a
  cancellation, and cancelling a finished run changes nothing.
* **Parsing happens at run time**, not in :meth:`LocalBackend.validate`, which only does cheap
  checks (type, size, target, config). ``OPENQASM 3`` (or no header) goes to
  ``qiskit.qasm3.loads``; any other version goes to ``qiskit.qasm2.loads`` so that its own message
  surfaces (``OPENQASM 5.0`` fails with "can only handle OpenQASM 2.0, but given 5.0"). A run that
  fails to parse ends ``FAILED`` with code ``PARSE_ERROR``; one that fails to simulate with
  ``SIMULATION_ERROR``.
* **Sampling** uses a V2 sampler: ``qiskit_aer.primitives.SamplerV2`` when qiskit-aer is
  installed (engine ``"aer"``), else ``qiskit.primitives.StatevectorSampler`` (engine
  ``"reference"``). Results are counts per classical register, keyed by register name:
  ``{"c": {"00": 507, "11": 493}}``. Clbits in no register (QASM 3 ``bit b;``) are not reported.
* **qiskit is imported lazily**, so ``import oqc_style_sdk`` stays fast (qiskit and its samplers
  take about half a second to import). :meth:`LocalBackend.start` begins importing it in the
  background, in a daemon thread that never exits: qiskit's Rust extension crashes the process if
  the thread that first imported it has exited (anyio's worker threads exit when idle).
* Each run stays in memory (a slotted dataclass with counts, timings and circuit metrics, not the
  circuit) for later status, result and diagnostics reads. Run references carry the backend's
  instance id: a run is reachable only from the instance (so the process) that simulated it.
"""

from __future__ import annotations

import logging
import math
import operator
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, partial
from importlib import metadata
from typing import Any, Final, Literal, SupportsIndex, get_args
from uuid import uuid4

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from ..exceptions import (
    ConfigurationError,
    JobStateError,
    JobValidationError,
    NotFoundError,
    SdkNotStartedError,
    UnknownTargetError,
)
from ..state import JobState
from ._qiskit import (
    aer_available,
    as_circuit,
    error_message,
    is_circuit,
    qiskit_ready,
    start_qiskit_loader,
)
from .base import Backend, Diagnostics, Observation, RunRef, RunSpec

__all__ = [
    "CONFIG_KEYS",
    "DEFAULT_SHOTS",
    "INTERNAL_ERROR",
    "MAX_PROGRAM_BYTES",
    "MAX_SEED",
    "MAX_SHOTS",
    "PARSE_ERROR",
    "QPU_STAND_IN_TARGET",
    "SIMULATION_ERROR",
    "SIMULATOR_TARGET",
    "LocalBackend",
]

logger = logging.getLogger("oqc_style_sdk.backends.local")

#: The largest program accepted, in UTF-8 bytes.
MAX_PROGRAM_BYTES: Final = 1_000_000
#: Shots per run: 1 to this many.
MAX_SHOTS: Final = 1_000_000
#: Shots when the config names none.
DEFAULT_SHOTS: Final = 1000
#: Seeds are 0 to this (the simulators take a signed 64-bit seed).
MAX_SEED: Final = 2**63 - 1

#: The local simulator's own target.
SIMULATOR_TARGET: Final = "simulator"
#: OQC's published QPU id, run here on the same noiseless simulator so OQC code runs offline.
QPU_STAND_IN_TARGET: Final = "qpu:uk:2:d865b5a184"

#: The keys a run's config may have.
CONFIG_KEYS: Final = ("shots", "seed", "min_duration_s")

Engine = Literal["aer", "reference"]
SimulatorChoice = Literal["auto", "aer", "reference"]
Counts = dict[str, dict[str, int]]

_VENDOR_STATUS: Final[Mapping[JobState, str]] = {
    JobState.SUBMITTED: "QUEUED",
    JobState.RUNNING: "RUNNING",
    JobState.COMPLETED: "COMPLETED",
    JobState.FAILED: "FAILED",
    JobState.CANCELLED: "CANCELLED",
}

#: Observation codes of FAILED runs: the program did not parse; it parsed but did not simulate;
#: a bug in this module (should never happen).
PARSE_ERROR: Final = "PARSE_ERROR"
SIMULATION_ERROR: Final = "SIMULATION_ERROR"
INTERNAL_ERROR: Final = "INTERNAL_ERROR"


# --------------------------------------------------------------------------------------------------
# The simulation itself (runs in a worker thread; touches no shared state)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one simulation thread hands back to its worker."""

    counts: Counts | None = None
    metrics: dict[str, Any] | None = None
    message: str | None = None
    code: str | None = None


@cache
def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _metrics(circuit: Any) -> dict[str, Any]:
    return {
        "num_qubits": int(circuit.num_qubits),
        "num_clbits": int(circuit.num_clbits),
        "depth": int(circuit.depth()),
        "size": int(circuit.size()),
        "gate_counts": {str(name): int(n) for name, n in circuit.count_ops().items()},
    }


def _operation_names(circuit: Any) -> set[str]:
    """Every operation name in the circuit, control-flow bodies included."""
    names: set[str] = set()
    for instruction in circuit.data:
        operation = instruction.operation
        names.add(operation.name)
        for block in getattr(operation, "blocks", ()):
            names |= _operation_names(block)
    return names


@cache
def _aer_operation_names() -> frozenset[str]:
    from qiskit_aer import AerSimulator

    return frozenset(AerSimulator().target.operation_names) | {"barrier"}


def _sample(circuit: Any, shots: int, seed: int | None, engine: Engine) -> Counts:
    """Counts per classical register, bitstrings sorted."""
    registers = [register.name for register in circuit.cregs]
    if not registers:  # nothing measured into a register: nothing to count (and no sampler warning)
        return {}
    if engine == "aer":
        import qiskit
        from qiskit_aer import AerSimulator
        from qiskit_aer.primitives import SamplerV2

        if not _operation_names(circuit) <= _aer_operation_names():
            # Gates Aer does not know (user-defined gates, global_phase ...): lower them first.
            circuit = qiskit.transpile(circuit, AerSimulator(), optimization_level=0)
        sampler: Any = SamplerV2(seed=seed)
    else:
        from qiskit.primitives import StatevectorSampler

        sampler = StatevectorSampler(seed=seed)
    data = sampler.run([circuit], shots=shots).result()[0].data
    return {name: {bits: int(n) for bits, n in sorted(data[name].get_counts().items())} for name in registers}


def _simulate(program: Any, shots: int, seed: int | None, engine: Engine) -> _Outcome:
    """Parse and sample one program. Runs in a worker thread; never raises."""
    start_qiskit_loader()
    qiskit_ready.wait()
    try:
        circuit = as_circuit(program)
    except Exception as exc:  # any failure to read the program is the program's fault
        return _Outcome(message=error_message(exc), code=PARSE_ERROR)
    try:
        metrics = _metrics(circuit)
    except Exception as exc:
        return _Outcome(message=error_message(exc), code=SIMULATION_ERROR)
    try:
        counts = _sample(circuit, shots, seed, engine)
    except Exception as exc:
        return _Outcome(metrics=metrics, message=error_message(exc), code=SIMULATION_ERROR)
    return _Outcome(counts=counts, metrics=metrics)


# --------------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------------


def _as_int(value: object) -> int | None:
    """``value`` as an int if it is an integer (bool is not), else None."""
    if isinstance(value, bool) or not isinstance(value, SupportsIndex):
        return None
    return operator.index(value)


def _as_duration(value: object) -> float | None:
    """``value`` as a finite non-negative float if it is one (bool is not), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    duration = float(value)
    return duration if math.isfinite(duration) and duration >= 0 else None


def _as_seed(value: object) -> tuple[bool, int | None]:
    """(ok, seed) for a seed setting: None or an int in 0..MAX_SEED."""
    if value is None:
        return True, None
    seed = _as_int(value)
    if seed is None or not 0 <= seed <= MAX_SEED:
        return False, None
    return True, seed


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# --------------------------------------------------------------------------------------------------
# The backend
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Task:
    """One run and everything later reads need. The parsed circuit is not kept."""

    task_id: str
    ref: RunRef
    spec: RunSpec
    shots: int
    seed: int | None
    min_duration_s: float
    submitted_at: datetime
    submitted_clock: float
    state: JobState = JobState.SUBMITTED
    scope: anyio.CancelScope | None = None
    started_at: datetime | None = None
    started_clock: float | None = None
    ended_at: datetime | None = None
    ended_clock: float | None = None
    counts: Counts | None = None
    metrics: dict[str, Any] | None = None
    message: str | None = None
    code: str | None = None
    cancel_reason: str | None = None


class LocalBackend(Backend):
    """The embedded local simulator: OpenQASM 2/3 programs sampled in worker threads.

    :param max_concurrency: how many runs simulate at once (default: the CPU count); others queue.
    :param min_duration_s: the shortest a run lasts from its start, to mimic a device (default 0).
        A run's config key ``min_duration_s`` overrides it.
    :param seed: the sampler seed of runs whose config has none (default: unseeded).
    :param simulator: ``"aer"`` (qiskit-aer's SamplerV2; it must be installed), ``"reference"``
        (qiskit's StatevectorSampler) or ``"auto"`` (aer when installed, else reference).
    """

    name = "local"
    default_target = SIMULATOR_TARGET
    runs_outlive_process = False  # a simulation ends with its process
    min_poll_interval_s = 0.02
    max_poll_interval_s = 0.5
    status_reads_per_s = None  # in-process: no vendor to spare

    def __init__(
        self,
        *,
        max_concurrency: int | None = None,
        min_duration_s: float = 0.0,
        seed: int | None = None,
        simulator: SimulatorChoice = "auto",
    ) -> None:
        if max_concurrency is None:
            max_concurrency = os.cpu_count() or 2
        concurrency = _as_int(max_concurrency)
        if concurrency is None or concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be a positive int, got {max_concurrency!r}")
        duration = _as_duration(min_duration_s)
        if duration is None:
            raise ConfigurationError(
                f"min_duration_s must be a finite number >= 0 (seconds), got {min_duration_s!r}"
            )
        seed_ok, backend_seed = _as_seed(seed)
        if not seed_ok:
            raise ConfigurationError(f"seed must be None or an int in 0..2**63-1, got {seed!r}")
        if simulator not in get_args(SimulatorChoice):
            raise ConfigurationError(f"simulator must be 'auto', 'aer' or 'reference', got {simulator!r}")
        aer = aer_available()
        if simulator == "aer" and not aer:
            raise ConfigurationError(
                "simulator='aer' needs qiskit-aer, which is not installed: "
                "pip install 'oqc-style-sdk[aer]', or use simulator='reference'"
            )
        self.instance_id: str = uuid4().hex
        self._max_concurrency = concurrency
        self._min_duration_s = duration
        self._seed = backend_seed
        self._engine: Engine = "aer" if aer and simulator in ("auto", "aer") else "reference"
        self._task_group: TaskGroup | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._closed = False
        self._tasks: dict[str, _Task] = {}
        self._by_key: dict[str, str] = {}

    def __repr__(self) -> str:
        return (
            f"LocalBackend(engine={self._engine!r}, max_concurrency={self._max_concurrency}, "
            f"instance_id={self.instance_id!r})"
        )

    # -- settings --------------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The sampler in use: ``"aer"`` or ``"reference"``."""
        return self._engine

    @property
    def max_concurrency(self) -> int:
        """How many runs simulate at once."""
        return self._max_concurrency

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, task_group: TaskGroup) -> None:
        """Remember the task group that will hold the workers, and create the run queue."""
        self._task_group = task_group
        start_qiskit_loader()  # warm up (in the background) so the first run does not wait
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._max_concurrency)
        self._closed = False

    async def aclose(self) -> None:
        """Refuse new runs. The task group's owner cancels workers still going."""
        self._closed = True

    def identity(self) -> dict[str, str]:
        """Local jobs load into any local Sdk; :meth:`can_resume` decides about active ones."""
        return {"backend": "local"}

    # -- validation ------------------------------------------------------------------------------

    def validate(self, spec: RunSpec) -> RunSpec:
        """Check and normalise a spec without I/O and without parsing the program.

        Raises JobValidationError for a program that is neither a ``QuantumCircuit`` nor a
        non-empty ``str`` of at most :data:`MAX_PROGRAM_BYTES` UTF-8 bytes, UnknownTargetError for
        an unknown target, and JobValidationError for a config that is not a mapping of ``shots``
        (int, 1..1_000_000, default 1000), ``seed`` (int in 0..2**63-1, or None) and
        ``min_duration_s`` (seconds >= 0).
        """
        program = spec.program
        if not is_circuit(program):  # a circuit has every parameter bound (oqc_style_sdk.programs)
            if not isinstance(program, str):
                raise JobValidationError(
                    "the local simulator runs OpenQASM 2 or 3 source text (str) or a qiskit "
                    f"QuantumCircuit; got {type(program).__name__}"
                )
            if not program.strip():
                raise JobValidationError("the program is empty")
            self._check_size(program)

        target = self.default_target if spec.target is None else spec.target
        if not isinstance(target, str):
            raise JobValidationError(f"target must be a str, got {type(target).__name__}")
        known = [SIMULATOR_TARGET, QPU_STAND_IN_TARGET]
        if target not in known:
            raise UnknownTargetError(target, known)

        config = self._normalise_config(spec.config)
        return RunSpec(program=program, target=target, config=config, tag=spec.tag)

    @staticmethod
    def _check_size(program: str) -> None:
        limit = MAX_PROGRAM_BYTES
        if len(program) * 4 <= limit:  # a character is at most 4 bytes: surely small enough
            return
        try:
            size = len(program) if len(program) > limit else len(program.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise JobValidationError(f"the program is not valid Unicode text: {exc}") from None
        if size > limit:
            raise JobValidationError(
                f"the program is over {limit:,} bytes of UTF-8 (MAX_PROGRAM_BYTES), "
                "the most the local simulator accepts"
            )

    @staticmethod
    def _normalise_config(config: object) -> dict[str, Any]:
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise JobValidationError(f"config must be a mapping (dict), got {type(config).__name__}")
        unknown = [key for key in config if key not in CONFIG_KEYS]
        if unknown:
            raise JobValidationError(
                f"unknown config key(s) {', '.join(repr(k) for k in unknown)} for the local "
                f"simulator; allowed keys: {', '.join(CONFIG_KEYS)}"
            )
        out: dict[str, Any] = {}
        raw_shots = config.get("shots", DEFAULT_SHOTS)
        shots = _as_int(raw_shots)
        if shots is None or not 1 <= shots <= MAX_SHOTS:
            raise JobValidationError(
                f"config 'shots' must be an int from 1 to {MAX_SHOTS:,}, got {raw_shots!r}"
            )
        out["shots"] = shots
        if "seed" in config:
            seed_ok, seed = _as_seed(config["seed"])
            if not seed_ok:
                raise JobValidationError(
                    f"config 'seed' must be None or an int in 0..2**63-1, got {config['seed']!r}"
                )
            out["seed"] = seed
        if "min_duration_s" in config:
            duration = _as_duration(config["min_duration_s"])
            if duration is None:
                raise JobValidationError(
                    "config 'min_duration_s' must be a finite number >= 0 (seconds), "
                    f"got {config['min_duration_s']!r}"
                )
            out["min_duration_s"] = duration
        return out

    # -- runs ------------------------------------------------------------------------------------

    async def submit(self, spec: RunSpec, idempotency_key: str) -> RunRef:
        """Queue a run and spawn its worker. The same key on this instance gives the same ref."""
        if self._task_group is None or self._limiter is None or self._closed:
            state = "closed" if self._closed else "not started"
            raise SdkNotStartedError(
                f"the local backend is {state}; use it inside `async with Sdk() as sdk:`"
            )
        known_id = self._by_key.get(idempotency_key)
        if known_id is not None:
            return self._tasks[known_id].ref
        spec = self.validate(spec)
        config = spec.config
        seed = config.get("seed")
        task_id = str(uuid4())
        task = _Task(
            task_id=task_id,
            ref=RunRef(task_id, extra={"instance": self.instance_id}),
            spec=spec,
            shots=config["shots"],
            seed=self._seed if seed is None else seed,
            min_duration_s=config.get("min_duration_s", self._min_duration_s),
            submitted_at=_utcnow(),
            submitted_clock=anyio.current_time(),
            scope=anyio.CancelScope(),
        )
        self._tasks[task_id] = task
        self._by_key[idempotency_key] = task_id
        self._task_group.start_soon(self._work, task, name=f"local run {task_id}")
        logger.debug("queued local run %s (shots=%d)", task_id, task.shots)
        return task.ref

    async def status(self, ref: RunRef) -> Observation:
        """The run's state from memory (never suspends)."""
        task = self._lookup(ref)
        state = task.state
        return Observation(
            state=state,
            vendor_status=_VENDOR_STATUS[state],
            message=task.cancel_reason if state is JobState.CANCELLED else task.message,
            code=task.code if state is JobState.FAILED else None,
            ended_at=task.ended_at,
        )

    async def cancel(self, ref: RunRef, reason: str | None = None) -> None:
        """Cancel a queued or running run at once (never suspends); a finished run is left as is."""
        task = self._lookup(ref)
        if task.state.is_terminal:
            return
        was_running = task.state is JobState.RUNNING
        task.cancel_reason = reason
        if task.scope is not None:
            task.scope.cancel()
        self._finish(task, JobState.CANCELLED)
        logger.debug("cancelled local run %s while %s", task.task_id, "running" if was_running else "queued")

    async def result(self, ref: RunRef, spec: RunSpec) -> Counts:
        """A copy of the completed run's counts per classical register."""
        task = self._lookup(ref)
        if task.state is not JobState.COMPLETED or task.counts is None:
            raise JobStateError(
                f"local run {task.task_id} is {task.state.value}: only a COMPLETED run has results"
            )
        return {register: dict(counts) for register, counts in task.counts.items()}

    async def diagnostics(self, ref: RunRef, spec: RunSpec) -> Diagnostics:
        """Timings (UTC), circuit metrics (None if the program did not parse) and metadata."""
        task = self._lookup(ref)

        def span(start: float | None, end: float | None) -> float | None:
            return None if start is None or end is None else max(0.0, end - start)

        queue_end = task.started_clock if task.started_clock is not None else task.ended_clock
        timings = {
            "submitted_at": _iso(task.submitted_at),
            "started_at": _iso(task.started_at),
            "ended_at": _iso(task.ended_at),
            "queue_s": span(task.submitted_clock, queue_end),
            "run_s": span(task.started_clock, task.ended_clock),
            "total_s": span(task.submitted_clock, task.ended_clock),
        }
        metrics = None
        if task.metrics is not None:
            metrics = {**task.metrics, "gate_counts": dict(task.metrics["gate_counts"])}
        metadata = {
            "engine": self._engine,
            "qiskit_version": _version("qiskit"),
            "qiskit_aer_version": _version("qiskit-aer"),
            "shots": task.shots,
            "seed": task.seed,
            "target": task.spec.target,
            "cancel_reason": task.cancel_reason,
        }
        return Diagnostics(timings=timings, metrics=metrics, metadata=metadata)

    async def list_targets(self) -> list[dict[str, Any]]:
        """The simulator and a noiseless stand-in for OQC's QPU; both run the same simulator."""
        return [
            {
                "id": SIMULATOR_TARGET,
                "name": "Simulator",
                "status": "ACTIVE",
                "active": True,
                "kind": "simulator",
                "engine": self._engine,
                "backend": "local",
            },
            {
                "id": QPU_STAND_IN_TARGET,
                "name": f"{QPU_STAND_IN_TARGET} (local stand-in)",
                "status": "ACTIVE",
                "active": True,
                "kind": "stand-in",
                "engine": self._engine,
                "backend": "local",
                "description": "noiseless local simulation standing in for OQC's QPU of this id",
            },
        ]

    def can_resume(self, ref: RunRef) -> bool:
        """Only runs of this very instance can be followed: a simulation ends with its process."""
        return ref.extra.get("instance") == self.instance_id and ref.task_id in self._tasks

    def describe_unresumable(self, ref: RunRef) -> str:
        return (
            f"run {ref.task_id} was simulated by the local simulator of another process (or "
            "another Sdk), and its simulation ended with it; call execute() again to start a "
            "fresh run"
        )

    # -- internals -------------------------------------------------------------------------------

    def _lookup(self, ref: RunRef) -> _Task:
        instance = ref.extra.get("instance")
        if instance is not None and instance != self.instance_id:
            raise NotFoundError(
                f"local run {ref.task_id} belongs to another local simulator instance "
                f"({instance}), not this one ({self.instance_id}); local runs live only in the "
                "process and Sdk that submitted them"
            )
        task = self._tasks.get(ref.task_id)
        if task is None:
            raise NotFoundError(f"the local simulator has no run {ref.task_id!r}")
        return task

    def _changed(self, task: _Task) -> None:
        try:
            self._notify_change(task.task_id)
        except Exception:  # a broken listener must not break the run or the caller
            logger.exception("change listener failed for local run %s", task.task_id)

    def _finish(
        self,
        task: _Task,
        state: JobState,
        *,
        counts: Counts | None = None,
        message: str | None = None,
        code: str | None = None,
    ) -> None:
        """Move an active run to a terminal state (the first terminal state wins)."""
        if task.state.is_terminal:
            return
        task.state = state
        task.counts = counts
        task.message = message
        task.code = code
        task.ended_at = _utcnow()
        task.ended_clock = anyio.current_time()
        task.scope = None
        self._changed(task)

    async def _work(self, task: _Task) -> None:
        """Queue, run and finish one task. Never raises except for its own cancellation."""
        scope = task.scope
        try:
            if scope is None or task.state.is_terminal:  # cancelled before the worker started
                return
            with scope:
                await self._run(task)
        except Exception as exc:  # a bug here must not take down the Sdk's task group
            logger.exception("local run %s failed unexpectedly", task.task_id)
            self._finish(task, JobState.FAILED, message=f"internal error: {exc!r}", code=INTERNAL_ERROR)
        finally:
            if task.state.is_active:  # the task group was cancelled: the backend shut down
                task.cancel_reason = "the local simulator shut down before the run ended"
                self._finish(task, JobState.CANCELLED)

    async def _run(self, task: _Task) -> None:
        assert self._limiter is not None
        async with self._limiter:
            if task.state.is_terminal:
                return
            task.state = JobState.RUNNING
            task.started_at = _utcnow()
            started = task.started_clock = anyio.current_time()
            self._changed(task)
            simulate = partial(_simulate, task.spec.program, task.shots, task.seed, self._engine)
            outcome = await anyio.to_thread.run_sync(simulate, abandon_on_cancel=True)
            if task.state.is_terminal:  # cancelled meanwhile: the outcome is discarded
                return
            task.metrics = outcome.metrics
            remaining = task.min_duration_s - (anyio.current_time() - started)
            if remaining > 0:
                await anyio.sleep(remaining)
            if outcome.code is None:
                self._finish(task, JobState.COMPLETED, counts=outcome.counts)
            else:
                logger.debug("local run %s failed: %s", task.task_id, outcome.message)
                self._finish(task, JobState.FAILED, message=outcome.message, code=outcome.code)
