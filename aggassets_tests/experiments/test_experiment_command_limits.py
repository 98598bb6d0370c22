"""`aggassets experiments evaluate | sample-size` limits: --as-of, cross units, bounds, ep-stats' sample size."""

import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from epstats.toolkit.statistics import Statistics
from scipy import stats as st

from aggassets.errors import AggassetsError
from aggassets_tests.experiments.test_evaluation_edges import _user_definition, _view_units, _views_goals
from aggassets_tests.experiments.test_experiment_commands import _run


def _sample_size(argv: list[str], capsys: pytest.CaptureFixture[str]) -> object:
    """The sample_size_per_variant that `experiments sample-size ARGV` prints."""
    return json.loads(_run(["sample-size", *argv], capsys))["sample_size_per_variant"]


@pytest.mark.parametrize("n_variants", [2, 3, 5])
def test_bernoulli_sample_size_follows_epstats_for_every_number_of_variants(
    n_variants: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """ep-stats' required_sample_size_per_variant_bernoulli (Bonferroni over the treatments), run live."""
    expected = Statistics.required_sample_size_per_variant_bernoulli(n_variants, 0.1, 0.2, 0.95, 0.8)
    got = _sample_size(["--n-variants", str(n_variants), "--minimum-effect", "0.1", "--mean", "0.2"], capsys)
    assert got == float(expected)


def test_a_treated_rate_of_exactly_one_is_a_rate(capsys: pytest.CaptureFixture[str]) -> None:
    """docs: the treated rate mean x (1 + effect) must lie in [0, 1]: 0.5 x 2 = 1 is allowed (ep-stats live)."""
    expected = Statistics.required_sample_size_per_variant_bernoulli(2, 1.0, 0.5, 0.95, 0.8)
    assert _sample_size(["--n-variants", "2", "--minimum-effect", "1", "--mean", "0.5"], capsys) == float(expected)


@pytest.mark.parametrize("option", ["--confidence-level", "--power"])
@pytest.mark.parametrize("value", ["0", "1"])
def test_a_level_or_power_of_zero_or_one_is_refused(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A level or power of 1 asks for an infinite sample (scipy's norm.ppf(1) = inf); both lie in (0, 1)."""
    argv = ["--n-variants", "2", "--minimum-effect", "0.1", "--mean", "0.2", "--std", "1", option, value]
    with pytest.raises(AggassetsError, match="strictly between 0 and 1"):
        _sample_size(argv, capsys)


@pytest.mark.parametrize("mean", ["inf", "-inf", "nan"])
def test_a_non_finite_mean_is_refused(mean: str, capsys: pytest.CaptureFixture[str]) -> None:
    """docs: a non-finite --minimum-effect / --mean / --std is a one-line error."""
    with pytest.raises(AggassetsError, match="--mean must be a finite number"):
        _sample_size(["--n-variants", "2", "--minimum-effect", "0.1", f"--mean={mean}", "--std", "1"], capsys)


def test_evaluate_as_of_sets_the_sequential_level(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """docs: sequential experiments (date_from and date_to) use O'Brien-Fleming's level on day min(as_of -
    date_from + 1, length); on the last day it is the experiment's level, on day 1 of 10 far above it."""
    rng = np.random.default_rng(11)
    goals, _ = _views_goals({"a": _view_units(rng, 200), "b": _view_units(rng, 210)})
    raw = _user_definition("count(user.unit.click)", "count(user.unit.view)")
    raw |= {"date_from": "2026-01-01", "date_to": "2026-01-10"}
    experiment, goals_csv = tmp_path / "e.json", tmp_path / "goals.csv"
    experiment.write_text(json.dumps(raw))
    goals.to_csv(goals_csv, index=False)
    argv = ["evaluate", "--experiment", str(experiment), "--goals", str(goals_csv)]
    levels = {}
    for day in ("2026-01-01", "2026-01-05", "2026-01-10", "2026-02-01"):
        out = _run([*argv, "--as-of", day], capsys)
        levels[day] = set(pd.read_csv(io.StringIO(out))["confidence_level"])
    assert levels["2026-01-10"] == levels["2026-02-01"] == {0.95}

    def obf(day: int) -> float:  # O'Brien-Fleming: z_(1-alpha/2) / sqrt(t), two-sided, 4 decimals, capped
        return min(round(1 - 2 * st.norm.sf(st.norm.ppf(0.975) / np.sqrt(day / 10)), 4), 0.9999)

    assert levels["2026-01-01"] == {obf(1)} == {0.9999}
    assert levels["2026-01-05"] == {obf(5)}


@pytest.mark.parametrize(
    ("units", "error"),
    [
        ("", "is not a finite number: ''"),
        ("many", "is not a finite number: 'many'"),
        ("inf", "is not a finite number: 'inf'"),
        ("-2", "is negative: '-2'"),
        ("2.5", "is not a whole number: '2.5'"),  # units counts a variant's units (0 for one without any)
        ("1e-3", "is not a whole number: '1e-3'"),
    ],
)
def test_a_cross_products_units_cell_is_a_whole_number_of_units(
    units: str, error: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs: bad input is a one-line error naming its line; a units cell of the --cross file counts units."""
    rng = np.random.default_rng(4)
    goals, cross = _views_goals({"a": _view_units(rng, 60), "b": _view_units(rng, 70)})
    experiment, goals_csv, cross_csv = tmp_path / "e.json", tmp_path / "goals.csv", tmp_path / "cross.csv"
    experiment.write_text(json.dumps(_user_definition("count(user.unit.click)", "count(user.unit.view)")))
    goals.to_csv(goals_csv, index=False)
    cross = cross.astype({"units": object})
    cross.loc[cross.index[0], "units"] = units
    cross.to_csv(cross_csv, index=False)
    argv = ["evaluate", "--experiment", str(experiment), "--goals", str(goals_csv), "--cross", str(cross_csv)]
    with pytest.raises(AggassetsError, match=re.escape(f"line 2: column units {error}")):
        _run(argv, capsys)


def test_an_overflowing_sample_size_is_null_in_strict_json(capsys: pytest.CaptureFixture[str]) -> None:
    """std 1e200 squares beyond float64 (numpy: inf); JSON (RFC 8259) has no Infinity, so the answer is null."""
    with np.errstate(over="ignore"):
        assert np.isinf(np.square(np.float64(1e200)))
    argv = ["sample-size", "--n-variants", "2", "--minimum-effect", "0.1", "--mean", "0.2", "--std", "1e200"]
    out = _run(argv, capsys)
    assert out.strip() == '{"sample_size_per_variant": null}'
