"""One emulator in its own process, for the benchmarks: ``python emulator_server.py VENDOR [k=v ...]``.

Prints one JSON line ``{"base_url", "env"}`` once it serves, then serves until stdin closes. Adds
``GET /_bench/stats`` (request counts by kind since the last ``POST /_bench/stats``), unauthenticated.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any

import anyio
from aiohttp import web

from oqc_style_sdk.testing.emulator import Emulator, create_emulator


def _kind(method: str, path: str) -> str:
    """What a request is for, across vendors (OQC and Databricks paths). ``all_info`` (what
    oqc-qcaas-sdk polls) is a status read that also carries the result."""
    if method == "GET" and path.endswith(("/status", "/all_info", "/tasks", "runs/list", "runs/get")):
        return "status"
    if path.endswith(("/results", "runs/get-output")):
        return "result"
    if method == "POST" and path.endswith(("/tasks", "/tasks/submit", "runs/submit")):
        return "submit"
    if "cancel" in path:
        return "cancel"
    return "other"


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


async def main(vendor: str, options: dict[str, Any]) -> None:
    emulator: Emulator = create_emulator(vendor, max_log=10**7, max_lifetime_s=900, **options)

    async def stats(request: web.Request) -> web.Response:
        counts = Counter(
            _kind(e.method, e.path) for e in emulator.requests if not e.path.startswith("/_bench")
        )
        return web.json_response({"total": sum(counts.values()), **counts})

    async def reset(request: web.Request) -> web.Response:
        emulator.clear_log()
        return web.json_response({})

    emulator.app.router.add_get("/_bench/stats", stats)
    emulator.app.router.add_post("/_bench/stats", reset)
    emulator.is_authorized = _open_bench(emulator.is_authorized)  # type: ignore[method-assign]
    await emulator.start()
    print(json.dumps({"base_url": emulator.base_url, "env": emulator.env}), flush=True)
    await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)  # until the parent closes it
    await emulator.stop()


def _open_bench(check: Any) -> Any:
    def is_authorized(request: web.Request) -> bool:
        return bool(request.path.startswith("/_bench") or check(request))

    return is_authorized


if __name__ == "__main__":
    opts = {k: _value(v) for k, v in (arg.split("=", 1) for arg in sys.argv[2:])}
    anyio.run(main, sys.argv[1], opts)
