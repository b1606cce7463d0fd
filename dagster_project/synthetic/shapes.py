"""Shop exports shaped like real ones, for testing outside the main generator's world.

The main generator (``generate.py``) plants rich traits across every source. Real shops'
exports look different, and the pipeline must hold up on them: CRM only, one currency, an
acquisition cohort that stops growing, wholesale invoices with credit notes, purchase dates
with no amounts worth the name, histories that ended years ago. This module writes three such
shapes in the input contract (``data/raw/<source>/<table>/<landing day>.csv``):

- ``cohort``: one acquisition cohort (every first order within one quarter), one currency
  (GBP), amounts only (one category for everything), 18 months of history;
- ``wholesale``: invoices with dozens of lines, a few customers whose orders are ~100x the
  median, one dominant country, cancellations exported as credit-note invoices with negative
  quantities, a day with no orders, 18 months of history ending in 2011;
- ``dates_only``: purchase dates only (every amount the same, quantity 1), ~1,500 customers.

The buying process is deliberately *not* the main generator's and not a textbook BG/NBD
either: inter-purchase gaps are gamma-distributed with a per-customer regularity (real buyers
are more regular than Poisson), the rate follows a yearly season, the chance of dropping out
after an order shrinks as a customer's history grows, and big spenders stay longer. Nothing
here is read by the pipeline except the CSVs; ``truth.parquet`` (each customer's rate,
regularity and dropout time) goes to ``truth``.

``python -m dagster_project.synthetic.shapes --shape cohort --out DIR/raw --truth DIR/truth``
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from dagster_project.lib.contract import BY_NAME

from .formatting import S as _S
from .formatting import ids as _ids

SHAPES = ("cohort", "wholesale", "dates_only")


@dataclass(frozen=True)
class Shape:
    name: str
    customers: int
    start: date
    end: date
    currency: str
    country: str  # the dominant country
    acquisition_days: int | None  # None: acquisition spread over the history
    mean_gap_days: float  # population mean gap between orders
    lines_per_order: float  # mean number of lines (1 = amounts only)
    categories: int  # distinct categories (1 = no categories worth the name)
    constant_amount: float | None  # every order the same amount (dates only)
    credit_note_share: float = 0.0  # invoices followed by a cancellation invoice
    whales: int = 0  # customers whose orders are ~100x the median
    empty_days: tuple[date, ...] = ()  # days on which no orders were taken


DEFAULTS: dict[str, Shape] = {
    "cohort": Shape("cohort", 3000, date(2023, 1, 1), date(2024, 6, 30), "GBP", "GB", 90,
                    mean_gap_days=75.0, lines_per_order=1.0, categories=1,
                    constant_amount=None),
    "wholesale": Shape("wholesale", 2500, date(2010, 6, 1), date(2011, 12, 9), "GBP", "GB",
                       None, mean_gap_days=40.0, lines_per_order=18.0, categories=12,
                       constant_amount=None, credit_note_share=0.03, whales=6,
                       empty_days=(date(2010, 12, 25), date(2011, 4, 24))),
    "dates_only": Shape("dates_only", 1500, date(2021, 1, 1), date(2022, 12, 31), "USD", "US",
                        None, mean_gap_days=90.0, lines_per_order=1.0, categories=1,
                        constant_amount=10.0),
}


def _season(days: np.ndarray) -> np.ndarray:
    """Buying intensity through the year: a November-December peak, a summer lull."""
    doy = pd.DatetimeIndex(days).day_of_year.to_numpy()
    return 1.0 + 0.8 * np.exp(-(((doy - 335) / 18.0) ** 2)) - 0.25 * np.exp(-(((doy - 200) / 30.0) ** 2))


def simulate(shape: Shape, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Customers (one row each, with their planted process) and orders (customer, day)."""
    rng = np.random.default_rng(seed)
    n = shape.customers
    n_days = (shape.end - shape.start).days + 1
    cal = pd.date_range(shape.start, shape.end, freq="D")
    season = _season(cal.values)
    # operational time: the season stretches and shrinks calendar time
    op_clock = np.concatenate([[0.0], np.cumsum(season)])  # op time at the start of each day

    if shape.acquisition_days is not None:
        birth = rng.integers(0, shape.acquisition_days, n)
    else:  # a growing shop: more first orders later in the history
        birth = np.floor(n_days * np.sqrt(rng.random(n)) * 0.97).astype(int)
    # heterogeneous rates (gamma), regularity (Erlang order), value and dropout
    rate = rng.gamma(0.9, 1.0 / 0.9, n) / shape.mean_gap_days
    regularity = rng.choice([1, 2, 3, 5], n, p=[0.35, 0.3, 0.2, 0.15])
    value = np.exp(rng.normal(0.0, 0.6, n))  # relative order value
    p_drop = np.clip(rng.beta(1.2, 4.0, n) / np.sqrt(value), 0.01, 0.9)
    whale = np.zeros(n, bool)
    if shape.whales:
        whale[rng.choice(n, shape.whales, replace=False)] = True
        rate[whale] = 1.0 / 10.0
        regularity[whale] = 5
        p_drop[whale] = 0.005
    max_orders = 120
    gaps = rng.gamma(regularity[:, None], 1.0 / (regularity[:, None] * rate[:, None]), (n, max_orders - 1))
    start_op = op_clock[birth] + rng.random(n) * season[birth]
    op_times = start_op[:, None] + np.concatenate([np.zeros((n, 1)), np.cumsum(gaps, axis=1)], axis=1)
    # dropout after order j with probability p_drop / (1 + 0.25 j): loyalty builds
    j = np.arange(max_orders)[None, :]
    drops = rng.random((n, max_orders)) < p_drop[:, None] / (1.0 + 0.25 * j)
    dead_after = np.where(drops.any(axis=1), drops.argmax(axis=1), max_orders)  # last order index
    alive = j <= dead_after[:, None]
    day = np.searchsorted(op_clock, op_times, side="right") - 1
    keep = alive & (day < n_days)
    cust_idx, order_no = np.nonzero(keep)
    orders = pd.DataFrame({"c": cust_idx, "day": day[keep], "n": order_no})
    if shape.empty_days:
        empty = np.array([(d - shape.start).days for d in shape.empty_days])
        moved = orders["day"].isin(empty)
        orders.loc[moved, "day"] += 1  # the shop was closed; those buyers came the next day
    customers = pd.DataFrame({
        "c": np.arange(n), "birth_day": birth, "rate_per_day": rate, "regularity": regularity,
        "relative_value": value, "p_drop": p_drop, "whale": whale, "orders_made": keep.sum(axis=1),
        "dropped_after_order": np.where(dead_after < max_orders, dead_after, -1)})
    return customers, orders.sort_values(["day", "c", "n"], kind="stable").reset_index(drop=True)


def _ts(start: date, day: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    t = pd.Timestamp(start) + pd.to_timedelta(day, unit="D") + pd.to_timedelta(seconds, unit="s")
    return t.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy()


def tables(shape: Shape, seed: int) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The contract's CRM tables (with a `_land` column: the landing day) and the truth."""
    rng = np.random.default_rng(seed + 1)
    cust, orders = simulate(shape, seed)
    buyers = np.sort(orders["c"].unique())
    cust = cust[cust["c"].isin(buyers)].reset_index(drop=True)
    first_day = orders.groupby("c")["day"].min()
    ids = _ids("K", cust["c"].to_numpy(), 6).astype(object)
    id_of = dict(zip(cust["c"], ids, strict=True))
    created_day = first_day.loc[cust["c"]].to_numpy()
    created_sec = rng.integers(6 * 3600, 22 * 3600, len(cust))
    countries = np.where(rng.random(len(cust)) < 0.9, shape.country,
                         rng.choice(["IE", "FR", "DE", "NL", "ES"], len(cust)))
    consent = np.where(rng.random(len(cust)) < 0.7, "true", "false")
    nums = rng.integers(1_000_000, 9_999_999, len(cust)).astype(str)
    customers = pd.DataFrame({
        "customer_id": ids,
        "email": np.strings.add(_ids("buyer", cust["c"].to_numpy(), 1), "@example.com").astype(object),
        "phone": np.where(rng.random(len(cust)) < 0.5, np.strings.add("+4420", nums.astype(_S)), "").astype(object),
        "first_name": "", "last_name": "", "country": countries, "zip": "",
        "created_at": _ts(shape.start, created_day, created_sec),
        "updated_at": _ts(shape.start, created_day, created_sec),
        "marketing_consent": consent, "_land": created_day})

    n_ord = len(orders)
    order_sec = rng.integers(8 * 3600, 21 * 3600, n_ord)
    oid = _ids("INV", np.arange(n_ord), 7).astype(object)
    value = cust.set_index("c").loc[orders["c"], "relative_value"].to_numpy()
    if shape.lines_per_order > 1:
        n_lines = 1 + rng.poisson(shape.lines_per_order - 1, n_ord)
    else:
        n_lines = np.ones(n_ord, dtype=int)
    line_order = np.repeat(np.arange(n_ord), n_lines)
    line_no = np.concatenate([np.arange(1, k + 1) for k in n_lines]) if n_ord else np.array([], int)
    n_skus = 400 if shape.categories > 1 else 60
    popularity = 1.0 / np.arange(1, n_skus + 1) ** 0.9
    sku_idx = rng.choice(n_skus, len(line_order), p=popularity / popularity.sum())
    sku = _ids("SKU", sku_idx, 5).astype(object)
    category = (_ids("cat_", sku_idx % shape.categories, 1).astype(object)
                if shape.categories > 1 else np.full(len(sku_idx), "all"))
    if shape.constant_amount is not None:
        quantity = np.ones(len(line_order), dtype=int)
        unit_price = np.full(len(line_order), shape.constant_amount)
    else:
        base_price = np.round(np.exp(rng.normal(2.3 if shape.categories > 1 else 3.0, 0.7, n_skus)), 2)
        qty_scale = value[line_order] * (6.0 if shape.categories > 1 else 1.0)
        whale_line = cust.set_index("c").loc[orders["c"], "whale"].to_numpy()[line_order]
        qty_scale = np.where(whale_line, qty_scale * 60.0, qty_scale)
        quantity = 1 + rng.poisson(np.maximum(qty_scale - 1.0, 0.0))
        unit_price = base_price[sku_idx]
    lines = pd.DataFrame({"order_id": oid[line_order], "line_number": line_no, "sku": sku,
                          "category": category, "quantity": quantity,
                          "unit_price": np.round(unit_price, 2),
                          "unit_cost": np.round(unit_price * 0.55, 2)})
    lines["_land"] = orders["day"].to_numpy()[line_order]
    gross = lines.assign(v=lines["quantity"] * lines["unit_price"]).groupby("order_id", sort=False)["v"].sum()
    orders_out = pd.DataFrame({
        "order_id": oid, "customer_id": [id_of[c] for c in orders["c"]],
        "ordered_at": _ts(shape.start, orders["day"].to_numpy(), order_sec),
        "currency": shape.currency, "gross_amount": np.round(gross.loc[oid].to_numpy(), 2),
        "discount_amount": "", "coupon_code": "", "shipping_fee": "", "shipping_cost": "",
        "sales_channel": "", "utm_medium": "", "_land": orders["day"].to_numpy()})

    if shape.credit_note_share:
        # a cancellation: a later invoice "C<original>" with some of its lines negated
        cancelled = np.nonzero(rng.random(n_ord) < shape.credit_note_share)[0]
        delay = rng.integers(0, 6, len(cancelled))
        cday = orders["day"].to_numpy()[cancelled] + delay
        # an hour after the invoice on the same day at the earliest: a cancellation cannot
        # precede what it cancels
        csec = np.minimum(order_sec[cancelled] + 3600, 86_399)
        ok = cday < (shape.end - shape.start).days + 1
        cancelled, cday, csec = cancelled[ok], cday[ok], csec[ok]
        cl = lines[lines["order_id"].isin(oid[cancelled])].copy()
        cl = cl[rng.random(len(cl)) < 0.5]
        cl = cl[cl["order_id"].isin(cl["order_id"].unique())]
        land_of = dict(zip(oid[cancelled], cday, strict=True))
        sec_of = dict(zip(oid[cancelled], csec, strict=True))
        cl["_land"] = cl["order_id"].map(land_of)
        cl["order_id"] = "C" + cl["order_id"]
        cl["quantity"] = -cl["quantity"]
        cl["line_number"] = cl.groupby("order_id").cumcount() + 1
        cg = cl.assign(v=cl["quantity"] * cl["unit_price"]).groupby("order_id")["v"].sum()
        src = orders_out.set_index("order_id").loc[[o[1:] for o in cg.index]]
        credit = pd.DataFrame({
            "order_id": cg.index.to_numpy(), "customer_id": src["customer_id"].to_numpy(),
            "ordered_at": _ts(shape.start, np.array([land_of[o[1:]] for o in cg.index]),
                              np.array([sec_of[o[1:]] for o in cg.index])),
            "currency": shape.currency, "gross_amount": np.round(cg.to_numpy(), 2),
            "discount_amount": "", "coupon_code": "", "shipping_fee": "", "shipping_cost": "",
            "sales_channel": "", "utm_medium": "",
            "_land": np.array([land_of[o[1:]] for o in cg.index])})
        orders_out = pd.concat([orders_out, credit], ignore_index=True)
        lines = pd.concat([lines, cl], ignore_index=True)
    truth = cust.assign(customer_id=ids).drop(columns="c")
    return {"crm__customers": customers, "crm__orders": orders_out, "crm__order_lines": lines}, truth


def write(shape: Shape, out: Path, truth: Path | None = None, seed: int = 7) -> dict:
    """Write the shop's daily drops under `out` (and its truth under `truth`); a summary."""
    frames, planted = tables(shape, seed)
    rows = {}
    for raw_name, df in frames.items():
        t = BY_NAME[raw_name]
        folder = Path(out) / t.source / t.table
        folder.mkdir(parents=True, exist_ok=True)
        for land, part in df.groupby("_land", sort=True):
            day = shape.start + timedelta(days=int(land))
            part[t.column_names].to_csv(folder / f"{day.isoformat()}.csv", index=False)
        rows[raw_name] = len(df)
    if truth is not None:
        Path(truth).mkdir(parents=True, exist_ok=True)
        planted.to_parquet(Path(truth) / "shape_truth.parquet", index=False)
    return {"shape": shape.name, "start": shape.start.isoformat(), "end": shape.end.isoformat(),
            "customers": int(len(planted)), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dagster_project.synthetic.shapes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=SHAPES, required=True)
    p.add_argument("--customers", type=int, default=None, help="default: the shape's own")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--truth", type=Path, default=None)
    a = p.parse_args(argv)
    shape = DEFAULTS[a.shape]
    if a.customers:
        shape = Shape(**{**shape.__dict__, "customers": a.customers})
    json.dump(write(shape, a.out, a.truth, a.seed), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
