"""Waits with a name: a deadline over a block, and work shared by every caller that waits on it.

``deadline`` bounds every verb of every job (and of a composite); a ``_Flight`` is work (a
submission, reading a run's outcome) that the first caller starts in the Sdk's task group and every
caller waits on under its own deadline, so one caller giving up never cuts it short.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Generic, TypeVar, TypeVarTuple

import anyio

from .exceptions import JobTimeoutError, JobValidationError

__all__ = ["check_timeout", "deadline"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def check_timeout(timeout_s: float | None, name: str = "timeout_s") -> float | None:
    """A timeout is None (no deadline) or a positive number of seconds."""
    if timeout_s is None:
        return None
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
        raise JobValidationError(f"{name} must be a number of seconds or None, not {timeout_s!r}")
    if not timeout_s > 0 or math.isnan(timeout_s):
        raise JobValidationError(f"{name} must be > 0 seconds (or None for no deadline)")
    return float(timeout_s)


class deadline:
    """Bound a block by ``timeout_s``; on expiry raise :class:`JobTimeoutError` with ``what()``.

    ``timed_out`` makes the error from its message (a composite's carries its outputs). A class
    rather than a generator context manager: every verb of every job enters one, and without a
    timeout it costs nothing.
    """

    __slots__ = ("_scope", "_timed_out", "_timeout_s", "_what")

    def __init__(
        self,
        timeout_s: float | None,
        what: Callable[[], str],
        timed_out: Callable[[str], JobTimeoutError] = JobTimeoutError,
    ) -> None:
        self._timeout_s = check_timeout(timeout_s)
        self._what = what
        self._timed_out = timed_out
        self._scope: anyio.CancelScope | None = None

    def __enter__(self) -> None:
        if self._timeout_s is not None:
            self._scope = anyio.move_on_after(self._timeout_s)
            self._scope.__enter__()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        scope = self._scope
        if scope is None:
            return False
        suppressed = bool(scope.__exit__(exc_type, exc, tb))
        if scope.cancelled_caught:
            raise self._timed_out(f"{self._what()} after {self._timeout_s:g} s") from None
        return suppressed


class _Flight(Generic[T]):
    """Work shared by every caller that asks for it while it runs; survives any one caller."""

    __slots__ = ("_done", "_ended", "_error", "_tb", "_value")

    def __init__(self) -> None:
        self._ended = False
        self._done: anyio.Event | None = None  # made by the first waiter that has to wait
        self._value: T | None = None
        self._error: BaseException | None = None
        self._tb: TracebackType | None = None

    def _end(self) -> None:
        self._ended = True
        if self._done is not None:
            self._done.set()

    async def run(self, fn: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> None:
        try:
            self._value = await fn(*args)
        except Exception as exc:  # re-raised to every waiter
            self._error, self._tb = exc, exc.__traceback__
        finally:
            self._end()

    def fail(self, error: BaseException) -> None:
        """End the flight with ``error`` if it has not ended."""
        if not self._ended:
            self._error, self._tb = error, error.__traceback__
            self._end()

    async def wait(self) -> T:
        if not self._ended:
            if self._done is None:
                self._done = anyio.Event()
            await self._done.wait()
        if self._error is not None:
            # Each waiter raises it from where it failed (asyncio's futures do the same), so a
            # traceback does not grow by one raise per waiter.
            raise self._error.with_traceback(self._tb)
        return self._value  # type: ignore[return-value]
