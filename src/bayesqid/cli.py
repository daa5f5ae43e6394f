"""Command line: ``bayesqid data | fit | predict | tokens | training-level | report | sbc |
sensitivity | compare | measure | lab``.

Strings become typed objects here and nowhere else. Any :class:`BayesqidError` (bad data,
spec or run file) is printed as one line on stderr with exit status 2; no traceback.

Start-up: PyMC, PyTensor and ArviZ take seconds to import, so nothing at the top of this module
imports them, and each command imports them only after it has read and checked its inputs. The
parser, ``--help``, usage errors, ``lab check`` and bad specs, data and run files answer in a
fraction of a second (``benchmarks/bench_startup.py``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bayesqid.argtypes import group_size, interval, nonnegative_int, positive_int, seed
from bayesqid.constants import CI_PROB, DEFAULT_SEED, DEFAULT_SPEC
from bayesqid.errors import BayesqidError, ConvergenceWarning

# The lab's subcommands: these modules import no torch (the extra is checked when they run).
from bayesqid.lab.command import add_lab_parser, run_lab
from bayesqid.measure.command import add_measure_parser, run_measure

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: Where ``fit`` writes its run unless told otherwise.
DEFAULT_RUN = Path("runs") / "default.nc"
#: Where ``sbc`` writes its results unless told otherwise.
DEFAULT_SBC = Path("runs") / "sbc"
#: Where ``compare`` writes its results unless told otherwise.
DEFAULT_COMPARE = Path("runs") / "compare"

#: Column of every written table that carries its run's convergence verdict.
GATE_COLUMN = "convergence_gate"

#: Natural log of a 256k vocabulary: QiD above it exceeds a uniform guess and is unphysical.
UNIFORM_GUESS_NATS = 12.5


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _log(msg: str) -> None:
    print(f"[bayesqid] {msg}", file=sys.stderr, flush=True)


def _add_run_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run file written by 'bayesqid fit'")


def _add_new_family_option(p: argparse.ArgumentParser) -> None:
    # A --family the run has not fitted is refused (a typo must not become a new-family answer)
    # unless this flag says a new family is meant.
    p.add_argument("--new-family", action="store_true",
                   help="--family names a new family (drawn from the population), not a fitted one")


def _add_table_options(p: argparse.ArgumentParser, what: str) -> None:
    """Options shared by the commands that read a run and write a table."""
    p.add_argument("--interval", type=interval, default=CI_PROB,
                   help=f"central interval (default {CI_PROB})")
    p.add_argument("--out", help=f"CSV to write the {what} to")
    p.add_argument("--strict", action="store_true", help="exit 1 if the run failed its convergence gate")


DATA_HELP = ("data: 'reference' (the bundled data), 'lab-default', 'lab-long' or 'lab-recipes' (bundled lab "
             "sweeps), or "
             "a CSV/Parquet file; repeat to join several as one dataset (default: reference)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bayesqid`` command."""
    from bayesqid.engines.sampler import ENGINES, SAMPLERS, SamplerConfig

    parser = _Parser(prog="bayesqid", description="Hierarchical Bayesian scaling laws of "
                     "quantization-induced degradation (QiD).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("data", help="validate and summarise a dataset")
    p.add_argument("--data", action="append", help=DATA_HELP)

    p = sub.add_parser("fit", help="fit a model with NUTS, save the run, print the 100T table")
    p.add_argument("--spec", help=f"shipped spec name or path to a .toml (default: {DEFAULT_SPEC})")
    p.add_argument("--data", action="append", help=DATA_HELP)
    p.add_argument("--out", default=str(DEFAULT_RUN), help=f"run file to write (default: {DEFAULT_RUN})")
    p.add_argument("--sampler", choices=sorted(SAMPLERS), default="nutpie")
    p.add_argument("--draws", type=positive_int, default=1000)
    p.add_argument("--tune", type=positive_int, default=SamplerConfig.tune)
    p.add_argument("--chains", type=positive_int, default=4)
    p.add_argument("--seed", type=seed, default=DEFAULT_SEED)
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="how the posterior is sampled (default auto: whitened for linear laws)")
    p.add_argument("--strict", action="store_true", help="exit 1 if the convergence gate fails")

    p = sub.add_parser("predict", help="bands for the 100T table or a grid from a saved run")
    _add_run_argument(p)
    p.add_argument("--grid", help="CSV with family, params, tokens, bits, method, group_size, eval_set")
    _add_table_options(p, "bands")

    p = sub.add_parser("tokens", help="training tokens at which QiD reaches a target (Table 1 with bands)")
    _add_run_argument(p)
    # Values stay text here: the API checks them and names the bad one in a one-line error.
    p.add_argument("--qid", nargs="+", default=[0.2, 0.3, 0.4, 0.5], help="QiD targets in nats")
    p.add_argument("--params", nargs="+", default=[1e9, 7e9, 70e9, 405e9],
                   help="non-embedding parameter counts")
    p.add_argument("--bits", nargs="+", default=[2, 3, 4], help="weight bit widths")
    p.add_argument("--method", default="GPTQ", help="quantizer (default GPTQ)")
    p.add_argument("--group-size", type=group_size, default=128, help="integer or per-channel (default 128)")
    p.add_argument("--eval-set", default="wikitext2", help="evaluation set (default wikitext2)")
    p.add_argument("--family", help="a fitted family (default: a new family drawn from the population)")
    _add_new_family_option(p)
    p.add_argument("--token-range", type=float, nargs=2, default=[1e9, 1e16], metavar=("LOW", "HIGH"),
                   help="searched training tokens (default 1e9 1e16)")
    _add_table_options(p, "table")

    p = sub.add_parser("training-level", help="posterior of a model's training tokens from its measured QiD")
    _add_run_argument(p)
    p.add_argument("--measurements", required=True,
                   help="CSV with family (or model), params, bits, method, group_size, eval_set, qid "
                   "(one model)")
    p.add_argument("--family", help="read the model as a member of this fitted family (default: a new "
                   "family drawn from the population)")
    _add_new_family_option(p)
    p.add_argument("--prior-min", type=float, default=1e9, help="log-uniform prior over D: lower end (1e9)")
    p.add_argument("--prior-max", type=float, default=1e15, help="log-uniform prior over D: upper end (1e15)")
    _add_table_options(p, "summary")

    p = sub.add_parser("report", help="self-contained HTML uncertainty report of one or more runs")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run files written by 'bayesqid fit'")
    p.add_argument("--out", required=True, help="HTML file to write (e.g. runs/report.html)")
    p.add_argument("--strict", action="store_true", help="exit 1 if a run failed its convergence gate")
    p.add_argument("--sbc", metavar="DIR",
                   help="also show the calibration written by 'bayesqid sbc --out DIR'")
    p.add_argument("--compare", metavar="DIR",
                   help="also show the law-form comparison written by 'bayesqid compare --out DIR'")

    p = sub.add_parser("sbc", help="simulation-based calibration of a spec and its sampler (resumable)")
    p.add_argument("--spec", help=f"shipped spec name or path to a .toml (default: {DEFAULT_SPEC})")
    p.add_argument("--data", action="append",
                   help="design to simulate on, as for 'fit --data' (default: the bundled reference rows)")
    p.add_argument("--replicates", type=positive_int, default=100, help="simulated datasets (default 100)")
    p.add_argument("--seed", type=seed, default=DEFAULT_SEED, help="root seed of every replicate's seeds")
    p.add_argument("--scheduler",
                   help="Dask scheduler address, or 'synchronous' (default: a local cluster)")
    p.add_argument("--workers", type=positive_int,
                   help="workers of the local cluster (default: one per core)")
    p.add_argument("--preset", choices=["default", "ci"], default="default",
                   help="sampler settings of every fit (default: those of 'bayesqid fit')")
    p.add_argument("--out", default=str(DEFAULT_SBC),
                   help=f"directory of the results (default: {DEFAULT_SBC}); rerunning with it resumes")

    p = sub.add_parser("sensitivity", help="prior sensitivity (power-scaling) of a saved run")
    _add_run_argument(p)
    p.add_argument("--out", help="CSV to write the table to")

    p = sub.add_parser("compare", help="compare law forms: PSIS-LOO, leave-one-family-out, forecast, "
                       "scale-up and extrapolation CV, stacking (resumable)")
    p.add_argument("items", nargs="+", metavar="SPEC_OR_RUN",
                   help="shipped spec names, spec .toml files or run .nc files (at least two)")
    p.add_argument("--data", action="append", help=DATA_HELP)
    p.add_argument("--cv", nargs="+", default=["loo", "logo", "forecast", "scale-up", "extrapolate"],
                   metavar="SCHEME", help="loo, logo (a new family), forecast (the most-trained families "
                   "as new ones), scale-up (a family's largest size), extrapolate (default: all; loo is "
                   "always computed)")
    p.add_argument("--out", default=str(DEFAULT_COMPARE),
                   help=f"directory of the results (default: {DEFAULT_COMPARE}); rerunning with the "
                   "same directory resumes")
    p.add_argument("--scheduler", help="Dask scheduler address, or 'synchronous' (default: a local cluster)")
    p.add_argument("--workers", type=positive_int,
                   help="workers of the local cluster (default: one per core)")
    p.add_argument("--preset", choices=["default", "ci"], default="default",
                   help="sampler settings of every fit (default: those of 'bayesqid fit')")
    p.add_argument("--draws", type=positive_int, help="override the preset's kept draws per chain")
    p.add_argument("--tune", type=positive_int, help="override the preset's warm-up iterations")
    p.add_argument("--chains", type=positive_int, help="override the preset's chains")
    p.add_argument("--seed", type=seed, default=DEFAULT_SEED, help="root seed of every fit's seed")
    p.add_argument("--quantile", type=interval, default=0.75,
                   help="token quantile of the extrapolation split (default 0.75)")
    p.add_argument("--forecast-share", type=interval, default=0.25,
                   help="share of families, by their largest D, that the forecast split holds out "
                   "(default 0.25, at least two families)")
    p.add_argument("--retries", type=nonnegative_int, default=1,
                   help="extra attempts of a failing fit (default 1)")
    p.add_argument("--interval", type=interval, default=CI_PROB,
                   help=f"predictive interval whose coverage is reported (default {CI_PROB})")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 if a fold failed or a full fit failed its convergence gate")
    add_measure_parser(sub)
    add_lab_parser(sub)
    return parser


def _cmd_data(args: argparse.Namespace) -> int:
    from bayesqid.data.sources import load_dataset

    dataset = load_dataset(args.data)
    print(dataset.summary())
    return EXIT_OK


def _cmd_fit(args: argparse.Namespace) -> int:
    from bayesqid.engines.sampler import SamplerConfig
    from bayesqid.lang.spec import load_spec

    _check_output(args.out)  # a typo'd --out must not cost a whole fit
    spec = load_spec(args.spec)  # before pandas is imported: a bad spec answers at once
    from bayesqid.data.sources import load_dataset

    dataset = load_dataset(args.data)
    # Libraries that take seconds to import come after the inputs are read (module docstring).
    from bayesqid.questions.predict import default_grid, predict
    from bayesqid.sampling.fit import fit

    for exc in dataset.excluded:
        _log(f"excluded {exc.count} rows: {exc.reason}")
    config = SamplerConfig(sampler=args.sampler, draws=args.draws, tune=args.tune, chains=args.chains,
                           seed=args.seed, engine=args.engine, cores=min(args.chains, os.cpu_count() or 1),
                           progress=sys.stderr.isatty())
    run = fit(spec, dataset, config, log=_log)
    _check_interrupted()  # never save a run whose sampling a signal cut short
    path = run.save(args.out)
    print(run.diagnostics.format())
    print(f"run saved to {path}")
    _print_table(run, predict(run, default_grid()))
    return EXIT_ERROR if args.strict and not run.diagnostics.passed else EXIT_OK


def _check_output(path: str) -> None:
    """Refuse an output path that cannot be written, before any long computation."""
    from bayesqid.outputs import check_writable

    check_writable(path)


def _cmd_predict(args: argparse.Namespace) -> int:
    from bayesqid.outputs import write_csv
    from bayesqid.sampling.run import load_run

    run = load_run(args.run)
    from bayesqid.data.dataset import load_grid

    grid = load_grid(args.grid) if args.grid else None
    # Libraries that take seconds to import come after the inputs are read (module docstring).
    from bayesqid.questions.grid import check_grid
    from bayesqid.questions.predict import BAND_COLUMNS, default_grid, predict

    # A grid column named like one this command writes would be overwritten: refused, naming the file.
    grid = default_grid() if grid is None else check_grid(grid, path=args.grid,
                                                          outputs=(*BAND_COLUMNS, GATE_COLUMN))
    _warn_gate(run)
    table = predict(run, grid, prob=args.interval)
    if args.out:
        write_csv(_with_gate(table, run), args.out)
        _log(f"wrote {len(table)} rows to {args.out}")
    if args.grid is None or not args.out:
        _print_table(run, table, prob=args.interval)
    return EXIT_ERROR if args.strict and not run.diagnostics.passed else EXIT_OK


def _warn_gate(run: object) -> None:
    diagnostics = run.diagnostics  # type: ignore[attr-defined]
    if not diagnostics.passed:
        _log("warning: this run FAILED its convergence gate: " + "; ".join(diagnostics.problems))


def _with_gate(table: Any, run: Any) -> Any:
    """``table`` plus a ``convergence_gate`` column, so a written table carries its run's verdict."""
    diagnostics = run.diagnostics
    verdict = "passed" if diagnostics.passed else "FAILED: " + "; ".join(diagnostics.problems)
    return table.assign(**{GATE_COLUMN: verdict})


def _cmd_tokens(args: argparse.Namespace) -> int:
    from bayesqid.outputs import write_csv
    from bayesqid.sampling.run import load_run

    run = load_run(args.run)
    # Libraries that take seconds to import come after the inputs are read (module docstring).
    from bayesqid.questions.inverse import format_budget_table, token_budget

    table = token_budget(run, qid_targets=args.qid, params=args.params, bits=args.bits, method=args.method,
                         group_size=args.group_size, eval_set=args.eval_set, family=args.family,
                         new_family=args.new_family, prob=args.interval,
                         token_range=tuple(args.token_range))
    _warn_gate(run)  # after the input checks: a typo gets one line of error, nothing else
    if args.out:
        write_csv(_with_gate(table, run), args.out)
        _log(f"wrote {len(table)} rows to {args.out}")
    low, high = args.token_range
    who = f"family {args.family}" if args.family else "a new family drawn from the population"
    print(f"training tokens (trillions) at which the law-mean QiD reaches each target, median "
          f"[{args.interval:.0%} interval]; {who}; searched {low:.3g} to {high:.3g} tokens")
    print(format_budget_table(table, (low, high)))
    print("never: share of draws not reaching the target in the range (counted as more tokens); below: "
          "share already at the target at its lower end (counted as fewer)")
    drawn = sorted({pair for cell in table["new_levels"] for pair in str(cell).split(";") if pair})
    if drawn:
        print("drawn from the population: " + "; ".join(drawn))
    return EXIT_ERROR if args.strict and not run.diagnostics.passed else EXIT_OK


def _cmd_training_level(args: argparse.Namespace) -> int:
    from bayesqid.outputs import write_csv
    from bayesqid.sampling.run import load_run

    run = load_run(args.run)
    # Libraries that take seconds to import come after the inputs are read (module docstring).
    from bayesqid.questions.training import (
        MIN_ESS,
        format_training_level,
        load_measurements,
        training_level,
    )

    measurements = load_measurements(args.measurements)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the effective-draw count is printed below
        level = training_level(run, measurements, family=args.family, new_family=args.new_family,
                               prior=(args.prior_min, args.prior_max), prob=args.interval)
    _warn_gate(run)
    if args.out:
        write_csv(_with_gate(level.summary, run), args.out)
        _log(f"wrote the summary to {args.out}")
    print(format_training_level(level))
    if level.ess < MIN_ESS:
        print(f"note: fewer than {MIN_ESS} effective draws carry this posterior; its bands are noisy")
    return EXIT_ERROR if args.strict and not run.diagnostics.passed else EXIT_OK


def _print_table(run: object, table: object, prob: float = CI_PROB) -> None:
    from bayesqid.questions.predict import format_table

    print()
    print(f"QiD in nats, median [{prob:.0%} interval]; 'new family' draws its effects from the population")
    print(format_table(table))  # type: ignore[arg-type]
    if (table["pred_upper"] > UNIFORM_GUESS_NATS).any():  # type: ignore[index]
        print(f"note: bands above ~{UNIFORM_GUESS_NATS:g} nats exceed the loss of a uniform guess; the "
              "power law is extrapolating past where it can hold.")


def _cmd_report(args: argparse.Namespace) -> int:
    import shlex

    from bayesqid.outputs import write_atomic
    from bayesqid.sampling.run import load_run

    _check_output(args.out)  # before the report's figures are drawn
    runs = [load_run(path) for path in args.runs]
    # Libraries that take seconds to import come after the inputs are read (module docstring).
    from bayesqid.report.builder import build_report

    extra = []
    if args.sbc:
        from bayesqid.checks.sbc import load_sbc
        from bayesqid.report.attached import sbc_section

        extra.append(sbc_section(load_sbc(args.sbc)))
    if args.compare:
        from bayesqid.checks.compare import load_comparison
        from bayesqid.report.attached import compare_section

        extra.append(compare_section(load_comparison(args.compare)))
    for path, run in zip(args.runs, runs, strict=True):
        if not run.diagnostics.passed:
            _log(f"warning: {path} FAILED its convergence gate (shown in the report): "
                 + "; ".join(run.diagnostics.problems))
    command = " ".join(["bayesqid", *(shlex.quote(a) for a in sys.argv[1:])]) if sys.argv[1:] else None
    page = build_report(runs, command=command, labels=[Path(p).name for p in args.runs], extra=extra)
    path = write_atomic(args.out, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    print(f"report written to {path}")
    failed = any(not run.diagnostics.passed for run in runs)
    return EXIT_ERROR if args.strict and failed else EXIT_OK


def _cmd_sbc(args: argparse.Namespace) -> int:
    from bayesqid.engines.sampler import SamplerConfig
    from bayesqid.lang.spec import load_spec

    _check_output(str(Path(args.out) / "summary.json"))
    spec = load_spec(args.spec)  # before pandas is imported: a bad spec answers at once
    from bayesqid.data.sources import load_dataset

    dataset = load_dataset(args.data)
    # Libraries that take seconds to import come after the inputs are read (module docstring).
    from bayesqid.checks.sbc import format_tests, run_sbc

    # A local cluster runs one fit per single-threaded worker; in-process, a fit may use the cores.
    cores = min(4, os.cpu_count() or 1) if args.scheduler == "synchronous" else 1
    config = SamplerConfig.preset(args.preset, cores=cores)
    result = run_sbc(spec, dataset, config, replicates=args.replicates, seed=args.seed, out=args.out,
                     scheduler=args.scheduler, n_workers=args.workers, log=_log)
    print(format_tests(result))
    print(f"results in {args.out}: ranks.csv, uniformity.csv, ecdf.png, summary.json")
    print(result.verdict)
    return EXIT_OK if result.passed else EXIT_ERROR


def _cmd_sensitivity(args: argparse.Namespace) -> int:
    from bayesqid.outputs import write_csv
    from bayesqid.sampling.run import load_run

    run = load_run(args.run)
    if args.out:
        _check_output(args.out)
    # Libraries that take seconds to import come after the inputs are read (module docstring).
    from bayesqid.checks.sensitivity import format_sensitivity, prior_sensitivity

    table = prior_sensitivity(run)
    _warn_gate(run)
    if args.out:
        write_csv(_with_gate(table, run), args.out)
        _log(f"wrote {len(table)} rows to {args.out}")
    print("power-scaling sensitivity (ArviZ psens; notable at >= 0.05); 100T rows: new family, GPTQ g128, "
          "WikiText-2, law-mean log QiD at 1e14 tokens")
    print(format_sensitivity(table))
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from bayesqid.checks.compare import compare
    from bayesqid.data.sources import load_dataset
    from bayesqid.engines.sampler import SamplerConfig

    _check_output(str(Path(args.out) / "compare.csv"))
    dataset = load_dataset(args.data)
    # A local cluster runs one fit per single-threaded worker; in-process, a fit may use the cores.
    cores = min(4, os.cpu_count() or 1) if args.scheduler == "synchronous" else 1
    overrides = {k: getattr(args, k) for k in ("draws", "tune", "chains") if getattr(args, k) is not None}
    config = SamplerConfig.preset(args.preset, cores=cores, seed=args.seed, **overrides)
    result = compare(args.items, dataset, cv=args.cv, out=args.out, scheduler=args.scheduler,
                     n_workers=args.workers, config=config, seed=args.seed, prob=args.interval,
                     quantile=args.quantile, forecast_share=args.forecast_share,
                     retries=args.retries, log=_log)
    _check_interrupted()
    written = result.write(args.out)
    print(result.summary())
    print(f"results in {args.out}: " + ", ".join(p.name for p in written))
    bad = bool(result.failed) or not result.table["gate_passed"].astype(bool).all()
    return EXIT_ERROR if args.strict and bad else EXIT_OK


COMMANDS = {"data": _cmd_data, "fit": _cmd_fit, "predict": _cmd_predict, "tokens": _cmd_tokens,
            "training-level": _cmd_training_level, "report": _cmd_report, "sbc": _cmd_sbc,
            "sensitivity": _cmd_sensitivity, "compare": _cmd_compare, "measure": run_measure,
            "lab": run_lab}


#: Commands whose finished units survive an interruption (rerunning resumes them).
RESUMABLE = ("compare", "sbc", "measure", "lab")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bayesqid`` command; returns the exit status."""
    # A kill (SIGTERM) ends the command like Ctrl-C: as a KeyboardInterrupt, so samplers stop,
    # atomic writers remove their temporary files, and the exit is one line with status 130.
    # Both handlers also set a flag that fit checks before saving: the compilers and samplers
    # underneath sometimes swallow the KeyboardInterrupt (numba's callbacks report it as
    # "Exception ignored" and carry on; nutpie returns the draws made so far). Only the main
    # thread may install handlers; a SIGINT that is ignored (nohup, '&') stays ignored; the
    # previous handlers are restored on return. They go in first, before the parser is built
    # and before any command imports its libraries: a kill in the first seconds of a command
    # exits 130 like a later one, not 143.
    global _interrupted
    _interrupted = False
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, _interrupt)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, _interrupt)
    unraisable, sys.unraisablehook = sys.unraisablehook, _quiet_interrupts(sys.unraisablehook)
    command = _command_of(sys.argv[1:] if argv is None else argv)  # until the parser has named it
    try:
        args = build_parser().parse_args(argv)
        command = args.command
        with warnings.catch_warnings():
            # The gate is printed by the commands themselves.
            warnings.simplefilter("ignore", ConvergenceWarning)
            # PyTensor warns at import when its C backend finds no BLAS to link. The graphs have
            # no PyTensor matrix products (the collapsed engine calls SciPy's LAPACK itself) and
            # nutpie compiles with numba, so it only adds noise here.
            warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
            # Other warnings (e.g. duplicated rows kept) print as one line, not file:line + source.
            warnings.showwarning = lambda message, *_a, **_k: print(
                f"bayesqid {command}: warning: {_one_line(message)}", file=sys.stderr)
            return COMMANDS[command](args)
    except BaseException as err:
        # Whatever a signal turned into counts as the interruption: a KeyboardInterrupt raised
        # inside an extension module's import or a library's callback may surface as another
        # error (or be swallowed, leaving only the flag).
        if isinstance(err, KeyboardInterrupt) or _interrupted:
            kept = ("finished work is kept; rerun the same command to resume" if command in RESUMABLE
                    else "no partial output was written")
            print(f"{_prog(command)}: interrupted; {kept}", file=sys.stderr)
            _forget_unhandled_interrupt()
            return EXIT_INTERRUPTED
        # OSError: an output path that cannot be written (permissions, full disk, ...).
        if isinstance(err, (BayesqidError, OSError)):
            print(f"bayesqid {command}: error: {_one_line(err)}", file=sys.stderr)
            return EXIT_USAGE
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        sys.unraisablehook = unraisable


def _forget_unhandled_interrupt() -> None:
    """Make the interpreter exit with the status :func:`main` returns, not by SIGINT.

    CPython flags a KeyboardInterrupt that escapes code it evaluates from C (some extension
    modules run code that way while they are imported) and, at exit, then kills the process with
    SIGINT whatever status was returned; a signal that lands there during a command's imports
    would make it die by SIGINT instead of exiting 130. Evaluating a no-op by the same C path
    clears the flag.
    """
    import ctypes

    ctypes.pythonapi.PyRun_SimpleString(b"pass")


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first argument that is one), else None."""
    return next((a for a in argv if a in COMMANDS), None)


def _prog(command: str | None) -> str:
    """How a message names the program: ``bayesqid fit``, or ``bayesqid`` before a command is known."""
    return f"bayesqid {command}" if command else "bayesqid"


#: Set when SIGINT or SIGTERM arrived during the current command.
_interrupted = False


def _interrupt(signum: int, frame: object) -> None:
    """SIGINT/SIGTERM handler: note it and raise KeyboardInterrupt (exit status 130 in :func:`main`)."""
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def _check_interrupted() -> None:
    """Raise KeyboardInterrupt if a signal arrived, even one a library swallowed."""
    if _interrupted:
        raise KeyboardInterrupt


def _quiet_interrupts(hook):  # type: ignore[no-untyped-def]
    """An unraisable-exception hook that drops KeyboardInterrupts (noted by :func:`_interrupt`)."""
    def quiet(info):  # type: ignore[no-untyped-def]
        if not isinstance(info.exc_value, KeyboardInterrupt):
            hook(info)
    return quiet


def _one_line(message: object) -> str:
    """``message`` as a single line (the contract of every error the CLI prints)."""
    return " ".join(str(message).split("\n")).strip()


if __name__ == "__main__":
    sys.exit(main())
