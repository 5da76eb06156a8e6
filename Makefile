# Two entry points: `make demo` (the main job) and `make test` (what CI runs).
# Both build .venv from pyproject.toml first; the venv is rebuilt only when that changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint clean

$(VENV): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "replog needs Python 3.11 or newer ($(PYTHON) is older)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(VENV)

# The main job: a 30-second fault-injection campaign with all four nemeses against a
# 3-broker cluster on the safe default configuration. It prints the report's path;
# exit 1 when the checkers found anomalies, 2 when the harness itself failed.
demo: $(VENV)
	$(BIN)/replog campaign --time-limit 30 --nemesis kill,pause,partition,clock

lint: $(VENV)
	$(BIN)/ruff check .

# pytest exits 5 when it collected no test: that must fail loudly, not pass silently.
test: $(VENV) lint
	$(BIN)/pytest -q; status=$$?; \
		if [ $$status -eq 5 ]; then echo "pytest ran no test" >&2; exit 1; fi; exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
