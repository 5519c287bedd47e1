"""``ScriptedBackend``: an in-memory backend whose runs do exactly what a test tells them to.

No I/O, no clocks, no sleeps. Every run follows a *script*: the vendor statuses it reports on its
successive status reads, the last one repeating. Or a test drives a run by hand. Every call is
recorded, so a test can assert what was sent (and what was not).

```python
from oqc_style_sdk import JobState, Sdk
from oqc_style_sdk.testing import ScriptedBackend

backend = ScriptedBackend(script=["QUEUED", "RUNNING", "COMPLETED"], data={"c": {"0": 1}})
async with Sdk(backend) as sdk:
    job = sdk.create_job(program="anything")
    await job.execute(timeout_s=5)
    assert job.result.data == {"c": {"0": 1}}
    assert backend.submissions == 1
    assert backend.calls[0] == ("submit", None)
```

Scripts
    ``ScriptedBackend(script=[...])`` sets the script of every run; ``backend.script_next([...])``
    queues a script for the next submission only (first in, first out). A script entry is a vendor
    status string or a :class:`~oqc_style_sdk.state.JobState`. The documented statuses are those of
    :attr:`ScriptedBackend.STATUS_TABLE` (``QUEUED``, ``SUBMITTED``, ``RUNNING``, ``CANCELLING``,
    ``COMPLETED``, ``FAILED``, ``CANCELLED``); any other string is an *undocumented* status: it is
    reported as it is in ``vendor_status`` and keeps the run active (at the last active state seen).
    A script may report a terminal status and then an active one (``["COMPLETED", "RUNNING"]``), to
    check that a job ignores a vendor flipping a finished run back.

Driving by hand
    ``set_state(task_id, state)``, ``complete(task_id, data)`` and ``fail(task_id, message, code)``
    replace the run's script by one status that repeats, and tell the Sdk's poller to read at once.
    ``backend.last_task_id`` is the newest run's id.

Faults and races
    - ``fail_next("submit", exc)`` raises ``exc`` from the next call of that method (``submit``,
      ``status``, ``cancel``, ``result``, ``diagnostics``, ``list_targets``); calls queue up.
    - ``before_next(method, action)`` runs ``action(task_id)`` at the start of the next call of
      ``method``; if it returns an awaitable, the call waits for it (hold one status read, complete
      a run just before a cancel lands ...).
    - ``hold_submissions()`` closes a gate that every ``submit`` waits at, after being recorded;
      ``release_submissions()`` opens it. ``await backend.wait_for_call("submit", 2)`` waits (without
      sleeping) until two submits were recorded, so two ``execute()`` calls can be made to race.

Cancellation
    ``cancel`` marks the run as cancel-requested; its next status read reports ``CANCELLED`` unless
    the run had already ended (reported, or was driven to, a terminal status), in which case the
    cancel changes nothing — as at a real vendor, the finished state wins. With
    ``cancel_script=["CANCELLING", "CANCELLED"]`` the reads after a cancel follow that script instead
    (``CANCELLING`` is a documented, still active, status).

Idempotency
    ``submit`` with a key it has seen returns the same run and counts no new submission.

What is recorded
    ``calls``: ``(method, task_id or None)`` for every ``submit``, ``status``, ``cancel``,
    ``result``, ``diagnostics`` and ``list_targets`` (``validate`` is not I/O and is not recorded).
    ``submissions``: how many runs were created; ``submit_keys``: the idempotency key of every
    ``submit`` call, failed ones included.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

import anyio

from oqc_style_sdk.backends.base import Backend, Diagnostics, Observation, RunRef, RunSpec
from oqc_style_sdk.exceptions import (
    JobStateError,
    JobValidationError,
    NotFoundError,
    UnknownTargetError,
)
from oqc_style_sdk.state import JobState

__all__ = ["ScriptedBackend"]

logger = logging.getLogger("oqc_style_sdk.testing.scripted")

#: The methods whose calls are recorded and can be made to fail or wait.
METHODS: Final = ("submit", "status", "cancel", "result", "diagnostics", "list_targets")

Action = Callable[[str | None], Awaitable[None] | None]
ScriptEntry = str | JobState

DEFAULT_SCRIPT: Final[tuple[str, ...]] = ("QUEUED", "RUNNING", "COMPLETED")
DEFAULT_DATA: Final[Mapping[str, Any]] = {"c": {"0": 512, "1": 512}}
DEFAULT_TARGET: Final = "scripted"


def _status_text(entry: ScriptEntry) -> str:
    if isinstance(entry, JobState):
        return entry.value
    if not isinstance(entry, str) or not entry:
        raise TypeError(f"a script entry is a vendor status (str) or a JobState, not {entry!r}")
    return entry


@dataclass(slots=True, eq=False)
class _Run:
    """One scripted run."""

    task_id: str
    ref: RunRef
    spec: RunSpec
    key: str
    script: list[str]
    data: Any
    message: str
    code: str | None
    position: int = 0
    reads: int = 0
    #: The first terminal state this run reported or was driven to (the first one wins).
    ended: JobState | None = None
    #: The last active state reported, which an undocumented status keeps.
    active_state: JobState = JobState.SUBMITTED
    cancel_requested: bool = False
    #: Whether the cancel script has replaced the run's script (done at the first read after it).
    cancel_applied: bool = False
    cancel_reason: str | None = None
    ended_at: datetime | None = None
    reported: list[str] = field(default_factory=list)


class ScriptedBackend(Backend):
    """A scriptable, fully in-memory backend for tests. See the module docstring.

    :param script: the vendor statuses every run reports on successive status reads (the last one
        repeats); default ``["QUEUED", "RUNNING", "COMPLETED"]``.
    :param data: what ``result`` returns for a completed run unless ``complete`` gave other data.
    :param failure_message: the message a run its script reports ``FAILED`` fails with.
    :param failure_code: the code it fails with.
    :param targets: the target ids offered; the first is the default target.
    :param cancel_script: what a run reports from the first read after a cancel request (unless it
        had already ended); default ``["CANCELLED"]``, e.g. ``["CANCELLING", "CANCELLED"]`` for a
        vendor that takes a few reads to confirm.
    """

    name = "scripted"
    default_target = DEFAULT_TARGET
    batch_status = False
    min_poll_interval_s = 0.001
    max_poll_interval_s = 0.01

    #: Every documented vendor status and the lifecycle state it means.
    STATUS_TABLE: Final[Mapping[str, JobState]] = MappingProxyType(
        {
            "QUEUED": JobState.SUBMITTED,
            "SUBMITTED": JobState.SUBMITTED,
            "RUNNING": JobState.RUNNING,
            "CANCELLING": JobState.RUNNING,
            "COMPLETED": JobState.COMPLETED,
            "FAILED": JobState.FAILED,
            "CANCELLED": JobState.CANCELLED,
        }
    )

    def __init__(
        self,
        script: Sequence[ScriptEntry] = DEFAULT_SCRIPT,
        *,
        data: Any = None,
        failure_message: str = "the scripted run failed",
        failure_code: str | None = "SCRIPTED_FAILURE",
        targets: Sequence[str] = (DEFAULT_TARGET,),
        cancel_script: Sequence[ScriptEntry] = ("CANCELLED",),
    ) -> None:
        self._script = self._check_script(script)
        self._cancel_script = self._check_script(cancel_script)
        self._data = {k: dict(v) for k, v in DEFAULT_DATA.items()} if data is None else data
        self._failure_message = failure_message
        self._failure_code = failure_code
        if not targets or not all(isinstance(t, str) and t for t in targets):
            raise ValueError("targets is a non-empty sequence of non-empty strings")
        self._targets = list(targets)
        self.default_target = self._targets[0]
        self._runs: dict[str, _Run] = {}
        self._by_key: dict[str, str] = {}
        self._next_scripts: deque[list[str]] = deque()
        self._failures: dict[str, deque[BaseException]] = {m: deque() for m in METHODS}
        self._actions: dict[str, deque[Action]] = {m: deque() for m in METHODS}
        self._gate: anyio.Event | None = None  # None: submissions pass
        self._call_event: anyio.Event | None = None
        self._undocumented_seen: set[str] = set()
        #: Every recorded call, in order: ``(method, task_id or None)``.
        self.calls: list[tuple[str, str | None]] = []
        #: How many runs were created (a repeated idempotency key creates none).
        self.submissions = 0
        #: The idempotency key of every ``submit`` call, failed ones included, in order.
        self.submit_keys: list[str] = []
        #: The id of the newest run, or None before the first.
        self.last_task_id: str | None = None

    def __repr__(self) -> str:
        return f"ScriptedBackend(runs={len(self._runs)}, submissions={self.submissions})"

    # ------------------------------------------------------------------ scripting
    @staticmethod
    def _check_script(script: Iterable[ScriptEntry]) -> list[str]:
        if isinstance(script, str | JobState):
            raise TypeError("a script is a sequence of statuses, not one status")
        entries = [_status_text(entry) for entry in script]
        if not entries:
            raise ValueError("a script needs at least one status")
        return entries

    def script_next(self, script: Sequence[ScriptEntry]) -> None:
        """Use ``script`` for the next submission (queued scripts are used first in, first out)."""
        self._next_scripts.append(self._check_script(script))

    def fail_next(self, method: str, exc: BaseException) -> None:
        """Raise ``exc`` from the next call of ``method`` (after recording the call)."""
        self._check_method(method)
        self._failures[method].append(exc)

    def before_next(self, method: str, action: Action) -> None:
        """Run ``action(task_id)`` at the start of the next call of ``method``, awaiting its result
        if it returns an awaitable."""
        self._check_method(method)
        self._actions[method].append(action)

    def hold_submissions(self) -> None:
        """Make every ``submit`` wait (after being recorded) until :meth:`release_submissions`."""
        if self._gate is None or self._gate.is_set():
            self._gate = anyio.Event()

    def release_submissions(self) -> None:
        """Let held and future submissions through."""
        if self._gate is not None:
            self._gate.set()
        self._gate = None

    def set_state(self, task_id: str, state: JobState | str) -> None:
        """From now on the run reports ``state`` (a JobState or any vendor status string)."""
        run = self._run(task_id)
        status = _status_text(state)
        run.script = [status]
        run.position = 0
        mapped = self.STATUS_TABLE.get(status)
        if mapped is not None and mapped.is_terminal and run.ended is None:
            run.ended = mapped
            run.ended_at = datetime.now(UTC)
        self._notify_change(task_id)

    def complete(self, task_id: str, data: Any = None) -> None:
        """End the run COMPLETED with ``data`` (default: the backend's ``data``)."""
        run = self._run(task_id)
        if data is not None:
            run.data = data
        self.set_state(task_id, "COMPLETED")

    def fail(self, task_id: str, message: str = "the run failed", code: str | None = None) -> None:
        """End the run FAILED with ``message`` and ``code``."""
        run = self._run(task_id)
        run.message = message
        run.code = code
        self.set_state(task_id, "FAILED")

    # ------------------------------------------------------------------ inspection
    @property
    def task_ids(self) -> list[str]:
        """Every run's id, oldest first."""
        return list(self._runs)

    def calls_of(self, method: str) -> list[str | None]:
        """The task ids of the recorded calls of ``method``, in order."""
        return [task_id for name, task_id in self.calls if name == method]

    def reported(self, task_id: str) -> list[str]:
        """The vendor statuses the run reported so far, one per status read."""
        return list(self._run(task_id).reported)

    def cancel_requested(self, task_id: str) -> bool:
        """Whether a cancel of the run was received."""
        return self._run(task_id).cancel_requested

    async def wait_for_call(self, method: str, count: int = 1) -> None:
        """Wait until ``count`` calls of ``method`` were recorded. Never sleeps: put a deadline
        (``anyio.fail_after``) around it."""
        self._check_method(method)
        while len(self.calls_of(method)) < count:
            if self._call_event is None:
                self._call_event = anyio.Event()
            await self._call_event.wait()

    # ------------------------------------------------------------------ Backend
    def validate(self, spec: RunSpec) -> RunSpec:
        """Any non-empty program, a known target, a mapping as config."""
        program = spec.program
        if program is None or (isinstance(program, str | Mapping) and not program):
            raise JobValidationError("the program is empty")
        target = self.default_target if spec.target is None else spec.target
        if target not in self._targets:
            raise UnknownTargetError(str(target), list(self._targets))
        if not isinstance(spec.config, Mapping):
            raise JobValidationError(f"config must be a mapping, not {type(spec.config).__name__}")
        return RunSpec(program=program, target=target, config=dict(spec.config), tag=spec.tag)

    async def submit(self, spec: RunSpec, idempotency_key: str) -> RunRef:
        self.submit_keys.append(idempotency_key)
        await self._enter("submit", None)
        while self._gate is not None and not self._gate.is_set():
            await self._gate.wait()
        known = self._by_key.get(idempotency_key)
        if known is not None:
            return self._runs[known].ref
        script = self._next_scripts.popleft() if self._next_scripts else list(self._script)
        self.submissions += 1
        task_id = f"scripted-{self.submissions}"
        run = _Run(
            task_id=task_id,
            ref=RunRef(task_id),
            spec=spec,
            key=idempotency_key,
            script=script,
            data=self._data,
            message=self._failure_message,
            code=self._failure_code,
        )
        self._runs[task_id] = run
        self._by_key[idempotency_key] = task_id
        self.last_task_id = task_id
        return run.ref

    async def status(self, ref: RunRef) -> Observation:
        await self._enter("status", ref.task_id)
        run = self._run(ref.task_id)
        run.reads += 1
        if run.cancel_requested and not run.cancel_applied and run.ended is None:
            run.script, run.position = list(self._cancel_script), 0
            run.cancel_applied = True
        status = run.script[min(run.position, len(run.script) - 1)]
        run.position += 1
        run.reported.append(status)
        state = self.STATUS_TABLE.get(status)
        if state is None:
            if status not in self._undocumented_seen:
                self._undocumented_seen.add(status)
                logger.warning("scripted run %s reports undocumented status %r", run.task_id, status)
            state = run.active_state
        elif state.is_active:
            run.active_state = state
        elif run.ended is None:
            run.ended = state
            run.ended_at = datetime.now(UTC)
        message = code = None
        if state is JobState.FAILED:
            message, code = run.message, run.code
        elif state is JobState.CANCELLED:
            message = run.cancel_reason
        return Observation(
            state=state,
            vendor_status=status,
            message=message,
            code=code,
            ended_at=run.ended_at if state.is_terminal else None,
        )

    async def cancel(self, ref: RunRef, reason: str | None = None) -> None:
        """Mark the run cancel-requested; its next read says CANCELLED unless it already ended."""
        await self._enter("cancel", ref.task_id)
        run = self._run(ref.task_id)
        if run.ended is not None or run.cancel_requested:
            return
        run.cancel_requested = True
        run.cancel_reason = reason
        self._notify_change(ref.task_id)

    async def result(self, ref: RunRef, spec: RunSpec) -> Any:
        await self._enter("result", ref.task_id)
        run = self._run(ref.task_id)
        if run.ended is not JobState.COMPLETED:
            raise JobStateError(f"scripted run {run.task_id} did not complete; it has no result")
        return copy.deepcopy(run.data)

    async def diagnostics(self, ref: RunRef, spec: RunSpec) -> Diagnostics:
        await self._enter("diagnostics", ref.task_id)
        run = self._run(ref.task_id)
        return Diagnostics(
            timings={"status_reads": run.reads},
            metrics={"program_chars": len(str(run.spec.program))},
            metadata={"backend": self.name, "target": run.spec.target, "task_id": run.task_id},
        )

    async def list_targets(self) -> list[dict[str, Any]]:
        await self._enter("list_targets", None)
        return [{"id": t, "name": t, "status": "ACTIVE", "active": True} for t in self._targets]

    def can_resume(self, ref: RunRef) -> bool:
        return ref.task_id in self._runs

    def describe_unresumable(self, ref: RunRef) -> str:
        return f"this ScriptedBackend has no run {ref.task_id!r}"

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _check_method(method: str) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")

    def _run(self, task_id: str) -> _Run:
        run = self._runs.get(task_id)
        if run is None:
            raise NotFoundError(f"the scripted backend has no run {task_id!r}", status=404)
        return run

    async def _enter(self, method: str, task_id: str | None) -> None:
        """Record the call, run a queued action, raise a queued failure."""
        self.calls.append((method, task_id))
        event, self._call_event = self._call_event, None
        if event is not None:
            event.set()
        actions = self._actions[method]
        if actions:
            outcome = actions.popleft()(task_id)
            if inspect.isawaitable(outcome):
                await outcome
        failures = self._failures[method]
        if failures:
            raise failures.popleft()
