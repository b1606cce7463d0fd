"""BG/NBD (Fader, Hardie & Lee 2005), the classic buy-till-you-die model: the purchase
propensity baseline the models are held to beyond the naive one (issue 3).

Per customer, from the order history at a cutoff (times in days): ``x`` repeat purchases
(orders after the first), ``t_x`` the time from the first to the last order, ``T`` the time
from the first order to the cutoff. While alive a customer buys at a Poisson rate
lambda ~ Gamma(r, alpha); after each purchase they drop out with probability
p ~ Beta(a, b). The four parameters are fitted by maximum likelihood on the population.

The score used is P(at least one purchase in the next ``horizon`` days):
P(alive | x, t_x, T) x (1 - ((alpha + T) / (alpha + T + horizon))^(r + x)): given alive at
T, lambda's posterior is Gamma(r + x, alpha + T) and a dropout can only follow a purchase,
so the first purchase after T comes with probability 1 - E[exp(-lambda h)].
Customers without an order are outside the model (NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln


@dataclass(frozen=True)
class BGNBD:
    r: float
    alpha: float
    a: float
    b: float
    n_customers: int = 0


def _arrays(x, t_x, T):
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    if not (x.shape == t_x.shape == T.shape):
        raise ValueError("x, t_x and T must have the same shape")
    return x, t_x, T


def log_likelihood(params: BGNBD, x, t_x, T) -> np.ndarray:
    """Per-customer log-likelihood of (x, t_x, T) under ``params``."""
    x, t_x, T = _arrays(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    a4 = np.full_like(x, -np.inf)
    a4[repeat] = (np.log(a) - np.log(b + x[repeat] - 1)
                  - (r + x[repeat]) * np.log(alpha + t_x[repeat]))
    return a1 + a2 + np.logaddexp(a3, a4)


def fit(x, t_x, T) -> BGNBD:
    """Maximum-likelihood fit (L-BFGS-B on the log-parameters, a fixed start: deterministic)."""
    x, t_x, T = _arrays(x, t_x, T)
    ok = np.isfinite(x) & np.isfinite(t_x) & np.isfinite(T) & (x >= 0) & (t_x <= T)
    if ok.sum() < 10:
        raise ValueError(f"BG/NBD needs at least 10 customers with an order, got {int(ok.sum())}")
    x, t_x, T = x[ok], t_x[ok], T[ok]
    # repeat purchases and times grouped: the likelihood depends on the triple only
    triples, counts = np.unique(np.column_stack([x, t_x, T]), axis=0, return_counts=True)
    gx, gt, gT = triples.T

    def nll(theta):
        r, alpha, a, b = np.exp(theta)
        return -float(np.sum(counts * log_likelihood(BGNBD(r, alpha, a, b), gx, gt, gT)))

    start = np.log([1.0, max(float(np.mean(T)), 1.0), 1.0, 1.0])
    res = minimize(nll, start, method="L-BFGS-B", bounds=[(-8.0, 8.0), (-8.0, 12.0),
                                                        (-8.0, 8.0), (-8.0, 8.0)])
    r, alpha, a, b = np.exp(res.x)
    return BGNBD(float(r), float(alpha), float(a), float(b), n_customers=int(ok.sum()))


def p_alive(params: BGNBD, x, t_x, T) -> np.ndarray:
    x, t_x, T = _arrays(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    odds = np.zeros_like(x)
    repeat = x > 0
    odds[repeat] = (a / (b + x[repeat] - 1)) * (
        (alpha + T[repeat]) / (alpha + t_x[repeat])) ** (r + x[repeat])
    out = 1.0 / (1.0 + odds)
    return np.where(np.isfinite(x) & np.isfinite(T), out, np.nan)


def p_purchase(params: BGNBD, x, t_x, T, horizon: float) -> np.ndarray:
    """P(at least one purchase in (T, T + horizon]) per customer; NaN without an order."""
    x, t_x, T = _arrays(x, t_x, T)
    r, alpha = params.r, params.alpha
    buys = 1.0 - ((alpha + T) / (alpha + T + horizon)) ** (r + x)
    return p_alive(params, x, t_x, T) * buys


# The customer_features columns that give (x, t_x, T): lifetime orders, first-to-last order
# days, days since the first order (NaN without an order).
FEATURES = ("orders_lifetime", "recency_span_days", "days_since_first_order")


def from_features(df) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    orders, t_x, T = (df[c].to_numpy(dtype=float, na_value=np.nan) for c in FEATURES)
    x = orders - 1
    none = ~(x >= 0)
    return tuple(np.where(none, np.nan, v) for v in (x, t_x, T))
