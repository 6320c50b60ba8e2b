# The two commands of the README:  make demo  and  make test.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/pip install -q -c constraints.txt
STAMP   := $(VENV)/.installed-dev

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e ".[dev]"
	touch $@

## demo: train SGD and SWA on the embedded MNIST-1D data and analyse both (no download)
demo: $(STAMP)
	$(BIN)/landscape demo --out runs/demo.h5

## test: run the test suite, one worker process per core (pytest-xdist), one thread each
## (a test file stays on one worker, so its module fixtures run once); PYTEST_WORKERS=0 runs
## it in this process
PYTEST_WORKERS ?= auto
test: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf runs .pytest_cache
