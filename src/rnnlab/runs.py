"""The run directory: what a training run leaves, and loading it back safely.

    runs/seed/
      config.json          the TrainConfig (rebuilds the model)
      meta.json            command line, data source, versions, hardware
      vocab.json           <pad>, <unk>, then the words; tokenizer settings
      metrics.jsonl        one JSON object per epoch
      learning_curve.png
      model.safetensors    the selected epoch's state dict (never a pickle)
      summary.json         the final line `rnnlab train` prints
      checkpoint.json      -> ckpt-<epoch>/ {last,best,optimizer,rng}.safetensors, for --resume

Every file is written atomically; `checkpoint.json` is switched last, so a run killed at any
point resumes from its last completed epoch. Loading reads only JSON and safetensors.
"""
from __future__ import annotations

import os
import platform
import shutil
import sys
from pathlib import Path

import torch

from . import __version__
from .config import ConfigError, TrainConfig, from_dict
from .io import RunError, load_tensors, read_json, read_jsonl, save_tensors, write_json, write_jsonl
from .text import Vocab


def environment() -> dict:
    """Hardware and versions written next to every number."""
    env = {"python": platform.python_version(), "torch": torch.__version__, "rnnlab": __version__,
           "platform": platform.platform(), "processor": _cpu_name(), "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class Run:
    """A run directory being written (training) or read (evaluate, predict, resume)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # --- creating --------------------------------------------------------------------------
    @classmethod
    def create(cls, path, cfg: TrainConfig, vocab: Vocab, data_source: str) -> "Run":
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunError(f"{path}: output path is a file, not a directory")
        if path.is_dir() and any(path.iterdir()):
            raise RunError(f"{path}: output directory is not empty (use another --out, or --resume it)")
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        write_json(path / "vocab.json", vocab.to_json())
        write_json(path / "meta.json", {"command": sys.argv, "data": data_source,
                                        "environment": environment()})
        write_json(path / "config.json", cfg.to_dict())  # last: its presence marks a run
        return run

    def save_epoch(self, model, opt, metrics: list[dict], improved: bool, average=None,
                   best_state: dict | None = None) -> None:
        """Checkpoint one finished epoch. `average` (a torch AveragedModel, or None): its weights are
        the ones evaluated, so they become best/model.safetensors; the live model's resume training.
        `best_state`: when improved, the weights to keep as best instead (a mid-epoch validation pass's)."""
        epoch = metrics[-1]["epoch"]
        ck = self.path / f"ckpt-{epoch}"
        ck.mkdir(exist_ok=True)
        meta = {"epoch": str(epoch)}
        save_tensors(ck / "last.safetensors", model.state_dict(), meta)
        scored = best_state or (model.state_dict() if average is None else average.module.state_dict())
        if average is not None:
            save_tensors(ck / "average.safetensors", average.state_dict(), meta)
        prev = self._checkpoint()
        if improved:
            save_tensors(ck / "best.safetensors", scored, meta)
        elif prev:
            shutil.copyfile(self.path / prev["dir"] / "best.safetensors", ck / "best.safetensors")
        save_tensors(ck / "optimizer.safetensors", _flatten_optimizer(opt))
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
        save_tensors(ck / "rng.safetensors", rng)
        write_jsonl(self.path / "metrics.jsonl", metrics)
        if improved:
            save_tensors(self.path / "model.safetensors", scored, meta)
        best_epoch = epoch if improved else prev["best_epoch"]
        write_json(self.path / "checkpoint.json", {"epoch": epoch, "dir": ck.name, "best_epoch": best_epoch})
        if prev and prev["dir"] != ck.name:
            shutil.rmtree(self.path / prev["dir"], ignore_errors=True)
        from .plots import learning_curve

        learning_curve(metrics, self.path / "learning_curve.png")

    def save_summary(self, summary: dict) -> None:
        write_json(self.path / "summary.json", summary)

    def discard_if_empty(self) -> None:
        """Remove a run directory that never completed an epoch (no half-written runs)."""
        if not (self.path / "checkpoint.json").exists():
            shutil.rmtree(self.path, ignore_errors=True)

    # --- reading ---------------------------------------------------------------------------
    def _checkpoint(self) -> dict | None:
        f = self.path / "checkpoint.json"
        if not f.exists():
            return None
        ck = read_json(f)
        if not (isinstance(ck, dict) and isinstance(ck.get("epoch"), int) and isinstance(ck.get("dir"), str)
                and isinstance(ck.get("best_epoch"), int)):
            raise RunError(f"{f}: malformed checkpoint record")
        if "/" in ck["dir"] or ck["dir"].startswith("."):
            raise RunError(f"{f}: bad checkpoint directory name {ck['dir']!r}")
        return ck

    def config(self) -> TrainConfig:
        self._require_dir()
        d = read_json(self.path / "config.json")
        if not isinstance(d, dict):
            raise RunError(f"{self.path / 'config.json'}: not a JSON object")
        try:
            return from_dict(d)
        except (ConfigError, TypeError) as e:
            raise RunError(f"{self.path / 'config.json'}: {e}") from None

    def vocab(self) -> Vocab:
        self._require_dir()
        try:
            return Vocab.from_json(read_json(self.path / "vocab.json"))
        except ValueError as e:
            if isinstance(e, RunError):
                raise
            raise RunError(f"{self.path / 'vocab.json'}: {e}") from None

    def metrics(self) -> list[dict]:
        return read_jsonl(self.path / "metrics.jsonl")

    def load_weights(self, model, file: str | os.PathLike | None = None) -> None:
        f = Path(file) if file else self.path / "model.safetensors"
        _load_state(model, load_tensors(f), f)

    def restore(self, model, opt) -> tuple[list[dict], int]:
        """Load the last completed epoch for --resume: (metrics so far, next epoch)."""
        ck = self._checkpoint()
        if ck is None:
            return [], 1
        d = self.path / ck["dir"]
        _load_state(model, load_tensors(d / "last.safetensors"), d / "last.safetensors")
        _unflatten_optimizer(opt, load_tensors(d / "optimizer.safetensors"), d / "optimizer.safetensors")
        rng = load_tensors(d / "rng.safetensors")
        if "torch" not in rng:
            raise RunError(f"{d / 'rng.safetensors'}: no torch RNG state")
        torch.set_rng_state(rng["torch"])
        if torch.cuda.is_available():
            states = [rng[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in rng]
            if states:
                torch.cuda.set_rng_state_all(states)
        # model.safetensors must be the best of the epochs kept (a kill may have left a later one)
        shutil.copyfile(d / "best.safetensors", self.path / "model.safetensors")
        metrics = [r for r in self.metrics() if r.get("epoch", 0) <= ck["epoch"]]
        if len(metrics) != ck["epoch"]:
            raise RunError(f"{self.path / 'metrics.jsonl'}: has {len(metrics)} epochs, checkpoint says {ck['epoch']}")
        return metrics, ck["epoch"] + 1

    def restore_average(self, average) -> None:
        """Load the weight average of the last completed epoch (--resume with weight_average)."""
        ck = self._checkpoint()
        f = self.path / ck["dir"] / "average.safetensors"
        if not f.exists():
            raise RunError(f"{f}: missing (the run averages its weights)")
        _load_state(average, load_tensors(f), f)

    def load_model(self, device="cpu"):
        """(config, vocab, model in eval mode) from a saved run; every file checked."""
        from .models import build_model

        cfg, vocab = self.config(), self.vocab()
        if len(vocab) > cfg.vocab_size:
            raise RunError(f"{self.path}: vocab.json has {len(vocab)} words, config allows {cfg.vocab_size}")
        model = build_model(cfg, len(vocab))
        self.load_weights(model)
        return cfg, vocab, model.to(device).eval()

    def _require_dir(self) -> None:
        if not self.path.is_dir():
            raise RunError(f"{self.path}: no such run directory")


def _load_state(model, state: dict, f) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise RunError(f"{f}: weights do not match the config (missing {missing[:3]}, unexpected {extra[:3]})")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise RunError(f"{f}: {k} has shape {tuple(state[k].shape)}, the config/vocabulary needs {tuple(v.shape)}")
        if not torch.isfinite(state[k]).all() and state[k].is_floating_point():
            raise RunError(f"{f}: {k} holds non-finite values")
    model.load_state_dict(state)


def _flatten_optimizer(opt) -> dict:
    out = {}
    for i, st in opt.state_dict()["state"].items():
        for name, t in st.items():
            out[f"{i}.{name}"] = t if torch.is_tensor(t) else torch.tensor(t)
    return out


def _unflatten_optimizer(opt, flat: dict, f) -> None:
    sd = opt.state_dict()
    state: dict = {}
    for key, t in flat.items():
        i, _, name = key.partition(".")
        if not i.isdigit():
            raise RunError(f"{f}: unexpected key {key!r}")
        state.setdefault(int(i), {})[name] = t
    n_params = sum(len(g["params"]) for g in sd["param_groups"])
    if set(state) - set(range(n_params)):
        raise RunError(f"{f}: optimizer state does not match the model")
    sd["state"] = state
    try:
        opt.load_state_dict(sd)
    except (ValueError, RuntimeError, KeyError) as e:
        raise RunError(f"{f}: optimizer state does not match ({e})") from None
