# Two commands: `make run` (default pipeline) and `make test` (test suite).
# Both create the local virtual environment .venv first if it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run report test test-fast clean-results

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

run: venv
	$(BIN)/snakemake --cores all
	$(BIN)/snakemake --cores all --report results/report.html

report: venv
	$(BIN)/snakemake --cores all --report results/report.html

test: venv
	$(BIN)/python -m pytest -q -ra

test-fast: venv
	$(BIN)/python -m pytest -q -ra -m "not e2e and not slurm"

clean-results:
	rm -rf results logs .snakemake
