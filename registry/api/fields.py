from __future__ import annotations

from typing import Any

from rest_framework import serializers

from portal.permissions import Access


class ScopedRelatedField(serializers.PrimaryKeyRelatedField):
    """A reference that resolves only to objects the caller may see.

    Anything else reads as "does not exist", so a reference never confirms the
    existence of an object the caller cannot see.
    """

    def get_queryset(self) -> Any:
        queryset = super().get_queryset()
        request = self.context.get("request")
        if request is None:
            return queryset.none()
        return Access.for_request(request).filter(queryset)
