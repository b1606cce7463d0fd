"""The discount observer of scripts/model_ceiling.py, on data simulated by its own
assumptions: the claim that it is the best score any model of the order history can reach
on the generator's data (tests/test_models_at_scale.py holds the model to it) rests on it
being the exact posterior, so check that it is."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from dagster_project.synthetic import world as W

from .helpers import load_script


def test_the_discount_observer_is_a_calibrated_posterior_no_worse_than_the_past_share():
    mc = load_script("model_ceiling")
    rng = np.random.default_rng(5)
    n, promo_share = 40_000, 0.1
    md = rng.random(n) < 0.03
    ds = rng.beta(2, 5, n)
    gain = promo_share * (1 + W.PROMO_HAZARD_GAIN * ds)
    t = np.where(md, promo_share, gain / (gain + 1 - promo_share))

    def orders(k):
        promo = rng.random(k.size) < t
        p = np.where(md, W.MARGIN_DESTROYER_DISCOUNT, W.discount_probability(ds, promo))
        return promo, rng.random(k.size) < p

    k = 1 + rng.poisson(1.5, n)
    counts = {c: np.zeros(n, int) for c in ("promo_disc", "promo_full", "off_disc", "off_full")}
    for j in range(k.max()):
        promo, disc = orders(k)
        has = j < k
        counts["promo_disc"] += has & promo & disc
        counts["promo_full"] += has & promo & ~disc
        counts["off_disc"] += has & ~promo & disc
        counts["off_full"] += has & ~promo & ~disc
    y = orders(k)[1].astype(float)  # the next order
    counts = pd.DataFrame(counts)
    score = mc.discount_posterior(counts, ds[~md], float(md.mean()), promo_share).to_numpy()

    assert abs(score.mean() - y.mean()) < 0.01
    deciles = pd.qcut(score, 10, labels=False, duplicates="drop")
    cal = pd.DataFrame({"s": score, "y": y}).groupby(deciles).mean()
    print(cal.round(3).to_string())
    assert ((cal["s"] - cal["y"]).abs() < 0.03).all()
    past_share = (counts["promo_disc"] + counts["off_disc"]) / k
    observer_auc, share_auc = roc_auc_score(y, score), roc_auc_score(y, past_share)
    print(f"observer AUC {observer_auc:.4f}, past share AUC {share_auc:.4f}")
    assert observer_auc >= share_auc - 0.003
