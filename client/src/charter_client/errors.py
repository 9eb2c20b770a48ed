"""Errors raised by the client.

Charter answers every refusal with ``{"detail": "...", "errors": {field: [messages]}}``;
:class:`CharterError` carries the status, the detail and the field errors, and its
subclasses say which kind of refusal it was.
"""

from __future__ import annotations

from typing import Any


class CharterError(Exception):
    """Charter refused the request (or could not be reached: ``status`` is ``None``)."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        errors: dict[str, list[str]] | None = None,
        body: Any = None,
        method: str = "",
        url: str = "",
        request_id: str = "",
    ) -> None:
        self.detail = detail
        self.status = status
        self.errors: dict[str, list[str]] = errors or {}
        self.body = body
        self.method = method
        self.url = url
        self.request_id = request_id
        super().__init__(self._message())

    def _message(self) -> str:
        head = f"{self.status} " if self.status is not None else ""
        where = f" ({self.method} {self.url})" if self.method else ""
        text = f"{head}{self.detail}{where}"
        for field, messages in self.errors.items():
            text += f"\n  {field}: {'; '.join(messages)}"
        return text


class BadRequest(CharterError):
    """400: invalid input; ``errors`` names each field."""


class Unauthorized(CharterError):
    """401: no token, or the token is malformed, unknown, expired or revoked."""


class Forbidden(CharterError):
    """403: you may see this but not change it."""


class NotFound(CharterError):
    """404: not found, or not visible to you."""


class Conflict(CharterError):
    """409: conflicts with the current state (a refused transition, a duplicate, the gate)."""


class TooLarge(CharterError):
    """413: the body is larger than the server's limit."""


class ServerError(CharterError):
    """5xx (after the retries), or any other unexpected status."""


class ConnectionFailed(CharterError):
    """Charter could not be reached (after the retries): refused, reset, timed out."""


class ApprovalTimeout(CharterError, TimeoutError):
    """``wait_for_approval`` gave up; ``request`` is the last state seen."""

    def __init__(self, detail: str, *, request: dict[str, Any]) -> None:
        self.request = request
        super().__init__(detail)


_BY_STATUS: dict[int, type[CharterError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
}


def _field_errors(raw: Any) -> dict[str, list[str]]:
    if not isinstance(raw, dict):
        return {}
    out: dict[str, list[str]] = {}
    for field, messages in raw.items():
        if isinstance(messages, list):
            out[str(field)] = [m if isinstance(m, str) else repr(m) for m in messages]
        elif isinstance(messages, dict):  # nested serializer errors
            for sub, value in _field_errors(messages).items():
                out[f"{field}.{sub}"] = value
        else:
            out[str(field)] = [str(messages)]
    return out


def error_for(
    status: int, body: Any, *, method: str = "", url: str = "", request_id: str = ""
) -> CharterError:
    """The exception for an error response (``body`` parsed JSON, or text)."""
    cls = _BY_STATUS.get(status, ServerError)
    if isinstance(body, dict):
        detail = str(body.get("detail") or "")
        errors = _field_errors(body.get("errors"))
        if not detail and not errors and "detail" not in body:  # a bare DRF field map
            errors = _field_errors(body)
    else:
        detail, errors = (str(body).strip()[:500] if body else ""), {}
    if not detail:
        detail = {400: "Invalid input."}.get(status, f"HTTP {status}")
    return cls(
        detail,
        status=status,
        errors=errors,
        body=body,
        method=method,
        url=url,
        request_id=request_id,
    )
