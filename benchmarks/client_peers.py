"""The published SDKs on the same workloads, run from ``benchmarks/.venv-peers`` (never a project
dependency). ``python client_peers.py oqc BASE_URL TOKEN N`` runs N jobs as one ``oqc-qcaas-sdk``
composite; ``python client_peers.py databricks BASE_URL TOKEN K`` times ``databricks-sdk``'s
``cancel_run_and_wait`` on K running runs. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import sys
import time
from datetime import timedelta
from typing import Any

PROGRAM = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\ncreg c[1];\nh q[0];\nmeasure q[0] -> c[0];\n'
QPU = "qpu:uk:2:d865b5a184"
CLUSTER = "0923-164208-meows279"


async def oqc(base_url: str, token: str, n: int) -> dict[str, Any]:
    from oqc_qcaas_sdk import OqcSdk

    async with OqcSdk(url=base_url, authentication_token=token) as sdk:
        jobs: Any = sdk.create_job(program=[PROGRAM] * n, qpu_id=QPU)
        await jobs.execute(timeout_s=600)
        ok = len(jobs.completed_jobs)
    return {"ok": ok}


def databricks(base_url: str, token: str, k: int) -> dict[str, Any]:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service import jobs

    client = WorkspaceClient(host=base_url, token=token, auth_type="pat")
    times: list[float] = []
    for i in range(k):
        run_id = client.jobs.submit(
            run_name=f"bench-{i}",
            tasks=[
                jobs.SubmitTask(
                    task_key="main",
                    existing_cluster_id=CLUSTER,
                    notebook_task=jobs.NotebookTask(notebook_path="/Users/me@example.com/nb"),
                )
            ],
        ).run_id
        # Not timed: wait (at most 60 s) until the run is RUNNING. This peer client is synchronous,
        # in its own process with no event loop, so a plain sleep blocks nothing else.
        deadline = time.monotonic() + 60
        while True:
            state = client.jobs.get_run(run_id).state
            if state is not None and state.life_cycle_state == jobs.RunLifeCycleState.RUNNING:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} did not start within 60 s")
            time.sleep(0.05)
        start = time.perf_counter()
        ended = client.jobs.cancel_run_and_wait(run_id, timeout=timedelta(seconds=60))
        times.append(time.perf_counter() - start)
        assert ended.state is not None
        assert ended.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED
    return {"ok": len(times), "cancel_s": times, "cancel_median_s": statistics.median(times)}


def main() -> None:
    vendor, base_url, token, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    cpu0, wall0 = time.process_time(), time.perf_counter()
    figures = asyncio.run(oqc(base_url, token, n)) if vendor == "oqc" else databricks(base_url, token, n)
    figures["cpu_s"] = time.process_time() - cpu0
    figures["wall_s"] = time.perf_counter() - wall0
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
