"""The measuring rules of ``make bench`` (benchmarks/), checked on made-up samples: no timing."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

from tests.common import ROOT


def bench_module(name: str) -> ModuleType:
    """A script of benchmarks/, loaded under its own name (nothing added to sys.path)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


client_local = bench_module("client_local")
instructions = bench_module("instructions")


def ticks(rates: list[float], every: float = 0.02) -> list[tuple[float, float]]:
    """Samples (t, cpu) of a tree using ``rates[i]`` cores during the i-th interval."""
    out, cpu = [(0.0, 0.0)], 0.0
    for i, rate in enumerate(rates):
        cpu += rate * every
        out.append(((i + 1) * every, cpu))
    return out


def test_cpu_stop_is_when_the_tree_goes_quiet_for_good() -> None:
    # busy for 0.3 s (15 samples), then idle for the rest of 5 s
    samples = ticks([1.0] * 15 + [0.0] * 235)
    stop = client_local._cpu_stop(samples)
    assert stop is not None
    assert stop == pytest.approx(0.3 - client_local.QUIET_CPU_S, abs=0.021)


def test_a_tree_still_busy_at_the_end_of_the_watch_did_not_stop() -> None:
    # a quarter of a core all along (a simulation starved by other work is still running)
    assert client_local._cpu_stop(ticks([0.25] * 250)) is None
    # quiet for a while, then busy again: the quiet spell is not a stop
    assert client_local._cpu_stop(ticks([0.0] * 100 + [1.0] * 150)) is None


def test_the_local_circuits_are_distinct_and_the_long_one_is_not_clifford() -> None:
    texts = {client_local.program(i) for i in range(2000)}
    assert len(texts) == 2000
    assert "rx(" in client_local.long_program(4, 2)


def test_no_counter_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(instructions.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"perf.*valgrind"):
        instructions.counter()
