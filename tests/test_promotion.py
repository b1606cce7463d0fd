"""Champion and challenger (lib/promotion.py): a model worse than its naive baseline beyond
noise does not score; the last promoted model of its target does, or the target is absent
with the reason. A partition whose population drift fails is not published unless a person
says so (PublishConfig.allow_score_drift).

The fault as it was found: tonight's repeat_90d lost to its baseline (0.818 vs 0.869) and was
published and used by the segments. Injected here by a training that reports a loss for the
chosen targets, on a copy of the nightly warehouse whose next partition NEXT has the same
customers and features as END (a night on which nothing changed)."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from dagster_project.defs.propensity.assets import model_specs
from dagster_project.lib import drift
from dagster_project.lib import promotion as promo
from dagster_project.lib import propensity as pm
from dagster_project.lib.features import LABELS

from .helpers import END, query

NEXT = END + dt.timedelta(days=7)
# the propensity_models multi-asset: one model asset per target and the scores
PROPENSITY = [*(s.key for s in model_specs()), dg.AssetKey("propensity_scores")]


@pytest.fixture
def next_night(nightly_run, tmp_path, monkeypatch):
    """A copy of the nightly's warehouse and models with NEXT's features and labels copied
    from END's, and a function materializing a selection for NEXT on it."""
    root = tmp_path / "data"
    root.mkdir()
    db = root / "warehouse.duckdb"
    shutil.copy2(nightly_run["db"], db)
    shutil.copytree(nightly_run["root"] / "models", root / "models")
    shutil.copytree(nightly_run["root"] / "exports", root / "exports")
    (root / "raw").symlink_to(nightly_run["root"] / "raw", target_is_directory=True)
    con = duckdb.connect(str(db))
    for table in ("marts.customer_features", "marts.customer_labels"):
        con.execute(f"create temp table t as select * from {table} where as_of_date = ?", [END])
        con.execute("update t set as_of_date = ?", [NEXT])
        con.execute(f"insert into {table} by name select * from t")
        con.execute("drop table t")
    con.close()
    monkeypatch.setenv("DS_DATA_DIR", str(root))
    monkeypatch.setenv("DS_DUCKDB_PATH", str(db))
    from dagster_project.definitions import defs

    definitions = defs()

    def run(keys: list[str], run_config: dict | None = None):
        job = dg.define_asset_job("promotion_test", selection=dg.AssetSelection.assets(*keys))
        merged = dg.Definitions.merge(definitions, dg.Definitions(jobs=[job]))
        return merged.resolve_job_def("promotion_test").execute_in_process(
            partition_key=NEXT.isoformat(), instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False, run_config=run_config)

    return root, db, run


def _lose_baseline(monkeypatch, targets):
    """Tonight's training of `targets` reports a loss to the baseline beyond noise (the
    fault: 0.818 against 0.869)."""
    real = pm.train_target

    def train(frame, target, *args, **kw):
        result = real(frame, target, *args, **kw)
        if target in targets and result.trained:
            result.beats_baseline = False
            result.baseline_metrics = {**result.baseline_metrics,
                                       "roc_auc": result.metrics["roc_auc"] + 0.05}
            result.baseline_comparison = {"auc_difference": -0.05, "ci_low": -0.08,
                                          "ci_high": -0.02, "n_boot": 200, "verdict": "worse"}
        return result

    monkeypatch.setattr(pm, "train_target", train)


def _metrics(db, day):
    return query(db, "select * from segmentation.model_metrics where as_of_date = ? "
                 "order by target", [day]).set_index("target")


def test_a_model_that_loses_to_its_baseline_does_not_score_its_champion_does(
        next_night, monkeypatch):
    root, db, run = next_night
    before = _metrics(db, END)
    promoted = [t for t in LABELS if before.loc[t, "promotion"] == "promoted"]
    assert promoted, "the nightly promoted no model: nothing to be a champion"
    champion_t = promoted[0]
    # a second loser whose END model was not promoted: no champion, so absent
    no_champion_t = next(t for t in LABELS if t != champion_t)
    con = duckdb.connect(str(db))
    con.execute("update segmentation.model_metrics set promotion = 'absent' "
                "where as_of_date = ? and target = ?", [END, no_champion_t])
    con.close()
    _lose_baseline(monkeypatch, {champion_t, no_champion_t})

    result = run(PROPENSITY)
    assert result.success
    m = _metrics(db, NEXT)
    assert m.loc[champion_t, "promotion"] == "champion"
    assert m.loc[champion_t, "beats_baseline"] == False  # noqa: E712 (numpy bool)
    assert "worse than its baseline" in m.loc[champion_t, "promotion_reason"]
    assert m.loc[champion_t, "scoring_model_version"] == before.loc[champion_t, "model_version"]
    assert m.loc[no_champion_t, "promotion"] == "absent"
    assert pd_isna(m.loc[no_champion_t, "scoring_model_version"])
    for t in set(LABELS) - {champion_t, no_champion_t}:
        assert m.loc[t, "promotion"] in ("promoted", "champion", "absent"), t
        if m.loc[t, "promotion"] == "promoted":
            assert m.loc[t, "scoring_model_version"] == m.loc[t, "model_version"]

    scores = {d: query(db, "select * from segmentation.propensity_scores where as_of_date = ? "
                       "order by customer_id", [d]) for d in (END, NEXT)}
    # the champion scores NEXT: same customers and features as END, so END's scores exactly
    np.testing.assert_allclose(scores[NEXT][f"{champion_t}_score"],
                               scores[END][f"{champion_t}_score"], rtol=0, atol=1e-12)
    versions = json.loads(scores[NEXT]["model_versions"].iloc[0])
    assert versions[champion_t] == before.loc[champion_t, "model_version"]
    # no champion: NULL scores and drivers, never tonight's losing model's
    assert scores[NEXT][f"{no_champion_t}_score"].isna().all()
    assert scores[NEXT][f"{no_champion_t}_driver_1"].isna().all()

    meta = next(m.metadata for m in result.asset_materializations_for_node("propensity_models")
                if m.asset_key == dg.AssetKey("propensity_scores"))
    said = meta["promotion"].value
    assert f"champion of {END}" in said[champion_t]
    assert "target is absent" in said[no_champion_t]
    # tonight's model is still saved (for inspection), it just does not score
    assert (root / "models" / champion_t / NEXT.isoformat() / pm.MODEL_FILE).exists()
    # and the summary's first lines say which model scored each refused target
    from dagster_project import cli

    con = duckdb.connect(str(db), read_only=True)
    try:
        lines = cli.first_lines(con, NEXT)
    finally:
        con.close()
    said = {t: [x for x in lines if x.startswith(f"model {t} not promoted")]
            for t in (champion_t, no_champion_t)}
    assert len(said[champion_t]) == 1 and "the champion" in said[champion_t][0]
    assert before.loc[champion_t, "model_version"] in said[champion_t][0]
    assert len(said[no_champion_t]) == 1 and said[no_champion_t][0].endswith("absent")


def pd_isna(v) -> bool:
    return v is None or v != v


def test_a_champion_is_the_latest_earlier_promoted_model_whose_files_exist(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("create schema segmentation")
    con.execute("create table segmentation.model_metrics (as_of_date date, target varchar, "
                "status varchar, beats_baseline boolean, model_version varchar, "
                "promotion varchar)")
    rows = [("2025-06-01", "trained", True, "promoted"), ("2025-06-08", "trained", False,
            "champion"), ("2025-06-15", "trained", True, "promoted"),
            ("2025-06-22", "trained", True, "promoted")]
    for day, status, beats, promotion in rows:
        con.execute("insert into segmentation.model_metrics values (?, 'churn_90d', ?, ?, ?, ?)",
                    [day, status, beats, f"churn_90d/{day}/x", promotion])
    got = promo.champions(con, "churn_90d", dt.date(2025, 6, 22))
    # strictly before the partition, promoted only, latest first
    assert [str(d) for d, _ in got] == ["2025-06-15", "2025-06-01"]
    # no files on disk for any of them: no champion
    assert promo.load_champion(con, "churn_90d", dt.date(2025, 6, 22), tmp_path) == (None, None)
    con.close()


def test_a_challenger_is_refused_only_when_worse_than_its_baseline_beyond_noise():
    from .test_propensity import CONFIG, FEATURE_COLS, TARGET, make_frame

    result = pm.train_target(make_frame(n_customers=1500), TARGET, FEATURE_COLS, CONFIG)
    assert result.trained and result.beats_baseline
    assert promo.challenger_refusal(result) is None
    # below its baseline but within noise: promoted (and flagged by the metrics table)
    result.beats_baseline = False
    result.baseline_comparison = {"auc_difference": -0.007, "ci_low": -0.106,
                                  "ci_high": 0.078, "n_boot": 200,
                                  "verdict": "indistinguishable"}
    assert promo.challenger_refusal(result) is None
    result.baseline_comparison = {**result.baseline_comparison, "ci_high": -0.01,
                                  "verdict": "worse"}
    assert "worse than its baseline beyond noise" in promo.challenger_refusal(result)
    absent = pm.TrainResult(target=TARGET, feature_cols=(), absent_reason="0 positives")
    assert promo.challenger_refusal(absent) == "not trained: 0 positives"


def test_a_partition_whose_population_drift_fails_is_not_published_without_an_override(
        next_night, monkeypatch):
    """Tonight's scores of the whole population collapse (every customer scored a twentieth of
    what they would be): the population PSI of every model fails. The publish refuses and
    says so; the published surface stays END's. With allow_score_drift the same night
    publishes."""
    root, db, run = next_night
    from dagster_project.defs.propensity import assets as propensity_assets

    real = propensity_assets.population_psi
    monkeypatch.setattr(propensity_assets, "population_psi",
                        lambda result, ref, current: real(result, ref, current * 0.05))
    keys = ["customer_states", *PROPENSITY, "decision_segments", "persuasion_drivers",
            "exclusion_audiences", "audit_candidates", "published_segments"]
    refused = run(keys)
    assert not refused.success
    m = _metrics(db, NEXT)
    drifted = m[m["population_psi"] > drift.FAIL_PSI]
    assert len(drifted), m["population_psi"].to_dict()
    text = "\n".join(e.event_specific_data.error.message for e in refused.all_events
                     if e.is_step_failure)
    assert "score drift" in text and "allow_score_drift" in text, text
    assert drifted.index[0] in text
    published = query(db, "select max(as_of_date) d from published.versions")["d"][0]
    assert pd.Timestamp(published).date() == END

    ok = run(keys, {"ops": {"published_segments": {"config": {"allow_score_drift": True}}}})
    assert ok.success
    meta = ok.asset_materializations_for_node("published_segments")[-1].metadata
    assert set(meta["score_drift_overridden"].value) == set(drifted.index)
    published = query(db, "select max(as_of_date) d from published.versions")["d"][0]
    assert pd.Timestamp(published).date() == NEXT
