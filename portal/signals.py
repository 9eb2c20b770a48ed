"""Login, logout and failed-login events go into the audit chain."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.dispatch import receiver

from audits.models import AuditEvent
from audits.services import record


@receiver(user_logged_in)
def audit_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    with transaction.atomic():
        record(AuditEvent.Action.LOGIN, actor=user, obj=user)


@receiver(user_logged_out)
def audit_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        with transaction.atomic():
            record(AuditEvent.Action.LOGOUT, actor=user, obj=user)


@receiver(user_login_failed)
def audit_login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    username = str(credentials.get("username", ""))[:150]
    user_model = get_user_model()
    with transaction.atomic():
        record(
            AuditEvent.Action.LOGIN_FAILED,
            actor=None,
            object_type=f"{user_model._meta.app_label}.{user_model._meta.model_name}",
            object_repr=username,
            changes={"username": username},
        )
