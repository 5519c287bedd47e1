"""Job files: versioned JSON snapshots, written atomically, validated on the way back in.

A file holds one job, or the children of one composite, with everything needed to carry on from
another process: the spec, the current run's vendor reference and idempotency key, and the whole
history. It never holds a secret (backends record only their name and endpoint) and never holds
code: loading parses JSON into pydantic models, nothing else.

Writing goes to a temporary file beside the target (created owner-only, under a short name of its
own, so any target name the file system takes can be saved to), is flushed and fsynced, then renamed
over the target, and the directory is fsynced: a reader sees the old file or the new one, never half
of one. Reading takes regular files only (a FIFO, a device, a directory, or a link to one, is refused
before anything is read), in pieces counted as they come, up to :data:`MAX_FILE_BYTES`; a caller
that gives up is let go at once and the read stops at its next piece. All file I/O runs in a worker
thread.

This module works on data only: ``Job._snapshot()`` makes a :class:`JobSnapshot`,
``Job._restored()`` makes a job of one, and ``Sdk.load`` builds the job or composite from what
:func:`read` returns. Nothing here touches a job.

Versions: ``SCHEMA_VERSION`` is what this SDK writes. Older files are brought forward by the
functions in ``MIGRATIONS`` (version → its successor) before validation; newer ones are refused with
:class:`UnsupportedSchemaError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import anyio.from_thread  # used in the thread that reads a file: imported here, not on the loop
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ._text import unencodable
from .backends._qiskit import (
    as_qasm3,
    error_message,
    in_qiskit_thread,
    is_circuit,
    load_qasm3,
    qiskit_imported,
)
from .exceptions import (
    CorruptJobFileError,
    ForeignJobFileError,
    JobFileNotFoundError,
    JobValidationError,
    PersistenceError,
    UnsupportedSchemaError,
)
from .job_output import JobCancellation, JobError, JobResult
from .state import JobState

__all__ = [
    "FORMAT",
    "MAX_FILE_BYTES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "JobFile",
    "JobSnapshot",
    "read",
    "write",
]

FORMAT: Literal["oqc-style-sdk/job-file"] = "oqc-style-sdk/job-file"
SCHEMA_VERSION: Literal[1] = 1
#: Files larger than this are refused before they are read (a composite of 10,000 jobs is ~30 MB).
MAX_FILE_BYTES = 256 * 1024 * 1024

#: ``MIGRATIONS[n]`` turns a version-``n`` document into a version ``n + 1`` one.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}

Output = Annotated[JobResult | JobError | JobCancellation, Field(discriminator="kind")]


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
    #: When a request of the run's submission was last sent (or, for one in flight, the save):
    #: a vendor that takes no key (IBM) looks the run up from then. Written only when known.
    submit_attempted_at: datetime | None = Field(default=None, exclude_if=lambda moment: moment is None)
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


# ---------------------------------------------------------------------------------- save
async def write(
    path: str | Path,
    identity: dict[str, str],
    snapshots: list[JobSnapshot],
    *,
    composite_id: str | None = None,
) -> Path:
    """Write ``snapshots`` (one job's, or a composite's children's) to ``path`` as one file.

    ``identity`` is the backend's (its name and endpoint, never a secret); ``composite_id`` is
    None for a single job. The snapshots are taken by the caller (``Job._snapshot``), on the event
    loop, so the picture is consistent; the file is written in a worker thread.
    """
    target = _as_path(path)
    document = JobFile(
        format=FORMAT,
        schema_version=SCHEMA_VERSION,
        saved_at=datetime.now(UTC),
        sdk_version=_sdk_version(),
        backend=identity,
        composite_id=composite_id,
        jobs=snapshots,
    )
    if any(_circuit_runs(snap) or is_circuit(snap.program) for snap in document.jobs):
        await qiskit_imported()  # a circuit is written as OpenQASM 3 by the writer's thread

    def convert_and_write() -> Path:
        return _write_atomically(target, _circuits_as_text(document))

    return await anyio.to_thread.run_sync(convert_and_write)


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


#: The temporary file beside the target: a short fixed-length name whatever the target's (a target
#: name of up to NAME_MAX bytes still leaves room for it), hidden, and marked as this SDK's.
_TMP_PREFIX = ".oqcs-"
_TMP_SUFFIX = ".tmp"


def _write_atomically(target: Path, document: JobFile) -> Path:
    data = document.model_dump_json(indent=1).encode()
    directory = target.parent
    if not directory.is_dir():
        raise PersistenceError(f"cannot save to {target}: directory {directory} does not exist")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=_TMP_SUFFIX, dir=directory)
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
#: A job file is read in pieces of this size, counted as they come (a size the file system reports
#: is not trusted); between pieces a caller that gave up stops the read.
_CHUNK_BYTES = 1024 * 1024
#: Open flags: never block on opening (a FIFO swapped in after the check), never become a terminal's
#: controlling process, never leak into a child.
_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
)
#: A JSON escape of a UTF-16 surrogate (paired ones make one character when parsed; lone ones stay).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}")
_NOT_REGULAR = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(path: Path, mode: int) -> PersistenceError:
    kind = next((name for test, name in _NOT_REGULAR if test(mode)), "not a regular file")
    via = " (through a symbolic link)" if path.is_symlink() else ""
    return PersistenceError(f"{path} is {kind}{via}, not a job file: job files are regular files")


def _too_large(path: Path, size: int | None = None) -> CorruptJobFileError:
    found = f"{size} bytes" if size is not None else "larger than it said when it was opened"
    return CorruptJobFileError(f"{path} is {found}, over the {MAX_FILE_BYTES}-byte limit for job files")


def _read_bounded(path: Path, check_cancelled: Callable[[], None]) -> bytes:
    """The bytes of the regular file at ``path`` (a symbolic link to one is followed), at most
    :data:`MAX_FILE_BYTES` of them: anything else is refused before a byte is read, and a file that
    holds more than it said is refused once the limit is passed, whatever it grows to."""
    found = os.stat(path)  # before opening: opening a device or a FIFO may itself have effects
    if not stat.S_ISREG(found.st_mode):
        raise _not_regular(path, found.st_mode)
    if found.st_size > MAX_FILE_BYTES:
        raise _too_large(path, found.st_size)
    fd = os.open(path, _OPEN_FLAGS)
    try:
        opened = os.fstat(fd)  # what was opened, not what the name pointed at a moment ago
        if not stat.S_ISREG(opened.st_mode):
            raise _not_regular(path, opened.st_mode)
        pieces: list[bytes] = []
        total = 0
        while True:
            check_cancelled()
            piece = os.read(fd, min(_CHUNK_BYTES, MAX_FILE_BYTES + 1 - total))
            if not piece:
                return b"".join(pieces)
            total += len(piece)
            if total > MAX_FILE_BYTES:
                raise _too_large(path)
            pieces.append(piece)
    finally:
        os.close(fd)


def read_document(path: Path, check_cancelled: Callable[[], None] = lambda: None) -> JobFile:
    """Read, migrate and validate a job file (blocking: call it from a worker thread).

    ``check_cancelled`` is called between the pieces read, and raises to stop the read (in a worker
    thread: ``anyio.from_thread.check_cancelled``).
    """
    try:
        raw = _read_bounded(path, check_cancelled)
    except FileNotFoundError as exc:
        raise JobFileNotFoundError(f"no job file at {path}") from exc
    except IsADirectoryError as exc:
        raise PersistenceError(f"{path} is a directory, not a job file") from exc
    except PermissionError as exc:
        raise PersistenceError(f"{path} cannot be read: permission denied") from exc
    except PersistenceError:
        raise
    except OSError as exc:  # not a directory on the way, name too long, I/O error, a link loop ...
        raise PersistenceError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptJobFileError(f"{path} is not valid JSON (truncated or damaged?): {exc}") from exc
    except RecursionError as exc:  # hostile nesting: a typed error, not a crash
        raise CorruptJobFileError(f"{path} is not a valid job file: JSON nested too deeply") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ForeignJobFileError(f"{path} is not an oqc-style-sdk job file")
    if _SURROGATE_ESCAPE.search(raw):  # only a \u escape can bring a lone surrogate into JSON text
        where = unencodable(data.get("jobs"), "jobs")
        if where is not None:
            raise CorruptJobFileError(
                f"{path} is not a valid job file: {where}: text that cannot be encoded as UTF-8"
            ) from JobValidationError(where)
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


async def read(path: str | Path, *, identity: dict[str, str]) -> JobFile:
    """Read, migrate and validate the job file at ``path``, saved from the backend ``identity``.

    A file of another backend or endpoint is refused (:class:`ForeignJobFileError`): what a file
    says is data, and never decides where this Sdk's credentials go.
    """
    source = _as_path(path)
    # A caller that gives up (a deadline, a cancel) is not held by the read: the worker thread is
    # let go at once, and stops at its next piece.
    document = await anyio.to_thread.run_sync(
        read_document, source, anyio.from_thread.check_cancelled, abandon_on_cancel=True
    )
    if document.backend != identity:
        raise ForeignJobFileError(
            f"{source} was saved from backend {_describe(document.backend)}; this Sdk is "
            f"{_describe(identity)}. Load it with an Sdk for the same backend and endpoint."
        )
    if any(_flags_circuits(snap) for snap in document.jobs):
        document = await in_qiskit_thread(_text_as_circuits, document, source)
    return document


def _describe(identity: dict[str, str]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(identity.items()))
