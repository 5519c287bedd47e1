"""Which URLs a client accepts at all: http(s) with a host, no userinfo, plain http only to loopback."""

from __future__ import annotations

import ipaddress
import re

from yarl import URL

from ..exceptions import ConfigurationError

__all__ = ["check_url", "display_url", "is_absolute", "is_loopback_host", "is_plain_path"]

_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: A path that a parse would leave as it is: segments of unreserved characters, ``:`` and ``@``,
#: never empty, never a dot segment (which a parse removes) nor one starting with a dot; no
#: percent sign (which a parse may re-encode), query or fragment.
_PLAIN_PATH = re.compile(r"(?:/[A-Za-z0-9_~:@-]+(?:\.[A-Za-z0-9_~:@-]+)*)*/?")


def is_loopback_host(host: str) -> bool:
    """``localhost`` or an address in 127.0.0.0/8 or ::1."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: URL, *, allow_insecure_http: bool, what: str) -> None:
    """http(s), a host, no credentials; plain http only to loopback unless allowed."""
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"{what} must be an http(s) URL with a host")
    if url.user is not None or url.password is not None:
        raise ConfigurationError(f"{what} must not carry credentials; pass them as headers")
    if url.scheme == "http" and not allow_insecure_http and not is_loopback_host(url.host):
        raise ConfigurationError(
            f"{what} uses plain http to {url.host}: credentials would cross the network in clear; "
            "use https (or allow_insecure_http=True for a trusted network)"
        )


def display_url(url: URL) -> str:
    """``url`` as messages and logs may show it: no query, fragment or userinfo."""
    return str(url.with_query(None).with_fragment(None).with_user(None))


def is_plain_path(text: str, start: int = 0) -> bool:
    """Whether ``text[start:]`` is a path that means the same sent as written (no parse needed)."""
    return _PLAIN_PATH.fullmatch(text, start) is not None


def is_absolute(url: str) -> bool:
    """Whether ``url`` names its scheme (and so its origin) rather than a path."""
    return _ABSOLUTE.match(url) is not None
