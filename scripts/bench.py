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


def run_stage(args: list[str], env: dict) -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_stage.py"), *args],
                          env=env, capture_output=True, text=True, cwd=ROOT)
    last = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not last:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise SystemExit(f"stage {args[:2]} failed:\n{tail}")
    return json.loads(last[-1])


def reference(db: Path) -> float:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        end = dt.datetime.combine(END + dt.timedelta(days=1), dt.time(), dt.UTC)
        t0 = time.perf_counter()
        con.execute(REFERENCE_SQL, {"end": end, "d": END}).fetchall()
        return time.perf_counter() - t0
    finally:
        con.close()


def pandas_peer(raw: Path) -> float:
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
    by = {s["stage"]: s for s in stages}
    result = {
        "customers": customers, "days": days, "partition": END.isoformat(),
        "mode": "warm (a week of nightly history already built)" if warm else "cold",
        "warmup_stages": warmup,
        "rows": summary.get("rows"), "stages": stages,
        "pipeline_seconds": round(sum(s["seconds"] for s in stages if s["stage"] != "generate"), 1),
        "pipeline_wall_seconds_with_process_start": round(total, 1),
        "peak_rss_mb": max(s["peak_rss_mb"] for s in stages if s["stage"] != "generate"),
        "reference_scan_aggregate_seconds": round(ref, 3),
        "feature_build_seconds": by.get("dbt_models", {}).get("seconds"),
    }
    if result["feature_build_seconds"]:
        result["feature_build_vs_reference"] = round(result["feature_build_seconds"] / ref, 1)
    events = (summary.get("rows") or {}).get("web__events") or 0
    if result["pipeline_seconds"]:
        result["events_per_second"] = round(events / result["pipeline_seconds"])
    if customers <= peer_limit:
        peer = pandas_peer(folder / "raw")
        result["pandas_peer_seconds"] = round(peer, 2)
        result["pandas_peer_vs_reference"] = round(peer / ref, 1)
    return result


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
                  f"- reference (bare DuckDB scan-and-aggregate): {r['reference_scan_aggregate_seconds']} s"]
        if "feature_build_vs_reference" in r:
            dates = ("one new point-in-time date (the partition)" if r["mode"] != "cold" else
                     "19 point-in-time dates: the partition and 18 training cutoffs")
            lines.append(f"- dbt feature build / reference: {r['feature_build_vs_reference']}x "
                         f"(the build makes {dates}, ~100 features from 6 sources; the "
                         "reference 8 aggregates over 2 raw tables for one date)")
        if "pandas_peer_seconds" in r:
            lines.append(f"- pandas peer (read CSVs + groupby, one date, the reference's 8 "
                         "aggregates): "
                         f"{r['pandas_peer_seconds']} s = {r['pandas_peer_vs_reference']}x reference")
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
    results = [bench_scale(n, a.days, a.out, a.peer_limit, a.nodes, a.warm, a.resume_from)
               for n in a.customers]
    a.out.mkdir(parents=True, exist_ok=True)
    payload = {"cores": os.cpu_count(), "machine": platform.machine(), "results": results}
    tag = "_".join(str(n) for n in a.customers) + ("_warm" if a.warm else "_cold")
    for name in ("report", f"report_{tag}"):  # the latest, and one kept per scale and mode
        (a.out / f"{name}.json").write_text(json.dumps(payload, indent=2))
        (a.out / f"{name}.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
