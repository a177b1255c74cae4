# nnfc — set-up, tests and demo. Needs only python3.11, pip and gcc on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed
ANDROID_STAMP := $(VENV)/.installed-android
JOBS ?= 2

.PHONY: install install-android test test-fast demo bench clean

install: $(STAMP)

# torch first, pinned: that takes the local CPU wheel; an unpinned resolve would pull CUDA builds.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[train,test,plot]"
	@touch $@
	@echo "nnfc installed in $(VENV)/ — activate with: source $(VENV)/bin/activate"

test: install
	$(BIN)/python -m pytest -n $(JOBS) -q

test-fast: install
	$(BIN)/python -m pytest -n $(JOBS) -q -m "not slow"

demo: install
	$(BIN)/nnfc demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
