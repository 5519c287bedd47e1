"""Why ``JobOutput._made_for`` builds outputs by hand rather than with pydantic's ``model_construct``.

Prints the time to make 100,000 ``JobResult`` both ways (equal field for field). Run from the
repository root: ``.venv/bin/python benchmarks/made_for.py``.
"""

import timeit
from datetime import UTC, datetime

from oqc_style_sdk.job_output import JobResult

N = 100_000
fields = {
    "program": "OPENQASM 2.0;",
    "target": "qpu",
    "config": {},
    "task_id": "t",
    "run": 1,
    "received": datetime.now(UTC),
}
data = {"c": {"00": 507, "11": 517}}


def hand() -> JobResult:
    return JobResult._made_for(None, data=data, **fields)  # type: ignore[arg-type]


def construct() -> JobResult:
    out = JobResult.model_construct(data=data, **fields)
    out._job = None
    return out


assert hand() == construct()
for name, fn in (("hand-made", hand), ("model_construct", construct)):
    best = min(timeit.repeat(fn, number=N, repeat=5))
    print(f"{name:16s} {best:.3f} s per {N} ({best / N * 1e6:.2f} us each)")
