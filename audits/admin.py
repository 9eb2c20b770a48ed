from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audits.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit chain is never edited, not even by administrators."""

    list_display = ("seq", "created_at", "actor_repr", "action", "object_type", "object_repr")
    list_filter = ("action", "object_type", "channel")
    search_fields = ("actor_repr", "object_repr", "object_id", "request_id")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
