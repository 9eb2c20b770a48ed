from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def capture(django_capture_on_commit_callbacks: Any) -> Any:
    """Run on-commit callbacks (the queued fold tasks, eager in tests) at the end of a block."""
    return django_capture_on_commit_callbacks
