"""Seed the load test's database through the service layer (every object audited).

Run by ``bench/load/run.py`` with ``DATABASE_URL`` pointing at a fresh, migrated database:

    python bench/load/seed.py --out fixture.json [--use-cases 12]

Creates governance-board members (with passwords, for session login), use cases, each with a
training dataset (two versions, the latest with a drift reference profile), two models with a
few registered versions and their evidence, one staging deployment, and two service accounts
with API tokens scoped to the use case: ``pipeline-N`` (registers versions and evidence, emits
OpenLineage events) and ``fleet-N`` (posts telemetry). Writes what the load generator needs
(tokens, ids, passwords) as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from audits.context import audit_context  # noqa: E402
from portal import roles  # noqa: E402
from portal.permissions import Access  # noqa: E402
from portal.services import create_service_account, grant_access, issue_token  # noqa: E402
from registry import services  # noqa: E402
from workers import services as monitoring  # noqa: E402
from workers.drift import build_reference_profile  # noqa: E402

User = get_user_model()
REGIONS = ["north", "south", "east", "west", "centre", "islands"]
FEATURES = ["applicant_age", "income", "region", "tenure_months"]
TIERS = ["high", "limited", "minimal", "high", "limited", "high"]
BOARD_PASSWORD = "charter-load-board"  # noqa: S105 (a throw-away database)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def reference_columns(rng: np.random.Generator, n: int) -> dict[str, Any]:
    """Applicant-like columns; the locustfile draws telemetry from the same distributions."""
    age = np.clip(rng.normal(41, 12, n), 18, 90).round()
    income = rng.lognormal(10.4, 0.45, n)
    region = rng.choice(REGIONS, n)
    tenure = np.clip(rng.gamma(2.0, 30.0, n), 0, 480).round()
    z = (np.log(income) - 10.4) / 0.45 * 0.9 + (age - 41) / 12 * 0.4 - 0.3
    return {
        "applicant_age": age,
        "income": income,
        "region": region,
        "tenure_months": tenure,
        "score": 1 / (1 + np.exp(-z)),
    }


def _use_case(system: Access, n: int, rng: np.random.Generator) -> dict[str, Any]:
    uc = services.create_use_case(
        system,
        name=f"Load use case {n:02d}",
        purpose=f"Decide case type {n} with a model (load test).",
        risk_tier=TIERS[n % len(TIERS)],
    )
    dataset = services.create_dataset(system, use_case=uc, name=f"load-{n:02d}-training")
    dvs = []
    for i in range(2):
        dvs.append(
            services.create_dataset_version(
                system,
                dataset=dataset,
                version=f"2025-0{i + 1}",
                motivation="Train the load test's model.",
                sha256=_sha(f"load dataset {n} {i}"),
                uri=f"s3://lake/load/{n:02d}/2025-0{i + 1}/data.parquet",
                row_count=20_000,
                derived_from=dvs[-1:],
            )
        )
    reference = build_reference_profile(reference_columns(rng, 5_000), rng=n)
    monitoring.set_reference_profile(
        system, dvs[-1], profile=reference.to_dict(), prediction_column="score"
    )
    models, versions, deployed = [], [], None
    for m in range(2):
        model = services.create_model(system, use_case=uc, name=f"load-{n:02d}-model-{m}")
        models.append(model.pk)
        for v in range(3):
            mv = services.register_model_version(
                system,
                model=model,
                version=f"0.{v}.0",
                intended_use="Rank cases for a human reviewer.",
                metrics={"auc": round(0.8 + 0.01 * v, 3)},
                subgroup_metrics={"age<30": {"recall": 0.82}, "age>=30": {"recall": 0.85}},
                training_datasets=[dvs[-1]],
            )
            versions.append(mv.pk)
            deployed = deployed or (mv if v == 2 else None)
            services.add_evidence(
                system,
                model_version=mv,
                kind="validation_report",
                title=f"Validation of {mv}",
                sha256=_sha(f"evidence {mv.pk}"),
            )
    deployment = services.record_deployment(
        system,
        model_version=deployed,
        environment="staging",
        region="eu-west-1",
        released_at=timezone.now(),
    )
    contributor = Group.objects.get(name=roles.CONTRIBUTOR)
    tokens = {}
    for kind in ("pipeline", "fleet"):
        account = create_service_account(
            system, username=f"load-{kind}-{n:02d}", groups=[contributor]
        )
        grant_access(system, uc, account.user, "contribute", reason="load test")
        _, secret = issue_token(system, user=account.user, name=f"load {kind}", use_cases=[uc])
        tokens[kind] = secret
    return {
        "id": uc.pk,
        "models": models,
        "model_versions": versions,
        "training_dataset_version": dvs[-1].pk,
        "dataset_versions": [d.pk for d in dvs],
        "deployment": deployment.pk,
        "pipeline_token": tokens["pipeline"],
        "fleet_token": tokens["fleet"],
    }


def seed(use_cases: int, board_members: int) -> dict[str, Any]:
    system = Access.system()
    rng = np.random.default_rng(9)
    board = Group.objects.get(name=roles.BOARD)
    with audit_context(channel="command"), transaction.atomic():
        members = []
        for i in range(board_members):
            user = User.objects.create_user(
                username=f"load-board-{i:02d}",
                password=BOARD_PASSWORD,
                email=f"load-board-{i:02d}@example.org",
            )
            user.groups.add(board)
            members.append({"username": user.username, "password": BOARD_PASSWORD})
        ucs = [_use_case(system, n, rng) for n in range(use_cases)]
    return {"board": members, "use_cases": ucs, "features": FEATURES, "regions": REGIONS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--use-cases", type=int, default=12)
    parser.add_argument("--board-members", type=int, default=10)
    args = parser.parse_args()
    fixture = seed(args.use_cases, args.board_members)
    args.out.write_text(json.dumps(fixture, indent=1))
    print(f"seeded {len(fixture['use_cases'])} use cases, {len(fixture['board'])} board members")


if __name__ == "__main__":
    main()
