"""The training-cutoff grid (defs/propensity/assets.training_cutoffs): a year of cutoffs,
bounded by the labelled cutoffs the warehouse holds."""

import datetime as dt

from dagster_project.defs.propensity.assets import PropensityConfig, training_cutoffs

LATEST = dt.date(2025, 6, 1)


def weekly(n: int, start: dt.date = LATEST) -> list[dt.date]:
    return [start - dt.timedelta(weeks=k) for k in range(n)]


def test_a_long_history_gets_cutoffs_every_four_weeks_across_a_year():
    grid = training_cutoffs(weekly(70), PropensityConfig())
    assert grid[0] == LATEST  # the latest labelled cutoff validates
    assert len(grid) == 14
    assert {(a - b).days for a, b in zip(grid, grid[1:], strict=False)} == {28}
    assert (LATEST - grid[-1]).days == 52 * 7


def test_a_short_grid_falls_back_to_closer_cutoffs_down_to_every_week():
    cfg = PropensityConfig()
    # dbt's default 18 weekly dates leave purchase_30d 14 labelled cutoffs: every 2 weeks
    grid = training_cutoffs(weekly(14), cfg)
    assert len(grid) == 7 and {(a - b).days for a, b in zip(grid, grid[1:], strict=False)} == {14}
    # and churn_90d 6: every one of them, as before
    assert training_cutoffs(weekly(6), cfg) == weekly(6)
    assert training_cutoffs(weekly(2), cfg) == weekly(2)
    assert training_cutoffs([], cfg) == []


def test_the_grid_is_bounded_by_count_and_span_and_ignores_input_order():
    cfg = PropensityConfig(n_train_cutoffs=5, train_span_weeks=8, train_cutoff_every_weeks=1)
    cutoffs = weekly(30)
    assert training_cutoffs(cutoffs[::-1], cfg) == weekly(5)
    wide = PropensityConfig(n_train_cutoffs=50, train_span_weeks=8, train_cutoff_every_weeks=1)
    assert training_cutoffs(cutoffs, wide) == weekly(9)


def test_dbts_sparse_year_beyond_the_recent_weeks_still_gives_a_year_of_cutoffs():
    as_of = dt.date(2025, 6, 30)
    # dbt's grid (macros/as_of.sql): weekly k = 1..18, then every 4th k up to 64; churn_90d's
    # labels are complete from k = 13 on
    ks = [*range(13, 19), *range(20, 65, 4)]
    grid = training_cutoffs([as_of - dt.timedelta(weeks=k) for k in ks], PropensityConfig())
    assert grid[0] == as_of - dt.timedelta(weeks=13)
    gaps = {(a - b).days for a, b in zip(grid, grid[1:], strict=False)}
    assert min(gaps) >= 28 and (grid[0] - grid[-1]).days >= 48 * 7
    assert len(grid) >= 10
