# Two commands get a newcomer going: `make serve` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest-xdist workers; many tests wait on real processes and servers, not on the CPU.
TEST_WORKERS ?= 4

.PHONY: serve test lint format bench clean vendor

$(STAMP): pyproject.toml requirements-dev.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

serve: $(STAMP)  ## migrate, then serve the API on http://127.0.0.1:8000 (embedded mode)
	$(BIN)/dripstone serve

test: $(STAMP) lint  ## the whole suite (PostgreSQL too when DRIPSTONE_TEST_POSTGRES_URL is set)
	$(BIN)/pytest -n $(TEST_WORKERS) --maxschedchunk=1

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

vendor:  ## after changing src/dripstone/web/assets/package.json: refresh the lock and the served copies
	cd src/dripstone/web/assets && npm install --ignore-scripts --no-audit --no-fund && npm ci --ignore-scripts --no-audit --no-fund
	$(BIN)/python src/dripstone/web/assets/vendor.py
	rm -rf src/dripstone/web/assets/node_modules

clean:
	rm -rf $(VENV) dripstone-data .pytest_cache .mypy_cache .ruff_cache
