"""What a run leaves behind, and the collection wrapper that queries it.

A finished run leaves exactly one output in its job's history:

- :class:`JobResult` — it COMPLETED; ``data`` holds the counts (or the vendor's result).
- :class:`JobError` — it FAILED; ``message`` and ``code`` say why.
- :class:`JobCancellation` — it was CANCELLED; ``reason`` says why, if given.

:class:`JobPending` stands in a composite's outputs for a child still active, so that output ``i``
always belongs to child ``i``. Each output carries the settings that produced it (program, target,
config): :meth:`JobOutput.reexecute` and :meth:`JobOutput.resubmit` run them again on the parent job.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from .exceptions import JobCancelledError, JobFailed, JobStateError
from .state import JobState

if TYPE_CHECKING:
    from .job import Job

__all__ = [
    "JobCancellation",
    "JobError",
    "JobOutput",
    "JobOutputProxy",
    "JobPending",
    "JobResult",
]

T = TypeVar("T")
_object_setattr = object.__setattr__


class JobOutput(BaseModel):
    """The outcome of one run, with the settings that produced it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    #: The program that ran (for quantum backends: OpenQASM text or a qiskit circuit).
    program: Any = None
    #: The target (QPU, simulator, cluster ...) it ran on.
    target: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    #: The vendor's id of the run.
    task_id: str | None = None
    #: 1 for the job's first run, 2 for the next ...
    run: int = 1
    #: When the run ended (the vendor's time where it gives one), timezone-aware UTC.
    received: datetime | None = None

    ok: ClassVar[bool] = False
    is_error: ClassVar[bool] = False
    state: ClassVar[JobState]

    _job: Job | None = PrivateAttr(default=None)

    @property
    def qpu_id(self) -> str | None:
        """Alias of :attr:`target`, as the OQC SDK names it."""
        return self.target

    def _bind(self, job: Job) -> None:
        self._job = job

    @classmethod
    def _made_for(cls, job: Job, **values: Any) -> Self:
        """``cls(**values)`` bound to ``job``, for values the SDK made itself (types it checked, a
        config dict of the output's own), built without validating them again: one is made per
        result read, thousands for a big composite. Every field without a plain default
        (``config``) must be given. Equal to the validated model, field for field.

        Not ``model_construct``: it takes twice as long (14.6 µs against 7.2 µs per result,
        1.46 s against 0.72 s for 100,000 on the reference machine; ``benchmarks/made_for.py``)."""
        template, needed, known = _layout(cls)
        given = values.keys()
        if not needed <= given:
            raise TypeError(f"{cls.__name__}._made_for needs {min(needed - given)}")
        if not given <= known:
            raise TypeError(f"{cls.__name__} has no field(s) {sorted(given - known)}")
        output = cls.__new__(cls)
        fields = {**template, **values}  # in the fields' order, as validation makes them
        _object_setattr(output, "__dict__", fields)
        _object_setattr(output, "__pydantic_fields_set__", set(values))
        _object_setattr(output, "__pydantic_extra__", None)
        _object_setattr(output, "__pydantic_private__", {"_job": job})
        return output

    def _parent(self) -> Job:
        if self._job is None:
            raise JobStateError("this output is not attached to a job (it was built by hand)")
        return self._job

    async def reexecute(self, *, timeout_s: float | None = None) -> JobOutputProxy:
        """Restore this output's settings on the parent job and run it again, waiting to the end."""
        job = self._parent()
        job.reconfigure(memento=self)
        return await job.execute(timeout_s=timeout_s)

    async def resubmit(self) -> None:
        """Restore this output's settings on the parent job and submit it without waiting."""
        job = self._parent()
        job.reconfigure(memento=self)
        await job.submit()


@functools.cache
def _layout(cls: type[JobOutput]) -> tuple[dict[str, Any], frozenset[str], frozenset[str]]:
    """An output class's fields in order, each with its plain default (``_made_for``): the
    template of its ``__dict__``; the fields that have none (they must be given); all of them."""
    plain = {
        name: field.default
        for name, field in cls.model_fields.items()
        if field.default_factory is None and not field.is_required()
    }
    template = {name: plain.get(name) for name in cls.model_fields}
    return template, frozenset(template.keys() - plain.keys()), frozenset(template)


class JobResult(JobOutput):
    """A completed run."""

    kind: Literal["result"] = "result"
    #: Measurement data keyed by classical register: ``{'c': {'00': 507, '11': 517}}``.
    data: Any = None

    ok: ClassVar[bool] = True
    state: ClassVar[JobState] = JobState.COMPLETED


class JobError(JobOutput):
    """A failed run. ``ok`` is always False, whatever the code."""

    kind: Literal["error"] = "error"
    message: str = "the run failed"
    code: str | None = None

    is_error: ClassVar[bool] = True
    state: ClassVar[JobState] = JobState.FAILED


class JobCancellation(JobOutput):
    """A cancelled run: neither ok nor an error."""

    kind: Literal["cancellation"] = "cancellation"
    reason: str | None = None

    state: ClassVar[JobState] = JobState.CANCELLED


class JobPending(JobOutput):
    """Stands for a composite child that has not ended (yet): never in a history."""

    kind: Literal["pending"] = "pending"
    pending_state: JobState = JobState.CREATED

    state: ClassVar[JobState] = JobState.CREATED


class JobOutputProxy(Sequence[JobOutput]):
    """A read-only list of outputs with a small query interface.

    Works the same for a :class:`~oqc_style_sdk.job.Job` (one output per run) and a
    :class:`~oqc_style_sdk.composite.CompositeJob` (one per child, in child order).
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[JobOutput] = ()) -> None:
        self._items: tuple[JobOutput, ...] = tuple(items)

    # -- Sequence ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> JobOutput: ...
    @overload
    def __getitem__(self, index: slice) -> JobOutputProxy: ...
    def __getitem__(self, index: int | slice) -> JobOutput | JobOutputProxy:
        if isinstance(index, slice):
            return JobOutputProxy(self._items[index])
        return self._items[index]

    def __iter__(self) -> Iterator[JobOutput]:
        return iter(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JobOutputProxy):
            return self._items == other._items
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ", ".join(_short(o) for o in self._items[:5])
        more = f", … {len(self._items) - 5} more" if len(self._items) > 5 else ""
        return f"JobOutputProxy([{inner}{more}])"

    def _repr_html_(self) -> str:
        from .display import outputs_html

        return outputs_html(self)

    def __rich__(self) -> Any:
        from .display import outputs_rich

        return outputs_rich(self)

    # -- queries -----------------------------------------------------------------------------
    @property
    def first(self) -> JobOutput | None:
        """The first output, or None when there is none."""
        return self._items[0] if self._items else None

    @property
    def last(self) -> JobOutput | None:
        """The last output, or None when there is none."""
        return self._items[-1] if self._items else None

    @property
    def one(self) -> JobOutput:
        """The only output; ValueError unless there is exactly one."""
        if len(self._items) != 1:
            raise ValueError(f"expected exactly one output, found {len(self._items)}")
        return self._items[0]

    def all(self) -> list[JobOutput]:
        """Every output, as a list."""
        return list(self._items)

    def filter(self, predicate: Callable[[JobOutput], bool]) -> JobOutputProxy:
        """The outputs for which ``predicate`` is true."""
        return JobOutputProxy(o for o in self._items if predicate(o))

    def map(self, fn: Callable[[JobOutput], T]) -> list[T]:
        """``fn`` applied to each output."""
        return [fn(o) for o in self._items]

    def results(self) -> JobOutputProxy:
        """Only the completed runs."""
        return self.filter(lambda o: isinstance(o, JobResult))

    def errors(self) -> JobOutputProxy:
        """Only the failed runs."""
        return self.filter(lambda o: isinstance(o, JobError))

    def cancellations(self) -> JobOutputProxy:
        """Only the cancelled runs."""
        return self.filter(lambda o: isinstance(o, JobCancellation))

    def pending(self) -> JobOutputProxy:
        """Only the stand-ins of composite children that have not ended."""
        return self.filter(lambda o: isinstance(o, JobPending))

    @property
    def ok(self) -> bool:
        """True when there is at least one output and every one completed."""
        return bool(self._items) and all(o.ok for o in self._items)

    def raise_for_status(self) -> None:
        """Raise :class:`JobFailed` (the same type as ``Job.raise_for_status``) unless all are ok."""
        bad = [(i, o) for i, o in enumerate(self._items) if not o.ok]
        if not bad:
            return
        i, o = bad[0]
        what = f"{len(bad)} of {len(self._items)} outputs did not complete; first: #{i} {_short(o)}"
        if all(isinstance(x, JobCancellation) for _, x in bad):
            raise JobCancelledError(what, error=o)
        raise JobFailed(what, error=o)


def _short(o: JobOutput) -> str:
    if isinstance(o, JobResult):
        return f"JobResult(run={o.run}, data={_clip(o.data)})"
    if isinstance(o, JobError):
        return f"JobError(run={o.run}, code={o.code!r}, message={_clip(o.message)})"
    if isinstance(o, JobCancellation):
        return f"JobCancellation(run={o.run})"
    if isinstance(o, JobPending):
        return f"JobPending({o.pending_state.value})"
    return type(o).__name__


def _clip(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
