"""Operational checks: source freshness on every raw table, score drift on propensity_scores."""

import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
from dagster_duckdb import DuckDBResource

from dagster_project.defs.partitions import DUCKDB_POOL, daily_partitions
from dagster_project.defs.propensity.assets import population_psi, reference_frame
from dagster_project.defs.resources import DataPaths, warehouse
from dagster_project.lib import drift
from dagster_project.lib import promotion as promo
from dagster_project.lib import propensity as pm
from dagster_project.lib.alerts import source_freshness
from dagster_project.lib.contract import TABLES
from dagster_project.lib.features import LABELS

FRESHNESS = "source_freshness"


def freshness_specs() -> list[dg.AssetCheckSpec]:
    # Blocking for required sources: without today's CRM drop the segments would be built on
    # yesterday's customers, so nothing downstream runs. Optional sources only warn/flag:
    # the pipeline is designed to run without them (CRM-only mode).
    return [
        dg.AssetCheckSpec(
            FRESHNESS, asset=dg.AssetKey(["raw", t.raw_name]), blocking=not t.optional,
            partitions_def=daily_partitions,
            description=(f"Files of {t.source}/{t.table} landed for the partition date ("
                         + ("optional: never blocks" if t.optional
                            else "required: blocks downstream when stale") + ")."),
        )
        for t in TABLES
    ]


UNKNOWN_CUSTOMERS_SQL = """
-- Orders landed within the customer master's tolerance, and how many of them reference a
-- customer that is in no customers file landed by the partition date.
select count(*) as orders,
       count(*) filter (where c.customer_id is null) as unknown
from raw.crm__orders o
left join (select distinct trim(customer_id) as customer_id from raw.crm__customers
           where _file_date <= $as_of) c on c.customer_id = trim(o.customer_id)
where o._file_date <= $as_of and o._file_date > $as_of - $days::integer
"""


def unknown_customer_references(con, as_of: dt.date, days: int) -> tuple[int, int] | None:
    """(orders landed in the last `days` days, those referencing unknown customers), or None
    when the raw tables are not there."""
    from duckdb import CatalogException

    try:
        orders, unknown = con.execute(UNKNOWN_CUSTOMERS_SQL,
                                      {"as_of": as_of, "days": days}).fetchone()
    except CatalogException:
        return None
    return int(orders), int(unknown)


@dg.multi_asset_check(specs=freshness_specs(), name="raw_source_freshness", pool=DUCKDB_POOL)
def raw_source_freshness(context: dg.AssetCheckExecutionContext, paths: DataPaths,
                         duckdb: DuckDBResource):
    """Per source table: a file dated D landed (pass), is late (warn) or stale (error), judged
    by how the table's exports land (lib/alerts.py: LANDING, the tolerance and its widening)."""
    as_of = dt.date.fromisoformat(context.partition_key)
    for t in TABLES:
        folder = paths.raw / t.source / t.table
        f = source_freshness(folder, t.raw_name, as_of, t.optional)
        if f.landing == "delta" and f.status == "fresh" and t.raw_name == "crm__customers" \
                and f.lag_days and f.lag_days > (f.max_lag_days or 0):
            # a customer master silent past its tolerance: judged by the orders that landed
            with warehouse(duckdb) as con:
                evidence = unknown_customer_references(con, as_of, f.max_lag_days or 0)
            f = source_freshness(folder, t.raw_name, as_of, t.optional,
                                 unknown_reference=evidence)
        if f.status in ("late", "stale"):
            context.log.warning(f"{t.raw_name}: {f.reason}")
        yield dg.AssetCheckResult(
            asset_key=dg.AssetKey(["raw", t.raw_name]),
            check_name=FRESHNESS,
            passed=f.status in ("fresh", "absent"),
            severity=(dg.AssetCheckSeverity.ERROR if f.status == "stale"
                      else dg.AssetCheckSeverity.WARN),
            description=f.reason,
            metadata={
                "status": f.status,
                "landing": f.landing,
                "latest_file": str(f.latest_file) if f.latest_file else "none",
                "lag_days": -1 if f.lag_days is None else f.lag_days,
                "files_landed": f.files,
                "max_lag_days": -1 if f.max_lag_days is None else f.max_lag_days,
                "configured_max_lag_days": (-1 if f.configured_max_lag_days is None
                                            else f.configured_max_lag_days),
                "usual_gap_days": -1.0 if f.usual_gap_days is None else f.usual_gap_days,
                "optional": f.optional,
            },
        )


reference_date = promo.reference_date  # the day drift is measured against


def compute_drift(con, as_of: dt.date, current: dict[str, np.ndarray] | None = None,
                  ) -> tuple[dt.date | None, dict[str, float | None]]:
    """(reference date, PSI per target) of the stored scores of `as_of` (`current`, read here
    when not given) against the stored scores of the reference day: how much the scores a user
    reads changed, the night's model refit included. PSI None where a target has no scores on
    either day (model absent)."""
    reference = reference_date(con, as_of)
    if reference is None:
        return None, {}
    current = stored_scores(con, as_of) if current is None else current
    out: dict[str, float | None] = {}
    for target, ref in stored_scores(con, reference).items():
        cur = current[target]
        out[target] = (drift.psi(ref, cur, edges=drift.PROBABILITY_EDGES)
                       if len(cur) and len(ref) else None)
    return reference, out


def stored_scores(con, day: dt.date) -> dict[str, np.ndarray]:
    """{target: the non-null stored scores of `day`}, one read of the scores table."""
    cols = [f"{t}_score" for t in LABELS]
    got = con.execute(f"select {', '.join(cols)} from segmentation.propensity_scores "
                      "where as_of_date = ?", [day]).fetchnumpy()
    out = {}
    for target, col in zip(LABELS, cols):
        v = got[col].compressed() if np.ma.isMaskedArray(got[col]) else got[col]  # NULLs out
        out[target] = np.asarray(v, dtype=np.float64)
    return out


def population_drift(con, as_of: dt.date, reference: dt.date, models: Path,
                     current: dict[str, np.ndarray] | None = None) -> dict[str, float | None]:
    """PSI per target of the population's shift alone: the reference day's customers, re-scored
    by the model of `as_of` from their features at the reference day, against the scores of
    `as_of`. One model on both sides, as PSI is meant to be read: a nightly refit moves the
    calibration's steps (on the default data the stored scores' largest PSI was 0.64-1.55 on
    each of six consecutive nights with nothing else changed), which says nothing about the
    customers. None where the model of `as_of` is absent or not on disk, or the reference day
    has no features. The propensity asset records the same measure for the model that scored
    (recorded_population_psi); this recomputes it for a warehouse written before it did."""
    results = {}
    for target in LABELS:
        directory = models / target / as_of.isoformat()
        result = (pm.load_model(directory) if (directory / pm.METADATA_FILE).exists()
                  else None)
        results[target] = result if result is not None and result.trained else None
    if not any(results.values()):
        return dict.fromkeys(LABELS)
    frame = reference_frame(con, reference)
    current = stored_scores(con, as_of) if current is None else current
    return {target: (population_psi(result, frame, current[target])
                     if result is not None else None)
            for target, result in results.items()}


def recorded_population_psi(con, as_of: dt.date) -> dict[str, float | None] | None:
    """{target: the population PSI the propensity asset recorded for the model that scored
    `as_of`}, or None when it recorded none (a warehouse written before it did, or no
    reference day then)."""
    cols = {r[0] for r in con.execute("describe segmentation.model_metrics").fetchall()}
    if "population_psi" not in cols:
        return None
    rows = con.execute("select target, population_psi, psi_reference_date "
                       "from segmentation.model_metrics where as_of_date = ?", [as_of]).fetchall()
    if not any(r[2] is not None for r in rows):
        return None
    return {t: (float(v) if v is not None else None) for t, v, _ in rows}


@dg.asset_check(asset="propensity_scores", name="score_drift", blocking=False, pool=DUCKDB_POOL,
                partitions_def=daily_partitions)
def score_drift(context: dg.AssetCheckExecutionContext, duckdb: DuckDBResource,
                paths: DataPaths):
    """PSI of each target's scores against the previous published (else scored) day: the
    population's shift under the night's model (the verdict), and the change of the stored
    scores, model refit included (shown, no verdict)."""
    # Non-blocking here: the publish step refuses a population PSI above drift.FAIL_PSI
    # itself, unless told to publish anyway (defs/publish/assets.py, PublishConfig), so a
    # person can look at a moved distribution (a new season, a campaign, a changed source)
    # and decide.
    as_of = dt.date.fromisoformat(context.partition_key)
    with warehouse(duckdb) as con:
        current = stored_scores(con, as_of)  # read once, used by both comparisons
        reference, stored = compute_drift(con, as_of, current)
        population = recorded_population_psi(con, as_of) if reference is not None else {}
        if population is None:
            population = population_drift(con, as_of, reference, paths.models, current)
    if reference is None:
        # nothing was compared, so not "Passed": a warning that says why (the first scored
        # night, or a backfill older than every other scored day)
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.WARN,
            description=f"not checked: no scored day before {as_of} to compare with (the "
                        "first night); drift is checked from the next night on",
            metadata={"reference_date": "none", "checked": False})
    # the verdict: population PSI; the stored scores' PSI only where no model could re-score
    judged = {t: population[t] if population.get(t) is not None else stored.get(t)
              for t in LABELS}
    fallback = sorted(t for t in LABELS
                      if population.get(t) is None and stored.get(t) is not None)
    known = [v for v in judged.values() if v is not None]
    worst = max(known, default=0.0)
    verdict = drift.verdict(worst) if known else "n/a"
    description = f"max PSI {worst:.4f} against {reference} ({verdict})"
    if fallback:
        description += (f"; stored scores compared for {', '.join(fallback)} "
                        "(no model of the partition to re-score with)")
    return dg.AssetCheckResult(
        passed=verdict in ("ok", "n/a"),
        severity=dg.AssetCheckSeverity.ERROR if verdict == "fail" else dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "reference_date": str(reference),
            "max_psi": float(worst),
            "psi_by_target": dg.MetadataValue.md(
                drift.psi_table_md(judged, str(reference), str(as_of), stored)),
        },
    )
