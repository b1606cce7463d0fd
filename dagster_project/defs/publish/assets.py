"""Write-audit-publish, step 3: publish the audited candidates and write the upload files.

The blocking checks stop this step in the same run when one of them fails; but a check that
emits nothing, a run that selects this asset without its checks, or a re-execution of this
step alone would still get here (PITFALLS.md). So the step verifies the gate itself: it
publishes only the candidates written by THIS run for this partition, and only if every
required suite passed for exactly those versions (`publish.publish` re-checks that, and that
the candidates' content still hashes to what was audited, before its one transaction).

Tables and files are one publish (lib/exports.py): the run's files go to a folder of their
own, then the ``published.*`` swap commits in one transaction, then the partition's folder
name is switched to the run's folder. A run cut off between the two is repaired by the next
one (and by ``cli run`` at start) from ``published.publish_log``. The manifest carries the run
id, so a reader can match files to ``published.publish_log``.
"""

import datetime as dt
import hashlib
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from dagster_project.defs.partitions import (
    DUCKDB_POOL,
    daily_partitions,
    one_run_per_partition,
)
from dagster_project.defs.quality.candidates import (
    AUDIENCES_NAME,
    CANDIDATE_NAMES,
    REQUIRED_SUITES,
    md_table,
    warehouse,
)
from dagster_project.defs.resources import DataPaths
from dagster_project.lib import activation as act
from dagster_project.lib import drift
from dagster_project.lib import exclusions as excl
from dagster_project.lib import exports
from dagster_project.lib import publish as pub
from dagster_project.lib.segments import SEGMENTS
from dagster_project.lib.warehouse import table_exists


def _refuse(as_of, run_id: str, reason: str, **metadata) -> dg.Failure:
    return dg.Failure(
        description=(f"refusing to publish {as_of} (run {run_id}); the last published "
                     f"version stays in place: {reason}")[:4000],
        metadata={k: dg.MetadataValue.json(v) for k, v in metadata.items()},
    )


def gate_summary(con, versions: dict[str, str]) -> dict:
    """{name: {suite: passed}} of the newest recorded results of the required suites."""
    out = {}
    for name, version in sorted(versions.items()):
        out[name] = {}
        for suite in REQUIRED_SUITES[name]:
            res = pub.latest_gate_result(con, version, suite)
            out[name][suite] = None if res is None else bool(res.get("success"))
    return out


class PublishConfig(dg.Config):
    """What a person may decide for one run (the launchpad, or a backfill's config)."""

    # A partition whose population drift fails (a score's PSI above drift.FAIL_PSI, recorded
    # by the propensity asset for the model that scored) is not published unless this is set:
    # a shift that large is a new season, a campaign or a broken source, and a person should
    # look before the audiences go out.
    allow_score_drift: bool = False


def drifted_scores(con, as_of) -> dict[str, float]:
    """{target: population PSI} of the scores of `as_of` whose drift fails (lib/drift.py)."""
    if not table_exists(con, "segmentation", "model_metrics"):
        return {}
    cols = {r[0] for r in con.execute("describe segmentation.model_metrics").fetchall()}
    if "population_psi" not in cols:
        return {}
    return dict(con.execute(
        "select target, round(population_psi, 4) from segmentation.model_metrics "
        "where as_of_date = ? and population_psi > ? order by target",
        [as_of, drift.FAIL_PSI]).fetchall())


@dg.asset(
    key="published_segments",
    group_name="publish",
    deps=["audit_candidates"],
    partitions_def=daily_partitions,
    backfill_policy=one_run_per_partition,
    pool=DUCKDB_POOL,
    kinds={"duckdb", "csv"},
)
def published_segments(context: dg.AssetExecutionContext, config: PublishConfig,
                       duckdb: DuckDBResource, paths: DataPaths):
    """Gated candidates swapped atomically into published.*, plus hashed audience upload files."""
    as_of = dt.date.fromisoformat(context.partition_key)
    run_id = context.run.run_id
    with warehouse(duckdb) as con:
        for line in exports.repair(con, paths.exports):
            context.log.warning(line)
        versions = pub.run_candidates(con, as_of, run_id)
        missing = [n for n in CANDIDATE_NAMES if n not in versions]
        if missing:
            raise _refuse(as_of, run_id, (
                f"this run wrote no audited candidate for {missing}; materialize "
                f"audit_candidates and its checks in the same run as this asset"),
                candidates_of_this_run=versions)
        drifted = drifted_scores(con, as_of)
        if drifted and not config.allow_score_drift:
            raise _refuse(as_of, run_id, (
                "score drift: the population's PSI fails (> "
                f"{drift.FAIL_PSI}) for " + ", ".join(f"{t} {v}" for t, v in drifted.items())
                + " (the score_drift check shows it against its reference day); to publish "
                "anyway, run again with ops.published_segments.config.allow_score_drift: true"),
                population_psi=drifted)
        if drifted:
            context.log.warning(f"publishing despite score drift {drifted} "
                                "(allow_score_drift is set)")
        failed = {}
        for name in CANDIDATE_NAMES:
            ok, reason = pub.gate_passed(con, versions[name], REQUIRED_SUITES[name])
            if not ok:
                failed[name] = reason
        if failed:
            raise _refuse(as_of, run_id, "quality gate not passed: " + " || ".join(
                f"{n}: {r}" for n, r in failed.items()),
                candidate_versions=versions, gate=gate_summary(con, versions))
        counts = {n: pub.get_candidate(con, v).row_count for n, v in versions.items()}
        audiences = pub.read_candidate(con, versions[AUDIENCES_NAME])
        audience_gate = pub.latest_gate_result(con, versions[AUDIENCES_NAME], "audiences")
        notes = pub.candidate_notes(con, versions[AUDIENCES_NAME])
        gates = gate_summary(con, versions)

        # Files first, into this run's own folder; then the tables' transaction; then the
        # partition's folder name switched to the run (lib/exports.py: one publish).
        expected = [*SEGMENTS, *(act.SUPPRESSION_PREFIX + a for a in excl.AUDIENCES)]
        empty = sorted(set(expected) - set(audiences["audience"].astype(str)))
        try:
            manifest, current = exports.publish_with_files(
                con, paths.exports, as_of, run_id, versions, REQUIRED_SUITES,
                lambda folder: act.write_audience_exports(
                    audiences, paths.exports, as_of, run_id, gate=audience_gate,
                    min_size=act.PLATFORM_MIN_SIZE, stats=notes.get("stats"), folder=folder,
                    extra={"published_versions": versions, "row_counts": counts,
                           "gates": gates, "audiences_without_members": empty}))
        except pub.PublishRefused as exc:
            raise _refuse(as_of, run_id, str(exc), candidate_versions=versions) from exc
    root = paths.exports / as_of.isoformat()

    kinds = (audiences.drop_duplicates("audience").set_index("audience")["audience_kind"]
             .to_dict() if len(audiences) else {})
    rows = []
    for aud, entry in sorted(manifest["audiences"].items()):
        files = entry.get("files") or {}
        rows.append({
            "audience": aud, "kind": kinds.get(aud, ""), "members": entry["members"],
            "eligible": entry["eligible"], "exported": entry["exported"],
            "google_rows": files.get(act.GOOGLE_FILE, {}).get("rows", ""),
            "meta_rows": files.get(act.META_FILE, {}).get("rows", ""),
            "reason": entry.get("reason") or ""})
    skipped = {r["audience"]: r["reason"] for r in rows if not r["exported"]}
    skipped.update({aud: "no members (segment merged or empty, or nobody eligible)"
                    for aud in empty})
    for aud, reason in skipped.items():
        context.log.warning(f"audience {aud} not exported: {reason}")
    return dg.MaterializeResult(metadata={
        "published_versions": dg.MetadataValue.json(versions),
        "current_versions": dg.MetadataValue.json(current),
        "row_counts": dg.MetadataValue.json(counts),
        "gates": dg.MetadataValue.json(gates),
        "exports": dg.MetadataValue.md(md_table(pd.DataFrame(rows)) if rows else "none"),
        "export_files": dg.MetadataValue.json(
            {aud: e.get("files") for aud, e in manifest["audiences"].items() if e["exported"]}),
        "skipped_audiences": dg.MetadataValue.json(skipped),
        "manifest": dg.MetadataValue.path(str(root / act.MANIFEST)),
        "manifest_sha256": _sha256(root / act.MANIFEST),
        "run_id": run_id,
        "score_drift_overridden": dg.MetadataValue.json(drifted),
    })


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

