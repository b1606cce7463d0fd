"""Layer 2: one LightGBM model per target, trained on earlier cutoffs, scoring the partition."""


import dataclasses
import datetime as dt
import json

import dagster as dg
import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource

from dagster_project.defs.partitions import DUCKDB_POOL, daily_partitions, one_run_per_partition
from dagster_project.defs.resources import DataPaths, warehouse
from dagster_project.lib import btyd, drift
from dagster_project.lib import promotion as promo
from dagster_project.lib import propensity as pm
from dagster_project.lib.features import FEATURE_COLUMNS, LABELS, MODEL_FEATURE_COLUMNS
from dagster_project.lib.warehouse import replace_partition

TARGETS = tuple(LABELS)
def model_specs() -> list[dg.AssetSpec]:
    return [
    dg.AssetSpec(
        key=dg.AssetKey(["propensity_model", t]),
        description=f"LightGBM model: {LABELS[t]}",
        group_name="propensity",
        kinds={"lightgbm", "python"},
        deps=["customer_states"],
    )
    for t in TARGETS
    ]


def scores_spec() -> dg.AssetSpec:
    return dg.AssetSpec(
    key="propensity_scores",
    description=(
        "Calibrated scores of every model, each model's log-odds (its ranking without the "
        "calibration's ties) and each score's top 3 drivers per customer."
    ),
    group_name="propensity",
    kinds={"lightgbm", "duckdb"},
    deps=[s.key for s in model_specs()],
    )


class PropensityConfig(dg.Config):
    """Hyperparameters, seed and training-data policy (see lib/propensity.py)."""

    seed: int = 20240601
    # Training cutoffs (training_cutoffs): the latest labelled cutoff validates; the training
    # cutoffs go back from it every `train_cutoff_every_weeks` weeks, across at most
    # `train_span_weeks` weeks and at most `n_train_cutoffs` cutoffs in all, bounded by the
    # labelled cutoffs the warehouse holds. A year, so the training rows see every season
    # and customers at every stage of their history, not only the last weeks' (measured by
    # scripts/model_vs_btyd.py). Where the spacing leaves fewer than `min_train_cutoffs`, it
    # is halved until it does not (down to every week): a short feature grid or history
    # gets the weekly cutoffs it has, as before.
    n_train_cutoffs: int = 14
    train_span_weeks: int = 52
    train_cutoff_every_weeks: int = 4
    min_train_cutoffs: int = 6
    # Sampling policy: above this many labelled customers per target, a deterministic sample
    # by id hash (md5) is used for training and validation, so training time stays bounded as
    # the customer base grows. Scoring always covers every customer.
    max_train_customers: int = 50_000
    # ... and at most this many training rows in all (a seeded sample per cutoff, each
    # keeping its share: lib/propensity.py, Sampling): more cutoffs, same bound on the rows
    # (the former 6 cutoffs x 50,000 customers).
    max_train_rows: int = 300_000
    # Once validated, refit on all customers with the early-stopped number of trees, and
    # score with the refit (lib/propensity.py, Refit); metrics stay the validated model's.
    refit_all: bool = True
    # Drivers (TreeSHAP, pred_contrib) cost about 1-2 ms per customer and target on one core,
    # far more than training at scale: above this many customers, each score's drivers are
    # computed for its highest-scored customers only (lib/propensity.explain_mask); the rest
    # have NULL drivers and the asset metadata says how many were explained.
    max_explained_customers: int = 25_000
    num_leaves: int = 15
    max_bin: int = 63  # histogram bins per feature (LightGBM default 255)
    learning_rate: float = 0.05
    n_estimators: int = 600
    early_stopping_rounds: int = 50
    min_child_samples: int = 100
    min_positives: int = 50  # lib/propensity.py, Minimum data: why 50
    min_negatives: int = 50
    # Fixed thread count: with deterministic=True, the same data, seed and thread count give
    # the same model file. 1, because LightGBM's threads spin: with 2 threads on a 2-core
    # machine that is busy with anything else, one step took 41 s instead of 3.5 s.
    num_threads: int = 1
    # Prediction threads for the drivers: rows are independent, so the values do not depend on
    # the thread count and there is no per-iteration barrier to spin on.
    predict_threads: int = 2


def train_config(cfg: PropensityConfig) -> pm.TrainConfig:
    return pm.TrainConfig(
        lgbm=pm.LGBMParams(
            num_leaves=cfg.num_leaves,
            max_bin=cfg.max_bin,
            learning_rate=cfg.learning_rate,
            n_estimators=cfg.n_estimators,
            min_child_samples=cfg.min_child_samples,
        ),
        early_stopping_rounds=cfg.early_stopping_rounds,
        seed=cfg.seed,
        num_threads=cfg.num_threads,
        min_positives=cfg.min_positives,
        min_negatives=cfg.min_negatives,
        max_train_rows=cfg.max_train_rows,
        refit_all=cfg.refit_all,
    )


FEATURE_SQL = ", ".join(f"f.{c}" for c in FEATURE_COLUMNS)

LABELLED_CUTOFFS_SQL = """
select distinct cutoff_date from marts.customer_labels
where as_of_date = $as_of and {target} is not null
order by cutoff_date desc
"""

# The training frame of one target on a given grid of cutoffs ($cutoffs, training_cutoffs):
# features at each cutoff joined to labels computed from the partition's data; customers
# sampled deterministically by id hash when there are more than max_customers.
GRID_TRAINING_SQL = f"""
with labelled as (
    select cutoff_date, customer_id, {{target}} as label
    from marts.customer_labels
    where as_of_date = $as_of and {{target}} is not null
      and cutoff_date in (select unnest($cutoffs::date[]))
), population as (
    select count(distinct customer_id) as n from labelled
)
select l.cutoff_date, l.customer_id, l.label as {{target}}, {FEATURE_SQL}
from labelled l
join marts.customer_features f
  on f.as_of_date = l.cutoff_date and f.customer_id = l.customer_id
where (select n from population) <= $max_customers
   or md5_number(l.customer_id) % (select n from population) < $max_customers
order by l.cutoff_date, l.customer_id
"""


def training_cutoffs(labelled: list[dt.date], config: PropensityConfig) -> list[dt.date]:
    """The grid (PropensityConfig): from the latest labelled cutoff back every
    ``train_cutoff_every_weeks`` weeks within ``train_span_weeks``, at most
    ``n_train_cutoffs``; the spacing halved while that leaves fewer than
    ``min_train_cutoffs`` of the labelled ones. Latest first."""
    labelled = sorted(set(labelled), reverse=True)
    if not labelled:
        return []
    latest = labelled[0]
    weeks = sorted((latest - c).days // 7 for c in labelled
                   if (latest - c).days % 7 == 0 and (latest - c).days <= 7 * config.train_span_weeks)
    every = max(1, config.train_cutoff_every_weeks)
    while True:
        # from the latest back, each next cutoff at least `every` weeks after the last taken:
        # the dbt grid is weekly for 18 weeks and sparse beyond (macros/as_of.sql)
        grid, last = [], None
        for w in weeks:
            if last is None or w - last >= every:
                grid.append(latest - dt.timedelta(weeks=w))
                last = w
        grid = grid[:config.n_train_cutoffs]
        if every == 1 or len(grid) >= min(config.min_train_cutoffs, config.n_train_cutoffs):
            return grid
        every = max(1, every // 2)


def labelled_cutoffs(con, target: str, as_of: dt.date) -> list[dt.date]:
    """``target``'s cutoffs with a complete label window at ``as_of``, latest first."""
    return [r[0] for r in con.execute(LABELLED_CUTOFFS_SQL.replace("{target}", target),
                                      {"as_of": as_of}).fetchall()]


def with_bgnbd_features(con, frame: pd.DataFrame, date_col: str = "cutoff_date",
                        cache: dict | None = None) -> pd.DataFrame:
    """``frame`` with the BG/NBD features (features.BGNBD_FEATURES), BG/NBD fitted at each of
    its dates on every customer's features there (btyd.params_at). ``cache`` (date ->
    params) shares the fits between the targets of one night."""
    cache = {} if cache is None else cache
    dates = {pd.Timestamp(d).date() for d in frame[date_col].unique()}
    todo = sorted(dates - cache.keys())
    if todo:
        fitted = btyd.params_at(con, todo)
        cache.update({d: fitted.get(d) for d in todo})
    return btyd.add_features(frame, {d: cache[d] for d in dates if cache[d] is not None},
                             date_col)


def training_frame_at(con, target: str, as_of: dt.date, cutoffs: list[dt.date],
                      max_customers: int, cache: dict | None = None) -> pd.DataFrame:
    """``target``'s training frame on the given cutoffs (GRID_TRAINING_SQL), with the BG/NBD
    features of each cutoff."""
    frame = con.execute(GRID_TRAINING_SQL.replace("{target}", target),
                        {"as_of": as_of, "cutoffs": cutoffs, "max_customers": max_customers}).df()
    return with_bgnbd_features(con, frame, cache=cache)


def recent_training_frame(con, target: str, as_of: dt.date, n_cutoffs: int,
                          max_customers: int = 2**62) -> pd.DataFrame:
    """``target``'s training frame on its ``n_cutoffs`` most recent labelled cutoffs (the
    weekly policy before the year-long grid; scripts and tests that measure on it)."""
    return training_frame_at(con, target, as_of, labelled_cutoffs(con, target, as_of)[:n_cutoffs],
                             max_customers)


def read_training_frame(con, target: str, as_of: dt.date,
                        config: PropensityConfig, cache: dict | None = None) -> pd.DataFrame:
    """``target``'s training frame at ``as_of`` as the asset reads it: its labelled cutoffs,
    the grid of ``training_cutoffs``, the customers sampled by id hash."""
    cutoffs = training_cutoffs(labelled_cutoffs(con, target, as_of), config)
    return training_frame_at(con, target, as_of, cutoffs, config.max_train_customers, cache)


# Customers of the reference day re-scored at most for the population drift (a deterministic
# sample by id hash above it): ten bins need far fewer, and it bounds the cost at 1,000,000.
MAX_RESCORED = 200_000


def reference_frame(con, reference: dt.date, cache: dict | None = None) -> pd.DataFrame:
    """The reference day's customers (at most about MAX_RESCORED, by id hash) with their
    features there and the BG/NBD features fitted there, as that day's scoring had them."""
    n = con.execute("select count(*) from marts.customer_features where as_of_date = ?",
                    [reference]).fetchone()[0]
    every = max(1, -(-n // MAX_RESCORED))  # ceil: keep about MAX_RESCORED customers
    frame = con.execute(
        f"select f.customer_id, {FEATURE_SQL} from marts.customer_features f "
        "where f.as_of_date = ? and hash(f.customer_id) % ? = 0 order by f.customer_id",
        [reference, every]).df()
    return with_bgnbd_features(con, frame.assign(cutoff_date=reference), cache=cache)


def population_psi(result: pm.TrainResult, ref: pd.DataFrame,
                   current: np.ndarray) -> float | None:
    """PSI of the population's shift under one model (lib/drift.py): the reference day's
    customers ``ref`` re-scored by ``result`` against its scores ``current`` of the partition.
    None without customers on either side."""
    if ref.empty or not len(current):
        return None
    rescored = pm.score(result, ref)["score"].to_numpy()
    return drift.psi(rescored, current, edges=drift.PROBABILITY_EDGES)


def _fmt(x: float | None) -> str:
    return "" if x is None or x != x else f"{x:.3f}"


def metrics_row_md(r: dict, versus: str = "") -> str:
    beats = {None: "", True: "yes", False: "**NO**"}[r["beats_baseline"]]
    return (
        f"| {r['target']} | {r['status']} | {_fmt(r['model_roc_auc'])} | "
        f"{_fmt(r['baseline_roc_auc'])} | {_fmt(r['model_pr_auc'])} | "
        f"{_fmt(r['model_brier'])} | {_fmt(r['model_top_decile_lift'])} | {beats} | {versus} | "
        f"{_fmt(r.get('btyd_roc_auc'))} | {r.get('btyd_verdict') or ''} | "
        f"{_scores_with(r)} |"
    )


def _scores_with(r: dict) -> str:
    if r.get("promotion") == promo.CHAMPION:
        return f"champion {r['scoring_model_version'].split('/')[1]}"
    return r.get("promotion") or ""



@dg.multi_asset(
    specs=[*model_specs(), scores_spec()],
    partitions_def=daily_partitions,
    backfill_policy=one_run_per_partition,
    pool=DUCKDB_POOL,
    name="propensity_models",
)
def propensity_models(
    context: dg.AssetExecutionContext,
    config: PropensityConfig,
    duckdb: DuckDBResource,
    paths: DataPaths,
):
    """Train, calibrate, evaluate against a naive baseline, save and score every target."""
    as_of = dt.date.fromisoformat(context.partition_key)
    tc = train_config(config)
    with warehouse(duckdb) as con:
        scoring = con.execute(
            f"select f.customer_id, {FEATURE_SQL} from marts.customer_features f "
            "where f.as_of_date = ? order by f.customer_id",
            [as_of],
        ).df()
        bgnbd_params: dict = {}  # date -> BG/NBD, shared by the targets
        scoring = with_bgnbd_features(con, scoring.assign(cutoff_date=as_of),
                                      cache=bgnbd_params)
        scores = pd.DataFrame({"as_of_date": as_of, "customer_id": scoring["customer_id"]})
        metric_rows = []
        explained: dict[str, int] = {}
        comparisons: dict[str, str] = {}
        decisions: dict[str, str] = {}
        reference = promo.reference_date(con, as_of)
        ref_frame: list[pd.DataFrame] = []  # read once, when the first model needs it

        def psi_of(model: pm.TrainResult, current: np.ndarray) -> float | None:
            if reference is None:
                return None
            if not ref_frame:
                ref_frame.append(reference_frame(con, reference, bgnbd_params))
            return population_psi(model, ref_frame[0], current)

        for target in TARGETS:
            frame = read_training_frame(con, target, as_of, config, bgnbd_params)
            result = pm.train_target(frame, target, MODEL_FEATURE_COLUMNS, tc)
            model_dir = paths.models / target / as_of.isoformat()
            pm.save_model(result, model_dir)
            version = (
                f"{target}/{as_of.isoformat()}/{(result.data_fingerprint or 'none')[:12]}"
            )
            # Champion and challenger (lib/promotion.py): tonight's model scores unless it is
            # worse than its baseline beyond noise; the population drift of the scores that
            # stand is recorded for the publish gate.
            refusal = promo.challenger_refusal(result)
            model, scoring_version = (result, version) if refusal is None else (None, None)
            decision = promo.Decision(promo.PROMOTED)
            if refusal is not None:
                champion, model = promo.load_champion(con, target, as_of, paths.models)
                if model is not None:
                    decision = dataclasses.replace(champion, reason=refusal)
                    scoring_version = champion.champion_version
                else:
                    decision = promo.Decision(promo.ABSENT, reason=refusal)
            s = pm.score(model, scoring) if model is not None else None
            psi = psi_of(model, s["score"].to_numpy()) if model is not None else None
            decisions[target] = promo.describe(decision)
            row = {
                "as_of_date": as_of,
                "target": target,
                "status": "absent" if result.absent_reason else "trained",
                "absent_reason": result.absent_reason,
                "model_version": version,
                "promotion": decision.outcome,
                "promotion_reason": decision.reason,
                "scoring_model_version": scoring_version,
                "population_psi": psi,
                "psi_reference_date": reference if psi is not None else None,
                "beats_baseline": result.beats_baseline,
                "valid_cutoff": result.valid_cutoff,
                "train_cutoffs": json.dumps(list(result.train_cutoffs)),
                "best_iteration": result.best_iteration,
                "n_rows": json.dumps(result.n_rows, sort_keys=True),
                "baseline": json.dumps(result.baseline, sort_keys=True, default=str),
            }
            for prefix, metrics in (("model", result.metrics), ("baseline", result.baseline_metrics)):
                for k in ("roc_auc", "pr_auc", "brier", "top_decile_lift", "n_pos", "n_neg"):
                    row[f"{prefix}_{k}"] = (metrics or {}).get(k)
            # the BG/NBD reference (purchase and churn targets; NULL for the others)
            btyd = result.btyd or {}
            for k in ("roc_auc", "pr_auc", "brier", "top_decile_lift"):
                row[f"btyd_{k}"] = (btyd.get("metrics") or {}).get(k)
            row["btyd_verdict"] = (btyd.get("comparison") or {}).get("verdict")
            metric_rows.append(row)
            meta: dict = {"status": row["status"], "model_version": version,
                          "model_dir": dg.MetadataValue.path(str(model_dir)),
                          "promotion": decisions[target],
                          "scoring_model_version": scoring_version or "none"}
            if psi is not None:
                meta["population_psi"] = psi
            if result.absent_reason:
                context.log.warning(f"{target}: not trained — {result.absent_reason}")
                meta["absent_reason"] = result.absent_reason
            if decision.outcome != promo.PROMOTED:
                context.log.warning(f"{target}: {decisions[target]}")
            if model is None:
                # Absent scores are NULL, never made up; the columns exist so every
                # partition has the same schema.
                empty_text = pd.Series([None] * len(scores), dtype="string")
                scores[f"{target}_score"] = np.nan
                scores[f"{target}_log_odds"] = np.nan
                for i in (1, 2, 3):
                    scores[f"{target}_driver_{i}"] = empty_text
                    scores[f"{target}_driver_{i}_contribution"] = np.nan
                scores[f"{target}_drivers_text"] = empty_text
            if model is not None:
                explain = pm.explain_mask(s["raw_score"].to_numpy(),
                                          config.max_explained_customers)
                d = pm.top_drivers(model, scoring.loc[explain], k=3,
                                   num_threads=config.predict_threads)
                d.index = scoring.index[explain]
                scores[f"{target}_score"] = s["score"].to_numpy()
                # the model's own ranking, without the calibration's ties (segment cuts)
                scores[f"{target}_log_odds"] = s["raw_score"].to_numpy()
                for i in (1, 2, 3):
                    scores[f"{target}_driver_{i}"] = d[f"driver_{i}"].astype("string").reindex(
                        scores.index).to_numpy()
                    scores[f"{target}_driver_{i}_contribution"] = d[
                        f"driver_{i}_contribution"].reindex(scores.index).to_numpy()
                text = (
                    d["driver_1_text"].fillna("") + "; " + d["driver_2_text"].fillna("")
                    + "; " + d["driver_3_text"].fillna("")
                ).str.strip("; ")
                scores[f"{target}_drivers_text"] = text.astype("string").reindex(
                    scores.index).to_numpy()
                explained[target] = int(explain.sum())
            if result.trained:
                versus = pm.describe_comparison(result.baseline_comparison)
                comparisons[target] = versus
                if not result.beats_baseline:
                    context.log.warning(
                        f"{target}: model AUC {result.metrics['roc_auc']:.3f} does NOT beat "
                        f"baseline AUC {result.baseline_metrics['roc_auc']:.3f} "
                        f"(difference {versus})"
                    )
                elif result.baseline_comparison["verdict"] != "better":
                    context.log.warning(
                        f"{target}: model AUC {result.metrics['roc_auc']:.3f} vs baseline "
                        f"{result.baseline_metrics['roc_auc']:.3f}: difference {versus} "
                        "(within noise on this validation half)"
                    )
                if btyd.get("comparison"):
                    vs_btyd = pm.describe_comparison(btyd["comparison"])
                    meta["btyd_roc_auc"] = round(btyd["metrics"]["roc_auc"], 3)
                    meta["auc_vs_btyd"] = vs_btyd
                    if btyd["comparison"]["verdict"] != "better":
                        context.log.warning(
                            f"{target}: model AUC {result.metrics['roc_auc']:.3f} vs BG/NBD "
                            f"{btyd['metrics']['roc_auc']:.3f}: difference {vs_btyd}")
                elif btyd.get("absent_reason"):
                    meta["btyd"] = f"not fitted: {btyd['absent_reason']}"
                # rounded where a person reads them (the full values: metadata.json and
                # segmentation.model_metrics)
                meta.update({
                    "roc_auc": round(result.metrics["roc_auc"], 3),
                    "pr_auc": round(result.metrics["pr_auc"], 3),
                    "brier": round(result.metrics["brier"], 4),
                    "top_decile_lift": round(result.metrics["top_decile_lift"], 2),
                    "baseline_roc_auc": round(result.baseline_metrics["roc_auc"], 3),
                    "baseline_pr_auc": round(result.baseline_metrics["pr_auc"], 3),
                    "beats_baseline": bool(result.beats_baseline),
                    "auc_vs_baseline": versus,
                    "n_pos": int(result.metrics["n_pos"]),
                    "n_neg": int(result.metrics["n_neg"]),
                    "valid_cutoff": str(result.valid_cutoff),
                    "train_cutoffs": dg.MetadataValue.json(list(result.train_cutoffs)),
                    "best_iteration": int(result.best_iteration or 0),
                })
            yield dg.MaterializeResult(asset_key=dg.AssetKey(["propensity_model", target]),
                                       metadata=meta)
        metrics = pd.DataFrame(metric_rows)
        replace_partition(con, "segmentation.model_metrics", metrics, as_of)
        # the model that scored each target (a champion's, when tonight's was not promoted)
        model_versions = {r["target"]: r["scoring_model_version"] or r["model_version"]
                          for r in metric_rows}
        scores["model_versions"] = json.dumps(model_versions, sort_keys=True)
        n = replace_partition(con, "segmentation.propensity_scores", scores, as_of)
    table = "\n".join(metrics_row_md(r, comparisons.get(r["target"], "")) for r in metric_rows)
    yield dg.MaterializeResult(
        asset_key="propensity_scores",
        metadata={
            "rows": n,
            "targets_trained": sum(r["status"] == "trained" for r in metric_rows),
            "promotion": dg.MetadataValue.json(decisions),
            "customers_with_drivers": dg.MetadataValue.json(explained),
            "drivers_policy": (
                f"every customer when at most {config.max_explained_customers:,} are scored; "
                "above that, each score's highest-scored "
                f"{config.max_explained_customers:,} (the rest have NULL drivers)"),
            "targets_absent": dg.MetadataValue.json(
                {r["target"]: r["absent_reason"] for r in metric_rows if r["absent_reason"]}
            ),
            "metrics_vs_baseline": dg.MetadataValue.md(
                "| target | status | ROC AUC | baseline AUC | PR AUC | Brier | lift@10% "
                "| beats baseline | AUC difference [95% CI] | BG/NBD AUC | vs BG/NBD "
                "| scores with |\n"
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
                + table
            ),
        },
    )
