# The README's two commands are `make demo` and `make test`; both install first.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo test lint fmt bench bench-full

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

# Every benchmark, short sizes (minutes); regenerates bench/RESULTS.md. See bench/README.md.
bench: install
	$(PY) bench/run.py --short

# The sizes the issues ask for (an hour or more on a 2-core machine).
bench-full: install
	$(PY) bench/run.py --full

lock:
	uv pip compile pyproject.toml --extra dev --python-version 3.12 --generate-hashes -o requirements.lock
