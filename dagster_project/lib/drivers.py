"""Persuasion drivers: which theme convinces each customer, found by clustering.

Evidence per theme (``features.THEMES``):

=========== ============================ =====================================
theme       web page views (a year)      creative response (a year)
=========== ============================ =====================================
proof       reviews_views_365d           clicks_proof_365d / impressions_proof_365d
identity    about_views_365d             clicks_identity_365d / impressions_...
anxiety     guarantee_views_365d         ...
convenience shipping_returns_views_365d  ...
value       sale_views_365d              ...
performance comparison_views_365d        ...
=========== ============================ =====================================

Profile — per customer, a 6-share theme-affinity vector (sums to 1):

- page block: ``(views_t + a) / (sum views + 6a)`` with ``a = page_smoothing``, present when
  the customer viewed any theme page;
- creative block: smoothed CTR per theme ``(clicks_t + m * ctr_t) / (impressions_t + m)``
  (``m = ctr_prior_impressions``, ``ctr_t`` the population CTR of the theme, so a theme
  never shown stays at the population rate), normalised to shares; present when the
  customer clicked any themed creative (impressions without a click carry no preference);
- the profile is the mean of the blocks present. No block: driver ``unknown``, no cluster.

Clustering — the engaged customers are sorted by ``customer_id`` (results do not depend on
row order), a seeded sample of at most ``max_fit_rows`` fits KMeans (``random_state=seed``,
``n_init`` fixed) for every k in ``k_min..k_max``; k is the one with the highest silhouette
on one seeded sample of at most ``silhouette_sample`` rows (ties: the smaller k). Each cluster
is labelled by the theme with the highest lift of its centre over the population mean
profile (several clusters may share a theme). Below ``min_engaged`` engaged customers, or
without web and ads sources, nothing is clustered and everyone is ``unknown`` with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from threadpoolctl import threadpool_limits

from dagster_project.lib.features import THEMES
from dagster_project.lib.segments import DEFAULT_SEGMENT, SEGMENTS, counts, load_config

UNKNOWN = "unknown"
DRIVERS: tuple[str, ...] = (*THEMES, UNKNOWN)
# A year of evidence, the same window for every theme (30-day counts are mostly zeros and
# mixed windows would favour the themes counted over longer periods).
PAGE_FEATURES: dict[str, str] = {
    "proof": "reviews_views_365d",
    "identity": "about_views_365d",
    "anxiety": "guarantee_views_365d",
    "convenience": "shipping_returns_views_365d",
    "value": "sale_views_365d",
    "performance": "comparison_views_365d",
}


@dataclass
class DriverResult:
    table: pd.DataFrame  # customer_id, persuasion_driver, driver_cluster (-1 = none)
    metrics: dict[str, Any]  # k, silhouette, silhouettes per k, cluster labels and lifts...
    reason: str | None = None  # why everyone is unknown, when they are
    profiles: pd.DataFrame | None = field(default=None, repr=False)  # affinity, engaged rows


def theme_profiles(
    frame: pd.DataFrame,
    page_smoothing: float = 0.5,
    ctr_prior_impressions: float = 20.0,
    use_web: bool = True,
    use_ads: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(profile n x 6, engaged mask): the smoothed theme-affinity shares defined above."""
    n = len(frame)
    views = np.column_stack([counts(frame, PAGE_FEATURES[t]) for t in THEMES])
    clicks = np.column_stack([counts(frame, f"clicks_{t}_365d") for t in THEMES])
    impressions = np.column_stack([counts(frame, f"impressions_{t}_365d") for t in THEMES])
    views, clicks, impressions = (np.clip(a, 0, None) for a in (views, clicks, impressions))
    k = len(THEMES)

    has_page = (views.sum(axis=1) > 0) if use_web else np.zeros(n, dtype=bool)
    page = (views + page_smoothing) / (views.sum(axis=1, keepdims=True) + k * page_smoothing)

    has_ctr = (clicks.sum(axis=1) > 0) if use_ads else np.zeros(n, dtype=bool)
    total_impr = impressions.sum(axis=0)
    overall_ctr = clicks.sum() / max(impressions.sum(), 1.0)
    pop_ctr = np.where(
        total_impr > 0, clicks.sum(axis=0) / np.maximum(total_impr, 1.0), overall_ctr
    )
    pop_ctr = np.maximum(pop_ctr, 1e-9)
    ctr = (clicks + ctr_prior_impressions * pop_ctr) / (impressions + ctr_prior_impressions)
    ctr_share = ctr / ctr.sum(axis=1, keepdims=True)

    w_page = has_page.astype(float)[:, None]
    w_ctr = has_ctr.astype(float)[:, None]
    denom = np.maximum(w_page + w_ctr, 1.0)
    profile = (w_page * page + w_ctr * ctr_share) / denom
    engaged = has_page | has_ctr
    profile[~engaged] = np.nan
    return profile, engaged


def _all_unknown(frame: pd.DataFrame, reason: str, n_engaged: int = 0) -> DriverResult:
    table = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].to_numpy(),
            "persuasion_driver": UNKNOWN,
            "driver_cluster": np.full(len(frame), -1, dtype=int),
        }
    )
    metrics = {
        "k": None,
        "silhouette": None,
        "silhouettes": {},
        "n_engaged": n_engaged,
        "n_unknown": len(frame),
        "cluster_themes": {},
        "cluster_lifts": {},
    }
    return DriverResult(table=table, metrics=metrics, reason=reason)


def assign_drivers(
    frame: pd.DataFrame,
    config: dict[str, Any] | None = None,
    sources_present: dict[str, bool] | None = None,
) -> DriverResult:
    """Per customer: persuasion_driver (a theme or "unknown") and cluster id, plus metrics."""
    config = config or load_config()
    cfg = config.get("drivers", config)
    sources_present = sources_present or {"web": True, "ads": True}
    use_web = bool(sources_present.get("web", False))
    use_ads = bool(sources_present.get("ads", False))
    if not (use_web or use_ads):
        return _all_unknown(frame, "no web and no ads source: no engagement to learn drivers from")

    profile, engaged = theme_profiles(
        frame, cfg["page_smoothing"], cfg["ctr_prior_impressions"], use_web, use_ads
    )
    n_engaged = int(engaged.sum())
    if n_engaged < cfg["min_engaged"]:
        return _all_unknown(
            frame,
            f"{n_engaged} customers engaged with theme pages or creatives "
            f"(< min_engaged {cfg['min_engaged']}): drivers not learned",
            n_engaged,
        )

    # Order-independent: cluster the engaged rows sorted by customer_id.
    idx = np.flatnonzero(engaged)
    order = np.argsort(frame["customer_id"].to_numpy()[idx], kind="stable")
    idx = idx[order]
    x = profile[idx]
    rng = np.random.default_rng(cfg["seed"])
    fit_rows = (
        np.sort(rng.choice(len(x), cfg["max_fit_rows"], replace=False))
        if len(x) > cfg["max_fit_rows"]
        else np.arange(len(x))
    )
    sil_rows = (
        np.sort(rng.choice(len(x), cfg["silhouette_sample"], replace=False))
        if len(x) > cfg["silhouette_sample"]
        else np.arange(len(x))
    )
    n_distinct = len(np.unique(np.round(x[fit_rows], 9), axis=0))
    ks = [k for k in range(cfg["k_min"], cfg["k_max"] + 1) if k < min(n_distinct, len(sil_rows))]
    if not ks:
        return _all_unknown(
            frame,
            f"only {n_distinct} distinct engagement profiles: too few for {cfg['k_min']} clusters",
            n_engaged,
        )

    silhouettes: dict[int, float] = {}
    models: dict[int, KMeans] = {}
    # One thread: the OpenMP reductions then run in a fixed order (bit-for-bit the same
    # centres on any machine), and a 6-column KMeans gains little from threads while
    # spinning OpenMP workers slow down badly when other processes share the cores.
    with threadpool_limits(limits=1):
        for k in ks:
            km = KMeans(n_clusters=k, n_init=cfg["n_init"], random_state=cfg["seed"])
            km.fit(x[fit_rows])
            labels = km.predict(x[sil_rows])
            silhouettes[k] = (
                float(silhouette_score(x[sil_rows], labels)) if len(set(labels)) > 1 else -1.0
            )
            models[k] = km
        best_k = max(ks, key=lambda k: (silhouettes[k], -k))
        km = models[best_k]
        cluster = km.predict(x)

    population_mean = x.mean(axis=0)
    lifts = km.cluster_centers_ / population_mean
    cluster_theme = np.array(THEMES, dtype=object)[np.argmax(lifts, axis=1)]

    driver = np.full(len(frame), UNKNOWN, dtype=object)
    cluster_id = np.full(len(frame), -1, dtype=int)
    driver[idx] = cluster_theme[cluster]
    cluster_id[idx] = cluster
    table = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].to_numpy(),
            "persuasion_driver": driver,
            "driver_cluster": cluster_id,
        }
    )
    sizes = pd.Series(driver).value_counts()
    metrics = {
        "k": best_k,
        "silhouette": silhouettes[best_k],
        "silhouettes": silhouettes,
        "n_engaged": n_engaged,
        "n_unknown": len(frame) - n_engaged,
        "silhouette_rows": len(sil_rows),
        "cluster_themes": {int(c): str(t) for c, t in enumerate(cluster_theme)},
        "cluster_lifts": {
            int(c): {t: round(float(v), 3) for t, v in zip(THEMES, row, strict=True)}
            for c, row in enumerate(lifts)
        },
        "driver_sizes": {d: int(sizes.get(d, 0)) for d in DRIVERS},
        "sources_used": {"web": use_web, "ads": use_ads},
    }
    profiles = pd.DataFrame(x, columns=[f"affinity_{t}" for t in THEMES])
    profiles.insert(0, "customer_id", frame["customer_id"].to_numpy()[idx])
    return DriverResult(table=table, metrics=metrics, reason=None, profiles=profiles)


def segment_driver_matrix(segments: pd.DataFrame, drivers: pd.DataFrame) -> pd.DataFrame:
    """Customers per primary segment (rows) x persuasion driver (columns); each cell a brief.

    Every segment of ``SEGMENTS`` and the default appear as rows, every driver as a column,
    zeros included, so the brief grid has the same shape every night.
    """
    merged = segments[["customer_id", "primary_segment"]].merge(
        drivers[["customer_id", "persuasion_driver"]],
        on="customer_id",
        how="left",
        validate="one_to_one",
    )
    merged["persuasion_driver"] = merged["persuasion_driver"].fillna(UNKNOWN)
    base = [*SEGMENTS, DEFAULT_SEGMENT]
    rows = base + sorted(set(merged["primary_segment"]) - set(base))
    matrix = pd.crosstab(merged["primary_segment"], merged["persuasion_driver"])
    return matrix.reindex(index=rows, columns=list(DRIVERS), fill_value=0).rename_axis(
        index="primary_segment", columns="persuasion_driver"
    )
