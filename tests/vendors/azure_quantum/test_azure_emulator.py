"""The Azure Quantum emulator against the service's own description, with plain aiohttp.

Bodies are validated with ``jsonschema`` against the definitions of the Swagger 2.0 document
(``tests/data/azure/azure-quantum-data-plane.openapi.json``, a verbatim copy of the one in
``specs/``): openapi-core does not read Swagger 2.0, so each check builds a draft-4 schema
``{"$ref": "#/definitions/<Name>", "definitions": <all of them>}``. Swagger's own keywords
(``discriminator``, ``readOnly``, ``x-ms-*``) are not JSON Schema and are ignored. The official
x-ms-examples beside it are replayed against the emulator.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import anyio
import pytest
from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError

from oqc_style_sdk.exceptions import ConfigurationError
from oqc_style_sdk.testing.azure_quantum import (
    JOB_STATUSES,
    STORAGE_ACCOUNT,
    TERMINAL_STATUSES,
    AzureQuantumEmulator,
    ionq_to_qasm,
    parse_filter,
)
from oqc_style_sdk.testing.pytest_plugin import EmulatorFactory
from tests.common import DATA

DATA = DATA / "azure"
NEW = "2026-01-15-preview"
OLD = "2024-03-01-preview"

BELL_IONQ = {
    "gateset": "qis",
    "qubits": 2,
    "circuit": [{"gate": "h", "targets": [0]}, {"gate": "x", "controls": [0], "targets": [1]}],
}
BELL_QASM2 = (
    'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\n'
    "measure q[0] -> c[0];\nmeasure q[1] -> c[1];\n"
)


# -- the spec --------------------------------------------------------------------------------------


@cache
def spec() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DATA / "azure-quantum-data-plane.openapi.json").read_text())
    return document


@cache
def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DATA / name).read_text())
    return document


@cache
def validator(definition: str) -> Draft4Validator:
    schema = {"$ref": f"#/definitions/{definition}", "definitions": spec()["definitions"]}
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER)


def _properties(definition: str) -> set[str]:
    found = spec()["definitions"][definition]
    names = set(found.get("properties", {}))
    for part in found.get("allOf", []):
        names |= _properties(part["$ref"].rsplit("/", 1)[-1])
    return names


def _nulls_dropped(definition: str, instance: Any) -> Any:
    if definition == "PagedJobDetails" and isinstance(instance, dict):
        items = instance.get("value")
        if isinstance(items, list):
            return instance | {"value": [_nulls_dropped("JobDetails", item) for item in items]}
    if definition == "JobDetails" and isinstance(instance, dict):
        nulls = {key for key, value in instance.items() if value is None}
        assert nulls <= _properties("JobDetails"), sorted(nulls - _properties("JobDetails"))
        return {key: value for key, value in instance.items() if value is not None}
    return instance


def check(definition: str, instance: Any) -> None:
    """Raise (with every problem listed) unless ``instance`` is a valid ``definition``.

    The service answers a JobDetails field without a value with null (the official examples and
    the live service's recordings do) where the schema has no ``x-nullable``: such nulls are
    accepted for the definition's own fields, and only for them."""
    instance = _nulls_dropped(definition, instance)
    errors = sorted(validator(definition).iter_errors(instance), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def operation(method: str, suffix: str) -> dict[str, Any]:
    for path, item in spec()["paths"].items():
        if path.endswith(suffix):
            found: dict[str, Any] = item[method]
            return found
    raise KeyError(suffix)


#: sha256 of the verbatim copies (the spec's matches the one VENDORS.md §0 records, ``dacabca1…4c730``).
COPIES = {
    "azure-quantum-data-plane.openapi.json": (
        "dacabca1ba6fe137ec497bc4a008b8cd4e7cf8b2f43f7219ed45dc1e9374c730"
    ),
    "Jobs_Cancel.2026-01-15-preview.json": "a9aea10b3a7903dd43c4e3596c201cbe6ef887936a861adf98499b40a6e24941",
    "Jobs_Create.2026-01-15-preview.json": "6a9d8d17fb8953d04d5e4e7413dc959c30fd661e5cb8b81a0c70347312316b1b",
    "Jobs_Get.2025-12-01-preview.json": "c750395027f66f3c0668da2c06acc8c2bdfcda23d43088ba86a5c9848eb9c3c9",
    "Storage_GetSasUri.2026-01-15-preview.json": (
        "c8bd9bb3ef97c30e1c2c46ea29d9c4a46a5662dadd379b60eb13e9f136cc888c"
    ),
}


def test_the_copies_are_verbatim() -> None:
    assert {p.name for p in DATA.iterdir()} == set(COPIES)
    for name, digest in COPIES.items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == digest, name
    assert spec()["swagger"] == "2.0"
    assert spec()["info"]["version"] == NEW


def test_the_validator_is_not_vacuous() -> None:
    good = {
        "id": str(uuid.uuid4()),
        "name": "n",
        "providerId": "ionq",
        "target": "ionq.simulator",
        "itemType": "Job",
        "containerUri": "https://x/c?sig=1",
        "status": "Waiting",
    }
    check("JobDetails", good)
    for broken in (
        {k: v for k, v in good.items() if k != "containerUri"},
        {**good, "status": "Paused"},
        {**good, "id": "not-a-guid"},
        {**good, "creationTime": "yesterday"},
        {**good, "errorData": {"code": "X"}},
    ):
        with pytest.raises(ValidationError):
            validator("JobDetails").validate(broken)
    with pytest.raises(ValidationError):
        validator("Azure.Core.Foundations.ErrorResponse").validate({"error": {"message": "no code"}})


def test_every_documented_status_is_emulated() -> None:
    assert list(JOB_STATUSES) == spec()["definitions"]["JobStatus"]["enum"]
    assert {"Completed", "Succeeded", "Failed", "Cancelled"} == TERMINAL_STATUSES


# -- a plain client --------------------------------------------------------------------------------


class Api:
    """Plain aiohttp calls to the emulator; the answer as (status, headers, parsed body)."""

    def __init__(self, emu: AzureQuantumEmulator, session: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.session = session

    def ws(self, suffix: str = "") -> str:
        return self.emu.base_url + self.emu.workspace_path + suffix

    async def call(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        auth: str | None = "token",
        api_version: str | None = NEW,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        sent = dict(headers or {})
        if auth == "token":
            sent["Authorization"] = f"Bearer {self.emu.token}"
        elif auth == "key":
            sent["x-ms-quantum-api-key"] = self.emu.api_key
        elif auth is not None:
            sent["Authorization"] = f"Bearer {auth}"
        query = dict(params or {})
        if api_version is not None and not url.startswith(self.emu.storage_url):
            query["api-version"] = api_version
        if not url.startswith("http"):
            url = self.ws(url)
        async with self.session.request(
            method, url, json=body, data=data, headers=sent, params=query or None
        ) as response:
            raw = await response.read()
            parsed: Any = None
            if raw:
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    parsed = raw.decode()
            return response.status, dict(response.headers), parsed

    async def sas(self, container: str, blob: str | None = None, **kw: Any) -> str:
        body = {"containerName": container} | ({"blobName": blob} if blob else {})
        check("BlobDetails", body)
        status, _, answer = await self.call("POST", "/storage/sasUri", body, **kw)
        assert status == 200, answer
        check("SasUriResponse", answer)
        return str(answer["sasUri"])

    async def upload(self, container_sas: str, blob: str, data: bytes, content_type: str) -> str:
        parts = urlsplit(container_sas)
        url = f"{parts.scheme}://{parts.netloc}{parts.path}/{blob}?{parts.query}"
        status, _, answer = await self.call(
            "PUT", url, data=data, headers={"x-ms-blob-type": "BlockBlob", "Content-Type": content_type}
        )
        assert status == 201, answer
        return f"{parts.scheme}://{parts.netloc}{parts.path}/{blob}"

    def job_body(self, container_sas: str, input_uri: str, **over: Any) -> dict[str, Any]:
        body = {  # as azure-quantum 3.13 sends it: no id (read-only)
            "name": "bell",
            "itemType": "Job",
            "jobType": "QuantumComputing",
            "providerId": "ionq",
            "target": "ionq.simulator",
            "containerUri": container_sas,
            "inputDataUri": input_uri,
            "inputDataFormat": "ionq.circuit.v1",
            "outputDataFormat": "ionq.quantum-results.v1",
            "inputParams": {"shots": 100},
            "metadata": {"num_qubits": "2"},
        }
        return body | over

    async def create(
        self, *, program: Any = None, provider: str = "ionq", target: str = "ionq.simulator", shots: int = 100
    ) -> tuple[str, dict[str, Any]]:
        """A whole submission (SAS, upload, PUT); the job id and the create body."""
        job_id = str(uuid.uuid4())
        container = await self.sas(f"job-{job_id}")
        if provider == "ionq":
            data, fmt, out, ctype = (
                json.dumps(program or BELL_IONQ).encode(),
                "ionq.circuit.v1",
                "ionq.quantum-results.v1",
                "application/json",
            )
        else:
            data, fmt, out, ctype = (
                (program or BELL_QASM2).encode(),
                "honeywell.openqasm.v1",
                "honeywell.quantum-results.v1",
                "application/qasm",
            )
        input_uri = await self.upload(container, "inputData", data, ctype)
        body = self.job_body(
            container,
            input_uri,
            providerId=provider,
            target=target,
            inputDataFormat=fmt,
            outputDataFormat=out,
            inputParams={"shots": shots},
        )
        check("JobDetails", {"id": job_id, **body})  # id: required in answers, read-only (not sent)
        status, _, answer = await self.call("PUT", f"/jobs/{job_id}", body)
        assert status == 200, answer
        check("JobDetails", answer)
        return job_id, body

    async def get(self, job_id: str, api_version: str = NEW) -> dict[str, Any]:
        status, _, answer = await self.call("GET", f"/jobs/{job_id}", api_version=api_version)
        assert status == 200, answer
        check("JobDetails", answer)
        assert isinstance(answer, dict)
        return answer

    async def wait(self, job_id: str, *until: str, timeout_s: float = 15) -> dict[str, Any]:
        with anyio.fail_after(timeout_s):
            while True:
                details = await self.get(job_id)
                if details["status"] in until:
                    return details
                await anyio.sleep(0.02)

    async def download(self, url: str) -> Any:
        status, _, answer = await self.call("GET", url)
        assert status == 200, answer
        return answer


def assert_error(
    status: int, headers: dict[str, str], body: Any, expected_status: int, code: str | None = None
) -> None:
    assert status == expected_status, body
    check("Azure.Core.Foundations.ErrorResponse", body)
    assert headers.get("x-ms-error-code") == body["error"]["code"]
    if code is not None:
        assert body["error"]["code"] == code


def storage_code(status: int, body: Any) -> str:
    assert isinstance(body, str), body
    assert body.startswith("<?xml"), body
    match = re.search(r"<Code>(.*?)</Code>", body)
    assert match is not None
    return match.group(1)


@pytest.fixture
async def emu(emulator_factory: EmulatorFactory) -> AsyncIterator[AzureQuantumEmulator]:
    async with emulator_factory("azure_quantum", seed=11) as emulator:
        assert isinstance(emulator, AzureQuantumEmulator)
        yield emulator


@pytest.fixture
def api(emu: AzureQuantumEmulator, session: aiohttp.ClientSession) -> Api:
    return Api(emu, session)


# -- authentication, api-version, workspace ----------------------------------------------------------


@pytest.mark.parametrize("auth", [None, "wrong-token"])
@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", "/providerStatus"), ("GET", "/jobs"), ("POST", "/storage/sasUri")]
)
async def test_401_without_or_with_wrong_credentials(
    api: Api, auth: str | None, method: str, suffix: str
) -> None:
    status, headers, body = await api.call(method, suffix, {"containerName": "c"}, auth=auth)
    assert_error(status, headers, body, 401, "Unauthorized")
    assert "Bearer" in headers.get("WWW-Authenticate", "")


async def test_the_api_key_works_too_and_marks_jobs_created_by_key(api: Api) -> None:
    status, _, body = await api.call("GET", "/providerStatus", auth="key")
    assert status == 200
    check("PagedProviderStatus", body)
    status, _, _ = await api.call(
        "GET", "/providerStatus", auth=None, headers={"x-ms-quantum-api-key": "nope"}
    )
    assert status == 401


async def test_api_version_is_required_and_checked(api: Api) -> None:
    status, headers, body = await api.call("GET", "/jobs", api_version=None)
    assert_error(status, headers, body, 400, "MissingApiVersionParameter")
    status, headers, body = await api.call("GET", "/jobs", api_version="latest")
    assert_error(status, headers, body, 400, "InvalidApiVersionParameter")


async def test_another_workspace_is_not_found(api: Api) -> None:
    url = api.emu.base_url + api.emu.workspace_path.replace("my-workspace", "other-ws") + "/jobs"
    status, headers, body = await api.call("GET", url)
    assert_error(status, headers, body, 404, "WorkspaceNotFound")


async def test_unknown_routes_and_methods_answer_the_error_shape(api: Api) -> None:
    status, headers, body = await api.call("GET", "/quotasx")
    assert_error(status, headers, body, 404)
    status, headers, body = await api.call("PATCH", f"/jobs/{uuid.uuid4()}")
    assert_error(status, headers, body, 405)


# -- providers and storage -------------------------------------------------------------------------


async def test_provider_status_lists_ionq_and_quantinuum(api: Api) -> None:
    status, _, body = await api.call("GET", "/providerStatus")
    assert status == 200
    check("PagedProviderStatus", body)
    targets = {p["id"]: [t["id"] for t in p["targets"]] for p in body["value"]}
    assert "ionq.simulator" in targets["ionq"]
    assert {"quantinuum.sim.h2-1e", "quantinuum.sim.h2-1sc", "quantinuum.sim.h1-1e"} <= set(
        targets["quantinuum"]
    )


async def test_sas_urls_round_trip_a_blob_and_are_checked(api: Api) -> None:
    container = await api.sas("job-x")
    query = dict(parse_qsl(urlsplit(container).query))
    assert query["sr"] == "c"
    assert query["sp"] == "rcw"
    assert query["sig"]
    assert urlsplit(container).path == f"/{STORAGE_ACCOUNT}/job-x"
    blob_url = await api.upload(container, "inputData", b'{"a": 1}', "application/json")
    assert api.emu.blob("job-x", "inputData") == b'{"a": 1}'
    assert await api.download(blob_url + "?" + urlsplit(container).query) == {"a": 1}
    # a blob SAS for that one blob reads it too
    assert await api.download(await api.sas("job-x", "inputData")) == {"a": 1}
    # no SAS, a tampered signature, a SAS for another container, an unknown blob
    status, headers, body = await api.call("GET", blob_url)
    assert (status, storage_code(status, body)) == (403, "AuthenticationFailed")
    assert headers["x-ms-error-code"] == "AuthenticationFailed"
    tampered = blob_url + "?" + urlsplit(container).query.replace("sig=", "sig=A")
    status, _, body = await api.call("GET", tampered)
    assert (status, storage_code(status, body)) == (403, "AuthenticationFailed")
    other = await api.sas("job-y")
    status, _, body = await api.call("GET", blob_url + "?" + urlsplit(other).query)
    assert (status, storage_code(status, body)) == (403, "AuthenticationFailed")
    status, _, body = await api.call("GET", f"{api.emu.storage_url}/job-x/nope?{urlsplit(container).query}")
    assert (status, storage_code(status, body)) == (404, "BlobNotFound")


async def test_blob_reads_honour_a_range_as_azure_storage_blob_asks(api: Api) -> None:
    container = await api.sas("job-r")
    query = urlsplit(container).query
    url = await api.upload(container, "inputData", b"abcdefghij", "text/plain") + "?" + query
    status, headers, body = await api.call("GET", url, headers={"x-ms-range": "bytes=0-33554431"})
    assert (status, headers["Content-Range"], body) == (206, "bytes 0-9/10", "abcdefghij")
    assert headers["Accept-Ranges"] == "bytes"
    status, headers, body = await api.call("GET", url, headers={"Range": "bytes=2-4"})
    assert (status, headers["Content-Range"], body) == (206, "bytes 2-4/10", "cde")
    status, _, body = await api.call("GET", url, headers={"x-ms-range": "bytes=10-20"})
    assert (status, storage_code(status, body)) == (416, "InvalidRange")
    status, _, body = await api.call("GET", url, headers={"x-ms-range": "lines=1-2"})
    assert (status, storage_code(status, body)) == (400, "InvalidHeaderValue")
    status, headers, _ = await api.call("GET", url)
    assert (status, headers["Content-Type"], "Content-Range" in headers) == (200, "text/plain", False)


async def test_a_blob_upload_with_if_none_match_does_not_overwrite(api: Api) -> None:
    container = await api.sas("job-n")
    parts = urlsplit(container)
    url = f"{api.emu.storage_url}/job-n/inputData?{parts.query}"
    sent = {"x-ms-blob-type": "BlockBlob", "If-None-Match": "*", "x-ms-blob-content-type": "application/qasm"}
    status, _, _ = await api.call("PUT", url, data=b"first", headers=sent)
    assert status == 201
    status, _, body = await api.call("PUT", url, data=b"second", headers=sent)
    assert (status, storage_code(status, body)) == (409, "BlobAlreadyExists")
    status, headers, body = await api.call("GET", url)
    assert (status, headers["Content-Type"], body) == (200, "application/qasm", "first")


async def test_a_create_body_may_carry_the_paths_id_or_none(api: Api) -> None:
    for with_id in (False, True):
        job_id = str(uuid.uuid4())
        container = await api.sas(f"job-{job_id}")
        input_uri = await api.upload(
            container, "inputData", json.dumps(BELL_IONQ).encode(), "application/json"
        )
        body = api.job_body(container, input_uri) | ({"id": job_id.upper()} if with_id else {})
        status, _, answer = await api.call("PUT", f"/jobs/{job_id}", body)
        assert (status, answer["id"]) == (200, job_id)
        assert answer["isCancelling"] is False
        assert answer["priority"] == "Standard"
        assert answer["tags"] == []
        assert answer["lastModifiedTime"] == answer["creationTime"]


async def test_blob_upload_needs_the_blob_type_and_the_container(api: Api) -> None:
    container = await api.sas("job-z")
    parts = urlsplit(container)
    status, _, body = await api.call("PUT", f"{api.emu.storage_url}/job-z/inputData?{parts.query}", data=b"x")
    assert (status, storage_code(status, body)) == (400, "MissingRequiredHeader")
    # before 2026-01-15-preview the SAS call does not create the container: the client does
    old = await api.sas("job-old", api_version=OLD)
    old_query = urlsplit(old).query
    status, _, body = await api.call(
        "PUT",
        f"{api.emu.storage_url}/job-old/inputData?{old_query}",
        data=b"x",
        headers={"x-ms-blob-type": "BlockBlob"},
    )
    assert (status, storage_code(status, body)) == (404, "ContainerNotFound")
    status, _, _ = await api.call("PUT", f"{api.emu.storage_url}/job-old?{old_query}&restype=container")
    assert status == 201
    status, _, body = await api.call("PUT", f"{api.emu.storage_url}/job-old?{old_query}&restype=container")
    assert (status, storage_code(status, body)) == (409, "ContainerAlreadyExists")


async def test_an_expired_sas_is_refused(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    async with emulator_factory("azure_quantum", sas_ttl_s=0.001) as emulator:
        assert isinstance(emulator, AzureQuantumEmulator)
        api = Api(emulator, session)
        container = await api.sas("job-e")
        status, _, body = await api.call(
            "PUT",
            f"{emulator.storage_url}/job-e/inputData?{urlsplit(container).query}",
            data=b"x",
            headers={"x-ms-blob-type": "BlockBlob"},
        )
        assert (status, storage_code(status, body)) == (403, "AuthenticationFailed")
        assert "expiry" in body


# -- jobs ------------------------------------------------------------------------------------------


async def test_an_ionq_job_runs_and_writes_a_histogram(api: Api) -> None:
    job_id, _ = await api.create(shots=200)
    assert [r.status for r in api.emu.reported] == ["Waiting"]
    details = await api.wait(job_id, "Succeeded")
    assert details["beginExecutionTime"] <= details["endExecutionTime"]
    assert details["errorData"] is None
    assert details["cancellationTime"] is None
    output = await api.download(details["outputDataUri"])
    histogram = output["histogram"]
    assert set(histogram) <= {"0", "3"}
    assert abs(sum(histogram.values()) - 1) < 1e-9
    assert all(round(p * 200) == p * 200 for p in histogram.values())  # sampled frequencies
    assert details["outputDataUri"].startswith(f"{api.emu.storage_url}/job-{job_id}/rawOutputData?")


async def test_a_quantinuum_job_writes_one_bitstring_per_shot(api: Api) -> None:
    job_id, _ = await api.create(provider="quantinuum", target="quantinuum.sim.h2-1e", shots=50)
    details = await api.wait(job_id, "Succeeded")
    output = await api.download(details["outputDataUri"])
    assert set(output) == {"c"}
    assert len(output["c"]) == 50
    assert set(output["c"]) <= {"00", "11"}
    job_id, _ = await api.create(provider="quantinuum", target="quantinuum.sim.h2-1sc", shots=5)
    details = await api.wait(job_id, "Succeeded")
    assert await api.download(details["outputDataUri"]) == {"c": ["00"] * 5}  # a syntax checker: zeros


async def test_a_create_sent_again_returns_the_same_job(api: Api) -> None:
    job_id, body = await api.create()
    runs = api.emu.engine_runs
    status, _, again = await api.call("PUT", f"/jobs/{job_id}", body)
    assert status == 200
    check("JobDetails", again)
    assert again["id"] == job_id
    assert again["creationTime"] == (await api.get(job_id))["creationTime"]
    # a fresh SAS on the same container is the same job too
    fresh = body | {"containerUri": await api.sas(f"job-{job_id}")}
    status, _, _ = await api.call("PUT", f"/jobs/{job_id}", fresh)
    assert status == 200
    assert api.emu.engine_runs == runs
    assert api.emu.job_ids == [job_id]
    status, headers, answer = await api.call("PUT", f"/jobs/{job_id}", body | {"target": "ionq.qpu.aria-1"})
    assert_error(status, headers, answer, 409, "JobAlreadyExists")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"containerUri": None}, "InvalidJobDefinition"),
        ({"name": None}, "InvalidJobDefinition"),
        ({"itemType": "Session"}, "InvalidJobDefinition"),
        ({"id": "00000000-0000-0000-0000-000000000009"}, "InvalidJobId"),
        ({"providerId": "rigetti"}, "InvalidProvider"),
        ({"target": "ionq.qpu.nope"}, "InvalidTarget"),
        ({"inputDataFormat": "qir.v1"}, "InvalidInputDataFormat"),
        ({"outputDataFormat": "microsoft.quantum-results.v1"}, "InvalidOutputDataFormat"),
        ({"inputParams": [1]}, "InvalidJobDefinition"),
    ],
)
async def test_a_bad_create_is_refused(api: Api, change: dict[str, Any], code: str) -> None:
    job_id = str(uuid.uuid4())
    body = {
        k: v
        for k, v in (api.job_body("https://x/c?sig=1", "https://x/c/i") | change).items()
        if v is not None
    }
    status, headers, answer = await api.call("PUT", f"/jobs/{job_id}", body)
    assert_error(status, headers, answer, 400, code)
    assert api.emu.job_ids == []


async def test_a_job_id_must_be_a_guid(api: Api) -> None:
    status, headers, body = await api.call("GET", "/jobs/not-a-guid")
    assert_error(status, headers, body, 400, "InvalidJobId")
    status, headers, body = await api.call("GET", f"/jobs/{uuid.uuid4()}")
    assert_error(status, headers, body, 404, "JobNotFound")


async def test_input_the_provider_cannot_run_fails_the_job_later(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    now = [0.0]
    async with emulator_factory("azure_quantum", job_duration_s=5, clock=lambda: now[0]) as emulator:
        assert isinstance(emulator, AzureQuantumEmulator)
        api = Api(emulator, session)
        bad = {"gateset": "qis", "qubits": 1, "circuit": [{"gate": "teleport", "targets": [0]}]}
        job_id, _ = await api.create(program=bad)
        assert (await api.get(job_id))["status"] == "Waiting"
        now[0] = 5.0
        details = await api.get(job_id)
        assert details["status"] == "Failed"
        assert details["errorData"]["code"] == "InvalidInputData"
        assert "teleport" in details["errorData"]["message"]
        # no input blob at all
        other = str(uuid.uuid4())
        body = api.job_body(await api.sas(f"job-{other}"), f"{emulator.storage_url}/job-{other}/inputData")
        status, _, _ = await api.call("PUT", f"/jobs/{other}", body)
        assert status == 200
        now[0] = 20.0
        assert (await api.get(other))["errorData"]["message"] == "The input blob was not found."
        assert emulator.engine_runs == 0


async def test_the_simulator_reports_a_program_that_does_not_parse(api: Api) -> None:
    job_id, _ = await api.create(
        provider="quantinuum", target="quantinuum.sim.h1-1e", program="OPENQASM 2.0; qreg q[1]; nope q[0];"
    )
    details = await api.wait(job_id, "Failed")
    check("JobDetails", details)
    assert details["errorData"]["code"] == "InvalidInputData"


async def test_every_documented_status_can_be_forced(api: Api) -> None:
    job_id, _ = await api.create()
    for status in JOB_STATUSES:
        await api.emu.set_status(job_id, status, error_code="E42", error_message="boom")
        details = await api.get(job_id)
        assert details["status"] == status
        assert (details["errorData"] is not None) == (status == "Failed")
    await api.emu.set_status(job_id, "Failed", error_code="E42", error_message="boom")
    assert (await api.get(job_id))["errorData"] == {"code": "E42", "message": "boom"}
    await api.emu.set_status(job_id, "Paused", undocumented=True)
    status, _, body = await api.call("GET", f"/jobs/{job_id}")
    assert body["status"] == "Paused"  # not a documented value: the emulator sends it anyway
    with pytest.raises(ConfigurationError):
        await api.emu.set_status(job_id, "Paused")
    with pytest.raises(KeyError):
        await api.emu.set_status(str(uuid.uuid4()), "Waiting")


# -- cancel ----------------------------------------------------------------------------------------


async def test_cancel_answers_job_details_and_ends_the_run(api: Api) -> None:
    job_id, _ = await api.create()
    await api.emu.set_status(job_id, "Executing")
    status, _, body = await api.call("POST", f"/jobs/{job_id}:cancel")
    assert status == 200
    check("JobDetails", body)
    assert body["status"] == "Cancelled"
    assert body["cancellationTime"]
    assert body["endExecutionTime"]
    status, _, again = await api.call("POST", f"/jobs/{job_id}:cancel")  # again: no change
    assert status == 200
    assert again["status"] == "Cancelled"
    assert (await api.get(job_id))["status"] == "Cancelled"


async def test_cancel_of_an_ended_job_is_a_conflict(api: Api) -> None:
    job_id, _ = await api.create()
    await api.wait(job_id, "Succeeded")
    status, headers, body = await api.call("POST", f"/jobs/{job_id}:cancel")
    assert_error(status, headers, body, 409, "InvalidJobState")
    status, headers, body = await api.call("DELETE", f"/jobs/{job_id}", api_version=OLD)
    assert_error(status, headers, body, 409, "InvalidJobState")


async def test_cancel_walks_the_progression_one_read_at_a_time(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    async with emulator_factory(
        "azure_quantum", job_duration_s=30, cancel_progression=("CancellationRequested", "Cancelling")
    ) as emulator:
        assert isinstance(emulator, AzureQuantumEmulator)
        api = Api(emulator, session)
        job_id, _ = await api.create()
        status, _, body = await api.call("POST", f"/jobs/{job_id}:cancel")
        assert (status, body["status"]) == (200, "CancellationRequested")
        assert await emulator.status_of(job_id) == "CancellationRequested"  # status_of does not advance
        seen = [await api.get(job_id) for _ in range(4)]
        assert [d["status"] for d in seen] == [
            "CancellationRequested",
            "Cancelling",
            "Cancelled",
            "Cancelled",
        ]
        assert [d["isCancelling"] for d in seen] == [True, True, False, False]
        assert seen[0]["lastModifiedTime"] > seen[0]["creationTime"]  # the cancel request modified it
        _, _, listed = await api.call("GET", "/jobs")
        assert listed["value"][0]["status"] == "Cancelled"


async def test_cancel_may_answer_204(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    async with emulator_factory("azure_quantum", job_duration_s=30, cancel_response="no_content") as emulator:
        assert isinstance(emulator, AzureQuantumEmulator)
        api = Api(emulator, session)
        job_id, _ = await api.create()
        status, _, body = await api.call("POST", f"/jobs/{job_id}:cancel")
        assert (status, body) == (204, None)
        assert (await api.get(job_id))["status"] == "Cancelled"


async def test_cancel_per_api_version(api: Api) -> None:
    # before 2025-12-01-preview: no :cancel, DELETE cancels and the job stays readable
    job_id, _ = await api.create()
    await api.emu.set_status(job_id, "Executing")
    status, headers, body = await api.call("POST", f"/jobs/{job_id}:cancel", api_version=OLD)
    assert_error(status, headers, body, 400, "UnsupportedApiVersion")
    status, _, body = await api.call("DELETE", f"/jobs/{job_id}", api_version=OLD)
    assert (status, body) == (204, None)
    assert (await api.get(job_id, api_version=OLD))["status"] == "Cancelled"
    # from it on: DELETE deletes
    other, _ = await api.create()
    status, _, _ = await api.call("DELETE", f"/jobs/{other}", api_version="2025-12-01-preview")
    assert status == 204
    status, headers, body = await api.call("GET", f"/jobs/{other}")
    assert_error(status, headers, body, 404, "JobNotFound")
    _, _, listed = await api.call("GET", "/jobs")
    assert [j["id"] for j in listed["value"]] == [job_id]


# -- the jobs list ---------------------------------------------------------------------------------


async def test_the_jobs_list_filters_orders_and_pages(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    async with emulator_factory("azure_quantum", page_size=2, job_duration_s=30) as emulator:
        assert isinstance(emulator, AzureQuantumEmulator)
        api = Api(emulator, session)
        ids = [(await api.create())[0] for _ in range(3)]
        qid, _ = await api.create(provider="quantinuum", target="quantinuum.sim.h2-1e")
        await emulator.set_status(ids[1], "Failed")
        status, _, page = await api.call("GET", "/jobs")
        assert status == 200
        check("PagedJobDetails", page)
        assert [j["id"] for j in page["value"]] == ids[:2]
        assert page["nextLink"].startswith(emulator.base_url)
        _, _, second = await api.call("GET", page["nextLink"], api_version=None)
        check("PagedJobDetails", second)
        assert [j["id"] for j in second["value"]] == [ids[2], qid]
        assert "nextLink" not in second

        async def listed(**params: str) -> list[str]:
            status, _, body = await api.call("GET", "/jobs", params=params)
            assert status == 200, body
            check("PagedJobDetails", body)
            out = [j["id"] for j in body["value"]]
            while "nextLink" in body:
                _, _, body = await api.call("GET", body["nextLink"], api_version=None)
                out += [j["id"] for j in body["value"]]
            return out

        assert await listed(filter=f"Id eq '{ids[0]}' or Id eq '{qid.upper()}'") == [ids[0], qid]
        assert await listed(filter="ProviderId eq 'quantinuum'") == [qid]
        assert await listed(filter="State eq 'Failed'") == [ids[1]]
        assert await listed(filter="not (State eq 'Failed') and startswith(Target, 'ionq.')") == [
            ids[0],
            ids[2],
        ]
        assert await listed(
            filter=f"CreationTime ge {(datetime.now(UTC) - timedelta(minutes=5)).isoformat()}"
        ) == [*ids, qid]
        assert await listed(filter="CreationTime lt 2020-01-01T00:00:00Z") == []
        assert await listed(orderby="CreationTime desc") == [qid, *reversed(ids)]
        assert await listed(top="3", skip="1") == [ids[1], ids[2], qid]
        for bad in (
            {"filter": "Id eq"},
            {"filter": "Colour eq 'red'"},
            {"filter": "Id eq 'a' xor"},
            {"orderby": "Id sideways"},
            {"top": "0"},
        ):
            status, headers, body = await api.call("GET", "/jobs", params=bad)
            assert_error(status, headers, body, 400, "InvalidFilter")


def test_parse_filter_grammar() -> None:
    record = {
        "id": "ABC",
        "name": "Bell's",
        "status": "Waiting",
        "creationtime": datetime(2025, 1, 2, tzinfo=UTC),
    }
    assert parse_filter("Id eq 'abc'")(record)
    assert parse_filter("Name eq 'Bell''s'")(record)
    assert parse_filter("contains(Name, 'ell') and endswith(Id, 'c')")(record)
    assert not parse_filter("Status ne 'Waiting' or CreationTime gt 2025-01-03")(record)
    assert parse_filter("(Status eq 'x' or Status eq 'waiting') and CreationTime le 2025-01-02T00:00:00Z")(
        record
    )
    assert parse_filter("SessionId ne 'x'")(record)  # absent field: only ne holds
    for bad in ("", "Id", "Id eq 'a' and", "Id lk 'a'", "(Id eq 'a'", "startswith(Id 'a')", "Id eq 'a' @"):
        with pytest.raises(ValueError, match=r"expected|unknown|unexpected|ends too early|needs"):
            parse_filter(bad)(record)
    with pytest.raises(ValueError, match="not a date-time"):
        parse_filter("CreationTime eq 'not a time'")(record)


# -- IonQ input ------------------------------------------------------------------------------------


def test_ionq_to_qasm_covers_the_qis_gates() -> None:
    """Every qis gate, translated, is the same operator as qiskit's own gate (up to global phase)."""
    from qiskit import QuantumCircuit
    from qiskit.qasm2 import loads
    from qiskit.quantum_info import Operator

    payload = {
        "qubits": 3,
        "circuit": [
            {"gate": "h", "targets": [0, 1]},
            {"gate": "cnot", "control": 0, "target": 1},
            {"gate": "rz", "targets": [2], "rotation": 0.5},
            {"gate": "v", "targets": [0]},
            {"gate": "vi", "targets": [1]},
            {"gate": "si", "targets": [1]},
            {"gate": "ti", "targets": [2]},
            {"gate": "x", "controls": [0, 1], "targets": [2]},
            {"gate": "swap", "targets": [0, 2]},
            {"gate": "ry", "controls": [1], "targets": [2], "rotation": -1},
            {"gate": "rx", "controls": [2], "targets": [0], "rotation": 0.25},
            {"gate": "swap", "controls": [1], "targets": [0, 2]},
            {"gate": "z", "controls": [0], "targets": [2]},
        ],
    }
    program, n = ionq_to_qasm(payload)
    assert n == 3
    assert program.splitlines()[-1] == "measure q -> c;"
    expected = QuantumCircuit(3)
    expected.h([0, 1])
    expected.cx(0, 1)
    expected.rz(0.5, 2)
    expected.sx(0)
    expected.sxdg(1)
    expected.sdg(1)
    expected.tdg(2)
    expected.ccx(0, 1, 2)
    expected.swap(0, 2)
    expected.cry(-1.0, 1, 2)
    expected.crx(0.25, 2, 0)
    expected.cswap(1, 0, 2)
    expected.cz(0, 2)
    loaded = loads(program)  # qiskit's strict reader: the paper's qelib1 only
    loaded.remove_final_measurements()
    assert Operator(loaded).equiv(Operator(expected))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "not a JSON object"),
        ({"gateset": "native", "qubits": 1, "circuit": []}, "gateset"),
        ({"qubits": 0, "circuit": []}, "positive"),
        ({"qubits": 30, "circuit": []}, "target has 29"),
        ({"qubits": 1}, "'circuit'"),
        ({"qubits": 1, "circuit": [{"gate": "rx", "targets": [0]}]}, "rotation"),
        ({"qubits": 1, "circuit": [{"gate": "h", "targets": [1]}]}, "qubit indices"),
        ({"qubits": 2, "circuit": [{"gate": "cnot", "targets": [1]}]}, "needs a control"),
        ({"qubits": 2, "circuit": [{"gate": "x", "controls": [1], "targets": [1]}]}, "distinct"),
        ({"qubits": 3, "circuit": [{"gate": "s", "controls": [0], "targets": [1]}]}, "not emulated"),
    ],
)
def test_ionq_to_qasm_refuses_what_it_cannot_run(payload: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ionq_to_qasm(payload, max_qubits=29)


# -- the official examples -------------------------------------------------------------------------

#: Fields of the examples the emulator does not produce: provider usage metering.
UNMODELLED = frozenset({"usage", "costEstimate"})
#: Fields whose values differ by nature (times of this run, who ran it).
VARYING = frozenset(
    {
        "creationTime",
        "beginExecutionTime",
        "endExecutionTime",
        "cancellationTime",
        "lastUpdatedTime",
        "createdBy",
        "createdByType",
        "lastModifiedTime",
        "lastModifiedBy",
        "lastModifiedByType",
    }
)


def assert_like_example(answer: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every field of the example is in the answer, null where the example's is, with the
    example's value unless it varies by nature."""
    check("JobDetails", answer)
    for key, value in expected.items():
        assert key in answer, key
        if value is None:
            assert answer[key] is None, key
        elif key in UNMODELLED:
            continue
        elif key in VARYING:
            assert type(answer[key]) is type(value), key
        else:
            assert answer[key] == value, key


async def replay_create(api: Api) -> dict[str, Any]:
    ex = example("Jobs_Create.2026-01-15-preview.json")
    params = ex["parameters"]
    assert params["subscriptionId"] == api.emu.subscription_id
    assert params["workspaceName"] == api.emu.workspace
    check("JobDetails", params["resource"])
    status, _, answer = await api.call(
        "PUT", f"/jobs/{params['jobId']}", params["resource"], api_version=params["api-version"]
    )
    assert status == 200  # the live service's answer to a create (its recordings); 201 is allowed
    assert_like_example(answer, ex["responses"][str(status)]["body"])
    return ex


async def test_example_jobs_create(api: Api) -> None:
    await replay_create(api)
    answer = await api.get("00000000-0000-0000-0000-000000000002")
    assert answer["createdBy"] == "user1@example.com"
    assert answer["createdByType"] == "User"


async def test_example_jobs_get(api: Api) -> None:
    await replay_create(api)
    ex = example("Jobs_Get.2025-12-01-preview.json")
    await api.emu.set_status(ex["parameters"]["jobId"], ex["responses"]["200"]["body"]["status"])
    answer = await api.get(ex["parameters"]["jobId"], api_version=ex["parameters"]["api-version"])
    assert_like_example(answer, ex["responses"]["200"]["body"])


async def test_example_jobs_cancel(api: Api) -> None:
    await replay_create(api)
    ex = example("Jobs_Cancel.2026-01-15-preview.json")
    await api.emu.set_status(ex["parameters"]["jobId"], "Executing")
    status, _, answer = await api.call(
        "POST", f"/jobs/{ex['parameters']['jobId']}:cancel", api_version=ex["parameters"]["api-version"]
    )
    assert status == 200
    assert_like_example(answer, ex["responses"]["200"]["body"])
    assert operation("post", "/jobs/{jobId}:cancel")["operationId"] == ex["operationId"]


async def test_example_storage_get_sas_uri(api: Api) -> None:
    ex = example("Storage_GetSasUri.2026-01-15-preview.json")
    params = ex["parameters"]
    check("BlobDetails", params["blobDetails"])
    status, _, answer = await api.call(
        "POST", "/storage/sasUri", params["blobDetails"], api_version=params["api-version"]
    )
    assert status == 200
    check("SasUriResponse", answer)
    expected = urlsplit(ex["responses"]["200"]["body"]["sasUri"])
    mine = urlsplit(answer["sasUri"])
    assert mine.path.endswith(expected.path)  # /some_container/input_blob, after the account
    assert set(dict(parse_qsl(mine.query))) == set(dict(parse_qsl(expected.query)))
    assert dict(parse_qsl(mine.query))["sr"] == "b"


# -- the log, env, errors --------------------------------------------------------------------------


async def test_secrets_never_enter_the_request_log(api: Api) -> None:
    job_id, _ = await api.create()
    await api.call("GET", "/providerStatus", auth="key")
    details = await api.wait(job_id, "Succeeded")
    await api.download(details["outputDataUri"])
    logged = json.dumps([[r.path, r.query, r.body, r.headers] for r in api.emu.requests])
    signatures = {dict(parse_qsl(urlsplit(details["containerUri"]).query))["sig"]}
    for secret in (api.emu.token, api.emu.api_key, *signatures):
        assert secret not in logged
    assert "<redacted>" in logged


async def test_env_and_credentials_name_what_the_backend_reads(emu: AzureQuantumEmulator) -> None:
    assert emu.env == {
        "AZURE_QUANTUM_ENDPOINT": emu.base_url,
        "AZURE_QUANTUM_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
        "AZURE_QUANTUM_RESOURCE_GROUP": "my-resource-group",
        "AZURE_QUANTUM_WORKSPACE": "my-workspace",
        "AZURE_QUANTUM_ACCESS_TOKEN": emu.token,
        "AZURE_QUANTUM_API_KEY": emu.api_key,
    }
    assert emu.connection_string == (
        "SubscriptionId=00000000-0000-0000-0000-000000000001;ResourceGroupName=my-resource-group;"
        f"WorkspaceName=my-workspace;ApiKey={emu.api_key};QuantumEndpoint={emu.base_url}/;"
    )
    assert emu.credentials["endpoint"] == emu.base_url
    assert emu.credentials["access_token"] == emu.token


def test_bad_options_are_refused() -> None:
    for options in (
        {"cancel_progression": ("Cancelled",)},
        {"cancel_response": "sometimes"},
        {"page_size": 0},
        {"providers": ()},
        {"token": ""},
        {"sas_ttl_s": 0},
    ):
        with pytest.raises(ConfigurationError):
            AzureQuantumEmulator(**options)


async def test_fault_knobs_answer_the_azure_error_shape(api: Api) -> None:
    api.emu.fail_next(1, status=503, path="/providerStatus", retry_after=1)
    status, headers, body = await api.call("GET", "/providerStatus")
    assert_error(status, headers, body, 503, "ServiceUnavailable")
    assert headers["Retry-After"] == "1"
