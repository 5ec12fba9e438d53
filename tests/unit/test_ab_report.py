"""The report from counts (no Spark): registry validation, verdicts, and every bad-input case.

Each bad input must give a warning or a reason for that experiment only, never a crash of the
whole report and never a p-value where none is meaningful.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import zlib

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from jobs.ab import analysis, cli, registry, stats
from jobs.ab.counts import COLUMNS
from jobs.common import config

DAY = dt.date(2026, 11, 20)
SCHEMA = json.loads(config.include_path("schemas", "ab_report.schema.json").read_text())


def raw_registry() -> dict:
    return yaml.safe_load(registry.default_path().read_text())


def one_experiment(**overrides) -> dict:
    raw = raw_registry()
    exp = copy.deepcopy(raw["experiments"][0])
    exp.update(overrides)
    raw["experiments"] = [exp]
    return raw


def arm_rows(exp: str, variant: str, n: float, conversions: float, revenue_mean: float = 3.0,
             views: float = 5.0) -> list[dict]:
    """Counts rows for every metric of the catalog, consistent enough for the tests."""
    rng = np.random.default_rng(zlib.crc32(f"{exp}:{variant}".encode()))  # stable across processes
    y = rng.exponential(revenue_mean, int(n)) if n else np.zeros(0)
    v = rng.poisson(views, int(n)).astype(float) + 1 if n else np.zeros(0)
    c = rng.binomial(v.astype(int), 0.3).astype(float) if n else np.zeros(0)
    base = {"experiment_id": exp, "variant": variant, "count": n}
    rows = []
    for metric in raw_registry()["metrics"]:
        kind = raw_registry()["metrics"][metric]["kind"]
        if kind == "proportion":
            rows.append({**base, "metric": metric, "main_sum": conversions, "main_sum_squares": conversions})
        elif kind == "continuous":
            rows.append({**base, "metric": metric, "main_sum": y.sum(), "main_sum_squares": (y * y).sum()})
        else:
            rows.append({**base, "metric": metric, "main_sum": c.sum(), "main_sum_squares": (c * c).sum(),
                         "denominator_sum": v.sum(), "denominator_sum_squares": (v * v).sum(),
                         "main_denominator_sum_product": (c * v).sum()})
    return rows


def report_for(raw: dict, rows: list[dict], day: dt.date = DAY) -> dict:
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=COLUMNS)  # no exposures: no rows at all
    report = analysis.build_report(frame, registry.parse(raw), day)
    Draft202012Validator(SCHEMA).validate(report)
    json.dumps(report, allow_nan=False)  # strict JSON: no NaN anywhere
    return report


def comparisons(entry: dict) -> list[dict]:
    return [c for m in entry.get("metrics", []) for c in m["comparisons"]]


def assert_no_meaningless_pvalues(entry: dict) -> None:
    for c in comparisons(entry):
        if c["status"] == "not_computable":
            assert c["p_value"] is None and c["p_value_adjusted"] is None and c["reason"]
            assert c["sequential"]["p_value"] is None and c["cuped"]["p_value"] is None


def test_shipped_registry_is_valid():
    reg = registry.load()
    assert [e.id for e in reg.experiments if not e.valid] == []
    assert {e.primary.metric.kind for e in reg.experiments} == {"proportion"}


def test_a_broken_registry_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("experiments: [\n")
    with pytest.raises(registry.RegistryError, match="cannot read experiment registry"):
        registry.load(bad)
    with pytest.raises(registry.RegistryError, match="kind must be one of"):
        registry.parse({"metrics": {"m": {"kind": "median"}}, "experiments": []})
    with pytest.raises(registry.RegistryError, match="unknown experiment id"):
        registry.parse(raw_registry()).select(["exp_nope"])


@pytest.mark.parametrize(("overrides", "error"), [
    ({"variants": {"control": 0.5, "treatment": 0.6}}, "invalid split: variant shares sum to 1.1"),
    ({"variants": {"control": 1.0}}, "at least two variant names"),
    ({"variants": {"control": 0.5, "treatment": -0.5}}, "must be positive"),
    ({"control": "baseline"}, "control 'baseline' is not one of the variants"),
    ({"primary_metric": {"metric": "nope", "direction": "increase"}}, "not in the metric catalog"),
    ({"primary_metric": {"metric": "purchase_conversion", "direction": "up"}}, "direction must be one of"),
    ({"end_date": "2026-11-01"}, "is before start_date"),
    ({"alpha": 1.5}, "alpha must be a number in (0, 1)"),
    ({"mde": 0}, "mde"),
    ({"guardrail_metrics": [{"metric": "page_views_per_user", "must_not": "decrease", "margin": 2}]},
     "margin is a relative non-inferiority margin for guardrails"),
    ({"secondary_metrics": [{"metric": "revenue_per_user", "direction": "increase", "margin": 0.02}]},
     "margin is a relative non-inferiority margin for guardrails"),
    ({"guardrail_metrics": [{"metric": "page_views_per_user", "must_not": "decrease", "margn": 0.02}]},
     "unknown key(s) ['margn']"),
])
def test_an_invalid_entry_is_reported_without_stopping_the_others(overrides, error):
    raw = one_experiment(**overrides)
    good = copy.deepcopy(raw_registry()["experiments"][1])
    raw["experiments"].append(good)
    rows = arm_rows(good["id"], "control", 4000, 400) + arm_rows(good["id"], "treatment", 4000, 420)
    report = report_for(raw, rows)
    bad, fine = report["experiments"]
    assert bad["status"] == "invalid_registry_entry" and bad["verdict"]["decision"] == "invalid"
    assert any(error in e for e in bad["errors"]), bad["errors"]
    assert "metrics" not in bad
    assert fine["status"] == "running" and comparisons(fine)[0]["p_value"] is not None


def test_a_clear_winner_is_launched_and_an_srm_overrides_everything():
    raw = one_experiment(start_date="2026-11-01")
    exp = raw["experiments"][0]["id"]
    rows = arm_rows(exp, "control", 20000, 2000) + arm_rows(exp, "treatment", 20000, 2400)
    entry = report_for(raw, rows)["experiments"][0]
    assert entry["srm"]["status"] == "ok"
    assert entry["verdict"]["decision"] in ("launch", "guardrail_breached"), entry["verdict"]
    primary = entry["metrics"][0]["comparisons"][0]
    assert primary["relative_lift"] == pytest.approx(0.2)
    assert primary["p_value"] < 1e-6 and primary["sequential"]["p_value"] < 0.05

    skewed = arm_rows(exp, "control", 20000, 2000) + arm_rows(exp, "treatment", 18500, 2220)
    entry = report_for(raw, skewed)["experiments"][0]
    assert entry["srm"]["status"] == "flagged" and entry["srm"]["p_value"] < 0.001
    assert entry["verdict"]["decision"] == "do_not_trust"
    assert entry["verdict"]["text"].startswith("Do not read these results: sample ratio mismatch")


def test_a_harmful_variant_is_stopped_before_the_planned_sample_size():
    raw = one_experiment(start_date="2026-11-01")
    exp = raw["experiments"][0]["id"]
    entry = report_for(raw, arm_rows(exp, "control", 5000, 1000) + arm_rows(exp, "treatment", 5000, 700))
    entry = entry["experiments"][0]
    assert entry["power"]["arms"][0]["reached"] is False  # the always-valid test decides
    primary = entry["metrics"][0]["comparisons"][0]
    assert primary["sequential"]["p_value"] < 0.05 and primary["relative_lift"] == pytest.approx(-0.3)
    assert entry["verdict"]["decision"] == "stop_harm"
    assert "always-valid sequential test" in entry["verdict"]["text"]


def test_no_exposures():
    entry = report_for(one_experiment(), [])["experiments"][0]
    assert entry["srm"]["status"] == "not_computable" and entry["srm"]["p_value"] is None
    assert "no exposures logged for the registered variants" in entry["warnings"]
    assert entry["verdict"]["decision"] == "not_computable"
    assert entry["bayesian"]["status"] == "not_computable"
    assert all(c["reason"] == "no users in arm control" for c in comparisons(entry))
    assert_no_meaningless_pvalues(entry)


def test_a_single_observed_variant():
    raw = one_experiment()
    rows = arm_rows(raw["experiments"][0]["id"], "control", 3000, 300)
    entry = report_for(raw, rows)["experiments"][0]
    assert "variant treatment has no users: only one side of the test is observed" in entry["warnings"]
    assert entry["srm"]["status"] == "flagged"  # a broken allocator: all users in one arm
    assert {c["reason"] for c in comparisons(entry)} == {"no users in arm treatment"}
    assert_no_meaningless_pvalues(entry)


def test_a_variant_not_in_the_registry_is_excluded_with_a_warning():
    raw = one_experiment()
    exp = raw["experiments"][0]["id"]
    rows = (arm_rows(exp, "control", 3000, 300) + arm_rows(exp, "treatment", 3000, 330)
            + arm_rows(exp, "treatment_v2", 700, 90))
    entry = report_for(raw, rows)["experiments"][0]
    assert entry["exposure"]["unregistered_variant_users"] == {"treatment_v2": 700.0}
    assert any("variant 'treatment_v2' is not in the registry" in w for w in entry["warnings"])
    assert {c["variant"] for c in comparisons(entry)} == {"treatment"}
    assert entry["srm"]["observed"] == {"control": 3000.0, "treatment": 3000.0}


@pytest.mark.parametrize(("control", "treatment"), [(0, 0), (3000, 3000), (0, 40), (300, 3000), (2, 7)])
def test_few_or_all_conversions_get_fishers_exact_test_instead_of_no_result(control, treatment):
    """0%, 100% or under 5 conversions: the z-test's normal approximation fails, Fisher's exact test does not."""
    from scipy import stats as sps

    raw = one_experiment()
    exp = raw["experiments"][0]["id"]
    entry = report_for(raw, arm_rows(exp, "control", 3000, control) + arm_rows(exp, "treatment", 3000, treatment))
    entry = entry["experiments"][0]
    primary = entry["metrics"][0]["comparisons"][0]
    assert primary["status"] == "ok" and primary["small_sample"] and primary["test"] == "fisher_exact"
    table = [[treatment, 3000 - treatment], [control, 3000 - control]]
    assert primary["p_value"] == pytest.approx(sps.fisher_exact(table, alternative="greater").pvalue)
    low, high = primary["absolute_ci"]
    assert low <= primary["absolute_lift"] <= high and primary["statistic"] is None
    assert primary["sequential"]["status"] == "not_computable" and "normal approximation" in primary[
        "sequential"]["reason"]
    assert (primary["relative_lift"] is None) == (control == 0 or control == treatment == 3000)  # 0/0; 100% vs 100%
    assert_no_meaningless_pvalues(entry)


def test_newcombes_interval_matches_the_published_example():
    """Newcombe (1998), Statistics in Medicine 17:873, table II, example (a): 56/70 vs 48/80, method 10."""
    (low, high), _ = stats.small_sample_intervals(48, 80, 56, 70, alpha=0.05)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)


def test_zero_conversions_in_both_arms_leaves_the_relative_lift_undefined_too():
    raw = one_experiment()
    exp = raw["experiments"][0]["id"]
    entry = report_for(raw, arm_rows(exp, "control", 3000, 0) + arm_rows(exp, "treatment", 3000, 0))
    primary = entry["experiments"][0]["metrics"][0]["comparisons"][0]
    assert primary["relative_lift"] is None and primary["relative_ci"] is None
    assert primary["p_value"] == 1.0  # nobody converted anywhere: no evidence either way
    assert entry["experiments"][0]["power"]["arms"][0]["status"] == "not_computable"


def test_tiny_samples_get_exact_methods_for_proportions_and_no_pvalue_otherwise():
    raw = one_experiment()
    exp = raw["experiments"][0]["id"]
    entry = report_for(raw, arm_rows(exp, "control", 12, 3) + arm_rows(exp, "treatment", 11, 6))["experiments"][0]
    by_kind = {m["kind"]: m["comparisons"][0] for m in entry["metrics"]}
    assert by_kind["proportion"]["status"] == "ok" and by_kind["proportion"]["test"] == "fisher_exact"
    assert by_kind["proportion"]["rate_ci"]["control"][0] < 3 / 12 < by_kind["proportion"]["rate_ci"]["control"][1]
    for kind in ("continuous", "ratio"):
        assert by_kind[kind]["status"] == "not_computable"
        assert by_kind[kind]["reason"].startswith("only 12 users in arm control (min_users_per_arm = 100)")
    assert entry["srm"]["status"] == "ok"  # 23 users still allow the chi-square test
    assert_no_meaningless_pvalues(entry)


def test_zero_variance_continuous_metric_is_not_computable():
    raw = one_experiment()
    exp = raw["experiments"][0]["id"]
    rows = arm_rows(exp, "control", 3000, 300) + arm_rows(exp, "treatment", 3000, 310)
    for row in rows:
        if row["metric"] == "revenue_per_user":
            row["main_sum"], row["main_sum_squares"] = 3000.0 * 2, 3000.0 * 4  # everybody spent exactly 2
    entry = report_for(raw, rows)["experiments"][0]
    revenue = next(m for m in entry["metrics"] if m["metric"] == "revenue_per_user")["comparisons"][0]
    assert revenue["status"] == "not_computable" and revenue["reason"].startswith("zero variance in both arms")
    assert revenue["p_value"] is None


def test_an_ended_experiment_is_final_and_says_so():
    raw = one_experiment(start_date="2026-10-01", end_date="2026-10-31")
    exp = raw["experiments"][0]["id"]
    entry = report_for(raw, arm_rows(exp, "control", 3000, 300) + arm_rows(exp, "treatment", 3000, 300))
    entry = entry["experiments"][0]
    assert entry["status"] == "ended" and entry["window"]["analysed_to"] == "2026-10-31"
    assert "ended on 2026-10-31: events after that date are not analysed" in entry["warnings"]
    assert entry["verdict"]["text"].startswith("Ended 2026-10-31: final result.")
    assert entry["verdict"]["decision"] in ("stop_no_effect", "launch", "stop_harm")


def test_not_started_and_early_experiments():
    raw = one_experiment(start_date="2026-12-01")
    entry = report_for(raw, [])["experiments"][0]
    assert entry["status"] == "not_started" and entry["verdict"]["decision"] == "not_started"
    raw = one_experiment(start_date="2026-11-18")
    exp = raw["experiments"][0]["id"]
    entry = report_for(raw, arm_rows(exp, "control", 3000, 300) + arm_rows(exp, "treatment", 3000, 330))
    entry = entry["experiments"][0]
    assert entry["window"] == {"analysed_from": "2026-11-18", "analysed_to": "2026-11-20", "days_running": 3,
                               "early": True}
    assert entry["verdict"]["text"].startswith("Early (day 3 of at least 7)")
    assert entry["verdict"]["decision"] != "launch"


def test_multi_variant_users_and_collisions_are_reported():
    raw = one_experiment()
    exp = raw["experiments"][0]["id"]
    diag = pd.DataFrame([{"experiment_id": exp, "kind": "multi_variant_users", "other": None, "users": 17.0},
                         {"experiment_id": exp, "kind": "collision", "other": "exp_b", "users": 420.0}])
    rows = arm_rows(exp, "control", 3000, 300) + arm_rows(exp, "treatment", 3000, 330)
    report = analysis.build_report(pd.DataFrame(rows), registry.parse(raw), DAY, diagnostics=diag)
    entry = report["experiments"][0]
    assert entry["exposure"]["multi_variant_users_excluded"] == 17.0
    assert "17 users were seen in more than one variant and are excluded" in entry["warnings"]
    assert entry["collisions"] == [{"experiment_id": "exp_b", "users": 420.0}]


def test_holm_adjusts_across_arms_and_metrics_of_one_experiment():
    raw = one_experiment()
    exp = raw["experiments"][0]["id"]
    entry = report_for(raw, arm_rows(exp, "control", 5000, 500) + arm_rows(exp, "treatment", 5000, 560))
    tested = [c for m in entry["experiments"][0]["metrics"] if m["role"] != "guardrail" for c in m["comparisons"]]
    assert len(tested) == 3
    assert all(c["p_value_adjusted"] >= c["p_value"] for c in tested)
    assert min(c["p_value_adjusted"] for c in tested) == pytest.approx(3 * min(c["p_value"] for c in tested))


def test_cli_turns_a_counts_csv_into_report_json(tmp_path, capsys):
    exp = "exp_checkout_button"
    rows = arm_rows(exp, "control", 20000, 2000) + arm_rows(exp, "treatment", 20000, 2400)
    pd.DataFrame(rows).to_csv(tmp_path / "counts.csv", index=False)
    out, html = tmp_path / "report.json", tmp_path / "report.html"
    assert cli.main([str(tmp_path / "counts.csv"), "--date", "2026-11-20", "--experiments", exp,
                     "--out", str(out), "--html", str(html)]) == 0
    report = json.loads(out.read_text())
    Draft202012Validator(SCHEMA).validate(report)
    assert [e["id"] for e in report["experiments"]] == [exp]
    assert "exp_checkout_button:" in capsys.readouterr().out
    assert "<svg" in html.read_text() and "Verdicts" in html.read_text()
    pd.DataFrame(rows).drop(columns="main_sum").to_csv(tmp_path / "bad.csv", index=False)
    assert cli.main([str(tmp_path / "bad.csv"), "--date", "2026-11-20", "--out", str(out)]) == 1
    assert "counts are missing column(s) ['main_sum']" in capsys.readouterr().err


@pytest.mark.filterwarnings("error::RuntimeWarning")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arms=st.lists(st.tuples(st.sampled_from(["control", "treatment", "other"]),
                               st.integers(0, 5000), st.floats(0, 1), st.floats(0, 50)),
                     min_size=0, max_size=4))
@example(arms=[("control", 1, 0.0, 5e-324), ("treatment", 1, 0.0, 0.0)])  # found by a CI run: an overflow warning
@example(arms=[("control", 71, 0.0, 2.3880186632205687e-164)])  # found by a seed: tiny sums refused as impossible
def test_any_counts_give_a_valid_report_and_never_a_meaningless_pvalue(arms):
    """Random arms (empty, tiny, 0% / 100%, unregistered, duplicated variant rows): the report is
    always built, schema-valid, strict JSON, every missing statistic has a reason instead, and no
    arithmetic warns (an overflow or a 0/0 is caught and given its reason, not left to numpy)."""
    rows = []
    for variant, n, rate, mean in arms:
        conversions = float(round(n * rate))
        for row in arm_rows("exp_checkout_button", variant, float(n), conversions, revenue_mean=mean or 1.0):
            rows.append(row)
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=COLUMNS)
    frame = frame.groupby(["experiment_id", "variant", "metric"], as_index=False).sum(numeric_only=True) \
        if rows else frame
    report = report_for(one_experiment(), frame.to_dict("records"))
    entry = report["experiments"][0]
    assert entry["verdict"]["text"]
    assert_no_meaningless_pvalues(entry)
    for c in comparisons(entry):
        if c["status"] == "ok":
            assert 0 <= c["p_value"] <= 1 and c["absolute_ci"][0] <= c["absolute_lift"] <= c["absolute_ci"][1]


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_a_control_mean_that_is_0_to_float_precision_is_reported_as_0_not_as_an_overflow():
    """A continuous primary metric whose control mean is 3e-323: treatment / control overflows and (mde x mean)^2
    underflows. The report says what it says for a mean of exactly 0 (the power view used to fail the job)."""
    raw = one_experiment(primary_metric={"metric": "revenue_per_user", "direction": "increase"},
                         secondary_metrics=[{"metric": "revenue_per_purchase", "direction": "any"}])
    exp = raw["experiments"][0]["id"]

    def relative_figures(control_scale: float) -> tuple:
        control = arm_rows(exp, "control", 500, 50)
        for row in control:
            if row["metric"] == "revenue_per_user":
                row["main_sum"] *= control_scale
                row["main_sum_squares"] *= control_scale**2
        entry = report_for(raw, control + arm_rows(exp, "treatment", 500, 50))["experiments"][0]
        c = next(c for m in entry["metrics"] if m["metric"] == "revenue_per_user" for c in m["comparisons"])
        return (c["status"], c["relative_lift"], c["relative_reason"], c["sequential"], entry["power"]["arms"],
                entry["verdict"]["decision"])

    tiny, zero = relative_figures(1e-323), relative_figures(0.0)
    assert tiny == zero
    assert tiny[2] == "control mean is 0: relative lift undefined" and tiny[3]["status"] == "not_computable"
    assert tiny[4][0]["status"] == "not_computable"


def test_an_srm_check_on_a_handful_of_users_uses_the_exact_binomial_test():
    from scipy import stats as sps

    raw = one_experiment()
    exp = raw["experiments"][0]["id"]
    entry = report_for(raw, arm_rows(exp, "control", 7, 1) + arm_rows(exp, "treatment", 1, 0))["experiments"][0]
    assert entry["srm"]["test"] == "exact_binomial" and entry["srm"]["chi2"] is None
    assert entry["srm"]["p_value"] == pytest.approx(sps.binomtest(7, 8, 0.5).pvalue)
    assert_no_meaningless_pvalues(entry)


def test_relative_lift_has_its_own_delta_method_p_value_and_power_now_is_reported():
    raw = one_experiment()
    exp = raw["experiments"][0]["id"]
    entry = report_for(raw, arm_rows(exp, "control", 20000, 2000) + arm_rows(exp, "treatment", 20000, 2300))
    entry = entry["experiments"][0]
    primary = entry["metrics"][0]["comparisons"][0]
    c, t = 2000 / 20000, 2300 / 20000
    rel_se = np.sqrt(t * (1 - t) / 20000 / c**2 + t**2 * c * (1 - c) / 20000 / c**4)
    from scipy import stats as sps

    assert primary["relative_p_value"] == pytest.approx(sps.norm.sf((t / c - 1) / rel_se), rel=1e-9)
    power = entry["power"]["arms"][0]
    assert 0 < power["power_now"] <= 1 and (power["power_now"] >= 0.8) == power["reached"]


def guarded(margin: float | None, **overrides) -> dict:
    """The checkout experiment (a clear winner on its primary metric) with one guardrail: page views per user."""
    spec = {"metric": "page_views_per_user", "must_not": "decrease"} | ({"margin": margin} if margin else {})
    return one_experiment(**{"start_date": "2026-11-01", "guardrail_metrics": [spec], **overrides})


def with_page_views(exp: str, treatment_mean: float, sd: float = 3.0, n: float = 20000) -> list[dict]:
    """A clear primary winner; page views per user with mean 5 (control) and `treatment_mean`, spread `sd`."""
    rows = arm_rows(exp, "control", n, n / 10) + arm_rows(exp, "treatment", n, n * 0.12)
    for row in rows:
        if row["metric"] == "page_views_per_user":
            mean = 5.0 if row["variant"] == "control" else treatment_mean
            row.update(main_sum=n * mean, main_sum_squares=(n - 1) * sd**2 + n * mean**2)
    return rows


@pytest.mark.parametrize(("margin", "treatment_mean", "sd", "status", "decision"), [
    (0.02, 5.0, 3.0, "within_margin", "launch"),             # no change, measured precisely: shown within 2%
    (0.02, 4.95, 3.0, "within_margin", "launch"),            # a significant -1% drop, but inside the 2% margin
    (None, 4.95, 3.0, "breached", "guardrail_breached"),     # the same drop without a margin is a breach
    (0.02, 4.8, 3.0, "breached", "guardrail_breached"),      # -4%: significantly beyond the margin
    (0.02, 5.0, 30.0, "not_shown", "keep_running"),         # too noisy to show anything: launch must wait
    (None, 5.0, 30.0, "no_harm_detected", "launch"),         # without a margin "no harm found" is enough
])
def test_a_guardrail_with_a_margin_must_be_shown_within_it(margin, treatment_mean, sd, status, decision):
    raw = guarded(margin)
    exp = raw["experiments"][0]["id"]
    entry = report_for(raw, with_page_views(exp, treatment_mean, sd))["experiments"][0]
    guard = next(m for m in entry["metrics"] if m["role"] == "guardrail")
    assert guard["margin"] == margin
    comp = guard["comparisons"][0]
    assert comp["guardrail"]["status"] == status, comp["guardrail"]
    assert comp["guardrail_breached"] == (status == "breached")
    assert entry["verdict"]["decision"] == decision, entry["verdict"]
    if margin:
        assert comp["guardrail"]["bound"] == pytest.approx(margin * 5.0)
        if status == "not_shown":
            assert "until guardrail(s) page_views_per_user (margin 2.0%) are shown" in entry["verdict"]["text"]


def test_an_ended_experiment_whose_guardrail_was_never_shown_within_its_margin_is_not_launched():
    raw = guarded(0.02, start_date="2026-10-01", end_date="2026-10-31")
    exp = raw["experiments"][0]["id"]
    entry = report_for(raw, with_page_views(exp, 5.0, sd=30.0))["experiments"][0]
    assert entry["verdict"]["decision"] == "guardrail_not_shown"
    assert "were not shown to stay within their margin" in entry["verdict"]["text"]


def test_a_margin_guardrail_with_few_users_is_not_computable_and_blocks_a_launch():
    raw = guarded(0.02)
    exp = raw["experiments"][0]["id"]
    rows = with_page_views(exp, 5.0)
    for row in rows:
        if row["metric"] == "page_views_per_user" and row["variant"] == "control":
            row.update(main_sum=0.0, main_sum_squares=0.0)  # control mean 0: a relative margin has no scale
    entry = report_for(raw, rows)["experiments"][0]
    guard = next(m for m in entry["metrics"] if m["role"] == "guardrail")["comparisons"][0]["guardrail"]
    assert guard["status"] == "not_computable" and "control mean is 0" in guard["reason"]
    assert entry["verdict"]["decision"] == "keep_running"


def test_the_growthbook_style_view_is_an_option_with_its_own_prior():
    raw = one_experiment()
    exp = raw["experiments"][0]["id"]
    rows = arm_rows(exp, "control", 4000, 400) + arm_rows(exp, "treatment", 4000, 440)
    assert "gaussian_effect" not in report_for(raw, rows)["experiments"][0]["bayesian"]
    raw["defaults"] |= {"gaussian_view": True, "effect_prior": {"mean": 0.0, "sd": 0.3}}
    view = report_for(raw, rows)["experiments"][0]["bayesian"]["gaussian_effect"]
    reference = stats.gaussian_effect(stats.proportion_arm(4000, 400), stats.proportion_arm(4000, 440), True,
                                      0.0, 0.3)
    arm = view["arms"][0]
    assert view["prior_on_relative_lift"] == {"family": "normal", "mean": 0.0, "sd": 0.3}
    assert (arm["prob_beats_control"], arm["relative_lift"]) == pytest.approx(
        (reference.prob_beats_control, reference.mean), rel=1e-12)
    assert arm["risk_relative"]["choose_treatment"] == pytest.approx(reference.risk_treatment, rel=1e-12)
    assert arm["relative_lift"] < 0.1  # the prior pulls the observed +10% towards 0
    for bad, error in (({"effect_prior": {"mean": 0, "sd": -1}}, "effect_prior.sd must be a positive number"),
                       ({"effect_prior": {"mu": 0}}, "effect_prior must be a mapping"),
                       ({"gaussian_view": "yes"}, "gaussian_view must be true or false")):
        broken = copy.deepcopy(raw)
        broken["defaults"] |= bad
        with pytest.raises(registry.RegistryError, match=re.escape(error)):
            registry.parse(broken)
