"""`rnnlab report` on a hand-made lab directory: one self-contained HTML file (every image a data: URI,
nothing loaded from anywhere), every section present and non-empty, missing parts explained with the
command that makes them, broken inputs shown as unreadable instead of crashing, exit codes, a Markdown
twin whose image links resolve; and, with chromium, the page rendered headless with every image decoded.

    pytest tests/test_report.py                 # the browser test skips without chromium
    RNNLAB_ARTIFACTS=out pytest tests/test_report.py -m browser   # keeps the screenshot in out/
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from click.testing import CliRunner

from rnnlab.cli import main
from rnnlab.io import write_json, write_jsonl
from rnnlab.plots import learning_curve, save_figure
from rnnlab.report import SHORTFALLS, write_report

REPO = Path(__file__).resolve().parents[1]
DATA = "/data/imdb"
SECTIONS = ["seed", *SHORTFALLS, "compare"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- a lab directory, as `rnnlab lab` lays it out --------------------------------------------------

def _figure(path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 2, 3], [3, 1, 2])
    ax.set_title(title)
    save_figure(fig, path, dpi=50)


def _verdict(name: str, holds: bool, **extra) -> dict:
    return {"experiment": name, "claim": f"The {name} claim <tested> & measured", "holds": holds,
            "criterion": f"{name}: a number >= 0.5",
            "numbers": {"slope": 0.0061, "r2": 0.9796, "linear": True, "by_setting": {"50 head": 0.343, "full": 1.5},
                        "nested": {"rnn": {"init": 0.47, "trained": 0.5}, "lstm": {"init": 0.6, "trained": 0.61}}},
            "questions": [{"claim": f"{name}: tail beats head", "holds": not holds, "criterion": "tail - head > 0",
                           "numbers": {"tail_minus_head": {"50": 0.019, "200": 0.032}}}],
            "mode": "quick", "settings": {"lengths": [50, 200, 0], "epochs": 1},
            "data": f"{DATA} (subset: 2000 train / 1000 test, seed 0)", "device": "cpu",
            "hardware": {"processor": "AMD EPYC", "cpu_count": 2, "torch": "2.13.0+cpu"}, "seconds": 7.8, **extra}


def make_lab(root: Path, parts=("seed", "shortfalls", "compare")) -> Path:
    """RUNS_DIR with the given parts: seed run, four shortfalls, compare (PNGs drawn with matplotlib)."""
    root.mkdir(parents=True, exist_ok=True)
    if "seed" in parts:
        d = root / "seed"
        d.mkdir()
        metrics = [{"epoch": e, "train_loss": 0.7 - 0.05 * e, "train_seconds": 18.8, "tokens_per_second": 322000,
                    "grad_norm_max": 5.0 * e, "grad_norm_median": 0.9, "steps": 391, "test_acc": 0.5 + 0.05 * e}
                   for e in (1, 2, 3)]
        write_jsonl(d / "metrics.jsonl", metrics)
        learning_curve(metrics, d / "learning_curve.png")
        write_json(d / "summary.json", {"test_acc": 0.65, "test_loss": 0.6, "best_epoch": 3, "val_acc": None,
                                        "epochs": 3, "train_seconds_per_epoch": 18.8, "tokens_per_second": 322000,
                                        "device": "cpu", "run_dir": str(d)})
        write_json(d / "meta.json", {"command": ["/venv/bin/rnnlab", "train", "--preset", "seed", "--data", DATA],
                                     "data": DATA, "environment": {"processor": "AMD EPYC", "cpu_count": 2}})
        write_json(d / "config.json", {"model": "rnn", "embed_dim": 100, "hidden_dim": 128, "epochs": 3})
    if "shortfalls" in parts:
        for i, name in enumerate(SHORTFALLS):
            d = root / "shortfalls" / name
            d.mkdir(parents=True)
            extra = {"command": f"rnnlab shortfall {name} --data {DATA} --quick"} if name == "bottleneck" else {}
            write_json(d / "verdict.json", _verdict(name, holds=i % 2 == 0, **extra))
            n = 120 if name == "serial" else 6  # serial: long enough to be summarised
            (d / "results.csv").write_text("part,model,seq_len,metric,value\n" + "".join(
                f"timing,{'rnn' if r % 2 else 'cnn'},{64 * (r % 3 + 1)},median_seconds,{0.01 * (r + 1):.4g}\n"
                for r in range(n)))
            _figure(d / f"{name}.png", name)
            (d / f"{name}.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'></svg>")
    if "compare" in parts:
        d = root / "compare"
        d.mkdir()
        (d / "table.md").write_text("| model | test acc | params |\n| --- | ---: | ---: |\n"
                                    "| rnn | 0.810 | 2.0M |\n| **lstm** | 0.880 | `2.1M` |\n")
        (d / "table.csv").write_text("model,test_acc,params\nrnn,0.81,2000000\nlstm,0.88,2100000\n")
        _figure(d / "compare.png", "compare")
        write_json(d / "verdict.json", {**_verdict("compare", True), "command": f"rnnlab compare --data {DATA}",
                                        "mode": "full"})
    return root


class Page(HTMLParser):
    """Every tag's attributes, every <img> src, and the text of each <section id=...>."""

    def __init__(self, text: str):
        super().__init__()
        self.attrs, self.imgs, self.sections, self._in = [], [], {}, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.attrs.append((tag, a))
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "section":
            self._in = a["id"]
            self.sections[self._in] = ""

    def handle_endtag(self, tag):
        if tag == "section":
            self._in = None

    def handle_data(self, data):
        if self._in:
            self.sections[self._in] += data


@pytest.fixture
def lab(tmp_path) -> Path:
    return make_lab(tmp_path / "lab")


# --- the HTML -------------------------------------------------------------------------------------

def test_html_is_one_self_contained_file(lab):
    written = write_report(lab)
    assert written["html"] == str(lab / "report.html") and written["markdown"] == str(lab / "report.md")
    text = (lab / "report.html").read_text()
    page = Page(text)
    for tag, a in page.attrs:  # nothing is fetched: no http(s)/protocol-relative src, href, stylesheet
        for key in ("src", "href", "data"):
            assert not re.match(r"\s*(https?:)?//", a.get(key) or ""), (tag, a)
        assert tag not in ("link", "iframe", "object", "embed")
        assert not (tag == "script" and "src" in a)
    assert "@import" not in text and not re.search(r"url\(\s*['\"]?(?!data:)", text)
    assert len(page.imgs) == 6  # learning curve, four shortfalls, compare
    for src in page.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
    assert not list(lab.glob(".*.tmp"))  # written atomically: no temporary left behind


def test_every_section_present_and_filled(lab):
    written = write_report(lab)
    page = Page((lab / "report.html").read_text())
    assert list(page.sections) == SECTIONS
    for sid, text in page.sections.items():
        assert len(text.strip()) > 200, sid
    assert written["claims"] == 5 and written["hold"] == 3  # long-reviews, serial (i even) and compare
    assert written["missing"] == [] and written["unreadable"] == []
    html = (lab / "report.html").read_text()
    assert "3 of 5 claims hold" in html
    sec = page.sections
    assert "The serial claim <tested> & measured" in sec["serial"]  # the claim, unescaped by the parser
    assert "does not hold" in sec["vanishing-gradients"] and "holds" in sec["long-reviews"]
    assert "serial: tail beats head" in sec["serial"] and "tail_minus_head" in sec["serial"]  # sub-questions
    assert "nested › rnn" in sec["serial"] and "init: 0.47 · trained: 0.5" in sec["serial"]  # key numbers
    assert "Quick mode" in sec["serial"] and "7.8 s" in sec["serial"] and "AMD EPYC" in sec["serial"]
    # the recorded command, or the one reconstructed from verdict.json
    assert f"rnnlab shortfall bottleneck --data {DATA} --quick" in sec["bottleneck"]
    assert f"rnnlab shortfall serial --data {DATA} --quick --out {lab / 'shortfalls'}" in sec["serial"]
    assert "reconstructed" in sec["serial"] and "reconstructed" not in sec["bottleneck"]
    # a short results.csv is shown whole; a long one summarised per part/model/metric
    assert "all 6 rows" in sec["long-reviews"]
    assert "120 rows, summarised" in sec["serial"] and sec["serial"].count("median_seconds") == 2
    # the seed run: summary, per-epoch table, the command from meta.json
    assert "0.65" in sec["seed"] and "per epoch" in sec["seed"] and f"rnnlab train --preset seed --data {DATA}" in sec["seed"]
    # the compare table from table.md, its Markdown bold/code turned into HTML
    assert "<strong>lstm</strong>" in html and "<code>2.1M</code>" in html and "0.880" in sec["compare"]


def test_text_is_escaped(lab):
    v = json.loads((lab / "shortfalls" / "serial" / "verdict.json").read_text())
    v["claim"] = "<script>alert(1)</script> & <img src=x onerror=alert(2)>"
    write_json(lab / "shortfalls" / "serial" / "verdict.json", v)
    write_report(lab)
    html, md = (lab / "report.html").read_text(), (lab / "report.md").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in html
    assert "<img src=x" not in html and "<script>alert" not in md and "&lt;script&gt;" in md


def test_only_shortfalls_renders_and_names_the_missing_commands(tmp_path):
    lab = make_lab(tmp_path / "lab", parts=("shortfalls",))
    shutil.rmtree(lab / "shortfalls" / "bottleneck")
    written = write_report(lab)
    assert written["missing"] == ["seed", "bottleneck", "compare"]
    sec = Page((lab / "report.html").read_text()).sections
    assert list(sec) == SECTIONS and all(len(t.strip()) > 50 for t in sec.values())
    assert f"rnnlab train --preset seed --data {DATA} --out {lab / 'seed'}" in sec["seed"]  # data from a verdict
    assert f"rnnlab shortfall bottleneck --data {DATA} --out {lab / 'shortfalls'}" in sec["bottleneck"]
    assert f"rnnlab compare --data {DATA} --out {lab / 'compare'}" in sec["compare"]
    assert "Missing" in sec["compare"]


def test_a_shortfall_output_dir_is_accepted_as_runs_dir(tmp_path):
    lab = make_lab(tmp_path / "lab", parts=("shortfalls",))
    written = write_report(lab / "shortfalls", out=tmp_path / "r.html")
    assert written["claims"] == 4 and written["missing"] == ["seed", "compare"]


def test_broken_parts_are_unreadable_not_fatal(lab):
    (lab / "shortfalls" / "long-reviews" / "verdict.json").write_text("{not json")
    (lab / "shortfalls" / "serial" / "results.csv").write_text("a,b,c\n1,2\n")
    write_json(lab / "shortfalls" / "bottleneck" / "verdict.json", ["a list, not a verdict"])
    (lab / "shortfalls" / "vanishing-gradients" / "vanishing-gradients.png").write_bytes(b"GIF89a not a png")
    (lab / "seed" / "metrics.jsonl").write_text('{"epoch": 1}\n{broken\n')
    (lab / "compare" / "table.md").write_text("no table here")
    (lab / "compare" / "table.csv").write_bytes(b"\xff\xfe\x00bad")
    r = CliRunner().invoke(main, ["report", str(lab)])
    assert r.exit_code == 0, r.output
    written = json.loads(r.stdout.strip().splitlines()[-1])
    assert written["unreadable"] == SECTIONS
    sec = Page((lab / "report.html").read_text()).sections
    assert "unreadable:" in sec["long-reviews"] and "malformed JSON" in sec["long-reviews"]
    assert "line 2 has 2 fields" in sec["serial"] and "The serial claim" in sec["serial"]  # the rest still shown
    assert "not a verdict" in sec["bottleneck"] and "not a PNG" in sec["vanishing-gradients"]
    assert "metrics.jsonl: line 2" in sec["seed"] and "rnnlab train --preset seed" in sec["seed"]
    assert "comparison table" in sec["compare"]
    assert r.stderr.count("warning: unreadable:") == len(written["problems"]) == 6


# --- the command line -----------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["absent", "empty", "unrelated", "out-is-dir"])
def test_cli_fails_with_one_line_and_exit_2(tmp_path, case):
    runs = tmp_path / "lab"
    args = ["report", str(runs)]
    if case == "empty":
        runs.mkdir()
    elif case == "unrelated":
        (runs / "seedling").mkdir(parents=True)
        (runs / "notes.txt").write_text("hello")
    elif case == "out-is-dir":
        make_lab(runs, parts=("compare",))
        args += ["--out", str(runs)]
    r = subprocess.run([sys.executable, "-m", "rnnlab.cli", *args], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


def test_cli_default_runs_dir_and_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_lab(tmp_path / "results" / "lab")
    r = CliRunner().invoke(main, ["report"])
    assert r.exit_code == 0, r.output
    written = json.loads(r.stdout)
    assert written["html"] == os.path.join("results", "lab", "report.html") and written["assets"] == []
    assert (tmp_path / "results" / "lab" / "report.md").is_file()
    assert "3 of 5 claims hold" in r.stderr


# --- the Markdown twin ----------------------------------------------------------------------------

def _md_links(md: Path) -> list[Path]:
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md.read_text())
    assert links and not any(re.match(r"(https?:)?//|/", x) for x in links)  # relative links only
    return [md.parent / x for x in links]


def test_markdown_twin_links_resolve_in_place(lab):
    write_report(lab)
    md = lab / "report.md"
    links = _md_links(md)
    assert len(links) == 6 and all(p.is_file() and p.read_bytes()[:8] == PNG_MAGIC for p in links)
    assert all(p.resolve().is_relative_to(lab.resolve()) for p in links)  # linked in place, nothing copied
    text = md.read_text()
    for title in ("The seed exercise", "Shortfall 3: serial computation", "What fixes each shortfall"):
        assert f"## {title}" in text
    assert "| **lstm** | 0.880 | `2.1M` |" in text  # compare's own Markdown table, verbatim
    assert "✅ **holds**" in text and "❌ **does not hold**" in text


def test_markdown_outside_runs_dir_gets_its_figures_copied(tmp_path):
    lab = make_lab(tmp_path / "results" / "lab")
    docs = tmp_path / "docs"
    r = CliRunner().invoke(main, ["report", str(lab), "--out", str(docs / "report.html"),
                                  "--markdown", str(docs / "RESULTS.md")])
    assert r.exit_code == 0, r.output
    links = _md_links(docs / "RESULTS.md")
    assert sorted(p.name for p in links) == sorted(["seed-learning_curve.png", *(f"{n}.png" for n in SHORTFALLS),
                                                     "compare.png"])
    assert all(p.parent.resolve() == (docs / "figures").resolve() and p.is_file() for p in links)
    assert (docs / "report.html").is_file() and not (lab / "report.html").exists()
    # an explicit assets directory
    write_report(lab, out=docs / "r.html", markdown=docs / "sub" / "R.md", assets=tmp_path / "img")
    links = _md_links(docs / "sub" / "R.md")
    assert all(p.is_file() and p.resolve().parent == (tmp_path / "img").resolve() for p in links)


# --- in a real browser ----------------------------------------------------------------------------

def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.browser
def test_report_renders_in_headless_chromium(tmp_path, lab):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium, chromium-browser or google-chrome on PATH (apt-get install chromium)")
    write_report(lab)
    url = (lab / "report.html").resolve().as_uri()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-extensions", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    r = subprocess.run(flags + ["--virtual-time-budget=5000", "--dump-dom", url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    check = re.search(r'<p id="render-check"[^>]*>', r.stdout)
    assert check, "the page's load-time check did not run"
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', check.group(0)))
    assert attrs["done"] == "1" and attrs["sections"] == str(len(SECTIONS))
    assert attrs["images"] == attrs["decoded"] == "6", attrs  # every embedded PNG decoded
    assert attrs["empty-sections"] == "", attrs

    artifacts = Path(os.environ.get("RNNLAB_ARTIFACTS") or REPO / "artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "report.png"
    r = subprocess.run(flags + ["--hide-scrollbars", f"--screenshot={shot}", "--window-size=1200,3000", url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.read_bytes()[:8] == PNG_MAGIC and shot.stat().st_size > 20_000, r.stderr[-2000:]
