"""Security, on every HTTP backend against its emulator.

* Secrets (tokens, keys, passwords, SAS signatures — whatever the emulator calls a secret) appear in
  no repr, no log line at any level of any logger, no exception (message, repr or traceback) and no
  saved file, during a run with faults on every phase.
* Saved job files are readable by their owner only.
* Plain HTTP is refused for a non-loopback host unless explicitly allowed.
* A loaded job file is data: nothing in it is executed or unpickled.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import traceback
from pathlib import Path
from typing import Any

import anyio
import pytest

from oqc_style_sdk import Job, JobState, Sdk
from oqc_style_sdk.exceptions import ConfigurationError, SdkError
from oqc_style_sdk.testing.azure_quantum import AzureQuantumEmulator
from oqc_style_sdk.testing.emulator import start_emulator
from tests.common import FAST
from tests.matrix.test_fault_matrix import ADAPTERS, QUICK_RETRY, inject

HTTP_BACKENDS = list(ADAPTERS)


def _texts(*objects: object) -> list[str]:
    return [text for obj in objects for text in (repr(obj), str(obj))]


async def _faulted_runs(
    sdk: Sdk, emu: Any, adapter: Any, faults: tuple[str, ...], tmp_path: Path
) -> list[str]:
    """One job per fault and phase, the fault injected there; every text a user could see of it."""
    seen: list[str] = []
    for fault in faults:
        for phase in ("submit", "status", "result", "cancel"):
            job = sdk.create_job(program=adapter.program)
            inject(emu, fault, getattr(adapter, phase))
            try:
                if phase == "cancel":
                    await job.submit()
                    await job.cancel(timeout_s=2)
                else:
                    await job.execute(timeout_s=2)
            except (SdkError, TimeoutError) as exc:
                seen += _texts(exc, exc.__cause__, exc.__context__)
                seen.append("".join(traceback.format_exception(exc)))
            emu.clear_faults()
            await job.cancel_if_active(timeout_s=2)
            seen += _texts(job, job.outputs, job.history, job.error, job.result)
            saved = await job.save(tmp_path / f"{fault}-{phase}.json")
            assert stat.S_IMODE(saved.stat().st_mode) == 0o600
            seen.append(saved.read_text())
            seen += _texts(await sdk.load(saved))
    return seen


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
async def test_no_secret_leaks_during_a_faulted_run(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = ADAPTERS[backend]
    caplog.set_level(logging.DEBUG)  # the root logger: every logger of the SDK and the kit
    seen: list[str] = []
    with anyio.fail_after(60):
        async with start_emulator(adapter.emulator, job_duration_s=0.05, max_lifetime_s=60) as emu:
            settings = {**emu.credentials, "timeout_s": 0.4, "retry": QUICK_RETRY}
            async with Sdk(adapter.emulator, default_target=adapter.target, polling=FAST, **settings) as sdk:
                seen += _texts(sdk, sdk.backend, sdk.poller)
                faults = ("expired_token", "500", "drop", "malformed", "truncated", "slow")
                seen += await _faulted_runs(sdk, emu, adapter, faults, tmp_path)
            secrets = [s for s in emu.secrets() if s]
    seen += [record.getMessage() for record in caplog.records]
    seen += [caplog.text]
    assert secrets
    for secret in secrets:
        leaks = [text for text in seen if secret in text]
        assert not leaks, f"a secret of {backend} leaked into: {leaks[0][:300]}"


HTTP_SETTINGS: dict[str, dict[str, Any]] = {
    "oqc": {"url": "http://qcaas.example.com", "authentication_token": "t0k"},
    "ibm_quantum": {
        "url": "http://quantum.example.com/api/v1",
        "iam_url": "https://iam.example.com",
        "api_key": "k3y",
        "instance": "crn:v1:bluemix:public:quantum-computing:us-east:a/1234:5678::",
    },
    "azure_quantum": {
        "endpoint": "http://westus.quantum.example.com",
        "subscription_id": "00000000-0000-0000-0000-000000000000",
        "resource_group": "rg",
        "workspace": "ws",
        "access_token": "t0k",
    },
    "databricks": {"host": "http://adb-1.azuredatabricks.example.net", "token": "t0k"},
    "windmill": {"base_url": "http://windmill.example.com", "token": "t0k", "workspace": "demo"},
}


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
def test_plain_http_is_refused_for_a_remote_host_unless_allowed(backend: str) -> None:
    settings = HTTP_SETTINGS[backend]
    with pytest.raises(ConfigurationError, match=r"(?i)http"):
        Sdk(backend, **settings)
    Sdk(backend, **settings, allow_insecure_http=True)  # explicitly allowed: accepted


#: Payloads that would do something if a loader evaluated or unpickled them.
PICKLE = "cos\nsystem\n(S'touch {marker}'\ntR."
PYTHON = "__import__('os').system('touch {marker}')"


async def test_a_loaded_job_file_is_data_only(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    program = f"// {PYTHON.format(marker=marker)}\n{ADAPTERS['oqc'].program}"
    config = {
        "shots": 10,
        "compiler_config": json.dumps(
            {
                "py/object": "os.system",
                "__reduce__": PICKLE.format(marker=marker),
                "!!python/object/apply:os.system": [f"touch {marker}"],
            }
        ),
    }
    with anyio.fail_after(20):
        async with (
            start_emulator("oqc", job_duration_s=0.05, max_lifetime_s=60) as emu,
            Sdk("oqc", default_target=ADAPTERS["oqc"].target, polling=FAST, **emu.credentials) as sdk,
        ):
            job = sdk.create_job(program=program, config=config)
            saved = await job.save(tmp_path / "job.json")
            loaded = await sdk.load(saved)
            text = saved.read_text()
            # A forged file: the payloads moved where a naive loader might evaluate them.
            forged = tmp_path / "forged.json"
            forged.write_text(text.replace('"shots": 10', f'"shots": "{PYTHON.format(marker=marker)}"'))
            os.chmod(forged, 0o600)
            with contextlib.suppress(SdkError):  # refused is fine; executing is not
                await sdk.load(forged)
    assert not marker.exists()
    assert isinstance(loaded, Job)
    assert loaded.state is JobState.CREATED
    assert loaded.program == program  # the payloads come back as the strings they were
    assert loaded.config == config


async def test_an_azure_connection_string_and_api_key_never_leak(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The connection string carries the workspace API key: neither appears anywhere, through a
    run with faults on each phase, nor in the refusal of a malformed connection string."""
    adapter = ADAPTERS["azure_quantum"]
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with anyio.fail_after(60):
        async with start_emulator("azure_quantum", job_duration_s=0.05, max_lifetime_s=60) as emu:
            assert isinstance(emu, AzureQuantumEmulator)
            text = emu.connection_string
            settings = {"connection_string": text, "timeout_s": 0.4, "retry": QUICK_RETRY}
            async with Sdk("azure_quantum", default_target=adapter.target, polling=FAST, **settings) as sdk:
                seen += _texts(sdk, sdk.backend, vars(sdk.backend))
                seen += await _faulted_runs(
                    sdk, emu, adapter, ("expired_token", "500", "malformed"), tmp_path
                )
            for broken in (text.replace("ApiKey=", "ApiKey"), text.replace("QuantumEndpoint=", "Endpoint=")):
                with pytest.raises(ConfigurationError) as caught:
                    Sdk("azure_quantum", connection_string=broken)
                seen += _texts(caught.value)
                seen.append("".join(traceback.format_exception(caught.value)))
            secrets = [s for s in (text, *emu.secrets()) if s]
    seen += [record.getMessage() for record in caplog.records] + [caplog.text]
    assert emu.api_key in secrets
    for secret in secrets:
        leaks = [t for t in seen if secret in t]
        assert not leaks, f"a secret leaked into: {leaks[0][:300]}"
