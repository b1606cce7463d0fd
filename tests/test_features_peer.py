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
