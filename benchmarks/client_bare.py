"""The floor: a bare aiohttp script making the minimal requests for N OQC jobs (reserve the ids and
submit, 500 a request; read the QPU's task list once a second until all ended; read each result).
``python client_bare.py BASE_URL TOKEN N`` prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from client_ours import PROGRAM, QPU

CONFIG = json.dumps({"$type": "<class 'compiler_config.config.CompilerConfig'>", "$data": {"repeats": 1000}})


async def run(base_url: str, token: str, n: int) -> dict[str, Any]:
    headers = {"Authentication-Token": token}
    since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{base_url}/admin/qpu", params={"per_page": "1000"}) as r:
            qpu_url = next(q["url"] for q in (await r.json())["items"] if q["id"] == QPU)
        limit = asyncio.Semaphore(64)
        ids: set[str] = set()
        for start in range(0, n, 500):  # the minimal requests: reserve and submit in batches
            count = min(500, n - start)
            async with http.post(f"{qpu_url}/tasks", json={"qpu_id": QPU, "task_count": count}) as r:
                reserved = await r.json()
            tasks = [{"program": PROGRAM, "config": CONFIG, "qpu_id": QPU, "task_id": t} for t in reserved]
            async with http.post(f"{qpu_url}/tasks/submit", json={"tasks": tasks}) as r:
                ids.update(item["task_id"] for item in await r.json())
        ended: set[str] = set()
        while ended != ids:
            await asyncio.sleep(1.0)
            async with http.get(f"{qpu_url}/tasks", params={"start_date": since}) as r:
                for item in await r.json():
                    if item["task_id"] in ids and item["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                        ended.add(item["task_id"])

        async def result(task_id: str) -> bool:
            async with limit, http.get(f"{qpu_url}/tasks/{task_id}/results") as r:
                return (await r.json())["results"] is not None

        ok = sum(await asyncio.gather(*(result(t) for t in ids)))
    return {"ok": ok}


def main() -> None:
    base_url, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cpu0, wall0 = time.process_time(), time.perf_counter()
    figures = asyncio.run(run(base_url, token, n))
    figures["cpu_s"] = time.process_time() - cpu0
    figures["wall_s"] = time.perf_counter() - wall0
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
