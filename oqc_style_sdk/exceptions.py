"""Every error the SDK raises, in one tree.

```
SdkError
├── ConfigurationError (ValueError)        bad Sdk settings, unknown backend, missing credentials
├── SdkNotStartedError (RuntimeError)      Sdk used outside ``async with`` (or after it closed)
├── JobValidationError (ValueError)        bad input, refused before anything is sent
│   ├── UnknownTargetError                 a target the backend does not offer
│   └── TargetUnavailableError             a target the vendor lists as inactive or offline
├── JobStateError (RuntimeError)           the verb does not fit the job's state
│   └── InvalidTransitionError             a move the lifecycle table forbids
├── JobTimeoutError (TimeoutError)         a deadline passed; the job stays active and attached
├── JobFailed                              raise_for_status() on a job that did not complete
│   └── JobCancelledError                  ... because it was cancelled
├── BackendError                           the vendor or the way to it misbehaved
│   ├── BackendUnavailableError (ConnectionError)   not reachable / gone away
│   ├── AuthenticationError                credentials refused
│   ├── RateLimitedError                   429 beyond what retries may wait for
│   ├── ServerError                        5xx beyond retries
│   ├── NotFoundError                      the vendor does not know the job
│   │   └── JobNotFoundError               ... asked for by task id (sdk.job, oqcs attach)
│   └── ProtocolError                      a response we cannot understand
└── PersistenceError (OSError)             saving or loading a job file
    ├── JobFileNotFoundError (FileNotFoundError)
    ├── CorruptJobFileError                not JSON, truncated, fails validation
    ├── ForeignJobFileError                not a job file of ours, or of another backend/endpoint
    ├── UnsupportedSchemaError             written by a newer version of the SDK
    └── JobNotResumableError               an active run that cannot be reached from here
```

Messages never contain secrets: backends pass only ids, states and vendor messages.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .job_output import JobOutput, JobOutputProxy

__all__ = [
    "AuthenticationError",
    "BackendError",
    "BackendUnavailableError",
    "ConfigurationError",
    "CorruptJobFileError",
    "ForeignJobFileError",
    "InvalidTransitionError",
    "JobCancelledError",
    "JobFailed",
    "JobFileNotFoundError",
    "JobNotFoundError",
    "JobNotResumableError",
    "JobStateError",
    "JobTimeoutError",
    "JobValidationError",
    "NotFoundError",
    "PersistenceError",
    "ProtocolError",
    "RateLimitedError",
    "SdkError",
    "SdkNotStartedError",
    "ServerError",
    "TargetUnavailableError",
    "UnknownTargetError",
    "UnsupportedSchemaError",
]


class SdkError(Exception):
    """Base class of every error raised by oqc-style-sdk."""


class ConfigurationError(SdkError, ValueError):
    """The Sdk was set up wrongly: unknown backend, missing or malformed settings."""


class SdkNotStartedError(SdkError, RuntimeError):
    """The Sdk is not open: use ``async with Sdk() as sdk:`` (or it has already closed)."""


class JobValidationError(SdkError, ValueError):
    """Bad input for a job, refused before anything was sent."""


class UnknownTargetError(JobValidationError):
    """The backend offers no target of that name."""

    def __init__(self, target: str, known: list[str]) -> None:
        self.target = target
        self.known = known
        shown = ", ".join(repr(k) for k in known[:10]) or "none"
        more = f" (and {len(known) - 10} more)" if len(known) > 10 else ""
        super().__init__(f"unknown target {target!r}; this backend offers {shown}{more}")


class TargetUnavailableError(JobValidationError):
    """The vendor lists the target as unable to run jobs now (inactive, offline ...).

    Refused at ``create_job`` rather than left to wait unseen; ``create_job(..., queue=True)``
    (``oqcs run --queue``) queues for it anyway, where the vendor holds jobs until it is back.
    """

    def __init__(self, target: str, state: str, *, next_window: datetime | None = None) -> None:
        self.target = target
        self.state = state
        #: When the vendor says the target runs jobs next (OQC's next window), if it says.
        self.next_window = next_window
        when = f"; its next window starts {next_window:%Y-%m-%d %H:%M} UTC" if next_window else ""
        super().__init__(
            f"target {target!r} is {state} and cannot run jobs now{when}. "
            "Pass queue=True to create_job to queue for it anyway"
        )


class JobStateError(SdkError, RuntimeError):
    """The operation does not fit the job's current state."""


class InvalidTransitionError(JobStateError):
    """A state change the lifecycle table forbids."""

    def __init__(self, source: str, target: str) -> None:
        self.source = source
        self.target = target
        super().__init__(f"a job cannot move from {source} to {target}")


class JobTimeoutError(SdkError, TimeoutError):
    """A deadline passed. The job is left as it was: active, attached, not cancelled."""

    def __init__(
        self, message: str, *, state: str | None = None, outputs: JobOutputProxy | None = None
    ) -> None:
        super().__init__(message)
        self.state = state
        #: For a composite: the outputs at the deadline, one per child, pending ones included.
        self.outputs = outputs


class JobFailed(SdkError):
    """``raise_for_status()`` on a job whose latest run did not complete."""

    def __init__(self, message: str, *, error: JobOutput | None = None) -> None:
        super().__init__(message)
        #: The JobError (or JobCancellation) of the run that did not complete.
        self.error = error


class JobCancelledError(JobFailed):
    """``raise_for_status()`` on a job whose latest run was cancelled."""


class BackendError(SdkError):
    """The vendor, or the network on the way to it, did not do what was asked."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        vendor_code: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.vendor_code = vendor_code
        self.details = details

    #: Whether trying again later may succeed.
    transient: bool = False

    @property
    def rereadable(self) -> bool:
        """Whether a *read* that failed so is worth sending again: a transient error, or a garbled
        answer (the next answer may be whole). Elsewhere only transient errors are retried."""
        return self.transient or isinstance(self, ProtocolError)

    @property
    def refused(self) -> bool:
        """Whether the vendor refused the request outright (a 4xx other than timeout and rate
        limit, credentials aside, and none its backend takes as "try again later"): nothing was
        created, and asking again will not help."""
        status = self.status
        return (
            status is not None
            and 400 <= status < 500
            and status not in (408, 429)
            and not self.transient
            and not isinstance(self, AuthenticationError)
        )


class BackendUnavailableError(BackendError, ConnectionError):
    """The backend cannot be reached (refused, reset, DNS, closed)."""

    transient = True


class AuthenticationError(BackendError):
    """The vendor refused the credentials."""


class RateLimitedError(BackendError):
    """The vendor kept answering 429 for longer than the deadline allowed."""

    transient = True

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


class ServerError(BackendError):
    """The vendor kept answering 5xx."""

    transient = True


class NotFoundError(BackendError):
    """The vendor does not know the job (or target) asked about."""


class JobNotFoundError(NotFoundError):
    """No run of that task id at the vendor (``sdk.job(task_id)``); names the backend."""

    def __init__(self, task_id: str, backend: str, why: str | None = None, **kw: Any) -> None:
        self.task_id = task_id
        self.backend = backend
        super().__init__(f"{backend} has no job {task_id!r}{f': {why}' if why else ''}", **kw)


class ProtocolError(BackendError):
    """A response that does not match the vendor's documented shape."""


class PersistenceError(SdkError, OSError):
    """A job file could not be written or read."""


class JobFileNotFoundError(PersistenceError, FileNotFoundError):
    """No job file at that path."""


class CorruptJobFileError(PersistenceError):
    """The file is not valid JSON, is truncated, or fails validation."""


class ForeignJobFileError(PersistenceError):
    """The file is not one of our job files, or belongs to another backend or endpoint."""


class UnsupportedSchemaError(PersistenceError):
    """The file was written by a newer version of the SDK than this one."""


class JobNotResumableError(PersistenceError):
    """The saved job has an active run that cannot be reached from this process."""
