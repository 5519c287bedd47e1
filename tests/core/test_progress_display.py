"""progress=True, the rich/HTML representations, the counts histogram and the quiet package logger."""

from __future__ import annotations

import ast
import io
import logging
import sys
from typing import Any

import pytest

from oqc_style_sdk import JobTimeoutError, Sdk, progress
from oqc_style_sdk.display import counts_text
from oqc_style_sdk.job_output import JobOutputProxy, JobResult
from oqc_style_sdk.plotting import INSTALL_HINT, counts_of, plot_counts
from tests.common import BELL, ROOT


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_progress_is_off_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    async with Sdk(seed=1) as sdk:
        job = sdk.create_job(program=BELL)
        await job.execute(timeout_s=30)
        composite = sdk.create_job(program=[BELL, BELL])
        await composite.execute(timeout_s=30)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""


async def test_job_progress_prints_state_changes_without_a_tty(capsys: pytest.CaptureFixture[str]) -> None:
    async with Sdk(min_duration_s=0.5, seed=1) as sdk:
        job = sdk.create_job(program=BELL)
        outputs = await job.execute(timeout_s=30, progress=True)
        assert outputs.ok
        await job.submit()
        await job.wait(timeout_s=30, progress=True)
    err = capsys.readouterr().err
    assert f"Job {job.id[:8]} on local:simulator: 0/1 ended" in err
    assert "1/1 ended  COMPLETED" in err


async def test_composite_progress_shows_completed_over_total(capsys: pytest.CaptureFixture[str]) -> None:
    async with Sdk(min_duration_s=0.3, seed=1) as sdk:
        composite = sdk.create_job(program=[BELL, BELL, BELL])
        await composite.execute(timeout_s=30, progress=True)
        await composite.submit()
        await composite.wait(timeout_s=30, progress=True)
    err = capsys.readouterr().err
    assert "0/3 ended" in err
    assert "3/3 ended  3 COMPLETED" in err


async def test_progress_errors_are_raised_unwrapped(capsys: pytest.CaptureFixture[str]) -> None:
    async with Sdk(min_duration_s=5, seed=1) as sdk:
        job = sdk.create_job(program=BELL)
        with pytest.raises(JobTimeoutError):
            await job.execute(timeout_s=0.3, progress=True)
        assert job.active
        await job.cancel()
    assert "0/1 ended" in capsys.readouterr().err


async def test_rich_progress_on_a_tty() -> None:
    pytest.importorskip("rich")
    stream = _Tty()
    async with Sdk(min_duration_s=0.3, seed=1) as sdk:
        composite = sdk.create_job(program=[BELL, BELL])
        await composite.submit()
        await progress.show_progress(composite, composite.wait(timeout_s=30), stream=stream)
    assert "2/2" in stream.getvalue()


async def test_notebook_progress_updates_one_display(monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[Any] = []

    class Handle:
        def update(self, obj: Any) -> None:
            shown.append(obj.data)

    class FakeDisplay:
        @staticmethod
        def HTML(data: str) -> Any:
            return type("H", (), {"data": data})()

        @staticmethod
        def display(obj: Any, display_id: bool) -> Handle:
            assert display_id
            return Handle()

    monkeypatch.setattr(progress, "_in_notebook", lambda: True)
    monkeypatch.setattr(progress.importlib, "import_module", lambda name: FakeDisplay)
    async with Sdk(seed=1) as sdk:
        job = sdk.create_job(program=BELL)
        await job.execute(timeout_s=30, progress=True)
    assert "<progress" in shown[-1]
    assert "1/1 ended" in shown[-1]


def test_not_in_a_notebook_outside_jupyter() -> None:
    assert progress._in_notebook() is False


async def test_html_and_rich_representations() -> None:
    rich_console = pytest.importorskip("rich.console")
    async with Sdk(seed=1) as sdk:
        job = sdk.create_job(program=BELL, config={"shots": 100})
        assert "no run has ended yet" in job._repr_html_()
        await job.execute(timeout_s=30)
        await job.execute(timeout_s=30)
        composite = sdk.create_job(program=[BELL, "OPENQASM 9;"])
        await composite.execute(timeout_s=30)
    page = job._repr_html_()
    assert "COMPLETED" in page
    assert "simulator" in page
    assert "history (2)" in page
    assert "<table>" in page
    assert repr(job).startswith("<Job ")  # unchanged
    assert "1/2 ended" not in composite._repr_html_()
    assert "2/2 ended" in composite._repr_html_()
    assert "FAILED" in composite._repr_html_()
    assert "JobOutputProxy</b> (2 outputs)" in job.history._repr_html_()

    console = rich_console.Console(file=io.StringIO(), width=200, record=True)
    console.print(job)
    console.print(composite)
    console.print(job.history)
    text = console.export_text()
    assert "history (2)" in text
    assert "CompositeJob" in text
    assert "counts" in text


def test_counts_text_clips() -> None:
    data = {"c": {format(i, "04b"): i + 1 for i in range(16)}}
    assert counts_text(data, limit=2) == "c: 1111:16 1110:15 … 14 more"
    assert counts_text("x" * 100).endswith("…")
    assert JobOutputProxy([JobResult(data={"c": {"0": 1}})])._repr_html_().count("<tr>") == 2


async def test_plot_counts() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    async with Sdk(seed=1) as sdk:
        job = sdk.create_job(program=BELL)
        with pytest.raises(Exception, match="no result"):
            counts_of(job)
        await job.execute(timeout_s=30)
    ax = plot_counts(job, title="Bell")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["00", "11"]
    assert counts_of(job.result) == counts_of(job.result.data, "c")
    assert counts_of({"c": {"0": 3}, "d": {"1": 2}}, "d") == {"1": 2}
    with pytest.raises(ValueError, match="no register"):
        counts_of({"c": {"0": 3}}, "x")
    with pytest.raises(ValueError, match="not counts"):
        counts_of([])


def test_plot_counts_without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"oqc-style-sdk\[plot\]") as exc:
        plot_counts({"0": 1})
    assert str(exc.value) == INSTALL_HINT


def test_the_package_logger_is_quiet_by_default() -> None:
    logger = logging.getLogger("oqc_style_sdk")
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)


def test_no_module_configures_logging_or_prints() -> None:
    package = ROOT / "oqc_style_sdk"
    printing = {"cli.py", "demo.py", "progress.py"}  # a CLI, `make demo`, and progress when asked for
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            if isinstance(node.func, ast.Attribute):
                assert node.func.attr != "basicConfig", path
            if isinstance(node.func, ast.Name) and node.func.id == "print":
                assert path.name in printing, path  # cli.py: oqcs and arazzo/cli.py


def test_output_text_of_every_kind() -> None:
    from oqc_style_sdk.display import output_text
    from oqc_style_sdk.job_output import JobCancellation, JobError, JobPending
    from oqc_style_sdk.state import JobState

    assert output_text(JobError(message="boom", code="E1")) == "E1: boom"
    assert output_text(JobCancellation(reason="stop")) == "stop"
    assert output_text(JobPending(pending_state=JobState.RUNNING)) == "RUNNING"
    page = JobOutputProxy([JobCancellation(), JobPending()])._repr_html_()
    assert "CANCELLED" in page
    assert "CREATED" in page
