"""IBM Quantum job creations whose outcome is not known, and how they are reconciled.

IBM takes no idempotency key: a ``POST /jobs`` whose answer was lost (the connection closed, the
request timed out, a 5xx, a 200 whose body could not be read) may have created a job. Each creation
is tagged ``oqcs-submission:<key>`` (the run's idempotency key), and before a key creates anything
again the job list is asked for that tag (``GET /jobs?tags=…``): a job found is adopted, never made
twice.

:class:`LostCreations` is the one record of such keys. A key enters it when its creation is sent
and leaves it only when an answer was read (the job's id, or an outright refusal), so a 200 whose
body cannot be parsed stays in it. A job loaded from a file whose submission may have been sent
enters it through :meth:`~oqc_style_sdk.backends.base.Backend.recall_submission`: the lookup is the
same in the Sdk that sent it and in a new process after ``load()``.

A creation the client gave up on may still be processed by IBM: until it must have landed (the
request timeout plus a grace, after it was sent), a lookup that finds nothing looks again once,
then the creation is sent again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import anyio

from ..exceptions import ProtocolError
from .base import RunRef, parse_moment

if TYPE_CHECKING:
    from .ibm_quantum import IbmQuantumBackend

__all__ = ["SUBMISSION_TAG_PREFIX", "LostCreations"]

logger = logging.getLogger("oqc_style_sdk.backends.ibm_quantum")

#: The job tag that names a submission, so that one whose answer was lost can be found again.
SUBMISSION_TAG_PREFIX: Final = "oqcs-submission:"
#: How far before a creation was sent the job list is searched from (clocks differ).
LOOKUP_SLACK: Final = timedelta(hours=1)


class LostCreations:
    """The creations, by idempotency key, that may have made a job whose id was never read."""

    __slots__ = ("_last_sent", "_sent_at", "landing_s")

    def __init__(self, landing_s: float) -> None:
        #: When each key's creation was first sent (wall clock; None: not known, from an old file).
        self._sent_at: dict[str, datetime | None] = {}
        #: When (anyio clock) each creation that got no answer at all was last sent.
        self._last_sent: dict[str, float] = {}
        #: How long after it is sent a creation may still land at IBM.
        self.landing_s = landing_s

    def __len__(self) -> int:
        return len(self._sent_at)

    def recall(self, key: str, sent_at: datetime | None) -> None:
        """A creation with ``key`` was sent (last at ``sent_at``) by an earlier Sdk or process."""
        if key in self._sent_at:
            return
        self._sent_at[key] = sent_at
        if sent_at is not None:  # it may still be landing if it was sent a moment ago
            age = (datetime.now(UTC) - sent_at).total_seconds()
            if age < self.landing_s:
                self._last_sent[key] = anyio.current_time() - max(age, 0.0)

    def sending(self, key: str) -> datetime:
        """``key``'s creation is about to be sent: from now on it may make a job. Returns when."""
        now = datetime.now(UTC)
        self._sent_at.setdefault(key, now)
        self._last_sent[key] = anyio.current_time()
        return now

    def answered(self, key: str, *, settled: bool) -> None:
        """An answer to ``key``'s creation came back: it is no longer in flight. ``settled``: the
        answer says for sure what happened (the job's id was read, or it was refused outright)."""
        self._last_sent.pop(key, None)
        if settled:
            self._sent_at.pop(key, None)

    async def find(self, backend: IbmQuantumBackend, key: str) -> RunRef | None:
        """The job an earlier creation with ``key`` made, if IBM lists one (then ``key`` leaves the
        record); None if no creation with ``key`` is in doubt, or none made a job."""
        if key not in self._sent_at:
            return None
        sent_at = self._sent_at[key]
        found = await _lookup(backend, key, sent_at)
        last = self._last_sent.get(key)
        settle = 0.0 if last is None else last + self.landing_s - anyio.current_time()
        if found is None and settle > 0:
            # Not listed yet, but the creation may still be in flight at IBM: look again once it
            # must have landed (bounded by the caller's deadline), then it is sent again.
            await anyio.sleep(settle)
            found = await _lookup(backend, key, sent_at)
        if found is not None:
            self._sent_at.pop(key, None)
            self._last_sent.pop(key, None)
        return found


async def _lookup(backend: IbmQuantumBackend, key: str, sent_at: datetime | None) -> RunRef | None:
    """``GET /jobs?tags=oqcs-submission:<key>``: the job that carries the submission's tag."""
    params: dict[str, str | int] = {
        "tags": SUBMISSION_TAG_PREFIX + key,
        "exclude_params": "true",
        "limit": 1,
    }
    if sent_at is not None:
        since = sent_at - LOOKUP_SLACK
        params["created_after"] = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = (await backend.http.get("/jobs", params=params)).json()
    jobs = body.get("jobs") if isinstance(body, dict) else None
    if not isinstance(jobs, list):
        raise ProtocolError("IBM Quantum answered the job list without a 'jobs' list")
    if not jobs:
        logger.info("IBM Quantum has no job from the unanswered submission %s: sending it again", key)
        return None
    job: Any = jobs[0]
    if not isinstance(job, dict) or not isinstance(job.get("id"), str):
        raise ProtocolError("IBM Quantum listed a job without an id")
    logger.info("IBM Quantum job %s was created by an unanswered submission; not sending again", job["id"])
    created = parse_moment(job.get("created")) or sent_at or datetime.now(UTC)
    device = job.get("backend")
    return backend._ref(job["id"], device if isinstance(device, str) else "", created)
