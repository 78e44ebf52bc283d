# Setup is automatic: the first target that needs the virtualenv creates it.
# The interpreter .venv is made from: the distribution's CPython 3.11 where it can make a venv,
# else (or if making it fails) the python3 on PATH. Debian's build is an optimized, statically
# linked interpreter; a default source build (pyenv's: --enable-shared, no PGO) runs the
# engine 10-25% slower.
# `make PYTHON=/path/to/python3 ...` chooses another (after `make clean`).
PYTHON ?= $(shell /usr/bin/python3.11 -c 'import ensurepip, venv' 2>/dev/null \
	&& echo /usr/bin/python3.11 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

run: $(STAMP)
	$(BIN)/lobgw serve --config config.toml

test: $(STAMP)
	$(BIN)/ruff check lobgw tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/engine.py

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || (rm -rf $(VENV) && python3 -m venv $(VENV))
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
