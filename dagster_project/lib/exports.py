"""Tables and files are one publish: a run's upload files are written to a folder of their own
before the publish transaction, and the partition's folder name is switched to them after it.

Layout under the exports folder::

    <date>                     -> .runs/<date>/<run_id>   (a symlink: what people and
                                                            uploaders open)
    .runs/<date>/<run_id>/     <audience>/google_customer_match.csv,
                               <audience>/meta_custom_audience.csv, manifest.json

The publish step (1) writes every file of the run into ``.runs/<date>/<run_id>/``, the
manifest last; (2) commits the tables' transaction, whose ``published.publish_log`` row names
the run; (3) switches ``<date>`` to the run's folder by renaming a new symlink over the old one,
so a reader sees the previous run's files or this run's, never a mix; the superseded run's
folder is then removed.

A kill before (2) leaves an orphan run folder and the previous run on both sides. A kill
between (2) and (3) leaves the tables on the new run and the link on the old one:
`repair` — run by every publish step and by ``cli run`` before it starts — points each
partition's link at the run its last publish_log row names, and removes run folders that no
link points at. A folder written by an older version (a real ``<date>`` directory) is
superseded like any run's the first time its partition is switched.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from dagster_project.lib import publish as pub

RUNS = ".runs"
COMPLETE = "manifest.json"  # written last: a run folder without it is incomplete


def run_folder(exports: Path, as_of: dt.date | str, run_id: str) -> Path:
    return Path(exports) / RUNS / str(as_of) / str(run_id)


def current_run(exports: Path, as_of: dt.date | str) -> str | None:
    """The run whose files ``<date>`` shows (None: no link yet, or an older real folder)."""
    link = Path(exports) / str(as_of)
    if not link.is_symlink():
        return None
    return Path(os.readlink(link)).name


def switch(exports: Path, as_of: dt.date | str, run_id: str) -> None:
    """Point ``<date>`` at the run's folder, atomically (a new link renamed over the old)."""
    exports = Path(exports)
    target = run_folder(exports, as_of, run_id)
    if not (target / COMPLETE).exists():
        raise FileNotFoundError(f"{target}: no complete export of run {run_id} to switch to")
    link = exports / str(as_of)
    before = current_run(exports, as_of)
    if link.exists() and not link.is_symlink():  # written by an older version: superseded
        before = f"legacy-{link.stat().st_mtime_ns}"
        legacy = run_folder(exports, as_of, before)
        legacy.parent.mkdir(parents=True, exist_ok=True)
        os.replace(link, legacy)
    tmp = exports / f".{as_of}.link-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(Path(RUNS) / str(as_of) / str(run_id), target_is_directory=True)
    os.replace(tmp, link)
    if before and before != str(run_id):  # the superseded run's files (open readers keep them)
        shutil.rmtree(run_folder(exports, as_of, before), ignore_errors=True)


def discard(exports: Path, as_of: dt.date | str, run_id: str) -> None:
    """Remove a run's folder that will not be published (refused, failed)."""
    folder = run_folder(exports, as_of, run_id)
    if folder.exists() and current_run(exports, as_of) != str(run_id):
        shutil.rmtree(folder)


def repair(con, exports: Path) -> list[str]:
    """Make every partition's files the ones of its last published run (module docstring);
    remove run folders no link points at. Returns what it did, one line each."""
    exports = Path(exports)
    runs_root = exports / RUNS
    if not runs_root.is_dir():
        return []
    try:
        last = dict(con.execute(
            "select cast(as_of_date as varchar), arg_max(run_id, published_at) "
            "from published.publish_log group by 1").fetchall())
    except duckdb.CatalogException:  # no publish yet: nothing to repair against
        last = {}
    done = []
    for day in sorted(p for p in runs_root.iterdir() if p.is_dir()):
        as_of = day.name
        want = last.get(as_of)
        if want and current_run(exports, as_of) != want and (day / want / COMPLETE).exists():
            before = current_run(exports, as_of)
            switch(exports, as_of, want)
            done.append(f"exports/{as_of}: switched from run {before} to run {want}, the run "
                        "published.publish_log names (a publish was cut off after its commit)")
        keep = current_run(exports, as_of)
        for folder in sorted(p for p in day.iterdir() if p.is_dir()):
            if folder.name != keep:
                shutil.rmtree(folder)
                done.append(f"exports/{as_of}: removed the files of run {folder.name}, "
                            "never published")
    return done


def publish_with_files(con, exports: Path, as_of: dt.date, run_id: str,
                       versions: dict[str, str], required: dict,
                       write_files: Callable[[Path], dict],
                       fault_hook: Callable[[str], None] | None = None) -> tuple[dict, Any]:
    """The publish step's three moves (module docstring): `write_files(folder)` writes the
    run's files and returns its manifest; the tables' transaction (`publish.publish`); the
    switch. A refusal before the transaction removes the run's files. Returns (manifest,
    what publish.publish returns). `fault_hook(point)` is for fault-injection tests."""
    hook = fault_hook or (lambda point: None)
    manifest = write_files(run_folder(exports, as_of, run_id))
    hook("files_written")
    try:
        current = pub.publish(con, as_of, run_id, versions, required, fault_hook=hook)
    except pub.PublishRefused:
        discard(exports, as_of, run_id)
        raise
    # any other failure leaves the folder to the next repair, which keeps it only if
    # publish_log says the transaction committed
    switch(exports, as_of, run_id)
    hook("switched")
    return manifest, current
