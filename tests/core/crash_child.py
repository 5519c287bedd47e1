"""The child process of ``test_crash_safety.py``: run a composite against the OQC emulator, saving
as it goes, until done (or until the parent kills it with SIGKILL).

``python crash_child.py URL TOKEN QPU_ID FILE N``: load ``FILE`` if it exists (else create ``N``
jobs and save them), then execute the composite while saving it every few milliseconds; exit 0
once every job has ended, with the final save done.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from oqc_style_sdk import CompositeJob, OqcSdk
from oqc_style_sdk.polling import PollingPolicy

PROGRAM = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'


async def main(url: str, token: str, qpu: str, file: str, n: int) -> None:
    path = Path(file)
    policy = PollingPolicy(min_interval_s=0.02, max_interval_s=0.1)
    async with OqcSdk(url=url, authentication_token=token, default_qpu_id=qpu, polling=policy) as sdk:
        if await anyio.Path(path).exists():
            composite = await sdk.load(path)
        else:
            composite = sdk.create_job(program=[PROGRAM] * n)
            await composite.save(path)
        assert isinstance(composite, CompositeJob)
        if composite.ended:  # finished by an earlier process: nothing to run again
            print("done", flush=True)
            return
        done = anyio.Event()

        async def keep_saving() -> None:
            while not done.is_set():
                await composite.save(path)
                await anyio.sleep(0.005)

        async with anyio.create_task_group() as tg:
            tg.start_soon(keep_saving)
            await composite.execute(timeout_s=120, max_concurrency=8)
            done.set()
        await composite.save(path)
    print("done", flush=True)


if __name__ == "__main__":
    url, token, qpu, file, n = sys.argv[1:6]
    anyio.run(main, url, token, qpu, file, int(n))
