"""Point-in-time correctness: data that arrives after a cutoff never changes that cutoff's
features (DESIGN §3). That partitions built in any order give identical features and labels
(and every other table) is shown by tests/test_ops_backfill.py: 7 days run oldest first and
newest first."""

import csv
import datetime as dt
import random
import shutil

import pandas as pd
import pytest

from .helpers import END, build_warehouse, query

CUTOFF = END - dt.timedelta(days=28)  # one of the partition's training cutoffs (step 7)
NUMERIC = {"gross_amount", "discount_amount", "shipping_fee", "shipping_cost", "quantity",
           "unit_price", "unit_cost", "refund_amount", "handle_minutes", "impressions",
           "clicks", "spend", "rate_to_reporting", "return_shipping_cost"}


def _perturb_after(raw, cutoff):
    """Rewrite every file that landed after `cutoff`: scale numbers, reassign customers,
    drop every third row; and delete all web files after the cutoff."""
    rng = random.Random(5)
    customers = []
    for f in sorted((raw / "crm" / "customers").glob("*.csv")):
        with f.open(newline="") as fh:
            customers += [r[0] for r in list(csv.reader(fh))[1:] if r]
    changed = 0
    for f in sorted(raw.rglob("*.csv")):
        if dt.date.fromisoformat(f.stem) <= cutoff:
            continue
        if f.parts[-3] == "web" and rng.random() < 0.5:
            f.unlink()
            changed += 1
            continue
        with f.open(newline="") as fh:
            rows = list(csv.reader(fh))
        header, body = rows[0], rows[1:]
        out = []
        for i, r in enumerate(body):
            if i % 3 == 2 or len(r) != len(header):
                continue
            r = list(r)
            for j, name in enumerate(header):
                if name in NUMERIC and r[j]:
                    try:
                        r[j] = str(round(abs(float(r[j])) * 3 + 1, 2)) if "." in r[j] else str(
                            abs(int(r[j])) * 3 + 1)
                    except ValueError:
                        pass
                if name == "customer_id" and r[j] and f.parts[-2] != "customers":
                    r[j] = rng.choice(customers)
            out.append(r)
        with f.open("w", newline="") as fh:
            csv.writer(fh).writerows([header, *out])
        changed += 1
    return changed


@pytest.fixture(scope="module")
def two_warehouses(dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("leak")
    shutil.copytree(dataset / "raw", root / "raw_a")
    shutil.copytree(dataset / "raw", root / "raw_b")
    changed = _perturb_after(root / "raw_b", CUTOFF)
    assert changed > 100
    sel = "+customer_features"
    build_warehouse(root / "raw_a", root / "a.duckdb", END, select=sel)
    build_warehouse(root / "raw_b", root / "b.duckdb", END, select=sel)
    return root / "a.duckdb", root / "b.duckdb"


def _features(db, as_of):
    df = query(db, "select * from marts.customer_features where as_of_date = ?", [as_of])
    return df.sort_values("customer_id").reset_index(drop=True)


def test_changing_data_after_a_cutoff_leaves_that_cutoffs_features_unchanged(two_warehouses):
    a, b = two_warehouses
    fa, fb = _features(a, CUTOFF), _features(b, CUTOFF)
    assert len(fa) > 1000
    pd.testing.assert_frame_equal(fa, fb)


def test_the_same_change_does_move_the_features_of_the_partition_date(two_warehouses):
    # guards the test above against a perturbation that changes nothing
    a, b = two_warehouses
    fa, fb = _features(a, END), _features(b, END)
    assert not fa.equals(fb)
    assert fa["revenue_lifetime"].sum() != fb["revenue_lifetime"].sum()


def test_a_corrected_file_rebuilds_every_feature_date_that_could_read_it(dataset, tmp_path):
    """Built dates are kept between runs (a nightly run builds one new date); a corrected
    file landed on an already-built date must still reach those dates."""
    raw = tmp_path / "raw"
    shutil.copytree(dataset / "raw", raw)
    db = tmp_path / "w.duckdb"
    build_warehouse(raw, db, END, select="+customer_features")
    before = _features(db, END)
    # correct an orders file that landed 10 days before the partition: triple every amount
    f = raw / "crm" / "orders" / f"{END - dt.timedelta(days=10)}.csv"
    with f.open(newline="") as fh:
        rows = list(csv.reader(fh))
    col = rows[0].index("gross_amount")
    for r in rows[1:]:
        try:
            r[col] = str(round(float(r[col]) * 3, 2))
        except (ValueError, IndexError):
            pass
    with f.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    build_warehouse(raw, db, END, select="+customer_features")
    fresh = tmp_path / "fresh.duckdb"
    build_warehouse(raw, fresh, END, select="+customer_features")
    after = _features(db, END)
    assert not after.equals(before)
    pd.testing.assert_frame_equal(after, _features(fresh, END))
    pd.testing.assert_frame_equal(_features(db, END - dt.timedelta(days=7)),
                                  _features(fresh, END - dt.timedelta(days=7)))
    # a date before the corrected file is untouched and still equal
    pd.testing.assert_frame_equal(_features(db, END - dt.timedelta(days=14)),
                                  _features(fresh, END - dt.timedelta(days=14)))
