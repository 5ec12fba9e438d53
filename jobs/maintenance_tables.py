"""Iceberg table maintenance for every table of the lake's catalog: compaction of small data and delete files,
snapshot expiry, removal of orphan files (settings: `maintenance` in include/pipeline.yaml; jobs/maintenance/).

    spark-submit $(python -m jobs.common.catalog) jobs/maintenance_tables.py --date 2026-11-20 \
        [--tables gold.ab_history]
"""

from __future__ import annotations

import sys

from jobs.common import settings
from jobs.common.runner import Job, Outcome
from jobs.maintenance import JOB, tables


def main(argv: list[str] | None = None) -> int:
    job = Job(JOB, __doc__, dates="day")
    job.argument("--tables", type=lambda v: [t for t in v.split(",") if t], help="zone.table,... (default: all)")
    return job.main(argv, lambda ctx: [Outcome(tables.run(ctx.spark, ctx.lake, ctx.args.date,
                                                          settings.pipeline().maintenance, only=ctx.args.tables))])


if __name__ == "__main__":
    sys.exit(main())
