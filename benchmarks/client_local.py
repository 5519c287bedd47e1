"""The local simulator through ``Sdk()`` and qiskit-aer used directly, one scenario per process.

``python client_local.py SCENARIO N`` prints one JSON line:

- ``sdk_batch`` / ``aer_batch``: N small distinct circuits (OpenQASM 2 text, 100 shots each)
  parsed and simulated: through the SDK as one composite (``create_job(program=[...])``), directly
  as ``qiskit.qasm2.loads`` of each text and one ``AerSimulator().run(circuits)`` batch (the
  faster of Aer's defaults and one thread per simulation, ``AER_OPTIONS``);
- ``sdk_single`` / ``aer_single``: the same circuits one after another, each a job of its own
  (``create_job(program=...)``, ``execute()``), or a direct parse and ``AerSimulator().run``;
- ``sdk_cancel``: a local job whose simulation lasts tens of seconds is cancelled one second after
  it runs; the figure is the time from then until the process tree stops using the CPU (if the
  simulation holds the event loop, the cancel is called late, and the delay counts).

Each timed part starts after imports and one untimed warm-up run on each side (a different
circuit), so neither pays for loading qiskit or Aer; ``sdk_batch`` first runs a composite of as
many other circuits, which starts the SDK's worker processes (each imports qiskit and Aer), and
reports it as ``cold``. ``wall_s`` is the timed part's wall time;
``cores_used`` the process tree's CPU time (this process and every worker process it started) over
that wall time.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import anyio

SHOTS = 100
#: How long ``sdk_cancel`` watches the CPU after calling ``cancel()``.
CANCEL_WATCH_S = 5.0
#: The simulation has stopped at the first moment after which the process tree, less the event
#: loop's thread (where the watch itself samples), uses at most ``QUIET_CPU_S`` of CPU until the
#: end of the watch (``/proc`` counts other processes' CPU in ticks of 10 ms), provided the watch
#: ends with at least ``QUIET_TAIL_S`` of such quiet; else it did not stop.
QUIET_CPU_S = 0.02
QUIET_TAIL_S = 1.0
SAMPLE_EVERY_S = 0.02


def program(i: int) -> str:
    """The ``i``-th small circuit: 3 qubits, distinct angles, every text different."""
    a, b = 0.001 * (i + 1), 0.0007 * (i + 3)
    return (
        'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[3];\n'
        f"h q[0];\nrx({a:.6f}) q[1];\ncx q[0],q[1];\nry({b:.6f}) q[2];\ncx q[1],q[2];\n"
        "measure q -> c;\n"
    )


def long_program(qubits: int = 20, layers: int = 100) -> str:
    """A circuit whose statevector simulation lasts tens of seconds (not Clifford, no shortcut)."""
    lines = ['OPENQASM 2.0;\ninclude "qelib1.inc";', f"qreg q[{qubits}];", f"creg c[{qubits}];"]
    for layer in range(layers):
        lines += [f"rx({0.1 + 0.001 * layer:.4f}) q[{k}];" for k in range(qubits)]
        lines += [f"cx q[{k}],q[{k + 1}];" for k in range(layer % 2, qubits - 1, 2)]
    lines.append("measure q -> c;")
    return "\n".join(lines) + "\n"


def tree_cpu_s() -> float:
    """CPU seconds of this process, its ended (waited-for) children, and its live descendants."""
    import psutil  # a dependency of qiskit-aer

    own = os.times()
    total = time.process_time() + own.children_user + own.children_system
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:  # ended between listing and reading
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


class Clock:
    """Wall time and process-tree CPU time of a timed part."""

    def __enter__(self) -> Clock:
        self.cpu0, self.wall0 = tree_cpu_s(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self.wall0
        self.cpu_s = tree_cpu_s() - self.cpu0

    def figures(self) -> dict[str, float]:
        return {"wall_s": self.wall_s, "cpu_s": self.cpu_s, "cores_used": self.cpu_s / self.wall_s}


def _counts_ok(counts: dict[str, int]) -> bool:
    return sum(counts.values()) == SHOTS


#: The ways of running Aer directly that are compared, the best one is the figure's floor: Aer's
#: defaults, and one thread per simulation (on a busy machine Aer's OpenMP threads spin waiting for
#: each other and a batch of tiny circuits can take 10-20 times as long with the defaults).
AER_OPTIONS: dict[str, dict[str, Any]] = {"defaults": {}, "one_thread": {"max_parallel_threads": 1}}


def _best(n: int, timed: Any) -> dict[str, Any]:
    """Each way of ``AER_OPTIONS`` on its own simulator (after a warm-up); the fastest one's figures."""
    import qiskit.qasm2
    from qiskit_aer import AerSimulator

    texts = [program(i) for i in range(n)]
    ways: dict[str, dict[str, Any]] = {}
    for name, options in AER_OPTIONS.items():
        sim = AerSimulator(**options)
        sim.run(qiskit.qasm2.loads(program(-1)), shots=SHOTS).result()  # warm-up
        with Clock() as clock:
            ok = timed(sim, texts)
        ways[name] = {"ok": ok, **clock.figures()}
    best = min(ways, key=lambda name: ways[name]["wall_s"])
    return {**ways[best], "best": best, "ways": ways}


def _batch(sim: Any, texts: list[str]) -> int:
    import qiskit.qasm2

    circuits = [qiskit.qasm2.loads(text) for text in texts]
    result = sim.run(circuits, shots=SHOTS).result()
    return sum(_counts_ok(result.get_counts(k)) for k in range(len(texts)))


def _singles(sim: Any, texts: list[str]) -> int:
    import qiskit.qasm2

    return sum(
        _counts_ok(sim.run(qiskit.qasm2.loads(text), shots=SHOTS).result().get_counts()) for text in texts
    )


def aer_batch(n: int) -> dict[str, Any]:
    return _best(n, _batch)


def aer_single(n: int) -> dict[str, Any]:
    return _best(n, _singles)


def _sdk_ok(job: Any) -> bool:
    from oqc_style_sdk.state import JobState

    if job.state is not JobState.COMPLETED or job.result is None:
        return False
    return all(sum(counts.values()) == SHOTS for counts in job.result.data.values())


async def sdk_batch(n: int) -> dict[str, Any]:
    from oqc_style_sdk import Sdk

    texts = [program(i) for i in range(n)]
    async with Sdk() as sdk:
        await sdk.create_job(program=program(-1), config={"shots": SHOTS}).execute(timeout_s=120)
        # The first composite this large starts the worker processes, each a new interpreter that
        # imports qiskit and Aer (1-3 s of CPU): loading them is kept out of the timed part, as it
        # is on the direct side. That first composite (other circuits, same size) is the cold view.
        with Clock() as cold:
            warm_up = sdk.create_job(program=[program(n + i) for i in range(n)], config={"shots": SHOTS})
            await warm_up.execute(timeout_s=600)
        with Clock() as clock:
            jobs = sdk.create_job(program=texts, config={"shots": SHOTS})
            await jobs.execute(timeout_s=600)
            ok = sum(_sdk_ok(job) for job in jobs)
    return {"ok": ok, **clock.figures(), "cold": cold.figures()}


async def sdk_single(n: int) -> dict[str, Any]:
    from oqc_style_sdk import Sdk

    texts = [program(i) for i in range(n)]
    ok = 0
    async with Sdk() as sdk:
        await sdk.create_job(program=program(-1), config={"shots": SHOTS}).execute(timeout_s=120)
        with Clock() as clock:
            for text in texts:
                job = sdk.create_job(program=text, config={"shots": SHOTS})
                await job.execute(timeout_s=120)
                ok += _sdk_ok(job)
    return {"ok": ok, **clock.figures()}


async def sdk_cancel(n: int) -> dict[str, Any]:
    """N times: run the long circuit, cancel it while it simulates, time until the CPU stops."""
    from oqc_style_sdk import Sdk
    from oqc_style_sdk.state import JobState

    stops: list[float] = []
    busy: list[float] = []
    stopped: list[bool] = []
    late: list[float] = []
    states: list[str] = []
    phases: dict[str, float] = {}
    clock0 = time.perf_counter()
    async with Sdk() as sdk:
        await sdk.create_job(program=program(-1), config={"shots": SHOTS}).execute(timeout_s=120)
        phases["warm_up_s"] = time.perf_counter() - clock0
        for _ in range(n):
            job = sdk.create_job(program=long_program(), config={"shots": SHOTS})
            await job.submit()
            submitted = time.perf_counter()
            with anyio.fail_after(60):
                while job.state is not JobState.RUNNING:
                    await anyio.sleep(0.02)
                    await job.refresh()
            phases.setdefault("to_running_s", time.perf_counter() - submitted)
            cpu0, wait0 = _other_cpu_s(), time.perf_counter()
            await anyio.sleep(1.0)  # the simulation is under way: the CPU is busy
            called = time.perf_counter()
            # A simulation that holds the event loop delays the cancel itself: that delay counts.
            late.append(called - (wait0 + 1.0))
            busy.append((_other_cpu_s() - cpu0) / (called - wait0))
            samples: list[tuple[float, float]] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(_sample_cpu, samples, called)
                states.append((await job.cancel(timeout_s=30)).value)
            stop = _cpu_stop(samples)
            stopped.append(stop is not None)
            stops.append(late[-1] + (CANCEL_WATCH_S if stop is None else stop))
        closing = time.perf_counter()
    phases["close_s"] = time.perf_counter() - closing
    phases["total_s"] = time.perf_counter() - clock0
    return {
        "ok": sum(s == JobState.CANCELLED.value for s in states),
        "states": states,
        "stop_s": stops,
        "stopped": stopped,
        "cores_busy_before_cancel": busy,
        "cancel_called_late_s": late,
        "phases": phases,
    }


def _other_cpu_s() -> float:
    """The process tree's CPU seconds but this thread's (the event loop's, where the watch runs)."""
    return tree_cpu_s() - time.thread_time()


async def _sample_cpu(samples: list[tuple[float, float]], started: float) -> None:
    """(seconds since ``started``, CPU seconds of the tree but this thread), for the watch."""
    while (now := time.perf_counter() - started) < CANCEL_WATCH_S:
        samples.append((now, _other_cpu_s()))
        await anyio.sleep(SAMPLE_EVERY_S)


def _cpu_stop(samples: list[tuple[float, float]]) -> float | None:
    """When the CPU use stopped for good (see ``QUIET_CPU_S``), or None if it did not."""
    end_t, end_cpu = samples[-1]
    stop = next(t for t, cpu in samples if end_cpu - cpu <= QUIET_CPU_S)
    return stop if end_t - stop >= QUIET_TAIL_S else None


SCENARIOS: dict[str, Any] = {
    "aer_batch": aer_batch,
    "aer_single": aer_single,
    "sdk_batch": sdk_batch,
    "sdk_single": sdk_single,
    "sdk_cancel": sdk_cancel,
}


def main() -> None:
    scenario, n = sys.argv[1], int(sys.argv[2])
    run = SCENARIOS[scenario]
    figures = anyio.run(run, n) if scenario.startswith("sdk") else run(n)
    print(json.dumps({"scenario": scenario, "n": n, **figures}), flush=True)
    os._exit(0)  # a simulation thread the SDK abandoned must not keep the process (and the bench) alive


if __name__ == "__main__":
    main()
