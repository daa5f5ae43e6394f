"""Sphinx configuration of the bayesqid documentation (``make docs``; warnings are errors).

Three pages are generated here at every build rather than written by hand, so they cannot
drift from the code: the CLI reference from the argument parser (``cli.md``), the API reference
from what ``import bayesqid as bq`` exports (``api.md``), and the rendered notebooks, copied
from the test run's executed copies (``notebooks/``; see ``executed_notebooks.py``). All three
are ignored by git.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))

from executed_notebooks import prepare  # noqa: E402

import bayesqid  # noqa: E402
from bayesqid.cli import build_parser  # noqa: E402

project = "bayesqid"
author = "the bayesqid developers"
copyright = "the bayesqid developers"
release = bayesqid.__version__
version = release

extensions = [
    "myst_nb",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
# The comparison and calibration folders hold their own README.md (rendered) next to data files.
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**/specs/**", "notebooks/.*"]

myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# Notebooks are rendered with the outputs of their executed copies, never executed by Sphinx.
nb_execution_mode = "off"
nb_merge_streams = True

autosummary_generate = True
autodoc_typehints = "none"  # numpydoc's Parameters sections already give the types
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

intersphinx_mapping = {}  # the build reaches no network

html_theme = "pydata_sphinx_theme"
html_title = "bayesqid"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_static_path: list[str] = []
html_last_updated_fmt = None


# --- the CLI reference, from the parser --------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser,
                 prog: str) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(full command, one-line help, parser) of every subcommand, depth first."""
    found = []
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                full = f"{prog} {name}"
                found.append((full, helps.get(name, ""), sub))
                found += _subcommands(sub, full)
    return found


def write_cli_reference(path: Path) -> None:
    """``cli.md``: the ``--help`` of ``bayesqid`` and of every subcommand, as the parser prints it."""
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; fix it for a stable page
    parser = build_parser()
    parts = [
        "# Command-line reference",
        "",
        "Generated from the argument parser at every documentation build (`docs/conf.py`), so it",
        "is exactly what `--help` prints. Errors are one line on stderr with exit status 2; see",
        "[errors and exit codes](guide/errors.md).",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
    ]
    for full, helptext, sub in _subcommands(parser, "bayesqid"):
        parts += ["", f"## `{full}`", "", helptext[:1].upper() + helptext[1:] + ("." if helptext else ""),
                  "", "```text", sub.format_help().rstrip(), "```"]
    _write_if_changed(path, "\n".join(parts) + "\n")


# --- the API reference, from what the package exports ----------------------------------------


#: Section of the API page for each exported name (anything not listed goes under "Other").
API_SECTIONS = {
    "Data": ["Dataset", "load_dataset", "load_reference", "join_datasets", "load_table", "load_grid",
             "validate"],
    "Model specs and laws": ["ModelSpec", "Effect", "Likelihood", "Prior", "Law", "PointLaw", "LAWS",
                             "get_law", "ouyang_eq8", "load_spec", "available_specs"],
    "Fitting": ["fit", "SamplerConfig", "SAMPLERS", "Run", "load_run", "save_run", "Diagnostics",
                "check_convergence"],
    "Questions": ["predict", "default_grid", "grid", "token_budget", "training_level", "TrainingLevel",
                  "load_measurements"],
    "Checks": ["compare", "Comparison", "load_comparison", "check_training_levels", "run_sbc", "SBCResult",
               "load_sbc", "tiny_design", "prior_sensitivity"],
    "Reports and figures": ["build_report", "plot_bands", "plot_data", "plot_qid"],
    "Errors and constants": ["BayesqidError", "DataError", "SpecError", "RunError", "ConvergenceWarning",
                             "CI_PROB", "DEFAULT_SEED"],
}


def write_api_reference(path: Path) -> None:
    """``api.md``: one autosummary table per section, covering every name of ``bayesqid.__all__``."""
    exported = [n for n in bayesqid.__all__ if n != "__version__"]
    listed = [n for names in API_SECTIONS.values() for n in names]
    unknown = sorted(set(listed) - set(exported))
    if unknown:
        raise RuntimeError(f"docs/conf.py lists names bayesqid does not export: {unknown}")
    sections = dict(API_SECTIONS)
    rest = [n for n in exported if n not in listed]
    if rest:
        sections["Other"] = rest
    parts = [
        "# API reference",
        "",
        "Everything `import bayesqid as bq` exports, generated from the docstrings at every build",
        "(`docs/conf.py`). Names load on first access, so `import bayesqid` itself is light.",
        "",
        "```{eval-rst}",
        ".. currentmodule:: bayesqid",
        "```",
    ]
    for title, names in sections.items():
        parts += ["", f"## {title}", "", "```{eval-rst}", ".. autosummary::", "   :toctree: generated/", ""]
        parts += [f"   {n}" for n in names]
        parts += ["```"]
    _write_if_changed(path, "\n".join(parts) + "\n")


def _write_if_changed(path: Path, text: str) -> None:
    # Rewriting an unchanged page would make Sphinx rebuild it (and everything linking to it).
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


write_cli_reference(DOCS / "cli.md")
write_api_reference(DOCS / "api.md")
prepare(DOCS / "notebooks", log=lambda msg: print(f"[bayesqid docs] {msg}"))
