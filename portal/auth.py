"""Bearer-token authentication for pipelines and service accounts."""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.db import connection
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from audits import context
from portal import permissions
from portal.models import TOKEN_PREFIX, ApiToken


@functools.cache
def _annotations() -> dict[str, Any]:
    """Written once per process: building and compiling ORM subqueries would cost more
    CPU on every request than the statement itself."""
    from django.db.models.expressions import RawSQL

    qn = connection.ops.quote_name
    token = qn(ApiToken._meta.db_table)
    field = ApiToken._meta.get_field("use_cases")
    link = field.remote_field.through
    scope = (
        f"ARRAY(SELECT l.{qn(link._meta.get_field(field.m2m_reverse_field_name()).column)} "  # noqa: S608  # nosec B608
        f"FROM {qn(link._meta.db_table)} l "
        f"WHERE l.{qn(link._meta.get_field(field.m2m_field_name()).column)} = {token}.{qn('id')})"
    )
    user = f"{token}.{qn(ApiToken._meta.get_field('user').column)}"
    return {"scope_ids": RawSQL(scope, ()), **permissions.preload_annotations(user)}  # noqa: S611  # nosec B611


def _fetch_token(prefix: str) -> ApiToken | None:
    """The token with this prefix, its user and (on PostgreSQL) its use-case scope
    (``scope_ids``) and the user's permissions and use-case grants, in one statement.

    On PostgreSQL the statement is written once per process (:func:`_token_statement`),
    prepared once per database session (:func:`_fetch_row`) and its row turned into objects
    with ``Model.from_db``, so neither the ORM compiles nor PostgreSQL plans it per request.
    Nothing is cached between requests: a revoked token, grant or role counts from the next
    request on. Elsewhere scope and rights are read when first needed (portal.permissions)."""
    if connection.vendor != "postgresql":
        return ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    sql, params, token_fields, user_fields, extra = _token_statement()
    row = _fetch_row(sql, params, prefix)
    if row is None:
        return None
    from django.contrib.auth import get_user_model

    split = len(token_fields)
    token = ApiToken.from_db(connection.alias, token_fields, row[:split])
    user = get_user_model().from_db(
        connection.alias, user_fields, row[split : split + len(user_fields)]
    )
    token.user = user
    for name, value in zip(extra, row[split + len(user_fields) :], strict=True):
        setattr(token, name, value)
    return token


def _fetch_row(sql: str, params: list[Any], value: Any) -> Any:
    """The first row of ``sql`` run with ``value`` as its last parameter. The statement is
    bound on the server, so psycopg prepares it on its second run on a connection
    (portal/db/postgresql): PostgreSQL plans its subqueries (~1.5 ms against ~0.5 ms to run
    them) once per database session instead of once per request."""
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, value])
        return cursor.fetchone()


@functools.cache
def _token_statement() -> tuple[str, list[Any], list[str], list[str], list[str]]:
    """``SELECT token.*, user.*, <scope and rights> FROM token JOIN user WHERE prefix = %s``:
    the SQL with the parameters before the prefix, the two models' field names in column
    order and the annotation names."""
    from django.contrib.auth import get_user_model

    qn = connection.ops.quote_name
    user_model = get_user_model()
    token_table, user_table = qn(ApiToken._meta.db_table), qn(user_model._meta.db_table)
    token_fields = list(ApiToken._meta.concrete_fields)
    user_fields = list(user_model._meta.concrete_fields)
    columns = [f"{token_table}.{qn(f.column)}" for f in token_fields]
    columns += [f"{user_table}.{qn(f.column)}" for f in user_fields]
    params: list[Any] = []
    extra = []
    for name, expression in _annotations().items():
        columns.append(f"({expression.sql}) AS {qn(name)}")
        params.extend(expression.params)
        extra.append(name)
    user_fk = qn(ApiToken._meta.get_field("user").column)
    sql = (
        f"SELECT {', '.join(columns)} FROM {token_table} "  # noqa: S608  # nosec B608
        f"INNER JOIN {user_table} ON {user_table}.{qn(user_model._meta.pk.column)} = "
        f"{token_table}.{user_fk} WHERE {token_table}.{qn('prefix')} = %s"
    )
    return (
        sql,
        params,
        [f.attname for f in token_fields],
        [f.attname for f in user_fields],
        extra,
    )


@functools.cache
def _user_statement() -> tuple[str, list[Any], list[str], list[str]]:
    """``SELECT user.*, <rights, roles, unread notifications> FROM user WHERE id = %s``:
    the SQL with the parameters before the id, the user's field names in column order and
    the annotation names."""
    from django.contrib.auth import get_user_model

    from approvals.models import Notification
    from portal.context_processors import UNREAD_ATTR

    qn = connection.ops.quote_name
    user_model = get_user_model()
    user_table = qn(user_model._meta.db_table)
    user_id = f"{user_table}.{qn(user_model._meta.pk.column)}"
    fields = list(user_model._meta.concrete_fields)
    columns = [f"{user_table}.{qn(f.column)}" for f in fields]
    params: list[Any] = []
    extra = []
    for name, expression in permissions.preload_annotations(user_id).items():
        columns.append(f"({expression.sql}) AS {qn(name)}")
        params.extend(expression.params)
        extra.append(name)
    n_user = qn(Notification._meta.get_field("user").column)
    columns.append(
        f"(SELECT COUNT(*) FROM {qn(Notification._meta.db_table)} n "  # noqa: S608  # nosec B608
        f"WHERE n.{n_user} = {user_id} AND n.{qn('read_at')} IS NULL) AS {qn(UNREAD_ATTR)}"
    )
    extra.append(UNREAD_ATTR)
    sql = f"SELECT {', '.join(columns)} FROM {user_table} WHERE {user_id} = %s"  # noqa: S608  # nosec B608
    return sql, params, [f.attname for f in fields], extra


def _fetch_user(user_id: Any) -> Any:
    """The user with their rights, roles and unread notifications, in one statement
    (PostgreSQL; written once per process, prepared once per database session)."""
    from django.contrib.auth import get_user_model

    sql, params, fields, extra = _user_statement()
    row = _fetch_row(sql, params, user_id)
    if row is None:
        return None
    user = get_user_model().from_db(connection.alias, fields, row[: len(fields)])
    for name, value in zip(extra, row[len(fields) :], strict=True):
        setattr(user, name, value)
    permissions.preload_user(user, user)
    return user


class SessionBackend(ModelBackend):
    """Django's ``ModelBackend`` (passwords, permissions), with the session's user read
    together with everything a page asks of them on every request: global permissions,
    use-case grants, roles and the unread notification count: one statement instead of
    four. As with tokens, nothing is cached between requests."""

    def get_user(self, user_id: Any) -> Any:
        if connection.vendor != "postgresql":
            return super().get_user(user_id)
        user = _fetch_user(user_id)
        return user if user is not None and self.user_can_authenticate(user) else None


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer chtr_<prefix>_<secret>``. Expired and revoked tokens fail."""

    keyword = "Bearer"

    def authenticate(self, request: Any) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if parts[0].lower() not in ("bearer", "token"):
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
        return self.authenticate_token(parts[1])

    def authenticate_token(self, raw: str) -> tuple[Any, ApiToken]:
        pieces = raw.split("_", 2)  # the secret itself may contain "_"
        if len(pieces) != 3 or pieces[0] != TOKEN_PREFIX:
            raise exceptions.AuthenticationFailed("Malformed API token.")
        token = _fetch_token(pieces[1])
        if token is None or not token.matches(raw):
            raise exceptions.AuthenticationFailed("Invalid API token.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("API token has been revoked.")
        now = timezone.now()
        if token.expires_at <= now:
            raise exceptions.AuthenticationFailed("API token has expired.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The token's user is inactive.")
        resolution = timedelta(seconds=settings.CHARTER_TOKEN_LAST_USED_RESOLUTION_S)
        if token.last_used_at is None or now - token.last_used_at > resolution:
            # Bookkeeping only, not a governance change: not audited.
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
        permissions.preload_user(token.user, token)
        context.update(token_id=token.pk)
        return token.user, token

    def authenticate_header(self, request: Any) -> str:
        return self.keyword


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "portal.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "chtr_<prefix>_<secret>"}
