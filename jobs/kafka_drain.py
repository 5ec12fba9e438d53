"""Drain a Kafka topic into the raw landing zone: a bounded, at-least-once copy (jobs/ingest/kafka.py).

Reads every partition from the committed offset to the high watermark seen at start, writes
durable raw files named by their offset range, then commits. Exit 1: the broker or the topic
is not there, or a partition stalled (nothing committed past the last durable file).

    python -m jobs.kafka_drain --bootstrap-servers localhost:9092 --topic clickstream
"""

from __future__ import annotations

import sys

from jobs.common import settings
from jobs.common.runner import Job, Outcome
from jobs.ingest import kafka


def main(argv: list[str] | None = None) -> int:
    job = Job("kafka_drain", __doc__, dates="none")
    job.argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers, host:port[,...]")
    job.argument("--topic", default=settings.pipeline().clickstream.topic)
    job.argument("--group-id", default=None, help="consumer group whose offsets are committed")
    job.argument("--connect-timeout", type=float, default=None,
                 help="seconds to wait for the broker (default: include/pipeline.yaml)")
    return job.main(argv, lambda ctx: [Outcome(kafka.drain(
        ctx.args.bootstrap_servers, ctx.args.topic, ctx.lake, ctx.args.group_id,
        timeout=ctx.args.connect_timeout).as_dict())])


if __name__ == "__main__":
    sys.exit(main())
