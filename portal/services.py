"""Access administration: grants, service accounts and API tokens.

The one place grants are set, used by the API, the UI and the admin alike.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from audits.models import AuditEvent
from audits.services import record
from portal.models import ApiToken, ServiceAccount
from portal.permissions import Access
from portal.roles import GRANT_LEVELS
from registry.models import UseCase

User = get_user_model()


def _require_admin(access: Access) -> None:
    if not access.can_administer():
        raise PermissionDenied("only administrators may manage access")


def _principal(principal: Any) -> tuple[str, str]:
    if isinstance(principal, Group):
        return "group", principal.name
    return "user", principal.get_username()


def current_level(use_case: UseCase, principal: Any) -> str | None:
    """The grant level a user or group holds directly on a use case, if any."""
    from registry.models import UseCaseGroupObjectPermission, UseCaseUserObjectPermission

    if isinstance(principal, Group):
        rows = UseCaseGroupObjectPermission.objects.filter(group=principal, content_object=use_case)
    else:
        rows = UseCaseUserObjectPermission.objects.filter(user=principal, content_object=use_case)
    perms = set(rows.values_list("permission__codename", flat=True))
    for level in ("own", "contribute", "view"):
        if set(GRANT_LEVELS[level]) <= perms:
            return level
    return None


@transaction.atomic
def grant_access(
    access: Access, use_case: UseCase, principal: Any, level: str, *, reason: str = ""
) -> None:
    """Give a user or group ``level`` (view, contribute, own) on a use case."""
    _require_admin(access)
    if level not in GRANT_LEVELS:
        raise ValidationError({"level": f"must be one of {', '.join(GRANT_LEVELS)}"})
    before = current_level(use_case, principal)
    wanted = set(GRANT_LEVELS[level])
    for codename in {p for perms in GRANT_LEVELS.values() for p in perms}:
        if codename in wanted:
            assign_perm(f"registry.{codename}", principal, use_case)
        else:
            remove_perm(f"registry.{codename}", principal, use_case)
    kind, name = _principal(principal)
    record(
        AuditEvent.Action.GRANT,
        actor=access.actor,
        obj=use_case,
        changes={kind: name, "before": before, "after": level, "reason": reason},
    )


@transaction.atomic
def revoke_access(access: Access, use_case: UseCase, principal: Any, *, reason: str = "") -> None:
    _require_admin(access)
    before = current_level(use_case, principal)
    for codename in {p for perms in GRANT_LEVELS.values() for p in perms}:
        remove_perm(f"registry.{codename}", principal, use_case)
    kind, name = _principal(principal)
    record(
        AuditEvent.Action.REVOKE,
        actor=access.actor,
        obj=use_case,
        changes={kind: name, "before": before, "after": None, "reason": reason},
    )


@transaction.atomic
def create_service_account(
    access: Access, *, username: str, description: str = "", groups: list[Group] | None = None
) -> ServiceAccount:
    _require_admin(access)
    if User.objects.filter(username=username).exists():
        raise ValidationError({"username": f"'{username}' is already taken"})
    user = User(username=username, is_active=True)
    user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    if groups:
        user.groups.set(groups)
    account = ServiceAccount.objects.create(
        user=user, description=description, created_by=access.actor
    )
    record(
        AuditEvent.Action.CREATE,
        actor=access.actor,
        obj=account,
        changes={"after": {"username": username, "groups": [g.name for g in groups or []]}},
    )
    return account


@transaction.atomic
def issue_token(
    access: Access,
    *,
    user: Any,
    name: str,
    use_cases: list[UseCase] | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create a token; returns it with the secret, which is never stored or shown again."""
    is_self = access.actor is not None and access.actor.pk == user.pk
    if not (is_self or access.can_administer()):
        raise PermissionDenied("you may issue tokens only for yourself")
    if not name.strip():
        raise ValidationError({"name": "is required"})
    now = timezone.now()
    if expires_at is None:
        expires_at = now + timedelta(days=settings.CHARTER_TOKEN_DEFAULT_DAYS)
    if expires_at <= now:
        raise ValidationError({"expires_at": "must be in the future"})
    holder = Access(user=user)
    for use_case in use_cases or []:
        if not holder.can_view(use_case):
            raise ValidationError(
                {"use_cases": f"{user.get_username()} cannot see use case {use_case.pk}"}
            )
    secret, prefix, key_hash = ApiToken.new_secret()
    token = ApiToken.objects.create(
        user=user,
        name=name.strip(),
        prefix=prefix,
        key_hash=key_hash,
        expires_at=expires_at,
        created_by=access.actor,
    )
    token.use_cases.set(use_cases or [])
    record(
        AuditEvent.Action.TOKEN_ISSUE,
        actor=access.actor,
        obj=token,
        changes={
            "after": {
                "user": user.get_username(),
                "name": token.name,
                "prefix": prefix,
                "use_cases": sorted(u.pk for u in use_cases or []),
                "expires_at": expires_at,
            }
        },
    )
    return token, secret


@transaction.atomic
def revoke_token(access: Access, token: ApiToken, *, reason: str = "") -> ApiToken:
    is_owner = access.actor is not None and access.actor.pk == token.user_id
    if not (is_owner or access.can_administer()):
        raise PermissionDenied("you may revoke only your own tokens")
    if token.revoked_at is not None:
        raise ValidationError({"revoked_at": "the token is already revoked"})
    token.revoked_at = timezone.now()
    token.revoked_reason = reason[:300]
    token.save(update_fields=["revoked_at", "revoked_reason"])
    record(
        AuditEvent.Action.TOKEN_REVOKE,
        actor=access.actor,
        obj=token,
        changes={"after": {"revoked_at": token.revoked_at, "reason": token.revoked_reason}},
    )
    return token
