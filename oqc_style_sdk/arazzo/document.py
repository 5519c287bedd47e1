"""Arazzo 1.0.x documents: loading (YAML or JSON, also after a leading title line) and validation.

:func:`load_document` / :func:`parse_document` give an :class:`ArazzoDocument` (pydantic models of
the part of Arazzo 1.0.1 this executor runs) or raise
:class:`~oqc_style_sdk.arazzo.errors.WorkflowDefinitionError` listing every problem with its place
in the document (``workflows[0].steps[1].onSuccess[0].stepId: ...``): unknown fields (``x-``
extensions aside), wrong types, duplicate ids, ``goto`` to a step that does not exist, runtime
expressions and criteria that do not parse.

Reusable objects (``reference: $components.parameters.x``) are replaced by the component they
name while loading. Not supported, and refused with a clear error when a workflow is run: steps
that call another workflow (``workflowId``), ``goto`` another workflow, ``dependsOn``, ``xpath``
criteria.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from .criteria import ConditionError, compile_criterion
from .errors import WorkflowDefinitionError
from .expressions import ExpressionError, compile_value, expressions_in

__all__ = [
    "ArazzoDocument",
    "Criterion",
    "ExpressionType",
    "FailureAction",
    "Info",
    "Parameter",
    "RequestBody",
    "SourceDescription",
    "Step",
    "SuccessAction",
    "Workflow",
    "load_document",
    "parse_document",
]

MAX_DOCUMENT_BYTES = 5_000_000
_ID = r"^[A-Za-z0-9_\-]+$"
_OUTPUT_NAME = re.compile(r"^[a-zA-Z0-9.\-_]+$")
_START = re.compile(r"^(?:arazzo\s*:|\{\s*\"arazzo\"\s*:)", re.MULTILINE)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, coerce_numbers_to_str=True)

    #: Specification extensions (``x-...`` fields) of this object.
    extensions: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _split_extensions(cls, data: Any) -> Any:
        if isinstance(data, dict):
            extensions = {k: v for k, v in data.items() if isinstance(k, str) and k.startswith("x-")}
            if extensions:
                data = {k: v for k, v in data.items() if k not in extensions}
                data["extensions"] = extensions
        return data


class Info(_Model):
    title: str
    version: str
    summary: str | None = None
    description: str | None = None


class SourceDescription(_Model):
    name: str = Field(pattern=_ID)
    url: str
    type: Literal["openapi", "arazzo"] = "openapi"


class ExpressionType(_Model):
    type: Literal["jsonpath", "xpath", "jsonpointer"]
    version: str


class Criterion(_Model):
    condition: str
    context: str | None = None
    type: Literal["simple", "regex", "jsonpath", "xpath"] | ExpressionType | None = None

    @property
    def kind(self) -> str:
        if isinstance(self.type, ExpressionType):
            return self.type.type
        return self.type or "simple"

    @property
    def version(self) -> str | None:
        return self.type.version if isinstance(self.type, ExpressionType) else None


class Parameter(_Model):
    name: str
    in_: Literal["path", "query", "header", "cookie"] | None = Field(default=None, alias="in")
    value: Any = None

    @model_validator(mode="before")
    @classmethod
    def _value_required(cls, data: Any) -> Any:
        if isinstance(data, dict) and "value" not in data:
            raise ValueError("a parameter needs a 'value'")
        return data


class SuccessAction(_Model):
    name: str
    type: Literal["end", "goto"]
    stepId: str | None = None
    workflowId: str | None = None
    criteria: list[Criterion] = Field(default_factory=list)

    @model_validator(mode="after")
    def _target(self) -> SuccessAction:
        _check_target(self.type, self.stepId, self.workflowId)
        return self


class FailureAction(_Model):
    name: str
    type: Literal["end", "retry", "goto"]
    stepId: str | None = None
    workflowId: str | None = None
    retryAfter: float | None = Field(default=None, ge=0)
    retryLimit: int | None = Field(default=None, ge=0)
    criteria: list[Criterion] = Field(default_factory=list)

    @model_validator(mode="after")
    def _target(self) -> FailureAction:
        if self.type == "retry":
            if self.stepId is not None or self.workflowId is not None:
                raise ValueError("a 'retry' that first runs another step or workflow is not supported")
        else:
            _check_target(self.type, self.stepId, self.workflowId)
        if self.type != "retry" and (self.retryAfter is not None or self.retryLimit is not None):
            raise ValueError("retryAfter and retryLimit apply to type 'retry' only")
        return self


def _check_target(kind: str, step_id: str | None, workflow_id: str | None) -> None:
    if kind == "goto" and (step_id is None) == (workflow_id is None):
        raise ValueError("a 'goto' names exactly one of stepId or workflowId")
    if kind == "end" and (step_id is not None or workflow_id is not None):
        raise ValueError("an 'end' names no stepId or workflowId")


class PayloadReplacement(_Model):
    target: str
    value: Any = None


class RequestBody(_Model):
    contentType: str | None = None
    payload: Any = None
    replacements: list[PayloadReplacement] = Field(default_factory=list)


class Step(_Model):
    stepId: str = Field(pattern=_ID)
    description: str | None = None
    operationId: str | None = None
    operationPath: str | None = None
    workflowId: str | None = None
    parameters: list[Parameter] = Field(default_factory=list)
    requestBody: RequestBody | None = None
    successCriteria: list[Criterion] = Field(default_factory=list)
    onSuccess: list[SuccessAction] = Field(default_factory=list)
    onFailure: list[FailureAction] = Field(default_factory=list)
    outputs: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_target(self) -> Step:
        given = [self.operationId, self.operationPath, self.workflowId]
        if sum(value is not None for value in given) != 1:
            raise ValueError("a step names exactly one of operationId, operationPath or workflowId")
        return self


class Workflow(_Model):
    workflowId: str = Field(pattern=_ID)
    summary: str | None = None
    description: str | None = None
    inputs: dict[str, Any] | None = None
    dependsOn: list[str] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)
    successActions: list[SuccessAction] = Field(default_factory=list)
    failureActions: list[FailureAction] = Field(default_factory=list)
    outputs: dict[str, str] = Field(default_factory=dict)
    parameters: list[Parameter] = Field(default_factory=list)

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.stepId == step_id:
                return step
        raise KeyError(step_id)

    @property
    def step_index(self) -> dict[str, int]:
        return {step.stepId: index for index, step in enumerate(self.steps)}


class ArazzoDocument(_Model):
    arazzo: str = Field(pattern=r"^1\.0\.\d+$")
    info: Info
    sourceDescriptions: list[SourceDescription] = Field(min_length=1)
    workflows: list[Workflow] = Field(min_length=1)
    components: dict[str, Any] | None = None

    _location: str | None = PrivateAttr(default=None)

    @property
    def location(self) -> str | None:
        """The file path or URL the document was read from (relative source URLs resolve against it)."""
        return self._location

    def workflow(self, workflow_id: str | None = None) -> Workflow:
        """The workflow with that id; with ``None``, the only one (an error if there are several)."""
        if workflow_id is None:
            if len(self.workflows) == 1:
                return self.workflows[0]
            ids = ", ".join(w.workflowId for w in self.workflows)
            raise WorkflowDefinitionError(f"the document has several workflows; choose one of: {ids}")
        for workflow in self.workflows:
            if workflow.workflowId == workflow_id:
                return workflow
        ids = ", ".join(w.workflowId for w in self.workflows)
        raise WorkflowDefinitionError(f"no workflow {workflow_id!r} in the document; it has: {ids}")

    def source(self, name: str) -> SourceDescription:
        for source in self.sourceDescriptions:
            if source.name == name:
                return source
        raise KeyError(name)


# --------------------------------------------------------------------------------------------------
# Loading


def _json_compatible(value: Any) -> Any:
    """YAML 1.1 turns some scalars into dates; give them back as the strings they were written as."""
    if isinstance(value, dict):
        return {str(key): _json_compatible(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_compatible(item) for item in value]
    if isinstance(value, _dt.date | _dt.datetime | _dt.time):
        return value.isoformat()
    return value


def _parse_text(text: str, where: str) -> Any:
    if len(text.encode("utf-8", errors="replace")) > MAX_DOCUMENT_BYTES:
        raise WorkflowDefinitionError(f"{where} is larger than {MAX_DOCUMENT_BYTES} bytes")
    offset = 0
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    if not (isinstance(data, dict) and "arazzo" in data):
        # The vendor seeds put a title (a file name, a page's text) before the document itself.
        start = _START.search(text)
        if start is None:
            raise WorkflowDefinitionError(
                f"{where} holds no Arazzo document (expected a line starting with 'arazzo: 1.0.x')"
            )
        offset = text.count("\n", 0, start.start())
        body = text[start.start() :]
        try:
            data = yaml.safe_load(body)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" at line {mark.line + 1 + offset}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise WorkflowDefinitionError(f"{where} is not valid YAML{line}: {problem}") from None
    if not isinstance(data, dict):
        raise WorkflowDefinitionError(f"{where} is not an Arazzo document (not a mapping)")
    return _json_compatible(data)


def _loc(parts: tuple[int | str, ...]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(document)"


def _pydantic_problems(error: ValidationError) -> list[str]:
    problems: list[str] = []
    for item in error.errors(include_url=False):
        loc = tuple(part for part in item["loc"] if not (isinstance(part, str) and "[" in part))
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (extensions start with 'x-')"
        problems.append(f"{_loc(loc)}: {message}")
    return problems


def _resolve_references(data: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """Replace ``{reference: $components.KIND.NAME}`` items by the component they name."""
    components = data.get("components") if isinstance(data.get("components"), dict) else {}
    assert isinstance(components, dict)

    def resolve(item: Any, kind: str, where: str) -> Any:
        if not (isinstance(item, dict) and "reference" in item):
            return item
        ref = item["reference"]
        match = (
            re.fullmatch(r"\$components\.(\w+)\.([A-Za-z0-9_.\-]+)", ref) if isinstance(ref, str) else None
        )
        if match is None or match.group(1) != kind:
            problems.append(f"{where}.reference: expected $components.{kind}.NAME, found {ref!r}")
            return item
        group = components.get(kind)
        target = group.get(match.group(2)) if isinstance(group, dict) else None
        if not isinstance(target, dict):
            problems.append(f"{where}.reference: no component {ref}")
            return item
        resolved = dict(target)
        if "value" in item:
            resolved["value"] = item["value"]
        return resolved

    def resolve_list(owner: dict[str, Any], key: str, kind: str, where: str) -> None:
        items = owner.get(key)
        if isinstance(items, list):
            owner[key] = [resolve(item, kind, f"{where}.{key}[{i}]") for i, item in enumerate(items)]

    for w_index, workflow in enumerate(data.get("workflows") or []):
        if not isinstance(workflow, dict):
            continue
        where = f"workflows[{w_index}]"
        resolve_list(workflow, "parameters", "parameters", where)
        resolve_list(workflow, "successActions", "successActions", where)
        resolve_list(workflow, "failureActions", "failureActions", where)
        for s_index, step in enumerate(workflow.get("steps") or []):
            if isinstance(step, dict):
                step_where = f"{where}.steps[{s_index}]"
                resolve_list(step, "parameters", "parameters", step_where)
                resolve_list(step, "onSuccess", "successActions", step_where)
                resolve_list(step, "onFailure", "failureActions", step_where)
    return data


def _check_criteria(criteria: list[Criterion], where: str, step_ids: set[str], problems: list[str]) -> None:
    for index, criterion in enumerate(criteria):
        spot = f"{where}[{index}]"
        if criterion.kind == "xpath":
            problems.append(f"{spot}.type: xpath criteria are not supported")
            continue
        try:
            compile_criterion(criterion.condition, criterion.kind, criterion.context, criterion.version)
        except ConditionError as exc:
            problems.append(f"{spot}.condition: {exc}")


def _check_semantics(doc: ArazzoDocument) -> list[str]:
    problems: list[str] = []
    workflow_ids = [w.workflowId for w in doc.workflows]
    sources = [s.name for s in doc.sourceDescriptions]
    for name in {x for x in sources if sources.count(x) > 1}:
        problems.append(f"sourceDescriptions: the name {name!r} is used more than once")
    for name in {x for x in workflow_ids if workflow_ids.count(x) > 1}:
        problems.append(f"workflows: the workflowId {name!r} is used more than once")
    for w_index, workflow in enumerate(doc.workflows):
        where = f"workflows[{w_index}]"
        ids = [s.stepId for s in workflow.steps]
        step_ids = set(ids)
        for name in sorted({x for x in ids if ids.count(x) > 1}):
            problems.append(f"{where}.steps: the stepId {name!r} is used more than once")
        for key, value in workflow.outputs.items():
            if not _OUTPUT_NAME.match(key):
                problems.append(f"{where}.outputs.{key}: not a valid output name")
            _check_value(value, f"{where}.outputs.{key}", step_ids, problems)
        actions: list[tuple[str, SuccessAction | FailureAction]] = [
            (f"{where}.successActions[{i}]", a) for i, a in enumerate(workflow.successActions)
        ] + [(f"{where}.failureActions[{i}]", a) for i, a in enumerate(workflow.failureActions)]
        for p_index, param in enumerate(workflow.parameters):
            _check_value(param.value, f"{where}.parameters[{p_index}].value", step_ids, problems)
        for s_index, step in enumerate(workflow.steps):
            spot = f"{where}.steps[{s_index}]"
            for p_index, param in enumerate(step.parameters):
                if param.in_ is None and step.workflowId is None:
                    problems.append(f"{spot}.parameters[{p_index}].in: required for an operation's parameter")
                _check_value(param.value, f"{spot}.parameters[{p_index}].value", step_ids, problems)
            if step.requestBody is not None:
                _check_value(step.requestBody.payload, f"{spot}.requestBody.payload", step_ids, problems)
                for r_index, repl in enumerate(step.requestBody.replacements):
                    _check_value(
                        repl.value, f"{spot}.requestBody.replacements[{r_index}]", step_ids, problems
                    )
            for key, value in step.outputs.items():
                if not _OUTPUT_NAME.match(key):
                    problems.append(f"{spot}.outputs.{key}: not a valid output name")
                _check_value(value, f"{spot}.outputs.{key}", step_ids, problems)
            _check_criteria(step.successCriteria, f"{spot}.successCriteria", step_ids, problems)
            actions += [(f"{spot}.onSuccess[{i}]", a) for i, a in enumerate(step.onSuccess)]
            actions += [(f"{spot}.onFailure[{i}]", a) for i, a in enumerate(step.onFailure)]
        for spot, action in actions:
            if action.stepId is not None and action.stepId not in step_ids:
                problems.append(
                    f"{spot}.stepId: no step {action.stepId!r} in workflow {workflow.workflowId!r}"
                )
            if action.workflowId is not None and action.workflowId not in workflow_ids:
                problems.append(f"{spot}.workflowId: no workflow {action.workflowId!r} in the document")
            _check_criteria(action.criteria, f"{spot}.criteria", step_ids, problems)
    return problems


def _check_value(value: Any, where: str, step_ids: set[str], problems: list[str]) -> None:
    try:
        compiled = compile_value(value)
    except ExpressionError as exc:
        problems.append(f"{where}: {exc}")
        return
    for expr in expressions_in(compiled):
        if expr.step_id is not None and expr.step_id not in step_ids:
            problems.append(f"{where}: {expr.text} names no step of this workflow")


def parse_document(source: str | Mapping[str, Any], *, location: str | None = None) -> ArazzoDocument:
    """An Arazzo document from YAML/JSON text (anything before its ``arazzo:`` line is skipped) or
    from already-parsed data. ``location`` (a path or URL) anchors relative source URLs."""
    where = location or "the document"
    raw = (
        _parse_text(source, where) if isinstance(source, str) else json.loads(json.dumps(source, default=str))
    )
    if not isinstance(raw, dict):
        raise WorkflowDefinitionError(f"{where} is not an Arazzo document (not a mapping)")
    problems: list[str] = []
    raw = _resolve_references(raw, problems)
    if problems:
        raise WorkflowDefinitionError(f"{where} is not a valid Arazzo 1.0 document", problems)
    try:
        doc = ArazzoDocument.model_validate(raw)
    except ValidationError as exc:
        raise WorkflowDefinitionError(
            f"{where} is not a valid Arazzo 1.0 document", _pydantic_problems(exc)
        ) from None
    problems = _check_semantics(doc)
    if problems:
        raise WorkflowDefinitionError(f"{where} is not a valid Arazzo 1.0 document", problems)
    doc._location = location
    return doc


def load_document(path: str | os.PathLike[str]) -> ArazzoDocument:
    """Read and parse an Arazzo document file (blocking: use from sync code, or see the runner,
    which reads files off the event loop)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkflowDefinitionError(f"no Arazzo document at {file}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowDefinitionError(f"cannot read {file}: {exc}") from None
    return parse_document(text, location=str(file.resolve()))
