"""The ``ibm_quantum`` backend: through ``Sdk("ibm_quantum")`` against the IBM Quantum emulator.

Settings come from the emulator's ``env`` (as a user's shell would give them), except where a test is
about a setting itself. Polling is made fast with a ``PollingPolicy``; jobs last a fraction of a second.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from oqc_style_sdk import (
    AuthenticationError,
    BackendUnavailableError,
    ConfigurationError,
    Job,
    JobState,
    JobTimeoutError,
    JobValidationError,
    Sdk,
    ServerError,
    UnknownTargetError,
)
from oqc_style_sdk._limits import CreationWindow
from oqc_style_sdk.backends.base import RunRef
from oqc_style_sdk.backends.ibm_quantum import (
    DEFAULT_API_VERSION,
    DEFAULT_IAM_URL,
    DEFAULT_URL,
    IBM_STATUS,
    MAX_SHOTS,
    IbmQuantumBackend,
    decode_samples,
    default_url_for,
)
from oqc_style_sdk.exceptions import ProtocolError
from oqc_style_sdk.testing.ibm_quantum import JOB_STATUSES, IbmQuantumEmulator
from tests.common import BELL, BELL3, FAST

BOUND_S = 10
DEVICE = "ibm_fez"
ENV_NAMES = (
    "IBM_QUANTUM_API_KEY",
    "QISKIT_IBM_TOKEN",
    "IBM_QUANTUM_INSTANCE",
    "QISKIT_IBM_INSTANCE",
    "IBM_QUANTUM_URL",
    "IBM_QUANTUM_IAM_URL",
    "IBM_QUANTUM_API_VERSION",
    "IBM_QUANTUM_MAX_JOBS_PER_WINDOW",
    "IBM_QUANTUM_RATE_WINDOW_S",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


@asynccontextmanager
async def ibm(**options: Any) -> AsyncIterator[tuple[IbmQuantumEmulator, Sdk]]:
    """An emulator (jobs of 0.05 s unless told) and an open Sdk on it, every wait bounded."""
    options.setdefault("job_duration_s", 0.05)
    async with IbmQuantumEmulator(max_lifetime_s=60, **options) as emu:
        credentials = emu.credentials
        async with Sdk("ibm_quantum", default_target=DEVICE, polling=FAST, **credentials) as sdk:
            with anyio.fail_after(BOUND_S):
                yield emu, sdk


def backend_of(sdk: Sdk) -> IbmQuantumBackend:
    backend = sdk.backend
    assert isinstance(backend, IbmQuantumBackend)
    return backend


def job_gets(emu: IbmQuantumEmulator, task_id: str) -> int:
    return sum(1 for r in emu.requests if r.method == "GET" and r.path == f"/api/v1/jobs/{task_id}")


# ==================================================================================================
# Bell pairs through Sdk("ibm_quantum"), settings from the emulator's env
# ==================================================================================================


@pytest.mark.parametrize("program", [BELL, BELL3], ids=["qasm2", "qasm3"])
async def test_bell_pair_counts_with_settings_from_env(monkeypatch: pytest.MonkeyPatch, program: str) -> None:
    async with IbmQuantumEmulator(job_duration_s=0.05, max_lifetime_s=60) as emu:
        assert set(emu.env) == {
            "IBM_QUANTUM_URL",
            "IBM_QUANTUM_IAM_URL",
            "IBM_QUANTUM_API_KEY",
            "IBM_QUANTUM_INSTANCE",
            "IBM_QUANTUM_MAX_JOBS_PER_WINDOW",  # "none": the emulator has no creation limit
            "IBM_QUANTUM_RATE_WINDOW_S",
            # for qiskit-ibm-runtime: the IBM Cloud SDK's IAM, Global Search and Global Catalog
            "IAM_URL",
            "GLOBAL_SEARCH_URL",
            "GLOBAL_CATALOG_URL",
        }
        assert emu.env["IBM_QUANTUM_MAX_JOBS_PER_WINDOW"] == "none"
        for name, value in emu.env.items():
            monkeypatch.setenv(name, value)
        async with Sdk("ibm_quantum", default_target=DEVICE, polling=FAST) as sdk:
            job = sdk.create_job(program=program, config={"shots": 1000})
            await job.execute(timeout_s=BOUND_S)
        assert job.state is JobState.COMPLETED
        assert job.vendor_status == "Completed"
        assert job.result is not None
        counts = job.result.data
        assert set(counts) == {"c"}
        assert set(counts["c"]) <= {"00", "11"}
        assert sum(counts["c"].values()) == 1000
        assert min(counts["c"].values()) > 350  # both outcomes, about half each
        created = [r for r in emu.requests if (r.method, r.path) == ("POST", "/api/v1/jobs")]
        assert len(created) == 1
        sent = created[0].body["params"]["pubs"][0][0]
        assert sent.startswith("OPENQASM 3.0;")  # transpiled for ibm_fez, sent as OpenQASM 3
        assert "cz $" in sent  # native gates on physical qubits: h and cx became rz, sx and cz
        assert " h " not in sent
        assert " cx " not in sent


async def test_defaults_to_ibm_shots_and_reads_several_registers() -> None:
    program = """OPENQASM 3.0;
include "stdgates.inc";
qubit[3] q;
bit[1] a;
bit[2] b;
x q[1];
a[0] = measure q[0];
b[0] = measure q[1];
b[1] = measure q[2];
"""
    async with ibm() as (emu, sdk):
        job = sdk.create_job(program=program)
        await job.execute()
        assert job.result is not None
        assert job.result.data == {"a": {"0": 4096}, "b": {"01": 4096}}
        posted = next(r for r in emu.requests if r.method == "POST" and r.path == "/api/v1/jobs")
        assert "options" not in posted.body["params"]  # no shots given: IBM's default (4096)


async def test_list_targets_and_unknown_targets_are_refused_before_sending() -> None:
    async with ibm() as (emu, sdk):
        targets = await sdk.list_targets()
        assert [t["id"] for t in targets] == ["ibm_fez", "ibm_torino", "ibm_kingston"]
        fez = targets[0]
        assert (fez["name"], fez["status"], fez["qubits"]) == ("ibm_fez", "online", 156)
        posts = emu.count("POST", "/api/v1/jobs")
        with pytest.raises(UnknownTargetError, match="ibm_nowhere"):
            sdk.create_job(program=BELL3, target="ibm_nowhere")
        assert emu.count("POST", "/api/v1/jobs") == posts


# ==================================================================================================
# settings
# ==================================================================================================


def test_missing_key_or_instance_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="IBM_QUANTUM_API_KEY"):
        Sdk("ibm_quantum")
    monkeypatch.setenv("QISKIT_IBM_TOKEN", "k" * 20)  # qiskit-ibm-runtime's name is read too
    with pytest.raises(ConfigurationError, match="IBM_QUANTUM_INSTANCE"):
        Sdk("ibm_quantum")
    crn = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc:def::"
    monkeypatch.setenv("QISKIT_IBM_INSTANCE", crn)
    backend = backend_of(Sdk("ibm_quantum"))
    assert backend.url == DEFAULT_URL
    assert backend.iam_url == DEFAULT_IAM_URL
    assert backend.api_version == DEFAULT_API_VERSION
    assert backend.identity() == {"backend": "ibm_quantum", "endpoint": DEFAULT_URL, "instance": crn}
    monkeypatch.setenv("IBM_QUANTUM_API_VERSION", "2025-01-01")
    assert backend_of(Sdk("ibm_quantum")).api_version == "2025-01-01"
    with pytest.raises(ConfigurationError, match="plain http"):
        Sdk("ibm_quantum", url="http://quantum.example.com/api/v1")


def test_the_default_url_follows_the_region_of_the_crn() -> None:
    assert default_url_for("crn:v1:bluemix:public:quantum-computing:us-east:a/x:y::") == DEFAULT_URL
    assert (
        default_url_for("crn:v1:bluemix:public:quantum-computing:eu-de:a/x:y::")
        == "https://eu-de.quantum.cloud.ibm.com/api/v1"
    )
    assert default_url_for("not a crn") == DEFAULT_URL


async def test_start_up_errors_are_typed_and_clear() -> None:
    async with IbmQuantumEmulator(max_lifetime_s=60) as emu:
        wrong_key = {**emu.credentials, "api_key": "not-the-key"}
        with pytest.raises(AuthenticationError, match=r"IBM Cloud IAM refused the API key \(400 BXNIM0415E"):
            async with Sdk("ibm_quantum", **wrong_key):
                pass
        wrong_crn = {**emu.credentials, "instance": "crn:v1:bluemix:public:quantum-computing:us-east:a/x:y::"}
        with pytest.raises(AuthenticationError, match="403"):
            async with Sdk("ibm_quantum", **wrong_crn):
                pass
        port = emu.port
    with pytest.raises(BackendUnavailableError, match="cannot reach IBM Quantum"):
        async with Sdk(
            "ibm_quantum",
            url=f"http://127.0.0.1:{port}/api/v1",
            iam_url=f"http://127.0.0.1:{port}/identity/token",
            api_key="k",
            instance="crn",
        ):
            pass


# ==================================================================================================
# validation (no I/O)
# ==================================================================================================


async def test_validation_refuses_bad_specs_without_sending() -> None:
    async with ibm() as (emu, sdk):
        sent = len(emu.requests)
        bad: list[tuple[dict[str, Any], str]] = [
            ({"program": 42}, "OpenQASM text"),
            ({"program": "   "}, "empty"),
            ({"program": "x" * 1_000_001}, "byte limit"),
            ({"program": BELL.replace("2.0", "5.0")}, "OPENQASM 5"),
            ({"program": BELL3, "config": {"shots": 0}}, "shots"),
            ({"program": BELL3, "config": {"shots": MAX_SHOTS + 1}}, "shots"),
            ({"program": BELL3, "config": {"shots": True}}, "shots"),
            ({"program": BELL3, "config": {"seed": 1}}, "unknown config"),
            ({"program": BELL3, "config": {"options": []}}, "options"),
            ({"program": BELL3, "config": {"shots": 5, "options": {"default_shots": 6}}}, "not both"),
        ]
        for kwargs, message in bad:
            with pytest.raises(JobValidationError, match=message):
                sdk.create_job(**kwargs)
        assert len(emu.requests) == sent
        async with Sdk("ibm_quantum", **emu.credentials) as no_default:
            with pytest.raises(JobValidationError, match="no IBM backend"):
                no_default.create_job(program=BELL3)


async def test_a_qasm2_program_that_does_not_parse_is_rejected_before_anything_is_sent() -> None:
    async with ibm() as (emu, sdk):
        job = sdk.create_job(program='OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; nogate q[0];')
        await job.execute()
        assert job.state is JobState.FAILED
        assert job.error is not None
        assert job.error.code == "REJECTED"
        assert "does not parse" in job.error.message
        assert emu.count("POST", "/api/v1/jobs") == 0


async def test_options_and_tag_are_sent_with_the_shots() -> None:
    async with ibm() as (emu, sdk):
        options = {"dynamical_decoupling": {"enable": True, "sequence_type": "XY4"}}
        job = sdk.create_job(program=BELL3, config={"shots": 300, "options": options}, tag="mine")
        await job.execute()
        posted = next(r for r in emu.requests if r.method == "POST" and r.path == "/api/v1/jobs")
        assert posted.body["params"]["options"] == {**options, "default_shots": 300}
        assert posted.body["tags"][0] == "mine"
        assert job.result is not None
        assert sum(job.result.data["c"].values()) == 300


# ==================================================================================================
# the status table
# ==================================================================================================

EXPECTED = {
    "Queued": JobState.SUBMITTED,
    "Running": JobState.RUNNING,
    "Completed": JobState.COMPLETED,
    "Failed": JobState.FAILED,
    "Cancelled": JobState.CANCELLED,
    "Cancelled - Ran too long": JobState.FAILED,
}


def test_the_table_maps_exactly_the_documented_statuses() -> None:
    assert set(IBM_STATUS) == set(JOB_STATUSES) == set(EXPECTED)
    assert dict(IBM_STATUS) == EXPECTED


async def test_every_documented_status_walks_through_the_adapter() -> None:
    async with ibm(job_duration_s=30) as (emu, sdk):
        backend = backend_of(sdk)
        job = sdk.create_job(program=BELL3)
        await job.submit()
        assert job.task_id is not None
        ref = RunRef(job.task_id)
        for status in JOB_STATUSES:
            await emu.set_status(job.task_id, status)
            obs = await backend.status(ref)
            assert obs.state is EXPECTED[status], status
            if status == "Failed":
                assert (obs.vendor_status, obs.code) == ("Failed", "1010")
                assert obs.message == "Error returned at backend level"
            elif status == "Cancelled - Ran too long":
                assert (obs.vendor_status, obs.code) == ("Cancelled - Ran too long", "1305")
                assert obs.message is not None
                assert "maximum execution time" in obs.message
            else:
                assert obs.vendor_status == status
        await emu.set_status(job.task_id, "Cancelled", reason="cancelled by an admin", reason_code=1402)
        obs = await backend.status(ref)
        assert (obs.state, obs.message, obs.code) == (JobState.CANCELLED, "cancelled by an admin", "1402")


async def test_a_program_that_does_not_parse_is_refused_before_anything_is_sent() -> None:
    async with ibm() as (emu, sdk):
        job = sdk.create_job(program="OPENQASM 3.0;\nqubit q;\nnosuchgate q;\n")
        await job.execute()
        assert job.state is JobState.FAILED
        assert job.error is not None
        assert "does not parse" in job.error.message
        assert "nosuchgate" in job.error.message
        assert emu.job_ids == []  # parsed (and transpiled) here: IBM never saw it


async def test_a_failed_job_carries_the_vendors_reason_and_code() -> None:
    async with ibm(job_duration_s=30) as (emu, sdk):
        job = sdk.create_job(program=BELL3)
        await job.submit()
        assert job.task_id is not None
        await emu.set_status(job.task_id, "Failed", "Error in the validation process of the job", 1002)
        await job.wait()
        assert job.state is JobState.FAILED
        assert job.error is not None
        assert job.error.code == "1002"
        assert job.error.message == "Error in the validation process of the job"


def test_tolerated_spellings_and_undocumented_statuses(caplog: pytest.LogCaptureFixture) -> None:
    backend = IbmQuantumBackend(api_key="k", instance="crn")
    obs = backend.observation({"id": "j", "state": {"status": "COMPLETED"}, "status": "COMPLETED"})
    assert (obs.state, obs.vendor_status) == (JobState.COMPLETED, "COMPLETED")
    ran_too_long = {"id": "j", "state": {"status": "Cancelled", "reasonCode": 1305}}
    assert backend.observation(ran_too_long).state is JobState.FAILED
    assert backend.observation({"id": "j", "status": "Running"}).state is JobState.RUNNING
    caplog.set_level(logging.WARNING, logger="oqc_style_sdk.backends.ibm_quantum")
    for _ in range(3):
        obs = backend.observation({"id": "j", "state": {"status": "Paused"}, "status": "Paused"})
        assert (obs.state, obs.vendor_status) == (JobState.SUBMITTED, "Paused")
    assert sum("undocumented status 'Paused'" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(ProtocolError, match="unknown shape"):
        backend.observation({"state": {"status": "Queued"}})


def test_decode_samples() -> None:
    body = {
        "results": [
            {
                "data": {
                    "c": {"samples": ["0x0", "0x3", "0x3", "0x03", "0x1"], "num_bits": 3},
                    "empty": {"samples": ["0x0"], "num_bits": 0},
                },
                "metadata": {},
            }
        ],
        "metadata": {},
    }
    assert decode_samples(body) == {"c": {"000": 1, "001": 1, "011": 3}, "empty": {"": 1}}
    wide = {"results": [{"data": {"c": {"samples": ["0x4"], "num_bits": 2}}}]}
    with pytest.raises(ProtocolError, match="wider than 2 bits"):
        decode_samples(wide)
    with pytest.raises(ProtocolError, match="not hex"):
        decode_samples({"results": [{"data": {"c": {"samples": ["zz"], "num_bits": 2}}}]})
    with pytest.raises(ProtocolError, match="Qiskit-encoded"):
        decode_samples({"__type__": "PrimitiveResult", "__value__": {}})
    with pytest.raises(ProtocolError, match="without any PUB"):
        decode_samples({"results": []})


# ==================================================================================================
# tokens
# ==================================================================================================


async def test_a_token_expiring_mid_wait_is_refreshed_without_failing_the_job() -> None:
    async with ibm(token_ttl_s=0.3, job_duration_s=1.0) as (emu, sdk):
        job = sdk.create_job(program=BELL3, config={"shots": 100})
        await job.execute()
        assert job.state is JobState.COMPLETED
        assert emu.count("POST", "/identity/token") >= 2
        assert emu.tokens_issued == emu.count("POST", "/identity/token")


async def test_a_401_mid_wait_refreshes_the_token_once_and_the_job_completes() -> None:
    async with ibm(job_duration_s=0.4) as (emu, sdk):
        job = sdk.create_job(program=BELL3, config={"shots": 100})
        await job.submit()
        before = emu.count("POST", "/identity/token")
        emu.expire_tokens()
        await job.wait()
        assert job.state is JobState.COMPLETED
        assert emu.count("POST", "/identity/token") == before + 1
        assert any(r.status == 401 and r.path.startswith("/api/v1/jobs") for r in emu.requests)


async def test_concurrent_401s_refresh_the_token_once() -> None:
    async with ibm(job_duration_s=30) as (emu, sdk):
        backend = backend_of(sdk)
        jobs = [sdk.create_job(program=BELL3) for _ in range(6)]
        for job in jobs:
            await job.submit()
        refs = [RunRef(job.task_id) for job in jobs if job.task_id is not None]
        before = emu.count("POST", "/identity/token")
        emu.expire_tokens()
        emu.clear_log()
        observations = []

        async def read(ref: RunRef) -> None:
            observations.append(await backend.status(ref))

        async with anyio.create_task_group() as tg:
            for ref in refs:
                tg.start_soon(read, ref)
        assert len(observations) == 6
        assert emu.count("POST", "/identity/token") == 1
        assert emu.tokens_issued == before + 1
        assert sum(r.status == 401 for r in emu.requests) == 6


# ==================================================================================================
# rate limit and batched reads
# ==================================================================================================


async def test_a_429_on_create_is_retried_after_retry_after_and_makes_exactly_one_job() -> None:
    # The client keeps no limit of its own here (as when another program of the same user spent
    # the quota): IBM's 429 is what holds the second creation back.
    async with (
        IbmQuantumEmulator(max_jobs_per_window=1, rate_window_s=0.5, job_duration_s=0.05) as emu,
        Sdk(
            "ibm_quantum",
            default_target=DEVICE,
            polling=FAST,
            **{**emu.credentials, "max_jobs_per_window": None},
        ) as sdk,
    ):
        first = sdk.create_job(program=BELL3, config={"shots": 10})
        second = sdk.create_job(program=BELL3, config={"shots": 10})
        await first.submit()
        await second.execute()
        await first.wait()
        creates = [r.status for r in emu.requests if (r.method, r.path) == ("POST", "/api/v1/jobs")]
        assert creates == [200, 429, 200]
        assert len(emu.job_ids) == 2
        assert {first.task_id, second.task_id} == set(emu.job_ids)
        assert first.state is second.state is JobState.COMPLETED


async def test_job_creations_wait_their_turn_under_the_limit_instead_of_earning_429s() -> None:
    async with ibm(max_jobs_per_window=2, rate_window_s=0.3) as (emu, sdk):
        creations = backend_of(sdk).creations
        assert creations is not None
        assert (creations.limit, creations.window_s) == (2, 0.3)
        composite = sdk.create_job(program=[BELL3] * 5, config={"shots": 10})
        await composite.execute()
        assert composite.state is JobState.COMPLETED
        creates = [r for r in emu.requests if (r.method, r.path) == ("POST", "/api/v1/jobs")]
        assert [r.status for r in creates] == [200] * 5  # the emulator refused none
        assert len(emu.job_ids) == 5


async def test_a_creation_waiting_for_its_turn_is_bounded_and_closing_the_sdk_sends_nothing() -> None:
    async with IbmQuantumEmulator(job_duration_s=0.05, max_lifetime_s=60) as emu:
        settings = {**emu.credentials, "max_jobs_per_window": 1, "rate_window_s": 60}
        async with Sdk("ibm_quantum", default_target=DEVICE, polling=FAST, **settings) as sdk:
            creations = backend_of(sdk).creations
            first, second = (sdk.create_job(program=BELL3, config={"shots": 10}) for _ in range(2))
            await first.execute()
            assert creations is not None
            assert 55 < creations.wait_s() <= 60
            with pytest.raises(JobTimeoutError):  # its turn is a minute away
                await second.submit(timeout_s=0.2)
            assert second.state is JobState.CREATED  # the submission waits on, in the Sdk
        # Closing the Sdk ended that wait: the second creation was never sent, and its turn is free.
        creates = [r for r in emu.requests if (r.method, r.path) == ("POST", "/api/v1/jobs")]
        assert len(creates) == 1
        assert len(emu.job_ids) == 1
        assert 55 < creations.wait_s() <= 60


async def test_closing_the_sdk_is_not_held_by_a_transpilation_in_its_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Transpiling runs in a worker thread. A caller's deadline returns while it runs (the
    submission goes on in the Sdk), and closing the Sdk lets the thread go at once (its result
    unused) — neither waits for a transpilation that may take seconds."""
    import oqc_style_sdk.backends.ibm_quantum as module

    entered, gate, finished = threading.Event(), threading.Event(), threading.Event()
    transpile = module.transpile_for

    def held(*args: Any) -> Any:
        entered.set()
        gate.wait(BOUND_S)  # bounded: released by the test
        try:
            return transpile(*args)
        finally:
            finished.set()

    try:
        async with ibm() as (emu, sdk):
            await sdk.create_job(program=BELL3, config={"shots": 10}).execute()  # all warm
            monkeypatch.setattr(module, "transpile_for", held)
            job = sdk.create_job(program=BELL3, config={"shots": 10})
            with pytest.raises(JobTimeoutError):
                await job.submit(timeout_s=1)
            assert entered.is_set()
            assert job.state is JobState.CREATED
        assert not finished.is_set()  # closed while the thread still transpiled
        assert len(emu.job_ids) == 1  # the held job was never sent
    finally:
        gate.set()


async def test_transpilations_run_one_at_a_time_so_the_event_loop_keeps_the_gil(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Transpiling holds the GIL: many threads at once add no speed and starve the event loop
    (it waited 0.65 s between turns with 24). A composite's transpilations take turns in one thread:
    while the first is held, the others wait for the qiskit thread instead of starting their own."""
    import oqc_style_sdk.backends.ibm_quantum as module
    from oqc_style_sdk.backends import _qiskit

    n = 8
    gate, lock = threading.Event(), threading.Lock()
    running, most = [0], [0]
    transpile = module.transpile_for

    def held(*args: Any) -> Any:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            gate.wait(BOUND_S)  # bounded: released by the test
            return transpile(*args)
        finally:
            with lock:
                running[0] -= 1

    try:
        async with ibm() as (emu, sdk):
            await sdk.create_job(program=BELL3, config={"shots": 10}).execute()  # all warm
            monkeypatch.setattr(module, "transpile_for", held)
            composite = sdk.create_job(program=[BELL3] * n, config={"shots": 10})
            limiter = _qiskit._QISKIT_THREAD.get()  # made by the warm-up's transpilation
            async with anyio.create_task_group() as tg:
                tg.start_soon(composite.execute)
                for _ in range(500):  # until all the others queue behind the held one (bounded)
                    await anyio.sleep(0.01)
                    if limiter.statistics().tasks_waiting == n - 1 and running[0] == 1:
                        break
                assert limiter.statistics().tasks_waiting == n - 1  # the others wait for the thread
                assert most[0] == 1
                gate.set()
            assert composite.state is JobState.COMPLETED
            assert len(emu.job_ids) == n + 1
        assert most[0] == 1
    finally:
        gate.set()


def test_the_job_creation_limit_defaults_to_ibms_and_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = {"api_key": "k" * 20, "instance": "crn:v1:bluemix:public:quantum-computing:us-east:a/1::"}
    default = IbmQuantumBackend(**settings).creations
    assert default is not None
    assert (default.limit, default.window_s) == (5, 60.0)
    assert IbmQuantumBackend(**settings, max_jobs_per_window=None).creations is None
    monkeypatch.setenv("IBM_QUANTUM_MAX_JOBS_PER_WINDOW", "none")
    assert IbmQuantumBackend(**settings).creations is None
    monkeypatch.setenv("IBM_QUANTUM_MAX_JOBS_PER_WINDOW", "10")
    monkeypatch.setenv("IBM_QUANTUM_RATE_WINDOW_S", "30")
    tuned = IbmQuantumBackend(**settings).creations
    assert tuned is not None
    assert (tuned.limit, tuned.window_s) == (10, 30.0)
    for bad in ({"max_jobs_per_window": 0}, {"max_jobs_per_window": "many"}, {"rate_window_s": -1}):
        with pytest.raises(ConfigurationError, match=r"max_jobs_per_window|rate_window_s"):
            IbmQuantumBackend(**settings, **bad)  # type: ignore[arg-type]


async def test_a_creation_window_spaces_turns_by_answers_and_takes_back_unused_ones() -> None:
    now = [0.0]
    window = CreationWindow(2, 10.0, clock=lambda: now[0])
    async with window.turn() as waited:
        assert waited == 0
        now[0] = 1.0  # answered a second after it was sent: the vendor counted it by then
    async with window.turn() as waited:
        assert waited == 0
    assert window.wait_s() == 10.0  # the third turn waits for the first answer (at 1 s) to age out
    with anyio.move_on_after(0.05):  # a caller that gives up ...
        async with window.turn():
            raise AssertionError("not its turn")
    assert window.wait_s() == 10.0  # ... takes nothing with it
    now[0] = 11.0
    async with window.turn() as waited:
        assert waited == 0
    with pytest.raises(ValueError, match="whole number"):
        CreationWindow(0, 1.0)
    with pytest.raises(ValueError, match="window"):
        CreationWindow(1, 0.0)


async def test_waiting_jobs_are_read_with_one_list_request_per_tick() -> None:
    n = 6
    async with ibm(job_duration_s=0.6, max_concurrency=n) as (emu, sdk):
        composite = sdk.create_job(program=[BELL3] * n, config={"shots": 10})
        await composite.submit()
        emu.clear_log()
        ticks = sdk.poller.ticks
        await composite.wait()
        ticks = sdk.poller.ticks - ticks
        assert composite.state is JobState.COMPLETED
        lists = [r for r in emu.requests if (r.method, r.path) == ("GET", "/api/v1/jobs")]
        singles = [r for r in emu.requests if r.method == "GET" and r.path.count("/") == 4]
        assert all(r.query["pending"] == "true" and "created_after" in r.query for r in lists)
        assert len(lists) >= 3  # the wait lasted several ticks ...
        assert len(lists) <= ticks  # ... each read with (at most) one list request
        # Each job is read on its own about once, when it ended (or not at all, when the list that
        # saw it end carried its status) — but the last one left waiting is read on its own every
        # tick (a list request for one job saves nothing), however long it lasts.
        per_job = sorted(Counter(r.path for r in singles).values())
        assert 1 <= len(per_job) <= n
        assert all(count <= 2 for count in per_job[:-1]), per_job
        assert len(lists) + sum(per_job[:-1]) < n * len(lists) / 2


# ==================================================================================================
# secrets
# ==================================================================================================


async def test_secrets_never_reach_reprs_logs_messages_or_files(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    async with ibm(job_duration_s=0.3) as (emu, sdk):
        emu.fail_next(1, status=503, path="/identity/token")
        emu.fail_next(1, status=500, path="/api/v1/jobs/", method="GET")
        emu.expire_tokens()  # the next request gets 401: a refresh, and the IAM 503 on the way
        job = sdk.create_job(program=BELL, config={"shots": 10})
        await job.execute()
        assert job.state is JobState.COMPLETED
        texts += [repr(sdk), repr(sdk.backend), repr(job), str(sdk.backend.identity())]
        texts.append((await job.save(tmp_path / "job.json")).read_text())
        bad = {**emu.credentials, "api_key": emu.api_key[::-1]}
        with pytest.raises(AuthenticationError) as refused:
            async with Sdk("ibm_quantum", **bad):
                pass
        texts += [str(refused.value), repr(refused.value)]
        secrets = [emu.api_key, emu.api_key[::-1], *emu.secrets()]
    assert len(secrets) >= 4  # the key, its reverse and at least two tokens
    texts.append(caplog.text)
    texts.append(repr(emu.requests))
    for text in texts:
        for secret in secrets:
            assert secret not in text


# ==================================================================================================
# a creation whose answer was lost
# ==================================================================================================


async def test_a_job_created_but_unanswered_is_found_by_its_tag_not_created_twice() -> None:
    async with ibm() as (emu, sdk):
        emu.fail_after_processing_next(1, status=503, path="/api/v1/jobs", method="POST")
        job = sdk.create_job(program=BELL3, config={"shots": 10})
        with pytest.raises(ServerError):
            await job.execute()  # a POST is not resent: the job may exist
        assert len(emu.job_ids) == 1
        await job.execute()
        assert job.state is JobState.COMPLETED
        assert job.task_id == emu.job_ids[0]
        assert len(emu.job_ids) == 1
        assert emu.count("POST", "/api/v1/jobs") == 1
        [lookup] = [r for r in emu.requests if (r.method, r.path) == ("GET", "/api/v1/jobs")]
        assert lookup.query["tags"].startswith("oqcs-submission:")


async def test_a_creation_that_never_arrived_is_sent_again_once_checked() -> None:
    async with ibm() as (emu, sdk):
        emu.fail_next(1, status=503, path="/api/v1/jobs", method="POST")
        job = sdk.create_job(program=BELL3, config={"shots": 10})
        with pytest.raises(ServerError):
            await job.execute()
        assert emu.job_ids == []
        await job.execute()
        assert job.state is JobState.COMPLETED
        assert len(emu.job_ids) == 1
        assert emu.count("POST", "/api/v1/jobs") == 2
        assert emu.count("GET", "/api/v1/jobs") >= 1  # looked up before sending again


# ==================================================================================================
# persistence
# ==================================================================================================


async def test_a_saved_active_job_resumes_in_another_sdk(tmp_path: Path) -> None:
    async with IbmQuantumEmulator(job_duration_s=0.3, max_lifetime_s=60) as emu:
        settings = {"default_target": DEVICE, "polling": FAST, **emu.credentials}
        async with Sdk("ibm_quantum", **settings) as sdk:
            job = sdk.create_job(program=BELL3, config={"shots": 50})
            await job.submit()
            path = await job.save(tmp_path / "job.json")
        assert emu.api_key not in path.read_text()
        async with Sdk("ibm_quantum", **settings) as again:
            loaded = await again.load(path)
            assert isinstance(loaded, Job)
            assert loaded.task_id == job.task_id
            await loaded.wait(timeout_s=BOUND_S)
            assert loaded.state is JobState.COMPLETED
        assert emu.count("POST", "/api/v1/jobs") == 1


# ==================================================================================================
# Circuits and transpilation: ISA circuits on the device
# ==================================================================================================


def bell_circuit(register: str = "bell") -> Any:
    from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister

    circuit = QuantumCircuit(QuantumRegister(2, "q"), ClassicalRegister(2, register))
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure([0, 1], [0, 1])
    return circuit


@pytest.mark.parametrize("form", ["circuit", "qasm3-text"])
async def test_a_bell_circuit_is_transpiled_runs_and_the_same_posted_raw_is_refused(form: str) -> None:
    """Done when: a QuantumCircuit of h and cx (and the same as OpenQASM text) ends COMPLETED with
    Bell counts under the user's register name; the same circuit posted raw is refused as IBM does."""
    import qiskit.qasm3

    circuit = bell_circuit()
    program = circuit if form == "circuit" else qiskit.qasm3.dumps(circuit)
    async with ibm() as (emu, sdk):
        job = sdk.create_job(program=program, config={"shots": 400}, fetch_diagnostics=True)
        await job.execute(timeout_s=BOUND_S)
        assert job.state is JobState.COMPLETED
        assert job.result is not None
        counts = job.result.data
        assert set(counts) == {"bell"}
        assert set(counts["bell"]) == {"00", "11"}
        assert sum(counts["bell"].values()) == 400
        assert job.metrics is not None
        metrics = job.metrics["transpilation"]
        assert metrics["optimization_level"] == 1  # IBM's recommended level
        assert metrics["two_qubit_gates"] == 1
        assert set(metrics["count_ops"]) <= {"rz", "sx", "x", "cz", "measure", "barrier"}
        assert metrics["depth"] >= 3
        assert len(metrics["layout"]) == 2
        # the circuit as written, posted straight to the service: a non-ISA failure (code 1517)
        backend = backend_of(sdk)
        raw = await backend._http.post(
            "/jobs",
            json={
                "program_id": "sampler",
                "backend": DEVICE,
                "params": {"pubs": [[qiskit.qasm3.dumps(circuit)]]},
            },
        )
        raw_id = raw.json()["id"]
        assert await emu.status_of(raw_id) == "Failed"  # created, and failed by its check at once
        observed = await backend.status(RunRef(raw_id))
        assert (observed.state, observed.code) == (JobState.FAILED, "1517")
        assert observed.message is not None
        assert "non-ISA circuits" in observed.message


@pytest.mark.parametrize("level", [0, 1, 2, 3])
async def test_every_optimization_level_gives_bell_counts(level: int) -> None:
    async with ibm() as (_, sdk):
        job = sdk.create_job(program=BELL3, config={"shots": 100, "optimization_level": level})
        await job.execute(timeout_s=BOUND_S)
        assert job.state is JobState.COMPLETED
        assert job.result is not None
        assert set(job.result.data["c"]) <= {"00", "11"}


async def test_the_target_is_read_once_per_device_and_sdk() -> None:
    async with ibm() as (emu, sdk):
        jobs = [sdk.create_job(program=BELL3, config={"shots": 10}) for _ in range(3)]
        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(job.execute)
        assert all(job.state is JobState.COMPLETED for job in jobs)
        assert emu.count("GET", f"/api/v1/backends/{DEVICE}/configuration") == 1
        assert emu.count("GET", f"/api/v1/backends/{DEVICE}/properties") == 1


async def test_an_isa_circuit_is_sent_as_written_with_transpile_false() -> None:
    isa = (
        'OPENQASM 3.0;\ninclude "stdgates.inc";\nbit[1] c;\nrz(pi/2) $7;\nsx $7;\nrz(pi/2) $7;\n'
        "c[0] = measure $7;\n"
    )
    async with ibm() as (emu, sdk):
        job = sdk.create_job(program=isa, config={"shots": 50, "transpile": False}, fetch_diagnostics=True)
        await job.execute(timeout_s=BOUND_S)
        assert job.state is JobState.COMPLETED
        assert job.result is not None
        assert sum(job.result.data["c"].values()) == 50
        assert job.metrics is not None
        assert job.metrics["transpilation"]["optimization_level"] is None
        assert job.metrics["transpilation"]["layout"][-1] == 7
        [created] = [r for r in emu.requests if (r.method, r.path) == ("POST", "/api/v1/jobs")]
        sent = created.body["params"]["pubs"][0][0]
        assert "rz(pi/2) $7;" in sent


async def test_bad_circuits_are_refused_before_any_job_is_created() -> None:
    from qiskit import QuantumCircuit
    from qiskit.circuit import Gate, Parameter

    too_wide = QuantumCircuit(157, 1)
    too_wide.x(156)
    opaque = QuantumCircuit(1, 1)
    opaque.append(Gate("magic", 1, []), [0])
    unbound = QuantumCircuit(1, 1)
    unbound.rx(Parameter("theta"), 0)
    async with ibm() as (emu, sdk):
        # known without parsing or I/O: refused at create_job
        with pytest.raises(JobValidationError, match="157 qubits; ibm_fez has 156"):
            sdk.create_job(program=too_wide)
        with pytest.raises(JobValidationError, match=r"unbound parameter\(s\) theta"):
            sdk.create_job(program=unbound)
        with pytest.raises(JobValidationError, match="optimization_level must be 0, 1, 2 or 3"):
            sdk.create_job(program=BELL3, config={"optimization_level": 4})
        with pytest.raises(JobValidationError, match="needs transpile=True"):
            sdk.create_job(program=BELL3, config={"optimization_level": 2, "transpile": False})
        with pytest.raises(JobValidationError, match="transpile must be True"):
            sdk.create_job(program=BELL3, config={"transpile": "no"})
        # found by transpiling (or checking) at submission: the job fails, nothing reaches IBM
        wide_text = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[157] q;\nbit[1] c;\nx q[156];\n'
        cases = [
            (opaque, {}, "magic"),
            (BELL3, {"transpile": False}, "the instruction h on qubits (0,) is not supported by ibm_fez"),
            (wide_text, {}, "157 qubits; ibm_fez has 156"),
        ]
        for program, config, named in cases:
            job = sdk.create_job(program=program, config=config)
            await job.execute(timeout_s=BOUND_S)
            assert job.state is JobState.FAILED, named
            assert job.error is not None
            assert named in job.error.message
        assert emu.job_ids == []
        assert emu.count("POST", "/api/v1/jobs") == 0


async def test_the_transpilation_metrics_travel_with_a_saved_job(tmp_path: Path) -> None:
    async with ibm(job_duration_s=0.5) as (emu, sdk):
        # (a circuit is saved as OpenQASM 3 by the circuits change; text saves on its own)
        job = sdk.create_job(program=BELL3, config={"shots": 20}, fetch_diagnostics=True)
        await job.submit()
        saved = await job.save(tmp_path / "bell.json")
        async with Sdk("ibm_quantum", polling=FAST, **emu.credentials) as again:
            loaded = await again.load(saved)
            assert isinstance(loaded, Job)
            await loaded.wait(timeout_s=BOUND_S)
        assert loaded.state is JobState.COMPLETED
        assert loaded.metrics is not None
        assert loaded.metrics["transpilation"]["two_qubit_gates"] == 1
        assert loaded.result is not None
        assert set(loaded.result.data["c"]) <= {"00", "11"}
