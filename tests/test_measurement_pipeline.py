"""Measurement wired into the nightly job: holdouts in the published audiences and out of the
upload files, the measurement.* tables, migration sums, and the nightly segment report.

Reads the session's `nightly_run` (the whole nightly job for END on 3,000 generated customers
with an activation log); the migration test materializes one asset on a copy of its warehouse.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
import shutil

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource

from dagster_project.lib import activation as act
from dagster_project.lib import measurement as M
from dagster_project.lib import report as rpt

from .helpers import END, query

MEASUREMENT_TABLES = ("incrementality", "marginal_roi", "creative_fatigue", "segment_migration",
                      "segment_forecast")
CHARTS = ("segment_sizes", "cac_ltv", "margin", "incrementality", "marginal_roi", "migration",
          "driver_matrix", "forecast")


@pytest.fixture(scope="module")
def run(nightly_run):
    assert nightly_run["result"].success, "the nightly job failed; see its run log"
    return nightly_run


def _q(run, sql: str, params=None) -> pd.DataFrame:
    return query(run["db"], sql, params or [])


def test_every_measurement_table_has_rows_for_the_partition(run):
    for table in MEASUREMENT_TABLES:
        n = _q(run, f"select count(*) as n from measurement.{table} where as_of_date = ?", [END]).n[0]
        assert n > 0, table


def test_incrementality_has_an_estimate_with_its_interval_or_says_why_not(run):
    inc = _q(run, "select * from measurement.incrementality where as_of_date = ?", [END])
    # the log: the generator's source log united with the night's own published audiences
    log_segments = set(_q(run, """
        select distinct segment from staging.stg_marketing__activation_log
        union select distinct audience from published.audiences_history
        where audience_kind = 'activation'""").segment)
    assert set(inc.segment) == log_segments
    source = inc.activation_log_source.unique().item()
    assert re.fullmatch(rf"{M.PUBLISHED_LOG} \([\d,]+ rows\) \+ {M.SOURCE_LOG} \([\d,]+ rows\)", source)
    meta = run["instance"].get_latest_materialization_event(
        dg.AssetKey("segment_incrementality")).asset_materialization.metadata
    rows = meta["activation_log_rows"].value
    assert set(rows) == {M.PUBLISHED_LOG, M.SOURCE_LOG} and all(n > 0 for n in rows.values())
    ok = inc[inc.status == "ok"]
    assert len(ok) >= 1
    assert ((ok.conversion_diff_lo <= ok.conversion_diff) & (ok.conversion_diff <= ok.conversion_diff_hi)).all()
    assert ((ok.n_treated >= 50) & (ok.n_holdout >= 50)).all()
    assert inc.loc[inc.status != "ok", "status"].str.startswith(M.NOT_ENOUGH).all()
    # a 10% holdout: about one holdout member per nine treated in every measured segment
    assert ((ok.n_holdout / (ok.n_treated + ok.n_holdout)).between(0.05, 0.15)).all()


def test_marginal_roi_has_a_curve_or_a_reason_per_channel_and_a_recommendation(run):
    roi = _q(run, "select * from measurement.marginal_roi where as_of_date = ?", [END])
    channels = set(_q(run, "select distinct channel from staging.stg_ads__spend").channel)
    assert set(roi.channel) == channels
    ok = roi[roi.status == "ok"]
    assert (ok.marginal_roi > 0).all() and ok.r2.notna().all()
    assert (roi.loc[roi.status != "ok", "marginal_roi"].isna()).all()
    advice = roi["budget_shift"].iloc[0]
    if roi.budget_shift_role.notna().any():  # the shift goes from the lowest to the highest marginal ROI
        assert roi.loc[roi.budget_shift_role == "from", "channel"].item() == ok.loc[ok.marginal_roi.idxmin(), "channel"]
        assert roi.loc[roi.budget_shift_role == "to", "channel"].item() == ok.loc[ok.marginal_roi.idxmax(), "channel"]
        assert "90% interval" in advice
    else:  # withheld, saying why (too few curves, or an interval that includes zero)
        assert advice.startswith("no recommendation"), advice


def test_forecast_covers_every_segmented_customer_and_fatigue_every_exposed_segment(run):
    fc = _q(run, "select * from measurement.segment_forecast where as_of_date = ?", [END])
    seg = _q(run, "select primary_segment, count(*) as n from segmentation.decision_segments "
                  "where as_of_date = ? group by 1", [END])
    assert dict(zip(fc.segment, fc.customers, strict=True)) == dict(zip(seg.primary_segment, seg.n, strict=True))
    assert (fc.expected_orders >= 0).all() and (fc.expected_revenue >= 0).all()
    fat = _q(run, "select * from measurement.creative_fatigue where as_of_date = ?", [END])
    assert set(fat.segment) <= set(seg.primary_segment) and (fat.status == "ok").any()
    assert (fat.loc[fat.past_knee, "knee_frequency"] > 1).all()


def test_holdout_share_of_the_published_audiences_is_close_to_ten_percent(run):
    aud = _q(run, "select audience, audience_kind, customer_id, holdout from published.audiences "
                  "where as_of_date = ?", [END])
    activation = aud[aud.audience_kind == "activation"]
    assert len(activation) > 0
    # the assignment is measurement.holdout_assignment, hash of (segment, customer)
    expected = M.holdout_assignment(activation.customer_id, activation.audience, 0.10)
    assert (activation.holdout.to_numpy() == expected).all()
    # a few hundred members, not 10,000 (the +-1.5 point test is in test_measurement.py):
    # the tolerance is three binomial standard deviations sqrt(0.1 x 0.9 / n)
    n = len(activation)
    assert abs(activation.holdout.mean() - 0.10) <= 3 * math.sqrt(0.09 / n), (n, activation.holdout.mean())
    for name, g in activation.groupby("audience"):
        assert abs(g.holdout.mean() - 0.10) <= 3 * math.sqrt(0.09 / len(g)) + 1 / len(g), name
    assert not aud.loc[aud.audience_kind == "suppression", "holdout"].any()


def test_no_holdout_member_is_in_any_upload_file(run):
    aud = _q(run, "select * from published.audiences where as_of_date = ?", [END])
    root = run["root"] / "exports" / END.isoformat()
    checked = 0
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        members = aud[aud.audience == folder.name]
        held = members[members.holdout]
        for fname, rows in ((act.GOOGLE_FILE, act.google_rows), (act.META_FILE, act.meta_rows)):
            with open(folder / fname, newline="", encoding="utf-8") as fh:
                in_file = {tuple(r) for r in list(csv.reader(fh))[1:]}
            held_rows = {tuple("" if v is None else str(v) for v in r) for r in rows(held)}
            assert not in_file & held_rows, f"{folder.name}/{fname} holds holdout members"
            assert len(in_file) <= len(members) - len(held)
            checked += len(held)
    assert checked > 0, "no exported audience had a holdout member to check"


def test_migration_without_an_earlier_partition_says_so(run):
    mig = _q(run, "select * from measurement.segment_migration where as_of_date = ?", [END])
    assert set(mig.status) == {"no earlier partition"} and mig.customers.sum() == 0


def test_migration_counts_sum_to_the_customers_of_both_partitions(run, tmp_path):
    from dagster_project.defs.measurement.assets import segment_migration

    db = tmp_path / run["db"].name  # the same file name: dbt's views name the catalog after it
    shutil.copyfile(run["db"], db)
    prev, week = END - dt.timedelta(days=1), END - dt.timedelta(days=7)
    import duckdb

    con = duckdb.connect(str(db))
    # earlier partitions: END's customers with every 5th moved to another segment, every 11th
    # not yet a customer, and (a week ago) every 7th moved
    for date, step in ((prev, 5), (week, 7)):
        con.execute("""
            insert into segmentation.decision_segments by name
            select * replace (
                ?::date as as_of_date,
                case when hash(customer_id) % ? = 0 then
                    case primary_segment when 'maintain' then 'ready_to_repeat' else 'maintain' end
                else primary_segment end as primary_segment)
            from segmentation.decision_segments
            where as_of_date = ? and hash(customer_id) % 11 <> 0""", [date, step, END])
    con.close()
    result = dg.materialize([segment_migration], partition_key=END.isoformat(),
                            resources={"duckdb": DuckDBResource(database=str(db))})
    assert result.success
    mig = query(db, "select * from measurement.segment_migration where as_of_date = ?", [END])
    curr = query(db, "select primary_segment as segment, count(*) as n from segmentation.decision_segments "
                     "where as_of_date = ? group by 1", [END]).set_index("segment").n
    assert set(mig.comparison) == {"previous", "7_days"} and (mig.status == "ok").all()
    for comparison, date in (("previous", prev), ("7_days", week)):
        m = mig[mig.comparison == comparison]
        assert (pd.to_datetime(m.from_date).dt.date == date).all()
        before = query(db, "select primary_segment as segment, count(*) as n from segmentation.decision_segments "
                           "where as_of_date = ? group by 1", [date]).set_index("segment").n
        rows = m.groupby("segment_from").customers.sum()
        cols = m.groupby("segment_to").customers.sum()
        assert rows.drop(M.NEW, errors="ignore").to_dict() == before.to_dict()
        assert cols.drop(M.GONE, errors="ignore").to_dict() == curr.to_dict()
        assert rows.get(M.NEW, 0) > 0  # every 11th customer is new
        assert np.allclose(m.groupby("segment_from").rate.sum(), 1.0)
        assert 0 < (m.segment_from == m.segment_to).sum()


def test_the_report_is_a_self_contained_page_with_every_chart(run):
    html_path = run["root"] / "reports" / END.isoformat() / "segment_report.html"
    page = html_path.read_text(encoding="utf-8")
    assert not re.search(r"https?://", page), "the report references an external resource"
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    for chart in CHARTS:
        assert f'data-chart="{chart}"' in page, chart
    # every chart whose input exists in this run is drawn, not replaced by its reason
    for chart in ("segment_sizes", "cac_ltv", "margin", "incrementality", "marginal_roi",
                  "driver_matrix", "forecast"):
        assert not re.search(rf'data-chart="{chart}" data-absent', page), chart
    assert (run["root"] / "reports" / "latest.html").read_text(encoding="utf-8") == page
    png = html_path.with_name("segment_report.png")
    if rpt.find_chromium():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_asset_carries_its_charts_as_markdown_metadata(run):
    event = run["instance"].get_latest_materialization_event(dg.AssetKey("segment_report"))
    meta = event.asset_materialization.metadata
    for key in ("chart_segment_sizes", "chart_economics", "chart_incrementality", "chart_marginal_roi"):
        assert isinstance(meta[key], dg.MarkdownMetadataValue), key
        assert meta[key].value.startswith("|")
    assert "CAC" in meta["cac_method"].value
    inc = run["instance"].get_latest_materialization_event(dg.AssetKey("segment_incrementality"))
    assert "treated − holdout" in inc.asset_materialization.metadata["incrementality"].value


# --------------------------------------------------------------------------- additive lib helpers
def test_curve_fits_survive_a_round_trip_through_their_table_rows():
    rng = np.random.default_rng(0)
    spend = 400 * np.exp(rng.normal(0, 0.5, 120))
    fit = M.fit_response_curve(spend, rng.poisson(M.hill(spend, 50, 400, 1.6)), channel="meta",
                               value_per_outcome=80.0)
    flat = M.fit_response_curve(np.full(60, 100.0), np.ones(60), channel="tv")
    back = M.curve_fits_from_frame(pd.DataFrame([fit.as_dict(), flat.as_dict()]))
    assert back[0].ok and back[0].params == pytest.approx(fit.params)
    assert back[0].slope(fit.current_spend) == pytest.approx(fit.marginal_outcome)
    assert not back[1].ok and back[1].status.startswith(M.SPEND_DOES_NOT_VARY)


def test_migration_counts_come_back_from_the_long_form():
    prev = pd.DataFrame({"customer_id": list("abcd"), "segment": ["x", "x", "y", "y"]})
    curr = pd.DataFrame({"customer_id": list("bcde"), "segment": ["y", "y", "x", "x"]})
    mig = M.migration(prev, curr)
    assert M.migration_counts(mig["long"]).equals(mig["counts"])
