"""``overhead_instructions_ratio``: the overhead scenario counted in instructions, not CPU seconds.

CPU seconds on a shared machine wander from run to run (``overhead_cpu_ratio`` gave 1.40–1.88 for
the same code); the number of instructions a process executes hardly does. Each client of the
overhead scenario (``client_ours.py composite`` and ``client_bare.py``, the same OQC jobs, each on a
fresh emulator of the same settings, in its own process) is run for N and for 2N jobs under an
instruction counter: the CPU's own counter through ``perf stat -e instructions:u`` where the
machine exposes it, else valgrind (``--tool=cachegrind --cache-sim=no``: every instruction the
process executes, counted, ~50× slower). A count covers the whole process (starting Python,
importing the libraries), so the figure is a ratio of differences — what N more jobs cost each
client:

    ratio = (ours(2N) - ours(N)) / (bare(2N) - bare(N))

``python benchmarks/instructions.py [N]`` prints the figures as one JSON line; ``run.py`` adds them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _perf_works() -> bool:
    if shutil.which("perf") is None:
        return False
    out = subprocess.run(
        ["perf", "stat", "-x,", "-e", "instructions:u", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    first = out.stderr.strip().split(",", 1)[0]
    return out.returncode == 0 and first.isdigit()


def counter() -> str:
    """``perf`` where the CPU's counters can be read, else ``valgrind``; neither is an error."""
    if _perf_works():
        return "perf"
    if shutil.which("valgrind") is not None:
        return "valgrind"
    raise RuntimeError("overhead_instructions_ratio needs `perf` (with CPU counters) or `valgrind`")


def _counted(tool: str, argv: list[str]) -> tuple[int, dict[str, Any]]:
    """Instructions executed by the process ``argv`` (user space), and its JSON line."""
    if tool == "perf":
        prefix = ["perf", "stat", "-x,", "-e", "instructions:u"]
    else:
        prefix = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    out = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=900, cwd=HERE, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[1:3])} under {tool} failed:\n{out.stderr[-3000:]}")
    if tool == "perf":
        line = next(ln for ln in out.stderr.splitlines() if "instructions" in ln)
        count = int(line.split(",", 1)[0])
    else:
        found = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
        if found is None:
            raise RuntimeError(f"no instruction count from valgrind:\n{out.stderr[-3000:]}")
        count = int(found.group(1).replace(",", ""))
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return count, result


def figures(n: int = 500, n2: int = 1000) -> dict[str, Any]:
    """Both clients at N and N2 jobs; the ratio of what the extra jobs cost each."""
    from run import OQC_FAST, OURS, emulator, oqc_token

    tool = counter()
    counts: dict[str, dict[int, int]] = {"bare": {}, "ours": {}}
    reads: dict[int, int] = {}
    for size in (n, n2):
        for who in ("bare", "ours"):
            with emulator("oqc", *OQC_FAST) as emu:
                url, token = emu["base_url"], oqc_token(emu)
                if who == "bare":
                    argv = [OURS, "client_bare.py", url, token, str(size)]
                else:
                    argv = [OURS, "client_ours.py", "composite", url, token, str(size)]
                count, result = _counted(tool, argv)
            if result["ok"] != size:
                raise RuntimeError(f"{who} completed {result['ok']} of {size} jobs under {tool}")
            counts[who][size] = count
            if who == "ours":
                reads[size] = result["poller_reads"]
    extra = n2 - n
    ours = counts["ours"][n2] - counts["ours"][n]
    bare = counts["bare"][n2] - counts["bare"][n]
    return {
        "ratio": ours / bare,
        "counter": tool,
        "sizes": [n, n2],
        "instructions": {who: {str(k): v for k, v in c.items()} for who, c in counts.items()},
        "ours_per_job": ours / extra,
        "bare_per_job": bare / extra,
        "ours_poller_reads": {str(k): v for k, v in reads.items()},
    }


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    print(json.dumps(figures(size, 2 * size)))
