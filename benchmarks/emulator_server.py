"""One emulator in its own process, for the benchmarks: ``python emulator_server.py VENDOR [k=v ...]``.

Prints one JSON line ``{"base_url", "env", "credentials"}`` once it serves, then serves until stdin
closes. Adds, unauthenticated (a local test server's own fake credentials are all it reveals):

- ``GET /_bench/stats``: request counts by kind since the last ``POST /_bench/stats``;
- ``POST /_bench/fault`` ``{"fault", "method", "path"}``: arms one fault rule (``make soak``);
- ``POST /_bench/clear_faults``; ``GET /_bench/report``: the faults applied, the vendor ids of
  every job created, and the emulator's secrets (for the soak's leak scan).
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Callable
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
    emulator: Emulator = create_emulator(vendor, **{"max_log": 10**7, "max_lifetime_s": 900, **options})

    async def stats(request: web.Request) -> web.Response:
        counts = Counter(
            _kind(e.method, e.path) for e in emulator.requests if not e.path.startswith("/_bench")
        )
        return web.json_response({"total": sum(counts.values()), **counts})

    async def reset(request: web.Request) -> web.Response:
        emulator.clear_log()
        return web.json_response({})

    async def fault(request: web.Request) -> web.Response:
        rule = await request.json()
        arm(emulator, rule["fault"], rule["method"], rule["path"])
        return web.json_response({})

    async def clear_faults(request: web.Request) -> web.Response:
        emulator.clear_faults()
        return web.json_response({})

    async def report(request: web.Request) -> web.Response:
        faults = Counter(
            f"http_{e.status}" if e.fault == "fail" else e.fault
            for e in emulator.requests
            if e.fault is not None
        )
        return web.json_response(
            {"faults": faults, "created": CREATED[vendor](emulator), "secrets": list(emulator.secrets())}
        )

    emulator.app.router.add_get("/_bench/stats", stats)
    emulator.app.router.add_post("/_bench/stats", reset)
    emulator.app.router.add_post("/_bench/fault", fault)
    emulator.app.router.add_post("/_bench/clear_faults", clear_faults)
    emulator.app.router.add_get("/_bench/report", report)
    emulator.is_authorized = _open_bench(emulator.is_authorized)  # type: ignore[method-assign]
    await emulator.start()
    info = {"base_url": emulator.base_url, "env": emulator.env, "credentials": emulator.credentials}
    print(json.dumps(info), flush=True)
    await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)  # until the parent closes it
    await emulator.stop()


#: The vendor ids of the jobs each emulator created (a submitted task, for OQC).
CREATED: dict[str, Callable[[Any], list[str]]] = {
    "oqc": lambda emu: [t for t in emu.task_ids if emu._tasks[t].submitted],
    "ibm_quantum": lambda emu: list(emu.job_ids),
    "azure_quantum": lambda emu: list(emu.job_ids),
    "databricks": lambda emu: [str(r) for r in emu.run_ids],
    "windmill": lambda emu: list(emu.job_ids),
}


def arm(emulator: Emulator, fault: str, method: str, pattern: str) -> None:
    """One fault rule for the next request of ``method`` whose path matches ``pattern``."""
    rule: dict[str, Any] = {"method": method, "path": re.compile(pattern)}
    if fault == "429_retry_after":
        emulator.fail_next(1, status=429, retry_after=1, **rule)
    elif fault.isdigit():
        emulator.fail_next(1, status=int(fault), **rule)
    elif fault == "drop":
        emulator.drop_next(1, **rule)
    elif fault == "slow":
        emulator.slow_next(1, delay_s=0.8, **rule)
    elif fault == "malformed":
        emulator.malformed_next(1, **rule)
    elif fault == "closed_after_handling":  # the vendor acted, the answer was lost
        emulator.drop_next(1, after_processing=True, **rule)
    elif fault == "unreadable_200":  # the vendor acted, its answer cannot be read
        emulator.malformed_next(1, after_processing=True, **rule)
    elif fault == "truncated":
        emulator.malformed_next(1, truncated=True, **rule)
    else:
        raise ValueError(f"unknown fault {fault!r}")


def _open_bench(check: Any) -> Any:
    def is_authorized(request: web.Request) -> bool:
        return bool(request.path.startswith("/_bench") or check(request))

    return is_authorized


if __name__ == "__main__":
    opts = {k: _value(v) for k, v in (arg.split("=", 1) for arg in sys.argv[2:])}
    anyio.run(main, sys.argv[1], opts)
