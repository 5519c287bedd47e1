"""A short tour of the SDK on the embedded local simulator: ``python -m oqc_style_sdk.demo``.

No account, no network: everything runs in this process.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio

from . import Job, JobError, JobResult, JobState, Sdk

BELL = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0], q[1];
measure q -> c;
"""

GHZ3 = """OPENQASM 3.0;
include "stdgates.inc";
qubit[3] q;
bit[3] c;
h q[0];
cx q[0], q[1];
cx q[1], q[2];
c = measure q;
"""

COIN = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
BROKEN = COIN.replace("OPENQASM 2.0", "OPENQASM 5.0")


def heading(text: str) -> None:
    print(f"\n\033[1m{text}\033[0m" if _tty() else f"\n== {text}")


def _tty() -> bool:
    import sys

    return sys.stdout.isatty()


def counts(data: object) -> str:
    """``{'c': {'00': 507, '11': 493}}`` as ``c: 00×507  11×493``."""
    if not isinstance(data, dict):
        return repr(data)
    parts = []
    for register, hist in data.items():
        bars = "  ".join(f"{bits}×{n}" for bits, n in sorted(hist.items()))
        parts.append(f"{register}: {bars}")
    return " | ".join(parts)


def history(job: Job) -> None:
    for out in job.history:
        if isinstance(out, JobResult):
            what = counts(out.data)
        elif isinstance(out, JobError):
            what = out.message
        else:
            what = f"reason: {getattr(out, 'reason', None)}"
        print(f"    run {out.run}  {out.state.value:<9}  task {str(out.task_id)[:8]}  {what}")


async def tour() -> None:
    async with Sdk() as sdk:
        targets = await sdk.list_targets()
        print("oqc-style-sdk tour — backend 'local', targets:", ", ".join(t["id"] for t in targets))

        heading("1. A Bell pair")
        job = sdk.create_job(program=BELL, config={"shots": 1000})
        await job.execute(timeout_s=30)
        print(f"    {job.state.value} on {job.result.target if job.result else '?'}:")
        print(f"    {counts(job.result.data if job.result else None)}")

        heading("2. Run it again: a new task, the first run kept in history")
        await job.execute(timeout_s=30)
        history(job)

        heading("3. A program that does not parse, then a fix with reconfigure()")
        bad = sdk.create_job(program=BROKEN)
        await bad.execute(timeout_s=30)
        print(f"    {bad.state.value}: {bad.error.message if bad.error else ''}")
        bad.reconfigure(memento=bad.history.first, program=COIN)
        await bad.execute(timeout_s=30)
        history(bad)

        heading("4. A long job, cancelled with cancel_if_active()")
        slow = sdk.create_job(program=COIN, config={"min_duration_s": 60})
        await slow.submit()
        with anyio.fail_after(10):  # it starts at once; ten seconds is a generous bound
            while slow.state is not JobState.RUNNING:
                await slow.refresh()
                await anyio.sleep(0.01)
        print(f"    after submit: {slow.state.value} (vendor says {slow.vendor_status})")
        await slow.cancel_if_active(reason="demo: no need to wait a minute")
        print(f"    after cancel_if_active(): {slow.state.value}")
        history(slow)

        heading("5. Save to disk, load back")
        with tempfile.TemporaryDirectory() as tmp:
            path = await job.save(Path(tmp) / "bell.job.json")
            loaded = await sdk.load(path)
            assert isinstance(loaded, Job)
            stat = path.stat()
            print(f"    saved {path.name} ({stat.st_size} bytes, mode {stat.st_mode & 0o777:o})")
            print(f"    loaded: {loaded!r}")
            history(loaded)

        heading("6. A composite job: several circuits, one deadline")
        composite = sdk.create_job(program=[BELL, GHZ3, COIN, BROKEN])
        outputs = await composite.execute(timeout_s=60)
        for i, out in enumerate(outputs):
            shown = counts(getattr(out, "data", None)) if out.ok else f"{out.state.value}"
            print(f"    [{i}] {shown}")
        summary = ", ".join(f"{n} {state.value}" for state, n in composite.summary().items())
        print(f"    summary: {summary}")


def main() -> None:
    anyio.run(tour)


if __name__ == "__main__":
    main()
