"""Login, logout, failed-login and lockout events go into the audit chain.

Exactly one ``login_failed`` event per failed attempt, whether the password was wrong or the
client was locked out (``changes.locked_out``); one ``lockout`` event when a lockout begins
(django-axes' ``user_locked_out`` also fires for each refused attempt during a lockout, which
already has its ``login_failed`` event). Logouts forced by session expiry name their reason.
"""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.dispatch import receiver

from audits.models import AuditEvent
from audits.services import record
from portal import security  # noqa: F401  (registers the deploy checks)
from portal.security import stamp_login


def _user_type() -> str:
    user_model = get_user_model()
    return f"{user_model._meta.app_label}.{user_model._meta.model_name}"


@receiver(user_logged_in)
def audit_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    stamp_login(request)
    with transaction.atomic():
        record(AuditEvent.Action.LOGIN, actor=user, obj=user)


@receiver(user_logged_out)
def audit_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        reason = getattr(request, "charter_logout_reason", "")
        with transaction.atomic():
            record(
                AuditEvent.Action.LOGOUT,
                actor=user,
                obj=user,
                changes={"reason": reason} if reason else None,
            )


def _refused_by_lockout(request: Any) -> bool:
    """The attempt was refused because the client was already locked out.

    AxesStandaloneBackend flags the request before Django sends ``user_login_failed``; axes'
    own failure handler flags it too when this very failure starts a lockout, but then it has
    counted the failure (``axes_failures_since_start`` is set), so the order in which the
    receivers run does not matter.
    """
    return bool(
        getattr(request, "axes_locked_out", False)
        and getattr(request, "axes_failures_since_start", None) is None
    )


@receiver(user_login_failed)
def audit_login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    username = str(credentials.get("username", ""))[:150]
    changes: dict[str, Any] = {"username": username}
    if _refused_by_lockout(request):
        changes["locked_out"] = True
    with transaction.atomic():
        record(
            AuditEvent.Action.LOGIN_FAILED,
            actor=None,
            object_type=_user_type(),
            object_repr=username,
            changes=changes,
        )


@receiver(user_locked_out)
def audit_lockout(
    sender: Any, request: Any = None, username: Any = None, ip_address: Any = None, **kwargs: Any
) -> None:
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is None:  # a refused attempt during an existing lockout
        return
    name = str(username or "")[:150]
    cool_off = settings.AXES_COOLOFF_TIME
    with transaction.atomic():
        record(
            AuditEvent.Action.LOCKOUT,
            actor=None,
            object_type=_user_type(),
            object_repr=name,
            changes={
                "username": name,
                "ip_address": str(ip_address or ""),
                "failures": int(failures),
                "cool_off_seconds": int(cool_off.total_seconds()) if cool_off else None,
            },
        )
