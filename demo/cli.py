"""Deterministic demo data: a clickstream with planted experiment effects, and optionally the shop database.

Users have sessions, Zipf item popularity within latent genres and per-user tastes (so ALS has
something to find), a user agent, referrer, IP and consent flag; three experiments are planted
(`demo_generator.yaml`): a real purchase lift, an A/A test and a sample-ratio mismatch; ~1% of
events are bad the way real feeds are. `--oltp-from D` adds the shop's users, subscriptions and
items: a dump as of D 00:00 and Debezium change events from D to the last day.

Output goes straight into the raw landing zone, in exactly the layout the Kafka drain writes, or
to a Kafka broker with `--bootstrap-servers`. Same seed, same bytes.

    python -m demo --start-date 2026-11-01 --days 7 --events-per-day 100000 [--oltp-from 2026-11-06]
"""

from __future__ import annotations

import datetime as dt
import logging

from demo import clickstream, kafka, shop
from demo import settings as demo_settings
from jobs.common import settings
from jobs.common.paths import date_arg
from jobs.common.runner import Context, Job, Outcome
from jobs.ingest import raw_zone

log = logging.getLogger("demo")


def generate(ctx: Context) -> list[Outcome]:
    args, lake = ctx.args, ctx.lake
    population = clickstream.Population(clickstream.Scale(args.events_per_day, args.users, args.items, args.days),
                                        args.seed, demo_settings.load())
    written = {}
    for n in range(args.days):
        day = args.start_date + dt.timedelta(days=n)
        written[day.isoformat()] = 0
        for records in clickstream.day_in_parts(population, day, args.events_per_day, args.seed, args.topic):
            if args.bootstrap_servers:
                kafka.produce(records, args.bootstrap_servers)
                log.info("%s: produced %d records to %s", day, len(records), args.topic)
            else:
                files = raw_zone.write_grouped(lake, records)
                log.info("%s: wrote %d records in %d raw files under %s", day, len(records), len(files),
                         lake.raw_topic(args.topic))
            written[day.isoformat()] += len(records)
    record = {"clickstream_records": written}
    if args.oltp_from:
        oltp = shop.generate(lake, list(population.user_ids), population.item_price, clickstream.genres(population),
                             population.settings.shop, args.seed, args.oltp_from,
                             (args.start_date - args.oltp_from).days + args.days)
        log.info("OLTP: initial dump in %s at LSN %d; Debezium records per day %s", oltp["export"],
                 oltp["watermark"]["lsn"], oltp["records"])
        record["shop"] = oltp
    return [Outcome(record)]


def main(argv: list[str] | None = None) -> int:
    job = Job("demo", __doc__, dates="none")
    job.argument("--start-date", required=True, type=date_arg, help="first event date, YYYY-MM-DD")
    job.argument("--days", type=int, default=clickstream.Scale.days)
    job.argument("--events-per-day", type=int, default=clickstream.Scale.events_per_day)
    job.argument("--users", type=int, default=clickstream.Scale.users)
    job.argument("--items", type=int, default=clickstream.Scale.items)
    job.argument("--seed", type=int, default=42)
    job.argument("--topic", default=settings.pipeline().clickstream.topic)
    job.argument("--bootstrap-servers", default=None, help="produce to Kafka instead of the raw zone")
    job.argument("--oltp-from", type=date_arg, default=None,
                 help="also the shop database (demo/shop.py): its dump as of this date, 00:00 UTC, under "
                      "raw/_exports/, and Debezium events on cdc.public.* from then to the last day")
    return job.main(argv, generate)
