#!/usr/bin/env bash
# Create .venv and install the locked dependencies (hash-checked) and Charter itself.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(scripts/find-python.sh)
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then
  rm -rf .venv
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install --quiet --require-hashes -r requirements.lock 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c 'import django, rest_framework, celery, guardian; print("charter: dependencies installed (Django", django.get_version() + ")")'
