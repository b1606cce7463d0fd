"""The nightly segment report (DESIGN §10): one self-contained static HTML page, and the same
key charts as Markdown for Dagster's metadata.

The page needs no network: charts are inline SVG drawn here from the numbers, styles are
inline CSS, there is no script and no external URL (a page opened from ``data/reports/``
on a laptop without internet looks the same). Each chart is an ``<svg data-chart="...">``
so tests (and people) can find it. A chart whose input is absent shows the reason instead.

``data`` keys (all optional except ``as_of``; frames are pandas DataFrames):
- ``segments``: segment, customers, and optionally cac, ltv_proxy, margin (per customer)
- ``incrementality``: the frame from ``measurement.incrementality``
- ``curves``: list of ``measurement.CurveFit``; ``budget_shift``: dict from ``budget_shift``
- ``migration``: dict from ``measurement.migration``
- ``drivers``: segment x persuasion-driver counts (index segment, columns drivers)
- ``forecast``: the frame from ``measurement.forecast``
- ``fatigue``: the frame from ``measurement.fatigue``
"""

from __future__ import annotations

import html
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PALETTE = ("#2f6f9f", "#e07b39", "#4c9a5b", "#b04a5a", "#7b62a3", "#8c7b4f", "#3a9aa3", "#999999")
W = 640  # chart width in px
ABSENT = "absent"


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    x = float(x)
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def _absent(name: str, reason: str) -> str:
    return (f'<svg data-chart="{_e(name)}" data-absent="true" width="{W}" height="40" '
            f'role="img" aria-label="{_e(name)} absent"><text x="8" y="24" class="note">'
            f"{_e(reason)}</text></svg>")


def _frame(data: dict, key: str) -> pd.DataFrame | None:
    v = data.get(key)
    if v is None:
        return None
    f = v if isinstance(v, pd.DataFrame) else pd.DataFrame(v)
    return f if len(f) else None


# --------------------------------------------------------------------------- SVG charts
def bar_chart(name: str, labels: list[str], values: list[float], *, fmt=_num, title: str = "",
              color: str = PALETTE[0], notes: list[str] | None = None) -> str:
    """Horizontal bars, one per label (negative values drawn left of a zero line)."""
    n = len(labels)
    row, left, right = 26, 190, 90
    h = 30 + n * row
    vals = np.array([0.0 if v is None or not np.isfinite(v) else float(v) for v in values])
    lo, hi = min(vals.min(), 0.0), max(vals.max(), 0.0)
    span = (hi - lo) or 1.0
    scale = (W - left - right) / span
    x0 = left + (-lo) * scale
    parts = [f'<svg data-chart="{_e(name)}" width="{W}" height="{h}" viewBox="0 0 {W} {h}" role="img" '
             f'aria-label="{_e(title or name)}">', f'<text x="4" y="16" class="title">{_e(title)}</text>']
    for i, (lab, v) in enumerate(zip(labels, vals, strict=True)):
        y = 26 + i * row
        x = min(x0, x0 + v * scale)
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{_e(lab)}</text>')
        parts.append(f'<rect x="{x:.1f}" y="{y}" width="{abs(v) * scale:.1f}" height="{row - 8}" '
                     f'fill="{color}"><title>{_e(lab)}: {_e(fmt(values[i]))}</title></rect>')
        note = f" {notes[i]}" if notes else ""
        parts.append(f'<text x="{max(x0, x0 + v * scale) + 4:.1f}" y="{y + 14}">{_e(fmt(values[i]))}{_e(note)}</text>')
    parts.append(f'<line x1="{x0:.1f}" y1="22" x2="{x0:.1f}" y2="{h - 4}" stroke="#333"/></svg>')
    return "".join(parts)


def grouped_bar_chart(name: str, labels: list[str], series: dict[str, list[float]], title: str = "") -> str:
    """Vertical grouped bars: one group per label, one bar per series, with a legend."""
    n, k = len(labels), len(series)
    h, top, bottom, left = 260, 40, 60, 60
    vals = np.array([[np.nan if v is None else float(v) for v in s] for s in series.values()], dtype=float)
    hi = np.nanmax(np.abs(vals)) if np.isfinite(vals).any() else 1.0
    hi = hi or 1.0
    gw = (W - left - 10) / max(n, 1)
    bw = gw * 0.8 / max(k, 1)
    scale = (h - top - bottom) / hi
    parts = [f'<svg data-chart="{_e(name)}" width="{W}" height="{h}" viewBox="0 0 {W} {h}" role="img" '
             f'aria-label="{_e(title or name)}">', f'<text x="4" y="16" class="title">{_e(title)}</text>']
    for j, sname in enumerate(series):
        parts.append(f'<rect x="{left + j * 130}" y="22" width="10" height="10" fill="{PALETTE[j % len(PALETTE)]}"/>'
                     f'<text x="{left + j * 130 + 14}" y="31">{_e(sname)}</text>')
    base = h - bottom
    for i, lab in enumerate(labels):
        gx = left + i * gw + gw * 0.1
        for j, sname in enumerate(series):
            v = vals[j, i]
            if not np.isfinite(v):
                continue
            bh = abs(v) * scale
            y = base - bh if v >= 0 else base
            parts.append(f'<rect x="{gx + j * bw:.1f}" y="{y:.1f}" width="{bw - 1:.1f}" height="{bh:.1f}" '
                         f'fill="{PALETTE[j % len(PALETTE)]}"><title>{_e(lab)} {_e(sname)}: {_e(_num(v))}</title></rect>')
        parts.append(f'<text x="{gx + gw * 0.4:.1f}" y="{base + 14}" text-anchor="middle" class="small">'
                     f'{_e(lab[:18])}</text>')
    parts.append(f'<line x1="{left}" y1="{base}" x2="{W - 5}" y2="{base}" stroke="#333"/>'
                 f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" class="small">{_e(_num(hi))}</text></svg>')
    return "".join(parts)


def interval_chart(name: str, inc: pd.DataFrame, title: str = "") -> str:
    """Conversion difference treated - holdout per segment with its 95% interval."""
    n = len(inc)
    row, left, right = 30, 190, 150
    h = 40 + n * row
    ok = inc[inc["status"] == "ok"]
    ext = [0.0] + list(ok["conversion_diff_lo"].astype(float)) + list(ok["conversion_diff_hi"].astype(float))
    lo, hi = min(ext), max(ext)
    pad = 0.1 * ((hi - lo) or 0.01)
    lo, hi = lo - pad, hi + pad
    scale = (W - left - right) / (hi - lo)

    def x(v: float) -> float:
        return left + (v - lo) * scale

    parts = [f'<svg data-chart="{_e(name)}" width="{W}" height="{h}" viewBox="0 0 {W} {h}" role="img" '
             f'aria-label="{_e(title or name)}">', f'<text x="4" y="16" class="title">{_e(title)}</text>',
             f'<line x1="{x(0):.1f}" y1="24" x2="{x(0):.1f}" y2="{h - 4}" stroke="#999" stroke-dasharray="3,3"/>']
    for i, r in enumerate(inc.itertuples()):
        y = 34 + i * row
        parts.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{_e(r.segment)}</text>')
        if r.status != "ok":
            parts.append(f'<text x="{left}" y="{y + 4}" class="note">{_e(str(r.status)[:70])}</text>')
            continue
        color = PALETTE[2] if r.conversion_diff_lo > 0 else PALETTE[3] if r.conversion_diff_hi < 0 else PALETTE[7]
        parts.append(f'<line x1="{x(r.conversion_diff_lo):.1f}" y1="{y}" x2="{x(r.conversion_diff_hi):.1f}" '
                     f'y2="{y}" stroke="{color}" stroke-width="3"/>')
        parts.append(f'<circle cx="{x(r.conversion_diff):.1f}" cy="{y}" r="5" fill="{color}">'
                     f'<title>{_e(r.segment)}: {r.conversion_diff:+.3f} '
                     f'[{r.conversion_diff_lo:+.3f}, {r.conversion_diff_hi:+.3f}]</title></circle>')
        parts.append(f'<text x="{W - right + 8}" y="{y + 4}" class="small">{r.conversion_diff * 100:+.1f} pts '
                     f'(n {r.n_treated:,}/{r.n_holdout:,})</text>')
    parts.append("</svg>")
    return "".join(parts)


def roi_curves_chart(name: str, fits: list, title: str = "") -> str:
    """Marginal ROI (slope x value per outcome) against daily spend, one line per channel,
    a dot at the current spend."""
    ok = [f for f in fits if f.ok]
    h, left, bottom, top = 280, 60, 40, 40
    xmax = max(f.spend_max for f in ok) * 1.3
    xs = np.linspace(xmax / 200, xmax, 120)
    ys = {f.channel: np.asarray(f.slope(xs)) * f.value_per_outcome for f in ok}
    ymax = max(float(np.nanmax(np.minimum(v, 5 * max(f.marginal_roi, 1e-9)))) for f, v in zip(ok, ys.values(), strict=True))
    ymax = max(ymax, max(f.marginal_roi for f in ok)) * 1.1 or 1.0
    sx = (W - left - 140) / xmax
    sy = (h - top - bottom) / ymax
    base = h - bottom
    parts = [f'<svg data-chart="{_e(name)}" width="{W}" height="{h}" viewBox="0 0 {W} {h}" role="img" '
             f'aria-label="{_e(title or name)}">', f'<text x="4" y="16" class="title">{_e(title)}</text>',
             f'<line x1="{left}" y1="{base}" x2="{W - 140}" y2="{base}" stroke="#333"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="#333"/>',
             f'<text x="{W - 140}" y="{base + 28}" text-anchor="end" class="small">daily spend (max {_e(_num(xmax))})</text>',
             f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" class="small">{_e(_num(ymax))}</text>',
             f'<text x="{left - 4}" y="{base}" text-anchor="end" class="small">0</text>']
    for j, f in enumerate(ok):
        c = PALETTE[j % len(PALETTE)]
        y = np.clip(ys[f.channel], 0, ymax)
        pts = " ".join(f"{left + a * sx:.1f},{base - b * sy:.1f}" for a, b in zip(xs, y, strict=True))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>')
        cx, cy = left + f.current_spend * sx, base - min(f.marginal_roi, ymax) * sy
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{c}"><title>{_e(f.channel)}: '
                     f'marginal ROI {f.marginal_roi:.2f} at {f.current_spend:,.0f}/day</title></circle>')
        parts.append(f'<text x="{W - 132}" y="{top + 14 + j * 18}" fill="{c}">{_e(f.channel)}: '
                     f'{f.marginal_roi:.2f} (R² {_num(f.r2)})</text>')
    for j, f in enumerate(x for x in fits if not x.ok):
        parts.append(f'<text x="{W - 132}" y="{top + 14 + (len(ok) + j) * 18}" class="note">'
                     f'{_e(f.channel)}: {_e(f.status[:40])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _count(v: float) -> str:
    return _num(int(v)) if np.isfinite(v) and float(v).is_integer() else _num(v)


def heatmap(name: str, matrix: pd.DataFrame, title: str = "", fmt=_count, row_norm: bool = False) -> str:
    """Cells coloured by value (or by row share), with the value written in each cell."""
    rows, cols = [str(r) for r in matrix.index], [str(c) for c in matrix.columns]
    left, top = 170, 110
    cw = max(40, min(90, (W - left - 10) // max(len(cols), 1)))
    ch = 26
    h, w = top + ch * len(rows) + 10, left + cw * len(cols) + 10
    vals = matrix.to_numpy(dtype=float)
    shade = vals / np.maximum(vals.sum(axis=1, keepdims=True), 1e-12) if row_norm else vals / max(np.nanmax(vals), 1e-12)
    parts = [f'<svg data-chart="{_e(name)}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
             f'aria-label="{_e(title or name)}">', f'<text x="4" y="16" class="title">{_e(title)}</text>']
    for j, c in enumerate(cols):
        x = left + j * cw + cw / 2
        parts.append(f'<text x="{x:.1f}" y="{top - 6}" transform="rotate(-40 {x:.1f} {top - 6})" class="small">{_e(c)}</text>')
    for i, r in enumerate(rows):
        y = top + i * ch
        parts.append(f'<text x="{left - 6}" y="{y + 17}" text-anchor="end">{_e(r)}</text>')
        for j, c in enumerate(cols):
            a = 0.08 + 0.85 * float(np.nan_to_num(shade[i, j]))
            parts.append(f'<rect x="{left + j * cw}" y="{y}" width="{cw - 2}" height="{ch - 2}" '
                         f'fill="rgba(47,111,159,{a:.2f})"><title>{_e(r)} → {_e(c)}: {_e(fmt(vals[i, j]))}</title></rect>')
            parts.append(f'<text x="{left + j * cw + cw / 2:.1f}" y="{y + 17}" text-anchor="middle" '
                         f'class="{"cell-dark" if a > 0.55 else "cell"}">{_e(fmt(vals[i, j]))}</text>')
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------- the page
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:0 0 8px}
.sub{color:#666;margin-bottom:18px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(660px,1fr));gap:18px}
section{border:1px solid #ddd;border-radius:6px;padding:12px;background:#fff}
svg text{font-size:12px;fill:#222}svg .title{font-weight:600;font-size:13px}
svg .small{font-size:10px;fill:#555}svg .note{fill:#888;font-style:italic}
svg .cell{font-size:11px;fill:#222}svg .cell-dark{font-size:11px;fill:#fff}
table{border-collapse:collapse;font-size:12px}td,th{border-bottom:1px solid #eee;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.rec{background:#f4f8fb;padding:8px;border-radius:4px}
"""


def _table(f: pd.DataFrame, cols: list[str]) -> str:
    cols = [c for c in cols if c in f.columns]
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_e(_num(v) if not isinstance(v, str) else v)}</td>"
                                    for v in r) + "</tr>" for r in f[cols].itertuples(index=False))
    return f"<table><tr>{head}</tr>{body}</table>"


def build_charts(data: dict) -> dict[str, str]:
    """name -> SVG (or an 'absent' SVG with the reason) for every chart of the report."""
    charts: dict[str, str] = {}
    cur = data.get("currency", "EUR")  # every amount is in the reporting currency
    seg = _frame(data, "segments")
    if seg is None:
        charts["segment_sizes"] = _absent("segment_sizes", "no segment table")
        charts["cac_ltv"] = _absent("cac_ltv", "no segment table")
        charts["margin"] = _absent("margin", "no segment table")
    else:
        total = float(seg["customers"].sum()) or 1.0
        charts["segment_sizes"] = bar_chart(
            "segment_sizes", list(seg["segment"]), list(seg["customers"].astype(float)),
            fmt=lambda v: _num(int(v)), title="Segment sizes (customers, share)",
            notes=[f"({c / total:.1%})" for c in seg["customers"]])
        econ = {k: list(seg[c]) for k, c in (("CAC", "cac"), ("LTV proxy", "ltv_proxy")) if c in seg}
        charts["cac_ltv"] = (grouped_bar_chart("cac_ltv", list(seg["segment"]), econ,
                                               f"CAC and LTV proxy per customer ({cur})")
                             if econ else _absent("cac_ltv", "no CAC or LTV columns"))
        charts["margin"] = (bar_chart("margin", list(seg["segment"]), list(seg["margin"].astype(float)),
                                      title=f"Contribution margin per customer, last year ({cur})",
                                      color=PALETTE[2])
                            if "margin" in seg else _absent("margin", "no margin column"))
    inc = _frame(data, "incrementality")
    charts["incrementality"] = (interval_chart("incrementality", inc,
                                               "Incrementality: conversion treated − holdout, 95% interval")
                                if inc is not None else _absent("incrementality", "no activation log yet"))
    fits = data.get("curves") or []
    charts["marginal_roi"] = (roi_curves_chart("marginal_roi", fits, "Marginal ROI by daily spend, per channel")
                              if any(f.ok for f in fits) else
                              _absent("marginal_roi", "no channel with a fitted response curve"
                                      + (f" ({fits[0].status})" if fits else "")))
    mig = data.get("migration")
    charts["migration"] = (heatmap("migration", mig["counts"], "Segment migration (rows: from, columns: to)",
                                   row_norm=True) if mig else _absent("migration", "no previous partition"))
    drv = data.get("drivers")
    charts["driver_matrix"] = (heatmap("driver_matrix", drv, "Segment × persuasion driver (each cell a brief)")
                               if drv is not None and len(drv) else _absent("driver_matrix", "no persuasion drivers"))
    fc = _frame(data, "forecast")
    charts["forecast"] = (grouped_bar_chart("forecast", list(fc["segment"]),
                                            {"revenue": list(fc["expected_revenue"]),
                                             "margin": list(fc["expected_margin"])},
                                            f"Forecast, next 30 days: expected revenue and margin ({cur})")
                          if fc is not None else _absent("forecast", "no scores"))
    return charts


def render_html(data: dict) -> str:
    charts = build_charts(data)
    as_of = data.get("as_of", "")
    shift = data.get("budget_shift") or {}
    rec = (f'<p class="rec">{_e(shift["text"])}</p>' if shift.get("status") == "ok"
           else f'<p class="rec">{_e(shift.get("status", "no budget recommendation"))}</p>')
    sections = [
        ("Segments", charts["segment_sizes"]), ("Customer economics", charts["cac_ltv"] + charts["margin"]),
        ("Incrementality", charts["incrementality"]), ("Marginal ROI", charts["marginal_roi"] + rec),
        ("Migration", charts["migration"]), ("Creative briefs", charts["driver_matrix"]),
        ("Forecast", charts["forecast"]),
    ]
    inc = _frame(data, "incrementality")
    if inc is not None:
        sections.append(("Incrementality detail", _table(inc, [
            "segment", "status", "n_treated", "n_holdout", "conversion_treated", "conversion_holdout",
            "conversion_diff", "relative_lift", "revenue_diff"])))
    fat = _frame(data, "fatigue")
    if fat is not None:
        sections.append(("Fatigue (creatives past their knee first)", _table(
            fat.sort_values("past_knee", ascending=False).head(20),
            ["segment", "creative_id", "status", "first_ctr", "last_ctr", "knee_frequency", "past_knee"])))
    body = "".join(f"<section><h2>{_e(t)}</h2>{c}</section>" for t, c in sections)
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Decision segments — {_e(as_of)}</title><style>{CSS}</style></head><body>"
            f"<h1>Decision segments — nightly report</h1><div class=\"sub\">as of {_e(as_of)}"
            f" · amounts in {_e(data.get('currency', 'EUR'))}"
            f"{' · run ' + _e(data['run_id']) if data.get('run_id') else ''}</div>"
            f'<div class="grid">{body}</div></body></html>')


def _atomic_write(path: Path, content: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a report is meant to be opened by others
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def render_report(data: dict, path) -> Path:
    """Write the report to ``path`` (temporary name in the same folder, then os.replace)."""
    return _atomic_write(Path(path), render_html(data).encode("utf-8"))


# --------------------------------------------------------------------------- markdown
BLOCKS = " ▏▎▍▌▋▊▉█"


def _bar(v: float, vmax: float, width: int = 24) -> str:
    if not np.isfinite(v) or vmax <= 0 or v <= 0:
        return ""
    eighths = round(v / vmax * width * 8)
    return "█" * (eighths // 8) + (BLOCKS[eighths % 8] if eighths % 8 else "")


def markdown_charts(data: dict) -> dict[str, str]:
    """The key charts as Markdown tables with unicode bars, for Dagster's markdown metadata."""
    out: dict[str, str] = {}
    seg = _frame(data, "segments")
    if seg is not None:
        total = float(seg["customers"].sum()) or 1.0
        vmax = float(seg["customers"].max())
        lines = ["| segment | customers | share | |", "| --- | ---: | ---: | --- |"]
        lines += [f"| {r.segment} | {int(r.customers):,} | {r.customers / total:.1%} | `{_bar(r.customers, vmax)}` |"
                  for r in seg.itertuples()]
        out["segment_sizes"] = "\n".join(lines)
        cols = [c for c in ("cac", "ltv_proxy", "margin") if c in seg]
        if cols:
            cur = data.get("currency", "EUR")
            lines = ["| segment | " + " | ".join(f"{c} ({cur})" for c in cols) + " |",
                     "| --- |" + " ---: |" * len(cols)]
            lines += ["| " + str(r["segment"]) + " | " + " | ".join(_num(r[c]) for c in cols) + " |"
                      for _, r in seg.iterrows()]
            out["economics"] = "\n".join(lines)
    inc = _frame(data, "incrementality")
    if inc is not None:
        lines = ["| segment | treated − holdout | 95% interval | relative lift | n (t/h) |",
                 "| --- | ---: | --- | ---: | ---: |"]
        for r in inc.itertuples():
            if r.status != "ok":
                lines.append(f"| {r.segment} | {r.status} | | | {r.n_treated:,}/{r.n_holdout:,} |")
                continue
            lines.append(f"| {r.segment} | {r.conversion_diff * 100:+.1f} pts | "
                         f"[{r.conversion_diff_lo * 100:+.1f}, {r.conversion_diff_hi * 100:+.1f}] | "
                         f"{r.relative_lift:+.0%} | {r.n_treated:,}/{r.n_holdout:,} |")
        out["incrementality"] = "\n".join(lines)
    fits = data.get("curves") or []
    if fits:
        ok = [f.marginal_roi for f in fits if f.ok]
        vmax = max(ok) if ok else 0.0
        lines = ["| channel | marginal ROI | | current spend/day | R² | status |",
                 "| --- | ---: | --- | ---: | ---: | --- |"]
        for f in fits:
            lines.append(f"| {f.channel} | {_num(f.marginal_roi)} | "
                         f"`{_bar(f.marginal_roi or 0.0, vmax)}` | {_num(f.current_spend)} | {_num(f.r2)} | {f.status} |")
        shift = data.get("budget_shift") or {}
        if shift:
            lines += ["", f"**Budget shift:** {shift.get('text', shift.get('status'))}"]
        out["marginal_roi"] = "\n".join(lines)
    mig = data.get("migration")
    if mig:
        c = mig["counts"]
        lines = ["| from \\ to | " + " | ".join(map(str, c.columns)) + " |", "| --- |" + " ---: |" * len(c.columns)]
        lines += [f"| {i} | " + " | ".join(f"{int(v):,}" for v in row) + " |" for i, row in c.iterrows()]
        out["migration"] = "\n".join(lines)
    return out


# --------------------------------------------------------------------------- headless browser
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--enable-logging=stderr", "--v=0")


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if exe := shutil.which(name):
            return exe
    return None


def run_chromium(html_path: Path, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Open the page in headless Chromium with a throw-away profile; stdout, stderr captured."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found on PATH (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="ds-chromium-") as profile:
        return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra,
                               Path(html_path).resolve().as_uri()],
                              capture_output=True, text=True, timeout=timeout)


def write_screenshot(html_path, png_path, width: int = 1400, height: int = 2400) -> Path:
    """Render the report to a PNG (e.g. data/reports/<date>/report.png), written atomically."""
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = png_path.with_name(f".{png_path.name}.tmp.png")
    proc = run_chromium(Path(html_path), f"--screenshot={tmp}", f"--window-size={width},{height}")
    if proc.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"chromium screenshot failed ({proc.returncode}): {proc.stderr[-2000:]}")
    os.replace(tmp, png_path)
    return png_path
