import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from dagster_project.lib.drivers import (
    DRIVERS,
    PAGE_FEATURES,
    UNKNOWN,
    assign_drivers,
    segment_driver_matrix,
)
from dagster_project.lib.features import THEMES
from dagster_project.lib.segments import DEFAULT_SEGMENT, SEGMENTS, load_config

PLANTED = ("proof", "anxiety", "value", "performance")
ALL_SOURCES = {"web": True, "ads": True, "returns": True, "support": True}


def planted_frame(n_per_driver: int = 600, n_unknown: int = 600, seed: int = 0) -> pd.DataFrame:
    """Four planted engagement profiles plus customers with no engagement at all.

    A planted customer views their theme's page more than others and clicks their theme's
    creatives at a higher rate; views and clicks on other themes are background noise.
    """
    rng = np.random.default_rng(seed)
    planted = np.repeat([*PLANTED, UNKNOWN], [n_per_driver] * len(PLANTED) + [n_unknown])
    n = len(planted)
    frame = pd.DataFrame({"customer_id": [f"c{i:05d}" for i in range(n)]})
    engaged = planted != UNKNOWN
    for theme in THEMES:
        mine = planted == theme
        views = rng.poisson(np.where(mine, 4.0, 0.4))
        impressions = rng.poisson(30, n)
        clicks = rng.binomial(impressions, np.where(mine, 0.08, 0.01))
        frame[PAGE_FEATURES[theme]] = np.where(engaged, views, 0).astype(float)
        frame[f"impressions_{theme}_365d"] = impressions.astype(float)
        frame[f"clicks_{theme}_365d"] = np.where(engaged, clicks, 0).astype(float)
    frame["planted"] = planted
    return frame


def test_planted_persuasion_drivers_are_recovered_with_high_adjusted_rand_index():
    frame = planted_frame()
    result = assign_drivers(frame, load_config(), ALL_SOURCES)
    ari = adjusted_rand_score(frame["planted"], result.table["persuasion_driver"])
    assert ari >= 0.8, (ari, result.metrics)
    # the labels are the planted themes, not just a partition
    engaged = frame["planted"] != UNKNOWN
    agree = (frame.loc[engaged, "planted"] == result.table.loc[engaged, "persuasion_driver"]).mean()
    assert agree >= 0.9


def test_k_is_chosen_within_three_to_seven_by_the_best_silhouette():
    result = assign_drivers(planted_frame(), load_config(), ALL_SOURCES)
    m = result.metrics
    assert 3 <= m["k"] <= 7
    assert set(m["silhouettes"]) == set(range(3, 8))
    assert m["silhouette"] == max(m["silhouettes"].values())
    assert set(result.table["persuasion_driver"]) <= set(DRIVERS)


def test_drivers_are_deterministic_and_do_not_depend_on_row_order():
    frame = planted_frame()
    a = assign_drivers(frame, load_config(), ALL_SOURCES)
    b = assign_drivers(frame, load_config(), ALL_SOURCES)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.metrics == b.metrics
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    c = assign_drivers(shuffled, load_config(), ALL_SOURCES).table.set_index("customer_id")
    pd.testing.assert_series_equal(
        a.table.set_index("customer_id")["persuasion_driver"],
        c.loc[a.table["customer_id"], "persuasion_driver"],
    )


def test_customers_without_engagement_get_the_unknown_driver():
    frame = planted_frame()
    result = assign_drivers(frame, load_config(), ALL_SOURCES)
    no_engagement = frame["planted"] == UNKNOWN
    assert (result.table.loc[no_engagement, "persuasion_driver"] == UNKNOWN).all()
    assert (result.table.loc[no_engagement, "driver_cluster"] == -1).all()
    assert (result.table.loc[~no_engagement, "persuasion_driver"] != UNKNOWN).all()


def test_everyone_is_unknown_with_a_reason_when_nobody_engaged():
    frame = planted_frame()
    for col in frame.columns:
        if col.startswith(
            ("clicks_", "reviews_", "about_", "guarantee_", "shipping_", "sale_", "comparison_")
        ):
            frame[col] = 0.0
    result = assign_drivers(frame, load_config(), ALL_SOURCES)
    assert (result.table["persuasion_driver"] == UNKNOWN).all()
    assert result.reason and "engaged" in result.reason
    assert result.metrics["k"] is None


def test_a_crm_only_brand_gets_unknown_drivers_because_web_and_ads_are_absent():
    frame = planted_frame()
    result = assign_drivers(frame, load_config(), {"web": False, "ads": False})
    assert (result.table["persuasion_driver"] == UNKNOWN).all()
    assert "no web and no ads" in result.reason


def test_drivers_are_still_learned_from_page_views_alone_when_ads_are_absent():
    frame = planted_frame()
    result = assign_drivers(frame, load_config(), {"web": True, "ads": False})
    ari = adjusted_rand_score(frame["planted"], result.table["persuasion_driver"])
    assert ari >= 0.6
    assert result.metrics["sources_used"] == {"web": True, "ads": False}


def test_segment_by_driver_matrix_counts_every_customer_once_in_a_fixed_grid():
    frame = planted_frame()
    drivers = assign_drivers(frame, load_config(), ALL_SOURCES).table
    rng = np.random.default_rng(1)
    segments = pd.DataFrame(
        {
            "customer_id": frame["customer_id"],
            "primary_segment": rng.choice(["ready_to_repeat", DEFAULT_SEGMENT], len(frame)),
        }
    )
    matrix = segment_driver_matrix(segments, drivers)
    assert list(matrix.columns) == list(DRIVERS)
    assert list(matrix.index) == [*SEGMENTS, DEFAULT_SEGMENT]
    assert matrix.to_numpy().sum() == len(frame)
    assert matrix.loc["likely_to_churn"].sum() == 0
    expected = (
        (segments["primary_segment"] == "ready_to_repeat")
        & (drivers["persuasion_driver"] == "proof")
    ).sum()
    assert matrix.loc["ready_to_repeat", "proof"] == expected
