"""The errors of the Arazzo executor, in the SDK's error tree.

```
SdkError
└── WorkflowError                                   .result: the partial WorkflowResult, if any
    ├── WorkflowDefinitionError (ValueError)        malformed document; .problems: "where: what"
    │   └── UnknownOperationError                   an operationId no description or map knows
    ├── WorkflowConfigurationError (ConfigurationError)   no/unknown server URL, bad options
    ├── WorkflowInputError (ValueError)             inputs that do not fit the workflow's schema
    │   └── MissingInputError                       required inputs not given
    ├── StepFailedError                             a step's successCriteria failed, unhandled
    ├── StepLimitError                              more steps than max_steps
    └── WorkflowTimeoutError (TimeoutError)         the overall deadline passed
```

Transport failures keep their own SDK types (:class:`~oqc_style_sdk.exceptions.BackendUnavailableError`
for a refused connection, ...) with a note naming the workflow and step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..exceptions import ConfigurationError, SdkError

if TYPE_CHECKING:
    from .result import WorkflowResult

__all__ = [
    "MissingInputError",
    "StepFailedError",
    "StepLimitError",
    "UnknownOperationError",
    "WorkflowConfigurationError",
    "WorkflowDefinitionError",
    "WorkflowError",
    "WorkflowInputError",
    "WorkflowTimeoutError",
]


class WorkflowError(SdkError):
    """Base class of the Arazzo executor's errors."""

    #: What the workflow did before it stopped (steps, warnings, outputs so far), when it ran at all.
    result: WorkflowResult | None = None


class WorkflowDefinitionError(WorkflowError, ValueError):
    """The Arazzo document is malformed or uses something this executor does not support.

    ``problems`` lists each one as ``"location: message"``.
    """

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems = list(problems)
        if self.problems:
            shown = "\n  ".join(self.problems[:20])
            more = f"\n  (and {len(self.problems) - 20} more)" if len(self.problems) > 20 else ""
            message = f"{message}:\n  {shown}{more}"
        super().__init__(message)


class UnknownOperationError(WorkflowDefinitionError):
    """A step's operationId is in neither its source description nor a built-in operation map."""

    def __init__(self, message: str, *, operation_id: str, known: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.operation_id = operation_id
        self.known = list(known)


class WorkflowConfigurationError(WorkflowError, ConfigurationError):
    """The run is set up wrongly: a source without a server URL, an unknown server name ..."""


class WorkflowInputError(WorkflowError, ValueError):
    """Inputs that do not fit the workflow's ``inputs`` schema."""


class MissingInputError(WorkflowInputError):
    """Inputs the workflow requires were not given. ``missing`` names them."""

    def __init__(self, message: str, *, missing: Sequence[str]) -> None:
        super().__init__(message)
        self.missing = list(missing)


class StepFailedError(WorkflowError):
    """A step's successCriteria were not met and no failure action handled it (or one said ``end``)."""

    def __init__(
        self,
        message: str,
        *,
        step_id: str,
        status: int | None = None,
        vendor_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.step_id = step_id
        self.status = status
        self.vendor_message = vendor_message


class StepLimitError(WorkflowError):
    """The workflow took more than ``max_steps`` steps (a loop that does not end)."""


class WorkflowTimeoutError(WorkflowError, TimeoutError):
    """The overall deadline (``timeout_s``) passed. Nothing is cancelled on the vendor's side."""
