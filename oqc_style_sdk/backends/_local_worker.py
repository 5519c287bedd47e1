"""The local simulator's worker processes: simulations off the GIL, and stoppable.

A :class:`WorkerPool` belongs to one :class:`~oqc_style_sdk.backends.local.LocalBackend`. It
starts its workers lazily (the first time a chunk of runs is worth sending to one), keeps them
for the backend's life, and kills them when the backend closes.

* **A worker is a fresh interpreter** (``python -m oqc_style_sdk.backends._local_worker``), the
  ``spawn`` way: nothing of the parent is forked (no event loop, threads or locks), and, unlike
  ``multiprocessing``'s spawn, the parent's ``__main__`` is not imported again (a script without an
  ``if __name__ == "__main__":`` guard would otherwise run again in each worker). It imports the
  very package its parent runs (``PYTHONPATH``), then qiskit and Aer, and says it is ready.
* **Messages** are length-prefixed pickles over the worker's stdin and stdout (the worker moves
  its stdout to stderr first, so a stray print cannot corrupt them): a chunk of
  :class:`~._local_sim.Item` in, its list of :class:`~._local_sim.Outcome` out.
* **Stopping is killing.** :meth:`Worker.kill` sends SIGKILL: the simulation's CPU stops at once,
  whatever Aer is doing (C++ holds no Python lock the parent needs). The parent's thread waiting for
  the answer sees the pipe close and returns; the dead process is reaped by a daemon thread.
* If the parent dies, the worker reads end-of-file on stdin and exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

__all__ = ["Worker", "WorkerLost", "WorkerPool"]

logger = logging.getLogger("oqc_style_sdk.backends.local")

_HEADER = struct.Struct("!Q")
#: How long a worker may take to start (import qiskit and Aer) before it counts as failed.
START_TIMEOUT_S = 120.0


class WorkerLost(Exception):
    """The worker process ended (killed, or crashed) before it answered."""


def _write(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


class Worker:
    """One worker process and its pipes (used by one chunk at a time)."""

    def __init__(self, threads: int) -> None:
        root = str(Path(__file__).resolve().parents[2])  # the directory holding oqc_style_sdk
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env["OQC_STYLE_SDK_AER_THREADS"] = str(threads)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "oqc_style_sdk.backends._local_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        self.pid: int = self.process.pid
        self.killed = False

    def _roundtrip(self, message: Any) -> Any:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None
        assert stdout is not None
        try:
            if message is not None:
                _write(stdin, message)
            return _read(stdout)
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            raise WorkerLost(f"the worker process {self.pid} ended") from exc
        except ValueError as exc:  # its pipes closed: killed (a cancel) and reaped before this chunk spoke
            if not self.killed:
                raise
            raise WorkerLost(f"the worker process {self.pid} was stopped") from exc

    async def ready(self) -> None:
        """Wait until the worker has imported what it needs (:class:`WorkerLost` if it died)."""
        with anyio.fail_after(START_TIMEOUT_S):
            answer = await anyio.to_thread.run_sync(self._roundtrip, None, abandon_on_cancel=True)
        if answer != "ready":
            raise WorkerLost(f"the worker process {self.pid} said {answer!r}")

    async def run(self, items: list[Any]) -> list[Any]:
        """Send a chunk and wait for its outcomes, off the event loop."""
        outcomes: list[Any] = await anyio.to_thread.run_sync(self._roundtrip, items, abandon_on_cancel=True)
        return outcomes

    def kill(self) -> None:
        """Stop the process now (SIGKILL) and reap it in the background. Never blocks."""
        if self.killed:
            return
        self.killed = True
        with contextlib.suppress(OSError):  # already gone
            self.process.kill()
        threading.Thread(target=self._reap, name=f"reap worker {self.pid}", daemon=True).start()

    def _reap(self) -> None:
        process = self.process
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL not delivered
            logger.warning("local worker %d did not exit after SIGKILL", self.pid)
        for stream in (process.stdin, process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


class WorkerPool:
    """Up to ``size`` worker processes, started when first wanted, killed at :meth:`close`."""

    def __init__(self, size: int, on_change: Callable[[], None]) -> None:
        self.size = size
        # Aer's threads per worker: the cores shared out among the workers (at least one each).
        self._threads = max(1, (os.cpu_count() or 1) // size)
        #: Set when a worker could not start: the backend then simulates everything in-process.
        self.failed = False
        self._on_change = on_change
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._starting = 0
        self._closed = False
        self._task_group: TaskGroup | None = None

    def bind(self, task_group: TaskGroup) -> None:
        self._task_group = task_group
        self._closed = False

    @property
    def started(self) -> int:
        """Workers alive or starting."""
        return len(self._idle) + len(self._busy) + self._starting

    def pids(self) -> list[int]:
        """The process ids of the live workers."""
        return [worker.pid for worker in (*self._idle, *self._busy) if not worker.killed]

    def want(self, count: int) -> None:
        """Start workers in the background until ``count`` (at most the pool's size) are alive or
        starting (non-blocking)."""
        if self._closed or self._task_group is None:
            return
        while self.started < min(count, self.size):
            self._starting += 1
            self._task_group.start_soon(self._start_one, name="local simulator worker start")

    async def _start_one(self) -> None:
        worker: Worker | None = None
        began = anyio.current_time()
        try:
            # fork and exec off the event loop (milliseconds), not abandoned: the process is ours
            worker = await anyio.to_thread.run_sync(Worker, self._threads)
            await worker.ready()
            logger.debug("local worker %d ready in %.2f s", worker.pid, anyio.current_time() - began)
        except BaseException as exc:
            if worker is not None:
                worker.kill()
            if not isinstance(exc, Exception):
                raise
            logger.warning("a local simulator worker did not start: %s", exc)
            worker = None
            self.failed = True
        finally:
            self._starting -= 1
        if worker is None:
            self._on_change()
            return
        if self._closed:
            worker.kill()
            return
        self._idle.append(worker)
        self._on_change()

    def take(self) -> Worker | None:
        """An idle worker, now, or None."""
        if not self._idle:
            return None
        worker = self._idle.pop()
        self._busy.add(worker)
        return worker

    @property
    def idle(self) -> int:
        return len(self._idle)

    def give_back(self, worker: Worker) -> None:
        """Return a worker after its chunk; a killed one is dropped (and replaced when wanted)."""
        self._busy.discard(worker)
        if worker.killed or self._closed or worker.process.poll() is not None:
            worker.kill()
        else:
            self._idle.append(worker)
        self._on_change()

    def close(self) -> None:
        """Kill every worker (non-blocking)."""
        self._closed = True
        for worker in (*self._idle, *self._busy):
            worker.kill()
        self._idle.clear()
        self._busy.clear()


def _main() -> None:  # pragma: no cover - runs in the worker process
    stdin = sys.stdin.buffer
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # prints go to stderr, never into the message stream
    from . import _local_sim
    from ._qiskit import qiskit_ready, start_qiskit_loader

    start_qiskit_loader()
    qiskit_ready.wait()
    import qiskit_aer  # noqa: F401 - imported before the first chunk, not during it

    _write(stdout, "ready")
    while True:
        try:
            items = _read(stdin)
        except EOFError:
            return
        _write(stdout, _local_sim.simulate_chunk(items))


if __name__ == "__main__":  # pragma: no cover
    _main()
