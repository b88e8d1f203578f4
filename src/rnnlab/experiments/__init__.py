"""The vanilla RNN's four shortfalls, each measured by one function in its own module.

    rnnlab shortfall all --data ../shared/data/imdb --quick          # or one name, see EXPERIMENTS
    from rnnlab.experiments import EXPERIMENTS
    rows = EXPERIMENTS["serial"](ds, Path("results/shortfalls"), quick=True, device="cpu", log=print)

Each `run(ds, out_dir, quick, device, log) -> rows` writes out_dir/<name>/{results.csv, <name>.png,
<name>.svg, verdict.json}; each module's `verdict(rows)` judges its claim from the rows alone.
  long_reviews.py         time and accuracy against the review length kept (head or tail)
  vanishing_gradients.py  ||dL/dh_t|| against distance from the end; LSTM/GRU contrast; exploding norms
  serial.py               time per batch against length, RNN vs parallel-in-time models, 1 vs 2 threads
  bottleneck.py           accuracy against hidden size by review length; the planted-sentence retention probe
  common.py               subsets, training one config, fits, writing the three artifacts
"""
from __future__ import annotations

from . import bottleneck, long_reviews, serial, vanishing_gradients

EXPERIMENTS = {
    "long-reviews": long_reviews.run,
    "vanishing-gradients": vanishing_gradients.run,
    "serial": serial.run,
    "bottleneck": bottleneck.run,
}
MODULES = {"long-reviews": long_reviews, "vanishing-gradients": vanishing_gradients, "serial": serial,
           "bottleneck": bottleneck}
