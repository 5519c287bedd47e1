"""The Azure Blob Storage behind the Azure Quantum emulator's SAS URLs.

Path-style URLs, as Azurite serves them: ``{base_url}/devstoreaccount1/{container}/{blob}``. Every
request is authorized by its SAS alone (the workspace credentials never reach storage), signed by
this store with a key of its own. Errors are Azure Storage's XML ``<Error><Code/><Message/></Error>``
with ``x-ms-error-code``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Final
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from .handlers import same_secret
from .odata import parse_time

__all__ = ["SAS_VERSION", "STORAGE_ACCOUNT", "BlobStorage"]

#: The storage account of the emulated blob service (path-style URLs, as Azurite serves them).
STORAGE_ACCOUNT: Final = "devstoreaccount1"
#: The SAS ``sv`` the store signs with (the official examples' value).
SAS_VERSION: Final = "2019-02-02"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Blob:
    data: bytes
    content_type: str
    etag: str = field(default_factory=lambda: f'"0x{secrets.token_hex(8).upper()}"')
    created: datetime = field(default_factory=_utcnow)


_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class BlobStorage:
    """Containers of block blobs, reached through SAS URLs the store signs.

    :param account_url: the storage account's URL (``{base_url}/devstoreaccount1``), asked when a
        URL is made (the emulator's port is known once it runs).
    :param sas_ttl_s: how long the SAS URLs handed out stay valid (wall clock).
    :param before_read: awaited with (container, blob) before a blob is read: the emulator writes a
        job's output there if its run ended unseen.

    ``PUT {container}?restype=container`` → 201 (exists: 409 ``ContainerAlreadyExists``); ``PUT``
    a blob with ``x-ms-blob-type: BlockBlob`` → 201 (missing header → 400
    ``MissingRequiredHeader``; no container → 404 ``ContainerNotFound``; ``If-None-Match: *`` and
    the blob exists → 409 ``BlobAlreadyExists``); its content type is ``x-ms-blob-content-type``
    (else ``Content-Type``). ``GET``/``HEAD`` → 200 (unknown → 404 ``BlobNotFound``), or with
    ``x-ms-range`` (else ``Range``) ``bytes=a-b`` → 206 with ``Content-Range: bytes a-b/size``, as
    azure-storage-blob reads every download (a range starting past the end → 416
    ``InvalidRange``; any other form → 400 ``InvalidHeaderValue``).

    Each request needs a SAS signed here (``sv``, ``sr``, ``sp``, ``se``, ``sig``) covering the
    container or the blob, unexpired, with the permission (``r`` to read, ``c`` or ``w`` to
    write); else 403 ``AuthenticationFailed`` or ``AuthorizationPermissionMismatch``.
    """

    def __init__(
        self,
        *,
        account_url: Callable[[], str],
        sas_ttl_s: float,
        before_read: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self._account_url = account_url
        self.sas_ttl_s = sas_ttl_s
        self._before_read = before_read
        self._account_key = secrets.token_bytes(32)
        #: Every SAS signature handed out, in order (secrets: scrubbed from logs).
        self.signatures: list[str] = []
        self._signed: set[str] = set()
        self._containers: dict[str, dict[str, _Blob]] = {}

    def add_routes(self, router: web.UrlDispatcher) -> None:
        container = f"/{STORAGE_ACCOUNT}/{{container}}"
        router.add_put(container, self._put_container)
        router.add_put(container + "/{blob:.+}", self._put_blob)
        router.add_get(container + "/{blob:.+}", self._get_blob)

    # -- what the emulator uses -----------------------------------------------------------------

    def blob(self, container: str, name: str) -> bytes | None:
        """A stored blob's bytes, or None."""
        found = self._containers.get(container, {}).get(name)
        return None if found is None else found.data

    def write(self, container: str, name: str, data: bytes, content_type: str) -> None:
        """Store a blob (creating its container), as a provider writes its output."""
        self._containers.setdefault(container, {})[name] = _Blob(data, content_type)

    def ensure_container(self, container: str) -> None:
        self._containers.setdefault(container, {})

    def sas_url(self, container: str, blob: str | None = None) -> str:
        """A container SAS URL (``sr=c``), or a blob one (``sr=b``), with ``sp=rcw``."""
        expiry = (_utcnow() + timedelta(seconds=self.sas_ttl_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
        kind, resource = ("b", f"{container}/{blob}") if blob is not None else ("c", container)
        query = urlencode(
            {
                "sv": SAS_VERSION,
                "sr": kind,
                "sig": self._sign(resource, "rcw", expiry, kind),
                "se": expiry,
                "sp": "rcw",
            }
        )
        return f"{self._account_url()}/{resource}?{query}"

    def locate(self, url: str) -> tuple[str, str] | None:
        """(container, blob) of a blob URL on this store, else None."""
        parts, ours = urlsplit(url), urlsplit(self._account_url())
        if (parts.scheme, parts.netloc) != (ours.scheme, ours.netloc):
            return None
        segments = [s for s in parts.path.split("/") if s]
        if len(segments) < 3 or segments[0] != STORAGE_ACCOUNT:
            return None
        return segments[1], "/".join(segments[2:])

    # -- SAS ------------------------------------------------------------------------------------

    def _signature(self, permissions: str, expiry: str, resource: str, version: str, kind: str) -> str:
        text = "\n".join((permissions, expiry, f"/{STORAGE_ACCOUNT}/{resource}", version, kind))
        return base64.b64encode(hmac.new(self._account_key, text.encode(), hashlib.sha256).digest()).decode()

    def _sign(self, resource: str, permissions: str, expiry: str, kind: str) -> str:
        signature = self._signature(permissions, expiry, resource, SAS_VERSION, kind)
        if signature not in self._signed:
            self._signed.add(signature)
            self.signatures.append(signature)
        return signature

    @staticmethod
    def _error(status: int, code: str, message: str) -> web.Response:
        now = _utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = (
            '<?xml version="1.0" encoding="utf-8"?><Error>'
            f"<Code>{code}</Code><Message>{message}\nRequestId:{uuid.uuid4()}\nTime:{now}</Message></Error>"
        )
        return web.Response(
            status=status, text=body, content_type="application/xml", headers={"x-ms-error-code": code}
        )

    def _check_sas(
        self, request: web.Request, container: str, blob: str | None, need: str
    ) -> web.Response | None:
        """None if the request's SAS allows ``need`` (a permission letter) on the resource."""
        query = request.query
        parts = {key: query.get(key) for key in ("sv", "sr", "sp", "se", "sig")}
        if any(value is None for value in parts.values()):
            return self._error(
                403,
                "AuthenticationFailed",
                "Server failed to authenticate the request. Make sure the value of Authorization "
                "header is formed correctly including the signature.",
            )
        sv, sr, sp, se, sig = (str(parts[k]) for k in ("sv", "sr", "sp", "se", "sig"))
        if sr == "c":
            resource = container
        elif sr == "b" and blob is not None:
            resource = f"{container}/{blob}"
        else:
            return self._error(403, "AuthenticationFailed", "Signed resource does not match the request.")
        if not same_secret(sig, self._signature(sp, se, resource, sv, sr)):
            return self._error(
                403, "AuthenticationFailed", "Signature did not match. String to sign used was not valid."
            )
        try:
            expired = parse_time(se) <= _utcnow()
        except ValueError:
            expired = True
        if expired:
            return self._error(403, "AuthenticationFailed", "Signed expiry time has passed.")
        if not any(letter in sp for letter in need):
            return self._error(
                403,
                "AuthorizationPermissionMismatch",
                "This request is not authorized to perform this operation using this permission.",
            )
        return None

    # -- handlers -------------------------------------------------------------------------------

    async def _put_container(self, request: web.Request) -> web.Response:
        container = request.match_info["container"]
        if request.query.get("restype") != "container":
            return self._error(400, "InvalidQueryParameterValue", "restype=container is required.")
        denied = self._check_sas(request, container, None, "cw")
        if denied is not None:
            return denied
        if container in self._containers:
            return self._error(409, "ContainerAlreadyExists", "The specified container already exists.")
        self._containers[container] = {}
        return web.Response(status=201, headers={"ETag": f'"0x{secrets.token_hex(8).upper()}"'})

    async def _put_blob(self, request: web.Request) -> web.Response:
        container, name = request.match_info["container"], request.match_info["blob"]
        denied = self._check_sas(request, container, name, "cw")
        if denied is not None:
            return denied
        blob_type = request.headers.get("x-ms-blob-type")
        if blob_type is None:
            return self._error(
                400,
                "MissingRequiredHeader",
                "An HTTP header that's mandatory for this request is not specified.",
            )
        if blob_type != "BlockBlob":
            return self._error(400, "InvalidHeaderValue", "x-ms-blob-type must be BlockBlob here.")
        store = self._containers.get(container)
        if store is None:
            return self._error(404, "ContainerNotFound", "The specified container does not exist.")
        if request.headers.get("If-None-Match") == "*" and name in store:
            return self._error(409, "BlobAlreadyExists", "The specified blob already exists.")
        data = await request.read()
        given = request.headers.get("x-ms-blob-content-type") or request.headers.get("Content-Type")
        blob = _Blob(data, given or "application/octet-stream")
        store[name] = blob
        return web.Response(
            status=201,
            headers={
                "ETag": blob.etag,
                "Content-MD5": base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode(),
                "x-ms-request-server-encrypted": "true",
            },
        )

    async def _get_blob(self, request: web.Request) -> web.Response:
        container, name = request.match_info["container"], request.match_info["blob"]
        denied = self._check_sas(request, container, name, "r")
        if denied is not None:
            return denied
        await self._before_read(container, name)
        store = self._containers.get(container)
        if store is None:
            return self._error(404, "ContainerNotFound", "The specified container does not exist.")
        blob = store.get(name)
        if blob is None:
            return self._error(404, "BlobNotFound", "The specified blob does not exist.")
        headers = {
            "ETag": blob.etag,
            "Last-Modified": format_datetime(blob.created, usegmt=True),
            "x-ms-creation-time": format_datetime(blob.created, usegmt=True),
            "x-ms-blob-type": "BlockBlob",
            "x-ms-lease-state": "available",
            "x-ms-lease-status": "unlocked",
            "x-ms-server-encrypted": "true",
            "Accept-Ranges": "bytes",
        }
        asked = request.headers.get("x-ms-range") or request.headers.get("Range")
        if asked is None:
            return web.Response(
                status=200, body=blob.data, content_type=blob.content_type.split(";")[0], headers=headers
            )
        match = _RANGE.match(asked.strip())
        if match is None:
            return self._error(
                400, "InvalidHeaderValue", "The value for one of the HTTP headers is not valid."
            )
        size = len(blob.data)
        start = int(match.group(1))
        end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
        if start >= size or start > end:
            return self._error(
                416, "InvalidRange", "The range specified is invalid for the current size of the resource."
            )
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return web.Response(
            status=206,
            body=blob.data[start : end + 1],
            content_type=blob.content_type.split(";")[0],
            headers=headers,
        )
