"""Erase people from the lake: every row about them in every table `privacy.yaml` lists, and for good.

The ids come from `--users` (an erasure request), `--users-file` (one id per line), or `--deleted`: the
users the OLTP database deleted on `--date` (the CDC DAG runs this after its merge). Their tokens join
the suppression list, so no rebuild or late event brings them back (jobs/privacy/erasure.py).

    spark-submit jobs/privacy_erasure.py --date 2026-11-20 --users u0000042,u0000043
    spark-submit jobs/privacy_erasure.py --date 2026-11-20 --deleted
"""

from __future__ import annotations

import sys
from pathlib import Path

from jobs.common import config
from jobs.common.runner import Context, Job, Outcome
from jobs.privacy import erasure, settings


def erase(ctx: Context) -> list[Outcome]:
    args, privacy = ctx.args, settings.load()
    config.ip_hash_key()  # the suppression list is keyed: a missing secret fails before Spark starts
    ids = [i.strip() for i in (args.users or "").split(",") if i.strip()]
    if args.users_file:
        ids += [line.strip() for line in Path(args.users_file).read_text().splitlines() if line.strip()]
    if args.deleted:
        ids += erasure.deleted_users(ctx.spark, ctx.lake, args.date, privacy.subject_field)
    if not (args.users or args.users_file or args.deleted):
        ctx.usage_error("say whom to erase: --users, --users-file or --deleted")
    return [Outcome(erasure.run(ctx.spark, ctx.lake, args.date, ids, privacy, ctx.run_id))]


def main(argv: list[str] | None = None) -> int:
    job = Job(erasure.JOB, __doc__, dates="day")
    job.argument("--users", help="comma-separated ids to erase")
    job.argument("--users-file", help="a file with one id per line")
    job.argument("--deleted", action="store_true", help="the users the OLTP database deleted on --date")
    return job.main(argv, erase)


if __name__ == "__main__":
    sys.exit(main())
