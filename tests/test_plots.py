"""rnnlab.plots: figures are written whole, and every tick label is plain text.

text.parse_math is off (a review's "$5" is no formula), so a label in matplotlib's TeX would be drawn as its
source ("$\\mathdefault{10^{-6}}$"): log axes get plain labels instead. Checked on a figure of each kind of
log axis here, and on every published figure in test_published.py.
"""
from __future__ import annotations

import re

import numpy as np

from rnnlab.plots import plt, save_figure


def tick_texts_of(ax) -> list[str]:
    return [t.get_text() for t in (*ax.get_xticklabels(which="both"), *ax.get_yticklabels(which="both"))]


def tick_texts(fig) -> list[str]:
    return [t for ax in fig.axes for t in tick_texts_of(ax) if t]


def test_log_axes_are_labelled_in_plain_text(tmp_path):
    fig, (a, b, c) = plt.subplots(1, 3)
    a.semilogy(np.arange(10), np.logspace(-60, 12, 10))  # many decades: powers of ten
    b.loglog([3, 10, 100, 350], [0.5, 0.6, 0.7, 0.8])  # within 0.001-10,000: the numbers
    b.set_xlim(3, 350)
    c.set_xscale("log", base=2)
    c.plot([64, 128, 256, 512, 1024], [1, 2, 3, 4, 5])
    save_figure(fig, tmp_path / "f.png")
    texts = tick_texts(fig)
    assert texts and not [t for t in texts if "$" in t or "mathdefault" in t], texts
    powers = [t for t in a.get_yticklabels() if t.get_text()]
    assert len(powers) >= 3 and all(re.fullmatch("10\u207b?[\u2070\u00b9\u00b2\u00b3\u2074-\u2079]+", t.get_text())
                                    for t in powers), [t.get_text() for t in powers]
    assert {"10", "100"} <= set(tick_texts_of(b)), tick_texts_of(b)
    assert {"64", "256", "1024"} <= set(tick_texts_of(c)), tick_texts_of(c)
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_a_formatter_the_figure_chose_is_kept(tmp_path):
    from matplotlib import ticker

    fig, a = plt.subplots()
    a.semilogx([1, 10, 100], [1, 2, 3])
    a.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"<{v:g}>"))
    save_figure(fig, tmp_path / "f.png")
    assert "<10>" in tick_texts_of(a)


def test_figures_are_drawn_with_matplotlibs_own_dejavu_fonts():
    """Where a package had put a DejaVu Sans of its own on the system (chromium's did), matplotlib drew with that
    copy, and the published SVGs (which name each glyph by its index in the font file) came out with other bytes."""
    import matplotlib
    from matplotlib import font_manager

    import rnnlab.plots  # noqa: F401

    for style in ("normal", "italic"):
        found = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans", style=style))
        assert found.startswith(matplotlib.get_data_path()), found


def test_a_font_looked_up_before_rnnlab_plots_is_imported_is_looked_up_again():
    """A notebook that drew a figure before importing rnnlab keeps no system DejaVu from that earlier lookup
    (matplotlib caches findfont: a mutant without its cache_clear passed)."""
    import subprocess
    import sys

    code = ("import matplotlib; from matplotlib import font_manager as fm\n"
            "p = fm.FontProperties(family='DejaVu Sans'); print(fm.findfont(p))\n"
            "import rnnlab.plots; print(fm.findfont(p)); print(matplotlib.get_data_path())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    before, after, own = r.stdout.splitlines()
    assert after.startswith(own), (before, after)


def test_a_glyph_the_font_lacks_is_drawn_without_a_warning(tmp_path, recwarn):
    """A run named with an emoji printed matplotlib's "Glyph 128104 missing from font(s)" and a source line on
    stderr, twice per figure (the HTML audit of session 61); the figure shows a box, which says enough."""
    fig, ax = plt.subplots()
    ax.set_title("run \U0001F468\u200d\U0001F469\u200d\U0001F467")
    save_figure(fig, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0 and not [w for w in recwarn if "Glyph" in str(w.message)]
