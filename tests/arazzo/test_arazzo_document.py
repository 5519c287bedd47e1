"""Loading Arazzo documents: what is accepted, and clear errors (with places) for what is not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from oqc_style_sdk.arazzo import WorkflowDefinitionError, load_document, parse_document
from oqc_style_sdk.exceptions import SdkError

MINIMAL: dict[str, Any] = {
    "arazzo": "1.0.1",
    "info": {"title": "t", "version": "1.0.0"},
    "sourceDescriptions": [{"name": "api", "url": "./openapi.yaml", "type": "openapi"}],
    "workflows": [
        {
            "workflowId": "wf",
            "inputs": {"type": "object", "properties": {"id": {"type": "string"}}},
            "steps": [
                {
                    "stepId": "read",
                    "operationId": "getThing",
                    "parameters": [{"name": "id", "in": "path", "value": "$inputs.id"}],
                    "successCriteria": [{"condition": "$statusCode == 200"}],
                    "outputs": {"status": "$response.body#/status"},
                    "onSuccess": [
                        {
                            "name": "again",
                            "type": "goto",
                            "stepId": "read",
                            "criteria": [{"condition": "$statusCode == 202"}],
                        }
                    ],
                }
            ],
            "outputs": {"status": "$steps.read.outputs.status"},
        }
    ],
}


def variant(path: str, value: Any) -> dict[str, Any]:
    """MINIMAL with one field set (``a.b.0.c``); value ``DELETE`` removes it."""
    doc = json.loads(json.dumps(MINIMAL))
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(last) if last.isdigit() else last
    if value == "DELETE":
        del node[key]
    else:
        node[key] = value
    return doc


def test_minimal_document_loads_from_data_yaml_and_json() -> None:
    for source in (MINIMAL, yaml.safe_dump(MINIMAL), json.dumps(MINIMAL)):
        doc = parse_document(source)
        assert doc.workflow().workflowId == "wf"
        assert doc.workflow("wf").step("read").operationId == "getThing"


def test_text_before_the_document_is_skipped_and_lines_are_counted() -> None:
    text = "my-workflow.yml Raw ↑\nsome: [unbalanced\n\n" + yaml.safe_dump(MINIMAL, sort_keys=False)
    assert parse_document(text).info.title == "t"
    broken = "title line\n" + yaml.safe_dump(MINIMAL, sort_keys=False) + "  bad: [\n"
    with pytest.raises(WorkflowDefinitionError, match=r"not valid YAML at line \d+"):
        parse_document(broken)


def test_extensions_are_kept_and_dates_stay_strings() -> None:
    doc = parse_document(variant("info", {"title": "t", "version": "1.0.0", "x-released": "2026-03-15"}))
    assert doc.info.extensions == {"x-released": "2026-03-15"}
    text = yaml.safe_dump(MINIMAL).replace("version: 1.0.0", "version: 2026-03-15")
    assert parse_document(text).info.version == "2026-03-15"


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (variant("arazzo", "2.0.0"), "arazzo: String should match pattern"),
        (variant("info", "DELETE"), "info: Field required"),
        (variant("sourceDescriptions", []), "sourceDescriptions: List should have at least 1 item"),
        (variant("workflows.0.steps", []), "workflows[0].steps: List should have at least 1 item"),
        (variant("workflows.0.stpes", []), "workflows[0].stpes: unknown field"),
        (
            variant("workflows.0.steps.0.operationId", "DELETE"),
            "exactly one of operationId, operationPath or workflowId",
        ),
        (variant("workflows.0.steps.0.parameters.0.in", "body"), "workflows[0].steps[0].parameters[0].in"),
        (
            variant("workflows.0.steps.0.parameters.0.in", "DELETE"),
            "in: required for an operation's parameter",
        ),
        (variant("workflows.0.steps.0.parameters.0.value", "DELETE"), "a parameter needs a 'value'"),
        (
            variant("workflows.0.steps.0.onSuccess.0.stepId", "nowhere"),
            "onSuccess[0].stepId: no step 'nowhere'",
        ),
        (variant("workflows.0.steps.0.onSuccess.0.stepId", "DELETE"), "exactly one of stepId or workflowId"),
        (
            variant("workflows.0.steps.0.onSuccess.0.type", "retry"),
            "onSuccess[0].type: Input should be 'end' or 'goto'",
        ),
        (
            variant("workflows.0.steps.0.onFailure", [{"name": "r", "type": "retry", "retryLimit": -1}]),
            "retryLimit: Input should be greater than or equal to 0",
        ),
        (
            variant("workflows.0.steps.0.onFailure", [{"name": "e", "type": "end", "retryAfter": 1}]),
            "retryAfter and retryLimit apply to type 'retry' only",
        ),
        (
            variant("workflows.0.steps.0.onFailure", [{"name": "r", "type": "retry", "stepId": "read"}]),
            "a 'retry' that first runs another step or workflow is not supported",
        ),
        (
            variant("workflows.0.steps.0.onFailure", [{"name": "g", "type": "goto", "workflowId": "other"}]),
            "onFailure[0].workflowId: no workflow 'other'",
        ),
        (
            variant("workflows.0.steps.0.outputs", {"status": "$response.bdy"}),
            "outputs.status: '$response.bdy'",
        ),
        (variant("workflows.0.steps.0.outputs", {"bad name": "$statusCode"}), "not a valid output name"),
        (variant("workflows.0.outputs", {"s": "$steps.ghost.outputs.x"}), "names no step of this workflow"),
        (
            variant("workflows.0.outputs", {"bad name": "$statusCode"}),
            "outputs.bad name: not a valid output name",
        ),
        (variant("workflows.0.steps.0.parameters.0.value", "{$inputs.id"), "not closed"),
        (variant("workflows.0.steps.0.parameters.0.value", "{$steps.ghost.outputs.x}"), "names no step"),
        (
            variant("workflows.0.steps.0.successCriteria", [{"condition": "$statusCode =="}]),
            "successCriteria[0].condition",
        ),
        (
            variant("workflows.0.steps.0.successCriteria", [{"condition": "$.a", "type": "jsonpath"}]),
            "needs a 'context'",
        ),
        (
            variant(
                "workflows.0.steps.0.successCriteria",
                [{"condition": "/a", "type": "xpath", "context": "$response.body"}],
            ),
            "xpath criteria are not supported",
        ),
        (
            variant(
                "workflows.0.steps.0.onSuccess.0.criteria",
                [{"condition": "$.x ==", "type": "jsonpath", "context": "$response.body"}],
            ),
            "neither an RFC 9535 JSONPath query",
        ),
        (variant("workflows.0.steps.0.stepId", "has space"), "stepId: String should match pattern"),
        (
            variant("workflows.0.steps.0.requestBody", {"payload": {"a": "$steps.ghost.outputs.x"}}),
            "requestBody.payload",
        ),
        (
            variant(
                "workflows.0.steps.0.requestBody",
                {"payload": {}, "replacements": [{"target": "/a", "value": "{$nope.x}"}]},
            ),
            "replacements[0]",
        ),
        (
            variant("workflows.0.parameters", [{"name": "h", "in": "header", "value": "{$inputs"}]),
            "workflows[0].parameters[0].value",
        ),
        (
            variant("workflows", [MINIMAL["workflows"][0], MINIMAL["workflows"][0]]),
            "workflowId 'wf' is used more than once",
        ),
        (
            variant("sourceDescriptions", [MINIMAL["sourceDescriptions"][0]] * 2),
            "the name 'api' is used more than once",
        ),
        (
            variant("workflows.0.steps", [MINIMAL["workflows"][0]["steps"][0]] * 2),
            "the stepId 'read' is used more than once",
        ),
        (
            variant("workflows.0.steps.0.onSuccess.0", {"reference": "$components.successActions.nope"}),
            "no component",
        ),
        (
            variant("workflows.0.steps.0.onSuccess.0", {"reference": "$components.parameters.x"}),
            "expected $components.successActions.NAME",
        ),
    ],
)
def test_malformed_documents_name_each_problem(doc: dict[str, Any], expected: str) -> None:
    with pytest.raises(WorkflowDefinitionError) as caught:
        parse_document(doc)
    assert expected in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, SdkError)
    assert caught.value.problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "holds no Arazzo document"),
        ("just some words\n", "holds no Arazzo document"),
        ("arazzo: [1, 2\n", "not valid YAML at line"),
        ("- arazzo\n- list\n", "holds no Arazzo document"),
        ("[1, 2]", "holds no Arazzo document"),
    ],
)
def test_not_a_document(text: str, expected: str) -> None:
    with pytest.raises(WorkflowDefinitionError, match=expected):
        parse_document(text)


def test_many_problems_are_listed_together() -> None:
    doc = variant("workflows.0.steps.0.outputs", {f"bad {i}": "$statusCode" for i in range(25)})
    with pytest.raises(WorkflowDefinitionError) as caught:
        parse_document(doc)
    assert len(caught.value.problems) == 25
    assert "(and 5 more)" in str(caught.value)


def test_reusable_components_are_resolved() -> None:
    doc = variant(
        "components",
        {
            "parameters": {"idParam": {"name": "id", "in": "path", "value": "x"}},
            "successActions": {"done": {"name": "done", "type": "end"}},
            "failureActions": {"retry": {"name": "retry", "type": "retry", "retryAfter": 1, "retryLimit": 3}},
        },
    )
    step = doc["workflows"][0]["steps"][0]
    step["parameters"] = [{"reference": "$components.parameters.idParam", "value": "$inputs.id"}]
    step["onSuccess"] = [{"reference": "$components.successActions.done"}]
    step["onFailure"] = [{"reference": "$components.failureActions.retry"}]
    parsed = parse_document(doc).workflow().step("read")
    assert parsed.parameters[0].value == "$inputs.id"
    assert parsed.onSuccess[0].type == "end"
    assert parsed.onFailure[0].retryLimit == 3


def test_workflow_selection_errors() -> None:
    doc = parse_document(
        variant("workflows", [MINIMAL["workflows"][0], {**MINIMAL["workflows"][0], "workflowId": "two"}])
    )
    with pytest.raises(WorkflowDefinitionError, match="several workflows; choose one of: wf, two"):
        doc.workflow()
    with pytest.raises(WorkflowDefinitionError, match="no workflow 'three'"):
        doc.workflow("three")
    with pytest.raises(KeyError):
        doc.workflow("wf").step("nope")
    with pytest.raises(KeyError):
        doc.source("nope")


def test_load_document_errors(tmp_path: Path) -> None:
    with pytest.raises(WorkflowDefinitionError, match="no Arazzo document at"):
        load_document(tmp_path / "missing.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(WorkflowDefinitionError, match="cannot read"):
        load_document(tmp_path / "bin.yaml")
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(MINIMAL))
    assert load_document(tmp_path / "ok.yaml").location == str((tmp_path / "ok.yaml").resolve())
