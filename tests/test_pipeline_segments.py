"""Layer 3 on the generator's data: segments, persuasion drivers and exclusion audiences
measured against the planted truth; the organic inevitables' holdout evidence from the
generator's activation log and from a hand-built one."""

import datetime as dt
import logging
import shutil

import dagster as dg
import duckdb
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource
from sklearn.metrics import adjusted_rand_score

from dagster_project.lib import measurement as M
from dagster_project.lib.segments import DEFAULT_SEGMENT, SEGMENTS

from .helpers import END, query

AUDIENCES = {"organic_inevitable": "is_organic_inevitable",
             "margin_destroyer": "is_margin_destroyer",
             "creative_resistant": "is_creative_resistant"}
ARI_FLOOR = 0.25  # stated floor: clustering recovers the planted driver well above chance (0)
# The target for every audience: precision >= 0.8 and recall >= 0.6 on the planted
# truth. organic_inevitable meets it since the rule judges established customers (tenure >=
# min_tenure_days) by their order rate over the days seen. On the session dataset (3,000
# customers, seed 11, 181 days of orders) it is met with no margin: precision 0.803 (53 of
# 66), recall 0.602 (53 of 88; one planted customer fewer is 0.591). Six months hold 0 to 11
# orders (median 5) of a planted organic inevitable, and ordinary organic replenishers with
# as many unpaid orders look the same in the data. On seed 42 (3,000 customers): 0.819 /
# 0.670; on 20,000 customers with a year of history (seed 42): 0.918 / 0.741.
PRECISION_FLOOR = dict.fromkeys(AUDIENCES, 0.8)
RECALL_FLOOR = dict.fromkeys(AUDIENCES, 0.6)


@pytest.fixture(scope="module")
def segs(nightly_run):
    return query(nightly_run["db"], "select * from segmentation.decision_segments "
                 "where as_of_date = ?", [END])


@pytest.fixture(scope="module")
def truth(nightly_run):
    return pd.read_parquet(nightly_run["truth"] / "customers.parquet")


def test_every_customer_has_exactly_one_primary_segment_from_the_operable_set(segs):
    assert segs["customer_id"].is_unique
    assert set(segs["primary_segment"]) <= {*SEGMENTS, DEFAULT_SEGMENT}
    assert segs["primary_segment"].nunique() >= 3
    for s in SEGMENTS:
        primary = segs["primary_segment"] == s
        assert segs.loc[primary, f"in_{s}"].all(), s  # primary implies membership


def test_every_segment_row_carries_its_playbook(segs):
    playbook_cols = [c for c in segs.columns if c.startswith("playbook_")]
    assert {"playbook_angle", "playbook_channel_role", "playbook_version"} <= set(playbook_cols)
    assert segs[playbook_cols].notna().all().all()


@pytest.mark.parametrize("audience", sorted(AUDIENCES))
def test_exclusion_audience_recovers_the_planted_archetype(nightly_run, truth, audience):
    ex = query(nightly_run["db"], "select customer_id from segmentation.exclusion_audiences "
               "where as_of_date = ? and audience = ?", [END, audience])
    customers = query(nightly_run["db"], "select customer_id from marts.customer_features "
                      "where as_of_date = ?", [END])["customer_id"]
    planted = set(truth.loc[truth[AUDIENCES[audience]] & truth["customer_id"].isin(customers),
                            "customer_id"])
    found = set(ex["customer_id"])
    precision = len(found & planted) / max(len(found), 1)
    recall = len(found & planted) / len(planted)
    print(f"{audience}: {len(found)} found, {len(planted)} planted, precision {precision:.3f}, "
          f"recall {recall:.3f}")
    assert len(planted) >= 50
    assert precision >= PRECISION_FLOOR[audience] and recall >= RECALL_FLOOR[audience], (
        precision, recall)


def test_persuasion_drivers_recover_the_planted_driver(segs, truth):
    m = segs[["customer_id", "persuasion_driver"]].merge(
        truth[["customer_id", "persuasion_driver"]], on="customer_id", suffixes=("", "_true"))
    known = m[m["persuasion_driver"] != "unknown"]
    ari = adjusted_rand_score(known["persuasion_driver_true"], known["persuasion_driver"])
    accuracy = (known["persuasion_driver"] == known["persuasion_driver_true"]).mean()
    print(f"drivers: {len(known)}/{len(m)} known, ARI {ari:.3f}, accuracy {accuracy:.3f}")
    assert len(known) >= 0.6 * len(m)
    assert ari >= ARI_FLOOR


def test_no_customer_without_consent_is_in_any_activation_audience(segs):
    no_consent = ~segs["marketing_consent"].astype(bool)
    assert no_consent.sum() > 50  # the generator plants opted-out customers
    assert not segs.loc[no_consent, "activation_eligible"].astype(bool).any()
    activate = [c for c in segs.columns if c.startswith("activate_")]
    assert activate and not segs.loc[no_consent, activate].astype(bool).any().any()


def test_segment_by_driver_matrix_counts_every_customer(nightly_run, segs):
    m = query(nightly_run["db"], "select sum(customers) n from segmentation.segment_driver_matrix "
              "where as_of_date = ?", [END])
    assert m["n"][0] == len(segs)


# --------------------------------------------------------------------------- holdout evidence
def _exclusion_metadata(instance) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey("exclusion_audiences"))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_exclusion_metadata_carries_the_organic_inevitables_holdout_evidence(nightly_run):
    meta = _exclusion_metadata(nightly_run["instance"])
    ev = meta["organic_inevitable_holdout_evidence"]
    print("organic evidence:", {k: v for k, v in ev.items() if k != "definition"})
    assert ev["status"] == "ok" or ev["status"].startswith(M.NOT_ENOUGH)
    assert isinstance(ev["n_treated"], int) and isinstance(ev["n_holdout"], int)
    assert f"{ev['n_treated']} treated and {ev['n_holdout']} holdout" in ev["status"] or (
        ev["status"] == "ok" and min(ev["n_treated"], ev["n_holdout"]) >= ev["min_per_group"])
    assert set(ev["log_sources"]) == {M.SOURCE_LOG}  # nothing published before this partition
    note = meta["notes"]["organic_inevitable"]
    if "organic_inevitable" in meta["withheld"]:
        assert ev["status"] == "ok" and ev["lo"] > 0 and meta["sizes"]["organic_inevitable"] == 0
    else:
        assert "stands" in note
        reasons = query(nightly_run["db"], "select reason from segmentation.exclusion_audiences "
                        "where as_of_date = ? and audience = 'organic_inevitable'", [END])["reason"]
        assert len(reasons) and reasons.str.contains(
            "paid-media lift" if ev["status"] == "ok" else ev["status"], regex=False).all()


def test_organic_inevitables_are_withheld_when_paid_media_moves_customers_with_their_history(
        nightly_run, tmp_path):
    """A hand-built activation log on the generator's orders: customers with the organic
    history on day A, treated where they bought in the next 30 days (7 of 8 buyers, 1 of 8
    non-buyers), held out otherwise: treated convert far more than held out."""
    from dagster_project.defs.segments.assets import segments

    db = tmp_path / nightly_run["db"].name  # the same file name: dbt's views name the catalog
    shutil.copyfile(nightly_run["db"], db)
    day = END - dt.timedelta(days=60)
    con = duckdb.connect(str(db))
    con.execute("drop view staging.stg_marketing__activation_log")
    con.execute("""
        create table staging.stg_marketing__activation_log as
        with history as (
            select customer_id,
                count(*) filter (where $a::date - order_date < 365) as orders_365d,
                sum((not is_paid_touch)::int) / count(*) as unpaid_order_share
            from intermediate.int_orders__economics
            where order_date <= $a::date and visible_from <= $a::date and not fx_missing
            group by customer_id
        ),
        bought as (
            select distinct customer_id from intermediate.int_orders__economics
            where order_date > $a::date and order_date <= $a::date + 30
        )
        select $a::date as activation_date, h.customer_id, 'ready_to_repeat' as segment,
            'ready_to_repeat_email' as audience, 'email' as channel,
            case when (b.customer_id is not null) = (hash(h.customer_id) % 8 <> 0)
                 then 'treated' else 'holdout' end as test_group,
            test_group = 'holdout' as is_holdout, $a::date as landed_date
        from history as h left join bought as b using (customer_id)
        where h.orders_365d >= 3 and h.unpaid_order_share >= 1.0""", {"a": day})
    groups = dict(con.execute("select test_group, count(*) from staging.stg_marketing__activation_log "
                              "group by 1").fetchall())
    con.close()
    assert min(groups.values()) >= 30, groups
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [segments], partition_key=END.isoformat(), instance=instance,
        resources={"duckdb": DuckDBResource(database=str(db))},
        run_config={"ops": {"segments": {"config": {"min_segment_size": 100,
                                                    "holdout_min_per_group": 30}}}})
    assert result.success
    meta = _exclusion_metadata(instance)
    ev = meta["organic_inevitable_holdout_evidence"]
    print("hand-built organic evidence:", {k: v for k, v in ev.items() if k != "definition"})
    assert ev["status"] == "ok" and (ev["n_treated"], ev["n_holdout"]) == (
        groups["treated"], groups["holdout"])
    assert ev["conversion_treated"] > 0.7 and ev["conversion_holdout"] < 0.3 and ev["lo"] > 0
    assert meta["sizes"]["organic_inevitable"] == 0
    assert meta["withheld"]["organic_inevitable"].startswith("withheld")
    assert meta["notes"]["organic_inevitable"] == meta["withheld"]["organic_inevitable"]
    assert query(db, "select count(*) as n from segmentation.exclusion_audiences where "
                 "as_of_date = ? and audience = 'organic_inevitable'", [END])["n"][0] == 0
    # no longer excluded from activation: nobody's exclusion list names the audience
    segs = query(db, "select exclusion_audiences from segmentation.decision_segments "
                 "where as_of_date = ?", [END])
    assert not segs["exclusion_audiences"].str.contains("organic_inevitable").any()
    warnings = [e.user_message for e in instance.all_logs(result.run_id)
                if e.level == logging.WARNING and "organic_inevitable withheld" in e.user_message]
    assert warnings, "the withheld audience is logged as a warning"
