"""What the OQC tests share: an emulator with quick jobs, its reservation requests, a wait for RUNNING."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from oqc_style_sdk import JobState
from oqc_style_sdk.testing.emulator import LoggedRequest, start_emulator
from oqc_style_sdk.testing.oqc import OqcEmulator


@asynccontextmanager
async def emulator(**options: Any) -> AsyncIterator[OqcEmulator]:
    """A started OQC emulator: jobs of 0.05 s, 16 at once, a 120 s life (``options`` override)."""
    options.setdefault("job_duration_s", 0.05)
    options.setdefault("max_lifetime_s", 120.0)
    options.setdefault("max_concurrency", 16)
    async with start_emulator("oqc", **options) as emu:
        assert isinstance(emu, OqcEmulator)
        yield emu


def reservations(emu: OqcEmulator) -> list[LoggedRequest]:
    """``POST {qpu_url}/tasks`` (``emu.count`` matches path prefixes, so it would count submits)."""
    return [
        e for e in emu.requests if e.method == "POST" and e.path.count("/") == 2 and e.path.endswith("/tasks")
    ]


async def wait_until_running(job: Any, emu: OqcEmulator) -> None:
    """Refresh until the job (and the emulator) say RUNNING."""
    while job.state is not JobState.RUNNING:
        await job.refresh()
        if job.state is not JobState.RUNNING:
            await anyio.sleep(0.02)
    assert await emu.status_of(job.task_id) == "RUNNING"
