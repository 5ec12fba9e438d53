"""Counts file (CSV or Parquet) -> report.json (and report.html), without Spark.

For analysts with sums from any warehouse, in the format of `jobs/ab/counts.py`:

    python -m jobs.ab.cli counts.csv --date 2026-11-20 [--registry include/experiments.yaml]
        [--diagnostics diag.csv] [--experiments exp_a,exp_b] [--out report.json] [--html report.html]
"""

from __future__ import annotations

import fcntl
import json
import os
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
    files = {}
    if args.html:
        history = outputs.history_rows(built)
        files[args.html] = render.report_html(built, history if not history.empty else pd.DataFrame())
    files[args.out] = json.dumps(built, separators=(",", ":"), allow_nan=False)
    publish(files, lock=Path(args.out).resolve().parent)
    verdicts = tuple(f"{entry['id']}: {entry['verdict']['text']}" for entry in built["experiments"])
    return [Outcome({"report": args.out, "html": args.html}, verdicts)]


def publish(files: dict[str, str], lock: Path) -> None:
    """Write files rendered in full beforehand (a failure while rendering writes none), each atomically, the JSON
    last, while holding an exclusive lock on `lock` (the JSON's directory): two runs on the same paths publish one
    after the other, so report.json and report.html always come from the same run. A kill between the two
    renames leaves the new HTML beside the previous JSON until the rerun, which rewrites both."""
    lock.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for path, text in files.items():
            storage.write_atomic(Path(path).resolve().as_uri(), text.encode())
    finally:
        os.close(fd)  # releases the lock


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
