"""Fixtures every test folder may use (the emulator fixtures come from ``oqc_style_sdk.testing``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client, for talking to an emulator as any HTTP client would."""
    async with aiohttp.ClientSession() as client:
        yield client
