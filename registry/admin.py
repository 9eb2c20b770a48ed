"""The Django admin goes through the same service functions as the API and UI."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from portal.permissions import Access
from registry import services, signing
from registry.models import (
    Artifact,
    Attestation,
    Dataset,
    DatasetVersion,
    Deployment,
    Evidence,
    Model,
    ModelVersion,
    SigningKey,
    UseCase,
)

# model -> (create function, keyword naming the parent, or None)
CREATORS: dict[type, tuple[Any, str | None]] = {
    UseCase: (services.create_use_case, None),
    Dataset: (services.create_dataset, "use_case"),
    DatasetVersion: (services.create_dataset_version, "dataset"),
    Model: (services.create_model, "use_case"),
    ModelVersion: (services.register_model_version, "model"),
    Evidence: (services.add_evidence, "model_version"),
    Artifact: (services.add_artifact, "model_version"),
    Deployment: (services.record_deployment, "model_version"),
}
M2M = {"derived_from", "training_datasets", "validation_datasets", "test_datasets"}


class ServiceAdmin(admin.ModelAdmin):
    """Saves and deletes through registry.services, with the admin user as actor.

    The admin form's cleaned data is handed to the service function; the object
    the admin built is discarded, so the service's own validation, permission
    check and audit event apply unchanged.
    """

    readonly_fields: tuple[str, ...] = ("status",)

    def get_queryset(self, request: HttpRequest) -> Any:
        return Access(user=request.user).filter(super().get_queryset(request))

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        access = Access(user=request.user)
        data = {
            k: v
            for k, v in form.cleaned_data.items()
            if k not in services.PROTECTED_FIELDS or k == "use_case"
        }
        if change:
            fresh = type(obj).objects.get(pk=obj.pk)
            changed = {k: data[k] for k in form.changed_data if k in data}
            services.UPDATERS[type(obj)](access, fresh, **changed)
            obj.pk = fresh.pk
        else:
            create, parent = CREATORS[type(obj)]
            if parent != "use_case" and type(obj) is not Evidence:
                data.pop("use_case", None)
            saved = create(access, **data)
            obj.pk = saved.pk
        obj.refresh_from_db()

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # Many-to-many links were saved by the service together with the object.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        services.delete_object(Access(user=request.user), obj, reason="deleted in admin")

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for obj in queryset:
            self.delete_model(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if self.model in (Evidence, Artifact, Deployment) and obj is not None:
            return False
        return super().has_change_permission(request, obj)


@admin.register(UseCase)
class UseCaseAdmin(ServiceAdmin):
    list_display = ("name", "risk_tier", "status", "next_review_date")
    list_filter = ("risk_tier", "status", "decision_impact")
    search_fields = ("name", "purpose")


@admin.register(Dataset)
class DatasetAdmin(ServiceAdmin):
    list_display = ("name", "use_case")
    readonly_fields = ()
    search_fields = ("name",)


@admin.register(DatasetVersion)
class DatasetVersionAdmin(ServiceAdmin):
    list_display = ("__str__", "sensitivity", "row_count", "summary_status")
    list_filter = ("sensitivity", "summary_status")
    readonly_fields = ("summary_status", "quality_summary")
    exclude = ("use_case",)


@admin.register(Model)
class ModelAdmin(ServiceAdmin):
    list_display = ("name", "use_case", "task")
    readonly_fields = ()


@admin.register(ModelVersion)
class ModelVersionAdmin(ServiceAdmin):
    list_display = ("__str__", "status", "created_at")
    list_filter = ("status",)
    exclude = ("use_case",)
    raw_id_fields = ("parent",)


@admin.register(Evidence)
class EvidenceAdmin(ServiceAdmin):
    list_display = ("title", "kind", "use_case", "model_version")
    readonly_fields = ()


@admin.register(Artifact)
class ArtifactAdmin(ServiceAdmin):
    list_display = ("name", "model_version", "sha256")
    readonly_fields = ()
    exclude = ("use_case",)


@admin.register(Deployment)
class DeploymentAdmin(ServiceAdmin):
    """The deployment gate shows as a form error here; the refusal is audited before it."""

    list_display = ("__str__", "environment", "status", "released_at")
    list_filter = ("environment", "status")
    exclude = ("use_case",)

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        base = super().get_form(request, obj, **kwargs)
        if obj is not None:
            return base

        class GatedForm(base):  # type: ignore[misc, valid-type]
            def clean(self) -> dict[str, Any]:
                from approvals import gate

                data = super().clean()
                version, environment = data.get("model_version"), data.get("environment")
                if version is not None and environment:
                    try:
                        gate.enforce(Access(user=request.user), version, environment)
                    except gate.GateRefused as exc:
                        raise forms.ValidationError(exc.messages) from exc
                return data

        return GatedForm


# ---------------------------------------------------------------- signing


class SigningKeyAddForm(forms.ModelForm):
    class Meta:
        model = SigningKey
        fields = ("name", "kind", "public_key_pem", "owner")


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    """Keys are added and revoked through registry.signing; nothing else is editable."""

    list_display = ("key_id", "kind", "owner", "name", "created_at", "revoked_at")
    list_filter = ("kind",)
    search_fields = ("key_id", "name", "owner__username")
    actions = ("revoke_selected",)

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = SigningKeyAddForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        return [f.name for f in SigningKey._meta.fields]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            return
        data = form.cleaned_data
        saved = signing.register_signing_key(
            Access(user=request.user),
            public_key_pem=data["public_key_pem"],
            kind=data["kind"],
            name=data.get("name", ""),
            owner=data.get("owner") or request.user,
        )
        obj.pk = saved.pk
        obj.refresh_from_db()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke the selected keys (reason: revoked in admin)")
    def revoke_selected(self, request: HttpRequest, queryset: Any) -> None:
        access = Access(user=request.user)
        for key in queryset.filter(revoked_at__isnull=True):
            signing.revoke_signing_key(access, key, reason="revoked in admin")


@admin.register(Attestation)
class AttestationAdmin(admin.ModelAdmin):
    """Read-only: attestations are created by verification, never edited."""

    list_display = ("pk", "artifact", "evidence", "signer_key", "verdict", "verified_at")
    list_filter = ("verdict", "portal_signed")

    def get_queryset(self, request: HttpRequest) -> Any:
        return Access(user=request.user).filter(super().get_queryset(request))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
