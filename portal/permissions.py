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

import functools
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
            if not self.user.is_superuser:
                _load_model_perms(self.user)
            self._cache[key] = self.user.is_superuser or self.user.has_perm(f"{APP}.{codename}")
        return self._cache[key]

    def token_scope(self) -> list[int] | None:
        if self.token is None:
            return None
        if self._token_scope is None:
            # The authenticator reads the scope with the token (one query); otherwise load it.
            loaded = getattr(self.token, "scope_ids", None)
            if loaded is None:
                loaded = self.token.use_cases.values_list("id", flat=True)
            self._token_scope = [int(i) for i in loaded if i is not None]
        return self._token_scope or None

    def _in_token_scope(self, use_case_id: int | None) -> bool:
        scope = self.token_scope()
        return scope is None or use_case_id in scope

    def _object_perm(self, codename: str, use_case: UseCase | int) -> bool:
        """Guardian's object permission on one use case, read once per request.

        The user's own and their groups' grants on the use case come in one query
        (guardian's checker issues two per call); the answer is kept on this
        ``Access``, which lives as long as the request, and forgotten when a grant
        changes in this process, so a revoked grant counts at once.
        """
        if not self.authenticated or not self.user.is_active:
            return False
        if self.user.is_superuser:
            return True
        pk = _pk(use_case)
        preloaded = getattr(self.user, GRANTS_ATTR, None)
        if preloaded is not None:  # read with the request's API token (see preload_user)
            return codename in preloaded.get(pk, ())
        key = f"object:{pk}"
        cached = self._cache.get(key)
        if cached is None or cached[0] != _grants.generation:
            cached = (_grants.generation, _object_codenames(self.user, pk))
            self._cache[key] = cached
        return codename in cached[1]

    # -- questions --------------------------------------------------------
    def sees_everything(self) -> bool:
        return self._global("view_usecase") and self.token_scope() is None

    def visible_use_case_ids(self) -> QuerySet | None:
        """A subquery of visible use case ids, or None when every use case is visible.

        Built once per ``Access`` (a request): each ``filter`` embeds a copy, and the
        database evaluates it afresh in every statement.
        """
        if "visible" not in self._cache:
            self._cache["visible"] = self._visible_use_case_ids()
        return self._cache["visible"]

    def _visible_use_case_ids(self) -> QuerySet | None:
        from registry.models import (
            UseCase,
            UseCaseGroupObjectPermission,
            UseCaseUserObjectPermission,
        )

        scope = self.token_scope()
        if self._global("view_usecase"):
            if scope is None:
                return None
            self._cache["visible_ids"] = sorted(scope)
            return UseCase.objects.filter(id__in=scope).values("id")
        if not self.authenticated:
            return UseCase.objects.none().values("id")
        preloaded = getattr(self.user, GRANTS_ATTR, None)
        if preloaded is not None and self.user.is_active:
            ids = {pk for pk, names in preloaded.items() if "view_usecase" in names}
            if scope is not None:
                ids &= set(scope)
            self._cache["visible_ids"] = sorted(ids)
            return UseCase.objects.filter(id__in=sorted(ids)).values("id")
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

    def visible_ids(self) -> frozenset[int] | None | bool:
        """The visible use cases as ids: None for every one, False where they are known
        only as a subquery (rights read lazily, not with a token or a global role)."""
        if self.visible_use_case_ids() is None:
            return None
        known = self._cache.get("visible_ids")
        return False if known is None else frozenset(known)

    def filter(self, queryset: QuerySet, field_name: str = "use_case_id") -> QuerySet:
        if queryset.model._meta.label == "registry.UseCase":
            field_name = "id"
        ids = self.visible_use_case_ids()
        if ids is None:
            return queryset
        known = self._cache.get("visible_ids")  # the same ids, as values: cheaper to compile
        return queryset.filter(**{f"{field_name}__in": ids if known is None else known})

    def can_view(self, use_case: UseCase | int) -> bool:
        """``use_case`` may be the object or its id (no need to load it)."""
        if not self._in_token_scope(_pk(use_case)):
            return False
        return self._global("view_usecase") or self._object_perm("view_usecase", use_case)

    def can_contribute(self, use_case: UseCase | int) -> bool:
        """Register datasets, models, versions, evidence and deployments under it."""
        if not self._in_token_scope(_pk(use_case)):
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


#: A user object loaded for one request may carry its use-case grants, read in the
#: statement that authenticated it: ``{use_case_id: frozenset(codenames)}``.
GRANTS_ATTR = "_charter_grants"
#: ... and the names of their groups (their roles): ``frozenset`` of names.
ROLES_ATTR = "_charter_roles"
_PRELOAD = ("perms_own", "perms_groups", "grants_own", "grants_groups")


def preload_annotations(user_column: str) -> dict[str, Any]:
    """PostgreSQL array subqueries reading a user's permissions alongside another row.

    ``user_column`` is the quoted user id column of the outer query (the API token's
    ``"portal_apitoken"."user_id"``). The annotated row then carries the user's global
    permissions (``app.codename``, their own and their groups', as Django's
    ``ModelBackend`` reads them) and their use-case grants (``<use case id>:<codename>``,
    own and through groups, from guardian's direct tables), and the names of their groups
    (``role_names``); :func:`preload_user` puts them where :class:`Access`,
    ``ModelBackend`` and :func:`role_names` look, so the request needs no
    permission queries of its own. The SQL is written once per process (Django would
    spend milliseconds building and compiling these subqueries on every request).
    """
    from django.db.models.expressions import RawSQL

    from registry.models import UseCase

    sql = _preload_sql()
    use_case = (UseCase._meta.app_label, UseCase._meta.model_name)
    params = {"grants_own": use_case, "grants_groups": use_case}
    return {
        name: RawSQL(text.replace("{user}", user_column), params.get(name, ()))  # noqa: S611  # nosec B611
        for name, text in sql.items()
    }


@functools.cache
def _preload_sql() -> dict[str, str]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection

    from registry.models import UseCaseGroupObjectPermission, UseCaseUserObjectPermission

    qn = connection.ops.quote_name

    def table(model: Any) -> str:
        return qn(model._meta.db_table)

    def column(model: Any, name: str) -> str:
        return qn(model._meta.get_field(name).column)

    def through(model: Any, name: str) -> tuple[str, str, str]:
        """(table, column to the model, column to the target) of a many-to-many."""
        field = model._meta.get_field(name)
        link = field.remote_field.through
        return (
            table(link),
            column(link, field.m2m_field_name()),
            column(link, field.m2m_reverse_field_name()),
        )

    user_model = get_user_model()
    perm, ct = table(Permission), table(ContentType)
    p_id, p_ct, p_code = (column(Permission, f) for f in ("id", "content_type", "codename"))
    ct_id, ct_app = column(ContentType, "id"), column(ContentType, "app_label")
    up, up_user, up_perm = through(user_model, "user_permissions")
    ug, ug_user, ug_group = through(user_model, "groups")
    gp, gp_group, gp_perm = through(Group, "permissions")
    own, grouped = UseCaseUserObjectPermission, UseCaseGroupObjectPermission
    name = f"ct.{ct_app} || '.' || p.{p_code}"
    grant = f"o.{column(own, 'content_object')}::text || ':' || p.{p_code}"
    ct_model = column(ContentType, "model")
    of_use_case = (
        f"JOIN {ct} ct ON ct.{ct_id} = p.{p_ct} AND ct.{ct_app} = %s AND ct.{ct_model} = %s"
    )
    sql = {
        "perms_own": (
            f"ARRAY(SELECT {name} FROM {perm} p JOIN {ct} ct ON ct.{ct_id} = p.{p_ct} "  # noqa: S608  # nosec B608
            f"JOIN {up} l ON l.{up_perm} = p.{p_id} WHERE l.{up_user} = {{user}})"
        ),
        "perms_groups": (
            f"ARRAY(SELECT {name} FROM {perm} p JOIN {ct} ct ON ct.{ct_id} = p.{p_ct} "  # noqa: S608  # nosec B608
            f"JOIN {gp} l ON l.{gp_perm} = p.{p_id} "
            f"JOIN {ug} m ON m.{ug_group} = l.{gp_group} WHERE m.{ug_user} = {{user}})"
        ),
        "grants_own": (
            f"ARRAY(SELECT {grant} FROM {table(own)} o "  # noqa: S608  # nosec B608
            f"JOIN {perm} p ON p.{p_id} = o.{column(own, 'permission')} {of_use_case} "
            f"WHERE o.{column(own, 'user')} = {{user}})"
        ),
        "grants_groups": (
            f"ARRAY(SELECT {grant} FROM {table(grouped)} o "  # noqa: S608  # nosec B608
            f"JOIN {perm} p ON p.{p_id} = o.{column(grouped, 'permission')} {of_use_case} "
            f"JOIN {ug} m ON m.{ug_group} = o.{column(grouped, 'group')} "
            f"WHERE m.{ug_user} = {{user}})"
        ),
        "role_names": (
            f"ARRAY(SELECT g.{column(Group, 'name')} FROM {table(Group)} g "  # noqa: S608  # nosec B608
            f"JOIN {ug} m ON m.{ug_group} = g.{column(Group, 'id')} WHERE m.{ug_user} = {{user}})"
        ),
    }
    return sql


def preload_user(user: Any, row: Any) -> None:
    """Attach what :func:`preload_annotations` read (attributes of ``row``) to ``user``.

    Only for the user object of one request: it reflects the grants at the moment
    the request authenticated, as the per-request caches below do.
    """
    names = getattr(row, "role_names", None)
    if names is not None:
        setattr(user, ROLES_ATTR, frozenset(names))
    values = [getattr(row, name, None) for name in _PRELOAD]
    if any(v is None for v in values) or user.is_superuser or not user.is_active:
        return
    perms_own, perms_groups, grants_own, grants_groups = values
    user._perm_cache = {*perms_own, *perms_groups}  # ModelBackend's own cache
    grants: dict[int, set[str]] = {}
    for item in (*grants_own, *grants_groups):
        use_case_id, _, codename = item.partition(":")
        grants.setdefault(int(use_case_id), set()).add(codename)
    setattr(user, GRANTS_ATTR, {pk: frozenset(names) for pk, names in grants.items()})


def role_names(user: Any) -> frozenset[str]:
    """The names of ``user``'s groups (their roles): read with the user where it was
    loaded with :func:`preload_annotations` (as of that moment, like its permissions),
    otherwise read now."""
    if user is None or not getattr(user, "is_authenticated", False):
        return frozenset()
    names = getattr(user, ROLES_ATTR, None)
    if names is None:
        return frozenset(user.groups.values_list("name", flat=True))
    return names


def _pk(use_case: Any) -> Any:
    return use_case if isinstance(use_case, int) else use_case.pk


def _load_model_perms(user: Any) -> None:
    """Fill ``ModelBackend``'s per-user cache of global permissions in one query.

    Django's ``ModelBackend`` reads the user's own and their groups' permissions in
    two queries the first time ``has_perm`` is asked on a user object; this reads
    the same set (a union) into the same cache (``_perm_cache``), which lives on
    the user object of one request. Superusers are left to Django (they hold all).
    """
    if hasattr(user, "_perm_cache") or user.is_superuser or not user.is_active:
        return
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    user_model = get_user_model()
    direct = user_model._meta.get_field("user_permissions").related_query_name()
    via_groups = f"group__{user_model._meta.get_field('groups').related_query_name()}"
    fields = ("content_type__app_label", "codename")
    own = Permission.objects.filter(**{direct: user}).order_by().values_list(*fields)
    grouped = Permission.objects.filter(**{via_groups: user}).order_by().values_list(*fields)
    user._perm_cache = {f"{app}.{name}" for app, name in own.union(grouped).order_by()}


def _object_codenames(user: Any, use_case_id: int) -> frozenset[str]:
    """The codenames granted to ``user`` on one use case, directly or through a group
    (guardian's direct foreign-key tables, as guardian's own checker reads them)."""
    from registry.models import (
        UseCase,
        UseCaseGroupObjectPermission,
        UseCaseUserObjectPermission,
    )

    common = {
        "content_object_id": use_case_id,
        "permission__content_type__app_label": UseCase._meta.app_label,
        "permission__content_type__model": UseCase._meta.model_name,
    }
    own = UseCaseUserObjectPermission.objects.filter(user=user, **common)
    grouped = UseCaseGroupObjectPermission.objects.filter(group__user=user, **common)
    names = own.values_list("permission__codename", flat=True).union(
        grouped.values_list("permission__codename", flat=True)
    )
    return frozenset(names)


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
