"""A deployment with a drift baseline, and telemetry batches to post to it."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.utils import timezone

from portal.permissions import Access
from workers import services
from workers.drift import build_reference_profile

SYSTEM = Access.system()
FEATURES = ("age", "income", "region")
_keys = itertools.count(1)


def key(prefix: str = "batch") -> str:
    return f"{prefix}-{next(_keys)}"


def reference_columns(n: int = 2000, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "age": rng.normal(40, 10, n).round(),
        "income": rng.lognormal(10, 0.5, n),
        "region": rng.choice(["north", "south", "east", "west"], n),
        "score": rng.uniform(0, 1, n),
    }


def deployment_and_fleet() -> tuple[Any, Any]:
    """A deployment with a drift baseline, and a client allowed to post its telemetry."""
    from rest_framework.test import APIClient

    from portal import roles
    from tests import factories as f

    uc = f.use_case()
    dv = f.dataset_version(f.dataset(uc))
    install_reference(dv)
    dep = f.deployment(f.model_version(f.model(uc), training_datasets=[dv]))
    client = APIClient()
    client.force_authenticate(f.user(roles=(roles.ADMIN,)))
    return dep, client


def install_reference(dataset_version: Any, **columns: Any) -> Any:
    """Give the dataset version a reference profile (``score`` is the prediction column)."""
    profile = build_reference_profile(reference_columns(), rng=1).to_dict()
    return services.set_reference_profile(
        SYSTEM, dataset_version, profile=profile, prediction_column="score", **columns
    )


def rows(
    n: int = 200,
    seed: int = 1,
    *,
    income_factor: float = 1.0,
    with_ids: str | None = None,
    latency: bool = True,
    errors: int = 0,
) -> dict[str, Any]:
    """Columnar JSON of ``n`` rows drawn like the reference (``income`` scaled to drift)."""
    rng = np.random.default_rng(seed)
    body: dict[str, Any] = {
        "features": {
            "age": rng.normal(40, 10, n).round().tolist(),
            "income": (rng.lognormal(10, 0.5, n) * income_factor).tolist(),
            "region": rng.choice(["north", "south", "east", "west"], n).tolist(),
        },
        "predictions": rng.uniform(0, 1, n).tolist(),
    }
    if with_ids is not None:
        body["prediction_ids"] = [f"{with_ids}-{i}" for i in range(n)]
    if latency:
        body["latency_ms"] = rng.gamma(4.0, 10.0, n).tolist()
        body["errors"] = errors
    return body


def hours_ago(h: float) -> str:
    return (timezone.now() - timedelta(hours=h)).isoformat()


def window_start_of(ts: datetime, seconds: int = 3600) -> datetime:
    return services.window_bounds(ts, seconds)[0]


def telemetry_url(deployment: Any, what: str = "telemetry") -> str:
    return f"/api/v1/deployments/{deployment.pk}/{what}/"


def post(client: Any, deployment: Any, body: dict[str, Any], *, k: str | None = None, **kw: Any):
    data = {"idempotency_key": k or key(), **body}
    return client.post(telemetry_url(deployment, kw.pop("what", "telemetry")), data, format="json")
