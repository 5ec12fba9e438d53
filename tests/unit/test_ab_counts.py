"""Counts no report may be built from, at the CLI (`python -m jobs.ab.cli`) as an analyst meets them: one line
naming the file, the row (and the CSV line) and the column, exit 1, and no output file written."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from jobs.ab import analysis, cli, registry, render
from jobs.ab.counts import CountsError
from tests.unit.test_ab_report import DAY, arm_rows

EXP = "exp_checkout_button"


def good_rows() -> list[dict]:
    return arm_rows(EXP, "control", 4000, 400) + arm_rows(EXP, "treatment", 4000, 460)


def index_of(rows: list[dict], variant: str, metric: str) -> int:
    return next(i for i, r in enumerate(rows) if r["variant"] == variant and r["metric"] == metric)


def with_cell(variant: str, metric: str, column: str, value: object) -> tuple[list[dict], int]:
    rows = good_rows()
    at = index_of(rows, variant, metric)
    rows[at] = {**rows[at], column: value}
    return rows, at


def duplicated() -> tuple[list[dict], int]:
    rows = good_rows()
    at = index_of(rows, "treatment", "purchase_conversion")
    return [*rows, dict(rows[at])], len(rows)


def impossible_sums() -> tuple[list[dict], int]:
    rows = good_rows()
    at = index_of(rows, "control", "revenue_per_user")
    rows[at] = {**rows[at], "main_sum": 12_000.0, "main_sum_squares": 30_000.0}  # 4,000 users: sum^2/n = 36,000
    return rows, at


def unregistered() -> tuple[list[dict], int]:
    rows = good_rows()
    extra = [{**r, "experiment_id": "exp_nobody_registered"} for r in arm_rows(EXP, "control", 100, 10)]
    return rows + extra, len(rows)


CASES = {
    "a NaN cell": (lambda: with_cell("treatment", "purchase_conversion", "main_sum", math.nan), "main_sum",
                   "empty or NaN"),
    "an inf cell": (lambda: with_cell("treatment", "revenue_per_user", "main_sum_squares", math.inf),
                    "main_sum_squares", "infinite"),
    "a duplicated row": (duplicated, None, "repeats row"),
    "a negative count": (lambda: with_cell("control", "purchase_conversion", "count", -4000), "count",
                         "cannot be negative"),
    "a fractional count": (lambda: with_cell("control", "purchase_conversion", "count", 4000.5), "count",
                           "whole number"),
    "conversions above users (primary)": (lambda: with_cell("treatment", "purchase_conversion", "main_sum", 5000),
                                          "main_sum", "5000 conversions among 4000 users"),
    "conversions above users (secondary)": (
        lambda: with_cell("treatment", "add_to_cart_conversion", "main_sum", 5000), "main_sum", "conversions"),
    "negative conversions": (lambda: with_cell("control", "search_conversion", "main_sum", -1), "main_sum",
                             "conversions"),
    "impossible sums": (impossible_sums, "main_sum_squares", "no set of values has these sums"),
    "a correlation beyond 1": (lambda: with_cell("control", "clicks_per_page_view",
                                                 "main_denominator_sum_product", 1e12),
                               "main_denominator_sum_product", "correlation beyond -1..1"),
    "half a ratio's sums": (lambda: with_cell("control", "clicks_per_page_view", "denominator_sum_squares",
                                              math.nan), "denominator_sum_squares", "give all of"),
    "a non-numeric cell": (lambda: with_cell("control", "revenue_per_user", "main_sum", "12,000.50"), "main_sum",
                           "'12,000.50' is not a number"),
    "an unregistered experiment": (unregistered, "experiment_id", "'exp_nobody_registered' is not in the registry"),
    "an unknown metric": (lambda: with_cell("control", "revenue_per_user", "metric", "revenue_per_usr"), "metric",
                          "'revenue_per_usr' is not a metric"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_counts_are_refused_with_file_row_and_column_and_nothing_is_written(case, tmp_path, capsys):
    make, column, says = CASES[case]
    rows, at = make()
    counts = tmp_path / "counts.csv"
    pd.DataFrame(rows).to_csv(counts, index=False)
    out, html = tmp_path / "report.json", tmp_path / "report.html"
    assert cli.main([str(counts), "--date", DAY.isoformat(), "--out", str(out), "--html", str(html)]) == 1
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    where = f"ab_cli failed: {counts}: row {at + 1} (line {at + 2})" + (f", column {column}" if column else "")
    assert line.startswith(where) and says in line, line
    assert not out.exists() and not html.exists() and list(tmp_path.iterdir()) == [counts]


def test_a_parquet_file_names_the_row_without_a_line(tmp_path):
    rows, at = with_cell("treatment", "purchase_conversion", "count", -1)
    counts = tmp_path / "counts.parquet"
    pd.DataFrame(rows).to_parquet(counts)
    with pytest.raises(CountsError, match=rf"^{counts}: row {at + 1}, column count: -1 users"):
        analysis.build_report(pd.read_parquet(counts), registry.load(), DAY, source=str(counts))


def test_many_bad_rows_are_counted_in_the_one_line():
    rows = good_rows()
    for row in rows:
        row["count"] = -row["count"]
    with pytest.raises(CountsError, match=rf"row 1, column count: .*\({len(rows) - 1} more row\(s\) like it\)$"):
        analysis.build_report(pd.DataFrame(rows), registry.load(), DAY)


def test_a_failure_while_rendering_writes_neither_file(tmp_path, monkeypatch, capsys):
    """JSON and HTML are published together: the HTML failing (here on purpose) leaves no report.json behind."""
    pd.DataFrame(good_rows()).to_csv(tmp_path / "counts.csv", index=False)
    out, html = tmp_path / "report.json", tmp_path / "report.html"

    def broken(*_args, **_kwargs):
        raise ValueError("cannot draw")

    monkeypatch.setattr(render, "report_html", broken)
    assert cli.main([str(tmp_path / "counts.csv"), "--date", DAY.isoformat(), "--out", str(out),
                     "--html", str(html)]) == 1
    assert "ab_cli failed: cannot draw" in capsys.readouterr().err
    assert not out.exists() and not html.exists()


def test_good_counts_with_empty_optional_sums_are_accepted(tmp_path):
    """What the Spark aggregation writes: no denominator sums for non-ratio metrics, no covariate for ratios."""
    frame = pd.DataFrame(good_rows())
    assert frame["denominator_sum"].isna().any() and "covariate_sum" not in frame
    report = analysis.build_report(frame, registry.load(), DAY, experiments=[EXP])
    assert report["experiments"][0]["srm"]["status"] == "ok"
