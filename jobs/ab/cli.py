"""Counts file (CSV or Parquet) -> report.json (and report.html), without Spark.

For analysts with sums from any warehouse, in the format of `jobs/ab/counts.py`:

    python -m jobs.ab.cli counts.csv --date 2026-11-20 [--registry include/experiments.yaml]
        [--diagnostics diag.csv] [--experiments exp_a,exp_b] [--out report.json] [--html report.html]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from jobs.ab import analysis, outputs, registry, render
from jobs.ab.counts import read_table
from jobs.common import config
from jobs.common.paths import date_arg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("counts", help="counts file: .csv or .parquet (file or directory)")
    parser.add_argument("--date", required=True, type=date_arg, help="report date, YYYY-MM-DD")
    parser.add_argument("--registry", default=str(registry.default_path()))
    parser.add_argument("--diagnostics", help="optional diagnostics file (multi-variant users, collisions)")
    parser.add_argument("--experiments", default="", help="comma-separated ids; default: all registered")
    parser.add_argument("--out", default="report.json")
    parser.add_argument("--html", help="also write the HTML report here")
    args = parser.parse_args(argv)
    only = [x.strip() for x in args.experiments.split(",") if x.strip()] or None
    try:
        reg = registry.load(args.registry)
        counts = read_table(args.counts)
        diagnostics = read_table(args.diagnostics) if args.diagnostics else None
        report = analysis.build_report(counts, reg, args.date, only, diagnostics, code_version=config.code_version())
    except (registry.RegistryError, ValueError, OSError) as exc:
        print(f"ab report failed: {exc}", file=sys.stderr)
        return 1
    Path(args.out).write_text(json.dumps(report, indent=2), encoding="utf-8")
    if args.html:
        history = outputs.history_rows(report)
        Path(args.html).write_text(render.report_html(report, history if not history.empty else pd.DataFrame()),
                                   encoding="utf-8")
    for entry in report["experiments"]:
        print(f"{entry['id']}: {entry['verdict']['text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
