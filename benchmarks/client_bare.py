"""The floor: a bare aiohttp script making the minimal requests for N OQC jobs (reserve the ids, 500
a request, and submit them in as few requests as OQC's 128 KiB request limit allows — each task
encoded to compact JSON once, requests cut by bytes; read the QPU's task list once a second until
all ended; read each result).
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

#: OQC refuses a request over 128 KiB (413); keep 4 KiB of it for the headers, as the SDK does.
MAX_BODY = 128 * 1024 - 4 * 1024
JSON = {"Content-Type": "application/json"}
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
            encoded = [
                json.dumps(
                    {"program": PROGRAM, "config": CONFIG, "qpu_id": QPU, "task_id": t}, separators=(",", ":")
                )
                for t in reserved
            ]
            bodies: list[list[str]] = [[]]
            size = 0
            for task in encoded:  # as many tasks a request as fit in the limit
                if bodies[-1] and size + len(task) + 1 > MAX_BODY - len('{"tasks":[]}'):
                    bodies.append([])
                    size = 0
                bodies[-1].append(task)
                size += len(task) + 1
            for body in bodies:
                data = '{"tasks":[' + ",".join(body) + "]}"
                async with http.post(f"{qpu_url}/tasks/submit", data=data, headers=JSON) as r:
                    r.raise_for_status()
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
