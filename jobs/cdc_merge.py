"""Debezium change events -> bronze change log -> silver `<table>_current` and `<table>_history` (SCD2).

For date D, parses every CDC record drained on Kafka date D (or a Kafka Connect sink export),
keeps every change in `bronze/cdc_changes/dt=D`, quarantines bad records with a reason, merges
each configured table in source order (from a pending snapshot if there is one), validates the
change log and every table with GX and publishes them together (jobs/cdc/merge.py). Exit 3: a
gate failed and nothing was published; a backfill stops there, since each date starts from the last.

    spark-submit jobs/cdc_merge.py --date 2026-11-20 [--end-date 2026-11-22 | --export DIR] [--lake-root URI]
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from jobs.cdc import merge, settings
from jobs.common.runner import Context, Job, Outcome


def merges(ctx: Context) -> Iterator[Outcome]:
    if ctx.args.export and len(ctx.days) > 1:
        ctx.usage_error("--export replays one export: give no --end-date")
    cdc = settings.load()
    for day in ctx.days:  # in order: each date's merge starts from the previous one's silver tables
        yield merge.summary(merge.run(ctx.spark, ctx.lake, day, cdc, ctx.args.export, ctx.run_id))


def main(argv: list[str] | None = None) -> int:
    job = Job(merge.JOB, __doc__, stop_on_rejection=True)
    job.argument("--export", help="replay a Kafka Connect sink export (directory or file URI) instead of raw/")
    return job.main(argv, merges)


if __name__ == "__main__":
    sys.exit(main())
