"""Raw clickstream (Kafka envelopes) -> bronze Parquet for one event date, gated by Great Expectations.

Parses each record against the explicit event schema, quarantines bad records with a reason,
collapses Kafka re-reads, dedupes re-delivered events, drops events without consent, minimises
the IP, validates the day with GX and publishes it atomically (jobs/clickstream/). Exit 3: the
gate rejected the day and nothing was published.

`--revisit-late` (the nightly DAG sets it) first rebuilds the `late_days` before `--date` whose raw
inputs changed since they were published: events that reached Kafka after their day's run land in
their day, counted once. Unchanged days are skipped cheaply (input fingerprint).

    spark-submit jobs/clickstream_bronze.py --date 2026-11-20 [--end-date 2026-11-22] [--lake-root URI] [--refresh full]
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from jobs.clickstream import bronze
from jobs.common import config, settings
from jobs.common.runner import Context, Job, Outcome


def days(ctx: Context) -> Iterator[Outcome]:
    config.ip_hash_key()  # a missing or placeholder secret fails here, before Spark starts
    late_days = settings.pipeline().clickstream.late_days
    revisit = bronze.lateness_window(ctx.days[0], late_days) if ctx.args.revisit_late else []
    for day in [*revisit, *ctx.days]:  # a revisited day is incremental: rebuilt only if its inputs changed
        manifest = bronze.run(ctx.spark, ctx.lake, day, ctx.args.topic,
                              ctx.args.refresh == "full" and day not in revisit, ctx.run_id, optional=day in revisit)
        if manifest:
            yield bronze.summary(manifest)


def main(argv: list[str] | None = None) -> int:
    job = Job(bronze.JOB, __doc__)
    job.argument("--topic", default=settings.pipeline().clickstream.topic,
                 help="raw topic directory to read (default: %(default)s)")
    job.argument("--refresh", choices=["incremental", "full"], default="incremental",
                 help="incremental (default) skips a day whose published partition has the same raw inputs and "
                      "code; full rebuilds it")
    job.argument("--revisit-late", action="store_true",
                 help="first rebuild the days of the lateness window before --date whose raw inputs changed")
    return job.main(argv, days)


if __name__ == "__main__":
    sys.exit(main())
