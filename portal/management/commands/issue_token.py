"""Issue an API token from the command line (e.g. to bootstrap a pipeline)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from audits.context import audit_context
from portal.permissions import Access
from portal.services import issue_token
from registry.models import UseCase


class Command(BaseCommand):
    help = "Issue an API token for a user or service account; prints the secret once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--user", required=True, help="username the token acts as")
        parser.add_argument("--name", required=True, help="what the token is for")
        parser.add_argument(
            "--use-case", type=int, action="append", default=[], help="scope (repeatable)"
        )
        parser.add_argument("--days", type=int, default=None, help="lifetime in days")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"no user named {options['user']!r}")
        use_cases = list(UseCase.objects.filter(pk__in=options["use_case"]))
        missing = set(options["use_case"]) - {u.pk for u in use_cases}
        if missing:
            raise CommandError(f"unknown use case ids: {sorted(missing)}")
        expires = timezone.now() + timedelta(days=options["days"]) if options["days"] else None
        with audit_context(channel="command"):
            try:
                token, secret = issue_token(
                    Access.system(),
                    user=user,
                    name=options["name"],
                    use_cases=use_cases,
                    expires_at=expires,
                )
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(secret)
        self.stderr.write(f"token {token.prefix} for {user.username}, expires {token.expires_at}")
