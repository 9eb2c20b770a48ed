"""workers.drift must not import Django or any other part of the project."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_package_imports_and_runs_without_django_or_project_modules() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["django"] = None  # any `import django...` now raises ImportError
        import numpy as np
        import workers.drift as d
        ref = d.build_reference_profile({"x": np.arange(2000.0), "c": np.array(["a", "b"] * 1000)})
        win = d.fold(d.window_profile(ref), {"x": np.arange(500.0) + 3, "c": np.array(["a"] * 500)})
        report = d.detect_drift_from_profiles(ref, win)
        assert report.features and d.data_quality(ref, win).features
        project = {"django", "portal", "registry", "lineage", "approvals", "audits",
                   "rest_framework", "celery"}
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in project
                        and sys.modules[m] is not None)
        print("LOADED", loaded)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
