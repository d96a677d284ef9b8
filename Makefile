# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench bench-peers clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,ray,postgres]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/crowdsteer run examples/oneshot.yaml --out runs/oneshot --force

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# OpenSpiel and MFGLib timed against crowdsteer (optional dependencies; mfglib --no-deps).
bench-peers: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -r benchmarks/peers/requirements.txt
	$(BIN)/pip install --quiet -c constraints.txt --no-deps -r benchmarks/peers/requirements-nodeps.txt
	$(BIN)/python benchmarks/run.py --only peers

clean:
	rm -rf $(VENV) runs
