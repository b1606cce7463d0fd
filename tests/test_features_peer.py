"""The feature table, computed twice: by the dbt mart in DuckDB and, independently, by the
benchmark's pandas peer (scripts/pandas_peer.py) straight from the landed CSV files. The two
share no code but the list of feature names, so agreement checks the point-in-time rules
(landing dates, windows, late lines, identity stitching, de-duplication, the input contract)
twice over, on the messy generated data of the nightly run."""

from __future__ import annotations

import pytest

from .helpers import END, load_script, query


@pytest.mark.parametrize("which", ["partition", "earliest cutoff"])
def test_pandas_peer_computes_the_same_feature_table_as_dbt(nightly_run, which):
    dates = query(nightly_run["db"], "select min(as_of_date) lo, max(as_of_date) hi "
                  "from marts.customer_features")
    as_of = (dates["hi"] if which == "partition" else dates["lo"])[0].date()
    assert (as_of == END) == (which == "partition")
    peer = load_script("pandas_peer")
    table = peer.features(nightly_run["root"] / "raw", as_of)
    agreement = peer.compare(table, nightly_run["db"], as_of)
    assert len(table) > 1000
    off = agreement[agreement["agree"] < 1.0]
    assert off.empty, f"peer and mart disagree at {as_of}:\n{off.to_string()}"
    assert agreement["column"].str.startswith("(").sum() == 2  # the one-side rows are there


def test_a_negative_line_on_a_purchase_is_left_out_of_the_economics_and_listed(nightly_run):
    # the generator's negative-quantity defects sit on lines of ordinary purchases
    db = nightly_run["db"]
    negative = query(db, "select count(distinct l._file || ':' || l._line) n "
                     "from raw.crm__order_lines l join raw.crm__orders o using (order_id) "
                     "where l.quantity < 0 and o.gross_amount >= 0")["n"][0]
    assert negative > 0
    listed = query(db, "select count(distinct file || ':' || line) n from marts.orphan_orders "
                   "where as_of_date = ? and reason like 'negative quantity on a line%'",
                   [END])["n"][0]
    assert listed == negative
    assert query(db, "select count(*) n from intermediate.int_order_lines__valued "
                 "where quantity <= 0")["n"][0] == 0
    assert query(db, "select count(*) n from staging.stg_crm__credit_note_returns")["n"][0] == 0
