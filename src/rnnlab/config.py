"""Frozen run configuration and named presets.

    from rnnlab.config import preset, with_overrides
    cfg = with_overrides(preset("seed"), {"epochs": 2})

A preset is just a named `TrainConfig`. Overrides are checked: an unknown key or a
value of the wrong type raises `ConfigError` (the CLI turns it into a usage error).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

RECURRENT_KINDS = ("rnn", "lstm", "gru")
MODEL_KINDS = (*RECURRENT_KINDS, "bow", "transformer", "cnn")
POOLS = ("last", "mean", "max")
TRUNCATE = ("head", "tail")
BATCHING = ("bucket", "random")
DEVICES = ("auto", "cpu", "cuda", "mps")
INITS = ("default", "orthogonal")
SCHEDULES = ("constant", "cosine")
EMBED_INITS = ("random", "word2vec")
# the fields that take one of a fixed set of values (validation here, --flag choices in the CLI)
CHOICES = {"model": MODEL_KINDS, "pool": POOLS, "truncate": TRUNCATE, "batching": BATCHING, "device": DEVICES,
           "recurrent_init": INITS, "lr_schedule": SCHEDULES, "embed_init": EMBED_INITS}


class ConfigError(ValueError):
    """A configuration value or key is invalid."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (data path and output dir excluded)."""

    # model
    model: str = "rnn"  # one of MODEL_KINDS
    embed_dim: int = 100
    hidden_dim: int = 128
    layers: int = 1
    dropout: float = 0.0  # on embeddings and between layers
    bidirectional: bool = False
    pool: str = "last"  # how the classifier reads the sequence of hidden states
    recurrent_init: str = "default"  # default: PyTorch's uniform; orthogonal: W_hh orthogonal
    # random: PyTorch's N(0, 1); word2vec: skip-gram vectors learnt from the training split's text
    # (no labels, no validation or test text) before training, then fine-tuned (see rnnlab.pretrain)
    embed_init: str = "random"
    freeze_embedding: bool = False  # keep the embedding at its init: only the layers above it train
    # text
    vocab_size: int = 20000  # including <pad>=0 and <unk>=1
    strip_html: bool = False  # replace "<br />" tags by spaces before tokenising
    max_len: int = 0  # 0 = full review
    truncate: str = "head"  # head: keep the first max_len tokens; tail: keep the last
    # optimisation
    batch_size: int = 64
    batching: str = "bucket"  # bucket: length-bucketed; random: the notebook's shuffled batches
    lr: float = 1e-3
    lr_schedule: str = "constant"  # constant, or cosine: decays to 0 over all steps of all epochs
    # cosine only (ignored by constant): the share of all steps run at the full rate before the decay
    lr_hold: float = 0.0
    weight_decay: float = 0.0
    clip: float = 0.0  # max gradient norm; 0 = no clipping
    # weight of the per-step loss ("target replication", Lipton et al. 2016): every hidden state
    # also predicts the label during training, so early tokens get gradient without crossing the
    # whole review; the classifier still reads only the final state. 0 = the final-state loss only.
    step_loss: float = 0.0
    # weight of a soft orthogonality penalty on the recurrent matrix, sum ||W_hh W_hh^T - I||_F^2
    # (Vorontsov et al. 2017): keeps the recurrence near norm-preserving instead of drifting into
    # an expansive, chaotic regime (spectral radius ~4 after 16 epochs of the tuned recipe). 0 = off.
    orthogonal_penalty: float = 0.0
    # decay of an exponential moving average of the weights (Polyak averaging), updated every step;
    # validation, the epoch choice, test and the saved model all use the average. 0 = off.
    weight_average: float = 0.0
    # skip the update of a step whose unclipped gradient norm exceeds this multiple of the previous
    # epoch's median norm (an exploding-gradient spike: even clipped, its direction is the exploding
    # one, and it lands in Adam's moments). 0 = never skip; epoch 1 has no median yet and never skips.
    skip_spikes: float = 0.0
    epochs: int = 5
    # evaluation
    val_fraction: float = 0.1  # stratified, seeded, carved from train; 0 = none
    # validation passes per epoch, evenly spaced over its steps, the last at the epoch's end. An
    # epoch's val_acc is its best pass and the kept weights are that pass's: with more than one,
    # a peak between two epoch ends can be selected. 1 = at the epoch's end only.
    val_checks: int = 1
    test_every_epoch: bool = False  # the notebook prints test accuracy each epoch
    eval_batch_size: int = 256
    # reproducibility
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _validate(c: TrainConfig) -> None:
    for f in fields(c):
        v = getattr(c, f.name)
        want = {"int": int, "float": float, "bool": bool, "str": str}[f.type]
        ok = isinstance(v, want) and not (want is int and isinstance(v, bool))
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            ok = True
        if not ok:
            raise ConfigError(f"{f.name} must be {f.type}, got {v!r}")
        if want is float and ok and not math.isfinite(v):
            raise ConfigError(f"{f.name} must be a finite number, got {v!r}")
    for name, allowed in CHOICES.items():
        if getattr(c, name) not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {getattr(c, name)!r}")
    for name in ("embed_dim", "hidden_dim", "layers", "batch_size", "epochs", "eval_batch_size", "val_checks"):
        if getattr(c, name) <= 0:
            raise ConfigError(f"{name} must be positive, got {getattr(c, name)}")
    if c.vocab_size < 3:
        raise ConfigError(f"vocab_size must be at least 3 (<pad>, <unk> and one word), got {c.vocab_size}")
    if c.max_len < 0:
        raise ConfigError(f"max_len must be >= 0 (0 = full length), got {c.max_len}")
    if not 0.0 <= c.dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {c.dropout}")
    if not 0.0 <= c.val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {c.val_fraction}")
    if not 0.0 <= c.lr_hold < 1.0:
        raise ConfigError(f"lr_hold must be in [0, 1), got {c.lr_hold}")
    if c.lr <= 0:
        raise ConfigError(f"lr must be positive, got {c.lr}")
    if c.clip < 0 or c.weight_decay < 0:
        raise ConfigError("clip and weight_decay must be >= 0")
    if c.skip_spikes != 0 and not c.skip_spikes > 1:
        raise ConfigError(f"skip_spikes must be 0 (off) or a multiple of the median above 1, got {c.skip_spikes}")
    if not 0.0 <= c.weight_average < 1.0:
        raise ConfigError(f"weight_average must be in [0, 1), got {c.weight_average}")
    if c.orthogonal_penalty < 0:
        raise ConfigError(f"orthogonal_penalty must be >= 0, got {c.orthogonal_penalty}")
    if c.orthogonal_penalty > 0 and c.model not in RECURRENT_KINDS:
        raise ConfigError("orthogonal_penalty needs a recurrent model (rnn, lstm, gru)")
    if not 0.0 <= c.step_loss < 1.0:
        raise ConfigError(f"step_loss must be in [0, 1), got {c.step_loss}")
    if c.step_loss > 0 and (c.model not in RECURRENT_KINDS or c.pool != "last"):
        raise ConfigError("step_loss needs a recurrent model (rnn, lstm, gru) reading its last state (pool last)")


FIELD_TYPES = {f.name: f.type for f in fields(TrainConfig)}


def from_dict(d: dict[str, Any]) -> TrainConfig:
    """Build a config from a dict (e.g. config.json); unknown keys raise."""
    unknown = sorted(set(d) - set(FIELD_TYPES))
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
    return TrainConfig(**d)


def with_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    unknown = sorted(set(overrides) - set(FIELD_TYPES))
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
    return dataclasses.replace(cfg, **overrides)


# The notebook, exactly: its tokenizer, 20k vocabulary, 100/128 sizes, batch 64, Adam 1e-3,
# full length, no clipping, 5 epochs, trained on all 25k train reviews, test accuracy each epoch.
SEED = TrainConfig(val_fraction=0.0, test_every_epoch=True, epochs=5)

# The best vanilla tanh RNN reading its final hidden state found by validation accuracy on
# 2 CPU cores (see README "The tuned preset" and benchmarks/tune_rnn.py).
TUNED = TrainConfig(
    strip_html=True, max_len=400, truncate="tail", clip=1.0, recurrent_init="orthogonal",
    dropout=0.5, epochs=32, step_loss=0.8, val_checks=8, lr_schedule="cosine", lr_hold=0.75,
)

PRESETS: dict[str, TrainConfig] = {"seed": SEED, "tuned": TUNED, "default": TrainConfig()}


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]
