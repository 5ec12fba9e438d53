"""The GX suites of the feature tables, generated from the registry (no hand-kept list to drift from it).

Per table: the columns in registry order, keys present and unique within the day, counts never null,
counts, amounts and day counts >= 0, shares in [0, 1] and trends in [-1, 1], within each family the
shorter window's value <= the longer's, and the row count within the ratios of the recent days' median
(`$PARAMETER` min_rows / max_rows, so the suite stays one statement of the contract).
"""

from __future__ import annotations

from typing import Any

from jobs.features.registry import Entity, Feature


def _expect(kind: str, **kwargs: Any) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "meta": {}}


def _row_count() -> dict[str, Any]:
    return _expect("expect_table_row_count_to_be_between",
                   min_value={"$PARAMETER": "min_rows"}, max_value={"$PARAMETER": "max_rows"})


def _rows_where(description: str, key: str, conditions: list[str]) -> list[dict[str, Any]]:
    """One GX expectation for one rule over many columns: the rows breaking it (none expected)."""
    if not conditions:
        return []
    query = f"SELECT {key}, * FROM {{batch}} WHERE " + " OR ".join(f"({c})" for c in conditions)
    return [{"type": "unexpected_rows_expectation", "kwargs": {"unexpected_rows_query": query}, "meta": {},
             "description": description}]


def feature_suite(entity: Entity, features: tuple[Feature, ...]) -> dict[str, Any]:
    """The suite of `gold/features/<entity.table>` for these features.

    A rule over many columns is one `UnexpectedRowsExpectation` (a Spark SQL query for the rows that break
    it) rather than one expectation per column: GX's cost is per expectation, and a feature table has a
    hundred columns."""
    mine = entity.features(features)
    families: dict[str, list[Feature]] = {}
    for f in mine:
        if f.family:
            families.setdefault(f.family, []).append(f)
    ordered = [sorted(members, key=lambda f: f.window_days or 0) for members in families.values()]
    windows = [f"`{short.name}` > `{long.name}`" for members in ordered
               for short, long in zip(members, members[1:], strict=False)]

    def bounded(kinds: tuple[str, ...], low: int, high: int | None) -> list[str]:
        return [f"`{f.name}` < {low}" + (f" OR `{f.name}` > {high}" if high is not None else "")
                for f in mine if f.kind in kinds]

    expectations = [
        _expect("expect_table_columns_to_match_ordered_list", column_list=[entity.key, *[f.name for f in mine],
                                                                           "feature_ts"]),
        _expect("expect_column_values_to_not_be_null", column=entity.key),
        _expect("expect_column_values_to_be_unique", column=entity.key),
        _expect("expect_column_values_to_not_be_null", column="feature_ts"),
        *_rows_where("counts are never null", entity.key, [f"`{f.name}` IS NULL" for f in mine if f.kind == "count"]),
        *_rows_where("counts, amounts and day counts are >= 0", entity.key,
                     bounded(("count", "amount", "days"), 0, None)),
        *_rows_where("shares are within [0, 1]", entity.key, bounded(("share",), 0, 1)),
        *_rows_where("trends are within [-1, 1]", entity.key, bounded(("signed_share",), -1, 1)),
        *_rows_where("a shorter window never counts more than a longer one (1d <= 7d <= 28d)", entity.key, windows),
        _row_count(),
    ]
    return {"name": f"features_{entity.table}", "meta": {"generated_from": "jobs/features/registry.py"},
            "expectations": expectations}


def label_suite(table: str) -> dict[str, Any]:
    """The suite of a label table: one row per user, a 0/1 label, a timestamp."""
    return {"name": table.replace("/", "_"), "meta": {}, "expectations": [
        _expect("expect_table_columns_to_match_ordered_list",
                column_list=["user_id", "event_timestamp", "churned", "horizon_days"]),
        _expect("expect_column_values_to_not_be_null", column="user_id"),
        _expect("expect_column_values_to_be_unique", column="user_id"),
        _expect("expect_column_values_to_not_be_null", column="churned"),
        _expect("expect_column_values_to_be_in_set", column="churned", value_set=[0, 1]),
    ]}
