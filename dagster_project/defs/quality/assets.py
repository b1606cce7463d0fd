"""Write-audit-publish, step 1: the partition's candidate outputs, written to the audit schema.

Nothing here is published: the candidates are versioned per partition and run
(``audit.<name>__<yyyymmdd>__<run8>``) and checked by the blocking checks in checks.py; the
publish asset publishes exactly these versions, and only if every check passed for them.
"""

import datetime as dt

import dagster as dg
from dagster_dbt import get_asset_key_for_model
from dagster_duckdb import DuckDBResource

from dagster_project.defs.dbt.assets import dbt_models
from dagster_project.defs.partitions import (
    DUCKDB_POOL,
    daily_partitions,
    one_run_per_partition,
)
from dagster_project.defs.quality.candidates import (
    AUDIENCES_NAME,
    CANDIDATE_NAMES,
    KEYS,
    candidate_frames,
    md_table,
    warehouse,
)
from dagster_project.defs.resources import DataPaths
from dagster_project.lib import publish as pub


@dg.asset(
    key="audit_candidates",
    group_name="quality",
    deps=["decision_segments", "exclusion_audiences", "propensity_scores",
          get_asset_key_for_model([dbt_models], "customer_profile")],
    partitions_def=daily_partitions,
    backfill_policy=one_run_per_partition,
    pool=DUCKDB_POOL,
    kinds={"python", "duckdb"},
)
def audit_candidates(context: dg.AssetExecutionContext, duckdb: DuckDBResource,
                     paths: DataPaths):
    """Candidate segments, scores, exclusions and hashed audiences, versioned in the audit schema."""
    as_of = dt.date.fromisoformat(context.partition_key)
    with warehouse(duckdb) as con:
        frames, stats = candidate_frames(con, as_of, context.run.run_id, paths.raw)
        versions = {name: pub.write_candidate(con, name, frames[name], as_of, context.run.run_id,
                                              key=KEYS[name])
                    for name in CANDIDATE_NAMES}
        pub.record_notes(con, versions[AUDIENCES_NAME], {"stats": stats})

    prepared = frames[AUDIENCES_NAME]
    sizes = (prepared.groupby(["audience", "audience_kind"], sort=True)["customer_id"].nunique()
             .reset_index(name="members"))
    return dg.MaterializeResult(metadata={
        "versions": dg.MetadataValue.json({n: v.version for n, v in versions.items()}),
        "row_counts": dg.MetadataValue.json({n: v.row_count for n, v in versions.items()}),
        "content_hashes": dg.MetadataValue.json(
            {n: v.content_hash[:16] for n, v in versions.items()}),
        "audience_members": dg.MetadataValue.md(md_table(sizes)),
        "identifier_stats": dg.MetadataValue.json(stats),
        "run_id": context.run.run_id,
    })
