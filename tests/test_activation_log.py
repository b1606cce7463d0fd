"""The activation log that incrementality reads (the published audience history united with
the source log, the source winning on the same key) and the organic inevitables' holdout
evidence, on a small hand-built DuckDB warehouse."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from dagster_project.lib import measurement as M

D = dt.date(2025, 6, 30)
A1, A2 = dt.date(2025, 5, 1), dt.date(2025, 5, 8)  # windows complete by D


def _orders(rows: list[tuple]) -> pd.DataFrame:
    """(customer_id, order_date, visible_from, is_paid_touch) -> intermediate.int_orders__economics."""
    f = pd.DataFrame(rows, columns=["customer_id", "order_date", "visible_from", "is_paid_touch"])
    f.insert(0, "order_id", [f"O{i}" for i in range(len(f))])
    f["net_revenue_rc"] = 50.0
    f["fx_missing"] = False
    return f


def _source_log(rows: list[tuple]) -> pd.DataFrame:
    f = pd.DataFrame(rows, columns=["activation_date", "customer_id", "segment", "test_group"])
    f["audience"] = f["segment"] + "_email"
    f["channel"] = "email"
    f["is_holdout"] = f["test_group"] == "holdout"
    f["landed_date"] = f["activation_date"]
    return f


def _published(rows: list[tuple]) -> pd.DataFrame:
    f = pd.DataFrame(rows, columns=["as_of_date", "customer_id", "audience", "holdout"])
    f["audience_kind"] = "activation"
    f["run_id"] = "r1"
    return f


TABLES = {  # the columns the measurement SQL reads, typed as dbt and publish write them
    "intermediate.int_orders__economics": "order_id varchar, customer_id varchar, "
        "order_date date, visible_from date, is_paid_touch boolean, net_revenue_rc double, "
        "fx_missing boolean",
    "staging.stg_marketing__activation_log": "activation_date date, customer_id varchar, "
        "segment varchar, test_group varchar, audience varchar, channel varchar, "
        "is_holdout boolean, landed_date date",
    "published.audiences_history": "as_of_date date, customer_id varchar, audience varchar, "
        "holdout boolean, audience_kind varchar, run_id varchar",
}


def _warehouse(path, orders=None, source=None, published=None) -> duckdb.DuckDBPyConnection:
    """A DuckDB file with the given relations only (None: the relation does not exist)."""
    con = duckdb.connect(str(path / "w.duckdb"))
    for table, frame in zip(TABLES, (orders, source, published), strict=True):
        if frame is None:
            continue
        con.execute(f"create schema if not exists {table.split('.')[0]}")
        con.execute(f"create table {table} ({TABLES[table]})")
        if len(frame):
            con.register("f", frame)
            con.execute(f"insert into {table} by name select * from f")
            con.unregister("f")
    return con


def _bought(customers, day):
    """One order the day after ``day`` (inside the outcome window) per customer, unpaid."""
    after = day + dt.timedelta(days=1)
    return [(c, after, after, False) for c in customers]


def _activations(prefix: str, day: dt.date, segment: str, n_t: int, n_h: int):
    return ([(day, f"{prefix}t{i}", segment, "treated") for i in range(n_t)]
            + [(day, f"{prefix}h{i}", segment, "holdout") for i in range(n_h)])


# --------------------------------------------------------------------------- the union log
def test_published_history_alone_is_the_activation_log(tmp_path):
    pub = _published([(a, c, s, g == "holdout")
                      for a, c, s, g in _activations("p", A1, "ready_to_repeat", 6, 4)]
                     + [(A1, "x1", "suppress_margin_destroyer", False)])
    pub.loc[pub["audience"].str.startswith("suppress_"), "audience_kind"] = "suppression"
    con = _warehouse(tmp_path, orders=_orders(_bought(["pt0", "pt1", "pt2", "ph0"], A1)),
                     published=pub)
    assert M.activation_log_sources(con, D) == {M.PUBLISHED_LOG: 10}  # suppressions are no log
    log = con.execute(M.activation_log_sql([M.PUBLISHED_LOG]), {"as_of": D}).df()
    assert set(log["segment"]) == {"ready_to_repeat"} and len(log) == 10
    assert (log.groupby("test_group").size() == pd.Series({"holdout": 4, "treated": 6})).all()
    inc, contributed = M.measure_incrementality(con, D, min_per_group=2)
    assert contributed == {M.PUBLISHED_LOG: 10}
    r = inc.set_index("segment").loc["ready_to_repeat"]
    assert r.status == "ok" and (r.n_treated, r.n_holdout) == (6, 4)
    assert r.conversion_treated == pytest.approx(3 / 6) and r.conversion_holdout == pytest.approx(1 / 4)
    # point in time: a partition before the history sees no log
    assert M.activation_log_sources(con, A1 - dt.timedelta(days=1)) == {}


def test_source_log_alone_is_the_activation_log(tmp_path):
    src = _source_log(_activations("s", A1, "likely_to_churn", 5, 5))
    late = _source_log([(A2, "late", "likely_to_churn", "treated")])
    late["landed_date"] = D + dt.timedelta(days=1)  # landed after the partition: not seen
    con = _warehouse(tmp_path, orders=_orders(_bought(["st0", "st1"], A1)),
                     source=pd.concat([src, late], ignore_index=True))
    inc, contributed = M.measure_incrementality(con, D, min_per_group=2)
    assert contributed == {M.SOURCE_LOG: 10}
    r = inc.set_index("segment").loc["likely_to_churn"]
    assert (r.n_treated, r.n_holdout) == (5, 5) and r.conversion_treated == pytest.approx(0.4)


def test_with_both_sources_the_source_row_wins_on_the_same_key(tmp_path):
    # published says c1 was treated on A1 in ready_to_repeat, the source log says held out
    pub = _published([(A1, "c1", "ready_to_repeat", False), (A1, "c2", "ready_to_repeat", True),
                      (A2, "c1", "deal_triggered", False)])
    src = _source_log([(A1, "c1", "ready_to_repeat", "holdout"),
                       (A1, "c3", "ready_to_repeat", "treated")])
    con = _warehouse(tmp_path, orders=_orders([]), source=src, published=pub)
    assert M.activation_log_sources(con, D) == {M.PUBLISHED_LOG: 3, M.SOURCE_LOG: 2}
    log = con.execute(M.activation_log_sql(M.ACTIVATION_LOG_SOURCES), {"as_of": D}).df()
    log = log.set_index(["activation_date", "customer_id", "segment"]).sort_index()
    assert not log.index.duplicated().any() and len(log) == 4
    c1 = log.loc[(pd.Timestamp(A1), "c1", "ready_to_repeat")]
    assert (c1.test_group, c1.log_source) == ("holdout", M.SOURCE_LOG)
    assert log.loc[(pd.Timestamp(A2), "c1", "deal_triggered"), "log_source"] == M.PUBLISHED_LOG
    _, contributed = M.measure_incrementality(con, D, min_per_group=1)
    assert contributed == {M.SOURCE_LOG: 2, M.PUBLISHED_LOG: 2}
    assert M.describe_sources(contributed) == (
        f"{M.PUBLISHED_LOG} (2 rows) + {M.SOURCE_LOG} (2 rows)")


def test_without_any_log_every_segment_says_there_is_none_yet(tmp_path):
    segments = ["likely_to_churn", "ready_to_repeat"]
    for case, kw in (("absent", {}),
                     ("empty", {"source": _source_log([]),
                                "published": _published([(D + dt.timedelta(days=1), "c", "x", False)])})):
        path = tmp_path / case
        path.mkdir()
        con = _warehouse(path, orders=_orders([]), **kw)
        inc, contributed = M.measure_incrementality(con, D, segments=segments)
        assert contributed == {} and M.describe_sources(contributed) == "none", case
        assert list(inc["segment"]) == segments and (inc["status"] == M.NO_LOG).all(), case
        assert list(inc.columns) == M.INCREMENTALITY_COLUMNS
        assert M.organic_inevitable_evidence(con, D, min_orders_365d=3, min_unpaid_share=1.0) is None
    with pytest.raises(ValueError):
        M.activation_log_sql([])


# --------------------------------------------------------------------------- organic evidence
def _history(customer: str, day: dt.date, n: int, paid: int = 0, visible_late: int = 0):
    """``n`` orders in the 300 days before ``day`` (the first ``paid`` with a paid touch, the
    last ``visible_late`` landing only after ``day``)."""
    rows = []
    for i in range(n):
        d = day - dt.timedelta(days=300 - 30 * i)
        rows.append((customer, d, day + dt.timedelta(days=2) if i >= n - visible_late else d, i < paid))
    return rows


def test_organic_profile_is_judged_on_the_history_visible_at_the_first_activation(tmp_path):
    orders = (_history("organic", A1, 4) + _history("paid_once", A1, 4, paid=1)
              + _history("too_few", A1, 2) + _history("late_landed", A1, 4, visible_late=2)
              + _history("old_history", A1, 3) + _history("later_first", A2, 5)
              # bought 3 times only after its activation: not the profile at the time
              + [("after", A1 + dt.timedelta(days=k), A1 + dt.timedelta(days=k), False)
                 for k in (1, 2, 3)])
    orders = _orders(orders)
    old = orders["customer_id"] == "old_history"  # its orders are more than a year old
    orders.loc[old, ["order_date", "visible_from"]] = pd.Timestamp(A1 - dt.timedelta(days=400))
    src = _source_log([(A1, c, "ready_to_repeat", "treated")
                       for c in ("organic", "paid_once", "too_few", "late_landed", "old_history",
                                 "after")]
                      + [(A2, "later_first", "deal_triggered", "holdout"),
                         (A2 + dt.timedelta(days=7), "organic", "likely_to_churn", "holdout"),
                         (D, "today", "ready_to_repeat", "treated")])
    con = _warehouse(tmp_path, orders=orders, source=src)
    sql = M.organic_profile_members_sql(M.activation_log_sql([M.SOURCE_LOG]))
    m = con.execute(sql, {"as_of": D, "min_orders_365d": 3, "min_unpaid_share": 1.0}).df()
    m = m.set_index("customer_id")
    assert set(m.index) == {"organic", "later_first"}
    # the first activation counts, with its group and segment
    assert m.loc["organic", "test_group"] == "treated"
    assert m.loc["organic", "activated_segment"] == "ready_to_repeat"
    assert (m["segment"] == M.ORGANIC_SEGMENT).all() and (m["unpaid_order_share"] == 1.0).all()
    assert m.loc["later_first", "orders_365d"] == 5
    # a lower bar on unpaid share lets the customer with one paid order in
    m2 = con.execute(sql, {"as_of": D, "min_orders_365d": 3, "min_unpaid_share": 0.7}).df()
    assert set(m2["customer_id"]) == {"organic", "later_first", "paid_once"}


def test_organic_evidence_measures_treated_against_held_out_organic_profile_customers(tmp_path):
    rng = np.random.default_rng(0)
    n_t, n_h = 300, 100
    ids_t, ids_h = [f"t{i}" for i in range(n_t)], [f"h{i}" for i in range(n_h)]
    hist = [r for c in ids_t + ids_h for r in _history(c, A1, 4)]
    # paid media moves them: 80% of the treated buy in the window, 20% of the held out
    buy = [c for c in ids_t if rng.random() < 0.8] + [c for c in ids_h if rng.random() < 0.2]
    # ordinary (paid-touch) customers who convert the other way round: not in the subgroup
    others = [f"o{i}" for i in range(100)]
    hist += [r for c in others for r in _history(c, A1, 4, paid=2)]
    src = _source_log([(A1, c, "ready_to_repeat", "treated") for c in ids_t]
                      + [(A1, c, "ready_to_repeat", "holdout") for c in ids_h]
                      + [(A1, c, "ready_to_repeat", "holdout" if i < 80 else "treated")
                         for i, c in enumerate(others)])
    con = _warehouse(tmp_path, orders=_orders(hist + _bought(buy + others[:80], A1)), source=src)
    ev = M.organic_inevitable_evidence(con, D, min_orders_365d=3, min_unpaid_share=1.0)
    assert ev["status"] == "ok" and (ev["n_treated"], ev["n_holdout"]) == (n_t, n_h)
    assert ev["lo"] > 0.5 and ev["lo"] < ev["relative_lift"] < ev["hi"]
    assert ev["log_sources"] == {M.SOURCE_LOG: n_t + n_h}
    # too few held out for the threshold: no estimate, the counts say why
    few = M.organic_inevitable_evidence(con, D, min_orders_365d=3, min_unpaid_share=1.0,
                                        min_per_group=150)
    assert few["status"].startswith(M.NOT_ENOUGH) and few["relative_lift"] is None
    assert (few["n_treated"], few["n_holdout"]) == (n_t, n_h)
    # nobody activated has the profile: not enough data, zero counts
    none = M.organic_inevitable_evidence(con, D, min_orders_365d=50, min_unpaid_share=1.0)
    assert none["status"].startswith(M.NOT_ENOUGH) and none["n_treated"] == 0
