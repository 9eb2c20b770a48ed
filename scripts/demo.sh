#!/usr/bin/env bash
# Start the portal with demo data: web server on :8000 and a Celery worker process.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
mkdir -p var/log var/broker/queue var/broker/processed
$py manage.py migrate --noinput
$py manage.py seed_demo
.venv/bin/celery -A portal worker --loglevel INFO --concurrency 2 >var/log/worker.log 2>&1 &
worker=$!
trap 'kill $worker 2>/dev/null || true' EXIT INT TERM
echo "worker started (pid $worker, log var/log/worker.log)"
echo "Charter on http://127.0.0.1:${PORT:-8000}/  (Ctrl-C stops both)"
$py manage.py runserver "${HOST:-127.0.0.1}:${PORT:-8000}" --noreload
