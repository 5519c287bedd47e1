"""An async executor of Arazzo 1.0.x workflows, safe to point at a vendor.

```python
from oqc_style_sdk.arazzo import Pacing, run_workflow

result = await run_workflow(
    "ibm-cancel.arazzo.yaml",
    "cancel-running-job",
    {"accessToken": token, "serviceCrn": crn, "apiVersion": "2026-04-15", "jobId": job_id},
    servers={"jobsApi": "https://quantum.cloud.ibm.com"},
)
result.outputs          # {"finalStatus": "Cancelled"}
result.trace            # [("getJobStatus", "cancellable → cancelJob"), ...]
result.warnings         # what was tolerated (seed-style expressions, steps that did not run)
```

Runs the vendors' own seed workflows as written — bare ``$inputs.x`` inside strings, jsonpath
criteria written as comparisons — with pacing of ``goto`` loops, a step cap and a deadline. All HTTP
goes through :class:`oqc_style_sdk._http.HttpClient`. See ``docs/workflows.md``.
"""

from __future__ import annotations

from .document import ArazzoDocument, load_document, parse_document
from .errors import (
    MissingInputError,
    StepFailedError,
    StepLimitError,
    UnknownOperationError,
    WorkflowConfigurationError,
    WorkflowDefinitionError,
    WorkflowError,
    WorkflowInputError,
    WorkflowTimeoutError,
)
from .operations import BUILTIN_BACKENDS, BuiltinBackend, OperationSpec
from .result import StepRecord, WorkflowResult
from .runner import Pacing, run_workflow

__all__ = [
    "BUILTIN_BACKENDS",
    "ArazzoDocument",
    "BuiltinBackend",
    "MissingInputError",
    "OperationSpec",
    "Pacing",
    "StepFailedError",
    "StepLimitError",
    "StepRecord",
    "UnknownOperationError",
    "WorkflowConfigurationError",
    "WorkflowDefinitionError",
    "WorkflowError",
    "WorkflowInputError",
    "WorkflowResult",
    "WorkflowTimeoutError",
    "load_document",
    "parse_document",
    "run_workflow",
]
