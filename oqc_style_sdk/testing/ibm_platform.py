"""IBM Cloud as the IBM Quantum emulator serves it: IAM tokens, Global Search and Global Catalog.

qiskit-ibm-runtime needs all three before it sends anything to the Qiskit Runtime API: it exchanges
the API key for an IAM access token and decodes the token's expiry (a JWT: ``exp`` and ``iat``), and it
checks that the instance CRN belongs to the account by searching IBM Cloud for ``quantum-computing``
resources (Global Search ``POST /v3/resources/search``) and reading each one's plan from the Global
Catalog (``GET /{service_plan_unique_id}``). The client derives those hosts from its ``url`` (no port);
IBM's cloud SDK reads ``IAM_URL``, ``GLOBAL_SEARCH_URL`` and ``GLOBAL_CATALOG_URL`` to override them,
which is how the official client is pointed here (:attr:`IbmCloudPlatform.env`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from .emulator import ApiError
from .handlers import read_json, same_secret

__all__ = ["CATALOG_PREFIX", "IAM_GRANT_TYPE", "IAM_PATH", "SEARCH_PREFIX", "IbmCloudPlatform"]

#: Where the IAM token endpoint lives on the emulator (``IBM_QUANTUM_IAM_URL``).
IAM_PATH: Final = "/identity/token"
IAM_GRANT_TYPE: Final = "urn:ibm:params:oauth:grant-type:apikey"
#: Where Global Search (``GLOBAL_SEARCH_URL``) and Global Catalog (``GLOBAL_CATALOG_URL``) live.
SEARCH_PREFIX: Final = "/global-search"
CATALOG_PREFIX: Final = "/global-catalog/api/v1"
#: The catalog id of the instance's plan (emulator choice; IBM's ids are opaque too).
PLAN_ID: Final = "emulated-quantum-computing-plan"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class IbmCloudPlatform:
    """IAM, Global Search and Global Catalog for one account with one service instance."""

    def __init__(
        self, *, api_key: str, instance: str, token_ttl_s: float, clock: Callable[[], float]
    ) -> None:
        self.api_key = api_key
        self.instance = instance
        self.token_ttl_s = token_ttl_s
        self._clock = clock
        self._signing_key = secrets.token_bytes(32)
        #: Issued access tokens and when (emulator clock) each expires.
        self.tokens: dict[str, float] = {}
        #: IAM tokens issued so far.
        self.tokens_issued = 0

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(IAM_PATH, self._token)
        router.add_post(f"{SEARCH_PREFIX}/v3/resources/search", self._search)
        router.add_get(f"{CATALOG_PREFIX}/{{entry_id}}", self._catalog_entry)

    def env(self, base_url: str) -> dict[str, str]:
        """The IBM Cloud SDK settings that point qiskit-ibm-runtime's platform calls here."""
        return {
            "IAM_URL": base_url,
            "GLOBAL_SEARCH_URL": base_url + SEARCH_PREFIX,
            "GLOBAL_CATALOG_URL": base_url + CATALOG_PREFIX,
        }

    def is_platform_path(self, path: str) -> bool:
        """Paths served without a ``Service-CRN`` (IBM Cloud's own services)."""
        return path == IAM_PATH or path.startswith((SEARCH_PREFIX + "/", CATALOG_PREFIX + "/"))

    def token_problem(self, authorization: str) -> str | None:
        """Why an ``Authorization`` header is refused (401), or None."""
        scheme, _, token = authorization.partition(" ")
        expires = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expires is None:
            return "Invalid or missing bearer token"
        if self._clock() >= expires:
            return "The bearer token has expired"
        return None

    def expire_tokens(self) -> None:
        now = self._clock()
        for token in self.tokens:
            self.tokens[token] = min(self.tokens[token], now)

    def _jwt(self, now: datetime) -> str:
        """An access token shaped as IAM's: a signed JWT whose ``exp`` is its real expiry."""
        issued = int(now.timestamp())
        claims = {
            "iam_id": "iam-emulator-user",
            "sub": "emulator-user@example.invalid",
            "iss": "https://iam.cloud.ibm.com/identity",
            "grant_type": IAM_GRANT_TYPE,
            "scope": "ibm openid",
            "iat": issued,
            "exp": issued + max(1, math.ceil(self.token_ttl_s)),
            "jti": uuid.uuid4().hex,
        }
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self._signing_key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64url(signature)}"

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant_type, api_key = form.get("grant_type"), form.get("apikey")
        if grant_type != IAM_GRANT_TYPE:
            return _iam_error("BXNIM0109E", "Property missing or empty. Property name is 'grant_type'.")
        if not isinstance(api_key, str) or not api_key:
            return _iam_error("BXNIM0109E", "Property missing or empty. Property name is 'apikey'.")
        if not same_secret(api_key, self.api_key):
            return _iam_error("BXNIM0415E", "Provided API key could not be found.")
        now = datetime.now(UTC)
        token = self._jwt(now)
        self.tokens[token] = self._clock() + self.token_ttl_s
        self.tokens_issued += 1
        ttl = self.token_ttl_s
        expires_in: float | int = int(ttl) if float(ttl).is_integer() else ttl
        return web.json_response(
            {
                "access_token": token,
                "refresh_token": "not_supported",
                "token_type": "Bearer",
                "expires_in": expires_in,
                "expiration": int(now.timestamp() + ttl),
                "scope": "ibm openid",
            }
        )

    def _authorize(self, request: web.Request) -> None:
        problem = self.token_problem(request.headers.get("Authorization", ""))
        if problem is not None:
            raise ApiError(401, problem)

    async def _search(self, request: web.Request) -> web.Response:
        """Global Search: the account's one ``quantum-computing`` instance, fields as asked."""
        self._authorize(request)
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            raise ApiError(400, "The search body needs a query string")
        item: dict[str, Any] = {
            "crn": self.instance,
            "name": "emulated-instance",
            "service_plan_unique_id": PLAN_ID,
            "tags": [],
            "doc": {"extensions": {"quantum": {"backends": "all"}}},
        }
        matches = "quantum-computing" in body["query"]
        fields = body.get("fields")
        if isinstance(fields, list):
            item = {key: value for key, value in item.items() if key in fields or key == "crn"}
        items = [item] if matches and body.get("search_cursor") is None else []
        return web.json_response({"items": items, "limit": int(request.query.get("limit", 10))})

    async def _catalog_entry(self, request: web.Request) -> web.Response:
        self._authorize(request)
        if request.match_info["entry_id"] != PLAN_ID:
            raise ApiError(404, "Catalog entry not found")
        return web.json_response(
            {
                "id": PLAN_ID,
                "name": "open",
                "kind": "plan",
                "overview_ui": {"en": {"display_name": "Open", "description": "Emulated plan"}},
                "metadata": {"pricing": {"type": "free"}},
            }
        )


def _iam_error(code: str, message: str) -> web.Response:
    return web.json_response(
        {"errorCode": code, "errorMessage": message, "context": {"requestId": uuid.uuid4().hex}},
        status=400,
    )
