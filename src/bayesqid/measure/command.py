"""Command-line glue of the lab: the ``bayesqid measure`` subcommand.

``cli.py`` adds the subcommand with :func:`add_measure_parser` and dispatches to
:func:`run_measure`; errors are raised as :class:`~bayesqid.errors.BayesqidError` for it to
print as one line (exit status 2). Nothing here imports torch until the command runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bayesqid.argtypes import group_size, token_count
from bayesqid.constants import DEFAULT_SEED

EXIT_OK = 0


def add_measure_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``measure`` subcommand to an argparse subparsers object.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        From ``parser.add_subparsers(...)``.

    Returns
    -------
    argparse.ArgumentParser
        The subcommand's parser (its ``func`` default is :func:`run_measure`).
    """
    p = subparsers.add_parser(
        "measure", help="measure QiD of local checkpoints (needs: pip install 'bayesqid[lab]')",
        description="Evaluate 16-bit and weight-quantized copies of Hugging Face causal-LM "
                    "directories on the same tokens and write one row per checkpoint, method, "
                    "bit width and group size. Resumable: rerun the same command to continue.",
    )
    p.add_argument("model_dirs", nargs="+", metavar="MODEL_DIR",
                   help="local checkpoint directory (config.json + *.safetensors)")
    p.add_argument("--eval", dest="eval_text", metavar="TEXT",
                   help="evaluation text file or folder (default: the Python standard library source)")
    p.add_argument("--calib", dest="calib_text", metavar="TEXT",
                   help="calibration text file or folder (default: a disjoint part of the standard library)")
    # Bits and methods are checked by the lab, which names the option in a one-line error.
    p.add_argument("--bits", nargs="+", type=int, default=[2, 3, 4, 8], metavar="B",
                   help="weight bit widths, 2-8 (default: 2 3 4 8)")
    p.add_argument("--method", dest="methods", nargs="+", default=["rtn", "gptq"], metavar="M",
                   help="rtn, rtn-sym, gptq, gptq-sym, w8a8 (default: rtn gptq)")
    p.add_argument("--group-size", dest="group_sizes", nargs="+", type=group_size, default=[128],
                   metavar="G", help="columns per scale, or per-channel (default: 128)")
    p.add_argument("--family", help="family column (default: the checkpoint's model type)")
    p.add_argument("--tokens", type=token_count, metavar="D",
                   help="training tokens of the checkpoints (default: what they declare)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto picks cuda when available")
    p.add_argument("--max-eval-tokens", type=int, default=65536, metavar="N",
                   help="evaluation tokens at most, 200 or more (default: 65536)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the calibration windows")
    p.add_argument("--out", required=True, metavar="ROWS.csv",
                   help="rows (written after each checkpoint and method; resumed if present)")
    p.set_defaults(func=run_measure)
    return p


def run_measure(args: argparse.Namespace) -> int:
    """Run ``bayesqid measure`` from parsed arguments; progress goes to stderr.

    Parameters
    ----------
    args : argparse.Namespace
        From the parser of :func:`add_measure_parser`.

    Returns
    -------
    int
        The exit status (0).

    Raises
    ------
    bayesqid.errors.BayesqidError
        With a one-line message naming the path or option at fault.
    """
    from bayesqid.measure.qid import measure

    def progress(line: str) -> None:
        print(f"[bayesqid measure] {line}", file=sys.stderr, flush=True)

    rows = measure(
        args.model_dirs, eval_text=args.eval_text, calib_text=args.calib_text, bits=args.bits,
        methods=args.methods, group_sizes=args.group_sizes, family=args.family, tokens=args.tokens,
        device=args.device, max_eval_tokens=args.max_eval_tokens, seed=args.seed, out=args.out,
        progress=progress,
    )
    print(f"{len(rows)} rows in {args.out}")
    return EXIT_OK
