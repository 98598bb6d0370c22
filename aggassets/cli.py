"""The `aggassets` command: operations that are not asset materializations."""

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import duckdb
import psycopg2

from aggassets import settings
from aggassets.catalog import load_measures, load_measures_file
from aggassets.errors import AggassetsError, AlreadyIngested, require_file
from aggassets.experiments.commands import add_experiment_commands
from aggassets.experiments.definition import load_experiment, load_experiments
from aggassets.warehouse import Warehouse, events_intake, open_warehouse, require_existing, require_lasting
from aggassets.warehouse.values import PERIODS_FEEDING, file_sha256, intake_totals


def _print(obj: Any) -> None:
    """One JSON document on stdout."""
    print(json.dumps(obj, default=str))


def _open(args: argparse.Namespace, sync: bool = True, existing: bool = False) -> Warehouse:
    """The warehouse of --warehouse (an `existing` DuckDB file only), synced with the catalog of --definitions."""
    (require_existing if existing else require_lasting)(args.warehouse)  # existing: lasting too
    settings.partitions_start()  # a bad AGGASSETS_PARTITIONS_START fails every warehouse command alike
    wh = open_warehouse(args.warehouse)
    if sync:
        try:
            wh.sync_definitions(load_measures(Path(args.definitions)).measures)
        except BaseException:
            wh.close()
            raise
    return wh


def cmd_definitions_validate(args: argparse.Namespace) -> int:
    """Validate one file (measures or experiment), or the whole catalog: measures.json and experiments/."""
    if args.file and not Path(args.file).is_dir():  # a folder is validated as a catalog
        path = Path(args.file)
        if path.parent.name == "experiments":
            experiment = load_experiment(path)
            if experiment.id != path.stem:
                raise AggassetsError(f"{path}: id {experiment.id!r} must equal the file name {path.stem!r}")
            _print({"file": str(path), "valid": True, "experiment": experiment.id})
        else:
            _print({"file": str(path), "valid": True, "measures": len(load_measures_file(path).measures)})
        return 0
    folder = Path(args.file or args.definitions)
    if folder.name == "experiments" and not (folder / "measures.json").exists():  # definitions/experiments
        _print({"folder": str(folder), "valid": True, "experiments": sorted(load_experiments(folder))})
        return 0
    errors, catalog, experiments = [], None, {}
    try:
        catalog = load_measures(folder)
    except AggassetsError as exc:
        errors.append(str(exc))
    try:
        experiments = load_experiments(folder / "experiments")
    except AggassetsError as exc:  # listed with the measures' errors: every error at once
        errors.append(str(exc))
    if errors or catalog is None:
        raise AggassetsError("\n".join(errors))
    _print(
        {
            "folder": str(folder),
            "valid": True,
            "measures": len(catalog.measures),
            "experiments": sorted(experiments),
        }
    )
    return 0


def cmd_definitions_list(args: argparse.Namespace) -> int:
    """List the catalog's measures."""
    catalog = load_measures(Path(args.definitions))
    _print([m.model_dump(by_alias=True, exclude_none=True) for m in catalog.measures])
    return 0


def _new_contents(wh: Warehouse, paths: Sequence[Path], again: bool, events: bool = False) -> list[str]:
    """The SHA-256 of each file; a missing file, or (unless `again`) content the warehouse holds already
    or given twice, is refused before anything is stored."""
    shas: list[str] = []
    for path in paths:
        require_file(path)
        try:
            sha = file_sha256(path)
        except OSError as exc:  # an I/O error names no file: say which (as the inbox does)
            raise AggassetsError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        if not again and sha in shas:
            twin = paths[shas.index(sha)]
            raise AggassetsError(f"{path}: same content as {twin}, given before it; pass --again to ingest both")
        if not again and wh.file_seen(sha, events):  # early; ingest checks again under the lock
            raise AggassetsError(f"{path}: this content was ingested already; pass --again to ingest it once more")
        shas.append(sha)
    return shas


def cmd_measures_ingest(args: argparse.Namespace) -> int:
    """Ingest measure files (each content once, as the inbox does); print one JSON line of counts."""
    catalog = load_measures(Path(args.definitions))
    paths = [Path(name) for name in args.files]
    results = []
    with _open(args) as wh:
        shas = _new_contents(wh, paths, args.again)
        for path, sha in zip(paths, shas, strict=True):
            with _naming_stored_files(path, paths[: len(results)]):
                start = settings.partitions_start()
                results.append(wh.ingest_file(path, catalog.measures, start, sha256=sha, once=not args.again))
    _print(intake_totals(results))
    return 0


@contextmanager
def _naming_stored_files(path: Path, stored: list[Path]) -> Iterator[None]:
    """Each file is its own batch: an error names the files stored before it (a re-run must leave them out)."""
    try:
        yield
    except AggassetsError as exc:
        named = f"{path}: {exc}" if isinstance(exc, AlreadyIngested) else str(exc)
        before = ", ".join(str(p) for p in stored)
        raise AggassetsError(named + (f" (stored before it: {before})" if before else "")) from exc


def cmd_events_ingest(args: argparse.Namespace) -> int:
    """Ingest event files (CSV, Parquet, NDJSON); print one JSON line of counts."""
    # Every file is validated before any is stored: a bad file among them stores nothing.
    paths = [Path(name) for name in args.files]
    validated = [events_intake.validate_file(path) for path in paths]
    results = []
    with _open(args, sync=False) as wh:
        shas = _new_contents(wh, paths, args.again, events=True)
        for name, path, (rows, dimensions), sha in zip(args.files, paths, validated, shas, strict=True):
            with _naming_stored_files(path, paths[: len(results)]):  # another command may store it meanwhile
                results.append(wh.store_events(rows, dimensions, name, sha, once=not args.again))
    _print(intake_totals(results))
    return 0


def cmd_aggregates_query(args: argparse.Namespace) -> int:
    """Print DACC's restitution JSON for one measure and window."""
    catalog = load_measures(Path(args.definitions))
    measure = catalog.get(args.measure)
    grain = args.grain or measure.aggregation_period
    if grain not in PERIODS_FEEDING or measure.aggregation_period not in PERIODS_FEEDING[grain]:
        raise AggassetsError(
            f"{measure.name} is aggregated by {measure.aggregation_period}: it has no {grain} rows"
            + (" (day measures also roll up into week and month)" if measure.aggregation_period == "day" else "")
        )
    if args.end <= args.start:
        raise AggassetsError("--end must be after --start (start inclusive, end exclusive)")
    with _open(args, existing=True) as wh:
        rows = wh.released(grain, measure.name, args.start, args.end, args.created_by)
    _print(rows)
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    """Materialize raw, daily, weekly and monthly assets over [start, end)."""
    from aggassets.refresh import refresh_range

    load_measures(Path(args.definitions))
    if args.end > args.start:  # else refresh_range says what is wrong with the range
        require_existing(args.warehouse)
    _print(refresh_range(args.start, args.end, args.warehouse, str(args.definitions)))
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    """Purge raw measures older than --days into sealed moments."""
    catalog = load_measures(Path(args.definitions))
    if args.measure is not None:
        catalog.get(args.measure)
    with _open(args, existing=True) as wh:
        purged = wh.purge(args.days, args.measure)
    _print({"purged": sum(purged.values()), "by_measure": purged})
    return 0


def _add(
    sub: argparse._SubParsersAction, name: str, func: Callable[[argparse.Namespace], int], help_text: str
) -> argparse.ArgumentParser:
    """A subcommand bound to `func`."""
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(func=func)
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse reporting bad arguments on one line, like every other error (the usage is in --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_catalog_commands(groups: argparse._SubParsersAction) -> None:
    """`definitions validate` and `definitions list`."""
    definitions = groups.add_parser("definitions", help="the catalog").add_subparsers(required=True)
    validate_help = "validate a measures or experiment file (one under experiments/), else the whole catalog"
    validate = _add(definitions, "validate", cmd_definitions_validate, validate_help)
    validate.add_argument(
        "file",
        nargs="?",
        help="a measures.json or experiments/*.json file, a catalog folder or its experiments/ folder "
        "(default: the catalog)",
    )
    _add(definitions, "list", cmd_definitions_list, "list the catalog's measures")


def _add_intake_commands(groups: argparse._SubParsersAction) -> None:
    """`measures ingest` and `events ingest`."""
    measures = groups.add_parser("measures", help="raw measures").add_subparsers(required=True)
    ingest = _add(measures, "ingest", cmd_measures_ingest, "ingest JSON array / {measures: []} / NDJSON files")
    ingest.add_argument("files", nargs="+", help='measures files (each a JSON array, {"measures": [...]} or NDJSON)')
    ingest.add_argument("--again", action="store_true", help="ingest files whose content was ingested already")

    events = groups.add_parser("events", help="experiment events").add_subparsers(required=True)
    events_ingest = _add(events, "ingest", cmd_events_ingest, "ingest CSV, Parquet, NDJSON or JSON event files")
    events_ingest.add_argument("files", nargs="+", help="events files (.csv, .parquet, .ndjson/.jsonl or .json)")
    events_ingest.add_argument("--again", action="store_true", help="ingest files whose content was ingested already")


def _add_aggregate_commands(groups: argparse._SubParsersAction) -> None:
    """`aggregates query`, `refresh` and `purge`."""
    aggregates = groups.add_parser("aggregates", help="released aggregates").add_subparsers(required=True)
    query = _add(aggregates, "query", cmd_aggregates_query, "DACC restitution of one measure")
    query.add_argument("--measure", required=True, help="the measure's name (see definitions list)")
    query.add_argument(
        "--start", type=settings.date_argument, required=True, help="first period start, YYYY-MM-DD (inclusive)"
    )
    query.add_argument("--end", type=settings.date_argument, required=True, help="YYYY-MM-DD (exclusive)")
    query.add_argument("--grain", choices=["day", "week", "month"], help="default: the measure's own period")
    query.add_argument("--created-by", help="only the rows of this application (createdBy)")

    refresh = _add(groups, "refresh", cmd_refresh, "materialize every grain over [start, end)")
    refresh.add_argument("--start", type=settings.date_argument, required=True, help="YYYY-MM-DD (inclusive)")
    refresh.add_argument("--end", type=settings.date_argument, required=True, help="YYYY-MM-DD (exclusive)")

    purge = _add(groups, "purge", cmd_purge, "purge old raw measures into sealed moments")
    purge.add_argument(
        "--days",
        type=settings.days_argument,
        default=90,
        help="raw measures received more than DAYS days ago (default 90; README: Measure semantics, Purge)",
    )
    purge.add_argument("--measure", help="only this measure (default: every measure)")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = _Parser(prog="aggassets", description=__doc__)
    parser.add_argument(
        "--warehouse",
        default=settings.warehouse_url(),
        help="warehouse URL (env AGGASSETS_WAREHOUSE; default the project's DuckDB file)",
    )
    parser.add_argument(
        "--definitions",
        default=str(settings.definitions_dir()),
        help="catalog folder (env AGGASSETS_DEFINITIONS; default definitions/)",
    )
    groups = parser.add_subparsers(dest="command", required=True)
    _add_catalog_commands(groups)
    _add_intake_commands(groups)
    _add_aggregate_commands(groups)
    experiments = groups.add_parser("experiments", help="A/B experiment evaluation").add_subparsers(required=True)
    add_experiment_commands(experiments)
    _name_commands(parser)
    return parser


def _name_commands(parser: argparse.ArgumentParser) -> None:
    """Each command's parser in its namespace (`command_parser`), so that an error found after parsing (an
    unknown option) is reported by the command given."""
    parser.set_defaults(command_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                _name_commands(command)


# Control characters a message may quote from a file (a header cell, a file name) are shown escaped, so
# that an error line cannot move the terminal's cursor, retitle it or clear it.
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)] if c != 0x09}  # a tab is harmless


def _one_line(message: str) -> str:
    """A multi-line message (a list of errors) on one line: '; ' between items, a heading's ':' kept;
    control characters escaped."""
    out = ""
    for line in (line.strip() for line in message.splitlines() if line.strip()):
        out += (" " if out.endswith(":") else "; " if out else "") + line
    return out.translate(_CONTROLS)


def _interrupted() -> int:
    """Ctrl-C: one line, the shell's exit status for SIGINT."""
    print("aggassets: interrupted (what was being written is rolled back)", file=sys.stderr)
    return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the command; bad input is one line on stderr and a non-zero exit."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the command given after it, whose --help lists what it takes
        given = list(sys.argv[1:] if argv is None else argv)
        before = given.index(unknown[0]) < given.index(args.command) if args.command in given else False
        (parser if before else args.command_parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a reader that stopped early shows here, not as Python's message at exit
        return code
    except KeyboardInterrupt:
        return _interrupted()
    except RuntimeError as exc:  # DuckDB turns Ctrl-C during a query into RuntimeError('Query interrupted')
        if not str(exc).startswith("Query interrupted"):
            raise
        return _interrupted()
    except AggassetsError as exc:
        print(f"aggassets: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader (e.g. `head`) stopped early: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        print(f"aggassets: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except (duckdb.Error, psycopg2.Error) as exc:  # after connecting: a table changed by hand, a lost connection
        print(f"aggassets: error: database: {_one_line(str(exc)) or type(exc).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
