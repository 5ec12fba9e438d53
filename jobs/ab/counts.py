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

from pathlib import Path

import pandas as pd

KEYS = ["experiment_id", "variant", "metric"]
SUMS = ["count", "main_sum", "main_sum_squares"]
RATIO_SUMS = ["denominator_sum", "denominator_sum_squares", "main_denominator_sum_product"]
COVARIATE_SUMS = ["covariate_sum", "covariate_sum_squares", "main_covariate_sum_product"]
COLUMNS = [*KEYS, "day", *SUMS, *RATIO_SUMS, *COVARIATE_SUMS]
DIAGNOSTIC_COLUMNS = ["experiment_id", "kind", "other", "users"]
#: The one arm every variant name the registry does not know is counted in (the Spark aggregation).
UNREGISTERED = "(unregistered)"


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Check the required columns and add the optional ones as empty, with clear errors."""
    missing = [c for c in (*KEYS, *SUMS) if c not in frame.columns]
    if missing:
        raise ValueError(f"counts are missing column(s) {missing}; expected {COLUMNS}")
    frame = frame.copy()
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = float("nan")
    for column in KEYS:
        frame[column] = frame[column].astype(str)
    for column in [*SUMS, *RATIO_SUMS, *COVARIATE_SUMS]:
        frame[column] = pd.to_numeric(frame[column], errors="raise").astype(float)
    frame["day"] = pd.to_numeric(frame["day"], errors="raise").astype("Int64")
    return frame[COLUMNS]


def empty_diagnostics() -> pd.DataFrame:
    return pd.DataFrame({"experiment_id": pd.Series(dtype=str), "kind": pd.Series(dtype=str),
                         "other": pd.Series(dtype=str), "users": pd.Series(dtype=float)})


def read_table(path: str | Path) -> pd.DataFrame:
    """A counts or diagnostics file: CSV, or Parquet (a file or a directory of files)."""
    path = Path(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    return pd.read_parquet(path)
