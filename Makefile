# Quick start: `make demo` (index sample photos, search them) and `make test` (the whole suite).
# Each target sets up .venv itself. torch's CPU build (requirements-torch.txt) goes in first: a bare
# `torch` requirement would pull a multi-GB CUDA build. Everything else comes from requirements-dev.lock (exact versions,
# hashes checked); `make lock` refreshes the lock files from pyproject.toml.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCK_VENV := .venv-lock
# torch is left out of the locks (it is installed first); they are resolved against its CPU build,
# so they hold its dependencies but none of the CUDA packages PyPI's torch pulls in.
# UPGRADE=1 moves every pin to the newest allowed version; without it, existing pins stay.
# TORCH_INDEX= (empty) where pip finds the CPU wheel without it (a local wheelhouse).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile -q --generate-hashes --strip-extras \
	--unsafe-package torch --no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade) \
	$(if $(TORCH_INDEX),--pip-args "--extra-index-url $(TORCH_INDEX)") -c $(LOCK_VENV)/torch.txt

.PHONY: demo test test-fast lint install lock messages

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements-dev.lock requirements-torch.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -r requirements-torch.txt
	$(PY) -m pip install -qq --require-hashes --no-deps -r requirements-dev.lock
	$(PY) -m pip install -qq --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $@

# The dev lock is resolved first; the runtime lock (the Docker image's) takes the same versions.
lock:
	test -x $(LOCK_VENV)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install -q pip-tools==7.6.2; }
	grep -E '^torch==' requirements-torch.txt > $(LOCK_VENV)/torch.txt
	$(PIP_COMPILE) --extra dev --extra torch -o requirements-dev.lock pyproject.toml
	grep -E '^[A-Za-z0-9_.-]+==' requirements-dev.lock | sed 's/ .*//' > $(LOCK_VENV)/dev-pins.txt
	$(PIP_COMPILE) --extra torch -c $(LOCK_VENV)/dev-pins.txt -o requirements.lock pyproject.toml

# The bot's sentences (findimage/i18n.py): extracted from the code with Babel (the mapping is in pyproject.toml)
# and merged into every language's catalogue; new ones arrive untranslated (tests/unit/test_catalogues.py fails
# until they are translated).
LOCALE := findimage/locale
messages: install
	$(VENV)/bin/pybabel extract -F pyproject.toml --add-location=file --no-wrap --project findimage \
		-o $(LOCALE)/findimage.pot .
	$(VENV)/bin/pybabel update -i $(LOCALE)/findimage.pot -d $(LOCALE) -D findimage --no-wrap --ignore-obsolete \
		--no-fuzzy-matching
	rm $(LOCALE)/findimage.pot

demo: install
	$(PY) scripts/demo.py

test: install
	bash scripts/test.sh

# The unit tests (tests/unit: tiny generated models, no Elasticsearch), in well under two minutes.
test-fast: install
	FINDIMAGE_TEST_ES=off bash scripts/test.sh tests/unit

lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy
