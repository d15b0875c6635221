# The two commands: `make demo` (set up, then run the end-to-end demo) and `make test`.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint typecheck unit bench bench-model lock

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

# The default model (SmolLM2-135M-Instruct): 1,000 greedy + 1,000 seeded sampled runs counted
# unique, controls on/off, the engine against transformers' generate(); the digest cache.
bench-model: setup
	$(BIN)/python benchmarks/determinism.py --model smollm2 --chat --runs 1000 --block 50 \
		--sampled-runs 1000 --vs-generate 20 --max-new-tokens 8 --json bench-smollm2.json
	$(BIN)/python benchmarks/model_digest.py
