"""``CompositeJob``: many jobs driven as one, with one deadline and outputs aligned to children.

``sdk.create_job(program=[a, b, c])`` makes one. Child ``i`` is always output ``i``: a child that has
not ended by the deadline appears as a :class:`~oqc_style_sdk.job_output.JobPending`, never dropped.
There is no cap on the number of children; submissions run with bounded concurrency
(``max_concurrency``) and waiting costs nothing per child beyond the shared poller.
"""

from __future__ import annotations

import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import anyio

from ._submission import await_submissions, save_jobs, start_batch_submission
from ._waiting import deadline
from .backends.base import Observation
from .exceptions import JobStateError, JobTimeoutError, JobValidationError
from .job import DEFAULT_CANCEL_TIMEOUT_S, Job, Reading, send_cancels
from .job_output import JobOutput, JobOutputProxy, JobPending
from .state import JobState

if TYPE_CHECKING:
    from .client import Sdk

__all__ = ["DEFAULT_MAX_CONCURRENCY", "CompositeJob"]

_AT_VENDOR = frozenset({JobState.SUBMITTED, JobState.RUNNING})

#: How many children are submitted (or cancelled) at once unless told otherwise.
DEFAULT_MAX_CONCURRENCY = 64


class CompositeJob(Sequence[Job]):
    """A sequence of :class:`Job` run together. Verbs act on every child, concurrently."""

    def __init__(self, sdk: Sdk, children: Sequence[Job], *, composite_id: str | None = None):
        self._sdk = sdk
        self._children: tuple[Job, ...] = tuple(children)
        self.id: str = composite_id or uuid.uuid4().hex

    # ------------------------------------------------------------------ sequence
    def __len__(self) -> int:
        return len(self._children)

    @overload
    def __getitem__(self, index: int) -> Job: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Job]: ...
    def __getitem__(self, index: int | slice) -> Job | Sequence[Job]:
        return self._children[index]

    def __iter__(self) -> Iterator[Job]:
        return iter(self._children)

    @property
    def jobs(self) -> tuple[Job, ...]:
        return self._children

    # ------------------------------------------------------------------ state (no I/O)
    def summary(self) -> dict[JobState, int]:
        """How many children are in each state (states with none are left out)."""
        counts = Counter(child.state for child in self._children)
        return {state: counts[state] for state in JobState if counts[state]}

    @property
    def state(self) -> JobState:
        """One state for the whole: the least advanced active state while any child is active;
        once all ended, COMPLETED if all completed, FAILED if any failed, else CANCELLED."""
        states = {child.state for child in self._children}
        for active in (JobState.CREATED, JobState.SUBMITTED, JobState.RUNNING):
            if active in states:
                return active
        if states == {JobState.COMPLETED}:
            return JobState.COMPLETED
        return JobState.FAILED if JobState.FAILED in states else JobState.CANCELLED

    @property
    def completed(self) -> bool:
        return all(child.completed for child in self._children)

    @property
    def ended(self) -> bool:
        return all(child.ended for child in self._children)

    @property
    def active(self) -> bool:
        return any(child.active for child in self._children)

    @property
    def outputs(self) -> JobOutputProxy:
        """One output per child, in child order; a child still active is a ``JobPending``."""
        return JobOutputProxy(self._output_of(child) for child in self._children)

    @property
    def history(self) -> JobOutputProxy:
        """Every child's history, child after child."""
        return JobOutputProxy(o for child in self._children for o in child.history)

    def __repr__(self) -> str:
        parts = ", ".join(f"{n} {state.value}" for state, n in self.summary().items())
        return f"<CompositeJob {self.id[:8]} {len(self)} jobs: {parts}>"

    def _repr_html_(self) -> str:
        from .display import composite_html

        return composite_html(self)

    def __rich__(self) -> Any:
        from .display import composite_rich

        return composite_rich(self)

    @staticmethod
    def _output_of(child: Job) -> JobOutput:
        current = child.outputs.first
        if current is not None:
            return current
        return JobPending(
            pending_state=child.state,
            program=child.program,
            target=child.target,
            config=child.config,
            task_id=child.task_id,
            run=child.run,
        )

    # ------------------------------------------------------------------ verbs
    async def execute(
        self,
        timeout_s: float | None = None,
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        progress: bool = False,
    ) -> JobOutputProxy:
        """Run every child and wait for all, within one overall deadline.

        If every child has ended, all start fresh runs; otherwise active children are resumed (the
        ended ones are kept). Past ``timeout_s`` a :class:`JobTimeoutError` is raised whose
        ``outputs`` hold one entry per child, the unfinished ones as ``JobPending``.
        ``progress=True`` shows completed/total live (see :mod:`oqc_style_sdk.progress`).
        """
        if progress:
            from .progress import show_progress

            return await show_progress(self, self.execute(timeout_s, max_concurrency=max_concurrency))
        rerun = self.ended
        self._start_batch(rerun)
        if self._sdk.backend.batch_status:
            await self._in_bulk(timeout_s, "did not all end", max_concurrency, submit=True, rerun=rerun)
            return self.outputs

        batch = self._sdk.backend.batch_submit

        async def one(child: Job, limiter: anyio.CapacityLimiter) -> None:
            if rerun or child.active:
                if batch:  # its part of the batch started above: waited for, never sent again
                    await child.submit()
                elif child.state not in _AT_VENDOR:  # sent by this call, a few at a time
                    async with limiter:
                        await child.submit()
                await child.wait()

        await self._all(one, timeout_s, max_concurrency, "did not all end")
        return self.outputs

    async def submit(
        self, timeout_s: float | None = None, *, max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    ) -> None:
        """Submit every child not yet at the vendor (ended children start fresh runs)."""
        self._start_batch(True)

        async def one(child: Job, limiter: anyio.CapacityLimiter) -> None:
            async with limiter:
                await child.submit()

        await self._all(one, timeout_s, max_concurrency, "were not all submitted")

    async def wait(self, timeout_s: float | None = None, *, progress: bool = False) -> JobOutputProxy:
        """Wait for every submitted child to end, sending nothing (``progress=True``: shown live)."""
        if progress:
            from .progress import show_progress

            return await show_progress(self, self.wait(timeout_s))
        if self._sdk.backend.batch_status:
            await self._in_bulk(timeout_s, "did not all end", DEFAULT_MAX_CONCURRENCY, submit=False)
            return self.outputs

        async def one(child: Job, limiter: anyio.CapacityLimiter) -> None:
            if child.state is not JobState.CREATED:
                await child.wait()

        await self._all(one, timeout_s, len(self._children), "did not all end")
        return self.outputs

    async def refresh(
        self, timeout_s: float | None = None, *, max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    ) -> dict[JobState, int]:
        """Read every active child's status once; return the state summary."""

        async def one(child: Job, limiter: anyio.CapacityLimiter) -> None:
            async with limiter:
                await child.refresh()

        await self._all(one, timeout_s, max_concurrency, "were not all read")
        return self.summary()

    async def cancel(
        self,
        reason: str | None = None,
        *,
        timeout_s: float | None = DEFAULT_CANCEL_TIMEOUT_S,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> dict[JobState, int]:
        """Cancel every active child (finished ones keep their state); return the summary.

        Each child is read first (as ``Job.cancel`` does); the ones still active are cancelled
        together through ``Backend.cancel_many`` — one request where the vendor takes a list — and
        then confirmed by the poller.
        """
        from .backends.base import RunRef

        to_cancel: list[Job] = []
        refs: list[RunRef] = []

        async def prepare(child: Job, limiter: anyio.CapacityLimiter) -> None:
            async with limiter:
                ref = await child._cancel_prepare(reason)
            if ref is not None:
                to_cancel.append(child)
                refs.append(ref)

        async def confirm(child: Job, limiter: anyio.CapacityLimiter) -> None:
            if child.active:
                await child.wait()

        with self._deadline(timeout_s, "were not all confirmed cancelled"):
            await self._all(prepare, None, max_concurrency, "")
            if to_cancel:
                await send_cancels(to_cancel, refs, reason)
            await self._all(confirm, None, len(self._children), "")
        return self.summary()

    async def cancel_if_active(
        self, reason: str | None = None, *, timeout_s: float | None = DEFAULT_CANCEL_TIMEOUT_S
    ) -> bool:
        """Cancel the children that are active; True if any was."""
        if not self.active:
            return False
        await self.cancel(reason, timeout_s=timeout_s)
        return True

    def raise_for_status(self) -> None:
        """Raise ``JobFailed`` if any child failed or was cancelled; ``JobStateError`` if any is
        still active."""
        pending = [i for i, child in enumerate(self._children) if child.active]
        if pending:
            raise JobStateError(f"{self!r}: children {pending[:10]} have not ended yet")
        self.outputs.raise_for_status()

    async def save(self, path: str | Path, timeout_s: float | None = None) -> Path:
        """Write every child to one file, atomically; ``timeout_s`` as ``Job.save`` has it (one
        reservation for every child without a key, bounded by it)."""
        return await save_jobs(self._children, path, composite_id=self.id, timeout_s=timeout_s)

    # ------------------------------------------------------------------ internals
    def _deadline(self, timeout_s: float | None, what: str) -> deadline:
        """One deadline over a whole verb; on expiry a JobTimeoutError carrying the outputs."""
        return deadline(
            timeout_s,
            lambda: f"{self!r} {what}",
            lambda message: JobTimeoutError(message, state=self.state.value, outputs=self.outputs),
        )

    def _start_batch(self, rerun: bool) -> None:
        """Where the backend has a batch submission, send the children that need it together;
        each child's own ``submit()`` then waits for its part of the batch."""
        self._sdk._require_open()
        if self._sdk.backend.batch_submit:
            start_batch_submission(self._children, rerun=rerun)

    async def _in_bulk(
        self, timeout_s: float | None, what: str, max_concurrency: int, *, submit: bool, rerun: bool = False
    ) -> None:
        """``execute()`` (``submit=True``) or ``wait()`` for a backend that reads many runs at once,
        without a task per child: batch submissions are awaited in turn, the children at the vendor
        are followed together through the poller (each reading applied as it comes), and the
        outcomes of ended children are read by a few workers. Errors are raised as ``_all`` does."""
        self._sdk._require_open()
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or (max_concurrency < 1):
            raise JobValidationError("max_concurrency must be a positive whole number")
        errors: list[tuple[int, Exception]] = []
        with self._deadline(timeout_s, what):
            idle = await await_submissions(
                self._children, lambda child: not submit or rerun or child.active, errors
            )
            # To submit one by one (no batch submission has them).
            loose = [(i, child) for i, child in idle if submit and child.state not in _AT_VENDOR]
            if loose:
                await self._submit_each(loose, max_concurrency, errors)
            await _follow_to_the_end(self._sdk, self._children, errors)
        _raise_first(self, errors)

    async def _submit_each(
        self, children: list[tuple[int, Job]], max_concurrency: int, errors: list[tuple[int, Exception]]
    ) -> None:
        limiter = anyio.CapacityLimiter(max_concurrency)

        async def one(i: int, child: Job) -> None:
            try:
                async with limiter:
                    await child.submit()
            except Exception as exc:  # collected, raised with the child's index
                errors.append((i, exc))

        async with anyio.create_task_group() as tg:
            for i, child in children:
                tg.start_soon(one, i, child)

    async def _all(
        self,
        fn: Callable[[Job, anyio.CapacityLimiter], Awaitable[None]],
        timeout_s: float | None,
        max_concurrency: int,
        what: str,
    ) -> None:
        self._sdk._require_open()
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or (max_concurrency < 1):
            raise JobValidationError("max_concurrency must be a positive whole number")
        limiter = anyio.CapacityLimiter(max_concurrency)
        errors: list[tuple[int, Exception]] = []

        async def guarded(i: int, child: Job) -> None:
            try:
                await fn(child, limiter)
            except Exception as exc:  # collected, re-raised below with its child's index
                errors.append((i, exc))

        with self._deadline(timeout_s, what):
            async with anyio.create_task_group() as tg:
                for i, child in enumerate(self._children):
                    tg.start_soon(guarded, i, child)
        _raise_first(self, errors)


def _raise_first(composite: CompositeJob, errors: list[tuple[int, Exception]]) -> None:
    """Raise the error of the lowest-numbered child that raised, noting how many did."""
    if errors:
        errors.sort(key=lambda item: item[0])
        i, first = errors[0]
        first.add_note(f"(child {i} of {composite!r}; {len(errors)} children raised)")
        raise first


#: How many outcomes (results, errors) of ended children a composite reads at once.
OUTCOME_READERS = 64


async def _follow_to_the_end(sdk: Sdk, children: Sequence[Job], errors: list[tuple[int, Exception]]) -> None:
    """Wait until every child at the vendor has ended, following them all through the poller.

    Each reading goes to its child's ``Job._take`` (applied on the spot, with a single job's rule
    for a failed read); an ended child's outcome is read by one of :data:`OUTCOME_READERS` workers
    the way the child's own ``wait()`` reads it (``Job._wait_taken``): from that reading (so a
    concurrent ``child.wait()`` shares it), retrying as a single job does.
    """
    waiting: dict[str, int] = {}  # task id -> the child's index
    for i, child in enumerate(children):
        ref = child._ref
        if child.active and ref is not None and child.state is not JobState.CREATED:
            waiting[ref.task_id] = i
    if not waiting:
        return
    inbox: list[tuple[str, Observation | None, BaseException | None]] = []
    wake = anyio.Event()

    def sink(task_id: str, obs: Observation | None, error: BaseException | None) -> None:
        inbox.append((task_id, obs, error))
        wake.set()

    # Ended children waiting for a reader, and the event the idle readers wait on: set (and
    # replaced) when children are queued, and at the end.
    ended: deque[tuple[int, Job]] = deque()
    queued = anyio.Event()
    finished = False

    async def reader() -> None:
        while True:
            if not ended:
                if finished:
                    return
                await queued.wait()
                continue
            i, child = ended.popleft()
            try:
                await child._wait_taken()
            except Exception as exc:  # collected, raised with the child's index
                errors.append((i, exc))

    following = sdk.poller.follow(
        [ref for i in waiting.values() if (ref := children[i]._ref) is not None], sink
    )

    def done(task_id: str) -> None:
        del waiting[task_id]
        following.drop(task_id)  # not read for this composite any more

    def route(task_id: str, obs: Observation | None, error: BaseException | None) -> None:
        """Apply one reading: an active child's on the spot, an ended child's to the readers."""
        i = waiting.get(task_id, -1)
        if i < 0:
            return
        child = children[i]
        try:
            reading = child._take(task_id, obs, error)
        except Exception as exc:  # waiting will not fix it: raised (the child stays active)
            done(task_id)
            errors.append((i, exc))
            return
        if reading is Reading.GONE:
            done(task_id)
        elif reading is Reading.ENDED:  # its outcome is read by a reader (and its own wait)
            done(task_id)
            ended.append((i, child))

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(min(OUTCOME_READERS, len(waiting))):
                tg.start_soon(reader)
            try:
                while waiting:
                    if not inbox:
                        await wake.wait()
                        wake = anyio.Event()
                    batch, inbox[:] = inbox[:], []
                    for task_id, obs, error in batch:
                        route(task_id, obs, error)
                    if ended:
                        queued.set()
                        queued = anyio.Event()
            finally:  # the readers finish what is queued, then stop
                finished = True
                queued.set()
    finally:
        following.close()
