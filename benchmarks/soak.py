"""Soak: a few thousand jobs across every HTTP backend, a fraction of requests faulted at random,
cancels, re-runs and process restarts mixed in. Prints and writes ``benchmarks/soak.json``.

``python benchmarks/soak.py [--jobs-per-backend N] [--fault-rate P] [--seed S] [--restarts R]
[--restart-jobs K] [--kill-within-s T] [--backends B ...]`` (``make soak``; a reduced run:
``--jobs-per-backend 60 --restarts 2 --restart-jobs 15``).

Each job follows a plan drawn at random: ``execute`` (expect COMPLETED), ``cancel`` (submit, then
cancel: expect CANCELLED, or COMPLETED if the run finished first and the vendor says so) or
``rerun`` (execute twice: expect COMPLETED with two runs in history). The caller behaves as a
caller should: every verb has a deadline; after a typed SDK error it calls the verb again (a
bounded number of times). Before each job, with probability ``fault-rate``, one fault rule is armed
on a random endpoint of the backend (faults land on whichever request matches next): HTTP 429 (with
or without ``Retry-After``), 401, 500, 502, 503, a dropped connection, a response slower than the
read timeout, a malformed or truncated body, and the two lost answers — the connection closed after
the vendor handled the request, a 200 with an unreadable body after it handled it.

Restarts: after its jobs in this process, each backend has ``--restarts`` rounds in which a worker
process (``soak.py --worker``) creates ``--restart-jobs`` jobs (``execute`` or ``cancel``), saves
each before anything is sent and again at random moments (before, during and after its requests),
faults being armed at the same rate, and is killed with SIGKILL at a random point within
``--kill-within-s`` of being ready; this process loads every file and carries each job's plan to
its end.

Figures: ``jobs``; ``faults_injected`` by kind (what the emulators applied, from their logs);
``correct_final_state`` (jobs whose final state matches the plan and the vendor); ``duplicates``
(vendor jobs, counted at the emulators, that no SDK job's runs name — in this process or loaded
after a restart: made twice, or orphaned by a killed process); ``lost`` (jobs not ended, and runs
the vendor does not know); ``secret_leaks`` (secrets found in any log record of any logger at
DEBUG — the workers' too —, repr, exception or saved file; ``secrets_looked_for`` says how many the
emulators issued); ``max_deadline_overshoot_s`` (the most any verb ran past its deadline, and
``worst_overshoot`` where), with ``max_event_loop_stall_s`` and ``max_gc_pause_s`` (what an
overshoot is made of).

Each emulator runs in its own process (``emulator_server.py``), as in ``make bench``: in this
process, their request logs made every full garbage collection longer, and a deadline expiring
during one was overshot by the pause. For the same reason qiskit is imported and warmed first and
what start-up made is frozen (``gc.freeze``).
"""

from __future__ import annotations

import argparse
import contextvars
import gc
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
from oqc_style_sdk.backends._ibm_target import warm_transpiler
from oqc_style_sdk.backends._qiskit import wait_for_qiskit
from oqc_style_sdk.exceptions import JobTimeoutError, SdkError
from oqc_style_sdk.polling import PollingPolicy

OUT = Path(__file__).with_name("soak.json")
BELL2 = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c;'
DEADLINE_S = 5.0
#: One verb call in five gets this short deadline instead (timeouts happen, and are measured).
SHORT_DEADLINE_S = 0.3
ATTEMPTS = 12
CONCURRENCY = 24
#: What a job in a restart round does (a re-run is not resumed across processes).
RESTART_PLANS = ("execute", "cancel")
#: Where the calling task is (the backend, and whether its job was resumed after a restart).
WHERE: contextvars.ContextVar[str] = contextvars.ContextVar("WHERE", default="")
#: What the soak is doing now (for the event-loop stall it reports).
PHASE = [""]


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
#: The vendor acted, the answer was lost: the connection closed after the request was handled, or a
#: 200 whose body cannot be read.
LOST_ANSWERS = ("closed_after_handling", "unreadable_200")
OTHERS = ("429", "429_retry_after", "500", "502", "503", "drop", "slow", "malformed", "truncated", "401")
FAULTS = (*OTHERS, *LOST_ANSWERS)
PHASES = ("submit", "status", "cancel", "result")


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
    worst_overshoot: str = ""
    timeouts: int = 0
    #: Vendor jobs that no SDK job owns (in any process), and runs the vendor never got.
    duplicates: int = 0
    unknown_runs: int = 0
    restarts: int = 0
    kills: int = 0
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
        overshoot = anyio.current_time() - start - deadline
        if overshoot > stats.max_overshoot_s:
            stats.max_overshoot_s = overshoot
            stats.worst_overshoot = f"{WHERE.get()} {getattr(call, '__qualname__', '')} {deadline}s"
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


def sdk_options(spec: Backend, credentials: dict[str, Any]) -> dict[str, Any]:
    """How the soak's Sdks are opened (this process's, and each restart's worker)."""
    return {
        **credentials,
        "default_target": spec.target,
        "polling": PollingPolicy(min_interval_s=0.02, max_interval_s=0.2),
        "timeout_s": 0.5,
        "retry": RetryPolicy(base_delay_s=0.01, max_delay_s=0.1),
    }


async def arm(control: Control, spec: Backend, kind: str, phase: str, armed: Counter[str]) -> None:
    armed[kind] += 1
    method, pattern = spec.endpoints[phase]
    await control("POST", "fault", {"fault": kind, "method": method, "path": pattern})


async def soak_backend(
    spec: Backend,
    args: argparse.Namespace,
    rng: random.Random,
    stats: Stats,
    texts: list[str],
    tmp: Path,
    armed: Counter[str],
) -> tuple[Counter[str], set[str], set[str]]:
    """The backend's jobs, in this process and across restarts; the faults its emulator applied,
    the ids of the vendor jobs it holds, and its secrets."""
    options = {"job_duration_s": 0.05, "max_lifetime_s": 900.0, **spec.options}
    n, rate = args.jobs_per_backend, args.fault_rate
    async with emulator_process(spec.name, options) as (info, control):
        jobs: list[tuple[Job, str]] = []
        async with Sdk(spec.name, **sdk_options(spec, info["credentials"])) as sdk:
            texts.append(repr(sdk) + repr(sdk.backend))
            limiter = anyio.CapacityLimiter(CONCURRENCY)

            async def run(i: int, plan: str, fault: tuple[str, str] | None) -> None:
                async with limiter:
                    WHERE.set(spec.name)
                    if fault is not None:
                        await arm(control, spec, *fault, armed)
                    job = await one_job(sdk, spec, plan, stats, texts, rng)
                    jobs.append((job, plan))
                    texts.append(repr(job) + repr(job.outputs) + repr(job.history))
                    if i % 25 == 0:  # saved files are scanned too
                        saved = await job.save(tmp / f"{spec.name}-{i}.json")
                        texts.append(saved.read_text())

            PHASE[0] = f"{spec.name}: jobs in this process"
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    plan = rng.choices(("execute", "cancel", "rerun"), weights=(6, 2, 2))[0]
                    fault = (rng.choice(FAULTS), rng.choice(PHASES)) if rng.random() < rate else None
                    tg.start_soon(run, i, plan, fault)
            for round_no in range(args.restarts):
                folder = tmp / f"{spec.name}-restart-{round_no}"
                folder.mkdir()
                jobs += await restart_round(spec, info, control, sdk, args, rng, stats, texts, folder, armed)
        await control("POST", "clear_faults")
        report = await control("GET", "report")
        vendor_ids = set(report["created"])
        wrong: Counter[str] = stats.wrong if stats.wrong is not None else Counter()
        stats.wrong = wrong
        owned: set[str] = set()  # the vendor jobs some SDK job ran, in any process
        for job, plan in jobs:
            stats.jobs += 1
            stats.expected_runs += job.run
            runs = {output.task_id for output in job.history} | {job.task_id}
            runs.discard(None)
            owned |= {task_id for task_id in runs if task_id is not None}
            stats.unknown_runs += len(runs - vendor_ids)
            why = judge(job, plan, vendor_ids)
            if why is None:
                stats.correct += 1
            else:
                wrong[f"{spec.name}: {why}"] += 1
                if not job.ended:
                    stats.lost += 1
        extra = vendor_ids - owned  # a vendor job no SDK job knows: made twice, or orphaned
        stats.duplicates += len(extra)
        if extra:
            wrong[f"{spec.name}: vendor jobs no SDK job owns"] += len(extra)
        print(
            f"{spec.name}: {len(vendor_ids)} vendor jobs for {len(jobs)} jobs, {len(extra)} duplicates",
            file=sys.stderr,
        )
        return Counter(report["faults"]), vendor_ids, {s for s in report["secrets"] if s}


async def resume(job: Job, plan: str, stats: Stats, texts: list[str], rng: random.Random) -> Job:
    """Carry ``job`` to the end of its plan (``execute`` or ``cancel``) from wherever it is: a job
    just created, or one loaded after its process was killed (an ended one is left as it is)."""
    if job.ended:
        return job
    if plan == "cancel":
        if job.state is JobState.CREATED:
            sent = lambda: job.state is not JobState.CREATED  # noqa: E731
            await until_ok(stats, texts, lambda t: job.submit(timeout_s=t), sent, rng)
        await until_ok(stats, texts, lambda t: job.cancel(timeout_s=t), lambda: job.ended, rng)
    else:
        await until_ok(stats, texts, lambda t: job.execute(timeout_s=t), lambda: job.ended, rng)
    return job


async def restart_round(
    spec: Backend,
    info: dict[str, Any],
    control: Control,
    sdk: Sdk,
    args: argparse.Namespace,
    rng: random.Random,
    stats: Stats,
    texts: list[str],
    folder: Path,
    armed: Counter[str],
) -> list[tuple[Job, str]]:
    """A worker process runs a batch of jobs, saving each job's file at random moments (during
    submissions too), and is killed with SIGKILL at a random point; this process then loads every
    file and carries each job's plan to its end, as a restarted process would."""
    plans = [rng.choice(RESTART_PLANS) for _ in range(args.restart_jobs)]
    # A fault left over would meet the worker's start-up check, which is not retried by design.
    await control("POST", "clear_faults")
    order = {
        "backend": spec.name,
        "credentials": info["credentials"],  # on stdin, never on a command line
        "folder": str(folder),
        "plans": plans,
        "seed": rng.randrange(1 << 32),
    }
    command = [sys.executable, str(Path(__file__)), "--worker"]
    PHASE[0] = f"{spec.name}: a worker runs, until killed"
    async with await anyio.open_process(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        await process.stdin.send((json.dumps(order) + "\n").encode())
        with anyio.fail_after(120):  # every job created and saved once, before anything is sent
            line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 1 << 16)
        if line != b"ready":
            raise RuntimeError(f"the soak worker said {line!r}")
        for _ in plans:  # the faults land on the worker's requests (or this process's, later)
            if rng.random() < args.fault_rate:
                await arm(control, spec, rng.choice(FAULTS), rng.choice(PHASES), armed)
        with anyio.move_on_after(rng.uniform(0.0, args.kill_within_s)):
            await process.wait()
        if process.returncode is None:
            process.kill()
            stats.kills += 1
        await process.wait()
    stats.restarts += 1
    PHASE[0] = f"{spec.name}: loading and resuming after a restart"
    # the files and the worker's log are scanned too
    texts.extend(await anyio.to_thread.run_sync(lambda: [p.read_text() for p in sorted(folder.iterdir())]))
    loaded: list[Job] = []
    for i in range(len(plans)):
        job = await sdk.load(folder / f"{i}.json")
        assert isinstance(job, Job)
        loaded.append(job)
    limiter = anyio.CapacityLimiter(CONCURRENCY)

    async def finish(job: Job, plan: str) -> None:
        async with limiter:
            WHERE.set(f"{spec.name} (resumed)")
            await resume(job, plan, stats, texts, rng)
            texts.append(repr(job) + repr(job.outputs) + repr(job.history))

    async with anyio.create_task_group() as tg:
        for job, plan in zip(loaded, plans, strict=True):
            tg.start_soon(finish, job, plan)
    return list(zip(loaded, plans, strict=True))


async def worker() -> None:
    """``soak.py --worker``: one restart round's process (reads its order on stdin; see
    :func:`restart_round`). Logs every record at DEBUG to a file beside the jobs (scanned too)."""
    order = json.loads(await anyio.to_thread.run_sync(sys.stdin.readline))
    spec = next(b for b in BACKENDS if b.name == order["backend"])
    folder = Path(order["folder"])
    handler = logging.FileHandler(folder / "worker.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    rng = random.Random(order["seed"])
    stats, texts = Stats(), list[str]()
    async with Sdk(spec.name, **sdk_options(spec, order["credentials"])) as sdk:
        jobs: list[Job] = []
        for i, _ in enumerate(order["plans"]):
            job = sdk.create_job(program=spec.program)
            assert isinstance(job, Job)
            await job.save(folder / f"{i}.json")  # every job is on disk before anything is sent
            jobs.append(job)
        print("ready", flush=True)

        async def keep_saving(i: int, job: Job) -> None:
            while True:  # at random moments: before, during and after its requests
                await anyio.sleep(rng.uniform(0.0, 0.03))
                try:
                    await job.save(folder / f"{i}.json")
                except SdkError as exc:
                    logging.getLogger("soak").debug("save %d: %r", i, exc)

        async with anyio.create_task_group() as savers:
            for i, job in enumerate(jobs):
                savers.start_soon(keep_saving, i, job)
            async with anyio.create_task_group() as tg:
                for job, plan in zip(jobs, order["plans"], strict=True):
                    tg.start_soon(resume, job, plan, stats, texts, rng)
            for i, job in enumerate(jobs):
                await job.save(folder / f"{i}.json")
            savers.cancel_scope.cancel()


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


def warm_qiskit() -> None:
    assert wait_for_qiskit(timeout_s=300)
    warm_transpiler()


class Stalls:
    """The longest pause of this process's event loop (a 10 ms heartbeat that wakes late) and
    its longest garbage collection: what a deadline's overshoot is made of."""

    def __init__(self) -> None:
        self.loop_s = 0.0
        self.loop_where = ""
        self.gc_s = 0.0
        self._gc_start = 0.0

    async def watch(self) -> None:
        while True:
            before = anyio.current_time()
            await anyio.sleep(0.01)
            late = anyio.current_time() - before - 0.01
            if late > self.loop_s:
                self.loop_s, self.loop_where = late, PHASE[0]

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc_s = max(self.gc_s, time.perf_counter() - self._gc_start)


def count_leaks(texts: list[str], secrets: set[str], block_bytes: int = 1 << 20) -> int:
    """How many (text, secret) pairs have the secret in the text. The texts are searched in blocks
    (joined by NUL, which no secret holds, so no match spans two texts); only a block that holds a
    secret is searched text by text: one search per secret and block instead of per text."""
    leaks = 0
    for start, end in _blocks(texts, block_bytes):
        block = texts[start:end]
        joined = "\0".join(block)
        for secret in secrets:
            if secret in joined:
                leaks += sum(1 for text in block if secret in text)
    return leaks


def _blocks(texts: list[str], block_bytes: int) -> list[tuple[int, int]]:
    bounds, start, size = [], 0, 0
    for i, text in enumerate(texts):
        size += len(text) + 1
        if size >= block_bytes:
            bounds.append((start, i + 1))
            start, size = i + 1, 0
    if start < len(texts):
        bounds.append((start, len(texts)))
    return bounds


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
    # qiskit's import and first transpilation (IBM, Azure) made now, off the loop; then what start-up
    # made is moved out of the collector's reach (gc.freeze), as a long-lived service does: a full
    # collection no longer walks qiskit's modules, which paused the loop for 0.5 s on a busy machine.
    await anyio.to_thread.run_sync(warm_qiskit)
    gc.collect()
    gc.freeze()
    stalls = Stalls()
    gc.callbacks.append(stalls.on_gc)
    with tempfile.TemporaryDirectory() as tmp:
        async with anyio.create_task_group() as tg:
            tg.start_soon(stalls.watch)
            for spec in (b for b in BACKENDS if b.name in args.backends):
                found, ids, issued = await soak_backend(spec, args, rng, stats, texts, Path(tmp), armed)
                faults.update(found)
                secrets |= issued
                created += len(ids)
            tg.cancel_scope.cancel()
    gc.callbacks.remove(stalls.on_gc)
    root.removeHandler(collector)
    texts += collector.texts
    leaks = count_leaks(texts, secrets)
    return {
        "jobs": stats.jobs,
        "backends": [b.name for b in BACKENDS if b.name in args.backends],
        "faults_injected": dict(sorted(faults.items())),
        "faults_armed": dict(sorted(armed.items())),
        "correct_final_state": stats.correct,
        "duplicates": stats.duplicates,
        "lost": stats.lost + stats.unknown_runs,
        "secret_leaks": leaks,
        "secrets_looked_for": len(secrets),
        "max_deadline_overshoot_s": round(stats.max_overshoot_s, 3),
        "worst_overshoot": stats.worst_overshoot,
        "max_event_loop_stall_s": round(stalls.loop_s, 3),
        "max_event_loop_stall_during": stalls.loop_where,
        "max_gc_pause_s": round(stalls.gc_s, 3),
        "deadlines_s": [SHORT_DEADLINE_S, DEADLINE_S],
        "deadline_timeouts": stats.timeouts,
        "runs": stats.expected_runs,
        "vendor_jobs": created,
        "restarts": stats.restarts,
        "restart_kills": stats.kills,
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
    parser.add_argument(
        "--backends", nargs="+", default=[b.name for b in BACKENDS], choices=[b.name for b in BACKENDS]
    )
    parser.add_argument("--restarts", type=int, default=4, help="restart rounds per backend")
    parser.add_argument("--restart-jobs", type=int, default=25, help="jobs in each restart round")
    parser.add_argument(
        "--kill-within-s", type=float, default=1.5, help="the worker is killed at a random point within"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        anyio.run(worker, backend="asyncio")
        sys.exit(0)
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
