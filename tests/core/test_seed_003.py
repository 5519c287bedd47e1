"""Seed 003 ("Working with Jobs") as tests: its examples are the public API's contract.

Each ``>>>`` example keeps its body verbatim; only the constructor and the imports change:
``OqcSdk(url=..., authentication_token=..., default_qpu_id=X)`` → ``Sdk(default_target=X)``,
``OqcSdk(url=..., authentication_token=...)`` → ``Sdk()`` (the embedded local simulator, which
offers ``qpu:uk:2:d865b5a184`` as a noiseless stand-in), and ``oqc_qcaas_sdk`` → ``oqc_style_sdk``.
The doctests call ``asyncio.run`` themselves, so they are plain (sync) tests. The page's other
snippets (result fields, ``outputs.first``, ``.one``, diagnostics) follow as async tests.

The example bodies are kept byte for byte as the page prints them, so the formatter is off for them
and long lines and the page's unused locals (``outputs = await job.execute(...)``) are allowed.
"""

# ruff: noqa: E501, F841

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from oqc_style_sdk import JobOutputProxy, JobState, Sdk
from oqc_style_sdk.exceptions import JobFailed
from oqc_style_sdk.job_output import JobError, JobResult

QPU_ID = "qpu:uk:2:d865b5a184"
PROGRAM = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'


# -- the page's >>> examples ------------------------------------------------------------------------
# fmt: off


def test_default_qpu_at_initialisation() -> None:
    async def run():
        async with Sdk(default_target='qpu:uk:2:d865b5a184') as client:
            program = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
            job = client.create_job(program=program)  # qpu_id not required
            outputs = await job.execute(timeout_s=10)
            return job.completed

    assert asyncio.run(run()) is True


def test_discover_then_set() -> None:
    async def run():
        async with Sdk() as client:
            qpus = await client.list_qpus()
            simulator = next(
                (q for q in qpus if q.get("name") == "Simulator" and q.get("status") == "ACTIVE"),
                None
            )
            client.set_default_qpu(simulator["id"] if simulator else 'qpu:uk:2:d865b5a184')
            program = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
            job = client.create_job(program=program)
            outputs = await job.execute(timeout_s=10)
            return job.completed

    assert asyncio.run(run()) is True


def test_execution_history() -> None:
    async def run():
        async with Sdk() as client:
            qpu_id = 'qpu:uk:2:d865b5a184'
            program = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
            job = client.create_job(program=program, qpu_id=qpu_id)
            result = await job.execute(timeout_s=10)
            history = job.history.all()
            return len(history), isinstance(history[0], JobResult)

    assert asyncio.run(run()) == (1, True)


def test_re_running_a_job() -> None:
    async def run():
        async with Sdk() as client:
            qpu_id = 'qpu:uk:2:d865b5a184'
            program = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
            job = client.create_job(program=program, qpu_id=qpu_id)
            # First run
            await job.execute(timeout_s=10)
            first_task = job.task_id
            # Second run: job is terminal, so execute() resets and resubmits
            await job.execute(timeout_s=10)
            second_task = job.task_id
            return first_task != second_task, len(job.history.all()), job.completed

    assert asyncio.run(run()) == (True, 2, True)


def test_reexecute_an_output() -> None:
    async def run():
        async with Sdk() as client:
            qpu_id = 'qpu:uk:2:d865b5a184'
            program = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
            job = client.create_job(program=program, qpu_id=qpu_id)
            first_outputs = await job.execute(timeout_s=10)
            # Resubmit with the exact same settings as the first run
            second_outputs = await first_outputs.first.reexecute()
            return job.completed, len(job.history.all())

    assert asyncio.run(run()) == (True, 2)


def test_reconfigure_with_a_memento() -> None:
    async def run():
        async with Sdk() as client:
            qpu_id = 'qpu:uk:2:d865b5a184'
            bad_program = 'OPENQASM 5.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
            job = client.create_job(program=bad_program, qpu_id=qpu_id)
            first_outputs = await job.execute(timeout_s=10)
            # Restore the first run's settings, but swap in a corrected program
            good_program = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
            job.reconfigure(memento=first_outputs.first, program=good_program)
            await job.execute(timeout_s=10)
            history = job.history.all()
            return len(history), sum(1 for h in history if h.is_error), sum(1 for h in history if h.ok)

    assert asyncio.run(run()) == (2, 1, 1)


def test_raise_for_status() -> None:
    async def run():
        async with Sdk() as client:
            qpu_id = 'qpu:uk:2:d865b5a184'
            bad_program = 'OPENQASM 5.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
            job = client.create_job(program=bad_program, qpu_id=qpu_id)
            await job.execute(timeout_s=10)
            try:
                job.raise_for_status()
                return "Success"
            except JobFailed:
                return "Failed"

    assert asyncio.run(run()) == 'Failed'


def test_history_of_a_failure() -> None:
    async def run():
        async with Sdk() as client:
            qpu_id = 'qpu:uk:2:d865b5a184'
            bad_program = 'OPENQASM 5.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
            job = client.create_job(program=bad_program, qpu_id=qpu_id)
            await job.execute(timeout_s=15)
            good_program = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
            job.reconfigure(program=good_program)
            await job.execute(timeout_s=15)
            history = job.history.all()
            failed_runs = [h for h in history if h.is_error]
            successful_runs = [h for h in history if h.ok]
            if failed_runs:
                failed_program = failed_runs[0].program
                return len(history), len(failed_runs), len(successful_runs), 'OPENQASM 5.0' in failed_program
            return None

    assert asyncio.run(run()) == (2, 1, 1, True)


def test_cancellation() -> None:
    async def run():
        async with Sdk() as client:
            qpu_id = 'qpu:uk:2:d865b5a184'
            program = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q[0] -> c[0];'
            job = client.create_job(program=program, qpu_id=qpu_id)
            await job.submit()
            await job.cancel()
            return job.state

    state = asyncio.run(run())
    assert state is JobState.CANCELLED
    assert repr(state) == "<JobState.CANCELLED: 'CANCELLED'>"


# fmt: on


# -- the page's other snippets ---------------------------------------------------------------------


async def test_result_fields() -> None:
    async with Sdk() as sdk:
        job = sdk.create_job(program=PROGRAM, qpu_id=QPU_ID)
        assert job.result is None  # before the first run completes
        await job.execute(timeout_s=30)

        result = job.result
        assert isinstance(result, JobResult)
        assert set(result.data) == {"c"}
        assert set(result.data["c"]) <= {"0", "1"}
        assert sum(result.data["c"].values()) == 1000
        assert result.program == PROGRAM
        assert result.qpu_id == QPU_ID
        assert result.task_id == job.task_id
        assert isinstance(result.received, datetime)
        assert result.received.tzinfo is not None
        assert result.received.utcoffset() == timedelta(0)
        assert result.ok is True
        assert result.is_error is False


async def test_outputs_first_is_job_result() -> None:
    async with Sdk() as sdk:
        job = sdk.create_job(program=PROGRAM, qpu_id=QPU_ID)
        outputs = await job.execute(timeout_s=30)

        assert isinstance(outputs, JobOutputProxy)
        result = outputs.first  # same JobResult as job.result
        assert result is job.result
        assert job.outputs.first is job.result
        assert outputs.one is job.result
        counts = result.data
        assert counts == job.result.data
        assert outputs.all() == [job.result]
        assert outputs.results().all() == [job.result]
        assert outputs.errors().all() == []


async def test_one_raises_value_error_unless_exactly_one() -> None:
    async with Sdk() as sdk:
        job = sdk.create_job(program=PROGRAM, qpu_id=QPU_ID)
        with pytest.raises(ValueError, match="exactly one"):
            job.outputs.one  # noqa: B018 - nothing yet
        await job.execute(timeout_s=30)
        assert job.history.one is job.result
        await job.execute(timeout_s=30)
        with pytest.raises(ValueError, match="exactly one"):
            job.history.one  # noqa: B018 - two runs
        assert job.outputs.one is job.result


async def test_failed_run_error_fields() -> None:
    async with Sdk() as sdk:
        job = sdk.create_job(program=PROGRAM.replace("2.0", "5.0"), qpu_id=QPU_ID)
        await job.execute(timeout_s=30)
        assert job.result is None
        error = job.error
        assert isinstance(error, JobError)
        assert (error.ok, error.is_error) == (False, True)
        assert "5.0" in error.message
        assert job.outputs.first is error


async def test_fetch_diagnostics_filled_after_a_run_and_kept_by_save_load(tmp_path: Path) -> None:
    async with Sdk() as sdk:
        job = sdk.create_job(program=PROGRAM, qpu_id=QPU_ID, fetch_diagnostics=True)
        assert (job.timings, job.metrics, job.metadata) == (None, None, None)
        await job.execute(timeout_s=30)
        assert job.completed
        assert isinstance(job.timings, dict)
        assert isinstance(job.metrics, dict)
        assert isinstance(job.metadata, dict)
        assert job.metrics["num_qubits"] == 1

        path = await job.save(tmp_path / "job.json")
        loaded = await sdk.load(path)
        assert loaded.fetch_diagnostics is True
        assert (loaded.timings, loaded.metrics, loaded.metadata) == (job.timings, job.metrics, job.metadata)
        assert loaded.result is not None
        assert loaded.result.data == job.result.data

        # the flag is kept: the reloaded job fetches diagnostics on its next run too
        first_timings = loaded.timings
        await loaded.execute(timeout_s=30)
        assert loaded.completed
        assert loaded.timings is not None
        assert loaded.timings != first_timings
        assert len(loaded.history) == 2


async def test_without_fetch_diagnostics_nothing_is_fetched() -> None:
    async with Sdk() as sdk:
        job = sdk.create_job(program=PROGRAM, qpu_id=QPU_ID)
        await job.execute(timeout_s=30)
        assert job.completed
        assert (job.timings, job.metrics, job.metadata) == (None, None, None)
