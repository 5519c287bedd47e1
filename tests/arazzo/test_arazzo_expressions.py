"""Arazzo runtime expressions and criteria: tables of what they evaluate to."""

from __future__ import annotations

from typing import Any

import pytest

from oqc_style_sdk._http import Secret
from oqc_style_sdk.arazzo.criteria import (
    ConditionError,
    compile_criterion,
    evaluate_condition,
    evaluate_criterion,
    loose_compare,
    loose_equal,
    parse_condition,
    truthy,
)
from oqc_style_sdk.arazzo.expressions import (
    Embedded,
    ExpressionContext,
    ExpressionError,
    Literal,
    RequestView,
    ResponseView,
    RuntimeExpression,
    compile_value,
    evaluate,
    evaluate_value,
    expressions_in,
    has_bare,
    parse_expression,
    resolve_pointer,
    reveal_text,
    to_text,
)

BODY = {
    "status": "Running",
    "state": {"life_cycle_state": "RUNNING", "count": 3},
    "items": [{"id": "a"}, {"id": "b"}],
    "a/b": 1,
    "m~n": 2,
    "flag": False,
    "nothing": None,
}


def make_ctx(warnings: list[str] | None = None, **overrides: Any) -> ExpressionContext:
    sink = warnings if warnings is not None else []
    values: dict[str, Any] = {
        "inputs": {"jobId": "j-1", "runId": 42, "args": {"x": 1}, "token": Secret("s3cret")},
        "step_outputs": {"first": {"jobId": "uuid-1", "nested.name": "dotted", "obj": {"k": [5, 6]}}},
        "step_ids": frozenset({"first", "second"}),
        "workflow_id": "wf",
        "workflow_outputs": {"done": True},
        "request": RequestView(
            method="GET",
            url="http://h/api/v1/jobs/j-1",
            headers={"Accept": "application/json"},
            query={"api-version": "2026"},
            path={"id": "j-1"},
            body={"q": 1},
        ),
        "response": ResponseView(status=200, headers={"Retry-After": "3", "Content-Type": "x"}, body=BODY),
        "source_urls": {"api": "https://example.invalid/openapi.yaml"},
        "warn": sink.append,
    }
    values.update(overrides)
    return ExpressionContext(**values)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$statusCode", 200),
        ("$method", "GET"),
        ("$url", "http://h/api/v1/jobs/j-1"),
        ("$response.body", BODY),
        ("$response.body#/status", "Running"),
        ("$response.body#/state/life_cycle_state", "RUNNING"),
        ("$response.body#/state/count", 3),
        ("$response.body#/items/1/id", "b"),
        ("$response.body#/a~1b", 1),
        ("$response.body#/m~0n", 2),
        ("$response.body#/flag", False),
        ("$response.body#/state/result_state", None),  # absent until a Databricks run ends
        ("$response.body#/items/7", None),
        ("$response.body#/items/01", None),
        ("$response.body#", BODY),
        ("$response.body.status", "Running"),
        ("$response.body.items.0.id", "a"),
        ("$response.header.retry-after", "3"),
        ("$response.header.X-Missing", None),
        ("$request.header.accept", "application/json"),
        ("$request.query.api-version", "2026"),
        ("$request.path.id", "j-1"),
        ("$request.body#/q", 1),
        ("$inputs.jobId", "j-1"),
        ("$inputs.runId", 42),  # types are kept
        ("$inputs.args", {"x": 1}),
        ("$inputs.args.x", 1),
        ("$inputs.args#/x", 1),
        ("$inputs.absent", None),
        ("$steps.first.outputs.jobId", "uuid-1"),
        ("$steps.first.outputs.nested.name", "dotted"),
        ("$steps.first.outputs.obj#/k/1", 6),
        ("$steps.first.outputs.obj.k.0", 5),
        ("$outputs.done", True),
        ("$workflows.wf.outputs.done", True),
        ("$workflows.wf.inputs.jobId", "j-1"),
        ("$sourceDescriptions.api.url", "https://example.invalid/openapi.yaml"),
        ("$sourceDescriptions.api", None),
    ],
)
def test_expression_values(text: str, expected: Any) -> None:
    assert evaluate(parse_expression(text), make_ctx()) == expected


def test_a_step_that_did_not_run_is_null_with_a_warning() -> None:
    warnings: list[str] = []
    ctx = make_ctx(warnings)
    assert evaluate(parse_expression("$steps.second.outputs.result"), ctx) is None
    assert evaluate(parse_expression("$steps.ghost.outputs.result"), ctx) is None
    assert evaluate(parse_expression("$workflows.other.outputs.x"), ctx) is None
    assert evaluate(parse_expression("$components.parameters.x"), ctx) is None
    assert "step 'second' did not run" in warnings[0]
    assert "no step 'ghost'" in warnings[1]
    assert len(warnings) == 4


def test_without_request_or_response_everything_is_null() -> None:
    ctx = ExpressionContext()
    for text in ("$statusCode", "$url", "$method", "$response.body#/a", "$request.header.A"):
        assert evaluate(parse_expression(text), ctx) is None


@pytest.mark.parametrize(
    "text",
    [
        "$nope",
        "$statusCode.x",
        "$url#/a",
        "$response",
        "$response.cookies.x",
        "$response.header",
        "$response.query.a",
        "$request.header.A#/x",
        "$inputs",
        "$steps.first",
        "$steps.first.result.x",
        "$workflows.wf.steps.x",
        "$sourceDescriptions",
        "$components.parameters",
        "$response.body#status",
        "inputs.x",
    ],
)
def test_malformed_expressions(text: str) -> None:
    with pytest.raises(ExpressionError):
        parse_expression(text)


def test_json_pointer() -> None:
    assert resolve_pointer({"a b": 1}, "/a%20b") == (True, 1)
    assert resolve_pointer({"a": 1}, "a") == (False, None)
    assert resolve_pointer("text", "/a") == (False, None)
    assert resolve_pointer([1, 2], "/-") == (False, None)


@pytest.mark.parametrize(
    ("value", "expected", "bare"),
    [
        ("$inputs.runId", 42, False),
        ("{$inputs.jobId}", "j-1", False),
        ("jobs/{$inputs.jobId}/x/{$inputs.runId}", "jobs/j-1/x/42", False),
        ("Bearer $inputs.jobId", "Bearer j-1", True),
        ("run $steps.first.outputs.jobId.", "run uuid-1.", True),
        ("code=$statusCode!", "code=200!", True),
        ("id $response.body#/status ok", "id Running ok", True),
        ("costs $5 or $url", "costs $5 or $url", False),  # not expressions: left alone
        ("plain text", "plain text", False),
        (7, 7, False),
        (None, None, False),
        (
            {"run_id": "$inputs.runId", "deep": ["{$inputs.jobId}", True]},
            {"run_id": 42, "deep": ["j-1", True]},
            False,
        ),
        ({"a": "Bearer $inputs.jobId"}, {"a": "Bearer j-1"}, True),
        (["Bearer $inputs.jobId"], ["Bearer j-1"], True),
    ],
)
def test_compiled_values(value: Any, expected: Any, bare: bool) -> None:
    compiled = compile_value(value)
    assert evaluate_value(compiled, make_ctx()) == expected
    assert has_bare(compiled) is bare


def test_embedding_kinds_of_values() -> None:
    compiled = compile_value("{$inputs.args}|{$inputs.absent}|{$response.body#/flag}|{$inputs.runId}")
    assert evaluate_value(compiled, make_ctx()) == '{"x":1}||false|42'
    assert [e.text for e in expressions_in(compiled)] == [
        "$inputs.args",
        "$inputs.absent",
        "$response.body#/flag",
        "$inputs.runId",
    ]
    assert isinstance(compile_value("x"), Literal)
    assert isinstance(compile_value("a {$inputs.x}"), Embedded)
    assert isinstance(compile_value("$inputs.x"), RuntimeExpression)


def test_a_secret_stays_secret_when_embedded() -> None:
    value = evaluate_value(compile_value("Bearer $inputs.token"), make_ctx())
    assert isinstance(value, Secret)
    assert value.reveal() == "Bearer s3cret"
    assert "s3cret" not in to_text(value)
    assert reveal_text(value) == "Bearer s3cret"
    assert to_text({"t": Secret("s3cret")}) == '{"t":"***"}'
    assert to_text(1.5) == "1.5"
    assert to_text(None) == ""


@pytest.mark.parametrize("value", ["{$inputs.x", "{$nope.x}", "{$steps.a}"])
def test_malformed_embeddings(value: str) -> None:
    with pytest.raises(ExpressionError):
        compile_value(value)


def test_malformed_whole_value_is_an_error_not_a_literal() -> None:
    with pytest.raises(ExpressionError):
        compile_value("$steps.only")


# -- criteria ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("$statusCode == 200", True),
        ("$statusCode == 201", False),
        ("$statusCode != 404", True),
        ("$statusCode >= 200 && $statusCode < 300", True),
        ("$statusCode > 200 || $statusCode <= 199", False),
        ("$statusCode == '200'", True),  # loose: numeric string against a number
        ("$response.body#/status == 'running'", True),  # string comparisons ignore case
        ("$response.body#/status == 'Queued' || $response.body#/status == 'Running'", True),
        ("$response.body#/status != 'Running' && $response.body#/status != 'Queued'", False),
        ("!($response.body#/status == 'Running')", False),
        ("!$response.body#/flag", True),
        ("$response.body#/state/count > 2.5", True),
        ("$response.body#/state/count < -1", False),
        ("$response.body#/state/result_state == null", True),
        ("$response.body#/nothing == null", True),
        ("$response.body#/flag == false", True),
        ("$response.body#/flag == 0", False),  # booleans are not numbers
        ("$response.body#/status == 1", False),
        ("$response.body#/items[1].id == 'b'", True),
        ("$response.body.items[0]['id'] == \"a\"", True),
        ("$response.body.state.life_cycle_state == 'RUNNING'", True),
        ("$response.body#/items", True),  # a lone operand: truthy
        ("$response.body#/missing", False),
        ("'it''s' == \"it's\"", True),
        ('"a\\"b" == \'a"b\'', True),
        ("\"\\u0041\" == 'a'", True),
        ("'b' > 'A'", True),
        ("'a' < 1", False),
        ("true && (false || 1e0 == 1)", True),
        ("$inputs.runId == 42 && $inputs.jobId == 'J-1'", True),
        ("$response.header.Retry-After == 3", True),
        ("null", False),
    ],
)
def test_simple_conditions(condition: str, expected: bool) -> None:
    assert evaluate_condition(parse_condition(condition), make_ctx()) is expected


@pytest.mark.parametrize(
    "condition",
    [
        "",
        "$statusCode ==",
        "$statusCode = 200",
        "($statusCode == 200",
        "$statusCode == 200)",
        "$.status == 'x'",  # a context path is not a runtime expression in a simple condition
        "$nope == 1",
        "200 200",
        "'unterminated",
        "$response.body[x]",
        "$response.body. == 1",
        "#",
    ],
)
def test_malformed_conditions(condition: str) -> None:
    with pytest.raises(ConditionError):
        parse_condition(condition)


def test_loose_semantics() -> None:
    assert loose_equal([1], [1])
    assert not loose_equal([1], {"a": 1})
    assert not loose_equal(None, 0)
    assert loose_equal(1, 1.0)
    assert not loose_equal("x", 1)
    assert loose_compare(">=", "2", 1)
    assert not loose_compare("<", True, 2)
    assert not loose_compare("<", None, 2)
    assert loose_compare("<=", 1, 1)
    assert truthy({"a": 1})
    assert not truthy("")
    assert not truthy(0)
    assert truthy(object())


SEED_STYLE = '$.status == "Queued" || $.status == "Running"'


@pytest.mark.parametrize(
    ("condition", "context", "body", "kind", "expected"),
    [
        # RFC 9535 queries: true when they select something.
        ("$[?@.status == 'Running']", "$response.body", [{"status": "Running"}], "jsonpath", True),
        ("$[?@.status == 'Queued']", "$response.body", [{"status": "Running"}], "jsonpath", False),
        ("$.state.life_cycle_state", "$response.body", BODY, "jsonpath", True),
        ("$.state.result_state", "$response.body", BODY, "jsonpath", False),
        ("$[?count(@.items) > 0]", "$response.body", [BODY], "jsonpath", True),
        ("$", "$response.body", "a plain string", "jsonpath", True),
        ("$.x", "$response.body", '{"x": 1}', "jsonpath", False),  # a string is not parsed as JSON
        # The seeds' comparison form, evaluated against the context.
        (SEED_STYLE, "$response.body", {"status": "Queued"}, "comparison", True),
        (SEED_STYLE, "$response.body", {"status": "Running"}, "comparison", True),
        (SEED_STYLE, "$response.body", {"status": "Completed"}, "comparison", False),
        (SEED_STYLE, "$response.body", {}, "comparison", False),
        (SEED_STYLE, "$response.body", "not an object", "comparison", False),
        (
            '$.state.life_cycle_state == "TERMINATED" || $.state.life_cycle_state == "INTERNAL_ERROR"',
            "$response.body",
            {"state": {"life_cycle_state": "TERMINATED", "result_state": "CANCELED"}},
            "comparison",
            True,
        ),
        ("$['state']['count'] > 2 && $.items[0].id == 'a'", "$response.body", BODY, "comparison", True),
        ('$.type == "CompletedJob"', "$response.body", {"type": "QueuedJob"}, "comparison", False),
        # regex: searched in the context's text
        ("^2\\d\\d$", "$statusCode", BODY, "regex", True),
        ("^Run", "$response.body#/status", BODY, "regex", True),
        ('"count":3', "$response.body#/state", BODY, "regex", True),
        ("x", "$response.body#/missing", BODY, "regex", False),
    ],
)
def test_typed_criteria(condition: str, context: str, body: Any, kind: str, expected: bool) -> None:
    criterion_type = "regex" if kind == "regex" else "jsonpath"
    compiled = compile_criterion(condition, criterion_type, context)
    assert compiled.kind == kind
    ctx = make_ctx(response=ResponseView(status=204, body=body))
    if kind == "regex" and context == "$statusCode":
        ctx = make_ctx()
    assert evaluate_criterion(compiled, ctx) is expected


def test_goessner_version_uses_the_lenient_parser() -> None:
    compiled = compile_criterion(
        "$.status", "jsonpath", "$response.body", "draft-goessner-dispatch-jsonpath-00"
    )
    assert compiled.kind == "jsonpath"
    assert evaluate_criterion(compiled, make_ctx())


def test_simple_criterion_with_context() -> None:
    compiled = compile_criterion("$statusCode == 200", None, None)
    assert compiled.kind == "simple"
    assert evaluate_criterion(compiled, make_ctx())


@pytest.mark.parametrize(
    ("condition", "kind", "context", "message"),
    [
        ("$.a ==", "jsonpath", "$response.body", "neither an RFC 9535 JSONPath query"),
        ("x", "jsonpath", None, "needs a 'context'"),
        ("(", "regex", "$response.body", "not a valid regular expression"),
        ("/a", "xpath", "$response.body", "not supported"),
        ("$statusCode == 200", "simple", "$nope", "context:"),
    ],
)
def test_bad_criteria(condition: str, kind: str, context: str | None, message: str) -> None:
    with pytest.raises(ConditionError, match=message):
        compile_criterion(condition, kind, context)


def test_no_eval_anywhere() -> None:
    """A condition is data: Python in it is a syntax error, not code."""
    for hostile in ("__import__('os').system('true')", "$statusCode == 200 or 1", "lambda: 1"):
        with pytest.raises(ConditionError):
            parse_condition(hostile)
