"""`features.yaml`: windows, smoothing, label horizon and serving defaults, validated on load."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.common.settings import Checker, RowCountGate, load_file

#: active days are counted as the bits of a 64-bit mask of days (registry.distinct_days)
MAX_WINDOW_DAYS = 64


@dataclass(frozen=True)
class FeatureSettings:
    owner: str
    windows_days: tuple[int, ...]
    session_margin_days: int
    smoothing_strength: float
    churn_horizon_days: int
    max_age_days: int
    row_count: RowCountGate

    @property
    def longest_window(self) -> int:
        return max(self.windows_days)

    @property
    def read_days(self) -> int:
        """Days of bronze a feature day reads: the longest window plus the session margin."""
        return self.longest_window + self.session_margin_days


def parse(raw: Any, path: Path) -> FeatureSettings:
    check = Checker("feature settings")
    raw = raw if isinstance(raw, dict) else {}
    windows = raw.get("windows_days")
    windows_ok = isinstance(windows, list) and bool(windows) and all(isinstance(w, int) and w >= 1 for w in windows)
    check.check(windows_ok and windows == sorted(set(windows)) and windows[-1] <= MAX_WINDOW_DAYS,
                f"windows_days must be increasing whole days from 1 to {MAX_WINDOW_DAYS}, got {windows!r}")
    churn = check.section(check.section(raw, "labels"), "churn", "labels.")
    rows = check.section(raw, "row_count")
    settings = FeatureSettings(
        check.text(raw, "owner", "settings"), tuple(windows) if isinstance(windows, list) else (1,),
        check.integer(raw, "session_margin_days", "settings"),
        check.number(raw, "smoothing_strength", "settings", exclusive=True),
        check.integer(churn, "horizon_days", "labels.churn", minimum=1),
        check.integer(check.section(raw, "training_set"), "max_age_days", "training_set", minimum=1),
        RowCountGate(check.integer(rows, "history_days", "row_count"), check.number(rows, "min_ratio", "row_count"),
                     check.number(rows, "max_ratio", "row_count", exclusive=True)))
    check.check(settings.row_count.min_ratio < settings.row_count.max_ratio,
                "row_count.min_ratio must be below max_ratio")
    check.done(path)
    return settings


@functools.cache
def load(path: Path | None = None) -> FeatureSettings:
    """`features.yaml`, validated."""
    return load_file("features.yaml", "feature settings", parse, path)
