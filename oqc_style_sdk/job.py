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
import os
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio

from ._submission import KeylessSave, Reservation, fix_local_key, keys_for_submission, save_jobs, sending
from ._waiting import _Flight, deadline
from .backends.base import Diagnostics, FoundRun, Observation, RunRef, RunSpec
from .exceptions import (
    BackendError,
    JobCancelledError,
    JobFailed,
    JobNotResumableError,
    JobStateError,
    JobTimeoutError,
    JobValidationError,
    NotFoundError,
)
from .job_output import (
    JobCancellation,
    JobError,
    JobOutput,
    JobOutputProxy,
    JobResult,
)
from .persistence import DiagnosticsSnapshot, JobSnapshot, RefSnapshot
from .state import JobState, check_transition, state_rank

if TYPE_CHECKING:
    from .client import Sdk

__all__ = ["DEFAULT_CANCEL_TIMEOUT_S", "Job"]

logger = logging.getLogger("oqc_style_sdk.job")

#: How long ``cancel()`` waits, by default, for the vendor to confirm the run ended.
DEFAULT_CANCEL_TIMEOUT_S = 60.0

_RECONFIGURABLE = frozenset({"program", "target", "qpu_id", "config", "fetch_diagnostics", "tag"})


async def send_cancels(jobs: Sequence[Job], refs: Sequence[RunRef], reason: str | None) -> None:
    """Ask the vendor to cancel the runs ``refs`` of ``jobs`` (read active by
    ``Job._cancel_prepare``) in one ``Backend.cancel_many``: one request where the vendor takes a
    list. The poller then confirms them."""
    backend = jobs[0]._sdk.backend
    await _cancelling(jobs, refs, reason, lambda: backend.cancel_many(list(refs), reason))


async def _cancelling(
    jobs: Sequence[Job], refs: Sequence[RunRef], reason: str | None, send: Callable[[], Awaitable[None]]
) -> None:
    """The one rule of a cancel request: marked sent before it goes (a reading that comes back
    meanwhile is known to answer it), unmarked if it fails, then the runs are read quickly."""
    for job in jobs:
        job._cancel_reason, job._cancel_sent = reason, True
    try:
        await send()
    except BaseException:
        for job in jobs:
            job._cancel_sent = False
        raise
    poller = jobs[0]._sdk.poller
    for ref in refs:
        poller.expect_change(ref.task_id)  # its end is near: confirm it quickly


class Reading(Enum):
    """What :meth:`Job._take` made of one reading of a followed run."""

    ACTIVE = "active"  #: applied; the run goes on
    RETRY = "retry"  #: the read failed in a way worth reading again
    ENDED = "ended"  #: terminal: its outcome is read by ``wait()``
    GONE = "gone"  #: not this job's run any more, or lost (it ended FAILED): stop following


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
    """The submission was refused outright: nothing was created, retrying will not help."""
    return isinstance(exc, JobValidationError) or (isinstance(exc, BackendError) and exc.refused)


class Job:
    """A mutable handle on one program's submissions to one backend.

    Made by :meth:`Sdk.create_job <oqc_style_sdk.client.Sdk.create_job>`. Properties never do I/O;
    everything that talks to the backend is an ``async`` verb.
    """

    # Slots: a composite holds thousands of jobs; each without a __dict__ is smaller and is one
    # object fewer for the garbage collector to walk.
    __slots__ = (
        "__weakref__",
        "_attempted_at",
        "_cancel_reason",
        "_cancel_sent",
        "_diagnostics",
        "_fetch_diagnostics",
        "_finishing",
        "_history",
        "_key",
        "_keying",
        "_keyless_saves",
        "_last_obs",
        "_output",
        "_recall",
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
        #: The reservation of the run's key at the vendor, while one is in flight (``_submission``).
        self._keying: Reservation | None = None
        #: Files saved while the run had no key yet, written again before it is sent (``_submission``).
        self._keyless_saves: dict[Path, list[KeylessSave]] | None = None
        self._submit_attempted = False
        #: When a request of the current run's submission was last sent (if one was).
        self._attempted_at: datetime | None = None
        #: A key read from a file: the process that wrote it may have sent it after saving.
        self._recall = False
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

    async def _wait_taken(self) -> None:
        """:meth:`wait` as a composite's outcome reader calls it, for a child whose ending it took
        (:meth:`_take`): the outcome is read (or shared with a concurrent ``wait()``) without the
        verb's checks, already made for the composite, and its deadline, the composite's."""
        if self._unread is not None or self._submitting is not None:
            await self.wait()
        else:
            await self._wait_terminal()

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
        from .client import check_job_args, make_spec

        fetch = overrides.get("fetch_diagnostics", self._fetch_diagnostics)
        given = check_job_args(overrides.get("target"), overrides.get("qpu_id"), fetch)
        program = overrides.get("program", self._spec.program if memento is None else memento.program)
        if "target" in overrides or "qpu_id" in overrides:
            target = given
        else:
            target = self._spec.target if memento is None else memento.target
        config = overrides.get("config", self._spec.config if memento is None else memento.config)
        tag = overrides.get("tag", self._spec.tag)
        spec = self._sdk._validate_spec(make_spec(program, target, config, tag))
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

    async def save(self, path: str | Path, timeout_s: float | None = None) -> Path:
        """Write the job to ``path`` as versioned JSON, atomically, readable by its owner only.

        The file holds the run's idempotency key whenever it can be had without the vendor, a
        submission in flight included, so a process that loads it never makes a second vendor job.
        A save never waits on a vendor unless ``timeout_s`` lets it: then it spends up to that long
        getting a key the vendor hands out (OQC reserves task ids), and writes the file either way.
        """
        await self._read_unread()
        return await save_jobs((self,), path, timeout_s=timeout_s)

    # ------------------------------------------------------------------ record (data in, data out)
    def _snapshot(self) -> JobSnapshot:
        """The job as data: everything a later process needs to carry on (no secret, no code)."""
        ref = self._ref
        diag = self._diagnostics
        # A submission in flight whose key is fixed may reach the vendor any moment: recorded as sent.
        sending_now = self._submitting is not None and self._key is not None
        return JobSnapshot(
            id=self.id,
            program=self._spec.program,
            target=self._spec.target,
            config=dict(self._spec.config),
            tag=self._spec.tag,
            fetch_diagnostics=self._fetch_diagnostics,
            state=self._state,
            run=self._run,
            idempotency_key=self._key,
            submit_attempted=self._submit_attempted or sending_now,
            submit_attempted_at=(_now() if sending_now else self._attempted_at)
            if self._state is JobState.CREATED
            else None,
            ref=None if ref is None else RefSnapshot(task_id=ref.task_id, extra=dict(ref.extra)),
            vendor_status=self._vendor_status,
            cancel_reason=self._cancel_reason,
            cancel_sent=self._cancel_sent,
            submitted_at=self._submitted_at,
            history=list(self._history),  # type: ignore[arg-type]
            diagnostics=None
            if diag is None
            else DiagnosticsSnapshot(timings=diag.timings, metrics=diag.metrics, metadata=diag.metadata),
        )

    @classmethod
    def _restored(cls, sdk: Sdk, snap: JobSnapshot, *, lost_runs: Literal["raise", "fail"] = "raise") -> Job:
        """A job of ``sdk`` made from ``snap`` (validated by ``persistence``), as it was saved.

        An active run this backend cannot follow from here (a local simulation of another
        process) raises :class:`JobNotResumableError`, or with ``lost_runs="fail"`` ends FAILED
        (``LOST``), its history kept, ready for a fresh run.
        """
        spec = RunSpec(program=snap.program, target=snap.target, config=snap.config, tag=snap.tag)
        job = cls(sdk, spec, fetch_diagnostics=snap.fetch_diagnostics, job_id=snap.id)
        job._state = snap.state
        job._run = snap.run
        job._key = snap.idempotency_key
        job._submit_attempted = snap.submit_attempted
        job._attempted_at = snap.submit_attempted_at
        job._recall = snap.state is JobState.CREATED and snap.idempotency_key is not None
        ref = job._ref = None if snap.ref is None else RunRef(snap.ref.task_id, dict(snap.ref.extra))
        job._vendor_status = snap.vendor_status
        job._cancel_reason = snap.cancel_reason
        job._cancel_sent = snap.cancel_sent
        job._submitted_at = snap.submitted_at
        job._history = [o.model_copy() for o in snap.history]
        for output in job._history:
            output._bind(job)
        if snap.state.is_terminal:
            job._output = job._history[-1]
        if snap.diagnostics is not None:
            d = snap.diagnostics
            job._diagnostics = Diagnostics(timings=d.timings, metrics=d.metrics, metadata=d.metadata)
        if ref is not None and snap.state.is_active and not sdk.backend.can_resume(ref):
            why = sdk.backend.describe_unresumable(ref)
            if lost_runs == "raise":
                raise JobNotResumableError(
                    f"job {snap.id} was saved while {snap.state.value} (task {ref.task_id}) and "
                    f"cannot be resumed: {why}. Load it with lost_runs='fail' to keep its history "
                    "and run it again."
                )
            lost = JobError(message=f"the run was lost: {why}", code="LOST", **job._output_fields())
            job._end_locally(lost)
        return job

    # ------------------------------------------------------------------ runs found at the vendor
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
        """A run found at the vendor (or loaded from its saved file) whose program the vendor did
        not return cannot run again until it is given one. No backend takes None as a program."""
        if self._spec.program is None:
            why = self._unknown_program or "the vendor did not return it"
            raise JobValidationError(
                f"{self!r} follows a run made elsewhere whose program is not known "
                f"({why}); give it with `job.reconfigure(program=...)` to run it again"
            )

    # ------------------------------------------------------------------ a composite's children
    def _take(self, task_id: str, obs: Observation | None, error: BaseException | None) -> Reading:
        """Apply one reading of run ``task_id`` (or its failed read, ``error``), as a composite
        following many runs delivers it; a failed read goes by :meth:`_failed_read`, the rule a
        single job's wait follows too. Raises a failed read's error that reading again will not
        fix (the job stays active). A terminal reading is kept for :meth:`wait` to finish with."""
        ref = self._ref
        if ref is None or ref.task_id != task_id or not self._state.is_active:
            return Reading.GONE  # ended (or started another run) by other means
        if error is not None:
            return Reading.RETRY if self._failed_read(ref, error) else Reading.GONE
        assert obs is not None
        if obs.state.is_active:
            if not obs.same_as(self._last_obs):
                self._apply_active(obs)
            return Reading.ACTIVE
        self._last_obs = obs  # an ended run's reading, its outcome not read yet: _wait_terminal's
        return Reading.ENDED

    def _failed_read(self, ref: RunRef, exc: BaseException) -> bool:
        """The one rule for a read of ``ref`` that failed. A run the vendor no longer knows ends
        FAILED (NOT_FOUND): False, nothing more to read. A re-readable error (transient, or a
        garbled answer): True, read again. Any other error is raised."""
        if isinstance(exc, NotFoundError):
            self._lost(ref, exc)
            return False
        if isinstance(exc, BackendError) and exc.rereadable:
            logger.debug("reading %r failed, will try again: %s", self, exc)
            return True
        raise exc

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
        self._attempted_at = None
        self._recall = False
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
        backend = self._sdk.backend
        await _cancelling((self,), (ref,), reason, lambda: backend.cancel(ref, reason))

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
            fix_local_key(self)  # the submission's identity, before anything is sent
            flight = self._submitting = _Flight()
            self._sdk._spawn(flight.run, self._submit_once)
        await flight.wait()

    async def _submit_once(self) -> None:
        spec, run = self._spec, self._run
        backend = self._sdk.backend
        try:
            if self._key is None:  # reserved once per run, saved with the job, reused on every resend
                await keys_for_submission((self,))
            ref = await backend.submit(spec, sending(self))
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
        # A terminal reading whose outcome is not read yet: one a composite's follower took
        # (``_take``), or one whose result could not be read on the last try.
        last = self._last_obs
        retry = last if last is not None and last.state.is_terminal else None
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
            except BackendError as exc:
                if not self._failed_read(ref, exc):
                    return
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
