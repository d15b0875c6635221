# The two commands: `make demo` (set up, then run the end-to-end demo) and `make test`.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint typecheck unit bench lock

$(VENV)/.installed: pyproject.toml constraints.txt scripts/setup.sh
	./scripts/setup.sh

# Refresh the lock (constraints.txt) from the registry; review the diff, then `make test`.
lock:
	./scripts/lock.sh

setup: $(VENV)/.installed

demo: setup
	$(BIN)/bytereplay demo

lint: setup
	$(BIN)/ruff check bytereplay attester verifier relying_party tests benchmarks fuzz scripts

typecheck: setup
	$(BIN)/mypy

unit: setup
	./scripts/ensure-tools.sh
	$(BIN)/python -m pytest -q -p no:cacheprovider

test: lint typecheck unit

bench: setup
	$(BIN)/python benchmarks/determinism.py --runs 2000
	$(BIN)/python benchmarks/verifier.py
	$(BIN)/python benchmarks/relying_party.py
