"""Fixtures of the fault tests: private PostgreSQL and Redis servers (see servers.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.conftest import CLIENT_SRC  # noqa: F401  (puts charter_client on sys.path)
from tests.faults.servers import PrivatePostgres, PrivateRedis, charter_env, manage


@pytest.fixture(scope="session")
def log_dir() -> Path:
    path = Path(os.environ.get("CHARTER_VAR_DIR", "/tmp")) / "faults"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of the fault tests' own, with a migrated ``charter`` database."""
    pg = PrivatePostgres()
    try:
        pg.init()
        pg.start()
        pg.create_database("charter")
        result = manage("migrate", "--no-input", env=charter_env(DATABASE_URL=pg.url("charter")))
        assert result.returncode == 0, result.stdout + result.stderr
        yield pg
    finally:
        pg.cleanup()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    redis = PrivateRedis()
    try:
        redis.start()
        yield redis
    finally:
        redis.cleanup()
