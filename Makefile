# Two commands for a fresh machine:
#   make demo   set up .venv and run the end-to-end demo (results in results_demo/)
#   make test   set up .venv and run the test suite
# and, while working:
#   make test-fast  the tests not marked slow (about a minute of CPU time)
#   make docs       build the documentation into docs/_build/html (offline; warnings are errors)
# torch: the pinned CPU build is installed first so that the project's `torch>=2.2`
# requirement installs nothing more; override TORCH to use another build, e.g.
#   make test TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
# The tests are many small fits: one torch thread is faster than one per core on a small or
# shared machine (README: Threads). Override with e.g. `make test TEST_THREADS=2`.
TEST_THREADS ?= 1

.PHONY: demo test test-fast docs setup bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: setup
	$(PY) -m regdecoder.demo --out results_demo

test: setup
	OMP_NUM_THREADS=$(TEST_THREADS) $(PY) -m pytest

test-fast: setup
	OMP_NUM_THREADS=$(TEST_THREADS) $(PY) -m pytest -m "not slow"

$(VENV)/.docs-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,docs]'
	touch $@

docs: $(VENV)/.docs-installed
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

bench: setup
	$(PY) benchmarks/speed.py

clean:
	rm -rf $(VENV) results_demo docs/_build docs/api docs/tutorials
