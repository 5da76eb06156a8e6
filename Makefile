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

# Until the fault-injection campaign lands, the demo is the model checker: the default
# (production) configuration must hold, and an unsafe one must produce a counterexample.
demo: $(VENV)
	$(BIN)/replog check --scope elect --scope zombie
	$(BIN)/replog check --config replog.truncation=high-watermark --out reports/demo/high-watermark; \
		status=$$?; test $$status -eq 1 || { echo "expected a violation (exit 1), got $$status" >&2; exit 1; }
	@echo
	@echo "counterexample written to reports/demo/high-watermark/trace.txt (Mermaid diagram: trace.mmd)"

lint: $(VENV)
	$(BIN)/ruff check .

# pytest exits 5 when it collected no test: that must fail loudly, not pass silently.
test: $(VENV) lint
	$(BIN)/pytest -q; status=$$?; \
		if [ $$status -eq 5 ]; then echo "pytest ran no test" >&2; exit 1; fi; exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
