"""One-time migration of a lake written by the previous release (plain Parquet directories with our manifests) into
the Iceberg tables that replaced them: today the A/B tables `gold/ab/{counts,history}/dt=D` -> `lake.gold.ab_counts`,
`ab_diagnostics`, `ab_history`. Copies every published night the tables do not have yet, one commit per night and
table; rerunning it copies nothing twice. The old directories stay until you delete them (the output lists them).

    spark-submit $(python -m jobs.common.catalog) jobs/maintenance_migrate.py --lake-root file:///data/lake
"""

from __future__ import annotations

import sys

from jobs.ab import outputs as ab_outputs
from jobs.common.runner import Job, Outcome


def main(argv: list[str] | None = None) -> int:
    job = Job("maintenance_migrate", __doc__, dates="none")
    return job.main(argv, lambda ctx: [Outcome({"status": "migrated", "run_id": ctx.run_id,
                                                "tables": ab_outputs.migrate_legacy(ctx.spark, ctx.lake, ctx.run_id)})])


if __name__ == "__main__":
    sys.exit(main())
