"""Formatting shared by the CLI and the notebook views: human sizes and small HTML tables."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence


def human_size(n: int) -> str:
    """``1536`` → ``"1.5 KiB"``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def ratio(x: float) -> str:
    """``2.345`` → ``"2.35×"``."""
    return f"{x:.2f}×"


def tags_text(tags: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items())) or "–"


_STYLE = "border-collapse:collapse;font-family:var(--jp-code-font-family,monospace);font-size:12px"
_CELL = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:left"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """An HTML table; every cell is escaped."""
    head = "".join(f'<th style="{_CELL}">{html.escape(h)}</th>' for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_CELL}">{html.escape(str(c))}</td>' for c in row) + "</tr>"
        for row in rows
    )
    return f'<table style="{_STYLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def titled(title: str, *parts: str, ok: bool | None = None) -> str:
    """A bold title (green or red when ``ok`` is given) above some HTML parts."""
    color = "" if ok is None else (";color:#1a7f37" if ok else ";color:#cf222e")
    return (
        f'<div><b style="font-family:sans-serif{color}">{html.escape(title)}</b>'
        + "".join(parts)
        + "</div>"
    )
