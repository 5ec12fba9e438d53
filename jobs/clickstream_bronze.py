"""Raw clickstream (Kafka envelopes) -> bronze Parquet for one event date, gated by Great Expectations.

Parses each record against the explicit event schema, quarantines bad records with a reason,
collapses Kafka re-reads, dedupes re-delivered events, drops events without consent, minimises
the IP, validates the day with GX and publishes it atomically (jobs/clickstream/). Exit 3: the
gate rejected the day and nothing was published.

    spark-submit jobs/clickstream_bronze.py --date 2026-11-20 [--end-date 2026-11-22] [--lake-root URI] [--refresh full]
"""

from __future__ import annotations

import sys

from jobs.clickstream import bronze
from jobs.common import settings
from jobs.common.runner import Job, each_day


def main(argv: list[str] | None = None) -> int:
    job = Job(bronze.JOB, __doc__)
    job.argument("--topic", default=settings.pipeline().clickstream.topic,
                 help="raw topic directory to read (default: %(default)s)")
    job.argument("--refresh", choices=["incremental", "full"], default="incremental",
                 help="incremental (default) skips a day whose published partition has the same raw inputs and "
                      "code; full rebuilds it")
    return job.main(argv, each_day(lambda ctx, day: bronze.summary(bronze.run(
        ctx.spark, ctx.lake, day, ctx.args.topic, ctx.args.refresh == "full", ctx.run_id))))


if __name__ == "__main__":
    sys.exit(main())
