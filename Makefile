# The two set-up commands in the README: `make lab` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
LAB    := $(VENV)/.installed-lab
# Tests mostly wait on real processes, so three at a time fit on two cores; each file
# (each notebook) stays on one worker, in order.
JOBS   ?= 3

.PHONY: lab test bench replay lint format clean strip rendered

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit("Cube needs Python 3.11 or newer, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

$(LAB): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[lab]'
	@touch $@

lab: $(LAB)
	$(BIN)/jupyter lab --notebook-dir=notebooks notebooks/00-index.ipynb

test: $(STAMP)
	$(BIN)/ruff check cube tests bench notebooks/solutions
	$(BIN)/ruff format --check cube tests bench notebooks/solutions
	$(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg \
		-n $(JOBS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

# A long campaign of the simulator: `make replay SEEDS=0-9999` (two processes);
# MANAGERS=3 for several managers on a simulated etcd.
SEEDS ?= 0-999
MANAGERS ?= 1
replay: $(STAMP)
	$(BIN)/python -m cube.replay --seeds $(SEEDS) --managers $(MANAGERS) --jobs 2

lint: $(STAMP)
	$(BIN)/ruff check cube tests bench notebooks/solutions

format: $(STAMP)
	$(BIN)/ruff format cube tests bench notebooks/solutions

# Notebooks are stored without outputs; the checked cells' outputs go to notebooks/expected/.
strip: $(STAMP)
	$(BIN)/python -m cube.lab.clean notebooks/[0-9][0-9]-*.ipynb

# A copy with outputs, for reading on the web: built (with the solutions), never stored.
rendered: $(STAMP)
	cd notebooks && CUBE_SOLUTIONS=1 CUBE_PROGRESS=$(CURDIR)/build/progress ../$(BIN)/jupyter nbconvert \
		--to html --execute --ExecutePreprocessor.timeout=300 \
		--output-dir $(CURDIR)/build/notebooks [0-9][0-9]-*.ipynb

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
