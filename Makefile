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

## test: run the test suite
test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf runs .pytest_cache
