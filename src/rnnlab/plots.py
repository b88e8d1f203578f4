"""Figures drawn from saved numbers (matplotlib, Agg backend, written atomically)."""
from __future__ import annotations

import io
import logging
import math
import os
import warnings
from pathlib import Path


def _writable_matplotlib_config() -> None:
    """Where matplotlib's config or cache folder cannot be made (a read-only HOME, MPLCONFIGDIR or XDG_CACHE_HOME,
    or a HOME that does not exist, which rnnlab does not make), give it a temporary one, as it would itself, but
    without its two warning lines: rnnlab already warns once about its own unwritable cache."""
    folders = [os.environ.get("MPLCONFIGDIR")]  # where it is set, matplotlib's config and cache folder both
    if not folders[0]:
        home = os.path.expanduser("~")
        folders = [os.path.join(os.environ.get(xdg) or os.path.join(home, default), "matplotlib")
                   for xdg, default in (("XDG_CONFIG_HOME", ".config"), ("XDG_CACHE_HOME", ".cache"))]
        no_home = os.environ.get("HOME") == "" or not os.path.isdir(home)  # an empty HOME reads as "/": not a home
        if no_home and not all(os.environ.get(x) for x in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME")):
            folders = [None]
    try:
        for folder in folders:
            if folder is None:
                break
            os.makedirs(folder, exist_ok=True)
            if not os.access(folder, os.W_OK | os.X_OK):
                break
        else:
            return
    except OSError:
        pass
    import atexit
    import shutil
    import tempfile

    os.environ["MPLCONFIGDIR"] = tmp = tempfile.mkdtemp(prefix="matplotlib-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)


_writable_matplotlib_config()
# rnnlab draws with Agg whatever MPLBACKEND names: set aside while matplotlib imports (a name it does not know stopped
# its import with a traceback), then put back for what runs after (a notebook's own plots)
_backend = os.environ.pop("MPLBACKEND", None)
try:
    import matplotlib
finally:
    if _backend is not None:
        os.environ["MPLBACKEND"] = _backend

matplotlib.use("Agg")
matplotlib.rcParams["text.parse_math"] = False  # names and words are drawn as written: "$...$" is no formula
matplotlib.rcParams["svg.hashsalt"] = "rnnlab"  # an SVG's ids from its content: the same figure, the same bytes
logging.getLogger("matplotlib.backends.backend_ps").setLevel(logging.ERROR)  # not "no transparency in .eps" per figure
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager, ticker  # noqa: E402


def _bundled_fonts_only() -> None:
    """Text drawn with matplotlib's own DejaVu fonts, not a system copy of that family (one that a package such as
    chromium's brings): an SVG names each glyph by its index in the font file, so the same figure drawn where such
    a copy exists had other bytes. (Its font list is cached per user for every environment: filled here anew.)"""
    import glob

    from matplotlib import ft2font

    files = sorted(glob.glob(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVu*.ttf")))
    own = [font_manager.ttfFontProperty(ft2font.FT2Font(f)) for f in files]
    if own:
        names = {e.name for e in own}
        font_manager.fontManager.ttflist = own + [e for e in font_manager.fontManager.ttflist if e.name not in names]
        font_manager.fontManager._findfont_cached.cache_clear()  # a lookup before this one would stick


_bundled_fonts_only()

from .io import write_bytes  # noqa: E402

# one colour per model in every figure
MODEL_COLORS = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green", "bow": "tab:gray", "tfidf": "black",
                "transformer": "tab:purple", "cnn": "tab:olive"}


_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


class PlainLogFormatter(ticker.LogFormatter):
    """A log axis's tick labels as plain text: the numbers ("0.01", "20", "1000"; on a base-2 axis "64") where
    the axis stays within 0.001-10,000, else powers of ten as "10⁻⁶" (and others as "2e-06"). matplotlib's
    default for log axes writes TeX ("$\\mathdefault{10^{-6}}$"), which text.parse_math off (above) would draw
    as it is written."""

    def _num_to_string(self, x, vmin, vmax):
        if 1e-3 <= vmin <= vmax <= 1e4:
            return f"{x:g}"
        e = math.log10(x)
        if self._base == 10 and abs(e - round(e)) < 1e-9:
            return "10" + str(round(e)).translate(_SUPERSCRIPT)
        return super()._num_to_string(x, vmin, vmax)


def plain_log_ticks(fig) -> None:
    """Every log axis of the figure still on matplotlib's TeX labels gets PlainLogFormatter's."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                base = axis.get_transform().base
                for fmt, setter in ((axis.get_major_formatter(), axis.set_major_formatter),
                                    (axis.get_minor_formatter(), axis.set_minor_formatter)):
                    if isinstance(fmt, ticker.LogFormatterMathtext):
                        setter(PlainLogFormatter(base, labelOnlyBase=fmt.labelOnlyBase))


def accuracy_floor(lows) -> float:
    """The bottom of an accuracy axis that starts at chance (0.5): lower, to the 0.05 below, where a mean minus its
    spread (`lows`) falls under chance, so a model below chance shows a bar or point there instead of none."""
    low = min((v for v in lows if math.isfinite(v)), default=0.5)
    return 0.5 if low >= 0.5 else max(0.0, math.floor((low - 0.01) * 20) / 20)


def below_chance(*axes) -> bool:
    """Whether an accuracy axis reaches below chance (`accuracy_floor`): its figure's title says so."""
    return any(ax.get_ylim()[0] < 0.5 for ax in axes)


def tight(fig) -> None:
    """tight_layout, for the labels the figure is saved with: laid out around matplotlib's TeX log labels (longer
    than the plain ones save_figure puts in), a figure kept wide gaps between its panels."""
    plain_log_ticks(fig)
    fig.tight_layout()


def save_figure(fig, path: str | os.PathLike, **kw) -> None:
    """Rendered in memory (`figure_bytes`), then written atomically: a full disk is then one OSError (matplotlib's
    PDF writer, failing while it writes to a file, hides it behind an AttributeError of its own)."""
    path = Path(path)
    write_bytes(path, figure_bytes(fig, path.suffix.lstrip("."), **kw))


def figure_bytes(fig, fmt: str, **kw) -> bytes:
    """The figure as a file of format `fmt` (log axes labelled in plain text: `plain_log_ticks`); it is closed."""
    plain_log_ticks(fig)
    buf = io.BytesIO()
    try:  # no date in an SVG (a PNG has none): the same rows redraw the same bytes (benchmarks/redraw.py)
        with warnings.catch_warnings():  # a name's emoji is drawn as a box, not also told as a source line
            warnings.filterwarnings("ignore", r"Glyph \d+ .*missing from font", UserWarning)
            fig.savefig(buf, format=fmt, bbox_inches="tight", **({"metadata": {"Date": None}} if fmt == "svg" else {}),
                        **kw)
    finally:
        plt.close(fig)
    return buf.getvalue()


def learning_curve(metrics: list[dict], path: str | os.PathLike) -> None:
    """Train loss (left) and validation/test accuracy (right) per epoch."""
    ep = [r["epoch"] for r in metrics]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(ep, [r["train_loss"] for r in metrics], "o-", label="train loss")
    if any("val_loss" in r for r in metrics):
        a.plot(ep, [r.get("val_loss") for r in metrics], "s--", label="val loss")
    a.set_xlabel("epoch"); a.set_ylabel("BCE loss"); a.legend(); a.grid(alpha=0.3)
    for key, style in (("val_acc", "s-"), ("test_acc", "o-")):
        if any(key in r for r in metrics):
            b.plot(ep, [r.get(key) for r in metrics], style, label=key.replace("_", " "))
    b.set_xlabel("epoch"); b.set_ylabel("accuracy"); b.grid(alpha=0.3)
    if b.lines:
        b.legend()
    fig.suptitle("learning curve")
    save_figure(fig, path, dpi=110)


def exercise_figure(rows: list[dict]):
    """The notebook's exercise: test accuracy and training loss per epoch, one line per seed."""
    seeds = sorted({r["seed"] for r in rows})
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for s in seeds:
        for ax, metric in ((a, "test_acc"), (b, "train_loss")):
            pts = sorted((r["epoch"], r["value"]) for r in rows if r["seed"] == s and r["metric"] == metric)
            ax.plot(*zip(*pts), "o-", label=f"seed {s}")
    a.set_ylim(0.45, 1.0)
    a.axhline(0.5, color="k", lw=0.8, ls=":")
    a.set_xlabel("epoch"); a.set_ylabel("test accuracy"); a.grid(alpha=0.3); a.legend(fontsize=8)
    b.set_xlabel("epoch"); b.set_ylabel("training loss (BCE)"); b.grid(alpha=0.3)
    fig.suptitle(f"The notebook's exercise (preset notebook: shuffled batches, whole reviews), {len(seeds)} "
                 + ("seed" if len(seeds) == 1 else "seeds"))
    tight(fig)
    return fig
