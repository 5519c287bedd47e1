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
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

import anyio

from .._http import IDEMPOTENT_METHODS, HttpClient, Response, RetryPolicy, Secret, extract_vendor_error
from .._http import parse_retry_after as _parse_retry_after
from ..exceptions import BackendError, SdkError
from .criteria import evaluate_criterion
from .document import ArazzoDocument, Workflow, parse_document
from .errors import (
    StepFailedError,
    StepLimitError,
    WorkflowConfigurationError,
    WorkflowDefinitionError,
    WorkflowError,
    WorkflowTimeoutError,
)
from .expressions import (
    ExpressionContext,
    RequestView,
    ResponseView,
    compile_value,
    evaluate_value,
    reveal_text,
    to_text,
)
from .plan import SECRET_NAME, Action, Answers, Connections, Operation, Planner, StepPlan, check_inputs
from .result import ActionKind, StepRecord, WorkflowResult

__all__ = ["Pacing", "StepRecord", "WorkflowResult", "run_workflow"]


logger = logging.getLogger("oqc_style_sdk.arazzo")

DEFAULT_TIMEOUT_S: Final = 300.0
DEFAULT_MAX_STEPS: Final = 200
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
        connections: Connections,
        timeout_s: float | None,
        max_steps: int,
        pacing: Pacing,
        on_step: Callable[[StepRecord], Any] | None,
        rng: random.Random,
    ) -> None:
        self.doc = doc
        self.workflow = workflow
        self.connections = connections
        self.timeout_s = timeout_s
        self.max_steps = max_steps
        self.pacing = pacing
        self.on_step = on_step
        self.rng = rng
        self.result = WorkflowResult(workflow.workflowId)
        self.inputs: dict[str, Any] = {}
        self.step_outputs: dict[str, dict[str, Any]] = {}
        self.step_ids = frozenset(s.stepId for s in workflow.steps)
        self.index_of = workflow.step_index
        self.clients: dict[str, HttpClient] = {}
        self.planner = Planner(doc, workflow, connections=connections, warn=self.warn)
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

    # -- executing ------------------------------------------------------------------------------------

    def _client(self, operation: Operation) -> HttpClient:
        client = self.clients.get(operation.base_url)
        if client is None:
            backend = self.connections.backends.get(operation.source)
            label = (
                f"{operation.source} ({backend or operation.origin})"
                if operation.origin
                else operation.source
            )
            client = self.connections.client(operation.base_url, label, self.rng)
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

    async def _send(self, plan: StepPlan) -> tuple[Response, RequestView, str]:
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
                    secret = isinstance(item, Secret) or SECRET_NAME.search(param.name)
                    shown_query.append((param.name, "***" if secret else to_text(item)))
            elif param.where == "header":
                headers[param.name] = value if isinstance(value, Secret) else to_text(value)
                secret = isinstance(value, Secret) or SECRET_NAME.search(param.name)
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
            (self.connections.retry or RetryPolicy()).retry_statuses
            if method in IDEMPOTENT_METHODS
            else frozenset({429})
        )
        client = self._client(plan.operation)
        await client.start()
        response = await client.request(
            method,
            target,
            headers=headers,
            json=json_body,
            data=data,
            ok=Answers(frozenset(excluded)),
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

    def _matches(self, action: Action, ctx: ExpressionContext) -> bool:
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

    async def execute(self, plans: list[StepPlan]) -> None:
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
            action: Action | None = None
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
        plan: StepPlan,
        ctx: ExpressionContext,
        response: Response,
        retries: dict[tuple[str, str], int],
    ) -> tuple[ActionKind, int | None, Action | None, float]:
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
        self.result.requests_sent = sum(
            c.requests_sent for c in [*self.clients.values(), *self.planner.fetchers]
        )
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
        connections=Connections(
            servers=dict(servers or {}),
            backends=dict(backends or {}),
            request_timeout_s=request_timeout_s,
            retry=retry,
            allow_insecure_http=allow_insecure_http,
        ),
        timeout_s=timeout_s,
        max_steps=max_steps,
        pacing=pacing or Pacing(),
        on_step=on_step,
        rng=rng or random.Random(),
    )
    run.inputs = check_inputs(workflow, inputs or {}, run.warn)
    run.started = anyio.current_time()
    run.deadline = run.started + timeout_s if timeout_s is not None else math.inf
    error: BaseException | None = None
    async with AsyncExitStack() as stack:
        stack.push_async_callback(run.close)
        with anyio.CancelScope(deadline=run.deadline) as scope:
            try:
                plans = await run.planner.plan()
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
