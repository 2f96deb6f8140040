# lead push: local development. `make run` and `make test` are the two that matter.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.requirements-installed
NODE_STAMP := node_modules/.package-lock.json

.PHONY: setup run test check bench smoketest docs package clean

setup: $(VENV_STAMP) $(NODE_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV_STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# npm writes node_modules/.package-lock.json on every install; older than the lock file means stale.
$(NODE_STAMP): package.json $(wildcard package-lock.json)
	if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
	touch $@

run: setup
	$(PY) -m local.run

test: setup
	$(PY) -m pytest $(ARGS)

# The inner loop (about half a minute): lint, types, the layer rules, and every test that runs on the
# fakes or the in-process emulators (the contract tests' fake side, the decision table, a short
# simulation). `make test` is the whole suite on real components, and what CI runs.
CHECK_TESTS := tests/test_code_quality.py tests/structure tests/push tests/crm tests/simulation tests/intake tests/d365 tests/contract
check: setup
	SIM_SEEDS=$${SIM_SEEDS:-300} $(PY) -m pytest -q $(CHECK_TESTS) -k "not real" $(ARGS)

bench: setup
	$(PY) -m local.bench $(ARGS)

smoketest: setup
	$(PY) -m shared.runtime.smoketest

# The zip `azd deploy` uploads: the app's files that .funcignore keeps, no dependencies (Flex Consumption
# installs requirements.txt remotely). Writes .local/package/leadpush.zip.
package:
	$(PYTHON) infra/package.py $(ARGS)

docs: setup
	$(PY) -m d365.mapping_doc > docs/mapping.md.tmp
	mv docs/mapping.md.tmp docs/mapping.md

# Logs, throwaway state and caches; .venv and node_modules stay (delete them by hand to reinstall).
clean:
	rm -rf .local .pytest_cache .hypothesis .mypy_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -path ./node_modules -prune -o -name __pycache__ -type d -exec rm -rf {} +
