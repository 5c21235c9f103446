# Two commands a newcomer needs: `make report` (the main job) and `make test`.
# Both build the virtual environment on first use. torch is installed first and pinned:
# a looser requirement makes pip fetch a multi-GB CUDA build instead of the CPU wheel on disk.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test report demo lab bench zoo figures docs check-report clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check . && $(PY) -m pytest -q

report: $(STAMP)
	$(PY) -m workbench report --out reports/

demo: $(STAMP)
	$(PY) -m workbench demo

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

zoo: $(STAMP)
	$(PY) -m workbench zoo build --jobs 2

# The docs pages whose numbers come from the zoo (results.csv, analysis.json); the tests check them.
docs: $(STAMP)
	$(PY) -m analyses.reporting.docs_pages

figures: $(STAMP)
	$(PY) -m analyses.reporting.figures all --out figures/

# Loads the report in headless Chromium (Debian package) and checks images and links.
check-report: report
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	$(PY) scripts/check_report_in_browser.py reports/index.html

clean:
	rm -rf $(VENV) reports/ .pytest_cache
