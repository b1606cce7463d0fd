"""Layer 3: decision segments with their playbook, persuasion drivers, exclusion audiences."""

import datetime as dt
import json

import dagster as dg
import pandas as pd
from dagster_dbt import get_asset_key_for_model
from dagster_duckdb import DuckDBResource

from dagster_project.defs.dbt.assets import dbt_models
from dagster_project.defs.metadata import md_table
from dagster_project.defs.partitions import (
    DUCKDB_POOL,
    daily_partitions,
    one_run_per_partition,
)
from dagster_project.defs.resources import warehouse
from dagster_project.lib import drivers as drv
from dagster_project.lib import exclusions as exc
from dagster_project.lib import measurement as msr
from dagster_project.lib import segments as seg
from dagster_project.lib.currency import reporting_currency
from dagster_project.lib.features import FEATURE_COLUMNS, LABELS
from dagster_project.lib.sources import sources_present
from dagster_project.lib.warehouse import replace_partition

SCORE_COLUMNS = [f"{t}_score" for t in LABELS]
# the models' own ranking (no calibration ties): what segment and exclusion cuts rank by
LOG_ODDS_COLUMNS = [f"{t}_log_odds" for t in LABELS]

FRAME_SQL = f"""
-- one row per customer at the partition date: states, scores, features, consent
select
    s.customer_id, s.lifecycle_state, s.aov_tier, s.category_family,
    coalesce(p.marketing_consent, false) as marketing_consent,
    {", ".join(f"sc.{c}" for c in SCORE_COLUMNS + LOG_ODDS_COLUMNS)},
    sc.model_versions,
    {", ".join(f"f.{c}" for c in FEATURE_COLUMNS)}
from segmentation.customer_states s
join marts.customer_features f on f.as_of_date = s.as_of_date and f.customer_id = s.customer_id
left join segmentation.propensity_scores sc
    on sc.as_of_date = s.as_of_date and sc.customer_id = s.customer_id
left join marts.customer_profile p on p.as_of_date = s.as_of_date and p.customer_id = s.customer_id
where s.as_of_date = ?
order by s.customer_id
"""


class SegmentsConfig(dg.Config):
    """Overrides of config/segments.yaml for a run (None = the file's value)."""

    min_segment_size: int | None = None
    # complete windows needed in treated and in holdout for the organic inevitables' evidence
    # (exclusions.organic_inevitable.holdout_min_per_group)
    holdout_min_per_group: int | None = None


def organic_evidence(con, as_of: dt.date, cfg: dict) -> dict | None:
    """The organic_inevitable audience's holdout evidence at ``as_of`` (only data visible by
    then; None without an activation log): see measurement.organic_inevitable_evidence."""
    return msr.organic_inevitable_evidence(
        con, as_of, min_orders_365d=cfg["min_orders_365d"],
        min_unpaid_share=cfg["min_unpaid_share"],
        window_days=int(cfg.get("holdout_window_days", 30)),
        min_per_group=int(cfg.get("holdout_min_per_group", 50)))


@dg.multi_asset(
    specs=[
        dg.AssetSpec("decision_segments", group_name="segments", kinds={"python", "duckdb"},
                     deps=["propensity_scores", "customer_states"],
                     description="One primary decision segment per customer, with its playbook."),
        dg.AssetSpec("persuasion_drivers", group_name="segments", kinds={"scikitlearn"},
                     deps=["propensity_scores"],
                     description="Each customer's persuasion driver, found by clustering."),
        dg.AssetSpec("exclusion_audiences", group_name="segments", kinds={"python", "duckdb"},
                     deps=["propensity_scores",
                           # the activation log and outcomes of the organic inevitables'
                           # holdout evidence (plus the published audience history)
                           get_asset_key_for_model([dbt_models], "stg_marketing__activation_log"),
                           get_asset_key_for_model([dbt_models], "int_orders__economics")],
                     description="Do-not-target audiences with their evidence columns."),
    ],
    partitions_def=daily_partitions,
    backfill_policy=one_run_per_partition,
    pool=DUCKDB_POOL,
    name="segments",
)
def segments(context: dg.AssetExecutionContext, config: SegmentsConfig, duckdb: DuckDBResource):
    """Decision segments, persuasion drivers and exclusion audiences for the partition."""
    as_of = dt.date.fromisoformat(context.partition_key)
    run_config = config
    config = seg.load_config()
    if run_config.min_segment_size is not None:  # an explicit size: taken as it is
        config["min_segment_size"] = run_config.min_segment_size
        config.pop("min_segment_base_share", None)
    organic_cfg = config["exclusions"]["organic_inevitable"]
    if run_config.holdout_min_per_group is not None:
        organic_cfg["holdout_min_per_group"] = run_config.holdout_min_per_group
    playbook = seg.load_playbook()
    with warehouse(duckdb) as con:
        frame = con.execute(FRAME_SQL, [as_of]).df()
        present = sources_present(con, as_of)
        # amounts in the playbook's texts are in the partition's reporting currency
        config["currency"], _ = reporting_currency(con, as_of)
        if frame.empty:
            raise RuntimeError(f"no customers with states and features for {as_of}")
        segs = seg.assign_segments(frame, config, present)
        drivers = drv.assign_drivers(frame, config, present)
        evidence = organic_evidence(con, as_of, organic_cfg)
        excl = exc.build_exclusions(frame, config, holdout_evidence=evidence)
        activation = exc.activation_audiences(
            segs.table, excl, frame[["customer_id", "marketing_consent"]])
        table = seg.attach_playbook(segs.table, playbook)
        table = table.merge(drivers.table, on="customer_id", how="left")
        table = table.merge(
            activation.drop(columns=["primary_segment"]), on="customer_id", how="left")
        table = table.merge(
            frame[["customer_id", "lifecycle_state", "aov_tier", "category_family",
                   "model_versions", *SCORE_COLUMNS]], on="customer_id", how="left")
        table.insert(0, "as_of_date", as_of)
        table["segments_config_version"] = segs.config_version
        n = replace_partition(con, "segmentation.decision_segments", table, as_of)

        status = segs.status_table()
        status.insert(0, "as_of_date", as_of)
        replace_partition(con, "segmentation.segment_status", status, as_of)

        ex_table = excl.table.copy()
        ex_table.insert(0, "as_of_date", as_of)
        replace_partition(con, "segmentation.exclusion_audiences", ex_table, as_of)

        matrix = drv.segment_driver_matrix(table[["customer_id", "primary_segment"]],
                                           drivers.table)
        long = matrix.reset_index().melt(id_vars=matrix.index.name or "index",
                                         var_name="persuasion_driver", value_name="customers")
        long = long.rename(columns={matrix.index.name or "index": "segment"})
        long.insert(0, "as_of_date", as_of)
        replace_partition(con, "segmentation.segment_driver_matrix", long, as_of)

    sizes = table["primary_segment"].value_counts().sort_index()
    size_md = md_table(pd.DataFrame({
        "segment": sizes.index, "customers": sizes.to_numpy(),
        "share": (sizes.to_numpy() / len(table)).round(3),
        "activatable": [int(table.loc[table.primary_segment == s, "activation_eligible"].sum())
                        for s in sizes.index],
    }))
    for name, reason in segs.merged.items():
        context.log.warning(f"segment {name} merged into {config['default_segment']}: {reason}")
    for name, reason in segs.impossible.items():
        context.log.warning(f"segment {name} impossible with this data: {reason}")
    for name, reason in excl.withheld.items():
        context.log.warning(f"exclusion audience {name} {reason}")
    context.log.info(f"organic_inevitable: {excl.notes.get('organic_inevitable', '')}")
    yield dg.MaterializeResult(asset_key="decision_segments", metadata={
        "rows": n,
        "segment_sizes": dg.MetadataValue.md(size_md),
        "thresholds": dg.MetadataValue.json(json.loads(json.dumps(segs.thresholds, default=str))),
        "merged": dg.MetadataValue.json(segs.merged),
        "impossible": dg.MetadataValue.json(segs.impossible),
        "sources_present": dg.MetadataValue.json(present),
        "playbook_version": str(playbook.get("version")),
        "activation_eligible": int(table["activation_eligible"].sum()),
        "without_consent": int((~table["marketing_consent"].astype(bool)).sum()),
    })
    yield dg.MaterializeResult(asset_key="persuasion_drivers", metadata={
        "k": drivers.metrics.get("k"),
        "silhouette": drivers.metrics.get("silhouette"),
        "silhouettes_by_k": dg.MetadataValue.json(
            json.loads(json.dumps(drivers.metrics.get("silhouettes", {}), default=str))),
        "driver_sizes": dg.MetadataValue.json(
            json.loads(json.dumps(drivers.metrics.get("driver_sizes", {}), default=str))),
        "all_unknown_reason": drivers.reason or "",
        "segment_x_driver": dg.MetadataValue.md(md_table(matrix.reset_index())),
    })
    yield dg.MaterializeResult(asset_key="exclusion_audiences", metadata={
        "sizes": dg.MetadataValue.json(json.loads(json.dumps(excl.sizes, default=str))),
        "thresholds": dg.MetadataValue.json(json.loads(json.dumps(excl.thresholds, default=str))),
        "impossible": dg.MetadataValue.json(excl.impossible),
        "notes": dg.MetadataValue.json(excl.notes),
        "withheld": dg.MetadataValue.json(excl.withheld),
        "organic_inevitable_holdout_evidence": dg.MetadataValue.json(json.loads(json.dumps(
            evidence if evidence is not None else {"status": msr.NO_LOG}, default=str))),
    })
