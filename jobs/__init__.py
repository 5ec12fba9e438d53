"""The pipeline's jobs: one package per stage, a thin entry point per job, `common/` for what they share.

    ingest/       Kafka -> raw/                    (kafka_drain.py)
    clickstream/  raw/ -> bronze/clickstream       (clickstream_bronze.py)
    cdc/          OLTP -> bronze/cdc_* -> silver/  (cdc_snapshot.py, cdc_merge.py)
    als/          bronze -> gold/als, models/als   (als_train.py)
    ab/           bronze -> gold/ab, reports/ab    (ab_report.py; ab/cli.py, ab/s3_publish.py)

The rules of which package may import which: docs/ARCHITECTURE.md.
"""
