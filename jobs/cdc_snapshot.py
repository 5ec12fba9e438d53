"""Full snapshot of OLTP tables (PostgreSQL over JDBC, or a CSV/JSON dump) for onboarding into CDC.

JDBC: the WAL position is read first (the watermark), then the table in parallel range reads on
its primary key. Dump: a CSV or JSON-lines export with the source position it was taken at.
Either way the rows land in `bronze/cdc_snapshots/<table>/snapshot_id=...` and the next
`cdc_merge` starts the table from them (jobs/cdc/snapshot.py).

    spark-submit --jars /usr/share/java/postgresql.jar jobs/cdc_snapshot.py --tables users,subscriptions
    spark-submit jobs/cdc_snapshot.py --tables users --dump file:///exports/users.csv --watermark-lsn 24023128
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from jobs.cdc import settings, snapshot
from jobs.common import config
from jobs.common.runner import Context, Job, Outcome


def snapshots(ctx: Context) -> Iterator[Outcome]:
    args, database = ctx.args, config.oltp_database()
    cdc = settings.load()
    tables = [cdc.table(name.strip()) for name in args.tables.split(",") if name.strip()]
    if not args.dump:
        if not (args.jdbc_url or database.jdbc_url):
            raise ValueError("no source: give --jdbc-url (or $PIPELINE_OLTP_JDBC_URL; in Airflow the "
                             "oltp_postgres connection) or --dump")
        jdbc = snapshot.Jdbc(args.jdbc_url or database.jdbc_url, database.user, database.password,
                             args.partitions, args.fetch_size)
        for table in tables:
            yield Outcome(snapshot.snapshot_jdbc(ctx.spark, ctx.lake, table, jdbc, ctx.run_id))
        return
    if len(tables) > 1 and "{table}" not in args.dump:
        ctx.usage_error("--dump with several tables needs {table} in the path (one export per table)")
    watermark = snapshot.parse_watermark(args.watermark_lsn, args.watermark_binlog)
    for table in tables:
        yield Outcome(snapshot.snapshot_dump(ctx.spark, ctx.lake, table, args.dump.replace("{table}", table.name),
                                             args.format, watermark, args.taken_at, ctx.run_id))


def main(argv: list[str] | None = None) -> int:
    job = Job(snapshot.JOB, __doc__, dates="none")
    job.argument("--tables", required=True, help="comma-separated table names from cdc.yaml")
    job.argument("--jdbc-url", help="jdbc:postgresql://host:5432/db (default: $PIPELINE_OLTP_JDBC_URL; user and "
                                    "password from $PIPELINE_OLTP_USER and $PIPELINE_OLTP_PASSWORD)")
    job.argument("--partitions", type=int, default=4, help="parallel JDBC reads per table")
    job.argument("--fetch-size", type=int, default=10_000, help="rows per JDBC round trip")
    job.argument("--dump", help="read this CSV/JSON export instead of JDBC; with several tables, a path with "
                                "{table} in it, e.g. file:///exports/{table}.json")
    job.argument("--format", choices=["csv", "json"], default="json", help="dump format")
    job.argument("--watermark-lsn", help="dump: PostgreSQL LSN when the export started")
    job.argument("--watermark-binlog", help="dump: MySQL binlog position when the export started")
    job.argument("--taken-at", help="dump: export time, ISO-8601 UTC (default: now)")
    return job.main(argv, snapshots)


if __name__ == "__main__":
    sys.exit(main())
