"""Delete what is past its retention: raw/ directories older than `raw_days`, quarantine partitions and
rejected batches older than `quarantine_days` (`privacy.yaml`; jobs/privacy/retention.py). No Spark.

    python -m jobs.privacy_retention --date 2026-11-20
"""

from __future__ import annotations

import sys

from jobs.common.runner import Job, Outcome
from jobs.privacy import retention, settings


def main(argv: list[str] | None = None) -> int:
    job = Job(retention.JOB, __doc__, dates="day")
    return job.main(argv, lambda ctx: [Outcome(retention.run(ctx.lake, ctx.args.date, settings.load(),
                                                             ctx.run_id))])


if __name__ == "__main__":
    sys.exit(main())
