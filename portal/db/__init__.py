"""Database helpers shared by the apps (the PostgreSQL backend is in ``postgresql/``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connections


def defer(
    sql: str,
    params: Any = (),
    *,
    on_result: Callable[[int], None] | None = None,
    using: str = "default",
) -> bool:
    """Send a write with the connection's next statement instead of on its own.

    True when queued (``portal.db.postgresql``'s ``DatabaseWrapper.defer_write``); False on
    another backend or outside a transaction, and the caller runs the statement itself."""
    queue_write = getattr(connections[using], "defer_write", None)
    return bool(queue_write and queue_write(sql, params, on_result))
