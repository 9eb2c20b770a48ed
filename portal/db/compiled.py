"""Querysets compiled to SQL once per process, for the statements every request runs.

Building a queryset and compiling it (joins, ``select_related`` columns, converters) costs
Django about as much CPU as the database spends running a small indexed statement. For a
statement whose shape never changes, only one value, :class:`CompiledQuery` compiles it
once, then runs the SQL with the value in place and turns the rows into objects as
Django's ``ModelIterable`` does (``select_related``, deferred fields and converters
included). Nothing but the SQL is kept: every call reads the database afresh.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.query import ModelIterable


class CompiledQuery:
    """``build(value)`` is a queryset whose only varying part is ``value`` (an expression
    standing for the parameter, e.g. ``filter(pk=value)``); :meth:`all` runs it for one
    value. ``build`` must give the same SQL for every value (same joins, same slices)."""

    def __init__(self, build: Callable[[Any], QuerySet]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._state: tuple[QuerySet, Any, str, list[Any], int] | None = None

    def _compiled(self) -> tuple[QuerySet, Any, str, list[Any], int]:
        with self._lock:
            if self._state is None:
                marker: list[Any] = []  # an object only this call holds, found by identity
                queryset = self._build(RawSQL("%s", [marker]))  # noqa: S611  # nosec B611
                compiler = queryset.query.get_compiler(using=queryset.db)
                sql, params = compiler.as_sql()
                at = [i for i, p in enumerate(params) if p is marker]
                if len(at) != 1:
                    raise ValueError("the query must use its value exactly once")
                self._state = (queryset, compiler, sql, list(params), at[0])
            return self._state

    def all(self, value: Any) -> list[Model]:
        queryset, compiler, sql, params, at = self._compiled()
        params = list(params)
        params[at] = value
        with connections[queryset.db].cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        fed_compiler = copy.copy(compiler)
        fed_compiler.execute_sql = lambda *args, **kwargs: [rows]  # the rows just read
        fed = queryset.all()
        fed.query.get_compiler = lambda *args, **kwargs: fed_compiler
        return list(ModelIterable(fed))

    def first(self, value: Any) -> Model | None:
        found = self.all(value)
        return found[0] if found else None
