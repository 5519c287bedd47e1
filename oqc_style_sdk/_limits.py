"""A vendor's limit on how many jobs a user may create, kept on the client side.

IBM Quantum documents "5 jobs per minute per user". Sending a sixth creation inside the minute only
earns a 429 (and a wait for its ``Retry-After``); a :class:`CreationWindow` makes the sixth wait its
turn instead, before anything is sent. The window is shared by every backend of one process that uses
the same account at the same endpoint (:func:`creation_window`), since the vendor counts per user.

A wait for a slot is an ordinary wait: the caller's deadline bounds it, and a caller that gives up
hands its slot back, so nothing is sent and nobody else is held up for it.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio

__all__ = ["CreationWindow", "creation_window"]


class _Turn:
    """One creation's place in the window: when it was (or is to be) sent, then when it was
    answered — the vendor counted it somewhere in between."""

    __slots__ = ("at", "open", "seq")

    def __init__(self, seq: int, at: float) -> None:
        self.seq = seq
        self.at = at
        self.open = True  # sent (or about to be) and not answered yet


class CreationWindow:
    """At most ``limit`` creations in any ``window_s`` seconds (a sliding window).

    ``async with window.turn():`` waits until a creation may be sent, and around the request
    records when it was answered: the vendor stamps a creation between the request and its answer,
    so turns are spaced by answers, never by sends (a send-to-send spacing would be early by the
    network's delay). Turns are given in the order they are asked for; ``clock`` is monotonic
    seconds (a test may drive it).
    """

    def __init__(self, limit: int, window_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError("a creation limit needs a whole number of jobs >= 1")
        if not (isinstance(window_s, int | float) and window_s > 0 and math.isfinite(window_s)):
            raise ValueError("a creation limit needs a window of > 0 seconds")
        self.limit = limit
        self.window_s = float(window_s)
        self._clock = clock
        self._turns: list[_Turn] = []
        self._seq = 0
        self._lock = threading.Lock()  # bookkeeping is synchronous; event loops in threads share it

    def __repr__(self) -> str:
        return f"CreationWindow({self.limit} per {self.window_s:g} s)"

    def _earliest(self, now: float, me: _Turn | None) -> float:
        """When ``me`` (or a turn asked for now) may go: ``limit`` earlier turns in the window
        hold it back until the oldest of them leaves the window."""
        horizon = now - self.window_s
        self._turns = [t for t in self._turns if t.open or t.at > horizon]
        earlier = sorted(t.at for t in self._turns if me is None or t.seq < me.seq)
        if len(earlier) < self.limit:
            return now
        return max(now, earlier[-self.limit] + self.window_s)

    def wait_s(self) -> float:
        """How long a creation asked for now would wait (nothing is reserved)."""
        with self._lock:
            now = self._clock()
            return self._earliest(now, None) - now

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[float]:
        """Wait for this creation's turn (yielding how long it waited); send it inside the block.

        A caller cancelled while waiting gives its turn back; one that sent counts, answered or not.
        """
        with self._lock:
            now = self._clock()
            me = _Turn(self._seq, now)
            self._seq += 1
            me.at = self._earliest(now, me)
            self._turns.append(me)
        started = now
        try:
            while True:  # an earlier turn answered late may push this one back: look again
                with self._lock:
                    now = self._clock()
                    me.at = self._earliest(now, me)
                if me.at <= now:
                    break
                await anyio.sleep(me.at - now)
        except BaseException:
            with self._lock:
                if me in self._turns:
                    self._turns.remove(me)
            raise
        try:
            yield now - started
        finally:
            with self._lock:
                me.at = self._clock()
                me.open = False


_WINDOWS: dict[tuple[str, str, int, float], CreationWindow] = {}
_WINDOWS_LOCK = threading.Lock()


def creation_window(endpoint: str, account: str, limit: int, window_s: float) -> CreationWindow:
    """The window of one account at one endpoint, shared within the process.

    ``account`` is hashed before it is kept, so no key or token is held here in clear.
    """
    digest = hashlib.sha256(account.encode()).hexdigest()[:32]
    key = (endpoint, digest, limit, float(window_s))
    with _WINDOWS_LOCK:
        window = _WINDOWS.get(key)
        if window is None:
            window = _WINDOWS[key] = CreationWindow(limit, window_s)
        return window
