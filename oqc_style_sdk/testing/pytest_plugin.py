"""pytest fixtures that start vendor emulators (registered as the ``pytest11`` plugin ``oqc_style_sdk``).

```python
async def test_my_client(oqc_emulator) -> None:
    client = MyClient(url=oqc_emulator.base_url, token=oqc_emulator.token)
    ...

async def test_flaky_network(emulator_factory) -> None:
    async with emulator_factory("oqc", job_duration_s=0.2) as emu:
        emu.fail_next(1, status=503, path="/tasks/submit")
        ...
```

``oqc_emulator`` (function scope) yields a started
:class:`~oqc_style_sdk.testing.oqc.OqcEmulator` whose jobs last :data:`TEST_JOB_DURATION_S`.
``emulator_factory(vendor, **options)`` returns an async context manager that starts one emulator
(default ``job_duration_s`` :data:`TEST_JOB_DURATION_S`); any the test leaves running are stopped
at teardown. Every emulator started here stops itself after :data:`TEST_MAX_LIFETIME_S` at most.

The fixtures are async, so they need an async test runner: with pytest-asyncio installed they are
``pytest_asyncio.fixture`` fixtures (working in its strict and auto modes); without it they are
plain pytest fixtures, as anyio's pytest plugin expects.

Why teardown is safe in another task: pytest-asyncio may run an async fixture's setup and its
teardown in different tasks, and an anyio cancel scope (a task group) must be exited in the task
that entered it. Emulators therefore keep every cancel scope in a host task of their own
(:meth:`~oqc_style_sdk.testing.emulator.Emulator.start` creates it); the fixtures only start the
emulator and later ask it to stop, which may be done from any task of the same event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

import pytest

from .emulator import Emulator, create_emulator
from .oqc import OqcEmulator

__all__ = [
    "TEST_JOB_DURATION_S",
    "TEST_MAX_LIFETIME_S",
    "EmulatorFactory",
    "emulator_factory",
    "oqc_emulator",
]

#: How long jobs take on the fixtures' emulators unless told otherwise (seconds).
TEST_JOB_DURATION_S: Final = 0.05
#: The longest a fixture's emulator serves (seconds).
TEST_MAX_LIFETIME_S: Final = 300.0

try:  # pytest-asyncio's decorator when it is installed, so that strict mode works too
    import pytest_asyncio

    _async_fixture: Callable[..., Any] = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - anyio's plugin (or another runner) handles async fixtures
    _async_fixture = pytest.fixture

EmulatorFactory = Callable[..., AbstractAsyncContextManager[Emulator]]


@_async_fixture
async def oqc_emulator() -> AsyncIterator[OqcEmulator]:
    """A started OQC emulator (jobs last 0.05 s); stopped after the test."""
    emulator = OqcEmulator(job_duration_s=TEST_JOB_DURATION_S, max_lifetime_s=TEST_MAX_LIFETIME_S)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@_async_fixture
async def emulator_factory() -> AsyncIterator[EmulatorFactory]:
    """``async with emulator_factory("oqc", **options) as emu:`` — emulators left running are stopped."""
    created: list[Emulator] = []

    def factory(vendor: str, **options: Any) -> Emulator:
        options.setdefault("job_duration_s", TEST_JOB_DURATION_S)
        options.setdefault("max_lifetime_s", TEST_MAX_LIFETIME_S)
        emulator = create_emulator(vendor, **options)
        created.append(emulator)
        return emulator  # an async context manager: started on entry, stopped on exit

    try:
        yield factory
    finally:
        for emulator in created:
            await emulator.stop()
