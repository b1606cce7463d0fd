"""The candidate frames of write-audit-publish and the suites each must pass (no Dagster
definitions here, so the asset, the checks and the publish step can all import it)."""

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from dagster_project.defs.metadata import md_table  # noqa: F401  (used by quality/publish)
from dagster_project.defs.resources import warehouse  # noqa: F401  (used by quality/publish)
from dagster_project.lib import activation as act
from dagster_project.lib import consent
from dagster_project.lib import measurement
from dagster_project.lib import segments as seg
from dagster_project.lib.segments import SEGMENTS

# Candidate names: the published.<name> tables they become.
SEGMENTS_NAME, SCORES_NAME, EXCLUSIONS_NAME, AUDIENCES_NAME = (
    "segments", "scores", "exclusions", "audiences")
CANDIDATE_NAMES = (SEGMENTS_NAME, SCORES_NAME, EXCLUSIONS_NAME, AUDIENCES_NAME)

SEGMENTS_SQL = """
-- the segments layer's table for the partition, one row per customer
select *
from segmentation.decision_segments
where as_of_date = ?
order by customer_id
"""

SCORES_SQL = """
-- calibrated scores with their top drivers, one row per customer
select *
from segmentation.propensity_scores
where as_of_date = ?
order by customer_id
"""

EXCLUSIONS_SQL = """
-- do-not-target audiences (customer x audience, with evidence) and the scoring models used
select e.*, s.model_versions
from segmentation.exclusion_audiences e
left join segmentation.propensity_scores s
    on s.as_of_date = e.as_of_date and s.customer_id = e.customer_id
where e.as_of_date = ?
order by e.customer_id, e.audience
"""

PROFILE_SQL = """
-- contact data and consent at the partition date, for the audience files
select customer_id, email_normalized as email, phone, first_name, last_name, country, zip,
       marketing_consent
from marts.customer_profile
where as_of_date = ?
"""


def holdout_share() -> float:
    """The holdout share of every activation audience (config/segments.yaml `measurement:`)."""
    cfg = seg.load_config().get("measurement") or {}
    return float(cfg.get("holdout_share", measurement.HOLDOUT_SHARE))


def apply_consent_now(segments: pd.DataFrame, scores: pd.DataFrame, profile: pd.DataFrame,
                      current: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Consent as known now on every marketing surface (lib/consent.py), in place: the
    profile's and the segments' marketing_consent become the consent at run time; a customer
    without it loses their activate_* flags and their published scores (NULL, with
    marketing_consent beside them). Returns per activation audience the customers left out
    because their consent was withdrawn after the partition date."""
    profile["marketing_consent"] = consent.consent_at_run(
        profile["marketing_consent"], profile["customer_id"], current)
    now = profile.assign(customer_id=profile["customer_id"].astype(str)).set_index(
        "customer_id")["marketing_consent"]
    seg_now = pd.Series(consent.as_bool(segments["customer_id"].astype(str).map(now)),
                        index=segments.index)
    withdrawn = pd.Series(consent.as_bool(segments["marketing_consent"]),
                          index=segments.index) & ~seg_now
    stats = {}
    for name in SEGMENTS:
        flag = f"activate_{name}"
        if flag in segments.columns:
            lost = withdrawn & consent.as_bool(segments[flag])
            if lost.any():
                stats[name] = {"consent_withdrawn_left_out": int(lost.sum())}
            segments.loc[withdrawn, flag] = False
    # Only a withdrawal since the partition date is applied to the flags here: a flag set for
    # a customer the segments layer already knew to have no consent is a defect the audience
    # gate must catch on its own (it checks every member's consent against the profile).
    if "activation_eligible" in segments.columns:
        segments.loc[withdrawn, "activation_eligible"] = False
        segments.loc[withdrawn, "activation_segment"] = None
        segments.loc[withdrawn, "not_activated_reason"] = (
            "no marketing consent (withdrawn after the partition date)")
    segments["marketing_consent"] = seg_now

    sc_now = pd.Series(consent.as_bool(scores["customer_id"].astype(str).map(now)),
                       index=scores.index)
    withheld = [c for c in scores.columns
                if c not in ("as_of_date", "customer_id", "model_versions")]
    for c in withheld:  # keep each column's dtype: NULL, not a re-typed object column
        scores[c] = scores[c].where(sc_now, None if scores[c].dtype == object else np.nan)
    scores["marketing_consent"] = sc_now
    return stats


def candidate_frames(con, as_of: dt.date, run_id: str, raw_root: Path | None = None,
                     ) -> tuple[dict[str, pd.DataFrame], dict]:
    """The four candidate frames for `as_of`, each row stamped with as_of_date, run_id and
    model_versions; plus the audience preparation stats. Consent is judged now, over every
    customers file landed in `raw_root` (lib/consent.py)."""
    segments = con.execute(SEGMENTS_SQL, [as_of]).df()
    if segments.empty:
        raise RuntimeError(f"segmentation.decision_segments has no rows for {as_of}")
    scores = con.execute(SCORES_SQL, [as_of]).df()
    exclusions = con.execute(EXCLUSIONS_SQL, [as_of]).df()
    profile = con.execute(PROFILE_SQL, [as_of]).df()
    withdrawn = apply_consent_now(segments, scores, profile,
                                  consent.current_consent(con, raw_root))

    members, member_stats = act.audience_members(segments, exclusions, profile, SEGMENTS)
    for aud, extra in withdrawn.items():
        member_stats.setdefault(aud, {}).update(extra)
    prepared, prep_stats = act.prepare_audience_members(members)
    kinds = members.drop_duplicates("audience").set_index("audience")["audience_kind"]
    prepared["audience_kind"] = prepared["audience"].map(kinds)
    # Each activation audience keeps a stable hash-based holdout (DESIGN §10): the members stay
    # in the published audience with holdout=True, so measurement can read them, and
    # write_audience_exports leaves them out of the upload files. Suppression lists get none:
    # holding customers out of a do-not-target list would target them.
    activation = prepared["audience_kind"] == "activation"
    prepared["holdout"] = False
    prepared.loc[activation, "holdout"] = measurement.holdout_assignment(
        prepared.loc[activation, "customer_id"], prepared.loc[activation, "audience"],
        share=holdout_share())
    versions = segments[["customer_id", "model_versions"]].astype({"customer_id": str})
    prepared = prepared.merge(versions, on="customer_id", how="left")
    prepared.insert(0, "as_of_date", as_of)

    frames = {SEGMENTS_NAME: segments, SCORES_NAME: scores, EXCLUSIONS_NAME: exclusions,
              AUDIENCES_NAME: prepared}
    for frame in frames.values():
        frame["run_id"] = run_id
    stats = {aud: {**prep_stats.get(aud, {}), **member_stats.get(aud, {})}
             for aud in sorted(set(prep_stats) | set(member_stats))}
    return frames, stats


KEYS = {SEGMENTS_NAME: ("customer_id",), SCORES_NAME: ("customer_id",),
        EXCLUSIONS_NAME: ("customer_id", "audience"),
        AUDIENCES_NAME: ("audience", "customer_id")}


RAW_SUITE = "raw"
# The suites that must have passed for a candidate version before it may be published.
REQUIRED_SUITES = {
    SEGMENTS_NAME: ("segments", RAW_SUITE),
    SCORES_NAME: ("scores", RAW_SUITE),
    EXCLUSIONS_NAME: ("exclusions", RAW_SUITE),
    AUDIENCES_NAME: ("audiences", RAW_SUITE),
}

