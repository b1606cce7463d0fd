"""Freshness policies on the assets people read: the UI flags them when the nightly run did
not refresh them on time. Applied at the Definitions level (`with_freshness_policies`), so
the teams owning those assets need not change their files."""

import datetime as dt
import os

import dagster as dg

# The assets whose staleness a consumer would notice (published.* when present).
FRESH_ASSETS = ("decision_segments", "exclusion_audiences", "persuasion_drivers")
FRESH_GROUPS = ("publish",)


def nightly_time() -> tuple[int, int, str]:
    """(hour, minute, timezone) of the nightly schedule, from DS_NIGHTLY_HOUR / _MINUTE / _TZ."""
    return (int(os.environ.get("DS_NIGHTLY_HOUR", "2")),
            int(os.environ.get("DS_NIGHTLY_MINUTE", "0")),
            os.environ.get("DS_NIGHTLY_TZ", "UTC"))


def freshness_policy() -> dg.FreshnessPolicy:
    """Refreshed at least once in the 24 h before each day's deadline; the deadline is the
    nightly start plus DS_FRESHNESS_GRACE_HOURS (default 4 h) to let the run finish."""
    hour, minute, tz = nightly_time()
    grace = int(os.environ.get("DS_FRESHNESS_GRACE_HOURS", "4"))
    return dg.FreshnessPolicy.cron(
        deadline_cron=f"{minute} {(hour + grace) % 24} * * *",
        lower_bound_delta=dt.timedelta(hours=24),
        timezone=tz,
    )


def _wants_policy(spec: dg.AssetSpec) -> bool:
    return spec.key.to_user_string() in FRESH_ASSETS or spec.group_name in FRESH_GROUPS \
        or (spec.key.path[0] == "published")


def with_freshness_policies(defs: dg.Definitions) -> dg.Definitions:
    """`defs` with the freshness policy on every consumer-facing asset. Uses the stable
    `dg.map_asset_specs` on the asset definitions (Definitions.map_asset_specs is a preview
    API and re-resolves the whole graph)."""
    policy = freshness_policy()

    def add_policy(spec: dg.AssetSpec) -> dg.AssetSpec:
        return spec.replace_attributes(freshness_policy=policy) if _wants_policy(spec) else spec

    # Only the definitions that carry such an asset are rebuilt; everything else is passed
    # through as the same object (a loader may list one object twice; copies would clash).
    assets = [
        dg.map_asset_specs(add_policy, [a])[0]
        if isinstance(a, dg.AssetsDefinition) and any(_wants_policy(s) for s in a.specs) else a
        for a in (defs.assets or [])
    ]
    return dg.Definitions(
        assets=assets, asset_checks=defs.asset_checks, schedules=defs.schedules,
        sensors=defs.sensors, jobs=defs.jobs, resources=defs.resources, executor=defs.executor,
        loggers=defs.loggers, metadata=defs.metadata, component_tree=defs.component_tree,
    )
