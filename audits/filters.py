from __future__ import annotations

from typing import Any

import django_filters as filters
from django.db.models import QuerySet

from audits.models import AuditEvent


class AuditEventFilter(filters.FilterSet):
    actor = filters.CharFilter(field_name="actor_repr", lookup_expr="iexact", label="Actor")
    action = filters.ChoiceFilter(choices=AuditEvent.Action.choices)
    object_type = filters.CharFilter(method="filter_object_type", label="Object type")
    object_id = filters.CharFilter(label="Object id")
    since = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte", label="From")
    until = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt", label="Until")
    seq_from = filters.NumberFilter(field_name="seq", lookup_expr="gte", label="From seq")

    class Meta:
        model = AuditEvent
        fields: list[str] = []

    def filter_object_type(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        """Object types are written in lower case (``app_label.model``, audits.services
        ``object_label``), so the filter compares the lower-cased input exactly: the
        (object_type, object_id, seq) index serves it, where ``iexact`` compares
        ``UPPER(object_type)`` and walks the chain."""
        return queryset.filter(object_type=value.strip().lower())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("since", "until"):
            self.filters[name].field.widget.input_type = "datetime-local"
