"""Jobs the official ``azure-quantum`` client submitted, unchanged, are found by ``sdk.job(id)`` in a
fresh Sdk, waited on, read, listed by ``sdk.jobs()``, and — while running — cancelled (issue 18)."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread

from oqc_style_sdk import JobState, Sdk
from oqc_style_sdk.testing.azure_quantum import AzureQuantumEmulator
from oqc_style_sdk.testing.pytest_plugin import EmulatorFactory
from tests.vendors.azure_quantum.test_azure_emulator import BELL_IONQ, BELL_QASM2
from tests.vendors.azure_quantum.test_azure_official_client import _no_azure_environment, _workspace

__all__ = ["_no_azure_environment"]  # the fixture that keeps the client's environment clean


def _submit(emu: AzureQuantumEmulator) -> tuple[str, str]:
    from azure.quantum.target import IonQ, Quantinuum

    workspace = _workspace(emu)
    done = Quantinuum(workspace, name="quantinuum.sim.h2-1e").submit(BELL_QASM2, name="bell-q", shots=50)
    done.wait_until_completed(timeout_secs=30)
    running = IonQ(workspace, name="ionq.simulator").submit(BELL_IONQ, name="to-cancel", shots=10)
    return str(done.id), str(running.id)


async def test_jobs_of_the_official_client_are_found_read_listed_and_cancelled(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory("azure_quantum", job_duration_s=0.2) as emu:
        assert isinstance(emu, AzureQuantumEmulator)
        with anyio.fail_after(90):
            done_id, running_id = await anyio.to_thread.run_sync(_submit, emu)
            await emu.set_status(running_id, "Executing")  # held running until the cancel arrives
            settings: dict[str, Any] = dict(emu.credentials)
            async with Sdk("azure_quantum", **settings) as sdk:
                done = await sdk.job(done_id)
                assert done.state is JobState.COMPLETED
                assert done.target == "quantinuum.sim.h2-1e"
                assert done.program == BELL_QASM2  # read back from its input blob
                assert sum(next(iter(done.result.data.values())).values()) == 50  # type: ignore[union-attr]
                listed = [job.task_id async for job in sdk.jobs()]
                assert listed == [running_id, done_id]
                running = await sdk.job(running_id)
                assert running.state is JobState.RUNNING
                assert await running.cancel(timeout_s=30) is JobState.CANCELLED
            assert await emu.status_of(running_id) == "Cancelled"
