"""A use case with a deployed model, its training data as a real CSV, and a retraining
template that runs examples/retrain/."""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.core.files.base import ContentFile

from portal import roles
from portal.permissions import Access
from tests import factories as f
from workers import retraining

SYSTEM = Access.system()
ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["{python}", "{charter_root}/examples/retrain/train.py"]
CARD = {
    "intended_use": "Rank credit applications for a human reviewer.",
    "out_of_scope_uses": "Automated refusals without review.",
    "limitations": "Trained on one country's applicants.",
    "ethical_considerations": "Monitored per region for recall gaps.",
}


def training_csv(n: int = 1200, seed: int = 7) -> bytes:
    """Applicants with age, income, region and whether they repaid (a logistic relation)."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 10, n).round()
    income = rng.lognormal(10, 0.5, n)
    region = rng.choice(["north", "south", "east", "west"], n)
    logit = 0.06 * (age - 40) + 1.2 * (np.log(income) - 10) + (region == "north") * 0.4
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["age", "income", "region", "label"])
    for row in zip(age, income.round(2), region, label, strict=True):
        writer.writerow(row)
    return out.getvalue().encode()


@dataclass
class World:
    uc: Any
    dataset_version: Any
    model: Any
    base: Any
    deployment: Any
    risk: Any
    owner: Any


def world(*, risk_tier: str = "high", upload: bool = True) -> World:
    owner = f.user(roles=(roles.CONTRIBUTOR,))
    owner.email = "owner@example.org"
    owner.save()
    uc = f.use_case(
        name=f"Credit scoring {f.next_n()}",
        risk_tier=risk_tier,
        risk_rationale="Decides on credit.",
        technical_owner=owner,
    )
    data = training_csv()
    ds = f.dataset(uc, name="applications")
    dv = f.dataset_version(
        ds, sha256=hashlib.sha256(data).hexdigest(), row_count=1200, size_bytes=len(data)
    )
    if upload:
        dv.file.save("applications.csv", ContentFile(data), save=True)
    model = f.model(uc, name="credit-risk")
    base = f.model_version(model, version="1.0", training_datasets=[dv], **CARD)
    deployment = f.deployment(base)
    risk = f.user(roles=(roles.RISK_OFFICER,))
    return World(uc, dv, model, base, deployment, risk, owner)


def template(w: World, **spec: Any) -> Any:
    spec.setdefault("entrypoint", TRAIN)
    spec.setdefault("time_limit_s", 300)
    spec.setdefault("resources", {"cpus": 1, "memory_mb": 512})
    spec.setdefault("parameters", {"label": "label", "subgroup": "region"})
    return retraining.set_template(SYSTEM, w.model, spec=spec)
