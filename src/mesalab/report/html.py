"""Pieces shared by the self-contained HTML reports: the stylesheet, inlined figures, the figure-load marker
used by the browser test, and the atomic write."""

from __future__ import annotations

import base64
from pathlib import Path

STYLE = """<style>body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222;line-height:1.45}
table{border-collapse:collapse;font-size:.92em}th,td{border:1px solid #ccc;padding:.3em .6em}th{background:#f3f3f3}
img{max-width:100%}pre{background:#f7f7f7;padding:.8em;font-size:.85em}.note{font-size:.9em;color:#444}
.supported{color:#1a7f37}.contradicted{color:#b00020}.inconclusive{color:#8a6d00}</style>"""

# sets data-figures-loaded="loaded/total" on <body> once every image has decoded (checked by the report test)
FIGURES_LOADED_SCRIPT = """<script>window.addEventListener("load",function(){var i=Array.prototype.slice.call(document.images);
document.body.setAttribute("data-figures-loaded",i.filter(function(x){return x.complete&&x.naturalWidth>0}).length+"/"+i.length)});</script>"""


def inline_figures(figs) -> list[dict]:
    """``[(title, caption, png_path)]`` -> dicts with the PNG inlined as base64 (``data``)."""
    return [{"title": t, "caption": c, "data": base64.b64encode(Path(p).read_bytes()).decode()} for t, c, p in figs]


def write_html_atomic(path: Path, html: str) -> Path:
    tmp = path.with_suffix(".html.partial")
    tmp.write_text(html)
    tmp.replace(path)
    return path
