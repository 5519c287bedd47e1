"""examples/quickstart.ipynb runs from top to bottom, on this venv's Python, against the emulators."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.common import ROOT

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


@pytest.mark.timeout(240)
def test_the_example_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A kernel spec of our own, so the kernel is this venv's Python whatever else is installed.
    spec = tmp_path / "jupyter" / "kernels" / "oqcs-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "oqcs test", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="oqcs-test",
        timeout=120,
        startup_timeout=60,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("history (2)" in h for h in html)  # the Job's table
    assert any("CompositeJob" in h and "3/3 ended" in h for h in html)
    assert any("1/1 ended" in h for h in html)  # a progress display, updated in place
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the histogram
