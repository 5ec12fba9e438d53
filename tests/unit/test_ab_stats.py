"""The statistics against the textbook example and against statsmodels/scipy on the same inputs."""

from __future__ import annotations

import warnings

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


@pytest.mark.parametrize("alternative", ["two-sided", "larger"])
@pytest.mark.parametrize(("n_c", "n_t", "delta"), [(1000, 1000, 0.3), (800, 1300, 0.5), (50, 60, 1.0)])
def test_power_at_the_current_sample_matches_statsmodels(alternative, n_c, n_t, delta):
    sigma = 4.0
    arm_c = stats.Arm(np.float64(n_c), np.float64(0), np.float64(sigma**2))
    arm_t = stats.Arm(np.float64(n_t), np.float64(0), np.float64(sigma**2))
    ref = NormalIndPower().power(effect_size=delta / sigma, nobs1=n_c, alpha=0.05, ratio=n_t / n_c,
                                 alternative=alternative)
    assert float(stats.power_at(arm_c, arm_t, delta, 0.05, alternative)) == pytest.approx(ref, abs=1e-9)


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


def test_holm_bonferroni_and_bh_match_statsmodels_and_keep_nan():
    p = np.array([0.01, np.nan, 0.04, 0.03, 0.2])
    holm = stats.adjust_pvalues(p, "holm")
    assert np.isnan(holm[1])
    np.testing.assert_allclose(holm[[0, 2, 3, 4]], multipletests(p[[0, 2, 3, 4]], method="holm")[1])
    np.testing.assert_allclose(stats.adjust_pvalues(p, "bh")[[0, 2, 3, 4]],
                               multipletests(p[[0, 2, 3, 4]], method="fdr_bh")[1])
    rng = np.random.default_rng(9)
    many, groups = rng.uniform(0, 0.2, 60), np.repeat(["a", "b", "c"], 20)
    for method, sm in (("holm", "holm"), ("bonferroni", "bonferroni"), ("bh", "fdr_bh")):
        together = stats.adjust_pvalues(many, method, groups)
        for g in "abc":
            np.testing.assert_allclose(together[groups == g], multipletests(many[groups == g], method=sm)[1])


def miller(alpha_a: float, beta_a: float, alpha_b: float, beta_b: float) -> float:
    """P(X_B > X_A) for independent Beta posteriors, Evan Miller's exact sum (integer alpha_b)."""
    i = np.arange(int(alpha_b))
    return float(np.sum(np.exp(special.betaln(alpha_a + i, beta_a + beta_b) - np.log(beta_b + i)
                               - special.betaln(1 + i, beta_b) - special.betaln(alpha_a, beta_a))))


def beta_posterior(arms: list[tuple[int, int]], higher_is_better: bool = True) -> stats.Posterior:
    return stats.posterior([stats.proportion_arm(n, c) for c, n in arms], True, higher_is_better, 1.0, 1.0)


@pytest.mark.parametrize(("control", "treatment"), [
    ((120, 1000), (145, 1000)),
    ((7200, 90_000), (840, 10_000)),  # a 90/10 split: GrowthBook's legacy 24-node rule is 15 % off here
    ((3, 20), (9, 25)),
    ((0, 100), (1, 100)),
    ((40_000, 200_000), (40_300, 200_000)),
])
def test_beta_posterior_is_exact_against_the_closed_forms(control, treatment):
    """P(B > A) against Evan Miller's sum; the expected loss of each arm against Chris Stucchio's closed form
    E[max(A - B, 0)] = mean_A P(A+ > B) - mean_B P(A > B+) (A+ = Beta(alpha_A + 1, beta_A)); to 1e-9."""
    (ca, na), (cb, nb) = control, treatment
    a_a, b_a, a_b, b_b = 1 + ca, 1 + na - ca, 1 + cb, 1 + nb - cb
    post = beta_posterior([control, treatment])
    beats = miller(a_a, b_a, a_b, b_b)
    assert post.prob_beats_control[1] == pytest.approx(beats, abs=1e-9)
    assert post.prob_best == pytest.approx([1 - beats, beats], abs=1e-9)
    mean_a, mean_b = a_a / (a_a + b_a), a_b / (a_b + b_b)
    loss_b = mean_a * miller(a_b, b_b, a_a + 1, b_a) - mean_b * miller(a_b + 1, b_b, a_a, b_a)
    loss_a = mean_b * miller(a_a, b_a, a_b + 1, b_b) - mean_a * miller(a_a + 1, b_a, a_b, b_b)
    assert post.expected_loss == pytest.approx([loss_a, loss_b], abs=1e-9)
    assert post.mean == pytest.approx([mean_a, mean_b], abs=1e-12)
    assert post.interval_95[0] == pytest.approx(special.betaincinv([a_a, a_b], [b_a, b_b], 0.025), abs=1e-12)


def test_three_arms_prob_best_and_loss_match_high_precision_integration():
    """Several arms have no closed form: the reference integrates with mpmath at 30 digits."""
    import mpmath

    arms = [(40, 400), (52, 410), (47, 390)]
    mpmath.mp.dps = 30
    params = [(1 + c, 1 + n - c) for c, n in arms]

    def pdf(x, a, b):
        return x ** (a - 1) * (1 - x) ** (b - 1) / mpmath.beta(a, b)

    def cdf(x, a, b):
        return mpmath.betainc(a, b, 0, x, regularized=True)

    def best(i):
        rest = [p for j, p in enumerate(params) if j != i]
        return mpmath.quad(lambda x: pdf(x, *params[i]) * mpmath.fprod(cdf(x, *p) for p in rest), [0, 0.08, 0.12, 1])

    def loss(i):
        return mpmath.quad(lambda x: cdf(x, *params[i]) - mpmath.fprod(cdf(x, *p) for p in params), [0, 0.08, 0.12, 1])

    post = beta_posterior(arms)
    assert post.prob_best == pytest.approx([float(best(i)) for i in range(3)], abs=1e-9)
    assert post.expected_loss == pytest.approx([float(loss(i)) for i in range(3)], abs=1e-9)
    assert post.prob_beats_control[1:] == pytest.approx(
        [miller(*params[0], *params[i]) for i in (1, 2)], abs=1e-9)


def test_normal_posterior_matches_the_closed_forms_and_lower_is_better_mirrors():
    control, treatment = stats.Arm(np.float64(5000), np.float64(3.10), np.float64(9.0)), \
        stats.Arm(np.float64(5200), np.float64(3.22), np.float64(9.8))
    post = stats.posterior([control, treatment], False, True, 1.0, 1.0)
    d, s = 3.22 - 3.10, np.sqrt(9.0 / 5000 + 9.8 / 5200)
    assert post.prob_beats_control[1] == pytest.approx(sps.norm.cdf(d / s), abs=1e-9)
    assert post.expected_loss[0] == pytest.approx(d * sps.norm.cdf(d / s) + s * sps.norm.pdf(d / s), abs=1e-9)
    lower = stats.posterior([control, treatment], False, False, 1.0, 1.0)
    assert lower.prob_beats_control[1] == pytest.approx(1 - post.prob_beats_control[1], abs=1e-9)
    mirrored = beta_posterior([(880, 1000), (855, 1000)])  # lower conversion is better == higher non-conversion
    assert beta_posterior([(120, 1000), (145, 1000)], higher_is_better=False).prob_best == pytest.approx(
        mirrored.prob_best, abs=1e-9)


def test_posterior_is_deterministic_and_the_value_remaining_is_its_quantile():
    """Same counts, same numbers to the last bit; P(regret <= value_remaining_p95) = 0.95 by Monte Carlo."""
    arms = [(400, 5000), (452, 5000), (431, 5000)]
    first, second = beta_posterior(arms), beta_posterior(arms)
    assert first.prob_best.tolist() == second.prob_best.tolist()
    assert first.value_remaining_p95 == second.value_remaining_p95 > 0
    rng = np.random.default_rng(7)
    draws = np.stack([rng.beta(1 + c, 1 + n - c, 400_000) for c, n in arms])
    leader = int(first.prob_best.argmax())
    regret = (draws.max(axis=0) - draws[leader]) / draws[leader]
    assert np.mean(regret <= first.value_remaining_p95) == pytest.approx(0.95, abs=0.002)


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


def test_exact_srm_tests_for_counts_too_small_for_chi_square():
    """Two arms: scipy's binomial test. Three arms, by hand: 2 users over 3 equal arms, both in one arm has
    probability 1/9 and so do the two other such allocations; (1, 1, 0)-type allocations have 2/9 each."""
    assert stats.srm_exact(np.array([1, 9]), np.array([0.5, 0.5])) == pytest.approx(
        sps.binomtest(1, 10, 0.5).pvalue)
    third = np.full(3, 1 / 3)
    assert stats.srm_exact(np.array([2, 0, 0]), third) == pytest.approx(1 / 3)
    assert stats.srm_exact(np.array([1, 1, 0]), third) == pytest.approx(1.0)
    assert stats.srm_exact(np.array([0, 0, 12]), third) == pytest.approx(3 / 3**12)
    assert stats.srm_exact(np.array([300, 300, 300, 300]), np.full(4, 0.25)) is None  # too many to enumerate


def test_guardrail_margin_tests_match_statsmodels_non_inferiority_and_tost():
    from statsmodels.stats.proportion import test_proportions_2indep
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    rng = np.random.default_rng(3)
    control, treatment = rng.exponential(3.0, 400), rng.exponential(2.9, 500)
    c = stats.mean_arm(len(control), control.sum(), (control**2).sum())
    t = stats.mean_arm(len(treatment), treatment.sum(), (treatment**2).sum())
    bound = 0.05 * float(c.mean)
    se, df = np.sqrt(c.var_of_mean + t.var_of_mean), stats.welch_df(c, t)
    compare = CompareMeans(DescrStatsW(treatment), DescrStatsW(control))
    for harm, (alternative, value) in {"decrease": ("larger", -bound), "increase": ("smaller", bound)}.items():
        tests = stats.margin_tests(t.mean - c.mean, se, bound, harm, df)
        within = compare.ttest_ind(alternative=alternative, usevar="unequal", value=value)[1]
        beyond = compare.ttest_ind(alternative="smaller" if alternative == "larger" else "larger",
                                   usevar="unequal", value=value)[1]
        assert (float(tests.p_within), float(tests.p_beyond)) == pytest.approx((within, beyond), rel=1e-9)
    equivalence = stats.margin_tests(t.mean - c.mean, se, bound, "change", df)
    assert float(equivalence.p_within) == pytest.approx(compare.ttost_ind(-bound, bound, usevar="unequal")[0],
                                                       rel=1e-9)
    # proportions: the Wald (unpooled) test against a shifted null, as statsmodels' test_proportions_2indep
    pc, pt = stats.proportion_arm(4000, 1200), stats.proportion_arm(4100, 1190)
    tests = stats.margin_tests(pt.mean - pc.mean, np.sqrt(pc.var_of_mean + pt.var_of_mean), 0.03 * 0.3, "decrease")
    reference = test_proportions_2indep(1190, 4100, 1200, 4000, value=-0.03 * 0.3, method="wald", compare="diff",
                                        alternative="larger")
    assert float(tests.p_within) == pytest.approx(reference.pvalue, rel=1e-9)


@pytest.mark.parametrize(("control", "treatment", "prior", "expected"), [
    # gbstats' own tests (packages/stats/tests/bayesian/test_tests.py, EffectBayesianABTest, relative lift):
    # mean, sd, chance to win, risk [keep control, launch]
    (stats.proportion_arm(100, 49), stats.proportion_arm(100, 51), None, (0.04082, 0.14725, 0.60918, 0.0814, 0.04058)),
    (stats.mean_arm(10, 100, 1002.25), stats.mean_arm(10, 105, 1111.5), None,
     (0.05, 0.03572, 0.91923, 0.05131, 0.00131)),
    (stats.mean_arm(10, 100, 1002.25), stats.mean_arm(10, 105, 1111.5), (0.1, 0.1**0.5),
     (0.05063, 0.03549, 0.92315, 0.05186, 0.00123)),
])
def test_gaussian_effect_view_matches_growthbooks_published_results(control, treatment, prior, expected):
    mean, sd = prior or (0.0, None)
    post = stats.gaussian_effect(control, treatment, True, mean, sd)
    got = (post.mean, post.sd, post.prob_beats_control, post.risk_control, post.risk_treatment)
    assert np.round(got, 5) == pytest.approx(expected, abs=1e-12)
    mirrored = stats.gaussian_effect(control, treatment, False, mean, sd)  # lower is better: the same lift, flipped
    assert mirrored.prob_beats_control == pytest.approx(1 - post.prob_beats_control)
    assert (mirrored.risk_treatment, mirrored.risk_control) == pytest.approx((post.risk_control, post.risk_treatment))


def test_a_quotient_that_overflows_is_undefined_like_a_division_by_zero_and_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(stats.divide(1.0, 5e-324)) and np.isnan(stats.divide(1.0, 0.0))
        assert np.isnan(stats.divide(np.array([1e300]), np.array([1e-10])))[0]
        assert stats.divide(3.0, 1e-300) == pytest.approx(3e300) and stats.divide(-1.0, 2.0) == -0.5
    assert stats.is_zero_scale([0.0, -1e-160, 5e-324]).all() and not stats.is_zero_scale([1e-150, np.nan]).any()
