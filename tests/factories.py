"""Objects for tests, built through the service layer (so they are audited like real ones)."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from portal.permissions import Access
from registry import services
from registry.models import (
    Artifact,
    Dataset,
    DatasetVersion,
    Deployment,
    Evidence,
    Model,
    ModelVersion,
    UseCase,
)

User = get_user_model()
_seq = itertools.count(1)
SYSTEM = Access.system()


def next_n() -> int:
    return next(_seq)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def user(username: str | None = None, *, roles: tuple[str, ...] = (), **extra: Any) -> Any:
    username = username or f"user{next(_seq)}"
    u = User.objects.create_user(username=username, password="pw-" + username, **extra)
    for role in roles:
        u.groups.add(Group.objects.get(name=role))
    return u


def use_case(**data: Any) -> UseCase:
    n = next(_seq)
    data.setdefault("name", f"Use case {n}")
    data.setdefault("purpose", "Decide things with a model.")
    data.setdefault("risk_tier", "high")
    return services.create_use_case(SYSTEM, **data)


def dataset(uc: UseCase | None = None, **data: Any) -> Dataset:
    data.setdefault("name", f"dataset-{next(_seq)}")
    return services.create_dataset(SYSTEM, use_case=uc or use_case(), **data)


def dataset_version(ds: Dataset | None = None, **data: Any) -> DatasetVersion:
    n = next(_seq)
    data.setdefault("version", f"v{n}")
    data.setdefault("motivation", "Train the model.")
    data.setdefault("sha256", digest(f"dataset {n}"))
    data.setdefault("row_count", 1000)
    return services.create_dataset_version(SYSTEM, dataset=ds or dataset(), **data)


def model(uc: UseCase | None = None, **data: Any) -> Model:
    data.setdefault("name", f"model-{next(_seq)}")
    return services.create_model(SYSTEM, use_case=uc or use_case(), **data)


def model_version(m: Model | None = None, **data: Any) -> ModelVersion:
    n = next(_seq)
    data.setdefault("version", f"1.{n}")
    data.setdefault("intended_use", "Rank applications for a human reviewer.")
    data.setdefault("metrics", {"auc": 0.9})
    return services.register_model_version(SYSTEM, model=m or model(), **data)


def evidence(mv: ModelVersion, **data: Any) -> Evidence:
    data.setdefault("kind", "validation_report")
    data.setdefault("title", f"Validation {next(_seq)}")
    data.setdefault("sha256", digest(data["title"]))
    return services.add_evidence(SYSTEM, model_version=mv, **data)


def artifact(mv: ModelVersion, **data: Any) -> Artifact:
    data.setdefault("name", "model.onnx")
    data.setdefault("uri", f"s3://models/{mv.pk}/model.onnx")
    data.setdefault("sha256", digest(f"artifact {mv.pk} {next(_seq)}"))
    data.setdefault("size_bytes", 1234)
    return services.add_artifact(SYSTEM, model_version=mv, **data)


def deployment(mv: ModelVersion, **data: Any) -> Deployment:
    data.setdefault("environment", "staging")
    data.setdefault("released_at", timezone.now())
    return services.record_deployment(SYSTEM, model_version=mv, **data)
