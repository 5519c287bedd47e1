"""``make bench``: every scenario, each emulator and each measured client in its own process.

Prints a table and writes ``benchmarks/results.json``. Run from the repository root as
``.venv/bin/python benchmarks/run.py`` (the peers run from ``benchmarks/.venv-peers``).
Sizes can be lowered for a quick look (``--jobs-10k 1000``); ``--only NAME`` (repeatable) runs some
scenarios only, and ``--out FILE`` writes their figures elsewhere than ``benchmarks/results.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
#: Every process started here imports the SDK of this checkout, even where the virtual environment's
#: editable install points at another one (a worktree sharing a venv).
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))
OURS = sys.executable
PEERS = str(HERE / ".venv-peers" / "bin" / "python")
#: The OQC emulator of every OQC scenario: jobs of 2–5 s, not simulated (a fixed result).
QPU = "qpu:uk:2:d865b5a184"
OQC_FAST = ["simulate=false", "job_duration_s=2", "job_duration_max_s=5", "seed=7"]


@contextmanager
def emulator(vendor: str, *options: str) -> Iterator[dict[str, Any]]:
    """An emulator in its own process; yields its base_url and env."""
    proc = subprocess.Popen(
        [OURS, str(HERE / "emulator_server.py"), vendor, *options],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info: dict[str, Any] = json.loads(proc.stdout.readline())
        yield info
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def client(python: str, script: str, *args: object, timeout: float = 600) -> dict[str, Any]:
    """A measured client in its own process; its one JSON line."""
    out = subprocess.run(
        [python, str(HERE / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=HERE,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{script} {args[0]} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def stats(base_url: str, *, reset: bool = False) -> dict[str, int]:
    async def go() -> dict[str, int]:
        method = "POST" if reset else "GET"
        async with aiohttp.ClientSession() as http, http.request(method, f"{base_url}/_bench/stats") as r:
            body: dict[str, int] = await r.json()
            return body

    return asyncio.run(go())


def ended_at(base_url: str, token: str, task_ids: list[str]) -> dict[str, float]:
    """When the emulator ended each task (its timings), as a Unix time."""

    async def go() -> dict[str, float]:
        out: dict[str, float] = {}
        headers = {"Authentication-Token": token}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.get(f"{base_url}/admin/qpu", params={"per_page": "1000"}) as r:
                qpu_url = next(
                    q["url"] for q in (await r.json())["items"] if q["id"] == "qpu:uk:2:d865b5a184"
                )
            for task_id in task_ids:
                async with http.get(f"{qpu_url}/tasks/{task_id}/timings") as r:
                    timings = (await r.json())["timings"]
                out[task_id] = datetime.fromisoformat(timings["RECEIVER_FROM_SCC"]).timestamp()
        return out

    return asyncio.run(go())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def oqc_token(info: dict[str, Any]) -> str:
    return str(info["env"]["OQC_AUTHENTICATION_TOKEN"])


def overhead(args: argparse.Namespace, figures: dict[str, Any], raw: dict[str, Any]) -> None:
    """CPU overhead against a bare aiohttp script: the same jobs, each client on a fresh emulator
    of the same settings (so neither reads the other's tasks in the QPU's task list). CPU seconds
    on a shared machine wander from one run to the next, so the two are run in turns, several
    times (the order swapped each time), and the figure is the ratio of their medians."""
    bare_runs: list[dict[str, Any]] = []
    ours_runs: list[dict[str, Any]] = []
    for turn in range(args.overhead_pairs):
        order = ("bare", "ours") if turn % 2 == 0 else ("ours", "bare")
        for who in order:
            with emulator("oqc", *OQC_FAST) as emu:
                url, token = emu["base_url"], oqc_token(emu)
                if who == "bare":
                    bare_runs.append(client(OURS, "client_bare.py", url, token, args.overhead_jobs))
                else:
                    ours = client(OURS, "client_ours.py", "composite", url, token, args.overhead_jobs)
                    ours_runs.append(ours)
    bare_cpu = [run["cpu_s"] for run in bare_runs]
    ours_cpu = [run["cpu_s"] for run in ours_runs]
    raw["bare"] = {"ok": [run["ok"] for run in bare_runs], "cpu_s": bare_cpu}
    raw["ours_overhead"] = {"ok": [run["ok"] for run in ours_runs], "cpu_s": ours_cpu}
    raw["overhead_pair_ratios"] = [ours / bare for ours, bare in zip(ours_cpu, bare_cpu, strict=True)]
    if any(run["ok"] != args.overhead_jobs for run in bare_runs + ours_runs):
        raise RuntimeError(f"an overhead run missed jobs: {raw['bare']} {raw['ours_overhead']}")
    figures["overhead_cpu_ratio"] = statistics.median(ours_cpu) / statistics.median(bare_cpu)


def instructions(args: argparse.Namespace, figures: dict[str, Any], raw: dict[str, Any]) -> None:
    """The overhead scenario counted in instructions (instructions.py), not CPU seconds."""
    from instructions import figures as instruction_figures

    measured = instruction_figures(args.overhead_jobs // 2, args.overhead_jobs)
    raw["instructions"] = measured
    figures["overhead_instructions_ratio"] = measured["ratio"]


def jobs_10k(args: argparse.Namespace, figures: dict[str, Any], raw: dict[str, Any]) -> None:
    """Ten thousand concurrent jobs, one composite, through the OQC task list."""
    _many_jobs("jobs_10k", args.jobs_10k, figures, raw)


def jobs_100k(args: argparse.Namespace, figures: dict[str, Any], raw: dict[str, Any]) -> None:
    """A hundred thousand concurrent jobs, one composite, from one process."""
    _many_jobs("jobs_100k", args.jobs_100k, figures, raw)


def _many_jobs(name: str, n: int, figures: dict[str, Any], raw: dict[str, Any]) -> None:
    with emulator("oqc", *OQC_FAST) as emu:
        url, token = emu["base_url"], oqc_token(emu)
        stats(url, reset=True)
        big = client(OURS, "client_ours.py", "composite", url, token, n, timeout=1800)
        counted = stats(url)
    raw[name] = {**big, "requests": counted}
    figures[f"{name}_ok"] = big["ok"]
    figures[f"{name}_wall_s"] = big["wall_s"]
    figures[f"{name}_peak_rss_mb"] = big["peak_rss_mb"]
    figures[f"{name}_status_requests_per_job"] = counted.get("status", 0) / n


def lag(args: argparse.Namespace, figures: dict[str, Any], raw: dict[str, Any]) -> None:
    """Detection lag: jobs of 2–5 s each executed on its own."""
    with emulator("oqc", *OQC_FAST) as emu:
        url, token = emu["base_url"], oqc_token(emu)
        measured = client(OURS, "client_ours.py", "lag", url, token, args.lag_jobs)
        ends = ended_at(url, token, list(measured["returned"]))
    lags = [measured["returned"][t] - ends[t] for t in ends]
    raw["lag"] = {
        "ok": measured["ok"],
        "min_s": min(lags),
        "max_s": max(lags),
        "mean_s": statistics.mean(lags),
    }
    figures["detection_lag_p50_s"] = percentile(lags, 0.50)
    figures["detection_lag_p95_s"] = percentile(lags, 0.95)


def vs_oqc_sdk(args: argparse.Namespace, figures: dict[str, Any], raw: dict[str, Any]) -> None:
    """The same composite workload with oqc-qcaas-sdk and with ours."""
    with emulator("oqc", *OQC_FAST) as emu:
        url, token = emu["base_url"], oqc_token(emu)
        stats(url, reset=True)
        peer = client(PEERS, "client_peers.py", "oqc", url, token, args.composite_jobs)
        peer_requests = stats(url)
        stats(url, reset=True)
        ours = client(OURS, "client_ours.py", "composite", url, token, args.composite_jobs)
        ours_requests = stats(url)
    raw["vs_oqc_sdk"] = {
        "peer": {**peer, "requests": peer_requests},
        "ours": {**ours, "requests": ours_requests},
    }
    figures["vs_oqc_sdk_wall_ratio"] = ours["wall_s"] / peer["wall_s"]
    figures["vs_oqc_sdk_requests_ratio"] = ours_requests["total"] / peer_requests["total"]


def vs_databricks_sdk(args: argparse.Namespace, figures: dict[str, Any], raw: dict[str, Any]) -> None:
    """Cancel a running Databricks run until TERMINATED: databricks-sdk's cancel_run_and_wait vs ours."""
    with emulator("databricks", "job_duration_s=60", "pending_s=0.2", "cancel_duration_s=0.3") as emu:
        url, token = emu["base_url"], emu["env"]["DATABRICKS_TOKEN"]
        peer = client(PEERS, "client_peers.py", "databricks", url, token, args.cancels)
        ours = client(OURS, "client_ours.py", "cancel", url, token, args.cancels)
    raw["vs_databricks_sdk_cancel"] = {"peer": peer, "ours": ours}
    figures["vs_databricks_sdk_cancel_ratio"] = ours["cancel_median_s"] / peer["cancel_median_s"]


def listing(args: argparse.Namespace, figures: dict[str, Any], raw: dict[str, Any]) -> None:
    """Ten thousand jobs listed through sdk.jobs() at the OQC and Databricks emulators (listing.py)."""
    from listing import figures as listing_figures

    figures.update(listing_figures(args.jobs_10k))


def _local_vs_aer(kind: str, n: int, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``aer_KIND`` and ``sdk_KIND`` of client_local.py, each in its own process, both complete."""
    aer = client(OURS, "client_local.py", f"aer_{kind}", n)
    sdk = client(OURS, "client_local.py", f"sdk_{kind}", n)
    raw[f"local_{kind}"] = {"aer": aer, "sdk": sdk}
    if aer["ok"] != n or sdk["ok"] != n:
        raise RuntimeError(f"a local {kind} run missed circuits: {raw[f'local_{kind}']}")
    return aer, sdk


def local_batch(args: argparse.Namespace, figures: dict[str, Any], raw: dict[str, Any]) -> None:
    """A composite of small distinct circuits through Sdk() against one direct AerSimulator batch
    (client_local.py); the composite's cores used."""
    aer, sdk = _local_vs_aer("batch", args.local_batch, raw)
    figures["local_vs_aer_batch_ratio"] = sdk["wall_s"] / aer["wall_s"]
    figures["local_cores_used"] = sdk["cores_used"]
    # The Sdk's first composite of that size, which starts its worker processes (no target).
    figures["local_vs_aer_batch_cold_ratio"] = sdk["cold"]["wall_s"] / aer["wall_s"]


def local_single(args: argparse.Namespace, figures: dict[str, Any], raw: dict[str, Any]) -> None:
    """Single local jobs one after another against as many direct Aer runs (client_local.py)."""
    aer, sdk = _local_vs_aer("single", args.local_single, raw)
    figures["local_vs_aer_single_ratio"] = sdk["wall_s"] / aer["wall_s"]


def local_cancel(args: argparse.Namespace, figures: dict[str, Any], raw: dict[str, Any]) -> None:
    """Cancel a running local simulation; the time until the process tree's CPU use stops."""
    measured = client(OURS, "client_local.py", "sdk_cancel", args.local_cancels)
    raw["local_cancel"] = measured
    figures["local_cancel_cpu_stop_s"] = statistics.median(measured["stop_s"])


#: Every scenario, in the order ``make bench`` runs them; ``--only NAME`` runs some of them.
SCENARIOS = {
    "overhead": overhead,
    "instructions": instructions,
    "jobs_10k": jobs_10k,
    "lag": lag,
    "vs_oqc_sdk": vs_oqc_sdk,
    "vs_databricks_sdk": vs_databricks_sdk,
    "listing": listing,
    "jobs_100k": jobs_100k,
    "local_batch": local_batch,
    "local_single": local_single,
    "local_cancel": local_cancel,
}


def targets(args: argparse.Namespace) -> dict[str, tuple[str, float]]:
    return {
        "overhead_cpu_ratio": ("<=", 1.5),
        "overhead_instructions_ratio": ("<=", 1.3),
        "jobs_10k_ok": ("==", args.jobs_10k),
        "jobs_10k_peak_rss_mb": ("<=", 200),
        "jobs_10k_status_requests_per_job": ("<=", 0.2),
        "detection_lag_p95_s": ("<=", 1.0),
        "vs_oqc_sdk_requests_ratio": ("<=", 0.5),
        "vs_oqc_sdk_wall_ratio": ("<=", 1.0),
        "vs_databricks_sdk_cancel_ratio": ("<=", 0.5),
        "jobs_100k_ok": ("==", args.jobs_100k),
        "jobs_100k_peak_rss_mb": ("<=", 600),
        "jobs_100k_status_requests_per_job": ("<=", 0.05),
        "local_vs_aer_batch_ratio": ("<=", 1.25),
        "local_vs_aer_single_ratio": ("<=", 2.0),
        "local_cancel_cpu_stop_s": ("<=", 0.5),
        # "about the machine's cores": at least 80 % of them
        "local_cores_used": (">=", 0.8 * (os.cpu_count() or 1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--out", type=Path, help="default: results.json, results-only.json with --only")
    parser.add_argument("--jobs-10k", type=int, default=10_000)
    parser.add_argument("--jobs-100k", type=int, default=100_000)
    parser.add_argument("--overhead-jobs", type=int, default=1000)
    parser.add_argument("--overhead-pairs", type=int, default=7, help="turns of the bare script and ours")
    parser.add_argument("--lag-jobs", type=int, default=200)
    parser.add_argument("--composite-jobs", type=int, default=100)
    parser.add_argument("--cancels", type=int, default=5)
    parser.add_argument("--local-batch", type=int, default=2000, help="circuits of the local composite")
    parser.add_argument("--local-single", type=int, default=200, help="local jobs one after another")
    parser.add_argument("--local-cancels", type=int, default=3, help="running local jobs cancelled")
    args = parser.parse_args()
    if args.out is None:
        args.out = HERE / ("results.json" if args.only is None else "results-only.json")
    started = time.perf_counter()
    figures: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    for name, scenario in SCENARIOS.items():
        if args.only is None or name in args.only:
            print(f"{name} ...", flush=True)
            scenario(args, figures, raw)
    goals = targets(args)
    print(f"\n{'figure':36} {'value':>12}  target      met")
    met: dict[str, bool] = {}
    for name, value in figures.items():
        target = goals.get(name)
        ok = None
        if target is not None:
            op, bound = target
            ok = {"<=": value <= bound, ">=": value >= bound, "==": value == bound}[op]
            met[name] = ok
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        goal = f"{target[0]} {target[1]:g}" if target else ""
        print(f"{name:36} {shown:>12}  {goal:10}  {'' if ok is None else ('yes' if ok else 'NO')}")
    machine = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    out = {
        **figures,
        "targets_met": met,
        "machine": machine,
        "sizes": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "raw": raw,
        "bench_wall_s": time.perf_counter() - started,
        "when": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwritten {args.out} in {out['bench_wall_s']:.0f} s")


if __name__ == "__main__":
    main()
