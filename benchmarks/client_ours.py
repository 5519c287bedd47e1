"""The measured client (this SDK), one scenario per process; prints one JSON line of figures.

``python client_ours.py SCENARIO BASE_URL TOKEN N`` with SCENARIO ``composite`` (N jobs as one
composite: submit, wait, results), ``lag`` (N jobs each executed on its own, recording when each
``execute()`` returned) or ``cancel`` (Databricks: N running runs cancelled one after the other).
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from typing import Any

import anyio

import oqc_style_sdk.backends.databricks
import oqc_style_sdk.backends.oqc
import oqc_style_sdk.composite  # noqa: F401 - imported before the clock starts, as the floor's aiohttp is
from oqc_style_sdk import Sdk
from oqc_style_sdk.state import JobState

PROGRAM = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\ncreg c[1];\nh q[0];\nmeasure q[0] -> c[0];\n'
QPU = "qpu:uk:2:d865b5a184"


async def composite(base_url: str, token: str, n: int) -> dict[str, Any]:
    async with Sdk("oqc", url=base_url, authentication_token=token) as sdk:
        jobs = sdk.create_job(program=[PROGRAM] * n, qpu_id=QPU)
        await jobs.execute(timeout_s=600)
        ok = sum(1 for job in jobs if job.state is JobState.COMPLETED and job.result is not None)
        return {"ok": ok, "poller_reads": sdk.poller.reads, "poller_ticks": sdk.poller.ticks}


async def lag(base_url: str, token: str, n: int) -> dict[str, Any]:
    returned: dict[str, float] = {}
    async with Sdk("oqc", url=base_url, authentication_token=token) as sdk:
        jobs = [sdk.create_job(program=PROGRAM, qpu_id=QPU) for _ in range(n)]

        async def one(job: Any) -> None:
            await job.execute(timeout_s=300)
            returned[job.task_id] = time.time()

        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(one, job)
        ok = sum(1 for job in jobs if job.state is JobState.COMPLETED)
    return {"ok": ok, "returned": returned}


CLUSTER = "0923-164208-meows279"
NOTEBOOK = {
    "run_name": "bench",
    "tasks": [
        {
            "task_key": "main",
            "existing_cluster_id": CLUSTER,
            "notebook_task": {"notebook_path": "/Users/me@example.com/nb"},
        }
    ],
}


async def cancel(base_url: str, token: str, k: int) -> dict[str, Any]:
    """K runs one after the other: submit, wait until RUNNING (not timed), time ``cancel()``."""
    times: list[float] = []
    async with Sdk("databricks", host=base_url, token=token) as sdk:
        for _ in range(k):
            job = sdk.create_job(program=NOTEBOOK)
            await job.submit()
            while job.state is not JobState.RUNNING:
                await anyio.sleep(0.05)
                await job.refresh()
            start = time.perf_counter()
            state = await job.cancel(timeout_s=60)
            times.append(time.perf_counter() - start)
            assert state is JobState.CANCELLED, state
    return {"ok": len(times), "cancel_s": times, "cancel_median_s": statistics.median(times)}


async def main() -> None:
    scenario, base_url, token, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    cpu0, wall0 = time.process_time(), time.perf_counter()
    figures = await {"composite": composite, "lag": lag, "cancel": cancel}[scenario](base_url, token, n)
    figures["cpu_s"] = time.process_time() - cpu0
    figures["wall_s"] = time.perf_counter() - wall0
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    anyio.run(main)
