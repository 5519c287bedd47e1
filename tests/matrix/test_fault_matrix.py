"""The fault matrix: every HTTP backend against its emulator, every fault, every phase of a job.

One test function, parametrized over (backend × fault × phase). A per-backend adapter table says
where each phase goes on the wire (a method and a path pattern for the emulator's fault rules) and
how to count the vendor jobs created. Each case:

* injects the fault once, on the phase's endpoint (and checks that the emulator applied it);
* drives the job through that phase under a deadline and checks the deadline held;
* checks the error type where one is due (only the faults a retry cannot absorb raise);
* lets the caller do what a caller does after an error (call the same verb again, no faults left)
  and checks the job's final state and that exactly one vendor job was created.

"An expired token" is a 401 from the endpoint: a backend that refreshes its tokens (IBM Cloud IAM)
gets a new one and carries on; the others hold a static token and raise ``AuthenticationError``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from oqc_style_sdk import JobState, Sdk
from oqc_style_sdk._http import RetryPolicy
from oqc_style_sdk.backends._ibm_target import warm_transpiler
from oqc_style_sdk.backends._qiskit import wait_for_qiskit
from oqc_style_sdk.exceptions import (
    AuthenticationError,
    BackendUnavailableError,
    JobTimeoutError,
    ProtocolError,
    RateLimitedError,
    SdkError,
    ServerError,
)
from oqc_style_sdk.testing.emulator import Emulator, start_emulator
from tests.common import BELL as BELL2
from tests.common import FAST

QUICK_RETRY = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05)
#: The HttpClient's per-request timeout: a "slow" fault answers later than this.
READ_TIMEOUT_S = 0.4
SLOW_S = 0.8
#: The caller's deadline for each verb, and the margin DESIGN.md allows past it.
DEADLINE_S = 4.0
MARGIN_S = 0.25
SHORT_JOB_S = 0.05
LONG_JOB_S = 30.0


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: re.Pattern[str]


@dataclass(frozen=True)
class Adapter:
    """What the matrix needs to know about one backend and its emulator."""

    emulator: str
    program: Any
    target: str | None
    submit: Endpoint
    status: Endpoint
    cancel: Endpoint
    result: Endpoint
    #: How many vendor jobs the emulator created.
    created: Callable[[Any], int]
    #: Whether a 401 makes the backend fetch a new token (rather than raise AuthenticationError).
    refreshes_tokens: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    #: Emulator options that make a run long (for the cancel phase).
    long_options: dict[str, Any] = field(default_factory=lambda: {"job_duration_s": LONG_JOB_S})


def ep(method: str, pattern: str) -> Endpoint:
    return Endpoint(method, re.compile(pattern))


ADAPTERS: dict[str, Adapter] = {
    "oqc": Adapter(
        emulator="oqc",
        program=BELL2,
        target="qpu:uk:2:d865b5a184",
        submit=ep("POST", r"/tasks/submit$"),
        status=ep("GET", r"/status$|^/[^/]+/tasks$"),
        cancel=ep("POST", r"/tasks/cancel_many$"),
        result=ep("GET", r"/results$"),
        created=lambda emu: len(emu.task_ids),
    ),
    "ibm_quantum": Adapter(
        emulator="ibm_quantum",
        program=BELL2,
        target="ibm_fez",
        submit=ep("POST", r"/jobs$"),
        status=ep("GET", r"/jobs(/[^/]+)?$"),
        cancel=ep("POST", r"/jobs/[^/]+/cancel$"),
        result=ep("GET", r"/jobs/[^/]+/results$"),
        created=lambda emu: len(emu.job_ids),
        refreshes_tokens=True,
    ),
    "azure_quantum": Adapter(
        emulator="azure_quantum",
        program=BELL2,
        target="ionq.simulator",
        submit=ep("PUT", r"/jobs/[^/:]+$"),
        status=ep("GET", r"/jobs(/[^/:]+)?$"),
        cancel=ep("POST", r"/jobs/[^/:]+:cancel$"),
        result=ep("GET", r"^/devstoreaccount1/.+/.+"),
        created=lambda emu: len(emu.job_ids),
    ),
    "databricks": Adapter(
        emulator="databricks",
        program={
            "run_name": "matrix",
            "tasks": [
                {
                    "task_key": "main",
                    "existing_cluster_id": "0923-164208-meows279",
                    "notebook_task": {"notebook_path": "/Users/me@example.com/nb"},
                }
            ],
        },
        target=None,
        submit=ep("POST", r"/runs/submit$"),
        status=ep("GET", r"/runs/(get|list)$"),
        cancel=ep("POST", r"/runs/cancel$"),
        result=ep("GET", r"/runs/get-output$"),
        created=lambda emu: len(emu.run_ids),
        long_options={"job_duration_s": LONG_JOB_S, "cancel_duration_s": 0.05},
    ),
    "windmill": Adapter(
        emulator="windmill",
        program={"path": "u/demo/quick"},
        target=None,
        submit=ep("POST", r"/jobs/run/p/"),
        status=ep("GET", r"/jobs_u/get/|/jobs/(queue/|completed/)?list$"),
        cancel=ep("POST", r"/jobs_u/queue/cancel/"),
        result=ep("GET", r"/jobs_u/completed/get_result"),
        created=lambda emu: len(emu.job_ids),
    ),
}

FAULTS = (
    "429_retry_after",
    "429",
    "500",
    "502",
    "503",
    "drop",
    "slow",
    "malformed",
    "truncated",
    "expired_token",
)
PHASES = ("submit", "status", "cancel", "result")
#: The errors a fault may surface as, when a retry cannot absorb it (e.g. a POST that cannot be
#: resent blindly, or a cancel the vendor never confirmed within the deadline).
TYPED: dict[str, tuple[type[BaseException], ...]] = {
    "429_retry_after": (RateLimitedError,),
    "429": (RateLimitedError,),
    "500": (ServerError,),
    "502": (ServerError,),
    "503": (ServerError,),
    "drop": (BackendUnavailableError,),
    "slow": (BackendUnavailableError, JobTimeoutError),
    "malformed": (ProtocolError, JobTimeoutError),
    "truncated": (ProtocolError, BackendUnavailableError, JobTimeoutError),
    "expired_token": (AuthenticationError,),
}


def inject(emu: Emulator, fault: str, where: Endpoint) -> None:
    """Arm ``fault`` once on ``where`` (a dropped GET takes two: aiohttp resends it once)."""
    rule: dict[str, Any] = {"path": where.path, "method": where.method}
    if fault == "429_retry_after":
        emu.fail_next(1, status=429, retry_after=1, **rule)
    elif fault in ("429", "500", "502", "503"):
        emu.fail_next(1, status=int(fault), **rule)
    elif fault == "drop":
        emu.drop_next(1, **rule)
    elif fault == "slow":
        emu.slow_next(1, delay_s=SLOW_S, **rule)
    elif fault == "malformed":
        emu.malformed_next(1, **rule)
    elif fault == "truncated":
        emu.malformed_next(1, truncated=True, **rule)
    else:
        assert fault == "expired_token"
        emu.fail_next(1, status=401, **rule)


def applied(emu: Emulator) -> list[str]:
    return [e.fault for e in emu.requests if e.fault is not None]


@asynccontextmanager
async def session(adapter: Adapter, *, long: bool) -> AsyncIterator[tuple[Any, Sdk]]:
    options: dict[str, Any] = {"job_duration_s": SHORT_JOB_S, "max_lifetime_s": 60.0, **adapter.options}
    if long:
        options.update(adapter.long_options)
    async with start_emulator(adapter.emulator, **options) as emu:
        settings = {**emu.credentials, "timeout_s": READ_TIMEOUT_S, "retry": QUICK_RETRY}
        async with Sdk(adapter.emulator, default_target=adapter.target, polling=FAST, **settings) as sdk:
            yield emu, sdk


async def timed(call: Callable[[], Any]) -> tuple[BaseException | None, float]:
    """Await ``call()``; the error it raised (if any) and how long it took."""
    start = anyio.current_time()
    try:
        await call()
    except SdkError as exc:
        return exc, anyio.current_time() - start
    return None, anyio.current_time() - start


@pytest.fixture(scope="module", autouse=True)
def _transpiler_warmed() -> None:
    """The process's first IBM transpilation imports the transpiler's plugins (1-3 s, more on a
    loaded machine): made before the matrix, whose deadlines measure fault handling, not imports."""
    assert wait_for_qiskit(timeout_s=120)
    warm_transpiler()


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("backend", list(ADAPTERS))
async def test_fault_matrix(backend: str, fault: str, phase: str) -> None:
    adapter = ADAPTERS[backend]
    where: Endpoint = getattr(adapter, phase)
    with anyio.fail_after(30):
        async with session(adapter, long=phase == "cancel") as (emu, sdk):
            job = sdk.create_job(program=adapter.program)
            if fault == "expired_token" and adapter.refreshes_tokens:
                if phase != "submit":
                    await job.submit()
                emu.expire_tokens()
            if phase == "cancel":
                await job.submit()
                inject(emu, fault, where)
                error, elapsed = await timed(lambda: job.cancel(timeout_s=DEADLINE_S))
            else:
                inject(emu, fault, where)
                error, elapsed = await timed(lambda: job.execute(timeout_s=DEADLINE_S))

            assert elapsed <= DEADLINE_S + MARGIN_S, (elapsed, error)
            if not (fault == "expired_token" and adapter.refreshes_tokens):
                assert applied(emu), f"the {fault} fault never met {where}"
            if fault == "expired_token" and not adapter.refreshes_tokens:
                assert isinstance(error, AuthenticationError), repr(error)
            elif fault in ("500", "502", "503") and phase == "submit" and not sdk.backend.idempotent_submit:
                # A 5xx to a POST without an idempotency key may have been processed: not resent
                # blindly; the caller's next execute() reconciles.
                assert isinstance(error, ServerError), repr(error)
            elif fault in ("429_retry_after", "429", "500", "502", "503") or (
                fault == "expired_token" and adapter.refreshes_tokens
            ):
                assert error is None, repr(error)  # a retry absorbs it
            if error is not None:
                assert isinstance(error, TYPED[fault]), repr(error)
                # A typed error, and the job is where a caller can carry on from.
                assert not job.ended or phase == "cancel", (job.state, error)
                assert job.state is not JobState.FAILED

            # The caller tries again (no fault left): the job ends as it should.
            if phase == "cancel":
                if not job.ended:
                    await job.cancel(timeout_s=DEADLINE_S)
                assert job.state is JobState.CANCELLED, job.state
            else:
                if not job.ended:
                    await job.execute(timeout_s=DEADLINE_S)
                assert job.state is JobState.COMPLETED, (job.state, job.error)
                assert job.result is not None
            assert len(job.history) == 1
            assert adapter.created(emu) == 1, applied(emu)
