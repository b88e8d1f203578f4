"""`rnnlab lab --quick`: every step runs on tiny synthetic data and the report is written; a rerun
keeps every finished step; an interrupted step resumes; an --out holding a different run stops."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import make_reviews, write_parquet_dir
from rnnlab import compare, lab
from rnnlab.cli import main
from rnnlab.experiments import MODULES
from test_compare import TINY as TINY_COMPARE
from test_experiments import TINY as TINY_SHORTFALLS


def _invoke(d, *extra):
    data = write_parquet_dir(d / "imdb", make_reviews(200, seed=1), make_reviews(100, seed=2))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RNNLAB_CACHE", str(d / "cache"))
        mp.setattr(compare, "QUICK", TINY_COMPARE)
        mp.setattr(lab, "QUICK_SEED", {"n_train": 0, "n_test": 0, "epochs": 2})
        for name, sweep in TINY_SHORTFALLS.items():
            mp.setattr(MODULES[name], "QUICK", sweep)
        return CliRunner().invoke(main, ["lab", "--quick", "--seeds", "1", "--data", str(data), "--out",
                                         str(d / "lab"), "--device", "cpu", *extra])


@pytest.fixture(scope="module")
def labbed(tmp_path_factory):
    d = tmp_path_factory.mktemp("lab")
    first = _invoke(d)
    second = _invoke(d)
    return first, second, d / "lab"


def test_lab_runs_every_step_and_writes_the_report(labbed):
    first, _, out = labbed
    assert first.exit_code == 0, (first.output, first.exception)
    result = json.loads(first.stdout.strip().splitlines()[-1])
    assert result["mode"] == "quick"
    assert result["steps"] == {"seed": "ran", "long-reviews": "ran", "vanishing-gradients": "ran", "serial": "ran",
                               "bottleneck": "ran", "compare": "ran", "report": "ran"}
    assert json.loads((out / "seed" / "summary.json").read_text())["epochs"] == 2
    for name in MODULES:
        assert json.loads((out / "shortfalls" / name / "verdict.json").read_text())["mode"] == "quick"
    assert (out / "compare" / "table.md").exists()
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") or html.lstrip().lower().startswith("<!doctype html>")
    assert (out / "report.md").exists()


def test_rerun_keeps_every_finished_step(labbed):
    _, second, _ = labbed
    assert second.exit_code == 0, (second.output, second.exception)
    steps = json.loads(second.stdout.strip().splitlines()[-1])["steps"]
    assert {k: v for k, v in steps.items() if k != "report"} == {
        "seed": "kept", "long-reviews": "kept", "vanishing-gradients": "kept", "serial": "kept",
        "bottleneck": "kept", "compare": "kept"}


def test_other_run_in_out_is_refused(tmp_path):
    (tmp_path / "lab" / "seed").mkdir(parents=True)
    (tmp_path / "lab" / "seed" / "config.json").write_text(json.dumps({"epochs": 99}))
    r = _invoke(tmp_path)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "another config" in r.stderr or "config" in r.stderr


def test_out_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    r = CliRunner().invoke(main, ["lab", "--quick", "--data", str(tmp_path), "--out", str(tmp_path / "f")])
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_markdown_twin_elsewhere_with_its_figures(labbed, tmp_path):
    _, _, out = labbed
    d = out.parent
    r = _invoke(d, "--markdown", str(tmp_path / "docs" / "RESULTS.md"))
    assert r.exit_code == 0, (r.output, r.exception)
    md = (tmp_path / "docs" / "RESULTS.md").read_text()
    links = [line.split("](", 1)[1].split(")", 1)[0] for line in md.splitlines() if line.startswith("![")]
    assert links and all((tmp_path / "docs" / link).is_file() for link in links)
    assert all(link.startswith("figures/") for link in links)
