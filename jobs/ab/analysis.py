"""From counts to the report: every test of every experiment, vectorised, then one entry per experiment.

`build_report(counts, registry, day)` is the Python API: it needs no Spark, only the counts
interchange format (`jobs/ab/counts.py`), so an analyst can run it on sums from any warehouse.
Statistics that are not defined are reported as `not_computable` with the reason; the
conventions are in docs/AB_REPORTS.md.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd

from jobs.ab import stats
from jobs.ab.counts import UNREGISTERED, empty_diagnostics, normalise
from jobs.ab.registry import Experiment, MetricUse, Registry, Settings

SCHEMA_VERSION = "1.2"
TESTS = {"proportion": "two_proportion_z_pooled", "continuous": "welch_t", "ratio": "delta_method_z"}
MAX_LISTED_VARIANTS = 10  # unregistered variants named one by one in a report; the rest summed
PROPORTION_MIN_COUNT = 5  # normal approximation: >= 5 conversions and non-conversions per arm


def _num(value: Any) -> float | None:
    """JSON-safe float: NaN and infinities become null (the reason is reported beside it)."""
    if value is None or value is pd.NA:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _p(value: float | None) -> str:
    """A p-value in a sentence: `= 0.0412`, or `< 0.001` (the tables hold the exact number)."""
    return "n/a" if value is None else ("< 0.001" if value < 0.001 else f"= {value:.3g}")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}%"


def _plan(experiments: list[Experiment]) -> pd.DataFrame:
    rows = [
        {"experiment_id": e.id, "metric": use.metric.name, "role": use.role, "kind": use.metric.kind,
         "direction": use.direction, "alternative": use.alternative, "alpha": e.alpha, "power": e.power,
         "mde": e.mde, "margin": np.nan if use.margin is None else use.margin, "control": e.control, "variant": v}
        for e in experiments for use in e.metrics for v in e.treatments
    ]
    columns = ["experiment_id", "metric", "role", "kind", "direction", "alternative", "alpha", "power", "mde",
               "margin", "control", "variant"]
    return pd.DataFrame(rows, columns=columns)


def _arms(frame: pd.DataFrame, side: str) -> stats.Arm:
    """The arm (c = control, t = treatment) of every comparison row, by metric kind."""
    col = {k: frame[f"{k}_{side}"].to_numpy(float) for k in
           ("count", "main_sum", "main_sum_squares", "denominator_sum", "denominator_sum_squares",
            "main_denominator_sum_product")}
    kind = frame["kind"].to_numpy()
    prop = stats.proportion_arm(col["count"], col["main_sum"])
    mean = stats.mean_arm(col["count"], col["main_sum"], col["main_sum_squares"])
    ratio = stats.ratio_arm(col["count"], col["main_sum"], col["main_sum_squares"], col["denominator_sum"],
                            col["denominator_sum_squares"], col["main_denominator_sum_product"])
    pick = [kind == "proportion", kind == "ratio"]
    return stats.Arm(col["count"], np.select(pick, [prop.mean, ratio.mean], mean.mean),
                     np.select(pick, [prop.variance, ratio.variance], mean.variance))


def _reasons(frame: pd.DataFrame, control: stats.Arm, treatment: stats.Arm, min_users: int) -> np.ndarray:
    """Why a comparison has no p-value (empty string: it has one). First matching reason wins."""
    kind = frame["kind"].to_numpy()
    names = {"c": frame["control"].to_numpy(), "t": frame["variant"].to_numpy()}
    reasons = np.full(len(frame), "", dtype=object)

    def note(mask: np.ndarray, text: np.ndarray | str) -> None:
        fill = (reasons == "") & mask
        reasons[fill] = np.broadcast_to(np.asarray(text, dtype=object), reasons.shape)[fill]

    for side, arm in (("c", control), ("t", treatment)):
        note(arm.n == 0, "no users in arm " + names[side])
    for side, arm in (("c", control), ("t", treatment)):
        note(arm.n < min_users, [f"only {n:.0f} users in arm {a} (min_users_per_arm = {min_users}): too few for a "
                                 "meaningful test" for n, a in zip(arm.n, names[side], strict=True)])
    for side, arm in (("c", control), ("t", treatment)):
        conversions = arm.mean * arm.n
        low = np.minimum(conversions, arm.n - conversions)
        note((kind == "proportion") & (low < PROPORTION_MIN_COUNT),
             [f"arm {a} has {c:.0f} of {n:.0f} users converting: the normal approximation needs at least "
              f"{PROPORTION_MIN_COUNT} conversions and {PROPORTION_MIN_COUNT} non-conversions per arm"
              for c, n, a in zip(conversions, arm.n, names[side], strict=True)])
    for side in ("c", "t"):
        note((kind == "ratio") & (frame[f"denominator_sum_{side}"].to_numpy(float) == 0),
             "ratio denominator is 0 in arm " + names[side])
    note((control.variance == 0) & (treatment.variance == 0), "zero variance in both arms: every user has the "
         "same value, so there is no sampling distribution to test against")
    note(np.isnan(control.mean) | np.isnan(treatment.mean), "metric undefined (0/0) in an arm")
    return reasons


def compare(counts: pd.DataFrame, experiments: list[Experiment], settings: Settings) -> pd.DataFrame:
    """One row per experiment x metric x treatment arm with every frequentist result."""
    with np.errstate(invalid="ignore", divide="ignore"):  # undefined cases become NaN + a reason
        return _compare(counts, experiments, settings)


def _compare(counts: pd.DataFrame, experiments: list[Experiment], settings: Settings) -> pd.DataFrame:
    totals = counts[counts["day"].isna()].drop(columns="day")
    plan = _plan(experiments)
    sums = [c for c in totals.columns if c not in ("experiment_id", "variant", "metric")]
    frame = (plan
             .merge(totals.rename(columns={c: f"{c}_c" for c in sums} | {"variant": "control"}),
                    on=["experiment_id", "metric", "control"], how="left")
             .merge(totals.rename(columns={c: f"{c}_t" for c in sums}),
                    on=["experiment_id", "metric", "variant"], how="left"))
    for side in ("c", "t"):
        frame[f"count_{side}"] = frame[f"count_{side}"].fillna(0.0)
    control, treatment = _arms(frame, "c"), _arms(frame, "t")
    alt = frame["alternative"].to_numpy()
    alpha = frame["alpha"].to_numpy(float)
    kind = frame["kind"].to_numpy()

    z_prop, p_prop = stats.two_proportion_ztest(control, treatment, alt)
    t_cont, df_cont, p_cont = stats.welch_ttest(control, treatment, alt)
    z_ratio, p_ratio = stats.unpooled_ztest(control, treatment, alt)
    is_prop, is_cont = kind == "proportion", kind == "continuous"
    frame["test"] = [TESTS[k] for k in kind]
    frame["statistic"] = np.select([is_prop, is_cont], [z_prop, t_cont], z_ratio)
    frame["df"] = np.where(is_cont, df_cont, np.nan)
    frame["p_value"] = np.select([is_prop, is_cont], [p_prop, p_cont], p_ratio)
    frame["reason"] = _reasons(frame, control, treatment, settings.min_users_per_arm)
    # a statistic that still came out NaN (variances too small to represent, e.g. sums of ~1e-300) is no test
    frame["reason"] = np.where((frame["reason"] == "") & ~np.isfinite(frame["p_value"].to_numpy(float)),
                               "the test statistic is undefined: the arms' variances are too small to represent",
                               frame["reason"])
    small = is_prop & (control.n >= 1) & (treatment.n >= 1) & (frame["reason"].to_numpy() != "")
    frame["small_sample"] = small
    frame.loc[small, "reason"] = ""
    ok = frame["reason"].to_numpy() == ""
    frame.loc[~ok | small, ["statistic", "df", "p_value"]] = np.nan

    z_lift = stats.lift(control, treatment, alpha, alt)
    t_lift = stats.lift(control, treatment, alpha, alt, df_cont)
    frame["ci_alpha"] = np.where(alt == "two-sided", alpha, 2 * alpha)
    frame["ci_level"] = 1 - frame["ci_alpha"]
    frame["control_mean"], frame["treatment_mean"] = control.mean, treatment.mean
    frame["absolute_lift"], frame["relative_lift"] = z_lift.absolute, z_lift.relative
    for name, (zs, ts) in {"absolute_ci": (z_lift.absolute_ci, t_lift.absolute_ci),
                           "relative_ci": (z_lift.relative_ci, t_lift.relative_ci)}.items():
        frame[f"{name}_low"] = np.where(ok, np.where(is_cont, ts[0], zs[0]), np.nan)
        frame[f"{name}_high"] = np.where(ok, np.where(is_cont, ts[1], zs[1]), np.nan)
    no_scale = stats.is_zero_scale(control.mean)
    frame["relative_reason"] = np.where(~ok, frame["reason"],
                                        np.where(no_scale, "control mean is 0: relative lift undefined", ""))
    frame.loc[frame["relative_reason"] != "", ["relative_ci_low", "relative_ci_high"]] = np.nan
    # H0: treatment / control = 1 by the delta method (z), beside the test of the difference
    frame["relative_p_value"] = np.where(frame["relative_reason"] == "", stats.p_value(
        stats.divide(z_lift.relative, z_lift.relative_se), alt), np.nan)

    var_diff = control.var_of_mean + treatment.var_of_mean
    seq = stats.msprt(z_lift.absolute, var_diff, (frame["mde"].to_numpy(float) * control.mean) ** 2,
                      alpha)
    seq_ok = ok & ~no_scale
    frame["seq_p_value"] = np.where(seq_ok, seq.p_value, np.nan)
    frame["seq_ci_low"], frame["seq_ci_high"] = (np.where(seq_ok, b, np.nan) for b in seq.ci)
    frame["seq_reason"] = np.where(ok, np.where(seq_ok, "", "control mean is 0: the mixing scale (mde x control "
                                                "mean) is 0"), frame["reason"])
    _add_cuped(frame, ok, alt, alpha)
    _add_margin_tests(frame, ok & ~small, z_lift.absolute, np.sqrt(var_diff), np.abs(control.mean), df_cont)
    _add_exact(frame, small, control, treatment, alt, alpha)
    frame["rate_ci_c_low"], frame["rate_ci_c_high"] = stats.wilson_interval(control.mean * control.n, control.n,
                                                                           frame["ci_alpha"])
    frame["rate_ci_t_low"], frame["rate_ci_t_high"] = stats.wilson_interval(treatment.mean * treatment.n,
                                                                           treatment.n, frame["ci_alpha"])
    tested = frame["role"].isin(["primary", "secondary"]).to_numpy()
    p = frame["p_value"].to_numpy(float)
    adjusted = stats.adjust_pvalues(np.where(tested, p, np.nan), settings.correction,
                                    frame["experiment_id"].to_numpy())
    frame["p_value_adjusted"] = np.where(tested, adjusted, p)  # guardrails: uncorrected (see docs)
    return frame


SMALL_SAMPLE = ("few users or conversions for the normal approximation: Fisher's exact test, Newcombe's interval "
                "for the difference and the score interval for the ratio")


def _add_exact(frame: pd.DataFrame, small: np.ndarray, control: stats.Arm, treatment: stats.Arm, alt: np.ndarray,
               alpha: np.ndarray) -> None:
    """Proportions with too few users or conversions for the z-test get exact and score methods instead of no
    result; the normal-approximation extras (always-valid test, CUPED) say why they are missing."""
    frame["test"] = np.where(small, "fisher_exact", frame["test"])
    for i in np.flatnonzero(small):
        conv_c, n_c = control.mean[i] * control.n[i], control.n[i]
        conv_t, n_t = treatment.mean[i] * treatment.n[i], treatment.n[i]
        frame.iat[i, frame.columns.get_loc("p_value")] = stats.fisher_exact(conv_c, n_c, conv_t, n_t, alt[i])
        (low, high), (rel_low, rel_high) = stats.small_sample_intervals(conv_c, n_c, conv_t, n_t,
                                                                         frame["ci_alpha"].iat[i])
        for column, value in (("absolute_ci_low", low), ("absolute_ci_high", high), ("relative_ci_low", rel_low),
                              ("relative_ci_high", rel_high)):
            frame.iat[i, frame.columns.get_loc(column)] = value
        if np.isnan(rel_low) and frame["relative_reason"].iat[i] == "":
            frame.iat[i, frame.columns.get_loc("relative_reason")] = ("every user converted in both arms: the "
                                                                      "ratio's score interval has no solution")
    for prefix in ("seq", "cuped"):
        frame[f"{prefix}_reason"] = np.where(small, "not with few users or conversions: it relies on the normal "
                                             "approximation", frame[f"{prefix}_reason"])
    frame["relative_p_value"] = np.where(small & (frame["relative_reason"] == ""), frame["p_value"],
                                         frame["relative_p_value"])  # Fisher's test: ratio 1 <=> difference 0
    frame.loc[small, ["seq_p_value", "seq_ci_low", "seq_ci_high", "cuped_absolute_lift", "cuped_ci_low",
                      "cuped_ci_high", "cuped_p_value", "cuped_variance_reduction", "cuped_theta"]] = np.nan


def _add_margin_tests(frame: pd.DataFrame, normal_ok: np.ndarray, diff: np.ndarray, se: np.ndarray,
                      control_scale: np.ndarray, df_cont: np.ndarray) -> None:
    """Guardrails with a margin: the non-inferiority test and the test of harm beyond the margin, on the
    difference (unpooled `se`) with the margin times |control mean| as its bound (Welch t for continuous
    metrics, unpooled z otherwise)."""
    margin = frame["margin"].to_numpy(float)
    bound = margin * control_scale
    harm = frame["direction"].to_numpy()
    z_tests = stats.margin_tests(diff, se, bound, harm)
    t_tests = stats.margin_tests(diff, se, bound, harm, df_cont)
    has, is_cont = ~np.isnan(margin), frame["kind"].to_numpy() == "continuous"
    frame["margin_reason"] = np.select(
        [~has, (frame["reason"] != "").to_numpy(), ~normal_ok, stats.is_zero_scale(control_scale)],
        ["", frame["reason"], "not with few users or conversions: it relies on the normal approximation",
         "control mean is 0: a relative margin has no scale"], "")
    usable = has & (frame["margin_reason"] == "").to_numpy()
    frame["margin_bound"] = np.where(usable, bound, np.nan)
    frame["margin_p_within"] = np.where(usable, np.where(is_cont, t_tests.p_within, z_tests.p_within), np.nan)
    frame["margin_p_beyond"] = np.where(usable, np.where(is_cont, t_tests.p_beyond, z_tests.p_beyond), np.nan)


def _add_cuped(frame: pd.DataFrame, ok: np.ndarray, alt: np.ndarray, alpha: np.ndarray) -> None:
    cols = {f"{k}_{s}": frame[f"{k}_{s}"].to_numpy(float) for s in ("c", "t") for k in
            ("count", "main_sum", "main_sum_squares", "covariate_sum", "covariate_sum_squares",
             "main_covariate_sum_product")}
    adj = stats.cuped(*(cols[f"{k}_{s}"] for s in ("c", "t") for k in
                        ("count", "main_sum", "main_sum_squares", "covariate_sum", "covariate_sum_squares",
                         "main_covariate_sum_product")))
    z, p = stats.unpooled_ztest(adj.control, adj.treatment, alt)
    lifted = stats.lift(adj.control, adj.treatment, alpha, alt)
    has_cov = ~np.isnan(cols["covariate_sum_c"]) & ~np.isnan(cols["covariate_sum_t"])
    usable = ok & has_cov & (frame["kind"].to_numpy() != "ratio")
    frame["cuped_reason"] = np.select(
        [~ok, frame["kind"].to_numpy() == "ratio", ~has_cov], [frame["reason"], "not applied to ratio metrics",
                                                               "no pre-exposure covariate in the counts"], "")
    frame["cuped_absolute_lift"] = np.where(usable, lifted.absolute, np.nan)
    frame["cuped_ci_low"], frame["cuped_ci_high"] = (np.where(usable, b, np.nan) for b in lifted.absolute_ci)
    frame["cuped_p_value"] = np.where(usable, p, np.nan)
    frame["cuped_variance_reduction"] = np.where(usable, adj.variance_reduction, np.nan)
    frame["cuped_theta"] = np.where(usable, adj.theta, np.nan)


def srm(observed: dict[str, float], split: dict[str, float], alpha: float) -> dict[str, Any]:
    """Sample-ratio check of users per registered variant, shown before any lift: Pearson's chi-square, or the
    exact test (binomial, multinomial) when an expected count is under 5."""
    total = sum(observed.values())
    result: dict[str, Any] = {"observed": observed, "expected_share": split, "alpha": alpha,
                              "chi2": None, "p_value": None, "test": "chi_square", "status": "ok", "reason": None}
    counts, shares = np.array([observed[v] for v in split]), np.array(list(split.values()))
    if total == 0:
        result.update(status="not_computable", reason="no users: nothing to compare with the split")
        return result
    if min(split.values()) * total < PROPORTION_MIN_COUNT:
        p = stats.srm_exact(counts, shares)
        if p is None:
            result.update(status="not_computable", reason=f"{total:.0f} users in {len(split)} arms: too few for "
                          "chi-square and too many allocations to enumerate for the exact test")
            return result
        result.update(p_value=p, test="exact_binomial" if len(split) == 2 else "exact_multinomial",
                      status="flagged" if p < alpha else "ok")
        return result
    chi2, p = stats.srm_chisquare(counts, shares)
    result.update(chi2=chi2, p_value=p, status="flagged" if p < alpha else "ok")
    return result


def _arm(kind: str, r: dict[str, Any]) -> stats.Arm:
    if kind == "proportion":
        return stats.proportion_arm(r["count"], r["main_sum"])
    if kind == "continuous":
        return stats.mean_arm(r["count"], r["main_sum"], r["main_sum_squares"])
    return stats.ratio_arm(*(r[c] for c in ("count", "main_sum", "main_sum_squares", "denominator_sum",
                                            "denominator_sum_squares", "main_denominator_sum_product")))


def bayesian(exp: Experiment, by_variant: dict[str, dict[str, Any]], settings: Settings) -> dict[str, Any]:
    """Posterior view and bandit view of the primary metric (control first)."""
    use = exp.primary
    kind = use.metric.kind
    names = [exp.control, *exp.treatments]
    if any(by_variant.get(v, {}).get("count", 0) < 2 for v in names):
        return {"status": "not_computable", "reason": "every arm needs at least 2 users"}
    arms = [_arm(kind, by_variant[v]) for v in names]
    if kind != "proportion" and any(not np.isfinite(a.var_of_mean) or a.var_of_mean == 0 for a in arms):
        return {"status": "not_computable", "reason": "an arm has zero or undefined variance"}
    post = stats.posterior(arms, kind == "proportion", use.direction != "decrease", settings.prior_alpha,
                           settings.prior_beta)
    control_mean = float(arms[0].mean)
    loss_rel = stats.divide(post.expected_loss, np.nan if stats.is_zero_scale(control_mean) else abs(control_mean))
    safe = [names[i] for i in range(len(names)) if loss_rel[i] < settings.expected_loss_threshold]
    leader = names[int(post.prob_best.argmax())]
    extra = {"gaussian_effect": _gaussian_effect(arms, names, use.direction != "decrease", settings)} if (
        settings.gaussian_view) else {}
    return {
        "status": "ok", "metric": use.metric.name, **extra,
        "prior": ({"family": "beta", "alpha": settings.prior_alpha, "beta": settings.prior_beta}
                  if kind == "proportion" else {"family": "normal approximation, flat prior"}),
        "arms": [{"variant": v, "prob_beats_control": _num(post.prob_beats_control[i]),
                  "prob_best": _num(post.prob_best[i]), "expected_loss": _num(post.expected_loss[i]),
                  "expected_loss_relative": _num(loss_rel[i]),
                  "posterior_mean": _num(post.mean[i]),
                  "credible_interval_95": [_num(post.interval_95[0][i]), _num(post.interval_95[1][i])]}
                 for i, v in enumerate(names)],
        "expected_loss_threshold": settings.expected_loss_threshold,
        "can_stop": bool(safe), "choose": leader if leader in safe else (safe[0] if safe else None),
        "bandit": {"thompson_weights": {v: _num(post.prob_best[i]) for i, v in enumerate(names)},
                   "leader": leader, "value_remaining_p95": _num(post.value_remaining_p95),
                   "value_remaining_threshold": settings.value_remaining_threshold,
                   "can_stop": bool(post.value_remaining_p95 < settings.value_remaining_threshold)},
    }


def _gaussian_effect(arms: list[stats.Arm], names: list[str], higher_is_better: bool,
                     settings: Settings) -> dict[str, Any]:
    """GrowthBook's Bayesian view of each treatment against control (a different model: see stats.gaussian_effect)."""
    out = []
    for variant, arm in zip(names[1:], arms[1:], strict=True):
        if stats.is_zero_scale(arms[0].mean):
            out.append({"variant": variant, "status": "not_computable",
                        "reason": "control mean is 0: the relative lift is undefined"})
            continue
        post = stats.gaussian_effect(arms[0], arm, higher_is_better, settings.effect_prior_mean,
                                     settings.effect_prior_sd)
        half = float(stats.critical_value(0.05, "two-sided")) * post.sd
        out.append({"variant": variant, "status": "ok", "prob_beats_control": _num(post.prob_beats_control),
                    "relative_lift": _num(post.mean), "credible_interval_95": [_num(post.mean - half),
                                                                               _num(post.mean + half)],
                    "risk_relative": {"choose_treatment": _num(post.risk_treatment),
                                      "keep_control": _num(post.risk_control)}})
    prior = ({"family": "flat, improper"} if settings.effect_prior_sd is None else
             {"family": "normal", "mean": settings.effect_prior_mean, "sd": settings.effect_prior_sd})
    return {"model": "normal posterior of the relative lift (GrowthBook)", "prior_on_relative_lift": prior,
            "arms": out}


def novelty(exp: Experiment, days: dict[int, dict[str, dict[str, Any]]], settings: Settings) -> dict[str, Any]:
    """Relative lift of the primary metric per day since first exposure, and its trend."""
    use = exp.primary
    points = []
    for k, by_variant in sorted(days.items()):
        if exp.control not in by_variant:
            continue
        c = by_variant[exp.control]
        for variant in exp.treatments:
            if variant not in by_variant:
                continue
            t = by_variant[variant]
            ca, ta = _arm(use.metric.kind, c), _arm(use.metric.kind, t)
            lifted = stats.lift(ca, ta, exp.alpha, "two-sided")
            var = float(lifted.relative_se**2)
            enough = min(c["count"], t["count"]) >= settings.min_users_per_arm
            if enough and np.isfinite(lifted.relative) and np.isfinite(var) and var > 0:
                points.append({"day": int(k), "variant": variant, "relative_lift": float(lifted.relative),
                               "variance": var,
                               "users": {"control": float(c["count"]), "treatment": float(t["count"])}})
    result: dict[str, Any] = {"metric": use.metric.name, "points": [
        {k: v for k, v in p.items() if k != "variance"} for p in points]}
    trends = []
    for variant in exp.treatments:
        mine = [p for p in points if p["variant"] == variant]
        if len(mine) < settings.novelty_min_days:
            trends.append({"variant": variant, "status": "not_computable",
                           "reason": f"{len(mine)} day(s) with enough users per arm; need {settings.novelty_min_days}"})
            continue
        trend = stats.weighted_trend(np.array([p["day"] for p in mine], float),
                                     np.array([p["relative_lift"] for p in mine]),
                                     np.array([p["variance"] for p in mine]))
        flagged = trend.p_value < exp.alpha
        label = ("novelty (lift fades with exposure age)" if trend.slope < 0
                 else "primacy (lift grows with exposure age)")
        trends.append({"variant": variant, "status": "flagged" if flagged else "ok",
                       "slope_per_day": trend.slope, "slope_se": trend.slope_se, "p_value": trend.p_value,
                       "pattern": label if flagged else None})
    result["trend"] = trends
    return result


def _comparison(row: dict[str, Any]) -> dict[str, Any]:
    ok = row["reason"] == ""
    out = {
        "variant": row["variant"], "control": row["control"], "test": row["test"],
        "alternative": row["alternative"], "alpha": row["alpha"], "ci_level": _num(row["ci_level"]),
        "users": {"control": _num(row["count_c"]), "treatment": _num(row["count_t"])},
        "control_mean": _num(row["control_mean"]), "treatment_mean": _num(row["treatment_mean"]),
        "status": "ok" if ok else "not_computable", "reason": None if ok else row["reason"],
        "small_sample": bool(row["small_sample"]), "method_note": SMALL_SAMPLE if row["small_sample"] else None,
        "rate_ci": ({"control": [_num(row["rate_ci_c_low"]), _num(row["rate_ci_c_high"])],
                     "treatment": [_num(row["rate_ci_t_low"]), _num(row["rate_ci_t_high"])]}
                    if row["kind"] == "proportion" else None),
        "absolute_lift": _num(row["absolute_lift"]) if ok else None,
        "absolute_ci": [_num(row["absolute_ci_low"]), _num(row["absolute_ci_high"])] if ok else None,
        "relative_lift": _num(row["relative_lift"]) if row["relative_reason"] == "" else None,
        "relative_ci": ([_num(row["relative_ci_low"]), _num(row["relative_ci_high"])]
                        if row["relative_reason"] == "" else None),
        "relative_reason": row["relative_reason"] or None,
        "relative_p_value": _num(row["relative_p_value"]) if row["relative_reason"] == "" else None,
        "statistic": _num(row["statistic"]), "df": _num(row["df"]),
        "p_value": _num(row["p_value"]), "p_value_adjusted": _num(row["p_value_adjusted"]),
        "sequential": {"status": "ok" if row["seq_reason"] == "" else "not_computable",
                       "reason": row["seq_reason"] or None, "p_value": _num(row["seq_p_value"]),
                       "ci": [_num(row["seq_ci_low"]), _num(row["seq_ci_high"])]
                       if row["seq_reason"] == "" else None},
        "cuped": {"status": "ok" if row["cuped_reason"] == "" else "not_computable",
                  "reason": row["cuped_reason"] or None, "absolute_lift": _num(row["cuped_absolute_lift"]),
                  "ci": [_num(row["cuped_ci_low"]), _num(row["cuped_ci_high"])] if row["cuped_reason"] == "" else None,
                  "p_value": _num(row["cuped_p_value"]), "variance_reduction": _num(row["cuped_variance_reduction"]),
                  "theta": _num(row["cuped_theta"])},
    }
    return out


def _significant(comp: dict[str, Any], p_key: str, alpha: float) -> bool:
    p = comp["p_value_adjusted"] if p_key == "fixed" else comp["sequential"]["p_value"]
    return p is not None and p < alpha


def _good_side(comp: dict[str, Any], direction: str) -> bool:
    """The estimate moved the way the hypothesis wants (`any`: up counts as good)."""
    lift = comp["absolute_lift"] or 0.0
    return lift < 0 if direction == "decrease" else lift > 0


def _guardrail(comp: dict[str, Any], row: dict[str, Any], use: MetricUse, alpha: float) -> dict[str, Any]:
    """Did a guardrail hold? Without a margin it is breached when the harm is significant (else no harm was
    detected, which is not proof of none). With a margin it holds only when shown within the margin
    (non-inferiority) and is breached when the harm beyond the margin is significant; otherwise not shown yet."""
    if comp["status"] != "ok":
        return {"margin": use.margin, "status": "not_computable", "reason": comp["reason"]}
    if use.margin is None:
        harmed = comp["p_value"] is not None and comp["p_value"] < alpha and _moved(comp, use.direction)
        return {"margin": None, "status": "breached" if harmed else "no_harm_detected"}
    if row["margin_reason"]:
        return {"margin": use.margin, "status": "not_computable", "reason": row["margin_reason"]}
    within, beyond = float(row["margin_p_within"]), float(row["margin_p_beyond"])
    status = "breached" if beyond < alpha else ("within_margin" if within < alpha else "not_shown")
    return {"margin": use.margin, "bound": _num(row["margin_bound"]), "status": status,
            "p_value_within": _num(within), "p_value_beyond": _num(beyond)}


def _harmful(comp: dict[str, Any], direction: str) -> bool:
    """The primary metric's interval excludes 0 on the side opposite to the wanted `direction`."""
    return direction != "any" and _moved(comp, "decrease" if direction == "increase" else "increase")


def _moved(comp: dict[str, Any], move: str) -> bool:
    """The interval excludes 0 on the side of `move` (decrease, increase, or change: either side)."""
    ci = comp["absolute_ci"]
    if ci is None or None in ci:
        return False
    return {"decrease": ci[1] < 0, "increase": ci[0] > 0, "change": ci[0] > 0 or ci[1] < 0}[move]


def power_view(exp: Experiment, comps: list[dict[str, Any]], days_running: int) -> dict[str, Any]:
    """Sample size per arm for the registered MDE, the MDE the current samples give, days still needed."""
    out: list[dict[str, Any]] = []
    for r in (c for c in comps if c["metric"] == exp.primary.metric.name):
        base = r["control_mean"]
        if not np.isfinite(base) or stats.is_zero_scale(base) or r["count_c"] < 2:
            out.append({"variant": r["variant"], "status": "not_computable",
                        "reason": "control mean is 0 or undefined: a relative MDE has no scale"})
            continue
        delta = exp.mde * base
        if r["kind"] == "proportion" and not 0 < base * (1 + exp.mde) < 1:
            out.append({"variant": r["variant"], "status": "not_computable",
                        "reason": f"control rate {base:.1%} cannot move by {exp.mde:+.0%} within 0..100%"})
            continue
        if r["kind"] == "proportion":
            var_c, target = base * (1 - base), base * (1 + exp.mde)
            var_t = target * (1 - target)
        else:
            control = {k[:-2]: v for k, v in r.items() if k.endswith("_c")}
            var_c = var_t = float(_arm(r["kind"], control).variance)
        required = stats.required_n_per_arm(var_c, var_t, delta, exp.alpha, exp.power, r["alternative"])
        if not np.isfinite(required):  # (mde x mean)^2 underflows (a tiny mde of a tiny mean) or the variance overflows
            out.append({"variant": r["variant"], "status": "not_computable",
                        "reason": f"control mean {base:.3g} is too near 0 for a relative MDE: the sample size "
                                  "does not fit in a float"})
            continue
        arm_c = stats.Arm(np.float64(r["count_c"]), np.float64(base), np.float64(var_c))
        arm_t = stats.Arm(np.float64(max(r["count_t"], 1)), np.float64(base), np.float64(var_t))
        mde_now = stats.minimum_detectable_effect(arm_c, arm_t, exp.alpha, exp.power, r["alternative"])
        power_now = stats.power_at(arm_c, arm_t, delta, exp.alpha, r["alternative"])
        smallest = min(r["count_c"], r["count_t"])
        rate = smallest / max(days_running, 1)
        remaining = max(float(required) - smallest, 0.0)
        out.append({"variant": r["variant"], "status": "ok", "mde_relative": exp.mde, "alpha": exp.alpha,
                    "power": exp.power, "required_users_per_arm": _num(required), "users_per_arm": smallest,
                    "mde_relative_now": _num(mde_now / abs(base)), "power_now": _num(power_now),
                    "reached": bool(remaining == 0),
                    "days_needed": 0 if remaining == 0 else (math.ceil(remaining / rate) if rate > 0 else None)})
    return {"metric": exp.primary.metric.name, "arms": out}


def _verdict(exp: Experiment, entry: dict[str, Any], settings: Settings) -> dict[str, str]:
    if entry["srm"]["status"] == "flagged":
        obs = entry["srm"]["observed"]
        total = sum(obs.values())
        shares = ", ".join(f"{v} {obs[v] / total:.1%} (expected {s:.0%})" for v, s in exp.variants.items())
        return {"decision": "do_not_trust", "text": f"Do not read these results: sample ratio mismatch "
                f"({entry['srm']['test'].replace('_', ' ')} p {_p(entry['srm']['p_value'])}, flagged below "
                f"{settings.srm_alpha}): {shares}. "
                "Check the allocator and exposure logging before anything else."}
    primary = next(m for m in entry["metrics"] if m["role"] == "primary")
    comps = [c for c in primary["comparisons"] if c["status"] == "ok"]
    if not comps:
        reason = primary["comparisons"][0]["reason"] if primary["comparisons"] else "no comparison"
        return {"decision": "not_computable", "text": f"No verdict: the primary metric {primary['metric']} cannot be "
                f"tested ({reason})."}
    power = {p["variant"]: p for p in entry["power"]["arms"]}
    ended = entry["status"] == "ended"
    horizon = ended or all(power.get(c["variant"], {}).get("reached") for c in comps)
    basis = "fixed" if horizon else "sequential"
    how = "fixed-horizon test" if horizon else "always-valid sequential test (safe to read daily)"
    window = entry["window"]
    prefix = f"Ended {exp.end_date}: final result. " if ended else (
        f"Early (day {window['days_running']} of at least {exp.min_days}). " if window["early"] else "")
    direction = primary["direction"]
    winners = [c for c in comps if _significant(c, basis, exp.alpha) and _good_side(c, direction)]
    # harm stops a test at any time: the always-valid test may be read daily, also for bad news
    losers = [c for c in comps if (horizon and _harmful(c, direction))
              or (_significant(c, basis, exp.alpha) and not _good_side(c, direction))]
    guarded = [(g, c) for g in entry["metrics"] if g["role"] == "guardrail" for c in g["comparisons"]]
    breached = [g for g, c in guarded if c["guardrail"]["status"] == "breached"]
    unproven = [g for g, c in guarded if c["guardrail"]["margin"] and c["guardrail"]["status"] != "within_margin"]

    def describe(c: dict[str, Any]) -> str:
        ci = c["relative_ci"] if basis == "fixed" else None
        interval = f" ({c['ci_level']:.0%} CI {_pct(ci[0])} to {_pct(ci[1])})" if ci and None not in ci else ""
        p = c["p_value_adjusted"] if basis == "fixed" else c["sequential"]["p_value"]
        return (f"{c['variant']} {primary['metric']} {_pct(c['relative_lift'])}{interval}, "
                f"p {_p(p)} ({how})")

    if winners and not breached and not unproven and not entry["window"]["early"]:
        best = min(winners, key=lambda c: c["p_value_adjusted"] if basis == "fixed" else c["sequential"]["p_value"])
        return {"decision": "launch", "text": prefix + f"Launch {best['variant']}: {describe(best)}; guardrails hold."}
    if winners and breached:
        names = ", ".join(sorted({g["metric"] for g in breached}))
        return {"decision": "guardrail_breached", "text": prefix + f"Do not launch: {describe(winners[0])}, but "
                f"guardrail(s) {names} moved the wrong way."}
    if winners and unproven and not entry["window"]["early"]:
        names = ", ".join(sorted({f"{g['metric']} (margin {g['margin']:.1%})" for g in unproven}))
        if ended:
            return {"decision": "guardrail_not_shown", "text": prefix + f"Do not launch on this evidence: "
                    f"{describe(winners[0])}, but guardrail(s) {names} were not shown to stay within their margin."}
        return {"decision": "keep_running", "text": prefix + f"Promising: {describe(winners[0])}. Keep running "
                f"until guardrail(s) {names} are shown to stay within their margin."}
    if winners:
        return {"decision": "keep_running", "text": prefix + f"Promising: {describe(winners[0])}. Keep running to "
                f"the minimum of {exp.min_days} days before deciding."}
    if losers:
        return {"decision": "stop_harm", "text": prefix + f"Stop: {describe(losers[0])}: {losers[0]['variant']} "
                f"makes {primary['metric']} worse."}
    if horizon:
        return {"decision": "stop_no_effect", "text": prefix + f"No detectable effect on {primary['metric']} at the "
                f"planned sample size ({exp.power:.0%} power for {_pct(exp.mde)}): keep {exp.control}."}
    needed = [p.get("days_needed") for p in power.values() if p.get("status") == "ok"]
    more = f"~{max(n for n in needed if n is not None)} more day(s) at current traffic" if any(
        n is not None for n in needed) else "more data"
    lead = min(comps, key=lambda c: c["sequential"]["p_value"] if c["sequential"]["p_value"] is not None else 1.0)
    seq_p = lead["sequential"]["p_value"]
    seen = (f" ({lead['variant']} {_pct(lead['relative_lift'])}; always-valid p {_p(seq_p)}, "
            f"fixed-horizon adjusted p {_p(lead['p_value_adjusted'])}, "
            "which is not valid to act on before the planned sample size)")
    return {"decision": "keep_running", "text": prefix + f"Keep running: no significant effect on "
            f"{primary['metric']} yet{seen}; {more} to reach {exp.power:.0%} power for {_pct(exp.mde)}."}


def _base_entry(exp: Experiment, day: dt.date) -> dict[str, Any]:
    return {"id": exp.id, "hypothesis": exp.hypothesis, "owner": exp.owner, "variants": exp.variants,
            "control": exp.control, "start_date": str(exp.start_date) if exp.start_date else None,
            "end_date": str(exp.end_date) if exp.end_date else None, "status": exp.status_on(day) if exp.valid
            else "invalid_registry_entry", "warnings": [], "errors": list(exp.errors)}


def build_report(counts: pd.DataFrame, registry: Registry, day: dt.date, experiments: list[str] | None = None,
                 diagnostics: pd.DataFrame | None = None, history: pd.DataFrame | None = None,
                 code_version: str = "unknown", source: str = "counts") -> dict[str, Any]:
    """The report for `day`: one entry per selected experiment, never failing as a whole on one bad entry.

    Counts no report may be built from (`counts.normalise`) raise `CountsError`, naming `source`, row and column."""
    counts = normalise(counts, source, {name: m.kind for name, m in registry.metrics.items()},
                       {e.id for e in registry.experiments})
    diagnostics = empty_diagnostics() if diagnostics is None else diagnostics
    settings = registry.settings
    selected = registry.select(experiments)
    analysable = [e for e in selected if e.valid and e.status_on(day) != "not_started"]
    comps = compare(counts, analysable, settings)
    comps = _apply_history(comps, history, day)
    pieces = _split(counts, comps, diagnostics, analysable)
    entries = []
    for exp in selected:
        entry = _base_entry(exp, day)
        entries.append(entry)
        if not exp.valid:
            entry["verdict"] = {"decision": "invalid", "text": "Not analysed: invalid registry entry: "
                                + "; ".join(exp.errors)}
            continue
        if entry["status"] == "not_started":
            entry["verdict"] = {"decision": "not_started", "text": f"Starts on {exp.start_date}; nothing to report."}
            continue
        _analyse(exp, entry, *pieces(exp), settings, day)
    return {"schema_version": SCHEMA_VERSION, "report_date": day.isoformat(),
            "generated": {"code_version": code_version, "correction": settings.correction,
                          "srm_alpha": settings.srm_alpha, "min_users_per_arm": settings.min_users_per_arm},
            "experiments": entries}


def _apply_history(comps: pd.DataFrame, history: pd.DataFrame | None, day: dt.date) -> pd.DataFrame:
    """Always-valid p-values are a running minimum over every night the experiment was read."""
    if history is None or history.empty:
        return comps
    past = history[pd.to_datetime(history["report_date"]).dt.date < day]
    best = past.groupby(["experiment_id", "variant", "metric"])["seq_p_value"].min().rename("past_seq_p")
    comps = comps.merge(best, on=["experiment_id", "variant", "metric"], how="left")
    comps["seq_p_value"] = np.fmin(comps["seq_p_value"], comps["past_seq_p"].where(comps["seq_reason"] == ""))
    return comps.drop(columns="past_seq_p")


def _split(counts: pd.DataFrame, comps: pd.DataFrame, diagnostics: pd.DataFrame,
           experiments: list[Experiment]) -> Any:
    """Group every input by experiment once (records, not DataFrames: 200 experiments stay fast)."""
    primary = {e.id: e.primary.metric.name for e in experiments}
    totals: dict[str, dict[str, dict[str, Any]]] = {}
    days: dict[str, dict[int, dict[str, dict[str, Any]]]] = {}
    for rec in counts[counts["experiment_id"].isin(primary)].to_dict("records"):
        if rec["metric"] != primary[rec["experiment_id"]]:
            continue
        if rec["day"] is pd.NA or rec["day"] is None:
            totals.setdefault(rec["experiment_id"], {})[rec["variant"]] = rec
        else:
            days.setdefault(rec["experiment_id"], {}).setdefault(int(rec["day"]), {})[rec["variant"]] = rec
    comp_recs: dict[str, list[dict[str, Any]]] = {}
    for rec in comps.to_dict("records"):
        comp_recs.setdefault(rec["experiment_id"], []).append(rec)
    diag_recs: dict[str, list[dict[str, Any]]] = {}
    for rec in diagnostics.to_dict("records"):
        diag_recs.setdefault(rec["experiment_id"], []).append(rec)
    return lambda exp: (totals.get(exp.id, {}), comp_recs.get(exp.id, []), days.get(exp.id, {}),
                        diag_recs.get(exp.id, []))


def _analyse(exp: Experiment, entry: dict[str, Any], totals: dict[str, dict[str, Any]], comps: list[dict[str, Any]],
             days: dict[int, dict[str, dict[str, Any]]], diag: list[dict[str, Any]], settings: Settings,
             day: dt.date) -> None:
    warnings = entry["warnings"]
    users = {v: float(r["count"]) for v, r in totals.items()}
    unknown = sorted(set(users) - set(exp.variants), key=lambda v: -users[v])
    names = sum(d["users"] for d in diag if d["kind"] == "unregistered_variant_names")
    for variant in unknown[:MAX_LISTED_VARIANTS]:
        also = f" ({names:.0f} distinct names logged)" if names and variant == UNREGISTERED else ""
        warnings.append(f"variant {variant!r}{also} is not in the registry: its {users[variant]:.0f} users are "
                        "excluded")
    if len(unknown) > MAX_LISTED_VARIANTS:
        rest = unknown[MAX_LISTED_VARIANTS:]
        warnings.append(f"{len(rest)} more unregistered variants ({sum(users[v] for v in rest):.0f} users) "
                        "are excluded")
    multi = float(sum(d["users"] for d in diag if d["kind"] == "multi_variant_users"))
    if multi:
        warnings.append(f"{multi:.0f} users were seen in more than one variant and are excluded")
    observed = {v: float(users.get(v, 0.0)) for v in exp.variants}
    last = exp.analysis_end(day)
    days_running = (last - exp.start_date).days + 1
    early = days_running < exp.min_days
    entry["window"] = {"analysed_from": str(exp.start_date), "analysed_to": str(last), "days_running": days_running,
                       "early": early}
    entry["exposure"] = {"users": observed, "unregistered_variant_users": {
                         v: float(users[v]) for v in unknown[:MAX_LISTED_VARIANTS]},
                         "multi_variant_users_excluded": multi}
    entry["collisions"] = sorted(({"experiment_id": d["other"], "users": float(d["users"])}
                                  for d in diag if d["kind"] == "collision"), key=lambda c: c["experiment_id"])
    if entry["status"] == "ended":
        warnings.append(f"ended on {exp.end_date}: events after that date are not analysed")
    if early:
        warnings.append(f"early: day {days_running} of at least {exp.min_days}; weekly cycles are not yet covered")
    entry["srm"] = srm(observed, exp.variants, settings.srm_alpha)
    if sum(observed.values()) == 0:
        warnings.append("no exposures logged for the registered variants")
    for variant, n in observed.items():
        if n == 0 and sum(observed.values()) > 0:
            warnings.append(f"variant {variant} has no users: only one side of the test is observed")
    entry["metrics"] = []
    for use in exp.metrics:
        metric_rows = [c for c in comps if c["metric"] == use.metric.name]
        comparisons = [_comparison(r) for r in metric_rows]
        for c, row in zip(comparisons, metric_rows, strict=True):
            if use.role == "guardrail":
                c["guardrail"] = _guardrail(c, row, use, exp.alpha)
                c["guardrail_breached"] = c["guardrail"]["status"] == "breached"
                if c["guardrail_breached"]:
                    beyond = f" beyond its {use.margin:.1%} margin" if use.margin else ""
                    p = c["guardrail"]["p_value_beyond"] if use.margin else c["p_value"]
                    warnings.append(f"guardrail {use.metric.name} moved ({use.direction}){beyond} in "
                                    f"{c['variant']}: {_pct(c['relative_lift'])}, p {_p(p)}")
        arms = {exp.control: _num(metric_rows[0]["control_mean"]) if metric_rows else None}
        arms |= {r["variant"]: _num(r["treatment_mean"]) for r in metric_rows}
        entry["metrics"].append({"metric": use.metric.name, "role": use.role, "kind": use.metric.kind,
                                 "direction": use.direction, "margin": use.margin,
                                 "description": use.metric.description,
                                 "arm_means": arms, "comparisons": comparisons})
    for comp in (c for m in entry["metrics"] for c in m["comparisons"]):
        if comp["status"] == "not_computable":
            warnings.append(f"{comp['variant']}: not computable: {comp['reason']}")
            break
    entry["power"] = power_view(exp, comps, days_running)
    entry["bayesian"] = bayesian(exp, totals, settings)
    entry["novelty"] = novelty(exp, days, settings)
    for trend in entry["novelty"]["trend"]:
        if trend["status"] == "flagged":
            warnings.append(f"{trend['variant']}: {trend['pattern']}, slope {trend['slope_per_day']:+.3f}/day "
                            f"(p {_p(trend['p_value'])})")
    entry["verdict"] = _verdict(exp, entry, settings)
