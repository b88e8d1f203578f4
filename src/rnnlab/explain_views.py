"""The views of `rnnlab explain`: a terminal view, one self-contained HTML page and a PNG figure.

    from rnnlab.explain import explain_runs
    from rnnlab.explain_views import render_terminal, write_html, write_png
    exps = explain_runs(["runs/seed", "runs/lstm"], text)
    print(render_terminal(exps, colour=True)); write_html(exps, "review.html"); write_png(exps, "review.png")

Tokens are coloured by the running opinion (and, on the page, by attribution); the numbers are on hover;
the page wraps long reviews (no horizontal scroll) and loads nothing from anywhere.
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import textwrap
from pathlib import Path

import numpy as np

from .blocks import esc
from .explain import Alignment, Explanation, align, attribution_warning, token_count, vanished
from .io import write_text

# --- colours ------------------------------------------------------------------------------------------

NEG_RGB, MID_RGB, POS_RGB = (202, 0, 32), (247, 247, 247), (5, 113, 176)  # ColorBrewer RdBu ends, grey middle


def _rgb(x: float) -> tuple[int, int, int]:
    """x in [-1, 1] -> red (-1), light grey (0), blue (+1)."""
    x = max(-1.0, min(1.0, x))
    end = POS_RGB if x > 0 else NEG_RGB
    a = abs(x)
    return tuple(round(m + (e - m) * a) for m, e in zip(MID_RGB, end))


def opinion_colour(p: float) -> tuple[int, int, int]:
    return _rgb(2 * p - 1)


def attribution_colours(attr: list[float] | None, faded: bool = False) -> list[tuple[int, int, int]]:
    """Each token's attribution relative to the run's largest |attribution| ([] without attribution); faded
    (a third of the colour): attributions that fail completeness."""
    if attr is None:
        return []
    top = max((abs(a) for a in attr), default=0.0) or 1.0
    return [_rgb(a / top / 3 if faded else a / top) for a in attr]


def _hex(rgb) -> str:
    return "#%02x%02x%02x" % rgb


def _dark(rgb) -> bool:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 140


# --- the terminal -----------------------------------------------------------------------------------

def _ansi256(rgb) -> int:
    levels = (0, 95, 135, 175, 215, 255)
    return 16 + sum(min(range(6), key=lambda k: abs(levels[k] - c)) * m for c, m in zip(rgb, (36, 6, 1)))


def _bg(rgb, s: str) -> str:
    fg = 15 if _dark(rgb) else 16
    return f"\x1b[48;5;{_ansi256(rgb)}m\x1b[38;5;{fg}m{s}\x1b[0m"


def _fmt(x: float | None, spec: str) -> str:
    return "" if x is None else format(x, spec)


def header_lines(e: Explanation) -> list[str]:
    """What a reader needs before the tokens: the run, its answer, what the numbers mean, any cut."""
    truth = "" if e.true_label is None else f" (true label: {'positive' if e.true_label else 'negative'})"
    out = [f"{e.run} ({e.model}, pool {e.pool}): {e.label}, P(positive) = {e.p_positive:.4f}{truth}",
           *([f"  {e.trained}"] if e.trained else []),
           f"  running opinion = P(positive) from {e.reading}",
           f"  {e.truncation}" if e.truncation else
           f"  read all {len(e)} tokens of the review" if len(e) != 1 else
           "  read no word: an empty review reads as one <unk> token" if e.words == ["<unk>"] else
           "  read the review's one token"]
    if e.attribution is not None:
        out.append(f"  attribution: {e.attribution_note}. Sum {sum(e.attribution):+.4f}; logit {e.logit:+.4f} "
                   f"- baseline {e.baseline_logit:+.4f} = {e.logit - e.baseline_logit:+.4f} "
                   f"(convergence delta {e.attribution_delta:+.2e})")
        pos, neg = top_words(e)
        out.append("  pushed towards positive: " + (", ".join(f"{w} {a:+.3f}" for w, a in pos if round(a, 3)) or "-"))
        out.append("  pushed towards negative: " + (", ".join(f"{w} {a:+.3f}" for w, a in neg if round(a, 3)) or "-"))
        if attribution_warning(e):
            out.append(f"  warning: {attribution_warning(e)}")
    else:
        out.append(f"  {e.attribution_note}")
    if vanished(e):
        out.append(f"  ||dL/dx_t|| is exactly 0 in float32 at {vanished(e)} of {token_count(len(e))}: no learning "
                   "signal reaches them at all")
    return out


def top_words(e: Explanation, k: int = 5) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """The k tokens with the largest positive and the k with the most negative attribution; a word the run read as
    <unk> marked "(unk)", as the table marks it (the run knows nothing of that word but its place)."""
    if e.attribution is None:
        return [], []
    order = np.argsort(e.attribution)
    name = lambda j: e.words[j] + (" (unk)" if e.ids[j] == 1 and e.words[j] != "<unk>" else "")  # noqa: E731
    pos = [(name(j), e.attribution[j]) for j in order[::-1][:k] if e.attribution[j] > 0]
    neg = [(name(j), e.attribution[j]) for j in order[:k] if e.attribution[j] < 0]
    return pos, neg


def render_terminal(exps: list[Explanation], colour: bool, width: int | None = None) -> str:
    """Colour: the words on their running-opinion colour (one run) or one bar per run under each word.
    Plain: a table, one row per aligned token, with every number of every run."""
    al = align(exps)
    lines = []
    for e in exps:
        lines += header_lines(e)
    if len(exps) > 1:
        lines.append(f"aligned: {al.note}")
    if not colour:
        lines.append("columns: t = the token's place among those read; p_pos = running opinion; attr = attribution; "
                     "|dL/dx| = gradient norm at its embedding; |dh| = ||h_t - h_t-1||")
    lines.append("")
    if not colour:
        return "\n".join(lines + _table(exps, al)) + "\n"
    width = width or shutil.get_terminal_size((100, 24)).columns
    swatches = [(f" {v} ", _bg(_rgb(x), f" {v} "), k > 0) for k, (x, v) in enumerate(
        ((-1, "0 negative"), (-0.5, "0.25"), (0, "0.5"), (0.5, "0.75"), (1, "1 positive")))]
    unk = f"underlined: not in {'the' if len(exps) == 1 else 'that run' + chr(39) + 's'} vocabulary (<unk>)"
    legend = _wrap([*_words("colour: running opinion"), *swatches, *_words("; " + unk, glued=True)], width)
    if len(exps) == 1:
        e, row, used = exps[0], [], 0
        for j, w in enumerate(e.words):
            cell = ("\x1b[4m" if e.ids[j] == 1 else "") + _bg(opinion_colour(e.opinion[j]), w)
            if used + len(w) + 1 > width and row:
                lines.append(" ".join(row))
                row, used = [], 0
            row.append(cell)
            used += len(w) + 1
        lines.append(" ".join(row))
        return "\n".join(lines + ["", legend]) + "\n"
    label_w = max(len(e.run) for e in exps) + 2
    words, bars, used = [], [[] for _ in exps], 0
    blocks = []
    for word, idx in al.rows:
        w = max(len(word), 1)
        if used + w + 1 > width - label_w and words:
            blocks.append((words, bars))
            words, bars, used = [], [[] for _ in exps], 0
        words.append(word.ljust(w))
        for i, e in enumerate(exps):
            bars[i].append(" " * w if idx[i] is None else ("\x1b[4m" if e.ids[idx[i]] == 1 else "")
                           + _bg(opinion_colour(e.opinion[idx[i]]), " " * w))
        used += w + 1
    blocks.append((words, bars))
    for ws, bs in blocks:
        lines.append(" " * label_w + " ".join(ws))
        for e, b in zip(exps, bs):
            lines.append(e.run[:label_w - 2].ljust(label_w) + " ".join(b))
        lines.append("")
    return "\n".join(lines + [legend]) + "\n"


def _words(text: str, glued: bool = False) -> list[tuple[str, str, bool]]:
    """`text`'s words as pieces for `_wrap`: (visible text, shown text, glued to the piece before)."""
    return [(w, w, glued and k == 0) for k, w in enumerate(text.split(" "))]


def _wrap(pieces: list[tuple[str, str, bool]], width: int) -> str:
    """Pieces on lines of at most `width` visible characters where one fits, a space between unglued pieces (a
    narrow terminal: the legend's swatches one under another, not cut mid-colour by the terminal)."""
    lines, used = [""], 0
    for visible, shown, glued in pieces:
        gap = "" if glued or not used else " "
        if used and used + len(gap) + len(visible) > width:
            lines.append("")
            used, gap = 0, ""
        lines[-1] += gap + shown
        used += len(gap) + len(visible)
    return "\n".join(lines)


def _table(exps: list[Explanation], al: Alignment) -> list[str]:
    cols = [("p_pos", "opinion", ".4f"), ("attr", "attribution", "+.4f"), ("|dL/dx|", "grad_norm", ".2e"),
            ("|dh|", "state_change", ".4f")]
    multi = len(exps) > 1
    head = ["t", "token"] + [f"{name}:{e.run}" if multi else name for e in exps for name, _, _ in cols]
    rows = []
    for k, (word, idx) in enumerate(al.rows):
        unk = any(j is not None and e.ids[j] == 1 for e, j in zip(exps, idx))
        cells = [str(k + 1), word + (" (unk)" if unk else "")]
        for i, e in enumerate(exps):
            for _, field, spec in cols:
                arr = getattr(e, field)
                cells.append("" if idx[i] is None or arr is None else _fmt(arr[idx[i]], spec))
        rows.append(cells)
    widths = [max(len(c) for c in col) for col in zip(head, *rows)]

    def fmt(cells):  # the token left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i == 1 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [fmt(head)] + [fmt(r) for r in rows]


# --- HTML: one self-contained page ------------------------------------------------------------------

CSS = """
:root{color-scheme:light}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#222;
  max-width:1100px;margin:0 auto;padding:18px 22px 40px;background:#fff;overflow-wrap:anywhere}
h1{font-size:1.45em;margin:.2em 0 .1em}h2{font-size:1.15em;margin:1.6em 0 .4em;border-bottom:1px solid #ddd}
.sub{color:#555;margin:.1em 0 .8em}.note{color:#555;font-size:.9em}.warn{color:#a04000}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{flex:1 1 300px;border:1px solid #ddd;border-radius:8px;padding:10px 14px;background:#fafafa}
.card h3{margin:0 0 4px;font-size:1.05em}.card p{margin:3px 0;font-size:.92em}
.verdict{font-weight:600}.pos{color:rgb(5,113,176)}.neg{color:rgb(202,0,32)}
.flow{line-height:2.05;font-size:15px}
.t{padding:2px 3px;border-radius:3px;white-space:pre-wrap}
.unk{text-decoration:underline dotted 1.5px}
.c{display:inline-flex;flex-direction:column;vertical-align:top;margin:0 3px 7px 0;max-width:100%}
.c .w{padding:0 1px;line-height:1.3}.c i{display:block;height:6px;margin-top:1px;border-radius:1px}
.c i.x{background:repeating-linear-gradient(45deg,#fff 0 2px,#ccc 2px 4px)}
.legend{display:flex;align-items:center;gap:8px;font-size:.85em;color:#444;margin:4px 0 8px;flex-wrap:wrap}
.scale{display:inline-block;width:180px;height:12px;border-radius:2px;
  background:linear-gradient(90deg,rgb(202,0,32),rgb(247,247,247),rgb(5,113,176))}
svg{width:100%;height:auto;display:block}.chart{overflow-x:auto}.chart svg{min-width:640px}
svg text{font:11px system-ui,sans-serif;fill:#444}
table{border-collapse:collapse;font-size:.9em}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
"""
LINE_COLOURS = ("#222222", "#7b3294", "#1b9e77", "#d95f02", "#666666", "#e7298a")  # then again, dashed


DASH = ' stroke-dasharray="6 3"'


def line_style(i: int) -> tuple[str, bool]:
    """Run i's line: its colour, and whether it is dashed (once the colours have all been used: a 7th run and on)."""
    return LINE_COLOURS[i % len(LINE_COLOURS)], (i // len(LINE_COLOURS)) % 2 == 1


def _num(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _tip(word: str, exps: list[Explanation], idx: list[int | None], pos: int) -> str:
    """The numbers behind one token, for its title attribute."""
    parts = [f"token {pos}: {word}"]
    for e, j in zip(exps, idx):
        who = f"{e.run}: " if len(exps) > 1 else ""
        if j is None:
            parts.append(f"{who}not read")
            continue
        s = (f"{who}P(positive) {e.opinion[j]:.3f}, attribution {_num(e.attribution and e.attribution[j], '+.4f')}"
             f", |dL/dx| {e.grad_norm[j]:.2e}")
        if e.state_change is not None:
            s += f", |h_t - h_t-1| {e.state_change[j]:.3f}"
        if e.ids[j] == 1:
            s += " (<unk>: not in the vocabulary)"
        parts.append(s)
    return "\n".join(parts)


def _flow(exps: list[Explanation], al: Alignment, colours: list[list]) -> str:
    """Tokens in reading order; one run: each word on its colour; several: one bar per run under each word."""
    out = []
    for k, (word, idx) in enumerate(al.rows):
        tip = esc(_tip(word, exps, idx, k + 1))
        unk = any(j is not None and e.ids[j] == 1 for e, j in zip(exps, idx))
        if len(exps) == 1:
            rgb = colours[0][idx[0]]
            style = f"background:{_hex(rgb)}" + (";color:#fff" if _dark(rgb) else "")
            out.append(f'<span class="t w{" unk" if unk else ""}" style="{style}" title="{tip}">{esc(word)}</span>')
        else:
            bars = "".join('<i class="x"></i>' if j is None or not colours[i] else
                           f'<i style="background:{_hex(colours[i][j])}"></i>' for i, j in enumerate(idx))
            out.append(f'<span class="c" title="{tip}"><span class="w{" unk" if unk else ""}">{esc(word)}'
                       f"</span>{bars}</span>")
    return f'<div class="flow">{" ".join(out)}</div>'


def _nice(span: float, target: int) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about `target` ticks over `span`."""
    raw = max(span, 1e-12) / target
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)


def _svg_chart(al: Alignment, series: list[tuple[int, list[float | None]]], title: str,
               log: bool = False,
               y_range: tuple[float, float] | None = None, ref: float | None = None, shade: bool = False,
               tips: list[str] | None = None) -> str:
    """A line per series over the aligned tokens (continued across tokens a run did not read; on a log axis a
    0 is a triangle at the bottom); hovering a token's column shows `tips`."""
    W, H, L, R, T, B = 1000, 190, 52, 12, 22, 26
    n = len(al.rows)
    vals = [v for _, ys in series for v in ys if v is not None and (v > 0 or not log)]
    if not vals:
        return ""
    if y_range:
        lo, hi = y_range
    elif log:
        lo, hi = math.floor(math.log10(min(vals))), math.ceil(math.log10(max(vals)))
        hi = hi if hi > lo else lo + 1
    else:
        lo, hi = min(0.0, min(vals)), max(vals)
        hi = hi if hi > lo else lo + 1
    tf = (lambda v: math.log10(v)) if log else (lambda v: v)
    X = lambda k: L + (W - L - R) * (k + 0.5) / n  # noqa: E731
    Y = lambda v: T + (H - T - B) * (1 - (tf(v) - lo) / (hi - lo))  # noqa: E731
    g = [f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="{esc(title)}"><title>{esc(title)}</title>',
         f'<text x="{L}" y="14" style="font-weight:600">{esc(title)}</text>']
    if shade and ref is not None:
        g.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{Y(ref) - T:.1f}" fill="rgb(5,113,176)" '
                 'fill-opacity=".07"/>')
        g.append(f'<rect x="{L}" y="{Y(ref):.1f}" width="{W - L - R}" height="{H - B - Y(ref):.1f}" '
                 'fill="rgb(202,0,32)" fill-opacity=".07"/>')
    g.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#bbb"/>')
    if log:
        step = max(1, math.ceil((hi - lo) / 6))
        ticks = [(10.0 ** e, f"1e{e}") for e in range(int(hi), int(lo) - 1, -step)]
    else:
        step = _nice(hi - lo, 4)
        lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step  # the axis ends on ticks
        ticks = [(v, f"{v:g}") for v in np.arange(lo, hi + step / 2, step)]
    for v, lab in ticks:
        g.append(f'<text x="{L - 5}" y="{Y(v) + 4:.1f}" text-anchor="end">{lab}</text>')
        g.append(f'<line x1="{L}" x2="{W - R}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#eee"/>')
    if ref is not None:
        g.append(f'<line x1="{L}" x2="{W - R}" y1="{Y(ref):.1f}" y2="{Y(ref):.1f}" stroke="#888" '
                 'stroke-dasharray="4 3"/>')
    step = int(_nice(n, 10)) if n > 10 else 1
    for k in sorted({0, *range(step - 1, n, step)}):  # token 1, then every step-th (a short review: each once)
        g.append(f'<text x="{X(k):.1f}" y="{H - 8}" text-anchor="middle">{k + 1}</text>')
    for i, ys in series:
        colour, dashed = line_style(i)
        segs, seg = [], []
        for k, v in enumerate(ys):
            if v is None:
                continue  # a token this run did not read: the line goes on
            if log and v <= 0:
                segs.append(seg)
                seg = []
                g.append(f'<path d="M{X(k) - 3:.1f},{H - B - 6} h6 l-3,5 z" fill="{colour}" fill-opacity=".6"/>')
            else:
                seg.append(f"{X(k):.1f},{Y(v):.1f}")
        segs.append(seg)
        for sg in segs:
            if len(sg) == 1:
                x, y = sg[0].split(",")
                g.append(f'<circle cx="{x}" cy="{y}" r="2.5" fill="{colour}"/>')
            elif sg:
                g.append(f'<polyline points="{" ".join(sg)}" fill="none" stroke="{colour}" stroke-width="1.6" '
                         f'stroke-linejoin="round"{DASH if dashed else ""}/>')
    if tips:
        w = (W - L - R) / n
        for k, tip in enumerate(tips):
            g.append(f'<rect x="{L + k * w:.2f}" y="{T}" width="{w:.2f}" height="{H - T - B}" fill="#000" '
                     f'fill-opacity="0"><title>{esc(tip)}</title></rect>')
    g.append("</svg>")
    return '<div class="chart">' + "".join(g) + "</div>"  # on a phone: scrolls sideways at a readable size


def _chart_legend(exps: list[Explanation], shown=None) -> str:
    """Each run's line as its chart draws it (run i: colour i, dashed past the palette); `shown`: only those runs."""
    shown = range(len(exps)) if shown is None else shown
    if len(exps) == 1:
        return ""
    return '<div class="legend">' + " ".join(
        f'<span><svg width="22" height="10" style="display:inline;width:22px"><line x1="0" x2="22" y1="5" y2="5" '
        f'stroke="{line_style(i)[0]}" stroke-width="3"{DASH if line_style(i)[1] else ""}/></svg> '
        f'{esc(e.run)}</span>'
        for i, e in enumerate(exps) if i in shown) + "</div>"


def _card(e: Explanation) -> str:
    cls = "pos" if e.label == "positive" else "neg"
    truth = ""
    if e.true_label is not None:
        ok = (e.true_label == 1) == (e.label == "positive")
        truth = f" · true label {'positive' if e.true_label else 'negative'} ({'right' if ok else 'wrong'})"
    read_all = (f"Read all {len(e)} tokens." if len(e) != 1 else
                "Read no word: an empty review reads as one &lt;unk&gt; token." if e.words == ["<unk>"] else
                "Read its one token.")
    lines = [f'<h3>{esc(e.run)} <span class="note">({esc(e.model)}, pool {esc(e.pool)})</span></h3>',
             f'<p class="verdict {cls}">{e.label}: P(positive) = {e.p_positive:.4f}{esc(truth)}</p>',
             *([f'<p class="note">This run: {esc(e.trained)}.</p>'] if e.trained else []),
             f"<p>{esc(e.truncation[0].upper() + e.truncation[1:]) + '.' if e.truncation else read_all}"
             f" Running opinion: {esc(e.reading)}.</p>"]
    if e.attribution is not None:
        pos, neg = top_words(e)
        fmt = lambda ws: ", ".join(f"<b>{esc(w)}</b> {a:+.3f}" for w, a in ws if round(a, 3)) or "none"  # noqa: E731
        # (3 decimals, as the terminal lists them: at 2 the page said "none" where the terminal named five words)
        lines.append(f'<p><span class="pos">Towards positive:</span> {fmt(pos)}. '
                     f'<span class="neg">Towards negative:</span> {fmt(neg)}.</p>')
        warn = attribution_warning(e)
        lines.append(f"<p>The attributions add up to {sum(e.attribution):+.3f}; the logit moved "
                     f"{e.logit - e.baseline_logit:+.3f} from the blank review ({e.baseline_logit:+.3f} to "
                     f"{e.logit:+.3f}; convergence delta {e.attribution_delta:+.1e})."
                     + (' <span class="warn">Completeness fails: the words above are a rough picture, not the '
                        'reasons for the answer (their colours below are faded).</span>' if warn else "") + "</p>")
    else:
        lines.append(f'<p class="warn">{esc(e.attribution_note[0].upper() + e.attribution_note[1:])}.</p>')
    if vanished(e):
        lines.append(f"<p>The gradient is exactly 0 in float32 at {vanished(e)} of {token_count(len(e))}: no learning "
                     "signal reaches them.</p>")
    return '<div class="card">' + "".join(lines) + "</div>"


def render_html(exps: list[Explanation], title: str | None = None) -> str:
    """The page: a card per run, the running opinion as lines and as coloured words, the attribution
    as coloured words, the gradient norm (log) and the state change; every number on hover."""
    al = align(exps)
    multi = len(exps) > 1
    src = next((e.source for e in exps if e.source), "")
    title = title or ("How " + ("these models read" if multi else f"{exps[0].run} reads") + " one review, word by word")
    tips = [_tip(w, exps, idx, k + 1) for k, (w, idx) in enumerate(al.rows)]
    op, gn, dh = ([(i, al.values(exps, field, i)) for i, e in enumerate(exps) if getattr(e, field) is not None]
                  for field in ("opinion", "grad_norm", "state_change"))
    bars = ("" if not multi else '<p class="note">Under each word, one bar per run, top to bottom: '
            + ", ".join(esc(e.run) for e in exps) + "; a hatched bar: that run did not read the word.</p>")
    scale = lambda left, right: (f'<div class="legend">{left} <span class="scale"></span> {right}'  # noqa: E731
                                 '<span>· dotted underline: not in the vocabulary (&lt;unk&gt;) · hover a word '
                                 'for its numbers</span></div>')
    has_attr = [e.attribution is not None for e in exps]
    body = [f"<h1>{esc(title)}</h1>",
            f'<p class="sub">{esc(src) + " · " if src else ""}{token_count(len(al.rows))}'
            + (f" · {esc(al.note)}" if multi else "") + "</p>",
            '<div class="cards">' + "".join(_card(e) for e in exps) + "</div>",
            "<h2>Running opinion</h2>",
            '<p class="note">P(positive) if the review ended after each token'
            + ("; for a run that kept a review's last tokens (its card says from which), if the part it kept ended "
               "there" if any(e.start for e in exps) else "")
            + ". Above the dashed line the model would say positive, below it negative.</p>",
            _chart_legend(exps),
            _svg_chart(al, op, "P(positive) after each token", y_range=(0.0, 1.0), ref=0.5, shade=True, tips=tips),
            scale("negative (0)", "(1) positive"), bars,
            _flow(exps, al, [[opinion_colour(p) for p in e.opinion] for e in exps]),
            "<h2>Which words decided it (attribution)</h2>"]
    if any(has_attr):
        ok = next(e for e in exps if e.attribution is not None)
        body += ['<p class="note">How much each word moved the final logit away from a blank review: '
                 f"{esc(ok.attribution_note)}. Blue pushed towards positive, red towards negative; "
                 "colours are relative to each run's strongest word (faded where completeness fails). By completeness the attributions add up to "
                 "the logit's change; Captum's convergence delta is how far they miss it.</p>"]
        body += [f'<p class="warn">{esc(e.run)}: {esc(attribution_warning(e))}.</p>'
                 for e in exps if attribution_warning(e)]
        body += [scale("towards negative", "towards positive"), bars,
                 _flow(exps, al, [attribution_colours(e.attribution, faded=bool(attribution_warning(e)))
                                  if e.attribution is not None else [] for e in exps])]
    else:
        body.append(f'<p class="warn">{esc(exps[0].attribution_note)}.</p>')
    zeros = "; ".join(f"{esc(e.run)}: {vanished(e)} of {token_count(len(e))}" for e in exps if vanished(e))
    body += ["<h2>Gradient reaching each word (log scale)</h2>",
             '<p class="note">||dL/dx_t||: how strongly the loss of the final answer (against the predicted '
             "label) reacts to each word's embedding. For a vanilla RNN it fades by orders of magnitude towards "
             "the start of a long review: the vanishing gradient, on one review."
             + (f" A triangle at the bottom: exactly 0 in float32, below its smallest normal number, 1.2e-38 ({zeros})."
                if zeros else "") + "</p>",
             _chart_legend(exps), _svg_chart(al, gn, "||dL/dx_t|| at the embedding output", log=True, tips=tips)]
    if dh:
        body += ["<h2>How far each word moves the hidden state</h2>",
                 '<p class="note">||h_t - h_{t-1}|| of the top recurrent layer (h_{-1} = 0).</p>',
                 _chart_legend(exps, [i for i, e in enumerate(exps) if e.state_change]),
                 _svg_chart(al, dh, "||h_t - h_(t-1)||", tips=tips)]
    body.append('<p class="note">Made by rnnlab explain. Self-contained: nothing on this page is loaded from '
                "anywhere.</p>")
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            # an empty icon: a browser that gets the page from a server asks for /favicon.ico and logs its 404
            f'<title>{esc(title)}</title><link rel="icon" href="data:,"><style>{CSS}</style></head><body>\n'
            + "\n".join(body)
            + "\n</body></html>\n")


def write_html(explanations: list[Explanation], path: str | os.PathLike, title: str | None = None) -> Path:
    """Write the explanations of one review (one run or several, aligned) as one self-contained HTML page."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, render_html(explanations, title))
    return path


# --- PNG ----------------------------------------------------------------------------------------------

def write_png(explanations: list[Explanation], path: str | os.PathLike, max_labels: int = 60) -> Path:
    """A figure: the running opinion of every run; each run's attribution as bars; the gradient norm on a
    log axis (and ||h_t - h_{t-1}|| for recurrent runs). Token labels under every k-th token."""
    from .io import one_line, printable
    from .plots import plt, save_figure, tight

    exps = [dataclasses.replace(e, run=one_line(printable(e.run)), source=one_line(printable(e.source)),
                                words=list(map(printable, e.words)))
            for e in explanations]  # matplotlib takes no lone surrogates (bytes of a name that are not UTF-8), and
    # an SVG no control characters
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    al = align(exps)
    n = len(al.rows)
    x = np.arange(n)
    with_attr = [i for i, e in enumerate(exps) if e.attribution is not None]
    recurrent = [i for i, e in enumerate(exps) if e.state_change is not None]
    heights = [2.6] + [1.5] * len(with_attr) + [2.2] + ([1.6] if recurrent else [])
    fig, axes = plt.subplots(len(heights), 1, figsize=(max(9.0, min(18.0, 6 + n / 40)), sum(heights) + 1.2),
                             sharex=True, gridspec_kw={"height_ratios": heights})
    axes = list(np.atleast_1d(axes))

    def line(a, i, field, **kw):  # a run's values at the rows it read; across the others the line goes on
        v, (colour, dashed) = al.values(exps, field, i), line_style(i)
        kw = {**kw, **({"marker": "o", "ms": 3} if n <= 60 else {})}  # a short review's points (one token: no line)
        k = np.array([j for j, y in enumerate(v) if y is not None])
        y = np.array([y for y in v if y is not None], dtype=float)
        if field == "grad_norm":
            a.semilogy(k[y > 0], y[y > 0], color=colour, ls="--" if dashed else "-", **kw)
            return k[y == 0]
        a.plot(k, y, color=colour, ls="--" if dashed else "-", **kw)
        return None

    ax = axes[0]
    ax.axhspan(0.5, 1, color=_hex(POS_RGB), alpha=0.06)
    ax.axhspan(0, 0.5, color=_hex(NEG_RGB), alpha=0.06)
    ax.axhline(0.5, color="#888", lw=0.8, ls="--")
    for i, e in enumerate(exps):
        line(ax, i, "opinion", lw=1.3, label=f"{e.run} ({e.model}): {e.label} {e.p_positive:.3f}")
    ax.set_ylim(0, 1)
    ax.set_ylabel("P(positive)\nafter token")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0))  # beside the panel: off the lines
    ax.set_title("running opinion: P(positive) had the review ended after this token"
                 + (" (a run that kept a review's last tokens: of the part it kept)" if any(e.start for e in exps)
                    else "")
                 + ("\n" + textwrap.fill(al.note, int(fig.get_figwidth() * 14)) if len(exps) > 1 else ""),
                 fontsize=8, loc="left")
    for a, i in zip(axes[1:], with_attr):
        e = exps[i]
        v = np.array([np.nan if y is None else y for y in al.values(exps, "attribution", i)], dtype=float)
        fails = bool(attribution_warning(e))
        a.bar(x, np.nan_to_num(v), width=1.0, color=np.where(v >= 0, _hex(POS_RGB), _hex(NEG_RGB)),
              alpha=0.35 if fails else 1.0)  # faded: bars that do not add up to the answer are no reasons for it
        a.axhline(0, color="#888", lw=0.6)
        a.set_ylabel("attribution", fontsize=8)
        warn = " - completeness fails: rough" if fails else ""
        if fails:  # wrapped to the panel's width
            a.text(0.01, 0.5, textwrap.fill(f"completeness fails: these bars add up to {sum(e.attribution):+.3f} "
                                            f"where the logit moved {e.logit - e.baseline_logit:+.3f}; read them as "
                                            "a rough picture, not as the reasons for the answer",
                                            int(fig.get_figwidth() * 8)),
                   transform=a.transAxes, fontsize=8, va="center", bbox=dict(facecolor="white", edgecolor="#c60",
                                                                             alpha=0.9))
        a.set_title(f"{e.run}: Integrated Gradients of the final logit (sum {sum(e.attribution):+.3f}, "
                    f"logit - baseline {e.logit - e.baseline_logit:+.3f}, delta {e.attribution_delta:+.1e}{warn})",
                    fontsize=8, loc="left")
    a = axes[1 + len(with_attr)]
    zeros = [(i, line(a, i, "grad_norm", lw=1.1, label=e.run)) for i, e in enumerate(exps)]
    lo, hi = a.get_ylim()
    if lo > 0 and math.floor(math.log10(hi)) - math.ceil(math.log10(lo)) < 1:  # under two labelled powers of ten:
        low = math.floor(math.log10(lo))  # whole decades, so that the axis has numbers at both ends
        a.set_ylim(10.0 ** low, 10.0 ** max(math.ceil(math.log10(hi)), low + 1))
    bottom = a.get_ylim()[0]
    for i, k in zeros:
        if len(k):
            a.scatter(k, np.full(len(k), bottom), marker="v", s=10, color=line_style(i)[0], alpha=0.6, clip_on=False,
                      label=f"{exps[i].run}: exactly 0 ({token_count(len(k))})")
    a.set_ylim(bottom=bottom)
    a.set_ylabel("||dL/dx_t||\n(log)")
    a.set_title("gradient of the loss (against the predicted label) at each word's embedding"
                + (" (triangles: exactly 0 in float32)" if any(len(k) for _, k in zeros) else ""),
                fontsize=8, loc="left")
    if len(exps) > 1 or any(len(k) for _, k in zeros):
        a.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    if recurrent:
        a = axes[-1]
        for i in recurrent:
            line(a, i, "state_change", lw=1.1, label=exps[i].run)
        a.set_ylabel("||h_t - h_t-1||")
        a.set_title("how far each word moves the hidden state", fontsize=8, loc="left")
    k = max(1, math.ceil(n / max_labels))
    axes[-1].set_xticks(x[::k])
    axes[-1].set_xticklabels([f"{al.rows[j][0][:14]} {j + 1}" for j in x[::k]], rotation=90, fontsize=7)
    pad = max(0.0, (8 - n) / 2)  # a short review's bars keep a bar's width, centred
    axes[-1].set_xlim(-0.5 - pad, n - 0.5 + pad)
    axes[-1].set_xlabel(f"token (one in {k} labelled)" if k > 1 else "token")
    for a in axes:
        a.grid(alpha=0.25)
    src = next((e.source for e in exps if e.source), "")
    fig.suptitle(f"rnnlab explain: {src or 'one review'}, {token_count(n)}", fontsize=10)
    tight(fig)
    save_figure(fig, path, dpi=110)
    return path
