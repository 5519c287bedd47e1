"""`oqcs` with a config file, JSON programs for every backend, saved jobs on a vendor, live progress."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

from oqc_style_sdk import cli
from oqc_style_sdk.cli_config import CliConfig, default_config_path, load_config
from oqc_style_sdk.testing import start_emulator
from tests.common import BELL, DATA


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OQCS_CONFIG", raising=False)
    monkeypatch.delenv("OQCS_BACKEND", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def bell(tmp_path: Path) -> Path:
    path = tmp_path / "bell.qasm"
    path.write_text(BELL)
    return path


def _toml(value: Any) -> str:
    return json.dumps(value)  # a JSON string or number is a TOML one


def _config(path: Path, backend: str | None, settings: dict[str, dict[str, Any]]) -> Path:
    lines = [] if backend is None else [f"backend = {_toml(backend)}"]
    for name, table in settings.items():
        lines.append(f"[backends.{name}]")
        lines += [f"{k} = {_toml(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


async def _oqcs(*argv: str) -> int:
    return await anyio.to_thread.run_sync(cli.run, list(argv))


def test_default_config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_config_path() == tmp_path / "xdg" / "oqcs" / "config.toml"
    monkeypatch.setenv("OQCS_CONFIG", str(tmp_path / "c.toml"))
    assert default_config_path() == tmp_path / "c.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.delenv("OQCS_CONFIG")
    assert default_config_path() == Path.home() / ".config" / "oqcs" / "config.toml"


def test_no_config_file_is_no_error_and_the_backend_order(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config()
    assert config == CliConfig()
    assert config.resolve_backend(None) == "local"
    config = CliConfig(backend="oqc")
    assert config.resolve_backend(None) == "oqc"
    monkeypatch.setenv("OQCS_BACKEND", "windmill")
    assert config.resolve_backend(None) == "windmill"
    assert config.resolve_backend("local") == "local"


def test_the_default_config_file_chooses_the_backend(
    tmp_path: Path, bell: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "xdg" / "oqcs").mkdir(parents=True)
    _config(tmp_path / "xdg" / "oqcs" / "config.toml", "local", {"local": {"seed": 3}})
    assert cli.run(["run", str(bell), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["backend"] == "local"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("backend = [", "not valid TOML"),
        ("colour = 'red'", "unknown keys colour"),
        ("backend = 3", "'backend' must be a string"),
        ("backends = 3", "must be tables"),
    ],
)
def test_a_bad_config_file_exits_2(
    tmp_path: Path, bell: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    assert cli.run(["run", str(bell), "--config", str(bad)]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_explicit_config_file_exits_2(
    tmp_path: Path, bell: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OQCS_CONFIG", str(tmp_path / "nope.toml"))
    assert cli.run(["run", str(bell)]) == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_a_bad_json_program_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text("{nope")
    assert cli.run(["run", str(spec), "--backend", "databricks"]) == 2
    assert "not valid JSON" in capsys.readouterr().err


async def test_oqc_from_a_config_file_run_submit_wait_result_cancel(
    tmp_path: Path, bell: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with start_emulator("oqc", job_duration_s=0.5) as emu:
        config = _config(
            tmp_path / "oqcs.toml",
            "oqc",
            {"oqc": {**emu.credentials, "default_target": "qpu:uk:2:d865b5a184"}},
        )
        assert await _oqcs("run", str(bell), "--config", str(config), "--target", "qpu:uk:2:d865b5a184") == 0
        assert "c: 00:" in capsys.readouterr().out
        saved = tmp_path / "job.json"
        assert await _oqcs("submit", str(bell), "--config", str(config), "--save", str(saved)) == 0
        capsys.readouterr()
        assert await _oqcs("wait", str(saved), "--config", str(config), "--json", "--timeout", "30") == 0
        assert json.loads(capsys.readouterr().out)["state"] == "COMPLETED"
        assert await _oqcs("result", str(saved), "--config", str(config), "--json") == 0
        assert json.loads(capsys.readouterr().out)["output"]["kind"] == "result"
        # A long job, cancelled from the command line.
        emu.job_duration_s = 30
        assert await _oqcs("submit", str(bell), "--config", str(config), "--save", str(saved)) == 0
        assert await _oqcs("status", str(saved), "--config", str(config), "--json") == 0
        assert await _oqcs("cancel", str(saved), "--config", str(config)) == 3
        assert "CANCELLED" in capsys.readouterr().out


async def test_databricks_and_windmill_take_json_programs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "run_name": "nightly",
                "tasks": [
                    {
                        "task_key": "main",
                        "existing_cluster_id": "0923-164208-meows279",
                        "notebook_task": {"notebook_path": "/Users/me@example.com/nb"},
                    }
                ],
            }
        )
    )
    async with start_emulator("databricks", job_duration_s=0.2) as emu:
        for key, value in emu.env.items():
            monkeypatch.setenv(key, value)
        assert await _oqcs("run", str(spec), "--backend", "databricks", "--json") == 0
        assert "main" in json.loads(capsys.readouterr().out)["output"]["data"]
    script = tmp_path / "script.txt"  # JSON text without the .json suffix
    script.write_text('{"path": "u/demo/quick", "args": {"x": 21}}')
    async with start_emulator("windmill", job_duration_s=0.2) as emu:
        config = _config(tmp_path / "w.toml", None, {"windmill": dict(emu.credentials)})
        assert await _oqcs("run", str(script), "--backend", "windmill", "--config", str(config)) == 0
        out = capsys.readouterr().out
        assert "COMPLETED" in out
        assert '"x": 21' in out


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_only(bell: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("rich")
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    assert cli.run(["run", str(bell), "--backend", "local"]) == 0
    assert "1/1" in tty.getvalue()
    for quiet in ("--json", "--quiet"):
        tty = _Tty()
        monkeypatch.setattr(sys, "stderr", tty)
        assert cli.run(["run", str(bell), "--backend", "local", quiet]) == 0
        assert tty.getvalue() == ""


def test_help_explains_config_and_programs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.run(["run", "--help"])
    out = capsys.readouterr().out
    assert "config.toml" in out
    assert "databricks" in out
    assert "--quiet" in out


def test_workflow_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    seed = DATA / "arazzo" / "002_aaeb209fff7697ab.txt"
    assert cli.run(["workflow", "show", str(seed), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["workflows"][0]["workflowId"] == "cancel-active-run"


def test_an_unreadable_config_file_exits_2(
    tmp_path: Path, bell: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.run(["run", str(bell), "--config", str(tmp_path)]) == 2  # a directory
    assert "cannot read config file" in capsys.readouterr().err
