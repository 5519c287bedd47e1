"""Crash safety: a process running a composite against a vendor's emulator, saving as it goes, is
killed with SIGKILL at random points; a new process loads the file and finishes every job.

- OQC, a few hundred jobs: each vendor task is submitted exactly once per job (the emulator's
  log), and the job file is readable after every kill.
- Every HTTP vendor, a few jobs, the kills timed to land while a creation is at the vendor (issue
  16): the vendor's own count of jobs shows no duplicate across the restarts.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from oqc_style_sdk.testing.emulator import Emulator, start_emulator
from oqc_style_sdk.testing.oqc import LUCY_QPU_ID, OqcEmulator
from tests.common import ROOT
from tests.matrix.test_fault_matrix import ADAPTERS

CHILD = Path(__file__).with_name("crash_child.py")
JOBS = 200
KILLS = 4


def submissions(emu: OqcEmulator) -> int:
    """Tasks submitted so far (a request may carry several)."""
    return sum(
        len(e.body["tasks"])
        for e in emu.requests
        if e.method == "POST" and e.path.endswith("/tasks/submit") and isinstance(e.body, dict)
    )


async def kill_and_resume(
    emu: Emulator, argv: list[str], file: Path, kills: int, kill_point: Callable[[], Awaitable[None]]
) -> int:
    """Run the child ``kills`` times, each killed once ``kill_point()`` returns (unless it ended
    first), then once to the end. Returns how many runs were killed; the file parses after every
    kill."""
    # The child imports this checkout's SDK (whatever the environment has installed).
    env = {**os.environ, **emu.env, "PYTHONPATH": str(ROOT)}
    killed = 0
    for _ in range(kills):
        async with await anyio.open_process(argv, stdout=subprocess.DEVNULL, stderr=None, env=env) as proc:
            await kill_point()
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
                killed += 1
            await proc.wait()
        saved = anyio.Path(file)
        if await saved.exists():  # never unreadable: the file parses after every kill
            json.loads(await saved.read_text())
    result = await anyio.run_process(argv, check=False, env=env)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    return killed


async def seen(count: Callable[[], int], more: int) -> None:
    """Until the vendor's log shows ``more`` requests more than now (it has no event to wait on)."""
    threshold = count() + more
    while count() < threshold:  # noqa: ASYNC110
        await anyio.sleep(0.001)


async def test_sigkill_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(7)
    file = tmp_path / "composite.json"
    with anyio.fail_after(240):
        async with start_emulator("oqc", job_duration_s=0.2, max_concurrency=64, max_lifetime_s=300) as emu:
            assert isinstance(emu, OqcEmulator)
            # Submissions take a while, so that kills land in the middle of them.
            emu.slow_next(100_000, delay_s=0.03, path="/tasks/submit")
            argv = [sys.executable, str(CHILD), "oqc", LUCY_QPU_ID, str(file), str(JOBS)]

            async def kill_point() -> None:
                # A random point: after a random delay (start-up, the first save, polling ...)
                # or as soon as the vendor sees the next submission, whichever comes first.
                with anyio.move_on_after(rng.uniform(0.1, 2.0)):
                    await seen(lambda: submissions(emu), 1)

            kills = await kill_and_resume(emu, argv, file, KILLS, kill_point)
            assert kills >= 1
            document = json.loads(file.read_text())
            submits = [
                task["task_id"]
                for e in emu.requests
                if e.method == "POST" and e.path.endswith("/tasks/submit") and e.status == 200
                for task in e.body["tasks"]
            ]
            statuses = {task_id: await emu.status_of(task_id) for task_id in set(submits)}
            engine_runs = emu.engine_runs  # a resent task id is recognised, not run again
    text = json.dumps(document)
    assert text.count('"COMPLETED"') >= JOBS
    per_task = Counter(submits)
    # One vendor task per job: no more submitted tasks than jobs, each ended COMPLETED.
    assert len(per_task) == JOBS, (len(per_task), kills)
    assert set(statuses.values()) == {"COMPLETED"}
    assert engine_runs == JOBS


#: Jobs per composite, and kills per vendor, in the every-vendor test (seconds each, not minutes).
VENDOR_JOBS = 6
VENDOR_KILLS = 2
#: How long each vendor takes to answer a creation in that test.
CREATION_S = 0.05


def vendor_jobs(backend: str, emu: Any) -> int:
    """The jobs the vendor made. OQC hands out task ids before submission: its count is the tasks
    that ran (a reserved id never submitted is no job)."""
    return int(emu.engine_runs) if backend == "oqc" else ADAPTERS[backend].created(emu)


@pytest.mark.parametrize("backend", list(ADAPTERS))
async def test_sigkill_during_submissions_on_every_vendor_makes_no_second_job(
    backend: str, tmp_path: Path
) -> None:
    adapter = ADAPTERS[backend]
    rng = random.Random(f"16-{backend}")
    file = tmp_path / "composite.json"
    create = adapter.submit
    with anyio.fail_after(240):
        options = {"job_duration_s": 0.2, "max_lifetime_s": 300.0, **adapter.options}
        async with start_emulator(adapter.emulator, **options) as emu:
            # Creations take a while, so that kills land while one is at the vendor.
            emu.slow_next(100_000, delay_s=CREATION_S, path=create.path, method=create.method)

            wanted = (create.method, True)

            def creations() -> int:
                return sum(1 for e in emu.requests if (e.method, bool(create.path.search(e.path))) == wanted)

            target = adapter.target or "-"
            program = json.dumps(adapter.program)
            argv = [sys.executable, str(CHILD), backend, target, str(file), str(VENDOR_JOBS), program]

            async def kill_point() -> None:
                # While a creation is at the vendor: some creations in (the first few of this
                # run), then a moment less than the vendor takes to answer one.
                with anyio.move_on_after(60):
                    await seen(creations, rng.randint(1, 3))
                await anyio.sleep(rng.uniform(0.0, CREATION_S))

            kills = await kill_and_resume(emu, argv, file, VENDOR_KILLS, kill_point)
            document = json.loads(file.read_text())
            made = vendor_jobs(backend, emu)
    assert kills >= 1
    assert [job["state"] for job in document["jobs"]] == ["COMPLETED"] * VENDOR_JOBS
    assert made == VENDOR_JOBS, (made, kills)
    # Each job's run is the vendor's one job: no two jobs share a run, none ran twice.
    assert len({job["ref"]["task_id"] for job in document["jobs"]}) == VENDOR_JOBS
