"""The backend interface: what ``Job`` asks of a vendor, and the registry of backends by name.

An adapter is thin. It validates a run spec (no I/O), turns it into the vendor's requests, and maps the
vendor's answers to :class:`Observation` through one status table. It never sleeps, polls or retries:
``polling.py`` waits, ``_http/`` retries.

Third-party backends register under the entry-point group ``oqc_style_sdk.backends``; the value is a
callable taking keyword settings and returning a :class:`Backend`.
"""

from __future__ import annotations

import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..exceptions import ConfigurationError, JobNotFoundError, JobValidationError
from ..state import JobState

__all__ = [
    "Backend",
    "Diagnostics",
    "FoundRun",
    "Observation",
    "RunQuery",
    "RunRef",
    "RunSpec",
    "available_backends",
    "create_backend",
    "parse_moment",
    "register_backend",
]

logger = logging.getLogger("oqc_style_sdk.backends")


@dataclass(frozen=True, slots=True)
class RunSpec:
    """Everything one run needs: what to run, where, and how."""

    program: Any
    target: str | None
    config: Mapping[str, Any] = field(default_factory=dict)
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class RunRef:
    """The vendor's handle of one run. ``task_id`` is the vendor's id; ``extra`` what else it needs."""

    task_id: str
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Observation:
    """One reading of a run's status, already mapped to the SDK's lifecycle."""

    state: JobState
    vendor_status: str
    #: On FAILED: the vendor's (or parser's) message and code; on CANCELLED, the reason if known.
    message: str | None = None
    code: str | None = None
    #: When the vendor says the run ended, if it says.
    ended_at: datetime | None = None

    def same_as(self, other: Observation | None) -> bool:
        """Whether nothing a waiter cares about changed."""
        return other is not None and other.state is self.state and other.vendor_status == self.vendor_status


@dataclass(frozen=True, slots=True)
class Diagnostics:
    """What ``fetch_diagnostics=True`` adds to a job. Each part is fetched on its own; None if not."""

    timings: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class FoundRun:
    """A run the vendor told us about, whoever made it (:meth:`Backend.find_run`, :meth:`Backend.list_runs`).

    ``spec`` is what the run does as far as the vendor's API says; its ``program`` is None where the
    API does not return it (``unknown_program`` then says why, for the error of a re-run).
    """

    ref: RunRef
    observation: Observation
    spec: RunSpec
    created_at: datetime | None = None
    unknown_program: str | None = None


@dataclass(frozen=True, slots=True)
class RunQuery:
    """The filters of a job listing. A backend applies at the vendor those its API takes; the Sdk
    applies every one again on its side, so one the vendor cannot apply is never ignored."""

    states: frozenset[JobState] | None = None
    target: str | None = None
    since: datetime | None = None
    tag: str | None = None
    #: How many runs one request asks for (the vendor's own maximum caps it).
    page_size: int = 100


def parse_moment(raw: object) -> datetime | None:
    """A vendor's ISO 8601 time (``Z`` or an offset; naive is UTC) as a datetime; None if it is not one."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Backend(ABC):
    """One vendor (or the local simulator) behind the SDK's lifecycle."""

    #: The registry name: ``local``, ``oqc``, ``ibm_quantum`` ...
    name: str = ""
    #: The target used when a job names none and the Sdk has no default.
    default_target: str | None = None
    #: Whether :meth:`statuses` reads many runs in one request.
    batch_status: bool = False
    #: How often, at the fastest, the poller reads a run that keeps changing (seconds).
    min_poll_interval_s: float = 0.5
    #: How slow the poller gets for a run that does not change (seconds).
    max_poll_interval_s: float = 10.0
    #: How many status reads may be in flight at once when there is no batch read.
    status_concurrency: int = 16
    #: Status requests per second the poller sends at most for this backend (None: no limit);
    #: ``PollingPolicy.max_reads_per_s`` overrides it.
    status_reads_per_s: float | None = 20.0
    #: Whether submitting again with the same idempotency key returns the same run (never a second
    #: one). Where False, a submission whose answer was lost is never resent blindly.
    idempotent_submit: bool = True
    #: Whether :meth:`submit_many` sends many runs in one request (a composite then uses it).
    batch_submit: bool = False

    _change_listener: Callable[[str], None] | None = None

    async def start(self, task_group: TaskGroup) -> None:  # noqa: B027 - optional hook
        """Connect (and check the backend is reachable). Background work goes in ``task_group``."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Runs still active at the vendor are left alone."""

    def identity(self) -> dict[str, str]:
        """What a saved job records to refuse loading into another backend or endpoint."""
        return {"backend": self.name}

    def set_change_listener(self, listener: Callable[[str], None] | None) -> None:
        """Backends that learn of changes without polling call ``listener(task_id)`` on each."""
        self._change_listener = listener

    def _notify_change(self, task_id: str) -> None:
        """Tell the listener ``task_id`` changed. It may be called from inside ``cancel()``; a
        failing listener is logged and never breaks the backend."""
        if self._change_listener is not None:
            try:
                self._change_listener(task_id)
            except Exception:
                logger.exception("change listener failed for %s", task_id)

    def peek(self, ref: RunRef) -> Observation | None:
        """The run's state as this process already knows it, without I/O, from a backend that
        tells the change listener of every change (the local simulator); None: it must be read."""
        return None

    @abstractmethod
    def validate(self, spec: RunSpec) -> RunSpec:
        """Check and normalise a spec without I/O; raise JobValidationError if it cannot run."""

    def local_idempotency_key(self, spec: RunSpec) -> str | None:
        """The key of a new run, made here with no request; None where the vendor gives it
        (OQC reserves task ids: :meth:`new_idempotency_key` asks for them).

        The Job fixes a run's key with it the moment its submission starts (and a save fixes it
        for a job not yet sent), so every saved file holds the key any request of that run
        carries. Vendors that let the client choose the run's id return such an id."""
        if type(self).new_idempotency_key is not Backend.new_idempotency_key:
            return None  # a backend that makes its keys its own way (a request, say)
        return uuid.uuid4().hex

    async def new_idempotency_key(self, spec: RunSpec) -> str:
        """The key of a new run, made before its first submission and saved with the job.

        The default is :meth:`local_idempotency_key`'s; a vendor that reserves ids (OQC) asks it."""
        return self.local_idempotency_key(spec) or uuid.uuid4().hex

    def recall_submission(self, idempotency_key: str, sent_at: datetime | None) -> None:  # noqa: B027
        """A submission with this key was sent before (last at ``sent_at``, if known) — by this
        Sdk, or by the process whose job file was loaded — and what became of it is not known:
        it may have created the run. Called before the key is submitted again.

        A vendor that takes the key finds its run by it and needs nothing here (the default).
        One that takes none (IBM) looks for that run first and creates none if it finds it."""

    @abstractmethod
    async def submit(self, spec: RunSpec, idempotency_key: str) -> RunRef:
        """Create the run at the vendor. Sent once; ``idempotency_key`` where the vendor takes one.

        ``spec`` has been through :meth:`validate` (the Job does it on creation and reconfigure).
        """

    async def new_idempotency_keys(self, specs: Sequence[RunSpec]) -> list[str]:
        """The keys of several new runs (one reservation request where the vendor has one)."""
        return [await self.new_idempotency_key(spec) for spec in specs]

    async def submit_many(
        self, specs: Sequence[RunSpec], idempotency_keys: Sequence[str]
    ) -> list[RunRef | BaseException]:
        """Create several runs; the outcome of each, in order (a failure in place of its ref).

        The default submits them one by one with at most :attr:`status_concurrency` in flight;
        backends with a batch submission (:attr:`batch_submit`) send few requests. Every key was
        made by :meth:`new_idempotency_key(s) <new_idempotency_keys>` and is saved with its job.
        """
        out: list[RunRef | BaseException] = [RuntimeError("not submitted")] * len(specs)
        limiter = anyio.CapacityLimiter(self.status_concurrency)

        async def one(i: int) -> None:
            async with limiter:
                try:
                    out[i] = await self.submit(specs[i], idempotency_keys[i])
                except Exception as exc:  # handed to the job it belongs to
                    out[i] = exc

        async with anyio.create_task_group() as tg:
            for i in range(len(specs)):
                tg.start_soon(one, i)
        return out

    @abstractmethod
    async def status(self, ref: RunRef) -> Observation:
        """Read one run's status (one request)."""

    async def statuses(self, refs: Sequence[RunRef]) -> dict[str, Observation | BaseException]:
        """Read many runs' statuses, keyed by task id.

        The default reads them one by one with at most :attr:`status_concurrency` in flight; backends
        whose vendor lists many jobs in one request override it. A failure of one read is returned in
        place of its observation, so one bad job does not hide the others.
        """
        out: dict[str, Observation | BaseException] = {}
        limiter = anyio.CapacityLimiter(self.status_concurrency)

        async def one(ref: RunRef) -> None:
            async with limiter:
                try:
                    out[ref.task_id] = await self.status(ref)
                except Exception as exc:  # handed to the job that asked, typed
                    out[ref.task_id] = exc

        async with anyio.create_task_group() as tg:
            for ref in refs:
                tg.start_soon(one, ref)
        return out

    @abstractmethod
    async def cancel(self, ref: RunRef, reason: str | None = None) -> None:
        """Ask the vendor to cancel the run. Confirmation comes from later status reads."""

    async def cancel_many(self, refs: Sequence[RunRef], reason: str | None = None) -> None:
        """Cancel several runs; vendors with a list-cancel endpoint send one request.

        The default asks for each run, at most :attr:`status_concurrency` at once. One request that
        fails does not stop the others (its answer may only have been lost: the vendor may have
        cancelled); once all were sent, the first failure is raised, typed as the backend raised it.
        """
        limiter = anyio.CapacityLimiter(self.status_concurrency)
        failures: list[Exception] = []

        async def one(ref: RunRef) -> None:
            async with limiter:
                try:
                    await self.cancel(ref, reason)
                except Exception as exc:  # the other runs are still asked
                    failures.append(exc)

        async with anyio.create_task_group() as tg:
            for ref in refs:
                tg.start_soon(one, ref)
        if failures:
            raise failures[0]

    @abstractmethod
    async def result(self, ref: RunRef, spec: RunSpec) -> Any:
        """The completed run's data (for quantum backends: counts per classical register)."""

    async def diagnostics(self, ref: RunRef, spec: RunSpec) -> Diagnostics:
        """Timings, metrics and metadata of an ended run; parts the vendor lacks stay None."""
        return Diagnostics()

    @abstractmethod
    async def list_targets(self) -> list[dict[str, Any]]:
        """The targets (QPUs, simulators, clusters ...) as dicts with at least ``id`` and ``name``."""

    # ------------------------------------------------------------------ finding runs
    #: Whether a run goes on when this process ends (False for the local simulator: `oqcs submit`
    #: is refused there, and an interrupted `oqcs run` leaves nothing behind).
    runs_outlive_process: bool = True
    #: Whether the vendor has a job list (:meth:`find_run`, :meth:`list_runs`). Without one, an Sdk
    #: lists and finds the jobs it made itself.
    has_job_list: bool = False
    #: The :class:`RunQuery` filters this backend can honour (at the vendor, or from what its
    #: listing says of each run). ``jobs(tag=...)`` on a backend without ``"tag"`` is refused.
    list_filters: frozenset[str] = frozenset({"states", "target", "since", "tag"})

    def check_task_id(self, task_id: str) -> None:
        """Refuse a task id of the wrong shape for this vendor (JobValidationError), before any request."""
        if not isinstance(task_id, str) or not task_id or task_id != task_id.strip() or "/" in task_id:
            raise JobValidationError(f"{task_id!r} is not a {self.name} task id")

    async def find_run(self, task_id: str) -> FoundRun:
        """The run ``task_id`` as the vendor knows it; :class:`JobNotFoundError` if it does not."""
        raise JobNotFoundError(task_id, self.name, "it cannot look runs up by id")

    def list_runs(self, query: RunQuery) -> AsyncIterator[FoundRun]:
        """The vendor's runs, newest first, one page per request, fetched only as they are asked for.

        Backends without a job list raise :class:`JobValidationError` (the Sdk then lists its own)."""
        raise JobValidationError(f"the {self.name} backend has no job list")

    def target_unavailable(self, target: str) -> tuple[str, datetime | None] | None:
        """``(state, next window)`` when the vendor lists ``target`` as unable to run jobs now
        (inactive, offline ...), from what it last listed (no I/O); None when it can run them."""
        return None

    def foreign_ref(self, ref: RunRef) -> str | None:
        """Why ``ref``, read from a job file, names a place this backend would not send its
        credentials to (``None``: it names none). ``load()`` refuses such a file before any request."""
        return None

    def can_resume(self, ref: RunRef) -> bool:
        """Whether an active run saved elsewhere can be followed from this backend."""
        return True

    def describe_unresumable(self, ref: RunRef) -> str:
        """Why :meth:`can_resume` said no, for the error message."""
        return "its run cannot be reached from this process"


BackendFactory = Callable[..., Backend]

_REGISTRY: dict[str, BackendFactory] = {}


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make ``Sdk(name)`` create backends with ``factory(**settings)``."""
    if not name.isidentifier():
        raise ConfigurationError(f"backend name {name!r} must be a Python identifier")
    _REGISTRY[name] = factory


_BUILTIN = {
    "local": ("oqc_style_sdk.backends.local", "LocalBackend"),
    "oqc": ("oqc_style_sdk.backends.oqc", "OqcBackend"),
    "ibm_quantum": ("oqc_style_sdk.backends.ibm_quantum", "IbmQuantumBackend"),
    "azure_quantum": ("oqc_style_sdk.backends.azure_quantum", "AzureQuantumBackend"),
    "databricks": ("oqc_style_sdk.backends.databricks", "DatabricksBackend"),
    "windmill": ("oqc_style_sdk.backends.windmill", "WindmillBackend"),
}


def _lazy(module: str, attr: str) -> BackendFactory:
    """A factory that imports its backend on first use (vendors pull in aiohttp, local qiskit)."""

    def factory(**settings: Any) -> Backend:
        cls: BackendFactory = getattr(import_module(module), attr)
        return cls(**settings)

    return factory


def _builtin() -> None:
    for name, (module, attr) in _BUILTIN.items():
        _REGISTRY.setdefault(name, _lazy(module, attr))


def _entry_point_factories() -> dict[str, BackendFactory]:
    found: dict[str, BackendFactory] = {}
    for ep in entry_points(group="oqc_style_sdk.backends"):
        try:
            found[ep.name] = ep.load()
        except Exception as exc:  # a broken plugin must not break the SDK
            logger.warning("backend plugin %r could not be loaded: %s", ep.name, exc)
    return found


def available_backends() -> list[str]:
    """The names ``Sdk(...)`` accepts."""
    _builtin()
    return sorted({*_REGISTRY, *_entry_point_factories()})


def create_backend(name: str, **settings: Any) -> Backend:
    """A new backend instance by registry name."""
    _builtin()
    factory = _REGISTRY.get(name) or _entry_point_factories().get(name)
    if factory is None:
        raise ConfigurationError(f"unknown backend {name!r}; available: {', '.join(available_backends())}")
    try:
        return factory(**settings)
    except TypeError as exc:
        raise ConfigurationError(f"backend {name!r} does not take these settings: {exc}") from exc
