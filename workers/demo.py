"""Demo monitoring data for ``manage.py seed_demo``: one production deployment with a drift
baseline, three days of hourly windows in which ``income`` starts drifting, late labels, alert
rules and the incidents they open. Everything goes through ``workers.services``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
from django.utils import timezone

from portal.permissions import Access
from registry.models import Deployment
from workers import services
from workers.drift import build_reference_profile
from workers.models import TelemetryBatch, WindowProfile

REGIONS = ["north", "south", "east", "west", "centre", "islands"]
HOURS = 72


def _columns(rng: np.random.Generator, n: int, drift: float) -> dict[str, Any]:
    """Applicants; ``drift`` in [0, 1] scales incomes up (a new high-income campaign)."""
    age = np.clip(rng.normal(41, 12, n), 18, 90).round()
    income = rng.lognormal(10.4, 0.45, n) * (1 + 0.6 * drift)
    missing = rng.uniform(size=n) < 0.025
    region = rng.choice(REGIONS, n, p=[0.25, 0.2, 0.2, 0.2, 0.1, 0.05])
    tenure = np.clip(rng.gamma(2.0, 30.0, n), 0, 480).round()
    z = (np.log(income) - 10.4) / 0.45 * 0.9 + (age - 41) / 12 * 0.4 + tenure / 120 * 0.3 - 0.3
    score = 1 / (1 + np.exp(-z))
    # after the drift the old relationship holds less: labels follow the score less closely
    p_true = score * (1 - 0.8 * drift) + 0.4 * drift
    label = rng.uniform(size=n) < p_true
    return {
        "applicant_age": age,
        "income": np.where(missing, np.nan, income),
        "region": region,
        "tenure_months": tenure,
        "score": score,
        "label": label,
    }


def _deployment() -> Deployment | None:
    from registry.demo_data import USE_CASES

    return (
        Deployment.objects.filter(
            use_case__name=USE_CASES[0]["name"], environment="production", status="active"
        )
        .select_related("model_version")
        .order_by("-released_at")
        .first()
    )


def seed_monitoring(now: Any = None, hours: int = HOURS, scale: float = 1.0) -> Deployment | None:
    """Seed the demo; returns the monitored deployment (None if the demo has none).

    ``hours`` windows end at the current hour; ``income`` starts drifting half-way through;
    ``scale`` multiplies the rows per window (about 2,000)."""
    dep = _deployment()
    if dep is None or WindowProfile.objects.filter(deployment=dep).exists():
        return dep
    system = Access.system()
    rng = np.random.default_rng(2024)
    dv = dep.model_version.training_datasets.order_by("pk").first()
    if dv is None:
        return None
    reference = build_reference_profile(_columns(rng, 20_000, 0.0), rng=7)
    services.set_reference_profile(
        system, dv, profile=reference.to_dict(), prediction_column="score", label_column="label"
    )
    for rule in (
        {"name": "Income drift", "kind": "drift", "feature": "income", "severity": "high",
         "action": "retrain"},
        {"name": "Dataset drift", "kind": "drift", "severity": "high"},
        {"name": "Latency p95 over 150 ms", "kind": "latency_p95", "threshold": 150.0,
         "severity": "medium"},
        {"name": "Error rate over 2%", "kind": "error_rate", "threshold": 0.02,
         "severity": "medium", "min_rows": 100},
        {"name": "Accuracy below 0.60", "kind": "metric_floor", "metric": "accuracy",
         "threshold": 0.60, "severity": "medium", "min_rows": 50},
    ):  # fmt: skip
        services.create_alert_rule(system, dep, **rule)
    now = now or timezone.now()
    end = services.window_bounds(now, 3600)[0]
    for h in range(hours, 0, -1):
        start = end - timedelta(hours=h)
        hours_ago = (now - start).total_seconds() / 3600
        drift = min(1.0, max(0.0, (hours / 2 - hours_ago) / (hours / 4)))
        hour = start.hour
        n = int(scale * (1400 + 1100 * np.sin((hour - 6) / 24 * 2 * np.pi) ** 2))
        n += int(rng.integers(0, 200 * scale + 1))
        cols = _columns(rng, n, drift)
        ids = [f"demo-{h}-{i}" for i in range(n)]
        busy = 1.0 + 0.5 * (n > 2200 * scale)
        latency = rng.gamma(3.0, 14.0 * busy, n)
        errors = int(rng.binomial(n, 0.05 if h == hours * 5 // 18 else 0.004))
        payload = {
            "features": {
                "applicant_age": cols["applicant_age"].tolist(),
                "income": [None if np.isnan(v) else float(v) for v in cols["income"]],
                "region": cols["region"].tolist(),
                "tenure_months": cols["tenure_months"].tolist(),
            },
            "predictions": [round(float(s), 5) for s in cols["score"]],
            "prediction_ids": ids,
            "latency_ms": latency.tolist(),
            "errors": errors,
        }
        batch, _ = services.accept_batch(
            system,
            dep,
            kind=TelemetryBatch.Kind.ROWS,
            key=f"demo-rows-{h}",
            digest=services.digest_json({"demo": h}),
            rows=n,
            timestamp=start + timedelta(minutes=30),
            payload=payload,
            queue=False,
        )
        services.fold_batch(batch.pk)
        if hours_ago > hours * 0.28:  # outcomes come later: the last hours have no labels yet
            pick = rng.uniform(size=n) < 0.4
            labels, _ = services.accept_batch(
                system,
                dep,
                kind=TelemetryBatch.Kind.LABELS,
                key=f"demo-labels-{h}",
                digest=services.digest_json({"labels": h}),
                rows=int(pick.sum()),
                timestamp=now,
                payload={
                    "prediction_ids": [i for i, p in zip(ids, pick, strict=True) if p],
                    "labels": [bool(v) for v, p in zip(cols["label"], pick, strict=True) if p],
                },
                queue=False,
            )
            services.fold_batch(labels.pk)
    for window in WindowProfile.objects.filter(deployment=dep).order_by("start"):
        services.evaluate_window(window.pk)
    _backdate(dep)
    return dep


def _backdate(dep: Deployment) -> None:
    """The seeder evaluates three days in one go; date each timeline line (and the incident)
    at the end of the window it is about, as the beat would have (the audit chain keeps the
    true recording times)."""
    from datetime import datetime

    from workers.models import Incident

    for incident in Incident.objects.filter(deployment=dep):
        when = None
        for event in incident.events.order_by("pk"):
            end = event.data.get("window_end")
            if end:
                when = datetime.fromisoformat(end) + timedelta(minutes=2)
            if when is not None:
                event.at = when
                event.save(update_fields=["at"])
        events = list(incident.events.order_by("at", "pk"))
        incident.opened_at = events[0].at
        incident.last_seen_at = events[-1].at
        incident.save(update_fields=["opened_at", "last_seen_at"])
