# The two commands of the quick start: `make demo` and `make test`.
# Each one installs what it needs: the .venv, and Debian packages when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint unit bench bench-switch bench-ct bench-fw bench-overlay bench-route bench-controller deps bench-deps clean

$(STAMP): pyproject.toml
	@bash scripts/ensure-deps.sh venv
	@$(PYTHON) -m venv $(VENV) || (bash scripts/ensure-deps.sh python-venv && $(PYTHON) -m venv $(VENV))
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

deps:
	@bash scripts/ensure-deps.sh test

bench-deps:
	@bash scripts/ensure-deps.sh bench

# SWITCH=ovs: the demo on Open vSwitch (installed when missing)
SWITCH ?= vnet

demo: $(STAMP)
	@bash scripts/ensure-deps.sh demo $(SWITCH)
	$(BIN)/vnet demo --switch $(SWITCH)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy --strict src

unit: $(STAMP)
	$(BIN)/pytest -q -m "not integration" -n 2

test: $(STAMP) deps lint
	$(BIN)/pytest -q -n 2 --durations=30

bench: $(STAMP)
	$(BIN)/python benchmarks/flowkey_bench.py
	$(BIN)/python benchmarks/lookup_bench.py

bench-controller: $(STAMP)
	$(BIN)/python benchmarks/controller_bench.py

bench-switch: $(STAMP) bench-deps
	$(BIN)/python benchmarks/switch_bench.py

bench-ct: $(STAMP) bench-deps
	$(BIN)/python benchmarks/ct_bench.py

bench-fw: $(STAMP) bench-deps
	$(BIN)/python benchmarks/fw_bench.py

bench-overlay: $(STAMP) deps
	$(BIN)/python benchmarks/overlay_bench.py

bench-route: $(STAMP) bench-deps
	$(BIN)/python benchmarks/route_bench.py --rounds 3

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
