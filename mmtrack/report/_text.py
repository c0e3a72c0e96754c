"""Text primitives every report format shares: the format list, number formatting, strict JSON, the LaTeX and
Markdown escapes and the HTML page shell. One copy of each, so a sheet, a summary and a selection are written with
the same conventions (before, `sheet.py` and `selection.py` each had their own, and they had drifted apart)."""

from __future__ import annotations

import html
import json
import math
from typing import Any

from mmtrack.analysis.cells import MISSING
from mmtrack.analysis.run_table import jsonable
from mmtrack.errors import MMTrackError

FORMATS = ("csv", "markdown", "latex", "html", "json")


def check_format(fmt: str, formats: tuple[str, ...] = FORMATS) -> None:
    if fmt not in formats:
        raise MMTrackError(f"unknown format {fmt!r}; choose one of: {', '.join(formats)}")


def num(x: Any, digits: int = 2) -> str:
    """A number with `digits` decimals; the missing mark for None or NaN."""
    return MISSING if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def strict_json(obj: Any) -> str:
    """`obj` as indented strict JSON (NaN and inf as null, numpy values as plain ones, UTF-8 text as is),
    newline-terminated."""
    return json.dumps(jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "–": "--",
    "Δ": r"$\Delta$",
}


LATEX_PREAMBLE = r"% needs \usepackage{booktabs} (\toprule, \midrule, \bottomrule)"  # the one rule style of every table


def latex_escape(text: Any) -> str:
    """Text safe inside a LaTeX table: the ten special characters escaped, an en dash as --, Δ in math mode."""
    return "".join(_LATEX_ESCAPES.get(c, c) for c in str(text))


def md_escape(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|")


HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
.sheet { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
caption { font-weight: bold; padding: 0.3em; }
caption .effect { font-weight: normal; color: #666; font-size: 0.85em; margin-left: 0.5em; }
caption .effect.significant { font-weight: bold; color: #b2182b; }
th, td { padding: 0.25em 0.55em; text-align: right; border: 1px solid #fff; }
th { background: #f1f1f1; }
td.missing { background: #eee; color: #888; text-align: center; }
td a { color: inherit; text-decoration: none; }
td a:hover { text-decoration: underline; }
tr.delta th, th.delta { background: #f6ead8; }
td.delta small { display: block; font-size: 0.72em; opacity: 0.85; white-space: nowrap; }
nav { margin: 0.5em 0 1em; }
section { margin-bottom: 2em; }
footer { margin-top: 1.2em; }
footer p { margin: 0.3em 0; }
.note { color: #666; font-size: 0.9em; }
img.figure { max-width: 100%; height: auto; display: block; margin: 0.8em 0; }
table.design th, table.design td, table.contested td, td:first-child, th:first-child { text-align: left; }
"""


def html_page(title: str, body: str) -> str:
    """A standalone HTML page (one style sheet for every report) with `title` as its title and heading."""
    esc = html.escape
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{esc(title)}</title>\n'
        f"<style>{HTML_STYLE}</style>\n</head>\n<body>\n<h1>{esc(title)}</h1>\n{body}</body>\n</html>\n"
    )
