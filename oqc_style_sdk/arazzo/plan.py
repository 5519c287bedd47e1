"""A workflow run's plan: every step's operation, server, parameters, body and actions, resolved
before the first request is sent (unknown operations, missing path parameters and missing server URLs
are errors here, never half-way through a run)."""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from .._http import HttpClient, RetryPolicy, Secret
from ..exceptions import SdkError
from .criteria import CompiledCriterion, compile_criterion
from .document import ArazzoDocument, Criterion, FailureAction, SuccessAction, Workflow
from .errors import (
    MissingInputError,
    UnknownOperationError,
    WorkflowConfigurationError,
    WorkflowDefinitionError,
    WorkflowInputError,
)
from .expressions import CompiledValue, compile_value, has_bare
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

__all__ = ["Action", "Answers", "Connections", "Operation", "Param", "Planner", "StepPlan", "check_inputs"]

logger = logging.getLogger("oqc_style_sdk.arazzo")

#: Redirect statuses are never handed to a step to judge: the HTTP client deals with them.
REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
#: Input and parameter names that hold credentials: their values become ``Secret``.
SECRET_NAME: Final = re.compile(r"(?i)(token|secret|password|passwd|api[-_]?key|credential|authorization)")

# --------------------------------------------------------------------------------------------------
# Plan: everything decided before the first request


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: str
    value: CompiledValue


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    type: str
    step_id: str | None
    retry_after: float | None
    retry_limit: int | None
    criteria: tuple[CompiledCriterion, ...]


@dataclass(frozen=True, slots=True)
class Operation:
    operation_id: str
    source: str
    spec: OperationSpec
    base_url: str
    origin: str


@dataclass(frozen=True, slots=True)
class StepPlan:
    step_id: str
    index: int
    operation: Operation
    params: tuple[Param, ...]
    content_type: str | None
    payload: CompiledValue | None
    replacements: tuple[tuple[str, CompiledValue], ...]
    success: tuple[CompiledCriterion, ...]
    on_success: tuple[Action, ...]
    on_failure: tuple[Action, ...]
    outputs: tuple[tuple[str, CompiledValue], ...]
    #: onSuccess actions exist but all have criteria (so "none matched" is worth a warning)
    guarded: bool


class Answers(Container[int]):
    """Statuses the HttpClient hands back for the step to judge (it retries/raises on the rest)."""

    def __init__(self, excluded: frozenset[int]) -> None:
        self._excluded = excluded | REDIRECTS

    def __contains__(self, status: object) -> bool:
        return isinstance(status, int) and 100 <= status <= 599 and status not in self._excluded


def _criteria(items: list[Criterion]) -> tuple[CompiledCriterion, ...]:
    return tuple(compile_criterion(c.condition, c.kind, c.context, c.version) for c in items)


def _action(action: SuccessAction | FailureAction) -> Action:
    retry_after = action.retryAfter if isinstance(action, FailureAction) else None
    retry_limit = action.retryLimit if isinstance(action, FailureAction) else None
    return Action(
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


def check_inputs(workflow: Workflow, given: Mapping[str, Any], warn: Callable[[str], None]) -> dict[str, Any]:
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
        if isinstance(value, str) and (password or SECRET_NAME.search(name)):
            values[name] = Secret(value)
    return values


# --------------------------------------------------------------------------------------------------
# The run


@dataclass(frozen=True, slots=True)
class Connections:
    """Where a run's sources are served (``servers``, ``backends``: the caller's overrides) and how
    its HTTP clients are made, for the step calls and the description fetches alike."""

    servers: Mapping[str, str]
    backends: Mapping[str, str]
    request_timeout_s: float
    retry: RetryPolicy | None
    allow_insecure_http: bool

    def client(self, base_url: str, vendor: str, rng: random.Random | None = None) -> HttpClient:
        """A client of ``base_url`` with the run's request timeout, retry policy and HTTP rule."""
        return HttpClient(
            base_url,
            vendor=vendor,
            timeout_s=self.request_timeout_s,
            retry=self.retry,
            allow_insecure_http=self.allow_insecure_http,
            rng=rng,
        )


class Planner:
    """Resolves a workflow's steps against its sources: their OpenAPI descriptions when they can be
    read, else the built-in operation map of the backend whose operations match."""

    def __init__(
        self, doc: ArazzoDocument, workflow: Workflow, *, connections: Connections, warn: Callable[..., None]
    ) -> None:
        self.doc = doc
        self.workflow = workflow
        self.connections = connections
        self.warn = warn
        #: Why each source's description could not be read ("" when it was).
        self.unread: dict[str, str] = {}
        #: The clients that fetched descriptions (their requests count as the run's).
        self.fetchers: list[HttpClient] = []

    async def _fetch(self, url: str) -> bytes:
        parts = urlsplit(url)
        client = self.connections.client(
            f"{parts.scheme}://{parts.netloc}", vendor=f"source description at {parts.netloc}"
        )
        self.fetchers.append(client)
        async with client:
            response = await client.get(parts.path + (f"?{parts.query}" if parts.query else ""))
        return response.body

    async def plan(self) -> list[StepPlan]:
        workflow, doc = self.workflow, self.doc
        if workflow.dependsOn:
            raise WorkflowDefinitionError(
                f"workflow {workflow.workflowId!r} dependsOn other workflows, "
                "which this executor does not run"
            )
        known = {s.name for s in doc.sourceDescriptions} | set(BUILTIN_BACKENDS)
        unknown = sorted(set(self.connections.servers) - known)
        if unknown:
            raise WorkflowConfigurationError(
                f"unknown server name(s) {', '.join(map(repr, unknown))}: use a source description name "
                f"({', '.join(s.name for s in doc.sourceDescriptions)}) or a backend "
                f"({', '.join(BUILTIN_BACKENDS)})"
            )
        for source, backend in self.connections.backends.items():
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
            if name in self.connections.backends:
                chosen[name] = BUILTIN_BACKENDS[self.connections.backends[name]]
            else:
                chosen[name] = choose_backend(
                    [op for op in op_ids if op is not None], name=name, url=source_desc.url
                )
        plans: list[StepPlan] = []
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
                StepPlan(
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

    def _params(self, step_id: str, workflow_params: list[Any], step_params: list[Any]) -> list[Param]:
        merged: dict[tuple[str, str], Param] = {}
        for param in [*workflow_params, *step_params]:
            where = param.in_ or "query"
            compiled = compile_value(param.value)
            if has_bare(compiled):
                self._warn_bare(step_id, f"parameter {param.name}")
            key = (param.name.lower() if where == "header" else param.name, where)
            merged[key] = Param(param.name, where, compiled)
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
    ) -> Operation:
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
        given = self.connections.servers.get(source)
        if given is None and backend is not None:
            given = self.connections.servers.get(backend.key)
        server = given or default_server
        if server is None:
            what = f" ({backend.title})" if backend is not None else ""
            raise WorkflowConfigurationError(
                f"no server URL for source description {source!r}{what}: "
                f"pass servers={{{source!r}: 'https://...'}} "
                f"(oqcs: --server {source}=URL)"
            )
        return Operation(operation_id, source, spec, join_server(server, base_path), origin)
