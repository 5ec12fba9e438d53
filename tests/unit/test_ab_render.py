"""report.html as a reader meets it: numbers formatted, p-values one token, SRM results behind "show anyway",
charts only where they say something."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from jobs.ab import analysis, outputs, registry, render
from tests.unit.test_ab_report import DAY, arm_rows


@pytest.mark.parametrize(("value", "shown"), [
    (20000, "20,000"), (45500, "45,500"), (0.1234567, "0.1235"), (1.5e-6, "1.500 × 10⁻⁶"), (-0.0421, "-0.04210"),
])
def test_values_have_separators_and_significant_digits_not_exponents(value, shown):
    assert render.significant(value) == shown


@pytest.mark.parametrize(("value", "shown"), [(0.0412, "0.0412"), (6.41e-7, "6.4 × 10⁻⁷"), (0.0, "< 10⁻³⁰⁰")])
def test_p_values_stay_one_token(value, shown):
    assert render.p_value(value) == shown


@pytest.mark.parametrize(("value", "shown"), [(0.99996, "> 99.9%"), (0.627, "62.7%"), (0.0002, "< 0.1%")])
def test_probabilities_are_never_rounded_to_certainty(value, shown):
    assert render.probability(value) == shown


@pytest.mark.parametrize(("count", "at_most", "shown"), [
    (5, 8, [0, 1, 2, 3, 4]), (8, 8, list(range(8))), (9, 8, [0, 2, 4, 6, 8]), (31, 8, [0, 4, 8, 12, 16, 20, 24, 28]),
    (1, 10, [0]), (0, 10, []),
])
def test_axis_labels_are_thinned_to_at_most_the_limit_from_the_first(count, at_most, shown):
    assert render.thinned(range(count), at_most) == shown
    assert render.thinned(list(range(count)), at_most) == shown


def report(srm: bool = False) -> dict:
    treatment = (25_500, 2_600) if srm else (30_000, 3_600)
    rows = arm_rows("exp_checkout_button", "control", 30_000, 3_000) + arm_rows(
        "exp_checkout_button", "treatment", *treatment)
    return analysis.build_report(pd.DataFrame(rows), registry.load(), DAY, ["exp_checkout_button"])


def test_a_report_reads_at_a_glance():
    built = report()
    html = render.report_html(built, outputs.history_rows(built))
    assert "30,000" in html and not re.search(r"\d(\.\d+)?e[+-]\d", html.split("<svg")[0])  # no 3e+04, no 6.4e-07
    assert "exp_checkout_button <small>· launch" in html and "(running)" not in html  # the status is the verdict
    assert "The cumulative-lift chart starts with the second night" in html  # one night: a sentence, no one-dot chart
    assert "<details>" not in html


def test_an_srm_experiment_shows_the_diagnosis_and_hides_effect_sizes_behind_show_anyway():
    built = report(srm=True)
    html = render.report_html(built, outputs.history_rows(built))
    section = html.split('<h2 id="exp_checkout_button">')[1]
    before, hidden = section.split("<details>", 1)
    assert "Sample ratio" in before and "flagged" in before and "Do not read these results" in before
    assert "relative lift" not in before and "P(beats control)" not in before
    assert "Show the effect sizes anyway" in hidden and "relative lift" in hidden


@pytest.mark.parametrize(("value", "shown"), [
    (0.0557, "5.57%"), (2.0e-5, "0.002%"), (0.0, "0.00%"), (3e-9, "3 × 10⁻⁷%"),
])
def test_losses_and_risks_are_unsigned_shares_that_never_round_to_zero(value, shown):
    assert render._fmt(value, "share") == shown


def test_guardrail_verdicts_and_the_growthbook_view_are_shown():
    reg = registry.load()
    settings = registry.Settings(**{**reg.settings.__dict__, "gaussian_view": True})
    exp = next(e for e in reg.experiments if e.id == "exp_checkout_button")
    guard = exp.metrics[-2]
    exp.metrics[-2] = registry.MetricUse(guard.metric, guard.role, guard.direction, margin=0.02)
    rows = arm_rows(exp.id, "control", 30_000, 3_000) + arm_rows(exp.id, "treatment", 30_000, 3_600)
    built = analysis.build_report(pd.DataFrame(rows), registry.Registry(settings, reg.metrics, [exp]), DAY)
    html = render.report_html(built, outputs.history_rows(built))
    row = next(r for r in html.split("<tr>") if r.startswith(f"<td>{guard.metric.name}</td>"))
    assert re.search(r"guardrail (✓ within|· not yet shown within) 2% \(p [0-9.]+\)", row), row
    assert "GrowthBook's model, a different one" in html and "risk if launched" in html
    assert "+0.00%" not in html  # losses are unsigned
