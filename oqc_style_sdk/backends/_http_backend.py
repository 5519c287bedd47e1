"""``HttpBackend``: the lifetime every vendor adapter shares.

A vendor backend owns one or more :class:`~oqc_style_sdk._http.HttpClient` (IBM adds its IAM client,
Azure its blob-storage client). Opening the Sdk opens them all and runs the vendor's check — the first
requests, which prove the URL answers and the credentials are accepted — so a wrong setting fails at
``async with``, typed. A failed check closes every client again; closing the Sdk closes them too.
It lives apart from ``base.py`` so that the local simulator never imports aiohttp.
"""

from __future__ import annotations

from anyio.abc import TaskGroup

from .._http import HttpClient
from .base import Backend

__all__ = ["HttpBackend"]


class HttpBackend(Backend):
    """A backend reached over HTTP. Subclasses set ``self._http`` and implement :meth:`_check`."""

    _http: HttpClient

    @property
    def http(self) -> HttpClient:
        """The vendor's API client (its ``requests_sent`` counts every attempt)."""
        return self._http

    def _clients(self) -> tuple[HttpClient, ...]:
        """Every client this backend opens and closes; the API client by default."""
        return (self._http,)

    async def _check(self) -> None:
        """The first requests: the vendor answers and accepts the credentials (raise if not)."""

    async def start(self, task_group: TaskGroup) -> None:
        for client in self._clients():
            await client.start()
        try:
            await self._check()
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        for client in self._clients():
            await client.aclose()
