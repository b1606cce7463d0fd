"""The nightly report: a self-contained HTML page that headless Chromium renders without
console errors, with every chart present; and the Markdown versions for Dagster metadata."""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pytest

from dagster_project.lib import measurement as M
from dagster_project.lib import report as R

CHARTS = ("segment_sizes", "cac_ltv", "margin", "incrementality", "marginal_roi", "migration",
          "driver_matrix", "forecast")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    segs = ["ready_to_repeat", "likely_to_churn", "deal_triggered", "high_intent_low_trust", "maintain"]
    seg = pd.DataFrame({"segment": segs, "customers": [1200, 800, 650, 400, 3000],
                        "cac": [12.0, 25.0, 18.0, 30.0, 9.0], "ltv_proxy": [220.0, 140.0, 90.0, 160.0, 60.0],
                        "margin": [55.0, 30.0, -4.0, 35.0, 12.0]})
    logs, outs = [], []
    for i, (s, pt) in enumerate(zip(segs[:4], [0.3, 0.2, 0.26, 0.22], strict=True)):
        n = 600
        g = np.where(np.arange(n) < 300, "treated", "holdout")
        conv = rng.random(n) < np.where(g == "treated", pt, 0.18)
        log = pd.DataFrame({"activation_date": pd.Timestamp("2025-04-01"),
                            "customer_id": [f"{i}-{k}" for k in range(n)], "segment": s, "test_group": g})
        logs.append(log if i < 3 else log.iloc[:60])  # the last segment is too small to measure
        outs.append(log.assign(orders=conv.astype(int), revenue=conv * 50.0))
    inc = M.incrementality(pd.concat(logs), pd.concat(outs), as_of="2025-06-01")
    fits = []
    for ch, a, k in (("meta", 40, 300), ("google", 30, 900), ("display", 10, 100)):
        x = 400 * np.exp(rng.normal(0, 0.5, 120))
        fits.append(M.fit_response_curve(x, rng.poisson(M.hill(x, a, k, 1.3)), channel=ch, value_per_outcome=60))
    fits.append(M.fit_response_curve(np.full(120, 200.0), rng.poisson(3, 120), channel="tiktok"))
    prev = pd.DataFrame({"customer_id": [f"c{i}" for i in range(300)], "segment": rng.choice(segs, 300)})
    curr = pd.DataFrame({"customer_id": [f"c{i}" for i in range(50, 360)], "segment": rng.choice(segs, 310)})
    drivers = pd.DataFrame(rng.integers(0, 200, (5, 6)), index=segs,
                           columns=["proof", "identity", "anxiety", "convenience", "value", "performance"])
    scores = pd.DataFrame({"customer_id": curr.customer_id, "segment": curr.segment, "p_purchase_30d": rng.random(310)})
    feats = pd.DataFrame({"customer_id": curr.customer_id, "aov_lifetime": 60.0, "margin_per_order_365d": 15.0,
                          "orders_30d": rng.integers(0, 3, 310)})
    return {"as_of": "2025-06-30", "run_id": "test-run", "segments": seg, "incrementality": inc,
            "curves": fits, "budget_shift": M.budget_shift(fits), "migration": M.migration(prev, curr),
            "drivers": drivers, "forecast": M.forecast(scores, feats)}


def test_report_is_self_contained_and_written_atomically(data, tmp_path):
    path = R.render_report(data, tmp_path / "r" / "report.html")
    text = path.read_text()
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temp file left behind
    for name in CHARTS:
        assert f'<svg data-chart="{name}"' in text, name
    assert 'data-absent="true"' not in text
    # no network: no external URL, script or stylesheet link anywhere
    assert not re.search(r"(src|href)\s*=|https?://|<script|<link", text.replace("http://www.w3.org", ""))
    assert "likely_to_churn" in text and "not enough data yet" in text


def test_absent_inputs_show_their_reason_instead_of_a_chart(tmp_path):
    text = R.render_report({"as_of": "2025-06-30"}, tmp_path / "empty.html").read_text()
    assert text.count('data-absent="true"') == len(CHARTS)
    assert "no activation log yet" in text


def test_markdown_charts_carry_the_numbers_as_unicode_bars(data):
    md = R.markdown_charts(data)
    assert set(md) >= {"segment_sizes", "incrementality", "marginal_roi", "migration"}
    assert "█" in md["segment_sizes"] and "3,000" in md["segment_sizes"]
    assert "not enough data yet" in md["incrementality"]
    assert M.SPEND_DOES_NOT_VARY in md["marginal_roi"] and "Budget shift" in md["marginal_roi"]


def _chromium_or_fail():
    if R.find_chromium() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is required in CI (apt-get install chromium)")
        pytest.skip("chromium not installed (apt-get install chromium); required when CI=true")


CONSOLE_ERROR = re.compile(r"CONSOLE|Uncaught|Refused to|net::ERR_", re.IGNORECASE)


def test_report_renders_in_headless_chromium_without_console_errors(data, tmp_path):
    _chromium_or_fail()
    path = R.render_report(data, tmp_path / "report.html")
    proc = R.run_chromium(path, "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if CONSOLE_ERROR.search(line)]
    assert errors == []
    dom = proc.stdout
    for name in CHARTS:
        assert re.search(rf'<svg[^>]*data-chart="{name}"', dom), name
    assert dom.count("<rect") > 20 and "<polyline" in dom


def test_screenshot_writer_produces_a_png(data, tmp_path):
    _chromium_or_fail()
    html = R.render_report(data, tmp_path / "report.html")
    png = R.write_screenshot(html, tmp_path / "out" / "report.png", width=1200, height=1600)
    head = png.read_bytes()[:8]
    assert head == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert sorted(p.name for p in png.parent.iterdir()) == ["report.png"]


def test_console_check_would_catch_a_page_with_a_script_error(tmp_path):
    """The check above is only worth something if a console error actually shows up in stderr."""
    _chromium_or_fail()
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><html><body><script>undefinedFunction();</script></body></html>")
    proc = R.run_chromium(bad, "--dump-dom")
    assert any(CONSOLE_ERROR.search(line) for line in proc.stderr.splitlines())
