"""The declared schema of every table the pipeline's Python steps write.

A table created from the first frame written to it takes its column types from that frame,
and a column that is NULL on that night (``absent_reason`` when every model trained, a
measurement column when a source is absent) becomes INTEGER: the first night on which the
column holds text then fails. So every table written by ``lib/warehouse.replace_partition``
is declared here, column by column; a frame column that is not declared is an error (a new
column is declared with its type, not guessed), a declared column the frame lacks is NULL,
and an existing table whose column has another type is altered to the declared one.

Columns named per target or per segment are declared by pattern (a regular expression that
must match the whole name), e.g. ``.*_score`` for the seven calibrated scores.
"""

from __future__ import annotations

import re

D, V, B, F, I = "DATE", "VARCHAR", "BOOLEAN", "DOUBLE", "BIGINT"

_SCORES = ((r".+_score", F), (r".+_log_odds", F), (r".+_driver_[0-9]+", V),
           (r".+_driver_[0-9]+_contribution", F), (r".+_drivers_text", V))

SCHEMAS: dict[str, tuple[tuple[str, str], ...]] = {
    "segmentation.customer_states": (
        ("as_of_date", D), ("customer_id", V), ("lifecycle_state", V), ("aov_tier", V),
        ("category_family", V), ("days_since_last_order", F), ("days_since_first_order", F),
        ("orders_lifetime", F), ("aov_lifetime", F)),
    "segmentation.rule_thresholds": (("as_of_date", D), ("thresholds_json", V)),
    "segmentation.model_metrics": (
        ("as_of_date", D), ("target", V), ("status", V), ("absent_reason", V),
        ("model_version", V), ("promotion", V), ("promotion_reason", V),
        ("scoring_model_version", V), ("population_psi", F), ("psi_reference_date", D),
        ("beats_baseline", B), ("valid_cutoff", V), ("train_cutoffs", V),
        ("best_iteration", I), ("n_rows", V), ("baseline", V),
        *((f"{who}_{m}", F) for who in ("model", "baseline", "btyd")
          for m in ("roc_auc", "pr_auc", "brier", "top_decile_lift")),
        *((f"{who}_{m}", I) for who in ("model", "baseline", "btyd") for m in ("n_pos", "n_neg")),
        ("btyd_verdict", V)),
    "segmentation.propensity_scores": (
        ("as_of_date", D), ("customer_id", V), *_SCORES, ("model_versions", V)),
    "segmentation.decision_segments": (
        ("as_of_date", D), ("customer_id", V), ("primary_segment", V), (r"in_.+", B),
        ("segment_reason", V), (r"playbook_.+", V), ("persuasion_driver", V),
        ("driver_cluster", I), ("marketing_consent", B), ("exclusion_audiences", V),
        ("activation_eligible", B), ("activation_segment", V), (r"activate_.+", B),
        ("not_activated_reason", V), ("lifecycle_state", V), ("aov_tier", V),
        ("category_family", V), ("model_versions", V), (r".+_score", F),
        ("segments_config_version", V)),
    "segmentation.exclusion_audiences": (
        ("as_of_date", D), ("customer_id", V), ("audience", V), ("reason", V),
        (r".+_score", F), (r"[a-z0-9_]+", F)),  # the evidence columns: all numeric
    "segmentation.segment_status": (
        ("as_of_date", D), ("segment", V), ("status", V), ("primary_customers", I),
        ("minimum", I), ("reason", V)),
    "segmentation.segment_driver_matrix": (
        ("as_of_date", D), ("segment", V), ("persuasion_driver", V), ("customers", I)),
    "measurement.incrementality": (
        ("as_of_date", D), ("segment", V), ("status", V), ("n_treated", I), ("n_holdout", I),
        ("n_incomplete", I), ("window_days", I), ("significant", B),
        ("activation_log_source", V), ("history", V), (r"[a-z0-9_]+", F)),
    "measurement.marginal_roi": (
        ("as_of_date", D), ("channel", V), ("segment", V), ("status", V), ("kind", V),
        ("n_days", I), ("budget_shift_role", V), ("budget_shift", V), ("reason", V),
        (r"[a-z0-9_]+", F)),
    "measurement.creative_fatigue": (
        ("as_of_date", D), ("segment", V), ("creative_id", V), ("status", V), ("buckets", I),
        ("past_knee", B), ("ctr_by_bucket", V), ("reason", V), (r"[a-z0-9_]+", F)),
    "measurement.segment_migration": (
        ("as_of_date", D), ("comparison", V), ("from_date", D), ("status", V),
        ("segment_from", V), ("segment_to", V), ("customers", I), ("rate", F)),
    "measurement.segment_forecast": (
        ("as_of_date", D), ("segment", V), ("customers", I),
        ("customers_with_value_fallback", I), ("horizon_days", I), ("currency", V),
        (r"[a-z0-9_]+", F)),
}




def _candidate(table: str, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    """A candidate's schema (audit.<name>__..., then published.<name>): the segmentation
    table it is read from, plus the stamps; as_of_date as it has always been published (a
    TIMESTAMP: the frame's datetime)."""
    cols = tuple((n, "TIMESTAMP" if n == "as_of_date" else t) for n, t in SCHEMAS[table])
    return (*extra, *cols)


# The write-audit-publish candidates (lib/publish.write_candidate): published.<name>, its
# audit versions and its _history carry these types.
SCHEMAS.update({
    "published.segments": _candidate("segmentation.decision_segments", ("run_id", V)),
    "published.scores": _candidate("segmentation.propensity_scores", ("run_id", V),
                                   ("marketing_consent", B)),
    "published.exclusions": _candidate("segmentation.exclusion_audiences",
                                       ("model_versions", V), ("run_id", V)),
    "published.audiences": (
        ("as_of_date", D), ("audience", V), ("customer_id", V), ("marketing_consent", B),
        ("holdout", B), (r".+_sha256", V), ("country", V), ("zip", V), ("audience_kind", V),
        ("model_versions", V), ("run_id", V)),
})


class UndeclaredColumn(ValueError):
    """A frame column with no declared type."""


def column_types(table: str, columns: list[str]) -> dict[str, str]:
    """{column: declared type} for the frame's columns, in the frame's order: exact names
    first, then the first pattern (in declaration order) that matches the whole name."""
    if table not in SCHEMAS:
        raise UndeclaredColumn(f"{table}: no declared schema (lib/schemas.py)")
    decl = SCHEMAS[table]
    exact = {name: typ for name, typ in decl if re.fullmatch(r"[a-z0-9_]+", name)}
    patterns = [(re.compile(name), typ) for name, typ in decl if name not in exact]
    out = {}
    for c in columns:
        if c in exact:
            out[c] = exact[c]
            continue
        typ = next((t for p, t in patterns if p.fullmatch(c)), None)
        if typ is None:
            raise UndeclaredColumn(f"{table}: column {c!r} has no declared type "
                                   "(declare it in lib/schemas.py)")
        out[c] = typ
    return out
