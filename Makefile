# Two entry points, both usable from a fresh clone: `make run` and `make test`.
# Each creates .venv (Python >= 3.11) and installs the package into it on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bayesqid-installed

.PHONY: run test docs browser bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "bayesqid needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

## Fit the default model on the bundled reference data, print the 100T-token table and write
## the uncertainty report to runs/report.html.
run: $(STAMP)
	$(BIN)/bayesqid fit && $(BIN)/bayesqid report runs/default.nc --out runs/report.html

# The tests also cover the JAX route (numpyro sampler, the Ops' JAX implementations): the GPU
# path's code, run here on the CPU, and the lab (torch, CPU build).
TEST_STAMP := $(VENV)/.bayesqid-test-installed

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,numpyro,lab]"
	touch $(TEST_STAMP)

## The test suite (fast tiers; slow recovery tests too when BAYESQID_RUN_SLOW=1), on two worker
## processes (pytest-xdist): tests that share a costly fixture (the session's fit, a module's
## fits) go to one worker, the longest first (tests/parallel.py). PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 2
test: $(TEST_STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

DOCS_STAMP := $(VENV)/.bayesqid-docs-installed

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,docs]"
	touch $(DOCS_STAMP)

## The documentation site, docs/_build/html/index.html; any Sphinx warning is an error. The
## notebooks are rendered from the executed copies `make test` leaves in build/notebooks/ (one
## whose copy is missing or stale is executed here, with the tests' sampler settings).
docs: $(DOCS_STAMP)
	$(BIN)/python -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

## Headless Chromium for the browser checks of tests/test_docs.py (Debian/Ubuntu, as root). Without
## it those checks skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium >/dev/null) || echo "browser: chromium could not be installed; \
		tests/test_docs.py will skip its browser checks"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_fit.py

clean:
	rm -rf $(VENV) runs build docs/_build docs/generated docs/notebooks docs/api.md docs/cli.md
