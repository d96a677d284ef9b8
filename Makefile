# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_ARGS ?=

.PHONY: install demo test test-all test-fast bench bench-peers clean browser

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt $(PIP_ARGS) -e '.[test,ray,deep,postgres]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/crowdsteer run examples/oneshot.yaml --out runs/oneshot --force

# The default suite: everything but the tests marked slow (under 10 minutes on 2 cores).
test: $(STAMP) browser
	$(BIN)/python -m pytest -n 2 --dist loadfile -q -m "not slow"

# Every test, the slow ones included (about 13 minutes on 2 cores).
test-all: $(STAMP) browser
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

# Headless Chromium for tests/test_report_browser.py (skipped without it): installed when
# apt-get is there and we are root (once; about 2-5 min, 113 MB), else the test says why it skips.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || echo "no chromium: tests/test_report_browser.py will be skipped"

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# OpenSpiel and MFGLib timed against crowdsteer (optional dependencies; mfglib --no-deps).
bench-peers: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -r benchmarks/peers/requirements.txt
	$(BIN)/pip install --quiet -c constraints.txt --no-deps -r benchmarks/peers/requirements-nodeps.txt
	$(BIN)/python benchmarks/run.py --only peers

# Planted single-site bugs, each run against the tests meant to catch it (TESTING.md);
# slow (tens of minutes), not part of `make test`.
.PHONY: mutation
mutation: $(STAMP)
	$(BIN)/python tools/mutation.py --baseline

clean:
	rm -rf $(VENV) runs
