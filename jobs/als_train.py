"""Train ALS user/item embeddings for one night, judge them on a time-based holdout, version them.

Interactions from the validated clickstream (or an export), a holdout of the last days, implicit
ALS (optionally a small search), metrics against popularity and the serving champion, and a
versioned model directory; the champion pointer moves only on a win (jobs/als/). Too little
data is a skip with its reason (exit 0), never a failure.

    spark-submit jobs/als_train.py --date 2026-11-20 [--params '{"rank": 64}'] [--search] [--interactions FILE]
"""

from __future__ import annotations

import json
import sys

from jobs.als import settings, train
from jobs.common.runner import Context, Job, Outcome


def training(ctx: Context) -> list[Outcome]:
    try:
        overrides = json.loads(ctx.args.params) if ctx.args.params.strip() else {}
    except json.JSONDecodeError as exc:
        raise settings.SettingsError(f"--params is not JSON: {exc}") from None
    if not isinstance(overrides, dict):
        raise settings.SettingsError(f"--params must be a JSON object, got {ctx.args.params!r}")
    als = settings.load(ctx.args.settings).with_params(overrides)
    return [train.summary(train.run(ctx.spark, ctx.lake, ctx.args.date, als, ctx.args.search,
                                    ctx.args.interactions, ctx.run_id))]


def main(argv: list[str] | None = None) -> int:
    job = Job(train.JOB, __doc__, dates="day")
    job.argument("--settings", default=None, help="ALS settings YAML (default: als.yaml)")
    job.argument("--params", default="", help='hyperparameter overrides as JSON, e.g. \'{"rank": 64}\'')
    job.argument("--search", action="store_true", help="a small hyperparameter search over the settings grid")
    job.argument("--interactions", help="train on an export (Parquet, or CSV with a header) instead of the "
                                        "clickstream: user_id, item_id, weight, event_ts")
    return job.main(argv, training)


if __name__ == "__main__":
    sys.exit(main())
