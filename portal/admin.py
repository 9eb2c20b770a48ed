"""Admin for service accounts and tokens, through portal.services (so it is audited)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import Group
from django.http import HttpRequest

from portal import services
from portal.models import ApiToken, ServiceAccount
from portal.permissions import Access


class ServiceAccountForm(forms.ModelForm):
    username = forms.CharField(max_length=150)
    groups = forms.ModelMultipleChoiceField(queryset=Group.objects.all(), required=False)

    class Meta:
        model = ServiceAccount
        fields = ["description"]


@admin.register(ServiceAccount)
class ServiceAccountAdmin(admin.ModelAdmin):
    list_display = ("user", "description", "created_by", "created_at")
    form = ServiceAccountForm

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        if obj is not None:
            kwargs["form"] = forms.modelform_factory(ServiceAccount, fields=["description"])
        return super().get_form(request, obj, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            messages.info(request, "Service accounts are changed through their tokens and grants.")
            return
        account = services.create_service_account(
            Access(user=request.user),
            username=form.cleaned_data["username"],
            description=form.cleaned_data["description"],
            groups=list(form.cleaned_data["groups"]),
        )
        obj.pk, obj.user = account.pk, account.user

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.action(description="Revoke the selected tokens")
def revoke_tokens(modeladmin: Any, request: HttpRequest, queryset: Any) -> None:
    access = Access(user=request.user)
    for token in queryset.filter(revoked_at__isnull=True):
        services.revoke_token(access, token, reason="revoked in admin")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are issued by users (or `manage.py issue_token`); here they can be revoked."""

    list_display = ("name", "user", "prefix", "expires_at", "revoked_at", "last_used_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "user__username")
    actions = [revoke_tokens]
    readonly_fields = [f.name for f in ApiToken._meta.fields if f.name != "key_hash"] + [
        "use_cases"
    ]
    exclude = ("key_hash",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
