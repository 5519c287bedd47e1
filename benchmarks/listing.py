"""``list_10k_s`` and ``list_10k_requests``: 10 000 jobs listed through ``sdk.jobs()``.

For the OQC and the Databricks emulators (each in its own process): a composite of N jobs is
submitted, then a fresh Sdk — in a process of its own, as a user's ``oqcs jobs`` would be — lists
them all through the iterator, newest first, keeping none. The figures per vendor:

- ``list_10k_s``: the wall time of the listing;
- ``list_10k_requests`` and ``list_10k_pages_needed``: requests sent while listing, against the pages
  the vendor's page size needs (the listing stops at a short page, or when the vendor says there is
  no more, so at most one request more than the pages);
- ``list_10k_peak_kib`` and ``list_1page_peak_kib``: the most memory the listing held (tracemalloc) for
  N jobs and for one page of jobs: the same order means memory is bounded by a page, not by N.

OQC's task list is per QPU: the listing names the QPU (``target=``) so one QPU's pages are counted.
``python benchmarks/listing.py [N]`` prints the figures as one JSON line; ``run.py`` adds them.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
QPU = "qpu:uk:2:d865b5a184"
NOTEBOOK = {
    "run_name": "bench",
    "tasks": [
        {
            "task_key": "main",
            "existing_cluster_id": "0923-164208-meows279",
            "notebook_task": {"notebook_path": "/Users/me@example.com/nb"},
        }
    ],
}
#: Each vendor's emulator options, the program of its jobs, its listing filter and its page size.
VENDORS: dict[str, dict[str, Any]] = {
    "oqc": {
        "options": ["simulate=false", "job_duration_s=0.01", "seed=7"],
        "program": 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; measure q[0] -> c[0];',
        "target": QPU,
        "page": 1000,
    },
    "databricks": {
        "options": ["job_duration_s=0.01", "pending_s=0"],
        "program": NOTEBOOK,
        "target": None,
        "page": 25,
    },
}


async def _seed(vendor: str, credentials: dict[str, Any], jobs: int) -> None:
    from oqc_style_sdk import Sdk

    spec = VENDORS[vendor]
    async with Sdk(vendor, **credentials) as sdk:
        composite = sdk.create_job(program=[spec["program"]] * jobs, target=spec["target"])
        await composite.submit()


async def _list(vendor: str, credentials: dict[str, Any], jobs: int) -> dict[str, Any]:
    from oqc_style_sdk import Sdk

    spec = VENDORS[vendor]
    async with Sdk(vendor, **credentials) as sdk:
        http = sdk.backend.http  # type: ignore[attr-defined]

        async def listing(limit: int | None) -> tuple[int, int, float, int]:
            sent = http.requests_sent
            tracemalloc.start()
            started = time.perf_counter()
            seen = 0
            async for _job in sdk.jobs(target=spec["target"], page_size=spec["page"], limit=limit):
                seen += 1
            wall = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            return seen, http.requests_sent - sent, wall, peak

        one_page = listing(spec["page"])
        _, _, _, page_peak = await one_page
        seen, requests, wall, peak = await listing(None)
    return {
        "listed": seen,
        "list_10k_s": wall,
        "list_10k_requests": requests,
        "list_10k_pages_needed": math.ceil(jobs / spec["page"]),
        "list_10k_peak_kib": peak / 1024,
        "list_1page_peak_kib": page_peak / 1024,
    }


def _child(step: str, vendor: str, credentials: str, jobs: str) -> None:
    import anyio

    args = (vendor, json.loads(credentials), int(jobs))
    if step == "seed":
        anyio.run(_seed, *args)
        print("{}")
    else:
        print(json.dumps(anyio.run(_list, *args)))


def _in_process(step: str, vendor: str, credentials: dict[str, Any], jobs: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", step, vendor, json.dumps(credentials), str(jobs)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"listing {step} on {vendor} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def figures(jobs: int = 10_000) -> dict[str, Any]:
    """The listing figures of every vendor, keyed ``<figure>_<vendor>``."""
    from run import emulator  # the benchmarks' emulator-in-a-process

    out: dict[str, Any] = {}
    for vendor, spec in VENDORS.items():
        with emulator(vendor, *spec["options"]) as emu:
            _in_process("seed", vendor, emu["credentials"], jobs)
            measured = _in_process("list", vendor, emu["credentials"], jobs)
        if measured["listed"] != jobs:
            raise RuntimeError(f"{vendor}: listed {measured['listed']} of {jobs} jobs")
        if measured["list_10k_requests"] > measured["list_10k_pages_needed"] + 1:
            raise RuntimeError(f"{vendor}: {measured['list_10k_requests']} requests for {jobs} jobs")
        out.update({f"{name}_{vendor}": value for name, value in measured.items() if name != "listed"})
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(*sys.argv[2:6])
    else:
        print(json.dumps(figures(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)))
