"""`rnnlab compare`: every model trained and measured on tiny synthetic reviews, the table, figure
and verdict written; the verdicts are pure functions of the rows that come out both ways; an
interrupted (or repeated) compare reuses finished jobs."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import make_reviews, write_parquet_dir
from rnnlab import compare
from rnnlab.cli import main

TINY = compare.Settings(seeds=2, grad_len=30, grad_batch=4, time_lengths=(8, 16, 32), time_batch=4,
                        time_repeats=1, tfidf_cs=(1.0,))


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """(first CLI result, second CLI result, out dir) of `rnnlab compare --quick` twice on tiny data."""
    d = tmp_path_factory.mktemp("compare")
    data = write_parquet_dir(d / "imdb", make_reviews(200, seed=1), make_reviews(100, seed=2))
    args = ["compare", "--quick", "--data", str(data), "--out", str(d / "out"), "--device", "cpu"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RNNLAB_CACHE", str(d / "cache"))
        mp.setattr(compare, "QUICK", TINY)
        first = CliRunner().invoke(main, args)
        second = CliRunner().invoke(main, args)
    return first, second, d / "out"


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cli_writes_table_figure_and_verdict(compared):
    first, _, out = compared
    assert first.exit_code == 0, (first.output, first.exception)
    line = json.loads(first.stdout.strip().splitlines()[-1])
    assert line["experiment"] == "compare" and isinstance(line["holds"], bool) and line["mode"] == "quick"
    for f in ("results.csv", "table.csv", "table.md", "compare.png", "compare.svg", "verdict.json"):
        assert (out / f).stat().st_size > 0, f
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    v = json.loads((out / "verdict.json").read_text())
    assert v["command"].startswith("rnnlab compare") and v["hardware"]["cpu_count"] >= 1
    assert {q["claim"].split(":")[0] for q in v["questions"]} == {
        "Order matters", "Gates fix vanishing gradients", "Gates do not fix serial computation",
        "Gates do not fix long reviews", "Gates do not fix the fixed-size bottleneck"}


def test_table_has_every_model_with_its_numbers(compared):
    _, _, out = compared
    table = {r["model"]: r for r in _rows(out / "table.csv")}
    assert list(table) == ["rnn-seed", "rnn-tuned", "lstm", "gru", "bow", "tfidf-lr", "transformer"]
    for name, r in table.items():
        assert r["seeds"] == "2"
        assert 0.0 <= float(r["test_acc_mean"]) <= 1.0 and float(r["test_acc_sd"]) >= 0.0
        assert float(r["parameters"]) > 0 and float(r["train_seconds_per_epoch"]) > 0
        assert r["acc_shortest_0_100"] != ""
        if name != "tfidf-lr":
            assert 0.0 <= float(r["test_acc_width_32"]) <= 1.0
            assert float(r["timing_r2"]) <= 1.0
        if name in ("rnn-seed", "rnn-tuned", "lstm", "gru", "transformer"):
            assert float(r["grad_first_over_last_trained"]) > 0
    md = (out / "table.md").read_text().splitlines()
    assert len(md) == 2 + len(table) and all(line.startswith("| ") for line in md[2:])
    # the synthetic task (one polar word decides) is easy: the bag-of-words models learn it
    assert float(table["tfidf-lr"]["test_acc_mean"]) > 0.8


def test_tidy_rows_one_measurement_each(compared):
    _, _, out = compared
    rows = _rows(out / "results.csv")
    assert list(rows[0]) == list(compare.COLUMNS)
    acc = [r for r in rows if r["part"] == "accuracy" and r["metric"] == "test_acc"]
    assert sorted((r["model"], r["seed"]) for r in acc) == sorted(
        (m, s) for m in ["rnn-seed", "rnn-tuned", "lstm", "gru", "bow", "tfidf-lr", "transformer"] for s in "01")
    profile = [r for r in rows if r["model"] == "lstm" and r["seed"] == "0" and r["part"] == "gradient_trained"
               and r["metric"] == "grad_norm"]
    assert profile and int(profile[-1]["distance"]) == TINY.grad_len - 1


def test_second_run_reuses_finished_jobs(compared):
    first, second, out = compared
    assert second.exit_code == 0, (second.output, second.exception)
    assert second.stderr.count("done earlier, kept") == 7 * 2 + 6
    assert _rows(out / "table.csv") == _rows(out / "table.csv")  # same file both times
    assert not list((out / "runs").glob("*/ckpt-*"))  # finished jobs keep only the selected weights


def test_jobs_stay_valid_when_a_config_field_is_added_later(compared):
    """A key stored before a field existed (its default changes nothing) still matches; a key whose
    config differs in a real setting does not."""
    from rnnlab.compare import _normalised

    _, _, out = compared
    stored = json.loads((out / "jobs" / "lstm-seed0.json").read_text())["key"]
    assert stored["config"]["step_loss"] == 0.0  # at its default: as if written before the field existed
    older = {**stored, "config": {k: v for k, v in stored["config"].items() if k != "step_loss"}}
    assert _normalised(older) == stored
    changed = {**stored, "config": {**stored["config"], "hidden_dim": 7}}
    assert _normalised(changed) != stored
    assert _normalised({**stored, "config": {**stored["config"], "no_such_field": 1}}) is None
    assert _normalised("garbage") is None


def _rows_for(acc: dict, ratio: dict, slope: dict, gap: dict, drop: dict) -> list[dict]:
    rows = []
    for m, (mean, sd) in acc.items():
        for s, v in enumerate((mean - sd, mean, mean + sd)):
            rows.append({"model": m, "seed": s, "part": "accuracy", "metric": "test_acc", "value": v})
        if m in ratio:
            rows.append({"model": m, "seed": 0, "part": "gradient_trained", "metric": "g_first_over_g_last",
                         "value": ratio[m]})
            rows.append({"model": m, "seed": 0, "part": "gradient_init", "metric": "g_first_over_g_last",
                         "value": ratio[m]})
        if m in slope:
            rows.append({"model": m, "seed": 0, "part": "timing_fit", "metric": "slope", "value": slope[m]})
            rows.append({"model": m, "seed": 0, "part": "timing_fit", "metric": "r2", "value": 0.99})
        if m in gap:
            rows.append({"model": m, "seed": 0, "part": "by_length", "bucket": "0-100", "metric": "test_acc",
                         "value": mean + gap[m] / 2})
            rows.append({"model": m, "seed": 0, "part": "by_length", "bucket": "800+", "metric": "test_acc",
                         "value": mean - gap[m] / 2})
        if m in drop:
            rows.append({"model": m, "seed": 0, "part": "small", "metric": "test_acc", "value": mean - drop[m]})
    return rows


NAMES = ["rnn-tuned", "lstm", "gru", "bow", "tfidf-lr"]


def test_verdict_both_ways():
    gated_good = _rows_for({"rnn-tuned": (0.80, 0.01), "lstm": (0.90, 0.003), "gru": (0.89, 0.003),
                            "bow": (0.85, 0.003), "tfidf-lr": (0.86, 0.002)},
                           ratio={"rnn-tuned": 1e-6, "lstm": 0.1, "gru": 0.05},
                           slope={"rnn-tuned": 1e-4, "lstm": 3e-4, "gru": 2e-4},
                           gap={"rnn-tuned": 0.1, "lstm": 0.05, "gru": 0.04}, drop={"lstm": 0.02, "gru": 0.03})
    v = compare.verdict(gated_good, NAMES)
    q = {x["claim"].split(":")[0]: x["holds"] for x in v["questions"]}
    assert v["holds"] and all(q.values())
    bag_wins = _rows_for({"rnn-tuned": (0.80, 0.01), "lstm": (0.88, 0.003), "gru": (0.87, 0.003),
                          "bow": (0.86, 0.003), "tfidf-lr": (0.90, 0.002)},
                         ratio={"rnn-tuned": 1e-6, "lstm": 1e-5, "gru": 0.05},
                         slope={"rnn-tuned": 1e-4, "lstm": 0.5e-4, "gru": 2e-4},
                         gap={"rnn-tuned": 0.1, "lstm": 0.0, "gru": 0.04}, drop={"lstm": 0.0, "gru": 0.03})
    v = compare.verdict(bag_wins, NAMES)
    q = {x["claim"].split(":")[0]: x["holds"] for x in v["questions"]}
    assert not v["holds"] and not any(q.values())


def test_order_matters_needs_a_significant_gap():
    close = _rows_for({"lstm": (0.880, 0.02), "tfidf-lr": (0.875, 0.02)}, {}, {}, {}, {})
    v = compare.verdict(close, ["lstm", "tfidf-lr"])
    assert not v["questions"][0]["holds"] and v["questions"][0]["difference"] == pytest.approx(0.005)


def test_cli_bad_data_is_one_line_exit_2(tmp_path):
    r = CliRunner().invoke(main, ["compare", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "o").exists()
