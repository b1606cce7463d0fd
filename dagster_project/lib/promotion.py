"""Champion and challenger: which model of a target scores a partition.

The model trained on a partition is its target's *challenger*. It is **promoted** (it scores,
and is a champion for later partitions) unless it is **worse than its naive baseline beyond
noise** on the validation half: the paired bootstrap interval of model minus baseline ROC AUC
lies below zero (``TrainResult.baseline_comparison``, verdict "worse"). A model within noise
of its baseline is promoted and flagged, as the metrics table shows it: refusing it on the
point estimates alone would switch a small shop's targets on and off with validation noise
(on the 3,000-customer fixture discount_next_order is 0.766 against 0.773, interval
[-0.106, +0.078]).

Population drift is not part of promotion: it compares with the last day published before
the partition, which depends on what ran before, and a model's own validation does not. It
gates the publish instead (a partition whose population PSI fails is not published without
a person's override; defs/publish/assets.py), and is recorded beside the decision.

Otherwise the **champion** scores: the target's latest model promoted on an earlier partition
(strictly earlier, so a backfilled night takes what the nightly run would have had), when its
files are still on disk. With no champion the target is **absent**, with the reason, as a
target that could not be trained is. A champion scores the partition's own features: it was
trained on earlier data, so nothing of the partition's labels reaches it.

The decision is recorded per target and night in ``segmentation.model_metrics`` (promotion,
promotion_reason, scoring_model_version, population_psi) so the next night can find its
champion, and the asset's metadata and the alert say which model scored and why.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from dagster_project.lib import propensity as pm
from dagster_project.lib.warehouse import table_exists

PROMOTED, CHAMPION, ABSENT = "promoted", "champion", "absent"


@dataclass(frozen=True)
class Decision:
    """Which model scores a target tonight: ``outcome`` is PROMOTED (tonight's), CHAMPION (an
    earlier promoted one, ``champion_as_of``) or ABSENT; ``reason`` says why the challenger
    was not promoted (None when it was)."""

    outcome: str
    reason: str | None = None
    champion_as_of: dt.date | None = None
    champion_version: str | None = None


def challenger_refusal(result: pm.TrainResult) -> str | None:
    """Why tonight's model is not promoted, or None when it is (module docstring)."""
    if not result.trained:
        return f"not trained: {result.absent_reason}"
    comparison = result.baseline_comparison or {}
    if comparison.get("verdict") == "worse":
        return (f"model AUC {result.metrics['roc_auc']:.3f} against its baseline's "
                f"{result.baseline_metrics['roc_auc']:.3f}: worse than its baseline beyond "
                f"noise on the validation half ({pm.describe_comparison(comparison)})")
    return None


CHAMPION_SQL = """
select as_of_date, model_version from segmentation.model_metrics
where target = ? and as_of_date < ? and {promoted}
order by as_of_date desc
"""


def champions(con, target: str, as_of: dt.date) -> list[tuple[dt.date, str]]:
    """(as_of_date, model_version) of ``target``'s models promoted before ``as_of``, latest
    first. A warehouse written before promotion was recorded counts a trained model that
    beat its baseline as promoted (the rule then had no drift part)."""
    if not table_exists(con, "segmentation", "model_metrics"):
        return []
    cols = {r[0] for r in con.execute("describe segmentation.model_metrics").fetchall()}
    promoted = ("coalesce(promotion = 'promoted', status = 'trained' and beats_baseline)"
                if "promotion" in cols else "status = 'trained' and beats_baseline")
    return [(r[0], r[1]) for r in con.execute(
        CHAMPION_SQL.format(promoted=promoted), [target, as_of]).fetchall()]


def load_champion(con, target: str, as_of: dt.date, models: Path,
                  ) -> tuple[Decision | None, pm.TrainResult | None]:
    """The latest earlier promoted model of ``target`` whose files are on disk (the
    retention may have removed older ones), as (its Decision fields, the loaded model), or
    (None, None)."""
    for day, version in champions(con, target, as_of):
        directory = models / target / day.isoformat()
        if not (directory / pm.METADATA_FILE).exists():
            continue
        result = pm.load_model(directory)
        if result.trained:
            return Decision(CHAMPION, champion_as_of=day, champion_version=version), result
    return None, None


def reference_date(con, as_of: dt.date) -> dt.date | None:
    """The day drift is measured against: the last published day before ``as_of`` if anything
    is published, else the last scored day before it. Strictly before, so a backfilled day is
    compared with what preceded it, as the nightly run would have done that night."""
    if table_exists(con, "published", "versions"):
        d = con.execute("select max(as_of_date) from published.versions where as_of_date < ?",
                        [as_of]).fetchone()[0]
        if d is not None:
            return d
    if not table_exists(con, "segmentation", "propensity_scores"):
        return None
    return con.execute(
        "select max(as_of_date) from segmentation.propensity_scores where as_of_date < ?",
        [as_of]).fetchone()[0]


def describe(decision: Decision) -> str:
    """One line for the metadata, the log and the alert: which model scores, and why."""
    if decision.outcome == PROMOTED:
        return "tonight's model promoted: it scores"
    if decision.outcome == CHAMPION:
        return (f"tonight's model not promoted ({decision.reason}); the champion of "
                f"{decision.champion_as_of} ({decision.champion_version}) scores")
    return (f"tonight's model not promoted ({decision.reason}) and no earlier promoted model "
            "is on disk: the target is absent")
