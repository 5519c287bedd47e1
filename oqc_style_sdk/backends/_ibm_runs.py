"""Finding IBM Quantum jobs made elsewhere: ``GET /jobs/{id}`` and ``GET /jobs`` as found runs.

The job list pages by ``limit``/``offset`` (newest first with ``sort=DESC``) and filters at IBM by
``backend`` (our target), ``created_after`` (``since``), ``tags`` (our tag) and ``pending``
(``true``: queued or running; ``false``: ended). A job's ``params`` give its program back (the
sampler's first PUB, OpenQASM 3) and its shots (``options.default_shots``), so ``execute()`` can run
it again; a job whose params are not a sampler of one OpenQASM circuit says so on re-run.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from ..exceptions import JobValidationError, ProtocolError
from ..state import JobState
from .base import FoundRun, RunQuery, RunSpec, parse_moment

if TYPE_CHECKING:
    from .ibm_quantum import IbmQuantumBackend

__all__ = ["check_job_id", "decode_qiskit_samples", "found_run", "list_runs"]

#: The largest decompressed array accepted from a Qiskit-encoded result (against zip bombs).
MAX_ARRAY_BYTES: Final = 50_000_000

_JOB_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ACTIVE: Final = frozenset({JobState.CREATED, JobState.SUBMITTED, JobState.RUNNING})
_ENDED: Final = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})


def check_job_id(task_id: str) -> None:
    if not isinstance(task_id, str) or not _JOB_ID.match(task_id):
        raise JobValidationError(f"{task_id!r} is not an IBM Quantum job id (letters and digits)")


def _spec(body: Mapping[str, Any], submission_prefix: str) -> tuple[RunSpec, str | None]:
    """(spec, why the program is unknown) from a job object's backend, tags and params."""
    tags = body.get("tags")
    listed = tags if isinstance(tags, list) else []
    tag = next((t for t in listed if isinstance(t, str) and not t.startswith(submission_prefix)), None)
    target = body.get("backend") if isinstance(body.get("backend"), str) else None
    params = body.get("params")
    pubs = params.get("pubs") if isinstance(params, dict) else None
    program = None
    why: str | None = "IBM Quantum returned no sampler params for this job"
    if isinstance(pubs, list) and len(pubs) == 1 and isinstance(pubs[0], list) and pubs[0]:
        first = pubs[0][0]
        if isinstance(first, str) and len(pubs[0]) == 1:
            program, why = first, None
        else:
            why = "its PUB is not one OpenQASM circuit without parameter values"
    config: dict[str, Any] = {}
    options = dict(params.get("options") or {}) if isinstance(params, dict) else {}
    shots = options.pop("default_shots", None)
    if isinstance(shots, int) and not isinstance(shots, bool):
        config["shots"] = shots
    if options:
        config["options"] = options
    return RunSpec(program=program, target=target, config=config, tag=tag), why


def found_run(backend: IbmQuantumBackend, body: Any, submission_prefix: str) -> FoundRun:
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise ProtocolError("IBM Quantum described a job without an id")
    spec, why = _spec(body, submission_prefix)
    created = parse_moment(body.get("created"))
    return FoundRun(
        ref=backend._ref(body["id"], spec.target or "", created or datetime.now(UTC)),
        observation=backend.observation(body),
        spec=spec,
        created_at=created,
        unknown_program=why,
    )


async def list_runs(
    backend: IbmQuantumBackend, query: RunQuery, page_limit: int, submission_prefix: str
) -> AsyncIterator[FoundRun]:
    """``GET /jobs?sort=DESC&limit&offset`` page by page, each fetched when the last is used."""
    limit = min(query.page_size, page_limit)
    params: dict[str, str | int] = {"sort": "DESC", "limit": limit, "offset": 0}
    if query.target is not None:
        params["backend"] = query.target
    if query.tag is not None:
        params["tags"] = query.tag
    if query.since is not None:
        params["created_after"] = query.since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if query.states is not None and query.states <= _ACTIVE:
        params["pending"] = "true"
    elif query.states is not None and query.states <= _ENDED:
        params["pending"] = "false"
    while True:
        body = (await backend.http.get("/jobs", params=params)).json()
        jobs = body.get("jobs") if isinstance(body, dict) else None
        if not isinstance(jobs, list):
            raise ProtocolError("IBM Quantum answered the job list without a 'jobs' list")
        for item in jobs:
            yield found_run(backend, item, submission_prefix)
        offset = int(params["offset"]) + len(jobs)
        count = body.get("count")
        if len(jobs) < limit or (isinstance(count, int) and offset >= count):
            return
        params["offset"] = offset


def _ndarray(value: Any) -> Any:
    """An ``ndarray`` wrapper's array: base64 of a zlib-compressed ``.npy`` file, read without pickle."""
    import numpy as np

    if not isinstance(value, dict) or value.get("__type__") != "ndarray":
        raise ProtocolError("IBM Quantum sent a Qiskit-encoded BitArray without an ndarray")
    inner = value.get("__value__")
    if isinstance(inner, list):
        return np.asarray(inner, dtype=np.uint8)
    try:
        inflater = zlib.decompressobj()
        data = inflater.decompress(base64.standard_b64decode(str(inner).encode("ascii")), MAX_ARRAY_BYTES)
        if inflater.unconsumed_tail:
            raise ValueError(f"more than {MAX_ARRAY_BYTES:,} bytes")
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (binascii.Error, UnicodeEncodeError, zlib.error, ValueError) as exc:
        raise ProtocolError(f"IBM Quantum sent a Qiskit-encoded array this SDK cannot read ({exc})") from None


def decode_qiskit_samples(body: Any) -> dict[str, dict[str, int]]:
    """Counts per register of a Qiskit-encoded ``PrimitiveResult`` — what a job made by
    qiskit-ibm-runtime (``support_qiskit: true``) answers — from its first ``SamplerPubResult``:
    each ``BitArray`` is one row per shot, the bits packed big-endian."""
    try:
        pub = body["__value__"]["pub_results"][0]["__value__"]
        fields = pub["data"]["__value__"]["fields"]
    except (KeyError, IndexError, TypeError):
        raise ProtocolError(
            "IBM Quantum answered a Qiskit-encoded result without a sampler PUB result"
        ) from None
    if not isinstance(fields, dict):
        raise ProtocolError("IBM Quantum answered a Qiskit-encoded result whose data is not a DataBin")
    counts: dict[str, dict[str, int]] = {}
    for name, bits in fields.items():
        value = bits.get("__value__") if isinstance(bits, dict) and bits.get("__type__") == "BitArray" else {}
        width = value.get("num_bits") if isinstance(value, dict) else None
        if not isinstance(value, dict) or not isinstance(width, int) or isinstance(width, bool) or width < 0:
            raise ProtocolError(f"IBM Quantum's Qiskit-encoded register {name!r} is not a BitArray")
        array = _ndarray(value.get("array"))
        rows = array.reshape(-1, array.shape[-1] if array.ndim else 1)
        tally = Counter(int.from_bytes(row.tobytes(), "big") for row in rows)
        if any(sample >> width for sample in tally):
            raise ProtocolError(f"IBM Quantum sent a sample of {name!r} wider than {width} bits")
        counts[name] = dict(
            sorted((format(v, "b").zfill(width) if width else "", n) for v, n in tally.items())
        )
    return counts
