"""notebooks/rnnlab_walkthrough.ipynb runs top to bottom (nbclient, a kernel on this interpreter) on tiny
synthetic reviews and leaves the seed run, the four shortfalls and the report; it is stored without outputs.

    pytest tests/test_notebook.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import make_reviews, write_parquet_dir

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "rnnlab_walkthrough.ipynb"
TESTS = Path(__file__).resolve().parent
SHORTFALLS = ("long-reviews", "vanishing-gradients", "serial", "bottleneck")

# Run after the parameters cell: test_experiments' TINY sweeps in place of QUICK, so all four take seconds.
TINY_CELL = f"""import sys
sys.path.insert(0, {str(TESTS)!r})
from test_experiments import TINY
from rnnlab.experiments import MODULES
for name, sweep in TINY.items():
    MODULES[name].QUICK = sweep
DEVICE = "cpu"
"""


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    data = write_parquet_dir(tmp_path / "imdb", make_reviews(240, seed=1), make_reviews(120, seed=2))
    monkeypatch.setenv("RNNLAB_NOTEBOOK_DATA", str(data))
    monkeypatch.setenv("RNNLAB_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # a kernel spec for this very interpreter, so the kernel imports the rnnlab under test
    spec = tmp_path / "jupyter" / "kernels" / "rnnlab-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "rnnlab test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))

    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "RNNLAB_NOTEBOOK_DATA" in c.source)
    nb.cells.insert(params + 1, nbformat.v4.new_code_cell(TINY_CELL))
    work = tmp_path / "work"
    work.mkdir()
    client = nbclient.NotebookClient(nb, kernel_name="rnnlab-test", timeout=300,
                                     resources={"metadata": {"path": str(work)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails

    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    out = work / "rnnlab_walkthrough"
    summary = json.loads((out / "seed" / "summary.json").read_text())
    assert summary["epochs"] == 2 and 0 <= summary["test_acc"] <= 1
    assert (out / "seed" / "learning_curve.png").is_file()
    for name in SHORTFALLS:
        d = out / "shortfalls" / name
        v = json.loads((d / "verdict.json").read_text())
        assert v["mode"] == "quick" and isinstance(v["holds"], bool)
        assert (d / f"{name}.png").is_file() and (d / "results.csv").is_file()
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 5  # the learning curve and the four shortfall figures, shown inline
    report = next(c for c in nb.cells if c.cell_type == "code" and '"report"' in c.source)
    printed = "".join(o.get("text", "") for o in report.outputs)
    assert "HTML report:" in printed and "of 4 claims hold" in printed
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    assert "rnnlab compare --data" in (out / "report.html").read_text()  # the part not run here names its command
