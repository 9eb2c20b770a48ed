"""Fixtures of the API fuzzing: one seeded world per module, rolled back per test.

The requests go through Django's WSGI handler in this process (no server), on the
test's own database connection: the module's seed lives in an outer transaction that
is rolled back at the end, and each generated request runs in a savepoint that is
rolled back after it (``test_schemathesis._run``), so examples do not see each other.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection, transaction
from django.test import override_settings
from hypothesis.configuration import set_hypothesis_home_dir

from tests.fuzz import seed as seeding

FAST_HASHER = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# No example database (see the config in test_schemathesis.py), and hypothesis' other
# caches (constants, unicode data) go to a temporary directory, not into the checkout.
set_hypothesis_home_dir(tempfile.mkdtemp(prefix="charter-hypothesis-"))


@pytest.fixture(scope="module")
def fuzz_world(django_db_setup: Any, django_db_blocker: Any) -> Iterator[seeding.Seeded]:
    # The WSGI handler closes "old" connections around each request; the test client
    # does not, and neither may we: the connection carries the seed's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        with django_db_blocker.unblock(), override_settings(PASSWORD_HASHERS=FAST_HASHER):
            name = connection.settings_dict["NAME"]
            assert name.startswith("test_"), f"refusing to seed the non-test database {name}"
            outer = transaction.atomic()
            outer.__enter__()
            try:
                seeded = seeding.seed()
                seeding.REFS.clear()
                seeding.REFS.update(seeded.refs)
                yield seeded
            finally:
                seeding.REFS.clear()
                transaction.set_rollback(True)
                outer.__exit__(None, None, None)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
