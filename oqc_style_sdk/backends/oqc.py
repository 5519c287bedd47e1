"""OQC QCaaS: OpenQASM tasks on OQC's QPUs, over the REST API the published OQC clients use.

Wire facts (``specs/VENDORS.md`` §5):

- ``Authentication-Token: <token>`` on every request; ``GET {url}/admin/version`` is unauthenticated.
- ``GET {url}/admin/qpu?per_page=1000`` lists QPUs; each has its own execution ``url`` where the task
  endpoints live.
- ``POST {qpu_url}/tasks`` reserves task ids; ``POST {qpu_url}/tasks/submit`` submits tasks (with a
  reserved ``task_id``); ``GET …/tasks/{id}/status``, ``/results``, ``/error``, ``/timings``,
  ``/metadata``, ``/execution_metadata``; ``POST …/tasks/cancel_many`` cancels a list.
- Success is always 200. Status values: UNKNOWN, CREATED, SUBMITTED, RUNNING, COMPLETED, FAILED,
  CANCELLED, EXPIRED.

How this adapter uses them: the task id is reserved *before* submission and becomes the run's
idempotency key, saved with the job. A submit whose response is lost is sent again with the same id,
which the server does not run twice — so a retried or resumed submission never makes a second task.
A submission the server refuses outright releases its reserved id (``cancel_many``) once the task
reads as only reserved (``CREATED``), so no reserved id is left orphaned and no task the vendor
holds is ever cancelled: a refusal that answers a resend of an accepted task finds it submitted and
takes it. OQC's wire limits (``_oqc_limits``): no request over 128 KiB (a batch is cut by encoded
size, a program whose task would not fit is refused by ``create_job``), and 408/409/429/5xx mean
"try again later" — a 409 is retried and never taken as a refusal.

The QPU list is read when the Sdk opens: it checks the URL and token at once, gives each QPU's
execution URL, and lets ``create_job`` refuse an unknown QPU before anything is sent.

Status reads: one task is read with ``GET …/tasks/{id}/status``; several tasks of one QPU are read
together with one ``GET {qpu_url}/tasks?start_date=…`` (the task list, which carries each task's
status), so polling many jobs costs one request per QPU per tick. The list's answer is not documented
by OQC; any task missing from it is read on its own, and a list the server refuses or answers in
another shape is not tried again by this backend (every task is then read on its own).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import operator
import os
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any, Final, cast

import anyio.to_thread

from .._http import HttpClient, RetryPolicy, Secret
from ..exceptions import (
    AuthenticationError,
    BackendError,
    ConfigurationError,
    JobNotFoundError,
    JobValidationError,
    NotFoundError,
    ProtocolError,
    UnknownTargetError,
)
from ..state import JobState
from ._http_backend import HttpBackend
from ._oqc_limits import (
    BATCH_SIZE,
    MAX_BODY_BYTES,
    MAX_REQUEST_BYTES,
    TRY_AGAIN_STATUSES,
    encode_task,
    request_bytes,
    retry_policy,
    size_chunks,
)
from ._qiskit import as_openqasm, is_circuit, qiskit_imported
from .base import Diagnostics, FoundRun, Observation, RunQuery, RunRef, RunSpec

__all__ = [
    "BATCH_SIZE",
    "MAX_PROGRAM_BYTES",
    "MAX_REQUEST_BYTES",
    "OQC_STATUS",
    "OqcBackend",
    "compiler_config",
]

logger = logging.getLogger("oqc_style_sdk.backends.oqc")

#: Every documented OQC task status, mapped once. UNKNOWN keeps the job active.
OQC_STATUS: Mapping[str, JobState] = {
    "UNKNOWN": JobState.SUBMITTED,
    "CREATED": JobState.SUBMITTED,  # reserved; we only read tasks we have submitted
    "SUBMITTED": JobState.SUBMITTED,
    "RUNNING": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "EXPIRED": JobState.FAILED,
}

#: The reading of each status that needs nothing more (every one but FAILED and EXPIRED, whose
#: error is read): made once, so a poll of thousands of tasks makes no new objects.
_PLAIN_OBSERVATION: Mapping[str, Observation] = {
    vendor: Observation(state, vendor) for vendor, state in OQC_STATUS.items() if state is not JobState.FAILED
}

#: A run's extra: the runs of one submission share one, and are read in a row.
_EXTRA: Final = operator.attrgetter("extra")
#: A run's task id (thousands a read: in C).
_TASK_ID: Final = operator.attrgetter("task_id")
#: A listed task's id and status (thousands a read: in C).
_ID_AND_STATUS: Final = operator.itemgetter("task_id", "status")

DEFAULT_SHOTS = 1000
MAX_SHOTS = 1_000_000
#: No program over this many bytes is sent: OQC takes no request over 128 KiB, and a program's task
#: (its config, ids and tag around it, JSON-escaped) must fit one. The exact bound is that task's
#: encoded size (:func:`_oqc_limits.encode_task`), checked by ``create_job``.
MAX_PROGRAM_BYTES = MAX_BODY_BYTES
CONFIG_KEYS = frozenset({"shots", "compiler_config"})
#: How far before a task's submission the task list is read from (the server's clock may differ,
#: and ``created_at`` is the reservation time). A task outside the window is read on its own.
LIST_WINDOW_SLACK = timedelta(hours=1)
#: A reserved id as a submission would carry it (a UUID): for sizing a task before its id exists.
_ID_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"
#: What a refused task's status read says when OQC does not know the task (404).
_UNKNOWN_TASK = "<not found>"


@functools.lru_cache(maxsize=64)  # the same few shot counts, for every task of a batch
def compiler_config(shots: int) -> str:
    """The CompilerConfig JSON *string* OQC expects: ``shots`` repeats, BinaryCount results."""
    return json.dumps(
        {
            "$type": "<class 'compiler_config.config.CompilerConfig'>",
            "$data": {
                "repeats": shots,
                "repetition_period": None,
                "passive_reset_time": None,
                "results_format": {
                    "$type": "<class 'compiler_config.config.QuantumResultsFormat'>",
                    "$data": {
                        "format": {
                            "$type": "<enum 'compiler_config.config.InlineResultsProcessing'>",
                            "$value": 1,
                        },
                        "transforms": {
                            "$type": "<enum 'compiler_config.config.ResultsFormatting'>",
                            "$value": 3,
                        },
                    },
                },
                "metrics": {"$type": "<enum 'compiler_config.config.MetricsType'>", "$value": 6},
                "active_calibrations": [],
                "optimizations": None,
                "error_mitigation": None,
            },
        }
    )


class OqcBackend(HttpBackend):
    """The ``oqc`` backend. Settings default to ``OQC_URL`` and ``OQC_AUTHENTICATION_TOKEN``."""

    name = "oqc"
    min_poll_interval_s = 0.1
    max_poll_interval_s = 5.0
    batch_status = True  # several tasks of a QPU are read with one GET of its task list
    batch_submit = True  # a composite reserves its ids with one POST and submits them with one
    has_job_list = True  # each QPU's task list (GET {qpu_url}/tasks), paged where the server pages it

    def __init__(
        self,
        *,
        url: str | None = None,
        authentication_token: str | Secret | None = None,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        url = url or os.environ.get("OQC_URL")
        token = authentication_token or os.environ.get("OQC_AUTHENTICATION_TOKEN")
        if not url:
            raise ConfigurationError("OQC needs its URL: pass url=... or set OQC_URL")
        if not token:
            raise ConfigurationError(
                "OQC needs an authentication token: pass authentication_token=... or set "
                "OQC_AUTHENTICATION_TOKEN"
            )
        self._token = token if isinstance(token, Secret) else Secret(token)
        self._http = HttpClient(
            url,
            vendor="OQC QCaaS",
            headers={"Authentication-Token": self._token},
            timeout_s=timeout_s,
            retry=retry_policy(retry),  # 409 is "try again later" to OQC, as 408, 429 and 5xx
            allow_insecure_http=allow_insecure_http,
            user_agent="oqc-style-sdk",
        )
        self.url = self._http.base_url
        self._qpus: dict[str, dict[str, Any]] = {}
        self._qpu_urls: dict[str, str] = {}  # qpu id -> its execution URL, from _qpus
        #: When each inactive QPU's next window starts, as OQC said when the Sdk opened.
        self._next_windows: dict[str, datetime] = {}
        #: False once a QPU's task list was refused or answered in a shape we do not know.
        self._task_list_usable = True
        #: Undocumented statuses already logged (once per status, not per task: bounded).
        self._odd_statuses: set[str] = set()

    def __repr__(self) -> str:
        return f"<OqcBackend url={self.url!r}>"

    # ------------------------------------------------------------------ lifetime
    async def _check(self) -> None:
        await self._http.check_reachable("/admin/version")
        await self._refresh_qpus()
        await self._read_windows()

    async def _read_windows(self) -> None:
        """The next window of each inactive QPU (``GET {qpu_url}/windows/next``), for the error that
        refuses a job for it. Best effort: a window that cannot be read is left out."""
        for qpu_id, qpu in self._qpus.items():
            if qpu.get("active") is not False:
                continue
            try:
                body = (await self._http.get(f"{self._qpu_url(qpu_id)}/windows/next")).json()
            except BackendError as exc:
                logger.debug("OQC: the next window of %s is unknown: %s", qpu_id, exc)
                continue
            window = body.get("next_window") if isinstance(body, dict) else None
            starting = _parse_moment(window.get("starting", "")) if isinstance(window, dict) else None
            if starting is not None:
                self._next_windows[qpu_id] = starting

    def identity(self) -> dict[str, str]:
        return {"backend": self.name, "endpoint": self.url}

    # ------------------------------------------------------------------ targets
    async def _refresh_qpus(self) -> list[dict[str, Any]]:
        body = (await self._http.get("/admin/qpu", params={"per_page": 1000})).json()
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise ProtocolError("OQC QCaaS answered the QPU list without an 'items' list")
        qpus = [item for item in items if isinstance(item, dict) and isinstance(item.get("id"), str)]
        for qpu in qpus:  # each QPU's execution URL gets the token: the configured origin names them
            listed = qpu.get("url")
            if isinstance(listed, str) and listed:
                try:
                    self._http.grant_origin(listed)
                except ConfigurationError as exc:
                    logger.warning("OQC: QPU %s has an execution URL this SDK refuses: %s", qpu["id"], exc)
        self._qpus = {item["id"]: item for item in qpus}
        self._qpu_urls = {}
        return qpus

    async def list_targets(self) -> list[dict[str, Any]]:
        return [dict(item) for item in await self._refresh_qpus()]

    def target_unavailable(self, target: str) -> tuple[str, datetime | None] | None:
        """An inactive QPU (as OQC's own client, which offers active QPUs only) and its next window."""
        qpu = self._qpus.get(target)
        if qpu is None or qpu.get("active") is not False:
            return None
        return str(qpu.get("status") or "INACTIVE"), self._next_windows.get(target)

    def _qpu_url(self, qpu_id: str) -> str:
        url = self._qpu_urls.get(qpu_id)
        if url is None:
            qpu = self._qpus.get(qpu_id)
            listed = qpu.get("url") if qpu else None
            url = listed.rstrip("/") if isinstance(listed, str) and listed else self.url
            if qpu:
                self._qpu_urls[qpu_id] = url
        return url

    # ------------------------------------------------------------------ jobs
    def validate(self, spec: RunSpec) -> RunSpec:
        program = spec.program
        if not is_circuit(program):  # a circuit is written as OpenQASM text at submission
            if not isinstance(program, str):
                raise JobValidationError(
                    "an OQC program is OpenQASM text or a qiskit QuantumCircuit, "
                    f"not {type(program).__name__}"
                )
            if not program.strip():
                raise JobValidationError("the program is empty")
            if len(program) > MAX_PROGRAM_BYTES:  # too large however it is encoded
                raise JobValidationError(_too_large(len(program.encode())))
        if spec.target is None:
            raise JobValidationError(
                "no QPU for this job: pass qpu_id=... to create_job, or default_qpu_id=... to OqcSdk"
            )
        if self._qpus and spec.target not in self._qpus:
            raise UnknownTargetError(spec.target, sorted(self._qpus))
        unknown = set(spec.config) - CONFIG_KEYS
        if unknown:
            raise JobValidationError(
                f"unknown config key(s) {sorted(unknown)} for OQC; allowed: {sorted(CONFIG_KEYS)}"
            )
        shots = spec.config.get("shots", DEFAULT_SHOTS)
        if isinstance(shots, bool) or not isinstance(shots, int) or not 1 <= shots <= MAX_SHOTS:
            raise JobValidationError(f"shots must be a whole number from 1 to {MAX_SHOTS}")
        raw = spec.config.get("compiler_config")
        if raw is not None and not isinstance(raw, str):
            raise JobValidationError("compiler_config is the CompilerConfig JSON string")
        config: dict[str, Any] = {"shots": shots}
        if raw is not None:
            config["compiler_config"] = raw
        checked = RunSpec(program=program, target=spec.target, config=config, tag=spec.tag)
        if isinstance(program, str):  # a circuit's text is sized when it is written, at submission
            size = request_bytes([len(self._task(checked, program, _ID_PLACEHOLDER))])
            if size > MAX_BODY_BYTES:
                raise JobValidationError(_too_large(len(program.encode()), size))
        return checked

    async def new_idempotency_key(self, spec: RunSpec) -> str:
        """Reserve the task id at OQC; it is saved with the job before the task is submitted."""
        assert spec.target is not None
        response = await self._http.post(
            f"{self._qpu_url(spec.target)}/tasks",
            json={"qpu_id": spec.target, "task_count": 1, "tag": spec.tag or ""},
        )
        ids = response.json()
        if not isinstance(ids, list) or len(ids) != 1 or not isinstance(ids[0], str):
            raise ProtocolError(f"OQC QCaaS reserved {ids!r} instead of one task id")
        return ids[0]

    async def new_idempotency_keys(self, specs: Sequence[RunSpec]) -> list[str]:
        """Reserve the ids of several tasks: one ``POST …/tasks`` (``task_count=n``) per QPU and tag."""
        keys: list[str | None] = [None] * len(specs)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, spec in enumerate(specs):
            assert spec.target is not None
            groups.setdefault((spec.target, spec.tag or ""), []).append(i)
        for (target, tag), members in groups.items():
            for start in range(0, len(members), BATCH_SIZE):
                chunk = members[start : start + BATCH_SIZE]
                response = await self._http.post(
                    f"{self._qpu_url(target)}/tasks",
                    json={"qpu_id": target, "task_count": len(chunk), "tag": tag},
                )
                ids = response.json()
                if (
                    not isinstance(ids, list)
                    or len(ids) != len(chunk)
                    or not all(isinstance(i, str) for i in ids)
                ):
                    raise ProtocolError(f"OQC QCaaS reserved {ids!r:.200} instead of {len(chunk)} task ids")
                for i, task_id in zip(chunk, ids, strict=True):
                    keys[i] = task_id
        return [key for key in keys if key is not None]

    async def submit_many(
        self, specs: Sequence[RunSpec], idempotency_keys: Sequence[str]
    ) -> list[RunRef | BaseException]:
        """One ``POST …/tasks/submit`` per QPU and per run of tasks that fits OQC's request limit
        (128 KiB, at most :data:`BATCH_SIZE` tasks), every task with its reserved id, so a resend
        never runs a task twice. A batch refused outright is sent again task by task, so only the
        refused tasks fail (their ids released once they read as only reserved)."""
        out: list[RunRef | BaseException] = [RuntimeError("not submitted")] * len(specs)
        texts, unwritable = await _openqasm([spec.program for spec in specs])
        groups: dict[str, list[int]] = {}
        for i, spec in enumerate(specs):
            assert spec.target is not None
            groups.setdefault(self._qpu_url(spec.target), []).append(i)
        for qpu_url, members in groups.items():
            # Each task encoded once: sized by its text, and sent as that text (a resend of the
            # same request sends the same bytes; nothing is encoded again).
            encoded = {i: self._task(specs[i], texts[i], idempotency_keys[i]) for i in members}
            sized = {i: len(text) for i, text in encoded.items()}
            for i in members:  # a circuit's text, sized now it is written
                if i not in unwritable and request_bytes([sized[i]]) > MAX_BODY_BYTES:
                    unwritable[i] = JobValidationError(_too_large(len(texts[i].encode())))
            failed = [i for i in members if i in unwritable]
            if failed:  # never sent, those jobs end FAILED: their reserved ids must not be left behind
                for i in failed:
                    out[i] = unwritable[i]
                await self._release(qpu_url, *(idempotency_keys[i] for i in failed))
                members = [i for i in members if i not in unwritable]
            for picked in size_chunks([sized[i] for i in members]):
                chunk = [members[n] for n in picked]
                try:
                    body_text = '{"tasks":[' + ",".join(encoded[i] for i in chunk) + "]}"
                    response = await self._http.post(
                        f"{qpu_url}/tasks/submit", encoded_json=body_text.encode(), idempotent=True
                    )
                except BackendError as exc:
                    exc = _as_oqc_sees_it(exc)
                    for i in chunk:
                        out[i] = exc
                    if exc.refused:
                        # A refused batch submitted nothing: which task was refused is found by
                        # sending each on its own (same ids); a refused one ends FAILED and its
                        # reserved id is released, so none is left behind.
                        for i in chunk:
                            try:
                                out[i] = await self.submit(specs[i], idempotency_keys[i])
                            except Exception as single:  # handed to the job it belongs to
                                out[i] = single
                    continue
                body = response.json()
                answered = body if isinstance(body, list) and len(body) == len(chunk) else []
                submitted_at = datetime.now(UTC).isoformat(timespec="seconds")
                # The runs of one QPU in one request share one read-only extra: thousands of
                # runs, one mapping (nothing writes to a RunRef's extra).
                extras: dict[str, Mapping[str, str]] = {}
                for n, i in enumerate(chunk):
                    task_id = idempotency_keys[i]
                    if answered and isinstance(answered[n], dict):
                        task_id = str(answered[n].get("task_id") or task_id)
                    target = specs[i].target or ""
                    extra = extras.get(target)
                    if extra is None:
                        extra = extras[target] = MappingProxyType(
                            {"qpu_id": target, "qpu_url": qpu_url, "submitted_at": submitted_at}
                        )
                    out[i] = RunRef(task_id=task_id, extra=extra)
        return out

    def _task(self, spec: RunSpec, program: str, task_id: str) -> str:
        """The task OQC's client would send for ``spec``, as the JSON text it is sent as."""
        config = spec.config.get("compiler_config") or compiler_config(
            int(spec.config.get("shots", DEFAULT_SHOTS))
        )
        return encode_task(program, config, spec.target or "", spec.tag or "", task_id)

    async def submit(self, spec: RunSpec, idempotency_key: str) -> RunRef:
        assert spec.target is not None
        qpu_url = self._qpu_url(spec.target)
        (program,), unwritable = await _openqasm([spec.program])
        task = self._task(spec, program, idempotency_key)
        if not unwritable and request_bytes([len(task)]) > MAX_BODY_BYTES:
            unwritable[0] = JobValidationError(_too_large(len(program.encode())))
        if unwritable:  # never sent, the job ends FAILED: its reserved id must not be left behind
            await self._release(qpu_url, idempotency_key)
            raise unwritable[0]
        extra = {"qpu_id": spec.target, "qpu_url": qpu_url}
        try:
            response = await self._http.post(
                f"{qpu_url}/tasks/submit",
                encoded_json=('{"tasks":[' + task + "]}").encode(),
                idempotent=True,  # the reserved task id makes a resend harmless
            )
        except BackendError as exc:
            exc = _as_oqc_sees_it(exc)
            if not exc.refused:
                raise
            # Refused: but an earlier send of this task (a retry's first attempt, a run before a
            # crash) may have been accepted, and this refusal answer its resend. The task's status
            # says which; only an id that reads as merely reserved is released.
            status = await self._status_after_refusal(qpu_url, idempotency_key)
            if status is None:  # unreadable: the vendor may hold it, so it is kept, and so is the job
                exc.transient = True
                raise
            if status in ("CREATED", _UNKNOWN_TASK):
                if status == "CREATED":
                    await self._release(qpu_url, idempotency_key)
                raise
            logger.info("OQC: task %s, refused on a resend, is %s: submitted", idempotency_key, status)
            return RunRef(task_id=idempotency_key, extra={**extra, "submitted_at": _now_iso()})
        body = response.json()
        task_id = idempotency_key
        if isinstance(body, list) and body and isinstance(body[0], dict):
            task_id = str(body[0].get("task_id") or idempotency_key)
        return RunRef(task_id=task_id, extra={**extra, "submitted_at": _now_iso()})

    async def _status_after_refusal(self, qpu_url: str, task_id: str) -> str | None:
        """The status of a task whose submission was refused, :data:`_UNKNOWN_TASK` if OQC does not
        know it, or None if it cannot be read (then nothing is released: the vendor may hold it)."""
        try:
            body = (await self._http.get(f"{qpu_url}/tasks/{task_id}/status")).json()
        except NotFoundError:
            return _UNKNOWN_TASK
        except BackendError as exc:
            logger.warning("OQC: the refused task %s could not be read (%s); its id is kept", task_id, exc)
            return None
        status = body.get("status") if isinstance(body, dict) else None
        return status if isinstance(status, str) else None

    async def _release(self, qpu_url: str, *task_ids: str) -> None:
        """Cancel reserved ids never submitted, or whose submission was refused while they read as
        only reserved (best effort: logged, never raised)."""
        try:
            await self._http.post(
                f"{qpu_url}/tasks/cancel_many", json={"tasks": list(task_ids)}, idempotent=True
            )
        except Exception as exc:
            logger.warning("OQC: could not release the reserved task id(s) %s: %s", ", ".join(task_ids), exc)

    def _ref_url(self, ref: RunRef) -> str:
        """The QPU's execution URL: from the live QPU list when it names the QPU, else as saved."""
        qpu_id = ref.extra.get("qpu_id", "")
        if qpu_id in self._qpus:
            return self._qpu_url(qpu_id)
        return ref.extra.get("qpu_url") or self._qpu_url(qpu_id)

    async def _observation(self, ref: RunRef, vendor: str) -> Observation:
        """Map a vendor status; a FAILED task's error is read from ``…/error``."""
        state = OQC_STATUS.get(vendor)
        if state is None:
            if vendor not in self._odd_statuses and len(self._odd_statuses) < 64:
                self._odd_statuses.add(vendor)
                logger.warning("OQC task %s has an undocumented status %r; kept active", ref.task_id, vendor)
            return Observation(JobState.SUBMITTED, vendor)
        if state is not JobState.FAILED:
            return Observation(state, vendor)
        if vendor == "EXPIRED":
            return Observation(state, vendor, message="the task expired before it ran", code="EXPIRED")
        message, code = "the task failed", None
        try:
            err = (await self._http.get(f"{self._ref_url(ref)}/tasks/{ref.task_id}/error")).json()
            detail = err.get("task_error") if isinstance(err, dict) else None
            if isinstance(detail, dict):
                message = str(detail.get("error_message") or message)
                code = None if detail.get("error_code") is None else str(detail["error_code"])
        except NotFoundError:
            pass
        return Observation(state, vendor, message=message, code=code)

    async def status(self, ref: RunRef) -> Observation:
        body = (await self._http.get(f"{self._ref_url(ref)}/tasks/{ref.task_id}/status")).json()
        vendor = body.get("status") if isinstance(body, dict) else None
        if not isinstance(vendor, str):
            raise ProtocolError(f"OQC QCaaS answered a status read without a status: {body!r:.200}")
        return await self._observation(ref, vendor)

    async def statuses(self, refs: Sequence[RunRef]) -> dict[str, Observation | BaseException]:
        """Several tasks of one QPU in one request (the QPU's task list); the rest one by one."""
        out: dict[str, Observation | BaseException] = {}
        alone: list[RunRef] = []
        # Runs are grouped by the two extras their QPU's URL follows from (a composite's runs share
        # them, and usually one submission time); URLs and times are worked out once per group.
        keyed: dict[tuple[str, str], tuple[list[RunRef], set[str]]] = {}
        if self._task_list_usable:
            # The runs of one submission share one extra (one mapping), and come in a row: each
            # row is grouped in one step (groupby compares the mappings, in C).
            for extra, row in itertools.groupby(refs, key=_EXTRA):
                raw = extra.get("submitted_at")
                if not raw:
                    alone.extend(row)
                    continue
                key = (extra.get("qpu_id", ""), extra.get("qpu_url", ""))
                entry = keyed.get(key)
                if entry is None:
                    keyed[key] = (list(row), {raw})
                else:
                    entry[0].extend(row)
                    entry[1].add(raw)
        else:
            alone.extend(refs)
        by_url: dict[str, list[RunRef]] = {}
        earliest: dict[str, datetime] = {}  # per QPU: the first submission among its runs
        for members, raws in keyed.values():
            moments = {raw: _parse_moment(raw) for raw in raws}
            if None in moments.values():  # an unreadable submission time: those runs one by one
                alone.extend(ref for ref in members if moments[ref.extra["submitted_at"]] is None)
                members = [ref for ref in members if moments[ref.extra["submitted_at"]] is not None]
                if not members:
                    continue
            first = min(moment for moment in moments.values() if moment is not None)
            url = self._ref_url(members[0])
            if url in by_url:
                by_url[url].extend(members)
                earliest[url] = min(earliest[url], first)
            else:
                by_url[url] = members
                earliest[url] = first
        for url, group in by_url.items():
            if len(group) < 2 or not self._task_list_usable:
                alone.extend(group)
                continue
            try:
                listed = await self._task_list(url, earliest[url])
            except BackendError as exc:
                if exc.transient or isinstance(exc, AuthenticationError):
                    out.update({ref.task_id: exc for ref in group})
                elif exc.rereadable:  # a garbled answer: this time, one by one
                    alone.extend(group)
                else:  # refused: this server has no such list
                    self._stop_task_list(url, exc)
                    alone.extend(group)
                continue
            if listed is None:
                self._stop_task_list(url, "an answer of unknown shape")
                alone.extend(group)
                continue
            # The usual read (thousands of tasks, each listed with a status that needs nothing
            # more) is looked up in C; the few others are handled after, one by one.
            ids = list(map(_TASK_ID, group))
            plain_of: Callable[[Any], Observation | None] = _PLAIN_OBSERVATION.get
            plain: list[Observation | None]
            try:
                plain = list(map(plain_of, map(listed.get, ids)))
            except TypeError:  # a status that is not even hashable: every one looked at below
                plain = [None] * len(ids)
            # (the None entries are replaced or removed just below)
            out.update(zip(ids, cast("list[Observation]", plain), strict=True))
            for ref in itertools.compress(group, map(operator.not_, plain)):
                task_id = ref.task_id
                vendor = listed.get(task_id)
                if type(vendor) is not str:  # not listed, or listed without a readable status
                    del out[task_id]
                    alone.append(ref)
                    continue
                try:
                    out[task_id] = await self._observation(ref, vendor)
                except Exception as exc:  # handed to the job that asked, typed
                    out[task_id] = exc
        if alone:
            out.update(await super().statuses(alone))
        return out

    def _stop_task_list(self, url: str, why: object) -> None:
        logger.info("OQC: the task list of %s is not usable (%s); reading tasks one by one", url, why)
        self._task_list_usable = False

    async def _task_list(self, qpu_url: str, earliest: datetime) -> dict[Any, Any] | None:
        """``{task_id: status}`` from the QPU's task list since ``earliest`` (minus slack); None
        if the answer is JSON of a shape this backend does not know."""
        since = earliest - LIST_WINDOW_SLACK
        response = await self._http.get(
            f"{qpu_url}/tasks",
            params={"start_date": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")},
        )
        body = response.json()
        if not isinstance(body, list):
            return None
        try:  # the usual answer: every item a task with an id and a status (checked when looked up)
            return dict(map(_ID_AND_STATUS, body))
        except (TypeError, KeyError):
            pass
        return {
            item["task_id"]: item["status"]
            for item in body
            if isinstance(item, dict)
            and isinstance(item.get("task_id"), str)
            and isinstance(item.get("status"), str)
        }

    # ------------------------------------------------------------------ finding tasks
    def check_task_id(self, task_id: str) -> None:
        """OQC task ids are UUIDs."""
        try:
            uuid.UUID(task_id)
        except (ValueError, TypeError, AttributeError):
            raise JobValidationError(f"{task_id!r} is not an OQC task id (a UUID)") from None

    def _found(
        self, qpu_id: str, task_id: str, observation: Observation, item: Mapping[str, Any]
    ) -> FoundRun:
        """A task as its listing or ``all_info`` tells it. OQC's API never returns a task's program."""
        metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else item
        assert isinstance(metadata, Mapping)
        config: dict[str, Any] = {}
        raw = metadata.get("config")
        if isinstance(raw, str) and raw:
            shots = _repeats(raw)
            # The config this SDK sends for a shot count reads back as that count; any other is kept.
            config = {"shots": shots} if shots and raw == compiler_config(shots) else {"compiler_config": raw}
        tag = item.get("tag", metadata.get("tag"))
        created = _parse_listed_moment(metadata.get("created_at"))
        extra = {"qpu_id": qpu_id, "qpu_url": self._qpu_url(qpu_id)}
        if created is not None:
            extra["submitted_at"] = created.isoformat(timespec="seconds")
        return FoundRun(
            ref=RunRef(task_id=task_id, extra=extra),
            observation=observation,
            spec=RunSpec(program=None, target=qpu_id, config=config, tag=tag or None),
            created_at=created,
            unknown_program="OQC's task API does not return a task's program",
        )

    async def find_run(self, task_id: str) -> FoundRun:
        """``GET {qpu_url}/tasks/{id}/all_info`` on each QPU's URL until one knows the task."""
        if not self._qpus:
            await self._refresh_qpus()
        for qpu_id in self._qpus:
            url = self._qpu_url(qpu_id)
            try:
                info = (await self._http.get(f"{url}/tasks/{task_id}/all_info")).json()
            except NotFoundError:
                continue
            if not isinstance(info, dict) or not isinstance(info.get("status"), str):
                raise ProtocolError(f"OQC QCaaS answered all_info of {task_id} without a status")
            ref = RunRef(task_id, {"qpu_id": qpu_id, "qpu_url": url})
            return self._found(qpu_id, task_id, await self._observation(ref, info["status"]), info)
        raise JobNotFoundError(task_id, self.name, f"no QPU of {self.url} knows it")

    async def list_runs(self, query: RunQuery) -> AsyncIterator[FoundRun]:
        """Each QPU's task list, ``page``/``per_page`` newest first, merged across QPUs."""
        from ..finding import merge_newest

        if not self._qpus:
            await self._refresh_qpus()
        qpus = [query.target] if query.target is not None else list(self._qpus)
        if query.target is not None and self._qpus and query.target not in self._qpus:
            raise UnknownTargetError(query.target, sorted(self._qpus))
        async for found in merge_newest([self._qpu_tasks(qpu_id, query) for qpu_id in qpus]):
            yield found

    async def _qpu_tasks(self, qpu_id: str, query: RunQuery) -> AsyncIterator[FoundRun]:
        url = self._qpu_url(qpu_id)
        per_page = min(query.page_size, 1000)
        params: dict[str, str | int] = {"per_page": per_page}
        if query.since is not None:
            params["start_date"] = query.since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        seen: set[str] = set()
        page = 1
        while True:
            body = (await self._http.get(f"{url}/tasks", params={**params, "page": page})).json()
            if not isinstance(body, list):
                raise ProtocolError(f"OQC QCaaS answered the task list of {qpu_id} without a list")
            items = [i for i in body if isinstance(i, dict) and isinstance(i.get("task_id"), str)]
            fresh = [i for i in items if i["task_id"] not in seen]
            if len(items) > per_page:  # a server that does not page: its whole list, oldest first
                fresh.sort(key=lambda i: _parse_listed_moment(i.get("created_at")) or _EPOCH, reverse=True)
            for item in fresh:
                seen.add(item["task_id"])
                vendor = item.get("status")
                if vendor == "CREATED" or not isinstance(vendor, str):
                    continue  # a reserved id never submitted is no job
                observation = _PLAIN_OBSERVATION.get(vendor) or Observation(
                    OQC_STATUS.get(vendor, JobState.SUBMITTED), vendor
                )
                yield self._found(qpu_id, item["task_id"], observation, item)
            if len(items) != per_page or not fresh:
                return
            page += 1

    async def cancel(self, ref: RunRef, reason: str | None = None) -> None:
        await self.cancel_many([ref], reason)

    async def cancel_many(self, refs: Sequence[RunRef], reason: str | None = None) -> None:
        """One ``cancel_many`` request per QPU for all of ``refs``."""
        by_url: dict[str, list[str]] = {}
        for ref in refs:
            by_url.setdefault(self._ref_url(ref), []).append(ref.task_id)
        for url, ids in by_url.items():
            await self._http.post(f"{url}/tasks/cancel_many", json={"tasks": ids}, idempotent=True)
            for task_id in ids:  # read them soon: the confirmation should not wait out a long interval
                self._notify_change(task_id)

    async def result(self, ref: RunRef, spec: RunSpec) -> Any:
        body = (await self._http.get(f"{self._ref_url(ref)}/tasks/{ref.task_id}/results")).json()
        if not isinstance(body, dict) or body.get("results") is None:
            raise ProtocolError(f"OQC QCaaS has no results for completed task {ref.task_id}")
        return body["results"]

    async def diagnostics(self, ref: RunRef, spec: RunSpec) -> Diagnostics:
        base = f"{self._ref_url(ref)}/tasks/{ref.task_id}"
        parts: dict[str, dict[str, Any] | None] = {}
        for name, path in (
            ("timings", "timings"),
            ("metrics", "execution_metadata"),
            ("metadata", "metadata"),
        ):
            try:
                body = (await self._http.get(f"{base}/{path}")).json()
            except Exception as exc:  # each part is independent; a missing one stays None
                logger.debug("OQC %s of %s unavailable: %s", path, ref.task_id, exc)
                parts[name] = None
                continue
            value = body.get(path, body) if isinstance(body, dict) else None
            parts[name] = value if isinstance(value, dict) else None
        return Diagnostics(**parts)


async def _openqasm(programs: list[Any]) -> tuple[list[str], dict[int, JobValidationError]]:
    """Each program as the OpenQASM text OQC takes (circuits written off the event loop, each
    object once), and by index the error of each circuit that cannot be written as OpenQASM."""
    if not any(is_circuit(program) for program in programs):
        return programs, {}
    await qiskit_imported()
    return await anyio.to_thread.run_sync(_write_openqasm, programs, abandon_on_cancel=True)


def _write_openqasm(programs: list[Any]) -> tuple[list[str], dict[int, JobValidationError]]:
    written: dict[int, str | JobValidationError] = {}
    texts: list[str] = []
    unwritable: dict[int, JobValidationError] = {}
    for i, program in enumerate(programs):
        text = written.get(id(program))
        if text is None:
            try:
                text = written[id(program)] = as_openqasm(program)
            except JobValidationError as exc:  # the circuit's fault: its job fails, nothing is sent
                text = written[id(program)] = exc
        if isinstance(text, JobValidationError):
            unwritable[i] = text
            text = ""
        texts.append(text)
    return texts, unwritable


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _parse_listed_moment(raw: object) -> datetime | None:
    """A listed ``created_at``: Flask's HTTP date (``Wed, 12 Jun 2024 20:11:15 GMT``) or ISO 8601."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return _parse_moment(raw)


def _repeats(config: str) -> int | None:
    """The shots of a CompilerConfig JSON string (``$data.repeats``), if it says."""
    try:
        data = json.loads(config)
    except ValueError:
        return None
    inner = data.get("$data") if isinstance(data, dict) else None
    repeats = inner.get("repeats") if isinstance(inner, dict) else None
    return repeats if isinstance(repeats, int) and not isinstance(repeats, bool) else None


@functools.lru_cache(maxsize=4096)  # a batch shares one moment; each poll tick asks again
def _parse_moment(raw: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _too_large(program_bytes: int, request: int | None = None) -> str:
    """Why a program is too large for OQC (``request``: its task's encoded size, if known)."""
    sized = f"; its task, JSON-encoded with its config and tag, is {request:,} bytes" if request else ""
    return (
        f"the program is {program_bytes:,} bytes{sized}: OQC takes no request over "
        f"{MAX_REQUEST_BYTES:,} bytes (128 KiB, headers included), so a task's body is limited to "
        f"{MAX_BODY_BYTES:,} bytes; split or shorten the program"
    )


def _as_oqc_sees_it(exc: BackendError) -> BackendError:
    """A failure as OQC's own client reads it: 408, 409, 429 and 5xx are "try again later", never a
    refusal — a 409 answering a resend may mean the task is already there."""
    if exc.status in TRY_AGAIN_STATUSES:
        exc.transient = True
    return exc
