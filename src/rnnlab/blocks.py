"""The report's blocks: text, a verdict, headings, tables, figures and code, each rendering itself to HTML and
to Markdown, the sections they make up, and the page's stylesheet. rnnlab.report decides what they say.

    Table(["model", "accuracy"], [["rnn", fmt(0.7114)]], "caption").md(link)   # or .html(link)
"""
from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

OUTCOME_CLASS = {"holds": "holds", "does not hold": "fails", "inconclusive": "unknown"}


def esc(s) -> str:
    return html.escape(str(s))


def md_text(s) -> str:
    """`s` as Markdown shows it as written, on one line: a lab's field cannot end a table row, draw a remote image
    (![..](url)), open code (`) or HTML (<)."""
    return (" ".join(str(s).splitlines()).replace("\\", "\\\\").replace("|", "\\|").replace("_", "\\_")
            .replace("<", "&lt;").replace("`", "\\`").replace("![", "!\\["))


@dataclass
class Text:
    text: str
    note: bool = False

    def html(self, link) -> str:
        return f'<p class="{"note" if self.note else ""}">{esc(self.text)}</p>'

    def md(self, link) -> str:
        return f"<sub>{md_text(self.text)}</sub>" if self.note else md_text(self.text)


@dataclass
class Outcome:
    outcome: str
    claim: str

    def html(self, link) -> str:
        return (f'<p class="verdict {OUTCOME_CLASS.get(self.outcome, "unknown")}"><span class="badge">'
                f"{esc(self.outcome)}</span> {esc(self.claim)}</p>")

    def md(self, link) -> str:
        return f"**{self.outcome.upper()}**: {md_text(self.claim)}"


@dataclass
class Heading:
    text: str

    def html(self, link) -> str:
        return f"<h3>{esc(self.text)}</h3>"

    def md(self, link) -> str:
        return f"### {md_text(self.text)}"


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""

    def html(self, link) -> str:
        head = "".join(f"<th>{esc(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in self.rows)
        cap = f"<caption>{esc(self.caption)}</caption>" if self.caption else ""
        return f'<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

    def md(self, link) -> str:
        lines = ["| " + " | ".join(md_text(h) for h in self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(md_text(c) for c in r) + " |" for r in self.rows]
        return (f"{md_text(self.caption)}\n\n" if self.caption else "") + "\n".join(lines)


@dataclass
class Figure:
    png: Path
    alt: str

    def html(self, link) -> str:
        data = base64.b64encode(self.png.read_bytes()).decode()
        return f'<figure><img src="data:image/png;base64,{data}" alt="{esc(self.alt)}"></figure>'

    def md(self, link) -> str:
        return f"![{md_text(self.alt)}]({link(self.png)})"


@dataclass
class Code:
    text: str

    def html(self, link) -> str:
        return f"<pre><code>{esc(self.text)}</code></pre>"

    def md(self, link) -> str:
        fence = "`" * max(3, 1 + max(map(len, re.findall("`+", self.text)), default=0))  # longer than any inside
        return f"{fence}bash\n{self.text}\n{fence}"


@dataclass
class Section:
    id: str
    title: str
    blocks: list = field(default_factory=list)
    outcome: str = ""  # the verdict, or "missing" / "unreadable" / "" (a part without a claim)
    claim: str = ""
    mode: str = ""
    seeds: tuple | None = None  # the training seeds the part ran on, where it records them
    data: str | None = None  # the fingerprint of the data the part ran on, where it records one
    tests: int = 0  # the outcomes its verdict judges: the claim, each sub-question and each control


# --- numbers in words ---------------------------------------------------------------------------------

def fmt(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}" if abs(x) >= 10_000 else str(x)
    if isinstance(x, float):
        if x.is_integer() and 10_000 <= abs(x) < 1e15:  # a count read back from JSON: 10,000 not 1e+04
            return f"{int(x):,}"
        return "n/a" if not math.isfinite(x) else f"{x:.4g}"
    if isinstance(x, (list, tuple)):
        return ", ".join(fmt(v) for v in x)
    return str(x)


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;max-width:960px;margin:2rem auto;
padding:0 1rem;line-height:1.5;color:#1f2328;background:#fff}h2{border-bottom:1px solid #d0d7de;margin-top:2.5rem}
img{max-width:100%;height:auto}figure{margin:1rem 0}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem;display:block;overflow-x:auto;max-width:100%}caption{text-align:left;font-size:.8rem;color:#59636e}
th,td{border:1px solid #d0d7de;padding:.2rem .5rem;text-align:left;vertical-align:top}thead th{background:#f6f8fa}
.badge{display:inline-block;padding:.05rem .6rem;border-radius:1rem;font-weight:700;font-size:.75rem;color:#fff;
text-transform:uppercase}.holds .badge{background:#1a7f37}.fails .badge{background:#cf222e}
.unknown .badge{background:#6e7781}.note{font-size:.85rem;color:#59636e}pre{background:#f6f8fa;padding:.6rem;
overflow-x:auto}.headline{font-size:1.2rem;font-weight:600}p,h1,h2,h3{overflow-wrap:break-word}
"""
