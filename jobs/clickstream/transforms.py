"""The clickstream's record-level rules as pure DataFrame -> DataFrame functions (no I/O).

Parse each raw envelope against the explicit event schema (no inference, no Python UDF), give
every record one reason or none, attribute it to exactly one date, collapse Kafka re-reads,
quarantine re-deliveries, drop events without consent, and minimise the IP. `bronze.py` reads
raw/ and writes bronze/ around these; the tests call them directly on small frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import MapType, StringType, StructField, StructType

from jobs.common import settings
from jobs.common.keyed_hash import hmac_sha256

CORRUPT = "_corrupt"
QUARANTINE_TEXT_CHARS = 4096
BRONZE_COLUMNS = [
    "event_id", "event_type", "event_ts", "user_id", "session_id", "item_id", "query", "revenue",
    "currency", "user_agent", "referrer", "ip_prefix", "ip_hash", "experiments",
    "kafka_topic", "kafka_partition", "kafka_offset", "kafka_ts",
]
QUARANTINE_COLUMNS = [
    "reason", "event_id", "kafka_topic", "kafka_partition", "kafka_offset", "kafka_ts",
    "landing_date", "source_file", "raw_value", "raw_value_b64",
]


@dataclass(frozen=True)
class Rules:
    """The record-level rules, from `include/pipeline.yaml`."""

    event_types: list[str]
    required_fields: list[str]
    late_days: int
    max_clock_skew_minutes: int
    max_field_chars: int = 2048

    @classmethod
    def from_settings(cls) -> Rules:
        c = settings.pipeline().clickstream
        return cls(list(c.event_types), list(c.required_fields), c.late_days, c.max_clock_skew_minutes,
                   c.max_field_chars)


def parse_events(raw: DataFrame, event_schema: StructType) -> DataFrame:
    """Envelope rows -> one row per Kafka record with the typed event `e` and parse diagnostics."""
    with_corrupt = StructType([*event_schema.fields, StructField(CORRUPT, StringType())])
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}
    parsed = F.from_json("value", with_corrupt, options)
    return raw.select(
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.timestamp_millis("timestamp_ms").alias("kafka_ts"),
        F.to_date(F.regexp_extract("source_file", r"kafka_date=(\d{4}-\d{2}-\d{2})", 1)).alias("landing_date"),
        "source_file",
        F.col("value").alias("raw_value"),
        F.col("value_b64").alias("raw_value_b64"),
        F.col("_corrupt_envelope"),
        # explode of a one-element array: a Generate node the optimizer cannot inline through, so
        # later filters on `e` (the day's attribution) do not re-run from_json once per reference
        F.explode(F.array(parsed)).alias("e"),
    )


def _fields_where(names: list[str], predicate: Any) -> Column:
    """Comma-separated names of the fields for which `predicate(name)` holds ('' if none)."""
    return F.concat_ws(",", *[F.when(predicate(n), F.lit(n)) for n in names])


def classify(parsed: DataFrame, rules: Rules, event_schema: StructType) -> DataFrame:
    """Add `reason` (null for a good event) and `attributed_dt`, the one run that owns the record."""
    as_map = F.from_json("raw_value", MapType(StringType(), StringType()))
    wrong_types = _fields_where(
        event_schema.fieldNames(), lambda n: as_map[n].isNotNull() & F.col(f"e.{n}").isNull())
    missing = _fields_where(rules.required_fields, lambda n: F.col(f"e.{n}").isNull())
    texts = [f.name for f in event_schema.fields if isinstance(f.dataType, StringType)]
    too_long = _fields_where(texts, lambda n: F.length(F.col(f"e.{n}")) > rules.max_field_chars)
    skew = F.expr(f"INTERVAL {rules.max_clock_skew_minutes} MINUTES")
    event_date = F.to_date("e.event_ts")
    reason = (
        F.when(F.col("_corrupt_envelope").isNotNull() | F.col("kafka_offset").isNull(), "corrupt_envelope")
        .when(F.col("raw_value_b64").isNotNull(), "invalid_encoding")
        .when(F.col("raw_value").isNull(), "empty_value")
        .when(F.col(f"e.{CORRUPT}").isNotNull() & as_map.isNull(), "invalid_json")
        .when(F.col(f"e.{CORRUPT}").isNotNull(), F.concat(F.lit("wrong_type:"), wrong_types))
        .when(missing != "", F.concat(F.lit("missing_field:"), missing))
        .when(too_long != "", F.concat(F.lit("field_too_long:"), too_long))
        .when(~F.col("e.event_type").isin(rules.event_types), "invalid_event_type")
        .when(F.col("e.revenue") < 0, "negative_revenue")
        .when(F.col("e.event_ts") > F.col("kafka_ts") + skew, "future_timestamp")
        .when(event_date < F.date_sub("landing_date", rules.late_days), "late_beyond_window")
    )
    return (parsed.withColumn("reason", reason)
            .withColumn("_erased", F.lit(False))  # set by `mark_erased`
            .withColumn("attributed_dt",
                        F.when(F.col("reason").isNull(), event_date).otherwise(F.col("landing_date")))
            # the raw text is only kept for quarantine: good rows shuffle without it
            .withColumn("raw_value", F.when(F.col("reason").isNotNull(), F.col("raw_value"))))


def resolve_duplicates(day_rows: DataFrame) -> DataFrame:
    """Flag Kafka re-reads (`reread`) and re-delivered events (reason `duplicate_event_id`).

    A re-read is the same Kafka record seen twice (a retried drain range): it is collapsed and
    counted. A re-delivery is the same event_id at another offset: the lowest (partition,
    offset) is kept and the others are quarantined. One window, keyed by event_id for good
    events and by the Kafka coordinates for bad ones.
    """
    coords = F.concat_ws("/", "kafka_topic", "kafka_partition", "kafka_offset")
    key = F.when(F.col("reason").isNull(), F.concat(F.lit("id:"), "e.event_id")).otherwise(
        F.concat(F.lit("at:"), coords))
    w = Window.partitionBy("_dedupe_key").orderBy("kafka_partition", "kafka_offset", "source_file")
    same_as_previous = (F.lag("kafka_partition").over(w).eqNullSafe(F.col("kafka_partition"))
                        & F.lag("kafka_offset").over(w).eqNullSafe(F.col("kafka_offset"))
                        & F.lag("kafka_topic").over(w).eqNullSafe(F.col("kafka_topic")))
    return (day_rows.withColumn("_dedupe_key", key)
            .withColumn("reread", F.coalesce(same_as_previous, F.lit(False)) & F.col("kafka_offset").isNotNull())
            .withColumn("_rank", F.row_number().over(w))
            .withColumn("reason", F.when(~F.col("reread") & (F.col("_rank") > 1) & F.col("reason").isNull(),
                                         F.lit("duplicate_event_id")).otherwise(F.col("reason")))
            .drop("_dedupe_key", "_rank"))


def mark_erased(day_rows: DataFrame, erased: DataFrame | None, key: str) -> DataFrame:
    """Flag the records of users who were erased (`erased`: their HMAC tokens): they are kept nowhere, not in
    bronze and not in quarantine, however often their days are rebuilt from raw/."""
    if erased is None:
        return day_rows
    tokens = F.broadcast(erased.select(F.col("token").alias("_token")).distinct())
    # a record too broken to parse still names its user in its text
    user = F.coalesce(F.col("e.user_id"),
                      F.nullif(F.regexp_extract("raw_value", r'"user_id"\s*:\s*"((?:[^"\\]|\\.)*)"', 1), F.lit("")))
    return (day_rows.join(tokens, hmac_sha256(user, key) == F.col("_token"), "left")
            .withColumn("_erased", F.col("_token").isNotNull()).drop("_token"))


def outcome() -> Column:
    """What happens to each record: collapsed re-read, excluded (erased user), quarantined, excluded, or kept."""
    return (F.when(F.col("reread"), "reread_collapsed")
            .when(F.col("_erased"), "excluded_erased")
            .when(F.col("reason").isNotNull(), F.concat(F.lit("quarantined:"), "reason"))
            .when(~F.coalesce(F.col("e.consent"), F.lit(False)), "excluded_no_consent")
            .otherwise("bronze"))


def minimise_ip(ip: Column, key: str) -> tuple[Column, Column]:
    """IP -> (network, HMAC-SHA256): a /16 for IPv4 and a /32 for IPv6, so that even with the key a hash is
    not undone by trying the 256 hosts of a /24; the raw IP never leaves."""
    v4 = F.regexp_extract(ip, r"^(\d{1,3}\.\d{1,3})\.\d{1,3}\.\d{1,3}$", 1)
    v6 = F.regexp_extract(ip, r"^([0-9a-fA-F]{0,4}:[0-9a-fA-F]{0,4})(:|$)", 1)
    prefix = (F.when(v4 != "", F.concat(v4, F.lit(".0.0/16")))
              .when(v6 != "", F.concat(F.lower(v6), F.lit("::/32"))))
    hashed = F.when(ip.isNotNull(), hmac_sha256(ip, key))
    return prefix, hashed


def to_bronze(day_rows: DataFrame, ip_key: str) -> DataFrame:
    prefix, hashed = minimise_ip(F.col("e.ip"), ip_key)
    kept = day_rows.where(outcome() == "bronze")
    return kept.select(
        *[F.col(f"e.{c}").alias(c) for c in BRONZE_COLUMNS[:BRONZE_COLUMNS.index("ip_prefix")]],
        prefix.alias("ip_prefix"), hashed.alias("ip_hash"), F.col("e.experiments").alias("experiments"),
        "kafka_topic", "kafka_partition", "kafka_offset", "kafka_ts",
    )


def redacted(raw: Column) -> Column:
    """A quarantined record's text as it may be kept: the IP and the user agent blanked (in valid and in broken
    JSON alike), cut to `QUARANTINE_TEXT_CHARS`. The exact bytes stay in raw/, restricted and retention-limited."""
    blanked = F.regexp_replace(raw, r'("(?:ip|user_agent)"\s*:\s*)"(?:[^"\\]|\\.)*"', '$1"<redacted>"')
    return F.when(F.length(blanked) > QUARANTINE_TEXT_CHARS,
                  F.concat(F.substring(blanked, 1, QUARANTINE_TEXT_CHARS), F.lit("…<cut>"))).otherwise(blanked)


def to_quarantine(day_rows: DataFrame) -> DataFrame:
    """Bad records with their reason and Kafka coordinates (to find them in raw/); the text only redacted,
    and none at all for an event that says it has no consent, nor for bytes that are not UTF-8."""
    bad = day_rows.where(~F.col("reread") & ~F.col("_erased") & F.col("reason").isNotNull())
    no_consent = F.coalesce(F.col("e.consent") == F.lit(False), F.lit(False))
    return bad.select(F.col("reason"), F.col("e.event_id").alias("event_id"), *QUARANTINE_COLUMNS[2:-2],
                      F.when(~no_consent, redacted(F.col("raw_value"))).alias("raw_value"),
                      F.lit(None).cast("string").alias("raw_value_b64"))


def count_outcomes(day_rows: DataFrame) -> dict[str, int]:
    """Counts per outcome in one aggregation: the manifest's numbers."""
    rows = day_rows.groupBy(outcome().alias("outcome")).count().collect()
    return {r["outcome"]: int(r["count"]) for r in rows}
