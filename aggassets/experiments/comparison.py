"""Every metric's variants against the control at once: tests, Holm, power and the reasons for NaN."""

from dataclasses import dataclass

import numpy as np

from aggassets.stats.multiple import holm_adjust, holm_confidence_interval
from aggassets.stats.power import false_positive_risk, power_from_sample_size, required_sample_size
from aggassets.stats.ratio import MetricMoments
from aggassets.stats.ttest import WelchTest, absolute_welch, relative_welch, two_sided_p

EMPTY = "empty variant: denominator is 0"
FEW_UNITS = "fewer than 2 units: variance undefined"
NEGATIVE_VARIANCE = "negative variance estimate: sums of squares inconsistent with the sums"
CONTROL_INVALID = "control variant has no usable mean or variance"
ZERO_CONTROL_MEAN = "zero control mean: relative difference undefined"
ZERO_VARIANCE = "zero variance in both variants: no test"
ZERO_RELATIVE_SE = "relative standard error is 0 (treatment mean and variance are 0): no relative test"
OUT_OF_RANGE = "statistics beyond float64's range (values too large or too small to square): no test"


@dataclass(frozen=True)
class ComparisonInput:
    """Per metric (rows) and variant (columns) inputs of the comparison."""

    count: np.ndarray
    sum_value: np.ndarray
    moments: MetricMoments
    sample_size: np.ndarray
    minimum_effect: np.ndarray
    control: int
    confidence_level: float
    null_hypothesis_rate: float | None


def _join(parts: list[tuple[np.ndarray, str]], shape: tuple[int, ...]) -> np.ndarray:
    """Reason texts, '; '-separated, where each mask holds."""
    out = np.full(shape, "", dtype=object)
    for mask, text in parts:
        mask = np.broadcast_to(mask, shape)
        out = np.where(mask, np.where(out == "", text, out + "; " + text), out)
    return out


def _nan_where(test: WelchTest, mask: np.ndarray, keep_diff: bool) -> WelchTest:
    """The test with NaN where `mask` holds (diff and standard error kept when `keep_diff`: a difference
    without a test; without the difference, its standard error means nothing either)."""

    def blank(a: np.ndarray) -> np.ndarray:
        return np.where(mask, np.nan, a)

    diff, error = (test.diff, test.standard_error) if keep_diff else (blank(test.diff), blank(test.standard_error))
    return WelchTest(
        diff, error, blank(test.test_stat), blank(test.p_value),
        blank(test.confidence_interval), test.degrees_of_freedom,
    )  # fmt: skip


def _holm(test: WelchTest, columns: np.ndarray, level: float, compat: bool) -> WelchTest:
    """Holm-adjusted p-values and widened intervals on the given columns of every row."""
    p, ci = test.p_value.copy(), test.confidence_interval.copy()
    raw = p[:, columns]
    adjusted = holm_adjust(raw, count_nan=compat)
    p[:, columns] = adjusted
    se, df, stat = (a[:, columns] for a in (test.standard_error, test.degrees_of_freedom, test.test_stat))
    ci[:, columns] = holm_confidence_interval(raw, adjusted, se, df, level, compat, stat)
    return WelchTest(test.diff, test.standard_error, test.test_stat, p, ci, test.degrees_of_freedom)


def _reasons(x: ComparisonInput) -> tuple[list[tuple[np.ndarray, str]], dict[str, np.ndarray]]:
    """Masks of every documented degenerate case."""
    m, c = x.moments, x.control
    empty = (x.count == 0) | (m.n == 0)
    few = ~empty & (m.n < 2)
    negative = ~empty & (m.variance < 0)
    no_mean = empty | ~np.isfinite(m.mean)
    bad = no_mean | few | negative
    bad_control = np.broadcast_to(bad[:, c : c + 1], bad.shape)
    no_mean = no_mean | np.broadcast_to(no_mean[:, c : c + 1], bad.shape)
    std_c = m.std[:, c : c + 1]
    zero_var = ~bad & ~bad_control & (m.std == 0) & (std_c == 0)
    zero_mean = ~bad_control & (m.mean[:, c : c + 1] == 0)
    parts = [
        (empty, EMPTY), (few, FEW_UNITS), (negative, NEGATIVE_VARIANCE),
        (bad_control & ~bad, CONTROL_INVALID), (zero_mean & ~no_mean, ZERO_CONTROL_MEAN), (zero_var, ZERO_VARIANCE),
    ]  # fmt: skip
    masks = {"empty": empty, "no_mean": no_mean, "bad": bad | bad_control, "zero_var": zero_var}
    masks["zero_mean"] = zero_mean
    return parts, masks


def _out_of_range(rel: WelchTest, ab: WelchTest, parts: list[tuple[np.ndarray, str]]) -> tuple[WelchTest, WelchTest]:
    """Rows without a reason whose test overflowed or underflowed (squares of values beyond ~1e154 or
    below ~1e-154 in the degrees of freedom), the control's own row too: that test NaN (its difference
    kept, its standard error only when finite), with OUT_OF_RANGE in `parts`."""
    explained = np.zeros(rel.diff.shape, dtype=bool)
    for mask, _ in parts:
        explained = explained | np.broadcast_to(mask, explained.shape)

    def broken(t: WelchTest) -> np.ndarray:
        fields = (t.standard_error, t.degrees_of_freedom, t.test_stat, t.p_value, t.confidence_interval)
        finite = np.logical_and.reduce([np.isfinite(f) for f in fields])
        return ~explained & ~(finite & (t.degrees_of_freedom > 0))

    def blanked(t: WelchTest, bad: np.ndarray) -> WelchTest:
        t = _nan_where(t, bad, keep_diff=True)
        error = np.where(bad & ~np.isfinite(t.standard_error), np.nan, t.standard_error)
        return WelchTest(t.diff, error, t.test_stat, t.p_value, t.confidence_interval, t.degrees_of_freedom)

    bad_rel, bad_ab = broken(rel), broken(ab)
    parts.append((bad_rel | bad_ab, OUT_OF_RANGE))
    return blanked(rel, bad_rel), blanked(ab, bad_ab)


def compare(x: ComparisonInput, compat: bool = False) -> dict[str, np.ndarray]:
    """All comparison columns; `compat` reproduces ep-stats 2.5.10 including its faults."""
    m, c, level = x.moments, x.control, x.confidence_level
    mc, sc, nc = m.mean[:, c : c + 1], m.std[:, c : c + 1], m.n[:, c : c + 1]
    rel = relative_welch(mc, sc, nc, m.mean, m.std, m.n, level, signed_control=compat)
    ab = absolute_welch(mc, sc, nc, m.mean, m.std, m.n, level)
    parts, masks = _reasons(x)
    mean, std = m.mean, m.std
    if compat:
        stat = np.where(np.isinf(rel.test_stat) & (x.sum_value <= 10), 0.0, rel.test_stat)
        rel = WelchTest(rel.diff, rel.standard_error, stat, two_sided_p(stat, rel.degrees_of_freedom, epstats=True),
                        rel.confidence_interval, rel.degrees_of_freedom)  # fmt: skip
    else:
        zero_rel_se = ~masks["bad"] & ~masks["zero_var"] & ~masks["zero_mean"] & (rel.standard_error == 0)
        parts.append((zero_rel_se, ZERO_RELATIVE_SE))
        bad = masks["bad"]
        mean = np.where(masks["empty"], np.nan, mean)
        std = np.where(masks["empty"], np.nan, std)
        rel = _nan_where(rel, masks["no_mean"] | masks["zero_mean"], keep_diff=False)
        rel = _nan_where(rel, bad | masks["zero_var"] | zero_rel_se, keep_diff=True)
        ab = _nan_where(ab, masks["no_mean"], keep_diff=False)
        ab = _nan_where(ab, bad | masks["zero_var"], keep_diff=True)
        rel, ab = _out_of_range(rel, ab, parts)
    n_variants = m.mean.shape[1]
    if n_variants > 2:
        columns = np.arange(1, n_variants) if compat else np.array([j for j in range(n_variants) if j != c])
        rel, ab = _holm(rel, columns, level, compat), _holm(ab, columns, level, compat)
    power = _power_columns(x, rel.p_value)
    if not compat:  # a relative minimum effect of a zero (or unusable) control mean is no effect at all
        undefined = masks["zero_mean"] | masks["no_mean"]
        for column in ("required_sample_size", "power", "false_positive_risk"):
            power[column] = np.where(undefined, np.nan, power[column])
    out = {"mean": mean, "std": std, **power}
    out.update(diff=rel.diff, test_stat=rel.test_stat, p_value=rel.p_value)
    out.update(confidence_interval=rel.confidence_interval, standard_error=rel.standard_error)
    out.update(degrees_of_freedom=rel.degrees_of_freedom, abs_diff=ab.diff)
    out.update(abs_confidence_interval=ab.confidence_interval, abs_p_value=ab.p_value)
    out["reason"] = _join(parts, m.mean.shape)
    return out


def _power_columns(x: ComparisonInput, p_value: np.ndarray) -> dict[str, np.ndarray]:
    """minimum_effect, sample_size, required_sample_size, power and false_positive_risk."""
    m, c = x.moments, x.control
    shape = m.mean.shape
    treatment = np.arange(shape[1])[None, :] != c
    effect = np.where(treatment, x.minimum_effect[:, None], np.nan)
    required = np.full(shape, np.nan)
    if shape[1] >= 2:
        required = required_sample_size(
            shape[1], np.nan_to_num(effect, nan=0.0), m.mean[:, c : c + 1], m.std[:, c : c + 1],
            m.std, x.confidence_level,
        )  # fmt: skip
        required = np.where(np.isnan(effect), np.nan, required)
    power = power_from_sample_size(shape[1], x.sample_size, required, x.confidence_level)
    risk = false_positive_risk(x.null_hypothesis_rate, power, p_value, x.confidence_level)
    return {
        "minimum_effect": effect,
        "sample_size": x.sample_size,
        "required_sample_size": required,
        "power": power,
        "false_positive_risk": risk,
    }
