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


def test_a_crm_only_brand_runs_every_step_gets_the_segments_its_data_supports_and_is_told_which_it_cannot(
        tmp_path, monkeypatch):
    import dagster as dg

    make_dataset(tmp_path, customers=1200, seed=6, web=False, ads=False, returns=False,
                 support=False, fx=False)
    monkeypatch.setenv("DS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DS_DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    from dagster_project.definitions import defs

    job = defs().resolve_job_def("nightly")
    # the whole nightly job, gate, publish, measurement and report included: a CRM-only shop
    # goes through every step (no configuration: the minimum segment size scales with the base)
    result = job.execute_in_process(
        partition_key=END.isoformat(), instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False)
    assert result.success, [e.step_key for e in result.all_events if e.is_step_failure]
    assert (tmp_path / "reports" / END.isoformat() / "segment_report.html").exists()
    assert query(tmp_path / "w.duckdb", "select count(*) n from published.segments "
                 "where as_of_date = ?", [END])["n"][0] > 1000
    segs = result.asset_materializations_for_node("segments")
    meta = {m.asset_key.to_user_string(): m.metadata for m in segs}
    impossible = meta["decision_segments"]["impossible"].value
    assert "high_intent_low_trust" in impossible and "web" in impossible["high_intent_low_trust"]
    assert meta["persuasion_drivers"]["all_unknown_reason"].value
    assert "creative_resistant" in meta["exclusion_audiences"]["impossible"].value
    counts = query(tmp_path / "w.duckdb", "select primary_segment, count(*) n from "
                   "segmentation.decision_segments where as_of_date = ? group by 1", [END])
    assert len(counts) >= 2 and counts["n"].sum() > 1000
