"""Progress on a terminal from the default install: one line redrawn in place, without ``rich``."""

from __future__ import annotations

import io
import sys

import pytest

from oqc_style_sdk import Sdk, progress
from tests.common import BELL


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_a_terminal_without_rich_gets_a_line_redrawn_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)  # as `make demo`'s environment: no rich
    monkeypatch.setitem(sys.modules, "rich.console", None)
    monkeypatch.delenv("TERM", raising=False)
    stream = _Tty()
    async with Sdk(min_duration_s=0.6, seed=1) as sdk:
        job = sdk.create_job(program=BELL)
        await job.submit()
        await progress.show_progress(job, job.wait(timeout_s=30), stream=stream)
    shown = stream.getvalue()
    frames = shown.split("\r")[1:]
    assert len(frames) >= 3  # redrawn while it waits, not one line per state change
    assert all(frame.count("\n") == 0 for frame in frames[:-1])  # in place: no new lines
    assert frames[-1].endswith("\x1b[K\n")  # the last line stays
    assert "1/1 ended  COMPLETED" in frames[-1]
    assert frames[-1].startswith("* ")
    assert any(frame[0] in "|/-\\" for frame in frames[:-1])  # it moves


async def test_a_dumb_terminal_gets_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    stream = _Tty()
    async with Sdk(seed=1) as sdk:
        job = sdk.create_job(program=BELL)
        await progress.show_progress(job, job.execute(timeout_s=30), stream=stream)
    assert "\r" not in stream.getvalue()
    assert stream.getvalue().rstrip().endswith("1/1 ended  COMPLETED")
