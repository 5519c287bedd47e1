"""Finding Databricks runs made elsewhere: ``runs/get`` and ``runs/list`` turned into found runs.

``runs/list`` pages (``limit`` at most 25, ``page_token``) newest first by start time; it takes
``active_only``/``completed_only`` and ``start_time_from`` (epoch ms), which the listing uses for
``state`` and ``since``. Databricks runs carry no tag, so a listing cannot filter by one. A run's
spec is rebuilt from what ``runs/get`` (or ``expand_tasks=true``) says: a one-time run's name and
task settings, or an existing job's id and parameters, so ``execute()`` can run it again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from ..exceptions import ProtocolError
from ..state import JobState
from .base import FoundRun, Observation, RunQuery, RunRef, RunSpec

if TYPE_CHECKING:
    from .databricks import DatabricksBackend

__all__ = ["found_run", "list_runs"]

#: What a run's task says about its run rather than its settings (``RunTask`` beyond ``SubmitTask``).
_RUN_ONLY: Final = frozenset(
    {
        "run_id",
        "state",
        "status",
        "run_page_url",
        "attempt_number",
        "start_time",
        "end_time",
        "setup_duration",
        "execution_duration",
        "cleanup_duration",
        "queue_duration",
        "run_duration",
        "cluster_instance",
        "resolved_values",
        "git_source",
    }
)
_ACTIVE: Final = frozenset({JobState.CREATED, JobState.SUBMITTED, JobState.RUNNING})
_ENDED: Final = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
#: The most runs one runs/list page holds.
PAGE_MAX: Final = 25


def _program(run: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(program, why unknown) of a listed or read run."""
    job_id = run.get("job_id")
    if run.get("run_type") in ("JOB_RUN", "WORKFLOW_RUN") and isinstance(job_id, int):
        program: dict[str, Any] = {"job_id": job_id}
        params = run.get("job_parameters")
        if isinstance(params, list) and params:
            program["job_parameters"] = {
                str(p["name"]): str(p.get("value", p.get("default", "")))
                for p in params
                if isinstance(p, dict) and "name" in p
            }
        return program, None
    tasks = run.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        return None, "Databricks did not list the run's tasks"
    settings = [
        {k: v for k, v in task.items() if k not in _RUN_ONLY} for task in tasks if isinstance(task, dict)
    ]
    program = {"tasks": settings}
    if isinstance(run.get("run_name"), str):
        program["run_name"] = run["run_name"]
    return program, None


def found_run(run: Mapping[str, Any], observation: Observation) -> FoundRun:
    run_id = run.get("run_id")
    if isinstance(run_id, bool) or not isinstance(run_id, int):
        raise ProtocolError("Azure Databricks described a run without a run_id")
    start = run.get("start_time")
    created = (
        datetime.fromtimestamp(start / 1000, UTC)
        if isinstance(start, int) and not isinstance(start, bool) and start > 0
        else None
    )
    program, unknown = _program(run)
    kind = "run_now" if program is not None and "job_id" in program else "submit"
    return FoundRun(
        ref=RunRef(task_id=str(run_id), extra={"kind": kind}),
        observation=observation,
        spec=RunSpec(program=program, target="workspace", config={}, tag=None),
        created_at=created,
        unknown_program=unknown,
    )


async def list_runs(
    backend: DatabricksBackend,
    query: RunQuery,
    observe: Callable[[str, dict[str, Any]], Observation],
) -> AsyncIterator[FoundRun]:
    """Pages of ``runs/list?expand_tasks=true`` (newest first), each fetched when the last is used."""
    params: dict[str, str | int] = {"limit": min(query.page_size, PAGE_MAX), "expand_tasks": "true"}
    if query.states is not None and query.states <= _ACTIVE:
        params["active_only"] = "true"
    elif query.states is not None and query.states <= _ENDED:
        params["completed_only"] = "true"
    if query.since is not None:
        params["start_time_from"] = int(query.since.timestamp() * 1000)
    while True:
        body = (await backend._get("runs/list", params)).json()
        if not isinstance(body, dict):
            raise ProtocolError("Azure Databricks answered runs/list without an object")
        runs = body.get("runs") or []
        if not isinstance(runs, list):
            raise ProtocolError("Azure Databricks answered runs/list with 'runs' that is not a list")
        for run in runs:
            if isinstance(run, dict) and isinstance(run.get("run_id"), int):
                yield found_run(run, observe(str(run["run_id"]), run))
        token = body.get("next_page_token")
        if not isinstance(token, str) or not token or body.get("has_more") is False:
            return
        if token == params.get("page_token"):  # the vendor's answer decides nothing: no endless loop
            raise ProtocolError("Azure Databricks answered runs/list with the same page token again")
        params["page_token"] = token
