"""Request metadata carried to the audit writer without threading it through every call.

Middleware (and the token authenticator, tasks and management commands) fill the
context; :func:`audits.services.record` reads it. The actor is always passed
explicitly to services, never taken from here.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class AuditContext:
    request_id: str = ""
    client_ip: str = ""
    user_agent: str = ""
    channel: str = "system"  # api, ui, admin, task, command, system
    token_id: int | None = None


_current: contextvars.ContextVar[AuditContext] = contextvars.ContextVar(
    "charter_audit_context",
    default=AuditContext(),  # noqa: B039 (frozen dataclass: immutable)
)


def current() -> AuditContext:
    return _current.get()


def update(**changes: object) -> None:
    """Amend the current context in place (e.g. once a token has authenticated)."""
    _current.set(replace(_current.get(), **changes))


@contextmanager
def audit_context(**values: object) -> Iterator[AuditContext]:
    values.setdefault("request_id", uuid.uuid4().hex)
    token = _current.set(AuditContext(**values))  # type: ignore[arg-type]
    try:
        yield _current.get()
    finally:
        _current.reset(token)
