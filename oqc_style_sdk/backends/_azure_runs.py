"""Finding Azure Quantum jobs made elsewhere: ``GET {ws}/jobs/{id}`` and the OData job list.

The list (``GET {ws}/jobs?filter&orderby&top``) pages by ``nextLink``, followed only back to the
workspace endpoint (it carries the credentials). ``target``, ``since`` and ``state`` become an OData
``filter`` (``Target eq``, ``CreationTime ge``, ``Status eq ... or ...``) ordered ``CreationTime
desc``; the tag is read from each job's ``tags``. A job found by id has its program read back from
its input blob where that is OpenQASM (Quantinuum's); IonQ's input is IonQ's circuit JSON, not the
OpenQASM it was made from, so its re-run says so. A listing reads no blob (``sdk.job(id)`` does).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC
from typing import TYPE_CHECKING, Any, Final

from ..exceptions import JobValidationError, ProtocolError
from .base import FoundRun, Observation, RunQuery, RunRef, RunSpec

if TYPE_CHECKING:
    from .azure_quantum import AzureQuantumBackend, _JobDetails

__all__ = ["check_job_id", "find_run", "list_runs"]

#: Input formats whose blob is the OpenQASM text itself.
_QASM_INPUTS: Final = frozenset({"honeywell.openqasm.v1", "quantinuum.openqasm.v1"})


def check_job_id(task_id: str, pattern: Any) -> None:
    if not isinstance(task_id, str) or not pattern.match(task_id):
        raise JobValidationError(f"{task_id!r} is not an Azure Quantum job id (a GUID)")


def _found(details: _JobDetails, observation: Observation, program: str | None, why: str | None) -> FoundRun:
    extra: Mapping[str, Any] = details.model_extra or {}
    params = details.input_params or {}
    config: dict[str, Any] = {}
    shots = params.get("shots", params.get("count"))
    if isinstance(shots, int) and not isinstance(shots, bool):
        config["shots"] = shots
    tags = extra.get("tags")
    tag = tags[0] if isinstance(tags, list) and tags and isinstance(tags[0], str) else None
    from .azure_quantum import _parse_time

    provider = (details.provider_id or "").lower()
    return FoundRun(
        ref=RunRef(task_id=details.id.lower(), extra={"provider": provider, "target": details.target or ""}),
        observation=observation,
        spec=RunSpec(program=program, target=details.target, config=config, tag=tag),
        created_at=_parse_time(details.creation_time),
        unknown_program=why,
    )


async def find_run(backend: AzureQuantumBackend, task_id: str) -> FoundRun:
    details = await backend._get_details(task_id.lower())
    extra: Mapping[str, Any] = details.model_extra or {}
    uri, fmt = extra.get("inputDataUri"), extra.get("inputDataFormat")
    program: str | None = None
    why: str | None = f"its input is {fmt or 'an unknown format'}, not OpenQASM"
    if isinstance(uri, str) and fmt in _QASM_INPUTS:
        raw = (await backend._blob.get(await backend._readable(uri))).body
        program, why = raw.decode("utf-8", "replace"), None
    return _found(details, backend._observe(details), program, why)


async def list_runs(
    backend: AzureQuantumBackend, query: RunQuery, statuses: Mapping[str, Any]
) -> AsyncIterator[FoundRun]:
    """The workspace's jobs, newest first, one ``nextLink`` page per request as they are used."""
    from .azure_quantum import _JobDetails, _model, _Paged

    clauses = []
    if query.target is not None:
        clauses.append(f"Target eq '{query.target.replace(chr(39), chr(39) * 2)}'")
    if query.since is not None:
        clauses.append(f"CreationTime ge {query.since.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}")
    if query.states is not None:
        names = sorted(name for name, state in statuses.items() if state in query.states)
        clauses.append("(" + " or ".join(f"Status eq '{name}'" for name in names) + ")")
    params: dict[str, str | int] = {"orderby": "CreationTime desc"}
    if clauses:
        params["filter"] = " and ".join(clauses)
    body = (await backend.http.get(f"{backend._ws}/jobs", params=backend._params(**params))).json()
    followed: set[str] = set()
    while True:
        page: _Paged = _model(_Paged, body, "the jobs list")
        for item in page.value:
            details: _JobDetails = _model(_JobDetails, item, "the jobs list")
            yield _found(details, backend._observe(details), None, "a listing does not read the input blob")
        if not page.next_link:
            return
        if page.next_link in followed:  # the vendor's answer decides nothing: no endless loop
            raise ProtocolError("Azure Quantum sent a nextLink it had sent before; it was not followed")
        followed.add(page.next_link)
        body = (await backend.http.get(backend._same_origin(page.next_link))).json()
