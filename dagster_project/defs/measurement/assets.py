"""Measurement (DESIGN §10): incrementality from holdouts, marginal ROI, creative fatigue, segment
migration and the 30-day forecast, each a partitioned asset writing a measurement.* table.

Thin wrappers: the SQL constants and the estimators live in lib/measurement.py. Every query is
set-based in DuckDB with bound parameters; Python gets per-segment, per-day or per-customer
frames only.
"""

import datetime as dt
import json

import dagster as dg
import numpy as np
import pandas as pd
from dagster_dbt import get_asset_key_for_model
from dagster_duckdb import DuckDBResource

from dagster_project.defs.dbt.assets import dbt_models
from dagster_project.defs.partitions import (
    DUCKDB_POOL,
    daily_partitions,
    one_run_per_partition,
)
from dagster_project.defs.quality.candidates import holdout_share, md_table
from dagster_project.defs.resources import warehouse
from dagster_project.lib import measurement as M
from dagster_project.lib import report as rpt
from dagster_project.lib.currency import reporting_currency
from dagster_project.lib.segments import SEGMENTS
from dagster_project.lib.sources import sources_present
from dagster_project.lib.warehouse import replace_partition, table_exists

NO_EARLIER = "no earlier partition"

INC_FLOATS = ["conversion_treated", "conversion_holdout", "conversion_diff", "conversion_diff_lo",
              "conversion_diff_hi", "relative_lift", "relative_lift_lo", "relative_lift_hi",
              "revenue_per_member_treated", "revenue_per_member_holdout", "revenue_diff",
              "revenue_diff_lo", "revenue_diff_hi", "incremental_orders"]
ROI_COLUMNS = ["channel", "segment", "status", "kind", "r2", "n_days", "spend_cv",
               "current_spend", "spend_min", "spend_max", "value_per_outcome",
               "outcome_at_current", "marginal_outcome", "marginal_roi", "average_roi",
               "param_a", "param_k", "param_s", "budget_shift_role"]
MIGRATION_COLUMNS = ["comparison", "from_date", "status", "segment_from", "segment_to",
                     "customers", "rate"]


class MeasurementConfig(dg.Config):
    """Windows of the measurement assets (days)."""

    window_days: int = 30  # outcome window after an activation
    min_per_group: int = 50  # complete windows needed in treated and in holdout
    spend_days: int = 180  # daily spend history the response curves are fitted on
    fatigue_days: int = 60  # exposures judged for fatigue
    fatigue_min_impressions: int = 50  # impressions a frequency bucket needs to be judged


def _dbt(model: str) -> dg.AssetKey:
    return get_asset_key_for_model([dbt_models], model)


def _as_of(context: dg.AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def _primary_segments(con, as_of: dt.date) -> pd.DataFrame:
    return con.execute(
        "select customer_id, primary_segment as segment from segmentation.decision_segments "
        "where as_of_date = ? order by customer_id", [as_of]).df()


def _json(value) -> dg.MetadataValue:
    return dg.MetadataValue.json(json.loads(json.dumps(value, default=str)))


def _asset(**kw):
    """The measurement assets' common settings (DuckDB pool, daily partitions)."""
    return dg.asset(group_name="measurement", partitions_def=daily_partitions,
                    backfill_policy=one_run_per_partition, pool=DUCKDB_POOL, **kw)


# --------------------------------------------------------------------------- incrementality
def published_holdout_share(con, as_of: dt.date) -> pd.DataFrame:
    """Members and holdout share per published activation audience of the partition."""
    if not table_exists(con, "published", "audiences_history"):
        return pd.DataFrame(columns=["audience", "members", "holdout", "holdout_share"])
    return con.execute("""
        select audience, count(*) as members, count(*) filter (where holdout) as holdout,
               round(avg(holdout::int), 4) as holdout_share
        from published.audiences_history
        where as_of_date = ? and audience_kind = 'activation'
        group by audience order by audience""", [as_of]).df()


@_asset(
    key="segment_incrementality",
    deps=["published_segments", _dbt("stg_marketing__activation_log"),
          _dbt("int_orders__economics")],
    kinds={"python", "duckdb"},
)
def segment_incrementality(context: dg.AssetExecutionContext, config: MeasurementConfig,
                           duckdb: DuckDBResource):
    """Treated vs holdout conversion and revenue per segment, with 95% intervals and n.

    The activation log is the pipeline's own published audience history (activation audiences
    with their holdout flag) united with the brand's source log when it has one; on the same
    (date, customer, segment) the source log row wins (lib.measurement.activation_log_sql)."""
    as_of = _as_of(context)
    with warehouse(duckdb) as con:
        inc, contributed = M.measure_incrementality(
            con, as_of, window_days=config.window_days, min_per_group=config.min_per_group,
            segments=SEGMENTS)
        source = M.describe_sources(contributed)
        inc = inc.astype({c: float for c in INC_FLOATS}).astype({"significant": "boolean"})
        table = inc.copy()
        table.insert(0, "as_of_date", as_of)
        table["activation_log_source"] = source
        n = replace_partition(con, "measurement.incrementality", table, as_of)
        shares = published_holdout_share(con, as_of)

    charts = rpt.markdown_charts({"incrementality": inc})
    return dg.MaterializeResult(metadata={
        "rows": n,
        "activation_log": source if contributed else M.NO_LOG,
        "activation_log_rows": _json(contributed),
        "incrementality": dg.MetadataValue.md(charts["incrementality"]),
        "segments_measured": int((inc["status"] == "ok").sum()),
        "segments_not_enough_data": _json(
            {r.segment: r.status for r in inc.itertuples() if r.status != "ok"}),
        "holdout_share_config": holdout_share(),
        "published_holdouts": dg.MetadataValue.md(md_table(shares) if len(shares) else "none"),
        "organic_inevitable_holdout_evidence": (
            "measured by the segments asset for its own partition (metadata of "
            "exclusion_audiences): organic-profile customers' treated vs holdout conversion "
            "in this same activation log"),
        "window_days": config.window_days,
    })


# --------------------------------------------------------------------------- marginal ROI
@_asset(
    key="marginal_roi",
    deps=[_dbt("stg_ads__spend"), _dbt("stg_web__events"), _dbt("int_orders__economics")],
    kinds={"python", "duckdb", "scipy"},
)
def marginal_roi(context: dg.AssetExecutionContext, config: MeasurementConfig,
                 duckdb: DuckDBResource):
    """Saturating response curve per channel, marginal ROI at current spend, budget-shift advice."""
    as_of = _as_of(context)
    params = {"as_of": as_of, "days": config.spend_days}
    with warehouse(duckdb) as con:
        daily = con.execute(M.CHANNEL_DAILY_SQL, params).df()
        value, paid_orders = con.execute(M.PAID_ORDER_VALUE_SQL, params).fetchone()
        # days before the first recorded spend are outside the history, not zero-spend days
        spent = daily.loc[daily["spend"] > 0, "date"]
        if len(spent):
            daily = daily[daily["date"] >= spent.min()]
        fits = M.fit_response_curves(daily, value_per_outcome=value or np.nan)
        shift = M.budget_shift(fits)
        table = pd.DataFrame([f.as_dict() for f in fits]).reindex(columns=ROI_COLUMNS)
        table["segment"] = table["segment"].fillna("all")
        if shift["status"] == "ok":
            table["budget_shift_role"] = table["channel"].map(
                {shift["from_channel"]: "from", shift["to_channel"]: "to"})
        table = table.astype({c: float for c in ROI_COLUMNS[4:18] if c != "n_days"})
        table = table.astype({"budget_shift_role": "string", "kind": "string"})
        table.insert(0, "as_of_date", as_of)
        table["budget_shift"] = shift.get("text", shift["status"])
        n = replace_partition(con, "measurement.marginal_roi", table, as_of)

    charts = rpt.markdown_charts({"curves": fits, "budget_shift": shift})
    return dg.MaterializeResult(metadata={
        "rows": n,
        "marginal_roi": dg.MetadataValue.md(charts.get("marginal_roi", "no channels")),
        "budget_shift": _json({k: v for k, v in shift.items()}),
        "fit_quality_r2": _json({f.channel: f.r2 for f in fits}),
        "status_by_channel": _json({f.channel: f.status for f in fits}),
        "value_per_paid_order": float(value) if value is not None else None,
        "paid_orders": int(paid_orders or 0),
        "days": int(daily["date"].nunique()) if len(daily) else 0,
        "attribution": "paid web purchases by utm_source -> channel (lib.measurement.UTM_SOURCE_CHANNEL)",
    })


# --------------------------------------------------------------------------- fatigue
@_asset(
    key="creative_fatigue",
    deps=["decision_segments", _dbt("stg_ads__exposures"), _dbt("int_orders__economics")],
    kinds={"python", "duckdb"},
)
def creative_fatigue(context: dg.AssetExecutionContext, config: MeasurementConfig,
                     duckdb: DuckDBResource):
    """CTR by cumulative frequency per segment x creative; creatives past their knee flagged."""
    as_of = _as_of(context)
    with warehouse(duckdb) as con:
        absent = None if sources_present(con, as_of)["ads"] else (
            f"absent: no ads exposures landed by {as_of} (ads/exposures is optional); fatigue "
            "needs user-level impressions")
        con.register("measurement_segments", _primary_segments(con, as_of))
        by_freq = con.execute(M.FATIGUE_SQL, {"as_of": as_of, "days": config.fatigue_days}).df()
        con.unregister("measurement_segments")
        fat = M.fatigue(by_freq, min_impressions=config.fatigue_min_impressions)
        table = fat.copy()
        table["ctr_by_bucket"] = table["ctr_by_bucket"].map(json.dumps)
        table = table.astype({"first_ctr": float, "last_ctr": float, "knee_frequency": float,
                              "share_impressions_past_knee": float,
                              "first_conversion_rate": float, "past_knee": bool,
                              "impressions": float, "buckets": "int64"})
        table.insert(0, "as_of_date", as_of)
        n = replace_partition(con, "measurement.creative_fatigue", table, as_of)

    if absent:
        context.log.warning(f"creative_fatigue {absent}")
    past = fat[fat["past_knee"].astype(bool)].sort_values("share_impressions_past_knee",
                                                          ascending=False)
    return dg.MaterializeResult(metadata={
        "rows": n,
        **({"absent_reason": absent} if absent else {}),
        "creatives_judged": int((fat["status"] == "ok").sum()),
        "past_knee": int(fat["past_knee"].sum()),
        "past_knee_creatives": dg.MetadataValue.md(
            md_table(past[["segment", "creative_id", "first_ctr", "last_ctr", "knee_frequency",
                           "share_impressions_past_knee"]].round(4).head(20))
            if len(past) else "none past their knee"),
        "days": config.fatigue_days,
    })


# --------------------------------------------------------------------------- migration
def migration_rows(con, as_of: dt.date) -> tuple[pd.DataFrame, dict]:
    """Long transition counts against the last earlier partition and against 7 days ago."""
    curr = _primary_segments(con, as_of)
    last = con.execute("select max(as_of_date) from segmentation.decision_segments "
                       "where as_of_date < ?", [as_of]).fetchone()[0]
    week = as_of - dt.timedelta(days=7)
    has_week = con.execute("select count(*) from segmentation.decision_segments where as_of_date = ?",
                           [week]).fetchone()[0] > 0
    frames, summary = [], {}
    for name, date in (("previous", last), ("7_days", week if has_week else None)):
        if date is None:
            frames.append(pd.DataFrame([{"comparison": name, "status": NO_EARLIER, "customers": 0}]))
            summary[name] = {"status": NO_EARLIER}
            continue
        mig = M.migration(_primary_segments(con, date), curr)
        long = mig["long"].copy()
        long["rate"] = long["customers"] / long.groupby("segment_from")["customers"].transform("sum")
        frames.append(long.assign(comparison=name, from_date=date, status="ok"))
        summary[name] = {"status": "ok", "from_date": date.isoformat(), "n_prev": mig["n_prev"],
                         "n_curr": mig["n_curr"], "n_new": mig["n_new"], "n_gone": mig["n_gone"],
                         "stayed_share": round(mig["stayed_share"], 4), "counts": mig["counts"]}
    out = pd.concat(frames, ignore_index=True).reindex(columns=MIGRATION_COLUMNS)
    out = out.astype({"from_date": "datetime64[us]", "segment_from": "string",
                      "segment_to": "string", "customers": "int64", "rate": float})
    out["from_date"] = out["from_date"].dt.date
    return out, summary


@_asset(key="segment_migration", deps=["decision_segments"], kinds={"python", "duckdb"})
def segment_migration(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
    """Transition counts and rates between the last partition (and 7 days ago) and this one."""
    as_of = _as_of(context)
    with warehouse(duckdb) as con:
        table, summary = migration_rows(con, as_of)
        table.insert(0, "as_of_date", as_of)
        n = replace_partition(con, "measurement.segment_migration", table, as_of)
    md = {}
    for name, s in summary.items():
        md[f"migration_{name}"] = dg.MetadataValue.md(
            rpt.markdown_charts({"migration": {"counts": s["counts"]}})["migration"]
            if s["status"] == "ok" else s["status"])
    return dg.MaterializeResult(metadata={
        "rows": n, **md,
        "summary": _json({k: {kk: vv for kk, vv in v.items() if kk != "counts"}
                          for k, v in summary.items()}),
    })


# --------------------------------------------------------------------------- forecast
FORECAST_FEATURES_SQL = """
select customer_id, aov_lifetime, margin_per_order_365d, orders_30d
from marts.customer_features
where as_of_date = ?
"""


@_asset(key="segment_forecast", deps=["decision_segments", _dbt("customer_features")],
        kinds={"python", "duckdb"})
def segment_forecast(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
    """Expected orders, revenue and contribution margin per segment over the next 30 days."""
    as_of = _as_of(context)
    with warehouse(duckdb) as con:
        scores = con.execute(
            "select customer_id, primary_segment as segment, purchase_30d_score as p_purchase_30d "
            "from segmentation.decision_segments where as_of_date = ?", [as_of]).df()
        features = con.execute(FORECAST_FEATURES_SQL, [as_of]).df()
        fc = M.forecast(scores, features)
        currency, _ = reporting_currency(con, as_of)
        table = fc.copy()
        table.insert(0, "as_of_date", as_of)
        table["currency"] = currency
        n = replace_partition(con, "measurement.segment_forecast", table, as_of)
    shown = fc[["segment", "customers", "expected_orders", "expected_revenue",
                "expected_margin"]].round(1)
    return dg.MaterializeResult(metadata={
        "rows": n,
        "forecast": dg.MetadataValue.md(md_table(shown)),
        "currency": currency,
        "expected_revenue_total": float(fc["expected_revenue"].sum()),
        "expected_margin_total": float(fc["expected_margin"].sum()),
        "formula": M.FORECAST_FORMULA,
    })
