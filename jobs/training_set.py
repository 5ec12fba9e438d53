"""Training set: an entity file of (user_id and/or item_id, event_timestamp[, label, ...]) rows joined with the
requested features as they were known at each row's timestamp (docs/FEATURES.md, "Training sets").

The output has one row per entity row (duplicates kept; Parquet has no row order), its columns, one column per
feature and `<entity>_feature_ts` (the end of the feature day served; null when none is within
--max-age-days). It is written beside --out first and moved into place, so --out is never half written.

    spark-submit jobs/training_set.py --entities entities.parquet --features search_count_7d,plan --out train.parquet
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from jobs.common.runner import Context, Job, Outcome
from jobs.features.serving import requested, write_training_set


def build(ctx: Context) -> Iterator[Outcome]:
    features = requested(ctx.args.features)
    if not features:
        ctx.usage_error("--features needs at least one feature name (docs/FEATURES.md lists them)")
    yield Outcome(write_training_set(ctx.spark, ctx.lake, ctx.args.entities, features, ctx.args.out,
                                     ctx.args.max_age_days, ctx.args.overwrite, ctx.run_id))


def main(argv: list[str] | None = None) -> int:
    job = Job("training_set", __doc__, dates="none")
    job.argument("--entities", required=True, help="Parquet file or directory of entity rows")
    job.argument("--features", required=True, help="comma-separated feature names")
    job.argument("--out", required=True, help="where to write the training set (Parquet directory)")
    job.argument("--max-age-days", type=int, help="oldest feature day to serve (default: features.yaml)")
    job.argument("--overwrite", action="store_true", help="replace --out if it exists")
    return job.main(argv, build)


if __name__ == "__main__":
    sys.exit(main())
