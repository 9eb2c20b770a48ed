"""Security controls that are not a setting: session expiry, lockout auditing, upload sniffing,
safe downloads, single sign-on and the deploy-time check that media stay out of static.

The threat model that says which control answers which threat is docs/security.md.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import LoginView as DjangoLoginView
from django.core import checks
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse

SESSION_AUTH_AT = "_charter_auth_at"
SESSION_SEEN_AT = "_charter_seen_at"


# ---------------------------------------------------------------- sessions


class SessionExpiryMiddleware:
    """End a signed-in session after an idle period or its absolute age, server-side.

    The cookie's own expiry is only advice to the browser; this middleware enforces
    ``CHARTER_SESSION_IDLE_SECONDS`` since the last request and ``SESSION_COOKIE_AGE`` since
    sign-in. An expired session is logged out (an audited ``logout`` whose changes name the
    reason) and the request goes on as anonymous: pages redirect to the login page, the API
    answers 403.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = getattr(request, "session", None)
        user = getattr(request, "user", None)
        if session is not None and user is not None and user.is_authenticated:
            self._check(request, session)
        return self.get_response(request)

    @staticmethod
    def _check(request: HttpRequest, session: Any) -> None:
        now = time.time()
        auth_at = session.get(SESSION_AUTH_AT)
        seen_at = session.get(SESSION_SEEN_AT)
        reason = ""
        if seen_at is not None and now - seen_at > settings.CHARTER_SESSION_IDLE_SECONDS:
            reason = "idle_timeout"
        elif auth_at is not None and now - auth_at > settings.SESSION_COOKIE_AGE:
            reason = "session_age"
        if reason:
            request.charter_logout_reason = reason  # type: ignore[attr-defined]
            logout(request)
            return
        if auth_at is None:
            session[SESSION_AUTH_AT] = now
        if seen_at is None or now - seen_at >= settings.CHARTER_SESSION_TOUCH_SECONDS:
            session[SESSION_SEEN_AT] = now


def stamp_login(request: HttpRequest | None) -> None:
    """Start the absolute and idle clocks of a new sign-in."""
    session = getattr(request, "session", None)
    if session is not None:
        now = time.time()
        session[SESSION_AUTH_AT] = now
        session[SESSION_SEEN_AT] = now


def unlock_login(*, actor: Any, username: str, ip_address: str = "") -> int:
    """Lift a login lockout early (all addresses of ``username``, or one), audited.

    Returns how many lockout records were cleared; the ``unlock`` event is written even when
    none were (the attempt to unlock is itself worth recording).
    """
    from axes.models import AccessAttempt
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from audits.models import AuditEvent
    from audits.services import record

    user_model = get_user_model()
    with transaction.atomic():
        attempts = AccessAttempt.objects.filter(username=username)
        if ip_address:
            attempts = attempts.filter(ip_address=ip_address)
        cleared = attempts.count()
        attempts.delete()
        record(
            AuditEvent.Action.UNLOCK,
            actor=actor,
            object_type=f"{user_model._meta.app_label}.{user_model._meta.model_name}",
            object_repr=username,
            changes={"username": username, "ip_address": ip_address, "cleared": cleared},
        )
    return cleared


# ---------------------------------------------------------------- login page and SSO


class LoginView(DjangoLoginView):
    """Django's login view, offering single sign-on when it is configured."""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["oidc_enabled"] = settings.CHARTER_OIDC_ENABLED
        context["oidc_label"] = settings.CHARTER_OIDC_LABEL
        context["sso_failed"] = self.request.GET.get("sso") == "failed"
        return context


def _oidc_view(view_path: str) -> Callable[..., HttpResponse]:
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.CHARTER_OIDC_ENABLED:
            raise Http404("Single sign-on is not configured.")
        from django.utils.module_loading import import_string

        return import_string(view_path).as_view()(request, *args, **kwargs)

    return view


oidc_authenticate = _oidc_view("mozilla_django_oidc.views.OIDCAuthenticationRequestView")
oidc_callback = _oidc_view("mozilla_django_oidc.views.OIDCAuthenticationCallbackView")


# ---------------------------------------------------------------- uploads and downloads

# What each accepted extension must look like, and the content types a browser or client may
# declare for it (application/octet-stream: "unknown", what most clients send).
_CSV_TYPES = {
    "text/csv",
    "text/plain",
    "application/csv",
    "application/vnd.ms-excel",
    "application/octet-stream",
}
_PARQUET_TYPES = {
    "application/vnd.apache.parquet",
    "application/x-parquet",
    "application/parquet",
    "application/octet-stream",
}
DATASET_FILE_TYPES: dict[str, set[str]] = {
    ".csv": _CSV_TYPES,
    ".tsv": _CSV_TYPES | {"text/tab-separated-values"},
    ".parquet": _PARQUET_TYPES,
    ".pq": _PARQUET_TYPES,
}
# Markup a browser would render or run if it ever displayed the file inline.
_ACTIVE_CONTENT = re.compile(
    rb"<\s*(?:!doctype|html|head|body|script|svg|iframe|object|embed|meta|link|style|xml|\?xml)"
    rb"|javascript:",
    re.IGNORECASE,
)
SNIFF_BYTES = 64 * 1024


def check_dataset_upload(upload: Any, *, field: str = "file") -> None:
    """Refuse a dataset file whose name, declared type and content disagree.

    Accepted: CSV/TSV text (UTF-8, no NUL bytes, no HTML/SVG/script markup) and Parquet
    (``PAR1`` magic). Raises a ValidationError naming ``field``.
    """
    name = str(getattr(upload, "name", "") or "")
    suffix = Path(name).suffix.lower()
    allowed = DATASET_FILE_TYPES.get(suffix)
    if allowed is None:
        raise ValidationError(
            {field: f"'{Path(name).name}': only {', '.join(sorted(DATASET_FILE_TYPES))} files"}
        )
    declared = (getattr(upload, "content_type", None) or "").split(";")[0].strip().lower()
    if declared and declared not in allowed:
        raise ValidationError(
            {field: f"declared content type {declared!r} does not match a {suffix} file"}
        )
    head = _peek(upload)
    if suffix in (".parquet", ".pq"):
        if not head.startswith(b"PAR1"):
            raise ValidationError({field: f"not a Parquet file (a {suffix} must start with PAR1)"})
        return
    if b"\x00" in head:
        raise ValidationError({field: f"binary content in a {suffix} file"})
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut at the sniff boundary is fine; anything earlier is not
        if exc.start < len(head) - 4:
            raise ValidationError({field: f"a {suffix} file must be UTF-8 text"}) from exc
    if _ACTIVE_CONTENT.search(head):
        raise ValidationError(
            {field: f"HTML, SVG or script markup in a {suffix} file is refused (active content)"}
        )


def _peek(upload: Any) -> bytes:
    stream = upload.file if hasattr(upload, "file") and upload.file is not None else upload
    try:
        position = stream.tell()
    except (AttributeError, OSError):
        position = 0
    stream.seek(0)
    data = stream.read(SNIFF_BYTES)
    stream.seek(position)
    return data if isinstance(data, bytes) else str(data).encode()


def attachment(stream: Any, filename: str, *, content_type: str | None = None) -> FileResponse:
    """A download that browsers save, never render: attachment, nosniff, a sandbox CSP.

    Stored files are served as ``application/octet-stream`` unless the caller vouches for the
    type, so an uploaded .html or .svg can never run in the portal's origin.
    """
    response = FileResponse(
        stream,
        as_attachment=True,
        filename=filename,
        content_type=content_type or "application/octet-stream",
    )
    harden_download(response)
    return response


def harden_download(response: HttpResponse) -> HttpResponse:
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    return response


# ---------------------------------------------------------------- deploy checks


def _inside(child: Path, parents: Iterable[Path]) -> Path | None:
    child = Path(child).resolve()
    for parent in parents:
        parent = Path(parent).resolve()
        if child == parent or parent in child.parents or child in parent.parents:
            return parent
    return None


@checks.register(checks.Tags.security)
def check_media_outside_static(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Uploaded files must never be where WhiteNoise (or a web server) serves static files."""
    static = [Path(settings.STATIC_ROOT), *(Path(p) for p in settings.STATICFILES_DIRS)]
    static.append(Path(settings.BASE_DIR) / "static")
    overlap = _inside(Path(settings.MEDIA_ROOT), static)
    if overlap is None:
        return []
    return [
        checks.Error(
            f"MEDIA_ROOT ({settings.MEDIA_ROOT}) overlaps a static directory ({overlap}): "
            "uploads would be served as static files",
            hint="Set CHARTER_MEDIA_ROOT outside STATIC_ROOT and the static/ folder.",
            id="charter.E001",
        )
    ]
