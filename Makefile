# Two entry points, both usable from a fresh clone: `make run` and `make test`.
# Each creates .venv (Python >= 3.11) and installs the package into it on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bayesqid-installed

.PHONY: run test bench clean

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

## The test suite (fast tiers; slow recovery tests too when BAYESQID_RUN_SLOW=1).
test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_fit.py

clean:
	rm -rf $(VENV) runs
