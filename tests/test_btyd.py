"""BG/NBD: parameters recovered from data simulated by the model itself, and its purchase
probability calibrated against the simulated future."""

from __future__ import annotations

import numpy as np
import pytest

from dagster_project.lib import btyd

TRUE = btyd.BGNBD(r=0.6, alpha=60.0, a=0.8, b=2.5)


def _simulate(n: int, T_max: float, horizon: float, seed: int):
    """(x, t_x, T) at each customer's cutoff, whether they buy in the next `horizon` days and
    whether they are alive at T."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(TRUE.r, 1 / TRUE.alpha, n)
    p = rng.beta(TRUE.a, TRUE.b, n)
    T = rng.uniform(30, T_max, n)
    x, t_x, future = np.zeros(n), np.zeros(n), np.zeros(n, bool)
    t = np.zeros(n)
    alive = np.ones(n, bool)
    active = np.ones(n, bool)  # still simulating: alive and next purchase before T + horizon
    while active.any():
        t = t + rng.exponential(1 / lam)
        before = active & (t <= T)
        after = active & (t > T) & (t <= T + horizon)
        x[before] += 1
        t_x[before] = t[before]
        future[after] = True
        alive[before] &= rng.random(n)[before] >= p[before]
        active = before & alive
    return x, t_x, T, future, alive


def test_fit_recovers_the_parameters_of_simulated_customers():
    x, t_x, T, _, _ = _simulate(40_000, 720, 30, seed=3)
    got = btyd.fit(x, t_x, T)
    print(got)
    assert got.n_customers == 40_000
    assert got.r == pytest.approx(TRUE.r, rel=0.15)
    assert got.alpha == pytest.approx(TRUE.alpha, rel=0.2)
    assert got.a == pytest.approx(TRUE.a, rel=0.25)
    assert got.b == pytest.approx(TRUE.b, rel=0.3)
    # the fit is a maximum: the true parameters do not score higher
    assert (btyd.log_likelihood(got, x, t_x, T).sum()
            >= btyd.log_likelihood(TRUE, x, t_x, T).sum())


def test_p_purchase_is_calibrated_and_p_alive_is_one_without_repeat_purchases():
    x, t_x, T, future, alive = _simulate(60_000, 720, 30, seed=4)
    p = btyd.p_purchase(TRUE, x, t_x, T, 30)
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    assert abs(p.mean() - future.mean()) < 0.01
    order = np.argsort(p)
    for part in np.array_split(order, 5):
        assert abs(p[part].mean() - future[part].mean()) < 0.02
    pa = btyd.p_alive(TRUE, x, t_x, T)
    assert (pa[x == 0] == 1).all()
    unsure = np.flatnonzero((x > 0) & (pa < 0.98))
    assert len(unsure) > 5000
    for part in np.array_split(unsure[np.argsort(pa[unsure])], 5):
        assert abs(pa[part].mean() - alive[part].mean()) < 0.015
    # more recent last purchase, same x and T: more likely alive
    assert btyd.p_alive(TRUE, [3, 3], [300, 100], [400, 400])[0] > \
        btyd.p_alive(TRUE, [3, 3], [300, 100], [400, 400])[1]


def test_fit_refuses_too_few_customers():
    with pytest.raises(ValueError, match="at least 10"):
        btyd.fit([1, 0], [5, 0], [10, 10])
