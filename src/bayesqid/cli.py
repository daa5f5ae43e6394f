"""Command line: ``bayesqid data | fit | predict``.

Strings become typed objects here and nowhere else. Any :class:`BayesqidError` (bad data,
spec or run file) is printed as one line on stderr with exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from bayesqid.constants import CI_PROB, DEFAULT_SEED

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: Where ``fit`` writes its run unless told otherwise.
DEFAULT_RUN = Path("runs") / "default.nc"

#: Natural log of a 256k vocabulary: QiD above it exceeds a uniform guess and is unphysical.
UNIFORM_GUESS_NATS = 12.5


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _log(msg: str) -> None:
    print(f"[bayesqid] {msg}", file=sys.stderr, flush=True)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bayesqid`` command."""
    from bayesqid.fit import SAMPLERS

    parser = _Parser(prog="bayesqid", description="Hierarchical Bayesian scaling laws of "
                     "quantization-induced degradation (QiD).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("data", help="validate and summarise a dataset")
    p.add_argument("--data", help="CSV or Parquet in the canonical schema (default: bundled reference)")

    p = sub.add_parser("fit", help="fit a model with NUTS, save the run, print the 100T table")
    p.add_argument("--spec", help="shipped spec name or path to a .toml (default: ouyang)")
    p.add_argument("--data", help="CSV or Parquet (default: bundled reference)")
    p.add_argument("--out", default=str(DEFAULT_RUN), help=f"run file to write (default: {DEFAULT_RUN})")
    p.add_argument("--sampler", choices=sorted(SAMPLERS), default="nutpie")
    p.add_argument("--draws", type=_positive_int, default=1000)
    p.add_argument("--tune", type=_positive_int, default=1000)
    p.add_argument("--chains", type=_positive_int, default=4)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--strict", action="store_true", help="exit 1 if the convergence gate fails")

    p = sub.add_parser("predict", help="bands for the 100T table or a grid from a saved run")
    p.add_argument("run", help="run file written by 'bayesqid fit'")
    p.add_argument("--grid", help="CSV with family, params, tokens, bits, method, group_size, eval_set")
    p.add_argument("--interval", type=_interval, default=CI_PROB, help=f"central interval (default {CI_PROB})")
    p.add_argument("--out", help="CSV to write the bands to")
    p.add_argument("--strict", action="store_true", help="exit 1 if the run failed its convergence gate")
    return parser


def _cmd_data(args: argparse.Namespace) -> int:
    from bayesqid.data import load_dataset

    dataset = load_dataset(args.data)
    print(dataset.summary())
    return EXIT_OK


def _cmd_fit(args: argparse.Namespace) -> int:
    from bayesqid.data import load_dataset
    from bayesqid.fit import SamplerConfig, fit
    from bayesqid.predict import default_grid, predict
    from bayesqid.spec import load_spec

    spec = load_spec(args.spec)
    dataset = load_dataset(args.data)
    for exc in dataset.excluded:
        _log(f"excluded {exc.count} rows: {exc.reason}")
    config = SamplerConfig(sampler=args.sampler, draws=args.draws, tune=args.tune, chains=args.chains,
                           seed=args.seed, cores=min(args.chains, os.cpu_count() or 1),
                           progress=sys.stderr.isatty())
    run = fit(spec, dataset, config, log=_log)
    path = run.save(args.out)
    print(run.diagnostics.format())
    print(f"run saved to {path}")
    _print_table(run, predict(run, default_grid()))
    return EXIT_ERROR if args.strict and not run.diagnostics.passed else EXIT_OK


def _cmd_predict(args: argparse.Namespace) -> int:
    from bayesqid.data import load_grid
    from bayesqid.outputs import write_csv
    from bayesqid.predict import default_grid, predict
    from bayesqid.run import load_run

    run = load_run(args.run)
    grid = load_grid(args.grid) if args.grid else default_grid()
    if not run.diagnostics.passed:
        _log("warning: this run FAILED its convergence gate: " + "; ".join(run.diagnostics.problems))
    table = predict(run, grid, prob=args.interval)
    if args.out:
        write_csv(table, args.out)
        _log(f"wrote {len(table)} rows to {args.out}")
    if args.grid is None or not args.out:
        _print_table(run, table, prob=args.interval)
    return EXIT_ERROR if args.strict and not run.diagnostics.passed else EXIT_OK


def _print_table(run: object, table: object, prob: float = CI_PROB) -> None:
    from bayesqid.predict import format_table

    print()
    print(f"QiD in nats, median [{prob:.0%} interval]; 'new family' draws its effects from the population")
    print(format_table(table))  # type: ignore[arg-type]
    if (table["pred_upper"] > UNIFORM_GUESS_NATS).any():  # type: ignore[index]
        print(f"note: bands above ~{UNIFORM_GUESS_NATS:g} nats exceed the loss of a uniform guess; the "
              "power law is extrapolating past where it can hold.")


COMMANDS = {"data": _cmd_data, "fit": _cmd_fit, "predict": _cmd_predict}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bayesqid`` command; returns the exit status."""
    from bayesqid.errors import BayesqidError, ConvergenceWarning

    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            # The gate is printed by the commands themselves.
            warnings.simplefilter("ignore", ConvergenceWarning)
            return COMMANDS[args.command](args)
    except BayesqidError as err:
        print(f"bayesqid {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"bayesqid {args.command}: interrupted; no partial output was written", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
