"""The nightly segment report (DESIGN §10): a self-contained HTML page per partition under
data/reports/<as_of>/, a PNG of it when Chromium is installed, and the key charts as markdown
metadata. Reads only what the partition's measurement assets and segments layer wrote."""

import datetime as dt
import shutil

import dagster as dg
import pandas as pd
from dagster_dbt import get_asset_key_for_model
from dagster_duckdb import DuckDBResource

from dagster_project.defs.dbt.assets import dbt_models
from dagster_project.defs.partitions import (
    DUCKDB_POOL,
    daily_partitions,
    one_run_per_partition,
)
from dagster_project.defs.quality.candidates import md_table
from dagster_project.defs.resources import DataPaths, warehouse
from dagster_project.lib import measurement as M
from dagster_project.lib import report as rpt
from dagster_project.lib.currency import reporting_currency

CAC_DAYS = 30
CAC_METHOD = (
    f"CAC per acquisition medium = paid spend of its channels over the last {CAC_DAYS} days / "
    f"customers whose first order in those days came through that medium (google -> cpc, "
    f"meta and tiktok -> paid_social, display -> display); a segment's CAC = the mean over its "
    f"customers of the CAC of their first order's medium (0 for organic, direct, email, "
    f"referral); blended CAC = all paid spend / all new customers in the {CAC_DAYS} days. "
    f"LTV proxy = mean net revenue of the last 365 days per customer; margin = mean "
    f"contribution margin of the last 365 days per customer.")


def _partition(con, table: str, as_of: dt.date) -> pd.DataFrame:
    # table names are constants of this module, never user input
    return con.execute(f"select * from {table} where as_of_date = ?", [as_of]).df()


def report_data(con, as_of: dt.date) -> tuple[dict, pd.DataFrame]:
    """The ``data`` dict of lib.report for the partition, and the CAC table per medium."""
    segments = con.execute(
        "select customer_id, primary_segment as segment from segmentation.decision_segments "
        "where as_of_date = ?", [as_of]).df()
    cac = con.execute(M.CAC_SQL, {"as_of": as_of, "days": CAC_DAYS}).df()
    con.register("measurement_segments", segments)
    con.register("measurement_cac", cac)
    try:
        economics = con.execute(M.SEGMENT_ECONOMICS_SQL, {"as_of": as_of}).df()
    finally:
        con.unregister("measurement_segments")
        con.unregister("measurement_cac")
    drivers = _partition(con, "segmentation.segment_driver_matrix", as_of)
    matrix = (drivers.pivot_table(index="segment", columns="persuasion_driver", values="customers",
                                  aggfunc="sum", fill_value=0) if len(drivers) else None)
    mig = _partition(con, "measurement.segment_migration", as_of)
    roi = _partition(con, "measurement.marginal_roi", as_of)
    prev = mig[(mig["comparison"] == "previous") & (mig["status"] == "ok")]
    data = {
        "as_of": as_of.isoformat(),
        "currency": reporting_currency(con, as_of)[0],
        "segments": economics,
        "incrementality": _partition(con, "measurement.incrementality", as_of),
        "curves": M.curve_fits_from_frame(roi),
        "migration": {"counts": M.migration_counts(prev)} if len(prev) else None,
        "drivers": matrix,
        "forecast": _partition(con, "measurement.segment_forecast", as_of),
        "fatigue": _partition(con, "measurement.creative_fatigue", as_of),
    }
    # the advice as the marginal_roi asset gave it (with its interval), not recomputed
    data["budget_shift"] = M.stored_budget_shift(roi)
    return data, cac


@dg.asset(
    key="segment_report",
    group_name="measurement",
    deps=["segment_incrementality", "marginal_roi", "creative_fatigue", "segment_migration",
          "segment_forecast", "persuasion_drivers", "published_segments",
          get_asset_key_for_model([dbt_models], "customer_features")],
    partitions_def=daily_partitions,
    backfill_policy=one_run_per_partition,
    pool=DUCKDB_POOL,
    kinds={"html", "duckdb"},
)
def segment_report(context: dg.AssetExecutionContext, duckdb: DuckDBResource, paths: DataPaths):
    """Static self-contained HTML segment report for the partition, plus its charts as markdown."""
    as_of = dt.date.fromisoformat(context.partition_key)
    with warehouse(duckdb) as con:
        data, cac = report_data(con, as_of)
    data["run_id"] = context.run.run_id
    folder = paths.reports / as_of.isoformat()
    html_path = rpt.render_report(data, folder / "segment_report.html")

    # latest.html follows the newest partition only: a backfill of an old day leaves it alone
    dated = sorted(p.name for p in paths.reports.iterdir()
                   if p.is_dir() and len(p.name) == 10 and p.name[4] == "-")
    latest = None
    if dated and dated[-1] == as_of.isoformat():
        latest = paths.reports / "latest.html"
        shutil.copyfile(html_path, latest)

    png = folder / "segment_report.png"
    if rpt.find_chromium() is None:
        screenshot = "not taken: chromium not found on PATH (Debian: apt-get install chromium)"
    else:
        try:
            rpt.write_screenshot(html_path, png)
            screenshot = str(png)
        except (RuntimeError, OSError, TimeoutError) as exc:  # never fail the run for a browser
            screenshot = f"not taken: {exc}"[:500]
            context.log.warning(f"segment report screenshot: {screenshot}")

    charts = rpt.markdown_charts(data)
    blended = cac["blended_cac"].dropna()
    return dg.MaterializeResult(metadata={
        "report": dg.MetadataValue.path(str(html_path)),
        "latest": dg.MetadataValue.path(str(latest)) if latest else "not refreshed (older partition)",
        "screenshot": dg.MetadataValue.path(screenshot) if screenshot == str(png) else screenshot,
        "charts": dg.MetadataValue.json(sorted(rpt.build_charts(data))),
        **{f"chart_{k}": dg.MetadataValue.md(v) for k, v in charts.items()},
        "cac_by_medium": dg.MetadataValue.md(
            md_table(cac.round(2)) if len(cac) else "no paid spend"),
        "blended_cac": float(blended.iloc[0]) if len(blended) else None,
        "cac_method": CAC_METHOD,
        "budget_shift": data["budget_shift"].get("text", data["budget_shift"]["status"]),
    })
