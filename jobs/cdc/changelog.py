"""Raw Debezium records (drained Kafka records, or a Kafka Connect sink export) -> the parsed change log.

Every record becomes one row: a change (bronze), a tombstone (checked against the deletes in the
merge), a recognised non-row record (transaction metadata, schema change, logical message:
counted), or a quarantined record with its reason and raw text.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
)

from jobs.cdc import envelope
from jobs.cdc.settings import Settings
from jobs.common.keyed_hash import hmac_sha256

PARSED_SCHEMA = StructType([
    StructField("kind", StringType()),
    StructField("reason", StringType()),
    StructField("table", StringType()),
    StructField("source", StringType()),
    StructField("op", StringType()),
    StructField("key", StringType()),
    StructField("pos", ArrayType(LongType())),
    StructField("source_ts_us", LongType()),
    StructField("tx_id", StringType()),
    StructField("tx_order", LongType()),
    StructField("snapshot", StringType()),
    StructField("connector", StringType()),
    StructField("before", StringType()),
    StructField("after", StringType()),
    StructField("column_types", StringType()),
    StructField("kafka_topic", StringType()),
    StructField("kafka_partition", IntegerType()),
    StructField("kafka_offset", LongType()),
    StructField("source_file", StringType()),
    StructField("raw_value", StringType()),
])
#: The bronze change log: every change kept, in source order by (`pos`), one row per event.
BRONZE_COLUMNS = ["table", "op", "key", "pos", "source_ts", "tx_id", "tx_order", "snapshot", "connector", "before",
                  "after", "column_types", "kafka_topic", "kafka_partition", "kafka_offset", "source_file"]
QUARANTINE_COLUMNS = ["reason", "kind", "table", "source", "op", "key", "kafka_topic", "kafka_partition",
                      "kafka_offset", "source_file", "raw_value"]


def _value(row: Any) -> str | bytes | None:
    if row["_corrupt_envelope"] is not None:
        return None
    if row["value_b64"] is not None:
        return base64.b64decode(row["value_b64"])
    return row["value"]


def _parse_rows(rows: Iterator[Any], settings: Settings) -> Iterator[tuple]:
    for row in rows:
        coords = (row["topic"], row["partition"], row["offset"], row["source_file"])
        if row["_corrupt_envelope"] is not None:
            change = envelope.Change("invalid", "corrupt_raw_envelope")
            raw = row["_corrupt_envelope"]
        else:
            change = envelope.parse(_value(row), settings, key=row["key"], topic=row["topic"])
            raw = row["value"] if row["value"] is not None else row["value_b64"]
        yield (*change.as_dict().values(), *coords, raw if change.reason else None)


def _split_export(text: str) -> list[str]:
    """An exported file: one (possibly pretty-printed) event, or JSON lines."""
    try:
        json.loads(text)
        return [text]
    except ValueError:
        return [line for line in text.splitlines() if line.strip()]


def _parse_export(rows: Iterator[Any], settings: Settings) -> Iterator[tuple]:
    for row in rows:
        for n, text in enumerate(_split_export(row["value"])):
            change = envelope.parse(text, settings)
            yield (*change.as_dict().values(), None, None, n, row["source_file"], text if change.reason else None)


def parse_raw(raw: DataFrame, settings: Settings) -> DataFrame:
    """Raw landing rows (`jobs.common.spark.read_raw`) -> PARSED_SCHEMA rows."""
    rdd = raw.rdd.mapPartitions(lambda rows: _parse_rows(rows, settings))
    return raw.sparkSession.createDataFrame(rdd, PARSED_SCHEMA)


def read_export(spark: SparkSession, path: str, settings: Settings) -> DataFrame:
    """A directory of Debezium events written by a Kafka Connect file/S3 sink -> PARSED_SCHEMA rows.

    Files may hold JSON lines or one event each; `kafka_offset` is then the line number in the file.
    Exports carry no record keys, so their tombstones cannot be matched to a key (counted only).
    """
    files = (spark.read.text(path, wholetext=True, recursiveFileLookup=True)
             .select(F.col("value"), F.col("_metadata.file_path").alias("source_file")))
    rdd = files.rdd.mapPartitions(lambda rows: _parse_export(rows, settings))
    return spark.createDataFrame(rdd, PARSED_SCHEMA)


def quarantine_uncastable(parsed: DataFrame, settings: Settings) -> DataFrame:
    """A change whose value does not fit its configured column type is quarantined (`undecodable_value:<cols>`)
    rather than merged as null: the merge casts the same way, so what passes here casts there."""
    as_text = F.from_json("after", MapType(StringType(), StringType()))
    failing = F.lit("")
    for table in settings.tables:
        bad = F.concat_ws(",", *[F.when(as_text[c.name].isNotNull() & (as_text[c.name] != envelope.UNAVAILABLE)
                                        & as_text[c.name].try_cast(c.type).isNull(), F.lit(c.name))
                                 for c in table.columns])
        failing = F.when(F.col("table") == table.name, bad).otherwise(failing)
    uncastable = (F.col("kind") == "change") & F.col("reason").isNull() & F.col("after").isNotNull() & (failing != "")
    return (parsed.withColumn("reason", F.when(uncastable, F.concat(F.lit("undecodable_value:"), failing))
                              .otherwise(F.col("reason")))
            .withColumn("raw_value", F.when(uncastable, F.col("after")).otherwise(F.col("raw_value"))))


def exclude_erased(parsed: DataFrame, erased: DataFrame | None, key: str, field: str) -> DataFrame:
    """Changes about erased people (their subject field's HMAC token in `erased`) become kind `erased`: counted,
    kept nowhere, so a late event cannot bring back what an erasure removed."""
    if erased is None:
        return parsed
    subject = F.coalesce(F.get_json_object("after", f"$.{field}"), F.get_json_object("before", f"$.{field}"))
    tokens = F.broadcast(erased.select(F.col("token").alias("_token")).distinct())
    marked = parsed.join(tokens, hmac_sha256(subject, key) == F.col("_token"), "left")
    return (marked.withColumn("kind", F.when(F.col("_token").isNotNull() & (F.col("kind") == "change"),
                                             F.lit("erased")).otherwise(F.col("kind")))
            .drop("_token"))


def to_bronze(parsed: DataFrame) -> DataFrame:
    changes = parsed.where((F.col("kind") == "change") & F.col("reason").isNull())
    return changes.withColumn("source_ts", F.timestamp_micros("source_ts_us")).select(*BRONZE_COLUMNS)


def to_quarantine(parsed: DataFrame) -> DataFrame:
    return parsed.where(F.col("reason").isNotNull()).select(*QUARANTINE_COLUMNS)


def count_kinds(parsed: DataFrame) -> dict[str, int]:
    """Records per outcome: `change:<op>`, `quarantined:<reason>`, `tombstone`, `transaction`, ..."""
    reason = F.regexp_replace(F.col("reason"), r"[:].*$", "")
    outcome = (F.when(F.col("reason").isNotNull(), F.concat(F.lit("quarantined:"), reason))
               .when(F.col("kind") == "change", F.concat(F.lit("change:"), F.col("op")))
               .otherwise(F.col("kind")))
    return {r["outcome"]: int(r["count"]) for r in parsed.groupBy(outcome.alias("outcome")).count().collect()}
