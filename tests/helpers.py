"""Small helpers shared by several test modules (imported as ``from helpers import ...``)."""

from __future__ import annotations

import csv
from pathlib import Path


def write_rows(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    """Write dict rows (all values text) with the csv module, so tests control every byte."""
    columns = columns or list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows([[row.get(c, "") for c in columns] for row in rows])
    return path


def one_line(text: str) -> str:
    """The single line of ``text``; fails on a traceback or on more than one line."""
    assert "Traceback" not in text, text
    lines = text.strip("\n").splitlines()
    assert len(lines) == 1, f"expected one line, got {lines!r}"
    return lines[0]


def four_family_law_data(reference, noise, seed: int):
    """QiD from a known Ouyang law (Eq. 8-like exponents, family intercept offsets) on four
    families of the reference design; ``noise(rng, n)`` draws the log-scale residuals."""
    import numpy as np

    import bayesqid as bq
    from bayesqid.data.design import build_design

    frame = reference.frame[reference.frame["family"].isin(["BLOOM", "OPT", "LLaMA-1", "OLMo"])]
    frame = frame.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    x = build_design(frame).x
    fam = {f: rng.normal(0, 0.5) for f in frame["family"].unique()}
    log_mu = (-2.6 + 0.3 * x["log_d"] - 0.25 * x["log_n"] - 5.0 * x["log_bits"]
              + frame["family"].map(fam).to_numpy())
    qid = np.exp(log_mu + noise(rng, len(frame)))
    return bq.Dataset(frame.assign(qid=qid), "<simulated>", ())


def one_torch_thread():
    """Run torch on one intra-op thread while the generator is suspended (a fixture's body).

    Two intra-op threads on a 2-core machine that also runs other work slow tiny models down
    10-40x (threads spin waiting for each other); one thread is fastest here. Without torch,
    nothing to do.
    """
    try:
        import torch
    except ImportError:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def saved_without_levels(run, group: str, path: Path):
    """``run`` saved to ``path`` as a run made before ``group`` existed (no stored levels of it),
    and loaded back."""
    import json

    from bayesqid.sampling.run import load_run

    idata = run.idata.copy()
    levels = json.loads(idata.attrs["levels"])
    del levels[group]
    idata.attrs["levels"] = json.dumps(levels)
    idata.to_netcdf(path)
    return load_run(path)


def drawn(new_levels) -> dict[str, str]:
    """``new_levels`` text (``"family=new family;size=new family 1e+09"``) as group -> label;
    empty for a row with no unseen level (an empty or missing cell)."""
    if not isinstance(new_levels, str) or not new_levels:
        return {}
    return dict(part.split("=", 1) for part in new_levels.split(";"))
