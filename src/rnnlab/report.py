"""The report: one self-contained HTML page, and its Markdown twin, rendered from a lab's saved files.

    rnnlab report results/lab             # -> results/lab/report.html and results/lab/report.md
    rnnlab report results/lab --out docs/report.html --markdown docs/RESULTS.md   # figures -> docs/figures/
    from rnnlab.report import write_report
    written = write_report("results/lab")  # {"html": ..., "markdown": ..., "claims": 5, "hold": 3, ...}

It reads what `rnnlab lab` leaves and recomputes nothing:
    RUNS_DIR/seed/                an `rnnlab train --preset seed` run (metrics.jsonl, summary.json, learning_curve.png)
    RUNS_DIR/shortfalls/<name>/   results.csv, <name>.png, verdict.json for each of the four shortfalls
    RUNS_DIR/compare/             table.md (or table.csv), compare.png, verdict.json
A missing part becomes a short section naming the command that makes it; a part that cannot be read
(malformed JSON, a ragged CSV) is shown as "unreadable: <why>". Only a RUNS_DIR that does not exist or
holds none of the three parts is an error (ReportError). The HTML embeds its figures as data: URIs and
loads nothing from anywhere; the Markdown links its figures relatively, copying them into an assets
directory (default: `figures/` next to it) when it lives outside RUNS_DIR, so the links work in a repo.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import re
import shlex
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from .io import RunError, atomic_path, read_json, read_jsonl, write_text

SHORTFALLS = {  # name -> (section title, what it asks)
    "long-reviews": ("Shortfall 1: long reviews",
                     "Does reading more of each review help? Training time against the tokens kept per review "
                     "(its start or its end), and test accuracy at each length."),
    "vanishing-gradients": ("Shortfall 2: vanishing gradients",
                            "How much training signal reaches the early words? The gradient norm ||dL/dh_t|| "
                            "against the distance from the last step, LSTM and GRU for contrast, and the "
                            "norm's spikes without clipping."),
    "serial": ("Shortfall 3: serial computation",
               "Can more hardware make it faster? Time per batch against sequence length for the RNN and for "
               "models that process all positions at once, on 1 and 2 threads."),
    "bottleneck": ("Shortfall 4: the fixed-size memory bottleneck",
                   "How much can one fixed-size hidden state hold? Accuracy against hidden size by review "
                   "length, and whether a planted sentence still sways the prediction far from the end."),
}
VERDICT_FIELDS = {"experiment", "claim", "holds", "criterion", "numbers", "questions", "mode", "settings", "data",
                  "device", "hardware", "seconds", "command"}
MAX_ROWS = 40  # longer tables are summarised
EPOCH_COLUMNS = ("epoch", "train_loss", "val_loss", "val_acc", "test_acc", "train_seconds", "tokens_per_second",
                 "grad_norm_max", "grad_norm_median", "steps")
QUICK_NOTE = "Quick mode: a data subset and a small sweep. A smoke test, not evidence."


class ReportError(RunError):
    """RUNS_DIR is missing or holds nothing rnnlab made; or one input cannot be read."""


@dataclass
class Section:
    """One part of the report: blocks rendered the same way to HTML and to Markdown."""

    id: str
    title: str
    blocks: list = field(default_factory=list)
    missing: bool = False
    claim: str | None = None  # the claim tested, or for a part without one its result in a line
    holds: bool | None = None
    mode: str | None = None

    def add(self, *blocks) -> None:
        self.blocks.extend(blocks)

    @property
    def problems(self) -> list[str]:
        """Why parts of it could not be read."""
        return [b[1] for b in self.blocks if b[0] == "unreadable"]

    @property
    def status(self) -> str:
        return "missing" if self.missing else "unreadable" if self.problems else "ok"


# Blocks: ("p", text) ("note", text) ("warn", text) ("h3", text) ("verdict", holds, claim, main: bool)
# ("table", header, rows, note, kv: bool, markdown_cells: bool) ("figure", png_path, alt) ("code", text)
# ("missing", text, command) ("unreadable", why) ("details", summary, block): a block folded away


# --- formatting ---------------------------------------------------------------------------------

def fmt(x, inner: bool = False) -> str:
    """A number (or anything in a verdict) as a short string: 4 significant figures, yes/no, lists joined."""
    if x is None:
        return "n/a"  # NaN is written to JSON as null
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}" if abs(x) >= 10_000 else str(x)
    if isinstance(x, float):
        return str(x) if not math.isfinite(x) else f"{x:.4g}"
    if isinstance(x, (list, tuple)):
        s = ", ".join(fmt(v, True) for v in x)
        return f"[{s}]" if inner else s
    if isinstance(x, dict):
        return json.dumps(x)
    return str(x)


def _is_leaf(d: dict) -> bool:
    """A small dict of scalars (or of flat lists): shown on one line."""
    return len(d) <= 12 and all(not isinstance(v, dict) and not (isinstance(v, list) and any(
        isinstance(e, (dict, list)) for e in v)) for v in d.values())


def number_rows(d: dict, path: tuple = ()) -> list[list[str]]:
    """Nested numbers as [key path, value] rows; a small dict of scalars becomes one row `k: v · k: v`."""
    rows = []
    for k, v in d.items():
        p = path + (str(k),)
        if isinstance(v, dict) and v and _is_leaf(v):
            rows.append([" › ".join(p), " · ".join(f"{k2}: {fmt(v2, True)}" for k2, v2 in v.items())])
        elif isinstance(v, dict) and v:
            rows += number_rows(v, p)
        else:
            rows.append([" › ".join(p), fmt(v)])
    return rows


def duration(seconds) -> str:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return fmt(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def _one_line(d) -> str:
    return " · ".join(f"{k}: {fmt(v)}" for k, v in d.items()) if isinstance(d, dict) else fmt(d)


def _numbers_table(d: dict, source: str) -> tuple:
    rows = number_rows(d)
    note = f"{len(rows) - MAX_ROWS} more in {source}" if len(rows) > MAX_ROWS else None
    return ("table", ["number", "value"], rows[:MAX_ROWS], note, True, False)


# --- reading the parts --------------------------------------------------------------------------

def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a CSV; a missing, empty, ragged or undecodable file raises ReportError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: cannot read ({e})") from None
    try:
        lines = [(i, r) for i, r in enumerate(csv.reader(io.StringIO(text)), 1) if r]
    except csv.Error as e:
        raise ReportError(f"{path}: malformed CSV ({e})") from None
    if not lines:
        raise ReportError(f"{path}: empty")
    header = lines[0][1]
    for i, r in lines[1:]:
        if len(r) != len(header):
            raise ReportError(f"{path}: line {i} has {len(r)} fields, the header {len(header)}")
    return header, [r for _, r in lines[1:]]


def _float(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def csv_blocks(path: Path, label: str) -> list:
    """results.csv as a folded table; a long tidy file (metric, value) as one line per part/model/metric."""
    header, rows = read_csv(path)
    if len(rows) <= MAX_ROWS:
        return [("details", f"{label}: all {len(rows)} rows", ("table", header, rows, None, False, False))]
    if "metric" in header and "value" in header:
        keys = [c for c in ("part", "model", "metric") if c in header]
        idx, vi = [header.index(c) for c in keys], header.index("value")
        groups: dict[tuple, list] = {}
        for r in rows:
            groups.setdefault(tuple(r[i] for i in idx), []).append(_float(r[vi]))
        out = []
        for key, vals in groups.items():
            v = [x for x in vals if x is not None and math.isfinite(x)]
            out.append([*key, str(len(vals))] + ([fmt(min(v)), fmt(statistics.median(v)), fmt(max(v))]
                                                  if v else ["", "", ""]))
        others = [c for c in header if c not in keys and c != "value"]
        note = f"the value's spread over {', '.join(others) or 'repeats'}"
        if len(out) > MAX_ROWS:
            note += f"; first {MAX_ROWS} of {len(out)} lines"
        return [("details", f"{label}: {len(rows)} rows, summarised as one line per {' / '.join(keys)}",
                 ("table", keys + ["rows", "min", "median", "max"], out[:MAX_ROWS], note, False, False))]
    return [("details", f"{label}: the first 15 of {len(rows)} rows",
             ("table", header, rows[:15], f"{len(rows) - 15} more rows in {label}", False, False))]


def figure_block(png: Path, alt: str) -> tuple:
    if not png.is_file():
        return ("note", f"figure missing: {png}")
    try:
        with open(png, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return ("unreadable", f"{png}: not a PNG image")
    except OSError as e:
        return ("unreadable", f"{png}: {e}")
    return ("figure", png, alt)


def _data_path(data) -> str | None:
    """The data argument behind a recorded source ('PATH (subset: ...)' -> 'PATH')."""
    if not isinstance(data, str) or not data:
        return None
    return re.sub(r" \(subset: [^)]*\)$", "", data)


def _command(cmd) -> str | None:
    if isinstance(cmd, str) and cmd:
        return cmd
    if isinstance(cmd, list) and cmd and all(isinstance(c, str) for c in cmd):
        return "rnnlab " + shlex.join(cmd[1:])  # argv[0] is wherever the rnnlab script lives
    return None


def verdict_blocks(sec: Section, path: Path) -> dict | None:
    """The claim and its badge, the criterion, the key numbers and the sub-questions of a verdict.json."""
    try:
        v = read_json(path)
        if not isinstance(v, dict) or not isinstance(v.get("claim"), str) or not isinstance(v.get("holds"), bool):
            raise ReportError(f"{path}: not a verdict (needs a string 'claim' and a true/false 'holds')")
    except RunError as e:
        sec.add(("unreadable", str(e)))
        return None
    sec.claim, sec.holds, sec.mode = v["claim"], v["holds"], v.get("mode")
    sec.add(("verdict", v["holds"], v["claim"], True))
    crit = v.get("criterion")
    if isinstance(crit, dict):
        sec.add(("table", ["criterion", ""], number_rows(crit), None, True, False))
    elif crit:
        sec.add(("note", f"Criterion: {fmt(crit)}"))
    numbers = dict(v["numbers"]) if isinstance(v.get("numbers"), dict) else {}
    numbers.update({k: x for k, x in v.items() if k not in VERDICT_FIELDS})  # other fields are numbers too
    if "numbers" in v and not isinstance(v["numbers"], dict):
        numbers["numbers"] = v["numbers"]
    if numbers:
        sec.add(_numbers_table(numbers, path.name))
    questions = v.get("questions") if isinstance(v.get("questions"), list) else []
    if questions:
        sec.add(("h3", "Sub-questions"))
    for i, q in enumerate(questions, 1):
        if not isinstance(q, dict) or not isinstance(q.get("claim"), str):
            sec.add(("unreadable", f"{path}: question {i} has no claim"))
            continue
        sec.add(("verdict", q["holds"] if isinstance(q.get("holds"), bool) else None, q["claim"], False))
        if q.get("criterion"):
            sec.add(("note", f"Criterion: {fmt(q['criterion'])}"))
        rest = dict(q["numbers"]) if isinstance(q.get("numbers"), dict) else {}
        rest.update({k: x for k, x in q.items() if k not in ("claim", "holds", "criterion", "numbers")})
        if rest:
            sec.add(_numbers_table(rest, path.name))
    return v


def run_blocks(sec: Section, v: dict, default_command: str, time_label: str = "wall time") -> None:
    """How it was measured: the exact command, mode, data, device, hardware, wall time, settings."""
    cmd = _command(v.get("command"))
    sec.add(("h3", "How it was run"), ("code", cmd or default_command))
    if cmd is None:
        sec.add(("note", "(command reconstructed from what was recorded)"))
    rows = [[label, show(v[key])] for label, key, show in
            (("mode", "mode", fmt), ("data", "data", fmt), ("device", "device", fmt),
             ("hardware", "hardware", _one_line), (time_label, "seconds", duration), ("settings", "settings", _one_line))
            if v.get(key) not in (None, "", {}, [])]
    if rows:
        sec.add(("table", ["", ""], rows, None, True, False))


# --- the sections -------------------------------------------------------------------------------

def seed_section(d: Path, data: str) -> Section:
    sec = Section("seed", "The seed exercise")
    sec.add(("p", "The notebook's recipe, exactly: embedding 100, vanilla tanh RNN with 128 hidden units read at "
                  "its last step, Adam 1e-3, batch 64, full-length reviews, test accuracy after every epoch."))
    cmd = f"rnnlab train --preset seed --data {data} --out {d}"
    if not d.is_dir():
        sec.missing = True
        sec.add(("missing", f"No seed run in {d}. Make it with:", cmd))
        return sec
    try:
        metrics = read_jsonl(d / "metrics.jsonl")
        if not metrics or not all(isinstance(m, dict) and "epoch" in m for m in metrics):
            raise ReportError(f"{d / 'metrics.jsonl'}: no epochs recorded")
    except RunError as e:
        sec.add(("unreadable", str(e)), ("p", "Run it again with:"), ("code", cmd))
        return sec
    summary = {}
    try:
        summary = read_json(d / "summary.json")
        if not isinstance(summary, dict):
            summary = {}
            raise ReportError(f"{d / 'summary.json'}: not a JSON object")
        keys = ("test_acc", "test_loss", "best_epoch", "val_acc", "epochs", "train_seconds_per_epoch",
                "tokens_per_second", "device")
        sec.add(("table", ["", ""], [[k.replace("_", " "), fmt(summary[k])] for k in keys if k in summary],
                 None, True, False))
        sec.claim = f"test accuracy {fmt(summary.get('test_acc'))} after {fmt(summary.get('epochs'))} epochs"
    except RunError as e:
        if (d / "summary.json").exists():
            sec.add(("unreadable", str(e)))
        else:
            sec.add(("warn", f"No summary.json: the run has not finished. Continue it with: "
                             f"rnnlab train --resume {d}"))
    sec.add(figure_block(d / "learning_curve.png", "learning curve of the seed run"))
    cols = [c for c in EPOCH_COLUMNS if any(c in m for m in metrics)]
    sec.add(("table", [c.replace("_", " ") for c in cols], [[fmt(m.get(c)) for c in cols] for m in metrics],
             "per epoch, from metrics.jsonl", False, False))
    try:
        meta = read_json(d / "meta.json")
    except RunError:
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    run_blocks(sec, {"command": meta.get("command"), "data": meta.get("data"), "device": summary.get("device"),
                     "hardware": meta.get("environment"),
                     "seconds": sum(m.get("train_seconds") or 0 for m in metrics)},
               cmd, time_label="training time (sum of epochs)")
    if (d / "config.json").is_file():
        try:
            sec.add(("note", "Configuration: " + _one_line(read_json(d / "config.json"))))
        except RunError as e:
            sec.add(("unreadable", str(e)))
    return sec


def shortfall_section(name: str, d: Path, shortfalls_dir: Path, data: str) -> Section:
    title, asks = SHORTFALLS[name]
    sec = Section(name, title, [("p", asks)])
    if not d.is_dir():
        sec.missing = True
        sec.add(("missing", f"No results in {d}. Make them with (add --quick for a smoke test; "
                            f"`all` instead of the name runs all four):",
                 f"rnnlab shortfall {name} --data {data} --out {shortfalls_dir}"))
        return sec
    v = verdict_blocks(sec, d / "verdict.json")
    sec.add(figure_block(d / f"{name}.png", f"{title}: figure"))
    try:
        sec.add(*csv_blocks(d / "results.csv", f"{name}/results.csv"))
    except ReportError as e:
        sec.add(("unreadable", str(e)))
    if v is not None:
        if v.get("mode") == "quick":
            sec.add(("warn", QUICK_NOTE))
        quick = " --quick" if v.get("mode") == "quick" else ""
        run_blocks(sec, v, f"rnnlab shortfall {name} --data {_data_path(v.get('data')) or data}{quick} "
                           f"--out {shortfalls_dir}")
    return sec


def compare_section(d: Path, data: str) -> Section:
    sec = Section("compare", "What fixes each shortfall")
    sec.add(("p", "The same measurements for models built to avoid each shortfall (gated recurrences, pooling "
                  "over all states, models parallel in time), side by side with the vanilla RNN."))
    cmd = f"rnnlab compare --data {data} --out {d}"
    if not d.is_dir():
        sec.missing = True
        sec.add(("missing", f"No comparison in {d}. Make it with:", cmd))
        return sec
    table = None
    try:
        if (d / "table.md").is_file():
            table = pipe_table((d / "table.md").read_text(encoding="utf-8"))
        if table is None:
            header, rows = read_csv(d / "table.csv")
            table = ("table", header, rows, None, False, False)
    except (ReportError, OSError, UnicodeDecodeError) as e:
        sec.add(("unreadable", f"comparison table: {e}"))
    if table:
        sec.add(table)
    sec.add(figure_block(d / "compare.png", "comparison figure"))
    v = verdict_blocks(sec, d / "verdict.json")
    if (d / "results.csv").exists():
        try:
            sec.add(*csv_blocks(d / "results.csv", "compare/results.csv"))
        except ReportError as e:
            sec.add(("unreadable", str(e)))
    if v is not None:
        if v.get("mode") == "quick":
            sec.add(("warn", QUICK_NOTE))
        run_blocks(sec, v, cmd + (" --quick" if v.get("mode") == "quick" else ""))
    return sec


def pipe_table(text: str) -> tuple | None:
    """The first Markdown pipe table in `text` as a table block (cells keep their Markdown), else None."""
    lines = [ln.strip() for ln in text.splitlines()]
    for i in range(len(lines) - 1):
        if lines[i].startswith("|") and re.fullmatch(r"\|?(\s*:?-{3,}:?\s*\|)+\s*(:?-{3,}:?\s*)?\|?", lines[i + 1]):
            body = []
            for ln in lines[i + 2:]:
                if not ln.startswith("|"):
                    break
                body.append(_cells(ln))
            return ("table", _cells(lines[i]), body, None, False, True)
    return None


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().removeprefix("|").removesuffix("|"))]


# --- rendering ----------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;max-width:900px;
margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1f2328;background:#fff}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.3rem;margin-top:2.5rem}
h3{margin:1.4rem 0 .4rem;font-size:1.05rem}
img{max-width:100%;height:auto}figure{margin:1rem 0}figcaption{font-size:.8rem;color:#59636e}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #d0d7de;padding:.2rem .55rem;text-align:left;vertical-align:top}
thead th{background:#f6f8fa}tbody tr:nth-child(even){background:#fafbfc}table.kv th{background:#f6f8fa;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:.05rem .6rem;border-radius:1rem;font-weight:700;font-size:.75rem;color:#fff;
white-space:nowrap;text-transform:uppercase;letter-spacing:.03em}
.holds .badge{background:#1a7f37}.fails .badge{background:#cf222e}.unknown .badge{background:#6e7781}
.verdict{display:flex;gap:.7rem;align-items:baseline;padding:.55rem .8rem;border-left:4px solid #6e7781;
border-radius:4px;margin:.7rem 0}
.verdict.main.holds{border-color:#1a7f37;background:#dafbe1}.verdict.main.fails{border-color:#cf222e;background:#ffebe9}
.verdict.main .claim{font-weight:600}.verdict.question{padding:.2rem .6rem;margin:.4rem 0}
.verdict.question.holds{border-color:#1a7f37}.verdict.question.fails{border-color:#cf222e}
pre{background:#f6f8fa;padding:.6rem .8rem;border-radius:6px;overflow-x:auto;font-size:.85rem}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.missing{border:1px dashed #bf8700;background:#fff8c5;padding:.4rem .8rem;border-radius:6px;margin:.6rem 0}
.unreadable{color:#cf222e;font-weight:600}.note{color:#59636e;font-size:.88rem}
.warn{background:#fff8c5;padding:.3rem .6rem;border-radius:4px}
details{margin:.6rem 0}summary{cursor:pointer;color:#0969da;font-size:.9rem}
.headline{font-size:1.3rem;font-weight:600;margin:.4rem 0}
"""

# Runs on load: counts decoded images and sections without content, for the browser test (and anyone curious).
CHECK_JS = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var decoded = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var sections = Array.prototype.slice.call(document.querySelectorAll("section"));
  var empty = sections.filter(function (s) {
    var c = s.cloneNode(true), h = c.querySelector("h2");
    if (h) h.remove();
    return !c.textContent.trim() && !s.querySelector("img");
  }).map(function (s) { return s.id; });
  var r = document.getElementById("render-check");
  r.setAttribute("data-images", imgs.length);
  r.setAttribute("data-decoded", decoded);
  r.setAttribute("data-sections", sections.length);
  r.setAttribute("data-empty-sections", empty.join(" "));
  r.setAttribute("data-done", "1");
});
"""

BADGE = {True: ("holds", "holds"), False: ("fails", "does not hold"), None: ("unknown", "no verdict")}


def _esc(s) -> str:
    return html.escape(str(s))


def _md_cell_html(s: str) -> str:
    """A Markdown table cell (from compare/table.md) as HTML: escaped, with `code` and **bold**."""
    s = _esc(s.replace("\\|", "|"))
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)


def _td(c: str, cell) -> str:
    return f'<td class="num">{cell(c)}</td>' if _float(c.replace(",", "")) is not None else f"<td>{cell(c)}</td>"


def _html_block(b) -> str:
    kind = b[0]
    if kind == "p":
        return f"<p>{_esc(b[1])}</p>"
    if kind in ("note", "warn"):
        return f'<p class="{kind}">{_esc(b[1])}</p>'
    if kind == "h3":
        return f"<h3>{_esc(b[1])}</h3>"
    if kind == "verdict":
        cls, word = BADGE[b[1]]
        return (f'<div class="verdict {"main" if b[3] else "question"} {cls}"><span class="badge">{word}</span>'
                f'<span class="claim">{_esc(b[2])}</span></div>')
    if kind == "table":
        _, header, rows, note, kv, md = b
        cell = _md_cell_html if md else _esc
        out = [f'<table class="{"kv" if kv else "data"}">']
        if not kv:
            out.append("<thead><tr>" + "".join(f"<th>{cell(h)}</th>" for h in header) + "</tr></thead>")
        out.append("<tbody>")
        for r in rows:
            first = f"<th>{cell(r[0])}</th>" if kv else _td(r[0], cell)
            out.append("<tr>" + first + "".join(_td(c, cell) for c in r[1:]) + "</tr>")
        out.append("</tbody></table>")
        if note:
            out.append(f'<p class="note">{_esc(note)}</p>')
        return "".join(out)
    if kind == "figure":
        data = base64.b64encode(Path(b[1]).read_bytes()).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(b[2])}">'
                f"<figcaption>{_esc(b[1])}</figcaption></figure>")
    if kind == "code":
        return f"<pre><code>{_esc(b[1])}</code></pre>"
    if kind == "missing":
        return (f'<div class="missing"><p><strong>Missing.</strong> {_esc(b[1])}</p>'
                f"<pre><code>{_esc(b[2])}</code></pre></div>")
    if kind == "unreadable":
        return f'<p class="unreadable">unreadable: {_esc(b[1])}</p>'
    if kind == "details":
        return f"<details><summary>{_esc(b[1])}</summary>{_html_block(b[2])}</details>"
    raise ValueError(f"unknown block {kind!r}")


def _md(s) -> str:
    """Text safe in Markdown (and in a table cell)."""
    s = html.escape(str(s), quote=False).replace("\n", " ")
    return re.sub(r"([\\`*_\[\]|])", r"\\\1", s)


def _md_block(b, link) -> str:
    kind = b[0]
    if kind == "p":
        return _md(b[1])
    if kind == "note":
        return f"<sub>{_md(b[1])}</sub>"
    if kind == "warn":
        return f"> **Note.** {_md(b[1])}"
    if kind == "h3":
        return f"### {_md(b[1])}"
    if kind == "verdict":
        mark = {True: "✅ **holds**", False: "❌ **does not hold**", None: "➖ **no verdict**"}[b[1]]
        return f"{mark}: **{_md(b[2])}**" if b[3] else f"- {mark}: {_md(b[2])}"
    if kind == "table":
        _, header, rows, note, kv, md = b
        cell = (lambda s: s) if md else _md
        lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join([f"**{cell(r[0])}**" if kv and r[0] else cell(r[0])] + [cell(c) for c in r[1:]])
                  + " |" for r in rows]
        return "\n".join(lines) + (f"\n\n<sub>{_md(note)}</sub>" if note else "")
    if kind == "figure":
        return f"![{_md(b[2])}]({link(Path(b[1]))})"
    if kind == "code":
        return f"```bash\n{b[1]}\n```"
    if kind == "missing":
        return f"**Missing.** {_md(b[1])}\n\n```bash\n{b[2]}\n```"
    if kind == "unreadable":
        return f"**Unreadable:** {_md(b[1])}"
    if kind == "details":  # GitHub renders Markdown inside <details> after a blank line
        return f"<details><summary>{_md(b[1])}</summary>\n\n{_md_block(b[2], link)}\n\n</details>"
    raise ValueError(f"unknown block {kind!r}")


def headline(sections: list[Section]) -> tuple[str, list[list[str]], list[str]]:
    """('K of N claims hold', one summary row per part, notes on quick/missing/unreadable parts)."""
    judged = [s for s in sections if s.holds is not None]
    text = f"{sum(s.holds for s in judged)} of {len(judged)} claims hold" if judged else "No verdicts yet"
    rows = [[s.title, s.claim or "", BADGE[s.holds][1] if s.holds is not None else "" if s.status == "ok"
             else s.status, s.mode or ""] for s in sections]
    notes = []
    if any(s.mode == "quick" for s in judged):
        notes.append("Some parts ran in quick mode (a data subset and a small sweep): a smoke test, not evidence.")
    for status in ("missing", "unreadable"):
        names = [s.title for s in sections if s.status == status]
        if names:
            notes.append(f"{status.capitalize()}: {', '.join(names)}.")
    return text, rows, notes


INTRO = ("A vanilla RNN classifying IMDB reviews, and its four shortfalls measured. Each verdict is computed "
         "from the numbers saved next to it.")


def render_html(sections: list[Section], runs_dir: Path) -> str:
    text, rows, notes = headline(sections)
    summary = ('<table class="data"><thead><tr><th>part</th><th>claim</th><th>verdict</th><th>mode</th></tr>'
               "</thead><tbody>" + "".join(
                   f'<tr><td><a href="#{_esc(s.id)}">{_esc(s.title)}</a></td><td>{_esc(r[1])}</td>'
                   + (f'<td class="{BADGE[s.holds][0]}"><span class="badge">{_esc(r[2])}</span></td>'
                      if s.holds is not None else f"<td>{_esc(r[2])}</td>")
                   + f"<td>{_esc(r[3])}</td></tr>" for s, r in zip(sections, rows)) + "</tbody></table>")
    body = [f'<section id="{_esc(s.id)}" class="part status-{s.status}"><h2>{_esc(s.title)}</h2>'
            + "\n".join(_html_block(b) for b in s.blocks) + "</section>" for s in sections]
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>rnnlab report: {_esc(text)}</title><style>{CSS}</style></head><body>\n"
            f'<header><h1>rnnlab report</h1><p class="headline">{_esc(text)}</p><p>{_esc(INTRO)}</p>{summary}'
            + "".join(f'<p class="warn">{_esc(n)}</p>' for n in notes)
            + f'<p class="note">Rendered {time.strftime("%Y-%m-%d %H:%M")} from {_esc(runs_dir)} by rnnlab report.</p>'
            "</header>\n" + "\n".join(body)
            + f'\n<p id="render-check" hidden></p><script>{CHECK_JS}</script>\n</body></html>\n')


def render_markdown(sections: list[Section], runs_dir: Path, link) -> str:
    text, rows, notes = headline(sections)
    out = ["# rnnlab report", f"**{_md(text)}**", _md(INTRO),
           _md_block(("table", ["part", "claim", "verdict", "mode"], rows, None, False, False), link)]
    out += [f"> **Note.** {_md(n)}" for n in notes]
    out.append(f"<sub>Rendered {time.strftime('%Y-%m-%d %H:%M')} from {_md(runs_dir)} by rnnlab report.</sub>")
    for s in sections:
        out.append(f"## {_md(s.title)}")
        out += [_md_block(b, link) for b in s.blocks]
    return "\n\n".join(out) + "\n"


# --- the whole report ---------------------------------------------------------------------------

def collect(runs_dir: Path) -> list[Section]:
    """Every section, read from RUNS_DIR (ReportError if it is absent or holds nothing rnnlab made)."""
    if not runs_dir.is_dir():
        raise ReportError(f"{runs_dir}: no such directory")
    shortfalls = runs_dir / "shortfalls"
    if not shortfalls.is_dir() and any((runs_dir / n / "verdict.json").exists() for n in SHORTFALLS):
        shortfalls = runs_dir  # RUNS_DIR is itself an `rnnlab shortfall --out` directory
    made = ((runs_dir / "seed").is_dir() or (runs_dir / "compare").is_dir()
            or any((shortfalls / n).is_dir() for n in SHORTFALLS))
    if not made:
        raise ReportError(f"{runs_dir}: holds nothing rnnlab made (expected seed/, shortfalls/<name>/ or compare/)")
    data = _known_data(runs_dir, shortfalls) or "PATH"
    return ([seed_section(runs_dir / "seed", data)]
            + [shortfall_section(n, shortfalls / n, shortfalls, data) for n in SHORTFALLS]
            + [compare_section(runs_dir / "compare", data)])


def _known_data(runs_dir: Path, shortfalls: Path) -> str | None:
    """The data path recorded by any part, for the commands that make the missing ones."""
    for f in [runs_dir / "seed" / "meta.json", runs_dir / "compare" / "verdict.json",
              *(shortfalls / n / "verdict.json" for n in SHORTFALLS)]:
        try:
            d = read_json(f)
        except RunError:
            continue
        if isinstance(d, dict) and _data_path(d.get("data")):
            return _data_path(d["data"])
    return None


def _inside(path: Path, parent: Path) -> bool:
    return path.resolve().is_relative_to(parent.resolve())


def write_report(runs_dir: str | os.PathLike = "results/lab", out: str | os.PathLike | None = None,
                 markdown: str | os.PathLike | None = None, assets: str | os.PathLike | None = None) -> dict:
    """Render RUNS_DIR to `out` (default RUNS_DIR/report.html) and its Markdown twin; both atomically.

    markdown: default `out` with .md. assets: where the Markdown's figures are copied; default none
    (linked in place) when the Markdown is inside RUNS_DIR, else `figures/` next to the Markdown.
    Returns {"html", "markdown", "assets": [copied files], "claims", "hold", "missing": [part ids],
    "unreadable": [part ids], "problems": ["<part>: <why>"]}.
    """
    runs_dir = Path(runs_dir)
    sections = collect(runs_dir)
    out = Path(out) if out is not None else runs_dir / "report.html"
    markdown = Path(markdown) if markdown is not None else out.with_suffix(".md")
    for p in (out, markdown):
        if p.is_dir():
            raise ReportError(f"{p}: is a directory; give a file name")
    if out.resolve() == markdown.resolve():
        raise ReportError(f"{out}: the HTML and the Markdown need different files")
    if assets is None and not _inside(markdown.parent, runs_dir):
        assets = markdown.parent / "figures"
    out.parent.mkdir(parents=True, exist_ok=True)
    markdown.parent.mkdir(parents=True, exist_ok=True)
    copied: list[Path] = []

    def link(png: Path) -> str:
        target = png
        if assets is not None:
            # serial/serial.png -> serial.png; seed/learning_curve.png -> seed-learning_curve.png
            name = png.name if png.stem == png.parent.name else f"{png.parent.name}-{png.name}"
            target = Path(assets) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                shutil.copyfile(png, tmp)
            copied.append(target)
        return Path(os.path.relpath(target.resolve(), markdown.parent.resolve())).as_posix()

    write_text(out, render_html(sections, runs_dir))
    write_text(markdown, render_markdown(sections, runs_dir, link))
    judged = [s for s in sections if s.holds is not None]
    return {"html": str(out), "markdown": str(markdown), "assets": [str(p) for p in copied],
            "claims": len(judged), "hold": sum(s.holds for s in judged),
            "missing": [s.id for s in sections if s.status == "missing"],
            "unreadable": [s.id for s in sections if s.status == "unreadable"],
            "problems": [f"{s.id}: {why}" for s in sections for why in s.problems]}
