"""The lifecycle table (pure) and a real ``Job`` driven through random operation sequences."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oqc_style_sdk import Sdk
from oqc_style_sdk.backends.base import Backend, Observation, RunRef, RunSpec
from oqc_style_sdk.exceptions import InvalidTransitionError, JobStateError, JobValidationError
from oqc_style_sdk.job import Job
from oqc_style_sdk.job_output import JobCancellation, JobError, JobResult
from oqc_style_sdk.state import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    JobState,
    check_transition,
    is_allowed,
)

S = JobState

EXPECTED: dict[JobState, set[JobState]] = {
    S.CREATED: {S.SUBMITTED, S.FAILED, S.CANCELLED},
    S.SUBMITTED: {S.RUNNING, S.COMPLETED, S.FAILED, S.CANCELLED},
    S.RUNNING: {S.COMPLETED, S.FAILED, S.CANCELLED},
    S.COMPLETED: {S.CREATED},
    S.FAILED: {S.CREATED},
    S.CANCELLED: {S.CREATED},
}

ALL_PAIRS = list(itertools.product(JobState, JobState))


# ------------------------------------------------------------------------------------------- the table
def test_transition_table_is_exactly_the_expected_one() -> None:
    assert set(TRANSITIONS) == set(JobState)
    assert {source: set(targets) for source, targets in TRANSITIONS.items()} == EXPECTED


def test_transition_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[S.COMPLETED] = frozenset({S.RUNNING})  # type: ignore[index]
    assert isinstance(TRANSITIONS[S.CREATED], frozenset)


def test_all_36_pairs_are_enumerated() -> None:
    assert len(ALL_PAIRS) == 36
    assert sum(is_allowed(a, b) for a, b in ALL_PAIRS) == sum(len(v) for v in EXPECTED.values())


@pytest.mark.parametrize(("source", "target"), ALL_PAIRS, ids=[f"{a.value}->{b.value}" for a, b in ALL_PAIRS])
def test_check_transition_for_every_pair(source: JobState, target: JobState) -> None:
    legal = target in EXPECTED[source]
    assert is_allowed(source, target) is legal
    if legal:
        assert check_transition(source, target) is None
        return
    with pytest.raises(InvalidTransitionError) as info:
        check_transition(source, target)
    err = info.value
    assert isinstance(err, JobStateError)
    assert err.source == source.value
    assert err.target == target.value
    assert source.value in str(err)
    assert target.value in str(err)


def test_staying_put_is_not_a_move() -> None:
    for state in JobState:
        assert not is_allowed(state, state)


def test_active_and_terminal_partition_the_states() -> None:
    assert frozenset({S.CREATED, S.SUBMITTED, S.RUNNING}) == ACTIVE_STATES
    assert frozenset({S.COMPLETED, S.FAILED, S.CANCELLED}) == TERMINAL_STATES
    assert ACTIVE_STATES.isdisjoint(TERMINAL_STATES)
    assert set(JobState) == ACTIVE_STATES | TERMINAL_STATES
    for state in JobState:
        assert state.is_active is (state in ACTIVE_STATES)
        assert state.is_terminal is (state in TERMINAL_STATES)
        assert state.is_active is not state.is_terminal


def test_state_is_a_string_of_its_name() -> None:
    for state in JobState:
        assert state == state.value
        assert JobState(state.value) is state


# ------------------------------------------------------------------------------------------- hypothesis
def _reachable(start: JobState) -> set[JobState]:
    seen = {start}
    todo = [start]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@given(st.sampled_from(list(JobState)))
def test_every_state_is_reachable_from_created(state: JobState) -> None:
    assert state in _reachable(S.CREATED)
    # ... and every state leads back to CREATED (a new run), so no state is a dead end
    assert S.CREATED in _reachable(state) or state is S.CREATED


@given(st.sampled_from(sorted(TERMINAL_STATES)), st.sampled_from(list(JobState)))
def test_from_a_terminal_state_the_only_way_out_is_a_new_run(source: JobState, target: JobState) -> None:
    assert is_allowed(source, target) is (target is S.CREATED)


@given(st.sampled_from(sorted(ACTIVE_STATES)))
def test_active_states_never_go_back_to_created(source: JobState) -> None:
    assert not is_allowed(source, S.CREATED)
    assert TRANSITIONS[source] & TERMINAL_STATES  # every active state can end


@given(st.lists(st.sampled_from(list(JobState)), max_size=40))
def test_random_move_sequences(moves: list[JobState]) -> None:
    state = S.CREATED
    path = [state]
    for target in moves:
        before = state
        if is_allowed(state, target):
            check_transition(state, target)
            state = target
            path.append(state)
        else:
            with pytest.raises(InvalidTransitionError):
                check_transition(state, target)
            assert state is before  # an illegal move changes nothing
    # Every step of the path is legal; a terminal state is only ever left for CREATED.
    for a, b in itertools.pairwise(path):
        assert b in EXPECTED[a]
        if a.is_terminal:
            assert b is S.CREATED


# ------------------------------------------------------------------------------------------- a real Job
class StepBackend(Backend):
    """A deterministic in-memory backend: each status read moves a run one step along.

    ``"fail"`` programs end FAILED, ``"reject"`` programs are refused at submit; anything else
    completes. Cancel ends an active run at once.
    """

    name = "step"
    default_target = "step-target"
    min_poll_interval_s = 0.001
    max_poll_interval_s = 0.004

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, RunRef] = {}
        self.submits = 0
        self.cancels = 0

    def validate(self, spec: RunSpec) -> RunSpec:
        if not isinstance(spec.program, str):
            raise JobValidationError("a program is a str")
        return RunSpec(spec.program, spec.target or self.default_target, dict(spec.config), spec.tag)

    async def submit(self, spec: RunSpec, idempotency_key: str) -> RunRef:
        await anyio.lowlevel.checkpoint()
        if idempotency_key in self.by_key:
            return self.by_key[idempotency_key]
        if spec.program == "reject":
            raise JobValidationError("refused by the step backend")
        self.submits += 1
        ref = RunRef(f"task-{self.submits}")
        self.runs[ref.task_id] = {"state": S.SUBMITTED, "program": spec.program}
        self.by_key[idempotency_key] = ref
        return ref

    async def status(self, ref: RunRef) -> Observation:
        run = self.runs[ref.task_id]
        state: JobState = run["state"]
        if state is S.SUBMITTED:
            run["state"] = S.RUNNING
        elif state is S.RUNNING:
            run["state"] = S.FAILED if run["program"] == "fail" else S.COMPLETED
        return Observation(
            state=state,
            vendor_status=state.value,
            message="it failed" if state is S.FAILED else None,
            code="BOOM" if state is S.FAILED else None,
        )

    async def cancel(self, ref: RunRef, reason: str | None = None) -> None:
        self.cancels += 1
        run = self.runs[ref.task_id]
        if run["state"].is_active:
            run["state"] = S.CANCELLED

    async def result(self, ref: RunRef, spec: RunSpec) -> Any:
        return {"program": spec.program, "task": ref.task_id}

    async def list_targets(self) -> list[dict[str, Any]]:
        return [{"id": self.default_target, "name": "step"}]


class TracingJob(Job):
    """A Job that records every write of its state (the state machine's only writer is Job)."""

    @property  # type: ignore[override]
    def _state(self) -> JobState:
        return self.__dict__["_traced_state"]

    @_state.setter
    def _state(self, value: JobState) -> None:
        old = self.__dict__.get("_traced_state")
        self.__dict__.setdefault("_trace", []).append((old, value))
        self.__dict__["_traced_state"] = value

    @property
    def trace(self) -> list[tuple[JobState, JobState]]:
        """Every move after construction, as (from, to)."""
        return self.__dict__["_trace"][1:]


OPS = (
    "execute",
    "submit",
    "wait",
    "cancel",
    "cancel_if_active",
    "refresh",
    "reconfigure_ok",
    "reconfigure_fail",
    "reconfigure_reject",
)


def _check_invariants(job: TracingJob, backend: StepBackend) -> None:
    trace = job.trace
    for old, new in trace:
        assert is_allowed(old, new), f"illegal move {old} -> {new} in {trace}"
    ended = sum(1 for _, new in trace if new.is_terminal)
    new_runs = sum(1 for old, new in trace if old.is_terminal and new is S.CREATED)
    history = job.history.all()
    # One history entry per ended run, runs strictly increasing and never after the current one.
    assert len(history) == ended
    runs = [o.run for o in history]
    assert all(a < b for a, b in itertools.pairwise(runs))
    assert all(r <= job.run for r in runs)
    # A new run only ever starts from a terminal state.
    assert job.run == 1 + new_runs
    # One submission per run that reached the vendor (single flight, idempotent).
    assert backend.submits == sum(1 for old, new in trace if old is S.CREATED and new is S.SUBMITTED)
    if job.ended:
        assert history, "a terminal job has a history"
        assert job.outputs.one is history[-1]
        assert history[-1].run == job.run
        assert type(history[-1]).state is job.state
        expected_type = {S.COMPLETED: JobResult, S.FAILED: JobError, S.CANCELLED: JobCancellation}
        assert isinstance(history[-1], expected_type[job.state])
        assert (job.result is not None) is (job.state is S.COMPLETED)
        assert (job.error is not None) is (job.state is S.FAILED)
    else:
        assert len(job.outputs) == 0
        assert job.result is None
        assert not runs or runs[-1] < job.run


async def _drive(ops: Sequence[str]) -> None:
    backend = StepBackend()
    async with Sdk(backend) as sdk:
        job = TracingJob(sdk, sdk._validate_spec(RunSpec(program="ok", target=None)))
        _check_invariants(job, backend)
        for op in ops:
            before_state, before_run, before_history = job.state, job.run, len(job.history)
            submits, cancels = backend.submits, backend.cancels
            with anyio.fail_after(5):
                if op == "execute":
                    outputs = await job.execute(timeout_s=5)
                    assert job.ended
                    assert outputs == job.outputs
                    if before_state in (S.SUBMITTED, S.RUNNING):
                        assert job.run == before_run  # resumed, not resubmitted
                        assert backend.submits == submits
                elif op == "submit":
                    await job.submit()
                    assert job.state is not S.CREATED
                    if before_state in (S.SUBMITTED, S.RUNNING):
                        assert backend.submits == submits
                        assert job.run == before_run
                    if before_state.is_terminal:
                        assert job.run == before_run + 1
                elif op == "wait":
                    if before_state is S.CREATED:
                        with pytest.raises(JobStateError):
                            await job.wait(timeout_s=5)
                        assert job.state is S.CREATED
                    else:
                        await job.wait(timeout_s=5)
                        assert job.ended
                        assert job.run == before_run
                elif op in ("cancel", "cancel_if_active"):
                    if op == "cancel":
                        await job.cancel("stop")
                    else:
                        assert await job.cancel_if_active("stop") is before_state.is_active
                    assert job.ended
                    assert job.run == before_run
                    if before_state.is_terminal:
                        assert job.state is before_state
                        assert len(job.history) == before_history
                    if before_state is S.CREATED:
                        assert job.state is S.CANCELLED
                        assert backend.cancels == cancels  # nothing sent for a never-sent job
                elif op == "refresh":
                    state = await job.refresh()
                    assert state is job.state
                    assert job.run == before_run
                    if before_state in (S.CREATED, *TERMINAL_STATES):
                        assert job.state is before_state
                else:
                    program = op.removeprefix("reconfigure_")
                    if before_state in (S.SUBMITTED, S.RUNNING):
                        with pytest.raises(JobStateError):
                            job.reconfigure(program=program)
                        assert (job.state, job.run, len(job.history)) == (
                            before_state,
                            before_run,
                            before_history,
                        )
                    else:
                        job.reconfigure(program=program)
                        assert job.state is S.CREATED
                        assert job.program == program
                        assert job.run == before_run + (1 if before_state.is_terminal else 0)
            _check_invariants(job, backend)
        assert all(o._job is job for o in job.history)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(OPS), max_size=12))
def test_random_operations_on_a_real_job_keep_the_lifecycle(ops: list[str]) -> None:
    anyio.run(_drive, ops)


def test_every_operation_at_least_once_in_a_fixed_sequence() -> None:
    anyio.run(
        _drive,
        [
            "refresh",
            "submit",
            "submit",
            "refresh",
            "reconfigure_ok",
            "execute",
            "execute",
            "reconfigure_fail",
            "execute",
            "reconfigure_reject",
            "submit",
            "cancel_if_active",
            "reconfigure_ok",
            "cancel",
            "submit",
            "cancel",
            "wait",
        ],
    )
