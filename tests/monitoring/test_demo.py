"""The demo's monitoring data (``seed_demo`` calls ``workers.demo.seed_monitoring``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from registry.demo_data import USE_CASES
from registry.models import Deployment
from tests import factories as f
from workers.demo import seed_monitoring
from workers.models import DriftResult, Incident, WindowProfile

# The demo's rows per window follow the time of day and its drift the minute: a fixed clock
# keeps the statistics (and so which features drift) the same on every run.
NOW = datetime(2026, 11, 2, 12, 20, tzinfo=UTC)


def test_demo_deployment_gets_windows_a_drifting_feature_and_an_incident(db: Any) -> None:
    uc = f.use_case(name=USE_CASES[0]["name"])
    dv = f.dataset_version(f.dataset(uc))
    dep = f.deployment(f.model_version(f.model(uc), training_datasets=[dv]))
    Deployment.objects.filter(pk=dep.pk).update(environment="production")
    assert seed_monitoring(NOW, hours=12, scale=0.3).pk == dep.pk
    assert WindowProfile.objects.filter(deployment=dep).count() == 12
    results = list(DriftResult.objects.filter(deployment=dep).order_by("window_start"))
    assert len(results) == 12
    assert results[0].drifted_features == []
    assert results[-1].drifted_features == ["income"]
    assert results[0].performance["labelled"] > 0 and results[-1].performance["labelled"] == 0
    incident = Incident.objects.get(rule__name="Income drift")
    assert incident.is_open and incident.retraining_requested and incident.occurrences > 1
    assert incident.opened_at < incident.last_seen_at  # dated at its windows' ends
    seed_monitoring(NOW, hours=12, scale=0.3)  # a second run adds nothing
    assert WindowProfile.objects.filter(deployment=dep).count() == 12
