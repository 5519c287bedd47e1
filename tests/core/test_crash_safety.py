"""Crash safety: a process running a composite of a few hundred jobs against the OQC emulator,
saving as it goes, is killed with SIGKILL at random points; a new process loads the file and
finishes every job. Each vendor task is submitted exactly once per job (the emulator's log), and the
job file is readable after every kill.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import anyio

from oqc_style_sdk.testing.emulator import start_emulator
from oqc_style_sdk.testing.oqc import LUCY_QPU_ID, OqcEmulator

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


async def test_sigkill_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(7)
    file = tmp_path / "composite.json"
    with anyio.fail_after(240):
        async with start_emulator("oqc", job_duration_s=0.2, max_concurrency=64, max_lifetime_s=300) as emu:
            assert isinstance(emu, OqcEmulator)
            creds = emu.credentials
            # Submissions take a while, so that kills land in the middle of them.
            emu.slow_next(100_000, delay_s=0.03, path="/tasks/submit")
            argv = [
                sys.executable,
                str(CHILD),
                creds["url"],
                creds["authentication_token"],
                LUCY_QPU_ID,
                str(file),
                str(JOBS),
            ]
            kills = 0
            for _ in range(KILLS):
                async with await anyio.open_process(argv, stdout=subprocess.DEVNULL, stderr=None) as proc:
                    # A random point: after a random delay (start-up, the first save, polling ...)
                    # or as soon as the vendor sees the next submission, whichever comes first.
                    threshold = submissions(emu) + 1
                    with anyio.move_on_after(rng.uniform(0.1, 2.0)):
                        while submissions(emu) < threshold:  # noqa: ASYNC110 - the log has no event
                            await anyio.sleep(0.001)
                    if proc.returncode is None:
                        proc.send_signal(signal.SIGKILL)
                        kills += 1
                    await proc.wait()
                if file.exists():  # never unreadable: the file parses after every kill
                    json.loads(file.read_text())
            assert kills >= 1
            result = await anyio.run_process(argv, check=False)
            assert result.returncode == 0, result.stderr.decode()[-2000:]
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
