"""The job lifecycle as data: states, the active/terminal split and the one transition table.

```
CREATED ──► SUBMITTED ──► RUNNING ──► COMPLETED | FAILED | CANCELLED
   │            └──────────────────────► (terminal, straight from SUBMITTED)
   └──► CANCELLED (never submitted)  └──► FAILED (rejected before the vendor accepted it)

terminal ──► CREATED   only as a *new run* (execute() on a terminal job, reconfigure()):
                       history is kept, the old run's outcome stays in it.
```

This module is pure: no I/O, no clocks. ``Job`` is its only caller that changes state.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from .exceptions import InvalidTransitionError

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "JobState",
    "check_transition",
    "is_allowed",
    "state_rank",
]


class JobState(StrEnum):
    """Where a job is in its lifecycle. ``str`` so that it compares and serialises as its name."""

    CREATED = "CREATED"
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    #: True for CREATED, SUBMITTED and RUNNING. (Plain attributes, set on each state below, not
    #: properties: they are read at every step of every job.)
    is_active: bool
    #: True for COMPLETED, FAILED and CANCELLED.
    is_terminal: bool


ACTIVE_STATES: frozenset[JobState] = frozenset({JobState.CREATED, JobState.SUBMITTED, JobState.RUNNING})
TERMINAL_STATES: frozenset[JobState] = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
for _state in JobState:
    _state.is_active = _state in ACTIVE_STATES
    _state.is_terminal = _state in TERMINAL_STATES
del _state

_NEW_RUN = frozenset({JobState.CREATED})

#: Every legal move. A terminal state's only way out is ``CREATED``: the start of a new run.
TRANSITIONS: Mapping[JobState, frozenset[JobState]] = MappingProxyType(
    {
        JobState.CREATED: frozenset({JobState.SUBMITTED, JobState.FAILED, JobState.CANCELLED}),
        JobState.SUBMITTED: frozenset(
            {JobState.RUNNING, JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}
        ),
        JobState.RUNNING: frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}),
        JobState.COMPLETED: _NEW_RUN,
        JobState.FAILED: _NEW_RUN,
        JobState.CANCELLED: _NEW_RUN,
    }
)


def is_allowed(source: JobState, target: JobState) -> bool:
    """Whether ``source → target`` is a legal move (staying put is not a move)."""
    return target in TRANSITIONS[source]


def check_transition(source: JobState, target: JobState) -> None:
    """Raise :class:`InvalidTransitionError` unless ``source → target`` is legal."""
    if not is_allowed(source, target):
        raise InvalidTransitionError(source.value, target.value)


_RANK = {JobState.CREATED: 0, JobState.SUBMITTED: 1, JobState.RUNNING: 2}


def state_rank(state: JobState) -> int:
    """How far along the lifecycle a state is; all terminal states share the last rank."""
    return _RANK.get(state, 3)
