"""Test helpers shipped with the SDK, so that users test their own code offline too.

- :class:`ScriptedBackend` — a fully in-memory backend whose runs follow a script of vendor statuses
  (or are driven by hand), which records every call, and which can be told to fail, hold a
  submission or flip a finished run back to active.
- Vendor emulators — real HTTP servers on 127.0.0.1 (port 0) that speak a vendor's API, with a
  request log and fault knobs: ``async with start_emulator("oqc") as emu: ...``, or
  ``oqcs emulate oqc`` from a terminal — for ``oqc``, ``ibm_quantum``, ``azure_quantum``,
  ``databricks`` and ``windmill``. A pytest plugin (installed with the SDK) gives the fixtures
  ``oqc_emulator`` and ``emulator_factory``.

```python
from oqc_style_sdk import Sdk
from oqc_style_sdk.testing import ScriptedBackend

async def test_my_code() -> None:
    backend = ScriptedBackend(script=["QUEUED", "RUNNING", "COMPLETED"])
    async with Sdk(backend) as sdk:
        job = sdk.create_job(program="my program")
        await job.execute(timeout_s=5)
        assert job.completed and backend.submissions == 1
```

The emulator names are imported on first use, so ``ScriptedBackend`` alone never loads aiohttp.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .scripted import ScriptedBackend

if TYPE_CHECKING:
    from .azure_quantum import AzureQuantumEmulator
    from .databricks import DatabricksEmulator
    from .emulator import (
        ApiError,
        Emulator,
        Fault,
        LoggedRequest,
        available_emulators,
        create_emulator,
        register_emulator,
        serve_forever,
        start_emulator,
    )
    from .ibm_quantum import IbmQuantumEmulator
    from .oqc import OqcEmulator, OqcQpu
    from .windmill import WindmillEmulator

__all__ = [
    "ApiError",
    "AzureQuantumEmulator",
    "DatabricksEmulator",
    "Emulator",
    "Fault",
    "IbmQuantumEmulator",
    "LoggedRequest",
    "OqcEmulator",
    "OqcQpu",
    "ScriptedBackend",
    "WindmillEmulator",
    "available_emulators",
    "create_emulator",
    "register_emulator",
    "serve_forever",
    "start_emulator",
]

_LAZY = {
    "ApiError": "emulator",
    "Emulator": "emulator",
    "Fault": "emulator",
    "LoggedRequest": "emulator",
    "available_emulators": "emulator",
    "create_emulator": "emulator",
    "register_emulator": "emulator",
    "serve_forever": "emulator",
    "start_emulator": "emulator",
    "OqcEmulator": "oqc",
    "OqcQpu": "oqc",
    "IbmQuantumEmulator": "ibm_quantum",
    "AzureQuantumEmulator": "azure_quantum",
    "DatabricksEmulator": "databricks",
    "WindmillEmulator": "windmill",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
