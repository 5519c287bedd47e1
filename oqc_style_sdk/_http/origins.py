"""Where a client's credentials may go: decided by the Sdk's settings, never by a file or a server.

A client sends its credentials (credential headers, its ``auth()`` headers, and any request body,
which may hold a key) only to the origins of its :class:`OriginPolicy`: the origin of the base URL it
was configured with, and the derived origins its backend grants because the vendor documents them
(OQC's per-QPU execution URLs, read from the QPU list of the configured origin). A URL from anywhere
else — a job file, a next-page link, a redirect — that names another origin is refused before
anything is sent, or (a redirect without a body) followed bare: no credentials, no body.
"""

from __future__ import annotations

from typing import Final

from yarl import URL

__all__ = ["Origin", "OriginPolicy", "origin_of"]

#: ``(scheme, host, port)``, lower-cased, the port explicit.
Origin = tuple[str, str, int | None]

#: Granted origins kept at most (a QPU list names a few; a hostile one must not grow us unbounded).
_MAX_GRANTED: Final = 256


def origin_of(url: URL) -> Origin:
    """The origin of an absolute URL, as browsers compare them (the default port made explicit)."""
    return (url.scheme.lower(), (url.host or "").lower().rstrip("."), url.port)


class OriginPolicy:
    """The origins one client sends its credentials to: its base URL's, and those granted to it."""

    __slots__ = ("_base", "_granted")

    def __init__(self, base: URL) -> None:
        self._base = origin_of(base)
        self._granted: set[Origin] = set()

    def __repr__(self) -> str:
        return (
            f"OriginPolicy({self._base[0]}://{self._base[1]}:{self._base[2]} + {len(self._granted)} granted)"
        )

    def grant(self, url: URL) -> bool:
        """Allow ``url``'s origin too; False if the policy is full (the origin stays refused)."""
        origin = origin_of(url)
        if origin == self._base or origin in self._granted:
            return True
        if len(self._granted) >= _MAX_GRANTED:
            return False
        self._granted.add(origin)
        return True

    def allows(self, url: URL) -> bool:
        """Whether credentials may be sent to ``url`` (an absolute URL)."""
        origin = origin_of(url)
        return origin == self._base or origin in self._granted
