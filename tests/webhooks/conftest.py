from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.webhooks.receiver import Receiver, running_receiver


@pytest.fixture
def allow_local(settings: Any) -> Any:
    """The receiver listens on 127.0.0.1, which the SSRF guard refuses unless allowed."""
    settings.CHARTER_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.CHARTER_WEBHOOK_TIMEOUT_S = 5
    return settings


@pytest.fixture
def receiver(allow_local: Any) -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r
