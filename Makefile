# Two commands on a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The exact versions tested together, for every extra (pyproject.toml holds the ranges).
CONSTRAINTS ?= constraints.txt

.PHONY: demo test lint install clean bench

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU torch first, at the pinned version: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) torch
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lvp demo -o out/demo

lint: $(STAMP)
	$(BIN)/ruff check LumbarVNetPro Testing benchmarks
	# The import contracts of pyproject.toml: the core never imports Slicer/Qt/VTK, layers as drawn.
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_infer.py

clean:
	rm -rf $(VENV) out .pytest_cache
