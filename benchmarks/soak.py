"""Soak: a few thousand jobs across every HTTP backend, a fraction of requests faulted at random,
cancels and re-runs mixed in. Prints and writes ``benchmarks/soak.json``.

``python benchmarks/soak.py [--jobs-per-backend N] [--fault-rate P] [--seed S]`` (``make soak``).

Each job follows a plan drawn at random: ``execute`` (expect COMPLETED), ``cancel`` (submit, then
cancel: expect CANCELLED, or COMPLETED if the run finished first and the vendor says so) or
``rerun`` (execute twice: expect COMPLETED with two runs in history). The caller behaves as a
caller should: every verb has a deadline; after a typed SDK error it calls the verb again (a
bounded number of times). Before each job, with probability ``fault-rate``, one fault rule is armed
on a random endpoint of the backend (faults land on whichever request matches next).

Figures: ``jobs``; ``faults_injected`` by kind (what the emulators applied, from their logs);
``correct_final_state`` (jobs whose final state matches the plan and the vendor); ``duplicates``
(vendor jobs beyond one per run); ``lost`` (jobs not ended, or runs the vendor never got);
``secret_leaks`` (secrets found in any log record of any logger at DEBUG, repr, exception or saved
file; ``secrets_looked_for`` says how many the emulators issued); ``max_deadline_overshoot_s`` (the
most any verb ran past its deadline).

Each emulator runs in its own process (``emulator_server.py``), as in ``make bench``: in this
process, their request logs made every full garbage collection longer, and a deadline expiring
during one was overshot by the pause.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

from oqc_style_sdk import Job, JobState, Sdk
from oqc_style_sdk._http import RetryPolicy
from oqc_style_sdk.exceptions import JobTimeoutError, SdkError
from oqc_style_sdk.polling import PollingPolicy

OUT = Path(__file__).with_name("soak.json")
BELL2 = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c;'
DEADLINE_S = 5.0
#: One verb call in five gets this short deadline instead (timeouts happen, and are measured).
SHORT_DEADLINE_S = 0.3
ATTEMPTS = 12
CONCURRENCY = 24


@dataclass(frozen=True)
class Backend:
    name: str
    program: Any
    target: str | None
    endpoints: dict[str, tuple[str, str]]  # phase -> (method, path pattern)
    options: dict[str, Any]


BACKENDS = (
    Backend(
        "oqc",
        BELL2,
        "qpu:uk:2:d865b5a184",
        {
            "submit": ("POST", r"/tasks/submit$"),
            "status": ("GET", r"/status$|^/[^/]+/tasks$"),
            "cancel": ("POST", r"/tasks/cancel_many$"),
            "result": ("GET", r"/results$"),
        },
        {"max_concurrency": 64},
    ),
    Backend(
        "ibm_quantum",
        BELL2,
        "ibm_fez",
        {
            "submit": ("POST", r"/jobs$"),
            "status": ("GET", r"/jobs(/[^/]+)?$"),
            "cancel": ("POST", r"/jobs/[^/]+/cancel$"),
            "result": ("GET", r"/jobs/[^/]+/results$"),
        },
        {},
    ),
    Backend(
        "azure_quantum",
        BELL2,
        "ionq.simulator",
        {
            "submit": ("PUT", r"/jobs/[^/:]+$"),
            "status": ("GET", r"/jobs(/[^/:]+)?$"),
            "cancel": ("POST", r"/jobs/[^/:]+:cancel$"),
            "result": ("GET", r"^/devstoreaccount1/.+/.+"),
        },
        {},
    ),
    Backend(
        "databricks",
        {
            "run_name": "soak",
            "tasks": [
                {
                    "task_key": "main",
                    "existing_cluster_id": "0923-164208-meows279",
                    "notebook_task": {"notebook_path": "/Users/me@example.com/nb"},
                }
            ],
        },
        None,
        {
            "submit": ("POST", r"/runs/submit$"),
            "status": ("GET", r"/runs/(get|list)$"),
            "cancel": ("POST", r"/runs/cancel$"),
            "result": ("GET", r"/runs/get-output$"),
        },
        {"cancel_duration_s": 0.02},
    ),
    Backend(
        "windmill",
        {"path": "u/demo/quick"},
        None,
        {
            "submit": ("POST", r"/jobs/run/p/"),
            "status": ("GET", r"/jobs_u/get/|/jobs/(queue/|completed/)?list$"),
            "cancel": ("POST", r"/jobs_u/queue/cancel/"),
            "result": ("GET", r"/jobs_u/completed/get_result"),
        },
        {},
    ),
)
FAULTS = ("429", "429_retry_after", "500", "502", "503", "drop", "slow", "malformed", "truncated", "401")


class Collector(logging.Handler):
    """Keeps every log record's full text (message, exception, stack) for the secret scan."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))


@dataclass
class Stats:
    jobs: int = 0
    correct: int = 0
    expected_runs: int = 0
    lost: int = 0
    max_overshoot_s: float = float("-inf")
    timeouts: int = 0
    wrong: Counter[str] | None = None


async def verb(stats: Stats, texts: list[str], call: Callable[[float], Any], rng: random.Random) -> bool:
    """Call a verb with a deadline; measure the overshoot; keep the error's text. True if ok."""
    deadline = SHORT_DEADLINE_S if rng.random() < 0.2 else DEADLINE_S
    start = anyio.current_time()
    try:
        await call(deadline)
    except (SdkError, TimeoutError) as exc:
        texts.append(repr(exc) + str(exc) + "".join(traceback.format_exception(exc)))
        if isinstance(exc, JobTimeoutError):
            stats.timeouts += 1
        return False
    finally:
        stats.max_overshoot_s = max(stats.max_overshoot_s, anyio.current_time() - start - deadline)
    return True


async def until_ok(
    stats: Stats, texts: list[str], call: Callable[[float], Any], done: Callable[[], bool], rng: random.Random
) -> None:
    for _ in range(ATTEMPTS):
        if await verb(stats, texts, call, rng) and done():
            return
        if done():
            return


async def one_job(
    sdk: Sdk, spec: Backend, plan: str, stats: Stats, texts: list[str], rng: random.Random
) -> Job:
    job = sdk.create_job(program=spec.program)
    assert isinstance(job, Job)
    if plan == "cancel":
        await until_ok(
            stats, texts, lambda t: job.submit(timeout_s=t), lambda: job.state is not JobState.CREATED, rng
        )
        await until_ok(stats, texts, lambda t: job.cancel(timeout_s=t), lambda: job.ended, rng)
    else:
        runs = 2 if plan == "rerun" else 1
        for _ in range(runs):
            first = job.run if job.ended else None

            def finished(first: int | None = first) -> bool:
                return job.ended and (first is None or job.run > first)

            await until_ok(stats, texts, lambda t: job.execute(timeout_s=t), finished, rng)
    return job


def judge(job: Job, plan: str, vendor_ids: set[str]) -> str | None:
    """None if the job ended as its plan says (and the vendor knows its run); else why not."""
    if not job.ended:
        return f"not ended: {job.state.value}"
    if job.task_id is not None and job.task_id not in vendor_ids:
        return "run unknown to the vendor"
    if plan == "cancel":
        if job.state is JobState.CANCELLED or (job.state is JobState.COMPLETED and job.result is not None):
            return None
        return f"cancel ended {job.state.value}"
    if job.state is not JobState.COMPLETED or job.result is None:
        return f"{plan} ended {job.state.value}: {job.error.message if job.error else ''}"
    if len(job.history) != (2 if plan == "rerun" else 1):
        return f"{len(job.history)} history entries"
    return None


async def soak_backend(
    spec: Backend,
    n: int,
    rate: float,
    rng: random.Random,
    stats: Stats,
    texts: list[str],
    tmp: Path,
    armed: Counter[str],
) -> tuple[Counter[str], list[str]]:
    options = {"job_duration_s": 0.05, "max_lifetime_s": 900.0, **spec.options}
    async with emulator_process(spec.name, options) as (info, control):
        settings = {
            **info["credentials"],
            "timeout_s": 0.5,
            "retry": RetryPolicy(base_delay_s=0.01, max_delay_s=0.1),
        }
        polling = PollingPolicy(min_interval_s=0.02, max_interval_s=0.2)
        jobs: list[tuple[Job, str]] = []
        async with Sdk(spec.name, default_target=spec.target, polling=polling, **settings) as sdk:
            texts.append(repr(sdk) + repr(sdk.backend))
            limiter = anyio.CapacityLimiter(CONCURRENCY)

            async def run(i: int, plan: str, fault: tuple[str, str] | None) -> None:
                async with limiter:
                    if fault is not None:
                        kind, phase = fault
                        armed[kind] += 1
                        method, pattern = spec.endpoints[phase]
                        await control("POST", "fault", {"fault": kind, "method": method, "path": pattern})
                    job = await one_job(sdk, spec, plan, stats, texts, rng)
                    jobs.append((job, plan))
                    texts.append(repr(job) + repr(job.outputs) + repr(job.history))
                    if i % 25 == 0:  # saved files are scanned too
                        saved = await job.save(tmp / f"{spec.name}-{i}.json")
                        texts.append(saved.read_text())

            async with anyio.create_task_group() as tg:
                for i in range(n):
                    plan = rng.choices(("execute", "cancel", "rerun"), weights=(6, 2, 2))[0]
                    fault = (
                        (rng.choice(FAULTS), rng.choice(("submit", "status", "cancel", "result")))
                        if rng.random() < rate
                        else None
                    )
                    tg.start_soon(run, i, plan, fault)
        await control("POST", "clear_faults")
        report = await control("GET", "report")
        vendor_ids: list[str] = report["created"]
        wrong: Counter[str] = stats.wrong if stats.wrong is not None else Counter()
        stats.wrong = wrong
        for job, plan in jobs:
            stats.jobs += 1
            stats.expected_runs += job.run
            why = judge(job, plan, set(vendor_ids))
            if why is None:
                stats.correct += 1
            else:
                wrong[f"{spec.name}: {why}"] += 1
                if not job.ended:
                    stats.lost += 1
        return Counter(report["faults"]), [*vendor_ids, *("\0" + s for s in report["secrets"] if s)]


Control = Callable[..., Awaitable[Any]]


@asynccontextmanager
async def emulator_process(
    vendor: str, options: dict[str, Any]
) -> AsyncIterator[tuple[dict[str, Any], Control]]:
    """The vendor's emulator in its own process (``emulator_server.py``), so that its request log
    is not part of this process's heap (its garbage collections pause the SDK under test); yields
    its start-up line and a function calling its ``/_bench`` control endpoints."""
    command = [sys.executable, str(Path(__file__).with_name("emulator_server.py")), vendor]
    command += [f"{key}={json.dumps(value)}" for key, value in options.items()]
    # stderr is inherited: an emulator that fails says why, and can never fill an unread pipe
    async with await anyio.open_process(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        with anyio.fail_after(60):  # its start-up line
            line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 1 << 20)
        info: dict[str, Any] = json.loads(line)
        async with aiohttp.ClientSession(base_url=info["base_url"]) as http:

            async def control(method: str, what: str, body: Any = None) -> Any:
                with anyio.fail_after(30):
                    async with http.request(method, f"/_bench/{what}", json=body) as response:
                        response.raise_for_status()
                        return await response.json()

            try:
                yield info, control
            finally:
                await process.stdin.aclose()  # the emulator stops when its stdin closes
                with anyio.move_on_after(20, shield=True):
                    await process.wait()
                if process.returncode is None:
                    process.kill()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    collector = Collector()
    root = logging.getLogger()
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    rng = random.Random(args.seed)
    stats = Stats()
    texts: list[str] = []
    faults: Counter[str] = Counter()
    armed: Counter[str] = Counter()
    created = 0
    secrets: set[str] = set()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for spec in BACKENDS:
            expected_before = stats.expected_runs
            found, ids_and_secrets = await soak_backend(
                spec, args.jobs_per_backend, args.fault_rate, rng, stats, texts, Path(tmp), armed
            )
            faults.update(found)
            ids = [x for x in ids_and_secrets if not x.startswith("\0")]
            secrets.update(x[1:] for x in ids_and_secrets if x.startswith("\0"))
            created += len(ids)
            print(
                f"{spec.name}: {len(ids)} vendor jobs for {stats.expected_runs - expected_before} runs",
                file=sys.stderr,
            )
    root.removeHandler(collector)
    texts += collector.texts
    leaks = sum(1 for text in texts for secret in secrets if secret in text)
    duplicates = max(0, created - stats.expected_runs)
    lost = stats.lost + max(0, stats.expected_runs - created)
    return {
        "jobs": stats.jobs,
        "backends": [b.name for b in BACKENDS],
        "faults_injected": dict(sorted(faults.items())),
        "faults_armed": dict(sorted(armed.items())),
        "correct_final_state": stats.correct,
        "duplicates": duplicates,
        "lost": lost,
        "secret_leaks": leaks,
        "secrets_looked_for": len(secrets),
        "max_deadline_overshoot_s": round(stats.max_overshoot_s, 3),
        "deadlines_s": [SHORT_DEADLINE_S, DEADLINE_S],
        "deadline_timeouts": stats.timeouts,
        "fault_rate": args.fault_rate,
        "seed": args.seed,
        "log_records_scanned": len(collector.texts),
        "elapsed_s": round(time.monotonic() - started, 1),
        "incorrect": dict((stats.wrong or Counter()).most_common(20)),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs-per-backend", type=int, default=600)
    parser.add_argument("--fault-rate", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, default=OUT)
    arguments = parser.parse_args()
    result = anyio.run(main, arguments, backend="asyncio")
    text = json.dumps(result, indent=2)
    print(text)
    arguments.out.write_text(text + "\n")
    targets_met = (
        result["correct_final_state"] == result["jobs"]
        and result["duplicates"] == 0
        and result["lost"] == 0
        and result["secret_leaks"] == 0
        and result["max_deadline_overshoot_s"] <= 0.25
    )
    sys.exit(0 if targets_met else 1)
