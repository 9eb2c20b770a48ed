#!/usr/bin/env bash
# Print a Python >= 3.12 interpreter (Django 6 needs it), or fail saying so.
set -euo pipefail
for candidate in "${PYTHON:-}" python3.12 python3.13 python3 \
    /root/.pyenv/versions/3.12*/bin/python3.12 /root/.pyenv/versions/3.13*/bin/python3.13 \
    /usr/bin/python3.13 /usr/bin/python3.12; do
  [ -n "$candidate" ] || continue
  path=$(command -v "$candidate" 2>/dev/null) || continue
  if "$path" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
    echo "$path"; exit 0
  fi
done
echo "Charter needs Python 3.12 or newer; none was found (set PYTHON=/path/to/python3.12)" >&2
exit 1
