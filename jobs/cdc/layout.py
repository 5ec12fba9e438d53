"""How a CDC table's silver files are laid out, so that a night rewrites only the key ranges it changed.

`<table>_history` and `<table>_current` are cut into **segments**: contiguous ranges of the primary key in its
typed order (`sort_key`), the same ranges for both tables. Segment i holds every version (history) and the live
row (current) of the keys in [lo_i, lo_i+1); the first one starts below the lowest key. The layout (each
segment's lower bound, its files and rows per table) is kept in the table's manifest.

A merge reads the segments its changes fall into, rewrites them, and hard-links the other segments' files into
the staged table (a metadata operation on a local filesystem; a server-side copy on S3), which is then
published by the same atomic swap as ever: a reader sees the table before or after the merge, never a mix.
A rewritten segment that grew past 2 x `segment_rows` history rows is split; its first part keeps its lower
bound, so the segments still cover every key. A full rewrite samples the keys of its inputs for new bounds.

Everything is rewritten and cut afresh (`full`) when the layout is missing or no longer describes the files (the
first merge, a table written before layouts, a table rewritten since, e.g. by an erasure), when a snapshot or a
truncate concerns every key, when columns are added (every file of a table has one schema), or when more than
half of the segments changed anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.cdc.settings import Table
from jobs.common import storage

KINDS = ("history", "current")
#: A partial rewrite that would touch more than this share of the segments rewrites (and re-cuts) everything.
MAX_PARTIAL_SHARE = 0.5
SEGMENT, PIECE = "_segment", "_piece"


def key_schema(table: Table) -> str:
    """The DDL of `sort_key`'s struct: the primary key columns typed as configured, then `_key` itself."""
    typed = [f"`{name}` {table.column(name).type}" for name in table.primary_key]
    return ", ".join([*typed, "`_key` string"])


def sort_key(table: Table) -> Column:
    """A total order on keys that follows the primary key's values (ids 9 < 10, unlike their JSON text), with the
    canonical `_key` last, so that two keys are equal exactly when their `_key` is.

    Only consistency matters for correctness (every step places a key with this same expression); following the
    values is what keeps recent rows together. A one-column key is cut out of its JSON text (`[123]` -> 123), six
    times cheaper than parsing the JSON, which only composite keys need. A value that does not cast (a string
    key keeps its quotes; a base64 decimal is null) still orders consistently."""
    if len(table.primary_key) == 1:
        name = table.primary_key[0]
        inner = F.expr("substring(_key, 2, length(_key) - 2)")
        return F.struct(inner.try_cast(table.column(name).type).alias(name), F.col("_key").alias("_key"))
    values = F.from_json(F.col("_key"), "array<string>")
    return F.struct(*[values[i].try_cast(table.column(name).type).alias(name)
                      for i, name in enumerate(table.primary_key)], F.col("_key").alias("_key"))


def owner(key: Column, lows: list[str | None], schema: str) -> Column:
    """The index of the segment a key belongs to: the last lower bound at or below it (a binary search written as
    nested CASE expressions, O(log segments) comparisons per row, no join)."""
    def search(first: int, last: int) -> Column:
        if first == last:
            return F.lit(first)
        middle = (first + last + 1) // 2
        return F.when(key >= F.from_json(F.lit(lows[middle]), schema), search(middle, last)).otherwise(
            search(first, middle - 1))
    return search(0, len(lows) - 1)


@dataclass(frozen=True)
class Segment:
    lo: str | None  # JSON of the lowest key's `sort_key` (None: the first segment, from below every key)
    files: dict[str, list[str]]  # kind -> file names in that table's directory
    rows: dict[str, int]


@dataclass(frozen=True)
class Layout:
    key: str  # key_schema() when it was cut: a changed primary key type means a full rewrite
    segment_rows: int
    segments: tuple[Segment, ...]

    @staticmethod
    def of(manifest: dict[str, Any]) -> Layout | None:
        raw = manifest.get("layout")
        if not raw:
            return None
        return Layout(raw["key"], int(raw["segment_rows"]),
                      tuple(Segment(s["lo"], s["files"], s["rows"]) for s in raw["segments"]))

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "segment_rows": self.segment_rows,
                "segments": [{"lo": s.lo, "files": s.files, "rows": s.rows} for s in self.segments]}

    def rows(self, kind: str) -> int:
        return sum(s.rows.get(kind, 0) for s in self.segments)

    def files(self, kind: str) -> list[str]:
        return [name for s in self.segments for name in s.files.get(kind, [])]

    def lows(self) -> list[str | None]:
        return [s.lo for s in self.segments]

    def segment_of(self, table: Table) -> Column:
        """The index of the segment each row's `_key` belongs to."""
        return owner(sort_key(table), self.lows(), self.key)

    def describes(self, directories: dict[str, str], table: Table) -> bool:
        """Whether this layout still describes the published tables (every listed file is there, same key)."""
        if self.key != key_schema(table) or not self.segments or self.segments[0].lo is not None:
            return False
        for kind in KINDS:
            if not set(self.files(kind)) <= _parquet_names(directories[kind]):
                return False
        return True


def _parquet_names(directory: str) -> set[str]:
    """The Parquet files at a table directory's top level (not its hidden bookkeeping, e.g. `_orphan_deletes`)."""
    names = (uri[len(directory.rstrip("/")) + 1:] for uri in storage.list_files(directory, ".parquet"))
    return {name for name in names if "/" not in name}


@dataclass
class Plan:
    """What a merge reads and rewrites: all of it (`touched` None), or the segments its changes fall into."""

    layout: Layout | None
    touched: dict[int, int] | None = None  # segment -> the changes that fall into it
    reason: str = ""

    @property
    def full(self) -> bool:
        return self.touched is None

    def rows_read(self, published_rows: int) -> int:
        """The history rows this merge reads (`published_rows`: the whole table's, from its manifest)."""
        if self.full or self.layout is None:
            return published_rows
        return sum(self.layout.segments[i].rows.get("history", 0) for i in self.touched or ())

    def read(self, spark: SparkSession, directory: str, kind: str) -> DataFrame:
        """The part of a published table this merge starts from: all of it, or the touched segments' files."""
        if self.full:
            return spark.read.parquet(directory)
        assert self.layout is not None
        names = [n for i in sorted(self.touched or ()) for n in self.layout.segments[i].files.get(kind, [])]
        if not names:
            return spark.createDataFrame([], spark.read.parquet(directory).schema)
        return spark.read.parquet(*[f"{directory}/{n}" for n in names])


def holding(spark: SparkSession, layout: Layout, directory: str, kind: str, keys: DataFrame,
            table: Table) -> DataFrame:
    """The part of a table (its segments' files) that holds the given keys (a DataFrame with `_key`), if any.

    A table without rows has no segments: nothing holds any key (`write` places rows the same way)."""
    segments = ({r[0]: 0 for r in keys.select(layout.segment_of(table)).distinct().collect()}
                if layout.segments else {})
    return Plan(layout, segments).read(spark, directory, kind)


def plan(layout: Layout | None, directories: dict[str, str], table: Table, changes: DataFrame,
         everything: str | None) -> Plan:
    """Which segments a batch touches; a full rewrite, with the reason, when it cannot or should not be partial.

    `everything` names why every key is concerned (a snapshot, a truncate), if it is."""
    if layout is None:
        return Plan(None, reason="no layout in the manifest (written before layouts, or since by an erasure)")
    if not layout.describes(directories, table):
        return Plan(None, reason="the layout no longer describes the files (rewritten since, or the key changed)")
    if everything:
        return Plan(layout, reason=everything)
    touched = {r[0]: int(r[1]) for r in changes.select(F.col("key").alias("_key"))
               .groupBy(layout.segment_of(table).alias(SEGMENT)).count().collect()}
    if not touched:
        return Plan(layout, reason="no keyed changes")
    if len(touched) > MAX_PARTIAL_SHARE * len(layout.segments):
        return Plan(layout, reason=f"{len(touched)} of {len(layout.segments)} segments changed")
    return Plan(layout, touched)


@dataclass
class Written:
    """A merge's staged tables: the new layout, the rewritten part of each (what the gates validate), and which
    segments were rewritten (the others' files were linked)."""

    layout: Layout
    rewritten: dict[str, DataFrame]
    rewritten_segments: list[int]
    linked_files: int

    def rewritten_rows(self, kind: str) -> int:
        return sum(self.layout.segments[i].rows.get(kind, 0) for i in self.rewritten_segments)

    def current_holding(self, keys: DataFrame, staged: dict[str, str], table: Table) -> DataFrame:
        """The staged current rows of the segments that hold these keys (a DataFrame with `key`)."""
        return holding(keys.sparkSession, self.layout, staged["current"], "current",
                       keys.select(F.col("key").alias("_key")), table)


def _write_segments(frame: DataFrame, staged: str, prefix: str) -> dict[int, dict[int, list[str]]]:
    """Write a frame with `_segment` and `_piece` columns, each task's rows of a piece in one file, moved to the
    staged directory's top level as `<prefix><segment>.<piece>-<Spark's name>` (readers see one flat table).
    Returns segment -> piece -> file names; pieces are numbered in key order."""
    scratch = f"{staged}/_segments"
    frame.write.partitionBy(SEGMENT, PIECE).parquet(scratch)
    written: dict[int, dict[int, list[str]]] = {}
    for uri in storage.list_files(scratch, ".parquet"):
        segment_dir, piece_dir, name = uri.rsplit("/", 3)[1:]
        segment, piece = int(segment_dir.split("=")[1]), int(piece_dir.split("=")[1])
        target = f"{prefix}{segment}.{piece}-{name}"
        storage.move(uri, f"{staged}/{target}")
        written.setdefault(segment, {}).setdefault(piece, []).append(target)
    storage.delete(scratch)
    return written


def _lowest_keys(spark: SparkSession, staged: str, names: list[str], key: Column) -> dict[str, str]:
    """The lowest key (as JSON) of each of these files: one scan of their key column."""
    if not names:
        return {}
    frame = spark.read.parquet(*[f"{staged}/{n}" for n in names]).select("_key")
    rows = frame.groupBy(F.input_file_name().alias("file")).agg(F.to_json(F.min(key)).alias("lo")).collect()
    return {r["file"].rsplit("/", 1)[-1]: r["lo"] for r in rows}


def boundaries(keys: DataFrame, key: Column, parts: int, rows: int) -> list[str | None]:
    """Lower bounds that cut the key space into `parts` ranges of about equal rows, from a sample of the keys (a
    DataFrame with `_key`, one row per history row: the published history's and the changes', read from their
    Parquet files, so the merge itself is not run twice)."""
    if parts <= 1:
        return [None]
    sample = (keys.sample(fraction=min(1.0, 2000 * parts / max(rows, 1)), seed=0).select(key.alias("k"))
              .orderBy("k").select(F.to_json("k")).collect())  # the key parsed for the sampled rows only
    cuts = [sample[len(sample) * i // parts][0] for i in range(1, parts)] if sample else []
    return [None, *dict.fromkeys(cuts)]  # in order, without repeats


def _gather(frame: DataFrame, full: bool) -> DataFrame:
    """The tasks that write a table's files: a full rewrite keeps the rows where they are (at most
    spark.sql.shuffle.partitions tasks, each writing a file per segment it holds); a partial one gathers each
    segment into one task, so that a rewritten segment is one file (a shuffle of the rewritten rows only)."""
    if full:
        return frame.coalesce(int(frame.sparkSession.conf.get("spark.sql.shuffle.partitions")))
    return frame.repartition(SEGMENT)


def _cut(history: DataFrame, key: Column, schema: str, lows: list[str | None], plan_: Plan,
         segment_rows: int) -> DataFrame:
    """History rows with the segment they go to and the piece of it.

    Rows are written where `_gather` puts them; in a partial rewrite, a segment that would hold more than
    2 x `segment_rows` rows is cut into equal pieces by rank, a task per piece."""
    cut = history.withColumn(SEGMENT, owner(key, lows, schema))
    if plan_.full:
        return _gather(cut.withColumn(PIECE, F.lit(0)), full=True)
    assert plan_.layout is not None
    pieces = {index: math.ceil((plan_.layout.segments[index].rows.get("history", 0) + changes) / segment_rows)
              for index, changes in (plan_.touched or {}).items()}
    split = {index: count for index, count in pieces.items() if count > 2}
    if not split:
        return _gather(cut.withColumn(PIECE, F.lit(0)), full=False)
    count = F.lit(1)
    for index, n in split.items():
        count = F.when(F.col(SEGMENT) == index, n).otherwise(count)
    rank = F.percent_rank().over(Window.partitionBy(SEGMENT).orderBy(key))
    return cut.withColumn(PIECE, F.least(F.floor(rank * count), count - 1).cast("int")).repartition(SEGMENT, PIECE)


def write(history: DataFrame, current: DataFrame, staged: dict[str, str], published: dict[str, str], table: Table,
          plan_: Plan, segment_rows: int, rows_estimate: int, keys: DataFrame | None = None) -> Written:
    """Stage a merge's history and current in segments; link the untouched segments' published files.

    `history`/`current` are the merge's result for what the plan read (all, or the touched segments);
    `rows_estimate` the history rows they hold about (the read part plus the changes); `keys` (a full rewrite
    only) the keys of those rows as read from the inputs, from which it samples its segment bounds."""
    spark, key, schema = history.sparkSession, sort_key(table), key_schema(table)
    old = plan_.layout if not plan_.full else None
    if old is None and keys is None:
        raise ValueError("a full rewrite samples its segment bounds from `keys`")
    lows = old.lows() if old else boundaries(keys, key, math.ceil(rows_estimate / segment_rows), rows_estimate)
    history_files = _write_segments(_cut(history, key, schema, lows, plan_, segment_rows), staged["history"], "h")
    split_lows = _lowest_keys(spark, staged["history"], [n for pieces in history_files.values()
                                                         for piece, names in pieces.items() if piece > 0
                                                         for n in names], key)
    segments: list[Segment] = []
    rewritten: list[int] = []  # indices (in `segments`) of the new segments
    for index, lo in enumerate(lows):
        if old is not None and index not in (plan_.touched or {}):
            segments.append(old.segments[index])
            continue
        for piece, names in sorted(history_files.get(index, {}).items()):  # a piece starts at its lowest key,
            rewritten.append(len(segments))                                # the first at the segment's bound
            segments.append(Segment(lo if piece == 0 else split_lows[names[0]], {"history": names, "current": []},
                                    {"history": _rows(staged["history"], names), "current": 0}))
    if segments:  # the first segment starts below every key, whatever became of the one that did
        segments[0] = Segment(None, segments[0].files, segments[0].rows)

    live = current.withColumn(SEGMENT, owner(key, [s.lo for s in segments], schema) if segments else F.lit(0))
    current_files = _write_segments(_gather(live.withColumn(PIECE, F.lit(0)), plan_.full), staged["current"], "c")
    for index in rewritten:
        names = [n for pieces in current_files.get(index, {}).values() for n in pieces]
        segments[index].files["current"] = names
        segments[index].rows["current"] = _rows(staged["current"], names)
    linked = 0
    for index, segment in enumerate(segments):
        if index not in rewritten:
            for kind in KINDS:
                for name in segment.files.get(kind, []):
                    storage.link(f"{published[kind]}/{name}", f"{staged[kind]}/{name}")
                    linked += 1
    frames = {}
    for kind, frame in (("history", history), ("current", current)):
        names = [n for i in rewritten for n in segments[i].files[kind]]
        if not _parquet_names(staged[kind]):  # an empty table still shows readers its schema
            frame.limit(0).coalesce(1).write.mode("append").parquet(staged[kind])
        frames[kind] = (spark.read.parquet(*[f"{staged[kind]}/{n}" for n in names]) if names
                        else spark.createDataFrame([], frame.schema))
    return Written(Layout(schema, segment_rows, tuple(segments)), frames, rewritten, linked)


def _rows(directory: str, names: list[str]) -> int:
    """Rows in these Parquet files, from their footers (no Spark job)."""
    return sum(storage.parquet_rows(f"{directory}/{name}") for name in names)
