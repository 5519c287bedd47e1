"""``oqcs`` follows jobs without files: ``jobs``, ``attach``, ``status|wait|result|cancel`` by task id,
job files that remember their backend, composite files, an interrupted run's resume hint, and the
command line's own words (flags in errors, ``--version``, ``--tag``, ``-v``).

Each command runs as ``cli.run`` in a worker thread against a real emulator on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from oqc_style_sdk import Sdk, cli
from oqc_style_sdk.job import Job
from oqc_style_sdk.testing.emulator import start_emulator
from oqc_style_sdk.testing.oqc import LUCY_QPU_ID, OqcEmulator

BELL = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c;'


async def oqcs(*argv: str) -> int:
    return await anyio.to_thread.run_sync(cli.run, list(argv))


@pytest.fixture
def bell(tmp_path: Path) -> Path:
    path = tmp_path / "bell.qasm"
    path.write_text(BELL)
    return path


@pytest.fixture
async def emu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OqcEmulator]:
    """An OQC emulator whose URL and token are in the environment, as `oqcs emulate` prints them."""
    monkeypatch.delenv("OQCS_BACKEND", raising=False)
    monkeypatch.delenv("OQCS_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    async with start_emulator("oqc", job_duration_s=0.2, max_lifetime_s=120) as started:
        assert isinstance(started, OqcEmulator)
        for key, value in started.env.items():
            monkeypatch.setenv(key, value)
        yield started  # every wait below has its --timeout; pytest-timeout bounds the rest


def out_json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


async def test_jobs_lists_newest_first_with_filters(
    emu: OqcEmulator, bell: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for tag in ("a", "b"):
        assert await oqcs("run", str(bell), "--backend", "oqc", "--target", LUCY_QPU_ID, "--tag", tag) == 0
    capsys.readouterr()
    assert await oqcs("jobs", "--backend", "oqc", "--json") == 0
    listed = out_json(capsys)
    assert [job["tag"] for job in listed] == ["b", "a"]
    assert {job["state"] for job in listed} == {"COMPLETED"}
    assert (
        await oqcs("jobs", "--backend", "oqc", "--tag", "a", "--since", "1h", "--state", "ended", "--json")
        == 0
    )
    assert [job["tag"] for job in out_json(capsys)] == ["a"]
    assert await oqcs("jobs", "--backend", "oqc", "--limit", "1") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["TASK", "ID", "STATE", "TARGET", "SUBMITTED", "TAG"]
    assert len(table) == 2
    assert "COMPLETED" in table[1]
    assert table[1].rstrip().endswith("b")
    assert await oqcs("jobs", "--backend", "oqc", "--since", "2099-01-01") == 0
    assert "(no jobs)" in capsys.readouterr().out


async def test_bad_listing_flags_are_named(emu: OqcEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    assert await oqcs("jobs", "--backend", "oqc", "--since", "yesterday") == 2
    assert "--since must be" in capsys.readouterr().err
    assert await oqcs("jobs", "--backend", "oqc", "--limit", "0") == 2
    assert "--limit must" in capsys.readouterr().err
    assert await oqcs("jobs", "--backend", "oqc", "--state", "asleep") == 2
    assert "--state: unknown state" in capsys.readouterr().err
    assert await oqcs("jobs", "--backend", "local") == 2
    assert "none to list" in capsys.readouterr().err


async def test_a_task_id_is_followed_without_a_file(
    emu: OqcEmulator, bell: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Sdk("oqc", **emu.credentials) as sdk:  # made elsewhere: another process, another tool
        job = sdk.create_job(program=BELL, target=LUCY_QPU_ID)
        await job.submit()
        task_id = job.task_id
    assert task_id is not None
    assert await oqcs("status", task_id, "--backend", "oqc", "--json") == 0
    assert out_json(capsys)["task_id"] == task_id
    assert await oqcs("wait", task_id, "--backend", "oqc", "--timeout", "30") == 0
    assert "COMPLETED" in capsys.readouterr().out
    assert await oqcs("result", task_id, "--backend", "oqc", "--json") == 0
    assert sum(out_json(capsys)["output"]["data"]["c"].values()) == 1000
    assert await oqcs("cancel", task_id, "--backend", "oqc") == 0  # it ended first: kept
    assert "COMPLETED" in capsys.readouterr().out
    assert await oqcs("status", "0f4c2d9e-0000-4000-8000-000000000000", "--backend", "oqc") == 2
    assert "oqc has no job" in capsys.readouterr().err
    assert await oqcs("status", "not-a-task", "--backend", "oqc") == 2
    assert "not an OQC task id" in capsys.readouterr().err


async def test_attach_saves_a_file_that_remembers_its_backend(
    emu: OqcEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emu.job_duration_s = 60.0
    async with Sdk("oqc", **emu.credentials) as sdk:
        job = sdk.create_job(program=BELL, target=LUCY_QPU_ID)
        await job.submit()
        task_id = job.task_id
    assert task_id is not None
    saved = tmp_path / "found.json"
    assert await oqcs("attach", task_id, "--backend", "oqc", "--save", str(saved)) == 0
    assert task_id in capsys.readouterr().out
    # No --backend: the file names it (its endpoint is checked against the settings, not used).
    assert await oqcs("status", str(saved), "--json") == 0
    assert out_json(capsys)["state"] in ("SUBMITTED", "RUNNING")
    assert await oqcs("cancel", str(saved), "--timeout", "30") == 3
    assert "CANCELLED" in capsys.readouterr().out
    assert json.loads(saved.read_text())["jobs"][0]["state"] == "CANCELLED"


async def test_a_file_of_another_endpoint_is_refused_in_cli_words(
    emu: OqcEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Sdk("oqc", **emu.credentials) as sdk:
        job = sdk.create_job(program=BELL, target=LUCY_QPU_ID)
        await job.execute(timeout_s=30)
        saved = await job.save(tmp_path / "job.json")
    async with start_emulator("oqc", max_lifetime_s=60) as other:
        for key, value in other.env.items():
            monkeypatch.setenv(key, value)
        assert await oqcs("status", str(saved)) == 2
    err = capsys.readouterr().err
    assert "--config" in err
    assert "Sdk" not in err
    assert other.env["OQC_AUTHENTICATION_TOKEN"] not in err


async def test_a_composite_file_works_with_every_follow_command(
    emu: OqcEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Sdk("oqc", **emu.credentials) as sdk:
        composite = sdk.create_job(program=[BELL, BELL], target=LUCY_QPU_ID)
        await composite.submit()
        saved = await composite.save(tmp_path / "both.json")
    assert await oqcs("status", str(saved)) == 0
    assert "2 jobs" in capsys.readouterr().out
    assert await oqcs("wait", str(saved), "--timeout", "30", "--json") == 0
    doc = out_json(capsys)
    assert doc["state"] == "COMPLETED"
    assert len(doc["jobs"]) == 2
    assert await oqcs("result", str(saved)) == 0
    assert capsys.readouterr().out.count("c: ") == 2
    assert await oqcs("cancel", str(saved)) == 0


async def test_an_interrupted_run_says_how_to_resume_or_cancel(
    emu: OqcEmulator, bell: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    emu.job_duration_s = 60.0

    async def interrupted(self: Job) -> None:
        raise KeyboardInterrupt  # what Ctrl-C does to the wait

    monkeypatch.setattr(Job, "_wait_terminal", interrupted)
    assert await oqcs("run", str(bell), "--backend", "oqc", "--target", LUCY_QPU_ID, "--quiet") == 130
    err = capsys.readouterr().err
    (task_id,) = emu.task_ids
    assert f"oqcs wait {task_id} --backend oqc" in err
    assert f"oqcs cancel {task_id} --backend oqc" in err
    monkeypatch.undo()


async def test_the_cli_speaks_cli(emu: OqcEmulator, bell: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert await oqcs("run", str(bell), "--backend", "oqc") == 2
    err = capsys.readouterr().err
    assert "--target" in err
    assert "qpu_id" not in err
    assert await oqcs("run", str(bell), "--backend", "oqc", "--target", "qpu:nowhere") == 2
    assert "--target: unknown target" in capsys.readouterr().err
    assert await oqcs("run", str(bell), "--backend", "oqc", "--target", LUCY_QPU_ID, "--shots", "0") == 2
    assert "--shots must" in capsys.readouterr().err
    assert await oqcs("-vv", "targets", "--backend", "oqc") == 0
    err = capsys.readouterr().err
    assert "oqc_style_sdk" in err
    assert emu.token not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.run(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("oqcs ")


async def test_an_inactive_qpu_is_refused_unless_queued(
    emu: OqcEmulator, bell: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from oqc_style_sdk.testing.oqc import INACTIVE_QPU_ID

    assert await oqcs("submit", str(bell), "--backend", "oqc", "--target", INACTIVE_QPU_ID) == 2
    err = capsys.readouterr().err
    assert "INACTIVE" in err
    assert "--queue" in err
    assert "config=" not in err
    assert await oqcs("submit", str(bell), "--backend", "oqc", "--target", INACTIVE_QPU_ID, "--queue") == 0
    assert "SUBMITTED" in capsys.readouterr().out


async def test_ctrl_c_on_a_real_run_prints_the_commands_to_resume(emu: OqcEmulator, bell: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    emu.job_duration_s = 60.0
    # As an interactive shell starts a command: Ctrl-C at its default and not blocked, whatever this
    # test process inherited or blocked meanwhile (a child inherits an ignored or a blocked SIGINT
    # across exec, and would then never see it).
    start = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT]); "
        "from oqc_style_sdk.cli import main; main()"
    )
    argv = [sys.executable, "-c", start]
    argv += ["run", str(bell), "--backend", "oqc", "--target", LUCY_QPU_ID, "--quiet"]
    # The child's start-up (imports) can take long on a loaded machine: the one deadline is fail_after's.
    with anyio.fail_after(120):
        async with await anyio.open_process(argv, env=dict(os.environ), stderr=subprocess.PIPE) as proc:
            for _ in range(2400):  # until the task is at OQC (the emulator has no event for it)
                if emu.task_ids and await emu.status_of(emu.task_ids[0]) in ("SUBMITTED", "RUNNING"):
                    break
                await anyio.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            assert proc.stderr is not None
            err = b"".join([chunk async for chunk in proc.stderr]).decode()
            code = await proc.wait()
            assert code == 130, f"exit {code} after Ctrl-C; stderr: {err!r}"
    (task_id,) = emu.task_ids
    assert f"oqcs wait {task_id} --backend oqc" in err
    assert f"oqcs cancel {task_id} --backend oqc" in err
    assert await emu.status_of(task_id) in (
        "SUBMITTED",
        "RUNNING",
    )  # left running, not cancelled behind the user's back


async def test_an_interrupted_wait_on_a_file_names_the_file(
    emu: OqcEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    emu.job_duration_s = 60.0
    async with Sdk("oqc", **emu.credentials) as sdk:
        job = sdk.create_job(program=BELL, target=LUCY_QPU_ID)
        await job.submit()
        saved = await job.save(tmp_path / "job.json")

    async def interrupted(self: Job) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Job, "_wait_terminal", interrupted)
    assert await oqcs("wait", str(saved), "--quiet") == 130
    err = capsys.readouterr().err
    assert f"oqcs wait {saved}     follows it" in err
    assert f"oqcs cancel {saved}   cancels it" in err
