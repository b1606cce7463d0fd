"""Benchmark: one nightly partition end to end at a chosen scale, per asset.

    python scripts/bench.py --customers 100000            # (make bench SCALE=100000)
    python scripts/bench.py --customers 10000 100000 1000000

For each scale: generate a year of synthetic history (skipped if the folder already holds it),
run every node of the nightly job for the last day, each in its own process (so peak memory
is per node), and measure in the same run
  * the reference limit: DuckDB's own time for one bare GROUP BY customer scan-and-aggregate of
    the raw events and orders with the same window filters as the features, and
  * the pandas peer (at <= 100,000 customers): the same per-customer aggregates computed the way
    an analyst's notebook would (read every daily CSV, concat, groupby).
Writes data/bench/report.json and data/bench/report.md (figures, ratios, machine cores).
Not a test: it asserts nothing; it measures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
END = dt.date(2025, 6, 30)

REFERENCE_SQL = """
-- bare scan-and-aggregate over raw orders and events with the feature windows (as of END)
with o as (
    select customer_id,
           count(*) filter (where ordered_at >= $end - interval 30 day) as orders_30d,
           count(*) filter (where ordered_at >= $end - interval 365 day) as orders_365d,
           count(*) as orders_lifetime,
           sum(gross_amount - coalesce(discount_amount, 0))
               filter (where ordered_at >= $end - interval 365 day) as revenue_365d,
           max(ordered_at) as last_order_at
    from raw.crm__orders where _file_date <= $d and ordered_at < $end group by customer_id
), e as (
    select customer_id,
           count(distinct session_id) filter (where event_at >= $end - interval 30 day) as sessions_30d,
           count(*) filter (where page_type = 'product' and event_at >= $end - interval 30 day) as product_views_30d,
           count(*) filter (where page_type in ('reviews','guarantee','shipping_returns','comparison')
                            and event_at >= $end - interval 90 day) as trust_views_90d
    from raw.web__events where _file_date <= $d and event_at < $end and customer_id is not null
    group by customer_id
)
select count(*), sum(orders_365d), sum(sessions_30d) from o full join e using (customer_id)
"""

# The full-width reference: every window aggregate of the features, from the raw tables.
THEMES = ("proof", "identity", "anxiety", "convenience", "value", "performance")
PAGES = ("reviews", "about", "guarantee", "shipping_returns", "sale", "comparison")


def _w(expr, days, cond="true"):
    return f"count(*) filter (where {cond} and age < {days})" if expr is None else \
        f"sum({expr}) filter (where {cond} and age < {days})"


def full_width_sql() -> str:
    o = ",\n           ".join(
        [f"count(*) filter (where age < {n}) as orders_{n}d" for n in (7, 30, 90, 180, 365)]
        + ["count(*) as orders_lifetime"]
        + [f"sum(net) filter (where age < {n}) as revenue_{n}d" for n in (30, 90, 180, 365)]
        + ["sum(net) as revenue_lifetime", "avg(net) as aov_lifetime",
           "arg_max(net, ordered_at) as last_order_value", "min(age) as days_since_last_order",
           "max(age) as days_since_first_order",
           "avg((discount_amount > 0)::int) as discount_order_share",
           "sum(discount_amount) / nullif(sum(gross_amount), 0) as discount_rate",
           "count(*) filter (where discount_amount > 0 and age < 365) as coupon_orders_365d",
           "avg((utm_medium is null)::int) as unpaid_order_share",
           "count(*) filter (where utm_medium is not null and age < 365) as paid_orders_365d",
           "sum(net + shipping_fee - shipping_cost) filter (where age < 365) as margin_365d"])
    web = [f"count(distinct session_id) filter (where age < {n}) as sessions_{n}d"
           for n in (7, 30, 90)]
    web += ["min(age) as days_since_last_visit", "min(event_at) as first_visit_at"]
    web += [f"count(*) filter (where page_type = 'product' and age < {n}) as product_views_{n}d"
            for n in (7, 30)]
    web += [f"count(*) filter (where event_type = 'add_to_cart' and age < {n}) as atc_{n}d"
            for n in (7, 30)]
    web += ["count(*) filter (where event_type = 'checkout_start' and age < 30) as checkouts_30d",
            "count(*) filter (where event_type = 'purchase' and age < 30) as purchases_30d"]
    web += [f"count(*) filter (where page_type = '{p}' and age < 30) as {p}_views_30d"
            for p in ("reviews", "guarantee", "shipping_returns", "comparison")]
    web += [f"count(*) filter (where page_type = '{p}' and age < 90) as {p}_views_90d"
            for p in ("about", "sale")]
    web += ["count(*) filter (where page_type in ('reviews', 'guarantee', 'shipping_returns', "
            "'comparison') and age < 90) as trust_views_90d",
            "count(*) filter (where event_type = 'page_view' and age < 90) as page_views_90d"]
    web += [f"count(*) filter (where page_type = '{p}' and age < 365) as {p}_views_365d"
            for p in PAGES]
    ads = [f"sum({m}) filter (where age < {n}) as {m}_{n}d" for m in ("impressions", "clicks")
           for n in (30, 90)]
    ads += ["count(distinct exposure_date) filter (where age < 30) as exposure_days_30d"]
    ads += [f"sum({m}) filter (where theme = '{t}' and age < {n}) as {m}_{t}_{n}d"
            for t in THEMES for m in ("impressions", "clicks") for n in (90, 365)]
    j = ",\n           "
    return f"""
-- Bare scan-and-aggregate of the same raw tables with the same windows as the ~100 features
-- (as of $d): one GROUP BY customer per source, joined per customer. No de-duplication, no
-- currency conversion, no identity stitching, no point-in-time landing of late rows beyond
-- the file date, no order-line or window-function features: the floor under the feature build.
with o as (
    select customer_id, order_id, ordered_at, gross_amount, discount_amount, utm_medium,
           gross_amount - coalesce(discount_amount, 0) as net, shipping_fee, shipping_cost,
           $d - ordered_at::date as age
    from raw.crm__orders where _file_date <= $d and ordered_at < $end
), os as (
    select customer_id,
           {o}
    from o group by customer_id
), ls as (
    select o.customer_id, count(distinct l.category) as category_count,
           sum(l.quantity) filter (where o.age < 365) as units_365d,
           sum(l.quantity * l.unit_cost) filter (where o.age < 365) as cogs_365d
    from raw.crm__order_lines as l inner join o using (order_id)
    where l._file_date <= $d group by o.customer_id
), ws as (
    select customer_id,
           {j.join(web)}
    from (select *, $d - event_at::date as age from raw.web__events
          where _file_date <= $d and event_at < $end and customer_id is not null)
    group by customer_id
), xs as (
    select customer_id,
           {j.join(ads)}
    from (select x.*, c.persuasion_theme as theme, $d - x.exposure_date as age
          from raw.ads__exposures as x left join raw.ads__creatives as c using (creative_id)
          where x._file_date <= $d and x.exposure_date <= $d and x.exposure_date > $d - 365)
    group by customer_id
), rs as (
    select o.customer_id, count(*) as returns_365d, sum(r.quantity) as returned_units_365d,
           sum(r.refund_amount) as refunds_365d, sum(r.return_shipping_cost) as return_ship_365d
    from raw.returns__returns as r inner join o using (order_id)
    where r._file_date <= $d and r.returned_at < $end and r.returned_at >= $end - interval 365 day
    group by o.customer_id
), ts as (
    select customer_id,
           count(*) filter (where created_at >= $end - interval 90 day) as tickets_90d,
           sum(handle_minutes) as support_minutes_365d
    from raw.crm__support_tickets
    where _file_date <= $d and created_at < $end and created_at >= $end - interval 365 day
    group by customer_id
), cs as (
    select customer_id, min(created_at) as created_at from raw.crm__customers
    where _file_date <= $d group by customer_id
)
select * from cs
left join os using (customer_id) left join ls using (customer_id)
left join ws using (customer_id) left join xs using (customer_id)
left join rs using (customer_id) left join ts using (customer_id)
"""


def run_stage(args: list[str], env: dict) -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_stage.py"), *args],
                          env=env, capture_output=True, text=True, cwd=ROOT)
    last = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not last:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise SystemExit(f"stage {args[:2]} failed:\n{tail}")
    return json.loads(last[-1])


def reference(db: Path) -> dict[str, float]:
    """Both references, one run each: the 8-aggregate scan of raw orders and events, and the
    full-width one (the features' sources and windows, without cleaning or point-in-time)."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        end = dt.datetime.combine(END + dt.timedelta(days=1), dt.time(), dt.UTC)
        out = {}
        for name, sql in (("eight_aggregates", REFERENCE_SQL),
                          ("full_width", "create temp table r as " + full_width_sql())):
            t0 = time.perf_counter()
            con.execute(sql, {"end": end, "d": END}).fetchall()
            out[name] = time.perf_counter() - t0
        return out
    finally:
        con.close()


def feature_build_seconds(db: Path) -> float | None:
    """customer_features' own execution time in the timed dbt run (dbt's run_results)."""
    from dagster_project.lib.dbt_vars import dbt_state_dir

    results = dbt_state_dir(db) / "run_results.json"
    if not results.exists():
        return None
    for r in json.loads(results.read_text())["results"]:
        if r["unique_id"].endswith(".customer_features"):
            return r["execution_time"]
    return None


def pandas_peer_eight(raw: Path) -> float:
    """The notebook way: read every daily CSV with pandas, concat, parse, groupby."""
    import pandas as pd

    t0 = time.perf_counter()
    end = pd.Timestamp(END + dt.timedelta(days=1), tz="UTC")
    orders = pd.concat([pd.read_csv(f, on_bad_lines="skip") for f in
                        sorted((raw / "crm" / "orders").glob("*.csv"))], ignore_index=True)
    orders["ordered_at"] = pd.to_datetime(orders["ordered_at"], utc=True, errors="coerce",
                                          format="ISO8601")
    orders["gross_amount"] = pd.to_numeric(orders["gross_amount"], errors="coerce")
    orders["discount_amount"] = pd.to_numeric(orders["discount_amount"], errors="coerce")
    orders = orders[orders["ordered_at"] < end]
    orders["net"] = orders["gross_amount"] - orders["discount_amount"].fillna(0)
    age = (end - orders["ordered_at"]).dt.days
    o = orders.assign(o30=age < 30, o365=age < 365, r365=orders["net"].where(age < 365, 0))
    o = o.groupby("customer_id").agg(orders_30d=("o30", "sum"), orders_365d=("o365", "sum"),
                                     orders_lifetime=("order_id", "count"),
                                     revenue_365d=("r365", "sum"),
                                     last_order_at=("ordered_at", "max"))
    events = pd.concat([pd.read_csv(f, on_bad_lines="skip") for f in
                        sorted((raw / "web" / "events").glob("*.csv"))], ignore_index=True)
    events["event_at"] = pd.to_datetime(events["event_at"], utc=True, errors="coerce",
                                        format="ISO8601")
    events = events[(events["event_at"] < end) & events["customer_id"].notna()]
    eage = (end - events["event_at"]).dt.days
    ev = events.assign(
        s30=events["session_id"].where(eage < 30),
        p30=(events["page_type"] == "product") & (eage < 30),
        t90=events["page_type"].isin(["reviews", "guarantee", "shipping_returns", "comparison"])
        & (eage < 90))
    e = ev.groupby("customer_id").agg(sessions_30d=("s30", "nunique"),
                                      product_views_30d=("p30", "sum"),
                                      trust_views_90d=("t90", "sum"))
    o.join(e, how="outer")
    return time.perf_counter() - t0


# Nodes that must run in the same Dagster run as another: the publish step publishes only the
# candidates its own run wrote and its gates passed (write-audit-publish).
SAME_RUN = {"published_segments": "audit_candidates"}


def bench_scale(customers: int, days: int, out: Path, peer_limit: int,
                only: list[str] | None = None, warm: bool = False,
                resume_from: str | None = None) -> dict:
    folder = out / f"{customers}"
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "warehouse.duckdb"
    env = {**os.environ, "DS_DATA_DIR": str(folder), "DS_DUCKDB_PATH": str(db),
           "DS_PARTITION_START": "2024-01-01"}
    stages = []
    if not (folder / "truth" / "summary.json").exists():
        stages.append(run_stage(["generate", f"{customers}:{days}", END.isoformat(),
                                 str(folder)], env))
    if not resume_from:
        for f in db.parent.glob("warehouse.duckdb*"):
            f.unlink()
    from dagster_project.definitions import defs

    definitions = defs()
    job = definitions.resolve_job_def("nightly")
    # An asset-check node runs in the stage of the asset node it checks (a node's assets are
    # selected with their checks; the gates must run in the run that wrote the candidates).
    repo = definitions.get_repository_def()
    asset_node = {k: ad.node_def.name for ad in repo.assets_defs_by_key.values()
                  if ad.is_materializable for k in ad.keys}
    check_targets: dict[str, set] = {}
    for key, cd in repo.asset_checks_defs_by_key.items():
        check_targets.setdefault(cd.node_def.name, set()).add(asset_node.get(key.asset_key))
    nodes = [n.name for n in job.graph.nodes_in_topological_order
             if (not only or n.name in only)
             and not (n.name in check_targets and None not in check_targets[n.name])]
    for late, early in SAME_RUN.items():
        if late in nodes and early in nodes:
            nodes.remove(late)
            nodes[nodes.index(early)] = f"{early}+{late}"
    if resume_from:  # keep the warehouse; start at this node
        nodes = nodes[next(i for i, n in enumerate(nodes) if resume_from in n.split("+")):]
    warmup = []
    if warm and not resume_from:
        # Steady state: the nightly run a week earlier has ingested its files and built its
        # 19 feature dates (END-7-7k), which are END-7k for k >= 1. So the timed run ingests
        # the last 7 days of files and builds one new feature date, as a nightly run does.
        prior = (END - dt.timedelta(days=7)).isoformat()
        for node in ("ingest_sources", "dbt_models"):
            print(f"  {customers:>9,} customers: warm-up {node} for {prior} ...", flush=True)
            warmup.append({**run_stage(["node", node, prior], env), "partition": prior})
    t_total = time.perf_counter()
    for node in nodes:
        print(f"  {customers:>9,} customers: {node} ...", flush=True)
        stages.append(run_stage(["node", node, END.isoformat()], env))
        print(f"    {json.dumps(stages[-1])}", flush=True)
    total = time.perf_counter() - t_total
    summary = json.loads((folder / "truth" / "summary.json").read_text())
    ref = reference(db)
    build = feature_build_seconds(db)
    by = {s["stage"]: s for s in stages}
    result = {
        "customers": customers, "days": days, "partition": END.isoformat(),
        "mode": "warm (a week of nightly history already built)" if warm else "cold",
        "warmup_stages": warmup,
        "rows": summary.get("rows"), "stages": stages,
        "pipeline_seconds": round(sum(s["seconds"] for s in stages if s["stage"] != "generate"), 1),
        "pipeline_wall_seconds_with_process_start": round(total, 1),
        "peak_rss_mb": max(s["peak_rss_mb"] for s in stages if s["stage"] != "generate"),
        "reference_scan_aggregate_seconds": round(ref["eight_aggregates"], 3),
        "reference_full_width_seconds": round(ref["full_width"], 3),
        "dbt_seconds": by.get("dbt_models", {}).get("seconds"),
        # customer_features in the timed dbt run: one new date when warm, 19 when cold
        "feature_build_seconds": round(build, 2) if build else None,
    }
    if build:
        result["feature_build_vs_reference"] = round(build / ref["eight_aggregates"], 1)
        result["feature_build_vs_full_width_reference"] = round(build / ref["full_width"], 2)
    events = (summary.get("rows") or {}).get("web__events") or 0
    if result["pipeline_seconds"]:
        result["events_per_second"] = round(events / result["pipeline_seconds"])
    if customers <= peer_limit:
        peer = pandas_peer_eight(folder / "raw")
        result["pandas_peer_seconds"] = round(peer, 2)
        result["pandas_peer_vs_reference"] = round(peer / ref["eight_aggregates"], 1)
        sys.path.insert(0, str(ROOT / "scripts"))
        import pandas_peer as full_peer

        t0 = time.perf_counter()
        table = full_peer.features(folder / "raw", END)
        seconds = time.perf_counter() - t0
        agreement = full_peer.compare(table, db, END)
        result["pandas_full_peer_seconds"] = round(seconds, 2)
        if build and not warm:
            result["pandas_full_peer_note"] = "the cold build makes 19 dates; compare --warm"
        elif build:
            result["pandas_full_peer_vs_feature_build"] = round(seconds / build, 1)
        result["pandas_full_peer_agreement"] = summarise_agreement(agreement)
    return result


def summarise_agreement(table) -> str:
    """One line from pandas_peer.compare(): how many feature columns agree on every customer,
    the customers found on one side only, and the worst columns if any disagree."""
    one_side = table[table["column"].str.startswith("(")]
    cols = table[~table["column"].str.startswith("(")]
    full = int((cols["agree"] == 1.0).sum())
    exact = int((cols["exact"] == 1.0).sum())
    text = (f"{full} of {len(cols)} feature columns agree on every customer ({exact} "
            f"bit-identical); customers on one side only: "
            + " / ".join(str(int(n)) for n in one_side["rows"]))
    worst = cols[cols["agree"] < 1.0].head(5)
    if len(worst):
        text += "; worst: " + ", ".join(f"{r.column} {r.agree:.4%}" for r in worst.itertuples())
    return text


def markdown(results: list[dict]) -> str:
    lines = [f"# Benchmark ({os.cpu_count()} cores, {platform.machine()}, "
             f"Python {platform.python_version()}, {dt.date.today()})", ""]
    for r in results:
        lines += [f"## {r['customers']:,} customers, {r['days']} days of history, {r['mode']}",
                  "", "| stage | seconds | peak RSS (MB) |", "| --- | --- | --- |"]
        for s in r["stages"]:
            lines.append(f"| {s['stage']} | {s['seconds']} | {s['peak_rss_mb']} |")
            if len(s.get("steps") or {}) > 1:  # the checks that ran with the asset
                lines += [f"| &nbsp;&nbsp;step {k} | {v} | |" for k, v in s["steps"].items()]
        lines += ["", f"- nightly partition (all nodes): **{r['pipeline_seconds']} s**, "
                      f"peak {r['peak_rss_mb']} MB",
                  f"- references (bare DuckDB scan-and-aggregate of the raw tables, one date): "
                  f"8 aggregates over orders and events {r['reference_scan_aggregate_seconds']} s; "
                  f"full width (every feature window over the same 6 sources) "
                  f"{r['reference_full_width_seconds']} s"]
        if r.get("feature_build_seconds"):
            dates = ("one new point-in-time date (the partition)" if r["mode"] != "cold" else
                     "19 point-in-time dates: the partition and 18 training cutoffs")
            lines.append(f"- feature build (customer_features in dbt, {dates}): "
                         f"{r['feature_build_seconds']} s = {r['feature_build_vs_reference']}x "
                         f"the 8-aggregate reference, "
                         f"{r['feature_build_vs_full_width_reference']}x the full-width one")
        if "pandas_peer_seconds" in r:
            lines.append(f"- pandas, the reference's 8 aggregates (read CSVs + groupby): "
                         f"{r['pandas_peer_seconds']} s = "
                         f"{r['pandas_peer_vs_reference']}x reference")
        if "pandas_full_peer_seconds" in r:
            a = r["pandas_full_peer_agreement"]
            ratio = (f" = {r['pandas_full_peer_vs_feature_build']}x the pipeline's feature build"
                     if "pandas_full_peer_vs_feature_build" in r else
                     f" ({r.get('pandas_full_peer_note', '')})")
            lines.append(f"- pandas peer, the same customer feature table for the partition date "
                         f"(`scripts/pandas_peer.py`): {r['pandas_full_peer_seconds']} s{ratio}; "
                         f"agreement with the pipeline's table: {a}")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=int, nargs="+", default=[100_000])
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--out", type=Path, default=ROOT / "data" / "bench")
    p.add_argument("--peer-limit", type=int, default=100_000)
    p.add_argument("--nodes", nargs="*", help="only these nodes of the nightly job")
    p.add_argument("--resume-from", metavar="NODE",
                   help="keep the warehouse and run the nodes from NODE on (after a failure)")
    p.add_argument("--warm", action="store_true",
                   help="steady state: first ingest and build the partition a week earlier "
                        "(untimed), then time the nightly run")
    a = p.parse_args()
    a.out = a.out.resolve()  # dbt runs in dbt/: a relative warehouse path would point there
    a.out.mkdir(parents=True, exist_ok=True)
    tag = "_".join(str(n) for n in a.customers) + ("_warm" if a.warm else "_cold")
    results: list[dict] = []
    for n in a.customers:  # the report is rewritten after each scale: a long run keeps its part
        results.append(bench_scale(n, a.days, a.out, a.peer_limit, a.nodes, a.warm,
                                   a.resume_from))
        payload = {"cores": os.cpu_count(), "machine": platform.machine(), "results": results}
        for name in ("report", f"report_{tag}"):  # the latest, and one kept per scale and mode
            (a.out / f"{name}.json").write_text(json.dumps(payload, indent=2))
            (a.out / f"{name}.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
