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
import pandas as pd
from scipy.optimize import minimize
from scipy.special import gammaln

from dagster_project.lib.features import BGNBD_FEATURES


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
    ok = np.isfinite(x) & np.isfinite(t_x) & np.isfinite(T)
    # repeat purchases and times grouped: the likelihood depends on the triple only
    triples, counts = np.unique(np.column_stack([x[ok], t_x[ok], T[ok]]), axis=0,
                                return_counts=True)
    return fit_grouped(*triples.T, counts)


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


# BG/NBD's outputs as model features (features.BGNBD_FEATURES): at each date the four
# parameters are fitted on every customer's (x, t_x, T) at that date (customer_features,
# point-in-time), and each row gets its P(alive) and P(purchase within 7 / 30 / 90 days). The
# gradient-boosted models then start from what BG/NBD knows about a sparse history instead of
# relearning it per shop (lib/propensity.py, Offset).
DERIVED_HORIZONS = {f"bgnbd_p_purchase_{h}d": float(h) for h in (7, 30, 90)}

# one row per (date, x, t_x, T) with its count: the likelihood depends on the triple only,
# so the fit reads a small aggregate, never the customer table; at most $max_customers per
# date (sampled by id hash) keep the fit's cost bounded at any base size
GROUPED_SQL = """
with f as (
    select as_of_date, customer_id, orders_lifetime - 1 as x, recency_span_days as t_x,
           days_since_first_order as big_t,
           count(*) over (partition by as_of_date) as n
    from marts.customer_features
    where as_of_date in (select unnest($dates::date[])) and orders_lifetime >= 1
)
select as_of_date, x::double as x, t_x::double as t_x, big_t::double as big_t,
       count(*) as customers
from f
where n <= $max_customers or md5_number(customer_id) % n < $max_customers
group by all
order by all
"""


def fit_grouped(x, t_x, T, counts) -> BGNBD:
    """``fit`` on (x, t_x, T) triples given with their customer counts (customers without
    an order, NaN, and impossible triples left out)."""
    x, t_x, T = _arrays(x, t_x, T)
    counts = np.asarray(counts, dtype=float)
    ok = np.isfinite(x) & np.isfinite(t_x) & np.isfinite(T) & (x >= 0) & (t_x <= T)
    n = int(counts[ok].sum())
    if n < 10:
        raise ValueError(f"BG/NBD needs at least 10 customers with an order, got {n}")
    x, t_x, T, counts = x[ok], t_x[ok], T[ok], counts[ok]

    def nll(theta):
        r, alpha, a, b = np.exp(theta)
        return -float(np.sum(counts * log_likelihood(BGNBD(r, alpha, a, b), x, t_x, T)))

    start = np.log([1.0, max(float(np.average(T, weights=counts)), 1.0), 1.0, 1.0])
    res = minimize(nll, start, method="L-BFGS-B", bounds=[(-8.0, 8.0), (-8.0, 12.0),
                                                        (-8.0, 8.0), (-8.0, 8.0)])
    r, alpha, a, b = np.exp(res.x)
    return BGNBD(float(r), float(alpha), float(a), float(b), n_customers=n)


def params_at(con, dates, max_customers: int = 200_000) -> dict:
    """BG/NBD fitted at each date on customer_features (dates with fewer than 10 customers
    with an order are left out: their rows get NaN features)."""
    dates = sorted(set(dates))
    if not dates:
        return {}
    g = con.execute(GROUPED_SQL, {"dates": dates, "max_customers": max_customers}).df()
    out = {}
    for d, part in g.groupby("as_of_date", sort=True):
        try:
            out[pd.Timestamp(d).date()] = fit_grouped(part["x"], part["t_x"], part["big_t"],
                                                      part["customers"])
        except ValueError:
            continue
    return out


def add_features(frame, params: dict, date_col: str):
    """``frame`` with the BGNBD_FEATURES columns, each row scored by the parameters of its date
    (NaN without an order or without parameters for the date)."""
    out = frame.copy()
    for c in BGNBD_FEATURES:
        out[c] = np.nan
    dates = pd.to_datetime(out[date_col]).dt.date
    for d, p in params.items():
        rows = (dates == d).to_numpy()
        if not rows.any():
            continue
        x, t_x, T = from_features(out.loc[rows])
        out.loc[rows, "bgnbd_p_alive"] = p_alive(p, x, t_x, T)
        for c, h in DERIVED_HORIZONS.items():
            out.loc[rows, c] = p_purchase(p, x, t_x, T, h)
    return out
