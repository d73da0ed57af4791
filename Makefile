# gpucredit: the two commands a newcomer needs are `make demo` and `make test`.
# Each installs what is missing first (Python venv from requirements.lock,
# npm packages from package-lock.json). Nothing is fetched outside PyPI/npm.

PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(CURDIR)/node_modules/.bin:$(BIN):$(PATH)
# py-solc-x looks here for `solc-v0.8.37` (the solc-js adapter).
export SOLCX_BINARY_PATH := $(CURDIR)/tools/solc/bin
# Keep solc-select (pulled in by slither) out of the home directory.
export VIRTUAL_ENV := $(CURDIR)/$(VENV)

.PHONY: install compile demo test test-contracts test-contracts-unit test-contracts-flows test-service test-web chromium lint slither fuzz bench clean

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# make demo [STORY=good|default] [KEEP=1]: see gpucredit/demo/__init__.py
demo: install
	$(BIN)/python -m gpucredit.demo $(if $(STORY),--story $(STORY)) $(if $(KEEP),--keep)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The six parts run side by side (`make -j`): the service tests spend most
# of their time waiting (nodes, periods, block times: ~230 s of CPU in ~500 s),
# while the contract tests (brownie, CPU-bound Python) and Slither use the
# cores. Each part's output is printed in one piece when it ends
# (--output-sync); `make test-contracts` etc. run one part alone. On a fresh
# clone the set-up runs in the same `make -j`: pip and npm side by side.
TEST_JOBS ?= 6
test:
	$(MAKE) --no-print-directory -j$(TEST_JOBS) --output-sync=target \
		lint slither test-contracts-unit test-contracts-flows test-service test-web

# Once for both test parts, before either starts (brownie recompiles only
# what changed; the service tests read build/contracts).
compile: install
	$(BIN)/brownie compile
	@# Loading the project once more drops the build files of dependency-only
	@# contracts that the compile wrote; done here, before the parallel test
	@# processes load it (two of them pruning at once fail to load).
	$(BIN)/python -c "from brownie import project; project.load('.')" >/dev/null

# Static analysis: fails on any medium/high finding, or on a low/informational
# one missing from docs/slither-triage.md (tools/slither_gate.py).
slither: install
	$(BIN)/python tools/slither_gate.py

# The larger invariant campaign (1,000 sequences x 50 steps per state machine)
# plus the Slither and access-control figures -> bench/security.json.
# Smaller: make fuzz FUZZ_EXAMPLES=100 FUZZ_STEPS=50
FUZZ_EXAMPLES ?= 1000
FUZZ_STEPS ?= 50
fuzz: install
	$(BIN)/python bench/security.py --examples $(FUZZ_EXAMPLES) --steps $(FUZZ_STEPS)
	@# all 22 engine paths on the contracts (make test plays 6) and 200 examples of each
	@# oracle fault property (make test: 15 and 20)
	GPUCREDIT_CROSSCHECK_ALL=1 $(BIN)/brownie test tests/integration/test_risk_engine_vs_contracts.py -q
	GPUCREDIT_PROPERTY_EXAMPLES=200 $(BIN)/brownie test tests/unit/test_oracle_fault_property.py -q
	@# every one-unit change of the exported year (make test runs every 4th; docs/audit.md)
	GPUCREDIT_AUDIT_SWEEP=1 $(BIN)/python -m pytest -p no:pytest-brownie -q tests/service/test_audit_sweep.py

test-contracts: test-contracts-unit test-contracts-flows

# Two brownie processes (each with its own anvil on a free port), so the
# contract tests use both cores while the service tests wait on their nodes.
test-contracts-unit: install compile
	$(BIN)/brownie test tests/unit tests/regressions

test-contracts-flows: install compile
	$(BIN)/brownie test tests/integration tests/stateful

# Three pytest-xdist workers, one test file each at a time (module fixtures such
# as the demo's run stay in one process): the service tests mostly wait on their
# nodes, periods and block times (~460 s of CPU in ~300 s with three workers,
# against ~780 s in one process on a fresh clone).
SERVICE_WORKERS ?= 3
test-service: install compile
	$(BIN)/python -m pytest -p no:pytest-brownie -n $(SERVICE_WORKERS) --dist loadfile tests/service tests/risk

# The indexer and the web app (tests/index, tests/web) on anvil; the browser
# tests drive Debian's chromium, installed here when missing (they skip, with
# the reason, only if it cannot be installed).
test-web: install compile chromium
	$(BIN)/brownie test tests/index tests/web

chromium:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq chromium; } || echo "chromium could not be installed: browser tests will skip"

bench: install
	$(BIN)/python -m gpucredit.run $(CURDIR)/bench/gas.py
	$(BIN)/python bench/oracle_bench.py
	$(BIN)/python bench/audit_bench.py
	$(BIN)/python bench/risk.py
	$(BIN)/python bench/index_bench.py

clean:
	rm -rf build $(VENV) node_modules
