"""`privacy.yaml`: where personal data lives and how long raw copies are kept, validated on load."""

from __future__ import annotations

import fnmatch
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.common import storage
from jobs.common.paths import Lake
from jobs.common.settings import Checker, load_file


@dataclass(frozen=True)
class PersonalTable:
    """A table holding personal data: where, how it is partitioned, whose lock guards it, how a row matches."""

    path: str                    # e.g. bronze/clickstream; `*` matches one directory level
    group: str                   # the writers' group ({dt}: the partition's value)
    partitions: str | None       # the key of its partition directories (dt, snapshot_id), None: one table
    column: str | None           # a column holding the id
    json: tuple[str, ...]        # or JSON texts whose subject field is the id


@dataclass(frozen=True)
class PrivacySettings:
    subject_field: str
    raw_days: int
    quarantine_days: int
    tables: tuple[PersonalTable, ...]


def _subdirectories(uri: str) -> list[str]:
    """The visible directories below `uri` (not `_staging` and the like)."""
    return [d for d in storage.children(uri) if not d.rsplit("/", 1)[-1].startswith(("_", ".")) and storage.is_dir(d)]


def directories(lake: Lake, table: PersonalTable) -> list[tuple[str, str]]:
    """(directory, lock group) of every table or partition the entry covers that exists now."""
    tables = [lake.root]
    for part in table.path.split("/"):
        tables = [f"{t}/{part}" for t in tables] if "*" not in part else [
            d for t in tables for d in _subdirectories(t) if fnmatch.fnmatch(d.rsplit("/", 1)[-1], part)]
    found = []
    for directory in tables:
        if table.partitions is None:
            found += [(directory, table.group)] if storage.is_dir(directory) else []
            continue
        for partition in _subdirectories(directory):
            name = partition.rsplit("/", 1)[-1]
            if name.startswith(f"{table.partitions}="):
                found.append((partition, table.group.format(**{table.partitions: name.split("=", 1)[1]})))
    return found


def parse(raw: Any, path: Path) -> PrivacySettings:
    check = Checker("privacy settings")
    raw = raw if isinstance(raw, dict) else {}
    retention = check.section(raw, "retention")
    tables = []
    for n, entry in enumerate(raw.get("tables") or []):
        where = f"tables[{n}]"
        entry = entry if isinstance(entry, dict) else {}
        column, texts = entry.get("column"), entry.get("json") or []
        check.check((column is None) != (not texts), f"{where}: give either `column` or `json`, not both or neither")
        check.check(isinstance(texts, list) and all(isinstance(t, str) for t in texts),
                    f"{where}.json must be a list of column names")
        tables.append(PersonalTable(check.text(entry, "path", where), check.text(entry, "group", where),
                                    entry.get("partitions"), column, tuple(texts)))
    check.check(bool(tables), "tables must list where personal data lives")
    settings = PrivacySettings(check.text(raw, "subject_field", "settings"),
                               check.integer(retention, "raw_days", "retention", minimum=1),
                               check.integer(retention, "quarantine_days", "retention", minimum=1), tuple(tables))
    check.done(path)
    return settings


@functools.cache
def load(path: Path | None = None) -> PrivacySettings:
    """`privacy.yaml`, validated."""
    return load_file("privacy.yaml", "privacy settings", parse, path)
