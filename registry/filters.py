"""Filtersets shared by the API and the browser pages.

Multiple-choice filters here never join to many-valued relations, so they skip
django-filter's default DISTINCT (which made PostgreSQL de-duplicate whole rows).
"""

from __future__ import annotations

import django_filters as filters

from registry.models import (
    Artifact,
    Dataset,
    DatasetVersion,
    Deployment,
    Evidence,
    Model,
    ModelVersion,
    RiskTier,
    UseCase,
)


class UseCaseFilter(filters.FilterSet):
    q = filters.CharFilter(method="search", label="Search")
    risk_tier = filters.MultipleChoiceFilter(choices=RiskTier.choices, distinct=False)
    status = filters.MultipleChoiceFilter(choices=UseCase.Status.choices, distinct=False)
    review_due_before = filters.DateFilter(field_name="next_review_date", lookup_expr="lte")

    class Meta:
        model = UseCase
        fields = ["risk_tier", "status", "decision_impact", "personal_data", "sensitive_data"]

    def search(self, queryset, name, value):  # type: ignore[no-untyped-def]
        from django.db.models import Q

        return queryset.filter(Q(name__icontains=value) | Q(purpose__icontains=value))


class DatasetFilter(filters.FilterSet):
    class Meta:
        model = Dataset
        fields = ["use_case"]


class DatasetVersionFilter(filters.FilterSet):
    class Meta:
        model = DatasetVersion
        fields = ["dataset", "use_case", "sensitivity", "summary_status", "sha256"]


class ModelFilter(filters.FilterSet):
    class Meta:
        model = Model
        fields = ["use_case"]


class ModelVersionFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=ModelVersion.Status.choices, distinct=False)
    risk_tier = filters.MultipleChoiceFilter(
        field_name="use_case__risk_tier", choices=RiskTier.choices, distinct=False
    )
    training_dataset = filters.NumberFilter(field_name="training_datasets")

    class Meta:
        model = ModelVersion
        fields = ["model", "use_case", "status", "parent", "code_commit"]


class EvidenceFilter(filters.FilterSet):
    class Meta:
        model = Evidence
        fields = ["use_case", "model_version", "kind", "sha256"]


class ArtifactFilter(filters.FilterSet):
    class Meta:
        model = Artifact
        fields = ["model_version", "use_case", "sha256"]


class DeploymentFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=Deployment.Status.choices, distinct=False)

    class Meta:
        model = Deployment
        fields = ["model_version", "use_case", "environment", "region", "status", "strategy"]
