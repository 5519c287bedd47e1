"""Finding jobs made elsewhere: ``sdk.job(task_id)`` and ``sdk.jobs(...)``.

The rules of a listing live here, once: how the filters are read (``state``, ``target``, ``since``,
``tag``, ``limit``), how each is applied again on our side (a vendor that cannot apply one never makes
it silently ignored), and how paged vendor lists are merged newest first. Backends only turn the
vendor's list endpoint into :class:`~oqc_style_sdk.backends.base.FoundRun` pages
(:meth:`~oqc_style_sdk.backends.base.Backend.list_runs`); nothing is fetched until it is asked for.

A backend without a job list (the local simulator, whose runs live in this process) lists the jobs
this Sdk made or loaded.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .backends.base import FoundRun, RunQuery
from .exceptions import JobNotFoundError, JobValidationError, NotFoundError
from .state import JobState

if TYPE_CHECKING:
    from .client import Sdk
    from .composite import CompositeJob
    from .job import Job

__all__ = ["OwnJobs", "find_job", "list_jobs", "parse_since", "parse_states", "query"]

#: The default page size of a listing (a vendor's own maximum caps it).
PAGE_SIZE = 100

_STATE_WORDS = {
    "active": frozenset({JobState.CREATED, JobState.SUBMITTED, JobState.RUNNING}),
    "ended": frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}),
}


def parse_states(state: Any) -> frozenset[JobState] | None:
    """``state=``: a JobState or its name (``"RUNNING"``, ``"completed"``), ``"active"``/``"ended"``,
    or several of them; None for every state."""
    if state is None:
        return None
    items = [state] if isinstance(state, str | JobState) else state
    if not isinstance(items, Iterable):
        raise JobValidationError(f"state must be a JobState, its name, or several; not {state!r}")
    out: set[JobState] = set()
    for item in items:
        if isinstance(item, JobState):
            out.add(item)
            continue
        word = item.strip().lower() if isinstance(item, str) else None
        if word in _STATE_WORDS:
            out |= _STATE_WORDS[word]
            continue
        try:
            out.add(JobState(str(item).strip().upper()))
        except ValueError:
            names = ", ".join([s.value for s in JobState] + list(_STATE_WORDS))
            raise JobValidationError(f"unknown state {item!r}; one of {names}") from None
    if not out:
        raise JobValidationError("state= names no state")
    return frozenset(out)


def parse_since(since: Any, *, now: datetime | None = None) -> datetime | None:
    """``since=``: a datetime (naive is UTC) or a timedelta before now; None for no bound."""
    if since is None:
        return None
    if isinstance(since, timedelta):
        if since <= timedelta(0):
            raise JobValidationError("since= as a timedelta is how long ago, and must be positive")
        return (now or datetime.now(UTC)) - since
    if isinstance(since, datetime):
        return since if since.tzinfo is not None else since.replace(tzinfo=UTC)
    raise JobValidationError(f"since must be a datetime or a timedelta, not {type(since).__name__}")


def query(
    sdk: Sdk, *, state: Any, target: Any, since: Any, tag: Any, limit: Any, page_size: Any
) -> tuple[RunQuery, int | None]:
    """Check the filters of ``sdk.jobs(...)`` (before any request) and make the backend's query."""
    if target is not None and (not isinstance(target, str) or not target):
        raise JobValidationError("target must be a non-empty string")
    if tag is not None and not isinstance(tag, str):
        raise JobValidationError(f"tag must be a string, not {type(tag).__name__}")
    for name, value in (("limit", limit), ("page_size", page_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise JobValidationError(f"{name} must be a whole number of at least 1, not {value!r}")
    q = RunQuery(
        states=parse_states(state),
        target=target,
        since=parse_since(since),
        tag=tag,
        page_size=page_size or (min(limit, PAGE_SIZE) if limit else PAGE_SIZE),
    )
    backend = sdk.backend
    if backend.has_job_list:
        asked = {name for name in ("states", "target", "since", "tag") if getattr(q, name) is not None}
        refused = sorted(asked - backend.list_filters)
        if refused:
            raise JobValidationError(
                f"{backend.name} cannot filter jobs by {', '.join(refused)}: its job list does not "
                "say it of a run"
            )
    return q, limit


def matches(found: FoundRun, q: RunQuery) -> bool:
    """Whether a listed run passes every filter (each applied here, whatever the vendor did)."""
    if q.states is not None and found.observation.state not in q.states:
        return False
    if q.target is not None and found.spec.target != q.target:
        return False
    if q.tag is not None and found.spec.tag != q.tag:
        return False
    return not (q.since is not None and found.created_at is not None and found.created_at < q.since)


def older_than_since(found: FoundRun, q: RunQuery) -> bool:
    """A newest-first listing is past ``since`` once one run is older: nothing later can match."""
    return q.since is not None and found.created_at is not None and found.created_at < q.since


async def merge_newest(streams: list[AsyncIterator[FoundRun]]) -> AsyncIterator[FoundRun]:
    """Several newest-first streams (one per QPU ...) as one newest-first stream, lazily: one run
    ahead per stream, a stream's next page fetched only when its head is taken."""
    heads: list[tuple[FoundRun, AsyncIterator[FoundRun]]] = []
    for stream in streams:
        first = await anext(stream, None)
        if first is not None:
            heads.append((first, stream))
    floor = datetime.min.replace(tzinfo=UTC)
    while heads:
        i = max(range(len(heads)), key=lambda n: heads[n][0].created_at or floor)
        found, stream = heads[i]
        yield found
        following = await anext(stream, None)
        if following is None:
            del heads[i]
        else:
            heads[i] = (following, stream)


async def find_job(sdk: Sdk, task_id: str) -> Job:
    """``sdk.job(task_id)``: the job of that vendor run, its state read, its outcome if it ended."""
    from .job import Job

    if not isinstance(task_id, str):
        raise JobValidationError(f"a task id is a string, not {type(task_id).__name__}")
    backend = sdk.backend
    if not backend.has_job_list:
        own = sdk._own_jobs.by_task_id(task_id)
        if own is None:
            raise JobNotFoundError(task_id, backend.name, "no job of this Sdk has that task id")
        return own
    backend.check_task_id(task_id)
    try:
        found = await backend.find_run(task_id)
    except JobNotFoundError:
        raise
    except NotFoundError as exc:  # the vendor's 404, named for what was asked
        raise JobNotFoundError(task_id, backend.name, str(exc), status=exc.status) from exc
    return await Job._attach(sdk, found)


async def list_jobs(sdk: Sdk, q: RunQuery, limit: int | None) -> AsyncIterator[Job]:
    """``sdk.jobs(...)``: newest first; the vendor's pages are read one at a time, as they are used."""
    from .job import Job

    if limit is not None and limit < 1:  # pragma: no cover - checked by query()
        return
    count = 0
    if not sdk.backend.has_job_list:
        for job in sdk._own_jobs.newest_first():
            if _own_matches(job, q):
                yield job
                count += 1
                if count == limit:
                    return
        return
    stream = sdk.backend.list_runs(q)
    try:
        async for found in stream:
            if older_than_since(found, q):
                return
            if not matches(found, q):
                continue
            yield Job._listed(sdk, found)
            count += 1
            if count == limit:
                return
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


def _own_matches(job: Job, q: RunQuery) -> bool:
    if q.states is not None and job.state not in q.states:
        return False
    if q.target is not None and job.target != q.target:
        return False
    if q.tag is not None and job.tag != q.tag:
        return False
    if q.since is not None:
        submitted = job._submitted_at
        return submitted is not None and submitted >= q.since
    return True


class OwnJobs:
    """The jobs an Sdk without a vendor job list made or loaded, weakly held, oldest first.

    A composite is held as one entry (its children are listed from it), so a composite of 100 000
    jobs costs one weak reference, not 100 000.
    """

    __slots__ = ("_refs",)

    def __init__(self) -> None:
        self._refs: list[weakref.ref[Any]] = []

    def add(self, made: Job | CompositeJob) -> None:
        self._refs.append(weakref.ref(made))
        if len(self._refs) >= 64 and len(self._refs) & (len(self._refs) - 1) == 0:
            self._refs = [ref for ref in self._refs if ref() is not None]  # drop the collected

    def newest_first(self) -> Iterator[Job]:
        from .composite import CompositeJob

        for ref in reversed(list(self._refs)):
            made = ref()
            if made is None:
                continue
            if isinstance(made, CompositeJob):
                yield from reversed(made.jobs)
            else:
                yield made

    def by_task_id(self, task_id: str) -> Job | None:
        return next((job for job in self.newest_first() if job.task_id == task_id), None)
