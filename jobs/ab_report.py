"""Nightly A/B report for one date: Spark aggregates exposures and outcomes, scipy tests them.

Reads the validated clickstream once, sums per experiment x variant x metric in Spark, builds
the report (frequentist, sequential, CUPED, Bayesian; SRM first) and publishes
`gold/ab/counts`, `gold/ab/history` and `reports/ab/dt=D/report.{json,html}` (jobs/ab/).
`--experiments a,b` recomputes those experiments and keeps the others of that date.

    spark-submit jobs/ab_report.py --date 2026-11-20 [--end-date D2] [--experiments exp_a,exp_b] [--registry FILE]
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from jobs.ab import registry, report
from jobs.common.runner import Context, Job, Outcome


def reports(ctx: Context) -> Iterator[Outcome]:
    reg = registry.load(ctx.args.registry)
    only = registry.parse_ids(ctx.args.experiments)
    reg.select(only)  # unknown ids fail before Spark starts
    for day in ctx.days:
        yield Outcome(report.run(ctx.spark, ctx.lake, day, reg, only, ctx.run_id))


def main(argv: list[str] | None = None) -> int:
    job = Job(report.JOB, __doc__)
    job.argument("--registry", default=str(registry.default_path()), help="experiment registry YAML")
    job.argument("--experiments", default="", help="comma-separated ids to (re)compute; default: all")
    return job.main(argv, reports)


if __name__ == "__main__":
    sys.exit(main())
