"""Layer 1: business states with thresholds learned from the partition's data."""


import datetime as dt
import json

import dagster as dg
import pandas as pd
from dagster_dbt import get_asset_key_for_model
from dagster_duckdb import DuckDBResource

from dagster_project.defs.dbt.assets import dbt_models
from dagster_project.defs.resources import warehouse
from dagster_project.defs.partitions import DUCKDB_POOL, daily_partitions, one_run_per_partition
from dagster_project.lib.rules import assign_states, learn_thresholds, state_counts
from dagster_project.lib.warehouse import replace_partition

INTERVALS_SQL = """
-- inter-purchase intervals and order values of the orders visible at the partition date
select
    order_date - lag(order_date) over (partition by customer_id order by order_date, order_id)
        as gap_days,
    net_revenue_rc,
    order_date > ?::date - 365 as in_last_year
from intermediate.int_orders__economics
where visible_from <= ? and order_date <= ? and not fx_missing
"""


@dg.asset(
    key="customer_states",
    group_name="rules",
    deps=[get_asset_key_for_model([dbt_models], "customer_features")],
    partitions_def=daily_partitions,
    backfill_policy=one_run_per_partition,
    pool=DUCKDB_POOL,
    kinds={"python", "duckdb"},
)
def customer_states(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
    """Lifecycle state, AOV tier and category family per customer, thresholds learned nightly."""
    as_of = dt.date.fromisoformat(context.partition_key)
    with warehouse(duckdb) as con:
        orders = con.execute(INTERVALS_SQL, [as_of, as_of, as_of]).df()
        recent = orders[orders["in_last_year"]]
        th = learn_thresholds(
            orders["gap_days"].dropna().to_numpy(dtype=float),
            recent["net_revenue_rc"].dropna().to_numpy(dtype=float),
        )
        feats = con.execute(
            "select customer_id, orders_lifetime, days_since_last_order, days_since_first_order,"
            " aov_lifetime, top_category from marts.customer_features where as_of_date = ?"
            " order by customer_id",
            [as_of],
        ).df()
        states = assign_states(feats, th)
        states.insert(0, "as_of_date", as_of)
        n = replace_partition(con, "segmentation.customer_states", states, as_of)
        thresholds = th.to_dict()
        replace_partition(
            con,
            "segmentation.rule_thresholds",
            pd.DataFrame(
                [{"as_of_date": as_of, "thresholds_json": json.dumps(thresholds, sort_keys=True)}]
            ),
            as_of,
        )
    counts = state_counts(states)
    rows = "\n".join(f"| {k} | {v:,} |" for k, v in counts["lifecycle_state"].items())
    context.log.info(f"thresholds for {as_of}: {thresholds}")
    return dg.MaterializeResult(
        metadata={
            "rows": n,
            "thresholds": dg.MetadataValue.json(thresholds),
            "lapsing_after_days": float(th.lapsing_days),
            "churned_after_days": float(th.churned_days),
            "state_counts": dg.MetadataValue.md("| state | customers |\n| --- | --- |\n" + rows),
            "aov_tiers": dg.MetadataValue.json(counts["aov_tier"]),
        }
    )
