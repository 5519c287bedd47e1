"""oqc-style-sdk: one async Job API for quantum clouds, data and workflow engines, and an embedded
local simulator.

```python
from oqc_style_sdk import Sdk

async with Sdk() as sdk:
    job = sdk.create_job(program=BELL)
    await job.execute(timeout_s=30)
    print(job.result.data)
```
"""

import logging as _logging

from .backends.base import Backend, available_backends, register_backend
from .client import OqcSdk, Sdk
from .composite import CompositeJob
from .exceptions import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    CorruptJobFileError,
    ForeignJobFileError,
    InvalidTransitionError,
    JobCancelledError,
    JobFailed,
    JobFileNotFoundError,
    JobNotFoundError,
    JobNotResumableError,
    JobStateError,
    JobTimeoutError,
    JobValidationError,
    NotFoundError,
    PersistenceError,
    ProtocolError,
    RateLimitedError,
    SdkError,
    SdkNotStartedError,
    ServerError,
    TargetUnavailableError,
    UnknownTargetError,
    UnsupportedSchemaError,
)
from .job import Job
from .job_output import (
    JobCancellation,
    JobError,
    JobOutput,
    JobOutputProxy,
    JobPending,
    JobResult,
)
from .polling import PollingPolicy
from .state import ACTIVE_STATES, TERMINAL_STATES, JobState

# Quiet by default: the application decides where the SDK's log records go.
_logging.getLogger("oqc_style_sdk").addHandler(_logging.NullHandler())

__version__ = "0.1.0"

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "AuthenticationError",
    "Backend",
    "BackendError",
    "BackendUnavailableError",
    "CompositeJob",
    "ConfigurationError",
    "CorruptJobFileError",
    "ForeignJobFileError",
    "InvalidTransitionError",
    "Job",
    "JobCancellation",
    "JobCancelledError",
    "JobError",
    "JobFailed",
    "JobFileNotFoundError",
    "JobNotFoundError",
    "JobNotResumableError",
    "JobOutput",
    "JobOutputProxy",
    "JobPending",
    "JobResult",
    "JobState",
    "JobStateError",
    "JobTimeoutError",
    "JobValidationError",
    "NotFoundError",
    "OqcSdk",
    "PersistenceError",
    "PollingPolicy",
    "ProtocolError",
    "RateLimitedError",
    "Sdk",
    "SdkError",
    "SdkNotStartedError",
    "ServerError",
    "TargetUnavailableError",
    "UnknownTargetError",
    "UnsupportedSchemaError",
    "__version__",
    "available_backends",
    "register_backend",
]
