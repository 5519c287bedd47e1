"""The IBM Quantum emulator's contract: endpoints, bodies and error shapes (plain aiohttp), and every
request body the backend sends / result the emulator returns checked against IBM's JSON schemas.

The schemas are verbatim copies of ``specs/ibm-quantum-sampler-v2-*.json`` in ``tests/data/ibm/``:
IBM's official SamplerV2 input and plain-JSON result schemas (draft-04), and the schema generated from
IBM's current Pydantic params model.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import jsonschema
import pytest

from oqc_style_sdk import JobState, Sdk
from oqc_style_sdk.backends.ibm_quantum import decode_samples
from oqc_style_sdk.polling import PollingPolicy
from oqc_style_sdk.testing.emulator import REDACTED
from oqc_style_sdk.testing.ibm_quantum import (
    IAM_GRANT_TYPE,
    JOB_STATUSES,
    IbmQuantumEmulator,
)
from tests.common import BELL as BELL2
from tests.common import BELL3, DATA

DATA = DATA / "ibm"
INPUT_SCHEMA = json.loads((DATA / "ibm-quantum-sampler-v2-input.schema.json").read_text())
RESULT_SCHEMA = json.loads((DATA / "ibm-quantum-sampler-v2-result.schema.json").read_text())
#: IBM's Qiskit-encoded result model (``specs/``: generated from ibm-quantum-schemas' Pydantic models).
QISKIT_RESULT_SCHEMA = json.loads(
    (DATA / "ibm-quantum-sampler-v2-result-qiskit-encoded.generated-from-pydantic.schema.json").read_text()
)
PARAMS_MODEL_SCHEMA = json.loads(
    (DATA / "ibm-quantum-sampler-v2-params.generated-from-pydantic.schema.json").read_text()
)
BOUND_S = 10
DEVICE = "ibm_fez"
#: VENDORS.md §1's minimal ISA example (H as rz·sx·rz on physical qubit $0).
ISA = 'OPENQASM 3.0; include "stdgates.inc"; bit[1] c; rz(pi/2) $0; sx $0; rz(pi/2) $0; c[0] = measure $0;'
#: A Bell pair in ibm_fez's native gates on the coupled physical qubits $0 and $1 (cx = H·cz·H).
ISA_BELL = (
    'OPENQASM 3.0; include "stdgates.inc"; bit[2] c; '
    "rz(pi/2) $0; sx $0; rz(pi/2) $0; rz(pi/2) $1; sx $1; rz(pi/2) $1; cz $0, $1; "
    "rz(pi/2) $1; sx $1; rz(pi/2) $1; c[0] = measure $0; c[1] = measure $1;"
)


def check_input(params: Any) -> None:
    """``params`` against IBM's official input schema, and against its current Pydantic model.

    The model wants PUBs of exactly three items (circuit, ndarray parameter values, shots) — what
    qiskit-ibm-runtime sends after normalising; IBM's REST guide and JSON schema take ``[circuit]``.
    That one constraint is relaxed; everything else (no top-level ``shots``: additionalProperties
    false; ``options.default_shots``) is checked as the model has it.
    """
    jsonschema.Draft4Validator(INPUT_SCHEMA).validate(params)
    relaxed = copy.deepcopy(PARAMS_MODEL_SCHEMA)
    relaxed["$defs"]["SamplerPubModel"]["minItems"] = 1
    jsonschema.Draft202012Validator(relaxed).validate(params)


def check_result(body: Any) -> None:
    jsonschema.Draft4Validator(RESULT_SCHEMA).validate(body)


def check_error(body: Any, status: int) -> None:
    """IBM's error body: ``{"errors": [{"code", "message", "more_info"}], "trace"}``."""
    assert set(body) == {"errors", "trace"}, body
    assert isinstance(body["trace"], str)
    [error] = body["errors"]
    assert set(error) == {"code", "message", "more_info"}
    assert all(isinstance(value, str) and value for value in error.values())


class Api:
    """A plain aiohttp client of the emulator."""

    def __init__(self, emu: IbmQuantumEmulator, session: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.session = session
        self.bearer: str | None = None

    async def token(self, api_key: str | None = None, grant_type: str = IAM_GRANT_TYPE) -> tuple[int, Any]:
        form = {"grant_type": grant_type, "apikey": api_key if api_key is not None else self.emu.api_key}
        async with self.session.post(self.emu.iam_url, data=form) as response:
            return response.status, await response.json()

    async def login(self) -> None:
        status, body = await self.token()
        assert status == 200, body
        self.bearer = body["access_token"]

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        sent = {
            "Authorization": f"Bearer {self.bearer}",
            "Service-CRN": self.emu.instance,
            "IBM-API-Version": "2026-04-15",
        }
        sent.update(headers or {})
        sent = {k: v for k, v in sent.items() if v}
        url = self.emu.api_url + path
        async with self.session.request(method, url, json=body, params=params, headers=sent) as response:
            text = await response.text()
            return response.status, dict(response.headers), json.loads(text) if text else None

    async def create(self, circuit: str = ISA_BELL, **params: Any) -> str:
        body = {
            "program_id": "sampler",
            "backend": DEVICE,
            "params": {"pubs": [[circuit]], "version": 2, "support_qiskit": False, **params},
        }
        status, _, answer = await self.call("POST", "/jobs", body)
        assert status == 200, answer
        assert set(answer) == {"id", "backend"}
        assert answer["backend"] == DEVICE
        job_id: str = answer["id"]
        return job_id

    async def job(self, job_id: str) -> dict[str, Any]:
        status, _, body = await self.call("GET", f"/jobs/{job_id}")
        assert status == 200, body
        assert isinstance(body, dict)
        return body

    async def wait(self, job_id: str, *until: str) -> dict[str, Any]:
        with anyio.fail_after(BOUND_S):
            while True:
                body = await self.job(job_id)
                if body["status"] in until:
                    return body
                await anyio.sleep(0.02)


@pytest.fixture
async def emu() -> AsyncIterator[IbmQuantumEmulator]:
    async with IbmQuantumEmulator(job_duration_s=0.05, max_lifetime_s=60) as emulator:
        yield emulator


@pytest.fixture
async def api(emu: IbmQuantumEmulator, session: aiohttp.ClientSession) -> Api:
    client = Api(emu, session)
    await client.login()
    return client


# ==================================================================================================
# the backend's requests and the emulator's results, against IBM's schemas
# ==================================================================================================


@pytest.mark.parametrize(
    ("program", "config", "tag"),
    [
        (BELL2, {"shots": 1000}, "bell"),
        (BELL3, {}, None),
        (
            BELL3,
            {"shots": 64, "options": {"dynamical_decoupling": {"enable": True, "sequence_type": "XY4"}}},
            None,
        ),
    ],
    ids=["qasm2-shots-tag", "qasm3-default-shots", "qasm3-options"],
)
async def test_every_submit_body_and_result_matches_the_schemas(
    emu: IbmQuantumEmulator,
    session: aiohttp.ClientSession,
    program: str,
    config: dict[str, Any],
    tag: str | None,
) -> None:
    polling = PollingPolicy(min_interval_s=0.02, max_interval_s=0.1)
    async with Sdk("ibm_quantum", default_target=DEVICE, polling=polling, **emu.credentials) as sdk:
        job = sdk.create_job(program=program, config=config, tag=tag)
        await job.execute(timeout_s=BOUND_S)
    assert job.state is JobState.COMPLETED
    [posted] = [r for r in emu.requests if (r.method, r.path) == ("POST", "/api/v1/jobs")]
    body = posted.body
    assert body["program_id"] == "sampler"
    assert body["backend"] == DEVICE
    *own, submission = body["tags"]
    assert own == ([tag] if tag else [])
    assert submission.startswith("oqcs-submission:")
    check_input(body["params"])
    assert body["params"]["version"] == 2
    assert body["params"]["support_qiskit"] is False
    assert body["params"]["pubs"][0][0].startswith("OPENQASM 3.0;")
    # Every request carried the three headers (the bearer token redacted in the log).
    for entry in emu.requests:
        if entry.path.startswith("/api/v1/") and entry.status != 401:
            assert entry.headers["Authorization"] == REDACTED
            assert entry.headers["Service-CRN"] == emu.instance
            assert entry.headers["IBM-API-Version"] == "2026-04-15"
    api = Api(emu, session)
    await api.login()
    status, _, result = await api.call("GET", f"/jobs/{job.task_id}/results")
    assert status == 200
    check_result(result)
    shots = config.get("shots", 4096)
    register = result["results"][0]["data"]["c"]
    assert register["num_bits"] == 2
    assert len(register["samples"]) == shots
    assert job.result is not None
    assert decode_samples(result) == job.result.data


async def test_results_of_several_pubs_and_registers_match_the_schema(api: Api) -> None:
    program = (
        'OPENQASM 3.0; include "stdgates.inc"; qubit[3] q; bit[1] a; bit[2] b; x q[2]; '
        "a[0] = measure q[0]; b[0] = measure q[1]; b[1] = measure q[2];"
    )
    body = {
        "program_id": "sampler",
        "backend": DEVICE,
        "params": {
            "pubs": [[program, None, 300], [ISA, {}, 20], [ISA_BELL]],
            "options": {"default_shots": 50},
        },
    }
    jsonschema.Draft4Validator(INPUT_SCHEMA).validate(body["params"])  # IBM's REST-guide PUB forms
    status, _, answer = await api.call("POST", "/jobs", body)
    assert status == 200, answer
    await api.wait(answer["id"], "Completed")
    status, _, result = await api.call("GET", f"/jobs/{answer['id']}/results")
    assert status == 200
    check_result(result)
    first, isa, bell = result["results"]
    assert first["data"] == {
        "a": {"samples": ["0x0"] * 300, "num_bits": 1},
        "b": {"samples": ["0x2"] * 300, "num_bits": 2},
    }
    assert isa["data"]["c"]["num_bits"] == 1
    assert len(isa["data"]["c"]["samples"]) == 20
    assert set(isa["data"]["c"]["samples"]) <= {"0x0", "0x1"}
    assert len(bell["data"]["c"]["samples"]) == 50  # options.default_shots
    assert set(bell["data"]["c"]["samples"]) <= {"0x0", "0x3"}


# ==================================================================================================
# IAM and authentication
# ==================================================================================================


async def test_iam_issues_bearer_tokens_and_refuses_wrong_keys(
    emu: IbmQuantumEmulator, session: aiohttp.ClientSession
) -> None:
    api = Api(emu, session)
    status, body = await api.token()
    assert status == 200
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "expiration", "scope"}
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 3600)
    assert isinstance(body["expiration"], int)
    status, body = await api.token("wrong-key")
    assert status == 400
    assert body["errorCode"] == "BXNIM0415E"
    assert body["errorMessage"] == "Provided API key could not be found."
    status, body = await api.token(grant_type="password")
    assert (status, body["errorCode"]) == (400, "BXNIM0109E")
    status, body = await api.token("")
    assert (status, body["errorCode"]) == (400, "BXNIM0109E")
    logged = repr(emu.requests)
    assert emu.api_key not in logged
    assert "wrong-key" not in logged  # any API key sent to IAM is redacted
    assert emu.tokens_issued == 1


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Authorization": ""}, 401),
        ({"Authorization": "Bearer not-a-token"}, 401),
        ({"Authorization": "Basic abc"}, 401),
        ({"Service-CRN": ""}, 400),
        ({"Service-CRN": "crn:v1:bluemix:public:quantum-computing:us-east:a/x:y::"}, 403),
        ({"IBM-API-Version": "yesterday"}, 400),
    ],
    ids=["no-token", "wrong-token", "not-bearer", "no-crn", "other-crn", "bad-api-version"],
)
@pytest.mark.parametrize(("method", "path"), [("GET", "/backends"), ("POST", "/jobs"), ("GET", "/jobs/x")])
async def test_requests_without_valid_credentials_are_refused(
    api: Api, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    got, _, body = await api.call(method, path, {}, headers=headers)
    assert got == status
    check_error(body, status)
    assert api.emu.job_ids == []


async def test_expired_tokens_get_401(session: aiohttp.ClientSession) -> None:
    async with IbmQuantumEmulator(token_ttl_s=0.3, max_lifetime_s=60) as emu:
        api = Api(emu, session)
        status, body = await api.token()
        assert body["expires_in"] == 0.3
        api.bearer = body["access_token"]
        assert (await api.call("GET", "/backends"))[0] == 200
        await anyio.sleep(0.35)
        status, _, error = await api.call("GET", "/backends")
        assert status == 401
        check_error(error, 401)
        assert "expired" in error["errors"][0]["message"]
        await api.login()
        assert (await api.call("GET", "/backends"))[0] == 200
        emu.expire_tokens()
        assert (await api.call("GET", "/backends"))[0] == 401


# ==================================================================================================
# backends, jobs, statuses
# ==================================================================================================


async def test_backends_list(api: Api) -> None:
    status, _, body = await api.call("GET", "/backends")
    assert status == 200
    assert [d["name"] for d in body["devices"]] == ["ibm_fez", "ibm_torino", "ibm_kingston"]
    for device in body["devices"]:
        assert set(device) == {"name", "status", "is_simulator", "qubits", "queue_length", "processor_type"}
        assert device["status"] == {"name": "online", "reason": "available"}


async def test_job_object_and_every_status_value(api: Api) -> None:
    job_id = await api.create(options={"default_shots": 10})
    body = await api.wait(job_id, "Completed")
    assert set(body) >= {"id", "backend", "state", "status", "program", "created", "cost", "usage", "params"}
    assert body["program"] == {"id": "sampler"}
    assert body["state"] == {"status": "Completed"}
    assert body["created"].endswith("Z")
    status, _, lean = await api.call("GET", f"/jobs/{job_id}", params={"exclude_params": "true"})
    assert status == 200
    assert "params" not in lean
    for value in JOB_STATUSES:
        await api.emu.set_status(job_id, value)
        body = await api.job(job_id)
        assert body["status"] == value
        if value == "Cancelled - Ran too long":
            assert body["state"]["status"] == "Cancelled"
            assert body["state"]["reason_code"] == 1305
        else:
            assert body["state"]["status"] == value
        if value == "Failed":
            assert body["state"]["reason_code"] == 1010
    await api.emu.set_status(job_id, None)
    assert (await api.job(job_id))["status"] == "Completed"
    with pytest.raises(KeyError):
        await api.emu.set_status("nope", "Queued")


async def test_queued_running_then_completed(session: aiohttp.ClientSession) -> None:
    async with IbmQuantumEmulator(job_duration_s=2, max_concurrency=1, max_lifetime_s=60) as emu:
        api = Api(emu, session)
        await api.login()
        first = await api.create()
        second = await api.create()
        assert (await api.job(first))["status"] == "Running"
        assert (await api.job(second))["status"] == "Queued"
        await api.wait(second, "Completed")
        assert (await api.job(first))["status"] == "Completed"
        assert emu.engine_runs == 2


async def test_a_circuit_that_is_not_openqasm_3_fails_the_job(api: Api) -> None:
    job_id = await api.create(BELL2)
    body = await api.wait(job_id, "Failed", "Completed")
    assert body["status"] == "Failed"
    assert body["state"]["reason_code"] == 1002
    assert "OpenQASM 3" in body["state"]["reason"]
    status, _, error = await api.call("GET", f"/jobs/{job_id}/results")
    assert status == 409
    check_error(error, 409)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ([], 400),
        ({"program_id": "estimator", "backend": DEVICE, "params": {"pubs": [[BELL3]]}}, 404),
        ({"program_id": "sampler", "backend": "ibm_nowhere", "params": {"pubs": [[BELL3]]}}, 400),
        ({"program_id": "sampler", "backend": DEVICE}, 400),
        ({"program_id": "sampler", "backend": DEVICE, "params": {"pubs": []}}, 400),
        ({"program_id": "sampler", "backend": DEVICE, "params": {"pubs": [[BELL3]], "version": 1}}, 400),
        (
            {
                "program_id": "sampler",
                "backend": DEVICE,
                "params": {"pubs": [[BELL3]], "support_qiskit": "yes"},
            },
            400,
        ),
        (
            {
                "program_id": "sampler",
                "backend": DEVICE,
                "params": {"pubs": [[{"__type__": "QuantumCircuit"}]]},
            },
            400,
        ),
        ({"program_id": "sampler", "backend": DEVICE, "params": {"pubs": [[BELL3, {"theta": 1}]]}}, 400),
        ({"program_id": "sampler", "backend": DEVICE, "params": {"pubs": [[BELL3, None, 0]]}}, 400),
        ({"program_id": "sampler", "backend": DEVICE, "params": {"pubs": [[BELL3]], "shots": 10**6}}, 400),
    ],
    ids=[
        "not-an-object",
        "other-program",
        "unknown-backend",
        "no-params",
        "no-pubs",
        "version-1",
        "support-qiskit-not-bool",
        "qpy-without-payload",
        "parameters",
        "zero-shots",
        "too-many-shots",
    ],
)
async def test_refused_creations_create_nothing(api: Api, body: Any, status: int) -> None:
    got, _, error = await api.call("POST", "/jobs", body)
    assert got == status
    check_error(error, status)
    assert api.emu.job_ids == []


async def test_job_list_filters_pages_and_sorts(api: Api) -> None:
    done = await api.create(options={"default_shots": 5})
    await api.wait(done, "Completed")
    first_pending = await api.create()
    second_pending = await api.create()
    for job_id in (first_pending, second_pending):
        await api.emu.set_status(job_id, "Queued")
    status, _, page = await api.call("GET", "/jobs")
    assert status == 200
    assert set(page) == {"jobs", "count", "offset", "limit"}
    assert [j["id"] for j in page["jobs"]] == [second_pending, first_pending, done]  # newest first
    status, _, page = await api.call("GET", "/jobs", params={"pending": "true", "sort": "ASC"})
    assert [j["id"] for j in page["jobs"]] == [first_pending, second_pending]
    status, _, page = await api.call("GET", "/jobs", params={"pending": "false", "exclude_params": "true"})
    assert [j["id"] for j in page["jobs"]] == [done]
    assert "params" not in page["jobs"][0]
    status, _, page = await api.call("GET", "/jobs", params={"limit": "1", "offset": "1"})
    assert (page["count"], page["limit"], page["offset"]) == (3, 1, 1)
    assert [j["id"] for j in page["jobs"]] == [first_pending]
    status, _, page = await api.call("GET", "/jobs", params={"created_after": "2999-01-01T00:00:00Z"})
    assert page["jobs"] == []
    for bad in ({"limit": "0"}, {"pending": "maybe"}, {"created_after": "soon"}, {"sort": "up"}):
        status, _, error = await api.call("GET", "/jobs", params=bad)
        assert status == 400
        check_error(error, 400)


# ==================================================================================================
# rate limit, cancel, delete, metrics
# ==================================================================================================


async def test_job_creation_is_rate_limited_with_retry_after(session: aiohttp.ClientSession) -> None:
    async with IbmQuantumEmulator(max_jobs_per_window=2, rate_window_s=0.5, max_lifetime_s=60) as emu:
        api = Api(emu, session)
        await api.login()
        await api.create()
        await api.create()
        status, headers, error = await api.call(
            "POST", "/jobs", {"program_id": "sampler", "backend": DEVICE, "params": {"pubs": [[BELL3]]}}
        )
        assert status == 429
        check_error(error, 429)
        assert "rate limited to 2 jobs" in error["errors"][0]["message"]
        retry_after = float(headers["Retry-After"])
        assert 0 < retry_after <= 0.5
        assert len(emu.job_ids) == 2  # the refused request created nothing
        await anyio.sleep(retry_after)
        await api.create()
        assert len(emu.job_ids) == 3


async def test_cancel_is_204_while_active_409_once_ended_404_when_unknown(
    session: aiohttp.ClientSession,
) -> None:
    async with IbmQuantumEmulator(job_duration_s=30, max_lifetime_s=60) as emu:
        api = Api(emu, session)
        await api.login()
        job_id = await api.create()
        status, _, body = await api.call("POST", f"/jobs/{job_id}/cancel")
        assert (status, body) == (204, None)
        assert (await api.job(job_id))["status"] == "Cancelled"
        status, _, error = await api.call("POST", f"/jobs/{job_id}/cancel")
        assert status == 409
        check_error(error, 409)
        status, _, error = await api.call("POST", "/jobs/nosuchjob/cancel")
        assert status == 404
        check_error(error, 404)
        assert error["errors"][0]["message"] == "Job not found"
        for path in ("/jobs/nosuchjob", "/jobs/nosuchjob/results", "/jobs/nosuchjob/metrics"):
            status, _, error = await api.call("GET", path)
            assert status == 404
            check_error(error, 404)
        other = await api.create()
        await emu.set_status(other, "Completed")
        status, _, error = await api.call("POST", f"/jobs/{other}/cancel")
        assert status == 409
        status, _, error = await api.call("GET", f"/jobs/{other}/results")
        assert status == 409  # forced Completed before the run finished: no results


async def test_delete_and_metrics(api: Api) -> None:
    job_id = await api.create(options={"default_shots": 5})
    await api.wait(job_id, "Completed")
    status, _, metrics = await api.call("GET", f"/jobs/{job_id}/metrics")
    assert status == 200
    assert set(metrics["timestamps"]) == {"created", "running", "finished"}
    assert metrics["timestamps"]["finished"] is not None
    assert metrics["usage"]["seconds"] >= 0
    await api.emu.set_status(job_id, "Running")
    status, _, error = await api.call("DELETE", f"/jobs/{job_id}")
    assert status == 409
    check_error(error, 409)
    await api.emu.set_status(job_id, None)
    status, _, _ = await api.call("DELETE", f"/jobs/{job_id}")
    assert status == 204
    assert (await api.call("GET", f"/jobs/{job_id}"))[0] == 404


async def test_faults_use_ibms_error_shape(api: Api) -> None:
    api.emu.fail_next(1, status=503, path="/api/v1/backends", retry_after=1)
    status, headers, error = await api.call("GET", "/backends")
    assert (status, headers["Retry-After"]) == (503, "1")
    check_error(error, 503)
    status, _, error = await api.call("GET", "/nothing/here")
    assert status == 404
    check_error(error, 404)


# ==================================================================================================
# ISA circuits only, as IBM's devices; devices as qiskit-ibm-runtime reads them
# ==================================================================================================


@pytest.mark.parametrize(
    ("circuit", "named"),
    [
        (BELL3, "the instruction h is not supported by ibm_fez"),
        (
            'OPENQASM 3.0; include "stdgates.inc"; bit[1] c; cz $0, $5; c[0] = measure $0;',
            "the instruction cz on qubits (0, 5) is not supported by ibm_fez",
        ),
        (
            'OPENQASM 3.0; include "stdgates.inc"; bit[1] c; x $156; c[0] = measure $156;',
            "the circuit has 157 qubits; ibm_fez has 156",
        ),
    ],
    ids=["not-native", "uncoupled-pair", "beyond-the-device"],
)
async def test_a_circuit_that_is_not_isa_fails_the_job_as_ibm_fails_it(
    api: Api, circuit: str, named: str
) -> None:
    """IBM creates the job, then fails it with error 1517 and its "non-ISA circuits" message."""
    job_id = await api.create(circuit)
    body = await api.wait(job_id, "Failed", "Completed")
    assert body["status"] == "Failed"
    assert body["state"]["reason_code"] == 1517
    reason = body["state"]["reason"]
    assert "Circuits do not match the target definition (non-ISA circuits)" in reason
    assert named in reason
    assert "generate_preset_pass_manager" in reason  # IBM's advice: transpile for the target
    assert api.emu.engine_runs == 0
    status, _, error = await api.call("GET", f"/jobs/{job_id}/results")
    assert status == 409
    check_error(error, 409)


async def test_each_device_has_a_configuration_properties_and_status(api: Api) -> None:
    from qiskit.transpiler import CouplingMap

    _, _, listed = await api.call("GET", "/backends")
    for device in listed["devices"]:
        name = device["name"]
        status, _, config = await api.call("GET", f"/backends/{name}/configuration")
        assert status == 200
        assert config["backend_name"] == name
        assert config["n_qubits"] == device["qubits"]
        assert config["basis_gates"] == ["cz", "id", "rz", "sx", "x"]
        assert {"measure", "reset", "delay", "if_else"} <= set(config["supported_instructions"])
        coupling = CouplingMap(config["coupling_map"])
        assert coupling.is_connected()
        assert coupling.size() == config["n_qubits"]
        degrees = {q: len(coupling.neighbors(q)) for q in coupling.physical_qubits}
        assert max(degrees.values()) == 3  # heavy-hex: no qubit has more than three couplers
        cz = next(g for g in config["gates"] if g["name"] == "cz")
        assert sorted(map(tuple, cz["coupling_map"])) == sorted(map(tuple, config["coupling_map"]))
        status, _, props = await api.call("GET", f"/backends/{name}/properties")
        assert status == 200
        assert len(props["qubits"]) == config["n_qubits"]
        assert {p["name"] for p in props["qubits"][0]} >= {"T1", "T2", "frequency", "readout_error"}
        assert {g["gate"] for g in props["gates"]} == set(config["basis_gates"])
        status, _, state = await api.call("GET", f"/backends/{name}/status")
        assert status == 200
        assert (state["state"], state["status"], state["length_queue"]) == (True, "active", 0)
        # the same numbers on every read (seeded by the device's name)
        assert (await api.call("GET", f"/backends/{name}/properties"))[2] == props
    status, _, error = await api.call("GET", "/backends/ibm_nowhere/configuration")
    assert status == 404
    check_error(error, 404)


async def test_iam_access_tokens_are_jwts_with_their_real_expiry(api: Api) -> None:
    import base64

    status, body = await api.token()
    assert status == 200
    header, payload, signature = body["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["typ"] == "JWT"
    assert signature
    assert claims["exp"] - claims["iat"] == body["expires_in"] == 3600
    assert claims["exp"] == body["expiration"]


async def test_global_search_and_catalog_list_the_accounts_instance(api: Api) -> None:
    search = {"query": "service_name:quantum-computing", "fields": ["crn", "service_plan_unique_id", "doc"]}
    headers = {"Authorization": f"Bearer {api.bearer}"}
    async with api.session.post(
        f"{api.emu.base_url}/global-search/v3/resources/search", json=search, headers=headers
    ) as r:
        assert r.status == 200
        [item] = (await r.json())["items"]
    assert item["crn"] == api.emu.instance
    assert item["doc"]["extensions"]
    plan = item["service_plan_unique_id"]
    async with api.session.get(f"{api.emu.base_url}/global-catalog/api/v1/{plan}", headers=headers) as r:
        assert r.status == 200
        assert (await r.json())["metadata"]["pricing"]["type"] == "free"
    async with api.session.post(f"{api.emu.base_url}/global-search/v3/resources/search", json=search) as r:
        assert r.status == 401  # IBM Cloud's services want a token too


def _qpy(circuit: Any) -> dict[str, str]:
    """A circuit as qiskit-ibm-runtime encodes it (QPY, zlib, base64)."""
    import base64
    import io
    import zlib

    import qiskit.qpy

    buffer = io.BytesIO()
    qiskit.qpy.dump(circuit, buffer)
    return {
        "__type__": "QuantumCircuit",
        "__value__": base64.b64encode(zlib.compress(buffer.getvalue())).decode(),
    }


async def test_qpy_circuits_and_qiskit_encoded_results(api: Api) -> None:
    import qiskit.qasm3
    from qiskit_ibm_runtime import RuntimeDecoder

    isa = qiskit.qasm3.loads(ISA_BELL)
    job_id = await api.create(_qpy(isa), support_qiskit=True, options={"default_shots": 64})
    await api.wait(job_id, "Completed")
    status, _, result = await api.call("GET", f"/jobs/{job_id}/results")
    assert status == 200
    jsonschema.Draft202012Validator(QISKIT_RESULT_SCHEMA).validate(result)
    decoded = json.loads(json.dumps(result), cls=RuntimeDecoder)  # the official client's decoder
    counts = decoded[0].data.c.get_counts()
    assert set(counts) <= {"00", "11"}
    assert sum(counts.values()) == 64
    assert decoded.metadata["execution"]["execution_spans"][0].size == 64


async def test_sessions_and_batches_take_jobs_until_closed(api: Api) -> None:
    status, _, session = await api.call("POST", "/sessions", {"mode": "batch", "backend": DEVICE})
    assert status == 200
    sid = session["id"]
    assert (session["mode"], session["state"], session["accepting_jobs"]) == ("batch", "open", True)

    def job_in(session_id: str, backend: str = DEVICE) -> dict[str, Any]:
        params = {"pubs": [[ISA_BELL]], "support_qiskit": False}
        return {"program_id": "sampler", "backend": backend, "params": params, "session_id": session_id}

    status, _, created = await api.call("POST", "/jobs", job_in(sid))
    assert status == 200
    assert created["session_id"] == sid
    assert (await api.job(created["id"]))["session_id"] == sid
    _, _, details = await api.call("GET", f"/sessions/{sid}")
    assert (details["state"], details["backend_name"]) == ("active", DEVICE)
    assert (await api.call("POST", "/jobs", job_in(sid, "ibm_torino")))[0] == 400  # another device
    assert (await api.call("POST", "/jobs", job_in("no-such-session")))[0] == 404
    assert (await api.call("PATCH", f"/sessions/{sid}", {"accepting_jobs": False}))[0] == 204
    status, _, error = await api.call("POST", "/jobs", job_in(sid))
    assert status == 400
    check_error(error, 400)
    assert "does not accept jobs" in error["errors"][0]["message"]
    assert (await api.call("DELETE", f"/sessions/{sid}/close"))[0] == 204
    _, _, details = await api.call("GET", f"/sessions/{sid}")
    assert (details["state"], details["accepting_jobs"]) == ("closed", False)
    assert len(api.emu.job_ids) == 1  # the refused jobs created nothing


async def test_closing_a_session_cancels_its_active_jobs(session: aiohttp.ClientSession) -> None:
    async with IbmQuantumEmulator(job_duration_s=30, max_lifetime_s=60) as emu:
        api = Api(emu, session)
        await api.login()
        _, _, opened = await api.call("POST", "/sessions", {"mode": "dedicated", "backend": DEVICE})
        body = {
            "program_id": "sampler",
            "backend": DEVICE,
            "params": {"pubs": [[ISA_BELL]]},
            "session_id": opened["id"],
        }
        _, _, created = await api.call("POST", "/jobs", body)
        assert (await api.call("DELETE", f"/sessions/{opened['id']}/close"))[0] == 204
        assert await emu.status_of(created["id"]) == "Cancelled"
