"""portal.db.compiled: a queryset compiled once gives what the ORM gives, read afresh."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models.sql.compiler import SQLCompiler

from portal.db.compiled import CompiledQuery
from registry.models import Deployment, ModelVersion
from tests import factories as f


def _deployments(pk: Any) -> Any:
    return Deployment.objects.select_related("use_case", "model_version__model").filter(pk=pk)


def test_rows_become_the_objects_the_orm_makes_and_the_sql_is_compiled_once(
    db: Any, monkeypatch: Any
) -> None:
    mv = f.model_version()
    first, second = f.deployment(mv), f.deployment(mv, environment="development")
    query = CompiledQuery(_deployments)
    compiled = []
    original = SQLCompiler.as_sql
    monkeypatch.setattr(
        SQLCompiler, "as_sql", lambda self, *a, **k: compiled.append(1) or original(self, *a, **k)
    )
    got = query.first(first.pk)
    again = query.all(second.pk)
    assert len(compiled) == 1  # once for the first call, never again
    assert got == first and again == [second]
    assert got.environment == first.environment and again[0].environment == "development"
    # select_related rows came with it: no further statement to reach them
    assert got.use_case.name == first.use_case.name
    assert got.model_version.model.name == mv.model.name
    assert query.first(10**9) is None
    # nothing is cached but the SQL: a change shows on the next call
    Deployment.objects.filter(pk=first.pk).update(region="eu-west-9")
    assert query.first(first.pk).region == "eu-west-9"


def test_deferred_fields_and_slices_are_kept(db: Any) -> None:
    mv = f.model_version(intended_use="Rank cases for a reviewer.")
    query = CompiledQuery(
        lambda pk: ModelVersion.objects.filter(pk=pk).defer("intended_use").order_by("pk")[:1]
    )
    got = query.first(mv.pk)
    assert got == mv and "intended_use" in got.get_deferred_fields()
    assert got.intended_use == "Rank cases for a reviewer."  # read when asked, as the ORM does


def test_a_value_used_twice_is_refused(db: Any) -> None:
    query = CompiledQuery(lambda v: Deployment.objects.filter(pk=v, model_version_id=v))
    with pytest.raises(ValueError, match="exactly once"):
        query.all(1)
