# Quick start: `make demo` (index sample photos, search them) and `make test` (the whole suite).
# Each target sets up .venv itself. torch 2.13.0 (CPU) goes in first: a bare `torch` requirement
# would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test install

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: install
	$(PY) scripts/demo.py

test: install
	bash scripts/test.sh
