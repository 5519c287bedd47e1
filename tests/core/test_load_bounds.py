"""``load()`` reads regular files only, a bounded number of bytes, within the caller's deadline.

Issue 16, hole 4: the size check trusted ``st_size`` (0 for a FIFO or ``/dev/zero``) and the read ran
in a worker thread that no deadline stopped. A FIFO with no writer hung ``load()`` for ever; one
with an endless writer, or ``/dev/zero``, was read until memory ran out. Every case below ends at
once with a typed error, and reads nothing it does not need.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from oqc_style_sdk import Sdk, persistence
from oqc_style_sdk.exceptions import CorruptJobFileError, JobTimeoutError, PersistenceError
from tests.common import BELL

#: Each refusal must come this fast (it needs no read at all); generous for a loaded machine.
AT_ONCE_S = 5.0


@contextlib.contextmanager
def rescued(fifo: Path, after_s: float = 2 * AT_ONCE_S) -> Iterator[None]:
    """Should a reader block on ``fifo`` (the bug), open and close its other end after ``after_s``,
    so the blocked worker thread returns and the test fails instead of hanging."""

    def rescue() -> None:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    timer = threading.Timer(after_s, rescue)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


async def _saved(directory: Path) -> Path:
    async with Sdk() as sdk:
        return await sdk.create_job(program=BELL).save(directory / "bell.job.json")


async def _refused(path: Path, error: type[Exception], match: str) -> Exception:
    with anyio.fail_after(AT_ONCE_S):
        async with Sdk() as sdk:
            with pytest.raises(error, match=match) as info:
                await sdk.load(path)
    assert str(path) in str(info.value)
    return info.value


async def test_a_fifo_with_no_writer_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "job.json"
    os.mkfifo(fifo)
    with rescued(fifo):
        await _refused(fifo, PersistenceError, "FIFO")


async def test_a_fifo_with_an_endless_writer_is_refused_and_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(persistence, "MAX_FILE_BYTES", 64 * 1024)
    fifo = tmp_path / "job.json"
    os.mkfifo(fifo)
    written = 0
    stop = threading.Event()

    def writer() -> None:  # endless as far as the reader can tell: 16 times the limit, then it stops
        nonlocal written
        with contextlib.suppress(OSError), open(fifo, "wb", buffering=0) as fh:
            while not stop.is_set() and written < 16 * persistence.MAX_FILE_BYTES:
                written += fh.write(b" " * 4096)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        with rescued(fifo):
            await _refused(fifo, PersistenceError, "FIFO")
        assert written == 0  # nobody opened the reading end: not one byte was taken from the pipe
    finally:
        stop.set()
        with contextlib.suppress(OSError):  # let the writer's open() return, and its write fail
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        thread.join(AT_ONCE_S)


async def test_dev_zero_is_refused_without_reading_it() -> None:
    await _refused(Path("/dev/zero"), PersistenceError, "character device")


async def test_a_symlink_to_a_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "job.json"
    link.symlink_to("/dev/zero")
    error = await _refused(link, PersistenceError, "character device")
    assert "symbolic link" in str(error)


async def test_a_symlink_to_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "job.json"
    link.symlink_to(fifo)
    with rescued(fifo):
        error = await _refused(link, PersistenceError, "FIFO")
    assert "symbolic link" in str(error)


async def test_a_directory_is_refused(tmp_path: Path) -> None:
    await _refused(tmp_path, PersistenceError, "directory")


async def test_a_symlink_to_a_job_file_still_loads(tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(await _saved(tmp_path))
    async with Sdk() as sdk:
        loaded = await sdk.load(link)
        assert loaded.program == BELL


def _reads_of(path: Path, then: Callable[[int], None], monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Watch every ``os.read`` of ``path`` (by inode), calling ``then(n)`` after the ``n``-th; the
    sizes read are returned as they come."""
    inode = path.stat().st_ino
    real_read = os.read
    sizes: list[int] = []

    def read(fd: int, n: int) -> bytes:
        piece = real_read(fd, n)
        if os.fstat(fd).st_ino == inode:
            sizes.append(len(piece))
            then(len(sizes))
        return piece

    monkeypatch.setattr(os, "read", read)
    return sizes


async def test_a_file_that_grows_past_the_limit_while_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = await _saved(tmp_path)
    size = path.stat().st_size
    monkeypatch.setattr(persistence, "MAX_FILE_BYTES", size + 1000)  # the file as it is fits
    monkeypatch.setattr(persistence, "_CHUNK_BYTES", 1024, raising=False)

    def grow(n: int) -> None:  # another process appends to the file while it is read
        if n == 1:
            with open(path, "ab") as fh:
                fh.write(b" " * (100 * persistence.MAX_FILE_BYTES))

    sizes = _reads_of(path, grow, monkeypatch)
    await _refused(path, CorruptJobFileError, "limit")
    # Read in pieces, counted: it stopped one byte past the limit, not at the end of the file.
    assert sum(sizes) == persistence.MAX_FILE_BYTES + 1
    assert max(sizes) <= 1024


async def test_a_read_that_hangs_gives_up_at_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = await _saved(tmp_path)
    monkeypatch.setattr(persistence, "_CHUNK_BYTES", 256, raising=False)
    released = threading.Event()

    def hang(n: int) -> None:  # a file system that stops answering after a piece
        released.wait(4 * AT_ONCE_S)

    sizes = _reads_of(path, hang, monkeypatch)
    try:
        with anyio.fail_after(AT_ONCE_S):
            async with Sdk() as sdk:
                with pytest.raises(JobTimeoutError, match=r"bell\.job\.json"):
                    await sdk.load(path, timeout_s=0.2)
                # A caller's own cancel scope lets go of it the same way.
                with anyio.move_on_after(0.2) as scope:
                    await sdk.load(path)
                assert scope.cancelled_caught
    finally:
        released.set()
    assert sizes  # the read had started: it was stopped, not refused up front
