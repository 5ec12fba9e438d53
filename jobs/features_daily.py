"""Features for one day: user-day and item-day features as of the end of the day, and the churn labels whose
horizon closed that night, gated by GX and published together (jobs/features/, docs/FEATURES.md).

Exit 1 names a missing input (a bronze partition inside the window, the CDC merge of the day); exit 3:
the gate rejected the day and nothing was published. `--features a,b` recomputes only those features
and keeps the others' published values. `--revisit-late` (the nightly DAG sets it) first recomputes
the days of the clickstream lateness window whose inputs changed since they were published.

    spark-submit jobs/features_daily.py --date 2026-11-20 [--end-date 2026-11-30] [--features a,b] [--refresh full]
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from jobs.clickstream.bronze import lateness_window
from jobs.common import settings
from jobs.common.runner import Context, Job, Outcome
from jobs.features import daily


def days(ctx: Context) -> Iterator[Outcome]:
    only = daily.requested(ctx.args.features)
    late_days = settings.pipeline().clickstream.late_days
    revisit = lateness_window(ctx.days[0], late_days) if ctx.args.revisit_late else []
    for day in [*revisit, *ctx.days]:
        manifest = daily.run(ctx.spark, ctx.lake, day, ctx.run_id, only or None,
                             ctx.args.refresh == "full" and day not in revisit, optional=day in revisit)
        if manifest:
            yield daily.summary(manifest)


def main(argv: list[str] | None = None) -> int:
    job = Job(daily.JOB, __doc__)
    job.argument("--features", default="", help="comma-separated feature names to recompute; default: all")
    job.argument("--refresh", choices=["incremental", "full"], default="incremental",
                 help="incremental (default) skips a day whose inputs, code and settings did not change")
    job.argument("--revisit-late", action="store_true",
                 help="first recompute the days of the lateness window before --date whose inputs changed")
    return job.main(argv, days)


if __name__ == "__main__":
    sys.exit(main())
