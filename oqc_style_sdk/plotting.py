"""A counts histogram, behind the optional ``plot`` extra (``pip install 'oqc-style-sdk[plot]'``).

```python
from oqc_style_sdk.plotting import plot_counts

ax = plot_counts(job)              # a Job, a JobResult, or counts: {'c': {'00': 507, '11': 493}}
```

matplotlib is imported only when a histogram is drawn; without it, :func:`plot_counts` raises an
``ImportError`` that says which extra to install.
"""

from __future__ import annotations

from typing import Any

from .exceptions import JobStateError
from .job_output import JobResult

__all__ = ["counts_of", "plot_counts"]

INSTALL_HINT = "plot_counts needs matplotlib: pip install 'oqc-style-sdk[plot]'"


def counts_of(source: Any, register: str | None = None) -> dict[str, int]:
    """The counts of one classical register of a ``Job``, a ``JobResult`` or a counts dict.

    ``register=None`` takes the only register (or, with several, the first).
    """
    data: Any = source
    if hasattr(source, "history") and hasattr(source, "result"):  # a Job
        data = source.result
        if data is None:
            raise JobStateError(f"{source!r} has no result to plot")
    if isinstance(data, JobResult):
        data = data.data
    if not isinstance(data, dict) or not data:
        raise ValueError(f"not counts: {data!r}")
    first = next(iter(data.values()))
    if isinstance(first, dict):  # keyed by register
        if register is None:
            register = next(iter(data))
        if register not in data:
            raise ValueError(f"no register {register!r}; registers: {', '.join(map(str, data))}")
        data = data[register]
    return {str(k): int(v) for k, v in data.items()}


def plot_counts(source: Any, register: str | None = None, *, ax: Any = None, title: str | None = None) -> Any:
    """Draw a bar chart of the counts (bitstrings in order); return the matplotlib ``Axes``."""
    counts = counts_of(source, register)
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    if ax is None:
        _, ax = plt.subplots()
    keys = sorted(counts)
    ax.bar(keys, [counts[k] for k in keys])
    ax.set_xlabel("outcome")
    ax.set_ylabel("counts")
    if title is not None:
        ax.set_title(title)
    return ax
