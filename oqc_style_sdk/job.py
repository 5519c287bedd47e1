"""``Job``: one program on one backend, through as many runs as you like.

The job is the lifecycle's only writer. Every state change goes through :meth:`Job._observe` (what the
vendor said) or one of the few local moves (a new run, a rejected submission, cancelling a job that was
never sent), each checked against ``state.TRANSITIONS``.

Work that must not be cut short by one caller's deadline — sending the submission, turning a terminal
reading into a history entry — runs as a *flight* in the Sdk's task group: the first caller starts it,
every caller waits on it with its own deadline, and a caller that gives up leaves it to finish. That is
what makes ``execute()`` and ``submit()`` single-flight and a timed-out ``execute()`` safe to resume.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, TypeVarTuple

import anyio

from .backends.base import Diagnostics, FoundRun, Observation, RunRef, RunSpec
from .exceptions import (
    AuthenticationError,
    BackendError,
    JobCancelledError,
    JobFailed,
    JobStateError,
    JobTimeoutError,
    JobValidationError,
    NotFoundError,
    ProtocolError,
    SdkNotStartedError,
)
from .job_output import (
    JobCancellation,
    JobError,
    JobOutput,
    JobOutputProxy,
    JobResult,
)
from .polling import state_rank
from .state import JobState, check_transition

if TYPE_CHECKING:
    from .client import Sdk

__all__ = ["DEFAULT_CANCEL_TIMEOUT_S", "Job"]

logger = logging.getLogger("oqc_style_sdk.job")

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

#: How long ``cancel()`` waits, by default, for the vendor to confirm the run ended.
DEFAULT_CANCEL_TIMEOUT_S = 60.0

_RECONFIGURABLE = frozenset({"program", "target", "qpu_id", "config", "fetch_diagnostics", "tag"})


def check_timeout(timeout_s: float | None, name: str = "timeout_s") -> float | None:
    """A timeout is None (no deadline) or a positive number of seconds."""
    if timeout_s is None:
        return None
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
        raise JobValidationError(f"{name} must be a number of seconds or None, not {timeout_s!r}")
    if not timeout_s > 0 or math.isnan(timeout_s):
        raise JobValidationError(f"{name} must be > 0 seconds (or None for no deadline)")
    return float(timeout_s)


class deadline:
    """Bound a block by ``timeout_s``; on expiry raise :class:`JobTimeoutError` with ``what()``.

    A class rather than a generator context manager: every verb of every job enters one, and
    without a timeout it costs nothing.
    """

    __slots__ = ("_scope", "_timeout_s", "_what")

    def __init__(self, timeout_s: float | None, what: Callable[[], str]) -> None:
        self._timeout_s = check_timeout(timeout_s)
        self._what = what
        self._scope: anyio.CancelScope | None = None

    def __enter__(self) -> None:
        if self._timeout_s is not None:
            self._scope = anyio.move_on_after(self._timeout_s)
            self._scope.__enter__()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        scope = self._scope
        if scope is None:
            return False
        suppressed = bool(scope.__exit__(exc_type, exc, tb))
        if scope.cancelled_caught:
            raise JobTimeoutError(f"{self._what()} after {self._timeout_s:g} s") from None
        return suppressed


class _Flight(Generic[T]):
    """Work shared by every caller that asks for it while it runs; survives any one caller."""

    __slots__ = ("_done", "_ended", "_error", "_tb", "_value")

    def __init__(self) -> None:
        self._ended = False
        self._done: anyio.Event | None = None  # made by the first waiter that has to wait
        self._value: T | None = None
        self._error: BaseException | None = None
        self._tb: TracebackType | None = None

    def _end(self) -> None:
        self._ended = True
        if self._done is not None:
            self._done.set()

    async def run(self, fn: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> None:
        try:
            self._value = await fn(*args)
        except Exception as exc:  # re-raised to every waiter
            self._error, self._tb = exc, exc.__traceback__
        finally:
            self._end()

    def fail(self, error: BaseException) -> None:
        """End the flight with ``error`` if it has not ended."""
        if not self._ended:
            self._error, self._tb = error, error.__traceback__
            self._end()

    async def wait(self) -> T:
        if not self._ended:
            if self._done is None:
                self._done = anyio.Event()
            await self._done.wait()
        if self._error is not None:
            # Each waiter raises it from where it failed (asyncio's futures do the same), so a
            # traceback does not grow by one raise per waiter.
            raise self._error.with_traceback(self._tb)
        return self._value  # type: ignore[return-value]


def start_batch_submission(jobs: Sequence[Job]) -> None:
    """Start submitting the CREATED ``jobs`` (of one Sdk) through the backend's batch submission.

    Each job keeps its own single flight (``job.submit()`` waits for the batch, never sends a
    second time) and its own key, made before anything is sent and reused by any resend; each
    job's outcome is its own (one refused job ends FAILED, the others are submitted).
    """
    todo = [job for job in jobs if job._state is JobState.CREATED and job._submitting is None]
    if todo:
        for job in todo:
            job._submitting = _Flight()
        todo[0]._sdk._spawn(_run_batch, todo)


async def _run_batch(todo: list[Job]) -> None:
    # Each job's flight and run as the batch starts (parallel lists: no tuple per job).
    flights = [job._submitting for job in todo]
    runs = [job._run for job in todo]
    backend = todo[0]._sdk.backend
    try:
        try:
            fresh = [job for job in todo if job._key is None]
            if fresh:  # made once per run, saved with the job, reused on every resend
                keys = await backend.new_idempotency_keys([job._spec for job in fresh])
                for job, key in zip(fresh, keys, strict=True):
                    job._key = key
            for job in todo:
                job._submit_attempted = True
            outcomes = await backend.submit_many(
                [job._spec for job in todo], [job._key or "" for job in todo]
            )
        except Exception as exc:
            outcomes = [exc] * len(todo)
        # One error may be every job's outcome: each job raises it from where it failed, so its
        # traceback does not grow by one raise per job.
        origins: dict[int, TracebackType | None] = {}
        for job, flight, run, outcome in zip(todo, flights, runs, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                outcome.with_traceback(origins.setdefault(id(outcome), outcome.__traceback__))
            if flight is not None:
                await flight.run(job._settle_submission, outcome, run)
    finally:  # cancelled part-way (the Sdk closing): no waiter is left hanging
        for job, flight in zip(todo, flights, strict=True):
            if flight is not None and not flight._ended:
                flight.fail(SdkNotStartedError(f"the submission of {job!r} was interrupted"))
            if job._submitting is flight:
                job._submitting = None


class _Ids(random.Random):
    """128 random bits per id, from a generator seeded by the OS (anew in a forked child, so two
    processes never share a sequence): an id per job without a system call per job."""

    def __init__(self) -> None:
        super().__init__()
        os.register_at_fork(after_in_child=self.seed)


_IDS = _Ids()


def new_id() -> str:
    """A new job id: 32 hex digits, as ``uuid4().hex`` gives."""
    return f"{_IDS.getrandbits(128):032x}"


def _now() -> datetime:
    return datetime.now(UTC)


def _is_rejection(exc: BaseException) -> bool:
    """The vendor refused the submission outright: nothing was created, retrying will not help."""
    if isinstance(exc, JobValidationError):
        return True
    if isinstance(exc, BackendError) and not isinstance(exc, AuthenticationError):
        return exc.status is not None and 400 <= exc.status < 500 and exc.status not in (408, 429)
    return False


class Job:
    """A mutable handle on one program's submissions to one backend.

    Made by :meth:`Sdk.create_job <oqc_style_sdk.client.Sdk.create_job>`. Properties never do I/O;
    everything that talks to the backend is an ``async`` verb.
    """

    # Slots: a composite holds thousands of jobs; each without a __dict__ is smaller and is one
    # object fewer for the garbage collector to walk.
    __slots__ = (
        "__weakref__",
        "_cancel_reason",
        "_cancel_sent",
        "_diagnostics",
        "_fetch_diagnostics",
        "_finishing",
        "_history",
        "_key",
        "_last_obs",
        "_output",
        "_ref",
        "_run",
        "_saved_at",
        "_sdk",
        "_spec",
        "_state",
        "_submit_attempted",
        "_submitted_at",
        "_submitting",
        "_unknown_program",
        "_unread",
        "_vendor_status",
        "id",
    )

    def __init__(
        self,
        sdk: Sdk,
        spec: RunSpec,
        *,
        fetch_diagnostics: bool = False,
        job_id: str | None = None,
    ) -> None:
        self._sdk = sdk
        self._spec = spec
        self._fetch_diagnostics = fetch_diagnostics
        self.id: str = job_id or new_id()
        self._state = JobState.CREATED
        self._run = 1
        self._key: str | None = None
        self._submit_attempted = False
        self._ref: RunRef | None = None
        self._last_obs: Observation | None = None
        self._vendor_status: str | None = None
        self._output: JobOutput | None = None
        self._history: list[JobOutput] = []
        self._diagnostics: Diagnostics | None = None
        self._cancel_reason: str | None = None
        self._cancel_sent = False
        self._submitted_at: datetime | None = None
        self._submitting: _Flight[None] | None = None
        self._finishing: _Flight[None] | None = None
        self._saved_at: datetime | None = None
        #: A terminal reading from a listing whose outcome is not read yet (see :meth:`_listed`).
        self._unread: Observation | None = None
        #: Why the program of a run attached from the vendor is not known (None: it is).
        self._unknown_program: str | None = None

    @classmethod
    def _following(cls, sdk: Sdk, found: FoundRun) -> Job:
        """A job following a run made elsewhere: SUBMITTED with its vendor reference, nothing read."""
        job = cls(sdk, found.spec)
        job._state = JobState.SUBMITTED
        job._vendor_status = "SUBMITTED"
        job._ref = found.ref
        job._submit_attempted = True
        job._submitted_at = found.created_at
        job._unknown_program = found.unknown_program
        return job

    @classmethod
    async def _attach(cls, sdk: Sdk, found: FoundRun) -> Job:
        """``sdk.job(task_id)``: the vendor's reading applied; an ended run gets its one history
        entry (its result or error read now)."""
        job = cls._following(sdk, found)
        await job._accept(found.observation)
        return job

    @classmethod
    def _listed(cls, sdk: Sdk, found: FoundRun) -> Job:
        """``sdk.jobs()``: the listed state, no request. An ended run's outcome is read by the first
        verb that needs it (``wait``, ``refresh``, ``execute``, ``save``), so a listing of thousands
        of ended runs costs its pages only."""
        job = cls._following(sdk, found)
        obs = found.observation
        if obs.state.is_active:
            job._apply_active(obs)
        else:
            job._state, job._vendor_status, job._unread = obs.state, obs.vendor_status, obs
        return job

    async def _read_unread(self) -> None:
        """Read the outcome of a listed run that ended (its status, then its result or error), once."""
        obs = self._unread
        if obs is None:
            return
        self._unread = None
        self._state = JobState.SUBMITTED
        assert self._ref is not None
        try:  # read again: a listing leaves out what a status read says (a failure's message ...)
            await self._read(self._ref)
        except BaseException:
            if self._state is JobState.SUBMITTED:  # nothing recorded: the next verb reads again
                self._unread, self._state = obs, obs.state
            raise

    def _check_rerunnable(self) -> None:
        if self._unknown_program is not None and self._spec.program is None:
            raise JobValidationError(
                f"{self!r} follows a run made elsewhere whose program is not known "
                f"({self._unknown_program}); give it with `job.reconfigure(program=...)` to run it again"
            )

    # ------------------------------------------------------------------ properties (no I/O)
    @property
    def sdk(self) -> Sdk:
        return self._sdk

    @property
    def state(self) -> JobState:
        """Where the current run is: CREATED, SUBMITTED, RUNNING, COMPLETED, FAILED or CANCELLED."""
        return self._state

    @property
    def completed(self) -> bool:
        """True when the current run completed (and :attr:`result` holds its data)."""
        return self._state is JobState.COMPLETED

    @property
    def ended(self) -> bool:
        """True in a terminal state: COMPLETED, FAILED or CANCELLED."""
        return self._state.is_terminal

    @property
    def active(self) -> bool:
        """True in CREATED, SUBMITTED or RUNNING."""
        return self._state.is_active

    @property
    def result(self) -> JobResult | None:
        """The current run's result, or None unless it completed."""
        return self._output if isinstance(self._output, JobResult) else None

    @property
    def error(self) -> JobError | None:
        """The current run's error, or None unless it failed."""
        return self._output if isinstance(self._output, JobError) else None

    @property
    def outputs(self) -> JobOutputProxy:
        """The current run's output in a :class:`JobOutputProxy` (empty while it is active)."""
        return JobOutputProxy(() if self._output is None else (self._output,))

    @property
    def history(self) -> JobOutputProxy:
        """One output per ended run, oldest first."""
        return JobOutputProxy(self._history)

    @property
    def task_id(self) -> str | None:
        """The vendor's id of the current run (None before it is submitted)."""
        return None if self._ref is None else self._ref.task_id

    @property
    def submitted_at(self) -> datetime | None:
        """When the current run was submitted (for a run found at the vendor: when it was made)."""
        return self._submitted_at

    @property
    def vendor_status(self) -> str | None:
        """The vendor's own word for the current run's status, unmapped."""
        return self._vendor_status

    @property
    def run(self) -> int:
        """The current run's number: 1 for the first, 2 for the next ..."""
        return self._run

    @property
    def program(self) -> Any:
        return self._spec.program

    @property
    def target(self) -> str | None:
        return self._spec.target

    @property
    def qpu_id(self) -> str | None:
        """Alias of :attr:`target`."""
        return self._spec.target

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._spec.config)

    @property
    def tag(self) -> str | None:
        return self._spec.tag

    @property
    def fetch_diagnostics(self) -> bool:
        return self._fetch_diagnostics

    @property
    def timings(self) -> dict[str, Any] | None:
        """Wall-clock and queue timings of the latest ended run (``fetch_diagnostics=True``)."""
        return None if self._diagnostics is None else self._diagnostics.timings

    @property
    def metrics(self) -> dict[str, Any] | None:
        """Gate counts, depth and the like of the latest ended run (``fetch_diagnostics=True``)."""
        return None if self._diagnostics is None else self._diagnostics.metrics

    @property
    def metadata(self) -> dict[str, Any] | None:
        """Compiler and hardware metadata of the latest ended run (``fetch_diagnostics=True``)."""
        return None if self._diagnostics is None else self._diagnostics.metadata

    def __repr__(self) -> str:
        task = f" task_id={self.task_id!r}" if self.task_id else ""
        return (
            f"<Job {self.id[:8]} {self._state.value} backend={self._sdk.backend.name!r}"
            f" target={self.target!r} run={self._run}{task}>"
        )

    def _repr_html_(self) -> str:
        from .display import job_html

        return job_html(self)

    def __rich__(self) -> Any:
        from .display import job_rich

        return job_rich(self)

    # ------------------------------------------------------------------ verbs
    async def execute(self, timeout_s: float | None = None, *, progress: bool = False) -> JobOutputProxy:
        """Run the job and wait for its end; return its outputs.

        - a CREATED job is submitted;
        - an active job is *resumed*: nothing is sent again, the wait goes on;
        - a terminal job starts a fresh run (new task id); the old run stays in :attr:`history`.

        Errors of the run are stored on the job, not raised: see :meth:`raise_for_status`.
        ``timeout_s=None`` waits as long as it takes; past ``timeout_s`` a :class:`JobTimeoutError`
        is raised and the job is left active and attached — call ``execute()`` again to resume.
        ``progress=True`` shows the wait live (Jupyter or terminal; see :mod:`oqc_style_sdk.progress`).
        """
        if progress:
            from .progress import show_progress

            return await show_progress(self, self.execute(timeout_s))
        self._sdk._require_open()
        with deadline(timeout_s, lambda: f"{self!r} did not end"):
            await self._read_unread()
            if self._state.is_terminal:
                self._check_rerunnable()
                self._start_new_run()
            await self._ensure_submitted()
            await self._wait_terminal()
        return self.outputs

    async def submit(self, timeout_s: float | None = None) -> None:
        """Send the job without waiting for it to end. Sends nothing if it is already active."""
        self._sdk._require_open()
        with deadline(timeout_s, lambda: f"{self!r} was not submitted"):
            await self._read_unread()
            if self._state.is_terminal:
                self._check_rerunnable()
                self._start_new_run()
            await self._ensure_submitted()

    async def wait(self, timeout_s: float | None = None, *, progress: bool = False) -> JobOutputProxy:
        """Wait for the submitted run to end, sending nothing (``progress=True``: shown live)."""
        if progress:
            from .progress import show_progress

            return await show_progress(self, self.wait(timeout_s))
        self._sdk._require_open()
        with deadline(timeout_s, lambda: f"{self!r} did not end"):
            await self._read_unread()
            if self._submitting is not None:
                await self._submitting.wait()
            if self._state is JobState.CREATED:
                raise JobStateError(
                    f"{self!r} was never submitted: call `await job.execute()` or `job.submit()`"
                )
            await self._wait_terminal()
        return self.outputs

    async def refresh(self, timeout_s: float | None = None) -> JobState:
        """Read the run's status once and apply it. A job that is not at the vendor reads nothing."""
        self._sdk._require_open()
        with deadline(timeout_s, lambda: f"reading {self!r}"):
            await self._read_unread()
            if self._state.is_active and self._ref is not None:
                await self._read(self._ref)
        return self._state

    async def cancel(
        self, reason: str | None = None, *, timeout_s: float | None = DEFAULT_CANCEL_TIMEOUT_S
    ) -> JobState:
        """Cancel the current run, the way the vendors' own cancel workflows do.

        Read the status; ask to cancel only while the run is active; then re-read until the vendor
        reports a terminal state. A run that finished first keeps its finished state and result.
        A job never submitted becomes CANCELLED with no request. Returns the final state.
        """
        self._sdk._require_open()
        try:
            with deadline(timeout_s, lambda: f"cancelling {self!r} was not confirmed"):
                ref = await self._cancel_prepare(reason)
                if ref is not None:
                    await self._cancel_send(ref, reason)
                await self._wait_terminal()
        except JobTimeoutError:
            # The vendor never confirmed (its answer may have been lost or garbled): the next
            # cancel() asks again rather than waiting on a request that may never have counted.
            if self._state.is_active:
                self._cancel_sent = False
            raise
        return self._state

    async def cancel_if_active(
        self, reason: str | None = None, *, timeout_s: float | None = DEFAULT_CANCEL_TIMEOUT_S
    ) -> bool:
        """Cancel the job if it is active; a no-op for a terminal job. True if it was active."""
        self._sdk._require_open()  # like every verb, even when there is nothing to do
        if self._state.is_terminal and self._submitting is None:
            return False
        await self.cancel(reason, timeout_s=timeout_s)
        return True

    def reconfigure(self, memento: JobOutput | None = None, **overrides: Any) -> None:
        """Change what the next run will do; history is kept.

        ``memento`` restores the settings of an earlier output (program, target, config);
        ``overrides`` — ``program``, ``target``/``qpu_id``, ``config``, ``fetch_diagnostics``,
        ``tag`` — apply on top. A terminal job is set up for a fresh run (CREATED). A job whose run is
        at the vendor is refused: cancel it first, so no run is orphaned.
        """
        if self._submitting is not None or self._state in (JobState.SUBMITTED, JobState.RUNNING):
            raise JobStateError(
                f"{self!r} is {self._state.value} at the vendor; reconfiguring it now would orphan "
                "that run. Call `await job.cancel_if_active()` first, then reconfigure()."
            )
        if self._state is JobState.CREATED and self._submit_attempted:
            raise JobStateError(
                f"{self!r}: a submission of this run may have reached the vendor (its answer was "
                "lost); call `await job.execute()` to settle it, or `await job.cancel_if_active()`, "
                "before reconfiguring"
            )
        unknown = set(overrides) - _RECONFIGURABLE
        if unknown:
            raise JobValidationError(
                f"reconfigure() got unknown setting(s) {sorted(unknown)}; it takes {sorted(_RECONFIGURABLE)}"
            )
        if memento is not None and not isinstance(memento, JobOutput):
            raise JobValidationError(
                f"memento must be an output of this job (from history or execute()), "
                f"not {type(memento).__name__}"
            )
        program = self._spec.program if memento is None else memento.program
        target = self._spec.target if memento is None else memento.target
        config: Mapping[str, Any] = self._spec.config if memento is None else memento.config
        if "target" in overrides and "qpu_id" in overrides and overrides["target"] != overrides["qpu_id"]:
            raise JobValidationError("target and qpu_id name the same setting; give one")
        program = overrides.get("program", program)
        target = overrides.get("target", overrides.get("qpu_id", target))
        config = overrides.get("config", config)
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise JobValidationError(f"config must be a mapping, not {type(config).__name__}")
        tag = overrides.get("tag", self._spec.tag)
        fetch = overrides.get("fetch_diagnostics", self._fetch_diagnostics)
        if not isinstance(fetch, bool):
            raise JobValidationError("fetch_diagnostics must be True or False")
        spec = self._sdk._validate_spec(RunSpec(program=program, target=target, config=dict(config), tag=tag))
        self._spec = spec
        self._fetch_diagnostics = fetch
        if self._state.is_terminal:
            self._start_new_run()

    def raise_for_status(self) -> None:
        """Raise :class:`JobFailed` unless the current run completed.

        A cancelled run raises :class:`JobCancelledError` (a ``JobFailed``); an active job raises
        :class:`JobStateError`, since it has no outcome yet.
        """
        if self._state is JobState.COMPLETED:
            return
        if self._state is JobState.FAILED:
            err = self.error
            raise JobFailed(f"{self!r} failed: {err.message if err else 'no error recorded'}", error=err)
        if self._state is JobState.CANCELLED:
            raise JobCancelledError(f"{self!r} was cancelled", error=self._output)
        raise JobStateError(f"{self!r} has not ended yet")

    async def save(self, path: str | Path) -> Path:
        """Write the job to ``path`` as versioned JSON, atomically, readable by its owner only."""
        from .persistence import save_jobs

        await self._read_unread()
        return await save_jobs(self._sdk, [self], path, composite=False)

    # ------------------------------------------------------------------ internals
    def _output_fields(self) -> dict[str, Any]:
        return {
            "program": self._spec.program,
            "target": self._spec.target,
            "config": dict(self._spec.config),
            "task_id": self.task_id,
            "run": self._run,
            "received": _now(),
        }

    def _start_new_run(self) -> None:
        check_transition(self._state, JobState.CREATED)
        self._state = JobState.CREATED
        self._run += 1
        self._unread = None
        self._key = None
        self._submit_attempted = False
        self._ref = None
        self._last_obs = None
        self._vendor_status = None
        self._output = None
        self._diagnostics = None
        self._cancel_reason = None
        self._cancel_sent = False
        self._submitted_at = None

    def _end_locally(self, output: JobOutput) -> None:
        """End the current run without the vendor: a rejected submission, a never-sent job."""
        check_transition(self._state, output.state)
        output._bind(self)
        self._state = output.state
        self._output = output
        self._history.append(output)

    async def _cancel_prepare(self, reason: str | None) -> RunRef | None:
        """The first half of the guarded cancel: settle any submission, end a never-sent job
        locally, read the status. Returns the run to ask the vendor to cancel, or None."""
        if self._submitting is not None:
            try:
                await self._submitting.wait()
            except Exception as exc:  # the submitter has it; here only the outcome matters
                logger.debug("submission of %r failed before the cancel: %s", self, exc)
        if self._state is JobState.CREATED and self._submit_attempted:
            if not self._sdk.backend.idempotent_submit:
                logger.warning(
                    "%r: an earlier submission may have reached %s; it cannot be checked safely, "
                    "so the job is cancelled locally only",
                    self,
                    self._sdk.backend.name,
                )
            else:  # resend with the same key: the vendor returns the run if it has it
                await self._ensure_submitted()
        if self._state is JobState.CREATED:
            self._cancel_reason = reason
            self._end_locally(JobCancellation(reason=reason, **self._output_fields()))
            return None
        if self._state.is_terminal or self._ref is None:
            return None
        ref = self._ref
        await self._read(ref)
        if self._state.is_active and not self._cancel_sent and self._ref is ref:
            return ref
        return None

    async def _cancel_send(self, ref: RunRef, reason: str | None) -> None:
        self._cancel_reason = reason
        self._cancel_sent = True
        try:
            await self._sdk.backend.cancel(ref, reason)
        except BaseException:
            self._cancel_sent = False
            raise
        self._sdk.poller.expect_change(ref.task_id)  # its end is near: confirm it quickly

    async def _read(self, ref: RunRef) -> None:
        """One status read, applied. A run the vendor no longer knows ends FAILED (NOT_FOUND)."""
        try:
            obs = await self._sdk.backend.status(ref)
        except NotFoundError as exc:
            self._lost(ref, exc)
            return
        self._sdk.poller.observed(ref, obs)
        await self._accept(obs)

    def _lost(self, ref: RunRef, exc: NotFoundError) -> None:
        if self._ref is ref and self._state.is_active:
            logger.warning("%r: %s no longer knows the run: %s", self, self._sdk.backend.name, exc)
            self._end_locally(
                JobError(
                    message=f"the vendor no longer knows this run: {exc}",
                    code="NOT_FOUND",
                    **self._output_fields(),
                )
            )

    async def _ensure_submitted(self) -> None:
        if self._state is not JobState.CREATED:
            return
        flight = self._submitting
        if flight is None:
            flight = self._submitting = _Flight()
            self._sdk._spawn(flight.run, self._submit_once)
        await flight.wait()

    async def _submit_once(self) -> None:
        spec, run = self._spec, self._run
        backend = self._sdk.backend
        try:
            if self._key is None:  # made once per run, saved with the job, reused on every resend
                self._key = await backend.new_idempotency_key(spec)
            self._submit_attempted = True
            ref = await backend.submit(spec, self._key)
        except Exception as exc:
            self._submission_failed(exc, run)
            return
        finally:
            self._submitting = None
        self._submitted(ref)

    def _submission_failed(self, exc: Exception, run: int) -> None:
        """A refused submission ends the job (FAILED, REJECTED); any other failure is raised."""
        if _is_rejection(exc) and self._state is JobState.CREATED and self._run == run:
            logger.info("%r was rejected: %s", self, exc)
            code = "REJECTED" if not isinstance(exc, BackendError) else exc.vendor_code
            self._end_locally(JobError(message=str(exc), code=code or "REJECTED", **self._output_fields()))
            return
        raise exc

    async def _settle_submission(self, outcome: RunRef | BaseException, run: int) -> None:
        """Apply one job's outcome of a batch submission."""
        self._submitting = None
        if isinstance(outcome, Exception):
            self._submission_failed(outcome, run)
        elif isinstance(outcome, BaseException):  # pragma: no cover - backends return Exceptions
            raise outcome
        else:
            self._submitted(outcome)

    def _submitted(self, ref: RunRef) -> None:
        check_transition(self._state, JobState.SUBMITTED)
        self._ref = ref
        self._state = JobState.SUBMITTED
        self._vendor_status = "SUBMITTED"
        self._submitted_at = _now()
        logger.debug("%r submitted", self)

    async def _wait_terminal(self) -> None:
        poller = self._sdk.poller
        retry: Observation | None = None  # a terminal reading whose result could not be read yet
        pause = poller.policy.min_interval_s  # grows while the outcome cannot be read
        while self._state.is_active:
            ref = self._ref
            if ref is None:  # pragma: no cover - callers submit first
                raise JobStateError(f"{self!r} is not at the vendor")
            obs = retry
            try:
                if obs is None:
                    obs = await poller.next_observation(ref, self._last_obs)
                retry = None
                await self._accept(obs)
            except NotFoundError as exc:
                self._lost(ref, exc)
                return
            except BackendError as exc:
                # A garbled answer to a read is worth reading again; elsewhere only transient
                # errors are.
                if not (exc.transient or isinstance(exc, ProtocolError)):
                    raise
                logger.debug("reading %r failed, will try again: %s", self, exc)
                if obs is not None and obs.state.is_terminal:
                    retry = obs
                    pause = poller.policy.next_interval(pause, changed=False)
                    await anyio.sleep(pause)

    async def _accept(self, obs: Observation) -> None:
        """Apply a reading; a terminal one is turned into the run's history entry (once)."""
        if self._state.is_terminal:
            if obs.state is not self._state:
                logger.warning(
                    "%r: the vendor now reports %s (%s) for a run that ended %s; ignored",
                    self,
                    obs.state.value,
                    obs.vendor_status,
                    self._state.value,
                )
            return
        if obs.state.is_active:
            self._apply_active(obs)
            return
        self._vendor_status = obs.vendor_status
        flight = self._finishing
        if flight is not None:  # another waiter is reading the outcome: share it
            await flight.wait()
            return
        # This waiter reads the outcome itself, under its own deadline. If it is cancelled
        # first, nothing is recorded (_finish changes the job only at its end), the others
        # waiting on the flight wake, and the next one to look reads the outcome again.
        flight = self._finishing = _Flight()
        await flight.run(self._finish, obs)
        await flight.wait()

    def _apply_active(self, obs: Observation) -> None:
        """Apply a reading of an active run (no I/O): the state only moves forward."""
        self._vendor_status = obs.vendor_status
        if state_rank(obs.state) > state_rank(self._state):
            check_transition(self._state, obs.state)
            self._state = obs.state
        self._last_obs = obs

    async def _finish(self, obs: Observation) -> None:
        ref, spec, run = self._ref, self._spec, self._run
        assert ref is not None
        try:
            fields = self._output_fields()
            if obs.ended_at is not None:
                fields["received"] = obs.ended_at
            output: JobOutput
            if obs.state is JobState.COMPLETED:
                data = await self._sdk.backend.result(ref, spec)
                output = JobResult._made_for(self, data=data, **fields)
            else:
                if obs.state is JobState.FAILED:  # vendor text: validated
                    output = JobError(
                        message=obs.message or f"the run ended {obs.vendor_status}",
                        code=obs.code,
                        **fields,
                    )
                else:
                    output = JobCancellation(reason=self._cancel_reason, **fields)
                output._bind(self)
            diagnostics = None
            if self._fetch_diagnostics:
                try:
                    diagnostics = await self._sdk.backend.diagnostics(ref, spec)
                except Exception as exc:  # diagnostics never fail the job
                    logger.info("diagnostics of %r unavailable: %s", self, exc)
                    diagnostics = Diagnostics()
        finally:
            self._finishing = None
        if self._run != run or self._state.is_terminal:  # pragma: no cover - guarded by callers
            return
        check_transition(self._state, obs.state)
        self._state = obs.state
        self._vendor_status = obs.vendor_status
        self._last_obs = obs
        self._output = output
        self._history.append(output)
        if diagnostics is not None:
            self._diagnostics = diagnostics
        logger.debug("%r ended", self)
