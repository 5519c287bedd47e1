"""A submission's identity: fixed before its request is sent, recorded by every save, reconciled
after a send whose outcome is not known.

- **Fixed first.** A run's idempotency key is made before any request of its submission: where the
  key is the client's to choose (Azure's job id, Databricks' ``idempotency_token``, Windmill's job
  id, IBM's submission tag) the backend makes it here, with no request, the moment the submission
  starts (:func:`fix_local_key`); where the vendor hands ids out (OQC reserves task ids) one
  reservation per group of jobs is made (:func:`reserve`) and shared by whatever needs it: the
  submission, and a save that waits for it.
- **Recorded by every save.** ``Job._snapshot`` records the key of a submission in flight and marks
  it as possibly sent (``submit_attempted``, with the moment), so a process that loads the file sends
  the same key — the vendor's same run — rather than a new one.
- **Reconciled.** A key sent before whose outcome is unknown — or read from a file, which the
  process that saved it may have sent after saving — is given back to the backend
  (:meth:`~oqc_style_sdk.backends.base.Backend.recall_submission`) before it is sent again (IBM then
  looks the run up by its submission tag): the same rule in the Sdk that sent it and after ``load()``.
- **A save is local.** ``save(path)`` never waits on a vendor: a key the vendor must give is left to
  the submission. ``save(path, timeout_s=T)`` spends up to ``T`` getting such keys, a reservation in
  flight included, then writes the file whatever it got.
- **No file is left behind its submission.** A file saved while one of its jobs had no key yet (a
  plain save before OQC reserved its id) is written again, with the key, once the key is there and
  before any request carrying it is sent (:func:`keys_for_submission`) — unless the file is no
  longer the one that save wrote (saved over since, by any process, or removed): a process killed
  after the vendor accepted the job finds the key in the file and resumes the same run.

Nothing here is a job's state of its own: these functions set a job's key and submission marks,
through the same fields ``Job`` reads, on the event loop, like the batch submission they serve.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import anyio

from ._waiting import _Flight, check_timeout
from .backends.base import Backend
from .exceptions import SdkError, SdkNotStartedError
from .state import JobState

if TYPE_CHECKING:
    from .job import Job

__all__ = [
    "KeylessSave",
    "await_submissions",
    "fix_local_key",
    "keys_for_submission",
    "reserve",
    "save_jobs",
    "sending",
    "start_batch_submission",
]

logger = logging.getLogger("oqc_style_sdk.job")


def fix_local_key(job: Job) -> None:
    """Give a CREATED ``job`` without one its run's key, if the backend makes keys with no request."""
    if job._key is None and job._state is JobState.CREATED:
        job._key = job._sdk.backend.local_idempotency_key(job._spec)


class Reservation(_Flight[None]):
    """One request for the keys of some jobs, shared by every caller that needs them. The saves
    waiting on it are counted: the submission its keys are for sends nothing until they have
    written their files, so no file written after the keys came lacks them while a request with
    them is already out."""

    __slots__ = ("_saved", "_saves")

    def __init__(self) -> None:
        super().__init__()
        self._saves = 0
        self._saved: anyio.Event | None = None

    def save_started(self) -> None:
        self._saves += 1

    def save_ended(self) -> None:
        self._saves -= 1
        if self._saves == 0 and self._saved is not None:
            self._saved.set()
            self._saved = None

    async def saves_written(self) -> None:
        """Until the saves that waited on this reservation have written their files."""
        if self._saves:
            if self._saved is None:
                self._saved = anyio.Event()
            await self._saved.wait()


async def reserve(jobs: Sequence[Job], saving: list[Reservation] | None = None) -> list[Reservation]:
    """Give each CREATED job of ``jobs`` (of one Sdk) without a key the one the vendor hands out
    (one reservation request for all where the vendor has one). A reservation already in flight
    for a job is waited for, never repeated; the error of this caller's own reservation is raised.

    Returns the reservations waited on. A save passes ``saving``: each reservation it waits on is
    told, and added to it (the save calls ``save_ended()`` on each once its file is written).
    """
    backend = jobs[0]._sdk.backend
    seen: list[Reservation] = []

    def note(flight: Reservation) -> None:
        seen.append(flight)
        if saving is not None:
            flight.save_started()
            saving.append(flight)

    while True:
        joined = {id(f): f for job in jobs if job._key is None and (f := job._keying) is not None}
        if joined:
            for other in joined.values():
                note(other)
                try:
                    await other.wait()
                except Exception as exc:  # its starter has the error; this caller tries itself
                    logger.debug("a key reservation failed: %s", exc)
            continue
        need = [job for job in jobs if job._key is None and job._state is JobState.CREATED]
        if not need:
            return seen
        flight = Reservation()
        note(flight)
        for job in need:
            job._keying = flight
        try:
            await flight.run(_reserved, backend, need)
        finally:
            for job in need:
                if job._keying is flight:
                    job._keying = None
        await flight.wait()


async def keys_for_submission(jobs: Sequence[Job]) -> None:
    """The keys of ``jobs``' submission: reserved where they have none, the saves that waited for
    them written, and the files saved without them written again, before anything carrying them
    is sent."""
    for flight in await reserve(jobs):
        await flight.saves_written()
    stale = {id(e): e for job in jobs if job._keyless_saves for es in job._keyless_saves.values() for e in es}
    for job in jobs:
        job._keyless_saves = None
    for entry in stale.values():
        await entry.write_again()


class KeylessSave:
    """A save whose snapshot had a job without its key: what to write again once it has one.

    It is noted on its jobs when the snapshot is taken, on the event loop, so a submission whose
    key came after that moment finds it, even while the file is still being written. ``stamp`` is
    the written file's (device, inode, size, mtime): a save replaces a file by renaming a new one
    over it, so a file with another stamp was saved over since (by this process or any other) and
    is left alone.
    """

    __slots__ = ("composite_id", "jobs", "path", "stamp", "written")

    def __init__(self, path: Path, jobs: tuple[Job, ...], composite_id: str | None) -> None:
        self.path, self.jobs, self.composite_id = path, jobs, composite_id
        self.stamp: tuple[int, int, int, int] | None = None
        self.written = anyio.Event()

    def note(self, keyless: Sequence[Job]) -> None:
        """Noted on ``keyless``; an earlier save to the same file that has ended is superseded by this
        one (whose rename comes later) and forgotten, so the notes stay few."""
        for job in self.jobs:
            if job._keyless_saves is not None and (earlier := job._keyless_saves.get(self.path)):
                earlier[:] = [entry for entry in earlier if not entry.written.is_set()]
                if not earlier:
                    del job._keyless_saves[self.path]
        for job in keyless:
            if job._keyless_saves is None:
                job._keyless_saves = {}
            job._keyless_saves.setdefault(self.path, []).append(self)

    async def write_again(self) -> None:
        await self.written.wait()  # a local write (a worker thread), within the submission's deadline
        try:
            if self.stamp is None or await anyio.to_thread.run_sync(_stamp, self.path) != self.stamp:
                return  # saved over since, or gone: that file is not this save's any more
            await _write(self.path, self.jobs, self.composite_id)
        except (OSError, SdkError) as exc:
            logger.warning("could not record the keys of %d job(s) in %s: %s", len(self.jobs), self.path, exc)


def _stamp(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


async def _write(path: str | Path, jobs: Sequence[Job], composite_id: str | None) -> Path:
    """Write ``jobs``' snapshots, taken now on the event loop, to ``path``; a snapshot without its
    key is noted (:class:`KeylessSave`) at the same moment."""
    from .persistence import write

    snapshots = [job._snapshot() for job in jobs]
    keyless = [
        job
        for job, snap in zip(jobs, snapshots, strict=True)
        if snap.state is JobState.CREATED and snap.idempotency_key is None
    ]
    entry: KeylessSave | None = None
    if isinstance(path, str | os.PathLike):  # anything else the writer refuses, typed
        entry = KeylessSave(Path(path), tuple(jobs), composite_id)
        entry.note(keyless)
    try:
        written = await write(path, jobs[0]._sdk.backend.identity(), snapshots, composite_id=composite_id)
        if keyless and entry is not None:
            entry.stamp = await anyio.to_thread.run_sync(_stamp, written)
    finally:
        if entry is not None:
            entry.written.set()
    return written


async def _reserved(backend: Backend, jobs: list[Job]) -> None:
    keys = await backend.new_idempotency_keys([job._spec for job in jobs])
    for job, key in zip(jobs, keys, strict=True):
        if job._key is None and job._state is JobState.CREATED:
            job._key = key


def sending(job: Job) -> str:
    """A request carrying ``job``'s key may reach the vendor from now on: marked so (a save records
    it). A key that may have been sent before — by this Sdk, or by the process that saved the file
    it was read from, even after saving it — is first recalled to the backend."""
    key = job._key
    assert key is not None, "a submission's key is fixed before its request"
    if job._submit_attempted or job._recall:
        job._sdk.backend.recall_submission(key, job._attempted_at)
    job._submit_attempted, job._recall = True, False
    job._attempted_at = datetime.now(UTC)
    return key


# ---------------------------------------------------------------------------------- batches
def start_batch_submission(jobs: Sequence[Job], *, rerun: bool = False) -> None:
    """Start submitting the CREATED ``jobs`` (of one Sdk) through the backend's batch submission;
    with ``rerun``, the ended ones start fresh runs first and go too.

    Each job keeps its own single flight (``job.submit()`` waits for the batch, never sends a
    second time) and its own key, fixed before anything is sent and reused by any resend; each
    job's outcome is its own (one refused job ends FAILED, the others are submitted).
    """
    if rerun:
        for job in jobs:
            if job._state.is_terminal and job._submitting is None:
                job._start_new_run()
    todo = [job for job in jobs if job._state is JobState.CREATED and job._submitting is None]
    if todo:
        for job in todo:
            fix_local_key(job)
            job._submitting = _Flight()
        todo[0]._sdk._spawn(_run_batch, todo)


async def _run_batch(todo: list[Job]) -> None:
    # Each job's flight and run as the batch starts (parallel lists: no tuple per job).
    flights = [job._submitting for job in todo]
    runs = [job._run for job in todo]
    backend = todo[0]._sdk.backend
    try:
        try:
            await keys_for_submission(todo)
            keys = [sending(job) for job in todo]
            outcomes = await backend.submit_many([job._spec for job in todo], keys)
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


async def await_submissions(
    jobs: Sequence[Job], wanted: Callable[[Job], bool], errors: list[tuple[int, Exception]]
) -> list[tuple[int, Job]]:
    """Wait, in turn, for the submissions in flight now (a batch's, or a job's own) of the
    ``wanted`` jobs; collect their errors with the job's index. Returns the wanted jobs that had
    none in flight. The flights are taken before the first wait: each is cleared as its batch
    ends, and a job whose batch failed must not count as one never sent."""
    flights = [job._submitting for job in jobs]
    idle: list[tuple[int, Job]] = []
    for i, (job, flight) in enumerate(zip(jobs, flights, strict=True)):
        if not wanted(job):
            continue
        if flight is None:
            idle.append((i, job))
            continue
        try:
            await flight.wait()
        except Exception as exc:  # collected: the caller raises it with the job's index
            errors.append((i, exc))
    return idle


# ---------------------------------------------------------------------------------- saving
async def save_jobs(
    jobs: Sequence[Job], path: str | Path, *, composite_id: str | None = None, timeout_s: float | None = None
) -> Path:
    """Save ``jobs`` (one job, or a composite's children) to one file.

    Every CREATED job gets its key first where the backend makes keys with no request, so the
    file holds the key its submission will send. Keys the vendor must hand out are asked for only
    with ``timeout_s`` (and for at most that long, a reservation in flight included); without,
    nothing waits on the vendor. Then each job's snapshot is taken on the event loop, so the
    picture is consistent, and the file is written.
    """
    bound = check_timeout(timeout_s)
    for job in jobs:
        fix_local_key(job)
    keyless = [job for job in jobs if job._state is JobState.CREATED and job._key is None]
    waited: list[Reservation] = []
    try:
        if keyless and bound is not None:
            with anyio.move_on_after(bound):
                try:
                    await reserve(keyless, waited)
                except SdkError as exc:  # left to the submission, which asks again
                    logger.debug("no keys for %d job(s) before saving them: %s", len(keyless), exc)
        return await _write(path, jobs, composite_id)
    finally:
        for flight in waited:
            flight.save_ended()
