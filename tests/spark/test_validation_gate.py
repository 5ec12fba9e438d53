"""The GX suite itself: each rule fails on data that breaks it (the gate is not vacuous)."""

import datetime as dt
from pathlib import Path

import jinja2
import pytest

from jobs.clickstream import bronze
from jobs.clickstream import transforms as job
from jobs.common import validation
from jobs.common.spark import LakeFS
from jobs.common.validation import validate
from tests.conftest import in_jvm

START = dt.datetime(2026, 11, 20)
PARAMS = {"event_types": ["click", "purchase"], "window_start": START,
          "window_end": START + dt.timedelta(days=1), "min_rows": 1, "max_rows": None}


def frame(spark, rows):
    base = dict.fromkeys(job.BRONZE_COLUMNS)
    full = [{**base, "kafka_topic": "clickstream", "kafka_partition": 0, "user_id": "u", "event_type": "click",
             "event_ts": START + dt.timedelta(hours=1), **r} for r in rows]
    ddl = ("event_id string, event_type string, event_ts timestamp, user_id string, session_id string, "
           "item_id string, query string, revenue double, currency string, user_agent string, "
           "referrer string, ip_prefix string, ip_hash string, "
           "experiments array<struct<experiment_id:string,variant:string>>, kafka_topic string, "
           "kafka_partition int, kafka_offset long, kafka_ts timestamp")
    return in_jvm(spark.createDataFrame([tuple(r[c] for c in job.BRONZE_COLUMNS) for r in full], ddl))


def data_docs_pages(root: Path) -> list[str]:
    """The validation result pages of a Data Docs site (a site GX failed to render has none)."""
    return [page.read_text() for page in (root / "validations").rglob("*.html")]


@pytest.fixture
def passes(monkeypatch) -> list[dict]:
    """The result formats of the GX runs a validation made, in order."""
    seen: list[dict] = []
    real_run = validation._run
    monkeypatch.setattr(validation, "_run", lambda *args: seen.append(args[4]) or real_run(*args))
    return seen


def test_clean_partition_passes_in_one_cheap_pass_with_readable_data_docs(spark, tmp_path, passes):
    df = frame(spark, [{"event_id": "a", "kafka_offset": 1}, {"event_id": "b", "kafka_offset": 2,
                                                               "event_type": "purchase", "revenue": 5.0}])
    outcome = validate(df, bronze.SUITE, PARAMS, (tmp_path / "docs").as_uri(), LakeFS(spark))
    assert outcome.success, outcome.summary()
    assert passes == [validation.FIRST_PASS]
    (page,) = data_docs_pages(tmp_path / "docs")
    assert "expect_column_values_to_be_unique" in page or "values must be unique" in page


def test_a_failure_is_described_by_a_second_detailed_pass(spark, tmp_path, passes):
    bad = frame(spark, [{"event_id": "a", "kafka_offset": 1}, {"event_id": "x", "kafka_offset": 9, "revenue": -2.5}])
    outcome = validate(bad, bronze.SUITE, PARAMS, (tmp_path / "docs").as_uri(), LakeFS(spark))
    assert passes == [validation.FIRST_PASS, validation.DETAILS]
    assert "expect_column_values_to_be_between(revenue): 1 unexpected (e.g. -2.5)" in outcome.failures
    (page,) = data_docs_pages(tmp_path / "docs")  # the detailed run's docs, not both
    assert "-2.5" in page


def test_data_docs_templates_are_compiled_once_per_process(spark, tmp_path, monkeypatch):
    """GX builds a Jinja environment per page; the pages after the first reuse the compiled templates
    (validation.TEMPLATES) and still render the whole result."""
    df = frame(spark, [{"event_id": "a", "kafka_offset": 1}])
    assert validate(df, bronze.SUITE, PARAMS, (tmp_path / "first").as_uri(), LakeFS(spark)).success
    compiled: list[str] = []
    real_compile = jinja2.Environment.compile
    monkeypatch.setattr(jinja2.Environment, "compile",
                        lambda env, source, name=None, *args, **kwargs: compiled.append(name)
                        or real_compile(env, source, name, *args, **kwargs))
    assert validate(df, bronze.SUITE, PARAMS, (tmp_path / "second").as_uri(), LakeFS(spark)).success
    assert compiled == [] and validation.TEMPLATES.compiled
    (first,) = data_docs_pages(tmp_path / "first")
    (second,) = data_docs_pages(tmp_path / "second")
    assert len(second) > 10_000 and second.count("<tr") == first.count("<tr")


@pytest.mark.parametrize("bad_row, expectation", [
    ({"event_id": "a", "kafka_offset": 9}, "expect_column_values_to_be_unique(event_id)"),
    ({"event_id": "x", "kafka_offset": 1}, "expect_compound_columns_to_be_unique"),
    ({"event_id": "x", "kafka_offset": 9, "revenue": -1.0}, "expect_column_values_to_be_between(revenue)"),
    ({"event_id": "x", "kafka_offset": 9, "event_type": "teleport"}, "expect_column_values_to_be_in_set"),
    ({"event_id": "x", "kafka_offset": 9, "event_ts": START + dt.timedelta(days=1)},
     "expect_column_values_to_be_between(event_ts)"),
    ({"event_id": None, "kafka_offset": 9}, "expect_column_values_to_not_be_null(event_id)"),
])
def test_each_rule_catches_its_violation(spark, bad_row, expectation):
    outcome = validate(frame(spark, [{"event_id": "a", "kafka_offset": 1}, bad_row]), bronze.SUITE, PARAMS)
    assert not outcome.success
    assert any(f.startswith(expectation) for f in outcome.failures), outcome.failures


def test_row_count_bounds_and_schema(spark):
    df = frame(spark, [{"event_id": "a", "kafka_offset": 1}])
    too_few = validate(df, bronze.SUITE, {**PARAMS, "min_rows": 5, "max_rows": 10})
    assert any("row_count" in f for f in too_few.failures)
    renamed = validate(df.withColumnRenamed("user_id", "uid"), bronze.SUITE, PARAMS)
    assert any("expect_table_columns_to_match_ordered_list" in f for f in renamed.failures)
