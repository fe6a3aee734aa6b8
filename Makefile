# One venv, made by pip. torch is pinned for this machine kind (a CPU wheel on local disk); elsewhere
# override it, e.g. `make TORCH=torch demo`, or install the package with any torch >= 2.5 yourself.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench-fmnist clean

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
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache --no-logo

bench-fmnist: $(STAMP)
	$(BIN)/python benchmarks/fashion_mnist.py

clean:
	rm -rf $(VENV) runs
