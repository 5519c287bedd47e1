"""The Arazzo runner: resolution, errors, retries, pacing, deadlines, secrets, and ``oqcs workflow``."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from oqc_style_sdk._http import RetryPolicy
from oqc_style_sdk.arazzo import (
    BUILTIN_BACKENDS,
    MissingInputError,
    Pacing,
    StepFailedError,
    UnknownOperationError,
    WorkflowConfigurationError,
    WorkflowDefinitionError,
    WorkflowInputError,
    WorkflowTimeoutError,
    parse_document,
    run_workflow,
)
from oqc_style_sdk.arazzo.cli import add_workflow_parser, run_workflow_command
from oqc_style_sdk.arazzo.operations import choose_backend, join_server, parse_openapi, resolve_source_url
from oqc_style_sdk.exceptions import BackendUnavailableError, ConfigurationError, ServerError
from tests.common import DATA

DATA = DATA / "arazzo"
IBM_SEED = DATA / "000_d47212bd6c163dd2.txt"
DATABRICKS_SEED = DATA / "002_aaeb209fff7697ab.txt"
FAST = Pacing(initial_s=0.02, max_s=0.05)
QUICK_RETRY = RetryPolicy(max_attempts=2, base_delay_s=0.01, max_delay_s=0.02)
SECRET = "s3cr3t-token-value"
IBM_INPUTS = {"accessToken": SECRET, "serviceCrn": "crn:1", "apiVersion": "2026-04-15", "jobId": "j1"}


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class Hit:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float
    raw_query: str = ""


class Scripted:
    """A server on 127.0.0.1 answering ``"METHOD /path"`` from a script (the last reply repeats)."""

    def __init__(self, script: dict[str, list[Reply]]) -> None:
        self.script = script
        self.hits: list[Hit] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append(
            Hit(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                await request.read(),
                time.monotonic(),
                request.query_string,
            )
        )
        replies = self.script.get(f"{request.method} {request.path}")
        if not replies:
            return web.json_response(
                {"error": {"code": "NotFound", "message": f"no route {request.path}"}}, status=404
            )
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if reply.content_type == "application/json" and not isinstance(reply.body, str | bytes):
            text = "" if reply.body is None else json.dumps(reply.body)
        else:
            text = reply.body if isinstance(reply.body, str) else (reply.body or b"").decode()
        return web.Response(
            status=reply.status, text=text or None, content_type=reply.content_type, headers=reply.headers
        )

    async def __aenter__(self) -> Scripted:
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    @property
    def calls(self) -> list[str]:
        return [f"{h.method} {h.path}" for h in self.hits]


OPENAPI = {
    "openapi": "3.0.3",
    "info": {"title": "things", "version": "1"},
    "servers": [{"url": "/svc"}],
    "paths": {
        "/things/{id}": {"get": {"operationId": "getThing"}, "parameters": []},
        "/things/{id}/poke": {"post": {"operationId": "pokeThing"}},
    },
}


def document(steps: list[dict[str, Any]], *, url: str = "./openapi.yaml", **workflow: Any) -> dict[str, Any]:
    return {
        "arazzo": "1.0.1",
        "info": {"title": "test", "version": "1"},
        "sourceDescriptions": [{"name": "api", "url": url, "type": "openapi"}],
        "workflows": [
            {
                "workflowId": "wf",
                "inputs": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "token": {"type": "string"}},
                },
                "steps": steps,
                **workflow,
            }
        ],
    }


def get_step(step_id: str = "read", **extra: Any) -> dict[str, Any]:
    return {
        "stepId": step_id,
        "operationId": "getThing",
        "parameters": [{"name": "id", "in": "path", "value": "$inputs.id"}],
        "successCriteria": [{"condition": "$statusCode == 200"}],
        "outputs": {"status": "$response.body#/status"},
        **extra,
    }


def poke_step(**extra: Any) -> dict[str, Any]:
    return {
        "stepId": "poke",
        "operationId": "pokeThing",
        "parameters": [{"name": "id", "in": "path", "value": "$inputs.id"}],
        "successCriteria": [{"condition": "$statusCode == 200"}],
        **extra,
    }


def write(tmp_path: Path, doc: dict[str, Any], openapi: dict[str, Any] | None = OPENAPI) -> Path:
    if openapi is not None:
        (tmp_path / "openapi.yaml").write_text(yaml.safe_dump(openapi))
    path = tmp_path / "flow.arazzo.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- resolution -------------------------------------------------------------------------------------


async def test_operations_resolve_against_a_readable_openapi_file(tmp_path: Path) -> None:
    path = write(tmp_path, document([get_step()]))
    async with Scripted({"GET /svc/things/x1": [Reply(body={"status": "ok"})]}) as fake:
        result = await run_workflow(path, inputs={"id": "x1"}, servers={"api": fake.url})
    assert fake.calls == ["GET /svc/things/x1"]
    assert result.steps[0].outputs == {"status": "ok"}
    assert result.steps[0].target == "/svc/things/x1"
    assert result.warnings == []


async def test_openapi_fetched_over_http_gives_the_server_too() -> None:
    api = {**OPENAPI, "servers": [{"url": "/v2"}]}
    async with Scripted(
        {"GET /openapi.json": [Reply(body=api)], "GET /v2/things/x1": [Reply(body={"status": "ok"})]}
    ) as fake:
        doc = document([get_step()], url=f"{fake.url}/openapi.json")
        result = await run_workflow(doc, inputs={"id": "x1"})
    assert fake.calls == ["GET /openapi.json", "GET /v2/things/x1"]
    assert result.requests_sent == 2
    assert result.outputs == {}


async def test_operation_path_and_qualified_operation_ids(tmp_path: Path) -> None:
    step = get_step()
    del step["operationId"]
    step["operationPath"] = "{$sourceDescriptions.api.url}#/paths/~1things~1{id}/get"
    second = get_step("again", operationId="$sourceDescriptions.api.getThing")
    path = write(tmp_path, document([step, second]))
    async with Scripted({"GET /svc/things/x1": [Reply(body={"status": "ok"})]}) as fake:
        result = await run_workflow(path, inputs={"id": "x1"}, servers={"api": fake.url + "/svc"})
    assert fake.calls == ["GET /svc/things/x1"] * 2
    assert result.steps[0].operation_id == "GET /things/{id}"


async def test_unknown_operation_id_is_refused_before_any_request() -> None:
    text = IBM_SEED.read_text().replace("operationId: cancel_job_jid", "operationId: cancel_job_now")
    async with Scripted({}) as fake:
        with pytest.raises(UnknownOperationError) as caught:
            await run_workflow(text, inputs=IBM_INPUTS, servers={"jobsApi": fake.url})
    assert fake.hits == []
    assert "'cancel_job_now'" in str(caught.value)
    assert "step 'cancelJob'" in str(caught.value)
    assert caught.value.operation_id == "cancel_job_now"
    assert "get_job" in caught.value.known


async def test_unknown_operation_in_a_readable_description(tmp_path: Path) -> None:
    path = write(tmp_path, document([get_step(operationId="getThingz")]))
    with pytest.raises(
        UnknownOperationError,
        match="not in the description of 'api' or any built-in operation map; known: getThing",
    ):
        await run_workflow(path, inputs={"id": "x"}, servers={"api": "http://127.0.0.1:9"})


async def test_seed_from_text_uses_the_built_in_map_and_says_so() -> None:
    async with Scripted({"GET /api/v1/jobs/j1": [Reply(body={"status": "Completed"})]}) as fake:
        result = await run_workflow(IBM_SEED.read_text(), inputs=IBM_INPUTS, servers={"ibm": fake.url})
    assert fake.calls == ["GET /api/v1/jobs/j1"]
    assert any("built-in map of IBM Quantum" in w and "not read from a file" in w for w in result.warnings)


async def test_missing_path_parameter_is_a_definition_error(tmp_path: Path) -> None:
    path = write(tmp_path, document([get_step(parameters=[])]))
    with pytest.raises(WorkflowDefinitionError, match=r"needs path parameter\(s\) id"):
        await run_workflow(path, inputs={"id": "x"}, servers={"api": "http://127.0.0.1:9"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dependsOn": ["other"]}, "dependsOn other workflows"),
        ({"steps": [{"stepId": "sub", "workflowId": "wf"}]}, "steps that run workflows are not supported"),
        (
            {"steps": [get_step(onSuccess=[{"name": "away", "type": "goto", "workflowId": "wf"}])]},
            "goes to another workflow",
        ),
        ({"steps": [get_step(operationPath="#/paths/x", operationId=None)]}, "operationPath must read"),
        (
            {"steps": [get_step(operationPath="{$sourceDescriptions.api.url}#/nope", operationId=None)]},
            "is not #/paths/PATH/METHOD",
        ),
        (
            {"steps": [get_step(operationId="$sourceDescriptions.other.getThing")]},
            "no OpenAPI source description named 'other'",
        ),
    ],
)
async def test_unsupported_constructs_are_refused_before_any_request(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    doc = document([get_step()])
    doc["workflows"][0].update(change)
    for step in doc["workflows"][0]["steps"]:
        if step.get("operationId", "x") is None:
            del step["operationId"]
    with pytest.raises(WorkflowDefinitionError, match=message):
        await run_workflow(write(tmp_path, doc), inputs={"id": "x"}, servers={"api": "http://127.0.0.1:9"})


async def test_several_sources_need_qualified_operation_ids(tmp_path: Path) -> None:
    doc = document([get_step()])
    doc["sourceDescriptions"].append({"name": "other", "url": "./openapi.yaml"})
    with pytest.raises(WorkflowDefinitionError, match="must name one"):
        await run_workflow(write(tmp_path, doc), inputs={"id": "x"}, servers={"api": "http://127.0.0.1:9"})


# -- inputs and configuration ----------------------------------------------------------------------


async def test_missing_inputs_are_all_named_before_any_request() -> None:
    async with Scripted({}) as fake:
        with pytest.raises(MissingInputError) as caught:
            await run_workflow(
                IBM_SEED, inputs={"accessToken": SECRET, "apiVersion": "x"}, servers={"jobsApi": fake.url}
            )
    assert fake.hits == []
    assert caught.value.missing == ["serviceCrn", "jobId"]
    assert "serviceCrn (IBM Cloud Service CRN" in str(caught.value)


async def test_inputs_of_the_wrong_type_are_refused() -> None:
    with pytest.raises(WorkflowInputError, match="input 'runId' must be of type integer, not str"):
        await run_workflow(
            DATABRICKS_SEED,
            inputs={"token": "t", "runId": "forty-two"},
            servers={"databricks": "http://127.0.0.1:9"},
        )


async def test_input_defaults_enums_and_undeclared_inputs(tmp_path: Path) -> None:
    doc = document([get_step()])
    doc["workflows"][0]["inputs"] = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "default": "d1"},
            "mode": {"type": "string", "enum": ["a", "b"]},
        },
    }
    path = write(tmp_path, doc)
    with pytest.raises(WorkflowInputError, match=r"must be one of \['a', 'b'\]"):
        await run_workflow(path, inputs={"mode": "c"}, servers={"api": "http://127.0.0.1:9"})
    async with Scripted({"GET /svc/things/d1": [Reply(body={"status": "ok"})]}) as fake:
        result = await run_workflow(path, inputs={"extra": 1}, servers={"api": fake.url})
    assert fake.calls == ["GET /svc/things/d1"]
    assert any("input 'extra' is not declared" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"servers": {}}, r"no server URL for source description 'azureDatabricksApi' \(Azure Databricks"),
        ({"servers": {"databrick": "http://127.0.0.1:9"}}, "unknown server name"),
        (
            {"servers": {"databricks": "http://127.0.0.1:9"}, "backends": {"azureDatabricksApi": "dbx"}},
            "unknown backend 'dbx'",
        ),
        ({"max_steps": 0}, "max_steps must be a positive integer"),
        ({"timeout_s": 0}, "timeout_s must be a positive number"),
        ({"servers": {"databricks": "http://192.0.2.1"}}, "plain http"),
    ],
)
async def test_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        await run_workflow(DATABRICKS_SEED, inputs={"token": "t", "runId": 1}, **kwargs)


def test_pacing_is_validated() -> None:
    for bad in (
        {"initial_s": -1},
        {"factor": 0.5},
        {"jitter": 2},
        {"max_s": 0.1, "initial_s": 1},
        {"initial_s": float("nan")},
    ):
        with pytest.raises(WorkflowConfigurationError):
            Pacing(**bad)


async def test_unreachable_server_is_an_error_not_a_success() -> None:
    """LESSONS: arazzo-runner reported a refused connection as success."""
    url = closed_port_url()
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as caught:
        await run_workflow(IBM_SEED, inputs=IBM_INPUTS, servers={"jobsApi": url}, retry=QUICK_RETRY)
    assert time.monotonic() - started < 5
    assert "cannot reach" in str(caught.value)
    assert any("step 'getJobStatus'" in note for note in caught.value.__notes__)
    partial = caught.value.workflow_result  # type: ignore[attr-defined]
    assert partial.steps == []
    assert partial.requests_sent == 2


# -- failure handling --------------------------------------------------------------------------------


async def test_retry_waits_retry_after_then_succeeds(tmp_path: Path) -> None:
    step = poke_step(onFailure=[{"name": "again", "type": "retry", "retryAfter": 0.05, "retryLimit": 2}])
    path = write(tmp_path, document([step]))
    script = {
        "POST /svc/things/x/poke": [Reply(503, {"error": {"message": "busy"}}), Reply(200, {"ok": True})]
    }
    async with Scripted(script) as fake:
        result = await run_workflow(path, inputs={"id": "x"}, servers={"api": fake.url}, pacing=FAST)
    assert fake.calls == ["POST /svc/things/x/poke"] * 2  # a POST 503 is the step's to judge
    assert result.trace == [("poke", "again → retry"), ("poke", "end")]
    assert result.steps[1].waited_s == pytest.approx(0.05)
    assert fake.hits[1].at - fake.hits[0].at >= 0.05


async def test_the_response_retry_after_overrules_retry_after(tmp_path: Path) -> None:
    step = poke_step(onFailure=[{"name": "again", "type": "retry", "retryAfter": 0.01}])
    path = write(tmp_path, document([step]))
    script = {
        "POST /svc/things/x/poke": [Reply(409, {"message": "later"}, {"Retry-After": "0.3"}), Reply(200, {})]
    }
    async with Scripted(script) as fake:
        result = await run_workflow(path, inputs={"id": "x"}, servers={"api": fake.url}, pacing=FAST)
    assert result.steps[1].waited_s == pytest.approx(0.3)
    assert fake.hits[1].at - fake.hits[0].at >= 0.3


async def test_retry_limit_is_exhausted_before_the_next_failure_action(tmp_path: Path) -> None:
    step = poke_step(
        onFailure=[
            {"name": "again", "type": "retry", "retryLimit": 2},
            {"name": "fallback", "type": "goto", "stepId": "read"},
        ]
    )
    path = write(tmp_path, document([step, get_step()]))
    script = {
        "POST /svc/things/x/poke": [Reply(500, {"message": "boom"})],
        "GET /svc/things/x": [Reply(body={"status": "s"})],
    }
    async with Scripted(script) as fake:
        result = await run_workflow(path, inputs={"id": "x"}, servers={"api": fake.url}, pacing=FAST)
    assert fake.calls == ["POST /svc/things/x/poke"] * 3 + ["GET /svc/things/x"]
    assert result.trace == [("poke", "again → retry")] * 2 + [("poke", "fallback → read"), ("read", "end")]
    assert result.steps[1].waited_s > 0  # no retryAfter: the pacing backoff, never back-to-back


async def test_an_unhandled_failure_raises_with_the_vendor_message(tmp_path: Path) -> None:
    path = write(tmp_path, document([get_step()]))
    script = {"GET /svc/things/x": [Reply(404, {"errors": [{"code": "404", "message": "Job not found"}]})]}
    async with Scripted(script) as fake:
        with pytest.raises(StepFailedError) as caught:
            await run_workflow(path, inputs={"id": "x"}, servers={"api": fake.url})
    error = caught.value
    assert (error.step_id, error.status, error.vendor_message) == ("read", 404, "Job not found")
    assert "$statusCode == 200 does not hold for the answer 404: Job not found" in str(error)
    assert error.result is not None
    assert error.result.trace == [("read", "failed")]
    assert error.result.outputs == {}


async def test_a_failure_end_action_ends_the_workflow_as_failed(tmp_path: Path) -> None:
    step = get_step(
        onFailure=[{"name": "stop", "type": "end", "criteria": [{"condition": "$statusCode == 409"}]}]
    )
    path = write(tmp_path, document([step]))
    async with Scripted({"GET /svc/things/x": [Reply(409, "conflict", content_type="text/plain")]}) as fake:
        with pytest.raises(StepFailedError, match="onFailure action 'stop' ends the workflow"):
            await run_workflow(path, inputs={"id": "x"}, servers={"api": fake.url})


async def test_throttling_is_retried_by_the_http_layer_honouring_retry_after(tmp_path: Path) -> None:
    path = write(tmp_path, document([get_step()]))
    script = {
        "GET /svc/things/x": [
            Reply(429, {"message": "slow down"}, {"Retry-After": "0.2"}),
            Reply(body={"status": "ok"}),
        ]
    }
    async with Scripted(script) as fake:
        result = await run_workflow(path, inputs={"id": "x"}, servers={"api": fake.url})
    assert result.requests_sent == 2
    assert result.trace == [("read", "end")]
    assert fake.hits[1].at - fake.hits[0].at >= 0.2


async def test_server_errors_beyond_retries_keep_their_type(tmp_path: Path) -> None:
    path = write(tmp_path, document([get_step()]))
    async with Scripted({"GET /svc/things/x": [Reply(503, {"message": "down"})]}) as fake:
        with pytest.raises(ServerError, match="down") as caught:
            await run_workflow(path, inputs={"id": "x"}, servers={"api": fake.url}, retry=QUICK_RETRY)
    assert len(fake.hits) == 2
    assert caught.value.workflow_result.steps == []  # type: ignore[attr-defined]


async def test_a_retry_after_beyond_the_deadline_fails_at_once(tmp_path: Path) -> None:
    step = poke_step(onFailure=[{"name": "again", "type": "retry"}])
    path = write(tmp_path, document([step]))
    script = {"POST /svc/things/x/poke": [Reply(409, {}, {"Retry-After": "30"})]}
    async with Scripted(script) as fake:
        started = time.monotonic()
        with pytest.raises(WorkflowTimeoutError, match="would pass the deadline"):
            await run_workflow(path, inputs={"id": "x"}, servers={"api": fake.url}, timeout_s=5)
    assert time.monotonic() - started < 2
    assert len(fake.hits) == 1


async def test_a_slow_server_meets_the_deadline(tmp_path: Path) -> None:
    path = write(tmp_path, document([get_step()]))
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({})

    fake = Scripted({})
    fake.app.router._resources.clear()  # replace the catch-all route
    fake.app.router.add_get("/svc/things/x", slow)
    async with fake:
        started = time.monotonic()
        with pytest.raises(WorkflowTimeoutError) as caught:
            await run_workflow(path, inputs={"id": "x"}, servers={"api": fake.url}, timeout_s=0.3)
        assert time.monotonic() - started < 2
        release.set()
    assert caught.value.result is not None


# -- requests: parameters, bodies, secrets -----------------------------------------------------------


async def test_parameters_bodies_and_secrets_on_the_wire(tmp_path: Path) -> None:
    step = poke_step(
        parameters=[
            {"name": "id", "in": "path", "value": "$inputs.id"},
            {"name": "Authorization", "in": "header", "value": "Bearer {$inputs.token}"},
            {"name": "X-Count", "in": "header", "value": 3},
            {"name": "tags", "in": "query", "value": ["a", "b c"]},
            {"name": "token", "in": "query", "value": "$inputs.token"},
            {"name": "skipped", "in": "query", "value": "$inputs.absent"},
            {"name": "session", "in": "cookie", "value": "abc"},
        ],
        requestBody={
            "contentType": "application/json",
            "payload": {"id": "{$inputs.id}", "n": 1, "meta": {"who": "me"}},
            "replacements": [{"target": "/meta/who", "value": "$inputs.id"}],
        },
    )
    path = write(tmp_path, document([step]))
    async with Scripted(
        {"POST /svc/things/a%20b/poke": [Reply(body={})], "POST /svc/things/a b/poke": [Reply(body={})]}
    ) as fake:
        result = await run_workflow(path, inputs={"id": "a b", "token": SECRET}, servers={"api": fake.url})
    hit = fake.hits[0]
    assert hit.headers["Authorization"] == f"Bearer {SECRET}"
    assert hit.headers["X-Count"] == "3"
    assert hit.headers["Cookie"] == "session=abc"
    assert hit.raw_query == f"tags=a&tags=b c&token={SECRET}"  # (aiohttp shows it decoded)
    assert json.loads(hit.body) == {"id": "a b", "n": 1, "meta": {"who": "a b"}}
    record = result.steps[0]
    assert "token=%2A%2A%2A" in record.target or "token=***" in record.target
    assert SECRET not in json.dumps(result.to_dict())
    assert any("'skipped' is null; not sent" in w for w in result.warnings)


async def test_a_secret_in_the_path_is_sent_but_not_shown(tmp_path: Path) -> None:
    step = get_step(
        parameters=[{"name": "id", "in": "path", "value": "$inputs.token"}],
        outputs={"url": "$url"},
    )
    path = write(tmp_path, document([step]))
    async with Scripted({f"GET /svc/things/{SECRET}": [Reply(body={"status": "ok"})]}) as fake:
        result = await run_workflow(path, inputs={"token": SECRET}, servers={"api": fake.url})
    assert fake.calls == [f"GET /svc/things/{SECRET}"]
    assert result.steps[0].target == "/svc/things/***"
    assert SECRET not in json.dumps(result.to_dict())


@pytest.mark.parametrize(
    ("content_type", "payload", "expected", "wire_type"),
    [
        ("text/plain", "hello {$inputs.id}", b"hello x", "text/plain"),
        (
            "application/x-www-form-urlencoded",
            {"a": "1", "b": "$inputs.id"},
            b"a=1&b=x",
            "application/x-www-form-urlencoded",
        ),
        ("application/merge-patch+json", {"a": "$inputs.id"}, b'{"a":"x"}', "application/merge-patch+json"),
        (None, ["$inputs.id"], b'["x"]', "application/json"),
    ],
)
async def test_request_body_content_types(
    tmp_path: Path, content_type: str | None, payload: Any, expected: bytes, wire_type: str
) -> None:
    body: dict[str, Any] = {"payload": payload}
    if content_type:
        body["contentType"] = content_type
    path = write(tmp_path, document([poke_step(requestBody=body)]))
    async with Scripted({"POST /svc/things/x/poke": [Reply(body={})]}) as fake:
        await run_workflow(path, inputs={"id": "x"}, servers={"api": fake.url})
    assert fake.hits[0].body == expected
    assert fake.hits[0].headers["Content-Type"].startswith(wire_type)


@pytest.mark.parametrize(("value", "message"), [("../admin", "'.' or '..' segment"), ("", "null or empty")])
async def test_unsafe_path_values_are_not_sent(tmp_path: Path, value: str, message: str) -> None:
    path = write(tmp_path, document([get_step()]))
    async with Scripted({}) as fake:
        with pytest.raises(StepFailedError, match=message):
            await run_workflow(path, inputs={"id": value}, servers={"api": fake.url})
    assert fake.hits == []


async def test_bad_replacement_target_fails_the_step(tmp_path: Path) -> None:
    body = {"payload": {"a": 1}, "replacements": [{"target": "/missing/x", "value": 2}]}
    path = write(tmp_path, document([poke_step(requestBody=body)]))
    with pytest.raises(StepFailedError, match="does not exist in the payload"):
        await run_workflow(path, inputs={"id": "x"}, servers={"api": "http://127.0.0.1:9"})


async def test_without_success_criteria_a_2xx_is_success_and_bodies_are_read_by_type(tmp_path: Path) -> None:
    steps = [
        get_step("a", successCriteria=[], outputs={"raw": "$response.body"}),
        get_step("b", successCriteria=[], outputs={"raw": "$response.body"}),
        get_step("c", successCriteria=[], outputs={"raw": "$response.body", "h": "$response.header.x-thing"}),
    ]
    path = write(tmp_path, document(steps))
    script = {
        "GET /svc/things/x": [
            Reply(200, "{not json", content_type="application/json"),
            Reply(200, '{"plain": 1}', content_type="text/plain"),
            Reply(201, None, {"X-Thing": "yes"}),
        ]
    }
    async with Scripted(script) as fake:
        result = await run_workflow(path, inputs={"id": "x"}, servers={"api": fake.url})
    assert [s.outputs["raw"] for s in result.steps] == ["{not json", '{"plain": 1}', None]
    assert result.steps[2].outputs["h"] == "yes"
    assert any("says JSON but its body is not JSON" in w for w in result.warnings)


async def test_workflow_level_parameters_and_actions_apply_to_steps(tmp_path: Path) -> None:
    doc = document(
        [get_step(parameters=[]), get_step("never")],
        parameters=[{"name": "id", "in": "path", "value": "$inputs.id"}],
        successActions=[{"name": "stop", "type": "end"}],
    )
    path = write(tmp_path, doc)
    async with Scripted({"GET /svc/things/x": [Reply(body={"status": "ok"})]}) as fake:
        result = await run_workflow(path, inputs={"id": "x"}, servers={"api": fake.url})
    assert result.trace == [("read", "stop → end")]


async def test_pacing_grows_and_is_capped(tmp_path: Path) -> None:
    step = get_step(
        onSuccess=[
            {
                "name": "loop",
                "type": "goto",
                "stepId": "read",
                "criteria": [{"condition": "$response.body#/status == 'busy'"}],
            }
        ]
    )
    path = write(tmp_path, document([step]))
    pacing = Pacing(initial_s=0.01, max_s=0.04, jitter=0)
    async with Scripted(
        {"GET /svc/things/x": [Reply(body={"status": "busy"})] * 6 + [Reply(body={"status": "done"})]}
    ) as fake:
        result = await run_workflow(path, inputs={"id": "x"}, servers={"api": fake.url}, pacing=pacing)
    assert [round(s.waited_s, 3) for s in result.steps] == [0, 0.01, 0.02, 0.04, 0.04, 0.04, 0.04]
    assert len(fake.hits) == 7


async def test_a_loop_honours_a_longer_retry_after_and_the_deadline(tmp_path: Path) -> None:
    loop = {
        "name": "loop",
        "type": "goto",
        "stepId": "read",
        "criteria": [{"condition": "$statusCode == 200"}],
    }
    path = write(tmp_path, document([get_step(onSuccess=[loop])]))
    script = {
        "GET /svc/things/x": [
            Reply(body={}, headers={"Retry-After": "0.15"}),
            Reply(body={}, headers={"Retry-After": "60"}),
        ]
    }
    async with Scripted(script) as fake:
        started = time.monotonic()
        with pytest.raises(
            WorkflowTimeoutError, match=r"looping back to step 'read' needs a wait of 60\.0 s"
        ) as caught:
            await run_workflow(path, inputs={"id": "x"}, servers={"api": fake.url}, pacing=FAST, timeout_s=10)
    assert time.monotonic() - started < 2
    assert len(fake.hits) == 2
    assert fake.hits[1].at - fake.hits[0].at >= 0.15
    assert caught.value.result is not None
    assert caught.value.result.steps[1].waited_s == pytest.approx(0.15)


async def test_backend_override_and_bare_payload_warning(tmp_path: Path) -> None:
    text = DATABRICKS_SEED.read_text().replace("Bearer $inputs.token", "Bearer {$inputs.token}")
    text = text.replace("run_id: $inputs.runId", "run_id: $inputs.runId\n        note: run $inputs.runId")
    script = {
        "GET /api/2.2/jobs/runs/get": [Reply(body={"state": {"life_cycle_state": "TERMINATED"}})],
        "POST /api/2.2/jobs/runs/cancel": [Reply(body={})],
    }
    async with Scripted(script) as fake:
        result = await run_workflow(
            text,
            inputs={"token": "t", "runId": 5},
            servers={"azureDatabricksApi": fake.url},
            backends={"azureDatabricksApi": "databricks"},
        )
    assert json.loads(fake.hits[1].body) == {"run_id": 5, "note": "run 5"}
    assert any("requestBody of step 'cancelRun'" in w for w in result.warnings)
    assert result.trace[-1] == ("pollRun", "cancelled → end")


async def test_a_missing_document_file() -> None:
    with pytest.raises(WorkflowDefinitionError, match="no Arazzo document at"):
        await run_workflow(Path("/nonexistent/flow.yaml"))
    with pytest.raises(WorkflowDefinitionError, match="cannot read"):
        await run_workflow(Path("/"))


# -- operations helpers -------------------------------------------------------------------------------


def test_server_join_and_backend_choice() -> None:
    assert join_server("http://h:1", "/api/v1") == "http://h:1/api/v1"
    assert join_server("http://h:1/", "/api/v1") == "http://h:1/api/v1"
    assert join_server("http://h:1/custom/", "/api/v1") == "http://h:1/custom"
    assert join_server("http://h:1", "") == "http://h:1"
    assert choose_backend(["get_job", "cancel_job_jid"]) is BUILTIN_BACKENDS["ibm"]
    assert choose_backend(["Jobs_Get"]) is BUILTIN_BACKENDS["azure"]
    assert choose_backend(["getJobRun", "cancelJobRun"]) is BUILTIN_BACKENDS["databricks"]
    assert choose_backend(["getJob", "cancelQueuedJob"]) is BUILTIN_BACKENDS["windmill"]
    assert choose_backend(["get_job", "getJob"]) is None
    assert choose_backend(["nothing"]) is None


def test_openapi_indexing() -> None:
    swagger = parse_openapi(
        {
            "swagger": "2.0",
            "host": "example.invalid",
            "basePath": "/v1/",
            "paths": {"/a": {"get": {"operationId": "A"}}},
        },
        "x.json",
    )
    assert (swagger.base_path, swagger.default_server) == ("/v1", "https://example.invalid")
    templated = parse_openapi(
        {"openapi": "3.1.0", "servers": [{"url": "https://<databricks-instance>/api/"}], "paths": {}},
        "x.yaml",
    )
    assert (templated.base_path, templated.default_server) == ("/api", None)
    variables = parse_openapi(
        {
            "openapi": "3.0.0",
            "servers": [
                {"url": "https://{region}.example.invalid/base", "variables": {"region": {"default": "eu"}}}
            ],
            "paths": {"/x": {"post": {"operationId": "X"}, "summary": "not an operation"}},
        },
        "x.yaml",
    )
    assert (variables.base_path, variables.default_server) == ("/base", "https://eu.example.invalid")
    assert variables.operations["X"].method == "POST"
    for bad in ({"paths": {}}, {"openapi": "3.0.0"}, []):
        with pytest.raises(ValueError, match="OpenAPI"):
            parse_openapi(bad, "x")
    assert resolve_source_url("https://a/b.yaml", None) == "https://a/b.yaml"
    assert resolve_source_url("file:///tmp/x.yaml", None) == "/tmp/x.yaml"
    assert resolve_source_url("x.yaml", None) is None
    assert resolve_source_url("/abs/x.yaml", None) == "/abs/x.yaml"
    assert resolve_source_url("x.yaml", "https://a/dir/flow.yaml") == "https://a/dir/x.yaml"


async def test_an_unreadable_description_falls_back_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "openapi.yaml").write_text("openapi: [broken\n")
    doc = parse_document(
        IBM_SEED.read_text().replace("../openapi/ibm-quantum-runtime-jobs-openapi.yml", "./openapi.yaml")
    )
    path = tmp_path / "ibm.yaml"
    path.write_text(yaml.safe_dump(doc.model_dump(by_alias=True, exclude_none=True)))
    async with Scripted({"GET /api/v1/jobs/j1": [Reply(body={"status": "Failed"})]}) as fake:
        result = await run_workflow(path, inputs=IBM_INPUTS, servers={"jobsApi": fake.url})
    assert result.trace == [("getJobStatus", "alreadyTerminal → end")]
    assert any("neither JSON nor YAML" in w for w in result.warnings)


# -- oqcs workflow -------------------------------------------------------------------------------------


def parse_cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="oqcs")
    add_workflow_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["workflow", *argv])


def ibm_cli_args(url: str, *extra: str) -> argparse.Namespace:
    return parse_cli(
        "run",
        str(IBM_SEED),
        "--input-env",
        "accessToken=ARAZZO_TEST_TOKEN",
        "--input",
        "serviceCrn=crn:1",
        "--input",
        "apiVersion=2026-04-15",
        "--input",
        "jobId=j1",
        "--server",
        f"jobsApi={url}",
        "--poll-initial",
        "0.01",
        *extra,
    )


IBM_SCRIPT = {
    "GET /api/v1/jobs/j1": [Reply(body={"status": "Running"}), Reply(body={"status": "Cancelled"})],
    "POST /api/v1/jobs/j1/cancel": [Reply(204)],
}


async def test_cli_runs_a_seed_and_prints_steps_branches_and_outputs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARAZZO_TEST_TOKEN", SECRET)
    async with Scripted({k: list(v) for k, v in IBM_SCRIPT.items()}) as fake:
        code = await run_workflow_command(ibm_cli_args(fake.url))
    out, err = capsys.readouterr()
    assert code == 0
    lines = out.splitlines()
    assert (
        lines[0]
        == "workflow cancel-running-job: Cancel a job if it is still cancellable, then confirm the outcome."
    )
    assert "getJobStatus" in lines[1]
    assert "GET /api/v1/jobs/j1 → 200" in lines[1]
    assert "cancellable → cancelJob" in lines[1]
    assert "POST /api/v1/jobs/j1/cancel → 204" in lines[2]
    assert "next → confirmCancelled" in lines[2]
    assert "confirmCancelled" in lines[3]
    assert lines[3].endswith("end")
    assert lines[-2:] == ["outputs:", '  finalStatus: "Cancelled"']
    assert "warning: " in err
    assert "without braces" in err
    assert SECRET not in out + err
    assert fake.hits[0].headers["Authorization"] == f"Bearer {SECRET}"


async def test_cli_json_output(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARAZZO_TEST_TOKEN", SECRET)
    async with Scripted({k: list(v) for k, v in IBM_SCRIPT.items()}) as fake:
        code = await run_workflow_command(ibm_cli_args(fake.url, "--json"))
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["outputs"] == {"finalStatus": "Cancelled"}
    assert [s["branch"] for s in data["steps"]] == [
        "cancellable → cancelJob",
        "next → confirmCancelled",
        "end",
    ]


@pytest.mark.parametrize(
    ("argv", "env", "code", "message"),
    [
        (["--input", "jobId"], True, 2, "--input must be NAME=VALUE"),
        ([], False, 2, "the environment has no ARAZZO_TEST_TOKEN"),
        (["--timeout", "0"], True, 2, "--timeout must be a positive number"),
        (["--workflow", "nope"], True, 2, "no workflow 'nope'"),
    ],
)
async def test_cli_usage_errors(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    env: bool,
    code: int,
    message: str,
) -> None:
    if env:
        monkeypatch.setenv("ARAZZO_TEST_TOKEN", SECRET)
    else:
        monkeypatch.delenv("ARAZZO_TEST_TOKEN", raising=False)
    assert await run_workflow_command(ibm_cli_args("http://127.0.0.1:9", *argv)) == code
    assert message in capsys.readouterr().err


async def test_cli_exit_codes_for_failures(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARAZZO_TEST_TOKEN", SECRET)
    async with Scripted(
        {"GET /api/v1/jobs/j1": [Reply(404, {"errors": [{"message": "no such job"}]})]}
    ) as fake:
        assert await run_workflow_command(ibm_cli_args(fake.url)) == 1
    assert "no such job" in capsys.readouterr().err
    async with Scripted(
        {"GET /api/v1/jobs/j1": [Reply(404, {"errors": [{"message": "no such job"}]})]}
    ) as fake:
        assert await run_workflow_command(ibm_cli_args(fake.url, "--json")) == 1
    assert "no such job" in json.loads(capsys.readouterr().out)["error"]
    loop = {
        "GET /api/v1/jobs/j1": [Reply(body={"status": "Queued"})],
        "POST /api/v1/jobs/j1/cancel": [Reply(204)],
    }
    async with Scripted(loop) as fake:
        assert await run_workflow_command(ibm_cli_args(fake.url, "--max-steps", "2")) == 4
    assert "limit of 2 steps" in capsys.readouterr().err
    assert await run_workflow_command(ibm_cli_args(closed_port_url(), "--timeout", "0.5")) in (4, 5)
    assert "oqcs: " in capsys.readouterr().err
    assert await run_workflow_command(parse_cli("run", "/nonexistent/flow.yaml")) == 2


async def test_cli_input_types_follow_the_schema(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    doc = document([get_step()])
    doc["workflows"][0]["inputs"]["properties"].update(
        {"n": {"type": "integer"}, "f": {"type": "number"}, "b": {"type": "boolean"}, "o": {"type": "object"}}
    )
    path = write(tmp_path, doc)
    async with Scripted({"GET /svc/things/x": [Reply(body={"status": "ok"})]}) as fake:
        argv = ["run", str(path), "--server", f"api={fake.url}", "--input", "id=x", "--input", "n=3"]
        argv += ["--input", "f=1.5", "--input", "b=yes", "--input", 'o={"k": 1}']
        assert await run_workflow_command(parse_cli(*argv)) == 0
    for bad in ("n=x", "b=maybe", "o={"):
        argv = ["run", str(path), "--server", "api=http://127.0.0.1:9", "--input", "id=x", "--input", bad]
        assert await run_workflow_command(parse_cli(*argv)) == 2
    assert "expected integer" in capsys.readouterr().err


async def test_cli_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_workflow_command(parse_cli("show", str(DATABRICKS_SEED))) == 0
    out = capsys.readouterr().out
    assert "workflow cancel-active-run" in out
    assert "input  runId: integer (required)" in out
    assert "on success stillActive: goto pollRun" in out
    assert "output resultState = $steps.pollRun.outputs.resultState" in out
