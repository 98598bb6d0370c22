"""`aggassets experiments evaluate | sample-size` through the argparse wiring."""

import argparse
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from epstats.toolkit.testing import TestData
from scipy import stats as st
from statsmodels.stats.power import NormalIndPower

from aggassets.cli import main
from aggassets.errors import AggassetsError
from aggassets.experiments.commands import add_experiment_commands
from aggassets.stats.power import required_sample_size_bernoulli
from aggassets_tests.experiments.reference_data import (
    REFERENCE_DIR,
    expected_metrics,
    load_reference,
    metric_mismatches,
    reference_goals,
)

EPSTATS_COLUMNS = [
    "exp_id",
    "metric_id",
    "metric_name",
    "exp_variant_id",
    "count",
    "mean",
    "std",
    "sum_value",
    "confidence_level",
    "diff",
    "test_stat",
    "p_value",
    "confidence_interval",
    "standard_error",
    "degrees_of_freedom",
    "minimum_effect",
    "sample_size",
    "required_sample_size",
    "power",
    "false_positive_risk",
]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Parse `argv` under `experiments`, run the command, return its stdout."""
    parser = argparse.ArgumentParser(prog="aggassets experiments")
    add_experiment_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    return capsys.readouterr().out


@pytest.fixture
def goals_csv(tmp_path: Path) -> Path:
    """ep-stats' test-multiple goals as a CSV file."""
    path = tmp_path / "goals.csv"
    TestData.load_goals_agg("test-multiple").to_csv(path, index=False)
    return path


def test_evaluate_prints_epstats_metric_columns(
    goals_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment = str(REFERENCE_DIR / "test-multiple.json")
    checks, exposures = tmp_path / "checks.csv", tmp_path / "exposures.csv"
    argv = ["evaluate", "--experiment", experiment, "--goals", str(goals_csv)]
    out = _run([*argv, "--checks-out", str(checks), "--exposures-out", str(exposures)], capsys)
    metrics = pd.read_csv(io.StringIO(out))
    assert list(metrics.columns) == EPSTATS_COLUMNS
    assert len(metrics) == 9
    np.testing.assert_allclose(metrics["p_value"].iloc[:3], [1.0, 0.724186, 0.724186], atol=1e-6)
    assert list(pd.read_csv(checks).variable_id) == ["p_value", "test_stat", "confidence_level"]
    assert list(pd.read_csv(exposures).exposures) == [3000, 3030, 3020]
    extended = pd.read_csv(io.StringIO(_run([*argv, "--extended"], capsys)))
    assert list(extended.columns[-4:]) == ["abs_diff", "abs_confidence_interval", "abs_p_value", "reason"]


def test_evaluate_json_is_the_rest_shape(goals_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    experiment = str(REFERENCE_DIR / "test-multiple.json")
    result = json.loads(
        _run(["evaluate", "--experiment", experiment, "--goals", str(goals_csv), "--format", "json"], capsys)
    )
    assert result["id"] == "test-multiple" and [m["id"] for m in result["metrics"]] == [1, 2, 3]
    stat = result["metrics"][0]["stats"][0]
    assert stat["exp_variant_id"] == "a" and stat["required_sample_size"] is None
    assert result["checks"][0]["stats"][0]["variable_id"] == "p_value"
    assert result["exposure"] == {
        "unit_type": "test_unit_type",
        "stats": [{"exp_variant_id": v, "count": c} for v, c in (("a", 3000), ("b", 3030), ("c", 3020))],
    }


def test_evaluate_bad_inputs(goals_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    experiment = str(REFERENCE_DIR / "test-multiple.json")
    with pytest.raises(SystemExit):  # argparse's error, by the command (tests/test_cli_errors.py)
        _run(["evaluate", "--experiment", experiment, "--goals", str(goals_csv), "--as-of", "yesterday"], capsys)
    assert "argument --as-of: not a date (YYYY-MM-DD): 'yesterday'" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text(goals_csv.read_text().replace(",3000,", ",many,", 1))
    with pytest.raises(AggassetsError, match="column count is not a finite number: 'many'"):
        _run(["evaluate", "--experiment", experiment, "--goals", str(bad)], capsys)
    for value in ("inf", "-Infinity", "nan"):
        bad.write_text(goals_csv.read_text().replace(",3000,", f",{value},", 1))
        with pytest.raises(AggassetsError, match=f"column count is not a finite number: '{value}'"):
            _run(["evaluate", "--experiment", experiment, "--goals", str(bad)], capsys)
    bad.write_text(goals_csv.read_text().replace(",3000,", ",-3000,", 1))
    line = 1 + next(i for i, t in enumerate(goals_csv.read_text().splitlines()) if ",3000," in t)
    with pytest.raises(AggassetsError, match=f"{bad}: line {line}: column count is negative: '-3000'"):
        _run(["evaluate", "--experiment", experiment, "--goals", str(bad)], capsys)
    with pytest.raises(AggassetsError, match="cannot read goals"):
        _run(["evaluate", "--experiment", experiment, "--goals", str(tmp_path / "none.csv")], capsys)


def test_sample_size(capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(["sample-size", "--n-variants", "2", "--minimum-effect", "0.1", "--mean", "0.2", "--std", "1.2"], capsys)
    expected = NormalIndPower().solve_power(effect_size=0.02 / 1.2, alpha=0.05, power=0.8, ratio=1.0)
    assert json.loads(out) == {"sample_size_per_variant": float(round(expected))}
    bernoulli = json.loads(
        _run(["sample-size", "--n-variants", "2", "--minimum-effect", "0.1", "--mean", "0.2"], capsys)
    )
    z = st.norm.ppf(0.975) + st.norm.ppf(0.8)
    assert bernoulli["sample_size_per_variant"] == round(z**2 * (0.2 * 0.8 + 0.22 * 0.78) / 0.02**2)
    tuned = _run(["sample-size", "--n-variants", "2", "--minimum-effect", "0.1", "--mean", "0.2", "--std", "1.2",
                  "--confidence-level", "0.9", "--power", "0.9"], capsys)  # fmt: skip
    z = st.norm.ppf(1 - 0.1 / 2) + st.norm.ppf(0.9)  # the normal approximation ep-stats uses: 61659.7
    assert json.loads(tuned) == {"sample_size_per_variant": float(round(z**2 * 2 * 1.2**2 / 0.02**2))}
    with pytest.raises(AggassetsError, match="two variants"):
        _run(["sample-size", "--n-variants", "1", "--minimum-effect", "0.1", "--mean", "0.2"], capsys)
    with pytest.raises(AggassetsError, match="between zero and one"):
        _run(["sample-size", "--n-variants", "2", "--minimum-effect", "0.1", "--mean", "3"], capsys)
    for effect in ("0", "-0.1"):
        with pytest.raises(AggassetsError, match="--minimum-effect must be > 0"):
            _run(
                ["sample-size", "--n-variants", "2", "--minimum-effect", effect, "--mean", "0.2", "--std", "1"], capsys
            )
    for std in ("-1", "0"):  # -1 answered as if it were 1
        with pytest.raises(AggassetsError, match="--std must be > 0"):
            _run(["sample-size", "--n-variants", "2", "--minimum-effect", "0.1", "--mean", "0.2", "--std", std], capsys)
    with pytest.raises(AggassetsError, match=r"rate .* = 0.95 x 1.1 = 1.045 must lie in \[0, 1\]"):
        _run(["sample-size", "--n-variants", "2", "--minimum-effect", "0.1", "--mean", "0.95"], capsys)


def test_a_zero_mean_needs_no_finite_sample_size_and_warns_of_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    """A relative effect on a mean of 0 is no difference at all: infinitely many units (null), no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _run(["sample-size", "--n-variants", "2", "--minimum-effect", "0.1", "--mean", "0", "--std", "1"], capsys)
    assert json.loads(out) == {"sample_size_per_variant": None}


def test_bernoulli_sample_size_of_an_impossible_treated_rate_is_nan_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(required_sample_size_bernoulli(2, 0.1, 0.95))


def test_compat_reproduces_epstats_where_the_default_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """test-missing-value: ep-stats gives p 1 and CI 0 when the relative standard error is 0 (we give NaN);
    --compat prints ep-stats' own figures (its bundled expectations)."""
    path = REFERENCE_DIR / "test-missing-value.json"
    raw, experiment = load_reference(path)
    goals = tmp_path / "goals.csv"
    reference_goals(raw, experiment).to_csv(goals, index=False)
    argv = ["evaluate", "--experiment", str(path), "--goals", str(goals)]
    for flags, same_as_epstats in (([], False), (["--compat"], True)):
        out = pd.read_csv(io.StringIO(_run([*argv, *flags], capsys)))
        mismatches = [
            m
            for metric in raw["metrics"]  # type: ignore[attr-defined]
            for m in metric_mismatches(out[out.metric_id == metric["id"]], expected_metrics(path.stem, metric["id"]))
        ]
        assert (mismatches == []) is same_as_epstats, mismatches


def test_evaluate_without_cross_warns_of_denominators_that_are_not_the_exposures(
    goals_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Conversions per click without cross products: ep-stats' variance, which can be far off; stderr says so
    for that metric only, and the results are still printed."""
    raw = json.loads((REFERENCE_DIR / "test-multiple.json").read_text())
    ratio = {"id": 9, "name": "conversions per click", "nominator": "count(test_unit_type.unit.conversion)",
             "denominator": "count(test_unit_type.unit.click)"}  # fmt: skip
    raw["metrics"] = [raw["metrics"][0], ratio]
    experiment = tmp_path / "ratio.json"
    experiment.write_text(json.dumps(raw))
    parser = argparse.ArgumentParser(prog="aggassets experiments")
    add_experiment_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["evaluate", "--experiment", str(experiment), "--goals", str(goals_csv)])
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    assert len(pd.read_csv(io.StringIO(out))) == 6
    assert err.count("warning") == 1 and "metric 9 (conversions per click)" in err and "--cross" in err


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`aggassets experiments ARGV` through the whole command (exit status and one-line errors); (code, out, err)."""
    code = main(["experiments", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("option", ["--checks-out", "--exposures-out"])
@pytest.mark.parametrize("target", ["missing folder", "a directory"])
def test_an_output_file_that_cannot_be_written_is_a_one_line_error(
    goals_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, target: str
) -> None:
    path = tmp_path / "no-such-folder" / "out.csv" if target == "missing folder" else tmp_path
    argv = ["evaluate", "--experiment", str(REFERENCE_DIR / "test-multiple.json"), "--goals", str(goals_csv)]
    code, out, err = _main([*argv, option, str(path)], capsys)
    assert (code, out) == (2, "") and len(err.strip().splitlines()) == 1
    assert err.startswith(f"aggassets: error: cannot write {path}: ")
    assert not (tmp_path / "no-such-folder").exists()


def test_goals_without_sum_sqr_value_are_refused_naming_the_column(
    goals_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/experiments.md: the goals CSV has ep-stats' columns, sum_sqr_value among them."""
    lacking = tmp_path / "lacking.csv"
    pd.read_csv(goals_csv).drop(columns="sum_sqr_value").to_csv(lacking, index=False)
    argv = ["evaluate", "--experiment", str(REFERENCE_DIR / "test-multiple.json"), "--goals", str(lacking)]
    code, out, err = _main(argv, capsys)
    assert (code, out) == (2, "") and err == "aggassets: error: goals lack column(s): sum_sqr_value\n"


def test_an_unreadable_date_cell_of_the_goals_is_a_one_line_error(
    goals_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/experiments.md: a `date` column keeps dated rows of the experiment's window; a cell that is no date
    (month 13, day 45) is an error naming it, not a row silently kept or dropped."""
    goals = pd.read_csv(goals_csv)
    dated = tmp_path / "dated.csv"
    goals.assign(date=["2026-01-05"] * (len(goals) - 1) + ["2026-13-45"]).to_csv(dated, index=False)
    argv = ["evaluate", "--experiment", str(REFERENCE_DIR / "test-multiple.json"), "--goals", str(dated)]
    code, out, err = _main([*argv, "--as-of", "2026-01-31"], capsys)
    assert (code, out) == (2, "") and err == "aggassets: error: goals: unreadable date '2026-13-45'\n"
    goals.assign(date="2026-01-05").to_csv(dated, index=False)  # the same file with readable dates evaluates
    assert _main([*argv, "--as-of", "2026-01-31"], capsys)[0] == 0


SRM_EXPERIMENT = {
    "id": "split", "control_variant": "a", "variants": ["a", "b"], "unit_type": "user",
    "metrics": [{"id": 1, "name": "Revenue per user", "nominator": "value(user.unit.purchase)",
                 "denominator": "count(user.global.exposure)"}],
    "checks": [{"id": 1, "name": "even split", "type": "SRM", "denominator": "count(user.global.exposure)"}],
}  # fmt: skip


@pytest.mark.parametrize(("exposures", "warned"), [((1000, 1000), False), ((1000, 880), False), ((1000, 800), True)])
def test_evaluate_warns_on_stderr_when_an_srm_check_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], exposures: tuple[int, int], warned: bool
) -> None:
    """An SRM check that rejects the expected (equal) split is one warning line on stderr, with scipy's
    chi-square p-value; the metrics are printed all the same. A split it accepts warns of nothing."""
    experiment = tmp_path / "split.json"
    experiment.write_text(json.dumps(SRM_EXPERIMENT))
    header = "exp_id,exp_variant_id,unit_type,agg_type,goal,count,sum_sqr_count,sum_value,sum_sqr_value,count_unique"
    rows = [f"split,{v},user,global,exposure,{n},{n},0,0,{n}" for v, n in zip("ab", exposures, strict=True)]
    rows += [f"split,{v},user,unit,purchase,50,50,500,6000,50" for v in "ab"]
    goals = tmp_path / "goals.csv"
    goals.write_text("\n".join([header, *rows]) + "\n")
    code, out, err = _main(["evaluate", "--experiment", str(experiment), "--goals", str(goals)], capsys)
    assert code == 0 and len(pd.read_csv(io.StringIO(out))) == 2
    p_value = st.chisquare(exposures).pvalue
    assert bool(p_value < 0.001) == warned  # the SRM check's default confidence level is 0.999 (ep-stats)
    if not warned:
        assert err == ""
    else:
        assert err == (
            f"aggassets: warning: SRM check 'even split' failed (p-value {p_value:.3g}): the variants' exposures "
            "do not follow the expected split, so the metrics may be biased\n"
        )
