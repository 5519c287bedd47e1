"""The local simulator's batching, worker processes, cancellation, limits, memory guard and methods."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import anyio
import psutil
import pytest

from oqc_style_sdk import Sdk
from oqc_style_sdk.backends import _local_config, _local_sim, local
from oqc_style_sdk.backends._local_limits import MAX_UNROLLED_OPERATIONS, check_circuit
from oqc_style_sdk.backends.base import RunRef
from oqc_style_sdk.exceptions import JobValidationError
from oqc_style_sdk.state import JobState

from .test_local_backend import BELL_QASM3, PARSE_FAILING, TERMINAL, run_to_end, running, spec


#: Prepares |i> on 6 qubits: each run's counts name the run.
def basis_state(i: int) -> str:
    flips = "".join(f"x q[{bit}];\n" for bit in range(6) if i >> bit & 1)
    return f'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[6] q;\nbit[6] c;\n{flips}c = measure q;\n'


#: Parses, but Aer refuses the whole call it is in (a parameter without a value).
UNBOUND = 'OPENQASM 3.0; include "stdgates.inc"; input float alpha; qubit[2] q; bit[2] c; h q[0]; '
UNBOUND += "rz(alpha) q[1]; c = measure q;"

NON_CLIFFORD_40 = """OPENQASM 3.0;
include "stdgates.inc";
qubit[40] q;
bit[40] c;
h q;
t q[0];
c = measure q;
"""

GHZ_100 = (
    'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[100] q;\nbit[100] c;\nh q[0];\n'
    + "".join(f"cx q[{i}], q[{i + 1}];\n" for i in range(99))
    + "c = measure q;\n"
)

#: Never ends: measures |0> until it reads 1. Its ``while`` sends it to a worker process.
RUNAWAY = """OPENQASM 3.0;
include "stdgates.inc";
qubit[1] q;
bit[1] c;
c[0] = measure q[0];
while (c[0] == false) {
  reset q[0];
  c[0] = measure q[0];
}
"""

#: Ends after one turn of its loop (which also sends it to a worker process).
ONE_TURN = RUNAWAY.replace("reset q[0];", "x q[0];")

BILLION_LOOP = """OPENQASM 3.0;
include "stdgates.inc";
qubit[1] q;
for uint i in [0:1000000000] { x q[0]; }
"""


async def diagnostics_of(backend: local.LocalBackend, ref: RunRef) -> dict[str, Any]:
    metadata = (await backend.diagnostics(ref, spec())).metadata
    assert metadata is not None
    return metadata


# -- batching ---------------------------------------------------------------------------------------


async def test_batched_runs_keep_their_own_outputs() -> None:
    async with running() as (backend, changes):
        refs = [
            await backend.submit(backend.validate(spec(basis_state(i), shots=7)), uuid4().hex)
            for i in range(40)
        ]
        for ref in refs:
            assert await changes.wait_for(ref, *TERMINAL) is JobState.COMPLETED
        for i, ref in enumerate(refs):
            assert await backend.result(ref, spec()) == {"c": {format(i, "06b"): 7}}
            assert changes.states(ref) == [JobState.RUNNING, JobState.COMPLETED]
        sizes = [(await diagnostics_of(backend, ref))["batch_size"] for ref in refs]
        assert max(sizes) > 1  # submitted together, simulated together


async def test_a_composite_through_the_sdk_keeps_outputs_aligned() -> None:
    async with Sdk() as sdk:
        composite = sdk.create_job(program=[basis_state(i) for i in range(64)], config={"shots": 5})
        outputs = await composite.execute(timeout_s=120)
        assert [output.data for output in outputs] == [{"c": {format(i, "06b"): 5}} for i in range(64)]


async def test_a_composite_is_queued_in_one_step_and_a_refused_child_fails_alone() -> None:
    """submit_many queues the children together (one call, no task each); a child the backend
    refuses gets its own error and the others run. A subclass whose submit may suspend keeps the
    per-child path (tests/core: a hanging submission must not hold the others)."""
    calls: list[int] = []

    class Counting(local.LocalBackend):
        async def submit_many(self, specs: Any, idempotency_keys: Any) -> Any:
            calls.append(len(specs))
            return await super().submit_many(specs, idempotency_keys)

    backend = Counting()
    assert backend.batch_submit
    assert backend.batch_status
    async with Sdk(backend) as sdk:
        composite = sdk.create_job(program=[basis_state(i) for i in range(32)], config={"shots": 3})
        outputs = await composite.execute(timeout_s=120)
        assert calls == [32]
        assert [output.data for output in outputs] == [{"c": {format(i, "06b"): 3}} for i in range(32)]
        refused = await backend.submit_many([spec(BELL_QASM3), spec(BELL_QASM3, shots=0)], ["a", "b"])
        assert isinstance(refused[0], RunRef)
        assert isinstance(refused[1], JobValidationError)

    class Suspending(local.LocalBackend):
        async def submit(self, spec: Any, idempotency_key: str) -> RunRef:
            return await super().submit(spec, idempotency_key)

    assert not Suspending().batch_submit
    assert not Suspending().batch_status


async def test_a_failing_circuit_in_a_batch_fails_only_itself() -> None:
    programs = [BELL_QASM3, PARSE_FAILING, UNBOUND, NON_CLIFFORD_40, basis_state(5)]
    async with running() as (backend, changes):
        refs = [await backend.submit(backend.validate(spec(p, shots=20)), uuid4().hex) for p in programs]
        states = [await changes.wait_for(ref, *TERMINAL) for ref in refs]
        assert states == [
            JobState.COMPLETED,
            JobState.FAILED,
            JobState.FAILED,
            JobState.FAILED,
            JobState.COMPLETED,
        ]
        codes = [(await backend.status(ref)).code for ref in refs]
        assert codes == [None, "PARSE_ERROR", "SIMULATION_ERROR", "MEMORY_LIMIT", None]
        assert set((await backend.result(refs[0], spec()))["c"]) <= {"00", "11"}
        assert await backend.result(refs[4], spec()) == {"c": {"000101": 20}}
        assert {(await diagnostics_of(backend, ref))["batch_size"] for ref in refs} == {5}  # one chunk


async def test_a_program_is_parsed_once_and_transpiled_only_when_needed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import qiskit

    parsed: list[str] = []
    transpiled: list[Any] = []
    real_parse, real_transpile = _local_sim.as_circuit, qiskit.transpile
    monkeypatch.setattr(_local_sim, "as_circuit", lambda p: parsed.append(p) or real_parse(p))
    monkeypatch.setattr(qiskit, "transpile", lambda *a, **k: transpiled.append(a) or real_transpile(*a, **k))
    program = BELL_QASM3 + f"// {uuid4()}\n"  # a text no earlier test parsed
    custom = (
        'OPENQASM 3.0;\ninclude "stdgates.inc";\ngate flip a { x a; }\nqubit[1] q;\nbit[1] c;\nflip q[0];\n'
    )
    custom += f"c[0] = measure q[0];\n// {uuid4()}\n"
    async with running() as (backend, changes):
        for _ in range(3):
            _, state = await run_to_end(backend, changes, spec(program, shots=10))
            assert state is JobState.COMPLETED
        assert parsed.count(program) == 1
        assert transpiled == []  # Aer runs h, cx and measure as they are
        for _ in range(2):
            ref, _ = await run_to_end(backend, changes, spec(custom, shots=10))
            assert await backend.result(ref, spec()) == {"c": {"1": 10}}
        assert len(transpiled) == 1  # the user-defined gate is lowered once


# -- worker processes and cancellation --------------------------------------------------------------


async def wait_until(condition: Any) -> None:
    """Wait (a minute at most) for a condition on another process, looking every 20 ms."""
    with anyio.fail_after(60):
        while not condition():  # noqa: ASYNC110 - another process's state: nothing to wait on
            await anyio.sleep(0.02)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_cancelling_a_runaway_kills_its_worker_and_the_next_bell_job_runs() -> None:
    async with running(max_concurrency=1) as (backend, changes):
        runaway = await backend.submit(backend.validate(spec(RUNAWAY, shots=1)), "runaway")
        # four queued, one worker: chunks of two, so one run shares the runaway's chunk
        same_chunk, *later = [
            await backend.submit(backend.validate(spec(ONE_TURN, shots=3)), f"one turn {i}") for i in range(3)
        ]
        await changes.wait_for(runaway, JobState.RUNNING)
        metadata = await diagnostics_of(backend, runaway)
        assert metadata["lane"] == "worker"
        pid = metadata["worker_pid"]
        assert pid in backend.worker_pids()
        assert (await diagnostics_of(backend, same_chunk))["worker_pid"] == pid  # one chunk
        await wait_until(lambda: psutil.Process(pid).cpu_times().user > 0.2)  # simulating
        await backend.cancel(runaway, "runaway")
        assert (await backend.status(runaway)).state is JobState.CANCELLED
        await wait_until(lambda: gone(pid))
        assert pid not in backend.worker_pids()
        # the next Bell job runs at once, in this process
        bell, state = await run_to_end(backend, changes, spec(BELL_QASM3, shots=10))
        assert state is JobState.COMPLETED
        assert (await diagnostics_of(backend, bell))["lane"] == "inline"
        # the run that shared the killed worker's chunk was queued again, not failed
        assert await changes.wait_for(same_chunk, *TERMINAL) is JobState.COMPLETED
        assert await backend.result(same_chunk, spec()) == {"c": {"1": 3}}
        assert changes.states(same_chunk) == [JobState.RUNNING, JobState.COMPLETED]
        assert (await diagnostics_of(backend, same_chunk))["worker_pid"] != pid
        for ref in later:
            assert await changes.wait_for(ref, *TERMINAL) is JobState.COMPLETED


async def test_workers_end_with_the_sdk() -> None:
    async with Sdk() as sdk:
        job = sdk.create_job(program=ONE_TURN, config={"shots": 2})
        await job.execute(timeout_s=120)
        assert job.result is not None
        assert job.result.data == {"c": {"1": 2}}
        backend = sdk.backend
        assert isinstance(backend, local.LocalBackend)
        pids = backend.worker_pids()
        assert pids
    await wait_until(lambda: all(gone(pid) for pid in pids))


# -- limits -----------------------------------------------------------------------------------------


async def test_a_loop_past_the_limit_is_refused_at_create_job() -> None:
    async with Sdk() as sdk:
        with pytest.raises(JobValidationError, match="MAX_UNROLLED_OPERATIONS") as info:
            sdk.create_job(program=BILLION_LOOP)
        assert "1,000,000,00" in str(info.value)
        nested = BILLION_LOOP.replace(
            "[0:1000000000] { x q[0]; }", "[1:1000] { for uint j in [1:1001] x q[0]; }"
        )
        with pytest.raises(JobValidationError, match="1,001,00"):
            sdk.create_job(program=nested)
        sdk.create_job(program=BILLION_LOOP.replace("1000000000", "999"))  # under the limit: accepted


def test_loops_of_a_circuit_are_counted_unrolled() -> None:
    import qiskit

    circuit = qiskit.QuantumCircuit(1)
    with circuit.for_loop(range(MAX_UNROLLED_OPERATIONS + 1)):
        circuit.x(0)
    with pytest.raises(JobValidationError, match="MAX_UNROLLED_OPERATIONS"):
        check_circuit(circuit, "automatic")
    with pytest.raises(JobValidationError, match="MAX_UNROLLED_OPERATIONS"):
        local.LocalBackend().validate(spec(circuit))


async def test_the_memory_guard_refuses_a_40_qubit_non_clifford_circuit_at_once() -> None:
    async with running() as (backend, changes):
        ref, state = await run_to_end(backend, changes, spec(NON_CLIFFORD_40, shots=10))
        assert state is JobState.FAILED
        obs = await backend.status(ref)
        assert obs.code == "MEMORY_LIMIT"
        assert obs.message is not None
        assert "40 qubits" in obs.message
        assert "16.0 TiB" in obs.message
    import qiskit

    circuit = qiskit.QuantumCircuit(40, 40)
    circuit.h(range(40))
    circuit.t(0)
    circuit.measure(range(40), range(40))
    with pytest.raises(JobValidationError, match=r"40 qubits .* 16\.0 TiB"):
        local.LocalBackend().validate(spec(circuit))
    with pytest.raises(JobValidationError, match="density_matrix"):  # 4**12 amplitudes in 1 MiB: no
        check_circuit(qiskit.QuantumCircuit(12), "density_matrix", limit_bytes=1 << 20)


async def test_a_100_qubit_ghz_circuit_runs_with_the_stabilizer_method() -> None:
    async with running() as (backend, changes):
        ref, state = await run_to_end(backend, changes, spec(GHZ_100, shots=50))
        assert state is JobState.COMPLETED
        counts = (await backend.result(ref, spec()))["c"]
        assert set(counts) <= {"0" * 100, "1" * 100}
        assert sum(counts.values()) == 50
        assert (await diagnostics_of(backend, ref))["method"] == "stabilizer"


# -- method and device ------------------------------------------------------------------------------


async def test_method_passes_through_to_aer() -> None:
    async with running() as (backend, changes):
        for method in ("statevector", "matrix_product_state", "density_matrix"):
            ref, state = await run_to_end(backend, changes, spec(BELL_QASM3, shots=10, method=method))
            assert state is JobState.COMPLETED
            assert (await diagnostics_of(backend, ref))["method"] == method
            assert set((await backend.result(ref, spec()))["c"]) <= {"00", "11"}


def test_bad_method_and_device_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = local.LocalBackend()
    with pytest.raises(JobValidationError, match="'method' must be one of automatic, statevector"):
        backend.validate(spec(method="fastest"))
    with pytest.raises(JobValidationError, match="'device' must be one of CPU, GPU"):
        backend.validate(spec(device="TPU"))
    assert backend.validate(spec(device="CPU")).config["device"] == "CPU"
    monkeypatch.setattr(_local_config, "gpu_build_installed", lambda: False)
    with pytest.raises(JobValidationError, match="GPU build of qiskit-aer"):
        backend.validate(spec(device="GPU"))
    monkeypatch.setattr(_local_config, "gpu_build_installed", lambda: True)
    assert backend.validate(spec(device="GPU")).config["device"] == "GPU"
    with pytest.raises(JobValidationError, match="needs the aer simulator"):
        local.LocalBackend(simulator="reference").validate(spec(method="statevector"))


async def test_a_chunk_handed_to_a_worker_stopped_and_reaped_meanwhile_is_requeued_not_failed() -> None:
    """A cancel may kill a worker (and its reaper close the pipes) just before a chunk speaks to
    it: the chunk learns the worker is lost, as when it dies mid-chunk, so its runs go back to the
    queue instead of ending FAILED with an internal error."""
    from oqc_style_sdk.backends._local_worker import Worker, WorkerLost

    worker = Worker(threads=1)
    worker.kill()
    with anyio.fail_after(30):
        for _ in range(3000):  # until the reaper has closed its pipes
            if worker.process.stdin is not None and worker.process.stdin.closed:
                break
            await anyio.sleep(0.01)
        assert worker.process.stdin is not None
        assert worker.process.stdin.closed
        with pytest.raises(WorkerLost):
            await worker.run([])


async def test_a_tiny_run_is_simulated_on_the_event_loop_and_a_composites_chunks_are_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run of known small cost, predicted to take at most ``SCHEDULE.on_loop_s``, is simulated
    on the event loop (a thread hop costs as much); a chunk of many runs never is."""
    import threading

    simulate = local._simulate
    calls: list[tuple[int, bool]] = []  # (runs, on the event loop's thread)

    def spy(items: Any) -> Any:
        calls.append((len(items), threading.current_thread() is threading.main_thread()))
        return simulate(items)

    monkeypatch.setattr(local, "_simulate", spy)
    async with Sdk() as sdk:
        for i in range(3):  # the first is measured in a thread; then the lane's time is known
            job = sdk.create_job(program=basis_state(i), config={"shots": 10})
            await job.execute(timeout_s=60)
            assert job.state is JobState.COMPLETED
        assert calls[-1] == (1, True)
        calls.clear()
        composite = sdk.create_job(program=[basis_state(i) for i in range(300)], config={"shots": 10})
        await composite.execute(timeout_s=120)
        assert composite.state is JobState.COMPLETED
    on_loop = [runs for runs, here in calls if here]
    assert all(runs <= 10 for runs in on_loop)  # a few milliseconds' worth at most
    assert any(runs > 10 and not here for runs, here in calls)


async def test_a_run_queued_while_the_in_process_lane_simulates_goes_when_the_simulation_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The in-process lane is free when its simulation ends, not when its runs end: a run queued
    meanwhile is not held up by the first run's minimum duration (30 s here)."""
    import threading

    simulate = local._simulate
    entered, gate = threading.Event(), threading.Event()

    def held(items: Any) -> Any:
        if not entered.is_set():
            entered.set()
            gate.wait(10)  # bounded: released below
        return simulate(items)

    monkeypatch.setattr(local, "_simulate", held)
    try:
        async with Sdk() as sdk:
            first = sdk.create_job(program=basis_state(1), config={"shots": 10, "min_duration_s": 30})
            await first.submit(timeout_s=10)
            for _ in range(500):  # until its simulation holds the lane (bounded)
                if entered.is_set():
                    break
                await anyio.sleep(0.01)
            assert entered.is_set()
            second = sdk.create_job(program=basis_state(2), config={"shots": 10})
            await second.submit(timeout_s=10)
            gate.set()
            await second.wait(timeout_s=10)
            assert second.state is JobState.COMPLETED
            await first.refresh(timeout_s=10)
            assert first.state is JobState.RUNNING  # still lasting its 30 s
            await first.cancel(timeout_s=10)
    finally:
        gate.set()
