"""notebooks/rnnlab_walkthrough.ipynb as a newcomer meets it: its install cell, run in a fresh virtual
environment where rnnlab is not installed, installs this checkout; then the whole notebook runs top to
bottom (nbclient, a kernel on that environment) on tiny synthetic reviews in quick mode and leaves the
exercise's run, the four shortfalls, the comparison and the report. Stored without outputs.

    pytest tests/test_notebook.py

The environment: a venv whose site-packages links every entry of this interpreter's site-packages
except rnnlab's own (its dist-info and the .pth of an editable install), so torch, ipykernel and the
rest are there and nothing needs downloading, while `import rnnlab` fails until the install cell runs.
(`venv --system-site-packages` would not do: it exposes the base interpreter's site-packages, which
lack torch, and never this venv's, which hold rnnlab.) pip writes only into the new venv.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import make_reviews, write_parquet_dir

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "rnnlab_walkthrough.ipynb"
SHORTFALLS = ("long-reviews", "vanishing-gradients", "serial", "bottleneck")
OUTCOMES = {"holds", "does not hold", "inconclusive"}
RNNLAB_ENTRY = re.compile(r"(__editable__[._]+)?rnnlab([-_.]|$)", re.I)  # rnnlab/, rnnlab-0.1.0.dist-info, .pth


def _cell(nb, tag: str):
    return next(c for c in nb.cells if tag in c.get("metadata", {}).get("tags", []))


def _venv_without_rnnlab(path: Path) -> Path:
    """A venv with this interpreter's packages (symlinked) but not rnnlab; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    target = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip())
    ours = {Path(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    for site in ours:
        for entry in site.iterdir():
            if not RNNLAB_ENTRY.match(entry.name) and not (target / entry.name).exists():
                (target / entry.name).symlink_to(entry)
    return python


def _run(python: Path, code: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "PIP_NO_INDEX": "1", **extra}  # every dependency is there already: pip downloads nothing


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert "colab-badge.svg" in nb.cells[0].source and "colab.research.google.com/github/" in nb.cells[0].source
    install = _cell(nb, "install")
    assert nb.cells.index(install) == 2 and install.source.startswith("RNNLAB_REPO = ")  # one knob, at the top


def test_install_cell_without_checkout_or_repo_installs_nothing(tmp_path):
    """Outside a checkout, with RNNLAB_REPO unset and rnnlab not importable: a clear message, no pip, it stops."""
    python = _venv_without_rnnlab(tmp_path / "venv")
    before = sorted(p.name for p in (tmp_path / "venv" / "lib").rglob("site-packages/*"))
    work = tmp_path / "elsewhere"
    work.mkdir()
    r = _run(python, _cell(nbformat.read(NOTEBOOK, as_version=4), "install").source, work, _clean_env())
    assert r.returncode != 0
    assert "Set RNNLAB_REPO at the top of this cell" in r.stdout and "Nothing was installed" in r.stdout
    assert "Installing" not in r.stdout and "rnnlab is not installed: set RNNLAB_REPO" in r.stderr
    assert sorted(p.name for p in (tmp_path / "venv" / "lib").rglob("site-packages/*")) == before


def test_install_cell_with_rnnlab_importable_installs_nothing(tmp_path):
    env = _clean_env(PYTHONPATH=str(REPO / "src"))
    r = _run(Path(sys.executable), _cell(nbformat.read(NOTEBOOK, as_version=4), "install").source, tmp_path, env)
    assert r.returncode == 0, r.stderr
    assert "rnnlab is already installed: nothing to install." in r.stdout and "Installing" not in r.stdout


def test_notebook_installs_from_the_checkout_then_runs_top_to_bottom(tmp_path, monkeypatch):
    python = _venv_without_rnnlab(tmp_path / "venv")
    env = _clean_env()
    probe = "import rnnlab, torch; print(rnnlab.__file__); print(torch.__file__)"
    before = _run(python, probe, REPO / "notebooks", env)
    assert before.returncode != 0 and "No module named 'rnnlab'" in before.stderr  # not installed yet
    torch_at = _run(python, "import torch, ipykernel, pandas; print(torch.__file__)", REPO, env)
    assert torch_at.returncode == 0, torch_at.stderr  # but all it needs is

    data = write_parquet_dir(tmp_path / "imdb", make_reviews(240, seed=1), make_reviews(120, seed=2))
    for k in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("RNNLAB_NOTEBOOK_DATA", str(data))
    monkeypatch.setenv("RNNLAB_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("RNNLAB_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    spec = tmp_path / "jupyter" / "kernels" / "fresh-venv"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "a venv without rnnlab", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # the kernel starts in notebooks/, as Jupyter starts it for a notebook opened in a clone
    client = nbclient.NotebookClient(nb, kernel_name="fresh-venv", timeout=600,
                                     resources={"metadata": {"path": str(REPO / "notebooks")}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails

    printed = {id(c): "".join(o.get("text", "") for o in c.outputs) for c in nb.cells if c.cell_type == "code"}
    install = printed[id(_cell(nb, "install"))]
    assert f"Installing rnnlab from this checkout: pip install -e {REPO}" in install
    assert f"rnnlab 0.1.0 from {REPO / 'src' / 'rnnlab'}" in install
    after = _run(python, probe, tmp_path, env)  # a new process in that venv imports the checkout too
    assert after.returncode == 0, after.stderr
    assert after.stdout.splitlines() == [str(REPO / "src" / "rnnlab" / "__init__.py"), torch_at.stdout.strip()]
    site = next((tmp_path / "venv" / "lib").glob("python*/site-packages"))
    installed = sorted(p.name for p in site.iterdir() if not p.is_symlink())
    assert installed and all(RNNLAB_ENTRY.match(n) for n in installed), installed  # pip added rnnlab, nothing else

    out = tmp_path / "out"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    summary = json.loads((out / "runs" / "notebook" / "summary.json").read_text())
    assert summary["epochs"] == 2 and 0 <= summary["test_acc"] <= 1
    assert json.loads((out / "seed" / "summary.json").read_text())["epochs"] == 2
    for name in (*SHORTFALLS, "compare"):
        v = json.loads((out / name / "verdict.json").read_text())
        assert v["mode"] == "quick" and v["outcome"] in OUTCOMES and "effect" in v
        assert (out / name / f"{name}.png").is_file() and (out / name / "results.csv").is_file()
        shown = next(t for t in printed.values() if f"/{name}/results.csv" in t)
        assert f"{v['outcome'].upper()}: {v['claim']}" in shown and "the claim needs" in shown
        assert f"rnnlab {'compare' if name == 'compare' else 'shortfall ' + name} --data {data}" in shown
        assert v["command"].startswith(f"rnnlab {'compare' if name == 'compare' else 'shortfall'} ")
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    picked = [p for p in json.loads((out / "explain" / "picks.json").read_text())["picks"] if p["index"] is not None]
    # the learning curve, the four shortfalls, the comparison and each picked review, shown inline
    assert len(picked) >= 1 and len(images) == 6 + len(picked)
    assert any("P(positive) = " in t for t in printed.values())
    explain = next(printed[id(c)] for c in nb.cells if c.cell_type == "code" and "rnnlab.explain" in c.source)
    if "Explaining a review needs a newer rnnlab" not in explain:
        assert (out / "explain").is_dir()
    report = next(t for t in printed.values() if "HTML report:" in t)
    assert "not run here: nothing" in report and "of 5 claims" in report
    assert (out / "report.html").is_file() and (out / "report.md").is_file()



@pytest.mark.parametrize("notebook_data, rnnlab_data, says", [
    (None, None, "data: the Hugging Face hub"),
    (None, "/somewhere/imdb", "data: /somewhere/imdb"),  # read as the commands read it, and said so
    ("/mine/imdb", "/somewhere/imdb", "data: /mine/imdb")])
def test_the_settings_cell_names_the_data_the_notebook_reads(notebook_data, rnnlab_data, says, monkeypatch,
                                                             capsys):
    """$RNNLAB_DATA made load_imdb read a local copy while the settings cell said 'the Hugging Face hub' and the
    commands it shows left out --data."""
    for var, value in (("RNNLAB_NOTEBOOK_DATA", notebook_data), ("RNNLAB_DATA", rnnlab_data)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, value)
    scope = {"Path": Path}  # imported by the install cell before it
    exec(_cell(nbformat.read(NOTEBOOK, as_version=4), "parameters").source, scope)
    assert capsys.readouterr().out.splitlines()[0] == says
    from rnnlab.data import resolve_data_path
    assert scope["DATA"] == (notebook_data or resolve_data_path(None))  # what load_imdb(DATA) reads
    assert ("--data" in scope["command"]("lab")) == (says != "data: the Hugging Face hub")
