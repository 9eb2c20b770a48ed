"""Import registered models, versions, runs and datasets from an MLflow tracking server."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from audits.context import audit_context
from portal.permissions import Access
from registry.mlflow_import import MlflowUnavailable, import_mlflow, redact
from registry.models import UseCase


class Command(BaseCommand):
    help = (
        "Import MLflow registered models and their versions (run parameters, metrics, "
        "input datasets, code commit, artifact digests) into the registry; idempotent."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--tracking-uri", required=True, help="e.g. http://mlflow:5000")
        parser.add_argument("--registry-uri", default=None, help="default: the tracking URI")
        parser.add_argument(
            "--use-case",
            type=int,
            default=None,
            help="use case id for every model (default: each registered model's "
            "charter.use_case tag)",
        )
        parser.add_argument(
            "--model", action="append", default=None, help="only this registered model (repeatable)"
        )
        parser.add_argument("--dry-run", action="store_true", help="report, save nothing")
        parser.add_argument(
            "--download-artifacts",
            action="store_true",
            help="download artifacts Charter cannot read in place, to compute their digests",
        )
        parser.add_argument("--as", dest="as_user", default=None, help="act as this user")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> str:
        access = Access.system()
        if options["as_user"]:
            user = get_user_model().objects.filter(username=options["as_user"]).first()
            if user is None:
                raise CommandError(f"no user named {options['as_user']!r}")
            access = Access(user=user)
        use_case = None
        if options["use_case"] is not None:
            use_case = UseCase.objects.filter(pk=options["use_case"]).first()
            if use_case is None or not access.can_view(use_case):
                raise CommandError(f"unknown use case id {options['use_case']}")
        with audit_context(channel="command"):
            try:
                report = import_mlflow(
                    access,
                    options["tracking_uri"],
                    use_case=use_case,
                    dry_run=options["dry_run"],
                    registry_uri=options["registry_uri"],
                    download_artifacts=options["download_artifacts"],
                    only=options["model"],
                )
            except (MlflowUnavailable, PermissionDenied) as exc:
                raise CommandError(str(exc)) from exc
            except Exception as exc:  # an unreachable server, a bad URI: MlflowException & co
                raise CommandError(
                    f"cannot read MLflow at {redact(options['tracking_uri'])}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=1))
        else:
            self.stdout.write(report.summary())
        if report.errors:
            raise CommandError(f"{len(report.errors)} item(s) could not be imported (see above)")
        return ""
