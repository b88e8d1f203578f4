"""The `rnnlab` command line.

    rnnlab train --preset seed --data ../shared/data/imdb
    rnnlab evaluate runs/seed-... --json
    rnnlab predict runs/seed-... "What a film!"

Training flags are built from the `TrainConfig` fields, so every field is a flag and flags
override the preset. Bad input exits with code 2 and one line; never a traceback.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

import click

from .config import CHOICES, PRESETS, TrainConfig, ConfigError, preset as get_preset, with_overrides
from .data import DataError
from .io import RunError

HELP = {
    "model": "Model kind.", "embed_dim": "Embedding size.", "hidden_dim": "Hidden size.",
    "layers": "Recurrent/encoder layers.", "recurrent_init": "Initialisation of the recurrent weights.",
    "embed_init": "Embedding init: random, or word2vec learnt from the training split's text.",
    "freeze_embedding": "Keep the embedding at its init (train only the layers above it).", "dropout": "Dropout on embeddings and between layers.",
    "bidirectional": "Read the review both ways.", "pool": "How the classifier reads the hidden states.",
    "vocab_size": "Vocabulary size incl. <pad> and <unk>.", "strip_html": "Remove <br /> tags first.",
    "max_len": "Keep at most N tokens per review (0 = all).", "truncate": "Which part --max-len keeps.",
    "batch_size": "Training batch size.", "batching": "bucket: by length (fast); random: the notebook's.",
    "lr": "Adam learning rate.", "lr_schedule": "constant, or cosine decay to 0 over the run.",
    "lr_hold": "Cosine only: share of the run at the full rate before the decay starts.", "weight_decay": "Adam weight decay.", "clip": "Max gradient norm (0 = off).",
    "step_loss": "Weight of a training-only loss on every hidden state (target replication; 0 = off).",
    "weight_average": "Decay of a per-step moving average of the weights, used for evaluation (0 = off).",
    "orthogonal_penalty": "Weight of a penalty sum ||W_hh W_hh^T - I||^2 keeping the recurrence orthogonal (0 = off).",
    "val_checks": "Validation passes per epoch; the best pass's weights are kept (1 = at the epoch's end).",
    "skip_spikes": "Skip steps whose gradient norm exceeds this multiple of the last epoch's median (0 = off).",
    "epochs": "Training epochs.", "val_fraction": "Validation share carved from train (0 = none).",
    "test_every_epoch": "Measure test accuracy every epoch (the notebook does).",
    "eval_batch_size": "Evaluation batch size.", "seed": "Random seed.", "device": "Where to train.",
}


class InputError(click.ClickException):
    """Bad input: one line on stderr, exit code 2."""

    exit_code = 2


def _fail(e: Exception) -> None:
    raise InputError(str(e)) from None


def _log(msg: str) -> None:
    click.echo(msg, err=True)


def config_options(f):
    """Add one --flag per TrainConfig field (default None: keep the preset's value)."""
    for field in reversed(dataclasses.fields(TrainConfig)):
        name = "--" + field.name.replace("_", "-")
        if field.type == "bool":
            opt = click.option(f"{name}/--no-{field.name.replace('_', '-')}", field.name, default=None,
                               help=HELP.get(field.name))
        elif field.name in CHOICES:
            opt = click.option(name, field.name, type=click.Choice(CHOICES[field.name]), default=None,
                               help=HELP.get(field.name))
        else:
            typ = {"int": int, "float": float, "str": str}[field.type]
            opt = click.option(name, field.name, type=typ, default=None, help=HELP.get(field.name))
        f = opt(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rnnlab")
def main():
    """rnnlab: a vanilla RNN on IMDB, and its four shortfalls measured."""


@main.command()
@click.option("--preset", "preset_name", type=click.Choice(sorted(PRESETS)), default="seed", show_default=True,
              help="Named configuration; flags override its values.")
@click.option("--data", "data_path", type=str, default=None,
              help="Parquet dir, aclImdb dir or tarball. Default: $RNNLAB_DATA, else the HF hub.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Run directory (default: runs/<preset>-<time>).")
@click.option("--resume", "resume", type=click.Path(path_type=Path), default=None,
              help="Continue an interrupted run directory to its configured epochs.")
@config_options
def train(preset_name, data_path, out, resume, **flags):
    """Train a model; prints one JSON summary line last."""
    from .data import load_imdb
    from .runs import Run
    from .train import Divergence, Interrupted, prepare, resolve_device, train as train_run

    overrides = {k: v for k, v in flags.items() if v is not None}
    try:
        if resume is not None:
            run = Run(resume)
            cfg = run.config()
            if overrides:
                cfg = with_overrides(cfg, {k: v for k, v in overrides.items() if k in ("epochs", "device")})
        else:
            cfg = with_overrides(get_preset(preset_name), overrides)
            out = out or Path("runs") / f"{preset_name}-{time.strftime('%Y%m%d-%H%M%S')}"
            if out.exists() and (not out.is_dir() or any(out.iterdir())):
                raise RunError(f"{out}: exists and is {'a file' if not out.is_dir() else 'not empty'}; "
                               "choose another --out (or --resume it)")
        resolve_device(cfg.device)  # fail before anything is written
        _log(f"loading data ({data_path or 'RNNLAB_DATA or hub'})")
        data = prepare(cfg, load_imdb(data_path), _log)
        if resume is not None:
            run.vocab()  # a resumed run must agree with its saved vocabulary
            if run.vocab().itos != data.vocab.itos:
                raise RunError(f"{resume}: vocabulary differs from this data; resume with the same --data")
        else:
            run = Run.create(out, cfg, data.vocab, data.source)
    except (DataError, RunError, ConfigError, ValueError) as e:
        _fail(e)
    _log(f"train {len(data.train)} / val {len(data.val) if data.val is not None else 0} / test {len(data.test)} "
         f"reviews; {cfg.model}, {cfg.epochs} epochs -> {run.path}")
    try:
        summary = train_run(cfg, data, run, log=_log)
    except Interrupted as e:
        if resume is None:
            run.discard_if_empty()
        if run.path.exists():
            _log(f"interrupted ({e}); completed epochs are saved. Continue with: rnnlab train --resume {run.path}")
        else:
            _log(f"interrupted ({e}) before the first epoch completed; nothing was saved")
        sys.exit(130)
    except Divergence as e:
        if resume is None:
            run.discard_if_empty()
        kept = (f"the last good epoch's weights are kept in {run.path}" if run.path.exists()
                else "no epoch had completed, so nothing was kept")
        _log(f"stopped: {e}; {kept}. Try gradient clipping (--clip 1.0) or a lower --lr")
        sys.exit(1)
    except (RunError, ValueError) as e:
        if resume is None:
            run.discard_if_empty()
        _fail(e)
    click.echo(json.dumps(summary))


def _open_run(run_dir: Path, device: str):
    from .runs import Run
    from .train import resolve_device

    try:
        dev = resolve_device(device)
        cfg, vocab, model = Run(run_dir).load_model(dev)
    except (RunError, ConfigError, ValueError) as e:
        _fail(e)
    return cfg, vocab, model, dev


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", "data_path", default=None, help="CSV, parquet dir, aclImdb dir or tarball (test split).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--device", type=click.Choice(CHOICES["device"]), default="auto", show_default=True)
def evaluate(run_dir, data_path, as_json, device):
    """Accuracy, confusion matrix and accuracy by review length of a saved run."""
    from .data import load_eval_split
    from .evaluate import evaluate_run

    cfg, vocab, model, dev = _open_run(run_dir, device)
    try:
        split = load_eval_split(data_path)
    except DataError as e:
        _fail(e)
    rep = evaluate_run(cfg, vocab, model, split, dev)
    rep["data"] = split.source
    if as_json:
        click.echo(json.dumps(rep))
        return
    (tn, fp), (fn, tp) = rep["confusion"]["matrix"]
    click.echo(f"{split.source}: {rep['n']} reviews, accuracy {rep['acc']:.4f}")
    click.echo(f"confusion (rows true, cols predicted):\n           neg     pos\n  neg  {tn:7d} {fp:7d}\n  pos  {fn:7d} {tp:7d}")
    click.echo("accuracy by review length (tokens):")
    for b in rep["by_length"]:
        click.echo(f"  {b['bucket']:>8}  n={b['n']:6d}  acc={b['acc']:.4f}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per review.")
@click.option("--device", type=click.Choice(CHOICES["device"]), default="auto", show_default=True)
def predict(run_dir, texts, as_json, device):
    """Classify TEXTS (or one review per line of stdin): label and P(positive).

    Stdin is read as UTF-8; undecodable bytes become U+FFFD. An empty review, or one of only
    unknown words, is read as a single <unk> token and still gets a prediction.
    """
    from .evaluate import predict_texts

    cfg, vocab, model, dev = _open_run(run_dir, device)
    if not texts:
        raw = sys.stdin.buffer.read().decode("utf-8", errors="replace")
        texts = [line.removesuffix("\r") for line in raw.split("\n")]  # only \n ends a review
        if texts and texts[-1] == "":
            texts.pop()
        if not texts:
            raise InputError("no review given: pass TEXT arguments or lines on stdin")
    probs = predict_texts(cfg, vocab, model, list(texts), dev)
    out = []
    for p in probs:
        label = "positive" if p > 0.5 else "negative"
        out.append(json.dumps({"label": label, "p_positive": round(float(p), 4)}) if as_json
                   else f"{label}\t{p:.4f}")
    click.echo("\n".join(out))


def _load_for(out: Path, data_path: str | None, device: str):
    """Check the device and the output path, then load the data; bad input -> one line, exit 2."""
    from .data import load_imdb
    from .train import resolve_device

    try:
        resolve_device(device)
        if out.exists() and not out.is_dir():
            raise RunError(f"{out}: output path is a file, not a directory")
        _log(f"loading data ({data_path or 'RNNLAB_DATA or hub'})")
        return load_imdb(data_path)
    except (DataError, RunError, ValueError) as e:
        _fail(e)


@contextlib.contextmanager
def _stops_cleanly(kept: str, name: str = ""):
    """Ctrl-C/SIGTERM -> exit 130 saying what is `kept`; divergence -> exit 1; bad input -> exit 2."""
    from .train import Divergence, Interrupted

    try:
        yield
    except (Interrupted, KeyboardInterrupt) as e:
        _log(f"interrupted ({e or 'Ctrl-C'}){f' during {name}' if name else ''}; {kept}")
        sys.exit(130)
    except Divergence as e:
        _log(f"stopped: {f'{name}: ' if name else ''}{e}")
        sys.exit(1)
    except (DataError, RunError, ConfigError) as e:
        _fail(f"{name}: {e}" if name else e)


SHORTFALLS = ("long-reviews", "vanishing-gradients", "serial", "bottleneck")


@main.command()
@click.argument("name", type=click.Choice(SHORTFALLS + ("all",)))
@click.option("--data", "data_path", type=str, default=None,
              help="Parquet dir, aclImdb dir or tarball. Default: $RNNLAB_DATA, else the HF hub.")
@click.option("--quick", is_flag=True, help="A data subset and a small sweep: all four in a few minutes.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("results/shortfalls"), show_default=True,
              help="Each experiment writes OUT/<name>/{results.csv,<name>.png,<name>.svg,verdict.json}.")
@click.option("--device", type=click.Choice(CHOICES["device"]), default="auto", show_default=True)
def shortfall(name, data_path, quick, out, device):
    """Measure a shortfall of the vanilla RNN (or all four); one JSON verdict line per experiment."""
    from .experiments import EXPERIMENTS
    from .io import read_json

    ds = _load_for(out, data_path, device)
    for n in SHORTFALLS if name == "all" else (name,):
        with _stops_cleanly(f"finished experiments are kept under {out}", n):
            EXPERIMENTS[n](ds, out, quick=quick, device=device, log=_log)
        v = read_json(out / n / "verdict.json")
        click.echo(json.dumps({"experiment": n, "holds": v["holds"], "claim": v["claim"], "mode": v["mode"],
                               "seconds": v["seconds"], "dir": str(out / n),
                               "questions": [{"claim": q["claim"], "holds": q["holds"]} for q in v.get("questions", [])]}))


@main.command()
@click.option("--data", "data_path", type=str, default=None,
              help="Parquet dir, aclImdb dir or tarball. Default: $RNNLAB_DATA, else the HF hub.")
@click.option("--quick", is_flag=True, help="A data subset, 1 seed, 2 epochs: a few minutes.")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Seeds per model [default: 3; quick: 1].")
@click.option("--out", type=click.Path(path_type=Path), default=Path("results/compare"), show_default=True,
              help="Writes OUT/{table.csv,table.md,results.csv,compare.png,compare.svg,verdict.json}.")
@click.option("--device", type=click.Choice(CHOICES["device"]), default="auto", show_default=True)
def compare(data_path, quick, seeds, out, device):
    """RNN, LSTM, GRU, bag-of-words and a Transformer side by side; resumes an interrupted run."""
    from .compare import run as run_compare

    ds = _load_for(out, data_path, device)
    with _stops_cleanly(f"finished jobs are kept under {out / 'jobs'}: rerun to resume"):
        command = shlex.join(["rnnlab", "compare", *(["--data", data_path] if data_path else []),
                              *(["--quick"] if quick else []), *(["--seeds", str(seeds)] if seeds else []),
                              "--out", str(out), *(["--device", device] if device != "auto" else [])])
        run_compare(ds, out, quick=quick, seeds=seeds, device=device, log=_log, command=command)
    _echo_compare(out)


@main.command()
@click.option("--data", "data_path", type=str, default=None,
              help="Parquet dir, aclImdb dir or tarball. Default: $RNNLAB_DATA, else the HF hub.")
@click.option("--quick", is_flag=True, help="Every step on a subset with short schedules (~10 min on 2 cores).")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Seeds per model in the comparison.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("results/lab"), show_default=True,
              help="Writes OUT/{seed,shortfalls,compare}/ and OUT/report.html, OUT/report.md.")
@click.option("--markdown", type=click.Path(path_type=Path), default=None,
              help="Write the report's Markdown twin here (figures copied next to it) instead of OUT/report.md.")
@click.option("--device", type=click.Choice(CHOICES["device"]), default="auto", show_default=True)
def lab(data_path, quick, seeds, out, markdown, device):
    """The whole lab: seed exercise, four shortfalls, comparison, report. Rerun to resume."""
    from .lab import run_lab

    ds = _load_for(out, data_path, device)
    with _stops_cleanly(f"finished steps are kept under {out}: rerun the same command to resume"):
        if markdown is not None and markdown.is_dir():
            raise RunError(f"{markdown}: is a directory; give a file name for --markdown")
        result = run_lab(ds, out, quick=quick, device=device, log=_log, data_arg=data_path, seeds=seeds,
                         markdown=markdown)
    click.echo(json.dumps(result))


def _echo_compare(out: Path) -> None:
    from .io import read_json

    v = read_json(out / "verdict.json")
    click.echo(json.dumps({"experiment": "compare", "holds": v["holds"], "claim": v["claim"], "mode": v["mode"],
                           "seconds": v["seconds"], "dir": str(out),
                           "questions": [{"claim": q["claim"], "holds": q["holds"]} for q in v["questions"]]}))


# --- rnnlab report (src/rnnlab/report.py) ---------------------------------------------------------

@main.command("report")
@click.argument("runs_dir", type=click.Path(path_type=Path), default=Path("results/lab"), required=False)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="The HTML file (one file, figures embedded). Default: RUNS_DIR/report.html.")
@click.option("--markdown", type=click.Path(path_type=Path), default=None,
              help="The Markdown twin. Default: next to --out, with .md.")
@click.option("--assets", type=click.Path(path_type=Path), default=None,
              help="Copy the Markdown's figures here. Default: link them in place when the Markdown is "
                   "inside RUNS_DIR, else MARKDOWN_DIR/figures.")
def report_command(runs_dir, out, markdown, assets):
    """Render RUNS_DIR (default results/lab) to one self-contained HTML page and a Markdown twin.

    Reads RUNS_DIR/seed, RUNS_DIR/shortfalls/<name> and RUNS_DIR/compare as `rnnlab lab` writes them;
    a missing part gets a section naming the command that makes it. Prints one JSON line last.
    """
    from .report import write_report

    try:
        written = write_report(runs_dir, out, markdown, assets)
    except (RunError, OSError) as e:
        _fail(e)
    for problem in written["problems"]:
        _log(f"warning: unreadable: {problem}")
    _log(f"report: {written['html']} and {written['markdown']} ({written['hold']} of {written['claims']} claims hold)")
    click.echo(json.dumps(written))


if __name__ == "__main__":
    main()
