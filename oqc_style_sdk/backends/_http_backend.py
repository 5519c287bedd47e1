"""``HttpBackend``: the lifetime every vendor adapter shares.

A vendor backend owns one or more :class:`~oqc_style_sdk._http.HttpClient` (IBM adds its IAM client,
Azure its blob-storage client). Opening the Sdk opens them all and runs the vendor's check — the first
requests, which prove the URL answers and the credentials are accepted — so a wrong setting fails at
``async with``, typed. A failed check closes every client again; closing the Sdk closes them too.
It lives apart from ``base.py`` so that the local simulator never imports aiohttp.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from anyio.abc import TaskGroup

from .._http import HttpClient
from .base import Backend, RunRef

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

    def foreign_ref(self, ref: RunRef) -> str | None:
        """Every URL a saved ref carries must name an origin the API client sends credentials to
        (the configured one, or a derived one the vendor's answers granted): the one rule for all
        vendors, whatever their refs hold."""
        for value in (ref.task_id, *ref.extra.values()):
            if isinstance(value, str) and not self._http.sends_credentials_to(value):
                return f"names a URL outside the origins this Sdk sends its credentials to ({_origin(value)})"
        return None

    async def _check(self) -> None:
        """The first requests: the vendor answers and accepts the credentials (raise if not)."""

    async def start(self, task_group: TaskGroup) -> None:
        for client in self._clients():
            if client is not self._http and not client.carries_credentials:
                client.scrub_secrets_of(self._http)  # what it is told is scrubbed of our secrets too
            await client.start()
        try:
            await self._check()
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        for client in self._clients():
            await client.aclose()


def _origin(url: str) -> str:
    """``scheme://host:port`` of ``url`` for a message (never its path or query, which may hold a token)."""
    parts = urlsplit(url)
    try:
        port = "" if parts.port is None else f":{parts.port}"
    except ValueError:  # not a port number
        port = ""
    return f"{parts.scheme}://{parts.hostname or '?'}{port}"
