"""An emulator of the Azure Quantum workspace data plane, with the blob storage behind its SAS URLs.

See :class:`AzureQuantumEmulator` for every endpoint and every choice made where the service's
behaviour is not documented (``VENDORS.md`` §2 lists what is known; the rest is marked "emulator
choice"). Jobs run on the embedded simulator, so IonQ and Quantinuum targets give real results in
each provider's output format.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal
from urllib.parse import quote_plus, urlencode, urlsplit

from aiohttp import web
from anyio.abc import TaskGroup

from ..backends.azure_quantum import DOCUMENTED_STATUSES
from ..backends.base import Observation, RunRef, RunSpec
from ..backends.local import MAX_SHOTS, SIMULATOR_TARGET, LocalBackend
from ..exceptions import ConfigurationError, JobValidationError
from ..state import JobState
from .emulator import ApiError, Emulator, duration_option

__all__ = [
    "ACTIVE_STATUSES",
    "CANCEL_WITH_POST_SINCE",
    "DEFAULT_PROVIDERS",
    "DEFAULT_RESOURCE_GROUP",
    "DEFAULT_SUBSCRIPTION_ID",
    "DEFAULT_WORKSPACE",
    "JOB_STATUSES",
    "STORAGE_ACCOUNT",
    "TERMINAL_STATUSES",
    "AzureQuantumEmulator",
    "EmulatedProvider",
    "EmulatedTarget",
    "ReportedStatus",
    "ionq_to_qasm",
    "parse_filter",
]

#: The official examples' workspace (so their parameters replay unchanged).
DEFAULT_SUBSCRIPTION_ID: Final = "00000000-0000-0000-0000-000000000001"
DEFAULT_RESOURCE_GROUP: Final = "my-resource-group"
DEFAULT_WORKSPACE: Final = "my-workspace"
#: The storage account of the emulated blob service (path-style URLs, as Azurite serves them).
STORAGE_ACCOUNT: Final = "devstoreaccount1"
#: The SAS ``sv`` the emulator signs with (the examples' value).
SAS_VERSION: Final = "2019-02-02"

#: Every documented ``JobStatus``.
JOB_STATUSES: Final = DOCUMENTED_STATUSES
TERMINAL_STATUSES: Final = frozenset({"Completed", "Succeeded", "Failed", "Cancelled"})
ACTIVE_STATUSES: Final = frozenset(JOB_STATUSES) - TERMINAL_STATUSES
#: From this api-version on ``POST …:cancel`` exists and ``DELETE`` deletes; before it ``DELETE`` cancels.
CANCEL_WITH_POST_SINCE: Final = date(2025, 12, 1)
#: From this api-version on ``storage/sasUri`` creates a missing container.
SAS_CREATES_CONTAINER_SINCE: Final = date(2026, 1, 15)

_WS: Final = (
    "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Quantum/workspaces/{workspace}"
)
_JOB_ID = re.compile(r"^[a-fA-F0-9]{8}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{12}$")
_API_VERSION = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(-preview)?$")
#: JobDetails fields a client sets at creation (everything else in a PUT body is read-only: ignored).
_CREATE_FIELDS: Final = (
    "id",
    "name",
    "itemType",
    "jobType",
    "sessionId",
    "providerId",
    "target",
    "containerUri",
    "inputDataUri",
    "inputDataFormat",
    "inputParams",
    "outputDataUri",
    "outputDataFormat",
    "metadata",
    "priority",
    "tags",
)
_ERROR_CODES: Final = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    408: "RequestTimeout",
    409: "Conflict",
    413: "RequestEntityTooLarge",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
_ENGINE_STATUS: Final[Mapping[JobState, str]] = {
    JobState.CREATED: "Waiting",
    JobState.SUBMITTED: "Waiting",
    JobState.RUNNING: "Executing",
    JobState.COMPLETED: "Succeeded",
    JobState.FAILED: "Failed",
    JobState.CANCELLED: "Cancelled",
}


@dataclass(frozen=True, slots=True)
class EmulatedTarget:
    """One target of ``providerStatus``."""

    id: str
    num_qubits: int
    availability: str = "Available"
    average_queue_time: int = 0
    target_profile: str | None = None


@dataclass(frozen=True, slots=True)
class EmulatedProvider:
    """One provider: its targets and the formats it takes and gives. ``runs`` is how the emulator
    runs its jobs: ``"ionq"``, ``"quantinuum"``, or None (jobs are accepted, then fail)."""

    id: str
    targets: tuple[EmulatedTarget, ...]
    input_formats: tuple[str, ...]
    output_format: str
    runs: Literal["ionq", "quantinuum"] | None = None
    availability: str = "Available"


#: The providers the emulator lists unless given others.
DEFAULT_PROVIDERS: Final = (
    EmulatedProvider(
        "ionq",
        (
            EmulatedTarget("ionq.simulator", 29),
            EmulatedTarget("ionq.qpu.aria-1", 25, average_queue_time=3600),
            EmulatedTarget("ionq.qpu.forte-1", 36, average_queue_time=7200),
        ),
        ("ionq.circuit.v1",),
        "ionq.quantum-results.v1",
        runs="ionq",
    ),
    EmulatedProvider(
        "quantinuum",
        (
            EmulatedTarget("quantinuum.sim.h1-1sc", 20),
            EmulatedTarget("quantinuum.sim.h1-1e", 20, average_queue_time=60),
            EmulatedTarget("quantinuum.qpu.h1-1", 20, average_queue_time=86400),
            EmulatedTarget("quantinuum.sim.h2-1sc", 56),
            EmulatedTarget("quantinuum.sim.h2-1e", 56, average_queue_time=60),
            EmulatedTarget("quantinuum.qpu.h2-1", 56, average_queue_time=86400),
        ),
        ("honeywell.openqasm.v1",),
        "honeywell.quantum-results.v1",
        runs="quantinuum",
    ),
    EmulatedProvider(
        "microsoft-qc",
        (EmulatedTarget("microsoft.estimator", 100000),),
        ("qir.v1",),
        "microsoft.resource-estimates.v1",
    ),
)


@dataclass(frozen=True, slots=True)
class ReportedStatus:
    """One job status the emulator sent: by which operation (``create``, ``get``, ``list``,
    ``cancel``), for which job, which status."""

    operation: str
    job_id: str
    status: str


@dataclass(slots=True, eq=False)
class _Job:
    id: str
    request: dict[str, Any]
    provider: EmulatedProvider
    target: str
    output_format: str
    output_uri: str
    created_by_type: str
    creation_time: datetime
    since: float
    shots: int
    output_blob: tuple[str, str] | None = None
    kind: Literal["ionq", "quantinuum"] | None = None
    zero_results: bool = False
    spec: RunSpec | None = None
    ref: RunRef | None = None
    #: errorData of an input the provider refuses: the job fails once ``job_duration_s`` has passed.
    rejection: dict[str, str] | None = None
    forced: str | None = None
    forced_error: dict[str, str] | None = None
    cancel_requested: bool = False
    cancel_reads: int = 0
    begin: datetime | None = None
    end: datetime | None = None
    cancelled_at: datetime | None = None
    last_status: str | None = None
    last_updated: datetime | None = None
    output_written: bool = False
    deleted: bool = False


@dataclass(slots=True)
class _Blob:
    data: bytes
    content_type: str
    etag: str = field(default_factory=lambda: f'"0x{secrets.token_hex(8).upper()}"')


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _azure_time(moment: datetime) -> str:
    """``2020-09-30T23:57:02.3737928+00:00``: seven fractional digits, as the service writes times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0+00:00"


def _parse_time(text: str) -> datetime:
    value = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _error(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, message, headers={"x-ms-error-code": code})


# --------------------------------------------------------------------------------------------------
# IonQ input


_IONQ_QASM: Final = {
    "x": "x",
    "not": "x",
    "cnot": "x",
    "y": "y",
    "z": "z",
    "h": "h",
    "s": "s",
    "si": "sdg",
    "t": "t",
    "ti": "tdg",
    "v": "sx",
    "vi": "sxdg",
    "rx": "rx",
    "ry": "ry",
    "rz": "rz",
    "swap": "swap",
}
_CONTROLLED: Final = {
    "x": "cx",
    "y": "cy",
    "z": "cz",
    "h": "ch",
    "rx": "crx",
    "ry": "cry",
    "rz": "crz",
    "swap": "cswap",
}
#: qiskit's OpenQASM 2 reader (and the simulator's) knows the paper's qelib1 only: no sx/sxdg (√X is
#: H·S·H, √X† is H·S†·H, written inline), and no swap, cswap, crx, cry (defined in the program).
_SQRT_X: Final = {"sx": ("h", "s", "h"), "sxdg": ("h", "sdg", "h")}
_DEFINITIONS: Final = {
    "swap": "gate swap a,b { cx a,b; cx b,a; cx a,b; }",
    "cswap": "gate cswap a,b,c { cx c,b; ccx a,b,c; cx c,b; }",
    "crx": "gate crx(t) a,b { u1(pi/2) b; cx a,b; u3(-t/2,0,0) b; cx a,b; u3(t/2,-pi/2,0) b; }",
    "cry": "gate cry(t) a,b { ry(t/2) b; cx a,b; ry(-t/2) b; cx a,b; }",
}


def ionq_to_qasm(payload: Any, *, max_qubits: int | None = None) -> tuple[str, int]:
    """An IonQ ``qis`` circuit (``ionq.circuit.v1``) as OpenQASM 2 measuring every qubit into ``c``.

    Accepts ``targets``/``controls`` lists and the older ``target``/``control`` ints; single-qubit
    gates apply to each target; one control makes the controlled gate, two controls on ``x`` a
    Toffoli. Raises ValueError (its message is the job's errorData) for anything else.
    """
    if not isinstance(payload, dict):
        raise ValueError("the input is not a JSON object")
    gateset = payload.get("gateset", "qis")
    if gateset != "qis":
        raise ValueError(f"gateset {gateset!r} is not emulated (only 'qis')")
    n = payload.get("qubits")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError("'qubits' must be a positive integer")
    if max_qubits is not None and n > max_qubits:
        raise ValueError(f"the circuit uses {n} qubits; the target has {max_qubits}")
    circuit = payload.get("circuit")
    if not isinstance(circuit, list):
        raise ValueError("'circuit' must be a list of gates")
    lines: list[str] = []
    defined: list[str] = []

    def qubit_list(gate: Mapping[str, Any], many: str, one: str) -> list[int]:
        raw = gate.get(many, [gate[one]] if one in gate else [])
        if not isinstance(raw, list) or not all(
            isinstance(q, int) and not isinstance(q, bool) and 0 <= q < n for q in raw
        ):
            raise ValueError(f"{many} must be qubit indices from 0 to {n - 1}")
        return raw

    for index, gate in enumerate(circuit):
        if not isinstance(gate, dict) or not isinstance(gate.get("gate"), str):
            raise ValueError(f"circuit[{index}] is not a gate object")
        name = gate["gate"].lower()
        if name not in _IONQ_QASM:
            raise ValueError(f"circuit[{index}]: unknown gate {gate['gate']!r}")
        targets = qubit_list(gate, "targets", "target")
        controls = qubit_list(gate, "controls", "control")
        if not targets or set(targets) & set(controls):
            raise ValueError(f"circuit[{index}]: a gate needs targets distinct from its controls")
        base = _IONQ_QASM[name]
        args = ""
        if base in ("rx", "ry", "rz"):
            rotation = gate.get("rotation")
            if isinstance(rotation, bool) or not isinstance(rotation, int | float):
                raise ValueError(f"circuit[{index}]: {name} needs a numeric 'rotation' (radians)")
            args = f"({float(rotation)!r})"
        if name == "cnot" and not controls:
            raise ValueError(f"circuit[{index}]: cnot needs a control")
        if base == "swap" and len(targets) != 2:
            raise ValueError(f"circuit[{index}]: swap needs exactly two targets")
        if not controls:
            if base == "swap":
                defined.append("swap")
                lines.append(f"swap q[{targets[0]}],q[{targets[1]}];")
                continue
            for t in targets:
                lines.extend(f"{part} q[{t}];" for part in _SQRT_X.get(base, (f"{base}{args}",)))
            continue
        operands = [*controls, *targets]
        if len(controls) == 1 and base in _CONTROLLED and (base == "swap" or len(targets) == 1):
            defined.append(_CONTROLLED[base])
            lines.append(f"{_CONTROLLED[base]}{args} " + ",".join(f"q[{q}]" for q in operands) + ";")
        elif len(controls) == 2 and base == "x" and len(targets) == 1:
            lines.append("ccx " + ",".join(f"q[{q}]" for q in operands) + ";")
        else:
            raise ValueError(f"circuit[{index}]: {len(controls)}-controlled {name} is not emulated")
    header = ["OPENQASM 2.0;", 'include "qelib1.inc";']
    header += [_DEFINITIONS[name] for name in _DEFINITIONS if name in defined]
    header += [f"qreg q[{n}];", f"creg c[{n}];"]
    return "\n".join([*header, *lines, "measure q -> c;"]) + "\n", n


# --------------------------------------------------------------------------------------------------
# $filter and $orderby (a subset of OData: the grammar is not documented — emulator choice)


_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<open>\()|(?P<close>\))|(?P<comma>,)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9A-Za-z_.:+\-]*))"
)
_OPERATORS: Final = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
_FUNCTIONS: Final = frozenset({"startswith", "endswith", "contains"})
#: Fields a filter or an orderby may name (lower case) → the record key.
_FIELDS: Final = {
    "id": "id",
    "name": "name",
    "providerid": "providerid",
    "target": "target",
    "state": "status",
    "status": "status",
    "itemtype": "itemtype",
    "jobtype": "jobtype",
    "sessionid": "sessionid",
    "creationtime": "creationtime",
}

Record = Mapping[str, Any]
Predicate = Callable[[Record], bool]


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ValueError(f"unexpected text at position {position}: {text[position : position + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        position = match.end()
    return out


def _compare(left: Any, op: str, literal: tuple[str, str]) -> bool:
    kind, raw = literal
    if left is None:
        return op == "ne"
    if isinstance(left, datetime):
        try:
            right: Any = _parse_time(raw.strip("'"))
        except ValueError:
            raise ValueError(f"{raw!r} is not a date-time") from None
        value: Any = left
    else:
        if kind != "string":
            raise ValueError(f"compare text fields with a quoted string, not {raw!r}")
        value, right = str(left).lower(), raw[1:-1].replace("''", "'").lower()
    return bool(
        {
            "eq": value == right,
            "ne": value != right,
            "gt": value > right,
            "ge": value >= right,
            "lt": value < right,
            "le": value <= right,
        }[op]
    )


def parse_filter(text: str) -> Predicate:
    """A predicate over job records from an OData-style ``filter``: ``Field op literal`` (op one of
    eq ne gt ge lt le; text compared case-insensitively, ``CreationTime`` as a date-time),
    ``startswith|endswith|contains(Field, 'text')``, ``not``, ``and``, ``or`` and parentheses.
    Fields: Id, Name, ProviderId, Target, State (or Status), ItemType, JobType, SessionId,
    CreationTime. Raises ValueError for anything else."""
    tokens = _tokens(text)
    position = 0

    def peek() -> tuple[str, str] | None:
        return tokens[position] if position < len(tokens) else None

    def take(kind: str | None = None, word: str | None = None) -> tuple[str, str]:
        nonlocal position
        token = peek()
        if token is None or (kind and token[0] != kind) or (word and token[1].lower() != word):
            raise ValueError(f"expected {word or kind} at token {position + 1}")
        position += 1
        return token

    def field_key(raw: str) -> str:
        key = _FIELDS.get(raw.lower())
        if key is None:
            raise ValueError(f"unknown field {raw!r}")
        return key

    def primary() -> Predicate:
        token = peek()
        if token is None:
            raise ValueError("the filter ends too early")
        if token[0] == "open":
            take("open")
            inner = disjunction()
            take("close")
            return inner
        word = take("word")[1]
        if word.lower() == "not":
            negated = primary()
            return lambda record: not negated(record)
        if word.lower() in _FUNCTIONS:
            function = word.lower()
            take("open")
            key = field_key(take("word")[1])
            take("comma")
            literal = take("string")[1][1:-1].replace("''", "'").lower()
            take("close")

            def call(record: Record) -> bool:
                value = str(record.get(key) or "").lower()
                if function == "startswith":
                    return value.startswith(literal)
                if function == "endswith":
                    return value.endswith(literal)
                return literal in value

            return call
        key = field_key(word)
        op = take("word")[1].lower()
        if op not in _OPERATORS:
            raise ValueError(f"unknown operator {op!r}")
        operand = take()
        if operand[0] not in ("string", "word"):
            raise ValueError(f"{op} needs a value")
        return lambda record: _compare(record.get(key), op, operand)

    def conjunction() -> Predicate:
        parts = [primary()]
        while (token := peek()) is not None and token[0] == "word" and token[1].lower() == "and":
            take()
            parts.append(primary())
        return lambda record: all(part(record) for part in parts)

    def disjunction() -> Predicate:
        parts = [conjunction()]
        while (token := peek()) is not None and token[0] == "word" and token[1].lower() == "or":
            take()
            parts.append(conjunction())
        return lambda record: any(part(record) for part in parts)

    predicate = disjunction()
    if position != len(tokens):
        raise ValueError(f"unexpected {tokens[position][1]!r} at token {position + 1}")
    return predicate


def _order_key(orderby: str) -> list[tuple[str, bool]]:
    keys: list[tuple[str, bool]] = []
    for part in orderby.split(","):
        words = part.split()
        if not words or len(words) > 2:
            raise ValueError(f"cannot order by {part.strip()!r}")
        direction = words[1].lower() if len(words) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise ValueError(f"order direction must be asc or desc, not {words[1]!r}")
        key = _FIELDS.get(words[0].lower())
        if key is None:
            raise ValueError(f"cannot order by {words[0]!r}")
        keys.append((key, direction == "desc"))
    return keys


# --------------------------------------------------------------------------------------------------
# The emulator


class AzureQuantumEmulator(Emulator):
    """The Azure Quantum workspace data plane (api-version ``2026-01-15-preview`` and older) on
    127.0.0.1, with an emulated blob service for its SAS URLs; jobs run on the embedded simulator.

    :param subscription_id, resource_group, workspace: the one workspace served (default: the
        official examples' ``00000000-0000-0000-0000-000000000001`` / ``my-resource-group`` /
        ``my-workspace``, so the examples replay unchanged); another workspace path → 404
        ``WorkspaceNotFound``.
    :param token: the bearer token accepted in ``Authorization`` (default random).
    :param api_key: the key accepted in ``x-ms-quantum-api-key`` (default random).
    :param principal: ``createdBy`` of jobs created with the token (default ``user1@example.com``).
    :param providers: the providers and targets (default :data:`DEFAULT_PROVIDERS`: IonQ and
        Quantinuum, which run, and ``microsoft-qc``, whose jobs are accepted then fail).
    :param cancel_progression: statuses a job reports after a cancel request before
        ``Cancelled``, one per read (default none: ``Cancelled`` at once, as the official example).
        E.g. ``("CancellationRequested", "Cancelling")``.
    :param cancel_response: ``"details"`` (default): ``POST …:cancel`` answers 200 JobDetails, as
        the spec says; ``"no_content"``: 204, as azure-quantum says the live service does.
    :param page_size: the most jobs one list page holds (more → ``nextLink``).
    :param sas_ttl_s: how long SAS URLs it hands out stay valid (default one day; wall clock).
    :param max_concurrency, seed: the simulator's.
    Other keyword options (``job_duration_s``, ``latency_s``, ``max_lifetime_s``, ``clock``,
    ``port`` ...) are the kit's.

    Authentication
        Every workspace request needs ``Authorization: Bearer <token>`` or
        ``x-ms-quantum-api-key: <api_key>``; missing or wrong → 401 ``Unauthorized``. Blob
        requests are authorized by their SAS alone (below).

    Errors
        ``{"error": {"code", "message"}}`` with the code also in ``x-ms-error-code`` (the spec's
        ``Azure.Core.Foundations.ErrorResponse``); codes are emulator choices where the service's
        are unknown. Every request needs ``api-version`` (missing → 400
        ``MissingApiVersionParameter``, not ``YYYY-MM-DD[-preview]`` → 400
        ``InvalidApiVersionParameter``).

    Workspace endpoints (under :attr:`workspace_path`, ``/subscriptions/{s}/resourceGroups/{g}/
    providers/Microsoft.Quantum/workspaces/{w}``)
        ``POST /storage/sasUri`` ``{"containerName", "blobName"?}`` → 200 ``{"sasUri"}``: a
        container SAS URL (``sr=c``), or a blob one (``sr=b``) when ``blobName`` is given, with
        ``sp=rcw``. From api-version 2026-01-15-preview the container is created if missing; before
        it the client creates it (``PUT {container}?restype=container``).
        ``PUT /jobs/{jobId}`` JobDetails → 201 JobDetails (status ``Waiting``). Required: ``id``
        (equal to the path's, a GUID), ``name``, ``providerId``, ``target``, ``itemType``
        (``Job``), ``containerUri``; an unknown provider or target, an input format the provider
        does not take or an output format it does not give → 400. Read-only fields in the body are
        ignored. The same id again with the same create-time fields (URIs compared without their
        SAS query) → 200 with the existing job, nothing new is run: a create retried after a lost
        answer makes one job. Different fields → 409 ``JobAlreadyExists`` (emulator choice).
        ``outputDataUri`` defaults to the container's ``rawOutputData`` blob with the container's
        SAS, ``outputDataFormat`` to the provider's. The input is read from ``inputDataUri`` (else
        the container's ``inputData``); input the provider cannot run (a missing blob, bad IonQ
        JSON, bad ``inputParams.shots``/``count``, a provider not emulated) is accepted, and the
        job then fails (``errorData`` ``InvalidInputData`` / ``UnsupportedProvider``) once
        ``job_duration_s`` has passed.
        ``GET /jobs/{jobId}`` → 200 JobDetails; unknown → 404 ``JobNotFound``.
        ``GET /jobs?filter&skip&top&orderby`` → ``{"value": [JobDetails], "nextLink"?}``, oldest
        first unless ordered; at most ``page_size`` a page; ``top`` caps the total. ``filter`` is
        an OData subset (:func:`parse_filter`), ``orderby`` ``Field [asc|desc], ...``: both
        emulator choices (the grammar is undocumented); a bad one → 400 ``InvalidFilter``.
        ``POST /jobs/{jobId}:cancel`` (api-version ≥ 2025-12-01-preview; older → 400
        ``UnsupportedApiVersion``) → 200 JobDetails (or 204, ``cancel_response``); the job walks
        ``cancel_progression`` then ends ``Cancelled`` (its run stops at once). An ended job → 409
        ``InvalidJobState`` (undocumented: emulator choice). Cancelling again changes nothing.
        ``DELETE /jobs/{jobId}`` → 204: before 2025-12-01-preview it is the cancellation (as
        above, 409 for an ended job); from it on it deletes the job (its run stops; reads → 404).
        ``GET /providerStatus`` → ``{"value": [ProviderStatus]}``.
        JobDetails carry the create-time fields as sent, ``status``, ``creationTime``,
        ``createdBy``/``createdByType`` (``User`` with a token, ``Key`` with the API key),
        ``lastUpdatedTime``, ``beginExecutionTime``/``endExecutionTime``/``cancellationTime`` once
        known, ``errorData`` when Failed. Fields without a value are left out (the spec's
        definitions do not allow null).

    Statuses
        ``Waiting`` (queued in the simulator) → ``Executing`` → ``Succeeded`` | ``Failed``;
        ``Cancelled`` after a cancel (through ``cancel_progression``). Every documented status
        (and, with ``undocumented=True``, any other) can be forced with :meth:`set_status`.

    Outputs
        When a run succeeds the provider's output is written to the job's ``outputDataUri`` blob:
        IonQ ``{"histogram": {"<state>": probability}}`` (the state's bit q is qubit q; the
        probabilities are the sampled frequencies, so ``probability × shots`` gives the counts back);
        Quantinuum ``{"<register>": ["<bits>", ...]}``, one bitstring per shot, highest bit first.
        The simulator returns counts per register, so the per-shot lists of different registers are
        paired arbitrarily (only per-register counts are meaningful). Quantinuum's syntax checkers
        (targets ending ``sc``) return all zeros, as the real ones do.

    Blob storage (``{base_url}/devstoreaccount1/{container}/{blob}``, path style)
        ``PUT`` with ``x-ms-blob-type: BlockBlob`` → 201 (missing header → 400
        ``MissingRequiredHeader``; no container → 404 ``ContainerNotFound``); ``GET``/``HEAD`` →
        200 (unknown → 404 ``BlobNotFound``); ``PUT {container}?restype=container`` → 201 (exists:
        409 ``ContainerAlreadyExists``). Each needs a SAS signed by the emulator (``sv``, ``sr``,
        ``sp``, ``se``, ``sig``) covering the container or the blob, unexpired (wall clock), with
        the permission (``r`` to read, ``c`` or ``w`` to write); else 403 ``AuthenticationFailed``
        or ``AuthorizationPermissionMismatch``. Storage errors are Azure Storage's XML
        ``<Error><Code/><Message/></Error>`` with ``x-ms-error-code``.

    Knobs (besides the kit's)
        ``await set_status(job_id, status, error_code=..., error_message=...)`` (None: back to the
        simulator's status; a forced Failed/Cancelled stops the run, a forced success lets it
        finish and write its output); ``await status_of(job_id)`` (reads without advancing a
        cancel); ``reported``: every status sent, as :class:`ReportedStatus`; ``engine_runs``;
        ``job_ids``; ``blob(container, name)``; ``token``, ``api_key``, ``credentials``, ``env``.
    """

    vendor = "azure_quantum"

    def __init__(
        self,
        *,
        subscription_id: str = DEFAULT_SUBSCRIPTION_ID,
        resource_group: str = DEFAULT_RESOURCE_GROUP,
        workspace: str = DEFAULT_WORKSPACE,
        token: str | None = None,
        api_key: str | None = None,
        principal: str = "user1@example.com",
        providers: Sequence[EmulatedProvider] | None = None,
        cancel_progression: Sequence[str] = (),
        cancel_response: Literal["details", "no_content"] = "details",
        page_size: int = 100,
        sas_ttl_s: float = 24 * 3600.0,
        max_concurrency: int | None = None,
        seed: int | None = None,
        **options: Any,
    ) -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.workspace = workspace
        self.token = token if token is not None else secrets.token_urlsafe(32)
        self.api_key = api_key if api_key is not None else secrets.token_urlsafe(24)
        for label, value in (("token", self.token), ("api_key", self.api_key)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{label} must be a non-empty str")
        self.principal = principal
        self.providers: tuple[EmulatedProvider, ...] = tuple(
            DEFAULT_PROVIDERS if providers is None else providers
        )
        if not self.providers:
            raise ConfigurationError("an Azure Quantum emulator needs at least one provider")
        progression = tuple(cancel_progression)
        if not all(status in ACTIVE_STATUSES for status in progression):
            raise ConfigurationError(f"cancel_progression holds active statuses only, got {progression!r}")
        self.cancel_progression = progression
        if cancel_response not in ("details", "no_content"):
            raise ConfigurationError("cancel_response is 'details' or 'no_content'")
        self.cancel_response: Literal["details", "no_content"] = cancel_response
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ConfigurationError(f"page_size must be a positive int, got {page_size!r}")
        self.page_size = page_size
        self.sas_ttl_s = duration_option("sas_ttl_s", sas_ttl_s, positive=True)
        self._account_key = secrets.token_bytes(32)
        self._signatures: set[str] = set()
        self._secrets: tuple[str, ...] | None = None
        self._output_owner: dict[tuple[str, str], _Job] = {}
        self._containers: dict[str, dict[str, _Blob]] = {}
        self._jobs: dict[str, _Job] = {}
        self._engine = LocalBackend(max_concurrency=max_concurrency, seed=seed)
        #: How many runs were handed to the simulator (a retried create adds none).
        self.engine_runs = 0
        #: Every job status sent, in order.
        self.reported: list[ReportedStatus] = []
        super().__init__(**options)

    # -- what clients need ----------------------------------------------------------------------

    @property
    def workspace_path(self) -> str:
        """``/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.Quantum/workspaces/{w}``."""
        return _WS.format(
            subscription=self.subscription_id, group=self.resource_group, workspace=self.workspace
        )

    @property
    def storage_url(self) -> str:
        """The emulated storage account's URL (``{base_url}/devstoreaccount1``)."""
        return f"{self.base_url}/{STORAGE_ACCOUNT}"

    @property
    def credentials(self) -> dict[str, str]:
        """The keyword settings of ``AzureQuantumBackend`` (bearer token)."""
        return {
            "endpoint": self.base_url,
            "subscription_id": self.subscription_id,
            "resource_group": self.resource_group,
            "workspace": self.workspace,
            "access_token": self.token,
        }

    @property
    def env(self) -> dict[str, str]:
        """The environment ``Sdk("azure_quantum")`` reads (bearer token)."""
        return {
            "AZURE_QUANTUM_ENDPOINT": self.base_url,
            "AZURE_QUANTUM_SUBSCRIPTION_ID": self.subscription_id,
            "AZURE_QUANTUM_RESOURCE_GROUP": self.resource_group,
            "AZURE_QUANTUM_WORKSPACE": self.workspace,
            "AZURE_QUANTUM_ACCESS_TOKEN": self.token,
        }

    def secrets(self) -> tuple[str, ...]:
        """The token, the API key and every SAS signature handed out (as sent and URL-encoded)."""
        if self._secrets is None:
            signatures = tuple(self._signatures)
            self._secrets = (self.token, self.api_key, *signatures, *(quote_plus(s) for s in signatures))
        return self._secrets

    @property
    def job_ids(self) -> list[str]:
        """Every job id created (deleted ones included), oldest first."""
        return list(self._jobs)

    def blob(self, container: str, name: str) -> bytes | None:
        """A stored blob's bytes, or None."""
        found = self._containers.get(container, {}).get(name)
        return None if found is None else found.data

    # -- kit hooks ------------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        ws = _WS
        router = app.router
        router.add_post(ws + "/storage/sasUri", self._sas_uri)
        router.add_get(ws + "/providerStatus", self._provider_status)
        router.add_get(ws + "/jobs", self._list_jobs)
        router.add_put(ws + "/jobs/{job_id:[^/:]+}", self._create_job)
        router.add_get(ws + "/jobs/{job_id:[^/:]+}", self._get_job)
        router.add_delete(ws + "/jobs/{job_id:[^/:]+}", self._delete_job)
        router.add_post(ws + "/jobs/{job_id:[^/:]+}:cancel", self._cancel_job)
        blob = f"/{STORAGE_ACCOUNT}/{{container}}"
        router.add_put(blob, self._put_container)
        router.add_put(blob + "/{blob:.+}", self._put_blob)
        router.add_get(blob + "/{blob:.+}", self._get_blob)

    async def on_start(self, task_group: TaskGroup) -> None:
        await self._engine.start(task_group)

    async def on_stop(self) -> None:
        await self._engine.aclose()

    def is_authorized(self, request: web.Request) -> bool:
        if request.path.startswith(f"/{STORAGE_ACCOUNT}/"):
            return True  # the SAS decides, in the handler
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            return scheme.lower() == "bearer" and _same(token.strip(), self.token)
        key = request.headers.get("x-ms-quantum-api-key")
        return key is not None and _same(key, self.api_key)

    def unauthorized_response(self, request: web.Request) -> web.StreamResponse:
        return self.error_response(
            401,
            "Authentication failed: send a valid 'Authorization: Bearer <token>' or "
            "'x-ms-quantum-api-key' header.",
            headers={"x-ms-error-code": "Unauthorized", "WWW-Authenticate": 'Bearer realm="quantum"'},
        )

    def error_response(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        out = dict(headers or {})
        code = out.get("x-ms-error-code") or _ERROR_CODES.get(status, f"Http{status}")
        out["x-ms-error-code"] = code
        return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=out)

    # -- knobs ----------------------------------------------------------------------------------

    async def set_status(
        self,
        job_id: str,
        status: str | None,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
        undocumented: bool = False,
    ) -> None:
        """Report ``status`` for the job from now on (None: the simulator's own status again).

        ``status`` must be a documented JobStatus unless ``undocumented=True``. A forced Failed
        (with ``errorData`` from ``error_code``/``error_message``) or Cancelled stops the run.
        """
        job = self._job_or_key_error(job_id)
        if status is not None:
            if not isinstance(status, str) or not status:
                raise ConfigurationError("status must be a non-empty str or None")
            if status not in JOB_STATUSES and not undocumented:
                raise ConfigurationError(
                    f"status must be one of {', '.join(JOB_STATUSES)} (or pass undocumented=True), "
                    f"got {status!r}"
                )
        job.forced = status
        job.forced_error = None
        if status == "Failed":
            job.forced_error = {
                "code": error_code or "JobFailed",
                "message": error_message or "The job failed (forced by the emulator).",
            }
        if status in ("Failed", "Cancelled") and job.ref is not None:
            await self._engine.cancel(job.ref, reason=f"the emulator set the job {status}")
        if status is not None:
            self._touch(job, status)

    async def status_of(self, job_id: str) -> str:
        """The job's status as a client would read it now (without advancing a cancel)."""
        status, _ = await self._status(self._job_or_key_error(job_id), read=False)
        return status

    def _job_or_key_error(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id.lower())
        if job is None:
            raise KeyError(f"the Azure Quantum emulator has no job {job_id!r}")
        return job

    # -- request helpers ------------------------------------------------------------------------

    def _api(self, request: web.Request) -> date:
        """The request's api-version as a date (400 if missing or malformed)."""
        raw = request.query.get("api-version")
        if raw is None:
            raise _error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        match = _API_VERSION.match(raw)
        try:
            if match is None:
                raise ValueError(raw)
            return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            raise _error(400, "InvalidApiVersionParameter", f"The api-version '{raw}' is invalid.") from None

    def _workspace(self, request: web.Request) -> date:
        """Check the api-version and that the path names the emulated workspace."""
        api = self._api(request)
        info = request.match_info
        if (
            info["subscription"].lower() != self.subscription_id.lower()
            or info["group"].lower() != self.resource_group.lower()
            or info["workspace"].lower() != self.workspace.lower()
        ):
            raise _error(
                404,
                "WorkspaceNotFound",
                f"Workspace '{info['workspace']}' was not found in resource group '{info['group']}' "
                f"of subscription '{info['subscription']}'.",
            )
        return api

    def _job(self, request: web.Request) -> _Job:
        job_id = request.match_info["job_id"]
        if not _JOB_ID.match(job_id):
            raise _error(400, "InvalidJobId", f"The job id '{job_id}' is not a GUID.")
        job = self._jobs.get(job_id.lower())
        if job is None or job.deleted:
            raise _error(404, "JobNotFound", f"Job '{job_id}' was not found.")
        return job

    @staticmethod
    async def _json(request: web.Request) -> Any:
        raw = await request.read()
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise _error(400, "InvalidRequestContent", "The request body is not valid JSON.") from None

    def _provider(self, provider_id: str) -> EmulatedProvider | None:
        for provider in self.providers:
            if provider.id.lower() == provider_id.lower():
                return provider
        return None

    # -- SAS ------------------------------------------------------------------------------------

    def _sign(self, resource: str, permissions: str, expiry: str, kind: str) -> str:
        text = "\n".join((permissions, expiry, f"/{STORAGE_ACCOUNT}/{resource}", SAS_VERSION, kind))
        signature = base64.b64encode(
            hmac.new(self._account_key, text.encode(), hashlib.sha256).digest()
        ).decode()
        if signature not in self._signatures:
            self._signatures.add(signature)
            self._secrets = None
        return signature

    def _sas_url(self, container: str, blob: str | None = None) -> str:
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
        return f"{self.storage_url}/{resource}?{query}"

    def _storage_error(self, status: int, code: str, message: str) -> web.Response:
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
            return self._storage_error(
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
            return self._storage_error(
                403, "AuthenticationFailed", "Signed resource does not match the request."
            )
        text = "\n".join((sp, se, f"/{STORAGE_ACCOUNT}/{resource}", sv, sr))
        expected = base64.b64encode(
            hmac.new(self._account_key, text.encode(), hashlib.sha256).digest()
        ).decode()
        if not _same(sig, expected):
            return self._storage_error(
                403, "AuthenticationFailed", "Signature did not match. String to sign used was not valid."
            )
        try:
            expired = _parse_time(se) <= _utcnow()
        except ValueError:
            expired = True
        if expired:
            return self._storage_error(403, "AuthenticationFailed", "Signed expiry time has passed.")
        if not any(letter in sp for letter in need):
            return self._storage_error(
                403,
                "AuthorizationPermissionMismatch",
                "This request is not authorized to perform this operation using this permission.",
            )
        return None

    def _ours(self, url: str) -> tuple[str, str] | None:
        """(container, blob) of a blob URL on this emulator's storage, else None."""
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.base_url:
            return None
        segments = [s for s in parts.path.split("/") if s]
        if len(segments) < 3 or segments[0] != STORAGE_ACCOUNT:
            return None
        return segments[1], "/".join(segments[2:])

    # -- workspace: storage and providers -------------------------------------------------------

    async def _sas_uri(self, request: web.Request) -> web.Response:
        api = self._workspace(request)
        body = await self._json(request)
        container = body.get("containerName") if isinstance(body, dict) else None
        blob = body.get("blobName") if isinstance(body, dict) else None
        if (
            not isinstance(container, str)
            or not container
            or (blob is not None and not isinstance(blob, str))
        ):
            raise _error(
                400, "InvalidBlobDetails", "containerName (a string) is required; blobName is a string."
            )
        if not blob and api >= SAS_CREATES_CONTAINER_SINCE:
            self._containers.setdefault(container, {})
        return web.json_response({"sasUri": self._sas_url(container, blob or None)})

    async def _provider_status(self, request: web.Request) -> web.Response:
        self._workspace(request)
        value = []
        for provider in self.providers:
            targets = []
            for target in provider.targets:
                item: dict[str, Any] = {
                    "id": target.id,
                    "currentAvailability": target.availability,
                    "averageQueueTime": target.average_queue_time,
                    "numQubits": target.num_qubits,
                }
                if target.target_profile is not None:
                    item["targetProfile"] = target.target_profile
                targets.append(item)
            value.append(
                {"id": provider.id, "currentAvailability": provider.availability, "targets": targets}
            )
        return web.json_response({"value": value})

    # -- workspace: jobs ------------------------------------------------------------------------

    async def _create_job(self, request: web.Request) -> web.Response:
        self._workspace(request)
        job_id = request.match_info["job_id"]
        if not _JOB_ID.match(job_id):
            raise _error(400, "InvalidJobId", f"The job id '{job_id}' is not a GUID.")
        body = await self._json(request)
        if not isinstance(body, dict):
            raise _error(400, "InvalidJobDefinition", "The body must be a JobDetails object.")
        fields = {key: body[key] for key in _CREATE_FIELDS if key in body and body[key] is not None}
        missing = [
            key
            for key in ("id", "name", "providerId", "target", "itemType", "containerUri")
            if key not in fields
        ]
        if missing:
            raise _error(400, "InvalidJobDefinition", f"JobDetails is missing {', '.join(missing)}.")
        for key in ("id", "name", "providerId", "target", "itemType", "containerUri"):
            if not isinstance(fields[key], str) or not fields[key]:
                raise _error(400, "InvalidJobDefinition", f"{key} must be a non-empty string.")
        if fields["id"].lower() != job_id.lower():
            raise _error(400, "InvalidJobId", f"The body's id '{fields['id']}' is not the path's '{job_id}'.")
        if fields["itemType"] != "Job":
            raise _error(400, "InvalidJobDefinition", "itemType must be 'Job'.")
        for key in ("inputParams", "metadata"):
            if key in fields and not isinstance(fields[key], dict):
                raise _error(400, "InvalidJobDefinition", f"{key} must be an object.")
        if "priority" in fields and fields["priority"] not in ("Standard", "High"):
            raise _error(400, "InvalidJobDefinition", "priority must be 'Standard' or 'High'.")
        provider = self._provider(fields["providerId"])
        if provider is None:
            raise _error(
                400, "InvalidProvider", f"Provider '{fields['providerId']}' is not in this workspace."
            )
        target = next((t for t in provider.targets if t.id.lower() == fields["target"].lower()), None)
        if target is None:
            raise _error(
                400, "InvalidTarget", f"Target '{fields['target']}' is not offered by '{provider.id}'."
            )
        if fields.get("inputDataFormat", provider.input_formats[0]) not in provider.input_formats:
            raise _error(
                400,
                "InvalidInputDataFormat",
                f"'{provider.id}' takes {', '.join(provider.input_formats)}, "
                f"not '{fields['inputDataFormat']}'.",
            )
        if fields.get("outputDataFormat", provider.output_format) != provider.output_format:
            raise _error(
                400,
                "InvalidOutputDataFormat",
                f"'{provider.id}' gives {provider.output_format}, not '{fields['outputDataFormat']}'.",
            )
        key = job_id.lower()
        existing = self._jobs.get(key)
        if existing is not None:
            if existing.deleted or _comparable(existing.request) != _comparable(fields):
                raise _error(409, "JobAlreadyExists", f"A different job with id '{job_id}' already exists.")
            return web.json_response(await self._details(existing, "create"), status=200)
        job = self._new_job(key, fields, provider, target, request)
        self._jobs[key] = job
        if job.output_blob is not None:
            self._output_owner[job.output_blob] = job
        await self._start_job(job, target)
        return web.json_response(await self._details(job, "create"), status=201)

    def _new_job(
        self,
        key: str,
        fields: dict[str, Any],
        provider: EmulatedProvider,
        target: EmulatedTarget,
        request: web.Request,
    ) -> _Job:
        container_uri = str(fields["containerUri"])
        output_uri = fields.get("outputDataUri")
        if not isinstance(output_uri, str) or not output_uri:
            parts = urlsplit(container_uri)
            base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/rawOutputData"
            output_uri = f"{base}?{parts.query}" if parts.query else base
        by_key = "x-ms-quantum-api-key" in request.headers and "Authorization" not in request.headers
        params = fields.get("inputParams") or {}
        shots = params.get("shots", params.get("count", 100))
        job = _Job(
            id=key,
            request=fields,
            provider=provider,
            target=target.id,
            output_format=provider.output_format,
            output_uri=output_uri,
            created_by_type="Key" if by_key else "User",
            creation_time=_utcnow(),
            since=self.clock(),
            shots=shots if isinstance(shots, int) and not isinstance(shots, bool) else -1,
            output_blob=self._ours(output_uri),
            kind=provider.runs,
            zero_results=provider.runs == "quantinuum" and target.id.endswith("sc"),
        )
        self._touch(job, "Waiting")
        return job

    async def _start_job(self, job: _Job, target: EmulatedTarget) -> None:
        """Read the input and hand the job to the simulator, or mark it to fail as the provider would."""
        if job.kind is None:
            job.rejection = {
                "code": "UnsupportedProvider",
                "message": f"The emulator does not run '{job.provider.id}' jobs.",
            }
            return
        if not 1 <= job.shots <= MAX_SHOTS:
            job.rejection = {
                "code": "InvalidInputData",
                "message": f"inputParams.shots (or count) must be an integer from 1 to {MAX_SHOTS}.",
            }
            return
        location = self._input_location(job)
        data = None if location is None else self.blob(*location)
        if data is None:
            job.rejection = {"code": "InvalidInputData", "message": "The input blob was not found."}
            return
        try:
            if job.kind == "ionq":
                program, _ = ionq_to_qasm(json.loads(data), max_qubits=target.num_qubits)
            else:
                program = data.decode("utf-8")
        except (ValueError, UnicodeDecodeError) as exc:
            job.rejection = {"code": "InvalidInputData", "message": f"The input is not valid: {exc}"}
            return
        spec = RunSpec(
            program=program,
            target=SIMULATOR_TARGET,
            config={"shots": job.shots, "min_duration_s": self.job_duration_s},
            tag=job.id,
        )
        try:
            spec = self._engine.validate(spec)
        except JobValidationError as exc:
            job.rejection = {"code": "InvalidInputData", "message": str(exc)}
            return
        job.spec = spec
        job.ref = await self._engine.submit(spec, job.id)
        self.engine_runs += 1

    def _input_location(self, job: _Job) -> tuple[str, str] | None:
        given = job.request.get("inputDataUri")
        if isinstance(given, str) and given:
            return self._ours(given)
        parts = urlsplit(str(job.request["containerUri"]))
        return self._ours(f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/inputData")

    async def _get_job(self, request: web.Request) -> web.Response:
        self._workspace(request)
        return web.json_response(await self._details(self._job(request), "get"))

    async def _list_jobs(self, request: web.Request) -> web.Response:
        self._workspace(request)
        query = request.query
        try:
            predicate = parse_filter(query["filter"]) if query.get("filter", "").strip() else None
            order = _order_key(query["orderby"]) if query.get("orderby", "").strip() else []
            skip = int(query.get("skip", "0"))
            top = int(query["top"]) if "top" in query else None
            if skip < 0 or (top is not None and top < 1):
                raise ValueError("skip must be >= 0 and top >= 1")
        except ValueError as exc:
            raise _error(400, "InvalidFilter", f"The query is not valid: {exc}") from None
        records: list[tuple[dict[str, Any], _Job]] = []
        for job in list(self._jobs.values()):
            if job.deleted:
                continue
            status, _ = await self._status(job, read=False)
            record = {
                "id": job.id,
                "name": job.request.get("name"),
                "providerid": job.provider.id,
                "target": job.target,
                "status": status,
                "itemtype": "Job",
                "jobtype": job.request.get("jobType"),
                "sessionid": job.request.get("sessionId"),
                "creationtime": job.creation_time,
            }
            try:
                if predicate is None or predicate(record):
                    records.append((record, job))
            except ValueError as exc:
                raise _error(400, "InvalidFilter", f"The filter is not valid: {exc}") from None
        for key, descending in reversed(order):

            def sort_key(pair: tuple[dict[str, Any], _Job], k: str = key) -> tuple[bool, str]:
                return pair[0].get(k) is None, str(pair[0].get(k) or "")

            records.sort(key=sort_key, reverse=descending)
        window = records[skip:] if top is None else records[skip : skip + top]
        page = window[: self.page_size]
        value = [await self._details(job, "list") for _, job in page]
        answer: dict[str, Any] = {"value": value}
        if len(window) > len(page):
            params = [(k, v) for k, v in query.items() if k not in ("skip", "top")]
            params.append(("skip", str(skip + len(page))))
            if top is not None:
                params.append(("top", str(top - len(page))))
            answer["nextLink"] = f"{self.base_url}{request.path}?{urlencode(params)}"
        return web.json_response(answer)

    async def _cancel_job(self, request: web.Request) -> web.Response:
        api = self._workspace(request)
        if api < CANCEL_WITH_POST_SINCE:
            raise _error(
                400,
                "UnsupportedApiVersion",
                f"Jobs_Cancel is not available in api-version {request.query['api-version']}; "
                "cancel with DELETE in versions before 2025-12-01-preview.",
            )
        job = self._job(request)
        await self._cancel(job)
        if self.cancel_response == "no_content":
            return web.Response(status=204)
        return web.json_response(await self._details(job, "cancel", read=False))

    async def _delete_job(self, request: web.Request) -> web.Response:
        api = self._workspace(request)
        job = self._job(request)
        if api < CANCEL_WITH_POST_SINCE:
            await self._cancel(job)
        else:
            if job.ref is not None:
                await self._engine.cancel(job.ref, reason="the job was deleted")
            job.deleted = True
        return web.Response(status=204)

    async def _cancel(self, job: _Job) -> None:
        if job.cancel_requested:
            return
        status, _ = await self._status(job, read=False)
        if status in TERMINAL_STATUSES:
            raise _error(
                409, "InvalidJobState", f"Job '{job.id}' is {status}; only an active job can be cancelled."
            )
        job.cancel_requested = True
        job.forced = None
        if job.ref is not None:
            await self._engine.cancel(job.ref, reason="cancelled through the Azure Quantum API")
        self._touch(job, self.cancel_progression[0] if self.cancel_progression else "Cancelled")

    # -- job state ------------------------------------------------------------------------------

    def _touch(self, job: _Job, status: str) -> None:
        now = _utcnow()
        if status != job.last_status:
            job.last_status = status
            job.last_updated = now
        if status in ("Executing", "Finishing") and job.begin is None:
            job.begin = now
        if status in TERMINAL_STATUSES and job.end is None:
            job.end = now
        if status == "Cancelled" and job.cancelled_at is None:
            job.cancelled_at = now

    async def _status(self, job: _Job, *, read: bool) -> tuple[str, dict[str, str] | None]:
        """(status, errorData) now; ``read`` advances a cancel in progress by one step."""
        observation: Observation | None = None
        if job.ref is not None:
            observation = await self._engine.status(job.ref)
            if observation.state is JobState.COMPLETED and not job.output_written:
                await self._write_output(job)
        error: dict[str, str] | None = None
        if job.forced is not None:
            status = job.forced
            error = job.forced_error if status == "Failed" else None
        elif job.cancel_requested:
            steps = self.cancel_progression
            status = steps[job.cancel_reads] if job.cancel_reads < len(steps) else "Cancelled"
            if read and job.cancel_reads < len(steps):
                job.cancel_reads += 1
        elif job.rejection is not None:
            if self.clock() - job.since >= self.job_duration_s:
                status, error = "Failed", dict(job.rejection)
            else:
                status = "Waiting"
        elif observation is None:
            status = "Waiting"
        else:
            status = _ENGINE_STATUS[observation.state]
            if observation.state is JobState.FAILED:
                code = "InvalidInputData" if observation.code == "PARSE_ERROR" else "ExecutionFailed"
                error = {"code": code, "message": observation.message or "The job failed."}
        if job.begin is None and status in ("Succeeded", "Completed", "Failed") and job.ref is not None:
            job.begin = _utcnow()  # it ran between two reads
        self._touch(job, status)
        return status, error

    async def _write_output(self, job: _Job) -> None:
        assert job.ref is not None
        assert job.spec is not None
        counts: Mapping[str, Mapping[str, int]] = await self._engine.result(job.ref, job.spec)
        output: dict[str, Any]
        if job.kind == "ionq":
            register = counts.get("c", {})
            output = {"histogram": {str(int(bits, 2)): n / job.shots for bits, n in register.items()}}
        else:
            output = {}
            for name, register in counts.items():
                width = len(next(iter(register), ""))
                if job.zero_results:
                    output[name] = ["0" * width] * job.shots
                else:
                    output[name] = [bits for bits, n in sorted(register.items()) for _ in range(n)]
        job.output_written = True
        if job.output_blob is not None:
            container, name = job.output_blob
            self._containers.setdefault(container, {})[name] = _Blob(
                json.dumps(output, separators=(",", ":")).encode(), "application/json"
            )

    async def _details(self, job: _Job, operation: str, *, read: bool = True) -> dict[str, Any]:
        status, error = await self._status(job, read=read)
        self.reported.append(ReportedStatus(operation, job.id, status))
        if len(self.reported) > self.max_log:
            del self.reported[: len(self.reported) - self.max_log]
        details: dict[str, Any] = dict(job.request)
        details.setdefault("priority", "Standard")
        details["outputDataUri"] = job.output_uri
        details["outputDataFormat"] = job.output_format
        details["status"] = status
        details["creationTime"] = _azure_time(job.creation_time)
        details["createdBy"] = self.principal if job.created_by_type == "User" else "api-key"
        details["createdByType"] = job.created_by_type
        if job.last_updated is not None:
            details["lastUpdatedTime"] = _azure_time(job.last_updated)
        if job.begin is not None:
            details["beginExecutionTime"] = _azure_time(job.begin)
        if status in TERMINAL_STATUSES and job.end is not None:
            details["endExecutionTime"] = _azure_time(job.end)
        if status == "Cancelled" and job.cancelled_at is not None:
            details["cancellationTime"] = _azure_time(job.cancelled_at)
        if error is not None:
            details["errorData"] = error
        return details

    # -- blob storage ---------------------------------------------------------------------------

    async def _put_container(self, request: web.Request) -> web.Response:
        container = request.match_info["container"]
        if request.query.get("restype") != "container":
            return self._storage_error(400, "InvalidQueryParameterValue", "restype=container is required.")
        denied = self._check_sas(request, container, None, "cw")
        if denied is not None:
            return denied
        if container in self._containers:
            return self._storage_error(
                409, "ContainerAlreadyExists", "The specified container already exists."
            )
        self._containers[container] = {}
        return web.Response(status=201, headers={"ETag": f'"0x{secrets.token_hex(8).upper()}"'})

    async def _put_blob(self, request: web.Request) -> web.Response:
        container, name = request.match_info["container"], request.match_info["blob"]
        denied = self._check_sas(request, container, name, "cw")
        if denied is not None:
            return denied
        blob_type = request.headers.get("x-ms-blob-type")
        if blob_type is None:
            return self._storage_error(
                400,
                "MissingRequiredHeader",
                "An HTTP header that's mandatory for this request is not specified.",
            )
        if blob_type != "BlockBlob":
            return self._storage_error(400, "InvalidHeaderValue", "x-ms-blob-type must be BlockBlob here.")
        store = self._containers.get(container)
        if store is None:
            return self._storage_error(404, "ContainerNotFound", "The specified container does not exist.")
        data = await request.read()
        blob = _Blob(data, request.headers.get("Content-Type", "application/octet-stream"))
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
        owner = self._output_owner.get((container, name))
        if owner is not None and not owner.output_written:  # a run that ended unseen: read it first
            await self._status(owner, read=False)
        store = self._containers.get(container)
        if store is None:
            return self._storage_error(404, "ContainerNotFound", "The specified container does not exist.")
        blob = store.get(name)
        if blob is None:
            return self._storage_error(404, "BlobNotFound", "The specified blob does not exist.")
        return web.Response(
            status=200,
            body=blob.data,
            content_type=blob.content_type.split(";")[0],
            headers={"ETag": blob.etag, "x-ms-blob-type": "BlockBlob"},
        )


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )


def _comparable(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Create-time fields for the idempotency check: URIs without their SAS query, ids lower-cased."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key in ("containerUri", "inputDataUri", "outputDataUri") and isinstance(value, str):
            parts = urlsplit(value)
            value = f"{parts.scheme}://{parts.netloc}{parts.path}"
        elif key in ("id", "providerId", "target") and isinstance(value, str):
            value = value.lower()
        out[key] = value
    return out
