# Two commands for a new user: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0
export PYTHONUNBUFFERED := 1

.PHONY: demo test bench findings findings-tiny gpu-check install clean

install: $(STAMP)

# torch==2.13.0 is the CPU build; it is only installed when the venv has no torch at all,
# so a GPU user who installed their own CUDA build keeps it.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/memsweep demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

findings: $(STAMP)
	docs/findings/run.sh

# the whole findings path (sweep, report, fit, per-trial CSVs, refit check) on the `tiny` preset, into runs/
findings-tiny: $(STAMP)
	FINDINGS_SWEEPS=tiny FINDINGS_OUT=runs/findings-tiny docs/findings/run.sh

# CUDA tests, pack throughput and the paper grid's trials per GPU-hour on a lent GPU (README: On a GPU); without a
# GPU it checks its imports and settings and says so. Runs with the machine's own python where there is no .venv.
gpu-check:
	$(if $(wildcard $(BIN)/python),$(BIN)/python,python3) benchmarks/gpu_check.py

bench: $(STAMP)
	for b in benchmarks/*_bench.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf runs .pytest_cache
