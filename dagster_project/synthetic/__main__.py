"""CLI: python -m dagster_project.synthetic --customers N --start YYYY-MM-DD --end YYYY-MM-DD ..."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

from .generate import Config, generate


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(prog="python -m dagster_project.synthetic", description=__doc__)
    p.add_argument("--customers", type=int, default=5000)
    p.add_argument("--start", type=date.fromisoformat, default=None, help="default: end - 729 days (two years)")
    p.add_argument("--end", type=date.fromisoformat, default=None, help="default: yesterday (UTC)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--messiness", type=float, default=0.01, help="defect rate per table per kind")
    p.add_argument("--out", type=Path, default=Path("data/raw"))
    p.add_argument("--truth", type=Path, default=Path("data/truth"))
    for flag in ("web", "ads", "returns", "support", "fx", "activation"):
        p.add_argument(f"--no-{flag}", dest=flag, action="store_false", help=f"write no {flag} tables")
    p.add_argument("--activation-holdout", type=float, default=0.10,
                   help="holdout share of each past activation wave (hash-based, per segment)")
    p.add_argument("--missing-column", default=None, metavar="TABLE:COLUMN",
                   help="drop COLUMN from TABLE's last-day file, e.g. crm__orders:gross_amount")
    p.add_argument("--late-share", type=float, default=0.03)
    p.add_argument("--truth-weeks", type=int, default=26)
    a = p.parse_args(argv)
    return Config(customers=a.customers, start=a.start, end=a.end, seed=a.seed, messiness=a.messiness,
                  out=a.out, truth=a.truth, web=a.web, ads=a.ads, returns=a.returns, support=a.support,
                  fx=a.fx, activation=a.activation, activation_holdout=a.activation_holdout,
                  missing_column=a.missing_column, late_share=a.late_share,
                  truth_weeks=a.truth_weeks)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    t0 = time.perf_counter()
    summary = generate(cfg)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    json.dump({k: summary[k] for k in ("rows", "defects", "archetypes", "seconds")}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
