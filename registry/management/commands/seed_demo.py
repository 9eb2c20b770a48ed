"""Build a believable demo organisation through the service layer (so it is audited)."""

from __future__ import annotations

import hashlib
import random
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from approvals import services as approval_services
from audits.context import audit_context
from portal.permissions import Access
from portal.services import create_service_account, grant_access, issue_token
from registry import services
from registry.demo_data import DATASHEET, SUBGROUPS, USE_CASES, USERS
from registry.models import UseCase
from registry.signing import sign_artifact_as_portal

User = get_user_model()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _password(username: str) -> str:
    return f"charter-{username}-demo"


class Command(BaseCommand):
    help = "Create demo users (one per role) and a demo organisation. Safe to run twice."

    def handle(self, *args: Any, **options: Any) -> None:
        with audit_context(channel="command"):
            users = self._users()
            if UseCase.objects.filter(name=USE_CASES[0]["name"]).exists():
                self.stdout.write("Demo data already present; users refreshed.")
            else:
                with transaction.atomic():
                    self._organisation(users)
                    token = self._pipeline(users)
                    approval_services.open_due_reviews()  # what Celery beat does daily
                self.stdout.write(self.style.SUCCESS("Demo organisation created."))
                self.stdout.write(
                    "API token of service account 'training-pipeline' (shown once; scoped to "
                    f"'{USE_CASES[0]['name']}'):\n  {token}"
                )
        self.stdout.write("\nDemo users (username / password / role):")
        for username, role, *_ in USERS:
            self.stdout.write(f"  {username:<8} {_password(username):<24} {role}")

    def _users(self) -> dict[str, Any]:
        users = {}
        for username, role, first, last, staff in USERS:
            user, created = User.objects.get_or_create(
                username=username,
                defaults={
                    "first_name": first,
                    "last_name": last,
                    "email": f"{username}@example.org",
                },
            )
            if created:
                user.set_password(_password(username))
            user.is_staff = staff
            user.is_superuser = role == "admin"
            user.save()
            user.groups.add(Group.objects.get(name=role))
            users[username] = user
        return users

    def _pipeline(self, users: dict[str, Any]) -> str:
        """A service account for the training pipeline, with a token scoped to one use case."""
        system = Access.system()
        account = create_service_account(
            system,
            username="training-pipeline",
            description="Nightly training job of the credit team",
            groups=[Group.objects.get(name="contributor")],
        )
        use_case = UseCase.objects.get(name=USE_CASES[0]["name"])
        grant_access(system, use_case, account.user, "contribute", reason="pipeline")
        _, secret = issue_token(
            system, user=account.user, name="nightly training", use_cases=[use_case]
        )
        return secret

    def _organisation(self, users: dict[str, Any]) -> None:
        system = Access.system()
        rng = random.Random(7)
        now = timezone.now()
        for n, spec in enumerate(USE_CASES):
            spec = dict(spec)
            statuses = spec.pop("status")
            team = users[spec.pop("team")]
            spec["business_owner"] = users[spec["business_owner"]]
            spec["technical_owner"] = users[spec["technical_owner"]]
            uc = services.create_use_case(
                system, review_cadence_days=rng.choice([90, 180, 365]), **spec
            )
            grant_access(system, uc, team, "own", reason="demo team")
            grant_access(system, uc, users["viewer"], "view", reason="demo viewer")
            if n == 2:  # CV screening: its review is overdue
                services.update_use_case(
                    system, uc, next_review_date=timezone.localdate() - timedelta(days=12)
                )
            for status in statuses:
                services.transition_use_case(system, uc, status, reason="demo history")
            if not statuses or statuses == ["retired"]:
                continue
            as_team = Access(user=team)
            reviewers = {
                "governance board": [users["board"], users["board2"]],
                "risk officer": [users["risk"]],
            }
            self._datasets_and_models(
                as_team, uc, team, rng, now, "in_production" in statuses, reviewers
            )
        from workers.demo import seed_monitoring

        seed_monitoring()  # telemetry, drift and incidents of one production deployment
        from lineage.demo import seed_lineage

        seed_lineage()  # the ETL runs (OpenLineage) that built each training snapshot

    def _approve(self, access: Access, mv: Any, reviewers: dict[str, list[Any]]) -> None:
        """Request production approval for ``mv`` and let the quorum approve it."""
        req = approval_services.create_request(
            access, model_version=mv, environment="production", summary="Release candidate."
        )
        for role, needed in req.policy.quorum.items():
            for reviewer in reviewers[role][:needed]:
                approval_services.decide(
                    Access(user=reviewer),
                    req,
                    verdict="approve",
                    role=role,
                    comment="Checks pass; evidence reviewed.",
                )

    def _datasets_and_models(
        self,
        access: Access,
        uc: UseCase,
        team: Any,
        rng: random.Random,
        now: Any,
        deployed: bool,
        reviewers: dict[str, list[Any]],
    ) -> None:
        slug = uc.name.lower().replace(" ", "-")
        dataset = services.create_dataset(
            access,
            use_case=uc,
            name=f"{slug}-training",
            description=f"Labelled history used to train the {uc.name.lower()} model.",
            owner=team,
        )
        versions = []
        for i, (start, end) in enumerate(
            [("2023-01", "2023-12"), ("2024-01", "2024-12"), ("2025-01", "2025-09")]
        ):
            rows = 120_000 + 45_000 * i + rng.randint(0, 9999)
            sheet = {
                k: v.format(
                    uc=uc.name,
                    team=team.username,
                    rows=rows,
                    unit="case",
                    cols=24 + i,
                    start=start,
                    end=end,
                )
                for k, v in DATASHEET.items()
            }
            dv = services.create_dataset_version(
                access,
                dataset=dataset,
                derived_from=versions[-1:],
                version=f"{end}",
                license="Internal use only",
                sensitivity="restricted" if uc.sensitive_data else "confidential",
                uri=f"s3://lake/governed/{slug}/{end}/data.parquet",
                sha256=_sha(f"{slug}-{end}"),
                size_bytes=rows * 310,
                row_count=rows,
                quality_summary={
                    "columns": {
                        "applicant_age": {"nulls": 0, "null_rate": 0.0, "distinct": 71},
                        "income": {"nulls": rows // 40, "null_rate": 0.025, "distinct": ">1000"},
                        "region": {"nulls": 0, "null_rate": 0.0, "distinct": 12},
                        "tenure_months": {
                            "nulls": rows // 200,
                            "null_rate": 0.005,
                            "distinct": 480,
                        },
                        "label": {"nulls": 0, "null_rate": 0.0, "distinct": 2},
                    }
                },
                schema=[
                    {"name": "applicant_age", "type": "integer"},
                    {"name": "income", "type": "number"},
                    {"name": "region", "type": "string"},
                    {"name": "tenure_months", "type": "integer"},
                    {"name": "label", "type": "boolean"},
                ],
                **sheet,
            )
            versions.append(dv)
        model = services.create_model(
            access,
            use_case=uc,
            name=f"{slug}-model",
            description=f"Gradient-boosted trees for {uc.name.lower()}.",
            task="binary classification",
            owner=team,
        )
        parent = None
        mvs = []
        for i, dv in enumerate(versions):
            auc = round(0.81 + 0.025 * i + rng.uniform(-0.005, 0.005), 4)
            sub = {
                g: {
                    "auc": round(auc + rng.uniform(-0.05, 0.02), 4),
                    # older versions cleared the board; the newest has a weak subgroup
                    "recall": round(
                        0.81 + 0.02 * i + rng.uniform(0, 0.04)
                        if i < len(versions) - 1
                        else 0.74 + rng.uniform(0, 0.04),
                        4,
                    ),
                    "precision": round(0.7 + 0.03 * i + rng.uniform(-0.04, 0.04), 4),
                }
                for g in SUBGROUPS
            }
            mv = services.register_model_version(
                access,
                model=model,
                version=f"1.{i}.0",
                intended_use=f"Support people deciding on: {uc.purpose}",
                out_of_scope_uses="Fully automated decisions without review; any other product line.",
                limitations="Under-represents applicants with thin credit files; calibrated on EU data only.",
                ethical_considerations="Age and sex are not inputs; subgroup recall is monitored for disparity.",
                training_datasets=[dv],
                validation_datasets=[dv],
                test_datasets=[versions[-1]],
                code_repository=f"https://git.example.org/ml/{slug}",
                code_commit=_sha(f"commit {slug} {i}")[:40],
                parameters={"n_estimators": 400 + 100 * i, "max_depth": 6, "learning_rate": 0.05},
                environment={"python": "3.12", "xgboost": "2.1.3", "gpu": "none"},
                metrics={
                    "auc": auc,
                    "accuracy": round(auc - 0.06, 4),
                    "recall": round(0.75 + 0.04 * i, 4),
                },
                subgroup_metrics=sub,
                parent=parent,
            )
            artifact = services.add_artifact(
                access,
                model_version=mv,
                name="model.ubj",
                uri=f"s3://models/{slug}/{mv.version}/model.ubj",
                sha256=_sha(f"artifact {slug} {mv.version}"),
                size_bytes=4_200_000 + 100_000 * i,
                media_type="application/octet-stream",
            )
            if i < 2:  # older versions were signed at build time; the newest awaits it
                sign_artifact_as_portal(
                    access,
                    artifact,
                    "https://slsa.dev/provenance/v1",
                    {"builder": {"id": f"https://ci.example.org/{slug}"}, "run": i},
                )
            for kind, title in [
                ("validation_report", "Hold-out validation report"),
                ("bias_evaluation", "Subgroup fairness evaluation"),
            ]:
                services.add_evidence(
                    access,
                    model_version=mv,
                    kind=kind,
                    title=f"{title} {mv.version}",
                    summary="Produced by the training pipeline.",
                    uri=f"s3://evidence/{slug}/{mv.version}/{kind}.html",
                    sha256=_sha(f"{kind} {slug} {mv.version}"),
                    media_type="text/html",
                )
            mvs.append(mv)
            parent = mv
        system = Access.system()
        for mv in mvs[:-1]:
            self._approve(access, mv, reviewers)
        approval_services.create_request(
            access,
            model_version=mvs[-1],
            environment="production",
            summary="Retrained on the latest snapshot; AUC up, one subgroup's recall down.",
        )
        if not deployed:
            return
        # Production history: 1.0 → 1.1, rollback to 1.0, then 1.1 again after a fix.
        first = services.record_deployment(
            access,
            model_version=mvs[0],
            environment="production",
            region="eu-west-1",
            strategy="full",
            endpoint=f"https://serving.example.org/{slug}",
            released_at=now - timedelta(days=200),
        )
        mvs[0].refresh_from_db()  # approved by the workflow above
        services.transition_model_version(system, mvs[0], "deployed")
        second = services.record_deployment(
            access,
            model_version=mvs[1],
            environment="production",
            region="eu-west-1",
            strategy="canary",
            traffic_share=0.1,
            endpoint=f"https://serving.example.org/{slug}",
            replaces=first,
            released_at=now - timedelta(days=90),
        )
        services.rollback_deployment(access, second, reason="latency regression in canary")
        services.record_deployment(
            access,
            model_version=mvs[1],
            environment="staging",
            region="eu-west-1",
            strategy="shadow",
            traffic_share=1.0,
            endpoint=f"https://staging.example.org/{slug}",
            released_at=now - timedelta(days=30),
        )
