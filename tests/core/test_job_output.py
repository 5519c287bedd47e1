"""JobResult / JobError / JobCancellation / JobPending and the JobOutputProxy query interface."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from oqc_style_sdk import Sdk
from oqc_style_sdk.exceptions import JobCancelledError, JobFailed, JobStateError
from oqc_style_sdk.job_output import (
    JobCancellation,
    JobError,
    JobOutput,
    JobOutputProxy,
    JobPending,
    JobResult,
)
from oqc_style_sdk.state import JobState
from tests.common import BELL

BAD = 'OPENQASM 5.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def result(run: int = 1, data: object = None) -> JobResult:
    return JobResult(
        data={"c": {"0": 1}} if data is None else data,
        program="P",
        target="qpu:x",
        config={"shots": 1},
        task_id=f"t{run}",
        run=run,
        received=WHEN,
    )


def error(run: int = 1, code: str | None = "E") -> JobError:
    return JobError(message="boom", code=code, program="P", target="qpu:x", run=run)


def cancellation(run: int = 1) -> JobCancellation:
    return JobCancellation(reason="asked", target="qpu:x", run=run)


def pending(state: JobState = JobState.RUNNING) -> JobPending:
    return JobPending(pending_state=state, target="qpu:x")


# ------------------------------------------------------------------------------------------- outputs
def test_job_result_fields_and_flags() -> None:
    r = result()
    assert r.kind == "result"
    assert r.data == {"c": {"0": 1}}
    assert r.program == "P"
    assert r.target == "qpu:x"
    assert r.qpu_id == "qpu:x"  # the OQC name for target
    assert r.config == {"shots": 1}
    assert r.task_id == "t1"
    assert r.run == 1
    assert r.received == WHEN
    assert r.ok is True
    assert r.is_error is False
    assert r.state is JobState.COMPLETED


@pytest.mark.parametrize("code", ["E", None, ""])
def test_job_error_is_never_ok_whatever_the_code(code: str | None) -> None:
    e = error(code=code)
    assert e.kind == "error"
    assert e.message == "boom"
    assert e.code == code
    assert e.ok is False
    assert e.is_error is True
    assert e.state is JobState.FAILED


def test_job_error_defaults() -> None:
    e = JobError()
    assert e.ok is False
    assert e.code is None
    assert e.message  # a default message, never empty
    assert e.run == 1
    assert e.config == {}
    assert e.received is None


def test_job_cancellation_is_neither_ok_nor_an_error() -> None:
    c = cancellation()
    assert c.kind == "cancellation"
    assert c.reason == "asked"
    assert c.ok is False
    assert c.is_error is False
    assert c.state is JobState.CANCELLED
    assert c.qpu_id == "qpu:x"


def test_job_pending_stands_for_an_active_child() -> None:
    p = pending(JobState.SUBMITTED)
    assert p.kind == "pending"
    assert p.pending_state is JobState.SUBMITTED
    assert p.ok is False
    assert p.is_error is False
    assert p.state.is_active


def test_outputs_are_frozen_and_refuse_unknown_fields() -> None:
    r = result()
    with pytest.raises(ValidationError):
        r.data = {}  # type: ignore[misc]
    with pytest.raises(ValidationError):
        JobResult(data={}, secret="x")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        JobResult(kind="error")  # type: ignore[arg-type]


async def test_a_result_the_sdk_builds_unvalidated_is_the_validated_model() -> None:
    """Results are built without a second validation pass (``_made_for``): field for field, the
    same model as ``JobResult(...)``: this holds pydantic upgrades to it."""
    values = {
        "data": {"c": {"0": 1}},
        "program": "P",
        "target": "qpu:x",
        "config": {"shots": 1},
        "task_id": "t1",
        "run": 1,
        "received": WHEN,
    }
    async with Sdk() as sdk:
        job = sdk.create_job(program=BELL)
        validated = JobResult(**values)  # type: ignore[arg-type]
        validated._bind(job)
        made = JobResult._made_for(job, **values)
        assert made == validated
        assert repr(made) == repr(validated)
        assert made.model_dump() == validated.model_dump()
        assert made.model_dump_json() == validated.model_dump_json()
        assert made.model_fields_set == validated.model_fields_set
        assert made._parent() is job
        assert JobResult.model_validate_json(made.model_dump_json()) == JobResult(**values)  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            made.data = {}  # type: ignore[misc]
        with pytest.raises(TypeError, match="needs config"):
            JobResult._made_for(job, data=1)
        with pytest.raises(TypeError, match="no field"):
            JobResult._made_for(job, **values, secret="x")


def test_flags_are_class_level_not_settable_fields() -> None:
    with pytest.raises(ValidationError):
        JobError(ok=True)  # type: ignore[call-arg]


async def test_outputs_of_real_runs_are_aware_utc_and_carry_their_settings() -> None:
    async with Sdk() as sdk:
        job = sdk.create_job(program=BELL, config={"shots": 64})
        await job.execute(timeout_s=30)
        bad = sdk.create_job(program=BAD)
        await bad.execute(timeout_s=30)
        cancelled = sdk.create_job(program=BELL)
        await cancelled.cancel("not needed")
    r = job.result
    assert isinstance(r, JobResult)
    assert r is job.outputs.first is job.history.one
    assert r.received is not None
    assert r.received.tzinfo is not None
    assert r.received.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - r.received) < timedelta(minutes=5)
    assert r.program == BELL
    assert r.qpu_id == job.target == r.target
    assert r.task_id == job.task_id
    assert r.config["shots"] == 64
    assert sum(r.data["c"].values()) == 64

    e = bad.error
    assert isinstance(e, JobError)
    assert e.ok is False
    assert e.is_error
    assert e.code == "PARSE_ERROR"
    assert "OPENQASM 5.0" in e.program
    assert e.received is not None
    assert e.received.utcoffset() == timedelta(0)

    c = cancelled.outputs.one
    assert isinstance(c, JobCancellation)
    assert c.reason == "not needed"
    assert c.received is not None
    assert c.received.utcoffset() == timedelta(0)


async def test_reexecute_and_resubmit_need_a_parent_job() -> None:
    for output in (result(), error(), cancellation()):
        with pytest.raises(JobStateError, match="not attached"):
            await output.reexecute()
        with pytest.raises(JobStateError, match="not attached"):
            await output.resubmit()


async def test_reexecute_on_a_bound_output_runs_its_settings_again() -> None:
    async with Sdk() as sdk:
        job = sdk.create_job(program=BAD)
        first = (await job.execute(timeout_s=30)).one
        job.reconfigure(program=BELL)
        await job.execute(timeout_s=30)
        assert job.completed
        again = await first.reexecute(timeout_s=30)  # the bad program again
        assert job.state is JobState.FAILED
        assert again.one.program == BAD
        assert [o.run for o in job.history] == [1, 2, 3]
        await job.history[1].resubmit()
        assert job.state.is_active or job.ended
        await job.wait(timeout_s=30)
        assert job.completed
        assert job.result is not None
        assert job.result.program == BELL


# ------------------------------------------------------------------------------------------- the proxy
def test_empty_proxy() -> None:
    p = JobOutputProxy()
    assert len(p) == 0
    assert p.first is None
    assert p.last is None
    assert p.all() == []
    assert list(p) == []
    assert not p.ok  # nothing completed
    with pytest.raises(ValueError, match="exactly one"):
        _ = p.one


def test_proxy_queries() -> None:
    r1, e2, c3, r4, p5 = result(1), error(2), cancellation(3), result(4), pending()
    p = JobOutputProxy([r1, e2, c3, r4, p5])
    assert len(p) == 5
    assert p.first is r1
    assert p.last is p5
    with pytest.raises(ValueError, match="found 5"):
        _ = p.one
    assert p.all() == [r1, e2, c3, r4, p5]
    assert p.all() is not p.all()  # a fresh list each time
    assert list(p) == [r1, e2, c3, r4, p5]
    assert p[0] is r1
    assert p[-1] is p5
    with pytest.raises(IndexError):
        _ = p[5]
    sliced = p[1:3]
    assert isinstance(sliced, JobOutputProxy)
    assert sliced.all() == [e2, c3]
    assert p[::-1].first is p5
    assert p.results().all() == [r1, r4]
    assert p.errors().all() == [e2]
    assert p.cancellations().all() == [c3]
    assert p.pending().all() == [p5]
    assert isinstance(p.results(), JobOutputProxy)
    assert p.filter(lambda o: o.run > 2).all() == [c3, r4]
    assert p.filter(lambda o: False).first is None
    assert p.map(lambda o: o.kind) == ["result", "error", "cancellation", "result", "pending"]
    assert p.map(lambda o: o.ok) == [True, False, False, True, False]
    assert r1 in p
    assert p.index(c3) == 2
    assert p.count(r1) == 1


def test_one_with_exactly_one() -> None:
    r = result()
    assert JobOutputProxy([r]).one is r
    with pytest.raises(ValueError, match="found 2"):
        _ = JobOutputProxy([r, result(2)]).one


def test_proxy_is_immutable_and_takes_any_iterable() -> None:
    items = [result(1), result(2)]
    p = JobOutputProxy(items)
    items.append(error(3))
    assert len(p) == 2  # a snapshot, not a view of the caller's list
    assert len(JobOutputProxy(o for o in items)) == 3
    with pytest.raises(TypeError):
        p[0] = error()  # type: ignore[index]


def test_proxy_equality() -> None:
    r1, e2 = result(1), error(2)
    assert JobOutputProxy([r1, e2]) == JobOutputProxy([r1, e2])
    assert JobOutputProxy([r1, e2]) == JobOutputProxy((result(1), error(2)))  # by value
    assert JobOutputProxy([r1, e2]) != JobOutputProxy([e2, r1])
    assert JobOutputProxy([r1]) != JobOutputProxy([r1, e2])
    assert JobOutputProxy() == JobOutputProxy()
    assert JobOutputProxy([r1]) != [r1]  # not equal to a plain list
    with pytest.raises(TypeError):
        hash(JobOutputProxy())


def test_proxy_repr_is_short() -> None:
    huge = {"c": {format(i, "020b"): i for i in range(5000)}}
    p = JobOutputProxy([result(i, huge) for i in range(1, 101)])
    text = repr(p)
    assert text.startswith("JobOutputProxy([")
    assert len(text) < 600
    assert "95 more" in text
    assert repr(JobOutputProxy()) == "JobOutputProxy([])"
    long_message = JobError(message="m" * 5000, code="PARSE_ERROR")
    mixed = repr(JobOutputProxy([long_message, cancellation(), pending(JobState.SUBMITTED)]))
    assert len(mixed) < 400
    assert "JobCancellation" in mixed
    assert "SUBMITTED" in mixed


def test_proxy_ok() -> None:
    assert JobOutputProxy([result(1), result(2)]).ok
    assert not JobOutputProxy([result(1), error(2)]).ok
    assert not JobOutputProxy([result(1), cancellation(2)]).ok
    assert not JobOutputProxy([result(1), pending()]).ok
    assert not JobOutputProxy([error(code=None)]).ok


def test_raise_for_status_all_ok_is_silent() -> None:
    JobOutputProxy([result(1), result(2)]).raise_for_status()


def test_raise_for_status_on_a_failure_raises_job_failed() -> None:
    e2 = error(2)
    p = JobOutputProxy([result(1), e2, cancellation(3)])
    with pytest.raises(JobFailed) as info:
        p.raise_for_status()
    assert type(info.value) is JobFailed  # not the cancellation subclass: something failed
    assert info.value.error is e2
    assert "2 of 3" in str(info.value)
    assert "#1" in str(info.value)


def test_raise_for_status_on_cancellations_only_raises_job_cancelled_error() -> None:
    c2 = cancellation(2)
    p = JobOutputProxy([result(1), c2, cancellation(3)])
    with pytest.raises(JobCancelledError) as info:
        p.raise_for_status()
    assert isinstance(info.value, JobFailed)  # one except clause catches both
    assert info.value.error is c2


def test_raise_for_status_on_pending_is_a_job_failed() -> None:
    with pytest.raises(JobFailed):
        JobOutputProxy([result(1), pending()]).raise_for_status()


def test_raise_for_status_matches_job_raise_for_status_type() -> None:
    """LESSONS 15: the proxy's check raises the same type as Job.raise_for_status, never RuntimeError."""
    with pytest.raises(JobFailed) as info:
        JobOutputProxy([error(code=None)]).raise_for_status()
    assert not isinstance(info.value, RuntimeError)


def test_output_base_is_not_ok() -> None:
    assert JobOutput.ok is False
    assert JobOutput.is_error is False
