"""Seed 003 ("Working with Jobs") run verbatim against ``oqcs emulate oqc``.

The page is kept byte for byte in ``tests/data/seed_003_working_with_jobs.txt``. The only change made
to it before running is the one the issue allows: ``oqc_qcaas_sdk`` → ``oqc_style_sdk``. Its ``>>>``
examples are run with :mod:`doctest`, one test per example (an example being one run of consecutive
``>>>`` lines between two paragraphs of prose), against an emulator started exactly as a user would
start it — the ``oqcs`` console script, as a subprocess — with ``OQC_URL`` and
``OQC_AUTHENTICATION_TOKEN`` taken from the lines it prints before ``ready``.

The examples call ``asyncio.run`` themselves, so these tests are sync.
"""

from __future__ import annotations

import doctest
import io
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.common import DATA

SEED = DATA / "seed_003_working_with_jobs.txt"
READY_TIMEOUT_S = 30.0
JOB_DURATION_S = "0.2"


def _examples() -> list[tuple[str, list[doctest.Example]]]:
    """The page's examples: each run of ``>>>`` lines not separated by prose, named by its line."""
    text = SEED.read_text(encoding="utf-8").replace("oqc_qcaas_sdk", "oqc_style_sdk")
    groups: list[list[doctest.Example]] = []
    current: list[doctest.Example] = []
    for piece in doctest.DocTestParser().parse(text, str(SEED)):
        if isinstance(piece, doctest.Example):
            current.append(piece)
        elif piece.strip() and current:  # prose ends an example
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return [(f"line{group[0].lineno + 1}", group) for group in groups]


EXAMPLES = _examples()


def test_the_seed_copy_has_every_example() -> None:
    """The page has nine ``>>>`` examples; a truncated copy must not pass silently."""
    assert len(EXAMPLES) == 9
    assert all(group[-1].want.strip() for _, group in EXAMPLES)  # each ends in an expected output


def _oqcs_command() -> list[str]:
    beside = Path(sys.executable).parent / "oqcs"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("oqcs")
    if found:
        return [found]
    return [sys.executable, "-m", "oqc_style_sdk.cli"]  # pragma: no cover - console script missing


@dataclass
class RunningEmulator:
    process: subprocess.Popen[str]
    env: dict[str, str]


def _pump(stream: io.TextIOBase, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


@pytest.fixture(scope="module")
def oqcs_emulator() -> Iterator[RunningEmulator]:
    """``oqcs emulate oqc --job-duration 0.2`` as a subprocess; always terminated."""
    process = subprocess.Popen(
        [*_oqcs_command(), "emulate", "oqc", "--job-duration", JOB_DURATION_S, "--max-lifetime", "300"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
        env: dict[str, str] = {}
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"`oqcs emulate oqc` printed no `ready` within {READY_TIMEOUT_S:g} s")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(f"`oqcs emulate oqc` exited ({process.poll()}) before printing `ready`")
            if line.strip() == "ready":
                break
            key, sep, value = line.partition("=")
            if sep:
                env[key.strip()] = value.strip()
        assert set(env) >= {"OQC_URL", "OQC_AUTHENTICATION_TOKEN"}, sorted(env)
        yield RunningEmulator(process, env)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck emulator
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.parametrize(("name", "examples"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_seed_003_example(
    name: str,
    examples: list[doctest.Example],
    oqcs_emulator: RunningEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert oqcs_emulator.process.poll() is None, "the emulator subprocess has exited"
    for key, value in oqcs_emulator.env.items():
        monkeypatch.setenv(key, value)
    assert os.environ["OQC_URL"].startswith("http://127.0.0.1:")
    test = doctest.DocTest(
        examples,
        globs={"__name__": "seed_003"},
        name=f"seed_003:{name}",
        filename=str(SEED),
        lineno=0,
        docstring=None,
    )
    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=0)  # exact outputs, as the page prints them
    result = runner.run(test, out=report.write, clear_globs=True)
    assert result.attempted == len(examples)
    assert result.failed == 0, report.getvalue()
