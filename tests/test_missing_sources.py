"""Every optional source absent, alone and all together: the night exits 0, publishes, and says
per output what is absent and why. Each case copies one small generated dataset, removes the
source's folders and runs the README's `cli run` in-process (an ephemeral instance)."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from dagster_project import cli
from dagster_project.lib import alerts

from .helpers import END, make_dataset

pytestmark = pytest.mark.slow

OPTIONAL = {
    "web": ["web/events"],
    "ads": ["ads/creatives", "ads/spend", "ads/exposures"],
    "returns": ["returns/returns"],
    "support": ["crm/support_tickets"],
    "fx": ["fx/rates"],
    "activation": ["marketing/activation_log"],
}
OPTIONAL["all"] = [f for folders in OPTIONAL.values() for f in folders]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("sources"), customers=900, seed=23)


def _night(small, tmp_path, monkeypatch, capsys, missing: str) -> dict:
    shutil.copytree(small / "raw", tmp_path / "raw")
    for folder in OPTIONAL[missing]:
        shutil.rmtree(tmp_path / "raw" / folder)
    monkeypatch.setenv("DS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DS_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    capsys.readouterr()
    rc = cli.main(["run", "--date", END.isoformat()])
    out = capsys.readouterr()
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        published = con.execute("select count(*) from published.segments where as_of_date = ?",
                                [END]).fetchone()[0]
        absent = [r[0] for r in con.execute(
            "select raw_table from raw.source_status where as_of_date = ? and not present",
            [END]).fetchall()]
    finally:
        con.close()
    return {"rc": rc, "out": out.out, "err": out.err, "published": published, "absent": absent}


def _webhook(monkeypatch) -> str:
    """A webhook URL written without its scheme (found: logged in full, token included)."""
    url = "hooks.example.invalid/services/T000/B000/s3cr3t-token"
    monkeypatch.setenv("DS_ALERT_WEBHOOK_URL", url)
    return url


EXPECTED_NOTES = {
    "web": ["decision_segments: high_intent_low_trust impossible: no web source"],
    "ads": ["creative_fatigue: absent: no ads exposures",
            "exclusion_audiences: creative_resistant impossible"],
    "returns": ["absent model return_60d: too few training examples: 0 positives"],
    "fx": ["kept out of the features:", "(no FX rate for"],
    "activation": [],
    "all": ["decision_segments: high_intent_low_trust impossible: no web source",
            "creative_fatigue: absent: no ads exposures",
            "absent model return_60d: too few training examples: 0 positives",
            "(no FX rate for"],
}


@pytest.mark.parametrize("missing", sorted(EXPECTED_NOTES))
def test_a_night_without_an_optional_source_publishes_and_says_what_is_absent(
        small, tmp_path, monkeypatch, capsys, missing):
    night = _night(small, tmp_path, monkeypatch, capsys, missing)
    assert night["rc"] == 0, night["err"][-3000:]
    assert night["published"] > 800
    tables = {folder.replace("/", "__") for folder in OPTIONAL[missing]}
    assert tables <= set(night["absent"])
    line = next(x for x in night["out"].splitlines() if "absent sources" in x)
    assert all(t in line for t in tables), line
    for note in EXPECTED_NOTES[missing]:
        assert note in night["out"], f"{note!r} not in:\n{night['out'][:4000]}"


def test_a_step_outside_the_publish_path_failing_exits_3_and_says_it_published(
        small, tmp_path, monkeypatch, capsys):
    # the support tickets absent, and the 30-day forecast (measurement) broken
    from dagster_project.lib import measurement

    def broken(*args, **kwargs):
        raise RuntimeError("forecast broken for this test")

    monkeypatch.setattr(measurement, "forecast", broken)
    # a cron shop has no daemon: `cli run` alerts itself (file and webhook), its token unlogged
    _webhook(monkeypatch)
    night = _night(small, tmp_path, monkeypatch, capsys, "support")
    records = alerts.read_alerts(tmp_path / "alerts")
    assert len(records) == 1 and records[0]["partition"] == END.isoformat()
    assert [s["step_key"] for s in records[0]["failed_steps"]] == ["segment_forecast"]
    assert "forecast broken" in records[0]["message"]
    assert "alert written to" in night["err"] and "webhook failed" in night["err"]
    assert "s3cr3t-token" not in night["err"] + night["out"]
    assert night["rc"] == cli.EXIT_PUBLISHED_WITH_FAILURES == 3
    assert night["published"] > 800
    assert f"partition {END} published with failures" in night["out"]
    assert "segment_forecast" in night["out"] and "crm__support_tickets" in night["out"]
    assert "FAILED step segment_forecast: RuntimeError: forecast broken" in night["err"]
