"""The HTTP layer: the only part of the SDK (besides ``testing/``) that imports aiohttp.

One concern a module:

- ``secrets.py``: :class:`Secret` and the known secret values scrubbed from every text we keep;
- ``retry.py``: :class:`RetryPolicy`, the pure rule for when to try again and how long to wait;
- ``response.py``: :class:`Response`, a complete answer;
- ``errors.py``: vendor error bodies read, statuses and transport failures mapped to SDK errors;
- ``urls.py``: which URLs a client accepts at all;
- ``origins.py``: where a client's credentials may go (the Sdk decides, never a file or a server);
- ``client.py``: :class:`HttpClient`, one pooled session per vendor endpoint.

Adapters import from here, never from the modules.
"""

from .client import HttpClient, encode_json
from .errors import error_for_status, extract_vendor_error, map_exception
from .response import Response
from .retry import IDEMPOTENT_METHODS, RetryPolicy, parse_retry_after
from .secrets import Secret
from .urls import is_loopback_host

__all__ = [
    "IDEMPOTENT_METHODS",
    "HttpClient",
    "Response",
    "RetryPolicy",
    "Secret",
    "encode_json",
    "error_for_status",
    "extract_vendor_error",
    "is_loopback_host",
    "map_exception",
    "parse_retry_after",
]
