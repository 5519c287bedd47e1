"""Test helpers shipped with the SDK, so that users test their own code offline too.

:class:`ScriptedBackend` is a fully in-memory backend whose runs follow a script of vendor
statuses (or are driven by hand), which records every call, and which can be told to fail, hold a
submission or flip a finished run back to active. Hand one to :class:`~oqc_style_sdk.Sdk`:

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

See :mod:`oqc_style_sdk.testing.scripted` for scripts, faults, held submissions and cancellation.
"""

from .scripted import ScriptedBackend

__all__ = ["ScriptedBackend"]
