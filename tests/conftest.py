"""Fixtures every test folder may use (the emulator fixtures come from ``oqc_style_sdk.testing``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib.metadata import entry_points

import aiohttp
import pytest

_PLUGIN = "oqc_style_sdk.testing.pytest_plugin"
# The emulator fixtures (``emulator_factory``, ``oqc_emulator``). Once the package's ``pytest11``
# entry point is installed, pytest has loaded the plugin already (and naming it here again would
# register it twice, which pytest refuses); a checkout run without installing names it here.
pytest_plugins = [] if any(ep.value == _PLUGIN for ep in entry_points(group="pytest11")) else [_PLUGIN]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client, for talking to an emulator as any HTTP client would."""
    async with aiohttp.ClientSession() as client:
        yield client
