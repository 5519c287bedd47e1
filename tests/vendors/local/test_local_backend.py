"""LocalBackend used directly: validation, sampling, the queue, cancellation and diagnostics."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import uuid4

import anyio
import anyio.to_thread
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oqc_style_sdk.backends import local
from oqc_style_sdk.backends._qiskit import qasm_major_version
from oqc_style_sdk.backends.base import RunRef, RunSpec
from oqc_style_sdk.backends.local import (
    MAX_PROGRAM_BYTES,
    QPU_STAND_IN_TARGET,
    LocalBackend,
)
from oqc_style_sdk.exceptions import (
    ConfigurationError,
    JobStateError,
    JobValidationError,
    NotFoundError,
    SdkNotStartedError,
    UnknownTargetError,
)
from oqc_style_sdk.state import JobState

T = TypeVar("T")

BELL_QASM3 = """OPENQASM 3.0;
include "stdgates.inc";
qubit[2] q;
bit[2] c;
h q[0];
cx q[0], q[1];
c = measure q;
"""

BELL_QASM2 = """// a comment before the header
OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0], q[1];
measure q -> c;
"""

TWO_REGISTERS_QASM3 = """OPENQASM 3.0;
include "stdgates.inc";
qubit[3] q;
bit[2] a;
bit[1] b;
x q[1];
h q[2];
a = measure q[0:1];
b[0] = measure q[2];
"""

TWO_REGISTERS_QASM2 = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[3];
creg a[1];
creg b[2];
x q[0];
x q[2];
measure q[0] -> a[0];
measure q[1] -> b[0];
measure q[2] -> b[1];
"""

COIN_QASM3 = """OPENQASM 3.0;
include "stdgates.inc";
qubit[1] q;
bit[1] c;
h q[0];
c[0] = measure q[0];
"""

QASM5 = """OPENQASM 5.0;
qreg q[1];
"""

PARSE_FAILING = """OPENQASM 3.0;
qubit[1] q;
not_a_gate q[0];
"""

ACTIVE = (JobState.SUBMITTED, JobState.RUNNING)
TERMINAL = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


def run_now(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that must finish without suspending; fail if it suspends."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("the coroutine suspended")


class Changes:
    """A change listener that records (task_id, state) and wakes waiters."""

    def __init__(self, backend: LocalBackend) -> None:
        self.backend = backend
        self.log: list[tuple[str, JobState]] = []
        self._event = anyio.Event()

    def __call__(self, task_id: str) -> None:
        ref = RunRef(task_id, {"instance": self.backend.instance_id})
        self.log.append((task_id, run_now(self.backend.status(ref)).state))
        self._event.set()
        self._event = anyio.Event()

    def states(self, ref: RunRef) -> list[JobState]:
        return [state for task_id, state in self.log if task_id == ref.task_id]

    async def wait_for(self, ref: RunRef, *states: JobState) -> JobState:
        with anyio.fail_after(10):
            while True:
                event = self._event
                state = (await self.backend.status(ref)).state
                if state in states:
                    return state
                await event.wait()


@asynccontextmanager
async def running(**settings: Any) -> AsyncIterator[tuple[LocalBackend, Changes]]:
    backend = LocalBackend(**settings)
    changes = Changes(backend)
    backend.set_change_listener(changes)
    async with anyio.create_task_group() as tg:
        await backend.start(tg)
        try:
            yield backend, changes
        finally:
            await backend.aclose()
            tg.cancel_scope.cancel()


def spec(program: Any = BELL_QASM3, target: str | None = None, **config: Any) -> RunSpec:
    return RunSpec(program=program, target=target, config=config)


async def run_to_end(backend: LocalBackend, changes: Changes, run: RunSpec) -> tuple[RunRef, JobState]:
    ref = await backend.submit(backend.validate(run), uuid4().hex)
    return ref, await changes.wait_for(ref, *TERMINAL)


# -- construction ---------------------------------------------------------------------------------


def test_defaults() -> None:
    backend = LocalBackend()
    assert backend.name == "local"
    assert backend.default_target == "simulator"
    assert backend.min_poll_interval_s == 0.02
    assert backend.max_poll_interval_s == 0.5
    assert backend.max_concurrency >= 1
    assert backend.engine == "aer"  # qiskit-aer is a dev dependency
    assert backend.identity() == {"backend": "local"}
    assert len(backend.instance_id) == 32
    assert backend.instance_id != LocalBackend().instance_id


@pytest.mark.parametrize(
    "settings",
    [
        {"max_concurrency": 0},
        {"max_concurrency": -1},
        {"max_concurrency": 1.5},
        {"max_concurrency": True},
        {"min_duration_s": -0.1},
        {"min_duration_s": float("nan")},
        {"min_duration_s": float("inf")},
        {"min_duration_s": "1"},
        {"seed": -1},
        {"seed": 2**63},
        {"seed": "7"},
        {"seed": False},
        {"simulator": "qpu"},
    ],
)
def test_bad_settings_raise_configuration_error(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=next(iter(settings))):
        LocalBackend(**settings)


def test_simulator_aer_needs_qiskit_aer(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LocalBackend(simulator="aer").engine == "aer"
    monkeypatch.setattr(local, "aer_available", lambda: False)
    with pytest.raises(ConfigurationError, match="qiskit-aer"):
        LocalBackend(simulator="aer")
    assert LocalBackend().engine == "reference"  # auto falls back
    assert LocalBackend(simulator="reference").engine == "reference"


async def test_submit_before_start_or_after_close_raises() -> None:
    backend = LocalBackend()
    with pytest.raises(SdkNotStartedError):
        await backend.submit(spec(), "k")
    async with anyio.create_task_group() as tg:
        await backend.start(tg)
        await backend.aclose()
        with pytest.raises(SdkNotStartedError, match="closed"):
            await backend.submit(spec(), "k")


# -- validate -------------------------------------------------------------------------------------


def test_validate_fills_target_and_normalises_config() -> None:
    backend = LocalBackend()
    out = backend.validate(RunSpec(program=BELL_QASM3, target=None, tag="t"))
    assert out.target == "simulator"
    assert out.config == {"shots": 1000}
    assert out.tag == "t"
    out = backend.validate(spec(target=QPU_STAND_IN_TARGET, shots=10, seed=3, min_duration_s=1))
    assert out.target == QPU_STAND_IN_TARGET
    assert out.config == {"shots": 10, "seed": 3, "min_duration_s": 1.0}
    assert isinstance(out.config["min_duration_s"], float)
    assert backend.validate(out) == out  # normalised specs validate to themselves


def test_validate_accepts_a_program_that_will_not_parse() -> None:
    backend = LocalBackend()
    assert backend.validate(spec(PARSE_FAILING)).program == PARSE_FAILING
    assert backend.validate(spec(QASM5)).program == QASM5


@pytest.mark.parametrize(
    ("run", "error", "match"),
    [
        (spec(b"OPENQASM 3.0;"), JobValidationError, "bytes"),
        (spec(None), JobValidationError, "NoneType"),
        (spec(""), JobValidationError, "empty"),
        (spec(" \n\t "), JobValidationError, "empty"),
        (spec("x" * (MAX_PROGRAM_BYTES + 1)), JobValidationError, "MAX_PROGRAM_BYTES"),
        (spec("é" * (MAX_PROGRAM_BYTES // 2 + 1)), JobValidationError, "MAX_PROGRAM_BYTES"),
        (spec(target="qpu:nowhere"), UnknownTargetError, "qpu:nowhere"),
        (spec(shots=0), JobValidationError, "shots"),
        (spec(shots=1_000_001), JobValidationError, "shots"),
        (spec(shots=10.0), JobValidationError, "shots"),
        (spec(shots="10"), JobValidationError, "shots"),
        (spec(shots=True), JobValidationError, "shots"),
        (spec(seed=-5), JobValidationError, "seed"),
        (spec(seed=1.5), JobValidationError, "seed"),
        (spec(min_duration_s=-1), JobValidationError, "min_duration_s"),
        (spec(min_duration_s=False), JobValidationError, "min_duration_s"),
        (spec(shot=10), JobValidationError, "allowed keys: shots, seed, min_duration_s"),
    ],
)
def test_validate_rejects(run: RunSpec, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        LocalBackend().validate(run)


def test_validate_accepts_the_largest_program() -> None:
    program = BELL_QASM3 + "/" * 2 + "x" * (MAX_PROGRAM_BYTES - len(BELL_QASM3) - 2)
    assert len(program.encode()) == MAX_PROGRAM_BYTES
    assert LocalBackend().validate(spec(program)).program == program


def test_validate_unknown_target_lists_known_ones() -> None:
    with pytest.raises(UnknownTargetError) as info:
        LocalBackend().validate(spec(target="lucy"))
    assert info.value.known == ["simulator", QPU_STAND_IN_TARGET]


def test_validate_rejects_a_non_mapping_config() -> None:
    with pytest.raises(JobValidationError, match="mapping"):
        LocalBackend().validate(RunSpec(program=BELL_QASM3, target=None, config=[1]))  # type: ignore[arg-type]


@settings(database=None)  # no example database on disk
@given(st.integers())
def test_validate_shots_range(shots: int) -> None:
    backend = LocalBackend()
    if 1 <= shots <= 1_000_000:
        assert backend.validate(spec(shots=shots)).config["shots"] == shots
    else:
        with pytest.raises(JobValidationError, match="shots"):
            backend.validate(spec(shots=shots))


# -- targets --------------------------------------------------------------------------------------


async def test_list_targets() -> None:
    backend = LocalBackend()
    targets = await backend.list_targets()
    assert [t["id"] for t in targets] == ["simulator", QPU_STAND_IN_TARGET]
    sim, stand_in = targets
    assert sim == {
        "id": "simulator",
        "name": "Simulator",
        "status": "ACTIVE",
        "active": True,
        "kind": "simulator",
        "engine": "aer",
        "backend": "local",
    }
    assert stand_in["name"] == f"{QPU_STAND_IN_TARGET} (local stand-in)"
    assert stand_in["kind"] == "stand-in"
    assert stand_in["active"] is True
    assert stand_in["status"] == "ACTIVE"
    sim["id"] = "changed"  # fresh dicts: changing one changes nothing in the backend
    assert (await backend.list_targets())[0]["id"] == "simulator"
    reference = await LocalBackend(simulator="reference").list_targets()
    assert {t["engine"] for t in reference} == {"reference"}


# -- sampling -------------------------------------------------------------------------------------


@pytest.mark.parametrize("simulator", ["aer", "reference"])
@pytest.mark.parametrize("program", [BELL_QASM3, BELL_QASM2])
async def test_bell_counts(simulator: str, program: str) -> None:
    async with running(simulator=simulator) as (backend, changes):
        run = backend.validate(spec(program, shots=1000))
        ref, state = await run_to_end(backend, changes, run)
        assert state is JobState.COMPLETED
        counts = await backend.result(ref, run)
        assert set(counts) == {"c"}
        assert set(counts["c"]) <= {"00", "11"}
        assert sum(counts["c"].values()) == 1000
        assert counts["c"]["00"] > 300  # a fair coin, 1000 tosses
        assert counts["c"]["11"] > 300


@pytest.mark.parametrize("simulator", ["aer", "reference"])
async def test_multiple_registers(simulator: str) -> None:
    async with running(simulator=simulator) as (backend, changes):
        ref3, state3 = await run_to_end(backend, changes, spec(TWO_REGISTERS_QASM3, shots=200))
        ref2, state2 = await run_to_end(backend, changes, spec(TWO_REGISTERS_QASM2, shots=50))
        assert (state3, state2) == (JobState.COMPLETED, JobState.COMPLETED)
        counts3 = await backend.result(ref3, spec())
        # a = (q0, q1) = (0, 1): bitstrings read most significant bit first
        assert counts3["a"] == {"10": 200}
        assert set(counts3["b"]) <= {"0", "1"}
        assert sum(counts3["b"].values()) == 200
        counts2 = await backend.result(ref2, spec())
        assert counts2 == {"a": {"1": 50}, "b": {"10": 50}}


async def test_shots_and_stand_in_target() -> None:
    async with running() as (backend, changes):
        ref, state = await run_to_end(
            backend, changes, spec(COIN_QASM3, target=QPU_STAND_IN_TARGET, shots=17)
        )
        assert state is JobState.COMPLETED
        assert sum((await backend.result(ref, spec()))["c"].values()) == 17
        default_ref, _ = await run_to_end(backend, changes, spec(COIN_QASM3))
        assert sum((await backend.result(default_ref, spec()))["c"].values()) == 1000


@pytest.mark.parametrize("simulator", ["aer", "reference"])
async def test_seed_reproducibility(simulator: str) -> None:
    async with running(simulator=simulator, seed=11) as (backend, changes):
        results = []
        for run in (spec(COIN_QASM3, seed=1234), spec(COIN_QASM3, seed=1234)):
            ref, _ = await run_to_end(backend, changes, run)
            results.append(await backend.result(ref, run))
        assert results[0] == results[1]
        # no seed in the config: the backend's seed applies
        backend_seeded = []
        for _ in range(2):
            ref, _ = await run_to_end(backend, changes, spec(COIN_QASM3))
            backend_seeded.append(await backend.result(ref, spec()))
            assert (await backend.diagnostics(ref, spec())).metadata["seed"] == 11  # type: ignore[index]
        assert backend_seeded[0] == backend_seeded[1]


async def test_program_without_registers_gives_empty_counts() -> None:
    program = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[1] q;\nh q[0];\n'
    async with running() as (backend, changes):
        ref, state = await run_to_end(backend, changes, spec(program))
        assert state is JobState.COMPLETED
        assert await backend.result(ref, spec()) == {}


async def test_user_defined_gate_runs_on_aer() -> None:
    program = """OPENQASM 3.0;
include "stdgates.inc";
gate flip a, b { x a; x b; }
qubit[2] q;
bit[2] c;
flip q[0], q[1];
c = measure q;
"""
    async with running(simulator="aer") as (backend, changes):
        ref, state = await run_to_end(backend, changes, spec(program, shots=10))
        assert state is JobState.COMPLETED
        assert await backend.result(ref, spec()) == {"c": {"11": 10}}


# -- failures -------------------------------------------------------------------------------------


async def test_openqasm_5_fails_with_the_parser_message() -> None:
    async with running() as (backend, changes):
        ref, state = await run_to_end(backend, changes, spec(QASM5))
        assert state is JobState.FAILED
        obs = await backend.status(ref)
        assert obs.vendor_status == "FAILED"
        assert obs.code == "PARSE_ERROR"
        assert obs.message is not None
        assert "5.0" in obs.message
        assert "can only handle OpenQASM 2.0" in obs.message
        assert obs.ended_at is not None
        with pytest.raises(JobStateError, match="FAILED"):
            await backend.result(ref, spec())
        diagnostics = await backend.diagnostics(ref, spec())
        assert diagnostics.metrics is None


async def test_qasm3_parse_error_and_simulation_error() -> None:
    unbound = """OPENQASM 3.0;
include "stdgates.inc";
input float theta;
qubit[1] q;
bit[1] c;
rx(theta) q[0];
c[0] = measure q[0];
"""
    async with running() as (backend, changes):
        ref, state = await run_to_end(backend, changes, spec(PARSE_FAILING))
        assert state is JobState.FAILED
        obs = await backend.status(ref)
        assert obs.code == "PARSE_ERROR"
        assert "not_a_gate" in (obs.message or "")
        ref, state = await run_to_end(backend, changes, spec(unbound))
        assert state is JobState.FAILED
        obs = await backend.status(ref)
        assert obs.code == "SIMULATION_ERROR"
        assert obs.message
        metrics = (await backend.diagnostics(ref, spec())).metrics
        assert metrics is not None  # it parsed: its metrics are known
        assert metrics["num_qubits"] == 1


async def test_header_detection() -> None:
    detect = qasm_major_version
    assert detect("OPENQASM 3.0;") == 3
    assert detect("  // c\n/* block\n OPENQASM 2.0; */\nOPENQASM 2.0;") == 2
    assert detect("OPENQASM 5.0;") == 5
    assert detect("OPENQASM 3;") == 3
    assert detect("qubit q;") is None
    assert detect("/* unterminated") is None
    assert detect("//" * 50_000) is None  # linear, no backtracking


# -- lifecycle, queue and cancellation ------------------------------------------------------------


async def test_change_listener_called_on_each_transition() -> None:
    async with running() as (backend, changes):
        ref, state = await run_to_end(backend, changes, spec(COIN_QASM3))
        assert state is JobState.COMPLETED
        assert changes.states(ref) == [JobState.RUNNING, JobState.COMPLETED]
        failed, _ = await run_to_end(backend, changes, spec(QASM5))
        assert changes.states(failed) == [JobState.RUNNING, JobState.FAILED]


async def test_submit_then_immediate_cancel_is_cancelled() -> None:
    async with running() as (backend, changes):
        ref = await backend.submit(backend.validate(spec()), "k")
        assert (await backend.status(ref)).vendor_status == "QUEUED"
        await backend.cancel(ref, "changed my mind")
        obs = await backend.status(ref)
        assert obs.state is JobState.CANCELLED
        assert obs.vendor_status == "CANCELLED"
        assert obs.message == "changed my mind"
        assert obs.ended_at is not None
        # a later run completing shows the cancelled worker had its chance and did not run
        _, state = await run_to_end(backend, changes, spec(COIN_QASM3))
        assert state is JobState.COMPLETED
        assert (await backend.status(ref)).state is JobState.CANCELLED
        assert changes.states(ref) == [JobState.CANCELLED]
        diagnostics = await backend.diagnostics(ref, spec())
        assert diagnostics.timings is not None
        assert diagnostics.timings["started_at"] is None
        assert diagnostics.metadata is not None
        assert diagnostics.metadata["cancel_reason"] == "changed my mind"


async def test_cancel_queued_behind_a_long_run() -> None:
    async with running(max_concurrency=1) as (backend, changes):
        long = await backend.submit(backend.validate(spec(COIN_QASM3, min_duration_s=60)), "a")
        await changes.wait_for(long, JobState.RUNNING)
        queued = await backend.submit(backend.validate(spec(COIN_QASM3)), "b")
        await anyio.wait_all_tasks_blocked()  # the queued worker is waiting for the slot
        obs = await backend.status(queued)
        assert (obs.state, obs.vendor_status) == (JobState.SUBMITTED, "QUEUED")
        await backend.cancel(queued)
        assert (await backend.status(queued)).state is JobState.CANCELLED
        assert (await backend.status(long)).state is JobState.RUNNING
        await backend.cancel(long)  # frees the slot: the next run goes before any late riser
        _, state = await run_to_end(backend, changes, spec(COIN_QASM3))
        assert state is JobState.COMPLETED
        assert changes.states(queued) == [JobState.CANCELLED]  # it never ran
        assert (await backend.diagnostics(queued, spec())).metrics is None


async def test_cancel_running_stays_cancelled_after_the_thread_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entered = threading.Event()
    release = threading.Event()
    finished = threading.Event()
    real = local._simulate

    def slow(*args: Any) -> Any:
        entered.set()
        release.wait(10)
        try:
            return real(*args)
        finally:
            finished.set()

    monkeypatch.setattr(local, "_simulate", slow)
    async with running(max_concurrency=1) as (backend, changes):
        ref = await backend.submit(backend.validate(spec(COIN_QASM3)), "k")
        await changes.wait_for(ref, JobState.RUNNING)
        assert await anyio.to_thread.run_sync(entered.wait, 10)  # the simulation thread is busy
        await backend.cancel(ref, "stop")
        assert (await backend.status(ref)).state is JobState.CANCELLED
        release.set()
        assert await anyio.to_thread.run_sync(finished.wait, 10)
        await anyio.wait_all_tasks_blocked()
        assert (await backend.status(ref)).state is JobState.CANCELLED
        assert changes.states(ref) == [JobState.RUNNING, JobState.CANCELLED]
        with pytest.raises(JobStateError, match="CANCELLED"):
            await backend.result(ref, spec())


async def test_cancel_running_during_min_duration() -> None:
    async with running() as (backend, changes):
        ref = await backend.submit(backend.validate(spec(COIN_QASM3, min_duration_s=60)), "k")
        await changes.wait_for(ref, JobState.RUNNING)
        await backend.cancel(ref)
        obs = await backend.status(ref)
        assert (obs.state, obs.vendor_status) == (JobState.CANCELLED, "CANCELLED")
        timings = (await backend.diagnostics(ref, spec())).timings
        assert timings is not None
        assert timings["started_at"] is not None
        assert timings["run_s"] < 60


async def test_min_duration_holds_a_run_in_running() -> None:
    async with running(min_duration_s=0.2) as (backend, changes):
        ref, state = await run_to_end(backend, changes, spec(COIN_QASM3))
        assert state is JobState.COMPLETED
        timings = (await backend.diagnostics(ref, spec())).timings
        assert timings is not None
        assert timings["run_s"] >= 0.2


async def test_cancel_of_a_completed_run_is_a_no_op() -> None:
    async with running() as (backend, changes):
        ref, state = await run_to_end(backend, changes, spec(BELL_QASM3, shots=10))
        assert state is JobState.COMPLETED
        before = await backend.result(ref, spec())
        await backend.cancel(ref, "too late")
        obs = await backend.status(ref)
        assert obs.state is JobState.COMPLETED
        assert obs.message is None
        assert await backend.result(ref, spec()) == before
        assert changes.states(ref) == [JobState.RUNNING, JobState.COMPLETED]


async def test_result_is_a_copy() -> None:
    async with running() as (backend, changes):
        ref, _ = await run_to_end(backend, changes, spec(COIN_QASM3, shots=10))
        first = await backend.result(ref, spec())
        first["c"]["mutated"] = 1
        first["extra"] = {}
        assert await backend.result(ref, spec()) != first


async def test_result_of_an_active_run_raises() -> None:
    async with running(max_concurrency=1) as (backend, changes):
        ref = await backend.submit(backend.validate(spec(min_duration_s=60)), "k")
        with pytest.raises(JobStateError, match="SUBMITTED"):
            await backend.result(ref, spec())
        await changes.wait_for(ref, JobState.RUNNING)
        with pytest.raises(JobStateError, match="RUNNING"):
            await backend.result(ref, spec())


async def test_shutdown_cancels_active_runs() -> None:
    async with running(max_concurrency=1) as (backend, changes):
        ref = await backend.submit(backend.validate(spec(min_duration_s=60)), "a")
        queued = await backend.submit(backend.validate(spec()), "b")
        await changes.wait_for(ref, JobState.RUNNING)
    for r in (ref, queued):
        obs = await backend.status(r)
        assert obs.state is JobState.CANCELLED
        assert "shut down" in (obs.message or "")


async def test_idempotent_submit() -> None:
    async with running() as (backend, changes):
        run = backend.validate(spec(COIN_QASM3))
        first = await backend.submit(run, "same-key")
        again = await backend.submit(run, "same-key")
        assert again == first
        other = await backend.submit(run, "other-key")
        assert other.task_id != first.task_id
        await changes.wait_for(first, JobState.COMPLETED)
        await changes.wait_for(other, JobState.COMPLETED)
        assert await backend.submit(run, "same-key") == first
        assert changes.states(first) == [JobState.RUNNING, JobState.COMPLETED]
        assert len(backend._tasks) == 2


async def test_submit_validates_an_unvalidated_spec() -> None:
    async with running() as (backend, changes):
        with pytest.raises(JobValidationError):
            await backend.submit(spec(shots=0), "k")
        ref = await backend.submit(spec(COIN_QASM3), "k2")
        assert ref.extra == {"instance": backend.instance_id}
        await changes.wait_for(ref, JobState.COMPLETED)
        assert (await backend.diagnostics(ref, spec())).metadata["target"] == "simulator"  # type: ignore[index]


async def test_not_found_for_unknown_and_foreign_refs() -> None:
    async with running() as (backend, changes):
        ref, _ = await run_to_end(backend, changes, spec(COIN_QASM3))
        unknown = RunRef("no-such-task", {"instance": backend.instance_id})
        foreign = RunRef(ref.task_id, {"instance": "another"})
        for bad, match in ((unknown, "no-such-task"), (foreign, "another local simulator")):
            with pytest.raises(NotFoundError, match=match):
                await backend.status(bad)
            with pytest.raises(NotFoundError):
                await backend.cancel(bad)
            with pytest.raises(NotFoundError):
                await backend.result(bad, spec())
            with pytest.raises(NotFoundError):
                await backend.diagnostics(bad, spec())
        # a ref without an instance is found by task id
        assert (await backend.status(RunRef(ref.task_id))).state is JobState.COMPLETED


async def test_statuses_reads_many() -> None:
    async with running() as (backend, changes):
        ref, _ = await run_to_end(backend, changes, spec(COIN_QASM3))
        out = await backend.statuses([ref, RunRef("nope")])
        done = out[ref.task_id]
        assert not isinstance(done, BaseException)
        assert done.state is JobState.COMPLETED
        assert isinstance(out["nope"], NotFoundError)


async def test_can_resume() -> None:
    async with running() as (backend, changes):
        ref, _ = await run_to_end(backend, changes, spec(COIN_QASM3))
        other = LocalBackend()
        assert backend.can_resume(ref)
        assert not other.can_resume(ref)
        assert not backend.can_resume(RunRef(ref.task_id))
        assert not backend.can_resume(RunRef("unknown", {"instance": backend.instance_id}))
        message = other.describe_unresumable(ref)
        assert "another process" in message
        assert "execute()" in message


# -- diagnostics ----------------------------------------------------------------------------------


async def test_diagnostics() -> None:
    async with running(simulator="reference") as (backend, changes):
        run = backend.validate(spec(BELL_QASM3, shots=100, seed=5))
        ref, _ = await run_to_end(backend, changes, run)
        diagnostics = await backend.diagnostics(ref, run)
        timings, metrics, metadata = diagnostics.timings, diagnostics.metrics, diagnostics.metadata
        assert timings is not None
        assert metrics is not None
        assert metadata is not None
        submitted, started, ended = (
            datetime.fromisoformat(timings[k]) for k in ("submitted_at", "started_at", "ended_at")
        )
        assert submitted.utcoffset() == timedelta(0)
        assert submitted <= started <= ended
        assert timings["queue_s"] >= 0
        assert timings["run_s"] >= 0
        assert timings["total_s"] == pytest.approx(timings["queue_s"] + timings["run_s"])
        assert (await backend.status(ref)).ended_at == ended
        assert metrics == {
            "num_qubits": 2,
            "num_clbits": 2,
            "depth": 3,
            "size": 4,
            "gate_counts": {"h": 1, "cx": 1, "measure": 2},
        }
        assert metadata["engine"] == "reference"
        assert metadata["qiskit_version"]
        assert metadata["qiskit_aer_version"]
        assert (metadata["shots"], metadata["seed"], metadata["target"]) == (100, 5, "simulator")


# -- never suspending -----------------------------------------------------------------------------


async def test_status_and_cancel_do_not_suspend() -> None:
    async with running() as (backend, changes):
        ref = run_now(backend.submit(backend.validate(spec()), "k"))
        obs = run_now(backend.status(ref))
        assert obs.state is JobState.SUBMITTED
        run_now(backend.cancel(ref))
        assert run_now(backend.status(ref)).state is JobState.CANCELLED
        run_now(backend.cancel(ref))  # already terminal: still no suspension, no error
        done, _ = await run_to_end(backend, changes, spec(COIN_QASM3))
        assert run_now(backend.status(done)).state is JobState.COMPLETED


# -- process safety -------------------------------------------------------------------------------

RUNS_IN_FRESH_LOOPS = textwrap.dedent(
    """
    import anyio
    from oqc_style_sdk.backends.base import RunSpec
    from oqc_style_sdk.backends.local import LocalBackend

    PROGRAM = 'OPENQASM 3.0; include "stdgates.inc"; qubit[1] q; bit[1] c; c[0] = measure q[0];'

    async def one_run() -> None:
        backend = LocalBackend()
        async with anyio.create_task_group() as tg:
            await backend.start(tg)
            ref = await backend.submit(RunSpec(PROGRAM, None), "k")
            with anyio.fail_after(60):
                while not (await backend.status(ref)).state.is_terminal:
                    await anyio.sleep(0.01)
            print((await backend.status(ref)).state.value, flush=True)
            tg.cancel_scope.cancel()

    for _ in range(3):
        anyio.run(one_run)  # each event loop's worker threads exit when it closes
    """
)


def test_runs_survive_their_worker_threads_exiting() -> None:
    """Regression: qiskit first imported in a worker thread that then exited crashed the process."""
    proc = subprocess.run(
        [sys.executable, "-c", RUNS_IN_FRESH_LOOPS],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["COMPLETED"] * 3
