# One venv, made by pip. torch is pinned for this machine kind (a CPU wheel on local disk); elsewhere
# override it, e.g. `make TORCH=torch demo`, or install the package with any torch >= 2.5 yourself.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs docs-test package bench-fmnist clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/contrastkit fit --loss ntxent --data digits --epochs 15 --temperature 0.2 --out runs/demo --overwrite

# The layer contracts (pyproject's [tool.importlinter]) first: CI runs `make test`.
test: $(STAMP)
	$(BIN)/lint-imports --no-cache --no-logo
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples docs/_hooks
	$(BIN)/ruff format --check src tests benchmarks examples docs/_hooks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache --no-logo

# The documentation site, into site/ (open site/index.html); warnings are errors.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The site built in a temporary folder and opened in headless Chromium (slow tests; CI runs this).
docs-test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m slow tests/test_docs_site.py

# sdist and wheel in dist/, checked by twine; then the wheel goes into a fresh virtual environment
# and trains from an empty directory (tests/test_packaging.py, slow; CI runs this).
package: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*
	CONTRASTKIT_DIST=dist OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m slow tests/test_packaging.py

bench-fmnist: $(STAMP)
	$(BIN)/python benchmarks/fashion_mnist.py

clean:
	rm -rf $(VENV) runs
