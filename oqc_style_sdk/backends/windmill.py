"""Windmill: scripts by path and inline previews, over the REST API the official ``wmill`` client uses.

Wire facts (``specs/VENDORS.md`` §4, ``specs/windmill.openapi.yaml`` v1.743.0):

- The API lives under ``{base_url}/api``; ``WM_BASE_URL`` is the host root, as ``wmill`` reads it.
  ``Authorization: Bearer <token>`` on every request; ``GET /api/version`` is public (text).
- ``POST /api/w/{ws}/jobs/run/p/{path}`` (body: the args object) and ``POST …/jobs/run/preview``
  (body ``{"content", "language", "args"}``) answer **201** with the job UUID as ``text/plain``. Both
  take a caller-chosen ``job_id`` query parameter; a ``job_id`` that already exists is refused with
  400 (the spec's ``NewJobId`` parameter).
- ``GET …/jobs_u/get/{id}`` answers a ``Job``: ``type`` ``QueuedJob`` (``running``, ``canceled``)
  or ``CompletedJob`` (``success``, ``canceled``, ``is_skipped``, ``result``). There is no status
  enum; :data:`WINDMILL_STATUS` names each documented shape.
- ``GET …/jobs_u/completed/get_result/{id}`` is the raw result JSON (404 until the job completed).
- ``POST …/jobs_u/queue/cancel/{id}`` ``{"reason"}`` answers 200 text; for a finished job also 200
  (``queued job id … is already completed``), never an error.
- ``GET …/jobs/queue/list`` lists queued and running jobs (``per_page`` at most 100).
- Errors are ``text/plain`` display strings (``Not found: …``, ``Bad request: …``).

How this adapter uses them: the job id is a UUID made by the SDK before the first submission
(:meth:`WindmillBackend.local_idempotency_key`) and saved with the job; every submission carries it as
``job_id``. A submission sent again after a lost answer finds the job already there (400): the
adapter then reads ``jobs_u/get/{id}`` and, the job being there, takes it as the same run — never a
second one. Status reads of many jobs go through one ``jobs/queue/list`` request per 100 queued jobs;
a job that has left the queue is read on its own (once, as it ends).
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from .._http import HttpClient, RetryPolicy, Secret
from ..exceptions import (
    BackendError,
    ConfigurationError,
    JobValidationError,
    NotFoundError,
    ProtocolError,
    UnknownTargetError,
)
from ..state import JobState
from ._http_backend import HttpBackend
from .base import Diagnostics, FoundRun, Observation, RunQuery, RunRef, RunSpec, parse_moment

__all__ = [
    "CONFIG_KEYS",
    "DEFAULT_CANCEL_REASON",
    "SCRIPT_LANGUAGES",
    "WINDMILL_STATUS",
    "WindmillBackend",
    "observe_job",
    "vendor_status_of",
]

logger = logging.getLogger("oqc_style_sdk.backends.windmill")

#: Every documented shape of a Windmill job record, named, mapped once. A cancel requested on a
#: queued or running job keeps it active until Windmill completes it as canceled.
WINDMILL_STATUS: Final[Mapping[str, JobState]] = {
    "QueuedJob:waiting": JobState.SUBMITTED,
    "QueuedJob:running": JobState.RUNNING,
    "QueuedJob:waiting:canceling": JobState.SUBMITTED,
    "QueuedJob:running:canceling": JobState.RUNNING,
    "CompletedJob:success": JobState.COMPLETED,
    "CompletedJob:skipped": JobState.COMPLETED,
    "CompletedJob:failure": JobState.FAILED,
    "CompletedJob:canceled": JobState.CANCELLED,
}

#: ``ScriptLang`` of the spec: the languages an inline preview may be written in.
SCRIPT_LANGUAGES: Final = frozenset(
    {
        "python3",
        "deno",
        "go",
        "bash",
        "powershell",
        "postgresql",
        "mysql",
        "bigquery",
        "snowflake",
        "mssql",
        "oracledb",
        "graphql",
        "nativets",
        "bun",
        "php",
        "rust",
        "ansible",
        "csharp",
        "nu",
        "java",
        "ruby",
        "rlang",
        "duckdb",
        "bunnative",
    }
)

#: ``config`` keys a Windmill job takes: the worker tag (both kinds) and a delay (scripts by path).
CONFIG_KEYS: Final = frozenset({"worker_tag", "scheduled_in_secs"})
#: The reason sent when ``cancel()`` is given none.
DEFAULT_CANCEL_REASON: Final = "cancelled by oqc-style-sdk"
#: The most items one list page holds (the spec's ``per_page`` maximum).
LIST_PAGE_SIZE: Final = 100
#: How many queue-list pages one batched status read may fetch before reading the rest one by one.
MAX_LIST_PAGES: Final = 5
MAX_CODE_BYTES: Final = 1_000_000
MAX_ARGS_BYTES: Final = 5_000_000

_PROGRAM_KEYS: Final = frozenset({"path", "code", "language", "args"})
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
_SCRIPT_PATH: Final = re.compile(rf"^[uf]/{_SEGMENT}(/{_SEGMENT})+$")
_WORKSPACE: Final = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


def _as_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def vendor_status_of(record: Mapping[str, Any], kind: str | None = None) -> str | None:
    """The name of a job record's documented shape (a key of :data:`WINDMILL_STATUS`), or None.

    ``kind`` stands in for a missing ``type`` (queue and completed lists leave it out).
    """
    job_type = record.get("type", kind)
    if job_type == "QueuedJob":
        running = _as_bool(record.get("running"))
        if running is None:
            return None
        name = "QueuedJob:running" if running else "QueuedJob:waiting"
        return name + ":canceling" if record.get("canceled") is True else name
    if job_type == "CompletedJob":
        success = _as_bool(record.get("success"))
        if success is None:
            return None
        if record.get("canceled") is True:
            return "CompletedJob:canceled"
        if not success:
            return "CompletedJob:failure"
        return "CompletedJob:skipped" if record.get("is_skipped") is True else "CompletedJob:success"
    return None


def _raw_status(record: Mapping[str, Any], kind: str | None) -> str:
    job_type = record.get("type", kind)
    return job_type if isinstance(job_type, str) and job_type else "<no type>"


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _failure(record: Mapping[str, Any]) -> tuple[str, str | None]:
    """(message, code) of a failed job: its result's ``error`` (``{"name", "message"}``)."""
    result = record.get("result")
    error = result.get("error") if isinstance(result, dict) else None
    if isinstance(error, dict):
        message = error.get("message")
        name = error.get("name")
        return (
            str(message) if message not in (None, "") else "the script failed",
            str(name) if isinstance(name, str) and name else None,
        )
    if isinstance(error, str) and error:
        return error, None
    return "the script failed", None


def observe_job(record: Mapping[str, Any], kind: str | None = None) -> Observation | None:
    """The observation a job record gives, or None for a shape Windmill does not document."""
    name = vendor_status_of(record, kind)
    if name is None:
        return None
    state = WINDMILL_STATUS[name]
    ended_at = _parse_time(record.get("completed_at")) if state.is_terminal else None
    if state is JobState.FAILED:
        message, code = _failure(record)
        return Observation(state, name, message=message, code=code, ended_at=ended_at)
    if state is JobState.CANCELLED:
        reason = record.get("canceled_reason")
        return Observation(
            state, name, message=reason if isinstance(reason, str) and reason else None, ended_at=ended_at
        )
    return Observation(state, name, ended_at=ended_at)


def _json_object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise JobValidationError(f"{what} must be a mapping with string keys, not {type(value).__name__}")
    try:
        text = json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise JobValidationError(f"{what} must be JSON: {exc}") from None
    if len(text.encode()) > MAX_ARGS_BYTES:
        raise JobValidationError(f"{what} are over the {MAX_ARGS_BYTES}-byte limit")
    parsed: dict[str, Any] = json.loads(text)
    return parsed


class WindmillBackend(HttpBackend):
    """The ``windmill`` backend. Settings default to ``WM_BASE_URL``, ``WM_TOKEN``, ``WM_WORKSPACE``.

    A program is ``{"path": "u/me/script", "args": {...}}`` (a deployed script by path) or
    ``{"code": "...", "language": "python3", "args": {...}}`` (inline code, run as a preview). The
    target is the workspace; a job's data is the script's JSON result.
    """

    name = "windmill"
    batch_status = True
    idempotent_submit = True
    min_poll_interval_s = 0.5  # what wmill's own wait_job uses
    max_poll_interval_s = 10.0

    def __init__(
        self,
        *,
        base_url: str | None = None,
        token: str | Secret | None = None,
        workspace: str | None = None,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        base_url = base_url or os.environ.get("WM_BASE_URL")
        token = token or os.environ.get("WM_TOKEN")
        workspace = workspace or os.environ.get("WM_WORKSPACE")
        if not base_url:
            raise ConfigurationError("Windmill needs its base URL: pass base_url=... or set WM_BASE_URL")
        if not token:
            raise ConfigurationError("Windmill needs a token: pass token=... or set WM_TOKEN")
        if not workspace:
            raise ConfigurationError("Windmill needs a workspace: pass workspace=... or set WM_WORKSPACE")
        if not isinstance(workspace, str) or not _WORKSPACE.match(workspace):
            raise ConfigurationError(
                f"a Windmill workspace id is letters, digits, '-' and '_' (at most 100), not {workspace!r}"
            )
        if not isinstance(base_url, str):
            raise ConfigurationError("base_url must be a string")
        root = base_url.strip().rstrip("/")
        if root.endswith("/api"):  # the API URL given instead of the host's: same thing
            root = root[: -len("/api")]
        self._token = token if isinstance(token, Secret) else Secret(token)
        self._http = HttpClient(
            root + "/api",
            vendor="Windmill",
            headers={"Authorization": Secret(f"Bearer {self._token.reveal()}")},
            timeout_s=timeout_s,
            retry=retry,
            allow_insecure_http=allow_insecure_http,
            user_agent="oqc-style-sdk",
        )
        self.base_url = self._http.base_url[: -len("/api")]
        self.workspace = workspace
        self.default_target = workspace
        #: The token's user in the workspace (``users/whoami``), read when the Sdk opens.
        self.username: str | None = None
        self._list_supported = True
        self._unknown_seen: set[str] = set()

    def __repr__(self) -> str:
        return f"<WindmillBackend base_url={self.base_url!r} workspace={self.workspace!r}>"

    # ------------------------------------------------------------------ lifetime
    async def _check(self) -> None:
        await self._http.check_reachable("/version")
        try:
            me = (await self._http.get(self._ws("/users/whoami"))).json()
        except NotFoundError as exc:
            raise ConfigurationError(
                f"Windmill at {self.base_url} has no workspace {self.workspace!r} for this token: {exc}"
            ) from exc
        username = me.get("username") if isinstance(me, dict) else None
        self.username = username if isinstance(username, str) and username else None

    def identity(self) -> dict[str, str]:
        return {"backend": self.name, "endpoint": self.base_url, "workspace": self.workspace}

    def _ws(self, path: str) -> str:
        return f"/w/{self.workspace}{path}"

    # ------------------------------------------------------------------ targets
    async def list_targets(self) -> list[dict[str, Any]]:
        """The one target: the workspace jobs run in (scripts are programs, not targets)."""
        return [{"id": self.workspace, "name": self.workspace, "kind": "workspace", "url": self.base_url}]

    # ------------------------------------------------------------------ jobs
    def validate(self, spec: RunSpec) -> RunSpec:
        program = spec.program
        if not isinstance(program, Mapping):
            raise JobValidationError(
                "a Windmill program is {'path': 'u/me/script', 'args': {...}} or "
                f"{{'code': '...', 'language': 'python3', 'args': {{...}}}}, not {type(program).__name__}"
            )
        unknown = set(program) - _PROGRAM_KEYS
        if unknown:
            raise JobValidationError(
                f"unknown program key(s) {sorted(map(str, unknown))}; a Windmill program has "
                "'path' and 'args', or 'code', 'language' and 'args'"
            )
        args = _json_object(program.get("args"), "the script args")
        normalised: dict[str, Any]
        if "path" in program:
            if "code" in program or "language" in program:
                raise JobValidationError("give either 'path' (a deployed script) or 'code' + 'language'")
            path = program["path"]
            if not isinstance(path, str) or not _SCRIPT_PATH.match(path):
                raise JobValidationError(
                    f"a script path is like 'u/<user>/<name>' or 'f/<folder>/<name>', not {path!r}"
                )
            normalised = {"path": path, "args": args}
        elif "code" in program:
            code, language = program["code"], program.get("language")
            if not isinstance(code, str) or not code.strip():
                raise JobValidationError("'code' must be non-empty source text")
            if len(code.encode()) > MAX_CODE_BYTES:
                raise JobValidationError(f"the code is over the {MAX_CODE_BYTES}-byte limit")
            if language not in SCRIPT_LANGUAGES:
                raise JobValidationError(
                    f"'language' must be one of Windmill's script languages "
                    f"({', '.join(sorted(SCRIPT_LANGUAGES))}), not {language!r}"
                )
            normalised = {"code": code, "language": language, "args": args}
        else:
            raise JobValidationError("a Windmill program needs 'path' (a deployed script) or 'code'")
        target = spec.target if spec.target is not None else self.workspace
        if target != self.workspace:
            raise UnknownTargetError(target, [self.workspace])
        config = self._validate_config(spec.config, by_path="path" in normalised)
        return RunSpec(program=normalised, target=target, config=config, tag=spec.tag)

    @staticmethod
    def _validate_config(config: Mapping[str, Any], *, by_path: bool) -> dict[str, Any]:
        unknown = set(config) - CONFIG_KEYS
        if unknown:
            raise JobValidationError(
                f"unknown config key(s) {sorted(unknown)} for Windmill; allowed: {sorted(CONFIG_KEYS)}"
            )
        out: dict[str, Any] = {}
        tag = config.get("worker_tag")
        if tag is not None:
            if not isinstance(tag, str) or not tag:
                raise JobValidationError("worker_tag must be a non-empty string")
            out["worker_tag"] = tag
        delay = config.get("scheduled_in_secs")
        if delay is not None:
            if not by_path:
                raise JobValidationError("scheduled_in_secs applies to scripts by path only")
            if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
                raise JobValidationError("scheduled_in_secs must be a whole number of seconds >= 0")
            out["scheduled_in_secs"] = delay
        return out

    def local_idempotency_key(self, spec: RunSpec) -> str:
        """A fresh UUID: the job id Windmill is asked to use (``job_id``), saved with the job."""
        return str(uuid.uuid4())

    async def submit(self, spec: RunSpec, idempotency_key: str) -> RunRef:
        program = spec.program
        params: dict[str, str | int] = {"job_id": idempotency_key}
        tag = spec.config.get("worker_tag")
        if "path" in program:
            url = self._ws(f"/jobs/run/p/{program['path']}")
            body: dict[str, Any] = dict(program["args"])
            if tag is not None:
                params["tag"] = tag
            if spec.config.get("scheduled_in_secs") is not None:
                params["scheduled_in_secs"] = int(spec.config["scheduled_in_secs"])
            kind = "path"
        else:
            url = self._ws("/jobs/run/preview")
            body = {"content": program["code"], "language": program["language"], "args": program["args"]}
            if tag is not None:
                body["tag"] = tag
            kind = "preview"
        extra = {"workspace": self.workspace, "kind": kind}
        try:
            # The caller-chosen job id makes a resend harmless: Windmill never makes a second job.
            response = await self._http.post(url, params=params, json=body, idempotent=True)
        except BackendError as exc:
            if exc.status == 400 and await self._exists(idempotency_key):
                logger.info(
                    "Windmill job %s already existed when it was sent again; it is the same run",
                    idempotency_key,
                )
                return RunRef(task_id=idempotency_key, extra=extra)
            raise
        job_id = response.text().strip()
        try:
            uuid.UUID(job_id)
        except ValueError:
            raise ProtocolError(
                f"Windmill answered a submission with {job_id[:80]!r}, not a job id"
            ) from None
        if job_id != idempotency_key:
            logger.warning(
                "Windmill ignored the job id %s and made job %s; a resend could not be recognised",
                idempotency_key,
                job_id,
            )
        return RunRef(task_id=job_id, extra=extra)

    async def _exists(self, job_id: str) -> bool:
        response = await self._http.get(self._ws(f"/jobs_u/get/{job_id}"), params=_LEAN, ok=(200, 404))
        return response.status == 200

    async def _record(self, ref: RunRef) -> dict[str, Any]:
        body = (await self._http.get(self._ws(f"/jobs_u/get/{ref.task_id}"), params=_LEAN)).json()
        if not isinstance(body, dict):
            raise ProtocolError(f"Windmill answered a job read with {type(body).__name__}, not a job")
        return body

    def _observe(self, record: Mapping[str, Any], task_id: str, kind: str | None = None) -> Observation:
        obs = observe_job(record, kind)
        if obs is not None:
            return obs
        raw = _raw_status(record, kind)
        if raw not in self._unknown_seen:
            self._unknown_seen.add(raw)
            logger.warning("Windmill job %s has an undocumented shape %r; kept active", task_id, raw)
        return Observation(JobState.SUBMITTED, raw)

    async def status(self, ref: RunRef) -> Observation:
        return self._observe(await self._record(ref), ref.task_id)

    async def statuses(self, refs: Sequence[RunRef]) -> dict[str, Observation | BaseException]:
        """Queued and running jobs from ``jobs/queue/list`` (one request per 100), the rest one by one.

        A job missing from the queue list has ended (or the list was cut short): its own read says
        which. Each job leaves the queue once, so N waiting jobs cost about one request per tick.
        """
        if len(refs) < 2 or not self._list_supported:
            return await super().statuses(refs)
        wanted = {ref.task_id: ref for ref in refs}
        try:
            queued = await self._queued(set(wanted))
        except BackendError as exc:
            if exc.status not in (400, 404, 405):
                raise
            logger.info("Windmill's queue list is unavailable (%s); reading jobs one by one", exc)
            self._list_supported = False
            return await super().statuses(refs)
        out: dict[str, Observation | BaseException] = {
            task_id: self._observe(record, task_id, "QueuedJob") for task_id, record in queued.items()
        }
        rest = [ref for task_id, ref in wanted.items() if task_id not in out]
        if rest:
            out.update(await super().statuses(rest))
        return out

    async def _queued(self, wanted: set[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        params: dict[str, str | int] = {"per_page": LIST_PAGE_SIZE}
        if self.username is not None:
            params["created_by"] = self.username
        for page in range(1, MAX_LIST_PAGES + 1):
            params["page"] = page
            items = (await self._http.get(self._ws("/jobs/queue/list"), params=params)).json()
            if not isinstance(items, list):
                raise ProtocolError("Windmill answered the queue list with something other than a list")
            for item in items:
                if isinstance(item, dict) and item.get("id") in wanted:
                    found[item["id"]] = item
            if len(items) < LIST_PAGE_SIZE or len(found) == len(wanted):
                break
        return found

    # ------------------------------------------------------------------ finding jobs
    has_job_list = True
    #: The SDK's tag is not sent to Windmill (its job ``tag`` is the worker group): no tag filter.
    list_filters = frozenset({"states", "target", "since"})

    def check_task_id(self, task_id: str) -> None:
        try:
            uuid.UUID(task_id)
        except (ValueError, TypeError, AttributeError):
            raise JobValidationError(f"{task_id!r} is not a Windmill job id (a UUID)") from None

    def _found(self, record: Mapping[str, Any], observation: Observation) -> FoundRun:
        """A job record as a found run: a script path and args, or preview code, language and args."""
        args = record.get("args") if isinstance(record.get("args"), dict) else {}
        program: dict[str, Any] | None = None
        unknown = None
        path, code, language = record.get("script_path"), record.get("raw_code"), record.get("language")
        if record.get("job_kind") == "script" and isinstance(path, str):
            program = {"path": path, "args": args}
        elif record.get("job_kind") == "preview" and isinstance(code, str):
            program = {"code": code, "language": language, "args": args}
        else:
            unknown = f"Windmill job kind {record.get('job_kind')!r} is not one this SDK runs"
        config: dict[str, Any] = {}
        tag = record.get("tag")
        if isinstance(tag, str) and tag and tag != language:  # a language's own group is the default
            config["worker_tag"] = tag
        created = parse_moment(record.get("created_at"))
        kind = "path" if program is not None and "path" in program else "preview"
        return FoundRun(
            ref=RunRef(task_id=str(record["id"]), extra={"workspace": self.workspace, "kind": kind}),
            observation=observation,
            spec=RunSpec(program=program, target=self.workspace, config=config),
            created_at=created,
            unknown_program=unknown,
        )

    async def find_run(self, task_id: str) -> FoundRun:
        """``GET jobs_u/get/{id}`` (with its code and args: what a re-run needs)."""
        response = await self._http.get(self._ws(f"/jobs_u/get/{task_id}"), params={"no_logs": "true"})
        record = response.json() if response.status == 200 else None
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise ProtocolError(f"Windmill answered a job read of {task_id} without a job")
        return self._found(record, self._observe(record, task_id))

    async def list_runs(self, query: RunQuery) -> AsyncIterator[FoundRun]:
        """``GET jobs/list`` newest first, ``per_page`` at most 100, ``created_after`` for ``since``."""
        params: dict[str, str | int] = {
            "per_page": min(query.page_size, LIST_PAGE_SIZE),
            "order_desc": "true",
            "job_kinds": "script,preview",
        }
        if query.since is not None:
            params["created_after"] = query.since.astimezone(UTC).isoformat().replace("+00:00", "Z")
        page = 1
        while True:
            items = (await self._http.get(self._ws("/jobs/list"), params={**params, "page": page})).json()
            if not isinstance(items, list):
                raise ProtocolError("Windmill answered the job list with something other than a list")
            for record in items:
                if isinstance(record, dict) and isinstance(record.get("id"), str):
                    yield self._found(record, self._observe(record, record["id"], record.get("type")))
            if len(items) < int(params["per_page"]):
                return
            page += 1

    async def cancel(self, ref: RunRef, reason: str | None = None) -> None:
        response = await self._http.post(
            self._ws(f"/jobs_u/queue/cancel/{ref.task_id}"),
            json={"reason": reason if reason else DEFAULT_CANCEL_REASON},
            idempotent=True,  # cancelling twice is harmless; a finished job answers 200 too
        )
        logger.debug("Windmill cancel of %s: %s", ref.task_id, response.text()[:200])

    async def result(self, ref: RunRef, spec: RunSpec) -> Any:
        response = await self._http.get(self._ws(f"/jobs_u/completed/get_result/{ref.task_id}"))
        return response.json()

    async def diagnostics(self, ref: RunRef, spec: RunSpec) -> Diagnostics:
        record = await self._record(ref)

        def pick(*keys: str) -> dict[str, Any] | None:
            found = {key: record[key] for key in keys if record.get(key) is not None}
            return found or None

        return Diagnostics(
            timings=pick("created_at", "started_at", "completed_at", "duration_ms", "self_wait_time_ms"),
            metrics=pick("mem_peak", "duration_ms"),
            metadata=pick(
                "job_kind",
                "script_path",
                "language",
                "tag",
                "worker",
                "created_by",
                "permissioned_as",
                "canceled_by",
                "canceled_reason",
            ),
        )


#: Job reads leave out the logs and the code: the adapter needs neither.
_LEAN: Final[Mapping[str, str | int]] = {"no_logs": "true", "no_code": "true"}
