"""Qiskit Runtime sessions and batches, as the IBM Quantum emulator serves them.

qiskit-ibm-runtime's ``Session`` and ``Batch`` execution modes create one with ``POST /sessions``
(``{"mode": "dedicated" | "batch", "backend", "max_ttl"?, "instance"?}`` → ``{"id", ...}``), send
their jobs with its ``session_id``, read it with ``GET /sessions/{id}`` (``state``,
``accepting_jobs``, ``elapsed_time`` ...), stop it taking jobs with ``PATCH /sessions/{id}``
``{"accepting_jobs": false}`` and cancel it with ``DELETE /sessions/{id}/close``
(``api/rest/runtime_session.py``, ``session.py``). A job naming a session that does not take jobs
any more is refused with 400 (emulator choice for the status; IBM documents none); a job naming an
unknown session is refused with 404.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from .emulator import ApiError
from .handlers import found, read_json

__all__ = ["MODES", "SessionRegistry"]

MODES: Final = ("dedicated", "batch")
#: A session's longest life when it names none (IBM's documented default, 8 hours).
DEFAULT_MAX_TTL_S: Final = 28_800


@dataclass(slots=True, eq=False)
class _Session:
    id: str
    mode: str
    backend: str
    max_ttl: int
    created: datetime
    accepting_jobs: bool = True
    closed_at: datetime | None = None
    job_ids: list[str] = field(default_factory=list)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SessionRegistry:
    """The sessions of one emulator; ``cancel_jobs`` cancels a job by id (for ``close``)."""

    def __init__(self, backends: Callable[[], set[str]], cancel_jobs: Callable[[list[str]], Any]) -> None:
        self._backends = backends
        self._cancel_jobs = cancel_jobs
        self._sessions: dict[str, _Session] = {}

    def add_routes(self, router: web.UrlDispatcher, prefix: str) -> None:
        router.add_post(f"{prefix}/sessions", self._create)
        router.add_get(f"{prefix}/sessions/{{session_id}}", self._details)
        router.add_patch(f"{prefix}/sessions/{{session_id}}", self._update)
        router.add_delete(f"{prefix}/sessions/{{session_id}}/close", self._close)

    def admit(self, session_id: str, backend: str, job_id: str) -> None:
        """Check that a new job may run in ``session_id`` on ``backend`` (ApiError if not)."""
        session = found(self._sessions.get(session_id), f"Session not found: {session_id[:64]!r}")
        if not session.accepting_jobs:
            raise ApiError(400, f"Session {session.id} is closed and does not accept jobs")
        if backend != session.backend:
            raise ApiError(400, f"Session {session.id} runs on {session.backend}, not {backend}")
        session.job_ids.append(job_id)

    def _find(self, request: web.Request) -> _Session:
        return found(self._sessions.get(request.match_info["session_id"]), "Session not found")

    async def _create(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object")
        mode = body.get("mode", "dedicated")
        backend = body.get("backend")
        max_ttl = body.get("max_ttl", DEFAULT_MAX_TTL_S)
        if mode not in MODES:
            raise ApiError(400, f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not isinstance(backend, str) or backend not in self._backends():
            raise ApiError(400, f"Backend not found: {backend!r}")
        if isinstance(max_ttl, bool) or not isinstance(max_ttl, int) or max_ttl < 1:
            raise ApiError(400, "max_ttl must be a positive number of seconds")
        session = _Session(uuid.uuid4().hex[:20], mode, backend, max_ttl, datetime.now(UTC))
        self._sessions[session.id] = session
        return web.json_response(self._body(session))

    async def _details(self, request: web.Request) -> web.Response:
        return web.json_response(self._body(self._find(request)))

    async def _update(self, request: web.Request) -> web.Response:
        session = self._find(request)
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("accepting_jobs"), bool):
            raise ApiError(400, 'The body must be {"accepting_jobs": <bool>}')
        if session.closed_at is not None and body["accepting_jobs"]:
            raise ApiError(409, f"Session {session.id} is closed")
        session.accepting_jobs = body["accepting_jobs"]
        return web.Response(status=204)

    async def _close(self, request: web.Request) -> web.Response:
        session = self._find(request)
        session.accepting_jobs = False
        if session.closed_at is None:
            session.closed_at = datetime.now(UTC)
        await self._cancel_jobs(list(session.job_ids))
        return web.Response(status=204)

    def _body(self, session: _Session) -> dict[str, Any]:
        if session.closed_at is not None:
            state = "closed"
        elif session.accepting_jobs:
            state = "active" if session.job_ids else "open"
        else:
            state = "inactive"
        return {
            "id": session.id,
            "backend_name": session.backend,
            "mode": session.mode,
            "state": state,
            "accepting_jobs": session.accepting_jobs,
            "max_ttl": session.max_ttl,
            "interactive_ttl": 60 if session.mode == "dedicated" else None,
            "active_ttl": None,
            "started_at": _iso(session.created),
            "activated_at": _iso(session.created) if session.job_ids else None,
            "closed_at": _iso(session.closed_at),
            "last_job_started": None,
            "last_job_completed": None,
            "elapsed_time": 0,
            "timestamps": [],
        }
