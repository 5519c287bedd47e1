"""The embedded local simulator: the SDK's default backend (no account, no network).

Design (docs/local.md says it for users)
-----------------------------------------
* **A queue and one dispatcher.** :meth:`LocalBackend.submit` records the run as ``SUBMITTED``
  (vendor status ``QUEUED``) and appends it to the queue; nothing else happens in the caller's task.
  One dispatcher task (in the Sdk's task group) takes the queue's head in **chunks** and hands each
  chunk to a lane; a chunk is one simulation (an Aer call per group of its runs, see
  :mod:`._local_sim`). Runs submitted close together (a composite's children, jobs of one loop
  iteration) share chunks; chunks are sized so the first results come early (about
  ``chunk_target_s`` of simulation each) and a queue is shared among the workers. A chunk of tiny
  runs simulated on the event loop, with no minimum duration to wait out, is run by the dispatcher
  itself in its turn of the loop (:meth:`LocalBackend._run_at_once`): no task, no await.
* **Readings as they happen.** Every change of a run is told to the change listener (the poller),
  and :meth:`LocalBackend.peek` gives its reading from memory: a waiting job is handed it at once.
* **Two lanes.** A *cheap* run (a bound on its work, shots × operations × 2**qubits, at most
  :data:`~._local_limits.INLINE_COST_LIMIT`: a few milliseconds) is simulated in this process on a
  thread: no process round trip for a Bell job. Everything else, and a queue of cheap runs worth
  more than ``worker_worth_s`` of simulation, goes to the backend's **worker processes**
  (:mod:`._local_worker`: started when first wanted, one per core up to ``max_concurrency``,
  killed when the Sdk closes), so a composite uses every core and the GIL binds neither parsing nor
  Aer's Python side.
* **max_concurrency** bounds the simulations (chunks) under way at once; a chunk holds its slot
  until every run in it has ended, minimum durations included.
* **Cancelling** a queued run drops it from the queue. Cancelling a running run ends it
  ``CANCELLED`` at once (status and cancel never suspend); if its chunk is still simulating in a
  worker, that worker is killed (its CPU stops at once) and the chunk's other runs go back to the
  head of the queue, still ``RUNNING``. A cheap run on the in-process lane is left to finish (it
  takes milliseconds) and its outcome is discarded. The first terminal state wins.
* **Limits** (:mod:`._local_limits`): ``create_job`` refuses a program whose ``for`` loops unroll to
  more than ``MAX_UNROLLED_OPERATIONS``, and a circuit whose simulation cannot fit in memory; what
  only the parsed circuit tells is checked when the run starts (``FAILED``, code ``LOOP_LIMIT`` or
  ``MEMORY_LIMIT``) before anything is allocated.
* **Parsing happens at run time**, once per program text and process (a bounded cache), not in
  :meth:`LocalBackend.validate`. ``OPENQASM 3`` (or no header) goes to ``qiskit.qasm3.loads``; any
  other version goes to ``qiskit.qasm2.loads`` so that its own message surfaces. A run that fails
  to parse ends ``FAILED`` with code ``PARSE_ERROR``; one that fails to simulate with
  ``SIMULATION_ERROR``. Results are counts per classical register: ``{"c": {"00": 507, ...}}``.
* **qiskit is imported lazily**, so ``import oqc_style_sdk`` stays fast. :meth:`LocalBackend.start`
  begins importing it in the background, in a daemon thread that never exits (see ``_qiskit``).
* Each run stays in memory (a slotted dataclass with counts, timings and circuit metrics, not the
  circuit) for later status, result and diagnostics reads. Run references carry the backend's
  instance id: a run is reachable only from the instance (so the process) that simulated it.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, partial
from importlib import metadata
from typing import Any, Final, Literal, get_args
from uuid import UUID, uuid4

import anyio
import anyio.lowlevel
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
from ._local_config import (
    CONFIG_KEYS,
    DEFAULT_SHOTS,
    MAX_PROGRAM_BYTES,
    MAX_SEED,
    MAX_SHOTS,
    as_duration,
    as_int,
    as_seed,
    check_size,
    normalise_config,
)
from ._local_limits import (
    INLINE_COST_LIMIT,
    check_circuit,
    check_loops_in_text,
    circuit_cost,
    text_cost,
)
from ._local_sim import (
    PARSE_ERROR,
    SIMULATION_ERROR,
    TOO_COSTLY,
    Item,
    Outcome,
    memory_reading_fresh,
    metrics_of,
    simulate_chunk,
)
from ._local_worker import Worker, WorkerLost, WorkerPool
from ._qiskit import aer_available, is_circuit, start_qiskit_loader
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
    "SCHEDULE",
    "SIMULATION_ERROR",
    "SIMULATOR_TARGET",
    "LocalBackend",
    "Schedule",
]

logger = logging.getLogger("oqc_style_sdk.backends.local")

#: The local simulator's own target.
SIMULATOR_TARGET: Final = "simulator"
#: OQC's published QPU id, run here on the same noiseless simulator so OQC code runs offline.
QPU_STAND_IN_TARGET: Final = "qpu:uk:2:d865b5a184"


@dataclass(frozen=True, slots=True)
class Schedule:
    """How the dispatcher sizes chunks and picks lanes (:data:`SCHEDULE`; docs/local.md).

    A chunk simulates about ``chunk_target_s`` (from the measured time per run), so the first
    results come early; it holds at most ``max_chunk_runs`` runs, and a worker is sent at least
    ``min_chunk_runs`` while the queue has more (a round trip costs about a millisecond). Queued
    cheap runs worth more than ``worker_worth_s`` of simulation go to the worker processes; while
    none is running, more than ``worker_start_s`` starts them (a start costs 1-3 s of CPU). A text
    program of at most ``probe_max_chars`` whose text does not bound its work (gate definitions,
    loops; not a ``while``) is parsed in this process to learn whether it is cheap after all. An
    in-process chunk holds at most ``inline_max_runs`` runs; one of runs each of a known cost of at
    most ``on_loop_max_cost`` (a 1 000-shot Bell job: about 30 000) and predicted to take at most
    ``on_loop_s`` in all is simulated on the event loop (a thread hop costs about as much as a Bell
    job's simulation), by the dispatcher itself when no run of it has a minimum duration.
    """

    chunk_target_s: float = 0.1
    chunk_runs: tuple[int, int] = (16, 512)  # (min_chunk_runs, max_chunk_runs)
    worker_s: tuple[float, float] = (0.05, 1.0)  # (worker_worth_s, worker_start_s)
    probe_max_chars: int = 20_000
    inline_max_runs: int = 64
    on_loop_s: float = 0.005
    on_loop_max_cost: int = 200_000

    def worker_threshold_s(self, started: bool) -> float:
        """The queued work that goes to workers: ``worker_worth_s`` once any is running."""
        return self.worker_s[0] if started else self.worker_s[1]


SCHEDULE: Final = Schedule()

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

#: Observation code of a bug in this module (should never happen). PARSE_ERROR (the program did
#: not parse) and SIMULATION_ERROR (it parsed but did not simulate) come from ``_local_sim``;
#: LOOP_LIMIT and MEMORY_LIMIT from ``_local_limits``.
INTERNAL_ERROR: Final = "INTERNAL_ERROR"
_SHUT_DOWN: Final = "the local simulator shut down before the run ended"

#: Run ids and keys: 128 random bits each from a generator seeded by the OS (anew in a forked
#: child), not a system call per run (which costs as much as a tenth of a Bell job here).
_IDS = random.Random()
os.register_at_fork(after_in_child=_IDS.seed)


# --------------------------------------------------------------------------------------------------
# The simulation itself (runs in a worker thread or process; touches no shared state)
# --------------------------------------------------------------------------------------------------


@cache
def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _simulate(items: list[Item]) -> list[Outcome]:
    """Simulate a chunk in this process (the in-process lane; runs in a worker thread)."""
    return simulate_chunk(items)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# --------------------------------------------------------------------------------------------------
# The backend
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Task:
    """One run and everything later reads need. The parsed circuit is not kept (its metrics are
    computed when diagnostics ask, from the program, parsed once per process)."""

    task_id: str
    ref: RunRef
    spec: RunSpec
    shots: int
    seed: int | None
    min_duration_s: float
    submitted_at: datetime
    submitted_clock: float
    #: A bound on its simulation work when it is cheap enough for the in-process lane, else None.
    cost: int | None = None
    #: Not known cheap, but worth parsing in this process to learn (see SCHEDULE.probe_max_chars).
    probe: bool = False
    state: JobState = JobState.SUBMITTED
    chunk: _Chunk | None = None
    #: Simulated alone (after a worker crashed on a chunk holding it).
    solo: bool = False
    started_at: datetime | None = None
    started_clock: float | None = None
    ended_at: datetime | None = None
    ended_clock: float | None = None
    counts: Counts | None = None
    message: str | None = None
    code: str | None = None
    cancel_reason: str | None = None
    method: str | None = None
    lane: str | None = None
    worker_pid: int | None = None
    batch_size: int | None = None
    #: Its status as last read, shared by every read until it changes (:meth:`LocalBackend._changed`).
    observation: Observation | None = None


@dataclass(slots=True, eq=False)
class _Chunk:
    """Runs simulated together: one simulation, one slot of ``max_concurrency``."""

    tasks: list[_Task]
    worker: Worker | None
    changed: anyio.Event = field(default_factory=anyio.Event)
    simulating: bool = True


class LocalBackend(Backend):
    """The embedded local simulator: OpenQASM 2/3 programs (or circuits) sampled by qiskit-aer.

    :param max_concurrency: how many simulations (chunks of runs) go on at once, and the most
        worker processes (default: the CPU count; workers are at most one per core); others queue.
    :param min_duration_s: the shortest a run lasts from its start, to mimic a device (default 0).
        A run's config key ``min_duration_s`` overrides it.
    :param seed: the sampler seed of runs whose config has none (default: unseeded).
    :param simulator: ``"aer"`` (qiskit-aer; it must be installed), ``"reference"`` (qiskit's
        StatevectorSampler) or ``"auto"`` (aer when installed, else reference).
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
        cpus = os.cpu_count() or 2
        if max_concurrency is None:
            max_concurrency = cpus
        concurrency = as_int(max_concurrency)
        if concurrency is None or concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be a positive int, got {max_concurrency!r}")
        duration = as_duration(min_duration_s)
        if duration is None:
            raise ConfigurationError(
                f"min_duration_s must be a finite number >= 0 (seconds), got {min_duration_s!r}"
            )
        seed_ok, backend_seed = as_seed(seed)
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
        #: The spec :meth:`validate` returned last: submitted as it is, not validated again.
        self._validated: RunSpec | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._closed = False
        self._tasks: dict[str, _Task] = {}
        self._by_key: dict[str, str] = {}
        self._queue: deque[_Task] = deque()
        self._wake: anyio.Event | None = None
        self._pool = WorkerPool(min(concurrency, cpus), self._poke)
        self._inline_busy = False
        # Measured seconds of simulation per run, in-process and in a worker (moving averages).
        self._inline_run_s = 0.001
        self._worker_run_s = 0.001
        self._measured: set[str] = set()  # the lanes whose first (warm-up) chunk has been seen
        # A composite's children are queued in one step (submit_many) and followed together
        # (statuses reads them all in one pass): no task per child. Only with this class's own
        # submit, which never suspends; a subclass whose submit may wait (a test's gate) keeps
        # the per-child path, where one hanging submission holds up no other child.
        own = type(self).submit is LocalBackend.submit
        self.batch_submit = own
        self.batch_status = own

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
        """How many simulations go on at once."""
        return self._max_concurrency

    def worker_pids(self) -> list[int]:
        """The process ids of this backend's live worker processes (none until first wanted)."""
        return self._pool.pids()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, task_group: TaskGroup) -> None:
        """Remember the task group that will hold the dispatcher, chunks and worker start-ups."""
        self._task_group = task_group
        start_qiskit_loader()  # warm up (in the background) so the first run does not wait
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._max_concurrency)
        self._wake = anyio.Event()
        self._closed = False
        self._pool.bind(task_group)
        task_group.start_soon(self._dispatch, name="local simulator dispatcher")

    async def aclose(self) -> None:
        """Refuse new runs and kill the worker processes. The task group's owner cancels the rest."""
        self._closed = True
        self._pool.close()
        self._poke()  # the dispatcher ends, cancelling the runs still active

    def identity(self) -> dict[str, str]:
        """Local jobs load into any local Sdk; :meth:`can_resume` decides about active ones."""
        return {"backend": "local"}

    # -- validation ------------------------------------------------------------------------------

    def validate(self, spec: RunSpec) -> RunSpec:
        """Check and normalise a spec without I/O and without parsing the program.

        Raises JobValidationError for a program that is neither a ``QuantumCircuit`` nor a
        non-empty ``str`` of at most :data:`MAX_PROGRAM_BYTES` UTF-8 bytes, or whose ``for`` loops
        (of literal bounds) unroll to more than ``MAX_UNROLLED_OPERATIONS`` statements (a circuit:
        also one whose simulation cannot fit in memory); UnknownTargetError for an unknown target;
        and JobValidationError for a config that is not a mapping of ``shots`` (int,
        1..1_000_000, default 1000), ``seed`` (int in 0..2**63-1, or None), ``min_duration_s``
        (seconds >= 0), ``method`` (an Aer method) and ``device`` (``CPU`` or ``GPU``).
        """
        config = normalise_config(spec.config, self._engine)
        program = spec.program
        if is_circuit(program):  # a circuit has every parameter bound (oqc_style_sdk.programs)
            check_circuit(program, config.get("method", "automatic"))
        else:
            if not isinstance(program, str):
                raise JobValidationError(
                    "the local simulator runs OpenQASM 2 or 3 source text (str) or a qiskit "
                    f"QuantumCircuit; got {type(program).__name__}"
                )
            if not program.strip():
                raise JobValidationError("the program is empty")
            check_size(program)
            check_loops_in_text(program)

        target = self.default_target if spec.target is None else spec.target
        if not isinstance(target, str):
            raise JobValidationError(f"target must be a str, got {type(target).__name__}")
        known = [SIMULATOR_TARGET, QPU_STAND_IN_TARGET]
        if target not in known:
            raise UnknownTargetError(target, known)
        valid = self._validated = RunSpec(program=program, target=target, config=config, tag=spec.tag)
        return valid

    def local_idempotency_key(self, spec: RunSpec) -> str | None:
        """A new run's key, with no system call (keys are kept, and unique, per instance)."""
        return f"{_IDS.getrandbits(128):032x}"

    # -- runs ------------------------------------------------------------------------------------

    async def submit(self, spec: RunSpec, idempotency_key: str) -> RunRef:
        """Queue a run. The same key on this instance gives the same ref. Never suspends."""
        if self._task_group is None or self._limiter is None or self._closed:
            state = "closed" if self._closed else "not started"
            raise SdkNotStartedError(
                f"the local backend is {state}; use it inside `async with Sdk() as sdk:`"
            )
        known_id = self._by_key.get(idempotency_key)
        if known_id is not None:
            return self._tasks[known_id].ref
        if spec is not self._validated:  # not the spec validate() just returned (create_job's)
            spec = self.validate(spec)
        config = spec.config
        seed = config.get("seed")
        task_id = str(UUID(int=_IDS.getrandbits(128), version=4))
        shots = config["shots"]
        program = spec.program
        cost = text_cost(program, shots) if isinstance(program, str) else circuit_cost(program, shots)
        task = _Task(
            task_id=task_id,
            ref=RunRef(task_id, extra={"instance": self.instance_id}),
            spec=spec,
            shots=shots,
            seed=self._seed if seed is None else seed,
            min_duration_s=config.get("min_duration_s", self._min_duration_s),
            submitted_at=_utcnow(),
            submitted_clock=anyio.current_time(),
            cost=cost if cost is not None and cost <= INLINE_COST_LIMIT else None,
        )
        text = isinstance(program, str)
        short = text and len(program) <= SCHEDULE.probe_max_chars and "while" not in program
        task.probe = task.cost is None and (short or not text)
        self._tasks[task_id] = task
        self._by_key[idempotency_key] = task_id
        self._queue.append(task)
        self._poke()
        logger.debug("queued local run %s (shots=%d)", task_id, task.shots)
        return task.ref

    async def submit_many(
        self, specs: Sequence[RunSpec], idempotency_keys: Sequence[str]
    ) -> list[RunRef | BaseException]:
        """Queue several runs in one step (never suspends); a refused one gets its error in place."""
        out: list[RunRef | BaseException] = []
        for spec, key in zip(specs, idempotency_keys, strict=True):
            try:
                out.append(await self.submit(spec, key))
            except Exception as exc:  # handed to the job it belongs to
                out.append(exc)
        return out

    async def status(self, ref: RunRef) -> Observation:
        """The run's state from memory (never suspends)."""
        return _observation(self._lookup(ref))

    def peek(self, ref: RunRef) -> Observation | None:
        """The run's state from memory; None for a run this instance does not have. Every change
        is told to the change listener as it happens, so the poller hands it to the waiters at
        once, with no read of its own."""
        task = self._tasks.get(ref.task_id)
        if task is None or ref.extra.get("instance", self.instance_id) != self.instance_id:
            return None
        return _observation(task)

    async def statuses(self, refs: Sequence[RunRef]) -> dict[str, Observation | BaseException]:
        """Many runs' states from memory, in one pass (no task per run; never suspends). A run
        that has not changed since its last read gives the very same observation."""
        out: dict[str, Observation | BaseException] = {}
        for ref in refs:
            obs = self.peek(ref)
            if obs is not None:
                out[ref.task_id] = obs
                continue
            try:
                out[ref.task_id] = _observation(self._lookup(ref))
            except NotFoundError as exc:
                out[ref.task_id] = exc
        return out

    async def cancel(self, ref: RunRef, reason: str | None = None) -> None:
        """Cancel a queued or running run at once (never suspends); a finished run is left as is.

        A run whose chunk is simulating in a worker process stops that process."""
        task = self._lookup(ref)
        if task.state.is_terminal:
            return
        was_running = task.state is JobState.RUNNING
        task.cancel_reason = reason
        chunk = task.chunk
        self._finish(task, JobState.CANCELLED)
        if chunk is not None:
            if chunk.simulating and chunk.worker is not None:
                chunk.worker.kill()  # its other runs go back to the queue
            chunk.changed.set()
        self._poke()
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
        if task.started_at is not None and task.code != PARSE_ERROR:  # its circuit's, parsed here
            metrics = await anyio.to_thread.run_sync(metrics_of, task.spec.program, abandon_on_cancel=True)
        metadata = {
            "engine": self._engine,
            "qiskit_version": _version("qiskit"),
            "qiskit_aer_version": _version("qiskit-aer"),
            "shots": task.shots,
            "seed": task.seed,
            "target": task.spec.target,
            "cancel_reason": task.cancel_reason,
            "method": task.method,
            "lane": task.lane,
            "worker_pid": task.worker_pid,
            "batch_size": task.batch_size,
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

    # -- internals: state ------------------------------------------------------------------------

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
        task.observation = None
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
        task.chunk = None
        self._changed(task)

    def _poke(self) -> None:
        """Wake the dispatcher: the queue or a lane changed."""
        if self._wake is not None:
            self._wake.set()

    async def _changes(self) -> None:
        assert self._wake is not None
        await self._wake.wait()
        self._wake = anyio.Event()

    # -- internals: dispatching ------------------------------------------------------------------

    def _trim(self) -> None:
        queue = self._queue
        while queue and queue[0].state.is_terminal:
            queue.popleft()

    def _take(self, count: int, cheap_only: bool) -> list[_Task]:
        """Up to ``count`` active runs from the queue's head (a solo run alone)."""
        taken: list[_Task] = []
        queue = self._queue
        while queue and len(taken) < count:
            task = queue[0]
            if task.state.is_terminal:
                queue.popleft()
                continue
            if (cheap_only and not _inline(task)) or (task.solo and taken):
                break
            taken.append(queue.popleft())
            if task.solo:
                break
        return taken

    def _plan(self) -> tuple[list[_Task], Worker | None] | None:
        """The next chunk and its lane (None: the in-process lane), or None to wait for a lane."""
        self._trim()
        if not self._queue:
            return None
        head = self._queue[0]
        pool = self._pool
        work_s = len(self._queue) * self._inline_run_s  # the queue's work, simulated here
        if pool.failed:
            use_workers = False
        elif not _inline(head):
            use_workers = True
            pool.want(max(1, math.ceil(work_s / SCHEDULE.chunk_target_s)))
        else:
            use_workers = work_s > SCHEDULE.worker_threshold_s(pool.started > 0)
            if use_workers:
                pool.want(math.ceil(work_s / SCHEDULE.chunk_target_s))
        if not self._inline_busy and _inline(head) and (not use_workers or not pool.idle):
            count = max(1, min(SCHEDULE.inline_max_runs, int(SCHEDULE.worker_s[0] / self._inline_run_s)))
            return self._take(count, cheap_only=True), None
        if pool.idle and (use_workers or self._inline_busy):
            per_worker = math.ceil(len(self._queue) / (2 * pool.size))
            by_time = max(SCHEDULE.chunk_runs[0], int(SCHEDULE.chunk_target_s / self._worker_run_s))
            worker = pool.take()
            assert worker is not None
            size = max(1, min(per_worker, by_time, SCHEDULE.chunk_runs[1]))
            return self._take(size, cheap_only=False), worker
        if pool.failed and not self._inline_busy:  # no workers to be had: everything in-process
            return self._take(1, cheap_only=False), None
        return None

    async def _dispatch(self) -> None:
        """Hand queued runs to lanes, one chunk per free slot of ``max_concurrency``."""
        assert self._limiter is not None
        assert self._task_group is not None
        try:
            while not self._closed:
                self._trim()
                if not self._queue:
                    await self._changes()
                    continue
                token = object()
                try:  # a free slot is taken without a turn of the loop
                    self._limiter.acquire_on_behalf_of_nowait(token)
                except anyio.WouldBlock:
                    await self._limiter.acquire_on_behalf_of(token)
                handed = ran_here = False
                try:
                    plan = self._plan()
                    while plan is None and self._queue and not self._closed:
                        await self._changes()
                        plan = self._plan()
                    if plan is not None:
                        tasks, worker = plan
                        if tasks and worker is None and self._at_once(tasks):
                            self._run_at_once(_Chunk(tasks, None))
                            ran_here = True
                        elif tasks:
                            chunk = _Chunk(tasks, worker)
                            self._task_group.start_soon(self._run_chunk, chunk, token, name="local chunk")
                            handed = True
                        elif worker is not None:
                            self._pool.give_back(worker)
                finally:
                    if not handed:
                        self._limiter.release_on_behalf_of(token)
                if ran_here and self._queue:  # the loop is held ~5 ms at most, then others go
                    await anyio.lowlevel.checkpoint()
        finally:
            for task in list(self._tasks.values()):
                if task.state.is_active:
                    task.cancel_reason = _SHUT_DOWN
                    self._finish(task, JobState.CANCELLED)
            self._queue.clear()
            self._pool.close()

    # -- internals: one chunk --------------------------------------------------------------------

    async def _run_chunk(self, chunk: _Chunk, token: object) -> None:
        """Simulate a chunk, then end its runs (after their minimum durations)."""
        assert self._limiter is not None
        worker = chunk.worker
        try:
            await self._simulate_chunk(chunk)
        except Exception as exc:  # a bug here must not take down the Sdk's task group
            self._failed_chunk(chunk, exc)
        finally:
            if worker is not None:
                if chunk.simulating:  # cancelled (shut down) mid-simulation: stop its CPU
                    worker.kill()
                self._pool.give_back(worker)
            for task in chunk.tasks:
                if task.chunk is chunk:
                    task.chunk = None
            self._limiter.release_on_behalf_of(token)
            self._poke()

    def _failed_chunk(self, chunk: _Chunk, exc: Exception) -> None:
        logger.exception("a local chunk failed unexpectedly")
        for task in chunk.tasks:
            self._finish(task, JobState.FAILED, message=f"internal error: {exc!r}", code=INTERNAL_ERROR)

    def _at_once(self, tasks: list[_Task]) -> bool:
        """Whether an in-process chunk starts, simulates and ends within the dispatcher's turn of
        the loop: it is simulated on the loop (:meth:`_on_the_loop`) and no run has a minimum
        duration to wait out."""
        return self._on_the_loop(tasks) and not any(task.min_duration_s for task in tasks)

    def _run_at_once(self, chunk: _Chunk) -> None:
        """Run an :meth:`_at_once` chunk in the dispatcher itself: no task, no await (a task and
        its turns of the loop would cost as much as the simulation)."""
        try:
            items = self._start(chunk)
            began = anyio.current_time()
            outcomes = _simulate(items)
            chunk.simulating = False
            self._measure("inline", (anyio.current_time() - began) / len(chunk.tasks))
            self._settle(chunk, outcomes)  # none waits: no minimum durations
        except Exception as exc:  # a bug here must not stop the dispatcher
            self._failed_chunk(chunk, exc)
        finally:
            for task in chunk.tasks:
                if task.chunk is chunk:
                    task.chunk = None

    def _start(self, chunk: _Chunk) -> list[Item]:
        """Mark a chunk's runs RUNNING (those not already) in its lane; what to simulate."""
        tasks, worker = chunk.tasks, chunk.worker
        for task in tasks:
            task.chunk = chunk
            task.lane = "inline" if worker is None else "worker"
            task.worker_pid = None if worker is None else worker.pid
            task.batch_size = len(tasks)
            if task.state is JobState.SUBMITTED:
                task.state = JobState.RUNNING
                task.started_at = _utcnow()
                task.started_clock = anyio.current_time()
                self._changed(task)
        return [
            Item(
                program=task.spec.program,
                shots=task.shots,
                seed=task.seed,
                method=task.spec.config.get("method", "automatic"),
                device=task.spec.config.get("device", "CPU"),
                engine=self._engine,
                max_cost=INLINE_COST_LIMIT if worker is None and task.cost is None else None,
            )
            for task in tasks
        ]

    async def _simulate_chunk(self, chunk: _Chunk) -> None:
        tasks, worker = chunk.tasks, chunk.worker
        items = self._start(chunk)
        began = anyio.current_time()
        outcomes: list[Outcome] | None = None
        if worker is None:
            self._inline_busy = True
            try:
                if self._on_the_loop(tasks):  # a thread hop would cost as much as the run
                    outcomes = _simulate(items)
                else:
                    simulation = partial(_simulate, items)
                    outcomes = await anyio.to_thread.run_sync(simulation, abandon_on_cancel=True)
            finally:
                self._inline_busy = False
                self._poke()  # the lane is free: a run queued meanwhile goes now, not at this chunk's end
        else:
            try:
                outcomes = await worker.run(items)
            except WorkerLost:
                outcomes = None
        chunk.simulating = False
        per_run = (anyio.current_time() - began) / len(tasks)
        if outcomes is None:
            assert worker is not None
            self._requeue(chunk, killed=worker.killed, exit_code=worker.process.poll())
            return
        self._measure("inline" if worker is None else f"worker {worker.pid}", per_run)
        await self._end_runs(chunk, outcomes)

    def _on_the_loop(self, tasks: list[_Task]) -> bool:
        """Whether an in-process chunk is simulated on the event loop itself: runs whose cost is
        known to be tiny, predicted (from this process's measured time per run) to take at most
        ``SCHEDULE.on_loop_s`` in all — less than handing them to a thread and back — when no
        file needs reading for them (the memory limit, read again at most every half second)."""
        return (
            "inline" in self._measured
            and memory_reading_fresh()  # no file is read on the loop
            and len(tasks) * self._inline_run_s <= SCHEDULE.on_loop_s
            and all(task.cost is not None and task.cost <= SCHEDULE.on_loop_max_cost for task in tasks)
        )

    def _measure(self, lane: str, per_run: float) -> None:
        """Fold a chunk's seconds per run into the lane's moving average (not a lane's first
        chunk, which imports and warms up; a sample at most ten times the average)."""
        if lane not in self._measured:
            self._measured.add(lane)
            return
        if lane == "inline":
            self._inline_run_s = 0.8 * self._inline_run_s + 0.2 * min(per_run, 10 * self._inline_run_s)
        else:
            self._worker_run_s = 0.8 * self._worker_run_s + 0.2 * min(per_run, 10 * self._worker_run_s)

    def _requeue(self, chunk: _Chunk, *, killed: bool, exit_code: int | None) -> None:
        """A worker ended before it answered: its chunk's active runs go back to the queue's head
        (after a crash, each to run alone, so the one that crashed it fails on its own)."""
        active = [task for task in chunk.tasks if task.state.is_active]
        if not killed and len(chunk.tasks) == 1 and active:
            message = f"the simulator process ended unexpectedly (exit code {exit_code})"
            self._finish(active[0], JobState.FAILED, message=message, code=SIMULATION_ERROR)
            return
        for task in reversed(active):
            task.chunk = None
            task.solo = task.solo or not killed
            self._queue.appendleft(task)
        logger.debug("re-queued %d runs of a stopped local worker", len(active))

    async def _end_runs(self, chunk: _Chunk, outcomes: list[Outcome]) -> None:
        waiting = self._settle(chunk, outcomes)
        while waiting:
            waiting = [entry for entry in waiting if entry[1].state.is_active]
            now = anyio.current_time()
            while waiting and waiting[0][0] <= now:
                _, task, outcome = waiting.pop(0)
                self._conclude(task, outcome)
            if waiting:
                with anyio.move_on_after(waiting[0][0] - now):
                    await chunk.changed.wait()
                chunk.changed = anyio.Event()

    def _settle(self, chunk: _Chunk, outcomes: list[Outcome]) -> list[tuple[float, _Task, Outcome]]:
        """End the runs of a simulated chunk that are due; the others (minimum durations), by when."""
        waiting: list[tuple[float, _Task, Outcome]] = []
        now = anyio.current_time()
        deferred: list[_Task] = []
        for task, outcome in zip(chunk.tasks, outcomes, strict=True):
            if task.state.is_terminal:  # cancelled meanwhile: the outcome is discarded
                continue
            if outcome.code == TOO_COSTLY:  # probed here: it needs a worker
                task.probe = False
                task.chunk = None
                deferred.append(task)
                continue
            task.method = outcome.method
            assert task.started_clock is not None
            due = task.started_clock + task.min_duration_s
            if due > now:
                waiting.append((due, task, outcome))
            else:
                self._conclude(task, outcome)
        self._queue.extendleft(reversed(deferred))
        if deferred:
            self._poke()
        waiting.sort(key=lambda entry: entry[0])
        return waiting

    def _conclude(self, task: _Task, outcome: Outcome) -> None:
        if outcome.code is None:
            self._finish(task, JobState.COMPLETED, counts=outcome.counts)
        else:
            logger.debug("local run %s failed: %s", task.task_id, outcome.message)
            self._finish(task, JobState.FAILED, message=outcome.message, code=outcome.code)


def _observation(task: _Task) -> Observation:
    """The run's status now (kept on the run until it changes)."""
    observation = task.observation
    if observation is None:
        state = task.state
        observation = task.observation = Observation(
            state=state,
            vendor_status=_VENDOR_STATUS[state],
            message=task.cancel_reason if state is JobState.CANCELLED else task.message,
            code=task.code if state is JobState.FAILED else None,
            ended_at=task.ended_at,
        )
    return observation


def _inline(task: _Task) -> bool:
    """Whether a run may be simulated in this process (cheap, or to be probed)."""
    return task.cost is not None or task.probe
