"""include/als.yaml is validated on load: every problem listed, NaN and negative weights refused."""

from __future__ import annotations

import copy
import re
import sys

import pytest
import yaml

from jobs.als import settings as als_settings
from jobs.als.model import engine_for, search_space, single_node_regularization


def raw() -> dict:
    with open(als_settings.default_path(), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def test_shipped_settings_load():
    loaded = als_settings.load()
    assert loaded.params.rank >= 1 and loaded.primary_metric in als_settings.PRIMARY_METRICS
    assert all(w > 0 for w in loaded.event_weights.values())


@pytest.mark.parametrize("weight, message", [
    (float("nan"), "finite number >= 0, got nan"), (-1.0, "finite number >= 0, got -1.0"),
    (float("inf"), "finite number >= 0, got inf"), ("heavy", "finite number >= 0, got 'heavy'"),
])
def test_bad_event_weights_are_refused(weight, message):
    config = raw()
    config["interactions"]["event_weights"]["click"] = weight
    with pytest.raises(als_settings.SettingsError, match="event_weights.click must be a " + message):
        als_settings.parse(config)


def test_every_problem_is_listed_at_once():
    config = raw()
    config["interactions"]["max_id"] = 2**31  # ALS ids are Java ints
    config["interactions"]["holdout_days"] = config["interactions"]["window_days"]
    config["training"]["params"]["rank"] = 0
    config["evaluation"]["primary_metric"] = "auc"
    config["training"]["search"]["grid"]["reg_param"] = [0.1, -1]
    with pytest.raises(als_settings.SettingsError) as err:
        als_settings.parse(config)
    text = str(err.value)
    for fragment in ("max_id must be an integer in [0, 2147483647]", "holdout_days must be smaller",
                     "training.params.rank must be an integer in [1, 512]", "primary_metric must be one of",
                     "training.search.grid.reg_param must be a finite number in [0, 1e+06], got -1"):
        assert fragment in text


def test_all_zero_weights_mean_no_interactions():
    config = raw()
    config["interactions"]["event_weights"] = {"click": 0, "purchase": 0}
    with pytest.raises(als_settings.SettingsError, match="all 0"):
        als_settings.parse(config)


def test_zero_weight_types_are_not_interactions():
    config = raw()
    config["interactions"]["event_weights"]["page_view"] = 0
    assert "page_view" not in als_settings.parse(config).event_weights


def test_param_overrides_are_validated_and_change_the_version_key():
    loaded = als_settings.load()
    tuned = loaded.with_params({"rank": 64})
    assert tuned.params.rank == 64 and tuned.params.key() != loaded.params.key()
    assert loaded.with_params({}).params.key() == loaded.params.key()
    with pytest.raises(als_settings.SettingsError, match="unknown hyperparameter"):
        loaded.with_params({"ranks": 64})
    with pytest.raises(als_settings.SettingsError, match="alpha must be a finite number in \\[0, 1e\\+06\\]"):
        loaded.with_params({"alpha": float("nan")})


def test_search_space_starts_with_the_configured_params_and_is_seeded():
    config = copy.deepcopy(raw())
    config["training"]["search"]["max_trials"] = 5
    loaded = als_settings.parse(config)
    trials = search_space(loaded)
    assert trials[0] == loaded.params and len(trials) == len(set(trials)) == 5
    assert trials == search_space(loaded)  # same seed, same trials
    assert all(isinstance(t.reg_param, float) for t in trials)


def test_unreadable_or_malformed_files_are_one_clear_error(tmp_path):
    with pytest.raises(als_settings.SettingsError, match="cannot read ALS settings .*missing.yaml"):
        als_settings.load(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("interactions: [unclosed")
    with pytest.raises(als_settings.SettingsError, match="cannot read ALS settings .*broken.yaml"):
        als_settings.load(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(als_settings.SettingsError, match="must be a YAML mapping"):
        als_settings.load(tmp_path / "list.yaml")


@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"rank": 10**7}, "rank must be an integer in [1, 512], got 10000000"),
    ({"max_iter": 10**6}, "max_iter must be an integer in [1, 100], got 1000000"),
    ({"alpha": 1e12}, "alpha must be a finite number in [0, 1e+06]"),
    ({"rank": "big"}, "rank must be an integer in [1, 512], got 'big'"),
])
def test_hyperparameters_a_run_asks_for_are_bounded(overrides, fragment):
    with pytest.raises(als_settings.SettingsError, match=re.escape(fragment)):
        als_settings.load().with_params(overrides)


def with_training(**changes) -> als_settings.AlsSettings:
    config = raw()
    config["training"].update(changes)
    return als_settings.parse(config)


def test_the_engine_follows_the_setting_and_the_size(monkeypatch):
    settings = with_training(single_node_max_interactions=1000)
    assert engine_for(settings, 1000) == "implicit" and engine_for(settings, 1001) == "spark"
    assert engine_for(with_training(engine="spark"), 10) == "spark"
    assert engine_for(with_training(engine="implicit"), 10**9) == "implicit"
    monkeypatch.setitem(sys.modules, "implicit", None)  # a driver without the library
    assert engine_for(settings, 10) == "spark"
    with pytest.raises(ImportError):
        engine_for(with_training(engine="implicit"), 10)


@pytest.mark.parametrize(("changes", "message"), [
    ({"engine": "gpu"}, "training.engine must be one of ('auto', 'spark', 'implicit'), got 'gpu'"),
    ({"single_node_max_interactions": -1}, "training.single_node_max_interactions must be an integer >= 0"),
    ({"single_node_threads": 1.5}, "training.single_node_threads must be an integer >= 0"),
])
def test_bad_engine_settings_are_refused(changes, message):
    with pytest.raises(als_settings.SettingsError, match=re.escape(message)):
        with_training(**changes)


def test_the_driver_engine_gets_reg_param_on_mllibs_scale():
    """MLlib regularises a user by reg_param x its interactions (ALS-WR): `implicit`'s single value is reg_param x
    the geometric mean of the average user's and item's counts (here 6 pairs, 3 users, 2 items: 6 / sqrt(6))."""
    from scipy import sparse

    matrix = sparse.csr_matrix(([1.0] * 6, ([0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1])), shape=(5, 4))  # 2 empty rows
    params = als_settings.params_from({"rank": 8, "reg_param": 0.1, "alpha": 1.0, "max_iter": 1})
    assert single_node_regularization(params, matrix) == pytest.approx(0.1 * 6 / 6**0.5)
