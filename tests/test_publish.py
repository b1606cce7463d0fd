"""Write-audit-publish in DuckDB, with fault injection: bad data, missing gate, a process
killed inside / right after the publish transaction, an error inside it, re-publishing."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from dagster_project.lib import activation as act
from dagster_project.lib import publish as pub
from dagster_project.lib import quality as q

ROOT = Path(__file__).resolve().parents[1]
SEGMENTS = ["acquire", "grow", "maintain", "win_back", "do_not_target"]
DRIVERS = ["proof", "identity", "anxiety", "convenience", "value", "performance"]
REQUIRED = {"segments": ["segments"], "audiences": ["audiences"]}
D1, D2 = "2025-03-01", "2025-03-02"


def make_segments(as_of, run_id, n=300, seed=1):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "customer_id": [f"C{i:06d}" for i in range(n)],
        "as_of_date": pd.Timestamp(as_of).date(),
        "primary_segment": [SEGMENTS[i % len(SEGMENTS)] for i in range(n)],
        "persuasion_driver": [DRIVERS[i % len(DRIVERS)] for i in range(n)],
        "churn_score": rng.uniform(0, 1, n).round(6),
        "run_id": run_id,
        "model_versions": '{"churn": "v1"}',
    })


def make_members(n=120, seed_offset=0):
    return pd.DataFrame([{
        "audience": "win_back", "customer_id": f"C{i:06d}", "marketing_consent": True,
        "holdout": False, "email": f"user{i + seed_offset}@example.com",
        "phone": f"+49 30 {1000000 + i}", "first_name": "Anna", "last_name": "Muster",
        "country": "DE", "zip": "10115"} for i in range(n)])


def stage(con, as_of, run_id, segments, members, gate=True):
    """write candidates, run the suites on what was stored, record the gate."""
    seg_v = pub.write_candidate(con, "segments", segments, as_of, run_id)
    prepared, _ = act.prepare_audience_members(members)
    aud_v = pub.write_candidate(con, "audiences", prepared, as_of, run_id,
                                key=("audience", "customer_id"))
    results = {}
    if gate:
        prev = pub.previous_sizes(con, "segments", "primary_segment", before=as_of)
        results["segments"] = q.check_segments(pub.read_candidate(con, seg_v), SEGMENTS, DRIVERS,
                                               previous_sizes=prev)
        results["audiences"] = q.check_audiences(pub.read_candidate(con, aud_v))
        pub.record_gate(con, seg_v, "segments", results["segments"])
        pub.record_gate(con, aud_v, "audiences", results["audiences"])
    return {"segments": seg_v.version, "audiences": aud_v.version}, results, prepared


def published_rows(con, name, exclude=("run_id",)):
    df = pub.read_published(con, name)
    df = df.drop(columns=[c for c in exclude if c in df.columns])
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def file_hashes(root):
    root = Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def db(tmp_path):
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield con
    con.close()


@pytest.mark.parametrize("order", ["null_first", "text_first"])
def test_a_column_null_on_one_night_and_text_on_another_publishes_both_into_history(db, order):
    # an absent model's drivers are NULL on the night it is absent: the candidate and the
    # history keep the declared VARCHAR, whichever night comes first
    con = db
    nights = [(D1, "run-aaaaaaaa", None), (D2, "run-bbbbbbbb", "days since the last order")]
    if order == "text_first":
        nights.reverse()
    for day, run, driver in nights:
        segments = make_segments(day, run).assign(segment_reason=driver)
        versions, res, _ = stage(con, day, run, segments, make_members())
        assert all(r.success for r in res.values())
        pub.publish(con, day, run, versions, REQUIRED)
    got = con.execute("SELECT partition_date, count(segment_reason) FROM "
                      "published.segments_history GROUP BY 1 ORDER BY 1").fetchall()
    assert [(str(d), n) for d, n in got] == [(D1, 0), (D2, 300)]
    assert dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                            "WHERE table_name = 'segments_history'").fetchall())[
        "segment_reason"] == "VARCHAR"


def test_happy_path_and_backfill_keeps_view_current(db):
    con = db
    v1, res, _ = stage(con, D2, "run-bbbbbbbb", make_segments(D2, "run-b"), make_members())
    assert all(r.success for r in res.values()), [r.summary_text() for r in res.values()]
    assert v1["segments"] == "segments__20250302__runbbbbb"
    current = pub.publish(con, D2, "run-bbbbbbbb", v1, REQUIRED)
    assert current["segments"] == v1["segments"]
    assert len(pub.read_published(con, "segments")) == 300

    # backfill an older date: lands in history, the view stays on the newest date
    v0, res, _ = stage(con, D1, "run-aaaaaaaa", make_segments(D1, "run-a", n=280),
                       make_members())
    pub.publish(con, D1, "run-aaaaaaaa", v0, REQUIRED)
    assert pub.published_version(con, "segments") == v1["segments"]
    assert len(pub.read_published(con, "segments")) == 300
    hist = con.execute("SELECT partition_date, count(*) FROM published.segments_history "
                       "GROUP BY 1 ORDER BY 1").fetchall()
    assert [(str(d), n) for d, n in hist] == [(D1, 280), (D2, 300)]
    log = con.execute("SELECT as_of_date, run_id, versions FROM published.publish_log "
                      "ORDER BY published_at").fetchall()
    assert [r[1] for r in log] == ["run-bbbbbbbb", "run-aaaaaaaa"]
    assert json.loads(log[0][2]) == v1


def test_fault1_bad_candidate_blocks_publish_and_export(db, tmp_path):
    con = db
    exports = tmp_path / "exports"
    good, res, prepared = stage(con, D1, "run-good0001", make_segments(D1, "run-good"),
                                make_members())
    pub.publish(con, D1, "run-good0001", good, REQUIRED)
    act.write_audience_exports(prepared, exports, D1, "run-good0001",
                               res["audiences"].to_dict())
    before_rows = published_rows(con, "segments", exclude=())
    before_files = file_hashes(exports)

    bad = make_segments(D1, "run-bad")
    bad.loc[5, "customer_id"] = bad.loc[4, "customer_id"]   # duplicated customer
    bad.loc[7, "churn_score"] = 1.3                         # score out of range
    members = make_members()
    members.loc[3, "marketing_consent"] = False             # opted-out customer
    versions, res, prepared_bad = stage(con, D1, "run-bad00002", bad, members)
    assert not res["segments"].success and not res["audiences"].success
    seg_text = res["segments"].summary_text()
    assert "expect_column_values_to_be_unique[customer_id]" in seg_text and "C000004" in seg_text
    assert "[churn_score]" in seg_text and "1.3" in seg_text
    assert "[marketing_consent]" in res["audiences"].summary_text()

    with pytest.raises(pub.PublishRefused, match="segments.*failed"):
        pub.publish(con, D1, "run-bad00002", versions, REQUIRED)
    with pytest.raises(act.ExportRefused):
        act.write_audience_exports(prepared_bad, exports, D1, "run-bad00002",
                                   res["audiences"].to_dict())
    pd.testing.assert_frame_equal(published_rows(con, "segments", exclude=()), before_rows)
    assert pub.published_version(con, "segments") == good["segments"]
    assert not pub.table_exists(con, "published", versions["segments"])
    assert file_hashes(exports) == before_files


def test_fault2_no_gate_record_refuses(db):
    con = db
    versions, _, _ = stage(con, D1, "run-nogate01", make_segments(D1, "r"), make_members(),
                           gate=False)
    with pytest.raises(pub.PublishRefused, match="no result"):
        pub.publish(con, D1, "run-nogate01", versions, REQUIRED)
    ok, reason = pub.gate_passed(con, versions["segments"], ["segments"])
    assert not ok and "no result" in reason
    # a gate recorded for another version does not count
    other, _, _ = stage(con, D1, "run-other001", make_segments(D1, "r"), make_members())
    assert pub.gate_passed(con, other["segments"], ["segments"])[0]
    assert not pub.gate_passed(con, versions["segments"], ["segments"])[0]
    assert not pub.table_exists(con, "published", "segments")


def test_candidate_changed_after_audit_refuses(db):
    con = db
    versions, _, _ = stage(con, D1, "run-tamper01", make_segments(D1, "r"), make_members())
    con.execute(f'UPDATE audit."{versions["segments"]}" SET churn_score = 0.5 '
                f"WHERE customer_id = 'C000001'")
    with pytest.raises(pub.PublishRefused, match="changed since it was audited"):
        pub.publish(con, D1, "run-tamper01", versions, REQUIRED)


KILL_SCRIPT = r"""
import json, os, signal, sys
import duckdb
from dagster_project.lib import publish as pub
path, point, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
def hook(at):
    if at == point:
        os.kill(os.getpid(), signal.SIGKILL)
con = duckdb.connect(path)
pub.publish(con, args["as_of"], args["run_id"], args["versions"], args["required"],
            fault_hook=hook)
print("published")
"""


@pytest.mark.parametrize("point,expect", [("after_copy", "old"), ("before_commit", "old"),
                                          ("after_commit", "new")])
def test_fault3_killed_inside_or_after_transaction(tmp_path, point, expect):
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    old, _, _ = stage(con, D1, "run-old00001", make_segments(D1, "run-old"), make_members())
    pub.publish(con, D1, "run-old00001", old, REQUIRED)
    old_rows = published_rows(con, "segments", exclude=())
    new_seg = make_segments(D2, "run-new", n=310, seed=2)
    new, res, _ = stage(con, D2, "run-new00002", new_seg, make_members(130))
    assert all(r.success for r in res.values())
    new_rows = pub.read_candidate(con, new["segments"])
    new_rows = new_rows.sort_values(list(new_rows.columns)).reset_index(drop=True)
    con.close()

    args = {"as_of": D2, "run_id": "run-new00002", "versions": new, "required": REQUIRED}
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(path), point,
                           json.dumps(args)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == -9, proc.stderr   # SIGKILL
    assert "published" not in proc.stdout

    con = duckdb.connect(str(path), read_only=True)
    seen = published_rows(con, "segments", exclude=())
    log_runs = [r[0] for r in con.execute(
        "SELECT run_id FROM published.publish_log ORDER BY published_at").fetchall()]
    hist = dict(con.execute("SELECT CAST(partition_date AS VARCHAR), count(*) FROM "
                            "published.segments_history GROUP BY 1").fetchall())
    if expect == "old":
        pd.testing.assert_frame_equal(seen, old_rows)
        assert log_runs == ["run-old00001"] and hist == {D1: 300}
        assert pub.published_version(con, "segments") == old["segments"]
        assert not pub.table_exists(con, "published", new["segments"])
        assert len(pub.read_published(con, "audiences")) == 120
    else:
        pd.testing.assert_frame_equal(seen, new_rows)
        assert log_runs == ["run-old00001", "run-new00002"] and hist == {D1: 300, D2: 310}
        assert len(pub.read_published(con, "audiences")) == 130
        # the post-commit read-back, run by a later reader, passes
        cands = {n: pub.get_candidate(con, v) for n, v in new.items()}
        pub.verify_published(con, D2, "run-new00002", cands)
    con.close()


@pytest.mark.parametrize("point", ["after_copy", "before_commit"])
def test_fault4_error_inside_transaction_is_loud_and_rolls_back(db, point):
    con = db
    old, _, _ = stage(con, D1, "run-old00001", make_segments(D1, "run-old"), make_members())
    pub.publish(con, D1, "run-old00001", old, REQUIRED)
    before = published_rows(con, "segments", exclude=())
    new, _, _ = stage(con, D2, "run-new00002", make_segments(D2, "run-new", seed=3),
                      make_members())

    def hook(at):
        if at == point:
            raise RuntimeError(f"injected at {at}")

    with pytest.raises(pub.PublishError, match=f"injected at {point}"):
        pub.publish(con, D2, "run-new00002", new, REQUIRED, fault_hook=hook)
    pd.testing.assert_frame_equal(published_rows(con, "segments", exclude=()), before)
    assert not pub.table_exists(con, "published", new["segments"])
    assert con.execute("SELECT count(*) FROM published.publish_log").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM published.segments_history "
                       "WHERE partition_date = ?", [D2]).fetchone()[0] == 0
    # the connection is usable and the same candidate publishes cleanly afterwards
    pub.publish(con, D2, "run-new00002", new, REQUIRED)
    assert pub.published_version(con, "segments") == new["segments"]


def test_swallowed_failure_inside_transaction_is_caught_by_read_back(db):
    """PITFALLS: after a failed statement in a transaction DuckDB's COMMIT returns without
    error and rolls everything back. Simulate a buggy step that swallows an error: the
    read-back after COMMIT must raise."""
    con = db
    new, _, _ = stage(con, D1, "run-swallow1", make_segments(D1, "r"), make_members())

    def swallowing_hook(at):
        if at == "before_commit":
            try:
                con.execute("SELECT CAST('x' AS INTEGER)")  # aborts the txn
            except duckdb.Error:
                pass

    with pytest.raises(pub.PublishError, match="read-back failed"):
        pub.publish(con, D1, "run-swallow1", new, REQUIRED, fault_hook=swallowing_hook)
    assert not pub.table_exists(con, "published", new["segments"])


def test_fault5_republish_same_partition_is_identical(db, tmp_path):
    con = db
    members = make_members(150)
    v1, res1, prep1 = stage(con, D1, "run-first001", make_segments(D1, "run-first"), members)
    pub.publish(con, D1, "run-first001", v1, REQUIRED)
    act.write_audience_exports(prep1, tmp_path / "e1", D1, "run-first001",
                               res1["audiences"].to_dict())
    rows1 = {n: published_rows(con, n) for n in ("segments", "audiences")}
    hist1 = con.execute("SELECT * EXCLUDE (run_id) FROM published.segments_history "
                        "ORDER BY ALL").fetchall()

    v2, res2, prep2 = stage(con, D1, "run-second02", make_segments(D1, "run-second"),
                            members.sample(frac=1.0, random_state=1))
    assert v2["segments"] != v1["segments"]
    pub.publish(con, D1, "run-second02", v2, REQUIRED)
    act.write_audience_exports(prep2, tmp_path / "e2", D1, "run-second02",
                               res2["audiences"].to_dict())
    for n in ("segments", "audiences"):
        pd.testing.assert_frame_equal(published_rows(con, n), rows1[n])
    assert con.execute("SELECT * EXCLUDE (run_id) FROM published.segments_history "
                       "ORDER BY ALL").fetchall() == hist1
    assert pub.published_version(con, "segments", D1) == v2["segments"]
    f1 = {k: v for k, v in file_hashes(tmp_path / "e1").items() if k.endswith(".csv")}
    f2 = {k: v for k, v in file_hashes(tmp_path / "e2").items() if k.endswith(".csv")}
    assert f1 == f2 and len(f1) == 2
    # publishing the very same version again reuses its table and changes nothing
    pub.publish(con, D1, "run-second02", v2, REQUIRED)
    pd.testing.assert_frame_equal(published_rows(con, "segments"), rows1["segments"])


def test_content_hash_is_order_independent_and_sensitive(db):
    con = db
    df = make_segments(D1, "r")
    con.register("a", df)
    con.register("b", df.sample(frac=1.0, random_state=5))
    con.execute("CREATE TABLE t1 AS SELECT * FROM a")
    con.execute("CREATE TABLE t2 AS SELECT * FROM b")
    assert pub.content_hash(con, "t1") == pub.content_hash(con, "t2")
    con.execute("UPDATE t2 SET churn_score = churn_score + 1e-9 WHERE customer_id = 'C000010'")
    assert pub.content_hash(con, "t1") != pub.content_hash(con, "t2")
    assert pub.content_hash(con, "t1", exclude=["run_id"]) != pub.content_hash(con, "t1")


# --------------------------------------------------------------------------- files + tables
def _published_old_staged_new(tmp_path, n_new: int, members_new: int):
    """A warehouse with run-old published for D2 (tables and files) and run-new's audited
    candidates staged; (warehouse path, exports folder, open connection, new versions)."""
    from dagster_project.lib import exports

    path, out = tmp_path / "warehouse.duckdb", tmp_path / "exports"
    con = duckdb.connect(str(path))
    old, _, _ = stage(con, D2, "run-old00001", make_segments(D2, "run-old"), make_members())
    exports.publish_with_files(
        con, out, D2, "run-old00001", old, REQUIRED,
        lambda folder: act.write_audience_exports(pub.read_candidate(con, old["audiences"]),
                                                  out, D2, "run-old00001", {"success": True},
                                                  folder=folder))
    new, _, _ = stage(con, D2, "run-new00002", make_segments(D2, "run-new", n=n_new, seed=2),
                      make_members(members_new, seed_offset=7))
    return path, out, con, new


FILES_KILL_SCRIPT = r"""
import json, os, signal, sys
from pathlib import Path
import duckdb
from dagster_project.lib import activation as act, exports, publish as pub
path, exports_dir, point, args = sys.argv[1], Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
def hook(at):
    if at == point:
        os.kill(os.getpid(), signal.SIGKILL)
con = duckdb.connect(path)
audiences = pub.read_candidate(con, args["versions"]["audiences"])
exports.publish_with_files(
    con, exports_dir, args["as_of"], args["run_id"], args["versions"], args["required"],
    lambda folder: act.write_audience_exports(audiences, exports_dir, args["as_of"],
                                              args["run_id"], {"success": True}, folder=folder),
    fault_hook=hook)
print("published")
"""


@pytest.mark.parametrize("point,tables,files_before_repair", [
    ("files_written", "old", "old"),   # before the transaction
    ("before_commit", "old", "old"),   # inside it
    ("after_commit", "new", "old"),    # after it, before the switch: repaired to new
    ("switched", "new", "new"),        # after the switch
])
def test_files_and_tables_are_one_publish_when_killed_anywhere(tmp_path, point, tables,
                                                               files_before_repair):
    """Found: killed 4 s into publish, the views and publish_log showed the new run while
    manifest.json and the CSVs were the previous run's."""
    from dagster_project.lib import exports

    path, out, con, new = _published_old_staged_new(tmp_path, 310, 130)
    con.close()

    args = {"as_of": D2, "run_id": "run-new00002", "versions": new, "required": REQUIRED}
    proc = subprocess.run([sys.executable, "-c", FILES_KILL_SCRIPT, str(path), str(out), point,
                           json.dumps(args)], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == -9, proc.stderr
    want = {"old": "run-old00001", "new": "run-new00002"}

    def manifest_run():
        return json.loads((out / D2 / act.MANIFEST).read_text())["run_id"]

    con = duckdb.connect(str(path))
    logged = con.execute("select arg_max(run_id, published_at) from published.publish_log "
                         "where as_of_date = ?", [D2]).fetchone()[0]
    assert logged == want[tables]
    assert len(pub.read_published(con, "audiences")) == (130 if tables == "new" else 120)
    assert manifest_run() == want[files_before_repair]
    # the next run (or `cli run` at start) repairs: files are the tables' run, orphans gone
    done = exports.repair(con, out)
    assert manifest_run() == want[tables]
    assert bool(done) == (point != "switched")
    assert [p.name for p in (out / exports.RUNS / D2).iterdir()] == [want[tables]]
    members = (out / D2 / "win_back" / act.GOOGLE_FILE).read_text().count("\n") - 1
    assert members == (130 if tables == "new" else 120)
    assert exports.repair(con, out) == []  # idempotent
    con.close()


# --------------------------------------------------------------------------- full disk
DISK_FULL_SCRIPT = r"""
import json, resource, signal, sys
from pathlib import Path
import duckdb
from dagster_project.lib import activation as act, exports, publish as pub
path, exports_dir, limit, args = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
con = duckdb.connect(path)
audiences = pub.read_candidate(con, args["versions"]["audiences"])
# From here no file of this process may grow past `limit` bytes: a write beyond it fails with
# EFBIG as a write to a full disk fails with ENOSPC (SIGXFSZ ignored, so it is an error).
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
try:
    exports.publish_with_files(
        con, exports_dir, args["as_of"], args["run_id"], args["versions"], args["required"],
        lambda folder: act.write_audience_exports(audiences, exports_dir, args["as_of"],
                                                  args["run_id"], {"success": True}, folder=folder))
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1)
print("published")
"""


@pytest.mark.parametrize("where", ["upload files", "warehouse commit"])
def test_a_full_disk_leaves_the_published_surface_whole_and_the_next_run_cleans_up(tmp_path,
                                                                                  where):
    """The disk fills during publish, while the upload files are written (nothing may grow) or
    when the warehouse commits (the files fit, the write-ahead log does not). The run fails
    with the write error; the published tables, publish_log and the partition's files are the
    previous run's, whole; the next run removes the failed run's files and publishes."""
    from dagster_project.lib import exports

    path, out, con, new = _published_old_staged_new(tmp_path, 3100, 1300)
    before = {n: published_rows(con, n) for n in ("segments", "audiences")}
    # the largest file the run writes, measured on a scratch copy
    scratch = tmp_path / "scratch"
    act.write_audience_exports(pub.read_candidate(con, new["audiences"]), scratch, D2,
                               "run-new00002", {"success": True}, folder=scratch / "x")
    largest = max(p.stat().st_size for p in scratch.rglob("*") if p.is_file())
    con.close()
    files_before = file_hashes(out / D2)

    limit = 0 if where == "upload files" else largest + 4096
    args = {"as_of": D2, "run_id": "run-new00002", "versions": new, "required": REQUIRED}
    proc = subprocess.run([sys.executable, "-c", DISK_FULL_SCRIPT, str(path), str(out),
                           str(limit), json.dumps(args)], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    if where == "upload files":
        assert "OSError: [Errno 27] File too large" in proc.stderr, proc.stderr
    else:  # the files were all written; DuckDB's commit was what failed, and it rolled back
        assert "Failed to commit" in proc.stderr and "rolled back" in proc.stderr, proc.stderr
        assert (exports.run_folder(out, D2, "run-new00002") / act.MANIFEST).exists()

    con = duckdb.connect(str(path))  # opens: the write-ahead log holds no half transaction
    assert con.execute("select run_id from published.publish_log").fetchall() == [
        ("run-old00001",)]
    for name, rows in before.items():
        pd.testing.assert_frame_equal(published_rows(con, name), rows)
    assert file_hashes(out / D2) == files_before
    assert exports.current_run(out, D2) == "run-old00001"

    # the next run: the failed run's folder goes, then it publishes
    assert exports.repair(con, out) == [
        f"exports/{D2}: removed the files of run run-new00002, never published"]
    assert [p.name for p in (out / exports.RUNS / D2).iterdir()] == ["run-old00001"]
    exports.publish_with_files(
        con, out, D2, "run-new00002", new, REQUIRED,
        lambda folder: act.write_audience_exports(pub.read_candidate(con, new["audiences"]),
                                                  out, D2, "run-new00002", {"success": True},
                                                  folder=folder))
    assert exports.current_run(out, D2) == "run-new00002"
    assert len(pub.read_published(con, "segments")) == 3100
    assert [p.name for p in (out / exports.RUNS / D2).iterdir()] == ["run-new00002"]
    con.close()
