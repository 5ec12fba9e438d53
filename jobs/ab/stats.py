"""A/B statistics on per-arm sufficient statistics, vectorised with numpy/scipy (no Spark).

Every function takes numpy arrays (or scalars) that broadcast, so one call evaluates all
experiments x metrics x arms at once. Inputs are sums over users, the format warehouses
produce: `n`, `main_sum`, `main_sum_squares`; for ratio metrics also the denominator sums and
the cross product; for CUPED the pre-exposure covariate sums and cross product. Conventions
(pooled vs unpooled SE, sidedness, CI levels, priors) are documented in docs/AB_REPORTS.md;
results that are not defined come back as NaN and the caller says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

ArrayLike = np.ndarray | float


def _div(num: ArrayLike, den: ArrayLike) -> np.ndarray:
    """num / den with NaN (not inf, not a warning) where den is 0 or NaN."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    return np.where((den == 0) | np.isnan(den), np.nan, out)


@dataclass(frozen=True)
class Arm:
    """Mean and per-user variance of an arm's metric: Var(mean) = variance / n."""

    n: np.ndarray
    mean: np.ndarray
    variance: np.ndarray

    @property
    def var_of_mean(self) -> np.ndarray:
        return _div(self.variance, self.n)


def sample_variance(n: ArrayLike, total: ArrayLike, total_squares: ArrayLike) -> np.ndarray:
    """Unbiased variance from n, sum and sum of squares (clipped at 0 against rounding)."""
    n = np.asarray(n, float)
    return np.maximum(_div(np.asarray(total_squares, float) - _div(np.square(total), n), n - 1), 0.0)


def sample_covariance(n: ArrayLike, sum_x: ArrayLike, sum_y: ArrayLike, sum_xy: ArrayLike) -> np.ndarray:
    n = np.asarray(n, float)
    return _div(np.asarray(sum_xy, float) - _div(np.asarray(sum_x, float) * np.asarray(sum_y, float), n), n - 1)


def proportion_arm(n: ArrayLike, conversions: ArrayLike) -> Arm:
    """Bernoulli arm: variance p(1-p), the textbook form used by the z-test."""
    n = np.asarray(n, float)
    p = _div(conversions, n)
    return Arm(n, p, p * (1 - p))


def mean_arm(n: ArrayLike, main_sum: ArrayLike, main_sum_squares: ArrayLike) -> Arm:
    n = np.asarray(n, float)
    return Arm(n, _div(main_sum, n), sample_variance(n, main_sum, main_sum_squares))


def ratio_arm(n: ArrayLike, main_sum: ArrayLike, main_sum_squares: ArrayLike, denominator_sum: ArrayLike,
              denominator_sum_squares: ArrayLike, main_denominator_sum_product: ArrayLike) -> Arm:
    """Ratio of sums (e.g. clicks per page view) with its delta-method variance.

    Var(R) ~= (s_y^2 - 2 R s_yd + R^2 s_d^2) / (n mean_d^2)  (Deng et al., 2018, eq. 3).
    """
    n = np.asarray(n, float)
    ratio = _div(main_sum, denominator_sum)
    mean_d = _div(denominator_sum, n)
    var_y = sample_variance(n, main_sum, main_sum_squares)
    var_d = sample_variance(n, denominator_sum, denominator_sum_squares)
    cov = sample_covariance(n, main_sum, denominator_sum, main_denominator_sum_product)
    unit_var = _div(var_y - 2 * ratio * cov + ratio**2 * var_d, mean_d**2)
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
    pooled = _div(control.mean * control.n + treatment.mean * treatment.n, control.n + treatment.n)
    se = np.sqrt(pooled * (1 - pooled) * (_div(1, control.n) + _div(1, treatment.n)))
    z = _div(treatment.mean - control.mean, se)
    return z, p_value(z, alternative)


def welch_df(control: Arm, treatment: Arm) -> np.ndarray:
    """Welch-Satterthwaite degrees of freedom."""
    vc, vt = control.var_of_mean, treatment.var_of_mean
    return _div((vc + vt) ** 2, _div(vc**2, control.n - 1) + _div(vt**2, treatment.n - 1))


def welch_ttest(control: Arm, treatment: Arm,
                alternative: np.ndarray | str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Welch's t statistic, degrees of freedom and p-value (unequal variances)."""
    se = np.sqrt(control.var_of_mean + treatment.var_of_mean)
    t = _div(treatment.mean - control.mean, se)
    df = welch_df(control, treatment)
    return t, df, p_value(t, alternative, df)


def unpooled_ztest(control: Arm, treatment: Arm, alternative: np.ndarray | str) -> tuple[np.ndarray, np.ndarray]:
    """z test with the unpooled SE (ratio metrics, CUPED-adjusted means)."""
    z = _div(treatment.mean - control.mean, np.sqrt(control.var_of_mean + treatment.var_of_mean))
    return z, p_value(z, alternative)


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
    rel = _div(treatment.mean, control.mean) - 1
    rel_se = np.sqrt(_div(treatment.var_of_mean, control.mean**2)
                     + _div(treatment.mean**2 * control.var_of_mean, control.mean**4))
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
    theta = _div(sample_covariance(n, sx, sy, np.add(xy_c, xy_t)), sample_variance(n, sx, np.add(xx_c, xx_t)))
    theta = np.nan_to_num(theta)  # Var(x) = 0 (no pre-period data): no adjustment
    mean_x = _div(sx, n)

    def adjusted(n_a: ArrayLike, y: ArrayLike, yy: ArrayLike, x: ArrayLike, xx: ArrayLike, xy: ArrayLike) -> Arm:
        arm = mean_arm(n_a, y, yy)
        var = arm.variance + theta**2 * sample_variance(n_a, x, xx) - 2 * theta * sample_covariance(n_a, x, y, xy)
        return Arm(arm.n, arm.mean - theta * (_div(x, n_a) - mean_x), np.maximum(var, 0.0))

    control, treatment = adjusted(n_c, y_c, yy_c, x_c, xx_c, xy_c), adjusted(n_t, y_t, yy_t, x_t, xx_t, xy_t)
    before = mean_arm(n_c, y_c, yy_c).var_of_mean + mean_arm(n_t, y_t, yy_t).var_of_mean
    reduction = 1 - _div(control.var_of_mean + treatment.var_of_mean, before)
    return Cuped(control, treatment, theta, reduction)


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
    return np.ceil(_div(z**2 * (np.asarray(var_control) + np.asarray(var_treatment)), np.square(delta)))


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
    log_lambda = 0.5 * np.log(_div(v, v + tau2)) + _div(tau2 * diff**2, 2 * v * (v + tau2))
    p = np.exp(np.minimum(0.0, -log_lambda))
    half = np.sqrt(_div(2 * v * (v + tau2), tau2) * (np.log(1 / np.asarray(alpha, float))
                                                     + 0.5 * np.log(_div(v + tau2, v))))
    return Sequential(p, (diff - half, diff + half))


def adjust_pvalues(p_values: np.ndarray, method: str, groups: np.ndarray | None = None) -> np.ndarray:
    """Holm (family-wise error) or Benjamini-Hochberg (false discovery rate) within each group.

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
    elif method == "bh":
        raw = (m / rank * valid["p"]).iloc[::-1]
        adjusted = raw.groupby(valid["g"].iloc[::-1]).cummin().iloc[::-1]
    else:
        raise ValueError(f"unknown correction {method!r}: holm or bh")
    out = np.full(len(p_values), np.nan)
    out[adjusted.index.to_numpy()] = np.minimum(adjusted.to_numpy(), 1.0)
    return out


@dataclass(frozen=True)
class Posterior:
    prob_beats_control: np.ndarray  # per arm (control: NaN)
    prob_best: np.ndarray           # per arm; also the Thompson-sampling allocation weights
    expected_loss: np.ndarray       # per arm, in units of the metric: E[max - arm]
    value_remaining_p95: float      # relative regret of the current best arm, 95th percentile
    draws: np.ndarray               # (arms, draws), for plots


def posterior(arms: list[Arm], proportion: bool, higher_is_better: bool, prior_alpha: float,
              prior_beta: float, draws: int, seed: int) -> Posterior:
    """Posterior comparison of arms (index 0 = control) by Monte Carlo.

    Proportions: Beta(prior_alpha + conversions, prior_beta + non-conversions). Other metrics:
    Normal(mean, Var(mean)), the large-sample posterior under a flat prior. Seeded, so a rerun
    gives the same report.
    """
    rng = np.random.default_rng(seed)
    if proportion:
        samples = np.stack([rng.beta(prior_alpha + a.mean * a.n, prior_beta + (1 - a.mean) * a.n, draws)
                            for a in arms])
    else:
        samples = np.stack([rng.normal(a.mean, np.sqrt(a.var_of_mean), draws) for a in arms])
    score = samples if higher_is_better else -samples
    best = score.max(axis=0)
    winner = score.argmax(axis=0)
    prob_best = np.bincount(winner, minlength=len(arms)) / draws
    prob_beats = (score > score[0]).mean(axis=1)
    prob_beats[0] = np.nan
    loss = (best - score).mean(axis=1)
    leader = int(prob_best.argmax())
    regret = _div(best - score[leader], np.abs(score[leader]))
    return Posterior(prob_beats, prob_best, loss, float(np.nanpercentile(regret, 95)), samples)


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
