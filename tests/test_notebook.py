"""notebooks/walkthrough.ipynb runs top to bottom on this interpreter, without errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"
KERNEL = "detector-test"


def test_notebook_is_committed_clean():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), \
        "commit the notebook with outputs cleared"
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 8


@pytest.fixture
def kernel_spec(tmp_path, monkeypatch) -> str:
    """A kernel spec for *this* interpreter in a temporary Jupyter path (nothing in $HOME)."""
    pytest.importorskip("ipykernel")
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "detector test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # The inline backend must produce the figures, whatever the caller's MPLBACKEND.
    monkeypatch.delenv("MPLBACKEND", raising=False)
    from jupyter_client.kernelspec import KernelSpecManager

    assert KernelSpecManager().get_kernel_spec(KERNEL).argv[0] == sys.executable
    return KERNEL


def test_walkthrough_runs(kernel_spec, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    work = tmp_path / "run"
    work.mkdir()
    scratch = tmp_path / "tmp"  # the notebook writes its HTML report to a temp folder
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    # cwd of the kernel is the temporary folder: nothing is written into the repository.
    NotebookClient(nb, timeout=300, kernel_name=kernel_spec,
                   resources={"metadata": {"path": str(work)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5, "histogram, budget curves, scheme recall, explanation, backtest"
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                     for o in outputs)
    assert "flag threshold" in text and "precision@1%" in text
    assert "score_drop_if_typical" in text  # the feature-by-feature table
    assert "wrote" in text and "report.html" in text
    assert list(work.iterdir()) == []
    assert len(list(scratch.glob("detector-walkthrough-*/report.html"))) == 1
    # The backtest section replays into its own temp folder and reads what the CLI writes.
    out = next(scratch.glob("detector-backtest-*")) / "out"
    periods = pd.read_csv(out / "periods.csv")
    assert set(periods["strategy"]) == {"hybrid", "outcomes", "random"}
    assert "periods.csv" in "".join(c.source for c in nb.cells)
