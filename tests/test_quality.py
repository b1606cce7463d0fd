"""Great Expectations suites: pass on good data, name the failure (expectation, observed
value, examples) on bad data, and never count an error as passed."""

import numpy as np
import pandas as pd

from dagster_project.lib import contract
from dagster_project.lib import quality as q

SEGMENTS = ["acquire", "grow", "maintain", "win_back", "do_not_target"]
DRIVERS = list(contract.PERSUASION_THEMES)


def make_segments(n=300, seed=1):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "customer_id": [f"C{i:06d}" for i in range(n)],
        "as_of_date": pd.Timestamp("2025-03-01").date(),
        "primary_segment": [SEGMENTS[i % len(SEGMENTS)] for i in range(n)],
        "persuasion_driver": [DRIVERS[i % len(DRIVERS)] for i in range(n)],
        "churn_score": rng.uniform(0, 1, n),
        "uplift_score": rng.uniform(0, 1, n),
        "run_id": "run-0001",
        "model_versions": '{"churn": "v1"}',
    })


def make_prepared(sizes=None, consent=True):
    sizes = sizes or {"win_back": 120}
    rows = []
    for aud, n in sizes.items():
        for i in range(n):
            rows.append({"audience": aud, "customer_id": f"C{i:06d}", "marketing_consent": consent,
                         "holdout": False, "email_sha256": f"{i:064x}",
                         "phone_google_sha256": None, "country": "DE", "zip": "10115"})
    return pd.DataFrame(rows)


def test_segments_suite_passes_and_counts():
    frame = make_segments()
    ex = q.segments_suite(SEGMENTS, DRIVERS, frame.columns)
    # key not null + unique, segment not null + in set, driver in set, 3 not-null, 2 scores
    assert len(ex) == 10
    res = q.check_segments(frame, SEGMENTS, DRIVERS)
    assert res.success, res.summary_text()
    assert res.n_expectations == 10 + 3  # + row count, size sum, share bounds
    assert any("no previous version" in n for n in res.notes)


def test_bad_segments_name_expectation_observed_and_examples():
    frame = make_segments()
    frame.loc[5, "customer_id"] = frame.loc[4, "customer_id"]   # duplicated customer
    frame.loc[7, "churn_score"] = 1.3                           # score out of range
    frame.loc[9, "primary_segment"] = "vip"                     # not an allowed segment
    res = q.check_segments(frame, SEGMENTS, DRIVERS)
    assert not res.success
    assert res.n_failed == 3
    failed = {(r.type, r.column): r for r in res.failed}
    dup = failed[("expect_column_values_to_be_unique", "customer_id")]
    assert dup.unexpected_examples == ["C000004", "C000004"]
    score = failed[("expect_column_values_to_be_between", "churn_score")]
    assert score.unexpected_examples == [1.3]
    assert "1 unexpected of 300" in score.observed_value
    text = res.summary_text()
    for needle in ("expect_column_values_to_be_unique[customer_id]", "C000004",
                   "expect_column_values_to_be_between[churn_score]", "1.3",
                   "expect_column_values_to_be_in_set[primary_segment]", "vip"):
        assert needle in text


def test_examples_are_capped_at_five():
    frame = make_segments()
    frame.loc[:20, "churn_score"] = 2.0
    res = q.run_suite(frame, "s", q.segments_suite(SEGMENTS, DRIVERS, frame.columns))
    (bad,) = res.failed
    assert len(bad.unexpected_examples) == 5 and bad.unexpected_count == 21


def test_shares_and_size_change():
    frame = make_segments()
    frame.loc[:296, "primary_segment"] = "maintain"  # 99% maintain
    prev = {s: 60 for s in SEGMENTS}
    res = q.check_segments(frame, SEGMENTS, DRIVERS, previous_sizes=prev, max_share=1.0,
                           segment_bounds={"maintain": (0.0, 0.98)}, max_size_change=0.5)
    assert not res.success
    kinds = [(r.type, r.column, r.condition) for r in res.failed]
    assert ("expect_column_values_to_be_between", "share", "segment == 'maintain'") in kinds
    assert "[share] where segment == 'maintain'" in res.summary_text()
    change = next(r for r in res.failed if r.column == "size_change")
    # segment names of the offending rows are reported
    names = {row["segment_name"] for row in change.unexpected_rows}
    assert "maintain" in names and "grow" in names
    assert "no previous version" not in " ".join(res.notes)


def test_size_change_within_bounds_passes():
    frame = make_segments()
    prev = frame["primary_segment"].value_counts().to_dict()
    prev = {k: int(v * 1.2) for k, v in prev.items()}
    res = q.check_segments(frame, SEGMENTS, DRIVERS, previous_sizes=prev)
    assert res.success, res.summary_text()
    assert res.n_expectations == 14


def test_ge_error_never_passes(monkeypatch):
    frame = make_segments().drop(columns=["run_id"])
    res = q.run_suite(frame, "s", q.segments_suite(SEGMENTS, DRIVERS, frame.columns))
    assert not res.success
    err = next(r for r in res.failed if r.column == "run_id")
    assert err.error and "run_id" in err.error
    assert "ERROR" in res.summary_text()

    def boom(*a, **k):
        raise RuntimeError("GE exploded")

    monkeypatch.setattr(q, "_batch_definition", boom)
    res = q.run_suite(make_segments(), "s", q.segments_suite(SEGMENTS, DRIVERS))
    assert not res.success and "GE exploded" in res.error and res.n_failed == res.n_expectations
    empty = q.run_suite(make_segments(), "s", [])
    assert not empty.success and "no expectations" in empty.error


def test_audience_suite():
    good = make_prepared({"win_back": 120, "grow": 150})
    rows_ex, size_ex = q.audience_suite(good.columns, min_size=100)
    # 4 base + 1 hash regex + (email, phone) for email/phone hashes + email for zip, 2 for country
    # + the shape of each unhashed column (country, zip) + no formula start in all 4 columns
    assert len(rows_ex) == 4 + 2 + 2 * 2 + 2 + 1 + 2 + 4 and len(size_ex) == 1
    res = q.check_audiences(good)
    assert res.success, res.summary_text()

    bad = good.copy()
    bad.loc[3, "marketing_consent"] = False                  # opted out
    bad.loc[4, "customer_id"] = bad.loc[5, "customer_id"]      # duplicate within audience
    bad.loc[6, "email_sha256"] = "Someone@Example.com"         # raw email
    bad.loc[7, "phone_google_sha256"] = "+49 30 1234567"        # raw phone
    res = q.check_audiences(bad)
    assert not res.success
    failed = {(r.type, r.column) for r in res.failed}
    assert ("expect_column_values_to_be_in_set", "marketing_consent") in failed
    assert ("expect_compound_columns_to_be_unique", "audience,customer_id") in failed
    assert ("expect_column_values_to_not_match_regex", "email_sha256") in failed
    assert ("expect_column_values_to_match_regex", "phone_google_sha256") in failed
    assert "Someone@Example.com" in res.summary_text()


def test_small_audience_is_a_warning_not_a_block():
    res = q.check_audiences(make_prepared({"win_back": 120, "tiny": 40}))
    assert res.success
    (warn,) = res.warnings
    assert warn.unexpected_rows[0]["audience_name"] == "tiny"
    assert "WARNING" in res.summary_text()


def test_raw_suite_and_reconciliation():
    orders = pd.DataFrame({
        "order_id": ["o1", "o2", "o2"], "customer_id": ["a", None, "c"],
        "ordered_at": pd.to_datetime(["2025-03-01T10:00Z", "2025-03-01T23:00Z",
                                      "2025-03-02T00:00Z"]),
        "currency": "EUR", "gross_amount": [10.0, -1.0, 5.0], "discount_amount": [0.0, 0, 1],
    })
    ex = q.raw_suite(contract.table("crm__orders"), partition_end="2025-03-02",
                     columns=orders.columns)
    res = q.run_suite(orders, "raw.crm__orders", ex)
    assert not res.success
    failed = {(r.type, r.column) for r in res.failed}
    # a negative gross amount is a credit note (data/README.md), not a defect
    assert failed == {("expect_column_values_to_not_be_null", "customer_id"),
                      ("expect_column_values_to_be_unique", "order_id"),
                      ("expect_column_values_to_be_between", "ordered_at")}
    ok = orders.iloc[[0]]
    assert q.run_suite(ok, "raw", ex).success

    counts = pd.DataFrame({"file": ["2025-03-01.csv", "2025-03-02.csv"],
                           "lines_read": [10, 5], "loaded": [9, 4], "quarantined": [1, 0]})
    res = q.run_suite(q.reconciliation_frame(counts), "reconcile", q.reconciliation_suite())
    assert not res.success
    assert res.failed[0].unexpected_rows[0]["file_name"] == "2025-03-02.csv"
    counts.loc[1, "quarantined"] = 1
    assert q.run_suite(q.reconciliation_frame(counts), "reconcile",
                       q.reconciliation_suite()).success


def test_the_raw_suite_takes_credit_note_lines_and_refuses_a_zero_quantity():
    lines = pd.DataFrame({"order_id": ["o1", "Co1", "o2"], "line_number": [1, 1, 1],
                          "sku": "s", "category": "c", "quantity": [2, -2, 1],
                          "unit_price": 5.0, "unit_cost": 3.0})
    ex = q.raw_suite(contract.table("crm__order_lines"), columns=lines.columns)
    assert q.run_suite(lines, "raw.crm__order_lines", ex).success
    lines.loc[2, "quantity"] = 0
    res = q.run_suite(lines, "raw.crm__order_lines", ex)
    assert {(r.type, r.column) for r in res.failed} == {
        ("expect_column_values_to_not_be_in_set", "quantity")}
    returns = pd.DataFrame({"return_id": ["r1"], "order_id": ["o1"], "sku": ["s"],
                            "returned_at": pd.to_datetime(["2025-03-01T10:00Z"]),
                            "quantity": [-1], "refund_amount": [5.0]})
    ex = q.raw_suite(contract.table("returns__returns"), columns=returns.columns)
    assert not q.run_suite(returns, "raw.returns__returns", ex).success  # returns stay > 0


def test_the_check_headline_names_every_failed_expectation():
    """The UI shows the check's description first: all failures, not the first one only."""
    frame = make_segments()
    frame.loc[:296, "primary_segment"] = "maintain"
    prev = {s: 60 for s in SEGMENTS}
    res = q.check_segments(frame, SEGMENTS, DRIVERS, previous_sizes=prev, max_share=1.0,
                           segment_bounds={"maintain": (0.0, 0.98)}, max_size_change=0.5)
    line = res.headline(1000)
    assert len(line) <= 1000
    assert line.startswith(f"segments: FAILED, {res.n_failed} of {res.n_expectations} ")
    assert "[share] where segment == 'maintain'" in line
    assert "[size_change]" in line and "observed=" in line
    ok = q.check_segments(make_segments(), SEGMENTS, DRIVERS)
    assert ok.headline() == f"segments: passed ({ok.n_expectations} expectations)"
    broken = q.SuiteResult("raw", False, 0, 1, error="check raised: boom")
    assert broken.headline() == "raw: FAILED, 1 of 0 expectations: error: check raised: boom"
