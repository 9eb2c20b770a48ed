"""Browser forms. They shape and validate input; the service functions write."""

from __future__ import annotations

from typing import Any

from django import forms

from portal.permissions import Access
from registry.models import (
    Dataset,
    DatasetVersion,
    Deployment,
    Evidence,
    Model,
    ModelVersion,
    UseCase,
)

TEXTAREA = forms.Textarea(attrs={"rows": 3})


class UseCaseForm(forms.ModelForm):
    class Meta:
        model = UseCase
        fields = [
            "name",
            "purpose",
            "business_owner",
            "technical_owner",
            "affected_people",
            "decision_impact",
            "personal_data",
            "sensitive_data",
            "risk_tier",
            "risk_rationale",
            "human_oversight",
            "review_cadence_days",
            "next_review_date",
        ]
        widgets = {
            "purpose": TEXTAREA,
            "affected_people": TEXTAREA,
            "risk_rationale": TEXTAREA,
            "human_oversight": TEXTAREA,
            "next_review_date": forms.DateInput(attrs={"type": "date"}),
        }


class DatasetForm(forms.ModelForm):
    class Meta:
        model = Dataset
        fields = ["name", "description", "owner"]
        widgets = {"description": TEXTAREA}


class DatasetVersionForm(forms.ModelForm):
    class Meta:
        model = DatasetVersion
        fields = [
            "version",
            *DatasetVersion.DATASHEET_FIELDS,
            "license",
            "sensitivity",
            "uri",
            "sha256",
            "size_bytes",
            "row_count",
            "file",
            "derived_from",
        ]
        widgets = {name: TEXTAREA for name in DatasetVersion.DATASHEET_FIELDS}
        help_texts = {"file": "Optional CSV; a worker computes digest, size, rows and schema."}

    def __init__(self, *args: Any, access: Access, dataset: Dataset, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["derived_from"].queryset = access.filter(
            DatasetVersion.objects.select_related("dataset")
        ).filter(dataset=dataset)


class ModelForm(forms.ModelForm):
    class Meta:
        model = Model
        fields = ["name", "description", "task", "owner"]
        widgets = {"description": TEXTAREA}


class ModelVersionForm(forms.ModelForm):
    metrics = forms.JSONField(required=False, initial=dict, help_text='e.g. {"auc": 0.91}')
    subgroup_metrics = forms.JSONField(
        required=False, initial=dict, help_text='e.g. {"age<30": {"recall": 0.82}}'
    )
    parameters = forms.JSONField(required=False, initial=dict)
    environment = forms.JSONField(required=False, initial=dict)

    class Meta:
        model = ModelVersion
        fields = [
            "version",
            *ModelVersion.MODEL_CARD_FIELDS,
            "training_datasets",
            "validation_datasets",
            "test_datasets",
            "code_repository",
            "code_commit",
            "parameters",
            "environment",
            "metrics",
            "subgroup_metrics",
            "parent",
        ]
        widgets = {name: TEXTAREA for name in ModelVersion.MODEL_CARD_FIELDS}

    def __init__(self, *args: Any, access: Access, model: Model, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        visible = access.filter(DatasetVersion.objects.select_related("dataset"))
        for name in ("training_datasets", "validation_datasets", "test_datasets"):
            self.fields[name].queryset = visible
            self.fields[name].required = False
        self.fields["parent"].queryset = ModelVersion.objects.filter(model=model).select_related(
            "model"
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for name in ("metrics", "subgroup_metrics", "parameters", "environment"):
            if data.get(name) is None:
                data[name] = {}
        return data


class EvidenceForm(forms.ModelForm):
    class Meta:
        model = Evidence
        fields = ["kind", "title", "summary", "uri", "sha256", "size_bytes", "media_type"]
        widgets = {"summary": TEXTAREA}


class DeploymentForm(forms.ModelForm):
    class Meta:
        model = Deployment
        fields = [
            "environment",
            "region",
            "strategy",
            "traffic_share",
            "endpoint",
            "replaces",
            "notes",
        ]
        widgets = {"notes": TEXTAREA}

    def __init__(
        self, *args: Any, access: Access, model_version: ModelVersion, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["replaces"].queryset = Deployment.objects.filter(
            use_case_id=model_version.use_case_id, status=Deployment.Status.ACTIVE
        ).select_related("model_version__model")


class TransitionForm(forms.Form):
    status = forms.CharField(max_length=20)
    reason = forms.CharField(max_length=2000, required=False)
