"""The report: one self-contained HTML page and its Markdown twin, rendered from a lab's saved files.

    rnnlab report results/lab                                  # -> results/lab/report.html and report.md
    rnnlab report results/lab --markdown docs/RESULTS.md       # figures copied to docs/RESULTS_figures/
    from rnnlab.report import write_report
    written = write_report("results/lab")    # {"html", "markdown", "summary", "outcomes", "problems", ...}

It reads only what `rnnlab lab` writes (CSV and JSON, and the figures) and recomputes nothing:
LAB/seed/ (the notebook's exercise), LAB/<experiment>/verdict.json and <experiment>.png for every
experiment of the registry (rnnlab.experiments), LAB/explain/ and LAB/lab.json. A missing part becomes
a section naming the command that makes it; a part that cannot be read, or whose results.csv is not the one
its verdict was computed from (by the digest the verdict records), is shown as "unreadable: why".
The HTML embeds its figures as data: URIs and loads nothing from anywhere.
"""
from __future__ import annotations

import contextlib
import math
import os
import shlex
import shutil
import time
import urllib.parse
from pathlib import Path

from .blocks import CSS, OUTCOME_CLASS, Code, Figure, Heading, Outcome, Section, Table, Text, esc, fmt, md_text
from .experiments import EXPERIMENTS
from .experiments.stats import t_interval
from .io import (RunError, atomic_path, fault, first_line, is_run_dir, missing_folders, no_such, owner, read_json,
                 require_file, shorten, text_file_sha256, write_files)


INTRO = ("A vanilla RNN classifying IMDB reviews, and its four shortfalls measured. Each verdict is computed "
         "from the numbers saved next to it, with a 95% interval over training seeds (every seed is tested on the "
         "same reviews and the same planted probes, so the interval leaves out which were drawn); \"inconclusive\" "
         "means the interval straddles the threshold, or a part or a control the claim requires left it undecided "
         "(its rows say which). Thresholds are declared in code before this lab ran (a section says where its verdict was "
         "rewritten after). ")


def intro(sections: list[Section]) -> str:
    """The report's opening paragraph; the number of tests is counted from the verdicts shown."""
    n = sum(s.tests for s in sections)
    parts = ("a claim of several parts does not hold if any part does not, so a true claim of k parts is refuted by "
             "chance up to about k x 2.5% of the time.")
    if not n:
        return INTRO + parts[0].upper() + parts[1:]
    if any(s.mode == "quick" and s.tests for s in sections):  # one seed: most outcomes have no interval to test
        return INTRO + (f"Each of the {n} outcomes below is a 95% test where it has an interval; a --quick lab's one seed "
                        f"leaves most of them without one (inconclusive), as a smoke test should; {parts}")
    return INTRO + (f"Each of the {n} outcomes below is its own 95% test, so about {n * 0.05:.1f} of them may fall the "
                    f"other way by chance; {parts}")


def data_budget(sections: list[Section]) -> str:
    """What this lab's shortfalls and comparison trained and tested on (by its mode and seeds), in words."""
    from .config import BUDGET, DATA, QUICK_EPOCHS, QUICK_SEED, SEEDS  # not experiments.common: it imports torch

    modes = {s.mode for s in sections if s.mode in ("full", "quick")}
    if not modes:
        return ""
    if len(modes) > 1:
        return "Its parts come from a full lab and a --quick one (the warning names which): no one budget describes them."
    mode = modes.pop()
    n, epochs, val = DATA[mode], QUICK_EPOCHS if mode == "quick" else BUDGET["epochs"], BUDGET["val_fraction"]
    seeds = next((len(s.seeds) for s in sections if s.seeds), len(SEEDS[mode]))
    plural = lambda k, word: f"{k:,} {word}{'' if k == 1 else 's'}"  # noqa: E731
    exercise = ("uses every review of both" if mode == "full" else
                f"trains on {QUICK_SEED['n_train']:,} reviews for {plural(QUICK_SEED['epochs'], 'epoch')} and tests on "
                f"{QUICK_SEED['n_test']:,}")
    whose = "This --quick lab's" if mode == "quick" else "The"
    return (f"{whose} shortfalls and comparison train each model for "
            f"{plural(epochs, 'epoch')} on the same class-balanced {n['n_train']:,} training reviews ("
            f"{'its one seed' if seeds == 1 else f'each of the {seeds:,} seeds'} holds out {val:.0%} of them for validation, so "
            f"{round(n['n_train'] * (1 - val)):,} train it) and test it on the same {n['n_test']:,} test reviews (all "
            f"of a split that has fewer); the notebook's exercise {exercise}.")


class ReportError(RunError):
    """LAB is missing or holds nothing rnnlab made."""


def _bounds(e: dict) -> tuple:
    """(low, high) of an effect's ci95; (None, None) where it is not a pair (a damaged file shows no interval)."""
    ci = e.get("ci95")
    return tuple(ci) if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None)


def _named(key: str, e: dict) -> str:
    """"what it measures = " where a per-model effect names it, else "model: "."""
    name = e.get("name") if isinstance(e, dict) else None
    return f"{name} = " if isinstance(name, str) and name and name != key else f"{key}: "


def num(x) -> str:
    """`fmt` of a number of a verdict (an estimate, a bound, a threshold, a seed's value) or of None (not measured);
    TypeError for anything else, so a verdict.json with text where rnnlab writes numbers reads as unreadable (a
    number replaced by "x" was shown as "x" as if it had been measured: session 63's fault hunt)."""
    if x is None or (isinstance(x, (int, float)) and not isinstance(x, bool)):
        return fmt(x)
    if isinstance(x, list):
        return ", ".join(num(v) for v in x)
    raise TypeError(f"{shorten(repr(x))} where a number belongs")


def effect_cells(e: dict) -> list[str]:
    """[estimate, 95% interval, threshold, per seed] of one effect (or of several, one per model)."""
    if e and "estimate" not in e:  # one effect per model
        return ["; ".join(f"{_named(k, v)}{num(v.get('estimate'))}" for k, v in e.items()),
                "; ".join(f"{k}: [{num(_bounds(v)[0])}, {num(_bounds(v)[1])}]" for k, v in e.items()),
                "; ".join(f"{'<' if v.get('direction') == 'below' else '>'} {num(v.get('threshold'))}" for v in e.values()),
                ""]
    lo, hi = _bounds(e) if e else (None, None)
    name = f"{e['name']} = " if isinstance(e.get("name"), str) and e["name"] else ""  # what the number measures
    return [name + num(e.get("estimate")), f"[{num(lo)}, {num(hi)}]",
            f"{'<' if e.get('direction') == 'below' else '>'} {num(e.get('threshold'))}", num(e.get("per_seed"))]


def _alone(e) -> str | None:
    """The outcome one effect's own interval gives against its threshold, or its recorded reason's (undecided); None
    where it is no single effect with a finite interval (per-model effects, a damaged or missing field)."""
    from .experiments.stats import UNDECIDED, outcome

    if not isinstance(e, dict) or "estimate" not in e:
        return None
    if isinstance(e.get("undecided"), str) and e["undecided"]:
        return UNDECIDED
    try:
        lo, hi = (float(x) for x in _bounds(e))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return None
        return outcome(lo, hi, float(e["threshold"]), e["direction"])
    except BAD_FIELDS:
        return None


def _deciding(v: dict) -> list[str]:
    """Where a claim's own effect alone would have decided otherwise, the parts its outcome also combines (verdict.json's
    "parts", each with its outcome) that gave the claim's outcome."""
    alone = _alone(v.get("effect"))
    if alone is None or alone == v.get("outcome"):
        return []
    return [str(p.get("part")) for p in v.get("parts") or [] if isinstance(p, dict) and p.get("outcome") == v["outcome"]]


def _outcome_cell(q: dict, parts: list[str] = ()) -> str:
    """The outcome, and why where the effect beside it does not say: an inconclusive one's recorded reason (a control,
    one seed, a missing value) or its interval spanning the threshold; the parts of the claim that decided it
    (`_deciding`); or, where the effect alone would decide otherwise, the criterion's other test."""
    from .experiments.stats import UNDECIDED

    e, outcome = q.get("effect") or {}, q.get("outcome")
    why = e.get("undecided") if isinstance(e, dict) else None
    if isinstance(e, dict) and "estimate" not in e and not why:  # one effect per model: each one's recorded reason
        models: dict[str, list[str]] = {}
        for k, v in e.items():
            if isinstance(v, dict) and isinstance(v.get("undecided"), str) and v["undecided"]:
                models.setdefault(v["undecided"], []).append(str(k))
        why = "; ".join(f"{', '.join(ks)}: {r}" for r, ks in models.items())
    alone = _alone(e)
    if outcome == UNDECIDED and isinstance(why, str) and why:
        return f"{outcome} ({why})"
    if parts:
        return f"{outcome} (decided by: {'; '.join(parts)})"
    if outcome == UNDECIDED and alone == UNDECIDED:
        return f"{outcome} (the 95% interval spans the threshold)"
    if alone is not None and alone != outcome and alone != UNDECIDED:
        return f"{outcome} (effect alone: {alone}; another test of the criterion decided it)"
    return str(outcome)


def verdict_blocks(v: dict) -> list:
    blocks = [Outcome(v["outcome"], v["claim"]), Text(f"Criterion: {v['criterion']}", note=True)]
    claims = [("claim", v), *(("sub-question", q) for q in v.get("questions", [])),
              *(("negative control", c) for c in v.get("controls", []))]
    rows = [[kind, q["claim"], _outcome_cell(q, _deciding(q)), *effect_cells(q.get("effect") or {})]
            for kind, q in claims]
    for row, (_, q) in zip(rows, claims):  # an effect that is |k - 1|: k itself beside it (serial's, below 1 or above)
        k = (q.get("numbers") or {}).get("k") if isinstance(q.get("numbers"), dict) else None
        if isinstance(k, list) and len(k) == 3 and all(isinstance(x, (int, float)) for x in k):
            row[3] += f" (k = {fmt(k[0])} [{fmt(k[1])}, {fmt(k[2])}])"
    at_init = (v.get("numbers") or {}).get("at_init")  # the claim's second part (vanishing gradients): its own row
    if isinstance(at_init, dict) and "estimate" in at_init:
        rows.insert(1, ["claim, its second part", str(at_init.get("name", "at initialisation")),
                        "(in the claim's outcome)", *effect_cells({**at_init, "name": ""})])  # named beside it
    blocks.append(Table(["", "claim", "outcome", "effect", "95% interval", "threshold", "per replicate"], rows,
                        "Effect sizes: the mean with its 95% t interval, over seeds unless the criterion says otherwise "
                        "(lengths, or the repeats of one timing run); per replicate: the values it is over"))
    table = v.get("numbers", {}).get("table")
    if table:
        keys = list(table[0])
        blocks.append(Table(keys, [[fmt(r.get(k)) for k in keys] for r in table], "One row per model (table.csv)"))
    return blocks


def run_blocks(v: dict) -> list:
    hw = v.get("hardware", {})
    machine = f"{hw.get('processor', '?')}, {_cores(hw)}, torch {hw.get('torch', '?')}"
    return [Code(v.get("command", "")), Table(["how it was run", ""], [
        ["mode", v.get("mode", "")], ["data", str(v.get("data", ""))], ["machine", machine],
        ["jobs", f"{v.get('jobs', '?')} ({v.get('workers', '?')} worker(s) x {v.get('threads_per_job', '?')} thread(s))"],
        ["wall time of the conclusion", f"{fmt(v.get('seconds'))} s"],
        ["commit", f"{hw.get('git_commit', 'n/a')}{' (uncommitted changes)' if hw.get('git_dirty') else ''}"]])]


# --- sections ----------------------------------------------------------------------------------------

def _command(lab: Path, known: dict) -> str:
    data, quick = known.get("data"), known.get("mode") == "quick"
    return shlex.join(["rnnlab", "lab", *(["--quick"] if quick else []), *(["--data", data] if data else []),
                       "--out", str(lab)])


def _record(path: Path, keys: tuple[str, ...]) -> dict:
    """A JSON object with `keys`, or RunError saying why not."""
    d = read_json(path)
    if not isinstance(d, dict) or not all(k in d for k in keys) or not all(
            isinstance(d[k], str) for k in keys if k in ("claim", "criterion", "outcome", "mode")):
        raise RunError(f"{path}: not what rnnlab writes (needs {', '.join(keys)})")
    return d


def _judged_rows(d: Path, record: dict) -> None:
    """RunError unless d/results.csv holds the rows `record` (a verdict.json or the exercise's summary.json) was
    computed from, by the digest it recorded (labs made before it was recorded: not checked)."""
    if record.get("results_sha256") is None:
        return
    rows = d / "results.csv"
    try:
        require_file(rows)
        same = text_file_sha256(rows) == record["results_sha256"]
    except OSError as e:
        raise RunError(f"{rows}: {fault(e)}") from None
    if not same:
        raise RunError(f"{rows}: not the rows the verdict beside it was computed from (changed since the lab "
                       "wrote them)")


def _not_there(sec: Section, path: Path, err: RunError, lab: Path, known: dict) -> Section:
    missing = not path.exists()
    sec.outcome = "missing" if missing else "unreadable"
    sec.blocks += [Text("Not made yet." if missing else f"Unreadable: {err}"), Text("Make it with:"),
                   Code(_command(lab, known))]
    return sec


def figure(png: Path, alt: str) -> list:
    """[the figure at `png`], or [a note saying why it is not shown]: it is missing (the lab draws every figure it
    names), cannot be read, or is not a whole PNG image (an image the browser cannot draw is not embedded)."""
    from PIL import Image, UnidentifiedImageError

    if not png.exists() and not png.is_symlink():
        return [Text(f"Figure not shown: {png}: missing (rerunning the lab draws it again)", note=True)]
    if not png.is_file() and not png.is_dir():  # a FIFO: its read would block for ever
        return [Text(f"Figure not shown: {png}: not a regular file", note=True)]
    try:
        with Image.open(png) as im:
            if im.format != "PNG":
                raise ValueError(f"a {im.format} image, not a PNG")
            im.verify()  # every chunk there and its checksum right
    except UnidentifiedImageError:
        why = "not an image file"
    except Image.DecompressionBombError:  # a header declaring billions of pixels
        why = "an image too large to draw"
    except OSError as e:
        why = e.strerror or first_line(e)
    except (SyntaxError, ValueError) as e:  # what Pillow raises for a damaged PNG
        why = first_line(e)
    else:
        return [Figure(png, alt)]
    return [Text(f"Figure not shown: {png}: {why}", note=True)]


# what a JSON field of the wrong type raises (OverflowError: an integer too large for a float, 10**400; RecursionError:
# a list nested hundreds deep, which JSON reads but formatting recurses into)
BAD_FIELDS = (AttributeError, TypeError, KeyError, ValueError, OverflowError, RecursionError)


def _bad_fields(sec: Section, path: Path, err: Exception, lab: Path, known: dict) -> Section:
    """`sec` emptied and shown as unreadable: `path` parsed, but a field is not of the type rnnlab writes."""
    sec.blocks, sec.claim, sec.mode = sec.blocks[:1] if sec.blocks and isinstance(sec.blocks[0], Text) else [], "", ""
    return _not_there(sec, path, RunError(f"{path}: not what rnnlab writes ({type(err).__name__}: {err})"), lab, known)


QUICK = "Quick mode: a data subset and short schedules (one seed unless --seeds said otherwise). A smoke test, not evidence."


def experiment_section(name: str, lab: Path, known: dict) -> Section:
    e = EXPERIMENTS[name]
    sec = Section(name, e.title, [Text(e.question)])
    d = lab / name
    try:
        v = _record(d / "verdict.json", ("claim", "criterion", "outcome"))
        if v["outcome"] not in OUTCOME_CLASS:  # it would be left out of the headline's count, unsaid
            raise RunError(f"{d / 'verdict.json'}: outcome {shorten(repr(v['outcome']))} is none of rnnlab's "
                           f"({', '.join(OUTCOME_CLASS)})")
        _judged_rows(d, v)
    except RunError as err:
        return _not_there(sec, d / "verdict.json", err, lab, known)
    sec.outcome, sec.claim, sec.mode = v.get("outcome", ""), v.get("claim", ""), v.get("mode", "")
    sec.seeds = _as_seeds((v.get("settings") if isinstance(v.get("settings"), dict) else {}).get("seeds"))
    sec.data = _as_fingerprint(v)
    if sec.mode == "quick":
        sec.blocks.append(Text(QUICK))
    try:
        sec.blocks += verdict_blocks(v)
        sec.tests = 1 + len(v.get("questions", [])) + len(v.get("controls", []))
        if isinstance(v.get("rejudged"), dict):  # benchmarks/rejudge.py --write: no outcome moved, after the lab ran
            sec.blocks.append(Text(f"This verdict was rewritten after this lab ran (commit "
                                   f"{v['rejudged'].get('commit') or '?'}), from the committed rows by "
                                   f"{v['rejudged'].get('by') or 'rejudge'}, after a change to its criterion's code "
                                   "(its wording, a table's column, or a decision rule that moves none of this lab's "
                                   "outcomes; docs/REVIEW.md says which): no outcome or estimate moved.", note=True))
        sec.blocks += figure(d / f"{name}.png", f"{e.title}: figure")
        sec.blocks += run_blocks(v)
    except BAD_FIELDS as err:
        return _bad_fields(Section(name, e.title, [Text(e.question)]), d / "verdict.json", err, lab, known)
    return sec


def exercise_section(lab: Path, known: dict) -> Section:
    sec = Section("seed", "The notebook's exercise")
    f = lab / "seed" / "summary.json"
    try:
        s = _record(f, ("test_acc_mean", "test_acc_by_seed", "epochs", "train_reviews", "mode"))
        _judged_rows(f.parent, s)
    except RunError as err:
        return _not_there(sec, f, err, lab, known)
    try:
        return _exercise_blocks(sec, s, lab)
    except BAD_FIELDS as err:
        return _bad_fields(Section("seed", "The notebook's exercise"), f, err, lab, known)


def _exercise_blocks(sec: Section, s: dict, lab: Path) -> Section:
    n = len(s["test_acc_by_seed"])
    _, low, high = t_interval(s["test_acc_by_seed"])
    interval = f" [{fmt(low)}, {fmt(high)}]" if n > 1 else ""
    sec.claim, sec.mode = (f"test accuracy {fmt(s['test_acc_mean'])}{interval} after {s['epochs']} epochs (mean"
                           f"{' and 95% t interval' if n > 1 else ''} of {n} seed{'s' if n != 1 else ''}, on "
                           f"{'a subset of the' if s['mode'] == 'quick' else 'every'} test review"
                           f"{'s' if s['mode'] == 'quick' else ''})"), s["mode"]
    sec.seeds, sec.data = _as_seeds(s.get("seeds")), _as_fingerprint(s)
    if sec.mode == "quick":
        sec.blocks.append(Text(QUICK))
    sec.blocks += [Text("The notebook's recipe (preset notebook): embedding 100, vanilla tanh RNN with 128 hidden units "
                        "read at its last step, Adam 1e-3, batch 64 shuffled as the notebook's DataLoader does, whole "
                        f"reviews, {s['train_reviews']:,} training reviews, test accuracy after every epoch."),
                   Table(["seed", "test accuracy after the last epoch"],  # files before --seeds: 0, 1, 2, ...
                         [[str(seed), fmt(a)] for seed, a in zip(sec.seeds if sec.seeds and len(sec.seeds) == n
                                                                 else range(n), s["test_acc_by_seed"])])]
    sec.blocks += figure(lab / "seed" / "seed.png", "the notebook's exercise: learning curves")
    return sec


def _as_fingerprint(record: dict) -> str | None:
    """The data fingerprint a part recorded (labs before it was recorded: None)."""
    fp = record.get("data_fingerprint")
    return fp if isinstance(fp, str) and fp else None


def _as_seeds(x) -> tuple | None:
    """A part's recorded seeds, or None where it records none (or not as a list of integers)."""
    return tuple(x) if isinstance(x, list) and x and all(type(v) is int for v in x) else None


ILLUSTRATES = {"long, decided late": "long reviews and the fixed memory: the verdict comes from the last sentences",
               "short": "a review short enough that nothing is forgotten",
               "RNN wrong, LSTM right": "vanishing gradients: what the gated model keeps and the vanilla RNN loses"}


def explain_section(lab: Path, known: dict) -> Section:
    sec = Section("explain", "Inside the models: three reviews, word by word")
    f = lab / "explain" / "picks.json"
    try:
        picks = _record(f, ("models", "picks"))
    except RunError as err:
        return _not_there(sec, f, err, lab, known)
    try:
        return _explain_blocks(sec, picks, lab, known)
    except BAD_FIELDS as err:
        return _bad_fields(Section("explain", sec.title), f, err, lab, known)


def _kept_runs(picks: dict, lab: Path) -> list[str] | None:
    """The paths of the runs that explained the picks, where picks.json names them and they are still there (labs
    made before it named them, or a lab whose jobs/ was deleted or not copied along: None)."""
    runs = picks.get("runs")
    if not (isinstance(runs, dict) and runs and all(isinstance(r, str) for r in runs.values())):
        return None
    paths = [lab / r for r in runs.values()]
    return [str(p) for p in paths] if all((p / "model.safetensors").is_file() for p in paths) else None


def _again(picks: dict, n: int, lab: Path, known: dict) -> str:
    """The command that explains test review `n` again with the lab's own runs (where they are not at hand, RUN
    stands for each, and a note says where a lab keeps them)."""
    runs = _kept_runs(picks, lab)
    command = shlex.join(["rnnlab", "explain", *(runs or ["RUN", "..."]), "--review", str(n), "--data",
                          known.get("data") or "DATA"])
    return command if runs else (f"{command} (RUN ...: a run of each model above; a lab keeps its own in its "
                                 "jobs/ folder).")


def _explain_blocks(sec: Section, picks: dict, lab: Path, known: dict) -> Section:
    if not isinstance(picks["models"], list) or not isinstance(picks["picks"], list):
        raise TypeError("models and picks must be lists")
    seed, mode = picks.get("seed"), picks.get("mode")
    sec.seeds, sec.data = (seed,) if type(seed) is int else None, _as_fingerprint(picks)
    sec.mode = mode if mode in ("full", "quick") else ""  # so a --quick explain part in a full lab is flagged
    sec.blocks.append(Text(f"Each review is read by the comparison's {', '.join(picks['models'])} (preset, "
                           f"{f'seed {seed}' if sec.seeds else 'first seed'}). "
                           "The running opinion is P(positive) had the review ended at that word; the attribution "
                           "is Integrated Gradients; the gradient norm is ||dL/dx_t|| at each word's embedding "
                           "(rnnlab explain). The reviews were picked by the rules below, not by hand"
                           + (f", from {picks['among']}." if isinstance(picks.get("among"), str) else ".")
                           + _completeness(picks)))
    for p in picks["picks"]:
        if p.get("index") is None:
            sec.blocks.append(Text(f"{p['rule']}: no test review met the rule ({p['criterion']})."))
            continue
        where = (f"test review {p['data_index']}" if "data_index" in p  # made before data_index was recorded:
                 else f"review {p['index']} of the lab's test subset")  # a place in the subset, not in the data
        first = (p.get("explanations") or [{}])[0]
        whole, cut_head = first.get("n_review_tokens", p["n_tokens"]), first.get("start", 0) > 0
        read = (f"the {'last' if cut_head else 'first'} {p['n_tokens']} of its {whole} tokens"
                if isinstance(whole, int) and whole > p["n_tokens"] else f"{p['n_tokens']} tokens")
        sec.blocks += [Heading(f"{p['rule']}: {where} ({read}, label "
                               f"{'positive' if p['label'] else 'negative'})"),
                       Text(f"Rule: {p['criterion']}. Illustrates {ILLUSTRATES.get(p['rule'], '')}."
                            + (f" To read it again: {_again(picks, p['data_index'], lab, known)}"
                               if "data_index" in p else ""), note=True)]
        png = p.get("files", {}).get("png")
        if png and _in_folder(lab / "explain", lab / "explain" / png, exists=False):  # missing: figure() says so
            sec.blocks += figure(lab / "explain" / png, f"{p['rule']}: the review word by word")
        elif png:  # a name with '..' would embed any image on the disk
            sec.blocks.append(Text(f"Figure not shown: explain/{png}, which picks.json names, is not in the lab's "
                                   "folder.", note=True))
        page = f"explain/{p['files']['html']}"
        sec.blocks.append(Text(f"Interactive page: {page} in the lab's folder (hover a word for its numbers)."
                               if _in_folder(lab / "explain", lab / page) else
                               f"Interactive page: {page}, which picks.json names, is not in the lab's folder.", note=True))
    return sec


def _in_folder(folder: Path, f: Path, exists: bool = True) -> bool:
    """Whether `f` is a file inside `folder` (with exists=False: would be, if it were there; a name with '..' that
    leads out of it is not; one the system cannot look up, too long or with a NUL, neither)."""
    try:
        return (f.is_file() or not exists) and f.resolve().is_relative_to(folder.resolve())
    except (OSError, ValueError, RuntimeError):  # RuntimeError: a link loop
        return False


def _completeness(picks: dict) -> str:
    """How many of the saved explanations pass Integrated Gradients' completeness check, as a sentence."""
    from types import SimpleNamespace

    from .explain import attribution_warning

    needed = ("model", "attribution", "attribution_delta", "logit", "baseline_logit")
    judged = [SimpleNamespace(**{k: d[k] for k in needed}) for p in picks["picks"]
              for d in p.get("explanations") or [] if isinstance(d, dict) and all(d.get(k) is not None for k in needed)]
    if not judged:  # none saved, none with attributions, or a lab from before explanations were kept whole
        return ""
    holds = sum(not attribution_warning(e) for e in judged)
    return (f" Integrated Gradients' completeness check (the attributions add up to the logit's change from a "
            f"blank review, within 5% or 0.01) holds in {holds} of these {len(judged)} explanations"
            + (": where it fails, read the attribution panel as rough (docs/USAGE.md, 'Attributions')."
               if holds < len(judged) else "."))


def lab_section(record) -> Section:
    """The lab's record as a table; a record that is not what rnnlab writes is shown as unreadable, with why."""
    if not isinstance(record, dict):
        kind = {"NoneType": "null", "list": "array", "str": "string", "bool": "true or false"}.get(
            type(record).__name__, "number")
        return _unreadable_lab(f"not what rnnlab writes (a JSON {kind}, not an object)")
    try:
        return _lab_table(record)
    except BAD_FIELDS as err:
        return _unreadable_lab(f"not what rnnlab writes ({type(err).__name__}: {err})")


def _unreadable_lab(why: str) -> Section:
    return Section("lab", "How the lab was run", [Text(f"Unreadable: lab.json: {why}")], outcome="unreadable")


def _cores(env: dict) -> str:
    """The machine's cores, and how many the run could use where fewer (taskset, a cpuset, a CPU quota)."""
    usable = env.get("usable_cpus")
    return f"{env.get('cpu_count', '?')} cores" + (f" ({usable} usable)" if usable is not None else "")


def _earlier(record: dict) -> str:
    """Where a rerun resumed the lab: how many of its jobs an earlier run finished (the jobs' wall time is this run's)."""
    jobs, ran = record.get("jobs"), record.get("jobs_run")
    if type(jobs) is not int or type(ran) is not int or not 0 <= ran < jobs:
        return ""
    return f"; {jobs - ran} of them finished by an earlier run (read from the job store), so not in the wall time below"


def _lab_table(record: dict) -> Section:
    env = record.get("environment", {})
    rows = [["command", record.get("command", "")], ["machine", f"{env.get('processor', '?')}, {_cores(env)}, "
             f"torch {env.get('torch', '?')}"], ["commit", f"{env.get('git_commit', 'n/a')}"
             f"{' (uncommitted changes)' if env.get('git_dirty') else ''}"],
            ["jobs", f"{record.get('jobs', '?')} on {record.get('workers', '?')} worker(s) x "
                     f"{record.get('threads_per_job', '?')} thread(s)"
             + _earlier(record)]]
    if "seeds" in record:
        rows.append(["seeds", ", ".join(map(str, record["seeds"]))])
    rows += [[f"wall time: {k}", f"{fmt(v)} s"] for k, v in record.get("phases_seconds", {}).items()]
    rows += [[f"seconds of the jobs {k} reads (summed from the job store)", fmt(v)]
             for k, v in record.get("job_seconds_by_experiment", {}).items()]
    if "seed_baseline_epoch_seconds" in record:
        rows.append(["the notebook's own script (../shared/bench/seed_baseline.py), one epoch here (for scale)",
                     f"{fmt(record['seed_baseline_epoch_seconds'])} s"])
    return Section("lab", "How the lab was run", [Table(["", ""], rows)])


def collect(lab: Path) -> list[Section]:
    """Every section, read from LAB (ReportError if it is absent or holds nothing rnnlab made)."""
    if not lab.is_dir():
        why = no_such(lab, "directory")
        raise ReportError(why + ("; make it with rnnlab lab, or give the folder a lab wrote"
                                 if why.endswith("no such directory") else ""))
    if not any((lab / n).is_dir() for n in ("seed", *EXPERIMENTS)):
        if is_run_dir(lab):
            raise ReportError(f"{lab}: a training run, not a lab: report renders the folder rnnlab lab writes (its --out)")
        raise ReportError(f"{lab}: holds nothing rnnlab made (expected seed/ or one of {', '.join(EXPERIMENTS)})")
    lab_part, record = None, None  # the section "How the lab was run", from lab.json
    if (lab / "lab.json").exists():
        try:
            record = read_json(lab / "lab.json")
        except RunError as e:
            lab_part = _unreadable_lab(str(e).removeprefix(f"{lab / 'lab.json'}: "))
    if lab_part is None and (lab / "lab.json").exists():  # `null` there too is a record rnnlab did not write
        lab_part = lab_section(record)
    known = _known(lab)
    sections = [exercise_section(lab, known), *(experiment_section(n, lab, known) for n in EXPERIMENTS),
                explain_section(lab, known)]
    sections += [lab_part] if lab_part else []
    record = record if isinstance(record, dict) else None
    warnings = []
    mixed = mixed_data(sections, record)
    if mixed:
        warnings.append(Section("data", "Warning: parts from different data", [Text(mixed)], outcome="mixed data"))
    mixed = mixed_seeds(sections, record)
    if mixed:
        warnings.append(Section("seeds", "Warning: parts from different seeds", [Text(mixed)], outcome="mixed seeds"))
    mixed = mixed_modes(sections)
    if mixed:
        warnings.append(Section("modes", "Warning: parts of a --quick run beside a full run's", [Text(mixed)],
                                outcome="mixed modes"))
    return [*warnings, *sections]


WARNINGS = ("data", "seeds", "modes")  # the ids of the sections collect puts first when a lab's parts disagree


def mixed_modes(sections: list[Section]) -> str | None:
    """A sentence naming the parts a --quick lab made where others are a full lab's (`shortfall NAME --quick` into a
    full lab's folder): the headline would count a smoke test's verdicts beside the evidence."""
    by: dict[str, list[str]] = {}
    judged: dict[str, bool] = {}  # whether a part of each mode has a verdict the headline counts (not seed, explain)
    for s in sections:
        if s.mode in ("full", "quick") and s.id != "lab":
            by.setdefault(s.mode, []).append(s.id)
            judged[s.mode] = judged.get(s.mode, False) or s.outcome in OUTCOME_CLASS
    if len(by) < 2:
        return None
    counted = "; the headline counts both" if judged["quick"] and judged["full"] else ""
    return (f"Some parts of this lab were made by a --quick run, a smoke test on little data ({', '.join(by['quick'])}), "
            f"the others by a full run ({', '.join(by['full'])}){counted}. Rerun them in one mode.")


def mixed_data(sections: list[Section], record: dict | None) -> str | None:
    """A sentence naming which parts ran on which data when their recorded data fingerprints differ (a part rerun
    with another --data into the same lab folder)."""
    parts = {s.id: s.data for s in sections if s.data is not None}
    if isinstance(record, dict) and _as_fingerprint(record):
        parts["lab.json"] = _as_fingerprint(record)
    if len(set(parts.values())) <= 1:
        return None
    groups = {}
    for name, fp in parts.items():
        groups.setdefault(fp, []).append(name)
    named = "; ".join(f"{', '.join(names)} on data {fp[:12]}" for fp, names in groups.items())
    return (f"The parts of this lab ran on different data ({named}): some were rerun with another --data into this "
            "folder. Their numbers cannot be compared; rerun the lab with one --data to make them agree.")


def mixed_seeds(sections: list[Section], record: dict | None) -> str | None:
    """A sentence naming the parts' seeds when they disagree (parts rerun or interrupted with other --seeds)."""
    runs = {s.id: s.seeds for s in sections if s.seeds is not None and s.id not in ("explain", "lab")}
    if isinstance(record, dict) and _as_seeds(record.get("seeds")):
        runs["lab.json"] = _as_seeds(record["seeds"])
    explained = next((s.seeds for s in sections if s.id == "explain" and s.seeds), None)
    first = {seeds[0] for seeds in runs.values()}
    if len(set(runs.values())) <= 1 and (explained is None or first <= set(explained)):
        return None
    parts = [f"{k} {', '.join(map(str, v))}" for k, v in runs.items()]
    parts += [f"explain {explained[0]}"] if explained else []
    return (f"The parts of this lab ran on different seeds ({'; '.join(parts)}): some were rerun, or a rerun was "
            "interrupted, with other --seeds. Rerun the lab with one --seeds to make them agree.")


def _known(lab: Path) -> dict:
    """The data path and mode any part recorded, for the command that makes the missing parts."""
    for n in EXPERIMENTS:
        try:
            v = _record(lab / n / "verdict.json", ("data", "mode"))
        except RunError:
            continue
        d = str(v["data"]).split(" (subset")[0]
        return {"data": None if d.startswith("hub:") else d, "mode": v["mode"]}
    return {}


# --- rendering ----------------------------------------------------------------------------------------

def summary(sections: list[Section]) -> str:
    judged = [s.outcome for s in sections if s.outcome in OUTCOME_CLASS]
    if not judged:
        return "no verdicts yet"
    return (", ".join(f"{judged.count(o)} {o}" for o in OUTCOME_CLASS if judged.count(o))
            + f" (of {len(judged)} claim{'s' * (len(judged) != 1)})")


def overview(sections: list[Section]) -> Table:
    return Table(["part", "claim", "verdict", "mode"], [[s.title, s.claim, s.outcome, s.mode] for s in sections
                                                        if s.id != "lab"])


def render_html(sections: list[Section], lab: Path) -> str:
    head = summary(sections)
    body = "\n".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>' + "\n".join(b.html(None) for b in s.blocks)
                     + "</section>" for s in sections)
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>rnnlab report: {esc(head)}</title><link rel="icon" href="data:,"><style>{CSS}</style></head>'
            "<body>\n"
            f"<header><h1>rnnlab report</h1><p class=\"headline\">{esc(head)}</p><p>{esc(intro(sections) + ' ' + data_budget(sections))}</p>"
            f"{overview(sections).html(None)}<p class=\"note\">Rendered {time.strftime('%Y-%m-%d %H:%M')} from "
            f"{esc(lab)} by rnnlab report.</p></header>\n{body}\n</body></html>\n")


def render_markdown(sections: list[Section], lab: Path, link) -> str:
    out = ["# rnnlab report", f"**{md_text(summary(sections))}**", md_text(intro(sections) + " " + data_budget(sections)),
           overview(sections).md(link),
           f"<sub>Rendered from {md_text(lab)} by rnnlab report.</sub>"]
    for s in sections:
        out.append(f"## {md_text(s.title)}")
        out += [b.md(link) for b in s.blocks]
    return "\n\n".join(out) + "\n"



README_START, README_END = "<!-- results: rendered by `rnnlab report --readme`; do not edit -->", "<!-- /results -->"


def readme_block(sections: list[Section], lab: Path) -> str:
    """The README's results: each experiment's claim, outcome and effect, and the comparison's accuracies."""
    return _readme_content(sections, lab)[0]


def _readme_content(sections: list[Section], lab: Path) -> tuple[str, list[str]]:
    """(the README's results block, the parts it had to leave out: missing, unreadable or not rnnlab's)."""
    rows, left_out = [], {}  # part -> why it was left out
    for s in sections:
        if s.id not in EXPERIMENTS:
            continue
        try:
            v = read_json(lab / s.id / "verdict.json")
        except RunError:
            v = None
        if s.outcome in ("missing", "unreadable") or not isinstance(v, dict):
            left_out[s.id] = s.outcome or "unreadable"
            continue
        try:
            e = v.get("effect") or {}
            short = {**e, "name": str(e.get("name") or "").split(",")[0]} if "estimate" in e else e  # whose: the claim
            est, ci, thr, _ = effect_cells(short)
            rows.append([EXPERIMENTS[s.id].title, v["claim"], _readme_outcome(v), f"{est} {ci}{_over(v['effect'])}",
                         thr])
        except BAD_FIELDS:
            left_out[s.id] = "unreadable"
    out = [Table(["", "claim", "outcome", "effect [95% interval]", "threshold"], rows).md(None)]
    table = _table(lab) if "compare" not in left_out else None  # an unreadable part's numbers are not shown
    try:
        rows = [[t["model"], f"{fmt(t['test_acc_mean'])} [{fmt(t['test_acc_ci95_low'])}, "
                 f"{fmt(t['test_acc_ci95_high'])}]", fmt(t["seeds"]), t["budget"].removeprefix(f"preset {t['model']}: ")]
                for t in table or []]  # the model's preset: the row's model
        n = max((t.get("test_reviews") or 0 for t in table or []), default=0)
        head = f"test accuracy{f' ({int(n):,} reviews)' if n else ''}, mean [95% interval over seeds]"
    except BAD_FIELDS:
        rows = []  # a table rnnlab did not write: left out, as an unreadable verdict is
    if rows:
        out.append(Table(["model", head, "seeds", "budget"], rows).md(None))
    elif "compare" not in left_out:
        left_out["compare's accuracy table"] = "missing or unreadable"
    return "\n\n".join(out), [f"{part} ({why})" for part, why in left_out.items()]


def _readme_outcome(v: dict) -> str:
    """The claim's outcome, and where the effect shown beside it would alone decide otherwise, which parts of the claim
    decided it (`_deciding`)."""
    alone, parts = _alone(v.get("effect")), _deciding(v)
    if alone is None or alone == v["outcome"]:
        return v["outcome"]
    return f"{v['outcome']} (effect shown: {alone}; decided by: {'; '.join(parts) or 'another test of the criterion'})"


def _over(e: dict) -> str:
    """' over 7 repeats of one timing run' where the effect's interval is not over training seeds (the table's
    heading says seeds), else ''."""
    what = str(e.get("interval", "")).partition(" over ")[2].split(" (")[0].removeprefix("the ")
    return f" over {e.get('n')} {what}" if what and not what.startswith("seeds") else ""


def _table(lab: Path) -> list[dict] | None:
    try:
        return read_json(lab / "compare" / "verdict.json")["numbers"]["table"]
    except (RunError, KeyError, TypeError):
        return None


def readme_text(readme: Path) -> str:
    """The README's text, checked before anything is written: UTF-8, with the results markers."""
    require_file(readme, ReportError)
    try:
        with open(readme, encoding="utf-8", newline="") as f:  # its line ends as they are (\r\n kept)
            text = f.read()
    except UnicodeDecodeError:
        raise ReportError(f"{readme}: not UTF-8 text") from None
    except OSError as e:
        raise ReportError(f"{readme}: {fault(e)}") from None
    if README_START not in text or README_END not in text:
        raise ReportError(f"{readme}: has no results markers ({README_START} ... {README_END})")
    if text.count(README_START) > 1 or text.count(README_END) > 1 or text.index(README_END) < text.index(README_START):
        raise ReportError(f"{readme}: needs one {README_START} followed by one {README_END}")
    return text


def figures_folder(lab: Path, markdown: Path) -> Path | None:
    """Where the Markdown's figures are copied: None where it lies inside LAB (it links them in place), else
    `<its name>_figures/` next to it. ReportError where a file is in the way, or where the Markdown is a stream
    (`--markdown /dev/stdout > f`: f is a regular file, but the figures would go to /dev, where no link reaches)."""
    folder = Path(os.path.abspath(markdown)).parent.resolve()
    if folder == Path("/dev") or folder.is_relative_to("/proc"):  # /dev/fd is /proc/self/fd
        raise ReportError(f"cannot write the Markdown to {markdown}: a stream, not a file; give it a file name (its "
                          "figures go in a folder next to it)")
    if markdown.parent.resolve().is_relative_to(lab.resolve()):
        return None
    assets = markdown.parent / f"{markdown.stem}_figures"
    if (assets.exists() or assets.is_symlink()) and not assets.is_dir():
        raise ReportError(f"{assets}: a file where the Markdown's figures folder goes; move it, or write the "
                          "Markdown elsewhere")
    return assets


def writable(*paths: Path) -> None:
    """ReportError unless each path's folder exists (or can be made) and takes a new file: checked before the
    first write, so a refused second file never leaves the first one new and the second one old."""
    for p in paths:
        if p.exists() and not p.is_file() and not p.is_dir():  # a FIFO, a device: a rename would replace it
            raise ReportError(f"cannot write {p}: not a regular file")
        parent = p.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            why = f"{parent} is a file, not a directory" if not parent.is_dir() else "permission denied or read-only"
            raise ReportError(f"cannot write {p}: {why}")


LAB_FOLDERS = ("seed", *EXPERIMENTS, "explain", "jobs")  # what a lab writes: a report's file there is read as its own


def not_the_labs_own(lab: Path, *paths: Path) -> None:
    """ReportError if a path would overwrite what the report reads (lab.json, an existing file of a part, or any file
    in a part's folder or the job store: the next run would read it as the lab's and refuse), or what another command
    reads: a training run's own files, a data set's, another lab's (`io.owner`)."""
    for p in paths:
        try:
            rel = p.resolve().relative_to(lab.resolve())
        except ValueError:
            rel = None  # outside the lab
        in_a_part = rel is not None and len(rel.parts) > 1 and (rel.parts[0] in LAB_FOLDERS or p.exists())
        if rel is not None and (rel.parts == ("lab.json",) or in_a_part):  # a part's new file: its next run refuses
            raise ReportError(f"{p}: a file of the lab itself (the report reads it); write the report elsewhere")
        whose = owner(p)
        if whose:
            raise ReportError(f"{p}: {whose}; write the report elsewhere")


def full_lab(lab: Path) -> None:
    """ReportError if any part of LAB is a --quick lab's, ran on other seeds, or is missing or unreadable: the
    README's results are the full lab's evidence, whole."""
    from .experiments.common import SEEDS

    sections = collect(lab)
    if sections[0].id in WARNINGS:
        raise ReportError(f"{lab}: {sections[0].blocks[0].text}")
    quick = [s.id for s in sections if s.mode == "quick"]
    if quick:
        raise ReportError(f"{lab}: {', '.join(quick)} made by a --quick lab (a smoke test, not evidence); the README's "
                          "results come from a full lab: render this one without --readme")
    full = set(SEEDS["full"])  # every part on exactly those (explain: on one of them), not on some of them
    other = sorted({s.seeds for s in sections if s.seeds is not None
                    and (not set(s.seeds) <= full if s.id == "explain" else set(s.seeds) != full)})
    if other:
        raise ReportError(f"{lab}: ran on seeds {'; '.join(', '.join(map(str, o)) for o in other)}; the README shows "
                          f"the lab's own ({', '.join(map(str, SEEDS['full']))}): render this one without --readme")
    left_out = _readme_content(sections, lab)[1]
    if left_out:
        raise ReportError(f"{lab}: {', '.join(left_out)}; the README's results need every part of a full lab: rerun "
                          "the missing parts (rnnlab lab resumes), or render this one without --readme")


def readme_with_block(lab: Path, readme: Path) -> str:
    """The README's text with the block between its results markers rendered from LAB."""
    text = readme_text(readme)
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    nl = "\r\n" if rest.startswith("\r\n") else "\n"  # the block's own line ends: only the block changes
    block = readme_block(collect(lab), lab).replace("\n", nl)
    return f"{head}{README_START}{nl}{block}{nl}{README_END}{tail}"


def pages(lab: str | os.PathLike, out: str | os.PathLike | None, markdown: str | os.PathLike | None) -> tuple[Path, Path]:
    """The HTML page and the Markdown twin `write_report` writes: by default LAB/report.html and the page with .md."""
    out = Path(out) if out is not None else Path(lab) / "report.html"
    if not out.name:  # '' or '/': no file name to write, nor to put .md on
        raise ReportError(f"{out}: give a file name")
    return out, Path(markdown) if markdown is not None else out.with_suffix(".md")


def write_report(lab: str | os.PathLike = "results/lab", out: str | os.PathLike | None = None,
                 markdown: str | os.PathLike | None = None) -> dict:
    """Render LAB to `out` (default LAB/report.html) and its Markdown twin (default: `out` with .md).

    The Markdown links its figures in place when it lies inside LAB, else copies them into `<its name>_figures/`
    next to it (its own: two reports in one folder never show each other's figures). Both files are written
    atomically.
    """
    lab = Path(lab)
    sections = collect(lab)
    out, markdown = pages(lab, out, markdown)
    for p in (out, markdown):
        if p.is_dir():
            raise ReportError(f"{p}: is a directory; give a file name")
    if out.resolve() == markdown.resolve():
        raise ReportError(f"{out}: the HTML and the Markdown need different files")
    if markdown.resolve() == (lab / "report.html").resolve():  # with --out elsewhere: Markdown over the lab's page
        raise ReportError(f"{markdown}: the lab's HTML report; give --markdown another file")
    if out.resolve() == (lab / "report.md").resolve():  # and HTML over its Markdown twin
        raise ReportError(f"{out}: the lab's Markdown report; give --out another file")
    writable(out, markdown)
    not_the_labs_own(lab, out, markdown)
    assets = figures_folder(lab, markdown)
    created = []  # what this call made, folders too: taken back if a later write fails (nothing half-done is left)
    for folder in (out.parent, markdown.parent):
        for d in reversed(missing_folders(folder)):  # outermost first
            if d not in created:
                created.append(d)
    if assets is not None and not assets.exists():
        created.append(assets)

    def link(png: Path) -> str:
        target = png
        if assets is not None:
            target = assets / png.name
            if assets.is_symlink() or target.is_symlink():  # where the copy would really go (not an earlier copy of
                not_the_labs_own(lab, target)  # this report's, which owner() reads as another lab's file)
            assets.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                created.append(target)
            with atomic_path(target) as tmp:
                shutil.copyfile(png, tmp)
        rel = Path(os.path.relpath(target.resolve(), markdown.parent.resolve())).as_posix()
        # a space or a parenthesis in a name would end the Markdown link; a byte that is not UTF-8 is %-escaped
        return urllib.parse.quote(rel, errors="surrogateescape")

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        markdown.parent.mkdir(parents=True, exist_ok=True)
        files = [(markdown, render_markdown(sections, lab, link)), (out, render_html(sections, lab))]
        created += [path for path, _ in files if not path.exists()]
        write_files(files)  # both or neither: a full disk left a new Markdown beside the old page
    except BaseException:
        for path in reversed(created):
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink(missing_ok=True)
        raise
    return {"html": str(out), "markdown": str(markdown), "summary": summary(sections),
            "outcomes": {s.id: s.outcome for s in sections if s.id != "lab"},
            "missing": [s.id for s in sections if s.outcome == "missing"],
            "problems": [f"{s.id}: unreadable" for s in sections if s.outcome == "unreadable"]
            + [s.blocks[0].text for s in sections if s.id in WARNINGS]}
