"""``oqcs workflow``: run Arazzo workflows from a terminal.

```
oqcs workflow run FILE [--workflow ID] [--input NAME=VALUE ...] [--input-env NAME=ENV_VAR ...]
                       [--server NAME=URL ...] [--backend SOURCE=BACKEND ...] [--timeout S]
                       [--max-steps N] [--poll-initial S] [--poll-max S] [--json]
oqcs workflow show FILE                     the workflows, their inputs, steps and outputs
```

Wired into :mod:`oqc_style_sdk.cli` by :func:`add_workflow_parser` and :func:`run_workflow_command`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from ..exceptions import BackendError, ConfigurationError, SdkError
from .document import ArazzoDocument, Workflow, load_document
from .errors import (
    StepFailedError,
    StepLimitError,
    WorkflowError,
    WorkflowInputError,
    WorkflowTimeoutError,
)
from .operations import BUILTIN_BACKENDS
from .result import StepRecord, WorkflowResult
from .runner import DEFAULT_MAX_STEPS, DEFAULT_TIMEOUT_S, Pacing, run_workflow

__all__ = ["add_workflow_parser", "run_workflow_command"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 4
EXIT_BACKEND = 5

_EPILOG = f"""examples:
  oqcs workflow run ibm-cancel.yaml --input-env accessToken=IBM_TOKEN --input serviceCrn=crn:... \\
      --input apiVersion=2026-04-15 --input jobId=d1abc --server jobsApi=https://quantum.cloud.ibm.com
  oqcs workflow run databricks-cancel.yaml --input runId=42 --input-env token=DATABRICKS_TOKEN \\
      --server databricks=https://adb-123.4.azuredatabricks.net

--input values are read by the type the workflow declares (integer, number, boolean; object and array
as JSON). --input-env reads a value (a token) from an environment variable instead of the command line.
--server NAME is a source description's name or a backend ({", ".join(BUILTIN_BACKENDS)}); a URL
without a path gets the API's base path (IBM /api/v1, Databricks /api/2.2, Windmill /api).

exit codes: 0 the workflow ended   1 a step failed   2 bad usage, document or inputs
            4 the deadline or the step limit was reached   5 the backend or network failed
"""


def add_workflow_parser(subparsers: Any) -> None:
    """Add ``workflow`` (with ``run`` and ``show``) to an argparse sub-parser collection."""
    parser = subparsers.add_parser(
        "workflow",
        help="run Arazzo workflows (the vendors' own seed workflows included)",
        description="Run Arazzo 1.0 workflows against vendor APIs, paced and bounded.",
    )
    actions = parser.add_subparsers(dest="workflow_command", required=True, metavar="ACTION")
    run = actions.add_parser(
        "run",
        help="run one workflow and print each step, its branch and the outputs",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("file", type=Path, help="the Arazzo document (YAML or JSON)")
    run.add_argument("--workflow", dest="workflow_id", help="workflowId (default: the only one)")
    run.add_argument("--input", dest="inputs", action="append", default=[], metavar="NAME=VALUE")
    run.add_argument("--input-env", dest="input_env", action="append", default=[], metavar="NAME=ENV_VAR")
    run.add_argument("--server", dest="servers", action="append", default=[], metavar="NAME=URL")
    run.add_argument(
        "--backend",
        dest="backends",
        action="append",
        default=[],
        metavar="SOURCE=BACKEND",
        help=f"use a built-in operation map for a source ({', '.join(BUILTIN_BACKENDS)})",
    )
    run.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="deadline for the whole run, seconds"
    )
    run.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS, help="step executions at most")
    run.add_argument("--request-timeout", type=float, default=30.0, help="per request, seconds")
    run.add_argument("--poll-initial", type=float, default=0.5, help="first wait of a polling loop, seconds")
    run.add_argument("--poll-max", type=float, default=10.0, help="longest wait of a polling loop, seconds")
    run.add_argument("--allow-insecure-http", action="store_true", help="allow plain http to non-local hosts")
    run.add_argument("--json", action="store_true", help="print the result as JSON only")
    show = actions.add_parser("show", help="list the workflows of a document: inputs, steps, outputs")
    show.add_argument("file", type=Path)
    show.add_argument("--json", action="store_true", help="print the parsed document as JSON")


def _pairs(items: list[str], what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise WorkflowInputError(f"{what} must be NAME=VALUE, not {item!r}")
        pairs[name.strip()] = value
    return pairs


def _coerce(name: str, text: str, spec: Any) -> Any:
    types = spec.get("type") if isinstance(spec, dict) else None
    kinds = types if isinstance(types, list) else [types]
    try:
        if "integer" in kinds:
            return int(text)
        if "number" in kinds:
            return float(text)
        if "boolean" in kinds:
            lowered = text.strip().lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError(text)
        if "object" in kinds or "array" in kinds:
            return json.loads(text)
    except ValueError:
        raise WorkflowInputError(
            f"--input {name}={text!r}: expected {' or '.join(k for k in kinds if k)}"
        ) from None
    return text


def _inputs(workflow: Workflow, args: argparse.Namespace) -> dict[str, Any]:
    schema = workflow.inputs or {}
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    assert isinstance(properties, dict)
    values: dict[str, Any] = {}
    for name, text in _pairs(args.inputs, "--input").items():
        values[name] = _coerce(name, text, properties.get(name))
    for name, variable in _pairs(args.input_env, "--input-env").items():
        if variable not in os.environ:
            raise WorkflowInputError(f"--input-env {name}={variable}: the environment has no {variable}")
        values[name] = _coerce(name, os.environ[variable], properties.get(name))
    return values


def _step_line(record: StepRecord, number: int) -> str:
    status = record.status if record.status is not None else "-"
    waited = f"  (after {record.waited_s:.1f} s)" if record.waited_s >= 0.05 else ""
    request = f"{record.method} {record.target} → {status}"
    return f"{number:>3}  {record.step_id:<20} {request}   {record.branch}{waited}"


def _print_outputs(result: WorkflowResult, out: TextIO) -> None:
    print("outputs:", file=out)
    if not result.outputs:
        print("  (none)", file=out)
    for key, value in result.outputs.items():
        shown = json.dumps(value, default=str) if not isinstance(value, str) else json.dumps(value)
        print(f"  {key}: {shown if value is not None else 'null'}", file=out)


def _print_warnings(result: WorkflowResult | None) -> None:
    if result is None:
        return
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _show(doc: ArazzoDocument) -> int:
    print(f"{doc.info.title} (Arazzo {doc.arazzo}, version {doc.info.version})")
    for source in doc.sourceDescriptions:
        print(f"source {source.name}: {source.type} {source.url}")
    for workflow in doc.workflows:
        print(f"\nworkflow {workflow.workflowId}: {workflow.summary or ''}".rstrip())
        schema = workflow.inputs or {}
        required = set(schema.get("required") or [])
        for name, spec in (schema.get("properties") or {}).items():
            kind = spec.get("type", "any") if isinstance(spec, dict) else "any"
            flag = " (required)" if name in required else ""
            print(f"  input  {name}: {kind}{flag}")
        for index, step in enumerate(workflow.steps, 1):
            target = step.operationId or step.operationPath or f"workflow {step.workflowId}"
            print(f"  step {index} {step.stepId}: {target}")
            for action in step.onSuccess:
                where = action.stepId or action.workflowId or ""
                print(f"           on success {action.name}: {action.type} {where}".rstrip())
            for failure in step.onFailure:
                where = failure.stepId or failure.workflowId or ""
                print(f"           on failure {failure.name}: {failure.type} {where}".rstrip())
        for name, expression in workflow.outputs.items():
            print(f"  output {name} = {expression}")
    return EXIT_OK


def _exit_code(error: SdkError) -> int:
    if isinstance(error, WorkflowTimeoutError | StepLimitError):
        return EXIT_TIMEOUT
    if isinstance(error, StepFailedError):
        return EXIT_FAILED
    if isinstance(error, WorkflowError | ConfigurationError):
        return EXIT_USAGE
    if isinstance(error, BackendError):
        return EXIT_BACKEND
    return EXIT_BACKEND


async def run_workflow_command(args: argparse.Namespace) -> int:
    """Run ``oqcs workflow ...``; returns the exit code (errors are printed, not raised)."""
    logger = logging.getLogger("oqc_style_sdk.arazzo")
    quiet = logging.NullHandler()  # warnings are printed below, once; not by logging's last resort
    logger.addHandler(quiet)
    try:
        doc = load_document(args.file)
        if args.workflow_command == "show":
            if args.json:
                print(json.dumps(doc.model_dump(mode="json", by_alias=True, exclude_none=True), indent=2))
                return EXIT_OK
            return _show(doc)
        workflow = doc.workflow(args.workflow_id)
        inputs = _inputs(workflow, args)
        servers = _pairs(args.servers, "--server")
        backends = _pairs(args.backends, "--backend")
        if args.timeout <= 0:
            raise WorkflowInputError("--timeout must be a positive number of seconds")
        pacing = Pacing(initial_s=args.poll_initial, max_s=max(args.poll_max, args.poll_initial))
        count = 0

        def step(record: StepRecord) -> None:
            nonlocal count
            count += 1
            if args.json:
                return
            if count == 1:
                print(f"workflow {workflow.workflowId}: {workflow.summary or doc.info.title}")
            print(_step_line(record, count), flush=True)

        result = await run_workflow(
            doc,
            workflow.workflowId,
            inputs,
            servers=servers,
            backends=backends,
            timeout_s=args.timeout,
            max_steps=args.max_steps,
            pacing=pacing,
            request_timeout_s=args.request_timeout,
            allow_insecure_http=args.allow_insecure_http,
            on_step=step,
        )
    except SdkError as exc:
        partial = getattr(exc, "result", None) or getattr(exc, "workflow_result", None)
        if getattr(args, "json", False) and isinstance(partial, WorkflowResult):
            print(json.dumps({**partial.to_dict(), "error": str(exc)}, indent=2))
        else:
            _print_warnings(partial if isinstance(partial, WorkflowResult) else None)
        notes = "".join(f"\n  {note}" for note in getattr(exc, "__notes__", []))
        print(f"oqcs: {exc}{notes}", file=sys.stderr)
        return _exit_code(exc)
    finally:
        logger.removeHandler(quiet)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return EXIT_OK
    print(f"ended after {len(result.steps)} steps, {result.requests_sent} requests, {result.elapsed_s:.1f} s")
    _print_outputs(result, sys.stdout)
    _print_warnings(result)
    return EXIT_OK
