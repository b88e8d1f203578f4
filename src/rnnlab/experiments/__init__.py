"""The lab's experiments: one registry that the CLI, the lab and the report read.

    rnnlab shortfall all --data ../shared/data/imdb --quick      # or one name; `rnnlab compare`
    from rnnlab.experiments import EXPERIMENTS
    EXPERIMENTS["serial"].module()                                # its jobs(), verdict(), figure()

Each module provides `NAME`, `PARTS` (the row parts it reads), `settings(mode)`, `jobs(mode)` ->
[(tag, Job)], `verdict(rows)` (pure: tests feed it hand-made rows) and `figure(rows, verdict)`, and
may provide `measure(fitted)`, run on every model the lab trains (rnnlab.experiments.common).
  long_reviews.py         accuracy against the tokens kept (head or tail), and by review length
  vanishing_gradients.py  ||dL/dh_t|| against distance; LSTM/GRU/Transformer contrast; exploding norms
  serial.py               time per batch against length, RNN vs parallel-in-time models, 1 vs 2 threads
  bottleneck.py           accuracy against hidden size; the planted-passage retention probe; pooling
  compare.py              RNN, LSTM, GRU, bag-of-words and a Transformer at one budget
  common.py, stats.py     the training job, the data budget, artifacts; intervals and verdicts
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Experiment:
    """One experiment of the lab: what it is called, what it asks, where its code lives."""

    name: str
    title: str
    question: str
    module_name: str

    def module(self):
        return importlib.import_module(self.module_name)


EXPERIMENTS = {e.name: e for e in (
    Experiment("long-reviews", "Shortfall 1: long reviews",
               "Does reading more of each review help? Test accuracy against the tokens kept per review (its start "
               "or its end), and by the review's length, with the bag of embeddings as a control.",
               "rnnlab.experiments.long_reviews"),
    Experiment("vanishing-gradients", "Shortfall 2: vanishing gradients",
               "How much training signal reaches the early words? The gradient norm against the distance from the "
               "last token, the LSTM, GRU and Transformer for contrast, and what clipping changes.",
               "rnnlab.experiments.vanishing_gradients"),
    Experiment("serial", "Shortfall 3: serial computation",
               "Can more hardware make it faster? Time per batch against sequence length for the recurrent models "
               "and for models that process all positions at once, on 1 and 2 threads.",
               "rnnlab.experiments.serial"),
    Experiment("bottleneck", "Shortfall 4: the fixed-size memory bottleneck",
               "How much can one fixed-size hidden state hold? Accuracy against hidden size, and whether a planted "
               "passage still sways the prediction far from the end: two strongly positive or negative sentences "
               "set into neutral filler, a growing number of filler tokens before the end; the follow rate is the "
               "share of predictions that side with the passage (0.5: it is ignored).", "rnnlab.experiments.bottleneck"),
    Experiment("compare", "What fixes each shortfall",
               "The notebook's closing claims: does order matter (is a bag of words worse), and do LSTM gates fix "
               "what the vanilla RNN suffers from? Every model gets the lab's budget (below); one that kept its last "
               "epoch (the table's kept epochs) was still improving when its budget ended, so this compares the models "
               "at that budget, not at their best.", "rnnlab.experiments.compare"),
)}
SHORTFALLS = tuple(n for n in EXPERIMENTS if n != "compare")
