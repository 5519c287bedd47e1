"""CompositeJob: element-wise creation, aligned outputs, one deadline, bounded concurrency, cancel."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from oqc_style_sdk import Sdk
from oqc_style_sdk.backends.base import RunRef, RunSpec
from oqc_style_sdk.backends.local import QPU_STAND_IN_TARGET, SIMULATOR_TARGET, LocalBackend
from oqc_style_sdk.composite import CompositeJob
from oqc_style_sdk.exceptions import (
    JobCancelledError,
    JobFailed,
    JobStateError,
    JobTimeoutError,
    JobValidationError,
    UnknownTargetError,
)
from oqc_style_sdk.job import Job
from oqc_style_sdk.job_output import JobCancellation, JobError, JobPending, JobResult
from oqc_style_sdk.state import JobState
from tests.common import BELL

S = JobState

ONE = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; x q[0]; measure q[0] -> c[0];'
ZERO = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; measure q[0] -> c[0];'
BAD = 'OPENQASM 5.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
LONG = {"min_duration_s": 30}


async def warm_up(sdk: Sdk) -> None:
    """Pay qiskit's first import before anything is timed."""
    await sdk.create_job(program=ONE, config={"shots": 1}).execute(timeout_s=60)


# ------------------------------------------------------------------------------------------- create_job
async def test_program_list_with_one_target() -> None:
    async with Sdk() as sdk:
        comp = sdk.create_job(program=[BELL, ONE, ZERO], target=QPU_STAND_IN_TARGET, tag="batch")
        assert isinstance(comp, CompositeJob)
        assert len(comp) == 3
        assert [c.program for c in comp] == [BELL, ONE, ZERO]
        assert all(isinstance(c, Job) for c in comp)
        assert {c.target for c in comp} == {QPU_STAND_IN_TARGET}
        assert {c.tag for c in comp} == {"batch"}
        assert comp.state is S.CREATED
        assert comp.summary() == {S.CREATED: 3}
        assert comp.jobs == tuple(comp)
        assert comp[1] is comp.jobs[1]
        assert list(comp[1:]) == list(comp.jobs[1:])
        assert len({c.id for c in comp}) == 3
        via_alias = sdk.create_job(program=(ONE, ZERO), qpu_id=QPU_STAND_IN_TARGET)
        assert isinstance(via_alias, CompositeJob)
        assert [c.qpu_id for c in via_alias] == [QPU_STAND_IN_TARGET] * 2


async def test_equal_length_lists_are_taken_element_wise() -> None:
    async with Sdk() as sdk:
        comp = sdk.create_job(
            program=[BELL, ONE, ZERO],
            target=[SIMULATOR_TARGET, QPU_STAND_IN_TARGET, None],
            config=[{"shots": 10}, {"shots": 20, "seed": 3}, None],
        )
        assert isinstance(comp, CompositeJob)
        assert [c.program for c in comp] == [BELL, ONE, ZERO]
        assert [c.target for c in comp] == [SIMULATOR_TARGET, QPU_STAND_IN_TARGET, SIMULATOR_TARGET]
        assert [c.config.get("shots") for c in comp] == [10, 20, 1000]
        assert comp[1].config["seed"] == 3
        # a list in config alone makes a composite too, with the one program for every child
        by_config = sdk.create_job(program=ONE, config=[{"shots": 1}, {"shots": 2}])
        assert isinstance(by_config, CompositeJob)
        assert [c.program for c in by_config] == [ONE, ONE]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"program": [BELL, ONE], "target": [SIMULATOR_TARGET]},
        {"program": [BELL, ONE], "config": [{}, {}, {}]},
        {"program": [BELL], "target": [SIMULATOR_TARGET] * 2, "config": [{}]},
    ],
)
async def test_lists_of_different_lengths_are_refused(kwargs: dict[str, Any]) -> None:
    async with Sdk() as sdk:
        with pytest.raises(JobValidationError, match="different lengths"):
            sdk.create_job(**kwargs)


@pytest.mark.parametrize("kwargs", [{"program": []}, {"program": ()}, {"program": ONE, "config": []}])
async def test_an_empty_list_is_refused(kwargs: dict[str, Any]) -> None:
    async with Sdk() as sdk:
        with pytest.raises(JobValidationError, match="at least one"):
            sdk.create_job(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "index"),
    [
        ({"program": [BELL, 42, ONE]}, JobValidationError, 1),
        ({"program": [BELL, ONE, {"not": "qasm"}]}, JobValidationError, 2),
        ({"program": [BELL, ONE], "config": [{}, {"nope": 1}]}, JobValidationError, 1),
        ({"program": [BELL, ONE], "target": ["qpu:nowhere", SIMULATOR_TARGET]}, UnknownTargetError, 0),
        ({"program": [BELL, "   "]}, JobValidationError, 1),
    ],
)
async def test_a_bad_child_is_refused_naming_its_index(
    kwargs: dict[str, Any], error: type[Exception], index: int
) -> None:
    async with Sdk() as sdk:
        with pytest.raises(error) as info:
            sdk.create_job(**kwargs)
    notes = getattr(info.value, "__notes__", [])
    assert any(f"child {index}" in note for note in notes), notes


async def test_children_of_the_same_settings_stay_independent() -> None:
    """Children made of the same objects share one validated spec; changing one child's
    settings, or the caller's config dict afterwards, changes no other child."""
    config = {"shots": 10}
    async with Sdk() as sdk:
        comp = sdk.create_job(program=[BELL] * 3, target=QPU_STAND_IN_TARGET, config=config)
        config["shots"] = 99
        comp[0].reconfigure(config={"shots": 20})
        comp[1].config["shots"] = 30  # a copy
        assert [c.config for c in comp] == [{"shots": 20}, {"shots": 10}, {"shots": 10}]
        assert [c.program for c in comp] == [BELL] * 3
        await comp.execute(timeout_s=30)
        assert [sum(c.result.data["c"].values()) for c in comp if c.result] == [20, 10, 10]


# ------------------------------------------------------------------------------------------- execute
async def test_outputs_are_aligned_with_children() -> None:
    async with Sdk() as sdk:
        comp = sdk.create_job(program=[BELL, BAD, ONE, ZERO], config={"shots": 50})
        assert isinstance(comp, CompositeJob)
        outputs = await comp.execute(timeout_s=60)
        assert len(outputs) == len(comp) == 4
        assert [type(o) for o in outputs] == [JobResult, JobError, JobResult, JobResult]
        for child, output in zip(comp, outputs, strict=True):
            assert output is child.outputs.one
            assert output.program == child.program
            assert output.task_id == child.task_id
        assert outputs[1].code == "PARSE_ERROR"
        assert outputs[2].data == {"c": {"1": 50}}
        assert outputs[3].data == {"c": {"0": 50}}
        assert outputs == comp.outputs
        assert comp.state is S.FAILED
        assert comp.ended
        assert not comp.completed
        assert comp.summary() == {S.COMPLETED: 3, S.FAILED: 1}
        # raise_for_status: one failed child -> JobFailed (not the cancelled subclass)
        with pytest.raises(JobFailed) as info:
            comp.raise_for_status()
        assert type(info.value) is JobFailed
        assert info.value.error is outputs[1]
        assert "#1" in str(info.value)


async def test_one_deadline_for_all_children_and_resume() -> None:
    timeout = 0.6
    async with Sdk(max_concurrency=8) as sdk:
        await warm_up(sdk)
        comp = sdk.create_job(
            program=[ONE, ONE, ZERO, ZERO],
            config=[{"shots": 5}, {"shots": 5, "min_duration_s": 1.2}, {"shots": 5}, {"min_duration_s": 1.2}],
        )
        assert isinstance(comp, CompositeJob)
        start = anyio.current_time()
        with pytest.raises(JobTimeoutError) as info:
            await comp.execute(timeout_s=timeout)
        elapsed = anyio.current_time() - start
        assert elapsed <= timeout + 0.25, f"deadline overrun: {elapsed:.3f} s"
        err = info.value
        assert isinstance(err, TimeoutError)
        assert err.outputs is not None
        assert len(err.outputs) == 4  # never dropped: output i is child i
        assert [type(o) for o in err.outputs] == [JobResult, JobPending, JobResult, JobPending]
        assert err.outputs[0] is comp[0].outputs.one
        assert err.outputs[2] is comp[2].outputs.one
        for i in (1, 3):
            pending = err.outputs[i]
            assert isinstance(pending, JobPending)
            assert pending.pending_state in (S.SUBMITTED, S.RUNNING)
            assert pending.task_id == comp[i].task_id is not None
            assert pending.program == comp[i].program
            assert pending.run == 1
        assert err.state in (S.SUBMITTED.value, S.RUNNING.value)
        assert len(err.outputs.pending()) == 2
        assert len(err.outputs.results()) == 2
        # nothing was cancelled: the long children are still running, attached
        assert comp.active
        assert comp[1].active
        assert comp[3].active
        long_tasks = [comp[1].task_id, comp[3].task_id]
        with pytest.raises(JobStateError):
            comp.raise_for_status()

        outputs = await comp.execute(timeout_s=30)  # resumes
        assert comp.completed
        assert comp.state is S.COMPLETED
        assert [type(o) for o in outputs] == [JobResult] * 4
        assert [len(c.history) for c in comp] == [1, 1, 1, 1]  # finished children not re-run
        assert [c.run for c in comp] == [1, 1, 1, 1]
        assert [comp[1].task_id, comp[3].task_id] == long_tasks  # resumed, not resubmitted
        comp.raise_for_status()  # all completed: nothing raised


async def test_deadline_holds_while_a_submission_hangs() -> None:
    """A child whose submission has not been answered by the deadline is JobPending(CREATED)."""

    class GatedLocal(LocalBackend):
        def __init__(self) -> None:
            super().__init__(max_concurrency=8)
            self.gate = anyio.Event()
            self.submits = 0

        async def submit(self, spec: RunSpec, idempotency_key: str) -> RunRef:
            self.submits += 1
            if spec.config.get("shots") == 7:
                await self.gate.wait()
            return await super().submit(spec, idempotency_key)

    backend = GatedLocal()
    timeout = 0.3
    async with Sdk(backend) as sdk:
        await warm_up(sdk)
        comp = sdk.create_job(program=[ONE, ZERO, ONE], config=[{}, {"shots": 7}, {}])
        assert isinstance(comp, CompositeJob)
        start = anyio.current_time()
        with pytest.raises(JobTimeoutError) as info:
            await comp.execute(timeout_s=timeout)
        assert anyio.current_time() - start <= timeout + 0.25
        outputs = info.value.outputs
        assert outputs is not None
        assert [type(o) for o in outputs] == [JobResult, JobPending, JobResult]
        assert outputs[1].pending_state is S.CREATED
        assert outputs[1].task_id is None
        assert info.value.state == S.CREATED.value
        submits = backend.submits
        backend.gate.set()
        await comp.execute(timeout_s=30)  # resumes the one submission in flight
        assert comp.completed
        assert backend.submits == submits  # not sent twice
        assert [c.run for c in comp] == [1, 1, 1]


async def test_cancel_while_execute_waits() -> None:
    async with Sdk(max_concurrency=8) as sdk:
        comp = sdk.create_job(program=[ONE, ZERO, ONE], config=LONG)
        assert isinstance(comp, CompositeJob)
        results: list[Any] = []

        async def run() -> None:
            results.append(await comp.execute(timeout_s=30))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                await comp[0].submit()  # joins the in-flight submission
                await comp[1].submit()
                await comp[2].submit()
                assert await comp.cancel("stop") == {S.CANCELLED: 3}
        assert [type(o) for o in results[0]] == [JobCancellation] * 3
        assert [c.run for c in comp] == [1, 1, 1]


async def test_many_small_jobs_with_bounded_concurrency() -> None:
    class CountingLocal(LocalBackend):
        """Counts submissions in flight; each takes a moment so that they could overlap."""

        def __init__(self) -> None:
            super().__init__(max_concurrency=8)
            self.in_flight = 0
            self.most = 0
            self.submits = 0

        async def submit(self, spec: RunSpec, idempotency_key: str) -> RunRef:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            try:
                await anyio.sleep(0.001)
                self.submits += 1
                return await super().submit(spec, idempotency_key)
            finally:
                self.in_flight -= 1

    n = 210  # over OQC's hard cap of 200: there is none here
    backend = CountingLocal()
    async with Sdk(backend) as sdk:
        comp = sdk.create_job(program=[ONE if i % 2 else ZERO for i in range(n)], config={"shots": 4})
        assert isinstance(comp, CompositeJob)
        with anyio.fail_after(60):
            outputs = await comp.execute(timeout_s=60, max_concurrency=5)
    assert len(outputs) == n
    assert comp.completed
    assert backend.submits == n
    assert 2 <= backend.most <= 5
    assert [o.data for o in outputs[:2]] == [{"c": {"0": 4}}, {"c": {"1": 4}}]


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, None])
async def test_max_concurrency_must_be_a_positive_int(bad: Any) -> None:
    async with Sdk() as sdk:
        comp = sdk.create_job(program=[ONE, ZERO])
        with pytest.raises(JobValidationError, match="max_concurrency"):
            await comp.execute(max_concurrency=bad)
        assert comp.state is S.CREATED  # nothing was sent


async def test_timeout_must_be_positive() -> None:
    async with Sdk() as sdk:
        comp = sdk.create_job(program=[ONE, ZERO])
        with pytest.raises(JobValidationError, match="timeout_s"):
            await comp.execute(timeout_s=0)
        assert comp.state is S.CREATED


# ------------------------------------------------------------------------------------------- cancel
async def test_cancel_if_active_with_finished_and_running_children() -> None:
    async with Sdk(max_concurrency=8) as sdk:
        comp = sdk.create_job(program=[ONE, ONE, ZERO, ZERO], config=[{}, LONG, {}, LONG])
        assert isinstance(comp, CompositeJob)
        await comp.submit(timeout_s=30)
        await comp[0].wait(timeout_s=30)
        await comp[2].wait(timeout_s=30)
        assert comp.active
        assert comp.state in (S.SUBMITTED, S.RUNNING)
        running = repr(comp)
        assert "2 COMPLETED" in running
        with pytest.raises(JobStateError, match="not ended"):
            comp.raise_for_status()

        assert await comp.cancel_if_active("enough") is True
        assert [c.state for c in comp] == [S.COMPLETED, S.CANCELLED, S.COMPLETED, S.CANCELLED]
        outputs = comp.outputs
        assert [type(o) for o in outputs] == [JobResult, JobCancellation, JobResult, JobCancellation]
        assert [o.reason for o in outputs.cancellations()] == ["enough", "enough"]
        assert comp.summary() == {S.COMPLETED: 2, S.CANCELLED: 2}
        assert comp.state is S.CANCELLED
        assert comp.ended
        assert not comp.active
        assert not comp.completed
        text = repr(comp)
        assert "2 COMPLETED" in text
        assert "2 CANCELLED" in text
        for active in ("CREATED", "SUBMITTED", "RUNNING"):
            assert active not in text  # cancelled children are not counted as active
        # history: every child's, child after child
        expected = [o for c in comp for o in c.history]
        assert comp.history.all() == expected
        assert all(a is b for a, b in zip(comp.history, expected, strict=True))
        assert len(comp.history) == 4
        with pytest.raises(JobCancelledError):
            comp.raise_for_status()
        assert await comp.cancel_if_active() is False  # nothing active: a no-op
        assert [c.state for c in comp] == [S.COMPLETED, S.CANCELLED, S.COMPLETED, S.CANCELLED]


async def test_cancel_never_submitted_children() -> None:
    async with Sdk() as sdk:
        comp = sdk.create_job(program=[ONE, ZERO])
        assert isinstance(comp, CompositeJob)
        summary = await comp.cancel("not today")
        assert summary == {S.CANCELLED: 2}
        assert [c.task_id for c in comp] == [None, None]
        assert all(c.run == 1 for c in comp)


# ------------------------------------------------------------------------------------------- aggregate
@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([S.CREATED], S.CREATED),
        ([S.COMPLETED, S.CREATED, S.RUNNING], S.CREATED),
        ([S.RUNNING, S.SUBMITTED, S.FAILED], S.SUBMITTED),
        ([S.RUNNING, S.COMPLETED, S.CANCELLED], S.RUNNING),
        ([S.RUNNING, S.FAILED], S.RUNNING),
        ([S.COMPLETED, S.COMPLETED], S.COMPLETED),
        ([S.COMPLETED, S.FAILED, S.CANCELLED], S.FAILED),
        ([S.FAILED], S.FAILED),
        ([S.COMPLETED, S.CANCELLED], S.CANCELLED),
        ([S.CANCELLED, S.CANCELLED], S.CANCELLED),
    ],
)
def test_aggregate_state_rules(states: list[JobState], expected: JobState) -> None:
    comp = CompositeJob(None, [SimpleNamespace(state=s) for s in states])  # type: ignore[arg-type, misc]
    assert comp.state is expected
    summary = comp.summary()
    assert sum(summary.values()) == len(states)
    assert all(n > 0 for n in summary.values())
    assert list(summary) == [s for s in JobState if s in states]  # lifecycle order
    text = repr(comp)
    for state, n in summary.items():
        assert f"{n} {state.value}" in text
    assert f"{len(states)} jobs" in text


# ------------------------------------------------------------------------------------------- re-run, save
async def test_reexecute_of_an_ended_composite_starts_fresh_runs_of_all() -> None:
    async with Sdk() as sdk:
        comp = sdk.create_job(program=[BELL, BAD, ONE], config={"shots": 20})
        assert isinstance(comp, CompositeJob)
        await comp.execute(timeout_s=60)
        first_tasks = [c.task_id for c in comp]
        outputs = await comp.execute(timeout_s=60)
        assert [c.run for c in comp] == [2, 2, 2]
        assert [len(c.history) for c in comp] == [2, 2, 2]
        assert all(a != b for a, b in zip(first_tasks, (c.task_id for c in comp), strict=True))
        assert [o.run for o in outputs] == [2, 2, 2]
        assert [type(o) for o in outputs] == [JobResult, JobError, JobResult]
        assert [o.run for o in comp.history] == [1, 2, 1, 2, 1, 2]


async def test_save_and_load_round_trip(tmp_path: Path) -> None:
    async with Sdk() as sdk, Sdk() as other:
        comp = sdk.create_job(program=[BELL, BAD, ONE], config={"shots": 32}, tag="rt")
        assert isinstance(comp, CompositeJob)
        await comp.execute(timeout_s=60)
        path = await comp.save(tmp_path / "comp.json")
        loaded = await other.load(path)
        assert isinstance(loaded, CompositeJob)
        assert loaded.id == comp.id
        assert [c.id for c in loaded] == [c.id for c in comp]
        assert [c.state for c in loaded] == [c.state for c in comp]
        assert [c.task_id for c in loaded] == [c.task_id for c in comp]
        assert [c.tag for c in loaded] == ["rt"] * 3
        assert [o.model_dump() for o in loaded.outputs] == [o.model_dump() for o in comp.outputs]
        assert [o.model_dump() for o in loaded.history] == [o.model_dump() for o in comp.history]
        assert loaded.state is comp.state is S.FAILED
        assert repr(loaded).startswith(f"<CompositeJob {comp.id[:8]} 3 jobs")
        await loaded.execute(timeout_s=60)  # all ended: fresh runs of all
        assert [c.run for c in loaded] == [2, 2, 2]
        assert [c.run for c in comp] == [1, 1, 1]  # the original is untouched


async def test_a_composite_saved_mid_run_resumes_in_the_same_sdk(tmp_path: Path) -> None:
    async with Sdk(max_concurrency=8) as sdk:
        comp = sdk.create_job(program=[ONE, ZERO], config=[{}, {"min_duration_s": 0.3}])
        assert isinstance(comp, CompositeJob)
        await comp.submit(timeout_s=30)
        await comp[0].wait(timeout_s=30)
        assert comp[1].active
        path = await comp.save(tmp_path / "mid.json")
        loaded = await sdk.load(path)
        assert isinstance(loaded, CompositeJob)
        assert [c.state.is_active for c in loaded] == [False, True]
        assert [type(o) for o in loaded.outputs] == [JobResult, JobPending]
        await loaded.execute(timeout_s=30)
        assert loaded.completed
        assert [c.run for c in loaded] == [1, 1]  # resumed, nothing re-run
        assert [c.task_id for c in loaded] == [c.task_id for c in comp]
        assert [len(c.history) for c in loaded] == [1, 1]
