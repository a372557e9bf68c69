# Two entry points for users (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup weights demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[cpu,dask,dev,jax]'
	touch $(STAMP)

setup: $(STAMP)

weights: setup
	$(BIN)/nst weights --verify

demo: weights
	$(BIN)/nst demo --output output

test: weights
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: weights
	$(BIN)/python -m pip install --quiet -e '.[cpu,dask,dev,jax,bench]'
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) output .pytest_cache
