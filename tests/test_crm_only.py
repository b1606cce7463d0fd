"""A shop with only CRM customers, orders and order lines is a real user."""

import duckdb

from .helpers import END, build_warehouse, make_dataset, query


def test_a_crm_only_dataset_builds_customer_features(tmp_path):
    make_dataset(tmp_path, customers=800, seed=5, web=False, ads=False, returns=False,
                 support=False, fx=False)
    assert not (tmp_path / "raw" / "web").exists()
    build_warehouse(tmp_path / "raw", tmp_path / "w.duckdb", END)
    f = query(tmp_path / "w.duckdb",
              "select count(*) n, sum(orders_lifetime) orders, sum(sessions_30d) sessions, "
              "sum(impressions_30d) impressions from marts.customer_features where as_of_date = ?",
              [END])
    assert f["n"][0] > 700
    assert f["orders"][0] > 0
    assert f["sessions"][0] == 0 and f["impressions"][0] == 0
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    absent = con.execute("select raw_table from raw.source_status where as_of_date = ? "
                         "and not present order by 1", [END]).fetchall()
    assert [a[0] for a in absent] == ["ads__creatives", "ads__exposures", "ads__spend",
                                      "crm__support_tickets", "fx__rates", "returns__returns",
                                      "web__events"]
