"""The synthetic source generator: determinism, layout, planted defects and planted truth."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dagster_project.lib.contract import TABLES
from dagster_project.synthetic import Config, generate
from dagster_project.synthetic.messiness import KINDS

START, END = date(2025, 1, 1), date(2025, 4, 30)
N = 1500


def _config(root: Path, **kw) -> Config:
    return Config(customers=kw.pop("customers", N), start=START, end=END, seed=kw.pop("seed", 7),
                  messiness=kw.pop("messiness", 0.01), out=root / "raw", truth=root / "truth", **kw)


def _tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    summary = generate(_config(root, missing_column="crm__orders:gross_amount"))
    return root, summary


def _orders(raw: Path) -> pd.DataFrame:
    """customer_id and order day of every well-formed order row in the drops."""
    rows = []
    for f in sorted((raw / "crm" / "orders").glob("*.csv")):
        reader = csv.DictReader(io.StringIO(f.read_text()))
        for r in reader:
            try:
                ts = datetime.fromisoformat(r["ordered_at"])
            except (TypeError, ValueError):
                continue
            rows.append((r["order_id"], r["customer_id"], ts.date(), r.get("utm_medium")))
    return pd.DataFrame(rows, columns=["order_id", "customer_id", "day", "utm_medium"]).drop_duplicates("order_id")


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path):
    generate(_config(tmp_path / "a", customers=600))
    generate(_config(tmp_path / "b", customers=600))
    generate(_config(tmp_path / "c", customers=600, seed=8))
    a, b, c = (_tree_hashes(tmp_path / x) for x in "abc")
    for x in (a, b, c):  # the summary records the (different) output paths; compare it apart
        del x["truth/summary.json"]
    sa, sb = (json.loads((tmp_path / x / "truth" / "summary.json").read_text()) for x in "ab")
    assert {k: v for k, v in sa.items() if k != "config"} == {k: v for k, v in sb.items() if k != "config"}
    assert len(a) > 100
    assert a == b
    assert a != c


def test_truth_is_written_apart_and_the_out_tree_holds_only_source_tables(run):
    root, _ = run
    raw, truth = root / "raw", root / "truth"
    known = {(t.source, t.table) for t in TABLES}
    for p in raw.rglob("*"):
        if p.is_file():
            source, table, name = p.relative_to(raw).parts
            assert (source, table) in known
            assert date.fromisoformat(name.removesuffix(".csv")) <= END
    expected = {
        "customers.parquet": {"customer_id", "persuasion_driver", "discount_sensitivity",
                              "return_propensity", "ad_responsiveness", "organic_propensity",
                              "trust_friction", "buying_mode", "base_hazard", "marketing_consent",
                              "is_organic_inevitable", "is_margin_destroyer", "is_creative_resistant"},
        "purchase_probability.parquet": {"customer_id", "cutoff_date", "p_purchase_7d", "p_purchase_30d",
                                         "alive", "p_alive_observed", "p_purchase_30d_observed"},
        "defects.parquet": {"kind", "source", "table", "file", "line", "column", "key", "detail"},
        "channel_curves.parquet": {"channel", "reach_max", "half_saturation_spend", "hill_shape"},
    }
    for name, cols in expected.items():
        df = pd.read_parquet(truth / name)
        assert cols <= set(df.columns), name
        assert len(df) > 0, name
    s = json.loads((truth / "summary.json").read_text())
    assert s["rows"]["crm__orders"] > 0 and "generator_version" in s
    assert s["archetypes"]["margin_destroyer"] == round(0.03 * N)


def test_every_csv_header_is_the_contract_except_the_file_missing_a_column(run):
    root, _ = run
    raw = root / "raw"
    missing = raw / "crm" / "orders" / f"{END.isoformat()}.csv"
    for t in TABLES:
        files = sorted((raw / t.source / t.table).glob("*.csv"))
        assert files, t.raw_name
        for f in files:
            header = f.read_text().split("\n", 1)[0].split(",")
            if f == missing:
                assert header == [c for c in t.column_names if c != "gross_amount"]
            else:
                assert header == t.column_names, f
    defects = pd.read_parquet(root / "truth" / "defects.parquet")
    mc = defects[defects.kind == "missing_column"]
    assert mc[["table", "column", "file"]].values.tolist() == [["orders", "gross_amount", f"crm/orders/{END}.csv"]]


def test_every_defect_kind_is_injected_and_each_record_points_at_its_line(run):
    root, _ = run
    defects = pd.read_parquet(root / "truth" / "defects.parquet")
    assert set(defects.kind) == set(KINDS)
    lines: dict[str, list[str]] = {}
    rows = defects[defects.kind != "missing_column"]
    assert rows.line.min() >= 2
    for rec in rows.itertuples():
        if rec.file not in lines:
            lines[rec.file] = (root / "raw" / rec.file).read_text().split("\n")
        line = lines[rec.file][int(rec.line) - 1]
        assert all(part in line for part in rec.key.split("|")), (rec.kind, rec.file, rec.line, rec.key)
        if rec.kind == "malformed_row" and pd.isna(rec.column):
            header = lines[rec.file][0]
            assert len(next(csv.reader([line]))) == len(header.split(",")) + 1
    # the rate is respected roughly: ~1% of rows per kind, not more than a few %
    n_rows = sum(len(v) - 2 for v in lines.values())
    assert (rows.kind == "malformed_row").sum() < 0.05 * max(n_rows, 1) + 50


def test_defective_lines_do_not_break_the_csv_for_other_rows(run):
    root, _ = run
    defects = pd.read_parquet(root / "truth" / "defects.parquet")
    extra = set(zip(defects.file[defects.kind == "malformed_row"], defects.line[defects.kind == "malformed_row"]))
    for t in TABLES:
        for f in sorted((root / "raw" / t.source / t.table).glob("*.csv")):
            rows = list(csv.reader(io.StringIO(f.read_text(), newline="")))
            rel = str(f.relative_to(root / "raw"))
            for i, r in enumerate(rows[1:], start=2):
                assert len(r) == len(rows[0]) or (rel, i) in extra, (rel, i)


def test_true_purchase_probabilities_are_probabilities_and_predict_purchases(run):
    root, _ = run
    pp = pd.read_parquet(root / "truth" / "purchase_probability.parquet")
    assert pp.p_purchase_7d.between(0, 1).all() and pp.p_purchase_30d.between(0, 1).all()
    assert (pp.p_purchase_7d <= pp.p_purchase_30d + 1e-12).all()
    assert pp.cutoff_date.max() == END and (pp.groupby("cutoff_date").size() > 0).all()
    orders = _orders(root / "raw")
    pp = pp[pp.cutoff_date + timedelta(days=30) <= END - timedelta(days=5)]
    assert pp.cutoff_date.nunique() >= 5
    ys = []
    for cutoff, g in pp.groupby("cutoff_date"):
        o = orders[(orders.day > cutoff) & (orders.day <= cutoff + timedelta(days=30))]
        ys.append(g.customer_id.isin(set(o.customer_id)).to_numpy())
    y = np.concatenate(ys)
    assert roc_auc_score(y, pp.p_purchase_30d) > 0.7
    # what a perfect observer could state (no dropout draws) ranks well, below the truth
    observed = roc_auc_score(y, pp.p_purchase_30d_observed)
    assert 0.7 < observed < roc_auc_score(y, pp.p_purchase_30d)
    # calibrated in the large: the mean probability matches the realised rate
    assert abs(pp.p_purchase_30d.mean() - y.mean()) < 0.25 * y.mean()


def test_the_observers_p_alive_is_a_calibrated_probability_of_the_hidden_flag(run):
    """p_alive_observed (AliveEvidence: Bayes' rule on the traits, purchases and visits) is a
    calibrated probability of the hidden alive flag."""
    root, _ = run
    pp = pd.read_parquet(root / "truth" / "purchase_probability.parquet")
    assert pp.p_alive_observed.between(0, 1).all()
    assert (pp.p_purchase_30d_observed <= pp.p_alive_observed + 1e-12).all()
    assert (pp.p_purchase_30d <= pp.alive.astype(float) + 1e-12).all()
    unsure = pp[pp.p_alive_observed.between(0.02, 0.98)]
    assert len(unsure) > 0.2 * len(pp)
    bins = pd.cut(unsure.p_alive_observed, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    cal = unsure.groupby(bins, observed=True).agg(n=("alive", "size"), alive=("alive", "mean"),
                                                  p=("p_alive_observed", "mean"))
    print(cal.round(3).to_string())
    assert (cal.n >= 100).all()
    assert ((cal.alive - cal.p).abs() < 0.06).all()
    brier = ((unsure.p_alive_observed - unsure.alive) ** 2).mean()
    assert brier < 0.8 * unsure.alive.var()


def test_planted_archetypes_behave_distinctly_in_the_data(run):
    root, _ = run
    tc = pd.read_parquet(root / "truth" / "customers.parquet").set_index("customer_id")
    orders = _orders(root / "raw")
    paid = orders.utm_medium.isin(["cpc", "paid_social", "display"])
    oi = set(tc.index[tc.is_organic_inevitable])
    assert paid[orders.customer_id.isin(oi)].mean() < 0.02 < paid[~orders.customer_id.isin(oi)].mean()
    per_cust = orders.groupby("customer_id").size()
    assert per_cust.reindex(list(oi)).fillna(0).mean() > 2 * per_cust.reindex(tc.index).fillna(0).mean()
    cr = set(tc.index[tc.is_creative_resistant])
    recent = orders[orders.day > END - timedelta(days=30)]
    assert not recent.customer_id.isin(cr).any()
    exp = pd.concat(pd.read_csv(f, dtype=str, on_bad_lines="skip")
                    for f in sorted((root / "raw" / "ads" / "exposures").glob("*.csv")))
    exp = exp[pd.to_datetime(exp.exposure_date, errors="coerce") > pd.Timestamp(END - timedelta(days=30))]
    imp = pd.to_numeric(exp.impressions, errors="coerce").groupby(exp.customer_id).sum()
    clk = pd.to_numeric(exp.clicks, errors="coerce").groupby(exp.customer_id).sum()
    assert imp.reindex(list(cr)).fillna(0).median() > 10 * max(imp.median(), 1)
    assert clk.reindex(list(cr)).fillna(0).sum() == 0


def test_disabled_sources_write_no_files_even_over_an_earlier_full_run(tmp_path):
    generate(_config(tmp_path, customers=300))
    assert any((tmp_path / "raw" / "web" / "events").glob("*.csv"))
    generate(_config(tmp_path, customers=300, web=False, ads=False, returns=False, support=False, fx=False,
                     activation=False))
    written = {p.relative_to(tmp_path / "raw").parts[:2] for p in (tmp_path / "raw").rglob("*.csv")}
    assert written == {("crm", "customers"), ("crm", "orders"), ("crm", "order_lines")}
    orders = _orders(tmp_path / "raw")
    assert len(orders) > 0
    currencies = {r["currency"] for f in (tmp_path / "raw" / "crm" / "orders").glob("*.csv")
                  for r in csv.DictReader(io.StringIO(f.read_text()))}
    assert currencies == {"EUR"}  # without fx rates every order is in the reporting currency


def test_unknown_missing_column_is_refused(tmp_path):
    with pytest.raises(ValueError, match="missing-column"):
        generate(_config(tmp_path, missing_column="crm__orders:no_such_column"))


def test_the_default_history_is_two_years_ending_yesterday():
    # two years so that the earliest training cutoff (18 weeks back) still has a full year
    # behind its 365-day feature windows (docs/model-quality.md)
    c = Config(customers=10, end=date(2025, 6, 30)).resolved()
    assert (c.start, c.end) == (date(2023, 7, 2), date(2025, 6, 30))
    assert (c.end - c.start).days + 1 == 730
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    assert Config(customers=10).resolved().end == yesterday
