"""One benchmark stage in its own process, so its peak memory is its own.

Prints one JSON line: {"stage", "seconds", "peak_rss_mb", "rows"}. Peak RSS is the larger of
this process and its children (dbt runs as a child), from getrusage.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, kids) / 1024, 1)  # Linux reports KiB


def main() -> None:
    kind, arg, partition = sys.argv[1], sys.argv[2], sys.argv[3]
    rows = None
    steps: dict[str, float] = {}
    if kind == "generate":
        from pathlib import Path

        from dagster_project.synthetic import Config, generate

        import datetime as dt

        customers, days = (int(x) for x in arg.split(":"))
        end = dt.date.fromisoformat(partition)
        t0 = time.perf_counter()
        summary = generate(Config(customers=customers, end=end,
                                  start=end - dt.timedelta(days=days - 1), seed=42,
                                  out=Path(sys.argv[4]) / "raw", truth=Path(sys.argv[4]) / "truth"))
        seconds = time.perf_counter() - t0
        rows = summary.get("rows")
    elif kind == "node":
        import dagster as dg

        from dagster_project.definitions import defs

        d = defs()
        job = d.resolve_job_def("nightly")
        names = arg.split("+")  # nodes that must share one run, e.g. the gate and the publish
        keys = [k for a in d.resolve_all_asset_specs() for k in [a.key]] and [
            k for ad in d.get_repository_def().assets_defs_by_key.values()
            if ad.is_materializable and ad.node_def.name in names for k in ad.keys]
        keys = sorted(set(keys))
        run_config = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
        t0 = time.perf_counter()
        # A node that materializes assets is selected by its assets; an asset-check node
        # (freshness, drift, the gates) by its op name. (An empty asset selection would run
        # the whole job.)
        selection = {"asset_selection": keys} if keys else {"op_selection": [arg]}
        instance = dg.DagsterInstance.ephemeral()
        result = job.execute_in_process(partition_key=partition, run_config=run_config,
                                        raise_on_error=False, instance=instance, **selection)
        seconds = time.perf_counter() - t0
        # per step (an asset node runs with the checks on its assets): start to end
        starts: dict[str, float] = {}
        for entry in instance.all_logs(result.run_id):
            ev = entry.dagster_event
            if ev is None or not ev.step_key:
                continue
            if ev.event_type_value == "STEP_START":
                starts[ev.step_key] = entry.timestamp
            elif ev.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and ev.step_key in starts:
                steps[ev.step_key] = round(entry.timestamp - starts[ev.step_key], 2)
        if not result.success:
            errors = [f"{e.step_key}: {e.event_specific_data.error.message[-500:]}"
                      for e in result.all_events
                      if e.is_step_failure and e.event_specific_data.error]
            print(json.dumps({"stage": arg, "error": "run failed", "errors": errors}))
            sys.exit(1)
    else:
        raise SystemExit(f"unknown stage kind {kind}")
    print(json.dumps({"stage": arg if kind == "node" else kind, "seconds": round(seconds, 2),
                      "peak_rss_mb": peak_rss_mb(), "rows": rows, "steps": steps}))


if __name__ == "__main__":
    main()
