"""The WSGI entry point settles its process (portal/runtime.py): checked in a fresh
interpreter, as a gunicorn worker imports it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import gc, json, sys\n"
    "before = gc.get_threshold()[0]\n"
    "import portal.wsgi\n"
    "print(json.dumps({'before': before, 'threshold': gc.get_threshold(),"
    " 'frozen': gc.get_freeze_count(), 'views': 'registry.views' in sys.modules}))\n"
)


def _probe(**env: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_wsgi_import_loads_the_views_freezes_the_heap_and_raises_the_threshold() -> None:
    settled = _probe(CHARTER_GC_GEN0_THRESHOLD="12345")
    assert settled["before"] == 700  # Python's default, before the entry point runs
    assert settled["threshold"][0] == 12345
    assert settled["views"] is True  # imported with the URLs, not on the first request
    plain = _probe(CHARTER_GC_GEN0_THRESHOLD="0")  # 0: Python's collector left as it is
    assert plain["threshold"][0] == 700
    assert plain["views"] is True
    # Django, the apps and the views moved out of the collector's scans (a library may
    # freeze a few hundred objects of its own at import either way)
    assert settled["frozen"] > 100_000 > plain["frozen"]
