"""Layer 2: LightGBM propensity models, one per target, calibrated and explained.

Input: a training frame with one row per (``cutoff_date``, ``customer_id``), the feature
columns (numeric, NaN allowed) and label columns (1.0 / 0.0, or NaN = outside the target's
population or window not complete). Scoring uses the features at the partition date.

Policies (each stated once, here):

Folds — time-based, never random, and customer-disjoint. Only rows with a non-null label
  take part. Customers are split in two by a hash of customer_id: *training customers*,
  whose rows at every cutoff before the most recent labelled one are the training fold, and
  *validation customers*, whose rows at the most recent labelled cutoff are the validation
  fold. Why disjoint: for horizons longer than the cutoff step the label windows of the last
  training cutoffs reach past the validation cutoff (``label_overlap_days`` in the result
  says by how much), so a customer's training label could carry the very purchase their
  validation label asks about. Measured on the 3,000-customer test data: purchase_30d AUC
  0.917 with the validation customers' earlier rows in training, 0.787 without. The other
  rows (validation customers' earlier cutoffs, training customers' latest) are not used.
  The validation fold is split again by the hash into two halves: the *early-stopping* half
  (LightGBM stops on its log-loss) and the *calibration* half (the calibrator is fitted on
  it and every reported metric is computed on it). So no metric is measured on the data
  that chose the number of trees, or on customers the model was trained on.

Order — rows are sorted by (cutoff_date, customer_id) before anything else: LightGBM is
  deterministic only for an identical row order (PITFALLS.md). Duplicate keys are an error.

Sampling — above ``max_train_rows`` training rows, a seeded sample is drawn per cutoff,
  each cutoff keeping its share of rows (stratified by cutoff). Above ``max_valid_rows``
  the validation fold is sampled the same way. Both samples are drawn from the sorted
  frame, so they do not depend on input order.

Minimum data — the training fold needs ``min_positives`` (50) positives and
  ``min_negatives`` (50) negatives; each validation half needs ``min_valid_class`` (10) of
  each class. Below that the target is not trained: the result carries ``absent_reason``
  and no booster; nothing raises, nothing is made up. 50 and 10, not more, so a shop of
  1,500-3,000 customers gets its repeat, 7-day and return models (a wholesale shop whose
  credit notes are its returns has 60-80 positive training rows for return_60d; a large base
  is far above either minimum, so they change nothing there). With 10-20 validation
  positives the AUC's interval is wide (about +-0.1) and the comparison with the baseline
  says so (verdict "indistinguishable" unless the difference is beyond it): the model is
  flagged, not withheld.

Calibration — centred isotonic regression of the label on the raw (log-odds) score,
  fitted on the calibration half, with a tie-break, so that the published probability is
  strictly increasing in the log-odds: it ranks customers exactly as the model does. Plain
  isotonic regression is a step function: its flat steps tie customers the model tells
  apart (on the default data the published purchase_30d AUC was 0.736 against the
  log-odds' 0.740) and segment cuts on the published score then fall inside a tie. Centred
  isotonic regression (Oron & Flournoy 2017) keeps the isotonic fit and replaces each step
  by one point, the block's mean raw score and mean label, interpolating linearly between
  them: strictly increasing between the outer blocks, the same fit on the data. Beyond the
  outer blocks (the lowest and highest scores, about half a block on each side) it is
  flat; there, and wherever double precision would tie two raw scores, a tie-break
  ``TIE_BREAK`` (1e-6) x (0.5 + atan(raw) / pi) is mixed in: strictly increasing, bounded,
  moving no probability by more than 1e-6. Not Platt scaling (a sigmoid of the raw score,
  also strictly monotone): the boosted score's miscalibration is not in general a sigmoid
  shape, and the halves are large enough (>= ``min_valid_class`` per class; thousands in
  practice) for a non-parametric fit. The reported Brier score is *cross-fitted*: the
  calibration half is split again by customer hash, each quarter is calibrated by a fit on
  the other, so the Brier score is not measured on the points the calibrator was fitted
  to. The stored calibrator is the fit on the whole half.

Metrics — on the calibration half: roc_auc and pr_auc (average precision) of the raw score
  (the calibration is strictly monotone, so the published score gives the same values),
  brier of the calibrated probability (cross-fitted, above), brier_uncalibrated of the
  sigmoid of the raw score, top_decile_lift (tie-aware), n_pos, n_neg.

Baseline — per target, a one-feature ranking (``BASELINES``): recency rank for purchase,
  repeat and cross-sell; days since the last order for churn; the customer's past rate
  for discount and return. Missing values rank as the least likely (most likely for churn,
  where a missing last order means no recent order). The baseline gets the same metrics on
  the same half, its Brier score from its rank mapped to a probability by the same
  cross-fitted isotonic procedure. ``beats_baseline`` is model roc_auc > baseline roc_auc;
  ``baseline_comparison`` adds the difference's paired bootstrap 95% interval and a verdict
  (better / indistinguishable / worse), so a difference within noise reads as one.

Refit — with ``refit_all`` (the asset's default), once validated the model is refitted on
  every customer's labelled rows at every training cutoff and the validation cutoff (all
  folds, sampled as above), with the early-stopped number of trees (times
  ``refit_tree_scale``, 1), and that refit scores; the calibrator fitted on the validated
  model's calibration half maps its log-odds (same recipe, same number of trees: the same
  scale). Every metric stays the validated model's, on customers it never saw, so the
  validation policy above stays honest; the refit itself cannot be measured on the
  night's data and is measured by backtest instead (scripts/model_vs_btyd.py backtest:
  earlier as-of dates, every customer scored on what they did next): +0.001 to +0.005 AUC
  on the purchase and churn targets of four CRM-only shops, up to +0.025 for repeat_90d,
  because the training fold holds only half the customers. Both models are saved
  (model.txt scores, model_validated.txt is the one measured).

Offset — the purchase and churn targets (``BTYD_TARGETS``) do not boost from zero but from
  BG/NBD's log-odds for their horizon (``offset_feature``: the feature ``bgnbd_p_purchase_<h>d``,
  BG/NBD fitted at each cutoff on every customer's history there, lib/btyd.py; its complement
  for churn); rows without an order start from the training base rate of such rows. The trees
  then only add what BG/NBD misses, so on a small CRM-only shop, where there is little more
  to learn, early stopping keeps the model at BG/NBD's ranking instead of relearning it with
  noise. Measured by backtest on three CRM-only shops of 1,500-3,000 customers (scripts/
  model_vs_btyd.py, mean of 4 as-of dates, the published refit against BG/NBD, purchase_30d
  and churn_90d): from -0.006 to +0.010 AUC before, -0.001 to +0.010 with BG/NBD's outputs as
  features and the offset.
  Scores, contributions (the offset less its training mean counts to that feature's driver)
  and saved models (``offset`` in metadata.json) include it; ``TrainConfig.offset`` turns it
  off.

Reference model — for the purchase and churn targets (``BTYD_TARGETS``) also the classic
  buy-till-you-die model, BG/NBD (``lib/btyd.py``): fitted by maximum likelihood on the
  training customers at the latest training cutoff (their order counts, first-to-last and
  first-to-cutoff days), it scores the calibration half with P(a purchase within the
  horizon) (1 minus that for churn). Same metrics, same paired bootstrap against the model;
  in ``btyd``. A customer without an order is outside BG/NBD and ranks as least likely to
  buy (most likely to churn).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import average_precision_score, roc_auc_score

from dagster_project.lib import btyd as bgnbd
from dagster_project.lib.features import LABEL_HORIZON_DAYS, driver_phrase

CUTOFF = "cutoff_date"
CUSTOMER = "customer_id"

# The calibration's tie-break weight: the most a published probability moves for it.
TIE_BREAK = 1e-6

MODEL_FILE = "model.txt"
VALIDATED_MODEL_FILE = "model_validated.txt"
CALIBRATION_FILE = "calibration.json"
METADATA_FILE = "metadata.json"


@dataclass(frozen=True)
class Baseline:
    """A naive one-feature score: ``sign * feature``; missing values ranked ``missing``."""

    feature: str
    sign: int  # +1: higher feature value = more likely; -1: lower = more likely
    missing: str  # "lowest" or "highest": where rows with the feature missing rank
    description: str


_RECENCY = Baseline(
    "days_since_last_order", -1, "lowest", "recency rank: fewer days since the last order"
)
BASELINES: dict[str, Baseline] = {
    "purchase_7d": _RECENCY,
    "purchase_30d": _RECENCY,
    "repeat_90d": _RECENCY,
    "cross_sell_60d": _RECENCY,
    "churn_90d": Baseline(
        "days_since_last_order", +1, "highest", "more days since the last order"
    ),
    "discount_next_order": Baseline(
        "discount_order_share", +1, "lowest", "past share of orders with a discount"
    ),
    "return_60d": Baseline(
        "return_rate_365d", +1, "lowest", "past share of units returned (last year)"
    ),
}


# BG/NBD reference per target: (horizon in days, +1 = P(purchase) / -1 = 1 - P(purchase))
BTYD_TARGETS: dict[str, tuple[int, int]] = {
    "purchase_7d": (7, +1), "purchase_30d": (30, +1), "churn_90d": (90, -1),
}


def offset_feature(target: str) -> str | None:
    """The BG/NBD feature column (``btyd.DERIVED``) a BTYD target boosts from (module
    docstring, Offset), or None."""
    if target not in BTYD_TARGETS:
        return None
    return f"bgnbd_p_purchase_{BTYD_TARGETS[target][0]}d"


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def offset_values(spec: dict[str, Any] | None, df: pd.DataFrame) -> np.ndarray:
    """Per row, the log-odds the trees start from: BG/NBD's for the target's horizon (its
    complement for churn), ``missing`` where BG/NBD has no value (no order yet); 0 without
    an offset."""
    if not spec:
        return np.zeros(len(df))
    p = df[spec["feature"]].to_numpy(dtype=np.float64, na_value=np.nan)
    z = _logit(p if spec["sign"] > 0 else 1 - p)
    return np.where(np.isnan(p), spec["missing"], z)


@dataclass(frozen=True)
class LGBMParams:
    num_leaves: int = 31
    max_depth: int = -1  # -1: no limit
    max_bin: int = 255
    learning_rate: float = 0.05
    n_estimators: int = 1000  # the maximum; early stopping picks the number used
    min_child_samples: int = 100
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l1: float = 0.0
    lambda_l2: float = 1.0


@dataclass(frozen=True)
class TrainConfig:
    lgbm: LGBMParams = field(default_factory=LGBMParams)
    early_stopping_rounds: int = 50
    seed: int = 20240601
    num_threads: int = 1
    deterministic: bool = True
    force_col_wise: bool = True
    min_positives: int = 50
    min_negatives: int = 50
    min_valid_class: int = 10
    max_train_rows: int = 1_000_000
    max_valid_rows: int = 500_000
    # Refit for scoring (module docstring, Refit): off by default here, on in the asset.
    refit_all: bool = False
    refit_tree_scale: float = 1.0
    # BTYD targets boost from BG/NBD's log-odds when its feature is in the frame (Offset)
    offset: bool = True
    baselines: dict[str, Baseline] = field(default_factory=lambda: dict(BASELINES))

    def lgb_params(self) -> dict[str, Any]:
        p = self.lgbm
        return {
            "objective": "binary",
            "metric": "binary_logloss",
            "num_leaves": p.num_leaves,
            "max_depth": p.max_depth,
            "max_bin": p.max_bin,
            "learning_rate": p.learning_rate,
            "min_data_in_leaf": p.min_child_samples,
            "feature_fraction": p.feature_fraction,
            "bagging_fraction": p.bagging_fraction,
            "bagging_freq": p.bagging_freq,
            "lambda_l1": p.lambda_l1,
            "lambda_l2": p.lambda_l2,
            "seed": self.seed,
            "num_threads": self.num_threads,
            "deterministic": self.deterministic,
            "force_col_wise": self.force_col_wise,
            "verbosity": -1,
        }


@dataclass(frozen=True)
class IsotonicCalibrator:
    """Centred isotonic calibration with a tie-break (module docstring, Calibration): a
    map from raw score (log-odds) to probability that is strictly increasing, so the
    published probability ranks customers exactly as the log-odds do.

    ``x_thresholds`` / ``y_thresholds`` are the isotonic fit's blocks, one point each: the
    block's mean raw score and its mean label (strictly increasing in both). Between them
    the map interpolates linearly, beyond them it is flat; ``tie_break`` times a strictly
    increasing function of the raw score in (0, 1) (``0.5 + atan(raw) / pi``, which does
    not saturate in double precision over any realistic log-odds range, unlike a sigmoid)
    is mixed in, so no two distinct raw scores share a probability and the probability
    moves by at most ``tie_break``. Applied with ``np.interp``, so a calibrator read back
    from JSON gives bit-identical probabilities. Reads the former step-function files
    (``method: isotonic``) too, as they were fitted.
    """

    x_thresholds: tuple[float, ...]
    y_thresholds: tuple[float, ...]
    tie_break: float = TIE_BREAK
    method: str = "centred_isotonic"

    @classmethod
    def fit(cls, raw: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
        raw = np.asarray(raw, dtype=float)
        y = np.asarray(y, dtype=float)
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True)
        fitted = iso.fit(raw, y).predict(raw)
        # one point per block (a run of equal fitted values): its mean raw score and label;
        # blocks are contiguous in raw, so both coordinates are strictly increasing
        levels, block = np.unique(fitted, return_inverse=True)
        x = np.bincount(block, weights=raw) / np.bincount(block)
        return cls(tuple(float(v) for v in x), tuple(float(v) for v in levels))

    def predict(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=float)
        x = np.asarray(self.x_thresholds)
        y = np.asarray(self.y_thresholds)
        if self.method == "isotonic":  # a former step-function file, applied as fitted
            return np.clip(np.interp(np.clip(raw, x[0], x[-1]), x, y), 0.0, 1.0)
        smooth = np.interp(raw, x, y)  # flat beyond the outer blocks
        order = 0.5 + np.arctan(raw) / np.pi  # strictly increasing, in (0, 1)
        return np.clip((1.0 - self.tie_break) * smooth + self.tie_break * order, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "method": self.method,
            "x_thresholds": list(self.x_thresholds),
            "y_thresholds": list(self.y_thresholds),
        }
        if self.method != "isotonic":
            d["tie_break"] = self.tie_break
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IsotonicCalibrator:
        method = d.get("method")
        if method == "isotonic":
            return cls(tuple(d["x_thresholds"]), tuple(d["y_thresholds"]), 0.0, "isotonic")
        if method != "centred_isotonic":
            raise ValueError(f"unknown calibration method {method!r}")
        return cls(tuple(d["x_thresholds"]), tuple(d["y_thresholds"]), float(d["tie_break"]))


@dataclass
class TrainResult:
    target: str
    feature_cols: tuple[str, ...]
    absent_reason: str | None = None
    booster: lgb.Booster | None = None  # the model that scores (the refit when there is one)
    # the early-stopped model every metric is measured on, when ``booster`` is its refit
    validated_booster: lgb.Booster | None = None
    calibrator: IsotonicCalibrator | None = None
    metrics: dict[str, float] | None = None
    baseline: dict[str, Any] | None = None  # the baseline used (feature, sign, description)
    baseline_metrics: dict[str, float] | None = None
    beats_baseline: bool | None = None
    # model minus baseline ROC AUC with a paired bootstrap interval (auc_difference)
    baseline_comparison: dict[str, Any] | None = None
    # BG/NBD reference (BTYD_TARGETS): params, metrics, comparison -- or absent_reason
    btyd: dict[str, Any] | None = None
    # the BG/NBD log-odds the trees boost from (module docstring, Offset): feature, sign,
    # missing (the value without an order), reference (its training mean); None: from zero
    offset: dict[str, Any] | None = None
    train_cutoffs: tuple[str, ...] = ()
    valid_cutoff: str | None = None
    train_window: tuple[str, str] | None = None  # first and last training cutoff
    label_overlap_days: int | None = None
    best_iteration: int | None = None
    refit: dict[str, Any] | None = None  # rows and trees of the refit on all customers
    n_rows: dict[str, int] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str | None = None
    lightgbm_version: str = lgb.__version__

    @property
    def trained(self) -> bool:
        return self.absent_reason is None and self.booster is not None

    def metadata(self) -> dict[str, Any]:
        """Everything but the booster and the calibrator, JSON-ready."""
        # Not asdict(): it would deep-copy the booster.
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        del d["booster"], d["calibrator"], d["validated_booster"]
        d["feature_cols"] = list(self.feature_cols)
        d["train_cutoffs"] = list(self.train_cutoffs)
        d["train_window"] = list(self.train_window) if self.train_window else None
        return d


# ----------------------------------------------------------------------------------------
# folds


def _customer_hash(customer_ids: pd.Series) -> np.ndarray:
    # pandas' hash uses a fixed key, so the halves are the same on every run and machine.
    return pd.util.hash_pandas_object(
        customer_ids.astype(str), index=False, categorize=False
    ).to_numpy(dtype=np.uint64)


def prepare(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """Rows with a label for ``target``, sorted by (cutoff_date, customer_id), with a
    ``fold`` column: "train", "early_stop", "calibration" or "unused" (module docstring)."""
    if target not in frame.columns:
        raise ValueError(f"label column {target!r} not in the training frame")
    df = frame.loc[frame[target].notna()].copy()
    df[CUTOFF] = pd.to_datetime(df[CUTOFF])
    bad = ~df[target].isin([0, 1])
    if bad.any():
        raise ValueError(
            f"label {target!r} must be 0/1 or NaN; found {df.loc[bad, target].unique()[:5]}"
        )
    df = df.sort_values([CUTOFF, CUSTOMER], kind="mergesort").reset_index(drop=True)
    dup = df.duplicated([CUTOFF, CUSTOMER])
    if dup.any():
        first = df.loc[dup, [CUTOFF, CUSTOMER]].iloc[0].tolist()
        raise ValueError(
            f"duplicate (cutoff_date, customer_id) rows, e.g. {first}: row order would be "
            "ambiguous and the model not reproducible"
        )
    fold = np.full(len(df), "train", dtype=object)
    if len(df):
        latest = (df[CUTOFF] == df[CUTOFF].max()).to_numpy()
        h = _customer_hash(df[CUSTOMER])
        half = (h % np.uint64(2)).astype(bool)  # early stop / calibration
        # bit 2: validation customers (bit 1 splits the calibration half for cross-fitting)
        validates = ((h >> np.uint64(2)) % np.uint64(2)).astype(bool)
        fold[latest != validates] = "unused"
        fold[latest & validates & ~half] = "early_stop"
        fold[latest & validates & half] = "calibration"
    df["fold"] = fold
    return df


def _sample_per_cutoff(df: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """Seeded sample of at most ``max_rows`` rows, each cutoff keeping its share; the
    frame must already be sorted, so the sample does not depend on input order."""
    if len(df) <= max_rows:
        return df
    rng = np.random.default_rng(seed)
    share = max_rows / len(df)
    keep = np.zeros(len(df), dtype=bool)
    codes = df[CUTOFF].to_numpy()
    for cutoff in np.unique(codes):  # a handful of cutoffs, not rows
        idx = np.flatnonzero(codes == cutoff)
        n = int(np.floor(idx.size * share))
        keep[rng.choice(idx, size=n, replace=False)] = True
    return df.loc[keep]


def _fingerprint(df: pd.DataFrame, cols: list[str]) -> str:
    hashes = pd.util.hash_pandas_object(df[cols], index=False).to_numpy()
    return hashlib.sha256(hashes.tobytes()).hexdigest()


# ----------------------------------------------------------------------------------------
# metrics


def top_decile_lift(y: np.ndarray, score: np.ndarray) -> float:
    """Positive rate in the top 10% by score over the overall positive rate.

    Tie-aware: rows tied with the 10% boundary count with the tie group's mean label for
    the slots left, so the figure does not depend on row order.
    """
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    n_top = int(np.ceil(0.1 * y.size))
    base = y.mean()
    if n_top == 0 or base == 0:
        return float("nan")
    boundary = np.sort(score)[::-1][n_top - 1]
    above = score > boundary
    tied = score == boundary
    slots = n_top - above.sum()
    positives = y[above].sum() + slots * y[tied].mean()
    return float(positives / n_top / base)


def auc_difference(
    y: np.ndarray, model_score: np.ndarray, baseline_score: np.ndarray,
    n_boot: int = 200, seed: int = 0,
) -> dict[str, Any]:
    """Model minus baseline ROC AUC on the same rows, with a paired bootstrap 95% interval
    (rows resampled together, both scores re-ranked on each resample).

    ``verdict`` is "better" when the interval lies above 0, "worse" below, else
    "indistinguishable": on a validation half of a thousand customers an AUC difference of
    0.01 is within noise, and ``beats_baseline`` (the point estimates) alone would hide it.
    """
    y = np.asarray(y, dtype=float)
    m = np.asarray(model_score, dtype=float)
    b = np.asarray(baseline_score, dtype=float)
    diff = float(roc_auc_score(y, m) - roc_auc_score(y, b))
    # A resample is a multiplicity per row; each score's ranking is sorted once and every
    # resample's AUC is a weighted count over it: O(rows) per resample, memory flat.
    m_rank, b_rank = (np.unique(v, return_inverse=True)[1] for v in (m, b))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):  # resamples, not rows
        w = np.bincount(rng.integers(0, y.size, y.size), minlength=y.size).astype(float)
        pos = w * y
        if 0 < pos.sum() < w.sum():  # a resample needs both classes
            boots.append(_weighted_auc(m_rank, pos, w - pos) - _weighted_auc(b_rank, pos, w - pos))
    lo, hi = (float(v) for v in np.quantile(boots, [0.025, 0.975]))
    verdict = "better" if lo > 0 else "worse" if hi < 0 else "indistinguishable"
    return {"auc_difference": diff, "ci_low": lo, "ci_high": hi, "n_boot": len(boots),
            "verdict": verdict}


def _weighted_auc(rank: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC with per-row positive and negative weights; ``rank`` is each row's index among
    the distinct scores, so ties count one half (the value ``roc_auc_score`` gives)."""
    p = np.bincount(rank, weights=pos)
    n = np.bincount(rank, weights=neg)
    below = np.cumsum(n) - n
    return float((p * (below + 0.5 * n)).sum() / (p.sum() * n.sum()))


def describe_comparison(c: dict[str, Any] | None) -> str:
    """'+0.062 [+0.041, +0.083], better' -- for logs and metadata."""
    if not c:
        return ""
    return (f"{c['auc_difference']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}], "
            f"{c['verdict']}")


def _binary_metrics(y: np.ndarray, rank_score: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    return {
        "roc_auc": float(roc_auc_score(y, rank_score)),
        "pr_auc": float(average_precision_score(y, rank_score)),
        "brier": float(np.mean((prob - y) ** 2)),
        "top_decile_lift": top_decile_lift(y, rank_score),
        "n_pos": int(y.sum()),
        "n_neg": int(y.size - y.sum()),
    }


def _crossfit_isotonic(score: np.ndarray, y: np.ndarray, part: np.ndarray) -> np.ndarray:
    """Out-of-fold isotonic probabilities: each part calibrated by a fit on the other."""
    out = np.empty(y.size)
    for p in (False, True):
        fit_on = part != p
        out[~fit_on] = IsotonicCalibrator.fit(score[fit_on], y[fit_on]).predict(score[~fit_on])
    return out


def _baseline_score(df: pd.DataFrame, b: Baseline) -> np.ndarray:
    s = b.sign * df[b.feature].to_numpy(dtype=float, na_value=np.nan)
    finite = s[np.isfinite(s)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
    fill = lo - 1.0 if b.missing == "lowest" else hi + 1.0
    return np.where(np.isfinite(s), s, fill)


# ----------------------------------------------------------------------------------------
# training


def _matrix(df: pd.DataFrame, feature_cols: tuple[str, ...]) -> np.ndarray:
    missing = [c for c in feature_cols if c not in df.columns]
    if missing:
        raise ValueError(f"feature columns missing from the frame: {missing}")
    return df[list(feature_cols)].to_numpy(dtype=np.float64, na_value=np.nan)


def _iso(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).date().isoformat()


def train_target(
    frame: pd.DataFrame,
    target: str,
    feature_cols: list[str] | tuple[str, ...],
    config: TrainConfig | None = None,
) -> TrainResult:
    """Train, early-stop, calibrate and evaluate one target (policies: module docstring).

    Returns a result with ``absent_reason`` set (and no booster) when the data are too thin.
    """
    config = config or TrainConfig()
    feature_cols = tuple(feature_cols)
    params = config.lgb_params()
    result = TrainResult(target=target, feature_cols=feature_cols, params=params)

    df = prepare(frame, target)
    _matrix(df.head(0), feature_cols)  # fail early on missing feature columns
    if df.empty:
        result.absent_reason = f"no rows with a {target} label"
        return result
    result.data_fingerprint = _fingerprint(df, [CUTOFF, CUSTOMER, *feature_cols, target])

    train = _sample_per_cutoff(df.loc[df["fold"] == "train"], config.max_train_rows, config.seed)
    valid = _sample_per_cutoff(
        df.loc[df["fold"].isin(["early_stop", "calibration"])], config.max_valid_rows,
        config.seed + 1,
    )
    es = valid.loc[valid["fold"] == "early_stop"]
    cal = valid.loc[valid["fold"] == "calibration"]
    result.n_rows = {"train": len(train), "early_stop": len(es), "calibration": len(cal)}
    result.valid_cutoff = _iso(df[CUTOFF].max())
    cutoffs = sorted(train[CUTOFF].unique())
    result.train_cutoffs = tuple(_iso(c) for c in cutoffs)
    if cutoffs:
        result.train_window = (_iso(cutoffs[0]), _iso(cutoffs[-1]))
        horizon = LABEL_HORIZON_DAYS.get(target)
        if horizon is not None:
            gap = (pd.Timestamp(df[CUTOFF].max()) - pd.Timestamp(cutoffs[-1])).days
            result.label_overlap_days = max(0, horizon - gap)

    if not cutoffs:
        result.absent_reason = (
            f"only one labelled cutoff ({result.valid_cutoff}): no earlier cutoff to train on"
        )
        return result
    y_train = train[target].to_numpy(dtype=float)
    n_pos, n_neg = int(y_train.sum()), int(y_train.size - y_train.sum())
    if n_pos < config.min_positives or n_neg < config.min_negatives:
        result.absent_reason = (
            f"too few training examples: {n_pos} positives and {n_neg} negatives; needs at "
            f"least {config.min_positives} and {config.min_negatives}"
        )
        return result
    for name, part in (("early-stopping", es), ("calibration", cal)):
        y = part[target].to_numpy(dtype=float)
        p, n = int(y.sum()), int(y.size - y.sum())
        if p < config.min_valid_class or n < config.min_valid_class:
            result.absent_reason = (
                f"too few validation examples in the {name} half at {result.valid_cutoff}: "
                f"{p} positives and {n} negatives; needs at least {config.min_valid_class} "
                "of each"
            )
            return result

    col = offset_feature(target) if config.offset else None
    if col is not None and col in feature_cols:
        none = train[col].isna().to_numpy()
        rate = float(y_train[none].mean()) if none.any() else float(y_train.mean())
        spec = {"feature": col, "sign": BTYD_TARGETS[target][1],
                "missing": float(_logit(np.array([rate]))[0])}
        spec["reference"] = float(offset_values(spec, train).mean())
        result.offset = spec
    dtrain = lgb.Dataset(
        _matrix(train, feature_cols), label=y_train, feature_name=list(feature_cols),
        params={"max_bin": config.lgbm.max_bin, "verbosity": -1},
        init_score=offset_values(result.offset, train),
    )
    des = lgb.Dataset(
        _matrix(es, feature_cols), label=es[target].to_numpy(dtype=float), reference=dtrain,
        init_score=offset_values(result.offset, es),
    )
    booster = lgb.train(
        dict(params),
        dtrain,
        num_boost_round=config.lgbm.n_estimators,
        valid_sets=[des],
        valid_names=["early_stop"],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
    best = booster.best_iteration or booster.current_iteration()
    # Rebuild from the text form cut at the best iteration: the booster in memory is then
    # exactly what model.txt holds, so a saved-and-loaded model scores bit-identically.
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    result.booster = booster
    result.best_iteration = int(best)

    y_cal = cal[target].to_numpy(dtype=float)
    raw_cal = (booster.predict(_matrix(cal, feature_cols), raw_score=True)
               + offset_values(result.offset, cal))
    result.calibrator = IsotonicCalibrator.fit(raw_cal, y_cal)
    quarter = ((_customer_hash(cal[CUSTOMER]) >> np.uint64(1)) % np.uint64(2)).astype(bool)
    metrics = _binary_metrics(y_cal, raw_cal, _crossfit_isotonic(raw_cal, y_cal, quarter))
    metrics["brier_uncalibrated"] = float(np.mean((_sigmoid(raw_cal) - y_cal) ** 2))
    result.metrics = metrics

    b = config.baselines.get(target)
    if b is None:
        result.baseline = {"absent_reason": f"no baseline defined for {target}"}
    elif b.feature not in cal.columns:
        result.baseline = {"absent_reason": f"baseline feature {b.feature} not in the frame"}
    else:
        result.baseline = asdict(b)
        bs = _baseline_score(cal, b)
        result.baseline_metrics = _binary_metrics(
            y_cal, bs, _crossfit_isotonic(bs, y_cal, quarter)
        )
        result.beats_baseline = bool(metrics["roc_auc"] > result.baseline_metrics["roc_auc"])
        result.baseline_comparison = auc_difference(y_cal, raw_cal, bs, seed=config.seed)
    if target in BTYD_TARGETS:
        result.btyd = _btyd_reference(train, cal, target, raw_cal, quarter, config.seed)
    if config.refit_all:
        _refit(result, df, target, config)
    return result


def _refit(result: TrainResult, df: pd.DataFrame, target: str, config: TrainConfig) -> None:
    """Refit on every customer's labelled rows (every fold; module docstring, Refit)."""
    everyone = _sample_per_cutoff(df, config.max_train_rows, config.seed + 2)
    n_trees = max(1, round(result.best_iteration * config.refit_tree_scale))
    data = lgb.Dataset(
        _matrix(everyone, result.feature_cols), label=everyone[target].to_numpy(dtype=float),
        feature_name=list(result.feature_cols),
        params={"max_bin": config.lgbm.max_bin, "verbosity": -1},
        init_score=offset_values(result.offset, everyone),
    )
    refit = lgb.train(dict(result.params), data, num_boost_round=n_trees)
    result.validated_booster = result.booster
    result.booster = lgb.Booster(model_str=refit.model_to_string())
    result.refit = {"n_rows": len(everyone), "trees": n_trees,
                    "cutoffs": len(everyone[CUTOFF].unique())}


def _btyd_reference(train: pd.DataFrame, cal: pd.DataFrame, target: str, raw_cal: np.ndarray,
                    quarter: np.ndarray, seed: int) -> dict[str, Any]:
    horizon, sign = BTYD_TARGETS[target]
    missing = [c for c in bgnbd.FEATURES if c not in train.columns]
    if missing:
        return {"absent_reason": f"features {missing} not in the frame"}
    latest = train.loc[train[CUTOFF] == train[CUTOFF].max()]
    try:  # customers without an order (NaN) are outside BG/NBD; fit leaves them out
        params = bgnbd.fit(*bgnbd.from_features(latest))
    except ValueError as e:
        return {"absent_reason": str(e)}
    p = bgnbd.p_purchase(params, *bgnbd.from_features(cal), horizon)
    score = np.where(np.isnan(p), -1.0, p) if sign > 0 else np.where(np.isnan(p), 2.0, 1 - p)
    y = cal[target].to_numpy(dtype=float)
    return {
        "model": "BG/NBD", "horizon_days": horizon, "fit_cutoff": _iso(latest[CUTOFF].max()),
        "params": asdict(params),
        "metrics": _binary_metrics(y, score, _crossfit_isotonic(score, y, quarter)),
        "comparison": auc_difference(y, raw_cal, score, seed=seed),
    }


def fit_soft_target(
    train: pd.DataFrame, target_col: str, feature_cols: list[str] | tuple[str, ...],
    config: TrainConfig | None = None, n_trees: int = 300,
) -> lgb.Booster:
    """LightGBM fitted to a probability in [0, 1] (cross-entropy objective), not a 0/1 label.

    For evaluation only: fitted to a generator's planted probability it is the *feature
    ceiling*, what the features can carry of the truth with no label noise to learn through
    (scripts/model_ceiling.py, tests/test_pipeline_models.py)."""
    config = config or TrainConfig()
    params = {**config.lgb_params(), "objective": "cross_entropy", "metric": "cross_entropy"}
    data = lgb.Dataset(
        _matrix(train, tuple(feature_cols)), label=train[target_col].to_numpy(dtype=float),
        params={"max_bin": config.lgbm.max_bin, "verbosity": -1},
    )
    return lgb.train(params, data, num_boost_round=n_trees)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# ----------------------------------------------------------------------------------------
# scoring and explanation


def _require_trained(result: TrainResult) -> lgb.Booster:
    if not result.trained:
        raise ValueError(f"{result.target} has no model: {result.absent_reason}")
    return result.booster


def score(result: TrainResult, features_frame: pd.DataFrame,
          validated: bool = False) -> pd.DataFrame:
    """customer_id, calibrated ``score`` in [0, 1] and ``raw_score`` (log-odds), input order.

    ``validated``: by the early-stopped model the metrics are measured on, not its refit on
    all customers (which has trained on the validation customers): for measuring on them."""
    booster = _require_trained(result)
    if validated and result.validated_booster is not None:
        booster = result.validated_booster
    raw = (booster.predict(_matrix(features_frame, result.feature_cols), raw_score=True)
           + offset_values(result.offset, features_frame))
    return pd.DataFrame(
        {
            CUSTOMER: features_frame[CUSTOMER].to_numpy(),
            "score": result.calibrator.predict(raw),
            "raw_score": raw,
        }
    )


def contributions(
    result: TrainResult, features_frame: pd.DataFrame, num_threads: int = 1
) -> pd.DataFrame:
    """Per-customer SHAP contributions in log-odds (LightGBM ``pred_contrib``): one column
    per feature plus ``bias``; each row sums to the raw score. With an offset, its value
    less its training mean counts to the BG/NBD feature it comes from, the mean to bias."""
    c = _contrib(result, features_frame, num_threads)
    return pd.DataFrame(c, columns=[*result.feature_cols, "bias"], index=features_frame.index)


def _contrib(result: TrainResult, features_frame: pd.DataFrame, num_threads: int) -> np.ndarray:
    booster = _require_trained(result)
    c = booster.predict(
        _matrix(features_frame, result.feature_cols), pred_contrib=True, num_threads=num_threads
    )
    if result.offset:
        j = result.feature_cols.index(result.offset["feature"])
        ref = result.offset["reference"]
        c[:, j] += offset_values(result.offset, features_frame) - ref
        c[:, -1] += ref
    return c


def explain_mask(score_values: np.ndarray, max_rows: int | None) -> np.ndarray:
    """Which rows get drivers: all when there are at most ``max_rows`` (None = no limit);
    above it, the ``max_rows`` highest scores (ties to the earlier row, so with rows sorted by
    customer_id the choice is deterministic). Per-customer TreeSHAP costs O(trees x leaves x
    depth^2) per row, about 1-2 ms per customer and target here: this is what bounds its cost
    as the customer base grows, and the customers left out are the ones the segment rules,
    which act on the high end of each score, do not pick."""
    n = len(score_values)
    if max_rows is None or n <= max_rows:
        return np.ones(n, dtype=bool)
    order = np.argsort(-np.asarray(score_values, dtype=float), kind="stable")
    mask = np.zeros(n, dtype=bool)
    mask[order[:max_rows]] = True
    return mask


def top_drivers(
    result: TrainResult, features_frame: pd.DataFrame, k: int = 3, num_threads: int = 1
) -> pd.DataFrame:
    """The k features with the largest |contribution| per customer, signed, with phrases.

    Ties in |contribution| go to the earlier feature in the feature list. A feature with a
    contribution of exactly zero is not a driver: its name and text are None. ``num_threads``
    only parallelises prediction over rows; the values do not depend on it.
    """
    names = np.asarray(result.feature_cols, dtype=object)
    contrib = _contrib(result, features_frame, num_threads)[:, :-1]  # drop the bias column
    k = min(k, names.size)
    order = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(contrib, order, axis=1)
    phrase_up = np.array([driver_phrase(f, 1.0) for f in names], dtype=object)
    phrase_down = np.array([driver_phrase(f, -1.0) for f in names], dtype=object)
    out = {CUSTOMER: features_frame[CUSTOMER].to_numpy()}
    for j in range(k):
        idx, c = order[:, j], top[:, j]
        is_driver = c != 0
        out[f"driver_{j + 1}"] = np.where(is_driver, names[idx], None)
        out[f"driver_{j + 1}_contribution"] = c
        out[f"driver_{j + 1}_text"] = np.where(
            is_driver, np.where(c >= 0, phrase_up[idx], phrase_down[idx]), None
        )
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------------------
# artifacts


def save_model(result: TrainResult, directory: str | Path) -> Path:
    """Write model.txt (LightGBM text), calibration.json and metadata.json to ``directory``.

    An absent result writes only metadata.json, so the reason is versioned too.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if result.trained:
        (directory / MODEL_FILE).write_text(result.booster.model_to_string(), encoding="utf-8")
        if result.validated_booster is not None:
            (directory / VALIDATED_MODEL_FILE).write_text(
                result.validated_booster.model_to_string(), encoding="utf-8")
        (directory / CALIBRATION_FILE).write_text(
            json.dumps(result.calibrator.to_dict(), indent=2), encoding="utf-8"
        )
    (directory / METADATA_FILE).write_text(
        json.dumps(result.metadata(), indent=2, sort_keys=True), encoding="utf-8"
    )
    return directory


def load_model(directory: str | Path) -> TrainResult:
    """Read a saved model back as a TrainResult that ``score`` and ``top_drivers`` accept."""
    directory = Path(directory)
    meta = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
    meta["feature_cols"] = tuple(meta["feature_cols"])
    meta["train_cutoffs"] = tuple(meta["train_cutoffs"])
    if meta.get("train_window"):
        meta["train_window"] = tuple(meta["train_window"])
    result = TrainResult(**meta)
    if meta.get("absent_reason") is None:
        result.booster = lgb.Booster(
            model_str=(directory / MODEL_FILE).read_text(encoding="utf-8")
        )
        if (directory / VALIDATED_MODEL_FILE).exists():
            result.validated_booster = lgb.Booster(
                model_str=(directory / VALIDATED_MODEL_FILE).read_text(encoding="utf-8"))
        result.calibrator = IsotonicCalibrator.from_dict(
            json.loads((directory / CALIBRATION_FILE).read_text(encoding="utf-8"))
        )
    return result
