"""``Sdk``: one backend, a default target, and the lifetime of everything that talks to it.

```python
async with Sdk() as sdk:                       # the embedded local simulator
    job = sdk.create_job(program=BELL)
    await job.execute(timeout_s=30)
```

Entering the ``async with`` starts the backend (connections, a reachability check) and the poller in
one task group; leaving it stops them. Jobs outlive the block as plain objects, but their verbs need
an open Sdk: outside ``async with`` every verb raises :class:`SdkNotStartedError` at once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import anyio
from anyio.abc import TaskGroup

from . import programs
from ._text import check_utf8
from ._waiting import deadline
from .backends.base import Backend, RunRef, RunSpec, create_backend
from .exceptions import (
    ConfigurationError,
    ForeignJobFileError,
    JobValidationError,
    SdkNotStartedError,
    TargetUnavailableError,
)
from .finding import OwnJobs, find_job, list_jobs, query
from .polling import Poller, PollingPolicy

if TYPE_CHECKING:
    from .composite import CompositeJob
    from .job import Job

__all__ = ["OqcSdk", "Sdk"]

logger = logging.getLogger("oqc_style_sdk")

T = TypeVar("T")


class Sdk:
    """An async context manager around one backend.

    ``Sdk()`` runs on the embedded local simulator; ``Sdk("oqc")``, ``Sdk("ibm_quantum")`` ... on a
    vendor, with credentials from the environment or keyword ``settings``. A ready
    :class:`~oqc_style_sdk.backends.base.Backend` instance is accepted too.
    """

    def __init__(
        self,
        backend: str | Backend = "local",
        *,
        default_target: str | None = None,
        polling: PollingPolicy | None = None,
        **settings: Any,
    ) -> None:
        if isinstance(backend, Backend):
            if settings:
                raise ConfigurationError("settings go to the backend's constructor, not to Sdk()")
            self._backend = backend
        elif isinstance(backend, str):
            self._backend = create_backend(backend, **settings)
        else:
            raise ConfigurationError(
                f"backend must be a backend name or a Backend, not {type(backend).__name__}"
            )
        if default_target is not None and not isinstance(default_target, str):
            raise ConfigurationError("default_target must be a string")
        self._default_target = default_target
        self._poller = Poller(self._backend, polling)
        self._tg: TaskGroup | None = None
        self._open = False
        #: The jobs this Sdk made or loaded, listed by ``jobs()`` where the vendor has no job list.
        self._own_jobs = OwnJobs()

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        return f"<Sdk backend={self._backend.name!r} default_target={self.default_target!r} {state}>"

    # ------------------------------------------------------------------ lifetime
    async def __aenter__(self) -> Sdk:
        if self._tg is not None:
            raise SdkNotStartedError("this Sdk is already open; an Sdk is entered once")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            await self._backend.start(tg)
            await tg.start(self._poller.run)
            self._backend.set_change_listener(self._poller.poke)
        except BaseException as exc:
            tg.cancel_scope.cancel()
            # A start-up failure reaches the caller as itself (BackendUnavailableError,
            # AuthenticationError ...), not wrapped in the task group's ExceptionGroup.
            if isinstance(exc, Exception):
                await tg.__aexit__(None, None, None)
            else:
                await tg.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._tg = tg
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        tg, self._tg = self._tg, None
        self._open = False
        self._backend.set_change_listener(None)
        if tg is None:  # pragma: no cover - __aenter__ failed
            return None
        tg.cancel_scope.cancel()
        try:
            with anyio.CancelScope(shield=True):
                await self._backend.aclose()
        finally:
            # The task group holds only the SDK's own background work, which never raises. An
            # ordinary exception from the user's block is not the group's business: it must reach
            # the caller as itself, not wrapped in an ExceptionGroup. Cancellation still goes through.
            if isinstance(exc, Exception):
                await tg.__aexit__(None, None, None)
            else:
                await tg.__aexit__(exc_type, exc, tb)
        return None

    @property
    def is_open(self) -> bool:
        return self._open

    def _require_open(self) -> None:
        if not self._open:
            raise SdkNotStartedError(
                "the Sdk is not open: use it as `async with Sdk(...) as sdk:` and create, run "
                "and load jobs inside that block"
            )

    def _spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        self._require_open()
        assert self._tg is not None
        self._tg.start_soon(fn, *args)

    # ------------------------------------------------------------------ backend and targets
    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def poller(self) -> Poller:
        return self._poller

    @property
    def default_target(self) -> str | None:
        """The target used when ``create_job`` names none."""
        return self._default_target or self._backend.default_target

    def set_default_target(self, target: str) -> None:
        """Use ``target`` for jobs created without one from now on."""
        if not isinstance(target, str) or not target:
            raise JobValidationError("a target is a non-empty string")
        check_utf8(target, "target")
        self._default_target = target

    set_default_qpu = set_default_target

    async def list_targets(self) -> list[dict[str, Any]]:
        """The backend's targets (QPUs, simulators ...), each a dict with ``id`` and ``name``."""
        self._require_open()
        return await self._backend.list_targets()

    list_qpus = list_targets

    # ------------------------------------------------------------------ jobs
    def _validate_spec(self, spec: RunSpec) -> RunSpec:
        program = programs.one(spec.program)
        if spec.target is None or program is not spec.program:
            target = self.default_target if spec.target is None else spec.target
            spec = RunSpec(program, target, spec.config, spec.tag)
        if spec.tag is not None and not isinstance(spec.tag, str):
            raise JobValidationError(f"tag must be a string, not {type(spec.tag).__name__}")
        return self._backend.validate(spec)

    @overload
    def create_job(
        self,
        *,
        program: str | Mapping[str, Any] | tuple[Any, Sequence[float] | Mapping[Any, float]],
        target: str | None = None,
        qpu_id: str | None = None,
        config: Mapping[str, Any] | None = None,
        fetch_diagnostics: bool = False,
        tag: str | None = None,
        queue: bool = False,
    ) -> Job: ...
    @overload
    def create_job(
        self,
        *,
        program: Sequence[Any],
        target: str | Sequence[str | None] | None = None,
        qpu_id: str | Sequence[str | None] | None = None,
        config: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        fetch_diagnostics: bool = False,
        tag: str | None = None,
        queue: bool = False,
    ) -> CompositeJob: ...
    def create_job(
        self,
        *,
        program: Any,
        target: Any = None,
        qpu_id: Any = None,
        config: Any = None,
        fetch_diagnostics: bool = False,
        tag: str | None = None,
        queue: bool = False,
    ) -> Job | CompositeJob:
        """Make a job; nothing is sent. A list in program/target/config makes a CompositeJob.

        Lists are taken element-wise (child ``i`` gets ``program[i]``, ``target[i]``,
        ``config[i]``); a single value applies to every child. ``qpu_id`` is an alias of ``target``.
        A quantum program is OpenQASM text, a qiskit ``QuantumCircuit`` or ``(circuit, values)``;
        ``(circuit, sweep)`` makes a CompositeJob of one child per binding (see
        :mod:`oqc_style_sdk.programs`). Bad input raises :class:`JobValidationError` here, before
        anything is sent. A target the vendor lists as inactive or offline raises
        :class:`TargetUnavailableError` (its state, and when it runs next where the vendor says)
        unless ``queue=True`` asks to wait for it.
        """
        from .composite import CompositeJob
        from .job import Job

        self._require_open()
        target = check_job_args(target, qpu_id, fetch_diagnostics)
        if not isinstance(queue, bool):
            raise JobValidationError("queue must be True or False")
        program = programs.expand(program)
        lists = {
            name: value
            for name, value in (("program", program), ("target", target), ("config", config))
            if isinstance(value, list | tuple)
        }
        if not lists:
            single = self._validate_spec(make_spec(program, target, config, tag))
            if not queue:
                self._check_available(single)
            job = Job(self, single, fetch_diagnostics=fetch_diagnostics)
            self._keep(job)
            return job
        sizes = {name: len(value) for name, value in lists.items()}
        if len(set(sizes.values())) != 1:
            raise JobValidationError(f"lists of different lengths for a composite job: {sizes}")
        n = next(iter(sizes.values()))
        if n == 0:
            raise JobValidationError("a composite job needs at least one program")

        def pick(value: Any, i: int) -> Any:
            return value[i] if isinstance(value, list | tuple) else value

        children = []
        # Children made of the same objects share one validated spec (it is immutable): a
        # composite of one program a thousand times is validated once, not a thousand times.
        validated: dict[tuple[int, int, int], RunSpec] = {}
        for i in range(n):
            child = (pick(program, i), pick(target, i), pick(config, i))
            key = (id(child[0]), id(child[1]), id(child[2]))
            spec = validated.get(key)
            if spec is None:
                try:
                    spec = validated[key] = self._validate_spec(make_spec(*child, tag))
                    if not queue:
                        self._check_available(spec)
                except JobValidationError as exc:
                    exc.add_note(f"(in child {i} of the composite job)")
                    raise
            children.append(Job(self, spec, fetch_diagnostics=fetch_diagnostics))
        composite = CompositeJob(self, children)
        self._keep(composite)
        return composite

    def _check_available(self, spec: RunSpec) -> None:
        """Refuse a target the vendor lists as unable to run jobs now (no I/O: from its last list)."""
        if spec.target is not None:
            unavailable = self._backend.target_unavailable(spec.target)
            if unavailable is not None:
                state, next_window = unavailable
                raise TargetUnavailableError(spec.target, state, next_window=next_window)

    def _keep(self, made: Job | CompositeJob) -> None:
        """Remember a job for ``jobs()``/``job()`` where the backend has no job list to ask."""
        if not self._backend.has_job_list:
            self._own_jobs.add(made)

    async def load(
        self,
        path: str | Path,
        *,
        lost_runs: Literal["raise", "fail"] = "raise",
        timeout_s: float | None = None,
    ) -> Job | CompositeJob:
        """Read a job (or composite) saved with ``save()`` and attach it to this Sdk.

        An active run that cannot be followed from here (a local simulation that lived in another
        process) raises :class:`JobNotResumableError`; ``lost_runs="fail"`` loads it as FAILED
        instead, with its history, ready for a fresh ``execute()``. Only a regular file is read (a
        FIFO or a device raises :class:`PersistenceError` at once); past ``timeout_s``, or when the
        caller is cancelled, the read is given up (:class:`JobTimeoutError`).
        """
        from .composite import CompositeJob
        from .job import Job
        from .persistence import read

        self._require_open()
        if lost_runs not in ("raise", "fail"):
            raise ValueError("lost_runs is 'raise' or 'fail'")
        with deadline(timeout_s, lambda: f"reading the job file {path}"):
            document = await read(path, identity=self._backend.identity())
        for snap in document.jobs:  # where credentials go is the Sdk's to decide, never the file's
            why = (
                None
                if snap.ref is None
                else self._backend.foreign_ref(RunRef(snap.ref.task_id, snap.ref.extra))
            )
            if why is not None:
                raise ForeignJobFileError(f"{path}: job {snap.id} {why}; it was not loaded")
        jobs = [Job._restored(self, snap, lost_runs=lost_runs) for snap in document.jobs]
        loaded: Job | CompositeJob = (
            jobs[0]
            if document.composite_id is None
            else CompositeJob(self, jobs, composite_id=document.composite_id)
        )
        self._keep(loaded)
        return loaded

    # ------------------------------------------------------------------ finding jobs
    async def job(self, task_id: str) -> Job:
        """The job of an existing vendor run, whoever made it (this SDK elsewhere, the vendor's own
        client or web page): its state read from the vendor, an ended run's outcome in its history.

        Then it is a job like any other: ``wait``, ``result``, ``cancel``, ``save`` ... and
        ``execute()`` runs it again where the vendor returned its program. An unknown id raises
        :class:`JobNotFoundError`; an id of the wrong shape for the vendor
        :class:`JobValidationError`, before any request. On the local backend: a job of this Sdk.
        """
        self._require_open()
        return await find_job(self, task_id)

    def jobs(
        self,
        *,
        state: Any = None,
        target: str | None = None,
        since: Any = None,
        tag: str | None = None,
        limit: int | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Job]:
        """The backend's jobs, newest first, as an async iterator: ``async for job in sdk.jobs():``.

        The vendor's list is read one page (``page_size`` runs) at a time, only as the loop asks for
        more. Filters: ``state`` (a JobState or its name, ``"active"``, ``"ended"``, or several),
        ``target``, ``since`` (a datetime, or a timedelta before now), ``tag``; each is applied at the
        vendor where its API takes it and on our side always. ``limit`` stops after that many jobs.
        An ended job's result is read by its first ``wait()`` (a listing costs its pages only).
        Bad filters raise :class:`JobValidationError` here, before any request. On the local
        backend: the jobs of this Sdk.
        """
        self._require_open()
        q, most = query(
            self, state=state, target=target, since=since, tag=tag, limit=limit, page_size=page_size
        )
        return list_jobs(self, q, most)


# The argument checks of create_job and Job.reconfigure, written once.
def check_job_args(target: Any, qpu_id: Any, fetch_diagnostics: Any) -> Any:
    """Check the settings every job takes; return the target (``qpu_id`` is its alias)."""
    if target is not None and qpu_id is not None and target != qpu_id:
        raise JobValidationError("target and qpu_id name the same setting; give one")
    if not isinstance(fetch_diagnostics, bool):
        raise JobValidationError("fetch_diagnostics must be True or False")
    return target if target is not None else qpu_id


def make_spec(program: Any, target: Any, config: Any, tag: str | None) -> RunSpec:
    """One run's settings, checked for type (the backend's ``validate`` checks the rest)."""
    if target is not None and not isinstance(target, str):
        raise JobValidationError(f"target must be a string, not {type(target).__name__}")
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise JobValidationError(f"config must be a mapping, not {type(config).__name__}")
    for value, field in ((program, "program"), (target, "target"), (config, "config"), (tag, "tag")):
        check_utf8(value, field)
    return RunSpec(program=program, target=target, config=dict(config), tag=tag)


class OqcSdk(Sdk):
    """``Sdk("oqc")`` with the OQC SDK's constructor: ``OqcSdk(url, authentication_token,
    default_qpu_id)``. Unset ``url`` and ``authentication_token`` come from ``OQC_URL`` and
    ``OQC_AUTHENTICATION_TOKEN``."""

    def __init__(
        self,
        url: str | None = None,
        authentication_token: str | None = None,
        default_qpu_id: str | None = None,
        *,
        polling: PollingPolicy | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(
            "oqc",
            default_target=default_qpu_id,
            polling=polling,
            url=url,
            authentication_token=authentication_token,
            **settings,
        )
