# The README's two commands are `make demo` and `make test`; both install first.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo test lint fmt bench

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml scripts/install.sh
	scripts/install.sh
	@touch $@

demo: install
	scripts/demo.sh

test: install
	scripts/test.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

lock:
	uv pip compile pyproject.toml --extra dev --python-version 3.12 --generate-hashes -o requirements.lock
