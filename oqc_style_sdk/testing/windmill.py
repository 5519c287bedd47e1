"""An emulator of Windmill's job API, faithful enough that the official ``wmill`` client runs on it.

See :class:`WindmillEmulator` for every endpoint and every choice made where Windmill's behaviour is
not documented (``VENDORS.md`` §4 lists what is known; the rest is marked "emulator choice"). Scripts
are never executed: a script by path is one of a few predefined behaviours, and inline preview code
is opaque data (see :class:`EmulatedScript` and :data:`DEFAULT_SCRIPTS`).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from aiohttp import web

from ..backends.windmill import SCRIPT_LANGUAGES
from ..exceptions import ConfigurationError
from .emulator import ApiError, Emulator, duration_option, sdk_version
from .handlers import found, query_int, read_json, same_secret, utc_moment

__all__ = [
    "DEFAULT_SCRIPTS",
    "FAIL_SCRIPT",
    "QUICK_SCRIPT",
    "SLOW_SCRIPT",
    "EmulatedScript",
    "WindmillEmulator",
    "echo_result",
]

QUICK_SCRIPT: Final = "u/demo/quick"
SLOW_SCRIPT: Final = "u/demo/slow"
FAIL_SCRIPT: Final = "u/demo/fail"
#: Windmill's text when a cancel gives no reason (windmill-queue ``cancel_single_job``).
NO_REASON: Final = "unexplicited reasons"
#: The spec's ``per_page``: default 30, at most 100 (more is clamped: emulator choice).
DEFAULT_PER_PAGE: Final = 30
MAX_PER_PAGE: Final = 100
WORKER: Final = "wk-emulator-0"

#: ``ScriptLang`` of the spec: the backend's own list, so the two cannot drift apart.
_LANGUAGES: Final = SCRIPT_LANGUAGES
_PUBLIC: Final = frozenset({("GET", "/api/version"), ("HEAD", "/api/version")})


def echo_result(args: Mapping[str, Any]) -> Any:
    """The predefined scripts' result: ``{"ok": true, "args": <the args>}``."""
    return {"ok": True, "args": dict(args)}


@dataclass(frozen=True, slots=True)
class EmulatedScript:
    """A deployed script the emulator knows by path. Nothing is executed: its behaviour is data.

    :param path: ``u/<user>/<name>`` or ``f/<folder>/<name>``.
    :param duration_s: how long a run takes once a worker picked it up (None: ``job_duration_s``;
        ``"slow"``: the emulator's ``slow_duration_s``).
    :param result: the run's result from its args (default :func:`echo_result`).
    :param error: if set, every run fails with this message (``{"error": {"name": "Exception", ...}}``).
    """

    path: str
    language: str = "python3"
    summary: str = ""
    duration_s: float | Literal["slow"] | None = None
    result: Callable[[Mapping[str, Any]], Any] = echo_result
    error: str | None = None
    content: str = "def main(**kwargs):\n    return {'ok': True, 'args': kwargs}\n"


#: The scripts every emulator has unless given others.
DEFAULT_SCRIPTS: Final = (
    EmulatedScript(QUICK_SCRIPT, summary="returns {'ok': true, 'args': args} after job_duration_s"),
    EmulatedScript(SLOW_SCRIPT, summary="the same after slow_duration_s", duration_s="slow"),
    EmulatedScript(
        FAIL_SCRIPT,
        summary="raises Exception('demo failure') after job_duration_s",
        error="demo failure",
        content="def main(**kwargs):\n    raise Exception('demo failure')\n",
    ),
)


@dataclass(slots=True, eq=False)
class _Job:
    """One job the emulator accepted, and what became of it (state computed on read)."""

    id: str
    kind: Literal["script", "preview"]
    script_path: str | None
    language: str
    args: dict[str, Any]
    code: str
    tag: str
    #: Wall-clock creation time, and the emulator clock at creation.
    created_at: datetime
    created_clock: float
    #: The clock when a worker picks it up and when it would end by itself.
    start_clock: float
    end_clock: float
    #: What it ends with by itself: (success, result).
    outcome: tuple[bool, Any]
    canceled: bool = False
    canceled_by: str | None = None
    canceled_reason: str | None = None
    #: The clock when a canceled running job is completed as canceled.
    cancel_clock: float | None = None
    #: Set once completed: (success, canceled, result, completed clock, started clock).
    final: tuple[bool, bool, Any, float, float] | None = None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _not_json(exc: ValueError) -> ApiError:
    return ApiError(400, f"Bad request: the body is not valid JSON ({exc})")


def _bool_query(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise ApiError(400, f"Bad request: {name} must be true or false, not {raw!r}")


def _int_query(request: web.Request, name: str, default: int, low: int) -> int:
    value = query_int(
        request,
        name,
        default,
        lambda raw: ApiError(400, f"Bad request: {name} must be an integer, not {raw!r}"),
    )
    if value < low:
        raise ApiError(400, f"Bad request: {name} must be at least {low}")
    return value


def _time_query(request: web.Request, name: str) -> datetime | None:
    """A timestamp filter (``created_after`` ...): RFC 3339, as the OpenAPI's date-time."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return utc_moment(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"Bad request: {name} must be a date-time, not {raw!r}") from None


def _matches_list(value: str | None, spec: str | None) -> bool:
    """Windmill's list filters: comma-separated values, or all negated with a leading ``!``."""
    if spec is None or spec == "":
        return True
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if items and all(item.startswith("!") for item in items):
        return value not in {item[1:] for item in items}
    return value in items


class WindmillEmulator(Emulator):
    """Windmill (API v1.743.0, as ``wmill`` 1.850 uses it) on 127.0.0.1. Nothing is executed.

    :param token: the bearer token (default: ``secrets.token_urlsafe(32)``).
    :param workspace: the one workspace (default ``demo``).
    :param username: the token's user (default ``admin``), ``created_by`` of every job.
    :param email: that user's e-mail.
    :param scripts: the deployed scripts (default :data:`DEFAULT_SCRIPTS`: ``u/demo/quick``,
        ``u/demo/slow``, ``u/demo/fail``).
    :param queue_s: how long a new job waits queued before a worker picks it up (default
        ``job_duration_s / 5``).
    :param slow_duration_s: how long ``u/demo/slow`` runs (default 600 s).
    :param cancel_delay_s: how long a running job takes to stop once cancelled (default 0: it reads
        as completed-canceled from the next request on; > 0 shows the ``running`` + ``canceled``
        shape in between).
    :param duplicate_job_id: ``"reject"`` (default, as the spec says: 400 ``Bad request``) or
        ``"return"`` (201 with the existing id, no new job) for a ``job_id`` that exists.
    :param version: what ``GET /api/version`` says.
    Other keyword options (``job_duration_s``, ``latency_s``, ``max_lifetime_s``, ``clock``,
    ``port`` ...) are the kit's. State is computed from ``clock`` when read.

    Authentication
        ``Authorization: Bearer <token>`` or cookie ``token=<token>`` on everything under ``/api``
        except ``GET /api/version``. Missing or wrong → 401 ``Not authorized: …``. A workspace other
        than ``workspace`` → 401 ``Not authorized: you are not a member of workspace …``
        (emulator choice).

    Errors
        ``text/plain``, the error's display string: ``Not found: …`` (404), ``Bad request: …`` (400),
        ``Not authorized: …`` (401) — as Windmill's ``error.rs`` renders them. Fault-knob answers
        carry the status's reason phrase as text.

    Endpoints (paths under ``base_url``)
        ``GET /api/version`` → text ``CE v1.743.0 …``. ``GET /api/users/whoami`` →
        ``GlobalUserInfo``; ``GET /api/w/{ws}/users/whoami`` → ``User``.
        ``POST /api/w/{ws}/jobs/run/p/{path}`` (body: the args object; query ``job_id``,
        ``tag``, ``scheduled_in_secs`` …) → **201** ``text/plain`` job UUID. Unknown path → 404
        ``Not found: Script not found at name {path}``; a body that is not a JSON object → 400.
        ``POST /api/w/{ws}/jobs/run/preview`` (body ``Preview``: ``content``, ``language``, ``args``,
        ``tag``) → 201 text UUID. The code is **not** run: the result is ``{"ok": true, "args":
        args, "language": language, "content_sha256": <hex sha256 of content>}`` after
        ``job_duration_s`` (emulator choice). ``content`` and a ``ScriptLang`` ``language`` are
        required here (else 400).
        ``job_id`` (both): a UUID the job gets; not a UUID → 400; one that exists → see
        ``duplicate_job_id``. Without it the server picks a UUID.
        ``GET /api/w/{ws}/jobs_u/get/{id}?no_logs&no_code`` → ``Job`` with ``type`` ``QueuedJob``
        (``running`` false while queued, true once picked up) or ``CompletedJob`` (``success``,
        ``canceled``, ``result`` …). Unknown → 404 ``Not found: Job not found at name {id}``.
        ``GET …/jobs_u/completed/get/{id}`` → ``CompletedJob``; ``GET …/jobs_u/completed/
        get_result/{id}`` → the result JSON; both 404 ``Not found: Completed Job not found at
        name {id}`` until it completed.
        ``GET …/jobs_u/completed/get_result_maybe/{id}`` → ``{"completed", "result", "success",
        "started"}``; while pending ``result`` and ``success`` are null (as Windmill sends them and
        ``wmill`` reads them), ``started`` a bool (emulator choice: also without ``get_started``).
        ``POST …/jobs_u/queue/cancel/{id}`` ``{"reason"}`` → 200 text: the id. A queued job is
        completed at once as failed + canceled with result ``{"error": {"message": "Job canceled:
        <reason> by <user>", "name": "Canceled", "reason", "canceler"}}``; a running one is flagged
        ``canceled`` and completes so after ``cancel_delay_s``; a completed one → 200
        ``queued job id {id} is already completed``; unknown → 404 ``Not found: queued job id {id}
        does not exist``. No reason → ``unexplicited reasons``. ``POST …/jobs_u/queue/force_cancel/
        {id}`` is the same but completes a running job at once.
        ``GET …/jobs/list`` (``Job`` items, with ``type``), ``GET …/jobs/queue/list``
        (``QueuedJob`` items), ``GET …/jobs/completed/list`` (``CompletedJob`` items): newest first
        (``order_desc=false``: oldest first), filters ``created_by``, ``script_path_exact``,
        ``script_path_start``, ``job_kinds`` (comma lists, ``!`` negation), ``running``,
        ``success``; ``page`` (from 1) and ``per_page`` (default 30, clamped to 100).
        An undeclared route → 404, a wrong method → 405.

    Knobs (besides the kit's)
        ``job_ids`` (every job, oldest first), ``job_record(id)`` (the ``getJob`` answer now),
        ``token``, ``workspace``, ``username``, ``scripts``.
    """

    vendor = "windmill"

    def __init__(
        self,
        *,
        token: str | None = None,
        workspace: str = "demo",
        username: str = "admin",
        email: str = "admin@windmill.dev",
        scripts: Sequence[EmulatedScript] | None = None,
        queue_s: float | None = None,
        slow_duration_s: float = 600.0,
        cancel_delay_s: float = 0.0,
        duplicate_job_id: Literal["reject", "return"] = "reject",
        version: str | None = None,
        **options: Any,
    ) -> None:
        self.token = token if token is not None else secrets.token_urlsafe(32)
        if not isinstance(self.token, str) or not self.token:
            raise ConfigurationError("token must be a non-empty str")
        if not isinstance(workspace, str) or not workspace or "/" in workspace:
            raise ConfigurationError("workspace must be a non-empty str without '/'")
        if duplicate_job_id not in ("reject", "return"):
            raise ConfigurationError("duplicate_job_id must be 'reject' or 'return'")
        self.workspace = workspace
        self.username = username
        self.email = email
        self.scripts: dict[str, EmulatedScript] = {
            script.path: script for script in (DEFAULT_SCRIPTS if scripts is None else scripts)
        }
        for script in self.scripts.values():
            if script.language not in _LANGUAGES:
                raise ConfigurationError(f"script {script.path}: unknown language {script.language!r}")
        self.queue_s = None if queue_s is None else duration_option("queue_s", queue_s)
        self.slow_duration_s = duration_option("slow_duration_s", slow_duration_s)
        self.cancel_delay_s = duration_option("cancel_delay_s", cancel_delay_s)
        self.duplicate_job_id = duplicate_job_id
        self.version = version if version is not None else f"CE v1.743.0 (oqc-style-sdk {sdk_version()})"
        self._jobs: dict[str, _Job] = {}
        super().__init__(**options)

    # -- what clients need ----------------------------------------------------------------------

    @property
    def credentials(self) -> dict[str, str]:
        """``{"base_url", "token", "workspace"}``: our backend's settings (and ``wmill.Windmill``'s)."""
        return {"base_url": self.base_url, "token": self.token, "workspace": self.workspace}

    @property
    def env(self) -> dict[str, str]:
        """``WM_BASE_URL``, ``WM_TOKEN`` and ``WM_WORKSPACE``, as ``wmill`` and our backend read them."""
        return {"WM_BASE_URL": self.base_url, "WM_TOKEN": self.token, "WM_WORKSPACE": self.workspace}

    def secrets(self) -> tuple[str, ...]:
        return (self.token,)

    @property
    def job_ids(self) -> list[str]:
        """Every job id, oldest first."""
        return list(self._jobs)

    def job_record(self, job_id: str) -> dict[str, Any]:
        """The job as ``GET jobs_u/get/{id}`` would answer now."""
        job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(f"the Windmill emulator has no job {job_id!r}")
        return self._record(job, with_type=True)

    # -- kit hooks ------------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        router = app.router
        ws = "/api/w/{workspace}"
        router.add_get("/api/version", self._version)
        router.add_get("/api/users/whoami", self._global_whoami)
        router.add_get(ws + "/users/whoami", self._whoami)
        router.add_post(ws + "/jobs/run/preview", self._run_preview)
        router.add_post(ws + "/jobs/run/p/{path:.+}", self._run_path)
        router.add_get(ws + "/jobs/list", self._list_jobs)
        router.add_get(ws + "/jobs/queue/list", self._list_queue)
        router.add_get(ws + "/jobs/completed/list", self._list_completed)
        router.add_get(ws + "/jobs_u/get/{id}", self._get_job)
        router.add_get(ws + "/jobs_u/completed/get/{id}", self._get_completed)
        router.add_get(ws + "/jobs_u/completed/get_result/{id}", self._get_result)
        router.add_get(ws + "/jobs_u/completed/get_result_maybe/{id}", self._get_result_maybe)
        router.add_post(ws + "/jobs_u/queue/cancel/{id}", self._cancel)
        router.add_post(ws + "/jobs_u/queue/force_cancel/{id}", self._force_cancel)

    def is_authorized(self, request: web.Request) -> bool:
        if (request.method, request.path) in _PUBLIC:
            return True
        sent: str | None = None
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, credential = header.partition(" ")
            if scheme.lower() == "bearer":
                sent = credential.strip()
        if sent is None:
            sent = request.cookies.get("token")
        if not sent:
            return False
        return same_secret(sent, self.token)

    def unauthorized_response(self, request: web.Request) -> web.StreamResponse:
        return self.error_response(401, "Not authorized: invalid or missing token")

    def error_response(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        return web.Response(status=status, text=message, content_type="text/plain", headers=headers)

    # -- job state ------------------------------------------------------------------------------

    def _wall(self, job: _Job, at_clock: float) -> datetime:
        return job.created_at + timedelta(seconds=at_clock - job.created_clock)

    def _advance(self, job: _Job) -> None:
        """Complete the job if its time has come (by itself, or as canceled)."""
        if job.final is not None:
            return
        now = self.clock()
        if job.cancel_clock is not None and job.cancel_clock <= job.end_clock and now >= job.cancel_clock:
            self._complete_canceled(job, job.cancel_clock)
        elif now >= job.end_clock:
            success, result = job.outcome
            job.final = (success, False, result, job.end_clock, job.start_clock)

    def _complete_canceled(self, job: _Job, at_clock: float) -> None:
        reason = job.canceled_reason or NO_REASON
        canceler = job.canceled_by or self.username
        result = {
            "error": {
                "message": f"Job canceled: {reason} by {canceler}",
                "name": "Canceled",
                "reason": reason,
                "canceler": canceler,
            }
        }
        started = min(job.start_clock, at_clock)
        job.final = (False, True, result, at_clock, started)

    def _is_running(self, job: _Job) -> bool:
        return job.final is None and self.clock() >= job.start_clock

    def _record(
        self, job: _Job, *, with_type: bool, no_logs: bool = False, no_code: bool = False
    ) -> dict[str, Any]:
        self._advance(job)
        record: dict[str, Any] = {
            "workspace_id": self.workspace,
            "id": job.id,
            "created_by": self.username,
            "created_at": _iso(job.created_at),
            "args": job.args,
            "canceled": job.canceled,
            "job_kind": job.kind,
            "permissioned_as": f"u/{self.username}",
            "is_flow_step": False,
            "language": job.language,
            "email": self.email,
            "visible_to_owner": True,
            "tag": job.tag,
            "priority": 0,
        }
        if job.script_path is not None:
            record["script_path"] = job.script_path
        if not no_code:
            record["raw_code"] = job.code
        if job.canceled_by is not None:
            record["canceled_by"] = job.canceled_by
        if job.canceled_reason is not None:
            record["canceled_reason"] = job.canceled_reason
        if job.final is None:
            running = self._is_running(job)
            record["running"] = running
            record["scheduled_for"] = _iso(self._wall(job, job.start_clock if running else job.created_clock))
            if running:
                record["started_at"] = _iso(self._wall(job, job.start_clock))
                record["last_ping"] = _iso(self._wall(job, self.clock()))
                record["worker"] = WORKER
            if not no_logs:
                record["logs"] = f"job={job.id} tag={job.tag} worker={WORKER}\n" if running else ""
            if with_type:
                record["type"] = "QueuedJob"
            return record
        success, canceled, result, done, started = job.final
        record.update(
            {
                "started_at": _iso(self._wall(job, started)),
                "completed_at": _iso(self._wall(job, done)),
                "duration_ms": max(0, round((done - started) * 1000)),
                "success": success,
                "canceled": canceled,
                "result": result,
                "is_skipped": False,
                "deleted": False,
                "mem_peak": 0,
                "worker": WORKER,
            }
        )
        if not no_logs:
            record["logs"] = f"job={job.id} tag={job.tag} worker={WORKER}\n"
        if with_type:
            record["type"] = "CompletedJob"
        return record

    # -- request helpers ------------------------------------------------------------------------

    def _check_workspace(self, request: web.Request) -> None:
        workspace = request.match_info.get("workspace")
        if workspace is not None and workspace != self.workspace:
            raise ApiError(401, f"Not authorized: you are not a member of workspace {workspace}")

    def _job(self, request: web.Request, what: str = "Job") -> _Job:
        self._check_workspace(request)
        return found(
            self._jobs.get(request.match_info["id"]),
            f"Not found: {what} not found at name {request.match_info['id']}",
        )

    def _new_job_id(self, request: web.Request) -> tuple[str, bool]:
        """(the job id, whether that job exists already) — from ``job_id`` or a fresh UUID."""
        raw = request.query.get("job_id")
        if raw is None or raw == "":
            return str(uuid.uuid4()), False
        try:
            job_id = str(uuid.UUID(raw))
        except ValueError:
            raise ApiError(400, f"Bad request: job_id {raw!r} is not a UUID") from None
        if job_id in self._jobs:
            if self.duplicate_job_id == "reject":
                raise ApiError(400, f"Bad request: a job with id {job_id} already exists")
            return job_id, True
        return job_id, False

    def _create(
        self,
        request: web.Request,
        *,
        kind: Literal["script", "preview"],
        script_path: str | None,
        language: str,
        args: dict[str, Any],
        code: str,
        tag: str | None,
        run_s: float,
        outcome: tuple[bool, Any],
    ) -> web.Response:
        job_id, exists = self._new_job_id(request)
        if exists:
            return web.Response(status=201, text=job_id, content_type="text/plain")
        delay = _int_query(request, "scheduled_in_secs", 0, 0)
        now = self.clock()
        queue_s = self.queue_s if self.queue_s is not None else self.job_duration_s / 5
        start = now + delay + queue_s
        self._jobs[job_id] = _Job(
            id=job_id,
            kind=kind,
            script_path=script_path,
            language=language,
            args=args,
            code=code,
            tag=tag or language,
            created_at=datetime.now(UTC),
            created_clock=now,
            start_clock=start,
            end_clock=start + run_s,
            outcome=outcome,
        )
        return web.Response(status=201, text=job_id, content_type="text/plain")

    def _paged(self, request: web.Request, items: list[_Job]) -> list[_Job]:
        order_desc = _bool_query(request, "order_desc")
        ordered = items if order_desc is False else list(reversed(items))
        page = _int_query(request, "page", 1, 1)
        per_page = min(_int_query(request, "per_page", DEFAULT_PER_PAGE, 1), MAX_PER_PAGE)
        start = (page - 1) * per_page
        return ordered[start : start + per_page]

    def _filtered(self, request: web.Request) -> list[_Job]:
        self._check_workspace(request)
        query = request.query
        running = _bool_query(request, "running")
        success = _bool_query(request, "success")
        start = query.get("script_path_start")
        after = _time_query(request, "created_after")
        out = []
        for job in self._jobs.values():
            self._advance(job)
            if after is not None and job.created_at <= after:  # exclusive, as documented
                continue
            if not _matches_list(self.username, query.get("created_by")):
                continue
            if not _matches_list(job.script_path, query.get("script_path_exact")):
                continue
            if start and not (job.script_path or "").startswith(start):
                continue
            if not _matches_list(job.kind, query.get("job_kinds")):
                continue
            if running is not None and (job.final is None and self._is_running(job)) != running:
                continue
            if success is not None and (job.final is None or job.final[0] != success):
                continue
            out.append(job)
        return out

    # -- endpoints ------------------------------------------------------------------------------

    async def _version(self, request: web.Request) -> web.Response:
        return web.Response(text=self.version, content_type="text/plain")

    async def _global_whoami(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "email": self.email,
                "login_type": "password",
                "super_admin": True,
                "verified": True,
                "name": self.username,
                "username": self.username,
                "first_time_user": False,
                "role_source": "manual",
                "disabled": False,
            }
        )

    async def _whoami(self, request: web.Request) -> web.Response:
        self._check_workspace(request)
        return web.json_response(
            {
                "email": self.email,
                "username": self.username,
                "is_admin": True,
                "is_super_admin": True,
                "created_at": "2024-01-01T00:00:00.000000Z",
                "operator": False,
                "disabled": False,
                "groups": ["all"],
                "folders": [],
                "folders_read": [],
                "folders_owners": [],
            }
        )

    async def _run_path(self, request: web.Request) -> web.Response:
        self._check_workspace(request)
        path = request.match_info["path"]
        body = await read_json(request, _not_json)
        args = {} if body is None else body
        if not isinstance(args, dict):
            raise ApiError(400, "Bad request: the script args must be a JSON object")
        script = found(self.scripts.get(path), f"Not found: Script not found at name {path}")
        if script.duration_s == "slow":
            run_s = self.slow_duration_s
        elif script.duration_s is None:
            run_s = self.job_duration_s
        else:
            run_s = script.duration_s
        outcome: tuple[bool, Any]
        if script.error is not None:
            outcome = (
                False,
                {
                    "error": {
                        "name": "Exception",
                        "message": script.error,
                        "stack": f'Traceback (most recent call last):\n  File "{path}", line 2, in main\n'
                        f"Exception: {script.error}",
                    }
                },
            )
        else:
            outcome = (True, script.result(args))
        return self._create(
            request,
            kind="script",
            script_path=path,
            language=script.language,
            args=args,
            code=script.content,
            tag=request.query.get("tag"),
            run_s=run_s,
            outcome=outcome,
        )

    async def _run_preview(self, request: web.Request) -> web.Response:
        self._check_workspace(request)
        body = await read_json(request, _not_json)
        if not isinstance(body, dict):
            raise ApiError(400, "Bad request: the body must be a Preview object")
        args, content, language = body.get("args"), body.get("content"), body.get("language")
        if not isinstance(args, dict):
            raise ApiError(400, "Bad request: Preview.args must be a JSON object")
        if not isinstance(content, str):
            raise ApiError(400, "Bad request: Preview.content (the code) is required here")
        if language not in _LANGUAGES:
            raise ApiError(400, f"Bad request: unknown language {language!r}")
        tag = body.get("tag")
        digest = hashlib.sha256(content.encode()).hexdigest()
        result = {"ok": True, "args": args, "language": language, "content_sha256": digest}
        return self._create(
            request,
            kind="preview",
            script_path=body["path"] if isinstance(body.get("path"), str) else None,
            language=language,
            args=args,
            code=content,
            tag=tag if isinstance(tag, str) and tag else None,
            run_s=self.job_duration_s,
            outcome=(True, result),
        )

    async def _get_job(self, request: web.Request) -> web.Response:
        job = self._job(request)
        record = self._record(
            job,
            with_type=True,
            no_logs=_bool_query(request, "no_logs") is True,
            no_code=_bool_query(request, "no_code") is True,
        )
        return web.json_response(record)

    async def _get_completed(self, request: web.Request) -> web.Response:
        job = self._job(request, "Completed Job")
        self._advance(job)
        if job.final is None:
            raise ApiError(404, f"Not found: Completed Job not found at name {job.id}")
        return web.json_response(self._record(job, with_type=False))

    async def _get_result(self, request: web.Request) -> web.Response:
        job = self._job(request, "Completed Job")
        self._advance(job)
        if job.final is None:
            raise ApiError(404, f"Not found: Completed Job not found at name {job.id}")
        return web.json_response(job.final[2])

    async def _get_result_maybe(self, request: web.Request) -> web.Response:
        job = self._job(request)
        self._advance(job)
        if job.final is None:
            return web.json_response(
                {"completed": False, "result": None, "success": None, "started": self._is_running(job)}
            )
        success, _, result, _, _ = job.final
        return web.json_response({"completed": True, "result": result, "success": success, "started": True})

    async def _cancel(self, request: web.Request) -> web.Response:
        return await self._do_cancel(request, force=False)

    async def _force_cancel(self, request: web.Request) -> web.Response:
        return await self._do_cancel(request, force=True)

    async def _do_cancel(self, request: web.Request, *, force: bool) -> web.Response:
        self._check_workspace(request)
        job_id = request.match_info["id"]
        body = await read_json(request, _not_json)
        reason = body.get("reason") if isinstance(body, dict) else None
        job = found(self._jobs.get(job_id), f"Not found: queued job id {job_id} does not exist")
        self._advance(job)
        if job.final is not None:
            return web.Response(
                text=f"queued job id {job_id} is already completed", content_type="text/plain"
            )
        if not job.canceled:
            job.canceled = True
            job.canceled_by = self.username
            job.canceled_reason = reason if isinstance(reason, str) and reason else NO_REASON
        now = self.clock()
        if force or not self._is_running(job):
            self._complete_canceled(job, now)
        elif job.cancel_clock is None:
            job.cancel_clock = now + self.cancel_delay_s
            self._advance(job)
        return web.Response(text=job_id, content_type="text/plain")

    async def _list_jobs(self, request: web.Request) -> web.Response:
        jobs = self._paged(request, self._filtered(request))
        return web.json_response([self._record(job, with_type=True) for job in jobs])

    async def _list_queue(self, request: web.Request) -> web.Response:
        jobs = self._paged(request, [job for job in self._filtered(request) if job.final is None])
        return web.json_response([self._record(job, with_type=False) for job in jobs])

    async def _list_completed(self, request: web.Request) -> web.Response:
        jobs = self._paged(request, [job for job in self._filtered(request) if job.final is not None])
        return web.json_response([self._record(job, with_type=False) for job in jobs])
