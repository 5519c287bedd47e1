"""Where credentials may go is decided by the Sdk, never by a job file or a server.

A job file from someone else may point a run's URLs at any host; a vendor's answer may name another
host (a next-page link, a blob URL) or redirect there. Each test below stands a *recorder* — a bare
aiohttp server on 127.0.0.1, port 0, that answers ``{}`` and keeps every request it gets — where an
attacker's host would be, and shows that no credential (header, bearer token, API key in a body)
ever reaches it: ``load()`` refuses a file naming another origin before any request, the HTTP
client refuses to send a credentialed request to an origin it was not given, and a redirect to
another origin is followed bare (no credentials) or, when it would resend a body, not at all.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from oqc_style_sdk import Sdk
from oqc_style_sdk._http import HttpClient, Secret
from oqc_style_sdk.backends.base import RunRef, RunSpec
from oqc_style_sdk.exceptions import ForeignJobFileError, ProtocolError, SdkError
from oqc_style_sdk.testing.emulator import start_emulator
from tests.common import FAST
from tests.matrix.test_fault_matrix import ADAPTERS, QUICK_RETRY

#: Headers that carry a credential for one vendor or another.
CREDENTIAL_HEADERS = ("authorization", "authentication-token", "x-ms-quantum-api-key", "api-key")


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """A host the Sdk was not configured with. ``requests`` is everything it received."""

    url: str
    requests: list[Seen] = field(default_factory=list)

    def received(self, secret: str) -> bool:
        """Whether ``secret`` reached this host in any header or body."""
        return any(
            secret in value
            for seen in self.requests
            for value in (*seen.headers.values(), seen.body.decode())
        )

    def credential_headers(self) -> list[str]:
        return [name for seen in self.requests for name in seen.headers if name.lower() in CREDENTIAL_HEADERS]


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """``app`` on 127.0.0.1, port 0, for the duration of the block; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def recorder() -> AsyncIterator[Recorder]:
    app = web.Application()
    found = Recorder(url="")

    async def record(request: web.Request) -> web.Response:
        found.requests.append(Seen(request.method, request.path, dict(request.headers), await request.read()))
        return web.json_response({})

    app.router.add_route("*", "/{tail:.*}", record)
    async with serve(app) as url:
        found.url = url
        yield found


async def _saved_active_job(sdk: Sdk, backend: str, path: Path) -> dict[str, object]:
    job = sdk.create_job(program=ADAPTERS[backend].program)
    await job.submit()
    await job.save(path)
    document: dict[str, object] = json.loads(await anyio.Path(path).read_text())
    return document


# ------------------------------------------------------------------------------------------ files


async def test_a_forged_oqc_qpu_url_is_refused_at_load_and_never_gets_the_token(tmp_path: Path) -> None:
    """The hole of issue 16: ``ref.extra.qpu_url`` edited to another host, for a QPU the live list
    does not name (so the saved URL would be used), sent the token there on refresh()."""
    with anyio.fail_after(30):
        async with recorder() as evil, start_emulator("oqc", job_duration_s=30, max_lifetime_s=60) as emu:
            async with Sdk(
                "oqc", default_target=ADAPTERS["oqc"].target, polling=FAST, **emu.credentials
            ) as sdk:
                path = tmp_path / "job.json"
                document = await _saved_active_job(sdk, "oqc", path)
                ref = document["jobs"][0]["ref"]
                ref["extra"]["qpu_id"] = "qpu:forged"
                ref["extra"]["qpu_url"] = f"{evil.url}/forged"
                path.write_text(json.dumps(document))
                with pytest.raises(ForeignJobFileError, match="outside the origins"):
                    await sdk.load(path)
            assert evil.requests == []
            assert not evil.received(emu.token)


@pytest.mark.parametrize("backend", list(ADAPTERS))
async def test_every_vendor_refuses_a_file_whose_run_names_another_origin(
    backend: str, tmp_path: Path
) -> None:
    """Whatever a vendor keeps in a run's reference, a URL there must name an origin this Sdk sends
    its credentials to: every value of the saved ref pointed at the recorder is refused at load."""
    adapter = ADAPTERS[backend]
    with anyio.fail_after(30):
        async with (
            recorder() as evil,
            start_emulator(adapter.emulator, max_lifetime_s=60, **adapter.long_options) as emu,
        ):
            async with Sdk(
                adapter.emulator, default_target=adapter.target, polling=FAST, **emu.credentials
            ) as sdk:
                path = tmp_path / "job.json"
                document = await _saved_active_job(sdk, backend, path)
                ref = document["jobs"][0]["ref"]
                ref["extra"] = {key: f"{evil.url}/{key}" for key in ref["extra"]} or {"url": evil.url}
                path.write_text(json.dumps(document))
                with pytest.raises(ForeignJobFileError):
                    await sdk.load(path)
            secrets = [s for s in emu.secrets() if s]
    assert evil.requests == []
    assert secrets
    assert not any(evil.received(s) for s in secrets)


async def test_a_file_naming_the_configured_origin_still_loads_and_runs(tmp_path: Path) -> None:
    """The refusal is about origins, not about URLs: a saved OQC ref naming its own QPU loads."""
    with anyio.fail_after(30):
        async with (
            start_emulator("oqc", job_duration_s=0.05, max_lifetime_s=60) as emu,
            Sdk("oqc", default_target=ADAPTERS["oqc"].target, polling=FAST, **emu.credentials) as sdk,
        ):
            path = tmp_path / "job.json"
            await _saved_active_job(sdk, "oqc", path)
            loaded = await sdk.load(path)
            await loaded.execute(timeout_s=10)
            assert loaded.result is not None


# ----------------------------------------------------------------------- requests and answers


async def test_a_run_ref_naming_another_origin_is_refused_before_anything_is_sent() -> None:
    """The rule is the HTTP client's, per request: even a ref that never went through load()
    (a bug, a plugin) cannot send the token to an origin the Sdk was not given."""
    with anyio.fail_after(30):
        async with recorder() as evil, start_emulator("oqc", max_lifetime_s=60) as emu:
            async with Sdk("oqc", polling=FAST, **emu.credentials) as sdk:
                ref = RunRef("t-1", {"qpu_id": "qpu:forged", "qpu_url": f"{evil.url}/q"})
                for verb in (sdk.backend.status(ref), sdk.backend.cancel(ref)):
                    with pytest.raises(ProtocolError, match="credentials go only to"):
                        await verb
            assert evil.requests == []


async def test_an_azure_output_blob_on_another_host_gets_its_sas_and_never_the_bearer_token() -> None:
    """A SAS blob URL from the vendor's answer is followed (the SAS is its credential) by the blob
    client, which carries no workspace credentials, wherever the blob lives."""
    adapter = ADAPTERS["azure_quantum"]
    with anyio.fail_after(30):
        async with (
            recorder() as evil,
            start_emulator("azure_quantum", job_duration_s=0.05, max_lifetime_s=60) as emu,
        ):
            async with Sdk(
                "azure_quantum", default_target=adapter.target, polling=FAST, **emu.credentials
            ) as sdk:
                backend = sdk.backend
                spec = backend.validate(RunSpec(adapter.program, adapter.target))
                ref = await backend.submit(spec, await backend.new_idempotency_key(spec))
                path = f"{emu.workspace_path}/jobs/{ref.task_id}"
                params = {"api-version": backend.api_version}
                details = (await backend.http.get(path, params=params)).json()
                while details["status"] != "Succeeded":  # read around the backend: nothing cached
                    await anyio.sleep(0.02)
                    details = (await backend.http.get(path, params=params)).json()
                details["outputDataUri"] = (
                    f"{evil.url}/acct/job/rawOutputData?sv=1&se=2099-01-01T00:00:00Z&sig=s1g"
                )
                emu.fail_next(1, status=200, method="GET", path=path, body=details)
                with pytest.raises(SdkError):  # the recorder's {} is not IonQ's output
                    await backend.result(ref, spec)
            secrets = [s for s in emu.secrets() if s]
    assert [seen.path for seen in evil.requests] == ["/acct/job/rawOutputData"]
    assert evil.credential_headers() == []
    assert secrets
    assert not any(evil.received(s) for s in secrets)


# ----------------------------------------------------------------------------------- redirects


@asynccontextmanager
async def redirector(to: str, status: int) -> AsyncIterator[str]:
    """A 'vendor' that answers every request with ``status`` and ``Location: {to}{path}``."""
    app = web.Application()

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": f"{to}{request.path}"})

    app.router.add_route("*", "/{tail:.*}", redirect)
    async with serve(app) as url:
        yield url


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_to_another_origin_is_followed_without_the_token(status: int) -> None:
    token = "tok-redirected-0123456789"
    with anyio.fail_after(30):
        async with (
            recorder() as evil,
            redirector(evil.url, status) as vendor,
            HttpClient(
                vendor, vendor="OQC QCaaS", headers={"Authentication-Token": Secret(token)}, retry=QUICK_RETRY
            ) as http,
        ):
            await http.get("/admin/qpu")
    assert [seen.path for seen in evil.requests] == ["/admin/qpu"]
    assert evil.credential_headers() == []
    assert not evil.received(token)


@pytest.mark.parametrize("status", [307, 308])
async def test_a_redirect_that_would_resend_an_api_key_in_its_body_is_refused(status: int) -> None:
    """IBM Cloud IAM takes the API key in the form body: a 307/308 to another origin would resend
    it there. The Sdk does not follow it, and opening the Sdk fails typed."""
    with anyio.fail_after(30):
        async with (
            recorder() as evil,
            redirector(evil.url, status) as iam,
            start_emulator("ibm_quantum", max_lifetime_s=60) as emu,
        ):
            settings = {**emu.credentials, "iam_url": f"{iam}/identity/token", "retry": QUICK_RETRY}
            with pytest.raises(ProtocolError, match="with its body to another origin"):
                async with Sdk("ibm_quantum", polling=FAST, **settings):
                    pass
            api_key = emu.api_key
    assert evil.requests == []
    assert not evil.received(api_key)


async def test_a_derived_origin_the_backend_grants_gets_the_token() -> None:
    """The counterpart: an origin the backend granted (as OQC grants each QPU's execution URL from
    the configured origin's QPU list) gets the credentials; without the grant it gets nothing."""
    token = "tok-derived-0123456789"
    with anyio.fail_after(30):
        async with (
            recorder() as qpu,
            recorder() as vendor,
            HttpClient(
                vendor.url, vendor="OQC QCaaS", headers={"Authentication-Token": Secret(token)}
            ) as http,
        ):
            with pytest.raises(ProtocolError):
                await http.get(f"{qpu.url}/tasks")
            assert qpu.requests == []
            http.grant_origin(f"{qpu.url}/d865b5a184")
            await http.get(f"{qpu.url}/tasks")
    assert [seen.path for seen in qpu.requests] == ["/tasks"]
    assert qpu.received(token)
