"""Run one Arazzo workflow: :func:`run_workflow`.

How a run goes
    1. The document is loaded and validated; the workflow's inputs are checked against its
       ``inputs`` schema (:class:`MissingInputError` names every missing one). Inputs that look like
       credentials (``token``, ``accessToken``, ``apiKey`` ... or ``format: password``) become
       :class:`~oqc_style_sdk._http.Secret` values: they go on the wire and nowhere else.
    2. Every step's operation is resolved before anything is sent: against the source's OpenAPI
       description when it can be read, else against the built-in map of the backend whose
       operations match (:mod:`.operations`); every source gets a server URL (``servers=``).
       Unknown operationIds, missing path parameters and missing server URLs are errors here.
    3. Steps run in order. Each request goes through :class:`~oqc_style_sdk._http.HttpClient`
       (request timeout, retries of 429 — and of 5xx for idempotent requests — honouring
       ``Retry-After``, typed errors). Any other answer is the step's to judge with its
       ``successCriteria`` (without criteria: a 2xx status). A refused connection is an error
       (:class:`~oqc_style_sdk.exceptions.BackendUnavailableError`), never a success.
    4. On success the step's outputs are taken and the first ``onSuccess`` action whose criteria all
       hold applies (``end`` or ``goto``); none: the next step (after the last one, the end). On
       failure the first matching ``onFailure`` action applies: ``retry`` waits the response's
       ``Retry-After``, else ``retryAfter``, else the pacing backoff, at most ``retryLimit`` times
       (default 1) before later failure actions are tried; ``goto``; ``end``. A failure no action
       handles — or ends — raises :class:`StepFailedError`.

Safety
    * A ``goto`` to the same or an earlier step (a polling loop) waits first: exponential backoff
      with jitter (:class:`Pacing`, default 0.5 s doubling to 10 s), or the last response's
      ``Retry-After`` when longer. Arazzo 1.0.1 has no delay of its own; without this a loop
      hammers the vendor.
    * ``max_steps`` (default 200) step executions at most → :class:`StepLimitError`.
    * ``timeout_s`` (default 300 s; ``None`` means no deadline) for the whole run →
      :class:`WorkflowTimeoutError`; each request's timeout is capped by it, and a wait that would
      end after it is not started.
    * Errors carry ``result`` (errors of this package) or ``workflow_result`` (transport errors,
      which keep their SDK type and get a note naming the step): the partial run.

Tolerated, with a warning (once per run): the seeds' bare expressions inside strings
(``"Bearer $inputs.token"``), their ``jsonpath`` criteria written as comparisons, outputs that read
a step that did not run (null).
"""

from __future__ import annotations

import json as jsonlib
import logging
import math
import os
import random
import re
from collections.abc import Callable, Container, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal
from urllib.parse import quote, urlencode, urlsplit

import anyio

from .._http import IDEMPOTENT_METHODS, HttpClient, Response, RetryPolicy, Secret, extract_vendor_error
from .._http import parse_retry_after as _parse_retry_after
from ..exceptions import BackendError, SdkError
from .criteria import CompiledCriterion, compile_criterion, evaluate_criterion
from .document import ArazzoDocument, Criterion, FailureAction, SuccessAction, Workflow, parse_document
from .errors import (
    MissingInputError,
    StepFailedError,
    StepLimitError,
    UnknownOperationError,
    WorkflowConfigurationError,
    WorkflowDefinitionError,
    WorkflowError,
    WorkflowInputError,
    WorkflowTimeoutError,
)
from .expressions import (
    CompiledValue,
    ExpressionContext,
    RequestView,
    ResponseView,
    compile_value,
    evaluate_value,
    has_bare,
    reveal_text,
    to_text,
)
from .operations import (
    BUILTIN_BACKENDS,
    BuiltinBackend,
    OpenApiDescription,
    OperationSpec,
    choose_backend,
    join_server,
    read_openapi,
    resolve_source_url,
)

__all__ = ["Pacing", "StepRecord", "WorkflowResult", "run_workflow"]

logger = logging.getLogger("oqc_style_sdk.arazzo")

DEFAULT_TIMEOUT_S: Final = 300.0
DEFAULT_MAX_STEPS: Final = 200
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_SECRET_NAME = re.compile(r"(?i)(token|secret|password|passwd|api[-_]?key|credential|authorization)")
_PATH_SAFE: Final = "/:@!$&'()*+,;="


@dataclass(frozen=True, slots=True)
class Pacing:
    """Waits before re-entering a step by a backward ``goto`` (a loop), and before a ``retry``
    without ``retryAfter``: ``initial_s`` × ``factor``^(n-1), at most ``max_s``, minus up to
    ``jitter`` of it at random."""

    initial_s: float = 0.5
    max_s: float = 10.0
    factor: float = 2.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        for name in ("initial_s", "max_s", "factor", "jitter"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise WorkflowConfigurationError(f"Pacing.{name} must be a finite number >= 0")
        if self.factor < 1 or self.jitter > 1 or self.max_s < self.initial_s:
            raise WorkflowConfigurationError("Pacing needs factor >= 1, jitter <= 1 and max_s >= initial_s")

    def delay_s(self, n: int, rng: random.Random) -> float:
        """The wait before the ``n``-th (1-based) re-entry."""
        base = min(self.max_s, self.initial_s * self.factor ** min(max(n, 1) - 1, 64))
        return base * (1.0 - self.jitter * rng.random())


ActionKind = Literal["next", "end", "goto", "retry", "fail"]


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One executed step: what was sent, what came back, and where the workflow went next."""

    step_id: str
    operation_id: str
    method: str
    #: Path and query as sent (secrets shown as ``***``), relative to the server URL.
    target: str
    status: int | None
    succeeded: bool
    #: ``next`` (the following step), ``end``, ``goto``, ``retry`` or ``fail``.
    action: ActionKind
    #: The name of the onSuccess/onFailure action that applied, if one did.
    action_name: str | None
    #: The step the workflow went to next (``None`` when it ended).
    next_step: str | None
    #: Seconds waited before this step was sent (loop pacing, retry delay).
    waited_s: float
    started_at: float
    elapsed_s: float
    outputs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def branch(self) -> str:
        """The branch taken, for people: ``cancellable → cancelJob``, ``alreadyTerminal → end`` ..."""
        label = f"{self.action_name} → " if self.action_name else ""
        if self.action == "fail":
            return "failed"
        if self.action == "retry":
            return f"{label}retry"
        if self.next_step is None:
            return f"{label}end"
        if self.action == "next":
            return f"next → {self.next_step}"
        return f"{label}{self.next_step}"


@dataclass(slots=True)
class WorkflowResult:
    """The outcome of a run: the workflow's outputs, every step executed, and the warnings."""

    workflow_id: str
    outputs: dict[str, Any] = field(default_factory=dict)
    steps: list[StepRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    requests_sent: int = 0
    elapsed_s: float = 0.0

    @property
    def trace(self) -> list[tuple[str, str]]:
        """``(step_id, branch)`` for each executed step."""
        return [(record.step_id, record.branch) for record in self.steps]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (secrets as ``***``)."""

        def plain(value: Any) -> Any:
            return jsonlib.loads(jsonlib.dumps(value, default=str))

        return {
            "workflowId": self.workflow_id,
            "outputs": plain(self.outputs),
            "steps": [
                {
                    "stepId": r.step_id,
                    "operationId": r.operation_id,
                    "request": f"{r.method} {r.target}",
                    "status": r.status,
                    "succeeded": r.succeeded,
                    "branch": r.branch,
                    "waitedS": round(r.waited_s, 3),
                    "elapsedS": round(r.elapsed_s, 3),
                    "outputs": plain(dict(r.outputs)),
                }
                for r in self.steps
            ],
            "warnings": list(self.warnings),
            "requestsSent": self.requests_sent,
            "elapsedS": round(self.elapsed_s, 3),
        }


# --------------------------------------------------------------------------------------------------
# Plan: everything decided before the first request


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    where: str
    value: CompiledValue


@dataclass(frozen=True, slots=True)
class _Action:
    name: str
    type: str
    step_id: str | None
    retry_after: float | None
    retry_limit: int | None
    criteria: tuple[CompiledCriterion, ...]


@dataclass(frozen=True, slots=True)
class _Operation:
    operation_id: str
    source: str
    spec: OperationSpec
    base_url: str
    origin: str


@dataclass(frozen=True, slots=True)
class _StepPlan:
    step_id: str
    index: int
    operation: _Operation
    params: tuple[_Param, ...]
    content_type: str | None
    payload: CompiledValue | None
    replacements: tuple[tuple[str, CompiledValue], ...]
    success: tuple[CompiledCriterion, ...]
    on_success: tuple[_Action, ...]
    on_failure: tuple[_Action, ...]
    outputs: tuple[tuple[str, CompiledValue], ...]
    #: onSuccess actions exist but all have criteria (so "none matched" is worth a warning)
    guarded: bool


class _Answers(Container[int]):
    """Statuses the HttpClient hands back for the step to judge (it retries/raises on the rest)."""

    def __init__(self, excluded: frozenset[int]) -> None:
        self._excluded = excluded | _REDIRECTS

    def __contains__(self, status: object) -> bool:
        return isinstance(status, int) and 100 <= status <= 599 and status not in self._excluded


def _criteria(items: list[Criterion]) -> tuple[CompiledCriterion, ...]:
    return tuple(compile_criterion(c.condition, c.kind, c.context, c.version) for c in items)


def _action(action: SuccessAction | FailureAction) -> _Action:
    retry_after = action.retryAfter if isinstance(action, FailureAction) else None
    retry_limit = action.retryLimit if isinstance(action, FailureAction) else None
    return _Action(
        action.name, action.type, action.stepId, retry_after, retry_limit, _criteria(action.criteria)
    )


_QUALIFIED = re.compile(r"^\{?\$sourceDescriptions\.([A-Za-z0-9_\-]+)\}?\.(.+)$")
_OPERATION_PATH = re.compile(r"^\{\$sourceDescriptions\.([A-Za-z0-9_\-]+)\.url\}#(/.*)$")


def _operation_ref(
    step_id: str, operation_id: str | None, operation_path: str | None
) -> tuple[str | None, str | None, str | None]:
    """``(source, operationId, pointer)`` of a step."""
    if operation_id is not None:
        match = _QUALIFIED.match(operation_id)
        if match:
            return match.group(1), match.group(2), None
        return None, operation_id, None
    assert operation_path is not None
    match = _OPERATION_PATH.match(operation_path)
    if match is None:
        raise WorkflowDefinitionError(
            f"step {step_id!r}: operationPath must read '{{$sourceDescriptions.NAME.url}}#/paths/...'"
        )
    return match.group(1), None, match.group(2)


def _spec_from_pointer(pointer: str) -> OperationSpec | None:
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    if len(tokens) != 3 or tokens[0] != "paths":
        return None
    return OperationSpec(tokens[2].upper(), tokens[1])


# --------------------------------------------------------------------------------------------------
# Inputs

_JSON_TYPES: Final[Mapping[str, Callable[[Any], bool]]] = {
    "string": lambda v: isinstance(v, str | Secret),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, list | tuple),
    "null": lambda v: v is None,
}


def _input_schema(workflow: Workflow) -> tuple[dict[str, Any], list[str]]:
    schema = workflow.inputs or {}
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    assert isinstance(properties, dict)
    assert isinstance(required, list)
    return properties, [str(name) for name in required]


def _check_inputs(
    workflow: Workflow, given: Mapping[str, Any], warn: Callable[[str], None]
) -> dict[str, Any]:
    properties, required = _input_schema(workflow)
    values = dict(given)
    for name, spec in properties.items():
        if name not in values and isinstance(spec, dict) and "default" in spec:
            values[name] = spec["default"]
    missing = [name for name in required if values.get(name) is None]
    if missing:
        described = []
        for name in missing:
            spec = properties.get(name)
            about = spec.get("description") if isinstance(spec, dict) else None
            described.append(f"{name} ({about})" if about else name)
        raise MissingInputError(
            f"workflow {workflow.workflowId!r} needs these inputs, which were not given: "
            + "; ".join(described),
            missing=missing,
        )
    problems: list[str] = []
    for name, value in values.items():
        spec = properties.get(name)
        if spec is None:
            if properties:
                warn(f"input {name!r} is not declared by workflow {workflow.workflowId!r}")
            continue
        if not isinstance(spec, dict) or "type" not in spec:
            continue
        types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
        checks = [_JSON_TYPES[t] for t in types if t in _JSON_TYPES]
        if checks and not any(check(value) for check in checks):
            problems.append(
                f"input {name!r} must be of type {' or '.join(types)}, not {type(value).__name__}"
            )
        if isinstance(spec.get("enum"), list) and value not in spec["enum"]:
            problems.append(f"input {name!r} must be one of {spec['enum']}")
    if problems:
        raise WorkflowInputError("; ".join(problems))
    for name, value in list(values.items()):
        spec = properties.get(name)
        password = isinstance(spec, dict) and spec.get("format") == "password"
        if isinstance(value, str) and (password or _SECRET_NAME.search(name)):
            values[name] = Secret(value)
    return values


# --------------------------------------------------------------------------------------------------
# The run


def _plain_body(response: Response, warn: Callable[[str], None], where: str) -> Any:
    if not response.body.strip():
        return None
    content_type = response.headers.get("Content-Type", "").lower()
    looks_json = response.body.lstrip()[:1] in (b"{", b"[")
    if "json" in content_type or (not content_type and looks_json):
        try:
            return jsonlib.loads(response.body)
        except (ValueError, RecursionError):
            warn(f"{where}: the response says JSON but its body is not JSON; it is read as text")
    return response.text()


def _set_pointer(document: Any, pointer: str, value: Any) -> Any:
    """``document`` with the value at JSON pointer ``pointer`` replaced (a payload replacement)."""
    if pointer == "":
        return value
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    if not pointer.startswith("/"):
        raise ValueError(f"replacement target {pointer!r} is not a JSON pointer")
    parent = document
    for token in tokens[:-1]:
        if isinstance(parent, dict) and token in parent:
            parent = parent[token]
        elif isinstance(parent, list) and token.isdigit() and int(token) < len(parent):
            parent = parent[int(token)]
        else:
            raise ValueError(f"replacement target {pointer} does not exist in the payload")
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        parent[int(last)] = value
    else:
        raise ValueError(f"replacement target {pointer} does not exist in the payload")
    return document


def _wire_json(value: Any) -> Any:
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, dict):
        return {key: _wire_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_wire_json(item) for item in value]
    return value


class _Run:
    def __init__(
        self,
        doc: ArazzoDocument,
        workflow: Workflow,
        *,
        servers: Mapping[str, str],
        backends: Mapping[str, str],
        timeout_s: float | None,
        max_steps: int,
        pacing: Pacing,
        request_timeout_s: float,
        retry: RetryPolicy | None,
        allow_insecure_http: bool,
        on_step: Callable[[StepRecord], Any] | None,
        rng: random.Random,
    ) -> None:
        self.doc = doc
        self.workflow = workflow
        self.servers = dict(servers)
        self.backends = dict(backends)
        self.timeout_s = timeout_s
        self.max_steps = max_steps
        self.pacing = pacing
        self.request_timeout_s = request_timeout_s
        self.retry = retry
        self.allow_insecure_http = allow_insecure_http
        self.on_step = on_step
        self.rng = rng
        self.result = WorkflowResult(workflow.workflowId)
        self.inputs: dict[str, Any] = {}
        self.step_outputs: dict[str, dict[str, Any]] = {}
        self.step_ids = frozenset(s.stepId for s in workflow.steps)
        self.index_of = workflow.step_index
        self.unread: dict[str, str] = {}
        self.clients: dict[str, HttpClient] = {}
        self.fetchers: list[HttpClient] = []
        self._warned: set[str] = set()
        self.started = 0.0
        self.deadline = math.inf

    # -- warnings -------------------------------------------------------------------------------------

    def warn(self, message: str, *, key: str | None = None) -> None:
        key = key or message
        if key in self._warned:
            return
        self._warned.add(key)
        self.result.warnings.append(message)
        logger.warning("workflow %s: %s", self.workflow.workflowId, message)

    def context(
        self, request: RequestView | None = None, response: ResponseView | None = None
    ) -> ExpressionContext:
        return ExpressionContext(
            inputs=self.inputs,
            step_outputs=self.step_outputs,
            step_ids=self.step_ids,
            workflow_id=self.workflow.workflowId,
            workflow_outputs=self.result.outputs,
            request=request,
            response=response,
            source_urls={s.name: s.url for s in self.doc.sourceDescriptions},
            warn=self.warn,
        )

    # -- planning -------------------------------------------------------------------------------------

    async def _fetch(self, url: str) -> bytes:
        parts = urlsplit(url)
        client = HttpClient(
            f"{parts.scheme}://{parts.netloc}",
            vendor=f"source description at {parts.netloc}",
            timeout_s=self.request_timeout_s,
            retry=self.retry,
            allow_insecure_http=self.allow_insecure_http,
        )
        self.fetchers.append(client)
        async with client:
            response = await client.get(parts.path + (f"?{parts.query}" if parts.query else ""))
        return response.body

    async def plan(self) -> list[_StepPlan]:
        workflow, doc = self.workflow, self.doc
        if workflow.dependsOn:
            raise WorkflowDefinitionError(
                f"workflow {workflow.workflowId!r} dependsOn other workflows, "
                "which this executor does not run"
            )
        known = {s.name for s in doc.sourceDescriptions} | set(BUILTIN_BACKENDS)
        unknown = sorted(set(self.servers) - known)
        if unknown:
            raise WorkflowConfigurationError(
                f"unknown server name(s) {', '.join(map(repr, unknown))}: use a source description name "
                f"({', '.join(s.name for s in doc.sourceDescriptions)}) or a backend "
                f"({', '.join(BUILTIN_BACKENDS)})"
            )
        for source, backend in self.backends.items():
            if backend not in BUILTIN_BACKENDS:
                raise WorkflowConfigurationError(
                    f"unknown backend {backend!r} for source {source!r}; known: {', '.join(BUILTIN_BACKENDS)}"
                )
        openapi_sources = [s for s in doc.sourceDescriptions if s.type == "openapi"]
        refs: dict[str, tuple[str | None, str | None, str | None]] = {}
        for step in workflow.steps:
            if step.workflowId is not None:
                raise WorkflowDefinitionError(
                    f"step {step.stepId!r} runs workflow {step.workflowId!r}: "
                    "steps that run workflows are not supported"
                )
            refs[step.stepId] = _operation_ref(step.stepId, step.operationId, step.operationPath)
        # Which source each step uses.
        step_source: dict[str, str] = {}
        for step_id, (named, _operation_id, _pointer) in refs.items():
            if named is None:
                if len(openapi_sources) != 1:
                    raise WorkflowDefinitionError(
                        f"step {step_id!r}: with {len(openapi_sources)} OpenAPI source descriptions, the "
                        "operationId must name one ($sourceDescriptions.NAME.operationId)"
                    )
                named = openapi_sources[0].name
            if named not in {s.name for s in openapi_sources}:
                raise WorkflowDefinitionError(
                    f"step {step_id!r}: no OpenAPI source description named {named!r}"
                )
            step_source[step_id] = named
        descriptions: dict[str, OpenApiDescription | None] = {}
        chosen: dict[str, BuiltinBackend | None] = {}
        for source_desc in openapi_sources:
            name = source_desc.name
            if name not in step_source.values():
                continue
            descriptions[name], self.unread[name] = await self._description(name, source_desc.url)
            op_ids = [refs[s][1] for s, src in step_source.items() if src == name and refs[s][1] is not None]
            if name in self.backends:
                chosen[name] = BUILTIN_BACKENDS[self.backends[name]]
            else:
                chosen[name] = choose_backend(
                    [op for op in op_ids if op is not None], name=name, url=source_desc.url
                )
        plans: list[_StepPlan] = []
        index_of = workflow.step_index
        for step in workflow.steps:
            source = step_source[step.stepId]
            operation = self._operation(
                step.stepId, refs[step.stepId], source, descriptions[source], chosen[source]
            )
            params = self._params(step.stepId, [*workflow.parameters], [*step.parameters])
            missing = [
                p
                for p in operation.spec.path_params
                if not any(x.where == "path" and x.name == p for x in params)
            ]
            if missing:
                raise WorkflowDefinitionError(
                    f"step {step.stepId!r}: operation {operation.operation_id} ({operation.spec.method} "
                    f"{operation.spec.path}) needs path parameter(s) {', '.join(missing)}"
                )
            for p in params:
                if p.where == "path" and p.name not in operation.spec.path_params:
                    self.warn(
                        f"step {step.stepId!r}: path parameter {p.name!r} is not in "
                        f"{operation.spec.path}; ignored"
                    )
            body = step.requestBody
            payload = compile_value(body.payload) if body is not None and body.payload is not None else None
            replacements = (
                tuple((r.target, compile_value(r.value)) for r in body.replacements) if body else ()
            )
            if payload is not None and has_bare(payload):
                self._warn_bare(step.stepId, "requestBody")
            success = _criteria(step.successCriteria)
            on_success = tuple(_action(a) for a in (step.onSuccess or workflow.successActions))
            on_failure = tuple(_action(a) for a in (step.onFailure or workflow.failureActions))
            for action in (*on_success, *on_failure):
                if action.type == "goto" and action.step_id is None:
                    raise WorkflowDefinitionError(
                        f"step {step.stepId!r}: action {action.name!r} goes to another workflow, "
                        "which is not supported"
                    )
            for compiled in (*success, *(c for a in (*on_success, *on_failure) for c in a.criteria)):
                if compiled.kind == "comparison":
                    self.warn(
                        f"jsonpath criteria written as comparisons (e.g. `{compiled.condition}` in step "
                        f"{step.stepId!r}) are not RFC 9535 queries ({compiled.jsonpath_error}); they are "
                        "evaluated as comparisons against their context, as their authors meant",
                        key="comparison",
                    )
            outputs = tuple((key, compile_value(value)) for key, value in step.outputs.items())
            plans.append(
                _StepPlan(
                    step_id=step.stepId,
                    index=index_of[step.stepId],
                    operation=operation,
                    params=tuple(params),
                    content_type=body.contentType if body is not None else None,
                    payload=payload,
                    replacements=replacements,
                    success=success,
                    on_success=on_success,
                    on_failure=on_failure,
                    outputs=outputs,
                    guarded=bool(on_success) and all(a.criteria for a in on_success),
                )
            )
        return plans

    def _warn_bare(self, step_id: str, where: str) -> None:
        self.warn(
            f"values with runtime expressions written without braces (e.g. {where} of step {step_id!r}, "
            'like "Bearer $inputs.token") are not Arazzo 1.0.1, which writes "Bearer {$inputs.token}"; '
            "they are substituted as their authors meant",
            key="bare",
        )

    def _params(self, step_id: str, workflow_params: list[Any], step_params: list[Any]) -> list[_Param]:
        merged: dict[tuple[str, str], _Param] = {}
        for param in [*workflow_params, *step_params]:
            where = param.in_ or "query"
            compiled = compile_value(param.value)
            if has_bare(compiled):
                self._warn_bare(step_id, f"parameter {param.name}")
            key = (param.name.lower() if where == "header" else param.name, where)
            merged[key] = _Param(param.name, where, compiled)
        return list(merged.values())

    async def _description(self, name: str, url: str) -> tuple[OpenApiDescription | None, str]:
        """The source's description, or ``None`` and why it could not be read."""
        location = resolve_source_url(url, self.doc.location)
        if location is None:
            return None, "it is relative and the document was not read from a file"
        try:
            description = await read_openapi(location, fetch=self._fetch)
        except (OSError, ValueError, SdkError) as exc:
            return None, str(exc)
        logger.debug("source description %s read from %s", name, location)
        return description, ""

    def _operation(
        self,
        step_id: str,
        ref: tuple[str | None, str | None, str | None],
        source: str,
        description: OpenApiDescription | None,
        backend: BuiltinBackend | None,
    ) -> _Operation:
        _source, operation_id, pointer = ref
        spec: OperationSpec | None = None
        base_path = ""
        default_server: str | None = None
        origin = ""
        if pointer is not None:
            spec = _spec_from_pointer(pointer)
            if spec is None:
                raise WorkflowDefinitionError(
                    f"step {step_id!r}: operationPath #{pointer} is not #/paths/PATH/METHOD"
                )
            operation_id = f"{spec.method} {spec.path}"
            if description is not None:
                base_path, default_server, origin = (
                    description.base_path,
                    description.default_server,
                    "openapi",
                )
            elif backend is not None:
                base_path, default_server, origin = backend.base_path, backend.default_server, backend.title
            else:
                raise WorkflowConfigurationError(
                    f"step {step_id!r}: source description {source!r} could not be read, "
                    "so its server path is unknown"
                )
        else:
            assert operation_id is not None
            if description is not None and operation_id in description.operations:
                spec = description.operations[operation_id]
                base_path, default_server, origin = (
                    description.base_path,
                    description.default_server,
                    "openapi",
                )
            elif backend is not None and operation_id in backend.operations:
                spec = backend.operations[operation_id]
                base_path, default_server, origin = backend.base_path, backend.default_server, backend.title
                url = self.doc.source(source).url
                why = (
                    f"could not be read ({self.unread[source]})"
                    if description is None
                    else f"has no operation {operation_id!r}"
                )
                self.warn(
                    f"source description {source!r} ({url}) {why}: its operations are resolved "
                    f"with the built-in map of {backend.title}",
                    key=f"builtin:{source}",
                )
            else:
                known = sorted(set(description.operations) if description else set())
                known += sorted(set(backend.operations) if backend else set())
                where = (
                    f"the description of {source!r}" if description else f"source {source!r} (not readable)"
                )
                maps = (
                    f" or the built-in map of {backend.title}"
                    if backend
                    else " or any built-in operation map"
                )
                shown = ", ".join(known[:15]) + (" ..." if len(known) > 15 else "")
                raise UnknownOperationError(
                    f"step {step_id!r}: operationId {operation_id!r} is not in {where}{maps}"
                    + (f"; known: {shown}" if known else ""),
                    operation_id=operation_id,
                    known=known,
                )
        given = self.servers.get(source)
        if given is None and backend is not None:
            given = self.servers.get(backend.key)
        server = given or default_server
        if server is None:
            what = f" ({backend.title})" if backend is not None else ""
            raise WorkflowConfigurationError(
                f"no server URL for source description {source!r}{what}: "
                f"pass servers={{{source!r}: 'https://...'}} "
                f"(oqcs: --server {source}=URL)"
            )
        return _Operation(operation_id, source, spec, join_server(server, base_path), origin)

    # -- executing ------------------------------------------------------------------------------------

    def _client(self, operation: _Operation) -> HttpClient:
        client = self.clients.get(operation.base_url)
        if client is None:
            backend = self.backends.get(operation.source)
            label = (
                f"{operation.source} ({backend or operation.origin})"
                if operation.origin
                else operation.source
            )
            client = HttpClient(
                operation.base_url,
                vendor=label,
                timeout_s=self.request_timeout_s,
                retry=self.retry,
                allow_insecure_http=self.allow_insecure_http,
                rng=self.rng,
            )
            self.clients[operation.base_url] = client
        return client

    def _remaining(self) -> float:
        return self.deadline - anyio.current_time()

    async def _wait(self, seconds: float, why: str) -> None:
        if seconds <= 0:
            return
        if seconds >= self._remaining():
            raise WorkflowTimeoutError(
                f"workflow {self.workflow.workflowId!r}: {why} needs a wait of {seconds:.1f} s, which would "
                f"pass the deadline of {self.timeout_s} s"
            )
        await anyio.sleep(seconds)

    async def _send(self, plan: _StepPlan) -> tuple[Response, RequestView, str]:
        ctx = self.context()
        path_values: dict[str, Any] = {}
        query: list[tuple[str, str]] = []
        shown_query: list[tuple[str, str]] = []
        headers: dict[str, str | Secret] = {}
        shown_headers: dict[str, str] = {}
        cookies: list[str] = []
        for param in plan.params:
            value = evaluate_value(param.value, ctx)
            if param.where == "path":
                path_values[param.name] = value
                continue
            if value is None:
                self.warn(f"step {plan.step_id!r}: {param.where} parameter {param.name!r} is null; not sent")
                continue
            if param.where == "query":
                items = value if isinstance(value, list) else [value]
                for item in items:
                    query.append((param.name, reveal_text(item)))
                    secret = isinstance(item, Secret) or _SECRET_NAME.search(param.name)
                    shown_query.append((param.name, "***" if secret else to_text(item)))
            elif param.where == "header":
                headers[param.name] = value if isinstance(value, Secret) else to_text(value)
                secret = isinstance(value, Secret) or _SECRET_NAME.search(param.name)
                shown_headers[param.name] = "***" if secret else to_text(value)
            else:
                cookies.append(f"{param.name}={reveal_text(value)}")
        if cookies:
            headers["Cookie"] = Secret("; ".join(cookies))
            shown_headers["Cookie"] = "***"
        path = shown_path = plan.operation.spec.path
        for name in plan.operation.spec.path_params:
            value = path_values.get(name)
            text = reveal_text(value) if value is not None else ""
            if not text:
                raise StepFailedError(
                    f"step {plan.step_id!r}: path parameter {name!r} is null or empty; nothing was sent",
                    step_id=plan.step_id,
                )
            if any(segment in (".", "..") for segment in text.split("/")):
                raise StepFailedError(
                    f"step {plan.step_id!r}: path parameter {name!r} has a '.' or '..' segment; "
                    "nothing was sent",
                    step_id=plan.step_id,
                )
            path = path.replace("{" + name + "}", quote(text, safe=_PATH_SAFE))
            shown_path = shown_path.replace("{" + name + "}", quote(to_text(value), safe=_PATH_SAFE))
        body_value: Any = None
        json_body: Any = None
        data: bytes | None = None
        if plan.payload is not None:
            body_value = evaluate_value(plan.payload, ctx)
            for target, compiled in plan.replacements:
                try:
                    body_value = _set_pointer(body_value, target, evaluate_value(compiled, ctx))
                except ValueError as exc:
                    raise StepFailedError(f"step {plan.step_id!r}: {exc}", step_id=plan.step_id) from None
            content_type = plan.content_type or "application/json"
            if content_type.split(";")[0].strip().lower() == "application/json" and body_value is not None:
                json_body = _wire_json(body_value)
            elif isinstance(body_value, str | Secret):
                data = reveal_text(body_value).encode()
                headers["Content-Type"] = content_type
            elif "x-www-form-urlencoded" in content_type and isinstance(body_value, dict):
                data = urlencode({k: reveal_text(v) for k, v in body_value.items()}).encode()
                headers["Content-Type"] = content_type
            else:
                data = jsonlib.dumps(_wire_json(body_value), separators=(",", ":")).encode()
                headers["Content-Type"] = content_type
        target = path + (f"?{urlencode(query, quote_via=quote)}" if query else "")
        shown = (
            urlsplit(plan.operation.base_url).path.rstrip("/")
            + shown_path
            + (f"?{urlencode(shown_query, quote_via=quote, safe='*')}" if shown_query else "")
        )
        method = plan.operation.spec.method
        excluded = (
            (self.retry or RetryPolicy()).retry_statuses if method in IDEMPOTENT_METHODS else frozenset({429})
        )
        client = self._client(plan.operation)
        await client.start()
        response = await client.request(
            method,
            target,
            headers=headers,
            json=json_body,
            data=data,
            ok=_Answers(frozenset(excluded)),
        )
        request = RequestView(
            method=method,
            url=client.base_url + shown_path,
            headers=shown_headers,
            query=dict(shown_query),
            path=dict(path_values),
            body=body_value,
        )
        return response, request, shown

    def _retry_after(self, response: Response) -> float | None:
        for name in ("retry-after-ms", "x-ms-retry-after-ms"):
            raw = response.headers.get(name)
            if raw is not None and re.fullmatch(r"\d+(\.\d+)?", raw.strip()):
                return float(raw.strip()) / 1000.0
        return _parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))

    def _matches(self, action: _Action, ctx: ExpressionContext) -> bool:
        return all(evaluate_criterion(c, ctx) for c in action.criteria)

    def _record(self, record: StepRecord) -> None:
        self.result.steps.append(record)
        logger.info(
            "workflow %s: step %s %s %s -> %s, %s",
            self.workflow.workflowId,
            record.step_id,
            record.method,
            record.target,
            record.status,
            record.branch,
        )
        if self.on_step is not None:
            self.on_step(record)

    async def execute(self, plans: list[_StepPlan]) -> None:
        by_id = {plan.step_id: plan for plan in plans}
        index = 0
        executed = 0
        loops: dict[str, int] = {}
        retries: dict[tuple[str, str], int] = {}
        wait = 0.0
        wait_reason = ""
        while index < len(plans):
            plan = plans[index]
            if executed >= self.max_steps:
                raise StepLimitError(
                    f"workflow {self.workflow.workflowId!r} reached its limit of {self.max_steps} steps "
                    f"(about to run {plan.step_id!r} again); raise max_steps if the loop is meant to go on"
                )
            await self._wait(wait, wait_reason)
            executed += 1
            started = anyio.current_time()
            try:
                response, request, shown = await self._send(plan)
            except BackendError as exc:
                if anyio.current_time() >= self.deadline:
                    raise WorkflowTimeoutError(
                        f"workflow {self.workflow.workflowId!r} passed its deadline of {self.timeout_s} s "
                        f"in step {plan.step_id!r}: {exc}"
                    ) from exc
                exc.add_note(f"in step {plan.step_id!r} of workflow {self.workflow.workflowId!r}")
                raise
            body = _plain_body(response, self.warn, f"step {plan.step_id!r}")
            view = ResponseView(status=response.status, headers=response.headers, body=body)
            ctx = self.context(request, view)
            if plan.success:
                succeeded = all(evaluate_criterion(c, ctx) for c in plan.success)
            else:
                succeeded = 200 <= response.status < 300
            outputs: dict[str, Any] = {}
            action: _Action | None = None
            delay = 0.0
            kind: ActionKind
            next_index: int | None
            if succeeded:
                outputs = {key: evaluate_value(value, ctx) for key, value in plan.outputs}
                self.step_outputs[plan.step_id] = outputs
                retries = {k: v for k, v in retries.items() if k[0] != plan.step_id}
                action = next((a for a in plan.on_success if self._matches(a, ctx)), None)
                if action is None:
                    kind, next_index = "next", index + 1
                    if plan.guarded:
                        names = ", ".join(a.name for a in plan.on_success)
                        then = (
                            f"continuing with step {plans[index + 1].step_id!r}"
                            if index + 1 < len(plans)
                            else "the workflow ends here (last step)"
                        )
                        self.warn(
                            f"step {plan.step_id!r}: none of its onSuccess actions ({names}) matched; {then}"
                        )
                elif action.type == "end":
                    kind, next_index = "end", None
                else:
                    assert action.step_id is not None
                    kind, next_index = "goto", by_id[action.step_id].index
            else:
                kind, next_index, action, delay = self._on_failure(plan, ctx, response, retries)
            waited = wait
            wait, wait_reason = 0.0, ""
            if kind == "retry":
                wait, wait_reason = delay, f"retrying step {plan.step_id!r}"
            elif next_index is not None and next_index <= index:
                target = plans[next_index].step_id
                loops[target] = loops.get(target, 0) + 1
                wait = self.pacing.delay_s(loops[target], self.rng)
                retry_after = self._retry_after(response)
                if retry_after is not None:
                    wait = max(wait, retry_after)
                wait_reason = f"looping back to step {target!r}"
            record = StepRecord(
                step_id=plan.step_id,
                operation_id=plan.operation.operation_id,
                method=plan.operation.spec.method,
                target=shown,
                status=response.status,
                succeeded=succeeded,
                action=kind,
                action_name=action.name if action is not None else None,
                next_step=plans[next_index].step_id
                if next_index is not None and next_index < len(plans)
                else None,
                waited_s=waited,
                started_at=started,
                elapsed_s=anyio.current_time() - started,
                outputs=outputs,
            )
            self._record(record)
            if kind == "fail":
                vendor_message, _code, _parsed = extract_vendor_error(response.body, response.headers)
                criteria = " && ".join(c.condition for c in plan.success) or "a 2xx status"
                ended = f" (onFailure action {action.name!r} ends the workflow)" if action is not None else ""
                raise StepFailedError(
                    f"step {plan.step_id!r} ({plan.operation.operation_id}) failed: {criteria} does not hold "
                    f"for the answer {response.status}"
                    + (f": {vendor_message}" if vendor_message else "")
                    + ended,
                    step_id=plan.step_id,
                    status=response.status,
                    vendor_message=vendor_message,
                )
            if kind == "retry":
                continue
            if next_index is None:
                return
            index = next_index

    def _on_failure(
        self,
        plan: _StepPlan,
        ctx: ExpressionContext,
        response: Response,
        retries: dict[tuple[str, str], int],
    ) -> tuple[ActionKind, int | None, _Action | None, float]:
        for action in plan.on_failure:
            if not self._matches(action, ctx):
                continue
            if action.type == "retry":
                limit = 1 if action.retry_limit is None else action.retry_limit
                used = retries.get((plan.step_id, action.name), 0)
                if used >= limit:
                    continue
                retries[(plan.step_id, action.name)] = used + 1
                delay = self._retry_after(response)
                if delay is None:
                    delay = action.retry_after
                if delay is None:
                    delay = self.pacing.delay_s(used + 1, self.rng)
                return "retry", plan.index, action, delay
            if action.type == "end":
                return "fail", None, action, 0.0
            assert action.step_id is not None
            return "goto", self.index_of[action.step_id], action, 0.0
        return "fail", None, None, 0.0

    def finish_outputs(self) -> None:
        ctx = self.context()
        for key, value in self.workflow.outputs.items():
            self.result.outputs[key] = evaluate_value(compile_value(value), ctx)

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        self.result.requests_sent = sum(c.requests_sent for c in [*self.clients.values(), *self.fetchers])
        self.result.elapsed_s = anyio.current_time() - self.started


async def _document(source: ArazzoDocument | str | os.PathLike[str] | Mapping[str, Any]) -> ArazzoDocument:
    if isinstance(source, ArazzoDocument):
        return source
    if isinstance(source, Mapping):
        return parse_document(source)
    if isinstance(source, str) and ("\n" in source or source.lstrip().startswith("{")):
        return parse_document(source)
    path = anyio.Path(os.fspath(source))
    try:
        text = await path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkflowDefinitionError(f"no Arazzo document at {source}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowDefinitionError(f"cannot read {source}: {exc}") from None
    return parse_document(text, location=str(await path.resolve()))


async def run_workflow(
    document: ArazzoDocument | str | os.PathLike[str] | Mapping[str, Any],
    workflow_id: str | None = None,
    inputs: Mapping[str, Any] | None = None,
    *,
    servers: Mapping[str, str] | None = None,
    backends: Mapping[str, str] | None = None,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    max_steps: int = DEFAULT_MAX_STEPS,
    pacing: Pacing | None = None,
    request_timeout_s: float = 30.0,
    retry: RetryPolicy | None = None,
    allow_insecure_http: bool = False,
    on_step: Callable[[StepRecord], Any] | None = None,
    rng: random.Random | None = None,
) -> WorkflowResult:
    """Run workflow ``workflow_id`` (default: the document's only one) of an Arazzo 1.0.x document.

    ``document``: an :class:`ArazzoDocument`, YAML/JSON text (a str with a line break), parsed data,
    or a file path (relative source URLs resolve against it). ``servers`` maps source-description
    names or backend keys (``ibm``, ``azure``, ``databricks``, ``windmill``) to base URLs;
    ``backends`` forces a source's built-in map (``{"jobsApi": "ibm"}``). ``on_step`` is called
    with each :class:`StepRecord` as it completes. See the module docstring for the rest.
    """
    if not (isinstance(max_steps, int) and max_steps >= 1):
        raise WorkflowConfigurationError("max_steps must be a positive integer")
    if timeout_s is not None and not (
        isinstance(timeout_s, int | float) and timeout_s > 0 and math.isfinite(timeout_s)
    ):
        raise WorkflowConfigurationError(
            "timeout_s must be a positive number of seconds, or None for no deadline"
        )
    doc = await _document(document)
    workflow = doc.workflow(workflow_id)
    run = _Run(
        doc,
        workflow,
        servers=servers or {},
        backends=backends or {},
        timeout_s=timeout_s,
        max_steps=max_steps,
        pacing=pacing or Pacing(),
        request_timeout_s=request_timeout_s,
        retry=retry,
        allow_insecure_http=allow_insecure_http,
        on_step=on_step,
        rng=rng or random.Random(),
    )
    run.inputs = _check_inputs(workflow, inputs or {}, run.warn)
    run.started = anyio.current_time()
    run.deadline = run.started + timeout_s if timeout_s is not None else math.inf
    error: BaseException | None = None
    async with AsyncExitStack() as stack:
        stack.push_async_callback(run.close)
        with anyio.CancelScope(deadline=run.deadline) as scope:
            try:
                plans = await run.plan()
                await run.execute(plans)
            except SdkError as exc:
                error = exc
        if scope.cancelled_caught and error is None:
            error = WorkflowTimeoutError(
                f"workflow {workflow.workflowId!r} did not finish within its deadline of {timeout_s} s "
                f"({len(run.result.steps)} steps run)"
            )
    if error is None or run.result.steps:
        run.finish_outputs()
    if error is not None:
        if isinstance(error, WorkflowError):
            error.result = run.result
        else:
            error.workflow_result = run.result  # type: ignore[attr-defined]
        raise error
    return run.result
