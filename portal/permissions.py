"""The permission core every app uses.

Visibility is decided per use case: a user reaches a use case through a role
with a global permission (admin, board, risk officer, auditor) or through an
object permission granted on that use case (django-guardian's direct foreign-key
tables). Everything below a use case carries ``use_case_id`` and inherits it.
An API token can narrow its user's reach to a set of use cases.

Lists filter with one ``use_case_id IN (subquery)`` so plans stay small and
rows are never duplicated; details of unseen objects are therefore 404.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Model, Q, QuerySet
from django.db.models.signals import m2m_changed, post_delete, post_save
from rest_framework.filters import BaseFilterBackend

if TYPE_CHECKING:
    from portal.models import ApiToken
    from registry.models import UseCase

APP = "registry"


class _Grants:
    """Counts changes of object grants and group memberships in this process."""

    generation = 0

    @classmethod
    def changed(cls, **kwargs: Any) -> None:
        cls.generation += 1


_grants = _Grants
for _signal, _sender in (
    (post_save, "registry.UseCaseUserObjectPermission"),
    (post_delete, "registry.UseCaseUserObjectPermission"),
    (post_save, "registry.UseCaseGroupObjectPermission"),
    (post_delete, "registry.UseCaseGroupObjectPermission"),
    (m2m_changed, "auth.User_groups"),
):
    _signal.connect(_Grants.changed, sender=_sender, weak=False)


@dataclass
class Access:
    """Who is acting, and through what (a session or a token).

    ``user`` is None for the system itself (Celery tasks, migrations), which may
    do anything; its events are audited as ``system``.
    """

    user: Any
    token: ApiToken | None = None
    _token_scope: list[int] | None = field(default=None, init=False, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def system(cls) -> Access:
        return cls(user=None)

    @classmethod
    def for_request(cls, request: Any) -> Access:
        cached = getattr(request, "_charter_access", None)
        if cached is not None:
            return cached
        token = getattr(request, "auth", None)
        from portal.models import ApiToken

        access = cls(user=request.user, token=token if isinstance(token, ApiToken) else None)
        request._charter_access = access
        return access

    # -- basics -----------------------------------------------------------
    @property
    def is_system(self) -> bool:
        return self.user is None

    @property
    def authenticated(self) -> bool:
        return self.is_system or bool(self.user and self.user.is_authenticated)

    @property
    def actor(self) -> Any:
        return self.user

    def _global(self, codename: str) -> bool:
        if self.is_system:
            return True
        if not self.authenticated or not self.user.is_active:
            return False
        key = f"global:{codename}"
        if key not in self._cache:
            self._cache[key] = self.user.is_superuser or self.user.has_perm(f"{APP}.{codename}")
        return self._cache[key]

    def token_scope(self) -> list[int] | None:
        if self.token is None:
            return None
        if self._token_scope is None:
            self._token_scope = list(self.token.use_cases.values_list("id", flat=True))
        return self._token_scope or None

    def _in_token_scope(self, use_case_id: int | None) -> bool:
        scope = self.token_scope()
        return scope is None or use_case_id in scope

    def _object_perm(self, codename: str, use_case: UseCase) -> bool:
        """Guardian's answer (two queries), remembered for this Access, i.e. one request,
        until a grant changes in this process (an earlier answer never outlives a grant)."""
        if not self.authenticated or not self.user.is_active:
            return False
        key = f"object:{codename}:{use_case.pk}"
        cached = self._cache.get(key)
        if cached is not None and cached[0] == _grants.generation:
            return cached[1]
        allowed = self.user.has_perm(f"{APP}.{codename}", use_case)
        self._cache[key] = (_grants.generation, allowed)
        return allowed

    # -- questions --------------------------------------------------------
    def sees_everything(self) -> bool:
        return self._global("view_usecase") and self.token_scope() is None

    def visible_use_case_ids(self) -> QuerySet | None:
        """A subquery of visible use case ids, or None when every use case is visible."""
        from registry.models import (
            UseCase,
            UseCaseGroupObjectPermission,
            UseCaseUserObjectPermission,
        )

        scope = self.token_scope()
        if self._global("view_usecase"):
            if scope is None:
                return None
            return UseCase.objects.filter(id__in=scope).values("id")
        if not self.authenticated:
            return UseCase.objects.none().values("id")
        user_grants = UseCaseUserObjectPermission.objects.filter(
            user=self.user, permission__codename="view_usecase"
        ).values("content_object_id")
        group_grants = UseCaseGroupObjectPermission.objects.filter(
            group__user=self.user, permission__codename="view_usecase"
        ).values("content_object_id")
        ids = UseCase.objects.filter(Q(id__in=user_grants) | Q(id__in=group_grants))
        if scope is not None:
            ids = ids.filter(id__in=scope)
        return ids.values("id")

    def filter(self, queryset: QuerySet, field_name: str = "use_case_id") -> QuerySet:
        if queryset.model._meta.label == "registry.UseCase":
            field_name = "id"
        ids = self.visible_use_case_ids()
        if ids is None:
            return queryset
        return queryset.filter(**{f"{field_name}__in": ids})

    def can_view(self, use_case: UseCase) -> bool:
        if not self._in_token_scope(use_case.pk):
            return False
        return self._global("view_usecase") or self._object_perm("view_usecase", use_case)

    def can_contribute(self, use_case: UseCase) -> bool:
        """Register datasets, models, versions, evidence and deployments under it."""
        if not self._in_token_scope(use_case.pk):
            return False
        return self._global("contribute_usecase") or self._object_perm(
            "contribute_usecase", use_case
        )

    def can_change_use_case(self, use_case: UseCase) -> bool:
        if not self._in_token_scope(use_case.pk):
            return False
        return self._global("change_usecase") or self._object_perm("change_usecase", use_case)

    def can_create_use_case(self) -> bool:
        return self.token_scope() is None and self._global("add_usecase")

    def can_administer(self) -> bool:
        """Grant and revoke access, manage tokens and service accounts."""
        return (
            self.is_system
            or bool(self.authenticated and self.user.is_active and self.user.is_superuser)
            or self._global("manage_access")
        )

    # -- enforcement ------------------------------------------------------
    def require_view(self, use_case: UseCase) -> None:
        if not self.can_view(use_case):
            raise PermissionDenied("you cannot see this use case")

    def require_contribute(self, use_case: UseCase) -> None:
        if not self.can_contribute(use_case):
            raise PermissionDenied(f"you may not add or change records under use case '{use_case}'")

    def require_change_use_case(self, use_case: UseCase) -> None:
        if not self.can_change_use_case(use_case):
            raise PermissionDenied(f"you may not change use case '{use_case}'")


def anonymous() -> Access:
    return Access(user=AnonymousUser())


def use_case_of(obj: Model) -> UseCase:
    from registry.models import UseCase

    return obj if isinstance(obj, UseCase) else obj.use_case  # type: ignore[attr-defined]


class UseCaseScopeFilter(BaseFilterBackend):
    """Every list and detail endpoint is narrowed to the caller's visible use cases."""

    def filter_queryset(self, request: Any, queryset: QuerySet, view: Any) -> QuerySet:
        field_name = getattr(view, "use_case_field", "use_case_id")
        if field_name is None:
            return queryset
        return Access.for_request(request).filter(queryset, field_name)
