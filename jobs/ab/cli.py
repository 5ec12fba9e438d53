"""Counts file (CSV or Parquet) -> report.json (and report.html), without Spark.

For analysts with sums from any warehouse, in the format of `jobs/ab/counts.py`:

    python -m jobs.ab.cli counts.csv --date 2026-11-20 [--registry include/experiments.yaml]
        [--diagnostics diag.csv] [--experiments exp_a,exp_b] [--out report.json] [--html report.html]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from jobs.ab import analysis, outputs, registry, render
from jobs.ab.counts import read_table
from jobs.common import config, storage
from jobs.common.runner import Context, Job, Outcome


def report(ctx: Context) -> list[Outcome]:
    args = ctx.args
    reg = registry.load(args.registry)
    diagnostics = read_table(args.diagnostics) if args.diagnostics else None
    built = analysis.build_report(read_table(args.counts), reg, args.date, registry.parse_ids(args.experiments),
                                  diagnostics, code_version=config.code_version(), source=args.counts)
    files = {args.out: json.dumps(built, separators=(",", ":"), allow_nan=False)}
    if args.html:
        history = outputs.history_rows(built)
        files[args.html] = render.report_html(built, history if not history.empty else pd.DataFrame())
    for path, text in files.items():  # every file rendered first: a failure writes none of them
        storage.write_atomic(Path(path).resolve().as_uri(), text.encode())
    verdicts = tuple(f"{entry['id']}: {entry['verdict']['text']}" for entry in built["experiments"])
    return [Outcome({"report": args.out, "html": args.html}, verdicts)]


def main(argv: list[str] | None = None) -> int:
    job = Job("ab_cli", __doc__, dates="day", lake=False)
    job.argument("counts", help="counts file: .csv or .parquet (file or directory)")
    job.argument("--registry", default=str(registry.default_path()))
    job.argument("--diagnostics", help="optional diagnostics file (multi-variant users, collisions)")
    job.argument("--experiments", default="", help="comma-separated ids; default: all registered")
    job.argument("--out", default="report.json")
    job.argument("--html", help="also write the HTML report here")
    return job.main(argv, report)


if __name__ == "__main__":
    sys.exit(main())
