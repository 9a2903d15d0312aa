# The short names people type. Every target sets up what it needs first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train test test-unit test-e2e test-all test-cluster sweep bench lint clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# compat: src/ on sys.path, so Hydra finds the sweeper in src/hydra_plugins/ (setuptools' default
	# editable finder hides namespace packages from Hydra's plugin scan)
	$(BIN)/pip install -q -e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(BIN)/python train.py $(ARGS)

# Test tiers (tests/conftest.py says which test is which): unit and integration run in one
# process in about three minutes on 2 cores; e2e starts train.py, eval.py, the CLI and a wheel install.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m 'unit or integration' $(ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q -m unit $(ARGS)

test-e2e: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15 -m '(e2e or slow) and not gpu' $(ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m '' $(ARGS)

# A one-node SLURM on this machine (scripts/slurm_local.sh, as root: installs the Debian packages
# if missing), the tests marked slurm against it, then its daemons stopped even when tests fail.
test-cluster: $(STAMP)
	eval "$$(scripts/slurm_local.sh up)" && \
	  $(BIN)/python -m pytest -q --durations=15 -m slurm $(ARGS); \
	  status=$$?; scripts/slurm_local.sh down; exit $$status

TIER ?= study
sweep: $(STAMP)
	$(BIN)/python train.py -m +experiment=$(TIER)/$(STUDY) $(ARGS)

bench: $(STAMP)
	$(BIN)/python scripts/bench.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts examples

clean:
	rm -rf $(VENV) .pytest_cache
