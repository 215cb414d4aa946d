"""`memsweep` command line: a thin layer over sweeps/ and analysis/.

Subcommands: run, validate, presets, status, compact, fit, report, demo, version. Heavy modules (ray, torch,
pyarrow) are imported inside the subcommands so `memsweep --help` stays fast. `run`, `validate` and `demo` take
Hydra-style overrides after the spec (`memsweep run demo train.steps=2000 axes.P=[8,16]`, see
sweeps.spec.overrides), validated like the YAML. Mistakes (spec, arguments, an unusable store) print as a clean
message without a traceback and exit with status 2, before any work starts; a sweep with failed trials exits
with status 1; Ctrl-C exits with 130 after printing the command that resumes the sweep.
"""
from __future__ import annotations

import argparse
import sys
from importlib.metadata import version as _dist_version
from pathlib import Path
from typing import Any, Callable, Sequence

from analysis.registry import DEFAULT_GEN_METRIC, DEFAULT_MEM_METRIC, GEN_METRICS, MEM_METRICS
from sweeps.launch import EXIT_INTERRUPTED, _base, load, print_spec, resume_command, run

DESCRIPTION = ("Sweeps that measure when and what discrete diffusion models memorize on Random Hierarchy Model "
               "strings. New here? `memsweep demo --out runs/demo` runs a small sweep, fits the onset laws and "
               "writes a report; `memsweep presets` lists the shipped sweeps.")

EXIT_FAILED = 1
EXIT_USAGE = 2


class UserError(Exception):
    """A mistake in the command's arguments: printed without a traceback, exit status 2."""


# ------------------------------------------------------------------------------------------------- helpers
def _console() -> Any:
    """Rich console; wide when stdout is not a terminal, so tables in logs are not squeezed to 80 columns."""
    from rich.console import Console
    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def _existing_store(uri: str, sweep: str | None = None) -> Any:
    """A Store for `uri` that holds data (of `sweep`, if given); UserError naming what is there instead."""
    local = "://" not in uri or uri.startswith("file://")
    path = Path(uri[len("file://"):] if uri.startswith("file://") else uri).expanduser()
    if local and not path.is_dir():
        raise UserError(f"no store at {str(path)!r} (not a directory)")
    from analysis.store import Store

    store = Store(uri)
    try:
        sweeps = store.sweeps()
    except OSError as e:
        raise UserError(f"cannot read the store {uri!r}: {e}") from None
    if not sweeps:
        inner = [p for p in sorted(path.iterdir()) if p.is_dir() and Store(str(p)).sweeps()] if local else []
        hint = f"; did you mean {str(inner[0])!r}?" if inner else " (a store is what `memsweep run` writes)"
        raise UserError(f"{uri!r} is not a store with data: no table of any sweep is there{hint}")
    if sweep is not None and sweep not in sweeps:
        raise UserError(f"no sweep {sweep!r} in the store {uri!r}; its sweeps: {', '.join(sweeps)}")
    return store


def _write_table(table: Any, out: str) -> Path:
    """Write a pyarrow table as .parquet or .csv (by the file's suffix)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        pq.write_table(table, path)
    elif path.suffix == ".csv":
        import pyarrow.csv as pcsv
        pcsv.write_csv(table, path)
    else:
        raise UserError(f"--out {out!r}: use a .parquet or .csv file name")
    return path


def _fit(store_uri: str, sweep: str | None, thetas: list[float], metric: str, console: Any,
         covariates: Sequence[str] = (), gen_metric: str = DEFAULT_GEN_METRIC, onset_rule: str = "consecutive",
         keep_flagged: bool = False, nulls: bool = True, pool_specs: bool = False) -> Any:
    """Onsets from the store, laws per (tail, L), joint and (with covariates) the covariate law, printed, then (with
    `nulls`) the order and slop statistics against their nulls by name; returns the laws table. Flagged trials
    (`analysis.flags`) are left out of both unless `keep_flagged`, and a sweep's trials of different effective specs
    are separate groups unless `pool_specs` (`analysis.specs`); either way it says so."""
    from analysis import flags
    from analysis.fits import fit_laws, print_laws
    from analysis.onset import ONSET_RULES, analysed, onsets
    store = _existing_store(store_uri, sweep)
    table = onsets(store, sweep=sweep, thetas=tuple(thetas), metric=metric, gen_metric=gen_metric,
                   consecutive=ONSET_RULES[onset_rule], pool_specs=pool_specs)
    flagged = flags.trial_flags(store.read("trials", sweep=sweep), min(thetas))
    for line in flags.flag_lines(flagged, min(thetas), keep_flagged, per_trial_max=0,
                                 every="memsweep report lists every trial"):
        console.print(line, highlight=False, soft_wrap=True)
    if not keep_flagged:
        table = flags.drop_flagged_onsets(table, flagged)
    if table.num_rows == 0:
        raise UserError(f"no onsets in {store_uri!r}" + (f" for sweep {sweep!r}" if sweep else "")
                        + ": has a sweep written any curves there?")
    missing = [c for c in covariates if c not in table.column_names]
    if missing:
        raise UserError(f"--covariate {', '.join(missing)}: not a trial column the onsets carry; use one of "
                        "entropy, entropy_tilt, train_mass, tail_levels, tail_family, tail_a")
    laws = fit_laws(table, theta=thetas, covariates=covariates)
    print_laws(laws, console=console)
    for note in analysed(store.read("trials", sweep=sweep), pool_specs)[1]:   # left out (failed, diverged), apart
        console.print(note, style="yellow", markup=False, highlight=False, soft_wrap=True)
    if nulls:
        from analysis.report import null_lines
        console.print("\nOrder and slop against their nulls (volume-matched, grammar-faithful, empirical-grammar):")
        for line in null_lines(store, sweep, metric, gen_metric, theta=0.5 if 0.5 in thetas else thetas[0],
                               keep_flagged=keep_flagged, consecutive=ONSET_RULES[onset_rule],
                               pool_specs=pool_specs):
            console.print(line, markup=False, highlight=False)
    _print_problems([store], console)
    return laws


def _report(store_uri: str, out_dir: str, sweep: str | None, gen_metric: str = DEFAULT_GEN_METRIC,
            onset_rule: str = "consecutive", keep_flagged: bool = False, pool_specs: bool = False) -> Path:
    """Write the HTML report; returns the path of its index.html."""
    from analysis.onset import ONSET_RULES
    from analysis.report import write_report
    path = Path(write_report(_existing_store(store_uri, sweep), out_dir, sweep=sweep, gen_metric=gen_metric,
                             consecutive=ONSET_RULES[onset_rule], keep_flagged=keep_flagged,
                             pool_specs=pool_specs))
    return path if path.suffix == ".html" else path / "index.html"


# ----------------------------------------------------------------------------------------------- commands
def _cmd_version(args: argparse.Namespace) -> int:
    print(_dist_version("memsweep"))
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
    from sweeps.spec import preset_descriptions, preset_path
    for name, desc in preset_descriptions().items():
        print(f"{name:<8} {desc}")
        if args.paths:
            print(f"         {preset_path(name)}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from sweeps.launch import preflight

    spec = load(args)
    print_spec(spec, _console(), args.overrides, base=_base(args))
    preflight(spec, local=False)
    print("ok")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    console = _console()
    result = run(load(args), args, console)
    return EXIT_FAILED if result is not None and result.n_failed else 0


def _cmd_status(args: argparse.Namespace) -> int:
    from analysis.store import print_summary
    print_summary(_existing_store(args.store), console=_console())
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    """SQL over one or several stores; prints the result (or writes it with --out)."""
    from analysis.store.sql import QueryError, sql
    *uris, query = args.items
    if not uris:
        raise UserError("sql needs at least one STORE before the query, e.g. memsweep sql runs/demo/store "
                        "\"select count(*) from trials\"")
    if args.out:
        _out_dir_ok(args.out)
    stores = [_existing_store(u, args.sweep) for u in uris]
    try:
        result = sql(query, stores, args.sweep)
    except Exception as e:  # duckdb's parser/binder errors and refused queries: the user's query, not a crash
        if isinstance(e, QueryError) or type(e).__module__.lstrip("_").startswith("duckdb"):
            raise UserError(f"query failed: {e}") from None
        raise
    console = _console()
    if args.out:
        console.print(f"{result.num_rows} rows written to {_write_table(result, args.out)}")
    else:
        for table in _result_tables(result.slice(0, args.limit), console.width):
            console.print(table)
        if result.num_rows > args.limit:
            console.print(f"({result.num_rows - args.limit} more rows; --out FILE writes them all)")
    _print_problems(stores, console)
    return 0


MIN_COLUMN_WIDTH = 8  # below this a rich table squeezes headers and values into nothing


def _result_tables(result: Any, width: int) -> list[Any]:
    """A query result as one rich table, or, when its columns cannot get MIN_COLUMN_WIDTH characters each in
    `width`, one two-column (column, value) table per row (psql's expanded display)."""
    from rich.table import Table

    def cell(v: Any) -> str:
        return "" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)

    rows = result.to_pylist()
    if len(result.column_names) * (MIN_COLUMN_WIDTH + 3) <= width:
        t = Table(*result.column_names)
        for row in rows:
            t.add_row(*(cell(v) for v in row.values()))
        return [t]
    tables = []
    for i, row in enumerate(rows):
        t = Table("column", "value", title=f"row {i + 1}", title_justify="left")
        for name, v in row.items():
            t.add_row(name, cell(v))
        tables.append(t)
    return tables


def _print_problems(stores: Sequence[Any], console: Any) -> None:
    """The store fragments a command had to skip (damaged, or not of the store's schema)."""
    for st in stores:
        if st.problems:
            console.print(f"[red]{len(st.problems)} fragment(s) of {st.uri} skipped:[/red]")
            for p in st.problems:
                console.print(f"  {p}", highlight=False, soft_wrap=True)


def _cmd_compact(args: argparse.Namespace) -> int:
    report = _existing_store(args.store).compact(sweep=args.sweep)
    console = _console()
    if not report:
        console.print("nothing to compact")
    for table, sweeps in report.items():
        for sweep, counts in sweeps.items() if isinstance(sweeps, dict) else [("", sweeps)]:
            console.print(f"{table} {sweep}: {counts}", highlight=False)
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    console = _console()
    if args.out:
        _out_dir_ok(args.out)
    laws = _fit(args.store, args.sweep, args.theta or [0.5], args.metric, console, args.covariate or (),
                args.gen_metric, args.onset_rule, args.keep_flagged, nulls=not args.no_nulls,
                pool_specs=args.pool_specs)
    if args.out:
        console.print(f"laws written to {_write_table(laws, args.out)}")
    return 0


def _out_dir_ok(out: str) -> None:
    """UserError when the folder of an output file cannot be made (checked before a long computation)."""
    from sweeps.spec.storage import creatable_dir

    why = creatable_dir(Path(out).expanduser().absolute().parent)
    if why:
        raise UserError(f"--out {out!r}: {why}")


def _cmd_overest(args: argparse.Namespace) -> int:
    from analysis.overest_predict import SCORES, store_prediction

    console = _console()
    if args.out:
        _out_dir_ok(args.out)
    table, lead = store_prediction(_existing_store(args.store, args.sweep), args.sweep)
    if table.empty:
        console.print("no overestimation rows: run the sweep with eval.overest_every >= 1 (masked diffusion)")
        return 0
    console.print(f"AUC of early overestimation (highest t) for the training strings copied at a later evaluation, "
                  f"against lead = later step / earlier step ({table.trial_id.nunique()} trials); baselines: "
                  + ", ".join(SCORES.values()), highlight=False)
    console.print(lead.to_string(index=False, float_format=lambda x: f"{x:.3f}"), highlight=False)
    if args.out:
        import pyarrow as pa

        path = _write_table(pa.Table.from_pandas(table, preserve_index=False), args.out)
        console.print(f"per-cell table written to {path}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() in (".html", ".htm") or out.is_file():
        raise UserError(f"--out {args.out!r}: the report is a folder (index.html, its figures, laws.csv), not a "
                        f"file; give a folder name, e.g. --out {out.with_suffix('') if out.suffix else 'report'}")
    index = _report(args.store, args.out, args.sweep, args.gen_metric, args.onset_rule, args.keep_flagged,
                    args.pool_specs)
    print(f"report: {index}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    console = _console()
    out = Path(args.out).expanduser().absolute()
    spec = load(args).with_store(str(out / "store"))
    result = run(spec, args, console)
    _fit(spec.store, spec.name, [0.1, 0.5, 0.9], DEFAULT_MEM_METRIC, console, nulls=False)   # the headline has them
    index = _report(spec.store, str(out / "report"), spec.name)
    from analysis.report import HEADLINE_FILE
    console.print("\n[bold]At a glance[/bold] (memorization beside its null; the report has the figures):")
    for line in (index.parent / HEADLINE_FILE).read_text().splitlines():
        console.print(f"  - {line}", highlight=False, soft_wrap=True)
    console.print(f"report (figures, laws.csv, laws.parquet): {index}", highlight=False)
    return EXIT_FAILED if result is not None and result.n_failed else 0


# ------------------------------------------------------------------------------------------------- parser
def _positive_int(text: str) -> int:
    """argparse type for counts such as --workers: an integer >= 1, else a usage error (exit 2)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer (e.g. 1 for a laptop, 2 here)")
    return value


def _fraction(text: str) -> float:
    """argparse type for an onset threshold: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; a threshold is a fraction in (0, 1]") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is outside (0, 1]; a threshold is a fraction of the curve's range "
                                         "(e.g. 0.5)")
    return value


def _table_file(text: str) -> str:
    """argparse type for --out of `fit`: a .parquet or .csv file name (refused before fitting)."""
    if Path(text).suffix not in (".parquet", ".csv"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a .parquet or .csv file name")
    return text


OVERRIDES_HELP = ("overrides of the spec, Hydra style: KEY=VALUE (value parsed as YAML), +KEY=VALUE, ~KEY, or "
                  "KEY=a,b for an axis, e.g. train.steps=2000 axes.P=[8,16] model.width=64,128 ~stop")
MULTIRUN_HELP = "Hydra's multirun flag, accepted: KEY=a,b is an axis of the sweep with or without it"


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=_positive_int, default=None, help="trials at once (default: as many as fit)")
    p.add_argument("--address", default=None, help="join a running Ray cluster: 'auto' or HOST:PORT")
    p.add_argument("--no-progress", action="store_true", help="no live table (Ray's own output is still quiet)")
    p.add_argument("--resume", action="store_true",
                   help="continue unfinished trials from their latest checkpoints (finished ones are always skipped)")
    p.add_argument("-m", "--multirun", action="store_true", help=MULTIRUN_HELP)
    p.add_argument("--verbose", action="store_true",
                   help="also show Ray's, Tune's and Optuna's own log lines and warnings (hidden by default)")


def _add_reading_options(p: argparse.ArgumentParser) -> None:
    """How `fit` and `report` read onsets: the generalization metric, the onset rule, flagged trials, specs."""
    p.add_argument("--gen-metric", default=DEFAULT_GEN_METRIC, choices=GEN_METRICS,
                   help="curve whose threshold crossing defines tau_gen (default gen_share = novel_valid_frac / "
                        "(1 - p(T)))")
    p.add_argument("--onset-rule", default="consecutive", choices=("consecutive", "first"),
                   help="consecutive: theta at 2 evaluations in a row (default); first: the first crossing")
    p.add_argument("--keep-flagged", action="store_true",
                   help="keep trials flagged for chance > 1%%, p(T) > 0.5 or a noisy twin null in the laws and "
                        "verdicts (they are left out by default; either way the output lists them)")
    p.add_argument("--pool-specs", action="store_true",
                   help="pool a sweep's trials that ran under different effective specs (a resume after editing "
                        "a fixed setting such as train.lr); by default they are separate groups, labeled "
                        "<sweep>@<spec key>, and the output names the settings that differ")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memsweep", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = add("run", _cmd_run, "run a sweep (a spec file or a preset name) on Ray Tune")
    p.add_argument("spec", metavar="SPEC", help="YAML spec file or preset name (see `memsweep presets`)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
    _add_run_options(p)
    p.add_argument("--store", default=None, metavar="URI", help="write to this store instead of the spec's")

    p = add("validate", _cmd_validate, "check a spec without running it; print its trial count, grid and the "
                                       "effective spec, and check that its store is reachable")
    p.add_argument("spec", metavar="SPEC", help="YAML spec file or preset name")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
    p.add_argument("--store", default=None, metavar="URI", help="validate with this store instead of the spec's")
    p.add_argument("-m", "--multirun", action="store_true", help=MULTIRUN_HELP)

    p = add("presets", _cmd_presets, "list the shipped presets")
    p.add_argument("--paths", action="store_true", help="also print each preset's file path")

    p = add("status", _cmd_status, "summarize a store: trials by status, rows and fragments per table")
    p.add_argument("store", metavar="STORE", help="store path or URI")

    p = add("sql", _cmd_sql, "SQL (duckdb) over one or several stores; tables are views with retried rows "
                             "resolved, as Store.read returns them")
    p.add_argument("items", nargs="+", metavar="STORE... QUERY", help="store paths or URIs, then the query")
    p.add_argument("--sweep", default=None, help="only this sweep")
    p.add_argument("--out", type=_table_file, default=None, metavar="FILE", help="write the result (.parquet or .csv)")
    p.add_argument("--limit", type=_positive_int, default=40, help="rows printed (default 40)")

    p = add("compact", _cmd_compact, "merge a store's small fragments into one per table and sweep")
    p.add_argument("store", metavar="STORE", help="store path or URI")
    p.add_argument("--sweep", default=None, help="only this sweep")

    p = add("fit", _cmd_fit, "fit onset laws tau = C * P**beta per (tail, L) and jointly; print them")
    p.add_argument("store", metavar="STORE", help="store path or URI")
    p.add_argument("--sweep", default=None, help="only this sweep (default: every sweep in the store)")
    p.add_argument("--theta", type=_fraction, action="append", default=None,
                   help="onset threshold in (0, 1]; repeat for several (default 0.5)")
    p.add_argument("--metric", default=DEFAULT_MEM_METRIC, choices=MEM_METRICS,
                   help="curve whose threshold crossing defines the onset")
    p.add_argument("--out", type=_table_file, default=None, metavar="FILE",
                   help="also write the laws table (.parquet or .csv)")
    p.add_argument("--covariate", action="append", default=None, metavar="COLUMN",
                   help="also fit a joint law whose intercepts are linear in this trial column (e.g. entropy, "
                        "entropy_tilt); repeat for several")
    _add_reading_options(p)
    p.add_argument("--no-nulls", action="store_true",
                   help="skip the order and slop statistics against their nulls printed after the laws")

    p = add("overest", _cmd_overest, "does early overestimation predict which training strings get copied? AUC "
                                     "against lead time, beside the model's loss and prototypicality")
    p.add_argument("store", metavar="STORE", help="store path or URI")
    p.add_argument("--sweep", default=None, help="only this sweep")
    p.add_argument("--out", type=_table_file, default=None, metavar="FILE",
                   help="also write the per-(trial, early, late step) table (.parquet or .csv)")

    p = add("report", _cmd_report, "write the HTML report (figures + index.html) of a store")
    p.add_argument("store", metavar="STORE", help="store path or URI")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--sweep", default=None, help="only this sweep")
    _add_reading_options(p)

    p = add("demo", _cmd_demo, "run the demo preset into DIR/store, fit and print the laws, write DIR/report")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
    _add_run_options(p)
    p.add_argument("--spec", default="demo", help=argparse.SUPPRESS)  # e.g. `--spec tiny` for a quick check

    add("version", _cmd_version, "print the installed version")
    return parser


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse; overrides may come anywhere after the spec, between options (argparse stops a positional list at
    the first option, so the rest arrive as unknown arguments and are added here)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(x.startswith("-") for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"memsweep: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("memsweep: interrupted", file=sys.stderr)
        if args.command in ("run", "demo"):
            print(f"resume with: {resume_command(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as e:
        if e.code == EXIT_INTERRUPTED:
            return EXIT_INTERRUPTED
        raise
    except Exception as e:
        # A SpecError can only come from sweeps.spec, already imported by then; not importing it up front
        # keeps `memsweep --help` and `version` free of torch.
        spec_module = sys.modules.get("sweeps.spec")
        if spec_module is not None and isinstance(e, spec_module.SpecError):
            print(f"memsweep: invalid spec: {e}", file=sys.stderr)
            return EXIT_USAGE
        lease_module = sys.modules.get("sweeps.lease")  # another driver holds the sweep, or the store is unwritable
        if lease_module is not None and isinstance(e, lease_module.RefusedToStart):
            print(f"memsweep: {e}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
