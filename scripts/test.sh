#!/usr/bin/env bash
# The whole test suite, on PostgreSQL, with Redis for the worker tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-deps.sh
export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/charter}"
export CELERY_BROKER_URL="${CHARTER_TEST_BROKER_URL:-redis://127.0.0.1:6379/15}"
export CHARTER_VAR_DIR="${CHARTER_VAR_DIR:-$PWD/var/test}"
bin=.venv/bin
$bin/python - <<'PY'
import os

import psycopg

base, name = os.environ["DATABASE_URL"].rsplit("/", 1)
with psycopg.connect(base + "/postgres", autocommit=True) as conn:
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
        conn.execute(f'CREATE DATABASE "{name}"')
PY
echo "== ruff"
$bin/ruff check .
$bin/ruff format --check .
echo "== django checks"
$bin/python manage.py check --fail-level WARNING
$bin/python manage.py makemigrations --check --dry-run
echo "== pytest (PostgreSQL: ${DATABASE_URL%%@*}@…)"
$bin/python -m pytest "$@"
