"""The official ``azure-quantum`` client (with azure-core and azure-storage-blob) against the Azure
Quantum emulator: the vendor's own client is the judge of the emulator.

The client runs unchanged. Its public settings only take ``https://{region}(-v2).quantum.azure.com``
endpoints (the connection string's ``QuantumEndpoint`` is checked by a regular expression), so the
one allowance is the ``_quantum_endpoint`` keyword of ``Workspace`` — the very keyword its own
``from_connection_string`` passes. It authenticates with the workspace API key
(``AzureKeyCredential``, header ``x-ms-quantum-api-key``): azure-core refuses bearer tokens over
plain http. Blob storage is reached only through the SAS URLs the emulator hands out. The client is
synchronous, so it runs in a worker thread while the emulator serves on the event loop.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio.to_thread
import pytest

from oqc_style_sdk.testing.azure_quantum import AzureQuantumEmulator
from oqc_style_sdk.testing.pytest_plugin import EmulatorFactory
from tests.vendors.azure_quantum.test_azure_emulator import BELL_IONQ, BELL_QASM2


@pytest.fixture(autouse=True)
def _no_azure_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client fills missing settings from the environment: none may leak in from outside."""
    from azure.quantum._constants import EnvironmentVariables

    for name in EnvironmentVariables.ALL:
        monkeypatch.delenv(name, raising=False)


def _workspace(emu: AzureQuantumEmulator) -> Any:
    from azure.core.credentials import AzureKeyCredential
    from azure.quantum import Workspace

    return Workspace(
        subscription_id=emu.subscription_id,
        resource_group=emu.resource_group,
        name=emu.workspace,
        location="eastus",
        credential=AzureKeyCredential(emu.api_key),
        _quantum_endpoint=emu.base_url + "/",
    )


def _run_ionq_and_quantinuum(emu: AzureQuantumEmulator) -> dict[str, Any]:
    """What a user of azure-quantum does: submit to two providers, wait, read results, list."""
    from azure.quantum import JobStatus
    from azure.quantum.target import IonQ, Quantinuum

    workspace = _workspace(emu)
    ionq = IonQ(workspace, name="ionq.simulator").submit(BELL_IONQ, name="bell-ionq", shots=100)
    quantinuum = Quantinuum(workspace, name="quantinuum.sim.h2-1e").submit(
        BELL_QASM2, name="bell-quantinuum", shots=50
    )
    ionq.wait_until_completed(timeout_secs=30)
    quantinuum.wait_until_completed(timeout_secs=30)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    return {
        "ids": (ionq.id, quantinuum.id),
        "statuses": (ionq.details.status, quantinuum.details.status),
        "ionq": ionq.get_results(),
        "quantinuum": quantinuum.get_results(),
        "listed": sorted(job.id for job in workspace.list_jobs()),
        # the status's value: the client writes an enum member into its filter with f"{status}",
        # which Python 3.11 renders 'JobStatus.SUCCEEDED'
        "ionq_succeeded": [
            job.id for job in workspace.list_jobs(provider=["ionq"], status=[JobStatus.SUCCEEDED.value])
        ],
        "by_name": [job.id for job in workspace.list_jobs(name_match="bell-q", created_after=yesterday)],
        "fetched": workspace.get_job(quantinuum.id).details.target,
    }


async def test_the_official_client_submits_waits_reads_and_lists(emulator_factory: EmulatorFactory) -> None:
    async with emulator_factory("azure_quantum") as emulator:
        assert isinstance(emulator, AzureQuantumEmulator)
        seen = await anyio.to_thread.run_sync(_run_ionq_and_quantinuum, emulator)
        requests = list(emulator.requests)
    from azure.quantum import JobStatus

    ionq_id, quantinuum_id = seen["ids"]
    assert seen["statuses"] == (JobStatus.SUCCEEDED, JobStatus.SUCCEEDED)
    histogram = seen["ionq"]["histogram"]
    assert set(histogram) <= {"0", "3"}  # Bell: |00> and |11> only
    assert sum(histogram.values()) == pytest.approx(1.0)
    shots = seen["quantinuum"]["c"]
    assert len(shots) == 50
    assert set(shots) <= {"00", "11"}
    assert seen["listed"] == sorted([ionq_id, quantinuum_id])
    assert seen["ionq_succeeded"] == [ionq_id]
    assert seen["by_name"] == [quantinuum_id]
    assert seen["fetched"] == "quantinuum.sim.h2-1e"
    # what the client sent: the API key, never a bearer token; blobs through SAS alone, ranged reads
    workspace = [r for r in requests if r.path.startswith("/subscriptions/")]
    blobs = [r for r in requests if not r.path.startswith("/subscriptions/")]
    assert all("x-ms-quantum-api-key" in r.headers and "Authorization" not in r.headers for r in workspace)
    assert all("x-ms-quantum-api-key" not in r.headers for r in blobs)
    reads = [r for r in blobs if r.method == "GET"]
    assert reads
    assert all(r.status == 206 and "x-ms-range" in r.headers for r in reads)
    creates = [r for r in workspace if r.method == "PUT"]
    assert len(creates) == 2
    assert all(r.status == 200 and "id" not in r.body for r in creates)


def _submit_one(emu: AzureQuantumEmulator) -> str:
    from azure.quantum.target import IonQ

    job = IonQ(_workspace(emu), name="ionq.simulator").submit(BELL_IONQ, name="to-cancel", shots=10)
    return str(job.id)


def _cancel(emu: AzureQuantumEmulator, job_id: str) -> tuple[Any, Any, bool]:
    workspace = _workspace(emu)
    job = workspace.get_job(job_id)
    before = job.details.status
    cancelled = workspace.cancel_job(job)
    return before, cancelled.details.status, cancelled.has_completed()


@pytest.mark.parametrize("cancel_response", ["details", "no_content"])
async def test_the_official_client_cancels_a_running_job(
    emulator_factory: EmulatorFactory, cancel_response: str
) -> None:
    async with emulator_factory("azure_quantum", cancel_response=cancel_response) as emulator:
        assert isinstance(emulator, AzureQuantumEmulator)
        job_id = await anyio.to_thread.run_sync(_submit_one, emulator)
        await emulator.set_status(job_id, "Executing")  # hold it running until the cancel arrives
        before, after, ended = await anyio.to_thread.run_sync(_cancel, emulator, job_id)
        assert await emulator.status_of(job_id) == "Cancelled"
    from azure.quantum import JobStatus

    assert (before, after, ended) == (JobStatus.EXECUTING, JobStatus.CANCELLED, True)


def test_the_clients_public_settings_refuse_an_endpoint_that_is_not_azure() -> None:
    """Why the test above passes ``_quantum_endpoint``: a connection string naming any other host
    is refused by the client itself (so no documented setting can point it at an emulator)."""
    from azure.quantum import Workspace

    text = (
        "SubscriptionId=00000000-0000-0000-0000-000000000001;ResourceGroupName=rg;"
        "WorkspaceName=ws;ApiKey=k;QuantumEndpoint=http://127.0.0.1:8080/;"
    )
    with pytest.raises(ValueError, match="Invalid connection string"):
        Workspace.from_connection_string(text)
