"""One self-contained HTML page: tables, figures embedded as base64 PNGs, and the page's CSS."""

from __future__ import annotations

import base64
import html
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { padding: 3px 9px; text-align: right; border-bottom: 1px solid #eee; }
th { background: #f4f6f8; } td:first-child, th:first-child { text-align: left; }
.table-scroll { max-width: 100%; overflow-x: auto; }  /* wide tables (28 classes x 15 columns) scroll */
img { max-width: 100%; height: auto; display: block; margin: 0.8em 0; }
.meta { color: #555; } .note { color: #8a5a00; }
"""


def table_html(
    frame: pd.DataFrame,
    percent: Iterable[str] = (),
    digits: int = 4,
    index: bool = False,
    decimals: dict[str, int] | None = None,
) -> str:
    """A frame as an HTML table that scrolls sideways when wider than the page: floats with
    ``digits`` decimals (per column: ``decimals``), ``percent`` columns as percentages, a missing
    value (None, NaN) as "-"."""

    def fixed(d: int):
        return lambda v: "-" if v is None or v != v else f"{v:.{d}f}"

    formatters = {c: fixed(d) for c, d in (decimals or {}).items() if c in frame.columns}
    formatters.update(
        {c: (lambda v: "-" if v is None or v != v else f"{v:.2%}") for c in percent if c in frame.columns}
    )
    frame = frame.copy()
    for name in frame.select_dtypes(include="object").columns:  # None in a text column: "-" too
        frame[name] = frame[name].where(frame[name].notna(), math.nan)
    table = frame.to_html(
        index=index,
        border=0,
        na_rep="-",
        formatters=formatters,
        float_format=lambda v: f"{v:.{digits}f}",
        escape=True,
    )
    return f'<div class="table-scroll">{table}</div>'


def image_html(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def page_html(title: str, sections: Sequence[tuple[str | None, str]], meta: str = "") -> str:
    """One self-contained page: each section a (heading, HTML) pair."""
    parts = [
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if meta:
        parts.append(f'<p class="meta">{html.escape(meta)}</p>')
    for heading, body in sections:
        if heading:
            parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(body)
    parts.append(f'<p class="meta">written by comp on {time.strftime("%Y-%m-%d %H:%M")}</p></body></html>\n')
    return "\n".join(parts)
