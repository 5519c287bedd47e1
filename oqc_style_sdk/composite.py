"""``CompositeJob``: many jobs driven as one, with one deadline and outputs aligned to children.

``sdk.create_job(program=[a, b, c])`` makes one. Child ``i`` is always output ``i``: a child that has
not ended by the deadline appears as a :class:`~oqc_style_sdk.job_output.JobPending`, never dropped.
There is no cap on the number of children; submissions run with bounded concurrency
(``max_concurrency``) and waiting costs nothing per child beyond the shared poller.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import anyio

from .exceptions import JobStateError, JobTimeoutError, JobValidationError
from .job import DEFAULT_CANCEL_TIMEOUT_S, Job, check_timeout, start_batch_submission
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

        async def one(child: Job, limiter: anyio.CapacityLimiter) -> None:
            if rerun or child.active:
                # Submitted by this call, unless a batch submission has it or it is at the vendor.
                if child._submitting is None and child.state not in _AT_VENDOR:
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

        to_cancel: list[tuple[Job, RunRef]] = []

        async def prepare(child: Job, limiter: anyio.CapacityLimiter) -> None:
            async with limiter:
                ref = await child._cancel_prepare(reason)
            if ref is not None:
                to_cancel.append((child, ref))

        async def confirm(child: Job, limiter: anyio.CapacityLimiter) -> None:
            if child.active:
                await child.wait()

        with self._deadline(timeout_s, "were not all confirmed cancelled"):
            await self._all(prepare, None, max_concurrency, "")
            if to_cancel:
                for child, _ in to_cancel:
                    child._cancel_reason, child._cancel_sent = reason, True
                try:
                    await self._sdk.backend.cancel_many([ref for _, ref in to_cancel], reason)
                except BaseException:
                    for child, _ in to_cancel:
                        child._cancel_sent = False
                    raise
                for _, ref in to_cancel:
                    self._sdk.poller.expect_change(ref.task_id)
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

    async def save(self, path: str | Path) -> Path:
        """Write every child to one file, atomically (see ``Job.save``)."""
        from .persistence import save_jobs

        return await save_jobs(self._sdk, list(self._children), path, composite=True, composite_id=self.id)

    # ------------------------------------------------------------------ internals
    @contextmanager
    def _deadline(self, timeout_s: float | None, what: str) -> Iterator[None]:
        """One deadline over a whole verb; on expiry a JobTimeoutError carrying the outputs."""
        timeout_s = check_timeout(timeout_s)
        with anyio.move_on_after(_inf_if_none(timeout_s)) as scope:
            yield
        if scope.cancelled_caught:
            raise JobTimeoutError(
                f"{self!r} {what} after {timeout_s:g} s", state=self.state.value, outputs=self.outputs
            )

    def _start_batch(self, rerun: bool) -> None:
        """Where the backend has a batch submission, send the children that need it together;
        each child's own ``submit()`` then waits for its part of the batch."""
        self._sdk._require_open()
        if not self._sdk.backend.batch_submit:
            return
        for child in self._children:
            if rerun and child.state.is_terminal and child._submitting is None:
                child._start_new_run()
        start_batch_submission(self._children)

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
        if errors:
            errors.sort(key=lambda item: item[0])
            i, first = errors[0]
            first.add_note(f"(child {i} of {self!r}; {len(errors)} children raised)")
            raise first


def _inf_if_none(timeout_s: float | None) -> float:
    return float("inf") if timeout_s is None else timeout_s
