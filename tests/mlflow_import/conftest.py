from __future__ import annotations

from typing import Any

import pytest

from tests.mlflow_import.store import Store, build_store


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory: Any) -> Store:
    """Built once per test session (MLflow's schema migrations and model logging are slow);
    tests that change it build their own."""
    return build_store(tmp_path_factory.mktemp("mlflow"))
