"""The `oqcs` command on the local simulator: what it prints and the exit codes it documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oqc_style_sdk import cli
from tests.common import BELL, DATA


@pytest.fixture
def bell(tmp_path: Path) -> Path:
    path = tmp_path / "bell.qasm"
    path.write_text(BELL)
    return path


def test_run_prints_counts_and_exits_0(bell: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["run", str(bell), "--backend", "local", "--shots", "200"]) == 0
    out = capsys.readouterr().out
    assert "COMPLETED" in out
    assert "c: 00:" in out


def test_run_json_is_machine_readable(bell: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["run", str(bell), "--backend", "local", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["state"] == "COMPLETED"
    assert sum(doc["output"]["data"]["c"].values()) == 1000
    assert set(doc["output"]["data"]["c"]) <= {"00", "11"}


def test_a_failing_program_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.qasm"
    bad.write_text(BELL.replace("OPENQASM 2.0", "OPENQASM 5.0"))
    assert cli.run(["run", str(bad), "--backend", "local"]) == 1
    assert "but given 5.0" in capsys.readouterr().out


def test_bad_input_exits_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["run", str(tmp_path / "missing.qasm"), "--backend", "local"]) == 2
    assert "cannot read" in capsys.readouterr().err
    empty = tmp_path / "empty.qasm"
    empty.write_text("  ")
    assert cli.run(["run", str(empty), "--backend", "local"]) == 2
    assert "empty" in capsys.readouterr().err
    assert cli.run(["run", str(empty), "--backend", "nope"]) == 2
    assert "unknown backend" in capsys.readouterr().err


def test_saved_job_can_be_read_back(bell: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "job.json"
    assert cli.run(["run", str(bell), "--backend", "local", "--save", str(saved)]) == 0
    capsys.readouterr()
    assert cli.run(["result", str(saved), "--backend", "local", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["state"] == "COMPLETED"
    assert len(doc["history"]) == 1
    assert cli.run(["status", str(saved), "--backend", "local"]) == 0
    assert cli.run(["cancel", str(saved), "--backend", "local"]) == 0  # finished: kept
    assert "COMPLETED" in capsys.readouterr().out


def test_submit_on_local_is_refused_with_the_reason(
    bell: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Each oqcs command is its own process (its own local simulator): a submitted run would be lost.
    saved = tmp_path / "job.json"
    assert cli.run(["submit", str(bell), "--backend", "local", "--save", str(saved)]) == 2
    assert "would lose the job" in capsys.readouterr().err
    assert not saved.exists()


def test_targets(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["targets", "--backend", "local", "--json"]) == 0
    ids = [t["id"] for t in json.loads(capsys.readouterr().out)]
    assert "simulator" in ids
    assert cli.run(["targets", "--backend", "local"]) == 0
    assert "Simulator" in capsys.readouterr().out


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.run(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes" in out
    assert "emulate" in out


def test_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["demo"]) == 0
    assert "A composite job" in capsys.readouterr().out


def test_workflow_commands_are_wired(capsys: pytest.CaptureFixture[str]) -> None:
    seed = DATA / "arazzo" / "002_aaeb209fff7697ab.txt"
    assert cli.run(["workflow", "show", str(seed)]) == 0
    assert "on success stillActive: goto pollRun" in capsys.readouterr().out
    # A refused connection is an error with its exit code, never a success.
    code = cli.run(
        [
            "workflow",
            "run",
            str(seed),
            "--input",
            "runId=1",
            "--input",
            "token=t",
            "--server",
            "databricks=http://127.0.0.1:9",
        ]
    )
    assert code == 5
    assert "127.0.0.1:9" in capsys.readouterr().err
