"""The child process of ``test_crash_safety.py``: run a composite against a vendor's emulator,
saving as it goes, until done (or until the parent kills it with SIGKILL).

``python crash_child.py BACKEND TARGET FILE N [PROGRAM]``, the backend's settings in the
environment (the emulator's ``env``); ``TARGET`` is ``-`` for none, ``PROGRAM`` JSON (default: a
one-qubit OpenQASM program). Load ``FILE`` if it exists, else create ``N`` jobs and save them
(``timeout_s``: the keys a vendor hands out are reserved then); then execute the composite while
saving it every few milliseconds (plain saves, which never wait on the vendor); exit 0 once every
job has ended, with the final save done.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio

from oqc_style_sdk import CompositeJob, Sdk
from oqc_style_sdk._http import RetryPolicy
from oqc_style_sdk.polling import PollingPolicy

PROGRAM = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'


async def main(backend: str, target: str | None, file: str, n: int, program: Any) -> None:
    path = Path(file)
    policy = PollingPolicy(min_interval_s=0.02, max_interval_s=0.1)
    retry = RetryPolicy(base_delay_s=0.01, max_delay_s=0.1)
    async with Sdk(backend, default_target=target, polling=policy, timeout_s=2.0, retry=retry) as sdk:
        if await anyio.Path(path).exists():
            composite = await sdk.load(path)
        else:
            composite = sdk.create_job(program=[program] * n)
            await composite.save(path, timeout_s=30)
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
    name, qpu, file, n = sys.argv[1:5]
    program = json.loads(sys.argv[5]) if len(sys.argv) > 5 else PROGRAM
    anyio.run(main, name, None if qpu == "-" else qpu, file, int(n), program)
