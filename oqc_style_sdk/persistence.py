"""Job files: versioned JSON snapshots, written atomically, validated on the way back in.

A file holds one job, or the children of one composite, with everything needed to carry on from
another process: the spec, the current run's vendor reference and idempotency key, and the whole
history. It never holds a secret (backends record only their name and endpoint) and never holds
code: loading parses JSON into pydantic models, nothing else.

Writing goes to a temporary file beside the target (created owner-only), is flushed and fsynced, then
renamed over the target, and the directory is fsynced: a reader sees the old file or the new one,
never half of one. All file I/O runs in a worker thread.

Versions: ``SCHEMA_VERSION`` is what this SDK writes. Older files are brought forward by the
functions in ``MIGRATIONS`` (version → its successor) before validation; newer ones are refused with
:class:`UnsupportedSchemaError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .backends._qiskit import as_qasm3, error_message, is_circuit, load_qasm3, qiskit_imported
from .backends.base import Diagnostics, RunRef, RunSpec
from .exceptions import (
    CorruptJobFileError,
    ForeignJobFileError,
    JobFileNotFoundError,
    JobNotResumableError,
    JobValidationError,
    PersistenceError,
    SdkError,
    UnsupportedSchemaError,
)
from .job_output import JobCancellation, JobError, JobResult
from .state import JobState

if TYPE_CHECKING:
    from .client import Sdk
    from .composite import CompositeJob
    from .job import Job

__all__ = [
    "FORMAT",
    "MAX_FILE_BYTES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "JobFile",
    "JobSnapshot",
    "load_jobs",
    "save_jobs",
]

FORMAT: Literal["oqc-style-sdk/job-file"] = "oqc-style-sdk/job-file"
SCHEMA_VERSION: Literal[1] = 1
#: Files larger than this are refused before they are read (a composite of 10,000 jobs is ~30 MB).
MAX_FILE_BYTES = 256 * 1024 * 1024

#: ``MIGRATIONS[n]`` turns a version-``n`` document into a version ``n + 1`` one.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}

Output = Annotated[JobResult | JobError | JobCancellation, Field(discriminator="kind")]

logger = logging.getLogger(__name__)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RefSnapshot(_Model):
    task_id: str = Field(min_length=1)
    extra: dict[str, str] = Field(default_factory=dict)


class DiagnosticsSnapshot(_Model):
    timings: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class JobSnapshot(_Model):
    """One job, as saved."""

    id: str = Field(min_length=1, max_length=64)
    program: Any
    target: str | None
    config: dict[str, Any]
    tag: str | None = None
    fetch_diagnostics: bool = False
    state: JobState
    run: int = Field(ge=1)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)
    submit_attempted: bool = False
    ref: RefSnapshot | None = None
    vendor_status: str | None = None
    cancel_reason: str | None = None
    cancel_sent: bool = False
    submitted_at: datetime | None = None
    history: list[Output] = Field(default_factory=list)
    diagnostics: DiagnosticsSnapshot | None = None
    #: Whether ``program`` (OpenQASM 3 text in the file) came as a qiskit circuit, and the runs of
    #: ``history`` whose program did: loading gives those back as circuits. Written only when set,
    #: so a file without circuits reads as it always did.
    program_is_circuit: bool = Field(default=False, exclude_if=lambda flag: not flag)
    circuit_runs: list[int] = Field(default_factory=list, exclude_if=lambda runs: not runs)

    @model_validator(mode="after")
    def _consistent(self) -> JobSnapshot:
        if self.state is JobState.CREATED and self.ref is not None:
            raise ValueError("a CREATED job has no vendor reference")
        if self.state in (JobState.SUBMITTED, JobState.RUNNING) and self.ref is None:
            raise ValueError(f"a {self.state.value} job needs its vendor reference")
        if len(self.history) > self.run:
            raise ValueError("more history entries than runs")
        runs = [o.run for o in self.history]
        if runs != sorted(set(runs)) or any(r > self.run for r in runs):
            raise ValueError("history runs must be distinct, increasing and not after the current")
        if self.state.is_terminal:
            last = self.history[-1] if self.history else None
            if last is None or last.run != self.run or last.state is not self.state:
                raise ValueError(f"a {self.state.value} job's last history entry must be its run")
        elif self.history and self.history[-1].run == self.run:
            raise ValueError("an active run cannot have a history entry yet")
        return self


class JobFile(_Model):
    """The whole file."""

    format: Literal["oqc-style-sdk/job-file"]
    schema_version: Literal[1]
    saved_at: datetime
    sdk_version: str
    backend: dict[str, str]
    composite_id: str | None = None
    jobs: list[JobSnapshot] = Field(min_length=1)

    @model_validator(mode="after")
    def _shape(self) -> JobFile:
        if self.composite_id is None and len(self.jobs) != 1:
            raise ValueError("a single-job file holds exactly one job")
        return self


def _read_sdk_version() -> str:
    try:
        return version("oqc-style-sdk")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


#: Read once at import: reading package metadata is file I/O, which must not happen on the event loop
#: at every save.
_SDK_VERSION = _read_sdk_version()


def _sdk_version() -> str:
    return _SDK_VERSION


# ---------------------------------------------------------------------------------- snapshots
def snapshot(job: Job) -> JobSnapshot:
    ref = job._ref
    diag = job._diagnostics
    return JobSnapshot(
        id=job.id,
        program=job._spec.program,
        target=job._spec.target,
        config=dict(job._spec.config),
        tag=job._spec.tag,
        fetch_diagnostics=job._fetch_diagnostics,
        state=job._state,
        run=job._run,
        idempotency_key=job._key,
        submit_attempted=job._submit_attempted,
        ref=None if ref is None else RefSnapshot(task_id=ref.task_id, extra=dict(ref.extra)),
        vendor_status=job._vendor_status,
        cancel_reason=job._cancel_reason,
        cancel_sent=job._cancel_sent,
        submitted_at=job._submitted_at,
        history=list(job._history),  # type: ignore[arg-type]
        diagnostics=None
        if diag is None
        else DiagnosticsSnapshot(timings=diag.timings, metrics=diag.metrics, metadata=diag.metadata),
    )


def restore(sdk: Sdk, snap: JobSnapshot, lost_runs: Literal["raise", "fail"]) -> Job:
    from .job import Job

    spec = RunSpec(program=snap.program, target=snap.target, config=snap.config, tag=snap.tag)
    job = Job(sdk, spec, fetch_diagnostics=snap.fetch_diagnostics, job_id=snap.id)
    job._state = snap.state
    job._run = snap.run
    job._key = snap.idempotency_key
    job._submit_attempted = snap.submit_attempted
    job._ref = None if snap.ref is None else RunRef(snap.ref.task_id, dict(snap.ref.extra))
    job._vendor_status = snap.vendor_status
    job._cancel_reason = snap.cancel_reason
    job._cancel_sent = snap.cancel_sent
    job._submitted_at = snap.submitted_at
    job._history = [o.model_copy() for o in snap.history]
    for output in job._history:
        output._bind(job)
    if snap.state.is_terminal:
        job._output = job._history[-1]
    if snap.diagnostics is not None:
        d = snap.diagnostics
        job._diagnostics = Diagnostics(timings=d.timings, metrics=d.metrics, metadata=d.metadata)
    ref = job._ref
    if ref is not None and snap.state.is_active and not sdk.backend.can_resume(ref):
        why = sdk.backend.describe_unresumable(ref)
        if lost_runs == "raise":
            raise JobNotResumableError(
                f"job {snap.id} was saved while {snap.state.value} (task {ref.task_id}) and cannot "
                f"be resumed: {why}. Load it with lost_runs='fail' to keep its history and run "
                "it again."
            )
        job._end_locally(
            JobError(
                message=f"the run was lost: {why}",
                code="LOST",
                **job._output_fields(),
            )
        )
    return job


# ---------------------------------------------------------------------------------- save
async def save_jobs(
    sdk: Sdk,
    jobs: list[Job],
    path: str | Path,
    *,
    composite: bool,
    composite_id: str | None = None,
) -> Path:
    """Snapshot ``jobs`` now (on the event loop, so the picture is consistent) and write them.

    A job not yet submitted gets its run's idempotency key first (DESIGN.md: made while CREATED,
    saved with the job), so a process killed mid-submission is followed by one that resends the
    same key — the vendor's same run — rather than a second run. A key that cannot be had now
    (the vendor unreachable) is left to the submission; the save goes ahead.
    """
    target = _as_path(path)

    def keyless(job: Job) -> bool:
        return job._state is JobState.CREATED and job._key is None and job._submitting is None

    waiting = [job for job in jobs if keyless(job)]
    if waiting:
        try:  # one reservation request where the vendor has one (OQC)
            keys = await sdk.backend.new_idempotency_keys([job._spec for job in waiting])
        except SdkError as exc:
            logger.debug("no idempotency keys for %d job(s) before saving them: %s", len(waiting), exc)
        else:
            for job, key in zip(waiting, keys, strict=True):
                if keyless(job):  # a submission that started meanwhile made its own key
                    job._key = key
    document = JobFile(
        format=FORMAT,
        schema_version=SCHEMA_VERSION,
        saved_at=datetime.now(UTC),
        sdk_version=_sdk_version(),
        backend=sdk.backend.identity(),
        composite_id=composite_id if composite else None,
        jobs=[snapshot(job) for job in jobs],
    )
    if any(_circuit_runs(snap) or is_circuit(snap.program) for snap in document.jobs):
        await qiskit_imported()  # a circuit is written as OpenQASM 3 by the writer's thread

    def write() -> Path:
        return _write_atomically(target, _circuits_as_text(document))

    return await anyio.to_thread.run_sync(write)


def _circuits_as_text(document: JobFile) -> JobFile:
    """``document`` with every circuit (a job's program, its history's) written as OpenQASM 3 and
    flagged; each circuit object written once. A file never holds anything but text (no pickle):
    nothing in it is executed on loading."""
    written: dict[int, str] = {}

    def text(snap: JobSnapshot, circuit: Any) -> str:
        if id(circuit) not in written:
            try:
                written[id(circuit)] = as_qasm3(circuit)
            except JobValidationError as exc:  # nothing is written: the old file (if any) stays
                raise PersistenceError(f"job {snap.id} cannot be saved: {exc}") from None
        return written[id(circuit)]

    jobs = []
    for snap in document.jobs:
        runs = _circuit_runs(snap)
        if not runs and not is_circuit(snap.program):
            jobs.append(snap)
            continue
        history = [
            o.model_copy(update={"program": text(snap, o.program)}) if is_circuit(o.program) else o
            for o in snap.history
        ]
        update: dict[str, Any] = {"history": history, "circuit_runs": runs}
        if is_circuit(snap.program):
            update |= {"program": text(snap, snap.program), "program_is_circuit": True}
        jobs.append(snap.model_copy(update=update))
    return document.model_copy(update={"jobs": jobs})


def _circuit_runs(snap: JobSnapshot) -> list[int]:
    """The runs in ``snap``'s history whose program is a circuit (before it is saved)."""
    return [o.run for o in snap.history if is_circuit(o.program)]


def _text_as_circuits(document: JobFile, path: Path) -> JobFile:
    """The flagged programs of a read ``document`` parsed back into circuits (each text once)."""
    parsed: dict[str, Any] = {}

    def circuit(snap: JobSnapshot, text: Any) -> Any:
        if not isinstance(text, str):
            raise CorruptJobFileError(f"{path}: job {snap.id} has a circuit that is not OpenQASM text")
        if text not in parsed:
            try:
                parsed[text] = load_qasm3(text)
            except Exception as exc:
                raise CorruptJobFileError(
                    f"{path}: job {snap.id}'s circuit does not parse as OpenQASM 3: {error_message(exc)}"
                ) from exc
        return parsed[text]

    jobs = []
    for snap in document.jobs:
        if not _flags_circuits(snap):
            jobs.append(snap)
            continue
        runs = set(snap.circuit_runs)
        history = [
            o.model_copy(update={"program": circuit(snap, o.program)}) if o.run in runs else o
            for o in snap.history
        ]
        update: dict[str, Any] = {"history": history}
        if snap.program_is_circuit:
            update["program"] = circuit(snap, snap.program)
        jobs.append(snap.model_copy(update=update))
    return document.model_copy(update={"jobs": jobs})


def _flags_circuits(snap: JobSnapshot) -> bool:
    """Whether a read ``snap`` marks any of its programs as a circuit."""
    return snap.program_is_circuit or bool(snap.circuit_runs)


def _as_path(path: str | Path) -> Path:
    if isinstance(path, str | os.PathLike):
        return Path(path).expanduser()
    raise TypeError(f"a job file path is a str or a path, not {type(path).__name__}")


def _write_atomically(target: Path, document: JobFile) -> Path:
    data = document.model_dump_json(indent=1).encode()
    directory = target.parent
    if not directory.is_dir():
        raise PersistenceError(f"cannot save to {target}: directory {directory} does not exist")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except PermissionError as exc:
        raise PersistenceError(f"cannot save to {target}: directory {directory} is not writable") from exc
    except OSError as exc:  # read-only file system, no space, too many open files ...
        raise PersistenceError(f"cannot save to {target}: {exc.strerror or exc}") from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise PersistenceError(f"cannot save to {target}: {exc.strerror or exc}") from exc
    with contextlib.suppress(OSError):  # not every file system lets a directory be fsynced
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return target


# ---------------------------------------------------------------------------------- load
def read_document(path: Path) -> JobFile:
    """Read, migrate and validate a job file (blocking: call it from a worker thread)."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CorruptJobFileError(
                f"{path} is {size} bytes, over the {MAX_FILE_BYTES}-byte limit for job files"
            )
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise JobFileNotFoundError(f"no job file at {path}") from exc
    except IsADirectoryError as exc:
        raise PersistenceError(f"{path} is a directory, not a job file") from exc
    except PermissionError as exc:
        raise PersistenceError(f"{path} cannot be read: permission denied") from exc
    except PersistenceError:
        raise
    except OSError as exc:  # not a directory on the way, name too long, I/O error ...
        raise PersistenceError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptJobFileError(f"{path} is not valid JSON (truncated or damaged?): {exc}") from exc
    except RecursionError as exc:  # hostile nesting: a typed error, not a crash
        raise CorruptJobFileError(f"{path} is not a valid job file: JSON nested too deeply") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ForeignJobFileError(f"{path} is not an oqc-style-sdk job file")
    found = data.get("schema_version")
    if isinstance(found, bool) or not isinstance(found, int) or found < 1:
        raise CorruptJobFileError(f"{path} has no valid schema_version")
    if found > SCHEMA_VERSION:
        raise UnsupportedSchemaError(
            f"{path} was written with job-file schema {found}, newer than the {SCHEMA_VERSION} "
            "this version of oqc-style-sdk reads: upgrade oqc-style-sdk to load it"
        )
    while found < SCHEMA_VERSION:  # pragma: no cover - no older schema exists yet
        data = MIGRATIONS[found](data)
        found = data["schema_version"]
    try:
        return JobFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_input=False)[:3]
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in first)
        raise CorruptJobFileError(f"{path} is not a valid job file: {where}") from exc


async def load_jobs(
    sdk: Sdk, path: str | Path, *, lost_runs: Literal["raise", "fail"] = "raise"
) -> Job | CompositeJob:
    """Read ``path`` and attach its job(s) to ``sdk``."""
    from .composite import CompositeJob

    if lost_runs not in ("raise", "fail"):
        raise ValueError("lost_runs is 'raise' or 'fail'")
    source = _as_path(path)
    document = await anyio.to_thread.run_sync(read_document, source)
    mine = sdk.backend.identity()
    if document.backend != mine:
        raise ForeignJobFileError(
            f"{source} was saved from backend {_describe(document.backend)}; this Sdk is "
            f"{_describe(mine)}. Load it with an Sdk for the same backend and endpoint."
        )
    if any(_flags_circuits(snap) for snap in document.jobs):
        await qiskit_imported()  # parsing is CPU work, in a worker thread once qiskit is imported
        document = await anyio.to_thread.run_sync(_text_as_circuits, document, source)
    jobs = [restore(sdk, snap, lost_runs) for snap in document.jobs]
    if document.composite_id is None:
        return jobs[0]
    return CompositeJob(sdk, jobs, composite_id=document.composite_id)


def _describe(identity: dict[str, str]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(identity.items()))
