"""What a workflow run gives back: a record per executed step, and the run's outputs and warnings."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ActionKind", "StepRecord", "WorkflowResult"]

ActionKind = Literal["next", "end", "goto", "retry", "fail"]


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One executed step: what was sent, what came back, and where the workflow went next."""

    step_id: str
    operation_id: str
    method: str
    #: Path and query as sent (secrets shown as ``***``), relative to the server URL.
    target: str
    status: int | None
    succeeded: bool
    #: ``next`` (the following step), ``end``, ``goto``, ``retry`` or ``fail``.
    action: ActionKind
    #: The name of the onSuccess/onFailure action that applied, if one did.
    action_name: str | None
    #: The step the workflow went to next (``None`` when it ended).
    next_step: str | None
    #: Seconds waited before this step was sent (loop pacing, retry delay).
    waited_s: float
    started_at: float
    elapsed_s: float
    outputs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def branch(self) -> str:
        """The branch taken, for people: ``cancellable → cancelJob``, ``alreadyTerminal → end`` ..."""
        label = f"{self.action_name} → " if self.action_name else ""
        if self.action == "fail":
            return "failed"
        if self.action == "retry":
            return f"{label}retry"
        if self.next_step is None:
            return f"{label}end"
        if self.action == "next":
            return f"next → {self.next_step}"
        return f"{label}{self.next_step}"


@dataclass(slots=True)
class WorkflowResult:
    """The outcome of a run: the workflow's outputs, every step executed, and the warnings."""

    workflow_id: str
    outputs: dict[str, Any] = field(default_factory=dict)
    steps: list[StepRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    requests_sent: int = 0
    elapsed_s: float = 0.0

    @property
    def trace(self) -> list[tuple[str, str]]:
        """``(step_id, branch)`` for each executed step."""
        return [(record.step_id, record.branch) for record in self.steps]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (secrets as ``***``)."""

        def plain(value: Any) -> Any:
            return jsonlib.loads(jsonlib.dumps(value, default=str))

        return {
            "workflowId": self.workflow_id,
            "outputs": plain(self.outputs),
            "steps": [
                {
                    "stepId": r.step_id,
                    "operationId": r.operation_id,
                    "request": f"{r.method} {r.target}",
                    "status": r.status,
                    "succeeded": r.succeeded,
                    "branch": r.branch,
                    "waitedS": round(r.waited_s, 3),
                    "elapsedS": round(r.elapsed_s, 3),
                    "outputs": plain(dict(r.outputs)),
                }
                for r in self.steps
            ],
            "warnings": list(self.warnings),
            "requestsSent": self.requests_sent,
            "elapsedS": round(self.elapsed_s, 3),
        }
