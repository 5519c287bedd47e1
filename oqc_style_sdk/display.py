"""Rich and HTML representations of jobs and outputs, for notebooks and terminals.

``Job``, ``CompositeJob`` and ``JobOutputProxy`` have ``_repr_html_`` (Jupyter shows a table: state,
target, history, counts) and ``__rich__`` (``rich.print(job)``, or the rich REPL). Their ``repr()`` is
unchanged. Every function here reads properties only: no I/O. ``rich`` is imported only when a rich
representation is asked for (``pip install 'oqc-style-sdk[rich]'``).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .job_output import JobCancellation, JobError, JobOutput, JobOutputProxy, JobPending, JobResult

if TYPE_CHECKING:
    from .composite import CompositeJob
    from .job import Job

__all__ = [
    "composite_html",
    "composite_rich",
    "counts_text",
    "job_html",
    "job_rich",
    "output_text",
    "outputs_html",
    "outputs_rich",
]

_MAX_ROWS = 50


def counts_text(data: Any, limit: int = 8) -> str:
    """``{'c': {'00': 507, '11': 493}}`` as ``c: 00:507 11:493`` (the most frequent first, clipped)."""
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        parts = []
        for register, counts in data.items():
            top = sorted(counts.items(), key=lambda kv: (-_num(kv[1]), str(kv[0])))
            shown = " ".join(f"{k}:{v}" for k, v in top[:limit])
            more = f" … {len(top) - limit} more" if len(top) > limit else ""
            parts.append(f"{register}: {shown}{more}")
        return "; ".join(parts)
    text = repr(data)
    return text if len(text) <= 80 else text[:79] + "…"


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def output_text(o: JobOutput) -> str:
    """One line saying what an output holds."""
    if isinstance(o, JobResult):
        return counts_text(o.data)
    if isinstance(o, JobError):
        return f"{o.code + ': ' if o.code else ''}{o.message}"
    if isinstance(o, JobCancellation):
        return o.reason or ""
    if isinstance(o, JobPending):
        return o.pending_state.value
    return ""


def _state_of(o: JobOutput) -> str:
    return o.pending_state.value if isinstance(o, JobPending) else o.state.value


def _rows(outputs: JobOutputProxy) -> list[tuple[str, ...]]:
    return [
        (
            str(o.run),
            _state_of(o),
            o.target or "",
            o.task_id or "",
            o.received.isoformat(timespec="seconds") if o.received else "",
            output_text(o),
        )
        for o in list(outputs)[:_MAX_ROWS]
    ]


_HEADERS = ("run", "state", "target", "task id", "received", "output")


def _table_html(rows: Sequence[tuple[str, ...]], headers: tuple[str, ...] = _HEADERS) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def outputs_html(outputs: JobOutputProxy) -> str:
    more = len(outputs) - _MAX_ROWS
    tail = f"<p>… {more} more</p>" if more > 0 else ""
    return f"<div><b>JobOutputProxy</b> ({len(outputs)} outputs){_table_html(_rows(outputs))}{tail}</div>"


def job_html(job: Job) -> str:
    facts = [
        ("state", job.state.value + (f" ({job.vendor_status})" if job.vendor_status else "")),
        ("backend", job.sdk.backend.name),
        ("target", job.target or ""),
        ("task id", job.task_id or ""),
        ("run", str(job.run)),
    ]
    if job.result is not None:
        facts.append(("counts", counts_text(job.result.data)))
    items = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    history = _table_html(_rows(job.history)) if len(job.history) else "<p>no run has ended yet</p>"
    return (
        f"<div><b>Job</b> <code>{html.escape(job.id)}</code><table>{items}</table>"
        f"<details open><summary>history ({len(job.history)})</summary>{history}</details></div>"
    )


def composite_html(composite: CompositeJob) -> str:
    done = sum(1 for child in composite if child.ended)
    summary = ", ".join(f"{n} {state.value}" for state, n in composite.summary().items())
    rows = [
        (str(i), child.id[:8], child.state.value, child.target or "", output_text(output))
        for i, (child, output) in enumerate(zip(composite, composite.outputs, strict=True))
        if i < _MAX_ROWS
    ]
    table = _table_html(rows, ("#", "job", "state", "target", "output"))
    return (
        f"<div><b>CompositeJob</b> <code>{html.escape(composite.id)}</code>: "
        f"{done}/{len(composite)} ended ({html.escape(summary)}), state {composite.state.value}{table}</div>"
    )


# ---------------------------------------------------------------------------------- rich
def _rich_table(title: str, rows: Sequence[tuple[str, ...]], headers: tuple[str, ...] = _HEADERS) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for h in headers:
        table.add_column(h)
    for row in rows:
        table.add_row(*row)
    return table


def outputs_rich(outputs: JobOutputProxy) -> Any:
    return _rich_table(f"JobOutputProxy ({len(outputs)} outputs)", _rows(outputs))


def job_rich(job: Job) -> Any:
    from rich.console import Group
    from rich.text import Text

    head = Text.assemble(
        ("Job ", "bold"),
        job.id[:8],
        "  ",
        (job.state.value, "bold"),
        f"  {job.sdk.backend.name}:{job.target}  run {job.run}  task {job.task_id or '-'}",
    )
    parts: list[Any] = [head]
    if job.result is not None:
        parts.append(Text(f"counts  {counts_text(job.result.data)}"))
    if len(job.history):
        parts.append(_rich_table(f"history ({len(job.history)})", _rows(job.history)))
    return Group(*parts)


def composite_rich(composite: CompositeJob) -> Any:
    done = sum(1 for child in composite if child.ended)
    rows = [
        (str(i), child.id[:8], child.state.value, child.target or "", output_text(output))
        for i, (child, output) in enumerate(zip(composite, composite.outputs, strict=True))
        if i < _MAX_ROWS
    ]
    title = f"CompositeJob {composite.id[:8]}: {done}/{len(composite)} ended, state {composite.state.value}"
    return _rich_table(title, rows, ("#", "job", "state", "target", "output"))
