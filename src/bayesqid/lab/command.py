"""Command-line glue of the training lab: ``bayesqid lab run`` and ``bayesqid lab check``.

``cli.py`` adds the subcommand with :func:`add_lab_parser` and dispatches to :func:`run_lab`;
errors are raised as :class:`~bayesqid.errors.BayesqidError` for it to print as one line (exit
status 2). Nothing here imports torch until a sweep runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bayesqid.argtypes import positive_int

EXIT_OK = 0


def add_lab_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``lab`` subcommand (with ``run`` and ``check``) to an argparse subparsers object.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        From ``parser.add_subparsers(...)``.

    Returns
    -------
    argparse.ArgumentParser
        The ``lab`` parser (its ``func`` default is :func:`run_lab`).
    """
    p = subparsers.add_parser(
        "lab", help="train small models under declared recipes and measure their QiD "
                    "(needs: pip install 'bayesqid[lab]')",
        description="Controlled training runs that separate training tokens from the learning-rate "
                    "schedule: every size x recipe x seed of a config is trained, checkpointed "
                    "(with WSD cooldown branches) and measured; rows go to OUT/qid.csv.")
    sub = p.add_subparsers(dest="lab_command", required=True, metavar="{run,check}")
    run = sub.add_parser("run", help="train and measure a sweep (resumable: rerun with the same --out)")
    run.add_argument("config", metavar="CONFIG", help="shipped config (smoke, default, gpu) or a .toml path")
    run.add_argument("--out", required=True, metavar="DIR", help="output directory (reuse it to resume)")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="Dask scheduler address, or 'synchronous' to run in this process "
                          "(default: a local cluster)")
    run.add_argument("--workers", type=positive_int, metavar="N",
                     help="workers of the local cluster (default: one per core; one on a GPU)")
    run.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu or cuda[:N]")
    run.add_argument("--threads", type=positive_int, metavar="N",
                     help="torch threads per run (default: 2 in-process, 1 per Dask worker)")
    check = sub.add_parser("check", help="check a config and print its plan (nothing is trained)")
    check.add_argument("config", metavar="CONFIG",
                       help="shipped config (smoke, default, gpu) or a .toml path")
    p.set_defaults(func=run_lab)
    return p


def run_lab(args: argparse.Namespace) -> int:
    """Run ``bayesqid lab run`` or ``bayesqid lab check`` from parsed arguments.

    Returns
    -------
    int
        The exit status (0).

    Raises
    ------
    bayesqid.errors.BayesqidError
        One line naming the config key, path or run at fault.
    """
    from bayesqid.lab.config import load_config

    config = load_config(args.config)
    if args.lab_command == "check":
        print(describe(config))
        return EXIT_OK
    from bayesqid.lab.sweep import run_lab as sweep

    def progress(line: str) -> None:
        print(f"[bayesqid lab] {line}", file=sys.stderr, flush=True)

    rows = sweep(config, args.out, scheduler=args.scheduler, n_workers=args.workers, device=args.device,
                 progress=progress, threads=args.threads)
    print(f"{len(rows)} rows in {args.out}/qid.csv")
    return EXIT_OK


def describe(config: Any) -> str:
    """A plan of a checked config: runs, checkpoints, branches and measurements."""
    from bayesqid.lab.schedules import cooldown_end

    per = config.tokens_per_step
    lines = [f"{config.origin}: {config.name} - {config.description}".rstrip(" -"),
             f"  {config.architecture}, byte-level; {config.tokens:,} tokens per run "
             f"({config.total_steps} steps of {config.batch} x {config.seq_len}); seeds {list(config.seeds)}"]
    for size in config.sizes:
        lines.append(f"  size {size.name}: {size.layers} layers, d_model {size.d_model}, {size.heads} heads, "
                     f"ffn {size.ffn}")
    lines.append(f"  checkpoints (tokens): {', '.join(f'{t:,}' for t in config.checkpoints)}")
    for r in config.recipes:
        branches = ", ".join(f"{t:,}->{cooldown_end(t // per, r.decay_frac) * per:,}"
                             for t in r.cooldown_from)
        lines.append(f"  recipe {r.name}: {r.schedule}, peak lr {r.peak_lr:g}, warmup {r.warmup_tokens:,}, "
                     f"floor {r.min_lr_frac:g}, wd {r.weight_decay:g}, dropout {r.dropout:g}, "
                     f"clip {r.grad_clip:g}, {r.precision}"
                     + (f"; cooldown branches {branches}" if branches else ""))
    m = config.measure
    groups = ", ".join("per-channel" if g is None else f"g{g}" for g in m.group_sizes)
    lines.append(f"  measure: {', '.join(m.methods)} at {', '.join(map(str, m.bits))} bits ({groups}), "
                 f"{m.eval_tokens:,} eval tokens, {m.calib_tokens:,} calibration tokens")
    runs = len(config.sizes) * len(config.recipes) * len(config.seeds)
    trained = sum(config.tokens + sum(cooldown_end(t // per, r.decay_frac) * per - t for t in r.cooldown_from)
                  for r in config.recipes) * len(config.sizes) * len(config.seeds)
    lines.append(f"  {runs} run(s), {trained:,} tokens trained in all")
    return "\n".join(lines)
