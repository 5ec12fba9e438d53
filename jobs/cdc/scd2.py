"""The CDC merge: a table's change log -> `<table>_current` and `<table>_history` (SCD type 2).

Only keys that changed are recomputed. For each such key the versions already in history are
turned back into the events that made them (an image event per version, plus the delete or
truncate that closed one), unioned with the new events, de-duplicated by (key, position, op)
and replayed in source order. That makes the merge

- idempotent: replaying events already applied changes nothing (at-least-once delivery);
- order-free: events that arrive late, in another batch or partition, land where their
  position says, and the history is rebuilt around them;
- bounded by the day's keys: untouched keys' rows are copied, never shuffled or replayed.

A snapshot (JDBC or dump file) enters as `r` events at its watermark position, plus a delete
for every live key it does not contain; change events at or before the watermark are
dropped, so the table is the snapshot plus the changes after it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, MapType, StringType, StructField, StructType, _parse_datatype_string

from jobs.cdc.envelope import UNAVAILABLE
from jobs.cdc.settings import Table

IMAGE_OPS = ["c", "u", "r"]
#: Version bookkeeping columns of `_history`; `_current` keeps those that still apply to a live row.
HISTORY_META = ["_key", "valid_from", "valid_to", "is_current", "opened_by", "closed_by",
                "_pos_from", "_pos_to", "_tx_id", "_flags", "_tx_order", "_seq"]
CURRENT_META = ["_key", "valid_from", "opened_by", "_pos_from", "_tx_id", "_flags"]
#: Where a replayed event comes from; on a tie (same key, position and op) the earlier origin wins,
#: so an event that is already in history counts as a duplicate, not as a new change.
ORIGINS = {"history": 0, "snapshot": 1, "batch": 2}
FLAGS = {
    "update_for_unseen_key": "an update for a key with no earlier version (kept, with this flag)",
    "insert_over_existing": "an insert for a key that already had a live version (applied as an upsert)",
}


@dataclass(frozen=True)
class Silver:
    """A table's silver state before the merge (None: not created yet)."""

    history: DataFrame | None
    current: DataFrame | None
    watermark: list[int] | None = None
    #: Every truncate merged so far ({"pos", "ts_us", "tx_id"}): a late change older than one of them
    #: must still be closed by it, whichever batch it arrives in.
    truncates: tuple[dict, ...] = ()
    #: Deletes that found no version to close (`_key, pos, source_ts, tx_id`): kept, so that the change they
    #: delete, arriving later, is closed by them instead of coming back to life.
    orphan_deletes: DataFrame | None = None


@dataclass(frozen=True)
class Snapshot:
    rows: DataFrame  # change-log rows, op `r`, at the watermark position
    watermark: list[int]
    taken_at: str  # ISO timestamp: valid_from of the versions it opens, valid_to of those it closes


@dataclass
class Merged:
    history: DataFrame
    current: DataFrame
    events: DataFrame  # the replayed events of the touched keys, with `_outcome` (for the counts)
    columns: list[tuple[str, str]]
    new_columns: list[str]
    truncates: tuple[dict, ...]  # the table's truncates after this batch (for the next Silver)
    orphan_deletes: DataFrame  # the table's deletes without a version to close, after this batch


def target_columns(table: Table, silver: Silver, changes: DataFrame) -> tuple[list[tuple[str, str]], list[str]]:
    """Data columns in order: existing silver columns, configured columns, then columns that appeared.

    A column seen in the events but not yet in silver gets the type the parser inferred (string
    when events disagree); existing columns keep their type.
    """
    columns: list[tuple[str, str]] = []
    if silver.history is not None:
        columns = [(f.name, f.dataType.simpleString()) for f in silver.history.schema.fields
                   if f.name not in HISTORY_META]
    known = {name for name, _ in columns}
    columns += [(c.name, c.type) for c in table.columns if c.name not in known]
    known |= {c.name for c in table.columns}
    seen = (changes.where(F.col("column_types").isNotNull())
            .select(F.explode(F.from_json("column_types", MapType(StringType(), StringType()))))
            .distinct().collect())
    types: dict[str, set[str]] = {}
    for row in seen:
        if row["key"] not in known:
            types.setdefault(row["key"], set()).add(row["value"])
    new = sorted(types)
    columns += [(name, next(iter(types[name])) if len(types[name]) == 1 else "string") for name in new]
    return columns, new


def schema_disagreements(table: Table, changes: DataFrame) -> dict[str, list[str]]:
    """Configured columns whose events carried a schema with another type (the events' schema was used)."""
    configured = {c.name for c in table.columns}
    seen = (changes.where(F.col("column_types").isNotNull())
            .select(F.explode(F.from_json("column_types", MapType(StringType(), StringType()))))
            .where(F.col("key").isin(sorted(configured))).distinct().collect())
    found: dict[str, list[str]] = {}
    for row in seen:
        found.setdefault(row["key"], []).append(row["value"])
    return {name: sorted(types) for name, types in sorted(found.items())}


def row_type(columns: list[tuple[str, str]]) -> DataType:
    return StructType([StructField(n, _parse_datatype_string(t)) for n, t in columns])


def _null_row(columns: list[tuple[str, str]]) -> Column:
    return F.lit(None).cast(row_type(columns)).alias("row")


def typed_row(json_image: Column, columns: list[tuple[str, str]]) -> Column:
    """A canonical JSON image -> a typed struct (strings cast to the column types; null stays null)."""
    strings = F.from_json(json_image, StructType([StructField(n, StringType()) for n, _ in columns]))
    return F.when(json_image.isNotNull(), F.struct(*[strings[n].try_cast(t).alias(n) for n, t in columns]))


def _event(key: Column, op: Column, pos: Column, ts: Column, tx: Column, row: Column, origin: str,
           tx_order: Column | None = None, seq: Column | None = None,
           unavailable: Column | None = None) -> list[Column]:
    """The columns of a replayable event; snapshot reads rank before changes at the same position.

    `tx_order` (Debezium's `transaction.total_order`) and `seq` (arrival order) order events that share a
    position; `unavailable` names the columns the connector sent as `__debezium_unavailable_value`."""
    return [key.alias("_key"), op.alias("op"), pos.alias("pos"), ts.alias("source_ts"),
            tx.cast("string").alias("tx_id"), row.alias("row"), F.lit(ORIGINS[origin]).alias("_origin"),
            F.lit(0 if origin == "snapshot" else 1).alias("_rank"),
            (tx_order if tx_order is not None else F.lit(None)).cast("bigint").alias("tx_order"),
            (seq if seq is not None else F.lit(None)).cast("bigint").alias("_seq"),
            (unavailable if unavailable is not None else F.array().cast("array<string>")).alias("_unavailable")]


def _unavailable_columns(json_image: Column) -> Column:
    """Names of the columns whose value is the TOAST placeholder (none for a null image)."""
    values = F.from_json(json_image, MapType(StringType(), StringType()))
    return F.coalesce(F.filter(F.map_keys(values), lambda name: values[name] == F.lit(UNAVAILABLE)),
                      F.array().cast("array<string>"))


def _change_events(changes: DataFrame, columns: list[tuple[str, str]], placeholders: bool,
                   origin: str = "batch") -> DataFrame:
    """`placeholders`: whether any event of the batch carries the TOAST placeholder; only then are the images
    parsed a second time for the columns that carry it (`resolve_unavailable` reads them)."""
    unavailable = _unavailable_columns(F.col("after")) if placeholders else None
    return changes.select(*_event(F.col("key"), F.col("op"), F.col("pos"), F.col("source_ts"), F.col("tx_id"),
                                  typed_row(F.col("after"), columns), origin, F.col("tx_order"),
                                  F.col("kafka_offset"), unavailable))


ORPHAN_COLUMNS = ["_key", "pos", "source_ts", "tx_id"]


def _orphan_events(orphans: DataFrame, columns: list[tuple[str, str]]) -> DataFrame:
    """Kept deletes, replayed with the history's origin (they are not tonight's changes)."""
    return orphans.select(*_event(F.col("_key"), F.lit("d"), F.col("pos"), F.col("source_ts"), F.col("tx_id"),
                                  _null_row(columns), "history"))


def _history_events(history: DataFrame, columns: list[tuple[str, str]]) -> DataFrame:
    """The events that built these versions: each version's opening image and a closing delete/truncate."""
    row = F.struct(*[F.col(n).cast(t).alias(n) if n in history.columns else F.lit(None).cast(t).alias(n)
                     for n, t in columns])
    def meta(name: str) -> Column:  # tables written before a meta column existed read it as null
        return F.col(name) if name in history.columns else F.lit(None)

    images = history.select(*_event(F.col("_key"), F.col("opened_by"), F.col("_pos_from"), F.col("valid_from"),
                                    F.col("_tx_id"), row, "history", meta("_tx_order"), meta("_seq")))
    closings = history.where(F.col("closed_by").isin("d", "t")).select(*_event(
        F.col("_key"), F.col("closed_by"), F.col("_pos_to"), F.col("valid_to"), F.lit(None), _null_row(columns),
        "history"))
    return images.unionByName(closings)


def truncates_of(changes: DataFrame) -> list[dict]:
    """The batch's truncates (a handful at most), as table-level state kept in the manifest."""
    rows = (changes.where(F.col("op") == "t")
            .select("pos", F.unix_micros("source_ts").alias("ts_us"), "tx_id").distinct().collect())
    return [{"pos": list(r["pos"]), "ts_us": r["ts_us"], "tx_id": r["tx_id"]} for r in rows]


def _truncate_events(truncates: list[dict], keys: DataFrame, columns: list[tuple[str, str]],
                     origin: str) -> DataFrame:
    """A truncate closes every key live at its position: one `t` event per key that may be live."""
    spark = keys.sparkSession
    table = spark.createDataFrame([(t["pos"], t["ts_us"], t["tx_id"]) for t in truncates],
                                  "pos array<bigint>, ts_us bigint, tx_id string")
    return F.broadcast(table).crossJoin(keys).select(*_event(
        F.col("_key"), F.lit("t"), F.col("pos"), F.timestamp_micros("ts_us"), F.col("tx_id"), _null_row(columns),
        origin))


def _snapshot_events(snapshot: Snapshot, columns: list[tuple[str, str]], current: DataFrame | None,
                     placeholders: bool) -> DataFrame:
    """Snapshot rows as `r` events (ranked before changes at the same position) and deletes for absent keys."""
    reads = _change_events(snapshot.rows, columns, placeholders, origin="snapshot")
    if current is None:
        return reads
    absent = (current.where(F.col("_pos_from") < position(snapshot.watermark))
              .select("_key").join(reads.select("_key"), "_key", "left_anti"))
    return reads.unionByName(absent.select(*_event(
        F.col("_key"), F.lit("d"), position(snapshot.watermark), F.to_timestamp(F.lit(snapshot.taken_at)), F.lit(None),
        _null_row(columns), "snapshot")))


def position(pos: list[int]) -> Column:
    return F.array(*[F.lit(p).cast("bigint") for p in pos])


def resolve_unavailable(events: DataFrame, columns: list[tuple[str, str]]) -> DataFrame:
    """A column sent as the TOAST placeholder keeps the value it had in the key's previous event (in source
    order); a null is a value too, so the last value is carried in a one-field struct."""
    order = (Window.partitionBy("_key").orderBy(*source_order())
             .rowsBetween(Window.unboundedPreceding, Window.currentRow))
    resolved = [F.last(F.when(~F.array_contains("_unavailable", name), F.struct(F.col(f"row.{name}").alias("v"))),
                       ignorenulls=True).over(order)["v"].alias(name) for name, _ in columns]
    return events.withColumn("row", F.when(F.col("row").isNotNull(), F.struct(*resolved)))


def source_order() -> list[Column | str]:
    """Source order of a key's events: position, then the transaction's own order, snapshot reads first, the
    op, then arrival (events that share a position and carry no transaction order keep the order they came)."""
    return ["pos", F.col("tx_order").asc_nulls_first(), "_rank", "op", F.col("_seq").asc_nulls_first()]


def sequence(events: DataFrame, columns: list[tuple[str, str]] | None = None) -> DataFrame:
    """Replay each key's events in source order: drop exact repeats and unchanged snapshot re-reads,
    then link every event to the next one and flag what does not fit (`_outcome`).

    A repeat is the same key, position, op, transaction order and image (a re-delivery): an event at an
    already-seen position with another image is a change of its own, never a duplicate."""
    order = Window.partitionBy("_key").orderBy(*source_order())
    repeats = (Window.partitionBy("_key", "pos", "op", F.coalesce("tx_order", F.lit(-1)), F.xxhash64("row"))
               .orderBy("_origin", F.col("_seq").asc_nulls_first())
               .rowsBetween(Window.unboundedPreceding, Window.currentRow))
    # a running count, which numbers the copies as row_number() would: on `row_number() == 1` Spark inserts a
    # group limit (a sort before the shuffle) into that branch only, so the duplicates' branch could not share
    # its shuffle and every event (the touched keys' history included) was read and shuffled twice
    numbered = events.withColumn("_copy", F.count(F.lit(1)).over(repeats))
    unique = numbered.where(F.col("_copy") == 1)
    if columns is not None:
        unique = resolve_unavailable(unique, columns)
    prev_op, prev_row = F.lag("op").over(order), F.lag("row").over(order)
    unchanged_reread = (F.col("op") == "r") & prev_op.isin(IMAGE_OPS) & prev_row.eqNullSafe(F.col("row"))
    kept = unique.withColumn("_unchanged", F.coalesce(unchanged_reread, F.lit(False)))
    live_before = F.coalesce(F.lag("op").over(order).isin(IMAGE_OPS), F.lit(False))
    linked = (kept.where(~F.col("_unchanged"))
              .withColumn("_live_before", live_before)
              .withColumn("_next_op", F.lead("op").over(order))
              .withColumn("_next_pos", F.lead("pos").over(order))
              .withColumn("_next_ts", F.lead("source_ts").over(order)))
    outcome = (F.when((F.col("op") == "u") & ~F.col("_live_before"), "update_for_unseen_key")
               .when((F.col("op") == "c") & F.col("_live_before"), "insert_over_existing")
               .when((F.col("op") == "d") & ~F.col("_live_before"), "delete_for_missing_key")
               .when((F.col("op") == "t") & ~F.col("_live_before"), "truncate_of_missing_key")
               .otherwise("applied"))
    return (linked.withColumn("_outcome", outcome)
            .unionByName(kept.where(F.col("_unchanged")).withColumn("_outcome", F.lit("unchanged_snapshot_row")),
                         allowMissingColumns=True)
            .unionByName(numbered.where(F.col("_copy") > 1).withColumn("_outcome", F.lit("duplicate")),
                         allowMissingColumns=True))


def versions(sequenced: DataFrame, columns: list[tuple[str, str]]) -> DataFrame:
    images = sequenced.where(F.col("op").isin(IMAGE_OPS) & ~F.col("_outcome").isin("unchanged_snapshot_row",
                                                                                     "duplicate"))
    flags = F.array_compact(F.array(*[F.when(F.col("_outcome") == f, F.lit(f)) for f in FLAGS]))
    return images.select(
        *[F.col(f"row.{n}").alias(n) for n, _ in columns],
        "_key", F.col("source_ts").alias("valid_from"), F.col("_next_ts").alias("valid_to"),
        F.col("_next_op").isNull().alias("is_current"), F.col("op").alias("opened_by"),
        F.col("_next_op").alias("closed_by"), F.col("pos").alias("_pos_from"), F.col("_next_pos").alias("_pos_to"),
        F.col("tx_id").alias("_tx_id"), flags.alias("_flags"), F.col("tx_order").alias("_tx_order"),
        F.col("_seq"))


def current_of(history: DataFrame) -> DataFrame:
    return history.where("is_current").select(*[c for c in history.columns if c not in HISTORY_META], *CURRENT_META)


def merge(table: Table, silver: Silver, changes: DataFrame, snapshot: Snapshot | None = None) -> Merged:
    """Apply one batch of bronze change-log rows (and an optional snapshot) to a table's silver state."""
    watermark = snapshot.watermark if snapshot else silver.watermark
    if watermark:
        changes = changes.where(F.col("pos") > position(watermark))
    columns, new_columns = target_columns(table, silver, changes if snapshot is None else changes.unionByName(
        snapshot.rows.select(*changes.columns)))
    data = [n for n, _ in columns]
    keyed = changes.where(F.col("op") != "t")
    batch_truncates = truncates_of(changes)
    placeholders = changes.where(F.col("after").contains(UNAVAILABLE)).limit(1).count() > 0
    new_events = _change_events(keyed, columns, placeholders)
    if batch_truncates:
        # every key with a version open at a truncate's position, also one a later change closed since (a late
        # truncate still closes it first)
        live = keyed.select(F.col("key").alias("_key"))
        if silver.history is not None:
            open_at = [(F.col("_pos_from") < position(t["pos"]))
                       & (F.col("_pos_to").isNull() | (F.col("_pos_to") > position(t["pos"]))) for t in batch_truncates]
            condition = open_at[0]
            for more in open_at[1:]:
                condition = condition | more
            live = live.unionByName(silver.history.where(condition).select("_key"))
        new_events = new_events.unionByName(_truncate_events(batch_truncates, live.distinct(), columns, "batch"))
    if snapshot is not None:
        new_events = new_events.unionByName(_snapshot_events(snapshot, columns, silver.current, placeholders))
    touched = new_events.select("_key").distinct()
    earlier = [t for t in silver.truncates if (not watermark or t["pos"] > watermark) and t not in batch_truncates]
    if earlier:  # replayed with the history's origin: they close late keys but are not this batch's changes
        new_events = new_events.unionByName(_truncate_events(earlier, touched, columns, "history"))

    events, untouched_history, untouched_orphans = new_events, None, None
    if silver.history is not None:
        old = silver.history
        events = events.unionByName(_history_events(old.join(touched, "_key", "left_semi"), columns))
        untouched_history = old.join(touched, "_key", "left_anti")
    if silver.orphan_deletes is not None:
        kept = silver.orphan_deletes
        if watermark:  # a snapshot is the table as of its watermark: deletes before it are settled
            kept = kept.where(F.col("pos") > position(watermark))
        events = events.unionByName(_orphan_events(kept.join(touched, "_key", "left_semi"), columns))
        untouched_orphans = kept.join(touched, "_key", "left_anti")
    sequenced = sequence(events, columns if placeholders else None)
    orphans = sequenced.where((F.col("op") == "d") & (F.col("_outcome") == "delete_for_missing_key")).select(
        *ORPHAN_COLUMNS)
    if untouched_orphans is not None:
        orphans = untouched_orphans.select(*ORPHAN_COLUMNS).unionByName(orphans)
    fresh = versions(sequenced, columns)
    history = fresh if untouched_history is None else untouched_history.unionByName(
        fresh, allowMissingColumns=True).select(*data, *HISTORY_META)
    current = current_of(fresh)
    if silver.current is not None:
        current = silver.current.join(touched, "_key", "left_anti").unionByName(
            current, allowMissingColumns=True).select(*data, *CURRENT_META)
    truncates = tuple(sorted(earlier + batch_truncates, key=lambda t: t["pos"]))
    return Merged(history, current, sequenced, columns, new_columns, truncates, orphans)


def unmatched_tombstones(tombstones: DataFrame, changes: DataFrame, current: DataFrame) -> DataFrame:
    """Tombstones whose key was neither deleted in this batch nor is gone from the table.

    Debezium writes a tombstone right after a delete; one for a live key means a delete event went
    missing (or a producer wrote nulls), so the row is kept and the tombstone quarantined.
    """
    deleted = changes.where(F.col("op") == "d").select(F.col("key").alias("_key"))
    keyed = tombstones.where(F.col("key").isNotNull()).withColumn("_key", F.col("key"))
    return (keyed.join(deleted, "_key", "left_anti").join(current.select("_key"), "_key", "left_semi")
            .drop("_key"))


def count_outcomes(sequenced: DataFrame) -> dict[str, int]:
    """The batch's (and snapshot's) events per `op:outcome`; events rebuilt from history are not counted."""
    new = sequenced.where(F.col("_origin") != ORIGINS["history"])
    rows = new.groupBy(F.concat_ws(":", "op", "_outcome").alias("k")).count().collect()
    return {r["k"]: int(r["count"]) for r in rows}
