"""The counts interchange format: per-arm sufficient statistics, one row per experiment x variant x metric.

Column names follow the sums-over-users convention of open-source experimentation engines
(e.g. GrowthBook's gbstats), so counts from any warehouse query can be analysed here:

| column | meaning |
|---|---|
| experiment_id, variant, metric | the arm and metric |
| day | empty for the cumulative totals; k >= 0 for the slice "k days after first exposure" |
| count | users in the arm (exposed, single-variant) |
| main_sum, main_sum_squares | sum of the per-user metric value and of its square |
| denominator_sum, denominator_sum_squares, main_denominator_sum_product | ratio metrics only |
| covariate_sum, covariate_sum_squares, main_covariate_sum_product | CUPED: the pre-exposure value x |

Diagnostics (optional) are rows `experiment_id, kind, other, users` with kind
`multi_variant_users` (excluded users), `collision` (users also exposed to `other`),
`unregistered_variant_names` (`users` = how many distinct variant names the registry does not know were
logged; their users are counted in the one arm `(unregistered)` and excluded from the analysis).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from jobs.common.errors import PipelineError

KEYS = ["experiment_id", "variant", "metric"]
SUMS = ["count", "main_sum", "main_sum_squares"]
RATIO_SUMS = ["denominator_sum", "denominator_sum_squares", "main_denominator_sum_product"]
COVARIATE_SUMS = ["covariate_sum", "covariate_sum_squares", "main_covariate_sum_product"]
COLUMNS = [*KEYS, "day", *SUMS, *RATIO_SUMS, *COVARIATE_SUMS]
DIAGNOSTIC_COLUMNS = ["experiment_id", "kind", "other", "users"]
#: The one arm every variant name the registry does not know is counted in (the Spark aggregation).
UNREGISTERED = "(unregistered)"


#: Columns that come as a group: a row has all of a group's values or none (the metric has no denominator, or
#: no covariate), with the sum of squares and the cross product they need.
GROUPS = {"denominator": RATIO_SUMS, "covariate": COVARIATE_SUMS}
#: Relative slack for sums that rounding may leave a hair outside what is possible (a variance of -1e-16).
ROUNDING = 1e-9
#: Absolute slack per pair of users for sums of values so small that their squares fall below the normal doubles
#: (a revenue of 1e-164 squares to 0): each square is off by up to this, so no check can tell such sums apart.
UNDERFLOW = float(np.finfo(float).smallest_subnormal)


class CountsError(PipelineError, ValueError):
    """Counts no report can be built from; the one line names the file, the row and the column."""


class _Rows:
    """Where a row of the counts came from, as people find it: the data row, and the line in a CSV file."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.csv = source.endswith(".csv")

    def at(self, index: int, column: str | None = None) -> str:
        line = f" (line {index + 2})" if self.csv else ""  # the header is line 1
        return f"{self.source}: row {index + 1}{line}" + (f", column {column}" if column else "")


def normalise(frame: pd.DataFrame, source: str = "counts", kinds: dict[str, str] | None = None,
              experiments: set[str] | None = None) -> pd.DataFrame:
    """The counts in the interchange format with the optional columns added empty, or `CountsError` for the first
    value no report may be built from (a wrong number is worse than no report).

    `kinds` (metric name -> kind) and `experiments` come from the registry: a metric or an experiment it does not
    know is refused rather than ignored, and a proportion's conversions must lie within 0..users."""
    rows = _Rows(source)
    missing = [c for c in (*KEYS, *SUMS) if c not in frame.columns]
    if missing:
        raise CountsError(f"{source}: counts are missing column(s) {missing}; expected {COLUMNS}")
    frame = frame.reset_index(drop=True).copy()
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = float("nan")
    for column in KEYS:
        empty = frame[column].isna() | (frame[column].astype(str).str.strip() == "")
        _refuse_first(empty, rows, column, "empty; every row names its experiment, variant and metric")
        frame[column] = frame[column].astype(str)
    for column in ["day", *SUMS, *RATIO_SUMS, *COVARIATE_SUMS]:
        frame[column] = _numbers(frame[column], rows, column)
    _check_values(frame, rows, kinds or {})
    _check_unique(frame, rows)
    if experiments is not None:
        unknown = ~frame["experiment_id"].isin(experiments)
        _refuse_first(unknown, rows, "experiment_id", lambda i: f"{frame.at[i, 'experiment_id']!r} is not in the "
                      "registry: register it (or leave its rows out) to analyse it")
    if kinds:
        unknown = ~frame["metric"].isin(kinds)
        _refuse_first(unknown, rows, "metric", lambda i: f"{frame.at[i, 'metric']!r} is not a metric of the "
                      "registry's catalog")
    frame["day"] = frame["day"].astype("Int64")
    return frame[COLUMNS]


def _refuse_first(bad: pd.Series, rows: _Rows, column: str, why: str | Callable[[int], str]) -> None:
    """Raise for the first row where `bad` holds, saying how many more rows have the same problem."""
    if not bad.any():
        return
    index = int(bad.to_numpy().nonzero()[0][0])
    more = int(bad.sum()) - 1
    text = why(index) if callable(why) else why
    raise CountsError(f"{rows.at(index, column)}: {text}" + (f" ({more} more row(s) like it)" if more else ""))


def _numbers(values: pd.Series, rows: _Rows, column: str) -> pd.Series:
    """A numeric column; a cell that is not a number is refused with its text (empty cells stay NaN)."""
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    text = values.astype(str).str.strip().str.lower()
    not_a_number = numbers.isna() & values.notna() & ~text.isin(["", "nan"])
    _refuse_first(not_a_number, rows, column, lambda i: f"{values.iloc[i]!r} is not a number")
    return numbers


def _check_values(frame: pd.DataFrame, rows: _Rows, kinds: dict[str, str]) -> None:
    """NaN, infinities, negative or fractional user counts, impossible sums, conversions beyond users."""
    for column in [*SUMS, *RATIO_SUMS, *COVARIATE_SUMS]:
        _refuse_first(np.isinf(frame[column]), rows, column, "infinite; sums over users are finite")
    for column in SUMS:
        _refuse_first(frame[column].isna(), rows, column, "empty or NaN; every row needs count, main_sum and "
                      "main_sum_squares")
    n = frame["count"]
    _refuse_first(n < 0, rows, "count", lambda i: f"{n.iloc[i]:g} users: a count cannot be negative")
    _refuse_first(n != np.floor(n), rows, "count", lambda i: f"{n.iloc[i]:g} users: a count is a whole number")
    _refuse_first(frame["day"].notna() & ((frame["day"] < 0) | (frame["day"] != np.floor(frame["day"]))), rows,
                  "day", "a day since exposure is a whole number >= 0 (empty for the totals)")
    for group, (total, squares, product) in GROUPS.items():
        present = frame[[total, squares, product]].notna()
        partial = present.any(axis=1) & ~present.all(axis=1)
        _refuse_first(partial, rows, present[partial].idxmin(axis=1).iloc[0] if partial.any() else total,
                      f"empty while the row's other {group} sums are given: give all of {[total, squares, product]} "
                      "or none")
    _refuse_first((n == 0) & (frame[SUMS[1:]].abs().sum(axis=1) > 0), rows, "main_sum",
                  "sums over 0 users must be 0")
    proportion = frame["metric"].map(kinds).eq("proportion")
    _refuse_first(proportion & ((frame["main_sum"] < 0) | (frame["main_sum"] > n)), rows, "main_sum",
                  lambda i: f"{frame.at[i, 'main_sum']:g} conversions among {n.iloc[i]:g} users: a proportion "
                  "metric counts converting users, 0..count")
    for total, squares in (("main_sum", "main_sum_squares"), ("denominator_sum", "denominator_sum_squares"),
                           ("covariate_sum", "covariate_sum_squares")):
        _refuse_first(frame[squares] < 0, rows, squares, "a sum of squares cannot be negative")
        # Cauchy-Schwarz: n * sum(y^2) >= sum(y)^2, i.e. a variance >= 0
        spread = n * frame[squares] - frame[total] ** 2
        _refuse_first(spread < -(ROUNDING * (n * frame[squares]).abs() + (n * n + 1) * UNDERFLOW), rows, squares,
                      lambda i, t=total, q=squares: f"{frame.at[i, q]:.6g} is below {t}^2 / count = "
                      f"{frame.at[i, t] ** 2 / frame.at[i, 'count']:.6g}: no set of values has these sums")
    for total, squares, product in (("denominator_sum", "denominator_sum_squares", "main_denominator_sum_product"),
                                    ("covariate_sum", "covariate_sum_squares", "main_covariate_sum_product")):
        covariance = n * frame[product] - frame["main_sum"] * frame[total]
        bound = (n * frame["main_sum_squares"] - frame["main_sum"] ** 2) * (n * frame[squares] - frame[total] ** 2)
        scale = (n * frame["main_sum_squares"]) * (n * frame[squares])
        _refuse_first(covariance**2 > bound.clip(lower=0) + ROUNDING * scale.abs(), rows, product,
                      "a correlation beyond -1..1 with the row's other sums: no set of values has these sums")


def _check_unique(frame: pd.DataFrame, rows: _Rows) -> None:
    """One row per experiment x variant x metric x day: two would be added up by nobody and read twice."""
    keyed = frame[KEYS].assign(day=frame["day"].fillna(-1))
    repeated = keyed.duplicated(keep="first")
    if repeated.any():
        second = int(repeated.to_numpy().nonzero()[0][0])
        first = int((keyed == keyed.iloc[second]).all(axis=1).to_numpy().nonzero()[0][0])
        day = frame.at[second, "day"]
        slice_ = "the totals" if pd.isna(day) else f"day {day:g}"
        where = rows.at(second)
        raise CountsError(f"{where}: repeats row {first + 1} ({' / '.join(keyed.iloc[second][KEYS])}, {slice_}); "
                          "give one row per experiment, variant, metric and day")


def empty_diagnostics() -> pd.DataFrame:
    return pd.DataFrame({"experiment_id": pd.Series(dtype=str), "kind": pd.Series(dtype=str),
                         "other": pd.Series(dtype=str), "users": pd.Series(dtype=float)})


def read_table(path: str | Path) -> pd.DataFrame:
    """A counts or diagnostics file: CSV, or Parquet (a file or a directory of files)."""
    path = Path(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    return pd.read_parquet(path)
