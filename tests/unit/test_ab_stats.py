"""The statistics against the textbook example and against statsmodels/scipy on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special
from scipy import stats as sps
from statsmodels.regression.linear_model import OLS
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportions_ztest

from jobs.ab import stats


def test_textbook_two_proportion_example():
    """Control 7% of 1,062, treatment 8% of 982: pooled 7.48%, z = 0.859, one-sided p = 0.195."""
    control, treatment = stats.proportion_arm(1062, 0.07 * 1062), stats.proportion_arm(982, 0.08 * 982)
    pooled = (0.07 * 1062 + 0.08 * 982) / (1062 + 982)
    assert pooled == pytest.approx(0.0748, abs=5e-5)
    z, p = stats.two_proportion_ztest(control, treatment, "larger")
    assert float(z) == pytest.approx(0.859, abs=5e-4)
    assert float(p) == pytest.approx(0.195, abs=5e-4)
    z10, p10 = stats.two_proportion_ztest(stats.proportion_arm(10620, 0.07 * 10620),
                                          stats.proportion_arm(9820, 0.08 * 9820), "larger")
    assert float(p10) == pytest.approx(0.0033, abs=5e-5)


@pytest.mark.parametrize("alternative", ["two-sided", "larger", "smaller"])
def test_proportion_ztest_matches_statsmodels(alternative):
    control, treatment = stats.proportion_arm(5000, 510), stats.proportion_arm(4900, 560)
    z, p = stats.two_proportion_ztest(control, treatment, alternative)
    sm_z, sm_p = proportions_ztest([560, 510], [4900, 5000], alternative=alternative)
    assert float(z) == pytest.approx(sm_z, rel=1e-9) and float(p) == pytest.approx(sm_p, rel=1e-9)


@pytest.mark.parametrize("alternative", ["two-sided", "larger", "smaller"])
def test_welch_matches_scipy_on_raw_data(alternative):
    rng = np.random.default_rng(3)
    a, b = rng.exponential(10, 800), rng.exponential(11, 650)
    t, df, p = stats.welch_ttest(stats.mean_arm(len(a), a.sum(), (a * a).sum()),
                                 stats.mean_arm(len(b), b.sum(), (b * b).sum()), alternative)
    scipy_alt = {"two-sided": "two-sided", "larger": "greater", "smaller": "less"}[alternative]
    ref = sps.ttest_ind(b, a, equal_var=False, alternative=scipy_alt)
    assert float(t) == pytest.approx(ref.statistic, rel=1e-9)
    assert float(p) == pytest.approx(ref.pvalue, rel=1e-8)
    assert float(df) == pytest.approx(ref.df, rel=1e-9)


def test_absolute_ci_matches_scipy_welch_interval():
    rng = np.random.default_rng(4)
    a, b = rng.normal(5, 2, 300), rng.normal(5.4, 3, 280)
    arm_a, arm_b = stats.mean_arm(len(a), a.sum(), (a * a).sum()), stats.mean_arm(len(b), b.sum(), (b * b).sum())
    _, df, _ = stats.welch_ttest(arm_a, arm_b, "two-sided")
    lifted = stats.lift(arm_a, arm_b, 0.05, "two-sided", df)
    ref = sps.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert float(lifted.absolute_ci[0]) == pytest.approx(ref.low, rel=1e-8)
    assert float(lifted.absolute_ci[1]) == pytest.approx(ref.high, rel=1e-8)


def test_relative_lift_delta_method_covers_the_truth():
    """Simulated: the delta-method 95% interval for t/c - 1 covers the true lift ~95% of the time."""
    rng = np.random.default_rng(5)
    n, p_c, p_t = 4000, 0.10, 0.11
    conv_c, conv_t = rng.binomial(n, p_c, 4000), rng.binomial(n, p_t, 4000)
    lifted = stats.lift(stats.proportion_arm(n, conv_c), stats.proportion_arm(n, conv_t), 0.05, "two-sided")
    covered = (lifted.relative_ci[0] <= p_t / p_c - 1) & (p_t / p_c - 1 <= lifted.relative_ci[1])
    assert 0.93 < covered.mean() < 0.97


def test_ratio_delta_method_variance_matches_simulation():
    rng = np.random.default_rng(6)
    n, reps = 2000, 3000
    views = rng.poisson(5, (reps, n)) + 1
    clicks = rng.binomial(views, 0.3)
    arms = stats.ratio_arm(n, clicks.sum(1), (clicks**2).sum(1), views.sum(1), (views**2).sum(1),
                           (clicks * views).sum(1))
    empirical = (clicks.sum(1) / views.sum(1)).var()
    assert np.median(arms.var_of_mean) == pytest.approx(empirical, rel=0.1)


def test_srm_matches_scipy_chisquare():
    chi2, p = stats.srm_chisquare(np.array([5000, 4600]), np.array([0.5, 0.5]))
    ref = sps.chisquare([5000, 4600], [4800, 4800])
    assert chi2 == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    assert p < 0.001


def test_sample_size_matches_statsmodels_power():
    """Equal variances: n = (z_a + z_b)^2 2 s^2 / d^2, which NormalIndPower solves from d / s."""
    sigma, delta = 4.0, 0.5
    for alternative in ("two-sided", "larger"):
        n = stats.required_n_per_arm(sigma**2, sigma**2, delta, 0.05, 0.8, alternative)
        ref = NormalIndPower().solve_power(effect_size=delta / sigma, alpha=0.05, power=0.8, ratio=1.0,
                                           alternative=alternative)
        assert float(n) == np.ceil(ref) or float(n) == pytest.approx(ref, abs=1.0)
    mde = stats.minimum_detectable_effect(stats.Arm(np.float64(1000), np.float64(0), np.float64(sigma**2)),
                                          stats.Arm(np.float64(1000), np.float64(0), np.float64(sigma**2)),
                                          0.05, 0.8, "two-sided")
    power = NormalIndPower().power(effect_size=float(mde) / sigma, nobs1=1000, alpha=0.05, ratio=1.0)
    assert power == pytest.approx(0.8, abs=1e-3)


def test_cuped_agrees_with_ancova_and_reduces_variance():
    rng = np.random.default_rng(7)
    n = 5000
    x = rng.gamma(2, 5, 2 * n)
    treat = np.repeat([0, 1], n)
    y = 0.8 * x + rng.normal(0, 4, 2 * n) + 0.5 * treat
    c, t = slice(0, n), slice(n, 2 * n)

    def sums(s: slice) -> list[float]:
        return [n, y[s].sum(), (y[s] ** 2).sum(), x[s].sum(), (x[s] ** 2).sum(), (x[s] * y[s]).sum()]

    adj = stats.cuped(*sums(c), *sums(t))
    ancova = OLS(y, np.column_stack([np.ones(2 * n), treat, x])).fit()
    assert float(adj.treatment.mean - adj.control.mean) == pytest.approx(ancova.params[1], abs=0.02)
    corr2 = np.corrcoef(x, y)[0, 1] ** 2
    assert float(adj.variance_reduction) == pytest.approx(corr2, abs=0.03)
    assert float(adj.theta) == pytest.approx(0.8, abs=0.03)


def test_always_valid_pvalues_keep_the_error_rate_when_peeking_daily():
    """A/A tests read 30 times: peeking at the fixed-horizon p inflates false positives, mSPRT does not."""
    rng = np.random.default_rng(8)
    sims, looks, per_look = 2000, 30, 200
    a = rng.normal(0, 1, (sims, looks, per_look)).sum(axis=2).cumsum(axis=1)
    b = rng.normal(0, 1, (sims, looks, per_look)).sum(axis=2).cumsum(axis=1)
    n = per_look * np.arange(1, looks + 1)
    diff, var = (b - a) / n, 2.0 / n
    naive = 2 * sps.norm.sf(np.abs(diff) / np.sqrt(var))
    seq = stats.msprt(diff, var, 0.1**2, 0.05)
    naive_fpr = (naive.min(axis=1) < 0.05).mean()
    seq_fpr = (seq.p_value.min(axis=1) < 0.05).mean()
    assert naive_fpr > 0.15 and seq_fpr <= 0.05
    covered = ((seq.ci[0] <= 0) & (0 <= seq.ci[1])).all(axis=1).mean()
    assert covered >= 0.95
    # the confidence sequence is wider than the fixed-horizon interval at every look
    assert (seq.ci[1] - seq.ci[0] > 2 * 1.96 * np.sqrt(var)).all()


def test_holm_and_bh_match_statsmodels_and_keep_nan():
    p = np.array([0.01, np.nan, 0.04, 0.03, 0.2])
    holm = stats.adjust_pvalues(p, "holm")
    assert np.isnan(holm[1])
    np.testing.assert_allclose(holm[[0, 2, 3, 4]], multipletests(p[[0, 2, 3, 4]], method="holm")[1])
    np.testing.assert_allclose(stats.adjust_pvalues(p, "bh")[[0, 2, 3, 4]],
                               multipletests(p[[0, 2, 3, 4]], method="fdr_bh")[1])
    rng = np.random.default_rng(9)
    many, groups = rng.uniform(0, 0.2, 60), np.repeat(["a", "b", "c"], 20)
    for method, sm in (("holm", "holm"), ("bh", "fdr_bh")):
        together = stats.adjust_pvalues(many, method, groups)
        for g in "abc":
            np.testing.assert_allclose(together[groups == g], multipletests(many[groups == g], method=sm)[1])


def test_beta_binomial_prob_to_beat_matches_the_closed_form():
    """P(B > A) for Beta posteriors (Evan Miller's exact sum) vs the Monte Carlo estimate."""
    a_conv, a_n, b_conv, b_n = 120, 1000, 145, 1000
    alpha_a, beta_a, alpha_b, beta_b = 1 + a_conv, 1 + a_n - a_conv, 1 + b_conv, 1 + b_n - b_conv
    i = np.arange(alpha_b)
    exact = np.sum(np.exp(special.betaln(alpha_a + i, beta_a + beta_b) - np.log(beta_b + i)
                          - special.betaln(1 + i, beta_b) - special.betaln(alpha_a, beta_a)))
    post = stats.posterior([stats.proportion_arm(a_n, a_conv), stats.proportion_arm(b_n, b_conv)], True, True,
                           1.0, 1.0, 200_000, seed=1)
    assert post.prob_beats_control[1] == pytest.approx(exact, abs=0.005)
    assert post.prob_best.sum() == pytest.approx(1.0)
    assert post.expected_loss[1] < post.expected_loss[0]


def test_weighted_trend_matches_statsmodels_wls():
    from statsmodels.regression.linear_model import WLS

    x = np.arange(8, dtype=float)
    y = 0.2 - 0.02 * x + np.array([0.01, -0.01, 0.0, 0.02, -0.02, 0.01, 0.0, -0.01])
    var = np.linspace(0.0004, 0.0009, 8)
    trend = stats.weighted_trend(x, y, var)
    ref = WLS(y, np.column_stack([np.ones(8), x]), weights=1 / var).fit()
    assert trend.slope == pytest.approx(ref.params[1])
    # known variances: the slope's SE is sqrt(1 / sum w (x - xbar)^2), not rescaled by the residuals
    assert trend.slope_se == pytest.approx(ref.bse[1] / np.sqrt(ref.scale))
