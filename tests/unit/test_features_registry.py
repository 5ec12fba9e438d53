"""The feature registry and what comes from it without Spark: the catalogue, the GX suites, the settings, the
entry points' argument checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs import features_daily, training_set
from jobs.common import config
from jobs.common.errors import SettingsError
from jobs.common.settings import read_yaml
from jobs.features import catalogue, gate
from jobs.features.registry import ENTITIES, UnknownFeature, registry, select
from jobs.features.settings import load, parse

FEATURES = registry(load())


def test_the_catalogue_and_the_dag_feature_list_are_generated_from_the_registry():
    assert catalogue.main(["--check"]) == 0, "run `make catalogue`"
    doc = catalogue.DOC.read_text()
    assert all(f"| `{f.name}` |" in doc for f in FEATURES)


def test_every_feature_is_described_typed_owned_and_named_once():
    names = [f.name for f in FEATURES]
    assert len(names) == len(set(names))
    for f in FEATURES:
        assert f.description and f.aggregation and f.owner and f.source and f.dtype, f.name
    by_entity = {name: entity.features(FEATURES) for name, entity in ENTITIES.items()}
    assert {f.entity for f in FEATURES} == set(by_entity) and all(by_entity.values())
    for family in {f.family for f in FEATURES if f.family}:
        windows = [f.window_days for f in FEATURES if f.family == family]
        assert windows == sorted(load().windows_days), family  # a family has every window, once


def test_the_generated_suites_cover_every_column_and_every_window_pair():
    for entity in ENTITIES.values():
        suite = gate.feature_suite(entity, FEATURES)
        columns = suite["expectations"][0]["kwargs"]["column_list"]
        assert columns == [entity.key, *[f.name for f in entity.features(FEATURES)], "feature_ts"]
        windows = next(e for e in suite["expectations"] if "shorter window" in e.get("description", ""))
        query = windows["kwargs"]["unexpected_rows_query"]
        if entity.name == "user":
            assert "(`search_count_1d` > `search_count_7d`)" in query
            assert "(`search_count_7d` > `search_count_28d`)" in query


def test_unknown_features_fail_listing_the_known_ones(capsys):
    with pytest.raises(UnknownFeature, match=r"unknown feature\(s\) serch_count_7d; known: .*search_count_7d"):
        select(FEATURES, ["plan", "serch_count_7d"])
    assert features_daily.main(["--date", "2026-11-20", "--features", "serch_count_7d"]) == 1
    assert "unknown feature(s) serch_count_7d; known:" in capsys.readouterr().err
    assert training_set.main(["--entities", "e", "--out", "o", "--features", "nope"]) == 1
    assert "unknown feature(s) nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        training_set.main(["--entities", "e", "--out", "o", "--features", " "])


def test_bad_settings_list_every_problem(tmp_path):
    raw = {"owner": "", "windows_days": [7, 1], "session_margin_days": -1, "smoothing_strength": 0,
           "labels": {"churn": {"horizon_days": 0}}, "training_set": {}, "row_count": {"history_days": 7,
                                                                                     "min_ratio": 2, "max_ratio": 1}}
    with pytest.raises(SettingsError) as error:
        parse(raw, Path(tmp_path / "features.yaml"))
    for problem in ("windows_days must be increasing", "owner", "session_margin_days", "smoothing_strength",
                    "horizon_days", "max_age_days", "min_ratio must be below max_ratio"):
        assert problem in str(error.value)


def test_a_window_longer_than_the_active_days_mask_is_refused(tmp_path):
    path = config.settings_path("features.yaml")
    raw = {**read_yaml(path, "feature settings"), "windows_days": [1, 7, 90]}
    with pytest.raises(SettingsError) as error:
        parse(raw, path)
    assert "windows_days must be increasing whole days from 1 to 64, got [1, 7, 90]" in str(error.value)
