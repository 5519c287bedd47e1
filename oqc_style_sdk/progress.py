"""Live progress of a waiting job, in Jupyter and in terminals alike.

``await job.execute(progress=True)`` (or ``wait(progress=True)``, on a ``Job`` or a ``CompositeJob``)
shows what is being waited on while it waits, and leaves the last line in place when it ends:

- in Jupyter (an IPython kernel), one HTML output updated in place;
- in a terminal (stderr a TTY), one line on stderr redrawn in place — a spinner, the state and the
  time waited — from the default install; a rich progress bar instead when ``rich`` is installed
  (``pip install 'oqc-style-sdk[rich]'``);
- otherwise (a pipe, a log file, ``TERM=dumb``) one plain line on stderr each time the state changes.

Why a line of our own rather than ``rich`` as a dependency: a progress line needs a carriage return
and an erase-to-end-of-line, nothing more (pip and uv draw theirs the same way), and ``rich`` would
add megabytes to every install for it.

Progress reads only the job's properties (no I/O): it never adds a request to the vendor. It is off by
default; nothing is ever printed unless it is asked for.
"""

from __future__ import annotations

import html
import importlib
import os
import shutil
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TextIO, TypeVar

import anyio

if TYPE_CHECKING:
    from .composite import CompositeJob
    from .job import Job

__all__ = ["Snapshot", "show_progress", "snapshot"]

T = TypeVar("T")

#: How often the display is refreshed (seconds).
REFRESH_S = 0.2


@dataclass(frozen=True)
class Snapshot:
    """What the display shows: a label, how many jobs ended out of how many, and the state line."""

    label: str
    done: int
    total: int
    status: str

    @property
    def line(self) -> str:
        return f"{self.label}: {self.done}/{self.total} ended  {self.status}"


def snapshot(target: Job | CompositeJob) -> Snapshot:
    """Read the progress of a ``Job`` or a ``CompositeJob`` from its properties (no I/O)."""
    from .composite import CompositeJob

    if isinstance(target, CompositeJob):
        done = sum(1 for child in target if child.ended)
        parts = ", ".join(f"{n} {state.value}" for state, n in target.summary().items())
        return Snapshot(f"CompositeJob {target.id[:8]}", done, len(target), parts)
    status = target.state.value
    if target.vendor_status and target.vendor_status.upper() != status:
        status += f" ({target.vendor_status})"
    label = f"Job {target.id[:8]} on {target.sdk.backend.name}:{target.target}"
    return Snapshot(label, 1 if target.ended else 0, 1, status)


class _Renderer(Protocol):
    def update(self, snap: Snapshot) -> None: ...
    def close(self, snap: Snapshot) -> None: ...


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _html(snap: Snapshot) -> str:
    return (
        f'<div><progress value="{snap.done}" max="{snap.total}"></progress> '
        f"<code>{html.escape(snap.label)}</code>: {snap.done}/{snap.total} ended "
        f"&mdash; {html.escape(snap.status)}</div>"
    )


class _NotebookRenderer:
    def __init__(self) -> None:
        ipython_display: Any = importlib.import_module("IPython.display")
        self._html = ipython_display.HTML
        self._handle = ipython_display.display(self._html(""), display_id=True)

    def update(self, snap: Snapshot) -> None:
        self._handle.update(self._html(_html(snap)))

    def close(self, snap: Snapshot) -> None:
        self.update(snap)


class _RichRenderer:
    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=Console(file=stream),
        )
        self._task: Any = None
        self._progress.start()

    def update(self, snap: Snapshot) -> None:
        if self._task is None:
            self._task = self._progress.add_task(snap.label, total=snap.total, status=snap.status)
        self._progress.update(self._task, completed=snap.done, status=snap.status)

    def close(self, snap: Snapshot) -> None:
        self.update(snap)
        self._progress.stop()


class _TextRenderer:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last: str | None = None

    def update(self, snap: Snapshot) -> None:
        if snap.line != self._last:
            self._last = snap.line
            print(snap.line, file=self._stream, flush=True)

    def close(self, snap: Snapshot) -> None:
        self.update(snap)


class _LineRenderer:
    """One terminal line redrawn in place (``\\r`` and erase-to-end): a spinner, the state and the
    seconds waited; cut to the terminal's width so it never wraps; left in place at the end."""

    FRAMES = "|/-\\"

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._started = time.monotonic()
        self._frame = 0

    def _draw(self, snap: Snapshot, head: str, end: str = "") -> None:
        elapsed = time.monotonic() - self._started
        text = f"{head} {snap.line}  {elapsed:.0f}s"
        width = shutil.get_terminal_size((80, 24)).columns - 1
        self._stream.write(f"\r{text[:width]}\x1b[K{end}")
        self._stream.flush()

    def update(self, snap: Snapshot) -> None:
        self._frame = (self._frame + 1) % len(self.FRAMES)
        self._draw(snap, self.FRAMES[self._frame])

    def close(self, snap: Snapshot) -> None:
        self._draw(snap, "*" if snap.done == snap.total else "-", end="\n")


def _renderer(stream: TextIO | None) -> _Renderer:
    if stream is None and _in_notebook():
        return _NotebookRenderer()
    out = sys.stderr if stream is None else stream
    if out.isatty() and os.environ.get("TERM") != "dumb":
        try:
            return _RichRenderer(out)
        except ImportError:  # the default install: our own line
            return _LineRenderer(out)
    return _TextRenderer(out)


async def show_progress(target: Job | CompositeJob, work: Awaitable[T], *, stream: TextIO | None = None) -> T:
    """Await ``work`` while showing the progress of ``target``; return what ``work`` returns.

    ``stream``: where a terminal display goes (default: stderr, or the notebook's output in Jupyter).
    Errors of ``work`` (a ``JobTimeoutError`` ...) are raised unchanged after the display's last update.
    """
    renderer = _renderer(stream)
    outcome: list[T] = []
    error: Exception | None = None

    async def tick() -> None:
        while True:
            renderer.update(snapshot(target))
            await anyio.sleep(REFRESH_S)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            try:
                outcome.append(await work)
            except Exception as exc:  # re-raised below, unwrapped by the task group
                error = exc
            finally:
                tg.cancel_scope.cancel()
    finally:
        renderer.close(snapshot(target))
    if error is not None:
        raise error
    return outcome[0]
