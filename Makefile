# Phagocyte: the two commands of the quick start.
#   make demo   set up .venv, install, run `phago run` on the bundled demo sample
#   make test   set up .venv with the test tools, run the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench clean lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements.lock pyproject.toml
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.lock
	$(BIN)/pip install --quiet -r requirements-test.lock
	touch $@

demo: $(VENV)/.installed
	rm -rf .phago-demo
	$(BIN)/phago run --home .phago-demo demo/sample/

test: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

bench: $(VENV)/.installed-test
	$(BIN)/python bench/ingest_bench.py

lock:
	rm -rf /tmp/phago-lock && $(PYTHON) -m venv /tmp/phago-lock
	/tmp/phago-lock/bin/pip install --quiet -e .
	/tmp/phago-lock/bin/pip freeze --exclude-editable | sed '1i # Runtime dependencies, pinned' > requirements.lock
	/tmp/phago-lock/bin/pip install --quiet -e '.[test]'
	/tmp/phago-lock/bin/pip freeze --exclude-editable | sed '1i # Runtime + test dependencies, pinned' > requirements-test.lock

clean:
	rm -rf $(VENV) .phago .phago-demo .pytest_cache .ruff_cache .mypy_cache
