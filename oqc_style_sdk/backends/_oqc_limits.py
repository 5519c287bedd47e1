"""OQC QCaaS's wire limits, as its own client (``qcaas_client`` 3.22) states them.

- **128 KiB per request.** The client refuses any POST whose body and headers add up to more than
  ``128 * 1024`` bytes (``OQCClient._post``: "Request size exceeds the 128KB limit"), and never splits
  a batch. So a task whose request would not fit is no task OQC takes, and a batch is sent in as many
  requests as it takes to keep each under the limit.
- **408, 409, 429 and 5xx mean "try again later"** (``ConnectionFailureException``: "issues
  communicating with the QCaaS ... Please try again later"; its transport retries them too). A 409
  in particular is no refusal: answering a resent submission, it may mean the task is already there.

This module holds those facts and the arithmetic on them; :mod:`oqc_style_sdk.backends.oqc` applies
them, and the OQC emulator (:mod:`oqc_style_sdk.testing.oqc`) enforces the size limit the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Final

from .._http import RetryPolicy, encode_json

__all__ = [
    "BATCH_SIZE",
    "HEADERS_ALLOWANCE",
    "MAX_BODY_BYTES",
    "MAX_REQUEST_BYTES",
    "TRY_AGAIN_STATUSES",
    "encode_task",
    "request_bytes",
    "retry_policy",
    "size_chunks",
]

#: The most a request may be, body and headers together (the client's limit).
MAX_REQUEST_BYTES: Final = 128 * 1024
#: What this SDK keeps for a request's headers (token, user agent, content type and length ...):
#: a body of at most :data:`MAX_BODY_BYTES` always fits the limit with them.
HEADERS_ALLOWANCE: Final = 4 * 1024
MAX_BODY_BYTES: Final = MAX_REQUEST_BYTES - HEADERS_ALLOWANCE
#: The most task ids reserved, or tasks submitted, in one request (OQC documents no count limit;
#: the size limit usually binds first).
BATCH_SIZE: Final = 500
#: Statuses OQC's client takes as "try again later" (``ConnectionFailureException``).
TRY_AGAIN_STATUSES: Final = frozenset({408, 409, 429, 500, 502, 503, 504})

#: ``{"tasks":[`` ... ``]}`` around the tasks of a submission.
_ENVELOPE: Final = len('{"tasks":[]}')


#: A text escaped once serves every task that carries it (a batch of one program, one config).
_escaped: Final = functools.lru_cache(maxsize=32)(encode_json)


def encode_task(program: str, config: str, qpu_id: str, tag: str, task_id: str) -> str:
    """One task (OQC's fields, in its client's order) as the JSON the HTTP client would write for
    ``{"program": program, "config": config, ...}`` (compact, ASCII), each of its texts escaped
    once for all the tasks that carry it: N tasks of one program and one config escape them once,
    not N times (the escaping was a fifth of a composite's cost)."""
    return (
        f'{{"program":{_escaped(program)},"config":{_escaped(config)},"qpu_id":{_escaped(qpu_id)},'
        f'"tag":{_escaped(tag)},"task_id":{_escaped(task_id)}}}'
    )


def request_bytes(task_sizes: Sequence[int]) -> int:
    """The body of one submission of tasks of these encoded sizes."""
    return _ENVELOPE + sum(task_sizes) + max(len(task_sizes) - 1, 0)


def size_chunks(
    sizes: Sequence[int], *, max_bytes: int = MAX_BODY_BYTES, max_count: int = BATCH_SIZE
) -> list[list[int]]:
    """The indexes of ``sizes`` (encoded tasks, in order) cut into consecutive runs, each of at most
    ``max_count`` tasks whose submission body is at most ``max_bytes``. A task too large on its own
    gets a run of its own (the caller refuses it before sending)."""
    chunks: list[list[int]] = []
    current: list[int] = []
    body = _ENVELOPE
    for i, size in enumerate(sizes):
        grown = body + size + (1 if current else 0)
        if current and (grown > max_bytes or len(current) >= max_count):
            chunks.append(current)
            current, grown = [], _ENVELOPE + size
        current.append(i)
        body = grown
    if current:
        chunks.append(current)
    return chunks


def retry_policy(retry: RetryPolicy | None) -> RetryPolicy:
    """The retry policy for OQC: the caller's, or the default one with 409 retried too (an
    idempotent request only: a submission with its reserved ids, a cancel, a read)."""
    if retry is not None:
        return retry
    default = RetryPolicy()
    return RetryPolicy(retry_statuses=default.retry_statuses | TRY_AGAIN_STATUSES)
