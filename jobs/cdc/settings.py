"""The CDC table settings (`cdc.yaml`), checked on load so a typo fails before any data moves."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.common import config
from jobs.common.errors import SettingsError
from jobs.common.settings import read_yaml

SPARK_TYPE = re.compile(r"^(string|bigint|int|double|boolean|timestamp|date|decimal\(\d+,\s*\d+\))$")
ENCODINGS = {"millis", "micros", "nanos", "base64", "string"}


class CdcSettingsError(SettingsError):
    """`cdc.yaml` is unreadable or inconsistent, or names no such table; the message lists every problem."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    encoding: str | None = None


@dataclass(frozen=True)
class Table:
    name: str
    source: str
    primary_key: tuple[str, ...]
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


DEFAULT_SEGMENT_ROWS = 1_000_000


@dataclass(frozen=True)
class Settings:
    topic_prefix: str
    tables: tuple[Table, ...]
    #: History rows per segment of a silver table (jobs/cdc/layout.py): a night rewrites the segments it changed.
    segment_rows: int = DEFAULT_SEGMENT_ROWS

    def topic(self, table: Table) -> str:
        return f"{self.topic_prefix}.{table.source}"

    def by_source(self, source: str) -> Table | None:
        return next((t for t in self.tables if t.source == source), None)

    def by_topic(self, topic: str) -> Table | None:
        return next((t for t in self.tables if self.topic(t) == topic), None)

    def table(self, name: str) -> Table:
        found = next((t for t in self.tables if t.name == name), None)
        if found is None:
            raise CdcSettingsError(f"no CDC table {name!r} in the settings; known: {[t.name for t in self.tables]}")
        return found


def _column(table: str, name: str, spec: Any, problems: list[str]) -> Column:
    spec = spec if isinstance(spec, dict) else {"type": spec}
    type_, encoding = str(spec.get("type", "")).replace(" ", ""), spec.get("encoding")
    if not SPARK_TYPE.match(type_):
        problems.append(f"{table}.{name}: type {spec.get('type')!r} is not one of string, bigint, int, double, "
                        "boolean, timestamp, date, decimal(p,s)")
    if encoding is not None and encoding not in ENCODINGS:
        problems.append(f"{table}.{name}: encoding {encoding!r} is not one of {sorted(ENCODINGS)}")
    return Column(name, type_, encoding)


def parse(raw: Any) -> Settings:
    """Settings from the YAML mapping; raises CdcSettingsError listing every problem."""
    if not isinstance(raw, dict) or not isinstance(raw.get("tables"), dict) or not raw["tables"]:
        raise CdcSettingsError("CDC settings need a `tables` mapping with at least one table")
    problems: list[str] = []
    tables = []
    for name, spec in raw["tables"].items():
        spec = spec or {}
        columns = tuple(_column(name, c, s, problems) for c, s in (spec.get("columns") or {}).items())
        pk = tuple(spec.get("primary_key") or ())
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            problems.append(f"table name {name!r} is not a plain identifier")
        if not spec.get("source") or "." not in str(spec["source"]):
            problems.append(f"{name}: `source` must be <schema>.<table> (PostgreSQL) or <database>.<table> (MySQL)")
        if not pk:
            problems.append(f"{name}: no primary_key: current and history tables need one (list its columns)")
        missing = [c for c in pk if c not in {col.name for col in columns}]
        if missing:
            problems.append(f"{name}: primary key column(s) {missing} are not in `columns`")
        tables.append(Table(str(name), str(spec.get("source")), pk, columns))
    segment_rows = raw.get("segment_rows", DEFAULT_SEGMENT_ROWS)
    if isinstance(segment_rows, bool) or not isinstance(segment_rows, int) or segment_rows < 1:
        problems.append(f"segment_rows must be a whole number of rows above 0, not {segment_rows!r}")
    sources = [t.source for t in tables]
    problems += [f"source {s!r} is configured twice" for s in sorted({s for s in sources if sources.count(s) > 1})]
    if problems:
        raise CdcSettingsError("invalid CDC settings: " + "; ".join(problems))
    return Settings(str(raw.get("topic_prefix") or "cdc"), tuple(tables), segment_rows)


def load(path: Path | None = None) -> Settings:
    """`cdc.yaml` (from `$PIPELINE_CONFIG_DIR` if it has one, else `include/`), validated."""
    path = path or config.settings_path("cdc.yaml")
    return parse(read_yaml(path, "CDC settings", CdcSettingsError))
