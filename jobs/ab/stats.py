"""A/B statistics on per-arm sufficient statistics, vectorised with numpy/scipy (no Spark).

Every function takes numpy arrays (or scalars) that broadcast, so one call evaluates all
experiments x metrics x arms at once. Inputs are sums over users, the format warehouses
produce: `n`, `main_sum`, `main_sum_squares`; for ratio metrics also the denominator sums and
the cross product; for CUPED the pre-exposure covariate sums and cross product. Conventions
(pooled vs unpooled SE, sidedness, CI levels, priors) are documented in docs/AB_REPORTS.md;
results that are not defined come back as NaN and the caller says why.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special
from scipy import stats as sps

ArrayLike = np.ndarray | float


def divide(num: ArrayLike, den: ArrayLike) -> np.ndarray:
    """num / den with NaN (not inf, not a warning) where den is 0 or NaN, or so near 0 that a finite num over it
    overflows (a control mean of 5e-324 is as undefined a base for a relative lift as 0)."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = num / den
    return np.where((den == 0) | np.isnan(den) | (np.isinf(out) & np.isfinite(num)), np.nan, out)


#: |control mean| below which relative figures have no scale in doubles: treatment / control overflows and
#: (mde x control mean)^2 underflows to 0 (the square root of the smallest normal double, ~1.5e-154).
NO_RELATIVE_SCALE = float(np.sqrt(np.finfo(float).tiny))


def is_zero_scale(mean: ArrayLike) -> np.ndarray:
    """Whether a control mean is 0 for every relative figure: the lift, the MDE, the sequential mixing scale."""
    return np.abs(np.asarray(mean, float)) < NO_RELATIVE_SCALE


@dataclass(frozen=True)
class Arm:
    """Mean and per-user variance of an arm's metric: Var(mean) = variance / n."""

    n: np.ndarray
    mean: np.ndarray
    variance: np.ndarray

    @property
    def var_of_mean(self) -> np.ndarray:
        return divide(self.variance, self.n)


def sample_variance(n: ArrayLike, total: ArrayLike, total_squares: ArrayLike) -> np.ndarray:
    """Unbiased variance from n, sum and sum of squares (clipped at 0 against rounding)."""
    n = np.asarray(n, float)
    return np.maximum(divide(np.asarray(total_squares, float) - divide(np.square(total), n), n - 1), 0.0)


def sample_covariance(n: ArrayLike, sum_x: ArrayLike, sum_y: ArrayLike, sum_xy: ArrayLike) -> np.ndarray:
    n = np.asarray(n, float)
    return divide(np.asarray(sum_xy, float) - divide(np.asarray(sum_x, float) * np.asarray(sum_y, float), n), n - 1)


def proportion_arm(n: ArrayLike, conversions: ArrayLike) -> Arm:
    """Bernoulli arm: variance p(1-p), the textbook form used by the z-test."""
    n = np.asarray(n, float)
    p = divide(conversions, n)
    return Arm(n, p, p * (1 - p))


def mean_arm(n: ArrayLike, main_sum: ArrayLike, main_sum_squares: ArrayLike) -> Arm:
    n = np.asarray(n, float)
    return Arm(n, divide(main_sum, n), sample_variance(n, main_sum, main_sum_squares))


def ratio_arm(n: ArrayLike, main_sum: ArrayLike, main_sum_squares: ArrayLike, denominator_sum: ArrayLike,
              denominator_sum_squares: ArrayLike, main_denominator_sum_product: ArrayLike) -> Arm:
    """Ratio of sums (e.g. clicks per page view) with its delta-method variance.

    Var(R) ~= (s_y^2 - 2 R s_yd + R^2 s_d^2) / (n mean_d^2)  (Deng et al., 2018, eq. 3).
    """
    n = np.asarray(n, float)
    ratio = divide(main_sum, denominator_sum)
    mean_d = divide(denominator_sum, n)
    var_y = sample_variance(n, main_sum, main_sum_squares)
    var_d = sample_variance(n, denominator_sum, denominator_sum_squares)
    cov = sample_covariance(n, main_sum, denominator_sum, main_denominator_sum_product)
    unit_var = divide(var_y - 2 * ratio * cov + ratio**2 * var_d, mean_d**2)
    return Arm(n, ratio, np.maximum(unit_var, 0.0))


def p_value(statistic: ArrayLike, alternative: np.ndarray | str, df: ArrayLike | None = None) -> np.ndarray:
    """p-value of a z (df None) or t statistic for the alternative treatment-vs-control."""
    dist = sps.norm() if df is None else sps.t(np.asarray(df, float))
    statistic = np.asarray(statistic, float)
    alternative = np.broadcast_to(np.asarray(alternative), statistic.shape)
    return np.select(
        [alternative == "larger", alternative == "smaller"],
        [dist.sf(statistic), dist.cdf(statistic)],
        default=2 * dist.sf(np.abs(statistic)),
    )


def critical_value(alpha: ArrayLike, alternative: np.ndarray | str, df: ArrayLike | None = None) -> np.ndarray:
    """Quantile for a test at level alpha: 1 - alpha one-sided, 1 - alpha/2 two-sided."""
    alpha = np.asarray(alpha, float)
    two_sided = np.asarray(alternative) == "two-sided"
    q = 1 - np.where(two_sided, alpha / 2, alpha)
    return sps.norm.ppf(q) if df is None else sps.t.ppf(q, np.asarray(df, float))


def two_proportion_ztest(control: Arm, treatment: Arm, alternative: np.ndarray | str) -> tuple[np.ndarray, np.ndarray]:
    """z statistic and p-value with the pooled standard error (the textbook test under H0: p_t = p_c)."""
    pooled = divide(control.mean * control.n + treatment.mean * treatment.n, control.n + treatment.n)
    se = np.sqrt(pooled * (1 - pooled) * (divide(1, control.n) + divide(1, treatment.n)))
    z = divide(treatment.mean - control.mean, se)
    return z, p_value(z, alternative)


def welch_df(control: Arm, treatment: Arm) -> np.ndarray:
    """Welch-Satterthwaite degrees of freedom."""
    vc, vt = control.var_of_mean, treatment.var_of_mean
    return divide((vc + vt) ** 2, divide(vc**2, control.n - 1) + divide(vt**2, treatment.n - 1))


def welch_ttest(control: Arm, treatment: Arm,
                alternative: np.ndarray | str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Welch's t statistic, degrees of freedom and p-value (unequal variances)."""
    se = np.sqrt(control.var_of_mean + treatment.var_of_mean)
    t = divide(treatment.mean - control.mean, se)
    df = welch_df(control, treatment)
    return t, df, p_value(t, alternative, df)


def unpooled_ztest(control: Arm, treatment: Arm, alternative: np.ndarray | str) -> tuple[np.ndarray, np.ndarray]:
    """z test with the unpooled SE (ratio metrics, CUPED-adjusted means)."""
    z = divide(treatment.mean - control.mean, np.sqrt(control.var_of_mean + treatment.var_of_mean))
    return z, p_value(z, alternative)


@dataclass(frozen=True)
class Margin:
    """A guardrail's tests against its non-inferiority margin (two p-values per comparison)."""

    p_within: np.ndarray  # H1: the harm is smaller than the margin (non-inferiority; equivalence for `change`)
    p_beyond: np.ndarray  # H1: the harm is larger than the margin


def margin_tests(diff: ArrayLike, se: ArrayLike, bound: ArrayLike, harm: np.ndarray | str,
                 df: ArrayLike | None = None) -> Margin:
    """Non-inferiority test of treatment - control against an absolute margin `bound` (> 0) on the harmful side.

    `harm` decrease: H0 diff <= -bound vs H1 diff > -bound; increase: H0 diff >= bound vs H1 diff < bound;
    change: both (two one-sided tests, TOST: p = the larger). The same statistic the other way gives
    `p_beyond` (harm beyond the margin; for `change` two-sided). These are statsmodels' `ttest_ind(...,
    usevar="unequal", value=...)` and `test_proportions_2indep(..., method="wald", value=...)`."""
    diff, se, bound = (np.asarray(x, float) for x in (diff, se, bound))
    harm = np.broadcast_to(np.asarray(harm), diff.shape)
    from_below, from_above = divide(diff + bound, se), divide(diff - bound, se)
    above_lower, below_upper = p_value(from_below, "larger", df), p_value(from_above, "smaller", df)
    beyond_lower, beyond_upper = p_value(from_below, "smaller", df), p_value(from_above, "larger", df)
    is_decrease, is_increase = harm == "decrease", harm == "increase"
    return Margin(np.select([is_decrease, is_increase], [above_lower, below_upper],
                            np.maximum(above_lower, below_upper)),
                  np.select([is_decrease, is_increase], [beyond_lower, beyond_upper],
                            np.minimum(2 * np.minimum(beyond_lower, beyond_upper), 1.0)))


@dataclass(frozen=True)
class Lift:
    absolute: np.ndarray
    absolute_ci: tuple[np.ndarray, np.ndarray]
    relative: np.ndarray
    relative_ci: tuple[np.ndarray, np.ndarray]
    relative_se: np.ndarray


def lift(control: Arm, treatment: Arm, alpha: ArrayLike, alternative: np.ndarray | str,
         df: ArrayLike | None = None) -> Lift:
    """Absolute and relative lift with confidence intervals.

    Absolute: unpooled SE (Wald). Relative (treatment/control - 1): delta method,
    Var ~= Var(m_t)/m_c^2 + m_t^2 Var(m_c)/m_c^4. The level matches the test: two-sided 1-alpha
    for two-sided tests, 1-2*alpha for one-sided ones (its bound on the tested side is the
    one-sided 1-alpha bound).
    """
    q = critical_value(alpha, alternative, df)
    diff = treatment.mean - control.mean
    se = np.sqrt(control.var_of_mean + treatment.var_of_mean)
    rel = divide(treatment.mean, control.mean) - 1
    rel_se = np.sqrt(divide(treatment.var_of_mean, control.mean**2)
                     + divide(treatment.mean**2 * control.var_of_mean, control.mean**4))
    return Lift(diff, (diff - q * se, diff + q * se), rel, (rel - q * rel_se, rel + q * rel_se), rel_se)


@dataclass(frozen=True)
class Cuped:
    control: Arm
    treatment: Arm
    theta: np.ndarray
    variance_reduction: np.ndarray


def cuped(n_c: ArrayLike, y_c: ArrayLike, yy_c: ArrayLike, x_c: ArrayLike, xx_c: ArrayLike, xy_c: ArrayLike,
          n_t: ArrayLike, y_t: ArrayLike, yy_t: ArrayLike, x_t: ArrayLike, xx_t: ArrayLike, xy_t: ArrayLike) -> Cuped:
    """CUPED (Deng, Xu, Kohavi & Walker, 2013): y - theta (x - mean x), theta = Cov(y, x) / Var(x) pooled.

    x is each user's pre-exposure value of the metric. The adjusted arm means keep the lift's
    expectation and shrink its variance by about corr(x, y)^2.
    """
    n = np.asarray(n_c, float) + np.asarray(n_t, float)
    sx, sy = np.add(x_c, x_t), np.add(y_c, y_t)
    theta = divide(sample_covariance(n, sx, sy, np.add(xy_c, xy_t)), sample_variance(n, sx, np.add(xx_c, xx_t)))
    theta = np.nan_to_num(theta)  # Var(x) = 0 (no pre-period data): no adjustment
    mean_x = divide(sx, n)

    def adjusted(n_a: ArrayLike, y: ArrayLike, yy: ArrayLike, x: ArrayLike, xx: ArrayLike, xy: ArrayLike) -> Arm:
        arm = mean_arm(n_a, y, yy)
        var = arm.variance + theta**2 * sample_variance(n_a, x, xx) - 2 * theta * sample_covariance(n_a, x, y, xy)
        return Arm(arm.n, arm.mean - theta * (divide(x, n_a) - mean_x), np.maximum(var, 0.0))

    control, treatment = adjusted(n_c, y_c, yy_c, x_c, xx_c, xy_c), adjusted(n_t, y_t, yy_t, x_t, xx_t, xy_t)
    before = mean_arm(n_c, y_c, yy_c).var_of_mean + mean_arm(n_t, y_t, yy_t).var_of_mean
    reduction = 1 - divide(control.var_of_mean + treatment.var_of_mean, before)
    return Cuped(control, treatment, theta, reduction)


def fisher_exact(conversions_c: float, n_c: float, conversions_t: float, n_t: float, alternative: str) -> float:
    """Fisher's exact test of treatment vs control conversion (valid at any sample size; conservative)."""
    table = [[conversions_t, n_t - conversions_t], [conversions_c, n_c - conversions_c]]
    side = {"larger": "greater", "smaller": "less"}.get(alternative, "two-sided")
    return float(sps.fisher_exact(np.asarray(table, int), alternative=side).pvalue)


def small_sample_intervals(conversions_c: float, n_c: float, conversions_t: float, n_t: float,
                           alpha: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Newcombe's hybrid score interval for p_t - p_c (Newcombe 1998, method 10) and the score interval for
    p_t / p_c - 1 (Miettinen & Nurminen 1985): valid with few users or conversions, where Wald is not. No ratio
    interval (NaN) where the control has no conversion or the score equation has no solution (100% vs 100%)."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    diff = confint_proportions_2indep(conversions_t, n_t, conversions_c, n_c, method="newcomb", compare="diff",
                                      alpha=alpha)
    if conversions_c == 0:
        return (float(diff[0]), float(diff[1])), (float("nan"), float("nan"))
    ratio = confint_proportions_2indep(conversions_t, n_t, conversions_c, n_c, method="score", compare="ratio",
                                       alpha=alpha)
    if np.iscomplexobj(ratio[0]) or np.iscomplexobj(ratio[1]):  # the score equation has no real root
        return (float(diff[0]), float(diff[1])), (float("nan"), float("nan"))  # (100% vs 100%)
    return (float(diff[0]), float(diff[1])), (float(ratio[0]) - 1, float(ratio[1]) - 1)


def wilson_interval(conversions: ArrayLike, n: ArrayLike, alpha: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of each arm's conversion rate (NaN for an empty arm)."""
    from statsmodels.stats.proportion import proportion_confint

    n = np.asarray(n, float)
    safe = np.where(n > 0, n, 1.0)
    low, high = proportion_confint(np.asarray(conversions, float), safe, alpha=np.asarray(alpha, float),
                                   method="wilson")
    return np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)


def srm_exact(observed: np.ndarray, expected_share: np.ndarray, max_outcomes: int = 200_000) -> float | None:
    """Exact goodness-of-fit p-value of users per arm to the split, for counts too small for chi-square: the
    binomial test for two arms; for more, the multinomial probabilities of every possible allocation of the same
    users summed over those no more likely than the observed one. None when there are too many allocations."""
    observed = np.asarray(observed, int)
    share = np.asarray(expected_share, float)
    total, arms = int(observed.sum()), len(observed)
    if arms == 2:
        return float(sps.binomtest(int(observed[0]), total, float(share[0])).pvalue)
    if (total + 1) ** (arms - 1) > max_outcomes:
        return None
    outcomes = np.array([c for c in itertools.product(range(total + 1), repeat=arms - 1) if sum(c) <= total])
    outcomes = np.column_stack([outcomes, total - outcomes.sum(axis=1)])
    log_p = sps.multinomial.logpmf(outcomes, total, share)
    observed_log_p = sps.multinomial.logpmf(observed, total, share)
    return float(min(1.0, np.exp(log_p[log_p <= observed_log_p + 1e-9]).sum()))


def srm_chisquare(observed: np.ndarray, expected_share: np.ndarray) -> tuple[float, float]:
    """Pearson chi-square goodness of fit of the observed users per arm to the registered split."""
    observed = np.asarray(observed, float)
    expected = np.asarray(expected_share, float) * observed.sum()
    result = sps.chisquare(observed, expected)
    return float(result.statistic), float(result.pvalue)


def required_n_per_arm(var_control: ArrayLike, var_treatment: ArrayLike, delta: ArrayLike, alpha: ArrayLike,
                       power: ArrayLike, alternative: np.ndarray | str) -> np.ndarray:
    """Classic sample size per arm: n = (z_alpha + z_beta)^2 (s_c^2 + s_t^2) / delta^2."""
    z = critical_value(alpha, alternative) + sps.norm.ppf(np.asarray(power, float))
    return np.ceil(divide(z**2 * (np.asarray(var_control) + np.asarray(var_treatment)), np.square(delta)))


def power_at(control: Arm, treatment: Arm, delta: ArrayLike, alpha: ArrayLike,
             alternative: np.ndarray | str) -> np.ndarray:
    """Power of the z-test to detect an absolute difference `delta` with the current samples (in the tested
    direction): Phi(|delta| / SE - z_crit), plus the far tail Phi(-|delta| / SE - z_crit) of a two-sided test,
    as statsmodels' `NormalIndPower` computes it."""
    shift = divide(np.abs(np.asarray(delta, float)), np.sqrt(control.var_of_mean + treatment.var_of_mean))
    z = critical_value(alpha, alternative)
    far = np.where(np.asarray(alternative) == "two-sided", sps.norm.cdf(-shift - z), 0.0)
    return sps.norm.cdf(shift - z) + far


def minimum_detectable_effect(control: Arm, treatment: Arm, alpha: ArrayLike, power: ArrayLike,
                              alternative: np.ndarray | str) -> np.ndarray:
    """Smallest absolute difference the current samples detect with the given power."""
    z = critical_value(alpha, alternative) + sps.norm.ppf(np.asarray(power, float))
    return z * np.sqrt(control.var_of_mean + treatment.var_of_mean)


@dataclass(frozen=True)
class Sequential:
    p_value: np.ndarray
    ci: tuple[np.ndarray, np.ndarray]


def msprt(diff: ArrayLike, var_diff: ArrayLike, tau2: ArrayLike, alpha: ArrayLike) -> Sequential:
    """Always-valid p-value and confidence sequence: mixture SPRT with a N(0, tau^2) mixing prior.

    Johari, Koomen, Pekelis & Walsh (2017), "Peeking at A/B tests": with V = Var(diff),
    Lambda = sqrt(V / (V + tau^2)) exp(tau^2 diff^2 / (2 V (V + tau^2))); p = min(1, 1/Lambda).
    The interval {d : Lambda(d) < 1/alpha} holds at every look simultaneously, so a report
    read every morning keeps its error rate. The caller keeps the running minimum of p.
    """
    diff, v, tau2 = np.asarray(diff, float), np.asarray(var_diff, float), np.asarray(tau2, float)
    log_lambda = 0.5 * np.log(divide(v, v + tau2)) + divide(tau2 * diff**2, 2 * v * (v + tau2))
    p = np.exp(np.minimum(0.0, -log_lambda))
    half = np.sqrt(divide(2 * v * (v + tau2), tau2) * (np.log(1 / np.asarray(alpha, float))
                                                     + 0.5 * np.log(divide(v + tau2, v))))
    return Sequential(p, (diff - half, diff + half))


def adjust_pvalues(p_values: np.ndarray, method: str, groups: np.ndarray | None = None) -> np.ndarray:
    """Holm or Bonferroni (family-wise error) or Benjamini-Hochberg (false discovery rate) within each group.

    Vectorised over all groups at once (statsmodels' `multipletests` gives the same numbers one
    family per call, and runs a garbage collection each time). NaN stays NaN and is not counted.
    """
    p_values = np.asarray(p_values, float)
    frame = pd.DataFrame({"p": p_values, "g": np.zeros(len(p_values)) if groups is None else groups})
    valid = frame.dropna(subset=["p"]).sort_values(["g", "p"], kind="mergesort")
    rank = valid.groupby("g").cumcount() + 1
    m = valid.groupby("g")["p"].transform("size")
    if method == "holm":
        adjusted = ((m - rank + 1) * valid["p"]).groupby(valid["g"]).cummax()
    elif method == "bonferroni":
        adjusted = m * valid["p"]
    elif method == "bh":
        raw = (m / rank * valid["p"]).iloc[::-1]
        adjusted = raw.groupby(valid["g"].iloc[::-1]).cummin().iloc[::-1]
    else:
        raise ValueError(f"unknown correction {method!r}: holm, bonferroni or bh")
    out = np.full(len(p_values), np.nan)
    out[adjusted.index.to_numpy()] = np.minimum(adjusted.to_numpy(), 1.0)
    return out


@dataclass(frozen=True)
class Posterior:
    prob_beats_control: np.ndarray  # per arm (control: NaN)
    prob_best: np.ndarray           # per arm; also the Thompson-sampling allocation weights
    expected_loss: np.ndarray       # per arm, in units of the metric: E[max - arm]
    value_remaining_p95: float      # relative regret of the current best arm, 95th percentile
    mean: np.ndarray                # per arm, the posterior mean
    interval_95: tuple[np.ndarray, np.ndarray]  # per arm, the equal-tailed 95% credible interval


@dataclass(frozen=True)
class _Family:
    """Independent posteriors, one per row of `a`, `b` (Beta(a, b), or Normal(mean a, sd b)), evaluated with
    scipy.special directly: the frozen scipy.stats objects cost more in argument checks than in arithmetic here."""

    beta: bool
    a: np.ndarray
    b: np.ndarray

    def take(self, rows: Any) -> _Family:
        return _Family(self.beta, self.a[rows], self.b[rows])

    def cdf(self, x: np.ndarray) -> np.ndarray:
        if self.beta:
            return special.betainc(self.a[:, None], self.b[:, None], np.clip(x, 0.0, 1.0))
        return special.ndtr((x - self.a[:, None]) / self.b[:, None])

    def sf(self, x: np.ndarray) -> np.ndarray:
        if self.beta:
            return special.betaincc(self.a[:, None], self.b[:, None], np.clip(x, 0.0, 1.0))
        return special.ndtr((self.a[:, None] - x) / self.b[:, None])

    def pdf(self, x: np.ndarray) -> np.ndarray:
        if self.beta:
            inside = np.clip(x, 1e-300, 1 - 1e-16)
            log = ((self.a[:, None] - 1) * np.log(inside) + (self.b[:, None] - 1) * np.log1p(-inside)
                   - special.betaln(self.a, self.b)[:, None])
            return np.where((x > 0) & (x < 1), np.exp(log), 0.0)
        return np.exp(-0.5 * ((x - self.a[:, None]) / self.b[:, None]) ** 2) / (self.b[:, None] * np.sqrt(2 * np.pi))

    def ppf(self, q: np.ndarray) -> np.ndarray:
        """Quantiles (rows: arms, columns: q); `isf` is `ppf(1 - q)` computed without losing the tail."""
        if self.beta:
            return special.betaincinv(self.a[:, None], self.b[:, None], q[None, :])
        return self.a[:, None] + self.b[:, None] * special.ndtri(q[None, :])

    def isf(self, q: np.ndarray) -> np.ndarray:
        if self.beta:
            return special.betainccinv(self.a[:, None], self.b[:, None], q[None, :])
        return self.a[:, None] - self.b[:, None] * special.ndtri(q[None, :])

    def mean(self) -> np.ndarray:
        return self.a / (self.a + self.b) if self.beta else self.a

    def std(self) -> np.ndarray:
        if self.beta:
            total = self.a + self.b
            return np.sqrt(self.a * self.b / (total**2 * (total + 1)))
        return self.b


#: Quantiles of every arm's posterior that bound the integration panels: each arm's mass is covered by panels of
#: its own scale, however different the arms' widths (a 90/10 split), and the tails beyond 1e-15 are negligible.
_PANEL_QUANTILES = np.array([1e-15, 1e-9, 1e-5, 1e-3, 0.02, 0.12, 0.3, 0.5])
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(20)


def _quadrature(family: _Family) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of a composite 20-point Gauss-Legendre rule over the panels between the arms' quantiles."""
    edges = np.unique(np.concatenate([family.ppf(_PANEL_QUANTILES).ravel(), family.isf(_PANEL_QUANTILES).ravel()]))
    lo, hi = edges[:-1], edges[1:]
    half, mid = (hi - lo) / 2, (hi + lo) / 2
    return (mid[:, None] + half[:, None] * _NODES).ravel(), (half[:, None] * _WEIGHTS).ravel()


def posterior(arms: list[Arm], proportion: bool, higher_is_better: bool, prior_alpha: float,
              prior_beta: float) -> Posterior:
    """Posterior comparison of arms (index 0 = control), by numerical integration: exact, deterministic.

    Proportions: Beta(prior_alpha + conversions, prior_beta + non-conversions). Other metrics:
    Normal(mean, Var(mean)), the large-sample posterior under a flat prior. With G_j(x) the probability that arm j
    is no better than the value x (its CDF, or its survival function when lower is better) and f_j its density:
    P(i best) = int f_i prod_{j != i} G_j, P(i beats control) = int f_i G_0, and the expected loss of choosing i,
    E[max_j - i] = int (G_i - prod_j G_j) dx (one-dimensional integrals, as in Evan Miller's and Chris Stucchio's
    closed forms for two arms, which the tests check them against to 1e-9)."""
    n = np.array([a.n for a in arms], float)
    mean = np.array([a.mean for a in arms], float)
    if proportion:
        conversions = mean * n
        family = _Family(True, prior_alpha + conversions, prior_beta + n - conversions)
    else:
        family = _Family(False, mean, np.sqrt([float(a.var_of_mean) for a in arms]))
    x, w = _quadrature(family)
    density = family.pdf(x)
    no_better = family.cdf(x) if higher_is_better else family.sf(x)
    all_no_better = no_better.prod(axis=0)
    k = len(arms)
    others = [np.prod(np.delete(no_better, i, axis=0), axis=0) for i in range(k)]
    prob_best = np.array([w @ (density[i] * others[i]) for i in range(k)])
    prob_beats = np.array([np.nan] + [w @ (density[i] * no_better[0]) for i in range(1, k)])
    loss = np.array([w @ (no_better[i] - all_no_better) for i in range(k)])
    leader = int(prob_best.argmax())
    tails = np.array([0.025])
    return Posterior(prob_beats, prob_best, loss,
                     _regret_quantile(family, leader, prob_best[leader], higher_is_better, 0.95),
                     family.mean(), (family.ppf(tails).ravel(), family.isf(tails).ravel()))


def _regret_quantile(family: _Family, leader: int, prob_leader_best: float, higher_is_better: bool,
                     q: float) -> float:
    """The q-quantile of the leader's relative regret R = (best arm - leader) / |leader|, from its exact CDF
    P(R <= t) = int f_L(x) prod_{j != L} G_j(x +- t |x|) dx (integrated over the leader's own panels), solved for
    t; 0 when the leader is best with probability >= q (P(R <= 0) = P(leader best))."""
    if prob_leader_best >= q:
        return 0.0
    own = family.take([leader])
    rivals = family.take([j for j in range(len(family.a)) if j != leader])
    x, w = _quadrature(own)
    weighted_density = w * own.pdf(x)[0]
    sign = 1.0 if higher_is_better else -1.0

    def cdf(t: float) -> float:
        shifted = x + sign * t * np.abs(x)
        no_better = rivals.cdf(shifted) if higher_is_better else rivals.sf(shifted)
        return float(weighted_density @ no_better.prod(axis=0))

    high = 4 * float(own.std()[0] / max(abs(own.mean()[0]), 1e-300))  # ~ the leader's relative spread
    while cdf(high) < q:
        high *= 4
        if high > 1e6:
            return float("inf")
    return float(optimize.brentq(lambda t: cdf(t) - q, 0.0, high, xtol=1e-9, rtol=1e-9))


@dataclass(frozen=True)
class EffectPosterior:
    """Normal posterior of one treatment's relative lift over control (GrowthBook's Bayesian model)."""

    mean: float
    sd: float
    prob_beats_control: float
    risk_treatment: float  # E[relative loss if the treatment is chosen and control was better]
    risk_control: float    # E[relative loss if control is kept and the treatment was better]


def gaussian_effect(control: Arm, treatment: Arm, higher_is_better: bool, prior_mean: float | None = None,
                    prior_sd: float | None = None) -> EffectPosterior:
    """GrowthBook's Bayesian engine (gbstats `EffectBayesianABTest`, relative lift): the lift
    m_t / m_c - 1 with its delta-method variance is the likelihood of a normal effect, under a flat prior
    (GrowthBook's default) or a normal prior N(prior_mean, prior_sd^2) on the lift. A different model from
    `posterior` (one distribution of the lift rather than one per arm), so its numbers differ slightly."""
    lifted = lift(control, treatment, 0.05, "two-sided")
    mean, var = float(lifted.relative), float(lifted.relative_se) ** 2
    if prior_sd is not None:
        precision = 1 / var + 1 / prior_sd**2
        mean, var = (mean / var + (prior_mean or 0.0) / prior_sd**2) / precision, 1 / precision
    sd = var**0.5
    z = mean / sd
    gain = mean * special.ndtr(z) + sd * sps.norm.pdf(z)  # E[max(lift, 0)]
    loss = gain - mean  # E[max(-lift, 0)]
    beats = float(special.ndtr(z if higher_is_better else -z))
    risk_treatment, risk_control = (loss, gain) if higher_is_better else (gain, loss)
    return EffectPosterior(mean, sd, beats, float(risk_treatment), float(risk_control))


@dataclass(frozen=True)
class Trend:
    slope: float
    slope_se: float
    p_value: float


def weighted_trend(x: np.ndarray, y: np.ndarray, variance: np.ndarray) -> Trend:
    """Weighted least-squares slope of y on x (weights 1/variance) and its two-sided p-value."""
    w = 1 / np.asarray(variance, float)
    xm = np.sum(w * x) / np.sum(w)
    ym = np.sum(w * y) / np.sum(w)
    sxx = np.sum(w * (x - xm) ** 2)
    slope = np.sum(w * (x - xm) * (y - ym)) / sxx
    se = np.sqrt(1 / sxx)
    return Trend(float(slope), float(se), float(2 * sps.norm.sf(abs(slope / se))))
