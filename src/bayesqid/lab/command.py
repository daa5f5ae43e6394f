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
CONFIG_HELP = ("shipped config (smoke, default, gpu, recipes, recipes-gpu, long) or a .toml path")


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
    run.add_argument("config", metavar="CONFIG", help=CONFIG_HELP)
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
    check.add_argument("config", metavar="CONFIG", help=CONFIG_HELP)
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
        from bayesqid.lab.corpus import load_train_text
        from bayesqid.lab.estimate import check_plan_memory

        notes = check_plan_memory(config)  # lab run checks the device it runs on
        train, _ = load_train_text(config.corpus.train, config.corpus.train_bytes)
        print("\n".join([describe(config, len(train)), *notes]))
        return EXIT_OK
    from bayesqid.lab.sweep import run_lab as sweep

    def progress(line: str) -> None:
        print(f"[bayesqid lab] {line}", file=sys.stderr, flush=True)

    rows = sweep(config, args.out, scheduler=args.scheduler, n_workers=args.workers, device=args.device,
                 progress=progress, threads=args.threads)
    print(f"{len(rows)} rows in {args.out}/qid.csv")
    return EXIT_OK


#: Recipe settings a config can vary, in the order plans list them.
FACTORS: tuple[str, ...] = ("schedule", "peak_lr", "warmup_tokens", "min_lr_frac", "decay_frac",
                            "weight_decay", "dropout", "grad_clip", "precision", "loss_scaling",
                            "average_last")


def _factors(recipe: Any) -> str:
    return ", ".join(f"{f} {getattr(recipe, f)!s}".replace("grad_clip 0.0", "grad_clip none")
                     for f in FACTORS)


def describe(config: Any, train_bytes: int | None = None) -> str:
    """A plan of a checked config: sizes, runs, every recipe's factors, seeds, cost estimates.

    Parameters
    ----------
    config : LabConfig
        The checked config.
    train_bytes : int, optional
        Size of its training text, for the epochs each run reads (left out when None).
    """
    from dataclasses import asdict

    from bayesqid.lab.corpus import epochs
    from bayesqid.lab.estimate import cost_of, run_tokens, sweep_seconds
    from bayesqid.lab.schedules import cooldown_end

    per = config.tokens_per_step
    lines = [f"{config.origin}: {config.name} - {config.description}".rstrip(" -"),
             f"  {config.architecture}, byte-level; {config.tokens:,} tokens per run "
             f"({config.total_steps} steps of {config.batch} x {config.seq_len}); seeds {list(config.seeds)}"]
    for size in config.sizes:
        cost = cost_of(config, size)
        lines.append(f"  size {size.name}: {size.layers} layers, d_model {size.d_model}, {size.heads} heads, "
                     f"ffn {size.ffn}; {cost.non_embedding:,} non-embedding parameters "
                     f"({config.tokens / cost.non_embedding:,.0f} tokens per parameter), "
                     f"~{cost.train_bytes / 1e9:.2g} GB to train")
    lines.append(f"  checkpoints (tokens): {', '.join(f'{t:,}' for t in config.checkpoints)}")
    base = config.recipes[0]
    for r in config.recipes:
        branches = ", ".join(f"{t:,}->{cooldown_end(t // per, r.decay_frac) * per:,}"
                             for t in r.cooldown_from)
        # Averaging measures a run's own checkpoints; it changes no training, so it is no factor here.
        varied = [f for f in FACTORS if f != "average_last" and asdict(r)[f] != asdict(base)[f]]
        note = "base" if r is base else "varies " + ", ".join(varied) if varied else "same factors as base"
        read = f"; {epochs(run_tokens(config, r), train_bytes):.2f} epochs" if train_bytes else ""
        lines.append(f"  recipe {r.name} ({note}): {_factors(r)}; seeds {list(config.seeds)}"
                     f"; {run_tokens(config, r):,} tokens per run{read}"
                     + (f"; cooldown branches {branches}" if branches else ""))
    m = config.measure
    groups = ", ".join("per-channel" if g is None else f"g{g}" for g in m.group_sizes)
    lines.append(f"  measure: {', '.join(m.methods)} at {', '.join(map(str, m.bits))} bits ({groups}), "
                 f"{m.eval_tokens:,} eval tokens, {m.calib_tokens:,} calibration tokens")
    if train_bytes:
        lines.append(f"  training text: {config.corpus.train} ({train_bytes:,} bytes)")
    runs = len(config.sizes) * len(config.recipes) * len(config.seeds)
    trained = sum(run_tokens(config, r) for r in config.recipes) * len(config.sizes) * len(config.seeds)
    lines.append(f"  {runs} run(s), {trained:,} tokens trained in all")
    lines.append(f"  estimated wall time: ~{sweep_seconds(config, workers=2) / 60:.0f} min on 2 CPU cores "
                 f"(2 single-threaded workers), ~{sweep_seconds(config, workers=1, gpu=True) / 60:.0f} min "
                 "on one GPU (rough)")
    return "\n".join(lines)
