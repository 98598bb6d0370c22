"""`aggassets experiments evaluate | sample-size`: evaluation from files and ep-stats' sample-size call."""

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from aggassets.errors import AggassetsError
from aggassets.experiments.definition import load_experiment
from aggassets.experiments.goals import NUMERIC
from aggassets.settings import date_argument

# The statistics (scipy.stats: 2 s to import) are imported by the commands that use them, so that every
# other `aggassets` command starts in about a second.


def add_experiment_commands(experiments_subparsers: argparse._SubParsersAction) -> None:
    """Register `evaluate` and `sample-size` under `aggassets experiments`."""
    ev = experiments_subparsers.add_parser(
        "evaluate",
        help="evaluate an experiment from aggregated goals (ep-stats' evaluate_agg)",
        description="evaluate an experiment from aggregated goals (ep-stats' evaluate_agg)",
    )
    ev.add_argument("--experiment", required=True, type=Path, help="experiment definition (JSON)")
    ev.add_argument("--goals", required=True, type=Path, help="goals aggregated per variant (CSV)")
    ev.add_argument("--cross", type=Path, help="per-unit cross products (CSV) for the delta method")
    ev.add_argument("--as-of", type=date_argument, help="evaluation date YYYY-MM-DD (default: date_for, else today)")
    ev.add_argument("--checks-out", type=Path, help="write the checks frame to this CSV file")
    ev.add_argument("--exposures-out", type=Path, help="write the exposures frame to this CSV file")
    ev.add_argument("--format", choices=["csv", "json"], default="csv", help="csv: metrics; json: ep-stats REST")
    ev.add_argument("--extended", action="store_true", help="csv: add abs_diff, abs_*, reason columns")
    ev.add_argument("--compat", action="store_true", help="reproduce ep-stats 2.5.10, faults included")
    ev.set_defaults(func=run_evaluate)
    ss = experiments_subparsers.add_parser(
        "sample-size",
        help="required sample size per variant (ep-stats' sample-size-calculation)",
        description="required sample size per variant (ep-stats' sample-size-calculation)",
    )
    ss.add_argument("--n-variants", required=True, type=int, help="number of variants, control included")
    ss.add_argument("--minimum-effect", required=True, type=float, help="relative effect to detect, > 0")
    ss.add_argument("--mean", required=True, type=float, help="current mean (a rate in [0, 1] without --std)")
    ss.add_argument("--std", type=float, help="current standard deviation (omit for a Bernoulli rate)")
    ss.add_argument("--confidence-level", type=float, default=0.95, help="1 - the false positive rate (default 0.95)")
    ss.add_argument("--power", type=float, default=0.8, help="the chance to detect the minimum effect (default 0.8)")
    ss.set_defaults(func=run_sample_size)
    run = experiments_subparsers.add_parser(
        "run",
        help="aggregate one catalog experiment's goals from the warehouse events and evaluate them",
        description="aggregate one catalog experiment's goals from the warehouse events and evaluate them",
    )
    run.add_argument("experiment_id", help="id of an experiment in definitions/experiments/")
    run.add_argument("--as-of", type=date_argument, help="evaluation date YYYY-MM-DD (default: today, UTC)")
    run.set_defaults(func=run_run)


def _read_csv(
    path: Path, numeric: tuple[str, ...], what: str, signed: tuple[str, ...] = (), whole: tuple[str, ...] = ()
) -> pd.DataFrame:
    """A CSV read as text (dimensions keep their spelling), `numeric` columns converted: finite numbers,
    >= 0 unless `signed`, whole numbers if `whole` (a bad cell is an error naming its line)."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise AggassetsError(f"cannot read {what} {path}: {exc}") from exc
    for col in numeric:
        if col not in frame.columns:
            continue
        values = pd.to_numeric(frame[col], errors="coerce").astype(float).to_numpy()
        with np.errstate(invalid="ignore"):
            rules = [(~np.isfinite(values), "is not a finite number", "")]
            if col not in signed:
                rules.append((values < 0, "is negative", " (counts and squares are >= 0)"))
            if col in whole:
                rules.append((values != np.floor(values), "is not a whole number", ""))
        for bad, what, why in rules:
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise AggassetsError(f"{path}: line {row + 2}: column {col} {what}: {frame[col].iloc[row]!r}{why}")
        frame[col] = values
    return frame


def _write(frame: pd.DataFrame, path: Path) -> None:
    """Write a frame as CSV, with a clear error."""
    try:
        frame.to_csv(path, index=False)
    except OSError as exc:
        raise AggassetsError(f"cannot write {path}: {exc}") from exc


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate and print the metrics (CSV) or the whole REST result (JSON)."""
    from aggassets.experiments.evaluate import (
        EPSTATS_METRIC_COLUMNS,
        METRIC_COLUMNS,
        evaluate_goals,
        per_unit_variance_warnings,
        srm_warnings,
        to_rest_json,
    )

    experiment = load_experiment(args.experiment)
    goals = _read_csv(args.goals, NUMERIC, "goals", signed=("sum_value",))
    cross = (
        _read_csv(args.cross, ("sum_product", "units"), "cross products", signed=("sum_product",), whole=("units",))
        if args.cross
        else None
    )
    evaluation = evaluate_goals(experiment, goals, cross, args.as_of, compat=args.compat)
    warnings = per_unit_variance_warnings(experiment) if cross is None else []
    for warning in [*warnings, *srm_warnings(evaluation.checks, experiment)]:
        print(f"aggassets: warning: {warning}", file=sys.stderr)
    if args.checks_out:
        _write(evaluation.checks, args.checks_out)
    if args.exposures_out:
        _write(evaluation.exposures, args.exposures_out)
    if args.format == "json":
        json.dump(to_rest_json(evaluation), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        columns = METRIC_COLUMNS if args.extended else EPSTATS_METRIC_COLUMNS
        evaluation.metrics[columns].to_csv(sys.stdout, index=False)
    return 0


def run_run(args: argparse.Namespace) -> int:
    """Materialize the experiment's goals and evaluation; print its metrics CSV (ep-stats + abs_* columns and
    the reason of a NaN)."""
    from aggassets.experiment_runs import run_experiment, stored_checks  # Dagster only for this command
    from aggassets.experiments.evaluate import METRIC_COLUMNS, srm_warnings

    as_of = args.as_of or datetime.datetime.now(datetime.UTC).date()
    metrics = run_experiment(args.experiment_id, as_of, args.warehouse, str(args.definitions))
    metrics[METRIC_COLUMNS].to_csv(sys.stdout, index=False)
    checks, experiment = stored_checks(args.experiment_id, as_of, args.warehouse, str(args.definitions))
    for warning in srm_warnings(checks, experiment):  # the asset check warns in the UI; say it here too
        print(f"aggassets: warning: {warning}", file=sys.stderr)
    return 0


def run_sample_size(args: argparse.Namespace) -> int:
    """Print {"sample_size_per_variant": N} as ep-stats' REST endpoint answers."""
    from aggassets.stats.power import required_sample_size, required_sample_size_bernoulli

    if not 0 < args.confidence_level < 1 or not 0 < args.power < 1:
        raise AggassetsError("--confidence-level and --power must lie strictly between 0 and 1")
    given = {"--minimum-effect": args.minimum_effect, "--mean": args.mean, "--std": args.std}
    if bad := [name for name, v in given.items() if v is not None and not np.isfinite(v)]:
        raise AggassetsError(f"{', '.join(bad)} must be a finite number")
    if args.minimum_effect <= 0:
        raise AggassetsError("--minimum-effect must be > 0: the relative effect to detect")
    if args.std is not None and args.std <= 0:
        raise AggassetsError("--std must be > 0 (omit it for a Bernoulli rate)")
    if args.std is None and 0 <= args.mean <= 1 and not 0 <= args.mean * (1 + args.minimum_effect) <= 1:
        rate = args.mean * (1 + args.minimum_effect)
        raise AggassetsError(
            f"the treatment's rate --mean x (1 + --minimum-effect) = {args.mean:g} x {1 + args.minimum_effect:g} = "
            f"{rate:g} must lie in [0, 1] (a Bernoulli rate; give --std for a real-valued metric)"
        )
    try:
        if args.std is None:
            size = required_sample_size_bernoulli(
                args.n_variants, args.minimum_effect, args.mean, args.confidence_level, args.power
            )
        else:
            size = required_sample_size(
                args.n_variants, args.minimum_effect, args.mean, args.std, None, args.confidence_level, args.power
            )
    except ValueError as exc:
        raise AggassetsError(f"cannot calculate the sample size: {exc}") from exc
    value = float(size)
    print(json.dumps({"sample_size_per_variant": value if np.isfinite(value) else None}))
    return 0
