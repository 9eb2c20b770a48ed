from __future__ import annotations

import copy
from typing import Any

from django.db import connections
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.query import ModelIterable
from rest_framework import serializers

from portal.permissions import Access


class ScopedRelatedField(serializers.PrimaryKeyRelatedField):
    """A reference that resolves only to objects the caller may see.

    Anything else reads as "does not exist", so a reference never confirms the
    existence of an object the caller cannot see.

    A reference is resolved with SQL compiled once per declared queryset (see
    :class:`_Lookup`) when the caller's visible use cases are known as ids (a token's
    preloaded grants, a global role): the same rows as ``Access.filter(queryset)
    .get(pk=…)``, without building and compiling that query for every request.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        # A serializer deep-copies its declared fields for every instance (every request);
        # the field's queryset need not be copied with it: it is only ever cloned
        # (``get_queryset`` calls ``.all()``), never changed, and a deep copy of a
        # queryset copies its whole query tree (most of the cost of a serializer's fields).
        if self.queryset is not None:
            memo[id(self.queryset)] = self.queryset
        return super().__deepcopy__(memo)

    @classmethod
    def many_init(cls, *args: Any, **kwargs: Any) -> Any:
        field = super().many_init(*args, **kwargs)
        field.__class__ = ScopedManyRelatedField  # same state, one lookup for the list
        return field

    def get_queryset(self) -> Any:
        queryset = super().get_queryset()
        request = self.context.get("request")
        if request is None:
            return queryset.none()
        return Access.for_request(request).filter(queryset)

    def to_internal_value(self, data: Any) -> Any:
        return self.resolve([data])[0]

    def resolve(self, items: list[Any]) -> list[Any]:
        """The objects ``items`` name, in order (DRF's errors for the first bad one)."""
        visible = self._visible_ids()
        if visible is False or self.pk_field is not None:
            return [super(ScopedRelatedField, self).to_internal_value(i) for i in items]
        lookup = _Lookup.of(self.queryset)
        keys: list[Any] = []
        for item in items:
            try:
                if isinstance(item, bool):
                    raise TypeError
                keys.append(lookup.pk.get_prep_value(item))
            except (TypeError, ValueError):
                keys.append(_BAD)
        found = lookup.fetch([k for k in keys if k is not _BAD and lookup.could_exist(k)])
        resolved = []
        for item, key in zip(items, keys, strict=True):
            if key is _BAD:
                self.fail("incorrect_type", data_type=type(item).__name__)
            obj = found.get(key)
            if obj is None or (visible is not None and lookup.use_case_of(obj) not in visible):
                self.fail("does_not_exist", pk_value=item)
            resolved.append(obj)
        return resolved

    def _visible_ids(self) -> frozenset[int] | None | bool:
        """None: every use case; a set: these; False: not known as ids (use the ORM)."""
        request = self.context.get("request")
        if request is None or self.queryset is None or not isinstance(self.queryset, QuerySet):
            return False
        if connections[self.queryset.db].vendor != "postgresql":
            return False  # the compiled lookup takes the ids as one PostgreSQL array
        return Access.for_request(request).visible_ids()


class ScopedManyRelatedField(serializers.ManyRelatedField):
    """A list of references resolved with one statement (DRF issues one per item)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) or not hasattr(data, "__iter__"):
            self.fail("not_a_list", input_type=type(data).__name__)
        data = list(data)
        if not self.allow_empty and len(data) == 0:
            self.fail("empty")
        return self.child_relation.resolve(data) if data else []


_BAD = object()


class _Lookup:
    """``queryset.filter(pk__in=<list>)`` compiled once, the list one array parameter;
    rows become objects as Django's ``ModelIterable`` makes them (``select_related`` and
    ``only`` included)."""

    _cache: dict[int, _Lookup] = {}

    def __init__(self, queryset: QuerySet) -> None:
        self.queryset = queryset
        meta = queryset.model._meta
        self.pk = meta.pk
        self.use_case_attr = "pk" if meta.label == "registry.UseCase" else "use_case_id"
        connection = connections[queryset.db]
        internal = meta.pk.get_internal_type()
        self._range = (
            connection.ops.integer_field_range(internal)
            if internal in connection.ops.integer_field_ranges
            else None
        )
        self._marker: list[Any] = []
        narrowed = queryset.filter(pk__in=RawSQL("SELECT unnest(%s)", [self._marker]))
        self._compiler = narrowed.query.get_compiler(using=queryset.db)
        self._sql, params = self._compiler.as_sql()
        self._params = list(params)
        self._at = next(i for i, p in enumerate(self._params) if p is self._marker)

    @classmethod
    def of(cls, queryset: QuerySet) -> _Lookup:
        lookup = cls._cache.get(id(queryset))
        if lookup is None or lookup.queryset is not queryset:
            if len(cls._cache) >= 512:  # querysets made per request would otherwise pile up
                cls._cache.clear()
            lookup = cls._cache[id(queryset)] = cls(queryset)
        return lookup

    def could_exist(self, key: Any) -> bool:
        """False for a key no row can have (None, an integer out of the column's range),
        which the ORM answers with "does not exist" without asking the database."""
        if key is None:
            return False
        if self._range is not None and isinstance(key, int):
            low, high = self._range
            return (low is None or key >= low) and (high is None or key <= high)
        return True

    def use_case_of(self, obj: Any) -> Any:
        return getattr(obj, self.use_case_attr)

    def fetch(self, keys: list[Any]) -> dict[Any, Any]:
        if not keys:
            return {}
        params = list(self._params)
        params[self._at] = keys
        with connections[self.queryset.db].cursor() as cursor:
            cursor.execute(self._sql, params)
            rows = cursor.fetchall()
        compiler = copy.copy(self._compiler)
        compiler.execute_sql = lambda *args, **kwargs: [rows]  # the rows just read
        fed = self.queryset.all()
        fed.query.get_compiler = lambda *args, **kwargs: compiler
        return {obj.pk: obj for obj in ModelIterable(fed)}
